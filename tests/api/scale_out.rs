//! Several instances on one database, as behind a load balancer: each test builds a second
//! router with a pool of its own on the first one's database. On PostgreSQL (the deployment
//! this is for) also: concurrent migrations, and recovery from lost connections.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::pg;

/// Sends a request to one particular instance.
async fn call(
    instance: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = instance
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn refresh_on(instance: &Router, refresh_token: &str) -> (StatusCode, Value) {
    call(
        instance,
        "POST",
        "/api/refresh/",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn me_on(instance: &Router, access_token: &str) -> StatusCode {
    call(instance, "GET", "/api/me/", Some(access_token), None)
        .await
        .0
}

#[tokio::test]
async fn a_session_started_on_one_instance_refreshes_on_another() {
    let a = spawn_app().await;
    let b = a.another_instance().await.router;
    let (_, tokens) = a.register_and_login().await;

    let (status, renewed) = refresh_on(&b, &tokens.refresh).await;

    assert_eq!(status, StatusCode::OK, "{renewed}");
    let access = renewed["access_token"].as_str().unwrap();
    assert_eq!(me_on(&a.router, access).await, StatusCode::OK);
    assert_eq!(me_on(&b, &tokens.access).await, StatusCode::OK);
}

#[tokio::test]
async fn logout_on_one_instance_ends_the_access_token_on_the_other() {
    let a = spawn_app().await;
    let b = a.another_instance().await.router;
    let (_, tokens) = a.register_and_login().await;
    assert_eq!(me_on(&a.router, &tokens.access).await, StatusCode::OK);

    let (status, _) = call(
        &b,
        "POST",
        "/api/logout/",
        None,
        Some(json!({"refresh_token": tokens.refresh})),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    if a.config.database_url.starts_with("sqlite:") {
        // On SQLite an instance answers from the sessions it keeps in memory: another
        // process's logout reaches them at its next reload (within `--reload-interval`).
        assert_eq!(me_on(&a.router, &tokens.access).await, StatusCode::OK);
        a.admin.reload().await;
    }
    assert_eq!(
        me_on(&a.router, &tokens.access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh_on(&a.router, &tokens.refresh).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_key_generated_by_the_first_instance_signs_for_the_second() {
    let a = spawn_app_with(|config| config.secret_key = None).await;
    let b = a.another_instance().await.router;
    let user = a.register_user("ann@example.org").await;

    let (status, tokens) = call(
        &b,
        "POST",
        "/api/login/",
        None,
        Some(json!({"email": user.email, "password": user.password})),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me_on(&a.router, tokens["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_across_instances_have_one_winner() {
    let a = spawn_app().await;
    let b = a.another_instance().await.router;
    let (_, tokens) = a.register_and_login().await;

    let attempts: Vec<_> = (0..16)
        .map(|n| {
            let instance = if n % 2 == 0 {
                a.router.clone()
            } else {
                b.clone()
            };
            let token = tokens.refresh.clone();
            tokio::spawn(async move { refresh_on(&instance, &token).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }

    let winners = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert_eq!(winners, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::UNAUTHORIZED)
    );
}

/// The PostgreSQL server under test, or `None` (said loudly) when there is none.
fn postgres_or_skip(test: &str) -> Option<&'static str> {
    let server = pg::server_url();
    if server.is_none() {
        eprintln!("SKIPPED {test}: set TEST_DATABASE_URL to run it against PostgreSQL");
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_migrate_the_database_once() {
    let Some(server) = postgres_or_skip("instances_starting_at_once_migrate_the_database_once")
    else {
        return;
    };
    let fresh = pg::FreshDatabase::create(server).await;
    let settings = restful_auth::config::Config::with_database(&fresh.url).pool_settings();

    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, settings) = (fresh.url.clone(), settings.clone());
            tokio::spawn(async move {
                restful_auth::store::PostgresStore::open(&url, &settings)
                    .await
                    .map(drop)
            })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every instance starts");
    }

    let versions = pg::query(
        &fresh.url,
        "SELECT version FROM schema_migrations ORDER BY version",
    );
    let versions: Vec<String> = versions
        .into_iter()
        .map(|row| String::from_utf8(row[0].clone().unwrap()).unwrap())
        .collect();
    // One row per migration script, each once.
    let scripts = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    let expected: Vec<String> = (1..=scripts).map(|version| version.to_string()).collect();
    assert_eq!(versions, expected);
}

/// The database goes away (connections cut, new ones refused) and comes back.
#[tokio::test]
async fn while_the_database_is_unreachable_requests_get_503_and_then_recover_by_themselves() {
    let test = "while_the_database_is_unreachable_requests_get_503_and_then_recover_by_themselves";
    let Some(server) = postgres_or_skip(test) else {
        return;
    };
    let app: TestApp = spawn_app_with(|config| {
        config.database_connect_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let (_, tokens) = app.register_and_login().await;
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
    let database = pg::query(&app.config.database_url, "SELECT current_database()");
    let database = String::from_utf8(database[0][0].clone().unwrap()).unwrap();

    pg::query(
        server,
        &format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"),
    );
    pg::query(
        server,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ),
    );
    // pg_terminate_backend only signals: wait until the backends are gone.
    let alive = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'");
    for _ in 0..100 {
        if pg::query(server, &alive)[0][0].as_deref() == Some(b"0".as_slice()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut while_down = Vec::new();
    for _ in 0..3 {
        while_down.push(app.get_me(&tokens.access).await);
    }

    pg::query(
        server,
        &format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"),
    );
    let mut after = Vec::new();
    for _ in 0..20 {
        let answer = app.get_me(&tokens.access).await;
        after.push(answer.status);
        if answer.status == StatusCode::OK {
            break;
        }
    }

    for answer in &while_down {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(
            answer.body,
            json!({"detail": "Service temporarily unavailable, try again later."})
        );
        assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    }
    assert!(
        after
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE),
        "{after:?}"
    );
    assert_eq!(after.last(), Some(&StatusCode::OK), "recovered: {after:?}");
}
