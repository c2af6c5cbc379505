//! Property-based tests (RELIABILITY.md, part 2), with proptest: arbitrary requests never get a
//! 5xx; an access token verifies only if we issued it, unaltered; a refresh chain of any length
//! with any reuse leaves exactly one live token in a live session and none in an ended one.
//!
//! The fuzzing oracles of `fuzz/src/lib.rs` are compiled in here too: proptest drives them with
//! generated inputs, and the seed corpus and every input the fuzzer found are replayed, so CI
//! runs them on the stable toolchain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use restful_auth::auth::tokens::{Keyring, SigningKey};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ENDPOINTS, TestApp, TestResponse, base64_url, forge, now, spawn_app, spawn_app_with,
};

#[path = "../../fuzz/src/lib.rs"]
mod oracles;

/// Longest any one answer may take: past it, the service hangs.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Runs `test` on `cases` inputs from `strategy`, shrinking a failure to its smallest input.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    // `PROPTEST_CASES=10000 cargo test --test api properties::` for a deeper run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        // Failures are reported with their shrunk input; fixed ones become example tests.
        failure_persistence: None,
        ..Config::default()
    };
    match TestRunner::new(config).run(&strategy, test) {
        Ok(()) => println!("property {name}: {cases} cases passed"),
        Err(TestError::Fail(reason, input)) => {
            panic!("property {name} failed: {reason}\nminimal input: {input:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("property {name} aborted: {reason}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn send(app: &TestApp, request: Request<Body>) -> TestResponse {
    tokio::time::timeout(ANSWER_WITHIN, app.send(request))
        .await
        .expect("an answer in time: the service hung")
}

// ---- arbitrary requests ------------------------------------------------------------------------

const FIELDS: [&str; 7] = [
    "email",
    "password",
    "refresh_token",
    "username",
    "old_password",
    "new_password",
    "id",
];

/// Beside [`ENDPOINTS`]: a session of nobody's, a malformed id, a wrong method, no route.
const ODD_ROUTES: [(&str, &str); 4] = [
    (
        "DELETE",
        "/api/sessions/00000000-0000-4000-8000-000000000000/",
    ),
    ("DELETE", "/api/sessions/not-a-uuid"),
    ("PUT", "/api/login"),
    ("POST", "/api/nowhere/"),
];

/// Text a client might send: addresses, UUIDs, passwords, and any Unicode at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._%+-]{0,12}@[a-zA-Z0-9-]{0,10}\\.[a-z]{0,4}",
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        "[a-z ]{0,30}",
        any::<String>(),
        "\\PC{0,40}",
        Just(String::new()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS.as_slice()).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A body and the `Content-Type` it is sent with.
fn body() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    let json_object = || {
        prop::collection::vec((field_name(), json_value()), 0..5).prop_map(|pairs| {
            Value::Object(pairs.into_iter().collect())
                .to_string()
                .into_bytes()
        })
    };
    let mangled = (json_object(), any::<Index>(), any::<u8>(), any::<bool>()).prop_map(
        |(mut bytes, at, byte, truncate)| {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                if truncate {
                    bytes.truncate(at);
                } else {
                    bytes[at] = byte;
                }
            }
            bytes
        },
    );
    let form = prop::collection::vec((field_name(), text()), 0..5).prop_map(|pairs| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    });
    let bytes = prop_oneof![
        3 => json_object(),
        2 => mangled,
        1 => json_value().prop_map(|value| value.to_string().into_bytes()),
        2 => form,
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        2 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => prop::sample::select(oracles::CONTENT_TYPES).prop_map(|t| t.map(str::to_owned)),
        1 => "[ -~]{0,40}".prop_map(Some),
    ];
    (content_type, bytes)
}

/// Who the request claims to be.
#[derive(Debug, Clone)]
enum Credentials {
    None,
    /// The current access token of a logged-in user.
    Valid,
    Header(String),
}

