//! The one error type of the HTTP layer and its mapping to the contract's status codes and
//! DRF-style bodies. Internal details go to the log line of the request, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::json;

use crate::auth::mfa::MfaRefusal;
use crate::auth::{AuthError, Refusal};
use crate::store::StoreError;

/// Field errors in the order the fields were checked: `{"email": ["…"], "password": ["…"]}`.
#[derive(Debug, Default, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[schema(
    value_type = std::collections::BTreeMap<String, Vec<String>>,
    example = json!({"email": ["Enter a valid email address."]}),
)]
pub struct FieldErrors(Vec<(&'static str, Vec<String>)>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        match self.0.iter_mut().find(|(name, _)| *name == field) {
            Some((_, messages)) => messages.push(message.into()),
            None => self.0.push((field, vec![message.into()])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid fields")]
    Fields(FieldErrors),
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("body is not an object")]
    NotAnObject(&'static str),
    #[error("body too large")]
    PayloadTooLarge,
    #[error("body not received in time")]
    BodyTimeout,
    /// A request line or header hyper could not parse (it answers these itself).
    #[error("malformed request")]
    MalformedRequest,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("no credentials")]
    NotAuthenticated,
    #[error("malformed authorization header")]
    BadAuthorizationHeader,
    #[error("access token not valid")]
    InvalidAccessToken,
    #[error("refresh token not valid")]
    InvalidRefreshToken,
    /// Answered as [`ApiError::InvalidRefreshToken`]; logged as the security event it is.
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("bad credentials")]
    InvalidCredentials,
    #[error("email address not verified")]
    EmailNotVerified,
    /// The password was right; a one-time code is needed too.
    #[error("one-time code required")]
    MfaRequired,
    #[error("one-time code invalid")]
    MfaInvalid,
    /// The admin API's token was not the one configured.
    #[error("wrong admin token")]
    InvalidAdminToken,
    #[error("throttled")]
    Throttled { retry_after: i64 },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Fields(_) | ApiError::MalformedBody(_) | ApiError::NotAnObject(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::MalformedRequest => StatusCode::BAD_REQUEST,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAuthenticated
            | ApiError::BadAuthorizationHeader
            | ApiError::InvalidAccessToken
            | ApiError::InvalidRefreshToken
            | ApiError::RefreshTokenReused
            | ApiError::InvalidCredentials
            | ApiError::EmailNotVerified
            | ApiError::MfaRequired
            | ApiError::MfaInvalid
            | ApiError::InvalidAdminToken => StatusCode::UNAUTHORIZED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> serde_json::Value {
        match self {
            ApiError::Fields(errors) => json!(errors),
            ApiError::MalformedBody(reason) => {
                json!({"detail": format!("JSON parse error - {reason}")})
            }
            ApiError::NotAnObject(got) => json!({"non_field_errors": [
                format!("Invalid data. Expected a dictionary, but got {got}.")
            ]}),
            ApiError::PayloadTooLarge => json!({"detail": "Request body too large."}),
            ApiError::BodyTimeout => json!({"detail": "Request body not received in time."}),
            // DRF's `ParseError` default.
            ApiError::MalformedRequest => json!({"detail": "Malformed request."}),
            ApiError::HeadersTooLarge => json!({"detail": "Request header fields too large."}),
            ApiError::UriTooLong => json!({"detail": "Request URI too long."}),
            ApiError::UnsupportedMediaType(media_type) => json!({
                "detail": format!("Unsupported media type \"{media_type}\" in request.")
            }),
            ApiError::NotAuthenticated => {
                json!({"detail": "Authentication credentials were not provided."})
            }
            ApiError::BadAuthorizationHeader => json!({
                "detail": "Authorization header must contain two space-delimited values",
                "code": "bad_authorization_header",
            }),
            ApiError::InvalidAccessToken => json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
            }),
            ApiError::InvalidRefreshToken | ApiError::RefreshTokenReused => json!({
                "detail": "Token is invalid or expired",
                "code": "token_not_valid",
            }),
            ApiError::InvalidCredentials => {
                json!({"detail": "No active account found with the given credentials"})
            }
            ApiError::EmailNotVerified => json!({
                "detail": "Email address is not verified.",
                "code": "email_not_verified",
            }),
            ApiError::MfaRequired => json!({
                "detail": "A one-time code is required.",
                "code": "mfa_required",
            }),
            ApiError::MfaInvalid => json!({
                "detail": "Invalid one-time code.",
                "code": "mfa_invalid",
            }),
            // DRF's `TokenAuthentication` message.
            ApiError::InvalidAdminToken => json!({"detail": "Invalid token."}),
            ApiError::Throttled { retry_after } => json!({
                "detail": format!("Request was throttled. Expected available in {retry_after} seconds.")
            }),
            ApiError::NotFound => json!({"detail": "Not found."}),
            ApiError::MethodNotAllowed(method) => {
                json!({"detail": format!("Method \"{method}\" not allowed.")})
            }
            ApiError::Unavailable(_) => {
                json!({"detail": "Service temporarily unavailable, try again later."})
            }
            ApiError::Internal(_) => json!({"detail": "A server error occurred."}),
        }
    }
}

