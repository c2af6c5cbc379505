//! The report: every phase against its ceiling, every target met or missed, and the machine
//! and command that produced them, as the Markdown of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::load::Outcome;
use crate::processes::{Memory, ServiceFlags};
use crate::{Args, HashTiming};

pub const BARE: &str = "bare ceiling: `GET /bare`";
pub const BARE_AGAIN: &str = "bare ceiling again: `GET /bare`";
pub const ME: &str = "`GET /api/me/`";
pub const ME_HS256: &str = "`GET /api/me/` (HS256 tokens)";
pub const REFRESH: &str = "`POST /api/refresh/`";
pub const REFRESH_HS256: &str = "`POST /api/refresh/` (HS256 tokens)";
pub const ME_POSTGRES: &str = "`GET /api/me/` (PostgreSQL)";
pub const REFRESH_POSTGRES: &str = "`POST /api/refresh/` (PostgreSQL)";
pub const LOGIN: &str = "`POST /api/login/`";
pub const REGISTER: &str = "`POST /api/register/`";
pub const ME_UNDER_LOGINS: &str = "`GET /api/me/` while logins saturate hashing";
pub const LOGINS_BESIDE: &str = "`POST /api/login/` beside it";

/// The Django original, for context (the figure for a 2-core machine).
const DJANGO_ME_PER_SECOND: &str = "270–300";

/// The targets of a 2-core machine (the hot-paths issue's: p99 under 2 ms, hashing at 85%).
const ME_SHARE: f64 = 0.50;
const ME_P99_MS: f64 = 2.0;
/// `GET /api/me/` with the main algorithm's tokens, against HS256's (the cheapest to verify).
const ME_ALGORITHM_SHARE: f64 = 0.90;
const REFRESH_SHARE: f64 = 0.25;
const HASH_SHARE: f64 = 0.85;
const ME_P99_GROWTH: f64 = 3.0;
const MEMORY_MIB: f64 = 64.0;

/// After the refresh phase the service is killed (SIGKILL) and restarted: how many of the
/// chains' last tokens, each answered before the kill, still refresh.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    pub survived: u64,
    pub presented: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Met,
    Missed,
    NotJudged,
}

struct Target {
    what: String,
    measured: String,
    verdict: Verdict,
}

pub struct Report {
    date: String,
    machine: String,
    command: String,
    service: String,
    /// What signs the access tokens of the main phases; `None` for a service run by the user.
    algorithm: Option<String>,
    /// Which algorithm signs the tokens of which phases, in words.
    tokens: String,
    /// What the PostgreSQL rows are, in words; `None` without `--postgres`.
    postgres: Option<String>,
    settings: String,
    smoke: bool,
    connections: usize,
    cores: usize,
    outcomes: Vec<Outcome>,
    targets: Vec<Target>,
    pub durability: Option<Durability>,
    /// The service's memory once seeded, before the first phase.
    pub memory_at_start: Option<Memory>,
    /// The hashing ceiling, timed before the login phase and after the register phase.
    pub hash_timings: Vec<HashTiming>,
}

impl Report {
    pub fn new(
        args: &Args,
        cores: usize,
        service_flags: Option<&ServiceFlags>,
        target: SocketAddr,
    ) -> Report {
        let service = match service_flags {
            Some(ServiceFlags {
                main: flags,
                database_url,
                ..
            }) => format!(
                "{}, started by the benchmark on {} with {}",
                match &args.bin {
                    Some(binary) => format!("restful-auth binary `{}`", binary.display()),
                    None => format!(
                        "restful-auth{}, release build",
                        revision()
                            .map(|rev| format!(" at {rev}"))
                            .unwrap_or_default()
                    ),
                },
                match database_url {
                    Some(url) => format!("the database `{url}` (`--database-url`)"),
                    None => "a fresh SQLite file (WAL)".to_owned(),
                },
                if flags.is_empty() {
                    "its default flags".to_owned()
                } else {
                    format!("its default flags but `{}`", shown(flags).join(" "))
                }
            ),
            None => format!("restful-auth already running at http://{target} (`--url`)"),
        };
        let login_connections = args.login_connections.unwrap_or(2 * cores);
        Report {
            date: date(),
            machine: machine(cores),
            command: command_line(),
            service,
            algorithm: service_flags.map(|flags| flags.algorithm.clone()),
            tokens: tokens(service_flags),
            postgres: service_flags
                .and_then(|flags| flags.postgres.as_ref())
                .map(|postgres| {
                    format!(
                        "a further service on `{}` (`--postgres`), with the main one's flags \
                         (`{}`), seeded alike; each of its rows right after its counterpart. \
                         Not a fresh database (earlier runs' accounts stay); on it the service \
                         reads each request's session from the database, where on SQLite it \
                         keeps live sessions in memory (`--session-cache-size`). No target \
                         judges these rows, nor the service's memory on them; PostgreSQL's \
                         own processes count as other CPU, and do not make the report call the \
                         machine busy. Unless given one, services on \
                         PostgreSQL take the benchmark's own master key, a constant",
                        postgres.url,
                        shown(&postgres.flags).join(" ")
                    )
                }),
            settings: format!(
                "{} connections per phase ({login_connections} more logging in during the mixed \
                 phase), {} warm-up + {} measured per phase, HTTP/1.1 keep-alive, closed loop",
                args.connections,
                humantime::format_duration(args.warmup),
                humantime::format_duration(args.duration),
            ),
            smoke: args.smoke,
            connections: args.connections,
            cores,
            outcomes: Vec::new(),
            targets: Vec::new(),
            durability: None,
            memory_at_start: None,
            hash_timings: Vec::new(),
        }
    }

