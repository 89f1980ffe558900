//! `taskform apply [DIR | PLAN_FILE]`.

use super::connect::{ConnectArgs, ConnectOptions, Connection};
use super::lifecycle::Lifecycle;
use super::plan::{make_plan, print_plan};
use super::{Env, finish, load_manifests, runtime};
use crate::error::Exit;
use crate::load::manifest::Loaded;
use crate::load::target::{Resolved, TargetFlags};
use crate::plan::document::{self, SavedPlan};
use crate::reconcile::applier::{ApplyOptions, TaskOutcome, TaskResult};
use crate::render::style::ColorChoice;
use crate::render::{self, Format};
use crate::state::store::{LocalStore, StateStore};
use crate::state::{self, State, Target};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `taskform apply`.
#[derive(Debug, Clone)]
pub struct ApplyArgs {
    /// A manifest folder (plan now), or a plan file from `plan --out` (apply exactly it).
    pub path: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub yes: bool,
    pub apply: ApplyOptions,
    pub connect: ConnectArgs,
    pub lock_timeout: Option<Duration>,
    /// A plan file is applied with the options it was made with; the delete guard's
    /// flags (`max_deletes`, `force_prune`) always come from here.
    pub lifecycle: Lifecycle,
    pub color: ColorChoice,
}

/// `taskform apply`.
pub fn apply(args: ApplyArgs, env: Env) -> Exit {
    finish(runtime().and_then(|rt| rt.block_on(run(args, env))))
}

async fn run(args: ApplyArgs, env: Env<'_>) -> Result<Exit, String> {
    let saved = if args.path.is_file() {
        Some(SavedPlan::load(&args.path)?)
    } else {
        None
    };
    let dir = saved
        .as_ref()
        .map_or_else(|| args.path.clone(), |s| PathBuf::from(&s.dir));
    let loaded = load_manifests(&dir, env).map_err(|msg| match &saved {
        Some(_) if msg.is_empty() => format!("the manifests in {} changed since the plan was made and are now invalid (see above); fix them and make a new plan", dir.display()),
        _ => msg,
    })?;
    let lifecycle = match &saved {
        Some(s) => args.lifecycle.from_options(s.options),
        None => args.lifecycle.clone(),
    };
    let conn = Connection::open(
        &ConnectOptions::new(&args.target, &args.connect, "apply"),
        env,
        &loaded.settings,
    )
    .await?;
    if let Some(saved) = &saved {
        check_saved_target(saved, &conn.resolved)?;
    }
    let store = LocalStore::new(&conn.resolved.state);
    let _lock = store
        .lock(
            &crate::state::lock::Holder::this_process("apply"),
            args.lock_timeout,
        )
        .map_err(|e| e.to_string())?;
    let mut state = store.load().map_err(|e| e.to_string())?;
    state::check_target(&state, &conn.target, &store.describe())?;
    let read = lifecycle
        .read_server(&mut state, &loaded, &conn.client)
        .await?;
    let fresh = make_plan(
        &loaded,
        &conn.resolved,
        &state,
        &dir,
        lifecycle.options(&loaded),
        &read.notes,
    );
    let doc = match saved {
        None => fresh,
        Some(saved) => still_valid(saved, &fresh, &state, &loaded, &args.path)?,
    };

    if args.format == Format::Text {
        print_plan(&doc, Format::Text, args.color, None);
    }
    lifecycle.check_deletes(&doc, &state)?;
    let to_send = doc.sends().len();
    let in_doubt_before = doc.summary.in_doubt;
    let settled_some = read.changed;
    if to_send == 0 {
        if settled_some {
            ready_for_journal(&store, state, &conn.target, true)?;
        }
        finish_output(&args, &doc, &[], false);
        if in_doubt_before > 0 {
            return Err(format!(
                "{in_doubt_before} task(s) in doubt: check whether they exist on the server, then re-run with --recreate-in-doubt to create them"
            ));
        }
        return Ok(Exit::Ok);
    }
    // Applying a saved plan is the approval.
    if !args.yes && !args.path.is_file() {
        confirm(&doc)?;
    }
    // Nothing is written before this point: a refused confirmation changes nothing.
    let mut state = ready_for_journal(&store, state, &conn.target, settled_some)?;

    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        crate::signals::wait_for_shutdown().await;
        tracing::warn!(
            "interrupted: no new creates; waiting for those in flight (interrupt again to exit at once; the journal keeps them safe)"
        );
        let _ = cancel_tx.send(true);
        crate::signals::wait_for_shutdown().await;
        std::process::exit(Exit::Interrupted.code());
    });
    let sent = send(
        &store,
        &mut state,
        &doc,
        &conn,
        &args.apply,
        cancel_rx.clone(),
    )
    .await;
    signals.abort();
    let interrupted = *cancel_rx.borrow();
    let results = match sent {
        Ok(results) => results,
        Err((results, msg)) => {
            finish_output(&args, &doc, &results, interrupted);
            return Err(msg);
        }
    };
    finish_output(&args, &doc, &results, interrupted);
    if results
        .iter()
        .any(|r| r.outcome == TaskOutcome::Failed && matches!(r.http_status, Some(401 | 403)))
    {
        super::report_error(format!(
            "the service refused {}; check it and the project/workspace it is valid for",
            conn.client.credentials().kind()
        ));
    }
    let summary = render::ApplySummary::of(&results);
    if summary.in_doubt + in_doubt_before > 0 {
        eprintln!(
            "tasks in doubt may exist on the server: check them, then re-run with --recreate-in-doubt to create them again"
        );
    }
    Ok(if interrupted {
        Exit::Interrupted
    } else if summary.failed + summary.in_doubt + summary.skipped + in_doubt_before > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}

