//! The embedded SQLite store (WAL mode). Concurrent ingests share one
//! transaction: a writer task commits whatever requests are waiting at once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{
    Attempt, Delivery, DeliveryDetail, Inserted, ListFilter, NewEvent, Next, QueueStats, Status,
    Store, StoreError,
};

/// Events committed in one transaction at most.
const MAX_BATCH: usize = 256;
/// Waiting inserts before callers wait for room.
const INSERT_QUEUE: usize = 1024;

type InsertReply = oneshot::Sender<Result<Inserted, StoreError>>;

pub struct SqliteStore {
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections for queries that only read.
    reader: SqlitePool,
    inserts: mpsc::Sender<(NewEvent, InsertReply)>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database that `url` names, e.g.
    /// `sqlite://pencil-bridge.db`, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Ingest commits switch to FULL (see `insert_batch`). Claims and
            // attempt records stay NORMAL: a process crash keeps them, and a
            // power loss can roll back only those after the last ingest,
            // which makes a delivery due again, so it is sent at least once.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);

        // SQLite lets one connection write at a time, and a connection that
        // finds the lock taken sleeps in steps of up to 100 ms. One writer
        // connection makes writes queue in the pool instead, without sleeps.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.read_only(true))
            .await?;

        let (inserts, queue) = mpsc::channel(INSERT_QUEUE);
        tokio::spawn(write_batches(writer.clone(), queue));
        Ok(Self {
            writer,
            reader,
            inserts,
        })
    }
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(value: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(value).single().unwrap_or_default()
}

/// Derives the key a destination can use to drop a repeated request: the same for
/// every attempt of a delivery and for every replica that might send it.
fn idempotency_key(event_id: &str, route: &str, destination: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}\n{route}\n{destination}"));
    hex::encode(&digest[..16])
}

