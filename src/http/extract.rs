//! Extractors: the request body as DRF's JSON and form parsers see it, the authenticated caller,
//! and where a request came from.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use super::error::{ApiError, FieldErrors};
use crate::auth::tokens::AccessClaims;
use crate::auth::{Auth, Client};
use crate::domain::{Profile, SessionId, UserId};
use crate::store::Store;

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

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = read_limited(request).await?;
        parse_body(content_type.as_deref(), &body)
    }
}

/// The fields of a body already read whole, given its `Content-Type` as sent: what the
/// [`Fields`] extractor does after reading. Public as the fuzzing entry point.
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
pub enum Trim {
    /// Surrounding white space is dropped, as DRF's `CharField` does by default.
    Yes,
    /// Kept as sent (passwords): only a value that is all white space counts as blank.
    No,
}

impl Fields {
    /// A required field of any type; only its presence and non-null-ness are checked.
    pub fn required_value(&self, field: &'static str, errors: &mut FieldErrors) -> Option<&Value> {
        match self.0.get(field) {
            None => errors.add(field, "This field is required."),
            Some(Value::Null) => errors.add(field, "This field may not be null."),
            Some(value) => return Some(value),
        }
        None
    }

    /// A required text field, checked as DRF's `CharField(allow_blank=False)`; a failure is
    /// recorded in `errors` under `field`. Numbers are read as their text, as DRF does.
    pub fn required_text(
        &self,
        field: &'static str,
        trim: Trim,
        errors: &mut FieldErrors,
    ) -> Option<Cow<'_, str>> {
        let result = match self.0.get(field) {
            None => Err("This field is required."),
            Some(value) => text(value, trim),
        };
        result.map_err(|message| errors.add(field, message)).ok()
    }

    /// Like [`required_text`](Self::required_text), for a field that may be left out.
    pub fn optional_text(
        &self,
        field: &'static str,
        trim: Trim,
        errors: &mut FieldErrors,
    ) -> Option<Cow<'_, str>> {
        self.0
            .contains_key(field)
            .then(|| self.required_text(field, trim, errors))
            .flatten()
    }
}

fn text(value: &Value, trim: Trim) -> Result<Cow<'_, str>, &'static str> {
    let raw: Cow<'_, str> = match value {
        Value::String(text) => Cow::Borrowed(text),
        Value::Number(number) => Cow::Owned(number.to_string()),
        Value::Null => return Err("This field may not be null."),
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

/// The caller of an authenticated endpoint: a valid access token of a live session whose
/// account is active, checked in the one query that loads the profile.
#[derive(Debug)]
pub struct AuthUser {
    pub claims: AccessClaims,
    pub profile: Profile,
}

impl<S: Store> FromRequestParts<Arc<Auth<S>>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, auth: &Arc<Auth<S>>) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        let claims = auth
            .verify_access_token(token)
            .map_err(|_| ApiError::InvalidAccessToken)?;
        let profile = auth
            .profile(&claims)
            .await?
            .ok_or(ApiError::InvalidAccessToken)?;
        if let Some(requester) = parts.extensions.get::<Arc<Requester>>() {
            requester.authenticated_as(claims.user_id, claims.sid);
        }
        Ok(AuthUser { claims, profile })
    }
}

/// SimpleJWT's reading of `Authorization`: another scheme means "no credentials" (another
/// authenticator might own it); `Bearer` must be followed by exactly one token.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parse_bearer(&parts.headers)
}

/// The token of the `Authorization` header in `headers`, read as [`AuthUser`] reads it.
/// Public as the fuzzing entry point.
pub fn parse_bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::NotAuthenticated)?;
    let mut words = header
        .as_bytes()
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty());
    match words.next() {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => {}
        _ => return Err(ApiError::NotAuthenticated),
    }
    match (words.next(), words.next()) {
        (Some(token), None) => std::str::from_utf8(token).map_err(|_| ApiError::InvalidAccessToken),
        _ => Err(ApiError::BadAuthorizationHeader),
    }
}

/// Where a request came from: recorded with the session it starts.
impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Bounded: the header is the client's to fill, the table is ours to keep small.
        const MAX_USER_AGENT: usize = 512;
        let user_agent = parts.headers.get(header::USER_AGENT).map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(MAX_USER_AGENT)
                .collect()
        });
        let ClientAddress(address) = ClientAddress::of(parts);
        let ip = address.map(|address| address.to_string());
        Ok(Client { user_agent, ip })
    }
}

/// The client's address alone (after trusted proxies), for the endpoints that throttle by it
/// but record nothing of the client: a refresh need not copy the user agent.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    fn of(parts: &Parts) -> ClientAddress {
        ClientAddress(
            parts
                .extensions
                .get::<Arc<Requester>>()
                .and_then(|requester| requester.address),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress::of(parts))
    }
}

/// Who sent a request, as far as it is known: the client's address, and the account and
/// session once [`AuthUser`] has accepted the request's token. The log middleware puts it in
/// the request's extensions before the request is routed, so the address is worked out once,
/// and writes it on the request's line after the answer.
#[derive(Debug)]
pub struct Requester {
    /// The client address (see `client_ip`); none for a request that came over no socket
    /// (a router driven in-process).
    pub address: Option<IpAddr>,
    caller: OnceLock<(UserId, SessionId)>,
}