/// What a request's log line reports beyond its status (the client is told less).
#[derive(Debug, Clone)]
pub enum Incident {
    /// A server error, and why.
    Failed(String),
    /// The service cannot take the request now, and why.
    Unavailable(String),
    /// A consumed refresh token came back; its session was ended.
    RefreshTokenReused,
}

impl ApiError {
    fn incident(&self) -> Option<Incident> {
        match self {
            ApiError::Internal(detail) => Some(Incident::Failed(detail.clone())),
            ApiError::Unavailable(detail) => Some(Incident::Unavailable(detail.clone())),
            ApiError::RefreshTokenReused => Some(Incident::RefreshTokenReused),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = super::Reply(status, self.body()).into_response();
        if let Some(incident) = self.incident() {
            response.extensions_mut().insert(incident);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        if let ApiError::Throttled { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl ApiError {
    /// The error of a request that hyper refused with `status` before any handler saw it.
    pub(crate) fn of_unparsable_request(status: StatusCode) -> Option<ApiError> {
        match status {
            StatusCode::BAD_REQUEST => Some(ApiError::MalformedRequest),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(ApiError::HeadersTooLarge),
            StatusCode::URI_TOO_LONG => Some(ApiError::UriTooLong),
            _ => None,
        }
    }

    /// The answer's status, headers and serialized body, for a writer that is not a router.
    pub(crate) fn into_parts(self) -> (StatusCode, header::HeaderMap, Vec<u8>) {
        let body = serde_json::to_vec(&self.body()).expect("a JSON value serializes");
        let response = self.into_response();
        (response.status(), response.headers().clone(), body)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::EmailTaken
            | StoreError::Database(_)
            | StoreError::SchemaMismatch { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

/// DRF's key for the errors of no one field.
pub(crate) const NON_FIELD_ERRORS: &str = "non_field_errors";

impl ApiError {
    /// A use case's refusal, its email's and its password's messages filed under the fields
    /// of the request body that hold them.
    pub fn refused(
        refusal: Refusal,
        email_field: &'static str,
        password_field: &'static str,
    ) -> ApiError {
        let mut errors = FieldErrors::default();
        for message in refusal.email {
            errors.add(email_field, message);
        }
        for message in refusal.password {
            errors.add(password_field, message);
        }
        ApiError::Fields(errors)
    }

    /// A mailed link's token opened nothing: the one message, under `field`, whatever the
    /// reason (unknown, used, expired, replaced, malformed).
    pub fn invalid_link(field: &'static str) -> ApiError {
        let mut errors = FieldErrors::default();
        errors.add(field, crate::auth::recovery::INVALID_LINK);
        ApiError::Fields(errors)
    }

    /// The old password given was wrong: Django's `PasswordChangeForm` message, under `field`.
    pub fn wrong_password(field: &'static str) -> ApiError {
        let mut errors = FieldErrors::default();
        errors.add(
            field,
            "Your old password was entered incorrectly. Please enter it again.",
        );
        ApiError::Fields(errors)
    }
}

impl ApiError {
    /// A refused change to the second factor: a wrong code or password under the fields of
    /// the request body that hold them, a factor that is not there as not found.
    pub fn mfa_refused(
        refusal: MfaRefusal,
        code_field: &'static str,
        password_field: &'static str,
    ) -> ApiError {
        let mut errors = FieldErrors::default();
        match refusal {
            MfaRefusal::InvalidCode => errors.add(code_field, "Invalid code."),
            MfaRefusal::WrongPassword => errors.add(
                password_field,
                "Your password was entered incorrectly. Please enter it again.",
            ),
            MfaRefusal::AlreadyEnabled => errors.add(
                NON_FIELD_ERRORS,
                "Two-factor login is already on: turn it off first.",
            ),
            MfaRefusal::NothingPending => errors.add(
                NON_FIELD_ERRORS,
                "No authenticator is being set up: start with POST /api/me/mfa/totp/.",
            ),
            MfaRefusal::NotEnabled => return ApiError::NotFound,
        }
        ApiError::Fields(errors)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidCredentials => ApiError::InvalidCredentials,
            AuthError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            AuthError::RefreshTokenReused => ApiError::RefreshTokenReused,
            AuthError::Throttled { retry_after } => ApiError::Throttled { retry_after },
            AuthError::EmailNotVerified => ApiError::EmailNotVerified,
            AuthError::InvalidLink => ApiError::invalid_link("token"),
            AuthError::Overloaded(overloaded) => ApiError::Unavailable(overloaded.to_string()),
            // A handler whose body has the fields these name files them there
            // (`ApiError::refused`); elsewhere they are DRF's errors of no one field.
            AuthError::WrongPassword => ApiError::wrong_password(NON_FIELD_ERRORS),
            AuthError::Refused(refusal) => {
                ApiError::refused(refusal, NON_FIELD_ERRORS, NON_FIELD_ERRORS)
            }
            AuthError::MfaRequired => ApiError::MfaRequired,
            AuthError::MfaInvalid => ApiError::MfaInvalid,
            AuthError::Mfa(refusal) => ApiError::mfa_refused(refusal, "code", "password"),
            AuthError::Store(error) => error.into(),
        }
    }
}
