//! `GET /api/me/activity/`: the caller's own audit events, failed logins against the account
//! included (OWASP ASVS V6: a user can see attempts on their account and notice an attack).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};
use serde::Serialize;

use super::extract::{AuthUser, Page};
use super::{ApiError, AppState, Reply};
use crate::domain::clock::rfc3339;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(list::<S>)
}

/// One event of the caller's account.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": 412,
    "time": "2026-05-04T09:12:44Z",
    "event": "login.failed",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "current_session": false
}))]
struct Activity {
    /// Pass the last one seen as `before` for the next page.
    id: i64,
    #[schema(format = DateTime)]
    time: String,
    /// `login.succeeded`, `login.failed`, `session.ended`, `password.changed`, …
    event: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// The event belongs to the session of the token this request carries.
    current_session: bool,
}

/// My account's activity
///
/// What happened to the caller's account, newest first: logins (failed ones too, whoever
/// made them), sessions ended, password and profile changes. `limit` (at most 100, 20 when
/// left out) events older than the event `before`.
#[utoipa::path(
    get,
    path = "/api/me/activity/",
    tag = "profile",
    operation_id = "list_activity",
    security(("bearer" = [])),
    params(Page),
    responses(
        (status = 200, description = "The caller's events, newest first.", body = Vec<Activity>),
        (status = 400, description = "`limit` or `before` is not a number in range.",
            body = super::openapi::BadRequest,
            example = json!({"limit": ["Ensure this value is less than or equal to 100."]})),
    ),
)]
async fn list<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    page: Page,
) -> Result<Reply<Vec<Activity>>, ApiError> {
    let events = auth
        .activity(&caller.claims, page.before, page.limit)
        .await?;
    let shown = events
        .into_iter()
        .map(|event| Activity {
            id: event.id,
            time: rfc3339(event.time),
            current_session: event.session_id == Some(caller.claims.sid),
            event: event.event,
            ip: event.ip,
            user_agent: event.user_agent,
        })
        .collect();
    Ok(Reply(StatusCode::OK, shown))
}
