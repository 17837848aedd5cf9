//! The durable store of events and deliveries, behind one interface.

mod model;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use model::{
    Attempt, Delivery, DeliveryDetail, Inserted, ListFilter, NewDelivery, NewEvent, Next,
    QueueStats, Status,
};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store is shutting down")]
    Closed,
}

/// Storage of events and deliveries. Routing and delivery code use only
/// this trait, so another database can back it.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores an event and its deliveries in one transaction, or reports a
    /// duplicate and stores nothing.
    async fn insert_event(&self, event: NewEvent) -> Result<Inserted, StoreError>;

    /// Leases the oldest due delivery of `destination` for `lease`. A lease
    /// that runs out (its process died) makes the delivery due again.
    async fn claim(
        &self,
        destination: &str,
        lease: Duration,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Records an attempt and moves the delivery on, releasing its lease.
    async fn finish_attempt(&self, id: i64, attempt: Attempt, next: Next)
        -> Result<(), StoreError>;

    /// Gives leased deliveries back without an attempt (at shutdown).
    async fn release(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Gives back every lease; for a single-process store at start-up.
    async fn release_all(&self) -> Result<u64, StoreError>;

    /// When the next delivery of `destination` falls due, if any waits.
    async fn next_due(&self, destination: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, StoreError>;

    async fn get(&self, id: i64) -> Result<Option<DeliveryDetail>, StoreError>;

    /// Makes one dead or scheduled delivery due now, with a new
    /// `delivery.max_age` window. Returns false when the delivery does not
    /// exist, was already delivered, or has no body.
    async fn retry(&self, id: i64) -> Result<bool, StoreError>;

    /// Replaces the body of an undelivered delivery, after its message was
    /// rendered again. Returns false when no such delivery exists.
    async fn set_body(&self, id: i64, body: &str) -> Result<bool, StoreError>;

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError>;

    /// Deletes delivered deliveries, and events without any other
    /// delivery, older than `before`. Returns the number of rows removed.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Opens the store that `url` names.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(url).await?))
}
