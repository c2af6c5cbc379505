//! Hostile input (RELIABILITY.md, part 1): every endpoint fed truncated, deeply nested,
//! oversized, mistyped, duplicated and mis-encoded bodies, confusable and overlong emails,
//! 1 MiB headers and a thousand `Authorization` variants. Every answer must be one of the
//! contract's 4xx JSON errors — never a 5xx, a panic or a hang — and nothing stored changes.
//!
//! "Nothing stored changes" reads every row of `users`, `sessions`, `refresh_tokens`,
//! `signing_keys` and `settings` before and after. `throttle_buckets` is left out on purpose:
//! counting failed logins is what it is for.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    ENDPOINTS, PASSWORD, TestApp, TestResponse, Tokens, base64_url, forge, now, spawn_app,
};

/// Longest any one answer may take: past it, the service hangs.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A new password that passes every validator, for the field beside the hostile one.
const NEW_PASSWORD: &str = "tangerine lighthouse 42";

/// What a field holds, which decides which hostile values must be refused in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A new account's address: validated.
    Email,
    /// A new password: validated against the policy.
    NewPassword,
    /// A login's email or password, or the old password: any text is a guess, checked against
    /// the account (and refused with 401 or 400 after a hash).
    Guess,
    /// DRF's `UUIDField`.
    RefreshToken,
    /// A display name: DRF reads a number as its text, so numbers are valid names.
    Username,
}

/// An endpoint that reads a body: its fields, each with a valid value to sit beside the
/// hostile one, chosen so that no body of the corpus can succeed.
struct BodyEndpoint {
    method: Method,
    path: &'static str,
    authenticated: bool,
    fields: Vec<(&'static str, Kind, Value)>,
}

fn body_endpoints() -> Vec<BodyEndpoint> {
    let unknown_token = json!("6f1c2a4e-3b7d-4c8e-9f10-2a3b4c5d6e7f");
    let endpoint = |method: Method, path, authenticated, fields| BodyEndpoint {
        method,
        path,
        authenticated,
        fields,
    };
    vec![
        endpoint(
            Method::POST,
            "/api/register/",
            false,
            vec![
                ("email", Kind::Email, json!("newcomer@example.org")),
                ("password", Kind::NewPassword, json!(PASSWORD)),
            ],
        ),
        endpoint(
            Method::POST,
            "/api/login/",
            false,
            vec![
                ("email", Kind::Guess, json!("ann@example.org")),
                ("password", Kind::Guess, json!("not the password")),
            ],
        ),
        endpoint(
            Method::POST,
            "/api/refresh/",
            false,
            vec![("refresh_token", Kind::RefreshToken, unknown_token.clone())],
        ),
        endpoint(
            Method::POST,
            "/api/logout/",
            false,
            vec![("refresh_token", Kind::RefreshToken, unknown_token)],
        ),
        endpoint(
            Method::PUT,
            "/api/me/",
            true,
            vec![("username", Kind::Username, json!("Valid Name"))],
        ),
        endpoint(
            Method::PATCH,
            "/api/me/",
            true,
            vec![("username", Kind::Username, json!("Valid Name"))],
        ),
        endpoint(
            Method::POST,
            "/api/me/password/",
            true,
            vec![
                ("old_password", Kind::Guess, json!("not the old password")),
                ("new_password", Kind::NewPassword, json!(NEW_PASSWORD)),
            ],
        ),
    ]
}

/// Every endpoint that needs a bearer token, with the method it is called with.
const AUTHENTICATED: [(&str, &str); 7] = [
    ("GET", "/api/me/"),
    ("PUT", "/api/me/"),
    ("PATCH", "/api/me/"),
    ("POST", "/api/me/password/"),
    ("GET", "/api/sessions/"),
    ("POST", "/api/logout/all/"),
    ("GET", "/api/me/activity/"),
];

/// A value of the wrong JSON type, which no field accepts.
fn wrong_types() -> Vec<Value> {
    let nested = (0..100).fold(json!("x"), |inner, _| json!([inner]));
    let nested_objects = (0..100).fold(json!("x"), |inner, _| json!({"email": inner}));
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!([]),
        json!(["ann@example.org"]),
        json!([PASSWORD, PASSWORD]),
        json!({}),
        json!({"$gt": ""}),
        json!({"email": "ann@example.org"}),
        nested,
        nested_objects,
    ]
}

/// Numbers, which DRF reads as their text: refused everywhere but in a username.
fn numbers() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!(-12_345),
        json!(0.1),
    ]
}

/// Text that no validated field accepts: blank, NUL bytes, huge.
fn bad_strings() -> Vec<String> {
    vec![
        String::new(),
        "   ".into(),
        "\t\r\n".into(),
        "\u{0}".into(),
        "ann\u{0}@example.org".into(),
        format!("{PASSWORD}\u{0}"),
        "x".repeat(60_000),
        "é".repeat(25_000),
        "🦀".repeat(15_000),
        "a".repeat(100_000),
    ]
}

