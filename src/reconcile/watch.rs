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
//! one more after it. The caller holds the state lock for the watcher's whole life.
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
use crate::state::Target;
use crate::state::store::StateStore;
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
}

/// What one reconcile of the watcher did, for whoever observes the watcher (the
/// service's `/status` and `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    /// What triggered it: `start`, `change`, `interval`, `retry`, `requeue`.
    pub trigger: String,
    pub duration: Duration,
    /// Why it failed (`None`: it succeeded).
    pub error: Option<String>,
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
    fn revision(&self, _live: Option<&Revision>, _problem: Option<&str>) {}
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
        Failed::Invalid(_) | Failed::Folder(_) => Requeue::AwaitChange,
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
            | Error::SecretChanged(_) => Requeue::AwaitChange,
        },
    }
}

/// What the watcher reconciles against.
pub struct Watcher<'a> {
    pub spec: Spec,
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub resolved: Resolved,
    pub store: &'a dyn StateStore,
    /// The state lock held for the watcher's life (`None` with `--plan-only`): a lock
    /// that is lost (a PostgreSQL connection that dropped) stops the watcher.
    pub lock: Option<&'a dyn crate::state::store::StoreLock>,
    /// The service and the target; `None` with `--plan-only`.
    pub remote: Option<(Arc<dyn TaskApi>, Target)>,
    pub cancel: signal::Receiver<bool>,
    pub observer: Arc<dyn Observer>,
    /// With `--git`: a fetch at once (`POST /hooks/git`).
    pub hooks: Option<mpsc::UnboundedReceiver<()>>,
    /// Parsed files kept between reconciles: a change re-reads only what changed.
    pub cache: crate::load::cache::LoadCache,
    /// With `--git`: the revision being reconciled (SHA, subject).
    pub revision: std::sync::Mutex<Option<(String, String)>>,
}

