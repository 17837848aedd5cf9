//! Destinations: the request body each kind gets, sending it, and reading
//! the platform's response.

mod discord;
mod email;
mod log;
mod slack;
mod webhook;

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use crate::config::{DestinationKind, DestinationSettings};
use crate::templates::Rendered;

/// `User-Agent` of every outgoing request.
pub const USER_AGENT: &str = concat!("pencil-bridge/", env!("CARGO_PKG_VERSION"));

/// Minimum wait after a `429`, whatever the `Retry-After` value, so that a
/// platform responding with `Retry-After: 0` is not sent a request per round trip.
const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_millis(250);

/// Wait after a `429` when the platform gives none.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Bytes of a destination's response body that are read. The rest is dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Maximum length of the platform error text kept with an attempt.
const MAX_ERROR_CHARS: usize = 500;

/// Reason why no request body could be built for a delivery. The message
/// is a plain sentence, stored as the reason of the dead delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The message came out empty for this event (no text, no recipient),
    /// which depends on the event data and the directory.
    #[error("{0}")]
    Empty(String),
    /// The template or what it rendered is broken.
    #[error("{0}")]
    Invalid(String),
}

impl BodyError {
    /// Adds where the error came from, keeping its kind.
    pub fn context(self, context: &str) -> Self {
        match self {
            Self::Empty(reason) => Self::Empty(format!("{reason} ({context})")),
            Self::Invalid(reason) => Self::Invalid(format!("{reason} ({context})")),
        }
    }
}

/// Template output for one delivery, before it becomes a request body.
#[derive(Debug, Clone)]
pub struct RenderedMessage {
    /// The message text, or the whole JSON body when `is_json` is set.
    pub main: Rendered,
    pub is_json: bool,
    /// Email only: the HTML body, the subject and the recipients.
    pub html: Option<String>,
    pub subject: Option<String>,
    pub to: Vec<String>,
}

/// Builds the exact request body (or log line) for a destination. Errors
/// are plain sentences stored as the reason of a failed delivery.
pub fn build_body(
    settings: &DestinationSettings,
    message: RenderedMessage,
) -> Result<String, BodyError> {
    let body = match settings.kind {
        DestinationKind::Slack => slack::body(message)?,
        DestinationKind::Discord => discord::body(&settings.config, message)?,
        DestinationKind::Email => email::body(&settings.config, message)?,
        DestinationKind::Webhook => webhook::body(message)?,
        DestinationKind::Log => return log::line(message),
    };
    Ok(serde_json::to_string(&body).expect("a JSON value always serializes"))
}

/// Parses a `.json.hbs` render, which must be a JSON object.
fn parse_object(text: &str) -> Result<serde_json::Map<String, Value>, BodyError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BodyError::Invalid(
            "the JSON template must render a JSON object".to_owned(),
        )),
        Err(err) => Err(BodyError::Invalid(format!(
            "the JSON template rendered invalid JSON: {err}"
        ))),
    }
}

/// Cuts a JSON string value to `limit` characters in place, on a grapheme
/// boundary with `…`; other values are left alone.
fn cut_text(value: Option<&mut Value>, limit: usize) {
    if let Some(Value::String(text)) = value {
        if text.chars().count() > limit {
            *text = crate::text::truncate(text, limit);
        }
    }
}

/// Text that is empty once whitespace is removed is not sent.
fn require_text(text: &str) -> Result<&str, BodyError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(BodyError::Empty(
            "the template rendered an empty message".to_owned(),
        ))
    } else {
        Ok(trimmed)
    }
}

/// Classified result of one attempt, as the retry logic needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `2xx`: the platform has the message.
    Delivered { status: u16 },
    /// A temporary failure: retry with backoff, or after `after` when the
    /// platform requested it.
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    /// `429`: wait `after`; with `global`, every destination of the kind waits.
    RateLimited {
        error: String,
        after: Duration,
        global: bool,
    },
    /// A failure that repeating cannot fix: the delivery is dead.
    Permanent { status: u16, error: String },
    /// The webhook no longer exists: the destination stops sending until
    /// its config is fixed and reloaded.
    Gone { status: u16, error: String },
}

/// An attempt's outcome plus what it shows about the destination's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    pub outcome: Outcome,
    /// Discord: no request may go out for this long (remaining budget 0).
    pub pause: Option<Duration>,
    pub duration: Duration,
}

/// One delivery to send.
pub struct Request<'a> {
    pub event_id: &'a str,
    pub idempotency_key: &'a str,
    pub body: &'a str,
}

/// Builds the shared HTTP client: one `User-Agent`, no redirects (a
/// redirected webhook would carry its credential elsewhere) and `timeout`
/// per request.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS backend is built in")
}

