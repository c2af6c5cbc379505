//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers and carries the
//! schema this build expects), for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{AppState, Reply};
use crate::store::Store;

pub async fn healthz() -> Reply<Value> {
    Reply(StatusCode::OK, json!({"status": "ok"}))
}

pub async fn readyz<S: Store>(State(auth): State<AppState<S>>) -> Reply<Value> {
    match auth.ready().await {
        Ok(()) => Reply(StatusCode::OK, json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "detail": "The database is not ready."}),
            )
        }
    }
}
