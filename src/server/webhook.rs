//! `POST /webhooks/pencil`: authenticate, parse, route, render, store.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;

use super::error::IngestError;
use super::AppState;
use crate::auth::authenticate;
use crate::event::Event;
use crate::runtime::Runtime;
use crate::store::{Inserted, NewDelivery, NewEvent};

/// Shortest time between two log lines about rejected requests.
const REJECTION_LOG_INTERVAL_MS: i64 = 10_000;

/// When the next rejection may be logged (epoch ms), and how many were not.
static NEXT_REJECTION_LOG_MS: AtomicI64 = AtomicI64::new(0);
static UNLOGGED_REJECTIONS: AtomicU64 = AtomicU64::new(0);

/// Logs a rejected request, at most one per interval with the count of
/// those skipped, so that unauthenticated traffic cannot flood the log.
/// `/metrics` counts every rejection.
fn log_rejection(err: &IngestError) {
    let now = Utc::now().timestamp_millis();
    let next = NEXT_REJECTION_LOG_MS.load(Ordering::Relaxed);
    let due = now >= next
        && NEXT_REJECTION_LOG_MS
            .compare_exchange(
                next,
                now + REJECTION_LOG_INTERVAL_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
    if due {
        let skipped = UNLOGGED_REJECTIONS.swap(0, Ordering::Relaxed);
        tracing::info!(error = %err, skipped, "webhook rejected");
    } else {
        UNLOGGED_REJECTIONS.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let runtime = state.runtime.load_full();
    let result = ingest(&state, &runtime, &headers, body).await;
    if let Err(err) = &result {
        let result = match err {
            IngestError::Store(_) => "error",
            _ => "rejected",
        };
        state.metrics.event_received("", "", result);
        log_rejection(err);
    }
    match result {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn ingest(
    state: &AppState,
    runtime: &Runtime,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let environment = authenticate(authorization, &runtime.config.secrets)
        .ok_or(IngestError::Unauthorized)?
        .to_owned();

    let limit = runtime.config.config.server.max_body_bytes;
    let bytes = read_body(headers, body, limit).await?;
    let event = Event::parse(&bytes)?;
    let new_event = plan_event(runtime, &event, &environment);
    let destinations: BTreeSet<String> = new_event
        .deliveries
        .iter()
        .map(|delivery| delivery.destination.clone())
        .collect();

    let inserted = state.store.insert_event(new_event).await?;
    let response = match inserted {
        Inserted::Accepted { deliveries } => {
            state
                .metrics
                .event_received(&event.kind, &event.event_type, "accepted");
            tracing::info!(event_id = %event.id, %environment, r#type = %event.kind, event_type = %event.event_type, deliveries, "event accepted");
            for destination in &destinations {
                state.dispatcher.wake(destination).await;
            }
            let body =
                json!({ "status": "accepted", "event_id": event.id, "deliveries": deliveries });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Inserted::Duplicate => {
            state
                .metrics
                .event_received(&event.kind, &event.event_type, "duplicate");
            tracing::info!(event_id = %event.id, "duplicate event ignored");
            let body = json!({ "status": "duplicate", "event_id": event.id });
            (StatusCode::OK, Json(body)).into_response()
        }
    };
    Ok(response)
}

/// Reads the body, up to `limit` bytes.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(IngestError::TooLarge { limit });
    }
    to_bytes(body, limit).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            IngestError::TooLarge { limit }
        } else {
            IngestError::BadBody
        }
    })
}

/// Routes and renders an event into the rows to store.
fn plan_event(runtime: &Runtime, event: &Event, environment: &str) -> NewEvent {
    let received_at = Utc::now();
    let deliveries: Vec<NewDelivery> = runtime
        .plan(event, environment, received_at)
        .into_iter()
        .map(|delivery| NewDelivery {
            route: delivery.route,
            destination: delivery.destination,
            body: delivery.body,
        })
        .collect();
    for delivery in &deliveries {
        if let Err(reason) = &delivery.body {
            tracing::error!(event_id = %event.id, route = %delivery.route, destination = %delivery.destination, %reason, "message not rendered; delivery stored as dead");
        }
    }
    NewEvent {
        id: event.id.clone(),
        kind: event.kind.clone(),
        event_type: event.event_type.clone(),
        environment: environment.to_owned(),
        body: event.to_json(),
        received_at,
        deliveries,
    }
}
