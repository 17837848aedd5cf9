//! Generic webhooks: the rendered JSON as is, or `{"text": …}` for text.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::{
    classify_by_status, error_text, parse_object, require_text, BodyError, Outcome, RenderedMessage,
};

pub(super) fn body(message: RenderedMessage) -> Result<Value, BodyError> {
    if message.is_json {
        return parse_object(&message.main.text).map(Value::Object);
    }
    Ok(json!({ "text": require_text(&message.main.text)? }))
}

/// `410` means the receiver retired the hook; the rest is by status.
pub(super) fn classify(status: u16, headers: &HeaderMap, body: &str) -> Outcome {
    if status == 410 {
        return Outcome::Gone {
            status,
            error: error_text(status, body),
        };
    }
    classify_by_status(status, headers, body)
}
