//! The admin API: every account, its sessions and its throttling, for a back office. Served
//! on a listener of its own (`--admin-bind`), never on the public one, behind a bearer token
//! when one is configured; its own OpenAPI document at `/admin/schema/`, apart from the
//! public API's.
//!
//! The routes are listed here, so each endpoint is one hop away; the handlers are in a module
//! per resource (`users`, `sessions`, `audit`), the use cases in [`crate::auth::admin`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::error::FieldErrors;
use super::extract::read_limit;
use super::{ApiError, AppState, Options, Reply, observe, with_and_without_slash};
use crate::auth::admin::{AdminToken, Page};
use crate::domain::audit::{Actor, Origin};
use crate::store::Store;

mod audit;
mod sessions;
mod users;

pub use users::AccountPatch;

/// The admin API on `auth`, behind the request layers every API request passes; with
/// `token`, every request must carry it.
pub fn router<S: Store>(auth: AppState<S>, token: Option<AdminToken>) -> Router {
    let routes = routes::<S>()
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(observe::record))
        // Outside the routing: without the token, not even which paths exist is told.
        .layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ))
        .with_state(auth);
    super::behind_request_layers(routes, &Options::default())
}

/// Every route of the admin API.
fn routes<S: Store>() -> Router<AppState<S>> {
    let admin = [
        ("/admin/users", users::list_routes()),
        ("/admin/users/{id}", users::one_routes()),
        ("/admin/users/{id}/sessions", sessions::of_account_routes()),
        ("/admin/users/{id}/unlock", users::unlock_routes()),
        ("/admin/sessions/{id}", sessions::one_routes()),
        ("/admin/audit", audit::routes()),
        ("/admin/schema", get(schema)),
    ];
    admin
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            with_and_without_slash(router, path, methods)
        })
}

/// Refuses a request without the token (when one is configured): 401 as the public API's,
/// with the `Bearer` challenge.
async fn require_token(
    State(token): State<Arc<Option<AdminToken>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token.as_ref() {
        match super::extract::parse_bearer(request.headers()) {
            Ok(presented) if token.admits(presented) => {}
            Err(ApiError::NotAuthenticated) => return ApiError::NotAuthenticated.into_response(),
            _ => return ApiError::InvalidAdminToken.into_response(),
        }
    }
    next.run(request).await
}

/// Who made an admin request, as the audit log records it: the admin API, from the client's
/// address, with the request's user agent and id.
pub struct AdminOrigin(pub Origin);

impl<S: Send + Sync> FromRequestParts<S> for AdminOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(AdminOrigin(super::extract::origin_of(parts, Actor::Admin)))
    }
}

/// A list's query: `?limit=` (1 to 100, 20 when left out, as `/api/me/activity/` reads it),
/// `?after=<cursor>` (the `next` of the page before), and `?q=`, what a list filters by.
/// Other parameters are ignored, as DRF does.
pub struct ListQuery<C> {
    pub page: Page<C>,
    pub q: Option<String>,
}

/// What a list's `next` is: an account's id, a session's id.
pub trait Cursor: std::str::FromStr {
    /// DRF's message for a value that is not one.
    const INVALID: &'static str;
}

impl Cursor for crate::domain::UserId {
    const INVALID: &'static str = "A valid integer is required.";
}

impl Cursor for crate::domain::SessionId {
    const INVALID: &'static str = "Must be a valid UUID.";
}

impl<S: Send + Sync, C: Cursor> FromRequestParts<S> for ListQuery<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let (mut limit, mut after, mut q) = (None, None, None);
        let mut errors = FieldErrors::default();
        // A repeated parameter keeps its last value, as Django's `QueryDict.get`.
        let pairs = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes());
        for (name, value) in pairs {
            match name.as_ref() {
                "limit" => limit = read_limit(&value, &mut errors),
                "after" => match value.trim().parse() {
                    Ok(cursor) => after = Some(cursor),
                    Err(_) => errors.add("after", C::INVALID),
                },
                "q" => q = Some(value.trim().to_owned()).filter(|q| !q.is_empty()),
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Fields(errors));
        }
        Ok(ListQuery {
            page: Page::new(limit, after),
            q,
        })
    }
}

