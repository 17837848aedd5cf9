//! Discord webhooks: `{content}` or an embed body, always with safe
//! `allowed_mentions` and `?wait=true`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};

use super::{
    cut_text, error_text, parse_object, rate_limited, require_text, retry_after_header, seconds,
    BodyError, Outcome, RenderedMessage,
};
use crate::config::DestinationConfig;
use crate::text::truncate;

const CONTENT_LIMIT: usize = 2_000;
const EMBEDS_LIMIT: usize = 10;
const TITLE_LIMIT: usize = 256;
const DESCRIPTION_LIMIT: usize = 4_096;
const FIELDS_LIMIT: usize = 25;
const FIELD_NAME_LIMIT: usize = 256;
const FIELD_VALUE_LIMIT: usize = 1_024;
const FOOTER_LIMIT: usize = 2_048;
const AUTHOR_NAME_LIMIT: usize = 256;
/// All embed text of one message together.
const EMBED_TOTAL_LIMIT: usize = 6_000;
/// Users that `allowed_mentions.users` may list.
const MENTIONED_USERS_LIMIT: usize = 100;

/// JSON error codes after which the message can never be posted.
const UNKNOWN_WEBHOOK: i64 = 10015;

pub(super) fn body(
    config: &DestinationConfig,
    message: RenderedMessage,
) -> Result<Value, BodyError> {
    let mut body = if message.is_json {
        parse_object(&message.main.text)?
    } else {
        let text = require_text(&message.main.text)?;
        let mut body = Map::new();
        body.insert("content".into(), text.into());
        body
    };
    if let Some(username) = &config.username {
        body.entry("username")
            .or_insert_with(|| username.clone().into());
    }
    if let Some(avatar) = &config.avatar_url {
        body.entry("avatar_url")
            .or_insert_with(|| avatar.clone().into());
    }
    fit_limits(&mut body);

    let has_content = body
        .get("content")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.trim().is_empty());
    let has_embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if !has_content && !has_embeds {
        return Err(BodyError::Empty(
            "the template rendered no `content` or `embeds`".to_owned(),
        ));
    }

    // Whatever the template wrote, only the users it named through the
    // `mention` helper may be pinged: no @everyone, @here or roles.
    let mut users = message.main.mentions;
    users.sort();
    users.dedup();
    users.truncate(MENTIONED_USERS_LIMIT);
    body.insert(
        "allowed_mentions".into(),
        json!({ "parse": [], "users": users }),
    );
    Ok(Value::Object(body))
}

/// Cuts the body to Discord's per-field limits, then to the total for all
/// embeds of one message.
fn fit_limits(body: &mut Map<String, Value>) {
    cut_text(body.get_mut("content"), CONTENT_LIMIT);
    let Some(Value::Array(embeds)) = body.get_mut("embeds") else {
        return;
    };
    embeds.truncate(EMBEDS_LIMIT);
    for embed in embeds.iter_mut() {
        fit_embed(embed);
    }
    fit_embed_total(embeds);
}

/// Cuts the text fields of one embed and its list of fields to their limits.
fn fit_embed(embed: &mut Value) {
    cut_text(embed.get_mut("title"), TITLE_LIMIT);
    cut_text(embed.get_mut("description"), DESCRIPTION_LIMIT);
    cut_text(embed.pointer_mut("/footer/text"), FOOTER_LIMIT);
    cut_text(embed.pointer_mut("/author/name"), AUTHOR_NAME_LIMIT);
    if let Some(Value::Array(fields)) = embed.get_mut("fields") {
        fields.truncate(FIELDS_LIMIT);
        for field in fields.iter_mut() {
            cut_text(field.get_mut("name"), FIELD_NAME_LIMIT);
            cut_text(field.get_mut("value"), FIELD_VALUE_LIMIT);
        }
    }
}

/// Brings all embed text under [`EMBED_TOTAL_LIMIT`]: descriptions are
/// shortened from the last embed backwards, then embeds are dropped from
/// the end, then fields of the one embed left from the last backwards.
fn fit_embed_total(embeds: &mut Vec<Value>) {
    let total: usize = embeds.iter().map(embed_chars).sum();
    let mut excess = total.saturating_sub(EMBED_TOTAL_LIMIT);

    for embed in embeds.iter_mut().rev() {
        if excess == 0 {
            return;
        }
        if let Some(Value::String(description)) = embed.get_mut("description") {
            let length = description.chars().count();
            let shortened = truncate(description, length.saturating_sub(excess + 1));
            excess = excess.saturating_sub(length - shortened.chars().count());
            *description = shortened;
        }
    }

    while excess > 0 && embeds.len() > 1 {
        let last = embeds.pop().expect("more than one embed");
        excess = excess.saturating_sub(embed_chars(&last));
    }

    let fields = embeds.first_mut().and_then(|embed| embed.get_mut("fields"));
    if let Some(Value::Array(fields)) = fields {
        while excess > 0 {
            let Some(field) = fields.pop() else {
                break;
            };
            excess = excess.saturating_sub(field_chars(&field));
        }
    }
}

/// Characters of an embed field: its name and value.
fn field_chars(field: &Value) -> usize {
    let count = |key: &str| {
        field
            .get(key)
            .and_then(Value::as_str)
            .map_or(0, |text| text.chars().count())
    };
    count("name") + count("value")
}

