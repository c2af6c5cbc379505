//! HTTP: the API's routes, in one place, so every endpoint of the contract is one hop away, and
//! the layers every request passes. It knows nothing of the pages for people (`web`): the
//! service's whole router is put together above both, in [`crate::app`].

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::routing::get;
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Auth;
use crate::config::MetricsBind;
use crate::store::Store;

mod accounts;
mod activity;
pub mod admin;
pub mod body;
mod email;
pub mod error;
pub mod extract;
mod health;
mod me;
mod mfa;
pub mod observe;
pub mod openapi;
mod password_reset;
mod protocol_errors;
pub mod server;
mod sessions;
mod tokens;
mod well_known;

pub use error::ApiError;

/// The API's request bodies, each one type (see [`body`]).
pub use accounts::NewAccount;
pub use email::EmailConfirmation;
pub use me::{ProfileReplacement, ProfileUpdate};
pub use mfa::{TotpConfirmation, TotpRemoval};
pub use password_reset::{PasswordResetConfirmation, PasswordResetRequest};
pub use sessions::PasswordChange;
pub use tokens::{Credentials, RefreshTokenBody};

/// The router state: the domain service, shared by every request.
pub type AppState<S> = Arc<Auth<S>>;

/// What the router serves besides the contract's endpoints.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Origins whose browser pages may call the API (CORS); none by default.
    pub cors_origins: Vec<HeaderValue>,
    /// Serve `/metrics` on this router (else it is served on an address of its own, or not).
    pub metrics: bool,
    /// Log every request answered (else only those that failed: see `observe::log_request`).
    pub access_log: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--public-url`, when set: the server the OpenAPI document names.
    pub public_url: Option<String>,
}

impl Options {
    pub fn from_config(config: &crate::config::Config) -> Options {
        Options {
            cors_origins: config.cors_origins.clone(),
            metrics: config.metrics_bind == MetricsBind::Public,
            access_log: config.access_log,
            trusted_proxies: config.trusted_proxies.clone(),
            public_url: config.public_url.clone(),
        }
    }
}

/// `routes` behind the layers every request goes through (request id, security headers, log
/// line, CORS, trusted proxies, JSON for 405).
pub fn behind_request_layers(routes: Router, options: &Options) -> Router {
    // `Router::layer` would wrap every route in each layer, each boxed, and a route's stack of
    // boxes is cloned for every request it answers: these layers are one box around the routes.
    let cors = (!options.cors_origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(options.cors_origins.clone())
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600))
    });
    // An API answer is data for a program: never a document for a browser to guess the type
    // of and render (a JSON string holding markup), never a copy for a cache to keep (tokens,
    // profiles, errors that say who exists). Set on every answer that has not chosen otherwise
    // (the HTML pages and their assets set their own), of every status.
    let [no_sniffing, no_storing] = API_ANSWER_HEADERS.map(|(name, value)| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    });
    let service = ServiceBuilder::new()
        .layer(middleware::map_request(forget_unusable_request_id))
        // The id exists before the log line is written, and is echoed on every answer, CORS
        // preflights (which the CORS layer answers itself) too.
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(no_sniffing)
        .layer(no_storing)
        // Works out the client address for the log line and for the handlers (see `Requester`).
        .layer(middleware::from_fn_with_state(
            observe::RequestLog {
                trusted: extract::TrustedProxies(Arc::new(options.trusted_proxies.clone())),
                every_request: options.access_log,
            },
            observe::log_request,
        ))
        .option_layer(cors)
        .layer(middleware::from_fn(method_not_allowed_as_json))
        .service(routes);
    Router::new().fallback_service(service)
}

/// Every route of the API, the health checks, and `/metrics` when `options` asks for it.
pub fn api_routes<S: Store>(options: &Options) -> Router<AppState<S>> {
    observe::install();
    let api = [
        ("/api/register", accounts::routes()),
        ("/api/login", tokens::login_routes()),
        ("/api/refresh", tokens::refresh_routes()),
        ("/api/logout", tokens::logout_routes()),
        ("/api/me", me::routes()),
        ("/api/me/activity", activity::routes()),
        ("/api/me/password", sessions::password_routes()),
        ("/api/me/mfa", mfa::status_routes()),
        ("/api/me/mfa/totp", mfa::totp_routes()),
        ("/api/me/mfa/totp/confirm", mfa::confirm_routes()),
        ("/api/sessions", sessions::list_routes()),
        ("/api/sessions/{id}", sessions::one_routes()),
        ("/api/logout/all", sessions::logout_all_routes()),
        ("/api/password/reset", password_reset::request_routes()),
        (
            "/api/password/reset/confirm",
            password_reset::confirm_routes(),
        ),
        ("/api/email/verify", email::request_routes()),
        ("/api/email/verify/confirm", email::confirm_routes()),
    ];
    let mut router = api
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            with_and_without_slash(router, path, methods)
        })
        .route(well_known::JWKS_PATH, well_known::jwks_routes())
        .route(well_known::DISCOVERY_PATH, well_known::discovery_routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz::<S>));
    if options.metrics {
        router = router.route("/metrics", get(observe::metrics_page::<S>));
    }
    router
}

/// Taken from the client when it sends one, else generated; echoed on the answer.
pub(crate) const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// A client's request id is logged and echoed: one that is long or not printable ASCII is
/// replaced by a generated one rather than carried into every log line of the request.
async fn forget_unusable_request_id(mut request: Request) -> Request {
    const LONGEST: usize = 128;
    let usable = |id: &HeaderValue| {
        !id.is_empty() && id.len() <= LONGEST && id.as_bytes().iter().all(u8::is_ascii_graphic)
    };
    if request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|id| !usable(id))
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// `/metrics` alone, for serving on an address that only the monitoring system reaches.
pub fn metrics_router<S: Store>(auth: AppState<S>) -> Router {
    observe::install();
    Router::new()
        .route("/metrics", get(observe::metrics_page::<S>))
        .with_state(auth)
}

/// The contract answers `/api/me` and `/api/me/` alike, without a redirect.
pub fn with_and_without_slash<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    path: &str,
    methods: MethodRouter<S>,
) -> Router<S> {
    router
        .route(path, methods.clone())
        .route(&format!("{path}/"), methods)
}

/// axum answers a wrong method with an empty 405 and the right `Allow` header; the contract
/// wants DRF's JSON body as well. `OPTIONS` is no wrong method: see [`options_answer`].
async fn method_not_allowed_as_json(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    if method == Method::OPTIONS {
        return options_answer(response);
    }
    // The router's headers (`Allow`, `Vary`) go with the new body; its length does not.
    let mut answer = ApiError::MethodNotAllowed(method.to_string()).into_response();
    let routed = response.headers();
    for name in routed.keys() {
        if name != header::CONTENT_LENGTH && !answer.headers().contains_key(name) {
            for value in routed.get_all(name) {
                answer.headers_mut().append(name, value.clone());
            }
        }
    }
    answer
}

/// `OPTIONS` asks which methods a URL answers. The router knows: it lists them in the `Allow`
/// of the 405 it gives a method it does not route. So the router's 405 to an `OPTIONS` becomes
/// a 204 with that list and `OPTIONS` (its other headers, e.g. `Vary`, kept). A 405 to any
/// other method keeps the router's list, which is the documented operations of the URL. A
/// CORS preflight never gets here (the CORS layer, outside, answers it); an unknown URL stays
/// a 404. (The route's metrics count the router's 405: they are taken inside the router.)
fn options_answer(mut response: Response) -> Response {
    let routed = response
        .headers()
        .get(header::ALLOW)
        .and_then(|allow| allow.to_str().ok())
        .unwrap_or_default();
    let allow = if routed.is_empty() {
        HeaderValue::from_static("OPTIONS")
    } else {
        HeaderValue::try_from(format!("{routed},OPTIONS")).expect("method names are header-safe")
    };
    *response.status_mut() = StatusCode::NO_CONTENT;
    *response.body_mut() = axum::body::Body::empty();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, allow);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_TYPE);
    response
}

/// The headers every API answer carries unless it set its own (see [`router_with`]); the
/// answers hyper itself makes to a malformed request carry them too (see `protocol_errors`).
pub(crate) const API_ANSWER_HEADERS: [(header::HeaderName, &str); 2] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
];

/// It worked.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"success": "User logged out."}))]
pub struct Success {
    #[schema(value_type = String)]
    success: &'static str,
}

impl Success {
    pub fn new(message: &'static str) -> Success {
        Success { success: message }
    }
}

/// A message for a person: `{"detail": "…"}`, as DRF words answers that carry no data.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"detail": "Password has been reset."}))]
pub struct Message {
    #[schema(value_type = String)]
    detail: &'static str,
}

impl Message {
    pub fn new(message: &'static str) -> Message {
        Message { detail: message }
    }
}

/// A JSON answer with its status, with the contract's `application/json; charset=utf-8`
/// (named apart from `axum::Json`, which takes no status and sets another media type).
pub struct Reply<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.1) {
            Ok(body) => (
                self.0,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json; charset=utf-8"),
                    ),
                    // Tokens and profiles are nobody's to cache (RFC 6749 §5.1).
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                body,
            )
                .into_response(),
            Err(error) => ApiError::Internal(error.to_string()).into_response(),
        }
    }
}
