//! The loaded configuration: validated settings, compiled templates and
//! routes. It turns an event into the deliveries to store.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::config::{
    self, Config, ConfigError, DestinationConfig, DestinationKind, DestinationSettings, ValidConfig,
};
use crate::context::{delivery_context, event_context, lookup, Directory};
use crate::destinations::{self, BodyError, RenderedMessage};
use crate::event::Event;
use crate::routing::{Route, Router};
use crate::samples::SAMPLES;
use crate::templates::{Resolved, Templates};

/// Everything that a config reload replaces at once.
pub struct Runtime {
    pub path: PathBuf,
    pub config: ValidConfig,
    pub templates: Templates,
    pub router: Router,
    pub directory: Directory,
}

/// One delivery an event produces: the body to send, or why there is none.
#[derive(Debug, Clone)]
pub struct PlannedDelivery {
    pub route: String,
    pub destination: String,
    pub kind: DestinationKind,
    pub body: Result<String, String>,
}

impl Runtime {
    /// Loads, validates and compiles the config at `path`. Every problem is
    /// reported, not only the first.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw = config::load(path)?;
        let problems_error = |problems: Vec<String>| ConfigError::Problems {
            path: path.to_owned(),
            count: problems.len(),
            problems,
        };
        // The templates are checked even when the settings have problems,
        // so that one `check` run lists both kinds.
        let validated = ValidConfig::new(raw.clone());
        let timezone = match &validated {
            Ok(valid) => valid.timezone,
            Err(_) => raw.templates.timezone.parse().unwrap_or(Tz::UTC),
        };
        let (templates, template_problems) = compile_templates(&raw, timezone);
        let valid = match validated {
            Ok(valid) if template_problems.is_empty() => valid,
            Ok(_) => return Err(problems_error(template_problems)),
            Err(mut problems) => {
                problems.extend(template_problems);
                return Err(problems_error(problems));
            }
        };

        let directory = Directory {
            people: valid.config.people.clone(),
            spaces: valid.config.spaces.clone(),
        };
        Ok(Self {
            path: path.to_owned(),
            router: Router::new(&valid.config.routes),
            config: valid,
            templates,
            directory,
        })
    }

    /// Loads the config like [`Runtime::load`] and also renders every route
    /// against the sample events, as `check` does. `serve` and reloads use
    /// this, so a config that `check` rejects never runs.
    pub fn load_checked(path: &Path) -> Result<Self, ConfigError> {
        let runtime = Self::load(path)?;
        let problems = runtime.check_samples();
        if problems.is_empty() {
            Ok(runtime)
        } else {
            Err(ConfigError::Problems {
                path: path.to_owned(),
                count: problems.len(),
                problems,
            })
        }
    }

    /// Matches the routes of an event and renders one body per
    /// (route, destination).
    pub fn plan(
        &self,
        event: &Event,
        environment: &str,
        received_at: DateTime<Utc>,
    ) -> Vec<PlannedDelivery> {
        let context = event_context(event, environment, received_at, &self.directory);
        let routes = self.router.matching(&event.event_type, &context);
        routes
            .into_iter()
            .flat_map(|route| self.plan_route(route, &context))
            .collect()
    }

    fn plan_route(&self, route: &Route, context: &Map<String, Value>) -> Vec<PlannedDelivery> {
        route
            .to
            .iter()
            .filter_map(|name| self.config.destinations.get(name))
            .map(|settings| PlannedDelivery {
                route: route.name.clone(),
                destination: settings.name.clone(),
                kind: settings.kind,
                body: self
                    .render(route, settings, context)
                    .map_err(|err| err.to_string()),
            })
            .collect()
    }

    /// Renders the body of one delivery.
    pub fn render(
        &self,
        route: &Route,
        settings: &DestinationSettings,
        event_context: &Map<String, Value>,
    ) -> Result<String, BodyError> {
        let context = delivery_context(event_context, &route.name, &settings.name, settings.kind);
        let resolved = self
            .templates
            .resolve(&route.template, settings.kind)
            .ok_or_else(|| {
                BodyError::Invalid(format!(
                    "template {:?} was not found for {}",
                    route.template, settings.kind
                ))
            })?;
        let render = |resolved: &Resolved| {
            self.templates
                .render(resolved, &context)
                .map_err(BodyError::Invalid)
        };
        let main = render(&resolved)?;
        let mut message = RenderedMessage {
            main,
            is_json: resolved.is_json(),
            html: None,
            subject: None,
            to: Vec::new(),
        };
        if settings.kind == DestinationKind::Email {
            if let Some(html) = self.templates.resolve_email_html(&route.template) {
                message.html = Some(render(&html)?.text);
            }
            let field = |name: String| self.templates.resolve(&name, DestinationKind::Email);
            if let Some(subject) = field(email_field(&settings.name, "subject")) {
                message.subject = Some(render(&subject)?.text);
            }
            let count = settings.config.to.as_ref().map_or(0, Vec::len);
            for index in 0..count {
                if let Some(to) = field(email_field(&settings.name, &format!("to.{index}"))) {
                    message.to.push(render(&to)?.text);
                }
            }
        }
        destinations::build_body(settings, message)
            .map_err(|err| err.context(&format!("template {}", resolved.name)))
    }

    /// Renders every route's templates against every sample event, for
    /// `check`. Template failures (a helper error, invalid JSON) count. An
    /// empty message or recipient list does not, because it depends on the
    /// event data and directory, and is stored as a dead delivery with its
    /// reason when it happens.
    pub fn check_samples(&self) -> Vec<String> {
        let environment = self
            .config
            .secrets
            .first()
            .map_or("production", |s| s.environment.as_str());
        let mut problems = Vec::new();
        for (file, body) in SAMPLES {
            let event = Event::parse(body.as_bytes()).expect("built-in samples are valid events");
            let context = event_context(&event, environment, Utc::now(), &self.directory);
            for route in self.router.routes() {
                let destinations = route
                    .to
                    .iter()
                    .filter_map(|name| self.config.destinations.get(name));
                for settings in destinations {
                    if let Err(BodyError::Invalid(reason)) = self.render(route, settings, &context)
                    {
                        problems.push(format!(
                            "route {:?} to {:?} with sample {file}: {reason}",
                            route.name, settings.name
                        ));
                    }
                }
            }
        }
        problems
    }
}

