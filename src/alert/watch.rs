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
    /// The revision being applied (`--git`).
    revision: Option<String>,
    /// The suspension last seen (`None` before the first look).
    suspended: Option<Option<Suspension>>,
    /// The fetch problem last alerted (said again only when it changes).
    fetch: Option<String>,
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
        Event::new(kind, severity, summary)
            .environment(self.environment.as_deref())
            .revision(revision.as_deref())
    }
}

impl Observer for AlertObserver {
    fn reconciled(&self, r: &Reconciled) {
        let failure = r.error.as_deref().or(r.failed_requests.as_deref());
        if !r.problems.is_empty() {
            self.seen().failing = true;
            self.alerts.emit(
                self.event(
                    EventKind::RevisionInvalid,
                    Severity::Error,
                    "the manifests are invalid: nothing is applied until they are fixed",
                )
                .details(&r.problems),
            );
        } else if let Some(why) = failure {
            self.seen().failing = true;
            self.alerts.emit(self.event(
                EventKind::ReconcileFailed,
                Severity::Error,
                &format!("a reconcile failed: {why}"),
            ));
        } else if r.suspended.is_none() {
            let was_failing = std::mem::take(&mut self.seen().failing);
            if was_failing {
                self.alerts.emit(self.event(
                    EventKind::Recovered,
                    Severity::Info,
                    &format!(
                        "reconciled again ({}): created {}, updated {}, deleted {}",
                        r.trigger, r.created, r.updated, r.deleted
                    ),
                ));
            }
        }
        if !r.in_doubt_tasks.is_empty() {
            self.alerts.emit(
                self.event(
                    EventKind::InDoubt,
                    Severity::Error,
                    &format!(
                        "{} create(s) in doubt: the tasks may exist; the next reconcile settles them by search",
                        r.in_doubt_tasks.len()
                    ),
                )
                .details(&r.in_doubt_tasks),
            );
        }
        if !r.duplicates.is_empty() {
            self.alerts.emit(
                self.event(
                    EventKind::Duplicates,
                    Severity::Error,
                    &format!(
                        "{} managed name(s) have remote tasks no record holds (duplicates)",
                        r.duplicates.len()
                    ),
                )
                .details(&r.duplicates),
            );
        }
        if let Some(refused) = &r.prune_refused {
            self.alerts
                .emit(self.event(EventKind::PruneRefused, Severity::Error, refused));
        }
        if !r.drifted.is_empty() && r.trigger == Trigger::Interval {
            self.alerts.emit(
                self.event(
                    EventKind::Drift,
                    Severity::Info,
                    &format!(
                        "{} task(s) differed from the manifests with no change in the repo: {}",
                        r.drifted.len(),
                        match r.suspended {
                            Some(_) => "not corrected (suspended)",
                            None => "corrected",
                        }
                    ),
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
        if let Some(l) = live {
            self.seen().revision = Some(l.sha.clone());
        }
        let fetch = match problem {
            Some(RevisionProblem::Fetch(e)) => Some(e.clone()),
            _ => None,
        };
        let changed = {
            let mut seen = self.seen();
            let changed = seen.fetch != fetch;
            seen.fetch = fetch.clone();
            changed
        };
        if let (true, Some(e)) = (changed, fetch) {
            self.alerts.emit(self.event(
                EventKind::ReconcileFailed,
                Severity::Error,
                &format!("cannot fetch the config repo; the live revision stays: {e}"),
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
