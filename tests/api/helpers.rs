//! The test harness: a fresh service per test, requests sent straight into the router with
//! `tower::ServiceExt::oneshot` (no port, no network), and the checks every test shares.
//!
//! `TestApp` knows its backend only through `database_url`, so a PostgreSQL `spawn_app` can
//! hand out the same type; the few direct database checks branch on the URL's scheme.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use restful_auth::auth::Auth;
use restful_auth::auth::admin::AdminToken;
use restful_auth::auth::vault::MasterKey;
use restful_auth::config::{Argon2Cost, Config, MailRetry, SecretKey};
use restful_auth::domain::audit::{Actor, AuditQuery, Origin, Recorded};
use restful_auth::domain::clock::ManualClock;
use restful_auth::domain::settings::Setting;
use restful_auth::store::{PostgresStore, SqliteStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The signing key every test app uses unless a test removes it, so tests can forge tokens.
pub const SECRET: &str = "integration-tests-only-secret-0123456789abcdef";

/// A password that passes every validator for every address the tests use.
pub const PASSWORD: &str = "correct horse battery staple";

/// Argon2id, cheaply: the suite hashes thousands of passwords, and the service's cost (19 MiB,
/// two passes) made hashing most of its time. The test of the stored parameters sets
/// `Argon2Cost::OWASP` back.
pub const TEST_ARGON2_COST: Argon2Cost = Argon2Cost {
    memory_kib: 256,
    passes: 1,
};

pub const JSON: &str = "application/json; charset=utf-8";

/// Every method and path of the API that takes a request body or a bearer token.
pub const ENDPOINTS: [(&str, &str); 19] = [
    ("POST", "/api/register/"),
    ("POST", "/api/login/"),
    ("POST", "/api/refresh/"),
    ("POST", "/api/logout/"),
    ("GET", "/api/me/"),
    ("PUT", "/api/me/"),
    ("PATCH", "/api/me/"),
    ("POST", "/api/me/password/"),
    ("GET", "/api/sessions/"),
    ("POST", "/api/logout/all/"),
    ("GET", "/api/me/activity/"),
    ("POST", "/api/password/reset/"),
    ("POST", "/api/password/reset/confirm/"),
    ("POST", "/api/email/verify/"),
    ("POST", "/api/email/verify/confirm/"),
    ("GET", "/api/me/mfa/"),
    ("POST", "/api/me/mfa/totp/"),
    ("DELETE", "/api/me/mfa/totp/"),
    ("POST", "/api/me/mfa/totp/confirm/"),
];

/// Mail is tried three times, 50 ms and 100 ms apart: a suite whose SMTP server is down
/// should not wait the service's minute.
pub const TEST_MAIL_RETRY: MailRetry = MailRetry {
    attempts: 3,
    first_delay: std::time::Duration::from_millis(50),
};

/// One service on a database of its own.
pub struct TestApp {
    pub router: Router,
    /// The routes inside `router`, without its request layers: a table that can be listed.
    pub routes: Router,
    /// The administrator's side of the same service (what `restful-auth user …` does).
    pub admin: Arc<dyn Admin>,
    /// The configuration the service was built from (and a second instance would be).
    pub config: Config,
    /// The signing key, when the test configured one.
    pub secret: Option<Vec<u8>>,
    /// The service's clock: a test advances it instead of sleeping. Shared by every instance
    /// of the app.
    pub clock: Arc<ManualClock>,
    /// Keeps the database alive (a temporary directory, or later a throw-away PostgreSQL
    /// database) for as long as the test holds the app.
    _database: Box<dyn Any + Send + Sync>,
}

/// An answer, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub body: Value,
    pub bytes: Vec<u8>,
}

