//! Day-two edits of the state (`taskform state rm|mv|import`): forget a record, follow
//! a rename, record a remote task by its ID. Each changes the state only through its
//! transitions; the caller holds the lock and persists (serial + 1, lineage kept).

use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::client::{Shown, TaskApi};
use crate::state::{State, TaskRecord};

/// Rewrites, before planning, every record that holds in plain text a value at a path
/// its manifest now marks sensitive (recorded by an `export` before the value became
/// `${secret:...}`, or equal to a secret as a whole): the body gets the fingerprint,
/// and the hash is counted again over it, so that an unchanged value plans no update
/// (a change of representation, not of content) while a changed one still does.
/// Returns the rewritten records: (name, paths). The caller persists the state when
/// it writes (apply), and says so in the plan.
pub fn fingerprint_plain(
    state: &mut State,
    manifests: &[Manifest],
    key: &Key,
) -> Vec<(String, Vec<String>)> {
    use crate::load::secret;
    let mut out = Vec::new();
    for m in manifests.iter().filter(|m| !m.sensitive.is_empty()) {
        let Some(record) = state.tasks.get(&m.name) else {
            continue;
        };
        let Some(Ok(mut body)) = record
            .body
            .as_ref()
            .map(|b| serde_json::from_str::<serde_json::Value>(b.get()))
        else {
            continue;
        };
        let consistent = m.hash_of(&body) == record.hash;
        let mut plain = Vec::new();
        for p in &m.sensitive {
            if let Some(v) = secret::pointer_mut(&mut body, p)
                && !v.as_str().is_some_and(secret::is_fingerprint)
            {
                *v = serde_json::Value::String(key.fingerprint(p, v));
                plain.push(p.clone());
            }
        }
        if plain.is_empty() {
            continue;
        }
        let text = crate::hash::canonical_and_hash(&body).0;
        let hash = match consistent {
            true => m.hash_of(&body),
            false => record.hash.clone(),
        };
        state.record_fingerprinted(
            &m.name,
            hash,
            serde_json::value::RawValue::from_string(text).ok(),
        );
        out.push((m.name.clone(), plain));
    }
    out
}

/// Records where each recorded task's manifest is now, when it moved (a file renamed
/// or split): nothing is sent for it, and `state list` names the file that declares
/// it. Returns how many records changed.
pub fn follow_files(state: &mut State, manifests: &[Manifest]) -> usize {
    let mut n = 0;
    for m in manifests {
        if state
            .tasks
            .get(&m.name)
            .is_some_and(|r| r.file.as_deref() != Some(m.file.as_str()))
        {
            state.record_file(&m.name, &m.file);
            n += 1;
        }
    }
    n
}

/// What one `moved:` entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// The record of `from` now bears the name `to`.
    Followed { from: String, to: String },
    /// Nothing to do: `from` is not recorded (done already, or never applied), or `to`
    /// is recorded already, or no manifest declares `to`.
    Stale {
        from: String,
        to: String,
        why: StaleMove,
    },
}

/// Why a `moved:` entry had nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleMove {
    /// The new name is recorded and the old one is not: the move was followed before
    /// (the steady state of an entry left in taskform.yaml).
    AlreadyMoved,
    /// The state records no task of the old name (and none of the new).
    OldNameUnknown,
    /// Both names are recorded (or the new one is in doubt).
    NewNameTaken,
    /// No manifest declares the new name.
    NoManifest,
}

impl std::fmt::Display for StaleMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StaleMove::AlreadyMoved => {
                "already moved: the state records the new name, not the old one"
            }
            StaleMove::OldNameUnknown => "the state records no task of the old name",
            StaleMove::NewNameTaken => "the state already records the new name",
            StaleMove::NoManifest => "no manifest declares the new name",
        })
    }
}

