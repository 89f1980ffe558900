//! The plan as a document: what `plan --out FILE` writes, what `apply FILE` applies
//! and `show FILE` renders, and what every output format is rendered from.
//!
//! ```json
//! {"format_version": "1", "tool_version": "0.1.0", "created_at": "RFC 3339",
//!  "dir": "examples/tasks", "state_path": "state/taskform.json",
//!  "target": {"endpoint_host": "dayu.cn-north-4.myhuaweicloud.com" | null,
//!             "project_id": "..." | null, "workspace": "..." | null},
//!  "state": {"lineage": "<uuid>", "serial": 3},
//!  "manifests": {"digest": "sha256:...", "files": {"dli/sales.yaml": "sha256:..."}},
//!  "options": {"recreate_in_doubt": false, "on_change": "recreate", "prune": false,
//!              "refresh": false, "adopt": false},
//!  "summary": {"create": 1, "replace": 0, "update": 0, "delete": 0, "unchanged": 4,
//!              "orphan": 0, "in_doubt": 0},
//!  "tasks": [{"name": "...", "action": "create", "hash": "sha256:...", "task_id": null,
//!             "file": "dli/sales.yaml", "body": {...}, "previous_body": {...}, "note": "..."}]}
//! ```
//!
//! `body` (the exact request body to send) is present for `create`, `replace` and
//! `update`; `previous_body` for `replace` and `update` when the state knows it; `note`
//! explains `in_doubt`, `delete` and drift found by `--refresh`. A `delete` names the
//! remote task in `task_id` (one entry per remote task, so a name can appear twice).
//! `manifests.files` includes `taskform.yaml` when there is one. No credentials are
//! ever part of a plan.

use crate::hash;
use crate::load::manifest::{Loaded, Manifest};
use crate::load::target::Resolved;
use crate::plan::{Action, Plan, PlanOptions, Summary};
use crate::state::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;

/// The plan file format this version writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// What a plan records of its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub endpoint_host: Option<String>,
    pub project_id: Option<String>,
    pub workspace: Option<String>,
}

