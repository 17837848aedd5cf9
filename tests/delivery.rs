//! Delivery against mock platforms: retries, rate limits, timeouts,
//! permanent errors, restarts, ordering, the `deliveries` commands and
//! config reloads.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{
    join_event, mount_response, mount_response_first, sample, spawn_app_with, AppOptions,
    RecordedRequest, Recorder, TestApp, DISCORD_PATH, EMAIL_PATH, SLACK_PATH,
};
use pencil_bridge::store::{Delivery, ListFilter, Status};

/// Maximum wait for messages that the bridge should send within a second or two.
const PROMPT: Duration = Duration::from_secs(5);
/// Time given to a request that must not come, to show that it does not.
const QUIET: Duration = Duration::from_millis(800);
/// Path of a second Discord webhook on the same mock server.
const SECOND_DISCORD_PATH: &str = "/api/webhooks/5678/seconddiscordtoken";

/// Builds a route that sends every `joinSpace` event to `destinations`.
fn join_route(destinations: &[&str]) -> String {
    let to = destinations
        .iter()
        .map(|destination| format!("{destination:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[routes]]\nname = \"joins\"\nwhen = {{ eventType = \"joinSpace\" }}\ntemplate = \"join_space\"\nto = [{to}]\n"
    )
}

/// Returns the default `[delivery]` table with the `(key, TOML value)` pairs replaced.
fn delivery_with(changes: &[(&str, &str)]) -> String {
    let lines: Vec<String> = AppOptions::default()
        .delivery
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            match changes.iter().find(|(name, _)| *name == key) {
                Some((name, value)) => format!("{name} = {value}"),
                None => line.to_owned(),
            }
        })
        .collect();
    lines.join("\n") + "\n"
}

/// Returns default options with `joinSpace` events routed to `destinations`.
fn joins_to(destinations: &[&str]) -> AppOptions {
    AppOptions {
        routes: Some(join_route(destinations)),
        ..AppOptions::default()
    }
}

/// Posts the `joinSpace` events with these indexes, in order.
async fn post_joins(app: &TestApp, indexes: std::ops::Range<usize>) {
    for index in indexes {
        let response = app.post_event(&join_event(index)).await;
        assert_eq!(response.status(), 202, "status of event {index}");
    }
}

/// Lists every stored delivery to `destination`, newest first.
async fn deliveries_to(app: &TestApp, destination: &str) -> Vec<Delivery> {
    let filter = ListFilter {
        destination: Some(destination.to_owned()),
        limit: 1_000,
        ..ListFilter::default()
    };
    app.store_handle()
        .await
        .list(&filter)
        .await
        .expect("list deliveries")
}

/// Counts `requests` per `X-Event-Id`.
fn count_per_event(requests: &[RecordedRequest]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        let event_id = request
            .event_id
            .clone()
            .expect("the bridge sends X-Event-Id");
        *counts.entry(event_id).or_insert(0) += 1;
    }
    counts
}

/// Asserts that `events` distinct events each got exactly one response
/// with `status`.
fn assert_each_event_once(recorder: &Recorder, status: u16, events: usize) {
    let counts = count_per_event(&recorder.responded(status));
    assert_eq!(
        counts.len(),
        events,
        "distinct events with response {status}"
    );
    for (event_id, count) in &counts {
        assert_eq!(*count, 1, "responses {status} for event {event_id}");
    }
}

/// Returns the time between the arrival of two requests.
fn gap(earlier: &RecordedRequest, later: &RecordedRequest) -> Duration {
    later.at.duration_since(earlier.at)
}

/// Runs `pencil-bridge ARGS --config <the app's config>` to completion.
async fn bridge_command(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pencil-bridge"))
        .args(args)
        .arg("--config")
        .arg(&app.config_path)
        .output()
        .await
        .expect("run the pencil-bridge binary")
}

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn slack_503_retried_until_ok() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, Some(5)).await;
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..1).await;
    slack.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    assert_eq!(slack.requests().len(), 6, "requests to Slack");
    assert_eq!(slack.responded(503).len(), 5, "503 responses");
    assert_eq!(slack.responded(200).len(), 1, "successful messages");
    let deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(deliveries.len(), 1, "stored deliveries");
    assert_eq!(deliveries[0].status, Status::Delivered);
    assert_eq!(deliveries[0].attempts, 6, "recorded attempts");
}