impl Requester {
    /// The requester of `request` as it arrives, before anyone has authenticated it.
    pub fn of(request: &Request, trusted: &TrustedProxies) -> Requester {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
        let forwarded = request.headers().get_all(X_FORWARDED_FOR);
        let address = peer.map(|ConnectInfo(peer)| client_ip(peer.ip(), forwarded, trusted));
        Requester {
            address,
            caller: OnceLock::new(),
        }
    }

    /// The account and session whose access token the request carried, if it was accepted.
    pub fn caller(&self) -> Option<(UserId, SessionId)> {
        self.caller.get().copied()
    }

    fn authenticated_as(&self, user_id: UserId, session_id: SessionId) {
        // A second `AuthUser` of the same request saw the same token: nothing new to keep.
        let _ = self.caller.set((user_id, session_id));
    }
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

/// Proxies whose `X-Forwarded-For` is believed, set by the router from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<Vec<ipnet::IpNet>>);

impl TrustedProxies {
    fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }
}

/// The socket's peer, unless it is a trusted proxy: then the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy itself. Entries left of it were written by
/// the client and prove nothing.
fn client_ip(
    peer: IpAddr,
    forwarded: header::GetAll<'_, HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    if !trusted.contains(&peer) {
        if forwarded.iter().next().is_some() {
            warn_of_untrusted_forwarding(peer);
        }
        return peer;
    }
    // From the right, each hop was written by the proxy after it; the first one that is not
    // a trusted proxy (or not an address at all: then the last trusted one) is the client.
    let hops: Vec<&str> = forwarded
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(hop) if trusted.contains(&hop) => client = hop,
            Ok(hop) => return hop,
            Err(_) => return client,
        }
    }
    client
}

/// A proxy left out of `--trusted-proxies` makes every client look like the proxy, which
/// throttles them all together: say so, once per process (such a proxy forwards every request).
/// The header's value is the client's to write, so it is not logged.
fn warn_of_untrusted_forwarding(peer: IpAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "X-Forwarded-For from {peer} ignored: that peer is not in --trusted-proxies; \
             behind a proxy, set --trusted-proxies (RESTFUL_AUTH_TRUSTED_PROXIES) to its address"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with_authorization(value: &[u8]) -> Parts {
        let request = axum::http::Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(())
            .unwrap();
        request.into_parts().0
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = TrustedProxies(Arc::new(vec!["10.0.0.0/8".parse().unwrap()]));
        let headers = |value: &str| {
            let mut map = axum::http::HeaderMap::new();
            map.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            map
        };
        let ip = |peer: IpAddr, value: &str, trusted: &TrustedProxies| {
            let map = headers(value);
            client_ip(peer, map.get_all("x-forwarded-for"), trusted).to_string()
        };
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(ip(stranger, "198.51.100.7", &trusted), "203.0.113.9");
        assert_eq!(
            ip(proxy, "198.51.100.7", &TrustedProxies::default()),
            "10.0.0.1"
        );
        assert_eq!(ip(proxy, "1.2.3.4, 198.51.100.7", &trusted), "198.51.100.7");
        assert_eq!(
            ip(proxy, "198.51.100.7, 10.0.0.2", &trusted),
            "198.51.100.7"
        );
        assert_eq!(ip(proxy, "garbage", &trusted), "10.0.0.1");
        // A client cannot hide behind junk of its own: the proxy's hop is read first.
        assert_eq!(
            ip(proxy, "6.6.6.6, junk, 198.51.100.7", &trusted),
            "198.51.100.7"
        );
        assert_eq!(ip(proxy, "6.6.6.6, junk", &trusted), "10.0.0.1");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_exactly_one_token() {
        let token = |raw: &[u8]| bearer_token(&parts_with_authorization(raw)).map(str::to_owned);
        assert_eq!(token(b"Bearer abc").unwrap(), "abc");
        assert_eq!(token(b"bearer   abc ").unwrap(), "abc");
        assert!(matches!(
            token(b"Basic abc"),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            token(b"Bearer"),
            Err(ApiError::BadAuthorizationHeader)
        ));
        assert!(matches!(
            token(b"Bearer a b"),
            Err(ApiError::BadAuthorizationHeader)
        ));
        assert!(matches!(
            token(b"Bearer \xff\xfe"),
            Err(ApiError::InvalidAccessToken)
        ));
    }

    #[test]
    fn text_fields_follow_drf_char_field() {
        let mut errors = FieldErrors::default();
        let fields = parse_json(
            br#"{"a": "  x  ", "b": 12, "c": null, "d": [], "e": "   ", "f": "a\u0000b"}"#,
        )
        .unwrap();
        assert_eq!(
            fields.required_text("a", Trim::Yes, &mut errors).unwrap(),
            "x"
        );
        assert_eq!(
            fields.required_text("a", Trim::No, &mut errors).unwrap(),
            "  x  "
        );
        assert_eq!(
            fields.required_text("b", Trim::Yes, &mut errors).unwrap(),
            "12"
        );
        for field in ["c", "d", "e", "f", "missing"] {
            assert!(
                fields
                    .required_text(field, Trim::Yes, &mut errors)
                    .is_none()
            );
        }
        assert!(
            fields
                .optional_text("absent", Trim::Yes, &mut errors)
                .is_none()
        );
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
