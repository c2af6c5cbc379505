//! `POST /api/register/`.

use axum::http::StatusCode;
use serde_json::json;

use restful_auth::config::Argon2Cost;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

const TOO_SHORT: &str = "This password is too short. It must contain at least 8 characters.";
const TOO_COMMON: &str = "This password is too common.";
const NUMERIC: &str = "This password is entirely numeric.";
const TOO_SIMILAR: &str = "The password is too similar to the email.";
const EMAIL_TAKEN: &str = "user with this email already exists.";
const INVALID_EMAIL: &str = "Enter a valid email address.";

#[tokio::test]
async fn register_answers_201_with_the_new_id_and_email() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let first = app.register("ann@example.org", PASSWORD).await;
    let second = app.register("bob@example.org", PASSWORD).await;

    // Assert
    first.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "ann@example.org"}),
    );
    second.assert(
        StatusCode::CREATED,
        json!({"id": 2, "email": "bob@example.org"}),
    );
}

#[tokio::test]
async fn register_stores_the_email_trimmed_with_its_domain_lower_cased() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.register("  Ann.Lee@Example.ORG \t", PASSWORD).await;

    // Assert
    response.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "Ann.Lee@example.org"}),
    );
}

#[tokio::test]
async fn the_username_of_a_new_user_is_its_normalised_email() {
    // Arrange
    let app = spawn_app().await;
    app.register(" Ann.Lee@Example.ORG ", PASSWORD).await;
    let tokens = crate::helpers::tokens_of(&app.login("ann.lee@example.org", PASSWORD).await);

    // Act
    let me = app.get_me(&tokens.access).await;

    // Assert
    me.assert(
        StatusCode::OK,
        json!({"id": 1, "username": "Ann.Lee@example.org", "email": "Ann.Lee@example.org"}),
    );
}

#[tokio::test]
async fn an_email_is_unique_whatever_its_case() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    for spelling in [
        "ann@example.org",
        "ANN@EXAMPLE.ORG",
        "Ann@example.org",
        " ann@Example.Org ",
    ] {
        // Act
        let response = app.register(spelling, PASSWORD).await;

        // Assert
        response.assert(StatusCode::BAD_REQUEST, json!({"email": [EMAIL_TAKEN]}));
    }
    assert_eq!(app.count_rows("users"), 1);
}

#[tokio::test]
async fn a_taken_email_does_not_change_the_existing_account() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    // Act
    let response = app
        .register("ANN@example.org", "another strong passphrase")
        .await;

    // Assert
    response.assert(StatusCode::BAD_REQUEST, json!({"email": [EMAIL_TAKEN]}));
    app.login("ann@example.org", "another strong passphrase")
        .await
        .assert_invalid_credentials();
    assert_eq!(
        app.login("ann@example.org", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_create_one_account_and_no_server_error() {
    // Arrange
    let app = spawn_app().await;
    let spellings = ["ann@example.org", "ANN@example.org", "Ann@Example.org"];

    // Act
    let attempts = (0..12).map(|i| {
        let router = app.router.clone();
        let body = json!({"email": spellings[i % 3], "password": PASSWORD});
        tokio::spawn(async move {
            use tower::ServiceExt;
            let request = axum::http::Request::post("/api/register/")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        })
    });
    let mut answers = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        answers.push(attempt.await.unwrap());
    }

    // Assert
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(
            (*status, body),
            (StatusCode::BAD_REQUEST, &json!({"email": [EMAIL_TAKEN]}))
        );
    }
    assert_eq!(app.count_rows("users"), 1);
}

#[tokio::test]
async fn an_invalid_email_is_refused() {
    // Arrange
    let app = spawn_app().await;

    for email in [
        "plainaddress",
        "ann@",
        "@example.org",
        "ann@example",
        "ann@@example.org",
        "ann@example..org",
        "ann@.example.org",
        "ann lee@example.org",
        "Ann <ann@example.org>",
        "ann@exa mple.org",
    ] {
        // Act
        let response = app.register(email, PASSWORD).await;

        // Assert
        response.assert(StatusCode::BAD_REQUEST, json!({"email": [INVALID_EMAIL]}));
    }
    assert_eq!(app.count_rows("users"), 0);
}

