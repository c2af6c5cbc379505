//! `loadtest`: the load benchmark of restful-auth.
//!
//! It builds the service's release binary, starts it on a fresh SQLite file (or targets a
//! running one with `--url`), and measures throughput and latency of `GET /api/me/`,
//! `POST /api/refresh/`, `/api/login/` and `/api/register/` against the two ceilings that bound
//! them: the same HTTP stack answering a constant JSON body (a bare axum route served by this
//! binary), and Argon2id hashing (cores ÷ the time of one hash). A service it starts that signs
//! with another algorithm than HS256 has a twin signing with HS256, and with `--postgres` one
//! on PostgreSQL, whose `GET /api/me/` and `POST /api/refresh/` are measured beside its own.
//! It reports each performance target as met or missed, writes `BENCHMARKS.md`, and exits
//! non-zero if any request failed.
//!
//! Every request goes to a loopback address, and every loop stops by itself at its deadline.
//! A SIGINT or SIGTERM stops every process the benchmark started before it exits.

mod load;
mod processes;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hyper::{Method, StatusCode};
use tokio::sync::oneshot;

use load::{Group, Script, Timing, TokenCell};
use processes::{Service, ServiceFlags};
use report::{Durability, Report};

/// Load benchmark of restful-auth: each endpoint's throughput and latency, against the
/// ceilings of its HTTP stack and of password hashing.
#[derive(Debug, Parser)]
#[command(name = "loadtest")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// A running service to load instead of starting one: `http://127.0.0.1:PORT` (loopback
    /// only). Start it with `--throttle-register-ip off --throttle-login-account off
    /// --throttle-login-account-ip off`: the
    /// benchmark registers thousands of accounts from one address, and logs into one account
    /// from 32 connections at once.
    #[arg(long)]
    url: Option<String>,

    /// With `--url`: the service's process id, for its memory figures.
    #[arg(long, requires = "url")]
    pid: Option<u32>,

    /// The service binary to start, instead of building it with `cargo build --release`.
    #[arg(long, conflicts_with = "url")]
    bin: Option<PathBuf>,

    /// Extra argument for the started service (repeat it for several), e.g. `--log-level=warn`.
    /// A `--database-url` replaces the fresh SQLite file (a password in it goes in
    /// `PGPASSWORD` or `~/.pgpass`: the report shows the flags).
    #[arg(
        long = "service-arg",
        allow_hyphen_values = true,
        conflicts_with = "url"
    )]
    service_args: Vec<String>,

    /// A PostgreSQL database the benchmark may fill, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`: a further service with the same flags
    /// runs on it, and its `GET /api/me/` and `POST /api/refresh/` are measured right after the
    /// main service's (accounts are new on every run, so a used database will do; a password
    /// goes in `PGPASSWORD` or `~/.pgpass`).
    #[arg(long, value_name = "URL", conflicts_with = "url")]
    postgres: Option<String>,

    /// Measured time of each phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Load before each phase's measured time, not counted (except its failures).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// Concurrent keep-alive connections of each phase.
    #[arg(long, default_value_t = 32)]
    connections: usize,

    /// Connections logging in during the mixed phase; default twice the cores, which keeps the
    /// service's hashing pool (one hash per core) saturated.
    #[arg(long)]
    login_connections: Option<usize>,

    /// Worker threads of the load generator's runtime (it shares the machine with the service).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,

    /// Longest a single request may take before it counts as failed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Where to write the report; default `BENCHMARKS.md` at the workspace root.
    #[arg(long)]
    output: Option<PathBuf>,

    /// Print the report only.
    #[arg(long)]
    no_write: bool,

    /// A few seconds in all (300 ms per phase after a 100 ms warm-up) that checks the benchmark
    /// works and no request fails; writes nothing and judges no target.
    #[arg(long)]
    smoke: bool,

    /// Exit non-zero when a performance target is missed (failed requests always do).
    #[arg(long)]
    require_targets: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the bare ceiling route (started by the benchmark itself).
    #[command(hide = true)]
    BareServer,
}