fn strings_for(kind: Kind) -> Vec<String> {
    let specific: Vec<String> = match kind {
        Kind::Email => vec![
            "not-an-email".into(),
            "a@b".into(),
            "@example.org".into(),
            "ann@".into(),
            "ann@@example.org".into(),
            "ann@example..org".into(),
            "ann@-example.org".into(),
            "ann@example.org.".into(),
            "Ann <ann@example.org>".into(),
            "ann lee@example.org".into(),
            "ann＠example.org".into(),
            "ann@example.org\u{200b}".into(),
            "ann@exa\u{202e}mple.org".into(),
            "'; DROP TABLE users; --@example.org".into(),
            // Overlong: the whole address, and a domain label over 63 characters.
            format!("{}@example.org", "a".repeat(243)),
            format!("{}@example.org", "é".repeat(243)),
            format!("ann@{}.org", "a".repeat(64)),
            format!("ann@{}org", "a.".repeat(130)),
            // Taken, in other spellings: one account per address, whatever its case.
            "ANN@EXAMPLE.ORG".into(),
            "  ann@example.org\n".into(),
        ],
        Kind::NewPassword => vec![
            "short".into(),
            "1234567890".into(),
            "password".into(),
            "PassWord".into(),
            "x".repeat(1025),
            "é".repeat(1025),
        ],
        Kind::Guess => vec![
            "wrong".into(),
            "' OR 1=1 --".into(),
            "\u{202e}drowssap".into(),
            "%00".into(),
        ],
        Kind::RefreshToken => vec![
            "not-a-uuid".into(),
            "00000000-0000-0000-0000-00000000000g".into(),
            "{00000000-0000-4000-8000-000000000000".into(),
            "00000000-0000-4000-8000-000000000000-00".into(),
            "６f1c2a4e-3b7d-4c8e-9f10-2a3b4c5d6e7f".into(),
            "\u{0}".repeat(36),
        ],
        Kind::Username => vec![
            "x".repeat(151),
            "é".repeat(151),
            "line\nbreak".into(),
            "bell\u{7}".into(),
            "esc\u{1b}[31m".into(),
            "c1\u{85}control".into(),
        ],
    };
    let mut strings = bad_strings();
    strings.extend(specific);
    strings
}

/// Every hostile value of a field of `kind`.
fn hostile_values(kind: Kind) -> Vec<Value> {
    let mut values = wrong_types();
    if kind != Kind::Username {
        values.extend(numbers());
    }
    values.extend(strings_for(kind).into_iter().map(Value::String));
    values
}

// ---- sending and checking --------------------------------------------------------------------

/// The stored state a hostile request must not change.
fn stored_state(app: &TestApp) -> Vec<Vec<Vec<Option<Vec<u8>>>>> {
    [
        "users",
        "sessions",
        "refresh_tokens",
        "signing_keys",
        "settings",
    ]
    .iter()
    .map(|table| app.query(&format!("SELECT * FROM {table} ORDER BY 1")))
    .collect()
}

/// `request` answered within [`ANSWER_WITHIN`]: a slower answer is a hang.
async fn send(app: &TestApp, request: Request<Body>) -> TestResponse {
    let what = format!("{} {}", request.method(), request.uri());
    tokio::time::timeout(ANSWER_WITHIN, app.send(request))
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {ANSWER_WITHIN:?}"))
}

fn request(
    method: &Method,
    path: &str,
    authorization: Option<&[u8]>,
    body: Option<(&str, Vec<u8>)>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method.clone()).uri(path);
    if let Some(authorization) = authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    match body {
        Some((content_type, bytes)) => builder
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes)),
        None => builder.body(Body::empty()),
    }
    .expect("a valid request")
}

/// One of the contract's 4xx answers: a JSON object that is either `{"detail": "…"}` (with
/// `"code"`) or field errors `{"field": ["…", …]}`, with the headers its status calls for.
#[track_caller]
fn assert_contract_4xx(response: &TestResponse, what: &str) {
    assert!(
        response.status.is_client_error(),
        "{what}: expected a 4xx, got {} {}",
        response.status,
        String::from_utf8_lossy(&response.bytes[..response.bytes.len().min(300)])
    );
    let object = response
        .body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not a JSON object: {response:?}"));
    assert!(!object.is_empty(), "{what}: an empty object");
    match object.get("detail") {
        Some(detail) => {
            assert!(detail.is_string(), "{what}: {response:?}");
            assert!(
                object.keys().all(|key| key == "detail" || key == "code"),
                "{what}: {response:?}"
            );
        }
        None => {
            for (field, messages) in object {
                let messages = messages
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {field} holds no list"));
                assert!(!messages.is_empty() && messages.iter().all(Value::is_string));
            }
        }
    }
    match response.status {
        StatusCode::UNAUTHORIZED => assert_eq!(
            response.headers.get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer realm=\"api\"")),
            "{what}"
        ),
        StatusCode::TOO_MANY_REQUESTS => {
            assert!(response.headers.contains_key(header::RETRY_AFTER), "{what}")
        }
        _ => {}
    }
}

