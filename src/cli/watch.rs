//! `taskform watch [DIR]`: continuous reconciliation of a config repo.
//!
//! A full reconcile at start, then one after each burst of file changes (trailing
//! debounce: `debounce` of quiet after the last event), after `--interval`, and when a
//! failed create's backoff ends. One reconcile at a time: changes during a reconcile
//! queue up and trigger one more after it. The state lock is held for the watcher's
//! whole life. SIGINT/SIGTERM: creates in flight finish and are recorded, the state is
//! written, the lock released, exit 0.

use super::apply::{ready_for_journal, send};
use super::connect::{ConnectArgs, ConnectOptions, Connection};
use super::lifecycle::{Lifecycle, ServerRead};
use super::plan::make_plan;
use super::{Env, finish, runtime};
use crate::error::Exit;
use crate::load::diagnostic::Diagnostic;
use crate::load::manifest::{self, LoadError};
use crate::load::target::{self, Resolved, TargetFlags};
use crate::plan::Action;
use crate::reconcile::applier::{ApplyOptions, TaskOutcome};
use crate::reconcile::events::{self, FailureMemory};
use crate::state;
use crate::state::store::{LocalStore, StateStore};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch as signal};

/// Options of `taskform watch`.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub apply: ApplyOptions,
    pub debounce: Duration,
    pub retry_interval: Duration,
    pub interval: Option<Duration>,
    pub plan_only: bool,
    pub lock_timeout: Option<Duration>,
    pub connect: ConnectArgs,
    /// `on_change`, `--prune` (with its guard), `--refresh`, `--adopt`.
    pub lifecycle: Lifecycle,
}

/// `taskform watch`.
pub fn watch(args: WatchArgs, env: Env) -> Exit {
    finish(runtime().and_then(|rt| rt.block_on(run(args, env))))
}

struct Watcher<'a> {
    args: WatchArgs,
    env: Env<'a>,
    conn: Option<Connection>,
    resolved: Resolved,
    store: LocalStore,
    failures: FailureMemory,
    cancel: signal::Receiver<bool>,
}