/// What a successful login or refresh hands out.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub password: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A fresh database of its own — a SQLite file in a temporary directory, or a PostgreSQL
/// database when `TEST_DATABASE_URL` names a server — configured by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (url, database): (String, Box<dyn Any + Send + Sync>) = match crate::pg::server_url() {
        Some(server) => {
            let fresh = crate::pg::FreshDatabase::create(server).await;
            (fresh.url.clone(), Box::new(fresh))
        }
        None => {
            let directory = tempfile::tempdir().expect("a temporary directory");
            let path = directory.path().join("restful_auth.sqlite3");
            (format!("sqlite://{}", path.display()), Box::new(directory))
        }
    };
    let mut config = Config::with_database(url);
    config.secret_key = Some(SECRET.parse::<SecretKey>().expect("a long enough test key"));
    config.argon2_cost = TEST_ARGON2_COST;
    config.mail_retry = TEST_MAIL_RETRY;
    if crate::pg::server_url().is_some() {
        // PostgreSQL has no default master key: every instance must be given the same one.
        config.master_key = Some(MasterKey::generate());
    }
    configure(&mut config);
    let clock = Arc::new(ManualClock::starting_now());
    let (router, routes, admin) = build_router(&config, clock.clone()).await;
    TestApp {
        router,
        routes,
        admin,
        clock,
        secret: config.secret_key.as_ref().map(|key| key.expose().to_vec()),
        config,
        _database: database,
    }
}

/// The service on `config`'s database, with a pool of its own, as one instance of several.
async fn build_router(config: &Config, clock: Arc<ManualClock>) -> Service {
    if config.database_url.starts_with("sqlite://") {
        let store = SqliteStore::open(&config.database_url, config.sqlite_settings()).await;
        service_on(store.expect("the test database opens"), config, clock).await
    } else {
        let store = PostgresStore::open(&config.database_url, &config.pool_settings()).await;
        service_on(store.expect("the test database opens"), config, clock).await
    }
}

/// Why the service does not start on `config`'s database: the message it stops with.
pub async fn refused_start(config: &Config) -> String {
    async fn refused<S: Store>(store: S, config: &Config) -> String {
        match Auth::new(store, config).await {
            Ok(_) => panic!("the service started"),
            Err(error) => error.to_string(),
        }
    }
    if config.database_url.starts_with("sqlite://") {
        let store = SqliteStore::open(&config.database_url, config.sqlite_settings()).await;
        refused(store.expect("the test database opens"), config).await
    } else {
        let store = PostgresStore::open(&config.database_url, &config.pool_settings()).await;
        refused(store.expect("the test database opens"), config).await
    }
}

async fn service_on<S: Store>(store: S, config: &Config, clock: Arc<ManualClock>) -> Service {
    let auth = Arc::new(
        Auth::with_clock(store, config, clock)
            .await
            .expect("the service starts on the test database"),
    );
    let options = restful_auth::http::Options::from_config(config);
    (
        restful_auth::app::router_with(auth.clone(), &options),
        restful_auth::app::routes(auth.clone(), &options),
        auth,
    )
}

/// The router, its route table, and the administrator's handle on the same service.
type Service = (Router, Router, Arc<dyn Admin>);

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The administrator's operations (what the command line does), whatever the store behind them.
pub trait Admin: Send + Sync {
    /// Activates or deactivates an account (`restful-auth user activate|deactivate`).
    fn set_active(&self, user_id: i64, active: bool) -> Pending<'_, ()>;

    /// Stores a run-time setting (`restful-auth settings set NAME VALUE`).
    fn set_setting<'a>(&'a self, name: &'a str, value: &'a str) -> Pending<'a, ()>;

    /// Adds a signing key to the database; `None` when the key comes from the configuration.
    fn rotate_signing_key(&self, immediately: bool) -> Pending<'_, Option<String>>;

    /// Retires a signing key (`restful-auth keys retire KID`): whether it was in use.
    fn retire_signing_key<'a>(&'a self, kid: &'a str) -> Pending<'a, bool>;

    /// Every stored key's id and state, newest first (`restful-auth keys list`).
    fn signing_key_states(&self) -> Pending<'_, Vec<(String, String)>>;

    /// Seals the stored secrets under `new_key` (`restful-auth keys rewrap`).
    fn rewrap<'a>(&'a self, new_key: &'a MasterKey) -> Pending<'a, ()>;

    /// Picks up what the database holds now, as every instance does every few seconds.
    fn reload(&self) -> Pending<'_, ()>;

    /// Sets a new password, ending every session (`restful-auth user set-password`).
    fn set_password<'a>(&'a self, email: &'a str, password: &'a str) -> Pending<'a, ()>;

    /// Deletes what housekeeping deletes after `retention` (`restful-auth purge`).
    fn purge(&self, retention: std::time::Duration) -> Pending<'_, ()>;

    /// The audit log's rows that `query` selects, newest first (`restful-auth audit`).
    fn audit(&self, query: AuditQuery) -> Pending<'_, Vec<Recorded>>;

    /// Resolves once every mail asked for so far is sent or given up.
    fn mail_settled(&self) -> Pending<'_, ()>;

    /// A one-time reset link for `email` (`restful-auth user reset-link`).
    fn reset_link<'a>(&'a self, email: &'a str) -> Pending<'a, Option<String>>;

    /// The admin API of the same service (what `--admin-bind` serves), guarded by `token`.
    fn admin_api(self: Arc<Self>, token: Option<&str>) -> Router;
}