#[tokio::test]
async fn an_address_djangos_validator_refuses_is_refused() {
    // Arrange
    let app = spawn_app().await;

    for email in ["ann@example.c", "ann@x_y.org"] {
        // Act
        let response = app.register(email, PASSWORD).await;

        // Assert
        response.assert(StatusCode::BAD_REQUEST, json!({"email": [INVALID_EMAIL]}));
    }
}

#[tokio::test]
async fn a_number_for_the_email_is_read_as_text_and_is_not_an_address() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_json(
            "/api/register/",
            &json!({"email": 42, "password": PASSWORD}),
        )
        .await;

    // Assert
    response.assert(StatusCode::BAD_REQUEST, json!({"email": [INVALID_EMAIL]}));
}

/// The longest address RFC 5321 allows: a 64-character local part and 63-character labels.
fn address_of_length(length: usize) -> String {
    let local = "a".repeat(64);
    let last_label = length - (64 + 1 + 63 + 1 + 63 + 1 + 4);
    let email = format!(
        "{local}@{}.{}.{}.org",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(last_label)
    );
    assert_eq!(email.len(), length);
    email
}

#[tokio::test]
async fn an_email_of_254_characters_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let email = address_of_length(254);

    // Act
    let response = app.register(&email, PASSWORD).await;

    // Assert
    response.assert(StatusCode::CREATED, json!({"id": 1, "email": email}));
}

#[tokio::test]
async fn an_email_over_254_characters_is_refused() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.register(&address_of_length(255), PASSWORD).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["Ensure this field has no more than 254 characters."]}),
    );
    assert_eq!(app.count_rows("users"), 0);
}

#[tokio::test]
async fn missing_fields_are_each_required() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.post_json("/api/register/", &json!({})).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["This field is required."], "password": ["This field is required."]}),
    );
}

#[tokio::test]
async fn an_empty_body_misses_every_field() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .request(axum::http::Method::POST, "/api/register/", None, None)
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["This field is required."], "password": ["This field is required."]}),
    );
}

#[tokio::test]
async fn blank_fields_may_not_be_blank() {
    // Arrange
    let app = spawn_app().await;

    for body in [
        json!({"email": "", "password": ""}),
        json!({"email": "   ", "password": " \t "}),
    ] {
        // Act
        let response = app.post_json("/api/register/", &body).await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({
                "email": ["This field may not be blank."],
                "password": ["This field may not be blank."],
            }),
        );
    }
}

#[tokio::test]
async fn null_fields_may_not_be_null() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_json("/api/register/", &json!({"email": null, "password": null}))
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({
            "email": ["This field may not be null."],
            "password": ["This field may not be null."],
        }),
    );
}

#[tokio::test]
async fn fields_that_are_not_text_are_not_valid_strings() {
    // Arrange
    let app = spawn_app().await;

    for (email, password) in [
        (json!(true), json!(["correct horse battery staple"])),
        (json!({"address": "ann@example.org"}), json!(false)),
    ] {
        // Act
        let response = app
            .post_json(
                "/api/register/",
                &json!({"email": email, "password": password}),
            )
            .await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({
                "email": ["Not a valid string."],
                "password": ["Not a valid string."],
            }),
        );
    }
}

#[tokio::test]
async fn each_password_validator_has_djangos_message() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        ("ann@example.org", "Zq8#vL", TOO_SHORT),
        ("ann@example.org", "password", TOO_COMMON),
        ("ann@example.org", "PassWord", TOO_COMMON),
        ("ann@example.org", "73920584613", NUMERIC),
        ("annlee@example.org", "annlee.example", TOO_SIMILAR),
        ("annlee@example.org", "ANNLEE@example.org", TOO_SIMILAR),
    ];

    for (email, password, message) in cases {
        // Act
        let response = app.register(email, password).await;

        // Assert
        response.assert(StatusCode::BAD_REQUEST, json!({"password": [message]}));
    }
    assert_eq!(app.count_rows("users"), 0);
}

