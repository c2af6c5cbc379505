//! The shipped deployment, for real: nginx with `deploy/nginx.conf`'s `location /` in front of
//! two instances of the executable on one database, started as that file's instructions say.
//! Clients behind the proxy must still be told apart: by the throttle and in the session list.
//!
//! Needs nginx (Debian's `nginx` package); without it the test is skipped loudly, unless
//! `RESTFUL_AUTH_REQUIRE_NGINX` is set (as CI does), which makes it fail instead.

use std::any::Any;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// Only `FreshDatabase` is used here; the module is shared with the API suite.
#[allow(dead_code)]
#[path = "api/pg.rs"]
mod pg;

// Shared with tests/operations.rs, which uses more of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use support::{BINARY, Running};
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "proxy-test-secret-0123456789abcdef";
const STARTUP: Duration = Duration::from_secs(20);

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The text of the block that starts with `opening` (e.g. `location / {`), braces included.
/// Braces in comments do not count.
fn block<'a>(config: &'a str, opening: &str) -> &'a str {
    let start = config
        .find(opening)
        .unwrap_or_else(|| panic!("no `{opening}` in deploy/nginx.conf"));
    let mut depth = 0;
    let mut in_comment = false;
    for (offset, character) in config[start..].char_indices() {
        match character {
            '#' => in_comment = true,
            '\n' => in_comment = false,
            '{' if !in_comment => depth += 1,
            '}' if !in_comment => {
                depth -= 1;
                if depth == 0 {
                    return &config[start..=start + offset];
                }
            }
            _ => {}
        }
    }
    panic!("`{opening}` is not closed in deploy/nginx.conf")
}

/// The trusted proxies that the instructions at the top of `deploy/nginx.conf` start the
/// instances with, as a flag or its environment twin.
fn trusted_proxies_of_the_instructions(config: &str) -> String {
    let instructions = config.lines().take_while(|line| line.starts_with('#'));
    let words: Vec<&str> = instructions.flat_map(str::split_whitespace).collect();
    words
        .iter()
        .enumerate()
        .find_map(|(at, word)| {
            word.strip_prefix("RESTFUL_AUTH_TRUSTED_PROXIES=")
                .or_else(|| (*word == "--trusted-proxies").then(|| words.get(at + 1).copied())?)
        })
        .unwrap_or_else(|| {
            panic!(
                "deploy/nginx.conf's instructions start the instances without \
                 --trusted-proxies: behind nginx every client would be 127.0.0.1"
            )
        })
        .to_owned()
}

/// nginx in the foreground in a directory of its own, with the shipped `location /` and
/// upstream settings in front of `upstreams`; killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    directory: tempfile::TempDir,
}

