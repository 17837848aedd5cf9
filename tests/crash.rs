//! The real binary as a child process: SIGKILL with deliveries waiting and
//! in flight, SIGTERM, and secrets kept out of the logs.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    join_event, mount_response, mount_response_first, Recorder, EMAIL_PATH, PRODUCTION_SECRET,
    RELAY_TOKEN, SLACK_PATH,
};
use tempfile::TempDir;
use wiremock::MockServer;

/// Maximum wait for the binary to start and respond to `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Maximum wait for the binary to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings that differ between the tests.
struct Settings {
    /// `delivery.timeout`.
    timeout: &'static str,
    /// `server.shutdown_grace`.
    grace: &'static str,
    /// Destinations that `joinSpace` events go to.
    destinations: &'static [&'static str],
}

/// A config file, its database and the mock platforms it points at.
struct Setup {
    dir: TempDir,
    config_path: PathBuf,
    base_url: String,
    slack: MockServer,
    email: MockServer,
    client: reqwest::Client,
}

/// Finds a loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Setup {
    async fn new(settings: Settings) -> Self {
        let slack = MockServer::start().await;
        let email = MockServer::start().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let to = settings
            .destinations
            .iter()
            .map(|destination| format!("{destination:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "{grace}"

[store]
url = "sqlite://{db}"

[templates]
dir = "{templates}"

[[secrets]]
environment = "production"
value = "{PRODUCTION_SECRET}"

[delivery]
timeout = "{timeout}"
max_attempts = 1000
initial_backoff = "20ms"
max_backoff = "200ms"
max_age = "1h"

[destinations.slack]
kind = "slack"
url = "{slack}{SLACK_PATH}"
rate_per_second = 1000.0
burst = 100

[destinations.email]
kind = "email"
url = "{email}{EMAIL_PATH}"
token = "{RELAY_TOKEN}"
from = "Pencil Bridge <noreply@example.org>"
to = ["tutors@example.org"]
subject = "{{{{eventType}}}}"

[[routes]]
name = "joins"
when = {{ eventType = "joinSpace" }}
template = "join_space"
to = [{to}]
"#,
            grace = settings.grace,
            db = dir.path().join("bridge.db").display(),
            templates = templates.display(),
            timeout = settings.timeout,
            slack = slack.uri(),
            email = email.uri(),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        Self {
            dir,
            config_path,
            base_url: format!("http://127.0.0.1:{port}"),
            slack,
            email,
            client: reqwest::Client::new(),
        }
    }

    /// Starts `pencil-bridge serve` and waits until it responds to `/healthz`.
    async fn start(&self, rust_log: &str) -> Bridge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pencil-bridge"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("RUST_LOG", rust_log)
            .env_remove("PENCIL_BRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pencil-bridge serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0_u8; 4096];
            while let Ok(read) = pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                sink.lock().expect("stderr lock").push_str(&text);
            }
        });
        let mut bridge = Bridge {
            child,
            stderr,
            reader: Some(reader),
        };

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = bridge.child.try_wait().expect("poll the child") {
                panic!(
                    "pencil-bridge exited with {status} at start:\n{}",
                    bridge.stderr_text()
                );
            }
            let health = self
                .client
                .get(format!("{}/healthz", self.base_url))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == 200) {
                return bridge;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "pencil-bridge did not respond to /healthz within {START_TIMEOUT:?}:\n{}",
                    bridge.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, body: &str, authorization: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/webhooks/pencil", self.base_url))
            .header("Content-Type", "application/json")
            .header("Authorization", authorization)
            .body(body.to_owned())
            .send()
            .await
            .expect("the bridge responds")
    }

    /// Posts the `joinSpace` events with these indexes, in order.
    async fn post_joins(&self, indexes: std::ops::Range<usize>) {
        let authorization = format!("Bearer {PRODUCTION_SECRET}");
        for index in indexes {
            let response = self.post(&join_event(index), &authorization).await;
            assert_eq!(response.status(), 202, "status of event {index}");
        }
    }
}

/// A running `pencil-bridge serve` child process. Dropping it kills the
/// process if it still runs.
struct Bridge {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Bridge {
    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits for the stderr reader to reach the end of the pipe.
    fn finish_stderr(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        self.stderr_text()
    }

