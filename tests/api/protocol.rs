//! The contract's "General" rows, for every endpoint: paths, methods, media types, body limits,
//! error shapes, and what never leaks.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use restful_auth::config::LogFormat;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{JSON, PASSWORD, TestApp, TestResponse, spawn_app, tokens_of};

/// Every endpoint and the methods it answers (`/api/sessions/{id}/`, whose path holds an id,
/// is checked in web.rs against the router and the document).
const ENDPOINTS: [(&str, &[&str]); 8] = [
    ("/api/register", &["POST"]),
    ("/api/login", &["POST"]),
    ("/api/refresh", &["POST"]),
    ("/api/logout", &["POST"]),
    ("/api/me", &["GET", "PATCH", "PUT"]),
    ("/api/me/password", &["POST"]),
    ("/api/sessions", &["GET"]),
    ("/api/logout/all", &["POST"]),
];

const POST_ENDPOINTS: [&str; 4] = ["/api/register", "/api/login", "/api/refresh", "/api/logout"];

const TOO_LARGE: &str = "Request body too large.";

fn both_spellings(path: &str) -> [String; 2] {
    [path.to_owned(), format!("{path}/")]
}

// ---- paths ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_whole_flow_works_without_trailing_slashes() {
    // Arrange
    let app = spawn_app().await;
    let credentials = json!({"email": "ann@example.org", "password": PASSWORD});

    // Act
    let registered = app.post_json("/api/register", &credentials).await;
    let login = tokens_of(&app.post_json("/api/login", &credentials).await);
    let renewed = tokens_of(
        &app.post_json("/api/refresh", &json!({"refresh_token": login.refresh}))
            .await,
    );
    let me = app
        .request(Method::GET, "/api/me", Some(&renewed.access), None)
        .await;
    let put = app
        .request(
            Method::PUT,
            "/api/me",
            Some(&renewed.access),
            Some(("application/json", br#"{"username": "Ann"}"#.to_vec())),
        )
        .await;
    let logout = app
        .post_json("/api/logout", &json!({"refresh_token": renewed.refresh}))
        .await;

    // Assert
    registered.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "ann@example.org"}),
    );
    me.assert(
        StatusCode::OK,
        json!({"id": 1, "username": "ann@example.org", "email": "ann@example.org"}),
    );
    put.assert(
        StatusCode::OK,
        json!({"id": 1, "username": "Ann", "email": "ann@example.org"}),
    );
    logout.assert(StatusCode::OK, json!({"success": "User logged out."}));
}

#[tokio::test]
async fn both_spellings_of_every_path_answer_alike_without_a_redirect() {
    // Arrange
    let app = spawn_app().await;
    let expected = [
        (
            "/api/register",
            json!({"email": ["This field is required."], "password": ["This field is required."]}),
        ),
        (
            "/api/login",
            json!({"email": ["This field is required."], "password": ["This field is required."]}),
        ),
        (
            "/api/refresh",
            json!({"refresh_token": ["This field is required."]}),
        ),
        (
            "/api/logout",
            json!({"refresh_token": ["This field is required."]}),
        ),
    ];

    for (path, errors) in expected {
        for spelling in both_spellings(path) {
            // Act
            let response = app.post_json(&spelling, &json!({})).await;

            // Assert
            response.assert(StatusCode::BAD_REQUEST, errors.clone());
        }
    }
    for spelling in both_spellings("/api/me") {
        app.get(&spelling).await.assert_not_authenticated();
    }
}

#[tokio::test]
async fn a_query_string_does_not_change_the_endpoint() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    // Act
    let response = app
        .request(
            Method::GET,
            "/api/me/?format=json&x=1",
            Some(&tokens.access),
            None,
        )
        .await;

    // Assert
    response.assert(
        StatusCode::OK,
        json!({"id": 1, "username": "ann@example.org", "email": "ann@example.org"}),
    );
}