    pub fn add(&mut self, outcomes: Vec<Outcome>) {
        for outcome in &outcomes {
            eprintln!(
                "  {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} failed",
                outcome.name,
                outcome.throughput(),
                outcome.ms(0.50),
                outcome.ms(0.99),
                outcome.ms(0.999),
                outcome.failed()
            );
            if let Some(sample) = &outcome.failure_sample {
                eprintln!("    a failing answer: {sample}");
            }
        }
        self.outcomes.extend(outcomes);
    }

    pub fn failed_requests(&self) -> u64 {
        self.outcomes.iter().map(Outcome::failed).sum()
    }

    pub fn missed_targets(&self) -> usize {
        self.targets
            .iter()
            .filter(|target| target.verdict == Verdict::Missed)
            .count()
    }

    pub fn durable(&self) -> bool {
        self.durability
            .is_none_or(|durability| durability.survived == durability.presented)
    }

    fn find(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|outcome| outcome.name == name)
    }

    /// Requests per second that bound `name`: the bare route for cheap requests, hashing
    /// (cores ÷ one hash time) for those that hash a password.
    fn ceiling(&self, name: &str) -> Option<f64> {
        match name {
            ME | ME_HS256 | ME_POSTGRES | REFRESH | REFRESH_HS256 | REFRESH_POSTGRES
            | ME_UNDER_LOGINS => self.bare_ceiling(),
            LOGIN | REGISTER | LOGINS_BESIDE => Some(self.hash_ceiling()),
            _ => None,
        }
    }

    /// The mean of the bare route's runs (before `GET /api/me/` and after the refreshes): a
    /// virtual machine's cores do not keep one speed for minutes.
    fn bare_ceiling(&self) -> Option<f64> {
        let runs: Vec<f64> = [BARE, BARE_AGAIN]
            .into_iter()
            .filter_map(|name| self.find(name).map(Outcome::throughput))
            .collect();
        (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
    }

    fn hash_ceiling(&self) -> f64 {
        self.cores as f64 / self.hash_time().as_secs_f64()
    }

    /// The median of every single hash timed.
    fn hash_time(&self) -> Duration {
        let mut samples: Vec<Duration> = self
            .hash_timings
            .iter()
            .flat_map(|timing| timing.samples.iter().copied())
            .collect();
        samples.sort();
        samples
            .get(samples.len() / 2)
            .copied()
            .unwrap_or(Duration::MAX)
    }

    /// Hashes per second with every core hashing at once, the mean of its timings.
    fn parallel_hashes(&self) -> Option<f64> {
        let rates: Vec<f64> = self.hash_timings.iter().map(|t| t.parallel_rate).collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }

    /// The most cores other processes kept busy while hashes were timed.
    fn hash_others(&self) -> Option<f64> {
        self.hash_timings
            .iter()
            .filter_map(|timing| timing.others)
            .reduce(f64::max)
    }

    /// The peak of each process the service ran as (it was restarted once, and the HS256
    /// phases had one of their own), and its memory after the last phase; the service on
    /// PostgreSQL is left out, as no target judges it.
    fn memory(&self) -> Option<Memory> {
        self.outcomes
            .iter()
            .filter(|outcome| ![ME_POSTGRES, REFRESH_POSTGRES].contains(&outcome.name.as_str()))
            .filter_map(|outcome| outcome.service_memory)
            .reduce(|a, b| Memory {
                peak_kib: a.peak_kib.max(b.peak_kib),
                now_kib: b.now_kib,
            })
    }

    fn share(&self, name: &str) -> Option<f64> {
        Some(self.find(name)?.throughput() / self.ceiling(name)?)
    }

    /// Judges every target from the figures.
    pub fn finish(&mut self) {
        let judge = |met: bool| {
            if self.smoke {
                Verdict::NotJudged
            } else if met {
                Verdict::Met
            } else {
                Verdict::Missed
            }
        };
        let mut targets = Vec::new();
        let mut share_target = |name: &str, what: String, wanted: f64| {
            if let Some(share) = self.share(name) {
                targets.push(Target {
                    what,
                    measured: format!("{:.0}%", share * 100.0),
                    verdict: judge(share >= wanted),
                });
            }
        };
        share_target(
            ME,
            format!("{ME} ≥ {:.0}% of the bare ceiling", ME_SHARE * 100.0),
            ME_SHARE,
        );
        share_target(
            REFRESH,
            format!(
                "{REFRESH} ≥ {:.0}% of the bare ceiling",
                REFRESH_SHARE * 100.0
            ),
            REFRESH_SHARE,
        );
        share_target(
            LOGIN,
            format!(
                "{LOGIN} ≥ {:.0}% of the hash-bound ceiling",
                HASH_SHARE * 100.0
            ),
            HASH_SHARE,
        );
        share_target(
            REGISTER,
            format!(
                "{REGISTER} ≥ {:.0}% of the hash-bound ceiling",
                HASH_SHARE * 100.0
            ),
            HASH_SHARE,
        );
        if let Some(me) = self.find(ME) {
            let p99 = me.ms(0.99);
            let at = if self.connections == 32 {
                String::new()
            } else {
                format!(" (run at {} connections, not 32)", self.connections)
            };
            targets.push(Target {
                what: format!("{ME} p99 < {ME_P99_MS} ms at 32 connections"),
                measured: format!("{p99:.2} ms{at}"),
                verdict: if self.connections == 32 {
                    judge(p99 < ME_P99_MS)
                } else {
                    Verdict::NotJudged
                },
            });
        }
        if let (Some(algorithm), Some(main), Some(hs256)) =
            (&self.algorithm, self.find(ME), self.find(ME_HS256))
            && algorithm != "HS256"
        {
            let share = main.throughput() / hs256.throughput();
            targets.push(Target {
                what: format!(
                    "{ME} with {algorithm} tokens ≥ {:.0}% of it with HS256 tokens",
                    ME_ALGORITHM_SHARE * 100.0
                ),
                measured: format!(
                    "{:.0} vs {:.0} req/s = {:.0}%",
                    main.throughput(),
                    hs256.throughput(),
                    share * 100.0
                ),
                verdict: judge(share >= ME_ALGORITHM_SHARE),
            });
        }
        if let (Some(alone), Some(loaded)) = (self.find(ME), self.find(ME_UNDER_LOGINS)) {
            let growth = loaded.ms(0.99) / alone.ms(0.99);
            targets.push(Target {
                what: format!(
                    "{ME} p99 while logins saturate hashing ≤ {ME_P99_GROWTH}× its unloaded p99"
                ),
                measured: format!(
                    "{:.2} ms vs {:.2} ms = {growth:.1}×",
                    loaded.ms(0.99),
                    alone.ms(0.99)
                ),
                verdict: judge(growth <= ME_P99_GROWTH),
            });
        }
        targets.push(match self.durability {
            Some(Durability {
                survived,
                presented,
            }) => Target {
                what: format!("{REFRESH}: each rotation committed before it is answered"),
                measured: format!(
                    "{survived} of {presented} last tokens refreshed after `kill -9` and restart"
                ),
                // Not a performance figure: judged in smoke runs too.
                verdict: if survived == presented {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            },
            None => Target {
                what: format!("{REFRESH}: each rotation committed before it is answered"),
                measured: "not checked: the benchmark did not start the service".into(),
                verdict: Verdict::NotJudged,
            },
        });
        targets.push(match self.memory() {
            Some(memory) => Target {
                what: format!("service resident memory < {MEMORY_MIB} MiB"),
                measured: format!(
                    "peak (VmHWM) {:.1} MiB; at the end (VmRSS) {:.1} MiB",
                    mib(memory.peak_kib),
                    mib(memory.now_kib)
                ),
                verdict: judge(mib(memory.peak_kib) < MEMORY_MIB),
            },
            None => Target {
                what: format!("service resident memory < {MEMORY_MIB} MiB"),
                measured: "not measured: give `--pid` with `--url`".into(),
                verdict: Verdict::NotJudged,
            },
        });
        self.targets = targets;
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "# Benchmarks\n");
        let _ = writeln!(
            w,
            "Written by the load benchmark in [`loadtest/`](loadtest/) itself; rerun it rather \
             than edit the figures.\n"
        );
        let _ = writeln!(w, "{}", HOW_TO);
        let title = if self.smoke {
            "Smoke run"
        } else {
            "Latest run"
        };
        let _ = writeln!(w, "## {title}\n");
        let _ = writeln!(w, "| | |\n|---|---|");
        let _ = writeln!(w, "| date | {} |", self.date);
        let _ = writeln!(w, "| machine | {} |", self.machine);
        let _ = writeln!(w, "| command | `{}` |", self.command);
        let _ = writeln!(w, "| service | {} |", self.service);
        let _ = writeln!(w, "| access tokens signed with | {} |", self.tokens);
        if let Some(postgres) = &self.postgres {
            let _ = writeln!(w, "| rows marked (PostgreSQL) | {postgres} |");
        }
        let _ = writeln!(
            w,
            "| load generator | this machine, sharing its cores with the service; one tokio \
             runtime, HTTP/1.1 on hyper |"
        );
        let _ = writeln!(w, "| load | {} |", self.settings);
        let _ = writeln!(
            w,
            "| one Argon2id hash | {:.1} ms (m=19456 KiB, t=2, p=1; median of {} hashes timed \
             in this process, half before the login phase and half after the register phase, \
             each after 0.5 s of warm-up, memory reused; other processes busy meanwhile: {} \
             cores) → hash-bound ceiling {} cores ÷ {:.1} ms = {:.1} hashes/s |",
            ms(self.hash_time()),
            self.hash_timings
                .iter()
                .map(|t| t.samples.len())
                .sum::<usize>(),
            cores(self.hash_others()),
            self.cores,
            ms(self.hash_time()),
            self.hash_ceiling()
        );
        if let Some(rate) = self.parallel_hashes() {
            let reached: Vec<String> = [LOGIN, REGISTER]
                .into_iter()
                .filter_map(|name| {
                    let share = self.find(name)?.throughput() / rate * 100.0;
                    Some(format!("{name} reached {share:.0}% of it"))
                })
                .collect();
            let _ = writeln!(
                w,
                "| {} hashes at once | {rate:.1} hashes/s measured, {:.0}% of that ceiling (the \
                 cores share caches and memory bandwidth); {} |",
                self.cores,
                rate / self.hash_ceiling() * 100.0,
                reached.join(", ")
            );
        }
        let _ = writeln!(w, "\n### Throughput and latency\n");
        let _ = writeln!(
            w,
            "| phase | conns | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | ceiling req/s | \
             of ceiling | server CPU | loadgen CPU | other CPU | service RSS MiB |"
        );
        let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for outcome in &self.outcomes {
            let ceiling = self.ceiling(&outcome.name);
            let _ = writeln!(
                w,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                outcome.name,
                outcome.connections,
                outcome.throughput(),
                outcome.ms(0.50),
                outcome.ms(0.99),
                outcome.ms(0.999),
                outcome.failed(),
                ceiling.map_or("—".into(), |ceiling| format!("{ceiling:.0}")),
                self.share(&outcome.name)
                    .map_or("—".into(), |share| format!("{:.0}%", share * 100.0)),
                cores(outcome.server_cores),
                cores(outcome.client_cores),
                cores(others(outcome)),
                outcome
                    .service_memory
                    .map_or("—".into(), |memory| format!("{:.1}", mib(memory.now_kib))),
            );
        }
        let _ = writeln!(
            w,
            "\nCPU columns: cores busy during the measured time in the server process (the \
             service, the one for HS256 tokens or on PostgreSQL, or the bare server), in the load \
             generator, and in every other process (and kernel thread) of the machine, time its host \
             took from it (steal) included; it has {}. Phases that run together share one \
             measurement. Service RSS: its VmRSS right after the phase{}.",
            self.cores,
            self.memory_at_start.map_or(String::new(), |memory| format!(
                " ({:.1} MiB once started and seeded, before the first phase)",
                mib(memory.now_kib)
            ))
        );
        let busiest = busiest_others(&self.outcomes)
            .into_iter()
            .chain(self.hash_others())
            .fold(0.0_f64, f64::max);
        if busiest > SHARED_MACHINE_CORES {
            let _ = writeln!(
                w,
                "\n**The machine was not idle**: other processes kept up to {busiest:.2} cores \
                 busy during a measured phase or the hash timing. The figures are lower than an \
                 idle machine gives, and the ratios less certain; rerun on an idle one to compare."
            );
        }
        let failures: Vec<_> = self
            .outcomes
            .iter()
            .flat_map(|outcome| {
                outcome
                    .failures
                    .iter()
                    .map(move |(kind, count)| format!("- {}: {count} × {kind}", outcome.name))
            })
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(w, "\n**Failed requests** (the run fails):\n");
            let _ = writeln!(w, "{}", failures.join("\n"));
        }

        let _ = writeln!(w, "\n### Targets (2-core machine, load generator on it)\n");
        let _ = writeln!(w, "| target | measured | result |\n|---|---|---|");
        for target in &self.targets {
            let verdict = match target.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::NotJudged if self.smoke => "not judged (smoke run)",
                Verdict::NotJudged => "not judged",
            };
            let _ = writeln!(w, "| {} | {} | {verdict} |", target.what, target.measured);
        }
        if let Some(me) = self.find(ME) {
            let _ = writeln!(
                w,
                "\nFor scale: the Django original answers about {DJANGO_ME_PER_SECOND} `/api/me/` \
                 requests per second on a 2-core machine; this run answered {:.0}.",
                me.throughput()
            );
        }
        out
    }
}

