//! `GET /admin/audit/`: the audit log, filtered as `restful-auth audit` filters it.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::{MethodRouter, get};

use super::{ListQuery, Paginated};
use crate::config::parse_lifetime;
use crate::domain::audit::{AuditQuery, EventName, Recorded};
use crate::http::error::FieldErrors;
use crate::http::{ApiError, AppState, Reply};
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(list::<S>)
}

/// What the log is filtered by: `?user=<id>`, `?event=<name>`, `?since=<duration>` (`1h`,
/// `7days`: the rows of that last stretch of time). Other parameters are the page's, or
/// ignored.
struct Filters {
    user_id: Option<i64>,
    event: Option<EventName>,
    /// How far back, in seconds.
    since: Option<i64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Filters {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut filters = Filters {
            user_id: None,
            event: None,
            since: None,
        };
        let mut errors = FieldErrors::default();
        let pairs = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes());
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_ref() {
                "user" => match value.parse() {
                    Ok(id) => filters.user_id = Some(id),
                    Err(_) => errors.add("user", "A valid integer is required."),
                },
                "event" => match value.parse() {
                    Ok(event) => filters.event = Some(event),
                    // DRF's ChoiceField message.
                    Err(_) => errors.add("event", format!("\"{value}\" is not a valid choice.")),
                },
                "since" => match parse_lifetime(value) {
                    Ok(since) => {
                        filters.since = Some(i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
                    }
                    Err(_) => errors.add("since", "Enter a duration such as 1h or 7days."),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(filters)
        } else {
            Err(ApiError::Fields(errors))
        }
    }
}

/// Read the audit log
///
/// Every security event, newest first: logins (failed and throttled ones too), sessions ended,
/// refresh-token reuse, changes to accounts and keys, each with who acted (`user`, `admin`,
/// `system`, `cli`), from where, and the request's id.
#[utoipa::path(
    get,
    path = "/admin/audit/",
    tag = "audit",
    operation_id = "list_audit_events",
    params(
        ("user" = Option<i64>, Query, description = "Only the events of this account's id (an erased account's events keep it)."),
        ("event" = Option<String>, Query, description = "Only events of this name, e.g. `login.failed`."),
        ("since" = Option<String>, Query, description = "Only events of this last stretch of time, e.g. `1h`, `7days`."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Events per page: 20 unless given."),
        ("after" = Option<i64>, Query, description = "The `next` of the page before."),
    ),
    responses(
        (status = 200, description = "A page of events, newest first.", body = Paginated<Recorded, i64>),
        (status = 400, description = "A filter or the page is not one in range.",
            body = crate::http::openapi::BadRequest,
            example = json!({"event": ["\"login.maybe\" is not a valid choice."]})),
    ),
)]
async fn list<S: Store>(
    State(auth): State<AppState<S>>,
    filters: Filters,
    query: ListQuery<i64>,
) -> Result<Reply<Paginated<Recorded, i64>>, ApiError> {
    let filters = AuditQuery {
        user_id: filters.user_id,
        event: filters.event,
        since: filters.since.map(|since| auth.now().saturating_sub(since)),
        ..AuditQuery::default()
    };
    let listed = auth.audit_page(filters, query.page).await?;
    Ok(Paginated::new(listed.items, listed.next))
}
