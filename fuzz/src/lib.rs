//! The oracles of the fuzz targets: what must hold for *any* input, whatever the fuzzer sends.
//!
//! One file, two users: `cargo fuzz` links it into the targets of `fuzz_targets/`, and the
//! integration suite compiles it into `tests/api/properties.rs`, which replays the seed corpus
//! and every input the fuzzer ever found (`fuzz/regressions/`) on the stable toolchain in CI.
//! An oracle fails by panicking, as libFuzzer expects.

use std::future::Future as _;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use restful_auth::auth::email::Email;
use restful_auth::auth::password::{self, PasswordPolicy};
use restful_auth::auth::tokens::{Keyring, RefreshToken, SigningKey, TokenRules};
use restful_auth::auth::username;
use restful_auth::http::body::{Fields, MAX_BODY_BYTES, RequestBody, Text, parse_body};
use restful_auth::http::error::FieldErrors;
use restful_auth::http::extract::parse_bearer;
use restful_auth::http::{
    ApiError, Credentials, NewAccount, PasswordChange, ProfileReplacement, ProfileUpdate,
    RefreshTokenBody,
};
use serde_json::Value;

/// The `Content-Type` a body input is sent with, picked by its first byte: both parsers, other
/// spellings of them, another media type, a broken one, and none. A first byte past the table
/// means the input spells its own: the bytes up to the first NUL.
pub const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/JSON ; charset=UTF-8"),
    Some("text/plain"),
    Some("application/json; charset"),
    None,
];

/// Body parsing, then the validation of every endpoint that reads a body: never a panic, and
/// every refusal is one of the contract's 4xx JSON errors.
pub fn check_body(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = match CONTENT_TYPES.get(usize::from(selector)) {
        Some(content_type) => (content_type.map(str::to_owned), rest),
        None => {
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            // The extractor reads the header the same way: lossily.
            let spelled = String::from_utf8_lossy(&rest[..end]).into_owned();
            (Some(spelled), rest.get(end + 1..).unwrap_or_default())
        }
    };
    if body.len() > MAX_BODY_BYTES {
        return; // refused with 413 before any parsing
    }
    match parse_body(content_type.as_deref(), body) {
        Ok(fields) => validate_every_endpoint(&fields),
        Err(error) => {
            let status = error.status();
            assert!(
                matches!(status.as_u16(), 400 | 415),
                "a body was refused with {status}"
            );
            assert_contract_error(error, status);
        }
    }
}

/// Every request body of the API, read from the fields by the service's own types, and the
/// invariants of what they accept.
fn validate_every_endpoint(fields: &Fields) {
    // POST /api/register/
    if let Some(account) = read::<NewAccount>(fields) {
        let mut errors = FieldErrors::default();
        let raw: Text = fields.read("email", &mut errors).expect("it was read once");
        assert_valid_email(&raw.0, &account.email);
        assert_new_password(account.password.expose());
        // The use case's rules run on whatever the body accepted.
        PasswordPolicy { min_length: 8 }.violations(account.password.expose(), &raw.0);
    }

    // POST /api/login/: the email is looked up as typed, never validated.
    if let Some(credentials) = read::<Credentials>(fields) {
        let login = credentials.email.0;
        assert_text(&login);
        assert_eq!(login.trim(), login, "untrimmed");
        assert!(!credentials.password.expose().trim().is_empty());
        let key = Email::lookup_key(&login);
        if let Ok(registered) = Email::parse(&login) {
            assert_eq!(
                key,
                registered.key(),
                "an account logs in with the very address it registered with"
            );
        }
    }

    // POST /api/refresh/ and /api/logout/: DRF's UUIDField.
    if let Some(body) = read::<RefreshTokenBody>(fields) {
        let token = body.refresh_token;
        let canonical = RefreshToken::parse(&token.reveal()).expect("its own text parses");
        assert!(
            canonical.digest() == token.digest(),
            "one token, one digest"
        );
    }

    // PUT and PATCH /api/me/
    let replaced = read::<ProfileReplacement>(fields).map(|body| body.username);
    let updated = read::<ProfileUpdate>(fields).and_then(|body| body.username);
    for name in replaced.iter().chain(&updated) {
        assert_text(name.as_str());
        assert!(name.as_str().chars().count() <= username::MAX_LEN);
        assert!(!name.as_str().chars().any(char::is_control));
    }

    // POST /api/me/password/
    if let Some(change) = read::<PasswordChange>(fields) {
        assert!(!change.old_password.expose().trim().is_empty());
        assert_new_password(change.new_password.expose());
    }
}

/// The body `T` read from `fields` as its handler reads it; a refusal is one 400 whose keys
/// are fields of `T`, each with its messages.
fn read<T: RequestBody>(fields: &Fields) -> Option<T> {
    match T::from_fields(fields) {
        Ok(body) => Some(body),
        Err(error) => {
            let body = assert_contract_error(error, StatusCode::BAD_REQUEST);
            let object = body.as_object().expect("an object");
            for (field, messages) in object {
                assert!(
                    T::FIELDS.contains(&field.as_str()),
                    "unexpected key {field}"
                );
                let messages = messages.as_array().expect("a list of messages");
                assert!(!messages.is_empty());
                assert!(messages.iter().all(Value::is_string));
            }
            None
        }
    }
}

