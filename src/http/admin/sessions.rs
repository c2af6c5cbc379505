//! `GET, DELETE /admin/users/{id}/sessions/` and `DELETE /admin/sessions/{id}/`: any
//! account's live sessions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get};
use serde::Serialize;

use super::{AdminOrigin, ListQuery, Paginated, user_id};
use crate::domain::SessionId;
use crate::domain::clock::rfc3339;
use crate::http::{ApiError, AppState, Reply};
use crate::store::{SessionInfo, Store};

pub fn of_account_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(list::<S>).delete(end_all::<S>)
}

pub fn one_routes<S: Store>() -> MethodRouter<AppState<S>> {
    delete(end_one::<S>)
}

/// A live session of an account.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "0b6f9a54-5d43-4b6e-a1c9-3f0e7d2a8b11",
    "created": "2026-05-04T09:12:44Z",
    "last_seen": "2026-05-04T09:40:02Z",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "ip": "203.0.113.7"
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
}

impl From<SessionInfo> for Session {
    fn from(session: SessionInfo) -> Session {
        Session {
            id: session.id.hyphenated().to_string(),
            created: rfc3339(session.created_at),
            last_seen: rfc3339(session.last_seen_at),
            user_agent: session.user_agent,
            ip: session.client_ip,
        }
    }
}

/// List an account's sessions
///
/// Its live sessions, newest first.
#[utoipa::path(
    get,
    path = "/admin/users/{id}/sessions/",
    tag = "sessions",
    operation_id = "list_user_sessions",
    params(
        ("id" = i64, Path, description = "The account's id."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Sessions per page: 20 unless given."),
        ("after" = Option<String>, Query, format = "uuid", description = "The `next` of the page before."),
    ),
    responses(
        (status = 200, description = "A page of live sessions.", body = Paginated<Session, String>),
        (status = 400, description = "`limit` or `after` is not one in range.",
            body = crate::http::openapi::BadRequest,
            example = json!({"after": ["Must be a valid UUID."]})),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn list<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    query: ListQuery<SessionId>,
) -> Result<Reply<Paginated<Session, String>>, ApiError> {
    let listed = auth.account_sessions(user_id(&id)?, query.page).await?;
    let listed = listed.ok_or(ApiError::NotFound)?;
    let sessions = listed.items.into_iter().map(Session::from).collect();
    let next = listed.next.map(|id| id.hyphenated().to_string());
    Ok(Paginated::new(sessions, next))
}

/// An account's sessions ended.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"success": "All sessions ended.", "ended": 3}))]
struct SessionsEnded {
    #[schema(value_type = String)]
    success: &'static str,
    /// How many sessions were live.
    ended: u64,
}

/// End an account's sessions
///
/// Every live session of the account ends: its refresh and access tokens stop working at
/// once. The account can still log in.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/sessions/",
    tag = "sessions",
    operation_id = "end_user_sessions",
    params(("id" = i64, Path, description = "The account's id.")),
    responses(
        (status = 200, description = "Every session ended.", body = SessionsEnded),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn end_all<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    AdminOrigin(origin): AdminOrigin,
) -> Result<Reply<SessionsEnded>, ApiError> {
    let ended = auth.end_account_sessions(user_id(&id)?, origin).await?;
    Ok(Reply(
        StatusCode::OK,
        SessionsEnded {
            success: "All sessions ended.",
            ended: ended.ok_or(ApiError::NotFound)?,
        },
    ))
}

/// End a session
///
/// Ends one live session, whoever's it is: its refresh and access tokens stop working at once.
#[utoipa::path(
    delete,
    path = "/admin/sessions/{id}/",
    tag = "sessions",
    operation_id = "end_any_session",
    params(("id" = String, Path, format = "uuid", description = "The session's id.")),
    responses(
        (status = 204, description = "The session ended."),
        (status = 404, description = "There is no such live session.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn end_one<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    AdminOrigin(origin): AdminOrigin,
) -> Result<StatusCode, ApiError> {
    let session_id: SessionId = uuid::Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    if auth.end_any_session(session_id, origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