/// An app with one account, logged in, whose stored state is then recorded.
async fn app_with_ann() -> (TestApp, Tokens) {
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    (app, tokens)
}

/// Percent-encodes everything but unreserved characters, as a browser's form does.
fn form_encode(pairs: &[(&str, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

// ---- bodies ------------------------------------------------------------------------------------

/// One request of the field corpus: a hostile value in one field, valid values in the others.
struct FieldCase {
    method: Method,
    path: &'static str,
    authenticated: bool,
    field: &'static str,
    value: Value,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Each hostile value as JSON; numbers and wrong types also as the last of two duplicate
/// keys (the last one counts, as in Python's `json`); text and numbers also as a form.
fn field_cases() -> Vec<FieldCase> {
    let mut cases = Vec::new();
    for endpoint in body_endpoints() {
        let valid: serde_json::Map<String, Value> = endpoint
            .fields
            .iter()
            .map(|(name, _, value)| (name.to_string(), value.clone()))
            .collect();
        let valid_text = Value::Object(valid.clone()).to_string();
        for (field, kind, _) in &endpoint.fields {
            for value in hostile_values(*kind) {
                let mut replaced = valid.clone();
                replaced.insert(field.to_string(), value.clone());
                let mut bodies = vec![(
                    "application/json",
                    Value::Object(replaced).to_string().into_bytes(),
                )];
                if !value.is_string() {
                    let duplicated = format!(
                        "{}, {}: {value}}}",
                        valid_text.strip_suffix('}').unwrap(),
                        json!(field)
                    );
                    bodies.push(("application/json; charset=utf-8", duplicated.into_bytes()));
                }
                if let Some(text) = text_of(&value) {
                    let mut pairs: Vec<(&str, String)> = endpoint
                        .fields
                        .iter()
                        .map(|(name, _, valid_value)| (*name, text_of(valid_value).unwrap()))
                        .collect();
                    pairs.push((field, text));
                    bodies.push(("application/x-www-form-urlencoded", form_encode(&pairs)));
                }
                for (content_type, body) in bodies {
                    cases.push(FieldCase {
                        method: endpoint.method.clone(),
                        path: endpoint.path,
                        authenticated: endpoint.authenticated,
                        field,
                        value: value.clone(),
                        content_type,
                        body,
                    });
                }
            }
        }
    }
    cases
}

#[tokio::test]
async fn hostile_values_in_every_field_are_refused_with_a_4xx_and_change_nothing() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let before = stored_state(&app);
    let app = std::sync::Arc::new(app);
    let cases = field_cases();
    let sent = cases.len();
    // Two streams, as many as cores: the validators are slow in a debug build.
    let (odd, even): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .enumerate()
        .partition(|(index, _)| index % 2 == 1);
    let mut streams = tokio::task::JoinSet::new();
    for half in [odd, even] {
        let (app, bearer) = (app.clone(), format!("Bearer {}", tokens.access));
        streams.spawn(async move {
            for (_, case) in half {
                // Act
                let authorization = case.authenticated.then_some(bearer.as_bytes());
                let body = Some((case.content_type, case.body));
                let response =
                    send(&app, request(&case.method, case.path, authorization, body)).await;

                // Assert
                let what = format!(
                    "{} {} with {} = {} ({})",
                    case.method,
                    case.path,
                    case.field,
                    abbreviated(&case.value),
                    case.content_type
                );
                assert_contract_4xx(&response, &what);
                if !matches!(case.value, Value::String(_) | Value::Number(_)) {
                    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{what}");
                }
                if response.status == StatusCode::BAD_REQUEST {
                    // The other fields are valid: the hostile one alone is named.
                    let named: Vec<&String> = response.body.as_object().unwrap().keys().collect();
                    assert_eq!(named, [case.field], "{what}: {}", response.body);
                }
            }
        });
    }
    while let Some(stream) = streams.join_next().await {
        if let Err(failed) = stream {
            std::panic::resume_unwind(failed.into_panic());
        }
    }

    assert_eq!(
        stored_state(&app),
        before,
        "a refused request changed the database"
    );
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
    println!("hostile field values: {sent} requests, every one a 4xx, nothing stored changed");
}

fn abbreviated(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text,
    }
}

/// A body every byte of which is needed: each proper prefix is not JSON (or, cut inside a
/// character, not UTF-8), so the answer is 400 whatever the endpoint.
#[tokio::test]
async fn a_json_body_cut_at_any_byte_is_400() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let before = stored_state(&app);
    let bearer = format!("Bearer {}", tokens.access).into_bytes();
    let refresh = json!({"refresh_token": tokens.refresh}).to_string();
    let credentials = json!({"email": "ann@example.org", "password": PASSWORD}).to_string();
    let bodies: [(&str, &str, String); 7] = [
        ("POST", "/api/register/", credentials.clone()),
        ("POST", "/api/login/", credentials),
        ("POST", "/api/refresh/", refresh.clone()),
        ("POST", "/api/logout/", refresh),
        (
            "PUT",
            "/api/me/",
            json!({"username": "Ann Lée 🦀"}).to_string(),
        ),
        (
            "PATCH",
            "/api/me/",
            json!({"username": "Ann Lée 🦀"}).to_string(),
        ),
        (
            "POST",
            "/api/me/password/",
            json!({"old_password": PASSWORD, "new_password": NEW_PASSWORD}).to_string(),
        ),
    ];
    let mut sent = 0;

    for (method, path, body) in &bodies {
        let method: Method = method.parse().unwrap();
        let authorization = path.starts_with("/api/me").then_some(bearer.as_slice());
        for end in 1..body.len() {
            // Act
            let cut = body.as_bytes()[..end].to_vec();
            let response = send(
                &app,
                request(
                    &method,
                    path,
                    authorization,
                    Some(("application/json", cut)),
                ),
            )
            .await;
            sent += 1;

            // Assert
            let what = format!("{method} {path} cut at byte {end} of {}", body.len());
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{what}: {response:?}"
            );
            assert_contract_4xx(&response, &what);
        }
    }

    assert_eq!(stored_state(&app), before);
    // The refresh token whose every prefix was refused is still good.
    assert_eq!(app.refresh(&tokens.refresh).await.status, StatusCode::OK);
    println!("truncated bodies: {sent} requests, every one a 400");
}

