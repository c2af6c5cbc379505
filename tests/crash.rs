//! Crash safety (RELIABILITY.md, part 4), against the real executable: a stream of
//! registrations, logins and refresh-token rotations is cut by SIGKILL at an arbitrary moment,
//! the service is restarted on the same SQLite file, and every write it acknowledged must be
//! there — each registered user logs in; each refresh token it handed out is the one live
//! token of its session and rotates (unless a rotation in flight at the kill consumed it, and
//! then that rotation committed whole); each predecessor is refused — and the file passes
//! `PRAGMA integrity_check`. Three
//! rounds of load, kill, restart and check on one database.
//!
//! Bounded: a few seconds of load per round, requests only to 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restful_auth::auth::tokens::RefreshToken;
use serde_json::{Value, json};

// Shared with tests/operations.rs, which uses more of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use support::{BINARY, listening_address};
const SECRET: &str = "crash-test-only-secret-0123456789abcdef";
const PASSWORD: &str = "correct horse battery staple";

/// Kills survived before the last restart.
const CRASHES: u32 = 3;
/// Clients writing at once: registrations and rotations in flight at the kill.
const STREAMS: usize = 6;
/// Rotations of a session before its stream registers the next user.
const ROTATIONS_PER_SESSION: usize = 40;

/// A running service; killed, not stopped, when dropped.
struct Service {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Service {
    /// Starts the service on a port the kernel picks, read back from its log (kept in a file,
    /// which outlives a SIGKILL).
    fn start(database: &Path, log: PathBuf) -> Service {
        let output = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BINARY)
            .args(["--bind", "127.0.0.1:0"])
            .args([
                "--database-url",
                &format!("sqlite://{}", database.display()),
            ])
            .args(["--secret-key", SECRET])
            // The default metrics port is one for every test process.
            .args(["--metrics-bind", "off"])
            // A load test, not a throttling test: one address registers and logs in a lot.
            .args(["--throttle-register-ip", "off"])
            .args(["--throttle-login-ip", "off"])
            .args(["--throttle-login-account", "off"])
            .args(["--throttle-login-account-ip", "off"])
            // It replays consumed tokens on purpose, many from one address.
            .args(["--throttle-refresh-ip", "off"])
            .env_remove("DATABASE_URL")
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("the service starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = loop {
            let written = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<String> = written.lines().map(str::to_owned).collect();
            if let Some(address) = listening_address(&lines) {
                break address;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("the service did not start:\n{written}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Service {
            child,
            base: format!("http://{address}"),
            log,
        }
    }

    async fn wait_until_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|answer| answer.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no handler runs, no buffer is flushed, no checkpoint is made.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the process is reaped");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session as its client last knew it.
#[derive(Debug, Clone)]
struct Session {
    /// The refresh token of the last answered login or rotation.
    last: String,
    /// The token that rotation consumed.
    previous: Option<String>,
    /// A rotation presenting `last` was sent and never answered: the kill came first.
    in_flight: bool,
}

/// Everything the service acknowledged with a 2xx.
#[derive(Debug, Default)]
struct Ledger {
    users: Vec<String>,
    sessions: Vec<Session>,
    registrations_unanswered: usize,
}

/// What the verification found, for RELIABILITY.md.
#[derive(Debug, Default)]
struct Tally {
    users_checked: usize,
    rotations_acknowledged: usize,
    sessions_checked: usize,
    in_flight_committed: usize,
    in_flight_not_committed: usize,
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Result<(u16, Value)> {
    let answer = client.post(url).json(&body).send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.json().await?))
}

/// One client: registers a user, logs in, rotates the session's refresh token, and again,
/// until the service goes away. Every answered write goes into the ledger.
async fn stream(
    base: String,
    name: String,
    ledger: Arc<Mutex<Ledger>>,
    rotations: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    for user in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let email = format!("{name}-{user}@example.org");
        let credentials = json!({"email": email, "password": PASSWORD});
        match post(
            &client,
            format!("{base}/api/register/"),
            credentials.clone(),
        )
        .await
        {
            Ok((201, _)) => ledger.lock().unwrap().users.push(email),
            Ok(answer) => panic!("a registration failed: {answer:?}"),
            Err(_) => {
                ledger.lock().unwrap().registrations_unanswered += 1;
                return;
            }
        }
        let Ok((status, tokens)) = post(&client, format!("{base}/api/login/"), credentials).await
        else {
            return;
        };
        assert_eq!(status, 200, "a login failed: {tokens}");
        let index = {
            let mut ledger = ledger.lock().unwrap();
            ledger.sessions.push(Session {
                last: tokens["refresh_token"].as_str().unwrap().to_owned(),
                previous: None,
                in_flight: false,
            });
            ledger.sessions.len() - 1
        };
        for _ in 0..ROTATIONS_PER_SESSION {
            let last = {
                let mut ledger = ledger.lock().unwrap();
                ledger.sessions[index].in_flight = true;
                ledger.sessions[index].last.clone()
            };
            let answer = post(
                &client,
                format!("{base}/api/refresh/"),
                json!({"refresh_token": last}),
            )
            .await;
            let Ok((status, tokens)) = answer else {
                return; // killed: the rotation stays in flight
            };
            assert_eq!(status, 200, "a rotation failed: {tokens}");
            let mut ledger = ledger.lock().unwrap();
            let session = &mut ledger.sessions[index];
            session.previous = Some(std::mem::replace(
                &mut session.last,
                tokens["refresh_token"].as_str().unwrap().to_owned(),
            ));
            session.in_flight = false;
            *rotations.lock().unwrap() += 1;
        }
    }
}

fn digest(token: &str) -> Vec<u8> {
    RefreshToken::parse(token)
        .expect("a token we were handed")
        .digest()
        .to_vec()
}

/// `consumed_at IS NOT NULL` of a stored refresh token; `None` if it is not stored.
fn consumed(database: &rusqlite::Connection, token: &str) -> Option<bool> {
    use rusqlite::OptionalExtension as _;
    database
        .query_row(
            "SELECT consumed_at IS NOT NULL FROM refresh_tokens WHERE token_hash = ?1",
            [digest(token)],
            |row| row.get(0),
        )
        .optional()
        .unwrap()
}

/// The file as the killed process left it: intact, and holding every acknowledged write.
fn check_the_file(database: &Path, ledger: &Ledger) {
    let connection = rusqlite::Connection::open(database).unwrap();
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let broken_references: i64 = connection
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(broken_references, 0);

    for user in &ledger.users {
        let found: i64 = connection
            .query_row(
                "SELECT count(*) FROM users WHERE email_key = ?1",
                [user],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "the acknowledged registration of {user} was lost");
    }
    for session in &ledger.sessions {
        let last = consumed(&connection, &session.last)
            .unwrap_or_else(|| panic!("an acknowledged refresh token was lost: {session:?}"));
        if let Some(previous) = &session.previous {
            assert_eq!(
                consumed(&connection, previous),
                Some(true),
                "an acknowledged rotation did not consume its token: {session:?}"
            );
        }
        if last {
            // Only the rotation in flight can have consumed it, and then it committed whole:
            // its successor is the session's one live token.
            assert!(
                session.in_flight,
                "a live token was consumed by nobody: {session:?}"
            );
            assert_eq!(
                live_tokens_beside(&connection, &session.last),
                1,
                "a rotation committed half: {session:?}"
            );
        } else {
            assert_eq!(
                live_tokens_beside(&connection, &session.last),
                1,
                "{session:?}"
            );
        }
    }
}

/// Unconsumed tokens of the session that `token` belongs to.
fn live_tokens_beside(database: &rusqlite::Connection, token: &str) -> i64 {
    database
        .query_row(
            "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NULL AND session_id =
                 (SELECT session_id FROM refresh_tokens WHERE token_hash = ?1)",
            [digest(token)],
            |row| row.get(0),
        )
        .unwrap()
}

/// Through the restarted service: acknowledged users log in, each session's latest token
/// rotates (to the successor the service derives), and its predecessor is refused.
async fn check_the_service(
    service: &Service,
    client: &reqwest::Client,
    database: &Path,
    ledger: &Ledger,
    tally: &mut Tally,
) {
    let connection = rusqlite::Connection::open(database).unwrap();
    let mut logins = tokio::task::JoinSet::new();
    for chunk in ledger.users.chunks(ledger.users.len().div_ceil(4).max(1)) {
        let (client, url, chunk) = (client.clone(), service.url("/api/login/"), chunk.to_vec());
        logins.spawn(async move {
            for email in chunk {
                let credentials = json!({"email": email, "password": PASSWORD});
                let (status, body) = post(&client, url.clone(), credentials).await.unwrap();
                assert_eq!(
                    status, 200,
                    "acknowledged user {email} cannot log in: {body}"
                );
            }
        });
    }
    while let Some(done) = logins.join_next().await {
        done.unwrap();
    }
    tally.users_checked += ledger.users.len();

    for session in &ledger.sessions {
        let consumed_at_the_kill = consumed(&connection, &session.last) == Some(true);
        let (status, body) = post(
            client,
            service.url("/api/refresh/"),
            json!({"refresh_token": session.last}),
        )
        .await
        .unwrap();
        if consumed_at_the_kill {
            // The rotation in flight committed, and its answer was lost with the process: to
            // its client the token is now a replay, which ends the session (a retry grace,
            // off here, would answer it with the successor instead).
            tally.in_flight_committed += 1;
            assert_eq!(status, 401, "a consumed token still works: {session:?}");
        } else {
            tally.in_flight_not_committed += usize::from(session.in_flight);
            assert_eq!(
                status, 200,
                "an acknowledged token is refused: {session:?}: {body}"
            );
            assert_ne!(body["refresh_token"], session.last.as_str());
        }
        if let Some(previous) = &session.previous {
            let (status, _) = post(
                client,
                service.url("/api/refresh/"),
                json!({"refresh_token": previous}),
            )
            .await
            .unwrap();
            assert_eq!(status, 401, "a consumed token still works: {session:?}");
        }
        tally.sessions_checked += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill_and_restart() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("crash.sqlite3");
    let client = reqwest::Client::new();
    let mut tally = Tally::default();
    let mut in_flight_at_kills = 0;
    let started = Instant::now();
    let mut service = Service::start(&database, directory.path().join("service-0.log"));
    service.wait_until_ready(&client).await;

    for round in 1..=CRASHES {
        // Arrange: clients writing as fast as they can.
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let rotations = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = tokio::task::JoinSet::new();
        for index in 0..STREAMS {
            streams.spawn(stream(
                service.base.clone(),
                format!("r{round}s{index}"),
                ledger.clone(),
                rotations.clone(),
                stop.clone(),
            ));
        }

        // Act: SIGKILL mid-stream, at a different moment each round, then a restart.
        tokio::time::sleep(Duration::from_millis(500 + 250 * u64::from(round))).await;
        service.kill();
        stop.store(true, Ordering::SeqCst);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(done) = streams.join_next().await {
                done.expect("a client stream failed");
            }
        })
        .await;
        assert!(drained.is_ok(), "the clients did not notice the kill");
        let ledger = std::mem::take(&mut *ledger.lock().unwrap());
        check_the_file(&database, &ledger);
        let log = directory.path().join(format!("service-{round}.log"));
        service = Service::start(&database, log);
        service.wait_until_ready(&client).await;

        // Assert
        check_the_service(&service, &client, &database, &ledger, &mut tally).await;
        tally.rotations_acknowledged += *rotations.lock().unwrap();
        in_flight_at_kills += ledger.sessions.iter().filter(|s| s.in_flight).count()
            + ledger.registrations_unanswered;
    }

    service.kill();
    check_the_file(&database, &Ledger::default());
    assert!(
        in_flight_at_kills > 0,
        "no kill came in the middle of a request"
    );
    println!(
        "crash test: {CRASHES} SIGKILLs mid-stream survived in {:.1?}; {} acknowledged \
         registrations, {} acknowledged rotations in {} sessions, none lost; {in_flight_at_kills} \
         requests in flight at the kills; of the rotations among them {} had committed whole, \
         {} not at all",
        started.elapsed(),
        tally.users_checked,
        tally.rotations_acknowledged,
        tally.sessions_checked,
        tally.in_flight_committed,
        tally.in_flight_not_committed,
    );
}
