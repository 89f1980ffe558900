//! The state file: what taskform has created, by task name.
//!
//! ```json
//! {"version": 1, "serial": 3, "lineage": "<uuid>",
//!  "target": {"project_id": "...", "workspace": "..."},
//!  "tasks": {"<name>": {"task_id": "...", "hash": "sha256:...", "file": "...",
//!                       "applied_at": "RFC 3339", "body": {...}}},
//!  "in_doubt": {"<name>": {"hash": "sha256:...", "file": "...", "sent_at": "...",
//!                          "body": {...}}}}
//! ```
//!
//! Only `version`, `tasks[*].task_id` and `tasks[*].hash` are required: a hand-repaired
//! file or one from an older version loads, and the plan copes with missing bodies.
//! `serial` grows by one on every write; `lineage` identifies one state's history so
//! that a saved plan or journal can never be applied to another state.

pub mod copy;
pub mod journal;
pub mod lease;
pub mod local;
pub mod lock;
pub mod memory;
pub mod postgres;
pub mod remembered;
pub mod store;

pub use local::LocalStore;
pub use store::{StateStore, StoreError};

use crate::fsutil;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The state format this version reads and writes.
pub const VERSION: u64 = 1;

/// Where the tasks live: a project and a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub project_id: String,
    pub workspace: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "project {} / workspace {}",
            self.project_id, self.workspace
        )
    }
}

/// A task that exists on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The body last applied, for showing what a replace changes. Kept as raw JSON:
    /// it is parsed only when a diff is shown, which keeps loading a large state fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
    /// Earlier remote tasks of this name that a replace left on the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
}

/// The revision of the config repo the state was last reconciled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApplied {
    /// The commit SHA a watcher applied; `None` for an apply of a command (a person
    /// or a pipeline), which applies a folder, not a watched revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub at: String,
    /// Who applied (`user@host`, and the command), for an apply not of a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A remote task left behind by a replace (the create-only API cannot delete it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    pub task_id: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<String>,
}

/// A remote task bearing a name the state manages whose ID no record holds, found by a
/// listing of the workspace (a refresh): a create of taskform's own whose answer was
/// lost and whose intent was settled wrongly, or a task made outside taskform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub task_id: String,
    /// Its content is exactly what taskform sends for the name's manifest (a lost
    /// create of taskform's own): `--prune` deletes it. Any other is only reported.
    #[serde(default)]
    pub same_content: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_at: Option<String>,
}

/// A create that was sent but whose answer never arrived: the task may or may not exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InDoubt {
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// Why the outcome is unknown (timeout, connection reset, 502...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The body that was sent, as shown (sensitive values fingerprinted; `hash` is its
    /// content hash as its manifest counted it): what settling compares the service's
    /// tasks with once no manifest has `hash` any more. `None` in an intent journaled
    /// before taskform kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
}

impl PartialEq for InDoubt {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.file == other.file
            && self.sent_at == other.sent_at
            && self.reason == other.reason
            && self.body.as_ref().map(|b| b.get()) == other.body.as_ref().map(|b| b.get())
    }
}

impl Eq for InDoubt {}

/// The whole state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u64,
    #[serde(default)]
    pub serial: u64,
    #[serde(default)]
    pub lineage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_doubt: BTreeMap<String, InDoubt>,
    /// Remote tasks of managed names that no record holds, by name (the last refresh's
    /// finding; see [`Duplicate`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub duplicates: BTreeMap<String, Vec<Duplicate>>,
    /// The config repo's commit a `watch --git` applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<LastApplied>,
    /// A tombstone: `state copy --move` moved this state elsewhere; every later use
    /// of this location is refused with where it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved: Option<MovedTo>,
    /// `taskform suspend`: watchers plan but send nothing, and `apply` refuses
    /// (without `--ignore-suspend`) until `taskform resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
    /// Fields written by a newer minor version, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// Where a moved state went (`state copy --move`), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedTo {
    /// The destination, as `describe` names it (never a password).
    pub to: String,
    /// RFC 3339.
    pub at: String,
}

