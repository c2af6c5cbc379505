//! The load generator: closed-loop HTTP/1.1 keep-alive connections, each sending its next
//! request as soon as the previous answer is read, for a bounded time, to a loopback address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// What one connection sends, request after request.
pub enum Script {
    /// A GET, with the bearer token of the shared cell when there is one.
    Get {
        path: &'static str,
        bearer: Option<TokenCell>,
    },
    /// `POST /api/refresh/`, each answer's refresh token presented by the next request: every
    /// token is used exactly once, so every request is a real rotation.
    RefreshChain { refresh_token: String },
    /// The same login again and again: one password verification each.
    Login { body: Bytes },
    /// A new account each time: `{prefix}-{n}@example.org`.
    Register {
        prefix: String,
        password: &'static str,
        next: u64,
    },
}

impl Script {
    fn request(&mut self, host: &HeaderValue) -> Request<Full<Bytes>> {
        let (method, path, body) = match self {
            Script::Get { path, .. } => (Method::GET, *path, Bytes::new()),
            Script::RefreshChain { refresh_token } => (
                Method::POST,
                "/api/refresh/",
                Bytes::from(format!(r#"{{"refresh_token":"{refresh_token}"}}"#)),
            ),
            Script::Login { body } => (Method::POST, "/api/login/", body.clone()),
            Script::Register {
                prefix,
                password,
                next,
            } => {
                *next += 1;
                let body =
                    format!(r#"{{"email":"{prefix}-{next}@example.org","password":"{password}"}}"#);
                (Method::POST, "/api/register/", Bytes::from(body))
            }
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = hyper::Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(HOST, host.clone());
        if method == Method::POST {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Script::Get {
            bearer: Some(cell), ..
        } = self
        {
            headers.insert(AUTHORIZATION, cell.header());
        }
        request
    }

    /// Takes what the next request needs from a 2xx answer.
    fn answered(&mut self, body: &[u8]) -> anyhow::Result<()> {
        if let Script::RefreshChain { refresh_token } = self {
            *refresh_token = token_field(body, "refresh_token")?;
        }
        Ok(())
    }

    /// A refresh chain whose link failed cannot go on: its token is spent or unknown.
    fn broken_by_failure(&self) -> bool {
        matches!(self, Script::RefreshChain { .. })
    }
}

/// An access token shared by the connections of a phase and renewed behind their backs.
#[derive(Clone)]
pub struct TokenCell(Arc<RwLock<HeaderValue>>);

impl TokenCell {
    pub fn new(access_token: &str) -> anyhow::Result<TokenCell> {
        Ok(TokenCell(Arc::new(RwLock::new(bearer(access_token)?))))
    }

    fn header(&self) -> HeaderValue {
        self.0.read().expect("never poisoned").clone()
    }

    pub fn set(&self, access_token: &str) -> anyhow::Result<()> {
        *self.0.write().expect("never poisoned") = bearer(access_token)?;
        Ok(())
    }
}

fn bearer(access_token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {access_token}")).context("access token as a header")
}

/// A string field of a JSON answer.
pub fn token_field(body: &[u8], field: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_slice(body).context("answer is not JSON")?;
    value[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("answer has no {field:?}"))
}

/// Connections sending one kind of request at one server.
pub struct Group {
    pub name: String,
    pub target: SocketAddr,
    pub scripts: Vec<Script>,
    /// The server process, for its CPU time.
    pub server_pid: Option<u32>,
}

/// What a group did in the measured window (warm-up excluded, except from `failures`).
pub struct Outcome {
    pub name: String,
    pub connections: usize,
    /// 2xx answers received in the measured window.
    pub ok: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latency of those answers, in microseconds.
    pub latency: Histogram<u64>,
    /// Every non-2xx answer and transport error, warm-up included, by kind.
    pub failures: BTreeMap<String, u64>,
    /// One failing answer's body, to tell what went wrong.
    pub failure_sample: Option<String>,
    /// Cores the server process used in the measured window.
    pub server_cores: Option<f64>,
    /// Cores this process (the load generator) used in the measured window.
    pub client_cores: Option<f64>,
    /// Cores the whole machine was busy in the measured window (every process).
    pub machine_cores: Option<f64>,
    /// The service's memory figures right after the phase.
    pub service_memory: Option<crate::processes::Memory>,
    /// What each connection's script holds at the end (refresh chains: their last token).
    pub scripts: Vec<Script>,
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The latency at `quantile`, in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// How long to load, and for how long each request may take.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
}

/// Runs every group at once: a warm-up, then the measured window; every connection stops by
/// itself once the window is over.
pub async fn run(groups: Vec<Group>, timing: Timing) -> Vec<Outcome> {
    let started = Instant::now();
    let measure_from = started + timing.warmup;
    let deadline = measure_from + timing.duration;
    let mut tasks: Vec<(Group, JoinSet<Connection>)> = Vec::new();
    for mut group in groups {
        let mut set = JoinSet::new();
        for script in std::mem::take(&mut group.scripts) {
            let target = group.target;
            set.spawn(drive(
                target,
                script,
                measure_from,
                deadline,
                timing.request_timeout,
            ));
        }
        tasks.push((group, set));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before: Vec<_> = tasks
        .iter()
        .map(|(group, _)| group.server_pid.and_then(cpu_seconds))
        .collect();
    let client_before = cpu_seconds(std::process::id());
    let machine_before = machine_busy_seconds();

    tokio::time::sleep_until(deadline.into()).await;
    let cpu_after: Vec<_> = tasks
        .iter()
        .map(|(group, _)| group.server_pid.and_then(cpu_seconds))
        .collect();
    let client_after = cpu_seconds(std::process::id());
    let machine_after = machine_busy_seconds();
    let elapsed = deadline - measure_from;
    let cores =
        |before: Option<f64>, after: Option<f64>| Some((after? - before?) / elapsed.as_secs_f64());

    // Answers to requests in flight at the deadline are awaited, not counted.
    let mut outcomes = Vec::new();
    for (((group, mut set), before), after) in tasks.into_iter().zip(cpu_before).zip(cpu_after) {
        let mut connections = Vec::new();
        while let Some(connection) = set.join_next().await {
            connections.push(connection.expect("a connection task never panics"));
        }
        let server_cores = cores(before, after);
        let mut outcome = Outcome {
            name: group.name,
            connections: connections.len(),
            ok: 0,
            elapsed,
            latency: histogram(),
            failures: BTreeMap::new(),
            failure_sample: None,
            server_cores,
            client_cores: cores(client_before, client_after),
            machine_cores: cores(machine_before, machine_after),
            service_memory: None,
            scripts: Vec::new(),
        };
        for Connection { tally, script } in connections {
            outcome.ok += tally.ok;
            outcome
                .latency
                .add(&tally.latency)
                .expect("histograms share bounds");
            for (kind, count) in tally.failures {
                *outcome.failures.entry(kind).or_default() += count;
            }
            outcome.failure_sample = outcome.failure_sample.or(tally.failure_sample);
            outcome.scripts.push(script);
        }
        outcomes.push(outcome);
    }
    outcomes
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// One connection's share of a group's outcome.
struct Connection {
    tally: Tally,
    script: Script,
}

struct Tally {
    ok: u64,
    latency: Histogram<u64>,
    failures: BTreeMap<String, u64>,
    failure_sample: Option<String>,
}

async fn drive(
    target: SocketAddr,
    mut script: Script,
    measure_from: Instant,
    deadline: Instant,
    request_timeout: Duration,
) -> Connection {
    let host = HeaderValue::from_str(&target.to_string()).expect("an address is a valid header");
    let mut tally = Tally {
        ok: 0,
        latency: histogram(),
        failures: BTreeMap::new(),
        failure_sample: None,
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < deadline {
        let mut fail = |kind: String, sample: Option<String>| {
            *tally.failures.entry(kind).or_default() += 1;
            if tally.failure_sample.is_none() {
                tally.failure_sample = sample;
            }
        };
        let mut open = match sender.take() {
            Some(open) => open,
            None => match tokio::time::timeout(request_timeout, connect(target)).await {
                Ok(Ok(open)) => open,
                Ok(Err(error)) => {
                    fail(format!("connect: {error:#}"), None);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    fail("connect: timed out".into(), None);
                    continue;
                }
            },
        };
        let request = script.request(&host);
        let sent = Instant::now();
        let answer = tokio::time::timeout(request_timeout, exchange(&mut open, request)).await;
        let answered = Instant::now();
        let measured = (measure_from..deadline).contains(&answered);
        match answer {
            Ok(Ok((status, body))) if status.is_success() => {
                sender = Some(open);
                if let Err(error) = script.answered(&body) {
                    fail(format!("{status} with a bad body: {error:#}"), None);
                    break;
                }
                if measured {
                    tally.ok += 1;
                    let micros = (answered - sent).as_micros();
                    tally
                        .latency
                        .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                }
            }
            Ok(Ok((status, body))) => {
                sender = Some(open);
                fail(
                    status.to_string(),
                    Some(String::from_utf8_lossy(&body).into_owned()),
                );
                if script.broken_by_failure() {
                    break;
                }
            }
            Ok(Err(error)) => fail(format!("transport: {error:#}"), None),
            Err(_) => fail(
                format!(
                    "no answer within {}",
                    humantime::format_duration(request_timeout)
                ),
                None,
            ),
        }
    }
    Connection { tally, script }
}

async fn connect(target: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; its error, if any, shows up in the next exchange.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One request on a connection of its own (for seeding), its answer required to be `expect`.
pub async fn once(
    target: SocketAddr,
    method: Method,
    path: &'static str,
    body: Option<String>,
    expect: StatusCode,
) -> anyhow::Result<Bytes> {
    let mut sender = connect(target).await?;
    let mut request = Request::new(Full::new(Bytes::from(body.clone().unwrap_or_default())));
    *request.method_mut() = method.clone();
    *request.uri_mut() = hyper::Uri::from_static(path);
    request
        .headers_mut()
        .insert(HOST, HeaderValue::from_str(&target.to_string())?);
    if body.is_some() {
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let (status, answer) =
        tokio::time::timeout(Duration::from_secs(30), exchange(&mut sender, request))
            .await
            .with_context(|| format!("{method} {path}: no answer within 30 s"))??;
    if status != expect {
        bail!(
            "{method} {path}: expected {expect}, got {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(answer)
}

/// Seconds all cores together have been busy (not idle, not waiting for I/O) since boot, from
/// the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy / clock_ticks()?)
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// Seconds of CPU (user + system) the process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks()?)
}
