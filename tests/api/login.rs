//! `POST /api/login/` and the tokens it hands out.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestResponse, spawn_app, spawn_app_with, tokens_of};
use restful_auth::domain::clock::Clock as _;

/// The canonical spelling of a random (version 4) UUID.
fn assert_canonical_uuid_v4(text: &str) {
    let uuid = Uuid::parse_str(text).unwrap_or_else(|_| panic!("{text} is a UUID"));
    assert_eq!(uuid.get_version_num(), 4, "{text} is a random UUID");
    assert_eq!(uuid.hyphenated().to_string(), text, "canonical spelling");
}

/// The headers of an answer but its request id, which differs on every request by design.
fn same_headers(response: &TestResponse) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<_> = response
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "x-request-id")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    headers
}

#[tokio::test]
async fn login_answers_200_with_a_bearer_access_token_a_refresh_token_and_its_lifetime() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    // Act
    let response = app.login("ann@example.org", PASSWORD).await;

    // Assert
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let keys: BTreeSet<&str> = response
        .body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["access_token", "expires_in", "refresh_token", "token_type"])
    );
    assert_eq!(response.body["token_type"], "Bearer");
    assert_eq!(response.body["expires_in"], 30);
    assert_canonical_uuid_v4(response.body["refresh_token"].as_str().unwrap());
    let access = response.body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).expect("a JWT");
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
}

#[tokio::test]
async fn the_access_token_carries_simplejwt_claims_and_lives_30_seconds() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let before = app.clock.now();

    // Act
    let tokens = app.login_user(&user).await;

    // Assert
    let after = app.clock.now();
    let claims = app.claims_of(&tokens.access);
    let names: BTreeSet<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "amr",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "sid",
            "token_type",
            "user_id"
        ])
    );
    assert_eq!(claims["iss"], app.config.public_url());
    assert_eq!(claims["aud"], "restful-auth");
    assert_eq!(claims["token_type"], "access");
    assert_eq!(claims["user_id"], user.id);
    assert!(Uuid::parse_str(claims["sid"].as_str().expect("sid is text")).is_ok());
    assert_eq!(
        claims["amr"],
        serde_json::json!(["pwd"]),
        "a password login (RFC 8176)"
    );
    assert!(!claims["jti"].as_str().expect("jti is text").is_empty());
    let iat = claims["iat"].as_i64().expect("iat is a number");
    assert!(
        (before..=after).contains(&iat),
        "{iat} in {before}..={after}"
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 30);
}

#[tokio::test]
async fn the_access_token_lifetime_is_configurable() {
    // Arrange
    let app =
        spawn_app_with(|config| config.access_token_lifetime = Duration::from_secs(300)).await;
    app.register_user("ann@example.org").await;

    // Act
    let response = app.login("ann@example.org", PASSWORD).await;

    // Assert
    assert_eq!(response.body["expires_in"], 300);
    let claims = app.claims_of(&tokens_of(&response).access);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
}

#[tokio::test]
async fn the_refresh_token_is_stored_with_a_30_day_lifetime() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;

    // Act
    app.login_user(&user).await;

    // Assert
    let stored = app.stored_refresh_tokens();
    assert_eq!(stored.len(), 1);
    let (_, issued_at, expires_at) = stored[0];
    assert_eq!(expires_at - issued_at, 30 * 24 * 60 * 60);
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_no_active_account_found() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    // Act
    let response = app
        .login("ann@example.org", "correct horse battery stapler")
        .await;

    // Assert
    response.assert_invalid_credentials();
}

#[tokio::test]
async fn an_unknown_email_is_refused_exactly_like_a_wrong_password() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;
    let wrong_password = app.login("ann@example.org", "not the password").await;

    // Act
    let unknown = app.login("bob@example.org", PASSWORD).await;

    // Assert
    unknown.assert_invalid_credentials();
    assert_eq!(unknown.bytes, wrong_password.bytes);
    assert_eq!(same_headers(&unknown), same_headers(&wrong_password));
}

#[tokio::test]
async fn an_inactive_user_is_refused_exactly_like_a_wrong_password() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let wrong_password = app.login("ann@example.org", "not the password").await;
    app.set_is_active_column(user.id, false);

    // Act
    let inactive = app.login("ann@example.org", PASSWORD).await;

    // Assert
    inactive.assert_invalid_credentials();
    assert_eq!(inactive.bytes, wrong_password.bytes);
    assert_eq!(same_headers(&inactive), same_headers(&wrong_password));
}

#[tokio::test]
async fn a_login_that_looks_like_sql_injection_is_just_wrong_credentials() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    for (email, password) in [
        ("' OR '1'='1", "' OR '1'='1"),
        ("ann@example.org' --", "x"),
        ("ann@example.org", "' OR 1=1; --"),
    ] {
        // Act
        let response = app.login(email, password).await;

        // Assert
        response.assert_invalid_credentials();
    }
}

#[tokio::test]
async fn the_email_is_looked_up_case_insensitively_and_trimmed() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("Ann.Lee@Example.org").await;

    for spelling in [
        "Ann.Lee@example.org",
        "ann.lee@example.org",
        "ANN.LEE@EXAMPLE.ORG",
        "  ann.lee@Example.Org  ",
    ] {
        // Act
        let response = app.login(spelling, PASSWORD).await;

        // Assert
        assert_eq!(response.status, StatusCode::OK, "{spelling}: {response:?}");
    }
}

#[tokio::test]
async fn the_password_is_compared_exactly() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;

    for wrong in [
        "Correct horse battery staple",
        "correct horse battery staple ",
        "correct horse battery",
    ] {
        // Act
        let response = app.login("ann@example.org", wrong).await;

        // Assert
        response.assert_invalid_credentials();
    }
}