    /// Sends SIGKILL and waits for the process to end.
    fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the bridge");
        self.child.wait().expect("wait for the killed bridge")
    }

    /// Sends `signal` through kill(1).
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed with {sent}");
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process with SIGTERM and returns everything it wrote to
    /// stderr; panics unless it exits with status 0 within [`EXIT_TIMEOUT`].
    async fn stop(mut self) -> String {
        let status = self.terminate(EXIT_TIMEOUT).await;
        let stderr = self.finish_stderr();
        match status {
            Some(status) => assert!(status.success(), "exit status {status}:\n{stderr}"),
            None => panic!("no exit within {EXIT_TIMEOUT:?} after SIGTERM:\n{stderr}"),
        }
        stderr
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that none of the configured secrets occurs in `stderr`.
fn assert_no_secrets(stderr: &str) {
    let slack_secret = SLACK_PATH.rsplit('/').next().expect("path segment");
    for secret in [PRODUCTION_SECRET, SLACK_PATH, slack_secret, RELAY_TOKEN] {
        assert!(
            !stderr.contains(secret),
            "stderr contains the secret {secret:?}:\n{stderr}"
        );
    }
}

/// Asserts that each of `events` distinct events got exactly one prompt `200`.
fn assert_each_event_once(recorder: &Recorder, events: usize) {
    let mut counts = std::collections::HashMap::new();
    for request in recorder.responded(200) {
        let event_id = request.event_id.expect("the bridge sends X-Event-Id");
        *counts.entry(event_id).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), events, "distinct events delivered");
    for (event_id, count) in counts {
        assert_eq!(count, 1, "successful messages for event {event_id}");
    }
}

#[tokio::test]
async fn sigkill_loses_and_repeats_nothing() {
    let setup = Setup::new(Settings {
        timeout: "2s",
        grace: "1s",
        destinations: &["slack"],
    })
    .await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&setup.slack, SLACK_PATH, unavailable, Some(5)).await;
    // Slower than delivery.timeout, so these responses never reach the bridge.
    let slow = slack
        .response(200)
        .body("ok")
        .delay(Duration::from_secs(30));
    mount_response(&setup.slack, SLACK_PATH, slow, None).await;

    let mut bridge = setup.start("info").await;
    setup.post_joins(0..10).await;
    slack
        .wait_until(Duration::from_secs(5), "a request in flight", |log| {
            log.iter().any(|request| request.delayed)
        })
        .await;
    setup.post_joins(10..20).await;
    let status = bridge.kill();
    assert_eq!(status.signal(), Some(9), "exit status {status}");
    assert_no_secrets(&bridge.finish_stderr());

