//! `POST /api/register/`: a new account from an email and a password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use serde::Serialize;

use super::extract::{Fields, Trim};
use super::{ApiError, AppState, Json, error::FieldErrors};
use crate::auth::email::Email;
use crate::auth::password::{self, Password};
use crate::store::{Store, StoreError};

pub fn routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(register::<S>)
}

const EMAIL_TAKEN: &str = "user with this email already exists.";

#[derive(Serialize)]
struct Registered {
    id: i64,
    email: String,
}

async fn register<S: Store>(
    State(auth): State<AppState<S>>,
    fields: Fields,
) -> Result<Json<Registered>, ApiError> {
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
    let password = fields
        .required_text("password", Trim::No, &mut errors)
        .and_then(|raw| {
            let violations = password_violations(&auth, &raw, email.as_ref());
            let valid = violations.is_empty();
            violations
                .into_iter()
                .for_each(|message| errors.add("password", message));
            valid.then(|| Password::new(raw.into_owned()))
        });
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(ApiError::Fields(errors));
    };

    match auth.register(email.clone(), password).await {
        Ok(id) => Ok(Json(
            StatusCode::CREATED,
            Registered {
                id,
                email: email.as_str().to_owned(),
            },
        )),
        // Lost a race with another registration of the same address.
        Err(StoreError::EmailTaken) => {
            let mut errors = FieldErrors::default();
            errors.add("email", EMAIL_TAKEN);
            Err(ApiError::Fields(errors))
        }
        Err(error) => Err(error.into()),
    }
}

fn password_violations<S: Store>(
    auth: &AppState<S>,
    raw: &str,
    email: Option<&Email>,
) -> Vec<String> {
    if raw.chars().count() > password::MAX_LEN {
        return vec![format!(
            "Ensure this field has no more than {} characters.",
            password::MAX_LEN
        )];
    }
    auth.password_policy()
        .violations(raw, email.map_or("", Email::as_str))
}