#[tokio::test]
async fn slack_429_honours_retry_after() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    let limited = slack
        .response(429)
        .header("Retry-After", "1")
        .body("rate_limited");
    mount_response(&app.slack, SLACK_PATH, limited, Some(1)).await;
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..1).await;
    slack.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    let requests = slack.requests();
    assert_eq!(requests.len(), 2, "requests to Slack");
    assert_eq!(requests[0].status, 429);
    let wait = gap(&requests[0], &requests[1]);
    assert!(
        wait >= Duration::from_millis(950),
        "retried {wait:?} after a 429 with Retry-After: 1"
    );
    assert_eq!(slack.responded(200).len(), 1, "successful messages");
}

#[tokio::test]
async fn discord_429_honours_json_retry_after() {
    let app = spawn_app_with(joins_to(&["discord"])).await;
    let discord = Recorder::new();
    let limited = discord.response(429).json(serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": 0.5,
        "global": false
    }));
    mount_response(&app.discord, DISCORD_PATH, limited, Some(1)).await;
    let saved = discord.response(200).json(serde_json::json!({"id": "1"}));
    mount_response(&app.discord, DISCORD_PATH, saved, None).await;

    post_joins(&app, 0..1).await;
    discord.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    let requests = discord.requests();
    assert_eq!(requests.len(), 2, "requests to Discord");
    let wait = gap(&requests[0], &requests[1]);
    assert!(
        wait >= Duration::from_millis(450),
        "retried {wait:?} after retry_after 0.5"
    );
    // A 429 without a readable wait gets the 1 s default, which this bound rules out.
    assert!(
        wait < Duration::from_millis(950),
        "retried {wait:?} after retry_after 0.5"
    );
    assert_eq!(discord.responded(200).len(), 1, "successful messages");
}

#[tokio::test]
async fn scheduled_retries_survive_restart() {
    let mut app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("max_attempts", "1000")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, None).await;

    post_joins(&app, 0..5).await;
    slack
        .wait_until(PROMPT, "10 responses of 503", |log| log.len() >= 10)
        .await;
    app.stop().await;
    mount_response_first(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;
    app.restart().await;

    slack.wait_for_responded(200, 5, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&slack, 200, 5);
    let deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(deliveries.len(), 5, "stored deliveries");
    for delivery in &deliveries {
        assert_eq!(
            delivery.status,
            Status::Delivered,
            "delivery {}",
            delivery.id
        );
    }
}

#[tokio::test]
async fn down_destination_events_sent_after_restart() {
    let mut app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("max_attempts", "1000")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, None).await;

    post_joins(&app, 0..5).await;
    slack
        .wait_until(PROMPT, "5 responses of 503", |log| log.len() >= 5)
        .await;
    app.restart().await;
    let before = slack.requests().len();
    slack
        .wait_until(PROMPT, "503 responses after the restart", |log| {
            log.len() >= before + 5
        })
        .await;
    mount_response_first(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    slack.wait_for_responded(200, 5, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&slack, 200, 5);
}

#[tokio::test]
async fn rate_limit_storm_sends_each_once() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    let no_wait = slack
        .response(429)
        .header("Retry-After", "0")
        .body("rate_limited");
    mount_response(&app.slack, SLACK_PATH, no_wait, Some(18)).await;
    let one_second = slack
        .response(429)
        .header("Retry-After", "1")
        .body("rate_limited");
    mount_response(&app.slack, SLACK_PATH, one_second, Some(2)).await;
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..5).await;
    slack
        .wait_for_responded(200, 5, Duration::from_secs(10))
        .await;
    tokio::time::sleep(QUIET).await;

    assert_each_event_once(&slack, 200, 5);
    assert_eq!(slack.responded(429).len(), 20, "429 responses");
    // 20 rate-limited requests plus one successful request per event.
    let requests = slack.requests().len();
    assert!(
        requests <= 25,
        "{requests} requests for 5 events and 20 429s"
    );
    for delivery in deliveries_to(&app, "slack").await {
        assert_eq!(
            delivery.status,
            Status::Delivered,
            "delivery {}",
            delivery.id
        );
    }
}

