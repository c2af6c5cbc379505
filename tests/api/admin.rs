//! The admin API (`--admin-bind`): its token, its absence from the public router, and each of
//! its endpoints, on the same service as the public API (docs/CONTRACT.md, "Admin API").

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use restful_auth::domain::audit::AuditQuery;
use serde_json::{Value, json};

use crate::helpers::{JSON, PASSWORD, TestApp, TestResponse, TestUser, send_to, spawn_app};

const TOKEN: &str = "an-admin-token-of-the-tests-0123456789";

/// The admin API of `app`, called with the admin token.
struct AdminApi {
    router: Router,
    token: Option<&'static str>,
}

impl AdminApi {
    fn of(app: &TestApp) -> AdminApi {
        AdminApi {
            router: app.admin.clone().admin_api(Some(TOKEN)),
            token: Some(TOKEN),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        send_to(&self.router, request.body(body).unwrap()).await
    }

    async fn get(&self, path: &str) -> TestResponse {
        let response = self.call(Method::GET, path, None).await;
        assert_eq!(
            response.headers.get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(JSON)),
            "{response:?}"
        );
        response
    }

    async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> TestResponse {
        self.call(Method::DELETE, path, None).await
    }

    async fn post(&self, path: &str) -> TestResponse {
        self.call(Method::POST, path, None).await
    }

    /// The ids of the accounts of a list answer.
    async fn listed_ids(&self, path: &str) -> (Vec<i64>, Value) {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let ids = page.body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|user| user["id"].as_i64().expect("an id"))
            .collect();
        (ids, page.body["next"].clone())
    }
}

/// A login from the client address `peer`.
async fn login_from(app: &TestApp, peer: &str, email: &str, password: &str) -> TestResponse {
    let request = Request::post("/api/login/")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(
            format!("{peer}:40000").parse::<SocketAddr>().unwrap(),
        ))
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap();
    app.send(request).await
}

// ---- the token and the listener ---------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_refuses_a_missing_or_wrong_token_and_admits_the_right_one() {
    let app = spawn_app().await;
    app.register_user("ann@example.org").await;
    let admin = AdminApi::of(&app);
    let without = AdminApi {
        token: None,
        ..AdminApi::of(&app)
    };
    let wrong = AdminApi {
        token: Some("an-admin-token-of-the-tests-0123456788"),
        ..AdminApi::of(&app)
    };

    let missing = without.call(Method::GET, "/admin/users/", None).await;
    let refused = wrong.call(Method::GET, "/admin/users/", None).await;
    let unknown_path = wrong.call(Method::GET, "/admin/nothing/", None).await;
    let deletion = wrong.delete("/admin/users/1/").await;
    let admitted = admin.get("/admin/users/").await;

    missing.assert(
        StatusCode::UNAUTHORIZED,
        json!({"detail": "Authentication credentials were not provided."}),
    );
    refused.assert(
        StatusCode::UNAUTHORIZED,
        json!({"detail": "Invalid token."}),
    );
    for answer in [&missing, &refused] {
        let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // Without the token, nothing is told, not even which paths exist; nothing changes.
    assert_eq!(unknown_path.status, StatusCode::UNAUTHORIZED);
    assert_eq!(deletion.status, StatusCode::UNAUTHORIZED);
    assert_eq!(admitted.status, StatusCode::OK, "{admitted:?}");
    assert_eq!(admitted.body["results"][0]["email"], "ann@example.org");
}

