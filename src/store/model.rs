//! Rows of the store: events, deliveries and attempts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// State of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Due now, never tried or released.
    Pending,
    /// Waiting for its next attempt after a failure or a rate limit.
    Scheduled,
    Delivered,
    /// Given up: a permanent error, `max_attempts` or `max_age`.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, for the `deliveries list` table.
        f.pad(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pending" => Ok(Self::Pending),
            "scheduled" => Ok(Self::Scheduled),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(format!(
                "unknown status {other:?}; use pending, scheduled, delivered or dead"
            )),
        }
    }
}

/// An accepted event with the deliveries its routes produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub event_type: String,
    pub environment: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery to store. `body` is `Err(reason)` when rendering failed: the
/// delivery is stored dead with that reason instead of being sent.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub route: String,
    pub destination: String,
    pub body: Result<String, String>,
}

/// Result of storing an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Accepted {
        deliveries: usize,
    },
    /// An event with the same id is already stored; nothing was added.
    Duplicate,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub route: String,
    pub destination: String,
    pub body: String,
    /// Sent as `Idempotency-Key` on every attempt of this delivery.
    pub idempotency_key: String,
    pub status: Status,
    /// Requests made, rate-limited ones included.
    pub attempts: u32,
    /// Failed attempts that count toward `delivery.max_attempts`.
    pub failures: u32,
    pub created_at: DateTime<Utc>,
    /// Start of the `delivery.max_age` window: creation, or the last
    /// manual retry.
    pub age_from: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// One request made for a delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// `delivered`, `retry`, `rate_limited`, `permanent` or `gone`.
    pub outcome: String,
    pub error: Option<String>,
}

/// Next state of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    /// Try again at `at`; `failed` adds one to `failures`.
    Retry {
        at: DateTime<Utc>,
        failed: bool,
        error: String,
    },
    Dead {
        error: String,
    },
}

/// A delivery with its event and every attempt, for `deliveries show`.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub event_body: Option<String>,
    pub environment: Option<String>,
    pub attempts: Vec<Attempt>,
}

/// Filter of `deliveries list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub destination: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// Queue figures of one destination, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub destination: String,
    /// Pending and scheduled deliveries.
    pub waiting: u64,
    pub oldest_waiting: Option<DateTime<Utc>>,
    pub dead: u64,
}
