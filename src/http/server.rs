//! The accept loop: hyper serving a router, with a limit on how long a client may take.
//! `axum::serve` builds hyper without a timer, which leaves hyper's header-read timeout off:
//! a client trickling its headers, or keeping a connection idle, would hold it for good.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::extract::BodyDeadline;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests. A connection whose next request's headers have not all arrived
/// within `client_timeout` (an idle keep-alive connection too) is closed; a body that has not
/// all arrived by then is answered 408 (see [`BodyDeadline`]).
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    client_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout);
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
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}