/// Watches `spec.dir` (or, with `--git`, the repository) and reconciles until
/// cancelled.
pub async fn run(w: Watcher<'_>) -> Result<(), Error> {
    if w.spec.git.is_some() {
        return run_git(w).await;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let root = std::fs::canonicalize(&w.spec.dir).unwrap_or_else(|_| w.spec.dir.clone());
    let _watcher = events::start(&root, tx).map_err(Error::Watch)?;
    let state_dir = w
        .resolved
        .state
        .as_file()
        .and_then(|s| std::fs::canonicalize(crate::fsutil::parent_dir(s)).ok());
    let ignore = state_dir.filter(|d| d.starts_with(&root) && *d != root);
    tracing::info!(dir = %w.spec.dir.display(), debounce_ms = w.spec.debounce.as_millis() as u64, plan_only = w.spec.plan_only, "watching");
    let mut failures = FailureMemory::new(w.spec.retry_interval);
    let lost = || w.lock.and_then(|l| l.lost()).map(Error::LockLost);
    let dir = w.spec.dir.clone();
    let mut requeue = w
        .reconcile(&dir, &mut failures, "start", None, None)
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
        let timer = [next_interval, failures.next_retry(), requeue]
            .into_iter()
            .flatten()
            .min();
        let mut cancel = w.cancel.clone();
        let why = tokio::select! {
            biased;
            _ = cancel.changed() => break,
            _ = health.tick() => continue,
            Some(first) = rx.recv() => {
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
                        Some(p) = rx.recv() => {
                            paths.insert(p);
                            last = Instant::now();
                            tried = false;
                            ready = None;
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
                "change"
            }
            _ = sleep_until(timer) => {
                let now = Instant::now();
                if next_interval.is_some_and(|t| t <= now) {
                    next_interval = w.spec.interval.map(|i| now + i);
                    "interval"
                } else if requeue.is_some_and(|t| t <= now) {
                    "requeue"
                } else {
                    "retry"
                }
            }
        };
        // Events name what changed only after a change; otherwise check everything.
        let paths = std::mem::take(&mut changed);
        let events = (why == "change").then_some(&paths);
        let prepared = ready.take().filter(|_| why == "change");
        requeue = w
            .reconcile(&dir, &mut failures, why, events, prepared)
            .await
            .requeue;
    }
    tracing::info!("stopped; the state is written and the lock released");
    Ok(())
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
    let mut hooks = w.hooks.take();
    tracing::info!(repository = %crate::load::git::redact(&git.source.url), branch = %git.source.branch, path = %git.source.path, poll_secs = git.poll.as_secs(), "watching a git repository");
    let mut failures = FailureMemory::new(w.spec.retry_interval);
    let lost = || w.lock.and_then(|l| l.lost()).map(Error::LockLost);
    // The revision applied, the newest one fetched, and one that failed to load.
    let mut live: Option<Revision> = None;
    let mut current: Option<Revision> = None;
    let mut invalid: Option<String> = None;
    // The newest revision reconciled at least once (so a fetch of the same commit does
    // not reconcile it again; its failures follow the error policy).
    let mut attempted: Option<String> = None;
    let mut next_fetch = Instant::now();
    let mut backoff = git.poll;
    let mut requeue: Option<Instant> = None;
    let mut next_interval = w.spec.interval.map(|i| Instant::now() + i);
    let mut health = tokio::time::interval(LOCK_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trigger = "start";
    loop {
        if *w.cancel.borrow() {
            break;
        }
        if let Some(e) = lost() {
            return Err(e);
        }
        if trigger == "start" || trigger == "poll" || trigger == "hook" {
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
                    w.observer.revision(live.as_ref(), Some(&e.to_string()));
                    next_fetch = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_FETCH_BACKOFF.max(git.poll));
                }
                Ok(rev) => {
                    if backoff != git.poll && invalid.as_deref() != Some(rev.sha.as_str()) {
                        // The remote is back: its problem is over.
                        w.observer.revision(live.as_ref(), None);
                    }
                    backoff = git.poll;
                    next_fetch = Instant::now() + git.poll;
                    let new = current.as_ref().is_none_or(|c| c.sha != rev.sha);
                    if new {
                        tracing::info!(revision = %rev.sha, subject = %crate::load::diagnostic::escape(&rev.subject), trigger, "new revision");
                        current = Some(rev);
                    }
                }
            }
        }
        // What to reconcile: a newly fetched revision once (start, poll, hook); on a
        // retry, requeue or interval, the newest revision unless it is invalid, else
        // the live one (its failed tasks retried, its drift corrected). Never on the
        // health tick.
        let valid = |c: &&Revision| invalid.as_deref() != Some(c.sha.as_str());
        let target = match trigger {
            "start" | "poll" | "hook" => current
                .as_ref()
                .filter(valid)
                .filter(|c| attempted.as_deref() != Some(c.sha.as_str()))
                .cloned(),
            "retry" | "requeue" | "interval" => {
                current.as_ref().filter(valid).or(live.as_ref()).cloned()
            }
            _ => None,
        };
        let mut reconciled_now = false;
        if let Some(c) = target.as_ref() {
            reconciled_now = true;
            attempted = Some(c.sha.clone());
            *w.revision.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((c.sha.clone(), c.subject.clone()));
            let done = w
                .reconcile(&c.dir, &mut failures, trigger, None, None)
                .await;
            requeue = done.requeue;
            if done.invalid {
                invalid = Some(c.sha.clone());
                tracing::error!(revision = %c.sha, live = live.as_ref().map(|r| r.sha.as_str()).unwrap_or("none"), "the revision's manifests are invalid: not applied; the live revision stays until a newer commit is good");
                w.observer.revision(
                    live.as_ref(),
                    Some(&format!(
                        "revision {} is invalid (see the last error)",
                        c.sha
                    )),
                );
            } else if done.ok {
                if live.as_ref().is_none_or(|l| l.sha != c.sha) {
                    // Only a watcher that holds the lock (not --plan-only) records it.
                    if w.lock.is_some() {
                        record_revision(w.store, c);
                    }
                    tracing::info!(revision = %c.sha, subject = %crate::load::diagnostic::escape(&c.subject), "revision live");
                }
                live = Some(c.clone());
                w.observer.revision(live.as_ref(), None);
                git.source.prune(&[c.sha.as_str()]);
            }
        } else if matches!(trigger, "retry" | "requeue") {
            // Nothing to retry against: wait for the next fetch.
            requeue = None;
        }
        let now = Instant::now();
        // A failed task's retry time passed with nothing reconciled (no revision to
        // retry against) is not a timer: it would spin.
        let retry_at = failures.next_retry().filter(|t| reconciled_now || *t > now);
        let timer = [Some(next_fetch), next_interval, retry_at, requeue]
            .into_iter()
            .flatten()
            .min();
        let mut cancel = w.cancel.clone();
        trigger = tokio::select! {
            biased;
            _ = cancel.changed() => break,
            Some(()) = async { match hooks.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                // Several hooks at once: one fetch.
                while hooks.as_mut().is_some_and(|h| h.try_recv().is_ok()) {}
                "hook"
            }
            _ = health.tick() => "health",
            _ = sleep_until(timer) => {
                let now = Instant::now();
                if next_fetch <= now {
                    "poll"
                } else if next_interval.is_some_and(|t| t <= now) {
                    next_interval = w.spec.interval.map(|i| now + i);
                    "interval"
                } else if requeue.is_some_and(|t| t <= now) {
                    "requeue"
                } else {
                    "retry"
                }
            }
        };
    }
    tracing::info!("stopped; the state is written and the lock released");
    Ok(())
}

/// Records the live revision in the state (`last_applied`), for `state list` and the
/// pipelines. A failure is logged: the tasks are applied either way.
fn record_revision(store: &dyn StateStore, rev: &Revision) {
    let result = store.load().and_then(|mut state| {
        state.last_applied = Some(crate::state::LastApplied {
            revision: Some(rev.sha.clone()),
            subject: Some(rev.subject.clone()),
            at: crate::clock::now_rfc3339(),
            by: None,
        });
        store.persist(&mut state)
    });
    if let Err(e) = result {
        tracing::error!(revision = %rev.sha, "cannot record the live revision in the state: {e}");
    }
}

