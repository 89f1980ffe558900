//! Stage 3: making the server match the manifests. One operation, [`once`], that
//! `apply`, `watch` and (for its read-only part) `plan` call:
//!
//! 1. read the state through its [`StateStore`] (the caller holds the lock) and refuse
//!    a state of another target;
//! 2. online, observe the server ([`observe`]): settle in-doubt creates, `--refresh`,
//!    `--adopt`;
//! 3. plan (the pure planner, as a [`SavedPlan`] document), or check that a saved plan
//!    still holds;
//! 4. ask the caller's approval step, which may print, confirm, apply the prune guard,
//!    hold back tasks, or stop there (a plan);
//! 5. make the state ready for a journal, send with the [`applier`], and persist.
//!
//! `watch` runs it in a loop with an error policy ([`watch`]), as kube-rs's controller
//! runs `reconcile` with `error_policy`. `import` and `refresh` use [`observe`] alone.

pub mod applier;
pub mod events;
pub mod export;
pub mod export_envs;
pub mod observe;
pub mod policy;
pub mod records;
pub mod watch;

pub use observe::Observed;

/// What [`prepare`] gives and [`finish`] takes: the state as read (and observed), the
/// plan's document, and what observing the server found.
pub type Planned = (State, SavedPlan, Observed);
pub use policy::Policy;

use crate::load::Loaded;
use crate::load::target::Resolved;
use crate::plan::document::{SavedPlan, Stale};
use crate::plan::guard::Refused;
use crate::remote::client::TaskApi;
use crate::state::store::{Journal, StateStore, StoreError};
use crate::state::{State, Target, TargetMismatch};
use applier::{ApplyOptions, Progress, TaskOutcome, TaskResult};
use observe::adopt::Ambiguous;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch as signal;

/// Why a reconcile stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] TargetMismatch),
    #[error(transparent)]
    Remote(#[from] crate::remote::Error),
    #[error(transparent)]
    Ambiguous(#[from] Ambiguous),
    #[error(transparent)]
    Stale(#[from] Stale),
    #[error(transparent)]
    Guard(#[from] Refused),
    #[error(transparent)]
    Protected(#[from] crate::plan::guard::Protected),
    /// The caller's approval step refused the plan: nothing was written or sent.
    #[error("{0}")]
    Declined(String),
    /// The file watcher could not start.
    #[error("{0}")]
    Watch(String),
    /// The watcher's state lock is gone (its PostgreSQL connection dropped): another
    /// process may hold it now, so the watcher stops.
    #[error("{0}; the watcher stops (restart it: it takes the lock again)")]
    LockLost(String),
    /// Nothing to apply: the folder holds no manifest.
    #[error(
        "no manifests found in {dir}: nothing to apply. Check the folder (an emptied checkout?), or pass --allow-empty"
    )]
    Empty { dir: String },
    #[error(transparent)]
    Duplicates(#[from] Duplicates),
    #[error(transparent)]
    SecretChanged(#[from] crate::plan::document::SecretChanged),
    #[error(transparent)]
    Suspended(#[from] Suspended),
}

/// `apply` on a suspended state (`taskform suspend`): refused before anything is
/// written or sent, unless `--ignore-suspend`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state {state} is suspended by {} at {}: {}; nothing was sent. Resume it with `taskform resume{}`, or apply anyway with --ignore-suspend", escape(&.suspension.by), escape(&.suspension.at), escape(&.suspension.reason), crate::plan::document::env_flag(.environment.as_deref()))]
pub struct Suspended {
    pub state: String,
    pub environment: Option<String>,
    pub suspension: Box<crate::state::Suspension>,
}

impl Suspended {
    /// Refuses to send to a suspended state, unless the policy ignores it.
    pub fn check(ctx: &Context<'_>, state: &State) -> Result<(), Suspended> {
        match &state.suspended {
            Some(s) if !ctx.policy.ignore_suspend => Err(Suspended {
                state: ctx.store.describe(),
                environment: ctx.loaded.settings.environment.clone(),
                suspension: Box::new(s.clone()),
            }),
            _ => Ok(()),
        }
    }
}

fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    crate::load::diagnostic::escape(s)
}

/// A state that records no task, about to create tasks whose names the service
/// already has: another copy of the state, or tasks made before taskform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state {state} records no task, but the service already has tasks with the names of manifests about to be created:\n{}\ncreating them would make duplicates; nothing was sent. If they are these manifests' tasks, record them with `taskform import {dir}{}` (or apply with --adopt); if another state records them, use that state (--state, `state:` in taskform.yaml); to create them anyway, pass --allow-duplicate-names", .names.iter().map(|(n, ids)| format!("  {n}: task {}", ids.join(", "))).collect::<Vec<_>>().join("\n"), crate::plan::document::env_flag(.environment.as_deref()))]
pub struct Duplicates {
    pub state: String,
    pub dir: String,
    /// The environment, for the suggested command.
    pub environment: Option<String>,
    /// Each name with the IDs of the remote tasks that bear it.
    pub names: Vec<(String, Vec<String>)>,
}

/// The state could not be written after requests were sent: what was created is in
/// the journal (folded in by the next run) and listed here.
#[derive(Debug, thiserror::Error)]
#[error("{source}; the next run folds in what {journal} holds (a task it could not record shows as in doubt). These tasks were created:{}", .created.iter().map(|(n, id)| format!("\n  created {n} as task {id}")).collect::<String>())]
pub struct PersistFailed {
    pub source: StoreError,
    pub journal: String,
    /// (name, task ID) of every task created in the run.
    pub created: Vec<(String, String)>,
}

/// What one reconcile works with.
pub struct Context<'a> {
    pub loaded: &'a Loaded,
    /// Where requests go and where the state lives, as the plan records them.
    pub resolved: &'a Resolved,
    /// The manifest folder, as the plan records it.
    pub dir: &'a Path,
    pub store: &'a dyn StateStore,
    /// The target the state must belong to (`None`: not known, an offline plan).
    pub target: Option<&'a Target>,
    /// The service: read before planning, and sent to. `None`: offline.
    pub api: Option<&'a Arc<dyn TaskApi>>,
    pub policy: &'a Policy,
    /// Who or what applies: recorded as the state's `last_applied` when it sends.
    pub origin: Origin,
}

/// Who or what a reconcile applies for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command run by a person or a pipeline: `user@host (command)`.
    Command(String),
    /// A watcher: of a git revision (SHA, subject), or of a folder (`None`), run as
    /// `user@host (command)`.
    Watch(Option<(String, String)>, String),
}

impl Origin {
    /// The `last_applied` of an apply that sent something now.
    pub fn last_applied(&self) -> crate::state::LastApplied {
        let at = crate::clock::now_rfc3339();
        match self {
            Origin::Command(by) | Origin::Watch(None, by) => crate::state::LastApplied {
                revision: None,
                subject: None,
                at,
                by: Some(by.clone()),
            },
            Origin::Watch(Some((sha, subject)), _) => crate::state::LastApplied {
                revision: Some(sha.clone()),
                subject: Some(subject.clone()),
                at,
                by: None,
            },
        }
    }
}

/// How a reconcile sends.
pub struct Sending<'a> {
    pub options: &'a ApplyOptions,
    /// Turning true stops new sends (Ctrl-C, SIGTERM); what is in flight is recorded.
    pub cancel: signal::Receiver<bool>,
    pub progress: Arc<dyn Progress>,
}

/// What the approval step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send what the plan (as the step left it) lists, and write what observing found.
    Apply,
    /// Stop after planning: nothing is written or sent.
    Stop,
}

