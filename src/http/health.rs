//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers and carries the
//! schema this build expects), for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{AppState, Json};
use crate::store::Store;

pub async fn healthz() -> Json<Value> {
    Json(StatusCode::OK, json!({"status": "ok"}))
}

pub async fn readyz<S: Store>(State(auth): State<AppState<S>>) -> Json<Value> {
    match auth.ready().await {
        Ok(()) => Json(StatusCode::OK, json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "detail": "The database is not ready."}),
            )
        }
    }
}
