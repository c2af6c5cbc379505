//! `POST /api/register/`: a new account from an email and a password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use serde::Serialize;

use super::extract::{Fields, Trim};
use super::{ApiError, AppState, Reply, error::FieldErrors};
use crate::auth::email::Email;
use crate::auth::password::{self, Password};
use crate::auth::{AuthError, Client};
use crate::store::{Store, StoreError};

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(register::<S>)
}

const EMAIL_TAKEN: &str = "user with this email already exists.";

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
#[utoipa::path(
    post,
    path = "/api/register/",
    tag = "accounts",
    request_body = super::openapi::NewAccount,
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
    client: Client,
    fields: Fields,
) -> Result<Reply<Registered>, ApiError> {
    auth.throttle_registration(&client).await?;
    let mut errors = FieldErrors::default();
    let email = fields
        .required_text("email", Trim::Yes, &mut errors)
        .and_then(|raw| {
            Email::parse(&raw)
                .map_err(|message| errors.add("email", message))
                .ok()
        });
    if let Some(email) = &email
        && auth.is_registered(email).await?
    {
        errors.add("email", EMAIL_TAKEN);
    }
    let password = new_password(
        &fields,
        "password",
        &auth,
        email.as_ref().map_or("", Email::as_str),
        &mut errors,
    );
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(ApiError::Fields(errors));
    };

    match auth.register(email.clone(), password).await {
        Ok(id) => Ok(Reply(
            StatusCode::CREATED,
            Registered {
                id,
                email: email.as_str().to_owned(),
            },
        )),
        // Lost a race with another registration of the same address.
        Err(AuthError::Store(StoreError::EmailTaken)) => {
            let mut errors = FieldErrors::default();
            errors.add("email", EMAIL_TAKEN);
            Err(ApiError::Fields(errors))
        }
        Err(error) => Err(error.into()),
    }
}

/// A new password from `field`, checked against the length bound and the password policy;
/// every rule it breaks is recorded in `errors`.
pub(super) fn new_password<S: Store>(
    fields: &Fields,
    field: &'static str,
    auth: &AppState<S>,
    email: &str,
    errors: &mut FieldErrors,
) -> Option<Password> {
    let raw = fields.required_text(field, Trim::No, errors)?;
    let violations = if raw.chars().count() > password::MAX_LEN {
        vec![format!(
            "Ensure this field has no more than {} characters.",
            password::MAX_LEN
        )]
    } else {
        auth.password_policy().violations(&raw, email)
    };
    if violations.is_empty() {
        return Some(Password::new(raw.into_owned()));
    }
    for message in violations {
        errors.add(field, message);
    }
    None
}
