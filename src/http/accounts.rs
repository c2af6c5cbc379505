//! `POST /api/register/`: a new account from an email and a password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use serde::Serialize;

use super::body::{Body, field_name, request_body};
use super::{ApiError, AppState, Reply};
use crate::auth::AuthError;
use crate::auth::email::Email;
use crate::auth::password::NewPassword;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(register::<S>)
}

request_body! {
    /// A new account's email and password (a JSON object or a form).
    #[schema(example = json!({"email": "ann@example.org", "password": "correct horse battery"}))]
    pub struct NewAccount {
        /// A valid address of at most 254 characters, unique whatever its case. Stored
        /// trimmed, with its domain lower-cased; it is also the new account's username.
        #[schema(value_type = String, format = Email, max_length = 254)]
        pub email: Email,
        /// At least 8 characters (configurable) and at most 1024; not a common password, not
        /// entirely numeric, not too similar to the email.
        #[schema(value_type = String, format = Password, max_length = 1024)]
        pub password: NewPassword,
    }
}

/// The account created.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "email": "ann@example.org"}))]
struct Registered {
    id: i64,
    /// As stored: trimmed, with its domain lower-cased.
    #[schema(format = Email)]
    email: String,
}

/// Create an account
///
/// From an email and a password. The new account's `username` is its email; log in next.
/// When the service sends mail, a link to verify the address is mailed to it.
#[utoipa::path(
    post,
    path = "/api/register/",
    tag = "accounts",
    request_body = NewAccount,
    responses(
        (status = 201, description = "The account was created.", body = Registered),
        (status = 400, description = "Every invalid field, each with its messages.",
            body = super::openapi::BadRequest,
            example = json!({
                "email": ["user with this email already exists."],
                "password": [
                    "This password is too short. It must contain at least 8 characters.",
                    "This password is entirely numeric."
                ]
            })),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn register<S: Store>(
    State(auth): State<AppState<S>>,
    origin: Origin,
    Body(body): Body<NewAccount>,
) -> Result<Reply<Registered>, ApiError> {
    auth.throttle_registration(&origin).await?;
    let email = body.email.as_str().to_owned();
    let id = auth
        .register(body.email, body.password, origin.clone())
        .await
        .map_err(|error| match error {
            AuthError::Refused(refusal) => ApiError::refused(
                refusal,
                field_name!(NewAccount, email),
                field_name!(NewAccount, password),
            ),
            other => other.into(),
        })?;
    auth.mail_verification_of_new_account(id, origin);
    Ok(Reply(StatusCode::CREATED, Registered { id, email }))
}
