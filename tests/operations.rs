//! Operations, against the real executable: health and metrics, request ids, CORS, graceful
//! shutdown under load, log hygiene, the administration commands, run-time settings, key
//! rotation, housekeeping and the Django import.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;

use support::{BINARY, Running, database_url, run_command};
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "operations-test-secret-0123456789abcdef";

/// A running service on a database of its own, its log captured line by line.
struct Service {
    running: Running,
    database: PathBuf,
    _directory: tempfile::TempDir,
}

impl Service {
    /// A service with a configured secret key and `extra_args`.
    fn start(extra_args: &[&str]) -> Service {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("ops.sqlite3");
        let args = [&["--secret-key", SECRET], extra_args].concat();
        Service::start_on(directory, database, &args)
    }

    fn start_on(directory: tempfile::TempDir, database: PathBuf, args: &[&str]) -> Service {
        Service::launch(Command::new(BINARY), directory, database, args)
    }

    /// A service started by `command`, which runs the binary with the arguments appended.
    fn launch(
        mut command: Command,
        directory: tempfile::TempDir,
        database: PathBuf,
        args: &[&str],
    ) -> Service {
        command
            .args(["--database-url", &database_url(&database)])
            .args(args)
            .env("RESTFUL_AUTH_LOG", "debug")
            .env_remove("DATABASE_URL");
        Service {
            running: Running::start(command),
            database,
            _directory: directory,
        }
    }

    fn base(&self) -> String {
        self.running.url("")
    }

    fn url(&self, path: &str) -> String {
        self.running.url(path)
    }

    fn log_text(&self) -> String {
        self.running.log_text()
    }

