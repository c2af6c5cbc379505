//! Logging: one line per request (method, path, status, latency) from `tower-http`'s trace
//! layer. Bodies and headers are never logged, so no password or token can reach a log line.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `filter` is a level or `tracing` directives.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: log filter {filter:?} not understood ({error}); using \"info\"");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
