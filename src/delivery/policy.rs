//! Retry policy: after an attempt, a delivery is delivered, retried at a computed time, or dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::config::DeliveryConfig;
use crate::destinations::Outcome;
use crate::store::{Delivery, Next};

/// Decides the next state of `delivery` after an attempt ended in `outcome`.
pub fn next(
    outcome: &Outcome,
    delivery: &Delivery,
    config: &DeliveryConfig,
    now: DateTime<Utc>,
) -> Next {
    match outcome {
        Outcome::Delivered { .. } => Next::Delivered,
        Outcome::Permanent { error, .. } => Next::Dead {
            error: error.clone(),
        },
        // The delivery waits, uncounted, until the destination is fixed.
        Outcome::Gone { error, .. } => Next::Retry {
            at: now,
            failed: false,
            error: error.clone(),
        },
        Outcome::RateLimited { error, after, .. } => schedule(
            delivery,
            config,
            now + chrono_duration(*after),
            false,
            error,
        ),
        Outcome::Retry { error, after, .. } => {
            let failures = delivery.failures + 1;
            if failures >= config.max_attempts {
                return Next::Dead {
                    error: format!("{error} (gave up after {failures} failed attempts)"),
                };
            }
            let wait = after.unwrap_or_else(|| backoff(failures, config));
            schedule(delivery, config, now + chrono_duration(wait), true, error)
        }
    }
}

fn schedule(
    delivery: &Delivery,
    config: &DeliveryConfig,
    at: DateTime<Utc>,
    failed: bool,
    error: &str,
) -> Next {
    if at - delivery.age_from > chrono_duration(config.max_age) {
        return Next::Dead {
            error: format!(
                "{error} (the next attempt would be later than delivery.max_age = {})",
                humantime::format_duration(config.max_age)
            ),
        };
    }
    Next::Retry {
        at,
        failed,
        error: error.to_owned(),
    }
}

/// True when a delivery is older than `delivery.max_age` and must not be sent.
pub fn expired(delivery: &Delivery, config: &DeliveryConfig, now: DateTime<Utc>) -> bool {
    now - delivery.age_from > chrono_duration(config.max_age)
}

/// Exponential backoff with jitter: the wait after the `failures`-th failure
/// doubles each time up to `max_backoff`, and a random half of it is
/// dropped so that many deliveries that failed together do not retry
/// together.
pub fn backoff(failures: u32, config: &DeliveryConfig) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = config
        .initial_backoff
        .saturating_mul(1 << exponent)
        .min(config.max_backoff);
    let half = base / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;

    fn delivery(failures: u32) -> Delivery {
        Delivery {
            id: 1,
            event_id: "e".into(),
            route: "r".into(),
            destination: "d".into(),
            body: "{}".into(),
            idempotency_key: "k".into(),
            status: Status::Pending,
            attempts: failures,
            failures,
            created_at: Utc::now(),
            age_from: Utc::now(),
            next_attempt_at: Utc::now(),
            last_error: None,
        }
    }

    fn retry() -> Outcome {
        Outcome::Retry {
            status: Some(503),
            error: "HTTP 503".into(),
            after: None,
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let config = DeliveryConfig::default();
        for failures in 1..=20 {
            let base =
                (config.initial_backoff * 2u32.pow((failures - 1).min(20))).min(config.max_backoff);
            let wait = backoff(failures, &config);
            assert!(
                wait >= base / 2 && wait <= base,
                "{failures}: {wait:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn last_allowed_failure_is_dead() {
        let config = DeliveryConfig::default();
        let next = next(
            &retry(),
            &delivery(config.max_attempts - 1),
            &config,
            Utc::now(),
        );
        assert!(matches!(next, Next::Dead { error } if error.contains("gave up after 12")));
    }

    #[test]
    fn rate_limit_does_not_count_as_failure() {
        let config = DeliveryConfig::default();
        let outcome = Outcome::RateLimited {
            error: "HTTP 429".into(),
            after: Duration::from_secs(2),
            global: false,
        };
        let next = next(&outcome, &delivery(3), &config, Utc::now());
        assert!(matches!(next, Next::Retry { failed: false, .. }));
    }

    #[test]
    fn retry_past_max_age_is_dead() {
        let config = DeliveryConfig {
            max_age: Duration::from_secs(60),
            ..Default::default()
        };
        let outcome = Outcome::Retry {
            status: Some(503),
            error: "HTTP 503".into(),
            after: Some(Duration::from_secs(120)),
        };
        let next = next(&outcome, &delivery(0), &config, Utc::now());
        assert!(matches!(next, Next::Dead { error } if error.contains("max_age")));
    }
}
