//! Logging: one line per request (method, path, request id, status, latency, client address,
//! and the user and session of an accepted access token), written by
//! [`crate::http::observe::log_request`]. Bodies and headers are never logged, so no password or
//! token can reach a log line.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines the log queue holds: seconds' worth at full load. Its slots are allocated up front,
/// so the default (128k) would take 4 MiB of memory for good.
const QUEUED_LINES: usize = 16 * 1024;

/// The log filter: `--log-level` (`RESTFUL_AUTH_LOG`) when set, else `RUST_LOG` when set,
/// else `info`.
pub fn filter(log_level: Option<&str>) -> String {
    log_level
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|value| !value.is_empty())
        })
        .unwrap_or_else(|| "info".to_owned())
}

/// The log format: `--log-format` (`RESTFUL_AUTH_LOG_FORMAT`) when set, else text on a
/// terminal and JSON otherwise (a log pipeline reads JSON; a person reads text).
pub fn format(log_format: Option<LogFormat>) -> LogFormat {
    log_format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    })
}

/// Installs the global subscriber; `filter` is a level or `tracing` directives. Lines are
/// written to stdout by a thread of their own, in as few writes as keep up: a request's thread
/// only queues its line. The queue holds `QUEUED_LINES` lines; beyond that, logging waits rather
/// than drop lines. Keep the guard until the process ends: dropping it writes out what is queued.
#[must_use = "dropping the guard stops logging"]
pub fn init(filter: &str, format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: log filter {filter:?} not understood ({error}); using \"info\"");
        EnvFilter::new("info")
    });
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::new(std::io::stdout()));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    guard
}