/// Who suspended a state, when and why (`taskform suspend --reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// `user@host (suspend)`.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {detail}")]
    Corrupt { path: String, detail: String },
    #[error(
        "state file {path} has version {found}, written by a newer taskform (this one reads version {VERSION}); upgrade taskform"
    )]
    Newer { path: String, found: u64 },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl State {
    /// An empty state. Its lineage is chosen when it is first saved, so that every
    /// reader of a state not yet written (a plan, then the apply of that plan) sees the
    /// same one: none.
    pub fn new() -> Self {
        State {
            version: VERSION,
            serial: 0,
            lineage: String::new(),
            target: None,
            tasks: BTreeMap::new(),
            in_doubt: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            last_applied: None,
            moved: None,
            suspended: None,
            extra: Map::new(),
        }
    }

    /// Reads a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State, StateError> {
        let p = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new()),
            Err(source) => return Err(StateError::Io { path: p, source }),
        };
        State::from_bytes(&bytes, &p)
    }

    /// Parses state bytes; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<State, StateError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: Option<Value>,
        }
        match serde_json::from_slice::<State>(bytes) {
            Ok(state) => {
                if state.version > VERSION {
                    return Err(StateError::Newer {
                        path: path.into(),
                        found: state.version,
                    });
                }
                if state.version == 0 {
                    return Err(StateError::Corrupt {
                        path: path.into(),
                        detail: "version 0 is not a state version".into(),
                    });
                }
                Ok(state)
            }
            Err(e) => {
                if let Ok(VersionOnly { version: Some(v) }) =
                    serde_json::from_slice::<VersionOnly>(bytes)
                    && let Some(found) = v.as_u64().filter(|n| *n > VERSION)
                {
                    return Err(StateError::Newer {
                        path: path.into(),
                        found,
                    });
                }
                let detail = if e.is_eof() {
                    format!(
                        "the file ends early at line {} column {} (truncated?); restore it from version control or a backup",
                        e.line(),
                        e.column()
                    )
                } else {
                    e.to_string()
                };
                Err(StateError::Corrupt {
                    path: path.into(),
                    detail,
                })
            }
        }
    }

    /// Writes the state atomically after incrementing `serial`.
    pub fn save(&mut self, path: &Path) -> Result<(), StateError> {
        let bytes = self.next_version();
        fsutil::write_atomic(path, &bytes).map_err(|source| {
            self.serial -= 1;
            StateError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Moves to the next serial (choosing the lineage on the first write) and gives
    /// the document to write; a backend that fails to write it takes `serial` back.
    pub fn next_version(&mut self) -> Vec<u8> {
        if self.lineage.is_empty() {
            self.lineage = uuid::Uuid::new_v4().to_string();
        }
        self.serial += 1;
        self.encode()
    }

    /// The state document, as every backend stores it.
    pub fn encode(&self) -> Vec<u8> {
        // A State is strings, numbers and raw JSON: it always serializes.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Writes the state exactly as it is (no new serial), as `state copy` does.
    pub fn write_exact(&self, path: &Path) -> Result<(), StateError> {
        fsutil::write_atomic(path, &self.encode()).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The transitions of a state: every change to the recorded tasks goes through one of
/// these, whether it comes from a journal being replayed, an in-doubt create settled,
/// a remote task adopted or refreshed, or a record forgotten. Each is idempotent, so
/// replaying a journal twice changes nothing more.
impl State {
    /// A create of `body` (as shown) is about to be sent: until its answer is recorded,
    /// the task is in doubt.
    pub fn record_intent(
        &mut self,
        name: &str,
        hash: &str,
        file: Option<String>,
        at: &str,
        body: Option<Box<RawValue>>,
    ) {
        self.in_doubt.insert(
            name.to_string(),
            InDoubt {
                hash: hash.to_string(),
                file,
                sent_at: Some(at.to_string()),
                reason: Some("taskform stopped before the answer arrived".into()),
                body,
            },
        );
    }

    /// The create's outcome is unknown, for this reason.
    pub fn record_in_doubt_reason(&mut self, name: &str, hash: &str, reason: &str) {
        if let Some(d) = self.in_doubt.get_mut(name).filter(|d| d.hash == hash) {
            d.reason = Some(reason.to_string());
        }
    }

    /// The create was refused: no task was made.
    pub fn record_failed(&mut self, name: &str, hash: &str) {
        if self.in_doubt.get(name).is_some_and(|d| d.hash == hash) {
            self.in_doubt.remove(name);
        }
    }

    /// A remote task now holds this name's content (a create answered, an in-doubt
    /// create found on the server, a remote task adopted). A different task recorded
    /// under the name before stays on the server: it becomes superseded, so that
    /// `--prune` deletes it. An in-doubt create of the same content is settled.
    pub fn record_created(&mut self, name: &str, mut record: TaskRecord) {
        if self
            .in_doubt
            .get(name)
            .is_some_and(|d| d.hash == record.hash)
        {
            self.in_doubt.remove(name);
        }
        record.superseded.clear();
        self.forget_duplicate(name, &record.task_id);
        if let Some(old) = self.tasks.remove(name) {
            record.superseded = old.superseded;
            if old.task_id != record.task_id {
                record.superseded.push(Superseded {
                    task_id: old.task_id,
                    hash: old.hash,
                    replaced_at: record.applied_at.clone(),
                });
            }
        }
        self.tasks.insert(name.to_string(), record);
    }

    /// Remote tasks of this name with the content its in-doubt create sent, found besides
    /// the one recorded for it (`--recreate-in-doubt` after several lost answers): kept
    /// as superseded, so that `--prune` deletes them. Returns whether anything changed.
    pub fn record_left_behind(&mut self, name: &str, task_id: &str, hash: &str, at: &str) -> bool {
        let Some(r) = self.tasks.get_mut(name) else {
            return false;
        };
        if r.task_id == task_id || r.superseded.iter().any(|s| s.task_id == task_id) {
            return false;
        }
        r.superseded.push(Superseded {
            task_id: task_id.to_string(),
            hash: hash.to_string(),
            replaced_at: Some(at.to_string()),
        });
        self.forget_duplicate(name, task_id);
        true
    }

    /// Every remote task ID the state records: the tasks, their superseded ones.
    pub fn recorded_ids(&self) -> std::collections::HashSet<&str> {
        self.tasks
            .values()
            .flat_map(|r| {
                std::iter::once(r.task_id.as_str())
                    .chain(r.superseded.iter().map(|s| s.task_id.as_str()))
            })
            .collect()
    }

    /// The recorded task was changed in place to this content (PUT). Returns whether
    /// `task_id` is the name's recorded task (otherwise nothing changes).
    pub fn record_updated(
        &mut self,
        name: &str,
        task_id: &str,
        hash: &str,
        file: Option<String>,
        at: &str,
        body: Option<Box<RawValue>>,
    ) -> bool {
        match self.tasks.get_mut(name) {
            Some(r) if r.task_id == task_id => {
                r.hash = hash.to_string();
                r.file = file.or(r.file.take());
                r.applied_at = Some(at.to_string());
                r.body = body;
                true
            }
            _ => false,
        }
    }

    /// The remote task `task_id` of this name is gone (deleted, or found deleted). The
    /// newest superseded task, if any, stays recorded under the name so that it is
    /// still pruned; otherwise the name is forgotten. Returns whether anything changed.
    pub fn record_deleted(&mut self, name: &str, task_id: &str) -> bool {
        if self.forget_duplicate(name, task_id) {
            return true;
        }
        let Some(r) = self.tasks.get_mut(name) else {
            return false;
        };
        if r.task_id == task_id {
            match r.superseded.pop() {
                Some(s) => {
                    r.task_id = s.task_id;
                    r.hash = s.hash;
                    r.body = None;
                }
                None => {
                    self.tasks.remove(name);
                }
            }
            true
        } else {
            let before = r.superseded.len();
            r.superseded.retain(|s| s.task_id != task_id);
            r.superseded.len() != before
        }
    }

    /// Drops `task_id` from the name's duplicates; returns whether it was one.
    fn forget_duplicate(&mut self, name: &str, task_id: &str) -> bool {
        let Some(list) = self.duplicates.get_mut(name) else {
            return false;
        };
        let before = list.len();
        list.retain(|d| d.task_id != task_id);
        let was = list.len() != before;
        if list.is_empty() {
            self.duplicates.remove(name);
        }
        was
    }

    /// A complete listing of the workspace found these duplicates: they replace what
    /// an earlier one found (whose `found_at` a finding of the same task keeps).
    pub fn record_duplicates(&mut self, found: BTreeMap<String, Vec<Duplicate>>) {
        self.duplicates = found;
    }

    /// Forgets a name (its task, any superseded tasks and an in-doubt create) without
    /// touching the server. Returns the record forgotten.
    pub fn forget(&mut self, name: &str) -> Option<Forgotten> {
        self.duplicates.remove(name);
        let doubt = self.in_doubt.remove(name);
        match (self.tasks.remove(name), doubt) {
            (Some(record), _) => Some(Forgotten::Task(record)),
            (None, Some(_)) => Some(Forgotten::InDoubt),
            (None, None) => None,
        }
    }

    /// The record of `old` follows a rename to `new` (a task the service knows under
    /// its ID; its name field changes with the next update). `new` must be unrecorded.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<(), RenameError> {
        if self.tasks.contains_key(new) || self.in_doubt.contains_key(new) {
            return Err(RenameError::Taken(new.to_string()));
        }
        let record = self
            .tasks
            .remove(old)
            .ok_or_else(|| RenameError::Unknown(old.to_string()))?;
        self.tasks.insert(new.to_string(), record);
        Ok(())
    }

    /// The server holds other content for the recorded task (changed outside
    /// taskform): the record takes the server's content, so the next plan shows the
    /// change back to the manifest's.
    pub fn record_drift(&mut self, name: &str, hash: String, body: Option<Box<RawValue>>) {
        if let Some(r) = self.tasks.get_mut(name) {
            r.hash = hash;
            r.body = body;
        }
    }
}

impl State {
    /// The manifest of `name` moved to `file` (nothing changed on the server).
    pub fn record_file(&mut self, name: &str, file: &str) {
        if let Some(r) = self.tasks.get_mut(name) {
            r.file = Some(file.to_string());
        }
    }

    /// The record of `name` holds the same content in another form (a value now
    /// sensitive, recorded as its fingerprint): hash and body replaced, nothing else.
    pub fn record_fingerprinted(&mut self, name: &str, hash: String, body: Option<Box<RawValue>>) {
        if let Some(r) = self.tasks.get_mut(name) {
            r.hash = hash;
            r.body = body;
        }
    }
}

/// What [`State::forget`] forgot.
#[derive(Debug, Clone)]
pub enum Forgotten {
    /// A recorded task (with any superseded ones).
    Task(TaskRecord),
    /// Only a create in doubt.
    InDoubt,
}

/// Why a record cannot be renamed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    #[error("the state records no task named {0}")]
    Unknown(String),
    #[error(
        "the state already records a task named {0}; `taskform state rm {0}` first if it is stale"
    )]
    Taken(String),
}

/// A state that belongs to another target than the one a command is pointed at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "state file {state} belongs to {recorded}, but the target is {target}; use the state file of that target (--state) or check --project-id/--workspace"
)]
pub struct TargetMismatch {
    /// Where the state lives ([`store::StateStore::describe`]).
    pub state: String,
    pub recorded: Target,
    pub target: Target,
}

