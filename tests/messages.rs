//! What the platforms receive: timestamps, escaping of hostile event data,
//! JSON templates, length limits and messages that render empty.

mod common;

use std::time::Duration;

use common::{
    json_body, requests_after, route, sample, spawn_app, spawn_app_with, wait_for_requests,
    AppOptions, TestApp, BRIDGE_BINARY,
};
use serde_json::{json, Value};
use unicode_segmentation::UnicodeSegmentation;

/// Time to wait for the first request of a delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to wait for a request that must not come.
const SETTLE: Duration = Duration::from_millis(300);

/// Starts a bridge with one route, `messages`, that sends every event to
/// `to` with template `t`. `templates` are (file name, text) pairs.
async fn spawn_with_templates(templates: &[(&str, &str)], to: &[&str]) -> TestApp {
    let app = spawn_app_with(AppOptions {
        routes: Some(route("messages", None, "t", to)),
        templates: templates
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect(),
        ..AppOptions::default()
    })
    .await;
    app.accept_everything().await;
    app
}

/// Builds a `joinSpace` event with `fields` added.
fn event_with(fields: Value) -> String {
    let mut event = json!({"_type": "SPACE_USER", "eventType": "joinSpace"});
    let object = event.as_object_mut().expect("an object");
    for (key, value) in fields.as_object().expect("fields are an object") {
        object.insert(key.clone(), value.clone());
    }
    event.to_string()
}

/// Posts `event`, checks that it is accepted and returns the first request
/// that `server` receives.
async fn post_and_receive(app: &TestApp, server: &wiremock::MockServer, event: &str) -> Value {
    let response = app.post_event(event).await;
    assert_eq!(response.status(), 202, "event {event}");
    let requests = wait_for_requests(server, 1, DELIVERY_TIMEOUT).await;
    json_body(&requests[0])
}

fn text_field<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {body}"))
}

#[tokio::test]
async fn timestamp_forms_render_same_time() {
    let template = "{{case}}|{{format_time time \"%Y-%m-%d %H:%M\"}}";
    let app = spawn_with_templates(&[("t.hbs", template)], &["slack"]).await;
    let cases = [
        ("epoch milliseconds", json!(1733336700000_i64)),
        ("epoch seconds", json!(1733336700)),
        ("epoch seconds as digits", json!("1733336700")),
        ("ISO 8601 in UTC", json!("2024-12-04T18:25:00Z")),
        ("ISO 8601 with offset", json!("2024-12-04T19:25:00+01:00")),
    ];
    for (case, timestamp) in &cases {
        let event = event_with(json!({"case": case, "timestamp": timestamp}));
        let response = app.post_event(&event).await;
        assert_eq!(response.status(), 202, "{case}");
    }

    let requests = wait_for_requests(&app.slack, cases.len(), DELIVERY_TIMEOUT).await;
    let texts: Vec<String> = requests
        .iter()
        .map(|request| text_field(&json_body(request), "text").to_owned())
        .collect();
    for (case, _) in &cases {
        let expected = format!("{case}|2024-12-04 18:25");
        assert!(texts.contains(&expected), "{case}: Slack texts {texts:?}");
    }
}

/// Fields that would ping people or show HTML entities if inserted wrongly.
fn hostile_event() -> String {
    event_with(json!({
        "userId": "O'Brien=admin&co",
        "roomId": "<!channel> <!here>",
        "note": "<@U999> @everyone <@&123>",
    }))
}

const HOSTILE_TEMPLATE: &str = "user {{userId}} room {{roomId}} note {{note}}";

#[tokio::test]
async fn slack_text_escapes_hostile_fields() {
    let app = spawn_with_templates(&[("t.hbs", HOSTILE_TEMPLATE)], &["slack"]).await;
    let body = post_and_receive(&app, &app.slack, &hostile_event()).await;
    let text = text_field(&body, "text");

    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(text.contains("&lt;!here&gt;"), "{text}");
    assert!(text.contains("&lt;@U999&gt;"), "{text}");
    assert!(text.contains("&amp;"), "{text}");
    assert!(text.contains("O'Brien=admin"), "{text}");
    assert!(!text.contains("&#x27;"), "{text}");
    assert!(!text.contains("&#x3D;"), "{text}");
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<!here>"), "{text}");
    assert!(!text.contains("<@U999>"), "{text}");
}

