//! Handlebars templates: loading, lookup by destination kind, and rendering
//! with the escaping that each output needs.

mod escape;
mod helpers;

use std::collections::BTreeSet;
use std::path::Path;

use chrono_tz::Tz;
use handlebars::Handlebars;
use serde_json::Value;

pub use escape::{escape_json_string, escape_slack, Output};
pub use helpers::text_of;

use crate::config::{DestinationKind, Problems};

/// Extension of every template file.
const EXTENSION: &str = ".hbs";

/// A template file chosen for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// File name without `.hbs`, e.g. `recording_available.slack`.
    pub name: String,
    pub output: Output,
}

impl Resolved {
    /// True when the file renders the whole JSON request body.
    pub fn is_json(&self) -> bool {
        self.output.is_json()
    }
}

/// The result of one render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Discord user ids that the template mentioned through `mention`.
    pub mentions: Vec<String>,
}

/// Every template of `templates.dir`, compiled once per output kind.
pub struct Templates {
    registries: [Handlebars<'static>; Output::ALL.len()],
    names: BTreeSet<String>,
    /// Files that failed to compile, so that a route using one is not also
    /// reported as having no template.
    failed: BTreeSet<String>,
}

impl Templates {
    /// Compiles every `.hbs` file in `dir`. Returns the files that compiled
    /// and every problem found.
    pub fn load(dir: &Path, timezone: Tz) -> (Self, Problems) {
        let mut templates = Self::empty(timezone);
        let mut problems = Problems::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                problems.push(format!(
                    "templates.dir: cannot read {} ({err}); point it at the folder of .hbs files",
                    dir.display()
                ));
                return (templates, problems);
            }
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for path in files {
            let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            let Some(name) = file_name.strip_suffix(EXTENSION) else {
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(source) => {
                    if let Err(problem) = templates.add(name, &source) {
                        problems.push(format!("template {}: {problem}", path.display()));
                        templates.failed.insert(name.to_owned());
                    }
                }
                Err(err) => {
                    problems.push(format!("cannot read template {} ({err})", path.display()));
                    templates.failed.insert(name.to_owned());
                }
            }
        }
        (templates, problems)
    }

    /// True when a file that [`Templates::resolve`] would consider for
    /// `template` and `kind` exists but failed to compile.
    pub fn has_failed_candidate(&self, template: &str, kind: DestinationKind) -> bool {
        let kind = kind.as_str();
        [
            format!("{template}.{kind}.json"),
            format!("{template}.{kind}"),
            format!("{template}.json"),
            template.to_owned(),
        ]
        .iter()
        .any(|name| self.failed.contains(name))
    }

    /// Creates a set with no files, for templates that come from the config only.
    pub fn empty(timezone: Tz) -> Self {
        let registries = Output::ALL.map(|output| {
            let mut registry = Handlebars::new();
            registry.register_escape_fn(output.escape_fn());
            helpers::register(&mut registry, output, timezone);
            registry
        });
        Self {
            registries,
            names: BTreeSet::new(),
            failed: BTreeSet::new(),
        }
    }

    /// Compiles one template. Names starting with `_` are partials, which
    /// every output can include. Names ending in `.json` compile for JSON
    /// output and `.html` for HTML. The rest compile for Slack and raw text.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), String> {
        let outputs: &[Output] = if name.starts_with('_') {
            &Output::ALL
        } else if name.ends_with(".json") {
            &[Output::Json, Output::SlackJson]
        } else if name.ends_with(".html") {
            &[Output::Html]
        } else {
            &[Output::SlackText, Output::Raw]
        };
        for output in outputs {
            let registry = &mut self.registries[index(*output)];
            let result = if name.starts_with('_') {
                registry.register_partial(name, source)
            } else {
                registry.register_template_string(name, source)
            };
            result.map_err(|err| describe_template_error(&err))?;
        }
        self.names.insert(name.to_owned());
        Ok(())
    }

    /// Finds the file for route template `template` and destination `kind`:
    /// `T.K.json`, `T.K`, `T.json`, `T`, in that order.
    pub fn resolve(&self, template: &str, kind: DestinationKind) -> Option<Resolved> {
        let kind_name = kind.as_str();
        let (text_output, json_output) = match kind {
            DestinationKind::Slack => (Output::SlackText, Output::SlackJson),
            _ => (Output::Raw, Output::Json),
        };
        let candidates = [
            (format!("{template}.{kind_name}.json"), json_output),
            (format!("{template}.{kind_name}"), text_output),
            (format!("{template}.json"), json_output),
            (template.to_owned(), text_output),
        ];
        candidates
            .into_iter()
            .find(|(name, _)| self.names.contains(name))
            .map(|(name, output)| Resolved { name, output })
    }

    /// Finds the optional HTML body of an email: `T.email.html`.
    pub fn resolve_email_html(&self, template: &str) -> Option<Resolved> {
        let name = format!("{template}.email.html");
        self.names.contains(&name).then_some(Resolved {
            name,
            output: Output::Html,
        })
    }

    /// True when a partial or template of this name was loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Renders a resolved template against `context`.
    pub fn render(&self, resolved: &Resolved, context: &Value) -> Result<Rendered, String> {
        helpers::reset_mentions();
        let text = self.registries[index(resolved.output)]
            .render(&resolved.name, context)
            .map_err(|err| describe_render_error(&resolved.name, &err))?;
        Ok(Rendered {
            text,
            mentions: helpers::take_mentions(),
        })
    }
}

