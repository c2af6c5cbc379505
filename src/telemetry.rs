//! Logging: the process's log lines, as text or flat JSON objects, written by a thread of their
//! own; and the access log, one line per request (method, path, request id, status, latency,
//! client address, and the user and session of an accepted access token), which
//! [`crate::http::observe::log_request`] writes through [`access_line`]. Bodies and headers are
//! never logged, so no password or token can reach a log line.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Write as _};
use std::sync::OnceLock;
use std::time::SystemTime;

use tracing::Level;
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

/// Installs the global subscriber and the access log; `filter` is a level or `tracing`
/// directives. Lines are written to stdout by a thread of their own, in as few writes as keep
/// up: a request's thread only queues its line. The queue holds `QUEUED_LINES` lines; beyond
/// that, logging waits rather than drop lines. Keep the guard until the process ends: dropping
/// it writes out what is queued, so that a clean stop loses no line.
///
/// A JSON line is one flat object: `timestamp`, `level`, `target`, `message` and the event's
/// fields side by side. The service opens no spans (a request's line is one event), so lines
/// carry no span fields.
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
    let access_writer = writer.clone();
    install_access_log(format, move |line| {
        // Fails only once the writer thread is gone, at the very end of the process.
        let _ = access_writer.clone().write_all(line);
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    guard
}

/// Where access lines go, and in which format.
struct AccessLog {
    format: LogFormat,
    write: Box<WriteLine>,
}

/// Writes one whole line.
type WriteLine = dyn Fn(&[u8]) + Send + Sync;

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// Sends access lines to `write`, one whole line (newline included) per call. [`init`] does
/// this for the service; a test that captures the log does it for itself. The first call wins.
pub fn install_access_log(format: LogFormat, write: impl Fn(&[u8]) + Send + Sync + 'static) {
    let _ = ACCESS_LOG.set(AccessLog {
        format,
        write: Box::new(write),
    });
}

/// The access log's target, as the log filter names it (`restful_auth::http::observe=warn`
/// silences routine requests): the module that writes the lines, as before they bypassed the
/// subscriber's formatting.
pub const ACCESS_TARGET: &str = "restful_auth::http::observe";

/// Writes one access line at `level`: `message`, then the fields that `fields` adds, in the
/// format of the other lines (text: `… INFO restful_auth::http::observe: answered method=GET
/// path="/api/me/" …`; JSON: one flat object). The caller has checked that the filter lets
/// the line through. The line is formatted straight into a buffer its thread keeps, so a
/// request costs no allocation but the copy the writer thread is handed.
pub fn access_line(level: Level, message: &str, fields: impl FnOnce(&mut LineFields<'_>)) {
    let Some(log) = ACCESS_LOG.get() else {
        return;
    };
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    }
    BUFFER.with_borrow_mut(|line| {
        line.clear();
        let timestamp = humantime::format_rfc3339_micros(SystemTime::now());
        // Writing into a `Vec` cannot fail.
        let _ = match log.format {
            LogFormat::Text => write!(line, "{timestamp} {level:>5} {ACCESS_TARGET}: {message}"),
            LogFormat::Json => {
                let _ = write!(line, r#"{{"timestamp":"{timestamp}","level":"{level}","#);
                let _ = write!(line, r#""target":"{ACCESS_TARGET}","message":"#);
                json_string(line, message)
            }
        };
        fields(&mut LineFields {
            line,
            format: log.format,
        });
        line.extend_from_slice(match log.format {
            LogFormat::Text => b"\n",
            LogFormat::Json => b"}\n",
        });
        (log.write)(line);
    });
}

/// The fields of an access line being written (see [`access_line`]).
pub struct LineFields<'a> {
    line: &'a mut Vec<u8>,
    format: LogFormat,
}

impl LineFields<'_> {
    /// A field whose value is text a client chose (a path): quoted and escaped in both formats.
    pub fn quoted(&mut self, name: &str, value: &str) {
        self.name(name);
        let _ = match self.format {
            LogFormat::Text => write!(self.line, "{value:?}"),
            LogFormat::Json => json_string(self.line, value),
        };
    }

    /// A field written as it displays (an id, an address, a reason): bare in text, a string
    /// in JSON.
    pub fn text(&mut self, name: &str, value: impl fmt::Display) {
        self.name(name);
        let _ = match self.format {
            LogFormat::Text => write!(self.line, "{value}"),
            LogFormat::Json => json_string(self.line, value),
        };
    }

    /// A numeric field, bare in both formats.
    pub fn number(&mut self, name: &str, value: impl Number) {
        self.name(name);
        let _ = write!(self.line, "{value}");
    }

    fn name(&mut self, name: &str) {
        let _ = match self.format {
            LogFormat::Text => write!(self.line, " {name}="),
            LogFormat::Json => write!(self.line, r#","{name}":"#),
        };
    }
}

/// What [`LineFields::number`] takes: a value whose `Display` is a JSON number.
pub trait Number: fmt::Display {}
impl Number for u16 {}
impl Number for i64 {}
impl Number for Milliseconds {}

/// A duration in milliseconds, written to the microsecond (`0.412`).
#[derive(Debug, Clone, Copy)]
pub struct Milliseconds(pub std::time::Duration);

impl fmt::Display for Milliseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// `value` as a JSON string, escaped by serde_json as it is written (no copy of it first).
fn json_string(line: &mut Vec<u8>, value: impl fmt::Display) -> io::Result<()> {
    use serde::Serializer as _;
    serde_json::Serializer::new(line)
        .collect_str(&value)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_and_numbers_bare() {
        let mut line = Vec::new();
        json_string(&mut line, "a\"b\\c\nd\u{1}é").unwrap();
        let line = String::from_utf8(line).unwrap();
        assert_eq!(line, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");

        let latency = Milliseconds(std::time::Duration::from_micros(1_234_567));
        assert_eq!(latency.to_string(), "1234.567");
        assert_eq!(
            Milliseconds(std::time::Duration::from_micros(412)).to_string(),
            "0.412"
        );
    }
}
