//! The client-side rate limit shared by writes (the applier) and reads (search, show):
//! at most `max` requests a second, halving after the service throttles and recovering
//! after successes, so taskform stays under the service's per-user limit instead of
//! living on 429 answers. [`backoff`] is the wait before a retry, for writes and reads
//! alike.
//!
//! A burst of throttled answers (every request in flight answered 429 at once) is one
//! signal, not one per request: the rate is cut at most once per [`BURST`]. With a
//! limit (`max` > 0) the rate then grows back by 0.2 a second per success up to `max`.
//! Without one (`max` = 0), throttling starts pacing at [`RESTART`] requests a second,
//! which grows by 2 % per success (doubling in about a second at that rate), and the
//! pacing is dropped again past [`UNLIMITED_ABOVE`]: a few seconds of successes.

use std::time::Duration;
// tokio's clock, so that tests with paused time see the pacer's waits as virtual time.
use tokio::time::Instant;

/// Throttled answers within this long of the last cut belong to the same burst.
pub const BURST: Duration = Duration::from_secs(1);
/// Without a limit: the rate paced at after the service throttles.
pub const RESTART: f64 = 20.0;
/// Without a limit: the rate past which pacing stops again.
pub const UNLIMITED_ABOVE: f64 = 500.0;

/// The wait before retry `n` (0 for the first): `base` doubled `n` times, at most
/// `max`, with jitter (50-100 %) so that clients throttled together spread out.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << n.min(16)).min(max);
    Duration::from_secs_f64(exp.as_secs_f64() * (0.5 + fastrand::f64() * 0.5))
}

/// Client-side rate limit that halves after throttling and recovers after successes.
pub struct Pacer {
    /// The configured limit; 0 = none.
    max: f64,
    state: std::sync::Mutex<State>,
}

struct State {
    /// The current rate; 0 = not paced.
    rate: f64,
    /// The next free slot.
    next: Instant,
    /// When the rate was last cut.
    cut_at: Option<Instant>,
}

impl Pacer {
    /// At most `max` requests a second (0 = no limit).
    pub fn new(max: f64) -> Self {
        let max = if max.is_finite() { max.max(0.0) } else { 0.0 };
        Pacer {
            max,
            state: std::sync::Mutex::new(State {
                rate: max,
                next: Instant::now(),
                cut_at: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current rate in requests a second; `None` when not paced.
    pub fn rate(&self) -> Option<f64> {
        let r = self.state().rate;
        (r > 0.0).then_some(r)
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        let slot = {
            let mut s = self.state();
            if s.rate <= 0.0 {
                return;
            }
            let now = Instant::now();
            let slot = s.next.max(now);
            s.next = slot + Duration::from_secs_f64(1.0 / s.rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// The service throttled a request: halve the rate (once per burst).
    pub fn throttled(&self) {
        let mut s = self.state();
        let now = Instant::now();
        if s.cut_at.is_some_and(|at| now.duration_since(at) < BURST) {
            return;
        }
        s.cut_at = Some(now);
        s.rate = if s.rate <= 0.0 {
            RESTART
        } else {
            (s.rate / 2.0).max(1.0)
        };
        tracing::info!(rate = s.rate, "throttled by the service; slowing down");
    }

    /// A request went through: recover a little.
    pub fn succeeded(&self) {
        let mut s = self.state();
        if s.rate <= 0.0 {
            return;
        }
        if self.max > 0.0 {
            s.rate = (s.rate + 0.2).min(self.max);
        } else {
            s.rate *= 1.02;
            if s.rate > UNLIMITED_ABOVE {
                s.rate = 0.0;
                tracing::debug!("recovered from throttling; no rate limit again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` requests that succeed, each after waiting for its slot; the virtual time taken.
    async fn successes(p: &Pacer, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            p.wait().await;
            p.succeeded();
        }
        start.elapsed()
    }

    /// Every request in flight answered 429 at once.
    fn burst(p: &Pacer, n: usize) {
        for _ in 0..n {
            p.throttled();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_limit_a_burst_of_throttling_is_recovered_from_within_seconds() {
        let p = Pacer::new(0.0);
        assert_eq!(successes(&p, 1000).await, Duration::ZERO, "not paced");
        burst(&p, 8);
        // Paced at a sensible rate, not 1 a second.
        let ten = successes(&p, 10).await;
        assert!(ten < Duration::from_secs(1), "10 requests took {ten:?}");
        // Back to no limit within a few seconds of successes.
        let start = Instant::now();
        while p.rate().is_some() {
            successes(&p, 1).await;
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "still paced at {:?}/s after {:?}",
                p.rate(),
                start.elapsed()
            );
        }
        assert_eq!(successes(&p, 1000).await, Duration::ZERO, "not paced again");
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_limit_a_burst_halves_the_rate_once_and_it_grows_back() {
        let p = Pacer::new(40.0);
        burst(&p, 8);
        assert_eq!(p.rate(), Some(20.0), "one burst, one cut");
        // Still throttled a while later: a new cut.
        tokio::time::advance(BURST).await;
        p.throttled();
        assert_eq!(p.rate(), Some(10.0));
        let start = Instant::now();
        while p.rate() < Some(40.0) {
            successes(&p, 1).await;
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(15), "recovered in {took:?}");
        successes(&p, 100).await;
        assert_eq!(p.rate(), Some(40.0), "never above the limit");
    }
}
