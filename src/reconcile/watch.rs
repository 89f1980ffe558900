//! `taskform watch`: [`super::once`] in a loop, with an error policy (kube-rs's
//! controller: `reconcile -> Result<Action>` and `error_policy(err) -> Action`).
//!
//! A full reconcile at start, then one after each burst of file changes (trailing
//! debounce: `debounce` of quiet after the last event), after `--interval`, when a
//! failed create's backoff ends, and when the error policy requeues a failed
//! reconcile. After a change only the paths the file events named are looked at
//! ([`crate::load::cache`]), and the reconcile is prepared ([`super::prepare`]) 50 ms
//! into the quiet: applied ([`super::finish`]) when the quiet ends with no newer
//! event, dropped otherwise. One reconcile at a time: changes during a reconcile queue up and trigger
//! one more after it.
//!
//! **Locks.** The caller holds the watchers' leadership ([`StateStore::leadership`]) for
//! the watcher's whole life; the state lock is taken for each reconcile only (waiting
//! for an `apply` or a `state` command that holds it), so that those get their turn
//! between two reconciles. Every few seconds an idle watcher reads the state's version:
//! a write by another process (an apply from CI, `state mv`) triggers a reconcile
//! ([`Trigger::StateChanged`]: the watcher re-applies its own revision, so its branch
//! wins), `taskform resume` one at once ([`Trigger::Resume`]). A suspended state is
//! planned, and nothing is sent.
//!
//! Cancelled (SIGINT/SIGTERM): creates in flight finish and are recorded, the state is
//! written, and [`run`] returns.

use super::applier::{ApplyOptions, Silent, TaskOutcome};
use super::events::{self, FailureMemory};
use super::{Context, Decision, Error, Policy, Sending};
use crate::load::diagnostic::Diagnostic;
use crate::load::git::Revision;
use crate::load::target::Resolved;
use crate::load::{self, LoadError};
use crate::plan::Action;
use crate::remote::client::TaskApi;
use crate::state::lock::{Holder, LockError};
use crate::state::store::{StateStore, StoreError, StoreLock};
use crate::state::{Suspension, Target};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch as signal};

/// How the watcher runs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub dir: PathBuf,
    pub debounce: Duration,
    /// First wait before a failing create (or a failed reconcile) is tried again.
    pub retry_interval: Duration,
    pub interval: Option<Duration>,
    /// Log the plan; never send.
    pub plan_only: bool,
    /// The environment of a repo that declares them.
    pub environment: Option<String>,
    /// `--git`: the manifests come from this repository (polled), not from `dir`.
    pub git: Option<GitSpec>,
    pub apply: ApplyOptions,
    pub policy: Policy,
    /// Who runs the watcher (`user@host (watch)`), for the state's `last_applied`.
    pub by: String,
}

/// A watched git repository: fetched every `poll`, and when a hook says so.
#[derive(Debug, Clone)]
pub struct GitSpec {
    pub source: crate::load::git::GitSource,
    pub poll: Duration,
}

/// Why one reconcile of the watcher failed.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error("invalid manifests: nothing is applied until they are fixed")]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Folder(String),
    #[error(transparent)]
    Reconcile(#[from] Error),
    /// Cancelled while waiting for the state lock: nothing was done.
    #[error("stopped while waiting for the state lock")]
    Stopped,
}

/// What made the watcher reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// The watcher started.
    #[default]
    Start,
    /// A burst of file events ended.
    Change,
    /// `--interval` passed: a drift check.
    Interval,
    /// A failed task's backoff ended.
    Retry,
    /// The error policy asked for another try.
    Requeue,
    /// `--git`: the poll fetched.
    Poll,
    /// `POST /hooks/git`: fetched at once.
    Hook,
    /// `POST /reconcile`: fetched (with `--git`) and reconciled at once.
    Sync,
    /// `taskform resume`.
    Resume,
    /// Another process wrote the state (an apply, a `state` command).
    StateChanged,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Change => "change",
            Trigger::Interval => "interval",
            Trigger::Retry => "retry",
            Trigger::Requeue => "requeue",
            Trigger::Poll => "poll",
            Trigger::Hook => "hook",
            Trigger::Sync => "sync",
            Trigger::Resume => "resume",
            Trigger::StateChanged => "state-changed",
        }
    }

    /// A trigger that reconciles whatever is there (the newest good revision, else the
    /// live one), not only a new commit.
    fn whatever_is_there(self) -> bool {
        !matches!(
            self,
            Trigger::Start | Trigger::Poll | Trigger::Hook | Trigger::Change
        )
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the service (`--listen`) asks of the watcher.
#[derive(Debug)]
pub enum External {
    /// `POST /hooks/git`: fetch now (a new commit is reconciled).
    Hook,
    /// `POST /reconcile`: fetch (with `--git`) and reconcile now; the answer says what
    /// will be reconciled.
    Sync(tokio::sync::oneshot::Sender<SyncAnswer>),
}

/// What `POST /reconcile` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    /// With `--git`: the commit that will be reconciled (`None`: none is usable yet).
    pub revision: Option<String>,
    /// The number the reconcile will have on `/status` (`last_reconcile.number`);
    /// `None` when there is nothing to reconcile (no usable revision yet).
    pub reconcile: Option<u64>,
}

/// Why the newest revision of a `--git` watcher is not live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionProblem {
    /// The repository could not be fetched.
    Fetch(String),
    /// The revision's manifests are invalid: each problem as `path:line:col: message`
    /// with the path as in the repository (untrusted text escaped).
    Invalid {
        sha: String,
        subject: String,
        problems: Vec<String>,
    },
}

/// Another process wrote the state since the watcher last read or wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideChange {
    /// The state's serial now.
    pub serial: u64,
    /// Its `last_applied`, when an apply wrote it.
    pub last_applied: Option<crate::state::LastApplied>,
}

