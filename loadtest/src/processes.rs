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

/// How the benchmark starts the services, and what signs their access tokens. Every list of
/// flags leaves out `--bind` and `--database-url`, which `start_service` gives.
pub struct ServiceFlags {
    /// The flags of the service every phase loads.
    pub main: Vec<String>,
    /// The database the user named for it (`--service-arg=--database-url=…`); `None`: a
    /// fresh SQLite file.
    pub database_url: Option<String>,
    /// The algorithm that signs the main service's access tokens (`EdDSA`, `ES256`, `HS256`).
    pub algorithm: String,
    /// The flags of a second service, the same but signing with HS256, whose `GET /api/me/`
    /// and `POST /api/refresh/` are measured beside the main ones: the price of the main
    /// algorithm against the cheapest. `None` when the main service signs with HS256 already,
    /// or runs on another database than SQLite (the second one runs on a fresh SQLite file,
    /// which would compare the databases too).
    pub hs256: Option<Vec<String>>,
    /// The service on PostgreSQL (`--postgres`), measured beside the main one like the HS256
    /// one: what the other database costs the same requests.
    pub postgres: Option<PostgresService>,
}

/// The flags and database of the service on PostgreSQL.
pub struct PostgresService {
    pub url: String,
    /// The main service's flags, with its algorithm named: the database may hold a key of
    /// another one from an earlier use.
    pub flags: Vec<String>,
}

/// The flags the benchmark starts the services with: the user's `--service-arg`s, and the
/// throttles switched off where the binary has them, as policies rather than costs to measure:
/// the registration throttle (the benchmark registers thousands of accounts from one address)
/// and the per-account login throttles (its logins are 32 at once into one account, and those
/// limits also bound one account's logins in flight). The per-address login throttle stays.
/// `postgres` is the database of the service on PostgreSQL, if any.
pub fn benchmark_flags(
    binary: &Path,
    user_args: &[String],
    postgres: Option<&str>,
) -> anyhow::Result<ServiceFlags> {
    let help = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", binary.display()))?;
    flags_for(&String::from_utf8_lossy(&help.stdout), user_args, postgres)
}

/// `benchmark_flags` for a binary whose `--help` says `help`.
fn flags_for(
    help: &str,
    user_args: &[String],
    postgres: Option<&str>,
) -> anyhow::Result<ServiceFlags> {
    let database_url = flag_value(user_args, DATABASE_URL).map(str::to_owned);
    for url in database_url.iter().map(String::as_str).chain(postgres) {
        refuse_password(url)?;
    }
    if let Some(url) = postgres
        && !["postgres://", "postgresql://"]
            .into_iter()
            .any(|scheme| url.starts_with(scheme))
    {
        bail!("--postgres takes a postgres:// URL, not {url:?}");
    }
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
    main.extend(without_flag(user_args, DATABASE_URL));
    // A binary older than `--jwt-algorithm` signs with HS256 only.
    let knows_algorithms = help.contains(JWT_ALGORITHM);
    let algorithm = if knows_algorithms {
        signing_algorithm(&main)
    } else {
        "HS256".to_owned()
    };
    // A database that is not fresh may hold a key of another algorithm in force, which would
    // sign unless the algorithm is named.
    let named = |args: &[String]| {
        if knows_algorithms {
            with_algorithm(args, &algorithm)
        } else {
            args.to_vec()
        }
    };
    if database_url.is_some() {
        main = named(&main);
    }
    let on_sqlite = database_url.as_deref().is_none_or(is_sqlite);
    let hs256 = (algorithm != "HS256" && on_sqlite).then(|| with_algorithm(&main, "HS256"));
    let postgres = postgres.map(|url| PostgresService {
        url: url.to_owned(),
        flags: named(&main),
    });
    Ok(ServiceFlags {
        main,
        database_url,
        algorithm,
        hs256,
        postgres,
    })
}

const DATABASE_URL: &str = "--database-url";
const JWT_ALGORITHM: &str = "--jwt-algorithm";

fn is_sqlite(database_url: &str) -> bool {
    database_url.starts_with("sqlite:")
}

/// The master key of the benchmark's services on PostgreSQL, which needs one given (every
/// instance must share it): the same on every run, so that a database an earlier run filled
/// opens again. No secret — the base64 of `restful-auth loadtest: no secret` — as what the
/// benchmark stores protects nothing.
const BENCHMARK_MASTER_KEY: &str = "cmVzdGZ1bC1hdXRoIGxvYWR0ZXN0OiBubyBzZWNyZXQ=";

/// Whether the service on `database_url` started with `args` takes the benchmark's master
/// key: on PostgreSQL, unless the user gives one, as a flag or in the environment.
fn needs_master_key(database_url: &str, args: &[String]) -> bool {
    !is_sqlite(database_url)
        && ["--master-key-file", "--master-key"]
            .into_iter()
            .all(|flag| flag_value(args, flag).is_none())
        && ["RESTFUL_AUTH_MASTER_KEY_FILE", "RESTFUL_AUTH_MASTER_KEY"]
            .into_iter()
            .all(|variable| std::env::var_os(variable).is_none_or(|value| value.is_empty()))
}

