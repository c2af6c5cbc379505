//! `POST /api/login/`, `/api/refresh/` and `/api/logout/`: sessions and their tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use serde::Serialize;
use serde_json::json;

use super::error::FieldErrors;
use super::extract::{Fields, Trim};
use super::{ApiError, AppState, Json};
use crate::auth::password::Password;
use crate::auth::tokens::RefreshToken;
use crate::auth::{Client, TokenPair};
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

/// The body of a successful login or refresh.
#[derive(Serialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

impl From<TokenPair> for Json<Tokens> {
    fn from(pair: TokenPair) -> Self {
        Json(
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

async fn login<S: Store>(
    State(auth): State<AppState<S>>,
    client: Client,
    fields: Fields,
) -> Result<Json<Tokens>, ApiError> {
    let mut errors = FieldErrors::default();
    let email = fields.required_text("email", Trim::Yes, &mut errors);
    let password = fields.required_text("password", Trim::No, &mut errors);
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Fields(errors));
    };
    let pair = auth
        .login(&email, Password::new(password.into_owned()), client)
        .await?;
    Ok(pair.into())
}

async fn refresh<S: Store>(
    State(auth): State<AppState<S>>,
    fields: Fields,
) -> Result<Json<Tokens>, ApiError> {
    let token = refresh_token(&fields)?;
    Ok(auth.refresh(token).await?.into())
}

async fn logout<S: Store>(
    State(auth): State<AppState<S>>,
    fields: Fields,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.logout(refresh_token(&fields)?).await?;
    Ok(Json(StatusCode::OK, json!({"success": "User logged out."})))
}

/// The `refresh_token` field, as DRF's `UUIDField`.
fn refresh_token(fields: &Fields) -> Result<RefreshToken, ApiError> {
    let mut errors = FieldErrors::default();
    fields
        .required_text("refresh_token", Trim::Yes, &mut errors)
        .and_then(|raw| {
            RefreshToken::parse(&raw)
                .ok_or_else(|| errors.add("refresh_token", "Must be a valid UUID."))
                .ok()
        })
        .ok_or(ApiError::Fields(errors))
}
