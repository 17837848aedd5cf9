//! Semantic checks of a parsed configuration and resolution of its secrets.

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;

use super::destination_checks::{check_destination_fields, UrlState};
use super::secret::{self, Secret};
use super::{Config, DestinationConfig, DestinationKind};

/// Problems found in a configuration, one plain sentence each.
pub type Problems = Vec<String>;

/// A Pencil secret and the environment it authenticates.
#[derive(Debug, Clone)]
pub struct EnvironmentSecret {
    pub environment: String,
    pub secret: Secret,
}

/// A destination with its secrets resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSettings {
    pub name: String,
    pub kind: DestinationKind,
    pub url: Option<Secret>,
    pub token: Option<Secret>,
    pub config: DestinationConfig,
}

/// A configuration that passed every check, with secrets resolved.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub secrets: Vec<EnvironmentSecret>,
    pub destinations: BTreeMap<String, DestinationSettings>,
    pub timezone: Tz,
}

impl ValidConfig {
    /// Checks everything that does not need the templates and resolves
    /// secrets. Returns every problem found, not just the first.
    pub fn new(config: Config) -> Result<Self, Problems> {
        let mut problems = Problems::new();

        let secrets = check_secrets(&config, &mut problems);
        let destinations = check_destinations(&config, &mut problems);
        check_routes(&config, &mut problems);
        check_directory(&config, &mut problems);
        check_delivery(&config, &mut problems);
        check_durations(&config, &mut problems);
        check_store(&config, &mut problems);

        let timezone = match config.templates.timezone.parse::<Tz>() {
            Ok(zone) => zone,
            Err(_) => {
                problems.push(format!(
                    "templates.timezone: unknown time zone {:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                    config.templates.timezone
                ));
                Tz::UTC
            }
        };

        if problems.is_empty() {
            Ok(Self {
                config,
                secrets,
                destinations,
                timezone,
            })
        } else {
            Err(problems)
        }
    }
}

fn check_secrets(config: &Config, problems: &mut Problems) -> Vec<EnvironmentSecret> {
    if config.secrets.is_empty() {
        problems.push(
            "no [[secrets]] entry: add one with `environment` and `value`, `value_env` or `value_file`, or every request is rejected"
                .to_owned(),
        );
    }
    let mut resolved: Vec<EnvironmentSecret> = Vec::new();
    for (index, entry) in config.secrets.iter().enumerate() {
        let key = format!("secrets[{index}].value");
        if entry.environment.trim().is_empty() {
            problems.push(format!(
                "secrets[{index}].environment is empty; name it, e.g. \"production\""
            ));
        }
        let secret = secret::resolve(
            &key,
            entry.value.as_deref(),
            entry.value_env.as_deref(),
            entry.value_file.as_deref(),
        );
        match secret {
            Ok(Some(secret)) => {
                if let Some(other) = resolved.iter().find(|known| known.secret == secret) {
                    problems.push(format!(
                        "secrets[{index}] ({}) has the same value as the secret of {}; give each environment its own secret",
                        entry.environment, other.environment
                    ));
                }
                resolved.push(EnvironmentSecret {
                    environment: entry.environment.clone(),
                    secret,
                });
            }
            Ok(None) => problems.push(format!(
                "secrets[{index}] ({}) has no value; set `value`, `value_env` or `value_file`",
                entry.environment
            )),
            Err(problem) => problems.push(problem),
        }
    }
    resolved
}

