//! HTTP: the router, in one place, so every endpoint of the contract is one hop away.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Serialize;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::Auth;
use crate::store::Store;

mod accounts;
pub mod error;
pub mod extract;
mod me;
mod tokens;

pub use error::ApiError;

/// The router state: the domain service, shared by every request.
pub type AppState<S> = Arc<Auth<S>>;

/// Every endpoint of the contract.
pub fn router<S: Store>(auth: AppState<S>) -> Router {
    let api = [
        ("/api/register", accounts::routes()),
        ("/api/login", tokens::login_routes()),
        ("/api/refresh", tokens::refresh_routes()),
        ("/api/logout", tokens::logout_routes()),
        ("/api/me", me::routes()),
    ];
    api.into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            with_and_without_slash(router, path, methods)
        })
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(method_not_allowed_as_json))
        .layer(
            // One line per request at INFO: method, path, status, latency. Never headers or
            // bodies, which carry tokens and passwords.
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(auth)
}

/// The contract answers `/api/me` and `/api/me/` alike, without a redirect.
fn with_and_without_slash<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    path: &str,
    methods: MethodRouter<S>,
) -> Router<S> {
    router
        .route(path, methods.clone())
        .route(&format!("{path}/"), methods)
}

/// axum answers a wrong method with an empty 405 and the right `Allow` header; the contract
/// wants DRF's JSON body as well.
async fn method_not_allowed_as_json(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut response = ApiError::MethodNotAllowed(method.to_string()).into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// A JSON answer with the contract's `application/json; charset=utf-8`.
pub struct Json<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.1) {
            Ok(body) => (
                self.0,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )],
                body,
            )
                .into_response(),
            Err(error) => ApiError::Internal(error.to_string()).into_response(),
        }
    }
}
