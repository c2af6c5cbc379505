//! The browsable API and the OpenAPI document ("In a browser" in CONTRACT.md): a browser gets a
//! page at every endpoint's URL, every other client gets exactly the API's answers, and the
//! document at `/api/schema/` describes every route of the router.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use restful_auth::config::MetricsBind;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{PASSWORD, TestApp, spawn_app_with};

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The endpoints of the contract, and the document, each of which has a page.
const API_ENDPOINTS: [&str; 6] = [
    "/api/register/",
    "/api/login/",
    "/api/me/",
    "/api/refresh/",
    "/api/logout/",
    "/api/schema/",
];

/// The pages that are pages at every URL and for every client.
const PAGES: [&str; 4] = ["/", "/api/docs/", "/reset/", "/verify/"];

/// The API suite's service, with answers read as raw bytes: pages are not JSON.
struct App(TestApp);

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

async fn spawn_app() -> App {
    // `/metrics` on the public router, as with `--metrics-bind public`.
    App(spawn_app_with(|config| config.metrics_bind = MetricsBind::Public).await)
}

impl App {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.0.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        json_body: Option<&Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let body = match json_body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn browse(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(BROWSER), None).await
    }

    async fn schema(&self) -> Value {
        let answer = self.call(Method::GET, "/api/schema/", None, None).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()
    }
}

#[track_caller]
fn assert_page(answer: &Answer, status: StatusCode) -> String {
    assert_eq!(answer.status, status);
    assert_eq!(
        answer.header(header::CONTENT_TYPE),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        answer.header(header::CONTENT_SECURITY_POLICY),
        Some(CONTENT_SECURITY_POLICY)
    );
    assert_eq!(
        answer.header(header::X_CONTENT_TYPE_OPTIONS),
        Some("nosniff")
    );
    answer.text()
}

// ---- content negotiation --------------------------------------------------------------------

#[tokio::test]
async fn answers_that_depend_on_accept_say_so() {
    // Arrange
    let app = spawn_app().await;

    for path in ["/api/me/", "/api/login/", "/no/such/page/"] {
        for accept in [None, Some("application/json"), Some(BROWSER)] {
            // Act
            let answer = app.call(Method::GET, path, accept, None).await;

            // Assert
            assert_eq!(
                answer.header(header::VARY),
                Some("Accept"),
                "{path} {accept:?}"
            );
        }
    }
    // The same for every client: nothing to say.
    for path in ["/", "/healthz"] {
        let answer = app.call(Method::GET, path, Some(BROWSER), None).await;
        assert_eq!(answer.header(header::VARY), None, "{path}");
    }
}

#[tokio::test]
async fn a_browser_gets_the_page_of_every_api_endpoint_whatever_the_method() {
    // Arrange: every documented endpoint under /api/ but the reference, itself a page.
    let app = spawn_app().await;
    let document = app.schema().await;
    let endpoints: Vec<&String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|path| path.starts_with("/api/") && !PAGES.contains(&path.as_str()))
        .collect();
    for endpoint in API_ENDPOINTS {
        assert!(endpoints.iter().any(|path| *path == endpoint), "{endpoint}");
    }

    for endpoint in endpoints {
        let url = endpoint.replace("{id}", "0b6f9a54-5d43-4b6e-a1c9-3f0e7d2a8b11");
        for path in [url.as_str(), url.trim_end_matches('/')] {
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ] {
                // Act
                let answer = app.call(method.clone(), path, Some(BROWSER), None).await;

                // Assert
                let page = assert_page(&answer, StatusCode::OK);
                let heading = format!("<h1><code>{endpoint}</code>");
                assert!(page.contains(&heading), "{method} {path}");
                assert!(page.contains("<form"), "{method} {path} has a form");
                assert_eq!(answer.header(header::VARY), Some("Accept"));
                assert_eq!(answer.header(header::CACHE_CONTROL), Some("no-store"));
            }
        }
    }
}

