//! `taskform apply [DIR | PLAN_FILE]`.

use super::connect::{ConnectArgs, Connection};
use super::plan::print_plan;
use super::progress::Bar;
use super::{Env, block_on, load_manifests, prompt};
use crate::error::{Error, Exit};
use crate::load::target::TargetFlags;
use crate::plan::document::{SavedPlan, TargetRef};
use crate::reconcile::applier::{ApplyOptions, Progress, Silent, TaskOutcome, TaskResult};
use crate::reconcile::{self, Context, Decision, Policy, Sending};
use crate::render::style::ColorChoice;
use crate::render::{self, Format};
use crate::state::{self, lock::Holder};
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
    /// Draw a progress bar on stderr (a terminal) instead of a log line per task.
    pub progress_bar: bool,
    pub connect: ConnectArgs,
    pub lock_timeout: Option<Duration>,
    /// A plan file is applied with the options it was made with; the delete guard's
    /// flags (`max_deletes`, `force_prune`) always come from here.
    pub policy: Policy,
    pub color: ColorChoice,
}

/// `taskform apply`.
pub fn apply(args: ApplyArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(args: ApplyArgs, env: Env<'_>) -> Result<Exit, Error> {
    let saved = match args.path.is_file() {
        true => Some(SavedPlan::load(&args.path)?),
        false => None,
    };
    let dir = saved
        .as_ref()
        .map_or_else(|| args.path.clone(), |s| PathBuf::from(&s.dir));
    let loaded = match load_manifests(&dir, env) {
        Err(e @ Error::Invalid(_)) if saved.is_some() => {
            super::report(&e);
            return Err(Error::Command(format!(
                "the manifests in {} changed since the plan was made and are now invalid (see above); fix them and make a new plan",
                dir.display()
            )));
        }
        other => other?,
    };
    let policy = match &saved {
        Some(s) => args.policy.for_saved(s.options),
        None => args.policy.clone(),
    };
    let conn =
        Connection::open(&args.target, &args.connect, "apply", env, &loaded.settings).await?;
    if let Some(saved) = &saved {
        saved.check_target(&TargetRef::of(&conn.resolved))?;
    }
    let store = state::open(&conn.resolved.state);
    let _lock = store.lock(&Holder::this_process("apply"), args.lock_timeout)?;
    let ctx = Context {
        loaded: &loaded,
        resolved: &conn.resolved,
        dir: &dir,
        store: store.as_ref(),
        target: Some(&conn.target),
        api: Some(&conn.api),
        policy: &policy,
    };
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let progress: Arc<dyn Progress> = match args.progress_bar {
        true => Arc::new(Bar::new()),
        false => Arc::new(Silent),
    };
    let sending = Sending {
        options: &args.apply,
        cancel: cancel.clone(),
        progress,
    };
    let from_file = saved.is_some();
    let mut signals = None;
    let report = reconcile::once(
        &ctx,
        saved.map(|s| (s, args.path.as_path())),
        |doc, state| {
            if args.format == Format::Text {
                print_plan(doc, Format::Text, args.color, None);
            }
            policy.check_deletes(doc, state)?;
            if doc.sends().is_empty() {
                return Ok(Decision::Apply);
            }
            // Applying a saved plan is the approval.
            if !args.yes && !from_file {
                prompt::confirm(doc).map_err(reconcile::Error::Declined)?;
            }
            signals = Some(super::cancel_on_signals(cancel_tx, "interrupted: no new creates; waiting for those in flight (interrupt again to exit at once; the journal keeps them safe)", true));
            Ok(Decision::Apply)
        },
        &sending,
    )
    .await;
    if let Some(s) = signals {
        s.abort();
    }
    let report = report?;
    let doc = &report.doc;
    let in_doubt_before = doc.summary.in_doubt;
    if doc.sends().is_empty() {
        finish_output(&args, doc, &[], false);
        if in_doubt_before > 0 {
            return Err(Error::Command(format!(
                "{in_doubt_before} task(s) in doubt: check whether they exist on the server, then re-run with --recreate-in-doubt to create them"
            )));
        }
        return Ok(Exit::Ok);
    }
    let interrupted = *cancel.borrow();
    let results = &report.results;
    finish_output(&args, doc, results, interrupted);
    if let Some(e) = report.persist_error {
        return Err(e.into());
    }
    if results
        .iter()
        .any(|r| r.outcome == TaskOutcome::Failed && matches!(r.http_status, Some(401 | 403)))
    {
        super::report(&Error::Command(format!(
            "the service refused {}; check it and the project/workspace it is valid for",
            conn.client.credentials().kind()
        )));
    }
    let summary = render::ApplySummary::of(results);
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

/// Prints the run's results in the chosen format.
fn finish_output(args: &ApplyArgs, doc: &SavedPlan, results: &[TaskResult], interrupted: bool) {
    let mut out = std::io::stdout().lock();
    let text = match args.format {
        Format::Json => render::apply_json(doc, results),
        Format::Markdown => format!(
            "{}\n{}",
            render::plan_markdown(
                doc,
                &render::full_plan_hint(
                    args.path.is_file().then_some(args.path.as_path()),
                    None,
                    &doc.dir
                )
            ),
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
