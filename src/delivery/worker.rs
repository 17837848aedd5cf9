//! One worker per destination: claims due deliveries in arrival order,
//! sends them within the destination's limits and records each attempt.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::limiter::Limiter;
use super::policy;
use crate::config::{DeliveryConfig, DestinationSettings};
use crate::destinations::{self, AttemptResult, Outcome, Request};
use crate::metrics::Metrics;
use crate::store::{Attempt, Delivery, Next, Store};

/// Maximum idle wait before the worker queries the store again, so that
/// deliveries made due by `deliveries retry` from another process start.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Wait after a store error before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Effect of a finished attempt on its destination's worker.
enum Effect {
    None,
    Pause { duration: Duration, global: bool },
    Gone,
}

/// The parts an attempt needs, shared by the worker's attempt tasks.
pub(super) struct AttemptContext {
    pub store: Arc<dyn Store>,
    pub settings: DestinationSettings,
    pub delivery: DeliveryConfig,
    pub client: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

pub(super) struct Worker {
    pub context: Arc<AttemptContext>,
    pub limiter: Limiter,
    pub concurrency: usize,
    pub wake: Arc<Notify>,
    /// Stops claiming; attempts in flight go on.
    pub stop: CancellationToken,
    /// Cuts attempts in flight short (after the shutdown grace period).
    pub abort: CancellationToken,
    /// Set once the destination responded that its webhook is gone.
    pub gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Worker {
    pub async fn run(mut self) {
        let name = self.context.settings.name.clone();
        let lease = self.context.delivery.timeout * 2 + Duration::from_secs(30);
        let in_flight_ids: Arc<Mutex<HashSet<i64>>> = Arc::default();
        let mut in_flight: JoinSet<Effect> = JoinSet::new();
        let mut gone = false;
        self.context.metrics.set_healthy(&name, true);

        while !self.stop.is_cancelled() {
            while let Some(done) = in_flight.try_join_next() {
                gone |= self.apply(done);
            }
            if gone {
                // Later deliveries stay in the store until a reload.
                self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
                self.stop.cancelled().await;
                break;
            }
            if in_flight.len() >= self.concurrency {
                tokio::select! {
                    Some(done) = in_flight.join_next() => gone |= self.apply(done),
                    () = self.stop.cancelled() => break,
                }
                continue;
            }
            if let Some(wait) = self.limiter.wait() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => gone |= self.apply(done),
                    () = self.stop.cancelled() => break,
                }
                continue;
            }
            match self.context.store.claim(&name, lease).await {
                Ok(Some(delivery)) => {
                    self.limiter.take();
                    in_flight_ids.lock().expect("ids lock").insert(delivery.id);
                    let context = self.context.clone();
                    let ids = in_flight_ids.clone();
                    in_flight.spawn(async move {
                        let id = delivery.id;
                        let effect = attempt(&context, delivery).await;
                        ids.lock().expect("ids lock").remove(&id);
                        effect
                    });
                }
                Ok(None) => {
                    let wait = self.idle_wait(&name).await;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                        Some(done) = in_flight.join_next(), if !in_flight.is_empty() => gone |= self.apply(done),
                        () = self.stop.cancelled() => break,
                    }
                }
                Err(err) => {
                    tracing::error!(destination = %name, error = %err, "cannot claim deliveries");
                    tokio::time::sleep(STORE_ERROR_PAUSE).await;
                }
            }
        }
        self.drain(in_flight, &in_flight_ids).await;
    }

    /// Lets attempts in flight finish unless `abort` fires first, then gives
    /// the unfinished ones back to the store for the next start.
    async fn drain(&self, mut in_flight: JoinSet<Effect>, ids: &Mutex<HashSet<i64>>) {
        tokio::select! {
            () = async { while in_flight.join_next().await.is_some() {} } => {}
            () = self.abort.cancelled() => {
                in_flight.abort_all();
                while in_flight.join_next().await.is_some() {}
            }
        }
        let left: Vec<i64> = ids.lock().expect("ids lock").drain().collect();
        if !left.is_empty() {
            let destination = &self.context.settings.name;
            match self.context.store.release(&left).await {
                Ok(()) => tracing::warn!(
                    %destination,
                    deliveries = left.len(),
                    "attempts cut short at shutdown; they are sent again after the next start, so a destination that had already accepted one receives it twice"
                ),
                Err(err) => {
                    tracing::error!(%destination, error = %err, "cannot release deliveries; their leases expire on their own")
                }
            }
        }
    }

    /// Applies what an attempt learned; returns true when the destination is gone.
    fn apply(&mut self, done: Result<Effect, tokio::task::JoinError>) -> bool {
        match done {
            Ok(Effect::None) => false,
            Ok(Effect::Pause { duration, global }) => {
                self.limiter.pause(duration, global);
                false
            }
            Ok(Effect::Gone) => {
                let destination = &self.context.settings.name;
                self.context.metrics.set_healthy(destination, false);
                tracing::error!(
                    %destination,
                    "destination responded that its webhook is gone; its deliveries wait in the store until its URL is fixed and the config reloaded (SIGHUP)"
                );
                true
            }
            Err(err) => {
                tracing::error!(destination = %self.context.settings.name, error = %err, "delivery attempt task failed");
                false
            }
        }
    }

    async fn idle_wait(&self, name: &str) -> Duration {
        match self.context.store.next_due(name).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), IDLE_POLL),
            _ => IDLE_POLL,
        }
    }
}

