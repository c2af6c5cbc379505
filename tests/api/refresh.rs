//! `POST /api/refresh/`: rotation, reuse detection, expiry and storage of refresh tokens.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, tokens_of};

#[tokio::test]
async fn refresh_answers_200_with_a_new_pair_for_the_same_session() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;

    // Act
    let response = app.refresh(&login.refresh).await;

    // Assert
    let renewed = tokens_of(&response);
    assert_eq!(response.body["token_type"], "Bearer");
    assert_eq!(response.body["expires_in"], 30);
    assert_eq!(response.body.as_object().unwrap().len(), 4, "{response:?}");
    assert_ne!(renewed.refresh, login.refresh);
    let uuid = Uuid::parse_str(&renewed.refresh).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(uuid.hyphenated().to_string(), renewed.refresh);
    let (before, after) = (app.claims_of(&login.access), app.claims_of(&renewed.access));
    assert_eq!(after["user_id"], user.id);
    assert_eq!(after["sid"], before["sid"]);
    assert_ne!(after["jti"], before["jti"]);
    assert_eq!(after["token_type"], "access");
    assert_eq!(
        after["exp"].as_i64().unwrap() - after["iat"].as_i64().unwrap(),
        30
    );
}

#[tokio::test]
async fn the_refreshed_access_token_opens_me() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    let renewed = app.refresh_ok(&login.refresh).await;

    // Act
    let me = app.get_me(&renewed.access).await;

    // Assert
    me.assert(
        StatusCode::OK,
        json!({"id": user.id, "username": "ann@example.org", "email": "ann@example.org"}),
    );
}

#[tokio::test]
async fn the_new_refresh_token_can_itself_be_refreshed() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let second = app.refresh_ok(&login.refresh).await;

    // Act
    let third = app.refresh(&second.refresh).await;

    // Assert
    assert_ne!(tokens_of(&third).refresh, second.refresh);
}

#[tokio::test]
async fn a_refresh_token_is_single_use() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    app.refresh_ok(&login.refresh).await;

    // Act
    let again = app.refresh(&login.refresh).await;

    // Assert
    again.assert_refresh_token_refused();
}

#[tokio::test]
async fn refresh_with_a_consumed_token_ends_the_session() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let current = app.refresh_ok(&login.refresh).await;
    assert_eq!(app.get_me(&current.access).await.status, StatusCode::OK);

    // Act
    let replay = app.refresh(&login.refresh).await;

    // Assert
    replay.assert_refresh_token_refused();
    app.refresh(&current.refresh)
        .await
        .assert_refresh_token_refused();
    app.get_me(&current.access)
        .await
        .assert_access_token_refused();
    app.get_me(&login.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn replaying_any_earlier_token_of_a_session_ends_it() {
    // Arrange
    let app = spawn_app().await;
    let (_, first) = app.register_and_login().await;
    let second = app.refresh_ok(&first.refresh).await;
    let third = app.refresh_ok(&second.refresh).await;

    // Act
    let replay = app.refresh(&first.refresh).await;

    // Assert
    replay.assert_refresh_token_refused();
    app.refresh(&third.refresh)
        .await
        .assert_refresh_token_refused();
    app.get_me(&third.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn reuse_in_one_session_leaves_the_users_other_sessions_alone() {
    // Arrange
    let app = spawn_app().await;
    let (user, stolen) = app.register_and_login().await;
    let other = app.login_user(&user).await;
    app.refresh_ok(&stolen.refresh).await;

    // Act
    app.refresh(&stolen.refresh)
        .await
        .assert_refresh_token_refused();

    // Assert
    assert_eq!(app.get_me(&other.access).await.status, StatusCode::OK);
    app.refresh_ok(&other.refresh).await;
}

#[tokio::test]
async fn a_missing_refresh_token_is_required() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.post_json("/api/refresh/", &json!({})).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"refresh_token": ["This field is required."]}),
    );
}

#[tokio::test]
async fn a_null_refresh_token_may_not_be_null() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .post_json("/api/refresh/", &json!({"refresh_token": null}))
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"refresh_token": ["This field may not be null."]}),
    );
}

#[tokio::test]
async fn a_refresh_token_that_is_not_a_uuid_is_refused_with_400() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let cases = [
        json!("not-a-uuid"),
        json!("1234"),
        json!("g".repeat(32)),
        json!(format!("{}0", login.refresh)),
        json!(&login.refresh[1..]),
        json!(login.access),
        json!(12345),
    ];

    for token in cases {
        // Act
        let response = app
            .post_json("/api/refresh/", &json!({"refresh_token": token}))
            .await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({"refresh_token": ["Must be a valid UUID."]}),
        );
    }
    // None of those attempts touched the session.
    app.refresh_ok(&login.refresh).await;
}

#[tokio::test]
async fn a_blank_refresh_token_is_not_a_valid_uuid() {
    // Arrange
    let app = spawn_app().await;

    for blank in ["", "   "] {
        // Act
        let response = app
            .post_json("/api/refresh/", &json!({"refresh_token": blank}))
            .await;

        // Assert
        response.assert(
            StatusCode::BAD_REQUEST,
            json!({"refresh_token": ["Must be a valid UUID."]}),
        );
    }
}

#[tokio::test]
async fn an_unknown_refresh_token_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    app.register_and_login().await;

    // Act
    let response = app.refresh(&Uuid::new_v4().to_string()).await;

    // Assert
    response.assert_refresh_token_refused();
}

