//! What a watcher observes, as alerts: an [`Observer`] beside the service's, turning
//! reconciles, revisions and suspensions into [`Event`]s:
//!
//! - a reconcile that failed (its error, or the requests that failed):
//!   `reconcile_failed`; invalid manifests: `revision_invalid` with every problem;
//! - the first success after a failure: `recovered` (always sent);
//! - tasks in doubt: `in_doubt` (names); duplicates: `duplicates` (names and IDs); the
//!   prune guard refused: `prune_refused`;
//! - an `--interval` reconcile that had to send (or a `--refresh` that found drift):
//!   `drift` (names, actions and fields);
//! - a repository that cannot be fetched: `reconcile_failed`;
//! - `taskform suspend` / `resume` seen by the watcher: `suspended` / `resumed`.

use super::{Alerts, Event, EventKind, Severity};
use crate::reconcile::watch::{Observer, Reconciled, RevisionProblem, Trigger};
use crate::state::Suspension;
use std::sync::{Arc, Mutex};

/// Alerts for one environment's watcher.
pub struct AlertObserver {
    alerts: Arc<Alerts>,
    environment: Option<String>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The last reconcile failed.
    failing: bool,
    /// The newest commit, when it is invalid (`--git`): a success of the live one
    /// meanwhile is no recovery.
    newest_invalid: Option<String>,
    /// The repository could not be fetched (alerted once, until it can).
    fetch_failing: bool,
    /// What was last alerted of conditions that last (alerted again when they change).
    in_doubt: Vec<String>,
    duplicates: Vec<String>,
    prune_refused: Option<String>,
    /// The revision being applied (`--git`).
    revision: Option<String>,
    /// The suspension last seen (`None` before the first look).
    suspended: Option<Option<Suspension>>,
}

impl AlertObserver {
    pub fn new(alerts: Arc<Alerts>, environment: Option<String>) -> AlertObserver {
        AlertObserver {
            alerts,
            environment,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, kind: EventKind, severity: Severity, summary: &str) -> Event {
        let revision = self.seen().revision.clone();
        self.event_of(kind, severity, summary, revision.as_deref())
    }

    fn event_of(
        &self,
        kind: EventKind,
        severity: Severity,
        summary: &str,
        revision: Option<&str>,
    ) -> Event {
        Event::new(kind, severity, summary)
            .environment(self.environment.as_deref())
            .revision(revision)
    }

    /// Whether a lasting condition changed since it was last alerted (and notes it).
    fn changed<T: PartialEq + Clone>(
        &self,
        pick: impl FnOnce(&mut Seen) -> &mut T,
        now: &T,
    ) -> bool {
        let mut seen = self.seen();
        let slot = pick(&mut seen);
        let changed = slot != now;
        *slot = now.clone();
        changed
    }
}

impl Observer for AlertObserver {
    fn reconciled(&self, r: &Reconciled) {
        let failure = r.error.as_deref().or(r.failed_requests.as_deref());
        let revision = r.revision.as_deref();
        if !r.problems.is_empty() {
            self.seen().failing = true;
            self.alerts.emit(
                self.event_of(
                    EventKind::RevisionInvalid,
                    Severity::Error,
                    "the manifests are invalid: nothing is applied until they are fixed",
                    revision,
                )
                .details(&r.problems),
            );
        } else if let Some(why) = failure {
            self.seen().failing = true;
            self.alerts.emit(self.event_of(
                EventKind::ReconcileFailed,
                Severity::Error,
                &format!("a reconcile failed: {why}"),
                revision,
            ));
        } else if r.suspended.is_none() {
            // A success of the live commit while the newest one is invalid is no
            // recovery.
            let recovered = {
                let mut seen = self.seen();
                let fallback =
                    seen.newest_invalid.is_some() && revision == seen.revision.as_deref();
                let was = seen.failing && !fallback;
                if was {
                    seen.failing = false;
                }
                was
            };
            if recovered {
                self.alerts.emit(self.event_of(
                    EventKind::Recovered,
                    Severity::Info,
                    &format!(
                        "reconciled again ({}): created {}, updated {}, deleted {}",
                        r.trigger, r.created, r.updated, r.deleted
                    ),
                    revision,
                ));
            }
        }
        // Lasting conditions: alerted when they appear or change, not at every
        // reconcile.
        if self.changed(|s| &mut s.in_doubt, &r.in_doubt_tasks) && !r.in_doubt_tasks.is_empty() {
            self.alerts.emit(
                self.event_of(
                    EventKind::InDoubt,
                    Severity::Error,
                    &format!(
                        "{} create(s) in doubt: the tasks may exist; the next reconcile settles them by search",
                        r.in_doubt_tasks.len()
                    ),
                    revision,
                )
                .details(&r.in_doubt_tasks),
            );
        }
        if self.changed(|s| &mut s.duplicates, &r.duplicates) && !r.duplicates.is_empty() {
            self.alerts.emit(
                self.event_of(
                    EventKind::Duplicates,
                    Severity::Error,
                    &format!(
                        "{} remote task(s) of managed names that no record holds (duplicates)",
                        r.duplicates.len()
                    ),
                    revision,
                )
                .details(&r.duplicates),
            );
        }
        if self.changed(|s| &mut s.prune_refused, &r.prune_refused)
            && let Some(refused) = &r.prune_refused
        {
            self.alerts.emit(self.event_of(
                EventKind::PruneRefused,
                Severity::Error,
                refused,
                revision,
            ));
        }
        if !r.drifted.is_empty() && r.trigger == Trigger::Interval {
            let applied = r.created + r.updated + r.deleted;
            self.alerts.emit(
                self.event_of(
                    EventKind::Drift,
                    Severity::Info,
                    &format!(
                        "{} task(s) differed from the manifests with no change in the repo: {}",
                        r.drifted.len(),
                        match (r.suspended.is_some(), applied) {
                            (true, _) => "not corrected (suspended)".to_string(),
                            (false, 0) =>
                                "not corrected (planned only, or the requests failed)".to_string(),
                            (false, n) => format!("{n} corrected"),
                        }
                    ),
                    revision,
                )
                .details(&r.drifted),
            );
        }
    }

