//! Template helpers: `format_time`, `duration`, `truncate`, `default`,
//! `lower`, `upper`, `json` and `mention`.

use std::cell::RefCell;

use chrono::format::{Item, StrftimeItems};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output as TextOutput, RenderContext,
    RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;

use super::Output;
use crate::event::parse_timestamp;

/// Format of `format_time` when the template gives none.
const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M %Z";

thread_local! {
    /// Discord user ids that `mention` wrote during the current render.
    static MENTIONED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Clears the record of mentioned Discord users before a render.
pub(super) fn reset_mentions() {
    MENTIONED.with(|mentioned| mentioned.borrow_mut().clear());
}

/// Takes the Discord user ids that `mention` wrote since the last reset.
pub(super) fn take_mentions() -> Vec<String> {
    MENTIONED.with(|mentioned| std::mem::take(&mut *mentioned.borrow_mut()))
}

/// Registers every helper on a registry that produces `output`.
pub(super) fn register(registry: &mut Handlebars<'static>, output: Output, timezone: Tz) {
    registry.register_helper(
        "format_time",
        value_helper("format_time", move |params| format_time(params, timezone)),
    );
    registry.register_helper("duration", value_helper("duration", format_duration));
    registry.register_helper("truncate", value_helper("truncate", truncate));
    registry.register_helper("default", value_helper("default", default));
    registry.register_helper(
        "lower",
        value_helper("lower", |params| {
            Ok(text_of(param(params, 0)).to_lowercase().into())
        }),
    );
    registry.register_helper(
        "upper",
        value_helper("upper", |params| {
            Ok(text_of(param(params, 0)).to_uppercase().into())
        }),
    );
    registry.register_helper("json", Box::new(JsonHelper { output }));
    registry.register_helper("mention", Box::new(MentionHelper));
}

/// Text form of a value: strings as they are, `null` as nothing.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn param<'a>(params: &[&'a Value], index: usize) -> &'a Value {
    params.get(index).copied().unwrap_or(&Value::Null)
}

type Compute = dyn Fn(&[&Value]) -> Result<Value, String> + Send + Sync;

/// A helper that computes a value; `{{…}}` escapes it like any other data.
struct ValueHelper {
    name: &'static str,
    compute: Box<Compute>,
}

fn value_helper(
    name: &'static str,
    compute: impl Fn(&[&Value]) -> Result<Value, String> + Send + Sync + 'static,
) -> Box<ValueHelper> {
    Box::new(ValueHelper {
        name,
        compute: Box::new(compute),
    })
}

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        helper: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let params: Vec<&Value> = helper.params().iter().map(|param| param.value()).collect();
        (self.compute)(&params)
            .map(ScopedJson::Derived)
            .map_err(|message| RenderErrorReason::Other(format!("{}: {message}", self.name)).into())
    }
}

fn format_time(params: &[&Value], default_zone: Tz) -> Result<Value, String> {
    let value = param(params, 0);
    if value.is_null() || value.as_str() == Some("") {
        return Ok(Value::String(String::new()));
    }
    let Some(time) = parse_timestamp(value) else {
        return Ok(Value::String(text_of(value)));
    };
    let format = match param(params, 1) {
        Value::String(format) => format.as_str(),
        _ => DEFAULT_TIME_FORMAT,
    };
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("invalid strftime format {format:?}"));
    }
    let zone = match param(params, 2) {
        Value::String(name) => name.parse::<Tz>().map_err(|_| {
            format!("unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\"")
        })?,
        _ => default_zone,
    };
    Ok(time.with_timezone(&zone).format(format).to_string().into())
}

fn format_duration(params: &[&Value]) -> Result<Value, String> {
    let value = param(params, 0);
    let seconds = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(seconds) = seconds.filter(|seconds| seconds.is_finite() && *seconds >= 0.0) else {
        return Ok(Value::String(text_of(value)));
    };
    let total = seconds.round() as u64;
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let text = match (hours, minutes, seconds) {
        (0, 0, seconds) => format!("{seconds}s"),
        (0, minutes, 0) => format!("{minutes}m"),
        (0, minutes, seconds) => format!("{minutes}m {seconds}s"),
        (hours, 0, _) => format!("{hours}h"),
        (hours, minutes, _) => format!("{hours}h {minutes}m"),
    };
    Ok(text.into())
}

