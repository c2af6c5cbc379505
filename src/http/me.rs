//! `GET, PUT, PATCH /api/me/`: the caller's profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};

use super::error::FieldErrors;
use super::extract::{AuthUser, Fields, Trim};
use super::{ApiError, AppState, Json};
use crate::auth::Profile;
use crate::auth::username::Username;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(show).put(replace::<S>).patch(update::<S>)
}

async fn show(caller: AuthUser) -> Json<Profile> {
    Json(StatusCode::OK, caller.profile)
}

/// PUT: `username` is required.
async fn replace<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    fields: Fields,
) -> Result<Json<Profile>, ApiError> {
    let mut errors = FieldErrors::default();
    let username = fields.required_text("username", Trim::Yes, &mut errors);
    save(&auth, caller, username.as_deref(), errors).await
}

/// PATCH: only the fields sent change.
async fn update<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    fields: Fields,
) -> Result<Json<Profile>, ApiError> {
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
) -> Result<Json<Profile>, ApiError> {
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
    Ok(Json(StatusCode::OK, profile))
}
