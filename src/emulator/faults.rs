//! Throttling like the service's, and seeded fault injection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fixed one-second windows of at most `limit` requests (0 = unlimited).
pub struct RateLimit {
    limit: u32,
    window: Mutex<(Instant, u32)>,
}

impl RateLimit {
    pub fn new(limit: u32) -> Self {
        RateLimit {
            limit,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// `None` when the request may go on, else how long until the next window.
    pub fn check(&self) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= self.limit {
            return Some(Duration::from_secs(1).saturating_sub(now.duration_since(w.0)));
        }
        w.1 += 1;
        None
    }
}

/// Probabilities of injected faults; draws are deterministic for a seed.
pub struct Faults {
    pub fail_rate: f64,
    pub throttle_rate: f64,
    pub drop_rate: f64,
    rng: Mutex<fastrand::Rng>,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttle,
    Fail,
}

impl Faults {
    pub fn new(fail_rate: f64, throttle_rate: f64, drop_rate: f64, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        Faults {
            fail_rate,
            throttle_rate,
            drop_rate,
            rng: Mutex::new(rng),
        }
    }

    fn draw(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64() < p
    }

    /// Decides the fault for a request before it is handled.
    pub fn before(&self) -> Fault {
        if self.draw(self.throttle_rate) {
            Fault::Throttle
        } else if self.draw(self.fail_rate) {
            Fault::Fail
        } else {
            Fault::None
        }
    }

    /// Whether to drop the connection after a create was done.
    pub fn drop_after_create(&self) -> bool {
        self.draw(self.drop_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_faults_repeat() {
        let a = Faults::new(0.3, 0.3, 0.3, Some(7));
        let b = Faults::new(0.3, 0.3, 0.3, Some(7));
        let da: Vec<Fault> = (0..100).map(|_| a.before()).collect();
        let db: Vec<Fault> = (0..100).map(|_| b.before()).collect();
        assert_eq!(da, db);
        assert!(
            da.contains(&Fault::Fail) && da.contains(&Fault::Throttle) && da.contains(&Fault::None)
        );
    }

    #[test]
    fn rate_limit_refuses_past_the_limit() {
        let r = RateLimit::new(3);
        assert!((0..3).all(|_| r.check().is_none()));
        assert!(r.check().is_some());
    }
}
