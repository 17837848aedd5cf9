//! `deliveries list|show|retry`: inspect and replay stored deliveries.

use std::io::Write;

use anyhow::{bail, Context};
use chrono::Utc;

use crate::config;
use crate::context::event_context;
use crate::event::Event;
use crate::runtime::Runtime;
use crate::store::{self, DeliveryDetail, ListFilter, Status, Store};

/// Rows `list` shows at most.
const LIST_LIMIT: u32 = 200;

async fn open_store(config_path: &std::path::Path) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let config = config::load(config_path)?;
    let url = config.store.url;
    // Opening would create an empty database, and then report that
    // nothing is stored; a missing file means the wrong config.
    if let Some(file) = config::sqlite_file(&url) {
        if !file.exists() {
            bail!(
                "no store at {}; pass the server's --config, or start the server once to create it",
                file.display()
            );
        }
    }
    store::open(&url)
        .await
        .with_context(|| format!("cannot open store {}", config::display_store_url(&url)))
}

pub async fn list(
    config_path: &std::path::Path,
    status: Option<&str>,
    destination: Option<String>,
    since: Option<&str>,
) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    let mut out = std::io::stdout().lock();
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
        writeln!(out, "no deliveries match")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>8}  {:<9}  {:<20}  {:<20}  {:>8}  {:<20}  LAST ERROR",
        "ID", "STATUS", "ROUTE", "DESTINATION", "ATTEMPTS", "NEXT ATTEMPT"
    )?;
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
        writeln!(
            out,
            "{:>8}  {:<9}  {:<20}  {:<20}  {:>8}  {:<20}  {}",
            delivery.id,
            delivery.status,
            delivery.route,
            delivery.destination,
            delivery.attempts,
            next,
            error
        )?;
    }
    Ok(())
}

pub async fn show(config_path: &std::path::Path, id: i64) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    let Some(detail) = store.get(id).await? else {
        bail!("no delivery with id {id}; `pencil-bridge deliveries list` shows the ids");
    };
    let mut out = std::io::stdout().lock();
    let delivery = &detail.delivery;
    writeln!(out, "delivery     {}", delivery.id)?;
    writeln!(out, "status       {}", delivery.status)?;
    writeln!(out, "route        {}", delivery.route)?;
    writeln!(out, "destination  {}", delivery.destination)?;
    writeln!(
        out,
        "event        {} ({})",
        delivery.event_id,
        detail.environment.as_deref().unwrap_or("?")
    )?;
    writeln!(out, "created      {}", delivery.created_at.to_rfc3339())?;
    writeln!(
        out,
        "attempts     {} ({} counted as failures)",
        delivery.attempts, delivery.failures
    )?;
    if matches!(delivery.status, Status::Pending | Status::Scheduled) {
        writeln!(
            out,
            "next attempt {}",
            delivery.next_attempt_at.to_rfc3339()
        )?;
    }
    if let Some(error) = &delivery.last_error {
        writeln!(out, "last error   {error}")?;
    }
    writeln!(
        out,
        "\nevent body:\n{}",
        detail.event_body.as_deref().unwrap_or("(pruned)")
    )?;
    writeln!(
        out,
        "\nrequest body:\n{}",
        if delivery.body.is_empty() {
            "(none: the message was not rendered)"
        } else {
            &delivery.body
        }
    )?;
    writeln!(out, "\nattempts:")?;
    if detail.attempts.is_empty() {
        writeln!(out, "  none yet")?;
    }
    for attempt in &detail.attempts {
        writeln!(
            out,
            "  {}  {:<12}  {:>4}  {:>6} ms  {}",
            attempt.started_at.to_rfc3339(),
            attempt.outcome,
            attempt
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            attempt.duration_ms,
            attempt.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Makes a delivery, or every dead one, due now. Each is rendered again
/// from its stored event with the current config and templates first, so a
/// fixed template takes effect. A delivery that cannot be rendered again
/// keeps its stored body, or stays dead when it never had one.
pub async fn retry(
    config_path: &std::path::Path,
    id: Option<i64>,
    dead: bool,
    destination: Option<&str>,
) -> anyhow::Result<()> {
    let store = open_store(config_path).await?;
    let runtime = Runtime::load(config_path)?;
    let ids = match (id, dead) {
        (Some(id), false) => {
            let Some(detail) = store.get(id).await? else {
                bail!("no delivery with id {id}; `pencil-bridge deliveries list` shows the ids");
            };
            if detail.delivery.status == Status::Delivered {
                bail!("delivery {id} was already delivered; nothing to retry");
            }
            vec![id]
        }
        (None, true) => {
            let filter = ListFilter {
                status: Some(Status::Dead),
                destination: destination.map(str::to_owned),
                since: None,
                limit: u32::MAX,
            };
            store
                .list(&filter)
                .await?
                .iter()
                .map(|delivery| delivery.id)
                .collect()
        }
        _ => bail!("give either a delivery ID or --dead"),
    };

    let mut due = 0;
    let mut unrendered = 0;
    for id in ids {
        let Some(detail) = store.get(id).await? else {
            continue;
        };
        if let Err(err) = render_again(store.as_ref(), &runtime, &detail).await {
            if detail.delivery.body.is_empty() {
                eprintln!("delivery {id} stays dead: {err:#}");
                unrendered += 1;
                continue;
            }
            eprintln!("delivery {id}: {err:#}; retrying with the stored body");
        }
        if store.retry(id).await? {
            due += 1;
        }
    }
    match due {
        1 => println!("1 delivery is due now"),
        count => println!("{count} deliveries are due now"),
    }
    if unrendered > 0 {
        bail!("{unrendered} deliveries could not be rendered and stay dead; fix their templates, then retry them again");
    }
    Ok(())
}

/// Renders a delivery's message from its stored event with the current
/// config, and stores the new body.
async fn render_again(
    store: &dyn Store,
    runtime: &Runtime,
    detail: &DeliveryDetail,
) -> anyhow::Result<()> {
    let delivery = &detail.delivery;
    let Some(event_body) = &detail.event_body else {
        bail!(
            "the event of delivery {} was pruned; it cannot be rendered again",
            delivery.id
        );
    };
    let event = Event::parse(event_body.as_bytes())?;
    let Some(route) = runtime
        .router
        .routes()
        .iter()
        .find(|route| route.name == delivery.route)
    else {
        bail!(
            "route {:?} is no longer in the config; add it back to render this delivery",
            delivery.route
        );
    };
    let Some(settings) = runtime.config.destinations.get(&delivery.destination) else {
        bail!(
            "destination {:?} is no longer in the config; add it back to render this delivery",
            delivery.destination
        );
    };
    let environment = detail.environment.as_deref().unwrap_or("production");
    let context = event_context(&event, environment, delivery.created_at, &runtime.directory);
    let body = runtime
        .render(route, settings, &context)
        .map_err(|reason| {
            anyhow::anyhow!(
                "delivery {} still cannot be rendered: {reason}",
                delivery.id
            )
        })?;
    store.set_body(delivery.id, &body).await?;
    Ok(())
}
