//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

/// `200` while the process runs.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `200` when the config is loaded and the store responds to a query.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed: the store did not respond");
            let body = json!({ "error": "the store did not respond; see the server log" });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let runtime = state.runtime.load();
    let mut destinations: BTreeSet<String> = runtime.config.destinations.keys().cloned().collect();
    let stats = match state.store.queue_stats().await {
        Ok(stats) => stats,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read queue figures for /metrics");
            Vec::new()
        }
    };
    // Deliveries kept for a destination that a reload removed still show.
    destinations.extend(stats.iter().map(|stat| stat.destination.clone()));
    let text = state.metrics.encode(&destinations, &stats);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