    /// `/metrics` on the metrics listener.
    fn metrics_url(&self) -> String {
        self.running.metrics_url("/metrics")
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.running.child();
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        wait_with_timeout(child, Duration::from_secs(20))
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs an administration command on `database`, feeding `stdin`.
fn admin(database: &Path, args: &[&str], stdin: &str) -> Output {
    run_command(database, args, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register_and_login(service: &Service, email: &str) -> Value {
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        service.url("/api/register/"),
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201);
    login(service, email, PASSWORD).await.1
}

async fn login(service: &Service, email: &str, password: &str) -> (u16, Value) {
    post(
        &reqwest::Client::new(),
        service.url("/api/login/"),
        json!({"email": email, "password": password}),
    )
    .await
}

async fn me(service: &Service, access_token: &str) -> u16 {
    reqwest::Client::new()
        .get(service.url("/api/me/"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Asks `/api/me/` with `access_token` until it is refused, which must happen within the
/// service's `reload` interval: the service keeps live sessions in memory and looks for
/// another process's writes (the command line's) once per interval. The process's own clock
/// cannot be set from here, so this waits, polling, with a margin for the scheduler.
async fn refused_within_reload(service: &Service, access_token: &str, reload: Duration) {
    let written = Instant::now();
    while me(service, access_token).await != 401 {
        assert!(
            written.elapsed() < reload + Duration::from_secs(1),
            "the command line's write did not reach /api/me/ within {reload:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let service = Service::start(&[]);
    let client = reqwest::Client::new();

    let health = client.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = client.get(service.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );

    register_and_login(&service, "metrics@example.org").await;
    login(&service, "metrics@example.org", "wrong password").await;
    for made_up in ["PROBE", "FROB"] {
        let method = reqwest::Method::from_bytes(made_up.as_bytes()).unwrap();
        let answer = client.request(method, service.url("/api/me/")).send();
        assert_eq!(answer.await.unwrap().status(), 405);
    }
    let metrics = client.get(service.metrics_url()).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/api/register/",status="201"} 1"#,
        r#"http_requests_total{method="POST",route="/api/login/",status="401"} 1"#,
        // Made-up methods count under one label: clients cannot create series.
        r#"http_requests_total{method="other",route="/api/me/",status="405"} 2"#,
        r#"logins_total{outcome="success"} 1"#,
        r#"logins_total{outcome="failure"} 1"#,
        "http_request_duration_seconds_bucket{",
        r#"database_connections{state="idle"}"#,
        "password_hash_queue_depth 0",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!text.contains("PROBE"), "{text}");
}

/// A label's value in a Prometheus sample line (`name{label="value",…} 1`).
fn label<'a>(sample: &'a str, name: &str) -> &'a str {
    let start = sample
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {sample}"))
        + name.len()
        + 2;
    let length = sample[start..].find('"').unwrap();
    &sample[start..start + length]
}

/// The value of the sample `series` (a name, with its labels if any) on a Prometheus page.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{page}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_every_family_with_its_help() {
    let service = Service::start(&[]);
    register_and_login(&service, "families@example.org").await;

    let on_public_port = reqwest::get(service.url("/metrics")).await.unwrap();
    let page = reqwest::get(service.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(on_public_port.status(), 404);
    let families: Vec<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    for family in &families {
        let help = format!("# HELP {family} ");
        assert!(
            page.lines().any(|line| line.starts_with(&help)),
            "{family} has no HELP:\n{page}"
        );
    }
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "logins_total",
        "restful_auth_build_info",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "database_connections",
        "database_connections_max",
    ] {
        assert!(families.contains(&family), "no {family} in\n{page}");
    }
    let build_info = page
        .lines()
        .find(|line| line.starts_with("restful_auth_build_info{"))
        .unwrap();
    assert!(build_info.ends_with("} 1"), "{build_info}");
    assert_eq!(label(build_info, "version"), env!("CARGO_PKG_VERSION"));
    assert!(label(build_info, "rustc").starts_with("1."), "{build_info}");
    let built_from = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |output| stdout(&output).trim().to_owned(),
        );
    assert_eq!(label(build_info, "commit"), built_from);
    assert!(sample(&page, "process_resident_memory_bytes") > 1e6);
    assert!(sample(&page, "process_open_fds") > 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(&page, "process_start_time_seconds");
    assert!(now - 600.0 < started && started <= now, "{started}");
    // SQLite's readers: at least one, and one per worker thread of the runtime.
    let pool_size = sample(&page, "database_connections_max");
    assert!(pool_size >= 1.0, "{pool_size}");
    let idle = sample(&page, r#"database_connections{state="idle"}"#);
    let in_use = sample(&page, r#"database_connections{state="in_use"}"#);
    assert!(
        idle + in_use <= pool_size,
        "{idle} + {in_use} > {pool_size}"
    );
}

#[tokio::test]
async fn metrics_bind_public_serves_them_beside_the_api_and_off_nowhere() {
    let public = Service::start(&["--metrics-bind", "public"]);
    let off = Service::start(&["--metrics-bind", "off"]);
    let help = Command::new(BINARY).arg("--help").output().unwrap();

    let served = reqwest::get(public.url("/metrics")).await.unwrap();
    assert_eq!(served.status(), 200);
    let page = served.text().await.unwrap();
    assert!(page.contains("# HELP restful_auth_build_info "), "{page}");
    assert!(!public.log_text().contains("metrics listening"));
    let unserved = reqwest::get(off.url("/metrics")).await.unwrap();
    assert_eq!(unserved.status(), 404);
    assert!(!off.log_text().contains("metrics listening"));
    // Unless told otherwise, on a loopback port of their own.
    let help = stdout(&help);
    let metrics_bind = &help[help.find("--metrics-bind").unwrap()..];
    let metrics_bind = &metrics_bind[..metrics_bind.find("\n\n").unwrap()];
    assert!(
        metrics_bind.contains("[default: 127.0.0.1:9464]"),
        "{metrics_bind}"
    );
}

#[tokio::test]
async fn the_service_flags_also_follow_the_subcommand() {
    // `serve --database-url … --secret-key … --bind 127.0.0.1:0`: every flag after `serve`.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("ops.sqlite3");
    let mut command = Command::new(BINARY);
    command.arg("serve");
    let service = Service::launch(command, directory, database, &["--secret-key", SECRET]);
    let ready = reqwest::get(service.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let listed = admin(&service.database, &["user", "list"], "");
    assert!(stdout(&listed).contains("0 accounts."), "{listed:?}");

    // A subcommand's help lists them, under their headings.
    let help = Command::new(BINARY)
        .args(["user", "list", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{help:?}");
    let help = stdout(&help);
    for expected in [
        "--database-url",
        "Database:",
        "--bind",
        "Server:",
        "Throttling:",
    ] {
        assert!(help.contains(expected), "{expected} missing from\n{help}");
    }
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    // Arrange: the commit this checkout is at, as build.rs asks git for it.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs (the suite runs in a checkout)");
    assert!(head.status.success(), "{head:?}");
    let head = stdout(&head).trim().to_owned();

    // Act
    let version = Command::new(BINARY).arg("--version").output().unwrap();

    // Assert
    assert_eq!(version.status.code(), Some(0), "{version:?}");
    assert_eq!(
        stdout(&version).trim(),
        format!("restful-auth {} ({head})", env!("CARGO_PKG_VERSION"))
    );
}

/// `restful-auth healthcheck ARGS`: its exit status and how long it took.
fn healthcheck(args: &[&str]) -> (std::process::ExitStatus, Duration, String) {
    let started = Instant::now();
    let output = Command::new(BINARY)
        .arg("healthcheck")
        .args(args)
        .env_remove("RESTFUL_AUTH_BIND")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, started.elapsed(), stderr)
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_ready_service_and_non_zero_otherwise() {
    let service = Service::start(&[]);
    let address = service.running.address().to_string();

    let (by_url, _, stderr) = healthcheck(&["--url", &service.url("/readyz")]);
    assert_eq!(by_url.code(), Some(0), "{stderr}");
    // Without --url, the URL comes from --bind.
    let (by_bind, _, stderr) = healthcheck(&["--bind", &address]);
    assert_eq!(by_bind.code(), Some(0), "{stderr}");
    // An answer other than 200 is not ready.
    let (not_found, _, _) = healthcheck(&["--url", &service.url("/no-such-page")]);
    assert_eq!(not_found.code(), Some(1));

    // A closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (refused, _, stderr) = healthcheck(&["--bind", &closed_address]);
    assert_eq!(refused.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not ready"), "{stderr}");

    // A listener that never answers: given up after 2 seconds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/readyz", silent.local_addr().unwrap());
    let (silent_status, took, stderr) = healthcheck(&["--url", &silent_url]);
    assert_eq!(silent_status.code(), Some(1), "{stderr}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// The JSON objects a command printed, one per line.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

#[tokio::test]
async fn listing_commands_print_json_lines_and_exit_statuses_say_what_went_wrong() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("cli.sqlite3");
    let created = admin(&database, &["user", "create", "ann@example.org"], PASSWORD);
    assert_eq!(created.status.code(), Some(0), "{created:?}");

    let listed = admin(&database, &["user", "list", "--output", "json"], "");
    let accounts = json_lines(&listed);
    assert_eq!(accounts.len(), 1, "{listed:?}");
    assert_eq!(accounts[0]["email"], "ann@example.org");
    assert_eq!(accounts[0]["active"], true);
    let shown = admin(
        &database,
        &["user", "show", "ann@example.org", "--output", "json"],
        "",
    );
    assert_eq!(json_lines(&shown), accounts);

    let settings = json_lines(&admin(
        &database,
        &["settings", "show", "--output", "json"],
        "",
    ));
    let names: Vec<&str> = settings
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"access-token-lifetime"), "{settings:?}");
    assert!(
        settings.iter().all(|row| row["value"].is_string()),
        "{settings:?}"
    );
    let keys = json_lines(&admin(&database, &["keys", "list", "--output", "json"], ""));
    assert!(keys.iter().any(|key| key["state"] == "current"), "{keys:?}");
    assert!(
        keys.iter()
            .all(|key| key["kid"].is_string() && key["signs_from"].is_string())
    );

    // 2: not found.
    for args in [
        &["user", "show", "nobody@example.org"][..],
        &["user", "deactivate", "nobody@example.org"],
        &["keys", "retire", "no-such-kid"],
    ] {
        let output = admin(&database, args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    // 3: refused by the service's rules.
    for (args, stdin) in [
        (&["user", "create", "weak@example.org"][..], "123\n"),
        (&["user", "create", "not an email"], PASSWORD),
        (&["settings", "set", "access-token-lifetime", "forever"], ""),
        (&["keys", "rotate", "--secret-key", SECRET], ""),
    ] {
        let output = admin(&database, args, stdin);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {output:?}");
    }
    // 1: a command line clap refuses (its own status, 2, would read as "not found").
    for args in [
        &["user", "frobnicate"][..],
        &["user", "show"],
        &["--no-such-flag"],
    ] {
        let output = admin(&database, args, "");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
    }
    let help = admin(&database, &["user", "--help"], "");
    assert_eq!(help.status.code(), Some(0), "{help:?}");
}

/// The log of the service with `env` set (`RESTFUL_AUTH_LOG` unset unless among them) and
/// `args` (an empty value unsets the variable), after one `GET /healthz`: once its request line is written, or after a second when
/// `request_line` is false (none is expected).
async fn log_after_a_request(env: &[(&str, &str)], args: &[&str], request_line: bool) -> String {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("log.sqlite3");
    let mut command = Command::new(BINARY);
    command
        .args(["--database-url", &database_url(&database)])
        .args(["--secret-key", SECRET])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RESTFUL_AUTH_LOG");
    for (name, value) in env {
        match value {
            &"" => command.env_remove(name),
            value => command.env(name, value),
        };
    }
    let running = Running::start(command);
    let health = reqwest::get(running.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    if !request_line {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return running.log_text();
    }
    eventually(|| async {
        let log = running.log_text();
        log.contains("/healthz").then_some(log)
    })
    .await
}

#[tokio::test]
async fn rust_log_is_honoured_unless_restful_auth_log_or_log_level_is_set() {
    let quiet_requests = "info,restful_auth::http::observe=warn";
    let log = log_after_a_request(&[("RUST_LOG", quiet_requests)], &[], false).await;
    assert!(log.contains("restful-auth listening"), "{log}");
    assert!(!log.contains("/healthz"), "RUST_LOG did not filter:\n{log}");

    let both = [("RUST_LOG", quiet_requests), ("RESTFUL_AUTH_LOG", "info")];
    let log = log_after_a_request(&both, &[], true).await;
    assert!(log.contains("answered"), "{log}");
    let flag = ["--log-level", "info"];
    let log = log_after_a_request(&[("RUST_LOG", quiet_requests)], &flag, true).await;
    assert!(log.contains("answered"), "{log}");
}

#[tokio::test]
async fn logs_are_json_off_a_terminal_unless_text_is_asked_for() {
    // Standard output is a pipe here: JSON by default ("" unsets the variable).
    let default = [("RESTFUL_AUTH_LOG_FORMAT", "")];
    let log = log_after_a_request(&default, &[], true).await;
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert!(lines.iter().any(|line| line["path"] == "/healthz"), "{log}");

    for format in ["text", "pretty"] {
        let log = log_after_a_request(&[], &["--log-format", format], true).await;
        let line = log.lines().find(|line| line.contains("/healthz")).unwrap();
        assert!(
            line.contains("answered") && line.contains("path=\"/healthz\""),
            "{log}"
        );
    }
}

#[tokio::test]
async fn throttled_requests_are_counted() {
    let service = Service::start(&["--throttle-login-account-ip", "1/1m"]);
    register_and_login(&service, "counted@example.org").await;
    login(&service, "counted@example.org", "wrong password").await;

    let (status, _) = login(&service, "counted@example.org", PASSWORD).await;
    let text = reqwest::get(service.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(status, 429);
    assert!(
        text.contains(r#"throttled_requests_total{limit="login"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated_and_logged() {
    let service = Service::start(&[]);
    let client = reqwest::Client::new();

    let given = client
        .get(service.url("/healthz"))
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    let generated = client.get(service.url("/healthz")).send().await.unwrap();

    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let generated = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    std::thread::sleep(Duration::from_millis(100));
    let log = service.log_text();
    assert!(
        log.contains("trace-me-42") && log.contains(&generated),
        "{log}"
    );
}

#[tokio::test]
async fn a_server_error_is_logged_on_its_request_line_with_the_reason() {
    let service = Service::start(&[
        "--hash-concurrency",
        "1",
        "--hash-queue-limit",
        "1",
        "--throttle-login-account-ip",
        "off",
    ]);
    let email = "flood@example.org";
    register_and_login(&service, email).await;
    let client = reqwest::Client::new();

    let flood: Vec<_> = (0..12)
        .map(|n| {
            tokio::spawn(
                client
                    .post(service.url("/api/login/"))
                    .header("X-Request-Id", format!("flood-{n}"))
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .send(),
            )
        })
        .collect();

    let mut shed = Vec::new();
    for answer in flood {
        let answer = answer.await.unwrap().unwrap();
        if answer.status() == 503 {
            shed.push(
                answer.headers()["x-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert!(!shed.is_empty(), "a flood beyond the queue is shed");
    std::thread::sleep(Duration::from_millis(100));
    let log = service.log_text();
    for id in shed {
        let line = log
            .lines()
            .find(|line| line.contains(&id))
            .unwrap_or_else(|| panic!("no line for {id}: {log}"));
        assert!(
            line.contains("WARN")
                && line.contains("status=503")
                && line.contains("too many password checks in progress"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_for_configured_origins_only() {
    let service = Service::start(&["--cors-origins", "https://app.example.org"]);
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, service.url("/api/login/"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };

    let allowed = preflight("https://app.example.org").await.unwrap();
    let foreign = preflight("https://evil.example.com").await.unwrap();

    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    assert!(allowed.headers().contains_key("x-request-id"));
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_configured_origins_no_cors_header_is_sent() {
    let service = Service::start(&[]);
    let answer = reqwest::Client::new()
        .get(service.url("/healthz"))
        .header("Origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A raw connection to `service` with `sent` written on it; what the service wrote back before
/// it closed the connection, and how long that took. Panics if it is still open after 10 s.
/// What `attempt` finds, trying every 50 ms for 5 s: for a change the service makes within a
/// known interval.
async fn eventually<T, F: Future<Output = Option<T>>>(attempt: impl Fn() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = attempt().await {
            return found;
        }
        assert!(Instant::now() < deadline, "nothing changed in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn answer_until_closed(service: &Service, sent: &[u8]) -> (String, Duration) {
    let address = service.running.address().to_string();
    let mut connection = std::net::TcpStream::connect(address).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    connection.write_all(sent).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut connection, &mut chunk) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the connection stayed open: {error}"),
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_sends_too_slowly_is_cut_off_after_the_client_timeout() {
    let service = Service::start(&["--client-timeout", "1s"]);
    let cut_off_in_time = |elapsed: Duration| {
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(5)).contains(&elapsed),
            "{elapsed:?}"
        );
    };

    // Each of these waits out the timeout: they wait together.
    let [silent, endless_headers, short_body, idle] = std::thread::scope(|scope| {
        [
            // A client that connects and says nothing.
            &b""[..],
            // Headers that never end.
            b"POST /api/login/ HTTP/1.1\r\nHost: localhost\r\n",
            // A body that stops short of its declared length.
            b"POST /api/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 60\r\n\r\n{\"email\": \"slow@example.org\"",
            // A keep-alive connection left idle after its answer.
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ]
        .map(|sent| scope.spawn(|| answer_until_closed(&service, sent)))
        .map(|probe| probe.join().unwrap())
    });

    // Silence and endless headers: the connection is closed, unanswered.
    for (answer, elapsed) in [silent, endless_headers] {
        assert_eq!(answer, "");
        cut_off_in_time(elapsed);
    }
    // A short body: 408, in JSON.
    let (answer, elapsed) = short_body;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.ends_with(r#"{"detail":"Request body not received in time."}"#),
        "{answer}"
    );
    cut_off_in_time(elapsed);
    // The idle connection is closed after its answer.
    let (answer, elapsed) = idle;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    cut_off_in_time(elapsed);

    // A client in time is served as ever.
    let (status, _) = post(
        &reqwest::Client::new(),
        service.url("/api/register/"),
        json!({"email": "quick@example.org", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn sigterm_lets_every_accepted_request_finish() {
    let mut service = Service::start(&[]);
    let tokens = register_and_login(&service, "term@example.org").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // Logins hold a request in flight for a whole hash: the most exposed to a hard stop.
    // Requests sent before the signal must all be answered; those sent after may be refused.
    let signalled = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for stream in 0..8 {
        let (base, access, signalled) = (service.base(), access.clone(), signalled.clone());
        streams.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answered = 0;
            while !signalled.load(Ordering::SeqCst) {
                let request = if stream % 2 == 0 {
                    client.get(format!("{base}/api/me/")).bearer_auth(&access)
                } else {
                    client
                        .post(format!("{base}/api/login/"))
                        .json(&json!({"email": "term@example.org", "password": PASSWORD}))
                };
                let response = request
                    .send()
                    .await
                    .expect("an accepted request was dropped");
                assert_eq!(response.status(), 200, "an accepted request failed");
                answered += 1;
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    signalled.store(true, Ordering::SeqCst);
    // Let the requests just started reach the socket before the signal.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = service.terminate();
        (status, service.log_text())
    })
    .await
    .unwrap();

    let mut answered = 0;
    for stream in streams {
        answered += stream.await.expect("no accepted request failed");
    }
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(answered > 0);
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let service = Service::start(&[]);
    let client = reqwest::Client::new();
    let email = "quiet@example.org";

    let tokens = register_and_login(&service, email).await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (_, rotated) = post(
        &client,
        service.url("/api/refresh/"),
        json!({"refresh_token": first_refresh}),
    )
    .await;
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    // A reused token, a wrong password and a bad token: the failure paths log too.
    post(
        &client,
        service.url("/api/refresh/"),
        json!({"refresh_token": first_refresh}),
    )
    .await;
    login(&service, email, "not the password at all").await;
    me(&service, tokens["access_token"].as_str().unwrap()).await;
    me(&service, rotated["access_token"].as_str().unwrap()).await;
    std::thread::sleep(Duration::from_millis(200));

    let hash: String = rusqlite::Connection::open(&service.database)
        .unwrap()
        .query_row("SELECT password_hash FROM users", [], |row| row.get(0))
        .unwrap();
    let log = service.log_text();
    assert!(log.contains("answered"), "the log was captured: {log}");
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains("a consumed refresh token was presented again")
            && line.contains(r#"path="/api/refresh/""#)
            && line.contains("status=401")),
        "the reuse is logged on its request's line: {log}"
    );
    let access_signature = tokens["access_token"]
        .as_str()
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap();
    for secret in [
        PASSWORD,
        "not the password at all",
        SECRET,
        &hash,
        hash.rsplit('$').next().unwrap(),
        &first_refresh,
        &second_refresh,
        access_signature,
    ] {
        assert!(!log.contains(secret), "{secret:?} reached the log");
    }
}

#[tokio::test]
async fn json_log_lines_are_flat_objects_without_debug_dumps() {
    let service = Service::start(&["--log-format", "json"]);

    let answer = reqwest::Client::new()
        .get(service.url("/healthz?probe=1"))
        .header("X-Request-Id", "flat-line-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let log = eventually(|| async {
        let log = service.log_text();
        (log.contains("flat-line-1") && log.contains("housekeeping done")).then_some(log)
    })
    .await;

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let request = lines
        .iter()
        .find(|line| line["request_id"] == "flat-line-1")
        .unwrap();
    let keys: BTreeSet<&str> = request
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "timestamp",
        "level",
        "target",
        "message",
        "method",
        "path",
        "request_id",
        "status",
        "latency_ms",
        "client",
    ];
    assert_eq!(keys, BTreeSet::from(expected), "{request}");
    assert_eq!(request["level"], "INFO");
    assert_eq!(request["target"], "restful_auth::http::observe");
    assert_eq!(request["message"], "answered");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/healthz");
    assert_eq!(request["status"], 200);
    assert_eq!(request["client"], "127.0.0.1");
    assert!(request["latency_ms"].as_f64().unwrap() > 0.0, "{request}");
    assert!(
        request["timestamp"].as_str().unwrap().ends_with('Z'),
        "{request}"
    );
    for line in &lines {
        for nested in ["fields", "span", "spans"] {
            assert!(line.get(nested).is_none(), "{line}");
        }
    }
    let listening = lines
        .iter()
        .find(|line| line["message"] == "restful-auth listening")
        .unwrap();
    assert_eq!(listening["address"], service.running.address().to_string());
    let housekeeping = lines
        .iter()
        .find(|line| line["message"] == "housekeeping done")
        .unwrap();
    assert_eq!(housekeeping["sessions"], 0, "{housekeeping}");
    assert!(!log.contains("Purged {"), "a Debug dump: {log}");
}

#[tokio::test]
async fn access_log_off_writes_no_line_for_routine_requests_but_keeps_incidents() {
    let service = Service::start(&["--access-log", "off"]);
    let tokens = register_and_login(&service, "quiet-log@example.org").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let client = reqwest::Client::new();

    // Rotated, then presented again: a reuse, whose line tells an operator what happened.
    for _ in 0..2 {
        post(
            &client,
            service.url("/api/refresh/"),
            json!({"refresh_token": refresh}),
        )
        .await;
    }
    let log = eventually(|| async {
        let log = service.log_text();
        log.contains("presented again").then_some(log)
    })
    .await;

    assert!(!log.contains("answered"), "{log}");
    assert!(!log.contains("/api/register/"), "{log}");
    let reuse = log
        .lines()
        .find(|line| line.contains("presented again"))
        .unwrap();
    assert!(
        reuse.contains("WARN") && reuse.contains(r#"path="/api/refresh/""#),
        "{reuse}"
    );
}

#[tokio::test]
async fn a_clean_stop_writes_out_every_queued_log_line() {
    let mut service = Service::start(&[]);
    let client = reqwest::Client::new();

    let requests: Vec<_> = (0..300)
        .map(|n| {
            tokio::spawn(
                client
                    .get(service.url("/healthz"))
                    .header("X-Request-Id", format!("queued-{n}"))
                    .send(),
            )
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = service.terminate();
        // The readers of the process's output finish once it has closed it.
        std::thread::sleep(Duration::from_millis(200));
        (status, service.log_text())
    })
    .await
    .unwrap();

    assert!(status.success(), "{status:?}");
    let answered = log
        .lines()
        .filter(|line| line.contains("request_id=queued-"))
        .count();
    assert_eq!(answered, 300, "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");
}

/// The request lines of a `--log-format json` log, by path: each line's fields.
fn request_lines(log: &str, path: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "answered" && line["path"] == path)
        .collect()
}

#[tokio::test]
async fn the_request_line_names_the_client_and_the_authenticated_user_and_session() {
    let service = Service::start(&["--log-format", "json"]);
    let client = reqwest::Client::new();
    let (_, registered) = post(
        &client,
        service.url("/api/register/"),
        json!({"email": "seen@example.org", "password": PASSWORD}),
    )
    .await;
    let (_, tokens) = login(&service, "seen@example.org", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let sessions: Value = client
        .get(service.url("/api/sessions/"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(me(&service, access).await, 200);
    assert_eq!(me(&service, "not-a-token").await, 401);
    std::thread::sleep(Duration::from_millis(200));

    let log = service.log_text();
    let me_lines = request_lines(&log, "/api/me/");
    let [authenticated, refused] = &me_lines[..] else {
        panic!("two /api/me/ lines expected: {log}");
    };
    assert_eq!(authenticated["status"], 200, "{authenticated}");
    assert_eq!(authenticated["client"], "127.0.0.1", "{authenticated}");
    assert_eq!(
        authenticated["user_id"], registered["id"],
        "{authenticated}"
    );
    assert_eq!(
        authenticated["session_id"], sessions[0]["id"],
        "{authenticated}"
    );
    assert_eq!(refused["client"], "127.0.0.1", "{refused}");
    assert!(refused.get("user_id").is_none(), "{refused}");
    assert!(refused.get("session_id").is_none(), "{refused}");
    let login_line = &request_lines(&log, "/api/login/")[0];
    assert_eq!(login_line["client"], "127.0.0.1", "{login_line}");
    assert!(login_line.get("user_id").is_none(), "{login_line}");
    let access_signature = access.rsplit('.').next().unwrap();
    for secret in [
        access,
        access_signature,
        tokens["refresh_token"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "{secret:?} reached the log");
    }
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_warned_about_once_without_its_value() {
    let service = Service::start(&[]);
    let client = reqwest::Client::new();

    for forged in ["198.51.100.71", "198.51.100.72"] {
        let answer = client
            .get(service.url("/healthz"))
            .header("X-Forwarded-For", forged)
            .send();
        assert_eq!(answer.await.unwrap().status(), 200);
    }
    std::thread::sleep(Duration::from_millis(200));

    let log = service.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("X-Forwarded-For"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains("X-Forwarded-For from 127.0.0.1 ignored")
            && warnings[0].contains("--trusted-proxies"),
        "{}",
        warnings[0]
    );
    assert!(
        !log.contains("198.51.100.7"),
        "a header value was logged: {log}"
    );
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_is_not_warned_about() {
    let service = Service::start(&["--trusted-proxies", "127.0.0.1/32"]);

    let answer = reqwest::Client::new()
        .get(service.url("/healthz"))
        .header("X-Forwarded-For", "198.51.100.71")
        .send();
    assert_eq!(answer.await.unwrap().status(), 200);
    std::thread::sleep(Duration::from_millis(200));

    let log = service.log_text();
    assert!(log.contains("answered"), "the log was captured: {log}");
    assert!(!log.contains("X-Forwarded-For"), "{log}");
}

#[tokio::test]
async fn user_commands_create_list_and_deactivate_accounts() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("admin.sqlite3");

    let created = admin(
        &database,
        &["user", "create", "Admin@Example.org"],
        PASSWORD,
    );
    let weak = admin(&database, &["user", "create", "weak@example.org"], "123");
    let listed = admin(&database, &["user", "list"], "");

    assert!(created.status.success(), "{created:?}");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("This password is too short."));
    assert!(stdout(&listed).contains("Admin@example.org"), "{listed:?}");
    assert!(stdout(&listed).contains("1 accounts."), "{listed:?}");

    // Deactivation ends the sessions of a running service's user within its reload interval.
    let service = Service::start_on(directory, database.clone(), &["--reload-interval", "1s"]);
    let (status, tokens) = login(&service, "admin@example.org", PASSWORD).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(me(&service, access).await, 200);

    let deactivated = admin(&database, &["user", "deactivate", "ADMIN@example.org"], "");
    assert!(deactivated.status.success(), "{deactivated:?}");
    refused_within_reload(&service, access, Duration::from_secs(1)).await;
    assert_eq!(login(&service, "admin@example.org", PASSWORD).await.0, 401);

    let activated = admin(&database, &["user", "activate", "admin@example.org"], "");
    assert!(activated.status.success());
    let (status, tokens) = login(&service, "admin@example.org", PASSWORD).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();

    // A password reset ends the account's sessions, as a thief's may be among them.
    let changed = admin(
        &database,
        &["user", "set-password", "admin@example.org"],
        "a brand new passphrase",
    );
    assert!(changed.status.success(), "{changed:?}");
    refused_within_reload(&service, access, Duration::from_secs(1)).await;
    assert_eq!(login(&service, "admin@example.org", PASSWORD).await.0, 401);
    assert_eq!(
        login(&service, "admin@example.org", "a brand new passphrase")
            .await
            .0,
        200
    );

    // The audit log tells the operator what happened, newest first, and who did it.
    let audit = admin(
        &database,
        &["audit", "--user", "admin@example.org", "--output", "json"],
        "",
    );
    assert!(audit.status.success(), "{audit:?}");
    let events: Vec<Value> = stdout(&audit)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let story: Vec<String> = events
        .iter()
        .rev()
        .map(|event| {
            format!(
                "{} by {}",
                event["event"].as_str().unwrap(),
                event["actor"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            "user.registered by cli",
            "login.succeeded by user",
            "user.deactivated by cli",
            "session.ended by cli",
            "login.failed by user",
            "user.activated by cli",
            "login.succeeded by user",
            "password.reset by cli",
            "session.ended by cli",
            "login.failed by user",
            "login.succeeded by user",
        ]
    );
    assert_eq!(
        events[1]["detail"],
        json!({"reason": "bad_credentials", "count": 1})
    );
    assert_eq!(events[1]["ip"], "127.0.0.1");
    let failed = admin(
        &database,
        &[
            "audit",
            "--event",
            "login.failed",
            "--since",
            "1h",
            "--limit",
            "1",
        ],
        "",
    );
    let table = stdout(&failed);
    assert_eq!(table.lines().count(), 1, "{failed:?}");
    assert!(table.contains("\tlogin.failed\t"), "{table}");
    let unknown = admin(&database, &["audit", "--event", "login.maybe"], "");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("login.failed"));
}

/// Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 of the derived key>`.
fn django_pbkdf2(password: &str, salt: &str, iterations: u32) -> String {
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut derived,
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(derived);
    format!("pbkdf2_sha256${iterations}${salt}${encoded}")
}

#[tokio::test]
async fn django_users_are_imported_once_and_their_passwords_keep_working() {
    let directory = tempfile::tempdir().unwrap();
    let django = directory.path().join("django.sqlite3");
    let database = directory.path().join("restful.sqlite3");
    {
        let conn = rusqlite::Connection::open(&django).unwrap();
        conn.execute_batch(
            "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, password TEXT, username TEXT,
                                     email TEXT, is_active BOOL)",
        )
        .unwrap();
        let rows = [
            (
                1,
                django_pbkdf2("django-era passphrase", "pepper1", 1000),
                "ann",
                "Ann@Example.org",
                true,
            ),
            (
                2,
                django_pbkdf2("another passphrase", "pepper2", 1000),
                "ann2",
                "ann@example.org",
                true,
            ),
            (
                3,
                django_pbkdf2("sleepy passphrase", "pepper3", 1000),
                "bob",
                "bob@example.org",
                false,
            ),
        ];
        for (id, hash, username, email, active) in rows {
            conn.execute(
                "INSERT INTO auth_user VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id, hash, username, email, active],
            )
            .unwrap();
        }
    }
    let from = django.to_str().unwrap();

    let first = admin(&database, &["import-django", "--from", from], "");
    let again = admin(&database, &["import-django", "--from", from], "");

    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).contains("Imported 2 users; skipped 1; refused 0."),
        "{first:?}"
    );
    assert!(
        stdout(&first)
            .contains(r#"skipped "ann@example.org": an account with this email already exists"#)
    );
    assert!(
        stdout(&again).contains("Imported 0 users; skipped 3; refused 0."),
        "{again:?}"
    );

    let service = Service::start_on(directory, database.clone(), &[]);
    let stored_hash = || -> String {
        rusqlite::Connection::open(&database)
            .unwrap()
            .query_row(
                "SELECT password_hash FROM users WHERE email_key = 'ann@example.org'",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert!(stored_hash().starts_with("pbkdf2_sha256$"));

    let (status, tokens) = login(&service, "ann@example.org", "django-era passphrase").await;
    assert_eq!(status, 200, "{tokens}");
    assert!(
        stored_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "upgraded at login"
    );
    assert_eq!(
        login(&service, "ann@example.org", "django-era passphrase")
            .await
            .0,
        200
    );
    assert_eq!(
        login(&service, "ann@example.org", "another passphrase")
            .await
            .0,
        401
    );
    // Inactive in Django, inactive here.
    assert_eq!(
        login(&service, "bob@example.org", "sleepy passphrase")
            .await
            .0,
        401
    );
    let profile = reqwest::Client::new()
        .get(service.url("/api/me/"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(profile["username"], "ann");
}

/// A Django table holding `rows` of (id, password hash, username, email).
fn django_database(path: &Path, rows: &[(i64, &str, &str, &str)]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, password TEXT, username TEXT,
                                 email TEXT, is_active BOOL)",
    )
    .unwrap();
    for (id, hash, username, email) in rows {
        conn.execute(
            "INSERT INTO auth_user VALUES (?1, ?2, ?3, ?4, 1)",
            rusqlite::params![id, hash, username, email],
        )
        .unwrap();
    }
}

/// Would allocate 4 TiB (`m` is in KiB) if a login computed it.
const HASH_OF_4_TIB: &str = "argon2$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0\
    $QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE";

#[tokio::test]
async fn a_hash_beyond_the_cost_bounds_is_refused_at_import_and_fails_a_login_harmlessly() {
    let directory = tempfile::tempdir().unwrap();
    let django = directory.path().join("django.sqlite3");
    let database = directory.path().join("restful.sqlite3");
    let days_of_pbkdf2 =
        "pbkdf2_sha256$4294967295$salt$QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    let fine = django_pbkdf2("django-era passphrase", "pepper1", 1000);
    django_database(
        &django,
        &[
            (1, HASH_OF_4_TIB, "ann", "ann@example.org"),
            (2, days_of_pbkdf2, "bob", "bob@example.org"),
            (
                3,
                "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuv",
                "cy",
                "cy@example.org",
            ),
            (4, &fine, "dee", "dee@example.org"),
        ],
    );

    let import = admin(
        &database,
        &["import-django", "--from", django.to_str().unwrap()],
        "",
    );

    assert!(!import.status.success(), "{import:?}");
    let printed = stdout(&import);
    assert!(
        printed.contains("Imported 1 users; skipped 0; refused 3."),
        "{printed}"
    );
    assert!(
        printed.contains(
            r#"refused "ann@example.org": password hash refused: Argon2 cost m=4294967295 KiB"#
        ),
        "{printed}"
    );
    assert!(
        printed.contains(r#"refused "bob@example.org""#),
        "{printed}"
    );
    assert!(printed.contains(r#"refused "cy@example.org""#), "{printed}");

    // The same hash written into the database by other means.
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute(
            "UPDATE users SET password_hash = ?1 WHERE email_key = 'dee@example.org'",
            [HASH_OF_4_TIB],
        )
        .unwrap();
    let service = Service::start_on(directory, database.clone(), &[]);
    let started = Instant::now();
    let attempts = [
        login(&service, "dee@example.org", "anything").await,
        login(&service, "dee@example.org", "django-era passphrase").await,
    ];

    for (status, body) in attempts {
        assert_eq!(status, 401, "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no unbounded hash ran"
    );
    let health = reqwest::get(service.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "the process is alive");
    let log = service.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("beyond the cost limits") && line.contains("user_id=1")),
        "{log}"
    );
}

#[tokio::test]
async fn settings_changed_at_run_time_reach_the_running_service() {
    let service = Service::start(&["--reload-interval", "1s"]);
    register_and_login(&service, "tuned@example.org").await;

    let set = admin(
        &service.database,
        &["settings", "set", "access-token-lifetime", "2m"],
        "",
    );
    let refused = admin(
        &service.database,
        &["settings", "set", "refresh-retry-grace", "5m"],
        "",
    );
    let unknown = admin(
        &service.database,
        &["settings", "set", "nonsense", "1s"],
        "",
    );
    // The service reloads within its interval (1 s): until then, logins see the old lifetime.
    let (status, tokens) = eventually(|| async {
        let (status, tokens) = login(&service, "tuned@example.org", PASSWORD).await;
        (tokens["expires_in"] == 120).then_some((status, tokens))
    })
    .await;

    assert!(set.status.success(), "{set:?}");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("refresh-retry-grace must be between 0s and 1m")
    );
    assert!(!unknown.status.success());
    assert_eq!(status, 200);
    assert_eq!(tokens["expires_in"], 120);
    let shown = stdout(&admin(&service.database, &["settings", "show"], ""));
    assert!(shown.contains("access-token-lifetime\t120s"), "{shown}");
}

#[tokio::test]
async fn the_key_commands_rotate_list_and_retire_signing_keys_of_a_running_service() {
    // No --secret-key: the keys live in the database.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("keys.sqlite3");
    let service = Service::start_on(directory, database.clone(), &["--reload-interval", "1s"]);
    let before = register_and_login(&service, "keys@example.org").await;
    let kid = |tokens: &Value| {
        let header = tokens["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // A delayed rotation publishes the key; one `--now` signs with it.
    let published = admin(&database, &["keys", "rotate"], "");
    let rotated = admin(&database, &["keys", "rotate", "--now"], "");
    // The service reloads within its interval (1 s): until then, it signs with the old key.
    let after = eventually(|| async {
        let (_, after) = login(&service, "keys@example.org", PASSWORD).await;
        (kid(&after) != kid(&before)).then_some(after)
    })
    .await;
    let listed = admin(&database, &["keys", "list"], "");
    let retired = admin(&database, &["keys", "retire", &kid(&after)], "");
    let unknown = admin(&database, &["keys", "retire", "no-such-key"], "");
    let refused = eventually(|| async {
        let status = me(&service, after["access_token"].as_str().unwrap()).await;
        (status == 401).then_some(status)
    })
    .await;

    assert!(published.status.success(), "{published:?}");
    assert!(stdout(&published).contains("EdDSA"), "{published:?}");
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(stdout(&rotated).contains(&kid(&after)));
    assert_eq!(
        me(&service, before["access_token"].as_str().unwrap()).await,
        200
    );
    let listed = stdout(&listed);
    let state_of = |kid: &str| {
        listed
            .lines()
            .find(|line| line.starts_with(kid))
            .and_then(|line| line.rsplit('\t').next())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(state_of(&kid(&after)), "current", "{listed}");
    assert_eq!(state_of(&kid(&before)), "retiring", "{listed}");
    assert_eq!(listed.matches("\tnext").count(), 1, "{listed}");
    assert!(retired.status.success(), "{retired:?}");
    assert_eq!(refused, 401);
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn housekeeping_deletes_ended_sessions_with_their_tokens_but_keeps_live_ones_whole() {
    let service = Service::start(&[]);
    let client = reqwest::Client::new();
    let live = register_and_login(&service, "tidy@example.org").await;
    let (_, rotated) = post(
        &client,
        service.url("/api/refresh/"),
        json!({"refresh_token": live["refresh_token"]}),
    )
    .await;
    let (_, ended) = login(&service, "tidy@example.org", PASSWORD).await;
    post(
        &client,
        service.url("/api/logout/"),
        json!({"refresh_token": ended["refresh_token"]}),
    )
    .await;
    let count = |table: &str| -> i64 {
        rusqlite::Connection::open(&service.database)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    };
    assert_eq!((count("sessions"), count("refresh_tokens")), (2, 3));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let purged = admin(&service.database, &["--retention", "1s", "purge"], "");

    assert!(purged.status.success(), "{purged:?}");
    assert!(
        stdout(&purged).contains("Deleted 1 refresh tokens, 1 sessions"),
        "{purged:?}"
    );
    // The live session keeps the digest of the token it consumed, to recognise a replay.
    assert_eq!((count("sessions"), count("refresh_tokens")), (1, 2));
    let (status, _) = post(
        &client,
        service.url("/api/refresh/"),
        json!({"refresh_token": rotated["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 200, "the live session survived");
}

// ---- protocol edges ------------------------------------------------------------------------------

/// The status line, the header lines (names lower-cased) and the body of an answer read whole.
fn parse_answer(answer: &str) -> (String, Vec<(String, String)>, String) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {answer:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    (status_line, headers, body.to_owned())
}

/// Checks that `answer` has `status`, is JSON `{"detail": detail}` with nosniff and no-store.
#[track_caller]
fn assert_json_error(answer: &str, status: &str, detail: &str) {
    let (status_line, headers, body) = parse_answer(answer);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(found, _)| found == name)
            .map(|(_, value)| value.as_str())
    };
    assert!(
        status_line.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    assert_eq!(
        header("content-type"),
        Some("application/json; charset=utf-8"),
        "{answer}"
    );
    assert_eq!(
        header("x-content-type-options"),
        Some("nosniff"),
        "{answer}"
    );
    assert_eq!(header("cache-control"), Some("no-store"), "{answer}");
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().as_str()),
        "{answer}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "detail": detail }),
        "{answer}"
    );
}

fn request_with_header_of(size: usize) -> Vec<u8> {
    let mut request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Padding: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', size));
    request.extend_from_slice(b"\r\n\r\n");
    request
}

#[tokio::test]
async fn protocol_errors_are_answered_in_json_like_every_other_error() {
    let service = Service::start(&["--client-timeout", "1s"]);

    // Headers beyond 32 KiB in all: 431 (they used to pass up to about 480 KiB).
    let (too_large, _) = answer_until_closed(&service, &request_with_header_of(40 * 1024));
    // A request line that is not one, and a header line without a colon: 400.
    let (garbage, _) = answer_until_closed(&service, b"GARBAGE\r\n\r\n");
    let (bad_header, _) = answer_until_closed(
        &service,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
    );
    // A bad request after a good one on the same connection: the good answer is kept whole.
    let (pipelined, _) = answer_until_closed(
        &service,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGARBAGE\r\n\r\n",
    );
    // The errors the service itself answers keep their JSON: a body too large, and too late.
    let (body_too_large, _) = answer_until_closed(
        &service,
        b"POST /api/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 70000\r\n\r\n",
    );
    let (body_too_late, _) = answer_until_closed(
        &service,
        b"POST /api/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 60\r\n\r\n{",
    );

    assert_json_error(&too_large, "431", "Request header fields too large.");
    assert_json_error(&garbage, "400", "Malformed request.");
    assert_json_error(&bad_header, "400", "Malformed request.");
    let (first, second) = pipelined
        .split_once(r#"{"status":"ok"}"#)
        .unwrap_or_else(|| panic!("{pipelined}"));
    assert!(first.starts_with("HTTP/1.1 200 "), "{pipelined}");
    assert_json_error(second, "400", "Malformed request.");
    assert_json_error(&body_too_large, "413", "Request body too large.");
    assert_json_error(&body_too_late, "408", "Request body not received in time.");
}

#[tokio::test]
async fn headers_of_20_kib_are_read() {
    let service = Service::start(&[]);

    let (answer, _) = answer_until_closed(&service, &request_with_header_of(20 * 1024));

    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

/// A connection that was answered once and is kept open, idle.
fn idle_connection(service: &Service) -> std::net::TcpStream {
    let address = service.running.address().to_string();
    let mut connection = std::net::TcpStream::connect(address).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    connection
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(br#"{"status":"ok"}"#) {
        let read = std::io::Read::read(&mut connection, &mut chunk).expect("an answer in time");
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&chunk[..read]);
    }
    connection
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once_and_accepting_goes_on() {
    let service = Service::start(&["--max-connections", "8"]);
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut held: Vec<_> = (0..8).map(|_| idle_connection(&service)).collect();

    // Two more while eight are held: each closed unanswered, at once, not left waiting.
    let excess: Vec<_> = (0..2)
        .map(|_| answer_until_closed(&service, request))
        .collect();
    // Two held ones go: a new connection is served again (once the service saw them go).
    held.truncate(6);
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        let (answer, _) = answer_until_closed(&service, request);
        if !answer.is_empty() || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    let metrics = reqwest::get(service.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    for (answer, elapsed) in excess {
        assert_eq!(answer, "");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("connections_refused_total "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 2, "{refused}");
}

/// The soft and hard limits on open files of process `pid`.
fn open_files_limits(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"))
        .to_owned();
    let mut fields = line.split_whitespace().skip(3);
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_service_raises_its_open_files_limit_to_the_hard_limit() {
    let (_, hard) = open_files_limits("self");
    assert!(
        hard == "unlimited" || hard.parse::<u64>().unwrap() > 256,
        "this test needs a hard limit above 256, not {hard}"
    );
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("limits.sqlite3");
    let mut lowered = Command::new("sh");
    lowered.args(["-c", r#"ulimit -Sn 256 && exec "$0" "$@""#, BINARY]);

    let service = Service::launch(lowered, directory, database, &[]);

    let (soft, raised_hard) = open_files_limits(&service.running.pid().to_string());
    assert_eq!(raised_hard, hard);
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    let log = service.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("INFO") && line.contains(&format!("open_files={soft}"))),
        "{log}"
    );
}

/// Runs the service on `database` with `args`, expecting it to refuse to start: its exit
/// status and what it wrote.
fn refused_start(database: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(BINARY);
    command
        .args(["--database-url", &database_url(database)])
        .args(args)
        .env_remove("DATABASE_URL");
    refused(command)
}

/// Runs `command` (the service: `--bind` and `--metrics-bind` are added), expecting it to
/// refuse to start: its exit status and what it wrote to stderr.
fn refused(mut command: Command) -> (std::process::ExitStatus, String) {
    let mut child = command
        .args(["--bind", "127.0.0.1:0", "--metrics-bind", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the service started instead of refusing:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A new master key file (32 random bytes, base64) readable by its owner only.
#[cfg(unix)]
fn write_master_key(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(
        file,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
    .unwrap();
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn start_is_refused_for_a_database_or_master_key_readable_by_others_unless_allowed() {
    // Arrange: a database and its generated master key, made readable by everyone.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("open.sqlite3");
    let key_file = directory.path().join("open.sqlite3.master-key");
    let mut service = Service::start_on(tempfile::tempdir().unwrap(), database.clone(), &[]);
    // Answered once the server runs, and with it the SIGTERM handler.
    let health = reqwest::get(service.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(service.terminate().success());
    assert!(
        service
            .log_text()
            .contains(&format!("path={}", key_file.display())),
        "the generated master key is announced:\n{}",
        service.log_text()
    );
    chmod(&database, 0o644);

    // Act
    let (database_status, database_error) = refused_start(&database, &[]);
    chmod(&database, 0o600);
    chmod(&key_file, 0o644);
    let (key_status, key_error) = refused_start(&database, &[]);
    chmod(&database, 0o644);
    let allowed = Service::start_on(
        directory,
        database.clone(),
        &["--allow-insecure-permissions"],
    );

    // Assert
    assert_eq!(database_status.code(), Some(1), "{database_error}");
    assert!(
        database_error.contains(&database.display().to_string())
            && database_error.contains("chmod 600")
            && database_error.contains("--allow-insecure-permissions"),
        "{database_error}"
    );
    assert_eq!(key_status.code(), Some(1), "{key_error}");
    assert!(
        key_error.contains(&key_file.display().to_string()) && key_error.contains("chmod 600"),
        "{key_error}"
    );
    assert!(allowed.log_text().contains("restful-auth listening"));
}

#[cfg(unix)]
#[tokio::test]
async fn a_missing_or_wrong_master_key_stops_the_start_and_changes_nothing() {
    // Arrange: keys sealed under the generated master key, which then goes missing.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("lost.sqlite3");
    let key_file = directory.path().join("lost.sqlite3.master-key");
    let wrong_key = directory.path().join("wrong.key");
    write_master_key(&wrong_key);
    let mut service = Service::start_on(tempfile::tempdir().unwrap(), database.clone(), &[]);
    register_and_login(&service, "lost@example.org").await;
    assert!(service.terminate().success());
    let kept = directory.path().join("kept.key");
    std::fs::rename(&key_file, &kept).unwrap();
    let before = std::fs::read(&database).unwrap();

    // Act
    let (missing_status, missing_error) = refused_start(&database, &[]);
    let (wrong_status, wrong_error) = refused_start(
        &database,
        &["--master-key-file", wrong_key.to_str().unwrap()],
    );

    // Assert
    assert_eq!(missing_status.code(), Some(1), "{missing_error}");
    assert!(
        missing_error.contains(&key_file.display().to_string())
            && missing_error.contains("restore"),
        "{missing_error}"
    );
    assert!(!key_file.exists(), "no new key replaces the lost one");
    assert_eq!(wrong_status.code(), Some(1), "{wrong_error}");
    assert!(wrong_error.contains("does not decrypt"), "{wrong_error}");
    assert_eq!(std::fs::read(&database).unwrap(), before);
    std::fs::rename(&kept, &key_file).unwrap();
    let restored = Service::start_on(directory, database, &[]);
    assert!(restored.log_text().contains("restful-auth listening"));
}

#[cfg(unix)]
#[tokio::test]
async fn rewrapping_under_a_new_master_key_keeps_every_token_valid_and_retires_the_old_key() {
    // Arrange
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("rewrap.sqlite3");
    let new_key = directory.path().join("new.key");
    write_master_key(&new_key);
    let mut service = Service::start_on(tempfile::tempdir().unwrap(), database.clone(), &[]);
    let tokens = register_and_login(&service, "rewrap@example.org").await;
    assert!(service.terminate().success());

    // Act
    let rewrapped = admin(
        &database,
        &[
            "keys",
            "rewrap",
            "--new-master-key-file",
            new_key.to_str().unwrap(),
        ],
        "",
    );
    let (old_status, old_error) = refused_start(&database, &[]);
    let service = Service::start_on(
        directory,
        database.clone(),
        &["--master-key-file", new_key.to_str().unwrap()],
    );

    // Assert
    assert!(rewrapped.status.success(), "{rewrapped:?}");
    assert!(
        stdout(&rewrapped).contains("--master-key-file"),
        "{rewrapped:?}"
    );
    assert_eq!(old_status.code(), Some(1), "{old_error}");
    assert!(old_error.contains("does not decrypt"), "{old_error}");
    assert_eq!(
        me(&service, tokens["access_token"].as_str().unwrap()).await,
        200
    );
    let (status, _) = post(
        &reqwest::Client::new(),
        service.url("/api/refresh/"),
        json!({"refresh_token": tokens["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 200);
}

/// `restful-auth user reset-link EMAIL` prints a one-time link built from `--public-url`: the
/// only place a token is printed. It works once against the running service, and nowhere in
/// the service's log.
#[tokio::test]
async fn user_reset_link_prints_a_one_time_link_that_resets_a_password_once() {
    // Arrange
    let service = Service::start(&["--public-url", "https://auth.example.org"]);
    register_and_login(&service, "ann@example.org").await;
    let client = reqwest::Client::new();

    // Act
    let printed = admin(
        &service.database,
        &[
            "--public-url",
            "https://auth.example.org",
            "user",
            "reset-link",
            "Ann@example.org",
        ],
        "",
    );
    let unknown = admin(
        &service.database,
        &["user", "reset-link", "nobody@example.org"],
        "",
    );
    let link = stdout(&printed).trim().to_owned();
    let token = link.split("#token=").nth(1).unwrap_or_default().to_owned();
    let body = json!({"token": token, "new_password": "a brand new passphrase"});
    let confirm = service.url("/api/password/reset/confirm/");
    let first = post(&client, confirm.clone(), body.clone()).await;
    let second = post(&client, confirm, body).await;
    std::thread::sleep(Duration::from_millis(200));

    // Assert
    assert!(printed.status.success(), "{printed:?}");
    assert!(
        link.starts_with("https://auth.example.org/reset/#token="),
        "{link}"
    );
    assert_eq!(token.len(), 43, "32 bytes, base64url");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no active account"),
        "{unknown:?}"
    );
    assert_eq!(first, (200, json!({"detail": "Password has been reset."})));
    assert_eq!(
        second,
        (400, json!({"token": ["Invalid or expired link."]}))
    );
    assert_eq!(login(&service, "ann@example.org", PASSWORD).await.0, 401);
    assert_eq!(
        login(&service, "ann@example.org", "a brand new passphrase")
            .await
            .0,
        200
    );
    assert!(
        !service.log_text().contains(&token),
        "the token reached the log"
    );
}

/// The SMTP password, in `--smtp-url` or in its file, reaches no log line and no error: not
/// when sending fails, not when the URL is refused at start.
#[tokio::test]
async fn the_smtp_password_never_reaches_a_log_line_or_an_error() {
    // Arrange: nothing listens on the SMTP port, so every attempt fails and is logged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let password = "s3cr3t-smtp-pass";
    let url = format!("smtp://mailer:{password}@127.0.0.1:{port}?tls=opportunistic");
    let service = Service::start(&["--smtp-url", &url]);
    register_and_login(&service, "ann@example.org").await;

    // Act
    let (status, _) = post(
        &reqwest::Client::new(),
        service.url("/api/password/reset/"),
        json!({"email": "ann@example.org"}),
    )
    .await;
    let log = eventually(|| async {
        let log = service.log_text();
        log.contains("sending a mail failed").then_some(log)
    })
    .await;
    let directory = tempfile::tempdir().unwrap();
    let refused = Command::new(BINARY)
        .args([
            "--database-url",
            &database_url(&directory.path().join("x.sqlite3")),
        ])
        .args([
            "--smtp-url",
            &format!("smtp://mailer:{password}@127.0.0.1:notaport"),
        ])
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();

    // Assert
    assert_eq!(status, 202);
    assert!(log.contains(&format!("smtp://127.0.0.1:{port}")), "{log}");
    assert!(
        !log.contains(password),
        "the SMTP password reached the log: {log}"
    );
    assert!(!refused.status.success());
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(refusal.contains("--smtp-url"), "{refusal}");
    assert!(
        !refusal.contains(password),
        "the SMTP password is in the error: {refusal}"
    );
}

/// A file holding `content`, readable by its owner only.
#[cfg(unix)]
fn secret_file(directory: &Path, name: &str, content: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, content).unwrap();
    chmod(&path, 0o600);
    path
}

/// The service with its secrets in files (`…_FILE` variables), its log captured.
fn start_with_secret_files(variables: &[(&str, &Path)]) -> Running {
    let mut command = Command::new(BINARY);
    command
        .env_remove("DATABASE_URL")
        .env_remove("RESTFUL_AUTH_SECRET_KEY")
        .env("RESTFUL_AUTH_LOG", "debug");
    for (name, path) in variables {
        command.env(name, path);
    }
    Running::start(command)
}

#[cfg(unix)]
#[tokio::test]
async fn secrets_given_as_files_are_used_and_never_shown() {
    // Arrange: the database URL and the signing keys in files, each with a trailing newline.
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("from-a-file.sqlite3");
    let url_file = secret_file(
        directory.path(),
        "database-url",
        &format!("{}\n", database_url(&database)),
    );
    let old_key = "the-old-signing-key-held-in-a-file-0123456789";
    let new_key = "the-new-signing-key-held-in-a-file-9876543210";
    let old_key_file = secret_file(directory.path(), "old-key", &format!("{old_key}\n"));
    let new_key_file = secret_file(directory.path(), "new-key", &format!("{new_key}\r\n"));
    let previous_file = secret_file(
        directory.path(),
        "previous-keys",
        &format!("{old_key}\nanother-retired-key-0123456789abcdef\n"),
    );

    // Act: a token signed by the key of the first file, presented after the key changed.
    let first = start_with_secret_files(&[
        ("DATABASE_URL_FILE", &url_file),
        ("RESTFUL_AUTH_SECRET_KEY_FILE", &old_key_file),
    ]);
    let client = reqwest::Client::new();
    let (registered, _) = post(
        &client,
        first.url("/api/register/"),
        json!({"email": "filed@example.org", "password": PASSWORD}),
    )
    .await;
    let (_, tokens) = post(
        &client,
        first.url("/api/login/"),
        json!({"email": "filed@example.org", "password": PASSWORD}),
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let first_log = first.log_text();
    drop(first);
    let second = start_with_secret_files(&[
        ("DATABASE_URL_FILE", &url_file),
        ("RESTFUL_AUTH_SECRET_KEY_FILE", &new_key_file),
        ("RESTFUL_AUTH_PREVIOUS_SECRET_KEYS_FILE", &previous_file),
    ]);
    let me = client
        .get(second.url("/api/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let (_, renewed) = post(
        &client,
        second.url("/api/login/"),
        json!({"email": "filed@example.org", "password": PASSWORD}),
    )
    .await;

    // Assert: the database the file names, tokens signed with each file's key (no newline).
    assert_eq!(registered, 201);
    assert!(database.exists());
    assert_eq!(me.status(), 200, "the previous key verifies");
    let verify = |token: &str, key: &str| {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["restful-auth"]);
        jsonwebtoken::decode::<Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(key.as_bytes()),
            &validation,
        )
        .is_ok()
    };
    assert!(verify(&access, old_key));
    assert!(verify(renewed["access_token"].as_str().unwrap(), new_key));
    let log = format!("{first_log}\n{}", second.log_text());
    for secret in [old_key, new_key, "another-retired-key"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_secret_given_twice_invalid_or_in_an_exposed_file_stops_the_start_unshown() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("refused.sqlite3");
    let secret = "a-signing-key-that-must-stay-unseen-0123456789";
    let key_file = secret_file(directory.path(), "key", secret);
    let url_file = secret_file(
        directory.path(),
        "url",
        "postgres://app:database-password-unseen@127.0.0.1/auth",
    );
    let smtp_password_file = secret_file(directory.path(), "smtp", "smtp-file-password-unseen");
    let exposed_file = secret_file(directory.path(), "exposed", secret);
    chmod(&exposed_file, 0o644);
    let short_file = secret_file(directory.path(), "short", "short-key-unseen");
    let run = |variables: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(BINARY);
        command
            .env_remove("DATABASE_URL")
            .env_remove("RESTFUL_AUTH_SECRET_KEY")
            .args(args);
        for (name, value) in variables {
            command.env(name, value);
        }
        refused(command)
    };
    let database = database_url(&database);
    let key_file = key_file.to_str().unwrap();
    let exposed_file = exposed_file.to_str().unwrap();

    let refusals = [
        run(
            &[("RESTFUL_AUTH_SECRET_KEY", secret)],
            &["--database-url", &database, "--secret-key-file", key_file],
        ),
        run(
            &[
                (
                    "DATABASE_URL",
                    "postgres://app:env-password-unseen@127.0.0.1/auth",
                ),
                ("DATABASE_URL_FILE", url_file.to_str().unwrap()),
            ],
            &[],
        ),
        run(
            &[],
            &[
                "--database-url",
                &database,
                "--secret-key-file",
                exposed_file,
            ],
        ),
        run(
            &[],
            &[
                "--database-url",
                &database,
                "--secret-key-file",
                short_file.to_str().unwrap(),
            ],
        ),
        run(
            &[(
                "RESTFUL_AUTH_SMTP_PASSWORD_FILE",
                smtp_password_file.to_str().unwrap(),
            )],
            &[
                "--database-url",
                &database,
                "--smtp-url",
                "smtp://mailer:url-password-unseen@127.0.0.1:25",
            ],
        ),
        // Refused values too: a mistyped secret is still most of the secret.
        run(&[], &["--secret-key", "short-key-unseen"]),
        run(&[("RESTFUL_AUTH_MASTER_KEY", "short-key-unseen")], &[]),
    ];

    let expected: [&[&str]; 7] = [
        &[
            "'--secret-key <",
            "'--secret-key-file <",
            "cannot be used with",
        ],
        &[
            "'--database-url <",
            "'--database-url-file <",
            "cannot be used with",
        ],
        &[exposed_file, "chmod 600"],
        &[short_file.to_str().unwrap(), "is shorter than 32 bytes"],
        &["--smtp-password-file", "give only one"],
        &[
            "--secret-key (RESTFUL_AUTH_SECRET_KEY)",
            "at least 32 bytes",
        ],
        &["--master-key (RESTFUL_AUTH_MASTER_KEY)", "32 bytes"],
    ];
    for ((status, error), expected) in refusals.iter().zip(expected) {
        assert_eq!(status.code(), Some(1), "{error}");
        for expected in expected {
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
        for unseen in [secret, "password-unseen", "short-key-unseen"] {
            assert!(!error.contains(unseen), "{unseen} shown: {error}");
        }
    }
}
