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
use tracing::field::display;

use super::AppState;
use super::error::Incident;
use super::extract::{Requester, TrustedProxies};
use crate::store::Store;

const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder. Installed once: every router of the process (tests
/// build many) reports into it.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .expect("constant buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then just stays empty.
        let _ = metrics::set_global_recorder(recorder);
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
        handle
    })
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

/// One line per request, once answered: method, path (never the query), request id, status,
/// latency, the client address, the user and session ids when its access token was accepted,
/// and any [`Incident`] (why a server error failed; a reused refresh token). Never headers or
/// bodies, which carry tokens and passwords. One event and no span around the request: the
/// span was a tenth of the instructions of `GET /api/me/` (callgrind).
pub async fn log_request(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let request_id = request.headers().get(super::REQUEST_ID).cloned();
    let requester = Arc::new(Requester::of(&request, &trusted));
    request.extensions_mut().insert(requester.clone());
    let response = next.run(request).await;
    let latency_ms = started.elapsed().as_micros() as f64 / 1e3;
    let status = response.status();
    // Validated printable ASCII without spaces (see `forget_unusable_request_id`); the path is
    // quoted, for it may hold any byte above ASCII.
    let request_id = request_id
        .as_ref()
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    let client = requester.address.map(display);
    let caller = requester.caller();
    let user_id = caller.map(|(user_id, _)| user_id);
    let session_id = caller.map(|(_, session_id)| display(session_id));
    macro_rules! log_line {
        ($level:expr, $message:literal $(, $error:expr)?) => {
            tracing::event!(
                $level,
                method = %method,
                path = uri.path(),
                request_id = %request_id,
                status = status.as_u16(),
                latency_ms,
                client,
                user_id,
                session_id,
                $(error = %$error,)?
                $message
            )
        };
    }
    match response.extensions().get::<Incident>() {
        None if status.is_server_error() => log_line!(Level::WARN, "answered with a server error"),
        None => log_line!(Level::INFO, "answered"),
        Some(Incident::Failed(detail)) => log_line!(Level::ERROR, "request failed", detail),
        Some(Incident::Unavailable(detail)) => {
            log_line!(Level::WARN, "service unavailable", detail)
        }
        Some(Incident::RefreshTokenReused) => log_line!(
            Level::WARN,
            "a consumed refresh token was presented again; its session ended"
        ),
    }
    response
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_page<S: Store>(State(auth): State<AppState<S>>) -> impl IntoResponse {
    let pool = auth.pool_state();
    metrics::gauge!("database_connections", "state" => "in_use").set(pool.in_use as f64);
    metrics::gauge!("database_connections", "state" => "idle").set(pool.idle as f64);
    let handle = prometheus();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
}

/// Installs the recorder before the first request, so early counters are not lost.
pub fn install() {
    prometheus();
}
