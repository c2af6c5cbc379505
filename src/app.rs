//! The service's whole router: the API ([`http`]) and the pages for people ([`web`]), behind
//! the layers every request passes. The one place that knows both, so that neither has to
//! know the other.

use axum::Router;
use axum::middleware;

use crate::http::{self, ApiError, AppState, Options, observe};
use crate::store::Store;
use crate::web;

/// Every endpoint, the health checks, and what `options` adds, behind the layers every request
/// goes through.
pub fn router_with<S: Store>(auth: AppState<S>, options: &Options) -> Router {
    http::behind_request_layers(routes(auth, options), options)
}

/// Every route, with the layers that need to know which route matched.
pub fn routes<S: Store>(auth: AppState<S>, options: &Options) -> Router {
    http::api_routes::<S>(options)
        .merge(web::routes(options.public_url.as_deref()))
        .fallback(|| async { ApiError::NotFound })
        // These two need the matched route, which only exists inside the router.
        // A browser visiting an endpoint's URL gets its page; any other client goes through.
        .layer(middleware::from_fn(web::browsable))
        .layer(middleware::from_fn(observe::record))
        .with_state(auth)
}