/// Sends one delivery and classifies the response.
pub async fn send(
    client: &reqwest::Client,
    settings: &DestinationSettings,
    request: Request<'_>,
) -> AttemptResult {
    let started = Instant::now();
    let (outcome, pause) = match settings.kind {
        DestinationKind::Log => {
            log::print(request.body);
            (Outcome::Delivered { status: 200 }, None)
        }
        _ => post(client, settings, &request).await,
    };
    AttemptResult {
        outcome,
        pause,
        duration: started.elapsed(),
    }
}

/// POSTs the body to an HTTP destination and classifies the response.
async fn post(
    client: &reqwest::Client,
    settings: &DestinationSettings,
    request: &Request<'_>,
) -> (Outcome, Option<Duration>) {
    let url = settings
        .url
        .as_ref()
        .map(|url| reqwest::Url::parse(url.expose()));
    let Some(Ok(mut url)) = url else {
        let error = "the destination URL is missing or invalid".to_owned();
        return (Outcome::Permanent { status: 0, error }, None);
    };
    if settings.kind == DestinationKind::Discord {
        discord::add_wait(&mut url);
    }

    let result = client
        .post(url)
        .headers(request_headers(settings, request))
        .body(request.body.to_owned())
        .send()
        .await;
    let response = match result {
        Ok(response) => response,
        Err(err) => return (transport_failure(err), None),
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = read_limited(response).await;
    match settings.kind {
        DestinationKind::Slack => (slack::classify(status, &headers, &text), None),
        DestinationKind::Discord => discord::classify(status, &headers, &text),
        DestinationKind::Email => (email::classify(status, &headers, &text), None),
        DestinationKind::Webhook | DestinationKind::Log => {
            (webhook::classify(status, &headers, &text), None)
        }
    }
}

/// Headers of every request: JSON, the idempotency key, the event id and,
/// for an email relay, the Bearer token (marked sensitive so it never prints).
fn request_headers(settings: &DestinationSettings, request: &Request<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(key) = HeaderValue::from_str(request.idempotency_key) {
        headers.insert("Idempotency-Key", key);
    }
    if let Ok(id) = HeaderValue::from_str(request.event_id) {
        headers.insert("X-Event-Id", id);
    }
    if let Some(token) = &settings.token {
        if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
    }
    headers
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of an answer's body, which is all
/// the classification and the stored error text need.
async fn read_limited(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Timeouts and connection errors are worth retrying. The URL is removed
/// from the error because it carries the webhook's credential.
fn transport_failure(err: reqwest::Error) -> Outcome {
    let error = if err.is_timeout() {
        "the request timed out".to_owned()
    } else if err.is_connect() {
        format!("connection failed: {}", error_chain(&err.without_url()))
    } else {
        format!("request failed: {}", error_chain(&err.without_url()))
    };
    Outcome::Retry {
        status: None,
        error,
        after: None,
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Formats the platform's error text, shortened for storage.
fn error_text(status: u16, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!(
            "HTTP {status}: {}",
            crate::text::truncate(body, MAX_ERROR_CHARS)
        )
    }
}

/// Reads a `Retry-After` header given in seconds (fractions allowed) or as
/// an HTTP date.
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(number) = value.parse::<f64>() {
        return seconds(number);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(
        wait.to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value.min(86_400.0)))
}

/// Builds a `429` outcome that waits `after` (at least [`MIN_RATE_LIMIT_WAIT`]).
fn rate_limited(error: String, after: Option<Duration>, global: bool) -> Outcome {
    Outcome::RateLimited {
        error,
        after: after
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT)
            .max(MIN_RATE_LIMIT_WAIT),
        global,
    }
}

/// Classification shared by the email relay and generic webhooks: `2xx`
/// delivered, `429` waits for `Retry-After` without counting as a failure,
/// `5xx` retries (after `Retry-After` when given), other `4xx` permanent.
fn classify_by_status(status: u16, headers: &HeaderMap, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered { status },
        429 => rate_limited(error_text(status, body), retry_after_header(headers), false),
        500..=599 => Outcome::Retry {
            status: Some(status),
            error: error_text(status, body),
            after: retry_after_header(headers),
        },
        _ => Outcome::Permanent {
            status,
            error: error_text(status, body),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "2.5".parse().unwrap());
        assert_eq!(
            retry_after_header(&headers),
            Some(Duration::from_millis(2500))
        );

        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        headers.insert(reqwest::header::RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after_header(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );

        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after_header(&headers), None);
    }

    #[test]
    fn rate_limit_wait_has_a_floor() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "0".parse().unwrap());
        let outcome = classify_by_status(429, &headers, "");
        assert!(
            matches!(outcome, Outcome::RateLimited { after, .. } if after == MIN_RATE_LIMIT_WAIT)
        );
    }
}
