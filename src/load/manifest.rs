//! Manifest loading: discovers `*.yaml`/`*.yml` files below DIR, parses every document,
//! interpolates `${VAR}`, merges `defaults`, validates, and computes content hashes.
//!
//! Files are read and hashed in parallel; the result never depends on discovery order
//! (manifests are sorted by name, diagnostics by position). Every problem of every file
//! is collected before the load fails, so one run shows everything to fix.
//!
//! Settings files are never tasks: `DIR/taskform.yaml` is the settings, a
//! `taskform.yml` anywhere is refused (rename it), and a folder below DIR holding its
//! own `taskform.yaml` is a separate target: it is skipped whole and named in an info
//! line (or in the error, when DIR holds nothing else). Warnings (a `data_source_type`
//! nobody has seen) are logged and kept in [`Loaded::warnings`]; they never fail a load.

use crate::hash;
use crate::load::diagnostic::{self, Diagnostic};
use crate::load::interpolate;
use crate::load::schema::{self, Problem};
use crate::load::secret;
use crate::load::settings::{self, Settings};
use crate::load::yaml::{self, Part, Seg};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files larger than this are refused rather than parsed.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Per-task rules, declared under the manifest key `taskform:` (never sent to the
/// service, never part of the content hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRules {
    /// A plan that would replace (or `--destroy` delete) the task is an error.
    pub prevent_destroy: bool,
    /// For selection (`--label key=value`).
    pub labels: BTreeMap<String, String>,
    /// Dotted paths left out of the content hash and of drift (fields operators change
    /// in the console).
    pub ignore_changes: Vec<String>,
}

/// The manifest key holding [`TaskRules`].
pub const RULES_KEY: &str = "taskform";

/// Reads the `taskform:` key; problems at their paths.
fn rules_of(v: Value) -> (TaskRules, Vec<Problem>) {
    let mut rules = TaskRules::default();
    let mut problems = Vec::new();
    let at = |path: Vec<Seg>, message: String, hint: &str| Problem {
        path,
        part: Part::Value,
        message,
        hint: Some(hint.to_string()),
    };
    let key = |k: &str| vec![Seg::Key(RULES_KEY.into()), Seg::Key(k.into())];
    let Value::Object(map) = v else {
        problems.push(at(
            vec![Seg::Key(RULES_KEY.into())],
            "`taskform` must be a mapping of per-task rules".into(),
            "taskform: {prevent_destroy: true, labels: {team: dw}}",
        ));
        return (rules, problems);
    };
    for (k, v) in map {
        match (k.as_str(), v) {
            ("prevent_destroy", Value::Bool(b)) => rules.prevent_destroy = b,
            ("labels", Value::Object(labels)) => {
                for (name, value) in labels {
                    match value {
                        Value::String(s) => {
                            rules.labels.insert(name, s);
                        }
                        _ => problems.push(at(
                            {
                                let mut p = key("labels");
                                p.push(Seg::Key(name.clone()));
                                p
                            },
                            format!("label `{name}` must be a string"),
                            "labels: {team: dw}",
                        )),
                    }
                }
            }
            ("ignore_changes", Value::Array(items))
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                rules.ignore_changes = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect();
            }
            ("ignore_changes", _) => problems.push(at(
                key("ignore_changes"),
                "`ignore_changes` must be a list of field paths".into(),
                "ignore_changes: [schedule_config.enabled, description]",
            )),
            ("prevent_destroy", _) => problems.push(at(
                key("prevent_destroy"),
                "`prevent_destroy` must be true or false".into(),
                "prevent_destroy: true",
            )),
            ("labels", _) => problems.push(at(
                key("labels"),
                "`labels` must be a mapping of names to strings".into(),
                "labels: {team: dw}",
            )),
            (other, _) => problems.push(Problem {
                path: key(other),
                part: Part::Key,
                message: format!("unknown per-task rule `{other}`"),
                hint: Some("the rules are prevent_destroy, ignore_changes and labels".into()),
            }),
        }
    }
    (rules, problems)
}

/// One task as declared in a manifest, ready to send.
#[derive(Clone, PartialEq)]
pub struct Manifest {
    /// The task's identity.
    pub name: String,
    /// The exact request body (manifest + defaults, interpolated) as RFC 8785
    /// canonical JSON: what apply sends, byte for byte. Kept as text rather than a
    /// parsed value so that 10,000 manifests stay small in memory; see [`Manifest::body`].
    pub canonical: String,
    /// `sha256:<hex>` of the shown body (of `canonical` when nothing is sensitive).
    pub hash: String,
    /// Dotted paths of the values read from `${secret:...}`.
    pub sensitive: Vec<String>,
    /// The variables this task reads as `${secret:...}`.
    pub secret_vars: Vec<String>,
    /// The dotted paths of the strings that read environment variables, and which:
    /// where a secret's value came from its variable read plainly.
    pub reads: Vec<(String, Vec<String>)>,
    /// Per-task rules (`taskform:` in the manifest).
    pub rules: TaskRules,
    /// With sensitive values: the canonical body with each replaced by its fingerprint,
    /// which is all that plans, the state, the journal and logs ever hold.
    pub shown: Option<String>,
    /// Path relative to DIR with `/` separators (what the state records).
    pub file: String,
    /// Path as the user named it (DIR joined), for messages.
    pub display: String,
    /// Index of the YAML document within the file.
    pub doc_index: usize,
}

