//! Password reset and email verification through links mailed over real SMTP (an SMTP server
//! on a loopback port, `smtp.rs`): the links are read out of the mails a user would get.
//! Contract: "Password reset" and "Email verification" in CONTRACT.md.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use restful_auth::config::MetricsBind;
use restful_auth::domain::audit::AuditQuery;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{PASSWORD, TestApp, TestResponse, spawn_app, spawn_app_with, tokens_of};
use crate::smtp::{Mood, SmtpSink};

const REQUESTED: &str = "If the address has an account, a link was sent.";
const NEW_PASSWORD: &str = "an entirely new passphrase";

/// A service that mails through a fresh SMTP server.
async fn app_with_mail() -> (TestApp, SmtpSink) {
    app_with_mail_and(|_| {}).await
}

async fn app_with_mail_and(
    configure: impl FnOnce(&mut restful_auth::config::Config),
) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(|config| {
        config.smtp_url = Some(url.parse().expect("the sink's URL"));
        config.public_url = Some("https://auth.example.org".into());
        configure(config);
    })
    .await;
    (app, sink)
}

async fn ask_reset(app: &TestApp, email: &str) -> TestResponse {
    app.post_json("/api/password/reset/", &json!({"email": email}))
        .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> TestResponse {
    app.post_json(
        "/api/password/reset/confirm/",
        &json!({"token": token, "new_password": password}),
    )
    .await
}

async fn confirm_email(app: &TestApp, token: &str) -> TestResponse {
    app.post_json("/api/email/verify/confirm/", &json!({"token": token}))
        .await
}

async fn ask_verification(app: &TestApp, access: &str) -> TestResponse {
    app.request(Method::POST, "/api/email/verify/", Some(access), None)
        .await
}

#[track_caller]
fn assert_invalid_link(response: &TestResponse) {
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({"token": ["Invalid or expired link."]}),
    );
}

/// The account's events, oldest first, as `event` or `event reason`.
async fn story_of(app: &TestApp, user_id: i64) -> Vec<String> {
    let mut rows = app
        .admin
        .audit(AuditQuery {
            user_id: Some(user_id),
            limit: 100,
            ..AuditQuery::default()
        })
        .await;
    rows.reverse();
    rows.into_iter()
        .map(|row| match row.detail["reason"].as_str() {
            Some(reason) => format!("{} {reason}", row.event),
            None => row.event,
        })
        .collect()
}

/// A registered account whose verification mail (the first mail) has arrived.
async fn registered(app: &TestApp, sink: &SmtpSink, email: &str) -> crate::helpers::TestUser {
    let before = sink.received().len();
    let user = app.register_user(email).await;
    sink.wait_for(before + 1).await;
    user
}

// ---- password reset ----------------------------------------------------------------------

#[tokio::test]
async fn a_forgotten_password_is_reset_through_the_mailed_link_and_every_session_ends() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    let ann = registered(&app, &sink, "ann@example.org").await;
    let tokens = app.login_user(&ann).await;

    // Act
    let asked = ask_reset(&app, "Ann@Example.org").await;
    let mail = sink.mail(2).await;
    let confirmed = confirm_reset(&app, &mail.token("/reset/"), NEW_PASSWORD).await;

    // Assert
    asked.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    assert_eq!(mail.rcpt_to, ["ann@example.org"]);
    assert_eq!(mail.mail_from, "no-reply@localhost");
    assert_eq!(mail.subject, "Reset your restful-auth password");
    assert!(mail.raw.contains("multipart/alternative"), "{}", mail.raw);
    let link = mail.link("/reset/");
    assert!(
        link.starts_with("https://auth.example.org/reset/#token="),
        "{link}"
    );
    assert!(mail.text.contains("within 30 minutes"), "{}", mail.text);
    assert!(mail.text.contains("If this wasn't you"), "{}", mail.text);
    assert!(
        mail.html.contains(&format!("href=\"{link}\"")),
        "{}",
        mail.html
    );
    assert!(mail.html.contains("If this wasn"), "{}", mail.html);
    confirmed.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );
    app.get_me(&tokens.access)
        .await
        .assert_access_token_refused();
    app.refresh(&tokens.refresh)
        .await
        .assert_refresh_token_refused();
    app.login(&ann.email, PASSWORD)
        .await
        .assert_invalid_credentials();
    tokens_of(&app.login(&ann.email, NEW_PASSWORD).await);
    let story = story_of(&app, ann.id).await;
    assert_eq!(
        story[story.len() - 6..],
        [
            "password.reset_requested",
            "password.reset",
            "email.verified",
            "session.ended password_reset",
            "login.failed bad_credentials",
            "login.succeeded",
        ]
    );
}

