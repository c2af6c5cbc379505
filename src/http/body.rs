//! Request bodies. Each is one Rust type, declared with `request_body!` (below): the declaration is
//! its parsing from a JSON object or a url-encoded form (as DRF's parsers read them, every
//! field's error at once, with DRF's messages), its validation (each field's type can only be
//! built valid: [`FieldValue`]) and, through utoipa's `ToSchema`, its part of the OpenAPI
//! document. A handler takes it as [`Body<T>`].
//!
//! What needs the service (is the email taken, does the password follow the policy) is a rule
//! of the use case, checked once every field is well-formed, as DRF's `validate()` runs after
//! its fields'.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use super::error::{ApiError, FieldErrors};
use crate::auth::email::Email;
use crate::auth::password::{NewPassword, Password};
use crate::auth::tokens::RefreshToken;
use crate::auth::username::Username;

/// A request body of type `T`, read from the request's JSON or form body; a body whose fields
/// are not all valid is answered 400 with every field's errors.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: RequestBody> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = read_limited(request).await?;
        let fields = parse_body(content_type.as_deref(), &body)?;
        T::from_fields(&fields).map(Body)
    }
}

/// A type a request body is read into; implemented by the `request_body!` macro.
pub trait RequestBody: Sized {
    /// The body's field names, in the order they are declared (and documented).
    const FIELDS: &'static [&'static str];

    /// Every field read as its type, or every field's errors.
    fn from_fields(fields: &Fields) -> Result<Self, ApiError>;
}

/// Declares a request body: the struct, with the attributes given (docs, `#[schema(...)]`),
/// deriving `ToSchema` for the document, and its [`RequestBody`] reading, where each field is
/// read as its type's [`FieldValue`] under the field's own name.
macro_rules! request_body {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $type:ty ),* $(,)?
        }
    ) => {
        #[derive(Debug, utoipa::ToSchema)]
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $type, )*
        }

        impl $crate::http::body::RequestBody for $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn from_fields(
                fields: &$crate::http::body::Fields,
            ) -> Result<Self, $crate::http::ApiError> {
                let mut errors = $crate::http::error::FieldErrors::default();
                $( let $field = fields.read::<$type>(stringify!($field), &mut errors); )*
                match ($($field,)*) {
                    ($(Some($field),)*) => Ok(Self { $($field,)* }),
                    _ => Err($crate::http::ApiError::Fields(errors)),
                }
            }
        }
    };
}
pub(crate) use request_body;

/// The name of field `$field` of request body `$body`, checked by the compiler: how a handler
/// files an error of the use case under a field without spelling its name.
macro_rules! field_name {
    ($body:ty, $field:ident) => {{
        let _exists = |body: &$body| {
            let _ = &body.$field;
        };
        stringify!($field)
    }};
}
pub(crate) use field_name;

/// The value of one field, read as DRF's field of that kind reads it; `None` is a field left
/// out. The error is the message shown under the field's name.
pub trait FieldValue: Sized {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>>;
}

const REQUIRED: &str = "This field is required.";

/// Text, trimmed, as DRF's `CharField`: the email a login looks up, whatever it holds.
#[derive(Debug)]
pub struct Text(pub String);

impl FieldValue for Text {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        Ok(Text(text(value.ok_or(REQUIRED)?, Trim::Yes)?.into_owned()))
    }
}

/// A password as typed: kept as sent, surrounding white space included.
impl FieldValue for Password {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        Ok(Password::new(
            text(value.ok_or(REQUIRED)?, Trim::No)?.into_owned(),
        ))
    }
}

impl FieldValue for NewPassword {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        Ok(NewPassword::new(Password::read(value)?)?)
    }
}

impl FieldValue for Email {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        Ok(Email::parse(&text(value.ok_or(REQUIRED)?, Trim::Yes)?)?)
    }
}

impl FieldValue for Username {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        Ok(Username::parse(&text(value.ok_or(REQUIRED)?, Trim::Yes)?)?)
    }
}

/// DRF's `BooleanField`: JSON's `true`/`false`, `1`/`0`, and the words a form sends.
impl FieldValue for bool {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        const INVALID: &str = "Must be a valid boolean.";
        match value.ok_or(REQUIRED)? {
            Value::Bool(flag) => Ok(*flag),
            Value::Null => Err(NULL.into()),
            Value::Number(number) => match number.as_f64() {
                Some(1.0) => Ok(true),
                Some(0.0) => Ok(false),
                _ => Err(INVALID.into()),
            },
            Value::String(text) => match text.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "on" | "1" => Ok(true),
                "false" | "f" | "no" | "n" | "off" | "0" => Ok(false),
                _ => Err(INVALID.into()),
            },
            Value::Array(_) | Value::Object(_) => Err(INVALID.into()),
        }
    }
}

/// SimpleJWT's reading of a refresh token: DRF's `UUIDField`, any spelling Python accepts.
impl FieldValue for RefreshToken {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        match value.ok_or(REQUIRED)? {
            Value::Null => Err(NULL.into()),
            value => value
                .as_str()
                .and_then(|text| RefreshToken::parse(text.trim()))
                .ok_or("Must be a valid UUID.".into()),
        }
    }
}

/// A field that may be left out.
impl<T: FieldValue> FieldValue for Option<T> {
    fn read(value: Option<&Value>) -> Result<Self, Cow<'static, str>> {
        value.map(|value| T::read(Some(value))).transpose()
    }
}

const NULL: &str = "This field may not be null.";

/// Largest request body read; anything longer is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request's body may take to arrive, from when its handler starts reading it; set
/// by [`serve`](super::server::serve) on every request. Without it (a router driven in-process)
/// a body has as long as it takes.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