/// The operator's commands act as the command line does.
const OPERATOR: Origin = Origin::of(Actor::Cli);

impl<S: Store> Admin for Auth<S> {
    fn set_active(&self, user_id: i64, active: bool) -> Pending<'_, ()> {
        Box::pin(async move {
            let found = Auth::set_active(self, user_id, active, OPERATOR)
                .await
                .expect("the store answers");
            assert!(found, "user {user_id} exists");
        })
    }

    fn set_setting<'a>(&'a self, name: &'a str, value: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let setting: Setting = name.parse().expect("a known setting");
            Auth::set_setting(self, setting, value)
                .await
                .expect("a valid value");
        })
    }

    fn rotate_signing_key(&self, immediately: bool) -> Pending<'_, Option<String>> {
        Box::pin(async move {
            Auth::rotate_signing_key(self, immediately, OPERATOR)
                .await
                .expect("the store answers")
                .map(|rotated| rotated.kid)
        })
    }

    fn signing_key_states(&self) -> Pending<'_, Vec<(String, String)>> {
        Box::pin(async move {
            Auth::signing_key_list(self)
                .await
                .expect("the store answers")
                .expect("keys kept in the database")
                .into_iter()
                .map(|key| (key.kid, key.state.name().to_owned()))
                .collect()
        })
    }

    fn retire_signing_key<'a>(&'a self, kid: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            Auth::retire_signing_key(self, kid, OPERATOR)
                .await
                .expect("the store answers")
                .expect("keys kept in the database")
        })
    }

    fn rewrap<'a>(&'a self, new_key: &'a MasterKey) -> Pending<'a, ()> {
        Box::pin(async move {
            Auth::rewrap(self, new_key)
                .await
                .expect("every secret opens with the current key");
        })
    }

    fn reload(&self) -> Pending<'_, ()> {
        Box::pin(async move { Auth::reload(self).await.expect("the store answers") })
    }

    fn set_password<'a>(&'a self, email: &'a str, password: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            use restful_auth::auth::password::{NewPassword, Password};
            let account = Auth::account(self, email)
                .await
                .expect("the store answers")
                .expect("the account exists");
            let password =
                NewPassword::new(Password::new(password.to_owned())).expect("a bounded password");
            Auth::set_password(self, &account, password, OPERATOR)
                .await
                .expect("the password is set");
        })
    }

    fn purge(&self, retention: std::time::Duration) -> Pending<'_, ()> {
        Box::pin(async move {
            Auth::housekeeping(self, retention)
                .await
                .expect("the store answers");
        })
    }

    fn audit(&self, query: AuditQuery) -> Pending<'_, Vec<Recorded>> {
        Box::pin(async move { Auth::audit(self, query).await.expect("the store answers") })
    }

    fn mail_settled(&self) -> Pending<'_, ()> {
        Box::pin(Auth::mail_settled(self))
    }

    fn reset_link<'a>(&'a self, email: &'a str) -> Pending<'a, Option<String>> {
        Box::pin(async move {
            Auth::reset_link(self, email)
                .await
                .expect("the store answers")
        })
    }

    fn admin_api(self: Arc<Self>, token: Option<&str>) -> Router {
        let token = token.map(|token| AdminToken::new(token).expect("a token"));
        restful_auth::http::admin::router(self, token)
    }
}