/// Refuses a target other than the one the state records.
pub fn check_target(state: &State, target: &Target, location: &str) -> Result<(), TargetMismatch> {
    match &state.target {
        Some(recorded) if recorded != target => Err(TargetMismatch {
            state: location.to_string(),
            recorded: recorded.clone(),
            target: target.clone(),
        }),
        _ => Ok(()),
    }
}

/// Refuses a state whose target differs in a part that is known (an offline plan may
/// know only the project or only the workspace).
pub fn check_known_parts(
    state: &State,
    project_id: Option<&str>,
    workspace: Option<&str>,
    location: &str,
) -> Result<(), TargetMismatch> {
    let Some(recorded) = &state.target else {
        return Ok(());
    };
    let target = Target {
        project_id: project_id.unwrap_or(&recorded.project_id).to_string(),
        workspace: workspace.unwrap_or(&recorded.workspace).to_string(),
    };
    check_target(state, &target, location)
}

/// The store for a `--state` location: a path is the local file backend, a
/// `postgres://` URL the PostgreSQL one (connection settings the URL leaves out come
/// from `env`, as libpq's do; `command` names the session on the server).
pub fn open(
    location: &crate::location::StateLocation,
    env: &dyn Fn(&str) -> Option<String>,
    command: &str,
) -> Result<Box<dyn StateStore>, StoreError> {
    use crate::location::StateLocation;
    Ok(match location {
        StateLocation::File(path) => Box::new(LocalStore::new(path)),
        StateLocation::Postgres(pg) => Box::new(postgres::PgStore::new(pg.clone(), env, command)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut s = State::load(&path).unwrap();
        assert_eq!(s.serial, 0);
        s.tasks.insert(
            "a".into(),
            TaskRecord {
                task_id: "1".into(),
                hash: "sha256:x".into(),
                file: Some("a.yaml".into()),
                applied_at: None,
                body: RawValue::from_string(r#"{"name":"a"}"#.into()).ok(),
                superseded: vec![],
            },
        );
        s.save(&path).unwrap();
        s.save(&path).unwrap();
        let back = State::load(&path).unwrap();
        assert_eq!(back.serial, 2);
        assert_eq!(
            back.tasks["a"].body.as_ref().map(|b| b.get()),
            Some(r#"{"name":"a"}"#)
        );
        assert_eq!(back.lineage, s.lineage);
    }

    #[test]
    fn minimal_hand_written_state_loads() {
        let s = State::from_bytes(br#"{"version": 1, "serial": 4, "lineage": "l", "target": {"project_id": "p", "workspace": "w"}, "tasks": {"a": {"task_id": "1", "hash": "sha256:x"}}}"#, "s.json").unwrap();
        assert!(s.tasks["a"].body.is_none());
        assert_eq!(s.serial, 4);
    }

    #[test]
    fn corrupt_truncated_and_newer_files_are_errors() {
        let e = State::from_bytes(b"{\"version\": 1, \"tasks\": {", "s.json").unwrap_err();
        assert!(e.to_string().contains("ends early"), "{e}");
        let e = State::from_bytes(br#"{"version": 2, "tasks": [] }"#, "s.json").unwrap_err();
        assert!(e.to_string().contains("newer taskform"), "{e}");
        let e = State::from_bytes(b"garbage", "s.json").unwrap_err();
        assert!(
            e.to_string().starts_with("state file s.json is corrupt"),
            "{e}"
        );
    }

    #[test]
    fn other_targets_are_refused() {
        let mut s = State::new();
        let t = Target {
            project_id: "p".into(),
            workspace: "w".into(),
        };
        assert!(check_target(&s, &t, "s").is_ok());
        s.target = Some(Target {
            project_id: "p".into(),
            workspace: "other".into(),
        });
        assert!(
            check_target(&s, &t, "s")
                .unwrap_err()
                .to_string()
                .contains("belongs to project p / workspace other")
        );
    }
}
