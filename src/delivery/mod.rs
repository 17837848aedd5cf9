//! Delivery: a worker per destination sends stored deliveries, retries
//! failures and respects each platform's rate limits.

mod limiter;
pub mod policy;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{DeliveryConfig, DestinationKind, DestinationSettings};
use crate::destinations::http_client;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::Store;
use limiter::{Limiter, SharedPause};
use worker::{AttemptContext, Worker};

struct WorkerHandle {
    /// Settings the worker was built from, compared on reload.
    settings: DestinationSettings,
    delivery: DeliveryConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
    abort: CancellationToken,
    /// Set by a worker whose webhook is gone; a reload replaces it.
    gone: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Runs the destination workers and wakes them when work is stored.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    discord_pause: SharedPause,
    workers: Mutex<HashMap<String, WorkerHandle>>,
}

/// Default messages per second and burst of each kind: Slack allows about
/// one message a second per webhook with short bursts; Discord about five
/// per two seconds per webhook (community figure, the headers rule).
fn default_rate(kind: DestinationKind) -> (Option<f64>, u32) {
    match kind {
        DestinationKind::Slack => (Some(1.0), 3),
        DestinationKind::Discord => (Some(2.5), 5),
        _ => (None, 1),
    }
}

/// Default attempts in flight: 1 keeps chat messages in arrival order.
fn default_concurrency(kind: DestinationKind) -> usize {
    match kind {
        DestinationKind::Email | DestinationKind::Webhook => 4,
        _ => 1,
    }
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            discord_pause: SharedPause::default(),
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Brings the workers in line with `runtime`. A destination whose
    /// settings and delivery config did not change keeps its worker, with
    /// its rate-limit state, unless its webhook was gone. A changed one gets a new worker once the old
    /// worker's attempts in flight have ended (each within
    /// `delivery.timeout`), so a destination never has two workers. A
    /// removed one stops; its deliveries stay stored.
    pub async fn apply(&self, runtime: &Runtime) {
        let delivery = &runtime.config.config.delivery;
        let destinations = &runtime.config.destinations;
        let retired: Vec<WorkerHandle> = {
            let mut workers = self.workers.lock().await;
            let changed: Vec<String> = workers
                .iter()
                .filter(|(name, handle)| {
                    let same = destinations.get(*name).is_some_and(|settings| {
                        handle.settings == *settings && handle.delivery == *delivery
                    });
                    // A worker that ended on its own (a panic) is replaced too.
                    !same || handle.gone.load(Ordering::Relaxed) || handle.task.is_finished()
                })
                .map(|(name, _)| name.clone())
                .collect();
            changed
                .iter()
                .filter_map(|name| workers.remove(name))
                .collect()
        };
        for handle in &retired {
            handle.stop.cancel();
        }
        for handle in retired {
            if let Err(err) = handle.task.await {
                let destination = &handle.settings.name;
                tracing::error!(%destination, error = %err, "destination worker failed; starting a new one");
            }
            if !destinations.contains_key(&handle.settings.name) {
                self.metrics.forget_destination(&handle.settings.name);
            }
        }

        let client = http_client(delivery.timeout);
        let mut workers = self.workers.lock().await;
        for settings in destinations.values() {
            if !workers.contains_key(&settings.name) {
                let handle = self.spawn_worker(settings, delivery, client.clone());
                workers.insert(settings.name.clone(), handle);
            }
        }
    }

    fn spawn_worker(
        &self,
        settings: &DestinationSettings,
        delivery: &DeliveryConfig,
        client: reqwest::Client,
    ) -> WorkerHandle {
        let (default_rate, default_burst) = default_rate(settings.kind);
        let rate = settings.config.rate_per_second.or(default_rate);
        let burst = settings.config.burst.unwrap_or(default_burst);
        let shared =
            (settings.kind == DestinationKind::Discord).then(|| self.discord_pause.clone());
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let gone = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            context: Arc::new(AttemptContext {
                store: self.store.clone(),
                settings: settings.clone(),
                delivery: delivery.clone(),
                client,
                metrics: self.metrics.clone(),
            }),
            limiter: Limiter::new(rate, burst, shared),
            concurrency: settings
                .config
                .concurrency
                .unwrap_or_else(|| default_concurrency(settings.kind)),
            wake: wake.clone(),
            stop: stop.clone(),
            abort: abort.clone(),
            gone: gone.clone(),
        };
        WorkerHandle {
            settings: settings.clone(),
            delivery: delivery.clone(),
            wake,
            stop,
            abort,
            gone,
            task: tokio::spawn(worker.run()),
        }
    }

    /// Wakes the worker of `destination` because a delivery was stored.
    pub async fn wake(&self, destination: &str) {
        if let Some(handle) = self.workers.lock().await.get(destination) {
            handle.wake.notify_one();
        }
    }

    /// Stops every worker. Attempts in flight may finish until `deadline`;
    /// the ones still running then are cut short and stay stored for the
    /// next start.
    pub async fn stop(&self, deadline: Instant) {
        let handles: Vec<WorkerHandle> = self
            .workers
            .lock()
            .await
            .drain()
            .map(|(_, handle)| handle)
            .collect();
        for handle in &handles {
            handle.stop.cancel();
        }
        let mut unfinished = Vec::new();
        for mut handle in handles {
            if tokio::time::timeout_at(deadline, &mut handle.task)
                .await
                .is_err()
            {
                unfinished.push(handle);
            }
        }
        for handle in &unfinished {
            handle.abort.cancel();
        }
        for handle in unfinished {
            let _ = handle.task.await;
        }
    }
}
