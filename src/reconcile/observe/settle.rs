//! Settling in-doubt creates: before planning, search the service for tasks of the
//! same name. Exactly one with the content that was sent means the create did happen:
//! its ID is recorded (adopted). None of that name means it did not: the task is
//! created again. Several, or tasks of that name with other content, stay in doubt
//! with their IDs named, for a person to decide.

use super::sent_fields;
use crate::hash;
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::Error;
use crate::remote::api::remote_task_id;
use crate::remote::client::TaskApi;
use crate::state::{State, TaskRecord};
use serde_json::Value;

/// What became of one in-doubt task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The create had happened: this remote task is now recorded.
    Adopted { name: String, task_id: String },
    /// No remote task has that name: safe to create.
    Cleared { name: String },
    /// Still in doubt, with why.
    Unresolved { name: String, why: String },
}

/// Settles every in-doubt task of `state` that a manifest still declares with the same
/// content. Returns `None` when the endpoint offers no search (create-only gateway).
pub async fn settle(
    state: &mut State,
    manifests: &[Manifest],
    api: &dyn TaskApi,
    key: &Key,
) -> Result<Option<Vec<Settled>>, Error> {
    let mut out = Vec::new();
    for (name, doubt) in state.in_doubt.clone() {
        let Some(m) = manifests
            .iter()
            .find(|m| m.name == name && m.hash == doubt.hash)
        else {
            out.push(Settled::Unresolved { name, why: "its manifest changed since the create was sent, so the remote task cannot be compared".into() });
            continue;
        };
        let Some(found) = api.search_by_name(&name).await? else {
            return Ok(None);
        };
        let sent = m.shown_body();
        let (matching, other): (Vec<&Value>, Vec<&Value>) = found
            .iter()
            .partition(|t| hash::content_hash(&sent_fields(t, &sent, key)) == doubt.hash);
        match (matching.as_slice(), other.as_slice()) {
            ([one], []) => {
                let task_id = remote_task_id(one);
                state.record_created(
                    &name,
                    TaskRecord {
                        task_id: task_id.clone(),
                        hash: m.hash.clone(),
                        file: Some(m.file.clone()),
                        applied_at: doubt.sent_at.clone(),
                        body: serde_json::value::RawValue::from_string(
                            m.shown_canonical().to_string(),
                        )
                        .ok(),
                        superseded: Vec::new(),
                    },
                );
                out.push(Settled::Adopted { name, task_id });
            }
            ([], []) => {
                // The create never happened: as if it had been refused.
                state.record_failed(&name, &doubt.hash);
                out.push(Settled::Cleared { name });
            }
            _ => {
                let ids: Vec<String> = found.iter().map(remote_task_id).collect();
                out.push(Settled::Unresolved {
                    name,
                    why: format!("the service has {} task(s) of that name ({}), {} with the content that was sent; delete the extra ones or run with --recreate-in-doubt", found.len(), ids.join(", "), matching.len()),
                });
            }
        }
    }
    Ok(Some(out))
}

/// Logs what settling did.
pub fn report(settled: &Option<Vec<Settled>>) {
    match settled {
        None => tracing::warn!(
            "the endpoint offers no search: in-doubt tasks stay in doubt (create-only behaviour)"
        ),
        Some(list) => {
            for s in list {
                match s {
                    Settled::Adopted { name, task_id } => {
                        tracing::info!(task = %name, task_id = %task_id, "in doubt → found on the server with the content sent; recorded")
                    }
                    Settled::Cleared { name } => {
                        tracing::info!(task = %name, "in doubt → no task of that name on the server; it will be created")
                    }
                    Settled::Unresolved { name, why } => {
                        tracing::error!(task = %name, "still in doubt: {why}")
                    }
                }
            }
        }
    }
}
