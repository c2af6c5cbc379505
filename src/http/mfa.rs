//! `GET /api/me/mfa/`, `POST, DELETE /api/me/mfa/totp/`, `POST /api/me/mfa/totp/confirm/`:
//! the caller's second factor (an authenticator app's one-time codes, RFC 6238) and its
//! recovery codes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;

use super::body::{Body, Text, field_name, request_body};
use super::error::{FieldErrors, NON_FIELD_ERRORS};
use super::extract::AuthUser;
use super::{ApiError, AppState, Reply};
use crate::auth::AuthError;
use crate::auth::mfa::Proof;
use crate::auth::password::Password;
use crate::domain::audit::Origin;
use crate::store::Store;

pub fn status_routes<S: Store>() -> MethodRouter<AppState<S>> {
    get(status::<S>)
}

pub fn totp_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(enrol::<S>).delete(disable::<S>)
}

pub fn confirm_routes<S: Store>() -> MethodRouter<AppState<S>> {
    post(confirm::<S>)
}

/// The caller's second factors.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"totp": true, "recovery_codes_left": 9}))]
struct MfaStatus {
    /// A confirmed authenticator: logins need a one-time code.
    totp: bool,
    /// Recovery codes not used yet.
    recovery_codes_left: i64,
}

/// A new authenticator, to add to an app: scan the QR code, or type the secret.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "otpauth_url": "otpauth://totp/restful-auth:ann@example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=restful-auth&algorithm=SHA1&digits=6&period=30",
    "qr_svg": "<svg xmlns=\"http://www.w3.org/2000/svg\" …</svg>"
}))]
struct Enrolment {
    /// The shared secret, base32 (RFC 4648), for typing into an app.
    secret: String,
    /// The Key URI an app reads from the QR code.
    otpauth_url: String,
    /// `otpauth_url` as a QR code, an SVG image.
    qr_svg: String,
}

/// The recovery codes, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"recovery_codes": ["kq3d-x7mn-p2wa-r4tz", "…"]}))]
struct RecoveryCodes {
    /// Ten codes, each good for one login without the app. Only their digests are kept.
    recovery_codes: Vec<String>,
}

request_body! {
    /// A code of the authenticator being set up.
    #[schema(example = json!({"code": "123456"}))]
    pub struct TotpConfirmation {
        /// The 6-digit code the app shows now.
        #[schema(value_type = String, pattern = "^[0-9]{6}$")]
        pub code: Text,
    }
}

request_body! {
    /// Proof that the caller is the owner: a current one-time code, or the password.
    #[schema(example = json!({"code": "123456"}))]
    pub struct TotpRemoval {
        /// The 6-digit code the app shows now.
        #[schema(value_type = String, required = false, pattern = "^[0-9]{6}$")]
        pub code: Option<Text>,
        /// Instead of the code: the account's password.
        #[schema(value_type = String, format = Password, required = false)]
        pub password: Option<Password>,
    }
}

/// Show my second factors
///
/// Whether logins need a one-time code, and how many recovery codes are left.
#[utoipa::path(
    get,
    path = "/api/me/mfa/",
    tag = "two-factor",
    operation_id = "show_mfa",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's second factors.", body = MfaStatus)),
)]
async fn status<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
) -> Result<Reply<MfaStatus>, ApiError> {
    let status = auth.mfa_status(&caller.claims).await?;
    Ok(Reply(
        StatusCode::OK,
        MfaStatus {
            totp: status.totp,
            recovery_codes_left: status.recovery_codes_left,
        },
    ))
}