const HOW_TO: &str = "\
## How to reproduce

    cargo run --release -p loadtest

On a 2-core machine it takes about two and a half minutes: it builds the service (`cargo build --release`),
starts it on a fresh SQLite file in a temporary directory with its default flags (but the
registration and per-account login throttles off: the benchmark registers thousands of accounts
from one address, and logs into one account from 32 connections at once), and loads it from this machine's loopback interface, phase after phase, each with its own warm-up:

1. **bare ceiling**: the same HTTP stack (axum 0.8 `axum::serve` on a multi-threaded tokio
   runtime, in a process of its own) answering a constant JSON body: what no endpoint can beat.
   It runs again after the refresh phase, and the ceiling is the mean of the two runs (a
   virtual machine's cores do not keep one speed for minutes);
2. **`GET /api/me/`** with one session's access token (renewed in the background);
3. **`POST /api/refresh/`**: each connection chains its own session, presenting each new refresh
   token exactly once. Right after, the service is killed with SIGKILL and restarted on the same
   file, and every chain's last token must refresh: a rotation is committed before it is answered;
4. **`POST /api/login/`** and 5. **`POST /api/register/`** (a new address each time), both bound by
   Argon2id: their ceiling is cores ÷ the time of one hash with the service's parameters,
   timed in the benchmark's own process just before the login phase and after the register
   phase (a virtual machine's cores do not keep one speed for minutes);
6. **`GET /api/me/` while logins saturate the hashing pool** (more logins in flight than cores).

The service signs access tokens with EdDSA (Ed25519), its default, or with the algorithm a
`--service-arg=--jwt-algorithm=…` names. Unless that is HS256 (or the service is one `--url`
names), phases 2 and 3 are each followed by the same load on a second service, started the same
way but with `--jwt-algorithm HS256` on a fresh file of its own and seeded alike (the rows marked
*HS256 tokens*): what verifying and signing cost with the main algorithm against HMAC, under the
same drift of the machine.

`--postgres postgres://postgres@127.0.0.1:5432/postgres` names a PostgreSQL database the
benchmark may fill: a further service, with the same flags (and the main algorithm named, as the
database may hold a key of another one), runs on it, seeded alike with accounts new to this run,
and its phases 2 and 3 follow their counterparts (the rows marked *PostgreSQL*, with their share
of the bare ceiling; no target judges them). On SQLite the service keeps live sessions in memory
(`--session-cache-size`); on PostgreSQL it reads each request's session from the database, and
these rows show that difference with the rest of the database's. PostgreSQL's own processes
count as other CPU. `--service-arg=--database-url=…` runs the main service itself on
another database (then with no HS256 rows if it is PostgreSQL). A password goes in `PGPASSWORD`
or `~/.pgpass`, not in a URL: the report shows the URLs. PostgreSQL needs a master key given:
unless the service args or the environment give one, the benchmark gives its own, a constant
(`RESTFUL_AUTH_MASTER_KEY`), so a database an earlier run filled opens again.

Latency is from sending a request to reading the last byte of its answer (HDR histogram).
The service's peak resident memory is its VmHWM from `/proc/<pid>/status` (the largest of its
processes: the restart makes two, and the HS256 phases have one of their own; the PostgreSQL
one is left out). Any answer other than 2xx fails the run. A SIGINT or SIGTERM stops every
process the benchmark started, then ends it (status 130 or 143) without a report.

Options (`cargo run --release -p loadtest -- --help`): `--duration 10s`, `--warmup 1s`,
`--connections 32`, `--url http://127.0.0.1:PORT --pid PID` (a running service; loopback only),
`--bin PATH` (a built binary), `--service-arg=--log-level=warn` (a flag for the started service),
`--postgres URL` (rows on PostgreSQL), `--smoke` (a few seconds, writes nothing: what CI runs),
`--no-write`, `--require-targets`.
";

/// Which algorithm signs the tokens of which phases.
fn tokens(service_flags: Option<&ServiceFlags>) -> String {
    match service_flags {
        Some(ServiceFlags {
            algorithm,
            hs256: Some(_),
            ..
        }) => format!(
            "{algorithm}, but HS256 in the phases marked \"(HS256 tokens)\": those load a second \
             service, started the same way but with `--jwt-algorithm HS256` on a fresh SQLite \
             file of its own, each right after its {algorithm} counterpart"
        ),
        Some(ServiceFlags { algorithm, .. }) if algorithm == "HS256" => {
            format!("{algorithm} in every phase (so no second service signing with HS256)")
        }
        Some(ServiceFlags { algorithm, .. }) => format!(
            "{algorithm} in every phase (no second service signing with HS256: it runs on a \
             fresh SQLite file, so beside a service on PostgreSQL it would price the database \
             too)"
        ),
        None => "whatever the running service signs with; no phases with HS256 tokens (they \
                 need a service the benchmark starts)"
            .to_owned(),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Cores busy in other processes than the server and the load generator.
fn others(outcome: &Outcome) -> Option<f64> {
    let others = outcome.machine_cores? - outcome.server_cores? - outcome.client_cores?;
    Some(others.max(0.0))
}

/// The most cores other processes kept busy in a phase. The rows on `--postgres` do not count:
/// there PostgreSQL's own processes are the service's database at work, not another load.
fn busiest_others(outcomes: &[Outcome]) -> Option<f64> {
    outcomes
        .iter()
        .filter(|outcome| ![ME_POSTGRES, REFRESH_POSTGRES].contains(&outcome.name.as_str()))
        .filter_map(others)
        .reduce(f64::max)
}

/// Other processes busier than this (on average, in cores) make the figures unrepresentative.
const SHARED_MACHINE_CORES: f64 = 0.1;

fn cores(used: Option<f64>) -> String {
    used.map_or("—".into(), |used| format!("{used:.2}"))
}

/// What `date` says, as the issue asks the report to record.
fn date() -> String {
    Command::new("date")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The processor from `/proc/cpuinfo`, the cores `nproc` counts, memory and kernel.
fn machine(cores: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown processor", |(_, model)| model.trim())
        .to_owned();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            let kib: f64 = meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(format!(", {:.1} GiB memory", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!(", Linux {}", release.trim()))
        .unwrap_or_default();
    format!("{model} (`/proc/cpuinfo`), {cores} cores (`nproc`){memory}{kernel}")
}

/// How this run was started, as someone would type it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut line = String::from("cargo run --release -p loadtest");
    if std::env::var_os("CARGO").is_none() {
        line = std::env::args().next().unwrap_or_else(|| "loadtest".into());
    } else if !args.is_empty() {
        line.push_str(" --");
    }
    for arg in shown(&args) {
        line.push(' ');
        line.push_str(&arg);
    }
    line
}

/// `args` as the report may show them, as the report is committed: the value of a flag that
/// holds a secret (`--secret-key`, `--master-key`, `--smtp-password`, …, also inside
/// `--service-arg=…`) becomes `…`. A database URL with a password is refused before the run.
fn shown(args: &[String]) -> Vec<String> {
    let secret = |flag: &str| {
        flag.starts_with("--")
            && ["secret", "key", "password", "token"]
                .iter()
                .any(|word| flag.contains(word))
            // A file's name is no secret.
            && !flag.ends_with("-file")
    };
    let mut value_is_secret = false;
    args.iter()
        .map(|arg| {
            // A service's `--master-key VALUE` reaches the benchmark as `--service-arg
            // --master-key --service-arg VALUE` (or with `--service-arg=`).
            if std::mem::take(&mut value_is_secret) {
                return match arg.as_str() {
                    "--service-arg" => {
                        value_is_secret = true;
                        arg.clone()
                    }
                    _ if arg.starts_with("--service-arg=") => "--service-arg=…".to_owned(),
                    _ => "…".to_owned(),
                };
            }
            let (service_arg, inner) = match arg.strip_prefix("--service-arg=") {
                Some(inner) => ("--service-arg=", inner),
                None => ("", arg.as_str()),
            };
            // The flag ends at the first `=`: a base64 value may hold more.
            match inner.split_once('=') {
                Some((flag, _)) if secret(flag) => format!("{service_arg}{flag}=…"),
                Some(_) => arg.clone(),
                None => {
                    value_is_secret = secret(inner);
                    arg.clone()
                }
            }
        })
        .collect()
}

/// The commit measured, and whether the working tree differed from it.
fn revision() -> Option<String> {
    let root = crate::processes::workspace_root();
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(&root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    Some(if dirty {
        format!("commit {commit} + uncommitted changes")
    } else {
        format!("commit {commit}")
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hdrhistogram::Histogram;

    use super::*;

    fn phase(name: &str, others: f64) -> Outcome {
        Outcome {
            name: name.to_owned(),
            connections: 32,
            ok: 1000,
            elapsed: Duration::from_secs(1),
            latency: Histogram::new(3).unwrap(),
            failures: BTreeMap::new(),
            failure_sample: None,
            server_cores: Some(1.0),
            client_cores: Some(0.5),
            machine_cores: Some(1.5 + others),
            service_memory: None,
            scripts: Vec::new(),
        }
    }

    #[test]
    fn postgresql_at_work_for_its_rows_is_not_another_load() {
        let on_postgres = [
            phase("`GET /api/me/`", 0.02),
            phase(ME_POSTGRES, 0.8),
            phase(REFRESH_POSTGRES, 1.1),
        ];
        let busiest = busiest_others(&on_postgres).unwrap();
        assert!((busiest - 0.02).abs() < 1e-9, "{busiest}");

        let shared = [phase("`GET /api/me/`", 0.4), phase(ME_POSTGRES, 0.8)];
        let busiest = busiest_others(&shared).unwrap();
        assert!((busiest - 0.4).abs() < 1e-9, "{busiest}");
    }

    #[test]
    fn a_secret_ending_in_base64_padding_is_not_shown_in_part() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(&args(&[
                "--service-arg=--master-key=q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8=",
                "--service-arg",
                "--secret-key=a=b==",
                "--service-arg",
                "--master-key",
                "--service-arg",
                "bWFzdGVy",
                "--service-arg=--smtp-password",
                "--service-arg=hunter2",
            ])),
            args(&[
                "--service-arg=--master-key=…",
                "--service-arg",
                "--secret-key=…",
                "--service-arg",
                "--master-key",
                "--service-arg",
                "…",
                "--service-arg=--smtp-password",
                "--service-arg=…",
            ])
        );
    }

    #[test]
    fn secrets_among_the_flags_are_not_shown() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(&args(&[
                "--service-arg=--master-key=abc",
                "--service-arg",
                "--secret-key",
                "s3cret",
                "--secret-key-file=/run/key",
                "--jwt-algorithm",
                "EdDSA",
            ])),
            args(&[
                "--service-arg=--master-key=…",
                "--service-arg",
                "--secret-key",
                "…",
                "--secret-key-file=/run/key",
                "--jwt-algorithm",
                "EdDSA",
            ])
        );
    }
}
