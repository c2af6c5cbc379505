//! Observability: a log line for every request, Prometheus metrics by route and status, and the
//! `/metrics` page.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Level;

use super::AppState;
use super::error::Incident;
use super::extract::{Requester, TrustedProxies};
use crate::store::Store;
use crate::telemetry::{self, Milliseconds};

const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder. Installed once: every router of the process (tests
/// build many) reports into it.
fn prometheus() -> &'static Prometheus {
    static PROMETHEUS: OnceLock<Prometheus> = OnceLock::new();
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .expect("constant buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        let process = metrics_process::Collector::default();
        describe_metrics(&process);
        metrics::gauge!(
            "restful_auth_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "commit" => env!("RESTFUL_AUTH_COMMIT"),
            "rustc" => env!("RESTFUL_AUTH_RUSTC"),
        )
        .set(1.0);
        // Histograms keep every sample until upkeep folds them into their buckets, which a
        // scrape does; with no scraper the samples piled up (8 bytes a request, for good).
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "no metrics upkeep: histograms grow until /metrics is read");
        }
        Prometheus { handle, process }
    })
}

/// The recorder's handle, and the reader of the process's own figures (refreshed per scrape).
struct Prometheus {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

/// The `# HELP` line of every metric the service reports, said once at start: a metric
/// without one is a name a reader has to guess the meaning of.
fn describe_metrics(process: &metrics_process::Collector) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "Requests answered, by method, route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by method, route template and status."
    );
    describe_counter!(
        "logins_total",
        "Login attempts by outcome: success, failure, mfa_required (the password was right; \
         a one-time code is needed)."
    );
    describe_counter!(
        "throttled_requests_total",
        "Requests refused with 429 by a throttle limit: login, registration, password-change, \
         refresh, password-reset."
    );
    describe_counter!(
        "refresh_token_reuse_detected_total",
        "Consumed refresh tokens presented again; each ended its session."
    );
    describe_gauge!(
        "password_hash_queue_depth",
        "Password checks waiting for the hashing pool."
    );
    describe_counter!(
        "password_hash_shed_total",
        "Password checks refused with 503 because --hash-queue-limit were waiting."
    );
    describe_counter!(
        "connections_refused_total",
        "Client connections closed at once because --max-connections were open."
    );
    describe_counter!("mail_sent_total", "Mails the SMTP server accepted.");
    describe_counter!(
        "mail_retries_total",
        "Mail deliveries that failed and were tried again."
    );
    describe_counter!(
        "mail_failures_total",
        "Mails given up on after their last attempt (or refused before the first)."
    );
    describe_counter!(
        "mail_dropped_total",
        "Mails dropped because the outbox held --mail-queue-limit."
    );
    describe_gauge!("mail_queue_depth", "Mails waiting in the outbox.");
    describe_gauge!(
        "database_connections",
        "The database pool's connections, by state: in_use, idle."
    );
    describe_gauge!(
        "database_connections_max",
        "The most connections the database pool opens."
    );
    describe_gauge!(
        "restful_auth_build_info",
        "Always 1; its labels say which build runs: version, commit, rustc."
    );
    process.describe();
}

/// Counts and times every request by method, route template (never the raw path, whose
/// cardinality a client controls) and status.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    SERIES.with_borrow_mut(|by_route| {
        if !by_route.contains_key(route) {
            by_route.insert(route.to_owned(), Vec::new());
        }
        let known = by_route.get_mut(route).expect("inserted above");
        let index = known
            .iter()
            .position(|series| series.method == method && series.status == status)
            .unwrap_or_else(|| {
                known.push(Series::register(method, route, status));
                known.len() - 1
            });
        let series = &known[index];
        series.requests.increment(1);
        series.duration.record(seconds);
    });
    response
}

thread_local! {
    /// The series this thread has counted into, by route: naming a series (three label strings
    /// hashed into a key, looked up in the registry) for every request cost more than counting.
    static SERIES: RefCell<HashMap<String, Vec<Series>>> = RefCell::default();
}

