//! The webhook endpoint: authentication, body checks, duplicates, the
//! request each platform gets for every sample event, and the health
//! endpoints.

mod common;

use std::time::Duration;

use common::{
    json_body, requests_after, route, sample, spawn_app, spawn_app_with, wait_for_requests,
    AppOptions, DEFAULT_ROUTES, PRODUCTION_SECRET, RELAY_TOKEN, SAMPLE_NAMES, STAGING_SECRET,
};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::Request;

/// Time to wait for the first request of a delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to wait after the first requests for any second one to show up.
const SETTLE: Duration = Duration::from_millis(300);
/// Default `server.max_body_bytes`.
const MAX_BODY_BYTES: usize = 65_536;

/// Result of posting one sample: the bridge's response and the requests
/// each mock platform received.
struct SampleRun {
    status: u16,
    response: Value,
    slack: Vec<Request>,
    discord: Vec<Request>,
    email: Vec<Request>,
}

/// Posts sample `name` to a fresh bridge and collects the requests once
/// each platform has one, plus any that arrive within `settle`.
async fn run_sample(name: &str, settle: Duration) -> SampleRun {
    let app = spawn_app().await;
    app.accept_everything().await;
    let response = app.post_event(&sample(name)).await;
    let status = response.status().as_u16();
    let body = response.json().await.expect("the response body is JSON");
    wait_for_requests(&app.slack, 1, DELIVERY_TIMEOUT).await;
    wait_for_requests(&app.discord, 1, DELIVERY_TIMEOUT).await;
    wait_for_requests(&app.email, 1, DELIVERY_TIMEOUT).await;
    SampleRun {
        status,
        response: body,
        slack: requests_after(&app.slack, settle).await,
        discord: requests_after(&app.discord, Duration::ZERO).await,
        email: requests_after(&app.email, Duration::ZERO).await,
    }
}

fn event_type_of(name: &str) -> String {
    let body: Value = serde_json::from_str(&sample(name)).expect("samples are JSON");
    body["eventType"].as_str().expect("eventType").to_owned()
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Builds an event body whose `case` field makes it unique.
fn unique_event(case: &str) -> String {
    json!({
        "_type": "SPACE_USER",
        "eventType": "joinSpace",
        "spaceId": "space-ingest",
        "userId": "user-ingest",
        "case": case,
        "timestamp": 1733846412318_i64,
    })
    .to_string()
}

/// Writes the fields of `object` in reverse key order, one per line with
/// extra spaces, so the text differs from the compact form.
fn reordered(object: &Map<String, Value>) -> String {
    let fields: Vec<String> = object
        .iter()
        .rev()
        .map(|(key, value)| format!("  {key:?} :  {value}"))
        .collect();
    format!("{{\n{}\n}}\n", fields.join(",\n"))
}

#[tokio::test]
async fn every_sample_is_accepted_with_three_deliveries() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, Duration::ZERO).await;
        assert_eq!(run.status, 202, "{name}");
        assert_eq!(
            run.response["status"], "accepted",
            "{name}: {}",
            run.response
        );
        assert_eq!(run.response["deliveries"], 3, "{name}: {}", run.response);
        let event_id = run.response["event_id"].as_str().unwrap_or_default();
        assert!(
            !event_id.is_empty() && event_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: event_id {:?} is not a hex id",
            run.response["event_id"]
        );
    }
}

#[tokio::test]
async fn every_sample_sends_one_request_per_platform() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, SETTLE).await;
        assert_eq!(run.slack.len(), 1, "{name}: Slack requests");
        assert_eq!(run.discord.len(), 1, "{name}: Discord requests");
        assert_eq!(run.email.len(), 1, "{name}: email requests");
    }
}

#[tokio::test]
async fn every_sample_slack_request_is_text_only() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, Duration::ZERO).await;
        let body = json_body(&run.slack[0]);
        let keys: Vec<&String> = body.as_object().expect("a JSON object").keys().collect();
        assert_eq!(keys, ["text"], "{name}: {body}");
        let text = body["text"].as_str().unwrap_or_default();
        assert!(!text.trim().is_empty(), "{name}: empty text in {body}");
    }
}