/// What one reconcile of the watcher did, for whoever observes the watcher (the
/// service's `/status` and `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    /// The watcher's count of reconciles, this one included (from 1).
    pub number: u64,
    pub trigger: Trigger,
    pub duration: Duration,
    /// Why it failed (`None`: it ran to its end).
    pub error: Option<String>,
    /// Requests the service refused or did not answer (how many, and the first): the
    /// reconcile ran to its end, and its result is a failure all the same.
    pub failed_requests: Option<String>,
    /// The plan's counts (of the last plan that could be made).
    pub summary: crate::plan::Summary,
    /// What is still pending after it: the plan's counts less what was applied (a
    /// create, replace, update or delete that succeeded counts as unchanged; a delete
    /// that succeeded is gone). The plan's counts when nothing was sent.
    pub pending: crate::plan::Summary,
    /// Requests' results: created, updated, deleted, failed.
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
    /// Tasks in doubt after it (planned in doubt, or made so now).
    pub in_doubt: usize,
    /// On an `interval` reconcile (no file changed), the tasks it had to send:
    /// drift made outside taskform.
    pub drift: usize,
    /// The state is suspended: planned, nothing sent.
    pub suspended: Option<Suspension>,
    /// Invalid manifests: each problem as `path:line:col: message` (the path as in the
    /// repository with `--git`), untrusted text escaped.
    pub problems: Vec<String>,
    /// Tasks in doubt after it, by name (escaped).
    pub in_doubt_tasks: Vec<String>,
    /// What it had to send, as `name: action (fields ...)` (escaped; never a value):
    /// drift when nothing changed in the repo.
    pub drifted: Vec<String>,
    /// Duplicates known after it: `name: task ID` (escaped).
    pub duplicates: Vec<String>,
    /// The prune guard refused its deletes: why (its first line).
    pub prune_refused: Option<String>,
    /// With `--git`: the commit it reconciled.
    pub revision: Option<String>,
}

/// The plan's counts less what `results` applied: each create, replace or update that
/// succeeded is now unchanged; each delete that succeeded is gone (an orphan or a
/// superseded task less).
fn pending_after(
    plan: crate::plan::Summary,
    results: &[crate::reconcile::applier::TaskResult],
) -> crate::plan::Summary {
    let mut p = plan;
    for r in results {
        match (r.action, r.outcome) {
            (Action::Create, TaskOutcome::Created) => {
                p.create = p.create.saturating_sub(1);
                p.unchanged += 1;
            }
            (Action::Replace, TaskOutcome::Created) => {
                p.replace = p.replace.saturating_sub(1);
                p.unchanged += 1;
            }
            (Action::Update, TaskOutcome::Updated | TaskOutcome::Created) => {
                p.update = p.update.saturating_sub(1);
                p.unchanged += 1;
            }
            (Action::Delete, TaskOutcome::Deleted) => p.delete = p.delete.saturating_sub(1),
            _ => {}
        }
    }
    p
}

/// Observes the watcher (the CLI's service: probes and metrics). The reconcile stage
/// only reports; what is served is the caller's.
pub trait Observer: Send + Sync {
    /// One reconcile ended.
    fn reconciled(&self, _r: &Reconciled) {}
    /// With `--git`: the revision applied (live), and why the newest one is not
    /// (`None`: it is the live one).
    fn revision(&self, _live: Option<&Revision>, _problem: Option<&RevisionProblem>) {}
    /// The state is suspended (`Some`), or not.
    fn suspended(&self, _s: Option<&Suspension>) {}
    /// Another process wrote the state.
    fn changed_outside(&self, _c: &OutsideChange) {}
    /// The reconcile waits for the state lock `holder` holds (`None`: it no longer
    /// waits).
    fn waiting_for_lock(&self, _holder: Option<&str>) {}
}

/// An observer that does nothing.
pub struct Unobserved;
impl Observer for Unobserved {}

/// What the watcher does next after a failed reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Wait for the next change (or `--interval`): a person must fix something.
    AwaitChange,
    /// Reconcile again after this long: the failure may pass by itself.
    After(Duration),
}

/// The error policy: manifests, a state of another target or ambiguous names need a
/// person; a service or a store that failed may recover, so the reconcile is tried
/// again after `retry`.
pub fn error_policy(failed: &Failed, retry: Duration) -> Requeue {
    match failed {
        Failed::Invalid(_) | Failed::Folder(_) | Failed::Stopped => Requeue::AwaitChange,
        Failed::Reconcile(e) => match e {
            Error::Remote(_) | Error::Store(_) => Requeue::After(retry),
            Error::Target(_)
            | Error::Ambiguous(_)
            | Error::Stale(_)
            | Error::Guard(_)
            | Error::Declined(_)
            | Error::Watch(_)
            | Error::LockLost(_)
            | Error::Empty { .. }
            | Error::Duplicates(_)
            | Error::Protected(_)
            | Error::SecretChanged(_)
            | Error::Suspended(_) => Requeue::AwaitChange,
        },
    }
}

/// What the watcher reconciles against.
pub struct Watcher<'a> {
    pub spec: Spec,
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub resolved: Resolved,
    pub store: &'a dyn StateStore,
    /// The watchers' leadership, held for the watcher's life (`None` with
    /// `--plan-only`): one that is lost (a PostgreSQL connection that dropped) stops
    /// the watcher.
    pub leadership: Option<&'a dyn StoreLock>,
    /// Who takes the state lock for each reconcile.
    pub holder: Holder,
    /// The service and the target; `None` with `--plan-only`.
    pub remote: Option<(Arc<dyn TaskApi>, Target)>,
    pub cancel: signal::Receiver<bool>,
    pub observer: Arc<dyn Observer>,
    /// What the service asks: a fetch (`POST /hooks/git`), a reconcile now (`POST
    /// /reconcile`).
    pub external: Option<mpsc::UnboundedReceiver<External>>,
    /// The folder's file events, when the caller watches the folder (one watcher of
    /// files for every environment of `watch --all-envs`); `None`: [`run`] watches it.
    pub events: Option<mpsc::UnboundedReceiver<PathBuf>>,
    /// Reconciles at once across the watchers of one process (`watch --all-envs`).
    pub permits: Option<Arc<tokio::sync::Semaphore>>,
    /// Parsed files kept between reconciles: a change re-reads only what changed.
    pub cache: crate::load::cache::LoadCache,
    /// With `--git`: the revision being reconciled (SHA, subject).
    pub revision: std::sync::Mutex<Option<(String, String)>>,
    /// What this watcher last read or wrote of the state (lineage, serial, suspension).
    pub seen: std::sync::Mutex<Option<Seen>>,
    /// Reconciles so far.
    pub count: std::sync::atomic::AtomicU64,
}

