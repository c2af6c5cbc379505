//! `GET, PUT, PATCH /api/me/`: the caller's profile, and who counts as the caller.

use axum::http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, Tokens, base64_url, forge, header_of, now, spawn_app};

fn profile(id: i64, username: &str) -> Value {
    json!({"id": id, "username": username, "email": "ann@example.org"})
}

// ---- reading and changing the profile ------------------------------------------------------

#[tokio::test]
async fn get_me_answers_the_callers_id_username_and_email() {
    // Arrange
    let app = spawn_app().await;
    app.register_user("bob@example.org").await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let response = app.get_me(&tokens.access).await;

    // Assert
    response.assert(StatusCode::OK, profile(2, "ann@example.org"));
    assert_eq!(user.id, 2);
}

#[tokio::test]
async fn put_me_renames_the_user_with_the_name_trimmed() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let response = app
        .put_me(&tokens.access, &json!({"username": "  John Smith \n"}))
        .await;

    // Assert
    response.assert(StatusCode::OK, profile(user.id, "John Smith"));
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "John Smith"));
}

#[tokio::test]
async fn put_me_requires_a_username() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let response = app.put_me(&tokens.access, &json!({})).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"username": ["This field is required."]}),
    );
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "ann@example.org"));
}

#[tokio::test]
async fn put_me_with_an_empty_body_requires_a_username() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    // Act
    let response = app
        .request(Method::PUT, "/api/me/", Some(&tokens.access), None)
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"username": ["This field is required."]}),
    );
}

#[tokio::test]
async fn a_blank_or_null_username_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let cases = [
        (json!(""), "This field may not be blank."),
        (json!("   \t "), "This field may not be blank."),
        (json!(null), "This field may not be null."),
        (json!(["John"]), "Not a valid string."),
    ];

    for (username, message) in cases {
        // Act
        let put = app
            .put_me(&tokens.access, &json!({"username": username}))
            .await;
        let patch = app
            .patch_me(&tokens.access, &json!({"username": username}))
            .await;

        // Assert
        put.assert(StatusCode::BAD_REQUEST, json!({"username": [message]}));
        patch.assert(StatusCode::BAD_REQUEST, json!({"username": [message]}));
    }
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "ann@example.org"));
}

#[tokio::test]
async fn patch_me_without_a_username_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let with_object = app.patch_me(&tokens.access, &json!({})).await;
    let without_body = app
        .request(Method::PATCH, "/api/me/", Some(&tokens.access), None)
        .await;

    // Assert
    with_object.assert(StatusCode::OK, profile(user.id, "ann@example.org"));
    without_body.assert(StatusCode::OK, profile(user.id, "ann@example.org"));
}

#[tokio::test]
async fn patch_me_with_a_username_renames_the_user() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let response = app
        .patch_me(&tokens.access, &json!({"username": " Ann Lee "}))
        .await;

    // Assert
    response.assert(StatusCode::OK, profile(user.id, "Ann Lee"));
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "Ann Lee"));
}

#[tokio::test]
async fn id_and_email_are_read_only() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let body = json!({"username": "Ann", "id": 999, "email": "mallory@example.org"});

    // Act
    let put = app.put_me(&tokens.access, &body).await;
    let patch = app
        .patch_me(
            &tokens.access,
            &json!({"id": 1000, "email": "eve@example.org"}),
        )
        .await;

    // Assert
    put.assert(StatusCode::OK, profile(user.id, "Ann"));
    patch.assert(StatusCode::OK, profile(user.id, "Ann"));
    app.login("mallory@example.org", &user.password)
        .await
        .assert_invalid_credentials();
    assert_eq!(
        app.login("ann@example.org", &user.password).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_username_of_150_characters_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    for name in ["a".repeat(150), "é".repeat(150), "🦀".repeat(150)] {
        // Act
        let response = app
            .put_me(&tokens.access, &json!({"username": format!("  {name}  ")}))
            .await;

        // Assert
        response.assert(StatusCode::OK, profile(user.id, &name));
    }
}

#[tokio::test]
async fn a_username_of_151_characters_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    for name in ["a".repeat(151), "é".repeat(151)] {
        // Act
        let response = app.put_me(&tokens.access, &json!({"username": name})).await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({"username": ["Ensure this field has no more than 150 characters."]}),
        );
    }
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "ann@example.org"));
}

#[tokio::test]
async fn a_username_with_control_characters_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    for name in [
        "line\nbreak",
        "carriage\rreturn",
        "tab\there",
        "bell\u{7}",
        "\u{1b}[31mred",
        "delete\u{7f}me",
        "next\u{85}line",
    ] {
        // Act
        let response = app.put_me(&tokens.access, &json!({"username": name})).await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({"username": ["Control characters are not allowed."]}),
        );
    }
    app.get_me(&tokens.access)
        .await
        .assert(StatusCode::OK, profile(user.id, "ann@example.org"));
}