#[tokio::test]
async fn without_a_token_file_the_admin_api_asks_for_no_token() {
    // Only on a loopback address, which the service checks at start (tests/administration.rs).
    let app = spawn_app().await;
    let open = AdminApi {
        router: app.admin.clone().admin_api(None),
        token: None,
    };

    assert_eq!(open.get("/admin/users/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_admin_api_is_absent_from_the_public_router_and_from_its_document() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;

    for path in [
        "/admin/users/".to_owned(),
        format!("/admin/users/{}/", user.id),
        "/admin/schema/".to_owned(),
    ] {
        let answer = app
            .request(Method::GET, &path, Some(&tokens.access), None)
            .await;
        answer.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    }
    let deletion = app
        .request(
            Method::DELETE,
            &format!("/admin/users/{}/", user.id),
            None,
            None,
        )
        .await;
    assert_eq!(deletion.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);

    let public = app.get("/api/schema/").await.body;
    let admin = AdminApi::of(&app).get("/admin/schema/").await.body;
    let paths = |document: &Value| -> Vec<String> {
        document["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect()
    };
    assert!(
        paths(&public)
            .iter()
            .all(|path| !path.starts_with("/admin")),
        "{:?}",
        paths(&public)
    );
    assert!(paths(&admin).iter().all(|path| path.starts_with("/admin/")));
    for path in [
        "/admin/users/",
        "/admin/users/{id}/",
        "/admin/users/{id}/sessions/",
        "/admin/users/{id}/unlock/",
        "/admin/sessions/{id}/",
    ] {
        assert!(
            paths(&admin).contains(&path.to_owned()),
            "{path} documented"
        );
    }
}

// ---- accounts -----------------------------------------------------------------------------

#[tokio::test]
async fn accounts_are_listed_oldest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.register_user(&format!("user{n}@example.org")).await.id);
    }
    let admin = AdminApi::of(&app);

    let (first, next) = admin.listed_ids("/admin/users/?limit=2").await;
    let (second, after_second) = admin
        .listed_ids(&format!("/admin/users/?limit=2&after={next}"))
        .await;
    let (last, end) = admin
        .listed_ids(&format!("/admin/users/?limit=2&after={after_second}"))
        .await;
    let (everyone, none) = admin.listed_ids("/admin/users/").await;
    let (largest, _) = admin.listed_ids("/admin/users/?limit=100").await;
    let too_many = admin.get("/admin/users/?limit=101").await;
    let bad_cursor = admin.get("/admin/users/?after=abc&limit=0").await;
    let bad_session_cursor = admin
        .get(&format!("/admin/users/{}/sessions/?after=abc", ids[0]))
        .await;

    assert_eq!(first, ids[..2]);
    assert_eq!(next, json!(ids[1]));
    assert_eq!(second, ids[2..4]);
    assert_eq!(last, ids[4..]);
    assert_eq!(end, Value::Null);
    assert_eq!((everyone, none), (ids.clone(), Value::Null));
    assert_eq!(largest, ids);
    too_many.assert(
        StatusCode::BAD_REQUEST,
        json!({"limit": ["Ensure this value is less than or equal to 100."]}),
    );
    bad_cursor.assert(
        StatusCode::BAD_REQUEST,
        json!({
            "after": ["A valid integer is required."],
            "limit": ["Ensure this value is greater than or equal to 1."],
        }),
    );
    bad_session_cursor.assert(
        StatusCode::BAD_REQUEST,
        json!({"after": ["Must be a valid UUID."]}),
    );
}