/// What a watcher last saw of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub stored: (String, u64),
    pub suspended: Option<Suspension>,
}

impl<'a> Watcher<'a> {
    /// A watcher with nothing seen yet and no external triggers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: Spec,
        env: &'a (dyn Fn(&str) -> Option<String> + Sync),
        resolved: Resolved,
        store: &'a dyn StateStore,
        leadership: Option<&'a dyn StoreLock>,
        holder: Holder,
        remote: Option<(Arc<dyn TaskApi>, Target)>,
        cancel: signal::Receiver<bool>,
        observer: Arc<dyn Observer>,
    ) -> Watcher<'a> {
        Watcher {
            spec,
            env,
            resolved,
            store,
            leadership,
            holder,
            remote,
            cancel,
            observer,
            external: None,
            events: None,
            permits: None,
            cache: Default::default(),
            revision: Default::default(),
            seen: Default::default(),
            count: Default::default(),
        }
    }
}

/// Watches `spec.dir` (or, with `--git`, the repository) and reconciles until
/// cancelled.
pub async fn run(mut w: Watcher<'_>) -> Result<(), Error> {
    if w.spec.git.is_some() {
        return run_git(w).await;
    }
    let root = std::fs::canonicalize(&w.spec.dir).unwrap_or_else(|_| w.spec.dir.clone());
    let (mut rx, _watcher) = match w.events.take() {
        Some(rx) => (rx, None),
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            (rx, Some(events::start(&root, tx).map_err(Error::Watch)?))
        }
    };
    let mut external = w.external.take();
    let state_dir = w
        .resolved
        .state
        .as_file()
        .and_then(|s| std::fs::canonicalize(crate::fsutil::parent_dir(s)).ok());
    let ignore = state_dir.filter(|d| d.starts_with(&root) && *d != root);
    tracing::info!(dir = %w.spec.dir.display(), debounce_ms = w.spec.debounce.as_millis() as u64, plan_only = w.spec.plan_only, "watching");
    let mut failures = FailureMemory::new(w.spec.retry_interval);
    let lost = || w.leadership.and_then(|l| l.lost()).map(Error::LockLost);
    let dir = w.spec.dir.clone();
    let mut requeue = w
        .reconcile(&dir, &mut failures, Trigger::Start, None, None)
        .await
        .requeue;
    // The paths the file events named since the last reconcile: the next one after a
    // change looks at these only (the others reconcile after a full check).
    let mut changed = BTreeSet::new();
    // A reconcile prepared during the last burst's quiet, not yet applied.
    let mut ready: Option<Prepared> = None;
    let mut next_interval = w.spec.interval.map(|i| Instant::now() + i);
    let mut health = tokio::time::interval(LOCK_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *w.cancel.borrow() {
            break;
        }
        if let Some(e) = lost() {
            return Err(e);
        }
        // While suspended nothing is sent, so nothing is retried.
        let retry = failures.next_retry().filter(|_| !w.suspended());
        let timer = [next_interval, retry, requeue].into_iter().flatten().min();
        let mut cancel = w.cancel.clone();
        let why = tokio::select! {
            biased;
            _ = cancel.changed() => break,
            _ = health.tick() => match w.look_at_state() {
                Some(t) => t,
                None => continue,
            },
            Some(ext) = next_external(&mut external) => match ext {
                // No repository to fetch: nothing to do.
                External::Hook => continue,
                External::Sync(reply) => {
                    let _ = reply.send(SyncAnswer { revision: None, reconcile: Some(w.next_number()) });
                    Trigger::Sync
                }
            },
            Some(first) = rx.recv() => {
                // A path that cannot change the plan (the state folder's files, written
                // by this watcher or, with --all-envs, by another environment's) starts
                // no debounce.
                if !matters(&first, &root, ignore.as_deref()) {
                    continue;
                }
                // Trailing debounce: wait for `debounce` of quiet after the last event.
                // Shortly after the last event the reconcile is prepared (manifests
                // loaded, plan made); if no event comes before the quiet ends, it is
                // what is applied, so the wait hides that work.
                let mut paths = BTreeSet::new();
                paths.insert(first);
                let ahead_after = PREPARE_AFTER.min(w.spec.debounce / 2);
                // Reading the server for every task (--refresh, --adopt) is not done
                // on a guess.
                let ahead = !w.spec.policy.refresh && !w.spec.policy.adopt;
                let mut last = Instant::now();
                let mut tried = !ahead;
                let mut stop = w.cancel.clone();
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.changed() => break,
                        // Only a path that can change the plan extends the quiet (and
                        // drops what was prepared).
                        Some(p) = rx.recv() => {
                            if matters(&p, &root, ignore.as_deref()) {
                                paths.insert(p);
                                last = Instant::now();
                                tried = false;
                                ready = None;
                            }
                        }
                        _ = tokio::time::sleep_until((last + w.spec.debounce).into()) => break,
                        _ = tokio::time::sleep_until((last + ahead_after).into()), if !tried => {
                            tried = true;
                            if paths.iter().any(|p| matters(p, &root, ignore.as_deref())) {
                                let mut all = changed.clone();
                                all.extend(paths.iter().cloned());
                                // Nothing of it is written: a stop drops it.
                                ready = tokio::select! {
                                    r = w.prepare(&dir, &all) => r,
                                    _ = stop.changed() => break,
                                };
                            }
                        }
                    }
                }
                if *w.cancel.borrow() {
                    break;
                }
                let relevant = log_changes(&paths, &root, ignore.as_deref());
                changed.append(&mut paths);
                if !relevant {
                    ready = None;
                    continue;
                }
                Trigger::Change
            }
            _ = sleep_until(timer) => {
                let now = Instant::now();
                if next_interval.is_some_and(|t| t <= now) {
                    next_interval = w.spec.interval.map(|i| now + i);
                    Trigger::Interval
                } else if requeue.is_some_and(|t| t <= now) {
                    Trigger::Requeue
                } else {
                    Trigger::Retry
                }
            }
        };
        // Events name what changed only after a change; otherwise check everything.
        let paths = std::mem::take(&mut changed);
        let events = (why == Trigger::Change).then_some(&paths);
        let prepared = ready.take().filter(|_| why == Trigger::Change);
        requeue = w
            .reconcile(&dir, &mut failures, why, events, prepared)
            .await
            .requeue;
    }
    tracing::info!("stopped; the state is written and the lock released");
    Ok(())
}

