//! The client-side rate limit shared by writes (the applier) and reads (search, show):
//! at most `max` requests a second, halving after the service throttles and recovering
//! slowly, so taskform stays under the service's per-user limit instead of living on
//! 429 answers. [`backoff`] is the wait before a retry, for writes and reads alike.

use std::time::Duration;
// tokio's clock, so that tests with paused time see the pacer's waits as virtual time.
use tokio::time::Instant;

/// The wait before retry `n` (0 for the first): `base` doubled `n` times, at most
/// `max`, with jitter (50-100 %) so that clients throttled together spread out.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << n.min(16)).min(max);
    Duration::from_secs_f64(exp.as_secs_f64() * (0.5 + fastrand::f64() * 0.5))
}

/// Client-side rate limit that halves after throttling and recovers slowly.
pub struct Pacer {
    max: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl Pacer {
    /// At most `max` requests a second (0 = no limit).
    pub fn new(max: f64) -> Self {
        Pacer {
            max,
            state: std::sync::Mutex::new((max, Instant::now())),
        }
    }
    /// Waits for the next slot.
    pub async fn wait(&self) {
        let slot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (rate, next) = *s;
            if rate <= 0.0 {
                return;
            }
            let now = Instant::now();
            let slot = next.max(now);
            s.1 = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
    /// The service throttled a request: halve the rate.
    pub fn throttled(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = if s.0 <= 0.0 {
            10.0
        } else {
            (s.0 / 2.0).max(1.0)
        };
        tracing::info!(rate = s.0, "throttled by the service; slowing down");
    }
    /// A request went through: recover a little.
    pub fn succeeded(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 > 0.0 && (self.max <= 0.0 || s.0 < self.max) {
            s.0 += 0.2;
            if self.max > 0.0 {
                s.0 = s.0.min(self.max);
            } else if s.0 > 1000.0 {
                s.0 = 0.0;
            }
        }
    }
}
