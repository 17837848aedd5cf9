//! `render`: show which routes an event matches and the exact body per
//! destination, with secrets redacted. Sends nothing.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::config::redact_url;
use crate::event::Event;
use crate::runtime::Runtime;

pub fn run(config_path: &Path, event_path: &Path, environment: Option<&str>) -> anyhow::Result<()> {
    let runtime = Runtime::load(config_path)?;
    let body = std::fs::read(event_path)
        .with_context(|| format!("cannot read event file {}", event_path.display()))?;
    let event = Event::parse(&body)
        .with_context(|| format!("{} is not a Pencil event", event_path.display()))?;
    let environment = environment
        .or_else(|| {
            runtime
                .config
                .secrets
                .first()
                .map(|secret| secret.environment.as_str())
        })
        .unwrap_or("production");

    let planned = runtime.plan(&event, environment, Utc::now());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "event {} ({} / {}), environment {environment}",
        event.id, event.kind, event.event_type
    )?;
    if planned.is_empty() {
        writeln!(out, "no route matches this event; nothing would be sent")?;
        return Ok(());
    }
    for delivery in planned {
        let settings = &runtime.config.destinations[&delivery.destination];
        let target = settings
            .url
            .as_ref()
            .map(|url| redact_url(url.expose()))
            .unwrap_or_else(|| "standard output".to_owned());
        writeln!(out)?;
        writeln!(
            out,
            "route {} -> destination {} ({}, {target})",
            delivery.route, delivery.destination, delivery.kind
        )?;
        match delivery.body {
            Ok(body) => writeln!(out, "{}", pretty(&body))?,
            Err(reason) => writeln!(out, "NOT SENT: {reason}")?,
        }
    }
    Ok(())
}

/// Pretty-prints a JSON body; a log line is shown as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| body.to_owned())
}