#[tokio::test]
async fn an_unknown_path_is_404_not_found() {
    // Arrange
    let app = spawn_app().await;

    for path in [
        "/api/nope",
        "/api/nope/",
        "/api/me/extra",
        "/api/register//",
        "/api//me",
        "/API/ME/",
        "/api/login.json",
        "/favicon.ico",
    ] {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            // Act
            let response = app.request(method.clone(), path, None, None).await;

            // Assert
            assert_eq!(
                (response.status, &response.body),
                (StatusCode::NOT_FOUND, &json!({"detail": "Not found."})),
                "{method} {path}"
            );
        }
    }
}

// ---- methods -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_method_is_405_with_drfs_message_and_an_allow_header() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let candidates = ["GET", "POST", "PUT", "PATCH", "DELETE"];

    for (path, allowed) in ENDPOINTS {
        for spelling in both_spellings(path) {
            for method in candidates.iter().filter(|m| !allowed.contains(m)) {
                // Act
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let response = app
                    .request(method.clone(), &spelling, Some(&tokens.access), None)
                    .await;

                // Assert
                response.assert(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"detail": format!("Method \"{method}\" not allowed.")}),
                );
                let listed: Vec<String> = response
                    .allowed_methods()
                    .into_iter()
                    .filter(|m| m != "HEAD" && m != "OPTIONS")
                    .collect();
                assert_eq!(listed, *allowed, "Allow of {method} {spelling}");
            }
        }
    }
}

#[tokio::test]
async fn an_unusual_method_is_named_in_the_405() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .request(
            Method::from_bytes(b"PURGE").unwrap(),
            "/api/login/",
            None,
            None,
        )
        .await;

    // Assert
    response.assert(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"detail": "Method \"PURGE\" not allowed."}),
    );
    assert!(response.allowed_methods().contains(&"POST".to_owned()));
}

/// Sends `method path` with `access` as its bearer token, whatever the answer's media type.
async fn send_with_token(app: &TestApp, method: Method, path: &str, access: &str) -> TestResponse {
    app.send_raw(
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn options_on_an_endpoint_is_204_listing_its_methods_and_options() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let session = app.claims_of(&tokens.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let session_path = format!("/api/sessions/{session}/");
    let endpoints: [(&str, &[&str]); 3] = [
        ("/api/login/", &["OPTIONS", "POST"]),
        ("/api/me/", &["GET", "HEAD", "OPTIONS", "PATCH", "PUT"]),
        (&session_path, &["DELETE", "OPTIONS"]),
    ];

    for (path, methods) in endpoints {
        // Act
        let response = send_with_token(&app, Method::OPTIONS, path, &tokens.access).await;

        // Assert
        assert_eq!(
            response.status,
            StatusCode::NO_CONTENT,
            "{path}: {response:?}"
        );
        assert_eq!(response.allowed_methods(), *methods, "Allow of {path}");
        assert_eq!(response.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(response.bytes.is_empty(), "{path}: {response:?}");
    }
    // OPTIONS changed nothing: the session it named is still live.
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn options_on_an_unknown_path_is_404_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.request(Method::OPTIONS, "/api/nope/", None, None).await;

    // Assert
    response.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
}

// ---- media types ---------------------------------------------------------------------------------

#[tokio::test]
async fn another_media_type_is_415_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let media_types = [
        "text/plain",
        "text/plain; charset=utf-8",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/jsonx",
        "not a media type",
    ];

    for content_type in media_types {
        let body = || Some((content_type, b"email=a&password=b".to_vec()));
        for path in POST_ENDPOINTS {
            // Act
            let response = app
                .request(Method::POST, &format!("{path}/"), None, body())
                .await;

            // Assert
            response.assert(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"detail": format!("Unsupported media type \"{content_type}\" in request.")}),
            );
        }
        let put = app
            .request(Method::PUT, "/api/me/", Some(&tokens.access), body())
            .await;
        put.assert(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"detail": format!("Unsupported media type \"{content_type}\" in request.")}),
        );
    }
}