impl TargetRef {
    pub fn of(r: &Resolved) -> TargetRef {
        TargetRef {
            endpoint_host: crate::endpoint::endpoint_host(r.endpoint.as_deref()),
            project_id: r.project_id.clone(),
            workspace: r.workspace.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub lineage: String,
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestsRef {
    /// `sha256:` over every file's path and digest, in order.
    pub digest: String,
    pub files: BTreeMap<String, String>,
}

/// One task of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub action: Action,
    pub hash: Option<String>,
    pub task_id: Option<String>,
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_body: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The manifest's `ignore_changes`: the fields its hash leaves out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_changes: Vec<String>,
    /// For a delete: the remote task is a superseded one, not the name's current task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    /// A remote task of the name that no record holds (a duplicate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl Entry {
    /// `name: action (fields a, b)`: what is sent for this entry and which fields
    /// differ from what was applied (never a value), escaped.
    pub fn described(&self) -> String {
        use crate::load::diagnostic::escape;
        let fields = match (&self.previous_body, &self.body) {
            (Some(old), Some(new)) => {
                let parse = |r: &RawValue| {
                    serde_json::from_str::<serde_json::Value>(r.get()).unwrap_or_default()
                };
                let paths: Vec<String> = crate::plan::diff::diff(&parse(old), &parse(new))
                    .into_iter()
                    .map(|c| match c {
                        crate::plan::diff::Change::Added { path, .. }
                        | crate::plan::diff::Change::Removed { path, .. }
                        | crate::plan::diff::Change::Changed { path, .. } => path,
                    })
                    .take(8)
                    .collect();
                match paths.is_empty() {
                    true => String::new(),
                    false => format!(" (fields {})", escape(&paths.join(", "))),
                }
            }
            _ => String::new(),
        };
        match self.action {
            super::Action::Duplicate => format!(
                "{}: duplicate task {}",
                escape(&self.name),
                escape(self.task_id.as_deref().unwrap_or("?"))
            ),
            a => format!("{}: {}{fields}", escape(&self.name), a.as_str()),
        }
    }

    /// A manifest of this entry's name and `body`, counting its hash as the planned
    /// manifest did (its `ignore_changes` left out).
    fn manifest_like(&self, body: &serde_json::Value) -> Manifest {
        Manifest::from_body(self.name.clone(), body, String::new(), String::new(), 0).with_rules(
            crate::load::manifest::TaskRules {
                ignore_changes: self.ignore_changes.clone(),
                ..Default::default()
            },
        )
    }
}

/// A whole plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: String,
    pub tool_version: String,
    pub created_at: String,
    /// The manifest folder and the state the plan was made against. In a plan file
    /// they are relative to the plan file's folder (`paths_from_plan_file`), so that
    /// applying the file works from any folder; in memory, relative to the working
    /// folder.
    pub dir: String,
    /// The environment the plan was made for, in a repo that declares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// A state file's path, or a PostgreSQL state's URL (without its password) and
    /// name: `postgres://ci@db:5432/tasks (state "prod")`.
    pub state_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paths_from_plan_file: bool,
    pub target: TargetRef,
    pub state: StateRef,
    pub manifests: ManifestsRef,
    /// The options the plan was made with (a fresh plan to compare is made the same way).
    #[serde(default)]
    pub options: PlanOptions,
    /// `--target` patterns: only tasks whose names match were planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `--label key=value` selection: only tasks whose manifests carry them were planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// How many tasks `--target`/`--label` left out (left alone).
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub not_selected: usize,
    pub summary: Summary,
    pub tasks: Vec<Entry>,
}

/// The digest of a set of files.
pub fn manifests_ref(loaded: &Loaded) -> ManifestsRef {
    let mut files = loaded.file_digests.clone();
    if let Some(d) = &loaded.settings.digest {
        files.insert(crate::load::settings::FILE_NAME.to_string(), d.clone());
    }
    let mut all = hash::Sha256Stream::default();
    for (f, d) in &files {
        all.update(f.as_bytes());
        all.update(b"\0");
        all.update(d.as_bytes());
        all.update(b"\n");
    }
    ManifestsRef {
        digest: all.tagged(),
        files,
    }
}

fn in_doubt_note(state: &State, name: &str) -> Option<String> {
    state.in_doubt.get(name).map(|d| {
        format!(
            "a create was sent{} but its answer was never recorded ({}); the task may exist on the server. Check the console, then re-run apply with --recreate-in-doubt to record the task with the content sent, or create it again when none has it",
            d.sent_at.as_deref().map(|s| format!(" at {s}")).unwrap_or_default(),
            d.reason.as_deref().unwrap_or("unknown outcome")
        )
    })
}

fn delete_note(state: &State, t: &crate::plan::PlannedTask, declared: bool) -> String {
    if let Some(note) = duplicate_note(state, t) {
        return note;
    }
    if t.superseded {
        let by = state.tasks.get(&t.name).map(|r| r.task_id.as_str());
        format!(
            "superseded by task {} (a replace left it on the server)",
            by.unwrap_or("?")
        )
    } else if declared {
        "its manifest still declares it; --destroy deletes every task the state records".to_string()
    } else {
        "no manifest declares it any more".to_string()
    }
}

/// What is known of a duplicate: the task the state records for its name, and whether
/// its content is what taskform sends. `None` when `t` is no duplicate.
fn duplicate_note(state: &State, t: &crate::plan::PlannedTask) -> Option<String> {
    let id = t.task_id.as_deref()?;
    let d = state
        .duplicates
        .get(&t.name)?
        .iter()
        .find(|d| d.task_id == id)?;
    let recorded = match state.tasks.get(&t.name) {
        Some(r) => format!("the state records task {} for this name", r.task_id),
        None => "the state records no task for this name".to_string(),
    };
    Some(match (d.same_content, t.action) {
        (true, Action::Delete) => format!(
            "a duplicate: {recorded}, and this one holds exactly the content taskform sends (a create whose answer was lost)"
        ),
        (true, _) => format!(
            "a duplicate: {recorded}, and this one holds exactly the content taskform sends (a create whose answer was lost); --prune deletes it"
        ),
        (false, _) => format!(
            "a duplicate: {recorded}; this one was not made by taskform with the manifest's content, so it is only reported. To manage it instead: `taskform state rm {0}` then `taskform state import {0} {id}`; or delete it in the console",
            t.name
        ),
    })
}

/// The body the state records for a task, as a plan may hold it: each value at a path
/// the manifest now marks sensitive is replaced by its fingerprint (a state written by
/// `export`, or before the value was `${secret:...}`, holds it in plain text), so a
/// diff shows it redacted on both sides and no plan file holds it. Also the paths that
/// held a plain value: this apply's write of the record replaces them.
fn previous_shown(
    recorded: Option<&RawValue>,
    m: Option<&Manifest>,
    key: &crate::load::secret::Key,
) -> (Option<Box<RawValue>>, Vec<String>) {
    use crate::load::secret;
    let Some(recorded) = recorded else {
        return (None, Vec::new());
    };
    let sensitive = m.map(|m| m.sensitive.as_slice()).unwrap_or_default();
    if sensitive.is_empty() {
        return (Some(recorded.to_owned()), Vec::new());
    }
    let Ok(mut body) = serde_json::from_str::<serde_json::Value>(recorded.get()) else {
        return (Some(recorded.to_owned()), Vec::new());
    };
    let mut plain = Vec::new();
    for p in sensitive {
        if let Some(v) = secret::pointer_mut(&mut body, p)
            && !v.as_str().is_some_and(secret::is_fingerprint)
        {
            *v = serde_json::Value::String(key.fingerprint(p, v));
            plain.push(p.clone());
        }
    }
    let raw = RawValue::from_string(crate::hash::canonical_and_hash(&body).0).ok();
    (raw, plain)
}

/// The note of a task whose record holds, in plain text, values now sensitive.
fn plain_note(paths: &[String]) -> String {
    format!(
        "the state records {} in plain text, now sensitive: applying this plan records the fingerprint instead",
        paths.join(", ")
    )
}

impl SavedPlan {
    /// The document for a plan just made with `options`. `notes` adds a note by task
    /// name (drift found by a refresh, adoptions).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Plan,
        options: PlanOptions,
        loaded: &Loaded,
        state: &State,
        notes: &BTreeMap<String, String>,
        target: TargetRef,
        dir: &Path,
        state_path: &crate::location::StateLocation,
    ) -> SavedPlan {
        let manifests: &[Manifest] = &loaded.manifests;
        let summary = plan.summary();
        // Names a manifest declares, for the note of a delete (`--destroy` deletes
        // declared tasks too).
        let declared: std::collections::HashSet<&str> = match summary.delete {
            0 => Default::default(),
            _ => manifests.iter().map(|m| m.name.as_str()).collect(),
        };
        let tasks = plan
            .tasks
            .into_iter()
            .map(|t| {
                let m = t.manifest.and_then(|i| manifests.get(i));
                let body = if t.action.sends_body() {
                    m.and_then(|m| RawValue::from_string(m.shown_canonical().to_string()).ok())
                } else {
                    None
                };
                let (previous_body, plain) = if matches!(t.action, Action::Replace | Action::Update)
                {
                    let recorded = state.tasks.get(&t.name).and_then(|r| r.body.as_deref());
                    previous_shown(recorded, m, &loaded.settings.secret_key)
                } else {
                    (None, Vec::new())
                };
                let note = match t.action {
                    Action::InDoubt => in_doubt_note(state, &t.name),
                    Action::Delete => Some(delete_note(
                        state,
                        &t,
                        m.is_some() || declared.contains(t.name.as_str()),
                    )),
                    Action::Duplicate => duplicate_note(state, &t),
                    Action::Superseded => Some(format!(
                        "{}; it may still be scheduled: --prune deletes it",
                        delete_note(state, &t, false)
                    )),
                    _ => notes.get(&t.name).cloned(),
                };
                let note = match plain.is_empty() {
                    true => note,
                    false => Some(
                        note.into_iter()
                            .chain([plain_note(&plain)])
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                };
                Entry {
                    name: t.name,
                    action: t.action,
                    hash: t.hash,
                    task_id: t.task_id,
                    file: t.file,
                    body,
                    previous_body,
                    note,
                    superseded: t.superseded,
                    duplicate: t.duplicate,
                    ignore_changes: m
                        .map(|m| m.rules.ignore_changes.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        SavedPlan {
            format_version: FORMAT_VERSION.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::clock::now_rfc3339(),
            dir: dir.display().to_string(),
            environment: loaded.settings.environment.clone(),
            state_path: state_path.identity(),
            paths_from_plan_file: false,
            target,
            state: StateRef {
                lineage: state.lineage.clone(),
                serial: state.serial,
            },
            manifests: manifests_ref(loaded),
            options,
            targets: Vec::new(),
            labels: Vec::new(),
            not_selected: 0,
            summary,
            tasks,
        }
    }

    /// Plans `loaded` against `state` with `options` and makes the document: what plan,
    /// apply and watch all show and send.
    pub fn make(
        loaded: &Loaded,
        resolved: &Resolved,
        state: &State,
        dir: &Path,
        options: PlanOptions,
        notes: &BTreeMap<String, String>,
        selection: crate::plan::select::Selection<'_>,
    ) -> SavedPlan {
        let mut plan = crate::plan::plan(&loaded.manifests, state, options);
        let not_selected = crate::plan::select::select(&mut plan, selection, &loaded.manifests);
        let mut doc = SavedPlan::new(
            plan,
            options,
            loaded,
            state,
            notes,
            TargetRef::of(resolved),
            dir,
            &resolved.state,
        );
        doc.targets = selection.targets.to_vec();
        doc.labels = selection.labels.to_vec();
        doc.not_selected = not_selected;
        doc
    }

    /// Whether apply would send anything, or a task is in doubt, or a duplicate is
    /// known: what `--detailed-exitcode` reports as 2. Orphans and superseded tasks
    /// that apply leaves alone (no `--prune`) do not count.
    pub fn would_send(&self) -> bool {
        self.tasks
            .iter()
            .any(|t| t.action.sends() || matches!(t.action, Action::InDoubt | Action::Duplicate))
    }

    /// Whether the plan lists anything besides `unchanged`.
    pub fn has_changes(&self) -> bool {
        self.tasks.iter().any(|t| t.action != Action::Unchanged)
    }

    /// Reads a plan file, refusing other formats and bodies that do not match their hash.
    pub fn load(path: &Path) -> Result<SavedPlan, FileError> {
        Self::load_for(path, None)
    }

    /// Reads a plan file: one plan, or the plans of every environment that
    /// `plan --all-envs --out FILE` wrote, of which `environment` is taken (required:
    /// a file of several plans is never applied whole).
    pub fn load_for(path: &Path, environment: Option<&str>) -> Result<SavedPlan, FileError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| FileError::Read {
            file: file.clone(),
            source,
        })?;
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<String>,
            environments: Option<serde_json::Map<String, serde_json::Value>>,
        }
        let envs = match serde_json::from_slice::<Version>(&bytes) {
            Ok(Version {
                format_version: Some(v),
                environments,
            }) if v == FORMAT_VERSION => environments,
            Ok(Version {
                format_version: Some(found),
                ..
            }) => return Err(FileError::Version { file, found }),
            _ => return Err(FileError::NotAPlan { file }),
        };
        let corrupt = |e: serde_json::Error| FileError::Corrupt {
            file: file.clone(),
            detail: e.to_string(),
        };
        let mut plan: SavedPlan = match envs {
            None => serde_json::from_slice(&bytes).map_err(corrupt)?,
            Some(mut envs) => {
                let names: Vec<String> = envs.keys().cloned().collect();
                let Some(name) = environment else {
                    return Err(FileError::WhichEnvironment { file, names });
                };
                let Some(one) = envs.remove(name) else {
                    return Err(FileError::NoSuchEnvironment {
                        file,
                        name: name.to_string(),
                        names,
                    });
                };
                serde_json::from_value(one).map_err(corrupt)?
            }
        };
        if plan.paths_from_plan_file {
            let base = crate::fsutil::parent_dir(path);
            let resolve = |p: &str| {
                crate::fsutil::normalize(&base.join(p))
                    .display()
                    .to_string()
            };
            plan.dir = resolve(&plan.dir);
            if !crate::location::is_postgres_url(&plan.state_path) {
                plan.state_path = resolve(&plan.state_path);
            }
            plan.paths_from_plan_file = false;
        }
        for t in &plan.tasks {
            if t.action.sends() && t.action != Action::Create && t.task_id.is_none() {
                return Err(FileError::NoRemoteTask {
                    file,
                    task: t.name.clone(),
                    action: t.action,
                });
            }
            if t.action.sends_body() {
                let Some(body) = &t.body else {
                    return Err(FileError::NoBody {
                        file,
                        task: t.name.clone(),
                    });
                };
                let canonical = serde_json::from_str::<serde_json::Value>(body.get())
                    .map(|v| t.manifest_like(&v).hash_of(&v))
                    .ok();
                if canonical.as_deref() != t.hash.as_deref() {
                    return Err(FileError::HashMismatch {
                        file,
                        task: t.name.clone(),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// The plan applied from another place than where its file says its manifest folder
    /// is (a plan file downloaded elsewhere, `apply PLAN --dir DIR`): the folder is
    /// `dir`. The state is then the one `dir`'s settings resolve (the caller's), which
    /// the plan's lineage and serial must match as always.
    pub fn with_dir(mut self, dir: &Path) -> SavedPlan {
        self.dir = dir.display().to_string();
        self
    }

    /// Writes the plan file atomically, with its paths relative to the file's folder.
    pub fn save(&self, path: &Path) -> Result<(), FileError> {
        let doc = self.as_file_at(path)?;
        write_plan_file(path, &doc)
    }

    /// Writes the plans of several environments (`plan --all-envs --out`): into a
    /// folder (an existing one, or a path ending in `/`), one plan file per
    /// environment (`<folder>/<environment>.json`); otherwise one file holding them
    /// all, `{"format_version", "environments": {NAME: <plan>}}`, of which
    /// `apply --env NAME FILE` applies one. Returns the files written.
    pub fn save_environments(
        plans: &[(&str, &SavedPlan)],
        path: &Path,
    ) -> Result<Vec<std::path::PathBuf>, FileError> {
        let folder = path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/');
        if folder {
            std::fs::create_dir_all(path).map_err(|source| FileError::Write {
                file: path.display().to_string(),
                source,
            })?;
            let mut out = Vec::new();
            for (name, plan) in plans {
                let file = path.join(format!("{name}.json"));
                plan.save(&file)?;
                out.push(file);
            }
            return Ok(out);
        }
        let mut map = serde_json::Map::new();
        for (name, plan) in plans {
            let doc = plan.as_file_at(path)?;
            let v = serde_json::to_value(&doc).map_err(|e| FileError::Corrupt {
                file: path.display().to_string(),
                detail: e.to_string(),
            })?;
            map.insert(name.to_string(), v);
        }
        let doc = serde_json::json!({"format_version": FORMAT_VERSION, "environments": map});
        write_plan_file(path, &doc)?;
        Ok(vec![path.to_path_buf()])
    }

    /// The plan as a file at `path` holds it: paths relative to the file's folder.
    fn as_file_at(&self, path: &Path) -> Result<SavedPlan, FileError> {
        let file = path.display().to_string();
        let base = crate::fsutil::parent_dir(path);
        let relative = |p: &str| {
            crate::fsutil::relative_to(Path::new(p), base)
                .map(|r| r.display().to_string())
                .map_err(|source| FileError::Write {
                    file: file.clone(),
                    source,
                })
        };
        let mut doc = self.clone();
        if !doc.paths_from_plan_file {
            doc.dir = relative(&self.dir)?;
            if !crate::location::is_postgres_url(&self.state_path) {
                doc.state_path = relative(&self.state_path)?;
            }
            doc.paths_from_plan_file = true;
        }
        Ok(doc)
    }

    /// Refuses to apply this plan to another target than the one it was made for
    /// (where it recorded one).
    pub fn check_target(&self, now: &TargetRef) -> Result<(), TargetChanged> {
        let pairs = [
            (
                "endpoint host",
                &self.target.endpoint_host,
                &now.endpoint_host,
            ),
            ("project", &self.target.project_id, &now.project_id),
            ("workspace", &self.target.workspace, &now.workspace),
        ];
        for (what, planned, current) in pairs {
            if let (Some(p), Some(c)) = (planned, current)
                && p != c
            {
                return Err(TargetChanged {
                    what,
                    planned: p.clone(),
                    current: c.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether this saved plan may still be applied, given a `fresh` plan made now of
    /// the same manifests against `state`: the state and the manifests are as they
    /// were, or the fresh plan sends exactly the same requests.
    pub fn still_valid(
        self,
        fresh: &SavedPlan,
        state: &State,
        file: &Path,
    ) -> Result<SavedPlan, Stale> {
        let mut reasons = Vec::new();
        if self.state.lineage.is_empty() && !state.lineage.is_empty() {
            reasons.push(format!(
                "the state moved on (empty in the plan, serial {} now: something was applied since)",
                state.serial
            ));
        } else if self.state.lineage != state.lineage {
            let shown = |l: &str| match l {
                "" => "(none: not written yet)".to_string(),
                l => l.to_string(),
            };
            reasons.push(format!(
                "the state is another one (lineage {} in the plan, {} now)",
                shown(&self.state.lineage),
                shown(&state.lineage)
            ));
        } else if self.state.serial != state.serial {
            reasons.push(format!(
                "the state moved on (serial {} in the plan, {} now: something was applied since)",
                self.state.serial, state.serial
            ));
        }
        let now = &fresh.manifests;
        if now.digest != self.manifests.digest {
            let changed: Vec<&str> = now
                .files
                .keys()
                .chain(self.manifests.files.keys())
                .filter(|f| now.files.get(*f) != self.manifests.files.get(*f))
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
            return Ok(self);
        }
        if self.sends() == fresh.sends() {
            tracing::info!(file = %file.display(), "{}; but a fresh plan sends exactly the same requests, so the saved plan is applied", reasons.join("; "));
            return Ok(self);
        }
        Err(Stale {
            file: file.display().to_string(),
            dir: self.dir.clone(),
            environment: self.environment.clone(),
            reasons,
        })
    }

    /// The tasks to send, with the manifests (name, canonical body, hash, file) of
    /// those that send a body. A body with sensitive values holds only their
    /// fingerprints: it is sent as `loaded` (the manifests as read now) has it, which
    /// must have the same hash, or the secret changed since the plan was made.
    pub fn manifests_to_send(
        &self,
        loaded: &Loaded,
    ) -> Result<(Plan, Vec<Manifest>), SecretChanged> {
        let mut manifests = Vec::new();
        let mut tasks = Vec::new();
        for t in self.tasks.iter().filter(|t| t.action.sends()) {
            let mut manifest = None;
            if t.action.sends_body() {
                let Some(body) = &t.body else { continue };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(body.get()) else {
                    continue;
                };
                let file = t.file.clone().unwrap_or_default();
                // The manifest as read now, when it is the one planned (its real body,
                // sensitive values included); else the body the plan holds.
                let now = loaded
                    .manifests
                    .iter()
                    .find(|m| m.name == t.name && Some(&m.hash) == t.hash.as_ref())
                    .cloned();
                let m = match now {
                    Some(m) => m,
                    None if crate::load::secret::holds_fingerprint(&value) => {
                        return Err(SecretChanged {
                            task: t.name.clone(),
                        });
                    }
                    None => {
                        let mut m = t.manifest_like(&value);
                        m.file = file.clone();
                        m.display = file;
                        m
                    }
                };
                manifests.push(m);
                manifest = Some(manifests.len() - 1);
            }
            tasks.push(crate::plan::PlannedTask {
                name: t.name.clone(),
                action: t.action,
                hash: t.hash.clone(),
                task_id: t.task_id.clone(),
                file: t.file.clone(),
                manifest,
                superseded: t.superseded,
                duplicate: t.duplicate,
            });
        }
        Ok((Plan { tasks }, manifests))
    }

    /// The (name, action, hash, task ID) of every task that sends a request: two plans
    /// with the same list send the same requests.
    pub fn sends(&self) -> Vec<(&str, Action, Option<&str>, Option<&str>)> {
        self.tasks
            .iter()
            .filter(|t| t.action.sends())
            .map(|t| {
                (
                    t.name.as_str(),
                    t.action,
                    t.hash.as_deref(),
                    t.task_id.as_deref(),
                )
            })
            .collect()
    }

    /// How many remote tasks the plan deletes: all, and those recorded as the current
    /// task of a name (not superseded, not a duplicate).
    pub fn deletes(&self) -> (usize, usize) {
        let all = self.tasks.iter().filter(|t| t.action == Action::Delete);
        let recorded = all
            .clone()
            .filter(|t| !t.superseded && !t.duplicate)
            .count();
        (all.count(), recorded)
    }
}

/// Why a plan file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read plan file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "plan file {file} has format version {found}; this taskform reads version {FORMAT_VERSION}: make the plan again with this version"
    )]
    Version { file: String, found: String },
    #[error("{file} is not a taskform plan file (no format_version)")]
    NotAPlan { file: String },
    #[error("plan file {file} is corrupt: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("plan file {file}: task {task} ({}) names no remote task", .action.as_str())]
    NoRemoteTask {
        file: String,
        task: String,
        action: Action,
    },
    #[error("plan file {file}: task {task} has no body to send")]
    NoBody { file: String, task: String },
    #[error(
        "plan file {file}: the body of task {task} does not match its hash (edited by hand?); make the plan again"
    )]
    HashMismatch { file: String, task: String },
    #[error("cannot write plan file {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "plan file {file} holds the plans of {}: apply one with --env NAME (or TASKFORM_ENV=NAME)",
        .names.join(", ")
    )]
    WhichEnvironment { file: String, names: Vec<String> },
    #[error(
        "plan file {file} holds no plan for the environment {name} (it holds {}); apply one of those, or make a plan that includes {name}",
        .names.join(", ")
    )]
    NoSuchEnvironment {
        file: String,
        name: String,
        names: Vec<String>,
    },
}

/// Writes a plan file's JSON atomically.
fn write_plan_file(path: &Path, doc: &impl Serialize) -> Result<(), FileError> {
    let file = path.display().to_string();
    let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| FileError::Corrupt {
        file: file.clone(),
        detail: e.to_string(),
    })?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| FileError::Write { file, source })
}

/// A saved plan applied to another target than it was made for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plan was made for {what} {planned}, but this apply targets {current}; make the plan for this target, or apply with the plan's settings"
)]
pub struct TargetChanged {
    pub what: &'static str,
    pub planned: String,
    pub current: String,
}

/// ` --env NAME` for a command suggested in a repo with environments (empty without).
pub fn env_flag(environment: Option<&str>) -> String {
    environment
        .map(|e| format!(" --env {e}"))
        .unwrap_or_default()
}

/// A saved plan that no longer matches the state or the manifests, and whose requests
/// a fresh plan would not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to apply {file}: {}, and a fresh plan would send different requests. Make a new plan (`taskform plan {dir}{} --out {file}`), review it, and apply that", .reasons.join("; "), env_flag(.environment.as_deref()))]
pub struct Stale {
    pub file: String,
    /// The manifest folder, for the command that makes a new plan.
    pub dir: String,
    /// The plan's environment, for that command.
    pub environment: Option<String>,
    pub reasons: Vec<String>,
}

/// A planned body with sensitive values whose values are not what they were when the
/// plan was made (the plan holds only their fingerprints, so it cannot send them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task {task}: a sensitive value (`${{secret:...}}`) or the manifest differs from when the plan was made; nothing was sent. Make a new plan with the environment apply runs in"
)]
pub struct SecretChanged {
    pub task: String,
}