impl TestApp {
    /// Another instance of the service on the same database, as behind a load balancer; it
    /// lives no longer than `self`, which keeps the database.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(|_| {}).await
    }

    /// Another instance on the same database, its configuration changed by `configure`.
    pub async fn another_instance_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        configure(&mut config);
        let (router, routes, admin) = build_router(&config, self.clock.clone()).await;
        TestApp {
            router,
            routes,
            admin,
            clock: self.clock.clone(),
            config,
            secret: self.secret.clone(),
            _database: Box::new(()),
        }
    }

    /// Deactivates an account the way an administrator does.
    pub async fn deactivate(&self, user_id: i64) {
        self.admin.set_active(user_id, false).await;
    }

    /// Activates an account again the way an administrator does.
    pub async fn activate(&self, user_id: i64) {
        self.admin.set_active(user_id, true).await;
    }

    // ---- sending ---------------------------------------------------------------------

    /// Sends `request` and checks the media type the contract gives every answer.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = send_to(&self.router, request).await;
        assert_eq!(
            response.headers.get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(JSON)),
            "every answer is {JSON}; got {response:?}"
        );
        response
    }

    /// Sends `request` without checking the media type of the answer (HTML pages).
    pub async fn send_raw(&self, request: Request<Body>) -> TestResponse {
        send_to(&self.router, request).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder
                    .header(header::CONTENT_TYPE, content_type)
                    .header(header::CONTENT_LENGTH, bytes.len());
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("a valid request"))
            .await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, None, None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.post_body(path, "application/json", body.to_string())
            .await
    }

    /// Posts the same JSON body `times` times at once, each from a task of its own.
    pub async fn post_json_concurrently(
        &self,
        path: &str,
        body: &Value,
        times: usize,
    ) -> Vec<TestResponse> {
        let attempts: Vec<_> = (0..times)
            .map(|_| {
                let router = self.router.clone();
                let request = Request::post(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .expect("a valid request");
                tokio::spawn(async move { send_to(&router, request).await })
            })
            .collect();
        let mut responses = Vec::with_capacity(times);
        for attempt in attempts {
            responses.push(attempt.await.expect("the request's task ends"));
        }
        responses
    }

    pub async fn post_form(&self, path: &str, body: &str) -> TestResponse {
        self.post_body(path, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_body(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> TestResponse {
        self.request(Method::POST, path, None, Some((content_type, body.into())))
            .await
    }

    pub async fn get_me(&self, token: &str) -> TestResponse {
        self.request(Method::GET, "/api/me/", Some(token), None)
            .await
    }

    pub async fn put_me(&self, token: &str, body: &Value) -> TestResponse {
        let body = ("application/json", body.to_string().into_bytes());
        self.request(Method::PUT, "/api/me/", Some(token), Some(body))
            .await
    }

    pub async fn patch_me(&self, token: &str, body: &Value) -> TestResponse {
        let body = ("application/json", body.to_string().into_bytes());
        self.request(Method::PATCH, "/api/me/", Some(token), Some(body))
            .await
    }

    /// `/api/me/` with `Authorization` set to exactly `authorization`.
    pub async fn get_me_with_authorization(&self, authorization: &[u8]) -> TestResponse {
        let request = Request::get("/api/me/")
            .header(header::AUTHORIZATION, authorization)
            .body(Body::empty())
            .expect("a valid request");
        self.send(request).await
    }

    // ---- the API, step by step -----------------------------------------------------------

    pub async fn register(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/register/",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/login/",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> TestResponse {
        self.post_json("/api/refresh/", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn logout(&self, refresh_token: &str) -> TestResponse {
        self.post_json("/api/logout/", &json!({"refresh_token": refresh_token}))
            .await
    }

    /// Registers `email` with [`PASSWORD`]; the registration must succeed.
    pub async fn register_user(&self, email: &str) -> TestUser {
        let response = self.register(email, PASSWORD).await;
        assert_eq!(response.status, StatusCode::CREATED, "{response:?}");
        TestUser {
            id: response.body["id"].as_i64().expect("an integer id"),
            email: response.body["email"]
                .as_str()
                .expect("the email")
                .to_owned(),
            password: PASSWORD.to_owned(),
        }
    }

    /// Logs `user` in; the login must succeed.
    pub async fn login_user(&self, user: &TestUser) -> Tokens {
        let response = self.login(&user.email, &user.password).await;
        tokens_of(&response)
    }

    /// Refreshes with `refresh_token`; the refresh must succeed.
    pub async fn refresh_ok(&self, refresh_token: &str) -> Tokens {
        let response = self.refresh(refresh_token).await;
        tokens_of(&response)
    }

    pub async fn register_and_login(&self) -> (TestUser, Tokens) {
        let user = self.register_user("ann@example.org").await;
        let tokens = self.login_user(&user).await;
        (user, tokens)
    }

    // ---- tokens ------------------------------------------------------------------------

    fn secret(&self) -> &[u8] {
        self.secret
            .as_deref()
            .expect("this test app was configured with a secret key")
    }

    /// The claims of an access token, checked with the configured key as the service does.
    pub fn claims_of(&self, access_token: &str) -> Value {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&self.config.audience);
        jsonwebtoken::decode::<Value>(
            access_token,
            &DecodingKey::from_secret(self.secret()),
            &validation,
        )
        .expect("an access token signed with the configured key")
        .claims
    }

    /// The claims of any JWT, unverified: what a token says, whoever signed it.
    pub fn claims_of_unverified(&self, token: &str) -> Value {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).expect("a JWT has a payload");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        serde_json::from_slice(&json).expect("JSON claims")
    }

    /// A token over `claims` signed with the configured key, with the header of `template`
    /// (a token the service issued: its algorithm, type and key id), as a peer service holding
    /// the key would make one.
    pub fn forge_like(&self, template: &str, claims: &Value) -> String {
        forge(&header_of(template), claims, self.secret())
    }

    /// A token over `claims` with `header`, signed with the configured key.
    pub fn forge_with_header(&self, header: &Header, claims: &Value) -> String {
        forge(header, claims, self.secret())
    }

    /// The audit rows of `user_id`, oldest first, as `(event, actor, detail)`.
    pub async fn audit_of(&self, user_id: i64) -> Vec<(String, String, Value)> {
        let mut rows = self
            .admin
            .audit(AuditQuery {
                user_id: Some(user_id),
                limit: 100,
                ..AuditQuery::default()
            })
            .await;
        rows.reverse();
        rows.into_iter()
            .map(|row| (row.event, row.actor, row.detail))
            .collect()
    }

    // ---- the database, directly ----------------------------------------------------------

    /// Runs `sql` (a statement or a query) on the test database, as another tool on it would;
    /// every cell comes back as text bytes (numbers in decimal) or raw bytes.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<Vec<u8>>>> {
        let url = &self.config.database_url;
        match url.strip_prefix("sqlite://") {
            Some(path) => sqlite_query(path, sql),
            None => crate::pg::query(url, sql),
        }
    }

    fn single(&self, sql: &str) -> String {
        let rows = self.query(sql);
        let cell = rows
            .first()
            .and_then(|row| row.first())
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{sql} gave a value"));
        String::from_utf8(cell).expect("a text value")
    }

    /// Flips `is_active` in the database alone, as another tool on the database might.
    pub fn set_is_active_column(&self, user_id: i64, active: bool) {
        let active = if active { "TRUE" } else { "FALSE" };
        let changed = self.query(&format!(
            "UPDATE users SET is_active = {active} WHERE id = {user_id} RETURNING id"
        ));
        assert_eq!(changed.len(), 1, "user {user_id} exists");
    }

    pub fn delete_user(&self, user_id: i64) {
        let deleted = self.query(&format!(
            "DELETE FROM users WHERE id = {user_id} RETURNING id"
        ));
        assert_eq!(deleted.len(), 1, "user {user_id} exists");
    }

    pub fn count_rows(&self, table: &str) -> i64 {
        self.single(&format!("SELECT count(*) FROM {table}"))
            .parse()
            .expect("a count")
    }

    pub fn password_hash_of(&self, user_id: i64) -> String {
        self.single(&format!(
            "SELECT password_hash FROM users WHERE id = {user_id}"
        ))
    }

    /// `(token_hash, issued_at, expires_at)` of every refresh token ever issued.
    pub fn stored_refresh_tokens(&self) -> Vec<(Vec<u8>, i64, i64)> {
        let number = |cell: &Option<Vec<u8>>| -> i64 {
            String::from_utf8_lossy(cell.as_deref().expect("a value"))
                .parse()
                .expect("a number")
        };
        self.query("SELECT token_hash, issued_at, expires_at FROM refresh_tokens")
            .iter()
            .map(|row| {
                (
                    row[0].clone().expect("a hash"),
                    number(&row[1]),
                    number(&row[2]),
                )
            })
            .collect()
    }

    /// Every value stored in any column of any table, as text or bytes.
    pub fn every_stored_value(&self) -> Vec<Vec<u8>> {
        let tables = if self.config.database_url.starts_with("sqlite://") {
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        } else {
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        };
        self.query(tables)
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .flat_map(|table| {
                let table = String::from_utf8(table).expect("a table name");
                self.query(&format!("SELECT * FROM \"{table}\""))
            })
            .flatten()
            .flatten()
            .collect()
    }

    /// The bytes of every file of the database (main file, write-ahead log, shared memory);
    /// on PostgreSQL, whose files are the server's, every stored value.
    pub fn database_files(&self) -> Vec<u8> {
        let Some(path) = self.config.database_url.strip_prefix("sqlite://") else {
            return self.every_stored_value().concat();
        };
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::read(format!("{path}{suffix}")).ok())
            .flatten()
            .collect()
    }

    // ---- a real server -------------------------------------------------------------------

    /// Serves the app on a local port, for the few tests that need a real HTTP connection.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let address = listener.local_addr().expect("the bound address");
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }
}

/// Sends `request` to `router` (another router than the app's: the admin API).
pub async fn send_to(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body is readable")
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        bytes,
    }
}