fn index(output: Output) -> usize {
    Output::ALL
        .iter()
        .position(|candidate| *candidate == output)
        .expect("every output has a registry")
}

fn describe_template_error(err: &handlebars::TemplateError) -> String {
    match err.pos() {
        Some((line, column)) => format!(
            "syntax error at line {line}, column {column}: {}",
            err.reason()
        ),
        None => format!("syntax error: {}", err.reason()),
    }
}

fn describe_render_error(name: &str, err: &handlebars::RenderError) -> String {
    let reason = err.reason().to_string();
    match err.line_no {
        Some(line) => format!("template {name}.hbs failed at line {line}: {reason}"),
        None => format!("template {name}.hbs failed: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(files: &[(&str, &str)]) -> Templates {
        let mut templates = Templates::empty(Tz::UTC);
        for (name, source) in files {
            templates.add(name, source).unwrap();
        }
        templates
    }

    fn render(
        templates: &Templates,
        template: &str,
        kind: DestinationKind,
        context: &Value,
    ) -> String {
        let resolved = templates.resolve(template, kind).unwrap();
        templates.render(&resolved, context).unwrap().text
    }

    #[test]
    fn lookup_order_prefers_kind_and_json() {
        let set = templates(&[
            ("t.slack.json", "{}"),
            ("t.slack", "s"),
            ("t.json", "{}"),
            ("t", "x"),
        ]);
        assert_eq!(
            set.resolve("t", DestinationKind::Slack).unwrap().name,
            "t.slack.json"
        );
        assert_eq!(
            set.resolve("t", DestinationKind::Discord).unwrap().name,
            "t.json"
        );
        let set = templates(&[("t.slack", "s"), ("t", "x")]);
        assert_eq!(
            set.resolve("t", DestinationKind::Slack).unwrap().name,
            "t.slack"
        );
        assert_eq!(set.resolve("t", DestinationKind::Log).unwrap().name, "t");
        assert_eq!(set.resolve("missing", DestinationKind::Log), None);
    }

    #[test]
    fn slack_escapes_control_syntax_only() {
        let set = templates(&[("t", "{{x}}")]);
        let context = json!({"x": "<!channel> it's a=b & c"});
        assert_eq!(
            render(&set, "t", DestinationKind::Slack, &context),
            "&lt;!channel&gt; it's a=b &amp; c"
        );
        assert_eq!(
            render(&set, "t", DestinationKind::Discord, &context),
            "<!channel> it's a=b & c"
        );
    }

    #[test]
    fn json_template_escapes_as_string_content() {
        let set = templates(&[("t.json", r#"{"text": "{{x}}"}"#)]);
        let raw = "say \"hi\"\n\tback\\slash";
        let text = render(&set, "t", DestinationKind::Webhook, &json!({ "x": raw }));
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["text"], raw);
    }

    #[test]
    fn null_renders_empty() {
        let set = templates(&[("t", "[{{x}}][{{missing}}]")]);
        assert_eq!(
            render(&set, "t", DestinationKind::Log, &json!({"x": null})),
            "[][]"
        );
    }

    #[test]
    fn mention_uses_platform_ids() {
        let set = templates(&[("t", "{{mention user}}")]);
        let user = json!({"id": "u1", "name": "Ada", "slack": "U024BE7LH", "discord": "8035"});
        let context = |kind: &str| json!({"user": user, "destination": {"kind": kind}});
        assert_eq!(
            render(&set, "t", DestinationKind::Slack, &context("slack")),
            "<@U024BE7LH>"
        );
        let resolved = set.resolve("t", DestinationKind::Discord).unwrap();
        let rendered = set.render(&resolved, &context("discord")).unwrap();
        assert_eq!(rendered.text, "<@8035>");
        assert_eq!(rendered.mentions, vec!["8035".to_owned()]);
        assert_eq!(
            render(&set, "t", DestinationKind::Email, &context("email")),
            "Ada"
        );
    }

    #[test]
    fn mention_of_event_data_is_not_live() {
        let set = templates(&[("t", "{{mention x}}")]);
        let context = json!({"x": {"slack": "!channel", "name": "<!channel>"}, "destination": {"kind": "slack"}});
        assert_eq!(
            render(&set, "t", DestinationKind::Slack, &context),
            "&lt;!channel&gt;"
        );
    }

    #[test]
    fn json_helper_is_escaped_outside_json() {
        let set = templates(&[("t", "{{json x}}"), ("u.json", "{{json x}}")]);
        let context = json!({"x": "<!here>"});
        assert_eq!(
            render(&set, "t", DestinationKind::Slack, &context),
            "\"&lt;!here&gt;\""
        );
        assert_eq!(
            render(&set, "u", DestinationKind::Webhook, &context),
            "\"<!here>\""
        );
        assert_eq!(
            render(&set, "u", DestinationKind::Slack, &context),
            "\"&lt;!here&gt;\""
        );
    }

    #[test]
    fn partials_work_in_every_output() {
        let set = templates(&[
            ("_who", "{{name}}"),
            ("t", "hi {{> _who}}"),
            ("u.json", "{\"a\":\"{{> _who}}\"}"),
        ]);
        let context = json!({"name": "A\"&"});
        assert_eq!(
            render(&set, "t", DestinationKind::Slack, &context),
            "hi A\"&amp;"
        );
        assert_eq!(
            render(&set, "u", DestinationKind::Webhook, &context),
            "{\"a\":\"A\\\"&\"}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let mut set = Templates::empty(Tz::UTC);
        let err = set.add("t", "line one\n{{#if x}}unclosed").unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
    }
}
