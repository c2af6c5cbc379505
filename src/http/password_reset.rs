//! `POST /api/password/reset/` and `/api/password/reset/confirm/`: a forgotten password, reset
//! through a link mailed to the account's address.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};

use super::body::{Body, field_name, request_body};
use super::{ApiError, AppState, Message, Reply};
use crate::auth::AuthError;
use crate::auth::email::Email;
use crate::auth::password::NewPassword;
use crate::auth::recovery::LinkToken;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn request_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(request::<S>)
}

pub fn confirm_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(confirm::<S>)
}

request_body! {
    /// The address of the account whose password was forgotten.
    #[schema(example = json!({"email": "ann@example.org"}))]
    pub struct PasswordResetRequest {
        #[schema(value_type = String, format = Email, max_length = 254)]
        pub email: Email,
    }
}

request_body! {
    /// The token of a reset link and the new password.
    #[schema(example = json!({
        "token": "q3Zb1m0cQ9n2yE7wXkKp4s8Vd5tR6uHjL0aBcDeFgHi",
        "new_password": "a much longer passphrase"
    }))]
    pub struct PasswordResetConfirmation {
        /// What follows `#token=` in the link.
        #[schema(value_type = String)]
        pub token: LinkToken,
        /// The rules of a new account's password.
        #[schema(value_type = String, format = Password, max_length = 1024)]
        pub new_password: NewPassword,
    }
}

/// Ask for a password-reset link
///
/// Mails a link to the address if it is an active account's. The answer is the same, and as
/// quick, whether it is or not. The link opens `/reset/`, works once, and only until the
/// next one is asked for or its lifetime (30 minutes by default) is over.
#[utoipa::path(
    post,
    path = "/api/password/reset/",
    operation_id = "request_password_reset",
    tag = "password reset",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Asked; a link was mailed if the address has an account.",
            body = Message,
            example = json!({"detail": "If the address has an account, a link was sent."})),
        (status = 400, description = "The email is missing or invalid.",
            body = super::openapi::BadRequest,
            example = json!({"email": ["Enter a valid email address."]})),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn request<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<PasswordResetRequest>,
) -> Result<Reply<Message>, ApiError> {
    auth.request_password_reset(&body.email, origin).await?;
    Ok(Reply(
        StatusCode::ACCEPTED,
        Message::new("If the address has an account, a link was sent."),
    ))
}

/// Set a new password with a reset link
///
/// The token is what follows `#token=` in the mailed link. The new password meets the rules
/// of a new account's; every session of the account ends. The link is used up.
#[utoipa::path(
    post,
    path = "/api/password/reset/confirm/",
    operation_id = "confirm_password_reset",
    tag = "password reset",
    request_body = PasswordResetConfirmation,
    responses(
        (status = 200, description = "The password was reset.", body = Message,
            example = json!({"detail": "Password has been reset."})),
        (status = 400, description = "The link opens nothing (unknown, used, expired or \
            replaced by a newer one), or the new password breaks a rule.",
            body = super::openapi::BadRequest,
            example = json!({"token": ["Invalid or expired link."]})),
    ),
)]
async fn confirm<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<PasswordResetConfirmation>,
) -> Result<Reply<Message>, ApiError> {
    auth.confirm_password_reset(body.token, body.new_password, origin)
        .await
        .map_err(|error| match error {
            AuthError::InvalidLink => {
                ApiError::invalid_link(field_name!(PasswordResetConfirmation, token))
            }
            AuthError::Refused(refusal) => ApiError::refused(
                refusal,
                field_name!(PasswordResetConfirmation, new_password),
                field_name!(PasswordResetConfirmation, new_password),
            ),
            other => other.into(),
        })?;
    Ok(Reply(
        StatusCode::OK,
        Message::new("Password has been reset."),
    ))
}