/// What one reconcile of the watcher came to.
struct Done {
    /// When to try again, if the error policy says so.
    requeue: Option<Instant>,
    ok: bool,
    /// The manifests were invalid (a person must fix them).
    invalid: bool,
}

/// How long after the last file event the reconcile is prepared (at most half the
/// debounce).
const PREPARE_AFTER: Duration = Duration::from_millis(50);

/// A reconcile prepared while the watcher waits for a burst of changes to end: the
/// manifests loaded, the state read and the plan made. Applied if no event came after
/// it; dropped otherwise (nothing of it was written).
struct Prepared {
    loaded: Arc<crate::load::Loaded>,
    prepared: super::Planned,
}

/// How often an idle watcher checks that it still holds its lock.
const LOCK_CHECK: Duration = Duration::from_secs(2);

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
    /// One reconcile of the whole folder `dir`. Never fails: every problem is
    /// logged, and the error policy says when to try again.
    /// `changed`: the paths the file events named since the last reconcile (`None`:
    /// check every file).
    async fn reconcile(
        &self,
        dir: &Path,
        failures: &mut FailureMemory,
        trigger: &str,
        changed: Option<&BTreeSet<PathBuf>>,
        prepared: Option<Prepared>,
    ) -> Done {
        let started = Instant::now();
        match self
            .try_reconcile(dir, failures, trigger, changed, prepared, started)
            .await
        {
            Ok(mut done) => {
                done.trigger = trigger.to_string();
                done.duration = started.elapsed();
                if trigger == "interval" {
                    let s = done.summary;
                    done.drift = s.create + s.replace + s.update + s.delete;
                }
                self.observer.reconciled(&done);
                Done {
                    requeue: None,
                    ok: done.error.is_none(),
                    invalid: false,
                }
            }
            Err(failed) => {
                self.observer.reconciled(&Reconciled {
                    trigger: trigger.to_string(),
                    duration: started.elapsed(),
                    error: Some(match &failed {
                        Failed::Invalid(diags) => {
                            let first = diags
                                .first()
                                .map(|d| {
                                    crate::load::diagnostic::escape(&d.to_string()).into_owned()
                                })
                                .unwrap_or_default();
                            format!("{failed}: {first}")
                        }
                        other => other.to_string(),
                    }),
                    ..Reconciled::default()
                });
                match &failed {
                    Failed::Invalid(diags) => {
                        // Structured for log shippers, with untrusted text escaped.
                        use crate::load::diagnostic::escape;
                        for d in diags {
                            let hint = d.hint.as_deref().map(escape).unwrap_or_default();
                            tracing::error!(file = %escape(&d.file), line = d.line, col = d.col, hint = %hint, "{}", escape(&d.message));
                        }
                        tracing::error!(trigger, problems = diags.len(), "{failed}");
                    }
                    Failed::Reconcile(e @ (Error::Remote(_) | Error::Ambiguous(_))) => {
                        tracing::error!(trigger, "cannot read the server: {e}")
                    }
                    other => tracing::error!(trigger, "{other}"),
                }
                let requeue = match error_policy(&failed, self.spec.retry_interval) {
                    Requeue::AwaitChange => None,
                    Requeue::After(d) => {
                        tracing::info!(
                            trigger,
                            retry_in_ms = d.as_millis() as u64,
                            "reconciling again later"
                        );
                        Some(Instant::now() + d)
                    }
                };
                Done {
                    requeue,
                    ok: false,
                    invalid: matches!(failed, Failed::Invalid(_)),
                }
            }
        }
    }

    /// The manifests of `dir`, through the cache (`changed`: what the file events
    /// named since the last load).
    fn load(
        &self,
        dir: &Path,
        trigger: &str,
        changed: Option<&BTreeSet<PathBuf>>,
        started: Instant,
    ) -> Result<Arc<crate::load::Loaded>, Failed> {
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
        let loaded = match self.load(dir, "change", Some(changed), Instant::now()) {
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
        trigger: &str,
        changed: Option<&BTreeSet<PathBuf>>,
        prepared: Option<Prepared>,
        started: Instant,
    ) -> Result<Reconciled, Failed> {
        let (loaded, prepared) = match prepared {
            Some(p) => {
                tracing::debug!(trigger, "prepared during the wait");
                (p.loaded, Some(p.prepared))
            }
            None => (self.load(dir, trigger, changed, started)?, None),
        };
        let ctx = self.context(&loaded, dir);
        let sending = Sending {
            options: &self.spec.apply,
            cancel: self.cancel.clone(),
            progress: Arc::new(Silent),
        };
        let plan_only = self.spec.plan_only;
        let policy = &self.spec.policy;
        let mut held = 0;
        let approve = |doc: &mut crate::plan::document::SavedPlan, state: &crate::state::State| {
            if let Err(refused) = policy.check_deletes(doc, state) {
                let text = refused.to_string();
                let (first, rest) = crate::load::diagnostic::split_lines(&text);
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
        if plan_only {
            return Ok(Reconciled {
                summary: report.doc.summary,
                pending: report.doc.summary,
                in_doubt: report.doc.summary.in_doubt,
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
            ..Reconciled::default()
        })
    }
}