#[tokio::test]
async fn an_overlong_media_type_is_named_only_in_part() {
    // Arrange
    let app = spawn_app().await;
    let content_type = format!("application/{}", "x".repeat(4000));

    // Act
    let response = app
        .request(
            Method::POST,
            "/api/login/",
            None,
            Some((&content_type, b"{}".to_vec())),
        )
        .await;

    // Assert
    let shown: String = content_type.chars().take(100).collect();
    response.assert(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        json!({"detail": format!("Unsupported media type \"{shown}…\" in request.")}),
    );
}

#[tokio::test]
async fn a_request_id_is_echoed_only_when_short_and_printable() {
    // Arrange
    let app = spawn_app().await;
    let short = "trace-me-42".to_owned();
    let unusable = [
        "x".repeat(129),
        "two words".to_owned(),
        "tab\there".to_owned(),
    ];

    for given in std::iter::once(&short).chain(&unusable) {
        // Act
        let request = Request::get("/api/me/")
            .header("x-request-id", given.as_str())
            .body(Body::empty())
            .unwrap();
        let response = app.send(request).await;

        // Assert
        let echoed = response.headers["x-request-id"].to_str().unwrap();
        if given == &short {
            assert_eq!(echoed, short);
        } else {
            assert_ne!(echoed, given);
            assert!(uuid::Uuid::try_parse(echoed).is_ok(), "generated: {echoed}");
        }
    }
}

#[tokio::test]
async fn a_body_without_a_media_type_is_415_naming_none() {
    let app = spawn_app().await;
    let request = Request::post("/api/login/")
        .body(Body::from(
            r#"{"email": "ann@example.org", "password": "x"}"#,
        ))
        .unwrap();

    let response = app.send(request).await;

    assert_eq!(response.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        response.body,
        json!({"detail": "Unsupported media type \"\" in request."})
    );
}

#[tokio::test]
async fn every_json_answer_is_marked_no_store() {
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    for response in [
        app.get_me(&tokens.access).await,
        app.refresh(&tokens.refresh).await,
    ] {
        assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn every_api_answer_forbids_sniffing_and_storing_whatever_its_status() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let other = app.login_user(&user).await;
    let other_session = app.claims_of(&other.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act
    let answers = [
        app.get_me(&tokens.access).await,
        app.post_json("/api/login/", &json!({})).await,
        app.get("/api/me/").await,
        app.get("/nowhere").await,
        app.get("/api/login/").await,
        send_with_token(
            &app,
            Method::DELETE,
            &format!("/api/sessions/{other_session}/"),
            &tokens.access,
        )
        .await,
        send_with_token(&app, Method::OPTIONS, "/api/me/", &tokens.access).await,
    ];

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [200, 400, 401, 404, 405, 204, 204]);
    for answer in answers {
        assert_eq!(
            answer.headers.get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&HeaderValue::from_static("nosniff")),
            "{answer:?}"
        );
        assert_eq!(
            answer.headers.get(header::CACHE_CONTROL),
            Some(&HeaderValue::from_static("no-store")),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_json() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({"email": "ann@example.org", "password": PASSWORD}).to_string();

    // Act
    let response = app
        .post_body("/api/register/", "application/json; charset=utf-8", body)
        .await;

    // Assert
    response.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "ann@example.org"}),
    );
}

#[tokio::test]
async fn a_form_body_is_percent_decoded_and_a_repeated_key_keeps_its_last_value() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let body = (
        "application/x-www-form-urlencoded; charset=utf-8",
        b"username=first&username=Z%C3%B6e+%26+%F0%9F%A6%80%3D".to_vec(),
    );

    // Act
    let response = app
        .request(Method::PATCH, "/api/me/", Some(&tokens.access), Some(body))
        .await;

    // Assert
    response.assert(
        StatusCode::OK,
        json!({"id": user.id, "username": "Zöe & 🦀=", "email": "ann@example.org"}),
    );
}

