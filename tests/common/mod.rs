//! Test harness: the real server on port 0 with a temporary SQLite file and
//! wiremock servers on loopback standing in for Slack, Discord and an email
//! relay.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pencil_bridge::commands::serve::{self, Running};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const PRODUCTION_SECRET: &str = "prod-secret-7f3a9c";
pub const STAGING_SECRET: &str = "staging-secret-41be2d";
pub const RELAY_TOKEN: &str = "relay-token-c0ffee";
pub const SLACK_PATH: &str = "/services/T0TEST/B0TEST/slacksecretpath";
pub const DISCORD_PATH: &str = "/api/webhooks/1234/discordsecrettoken";
pub const EMAIL_PATH: &str = "/send";

/// Routes used unless a test gives its own: every documented event type to
/// Slack, Discord and email, with the shipped templates.
pub const DEFAULT_ROUTES: &str = r#"
[[routes]]
name = "recordings"
when = { eventType = "RECORDING_AVAILABLE" }
template = "recording_available"
to = ["slack", "discord", "email"]

[[routes]]
name = "transcripts"
when = { eventType = "TRANSCRIPT_AVAILABLE" }
template = "transcript_available"
to = ["slack", "discord", "email"]

[[routes]]
name = "sessions"
when = { eventType = "SESSION_ENDED" }
template = "session_ended"
to = ["slack", "discord", "email"]

[[routes]]
name = "joins"
when = { eventType = "joinSpace" }
template = "join_space"
to = ["slack", "discord", "email"]

[[routes]]
name = "leaves"
when = { eventType = "leaveSpace" }
template = "leave_space"
to = ["slack", "discord", "email"]

[[routes]]
name = "hides"
when = { eventType = "hideTab" }
template = "hide_tab"
to = ["slack", "discord", "email"]

[[routes]]
name = "unhides"
when = { eventType = "unhideTab" }
template = "unhide_tab"
to = ["slack", "discord", "email"]
"#;

/// What a test may change in the generated config.
#[derive(Clone)]
pub struct AppOptions {
    /// `[[routes]]` tables; [`DEFAULT_ROUTES`] when `None`.
    pub routes: Option<String>,
    /// The `[delivery]` table body.
    pub delivery: String,
    /// Extra keys for each destination table, e.g. `rate_per_second = 1.0`.
    pub slack_extra: String,
    pub discord_extra: String,
    pub email_extra: String,
    /// Any further TOML appended at the end (destinations, people, spaces).
    pub extra: String,
    /// Template files written next to the shipped ones: (file name, text).
    pub templates: Vec<(String, String)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            routes: None,
            delivery: "timeout = \"2s\"\nmax_attempts = 8\ninitial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\nmax_age = \"1h\"\n".into(),
            slack_extra: "rate_per_second = 1000.0\nburst = 100\n".into(),
            discord_extra: "rate_per_second = 1000.0\nburst = 100\n".into(),
            email_extra: String::new(),
            extra: String::new(),
            templates: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub slack: MockServer,
    pub discord: MockServer,
    pub email: MockServer,
    pub dir: TempDir,
    pub config_path: PathBuf,
    running: Option<Running>,
}

/// Starts the bridge with the default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// Starts the bridge; mock servers answer `200 ok` until a test mounts
/// other answers (mount them before sending events).
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let slack = MockServer::start().await;
    let discord = MockServer::start().await;
    let email = MockServer::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");

    let templates = dir.path().join("templates");
    copy_templates(&templates);
    for (name, text) in &options.templates {
        std::fs::write(templates.join(name), text).expect("write test template");
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        config_text(&options, dir.path(), &slack, &discord, &email),
    )
    .expect("write config");

    let running = serve::start(&config_path).await.expect("the bridge starts");
    let addr = running.addr;
    TestApp {
        addr,
        base_url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        slack,
        discord,
        email,
        dir,
        config_path,
        running: Some(running),
    }
}

