//! The processes under load: the service (built and started on a fresh database, or one the
//! user runs) and the bare server that measures the HTTP stack's ceiling.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root: the service's package and where `BENCHMARKS.md` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loadtest/ sits in the workspace")
        .to_path_buf()
}

/// Builds the service's release binary and returns its path. Asking cargo for the artifact
/// (rather than guessing `target/release/`) honours `CARGO_TARGET_DIR` and `build.target-dir`.
pub fn build_service() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the service: cargo build --release --bin restful-auth");
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--package",
            "restful-auth",
            "--bin",
            "restful-auth",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release failed ({})", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "restful-auth"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo build named no restful-auth executable")
}

/// How the benchmark starts the service, and what signs its access tokens.
pub struct ServiceFlags {
    /// The flags of the service every phase loads.
    pub main: Vec<String>,
    /// The algorithm that signs the main service's access tokens (`EdDSA`, `ES256`, `HS256`).
    pub algorithm: String,
    /// The flags of a second service, the same but signing with HS256, whose `GET /api/me/`
    /// and `POST /api/refresh/` are measured beside the main ones: the price of the main
    /// algorithm against the cheapest. `None` when the main service signs with HS256 already.
    pub hs256: Option<Vec<String>>,
}

/// The flags the benchmark starts the service with: the user's `--service-arg`s, and the
/// throttles switched off where the binary has them, as policies rather than costs to measure:
/// the registration throttle (the benchmark registers thousands of accounts from one address)
/// and the per-account login throttles (its logins are 32 at once into one account, and those
/// limits also bound one account's logins in flight). The per-address login throttle stays.
pub fn benchmark_flags(binary: &Path, user_args: &[String]) -> anyhow::Result<ServiceFlags> {
    let help = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", binary.display()))?;
    let help = String::from_utf8_lossy(&help.stdout);
    let mut main = Vec::new();
    for throttle in [
        "--throttle-register-ip",
        "--throttle-login-account",
        "--throttle-login-account-ip",
    ] {
        if help.contains(throttle) && flag_value(user_args, throttle).is_none() {
            main.extend([throttle.to_owned(), "off".to_owned()]);
        }
    }
    // The main service and the HS256 one run at once: each takes a metrics port of its own
    // (the default is one port for both), still served, as in production.
    if help.contains("--metrics-bind") && flag_value(user_args, "--metrics-bind").is_none() {
        main.extend(["--metrics-bind".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    main.extend(user_args.iter().cloned());
    // A binary older than `--jwt-algorithm` signs with HS256 only.
    let algorithm = if help.contains(JWT_ALGORITHM) {
        signing_algorithm(&main)
    } else {
        "HS256".to_owned()
    };
    let hs256 = (algorithm != "HS256").then(|| signing_with_hs256(&main));
    Ok(ServiceFlags {
        main,
        algorithm,
        hs256,
    })
}

const JWT_ALGORITHM: &str = "--jwt-algorithm";

/// The value `args` give `flag`, as `--flag=VALUE` or as `--flag VALUE`; the last one wins.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut value = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == flag {
            value = args.next().map(String::as_str);
        } else if let Some(given) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            value = Some(given);
        }
    }
    value
}

/// What signs the access tokens of the service started with `args` on a new database: its
/// `--jwt-algorithm`, HS256 when it is given a `--secret-key`, EdDSA otherwise. It inherits
/// this process's environment, so the flags' environment variables count too.
fn signing_algorithm(args: &[String]) -> String {
    let given = |flag: &str, variable: &str| {
        flag_value(args, flag).map(str::to_owned).or_else(|| {
            std::env::var(variable)
                .ok()
                .filter(|value| !value.is_empty())
        })
    };
    match given(JWT_ALGORITHM, "RESTFUL_AUTH_JWT_ALGORITHM") {
        // The service reads the name in any case; the report spells it as JOSE does.
        Some(name) => ["EdDSA", "ES256", "HS256"]
            .into_iter()
            .find(|known| known.eq_ignore_ascii_case(&name))
            .map_or(name, str::to_owned),
        None if given("--secret-key", "RESTFUL_AUTH_SECRET_KEY").is_some() => "HS256".to_owned(),
        None => "EdDSA".to_owned(),
    }
}

/// `args` with any `--jwt-algorithm` replaced by `--jwt-algorithm HS256` (the service refuses
/// the flag twice).
fn signing_with_hs256(args: &[String]) -> Vec<String> {
    let mut kept = Vec::with_capacity(args.len() + 2);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == JWT_ALGORITHM {
            args.next(); // its value
        } else if !arg.starts_with(&format!("{JWT_ALGORITHM}=")) {
            kept.push(arg.clone());
        }
    }
    kept.extend([JWT_ALGORITHM.to_owned(), "HS256".to_owned()]);
    kept
}

/// A child process that is killed when dropped, so no run leaves one behind.
pub struct Guarded {
    child: Child,
    /// Where its output goes, to show when it fails.
    log: Option<PathBuf>,
}

impl Guarded {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL): nothing it has not yet written survives.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().context("killing the service")?;
        self.child.wait().context("reaping the service")?;
        Ok(())
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service, started by us on a database of its own.
pub struct Service {
    pub process: Guarded,
    pub address: SocketAddr,
}

