//! Errors of the webhook endpoint and the HTTP response of each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::event::EventError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `401`: no `Authorization`, another scheme, or an unknown secret.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// `413`: the body is over `server.max_body_bytes`.
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// `400`: not an event.
    #[error("{0}")]
    BadEvent(#[from] EventError),
    /// `400`: the body could not be read.
    #[error("the body could not be read")]
    BadBody,
    /// `503`: the event could not be stored; the sender should retry.
    #[error("the event could not be stored; retry later")]
    Store(#[from] StoreError),
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadEvent(_) | Self::BadBody => StatusCode::BAD_REQUEST,
            Self::Store(err) => {
                // The detail stays in the log; the caller learns only to retry.
                tracing::error!(error = %err, "cannot store event");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