#[tokio::test]
async fn every_sample_discord_request_is_safe() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, Duration::ZERO).await;
        let request = &run.discord[0];
        let waits = request
            .url
            .query_pairs()
            .any(|(key, value)| key == "wait" && value == "true");
        assert!(
            waits,
            "{name}: query {:?} lacks wait=true",
            request.url.query()
        );
        let body = json_body(request);
        let content = body["content"].as_str().unwrap_or_default();
        assert!(
            !content.trim().is_empty(),
            "{name}: empty content in {body}"
        );
        assert_eq!(
            body["allowed_mentions"],
            json!({"parse": [], "users": []}),
            "{name}"
        );
        assert_eq!(body["username"], "Pencil", "{name}");
    }
}

#[tokio::test]
async fn every_sample_email_request_has_relay_fields() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, Duration::ZERO).await;
        let request = &run.email[0];
        let expected_authorization = format!("Bearer {RELAY_TOKEN}");
        assert_eq!(
            header(request, "authorization"),
            Some(expected_authorization.as_str()),
            "{name}"
        );
        let key = header(request, "idempotency-key").unwrap_or_default();
        assert!(!key.is_empty(), "{name}: no Idempotency-Key header");

        let body = json_body(request);
        assert_eq!(
            body["from"], "Pencil Bridge <noreply@example.org>",
            "{name}"
        );
        assert_eq!(body["to"], json!(["tutors@example.org"]), "{name}");
        let event_type = event_type_of(name);
        let subject = body["subject"].as_str().unwrap_or_default();
        assert!(
            subject.starts_with(&format!("{event_type}:")),
            "{name}: subject {subject:?}"
        );
        let text = body["text"].as_str().unwrap_or_default();
        assert!(!text.trim().is_empty(), "{name}: empty text in {body}");
    }
}

#[tokio::test]
async fn every_sample_request_has_bridge_user_agent() {
    for name in SAMPLE_NAMES {
        let run = run_sample(name, Duration::ZERO).await;
        let requests = [
            ("Slack", &run.slack[0]),
            ("Discord", &run.discord[0]),
            ("email", &run.email[0]),
        ];
        for (platform, request) in requests {
            let agent = header(request, "user-agent").unwrap_or_default();
            assert!(
                agent.starts_with("pencil-bridge/"),
                "{name} to {platform}: User-Agent {agent:?}"
            );
        }
    }
}

#[tokio::test]
async fn rejected_authorization_gets_401() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let basic = format!("Basic {PRODUCTION_SECRET}");
    let wrong = "Bearer not-the-secret".to_owned();
    let bare = PRODUCTION_SECRET.to_owned();
    let cases: [(&str, Option<&str>); 5] = [
        ("no header", None),
        ("Basic scheme", Some(&basic)),
        ("wrong secret", Some(&wrong)),
        ("empty bearer token", Some("Bearer ")),
        ("secret without scheme", Some(&bare)),
    ];
    for (case, authorization) in cases {
        let response = app
            .post_with_auth(&sample("joinSpace.json"), authorization)
            .await;
        assert_eq!(response.status(), 401, "{case}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{case}");

        let text = response.text().await.expect("a body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{case}: body is not JSON ({err}): {text}"));
        assert!(body["error"].is_string(), "{case}: {text}");
        assert!(
            !text.contains(PRODUCTION_SECRET),
            "{case}: body shows the production secret"
        );
        assert!(
            !text.contains(STAGING_SECRET),
            "{case}: body shows the staging secret"
        );
    }
}

#[tokio::test]
async fn accepted_authorization_forms_get_202() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let lowercase = format!("bearer {PRODUCTION_SECRET}");
    let spaced = format!("Bearer     {PRODUCTION_SECRET}");
    let cases = [
        ("lowercase scheme", lowercase.as_str()),
        ("several spaces", spaced.as_str()),
    ];
    for (case, authorization) in cases {
        let response = app
            .post_with_auth(&unique_event(case), Some(authorization))
            .await;
        assert_eq!(response.status(), 202, "{case}");
    }
}

