//! `GET /api/sessions/`, `DELETE /api/sessions/{id}/`, `POST /api/logout/all/`: the caller's
//! sessions (OWASP ASVS V3.3.4: a user can see and end their sessions), and
//! `POST /api/me/password/`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, post};
use serde::Serialize;

use super::body::{Body, field_name, request_body};
use super::extract::AuthUser;
use super::{ApiError, AppState, Reply, Success};
use crate::auth::AuthError;
use crate::auth::password::{NewPassword, Password};
use crate::domain::audit::Origin;
use crate::domain::clock::rfc3339;
use crate::store::{SessionInfo, Store};

pub fn list_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(list::<S>)
}

pub fn one_routes<S: Store>() -> MethodRouter<AppState<S>> {
    delete(end_one::<S>)
}

pub fn logout_all_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(logout_all::<S>)
}

pub fn password_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(change_password::<S>)
}

/// A live session as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "0b6f9a54-5d43-4b6e-a1c9-3f0e7d2a8b11",
    "created": "2026-05-04T09:12:44Z",
    "last_seen": "2026-05-04T09:40:02Z",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "ip": "203.0.113.7",
    "current": true,
    "amr": ["pwd", "otp"]
}))]
struct Session {
    #[schema(format = "uuid")]
    id: String,
    #[schema(format = DateTime)]
    created: String,
    /// When its tokens were last issued.
    #[schema(format = DateTime)]
    last_seen: String,
    user_agent: Option<String>,
    ip: Option<String>,
    /// The session of the token this request carries.
    current: bool,
    /// How its login was authenticated (RFC 8176): `["pwd"]`, or `["pwd", "otp"]` with a
    /// one-time code.
    #[schema(value_type = Vec<String>)]
    amr: &'static [&'static str],
}

/// List my sessions
///
/// Every live session of the caller's account, each with where and when it started.
#[utoipa::path(
    get,
    path = "/api/sessions/",
    tag = "sessions",
    operation_id = "list_sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "The live sessions.", body = Vec<Session>)),
)]
async fn list<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
) -> Result<Reply<Vec<Session>>, ApiError> {
    let sessions = auth.sessions(&caller.claims).await?;
    let shown = sessions
        .into_iter()
        .map(|session: SessionInfo| Session {
            id: session.id.hyphenated().to_string(),
            created: rfc3339(session.created_at),
            last_seen: rfc3339(session.last_seen_at),
            user_agent: session.user_agent,
            ip: session.client_ip,
            current: session.id == caller.claims.sid,
            amr: session.amr.methods(),
        })
        .collect();
    Ok(Reply(StatusCode::OK, shown))
}

/// End one of my sessions
///
/// Its refresh token and access tokens stop working at once. Another user's session, or no
/// session at all, is simply not found.
#[utoipa::path(
    delete,
    path = "/api/sessions/{id}/",
    tag = "sessions",
    operation_id = "end_session",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "The id of a session, as listed.")),
    responses(
        (status = 204, description = "The session ended."),
        (status = 404, description = "The caller has no such live session.",
            body = super::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn end_one<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session_id = uuid::Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    if auth.end_session(&caller.claims, session_id, origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Log out everywhere
///
/// Ends every session of the caller's account, this one included.
#[utoipa::path(
    post,
    path = "/api/logout/all/",
    tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "Every session ended.", body = SessionsEnded)),
)]
async fn logout_all<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
) -> Result<Reply<SessionsEnded>, ApiError> {
    let ended = auth.end_all_sessions(&caller.claims, origin).await?;
    Ok(Reply(
        StatusCode::OK,
        SessionsEnded {
            success: "All sessions ended.",
            ended,
        },
    ))
}

/// The caller's sessions ended.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"success": "All sessions ended.", "ended": 3}))]
struct SessionsEnded {
    #[schema(value_type = String)]
    success: &'static str,
    /// How many sessions there were.
    ended: u64,
}

request_body! {
    /// The current password and a new one (a JSON object or a form).
    #[schema(example = json!({
        "old_password": "correct horse battery",
        "new_password": "a much longer passphrase"
    }))]
    pub struct PasswordChange {
        #[schema(value_type = String, format = Password)]
        pub old_password: Password,
        /// The rules of a new account's password.
        #[schema(value_type = String, format = Password, max_length = 1024)]
        pub new_password: NewPassword,
    }
}

/// Change my password
///
/// The new password meets the rules of a new account's. Every other session ends: whoever
/// held one may have known the old password.
#[utoipa::path(
    post,
    path = "/api/me/password/",
    tag = "profile",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "The password changed.", body = Success,
            example = json!({"success": "Password changed."})),
        (status = 400, description = "The old password is wrong, or the new one breaks a rule.",
            body = super::openapi::BadRequest,
            example = json!({
                "old_password": ["Your old password was entered incorrectly. Please enter it again."]
            })),
    ),
)]
async fn change_password<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
    Body(body): Body<PasswordChange>,
) -> Result<Reply<Success>, ApiError> {
    auth.change_password(
        &caller.claims,
        &caller.profile.email,
        body.old_password,
        body.new_password,
        origin,
    )
    .await
    .map_err(|error| match error {
        AuthError::WrongPassword => {
            ApiError::wrong_password(field_name!(PasswordChange, old_password))
        }
        AuthError::Refused(refusal) => ApiError::refused(
            refusal,
            field_name!(PasswordChange, new_password),
            field_name!(PasswordChange, new_password),
        ),
        other => other.into(),
    })?;
    Ok(Reply(StatusCode::OK, Success::new("Password changed.")))
}