impl Runtime {
    /// Route keys that no sample event has, such as a misspelt `eventTyp`.
    /// Such a route fires only for events that carry the key, so `check`
    /// shows these as warnings.
    pub fn unknown_route_keys(&self) -> Vec<String> {
        let contexts: Vec<Map<String, Value>> = SAMPLES
            .iter()
            .map(|(_, body)| {
                let event =
                    Event::parse(body.as_bytes()).expect("built-in samples are valid events");
                event_context(&event, "production", Utc::now(), &self.directory)
            })
            .collect();
        let mut warnings = Vec::new();
        for route in self.router.routes() {
            for key in route.keys() {
                if !contexts
                    .iter()
                    .any(|context| lookup(context, key).is_some())
                {
                    warnings.push(format!(
                        "route {:?}: no sample event has the key {key:?}; check its spelling (keys are case-sensitive)",
                        route.name
                    ));
                }
            }
        }
        warnings
    }
}

/// Name under which an email destination's subject or recipient template
/// is compiled; `/` cannot occur in a file's template name.
fn email_field(destination: &str, field: &str) -> String {
    format!("destinations/{destination}/{field}")
}

/// Compiles the files of `templates.dir` and the email subject and
/// recipient templates, and checks that every route finds a template for
/// each destination it names. Returns every problem found.
fn compile_templates(raw: &Config, timezone: Tz) -> (Templates, Vec<String>) {
    let templates_dir = &raw.templates.dir;
    let mut problems = Vec::new();
    let (mut templates, found) = Templates::load(templates_dir, timezone);
    problems.extend(found);
    for (name, destination) in &raw.destinations {
        compile_email_fields(&mut templates, name, destination, &mut problems);
    }
    for (index, route) in raw.routes.iter().enumerate() {
        if route.template.contains(['.', '/', '\\']) {
            problems.push(format!(
                "routes[{index}] ({}).template {:?}: give the name without extension or folder, e.g. \"recording_available\"",
                route.name, route.template
            ));
            continue;
        }
        for destination in &route.to {
            let Some(settings) = raw.destinations.get(destination) else {
                continue;
            };
            let missing = templates.resolve(&route.template, settings.kind).is_none();
            if missing && !templates.has_failed_candidate(&route.template, settings.kind) {
                problems.push(format!(
                    "routes[{index}] ({}): no template {t}.{k}.json.hbs, {t}.{k}.hbs, {t}.json.hbs or {t}.hbs in {dir} for destination {destination:?}; add one of them",
                    route.name,
                    t = route.template,
                    k = settings.kind,
                    dir = templates_dir.display(),
                ));
            }
        }
    }
    (templates, problems)
}

fn compile_email_fields(
    templates: &mut Templates,
    name: &str,
    destination: &DestinationConfig,
    problems: &mut Vec<String>,
) {
    if destination.kind != DestinationKind::Email {
        return;
    }
    let mut fields: Vec<(String, &str)> = Vec::new();
    if let Some(subject) = &destination.subject {
        fields.push(("subject".to_owned(), subject));
    }
    for (index, to) in destination.to.iter().flatten().enumerate() {
        fields.push((format!("to.{index}"), to));
    }
    for (field, source) in fields {
        if let Err(problem) = templates.add(&email_field(name, &field), source) {
            problems.push(format!("destinations.{name}.{field}: {problem}"));
        }
    }
}