/// Characters of an embed that count toward Discord's 6,000 total.
fn embed_chars(embed: &Value) -> usize {
    let count = |pointer: &str| {
        embed
            .pointer(pointer)
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count())
    };
    let fields = embed
        .get("fields")
        .and_then(Value::as_array)
        .map_or(0, |fields| fields.iter().map(field_chars).sum());
    count("/title") + count("/description") + count("/footer/text") + count("/author/name") + fields
}

/// Asks Discord to respond only once the message is saved, so a message that
/// fails to save returns an error instead of a silent `204`.
pub(super) fn add_wait(url: &mut reqwest::Url) {
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "wait")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (key, value) in others {
        pairs.append_pair(&key, &value);
    }
    pairs.append_pair("wait", "true");
}

/// Classifies by JSON `code` first, then status; also reads the rate-limit
/// headers to pause before the budget runs out.
pub(super) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &str,
) -> (Outcome, Option<Duration>) {
    let pause = read_budget(headers);
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = json.get("code").and_then(Value::as_i64);
    let outcome = match status {
        200..=299 => Outcome::Delivered { status },
        429 => {
            let after = json
                .get("retry_after")
                .and_then(Value::as_f64)
                .and_then(seconds)
                .or_else(|| retry_after_header(headers));
            let global = json.get("global").and_then(Value::as_bool).unwrap_or(false)
                || headers
                    .get("x-ratelimit-global")
                    .is_some_and(|value| value == "true");
            rate_limited(error_text(status, body), after, global)
        }
        _ if code == Some(UNKNOWN_WEBHOOK) || status == 404 => Outcome::Gone {
            status,
            error: error_text(status, body),
        },
        500..=599 => Outcome::Retry {
            status: Some(status),
            error: error_text(status, body),
            after: retry_after_header(headers),
        },
        _ => Outcome::Permanent {
            status,
            error: error_text(status, body),
        },
    };
    (outcome, pause)
}

/// When `X-RateLimit-Remaining` is 0, the wait in `X-RateLimit-Reset-After`.
fn read_budget(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let remaining = header("x-ratelimit-remaining")?;
    if remaining > 0.0 {
        return None;
    }
    seconds(header("x-ratelimit-reset-after")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Rendered;

    fn message(text: &str, is_json: bool, mentions: &[&str]) -> RenderedMessage {
        RenderedMessage {
            main: Rendered {
                text: text.to_owned(),
                mentions: mentions.iter().map(|m| m.to_string()).collect(),
            },
            is_json,
            html: None,
            subject: None,
            to: Vec::new(),
        }
    }

    fn config() -> DestinationConfig {
        toml::from_str("kind = \"discord\"\nusername = \"Pencil\"").unwrap()
    }

    #[test]
    fn json_body_gets_safe_allowed_mentions() {
        let text =
            r#"{"content": "@everyone", "allowed_mentions": {"parse": ["everyone", "roles"]}}"#;
        let body = body(&config(), message(text, true, &["42"])).unwrap();
        assert_eq!(
            body["allowed_mentions"],
            json!({"parse": [], "users": ["42"]})
        );
        assert_eq!(body["username"], "Pencil");
    }

    fn total_embed_chars(body: &Value) -> usize {
        body["embeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(embed_chars)
            .sum()
    }

    #[test]
    fn embed_total_is_kept_under_limit() {
        let long = "d".repeat(4_096);
        let embeds: Vec<Value> = (0..3)
            .map(|_| json!({"title": "t", "description": long}))
            .collect();
        let text = json!({ "embeds": embeds }).to_string();
        let body = body(&config(), message(&text, true, &[])).unwrap();
        let total = total_embed_chars(&body);
        assert!(total <= EMBED_TOTAL_LIMIT, "{total}");
    }

    #[test]
    fn oversized_fields_of_one_embed_are_dropped() {
        let fields: Vec<Value> = (0..25)
            .map(|index| json!({"name": format!("f{index}"), "value": "v".repeat(1_024)}))
            .collect();
        let text = json!({ "embeds": [{"title": "t", "fields": fields}] }).to_string();
        let body = body(&config(), message(&text, true, &[])).unwrap();
        let total = total_embed_chars(&body);
        assert!(total <= EMBED_TOTAL_LIMIT, "{total}");
        assert!(!body["embeds"][0]["fields"].as_array().unwrap().is_empty());
    }

    #[test]
    fn wait_is_added_once() {
        let mut url =
            reqwest::Url::parse("https://x/api/webhooks/1/t?thread_id=5&wait=false").unwrap();
        add_wait(&mut url);
        assert_eq!(url.query(), Some("thread_id=5&wait=true"));
    }

    #[test]
    fn unknown_webhook_is_gone() {
        let (outcome, _) = classify(
            404,
            &HeaderMap::new(),
            r#"{"message": "Unknown Webhook", "code": 10015}"#,
        );
        assert!(matches!(outcome, Outcome::Gone { .. }));
    }

    #[test]
    fn retry_after_is_fractional_seconds() {
        let (outcome, _) = classify(
            429,
            &HeaderMap::new(),
            r#"{"message": "rl", "retry_after": 0.25, "global": true}"#,
        );
        assert_eq!(
            outcome,
            Outcome::RateLimited {
                error: r#"HTTP 429: {"message": "rl", "retry_after": 0.25, "global": true}"#.into(),
                after: Duration::from_millis(250),
                global: true
            }
        );
    }

    #[test]
    fn empty_budget_pauses() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset-after", "1.5".parse().unwrap());
        let (_, pause) = classify(200, &headers, "{}");
        assert_eq!(pause, Some(Duration::from_millis(1500)));
    }
}
