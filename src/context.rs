//! The template context: the one place that turns an event into the data
//! that routes match on and templates read.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::config::{DestinationKind, PersonConfig, SpaceConfig};
use crate::event::Event;
use crate::templates::text_of;

/// The directory of people and spaces from the config.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub people: BTreeMap<String, PersonConfig>,
    pub spaces: BTreeMap<String, SpaceConfig>,
}

impl Directory {
    /// Builds a person object: `id` always, plus the directory's fields.
    fn person(&self, user_id: &str) -> Value {
        let mut person = Map::new();
        person.insert("id".into(), user_id.into());
        if let Some(known) = self.people.get(user_id) {
            let fields = [
                ("name", &known.name),
                ("email", &known.email),
                ("slack", &known.slack),
                ("discord", &known.discord),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    person.insert(key.into(), value.clone().into());
                }
            }
        }
        Value::Object(person)
    }

    /// Builds a space object: `id` always, plus `name` and `tutor` when known.
    fn space(&self, space_id: &str) -> Value {
        let mut space = Map::new();
        space.insert("id".into(), space_id.into());
        if let Some(known) = self.spaces.get(space_id) {
            if let Some(name) = &known.name {
                space.insert("name".into(), name.clone().into());
            }
            if let Some(tutor) = &known.tutor {
                space.insert("tutor".into(), self.person(tutor));
            }
        }
        Value::Object(space)
    }
}

fn rfc3339(time: DateTime<Utc>) -> Value {
    time.to_rfc3339_opts(SecondsFormat::Secs, true).into()
}

/// Builds the context shared by every route and destination of one event:
/// every event field as received, then `event_id`, `environment`,
/// `received_at`, `time`, `space`, `user`, `session` and `event`.
pub fn event_context(
    event: &Event,
    environment: &str,
    received_at: DateTime<Utc>,
    directory: &Directory,
) -> Map<String, Value> {
    let mut context = event.fields.clone();
    let id_of = |field: &str| {
        event
            .fields
            .get(field)
            .filter(|value| !value.is_null())
            .map(text_of)
    };

    context.insert("event_id".into(), event.id.clone().into());
    context.insert("environment".into(), environment.into());
    context.insert("received_at".into(), rfc3339(received_at));
    context.insert(
        "time".into(),
        event.time.map(rfc3339).unwrap_or(Value::Null),
    );
    let space = id_of("spaceId")
        .map(|id| directory.space(&id))
        .unwrap_or(Value::Null);
    context.insert("space".into(), space);
    let user = id_of("userId")
        .map(|id| directory.person(&id))
        .unwrap_or(Value::Null);
    context.insert("user".into(), user);
    let session = id_of("sessionId")
        .map(|id| json!({ "id": id }))
        .unwrap_or(Value::Null);
    context.insert("session".into(), session);
    context.insert("event".into(), Value::Object(event.fields.clone()));
    context
}

/// Adds what differs per delivery: `route` and `destination`.
pub fn delivery_context(
    event_context: &Map<String, Value>,
    route: &str,
    destination: &str,
    kind: DestinationKind,
) -> Value {
    let mut context = event_context.clone();
    context.insert("route".into(), route.into());
    context.insert(
        "destination".into(),
        json!({ "name": destination, "kind": kind.as_str() }),
    );
    Value::Object(context)
}

/// Looks up a route key: a top-level field, or a dotted path into the
/// context. A key with a dot is always a path, so an event field named
/// `space.name` cannot stand in for the directory's value.
pub fn lookup<'a>(context: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut value = context.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let mut directory = Directory::default();
        directory.people.insert(
            "u-1".into(),
            PersonConfig {
                name: Some("Ada Byron".into()),
                slack: Some("U1".into()),
                ..Default::default()
            },
        );
        directory.spaces.insert(
            "sp-1".into(),
            SpaceConfig {
                name: Some("Algebra".into()),
                tutor: Some("u-1".into()),
            },
        );
        directory
    }

    #[test]
    fn known_space_gets_name_and_tutor() {
        let event = Event::parse(br#"{"_type":"SPACE_RECORDING","eventType":"RECORDING_AVAILABLE","spaceId":"sp-1","timestamp":1733336700000}"#).unwrap();
        let context = event_context(&event, "production", Utc::now(), &directory());
        assert_eq!(lookup(&context, "space.name"), Some(&json!("Algebra")));
        assert_eq!(lookup(&context, "space.tutor.slack"), Some(&json!("U1")));
        assert_eq!(context["time"], json!("2024-12-04T18:25:00Z"));
        assert_eq!(context["user"], Value::Null);
    }

    #[test]
    fn dotted_event_field_does_not_shadow_path() {
        let event = Event::parse(br#"{"_type":"SPACE_USER","eventType":"joinSpace","spaceId":"x","space.name":"Algebra"}"#).unwrap();
        let context = event_context(&event, "production", Utc::now(), &directory());
        assert_eq!(lookup(&context, "space.name"), None);
        assert_eq!(lookup(&context, "space.id"), Some(&json!("x")));
    }

    #[test]
    fn unknown_user_has_id_only() {
        let event = Event::parse(
            br#"{"_type":"SPACE_USER","eventType":"joinSpace","userId":42,"spaceId":"x"}"#,
        )
        .unwrap();
        let context = event_context(&event, "staging", Utc::now(), &directory());
        assert_eq!(context["user"], json!({"id": "42"}));
        assert_eq!(context["space"], json!({"id": "x"}));
        assert_eq!(context["environment"], json!("staging"));
    }
}
