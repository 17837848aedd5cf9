//! Slack incoming webhooks: `{text}` in mrkdwn or a Block Kit body.

use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};

use super::{
    cut_text, error_text, parse_object, rate_limited, require_text, retry_after_header, BodyError,
    Outcome, RenderedMessage,
};
use crate::text::truncate;

/// Slack cuts top-level `text` above 40,000 characters and advises staying
/// under 4,000.
const TEXT_LIMIT: usize = 4_000;
const SECTION_TEXT_LIMIT: usize = 3_000;
const HEADER_TEXT_LIMIT: usize = 150;
const SECTION_FIELDS_LIMIT: usize = 10;
const FIELD_TEXT_LIMIT: usize = 2_000;
const CONTEXT_ELEMENTS_LIMIT: usize = 10;
const BLOCKS_LIMIT: usize = 50;

/// Error strings that mean the webhook or its channel is gone.
const GONE: &[&str] = &[
    "channel_not_found",
    "channel_is_archived",
    "no_service",
    "no_service_id",
    "no_team",
    "no_active_hooks",
];

/// Error strings that mean this message or this app can never be posted.
const PERMANENT: &[&str] = &[
    "invalid_payload",
    "user_not_found",
    "no_text",
    "invalid_blocks",
    "invalid_blocks_format",
    "too_many_attachments",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "invalid_token",
    "team_disabled",
];

pub(super) fn body(message: RenderedMessage) -> Result<Value, BodyError> {
    if !message.is_json {
        let text = require_text(&message.main.text)?;
        return Ok(json!({ "text": truncate(text, TEXT_LIMIT) }));
    }
    let mut body = parse_object(&message.main.text)?;
    fit_limits(&mut body);
    let has_text = body
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    let has_blocks = body
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    let has_attachments = body
        .get("attachments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_text && !has_blocks && !has_attachments {
        return Err(BodyError::Empty(
            "the JSON template rendered no `text`, `blocks` or `attachments`".to_owned(),
        ));
    }
    Ok(Value::Object(body))
}

/// Cuts text and lists that Slack would reject as too long.
fn fit_limits(body: &mut Map<String, Value>) {
    cut_text(body.get_mut("text"), TEXT_LIMIT);
    let Some(Value::Array(blocks)) = body.get_mut("blocks") else {
        return;
    };
    blocks.truncate(BLOCKS_LIMIT);
    for block in blocks.iter_mut() {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match kind.as_str() {
            "header" => cut_text(block.pointer_mut("/text/text"), HEADER_TEXT_LIMIT),
            "section" => {
                cut_text(block.pointer_mut("/text/text"), SECTION_TEXT_LIMIT);
                if let Some(Value::Array(fields)) = block.get_mut("fields") {
                    fields.truncate(SECTION_FIELDS_LIMIT);
                    for field in fields.iter_mut() {
                        cut_text(field.get_mut("text"), FIELD_TEXT_LIMIT);
                    }
                }
            }
            "context" => {
                if let Some(Value::Array(elements)) = block.get_mut("elements") {
                    elements.truncate(CONTEXT_ELEMENTS_LIMIT);
                }
            }
            _ => {}
        }
    }
}

/// Classifies a Slack response. Slack reports errors as a plain string,
/// which decides before the status does.
pub(super) fn classify(status: u16, headers: &HeaderMap, body: &str) -> Outcome {
    let code = body.trim();
    if status == 429 {
        return rate_limited(error_text(status, body), retry_after_header(headers), false);
    }
    if (200..300).contains(&status) {
        return Outcome::Delivered { status };
    }
    if GONE.contains(&code) || status == 404 || status == 410 {
        return Outcome::Gone {
            status,
            error: error_text(status, body),
        };
    }
    if (300..400).contains(&status) {
        return Outcome::Permanent {
            status,
            error: format!(
                "{} (redirects are not followed; check the webhook URL)",
                error_text(status, body)
            ),
        };
    }
    if code == "rollup_error" || status >= 500 {
        return Outcome::Retry {
            status: Some(status),
            error: error_text(status, body),
            after: retry_after_header(headers),
        };
    }
    if PERMANENT.contains(&code) || (400..500).contains(&status) {
        return Outcome::Permanent {
            status,
            error: error_text(status, body),
        };
    }
    Outcome::Retry {
        status: Some(status),
        error: error_text(status, body),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let empty = HeaderMap::new();
        let cases = [
            (200, "ok", "delivered"),
            (400, "invalid_payload", "permanent"),
            (403, "action_prohibited", "permanent"),
            (404, "channel_not_found", "gone"),
            (410, "channel_is_archived", "gone"),
            (500, "rollup_error", "retry"),
            (502, "", "retry"),
            (429, "rate_limited", "rate_limited"),
            (302, "", "permanent"),
        ];
        for (status, body, expected) in cases {
            let outcome = classify(status, &empty, body);
            let name = match outcome {
                Outcome::Delivered { .. } => "delivered",
                Outcome::Permanent { .. } => "permanent",
                Outcome::Gone { .. } => "gone",
                Outcome::Retry { .. } => "retry",
                Outcome::RateLimited { .. } => "rate_limited",
            };
            assert_eq!(name, expected, "{status} {body}");
        }
    }

    #[test]
    fn block_text_is_cut_to_limits() {
        let long = "x".repeat(5_000);
        let mut body = json!({
            "text": long,
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": long}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": long}}]
        });
        fit_limits(body.as_object_mut().unwrap());
        assert_eq!(body["text"].as_str().unwrap().chars().count(), TEXT_LIMIT);
        assert_eq!(
            body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            HEADER_TEXT_LIMIT
        );
        assert_eq!(
            body["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            SECTION_TEXT_LIMIT
        );
    }
}
