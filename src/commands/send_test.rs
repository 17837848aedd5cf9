//! `send-test`: render one message for a destination and deliver it now.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::Utc;
use serde_json::{Map, Value};

use crate::config::RouteConfig;
use crate::context::event_context;
use crate::destinations::{self, AttemptResult, Outcome, Request};
use crate::event::Event;
use crate::routing::{Route, Router};
use crate::runtime::Runtime;
use crate::samples::SAMPLES;

/// Sample sent when no event file is given.
const DEFAULT_SAMPLE: &str = "RECORDING_AVAILABLE.json";

/// Sends one message to `destination` and prints the platform's response.
/// Returns true when the destination accepted it.
pub async fn run(
    config_path: &Path,
    destination: &str,
    event_path: Option<&Path>,
) -> anyhow::Result<bool> {
    let runtime = Runtime::load(config_path)?;
    let Some(settings) = runtime.config.destinations.get(destination) else {
        let known: Vec<&str> = runtime
            .config
            .destinations
            .keys()
            .map(String::as_str)
            .collect();
        bail!(
            "unknown destination {destination:?}; configured: {}",
            known.join(", ")
        );
    };
    let event = read_event(event_path)?;
    let environment = runtime
        .config
        .secrets
        .first()
        .map_or("production", |secret| secret.environment.as_str());
    let context = event_context(&event, environment, Utc::now(), &runtime.directory);
    let route = choose_route(&runtime, &event, &context, destination);
    let body = runtime
        .render(&route, settings, &context)
        .map_err(|reason| anyhow::anyhow!("cannot render the message: {reason}"))?;

    let client = destinations::http_client(runtime.config.config.delivery.timeout);
    let key = format!("send-test-{}", Utc::now().timestamp_millis());
    let request = Request {
        event_id: &event.id,
        idempotency_key: &key,
        body: &body,
    };
    let result = destinations::send(&client, settings, request).await;
    println!(
        "route {} template {} -> {destination}",
        route.name, route.template
    );
    print_result(&result);
    Ok(matches!(result.outcome, Outcome::Delivered { .. }))
}

/// Reads the event file, or the built-in recording sample without one.
fn read_event(event_path: Option<&Path>) -> anyhow::Result<Event> {
    let body = match event_path {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read event file {}", path.display()))?,
        None => SAMPLES
            .iter()
            .find(|(name, _)| *name == DEFAULT_SAMPLE)
            .map(|(_, body)| body.as_bytes().to_vec())
            .expect("the recording sample is built in"),
    };
    Event::parse(&body).context("the event file is not a Pencil event")
}

/// Picks the route whose template is used: the first that matches the
/// event and sends to `destination`, else a route with the `generic` template.
fn choose_route(
    runtime: &Runtime,
    event: &Event,
    context: &Map<String, Value>,
    destination: &str,
) -> Route {
    let matching = runtime
        .router
        .matching(&event.event_type, context)
        .into_iter()
        .find(|route| route.to.iter().any(|name| name == destination));
    if let Some(route) = matching {
        return route.clone();
    }
    let config = RouteConfig {
        name: "send-test".to_owned(),
        when: Default::default(),
        unless: Default::default(),
        template: "generic".to_owned(),
        to: vec![destination.to_owned()],
        stop: false,
    };
    Router::new(&[config]).routes()[0].clone()
}

fn print_result(result: &AttemptResult) {
    match &result.outcome {
        Outcome::Delivered { status } => println!(
            "delivered: HTTP {status} in {} ms",
            result.duration.as_millis()
        ),
        Outcome::Retry { error, .. } => println!("failed, would be retried: {error}"),
        Outcome::RateLimited { error, after, .. } => {
            println!("rate limited, retry after {after:?}: {error}")
        }
        Outcome::Permanent { error, .. } => println!("rejected: {error}"),
        Outcome::Gone { error, .. } => println!("the webhook is gone: {error}"),
    }
}
