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
/// no port is picked first and bound later, when another test may have taken it.
pub struct Running {
    child: Child,
    address: SocketAddr,
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
        let address = loop {
            if let Some(address) = listening_address(&log.lock().unwrap()) {
                break address;
            }
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
            log,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
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
    let line = lines
        .iter()
        .find(|line| line.contains("restful-auth listening"))?;
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