/// One page of a list, and the cursor of the next: `?after=<next>` asks for it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Paginated<T, C> {
    results: Vec<T>,
    /// `null` on the last page.
    next: Option<C>,
}

impl<T, C> Paginated<T, C> {
    pub fn new(results: Vec<T>, next: Option<C>) -> Reply<Paginated<T, C>> {
        Reply(StatusCode::OK, Paginated { results, next })
    }
}

/// The id in an admin path; one that is not a number names nothing.
fn user_id(id: &str) -> Result<crate::domain::UserId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// The admin API's OpenAPI document
///
/// Every admin endpoint; the public API's document (`/api/schema/` on the public listener)
/// holds none of them.
#[utoipa::path(
    get,
    path = "/admin/schema/",
    tag = "documentation",
    responses((status = 200, description = "The OpenAPI document.", body = serde_json::Value)),
)]
async fn schema() -> Reply<&'static Document> {
    Reply(StatusCode::OK, document())
}

/// The admin API's document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: std::sync::LazyLock<Document> = std::sync::LazyLock::new(AdminDoc::openapi);
    &DOCUMENT
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "restful-auth admin API",
        description = "Every account, its sessions and its throttling, for a back office. \
            Served only on the `--admin-bind` address, never on the public one. With \
            `--admin-token-file`, every request carries `Authorization: Bearer <token>`.\n\n\
            Bodies and errors are the public API's: JSON or a form, DRF-style errors. Lists \
            answer `{\"results\": [...], \"next\": <cursor or null>}`: `?limit=` (default 20, \
            at most 100) and `?after=<next>` for the page after. Every change is recorded in \
            the audit log with `actor` `admin`.",
    ),
    paths(
        users::list,
        users::show,
        users::update,
        users::delete,
        users::unlock,
        sessions::list,
        sessions::end_all,
        sessions::end_one,
        audit::list,
        schema,
    ),
    components(schemas(super::openapi::Detail)),
    modifiers(&AdminSecurity),
    tags(
        (name = "users", description = "Accounts, found by id or searched by email or username."),
        (name = "sessions", description = "Any account's live sessions, and ending them."),
        (name = "audit", description = "The audit log: every security event, who acted and from where."),
        (name = "documentation", description = "This document."),
    ),
)]
struct AdminDoc;

/// The admin token, as the document's security scheme, required by every operation.
struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, document: &mut Document) {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The content of `--admin-token-file`, when one is configured.",
                        ))
                        .build(),
                ),
            );
        let unauthorized = utoipa::openapi::ResponseBuilder::new()
            .description("No token, or not the admin token (when one is configured).")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(Ref::from_schema_name("Detail"))))
                    .example(Some(serde_json::json!({"detail": "Invalid token."})))
                    .build(),
            )
            .build();
        for item in document.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation.security =
                    Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
                        &str,
                        [&str; 0],
                        &str,
                    >("admin_token", [])]);
                operation
                    .responses
                    .responses
                    .insert("401".into(), RefOr::T(unauthorized.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    #[test]
    fn the_token_is_read_from_the_bearer_scheme_only() {
        let token = AdminToken::new("s3cret").unwrap();
        let admitted = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            super::super::extract::parse_bearer(&headers)
                .is_ok_and(|presented| token.admits(presented))
        };
        assert!(admitted("Bearer s3cret"));
        assert!(admitted("bearer  s3cret "));
        assert!(!admitted("Basic s3cret"));
        assert!(!admitted("Bearer s3cret extra"));
        assert!(!admitted("Bearer S3CRET"));
    }
}