#[tokio::test]
async fn a_search_matches_the_email_or_the_username_in_any_case_and_wildcards_as_themselves() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    let bob = app.register_user("bob_smith@example.org").await;
    let carol = app.register_user("carol@example.net").await;
    let bobx = app.register_user("bobxsmith@example.org").await;
    let admin = AdminApi::of(&app);
    let renamed = admin
        .patch(
            &format!("/admin/users/{}/", carol.id),
            json!({"username": "Carol ANNE"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");

    let (by_email, _) = admin.listed_ids("/admin/users/?q=EXAMPLE.ORG").await;
    let (by_either, _) = admin.listed_ids("/admin/users/?q=Ann").await;
    let (underscore, _) = admin.listed_ids("/admin/users/?q=bob_").await;
    let (percent, _) = admin.listed_ids("/admin/users/?q=%25").await;

    assert_eq!(by_email, [ann.id, bob.id, bobx.id]);
    assert_eq!(by_either, [ann.id, carol.id]);
    assert_eq!(underscore, [bob.id], "`_` is no wildcard");
    assert!(percent.is_empty(), "`%` is no wildcard");
}

#[tokio::test]
async fn an_account_shows_its_live_sessions_and_its_last_login() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let admin = AdminApi::of(&app);
    let before_login = admin.get(&format!("/admin/users/{}/", user.id)).await;
    let first = app.login_user(&user).await;
    app.clock.advance(std::time::Duration::from_secs(60));
    app.login_user(&user).await;
    app.logout(&first.refresh).await;

    let shown = admin.get(&format!("/admin/users/{}/", user.id)).await;
    let missing = admin.get("/admin/users/999999/").await;
    let not_an_id = admin.get("/admin/users/ann/").await;

    assert_eq!(before_login.body["last_login"], Value::Null);
    assert_eq!(before_login.body["sessions"], 0);
    assert_eq!(shown.status, StatusCode::OK);
    let body = &shown.body;
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "id",
            "email",
            "username",
            "is_active",
            "date_joined",
            "last_login",
            "sessions"
        ]
    );
    assert_eq!(
        (
            &body["id"],
            &body["email"],
            &body["is_active"],
            &body["sessions"]
        ),
        (
            &json!(user.id),
            &json!("ann@example.org"),
            &json!(true),
            &json!(1)
        )
    );
    let date_joined = body["date_joined"].as_str().unwrap();
    let last_login = body["last_login"].as_str().unwrap();
    assert!(
        date_joined.ends_with('Z') && last_login > date_joined,
        "{body}"
    );
    missing.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    not_an_id.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn patch_changes_only_the_fields_sent() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/", user.id);

    let renamed = admin.patch(&path, json!({"username": "Ann Lee"})).await;
    let moved = admin
        .patch(&path, json!({"email": "Ann.Lee@Example.ORG"}))
        .await;
    let invalid = admin
        .patch(
            &path,
            json!({"email": "not an email", "username": "", "is_active": "maybe"}),
        )
        .await;
    let missing = admin.patch("/admin/users/999999/", json!({})).await;

    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    assert_eq!(
        (&renamed.body["username"], &renamed.body["email"]),
        (&json!("Ann Lee"), &json!("ann@example.org"))
    );
    assert_eq!(
        (&moved.body["username"], &moved.body["email"]),
        (&json!("Ann Lee"), &json!("Ann.Lee@example.org"))
    );
    invalid.assert(
        StatusCode::BAD_REQUEST,
        json!({
            "email": ["Enter a valid email address."],
            "username": ["This field may not be blank."],
            "is_active": ["Must be a valid boolean."],
        }),
    );
    missing.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    // The new email logs in, the old one no longer does.
    let moved_user = TestUser {
        email: "ann.lee@example.org".into(),
        ..user.clone()
    };
    app.login_user(&moved_user).await;
    app.login(&user.email, PASSWORD)
        .await
        .assert_invalid_credentials();
}

#[tokio::test]
async fn patch_refuses_an_email_another_account_has_in_any_case() {
    let app = spawn_app().await;
    let ann = app.register_user("ann@example.org").await;
    app.register_user("bob@example.org").await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/", ann.id);

    let taken = admin
        .patch(&path, json!({"email": "BOB@example.org", "username": "x"}))
        .await;
    let own_in_another_case = admin
        .patch(&path, json!({"email": "ANN@example.org"}))
        .await;

    taken.assert(
        StatusCode::BAD_REQUEST,
        json!({"email": ["user with this email already exists."]}),
    );
    assert_eq!(
        admin.get(&path).await.body["username"],
        "ann@example.org",
        "nothing of a refused change is kept"
    );
    assert_eq!(own_in_another_case.status, StatusCode::OK);
    assert_eq!(own_in_another_case.body["email"], "ANN@example.org");
}

#[tokio::test]
async fn deactivation_ends_every_session_and_activation_lets_the_owner_log_in_again() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/", user.id);

    let deactivated = admin.patch(&path, json!({"is_active": false})).await;

    assert_eq!(deactivated.status, StatusCode::OK, "{deactivated:?}");
    assert_eq!(
        (
            &deactivated.body["is_active"],
            &deactivated.body["sessions"]
        ),
        (&json!(false), &json!(0))
    );
    app.refresh(&tokens.refresh)
        .await
        .assert_refresh_token_refused();
    app.get_me(&tokens.access)
        .await
        .assert_access_token_refused();
    app.login(&user.email, PASSWORD)
        .await
        .assert_invalid_credentials();

    let activated = admin.patch(&path, json!({"is_active": "true"})).await;
    assert_eq!(activated.body["is_active"], true);
    app.login_user(&user).await;
}

