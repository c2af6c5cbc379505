//! `GET, PUT, PATCH /api/me/`: the caller's profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};

use super::error::FieldErrors;
use super::extract::{AuthUser, Fields, Trim};
use super::{ApiError, AppState, Reply};
use crate::auth::username::Username;
use crate::domain::Profile;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(show).put(replace::<S>).patch(update::<S>)
}

/// Show my profile
#[utoipa::path(
    get,
    path = "/api/me/",
    operation_id = "show_profile",
    tag = "profile",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's profile.", body = Profile)),
)]
async fn show(caller: AuthUser) -> Reply<Profile> {
    Reply(StatusCode::OK, caller.profile)
}

/// Replace my username
///
/// PUT: `username` is required. `id` and `email` are read-only: sent, they are ignored.
#[utoipa::path(
    put,
    path = "/api/me/",
    operation_id = "replace_profile",
    tag = "profile",
    security(("bearer" = [])),
    request_body = super::openapi::ProfileReplacement,
    responses(
        (status = 200, description = "The updated profile.", body = Profile),
        (status = 400, description = "The username is missing or invalid.",
            body = super::openapi::BadRequest,
            example = json!({"username": ["This field is required."]})),
    ),
)]
async fn replace<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    fields: Fields,
) -> Result<Reply<Profile>, ApiError> {
    let mut errors = FieldErrors::default();
    let username = fields.required_text("username", Trim::Yes, &mut errors);
    save(&auth, caller, username.as_deref(), errors).await
}

/// Change my profile
///
/// PATCH: only the fields sent change. `id` and `email` are read-only: sent, they are ignored.
#[utoipa::path(
    patch,
    path = "/api/me/",
    operation_id = "update_profile",
    tag = "profile",
    security(("bearer" = [])),
    request_body = super::openapi::ProfileUpdate,
    responses(
        (status = 200, description = "The profile, changed.", body = Profile),
        (status = 400, description = "The username is invalid.",
            body = super::openapi::BadRequest,
            example = json!({"username": ["This field may not be blank."]})),
    ),
)]
async fn update<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    fields: Fields,
) -> Result<Reply<Profile>, ApiError> {
    let mut errors = FieldErrors::default();
    let username = fields.optional_text("username", Trim::Yes, &mut errors);
    save(&auth, caller, username.as_deref(), errors).await
}

/// `id` and `email` are read-only: whatever else the body holds is ignored.
async fn save<S: Store>(
    auth: &AppState<S>,
    caller: AuthUser,
    username: Option<&str>,
    mut errors: FieldErrors,
) -> Result<Reply<Profile>, ApiError> {
    let username = username.and_then(|raw| {
        Username::parse(raw)
            .map_err(|message| errors.add("username", message))
            .ok()
    });
    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }
    let profile = match username {
        Some(username) => auth
            .rename(&caller.claims, username)
            .await?
            .ok_or(ApiError::InvalidAccessToken)?,
        None => caller.profile,
    };
    Ok(Reply(StatusCode::OK, profile))
}
