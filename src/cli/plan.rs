//! `taskform plan` and `taskform show`.

use super::connect::{ConnectArgs, Connection};
use super::{Env, block_on, finish, load_manifests};
use crate::error::{Error, Exit};
use crate::load::target::{self, TargetFlags};
use crate::plan::document::SavedPlan;
use crate::reconcile::applier::{ApplyOptions, Silent};
use crate::reconcile::{self, Context, Decision, Policy, Sending};
use crate::render::style::{ColorChoice, Style};
use crate::render::{self, Format};
use crate::state::Target;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `taskform plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub detailed_exitcode: bool,
    pub policy: Policy,
    /// Used only with `--refresh` or `--adopt` (plan is offline otherwise).
    pub connect: ConnectArgs,
    pub color: ColorChoice,
    /// Also write the plan file here.
    pub out: Option<PathBuf>,
    /// Where else the full plan is (Markdown, e.g. a CI artifact), for the note of a
    /// Markdown plan cut to fit a comment.
    pub full_plan_hint: Option<String>,
    /// `--all-envs`: every environment the repo declares, in one document.
    pub all_envs: bool,
    /// Text: list unchanged tasks too.
    pub show_unchanged: bool,
    /// `--notify`: an alert to the receivers of `notify:` when the plan finds drift or
    /// duplicates (a scheduled drift check).
    pub notify: bool,
}

/// Prints a plan in a format. `out` names the plan file for the Markdown size note.
pub fn print_plan(
    doc: &SavedPlan,
    format: Format,
    color: ColorChoice,
    out: Option<&Path>,
    show_unchanged: bool,
) {
    print_plan_hinted(doc, format, color, out, None, show_unchanged)
}

/// [`print_plan`], with where else the full plan is (`--full-plan-hint`).
pub fn print_plan_hinted(
    doc: &SavedPlan,
    format: Format,
    color: ColorChoice,
    out: Option<&Path>,
    hint: Option<&str>,
    show_unchanged: bool,
) {
    let text = match format {
        Format::Json => render::plan_json(doc),
        Format::Text => render::plan_text(doc, Style::for_stdout(color), show_unchanged),
        Format::Markdown => {
            // The command that shows this plan in full (with its environment).
            let args = match &doc.environment {
                Some(e) => format!("--env {e} {}", doc.dir),
                None => doc.dir.clone(),
            };
            render::plan_markdown(doc, &render::full_plan_hint(out, hint, &args))
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `taskform plan [DIR]`: offline and without credentials, unless `--refresh` or
/// `--adopt` asks to read the server (which never writes the state).
pub fn plan(args: PlanArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(args: PlanArgs, env: Env<'_>) -> Result<Exit, Error> {
    if args.all_envs {
        return all_envs(args, env).await;
    }
    let environment = super::environment(&args.target, env);
    let doc = plan_one(&args, environment.as_deref(), env).await?;
    if let Some(out) = &args.out {
        doc.save(out)?;
        tracing::info!(file = %out.display(), "plan saved; apply it with `taskform apply {}`", out.display());
    }
    print_plan_hinted(
        &doc,
        args.format,
        args.color,
        args.out.as_deref(),
        args.full_plan_hint.as_deref(),
        args.show_unchanged,
    );
    Ok(if args.detailed_exitcode && doc.would_send() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// `plan --all-envs`: every environment against its own state and target, no lock
/// taken, one document: a section per environment and a combined summary.
async fn all_envs(args: PlanArgs, env: Env<'_>) -> Result<Exit, Error> {
    super::refuse_target_flags_for_all_envs(&args.target, "plans")?;
    let settings = crate::load::settings::load(&args.dir, env).map_err(Error::Invalid)?;
    if settings.environments.is_empty() {
        return Err(Error::Command(format!(
            "--all-envs: {} declares no environments",
            args.dir.join(crate::load::settings::FILE_NAME).display()
        )));
    }
    // One environment that cannot be planned (a wrong password, an invalid overlay)
    // gets its own error section; the others are planned.
    let mut plans: Vec<(String, Result<SavedPlan, String>)> = Vec::new();
    for name in &settings.environments {
        // Every log line of this environment's plan names it.
        let span = tracing::info_span!("environment", name = %crate::render::escape(name));
        match tracing::Instrument::instrument(plan_one(&args, Some(name), env), span).await {
            Ok(doc) => plans.push((name.clone(), Ok(doc))),
            Err(e) => {
                let text = super::error_text(&e);
                let (first, rest) = crate::load::diagnostic::split_lines(&text);
                tracing::error!("environment {}: {first}", crate::render::escape(name));
                for line in rest {
                    tracing::error!("  {line}");
                }
                plans.push((name.clone(), Err(text)));
            }
        }
    }
    let failed = plans.iter().any(|(_, p)| p.is_err());
    if let Some(out) = &args.out {
        // The reviewed plans are the applied ones: never a file missing one.
        if failed {
            tracing::error!(
                "no plan file was written: an environment could not be planned (see its error)"
            );
        } else {
            let ok: Vec<(&str, &SavedPlan)> = plans
                .iter()
                .filter_map(|(n, p)| Some((n.as_str(), p.as_ref().ok()?)))
                .collect();
            let files = SavedPlan::save_environments(&ok, out)?;
            match files.as_slice() {
                [one] if !out.is_dir() => tracing::info!(
                    file = %one.display(),
                    "plans saved; apply one with `taskform apply --env NAME {}`",
                    one.display()
                ),
                _ => tracing::info!(
                    folder = %out.display(),
                    "plans saved, one file per environment; apply one with `taskform apply {}`",
                    out.join("NAME.json").display()
                ),
            }
        }
    }
    let text = match args.format {
        Format::Json => render::environments_json(&plans),
        Format::Text => {
            render::environments_text(&plans, Style::for_stdout(args.color), args.show_unchanged)
        }
        Format::Markdown => render::environments_markdown(
            &plans,
            &render::full_plan_hint(
                None,
                args.full_plan_hint.as_deref(),
                &format!("--env NAME {}", args.dir.display()),
            ),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(if failed {
        Exit::Error
    } else if args.detailed_exitcode
        && plans
            .iter()
            .any(|(_, d)| d.as_ref().is_ok_and(SavedPlan::would_send))
    {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// Plans one environment (or the repo, without environments).
async fn plan_one(
    args: &PlanArgs,
    environment: Option<&str>,
    env: Env<'_>,
) -> Result<SavedPlan, Error> {
    let loaded = load_manifests(&args.dir, environment, env)?;
    let scoped = loaded.settings.scope.over(env);
    let env: Env = &scoped;
    let online = args.policy.refresh || args.policy.adopt;
    let conn = match online {
        true => Some(
            Connection::open(
                &args.target,
                &args.connect,
                "plan --refresh/--adopt",
                env,
                &loaded.settings,
                &args.dir,
            )
            .await?,
        ),
        false => None,
    };
    let resolved = match &conn {
        Some(c) => c.resolved.clone(),
        None => target::resolve(&args.target, env, &loaded.settings, &args.dir)?,
    };
    // Offline, the state is checked against the target when both parts are known.
    let known: Option<Target> = match &conn {
        Some(c) => Some(c.target.clone()),
        None => resolved
            .project_id
            .clone()
            .zip(resolved.workspace.clone())
            .map(|(project_id, workspace)| Target {
                project_id,
                workspace,
            }),
    };
    let store = super::open_store(&resolved, &args.dir, env, "plan")?;
    if known.is_none() {
        // Offline with part of the target unknown: the parts that are known must still
        // match the state's.
        crate::state::check_known_parts(
            &store.load()?,
            resolved.project_id.as_deref(),
            resolved.workspace.as_deref(),
            &store.describe(),
        )?;
    }
    super::warn_if_empty(&loaded, &args.dir);
    let ctx = Context {
        origin: reconcile::Origin::Command(crate::state::lock::user_at_host(env, "plan")),
        loaded: &loaded,
        resolved: &resolved,
        dir: &args.dir,
        store: store.as_ref(),
        target: known.as_ref(),
        api: conn.as_ref().map(|c| &c.api),
        policy: &args.policy,
    };
    let sending = Sending {
        options: &ApplyOptions::default(),
        cancel: tokio::sync::watch::channel(false).1,
        progress: Arc::new(Silent),
    };
    let policy = &args.policy;
    let report = reconcile::once(
        &ctx,
        None,
        |doc, state| {
            if !policy.force_prune
                && let Err(refused) = policy.check_deletes(doc, state)
            {
                let text = refused.to_string();
                let (first, rest) = crate::load::diagnostic::split_lines(&text);
                tracing::warn!("apply would refuse this plan: {first}");
                for line in rest {
                    tracing::warn!("{line}");
                }
            }
            warn_left_on_server(doc);
            // A plan stops before anything is written or sent.
            Ok(Decision::Stop)
        },
        &sending,
    )
    .await?;
    if args.notify {
        let receivers = loaded.settings.notify.clone().unwrap_or_default();
        super::notify::drift_check(&report.doc, &receivers, env).await;
    }
    Ok(report.doc)
}

/// Remote tasks apply leaves alone without `--prune` are named on stderr: they stay on
/// the server (and a superseded one may still be scheduled).
fn warn_left_on_server(doc: &SavedPlan) {
    let orphans: Vec<&str> = doc
        .tasks
        .iter()
        .filter(|t| t.action == crate::plan::Action::Orphan)
        .map(|t| t.name.as_str())
        .collect();
    if !orphans.is_empty() {
        tracing::warn!(
            "{} orphan task(s) stay on the server (no manifest declares them; apply leaves them alone, --prune deletes them): {}",
            orphans.len(),
            orphans.join(", ")
        );
    }
    let superseded: Vec<String> = doc
        .tasks
        .iter()
        .filter(|t| t.action == crate::plan::Action::Superseded)
        .map(|t| format!("{} (task {})", t.name, t.task_id.as_deref().unwrap_or("?")))
        .collect();
    if !superseded.is_empty() {
        tracing::warn!(
            "{} superseded task(s) that replaces left stay on the server and may still be scheduled (--prune deletes them): {}",
            superseded.len(),
            superseded.join(", ")
        );
    }
}

/// `taskform show FILE`: renders a saved plan.
pub fn show(
    file: PathBuf,
    format: Format,
    color: ColorChoice,
    hint: Option<String>,
    show_unchanged: bool,
    environment: Option<String>,
) -> Exit {
    finish(
        SavedPlan::load_for(&file, environment.as_deref())
            .map(|doc| {
                print_plan_hinted(
                    &doc,
                    format,
                    color,
                    Some(&file),
                    hint.as_deref(),
                    show_unchanged,
                );
                Exit::Ok
            })
            .map_err(Error::from),
    )
}