/// The metrics of one method, route and status.
struct Series {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn register(method: &'static str, route: &str, status: u16) -> Series {
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        Series {
            method,
            status,
            requests: metrics::counter!("http_requests_total", &labels),
            duration: metrics::histogram!("http_request_duration_seconds", &labels),
        }
    }
}

/// A standard method's name, else `other`: any token is a method, and each series is kept for
/// good, so a client must not be able to make up new ones.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method.as_str())
        .unwrap_or("other")
}

/// What the request layer needs to log a request: whose `X-Forwarded-For` to believe, and
/// whether every request is logged (`--access-log`) or only those that failed.
#[derive(Clone)]
pub struct RequestLog {
    pub trusted: TrustedProxies,
    pub every_request: bool,
}

/// One line per request, once answered: method, path (never the query), request id, status,
/// latency, the client address, the user and session ids when its access token was accepted,
/// and any [`Incident`] (why a server error failed; a reused refresh token). Never headers or
/// bodies, which carry tokens and passwords. One event and no span around the request: the
/// span was a tenth of the instructions of `GET /api/me/` (callgrind). The line is written
/// straight from these values ([`telemetry::access_line`]), without the subscriber's
/// formatting, which collects each field into a map of its own.
///
/// With `--access-log off` only the lines that tell what went wrong are written: a server
/// error, a reused refresh token.
pub async fn log_request(
    State(log): State<RequestLog>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let request_id = request.headers().get(super::REQUEST_ID).cloned();
    let requester = Arc::new(Requester::of(&request, &log.trusted));
    request.extensions_mut().insert(requester.clone());
    let response = next.run(request).await;
    let latency = started.elapsed();
    let status = response.status();
    let (level, message, error) = match response.extensions().get::<Incident>() {
        None if status.is_server_error() => (Level::WARN, "answered with a server error", None),
        None => (Level::INFO, "answered", None),
        Some(Incident::Failed(detail)) => (Level::ERROR, "request failed", Some(detail)),
        Some(Incident::Unavailable(detail)) => (Level::WARN, "service unavailable", Some(detail)),
        Some(Incident::RefreshTokenReused) => (
            Level::WARN,
            "a consumed refresh token was presented again; its session ended",
            None,
        ),
    };
    // The log filter decides, as for any event: by the line's target and level.
    let enabled = match level {
        Level::ERROR => tracing::enabled!(target: telemetry::ACCESS_TARGET, Level::ERROR),
        Level::WARN => tracing::enabled!(target: telemetry::ACCESS_TARGET, Level::WARN),
        _ => log.every_request && tracing::enabled!(target: telemetry::ACCESS_TARGET, Level::INFO),
    };
    if !enabled {
        return response;
    }
    telemetry::access_line(level, message, |line| {
        line.text("method", &method);
        line.quoted("path", uri.path());
        // Validated printable ASCII without spaces (see `forget_unusable_request_id`).
        let request_id = request_id.as_ref().and_then(|id| id.to_str().ok());
        line.text("request_id", request_id.unwrap_or_default());
        line.number("status", status.as_u16());
        line.number("latency_ms", Milliseconds(latency));
        if let Some(client) = requester.address {
            line.text("client", client);
        }
        if let Some((user_id, session_id)) = requester.caller() {
            line.number("user_id", user_id);
            line.text("session_id", session_id);
        }
        if let Some(error) = error {
            line.text("error", error);
        }
    });
    response
}

/// `GET /metrics`: Prometheus text format. The figures read rather than counted (the pool,
/// the process) are refreshed first.
pub async fn metrics_page<S: Store>(State(auth): State<AppState<S>>) -> impl IntoResponse {
    let pool = auth.pool_state();
    metrics::gauge!("database_connections", "state" => "in_use").set(pool.in_use);
    metrics::gauge!("database_connections", "state" => "idle").set(pool.idle);
    metrics::gauge!("database_connections_max").set(pool.max);
    let prometheus = prometheus();
    prometheus.process.collect();
    prometheus.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        prometheus.handle.render(),
    )
}

/// Installs the recorder before the first request, so early counters are not lost.
pub fn install() {
    prometheus();
}