    fn revision(
        &self,
        live: Option<&crate::load::git::Revision>,
        problem: Option<&RevisionProblem>,
    ) {
        let fetch = match problem {
            Some(RevisionProblem::Fetch(e)) => Some(e.clone()),
            _ => None,
        };
        // Alerted once when the fetches start failing (git's text changes with every
        // try), and a recovery when they work again.
        let (started, ended) = {
            let mut seen = self.seen();
            if let Some(l) = live {
                seen.revision = Some(l.sha.clone());
            }
            seen.newest_invalid = match problem {
                Some(RevisionProblem::Invalid { sha, .. }) => Some(sha.clone()),
                _ => None,
            };
            let was = seen.fetch_failing;
            seen.fetch_failing = fetch.is_some();
            (!was && fetch.is_some(), was && fetch.is_none())
        };
        if let (true, Some(e)) = (started, &fetch) {
            self.alerts.emit(self.event(
                EventKind::ReconcileFailed,
                Severity::Error,
                &format!("cannot fetch the config repo; the live revision stays: {e}"),
            ));
        }
        if ended {
            self.alerts.emit(self.event(
                EventKind::Recovered,
                Severity::Info,
                "the config repo can be fetched again",
            ));
        }
    }

    fn suspended(&self, s: Option<&Suspension>) {
        let before = self.seen().suspended.replace(s.cloned());
        let Some(before) = before else {
            return;
        };
        match (before.is_some(), s) {
            (false, Some(s)) => self.alerts.emit(self.event(
                EventKind::Suspended,
                Severity::Info,
                &format!(
                    "suspended by {} at {}: {} (planning, sending nothing until `taskform resume`)",
                    s.by, s.at, s.reason
                ),
            )),
            (true, None) => self.alerts.emit(self.event(
                EventKind::Resumed,
                Severity::Info,
                "resumed: reconciling now",
            )),
            _ => {}
        }
    }
}

/// Observers side by side (the service's and the alerts').
pub struct Both(pub Arc<dyn Observer>, pub Arc<dyn Observer>);

impl Observer for Both {
    fn reconciled(&self, r: &Reconciled) {
        self.0.reconciled(r);
        self.1.reconciled(r);
    }
    fn revision(
        &self,
        live: Option<&crate::load::git::Revision>,
        problem: Option<&RevisionProblem>,
    ) {
        self.0.revision(live, problem);
        self.1.revision(live, problem);
    }
    fn suspended(&self, s: Option<&Suspension>) {
        self.0.suspended(s);
        self.1.suspended(s);
    }
    fn changed_outside(&self, c: &crate::reconcile::watch::OutsideChange) {
        self.0.changed_outside(c);
        self.1.changed_outside(c);
    }
    fn waiting_for_lock(&self, holder: Option<&str>) {
        self.0.waiting_for_lock(holder);
        self.1.waiting_for_lock(holder);
    }
}