/// The fields of a JSON object or url-encoded form body; an empty body has no fields.
#[derive(Debug, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Reads `field` as a `T`; a failure is recorded in `errors` under `field`.
    pub fn read<T: FieldValue>(&self, field: &'static str, errors: &mut FieldErrors) -> Option<T> {
        T::read(self.0.get(field))
            .map_err(|message| errors.add(field, message))
            .ok()
    }
}

/// The fields of a body already read whole, given its `Content-Type` as sent: what [`Body`]
/// does after reading. Public as the fuzzing entry point.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Fields, ApiError> {
    // DRF reads no parser for an empty body: the fields are simply missing.
    if body.is_empty() {
        return Ok(Fields::default());
    }
    // DRF finds no parser for a body without a media type: 415 naming "".
    let content_type = content_type.unwrap_or_default();
    match media_type(content_type).as_deref() {
        Some("application/json") => parse_json(body),
        Some("application/x-www-form-urlencoded") => Ok(parse_form(body)),
        _ => Err(ApiError::UnsupportedMediaType(quoted_media_type(
            content_type,
        ))),
    }
}

/// The media type as the 415 message repeats it: the header may be as long as hyper allows
/// (kilobytes), the message need not be.
fn quoted_media_type(content_type: &str) -> String {
    const SHOWN: usize = 100;
    match content_type.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &content_type[..cut]),
        None => content_type.to_owned(),
    }
}

async fn read_limited(request: Request) -> Result<Bytes, ApiError> {
    let declared_too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64);
    if declared_too_large {
        return Err(ApiError::PayloadTooLarge);
    }
    let deadline = request.extensions().get::<BodyDeadline>().copied();
    let collecting = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    let collected = match deadline {
        Some(BodyDeadline(limit)) => tokio::time::timeout(limit, collecting)
            .await
            .map_err(|_| ApiError::BodyTimeout)?,
        None => collecting.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(error) => Err(ApiError::MalformedBody(error.to_string())),
    }
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(content_type: &str) -> Option<String> {
    content_type
        .parse::<mime::Mime>()
        .ok()
        .map(|mime| mime.essence_str().to_ascii_lowercase())
}

fn parse_json(body: &[u8]) -> Result<Fields, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(other) => Err(ApiError::NotAnObject(python_type_name(&other))),
        Err(error) => Err(ApiError::MalformedBody(error.to_string())),
    }
}

/// DRF names the type it got as Python does.
fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A repeated key keeps its last value, as Django's `QueryDict.get`.
fn parse_form(body: &[u8]) -> Fields {
    Fields(
        form_urlencoded::parse(body)
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect(),
    )
}

/// How a text field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trim {
    /// Surrounding white space is dropped, as DRF's `CharField` does by default.
    Yes,
    /// Kept as sent (passwords): only a value that is all white space counts as blank.
    No,
}

fn text(value: &Value, trim: Trim) -> Result<Cow<'_, str>, &'static str> {
    let raw: Cow<'_, str> = match value {
        Value::String(text) => Cow::Borrowed(text),
        Value::Number(number) => Cow::Owned(number.to_string()),
        Value::Null => return Err(NULL),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => return Err("Not a valid string."),
    };
    let trimmed = match raw {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
        Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
    };
    if trimmed.is_empty() {
        return Err("This field may not be blank.");
    }
    if trimmed.contains('\0') {
        return Err("Null characters are not allowed.");
    }
    Ok(match trim {
        Trim::Yes => trimmed,
        Trim::No => match value {
            Value::String(text) => Cow::Borrowed(text),
            _ => trimmed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_drf_boolean_field() {
        let fields =
            parse_json(br#"{"a": true, "b": "off", "c": 1, "d": "maybe", "e": null, "f": 2}"#)
                .unwrap();
        let mut errors = FieldErrors::default();
        assert_eq!(fields.read::<bool>("a", &mut errors), Some(true));
        assert_eq!(fields.read::<bool>("b", &mut errors), Some(false));
        assert_eq!(fields.read::<bool>("c", &mut errors), Some(true));
        for field in ["d", "e", "f"] {
            assert_eq!(fields.read::<bool>(field, &mut errors), None);
        }
        assert_eq!(
            serde_json::to_value(&errors).unwrap(),
            serde_json::json!({
                "d": ["Must be a valid boolean."],
                "e": ["This field may not be null."],
                "f": ["Must be a valid boolean."],
            })
        );
    }

    #[test]
    fn text_fields_follow_drf_char_field() {
        let fields = parse_json(
            br#"{"a": "  x  ", "b": 12, "c": null, "d": [], "e": "   ", "f": "a\u0000b"}"#,
        )
        .unwrap();
        let mut errors = FieldErrors::default();
        assert_eq!(fields.read::<Text>("a", &mut errors).unwrap().0, "x");
        let password: Password = fields.read("a", &mut errors).unwrap();
        assert_eq!(password.expose(), "  x  ");
        assert_eq!(fields.read::<Text>("b", &mut errors).unwrap().0, "12");
        for field in ["c", "d", "e", "f", "missing"] {
            assert!(fields.read::<Text>(field, &mut errors).is_none());
        }
        assert!(matches!(
            fields.read::<Option<Text>>("absent", &mut errors),
            Some(None)
        ));
        let body = serde_json::to_value(&errors).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "c": ["This field may not be null."],
                "d": ["Not a valid string."],
                "e": ["This field may not be blank."],
                "f": ["Null characters are not allowed."],
                "missing": ["This field is required."],
            })
        );
    }
}