#[tokio::test]
async fn login_requires_both_fields() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        (
            json!({}),
            json!({"email": ["This field is required."], "password": ["This field is required."]}),
        ),
        (
            json!({"email": "ann@example.org"}),
            json!({"password": ["This field is required."]}),
        ),
        (
            json!({"password": PASSWORD}),
            json!({"email": ["This field is required."]}),
        ),
        (
            json!({"email": "", "password": ""}),
            json!({"email": ["This field may not be blank."], "password": ["This field may not be blank."]}),
        ),
        (
            json!({"email": null, "password": PASSWORD}),
            json!({"email": ["This field may not be null."]}),
        ),
    ];

    for (body, errors) in cases {
        // Act
        let response = app.post_json("/api/login/", &body).await;

        // Assert
        response.assert(StatusCode::BAD_REQUEST, errors);
    }
}

#[tokio::test]
async fn login_accepts_a_form_urlencoded_body() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;

    // Act
    let response = app
        .post_form(
            "/api/login/",
            "email=ann%40example.org&password=correct%20horse%20battery%20staple",
        )
        .await;

    // Assert
    let tokens = tokens_of(&response);
    assert_eq!(app.claims_of(&tokens.access)["user_id"], user.id);
}

#[tokio::test]
async fn each_login_starts_a_session_of_its_own() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;

    // Act
    let laptop = app.login_user(&user).await;
    let phone = app.login_user(&user).await;

    // Assert
    assert_ne!(laptop.refresh, phone.refresh);
    let (laptop_claims, phone_claims) =
        (app.claims_of(&laptop.access), app.claims_of(&phone.access));
    assert_ne!(laptop_claims["sid"], phone_claims["sid"]);
    assert_ne!(laptop_claims["jti"], phone_claims["jti"]);
    assert_eq!(app.count_rows("sessions"), 2);
}

#[tokio::test]
async fn logging_out_one_session_leaves_the_others_working() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let laptop = app.login_user(&user).await;
    let phone = app.login_user(&user).await;

    // Act
    app.logout(&laptop.refresh)
        .await
        .assert(StatusCode::OK, json!({"success": "User logged out."}));

    // Assert
    app.get_me(&laptop.access)
        .await
        .assert_access_token_refused();
    app.refresh(&laptop.refresh)
        .await
        .assert_refresh_token_refused();
    assert_eq!(app.get_me(&phone.access).await.status, StatusCode::OK);
    let renewed = app.refresh_ok(&phone.refresh).await;
    assert_eq!(app.get_me(&renewed.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_generated_signing_secret_is_kept_in_the_database_and_shared_by_every_instance() {
    // Arrange
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;

    // Act
    let instance = app.another_instance().await;
    let response = instance.get_me(&tokens.access).await;

    // Assert
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
}

#[tokio::test]
async fn a_generated_signing_secret_differs_between_databases() {
    // Arrange
    let ours = spawn_app_with(|config| config.secret_key = None).await;
    let theirs = spawn_app_with(|config| config.secret_key = None).await;
    ours.register_user("ann@example.org").await;
    let user = theirs.register_user("ann@example.org").await;
    let foreign = theirs.login_user(&user).await;

    // Act
    let response = ours.get_me(&foreign.access).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn the_configured_secret_signs_the_access_tokens() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;

    // Act
    let claims: Value = app.claims_of(&tokens.access);

    // Assert: the key alone verifies the token, with no database.
    assert_eq!(claims["user_id"], user.id);
}

#[tokio::test]
async fn lifetimes_changed_at_run_time_reach_every_instance_sharing_the_database() {
    // Arrange
    let app = spawn_app().await;
    let other = app.another_instance().await;
    let user = app.register_user("ann@example.org").await;
    assert_eq!(
        app.login(&user.email, PASSWORD).await.body["expires_in"],
        30
    );

    // Act
    app.admin.set_setting("access-token-lifetime", "2m").await;
    app.admin.set_setting("refresh-token-lifetime", "1h").await;
    other.admin.reload().await;

    // Assert
    let response = other.login(&user.email, PASSWORD).await;
    assert_eq!(response.body["expires_in"], 120, "{response:?}");
    let claims = other.claims_of(&tokens_of(&response).access);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    let lifetimes: Vec<i64> = app
        .stored_refresh_tokens()
        .into_iter()
        .map(|(_, issued_at, expires_at)| expires_at - issued_at)
        .collect();
    assert!(lifetimes.contains(&3600), "{lifetimes:?}");
}

#[tokio::test]
async fn after_a_key_rotation_new_tokens_name_the_new_key_and_older_ones_stay_valid() {
    // Arrange
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let other = app.another_instance().await;
    let user = app.register_user("ann@example.org").await;
    let before = app.login_user(&user).await;

    // Act
    let rotated = app.admin.rotate_signing_key(true).await;
    app.admin.reload().await;
    other.admin.reload().await;
    let after = app.login_user(&user).await;

    // Assert
    assert!(rotated.is_some(), "keys kept in the database rotate");
    let old_kid = jsonwebtoken::decode_header(&before.access).unwrap().kid;
    let new_kid = jsonwebtoken::decode_header(&after.access).unwrap().kid;
    assert!(old_kid.is_some());
    assert_eq!(new_kid, rotated);
    assert_ne!(old_kid, new_kid);
    for instance in [&app, &other] {
        for tokens in [&before, &after] {
            let response = instance.get_me(&tokens.access).await;
            assert_eq!(response.status, StatusCode::OK, "{response:?}");
        }
    }
}
