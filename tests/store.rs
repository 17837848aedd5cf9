//! The SQLite store on a real file: duplicates, leases, retries and pruning.

use std::time::Duration;

use chrono::Utc;
use pencil_bridge::store::{
    self, Attempt, Inserted, ListFilter, NewDelivery, NewEvent, Next, Status, Store,
};

async fn open() -> (tempfile::TempDir, std::sync::Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = store::open(&url).await.unwrap();
    (dir, store)
}

fn event(id: &str, received_at: chrono::DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        kind: "SPACE_RECORDING".into(),
        event_type: "RECORDING_AVAILABLE".into(),
        environment: "production".into(),
        body: "{}".into(),
        received_at,
        deliveries: vec![NewDelivery {
            route: "r".into(),
            destination: "slack".into(),
            body: Ok("{\"text\":\"hi\"}".into()),
        }],
    }
}

fn attempt() -> Attempt {
    Attempt {
        started_at: Utc::now(),
        duration_ms: 3,
        status: Some(200),
        outcome: "delivered".into(),
        error: None,
    }
}

#[tokio::test]
async fn same_event_id_is_a_duplicate() {
    let (_dir, store) = open().await;
    let first = store.insert_event(event("e1", Utc::now())).await.unwrap();
    let second = store.insert_event(event("e1", Utc::now())).await.unwrap();
    assert_eq!(first, Inserted::Accepted { deliveries: 1 });
    assert_eq!(second, Inserted::Duplicate);
    let all = store
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn concurrent_inserts_all_commit() {
    let (_dir, store) = open().await;
    let mut tasks = Vec::new();
    for index in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_event(event(&format!("e{index}"), Utc::now()))
                .await
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap(),
            Inserted::Accepted { deliveries: 1 }
        );
    }
    let all = store
        .list(&ListFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 100);
}

#[tokio::test]
async fn claimed_delivery_is_not_claimed_twice() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    let first = store.claim("slack", Duration::from_secs(60)).await.unwrap();
    let second = store.claim("slack", Duration::from_secs(60)).await.unwrap();
    assert!(first.is_some());
    assert!(second.is_none());
}

#[tokio::test]
async fn expired_lease_makes_delivery_due_again() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    store
        .claim("slack", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn release_all_frees_leases_of_a_dead_process() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    store
        .claim("slack", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.release_all().await.unwrap(), 1);
    assert!(store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn deliveries_are_claimed_in_arrival_order() {
    let (_dir, store) = open().await;
    for index in 0..5 {
        store
            .insert_event(event(&format!("e{index}"), Utc::now()))
            .await
            .unwrap();
    }
    for index in 0..5 {
        let delivery = store
            .claim("slack", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.event_id, format!("e{index}"));
    }
}

#[tokio::test]
async fn dead_delivery_can_be_retried() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    let delivery = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let dead = Next::Dead {
        error: "HTTP 400: invalid_payload".into(),
    };
    store
        .finish_attempt(delivery.id, attempt(), dead)
        .await
        .unwrap();
    let filter = ListFilter {
        status: Some(Status::Dead),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list(&filter).await.unwrap().len(), 1);

    assert!(store.retry(delivery.id).await.unwrap());
    let again = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, delivery.id);
    assert_eq!(again.failures, 0);
    let detail = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(
        detail.delivery.last_error.as_deref(),
        Some("HTTP 400: invalid_payload")
    );
}

#[tokio::test]
async fn unrendered_delivery_is_stored_dead_with_reason() {
    let (_dir, store) = open().await;
    let mut failed = event("e1", Utc::now());
    failed.deliveries[0].body = Err("the template rendered an empty message".into());
    store.insert_event(failed).await.unwrap();
    assert!(store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    let filter = ListFilter {
        status: Some(Status::Dead),
        limit: 10,
        ..Default::default()
    };
    let dead = store.list(&filter).await.unwrap();
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("the template rendered an empty message")
    );
}

#[tokio::test]
async fn prune_keeps_dead_and_recent() {
    let (_dir, store) = open().await;
    let old = Utc::now() - chrono::Duration::days(10);
    store
        .insert_event(event("delivered-old", old))
        .await
        .unwrap();
    store.insert_event(event("dead-old", old)).await.unwrap();
    let first = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_attempt(first.id, attempt(), Next::Delivered)
        .await
        .unwrap();
    let second = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_attempt(second.id, attempt(), Next::Dead { error: "x".into() })
        .await
        .unwrap();

    // Delivered just now, so its delivery is younger than the cutoff.
    let removed = store
        .prune(Utc::now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(removed, 0);
    let removed = store
        .prune(Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(removed, 3, "one attempt, one delivery, one event");

    let remaining = store
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].status, Status::Dead);
    // The dead delivery keeps its event, so a repeat is still a duplicate.
    assert_eq!(
        store
            .insert_event(event("dead-old", Utc::now()))
            .await
            .unwrap(),
        Inserted::Duplicate
    );
}

#[tokio::test]
async fn delivery_clears_earlier_error() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    let delivery = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let retry = Next::Retry {
        at: Utc::now(),
        failed: true,
        error: "HTTP 503".into(),
    };
    store
        .finish_attempt(delivery.id, attempt(), retry)
        .await
        .unwrap();
    let again = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.last_error.as_deref(), Some("HTTP 503"));

    store
        .finish_attempt(again.id, attempt(), Next::Delivered)
        .await
        .unwrap();
    let detail = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(detail.delivery.status, Status::Delivered);
    assert_eq!(detail.delivery.last_error, None);
    assert_eq!(detail.attempts.len(), 2);
}

#[tokio::test]
async fn retry_keeps_creation_time_and_restarts_age() {
    let (_dir, store) = open().await;
    let old = Utc::now() - chrono::Duration::days(2);
    store.insert_event(event("e1", old)).await.unwrap();
    let delivery = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let dead = Next::Dead {
        error: "too old".into(),
    };
    store
        .finish_attempt(delivery.id, attempt(), dead)
        .await
        .unwrap();

    assert!(store.retry(delivery.id).await.unwrap());
    let again = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.created_at.timestamp_millis(), old.timestamp_millis());
    assert!(Utc::now() - again.age_from < chrono::Duration::seconds(5));
}

#[tokio::test]
async fn set_body_replaces_undelivered_body_only() {
    let (_dir, store) = open().await;
    store.insert_event(event("e1", Utc::now())).await.unwrap();
    let delivery = store
        .claim("slack", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .set_body(delivery.id, "{\"text\":\"fixed\"}")
        .await
        .unwrap());
    store
        .finish_attempt(delivery.id, attempt(), Next::Delivered)
        .await
        .unwrap();
    assert!(!store
        .set_body(delivery.id, "{\"text\":\"late\"}")
        .await
        .unwrap());
    let detail = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(detail.delivery.body, "{\"text\":\"fixed\"}");
}