#[tokio::test]
async fn a_username_with_a_null_character_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    // Act
    let response = app
        .put_me(&tokens.access, &json!({"username": "nul\u{0}byte"}))
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"username": ["Null characters are not allowed."]}),
    );
}

#[tokio::test]
async fn hostile_usernames_are_stored_and_returned_verbatim() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    for name in [
        "Robert'); DROP TABLE users;--",
        "' OR '1'='1",
        "<script>alert(\"x\")</script>",
        "\"quoted\" and 'single' and `back`",
        "back\\slash \\u0000 %s %n {{name}}",
        "🦀 👨‍👩‍👧 🏳️‍🌈",
        "\u{202e}evil\u{202c} \u{200f}rtl\u{200e}",
        "李小龍 محمد Ωμέγα",
        "zero\u{200b}width",
    ] {
        // Act
        let put = app.put_me(&tokens.access, &json!({"username": name})).await;
        let get = app.get_me(&tokens.access).await;

        // Assert
        put.assert(StatusCode::OK, profile(user.id, name));
        get.assert(StatusCode::OK, profile(user.id, name));
    }
    assert_eq!(app.count_rows("users"), 1);
}

#[tokio::test]
async fn a_numeric_username_is_read_as_text() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    // Act
    let response = app.put_me(&tokens.access, &json!({"username": 42})).await;

    // Assert
    response.assert(StatusCode::OK, profile(user.id, "42"));
}

#[tokio::test]
async fn usernames_need_not_be_unique() {
    // Arrange
    let app = spawn_app().await;
    let (_, ann) = app.register_and_login().await;
    let bob = app.register_user("bob@example.org").await;
    let bob_tokens = app.login_user(&bob).await;
    app.put_me(&ann.access, &json!({"username": "Sam"})).await;

    // Act
    let response = app
        .put_me(&bob_tokens.access, &json!({"username": "Sam"}))
        .await;

    // Assert
    response.assert(
        StatusCode::OK,
        json!({"id": bob.id, "username": "Sam", "email": "bob@example.org"}),
    );
}

#[tokio::test]
async fn put_me_accepts_a_form_urlencoded_body() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let body = (
        "application/x-www-form-urlencoded",
        b"username=John+Smith".to_vec(),
    );

    // Act
    let response = app
        .request(Method::PUT, "/api/me/", Some(&tokens.access), Some(body))
        .await;

    // Assert
    response.assert(StatusCode::OK, profile(user.id, "John Smith"));
}

// ---- the Authorization header ------------------------------------------------------------------

#[tokio::test]
async fn without_an_authorization_header_me_is_not_authenticated() {
    // Arrange
    let app = spawn_app().await;
    app.register_and_login().await;

    for method in [Method::GET, Method::PUT, Method::PATCH] {
        // Act
        let response = app.request(method, "/api/me/", None, None).await;

        // Assert
        response.assert_not_authenticated();
    }
}

#[tokio::test]
async fn another_authorization_scheme_counts_as_no_credentials() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    for header in [
        b"Basic YW5uQGV4YW1wbGUub3JnOnBhc3N3b3Jk".to_vec(),
        format!("Token {}", tokens.access).into_bytes(),
        format!("JWT {}", tokens.access).into_bytes(),
        tokens.access.clone().into_bytes(),
    ] {
        // Act
        let response = app.get_me_with_authorization(&header).await;

        // Assert
        response.assert_not_authenticated();
    }
}

#[tokio::test]
async fn a_bearer_header_without_exactly_one_token_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    for header in [
        b"Bearer".to_vec(),
        b"Bearer   ".to_vec(),
        b"Bearer a b".to_vec(),
        format!("Bearer {} extra", tokens.access).into_bytes(),
    ] {
        // Act
        let response = app.get_me_with_authorization(&header).await;

        // Assert: SimpleJWT's answer to a malformed header.
        response.assert_unauthorized(json!({
            "detail": "Authorization header must contain two space-delimited values",
            "code": "bad_authorization_header",
        }));
    }
}

// ---- which access tokens are refused -----------------------------------------------------------

/// The claims of a real login, to be altered one at a time by the tests below.
async fn logged_in() -> (TestApp, Tokens, Value) {
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let claims = app.claims_of(&tokens.access);
    (app, tokens, claims)
}