fn credentials() -> impl Strategy<Value = Credentials> {
    prop_oneof![
        1 => Just(Credentials::None),
        3 => Just(Credentials::Valid),
        1 => "Bearer [!-~]{0,60}".prop_map(Credentials::Header),
        1 => "[ -~]{0,60}".prop_map(Credentials::Header),
    ]
}

#[test]
fn arbitrary_requests_never_get_a_server_error() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app());
    let user = runtime.block_on(app.register_user("ann@example.org"));
    let access = Mutex::new(runtime.block_on(app.login_user(&user)).access);
    let answers = Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let strategy = (
        prop::sample::select(
            ENDPOINTS
                .iter()
                .chain(&ODD_ROUTES)
                .copied()
                .collect::<Vec<_>>(),
        ),
        credentials(),
        body(),
    );

    check(
        "arbitrary requests",
        256,
        strategy,
        |((method, path), who, (content_type, body))| {
            let mut builder = Request::builder().method(method).uri(path);
            match &who {
                Credentials::None => {}
                Credentials::Valid => {
                    let token = access.lock().unwrap().clone();
                    builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
                }
                Credentials::Header(value) => {
                    builder = builder.header(header::AUTHORIZATION, value)
                }
            }
            if let Some(content_type) = &content_type
                && let Ok(value) = axum::http::HeaderValue::from_str(content_type)
            {
                builder = builder.header(header::CONTENT_TYPE, value);
            }
            let response = runtime.block_on(send(&app, builder.body(Body::from(body)).unwrap()));
            *answers
                .lock()
                .unwrap()
                .entry(response.status.as_u16())
                .or_default() += 1;

            prop_assert!(
                response.status.as_u16() < 500,
                "{method} {path}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.bytes)
            );
            if response.status.is_success() {
                prop_assert!(!response.body.is_null(), "{method} {path}: {response:?}");
            } else {
                prop_assert!(response.body.is_object(), "{method} {path}: {response:?}");
            }
            if matches!(who, Credentials::Valid) && response.status.is_success() {
                // Logging out everywhere ends the session the other cases use: start another.
                if path == "/api/logout/all/" {
                    *access.lock().unwrap() = runtime.block_on(app.login_user(&user)).access;
                }
            }
            Ok(())
        },
    );
    println!(
        "arbitrary requests, by answer: {:?}",
        answers.lock().unwrap()
    );
}

// ---- access tokens -----------------------------------------------------------------------------

const SECRET: &[u8] = b"property-tests-only-secret-0123456789";

/// What an attacker does to a token we issued, or makes from nothing.
#[derive(Debug, Clone)]
enum Forgery {
    /// Characters replaced at some positions (any of them: header, claims, signature).
    Replace(Vec<(Index, char)>),
    Truncate(Index),
    Insert(Index, char),
    /// One part (header, claims, signature) replaced by base64url of other bytes.
    Segment(usize, Vec<u8>),
    /// The header and claims of one token with the signature of another.
    Splice(Index),
    /// Claims of the attacker's choosing, signed with a key of the attacker's choosing.
    Signed(Value, Vec<u8>),
    /// Claims of the attacker's choosing under `alg: none`.
    Unsigned(Value),
    Arbitrary(String),
}

fn forgery() -> impl Strategy<Value = Forgery> {
    let base64url = prop::sample::select(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
            .chars()
            .collect::<Vec<_>>(),
    );
    let claims = (
        prop::sample::select(vec!["access", "refresh", "Access", ""]),
        any::<i64>(),
        -100i64..100_000,
    )
        .prop_map(|(token_type, user_id, lifetime)| {
            json!({"token_type": token_type, "user_id": user_id, "sid": Uuid::nil(),
                   "jti": "x", "iat": now(), "exp": now() + lifetime})
        });
    prop_oneof![
        prop::collection::vec((any::<Index>(), base64url.clone()), 1..4).prop_map(Forgery::Replace),
        any::<Index>().prop_map(Forgery::Truncate),
        (any::<Index>(), base64url).prop_map(|(at, c)| Forgery::Insert(at, c)),
        (0usize..3, prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(part, bytes)| Forgery::Segment(part, bytes)),
        any::<Index>().prop_map(Forgery::Splice),
        (claims.clone(), near_keys()).prop_map(|(claims, key)| Forgery::Signed(claims, key)),
        claims.prop_map(Forgery::Unsigned),
        any::<String>().prop_map(Forgery::Arbitrary),
    ]
}

