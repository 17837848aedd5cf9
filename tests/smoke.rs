mod common;

use std::time::Duration;

use common::{sample, spawn_app, wait_for_requests};

#[tokio::test]
async fn recording_reaches_all_three_platforms() {
    let app = spawn_app().await;
    app.accept_everything().await;
    let response = app.post_event(&sample("RECORDING_AVAILABLE.json")).await;
    assert_eq!(response.status(), 202);
    wait_for_requests(&app.slack, 1, Duration::from_secs(5)).await;
    wait_for_requests(&app.discord, 1, Duration::from_secs(5)).await;
    let emails = wait_for_requests(&app.email, 1, Duration::from_secs(5)).await;
    let body: serde_json::Value = serde_json::from_slice(&emails[0].body).unwrap();
    assert_eq!(body["to"], serde_json::json!(["tutors@example.org"]));
}
