//! Administration against the real executable: the admin API's listener (`--admin-bind`,
//! `--admin-token-file`) and the account commands that do what it does (`user delete`,
//! `user sessions`, `user end-sessions`, `user unlock`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// Shared with the other binaries, which use more of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use support::{BINARY, Running, database_url, run_command};

const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "administration-test-secret-0123456789abcdef";
const TOKEN: &str = "a-long-random-admin-token-0123456789abcdef";

/// The service on `database` with `args`, its log captured.
fn start(database: &Path, args: &[&str]) -> Running {
    let mut command = Command::new(BINARY);
    command
        .args(["--database-url", &database_url(database)])
        .args(["--secret-key", SECRET])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RESTFUL_AUTH_ADMIN_BIND")
        .env_remove("RESTFUL_AUTH_ADMIN_TOKEN_FILE");
    Running::start(command)
}

/// Runs the service with `args`, expecting it to refuse to start: its exit status and what
/// it wrote.
fn refused_start(database: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BINARY)
        .args(["--bind", "127.0.0.1:0", "--metrics-bind", "off"])
        .args(["--database-url", &database_url(database)])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs an administration command on `database`, feeding `stdin`.
fn admin(database: &Path, args: &[&str], stdin: &str) -> Output {
    let output = run_command(database, args, stdin);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The JSON objects a command printed, one per line.
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

/// A file holding `content`, readable by its owner only.
fn private_file(path: &Path, content: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(content.as_bytes()).unwrap();
}

/// The admin listener's address, from its start-up line (`admin API listening address=…`).
fn admin_address(running: &Running) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = running.log_text();
        let found = log
            .lines()
            .find(|line| line.contains("admin API listening"))
            .and_then(|line| line.split_once("address=").map(|(_, rest)| rest.to_owned()))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
        if let Some(address) = found {
            return address;
        }
        assert!(Instant::now() < deadline, "no admin listener:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn login(running: &Running, email: &str, password: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(running.url("/api/login/"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn me(running: &Running, access: &str) -> u16 {
    reqwest::Client::new()
        .get(running.url("/api/me/"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_admin_api_open_to_the_network_without_a_token_file_refuses_to_start() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("admin.sqlite3");
    let empty = directory.path().join("empty.token");
    private_file(&empty, " \n");

    let (status, error) = refused_start(&database, &["--admin-bind", "0.0.0.0:0"]);
    let (empty_status, empty_error) = refused_start(
        &database,
        &[
            "--admin-bind",
            "127.0.0.1:0",
            "--admin-token-file",
            &empty.display().to_string(),
        ],
    );

    assert_eq!(status.code(), Some(1), "{error}");
    assert!(
        error.contains("--admin-bind 0.0.0.0:0 is not a loopback address")
            && error.contains("--admin-token-file"),
        "{error}"
    );
    assert_eq!(empty_status.code(), Some(1), "{empty_error}");
    assert!(
        empty_error.contains(&empty.display().to_string()) && empty_error.contains("no token"),
        "{empty_error}"
    );
}

#[tokio::test]
async fn with_a_token_file_the_admin_listener_answers_those_who_hold_the_token() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("admin.sqlite3");
    let token_file = directory.path().join("admin.token");
    private_file(&token_file, &format!("{TOKEN}\n"));
    let running = start(
        &database,
        &[
            "--admin-bind",
            "0.0.0.0:0",
            "--admin-token-file",
            &token_file.display().to_string(),
        ],
    );
    let admin = admin_address(&running);
    let users = format!("http://127.0.0.1:{}/admin/users/", admin.port());
    let client = reqwest::Client::new();

    let admitted = client.get(&users).bearer_auth(TOKEN).send().await.unwrap();
    let refused = client.get(&users).send().await.unwrap();
    let public = client
        .get(running.url("/admin/users/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();

    assert_eq!(admitted.status(), 200);
    assert_eq!(
        admitted.json::<Value>().await.unwrap(),
        json!({"results": [], "next": null})
    );
    assert_eq!(refused.status(), 401);
    assert_eq!(public.status(), 404, "never on the public listener");
    assert!(
        !running.log_text().contains(TOKEN),
        "the token is never logged"
    );
}

#[tokio::test]
async fn the_account_commands_list_and_end_sessions_unlock_and_delete() {
    // Arrange: an account with two sessions on a running service.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("admin.sqlite3");
    let email = "ann@example.org";
    admin(&database, &["user", "create", email], PASSWORD);
    let running = start(&database, &[]);
    let (_, first) = login(&running, email, PASSWORD).await;
    login(&running, email, PASSWORD).await;
    let access = first["access_token"].as_str().unwrap();

    // The sessions, listed then ended.
    let sessions = json_lines(&admin(
        &database,
        &["user", "sessions", email, "--output", "json"],
        "",
    ));
    let table = admin(&database, &["user", "sessions", email], "");
    let ended = json_lines(&admin(
        &database,
        &["user", "end-sessions", email, "--output", "json"],
        "",
    ));
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    assert_eq!(String::from_utf8_lossy(&table.stdout).lines().count(), 2);
    assert_eq!(ended, [json!({"id": 1, "email": email, "ended": 2})]);
    assert_eq!(me(&running, access).await, 401);

    // Locked out by failed logins, let in by unlock.
    for _ in 0..5 {
        assert_eq!(login(&running, email, "a wrong password").await.0, 401);
    }
    assert_eq!(login(&running, email, PASSWORD).await.0, 429);
    let unlocked = admin(&database, &["user", "unlock", email], "");
    assert!(
        String::from_utf8_lossy(&unlocked.stdout).contains("it can log in at once"),
        "{unlocked:?}"
    );
    let (status, tokens) = login(&running, email, PASSWORD).await;
    assert_eq!(status, 200);

    // Deleted: its tokens and its password no longer work; the log keeps its id.
    let deleted = json_lines(&admin(
        &database,
        &["user", "delete", email, "--output", "json"],
        "",
    ));
    assert_eq!(deleted[0]["deleted"], true);
    assert_eq!(
        me(&running, tokens["access_token"].as_str().unwrap()).await,
        401
    );
    assert_eq!(login(&running, email, PASSWORD).await.0, 401);
    let events = json_lines(&admin(
        &database,
        &["audit", "--user", "1", "--output", "json"],
        "",
    ));
    let by_cli: Vec<&str> = events
        .iter()
        .filter(|event| event["actor"] == "cli")
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_cli,
        [
            "user.deleted",
            "throttle.cleared",
            "session.ended",
            "session.ended",
            "user.registered"
        ]
    );
    assert!(events.iter().all(|event| event["detail"]["erased"] == true));
}

#[tokio::test]
async fn a_hostile_user_agent_is_printed_escaped_in_the_command_lines_tables() {
    // Arrange: a login whose user agent holds a tab (a forged column) and an 8-bit CSI (an
    // escape sequence some terminals obey), both allowed in a header's value.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("admin.sqlite3");
    let email = "ann@example.org";
    admin(&database, &["user", "create", email], PASSWORD);
    let running = start(&database, &[]);
    let hostile = reqwest::header::HeaderValue::from_bytes(b"probe\tforged\xc2\x9b2J").unwrap();
    let response = reqwest::Client::new()
        .post(running.url("/api/login/"))
        .header(reqwest::header::USER_AGENT, hostile)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Act
    let audit = admin(&database, &["audit"], "");
    let sessions = admin(&database, &["user", "sessions", email], "");

    // Assert: every row has its columns and nothing else; the agent is shown, escaped.
    for (output, columns) in [(&audit, 10), (&sessions, 5)] {
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in table.lines() {
            assert_eq!(line.split('\t').count(), columns, "{line:?}");
        }
        let separators = ['\t', '\n'];
        let controls = |c: char| c.is_control() && !separators.contains(&c);
        assert!(!table.chars().any(controls), "{table:?}");
        assert!(table.contains(r"probe\tforged\u{9b}2J"), "{table}");
    }
}