#[tokio::test]
async fn json_clients_get_exactly_the_api_answers() {
    // Arrange
    let app = spawn_app().await;
    let requests: [(Method, &str, Option<Value>); 5] = [
        (Method::GET, "/api/login/", None),
        (Method::POST, "/api/login/", Some(json!({}))),
        (Method::GET, "/api/me", None),
        (Method::DELETE, "/api/me/", None),
        (Method::GET, "/nowhere", None),
    ];

    for (method, path, body) in requests {
        // Act: no Accept, as DRF's clients and curl send it, and what a browser's fetch sends.
        let plain = app.call(method.clone(), path, None, body.as_ref()).await;
        for accept in [
            "*/*",
            "application/json",
            "application/json, text/html",
            "text/html;q=0.5, application/json",
        ] {
            let negotiated = app
                .call(method.clone(), path, Some(accept), body.as_ref())
                .await;

            // Assert: the same answer, header for header (but the request id, which is new).
            assert_eq!(negotiated.status, plain.status, "{method} {path} {accept}");
            assert_eq!(negotiated.body, plain.body, "{method} {path} {accept}");
            let headers = |answer: &Answer| {
                let mut headers = answer.headers.clone();
                headers.remove("x-request-id");
                headers
            };
            assert_eq!(
                headers(&negotiated),
                headers(&plain),
                "{method} {path} {accept}"
            );
        }
        assert_eq!(
            plain.header(header::CONTENT_TYPE),
            Some("application/json; charset=utf-8"),
            "{method} {path}"
        );
        assert!(
            plain.header(header::CONTENT_SECURITY_POLICY).is_none(),
            "{method} {path}"
        );
    }
    let wrong_method = app
        .call(Method::GET, "/api/login/", Some("*/*"), None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        wrong_method.json(),
        json!({"detail": "Method \"GET\" not allowed."})
    );
    assert_eq!(wrong_method.header(header::ALLOW), Some("POST"));
}

