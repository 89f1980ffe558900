//! The state lock's lease: how long a holder may go on sending on the strength of
//! its lock, and how long a new holder waits before it trusts what the server shows.
//!
//! The DataArts API has no idempotency key and checks no fencing token, so a lock
//! alone cannot stop a holder that lost it (a database failover, a terminated
//! session, a network cut) from sending a create that lands after another holder
//! searched for it. A lease closes that window, as Kubernetes leader election and
//! Chubby do:
//!
//! - **The holder** renews its lease every [`LeaseConfig::renew`] seconds; the
//!   database writes `now() + duration` (its own clock, never a runner's). The holder
//!   counts its lease from the moment it *sent* the renewal, on its monotonic clock, so
//!   it always believes its lease ends no later than the database does. Before every
//!   request that creates, changes or deletes a remote task (after the pacer's wait,
//!   after any backoff) it checks, locally and at no cost, that more than
//!   [`LeaseConfig::margin`] is left; otherwise it sends nothing more.
//! - **A new holder** that finds a previous holder's row (it died or lost its session
//!   without releasing) with a journal still open (it was sending) waits until that
//!   lease has expired, by the database's clock, plus the longest one send of the
//!   previous holder could take (its request timeout, recorded in the row), before it
//!   reads the server to settle what the previous holder may have sent. A previous
//!   holder whose journal is empty was not sending: it is taken over at once.
//!
//! The timing assumption: a holder that passed its check sends within the margin (a
//! process paused longer between the check and the send, e.g. a VM suspended for
//! longer than the lease, breaks it, as it breaks every lease). Size the lease for the
//! longest pause the runners can see; the default, 15 s renewed every 5 s, is
//! Kubernetes' lease duration.
//!
//! The file backend needs none of this: its lock is the kernel's, held until the
//! holder's process dies, and a dead process sends nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default lease duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);
/// The default renewal interval.
pub const DEFAULT_RENEW: Duration = Duration::from_secs(5);
/// The environment variable that sets the lease duration (seconds).
pub const ENV_DURATION: &str = "TASKFORM_LEASE";
/// The environment variable that sets the renewal interval (seconds).
pub const ENV_RENEW: &str = "TASKFORM_LEASE_RENEW";

/// The lease's timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseConfig {
    /// How long a renewal keeps the lease.
    pub duration: Duration,
    /// How often the holder renews; a renewal that takes longer gives up.
    pub renew: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            duration: DEFAULT_DURATION,
            renew: DEFAULT_RENEW,
        }
    }
}

/// A lease setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LeaseConfigError(pub String);