/// Debug output never shows the real body (it may hold sensitive values): the shown
/// body, with fingerprints, stands in for it.
impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.name)
            .field("shown", &self.shown_canonical())
            .field("hash", &self.hash)
            .field("sensitive", &self.sensitive)
            .field("rules", &self.rules)
            .field("file", &self.file)
            .field("doc_index", &self.doc_index)
            .finish()
    }
}

impl Manifest {
    /// The request body as a JSON value (parsed from the canonical text).
    pub fn body(&self) -> Value {
        serde_json::from_str(&self.canonical).unwrap_or(Value::Null)
    }

    /// Builds a manifest from a body (computes the canonical text and the hash).
    pub fn from_body(
        name: String,
        body: &Value,
        file: String,
        display: String,
        doc_index: usize,
    ) -> Manifest {
        let (canonical, hash) = hash::canonical_and_hash(body);
        Manifest {
            name,
            canonical,
            hash,
            sensitive: Vec::new(),
            secret_vars: Vec::new(),
            reads: Vec::new(),
            rules: TaskRules::default(),
            shown: None,
            file,
            display,
            doc_index,
        }
    }

    /// Marks the values at `paths` sensitive: the shown body and the hash then hold
    /// their fingerprints.
    pub fn with_sensitive(mut self, paths: Vec<String>, key: &secret::Key) -> Manifest {
        if paths.is_empty() {
            return self;
        }
        let shown = secret::fingerprint_paths(&self.body(), &paths, key);
        let (text, plain) = hash::canonical_and_hash(&shown);
        self.hash = match self.rules.ignore_changes.is_empty() {
            true => plain,
            false => self.hash_of(&shown),
        };
        self.shown = Some(text);
        self.sensitive = paths;
        self
    }

    /// Sets the per-task rules; `ignore_changes` changes how the hash is counted.
    pub fn with_rules(mut self, rules: TaskRules) -> Manifest {
        self.rules = rules;
        if !self.rules.ignore_changes.is_empty() {
            self.hash = self.hash_of(&self.shown_body());
        }
        self
    }

    /// The content hash of a body as this manifest counts it: the fields of
    /// `ignore_changes` left out (a manifest without them hashes the body as it is).
    pub fn hash_of(&self, body: &Value) -> String {
        if self.rules.ignore_changes.is_empty() {
            return hash::content_hash(body);
        }
        let mut v = body.clone();
        for p in &self.rules.ignore_changes {
            secret::remove_at(&mut v, p);
        }
        hash::content_hash(&v)
    }

    /// The body as plans, the state and the journal hold it (canonical JSON).
    pub fn shown_canonical(&self) -> &str {
        self.shown.as_deref().unwrap_or(&self.canonical)
    }

    /// The body as plans, the state and the journal hold it.
    pub fn shown_body(&self) -> Value {
        serde_json::from_str(self.shown_canonical()).unwrap_or(Value::Null)
    }
}

/// Everything read from DIR.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Sorted by name.
    pub manifests: Vec<Manifest>,
    /// `sha256:<hex>` of every manifest file's bytes, by path relative to DIR.
    pub file_digests: BTreeMap<String, String>,
    pub settings: Settings,
    /// What the service may refuse but taskform cannot know (already logged), sorted.
    pub warnings: Vec<Diagnostic>,
    /// Folders below DIR skipped because they hold their own `taskform.yaml` (separate
    /// targets), as the user would name them (`envs/dev`), sorted.
    pub separate_targets: Vec<String>,
}

/// Why loading failed.
#[derive(Debug)]
pub enum LoadError {
    /// DIR itself cannot be read.
    Dir(String),
    /// Problems in the manifests or settings, sorted by position.
    Invalid(Vec<Diagnostic>),
}

