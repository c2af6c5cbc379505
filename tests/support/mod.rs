//! The real executable, started for a test: shared by the test binaries that run it
//! (`operations`, `proxy`, `crash`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_restful-auth");

/// A running restful-auth process, its output captured line by line, killed when dropped. It
/// listens on a port the kernel chose (`--bind 127.0.0.1:0`), read back from its start-up line:
/// no port is picked first and bound later, when another test may have taken it. So does its
/// metrics listener, unless the test chose `--metrics-bind`: the default port would be one
/// for every process of the suite.
pub struct Running {
    child: Child,
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `command` (the binary and its arguments; `--bind` is added) and waits until it
    /// listens.
    pub fn start(mut command: Command) -> Running {
        // Its output is a pipe, where the default is JSON: text, unless the test chose.
        let chose_format = command
            .get_envs()
            .any(|(name, _)| name == "RESTFUL_AUTH_LOG_FORMAT")
            || command.get_args().any(|arg| arg == "--log-format");
        if !chose_format {
            command.env("RESTFUL_AUTH_LOG_FORMAT", "text");
        }
        // A `RUST_LOG` of the test's environment would filter the lines tests read.
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env_remove("RUST_LOG");
        }
        let metrics_bind = command
            .get_args()
            .skip_while(|arg| *arg != "--metrics-bind")
            .nth(1)
            .or_else(|| {
                command
                    .get_envs()
                    .find(|(name, _)| *name == "RESTFUL_AUTH_METRICS_BIND")
                    .and_then(|(_, value)| value)
            })
            .map(|value| value.to_string_lossy().into_owned());
        if metrics_bind.is_none() {
            command.args(["--metrics-bind", "127.0.0.1:0"]);
        }
        let metrics_listener = !matches!(metrics_bind.as_deref(), Some("public" | "off"));
        let mut child = command
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the service starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (address, metrics_address) = loop {
            let lines = log.lock().unwrap();
            let metrics_address = metrics_listener
                .then(|| address_of(&lines, "metrics listening"))
                .flatten();
            if let Some(address) = listening_address(&lines)
                && metrics_address.is_some() == metrics_listener
            {
                break (address, metrics_address);
            }
            drop(lines);
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!(
                    "the service did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Running {
            child,
            address,
            metrics_address,
            log,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A URL of the metrics listener (`/metrics`).
    pub fn metrics_url(&self, path: &str) -> String {
        let address = self.metrics_address.expect("a metrics listener");
        format!("http://{address}{path}")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of the start-up line (`restful-auth listening address=…`, or its JSON form).
pub fn listening_address(lines: &[String]) -> Option<SocketAddr> {
    address_of(lines, "restful-auth listening")
}

/// The `address` of the first line that says `message`.
fn address_of(lines: &[String], message: &str) -> Option<SocketAddr> {
    let line = lines.iter().find(|line| line.contains(message))?;
    let rest = ["address=", "\"address\":\""]
        .iter()
        .find_map(|field| line.split_once(field))?
        .1;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `--database-url` of a SQLite file.
pub fn database_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Runs an administration command of the real binary on `database`, feeding `stdin`.
pub fn run_command(database: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BINARY)
        .args(["--database-url", &database_url(database)])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