#[tokio::test]
async fn delete_erases_the_account_with_its_sessions_and_tokens() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let other = app.register_user("bob@example.org").await;
    let others_tokens = app.login_user(&other).await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/", user.id);

    let deleted = admin.delete(&path).await;
    let again = admin.delete(&path).await;

    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    again.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    admin
        .get(&path)
        .await
        .assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    app.get_me(&tokens.access)
        .await
        .assert_access_token_refused();
    app.refresh(&tokens.refresh)
        .await
        .assert_refresh_token_refused();
    app.login(&user.email, PASSWORD)
        .await
        .assert_invalid_credentials();
    let owned = |table: &str, column: &str| {
        app.query(&format!(
            "SELECT count(*) FROM {table} WHERE {column} = {}",
            user.id
        ))[0][0]
            .clone()
            .map(|count| String::from_utf8(count).unwrap())
    };
    assert_eq!(owned("sessions", "user_id").as_deref(), Some("0"));
    assert_eq!(owned("known_addresses", "user_id").as_deref(), Some("0"));
    assert_eq!(app.count_rows("refresh_tokens"), 1, "the other user's");
    // Nobody else is touched; the address may sign up again.
    assert_eq!(
        app.get_me(&others_tokens.access).await.status,
        StatusCode::OK
    );
    app.register_user(&user.email).await;
}