#[tokio::test]
async fn discord_hostile_fields_cannot_mention() {
    let app = spawn_with_templates(&[("t.hbs", HOSTILE_TEMPLATE)], &["discord"]).await;
    let body = post_and_receive(&app, &app.discord, &hostile_event()).await;
    let content = text_field(&body, "content");

    assert_eq!(body["allowed_mentions"], json!({"parse": [], "users": []}));
    assert!(content.contains("O'Brien=admin&co"), "{content}");
    assert!(!content.contains("&#x27;"), "{content}");
    assert!(!content.contains("&#x3D;"), "{content}");
}

#[tokio::test]
async fn email_hostile_fields_stay_plain_text() {
    let app = spawn_with_templates(&[("t.hbs", HOSTILE_TEMPLATE)], &["email"]).await;
    let body = post_and_receive(&app, &app.email, &hostile_event()).await;
    let text = text_field(&body, "text");

    assert!(text.contains("O'Brien=admin&co"), "{text}");
    assert!(!text.contains("&#x27;"), "{text}");
    assert!(!text.contains("&#x3D;"), "{text}");
}

#[tokio::test]
async fn shipped_slack_template_escapes_hostile_fields() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let mut event: Value = serde_json::from_str(&sample("joinSpace.json")).expect("sample");
    event["userId"] = json!("<!channel> O'Brien");
    event["roomId"] = json!("<!here> & co");
    let body = post_and_receive(&app, &app.slack, &event.to_string()).await;
    let text = text_field(&body, "text");

    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(text.contains("&lt;!here&gt; &amp; co"), "{text}");
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<!here>"), "{text}");
    assert!(!text.contains("&#x27;"), "{text}");
}

#[tokio::test]
async fn slack_json_template_round_trips_special_characters() {
    let template = r#"{"text": "{{x}}", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "{{x}}"}}]}"#;
    let app = spawn_with_templates(&[("t.slack.json.hbs", template)], &["slack"]).await;
    let x = "say \"hi\"\nsecond line\\path\tcolumn\r\nit's a=b, 100% ünïcode";
    let response = app.post_event(&event_with(json!({ "x": x }))).await;
    assert_eq!(response.status(), 202);

    let requests = wait_for_requests(&app.slack, 1, DELIVERY_TIMEOUT).await;
    let raw = String::from_utf8_lossy(&requests[0].body).into_owned();
    let body: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|err| panic!("Slack body is not valid JSON ({err}): {raw}"));
    assert_eq!(body["text"], x);
    assert_eq!(body["blocks"][0]["text"]["text"], x);
}