#[tokio::test]
async fn an_unknown_email_gets_the_same_answer_and_no_mail() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;

    // Act
    let unknown = ask_reset(&app, "nobody@example.org").await;
    let known = ask_reset(&app, "ann@example.org").await;
    app.admin.mail_settled().await;

    // Assert
    assert_eq!(
        (
            unknown.status,
            &unknown.bytes,
            unknown.headers.get("content-type")
        ),
        (
            known.status,
            &known.bytes,
            known.headers.get("content-type")
        )
    );
    unknown.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    let recipients: Vec<Vec<String>> = sink.received().into_iter().map(|m| m.rcpt_to).collect();
    assert_eq!(recipients, [["ann@example.org"], ["ann@example.org"]]);
    assert_eq!(app.count_rows("one_time_tokens"), 2, "ann's two links only");
}

#[tokio::test]
async fn a_slow_smtp_server_never_slows_an_answer() {
    // Arrange: the server takes 3 s to say hello.
    let (app, sink) = app_with_mail().await;
    app.register_user("ann@example.org").await;
    sink.then(&[Mood::Slow(Duration::from_secs(3)); 4]);

    // Act
    let started = Instant::now();
    let asked = ask_reset(&app, "ann@example.org").await;
    let elapsed = started.elapsed();

    // Assert
    asked.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    assert!(elapsed < Duration::from_secs(1), "answered in {elapsed:?}");
}

#[tokio::test]
async fn a_reset_link_works_once() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let token = sink.mail(2).await.token("/reset/");
    confirm_reset(&app, &token, NEW_PASSWORD).await.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );

    // Act
    let again = confirm_reset(&app, &token, "yet another passphrase").await;

    // Assert
    assert_invalid_link(&again);
    tokens_of(&app.login("ann@example.org", NEW_PASSWORD).await);
}

#[tokio::test]
async fn a_reset_link_expires_after_its_lifetime() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let token = sink.mail(2).await.token("/reset/");

    // Act
    app.clock.advance(Duration::from_secs(30 * 60));
    let expired = confirm_reset(&app, &token, NEW_PASSWORD).await;

    // Assert
    assert_invalid_link(&expired);
    tokens_of(&app.login("ann@example.org", PASSWORD).await);
}

#[tokio::test]
async fn a_reset_link_lives_as_long_as_the_flag_says() {
    // Arrange
    let (app, sink) = app_with_mail_and(|config| {
        config.reset_token_lifetime = Duration::from_secs(2 * 3600);
    })
    .await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let mail = sink.mail(2).await;

    // Act
    app.clock.advance(Duration::from_secs(2 * 3600 - 1));
    let confirmed = confirm_reset(&app, &mail.token("/reset/"), NEW_PASSWORD).await;

    // Assert
    assert!(mail.text.contains("within 2 hours"), "{}", mail.text);
    confirmed.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );
}

#[tokio::test]
async fn a_newer_request_invalidates_the_earlier_link() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let first = sink.mail(2).await.token("/reset/");
    ask_reset(&app, "ann@example.org").await;
    let second = sink.mail(3).await.token("/reset/");

    // Act
    let with_first = confirm_reset(&app, &first, NEW_PASSWORD).await;
    let with_second = confirm_reset(&app, &second, NEW_PASSWORD).await;

    // Assert
    assert_ne!(first, second);
    assert_invalid_link(&with_first);
    with_second.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );
}

#[tokio::test]
async fn the_new_password_follows_the_policy_and_a_refusal_keeps_the_link() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let token = sink.mail(2).await.token("/reset/");

    // Act
    let weak = confirm_reset(&app, &token, "12345").await;
    let similar = confirm_reset(&app, &token, "ann@example.org").await;
    let strong = confirm_reset(&app, &token, NEW_PASSWORD).await;

    // Assert
    weak.assert(
        StatusCode::BAD_REQUEST,
        json!({"new_password": [
            "This password is too short. It must contain at least 8 characters.",
            "This password is too common.",
            "This password is entirely numeric."
        ]}),
    );
    similar.assert(
        StatusCode::BAD_REQUEST,
        json!({"new_password": ["The password is too similar to the email."]}),
    );
    strong.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );
}