#[tokio::test]
async fn a_form_posted_by_a_browser_without_javascript_does_nothing_and_echoes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let form = format!(
        "email=zoe%40example.net&password={}",
        PASSWORD.replace(' ', "+")
    );
    let request = Request::post("/api/register/")
        .header(header::ACCEPT, BROWSER)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();

    // Act
    let answer = app.send(request).await;

    // Assert: the page, with nothing of the request in it, and no account created.
    let page = assert_page(&answer, StatusCode::OK);
    assert!(!page.contains("zoe@example.net"));
    assert!(!page.contains(PASSWORD));
    let login = app
        .call(
            Method::POST,
            "/api/login/",
            None,
            Some(&json!({"email": "zoe@example.net", "password": PASSWORD})),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_page_never_shows_the_token_it_was_asked_with() {
    // Arrange
    let app = spawn_app().await;
    let request = Request::get("/api/me/")
        .header(header::ACCEPT, BROWSER)
        .header(header::AUTHORIZATION, "Bearer a.secret.token")
        .body(Body::empty())
        .unwrap();

    // Act
    let answer = app.send(request).await;

    // Assert
    let page = assert_page(&answer, StatusCode::OK);
    assert!(!page.contains("a.secret.token"));
}

#[tokio::test]
async fn the_index_and_the_reference_are_pages_for_every_client() {
    // Arrange
    let app = spawn_app().await;

    for path in PAGES {
        for accept in [None, Some(BROWSER), Some("application/json")] {
            // Act
            let answer = app.call(Method::GET, path, accept, None).await;

            // Assert
            let page = assert_page(&answer, StatusCode::OK);
            for endpoint in API_ENDPOINTS {
                assert!(
                    page.contains(&format!("href=\"{endpoint}\"")),
                    "{path} links {endpoint}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_url_is_a_page_for_a_browser_and_json_for_the_others() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let browser = app.browse("/api/nowhere/").await;
    let client = app.call(Method::GET, "/api/nowhere/", None, None).await;

    // Assert
    let page = assert_page(&browser, StatusCode::NOT_FOUND);
    assert!(page.contains("href=\"/api/login/\""));
    assert_eq!(client.status, StatusCode::NOT_FOUND);
    assert_eq!(client.json(), json!({"detail": "Not found."}));
}

// ---- self-contained pages -------------------------------------------------------------------

/// Whether a tag of `page` has an `on…=` attribute.
fn has_event_handler(page: &str) -> bool {
    page.split('<').skip(1).any(|tag| {
        let tag = tag.split('>').next().unwrap_or_default();
        tag.split_whitespace()
            .skip(1)
            .any(|attribute| attribute.starts_with("on") && attribute.contains('='))
    })
}

/// Every `src` and `href` value of `page`.
fn references(page: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_load_only_the_services_own_files_and_hold_no_inline_code() {
    // Arrange
    let app = spawn_app().await;
    let paths = API_ENDPOINTS.iter().chain(&PAGES).chain(&["/nowhere"]);

    for path in paths {
        // Act
        let page = app.browse(path).await.text();

        // Assert
        let lowercase = page.to_lowercase();
        assert!(
            !lowercase.contains("<style"),
            "{path}: no inline style sheet"
        );
        assert!(!lowercase.contains(" style="), "{path}: no inline style");
        assert!(
            !has_event_handler(&lowercase),
            "{path}: no inline event handler"
        );
        assert_eq!(
            lowercase.matches("<script").count(),
            lowercase
                .matches("<script type=\"module\" src=\"/assets/")
                .count(),
            "{path}: every script is a file of ours"
        );
        for reference in references(&page) {
            let local = reference.starts_with('#')
                || (reference.starts_with('/') && !reference.starts_with("//"));
            assert!(local, "{path}: {reference}");
            if reference.starts_with("/assets/") {
                let asset = app.call(Method::GET, &reference, None, None).await;
                assert_eq!(asset.status, StatusCode::OK, "{path}: {reference}");
            }
        }
    }
}

#[tokio::test]
async fn assets_are_served_with_their_media_types_and_unknown_ones_are_404() {
    // Arrange
    let app = spawn_app().await;
    let assets = [
        ("site.css", "text/css; charset=utf-8"),
        ("session.js", "text/javascript; charset=utf-8"),
        ("render.js", "text/javascript; charset=utf-8"),
        ("endpoint.js", "text/javascript; charset=utf-8"),
        ("form-errors.js", "text/javascript; charset=utf-8"),
        ("link.js", "text/javascript; charset=utf-8"),
        ("docs.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ];

    for (name, media_type) in assets {
        // Act
        let answer = app.browse(&format!("/assets/{name}")).await;

        // Assert
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(
            answer.header(header::CONTENT_TYPE),
            Some(media_type),
            "{name}"
        );
        assert_eq!(
            answer.header(header::X_CONTENT_TYPE_OPTIONS),
            Some("nosniff")
        );
        assert!(!answer.body.is_empty(), "{name}");
    }
    let missing = app
        .call(Method::GET, "/assets/missing.js", None, None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json(), json!({"detail": "Not found."}));
}

#[tokio::test]
async fn the_scripts_call_nothing_but_this_service() {
    // Arrange
    let app = spawn_app().await;

    for name in [
        "session.js",
        "render.js",
        "endpoint.js",
        "form-errors.js",
        "link.js",
        "docs.js",
    ] {
        // Act
        let script = app.browse(&format!("/assets/{name}")).await.text();

        // Assert: no other origin, and nothing that turns text into markup or code.
        for forbidden in [
            "http://",
            "https://",
            "innerHTML",
            "outerHTML",
            "eval(",
            "localStorage",
        ] {
            assert!(!script.contains(forbidden), "{name} uses {forbidden}");
        }
    }
}

// ---- the OpenAPI document -------------------------------------------------------------------

/// The paths the router routes. axum has no API that lists them, but its `Debug` output names
/// every one as `RouteId(n): "/path"`; if that format ever changes, the assertion on the
/// contract's paths below fails rather than letting this test pass on nothing. The fallback's
/// own catch-all route is axum's, not ours.
fn routes_of(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    debug
        .split("RouteId(")
        .skip(1)
        .filter_map(|rest| rest.split_once("): \"")?.1.split_once('"'))
        .map(|(path, _)| path.to_owned())
        .filter(|path| !path.contains("__private__axum"))
        .collect()
}

/// The methods `path` answers, as its `Allow` header lists them for a method it does not.
async fn methods_of(app: &App, path: &str) -> BTreeSet<String> {
    let probe = Method::from_bytes(b"PROBE").unwrap();
    let answer = app.call(probe, path, None, None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    answer
        .header(header::ALLOW)
        .unwrap_or_default()
        .split(',')
        .map(|method| method.trim().to_ascii_lowercase())
        // axum answers HEAD wherever it answers GET; OpenAPI implies it.
        .filter(|method| !method.is_empty() && method != "head")
        .collect()
}

/// `/api/me` and `/api/me/` are one endpoint.
fn canonical(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

#[tokio::test]
async fn the_document_lists_every_route_of_the_router_with_its_methods() {
    // Arrange
    let app = spawn_app().await;
    let document = app.schema().await;
    let documented: BTreeMap<String, BTreeSet<String>> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().cloned().collect();
            (canonical(path), methods)
        })
        .collect();

    // Act
    let mut routed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in routes_of(&app.0.routes) {
        let methods = methods_of(&app, &path).await;
        routed.entry(canonical(&path)).or_default().extend(methods);
    }

    // Assert
    for endpoint in API_ENDPOINTS {
        assert!(
            routed.contains_key(&canonical(endpoint)),
            "the router was read: {routed:?}"
        );
    }
    assert_eq!(routed, documented);
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_reference_in_it_resolves() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let document = app.schema().await;

    // Assert
    assert_eq!(document["openapi"], "3.1.0");
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        assert!(document.pointer(pointer).is_some(), "{reference} resolves");
    }
}

#[tokio::test]
async fn the_document_names_the_public_url_as_its_server_else_a_relative_one() {
    // Arrange
    let behind_a_proxy = App(spawn_app_with(|config| {
        config.metrics_bind = MetricsBind::Public;
        config.public_url = Some("https://auth.example.org".to_owned());
    })
    .await);
    let unconfigured = spawn_app().await;

    // Act
    let named = behind_a_proxy.schema().await;
    let relative = unconfigured.schema().await;

    // Assert: a client generated from the document sends its requests there.
    assert_eq!(
        named["servers"],
        json!([{"url": "https://auth.example.org"}])
    );
    assert_eq!(relative["servers"], json!([{"url": "/"}]));
}

#[tokio::test]
async fn every_operation_has_an_operation_id_of_its_own() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let document = app.schema().await;

    // Assert: client generators name their functions after these.
    let mut seen = BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            if let Some(earlier) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("{id} names both {earlier} and {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn the_pages_and_their_assets_are_marked_internal_and_nothing_else_is() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let document = app.schema().await;

    // Assert: generators and documentation tools that know `x-internal` leave out what only
    // a browser reads; the document itself stays in.
    let mut internal = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(mark) = operation.get("x-internal") {
                assert_eq!(mark, &json!(true), "{method} {path}");
                internal.insert(path.as_str());
            }
        }
    }
    assert_eq!(
        internal,
        BTreeSet::from(["/", "/api/docs/", "/reset/", "/verify/", "/assets/{name}"])
    );
}

fn collect_references(value: &Value, references: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                references.push(reference.clone());
            }
            map.values()
                .for_each(|value| collect_references(value, references));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|value| collect_references(value, references)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_describes_every_answer_and_error_shape_of_the_contract() {
    // Arrange
    let app = spawn_app().await;
    // Path, method, whether it needs an access token, and its answers besides those of a body
    // (400, 413, 415), which every operation that reads one has.
    let expected: [(&str, &str, bool, &[&str]); 11] = [
        (
            "/api/register/",
            "post",
            false,
            &["201", "405", "429", "503"],
        ),
        (
            "/api/login/",
            "post",
            false,
            &["200", "401", "405", "429", "503"],
        ),
        (
            "/api/refresh/",
            "post",
            false,
            &["200", "401", "405", "429", "503"],
        ),
        (
            "/api/logout/",
            "post",
            false,
            &["200", "401", "405", "429", "503"],
        ),
        ("/api/me/", "get", true, &["200", "401", "405", "503"]),
        ("/api/me/", "put", true, &["200", "401", "405", "503"]),
        ("/api/me/", "patch", true, &["200", "401", "405", "503"]),
        (
            "/api/me/password/",
            "post",
            true,
            &["200", "401", "405", "503"],
        ),
        ("/api/sessions/", "get", true, &["200", "401", "405", "503"]),
        (
            "/api/sessions/{id}/",
            "delete",
            true,
            &["204", "401", "404", "405", "503"],
        ),
        (
            "/api/logout/all/",
            "post",
            true,
            &["200", "401", "405", "503"],
        ),
    ];

    // Act
    let document = app.schema().await;

    // Assert
    for (path, method, bearer, statuses) in expected {
        let operation = &document["paths"][path][method];
        let answers: BTreeSet<&str> = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .keys()
            .map(String::as_str)
            .collect();
        let reads_a_body = operation["requestBody"].is_object();
        let body_answers = reads_a_body.then_some(["400", "413", "415"]);
        let expected: BTreeSet<&str> = statuses
            .iter()
            .copied()
            .chain(body_answers.into_iter().flatten())
            .collect();
        assert_eq!(answers, expected, "{method} {path}");
        if reads_a_body {
            let content = operation["requestBody"]["content"].as_object().unwrap();
            for media_type in ["application/json", "application/x-www-form-urlencoded"] {
                assert!(
                    content.contains_key(media_type),
                    "{method} {path}: {media_type}"
                );
            }
        }
        assert_eq!(operation["security"].is_array(), bearer, "{method} {path}");
    }
    let schemas = &document["components"]["schemas"];
    for shape in [
        "Detail",
        "FieldErrors",
        "BadRequest",
        "Tokens",
        "Profile",
        "Registered",
        "Success",
    ] {
        assert!(schemas[shape].is_object(), "{shape} is described");
    }
    assert_eq!(
        schemas["Tokens"]["required"],
        json!(["access_token", "refresh_token", "token_type", "expires_in"])
    );
    let components = &document["components"];
    assert_eq!(components["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (response, header) in [
        ("NotAuthenticated", "WWW-Authenticate"),
        ("MethodNotAllowed", "Allow"),
        ("Throttled", "Retry-After"),
        ("ServiceUnavailable", "Retry-After"),
    ] {
        assert!(
            components["responses"][response]["headers"][header].is_object(),
            "{response}"
        );
    }
}

/// The pages a mailed link opens read its token from the URL's fragment, which no request
/// carries, take it out of the address bar, and post it to the API ("Password reset" in
/// CONTRACT.md).
#[tokio::test]
async fn the_pages_a_mailed_link_opens_post_its_token_from_the_fragment() {
    let app = spawn_app().await;

    for (page, api) in [
        ("/reset/", "/api/password/reset/confirm/"),
        ("/verify/", "/api/email/verify/confirm/"),
    ] {
        let answer = app.browse(page).await;
        let html = assert_page(&answer, StatusCode::OK);
        assert!(html.contains(&format!("data-path=\"{api}\"")), "{page}");
        assert!(html.contains("src=\"/assets/link.js\""), "{page}");
        assert!(!html.contains("token="), "{page} shows no token");
    }
    let script = app.browse("/assets/link.js").await.text();
    assert!(script.contains("window.location.hash"));
    assert!(script.contains("history.replaceState"));
}

#[tokio::test]
async fn the_login_page_keeps_its_one_time_code_fields_hidden_until_the_service_asks() {
    let app = spawn_app().await;

    let page = assert_page(&app.browse("/api/login/").await, StatusCode::OK);

    for field in ["otp", "recovery_code"] {
        let input = format!("name=\"{field}\"");
        let at = page
            .find(&input)
            .unwrap_or_else(|| panic!("{field} on the page"));
        let wrapper = &page[page[..at].rfind("<div").unwrap()..at];
        assert!(wrapper.contains("data-second-factor hidden"), "{wrapper}");
    }
    let password = page.find("name=\"password\"").unwrap();
    let wrapper = &page[page[..password].rfind("<div").unwrap()..password];
    assert!(!wrapper.contains("hidden"), "{wrapper}");
}

#[tokio::test]
async fn the_authenticator_page_carries_the_form_that_confirms_it() {
    let app = spawn_app().await;

    let page = assert_page(&app.browse("/api/me/mfa/totp/").await, StatusCode::OK);

    assert!(
        page.contains("data-path=\"/api/me/mfa/totp/confirm/\""),
        "{page}"
    );
    assert!(page.contains("id=\"next-post-code\""), "{page}");
    let schema = app.schema().await;
    assert_eq!(
        schema
            .pointer("/paths/~1api~1me~1mfa~1totp~1/post/responses/201/links/confirm/operationId"),
        Some(&json!("confirm_totp"))
    );
}