/// The next request of the service, if the watcher has a service.
async fn next_external(
    external: &mut Option<mpsc::UnboundedReceiver<External>>,
) -> Option<External> {
    match external.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The longest wait between fetches of a remote that keeps failing.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(600);

/// `watch --git`: fetch every `poll` (and on a hook), reconcile each new commit's
/// tree. A commit whose manifests are invalid is not applied: the last good one stays
/// live until a newer commit is good. A remote that cannot be read keeps the live
/// revision, retried with backoff. A rewind to an older commit is applied like any.
async fn run_git(mut w: Watcher<'_>) -> Result<(), Error> {
    let Some(git) = w.spec.git.clone() else {
        return Ok(());
    };
    let mut external = w.external.take();
    tracing::info!(repository = %crate::load::git::redact(&git.source.url), branch = %git.source.branch, path = %git.source.path, poll_secs = git.poll.as_secs(), "watching a git repository");
    let mut failures = FailureMemory::new(w.spec.retry_interval);
    let lost = || w.leadership.and_then(|l| l.lost()).map(Error::LockLost);
    // The revision applied, the newest one fetched, and one that failed to load.
    let mut live: Option<Revision> = None;
    let mut current: Option<Revision> = None;
    let mut invalid: Option<String> = None;
    // Why the newest revision is not live: the fetch failed, or its manifests are
    // invalid (`invalid` names that commit).
    let mut fetch_problem: Option<String> = None;
    let mut invalid_problem: Option<RevisionProblem> = None;
    // The newest revision reconciled at least once (so a fetch of the same commit does
    // not reconcile it again; its failures follow the error policy).
    let mut attempted: Option<String> = None;
    let mut next_fetch = Instant::now();
    let mut backoff = git.poll;
    let mut requeue: Option<Instant> = None;
    let mut next_interval = w.spec.interval.map(|i| Instant::now() + i);
    let mut health = tokio::time::interval(LOCK_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trigger = Some(Trigger::Start);
    // `POST /reconcile`s waiting for the fetch, to be told what will be reconciled.
    let mut syncs: Vec<tokio::sync::oneshot::Sender<SyncAnswer>> = Vec::new();
    loop {
        if *w.cancel.borrow() {
            break;
        }
        if let Some(e) = lost() {
            return Err(e);
        }
        if let Some(t @ (Trigger::Start | Trigger::Poll | Trigger::Hook | Trigger::Sync)) = trigger
        {
            let source = git.source.clone();
            let fetched = tokio::task::spawn_blocking(move || source.sync())
                .await
                .unwrap_or_else(|e| Err(crate::load::git::GitError::Failed(e.to_string())));
            match fetched {
                Err(e) => {
                    // git's own lines, each a log line of its own (indented, escaped).
                    let text = e.to_string();
                    let (first, rest) = crate::load::diagnostic::split_lines(&text);
                    tracing::error!(
                        live = live.as_ref().map(|r| r.sha.as_str()).unwrap_or("none"),
                        retry_in_secs = backoff.as_secs(),
                        "{first}; the live revision stays"
                    );
                    for line in rest {
                        tracing::error!("  git: {}", line.trim_start());
                    }
                    fetch_problem = Some(text);
                    next_fetch = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_FETCH_BACKOFF.max(git.poll));
                }
                Ok(rev) => {
                    // The remote is back: its problem is over.
                    fetch_problem = None;
                    backoff = git.poll;
                    next_fetch = Instant::now() + git.poll;
                    let new = current.as_ref().is_none_or(|c| c.sha != rev.sha);
                    if new {
                        tracing::info!(revision = %rev.sha, subject = %crate::load::diagnostic::escape(&rev.subject), trigger = t.as_str(), "new revision");
                        current = Some(rev);
                    }
                }
            }
        }
        // What to reconcile: a newly fetched revision once (start, poll, hook); on any
        // other trigger, the newest revision unless it is invalid, else the live one
        // (its failed tasks retried, its drift corrected, an outside write undone).
        let valid = |c: &&Revision| invalid.as_deref() != Some(c.sha.as_str());
        let target = match trigger {
            None => None,
            Some(t) if t.whatever_is_there() => {
                current.as_ref().filter(valid).or(live.as_ref()).cloned()
            }
            Some(_) => current
                .as_ref()
                .filter(valid)
                .filter(|c| attempted.as_deref() != Some(c.sha.as_str()))
                .cloned(),
        };
        for reply in syncs.drain(..) {
            let _ = reply.send(SyncAnswer {
                revision: target.as_ref().map(|c| c.sha.clone()),
                reconcile: target.as_ref().map(|_| w.next_number()),
            });
        }
        let mut reconciled_now = false;
        if let (Some(c), Some(t)) = (target.as_ref(), trigger) {
            reconciled_now = true;
            attempted = Some(c.sha.clone());
            *w.revision.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((c.sha.clone(), c.subject.clone()));
            let done = w.reconcile(&c.dir, &mut failures, t, None, None).await;
            requeue = done.requeue;
            if let Some(problems) = done.invalid {
                invalid = Some(c.sha.clone());
                tracing::error!(revision = %c.sha, live = live.as_ref().map(|r| r.sha.as_str()).unwrap_or("none"), "the revision's manifests are invalid: not applied; the live revision stays until a newer commit is good");
                invalid_problem = Some(RevisionProblem::Invalid {
                    sha: c.sha.clone(),
                    subject: crate::load::diagnostic::escape(&c.subject).into_owned(),
                    problems,
                });
            } else if done.suspended {
                // Planned, not applied: the live revision stays; `resume` reconciles
                // this one.
            } else if done.ok {
                if live.as_ref().is_none_or(|l| l.sha != c.sha) {
                    // Recorded in the state by the reconcile, under its lock.
                    tracing::info!(revision = %c.sha, subject = %crate::load::diagnostic::escape(&c.subject), "revision live");
                }
                live = Some(c.clone());
                git.source.prune(&[c.sha.as_str()]);
            }
        } else if matches!(trigger, Some(Trigger::Retry | Trigger::Requeue)) {
            // Nothing to retry against: wait for the next fetch.
            requeue = None;
        }
        let now = Instant::now();
        // A failed task's retry time passed with nothing reconciled (no revision to
        // retry against) is not a timer: it would spin.
        // While suspended nothing is sent, so nothing is retried.
        let retry_at = failures
            .next_retry()
            .filter(|t| (reconciled_now || *t > now) && !w.suspended());
        let problem = fetch_problem
            .clone()
            .map(RevisionProblem::Fetch)
            .or_else(|| {
                invalid_problem.clone().filter(|_| {
                    current
                        .as_ref()
                        .is_some_and(|c| invalid.as_deref() == Some(c.sha.as_str()))
                })
            });
        w.observer.revision(live.as_ref(), problem.as_ref());
        let timer = [Some(next_fetch), next_interval, retry_at, requeue]
            .into_iter()
            .flatten()
            .min();
        let mut cancel = w.cancel.clone();
        trigger = tokio::select! {
            biased;
            _ = cancel.changed() => break,
            Some(ext) = next_external(&mut external) => {
                // Several at once: one fetch.
                let mut all = vec![ext];
                while let Some(more) = external.as_mut().and_then(|h| h.try_recv().ok()) {
                    all.push(more);
                }
                let mut t = Trigger::Hook;
                for e in all {
                    if let External::Sync(reply) = e {
                        syncs.push(reply);
                        t = Trigger::Sync;
                    }
                }
                Some(t)
            }
            _ = health.tick() => w.look_at_state(),
            _ = sleep_until(timer) => {
                let now = Instant::now();
                if next_fetch <= now {
                    Some(Trigger::Poll)
                } else if next_interval.is_some_and(|t| t <= now) {
                    next_interval = w.spec.interval.map(|i| now + i);
                    Some(Trigger::Interval)
                } else if requeue.is_some_and(|t| t <= now) {
                    Some(Trigger::Requeue)
                } else {
                    Some(Trigger::Retry)
                }
            }
        };
    }
    tracing::info!("stopped; the state is written and the lock released");
    Ok(())
}

/// What a reconcile found, by task, for alerts.
struct Notes {
    in_doubt: Vec<String>,
    drifted: Vec<String>,
    duplicates: Vec<String>,
}

impl Notes {
    fn of(report: &super::Report) -> Notes {
        use crate::load::diagnostic::escape;
        let mut in_doubt: Vec<String> = report
            .doc
            .tasks
            .iter()
            .filter(|t| t.action == Action::InDoubt)
            .map(|t| escape(&t.name).into_owned())
            .collect();
        in_doubt.extend(
            report
                .results
                .iter()
                .filter(|r| r.outcome == TaskOutcome::InDoubt)
                .map(|r| escape(&r.name).into_owned()),
        );
        let drifted = report
            .doc
            .tasks
            .iter()
            .filter(|t| t.action.sends())
            .map(|t| t.described())
            .collect();
        let duplicates = report
            .doc
            .tasks
            .iter()
            .filter(|t| t.action == Action::Duplicate)
            .map(|t| t.described())
            .collect();
        Notes {
            in_doubt,
            drifted,
            duplicates,
        }
    }
}

/// Why a reconcile whose requests failed is a failure: how many, and the first one's
/// task, HTTP status and service message (escaped); `None` when none failed.
fn failed_sends(results: &[crate::reconcile::applier::TaskResult]) -> Option<String> {
    use crate::load::diagnostic::escape;
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == TaskOutcome::Failed)
        .collect();
    let first = failed.first()?;
    let status = first
        .http_status
        .map(|s| format!("HTTP {s}"))
        .unwrap_or_else(|| "no answer".into());
    let code = first
        .error_code
        .as_deref()
        .map(|c| format!(" {}", escape(c)))
        .unwrap_or_default();
    let msg = first
        .error_msg
        .as_deref()
        .map(|m| format!(": {}", escape(m)))
        .unwrap_or_default();
    Some(format!(
        "{} request(s) failed, retried after their backoff; the first: {} ({status}{code}{msg})",
        failed.len(),
        escape(&first.name)
    ))
}