/// Bodies broken as a whole: nesting past any parser's depth, invalid UTF-8, raw NUL and
/// control bytes, lone surrogates, a byte-order mark, thousands of keys, every field huge at
/// once, over 64 KiB, not an object, and media types that lie.
fn broken_bodies(fields: &[&str]) -> Vec<(&'static str, Vec<u8>)> {
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let first = fields.first().copied().unwrap_or("email");
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        (json, "[".repeat(60_000).into_bytes()),
        (
            json,
            format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
        ),
        (
            json,
            format!(
                r#"{{"{first}": {}"x"{}}}"#,
                "[".repeat(30_000),
                "]".repeat(30_000)
            )
            .into_bytes(),
        ),
        (
            json,
            format!("{}{{}}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes(),
        ),
        (
            json,
            [b"{\"".as_slice(), first.as_bytes(), b"\": \"\xff\xfe\"}"].concat(),
        ),
        (
            json,
            [b"{\"".as_slice(), first.as_bytes(), b"\": \"a\xc3\"}"].concat(),
        ),
        (
            json,
            [b"{\"".as_slice(), first.as_bytes(), b"\": \"a\x00b\"}"].concat(),
        ),
        (
            json,
            [b"{\"".as_slice(), first.as_bytes(), b"\": \"a\x1fb\nc\"}"].concat(),
        ),
        (json, format!(r#"{{"{first}": "\ud800"}}"#).into_bytes()),
        (
            json,
            format!(r#"{{"{first}": "\udc00\ud800"}}"#).into_bytes(),
        ),
        (json, b"\xef\xbb\xbf{}".to_vec()),
        (json, b"\x00\x00\x00{".to_vec()),
        (json, b"{\"a\":1}{\"b\":2}".to_vec()),
        (json, b"{'email': 'ann@example.org'}".to_vec()),
        (json, b"{\"email\": NaN, \"password\": Infinity}".to_vec()),
        (json, b"{\"email\": 1e999999}".to_vec()),
        (
            json,
            format!("{{\"{first}\": {}}}", "9".repeat(50_000)).into_bytes(),
        ),
        (json, b"null".to_vec()),
        (json, b"\"ann@example.org\"".to_vec()),
        (json, b"[{\"email\": \"ann@example.org\"}]".to_vec()),
        (json, b"12".to_vec()),
        (json, vec![b' '; 1000]),
        (json, vec![b'x'; 1 << 20]),
        (form, b"%FF%FE=%FD&=&&=%".to_vec()),
        (form, vec![b'&'; 60_000]),
        (form, vec![b'a'; 1 << 20]),
        (
            "application/json; charset=latin-1",
            b"{\"email\": \"\xe9\"}".to_vec(),
        ),
        ("application/jsonx", b"{}".to_vec()),
        ("text/html", b"<form>".to_vec()),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\n\r\n--x--".to_vec(),
        ),
        ("application/json\u{0}", b"{}".to_vec()),
        ("", b"{}".to_vec()),
        (";;;", b"{}".to_vec()),
    ];
    // Thousands of unknown keys, and every field huge at once.
    let many_keys: serde_json::Map<String, Value> =
        (0..5_000).map(|i| (format!("k{i}"), json!(i))).collect();
    bodies.push((json, Value::Object(many_keys).to_string().into_bytes()));
    let huge: serde_json::Map<String, Value> = fields
        .iter()
        .map(|field| {
            (
                field.to_string(),
                json!("ä".repeat(12_000 / fields.len().max(1))),
            )
        })
        .collect();
    bodies.push((json, Value::Object(huge).to_string().into_bytes()));
    bodies
}

#[tokio::test]
async fn broken_bodies_are_refused_by_every_endpoint_that_reads_one() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let before = stored_state(&app);
    let bearer = format!("Bearer {}", tokens.access).into_bytes();
    let profile = app.get_me(&tokens.access).await.body;
    let mut sent = 0;

    for endpoint in body_endpoints() {
        let fields: Vec<&str> = endpoint.fields.iter().map(|(name, _, _)| *name).collect();
        let authorization = endpoint.authenticated.then_some(bearer.as_slice());
        for (content_type, body) in broken_bodies(&fields) {
            // Act
            let size = body.len();
            let Ok(content_type_header) = HeaderValue::from_str(content_type) else {
                continue; // no HTTP peer can send it; the socket test below covers that
            };
            let mut hostile = request(&endpoint.method, endpoint.path, authorization, None);
            hostile
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type_header);
            *hostile.body_mut() = Body::from(body);
            let response = send(&app, hostile).await;
            sent += 1;

            // Assert
            let what = format!(
                "{} {} with {size} bytes of {content_type}",
                endpoint.method, endpoint.path
            );
            if endpoint.method == Method::PATCH && response.status == StatusCode::OK {
                // A PATCH without a username changes nothing, as the contract says.
                assert_eq!(response.body, profile, "{what}");
            } else {
                assert_contract_4xx(&response, &what);
            }
        }
    }

    assert_eq!(
        stored_state(&app),
        before,
        "a refused request changed the database"
    );
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
    println!("broken bodies: {sent} requests, every one a 4xx");
}