/// What a reconcile did.
#[derive(Debug)]
pub struct Report {
    /// The plan, as approved (a saved plan when one was applied).
    pub doc: SavedPlan,
    /// One per task sent, in plan order.
    pub results: Vec<TaskResult>,
    pub observed: Observed,
    /// The state could not be written after sending (the results still hold).
    pub persist_error: Option<PersistFailed>,
    /// The state's suspension, as read (a watcher's reconcile of a suspended state
    /// plans, and writes and sends nothing).
    pub suspended: Option<crate::state::Suspension>,
    /// The stored state's lineage and serial after the reconcile (as read when nothing
    /// was written): what a watcher compares with later reads to see other writers.
    pub stored: (String, u64),
}

/// Reads the state (and, online, the server) and plans: steps 1-3. Nothing is written.
/// With `saved`, the saved plan is returned when it still holds.
pub async fn prepare(
    ctx: &Context<'_>,
    saved: Option<(SavedPlan, &Path)>,
) -> Result<Planned, Error> {
    let started = std::time::Instant::now();
    let mut state = ctx.store.load()?;
    tracing::debug!(
        tasks = state.tasks.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "state loaded"
    );
    if let Some(t) = ctx.target {
        crate::state::check_target(&state, t, &ctx.store.describe())?;
    }
    let mut notes = std::collections::BTreeMap::new();
    let mut moved_any = false;
    for m in records::follow_moves(
        &mut state,
        &ctx.loaded.settings.moved,
        &ctx.loaded.manifests,
    ) {
        match m {
            records::Move::Followed { from, to } => {
                tracing::info!(from = %crate::load::diagnostic::escape(&from), to = %crate::load::diagnostic::escape(&to), "moved: the record follows the rename");
                notes.insert(
                    to,
                    format!("renamed from {from} (moved: in taskform.yaml): the task is kept"),
                );
                moved_any = true;
            }
            // The steady state of an entry left in taskform.yaml after its rename was
            // followed: said at info level once (when followed), then only in debug.
            records::Move::Stale {
                from,
                to,
                why: why @ records::StaleMove::AlreadyMoved,
            } => {
                tracing::debug!(from = %crate::load::diagnostic::escape(&from), to = %crate::load::diagnostic::escape(&to), "moved entry: {why}")
            }
            records::Move::Stale { from, to, why } => {
                tracing::info!(from = %crate::load::diagnostic::escape(&from), to = %crate::load::diagnostic::escape(&to), "moved entry left alone: {why}")
            }
        }
    }
    let fingerprinted = records::fingerprint_plain(
        &mut state,
        &ctx.loaded.manifests,
        &ctx.loaded.settings.secret_key,
    );
    for (name, paths) in &fingerprinted {
        notes.entry(name.clone()).or_insert_with(|| {
            format!(
                "the state records {} in plain text, now sensitive: applying records the fingerprint instead",
                paths.join(", ")
            )
        });
    }
    moved_any |= !fingerprinted.is_empty();
    let files = records::follow_files(&mut state, &ctx.loaded.manifests);
    if files > 0 {
        tracing::debug!(tasks = files, "the records follow their manifests' files");
    }
    moved_any |= files > 0;
    let mut observed = match ctx.api {
        Some(api) => observe::observe(&mut state, ctx.loaded, api, ctx.policy).await?,
        None => Observed {
            started_empty: state.tasks.is_empty() && state.in_doubt.is_empty(),
            ..Observed::default()
        },
    };
    observed.changed |= moved_any;
    for (name, note) in notes {
        observed.notes.entry(name).or_insert(note);
    }
    let fresh = SavedPlan::make(
        ctx.loaded,
        ctx.resolved,
        &state,
        ctx.dir,
        ctx.policy.options(ctx.loaded),
        &observed.notes,
        crate::plan::select::Selection {
            targets: &ctx.policy.targets,
            labels: &ctx.policy.labels,
        },
    );
    tracing::debug!(
        tasks = fresh.tasks.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "plan made"
    );
    crate::plan::guard::protected(&fresh, ctx.loaded)?;
    let doc = match saved {
        None => fresh,
        Some((saved, file)) => saved.still_valid(&fresh, &state, file)?,
    };
    Ok((state, doc, observed))
}

