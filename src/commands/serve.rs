//! `serve`: run the HTTP server and the delivery workers until a signal.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::Dispatcher;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::server::{app, AppState};
use crate::store::{self, Store};

/// How often delivered deliveries and old events are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// A running bridge: the server, the workers and what stops them.
pub struct Running {
    /// The address the server listens on (useful with port 0).
    pub addr: SocketAddr,
    state: AppState,
    config_path: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Loads the config, opens the store, binds and starts serving. Nothing
/// binds unless the whole config is valid.
pub async fn start(config_path: &Path) -> anyhow::Result<Running> {
    let runtime = Runtime::load_checked(config_path)?;
    let store_url = runtime.config.config.store.url.clone();
    let store = store::open(&store_url).await.with_context(|| {
        format!(
            "cannot open store {}",
            crate::config::display_store_url(&store_url)
        )
    })?;
    let released = store.release_all().await?;
    if released > 0 {
        tracing::info!(
            deliveries = released,
            "resuming deliveries left in flight by an earlier run"
        );
    }

    let listen = runtime.config.config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen}; free the port or change server.listen")
        })?;
    let addr = listener.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let dispatcher = Arc::new(Dispatcher::new(store.clone(), metrics.clone()));
    dispatcher.apply(&runtime).await;
    warn_about_orphans(store.as_ref(), &runtime).await;
    tracing::info!(
        %addr,
        routes = runtime.router.routes().len(),
        destinations = runtime.config.destinations.len(),
        config = %config_path.display(),
        "pencil-bridge started"
    );

    let state = AppState {
        runtime: Arc::new(ArcSwap::from_pointee(runtime)),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        metrics,
    };
    let stop = CancellationToken::new();
    tokio::spawn(prune_periodically(
        store,
        state.runtime.clone(),
        stop.clone(),
    ));

    let router = app(state.clone());
    let server_stop = stop.clone();
    let loaded = state.runtime.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(server_stop.clone().cancelled_owned())
            .into_future();
        tokio::pin!(server);
        let failed = tokio::select! {
            result = &mut server => Some(result),
            () = server_stop.cancelled() => None,
        };

        // Requests in flight and delivery attempts in flight share one
        // grace period, so the process ends within it whatever clients and
        // destinations do.
        let grace = loaded.load().config.config.server.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        if let Some(result) = failed {
            dispatcher.stop(deadline).await;
            return result.context("the HTTP server failed");
        }
        let (requests, ()) = tokio::join!(
            tokio::time::timeout_at(deadline, &mut server),
            dispatcher.stop(deadline),
        );
        match requests {
            Ok(result) => result.context("the HTTP server failed")?,
            Err(_) => tracing::warn!(
                ?grace,
                "requests still open after server.shutdown_grace; closing their connections"
            ),
        }
        Ok(())
    });
    Ok(Running {
        addr,
        state,
        config_path: config_path.to_owned(),
        stop,
        task,
    })
}

impl Running {
    /// Stops accepting, finishes requests in flight, gives in-flight
    /// attempts their grace period and leaves the rest stored.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        let result = self.task.await.context("the server task panicked")?;
        tracing::info!("pencil-bridge stopped");
        result
    }

    /// Reloads config and templates. A config that fails the checks is
    /// rejected and the running one stays.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let loaded = Runtime::load_checked(&self.config_path).map_err(anyhow::Error::from);
        match loaded {
            Ok(runtime) => {
                let old = self.state.runtime.load();
                if runtime.config.config.server.listen != old.config.config.server.listen {
                    tracing::warn!(
                        "server.listen changed; the new address applies after a restart"
                    );
                }
                if runtime.config.config.store.url != old.config.config.store.url {
                    tracing::warn!(
                        "store.url changed; the server keeps the store it opened until a restart"
                    );
                }
                // New events use the new routes at once; workers follow.
                let runtime = Arc::new(runtime);
                self.state.runtime.store(runtime.clone());
                self.state.dispatcher.apply(&runtime).await;
                warn_about_orphans(self.state.store.as_ref(), &runtime).await;
                tracing::info!(
                    routes = runtime.router.routes().len(),
                    destinations = runtime.config.destinations.len(),
                    "config reloaded"
                );
                self.state.metrics.reloaded("success");
                Ok(())
            }
            Err(err) => {
                let reason = err.to_string().replace("\n  - ", "; ");
                tracing::error!(error = %reason, "config reload rejected; the running config stays");
                self.state.metrics.reloaded("failure");
                Err(err)
            }
        }
    }
}

/// Logs deliveries that wait for a destination the config no longer has:
/// they stay stored, and go out once the destination is configured again.
async fn warn_about_orphans(store: &dyn Store, runtime: &Runtime) {
    let stats = match store.queue_stats().await {
        Ok(stats) => stats,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read queue figures");
            return;
        }
    };
    for stat in stats {
        if stat.waiting > 0 && !runtime.config.destinations.contains_key(&stat.destination) {
            tracing::warn!(
                destination = %stat.destination,
                deliveries = stat.waiting,
                "deliveries wait for a destination that is not in the config; add it back to send them"
            );
        }
    }
}

/// Prunes the store every [`PRUNE_INTERVAL`], with the retention of the
/// config loaded at that moment.
async fn prune_periodically(
    store: Arc<dyn Store>,
    runtime: Arc<ArcSwap<Runtime>>,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let retention = runtime.load().config.config.store.retention;
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let before = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        match store.prune(before).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned delivered deliveries and old events"),
            Err(err) => tracing::warn!(error = %err, "cannot prune the store"),
        }
    }
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the config.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let running = start(config_path).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP received; reloading config");
                // A rejected reload is logged inside; the server goes on.
                let _ = running.reload().await;
            }
        }
    }
    tracing::info!("stopping: no new requests, finishing deliveries in flight");
    running.shutdown().await
}