#[tokio::test]
async fn every_broken_password_rule_is_reported_at_once() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.register("ann@example.org", "12345").await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"password": [TOO_SHORT, TOO_COMMON, NUMERIC]}),
    );
}

#[tokio::test]
async fn the_password_rules_are_checked_once_every_field_is_well_formed() {
    // Arrange: as DRF runs a serializer's `validate()` only after its fields passed.
    let app = spawn_app().await;

    // Act
    let malformed_email = app.register("not-an-email", "12345").await;
    let well_formed = app.register("ann@example.org", "12345").await;

    // Assert
    malformed_email.assert(StatusCode::BAD_REQUEST, json!({"email": [INVALID_EMAIL]}));
    well_formed.assert(
        StatusCode::BAD_REQUEST,
        json!({"password": [TOO_SHORT, TOO_COMMON, NUMERIC]}),
    );
}

#[tokio::test]
async fn a_taken_email_and_a_weak_password_come_together_in_one_answer() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    // Act
    let response = app.register("ANN@example.org", "password").await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": [EMAIL_TAKEN], "password": [TOO_COMMON]}),
    );
}

#[tokio::test]
async fn the_minimum_password_length_is_configurable() {
    // Arrange
    let app = spawn_app_with(|config| config.password_min_length = 12).await;

    // Act
    let short = app.register("ann@example.org", "Zq8#vLw2m").await;
    let long_enough = app.register("ann@example.org", "Zq8#vLw2m!kP").await;

    // Assert
    short.assert(
        StatusCode::BAD_REQUEST,
        json!({"password": ["This password is too short. It must contain at least 12 characters."]}),
    );
    assert_eq!(long_enough.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_password_of_1024_characters_is_accepted_and_counted_in_characters() {
    // Arrange
    let app = spawn_app().await;
    let password = "é".repeat(1024);

    // Act
    let response = app.register("ann@example.org", &password).await;

    // Assert
    response.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "ann@example.org"}),
    );
    assert_eq!(
        app.login("ann@example.org", &password).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_over_1024_characters_is_refused() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.register("ann@example.org", &"x".repeat(1025)).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"password": ["Ensure this field has no more than 1024 characters."]}),
    );
    assert_eq!(app.count_rows("users"), 0);
}

#[tokio::test]
async fn a_password_keeps_its_surrounding_spaces() {
    // Arrange
    let app = spawn_app().await;
    let password = "  correct horse battery staple  ";
    app.register("ann@example.org", password).await;

    // Act
    let response = app.login("ann@example.org", password).await;

    // Assert
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
}

#[tokio::test]
async fn register_accepts_a_form_urlencoded_body() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_form(
            "/api/register/",
            "email=Ann%40Example.org&password=correct+horse+battery+staple",
        )
        .await;

    // Assert
    response.assert(
        StatusCode::CREATED,
        json!({"id": 1, "email": "Ann@example.org"}),
    );
    assert_eq!(
        app.login("ann@example.org", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_form_registration_reports_field_errors_as_json() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_form("/api/register/", "email=nobody&password=")
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": [INVALID_EMAIL], "password": ["This field may not be blank."]}),
    );
}

#[tokio::test]
async fn a_failed_registration_creates_nothing() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.register("ann@example.org", "password").await;

    // Assert
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("users"), 0);
    app.login("ann@example.org", "password")
        .await
        .assert_invalid_credentials();
}

#[tokio::test]
async fn the_password_is_stored_only_as_an_argon2id_hash_with_owasp_parameters() {
    // Arrange: the service's own cost (the suite's others hash cheaply).
    let app = spawn_app_with(|config| config.argon2_cost = Argon2Cost::OWASP).await;

    // Act
    let user = app.register_user("ann@example.org").await;

    // Assert
    let stored = app.password_hash_of(user.id);
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(
        app.every_stored_value()
            .iter()
            .all(|value| !String::from_utf8_lossy(value).contains(PASSWORD)),
        "the password itself is stored nowhere"
    );
}