    mount_response_first(
        &setup.slack,
        SLACK_PATH,
        slack.response(200).body("ok"),
        None,
    )
    .await;
    let bridge = setup.start("info").await;
    slack
        .wait_for_responded(200, 20, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_each_event_once(&slack, 20);

    let stderr = bridge.stop().await;
    assert!(
        stderr.contains("resuming deliveries left in flight"),
        "the restart should release the lease of the killed attempt:\n{stderr}"
    );
    assert_no_secrets(&stderr);
}

#[tokio::test]
async fn sigterm_exits_zero() {
    let setup = Setup::new(Settings {
        timeout: "2s",
        grace: "1s",
        destinations: &["slack"],
    })
    .await;
    let slack = Recorder::new();
    mount_response(
        &setup.slack,
        SLACK_PATH,
        slack.response(200).body("ok"),
        None,
    )
    .await;

    let bridge = setup.start("info").await;
    setup.post_joins(0..3).await;
    slack
        .wait_for_responded(200, 3, Duration::from_secs(5))
        .await;
    let stderr = bridge.stop().await;

    assert!(stderr.contains("pencil-bridge stopped"), "{stderr}");
    assert_no_secrets(&stderr);
}

#[tokio::test]
async fn sigterm_mid_attempt_resends_after_restart() {
    let setup = Setup::new(Settings {
        timeout: "10s",
        grace: "500ms",
        destinations: &["slack"],
    })
    .await;
    let slack = Recorder::new();
    let slow = slack
        .response(200)
        .body("ok")
        .delay(Duration::from_secs(30));
    mount_response(&setup.slack, SLACK_PATH, slow, None).await;

    let bridge = setup.start("info").await;
    setup.post_joins(0..1).await;
    slack
        .wait_until(Duration::from_secs(5), "a request in flight", |log| {
            !log.is_empty()
        })
        .await;
    // The attempt outlives the grace period, so it is cut off and released.
    let stderr = bridge.stop().await;
    assert!(
        stderr.contains("attempts cut short at shutdown"),
        "{stderr}"
    );

    mount_response_first(
        &setup.slack,
        SLACK_PATH,
        slack.response(200).body("ok"),
        None,
    )
    .await;
    let bridge = setup.start("info").await;
    slack
        .wait_for_responded(200, 1, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_each_event_once(&slack, 1);
    assert_no_secrets(&bridge.stop().await);
}

#[tokio::test]
async fn secrets_stay_out_of_stderr() {
    let setup = Setup::new(Settings {
        timeout: "300ms",
        grace: "1s",
        destinations: &["slack", "email"],
    })
    .await;
    let slack = Recorder::new();
    let email = Recorder::new();
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&setup.slack, SLACK_PATH, unavailable, Some(2)).await;
    let slow = slack.response(200).body("ok").delay(Duration::from_secs(2));
    mount_response(&setup.slack, SLACK_PATH, slow, Some(1)).await;
    mount_response(
        &setup.slack,
        SLACK_PATH,
        slack.response(200).body("ok"),
        None,
    )
    .await;
    let unauthorized = email
        .response(401)
        .json(serde_json::json!({"error": "invalid token"}));
    mount_response(&setup.email, EMAIL_PATH, unauthorized, Some(1)).await;
    let queued = email.response(202).json(serde_json::json!({"id": "m-1"}));
    mount_response(&setup.email, EMAIL_PATH, queued, None).await;

    // Debug level: operators turn it on exactly when something goes wrong.
    let bridge = setup.start("debug").await;
    let wrong = setup.post(&join_event(90), "Bearer not-the-secret").await;
    assert_eq!(wrong.status(), 401);
    let not_json = setup
        .post("{not json", &format!("Bearer {PRODUCTION_SECRET}"))
        .await;
    assert_eq!(not_json.status(), 400);
    setup.post_joins(0..2).await;
    slack
        .wait_for_responded(200, 2, Duration::from_secs(5))
        .await;
    email
        .wait_for_responded(202, 1, Duration::from_secs(5))
        .await;

    let stderr = bridge.stop().await;
    for expected in ["will retry", "timed out", "HTTP 401", "webhook rejected"] {
        assert!(
            stderr.contains(expected),
            "stderr lacks {expected:?}:\n{stderr}"
        );
    }
    assert_no_secrets(&stderr);
}

#[tokio::test]
async fn rejected_reload_hides_secrets() {
    let setup = Setup::new(Settings {
        timeout: "2s",
        grace: "1s",
        destinations: &["slack", "email"],
    })
    .await;
    let bridge = setup.start("info").await;

    // An unterminated string on the line that contains the relay token.
    let config = std::fs::read_to_string(&setup.config_path).expect("read config");
    let broken = config.replace(
        &format!("token = \"{RELAY_TOKEN}\""),
        &format!("token = \"{RELAY_TOKEN}"),
    );
    assert_ne!(broken, config, "the config has no relay token line");
    std::fs::write(&setup.config_path, broken).expect("write config");
    bridge.signal("HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !bridge.stderr_text().contains("config reload rejected") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejected reload logged:\n{}",
            bridge.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_no_secrets(&bridge.stop().await);
}

#[tokio::test]
async fn sigterm_does_not_wait_for_stalled_client() {
    let setup = Setup::new(Settings {
        timeout: "2s",
        grace: "1s",
        destinations: &["slack"],
    })
    .await;
    let bridge = setup.start("info").await;

    // A client that announces a body and never sends it.
    let address = setup.base_url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/pencil HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Length: 500\r\n\r\n{{\"_type\":",
        PRODUCTION_SECRET
    );
    tokio::io::AsyncWriteExt::write_all(&mut stalled, head.as_bytes())
        .await
        .expect("send a partial request");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Exits within the 1 s grace plus start-up slack, with status 0.
    let stderr = bridge.stop().await;
    assert!(stderr.contains("requests still open"), "{stderr}");
    drop(stalled);
}
