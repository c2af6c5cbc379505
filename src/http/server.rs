//! The accept loop: hyper serving a router over HTTP/1.1, with a limit on how long a client
//! may take. `axum::serve` builds hyper without a timer, which leaves hyper's header-read
//! timeout off, and first waits for a client's opening bytes to tell HTTP/1 from HTTP/2, with
//! no limit: a silent client, or one trickling its headers, would hold a connection for good.
//! HTTP/1.1 only, as the original (Django behind a WSGI server) served; cleartext HTTP/2 is
//! rare outside a proxy, which can speak it to clients itself.
//!
//! The loop also bounds what a client may make the process hold: a request's headers (32 KiB
//! in all, else 431), and the number of open connections (see [`serve`]): every connection is
//! a file descriptor, and a process out of descriptors can neither accept a connection nor
//! open its database or log files.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::body::BodyDeadline;
use super::protocol_errors::JsonProtocolErrors;

/// The most a request's line and headers may take together: far above what browsers and
/// proxies send (a few KiB), far below what would let a client make every connection cost
/// the memory of a body. hyper answers a longer head 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Files the process keeps open besides client connections: the database (SQLite's file,
/// write-ahead log and shared memory for each pooled connection), log files, the listening
/// sockets, the metrics and admin listeners' connections, standard streams, and room to spare.
const RESERVED_FILES: u64 = 256;

/// Connections the metrics listener keeps open at once (the monitoring system needs one).
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// Connections the admin listener keeps open at once (a back office needs a few); counted,
/// with the metrics listener's, in the files reserved besides client connections.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests. A connection whose next request's headers have not all arrived
/// within `client_timeout` (a new or idle keep-alive connection too) is closed; a body that
/// has not all arrived by then is answered 408 (see [`BodyDeadline`]).
///
/// At most `max_connections` connections are open at once: one more is accepted and closed at
/// once. Left in the kernel's queue instead, it would wait unanswered, and the queue would
/// fill; and accepting until the process runs out of file descriptors stalls the loop (each
/// failed accept pauses it) while the database and log files cannot be opened either.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    client_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        // The first is exact; the second bounds the read buffer (hyper reads into all of its
        // spare room, so on its own it lets a head somewhat longer through).
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        // Flat writes: hyper's own error answers must come in one slice to be recognised.
        .writev(false);
    let open = Arc::new(Semaphore::new(max_connections));
    let connections = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            // axum's accept retries failures itself (pausing when out of file descriptors).
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("connections_refused_total").increment(1);
            tracing::debug!(%remote, max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let service = app
            .clone()
            .map_request(move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(remote));
                request
                    .extensions_mut()
                    .insert(BodyDeadline(client_timeout));
                request
            });
        let connection = connections.watch(builder.serve_connection(
            TokioIo::new(JsonProtocolErrors::new(stream)),
            TowerToHyperService::new(service),
        ));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client gone, or cut off by the timeout: nothing for the service to mend.
                tracing::debug!(%error, %remote, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// Raises the soft limit on open files to the hard one, and returns the limit in force. The
/// soft limit is often 1024 (systemd's default without `LimitNOFILE`): each connection takes a
/// file, so a thousand idle clients would leave none for the next one, nor for the database.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "the open files limit is unknown; assuming 1024");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "the open files limit stays at its soft value");
        }
    }
    limit.rlim_cur
}

/// The connection cap when `--max-connections` is not given: the open files limit less
/// `RESERVED_FILES` and the PostgreSQL pool, but at least half the limit.
pub fn default_max_connections(open_files: u64, database_connections: u32) -> usize {
    // An unlimited limit is not a reason to accept connections without bound.
    const MOST: u64 = 1 << 20;
    let reserve = RESERVED_FILES + u64::from(database_connections);
    let cap = open_files
        .saturating_sub(reserve)
        .max(open_files / 2)
        .clamp(1, MOST);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::default_max_connections;

    #[test]
    fn the_default_connection_cap_leaves_files_for_the_database_and_logs() {
        assert_eq!(default_max_connections(65_536, 16), 65_536 - 256 - 16);
        assert_eq!(default_max_connections(1024, 16), 1024 - 256 - 16);
        assert_eq!(default_max_connections(256, 16), 128);
        assert_eq!(default_max_connections(1, 16), 1);
        assert_eq!(default_max_connections(u64::MAX, 16), 1 << 20);
    }
}
