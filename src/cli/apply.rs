//! `taskform apply [DIR | PLAN_FILE]`.

use super::connect::{ConnectArgs, Connection};
use super::plan::print_plan;
use super::progress::Bar;
use super::{Env, block_on, load_manifests, prompt};
use crate::error::{Error, Exit};
use crate::load::target::{Resolved, StateSource, TargetFlags};
use crate::location::StateLocation;
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
    /// Text: list unchanged tasks too.
    pub show_unchanged: bool,
    /// `--dir`: the manifest folder of a plan file applied from elsewhere.
    pub dir: Option<PathBuf>,
    /// `--notify`: the outcome to the receivers of `notify:`.
    pub notify: bool,
}

/// `taskform apply`.
pub fn apply(args: ApplyArgs, env: Env) -> Exit {
    let notify = args.notify;
    // Where the receivers are when the apply stops before reading taskform.yaml.
    let settings_dir = args
        .dir
        .clone()
        .or_else(|| args.path.is_dir().then(|| args.path.clone()));
    let environment = super::environment(&args.target, env);
    block_on(async move {
        let mut note = super::notify::ApplyNote::default();
        let result = run(args, env, &mut note).await;
        if notify {
            if note.receivers.is_empty()
                && let Some(dir) = &settings_dir
                && let Ok(s) = crate::load::manifest::settings_for(dir, environment.as_deref(), env)
            {
                note.receivers = s.notify.unwrap_or_default();
                note.environment = s.environment;
            }
            super::notify::apply_outcome(&result, note, env).await;
        }
        result
    })
}

