//! Pencil Spaces events: parsing, timestamps and the id used to catch duplicates.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Reason a webhook body is not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object, not {0}")]
    NotObject(&'static str),
    #[error("the event has no `{0}` field")]
    MissingField(&'static str),
    #[error("the event field `{0}` must be a non-empty string")]
    InvalidField(&'static str),
}

/// An event as Pencil sent it, with the fields the bridge reads pulled out.
#[derive(Debug, Clone)]
pub struct Event {
    /// Hex SHA-256 of the canonical JSON body; equal bodies get equal ids.
    pub id: String,
    /// `_type`, e.g. `SPACE_USER`.
    pub kind: String,
    /// `eventType`, e.g. `joinSpace`.
    pub event_type: String,
    /// The event time in UTC, when `timestamp` could be read.
    pub time: Option<DateTime<Utc>>,
    /// Every field as received.
    pub fields: Map<String, Value>,
}

impl Event {
    /// Parses a webhook body. Only a body that is not a JSON object, or one
    /// that lacks `_type` or `eventType`, is rejected; unknown types pass.
    pub fn parse(body: &[u8]) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| EventError::NotJson(err.to_string()))?;
        let fields = match value {
            Value::Object(fields) => fields,
            other => return Err(EventError::NotObject(json_type_name(&other))),
        };
        let kind = required_string(&fields, "_type")?;
        let event_type = required_string(&fields, "eventType")?;
        let time = fields.get("timestamp").and_then(parse_timestamp);

        // serde_json's map is sorted by key, so this is a canonical form:
        // the same event with other key order or spacing gets the same id.
        let canonical = serde_json::to_vec(&fields).expect("a JSON map always serializes");
        let id = hex::encode(&Sha256::digest(&canonical)[..16]);

        Ok(Self {
            id,
            kind,
            event_type,
            time,
            fields,
        })
    }

    /// Returns the canonical JSON body, as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.fields).expect("a JSON map always serializes")
    }
}

fn required_string(fields: &Map<String, Value>, name: &'static str) -> Result<String, EventError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(EventError::MissingField(name)),
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(_) => Err(EventError::InvalidField(name)),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Epoch numbers are read by size: below 10^11 as seconds (10^11 seconds is
/// the year 5138), then milliseconds, microseconds from 10^14 (10^14
/// milliseconds is the year 5138 too) and nanoseconds from 10^17.
const EPOCH_MILLIS_FROM: f64 = 1e11;
const EPOCH_MICROS_FROM: f64 = 1e14;
const EPOCH_NANOS_FROM: f64 = 1e17;

/// Reads a timestamp given as epoch milliseconds, epoch seconds (a number or
/// a digit string) or an RFC 3339 / ISO 8601 string.
pub fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(number) => from_epoch(number.as_f64()?),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(number) = text.parse::<f64>() {
                return from_epoch(number);
            }
            parse_iso8601(text)
        }
        _ => None,
    }
}

fn from_epoch(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let millis = if number >= EPOCH_NANOS_FROM {
        number / 1e6
    } else if number >= EPOCH_MICROS_FROM {
        number / 1e3
    } else if number >= EPOCH_MILLIS_FROM {
        number
    } else {
        number * 1000.0
    };
    Utc.timestamp_millis_opt(millis.round() as i64).single()
}

fn parse_iso8601(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    // ISO 8601 forms that RFC 3339 does not allow: no zone (read as UTC),
    // a `+0000` offset, or a space between date and time.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(time) = DateTime::parse_from_str(text, format) {
            return Some(time.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamp_forms_agree() {
        let expected = "2024-12-04T18:25:00+00:00";
        let cases = [
            json!(1733336700000_i64),
            json!(1733336700),
            json!("1733336700"),
            json!("1733336700000"),
            json!("2024-12-04T18:25:00Z"),
            json!("2024-12-04T19:25:00+01:00"),
            json!("2024-12-04T18:25:00"),
            json!("2024-12-04T18:25:00.000+0000"),
            json!(1733336700000000_i64),
            json!(1733336700000000000_i64),
        ];
        for case in cases {
            let time = parse_timestamp(&case).unwrap_or_else(|| panic!("{case} unread"));
            assert_eq!(time.to_rfc3339(), expected, "{case}");
        }
    }

    #[test]
    fn unreadable_timestamp_is_none() {
        assert_eq!(parse_timestamp(&json!("yesterday")), None);
        assert_eq!(parse_timestamp(&json!(-5)), None);
        assert_eq!(parse_timestamp(&json!(true)), None);
    }

    #[test]
    fn key_order_and_spacing_give_same_id() {
        let first = Event::parse(br#"{"_type":"A","eventType":"b","x":1}"#).unwrap();
        let second =
            Event::parse(b"{ \"x\": 1,\n \"eventType\": \"b\", \"_type\": \"A\" }").unwrap();
        assert_eq!(first.id, second.id);
    }

    #[test]
    fn different_bodies_give_different_ids() {
        let first = Event::parse(br#"{"_type":"A","eventType":"b","x":1}"#).unwrap();
        let second = Event::parse(br#"{"_type":"A","eventType":"b","x":2}"#).unwrap();
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn bad_bodies_are_named() {
        let cases: [(&[u8], EventError); 5] = [
            (b"[1]", EventError::NotObject("an array")),
            (b"\"hi\"", EventError::NotObject("a string")),
            (br#"{"eventType":"x"}"#, EventError::MissingField("_type")),
            (br#"{"_type":"x"}"#, EventError::MissingField("eventType")),
            (
                br#"{"_type":"x","eventType":5}"#,
                EventError::InvalidField("eventType"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(Event::parse(body).unwrap_err(), expected);
        }
    }
}