// ---- malformed bodies ----------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400_json_parse_error() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let bodies: [&[u8]; 8] = [
        b"{",
        b"{\"email\": }",
        b"{'email': 'ann@example.org'}",
        b"{\"email\": \"ann@example.org\",}",
        b"{\"email\": \"ann@example.org\"} trailing",
        b"{\"email\": \"\xff\xfe\"}",
        b"{\"email\": \"\\ud800\"}",
        b"{\"n\": 1e400}",
    ];

    for body in bodies {
        for path in POST_ENDPOINTS {
            // Act
            let response = app
                .post_body(&format!("{path}/"), "application/json", body)
                .await;

            // Assert
            assert_json_parse_error(&response);
        }
        let put = app
            .request(
                Method::PUT,
                "/api/me/",
                Some(&tokens.access),
                Some(("application/json", body.to_vec())),
            )
            .await;
        assert_json_parse_error(&put);
    }
}

#[track_caller]
fn assert_json_parse_error(response: &TestResponse) {
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{response:?}");
    let object = response.body.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only a detail: {object:?}");
    let detail = object["detail"].as_str().expect("a detail");
    let reason = detail
        .strip_prefix("JSON parse error - ")
        .unwrap_or_else(|| panic!("{detail:?} is a JSON parse error"));
    assert!(!reason.trim().is_empty(), "the reason is given");
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_400_naming_its_python_type() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let cases = [
        ("[1, 2]", "list"),
        ("\"ann@example.org\"", "str"),
        ("42", "int"),
        ("4.2", "float"),
        ("true", "bool"),
        ("null", "NoneType"),
    ];

    for (body, python_type) in cases {
        let expected = json!({"non_field_errors": [
            format!("Invalid data. Expected a dictionary, but got {python_type}.")
        ]});
        for path in POST_ENDPOINTS {
            // Act
            let response = app
                .post_body(&format!("{path}/"), "application/json", body)
                .await;

            // Assert
            response.assert(StatusCode::BAD_REQUEST, expected.clone());
        }
        let patch = app
            .request(
                Method::PATCH,
                "/api/me/",
                Some(&tokens.access),
                Some(("application/json", body.as_bytes().to_vec())),
            )
            .await;
        patch.assert(StatusCode::BAD_REQUEST, expected);
    }
}

