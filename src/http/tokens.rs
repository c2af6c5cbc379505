//! `POST /api/login/`, `/api/refresh/` and `/api/logout/`: sessions and their tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use serde::Serialize;

use super::body::{Body, Text, request_body};
use super::{ApiError, AppState, Reply, Success};
use crate::auth::TokenPair;
use crate::auth::mfa::SecondFactor;
use crate::auth::password::Password;
use crate::auth::tokens::RefreshToken;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn login_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(login::<S>)
}

pub fn refresh_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(refresh::<S>)
}

pub fn logout_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(logout::<S>)
}

request_body! {
    /// The email and password of an account (a JSON object or a form), and, for an account
    /// with two-factor login on, a one-time code or a recovery code.
    #[schema(example = json!({"email": "ann@example.org", "password": "correct horse battery"}))]
    pub struct Credentials {
        /// The address the account was registered with, in any case.
        #[schema(value_type = String, format = Email)]
        pub email: Text,
        #[schema(value_type = String, format = Password)]
        pub password: Password,
        /// The 6-digit code of the authenticator app, when the account has two-factor login
        /// on (without one, the right password answers 401 mfa_required).
        #[schema(value_type = String, required = false, pattern = "^[0-9]{6}$")]
        pub otp: Option<Text>,
        /// Instead of the one-time code: one of the recovery codes, each good for one login.
        #[schema(value_type = String, required = false)]
        pub recovery_code: Option<Text>,
    }
}

impl Credentials {
    /// What the login sends besides the password: the code, if any (`otp` first).
    fn second_factor(&mut self) -> SecondFactor {
        match (self.otp.take(), self.recovery_code.take()) {
            (Some(Text(code)), _) => SecondFactor::Otp(code),
            (None, Some(Text(code))) => SecondFactor::RecoveryCode(code),
            (None, None) => SecondFactor::None,
        }
    }
}

request_body! {
    /// A refresh token (a JSON object or a form).
    #[schema(example = json!({"refresh_token": "6f1c2a4e-3b7d-4c8e-9f10-2a3b4c5d6e7f"}))]
    pub struct RefreshTokenBody {
        /// The latest refresh token of the session, as handed out by login or refresh.
        #[schema(value_type = String, format = "uuid")]
        pub refresh_token: RefreshToken,
    }
}

/// The body of a successful login or refresh.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJl",
    "refresh_token": "6f1c2a4e-3b7d-4c8e-9f10-2a3b4c5d6e7f",
    "token_type": "Bearer",
    "expires_in": 30
}))]
struct Tokens {
    /// A JWT (EdDSA by default, or as `--jwt-algorithm` says) for `Authorization: Bearer …`;
    /// verified without the database.
    access_token: String,
    /// Single use: trade it at `/api/refresh/` for new tokens, or end the session at
    /// `/api/logout/`. Presenting a consumed one again ends the session.
    #[schema(format = "uuid")]
    refresh_token: String,
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Seconds the access token is valid for.
    expires_in: i64,
}

impl From<TokenPair> for Reply<Tokens> {
    fn from(pair: TokenPair) -> Self {
        Reply(
            StatusCode::OK,
            Tokens {
                access_token: pair.access_token,
                refresh_token: pair.refresh_token.reveal(),
                token_type: "Bearer",
                expires_in: pair.expires_in,
            },
        )
    }
}

/// Log in
///
/// Checks the email and password and starts a new session: an access token for
/// `/api/me/` and a refresh token for new ones. A wrong password, an unknown email and an
/// inactive account all answer the same 401.
///
/// An account with two-factor login on needs `otp` (or `recovery_code`) too: without it the
/// right password answers 401 `mfa_required`; a wrong, used or stale code answers 401
/// `mfa_invalid`. The access token's `amr` says which: `["pwd"]` or `["pwd", "otp"]`.
#[utoipa::path(
    post,
    path = "/api/login/",
    tag = "sessions",
    request_body = Credentials,
    responses(
        (status = 200, description = "A new session's tokens.", body = Tokens),
        (status = 400, description = "A field is missing or blank.",
            body = super::openapi::BadRequest,
            example = json!({"password": ["This field is required."]})),
        (status = 401, description = "The credentials match no active account; or the password \
            is right and a one-time code is missing (`mfa_required`) or wrong (`mfa_invalid`).",
            body = super::openapi::Detail,
            examples(
                ("credentials" = (value = json!(
                    {"detail": "No active account found with the given credentials"}))),
                ("mfa_required" = (value = json!(
                    {"detail": "A one-time code is required.", "code": "mfa_required"}))),
                ("mfa_invalid" = (value = json!(
                    {"detail": "Invalid one-time code.", "code": "mfa_invalid"}))),
            )),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn login<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(mut credentials): Body<Credentials>,
) -> Result<Reply<Tokens>, ApiError> {
    let second = credentials.second_factor();
    let pair = auth
        .login(&credentials.email.0, credentials.password, second, origin)
        .await?;
    Ok(pair.into())
}

/// Refresh the tokens
///
/// Consumes the refresh token and answers a new access token and a new refresh token for the
/// same session. A refresh token that was already consumed ends its whole session.
#[utoipa::path(
    post,
    path = "/api/refresh/",
    tag = "sessions",
    request_body = RefreshTokenBody,
    responses(
        (status = 200, description = "The session's new tokens.", body = Tokens),
        (status = 400, description = "The token is missing or not a UUID.",
            body = super::openapi::BadRequest,
            example = json!({"refresh_token": ["Must be a valid UUID."]})),
        (status = 401, description = "The token is unknown, expired, consumed or its session ended.",
            body = super::openapi::Detail,
            example = json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn refresh<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<RefreshTokenBody>,
) -> Result<Reply<Tokens>, ApiError> {
    Ok(auth.refresh(body.refresh_token, origin).await?.into())
}

/// Log out
///
/// Ends the session of the refresh token: it and the session's access tokens stop working at
/// once.
#[utoipa::path(
    post,
    path = "/api/logout/",
    tag = "sessions",
    request_body = RefreshTokenBody,
    responses(
        (status = 200, description = "The session ended.", body = Success),
        (status = 400, description = "The token is missing or not a UUID.",
            body = super::openapi::BadRequest,
            example = json!({"refresh_token": ["This field is required."]})),
        (status = 401, description = "The token is unknown, expired, consumed or its session ended.",
            body = super::openapi::Detail,
            example = json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn logout<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<RefreshTokenBody>,
) -> Result<Reply<Success>, ApiError> {
    auth.logout(body.refresh_token, origin).await?;
    Ok(Reply(StatusCode::OK, Success::new("User logged out.")))
}
