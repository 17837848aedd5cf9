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

/// Starts the bridge. The mock servers answer `404` until a test mounts
/// answers, for example with [`TestApp::accept_everything`], so mount them
/// before sending events.
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
    /// Mounts success responses on every mock platform.
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

/// Path of the `pencil-bridge` binary that Cargo built for these tests.
pub const BRIDGE_BINARY: &str = env!("CARGO_BIN_EXE_pencil-bridge");

/// Builds one `[[routes]]` table. `when` is an inline TOML table such as
/// `{ environment = "staging" }`, and `None` matches every event.
pub fn route(name: &str, when: Option<&str>, template: &str, to: &[&str]) -> String {
    let when = when
        .map(|table| format!("when = {table}\n"))
        .unwrap_or_default();
    let to = to
        .iter()
        .map(|destination| format!("{destination:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("\n[[routes]]\nname = {name:?}\n{when}template = {template:?}\nto = [{to}]\n")
}

/// Copies the shipped templates into `target`, creating it.
pub fn copy_shipped_templates(target: &Path) {
    copy_templates(target);
}

/// Parses a request body as JSON, or panics with the body text.
pub fn json_body(request: &wiremock::Request) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap_or_else(|err| {
        panic!(
            "request body is not JSON ({err}): {}",
            String::from_utf8_lossy(&request.body)
        )
    })
}

/// Waits `settle` for late or repeated requests, then returns every request
/// `server` received.
pub async fn requests_after(server: &MockServer, settle: Duration) -> Vec<wiremock::Request> {
    tokio::time::sleep(settle).await;
    server.received_requests().await.unwrap_or_default()
}

impl TestApp {
    /// Posts `body` with the production secret and the given `Content-Type`,
    /// or with no `Content-Type` header when it is `None`.
    pub async fn post_with_content_type(
        &self,
        body: &str,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/pencil", self.base_url))
            .header("Authorization", format!("Bearer {PRODUCTION_SECRET}"))
            .body(body.to_owned());
        if let Some(value) = content_type {
            request = request.header("Content-Type", value);
        }
        request.send().await.expect("the bridge answers")
    }
}

/// One request that a [`RecordingResponse`] responded to, in arrival order.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When the mock server received the request.
    pub at: std::time::Instant,
    pub path: String,
    /// Status of the response that the mock sent.
    pub status: u16,
    /// True when [`RecordingResponse::delay`] held the response back.
    pub delayed: bool,
    /// The bridge's `X-Event-Id` header.
    pub event_id: Option<String>,
    /// The bridge's `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    pub body: String,
}

/// Log shared by every [`RecordingResponse`] it creates, so that a test can
/// see which mock responded to each request, and when.
#[derive(Clone, Default)]
pub struct Recorder {
    log: std::sync::Arc<std::sync::Mutex<Vec<RecordedRequest>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a response with `status` that logs each request it is sent for.
    pub fn response(&self, status: u16) -> RecordingResponse {
        RecordingResponse {
            template: ResponseTemplate::new(status),
            status,
            delayed: false,
            log: self.log.clone(),
        }
    }

    /// Returns every request logged so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().expect("recorder lock").clone()
    }

    /// Returns the requests that got `status` without a delay. For `200`,
    /// these are the messages whose success reached the bridge.
    pub fn responded(&self, status: u16) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.status == status && !request.delayed)
            .collect()
    }

    /// Waits until `done` holds for the log and returns the log, or panics
    /// after `timeout` with `what` and the statuses seen.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[RecordedRequest]) -> bool,
    ) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if tokio::time::Instant::now() > deadline {
                let statuses: Vec<u16> = requests.iter().map(|request| request.status).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; statuses so far: {statuses:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` requests got `status` without a delay.
    pub async fn wait_for_responded(
        &self,
        status: u16,
        count: usize,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        let what = format!("{count} responses with status {status} and no delay");
        self.wait_until(timeout, &what, |log| {
            log.iter()
                .filter(|request| request.status == status && !request.delayed)
                .count()
                >= count
        })
        .await
    }
}

/// A mock response that logs each request it is sent for in its [`Recorder`].
pub struct RecordingResponse {
    template: ResponseTemplate,
    status: u16,
    delayed: bool,
    log: std::sync::Arc<std::sync::Mutex<Vec<RecordedRequest>>>,
}

impl RecordingResponse {
    pub fn body(mut self, text: &str) -> Self {
        self.template = self.template.set_body_string(text);
        self
    }

    pub fn json(mut self, value: serde_json::Value) -> Self {
        self.template = self.template.set_body_json(value);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.template = self.template.insert_header(name, value);
        self
    }

    /// Holds the response back for `delay` after the request arrives.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.template = self.template.set_delay(delay);
        self.delayed = true;
        self
    }
}

impl wiremock::Respond for RecordingResponse {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let recorded = RecordedRequest {
            at: std::time::Instant::now(),
            path: request.url.path().to_owned(),
            status: self.status,
            delayed: self.delayed,
            event_id: header("x-event-id"),
            idempotency_key: header("idempotency-key"),
            body: String::from_utf8_lossy(&request.body).into_owned(),
        };
        self.log.lock().expect("recorder lock").push(recorded);
        self.template.clone()
    }
}

/// Mounts `response` for `POST url_path` on `server`, for at most `times`
/// requests when given. Among mocks of equal priority the first mounted
/// responds first, so later mounts take over once earlier limited ones run out.
pub async fn mount_response(
    server: &MockServer,
    url_path: &str,
    response: RecordingResponse,
    times: Option<u64>,
) {
    let mut mock = Mock::given(method("POST"))
        .and(path(url_path))
        .respond_with(response);
    if let Some(times) = times {
        mock = mock.up_to_n_times(times);
    }
    mock.mount(server).await;
}

/// Like [`mount_response`], but ahead of every mock already mounted without a
/// priority, e.g. to bring a destination back after an unlimited `503`.
pub async fn mount_response_first(
    server: &MockServer,
    url_path: &str,
    response: RecordingResponse,
    times: Option<u64>,
) {
    let mut mock = Mock::given(method("POST"))
        .and(path(url_path))
        .respond_with(response)
        .with_priority(1);
    if let Some(times) = times {
        mock = mock.up_to_n_times(times);
    }
    mock.mount(server).await;
}

/// Builds a `joinSpace` event for user `user-NN`. Each `index` gives another
/// event id and another message text.
pub fn join_event(index: usize) -> String {
    serde_json::json!({
        "_type": "SPACE_USER",
        "eventType": "joinSpace",
        "spaceId": "6750a3c2e4b0f1a2c3d4e5f6",
        "sessionId": "6758d1f09a3e4c0012ab7c51",
        "userId": format!("user-{index:02}"),
        "roomId": "main",
        "userTabId": "tab-3b9e",
        "timestamp": 1_733_846_412_318_u64 + index as u64,
    })
    .to_string()
}

impl TestApp {
    /// Opens the bridge's SQLite file a second time, as the `deliveries`
    /// commands do, to read delivery states.
    pub async fn store_handle(&self) -> std::sync::Arc<dyn pencil_bridge::store::Store> {
        let url = format!("sqlite://{}", self.dir.path().join("bridge.db").display());
        pencil_bridge::store::open(&url)
            .await
            .expect("the test opens the bridge's store")
    }

    /// Fetches `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("the bridge responds to /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("metrics text")
    }
}
