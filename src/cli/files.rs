//! `taskform validate`, `taskform fmt` and `taskform schema`: the commands about the
//! manifest files themselves (no state, no network).

use super::{Env, finish};
use crate::error::{Error, Exit};
use crate::load::check::{self, Checked};
use crate::load::diagnostic::Diagnostic;
use crate::load::format::{self, Outcome};
use crate::load::{json_schema, settings};
use crate::render;
use std::io::Write;
use std::path::PathBuf;

/// Options of `taskform validate`.
#[derive(Debug, Clone, Default)]
pub struct ValidateArgs {
    /// Folders and files (default: the current folder).
    pub paths: Vec<PathBuf>,
    /// Print the diagnostics as one JSON array on stdout.
    pub json: bool,
}

/// `taskform validate [PATH...]`.
pub fn validate(args: ValidateArgs, env: Env) -> Exit {
    let checked = check::check(&paths_or_here(args.paths), env);
    if args.json {
        print_stdout(&diagnostics_json(&checked));
    } else {
        warn_empty(&checked);
        if !report_problems(&checked, "nothing was planned or sent") {
            let files = checked.files.len();
            let m = checked.tasks;
            match overlay_summary(&checked, env) {
                Some(what) if m == 0 => println!("{what}"),
                _ => println!(
                    "{m} task{} in {files} file{} valid.",
                    if m == 1 { "" } else { "s" },
                    if files == 1 { " is" } else { "s are" }
                ),
            }
        }
    }
    if checked.failed() {
        Exit::Error
    } else {
        Exit::Ok
    }
}