#[tokio::test]
async fn rate_limits_not_counted_as_failures() {
    let app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("max_attempts", "3")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let limited = slack
        .response(429)
        .header("Retry-After", "0")
        .body("rate_limited");
    mount_response(&app.slack, SLACK_PATH, limited, Some(4)).await;
    let unavailable = slack.response(503).body("service unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, Some(1)).await;
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..1).await;
    slack.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    assert_eq!(slack.requests().len(), 6, "requests to Slack");
    let deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(deliveries[0].status, Status::Delivered);
    assert_eq!(deliveries[0].attempts, 6, "recorded attempts");
    assert_eq!(deliveries[0].failures, 1, "attempts counted as failures");
}

#[tokio::test]
async fn slow_destination_times_out_and_retries() {
    let app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("timeout", "\"300ms\"")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let slow = slack.response(200).body("ok").delay(Duration::from_secs(1));
    mount_response(&app.slack, SLACK_PATH, slow, Some(2)).await;
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..1).await;
    slack.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    assert_eq!(slack.requests().len(), 3, "requests to Slack");
    let deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(deliveries.len(), 1, "stored deliveries");
    assert_eq!(deliveries[0].status, Status::Delivered);
    let detail = app
        .store_handle()
        .await
        .get(deliveries[0].id)
        .await
        .expect("read delivery")
        .expect("the delivery exists");
    let outcomes: Vec<&str> = detail
        .attempts
        .iter()
        .map(|attempt| attempt.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    let first_error = detail.attempts[0].error.as_deref().unwrap_or_default();
    assert!(first_error.contains("timed out"), "{first_error}");
}

#[tokio::test]
async fn discord_down_does_not_hold_up_slack() {
    let app = spawn_app_with(joins_to(&["slack", "discord"])).await;
    let slack = Recorder::new();
    let discord = Recorder::new();
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;
    let failing = discord
        .response(500)
        .json(serde_json::json!({"message": "500: Internal"}));
    mount_response(&app.discord, DISCORD_PATH, failing, None).await;

    post_joins(&app, 0..10).await;
    slack
        .wait_for_responded(200, 10, Duration::from_secs(3))
        .await;

    assert_each_event_once(&slack, 200, 10);
    assert!(
        !discord.requests().is_empty(),
        "Discord got no request, so it was never down"
    );
    assert!(
        discord.responded(200).is_empty(),
        "Discord responded only with 500"
    );
}

#[tokio::test]
async fn permanent_errors_are_tried_once() {
    let app = spawn_app_with(joins_to(&["slack", "email"])).await;
    let slack = Recorder::new();
    let email = Recorder::new();
    let invalid = slack.response(400).body("invalid_payload");
    mount_response(&app.slack, SLACK_PATH, invalid, None).await;
    let rejected = email
        .response(422)
        .json(serde_json::json!({"error": "recipient rejected"}));
    mount_response(&app.email, EMAIL_PATH, rejected, None).await;

    post_joins(&app, 0..1).await;
    slack
        .wait_until(PROMPT, "one Slack request", |log| !log.is_empty())
        .await;
    email
        .wait_until(PROMPT, "one email request", |log| !log.is_empty())
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(slack.requests().len(), 1, "requests to Slack");
    assert_eq!(email.requests().len(), 1, "requests to the email relay");
    let slack_deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(slack_deliveries[0].status, Status::Dead);
    let slack_error = slack_deliveries[0].last_error.clone().unwrap_or_default();
    assert!(slack_error.contains("invalid_payload"), "{slack_error}");
    let email_deliveries = deliveries_to(&app, "email").await;
    assert_eq!(email_deliveries[0].status, Status::Dead);
    let email_error = email_deliveries[0].last_error.clone().unwrap_or_default();
    assert!(email_error.contains("HTTP 422"), "{email_error}");
}