fn check_destinations(
    config: &Config,
    problems: &mut Problems,
) -> BTreeMap<String, DestinationSettings> {
    let mut resolved = BTreeMap::new();
    for (name, destination) in &config.destinations {
        let prefix = format!("destinations.{name}");
        let url = match secret::resolve(
            &format!("{prefix}.url"),
            destination.url.as_deref(),
            destination.url_env.as_deref(),
            destination.url_file.as_deref(),
        ) {
            Ok(url) => url,
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        // A URL that is given but unreadable was reported just above.
        let url_given = destination.url.is_some()
            || destination.url_env.is_some()
            || destination.url_file.is_some();
        let token = match secret::resolve(
            &format!("{prefix}.token"),
            destination.token.as_deref(),
            destination.token_env.as_deref(),
            destination.token_file.as_deref(),
        ) {
            Ok(token) => token,
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let url_state = match &url {
            Some(url) => UrlState::Read(url),
            None if url_given => UrlState::Unreadable,
            None => UrlState::Missing,
        };
        check_destination_fields(&prefix, destination, url_state, token.as_ref(), problems);
        resolved.insert(
            name.clone(),
            DestinationSettings {
                name: name.clone(),
                kind: destination.kind,
                url,
                token,
                config: destination.clone(),
            },
        );
    }
    resolved
}

fn check_routes(config: &Config, problems: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, route) in config.routes.iter().enumerate() {
        let label = format!("routes[{index}] ({})", route.name);
        if route.name.trim().is_empty() {
            problems.push(format!(
                "routes[{index}].name is empty; give the route a name"
            ));
        } else if let Some(first) = seen.insert(&route.name, index) {
            problems.push(format!(
                "{label}: the name is already used by routes[{first}]; route names must be unique"
            ));
        }
        if route.template.trim().is_empty() {
            problems.push(format!("{label}.template is empty; name a template file"));
        }
        if route.to.is_empty() {
            problems.push(format!(
                "{label}.to is empty; list at least one destination"
            ));
        }
        for (position, destination) in route.to.iter().enumerate() {
            if route.to[..position].contains(destination) {
                problems.push(format!(
                    "{label}.to lists {destination:?} twice; list each destination once"
                ));
            }
            if !config.destinations.contains_key(destination) {
                problems.push(format!(
                    "{label}.to names unknown destination {destination:?}; define [destinations.{destination}] or fix the name"
                ));
            }
        }
        for (field, table) in [("when", &route.when), ("unless", &route.unless)] {
            for (key, value) in table {
                let patterns = value.patterns();
                if let Some(repeated) = patterns
                    .iter()
                    .enumerate()
                    .find(|(position, pattern)| patterns[..*position].contains(pattern))
                {
                    problems.push(format!(
                        "{label}.{field}.{key} lists {:?} twice; list each value once",
                        repeated.1
                    ));
                }
                if value.patterns().is_empty() {
                    problems.push(format!(
                        "{label}.{field}.{key} is an empty list, which never matches; list at least one value"
                    ));
                }
            }
        }
    }
}

fn check_directory(config: &Config, problems: &mut Problems) {
    for (space_id, space) in &config.spaces {
        if let Some(tutor) = &space.tutor {
            if !config.people.contains_key(tutor) {
                problems.push(format!(
                    "spaces.{space_id}.tutor names {tutor:?}, which is not in [people]; add [people.{tutor}]"
                ));
            }
        }
    }
    for (user_id, person) in &config.people {
        if let Some(discord) = &person.discord {
            if discord.is_empty() || !discord.bytes().all(|byte| byte.is_ascii_digit()) {
                problems.push(format!(
                    "people.{user_id}.discord {discord:?} is not a Discord user id; use the digits only"
                ));
            }
        }
        if let Some(slack) = &person.slack {
            if slack.is_empty() || !slack.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                problems.push(format!(
                    "people.{user_id}.slack {slack:?} is not a Slack member id; use the id like U024BE7LH"
                ));
            }
        }
    }
}

/// Upper bounds of durations; larger values are surely typos and would
/// overflow time arithmetic.
const DURATION_LIMITS: [(&str, u64); 6] = [
    ("delivery.timeout", 3600),
    ("delivery.initial_backoff", 7 * 86_400),
    ("delivery.max_backoff", 7 * 86_400),
    ("delivery.max_age", 365 * 86_400),
    ("server.shutdown_grace", 3600),
    ("store.retention", 3650 * 86_400),
];

fn check_durations(config: &Config, problems: &mut Problems) {
    let values = [
        config.delivery.timeout,
        config.delivery.initial_backoff,
        config.delivery.max_backoff,
        config.delivery.max_age,
        config.server.shutdown_grace,
        config.store.retention,
    ];
    for ((key, limit), value) in DURATION_LIMITS.iter().zip(values) {
        let limit = std::time::Duration::from_secs(*limit);
        if value > limit {
            problems.push(format!(
                "{key} is {}; use at most {}",
                humantime::format_duration(value),
                humantime::format_duration(limit)
            ));
        }
    }
}