/// Commits waiting inserts together until every sender is gone.
async fn write_batches(pool: SqlitePool, mut queue: mpsc::Receiver<(NewEvent, InsertReply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<&NewEvent> = batch.iter().map(|(event, _)| event).collect();
        match insert_batch(&pool, &events).await {
            Ok(results) => {
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, events = batch.len(), "batched insert failed; inserting one by one");
                for (event, reply) in batch.drain(..) {
                    let result = insert_batch(&pool, &[&event])
                        .await
                        .map(|mut results| results.remove(0));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

async fn insert_batch(
    pool: &SqlitePool,
    events: &[&NewEvent],
) -> Result<Vec<Inserted>, StoreError> {
    let mut connection = pool.acquire().await?;
    // This commit must reach the disk before `202` goes out. The WAL sync
    // it makes also covers the claims and attempt records committed before.
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *connection)
        .await?;
    let results = insert_events(&mut connection, events).await;
    sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&mut *connection)
        .await?;
    results
}

async fn insert_events(
    connection: &mut sqlx::SqliteConnection,
    events: &[&NewEvent],
) -> Result<Vec<Inserted>, StoreError> {
    let mut tx = sqlx::Connection::begin(connection).await?;
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        let inserted = sqlx::query(
            "INSERT INTO events (id, type, event_type, environment, body, received_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(&event.event_type)
        .bind(&event.environment)
        .bind(&event.body)
        .bind(millis(event.received_at))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            results.push(Inserted::Duplicate);
            continue;
        }
        let now = millis(event.received_at);
        for delivery in &event.deliveries {
            let (status, body, error) = match &delivery.body {
                Ok(body) => (Status::Pending, body.as_str(), None),
                Err(reason) => (Status::Dead, "", Some(reason.as_str())),
            };
            sqlx::query(
                "INSERT INTO deliveries (event_id, route, destination, body, idempotency_key,
                     status, created_at, age_from, next_attempt_at, last_error, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&event.id)
            .bind(&delivery.route)
            .bind(&delivery.destination)
            .bind(body)
            .bind(idempotency_key(
                &event.id,
                &delivery.route,
                &delivery.destination,
            ))
            .bind(status.as_str())
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        results.push(Inserted::Accepted {
            deliveries: event.deliveries.len(),
        });
    }
    tx.commit().await?;
    Ok(results)
}

const DELIVERY_COLUMNS: &str = "id, event_id, route, destination, body, idempotency_key, status,
    attempts, failures, created_at, COALESCE(age_from, created_at) AS age_from, next_attempt_at,
    last_error";

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        route: row.try_get("route")?,
        destination: row.try_get("destination")?,
        body: row.try_get("body")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: status
            .parse()
            .map_err(|err: String| sqlx::Error::Decode(err.into()))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        failures: row.try_get::<i64, _>("failures")? as u32,
        created_at: from_millis(row.try_get("created_at")?),
        age_from: from_millis(row.try_get("age_from")?),
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_event(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inserts
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(
        &self,
        destination: &str,
        lease: Duration,
    ) -> Result<Option<Delivery>, StoreError> {
        let now = millis(Utc::now());
        let lease_until = now + lease.as_millis() as i64;
        let row = sqlx::query(&format!(
            "UPDATE deliveries SET lease_until = ?, updated_at = ?
             WHERE id = (
                 SELECT id FROM deliveries
                 WHERE destination = ? AND status IN ('pending', 'scheduled')
                   AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
                 ORDER BY id LIMIT 1)
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(lease_until)
        .bind(now)
        .bind(destination)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.as_ref().map(delivery_from_row).transpose()?)
    }

    async fn finish_attempt(
        &self,
        id: i64,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        let now = millis(Utc::now());
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, outcome, error)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(millis(attempt.started_at))
        .bind(attempt.duration_ms as i64)
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.outcome)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await?;

        let (status, next_at, failed, error) = match &next {
            Next::Delivered => (Status::Delivered, now, 0, None),
            Next::Retry { at, failed, error } => (
                Status::Scheduled,
                millis(*at),
                i64::from(*failed),
                Some(error.as_str()),
            ),
            Next::Dead { error } => (Status::Dead, now, 1, Some(error.as_str())),
        };

        sqlx::query(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, attempts = attempts + 1,
                 failures = failures + ?, last_error = ?,
                 lease_until = NULL, updated_at = ?
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(next_at)
        .bind(failed)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE id = ?")
                .bind(id)
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    async fn release_all(&self) -> Result<u64, StoreError> {
        let done =
            sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL")
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    async fn next_due(&self, destination: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries
             WHERE destination = ? AND status IN ('pending', 'scheduled')",
        )
        .bind(destination)
        .fetch_one(&self.reader)
        .await?;
        Ok(next.map(from_millis))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR destination = ?2)
               AND (?3 IS NULL OR created_at >= ?3)
             ORDER BY CASE status WHEN 'dead' THEN 0 ELSE 1 END, id DESC LIMIT ?4"
        ))
        .bind(filter.status.map(Status::as_str))
        .bind(filter.destination.as_deref())
        .bind(filter.since.map(millis))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn get(&self, id: i64) -> Result<Option<DeliveryDetail>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let delivery = delivery_from_row(&row)?;

        let event = sqlx::query("SELECT body, environment FROM events WHERE id = ?")
            .bind(&delivery.event_id)
            .fetch_optional(&self.reader)
            .await?;

        let attempts = sqlx::query(
            "SELECT started_at, duration_ms, status, outcome, error FROM attempts
             WHERE delivery_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(Attempt {
                started_at: from_millis(row.try_get("started_at")?),
                duration_ms: row.try_get::<i64, _>("duration_ms")? as u64,
                status: row
                    .try_get::<Option<i64>, _>("status")?
                    .map(|status| status as u16),
                outcome: row.try_get("outcome")?,
                error: row.try_get("error")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(DeliveryDetail {
            delivery,
            event_body: event.as_ref().map(|row| row.get("body")),
            environment: event.as_ref().map(|row| row.get("environment")),
            attempts,
        }))
    }

    async fn retry(&self, id: i64) -> Result<bool, StoreError> {
        let now = millis(Utc::now());
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, failures = 0,
                 age_from = ?, updated_at = ?
             WHERE id = ? AND status IN ('dead', 'scheduled', 'pending') AND body != ''",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_body(&self, id: i64, body: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE deliveries SET body = ? WHERE id = ? AND status != 'delivered'")
                .bind(body)
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT destination,
                 SUM(CASE WHEN status IN ('pending', 'scheduled') THEN 1 ELSE 0 END) AS waiting,
                 MIN(CASE WHEN status IN ('pending', 'scheduled') THEN created_at END) AS oldest,
                 SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead
             FROM deliveries WHERE status != 'delivered' GROUP BY destination",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueStats {
                    destination: row.try_get("destination")?,
                    waiting: row.try_get::<i64, _>("waiting")? as u64,
                    oldest_waiting: row.try_get::<Option<i64>, _>("oldest")?.map(from_millis),
                    dead: row.try_get::<i64, _>("dead")? as u64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = millis(before);
        let mut tx = self.writer.begin().await?;
        let attempts = sqlx::query(
            "DELETE FROM attempts WHERE delivery_id IN
                 (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < ?)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let deliveries =
            sqlx::query("DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
        let events = sqlx::query(
            "DELETE FROM events WHERE received_at < ?
                 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.event_id = events.id)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempts.rows_affected() + deliveries.rows_affected() + events.rows_affected())
    }
}