/// Starts `binary` on `database` (a file path) on a free loopback port and waits until it
/// answers HTTP. Its log goes to `log`.
pub async fn start_service(
    binary: &Path,
    database: &Path,
    log: &Path,
    extra_args: &[String],
    address: Option<SocketAddr>,
) -> anyhow::Result<Service> {
    // A free port is free when we ask; another process taking it before the service binds is
    // retried with another one. A given address (a restart) is not.
    let attempts = if address.is_some() { 1 } else { 5 };
    for _ in 0..attempts {
        let address = match address {
            Some(address) => address,
            None => free_port()?,
        };
        let output = File::options().create(true).append(true).open(log)?;
        let child = Command::new(binary)
            .arg("--bind")
            .arg(address.to_string())
            .arg("--database-url")
            .arg(format!("sqlite://{}", database.display()))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = Guarded {
            child,
            log: Some(log.to_path_buf()),
        };
        match wait_until_answering(address, &mut process).await {
            Ok(()) => return Ok(Service { process, address }),
            Err(error) if process.exited().is_some() && process.log_tail().contains("listen") => {
                eprintln!("the service could not listen on {address} ({error:#}); another port");
            }
            Err(error) => bail!("{error:#}\nservice log:\n{}", process.log_tail()),
        }
    }
    bail!("no free port the service could listen on")
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// Polls until `address` answers an HTTP request (any status), within 30 s.
async fn wait_until_answering(address: SocketAddr, process: &mut Guarded) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = process.exited() {
            bail!("the service exited ({status}) before answering");
        }
        let answered = crate::load::once(
            address,
            hyper::Method::GET,
            "/api/me/",
            None,
            hyper::StatusCode::UNAUTHORIZED,
        )
        .await;
        if answered.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the service did not answer on {address} within 30 s")
}

/// A URL given with `--url`: `http://HOST:PORT`, which must be a loopback address, since a
/// load test sends traffic only to this machine.
pub fn loopback_target(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = url
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .trim_end_matches('/');
    if authority.contains('/') {
        bail!("--url is the service's root, e.g. http://127.0.0.1:8000");
    }
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    if !address.ip().is_loopback() {
        bail!("--url must be a loopback address (127.0.0.0/8 or [::1]); got {address}");
    }
    Ok(address)
}

/// Starts this program's own bare server (`loadtest bare-server`) in a process of its own,
/// like the service, and returns it with the address it listens on.
pub fn start_bare_server() -> anyhow::Result<(Guarded, SocketAddr)> {
    let exe = std::env::current_exe().context("locating the loadtest binary")?;
    let mut child = Command::new(exe)
        .arg("bare-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the bare server")?;
    let mut first_line = String::new();
    let stdout = child.stdout.take().context("bare server stdout")?;
    BufReader::new(stdout).read_line(&mut first_line)?;
    let process = Guarded { child, log: None };
    let address = first_line
        .trim()
        .parse()
        .with_context(|| format!("the bare server said {first_line:?}, not its address"))?;
    Ok((process, address))
}

/// The bare server: the service's HTTP stack (`axum::serve` on a default multi-threaded tokio
/// runtime, one worker per core) answering a constant JSON body of the size of a `/api/me/`
/// answer, with no routing depth, middleware, database or token check.
pub fn serve_bare() -> anyhow::Result<()> {
    use axum::Router;
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

    const BODY: &str = r#"{"id":1,"username":"bench@example.org","email":"bench@example.org"}"#;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let answer = || async { ([(CONTENT_TYPE, "application/json; charset=utf-8")], BODY) };
        let app = Router::new().route("/bare", get(answer).post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// A process's memory figures (kB) from `/proc/<pid>/status`: peak resident (VmHWM) and
/// resident now (VmRSS).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub peak_kib: u64,
    pub now_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        peak_kib: field("VmHWM:")?,
        now_kib: field("VmRSS:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn a_flag_value_is_read_in_either_spelling() {
        let given = args(&[
            "--throttle-login-account-ip=off",
            "--jwt-algorithm",
            "ES256",
        ]);
        assert_eq!(flag_value(&given, "--jwt-algorithm"), Some("ES256"));
        assert_eq!(
            flag_value(&given, "--throttle-login-account-ip"),
            Some("off")
        );
        assert_eq!(flag_value(&given, "--throttle-login-account"), None);
    }

    #[test]
    fn the_given_algorithm_is_spelled_as_jose_does() {
        assert_eq!(
            signing_algorithm(&args(&["--jwt-algorithm=es256"])),
            "ES256"
        );
        assert_eq!(
            signing_algorithm(&args(&["--jwt-algorithm", "eddsa"])),
            "EdDSA"
        );
    }

    #[test]
    fn the_hs256_twin_replaces_the_given_algorithm() {
        let hs256 = ["--log-level=warn", "--jwt-algorithm", "HS256"];
        for given in [
            &["--log-level=warn", "--jwt-algorithm=ES256"][..],
            &["--jwt-algorithm", "EdDSA", "--log-level=warn"],
            &["--log-level=warn"],
        ] {
            assert_eq!(signing_with_hs256(&args(given)), args(&hs256));
        }
    }
}
