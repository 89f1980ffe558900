//! `taskform plan` and `taskform show`.

use super::{Env, finish, load_manifests};
use crate::exit::Exit;
use crate::manifest::Loaded;
use crate::plan::PlanOptions;
use crate::render::{self, Format};
use crate::saved_plan::{self, PlanTarget, SavedPlan};
use crate::state::{self, State, Target};
use crate::store::{LocalStore, StateStore};
use crate::style::{ColorChoice, Style};
use crate::target::{self, Resolved, TargetFlags};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options of `taskform plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub detailed_exitcode: bool,
    pub recreate_in_doubt: bool,
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
        endpoint_host: saved_plan::endpoint_host(r.endpoint.as_deref()),
        project_id: r.project_id.clone(),
        workspace: r.workspace.clone(),
    }
}

/// Plans DIR against the state: shared by plan and apply.
pub fn make_plan(
    loaded: &Loaded,
    resolved: &Resolved,
    state: &State,
    dir: &Path,
    recreate_in_doubt: bool,
) -> SavedPlan {
    let plan = crate::plan::plan(&loaded.manifests, state, PlanOptions { recreate_in_doubt });
    SavedPlan::new(
        &plan,
        loaded,
        state,
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

/// `taskform plan [DIR]`: offline, no credentials.
pub fn plan(args: PlanArgs, env: Env) -> Exit {
    finish(run(args, env))
}

fn run(args: PlanArgs, env: Env) -> Result<Exit, String> {
    let loaded = load_manifests(&args.dir, env)?;
    let resolved = target::resolve(&args.target, env, &loaded.settings);
    let store = LocalStore::new(&resolved.state);
    let state = store.load().map_err(|e| e.to_string())?;
    if let Some(t) = known_target(&resolved) {
        state::check_target(&state, &t, &store.describe())?;
    }
    let doc = make_plan(
        &loaded,
        &resolved,
        &state,
        &args.dir,
        args.recreate_in_doubt,
    );
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