#[tokio::test]
async fn a_token_forged_with_the_configured_key_is_accepted_without_a_login() {
    // Arrange: the control for the refusals below; only the key and a live session count.
    let (app, tokens, mut claims) = logged_in().await;
    claims["jti"] = json!("forged-by-a-peer-service");
    claims["iat"] = json!(now());
    claims["exp"] = json!(now() + 30);

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert(StatusCode::OK, profile(1, "ann@example.org"));
}

#[tokio::test]
async fn a_garbage_token_is_refused() {
    // Arrange
    let (app, _, _) = logged_in().await;

    for token in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "....",
    ] {
        // Act
        let response = app.get_me(token).await;

        // Assert
        response.assert_access_token_refused();
    }
    app.get_me_with_authorization(b"Bearer \xff\xfe")
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    // Arrange
    let (app, tokens, claims) = logged_in().await;
    let payload = base64_url(claims.to_string().as_bytes());
    let mut header = serde_json::to_value(header_of(&tokens.access)).unwrap();
    let unsigned = ["none", "None", "NONE"].map(|alg| {
        header["alg"] = json!(alg);
        format!("{}.{payload}.", base64_url(header.to_string().as_bytes()))
    });

    for token in unsigned {
        // Act
        let response = app.get_me(&token).await;

        // Assert
        response.assert_access_token_refused();
    }
}

#[tokio::test]
async fn a_token_with_its_signature_stripped_is_refused() {
    // Arrange
    let (app, tokens, _) = logged_in().await;
    let (unsigned, _) = tokens.access.rsplit_once('.').unwrap();

    // Act
    let response = app.get_me(&format!("{unsigned}.")).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_signed_with_another_hmac_algorithm_and_the_right_key_is_refused() {
    // Arrange
    let (app, tokens, claims) = logged_in().await;

    for algorithm in [Algorithm::HS512, Algorithm::HS384] {
        let header = Header {
            alg: algorithm,
            ..header_of(&tokens.access)
        };
        let token = app.forge_with_header(&header, &claims);

        // Act
        let response = app.get_me(&token).await;

        // Assert
        response.assert_access_token_refused();
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    // Arrange
    let (app, tokens, claims) = logged_in().await;
    let token = forge(
        &header_of(&tokens.access),
        &claims,
        b"another secret key that is also long enough",
    );

    // Act
    let response = app.get_me(&token).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims["exp"] = json!(now() + 24 * 60 * 60);
    let parts: Vec<&str> = tokens.access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(claims.to_string().as_bytes()),
        parts[2]
    );

    // Act
    let response = app.get_me(&tampered).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims["iat"] = json!(now() - 31);
    claims["exp"] = json!(now() - 1);

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_refresh_typed_token_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims["token_type"] = json!("refresh");

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_without_a_token_type_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims.as_object_mut().unwrap().remove("token_type");

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_without_an_expiry_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims.as_object_mut().unwrap().remove("exp");

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_of_a_session_that_never_existed_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    claims["sid"] = json!(uuid::Uuid::new_v4());

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_naming_another_user_than_its_sessions_is_refused() {
    // Arrange
    let (app, tokens, mut claims) = logged_in().await;
    let bob = app.register_user("bob@example.org").await;
    claims["user_id"] = json!(bob.id);

    // Act
    let response = app.get_me(&app.forge_like(&tokens.access, &claims)).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    app.delete_user(user.id);

    // Act
    let response = app.get_me(&tokens.access).await;

    // Assert
    response.assert_access_token_refused();
}

#[tokio::test]
async fn a_token_of_an_inactive_user_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    app.set_is_active_column(user.id, false);

    // Act
    let get = app.get_me(&tokens.access).await;
    let put = app
        .put_me(&tokens.access, &json!({"username": "Still here"}))
        .await;

    // Assert
    get.assert_access_token_refused();
    put.assert_access_token_refused();
}

#[tokio::test]
async fn authentication_is_checked_before_the_body() {
    // Arrange
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    app.logout(&tokens.refresh).await;
    let bad_bodies = [
        ("application/json", b"{not json".to_vec()),
        ("text/plain", b"username=x".to_vec()),
        ("application/json", br#"{"username": ""}"#.to_vec()),
        ("application/json", b"[1, 2]".to_vec()),
    ];

    for body in bad_bodies {
        // Act
        let ended = app
            .request(
                Method::PUT,
                "/api/me/",
                Some(&tokens.access),
                Some(body.clone()),
            )
            .await;
        let anonymous = app
            .request(Method::PATCH, "/api/me/", None, Some(body))
            .await;

        // Assert
        ended.assert_access_token_refused();
        anonymous.assert_not_authenticated();
    }
}