#[tokio::test]
async fn any_spelling_of_the_uuid_names_the_same_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let upper = login.refresh.to_uppercase();

    // Act
    let response = app.refresh(&upper).await;

    // Assert
    let renewed = tokens_of(&response);
    let simple = renewed.refresh.replace('-', "");
    tokens_of(&app.refresh(&simple).await);
    // The original, in its canonical spelling, was consumed by the upper-case request.
    app.refresh(&login.refresh)
        .await
        .assert_refresh_token_refused();
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    // Arrange
    let app = spawn_app_with(|config| config.refresh_token_lifetime = Duration::from_secs(1)).await;
    let (_, login) = app.register_and_login().await;
    app.clock.advance(Duration::from_secs(1));

    // Act
    let response = app.refresh(&login.refresh).await;

    // Assert
    response.assert_refresh_token_refused();
}

#[tokio::test]
async fn a_refresh_token_of_an_inactive_user_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    app.set_is_active_column(user.id, false);

    // Act
    let response = app.refresh(&login.refresh).await;

    // Assert
    response.assert_refresh_token_refused();
}

#[tokio::test]
async fn deactivating_a_user_ends_all_its_sessions() {
    // Arrange
    let app = spawn_app().await;
    let (user, laptop) = app.register_and_login().await;
    let phone = app.login_user(&user).await;

    // Act
    app.deactivate(user.id).await;

    // Assert
    for session in [&laptop, &phone] {
        app.refresh(&session.refresh)
            .await
            .assert_refresh_token_refused();
        app.get_me(&session.access)
            .await
            .assert_access_token_refused();
    }
    app.login(&user.email, &user.password)
        .await
        .assert_invalid_credentials();
}

#[tokio::test]
async fn activating_a_user_again_does_not_revive_its_ended_sessions() {
    // Arrange
    let app = spawn_app().await;
    let (user, before) = app.register_and_login().await;
    app.deactivate(user.id).await;

    // Act
    app.activate(user.id).await;

    // Assert
    app.refresh(&before.refresh)
        .await
        .assert_refresh_token_refused();
    app.get_me(&before.access)
        .await
        .assert_access_token_refused();
    let after = app.login_user(&user).await;
    assert_eq!(app.get_me(&after.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_token_of_a_deleted_user_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    app.delete_user(user.id);

    // Act
    let response = app.refresh(&login.refresh).await;

    // Assert
    response.assert_refresh_token_refused();
}

#[tokio::test]
async fn refresh_accepts_a_form_urlencoded_body() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let response = app
        .post_form("/api/refresh/", &format!("refresh_token={}", login.refresh))
        .await;

    // Assert
    assert_ne!(tokens_of(&response).refresh, login.refresh);
}

#[tokio::test]
async fn a_refresh_token_is_stored_only_as_its_sha256() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let renewed = app.refresh_ok(&login.refresh).await;

    // Assert
    let stored: Vec<Vec<u8>> = app
        .stored_refresh_tokens()
        .into_iter()
        .map(|(hash, _, _)| hash)
        .collect();
    assert_eq!(stored.len(), 2);
    for token in [&login.refresh, &renewed.refresh] {
        let digest = Sha256::digest(token.as_bytes()).to_vec();
        assert!(stored.contains(&digest), "the SHA-256 of {token} is stored");
        let raw = Uuid::parse_str(token).unwrap().as_bytes().to_vec();
        for value in app.every_stored_value() {
            assert_ne!(value, token.as_bytes(), "the token is not stored as text");
            assert_ne!(value, raw, "the token is not stored as bytes");
        }
        let files = app.database_files();
        assert!(
            !contains(&files, token.as_bytes())
                && !contains(&files, token.to_uppercase().as_bytes())
                && !contains(&files, token.replace('-', "").as_bytes())
                && !contains(&files, &raw),
            "no spelling of the token is anywhere in the database files"
        );
    }
}

#[tokio::test]
async fn a_refresh_marks_its_session_seen_at_most_once_a_second() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let at_login = last_seen(&app, &login.access).await;
    app.clock.advance(Duration::from_secs(90));

    // Act
    let first = app.refresh_ok(&login.refresh).await;
    let after_first = last_seen(&app, &first.access).await;
    let second = app.refresh_ok(&first.refresh).await;
    let in_the_same_second = last_seen(&app, &second.access).await;
    app.clock.advance(Duration::from_secs(1));
    let third = app.refresh_ok(&second.refresh).await;
    let a_second_later = last_seen(&app, &third.access).await;

    // Assert: the timestamps have one width, so their order is their text's.
    assert!(after_first > at_login, "{at_login} then {after_first}");
    assert_eq!(in_the_same_second, after_first);
    assert!(
        a_second_later > after_first,
        "{after_first} then {a_second_later}"
    );
}

/// The `last_seen` of the caller's own session in `GET /api/sessions/`.
async fn last_seen(app: &TestApp, access: &str) -> String {
    let listed = app
        .request(Method::GET, "/api/sessions/", Some(access), None)
        .await;
    let sessions = listed.body.as_array().expect("a list of sessions");
    let current = sessions
        .iter()
        .find(|session| session["current"] == json!(true))
        .expect("the caller's own session is listed");
    current["last_seen"].as_str().unwrap().to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_concurrent_refreshes_with_one_token_exactly_one_succeeds() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let body = json!({"refresh_token": login.refresh});

    // Act
    let answers: Vec<_> = app
        .post_json_concurrently("/api/refresh/", &body, 20)
        .await
        .into_iter()
        .map(|answer| (answer.status, answer.body))
        .collect();

    // Assert
    let winners: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let refused = json!({"detail": "Token is invalid or expired", "code": "token_not_valid"});
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!((*status, body), (StatusCode::UNAUTHORIZED, &refused));
    }
    // With the retry grace off (the default), the losers' replays ended the session.
    let winner_token = winners[0].1["refresh_token"].as_str().unwrap();
    app.refresh(winner_token)
        .await
        .assert_refresh_token_refused();
}