/// A password every validator accepts for the benchmark's addresses; not a secret.
const PASSWORD: &str = "loadtest passphrase, not a secret";

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::BareServer) = args.command {
        return match processes::serve_bare() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bare server: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.smoke {
        args.duration = Duration::from_millis(300);
        args.warmup = Duration::from_millis(100);
        args.no_write = true;
    }
    match benchmark(&args) {
        Ok(report) => {
            let failed = report.failed_requests();
            let missed = report.missed_targets();
            if failed > 0 {
                eprintln!("FAILED: {failed} request(s) did not get a 2xx answer");
                ExitCode::FAILURE
            } else if !report.durable() {
                eprintln!("FAILED: a refresh token answered before the kill did not survive it");
                ExitCode::FAILURE
            } else if args.require_targets && missed > 0 {
                eprintln!("FAILED: {missed} target(s) missed");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            match error.downcast_ref::<Interrupted>() {
                // What a shell reports for a process a signal ended: 128 + its number.
                Some(interrupted) => ExitCode::from(128 + interrupted.number),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The run was stopped by a signal; every process it started was stopped with it.
#[derive(Debug)]
struct Interrupted {
    signal: &'static str,
    number: u8,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {}: stopped the services and the bare server it started; no report",
            self.signal
        )
    }
}

impl std::error::Error for Interrupted {}

/// `work`, unless a SIGINT or SIGTERM comes first. A signal's default action ends the process
/// without running destructors, which would leave the started processes running; here `work`
/// is dropped instead, and with it every `Guarded` child, which kills and reaps it.
async fn unless_interrupted<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};

    // Both handlers are in place before `work` first runs, so before it starts any process.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let interrupted = |signal, number: i32| Interrupted {
        signal,
        number: u8::try_from(number).expect("signal numbers are small"),
    };
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err(interrupted("SIGINT", libc::SIGINT).into()),
        _ = terminate.recv() => Err(interrupted("SIGTERM", libc::SIGTERM).into()),
    }
}