/// Loads and validates every manifest below `dir`.
pub fn load(
    dir: &Path,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Loaded, LoadError> {
    load_reporting(dir, env).0
}

/// [`load`] for the environment `environment` of a repo that declares environments:
/// the shared manifests with its overlay, under its settings.
pub fn load_for(
    dir: &Path,
    environment: Option<&str>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Loaded, LoadError> {
    load_reporting_for(dir, environment, env).0
}

/// [`load`], and the warnings found, also when the load fails (`validate --format
/// json` reports both).
pub fn load_reporting(
    dir: &Path,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Result<Loaded, LoadError>, Vec<Diagnostic>) {
    load_reporting_for(dir, None, env)
}

/// [`load_reporting`] for an environment.
pub fn load_reporting_for(
    dir: &Path,
    environment: Option<&str>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Result<Loaded, LoadError>, Vec<Diagnostic>) {
    let mut warnings = Vec::new();
    let result = load_inner(dir, environment, env, &mut warnings);
    (result, warnings)
}

/// [`load_reporting`] for `validate`: a repo that declares environments is loaded
/// for each of them; a problem found in some environments only says which. The
/// manifests are every environment's (a task counted once per file and name).
pub fn load_reporting_all(
    dir: &Path,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Result<Loaded, LoadError>, Vec<Diagnostic>) {
    let names = match settings::load(dir, env) {
        Ok(s) if !s.environments.is_empty() => s.environments,
        _ => return load_reporting(dir, env),
    };
    let mut found: Vec<(Diagnostic, Vec<String>)> = Vec::new();
    let mut warnings = Vec::new();
    let mut merged: Option<Loaded> = None;
    let mut invalid = false;
    for name in &names {
        let (result, w) = load_reporting_for(dir, Some(name), env);
        warnings.extend(w);
        let diags = match result {
            Ok(loaded) => {
                match &mut merged {
                    None => merged = Some(loaded),
                    Some(m) => {
                        for t in loaded.manifests {
                            if !m
                                .manifests
                                .iter()
                                .any(|o| o.file == t.file && o.name == t.name)
                            {
                                m.manifests.push(t);
                            }
                        }
                        m.file_digests.extend(loaded.file_digests);
                    }
                }
                continue;
            }
            Err(LoadError::Dir(msg)) => return (Err(LoadError::Dir(msg)), warnings),
            Err(LoadError::Invalid(d)) => d,
        };
        invalid = true;
        for d in diags {
            match found.iter_mut().find(|(f, _)| *f == d) {
                Some((_, envs)) => envs.push(name.clone()),
                None => found.push((d, vec![name.clone()])),
            }
        }
    }
    diagnostic::sort(&mut warnings);
    warnings.dedup();
    if !invalid {
        return (Ok(merged.unwrap_or_default()), warnings);
    }
    let mut diags: Vec<Diagnostic> = found
        .into_iter()
        .map(|(mut d, envs)| {
            if envs.len() < names.len() {
                d.message = format!("{} (in environment {})", d.message, envs.join(", "));
            }
            d
        })
        .collect();
    diagnostic::sort(&mut diags);
    (Err(LoadError::Invalid(diags)), warnings)
}

/// The settings of `dir` for `environment`; a repo that declares environments,
/// read without one, is refused with their names.
pub fn settings_for(
    dir: &Path,
    environment: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, LoadError> {
    let settings = settings::load_for(dir, environment, env).map_err(LoadError::Invalid)?;
    if environment.is_none() && !settings.environments.is_empty() {
        return Err(LoadError::Dir(choose_environment(
            dir,
            &settings.environments,
        )));
    }
    Ok(settings)
}

/// The message for a repo that declares environments, loaded without one.
pub fn choose_environment(dir: &Path, names: &[String]) -> String {
    format!(
        "{} declares environments ({}): pass --env NAME (plan also takes --all-envs)",
        dir.join(settings::FILE_NAME).display(),
        names.join(", ")
    )
}

/// The manifest files below `dir` as [`load`] finds them: (path relative to `dir`
/// with `/` separators, path to open), sorted.
pub fn manifest_files(dir: &Path) -> Vec<(String, PathBuf)> {
    discover(dir, &mut Vec::new()).files
}

pub(super) fn load_inner(
    dir: &Path,
    environment: Option<&str>,
    outer_env: &(dyn Fn(&str) -> Option<String> + Sync),
    found_warnings: &mut Vec<Diagnostic>,
) -> Result<Loaded, LoadError> {
    check_folder(dir)?;
    let settings = settings_for(dir, environment, outer_env)?;
    // Every `${...}` reads through the settings' scope: variables, and the
    // environment's credentials.
    let scope = settings.scope.clone();
    let scoped = scope.over(outer_env);
    let env: &(dyn Fn(&str) -> Option<String> + Sync) = &scoped;
    let mut diags = Vec::new();
    let Discovered {
        mut files,
        separate_targets,
        ..
    } = discover(dir, &mut diags);
    // Overlay folders belong to one environment each: never shared manifests (all of
    // `overlays/`, a folder left from a removed environment included).
    let in_overlay = |rel: &str| settings.in_overlay(rel);
    files.retain(|(rel, _)| !in_overlay(rel));
    let mut overlay = crate::load::environment::Overlay::default();
    let mut overlay_results = Vec::new();
    if let Some(folder) = &settings.overlay {
        let base = crate::fsutil::relative_to(folder, dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| folder.display().to_string());
        for (rel, path) in discover(folder, &mut diags).files {
            let rel = format!("{base}/{rel}");
            let display = path.display().to_string();
            let Ok(bytes) = std::fs::read(&path) else {
                diags.push(Diagnostic::new(&display, 0, 0, "cannot read file"));
                continue;
            };
            if let Ok(src) = std::str::from_utf8(&bytes)
                && let Ok(docs) = yaml::parse_documents(src)
            {
                overlay.collect(src, &display, &docs, &mut diags);
            }
            overlay_results.push((rel, path));
        }
    }
    if !separate_targets.is_empty() {
        if files.is_empty() && diags.is_empty() {
            return Err(LoadError::Dir(only_separate_targets(
                dir,
                &separate_targets,
            )));
        }
        tracing::info!("{}", skipped_targets(&separate_targets));
    }

    let results: Vec<FileResult> = files
        .par_iter()
        .map(|(rel, path)| load_file(rel, path, &settings, env, Some(&overlay), false))
        .chain(
            overlay_results
                .par_iter()
                .map(|(rel, path)| load_file(rel, path, &settings, env, None, true)),
        )
        .collect();

    let mut manifests = Vec::new();
    let mut file_digests = BTreeMap::new();
    let mut warnings = defaults_warnings(&settings);
    for r in results {
        diags.extend(r.diags);
        warnings.extend(r.warnings);
        manifests.extend(r.manifests);
        if let Some(d) = r.digest {
            file_digests.insert(r.rel.clone(), d);
        }
    }
    manifests.sort_by(order);
    if settings.overlay.is_some() {
        let shared: Vec<String> = manifests
            .iter()
            .filter(|m| !in_overlay(&m.file))
            .map(|m| m.name.clone())
            .collect();
        overlay.unused(&shared, &mut diags);
        warnings.extend(overlay.unused_selectors());
    }
    let values = secret_values(&manifests, &settings, env);
    hide_secret_values(&mut manifests, &values, &settings, &mut diags);
    duplicate_names(dir, &manifests, &mut diags);
    diagnostic::sort(&mut warnings);
    log_warnings(&warnings, &settings, &manifests);
    found_warnings.clone_from(&warnings);

    if diags.is_empty() {
        Ok(Loaded {
            manifests,
            file_digests,
            settings,
            warnings,
            separate_targets,
        })
    } else {
        diagnostic::sort(&mut diags);
        Err(LoadError::Invalid(diags))
    }
}

/// Checks that DIR is a folder that can be read.
pub(super) fn check_folder(dir: &Path) -> Result<(), LoadError> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        LoadError::Dir(format!(
            "cannot read manifest folder {}: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(LoadError::Dir(format!("{} is not a folder", dir.display())));
    }
    Ok(())
}

/// The order of [`Loaded::manifests`]: by name, then file and document.
pub(super) fn order(a: &Manifest, b: &Manifest) -> std::cmp::Ordering {
    a.name
        .cmp(&b.name)
        .then(a.file.cmp(&b.file))
        .then(a.doc_index.cmp(&b.doc_index))
}

/// Logs a load's warnings (each once per load), and a `${secret:...}` used without a
/// key of the repo's own.
pub(super) fn log_warnings(warnings: &[Diagnostic], settings: &Settings, manifests: &[Manifest]) {
    for w in warnings {
        tracing::warn!("{}", w.log_line());
    }
    if !settings.secret_key.explicit && manifests.iter().any(|m| !m.sensitive.is_empty()) {
        tracing::warn!(
            "${{secret:...}} is used but {} is not set: plans and the state hold fingerprints of the sensitive values made with a fixed key, which anyone who reads them could test guesses against; set {} to a long random value (the same for every run of this repo)",
            secret::KEY_VAR,
            secret::KEY_VAR
        );
    }
}

/// What [`discover`] found below DIR.
pub(super) struct Discovered {
    /// (path relative to DIR, full path) of each manifest file, sorted.
    pub files: Vec<(String, PathBuf)>,
    /// Folders holding their own `taskform.yaml`, as the user would name them, sorted.
    pub separate_targets: Vec<String>,
    /// The same folders relative to DIR (`/` separators).
    pub separate_rel: Vec<String>,
    /// Every folder whose entries were read, relative to DIR (`""`: DIR itself).
    pub folders: Vec<String>,
    /// Whether a manifest file is a symbolic link (its target's changes are events on
    /// another path).
    pub links: bool,
}

/// Walks `dir` for manifest files. Skips hidden entries, the settings file and every
/// folder that is a target of its own; reports a `taskform.yml` (and skips the folder
/// holding it, below DIR: it was meant as a target).
pub(super) fn discover(dir: &Path, diags: &mut Vec<Diagnostic>) -> Discovered {
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    let mut separate_targets = Vec::new();
    let mut separate_rel = Vec::new();
    let mut folders = Vec::new();
    let mut links = false;
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel_dir, path)) = stack.pop() {
        let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(&path) {
            Ok(e) => e.flatten().collect(),
            Err(e) => {
                diags.push(Diagnostic::new(
                    path.display().to_string(),
                    0,
                    0,
                    format!("cannot read folder: {e}"),
                ));
                continue;
            }
        };
        let at_root = rel_dir.is_empty();
        let has = |file: &str| {
            entries
                .iter()
                .any(|e| e.file_name() == file && path.join(file).is_file())
        };
        let (settings_here, wrong_here) =
            (has(settings::FILE_NAME), has(settings::WRONG_FILE_NAME));
        if wrong_here && (at_root || !settings_here) {
            let hint = if settings_here {
                format!(
                    "merge it into {} and delete it",
                    path.join(settings::FILE_NAME).display()
                )
            } else {
                format!("rename it to {}", settings::FILE_NAME)
            };
            diags.push(
                Diagnostic::new(
                    path.join(settings::WRONG_FILE_NAME).display().to_string(),
                    0,
                    0,
                    format!(
                        "`{}` is not read as settings: taskform reads settings only from `{}`",
                        settings::WRONG_FILE_NAME,
                        settings::FILE_NAME
                    ),
                )
                .with_hint(hint),
            );
            if !at_root {
                continue;
            }
        }
        if !at_root && settings_here {
            separate_targets.push(user_path(dir, &rel_dir));
            separate_rel.push(rel_dir);
            continue;
        }
        folders.push(rel_dir.clone());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let full = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let is_manifest_name = name.ends_with(".yaml") || name.ends_with(".yml");
            if ft.is_symlink() {
                let target = std::fs::canonicalize(&full);
                match target {
                    Ok(t) if t.starts_with(&root) => {
                        if t.is_file() && is_manifest_name {
                            links = true;
                            out.push((rel, full));
                        } else if t.is_dir() {
                            tracing::warn!(path = %full.display(), "symbolic link to a folder not followed");
                        }
                    }
                    _ if is_manifest_name || full.is_dir() => diags.push(
                        Diagnostic::new(full.display().to_string(), 0, 0, "symbolic link points outside the manifest folder; refusing to follow it")
                            .with_hint("copy the file into the folder, or point the link inside it"),
                    ),
                    _ => {}
                }
            } else if ft.is_dir() {
                stack.push((rel, full));
            } else if ft.is_file()
                && is_manifest_name
                && !(at_root && (name == settings::FILE_NAME || name == settings::WRONG_FILE_NAME))
            {
                out.push((rel, full));
            }
        }
    }
    out.sort();
    separate_targets.sort();
    separate_rel.sort();
    folders.sort();
    Discovered {
        files: out,
        separate_targets,
        separate_rel,
        folders,
        links,
    }
}

