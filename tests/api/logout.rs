//! `POST /api/logout/`: ending a session.

use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn logout_answers_200_user_logged_out() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let response = app.logout(&login.refresh).await;

    // Assert
    response.assert(StatusCode::OK, json!({"success": "User logged out."}));
}

#[tokio::test]
async fn after_logout_the_refresh_token_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    app.logout(&login.refresh).await;

    // Assert
    app.refresh(&login.refresh)
        .await
        .assert_refresh_token_refused();
}

#[tokio::test]
async fn after_logout_the_sessions_access_token_is_refused_at_once() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    assert_eq!(app.get_me(&login.access).await.status, StatusCode::OK);

    // Act
    app.logout(&login.refresh).await;

    // Assert
    app.get_me(&login.access)
        .await
        .assert_access_token_refused();
    app.put_me(&login.access, &json!({"username": "Mallory"}))
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn logout_ends_every_access_token_of_the_session() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let renewed = app.refresh_ok(&login.refresh).await;

    // Act
    app.logout(&renewed.refresh)
        .await
        .assert(StatusCode::OK, json!({"success": "User logged out."}));

    // Assert
    app.get_me(&login.access)
        .await
        .assert_access_token_refused();
    app.get_me(&renewed.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn logging_out_twice_is_refused_the_second_time() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    app.logout(&login.refresh).await;

    // Act
    let again = app.logout(&login.refresh).await;

    // Assert
    again.assert_refresh_token_refused();
}

#[tokio::test]
async fn logout_with_a_consumed_token_is_refused_and_ends_the_session() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;
    let current = app.refresh_ok(&login.refresh).await;

    // Act
    let response = app.logout(&login.refresh).await;

    // Assert
    response.assert_refresh_token_refused();
    app.refresh(&current.refresh)
        .await
        .assert_refresh_token_refused();
    app.get_me(&current.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn logout_with_an_unknown_token_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    app.register_and_login().await;

    // Act
    let response = app.logout(&Uuid::new_v4().to_string()).await;

    // Assert
    response.assert_refresh_token_refused();
}

#[tokio::test]
async fn logout_requires_a_refresh_token() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.post_json("/api/logout/", &json!({})).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"refresh_token": ["This field is required."]}),
    );
}

#[tokio::test]
async fn logout_with_a_token_that_is_not_a_uuid_is_refused_with_400() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let response = app.logout(&login.access).await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"refresh_token": ["Must be a valid UUID."]}),
    );
    assert_eq!(app.get_me(&login.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_with_a_blank_token_is_not_a_valid_uuid() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.logout("").await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"refresh_token": ["Must be a valid UUID."]}),
    );
}

#[tokio::test]
async fn logout_accepts_a_form_urlencoded_body() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let response = app
        .post_form("/api/logout/", &format!("refresh_token={}", login.refresh))
        .await;

    // Assert
    response.assert(StatusCode::OK, json!({"success": "User logged out."}));
    app.get_me(&login.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn logout_of_an_inactive_users_session_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    app.set_is_active_column(user.id, false);

    // Act
    let response = app.logout(&login.refresh).await;

    // Assert
    response.assert_refresh_token_refused();
}