fn benchmark(args: &Args) -> anyhow::Result<Report> {
    if args.connections == 0 || args.client_threads == 0 {
        bail!("--connections and --client-threads must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let binary = match (&args.url, &args.bin) {
        (Some(_), _) => None,
        (None, Some(binary)) => Some(binary.clone()),
        (None, None) => Some(processes::build_service()?),
    };
    let flags = match &binary {
        Some(binary) => Some(processes::benchmark_flags(
            binary,
            &args.service_args,
            args.postgres.as_deref(),
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    let mut report =
        runtime.block_on(unless_interrupted(run(args, binary, flags.as_ref(), cores)))?;
    report.finish();
    let text = report.markdown();
    println!("{text}");
    if !args.no_write {
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| processes::workspace_root().join("BENCHMARKS.md"));
        std::fs::write(&output, &text).with_context(|| format!("writing {}", output.display()))?;
        eprintln!("wrote {}", output.display());
    }
    Ok(report)
}

/// One Argon2id hash with the service's parameters (OWASP: 19 MiB, two passes, one lane), in
/// `memory` reused from hash to hash: the time of the hash alone, with no page faults.
fn hash_once(memory: &mut [argon2::Block]) -> anyhow::Result<()> {
    use argon2::{Algorithm, Argon2, Params, Version};

    let params = Params::new(HASH_KIB, 2, 1, None).map_err(anyhow::Error::msg)?;
    let mut output = [0; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(
            PASSWORD.as_bytes(),
            b"a 16-byte salt..",
            &mut output,
            memory,
        )
        .map_err(anyhow::Error::msg)
}

/// Memory of one hash: 19 MiB, one 1 KiB block per KiB.
const HASH_KIB: u32 = 19 * 1024;

fn hash_memory() -> Vec<argon2::Block> {
    vec![argon2::Block::default(); HASH_KIB as usize]
}

/// What the hashing ceiling is made of, timed in this process while the service is idle.
pub struct HashTiming {
    /// Single hashes, one after another on one core.
    pub samples: Vec<Duration>,
    /// Hashes per second with one thread per core hashing at once.
    pub parallel_rate: f64,
    /// Cores other processes kept busy meanwhile: they slow the hashes and lower the ceiling.
    pub others: Option<f64>,
}

/// Fifteen single hashes after half a second of hashing to warm up (an idle core may start
/// slow: its clock, its caches, the hypervisor's scheduling), then every core hashing at once.
fn time_hashes(cores: usize) -> anyhow::Result<HashTiming> {
    let started = Instant::now();
    let busy_before = load::machine_busy_seconds();
    let ours_before = load::cpu_seconds(std::process::id());
    let mut memory = hash_memory();
    while started.elapsed() < Duration::from_millis(500) {
        hash_once(&mut memory)?;
    }
    let samples = (0..15)
        .map(|_| {
            let hashing = Instant::now();
            hash_once(&mut memory).map(|()| hashing.elapsed())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(memory);
    let parallel_rate = parallel_hash_rate(cores)?;
    let others = || {
        let busy = load::machine_busy_seconds()? - busy_before?;
        let ours = load::cpu_seconds(std::process::id())? - ours_before?;
        Some(((busy - ours) / started.elapsed().as_secs_f64()).max(0.0))
    };
    Ok(HashTiming {
        samples,
        parallel_rate,
        others: others(),
    })
}

/// Hashes per second with one thread per core hashing at once: what the machine sustains when
/// the cores share caches and memory bandwidth (for the report; the targets use cores ÷ one
/// hash time, as the issue defines the ceiling).
fn parallel_hash_rate(cores: usize) -> anyhow::Result<f64> {
    const EACH: usize = 8;
    let barrier = std::sync::Barrier::new(cores + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let mut memory = hash_memory();
                    let warm = hash_once(&mut memory);
                    barrier.wait();
                    warm?;
                    (0..EACH).try_for_each(|_| hash_once(&mut memory))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        threads
            .into_iter()
            .try_for_each(|thread| thread.join().expect("hashing does not panic"))?;
        Ok((cores * EACH) as f64 / started.elapsed().as_secs_f64())
    })
}

async fn run(
    args: &Args,
    binary: Option<PathBuf>,
    flags: Option<&ServiceFlags>,
    cores: usize,
) -> anyhow::Result<Report> {
    let workdir = tempfile::Builder::new()
        .prefix("restful-auth-bench-")
        .tempdir()?;
    // The user's database, else a fresh file; the restart after `kill -9` reopens it.
    let database_url = flags
        .and_then(|flags| flags.database_url.clone())
        .unwrap_or_else(|| processes::sqlite_url(&workdir.path().join("bench.sqlite3")));
    let log = workdir.path().join("service.log");
    let service_args = flags.map_or(&[][..], |flags| &flags.main);
    let mut service = match &binary {
        Some(binary) => {
            Some(processes::start_service(binary, &database_url, &log, service_args, None).await?)
        }
        None => None,
    };
    let target = match (&service, &args.url) {
        (Some(service), _) => service.address,
        (None, Some(url)) => processes::loopback_target(url)?,
        (None, None) => unreachable!("either a started service or --url"),
    };
    let service_pid = |service: &Option<Service>| match service {
        Some(service) => Some(service.process.pid()),
        None => args.pid,
    };
    let (bare, bare_target) = processes::start_bare_server()?;
    eprintln!("bare server: pid {} on {bare_target}", bare.pid());
    let timing = Timing {
        warmup: args.warmup,
        duration: args.duration,
        request_timeout: args.timeout,
    };
    let connections = args.connections;
    let login_connections = args.login_connections.unwrap_or(2 * cores).max(1);

    let mut report = Report::new(args, cores, flags, target);

    let run_id = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis();
    let email = format!("bench-{run_id}@example.org");
    let credentials = format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#);
    let Sessions {
        me_token,
        mut keeper,
        chains,
    } = seed(target, &credentials, connections).await?;
    // The HS256 twin on a fresh file of its own, the PostgreSQL one on the database it is given.
    let hs256 = match (&binary, flags.and_then(|flags| flags.hs256.as_deref())) {
        (Some(binary), Some(hs256_args)) => {
            let database_url = processes::sqlite_url(&workdir.path().join("bench-hs256.sqlite3"));
            Some(
                Twin::start(
                    &HS256_TWIN,
                    binary,
                    &database_url,
                    workdir.path(),
                    hs256_args,
                    &credentials,
                    connections,
                )
                .await?,
            )
        }
        _ => None,
    };
    let postgres = match (&binary, flags.and_then(|flags| flags.postgres.as_ref())) {
        (Some(binary), Some(postgres)) => Some(
            Twin::start(
                &POSTGRES_TWIN,
                binary,
                &postgres.url,
                workdir.path(),
                &postgres.flags,
                &credentials,
                connections,
            )
            .await?,
        ),
        _ => None,
    };

    let me = |token: &TokenCell, count: usize| -> Vec<Script> {
        (0..count)
            .map(|_| Script::Get {
                path: "/api/me/",
                bearer: Some(token.clone()),
            })
            .collect()
    };
    let login = |count: usize| -> Vec<Script> {
        (0..count)
            .map(|_| Script::Login {
                body: Bytes::from(credentials.clone()),
            })
            .collect()
    };
    let phase = |name: &str, target, scripts, server_pid| Group {
        name: name.to_owned(),
        target,
        scripts,
        server_pid,
    };
    let bare_load = |count: usize| -> Vec<Script> {
        (0..count)
            .map(|_| Script::Get {
                path: "/bare",
                bearer: None,
            })
            .collect()
    };

    report.memory_at_start = service_pid(&service).and_then(processes::memory);
    // `memory_of`: the service whose memory the phase reports (not the bare server).
    let measure = async |groups: Vec<Group>, memory_of: Option<u32>| {
        let names: Vec<_> = groups.iter().map(|group| group.name.clone()).collect();
        eprintln!("phase: {}", names.join(" + "));
        let mut outcomes = load::run(groups, timing).await;
        let memory_now = memory_of.and_then(processes::memory);
        for outcome in &mut outcomes {
            outcome.service_memory = memory_now;
        }
        outcomes
    };

    // Each twin's phase runs right after its counterpart, so the machine's drift (a virtual
    // machine's cores do not keep one speed for minutes) affects both alike.
    let bare_pid = Some(bare.pid());
    let pid = service_pid(&service);
    report.add(
        measure(
            vec![phase(
                report::BARE,
                bare_target,
                bare_load(connections),
                bare_pid,
            )],
            pid,
        )
        .await,
    );
    report.add(
        measure(
            vec![phase(report::ME, target, me(&me_token, connections), pid)],
            pid,
        )
        .await,
    );
    for twin in [&hs256, &postgres].into_iter().flatten() {
        let scripts = me(&twin.sessions.me_token, connections);
        let group = phase(twin.kind.me, twin.address(), scripts, twin.pid());
        report.add(measure(vec![group], twin.pid()).await);
    }

    let mut refreshed = measure(vec![phase(report::REFRESH, target, chains, pid)], pid).await;

    // Each rotation must be committed before it is answered: kill the service the moment the
    // phase ends, start it again on the same file, and present every chain's last token.
    if let Some(running) = service.take() {
        let refresh_token = keeper.stop().await?;
        let address = running.address;
        running.process.kill()?;
        let binary = binary.as_deref().expect("a started service has a binary");
        let restarted =
            processes::start_service(binary, &database_url, &log, service_args, Some(address))
                .await?;
        let chains = std::mem::take(&mut refreshed[0].scripts);
        report.durability = Some(last_tokens_refresh(address, &chains).await);
        keeper = Keeper::start(address, refresh_token, me_token.clone());
        service = Some(restarted);
    }
    report.add(refreshed);
    for mut twin in [hs256, postgres].into_iter().flatten() {
        let chains = std::mem::take(&mut twin.sessions.chains);
        let group = phase(twin.kind.refresh, twin.address(), chains, twin.pid());
        report.add(measure(vec![group], twin.pid()).await);
        // Its phases are over: stopped, it takes nothing from the next ones.
        twin.stop(report.failed_requests() > 0).await?;
    }
    let pid = service_pid(&service);
    report.add(
        measure(
            vec![phase(
                report::BARE_AGAIN,
                bare_target,
                bare_load(connections),
                bare_pid,
            )],
            pid,
        )
        .await,
    );
    drop(bare);

    // The hashing ceiling, timed on either side of the phases it bounds: a virtual machine's
    // cores do not keep one speed for minutes.
    let time_hashes_now = async || {
        eprintln!("timing Argon2id hashes (m=19456 KiB, t=2, p=1)");
        tokio::task::spawn_blocking(move || time_hashes(cores)).await?
    };
    report.hash_timings.push(time_hashes_now().await?);
    report.add(
        measure(
            vec![phase(report::LOGIN, target, login(connections), pid)],
            pid,
        )
        .await,
    );
    let registrations = (0..connections)
        .map(|connection| Script::Register {
            prefix: format!("bench-{run_id}-{connection}"),
            password: PASSWORD,
            next: 0,
        })
        .collect();
    report.add(
        measure(
            vec![phase(report::REGISTER, target, registrations, pid)],
            pid,
        )
        .await,
    );
    report.hash_timings.push(time_hashes_now().await?);
    report.add(
        measure(
            vec![
                phase(
                    report::ME_UNDER_LOGINS,
                    target,
                    me(&me_token, connections),
                    pid,
                ),
                phase(report::LOGINS_BESIDE, target, login(login_connections), pid),
            ],
            pid,
        )
        .await,
    );
    keeper.stop().await?;

    if report.failed_requests() > 0
        && let Some(service) = &service
    {
        eprintln!("service log (last lines):\n{}", service.process.log_tail());
    }
    Ok(report)
}

/// What a seeded service offers the phases: one account, with one session for `GET /api/me/`
/// (its access token renewed in the background) and one per connection for the refresh chains.
/// Each login costs a hash, so no more sessions than that.
struct Sessions {
    me_token: TokenCell,
    keeper: Keeper,
    chains: Vec<Script>,
}

/// Registers the account of `credentials` at `target` and opens its sessions.
async fn seed(
    target: std::net::SocketAddr,
    credentials: &str,
    connections: usize,
) -> anyhow::Result<Sessions> {
    eprintln!("seeding {target}: 1 account, {} sessions", connections + 1);
    load::once(
        target,
        Method::POST,
        "/api/register/",
        Some(credentials.to_owned()),
        StatusCode::CREATED,
    )
    .await?;
    let mut sessions = login_many(target, credentials, connections + 1).await?;
    let (access_token, refresh_token) = sessions.pop().expect("at least one session");
    let me_token = TokenCell::new(&access_token)?;
    let keeper = Keeper::start(target, refresh_token, me_token.clone());
    let chains = sessions
        .into_iter()
        .map(|(_, refresh_token)| Script::RefreshChain { refresh_token })
        .collect();
    Ok(Sessions {
        me_token,
        keeper,
        chains,
    })
}

/// A further service, loaded right after the main one with the same requests: the same binary
/// and flags but for the one difference its `kind` names, seeded like the main one.
struct Twin {
    kind: &'static TwinKind,
    service: Service,
    sessions: Sessions,
}

/// What sets a twin apart: its name in messages and its rows in the report.
struct TwinKind {
    name: &'static str,
    me: &'static str,
    refresh: &'static str,
}

/// `--jwt-algorithm HS256`: the price of the main algorithm against the cheapest one.
const HS256_TWIN: TwinKind = TwinKind {
    name: "HS256",
    me: report::ME_HS256,
    refresh: report::REFRESH_HS256,
};

/// On the PostgreSQL database `--postgres` names: the price of the other database.
const POSTGRES_TWIN: TwinKind = TwinKind {
    name: "PostgreSQL",
    me: report::ME_POSTGRES,
    refresh: report::REFRESH_POSTGRES,
};

impl Twin {
    async fn start(
        kind: &'static TwinKind,
        binary: &Path,
        database_url: &str,
        workdir: &Path,
        args: &[String],
        credentials: &str,
        connections: usize,
    ) -> anyhow::Result<Twin> {
        let log = workdir.join(format!("service-{}.log", kind.name.to_lowercase()));
        let service = processes::start_service(binary, database_url, &log, args, None)
            .await
            .with_context(|| format!("starting the {} service", kind.name))?;
        let sessions = seed(service.address, credentials, connections).await?;
        Ok(Twin {
            kind,
            service,
            sessions,
        })
    }

    fn address(&self) -> std::net::SocketAddr {
        self.service.address
    }

    fn pid(&self) -> Option<u32> {
        Some(self.service.process.pid())
    }

    /// Stops renewing its token, then the process; the end of its log first if `failed`.
    async fn stop(self, failed: bool) -> anyhow::Result<()> {
        self.sessions.keeper.stop().await?;
        if failed {
            eprintln!(
                "{} service log (last lines):\n{}",
                self.kind.name,
                self.service.process.log_tail()
            );
        }
        self.service.process.kill()
    }
}

/// One `POST /api/refresh/` with `refresh_token`, on a connection of its own; its answer.
async fn refresh_once(target: std::net::SocketAddr, refresh_token: &str) -> anyhow::Result<Bytes> {
    let body = format!(r#"{{"refresh_token":"{refresh_token}"}}"#);
    load::once(
        target,
        Method::POST,
        "/api/refresh/",
        Some(body),
        StatusCode::OK,
    )
    .await
}

/// Presents each refresh chain's last token once: how many still refresh.
async fn last_tokens_refresh(target: std::net::SocketAddr, chains: &[Script]) -> Durability {
    let mut survived = 0;
    for script in chains {
        if let Script::RefreshChain { refresh_token } = script {
            survived += u64::from(refresh_once(target, refresh_token).await.is_ok());
        }
    }
    Durability {
        survived,
        presented: chains.len() as u64,
    }
}

/// Logs in `count` times, a few at once; each answer's (access, refresh) tokens.
async fn login_many(
    target: std::net::SocketAddr,
    credentials: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut sessions = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for index in 0..count {
        let body = credentials.to_owned();
        pending.spawn(async move {
            load::once(
                target,
                Method::POST,
                "/api/login/",
                Some(body),
                StatusCode::OK,
            )
            .await
        });
        if pending.len() >= 4 || index + 1 == count {
            while let Some(answer) = pending.join_next().await {
                let answer = answer??;
                sessions.push((
                    load::token_field(&answer, "access_token")?,
                    load::token_field(&answer, "refresh_token")?,
                ));
            }
        }
    }
    Ok(sessions)
}

/// Renews the `/api/me/` access token (30 s by default) by refreshing its session, so phases
/// can run longer than an access token lives.
struct Keeper {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<String>>,
}

impl Keeper {
    fn start(target: std::net::SocketAddr, refresh_token: String, cell: TokenCell) -> Keeper {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut refresh_token = refresh_token;
            // Far inside the default access lifetime (30 s): the token never expires mid-phase.
            let every = Duration::from_secs(5);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(refresh_token),
                    () = tokio::time::sleep(every) => {}
                }
                let answer = refresh_once(target, &refresh_token)
                    .await
                    .context("renewing the /api/me/ access token")?;
                cell.set(&load::token_field(&answer, "access_token")?)?;
                refresh_token = load::token_field(&answer, "refresh_token")?;
            }
        });
        Keeper { stop, task }
    }

    /// Stops renewing; the session's current refresh token.
    async fn stop(self) -> anyhow::Result<String> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
