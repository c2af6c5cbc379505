//! The accept loop: hyper serving a router over HTTP/1.1, with a limit on how long a client
//! may take. `axum::serve` builds hyper without a timer, which leaves hyper's header-read
//! timeout off, and first waits for a client's opening bytes to tell HTTP/1 from HTTP/2, with
//! no limit: a silent client, or one trickling its headers, would hold a connection for good.
//! HTTP/1.1 only, as the original (Django behind a WSGI server) served; cleartext HTTP/2 is
//! rare outside a proxy, which can speak it to clients itself.
//!
//! The loop also bounds what a client may make the process hold: a request's headers (32 KiB
//! in all, else 431).

use std::future::Future;
use std::pin::pin;
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
use tower::ServiceExt;

use super::extract::BodyDeadline;
use super::protocol_errors::JsonProtocolErrors;

/// The most a request's line and headers may take together: far above what browsers and
/// proxies send (a few KiB), far below what would let a client make every connection cost
/// the memory of a body. hyper answers a longer head 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests. A connection whose next request's headers have not all arrived
/// within `client_timeout` (a new or idle keep-alive connection too) is closed; a body that
/// has not all arrived by then is answered 408 (see [`BodyDeadline`]).
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    client_timeout: Duration,
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
    let connections = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            // axum's accept retries failures itself (pausing when out of file descriptors).
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
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
        });
    }
    drop(listener);
    connections.shutdown().await;
}