#[tokio::test]
async fn a_parse_error_never_echoes_the_password() {
    // Arrange
    let app = spawn_app().await;
    let secret = "Hunter2-Very-Secret";
    let bodies = [
        format!(r#"{{"email": "ann@example.org", "password": "{secret}""#),
        format!(r#"{{"email": "ann@example.org", "password": "{secret}\q"}}"#),
        format!(r#"{{"email": "ann@example.org", "password": {secret}}}"#),
        format!(r#"["{secret}"]"#),
    ];

    for body in bodies {
        for path in ["/api/register/", "/api/login/"] {
            // Act
            let response = app.post_body(path, "application/json", body.clone()).await;

            // Assert
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            assert!(
                !String::from_utf8_lossy(&response.bytes).contains("Hunter2"),
                "{response:?}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    // Arrange
    let app = spawn_app().await;
    let extra = json!({"id": 99, "username": "admin", "is_active": false,
                       "is_staff": true, "nested": {"a": [1, 2]}});
    let with_extra = |mut body: Value| {
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // Act
    let registered = app
        .post_json(
            "/api/register/",
            &with_extra(json!({"email": "ann@example.org", "password": PASSWORD})),
        )
        .await;
    let login = app
        .post_json(
            "/api/login/",
            &with_extra(json!({"email": "ann@example.org", "password": PASSWORD})),
        )
        .await;
    let tokens = tokens_of(&login);
    let refreshed = app
        .post_json(
            "/api/refresh/",
            &with_extra(json!({"refresh_token": tokens.refresh})),
        )
        .await;
    let tokens = tokens_of(&refreshed);
    let mut profile_extra = extra.clone();
    profile_extra.as_object_mut().unwrap().remove("username");
    let me = app.patch_me(&tokens.access, &profile_extra).await;
    let logout = app
        .post_json(
            "/api/logout/",
            &with_extra(json!({"refresh_token": tokens.refresh})),
        )
        .await;

    // Assert
    registered.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "ann@example.org"}),
    );
    me.assert(
        StatusCode::OK,
        json!({"id": 1, "username": "ann@example.org", "email": "ann@example.org"}),
    );
    logout.assert(StatusCode::OK, json!({"success": "User logged out."}));
}

// ---- body size -----------------------------------------------------------------------------------

/// A JSON object of exactly `size` bytes with no known field.
fn padded_json(size: usize) -> Vec<u8> {
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(size - 11));
    assert_eq!(body.len(), size);
    body.into_bytes()
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_read() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_body("/api/register/", "application/json", padded_json(64 * 1024))
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["This field is required."], "password": ["This field is required."]}),
    );
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_for_every_endpoint() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let body = padded_json(64 * 1024 + 1);

    for path in POST_ENDPOINTS {
        // Act
        let response = app
            .post_body(&format!("{path}/"), "application/json", body.clone())
            .await;

        // Assert
        response.assert(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": TOO_LARGE}));
    }
    for method in [Method::PUT, Method::PATCH] {
        let response = app
            .request(
                method,
                "/api/me/",
                Some(&tokens.access),
                Some(("application/json", body.clone())),
            )
            .await;
        response.assert(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": TOO_LARGE}));
    }
}

#[tokio::test]
async fn a_body_over_64_kib_without_a_content_length_is_413() {
    // Arrange
    let app = spawn_app().await;
    let request = Request::post("/api/login/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(padded_json(64 * 1024 + 1)))
        .unwrap();
    assert!(request.headers().get(header::CONTENT_LENGTH).is_none());

    // Act
    let response = app.send(request).await;

    // Assert
    response.assert(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": TOO_LARGE}));
}

#[tokio::test]
async fn a_form_body_over_64_kib_is_413() {
    // Arrange
    let app = spawn_app().await;
    let body = format!("email=ann%40example.org&password={}", "x".repeat(64 * 1024));

    // Act
    let response = app.post_form("/api/login/", &body).await;

    // Assert
    response.assert(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": TOO_LARGE}));
}

#[tokio::test]
async fn an_oversized_body_of_an_unsupported_media_type_is_still_413() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_body("/api/register/", "text/plain", vec![b'x'; 64 * 1024 + 1])
        .await;

    // Assert
    response.assert(StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": TOO_LARGE}));
}

/// A raw HTTP/1.1 exchange with a chunked request body: status, headers and body of the answer.
async fn chunked_exchange(app: &TestApp, path: &str, chunks: Vec<Vec<u8>>) -> (u16, String, Value) {
    let address = app.serve().await;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the server accepts");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let writing = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in chunks {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await?;
        // Handed back, not dropped: closing our half would abort the exchange.
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    // The server may answer and close before it has read everything: a write error is fine.
    let _ = reader.read_to_end(&mut answer).await;
    let _ = writing.await;

    let answer = String::from_utf8(answer).expect("a text answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a complete answer: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {body:?}"));
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn a_small_chunked_body_without_a_content_length_is_read() {
    // Arrange: the control for the next test, over the same real connection.
    let app = spawn_app().await;
    let body = json!({"email": "ann@example.org", "password": PASSWORD}).to_string();
    let (first, second) = body.as_bytes().split_at(10);

    // Act
    let (status, head, body) = chunked_exchange(
        &app,
        "/api/register/",
        vec![first.to_vec(), second.to_vec()],
    )
    .await;

    // Assert
    assert_eq!(status, 201);
    assert!(head.contains(&format!("content-type: {JSON}")), "{head}");
    assert_eq!(body, json!({"id": 1, "email": "ann@example.org"}));
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_without_a_content_length_is_413() {
    // Arrange
    let app = spawn_app().await;
    let mut chunks = vec![br#"{"email": "ann@example.org", "password": ""#.to_vec()];
    chunks.extend(std::iter::repeat_n(vec![b'x'; 8 * 1024], 9));
    chunks.push(br#""}"#.to_vec());

    // Act
    let (status, head, body) = chunked_exchange(&app, "/api/register/", chunks).await;

    // Assert
    assert_eq!(status, 413);
    assert!(head.contains(&format!("content-type: {JSON}")), "{head}");
    assert_eq!(body, json!({"detail": TOO_LARGE}));
    assert_eq!(app.count_rows("users"), 0);
}

// ---- every answer --------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_is_json_in_utf_8() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;

    // Act
    let answers = [
        app.register("bob@example.org", PASSWORD).await,
        app.get_me(&tokens.access).await,
        app.post_json("/api/login/", &json!({})).await,
        app.get("/api/me/").await,
        app.get("/nowhere").await,
        app.get("/api/login/").await,
        app.post_body("/api/login/", "text/plain", "x").await,
        app.post_body("/api/login/", "application/json", "{").await,
        app.post_body("/api/login/", "application/json", padded_json(70_000))
            .await,
        app.logout(&tokens.refresh).await,
    ];

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [201, 200, 400, 401, 404, 405, 415, 400, 413, 200]);
    for answer in answers {
        assert_eq!(
            answer.headers.get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(JSON))
        );
        assert!(answer.body.is_object(), "{answer:?}");
    }
}

#[tokio::test]
async fn hostile_inputs_never_cause_a_server_error() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let deep = format!(
        r#"{{"email": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let json_bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        br#"{"email": "a\u0000b@example.org", "password": "x\u0000y"}"#.to_vec(),
        br#"{"email": "\u202eann@example.org", "password": "\ud83e\udd80\ud83e\udd80\ud83e\udd80\ud83e\udd80"}"#.to_vec(),
        format!(r#"{{"email": "{}@example.org", "password": "p"}}"#, "a".repeat(20_000)).into_bytes(),
        format!(r#"{{"email": "ann@example.org", "password": "{}"}}"#, "p".repeat(60_000)).into_bytes(),
        br#"{"email": "'; DROP TABLE users; --@example.org", "password": "' OR 1=1 --"}"#.to_vec(),
        br#"{"email": 1e308, "password": -0, "refresh_token": 340282366920938463463374607431768211455}"#.to_vec(),
        br#"{"email": "ann@example.org", "email": "bob@example.org", "password": {"$gt": ""}}"#.to_vec(),
        "\u{feff}{\"email\": \"ann@example.org\"}".as_bytes().to_vec(),
        br#"{"refresh_token": "{00000000-0000-0000-0000-000000000000}", "username": "x"}"#.to_vec(),
        br#"{"refresh_token": "urn:uuid:00000000-0000-4000-8000-000000000000"}"#.to_vec(),
        br#"{"refresh_token": ["00000000-0000-4000-8000-000000000000"]}"#.to_vec(),
        b"\x00\x01\x02\x03".to_vec(),
        Vec::new(),
    ];
    let form_bodies: Vec<Vec<u8>> = vec![
        b"email=%FF%FE&password=%00".to_vec(),
        b"email=%&password=%zz&&&==&refresh_token=%".to_vec(),
        b"\xff\xfe=\xfd".to_vec(),
        b"username=%E2%80%AE%0A".to_vec(),
    ];
    let mut requests: Vec<(&str, Vec<u8>)> = Vec::new();
    requests.extend(json_bodies.into_iter().map(|b| ("application/json", b)));
    requests.extend(
        form_bodies
            .into_iter()
            .map(|b| ("application/x-www-form-urlencoded", b)),
    );
    requests.push(("application/json; charset", b"{}".to_vec()));

    for (content_type, body) in requests {
        for path in POST_ENDPOINTS {
            // Act
            let response = app
                .request(
                    Method::POST,
                    &format!("{path}/"),
                    None,
                    Some((content_type, body.clone())),
                )
                .await;

            // Assert
            assert_client_error(&response, path);
        }
        for method in [Method::PUT, Method::PATCH] {
            let response = app
                .request(
                    method,
                    "/api/me/",
                    Some(&tokens.access),
                    Some((content_type, body.clone())),
                )
                .await;
            assert_client_error(&response, "/api/me/");
        }
    }
    // The account survived all of it.
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
}

#[track_caller]
fn assert_client_error(response: &TestResponse, path: &str) {
    assert!(
        response.status.as_u16() < 500,
        "{path} answered a server error: {response:?}"
    );
    assert!(response.body.is_object(), "{path}: {response:?}");
}

#[tokio::test]
async fn hostile_authorization_headers_never_cause_a_server_error() {
    // Arrange
    let app = spawn_app().await;
    app.register_and_login().await;
    let long = format!("Bearer {}", "a".repeat(16 * 1024));
    let headers: [&[u8]; 8] = [
        b"",
        b" ",
        b"Bearer \t ",
        b"Bearer \x80\x81",
        b"Bearer ..",
        b"Bearer eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.",
        b"bEaReR x.y.z",
        long.as_bytes(),
    ];

    for header in headers {
        // Act
        let response = app.get_me_with_authorization(header).await;

        // Assert
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{response:?}");
        assert_eq!(
            response.headers.get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer realm=\"api\""))
        );
    }
}

// ---- what never leaks ----------------------------------------------------------------------------

/// Everything every test writes to the log, from the moment the capture is installed.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLog {
    /// The process-wide log capture (a global subscriber can be installed only once).
    fn install() -> CapturedLog {
        static LOG: OnceLock<CapturedLog> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = CapturedLog::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(log.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test installs a subscriber");
            // Request lines bypass the subscriber's formatting: the access log takes them.
            let access_log = log.clone();
            restful_auth::telemetry::install_access_log(LogFormat::Text, move |line| {
                std::io::Write::write_all(&mut access_log.clone(), line).unwrap();
            });
            log
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn no_log_line_contains_a_password_a_hash_a_secret_or_a_token() {
    // Arrange
    let log = CapturedLog::install();
    let app = spawn_app().await;
    let user = app.register_user("leak-check@example.org").await;

    // Act
    app.login(&user.email, "Wrong-Password-Leak").await;
    let login = app.login_user(&user).await;
    let renewed = app.refresh_ok(&login.refresh).await;
    app.refresh(&login.refresh).await; // reuse: logged as a warning
    app.get_me(&renewed.access).await;
    app.post_body(
        "/api/login/",
        "application/json",
        r#"{"email": "x", "password": "Broken-Json-Leak"#,
    )
    .await;

    // Assert
    let text = log.text();
    assert!(
        text.contains("/api/refresh/"),
        "requests are logged: {text}"
    );
    assert!(
        text.contains("presented again"),
        "the reuse is logged: {text}"
    );
    let hash = app.password_hash_of(user.id);
    let secrets = [
        PASSWORD,
        "Wrong-Password-Leak",
        "Broken-Json-Leak",
        crate::helpers::SECRET,
        hash.as_str(),
        login.refresh.as_str(),
        renewed.refresh.as_str(),
        login.access.as_str(),
        renewed.access.as_str(),
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "the log shows {secret}");
    }
}

// ---- in a browser --------------------------------------------------------------------------------

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn browse(app: &TestApp, path: &str) -> TestResponse {
    let request = Request::get(path)
        .header(header::ACCEPT, BROWSER_ACCEPT)
        .body(Body::empty())
        .unwrap();
    app.send_raw(request).await
}

#[track_caller]
fn assert_html_page(response: &TestResponse) -> String {
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let content_type = response.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    String::from_utf8(response.bytes.clone()).expect("a UTF-8 page")
}

/// Every `src="…"` and `href="…"` of a page that is not a link to another page.
fn assets_of(page: &str) -> Vec<String> {
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            let url = &rest[..rest.find('"').unwrap_or(rest.len())];
            let tag_start = page[..at].rfind('<').unwrap_or(0);
            let is_link_to_a_page = page[tag_start..].starts_with("<a ");
            if !is_link_to_a_page && !url.starts_with('#') {
                assets.push(url.to_owned());
            }
        }
    }
    assets
}

/// The page loads nothing from elsewhere, and every asset it loads is served here.
async fn assert_self_contained(app: &TestApp, page: &str) {
    assert!(!page.contains("@import"), "no imported style sheet");
    for asset in assets_of(page) {
        assert!(
            asset.starts_with('/') && !asset.starts_with("//"),
            "{asset} is served by the service itself"
        );
        let response = app
            .send_raw(Request::get(&asset).body(Body::empty()).unwrap())
            .await;
        assert_eq!(response.status, StatusCode::OK, "{asset} is served");
    }
}

#[tokio::test]
async fn a_browser_gets_a_self_contained_html_page_with_a_form_for_every_endpoint() {
    // Arrange
    let app = spawn_app().await;

    for (path, _) in ENDPOINTS {
        for spelling in both_spellings(path) {
            // Act
            let response = browse(&app, &spelling).await;

            // Assert
            let page = assert_html_page(&response);
            assert!(page.contains(path), "{spelling} names itself");
            assert!(page.contains("<form"), "{spelling} has a form");
            assert_self_contained(&app, &page).await;
        }
    }
}

#[tokio::test]
async fn the_credential_pages_ask_for_an_email_and_a_password() {
    // Arrange
    let app = spawn_app().await;

    for path in ["/api/register/", "/api/login/"] {
        // Act
        let page = assert_html_page(&browse(&app, path).await);

        // Assert
        assert!(page.contains("name=\"email\""), "{path} asks for an email");
        assert!(
            page.contains("name=\"password\""),
            "{path} asks for a password"
        );
    }
}

#[tokio::test]
async fn the_me_page_asks_for_the_bearer_token() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let page = assert_html_page(&browse(&app, "/api/me/").await);

    // Assert
    assert!(page.to_lowercase().contains("bearer"), "{page}");
}

#[tokio::test]
async fn the_root_page_lists_every_endpoint() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = browse(&app, "/").await;

    // Assert
    let page = assert_html_page(&response);
    for (path, _) in ENDPOINTS {
        assert!(page.contains(&format!("{path}/")), "/ lists {path}");
    }
    assert_self_contained(&app, &page).await;
}

#[tokio::test]
async fn a_client_that_prefers_json_gets_json_from_an_endpoint() {
    // Arrange
    let app = spawn_app().await;

    for accept in [
        "application/json",
        "*/*",
        "text/html;q=0.5, application/json",
    ] {
        // Act
        let request = Request::get("/api/me/")
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap();
        let response = app.send(request).await;

        // Assert
        response.assert_not_authenticated();
    }
}

#[tokio::test]
async fn an_openapi_3_1_document_is_served_at_api_schema() {
    // Arrange
    let app = spawn_app().await;

    for path in ["/api/schema/", "/api/schema"] {
        // Act
        let response = app.get(path).await;

        // Assert
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        let version = response.body["openapi"]
            .as_str()
            .expect("an OpenAPI document");
        assert!(version.starts_with("3.1"), "{version}");
        let paths = response.body["paths"].as_object().expect("paths");
        for (endpoint, methods) in ENDPOINTS {
            let documented = paths
                .get(&format!("{endpoint}/"))
                .or_else(|| paths.get(endpoint))
                .unwrap_or_else(|| panic!("the schema documents {endpoint}"));
            for method in methods {
                assert!(
                    documented.get(method.to_lowercase()).is_some(),
                    "the schema documents {method} {endpoint}"
                );
            }
        }
    }
}