#[tokio::test]
async fn endpoints_that_read_no_body_answer_as_if_there_were_none() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let bearer = format!("Bearer {}", tokens.access).into_bytes();
    let profile = app.get_me(&tokens.access).await;
    let sessions = send(
        &app,
        request(&Method::GET, "/api/sessions/", Some(&bearer), None),
    )
    .await;
    let before = stored_state(&app);

    for (content_type, body) in broken_bodies(&["email", "password"]) {
        let Ok(_) = HeaderValue::from_str(content_type) else {
            continue;
        };
        // Act
        let with_body = |method: Method, path: &'static str, bearer: Option<&[u8]>| {
            send(
                &app,
                request(&method, path, bearer, Some((content_type, body.clone()))),
            )
        };
        let me = with_body(Method::GET, "/api/me/", Some(&bearer)).await;
        let listed = with_body(Method::GET, "/api/sessions/", Some(&bearer)).await;
        // Without a token, so that it cannot end the session the others use.
        let everywhere = with_body(Method::POST, "/api/logout/all/", None).await;

        // Assert
        assert_eq!((me.status, &me.body), (profile.status, &profile.body));
        assert_eq!(listed.status, sessions.status);
        assert_eq!(listed.body, sessions.body);
        everywhere.assert_not_authenticated();
    }
    assert_eq!(stored_state(&app), before);
}

