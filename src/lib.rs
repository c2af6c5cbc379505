//! restful-auth: a user-authentication REST service.
//!
//! The crate is layered so that each contract rule lives in one place, and every layer uses
//! only the layers below it (`python3 ../shared/tools/modgraph.py src` shows no circle):
//!
//! | layer | modules | may use |
//! |---|---|---|
//! | core | [`domain`]: ids, the profile, the rotation and throttling rules, run-time settings, the clock | nothing of the crate |
//! | storage | [`store`]: the storage traits by role, SQLite and PostgreSQL, the embedded migrations | core, `private_files` |
//! | configuration | [`config`]: the flags and their environment-variable twins | core, storage (pool settings), `private_files` (secrets given as files) |
//! | use cases | [`auth`]: emails, passwords, tokens, sessions, throttling — no HTTP, no SQL | core, storage, configuration |
//! | HTTP | [`http`]: the API's routes, the request bodies (one type each, [`http::body`]), extractors, the one error type, a module per resource, the accept loop; [`web`]: the browsable pages and the OpenAPI document | use cases and below, [`telemetry`] (the access log); `web` also `http` |
//! | assembly | [`app`]: the whole router; [`cli`]: the commands; `main` | everything |
//!
//! [`telemetry`] (logging, and the access log's writer) uses configuration only; [`private_files`] (files only their owner
//! may read) and [`healthcheck`] (the `healthcheck` command's HTTP probe) use nothing of the
//! crate.

use std::sync::Arc;

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod private_files;
pub mod store;
pub mod telemetry;
pub mod web;

use std::net::SocketAddr;

use auth::Auth;
use config::{Config, MetricsBind};
use store::{Store, StoreError};