/// What one reconcile of the watcher came to.
struct Done {
    /// When to try again, if the error policy says so.
    requeue: Option<Instant>,
    ok: bool,
    /// The manifests were invalid (a person must fix them): the problems.
    invalid: Option<Vec<String>>,
    /// The state is suspended: planned, nothing sent (so the revision is not live).
    suspended: bool,
}

/// How long after the last file event the reconcile is prepared (at most half the
/// debounce).
const PREPARE_AFTER: Duration = Duration::from_millis(50);

/// A reconcile prepared while the watcher waits for a burst of changes to end: the
/// manifests loaded, the state read and the plan made. Applied if no event came after
/// it and the state was not written in between; dropped otherwise (nothing of it was
/// written).
struct Prepared {
    loaded: Arc<crate::load::Loaded>,
    prepared: super::Planned,
}

/// How often an idle watcher checks that it still leads, and reads the state's version
/// (a resume, a write by another process).
const LOCK_CHECK: Duration = Duration::from_secs(2);

/// How long the watcher waits between two tries for a state lock another process
/// holds.
const LOCK_STEP: Duration = Duration::from_millis(200);

/// Whether a changed path can change the plan (an empty path: events were lost).
fn matters(path: &Path, root: &Path, ignore: Option<&Path>) -> bool {
    path.as_os_str().is_empty() || events::relevant(path, root, ignore)
}