/// What every accepted text field holds: something, and no NUL.
fn assert_text(text: &str) {
    assert!(!text.trim().is_empty(), "blank text was accepted");
    assert!(!text.contains('\0'), "a NUL was accepted");
}

fn assert_new_password(password: &str) {
    assert_text(password);
    assert!(password.chars().count() <= password::MAX_LEN);
}

fn assert_valid_email(raw: &str, email: &Email) {
    let address = email.as_str();
    assert!(address.chars().count() <= restful_auth::auth::email::MAX_LEN);
    assert!(!address.chars().any(char::is_whitespace), "{address:?}");
    let (local, domain) = address.rsplit_once('@').expect("an address has an @");
    let (raw_local, raw_domain) = raw.rsplit_once('@').expect("so does what it came from");
    assert_eq!(local, raw_local, "the local part keeps its case");
    assert_eq!(
        domain,
        raw_domain.to_lowercase(),
        "the domain is lower-cased"
    );
    assert_eq!(email.key(), address.to_lowercase());
    // Django's rules, which the integration suite once found broken (see regressions/): an
    // ASCII local part, so no look-alike of another address; an address literal is an IP.
    assert!(local.is_ascii(), "a non-ASCII local part: {address:?}");
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let literal = literal.strip_prefix("ipv6:").unwrap_or(literal);
        assert!(
            literal.parse::<std::net::IpAddr>().is_ok(),
            "an address literal that is no IP address: {address:?}"
        );
    }
}

/// `error` answers `status` with `application/json; charset=utf-8` and a JSON object body of
/// the contract's shapes: `{"detail": …}` (with `"code"`), or field → messages.
pub fn assert_contract_error(error: ApiError, status: StatusCode) -> Value {
    let response = error.into_response();
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/json; charset=utf-8"))
    );
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer realm=\"api\""))
        );
    }
    let body = ready_body(response);
    let value: Value = serde_json::from_slice(&body).expect("a JSON body");
    let object = value.as_object().expect("a JSON object");
    assert!(!object.is_empty());
    if let Some(detail) = object.get("detail") {
        assert!(detail.is_string());
        assert!(object.keys().all(|key| key == "detail" || key == "code"));
    } else {
        assert!(object.values().all(Value::is_array));
    }
    value
}

/// The body of an answer built in memory: ready at the first poll, no runtime needed.
fn ready_body(response: axum::response::Response) -> Vec<u8> {
    let mut collecting = std::pin::pin!(response.into_body().collect());
    match collecting
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(collected)) => collected.to_bytes().to_vec(),
        Poll::Ready(Err(error)) => panic!("the body failed: {error}"),
        Poll::Pending => panic!("an in-memory body was not ready"),
    }
}

/// What the tokens of the oracles say of their issuer and audience.
pub fn token_rules() -> TokenRules {
    TokenRules {
        issuer: "https://auth.example.org".into(),
        audience: vec!["restful-auth".into()],
        typ: "JWT".into(),
    }
}

/// The key of the bearer oracle, and one token issued with it.
/// A keyring, a token it issued, and when.
fn keyring_and_token() -> &'static (Keyring, String, i64) {
    static ISSUED: OnceLock<(Keyring, String, i64)> = OnceLock::new();
    ISSUED.get_or_init(|| {
        let key = SigningKey::from_secret(b"fuzzing-only-secret-0123456789abcdef");
        let keyring = Keyring::new(&key, std::slice::from_ref(&key), token_rules())
            .expect("an HS256 secret makes a keyring");
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("a sane clock");
        let token = keyring.issue(7, uuid::Uuid::nil(), now, 3600);
        (keyring, token, now)
    })
}

/// The `Authorization` reading and token verification: `data` as the header, then as a mask
/// over a token we issued. A token verifies only when it is exactly one we issued.
pub fn check_bearer(data: &[u8]) {
    let (keyring, issued, now) = keyring_and_token();
    check_authorization_header(data, keyring, issued, *now);

    let mut forged = issued.clone().into_bytes();
    let length = forged.len();
    for (index, byte) in data.iter().enumerate() {
        forged[index % length] ^= byte;
    }
    if let Ok(forged) = std::str::from_utf8(&forged)
        && keyring.verify(forged, *now).is_ok()
    {
        assert_eq!(forged, issued, "an altered token verified");
    }
}

/// SimpleJWT's rule, spelled out independently: no header or another scheme means no
/// credentials; `Bearer` takes exactly one more word; that word must verify.
fn check_authorization_header(data: &[u8], keyring: &Keyring, issued: &str, now: i64) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return; // no HTTP peer can send it
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let words: Vec<&[u8]> = data
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
        .collect();
    let bearer = words
        .first()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"));
    match parse_bearer(&headers) {
        Ok(token) => {
            assert!(bearer && words.len() == 2, "{data:?} was read as a token");
            assert_eq!(token.as_bytes(), words[1]);
            if keyring.verify(token, now).is_ok() {
                assert_eq!(token, issued, "a token we did not issue verified");
            }
        }
        Err(error) => {
            let expected = match (bearer, words.len()) {
                (false, _) => "NotAuthenticated",
                (true, 2) => "InvalidAccessToken", // not UTF-8
                (true, _) => "BadAuthorizationHeader",
            };
            assert_eq!(format!("{error:?}"), expected, "{data:?}");
            assert_contract_error(error, StatusCode::UNAUTHORIZED);
        }
    }
}
