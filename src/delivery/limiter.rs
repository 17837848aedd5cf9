//! Per-destination flow control: a token bucket plus pauses that the
//! platform requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A pause shared by every destination of one platform (Discord's global
/// rate limit).
pub type SharedPause = Arc<Mutex<Option<Instant>>>;

pub struct Limiter {
    /// Tokens added per second; `None` means no limit.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    shared: Option<SharedPause>,
}

impl Limiter {
    pub fn new(rate: Option<f64>, burst: u32, shared: Option<SharedPause>) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: Instant::now(),
            paused_until: None,
            shared,
        }
    }

    /// Returns the wait before the next request may go out, or `None` when
    /// it may go now.
    pub fn wait(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let shared = self
            .shared
            .as_ref()
            .and_then(|pause| *pause.lock().expect("pause lock"));
        let pause = [self.paused_until, shared].into_iter().flatten().max();
        if let Some(until) = pause.filter(|until| *until > now) {
            return Some(until - now);
        }
        let rate = self.rate?;
        self.tokens = (self.tokens + (now - self.refilled).as_secs_f64() * rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            None
        } else {
            let wait = (1.0 - self.tokens) / rate;
            Some(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(3600)))
        }
    }

    /// Uses one token for a request that is going out.
    pub fn take(&mut self) {
        if self.rate.is_some() {
            self.tokens = (self.tokens - 1.0).max(0.0);
        }
    }

    /// Stops requests for `duration`; with `global`, for every destination
    /// that shares the pause.
    pub fn pause(&mut self, duration: Duration, global: bool) {
        let until = Instant::now() + duration;
        self.paused_until = Some(
            self.paused_until
                .map_or(until, |current| current.max(until)),
        );
        if global {
            if let Some(shared) = &self.shared {
                let mut pause = shared.lock().expect("pause lock");
                *pause = Some(pause.map_or(until, |current| current.max(until)));
            }
        }
        // A platform that requests a pause has used up the burst as well.
        self.tokens = 0.0;
        self.refilled = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let mut limiter = Limiter::new(Some(1.0), 2, None);
        for _ in 0..2 {
            assert_eq!(limiter.wait(), None);
            limiter.take();
        }
        let wait = limiter.wait().unwrap();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.wait(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn global_pause_reaches_other_limiters() {
        let shared = SharedPause::default();
        let mut first = Limiter::new(None, 1, Some(shared.clone()));
        let mut second = Limiter::new(None, 1, Some(shared));
        first.pause(Duration::from_secs(3), true);
        let wait = second.wait().unwrap();
        assert!(wait > Duration::from_secs(2), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let mut limiter = Limiter::new(None, 1, None);
        for _ in 0..100 {
            assert_eq!(limiter.wait(), None);
            limiter.take();
        }
    }
}
