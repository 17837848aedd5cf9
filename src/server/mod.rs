//! The HTTP server: routes, shared state, request ids and tracing.

mod error;
mod health;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::Request;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::delivery::Dispatcher;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::Store;

pub use error::IngestError;

/// Header that carries the request id, set when the caller sends none.
const REQUEST_ID: &str = "x-request-id";

/// Maximum time a request may take, body upload included. A slower client
/// gets `408`, so it cannot hold a connection and a handler open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
}

/// Builds the router with every endpoint.
pub fn app(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    Router::new()
        .route("/webhooks/pencil", post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