#[tokio::test]
async fn discord_unknown_webhook_stops_until_reload() {
    let app = spawn_app_with(joins_to(&["discord"])).await;
    let discord = Recorder::new();
    let unknown = discord
        .response(404)
        .json(serde_json::json!({"message": "Unknown Webhook", "code": 10015}));
    mount_response(&app.discord, DISCORD_PATH, unknown, None).await;

    post_joins(&app, 0..1).await;
    discord
        .wait_until(PROMPT, "one Discord request", |log| !log.is_empty())
        .await;
    post_joins(&app, 1..3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(discord.requests().len(), 1, "requests to a gone webhook");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("pencil_bridge_destination_healthy{destination=\"discord\"} 0"),
        "{metrics}"
    );
    let deliveries = deliveries_to(&app, "discord").await;
    assert_eq!(deliveries.len(), 3, "stored deliveries");
    for delivery in &deliveries {
        assert_ne!(delivery.status, Status::Dead, "delivery {}", delivery.id);
        assert_ne!(
            delivery.status,
            Status::Delivered,
            "delivery {}",
            delivery.id
        );
    }

    // A reload starts the destination again, and the waiting deliveries go out.
    let saved = discord.response(200).json(serde_json::json!({"id": "1"}));
    mount_response_first(&app.discord, DISCORD_PATH, saved, None).await;
    app.reload().await.expect("reload");
    discord.wait_for_responded(200, 3, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&discord, 200, 3);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("pencil_bridge_destination_healthy{destination=\"discord\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn dead_delivery_listed_shown_and_retried() {
    let app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("max_attempts", "3")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("upstream_unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, None).await;

    post_joins(&app, 0..2).await;
    slack
        .wait_until(PROMPT, "6 responses of 503", |log| log.len() >= 6)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(slack.requests().len(), 6, "3 requests for each of 2 events");
    let mut dead = deliveries_to(&app, "slack").await;
    dead.sort_by_key(|delivery| delivery.id);
    assert_eq!(dead.len(), 2, "stored deliveries");
    for delivery in &dead {
        assert_eq!(delivery.status, Status::Dead, "delivery {}", delivery.id);
    }
    let (first, second) = (dead[0].id, dead[1].id);

    let list = stdout_of(&bridge_command(&app, &["deliveries", "list", "--status", "dead"]).await);
    for id in [first, second] {
        let row = list
            .lines()
            .find(|line| line.split_whitespace().next() == Some(id.to_string().as_str()))
            .unwrap_or_else(|| panic!("no row for delivery {id} in:\n{list}"));
        assert!(row.contains("dead"), "{row}");
        assert!(row.contains("HTTP 503: upstream_unavailable"), "{row}");
        assert!(row.contains("gave up after 3"), "{row}");
    }

    let show = stdout_of(&bridge_command(&app, &["deliveries", "show", &first.to_string()]).await);
    let attempts = show.split("attempts:").last().unwrap_or_default();
    let with_503 = attempts
        .lines()
        .filter(|line| line.contains(" 503 "))
        .count();
    assert_eq!(with_503, 3, "attempt lines with HTTP 503 in:\n{show}");

    mount_response_first(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;
    let retried =
        stdout_of(&bridge_command(&app, &["deliveries", "retry", &first.to_string()]).await);
    assert!(retried.contains("1 delivery is due now"), "{retried}");
    // The idle worker looks at the store every 2 s.
    slack.wait_for_responded(200, 1, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        slack.responded(200).len(),
        1,
        "only the retried delivery is sent"
    );

    let command = ["deliveries", "retry", "--dead", "--destination", "slack"];
    let retried = stdout_of(&bridge_command(&app, &command).await);
    assert!(retried.contains("1 delivery is due now"), "{retried}");
    slack.wait_for_responded(200, 2, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&slack, 200, 2);
    for delivery in deliveries_to(&app, "slack").await {
        assert_eq!(
            delivery.status,
            Status::Delivered,
            "delivery {}",
            delivery.id
        );
    }
}

#[tokio::test]
async fn slack_keeps_event_order() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..10).await;
    let requests = slack.wait_for_responded(200, 10, PROMPT).await;

    assert_eq!(requests.len(), 10, "requests to Slack");
    for (index, request) in requests.iter().enumerate() {
        let user = format!("*user-{index:02}*");
        assert!(
            request.body.contains(&user),
            "message {index} should name {user}: {}",
            request.body
        );
    }
}

#[tokio::test]
async fn discord_empty_budget_delays_next_request() {
    let app = spawn_app_with(joins_to(&["discord"])).await;
    let discord = Recorder::new();
    let last_in_budget = discord
        .response(200)
        .json(serde_json::json!({"id": "1"}))
        .header("X-RateLimit-Limit", "5")
        .header("X-RateLimit-Remaining", "0")
        .header("X-RateLimit-Reset-After", "1");
    mount_response(&app.discord, DISCORD_PATH, last_in_budget, Some(1)).await;
    let saved = discord
        .response(200)
        .json(serde_json::json!({"id": "2"}))
        .header("X-RateLimit-Remaining", "4");
    mount_response(&app.discord, DISCORD_PATH, saved, None).await;

    post_joins(&app, 0..2).await;
    let requests = discord.wait_for_responded(200, 2, PROMPT).await;

    let wait = gap(&requests[0], &requests[1]);
    assert!(
        wait >= Duration::from_millis(950),
        "second request {wait:?} after X-RateLimit-Reset-After: 1"
    );
    assert_each_event_once(&discord, 200, 2);
}

/// Starts a bridge with a second Discord destination, `discord_two`, on the
/// same mock server: `joinSpace` goes to `discord` and `leaveSpace` to
/// `discord_two`.
async fn spawn_two_discords() -> TestApp {
    let app = spawn_app_with(joins_to(&["discord"])).await;
    // The mock's address is known only now, so the destination comes by reload.
    let second = format!(
        "\n[destinations.discord_two]\nkind = \"discord\"\nurl = \"{}{SECOND_DISCORD_PATH}\"\nrate_per_second = 1000.0\nburst = 100\n\n[[routes]]\nname = \"leaves\"\nwhen = {{ eventType = \"leaveSpace\" }}\ntemplate = \"leave_space\"\nto = [\"discord_two\"]\n",
        app.discord.uri()
    );
    let mut config = std::fs::read_to_string(&app.config_path).expect("read config");
    config.push_str(&second);
    std::fs::write(&app.config_path, config).expect("write config");
    app.reload().await.expect("reload with discord_two");
    app
}

/// Mounts a 429 for `discord` with this `global` flag, then lets a
/// `discord_two` message follow it. Returns the wait between the 429 and the
/// `discord_two` request.
async fn wait_after_discord_429(global: bool) -> Duration {
    let app = spawn_two_discords().await;
    let discord = Recorder::new();
    let limited = discord.response(429).json(serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": 1,
        "global": global
    }));
    mount_response(&app.discord, DISCORD_PATH, limited, Some(1)).await;
    let saved = discord.response(200).json(serde_json::json!({"id": "1"}));
    mount_response(&app.discord, DISCORD_PATH, saved, None).await;
    let saved = discord.response(200).json(serde_json::json!({"id": "2"}));
    mount_response(&app.discord, SECOND_DISCORD_PATH, saved, None).await;

    post_joins(&app, 0..1).await;
    discord
        .wait_until(PROMPT, "the 429", |log| !log.is_empty())
        .await;
    // Time for the bridge to read the 429 before the second message exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = app.post_event(&sample("leaveSpace.json")).await;
    assert_eq!(response.status(), 202);
    let requests = discord
        .wait_until(PROMPT, "the discord_two message", |log| {
            log.iter()
                .any(|request| request.path == SECOND_DISCORD_PATH)
        })
        .await;
    let second = requests
        .iter()
        .find(|request| request.path == SECOND_DISCORD_PATH)
        .expect("found above");
    gap(&requests[0], second)
}