/// Addresses that look like another: each is refused, or becomes an account of its own —
/// never a way into the account it imitates. (Those Django would refuse outright are below.)
#[tokio::test]
async fn a_confusable_email_never_reaches_the_account_it_imitates() {
    // Arrange
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let user_of = |response: &TestResponse| {
        let tokens = crate::helpers::tokens_of(response);
        app.claims_of(&tokens.access)["user_id"].as_i64().unwrap()
    };
    let confusables = [
        "ann@exаmple.org",  // a Cyrillic а in the domain
        "ann@ｅxample.org", // a full-width e
        "ann@example.orǥ",
        "ann@xn--exmple-4nf.org",
        "ann@example.org\u{200b}",
        "ann@example.org.",
        "ann@example.org\u{0}",
        "ANN@example.org",
        "ann@EXAMPLE.org",
        " ann@example.org\t",
    ];

    for email in confusables {
        // Act
        let before_registering = app.login(email, PASSWORD).await;
        let registered = app.register(email, PASSWORD).await;
        let after_registering = app.login(email, PASSWORD).await;

        // Assert
        let what = format!("{email:?}");
        assert_contract_4xx_or(&before_registering, StatusCode::OK, &what);
        assert_contract_4xx_or(&registered, StatusCode::CREATED, &what);
        assert_contract_4xx_or(&after_registering, StatusCode::OK, &what);
        if before_registering.status == StatusCode::OK {
            // A spelling of ann's own address (its case, surrounding space): it is ann's.
            assert_eq!(user_of(&before_registering), ann.id, "{what}");
            registered.assert(
                StatusCode::BAD_REQUEST,
                json!({"email": ["user with this email already exists."]}),
            );
        }
        if registered.status == StatusCode::CREATED {
            let id = registered.body["id"].as_i64().unwrap();
            assert_ne!(id, ann.id, "{what} was given ann's account");
            assert_eq!(user_of(&after_registering), id, "{what}");
        }
    }
}

#[track_caller]
fn assert_contract_4xx_or(response: &TestResponse, success: StatusCode, what: &str) {
    if response.status != success {
        assert_contract_4xx(response, what);
    }
}

/// Django's `EmailValidator` accepts ASCII local parts only (so no look-alike letters and no
/// invisible characters before the `@`) and checks that an address literal is an IP address.
/// (Found by this suite: look-alikes of an existing address registered second accounts.)
#[tokio::test]
async fn addresses_that_djangos_validator_refuses_are_refused() {
    let (app, _) = app_with_ann().await;
    for email in [
        "аnn@example.org",         // Cyrillic а: looks exactly like ann@example.org
        "ann\u{200b}@example.org", // a zero-width space before the @
        "ànn@example.org",
        "ann@[garbage]",
        "ann@[999.999.999.999]",
    ] {
        let response = app.register(email, PASSWORD).await;
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({"email": ["Enter a valid email address."]}),
        );
    }
}

// ---- headers -----------------------------------------------------------------------------------