/// Makes the state ready for a journal: folds what an earlier run left, and makes a
/// new state's lineage and target durable, before a journal refers to them.
pub(super) fn ready_for_journal(
    store: &LocalStore,
    mut state: State,
    target: &Target,
    changed: bool,
) -> Result<State, String> {
    if changed || store.has_journal() || state.serial == 0 || state.target.is_none() {
        state.target.get_or_insert(target.clone());
        store.persist(&mut state).map_err(|e| e.to_string())?;
    }
    Ok(state)
}

/// Sends the plan's creates with a journal, then writes the state. On a state write
/// failure, returns the results with a message that lists every created task ID.
pub(super) async fn send(
    store: &LocalStore,
    state: &mut State,
    doc: &SavedPlan,
    conn: &Connection,
    opts: &ApplyOptions,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<TaskResult>, (Vec<TaskResult>, String)> {
    let (plan, manifests) = doc.manifests_to_send();
    let journal: Arc<dyn crate::state::store::Journal> = match store.open_journal(state) {
        Ok(j) => Arc::from(j),
        Err(e) => return Err((Vec::new(), e.to_string())),
    };
    let started = std::time::Instant::now();
    let applied = crate::reconcile::applier::execute(
        &plan,
        &manifests,
        conn.client.clone(),
        journal.clone(),
        opts,
        cancel,
    )
    .await;
    tracing::debug!(
        tasks = applied.results.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "creates finished"
    );
    journal.close();
    // The run's records, applied in memory: the state is complete even if a journal
    // write failed (disk full) after a task was created.
    crate::state::journal::replay(state, &applied.records);
    match store.persist(state) {
        Ok(()) => Ok(applied.results),
        Err(e) => {
            let mut msg = format!(
                "{e}; the next run folds in what the journal {} holds (a task it could not record shows as in doubt). These tasks were created:",
                store.journal_path().display()
            );
            for r in applied
                .results
                .iter()
                .filter(|r| r.outcome == TaskOutcome::Created)
            {
                msg.push_str(&format!(
                    "\n  created {} as task {}",
                    r.name,
                    r.task_id.as_deref().unwrap_or("?")
                ));
            }
            Err((applied.results, msg))
        }
    }
}

/// Prints the run's results in the chosen format.
fn finish_output(args: &ApplyArgs, doc: &SavedPlan, results: &[TaskResult], interrupted: bool) {
    let mut out = std::io::stdout().lock();
    let text = match args.format {
        Format::Json => render::apply_json(doc, results),
        Format::Markdown => format!(
            "{}\n{}",
            render::plan_markdown(doc, "run `taskform plan` to see it in full"),
            render::apply_markdown(results, interrupted)
        ),
        Format::Text => {
            eprint!("{}", render::apply_problems_text(results));
            if results.is_empty() {
                return;
            }
            format!("{}\n", render::apply_summary_line(results, interrupted))
        }
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A saved plan is applied only to the target it was made for (where it recorded one).
fn check_saved_target(saved: &SavedPlan, resolved: &Resolved) -> Result<(), String> {
    let now = super::plan::plan_target(resolved);
    let pairs = [
        (
            "endpoint host",
            &saved.target.endpoint_host,
            &now.endpoint_host,
        ),
        ("project", &saved.target.project_id, &now.project_id),
        ("workspace", &saved.target.workspace, &now.workspace),
    ];
    for (what, planned, current) in pairs {
        if let (Some(p), Some(c)) = (planned, current)
            && p != c
        {
            return Err(format!(
                "the plan was made for {what} {p}, but this apply targets {c}; make the plan for this target, or apply with the plan's settings"
            ));
        }
    }
    Ok(())
}

/// Whether a saved plan may still be applied: the state and the manifests are as they
/// were, or a fresh plan sends exactly the same requests.
fn still_valid(
    saved: SavedPlan,
    fresh: &SavedPlan,
    state: &State,
    loaded: &Loaded,
    file: &std::path::Path,
) -> Result<SavedPlan, String> {
    let mut reasons = Vec::new();
    if saved.state.lineage.is_empty() && !state.lineage.is_empty() {
        reasons.push(format!(
            "the state moved on (empty in the plan, serial {} now: something was applied since)",
            state.serial
        ));
    } else if saved.state.lineage != state.lineage {
        reasons.push(format!(
            "the state is another one (lineage {} in the plan, {} now)",
            saved.state.lineage, state.lineage
        ));
    } else if saved.state.serial != state.serial {
        reasons.push(format!(
            "the state moved on (serial {} in the plan, {} now: something was applied since)",
            saved.state.serial, state.serial
        ));
    }
    let digests = document::manifests_ref(loaded);
    if digests.digest != saved.manifests.digest {
        let changed: Vec<&str> = digests
            .files
            .keys()
            .chain(saved.manifests.files.keys())
            .filter(|f| digests.files.get(*f) != saved.manifests.files.get(*f))
            .map(|f| f.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        reasons.push(format!(
            "the manifests changed since the plan was made ({})",
            changed.join(", ")
        ));
    }
    if reasons.is_empty() {
        return Ok(saved);
    }
    if saved.sends() == fresh.sends() {
        tracing::info!(file = %file.display(), "{}; but a fresh plan sends exactly the same requests, so the saved plan is applied", reasons.join("; "));
        return Ok(saved);
    }
    Err(format!(
        "refusing to apply {}: {}, and a fresh plan would send different requests. Make a new plan (`taskform plan --out {}`), review it, and apply that",
        file.display(),
        reasons.join("; "),
        file.display()
    ))
}

/// Asks on a terminal; refuses without one.
fn confirm(doc: &SavedPlan) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        return Err("refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively".into());
    }
    let s = doc.summary;
    let mut what = Vec::new();
    for (n, verb) in [
        (s.create, "create"),
        (s.replace, "replace"),
        (s.update, "update"),
        (s.delete, "delete"),
    ] {
        if n > 0 {
            what.push(format!("{verb} {n}"));
        }
    }
    eprint!(
        "\nApply these changes ({})? Only 'yes' will be accepted: ",
        what.join(", ")
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err("apply cancelled; nothing was sent".into())
    }
}