/// A folder below DIR as the user would name it: `envs/dev` for DIR `envs`, `dev`
/// for DIR `.`.
pub(super) fn user_path(dir: &Path, rel: &str) -> String {
    if dir == Path::new(".") || dir.as_os_str().is_empty() {
        rel.to_string()
    } else {
        dir.join(rel).display().to_string()
    }
}

/// `` `taskform plan A`, `taskform plan B` `` for the first few targets.
fn plan_commands(targets: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut cmds: Vec<String> = targets
        .iter()
        .take(SHOWN)
        .map(|t| format!("`taskform plan {}`", diagnostic::escape(t)))
        .collect();
    if targets.len() > SHOWN {
        cmds.push("...".into());
    }
    cmds.join(", ")
}

fn folder_list(targets: &[String]) -> String {
    targets
        .iter()
        .map(|t| diagnostic::escape(t).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The info line naming the separate targets skipped below DIR.
pub(super) fn skipped_targets(targets: &[String]) -> String {
    if let [one] = targets {
        format!(
            "skipped {}: it has its own {} and is a separate target; plan it on its own: {}",
            diagnostic::escape(one),
            settings::FILE_NAME,
            plan_commands(targets)
        )
    } else {
        format!(
            "skipped {}: each has its own {} and is a separate target; plan each on its own: {}",
            folder_list(targets),
            settings::FILE_NAME,
            plan_commands(targets)
        )
    }
}

/// The error when DIR holds no manifest files, only separate targets.
pub(super) fn only_separate_targets(dir: &Path, targets: &[String]) -> String {
    let dir = if dir == Path::new(".") || dir.as_os_str().is_empty() {
        "this folder".to_string()
    } else {
        diagnostic::escape(&dir.display().to_string()).into_owned()
    };
    if let [one] = targets {
        format!(
            "no task manifests in {dir}: its subfolder {} has its own {} and is a separate target; plan it on its own: {}",
            diagnostic::escape(one),
            settings::FILE_NAME,
            plan_commands(targets)
        )
    } else {
        format!(
            "no task manifests in {dir}: its subfolders {} have their own {} and are separate targets; plan each on its own: {}",
            folder_list(targets),
            settings::FILE_NAME,
            plan_commands(targets)
        )
    }
}

/// Warnings about `defaults` in the settings file, reported once there rather than once
/// per task that inherits them.
pub(super) fn defaults_warnings(settings: &Settings) -> Vec<Diagnostic> {
    let (Some(file), Some(src)) = (&settings.file, &settings.source) else {
        return Vec::new();
    };
    schema::warnings(
        &Value::Object(settings.defaults.clone()),
        &settings.known_data_source_types,
    )
    .into_iter()
    .map(|p| {
        let mut path = vec![Seg::Key("defaults".into())];
        path.extend(p.path);
        let (l, c) = yaml::locate(src, 0, &path, p.part).unwrap_or((0, 0));
        Diagnostic::new(file, l, c, p.message).with_hint_opt(p.hint)
    })
    .collect()
}

/// One manifest file's manifests, problems and warnings, and its bytes' digest.
#[derive(Clone)]
pub(super) struct FileResult {
    pub rel: String,
    pub manifests: Vec<Manifest>,
    pub diags: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub digest: Option<String>,
}

pub(super) fn load_file(
    rel: &str,
    path: &Path,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    overlay: Option<&crate::load::environment::Overlay>,
    in_overlay: bool,
) -> FileResult {
    let display = path.display().to_string();
    let mut result = FileResult {
        rel: rel.to_string(),
        manifests: Vec::new(),
        diags: Vec::new(),
        warnings: Vec::new(),
        digest: None,
    };
    let fail = |mut r: FileResult, d: Diagnostic| {
        r.diags.push(d);
        r
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return fail(
                result,
                Diagnostic::new(
                    &display,
                    0,
                    0,
                    format!(
                        "file is {} bytes, over the {} byte limit for a manifest",
                        m.len(),
                        MAX_FILE_BYTES
                    ),
                )
                .with_hint("split it into several files"),
            );
        }
        Err(e) => {
            return fail(
                result,
                Diagnostic::new(&display, 0, 0, format!("cannot read file: {e}")),
            );
        }
        _ => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                result,
                Diagnostic::new(&display, 0, 0, format!("cannot read file: {e}")),
            );
        }
    };
    result.digest = Some(hash::sha256_tagged(&bytes));
    let parsed = parse_source_with(&bytes, rel, &display, settings, env, overlay, in_overlay);
    result.manifests = parsed.manifests;
    result.diags = parsed.diags;
    result.warnings = parsed.warnings;
    result
}

