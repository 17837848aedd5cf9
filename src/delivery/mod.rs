//! Delivery: a worker per destination sends stored deliveries, retries
//! failures and respects each platform's rate limits.

mod limiter;
pub mod policy;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{DestinationKind, DestinationSettings};
use crate::destinations::http_client;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::Store;
use limiter::{Limiter, SharedPause};
use worker::{AttemptContext, Worker};

struct WorkerHandle {
    wake: Arc<Notify>,
    stop: CancellationToken,
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

    /// Starts one worker per destination of `runtime`.
    pub async fn start(&self, runtime: &Runtime) {
        let config = &runtime.config;
        let client = http_client(config.config.delivery.timeout);
        let grace = config.config.server.shutdown_grace;
        let mut workers = self.workers.lock().await;
        for settings in config.destinations.values() {
            let handle = self.spawn_worker(settings, runtime, client.clone(), grace);
            workers.insert(settings.name.clone(), handle);
        }
    }

    fn spawn_worker(
        &self,
        settings: &DestinationSettings,
        runtime: &Runtime,
        client: reqwest::Client,
        grace: Duration,
    ) -> WorkerHandle {
        let (default_rate, default_burst) = default_rate(settings.kind);
        let rate = settings.config.rate_per_second.or(default_rate);
        let burst = settings.config.burst.unwrap_or(default_burst);
        let shared =
            (settings.kind == DestinationKind::Discord).then(|| self.discord_pause.clone());
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let worker = Worker {
            context: Arc::new(AttemptContext {
                store: self.store.clone(),
                settings: settings.clone(),
                delivery: runtime.config.config.delivery.clone(),
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
            grace,
        };
        WorkerHandle {
            wake,
            stop,
            task: tokio::spawn(worker.run()),
        }
    }

    /// Wakes the worker of `destination` because a delivery was stored.
    pub async fn wake(&self, destination: &str) {
        if let Some(handle) = self.workers.lock().await.get(destination) {
            handle.wake.notify_one();
        }
    }

    /// Stops every worker: in-flight attempts get their grace period, the
    /// rest stays stored.
    pub async fn stop(&self) {
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
        for handle in handles {
            let _ = handle.task.await;
        }
    }

    /// Replaces every worker with one built from `runtime`.
    pub async fn restart(&self, runtime: &Runtime) {
        self.stop().await;
        self.start(runtime).await;
    }
}