/// Tokens a client might put after the scheme: ours, mangled, forged, or none at all.
fn token_variants(app: &TestApp, valid: &str) -> Vec<Vec<u8>> {
    let claims = |token_type: &str, user_id: i64, exp: i64| {
        json!({"token_type": token_type, "user_id": user_id, "sid": uuid::Uuid::new_v4(),
               "jti": "x", "iat": now(), "exp": exp})
    };
    let later = now() + 300;
    let payload = valid.split('.').nth(1).unwrap();
    let signature = valid.rsplit('.').next().unwrap();
    let header = crate::helpers::header_of(valid);
    let mut flipped = valid.as_bytes().to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let strings = [
        valid.to_owned(),
        valid[..valid.len() - 1].to_owned(),
        format!("{valid}A"),
        format!("{valid}."),
        format!("{valid},{valid}"),
        format!("{valid}é"),
        format!(
            "{}.{payload}.{signature}",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#)
        ),
        format!("{}.{payload}.", base64_url(br#"{"alg":"none"}"#)),
        format!(
            "{}.{payload}.{signature}",
            base64_url(br#"{"alg":"HS512","typ":"JWT"}"#)
        ),
        app.forge_like(valid, &claims("access", 1, now() - 1)),
        app.forge_like(valid, &claims("refresh", 1, later)),
        app.forge_like(valid, &claims("access", 999, later)),
        app.forge_like(valid, &json!({"user_id": 1, "exp": later})),
        forge(
            &header,
            &claims("access", 1, later),
            b"another key, long enough to be real",
        ),
        "x.y.z".into(),
        "..".into(),
        "null".into(),
        "é".into(),
        "a".repeat(16 * 1024),
    ];
    let mut variants: Vec<Vec<u8>> = strings.into_iter().map(String::into_bytes).collect();
    variants.push(flipped);
    variants.push(b"\xff\xfe\xfd".to_vec());
    variants.push(Vec::new());
    variants
}

const SCHEMES: [&[u8]; 14] = [
    b"Bearer",
    b"bearer",
    b"BEARER",
    b"bEaReR",
    b"Basic",
    b"Token",
    b"JWT",
    b"Bearer:",
    b"Bearerr",
    b"Bear",
    b"B\xc3\xa9arer",
    b"\xe2\x80\x8bBearer",
    b"Bearer,",
    b"",
];

/// Separators between scheme and token: ASCII white space (which SimpleJWT splits on), none,
/// and look-alikes that are no separator (a no-break space, a comma).
const SEPARATORS: [&[u8]; 6] = [b" ", b"   ", b"\t", b" \t ", b"\xc2\xa0", b","];

/// What the contract answers for `authorization` on an endpoint, by SimpleJWT's rule: another
/// scheme means no credentials; `Bearer` needs exactly one more word, and a valid token.
fn expected_answer(authorization: &[u8], valid: &str) -> Result<(), Value> {
    let words: Vec<&[u8]> = authorization
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
        .collect();
    match words.as_slice() {
        [scheme, ..] if !scheme.eq_ignore_ascii_case(b"bearer") => {
            Err(json!({"detail": "Authentication credentials were not provided."}))
        }
        [] => Err(json!({"detail": "Authentication credentials were not provided."})),
        [_, token] if *token == valid.as_bytes() => Ok(()),
        [_, _] => Err(json!({
            "detail": "Given token not valid for any token type",
            "code": "token_not_valid",
        })),
        _ => Err(json!({
            "detail": "Authorization header must contain two space-delimited values",
            "code": "bad_authorization_header",
        })),
    }
}

#[tokio::test]
async fn a_thousand_authorization_variants_get_the_contracts_answer() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let before = stored_state(&app);
    let profile = app.get_me(&tokens.access).await.body;
    let mut variants = Vec::new();
    for scheme in SCHEMES {
        for separator in SEPARATORS {
            for token in token_variants(&app, &tokens.access) {
                for (lead, trail) in [("", ""), (" ", "\t")] {
                    variants.push(
                        [lead.as_bytes(), scheme, separator, &token, trail.as_bytes()].concat(),
                    );
                }
            }
        }
    }
    variants.push(format!("Bearer {} {}", tokens.access, tokens.access).into_bytes());
    variants.push(format!("Bearer {}", tokens.refresh).into_bytes());
    variants.push(tokens.access.clone().into_bytes());
    variants.sort();
    variants.dedup();
    variants.retain(|variant| HeaderValue::from_bytes(variant).is_ok());
    // Every variant on GET /api/me/, and an even spread of a thousand on the others.
    let stride = variants.len().div_ceil(1000);
    let mut sent = 0;

    for (index, authorization) in variants.iter().enumerate() {
        let expected = expected_answer(authorization, &tokens.access);
        for (method, path) in AUTHENTICATED {
            let reads_only = method == "GET";
            if (path != "/api/me/" || !reads_only) && index % stride != 0 {
                continue;
            }
            if expected.is_ok() && !reads_only {
                continue; // a valid token would change the account; its reading is tested on GET
            }
            let body = (method != "GET").then(|| ("application/json", b"{}".to_vec()));

            // Act
            let response = send(
                &app,
                request(&method.parse().unwrap(), path, Some(authorization), body),
            )
            .await;
            sent += 1;

            // Assert
            let what = format!(
                "{method} {path} with {:?}",
                String::from_utf8_lossy(&authorization[..authorization.len().min(80)])
            );
            match &expected {
                Ok(()) => {
                    assert_eq!(response.status, StatusCode::OK, "{what}: {response:?}");
                    if path == "/api/me/" {
                        assert_eq!(response.body, profile, "{what}");
                    }
                }
                Err(body) => {
                    assert_contract_4xx(&response, &what);
                    assert_eq!(
                        (response.status, &response.body),
                        (StatusCode::UNAUTHORIZED, body),
                        "{what}"
                    );
                }
            }
        }
    }

    assert!(variants.len() >= 1000, "only {} variants", variants.len());
    assert_eq!(stored_state(&app), before);
    println!(
        "authorization variants: {} distinct headers, {sent} requests, each answered as the \
         contract says",
        variants.len()
    );
}

#[tokio::test]
async fn one_mebibyte_headers_are_answered_with_a_4xx() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let before = stored_state(&app);
    let mebibyte = "a".repeat(1 << 20);
    let huge: [(&str, String); 7] = [
        ("authorization", format!("Bearer {mebibyte}")),
        (
            "authorization",
            format!("Bearer {} {mebibyte}", tokens.access),
        ),
        ("x-junk", mebibyte.clone()),
        ("cookie", format!("session={mebibyte}")),
        ("user-agent", mebibyte.clone()),
        ("x-forwarded-for", "203.0.113.7, ".repeat(80_000)),
        ("content-type", format!("application/json; {mebibyte}=1")),
    ];
    let mut sent = 0;

    for (name, value) in &huge {
        for (method, path) in ENDPOINTS {
            // Act: a body that would fail anyway, so the header alone decides nothing stored.
            let mut hostile = request(
                &method.parse().unwrap(),
                path,
                None,
                Some(("application/json", br#"{"email": "ann@"}"#.to_vec())),
            );
            hostile
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
            let response = send(&app, hostile).await;
            sent += 1;

            // Assert
            assert_contract_4xx(&response, &format!("{method} {path} with a 1 MiB {name}"));
        }
    }

    assert_eq!(stored_state(&app), before);
    println!("1 MiB headers: {sent} requests through the router, every one a 4xx");
}

// ---- over a real socket ------------------------------------------------------------------------

/// Sends raw bytes on a connection of its own, closing our side when `half_close`, and reads
/// the answer; `None` when none came within `within`.
async fn exchange(
    address: SocketAddr,
    bytes: &[u8],
    half_close: bool,
    within: Duration,
) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

/// A request from its lines (request line and headers) and its body.
fn http(lines: &[&str], body: &[u8]) -> Vec<u8> {
    [lines.join("\r\n").as_bytes(), b"\r\n\r\n", body].concat()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// What HTTP itself forbids (headers past the server's limits, bytes no header may hold) is
/// refused by the HTTP layer before the router: a bare 4xx and a closed connection, not the
/// contract's JSON, which no router can add. The service keeps answering.
#[tokio::test]
async fn what_http_forbids_is_refused_at_the_socket_and_the_service_goes_on() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let address = app.serve().await;
    let mebibyte = "a".repeat(1 << 20);
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    // Headers past hyper's limits (about 400 KB, 100 headers): 431. Bytes no header may
    // hold, conflicting lengths, broken chunks, no HTTP at all: 400.
    let bearer = format!("Authorization: Bearer {mebibyte}");
    let junk = format!("X-Junk: {mebibyte}");
    let requests: Vec<(u16, Vec<u8>)> = vec![
        (
            431,
            http(&["GET /api/me/ HTTP/1.1", "Host: t", &bearer], b""),
        ),
        (
            431,
            http(
                &[
                    "POST /api/login/ HTTP/1.1",
                    "Host: t",
                    &junk,
                    "Content-Length: 2",
                ],
                b"{}",
            ),
        ),
        (
            431,
            http(
                &[
                    "GET /api/sessions/ HTTP/1.1",
                    "Host: t",
                    many_headers.trim_end(),
                ],
                b"",
            ),
        ),
        (
            400,
            http(
                &[
                    "GET /api/me/ HTTP/1.1",
                    "Host: t",
                    "Authorization: Bearer a\0b",
                ],
                b"",
            ),
        ),
        (
            400,
            http(
                &[
                    "GET /api/me/ HTTP/1.1",
                    "Host: t",
                    "Authorization: Bearer a\rb",
                ],
                b"",
            ),
        ),
        (
            400,
            http(
                &[
                    "POST /api/login/ HTTP/1.1",
                    "Host: t",
                    "Content-Length: 5",
                    "Content-Length: 7",
                ],
                b"{}",
            ),
        ),
        (
            400,
            http(
                &["POST /api/login/ HTTP/1.1", "Host: t", "Content-Length: -1"],
                b"",
            ),
        ),
        (
            400,
            http(
                &[
                    "POST /api/login/ HTTP/1.1",
                    "Host: t",
                    "Transfer-Encoding: chunked",
                ],
                b"ZZ\r\n",
            ),
        ),
        (400, http(&["GARBAGE"], b"")),
        (400, vec![0xff; 4096]),
    ];

    for (expected, bytes) in &requests {
        // Act
        let answer = exchange(address, bytes, true, ANSWER_WITHIN).await;

        // Assert
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        let answer = answer.unwrap_or_else(|| panic!("no answer to {shown:?}"));
        assert_eq!(status_of(&answer), *expected, "{shown:?} got {answer:.300}");
    }
    let me = reqwest::Client::new()
        .get(format!("http://{address}/api/me/"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

/// A client that stops sending mid-body and closes its side gets a 400; clients that stall
/// with their bodies half sent hold only their own connections, and the service answers
/// everyone else at once.
#[tokio::test]
async fn bodies_cut_short_or_stalled_on_the_wire_harm_no_one_else() {
    // Arrange
    let (app, tokens) = app_with_ann().await;
    let address = app.serve().await;
    let head = [
        "POST /api/login/ HTTP/1.1",
        "Host: t",
        "Content-Type: application/json",
    ];
    let cut_short = &http(
        &[&head[..], &["Content-Length: 100"]].concat(),
        br#"{"email": "ann@exa"#,
    );
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(cut_short).await.unwrap();
        stalled.push(stream);
    }

    // Act
    let answer = exchange(address, cut_short, true, ANSWER_WITHIN).await;
    let started = std::time::Instant::now();
    let me = reqwest::Client::new()
        .get(format!("http://{address}/api/me/"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();

    // Assert
    let answer = answer.expect("an answer to a body cut short");
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(
        answer.contains(r#"{"detail":"JSON parse error - "#),
        "{answer}"
    );
    assert_eq!(me.status(), 200);
    assert!(
        waited < Duration::from_secs(2),
        "32 stalled clients delayed others by {waited:?}"
    );
    drop(stalled);
}