/// Why the program stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen for /metrics on {address}: {source}; give another address with \
         --metrics-bind (RESTFUL_AUTH_METRICS_BIND), or `public` to serve it on --bind, or `off`"
    )]
    MetricsBind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Command(String),
    /// What a command names does not exist: an account, a signing key.
    #[error("{0}")]
    NotFound(String),
    /// The input breaks a rule of the service: a weak password, an invalid email or setting.
    #[error("{0}")]
    Refused(String),
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedDatabase(String),
    #[error(transparent)]
    Secrets(#[from] auth::vault::VaultError),
    #[error(transparent)]
    ExposedFile(#[from] private_files::ExposedFile),
    #[error(transparent)]
    AdminToken(#[from] auth::admin::AdminTokenError),
    #[error(transparent)]
    SecretSetting(#[from] config::SecretSettingError),
}

impl StartupError {
    /// Exit status of a command line that failed: 0 is success, [`StartupError::USAGE`] a
    /// command line clap refused.
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 1;
    pub const NOT_FOUND: u8 = 2;
    pub const REFUSED: u8 = 3;

    /// The process's exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::NotFound(_) => Self::NOT_FOUND,
            StartupError::Refused(_) => Self::REFUSED,
            _ => Self::FAILED,
        }
    }
}

impl From<auth::LoadError> for StartupError {
    fn from(error: auth::LoadError) -> Self {
        match error {
            auth::LoadError::Store(error) => error.into(),
            auth::LoadError::Vault(error) => error.into(),
            other => StartupError::Command(other.to_string()),
        }
    }
}

/// Serves the API on `store` until SIGINT or SIGTERM.
pub async fn serve<S: Store>(store: S, config: Config) -> Result<(), StartupError> {
    if config.public_url.is_none() && (config.bind.port() == 0 || config.bind.ip().is_unspecified())
    {
        // The default names the bind address, which no client reaches at that name.
        tracing::warn!(
            public_url = %config.public_url(),
            "no --public-url (RESTFUL_AUTH_PUBLIC_URL): the published URLs and the tokens' \
             issuer name the bind address; set it to the URL clients reach the service at"
        );
    }
    // Before anything else: an admin API open to the network must not start at all.
    let admin = match config.admin_bind {
        Some(address) => Some((
            address,
            auth::admin::admin_token(
                address,
                config.admin_token_file.as_deref(),
                config.allow_insecure_permissions,
            )?,
        )),
        None => None,
    };
    let auth = Arc::new(Auth::new(store.clone(), &config).await?);
    spawn_background_work(auth.clone(), &config);
    let open_files = http::server::raise_open_files_limit();
    let max_connections = config.max_connections.map_or_else(
        || http::server::default_max_connections(open_files, config.database_max_connections),
        std::num::NonZeroUsize::get,
    );
    tracing::info!(open_files, max_connections, "open files limit");
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| StartupError::Bind {
            address: config.bind,
            source,
        })?;
    let address = listener.local_addr().map_err(StartupError::Serve)?;
    let database = redact_password(&config.database_url);
    tracing::info!(%address, %database, "restful-auth listening");
    let options = http::Options::from_config(&config);
    match config.metrics_bind {
        MetricsBind::Address(metrics_address) => {
            let listener = tokio::net::TcpListener::bind(metrics_address)
                .await
                .map_err(|source| StartupError::MetricsBind {
                    address: metrics_address,
                    source,
                })?;
            let address = listener.local_addr().map_err(StartupError::Serve)?;
            tracing::info!(%address, "metrics listening");
            tokio::spawn(http::server::serve(
                listener,
                http::metrics_router(auth.clone()),
                config.client_timeout,
                http::server::MAX_METRICS_CONNECTIONS,
                std::future::pending(),
            ));
        }
        MetricsBind::Public => tracing::info!(%address, "metrics served on the public listener"),
        MetricsBind::Off => {}
    }
    if let Some((admin_address, token)) = admin {
        let listener = tokio::net::TcpListener::bind(admin_address)
            .await
            .map_err(|source| StartupError::Bind {
                address: admin_address,
                source,
            })?;
        let address = listener.local_addr().map_err(StartupError::Serve)?;
        tracing::info!(%address, token = token.is_some(), "admin API listening");
        tokio::spawn(http::server::serve(
            listener,
            http::admin::router(auth.clone(), token),
            config.client_timeout,
            http::server::MAX_ADMIN_CONNECTIONS,
            std::future::pending(),
        ));
    }
    let stopping = Arc::new(tokio::sync::Notify::new());
    let server = http::server::serve(
        listener,
        app::router_with(auth, &options),
        config.client_timeout,
        max_connections,
        {
            let stopping = stopping.clone();
            async move {
                shutdown_signal().await;
                stopping.notify_one();
            }
        },
    );
    // In-flight requests get `shutdown_grace` to finish; a client that never finishes its
    // request must not keep the process (and its database) from closing.
    let grace = config.shutdown_grace;
    tokio::select! {
        () = server => {}
        () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "grace period over; dropping the remaining connections"
            );
        }
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every instance reloads run-time settings and keys, and purges what expired. Several
/// instances purging the same rows is harmless: deletes are idempotent.
fn spawn_background_work<S: Store>(auth: Arc<Auth<S>>, config: &Config) {
    let (reload_every, purge_every, retention) = (
        config.reload_interval,
        config.purge_interval,
        config.retention,
    );
    let reloading = auth.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(reload_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = reloading.reload().await {
                tracing::warn!(%error, "settings not reloaded; keeping the current ones");
            }
        }
    });
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(purge_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match auth.housekeeping(retention).await {
                Ok(purged) => tracing::info!(
                    refresh_tokens = purged.refresh_tokens,
                    sessions = purged.sessions,
                    signing_keys = purged.signing_keys,
                    throttle_buckets = purged.throttle_buckets,
                    known_addresses = purged.known_addresses,
                    audit_events = purged.audit_events,
                    "housekeeping done"
                ),
                Err(error) => tracing::warn!(%error, "housekeeping failed; will try again"),
            }
        }
    });
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; in-flight requests then finish before exit.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// A database URL fit for a log line: `postgres://app:secret@db/auth` → `postgres://app:***@db/auth`.
pub(crate) fn redact_password(url: &str) -> String {
    // A password may also come as a query parameter (`?password=…`): drop the whole query.
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn database_passwords_never_reach_a_log_line() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db:5432/auth"),
            "postgres://app:***@db:5432/auth"
        );
        assert_eq!(redact_password("postgres://db/auth"), "postgres://db/auth");
        assert_eq!(redact_password("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_password("postgres://db/auth?user=app&password=s3cret"),
            "postgres://db/auth"
        );
    }
}