/// One reconcile: prepare, approve, send, persist. `approve` sees the plan and the
/// state before anything is written; it may change the plan (drop tasks), stop, or
/// refuse with an error. The caller holds the state lock.
pub async fn once<F>(
    ctx: &Context<'_>,
    saved: Option<(SavedPlan, &Path)>,
    approve: F,
    sending: &Sending<'_>,
) -> Result<Report, Error>
where
    F: FnOnce(&mut SavedPlan, &State) -> Result<Decision, Error>,
{
    let prepared = prepare(ctx, saved).await?;
    finish(ctx, prepared, approve, sending).await
}

/// The rest of [`once`] after [`prepare`]: approve, send, persist. The watcher
/// prepares while it waits for a burst of changes to end, and finishes after.
pub async fn finish<F>(
    ctx: &Context<'_>,
    (state, mut doc, observed): Planned,
    approve: F,
    sending: &Sending<'_>,
) -> Result<Report, Error>
where
    F: FnOnce(&mut SavedPlan, &State) -> Result<Decision, Error>,
{
    let decision = approve(&mut doc, &state)?;
    let mut report = Report {
        doc,
        results: Vec::new(),
        observed,
        persist_error: None,
        suspended: state.suspended.clone(),
        stored: (state.lineage.clone(), state.serial),
    };
    let (Decision::Apply, Some(api), Some(target)) = (decision, ctx.api, ctx.target) else {
        return Ok(report);
    };
    // A suspended state: a command is refused; a watcher plans, and sends nothing.
    if let Err(refused) = Suspended::check(ctx, &state) {
        match ctx.origin {
            Origin::Command(_) => return Err(refused.into()),
            Origin::Watch(..) => return Ok(report),
        }
    }
    // An empty folder is refused (an emptied checkout), unless allowed, or unless the
    // plan is a forced prune (deleting everything was asked for twice).
    let forced_prune = (ctx.policy.prune && ctx.policy.force_prune) || ctx.policy.destroy;
    if ctx.loaded.manifests.is_empty() && !ctx.policy.allow_empty && !forced_prune {
        return Err(Error::Empty {
            dir: ctx.dir.display().to_string(),
        });
    }
    if report.observed.started_empty && !ctx.policy.allow_duplicate_names && !ctx.policy.adopt {
        check_duplicates(ctx, &report.doc, api).await?;
    }
    if report.doc.sends().is_empty() {
        if report.observed.changed {
            let state = ready_for_journal(ctx.store, state, target, true)?;
            report.stored = (state.lineage.clone(), state.serial);
        }
        return Ok(report);
    }
    // Nothing is written before this point: a refused approval changes nothing.
    // Recorded with the state the run persists after sending.
    let mut state = state;
    state.last_applied = Some(ctx.origin.last_applied());
    let mut state = ready_for_journal(ctx.store, state, target, report.observed.changed)?;
    let (plan, manifests) = report.doc.manifests_to_send(ctx.loaded)?;
    let (results, persisted) =
        send(ctx.store, &mut state, (&plan, &manifests), api, sending).await?;
    report.stored = (state.lineage.clone(), state.serial);
    report.results = results;
    report.persist_error = persisted.err();
    Ok(report)
}

