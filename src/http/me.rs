//! `GET, PUT, PATCH /api/me/`: the caller's profile.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{MethodRouter, get};
use serde::Serialize;

use super::body::{Body, request_body};
use super::extract::AuthUser;
use super::{ApiError, AppState, Reply};
use crate::auth::username::Username;
use crate::domain::Profile;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(show::<S>).put(replace::<S>).patch(update::<S>)
}

/// Which fields to show: the contract's three by default (`id`, `username`, `email`), or
/// with `?fields=all` also `email_verified`. Other parameters are ignored, as DRF does.
#[derive(Debug, Clone, Copy, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Shown {
    /// `all` adds `email_verified`.
    #[param(value_type = Option<String>, example = "all")]
    fields: Option<()>,
}

impl<S: Send + Sync> FromRequestParts<S> for Shown {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let all = form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == "fields" && value == "all");
        Ok(Shown {
            fields: all.then_some(()),
        })
    }
}

/// The profile with every field (`?fields=all`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": 1, "username": "Ann Lee", "email": "ann@example.org", "email_verified": true
}))]
struct FullProfile {
    #[serde(flatten)]
    profile: Profile,
    /// Whether the owner proved the address theirs (`/api/email/verify/`).
    email_verified: bool,
}

/// What `GET /api/me/` shows.
#[derive(Serialize)]
#[serde(untagged)]
enum ShownProfile {
    Contract(Profile),
    All(FullProfile),
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
///
/// `id`, `username` and `email`; with `?fields=all`, also `email_verified`.
#[utoipa::path(
    get,
    path = "/api/me/",
    operation_id = "show_profile",
    tag = "profile",
    security(("bearer" = [])),
    params(Shown),
    responses((status = 200, description = "The caller's profile (with `?fields=all`, a \
        `FullProfile`).", body = Profile)),
)]
async fn show<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    shown: Shown,
) -> Result<Reply<ShownProfile>, ApiError> {
    let profile = caller.profile;
    if shown.fields.is_none() {
        return Ok(Reply(StatusCode::OK, ShownProfile::Contract(profile)));
    }
    let email_verified = auth.email_verified(profile.id).await?;
    Ok(Reply(
        StatusCode::OK,
        ShownProfile::All(FullProfile {
            profile,
            email_verified,
        }),
    ))
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