fn truncate(params: &[&Value]) -> Result<Value, String> {
    let limit = param(params, 1)
        .as_u64()
        .ok_or("the second argument must be a character count, e.g. {{truncate x 100}}")?;
    let limit = usize::try_from(limit).map_err(|_| "the character count is too large")?;
    Ok(crate::text::truncate(&text_of(param(params, 0)), limit).into())
}

fn default(params: &[&Value]) -> Result<Value, String> {
    let value = param(params, 0);
    let empty = match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        _ => false,
    };
    Ok(if empty { param(params, 1) } else { value }.clone())
}

/// `{{json x}}` writes `x` as JSON. In a `.json.hbs` template the JSON is
/// inserted as is, with Slack control syntax escaped inside its strings for
/// Slack. Elsewhere it is escaped like any other data.
struct JsonHelper {
    output: Output,
}

/// Applies Slack escaping to every string inside a JSON value.
fn escape_slack_strings(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(super::escape_slack(text)),
        Value::Array(items) => Value::Array(items.iter().map(escape_slack_strings).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (super::escape_slack(key), escape_slack_strings(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        helper: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn TextOutput,
    ) -> HelperResult {
        let value = helper
            .param(0)
            .map(|param| param.value())
            .unwrap_or(&Value::Null);
        let json = match self.output {
            Output::SlackJson => serde_json::to_string(&escape_slack_strings(value)),
            _ => serde_json::to_string(value),
        }
        .map_err(RenderErrorReason::SerdeError)?;
        if self.output.is_json() {
            out.write(&json)?;
        } else {
            out.write(&registry.get_escape_fn()(&json))?;
        }
        Ok(())
    }
}

/// `{{mention person}}` pings a person from the directory: `<@U…>` on Slack,
/// `<@id>` on Discord (and only those ids are allowed to ping), the name
/// elsewhere. Ids are checked again here because a template may pass event
/// data, which must never produce live syntax.
struct MentionHelper;

impl HelperDef for MentionHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        helper: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        context: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn TextOutput,
    ) -> HelperResult {
        let person = helper
            .param(0)
            .map(|param| param.value())
            .unwrap_or(&Value::Null);
        let kind = context
            .data()
            .pointer("/destination/kind")
            .and_then(Value::as_str);
        let field = |name: &str| {
            person
                .get(name)
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
        };

        if kind == Some("slack") {
            if let Some(id) =
                field("slack").filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                out.write(&format!("<@{id}>"))?;
                return Ok(());
            }
        }
        if kind == Some("discord") {
            if let Some(id) = field("discord").filter(|id| id.bytes().all(|b| b.is_ascii_digit())) {
                MENTIONED.with(|mentioned| mentioned.borrow_mut().push(id.to_owned()));
                out.write(&format!("<@{id}>"))?;
                return Ok(());
            }
        }
        let name = field("name")
            .map(str::to_owned)
            .or_else(|| person.get("id").map(text_of))
            .unwrap_or_else(|| text_of(person));
        out.write(&registry.get_escape_fn()(&name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duration_forms() {
        let cases = [
            (45, "45s"),
            (720, "12m"),
            (125, "2m 5s"),
            (3900, "1h 5m"),
            (7200, "2h"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                format_duration(&[&json!(seconds)]).unwrap(),
                json!(expected)
            );
        }
    }

    #[test]
    fn format_time_rejects_bad_format() {
        let err = format_time(&[&json!("2024-12-04T18:25:00Z"), &json!("%Q")], Tz::UTC);
        assert!(err.unwrap_err().contains("%Q"));
    }

    #[test]
    fn format_time_uses_zone() {
        let time = json!("2024-12-04T18:25:00Z");
        let text = format_time(&[&time, &json!("%H:%M"), &json!("Europe/Berlin")], Tz::UTC);
        assert_eq!(text.unwrap(), json!("19:25"));
    }

    #[test]
    fn default_replaces_null_and_empty() {
        assert_eq!(default(&[&Value::Null, &json!("x")]).unwrap(), json!("x"));
        assert_eq!(default(&[&json!(""), &json!("x")]).unwrap(), json!("x"));
        assert_eq!(default(&[&json!("a"), &json!("x")]).unwrap(), json!("a"));
    }
}