#[tokio::test]
async fn discord_global_429_pauses_other_destination() {
    let wait = wait_after_discord_429(true).await;
    assert!(
        wait >= Duration::from_millis(950),
        "discord_two sent {wait:?} after a global 429 with retry_after 1"
    );
}

#[tokio::test]
async fn discord_local_429_leaves_other_destination() {
    let wait = wait_after_discord_429(false).await;
    assert!(
        wait < Duration::from_millis(900),
        "discord_two waited {wait:?} for another webhook's 429"
    );
}

#[tokio::test]
async fn email_idempotency_key_per_delivery() {
    let app = spawn_app_with(joins_to(&["email"])).await;
    let email = Recorder::new();
    let unavailable = email.response(503).body("try again");
    mount_response(&app.email, EMAIL_PATH, unavailable, Some(2)).await;
    let queued = email.response(202).json(serde_json::json!({"id": "m-1"}));
    mount_response(&app.email, EMAIL_PATH, queued, None).await;

    post_joins(&app, 0..1).await;
    email.wait_for_responded(202, 1, PROMPT).await;
    let unavailable = email.response(503).body("try again");
    mount_response_first(&app.email, EMAIL_PATH, unavailable, Some(2)).await;
    post_joins(&app, 1..2).await;
    email.wait_for_responded(202, 2, PROMPT).await;
    tokio::time::sleep(QUIET).await;

    let mut keys_by_event: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for request in email.requests() {
        let event_id = request
            .event_id
            .clone()
            .expect("the bridge sends X-Event-Id");
        keys_by_event
            .entry(event_id)
            .or_default()
            .push(request.idempotency_key.clone());
    }
    assert_eq!(keys_by_event.len(), 2, "events sent to the relay");
    let mut distinct_keys = HashSet::new();
    for (event_id, keys) in &keys_by_event {
        assert_eq!(keys.len(), 3, "requests for event {event_id}");
        let first = keys[0].clone().expect("the bridge sends Idempotency-Key");
        for key in keys {
            assert_eq!(
                key.as_deref(),
                Some(first.as_str()),
                "key of event {event_id}"
            );
        }
        distinct_keys.insert(first);
    }
    assert_eq!(distinct_keys.len(), 2, "keys of two events");
    assert_each_event_once(&email, 202, 2);
}