async fn run(args: WatchArgs, env: Env<'_>) -> Result<Exit, String> {
    if !args.dir.is_dir() {
        return Err(format!("cannot watch {}: not a folder", args.dir.display()));
    }
    let settings =
        crate::load::settings::load(&args.dir, env).map_err(|d| diagnostics_message(&d))?;
    let resolved = target::resolve(&args.target, env, &settings);
    let conn = if args.plan_only {
        None
    } else {
        Some(
            Connection::open(
                &ConnectOptions::new(&args.target, &args.connect, "watch"),
                env,
                &settings,
            )
            .await?,
        )
    };
    let resolved = conn.as_ref().map_or(resolved, |c| c.resolved.clone());
    let store = LocalStore::new(&resolved.state);
    let _lock = match args.plan_only {
        true => None,
        false => Some(
            store
                .lock(
                    &crate::state::lock::Holder::this_process("watch"),
                    args.lock_timeout,
                )
                .map_err(|e| e.to_string())?,
        ),
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let root = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    let _watcher = events::start(&root, tx)?;
    let state_dir = std::fs::canonicalize(crate::fsutil::parent_dir(&resolved.state)).ok();
    let ignore = state_dir.filter(|d| d.starts_with(&root) && *d != root);
    let (cancel_tx, cancel) = signal::channel(false);
    tokio::spawn(async move {
        crate::signals::wait_for_shutdown().await;
        tracing::info!("stopping: finishing creates in flight");
        let _ = cancel_tx.send(true);
        crate::signals::wait_for_shutdown().await;
        std::process::exit(Exit::Interrupted.code());
    });
    tracing::info!(dir = %args.dir.display(), debounce_ms = args.debounce.as_millis() as u64, plan_only = args.plan_only, "watching");
    let mut w = Watcher {
        failures: FailureMemory::new(args.retry_interval),
        args,
        env,
        conn,
        resolved,
        store,
        cancel,
    };

    w.reconcile("start").await;
    let mut next_interval = w.args.interval.map(|i| Instant::now() + i);
    loop {
        if *w.cancel.borrow() {
            break;
        }
        let timer = [next_interval, w.failures.next_retry()]
            .into_iter()
            .flatten()
            .min();
        let mut cancel = w.cancel.clone();
        tokio::select! {
            biased;
            _ = cancel.changed() => break,
            Some(first) = rx.recv() => {
                // Trailing debounce: wait for `debounce` of quiet after the last event.
                let mut paths = BTreeSet::new();
                paths.insert(first);
                loop {
                    tokio::select! {
                        Some(p) = rx.recv() => { paths.insert(p); }
                        _ = tokio::time::sleep(w.args.debounce) => break,
                    }
                }
                let relevant: Vec<&PathBuf> = paths.iter().filter(|p| p.as_os_str().is_empty() || events::relevant(p, &root, ignore.as_deref())).collect();
                if relevant.is_empty() {
                    continue;
                }
                for p in relevant.iter().take(20) {
                    tracing::info!(path = %p.strip_prefix(&root).unwrap_or(p).display(), "changed");
                }
                if relevant.len() > 20 {
                    tracing::info!(more = relevant.len() - 20, "more paths changed");
                }
                w.reconcile("change").await;
            }
            _ = sleep_until(timer) => {
                let why = if next_interval.is_some_and(|t| t <= Instant::now()) { "interval" } else { "retry" };
                if why == "interval" {
                    next_interval = w.args.interval.map(|i| Instant::now() + i);
                }
                w.reconcile(why).await;
            }
        }
    }
    tracing::info!("stopped; the state is written and the lock released");
    Ok(Exit::Ok)
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn diagnostics_message(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Watcher<'_> {
    /// Plans the whole folder and applies it (unless plan-only). Never fails: every
    /// problem is logged and the watcher goes on.
    async fn reconcile(&mut self, trigger: &str) {
        let started = Instant::now();
        let loaded = match manifest::load(&self.args.dir, self.env) {
            Ok(l) => l,
            Err(LoadError::Dir(msg)) => {
                tracing::error!(trigger, "{msg}");
                return;
            }
            Err(LoadError::Invalid(diags)) => {
                for d in &diags {
                    tracing::error!(file = %d.file, line = d.line, col = d.col, hint = d.hint.as_deref().unwrap_or(""), "{}", d.message);
                }
                tracing::error!(
                    trigger,
                    problems = diags.len(),
                    "invalid manifests: nothing is applied until they are fixed"
                );
                return;
            }
        };
        let mut state = match self.store.load() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(trigger, "{e}");
                return;
            }
        };
        if let Some(conn) = &self.conn
            && let Err(msg) = state::check_target(&state, &conn.target, &self.store.describe())
        {
            tracing::error!(trigger, "{msg}");
            return;
        }
        let mut read = ServerRead::default();
        if let Some(conn) = &self.conn {
            match self
                .args
                .lifecycle
                .read_server(&mut state, &loaded, &conn.client)
                .await
            {
                Ok(r) => read = r,
                Err(msg) => {
                    tracing::error!(trigger, "cannot read the server: {msg}");
                    return;
                }
            }
        }
        let settled_some = read.changed;
        let mut doc = make_plan(
            &loaded,
            &self.resolved,
            &state,
            &self.args.dir,
            self.args.lifecycle.options(&loaded),
            &read.notes,
        );
        if let Err(msg) = self.args.lifecycle.check_deletes(&doc, &state) {
            tracing::error!(trigger, "{msg}");
            // Everything else is still applied.
            doc.tasks.retain(|t| t.action != Action::Delete);
        }
        for t in doc.tasks.iter().filter(|t| t.action != Action::Unchanged) {
            tracing::info!(task = %t.name, action = t.action.as_str(), file = t.file.as_deref().unwrap_or(""), "planned");
        }
        let s = doc.summary;
        let Some(conn) = &self.conn else {
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
            return;
        };
        // The same failing content is not sent again before its backoff ends.
        let now = Instant::now();
        let mut held = 0;
        doc.tasks.retain(|t| {
            let blocked = t.action.sends() && self.failures.blocked(&t.name, t.hash.as_deref().unwrap_or(""), now);
            if blocked {
                tracing::info!(task = %t.name, "failed recently with this content; retried after its backoff");
                held += 1;
            }
            !blocked
        });
        let mut results = Vec::new();
        if !doc.sends().is_empty() {
            let mut state = match ready_for_journal(&self.store, state, &conn.target, settled_some)
            {
                Ok(s) => s,
                Err(msg) => {
                    tracing::error!(trigger, "{msg}");
                    return;
                }
            };
            results = match send(
                &self.store,
                &mut state,
                &doc,
                conn,
                &self.args.apply,
                self.cancel.clone(),
            )
            .await
            {
                Ok(r) => r,
                Err((r, msg)) => {
                    tracing::error!(trigger, "{msg}");
                    r
                }
            };
        } else if settled_some
            && let Err(msg) = ready_for_journal(&self.store, state, &conn.target, true)
        {
            tracing::error!(trigger, "{msg}");
        }
        let hashes: std::collections::HashMap<&str, &str> = doc
            .tasks
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.hash.as_deref()?)))
            .collect();
        let mut failed = 0;
        let mut in_doubt = 0;
        for r in &results {
            match r.outcome {
                TaskOutcome::Created | TaskOutcome::Updated | TaskOutcome::Deleted => {
                    self.failures.forget(&r.name)
                }
                TaskOutcome::Unsupported => {}
                TaskOutcome::Failed => {
                    failed += 1;
                    self.failures.failed(
                        &r.name,
                        hashes.get(r.name.as_str()).copied().unwrap_or(""),
                        Instant::now(),
                    );
                }
                TaskOutcome::InDoubt => in_doubt += 1,
                TaskOutcome::Skipped => {}
            }
        }
        let count = |o: TaskOutcome| results.iter().filter(|r| r.outcome == o).count();
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
    }
}
