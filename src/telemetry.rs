//! Logging: one line per request (method, path, status, latency) from `tower-http`'s trace
//! layer. Bodies and headers are never logged, so no password or token can reach a log line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; `filter` is a level or `tracing` directives.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: log filter {filter:?} not understood ({error}); using \"info\"");
        EnvFilter::new("info")
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Pretty => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
}