#[tokio::test]
async fn rejected_reload_keeps_running_config() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;
    let working = std::fs::read_to_string(&app.config_path).expect("read config");
    let broken = [
        "this is [not valid TOML".to_owned(),
        working.replace("to = [\"slack\"]", "to = [\"nowhere\"]"),
    ];

    for (round, text) in broken.iter().enumerate() {
        std::fs::write(&app.config_path, text).expect("write config");
        assert!(app.reload().await.is_err(), "reload {round} should fail");
        post_joins(&app, round..round + 1).await;
        slack.wait_for_responded(200, round + 1, PROMPT).await;
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("pencil_bridge_config_reloads_total{result=\"failure\"} 2"),
        "{metrics}"
    );

    std::fs::write(&app.config_path, &working).expect("write config");
    app.reload().await.expect("reload of the working config");
    post_joins(&app, 2..3).await;
    slack.wait_for_responded(200, 3, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&slack, 200, 3);
}

#[tokio::test]
async fn removed_destination_keeps_its_deliveries() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    let unavailable = slack.response(503).body("upstream_unavailable");
    mount_response(&app.slack, SLACK_PATH, unavailable, None).await;
    post_joins(&app, 0..2).await;
    slack
        .wait_until(PROMPT, "two Slack requests", |log| log.len() >= 2)
        .await;

    // A reload renames the destination, so `slack` has no worker any more.
    let original = std::fs::read_to_string(&app.config_path).expect("read config");
    let renamed = original
        .replace("[destinations.slack]", "[destinations.chat]")
        .replace("to = [\"slack\"]", "to = [\"chat\"]");
    std::fs::write(&app.config_path, renamed).expect("write config");
    app.reload().await.expect("reload without slack");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("pencil_bridge_queue_depth{destination=\"slack\"} 2"),
        "{metrics}"
    );
    for delivery in deliveries_to(&app, "slack").await {
        assert_eq!(
            delivery.status,
            Status::Scheduled,
            "delivery {}",
            delivery.id
        );
    }

    // Bringing the destination back sends each waiting delivery once.
    let accepted = slack.response(200).body("ok");
    mount_response_first(&app.slack, SLACK_PATH, accepted, None).await;
    std::fs::write(&app.config_path, original).expect("restore config");
    app.reload().await.expect("reload with slack");
    slack.wait_for_responded(200, 2, PROMPT).await;
    tokio::time::sleep(QUIET).await;
    assert_each_event_once(&slack, 200, 2);
}