/// Refuses creates of names the service already has when the state records nothing
/// (a new or another copy of the state: the usual way to make duplicates). One listing
/// of the workspace, or a search per name for a few names. A service without search
/// (create-only) cannot be asked: the creates go ahead.
async fn check_duplicates(
    ctx: &Context<'_>,
    doc: &SavedPlan,
    api: &Arc<dyn TaskApi>,
) -> Result<(), Error> {
    let creates: Vec<String> = doc
        .tasks
        .iter()
        .filter(|t| t.action == crate::plan::Action::Create)
        .map(|t| t.name.clone())
        .collect();
    if creates.is_empty() {
        return Ok(());
    }
    let Some(found) = observe::adopt::named(creates.clone(), api).await? else {
        return Ok(());
    };
    let names: Vec<(String, Vec<String>)> = creates
        .into_iter()
        .filter_map(|n| {
            let ids = found
                .get(&n)?
                .iter()
                .map(crate::remote::api::remote_task_id)
                .collect();
            Some((n, ids))
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(Duplicates {
        environment: ctx.loaded.settings.environment.clone(),
        state: ctx.store.describe(),
        dir: ctx.dir.display().to_string(),
        names,
    }
    .into())
}

/// Makes the state ready for a journal: folds what an earlier run left, and makes a
/// new state's lineage and target durable, before a journal refers to them.
pub fn ready_for_journal(
    store: &dyn StateStore,
    mut state: State,
    target: &Target,
    changed: bool,
) -> Result<State, StoreError> {
    if changed || store.has_journal() || state.serial == 0 || state.target.is_none() {
        state.target.get_or_insert(target.clone());
        store.persist(&mut state)?;
    }
    Ok(state)
}

/// Sends the plan with a journal, folds the run's records into `state` and writes it.
/// A state that cannot be written is reported with every created task ID.
async fn send(
    store: &dyn StateStore,
    state: &mut State,
    (plan, manifests): (&crate::plan::Plan, &[crate::load::Manifest]),
    api: &Arc<dyn TaskApi>,
    sending: &Sending<'_>,
) -> Result<(Vec<TaskResult>, Result<(), PersistFailed>), Error> {
    let journal: Arc<dyn Journal> = Arc::from(store.open_journal(state)?);
    let started = std::time::Instant::now();
    let applied = applier::execute(
        plan,
        manifests,
        state,
        api.clone(),
        journal.clone(),
        sending,
    )
    .await;
    tracing::debug!(
        tasks = applied.results.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "requests finished"
    );
    journal.close();
    // The run's records, applied in memory: the state is complete even if a journal
    // write failed (disk full) after a task was created.
    crate::state::journal::replay(state, &applied.records);
    let persisted = store.persist(state).map_err(|source| PersistFailed {
        source,
        journal: store.describe_journal(),
        created: applied
            .results
            .iter()
            .filter(|r| r.outcome == TaskOutcome::Created)
            .map(|r| {
                (
                    r.name.clone(),
                    r.task_id.clone().unwrap_or_else(|| "?".into()),
                )
            })
            .collect(),
    });
    Ok((applied.results, persisted))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal's description is a noun phrase, said once (issue #29.9: "what the
    /// journal the journal of postgres://... holds").
    #[test]
    fn a_persist_failure_names_the_journal_once() {
        use crate::state::StateStore;
        let dir = tempfile::tempdir().unwrap();
        let local = crate::state::LocalStore::new(dir.path().join("s.json"));
        for journal in [
            local.describe_journal(),
            "the journal of postgres://u@h/db (state \"dev\")".to_string(),
        ] {
            let e = PersistFailed {
                source: StoreError::Postgres("the server went away".into()),
                journal,
                created: vec![("a".into(), "1".into())],
            };
            let text = e.to_string();
            assert_eq!(text.matches("the journal").count(), 1, "{text}");
            assert!(text.contains("folds in what the journal "), "{text}");
        }
    }
}
