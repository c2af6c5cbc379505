//! The audit log: every security event recorded once, after its action and only then, with
//! who acted and from where; failed logins folded; the owner's view (`/api/me/activity/`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use restful_auth::domain::audit::{AuditQuery, Recorded};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestResponse, spawn_app, spawn_app_with, tokens_of};

async fn names_of(app: &TestApp, user_id: i64) -> Vec<String> {
    app.audit_of(user_id)
        .await
        .into_iter()
        .map(|(event, _, _)| event)
        .collect()
}

/// The rows of the whole log, newest first.
async fn every_row(app: &TestApp) -> Vec<Recorded> {
    app.admin
        .audit(AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
}

/// A login as if it came over a connection from `peer`, with a user agent.
async fn login_from(app: &TestApp, peer: &str, email: &str, password: &str) -> TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/login/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "audit-test/1.0")
        .header("x-request-id", "req-audit-1")
        .extension(ConnectInfo(
            format!("{peer}:40000").parse::<SocketAddr>().unwrap(),
        ))
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap();
    app.send(request).await
}

async fn activity(app: &TestApp, token: &str, query: &str) -> TestResponse {
    app.request(
        Method::GET,
        &format!("/api/me/activity/{query}"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn registration_and_login_are_recorded_with_where_they_came_from() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;

    // Act
    let response = login_from(&app, "203.0.113.7", &user.email, &user.password).await;

    // Assert
    assert_eq!(response.status, StatusCode::OK);
    let session = app.claims_of(&tokens_of(&response).access)["sid"].clone();
    let rows = every_row(&app).await;
    let login = &rows[0];
    assert_eq!(login.event, "login.succeeded");
    assert_eq!(login.user_id, Some(user.id));
    assert_eq!(
        login.session_id.map(|id| id.to_string()),
        session.as_str().map(str::to_owned)
    );
    assert_eq!(login.actor, "user");
    assert_eq!(login.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(login.user_agent.as_deref(), Some("audit-test/1.0"));
    assert_eq!(login.request_id.as_deref(), Some("req-audit-1"));
    assert_eq!(rows[1].event, "user.registered");
    assert_eq!(rows.len(), 2, "nothing else happened: {rows:?}");
}

#[tokio::test]
async fn each_change_records_its_event_once_and_a_routine_refresh_records_none() {
    // Arrange
    let app = spawn_app().await;
    let (user, first) = app.register_and_login().await;
    let second = app.login_user(&user).await;
    let third = app.login_user(&user).await;

    // Act: a refresh, a rename, ending one session, a password change, a logout.
    let rotated = app.refresh_ok(&first.refresh).await;
    let before_changes = names_of(&app, user.id).await;
    app.patch_me(&rotated.access, &json!({"username": "Ann"}))
        .await;
    let sid = app.claims_of(&third.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = app
        .send_raw(
            Request::delete(format!("/api/sessions/{sid}/"))
                .header(header::AUTHORIZATION, format!("Bearer {}", rotated.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    let change = json!({"old_password": PASSWORD, "new_password": "a new Passw0rd!"});
    let changed = app
        .request(
            Method::POST,
            "/api/me/password/",
            Some(&rotated.access),
            Some(("application/json", change.to_string().into_bytes())),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    app.logout(&rotated.refresh).await;

    // Assert
    assert_eq!(
        before_changes,
        [
            "user.registered",
            "login.succeeded",
            "login.succeeded",
            "login.succeeded"
        ],
        "a routine refresh is no event"
    );
    let events = app.audit_of(user.id).await;
    let after: Vec<(&str, Value)> = events[4..]
        .iter()
        .map(|(event, _, detail)| (event.as_str(), detail.clone()))
        .collect();
    assert_eq!(
        after,
        [
            ("profile.updated", json!({"fields": ["username"]})),
            ("session.ended", json!({"reason": "revoked"})),
            ("password.changed", Value::Null),
            // The other live session (`second`) ends with the change; the caller's stays.
            ("session.ended", json!({"reason": "password_changed"})),
            ("session.ended", json!({"reason": "logout"})),
        ]
    );
    assert!(events.iter().all(|(_, actor, _)| actor == "user"));
    app.refresh(&second.refresh)
        .await
        .assert_refresh_token_refused();
}

#[tokio::test]
async fn a_replayed_refresh_token_records_the_reuse_with_the_session_it_ended() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    app.refresh_ok(&login.refresh).await;
    app.clock.advance(Duration::from_secs(60));

    // Act
    app.refresh(&login.refresh).await;

    // Assert
    let rows = every_row(&app).await;
    assert_eq!(rows[0].event, "refresh.reused");
    assert_eq!(rows[0].user_id, Some(user.id));
    assert_eq!(
        rows[0].session_id.map(|id| id.to_string()).as_deref(),
        app.claims_of(&login.access)["sid"].as_str()
    );
    assert_eq!(rows[0].detail, json!({"session_ended": true}));
    assert_eq!(rows[1].event, "login.succeeded");
}

#[tokio::test]
async fn logging_out_everywhere_records_each_session_ended() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    app.login_user(&user).await;

    // Act
    app.request(Method::POST, "/api/logout/all/", Some(&login.access), None)
        .await;

    // Assert
    let ended: Vec<Value> = app
        .audit_of(user.id)
        .await
        .into_iter()
        .filter(|(event, _, _)| event == "session.ended")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(ended, vec![json!({"reason": "logout_all"}); 2]);
}

#[tokio::test]
async fn an_operators_changes_are_recorded_as_the_command_lines() {
    // Arrange: signing keys kept in the database, which the command line rotates.
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let (user, _) = app.register_and_login().await;

    // Act
    app.deactivate(user.id).await;
    app.deactivate(user.id).await;
    app.activate(user.id).await;
    app.admin
        .set_password(&user.email, "Another passw0rd")
        .await;
    let rotated = app.admin.rotate_signing_key(true).await.unwrap();
    app.admin.retire_signing_key(&rotated).await;

    // Assert
    let events: Vec<(String, String)> = app
        .audit_of(user.id)
        .await
        .into_iter()
        .map(|(event, actor, _)| (event, actor))
        .collect();
    let cli = |event: &str| (event.to_owned(), "cli".to_owned());
    assert_eq!(
        events[2..],
        [
            cli("user.deactivated"),
            cli("session.ended"),
            // Deactivating an inactive account changes nothing.
            cli("user.activated"),
            cli("password.reset"),
        ]
    );
    let keys: Vec<(String, Value)> = every_row(&app)
        .await
        .into_iter()
        .filter(|row| row.event.starts_with("key."))
        .map(|row| (row.event, row.detail["kid"].clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("key.retired".to_owned(), json!(rotated)),
            ("key.rotated".to_owned(), json!(rotated)),
        ]
    );
}

#[tokio::test]
async fn failed_logins_are_recorded_with_a_reason_the_client_is_not_told() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    app.deactivate(user.id).await;

    // Act
    let wrong = app.login(&user.email, "not the password").await;
    let inactive = app.login(&user.email, &user.password).await;

    // Assert
    wrong.assert_invalid_credentials();
    inactive.assert_invalid_credentials();
    let failures: Vec<Value> = app
        .audit_of(user.id)
        .await
        .into_iter()
        .filter(|(event, _, _)| event == "login.failed")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(
        failures,
        [
            json!({"reason": "bad_credentials", "count": 1}),
            json!({"reason": "inactive", "count": 1}),
        ]
    );
}

#[tokio::test]
async fn a_flood_of_failed_logins_is_one_row_a_minute_per_account_and_address() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;

    // Act: two failures from one address, one from another, then two a minute later (all
    // within the address's throttle limit).
    for _ in 0..2 {
        login_from(&app, "203.0.113.7", &user.email, "wrong guess").await;
    }
    login_from(&app, "198.51.100.9", &user.email, "wrong guess").await;
    app.clock.advance(Duration::from_secs(61));
    for _ in 0..2 {
        login_from(&app, "203.0.113.7", &user.email, "wrong guess").await;
    }

    // Assert
    let failures: Vec<(Option<String>, Value)> = every_row(&app)
        .await
        .into_iter()
        .rev()
        .filter(|row| row.event == "login.failed")
        .map(|row| (row.ip, row.detail["count"].clone()))
        .collect();
    let from = |ip: &str, count: i64| (Some(ip.to_owned()), json!(count));
    assert_eq!(
        failures,
        [
            from("203.0.113.7", 2),
            from("198.51.100.9", 1),
            from("203.0.113.7", 2)
        ]
    );
}

#[tokio::test]
async fn throttled_logins_are_recorded_folded_against_the_account() {
    // Arrange
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let limit = app.config.throttle_login_account_ip.0.unwrap().hits;

    // Act
    for _ in 0..limit + 5 {
        login_from(&app, "203.0.113.7", &user.email, "wrong guess").await;
    }

    // Assert
    let events = app.audit_of(user.id).await;
    let counted = |name: &str| {
        events
            .iter()
            .filter(|(event, _, _)| event == name)
            .map(|(_, _, detail)| detail["count"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(counted("login.failed"), [limit]);
    assert_eq!(counted("login.throttled"), [5]);
}

#[tokio::test]
async fn a_login_with_an_unknown_email_records_no_trace_of_what_was_typed() {
    // Arrange: someone types their password into the email field.
    let app = spawn_app().await;
    let typed = "s3cret-typed-in-the-wrong-field@example.org";

    // Act
    app.login(typed, "anything").await;

    // Assert
    let rows = every_row(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, "login.failed");
    assert_eq!(rows[0].user_id, None);
    let stored: Vec<u8> = app
        .query("SELECT * FROM audit_events")
        .into_iter()
        .flatten()
        .flatten()
        .flatten()
        .collect();
    let stored = String::from_utf8_lossy(&stored);
    assert!(!stored.contains("s3cret"), "{stored}");
}

#[tokio::test]
async fn the_owner_sees_their_events_newest_first_and_failed_logins_by_others() {
    // Arrange
    let app = spawn_app().await;
    let (ann, ann_login) = app.register_and_login().await;
    let bob = app.register_user("bob@example.org").await;
    let bob_login = app.login_user(&bob).await;
    login_from(&app, "198.51.100.9", &ann.email, "a guess by someone else").await;

    // Act
    let response = activity(&app, &ann_login.access, "").await;

    // Assert
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let events: Vec<(&str, bool)> = response
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["event"].as_str().unwrap(),
                event["current_session"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("login.failed", false),
            ("login.succeeded", true),
            ("user.registered", false),
        ]
    );
    let failed = &response.body[0];
    assert_eq!(failed["ip"], "198.51.100.9");
    assert_eq!(failed["user_agent"], "audit-test/1.0");
    let keys: Vec<&str> = failed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["id", "time", "event", "ip", "user_agent", "current_session"]
    );
    let bobs = activity(&app, &bob_login.access, "").await;
    assert_eq!(bobs.body.as_array().unwrap().len(), 2, "{:?}", bobs.body);
}

#[tokio::test]
async fn the_activity_pages_with_limit_and_before() {
    // Arrange
    let app = spawn_app().await;
    let (user, login) = app.register_and_login().await;
    for _ in 0..4 {
        app.login_user(&user).await;
    }

    // Act
    let first = activity(&app, &login.access, "?limit=2").await;
    let last_id = first.body[1]["id"].as_i64().unwrap();
    let second = activity(&app, &login.access, &format!("?limit=10&before={last_id}")).await;

    // Assert
    let ids = |page: &TestResponse| -> Vec<i64> {
        page.body
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&first).len(), 2);
    assert_eq!(ids(&second).len(), 4, "{:?}", second.body);
    let all: Vec<i64> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert!(all.windows(2).all(|pair| pair[0] > pair[1]), "{all:?}");
}

#[tokio::test]
async fn an_activity_page_out_of_range_is_a_field_error() {
    // Arrange
    let app = spawn_app().await;
    let (_, login) = app.register_and_login().await;

    // Act
    let cases = [
        (
            "?limit=101",
            json!({"limit": ["Ensure this value is less than or equal to 100."]}),
        ),
        (
            "?limit=0",
            json!({"limit": ["Ensure this value is greater than or equal to 1."]}),
        ),
        (
            "?limit=ten&before=x",
            json!({"limit": ["A valid integer is required."], "before": ["A valid integer is required."]}),
        ),
    ];

    // Assert
    for (query, errors) in cases {
        activity(&app, &login.access, query)
            .await
            .assert(StatusCode::BAD_REQUEST, errors);
    }
    activity(&app, "not-a-token", "")
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn housekeeping_deletes_events_past_the_audit_retention() {
    // Arrange
    let app = spawn_app().await;
    let (user, _) = app.register_and_login().await;
    app.clock
        .advance(app.config.audit_retention + Duration::from_secs(1));
    app.login_user(&user).await;

    // Act
    app.admin.purge(app.config.retention).await;

    // Assert
    assert_eq!(names_of(&app, user.id).await, ["login.succeeded"]);
}

#[tokio::test]
async fn throttled_logins_from_ever_new_addresses_stay_one_row_a_minute_per_account() {
    // Arrange: a guesser has used up the account's failures from strangers.
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let limit = app.config.throttle_login_account.0.unwrap().hits;
    for n in 0..limit {
        let peer = format!("[2001:db8:0:{n:x}::1]");
        login_from(&app, &peer, &user.email, "wrong guess").await;
    }

    // Act: each further guess from a network of its own (an IPv6 /48 holds 65536 of them),
    // at an account and at an unknown email.
    for n in 0..40 {
        let peer = format!("[2001:db8:1:{n:x}::1]");
        let refused = login_from(&app, &peer, &user.email, "wrong guess").await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    }
    for _ in 0..limit + 1 {
        login_from(&app, "203.0.113.7", "nobody@example.org", "a guess").await;
    }
    for n in 0..40 {
        let peer = format!("[2001:db8:2:{n:x}::1]");
        login_from(&app, &peer, "nobody@example.org", "a guess").await;
    }

    // Assert: the guesser's addresses do not make the log grow; the count keeps the tally.
    let throttled: Vec<(Option<i64>, i64)> = every_row(&app)
        .await
        .into_iter()
        .filter(|row| row.event == "login.throttled")
        .map(|row| (row.user_id, row.detail["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(throttled, [(None, 41), (Some(user.id), 40)]);
}

#[tokio::test]
async fn a_session_presented_past_its_absolute_lifetime_ends_and_says_why() {
    // Arrange
    let app = spawn_app_with(|config| {
        config.session_max_lifetime = Some(Duration::from_secs(60));
    })
    .await;
    let (user, old) = app.register_and_login().await;
    app.clock.advance(Duration::from_secs(60));

    // Act
    let refused = app.refresh(&old.refresh).await;
    let young = app.login_user(&user).await;

    // Assert
    refused.assert_refresh_token_refused();
    let ended: Vec<(String, Value)> = app
        .audit_of(user.id)
        .await
        .into_iter()
        .filter(|(event, _, _)| event == "session.ended")
        .map(|(event, _, detail)| (event, detail))
        .collect();
    assert_eq!(
        ended,
        [("session.ended".to_owned(), json!({"reason": "max_age"}))]
    );
    let listed = app
        .request(Method::GET, "/api/sessions/", Some(&young.access), None)
        .await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "only the young session is live: {:?}",
        listed.body
    );
}