impl Nginx {
    fn start(executable: &Path, upstreams: &[u16]) -> Nginx {
        let shipped = deploy_file("deploy/nginx.conf");
        let location = block(&shipped, "location / {");
        // The shipped upstream's settings (balancing, keepalive) with our instances as its
        // servers.
        let servers: String = upstreams
            .iter()
            .map(|port| format!("    server 127.0.0.1:{port};\n"))
            .collect();
        let upstream: String = block(&shipped, "upstream restful_auth {")
            .lines()
            .filter(|line| !line.trim_start().starts_with("server "))
            .map(|line| match line.ends_with('{') {
                true => format!("{line}\n{servers}"),
                false => format!("{line}\n"),
            })
            .collect();
        let directory = tempfile::tempdir().unwrap();
        let here = directory.path().display();
        let port = free_port();
        let config = format!(
            "daemon off;\n\
             master_process off;\n\
             pid {here}/nginx.pid;\n\
             error_log {here}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {here}/access.log;\n\
             client_body_temp_path {here}/client_body;\n\
             proxy_temp_path {here}/proxy;\n\
             fastcgi_temp_path {here}/fastcgi;\n\
             uwsgi_temp_path {here}/uwsgi;\n\
             scgi_temp_path {here}/scgi;\n\
             {upstream}\n\
             server {{\n\
             listen 127.0.0.1:{port};\n\
             {location}\n\
             }}\n\
             }}\n"
        );
        let config_path = directory.path().join("nginx.conf");
        std::fs::write(&config_path, &config).unwrap();
        let child = Command::new(executable)
            .arg("-p")
            .arg(directory.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(directory.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            port,
            directory,
        };
        nginx.wait_until_listening(&config);
        nginx
    }

    fn wait_until_listening(&mut self, config: &str) {
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nginx did not start ({exited:?}):\n{}\n{config}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where nginx is installed (Debian puts it in /usr/sbin, which a user's PATH may lack).
fn nginx_executable() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|directory| directory.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// One instance of the service, its log captured; killed when dropped.
struct Instance {
    running: Running,
}

impl Instance {
    fn start(database_url: &str, args: &[&str]) -> Instance {
        let mut command = Command::new(BINARY);
        command
            .args(["--database-url", database_url, "--secret-key", SECRET])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("RESTFUL_AUTH_TRUSTED_PROXIES");
        Instance {
            running: Running::start(command),
        }
    }

    fn port(&self) -> u16 {
        self.running.address().port()
    }

    fn log_text(&self) -> String {
        self.running.log_text()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The database both instances share: a fresh PostgreSQL database when `TEST_DATABASE_URL`
/// names a server, else one SQLite file; its URL, and what keeps it alive.
async fn shared_database() -> (String, Box<dyn Any + Send>) {
    match pg::server_url() {
        Some(server) => {
            let fresh = pg::FreshDatabase::create(server).await;
            (fresh.url.clone(), Box::new(fresh))
        }
        None => {
            let directory = tempfile::tempdir().unwrap();
            let url = format!(
                "sqlite://{}",
                directory.path().join("shared.sqlite3").display()
            );
            (url, Box::new(directory))
        }
    }
}

/// A client whose connections come from `address` (any 127.x address is this machine's).
struct LoopbackClient {
    http: reqwest::Client,
}

impl LoopbackClient {
    fn from(address: [u8; 4]) -> LoopbackClient {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::from(address)))
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        LoopbackClient { http }
    }

    async fn post(&self, url: String, body: Value) -> (u16, Value) {
        let response = self.http.post(url).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, nginx: &Nginx, email: &str) -> u16 {
        let body = json!({"email": email, "password": PASSWORD});
        self.post(nginx.url("/api/register/"), body).await.0
    }

    async fn login(&self, nginx: &Nginx, email: &str, password: &str) -> (u16, Value) {
        let body = json!({"email": email, "password": password});
        self.post(nginx.url("/api/login/"), body).await
    }

    /// The addresses the caller's sessions were started from.
    async fn session_addresses(&self, nginx: &Nginx, tokens: &Value) -> Vec<Value> {
        let sessions: Value = self
            .http
            .get(nginx.url("/api/sessions/"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sessions = sessions.as_array().expect("a list of sessions").iter();
        sessions.map(|session| session["ip"].clone()).collect()
    }
}

#[tokio::test]
async fn behind_the_shipped_nginx_each_client_has_its_own_address_and_throttle_buckets() {
    let Some(executable) = nginx_executable() else {
        assert!(
            std::env::var_os("RESTFUL_AUTH_REQUIRE_NGINX").is_none(),
            "RESTFUL_AUTH_REQUIRE_NGINX is set but nginx is not installed"
        );
        // Past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!! SKIPPED behind_the_shipped_nginx_…: nginx is not installed \
             (apt-get install nginx) !!!!\n"
        );
        return;
    };
    let (database_url, _database) = shared_database().await;
    let trusted = trusted_proxies_of_the_instructions(&deploy_file("deploy/nginx.conf"));
    let flags = [
        "--trusted-proxies",
        &trusted,
        "--throttle-login-ip",
        "3/1m",
        "--throttle-register-ip",
        "3/1h",
    ];
    // One after the other: the first creates the schema.
    let first = Instance::start(&database_url, &flags);
    let second = Instance::start(&database_url, &flags);
    let nginx = Nginx::start(&executable, &[first.port(), second.port()]);
    let (two, three) = (
        LoopbackClient::from([127, 0, 0, 2]),
        LoopbackClient::from([127, 0, 0, 3]),
    );

    // Each client's session is recorded with its own address.
    assert_eq!(two.register(&nginx, "two@example.org").await, 201);
    assert_eq!(three.register(&nginx, "three@example.org").await, 201);
    let (status, two_tokens) = two.login(&nginx, "two@example.org", PASSWORD).await;
    assert_eq!(status, 200, "{two_tokens}");
    let (status, three_tokens) = three.login(&nginx, "three@example.org", PASSWORD).await;
    assert_eq!(status, 200, "{three_tokens}");
    assert_eq!(
        two.session_addresses(&nginx, &two_tokens).await,
        [json!("127.0.0.2")]
    );
    assert_eq!(
        three.session_addresses(&nginx, &three_tokens).await,
        [json!("127.0.0.3")]
    );

    // 127.0.0.2 spends its failed logins: from there, even a correct login into an account
    // it has never logged into is refused, while 127.0.0.3's is not.
    for _ in 0..3 {
        let (status, _) = two.login(&nginx, "nobody@example.org", "wrong").await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        two.login(&nginx, "three@example.org", PASSWORD).await.0,
        429
    );
    assert_eq!(
        three.login(&nginx, "three@example.org", PASSWORD).await.0,
        200
    );

    // Likewise registrations: 127.0.0.2 has made one, two more fill its bucket.
    assert_eq!(two.register(&nginx, "two-b@example.org").await, 201);
    assert_eq!(two.register(&nginx, "two-c@example.org").await, 201);
    assert_eq!(two.register(&nginx, "two-d@example.org").await, 429);
    assert_eq!(three.register(&nginx, "three-b@example.org").await, 201);

    // Both instances served: the buckets held across them, in the shared database.
    for instance in [&first, &second] {
        let log = instance.log_text();
        assert!(
            log.contains("answered"),
            "an instance served nothing:\n{log}"
        );
    }
}

#[test]
fn the_systemd_unit_and_the_docker_instructions_set_the_trusted_proxies() {
    let unit = deploy_file("deploy/restful-auth.service");
    let trusted: Vec<ipnet::IpNet> = unit
        .lines()
        .find_map(|line| line.strip_prefix("Environment=RESTFUL_AUTH_TRUSTED_PROXIES="))
        .expect("the unit sets RESTFUL_AUTH_TRUSTED_PROXIES")
        .split(',')
        .map(|network| network.trim().parse().expect("a network"))
        .collect();
    let dockerfile = deploy_file("Dockerfile");
    let header = dockerfile.lines().take_while(|line| line.starts_with('#'));

    // The unit listens on 127.0.0.1: only a proxy on this machine reaches it.
    for local in ["127.0.0.1", "::1"] {
        let local: IpAddr = local.parse().unwrap();
        assert!(
            trusted.iter().any(|network| network.contains(&local)),
            "{local} is not trusted by the unit: {trusted:?}"
        );
    }
    assert!(
        header
            .into_iter()
            .any(|line| line.contains("-e RESTFUL_AUTH_TRUSTED_PROXIES=")),
        "the Dockerfile's header does not show the run behind a proxy"
    );
}