/// One file's manifests, problems and warnings.
#[derive(Debug, Default)]
pub struct Parsed {
    pub manifests: Vec<Manifest>,
    /// Problems: any one fails the load.
    pub diags: Vec<Diagnostic>,
    /// What the service may refuse (never fails the load). Values inherited from
    /// `defaults` are not repeated here: the loader reports them once, in the settings
    /// file.
    pub warnings: Vec<Diagnostic>,
}

/// Parses, interpolates, merges `defaults`, validates and hashes one file's bytes:
/// the loader without the file system (benchmarks and fuzzing call it directly).
/// `rel` is the path below DIR, `display` the path for messages. Warnings are dropped
/// ([`parse_source_full`] keeps them).
pub fn parse_source(
    bytes: &[u8],
    rel: &str,
    display: &str,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Vec<Manifest>, Vec<Diagnostic>) {
    let parsed = parse_source_full(bytes, rel, display, settings, env);
    (parsed.manifests, parsed.diags)
}

/// [`parse_source`], with the warnings.
pub fn parse_source_full(
    bytes: &[u8],
    rel: &str,
    display: &str,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Parsed {
    parse_source_with(bytes, rel, display, settings, env, None, false)
}

/// [`parse_source_full`] for a repo with environments: a shared file's tasks with the
/// environment's `overlay` changes (patched, or left out), or an overlay file's own
/// tasks (`in_overlay`: its `patch:`/`remove:` documents are not tasks).
pub fn parse_source_with(
    bytes: &[u8],
    rel: &str,
    display: &str,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    overlay: Option<&crate::load::environment::Overlay>,
    in_overlay: bool,
) -> Parsed {
    let mut out = Parsed::default();
    let Parsed {
        manifests,
        diags,
        warnings,
    } = &mut out;
    let src = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            diags.push(
                Diagnostic::new(display, line, col, "file is not valid UTF-8")
                    .with_hint("save the file as UTF-8"),
            );
            return out;
        }
    };
    let docs = match yaml::parse_documents(src) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::new(display, e.line, e.col, e.message));
            return out;
        }
    };
    for doc in docs {
        let mut body = doc.value;
        if in_overlay && crate::load::environment::is_change(&body) {
            continue;
        }
        let mut patches: Vec<&crate::load::environment::Patch> = Vec::new();
        if let Some(ov) = overlay
            && let Some(raw) = body.get("name").and_then(Value::as_str)
        {
            let name = interpolate::expand(raw, env).unwrap_or_else(|_| raw.to_string());
            if ov.removes(&name) {
                continue;
            }
            patches = ov.patches_for(&name, &body);
            for p in &patches {
                crate::load::environment::merge_patch(&mut body, &p.body);
            }
        }
        // Per-task rules are taskform's, not the task's: out of the body (and the hash).
        let (rules, rule_problems) = match body.as_object_mut().and_then(|m| m.remove(RULES_KEY)) {
            Some(v) => rules_of(v),
            None => (TaskRules::default(), Vec::new()),
        };
        let found = interpolate::interpolate(&mut body, env, &schema::wants_integer);
        let mut sensitive: Vec<String> = found
            .sensitive
            .iter()
            .map(|s| yaml::path_string(&s.path))
            .collect();
        // Sensitive defaults the manifest does not set itself.
        for d in &settings.sensitive_defaults {
            let p = yaml::path_string(&d.path);
            if secret::pointer_mut(&mut body, &p).is_none() {
                sensitive.push(p);
            }
        }
        let mut problems: Vec<Problem> = found
            .errors
            .into_iter()
            .chain(found.sensitive.iter().filter_map(unsupported_secret))
            .map(|e| Problem {
                path: e.path,
                part: Part::Value,
                message: e.message,
                hint: e.hint,
            })
            .collect();
        problems.extend(rule_problems);
        schema::merge_defaults(&mut body, &settings.defaults);
        if problems.is_empty() {
            problems = schema::validate_with(&body, &settings.rules());
        }
        // Warnings quote values: not for a task with sensitive values and problems (a
        // refused secret in `data_source_type` must not be quoted by its warning).
        let checked = match problems.is_empty() || found.sensitive.is_empty() {
            true => schema::warnings(&body, &settings.known_data_source_types),
            false => Vec::new(),
        };
        for w in checked {
            // Not in the manifest: inherited from `defaults`, reported there once.
            let found = patches
                .iter()
                .rev()
                .find_map(|p| {
                    yaml::locate(&p.src, p.doc, &w.path, w.part).map(|lc| (p.display.as_str(), lc))
                })
                .or_else(|| yaml::locate(src, doc.index, &w.path, w.part).map(|lc| (display, lc)));
            if let Some((file, (l, c))) = found {
                warnings.push(Diagnostic::new(file, l, c, w.message).with_hint_opt(w.hint));
            }
        }
        if !problems.is_empty() {
            for p in problems {
                diags.push(place(src, display, doc.index, settings, &patches, p));
            }
            continue;
        }
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Rules first: the hash that sensitive values give is counted as they say.
        let mut m =
            Manifest::from_body(name, &body, rel.to_string(), display.to_string(), doc.index)
                .with_rules(rules)
                .with_sensitive(sensitive, &settings.secret_key);
        m.secret_vars = found
            .sensitive
            .iter()
            .flat_map(|s| interpolate::secret_names(&s.template))
            .map(str::to_string)
            .collect();
        m.reads = found
            .reads
            .into_iter()
            .map(|r| (yaml::path_string(&r.path), r.names))
            .collect();
        manifests.push(m);
    }
    out
}