fn check_delivery(config: &Config, problems: &mut Problems) {
    let delivery = &config.delivery;
    if delivery.max_attempts == 0 {
        problems.push("delivery.max_attempts is 0; use 1 or more".to_owned());
    }
    if delivery.timeout.is_zero() {
        problems.push("delivery.timeout is 0; use a duration such as \"10s\"".to_owned());
    }
    if delivery.initial_backoff.is_zero() || delivery.initial_backoff > delivery.max_backoff {
        problems.push(
            "delivery.initial_backoff must be above 0 and at most delivery.max_backoff".to_owned(),
        );
    }
    if config.server.max_body_bytes == 0 {
        problems.push("server.max_body_bytes is 0; use a size such as 65536".to_owned());
    }
}

fn check_store(config: &Config, problems: &mut Problems) {
    let url = &config.store.url;
    if !url.starts_with("sqlite:") {
        problems.push(format!(
            "store.url {:?} is not supported; use \"sqlite://FILE\"",
            crate::config::redact_url(url)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Problems {
        let config: Config = toml_config(text);
        ValidConfig::new(config).err().unwrap_or_default()
    }

    fn toml_config(text: &str) -> Config {
        use figment::providers::{Format, Toml};
        figment::Figment::new()
            .merge(Toml::string(text))
            .extract()
            .unwrap()
    }

    const BASE: &str = "[[secrets]]\nenvironment = \"production\"\nvalue = \"a\"\n";

    #[test]
    fn duplicate_secret_values_are_rejected() {
        let text = format!("{BASE}[[secrets]]\nenvironment = \"staging\"\nvalue = \"a\"\n");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("same value"), "{problems:?}");
        assert!(
            !problems[0].contains("\"a\""),
            "secret leaked: {problems:?}"
        );
    }

    #[test]
    fn unknown_destination_in_route_is_named() {
        let text =
            format!("{BASE}[[routes]]\nname = \"r\"\ntemplate = \"generic\"\nto = [\"nowhere\"]\n");
        let problems = problems_of(&text);
        assert!(
            problems.iter().any(|p| p.contains("\"nowhere\"")),
            "{problems:?}"
        );
    }

    #[test]
    fn non_http_url_is_rejected_without_echo() {
        let text =
            format!("{BASE}[destinations.d]\nkind = \"slack\"\nurl = \"ftp://x/secretpath\"\n");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("not an http(s) URL"));
        assert!(!problems[0].contains("secretpath"));
    }

    #[test]
    fn discord_username_rules_apply() {
        let text = format!(
            "{BASE}[destinations.d]\nkind = \"discord\"\nurl = \"https://x/y\"\nusername = \"Discord Bot\"\n"
        );
        let problems = problems_of(&text);
        assert!(problems.iter().any(|p| p.contains("clyde")), "{problems:?}");
    }

    #[test]
    fn email_needs_from_to_subject() {
        let text = format!("{BASE}[destinations.m]\nkind = \"email\"\nurl = \"https://x/send\"\n");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn missing_env_secret_names_variable() {
        let text = "[[secrets]]\nenvironment = \"p\"\nvalue_env = \"PENCIL_TEST_SURELY_UNSET\"\n";
        let problems = problems_of(text);
        assert!(
            problems[0].contains("PENCIL_TEST_SURELY_UNSET is not set"),
            "{problems:?}"
        );
    }

    #[test]
    fn unset_url_variable_is_one_problem() {
        let text = format!(
            "{BASE}[destinations.d]\nkind = \"slack\"\nurl_env = \"PENCIL_TEST_URL_SURELY_UNSET\"\n"
        );
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("PENCIL_TEST_URL_SURELY_UNSET"),
            "{problems:?}"
        );
    }

    #[test]
    fn absurd_duration_is_rejected() {
        let text = format!("{BASE}[delivery]\nmax_backoff = \"300000y\"\n");
        let problems = problems_of(&text);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("delivery.max_backoff is")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_timezone_is_named() {
        let text = format!("{BASE}[templates]\ntimezone = \"Mars/Olympus\"\n");
        let problems = problems_of(&text);
        assert!(problems[0].contains("Mars/Olympus"), "{problems:?}");
    }
}
