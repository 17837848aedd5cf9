//! Configuration: the file schema, loading with figment, secrets and validation.

mod destination_checks;
mod duration;
mod load;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::{display_store_url, load, sqlite_file, ConfigError};
pub use secret::{redact_url, Secret};
pub use validate::{DestinationSettings, EnvironmentSecret, Problems, ValidConfig};

/// The configuration file as written, before secrets are resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// Pencil webhook secrets, one per environment that sends events.
    #[serde(default)]
    pub secrets: Vec<SecretConfig>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Named destinations that routes send to.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Directory of people by Pencil `userId`.
    #[serde(default)]
    pub people: BTreeMap<String, PersonConfig>,
    /// Directory of spaces by Pencil `spaceId`.
    #[serde(default)]
    pub spaces: BTreeMap<String, SpaceConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTP server binds.
    pub listen: SocketAddr,
    /// Largest accepted webhook body, in bytes; larger bodies get `413`.
    pub max_body_bytes: usize,
    /// Time that in-flight delivery attempts get to finish after SIGTERM.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 65_536,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` for the embedded store; the file is created if
    /// missing, and a relative PATH is read from the config file's folder.
    pub url: String,
    /// Age after which delivered deliveries and their events are pruned.
    #[serde(with = "duration")]
    pub retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pencil-bridge.db".to_owned(),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Folder of Handlebars files, relative to the config file's folder.
    pub dir: PathBuf,
    /// IANA time zone that `format_time` uses when a template names none.
    pub timezone: String,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("templates"),
            timezone: "UTC".to_owned(),
        }
    }
}

/// One Pencil webhook secret; `environment` names it in routes and templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    pub environment: String,
    #[serde(default, deserialize_with = "secret::deserialize_scalar")]
    pub value: Option<String>,
    pub value_env: Option<String>,
    pub value_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Time limit of one HTTP request to a destination.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Attempts after which a failing delivery is dead; `429` responses do not count.
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles with each failure.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// Upper bound of the wait between two attempts.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Age after which an undelivered delivery is dead.
    #[serde(with = "duration")]
    pub max_age: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Kind of a destination, which decides the request it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Slack,
    Discord,
    Email,
    Webhook,
    Log,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Log => "log",
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One destination. Which fields apply depends on `kind`; validation
/// rejects the ones that do not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub kind: DestinationKind,
    /// Webhook or relay URL (a secret: Slack and Discord URLs carry the credential).
    #[serde(default, deserialize_with = "secret::deserialize_scalar")]
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// Bearer token of an email relay.
    #[serde(default, deserialize_with = "secret::deserialize_scalar")]
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Discord: name shown as the message author.
    pub username: Option<String>,
    /// Discord: avatar image URL of the message author.
    pub avatar_url: Option<String>,
    /// Email: sender address, e.g. `Pencil Bridge <noreply@example.org>`.
    pub from: Option<String>,
    /// Email: recipient templates, e.g. `{{space.tutor.email}}`.
    pub to: Option<Vec<String>>,
    /// Email: subject template.
    pub subject: Option<String>,
    /// Messages per second this destination may receive on average.
    pub rate_per_second: Option<f64>,
    /// Messages that may go out at once before `rate_per_second` applies.
    pub burst: Option<u32>,
    /// Attempts in flight at once; 1 keeps messages in arrival order.
    pub concurrency: Option<usize>,
}

/// A person in the directory, keyed by Pencil `userId`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Slack member id (`U…`), used by the `mention` helper.
    pub slack: Option<String>,
    /// Discord user id (digits), used by the `mention` helper.
    pub discord: Option<String>,
}

/// A space in the directory, keyed by Pencil `spaceId`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    pub name: Option<String>,
    /// `userId` of the space's tutor, a key of `[people]`.
    pub tutor: Option<String>,
}

/// A routing rule: which events go to which destinations with which template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Every key must match for the route to fire.
    #[serde(default)]
    pub when: BTreeMap<String, MatchValue>,
    /// The route does not fire when every key here matches.
    #[serde(default)]
    pub unless: BTreeMap<String, MatchValue>,
    pub template: String,
    pub to: Vec<String>,
    /// Ends the search for further routes after this one fires.
    #[serde(default)]
    pub stop: bool,
}

/// A `when`/`unless` value: one pattern or a list of which any may match.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    One(String),
    AnyOf(Vec<String>),
}

impl MatchValue {
    pub fn patterns(&self) -> &[String] {
        match self {
            Self::One(pattern) => std::slice::from_ref(pattern),
            Self::AnyOf(patterns) => patterns,
        }
    }
}