/// Keys an attacker might try: ours with one byte changed, cut short or extended, empty, or
/// anything at all. (Ours itself is no forgery: any holder of the key may sign.)
fn near_keys() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, flip)| {
            let mut key = SECRET.to_vec();
            key[at.index(SECRET.len())] ^= flip;
            key
        }),
        any::<Index>().prop_map(|at| SECRET[..at.index(SECRET.len())].to_vec()),
        // Not a zero byte: HMAC pads a short key with zeros, so ours extended by one is ours.
        (1u8..=255).prop_map(|extra| [SECRET, &[extra]].concat()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn apply(forgery: &Forgery, original: &str, issued: &[String], keyring_kid: &str) -> String {
    let chars: Vec<char> = original.chars().collect();
    let parts: Vec<&str> = original.split('.').collect();
    match forgery {
        Forgery::Replace(changes) => {
            let mut chars = chars;
            for (at, c) in changes {
                let at = at.index(chars.len());
                chars[at] = *c;
            }
            chars.into_iter().collect()
        }
        Forgery::Truncate(at) => chars[..at.index(chars.len())].iter().collect(),
        Forgery::Insert(at, c) => {
            let mut chars = chars;
            chars.insert(at.index(chars.len() + 1), *c);
            chars.into_iter().collect()
        }
        Forgery::Segment(part, bytes) => {
            let mut parts: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            parts[*part] = base64_url(bytes);
            parts.join(".")
        }
        Forgery::Splice(other) => {
            let other = &issued[other.index(issued.len())];
            let signature = other.rsplit('.').next().unwrap();
            format!("{}.{}.{signature}", parts[0], parts[1])
        }
        Forgery::Signed(claims, key) => {
            let header = jsonwebtoken::Header {
                kid: Some(keyring_kid.to_owned()),
                ..jsonwebtoken::Header::default()
            };
            forge(&header, claims, key)
        }
        Forgery::Unsigned(claims) => format!(
            "{}.{}.",
            base64_url(format!(r#"{{"alg":"none","typ":"JWT","kid":"{keyring_kid}"}}"#).as_bytes()),
            base64_url(claims.to_string().as_bytes())
        ),
        Forgery::Arbitrary(text) => text.clone(),
    }
}

#[test]
fn an_access_token_verifies_only_if_we_issued_it_unaltered() {
    let key = SigningKey::from_secret(SECRET);
    let kid = key.kid.clone();
    let keyring = Keyring::new(&key, std::slice::from_ref(&key), oracles::token_rules()).unwrap();
    let issued: Vec<String> = (0..8)
        .map(|user_id| keyring.issue(user_id, Uuid::new_v4(), now(), 600))
        .collect();
    for token in &issued {
        assert!(
            keyring.verify(token, now()).is_ok(),
            "an issued token verifies"
        );
    }

    let strategy = (any::<Index>(), forgery());
    check(
        "only issued tokens verify",
        512,
        strategy,
        |(which, forgery)| {
            let original = &issued[which.index(issued.len())];
            let candidate = apply(&forgery, original, &issued, &kid);
            if let Ok(claims) = keyring.verify(&candidate, now()) {
                prop_assert!(
                    issued.contains(&candidate),
                    "a token we did not issue verified: {candidate} with {claims:?}"
                );
            }
            Ok(())
        },
    );
}

// ---- refresh chains ----------------------------------------------------------------------------

/// One thing a client (or an attacker holding an old token) does to a session.
#[derive(Debug, Clone)]
enum Step {
    /// Refresh with the current token.
    Rotate,
    /// Present a token handed out earlier in the chain (the current one, or a consumed one).
    Replay(Index),
    /// The same, at a given place in the chain.
    ReplayAt(usize),
    /// The current token presented by several clients at once.
    Race(usize),
    Logout,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => Just(Step::Rotate),
        2 => any::<Index>().prop_map(Step::Replay),
        1 => (2usize..=4).prop_map(Step::Race),
        1 => Just(Step::Logout),
    ];
    prop::collection::vec(step, 1..10)
}

/// What the contract says a session is after each step, and the tokens handed out.
struct Chain {
    history: Vec<String>,
    alive: bool,
    /// The token the last rotation consumed: within the retry grace it is answered again.
    consumed_last: Option<String>,
    grace: bool,
}

impl Chain {
    fn current(&self) -> String {
        self.history.last().unwrap().clone()
    }

    async fn step(&mut self, app: &Arc<TestApp>, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Rotate => self.rotate(app, self.current()).await,
            Step::Replay(index) => self.replay(app, index.index(self.history.len())).await,
            Step::ReplayAt(at) => self.replay(app, *at).await,
            Step::Race(clients) => {
                let token = self.current();
                let mut racing = tokio::task::JoinSet::new();
                for _ in 0..*clients {
                    let (app, token) = (app.clone(), token.clone());
                    racing.spawn(async move { app.refresh(&token).await });
                }
                let mut answers = Vec::new();
                while let Some(answer) = racing.join_next().await {
                    answers.push(answer.expect("a refresh does not panic"));
                }
                let won: Vec<&TestResponse> = answers
                    .iter()
                    .filter(|answer| answer.status == StatusCode::OK)
                    .collect();
                for lost in answers.iter().filter(|a| a.status != StatusCode::OK) {
                    assert_refused(lost)?;
                }
                if !self.alive {
                    prop_assert_eq!(won.len(), 0);
                    return Ok(());
                }
                let new_tokens: Vec<&str> = won
                    .iter()
                    .map(|answer| answer.body["refresh_token"].as_str().unwrap())
                    .collect();
                if self.grace {
                    // The losers are retries within the grace: the winner's token, again.
                    prop_assert_eq!(won.len(), *clients);
                    prop_assert!(new_tokens.iter().all(|t| *t == new_tokens[0]));
                } else {
                    // Exactly one wins; the others present a consumed token: reuse.
                    prop_assert_eq!(won.len(), 1, "{:?}", answers);
                    self.alive = false;
                }
                self.consumed_last = Some(token);
                self.history.push(new_tokens[0].to_owned());
                Ok(())
            }
            Step::Logout => {
                let response = app.logout(&self.current()).await;
                if self.alive {
                    prop_assert_eq!(response.status, StatusCode::OK, "{:?}", response);
                    self.alive = false;
                } else {
                    assert_refused(&response)?;
                }
                Ok(())
            }
        }
    }

    /// Presents the `at`-th token of the chain.
    async fn replay(&mut self, app: &TestApp, at: usize) -> Result<(), TestCaseError> {
        let token = self.history[at].clone();
        if token == self.current() {
            return self.rotate(app, token).await;
        }
        let response = app.refresh(&token).await;
        let repeated = self.grace && self.alive && self.consumed_last == Some(token);
        if repeated {
            // A retry within the grace: the session's current token, again.
            let current = self.current();
            prop_assert_eq!(response.status, StatusCode::OK, "{:?}", response);
            prop_assert_eq!(
                response.body["refresh_token"].as_str(),
                Some(current.as_str())
            );
        } else {
            assert_refused(&response)?;
            self.alive = false; // a consumed token presented again ends the session
        }
        Ok(())
    }

    async fn rotate(&mut self, app: &TestApp, token: String) -> Result<(), TestCaseError> {
        let response = app.refresh(&token).await;
        if !self.alive {
            return assert_refused(&response);
        }
        prop_assert_eq!(response.status, StatusCode::OK, "{:?}", response);
        let new = response.body["refresh_token"].as_str().unwrap().to_owned();
        prop_assert!(!self.history.contains(&new), "a token was handed out twice");
        self.consumed_last = Some(token);
        self.history.push(new);
        Ok(())
    }
}

fn assert_refused(response: &TestResponse) -> Result<(), TestCaseError> {
    prop_assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{:?}", response);
    prop_assert_eq!(
        &response.body,
        &json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
    );
    Ok(())
}

/// Unconsumed refresh tokens of session `sid` while it has not ended.
fn live_tokens(app: &TestApp, sid: &str) -> i64 {
    let session = if app.config.database_url.starts_with("sqlite://") {
        format!("X'{}'", sid.replace('-', ""))
    } else {
        format!("'{sid}'")
    };
    let rows = app.query(&format!(
        "SELECT count(*) FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE s.id = {session} AND t.consumed_at IS NULL AND s.ended_at IS NULL"
    ));
    let cell = rows[0][0].clone().expect("a count");
    String::from_utf8(cell).unwrap().parse().unwrap()
}

fn assert_live_tokens(
    app: &TestApp,
    sid: &str,
    chain: &Chain,
    step: &Step,
) -> Result<(), TestCaseError> {
    let live = live_tokens(app, sid);
    prop_assert_eq!(
        live,
        i64::from(chain.alive),
        "after {:?} the session has {} live tokens",
        step,
        live
    );
    Ok(())
}

static STEPS_TAKEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_refresh_chain_with_random_reuse_leaves_one_live_token_at_most() {
    let runtime = runtime();
    let (strict, lenient) = runtime.block_on(async {
        let strict = spawn_app().await;
        let lenient = spawn_app_with(|config| {
            config.refresh_retry_grace = Duration::from_secs(30);
        })
        .await;
        (Arc::new(strict), Arc::new(lenient))
    });
    let users = runtime.block_on(async {
        (
            strict.register_user("ann@example.org").await,
            lenient.register_user("ann@example.org").await,
        )
    });

    let strategy = (any::<bool>(), steps());
    // PostgreSQL commits (and the suite's connection per check) cost more than SQLite's.
    let cases = if strict.config.database_url.starts_with("sqlite://") {
        64
    } else {
        16
    };
    check("refresh chains", cases, strategy, |(grace, steps)| {
        let (app, user) = if grace {
            (&lenient, &users.1)
        } else {
            (&strict, &users.0)
        };
        runtime.block_on(async {
            let tokens = app.login_user(user).await;
            let sid = app.claims_of(&tokens.access)["sid"]
                .as_str()
                .unwrap()
                .to_owned();
            let mut chain = Chain {
                history: vec![tokens.refresh],
                alive: true,
                consumed_last: None,
                grace,
            };
            // The random steps, each followed by a count of the session's live tokens; then a
            // rotation, every token ever handed out presented again, and a last rotation,
            // which works only if the session survived all that, and a last count.
            let mut steps = steps;
            steps.push(Step::Rotate);
            let mut taken = 0;
            for step in &steps {
                chain.step(app, step).await?;
                taken += 1;
                assert_live_tokens(app, &sid, &chain, step)?;
            }
            let finale: Vec<Step> = (0..chain.history.len())
                .map(Step::ReplayAt)
                .chain([Step::Rotate])
                .collect();
            for step in &finale {
                chain.step(app, step).await?;
                taken += 1;
            }
            assert_live_tokens(app, &sid, &chain, finale.last().unwrap())?;
            STEPS_TAKEN.fetch_add(taken, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
    });
    println!(
        "refresh chains: {} steps, the session's live tokens counted after \
         each random step and at the end",
        STEPS_TAKEN.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// What a client of the session-cache property does next; indexes pick among what exists.
#[derive(Debug, Clone)]
enum Act {
    Login(Index),
    Refresh(Index),
    /// The refresh token before the session's last rotation, presented again: a reuse.
    Replay(Index),
    Logout(Index),
    LogoutAll(Index),
    ChangePassword(Index),
    Rename(Index, u8),
    Deactivate(Index),
    Activate(Index),
    EndSession(Index),
}

fn acts() -> impl Strategy<Value = Vec<Act>> {
    let act = prop_oneof![
        3 => any::<Index>().prop_map(Act::Login),
        3 => any::<Index>().prop_map(Act::Refresh),
        1 => any::<Index>().prop_map(Act::Replay),
        1 => any::<Index>().prop_map(Act::Logout),
        1 => any::<Index>().prop_map(Act::LogoutAll),
        1 => any::<Index>().prop_map(Act::ChangePassword),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, name)| Act::Rename(at, name)),
        1 => any::<Index>().prop_map(Act::Deactivate),
        1 => any::<Index>().prop_map(Act::Activate),
        1 => any::<Index>().prop_map(Act::EndSession),
    ];
    prop::collection::vec(act, 1..14)
}

/// One service's side of the session-cache property: its users and the sessions its clients
/// hold.
struct Side {
    app: TestApp,
    users: Vec<crate::helpers::TestUser>,
    sessions: Vec<Held>,
}

/// A session as its client holds it.
struct Held {
    access: String,
    refresh: String,
    /// The refresh token the last rotation consumed.
    consumed: Option<String>,
    /// The index of its user in [`Side::users`].
    owner: usize,
}

impl Side {
    /// Does `act` and answers what the client saw: the status and body of each request.
    async fn act(&mut self, act: &Act) -> Vec<(StatusCode, Value)> {
        let app = &self.app;
        let session = |at: &Index, sessions: &[Held]| {
            (!sessions.is_empty()).then(|| at.index(sessions.len()))
        };
        let seen = |response: TestResponse| vec![(response.status, response.body)];
        match act {
            Act::Login(at) => {
                let owner = at.index(self.users.len());
                let user = &self.users[owner];
                let response = app.login(&user.email, &user.password).await;
                if response.status == StatusCode::OK {
                    self.sessions.push(Held {
                        access: response.body["access_token"].as_str().unwrap().to_owned(),
                        refresh: response.body["refresh_token"].as_str().unwrap().to_owned(),
                        consumed: None,
                        owner,
                    });
                }
                vec![(response.status, Value::Null)]
            }
            Act::Refresh(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let held = &mut self.sessions[at];
                let response = app.refresh(&held.refresh).await;
                if response.status == StatusCode::OK {
                    let refresh = response.body["refresh_token"].as_str().unwrap().to_owned();
                    held.consumed = Some(std::mem::replace(&mut held.refresh, refresh));
                    held.access = response.body["access_token"].as_str().unwrap().into();
                }
                vec![(response.status, Value::Null)]
            }
            Act::Replay(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let Some(consumed) = &self.sessions[at].consumed else {
                    return vec![];
                };
                seen(app.refresh(consumed).await)
            }
            Act::Logout(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                seen(app.logout(&self.sessions[at].refresh).await)
            }
            Act::LogoutAll(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let access = self.sessions[at].access.clone();
                seen(
                    app.request(Method::POST, "/api/logout/all/", Some(&access), None)
                        .await,
                )
            }
            Act::ChangePassword(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let owner = self.sessions[at].owner;
                let new_password = format!("{}-next", self.users[owner].password);
                let body = json!({
                    "old_password": self.users[owner].password,
                    "new_password": new_password,
                });
                let access = self.sessions[at].access.clone();
                let bytes = body.to_string().into_bytes();
                let response = app
                    .request(
                        Method::POST,
                        "/api/me/password/",
                        Some(&access),
                        Some(("application/json", bytes)),
                    )
                    .await;
                if response.status == StatusCode::OK {
                    self.users[owner].password = new_password;
                }
                seen(response)
            }
            Act::Rename(at, name) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let access = self.sessions[at].access.clone();
                seen(
                    app.patch_me(&access, &json!({"username": format!("name{name}")}))
                        .await,
                )
            }
            Act::Deactivate(at) => {
                let user = self.users[at.index(self.users.len())].id;
                app.deactivate(user).await;
                vec![]
            }
            Act::Activate(at) => {
                let user = self.users[at.index(self.users.len())].id;
                app.activate(user).await;
                vec![]
            }
            Act::EndSession(at) => {
                let Some(at) = session(at, &self.sessions) else {
                    return vec![];
                };
                let access = &self.sessions[at].access;
                let sid = app.claims_of(access)["sid"].as_str().unwrap().to_owned();
                let request = Request::delete(format!("/api/sessions/{sid}/"))
                    .header(header::AUTHORIZATION, format!("Bearer {access}"))
                    .body(Body::empty())
                    .unwrap();
                seen(app.send_raw(request).await)
            }
        }
    }

    /// `GET /api/me/` with every session's access token.
    async fn profiles(&self) -> Vec<(StatusCode, Value)> {
        let mut seen = Vec::new();
        for held in &self.sessions {
            let response = self.app.get_me(&held.access).await;
            seen.push((response.status, response.body));
        }
        seen
    }
}

#[test]
fn the_session_cache_answers_as_a_read_of_the_database_would() {
    let runtime = runtime();
    let sides = runtime.block_on(async {
        let cached = spawn_app().await;
        let uncached = spawn_app_with(|config| config.session_cache_size = 0).await;
        let mut sides = Vec::new();
        for app in [cached, uncached] {
            let mut users = Vec::new();
            for name in ["ann", "bob"] {
                users.push(app.register_user(&format!("{name}@example.org")).await);
            }
            sides.push(Side {
                app,
                users,
                sessions: Vec::new(),
            });
        }
        sides
    });
    let sides = Mutex::new(sides);
    check("session cache", 24, acts(), |acts| {
        let mut sides = sides.lock().unwrap();
        runtime.block_on(async {
            for side in sides.iter_mut() {
                side.sessions.clear();
            }
            for act in &acts {
                let mut answers = Vec::new();
                for side in sides.iter_mut() {
                    let mut seen = side.act(act).await;
                    // Each act is followed by every session's profile: the cache is filled
                    // before the next act changes what it holds.
                    seen.extend(side.profiles().await);
                    answers.push(seen);
                }
                prop_assert_eq!(&answers[0], &answers[1], "after {:?}", act);
            }
            Ok(())
        })
    });
}

// ---- the fuzzing oracles, on the stable toolchain --------------------------------------------

#[test]
fn any_body_parses_and_validates_within_the_contract() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (0u8..8, body()).prop_map(|(selector, (_, bytes))| [vec![selector], bytes].concat()),
    ];
    check("body oracle", 1024, strategy, |data| {
        oracles::check_body(&data);
        Ok(())
    });
}

#[test]
fn any_authorization_header_is_read_as_simplejwt_reads_it() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        "[Bb]earer[ \t]{0,3}[!-~]{0,40}( [!-~]{0,5})?".prop_map(String::into_bytes),
    ];
    check("bearer oracle", 1024, strategy, |data| {
        oracles::check_bearer(&data);
        Ok(())
    });
}

/// Every file of the seed corpus and every input the fuzzer ever found, through the oracles.
#[test]
fn the_fuzz_corpus_and_every_finding_replay_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (target, oracle) in [
        ("body", oracles::check_body as fn(&[u8])),
        ("bearer", oracles::check_bearer),
    ] {
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| oracle(&data));
                assert!(outcome.is_ok(), "{} fails its oracle", path.display());
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= 20,
        "the seed corpus is missing: {replayed} inputs"
    );
    println!("fuzz corpus: {replayed} inputs replayed");
}
