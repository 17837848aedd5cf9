//! `deliveries list|show|retry`: inspect and replay stored deliveries.

use anyhow::{bail, Context};
use chrono::Utc;

use crate::config::{self, redact_url};
use crate::store::{self, ListFilter, Status, Store};

/// Rows `list` shows at most.
const LIST_LIMIT: u32 = 200;

async fn open_store(config_path: &std::path::Path) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let config = config::load(config_path)?;
    let url = config.store.url;
    store::open(&url)
        .await
        .with_context(|| format!("cannot open store {}", redact_url(&url)))
}

pub async fn list(
    config_path: &std::path::Path,
    status: Option<&str>,
    destination: Option<String>,
    since: Option<&str>,
) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    let status = status
        .map(str::parse::<Status>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let since = match since {
        Some(text) => {
            let ago = humantime::parse_duration(text).with_context(|| {
                format!("invalid --since {text:?}; write it like 30m, 1h or 7d")
            })?;
            Some(Utc::now() - chrono::Duration::from_std(ago)?)
        }
        None => None,
    };
    let filter = ListFilter {
        status,
        destination,
        since,
        limit: LIST_LIMIT,
    };
    let deliveries = store.list(&filter).await?;
    if deliveries.is_empty() {
        println!("no deliveries match");
        return Ok(());
    }
    println!(
        "{:>8}  {:<9}  {:<20}  {:<20}  {:>8}  {:<20}  LAST ERROR",
        "ID", "STATUS", "ROUTE", "DESTINATION", "ATTEMPTS", "NEXT ATTEMPT"
    );
    for delivery in deliveries {
        let next = match delivery.status {
            Status::Pending | Status::Scheduled => delivery
                .next_attempt_at
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            _ => "-".to_owned(),
        };
        let error = delivery
            .last_error
            .as_deref()
            .map(|e| crate::text::truncate(e, 80))
            .unwrap_or_default();
        println!(
            "{:>8}  {:<9}  {:<20}  {:<20}  {:>8}  {:<20}  {}",
            delivery.id,
            delivery.status,
            delivery.route,
            delivery.destination,
            delivery.attempts,
            next,
            error
        );
    }
    Ok(())
}

pub async fn show(config_path: &std::path::Path, id: i64) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    let Some(detail) = store.get(id).await? else {
        bail!("no delivery with id {id}; `pencil-bridge deliveries list` shows the ids");
    };
    let delivery = &detail.delivery;
    println!("delivery     {}", delivery.id);
    println!("status       {}", delivery.status);
    println!("route        {}", delivery.route);
    println!("destination  {}", delivery.destination);
    println!(
        "event        {} ({})",
        delivery.event_id,
        detail.environment.as_deref().unwrap_or("?")
    );
    println!("created      {}", delivery.created_at.to_rfc3339());
    println!(
        "attempts     {} ({} counted as failures)",
        delivery.attempts, delivery.failures
    );
    if matches!(delivery.status, Status::Pending | Status::Scheduled) {
        println!("next attempt {}", delivery.next_attempt_at.to_rfc3339());
    }
    if let Some(error) = &delivery.last_error {
        println!("last error   {error}");
    }
    println!(
        "\nevent body:\n{}",
        detail.event_body.as_deref().unwrap_or("(pruned)")
    );
    println!(
        "\nrequest body:\n{}",
        if delivery.body.is_empty() {
            "(none: the message was not rendered)"
        } else {
            &delivery.body
        }
    );
    println!("\nattempts:");
    if detail.attempts.is_empty() {
        println!("  none yet");
    }
    for attempt in &detail.attempts {
        println!(
            "  {}  {:<12}  {:>4}  {:>6} ms  {}",
            attempt.started_at.to_rfc3339(),
            attempt.outcome,
            attempt
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            attempt.duration_ms,
            attempt.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn retry(
    config_path: &std::path::Path,
    id: Option<i64>,
    dead: bool,
    destination: Option<&str>,
) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    match (id, dead) {
        (Some(id), false) => {
            if !store.retry(id).await? {
                bail!("delivery {id} cannot be retried: it does not exist, was delivered, or has no rendered body");
            }
            println!("delivery {id} is due now");
        }
        (None, true) => {
            let count = store.retry_dead(destination).await?;
            println!("{count} dead deliveries are due now");
        }
        _ => bail!("give either a delivery ID or --dead"),
    }
    Ok(())
}