/// For files that hold only an overlay's `patch:`/`remove:` documents (no task of
/// their own): what they are, e.g. `overlays/prod/changes.yaml is valid: patches of 2
/// tasks and 1 removal, for environment prod.`
fn overlay_summary(checked: &Checked, env: Env) -> Option<String> {
    let mut patches = 0;
    let mut selectors = 0;
    let mut removals = 0;
    let mut environments = std::collections::BTreeSet::new();
    for f in &checked.files {
        let text = std::fs::read_to_string(&f.path).ok()?;
        let docs = crate::load::yaml::parse_documents(&text).ok()?;
        for d in &docs {
            match (d.value.get("patch"), d.value.get("remove")) {
                (Some(serde_json::Value::String(n)), _) if n != "*" => patches += 1,
                (Some(_), _) => selectors += 1,
                (_, Some(serde_json::Value::Array(names))) => removals += names.len(),
                (_, Some(_)) => removals += 1,
                _ => return None,
            }
        }
        let dir = check::target_dir_of(&f.path);
        let s = settings::load(&dir, env).ok()?;
        let rel = crate::fsutil::relative_to(&f.path, &dir).ok()?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        let name = s
            .environments
            .iter()
            .find(|e| {
                let own = s
                    .overlay_dirs
                    .iter()
                    .zip(&s.environments)
                    .find(|(_, n)| n == e)
                    .map(|(o, _)| o.clone())
                    .unwrap_or_else(|| format!("{}/{e}", crate::load::environment::OVERLAYS));
                rel.starts_with(&format!("{own}/"))
            })?
            .clone();
        environments.insert(name);
    }
    if patches + selectors + removals == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if selectors > 0 {
        parts.push(format!(
            "{selectors} patch{} of the shared tasks a selector selects",
            if selectors == 1 { "" } else { "es" }
        ));
    }
    if patches > 0 {
        parts.push(format!(
            "a patch of {patches} shared task{}",
            if patches == 1 { "" } else { "s" }
        ));
    }
    if removals > 0 {
        parts.push(format!(
            "{removals} shared task{} left out",
            if removals == 1 { "" } else { "s" }
        ));
    }
    let files: Vec<String> = checked
        .files
        .iter()
        .map(|f| render::escape(&f.display).into_owned())
        .collect();
    Some(format!(
        "{} {} valid: {}, for environment{} {}.",
        files.join(", "),
        if files.len() == 1 { "is" } else { "are" },
        parts.join(" and "),
        if environments.len() == 1 { "" } else { "s" },
        environments.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

fn paths_or_here(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths
    }
}

fn warn_empty(checked: &Checked) {
    for dir in &checked.empty_folders {
        tracing::warn!(
            "no manifests found in {}: check the folder (apply refuses an empty folder without --allow-empty)",
            render::escape(dir)
        );
    }
}

/// Prints what failed the check as `validate` always has (`error: file:line:col:
/// message`, a hint, and a summary line ending in `consequence`); returns whether
/// anything failed.
fn report_problems(checked: &Checked, consequence: &str) -> bool {
    let mut err = std::io::stderr().lock();
    for d in &checked.unreadable {
        let _ = writeln!(err, "error: {}", render::escape_lines(&d.message));
    }
    if !checked.errors.is_empty() {
        for d in &checked.errors {
            let _ = writeln!(err, "error: {}", render::escape_lines(&d.to_string()));
        }
        let n = checked.errors.len();
        let files = checked
            .errors
            .iter()
            .map(|d| d.file.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let _ = writeln!(
            err,
            "{n} problem{} in {files} file{}; {consequence}",
            if n == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" }
        );
    }
    checked.failed()
}

/// `[{"file", "line", "column", "message", "hint", "severity"}]`: problems and
/// warnings sorted by file and position; `line` and `column` are null when unknown.
pub fn diagnostics_json(checked: &Checked) -> String {
    let entry = |d: &Diagnostic, severity: &str| {
        serde_json::json!({
            "file": d.file,
            "line": (d.line > 0).then_some(d.line),
            "column": (d.col > 0).then_some(d.col),
            "message": d.message,
            "hint": d.hint,
            "severity": severity,
        })
    };
    let mut all: Vec<(&Diagnostic, &str)> = checked
        .unreadable
        .iter()
        .chain(&checked.errors)
        .map(|d| (d, "error"))
        .chain(checked.warnings.iter().map(|d| (d, "warning")))
        .collect();
    all.sort_by(|a, b| (&a.0.file, a.0.line, a.0.col).cmp(&(&b.0.file, b.0.line, b.0.col)));
    let list: Vec<serde_json::Value> = all.into_iter().map(|(d, s)| entry(d, s)).collect();
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
    text.push('\n');
    render::json_safe(text)
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Options of `taskform fmt`.
#[derive(Debug, Clone, Default)]
pub struct FmtArgs {
    pub paths: Vec<PathBuf>,
    /// Change nothing; list the files that would change and fail if there are any.
    pub check: bool,
}

/// `taskform fmt [PATH...] [--check]`: rewrites the manifests that load without
/// problems in the canonical style and prints the files it changed (with `--check`,
/// that it would change). Files with problems are reported as `validate` does and
/// left alone.
pub fn fmt(args: FmtArgs, env: Env) -> Exit {
    let checked = check::check(&paths_or_here(args.paths), env);
    warn_empty(&checked);
    let failed = report_problems(&checked, "those files were not formatted");
    let results = format::format_files(&checked.files, args.check);
    let mut changed = 0;
    let mut unchanged = 0;
    let mut broken = false;
    let mut out = std::io::stdout().lock();
    for (file, outcome) in &results {
        match outcome {
            Outcome::Unchanged => unchanged += 1,
            Outcome::Changed => {
                changed += 1;
                let _ = writeln!(out, "{}", render::escape(file));
            }
            Outcome::Skipped(e) => {
                tracing::warn!(
                    "{}: {}",
                    render::escape(file),
                    render::escape(&e.to_string())
                )
            }
            Outcome::Failed(e) => {
                broken = true;
                tracing::error!("{}: {}", render::escape(file), render::escape(e));
            }
        }
    }
    let _ = out.flush();
    let files = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
    if args.check {
        if changed > 0 {
            tracing::error!(
                "{} would be reformatted ({} already formatted); run `taskform fmt` to rewrite them",
                files(changed),
                unchanged
            );
        } else {
            tracing::info!("{} already formatted", files(unchanged));
        }
    } else {
        tracing::info!(
            "{} reformatted, {} already formatted",
            files(changed),
            unchanged
        );
    }
    if failed || broken || (args.check && changed > 0) {
        Exit::Error
    } else {
        Exit::Ok
    }
}

/// Adds to `into` every key (at any depth of objects) that `from` sets and `into`
/// does not.
fn merge_missing(
    into: &mut serde_json::Map<String, serde_json::Value>,
    from: &serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(serde_json::Value::Object(a)), serde_json::Value::Object(b)) => {
                merge_missing(a, b)
            }
            (Some(_), _) => {}
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `taskform schema [DIR]`: the JSON Schema of a manifest; with DIR, the fields its
/// `taskform.yaml` `defaults` set (shared or any environment's) are not required.
pub fn schema(dir: Option<PathBuf>, env: Env) -> Exit {
    finish((|| {
        let defaults = match &dir {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(Error::Folder(format!("{} is not a folder", dir.display())));
                }
                let shared = settings::load(dir, env).map_err(Error::Invalid)?;
                // In a repo with environments, a field is left to defaults when the
                // shared ones or any environment's set it.
                let mut defaults = shared.defaults.clone();
                for name in &shared.environments {
                    // An environment whose settings need variables this shell lacks
                    // (normal in an editor) is left out, with a warning.
                    match settings::load_for(dir, Some(name), env) {
                        Ok(one) => merge_missing(&mut defaults, &one.defaults),
                        Err(diags) => tracing::warn!(
                            "the defaults of environment {} are left out of the schema: {}",
                            render::escape(name),
                            diags
                                .first()
                                .map(|d| format!("{}: {}", d.location(), d.message))
                                .unwrap_or_default()
                        ),
                    }
                }
                defaults
            }
            None => serde_json::Map::new(),
        };
        let mut text = serde_json::to_string_pretty(&json_schema::manifest_schema(&defaults))
            .map_err(|e| Error::Command(format!("cannot write the schema: {e}")))?;
        text.push('\n');
        print_stdout(&text);
        Ok(Exit::Ok)
    })())
}
