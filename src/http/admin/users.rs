//! `GET /admin/users/`, `GET, PATCH, DELETE /admin/users/{id}/`,
//! `POST /admin/users/{id}/unlock/`: any account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;

use super::{AdminOrigin, ListQuery, Paginated, user_id};
use crate::auth::AuthError;
use crate::auth::admin::AccountUpdate;
use crate::auth::email::Email;
use crate::auth::username::Username;
use crate::domain::clock::rfc3339;
use crate::http::body::{Body, field_name, request_body};
use crate::http::{ApiError, AppState, Reply};
use crate::store::{AccountOverview, Store};

pub fn list_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(list::<S>)
}

pub fn one_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(show::<S>).patch(update::<S>).delete(delete::<S>)
}

pub fn unlock_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(unlock::<S>)
}

/// An account as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": 1,
    "email": "ann@example.org",
    "username": "Ann Lee",
    "is_active": true,
    "date_joined": "2026-05-04T09:12:44Z",
    "last_login": "2026-05-06T18:02:10Z",
    "sessions": 2
}))]
struct User {
    #[schema(value_type = i64)]
    id: crate::domain::UserId,
    email: String,
    username: String,
    /// An inactive account cannot log in and has no live session.
    is_active: bool,
    #[schema(format = DateTime)]
    date_joined: String,
    /// When its newest session started; `null` if it has none on record.
    #[schema(format = DateTime)]
    last_login: Option<String>,
    /// Its live sessions.
    sessions: i64,
}

impl From<AccountOverview> for User {
    fn from(found: AccountOverview) -> User {
        let account = found.account;
        User {
            id: account.id,
            email: account.email,
            username: account.username,
            is_active: account.is_active,
            date_joined: rfc3339(account.created_at),
            last_login: found.last_login.map(rfc3339),
            sessions: account.active_sessions,
        }
    }
}

/// List accounts
///
/// Oldest first; with `q`, only those whose email or username holds it, whatever its case.
#[utoipa::path(
    get,
    path = "/admin/users/",
    tag = "users",
    operation_id = "list_users",
    params(
        ("q" = Option<String>, Query, description = "Text the email or username holds."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Accounts per page: 20 unless given."),
        ("after" = Option<i64>, Query, description = "The `next` of the page before."),
    ),
    responses(
        (status = 200, description = "A page of accounts.", body = Paginated<User, i64>),
        (status = 400, description = "`limit` or `after` is not a number in range.",
            body = crate::http::openapi::BadRequest,
            example = json!({"limit": ["Ensure this value is less than or equal to 100."]})),
    ),
)]
async fn list<S: Store>(
    State(auth): State<AppState<S>>,
    query: ListQuery<crate::domain::UserId>,
) -> Result<Reply<Paginated<User, i64>>, ApiError> {
    let listed = auth.find_accounts(query.q.as_deref(), query.page).await?;
    let users = listed.items.into_iter().map(User::from).collect();
    Ok(Paginated::new(users, listed.next))
}

/// Show an account
#[utoipa::path(
    get,
    path = "/admin/users/{id}/",
    tag = "users",
    operation_id = "show_user",
    params(("id" = i64, Path, description = "The account's id.")),
    responses(
        (status = 200, description = "The account.", body = User),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn show<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Reply<User>, ApiError> {
    let found = auth.account_by_id(user_id(&id)?).await?;
    Ok(Reply(
        StatusCode::OK,
        found.ok_or(ApiError::NotFound)?.into(),
    ))
}

request_body! {
    /// The fields to change; any may be left out.
    #[schema(example = json!({"is_active": false}))]
    pub struct AccountPatch {
        /// A valid address that no other account has, whatever its case.
        #[schema(value_type = String, format = Email, max_length = 254, required = false)]
        pub email: Option<Email>,
        /// 1 to 150 characters after trimming, any but control characters.
        #[schema(value_type = String, min_length = 1, max_length = 150, required = false)]
        pub username: Option<Username>,
        /// `false` ends every session of the account and refuses its logins.
        #[schema(value_type = bool, required = false)]
        pub is_active: Option<bool>,
    }
}

/// Change an account
///
/// Only the fields sent change. Deactivating ends every session of the account at once.
#[utoipa::path(
    patch,
    path = "/admin/users/{id}/",
    tag = "users",
    operation_id = "update_user",
    params(("id" = i64, Path, description = "The account's id.")),
    request_body = AccountPatch,
    responses(
        (status = 200, description = "The account, changed.", body = User),
        (status = 400, description = "A field is invalid, or the email is another account's.",
            body = crate::http::openapi::BadRequest,
            example = json!({"email": ["user with this email already exists."]})),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn update<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    AdminOrigin(origin): AdminOrigin,
    Body(body): Body<AccountPatch>,
) -> Result<Reply<User>, ApiError> {
    let update = AccountUpdate {
        email: body.email,
        username: body.username,
        is_active: body.is_active,
    };
    let updated = auth
        .update_account(user_id(&id)?, update, origin)
        .await
        .map_err(|error| match error {
            AuthError::Refused(refusal) => ApiError::refused(
                refusal,
                field_name!(AccountPatch, email),
                field_name!(AccountPatch, email),
            ),
            other => other.into(),
        })?;
    Ok(Reply(
        StatusCode::OK,
        updated.ok_or(ApiError::NotFound)?.into(),
    ))
}

/// Delete an account
///
/// Erases it, with its sessions (their tokens stop working at once), the addresses known to
/// it and its throttle counters. Its audit events stay, marked `erased`.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/",
    tag = "users",
    operation_id = "delete_user",
    params(("id" = i64, Path, description = "The account's id.")),
    responses(
        (status = 204, description = "The account is gone."),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn delete<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    AdminOrigin(origin): AdminOrigin,
) -> Result<StatusCode, ApiError> {
    if auth.delete_account(user_id(&id)?, origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The throttle counters cleared.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"success": "Throttling cleared.", "cleared": 2}))]
struct Unlocked {
    #[schema(value_type = String)]
    success: &'static str,
    /// How many counters there were.
    cleared: u64,
}

/// Let a locked-out owner in
///
/// Clears the account's throttle counters (failed logins from every address, and wrong old
/// passwords): its next login is not throttled. The counts of an address across accounts
/// stay.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/unlock/",
    tag = "users",
    operation_id = "unlock_user",
    params(("id" = i64, Path, description = "The account's id.")),
    responses(
        (status = 200, description = "The counters are cleared.", body = Unlocked),
        (status = 404, description = "There is no such account.",
            body = crate::http::openapi::Detail, example = json!({"detail": "Not found."})),
    ),
)]
async fn unlock<S: Store>(
    State(auth): State<AppState<S>>,
    Path(id): Path<String>,
    AdminOrigin(origin): AdminOrigin,
) -> Result<Reply<Unlocked>, ApiError> {
    let cleared = auth.unlock(user_id(&id)?, origin).await?;
    let cleared = cleared.ok_or(ApiError::NotFound)?;
    Ok(Reply(
        StatusCode::OK,
        Unlocked {
            success: "Throttling cleared.",
            cleared,
        },
    ))
}