#[tokio::test]
async fn a_missing_or_malformed_token_is_a_field_error() {
    let app = spawn_app().await;

    let missing = app
        .post_json(
            "/api/password/reset/confirm/",
            &json!({"new_password": NEW_PASSWORD}),
        )
        .await;
    let malformed = confirm_reset(&app, "not-a-token", NEW_PASSWORD).await;
    let unknown = confirm_reset(&app, &crate::helpers::base64_url(&[7u8; 32]), NEW_PASSWORD).await;
    let both = app
        .post_json("/api/password/reset/confirm/", &json!({"token": ""}))
        .await;
    let bad_email = ask_reset(&app, "not-an-email").await;

    missing.assert(
        StatusCode::BAD_REQUEST,
        json!({"token": ["This field is required."]}),
    );
    assert_invalid_link(&malformed);
    assert_invalid_link(&unknown);
    both.assert(
        StatusCode::BAD_REQUEST,
        json!({
            "token": ["This field may not be blank."],
            "new_password": ["This field is required."]
        }),
    );
    bad_email.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["Enter a valid email address."]}),
    );
}

#[tokio::test]
async fn two_concurrent_confirmations_of_one_link_on_two_instances_have_one_winner() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    let other = app.another_instance().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let token = sink.mail(2).await.token("/reset/");

    // Act
    let (first, second) = tokio::join!(
        confirm_reset(&app, &token, "the first new passphrase"),
        confirm_reset(&other, &token, "the second new passphrase"),
    );

    // Assert
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    let winner = if first.status == StatusCode::OK {
        "the first new passphrase"
    } else {
        "the second new passphrase"
    };
    tokens_of(&app.login("ann@example.org", winner).await);
}

#[tokio::test]
async fn links_are_stored_only_as_digests() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let reset = sink.mail(2).await.token("/reset/");
    let verify = sink.mail(1).await.token("/verify/");

    // Act
    let stored = app.database_files();
    let values = app.every_stored_value();

    // Assert
    for token in [&reset, &verify] {
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
            .unwrap();
        let digest: [u8; 32] = Sha256::digest(&raw).into();
        assert!(
            !contains(&stored, token.as_bytes()),
            "a token in the database"
        );
        assert!(!contains(&stored, &raw), "a token's bytes in the database");
        assert!(
            values
                .iter()
                .any(|value| value.as_slice() == digest.as_slice()
                    || value.as_slice() == format!("\\x{}", hex::encode(digest)).as_bytes()),
            "the digest is what is stored"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn reset_requests_are_throttled_per_email_whether_or_not_it_has_an_account() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;

    // Act
    let mut answers = Vec::new();
    for email in ["ann@example.org", "nobody@example.org"] {
        for _ in 0..6 {
            answers.push((email, ask_reset(&app, email).await.status));
        }
    }
    let other = ask_reset(&app, "bob@example.org").await;

    // Assert
    for (email, attempts) in [("ann@example.org", 0), ("nobody@example.org", 6)] {
        let statuses: Vec<StatusCode> = answers[attempts..attempts + 6]
            .iter()
            .map(|(_, status)| *status)
            .collect();
        assert_eq!(statuses[..5], [StatusCode::ACCEPTED; 5], "{email}");
        assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{email}");
    }
    other.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    app.admin.mail_settled().await;
    // The registration's verification mail, and five resets.
    assert_eq!(sink.received().len(), 6);
}

#[tokio::test]
async fn without_smtp_the_endpoints_answer_the_same_and_an_operator_hands_out_a_link() {
    // Arrange
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&ann).await;

    // Act
    let asked = ask_reset(&app, "ann@example.org").await;
    let verification = ask_verification(&app, &tokens.access).await;
    app.admin.mail_settled().await;
    let stored = app.count_rows("one_time_tokens");
    let link = app.admin.reset_link("ANN@example.org").await.unwrap();
    let unknown = app.admin.reset_link("nobody@example.org").await;
    let token = link.split("#token=").nth(1).unwrap();
    let confirmed = confirm_reset(&app, token, NEW_PASSWORD).await;

    // Assert
    asked.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    assert_eq!(verification.status, StatusCode::ACCEPTED);
    assert_eq!(stored, 0, "nothing is stored for a mail nobody sends");
    assert!(
        link.starts_with(&format!("{}/reset/#token=", app.config.public_url())),
        "{link}"
    );
    assert_eq!(unknown, None);
    confirmed.assert(
        StatusCode::OK,
        json!({"detail": "Password has been reset."}),
    );
}

// ---- an SMTP server that fails ------------------------------------------------------------