#[tokio::test]
async fn unlock_lets_an_owner_locked_out_by_failed_logins_in_at_once() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let address = "203.0.113.9";
    for _ in 0..5 {
        let failed = login_from(&app, address, &user.email, "a wrong password").await;
        failed.assert_invalid_credentials();
    }
    let locked = login_from(&app, address, &user.email, PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{locked:?}");
    let admin = AdminApi::of(&app);

    let unlocked = admin
        .post(&format!("/admin/users/{}/unlock/", user.id))
        .await;
    let missing = admin.post("/admin/users/999999/unlock/").await;

    assert_eq!(unlocked.status, StatusCode::OK, "{unlocked:?}");
    assert_eq!(unlocked.body["success"], "Throttling cleared.");
    assert!(unlocked.body["cleared"].as_u64().unwrap() >= 1);
    let login = login_from(&app, address, &user.email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    missing.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn unlock_also_clears_the_wrong_old_passwords_of_a_password_change() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let change =
        |old: &str| json!({"old_password": old, "new_password": "a much longer passphrase"});
    let send_change = |old: &str| {
        let body = ("application/json", change(old).to_string().into_bytes());
        app.request(
            Method::POST,
            "/api/me/password/",
            Some(&tokens.access),
            Some(body),
        )
    };
    for _ in 0..5 {
        assert_eq!(send_change("wrong").await.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        send_change(PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    let unlocked = AdminApi::of(&app)
        .post(&format!("/admin/users/{}/unlock/", user.id))
        .await;

    assert_eq!(unlocked.status, StatusCode::OK);
    assert_eq!(send_change(PASSWORD).await.status, StatusCode::OK);
}

// ---- sessions -----------------------------------------------------------------------------

#[tokio::test]
async fn an_account_s_sessions_are_listed_a_page_at_a_time_and_ended_all_at_once() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let mut logins = Vec::new();
    for _ in 0..3 {
        logins.push(app.login_user(&user).await);
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    let bob = app.register_user("bob@example.org").await;
    let bobs = app.login_user(&bob).await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/sessions/", user.id);

    let first = admin.get(&format!("{path}?limit=2")).await;
    let next = first.body["next"].as_str().expect("a cursor").to_owned();
    let second = admin.get(&format!("{path}?limit=2&after={next}")).await;
    let ended = admin.delete(&path).await;
    let after = admin.get(&path).await;
    let missing = admin.get("/admin/users/999999/sessions/").await;

    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let session = &first.body["results"][0];
    assert_eq!(
        session.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "created", "last_seen", "user_agent", "ip"]
    );
    let listed: Vec<&Value> = first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["results"].as_array().unwrap())
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(
        listed[0]["created"].as_str() >= listed[2]["created"].as_str(),
        "newest first"
    );
    assert_eq!(second.body["next"], Value::Null);
    ended.assert(
        StatusCode::OK,
        json!({"success": "All sessions ended.", "ended": 3}),
    );
    assert_eq!(after.body, json!({"results": [], "next": null}));
    for tokens in &logins {
        app.refresh(&tokens.refresh)
            .await
            .assert_refresh_token_refused();
    }
    missing.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    assert_eq!(app.get_me(&bobs.access).await.status, StatusCode::OK);
    // Ending sessions is no deactivation: the owner logs in again.
    app.login_user(&user).await;
}

#[tokio::test]
async fn one_session_of_any_account_is_ended_by_its_id() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let kept = app.login_user(&user).await;
    let admin = AdminApi::of(&app);
    let sid = app.claims_of(&tokens.access)["sid"]
        .as_str()
        .expect("the session id")
        .to_owned();

    let ended = admin.delete(&format!("/admin/sessions/{sid}/")).await;
    let again = admin.delete(&format!("/admin/sessions/{sid}/")).await;
    let not_an_id = admin.delete("/admin/sessions/not-a-uuid/").await;

    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
    again.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    not_an_id.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    app.get_me(&tokens.access)
        .await
        .assert_access_token_refused();
    app.refresh(&tokens.refresh)
        .await
        .assert_refresh_token_refused();
    assert_eq!(app.get_me(&kept.access).await.status, StatusCode::OK);
}

// ---- the audit log ------------------------------------------------------------------------

/// The rows of `all` after the first `seen`, as `(event, actor, detail)`.
fn since(all: &[(String, String, Value)], seen: usize) -> Vec<(&str, &str, &Value)> {
    all[seen..]
        .iter()
        .map(|(event, actor, detail)| (event.as_str(), actor.as_str(), detail))
        .collect()
}

#[tokio::test]
async fn every_admin_change_is_recorded_with_the_admin_as_its_actor_in_its_transaction() {
    let app = spawn_app().await;
    let (user, _) = app.register_and_login().await;
    let admin = AdminApi::of(&app);
    let path = format!("/admin/users/{}/", user.id);
    let seen = app.audit_of(user.id).await.len();

    admin
        .patch(
            &path,
            json!({"username": "Ann Lee", "email": "ann@example.org"}),
        )
        .await;
    admin.patch(&path, json!({"username": "Ann Lee"})).await;
    admin.patch(&path, json!({"is_active": false})).await;
    admin.patch(&path, json!({"is_active": true})).await;
    let second = app.login_user(&user).await;
    let sid = app.claims_of(&second.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.delete(&format!("/admin/sessions/{sid}/")).await;
    app.login_user(&user).await;
    admin.delete(&format!("{path}sessions/")).await;
    admin.post(&format!("{path}unlock/")).await;

    let all = app.audit_of(user.id).await;
    assert_eq!(
        since(&all, seen),
        [
            ("profile.updated", "admin", &json!({"fields": ["username"]})),
            ("user.deactivated", "admin", &Value::Null),
            ("session.ended", "admin", &json!({"reason": "deactivated"})),
            ("user.activated", "admin", &Value::Null),
            ("login.succeeded", "user", &Value::Null),
            ("session.ended", "admin", &json!({"reason": "admin"})),
            ("login.succeeded", "user", &Value::Null),
            ("session.ended", "admin", &json!({"reason": "admin"})),
            ("throttle.cleared", "admin", &all[all.len() - 1].2),
        ],
        "an unchanged field records nothing: {all:#?}"
    );
    assert!(all[all.len() - 1].2["buckets"].is_u64(), "{all:#?}");
}

#[tokio::test]
async fn a_deleted_account_s_events_keep_its_id_and_are_marked_erased() {
    let app = spawn_app().await;
    let (user, _) = app.register_and_login().await;
    let other = app.register_user("bob@example.org").await;
    let admin = AdminApi::of(&app);

    let deleted = admin.delete(&format!("/admin/users/{}/", user.id)).await;

    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let rows = app.audit_of(user.id).await;
    assert_eq!(
        rows.iter()
            .map(|(event, ..)| event.as_str())
            .collect::<Vec<_>>(),
        ["user.registered", "login.succeeded", "user.deleted"]
    );
    assert_eq!(rows[2].1, "admin");
    assert!(
        rows.iter().all(|(.., detail)| detail["erased"] == true),
        "{rows:#?}"
    );
    let others = app.audit_of(other.id).await;
    assert!(
        others
            .iter()
            .all(|(.., detail)| detail.get("erased").is_none())
    );
}

#[tokio::test]
async fn an_admin_event_names_the_admin_request() {
    let app = spawn_app().await;
    let user = app.register_user("ann@example.org").await;
    let admin = AdminApi::of(&app);
    let request = Request::post(format!("/admin/users/{}/unlock/", user.id))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header("x-request-id", "back-office-42")
        .header(header::USER_AGENT, "back-office/1.0")
        .extension(ConnectInfo(
            "192.0.2.10:50000".parse::<SocketAddr>().unwrap(),
        ))
        .body(Body::empty())
        .unwrap();

    let unlocked = send_to(&admin.router, request).await;

    assert_eq!(unlocked.status, StatusCode::OK);
    let rows = app
        .admin
        .audit(AuditQuery {
            user_id: Some(user.id),
            limit: 1,
            ..AuditQuery::default()
        })
        .await;
    let row = &rows[0];
    assert_eq!(
        (
            row.event.as_str(),
            row.actor.as_str(),
            row.ip.as_deref(),
            row.user_agent.as_deref(),
            row.request_id.as_deref()
        ),
        (
            "throttle.cleared",
            "admin",
            Some("192.0.2.10"),
            Some("back-office/1.0"),
            Some("back-office-42")
        )
    );
}

#[tokio::test]
async fn the_audit_log_is_read_newest_first_filtered_and_a_page_at_a_time() {
    // Arrange
    let app = spawn_app().await;
    let api = AdminApi::of(&app);
    let ann = app.register_user("ann@example.org").await;
    let bob = app.register_user("bob@example.org").await;
    for _ in 0..3 {
        app.login_user(&ann).await;
    }
    app.login(&bob.email, "not bob's password").await;

    // Act
    let first = api
        .get(&format!(
            "/admin/audit/?user={}&event=login.succeeded&limit=2",
            ann.id
        ))
        .await;
    let next = first.body["next"].as_i64().expect("a next page");
    let second = api
        .get(&format!(
            "/admin/audit/?user={}&event=login.succeeded&after={next}",
            ann.id
        ))
        .await;
    let failed = api.get("/admin/audit/?event=login.failed&since=1h").await;

    // Assert
    let events = |page: &TestResponse| -> Vec<(String, i64)> {
        page.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["event"].as_str().unwrap().to_owned(),
                    row["id"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let (first_events, second_events) = (events(&first), events(&second));
    assert_eq!(first_events.len(), 2);
    assert_eq!(second_events.len(), 1);
    assert_eq!(second.body["next"], Value::Null);
    let ids: Vec<i64> = first_events
        .iter()
        .chain(&second_events)
        .map(|(_, id)| *id)
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
    assert_eq!(failed.body["results"][0]["user_id"], json!(bob.id));
    assert_eq!(failed.body["results"][0]["actor"], "user");
    assert_eq!(
        failed.body["results"][0]["detail"],
        json!({"reason": "bad_credentials", "count": 1})
    );
    assert!(
        failed.body["results"][0]["time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[tokio::test]
async fn an_audit_filter_out_of_range_is_a_field_error() {
    // Arrange
    let app = spawn_app().await;
    let api = AdminApi::of(&app);

    // Act
    let response = api
        .get("/admin/audit/?event=login.maybe&user=ann&since=soon")
        .await;

    // Assert
    response.assert(
        StatusCode::BAD_REQUEST,
        json!({
            "user": ["A valid integer is required."],
            "event": ["\"login.maybe\" is not a valid choice."],
            "since": ["Enter a duration such as 1h or 7days."],
        }),
    );
}