async fn run(
    args: ApplyArgs,
    env: Env<'_>,
    note: &mut super::notify::ApplyNote,
) -> Result<Exit, Error> {
    let saved = match args.path.is_file() {
        // A file of several environments' plans gives the one --env (or TASKFORM_ENV)
        // names.
        true => Some(SavedPlan::load_for(
            &args.path,
            super::environment(&args.target, env).as_deref(),
        )?),
        false => None,
    };
    if let Some(s) = &saved {
        refuse_other_flags(&args, s)?;
    }
    let saved = match (saved, &args.dir) {
        (Some(s), Some(dir)) => Some(s.with_dir(dir)),
        (None, Some(_)) => {
            return Err(Error::Command(format!(
                "--dir names the manifest folder of a plan file; {} is a folder: apply it as `taskform apply {}`",
                args.path.display(),
                args.path.display()
            )));
        }
        (saved, None) => saved,
    };
    let dir = saved
        .as_ref()
        .map_or_else(|| args.path.clone(), |s| PathBuf::from(&s.dir));
    let environment = match &saved {
        // A saved plan applies to the environment it was made for (`--env` may only
        // confirm it; TASKFORM_ENV is not asked).
        Some(s) => match (&s.environment, &args.target.environment) {
            (Some(planned), Some(now)) if planned != now => {
                return Err(Error::Command(format!(
                    "the plan was made for the environment {planned}, not {now}; apply it without --env, or make a plan with --env {now}"
                )));
            }
            (None, Some(now)) => {
                return Err(Error::Command(format!(
                    "the plan was made without an environment; apply it without --env {now}"
                )));
            }
            (planned, _) => planned.clone(),
        },
        None => super::environment(&args.target, env),
    };
    let loaded = match (load_manifests(&dir, environment.as_deref(), env), &saved) {
        (Err(e @ Error::Invalid(_)), Some(_)) => {
            super::report(&e);
            return Err(Error::Command(format!(
                "the manifests in {} changed since the plan was made and are now invalid (see above); fix them and make a new plan",
                dir.display()
            )));
        }
        (Err(Error::Folder(e)), Some(_)) => {
            return Err(Error::Command(match args.dir {
                Some(_) => format!("the manifest folder {} cannot be read: {e}", dir.display()),
                None => format!(
                    "the plan file says its manifest folder is {} (relative to the plan file's folder), and there is none: was the plan file moved (a downloaded artifact)? Name the folder the plan was made for: `taskform apply {}{} --dir DIR`",
                    dir.display(),
                    args.path.display(),
                    crate::plan::document::env_flag(environment.as_deref()),
                ),
            }));
        }
        (other, _) => other?,
    };
    note.receivers = loaded.settings.notify.clone().unwrap_or_default();
    note.environment = loaded.settings.environment.clone();
    let scoped = loaded.settings.scope.over(env);
    let env: Env = &scoped;
    let policy = match &saved {
        Some(s) => args.policy.for_saved(s),
        None => args.policy.clone(),
    };
    let mut conn = Connection::open(
        &args.target,
        &args.connect,
        "apply",
        env,
        &loaded.settings,
        &dir,
    )
    .await?;
    let store = match &saved {
        Some(saved) => {
            saved.check_target(&TargetRef::of(&conn.resolved))?;
            // With --dir the plan file is not where it was made: its state path means
            // nothing here, the state is the one the folder resolves (the plan's
            // lineage and serial must match it).
            // A PostgreSQL state is named by its identity (checked as always); a file
            // state named by --state/TASKFORM_STATE is the one the user chose.
            if args.dir.is_none() || crate::location::is_postgres_url(&saved.state_path) {
                conn.resolved.state = saved_state(saved, &conn.resolved)?;
            }
            state::open(&conn.resolved.state, env, "apply")?
        }
        None => super::open_store(&conn.resolved, &dir, env, "apply")?,
    };
    let me = Holder::this_process("apply").sending(conn.client.longest_send());
    let _lock = store.lock(&me, args.lock_timeout)?;
    let ctx = Context {
        origin: reconcile::Origin::Command(crate::state::lock::user_at_host(env, "apply")),
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
                print_plan(doc, Format::Text, args.color, None, args.show_unchanged);
            }
            policy.check_deletes(doc, state)?;
            if doc.sends().is_empty() {
                return Ok(Decision::Apply);
            }
            // Before the prompt: a suspended state is not applied to.
            reconcile::Suspended::check(&ctx, state)?;
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
    let report = match report {
        Ok(r) => r,
        Err(reconcile::Error::Remote(e)) if matches!(e.status(), Some(401 | 403)) => {
            let hint = e
                .failure()
                .map(|f| refused(&conn, f.status, f.error_code.as_deref(), f.to_string()));
            let error = Error::Remote(e);
            note.error = Some(match &hint {
                Some(h) => format!("{}\n{}", super::error_text(&error), super::error_text(h)),
                None => super::error_text(&error),
            });
            super::report(&error);
            if let Some(hint) = hint {
                super::report(&hint);
            }
            return Err(Error::Reported);
        }
        Err(e) => return Err(e.into()),
    };
    let doc = &report.doc;
    let in_doubt_before = doc.summary.in_doubt;
    if doc.sends().is_empty() {
        finish_output(&args, doc, &[], false);
        if in_doubt_before > 0 {
            return Err(Error::Command(format!(
                "{in_doubt_before} task(s) in doubt: check the tasks of their names on the server (named above), then re-run with --recreate-in-doubt, which records one with the content sent and creates the task again only when none has it (always, where the endpoint offers no search)"
            )));
        }
        return Ok(Exit::Ok);
    }
    let interrupted = *cancel.borrow();
    let results = &report.results;
    note.outcome(results, interrupted);
    finish_output(&args, doc, results, interrupted);
    if let Some(e) = report.persist_error {
        return Err(e.into());
    }
    if let Some(r) = results
        .iter()
        .find(|r| r.outcome == TaskOutcome::Failed && matches!(r.http_status, Some(401 | 403)))
    {
        super::report(&refused(
            &conn,
            r.http_status,
            r.error_code.as_deref(),
            render::detail(r),
        ));
    }
    let summary = render::ApplySummary::of(results);
    if summary.in_doubt + in_doubt_before > 0 {
        eprintln!(
            "tasks in doubt may exist on the server: the next apply settles them by searching the service; --recreate-in-doubt records one with the content sent and creates the task again only when none has it"
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

/// What to say after the service refused a request with HTTP 401/403: the workspace
/// for a 403 `DLG.0818` (the credential is valid, the workspace is not its), else the
/// credential.
fn refused(conn: &Connection, status: Option<u16>, code: Option<&str>, detail: String) -> Error {
    let kind = conn.client.credentials().kind();
    Error::Command(if status == Some(403) && code == Some("DLG.0818") {
        format!(
            "the service refused access to workspace {} of project {} ({detail}); check --workspace / TASKFORM_WORKSPACE / `workspace:` in taskform.yaml and the permissions of {kind}",
            conn.target.workspace, conn.target.project_id,
        )
    } else {
        format!("the service refused {kind}; check it and the project/workspace it is valid for")
    })
}

/// A saved plan applies to the state it was made against; a state named otherwise
/// (`--state`, `TASKFORM_STATE`) is refused with both named.
fn saved_state(saved: &SavedPlan, resolved: &Resolved) -> Result<StateLocation, Error> {
    let named = resolved.state.to_string();
    if crate::location::is_postgres_url(&saved.state_path) {
        // The plan file holds no password: the state is opened as this apply resolves
        // it, which must be the same one.
        return match &resolved.state {
            StateLocation::Postgres(pg) if pg.identity() == saved.state_path => {
                Ok(resolved.state.clone())
            }
            _ => Err(Error::Command(format!(
                "the plan was made against the PostgreSQL state {}, but this apply resolves the state {named}; give the same --state / TASKFORM_STATE / `state:` (and --state-name) as the plan, with the password in PGPASSWORD or ~/.pgpass",
                saved.state_path
            ))),
        };
    }
    let planned = PathBuf::from(&saved.state_path);
    match (resolved.state_source, &resolved.state) {
        (StateSource::Flag | StateSource::Env, StateLocation::File(now))
            if same_file(now, &planned) =>
        {
            Ok(StateLocation::File(planned))
        }
        (StateSource::Flag | StateSource::Env, _) => Err(Error::Command(format!(
            "the plan was made against the state {}, but this apply names the state {named}; apply the plan without --state/TASKFORM_STATE, or make a plan against {named}",
            planned.display(),
        ))),
        _ => Ok(StateLocation::File(planned)),
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let abs = |p: &std::path::Path| {
        std::env::current_dir()
            .map(|cwd| crate::fsutil::normalize(&cwd.join(p)))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    abs(a) == abs(b)
}

/// A saved plan is applied with the options it was made with: a lifecycle flag that
/// asks for something else is refused rather than silently ignored.
fn refuse_other_flags(args: &ApplyArgs, saved: &SavedPlan) -> Result<(), Error> {
    let o = saved.options;
    let p = &args.policy;
    let mut other = Vec::new();
    if p.prune && !o.prune {
        other.push("--prune");
    }
    if p.refresh && !o.refresh {
        other.push("--refresh");
    }
    if p.adopt && !o.adopt {
        other.push("--adopt");
    }
    if p.recreate_in_doubt && !o.recreate_in_doubt {
        other.push("--recreate-in-doubt");
    }
    if p.destroy && !o.destroy {
        other.push("--destroy");
    }
    if p.on_change.is_some_and(|c| c != o.on_change) {
        other.push("--on-change");
    }
    if !p.targets.is_empty() && p.targets != saved.targets {
        other.push("--target");
    }
    if !p.labels.is_empty() && p.labels != saved.labels {
        other.push("--label");
    }
    if other.is_empty() {
        return Ok(());
    }
    Err(Error::Command(format!(
        "{} cannot change a saved plan: {} was made without it and is applied exactly as it was made; make a new plan with the flag (`taskform plan {}{} {} --out {}`)",
        other.join(", "),
        args.path.display(),
        saved.dir,
        crate::plan::document::env_flag(saved.environment.as_deref()),
        other.join(" "),
        args.path.display()
    )))
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