/// Follows the renames of `moved:` in the state (before planning), so that a renamed
/// task is updated in place (its name field) instead of deleted and created again.
pub fn follow_moves(
    state: &mut State,
    moved: &[crate::load::settings::Moved],
    manifests: &[Manifest],
) -> Vec<Move> {
    let mut out = Vec::new();
    for m in moved {
        let (from, to) = (m.from.clone(), m.to.clone());
        let why = if !state.tasks.contains_key(&from) {
            Some(match state.tasks.contains_key(&to) {
                true => StaleMove::AlreadyMoved,
                false => StaleMove::OldNameUnknown,
            })
        } else if state.tasks.contains_key(&to) || state.in_doubt.contains_key(&to) {
            Some(StaleMove::NewNameTaken)
        } else if !manifests.iter().any(|x| x.name == to) {
            Some(StaleMove::NoManifest)
        } else {
            None
        };
        match why {
            Some(why) => out.push(Move::Stale { from, to, why }),
            None => {
                // Checked above: the rename cannot fail.
                if state.rename(&from, &to).is_ok() {
                    out.push(Move::Followed { from, to });
                }
            }
        }
    }
    out
}

/// Why a task could not be imported by ID.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no manifest declares {0}: `taskform state import` records a remote task for a manifest; write its manifest first"
    )]
    NoManifest(String),
    #[error(
        "the state already records {name} as task {task_id}; `taskform state rm {name}` first to record another task"
    )]
    Recorded { name: String, task_id: String },
    #[error(
        "task {task_id} is already recorded under the name {other}; one remote task cannot stand for two manifests"
    )]
    Taken { task_id: String, other: String },
    #[error(
        "the service has no task {0} (it answered that the task does not exist); check the ID, the project and the workspace"
    )]
    Gone(String),
    #[error(transparent)]
    Remote(#[from] crate::remote::Error),
}

/// How a task was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Read with show; the server has the manifest's content.
    Same,
    /// Read with show; the server's content differs: the next plan shows the change.
    Differs,
    /// The endpoint offers no show: recorded as holding the manifest's content.
    Unread,
}

/// Records the remote task `task_id` for the manifest `name`, after reading it.
pub async fn import_by_id(
    state: &mut State,
    manifests: &[Manifest],
    name: &str,
    task_id: &str,
    api: &dyn TaskApi,
    key: &Key,
) -> Result<Imported, ImportError> {
    let m = manifests
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ImportError::NoManifest(name.to_string()))?;
    if let Some(r) = state.tasks.get(name) {
        return Err(ImportError::Recorded {
            name: name.to_string(),
            task_id: r.task_id.clone(),
        });
    }
    if let Some((other, _)) = state
        .tasks
        .iter()
        .find(|(_, r)| r.task_id == task_id || r.superseded.iter().any(|s| s.task_id == task_id))
    {
        return Err(ImportError::Taken {
            task_id: task_id.to_string(),
            other: other.clone(),
        });
    }
    let (hash, body, how) = match api.show(task_id).await? {
        Shown::Gone => return Err(ImportError::Gone(task_id.to_string())),
        Shown::Unsupported => (
            m.hash.clone(),
            m.shown_canonical().to_string(),
            Imported::Unread,
        ),
        Shown::Found(remote) => {
            if let Some(theirs) = remote.get("name").and_then(|v| v.as_str())
                && theirs != name
            {
                tracing::warn!(
                    task = %crate::load::diagnostic::escape(name),
                    remote_name = %crate::load::diagnostic::escape(theirs),
                    "the remote task bears another name: the next apply renames it (check the ID)"
                );
            }
            let theirs = super::observe::sent_fields(&remote, &m.shown_body(), key);
            let (text, _) = crate::hash::canonical_and_hash(&theirs);
            let hash = m.hash_of(&theirs);
            match hash == m.hash {
                true => (hash, m.shown_canonical().to_string(), Imported::Same),
                false => (hash, text, Imported::Differs),
            }
        }
    };
    state.record_created(
        name,
        TaskRecord {
            task_id: task_id.to_string(),
            hash,
            file: Some(m.file.clone()),
            applied_at: None,
            body: serde_json::value::RawValue::from_string(body).ok(),
            superseded: Vec::new(),
        },
    );
    Ok(how)
}