/// The variables the manifests (and sensitive defaults) read as `${secret:...}`, with
/// their values: what [`hide_secret_values`] looks for.
pub(super) fn secret_values(
    manifests: &[Manifest],
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Vec<(String, String)> {
    let mut vars: std::collections::BTreeSet<&str> = manifests
        .iter()
        .flat_map(|m| m.secret_vars.iter().map(String::as_str))
        .collect();
    vars.extend(
        settings
            .sensitive_defaults
            .iter()
            .flat_map(|s| interpolate::secret_names(&s.template)),
    );
    vars.into_iter()
        .filter_map(|n| env(n).map(|v| (n.to_string(), v)))
        .collect()
}

/// A variable read as `${secret:NAME}` anywhere is sensitive everywhere: a string that
/// read the same variable plainly (`${NAME}`), or whose whole value equals the secret's,
/// is marked sensitive too. Never a part of a string: a secret `default` leaves
/// `my-default-queue` alone. A `name` that read it is an error (names are shown
/// everywhere); the message names the variable, never its value.
pub(super) fn hide_secret_values(
    manifests: &mut [Manifest],
    secrets: &[(String, String)],
    settings: &Settings,
    diags: &mut Vec<Diagnostic>,
) {
    if secrets.is_empty() {
        return;
    }
    // Very short values would mark ordinary values: a secret that short is no secret.
    let values: Vec<String> = secrets
        .iter()
        .filter(|(_, v)| v.chars().count() >= 4)
        .map(|(_, v)| v.clone())
        .collect();
    let is_secret_var = |n: &String| secrets.iter().any(|(s, _)| s == n);
    for m in manifests.iter_mut() {
        let read: Vec<&String> = m
            .reads
            .iter()
            .filter(|(_, names)| names.iter().any(is_secret_var))
            .map(|(p, _)| p)
            .collect();
        if read.iter().any(|p| *p == "name") {
            diags.push(
                Diagnostic::new(
                    &m.display,
                    0,
                    0,
                    "the task's `name` reads a variable read as `${secret:...}`",
                )
                .with_hint("a name is shown everywhere; keep secrets out of it"),
            );
            continue;
        }
        let equal = secret::paths_equal(&m.body(), &values);
        let mut all = m.sensitive.clone();
        for p in read.into_iter().cloned().chain(equal) {
            if p != "name" && !all.contains(&p) {
                all.push(p);
            }
        }
        if all.len() != m.sensitive.len() {
            let marked = m.clone().with_sensitive(all, &settings.secret_key);
            *m = marked;
        }
    }
}

/// A `${secret:...}` where a sensitive value cannot be kept out of output: the task's
/// identity and the fields the schema checks (their values are printed in plans and
/// messages), or under a key whose name holds `.` or `[` (paths are written dotted).
fn unsupported_secret(s: &interpolate::Sensitive) -> Option<interpolate::InterpolationError> {
    let first = match s.path.first() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    let why = if matches!(
        first,
        "name" | "data_source_type" | "dir_id" | "schedule_config"
    ) {
        format!(
            "`${{secret:...}}` cannot be used for `{first}`: its value is shown in plans and checked against the schema"
        )
    } else if s
        .path
        .iter()
        .any(|seg| matches!(seg, Seg::Key(k) if k.contains(['.', '[', ']'])))
    {
        "`${secret:...}` cannot be used under a key whose name holds `.`, `[` or `]`".to_string()
    } else {
        return None;
    };
    Some(interpolate::InterpolationError {
        path: s.path.clone(),
        message: why,
        hint: Some(
            "use sensitive values in `task_config` (or `description`, `parameter_config`) values"
                .into(),
        ),
    })
}

/// Turns a problem's path into a position: in the manifest when the node is there, in
/// the settings file when it came from `defaults`, else at the document's start.
fn place(
    src: &str,
    display: &str,
    doc: usize,
    settings: &Settings,
    patches: &[&crate::load::environment::Patch],
    p: Problem,
) -> Diagnostic {
    // The last patch that sets the path set its value.
    if !p.path.is_empty()
        && let Some((patch, (l, c))) = patches
            .iter()
            .rev()
            .find_map(|patch| Some((patch, yaml::locate(&patch.src, patch.doc, &p.path, p.part)?)))
    {
        return Diagnostic::new(
            &patch.display,
            l,
            c,
            format!(
                "{} (from the overlay's patch of the task in {display})",
                p.message
            ),
        )
        .with_hint_opt(p.hint);
    }
    if let Some((l, c)) = yaml::locate(src, doc, &p.path, p.part) {
        return Diagnostic::new(display, l, c, p.message).with_hint_opt(p.hint);
    }
    if let (Some(file), Some(settings_src)) = (&settings.file, &settings.source)
        && !p.path.is_empty()
    {
        for at in &settings.defaults_at {
            let mut dpath = at.clone();
            dpath.extend(p.path.iter().cloned());
            if let Some((l, c)) = yaml::locate(settings_src, 0, &dpath, p.part) {
                return Diagnostic::new(
                    file,
                    l,
                    c,
                    format!(
                        "{} (from `defaults`, merged into the task in {display})",
                        p.message
                    ),
                )
                .with_hint_opt(p.hint);
            }
        }
    }
    let (l, c) = yaml::locate(src, doc, &[], Part::Value).unwrap_or((0, 0));
    Diagnostic::new(display, l, c, p.message).with_hint_opt(p.hint)
}

pub(super) fn duplicate_names(dir: &Path, manifests: &[Manifest], diags: &mut Vec<Diagnostic>) {
    let mut i = 0;
    while i < manifests.len() {
        let mut j = i + 1;
        while j < manifests.len() && manifests[j].name == manifests[i].name {
            j += 1;
        }
        if j - i > 1 {
            let places: Vec<(usize, usize)> = manifests[i..j]
                .iter()
                .map(|m| name_position(dir, m))
                .collect();
            for (k, m) in manifests[i..j].iter().enumerate() {
                let others: Vec<String> = manifests[i..j]
                    .iter()
                    .zip(&places)
                    .enumerate()
                    .filter(|(o, _)| *o != k)
                    .map(|(_, (o, (l, c)))| format!("{}:{l}:{c}", o.display))
                    .collect();
                let (l, c) = places[k];
                diags.push(
                    Diagnostic::new(
                        &m.display,
                        l,
                        c,
                        format!(
                            "duplicate task name `{}`, also defined at {}",
                            m.name,
                            others.join(", ")
                        ),
                    )
                    .with_hint("task names identify tasks and must be unique; rename one of them"),
                );
            }
        }
        i = j;
    }
}

fn name_position(dir: &Path, m: &Manifest) -> (usize, usize) {
    std::fs::read_to_string(dir.join(&m.file))
        .ok()
        .and_then(|src| yaml::locate(&src, m.doc_index, &[Seg::Key("name".into())], Part::Value))
        .unwrap_or((0, 0))
}
