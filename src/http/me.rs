//! `GET, PUT, PATCH /api/me/`: the caller's profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};

use super::body::{Body, request_body};
use super::extract::AuthUser;
use super::{ApiError, AppState, Reply};
use crate::auth::username::Username;
use crate::domain::Profile;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(show).put(replace::<S>).patch(update::<S>)
}

request_body! {
    /// A new username (PUT: required).
    #[schema(example = json!({"username": "Ann Lee"}))]
    pub struct ProfileReplacement {
        /// 1 to 150 characters after trimming, any but control characters; need not be unique.
        #[schema(value_type = String, min_length = 1, max_length = 150)]
        pub username: Username,
    }
}

request_body! {
    /// The fields to change (PATCH: any may be left out). `id` and `email` are read-only.
    #[schema(example = json!({"username": "Ann Lee"}))]
    pub struct ProfileUpdate {
        /// 1 to 150 characters after trimming, any but control characters; need not be unique.
        #[schema(value_type = String, min_length = 1, max_length = 150, required = false)]
        pub username: Option<Username>,
    }
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
    request_body = ProfileReplacement,
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
    origin: Origin,
    Body(body): Body<ProfileReplacement>,
) -> Result<Reply<Profile>, ApiError> {
    save(&auth, caller, origin, Some(body.username)).await
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
    request_body = ProfileUpdate,
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
    origin: Origin,
    Body(body): Body<ProfileUpdate>,
) -> Result<Reply<Profile>, ApiError> {
    save(&auth, caller, origin, body.username).await
}

/// `id` and `email` are read-only: whatever else the body holds is ignored.
async fn save<S: Store>(
    auth: &AppState<S>,
    caller: AuthUser,
    origin: Origin,
    username: Option<Username>,
) -> Result<Reply<Profile>, ApiError> {
    let profile = match username {
        Some(username) => auth
            .rename(&caller.claims, username, origin)
            .await?
            .ok_or(ApiError::InvalidAccessToken)?,
        None => caller.profile,
    };
    Ok(Reply(StatusCode::OK, profile))
}