/// Logs the changed paths that matter; false when none does.
fn log_changes(paths: &BTreeSet<PathBuf>, root: &Path, ignore: Option<&Path>) -> bool {
    let relevant: Vec<&PathBuf> = paths.iter().filter(|p| matters(p, root, ignore)).collect();
    for p in relevant.iter().take(20) {
        tracing::info!(path = %p.strip_prefix(root).unwrap_or(p).display(), "changed");
    }
    if relevant.len() > 20 {
        tracing::info!(more = relevant.len() - 20, "more paths changed");
    }
    !relevant.is_empty()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

impl Watcher<'_> {
    /// The number the next reconcile will have.
    fn next_number(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Notes what the watcher itself read or wrote of the state.
    fn saw(&self, stored: (String, u64), suspended: Option<Suspension>) {
        let now = Seen { stored, suspended };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.as_ref().map(|s| &s.suspended) != Some(&now.suspended) {
            self.observer.suspended(now.suspended.as_ref());
        }
        *seen = Some(now);
    }

    /// Reads the state's version (cheap: the stores keep the last copy by the file's
    /// identity or the row's version) and says what it calls for: a reconcile after a
    /// resume, or after another process wrote the state.
    fn look_at_state(&self) -> Option<Trigger> {
        let state = match self.store.peek() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("cannot read the state between reconciles: {e}");
                return None;
            }
        };
        let now = Seen {
            stored: (state.lineage.clone(), state.serial),
            suspended: state.suspended.clone(),
        };
        let was = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(now.clone());
        let Some(was) = was else {
            self.observer.suspended(now.suspended.as_ref());
            return None;
        };
        if was.suspended != now.suspended {
            // `suspend` and `resume` write the state: that is what changed.
            self.observer.suspended(now.suspended.as_ref());
            return match &now.suspended {
                Some(s) => {
                    use crate::load::diagnostic::escape;
                    tracing::warn!(by = %escape(&s.by), reason = %escape(&s.reason), "suspended: planning, sending nothing until `taskform resume`");
                    None
                }
                None => {
                    tracing::info!("resumed: reconciling now");
                    Some(Trigger::Resume)
                }
            };
        }
        if was.stored != now.stored {
            let by = state
                .last_applied
                .as_ref()
                .and_then(|l| l.by.clone().or(l.revision.clone()))
                .unwrap_or_else(|| "a state command".into());
            tracing::info!(serial = now.stored.1, last_applied_by = %crate::load::diagnostic::escape(&by), "the state changed outside this watcher: reconciling (this watcher re-applies its own revision)");
            self.observer.changed_outside(&OutsideChange {
                serial: now.stored.1,
                last_applied: state.last_applied.clone(),
            });
            return Some(Trigger::StateChanged);
        }
        None
    }

    /// Takes the state lock for one reconcile (`None` with `--plan-only`), waiting for
    /// another holder (an apply, a `state` command) as long as it takes, unless the
    /// watcher is stopped.
    async fn take_lock(&self) -> Result<Option<Box<dyn StoreLock>>, Failed> {
        if self.spec.plan_only {
            return Ok(None);
        }
        let mut reported: Option<String> = None;
        let mut cancel = self.cancel.clone();
        loop {
            if *self.cancel.borrow() {
                return Err(Failed::Stopped);
            }
            // One quick try (no wait inside the store): the waiting is done here, so
            // that other environments and the stop signal go on.
            let attempt = tokio::task::block_in_place(|| self.store.lock(&self.holder, None));
            match attempt {
                Ok(lock) => {
                    if reported.is_some() {
                        tracing::info!("the state lock is free: reconciling");
                        self.observer.waiting_for_lock(None);
                    }
                    return Ok(Some(lock));
                }
                Err(StoreError::Lock(LockError::Held { holder, .. })) => {
                    let holder = crate::load::diagnostic::escape(&holder).into_owned();
                    if reported.as_deref() != Some(holder.as_str()) {
                        tracing::info!(state = %crate::load::diagnostic::escape(&self.store.describe()), "waiting for the state lock, held by {holder}; reconciling once it is released");
                        self.observer.waiting_for_lock(Some(&holder));
                        reported = Some(holder);
                    }
                }
                Err(e) => {
                    if reported.is_some() {
                        self.observer.waiting_for_lock(None);
                    }
                    return Err(Failed::Reconcile(e.into()));
                }
            }
            tokio::select! {
                _ = cancel.changed() => {}
                _ = tokio::time::sleep(LOCK_STEP) => {}
            }
        }
    }

    /// With `--git`, after a reconcile that applied the revision (the state lock still
    /// held): records it in the state (`last_applied`), for `state list` and the
    /// pipelines, unless the reconcile that sent recorded it already. A failure is
    /// logged: the tasks are applied either way.
    fn record_revision(&self) {
        if self.spec.git.is_none() {
            return;
        }
        let Some((sha, subject)) = self
            .revision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let result = self.store.load().and_then(|mut state| {
            let recorded = state
                .last_applied
                .as_ref()
                .is_some_and(|l| l.revision.as_deref() == Some(sha.as_str()));
            if !recorded {
                state.last_applied = Some(crate::state::LastApplied {
                    revision: Some(sha.clone()),
                    subject: Some(subject.clone()),
                    at: crate::clock::now_rfc3339(),
                    by: None,
                });
                self.store.persist(&mut state)?;
            }
            Ok(state)
        });
        match result {
            Ok(state) => self.saw((state.lineage, state.serial), state.suspended),
            Err(e) => {
                tracing::error!(revision = %sha, "cannot record the live revision in the state: {e}")
            }
        }
    }

    /// Whether the state was suspended when last seen.
    fn suspended(&self) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|s| s.suspended.is_some())
    }

    /// A problem's file as in the repository (with `--git`: the tree's folder left
    /// out, `--path` put back), else as loaded.
    fn repo_path(&self, dir: &Path, file: &str) -> String {
        let Some(git) = &self.spec.git else {
            return file.to_string();
        };
        match Path::new(file).strip_prefix(dir) {
            Ok(rel) => {
                let inside = Path::new(&git.source.path).join(rel);
                inside.to_string_lossy().replace('\\', "/")
            }
            Err(_) => file.to_string(),
        }
    }

    /// One reconcile of the whole folder `dir`, under the state lock. Never fails:
    /// every problem is logged, and the error policy says when to try again.
    /// `changed`: the paths the file events named since the last reconcile (`None`:
    /// check every file).
    async fn reconcile(
        &self,
        dir: &Path,
        failures: &mut FailureMemory,
        trigger: Trigger,
        changed: Option<&BTreeSet<PathBuf>>,
        prepared: Option<Prepared>,
    ) -> Done {
        let started = Instant::now();
        let result = match self.take_lock().await {
            Ok(lock) => {
                // Taken after the lock: an environment waiting for its lock does not
                // hold back the others.
                let _permit = match &self.permits {
                    Some(p) => p.clone().acquire_owned().await.ok(),
                    None => None,
                };
                let r = self
                    .try_reconcile(dir, failures, trigger, changed, prepared, started)
                    .await;
                if lock.is_some() {
                    match &r {
                        Ok(done) if done.error.is_none() && done.suspended.is_none() => {
                            self.record_revision()
                        }
                        Ok(_) => {}
                        // What a failed reconcile wrote (a journal folded in, a new
                        // lineage) is this watcher's own: not an outside change.
                        Err(_) => {
                            if let Ok(p) = self.store.peek() {
                                self.saw((p.lineage, p.serial), p.suspended);
                            }
                        }
                    }
                }
                drop(lock);
                r
            }
            Err(e) => Err(e),
        };
        if matches!(result, Err(Failed::Stopped)) {
            return Done {
                requeue: None,
                ok: false,
                invalid: None,
                suspended: false,
            };
        }
        let number = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let revision = self
            .revision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(sha, _)| sha.clone());
        match result {
            Ok(mut done) => {
                done.number = number;
                done.revision = revision;
                done.trigger = trigger;
                done.duration = started.elapsed();
                if trigger == Trigger::Interval {
                    let s = done.summary;
                    done.drift = s.create + s.replace + s.update + s.delete;
                }
                self.observer.reconciled(&done);
                Done {
                    requeue: None,
                    ok: done.error.is_none(),
                    invalid: None,
                    suspended: done.suspended.is_some(),
                }
            }
            Err(failed) => {
                use crate::load::diagnostic::escape;
                let problems: Vec<String> = match &failed {
                    Failed::Invalid(diags) => diags
                        .iter()
                        .map(|d| {
                            let shown = Diagnostic {
                                file: self.repo_path(dir, &d.file),
                                ..d.clone()
                            };
                            escape(&shown.to_string()).into_owned()
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                self.observer.reconciled(&Reconciled {
                    number,
                    revision,
                    trigger,
                    duration: started.elapsed(),
                    error: Some(match problems.first() {
                        Some(first) => match problems.len() {
                            1 => format!("{failed}: {first}"),
                            n => format!("{failed}: {first} (and {} more)", n - 1),
                        },
                        None => failed.to_string(),
                    }),
                    problems: problems.clone(),
                    ..Reconciled::default()
                });
                match &failed {
                    Failed::Invalid(diags) => {
                        // Structured for log shippers, with untrusted text escaped.
                        for d in diags {
                            let hint = d.hint.as_deref().map(escape).unwrap_or_default();
                            let file = self.repo_path(dir, &d.file);
                            tracing::error!(file = %escape(&file), line = d.line, col = d.col, hint = %hint, "{}", escape(&d.message));
                        }
                        tracing::error!(
                            trigger = trigger.as_str(),
                            problems = diags.len(),
                            "{failed}"
                        );
                    }
                    Failed::Reconcile(e @ (Error::Remote(_) | Error::Ambiguous(_))) => {
                        tracing::error!(trigger = trigger.as_str(), "cannot read the server: {e}")
                    }
                    other => tracing::error!(trigger = trigger.as_str(), "{other}"),
                }
                let requeue = match error_policy(&failed, self.spec.retry_interval) {
                    Requeue::AwaitChange => None,
                    Requeue::After(d) => {
                        tracing::info!(
                            trigger = trigger.as_str(),
                            retry_in_ms = d.as_millis() as u64,
                            "reconciling again later"
                        );
                        Some(Instant::now() + d)
                    }
                };
                Done {
                    requeue,
                    ok: false,
                    invalid: matches!(failed, Failed::Invalid(_)).then_some(problems),
                    suspended: false,
                }
            }
        }
    }

    /// The manifests of `dir`, through the cache (`changed`: what the file events
    /// named since the last load).
    fn load(
        &self,
        dir: &Path,
        trigger: Trigger,
        changed: Option<&BTreeSet<PathBuf>>,
        started: Instant,
    ) -> Result<Arc<crate::load::Loaded>, Failed> {
        let trigger = trigger.as_str();
        let loaded = load::cache::load_cached(
            dir,
            self.spec.environment.as_deref(),
            self.env,
            &self.cache,
            changed,
        );
        let last = self.cache.last_load();
        tracing::debug!(
            trigger,
            cached = last.cached,
            parsed = last.parsed,
            walked = last.walked,
            elapsed_us = started.elapsed().as_micros() as u64,
            "manifests loaded"
        );
        let loaded = match loaded {
            Ok(l) => l,
            Err(LoadError::Dir(msg)) => return Err(Failed::Folder(msg)),
            Err(LoadError::Invalid(diags)) => return Err(Failed::Invalid(diags)),
        };
        if loaded.manifests.is_empty() {
            tracing::warn!(trigger, dir = %dir.display(), "no manifests found");
        }
        Ok(loaded)
    }

    fn context<'c>(&'c self, loaded: &'c crate::load::Loaded, dir: &'c Path) -> Context<'c> {
        Context {
            loaded,
            resolved: &self.resolved,
            dir,
            store: self.store,
            target: self.remote.as_ref().map(|(_, t)| t),
            api: self.remote.as_ref().map(|(api, _)| api),
            policy: &self.spec.policy,
            origin: super::Origin::Watch(
                self.revision
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                self.spec.by.clone(),
            ),
        }
    }

    /// Prepares the reconcile of a change while the burst's quiet runs (`changed`: the
    /// paths named since the last load). `None` when it cannot be prepared: the
    /// reconcile then does it all and reports why.
    async fn prepare(&self, dir: &Path, changed: &BTreeSet<PathBuf>) -> Option<Prepared> {
        let loaded = match self.load(dir, Trigger::Change, Some(changed), Instant::now()) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("not prepared during the wait: {e}");
                return None;
            }
        };
        match super::prepare(&self.context(&loaded, dir), None).await {
            Ok(prepared) => Some(Prepared { loaded, prepared }),
            Err(e) => {
                tracing::debug!("not prepared during the wait: {e}");
                None
            }
        }
    }

    async fn try_reconcile(
        &self,
        dir: &Path,
        failures: &mut FailureMemory,
        trigger: Trigger,
        changed: Option<&BTreeSet<PathBuf>>,
        prepared: Option<Prepared>,
        started: Instant,
    ) -> Result<Reconciled, Failed> {
        // A plan prepared before the lock was taken holds only if nobody wrote the
        // state since (an apply from CI, a `state` command).
        let prepared = match prepared {
            Some(p) if !self.spec.plan_only => {
                let (state, _, _) = &p.prepared;
                let read = (state.lineage.clone(), state.serial);
                // A peek: no copy of a state the store keeps.
                match self.store.peek() {
                    Ok(now)
                        if (now.lineage.as_str(), now.serial) == (read.0.as_str(), read.1)
                            && !self.store.has_journal() =>
                    {
                        Some(p)
                    }
                    _ => {
                        tracing::debug!(
                            trigger = trigger.as_str(),
                            "the state was written since the plan was prepared: planning again"
                        );
                        None
                    }
                }
            }
            other => other,
        };
        let (loaded, prepared) = match prepared {
            Some(p) => {
                tracing::debug!(trigger = trigger.as_str(), "prepared during the wait");
                (p.loaded, Some(p.prepared))
            }
            None => (self.load(dir, trigger, changed, started)?, None),
        };
        let trigger = trigger.as_str();
        let ctx = self.context(&loaded, dir);
        let sending = Sending {
            options: &self.spec.apply,
            cancel: self.cancel.clone(),
            progress: Arc::new(Silent),
        };
        let plan_only = self.spec.plan_only;
        let policy = &self.spec.policy;
        let mut held = 0;
        let mut prune_refused = None;
        let approve = |doc: &mut crate::plan::document::SavedPlan, state: &crate::state::State| {
            if let Err(refused) = policy.check_deletes(doc, state) {
                let text = refused.to_string();
                let (first, rest) = crate::load::diagnostic::split_lines(&text);
                prune_refused = Some(crate::load::diagnostic::escape(first).into_owned());
                tracing::error!(trigger, "{first}");
                for line in rest {
                    tracing::error!("{line}");
                }
                // Everything else is still applied.
                doc.tasks.retain(|t| t.action != Action::Delete);
            }
            for t in doc.tasks.iter().filter(|t| t.action != Action::Unchanged) {
                tracing::info!(task = %t.name, action = t.action.as_str(), file = t.file.as_deref().unwrap_or(""), "planned");
            }
            if plan_only {
                let s = doc.summary;
                tracing::info!(
                    trigger,
                    create = s.create,
                    replace = s.replace,
                    update = s.update,
                    delete = s.delete,
                    unchanged = s.unchanged,
                    orphan = s.orphan,
                    in_doubt = s.in_doubt,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "planned (plan only)"
                );
                return Ok(Decision::Stop);
            }
            // The same failing content is not sent again before its backoff ends.
            let now = Instant::now();
            doc.tasks.retain(|t| {
                    let blocked = t.action.sends()
                        && failures.blocked(&t.name, t.hash.as_deref().unwrap_or(""), now);
                    if blocked {
                        tracing::info!(task = %t.name, "failed recently with this content; retried after its backoff");
                        held += 1;
                    }
                    !blocked
                });
            Ok(Decision::Apply)
        };
        let report = match prepared {
            Some(p) => super::finish(&ctx, p, approve, &sending).await?,
            None => super::once(&ctx, None, approve, &sending).await?,
        };
        self.saw(report.stored.clone(), report.suspended.clone());
        let notes = Notes::of(&report);
        if plan_only || report.suspended.is_some() {
            if let Some(sus) = &report.suspended
                && !plan_only
            {
                let s = report.doc.summary;
                tracing::info!(
                    trigger,
                    create = s.create,
                    replace = s.replace,
                    update = s.update,
                    delete = s.delete,
                    by = %crate::load::diagnostic::escape(&sus.by),
                    reason = %crate::load::diagnostic::escape(&sus.reason),
                    "suspended: planned, nothing sent"
                );
            }
            return Ok(Reconciled {
                summary: report.doc.summary,
                pending: report.doc.summary,
                in_doubt: report.doc.summary.in_doubt,
                suspended: report.suspended.clone(),
                in_doubt_tasks: notes.in_doubt,
                drifted: notes.drifted,
                duplicates: notes.duplicates,
                prune_refused,
                ..Reconciled::default()
            });
        }
        if let Some(e) = &report.persist_error {
            tracing::error!(trigger, "{e}");
        }
        let hashes: std::collections::HashMap<&str, &str> = report
            .doc
            .tasks
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.hash.as_deref()?)))
            .collect();
        let (mut failed, mut in_doubt) = (0, 0);
        for r in &report.results {
            match r.outcome {
                TaskOutcome::Created | TaskOutcome::Updated | TaskOutcome::Deleted => {
                    failures.forget(&r.name)
                }
                TaskOutcome::Failed => {
                    failed += 1;
                    let hash = hashes.get(r.name.as_str()).copied().unwrap_or("");
                    failures.failed(&r.name, hash, Instant::now());
                }
                TaskOutcome::InDoubt => in_doubt += 1,
                TaskOutcome::Unsupported | TaskOutcome::Skipped => {}
            }
        }
        let count = |o: TaskOutcome| report.results.iter().filter(|r| r.outcome == o).count();
        let s = report.doc.summary;
        tracing::info!(
            trigger,
            created = count(TaskOutcome::Created),
            updated = count(TaskOutcome::Updated),
            deleted = count(TaskOutcome::Deleted),
            failed,
            in_doubt = in_doubt + s.in_doubt,
            held,
            unchanged = s.unchanged,
            orphan = s.orphan,
            duration_ms = started.elapsed().as_millis() as u64,
            "reconciled"
        );
        Ok(Reconciled {
            summary: s,
            pending: pending_after(s, &report.results),
            created: count(TaskOutcome::Created),
            updated: count(TaskOutcome::Updated),
            deleted: count(TaskOutcome::Deleted),
            failed,
            in_doubt: in_doubt + s.in_doubt,
            error: report.persist_error.as_ref().map(|e| e.to_string()),
            failed_requests: failed_sends(&report.results),
            in_doubt_tasks: notes.in_doubt,
            drifted: notes.drifted,
            duplicates: notes.duplicates,
            prune_refused,
            ..Reconciled::default()
        })
    }
}