#[tokio::test]
async fn send_test_delivers_now_and_prints_answer() {
    let app = spawn_app_with(joins_to(&["slack"])).await;
    let slack = Recorder::new();
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    let output = bridge_command(&app, &["send-test", "slack"]).await;
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "stdout: {stdout}");
    assert!(stdout.contains("delivered: HTTP 200"), "stdout: {stdout}");
    assert_eq!(slack.requests().len(), 1, "requests to Slack");
    assert!(!stdout.contains("slacksecretpath"), "stdout: {stdout}");

    let refused = Recorder::new();
    mount_response_first(
        &app.slack,
        SLACK_PATH,
        refused.response(404).body("no_service"),
        None,
    )
    .await;
    let output = bridge_command(&app, &["send-test", "slack"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}");
    assert!(stdout.contains("the webhook is gone"), "stdout: {stdout}");
}

#[tokio::test]
async fn reload_keeps_rate_limit_of_unchanged_destination() {
    let app = spawn_app_with(AppOptions {
        slack_extra: "rate_per_second = 1.0\nburst = 1\n".into(),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    mount_response(&app.slack, SLACK_PATH, slack.response(200).body("ok"), None).await;

    post_joins(&app, 0..1).await;
    slack.wait_for_responded(200, 1, PROMPT).await;
    app.reload().await.expect("reload the same config");
    post_joins(&app, 1..2).await;
    slack.wait_for_responded(200, 2, PROMPT).await;

    let requests = slack.requests();
    let waited = gap(&requests[0], &requests[1]);
    assert!(
        waited >= Duration::from_millis(800),
        "second message after {waited:?}"
    );
}

#[tokio::test]
async fn reload_lets_slow_attempt_finish() {
    let app = spawn_app_with(AppOptions {
        delivery: delivery_with(&[("timeout", "\"5s\"")]),
        ..joins_to(&["slack"])
    })
    .await;
    let slack = Recorder::new();
    let slow = slack
        .response(200)
        .body("ok")
        .delay(Duration::from_millis(2_500));
    mount_response(&app.slack, SLACK_PATH, slow, None).await;

    post_joins(&app, 0..1).await;
    slack
        .wait_until(PROMPT, "a request in flight", |log| !log.is_empty())
        .await;
    // Changing the destination replaces its worker; the attempt in flight
    // outlives server.shutdown_grace (2 s) and must still complete.
    let config = std::fs::read_to_string(&app.config_path).expect("read config");
    let changed = config.replace("rate_per_second = 1000.0", "rate_per_second = 500.0");
    std::fs::write(&app.config_path, changed).expect("write config");
    app.reload().await.expect("reload");
    tokio::time::sleep(QUIET).await;

    assert_eq!(slack.requests().len(), 1, "requests to Slack");
    let deliveries = deliveries_to(&app, "slack").await;
    assert_eq!(deliveries[0].status, Status::Delivered);
}
