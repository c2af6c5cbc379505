//! `GET /.well-known/jwks.json` and `/.well-known/openid-configuration`: what a service needs
//! to verify access tokens on its own (JWT middleware configures itself from these).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::auth::tokens::KeySet;
use crate::domain::keys::SigningAlgorithm;
use crate::store::Store;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

pub fn jwks_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(jwks::<S>)
}

pub fn discovery_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(discovery::<S>)
}

/// The keys that verify access tokens
///
/// RFC 7517: the public keys (Ed25519 or P-256) whose tokens verify now, a key about to sign
/// included, so a cache of this set knows a key before its first token. Empty when tokens are
/// signed with an HS256 secret, which is never published. Cacheable for 5 minutes.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses((status = 200, description = "The key set.", body = KeySet,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")))),
)]
async fn jwks<S: Store>(State(auth): State<AppState<S>>) -> Response {
    public(&*auth.jwks())
}

/// Where and how access tokens are verified
///
/// The part of OpenID Connect Discovery 1.0 that JWT middleware reads to configure itself: the
/// issuer tokens name, the key set's URL, the signing algorithm, and where tokens come from.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "tokens",
    responses((status = 200, description = "The service's metadata.", body = Metadata,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")))),
)]
async fn discovery<S: Store>(State(auth): State<AppState<S>>) -> Response {
    let base = auth.public_url();
    public(&Metadata {
        issuer: auth.token_rules().issuer.clone(),
        jwks_uri: format!("{base}{JWKS_PATH}"),
        token_endpoint: format!("{base}/api/login/"),
        id_token_signing_alg_values_supported: auth
            .verifying_algorithms()
            .into_iter()
            .map(SigningAlgorithm::name)
            .collect(),
        token_endpoint_auth_methods_supported: ["none"],
        grant_types_supported: ["password", "refresh_token"],
    })
}

/// The service's metadata, as OpenID Connect Discovery names it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "issuer": "https://auth.example.org",
    "jwks_uri": "https://auth.example.org/.well-known/jwks.json",
    "token_endpoint": "https://auth.example.org/api/login/",
    "id_token_signing_alg_values_supported": ["EdDSA"],
    "token_endpoint_auth_methods_supported": ["none"],
    "grant_types_supported": ["password", "refresh_token"]
}))]
struct Metadata {
    /// The `iss` of every access token.
    issuer: String,
    /// The key set that verifies them.
    jwks_uri: String,
    /// Where tokens are obtained: the login.
    token_endpoint: String,
    /// The algorithms of the keys that verify now, the signing one first: while the
    /// algorithm changes, tokens of both are valid.
    #[schema(value_type = Vec<String>)]
    id_token_signing_alg_values_supported: Vec<&'static str>,
    /// Clients authenticate with the user's credentials only.
    #[schema(value_type = Vec<String>)]
    token_endpoint_auth_methods_supported: [&'static str; 1],
    /// A login trades a password for tokens; a refresh token is traded for new ones.
    #[schema(value_type = Vec<String>)]
    grant_types_supported: [&'static str; 2],
}

/// A JSON answer that anyone may cache for five minutes: published, not personal.
fn public(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(body) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(error) => ApiError::Internal(error.to_string()).into_response(),
    }
}