fn copy_templates(target: &Path) {
    std::fs::create_dir_all(target).expect("templates directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for entry in std::fs::read_dir(source).expect("shipped templates") {
        let entry = entry.expect("template entry");
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy template");
    }
}

fn config_text(
    options: &AppOptions,
    dir: &Path,
    slack: &MockServer,
    discord: &MockServer,
    email: &MockServer,
) -> String {
    let routes = options
        .routes
        .clone()
        .unwrap_or_else(|| DEFAULT_ROUTES.to_owned());
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[store]
url = "sqlite://{db}"

[templates]
dir = "templates"

[[secrets]]
environment = "production"
value = "{PRODUCTION_SECRET}"

[[secrets]]
environment = "staging"
value = "{STAGING_SECRET}"

[delivery]
{delivery}

[destinations.slack]
kind = "slack"
url = "{slack_url}{SLACK_PATH}"
{slack_extra}

[destinations.discord]
kind = "discord"
url = "{discord_url}{DISCORD_PATH}"
username = "Pencil"
{discord_extra}

[destinations.email]
kind = "email"
url = "{email_url}{EMAIL_PATH}"
token = "{RELAY_TOKEN}"
from = "Pencil Bridge <noreply@example.org>"
to = ["tutors@example.org", "{{{{space.tutor.email}}}}"]
subject = "{{{{eventType}}}}: {{{{default space.name spaceId}}}}"
{email_extra}

{routes}

{extra}
"#,
        db = dir.join("bridge.db").display(),
        delivery = options.delivery,
        slack_url = slack.uri(),
        discord_url = discord.uri(),
        email_url = email.uri(),
        slack_extra = options.slack_extra,
        discord_extra = options.discord_extra,
        email_extra = options.email_extra,
        extra = options.extra,
    )
}

impl TestApp {
    /// Mounts `200 ok` answers on every mock platform.
    pub async fn accept_everything(&self) {
        Mock::given(method("POST"))
            .and(path(SLACK_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&self.slack)
            .await;
        Mock::given(method("POST"))
            .and(path(DISCORD_PATH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"id": "1", "channel_id": "2"})),
            )
            .mount(&self.discord)
            .await;
        Mock::given(method("POST"))
            .and(path(EMAIL_PATH))
            .respond_with(
                ResponseTemplate::new(202).set_body_json(serde_json::json!({"id": "m-1"})),
            )
            .mount(&self.email)
            .await;
    }

    /// Posts `body` with the production secret.
    pub async fn post_event(&self, body: &str) -> reqwest::Response {
        self.post_with_auth(body, Some(&format!("Bearer {PRODUCTION_SECRET}")))
            .await
    }

    pub async fn post_with_auth(
        &self,
        body: &str,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/pencil", self.base_url))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.expect("the bridge answers")
    }

    /// Stops the bridge as SIGTERM would.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops and starts the bridge again on the same config and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = serve::start(&self.config_path)
            .await
            .expect("the bridge restarts");
        self.addr = running.addr;
        self.base_url = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Reloads the config as SIGHUP would.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.running.as_ref().expect("running").reload().await
    }
}

/// Waits until `server` has received at least `count` requests, or panics
/// after `timeout`. Returns every request received.
pub async fn wait_for_requests(
    server: &MockServer,
    count: usize,
    timeout: Duration,
) -> Vec<wiremock::Request> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let received = server.received_requests().await.unwrap_or_default();
        if received.len() >= count {
            return received;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "expected {count} requests within {timeout:?}, got {}",
                received.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a shipped sample event.
pub fn sample(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    std::fs::read_to_string(path).expect("sample event")
}

/// Every shipped sample file name.
pub const SAMPLE_NAMES: [&str; 7] = [
    "joinSpace.json",
    "leaveSpace.json",
    "hideTab.json",
    "unhideTab.json",
    "SESSION_ENDED.json",
    "RECORDING_AVAILABLE.json",
    "TRANSCRIPT_AVAILABLE.json",
];
