//! `taskform plan` and `taskform show`.

use super::connect::{ConnectArgs, ConnectOptions, Connection};
use super::lifecycle::Lifecycle;
use super::{Env, finish, load_manifests, runtime};
use crate::error::Exit;
use crate::load::manifest::Loaded;
use crate::load::target::{self, Resolved, TargetFlags};
use crate::plan::PlanOptions;
use crate::plan::document::{self, PlanTarget, SavedPlan};
use crate::render::style::{ColorChoice, Style};
use crate::render::{self, Format};
use crate::state::store::{LocalStore, StateStore};
use crate::state::{self, State, Target};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options of `taskform plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub detailed_exitcode: bool,
    pub lifecycle: Lifecycle,
    /// Used only with `--refresh` or `--adopt` (plan is offline otherwise).
    pub connect: ConnectArgs,
    pub color: ColorChoice,
    /// Also write the plan file here.
    pub out: Option<PathBuf>,
}

/// The target when both project and workspace are known.
pub fn known_target(r: &Resolved) -> Option<Target> {
    Some(Target {
        project_id: r.project_id.clone()?,
        workspace: r.workspace.clone()?,
    })
}

/// What a plan records of its target.
pub fn plan_target(r: &Resolved) -> PlanTarget {
    PlanTarget {
        endpoint_host: crate::endpoint::endpoint_host(r.endpoint.as_deref()),
        project_id: r.project_id.clone(),
        workspace: r.workspace.clone(),
    }
}

/// Plans DIR against the state: shared by plan, apply and watch. `notes` adds notes
/// by task name (drift, adoptions).
pub fn make_plan(
    loaded: &Loaded,
    resolved: &Resolved,
    state: &State,
    dir: &Path,
    options: PlanOptions,
    notes: &BTreeMap<String, String>,
) -> SavedPlan {
    let plan = crate::plan::plan(&loaded.manifests, state, options);
    SavedPlan::new(
        &plan,
        options,
        loaded,
        state,
        notes,
        plan_target(resolved),
        dir,
        &resolved.state,
    )
}

/// Prints a plan in a format. `out` names the plan file for the Markdown size note.
pub fn print_plan(doc: &SavedPlan, format: Format, color: ColorChoice, out: Option<&Path>) {
    let text = match format {
        Format::Json => render::plan_json(doc),
        Format::Text => render::plan_text(doc, Style::for_stdout(color)),
        Format::Markdown => {
            let hint = match out {
                Some(f) => format!(
                    "the full plan is in `{}` (`taskform show {}`)",
                    f.display(),
                    f.display()
                ),
                None => "run `taskform plan` to see it in full".to_string(),
            };
            render::plan_markdown(doc, &hint)
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `taskform plan [DIR]`: offline and without credentials, unless `--refresh` or
/// `--adopt` asks to read the server (which never writes the state).
pub fn plan(args: PlanArgs, env: Env) -> Exit {
    if args.lifecycle.refresh || args.lifecycle.adopt {
        finish(runtime().and_then(|rt| rt.block_on(run_online(args, env))))
    } else {
        finish(run(args, env))
    }
}

fn run(args: PlanArgs, env: Env) -> Result<Exit, String> {
    let loaded = load_manifests(&args.dir, env)?;
    let resolved = target::resolve(&args.target, env, &loaded.settings);
    let store = LocalStore::new(&resolved.state);
    let state = store.load().map_err(|e| e.to_string())?;
    if let Some(t) = known_target(&resolved) {
        state::check_target(&state, &t, &store.describe())?;
    }
    finish_plan(&args, &loaded, &resolved, &state, &BTreeMap::new())
}

/// `plan --refresh` / `--adopt`: reads the server into a copy of the state.
async fn run_online(args: PlanArgs, env: Env<'_>) -> Result<Exit, String> {
    let loaded = load_manifests(&args.dir, env)?;
    let conn = Connection::open(
        &ConnectOptions::new(&args.target, &args.connect, "plan --refresh/--adopt"),
        env,
        &loaded.settings,
    )
    .await?;
    let store = LocalStore::new(&conn.resolved.state);
    let mut state = store.load().map_err(|e| e.to_string())?;
    state::check_target(&state, &conn.target, &store.describe())?;
    let read = args
        .lifecycle
        .read_server(&mut state, &loaded, &conn.client)
        .await?;
    finish_plan(&args, &loaded, &conn.resolved, &state, &read.notes)
}

fn finish_plan(
    args: &PlanArgs,
    loaded: &Loaded,
    resolved: &Resolved,
    state: &State,
    notes: &BTreeMap<String, String>,
) -> Result<Exit, String> {
    let doc = make_plan(
        loaded,
        resolved,
        state,
        &args.dir,
        args.lifecycle.options(loaded),
        notes,
    );
    if !args.lifecycle.force_prune
        && let Err(msg) = args.lifecycle.check_deletes(&doc, state)
    {
        tracing::warn!("apply would refuse this plan: {msg}");
    }
    if let Some(out) = &args.out {
        doc.save(out)?;
        tracing::info!(file = %out.display(), "plan saved; apply it with `taskform apply {}`", out.display());
    }
    print_plan(&doc, args.format, args.color, args.out.as_deref());
    Ok(if args.detailed_exitcode && doc.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// `taskform show FILE`: renders a saved plan.
pub fn show(file: PathBuf, format: Format, color: ColorChoice) -> Exit {
    finish(SavedPlan::load(&file).map(|doc| {
        print_plan(&doc, format, color, Some(&file));
        Exit::Ok
    }))
}