fn staging_route_options() -> AppOptions {
    AppOptions {
        routes: Some(route(
            "staging-only",
            Some(r#"{ environment = "staging" }"#),
            "env",
            &["slack"],
        )),
        templates: vec![("env.hbs".into(), "environment={{environment}}".into())],
        ..AppOptions::default()
    }
}

#[tokio::test]
async fn staging_secret_reaches_routes_and_templates() {
    let app = spawn_app_with(staging_route_options()).await;
    app.accept_everything().await;
    let authorization = format!("Bearer {STAGING_SECRET}");
    let response = app
        .post_with_auth(&sample("joinSpace.json"), Some(&authorization))
        .await;
    assert_eq!(response.status(), 202);
    let response_body: Value = response.json().await.expect("a JSON response body");
    assert_eq!(response_body["deliveries"], 1, "{response_body}");

    let requests = wait_for_requests(&app.slack, 1, DELIVERY_TIMEOUT).await;
    assert_eq!(json_body(&requests[0])["text"], "environment=staging");
}

#[tokio::test]
async fn production_secret_skips_staging_route() {
    let app = spawn_app_with(staging_route_options()).await;
    app.accept_everything().await;
    let response = app.post_event(&sample("joinSpace.json")).await;
    assert_eq!(response.status(), 202);
    let response_body: Value = response.json().await.expect("a JSON response body");
    assert_eq!(response_body["deliveries"], 0, "{response_body}");
}

#[tokio::test]
async fn invalid_bodies_get_400_naming_the_problem() {
    let app = spawn_app().await;
    let cases = [
        ("not JSON", r#"{"_type": "SPACE_USER","#, "not valid JSON"),
        ("empty body", "", "not valid JSON"),
        ("JSON array", r#"[{"_type": "SPACE_USER"}]"#, "not an array"),
        ("JSON string", r#""joinSpace""#, "not a string"),
        ("JSON number", "42", "not a number"),
        ("JSON null", "null", "not null"),
        (
            "missing _type",
            r#"{"eventType": "joinSpace"}"#,
            "no `_type` field",
        ),
        (
            "missing eventType",
            r#"{"_type": "SPACE_USER"}"#,
            "no `eventType` field",
        ),
        (
            "eventType not a string",
            r#"{"_type": "SPACE_USER", "eventType": 7}"#,
            "`eventType` must be a non-empty string",
        ),
    ];
    for (case, body, expected) in cases {
        let response = app.post_event(body).await;
        assert_eq!(response.status(), 400, "{case}");
        let text = response.text().await.expect("a body");
        let response_body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{case}: body is not JSON ({err}): {text}"));
        let error = response_body["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{case}: error {error:?}");
    }
}

/// Builds a valid event of exactly `size` bytes.
fn event_of_size(size: usize) -> String {
    let empty = json!({"_type": "SPACE_USER", "eventType": "joinSpace", "pad": ""}).to_string();
    let padding = "a".repeat(size - empty.len());
    let body = json!({"_type": "SPACE_USER", "eventType": "joinSpace", "pad": padding}).to_string();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn body_at_size_limit_is_accepted() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let response = app.post_event(&event_of_size(MAX_BODY_BYTES)).await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn body_over_size_limit_gets_413() {
    let app = spawn_app().await;
    let response = app.post_event(&event_of_size(MAX_BODY_BYTES + 1)).await;
    assert_eq!(response.status(), 413);
    let response_body: Value = response.json().await.expect("a JSON response body");
    let error = response_body["error"].as_str().unwrap_or_default();
    assert!(error.contains("65536"), "error {error:?}");
}

#[tokio::test]
async fn chunked_body_over_size_limit_gets_413() {
    let app = spawn_app().await;
    let body = event_of_size(MAX_BODY_BYTES + 4_096);
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect to the bridge");
    let head = format!(
        "POST /webhooks/pencil HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PRODUCTION_SECRET}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let mut request = head.into_bytes();
    for chunk in body.as_bytes().chunks(8_192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The bridge may respond and close the connection before reading the
    // whole body, so a failed write is expected and the response is read.
    let _ = stream.write_all(&request).await;

    let mut response = Vec::new();
    let mut buffer = [0_u8; 4_096];
    while !response.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        status_line.starts_with("HTTP/1.1 413"),
        "status line {status_line:?}"
    );
}

#[tokio::test]
async fn content_type_does_not_change_parsing() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let cases = [
        (
            "mixed-case JSON with charset",
            Some("Application/JSON; charset=utf-8"),
        ),
        ("text/plain", Some("text/plain")),
        ("no Content-Type", None),
    ];
    for (case, content_type) in cases {
        let response = app
            .post_with_content_type(&unique_event(case), content_type)
            .await;
        assert_eq!(response.status(), 202, "{case}");
    }
}

#[tokio::test]
async fn unknown_event_type_is_routed_to_generic() {
    let generic = r#"
[[routes]]
name = "other-events"
unless = { eventType = ["RECORDING_AVAILABLE", "TRANSCRIPT_AVAILABLE", "SESSION_ENDED", "joinSpace", "leaveSpace", "hideTab", "unhideTab"] }
template = "generic"
to = ["slack", "discord", "email"]
"#;
    let app = spawn_app_with(AppOptions {
        routes: Some(format!("{DEFAULT_ROUTES}{generic}")),
        ..AppOptions::default()
    })
    .await;
    app.accept_everything().await;
    let event = json!({
        "_type": "SPACE_WHITEBOARD",
        "eventType": "whiteboardExported",
        "spaceId": "space-generic",
        "timestamp": 1733846412318_i64,
    });
    let response = app.post_event(&event.to_string()).await;
    assert_eq!(response.status(), 202);
    let response_body: Value = response.json().await.expect("a JSON response body");
    assert_eq!(response_body["deliveries"], 3, "{response_body}");

    let requests = wait_for_requests(&app.slack, 1, DELIVERY_TIMEOUT).await;
    let text = json_body(&requests[0])["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("whiteboardExported"), "Slack text {text:?}");
    assert!(text.contains("SPACE_WHITEBOARD"), "Slack text {text:?}");
}

#[tokio::test]
async fn repeated_event_gets_duplicate_status() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let body = sample("RECORDING_AVAILABLE.json");
    let first = app.post_event(&body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("a JSON response body");

    let second = app.post_event(&body).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("a JSON response body");
    assert_eq!(second["status"], "duplicate", "{second}");
    assert_eq!(second["event_id"], first["event_id"]);
}

#[tokio::test]
async fn reordered_event_gets_duplicate_status() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let body = sample("RECORDING_AVAILABLE.json");
    let first = app.post_event(&body).await;
    assert_eq!(first.status(), 202);

    let parsed: Map<String, Value> = serde_json::from_str(&body).expect("sample is an object");
    let second = app.post_event(&reordered(&parsed)).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("a JSON response body");
    assert_eq!(second["status"], "duplicate", "{second}");
}

#[tokio::test]
async fn duplicates_send_one_request_per_platform() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let body = sample("RECORDING_AVAILABLE.json");
    let parsed: Map<String, Value> = serde_json::from_str(&body).expect("sample is an object");
    for text in [body.clone(), body.clone(), reordered(&parsed)] {
        app.post_event(&text).await;
    }
    wait_for_requests(&app.slack, 1, DELIVERY_TIMEOUT).await;
    wait_for_requests(&app.discord, 1, DELIVERY_TIMEOUT).await;
    wait_for_requests(&app.email, 1, DELIVERY_TIMEOUT).await;

    assert_eq!(requests_after(&app.slack, SETTLE).await.len(), 1, "Slack");
    assert_eq!(
        requests_after(&app.discord, Duration::ZERO).await.len(),
        1,
        "Discord"
    );
    assert_eq!(
        requests_after(&app.email, Duration::ZERO).await.len(),
        1,
        "email"
    );
}

#[tokio::test]
async fn health_endpoints_return_200() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .expect("the bridge responds");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn metrics_count_received_events() {
    let app = spawn_app().await;
    app.accept_everything().await;
    app.post_event(&sample("joinSpace.json")).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .expect("the bridge responds");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("metrics text");
    assert!(
        text.contains("pencil_bridge_events_received_total"),
        "metrics:\n{text}"
    );
}