/// The report shows the services' databases and the command line: a password belongs in
/// `PGPASSWORD` or `~/.pgpass`, which the service's PostgreSQL driver reads, not in a URL.
fn refuse_password(url: &str) -> anyhow::Result<()> {
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let authority = address
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let user_info = authority
        .rsplit_once('@')
        .map_or("", |(user_info, _)| user_info);
    if user_info.contains(':') || query.split('&').any(|pair| pair.starts_with("password=")) {
        bail!(
            "a database URL with a password would be shown in the report: give the password in \
             PGPASSWORD or ~/.pgpass instead"
        );
    }
    Ok(())
}

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

/// `args` without `flag` and its value, in either spelling.
fn without_flag(args: &[String], flag: &str) -> Vec<String> {
    let mut kept = Vec::with_capacity(args.len());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == flag {
            args.next(); // its value
        } else if !arg.starts_with(&format!("{flag}=")) {
            kept.push(arg.clone());
        }
    }
    kept
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

/// `args` with any `--jwt-algorithm` replaced by `--jwt-algorithm algorithm` (the service
/// refuses the flag twice).
fn with_algorithm(args: &[String], algorithm: &str) -> Vec<String> {
    let mut kept = without_flag(args, JWT_ALGORITHM);
    kept.extend([JWT_ALGORITHM.to_owned(), algorithm.to_owned()]);
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

/// The URL of the SQLite file at `path`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Starts `binary` on `database_url` on a free loopback port (or on `address`) and waits until
/// it answers HTTP. Its log goes to `log`.
pub async fn start_service(
    binary: &Path,
    database_url: &str,
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
        let mut command = Command::new(binary);
        command
            .arg("--bind")
            .arg(address.to_string())
            .arg("--database-url")
            .arg(database_url)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        if needs_master_key(database_url, extra_args) {
            command.env("RESTFUL_AUTH_MASTER_KEY", BENCHMARK_MASTER_KEY);
        }
        let child = command
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
            assert_eq!(with_algorithm(&args(given), "HS256"), args(&hs256));
        }
    }

    /// What `--help` says of the flags the benchmark looks for.
    const HELP: &str = "--jwt-algorithm <JWT_ALGORITHM>\n--throttle-register-ip <RATE>";

    #[test]
    fn a_database_url_among_the_service_args_replaces_the_fresh_sqlite_file() {
        for given in [
            &[
                "--database-url=postgres://postgres@127.0.0.1:5432/bench",
                "--log-level=warn",
            ][..],
            &[
                "--database-url",
                "postgres://postgres@127.0.0.1:5432/bench",
                "--log-level=warn",
            ],
        ] {
            let flags = flags_for(HELP, &args(given), None).unwrap();
            assert_eq!(
                flags.database_url.as_deref(),
                Some("postgres://postgres@127.0.0.1:5432/bench")
            );
            assert_eq!(
                flags.main,
                args(&[
                    "--throttle-register-ip",
                    "off",
                    "--log-level=warn",
                    "--jwt-algorithm",
                    "EdDSA"
                ])
            );
            assert!(
                flags.hs256.is_none(),
                "no HS256 twin on a fresh SQLite file"
            );
        }
    }

    #[test]
    fn the_postgres_service_has_the_main_flags_and_names_their_algorithm() {
        let flags = flags_for(
            HELP,
            &args(&["--log-level=warn"]),
            Some("postgres://postgres@127.0.0.1:5432/postgres"),
        )
        .unwrap();
        assert_eq!(
            flags.main,
            args(&["--throttle-register-ip", "off", "--log-level=warn"])
        );
        let postgres = flags.postgres.unwrap();
        assert_eq!(postgres.url, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(
            postgres.flags,
            args(&[
                "--throttle-register-ip",
                "off",
                "--log-level=warn",
                "--jwt-algorithm",
                "EdDSA"
            ])
        );
        assert!(flags.hs256.is_some());
    }

    #[test]
    fn a_service_on_postgresql_takes_the_benchmarks_master_key_unless_given_one() {
        let postgres = "postgres://postgres@127.0.0.1:5432/postgres";
        assert!(needs_master_key(postgres, &args(&["--log-level=warn"])));
        assert!(!needs_master_key(
            postgres,
            &args(&["--master-key-file", "k"])
        ));
        assert!(!needs_master_key(postgres, &args(&["--master-key=AAAA"])));
        assert!(!needs_master_key("sqlite:///tmp/bench.sqlite3", &[]));
    }

    #[test]
    fn a_database_url_with_a_password_is_refused() {
        for url in [
            "postgres://app:s3cret@127.0.0.1/bench",
            "postgres://127.0.0.1/bench?user=app&password=s3cret",
        ] {
            assert!(flags_for(HELP, &[], Some(url)).is_err(), "{url}");
            let given = [format!("--database-url={url}")];
            assert!(flags_for(HELP, &given, None).is_err(), "{url}");
        }
        assert!(
            flags_for(
                HELP,
                &[],
                Some("postgres://app@127.0.0.1/bench?sslmode=disable")
            )
            .is_ok()
        );
        assert!(flags_for(HELP, &[], Some("sqlite:///tmp/bench.sqlite3")).is_err());
    }
}