/// The header of a token.
pub fn header_of(token: &str) -> Header {
    jsonwebtoken::decode_header(token).expect("a JWT header")
}

pub fn forge(header: &Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).expect("a signed token")
}

/// The tokens of a successful login or refresh.
pub fn tokens_of(response: &TestResponse) -> Tokens {
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    Tokens {
        access: response.body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
        refresh: response.body["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    }
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Base64url without padding (RFC 7515 §2), for hand-made tokens.
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---- assertions ------------------------------------------------------------------------------

impl TestResponse {
    /// The exact status and the exact JSON body.
    #[track_caller]
    pub fn assert(&self, status: StatusCode, body: Value) {
        assert_eq!(
            (self.status, &self.body),
            (status, &body),
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.bytes)
        );
    }

    /// A 401 with `body` and the challenge the contract puts on every 401.
    #[track_caller]
    pub fn assert_unauthorized(&self, body: Value) {
        self.assert(StatusCode::UNAUTHORIZED, body);
        assert_eq!(
            self.headers.get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer realm=\"api\"")),
            "every 401 carries the Bearer challenge"
        );
    }

    /// `/api/me/` refusing an access token.
    #[track_caller]
    pub fn assert_access_token_refused(&self) {
        self.assert_unauthorized(json!({
            "detail": "Given token not valid for any token type",
            "code": "token_not_valid",
        }));
    }

    /// `/api/refresh/` or `/api/logout/` refusing a refresh token.
    #[track_caller]
    pub fn assert_refresh_token_refused(&self) {
        self.assert_unauthorized(json!({
            "detail": "Token is invalid or expired",
            "code": "token_not_valid",
        }));
    }

    #[track_caller]
    pub fn assert_not_authenticated(&self) {
        self.assert_unauthorized(json!({
            "detail": "Authentication credentials were not provided."
        }));
    }

    #[track_caller]
    pub fn assert_invalid_credentials(&self) {
        self.assert_unauthorized(json!({
            "detail": "No active account found with the given credentials"
        }));
    }

    /// The methods of the `Allow` header, upper-cased and sorted.
    pub fn allowed_methods(&self) -> Vec<String> {
        let allow = self
            .headers
            .get(header::ALLOW)
            .expect("a 405 names the allowed methods")
            .to_str()
            .expect("a readable Allow header");
        let mut methods: Vec<String> = allow
            .split(',')
            .map(|method| method.trim().to_ascii_uppercase())
            .filter(|method| !method.is_empty())
            .collect();
        methods.sort();
        methods
    }
}

fn sqlite_query(path: &str, sql: &str) -> Vec<Vec<Option<Vec<u8>>>> {
    let connection = rusqlite::Connection::open(path).expect("the test database opens");
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .expect("a busy timeout");
    connection
        .execute_batch("PRAGMA foreign_keys = ON;")
        .expect("foreign keys on");
    let mut statement = connection.prepare(sql).expect("the statement is valid");
    let columns = statement.column_count();
    let mut rows = statement.query([]).expect("the statement runs");
    let mut found = Vec::new();
    while let Some(row) = rows.next().expect("a row") {
        found.push(
            (0..columns)
                .map(|column| match row.get_ref(column).expect("a value") {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(number) => {
                        Some(number.to_string().into_bytes())
                    }
                    rusqlite::types::ValueRef::Real(number) => {
                        Some(number.to_string().into_bytes())
                    }
                    rusqlite::types::ValueRef::Text(bytes)
                    | rusqlite::types::ValueRef::Blob(bytes) => Some(bytes.to_vec()),
                })
                .collect(),
        );
    }
    found
}
