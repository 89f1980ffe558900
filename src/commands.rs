//! The commands behind the CLI: each takes its options, does its work and returns the
//! process's [`Exit`]. `main.rs` only parses arguments and calls these.

use crate::diagnostic::Diagnostic;
use crate::exit::Exit;
use crate::manifest::{self, LoadError, Loaded};
use crate::plan::{self, PlanOptions};
use crate::render::{self, Format};
use crate::state::{self, Target};
use crate::store::{LocalStore, StateStore};
use crate::style::{ColorChoice, Style};
use crate::target::{self, Resolved, TargetFlags};
use std::io::Write;
use std::path::PathBuf;

/// How commands read the environment (tests pass their own).
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Prints an error for a person on stderr.
pub fn report_error(message: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

fn report_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "error: {d}");
    }
    let files: std::collections::BTreeSet<&str> = diags.iter().map(|d| d.file.as_str()).collect();
    let _ = writeln!(
        err,
        "{} problem{} in {} file{}; nothing was planned or sent",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
}

/// Loads DIR, reporting problems; `None` means the caller exits 1.
pub fn load_manifests(dir: &std::path::Path, env: Env) -> Option<Loaded> {
    let started = std::time::Instant::now();
    match manifest::load(dir, env) {
        Ok(loaded) => {
            tracing::debug!(manifests = loaded.manifests.len(), files = loaded.file_digests.len(), elapsed_ms = started.elapsed().as_millis() as u64, "manifests loaded");
            Some(loaded)
        }
        Err(LoadError::Dir(msg)) => {
            report_error(msg);
            None
        }
        Err(LoadError::Invalid(diags)) => {
            report_diagnostics(&diags);
            None
        }
    }
}

/// `taskform validate [DIR]`.
pub fn validate(dir: PathBuf, env: Env) -> Exit {
    match load_manifests(&dir, env) {
        Some(l) => {
            println!("{} task{} in {} file{} valid.", l.manifests.len(), if l.manifests.len() == 1 { "" } else { "s" }, l.file_digests.len(), if l.file_digests.len() == 1 { " is" } else { "s are" });
            Exit::Ok
        }
        None => Exit::Error,
    }
}

/// Options of `taskform plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub detailed_exitcode: bool,
    pub recreate_in_doubt: bool,
    pub color: ColorChoice,
}

/// The target when both project and workspace are known.
pub fn known_target(r: &Resolved) -> Option<Target> {
    Some(Target { project_id: r.project_id.clone()?, workspace: r.workspace.clone()? })
}

/// `taskform plan [DIR]`: offline, no credentials.
pub fn plan(args: PlanArgs, env: Env) -> Exit {
    let Some(loaded) = load_manifests(&args.dir, env) else { return Exit::Error };
    let resolved = target::resolve(&args.target, env, &loaded.settings);
    let store = LocalStore::new(&resolved.state);
    let state = match store.load() {
        Ok(s) => s,
        Err(e) => {
            report_error(e);
            return Exit::Error;
        }
    };
    if let Some(t) = known_target(&resolved) {
        if let Err(msg) = state::check_target(&state, &t, &store.describe()) {
            report_error(msg);
            return Exit::Error;
        }
    }
    let plan = plan::plan(&loaded.manifests, &state, PlanOptions { recreate_in_doubt: args.recreate_in_doubt });
    let text = match args.format {
        Format::Json => render::plan_json(&plan),
        Format::Text => render::plan_text(&plan, &loaded.manifests, &state, Style::for_stdout(args.color)),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if args.detailed_exitcode && plan.has_changes() { Exit::Changes } else { Exit::Ok }
}