/// Sends one delivery, records the attempt and decides what comes next.
async fn attempt(context: &AttemptContext, delivery: Delivery) -> Effect {
    let span = tracing::info_span!(
        "delivery",
        delivery_id = delivery.id,
        event_id = %delivery.event_id,
        route = %delivery.route,
        destination = %context.settings.name,
        attempt = delivery.attempts + 1
    );
    send_and_record(context, delivery).instrument(span).await
}

async fn send_and_record(context: &AttemptContext, delivery: Delivery) -> Effect {
    let destination = context.settings.name.as_str();
    let started_at = Utc::now();
    if policy::expired(&delivery, &context.delivery, started_at) {
        expire(context, &delivery, started_at).await;
        return Effect::None;
    }

    let request = Request {
        event_id: &delivery.event_id,
        idempotency_key: &delivery.idempotency_key,
        body: &delivery.body,
    };
    let result = destinations::send(&context.client, &context.settings, request).await;
    let next = policy::next(&result.outcome, &delivery, &context.delivery, Utc::now());
    let (status, outcome_name, error) = describe(&result.outcome);
    log_result(&delivery, destination, &result.outcome, &next);

    let metric_outcome = match &next {
        Next::Dead { .. } => "dead",
        _ => outcome_name,
    };
    context
        .metrics
        .attempt_finished(destination, metric_outcome, result.duration);
    let attempt = Attempt {
        started_at,
        duration_ms: result.duration.as_millis() as u64,
        status,
        outcome: outcome_name.to_owned(),
        error,
    };
    finish(context, delivery.id, attempt, next).await;
    effect_of(&result)
}

/// Marks a delivery older than `delivery.max_age` dead without sending it.
async fn expire(context: &AttemptContext, delivery: &Delivery, started_at: DateTime<Utc>) {
    let destination = context.settings.name.as_str();
    let error = format!(
        "not sent: older than delivery.max_age = {}",
        humantime::format_duration(context.delivery.max_age)
    );
    tracing::error!(delivery_id = delivery.id, %destination, %error, "delivery is dead");
    let attempt = Attempt {
        started_at,
        duration_ms: 0,
        status: None,
        outcome: "expired".into(),
        error: Some(error.clone()),
    };
    finish(context, delivery.id, attempt, Next::Dead { error }).await;
    context
        .metrics
        .attempt_finished(destination, "dead", Duration::ZERO);
}

/// Logs a retry or a rate limit at warn and a dead letter at error. A gone
/// webhook is logged once by the worker, which stops the destination.
fn log_result(delivery: &Delivery, destination: &str, outcome: &Outcome, next: &Next) {
    let attempt = delivery.attempts + 1;
    let (status, _, error) = describe(outcome);
    let status = status.map(i64::from);
    let error = error.unwrap_or_default();
    match (next, outcome) {
        (Next::Delivered, _) => {
            tracing::debug!(delivery_id = delivery.id, %destination, "delivered")
        }
        (Next::Retry { .. }, Outcome::Gone { .. }) => {}
        (Next::Retry { at, .. }, Outcome::RateLimited { .. }) => tracing::warn!(
            delivery_id = delivery.id,
            %destination,
            attempt,
            %error,
            next_attempt = %at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "destination rate-limited the request; waiting (not counted as a failure)"
        ),
        (Next::Retry { at, .. }, _) => tracing::warn!(
            delivery_id = delivery.id,
            %destination,
            attempt,
            status,
            %error,
            next_attempt = %at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "delivery attempt failed; will retry"
        ),
        (Next::Dead { error }, _) => tracing::error!(
            delivery_id = delivery.id,
            %destination,
            attempt,
            status,
            %error,
            "delivery is dead"
        ),
    }
}

/// Returns what the worker must do about its destination after this response.
fn effect_of(result: &AttemptResult) -> Effect {
    match result.outcome {
        Outcome::Gone { .. } => Effect::Gone,
        Outcome::RateLimited { after, global, .. } => Effect::Pause {
            duration: after,
            global,
        },
        _ => match result.pause {
            Some(duration) => Effect::Pause {
                duration,
                global: false,
            },
            None => Effect::None,
        },
    }
}

/// Stores the attempt, trying a few times: if it cannot be stored, the
/// lease runs out and the delivery is sent again (at least once).
async fn finish(context: &AttemptContext, id: i64, attempt: Attempt, next: Next) {
    for wait in [100, 500, 2_000] {
        match context
            .store
            .finish_attempt(id, attempt.clone(), next.clone())
            .await
        {
            Ok(()) => return,
            Err(err) => {
                tracing::error!(delivery_id = id, error = %err, "cannot record delivery attempt; retrying");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}

fn describe(outcome: &Outcome) -> (Option<u16>, &'static str, Option<String>) {
    match outcome {
        Outcome::Delivered { status } => (Some(*status), "delivered", None),
        Outcome::Retry { status, error, .. } => (*status, "retry", Some(error.clone())),
        Outcome::RateLimited { error, .. } => (Some(429), "rate_limited", Some(error.clone())),
        Outcome::Permanent { status, error } => (Some(*status), "permanent", Some(error.clone())),
        Outcome::Gone { status, error } => (Some(*status), "gone", Some(error.clone())),
    }
}