/// The value of a counter on `/metrics` (0 before it is first counted).
async fn counter(app: &TestApp, name: &str) -> f64 {
    let page = app
        .send_raw(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let text = String::from_utf8(page.bytes).unwrap();
    text.lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_down_smtp_server_changes_no_answer_and_the_mail_is_retried_then_counted_as_failed() {
    // Arrange: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let app = spawn_app_with(|config| {
        config.smtp_url = Some(format!("smtp://{address}").parse().unwrap());
        config.metrics_bind = MetricsBind::Public;
    })
    .await;
    app.register_user("ann@example.org").await;
    app.admin.mail_settled().await;
    let (failures, retries) = (
        counter(&app, "mail_failures_total").await,
        counter(&app, "mail_retries_total").await,
    );

    // Act
    let known = ask_reset(&app, "ann@example.org").await;
    let unknown = ask_reset(&app, "nobody@example.org").await;
    app.admin.mail_settled().await;

    // Assert
    known.assert(StatusCode::ACCEPTED, json!({"detail": REQUESTED}));
    assert_eq!(known.bytes, unknown.bytes);
    assert!(counter(&app, "mail_failures_total").await >= failures + 1.0);
    // Three attempts: two of them retries.
    assert!(counter(&app, "mail_retries_total").await >= retries + 2.0);
}

#[tokio::test]
async fn a_server_that_refuses_for_a_while_gets_the_mail_on_a_later_attempt() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    registered(&app, &sink, "ann@example.org").await;
    let before = sink.connections();
    sink.then(&[Mood::Refusing, Mood::Refusing]);

    // Act
    ask_reset(&app, "ann@example.org").await;
    let mail = sink.mail(2).await;

    // Assert
    assert_eq!(sink.connections() - before, 3);
    confirm_reset(&app, &mail.token("/reset/"), NEW_PASSWORD)
        .await
        .assert(
            StatusCode::OK,
            json!({"detail": "Password has been reset."}),
        );
}

// ---- email verification ------------------------------------------------------------------

#[tokio::test]
async fn a_registration_mails_a_link_that_verifies_the_address_once() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    let ann = app.register_user("ann@example.org").await;
    let mail = sink.mail(1).await;
    let tokens = app.login_user(&ann).await;
    let before = app.get_me(&tokens.access).await;
    let all_before = app
        .request(
            Method::GET,
            "/api/me/?fields=all",
            Some(&tokens.access),
            None,
        )
        .await;

    // Act
    let confirmed = confirm_email(&app, &mail.token("/verify/")).await;
    let again = confirm_email(&app, &mail.token("/verify/")).await;
    let after = app
        .request(
            Method::GET,
            "/api/me/?fields=all",
            Some(&tokens.access),
            None,
        )
        .await;
    let asked = ask_verification(&app, &tokens.access).await;
    app.admin.mail_settled().await;

    // Assert
    assert_eq!(mail.rcpt_to, ["ann@example.org"]);
    assert_eq!(mail.subject, "Confirm your address for restful-auth");
    assert!(
        mail.link("/verify/")
            .starts_with("https://auth.example.org/verify/#token="),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("within 1 day"), "{}", mail.text);
    assert!(mail.text.contains("If this wasn't you"), "{}", mail.text);
    before.assert(
        StatusCode::OK,
        json!({"id": ann.id, "username": "ann@example.org", "email": "ann@example.org"}),
    );
    all_before.assert(
        StatusCode::OK,
        json!({"id": ann.id, "username": "ann@example.org", "email": "ann@example.org",
               "email_verified": false}),
    );
    confirmed.assert(StatusCode::OK, json!({"detail": "Email address verified."}));
    assert_invalid_link(&again);
    assert_eq!(after.body["email_verified"], true);
    asked.assert(
        StatusCode::ACCEPTED,
        json!({"detail": "If the address is not verified yet, a link was sent."}),
    );
    assert_eq!(
        sink.received().len(),
        1,
        "a verified address gets no new link"
    );
    let story = story_of(&app, ann.id).await;
    assert_eq!(
        story,
        [
            "user.registered",
            "email.verification_requested",
            "login.succeeded",
            "email.verified"
        ]
    );
}

#[tokio::test]
async fn a_verification_link_can_be_asked_for_again_by_the_owner_only() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    let ann = registered(&app, &sink, "ann@example.org").await;
    let tokens = app.login_user(&ann).await;
    let first = sink.mail(1).await.token("/verify/");

    // Act
    let anonymous = app
        .request(Method::POST, "/api/email/verify/", None, None)
        .await;
    let asked = ask_verification(&app, &tokens.access).await;
    let second = sink.mail(2).await.token("/verify/");
    let with_first = confirm_email(&app, &first).await;
    let with_second = confirm_email(&app, &second).await;

    // Assert
    anonymous.assert_not_authenticated();
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    assert_invalid_link(&with_first);
    with_second.assert(StatusCode::OK, json!({"detail": "Email address verified."}));
}