/// Event data inside a Block Kit mrkdwn field must not become live mention
/// syntax, as it cannot in a Slack text template.
#[tokio::test]
async fn slack_json_template_escapes_mention_syntax() {
    let template =
        r#"{"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "{{x}}"}}]}"#;
    let app = spawn_with_templates(&[("t.slack.json.hbs", template)], &["slack"]).await;
    let x = "<!channel> <@U999> & co";
    let body = post_and_receive(&app, &app.slack, &event_with(json!({ "x": x }))).await;
    let text = body["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();

    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<@U999>"), "{text}");
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
}

#[tokio::test]
async fn discord_json_template_gets_safe_allowed_mentions() {
    let template =
        r#"{"content": "{{x}}", "allowed_mentions": {"parse": ["everyone", "roles", "users"]}}"#;
    let app = spawn_with_templates(&[("t.discord.json.hbs", template)], &["discord"]).await;
    let event = event_with(json!({ "x": "@everyone <@&123> look" }));
    let body = post_and_receive(&app, &app.discord, &event).await;

    assert_eq!(body["allowed_mentions"], json!({"parse": [], "users": []}));
    assert_eq!(body["content"], "@everyone <@&123> look");
}

/// Sends `x` through template `{{x}}` to `destination` and returns the
/// request body.
async fn deliver_text(destination: &str, x: &str) -> Value {
    let app = spawn_with_templates(&[("t.hbs", "{{x}}")], &[destination]).await;
    let server = match destination {
        "slack" => &app.slack,
        "discord" => &app.discord,
        other => panic!("no mock for {other}"),
    };
    post_and_receive(&app, server, &event_with(json!({ "x": x }))).await
}

#[tokio::test]
async fn discord_content_is_cut_at_2000_characters() {
    let body = deliver_text("discord", &"a".repeat(2_500)).await;
    let content = text_field(&body, "content");

    assert!(
        content.chars().count() <= 2_000,
        "{} chars",
        content.chars().count()
    );
    assert!(
        content.ends_with('…'),
        "ends with {:?}",
        content.chars().last()
    );
}

#[tokio::test]
async fn discord_cyrillic_content_is_cut_at_2000_characters() {
    let body = deliver_text("discord", &"ж".repeat(3_000)).await;
    let content = text_field(&body, "content");

    assert!(
        content.chars().count() <= 2_000,
        "{} chars",
        content.chars().count()
    );
    assert!(
        content.ends_with('…'),
        "ends with {:?}",
        content.chars().last()
    );
    let before_ellipsis = content.trim_end_matches('…');
    assert!(
        before_ellipsis.chars().all(|c| c == 'ж'),
        "unexpected characters kept"
    );
}

#[tokio::test]
async fn discord_skin_toned_emoji_are_not_split() {
    let emoji = "👍🏽";
    let body = deliver_text("discord", &emoji.repeat(1_200)).await;
    let content = text_field(&body, "content");

    assert!(
        content.chars().count() <= 2_000,
        "{} chars",
        content.chars().count()
    );
    assert!(
        content.ends_with('…'),
        "ends with {:?}",
        content.chars().last()
    );
    let before_ellipsis = content.trim_end_matches('…');
    assert_eq!(
        before_ellipsis.chars().count() % 2,
        0,
        "an emoji lost its skin tone"
    );
    let split: Vec<&str> = before_ellipsis
        .graphemes(true)
        .filter(|g| *g != emoji)
        .collect();
    assert!(split.is_empty(), "split graphemes {split:?}");
}

#[tokio::test]
async fn slack_text_is_cut_at_4000_characters() {
    let body = deliver_text("slack", &"b".repeat(5_000)).await;
    let text = text_field(&body, "text");

    assert_eq!(text.chars().count(), 4_000);
    assert!(text.ends_with('…'), "ends with {:?}", text.chars().last());
}

#[tokio::test]
async fn blank_message_is_stored_dead_and_not_sent() {
    let templates = [("t.slack.hbs", "  \n\t {{missing}} \n"), ("t.hbs", "hello")];
    let app = spawn_with_templates(&templates, &["slack", "discord"]).await;
    let response = app.post_event(&event_with(json!({"case": "blank"}))).await;
    assert_eq!(response.status(), 202);

    // Discord's request shows the event was processed; Slack must stay silent.
    wait_for_requests(&app.discord, 1, DELIVERY_TIMEOUT).await;
    assert!(requests_after(&app.slack, SETTLE).await.is_empty());

    let output = tokio::process::Command::new(BRIDGE_BINARY)
        .args(["deliveries", "list", "--status", "dead", "--config"])
        .arg(&app.config_path)
        .output()
        .await
        .expect("run pencil-bridge deliveries list");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let slack_line = stdout
        .lines()
        .find(|line| line.contains("slack"))
        .unwrap_or_else(|| panic!("no dead Slack delivery listed:\n{stdout}"));
    assert!(slack_line.contains("dead"), "{slack_line}");
    assert!(slack_line.contains("empty"), "{slack_line}");
}

#[tokio::test]
async fn unrendered_delivery_is_rendered_again_on_retry() {
    let templates = [("t.slack.hbs", "{{missing}}"), ("t.hbs", "hello")];
    let app = spawn_with_templates(&templates, &["slack"]).await;
    let response = app
        .post_event(&event_with(json!({"case": "fixed later"})))
        .await;
    assert_eq!(response.status(), 202);
    assert!(requests_after(&app.slack, SETTLE).await.is_empty());

    // The operator fixes the template, then replays the dead letters.
    let template = app.dir.path().join("templates").join("t.slack.hbs");
    std::fs::write(template, "case: {{case}}").expect("rewrite template");
    let output = tokio::process::Command::new(BRIDGE_BINARY)
        .args(["deliveries", "retry", "--dead", "--config"])
        .arg(&app.config_path)
        .output()
        .await
        .expect("run pencil-bridge deliveries retry");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 delivery is due now"), "stdout: {stdout}");

    let requests = wait_for_requests(&app.slack, 1, Duration::from_secs(6)).await;
    assert_eq!(json_body(&requests[0])["text"], "case: fixed later");
}