/// Set up an authenticator app
///
/// A new secret, as a QR code to scan and as text to type: it is pending, and changes nothing
/// at login, until a code of it is confirmed at `/api/me/mfa/totp/confirm/`. Asking again
/// replaces a pending one.
#[utoipa::path(
    post,
    path = "/api/me/mfa/totp/",
    tag = "two-factor",
    operation_id = "enrol_totp",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The pending authenticator.", body = Enrolment,
            links(("confirm" = (operation_id = "confirm_totp",
                description = "Confirm it with the code the app shows.")))),
        (status = 400, description = "Two-factor login is already on.",
            body = super::openapi::BadRequest,
            example = json!({"non_field_errors": ["Two-factor login is already on: turn it off first."]})),
    ),
)]
async fn enrol<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
) -> Result<Reply<Enrolment>, ApiError> {
    let enrolment = auth
        .enrol_totp(&caller.claims, &caller.profile.email)
        .await?;
    let qr_svg = qr_svg(&enrolment.otpauth_url)?;
    Ok(Reply(
        StatusCode::CREATED,
        Enrolment {
            secret: enrolment.secret,
            otpauth_url: enrolment.otpauth_url,
            qr_svg,
        },
    ))
}

/// `text` as a QR code in SVG, without the XML declaration, so that it can be put in a page.
fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|error| ApiError::Internal(format!("no QR code for the Key URI: {error}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// Turn two-factor login on
///
/// Confirms the pending authenticator with the code it shows now; from then on a login
/// needs a one-time code. Answers ten recovery codes, shown this once: keep them somewhere
/// safe.
#[utoipa::path(
    post,
    path = "/api/me/mfa/totp/confirm/",
    tag = "two-factor",
    operation_id = "confirm_totp",
    security(("bearer" = [])),
    request_body = TotpConfirmation,
    responses(
        (status = 200, description = "Two-factor login is on.", body = RecoveryCodes),
        (status = 400, description = "The code is wrong, or no authenticator is pending.",
            body = super::openapi::BadRequest,
            example = json!({"code": ["Invalid code."]})),
    ),
)]
async fn confirm<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
    Body(body): Body<TotpConfirmation>,
) -> Result<Reply<RecoveryCodes>, ApiError> {
    let codes = auth
        .confirm_totp(&caller.claims, &body.code.0, origin)
        .await
        .map_err(|error| refused(error, field_name!(TotpConfirmation, code), NON_FIELD_ERRORS))?;
    Ok(Reply(
        StatusCode::OK,
        RecoveryCodes {
            recovery_codes: codes.iter().map(|code| code.reveal().to_owned()).collect(),
        },
    ))
}

/// Turn two-factor login off
///
/// With a current one-time code, or the password. Every other session ends.
#[utoipa::path(
    delete,
    path = "/api/me/mfa/totp/",
    tag = "two-factor",
    operation_id = "disable_totp",
    security(("bearer" = [])),
    request_body = TotpRemoval,
    responses(
        (status = 204, description = "Two-factor login is off."),
        (status = 400, description = "The code or the password is wrong, or neither was sent.",
            body = super::openapi::BadRequest,
            example = json!({"code": ["Invalid code."]})),
        (status = 404, description = "Two-factor login is not on.",
            body = super::openapi::Detail, example = json!({"detail": "Not found."})),
        (status = 429, response = super::openapi::Throttled),
    ),
)]
async fn disable<S: Store>(
    State(auth): State<AppState<S>>,
    caller: AuthUser,
    origin: Origin,
    Body(body): Body<TotpRemoval>,
) -> Result<StatusCode, ApiError> {
    let proof = match (body.code, body.password) {
        (Some(Text(code)), _) => Proof::Code(code),
        (None, Some(password)) => Proof::Password(password),
        (None, None) => {
            let mut errors = FieldErrors::default();
            errors.add(
                NON_FIELD_ERRORS,
                "Send the current one-time code or the password.",
            );
            return Err(ApiError::Fields(errors));
        }
    };
    auth.disable_totp(&caller.claims, proof, origin)
        .await
        .map_err(|error| {
            refused(
                error,
                field_name!(TotpRemoval, code),
                field_name!(TotpRemoval, password),
            )
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A refusal filed under the body's own fields.
fn refused(error: AuthError, code_field: &'static str, password_field: &'static str) -> ApiError {
    match error {
        AuthError::Mfa(refusal) => ApiError::mfa_refused(refusal, code_field, password_field),
        other => other.into(),
    }
}