#[tokio::test]
async fn a_verification_link_expires() {
    let (app, sink) = app_with_mail().await;
    app.register_user("ann@example.org").await;
    let token = sink.mail(1).await.token("/verify/");

    app.clock.advance(Duration::from_secs(24 * 3600));

    assert_invalid_link(&confirm_email(&app, &token).await);
}

#[tokio::test]
async fn with_require_verified_email_an_unverified_account_is_refused_after_a_correct_password() {
    // Arrange
    let (app, sink) = app_with_mail_and(|config| config.require_verified_email = true).await;
    let ann = app.register_user("ann@example.org").await;
    let token = sink.mail(1).await.token("/verify/");

    // Act
    let wrong = app.login(&ann.email, "not the password at all").await;
    let unverified = app.login(&ann.email, PASSWORD).await;
    confirm_email(&app, &token).await;
    let verified = app.login(&ann.email, PASSWORD).await;

    // Assert
    wrong.assert_invalid_credentials();
    unverified.assert_unauthorized(json!({
        "detail": "Email address is not verified.",
        "code": "email_not_verified",
    }));
    tokens_of(&verified);
    let story = story_of(&app, ann.id).await;
    assert!(
        story.contains(&"login.failed email_not_verified".to_owned()),
        "{story:?}"
    );
}

#[tokio::test]
async fn without_require_verified_email_an_unverified_account_logs_in() {
    let (app, _sink) = app_with_mail().await;
    let ann = app.register_user("ann@example.org").await;

    tokens_of(&app.login(&ann.email, PASSWORD).await);
}

#[tokio::test]
async fn a_reset_through_the_mailed_link_also_verifies_the_address() {
    // Arrange
    let (app, sink) = app_with_mail_and(|config| config.require_verified_email = true).await;
    let ann = registered(&app, &sink, "ann@example.org").await;
    ask_reset(&app, "ann@example.org").await;
    let token = sink.mail(2).await.token("/reset/");

    // Act
    confirm_reset(&app, &token, NEW_PASSWORD).await;
    let login = app.login(&ann.email, NEW_PASSWORD).await;

    // Assert
    tokens_of(&login);
    let tokens = tokens_of(&login);
    let me: Value = app
        .request(
            Method::GET,
            "/api/me/?fields=all",
            Some(&tokens.access),
            None,
        )
        .await
        .body;
    assert_eq!(me["email_verified"], true);
}

/// "Changing the email through the admin API clears the verification": the new address is
/// not proven, and links sent to the old one open nothing.
#[tokio::test]
async fn an_email_changed_through_the_admin_api_is_unverified_and_old_links_open_nothing() {
    // Arrange
    let (app, sink) = app_with_mail().await;
    let ann = app.register_user("ann@example.org").await;
    let verify = sink.mail(1).await.token("/verify/");
    confirm_email(&app, &verify).await;
    ask_reset(&app, "ann@example.org").await;
    let reset = sink.mail(2).await.token("/reset/");
    let admin = app.admin.clone().admin_api(None);
    let patch = |email: &str| {
        axum::http::Request::patch(format!("/admin/users/{}/", ann.id))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({"email": email}).to_string()))
            .unwrap()
    };
    let verified_of = |app: &TestApp| {
        let user_id = ann.id;
        app.query(&format!(
            "SELECT email_verified_at IS NOT NULL FROM users WHERE id = {user_id}"
        ))[0][0]
            .clone()
            .map(|cell| matches!(cell.as_slice(), b"1" | b"t" | b"true"))
            .unwrap()
    };

    // Act
    let same = tower::ServiceExt::oneshot(admin.clone(), patch("Ann@example.org")).await;
    let after_case_change = verified_of(&app);
    let moved = tower::ServiceExt::oneshot(admin, patch("ann.lee@example.org")).await;
    let after_move = verified_of(&app);
    let with_old_link = confirm_reset(&app, &reset, NEW_PASSWORD).await;

    // Assert
    assert_eq!(same.unwrap().status(), StatusCode::OK);
    assert!(after_case_change, "the same mailbox stays verified");
    assert_eq!(moved.unwrap().status(), StatusCode::OK);
    assert!(!after_move, "a new address is not verified");
    assert_invalid_link(&with_old_link);
}
