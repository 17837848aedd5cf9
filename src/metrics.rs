//! Prometheus metrics, named `pencil_bridge_…` with base units.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::QueueStats;

/// Event types that get their own label value; others count as `other`, so
/// a sender cannot grow the label set without bound.
const KNOWN_EVENT_TYPES: &[&str] = &[
    "joinSpace",
    "leaveSpace",
    "hideTab",
    "unhideTab",
    "SESSION_ENDED",
    "RECORDING_AVAILABLE",
    "TRANSCRIPT_AVAILABLE",
];
const KNOWN_TYPES: &[&str] = &["SPACE_USER", "SPACE_SESSION", "SPACE_RECORDING"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    r#type: String,
    event_type: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    destination: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    deliveries: Family<OutcomeLabels, Counter>,
    attempt_seconds: Family<DestinationLabels, Histogram>,
    queue_depth: Family<DestinationLabels, Gauge>,
    oldest_age: Family<DestinationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    dead_letters: Family<DestinationLabels, Gauge>,
    healthy: Family<DestinationLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    /// Serializes scrapes, because each one clears and refills the gauges.
    encoding: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pencil_bridge");
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_received",
            "Webhook events received, by result",
            events.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by destination and outcome",
            deliveries.clone(),
        );
        let attempt_seconds = Family::<DestinationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "delivery_attempt_duration_seconds",
            "Duration of one request to a destination",
            attempt_seconds.clone(),
        );
        let queue_depth = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting to be sent",
            queue_depth.clone(),
        );
        let oldest_age =
            Family::<DestinationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest waiting delivery",
            oldest_age.clone(),
        );
        let dead_letters = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Dead deliveries kept in the store",
            dead_letters.clone(),
        );
        let healthy = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_healthy",
            "1 while a destination accepts messages, 0 after it responded that the webhook is gone",
            healthy.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        Self {
            registry,
            events,
            deliveries,
            attempt_seconds,
            queue_depth,
            oldest_age,
            dead_letters,
            healthy,
            reloads,
            encoding: std::sync::Mutex::new(()),
        }
    }

    /// Counts a received event; `result` is `accepted`, `duplicate`,
    /// `rejected` or `error`.
    pub fn event_received(&self, kind: &str, event_type: &str, result: &str) {
        let known = |value: &str, list: &[&str]| {
            if list.contains(&value) {
                value.to_owned()
            } else {
                "other".to_owned()
            }
        };
        self.events
            .get_or_create(&EventLabels {
                r#type: known(kind, KNOWN_TYPES),
                event_type: known(event_type, KNOWN_EVENT_TYPES),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn attempt_finished(&self, destination: &str, outcome: &str, duration: Duration) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                destination: destination.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    pub fn set_healthy(&self, destination: &str, healthy: bool) {
        self.healthy
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .set(i64::from(healthy));
    }

    /// Drops the series of a destination that a reload removed.
    pub fn forget_destination(&self, destination: &str) {
        let labels = DestinationLabels {
            destination: destination.to_owned(),
        };
        self.healthy.remove(&labels);
        self.attempt_seconds.remove(&labels);
    }

    pub fn reloaded(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Encodes every metric, with the queue gauges set from `stats`;
    /// configured destinations without waiting deliveries read 0.
    pub fn encode(&self, destinations: &BTreeSet<String>, stats: &[QueueStats]) -> String {
        let _scrape = self
            .encoding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = chrono::Utc::now();
        // Destinations removed by a reload must not keep reporting.
        self.queue_depth.clear();
        self.dead_letters.clear();
        self.oldest_age.clear();
        for destination in destinations {
            let labels = DestinationLabels {
                destination: destination.clone(),
            };
            let found = stats.iter().find(|stat| &stat.destination == destination);
            let stat = found.cloned().unwrap_or_default();
            self.queue_depth
                .get_or_create(&labels)
                .set(stat.waiting as i64);
            self.dead_letters
                .get_or_create(&labels)
                .set(stat.dead as i64);
            let age = stat.oldest_waiting.map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.oldest_age.get_or_create(&labels).set(age);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
