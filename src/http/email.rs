//! `POST /api/email/verify/` and `/api/email/verify/confirm/`: proving that an account's
//! address is its owner's, through a link mailed to it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};

use super::body::{Body, field_name, request_body};
use super::extract::AuthUser;
use super::{ApiError, AppState, Message, Reply};
use crate::auth::AuthError;
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
    /// The token of a verification link.
    #[schema(example = json!({"token": "q3Zb1m0cQ9n2yE7wXkKp4s8Vd5tR6uHjL0aBcDeFgHi"}))]
    pub struct EmailConfirmation {
        /// What follows `#token=` in the link.
        #[schema(value_type = String)]
        pub token: LinkToken,
    }
}

/// Ask for a verification link
///
/// Mails a link to the caller's address, unless it is verified already. The link opens
/// `/verify/` and works once, for a day by default. A registration asks for one by itself
/// when the service sends mail.
#[utoipa::path(
    post,
    path = "/api/email/verify/",
    operation_id = "request_verification",
    tag = "profile",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Asked; a link was mailed unless the address is verified.",
            body = Message,
            example = json!({"detail": "If the address is not verified yet, a link was sent."})),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn request<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
) -> Result<Reply<Message>, ApiError> {
    auth.request_email_verification(caller.claims.user_id, &caller.profile.email, origin)
        .await?;
    Ok(Reply(
        StatusCode::ACCEPTED,
        Message::new("If the address is not verified yet, a link was sent."),
    ))
}

/// Verify my address with a link
///
/// The token is what follows `#token=` in the mailed link; it needs no access token. The
/// link is used up.
#[utoipa::path(
    post,
    path = "/api/email/verify/confirm/",
    operation_id = "confirm_verification",
    tag = "profile",
    request_body = EmailConfirmation,
    responses(
        (status = 200, description = "The address is verified.", body = Message,
            example = json!({"detail": "Email address verified."})),
        (status = 400, description = "The link opens nothing: unknown, used, expired, or for \
            an address the account no longer has.",
            body = super::openapi::BadRequest,
            example = json!({"token": ["Invalid or expired link."]})),
    ),
)]
async fn confirm<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<EmailConfirmation>,
) -> Result<Reply<Message>, ApiError> {
    auth.confirm_email(body.token, origin)
        .await
        .map_err(|error| match error {
            AuthError::InvalidLink => ApiError::invalid_link(field_name!(EmailConfirmation, token)),
            other => other.into(),
        })?;
    Ok(Reply(
        StatusCode::OK,
        Message::new("Email address verified."),
    ))
}
