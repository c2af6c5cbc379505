//! Abuse resistance and account security: throttling, the session list, password change, the
//! refresh retry grace and the absolute session lifetime.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestResponse, spawn_app, spawn_app_with, tokens_of};

/// A request as if it came over a connection from `peer`.
async fn from_peer(app: &TestApp, peer: &str, path: &str, body: &Value) -> TestResponse {
    from_peer_with(app, peer, path, body, None).await
}

async fn from_peer_with(
    app: &TestApp,
    peer: &str,
    path: &str,
    body: &Value,
    forwarded_for: Option<&str>,
) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(
            format!("{peer}:40000").parse::<SocketAddr>().unwrap(),
        ));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    app.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

fn credentials(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

fn assert_throttled(response: &TestResponse) {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{response:?}"
    );
    let retry_after: i64 = response.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    assert_eq!(
        response.body,
        json!({"detail": format!("Request was throttled. Expected available in {retry_after} seconds.")})
    );
}

#[tokio::test]
async fn five_failed_logins_throttle_the_account_and_no_other() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let bob = app.register_user("bob@example.org").await;

    for _ in 0..5 {
        assert_eq!(
            app.login(&ann.email, "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = app.login(&ann.email, PASSWORD).await;

    assert_throttled(&throttled);
    let retry_after = throttled.headers[header::RETRY_AFTER].to_str().unwrap();
    assert!(
        (295..=300).contains(&retry_after.parse::<i64>().unwrap()),
        "{retry_after}"
    );
    assert_eq!(app.login(&bob.email, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_concurrent_wrong_passwords_only_five_are_tried() {
    // Arrange
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let body = json!({"email": ann.email, "password": "wrong password"});

    // Act: all arrive before any has been answered (16 is within the hash queue).
    let answers = app.post_json_concurrently("/api/login/", &body, 16).await;

    // Assert
    let statuses: Vec<_> = answers.iter().map(|answer| answer.status).collect();
    let tried = statuses
        .iter()
        .filter(|status| **status == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((tried, throttled), (5, 11), "{statuses:?}");
    assert_throttled(&app.login(&ann.email, PASSWORD).await);
}

#[tokio::test]
async fn a_successful_login_forgives_the_accounts_failures() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;

    for _ in 0..4 {
        app.login(&ann.email, "wrong password").await;
    }
    assert_eq!(app.login(&ann.email, PASSWORD).await.status, StatusCode::OK);
    for _ in 0..4 {
        app.login(&ann.email, "wrong password").await;
    }

    assert_eq!(app.login(&ann.email, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_from_one_address_are_throttled_across_accounts() {
    let app = spawn_app_with(|config| {
        config.throttle_login_ip = "3/1m"
            .parse()
            .map(|limit| restful_auth::config::Limit(Some(limit)))
            .unwrap();
    })
    .await;
    let ann = app.register_user("ann@example.org").await;

    for attempt in 0..3 {
        let email = format!("nobody{attempt}@example.org");
        let response = from_peer(
            &app,
            "203.0.113.5",
            "/api/login/",
            &credentials(&email, "guess"),
        )
        .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let same_address = from_peer(
        &app,
        "203.0.113.5",
        "/api/login/",
        &credentials(&ann.email, PASSWORD),
    )
    .await;
    let other_address = from_peer(
        &app,
        "198.51.100.1",
        "/api/login/",
        &credentials(&ann.email, PASSWORD),
    )
    .await;

    assert_throttled(&same_address);
    assert_eq!(other_address.status, StatusCode::OK);
}

#[tokio::test]
async fn successful_logins_never_count_against_an_address() {
    let app = spawn_app_with(|config| {
        config.throttle_login_ip = restful_auth::config::Limit("2/1m".parse().ok());
    })
    .await;
    let ann = app.register_user("ann@example.org").await;

    for _ in 0..5 {
        let response = from_peer(
            &app,
            "203.0.113.5",
            "/api/login/",
            &credentials(&ann.email, PASSWORD),
        )
        .await;
        assert_eq!(response.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn registrations_per_address_are_limited() {
    let app = spawn_app_with(|config| {
        config.throttle_register_ip = restful_auth::config::Limit("2/1h".parse().ok());
    })
    .await;
    let register = |n: usize| {
        let body = credentials(&format!("user{n}@example.org"), PASSWORD);
        let app = &app;
        async move { from_peer(app, "203.0.113.5", "/api/register/", &body).await }
    };

    assert_eq!(register(1).await.status, StatusCode::CREATED);
    assert_eq!(register(2).await.status, StatusCode::CREATED);
    let third = register(3).await;

    assert_throttled(&third);
    assert_eq!(
        app.count_rows("users"),
        2,
        "the throttled registration created nothing"
    );
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let app = spawn_app_with(|config| {
        config.throttle_login_ip = restful_auth::config::Limit("1/1m".parse().ok());
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let guess = credentials("nobody@example.org", "guess");

    // Behind the trusted proxy, two clients are two addresses.
    let first = from_peer_with(
        &app,
        "127.0.0.1",
        "/api/login/",
        &guess,
        Some("203.0.113.1"),
    )
    .await;
    let second = from_peer_with(
        &app,
        "127.0.0.1",
        "/api/login/",
        &guess,
        Some("203.0.113.2"),
    )
    .await;
    // A stranger's own header is ignored: it is throttled as itself.
    let stranger = from_peer_with(
        &app,
        "198.51.100.9",
        "/api/login/",
        &guess,
        Some("203.0.113.3"),
    )
    .await;
    let stranger_again = from_peer_with(
        &app,
        "198.51.100.9",
        "/api/login/",
        &guess,
        Some("203.0.113.4"),
    )
    .await;

    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_throttled(&stranger_again);
}

#[tokio::test]
async fn throttling_can_be_switched_off() {
    let app = spawn_app_with(|config| {
        config.throttle_login_account = restful_auth::config::Limit(None);
        config.throttle_login_account_ip = restful_auth::config::Limit(None);
    })
    .await;
    let ann = app.register_user("ann@example.org").await;

    for _ in 0..8 {
        app.login(&ann.email, "wrong password").await;
    }

    assert_eq!(app.login(&ann.email, PASSWORD).await.status, StatusCode::OK);
}

async fn get_sessions(app: &TestApp, access: &str) -> TestResponse {
    app.request(Method::GET, "/api/sessions/", Some(access), None)
        .await
}

#[tokio::test]
async fn the_session_list_shows_the_callers_live_sessions_and_which_is_current() {
    let app = spawn_app().await;
    let (ann, phone) = app.register_and_login().await;
    let laptop = app.login_user(&ann).await;
    let ended = app.login_user(&ann).await;
    app.logout(&ended.refresh).await;
    app.register_user("bob@example.org").await;

    let listed = get_sessions(&app, &phone.access).await;

    assert_eq!(listed.status, StatusCode::OK);
    let sessions = listed.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let current: Vec<_> = sessions
        .iter()
        .filter(|session| session["current"] == json!(true))
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], app.claims_of(&phone.access)["sid"]);
    let ids: Vec<_> = sessions
        .iter()
        .map(|session| session["id"].clone())
        .collect();
    assert!(ids.contains(&app.claims_of(&laptop.access)["sid"]));
    for session in sessions {
        for field in ["created", "last_seen"] {
            assert!(session[field].as_str().unwrap().ends_with('Z'), "{session}");
        }
    }
}

#[tokio::test]
async fn ending_one_session_stops_its_tokens_and_leaves_the_others() {
    let app = spawn_app().await;
    let (ann, phone) = app.register_and_login().await;
    let laptop = app.login_user(&ann).await;
    let laptop_sid = app.claims_of(&laptop.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    let ended = app
        .send_raw(
            Request::delete(format!("/api/sessions/{laptop_sid}/"))
                .header(header::AUTHORIZATION, format!("Bearer {}", phone.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_me(&laptop.access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&laptop.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get_me(&phone.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn another_users_session_or_a_bad_id_is_not_found() {
    let app = spawn_app().await;
    let (_, ann) = app.register_and_login().await;
    let bob = app.register_user("bob@example.org").await;
    let bob_tokens = app.login_user(&bob).await;
    let bob_sid = app.claims_of(&bob_tokens.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    for id in [
        bob_sid.as_str(),
        "not-a-uuid",
        "00000000-0000-4000-8000-000000000000",
    ] {
        let response = app
            .request(
                Method::DELETE,
                &format!("/api/sessions/{id}/"),
                Some(&ann.access),
                None,
            )
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(response.body, json!({"detail": "Not found."}));
    }
    assert_eq!(app.get_me(&bob_tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_caller_only() {
    let app = spawn_app().await;
    let (ann, phone) = app.register_and_login().await;
    let laptop = app.login_user(&ann).await;
    let bob = app.register_user("bob@example.org").await;
    let bob_tokens = app.login_user(&bob).await;

    let response = app
        .request(Method::POST, "/api/logout/all/", Some(&phone.access), None)
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.body,
        json!({"success": "All sessions ended.", "ended": 2})
    );
    for tokens in [&phone, &laptop] {
        assert_eq!(
            app.get_me(&tokens.access).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.refresh(&tokens.refresh).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(app.get_me(&bob_tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_session_endpoints_need_an_access_token() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/api/sessions/"),
        (Method::POST, "/api/logout/all/"),
        (
            Method::DELETE,
            "/api/sessions/00000000-0000-4000-8000-000000000000/",
        ),
        (Method::POST, "/api/me/password/"),
    ] {
        let response = app.request(method, path, None, None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            response.body,
            json!({"detail": "Authentication credentials were not provided."})
        );
    }
}

async fn change_password(app: &TestApp, access: &str, body: &Value) -> TestResponse {
    let body = ("application/json", body.to_string().into_bytes());
    app.request(Method::POST, "/api/me/password/", Some(access), Some(body))
        .await
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let app = spawn_app().await;
    let (ann, phone) = app.register_and_login().await;
    let laptop = app.login_user(&ann).await;
    let new_password = "an entirely new passphrase";

    let changed = change_password(
        &app,
        &phone.access,
        &json!({"old_password": PASSWORD, "new_password": new_password}),
    )
    .await;

    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, json!({"success": "Password changed."}));
    assert_eq!(app.get_me(&phone.access).await.status, StatusCode::OK);
    assert_eq!(
        app.get_me(&laptop.access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&laptop.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, new_password).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_wrong_old_password_or_a_weak_new_one_changes_nothing() {
    let app = spawn_app().await;
    let (ann, tokens) = app.register_and_login().await;
    let hash_before = app.password_hash_of(ann.id);

    let wrong_old = change_password(
        &app,
        &tokens.access,
        &json!({"old_password": "not it", "new_password": "an entirely new passphrase"}),
    )
    .await;
    let weak_new = change_password(
        &app,
        &tokens.access,
        &json!({"old_password": PASSWORD, "new_password": "12345678"}),
    )
    .await;
    let missing = change_password(&app, &tokens.access, &json!({})).await;

    assert_eq!(wrong_old.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_old.body,
        json!({"old_password": ["Your old password was entered incorrectly. Please enter it again."]})
    );
    assert_eq!(
        weak_new.body,
        json!({"new_password": ["This password is too common.", "This password is entirely numeric."]})
    );
    assert_eq!(
        missing.body,
        json!({"old_password": ["This field is required."], "new_password": ["This field is required."]})
    );
    assert_eq!(app.password_hash_of(ann.id), hash_before);
}

#[tokio::test]
async fn guessing_the_old_password_is_throttled_like_logins() {
    let app = spawn_app().await;
    let (ann, tokens) = app.register_and_login().await;
    let hash_before = app.password_hash_of(ann.id);
    let guess =
        |old: &str| json!({"old_password": old, "new_password": "an entirely new passphrase"});

    for attempt in 0..5 {
        let wrong =
            change_password(&app, &tokens.access, &guess(&format!("guess {attempt}"))).await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    }
    let throttled = change_password(&app, &tokens.access, &guess(PASSWORD)).await;

    assert_throttled(&throttled);
    assert_eq!(app.password_hash_of(ann.id), hash_before);
}

#[tokio::test]
async fn within_the_retry_grace_a_repeated_refresh_gets_the_same_answer() {
    let app = spawn_app_with(|config| config.refresh_retry_grace = Duration::from_secs(10)).await;
    let (_, tokens) = app.register_and_login().await;

    let first = app.refresh(&tokens.refresh).await;
    let repeated = app.refresh(&tokens.refresh).await;

    let first = tokens_of(&first);
    let repeated = tokens_of(&repeated);
    assert_eq!(first.refresh, repeated.refresh, "the same successor");
    assert_eq!(app.get_me(&repeated.access).await.status, StatusCode::OK);
    let next = app.refresh_ok(&first.refresh).await;
    // The chain moved on: the first token is now two steps back, a replay.
    let replay = app.refresh(&tokens.refresh).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_me(&next.access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn without_a_grace_a_repeated_refresh_ends_the_session() {
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;

    let first = app.refresh_ok(&tokens.refresh).await;
    let repeated = app.refresh(&tokens.refresh).await;

    assert_eq!(repeated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_me(&first.access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn past_the_absolute_session_lifetime_a_refresh_fails() {
    let app =
        spawn_app_with(|config| config.session_max_lifetime = Some(Duration::from_secs(1))).await;
    let (_, tokens) = app.register_and_login().await;

    app.clock.advance(Duration::from_secs(1));
    let refreshed = app.refresh(&tokens.refresh).await;

    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refreshed.body,
        json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_beyond_the_hash_queue_is_shed_with_503_and_retry_after() {
    let app = spawn_app_with(|config| {
        config.hash_concurrency = std::num::NonZeroUsize::new(1);
        config.hash_queue_limit = 1;
        racing_logins(config);
    })
    .await;
    let (ann, tokens) = app.register_and_login().await;

    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (router, email) = (app.router.clone(), ann.email.clone());
            tokio::spawn(async move {
                let request = Request::post("/api/login/")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        credentials(&email, "wrong password").to_string(),
                    ))
                    .unwrap();
                tower::ServiceExt::oneshot(router, request).await.unwrap()
            })
        })
        .collect();
    let me_meanwhile = app.get_me(&tokens.access).await;
    let mut shed = 0;
    for answer in flood {
        let answer = answer.await.unwrap();
        match answer.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }

    assert!(
        shed >= 10,
        "one hashing and one waiting at most; shed {shed}"
    );
    assert_eq!(
        me_meanwhile.status,
        StatusCode::OK,
        "cheap requests are unaffected"
    );
    assert_eq!(
        app.login(&ann.email, PASSWORD).await.status,
        StatusCode::OK,
        "it recovers"
    );
}

async fn login_from(app: &TestApp, peer: &str, email: &str, password: &str) -> TestResponse {
    from_peer(app, peer, "/api/login/", &credentials(email, password)).await
}

fn limit(text: &str) -> restful_auth::config::Limit {
    restful_auth::config::Limit(Some(text.parse().expect("a valid limit")))
}

#[tokio::test]
async fn strangers_failing_from_many_addresses_cannot_lock_the_owner_out() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let owners_address = "203.0.113.1";
    let first = login_from(&app, owners_address, &ann.email, PASSWORD).await;
    assert_eq!(first.status, StatusCode::OK);

    // Five failures from each of five addresses: every stranger's own bucket is full, and
    // so is the account's bucket for addresses it does not know (20 per hour).
    for stranger in 1..=5 {
        let address = format!("198.51.100.{stranger}");
        for _ in 0..5 {
            let guess = credentials(&ann.email, "a wrong guess");
            let answer = from_peer(&app, &address, "/api/login/", &guess).await;
            assert_ne!(answer.status, StatusCode::OK);
        }
    }
    let owner = login_from(&app, owners_address, &ann.email, PASSWORD).await;
    let new_place = login_from(&app, "192.0.2.7", &ann.email, PASSWORD).await;

    assert_eq!(owner.status, StatusCode::OK, "the owner's known address");
    assert_throttled(&new_place);
}

#[tokio::test]
async fn a_throttled_login_answers_alike_whether_the_password_is_right_or_not() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    for _ in 0..5 {
        let guess = credentials(&ann.email, "a wrong guess");
        from_peer(&app, "198.51.100.1", "/api/login/", &guess).await;
    }

    let right = login_from(&app, "198.51.100.1", &ann.email, PASSWORD).await;
    let wrong = login_from(&app, "198.51.100.1", &ann.email, "nope").await;

    assert_throttled(&right);
    assert_throttled(&wrong);
    assert_eq!(right.body, wrong.body);
}

#[tokio::test]
async fn an_ipv6_client_is_throttled_by_its_slash_64_not_by_each_address() {
    let app = spawn_app_with(|config| config.throttle_login_ip = limit("3/1m")).await;
    let ann = app.register_user("ann@example.org").await;

    for host in ["::1", "::2", "::3"] {
        let peer = format!("2001:db8:1:2{host}");
        let guess = credentials(&format!("nobody{host}@example.org"), "guess");
        let answer = from_peer(&app, &format!("[{peer}]"), "/api/login/", &guess).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{peer}");
    }
    let same_network = from_peer(
        &app,
        "[2001:db8:1:2:ffff::99]",
        "/api/login/",
        &credentials(&ann.email, PASSWORD),
    )
    .await;
    let next_network = from_peer(
        &app,
        "[2001:db8:1:3::1]",
        "/api/login/",
        &credentials(&ann.email, PASSWORD),
    )
    .await;

    assert_throttled(&same_network);
    assert_eq!(next_network.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_refresh_tokens_are_throttled_per_address_at_refresh_and_logout() {
    let app = spawn_app_with(|config| config.throttle_refresh_ip = limit("3/1m")).await;
    let (_, tokens) = app.register_and_login().await;
    let unknown = json!({"refresh_token": "6f1c2a4e-3b7d-4c8e-9f10-2a3b4c5d6e7f"});

    for path in ["/api/refresh/", "/api/logout/", "/api/refresh/"] {
        let answer = from_peer(&app, "198.51.100.1", path, &unknown).await;
        answer.assert_refresh_token_refused();
    }
    let valid = json!({"refresh_token": tokens.refresh});
    let throttled_refresh = from_peer(&app, "198.51.100.1", "/api/refresh/", &valid).await;
    let throttled_logout = from_peer(&app, "198.51.100.1", "/api/logout/", &valid).await;
    let elsewhere = from_peer(&app, "198.51.100.2", "/api/refresh/", &valid).await;

    assert_throttled(&throttled_refresh);
    assert_throttled(&throttled_logout);
    assert_eq!(
        elsewhere.status,
        StatusCode::OK,
        "the throttled token was not looked at"
    );
}

/// `times` logins with `password` at once, each in a task of its own.
fn logins_in_flight(
    app: &TestApp,
    email: &str,
    password: &str,
    times: usize,
) -> Vec<tokio::task::JoinHandle<TestResponse>> {
    (0..times)
        .map(|_| {
            let router = app.router.clone();
            let body = credentials(email, password);
            tokio::spawn(async move {
                let request = Request::post("/api/login/")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
                let (status, headers) = (response.status(), response.headers().clone());
                let bytes = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                TestResponse {
                    status,
                    headers,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    bytes: bytes.to_vec(),
                }
            })
        })
        .collect()
}

async fn access_tokens_of(logins: Vec<tokio::task::JoinHandle<TestResponse>>) -> Vec<String> {
    let mut issued = Vec::new();
    for login in logins {
        let answer = login.await.unwrap();
        if answer.status == StatusCode::OK {
            issued.push(tokens_of(&answer).access);
        } else {
            answer.assert_invalid_credentials();
        }
    }
    issued
}

/// Logins that race a change: the service's own hashing cost keeps them in flight (waiting for
/// the hashing pool) while the change commits.
fn racing_logins(config: &mut restful_auth::config::Config) {
    config.throttle_login_account = restful_auth::config::Limit(None);
    config.throttle_login_account_ip = restful_auth::config::Limit(None);
    config.argon2_cost = restful_auth::config::Argon2Cost::OWASP;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_login_in_flight_outlives_a_password_change() {
    let app = spawn_app_with(racing_logins).await;
    let (ann, own) = app.register_and_login().await;
    let new_password = "an entirely new passphrase";

    let logins = logins_in_flight(&app, &ann.email, PASSWORD, 30);
    let changed = change_password(
        &app,
        &own.access,
        &json!({"old_password": PASSWORD, "new_password": new_password}),
    )
    .await;
    let issued = access_tokens_of(logins).await;

    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    for access in &issued {
        app.get_me(access).await.assert_access_token_refused();
    }
    assert_eq!(app.get_me(&own.access).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_login_in_flight_outlives_a_deactivation() {
    let app = spawn_app_with(racing_logins).await;
    let ann = app.register_user("ann@example.org").await;

    let logins = logins_in_flight(&app, &ann.email, PASSWORD, 30);
    // Every login has read the account (active) and most wait for the hashing pool.
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.deactivate(ann.id).await;
    let issued = access_tokens_of(logins).await;
    app.activate(ann.id).await;

    for access in &issued {
        app.get_me(access).await.assert_access_token_refused();
    }
}

/// A Django `argon2$argon2id$…` hash of `password` that takes a while to verify (64 MiB,
/// 8 passes: within the bounds), so that a login verifying it is still at it when an
/// administrator resets the password.
fn slow_django_argon2(password: &str) -> String {
    use argon2::PasswordHasher as _;
    let params = argon2::Params::new(64 * 1024, 8, 1, None).unwrap();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = argon2::password_hash::SaltString::encode_b64(b"sixteen byte salt").unwrap();
    let phc = argon2.hash_password(password.as_bytes(), &salt).unwrap();
    format!("argon2{phc}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_that_rehashes_an_imported_hash_cannot_undo_an_administrators_reset() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let imported = slow_django_argon2("a django-era passphrase");
    app.query(&format!(
        "UPDATE users SET password_hash = '{imported}' WHERE id = {}",
        ann.id
    ));
    let reset_password = "the administrator's new passphrase";

    let login = logins_in_flight(&app, &ann.email, "a django-era passphrase", 1);
    // The login is verifying the slow hash (about a second) while the reset commits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.admin.set_password(&ann.email, reset_password).await;
    let login = login.into_iter().next().unwrap().await.unwrap();

    login.assert_invalid_credentials();
    assert_eq!(
        app.login(&ann.email, reset_password).await.status,
        StatusCode::OK
    );
    app.login(&ann.email, "a django-era passphrase")
        .await
        .assert_invalid_credentials();
}

#[tokio::test]
async fn a_replayed_token_ends_its_session_even_after_housekeeping_has_run() {
    let app = spawn_app().await;
    let (_, first) = app.register_and_login().await;
    let second = app.refresh_ok(&first.refresh).await;
    let live = app.refresh_ok(&second.refresh).await;
    // The first two were consumed longer ago than the retention; the session lives on.
    app.clock.advance(Duration::from_secs(8 * 24 * 3600));

    app.admin.purge(Duration::from_secs(7 * 24 * 3600)).await;
    let replay = app.refresh(&first.refresh).await;

    replay.assert_refresh_token_refused();
    app.get_me(&live.access).await.assert_access_token_refused();
    app.refresh(&live.refresh)
        .await
        .assert_refresh_token_refused();
}

#[tokio::test]
async fn housekeeping_deletes_a_session_once_it_is_over_with_all_its_tokens() {
    let app = spawn_app().await;
    let (ann, ended) = app.register_and_login().await;
    let kept = app.login_user(&ann).await;
    let consumed = app.refresh_ok(&ended.refresh).await;
    app.logout(&consumed.refresh).await;
    app.clock.advance(Duration::from_secs(8 * 24 * 3600));
    let kept = app.refresh_ok(&kept.refresh).await;

    app.admin.purge(Duration::from_secs(7 * 24 * 3600)).await;

    assert_eq!(app.count_rows("sessions"), 1);
    assert_eq!(
        app.count_rows("refresh_tokens"),
        2,
        "the kept session's consumed and live tokens"
    );
    assert_eq!(app.get_me(&kept.access).await.status, StatusCode::OK);
}
