//! The email relay contract: `{from, to[], subject, text, html?}` with a
//! Bearer token and an `Idempotency-Key`.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::{classify_by_status, parse_object, require_text, BodyError, Outcome, RenderedMessage};
use crate::config::DestinationConfig;
use crate::text::truncate;

/// Subjects longer than this are cut; mail clients show far less anyway.
const SUBJECT_LIMIT: usize = 250;

pub(super) fn body(
    config: &DestinationConfig,
    message: RenderedMessage,
) -> Result<Value, BodyError> {
    let recipients = recipients(&message.to)?;
    let subject = single_line(message.subject.as_deref().unwrap_or_default());
    if subject.is_empty() {
        return Err(BodyError::Empty(
            "the subject template rendered an empty subject".to_owned(),
        ));
    }
    let subject = truncate(&subject, SUBJECT_LIMIT);
    let from = config.from.clone().unwrap_or_default();

    if message.is_json {
        let mut body = parse_object(&message.main.text)?;
        body.entry("from").or_insert_with(|| from.into());
        body.entry("to").or_insert_with(|| recipients.into());
        body.entry("subject").or_insert_with(|| subject.into());
        if let Some(html) = message.html.filter(|html| !html.trim().is_empty()) {
            body.entry("html").or_insert_with(|| html.into());
        }
        return Ok(Value::Object(body));
    }
    let text = require_text(&message.main.text)?;
    let mut body = json!({ "from": from, "to": recipients, "subject": subject, "text": text });
    if let Some(html) = message.html.filter(|html| !html.trim().is_empty()) {
        body["html"] = html.into();
    }
    Ok(body)
}

/// Rendered recipients, with empty ones dropped; a line break in an address
/// would let data add mail headers, so it is refused.
fn recipients(rendered: &[String]) -> Result<Vec<String>, BodyError> {
    let mut addresses = Vec::new();
    for address in rendered.iter().flat_map(|text| text.split(',')) {
        let address = address.trim();
        if address.is_empty() {
            continue;
        }
        if address.contains(['\r', '\n']) || !address.contains('@') {
            return Err(BodyError::Invalid(format!(
                "recipient {address:?} is not an email address"
            )));
        }
        addresses.push(address.to_owned());
    }
    if addresses.is_empty() {
        return Err(BodyError::Empty(
            "the `to` templates rendered no recipient address".to_owned(),
        ));
    }
    Ok(addresses)
}

fn single_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn classify(status: u16, headers: &HeaderMap, body: &str) -> Outcome {
    classify_by_status(status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_drop_empty_and_reject_bad() {
        assert_eq!(
            recipients(&["a@x.org, ".into(), "".into()]).unwrap(),
            ["a@x.org"]
        );
        assert!(matches!(
            recipients(&["".into()]),
            Err(BodyError::Empty(reason)) if reason.contains("no recipient")
        ));
        assert!(matches!(
            recipients(&["nobody".into()]),
            Err(BodyError::Invalid(reason)) if reason.contains("\"nobody\"")
        ));
    }

    #[test]
    fn subject_loses_line_breaks() {
        assert_eq!(single_line("Ready:\r\nBcc: x@y"), "Ready: Bcc: x@y");
    }
}