impl LeaseConfig {
    /// The settings from [`ENV_DURATION`] and [`ENV_RENEW`] (defaults where unset),
    /// checked.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<LeaseConfig, LeaseConfigError> {
        let read = |name: &str, default: Duration| -> Result<Duration, LeaseConfigError> {
            match env(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        LeaseConfigError(format!(
                            "{name}={v:?} is not a number of seconds between 0 and 86400 (e.g. {name}={})",
                            default.as_secs()
                        ))
                    }),
            }
        };
        let cfg = LeaseConfig {
            duration: read(ENV_DURATION, DEFAULT_DURATION)?,
            renew: read(ENV_RENEW, DEFAULT_RENEW)?,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses a lease that could run out while a renewal is still allowed to answer:
    /// renewals are sent every interval and each may take up to one interval, so the
    /// lease must cover two intervals and the margin.
    pub fn check(&self) -> Result<(), LeaseConfigError> {
        if self.duration < self.renew * 2 + self.margin() {
            return Err(LeaseConfigError(format!(
                "the state lock's lease ({ENV_DURATION}={}) must cover two renewal intervals ({ENV_RENEW}={}) and its {} s margin: a renewal is sent every interval and may take up to one before it gives up, and the lease must outlast a renewal that failed and the next one; e.g. {ENV_DURATION}={} {ENV_RENEW}={}",
                secs(self.duration),
                secs(self.renew),
                secs(self.margin()),
                secs(self.renew * 3),
                secs(self.renew),
            )));
        }
        Ok(())
    }

    /// How much of the lease must be left for a request to go out: it covers the time
    /// between the check and the request's first byte, and the clocks' rates.
    pub fn margin(&self) -> Duration {
        (self.duration / 5).min(Duration::from_secs(2))
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    match s.fract() == 0.0 {
        true => format!("{}", s as u64),
        false => format!("{s:.1}"),
    }
}

/// A holder's lease as this process knows it: confirmed by renewals, counted on the
/// monotonic clock from the moment each renewal was sent.
#[derive(Debug)]
pub struct Lease {
    cfg: LeaseConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The lease certainly runs until then (`None`: never confirmed).
    until: Option<Instant>,
    /// Why the lease is gone for good (the session that holds the lock ended).
    lost: Option<String>,
    /// Why the last renewal did not confirm the lease, if it did not.
    unconfirmed: Option<String>,
}

/// Why a request may not go out under this lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotConfirmed(pub String);

impl Lease {
    /// A lease not yet confirmed.
    pub fn new(cfg: LeaseConfig) -> Lease {
        Lease {
            cfg,
            inner: Mutex::new(Inner {
                until: None,
                lost: None,
                unconfirmed: None,
            }),
        }
    }

    pub fn config(&self) -> LeaseConfig {
        self.cfg
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database confirmed the lease by a renewal sent at `sent`.
    pub fn confirmed(&self, sent: Instant) {
        let mut i = self.inner();
        let until = sent + self.cfg.duration;
        i.until = Some(i.until.map_or(until, |u| u.max(until)));
        i.unconfirmed = None;
    }

    /// A renewal did not confirm the lease (no answer in time, an error): the lease
    /// runs down from the last confirmation.
    pub fn unconfirmed(&self, why: &str) {
        self.inner().unconfirmed = Some(why.to_string());
    }

    /// The lease is gone for good: the session holding the lock ended, or the
    /// database says it no longer holds it.
    pub fn lose(&self, why: &str) {
        self.inner().lost.get_or_insert_with(|| why.to_string());
    }

    /// Whether a request may go out now: the lease is not lost and more than the
    /// margin of it is left.
    pub fn check(&self) -> Result<(), NotConfirmed> {
        self.check_at(Instant::now())
    }

    /// [`Lease::check`] at `now` (tests pass their own clock).
    pub fn check_at(&self, now: Instant) -> Result<(), NotConfirmed> {
        let i = self.inner();
        if let Some(why) = &i.lost {
            return Err(NotConfirmed(format!("the state lock was lost ({why})")));
        }
        match i.until {
            Some(until) if now + self.cfg.margin() < until => Ok(()),
            Some(_) => Err(NotConfirmed(format!(
                "the state lock's lease could not be renewed in time ({}; lease {} s, renewed every {} s)",
                i.unconfirmed
                    .as_deref()
                    .unwrap_or("the last renewal is too old"),
                secs(self.cfg.duration),
                secs(self.cfg.renew)
            ))),
            None => Err(NotConfirmed(
                "the state lock's lease was never confirmed".into(),
            )),
        }
    }
}

/// What a new holder found of a previous one that did not release the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Takeover {
    /// Who held it (as [`super::lock::Holder`] displays), if known.
    pub holder: String,
    /// How long the previous lease still runs by the database's clock (zero: over).
    pub lease_left: Duration,
    /// The longest one send of the previous holder could take.
    pub longest_send: Duration,
    /// How long what an earlier holder sent may still land, as a holder that stopped
    /// while it waited for it recorded (zero: nothing).
    pub drain_left: Duration,
    /// Creates it had journaled and whose outcome its journal does not hold.
    pub unfinished: usize,
    /// Whether its journal was open: it was sending.
    pub was_sending: bool,
}

impl Takeover {
    /// How long to wait before reading the server: the previous holder's lease and
    /// longest request when it was sending, and at least what an earlier holder's
    /// sends still need.
    pub fn wait(&self) -> Duration {
        let own = match self.was_sending {
            true => self.lease_left + self.longest_send,
            false => Duration::ZERO,
        };
        own.max(self.drain_left)
    }

    /// The line a waiting process prints.
    pub fn message(&self) -> String {
        let what = match self.unfinished {
            0 => "before it reads the server".to_string(),
            1 => "before settling 1 task it may have sent".to_string(),
            n => format!("before settling {n} tasks it may have sent"),
        };
        format!(
            "waiting {} s for the previous holder's lease ({}) to expire, plus its longest request, {what}",
            self.wait().as_secs_f64().ceil() as u64,
            self.holder
        )
    }
}

/// How many creates a journal's records leave unfinished: an intent without a
/// `created` or `failed` record for the same name and content after it.
pub fn unfinished(records: &[super::journal::Record]) -> usize {
    use super::journal::Record;
    let mut open: std::collections::BTreeSet<(&str, &str)> = Default::default();
    for r in records {
        match r {
            Record::Intent { name, hash, .. } => {
                open.insert((name, hash));
            }
            Record::Created { name, hash, .. } | Record::Failed { name, hash } => {
                open.remove(&(name.as_str(), hash.as_str()));
            }
            _ => {}
        }
    }
    open.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_relation() {
        let env = |d: &'static str, r: &'static str| {
            move |n: &str| match n {
                ENV_DURATION => Some(d.to_string()),
                ENV_RENEW => Some(r.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            LeaseConfig::from_env(&|_| None).unwrap(),
            LeaseConfig::default()
        );
        assert_eq!(
            LeaseConfig::from_env(&env("3", "1")).unwrap().duration,
            Duration::from_secs(3)
        );
        let e = LeaseConfig::from_env(&env("10", "10")).unwrap_err().0;
        assert!(e.contains("must cover two renewal intervals"), "{e}");
        assert!(
            e.contains("TASKFORM_LEASE=30 TASKFORM_LEASE_RENEW=10"),
            "{e}"
        );
        let e = LeaseConfig::from_env(&env("5", "4")).unwrap_err().0;
        assert!(e.contains("TASKFORM_LEASE=5"), "{e}");
        for bad in ["soon", "-1", "0", "NaN", "inf"] {
            let e = LeaseConfig::from_env(&env(bad, "1")).unwrap_err().0;
            assert!(e.contains("is not a number of seconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_lease_counts_from_the_renewal_sent_and_stops_before_the_margin() {
        let cfg = LeaseConfig {
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        };
        let lease = Lease::new(cfg);
        let t0 = Instant::now();
        assert!(lease.check_at(t0).is_err(), "never confirmed");
        lease.confirmed(t0);
        assert!(lease.check_at(t0 + Duration::from_secs(12)).is_ok());
        // Less than the margin (2 s) left: nothing goes out.
        let e = lease
            .check_at(t0 + Duration::from_millis(13_100))
            .unwrap_err();
        assert!(e.0.contains("could not be renewed in time"), "{e}");
        lease.unconfirmed("no answer from the database within 5 s");
        let e = lease.check_at(t0 + Duration::from_secs(14)).unwrap_err();
        assert!(
            e.0.contains("no answer from the database within 5 s"),
            "{e}"
        );
        // A later renewal confirms it again; an older answer never shortens it.
        lease.confirmed(t0 + Duration::from_secs(10));
        lease.confirmed(t0);
        assert!(lease.check_at(t0 + Duration::from_secs(22)).is_ok());
        lease.lose("the server closed the connection");
        let e = lease.check_at(t0).unwrap_err();
        assert!(e.0.contains("lock was lost (the server closed"), "{e}");
    }

    #[test]
    fn a_takeover_waits_only_for_a_holder_that_was_sending() {
        let t = Takeover {
            holder: "taskform apply (pid 4121 on runner-7, started x)".into(),
            lease_left: Duration::from_millis(12_300),
            longest_send: Duration::from_secs(30),
            unfinished: 8,
            was_sending: true,
            drain_left: Duration::ZERO,
        };
        assert_eq!(t.wait(), Duration::from_millis(42_300));
        assert_eq!(
            t.message(),
            "waiting 43 s for the previous holder's lease (taskform apply (pid 4121 on runner-7, started x)) to expire, plus its longest request, before settling 8 tasks it may have sent"
        );
        let idle = Takeover {
            was_sending: false,
            ..t.clone()
        };
        assert_eq!(idle.wait(), Duration::ZERO);
        // A holder that stopped while it waited left its wait behind: it still counts.
        let after_a_stopped_wait = Takeover {
            was_sending: false,
            drain_left: Duration::from_secs(20),
            ..t
        };
        assert_eq!(after_a_stopped_wait.wait(), Duration::from_secs(20));
    }
}
