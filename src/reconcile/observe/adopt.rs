//! Adoption (`taskform import`, `--adopt`): for manifests the state does not know,
//! look up remote tasks of the same name and record them instead of creating
//! duplicates.
//!
//! One remote task with the manifest's content (compared on the fields taskform sends)
//! is recorded as it is: the plan shows it unchanged. One with other content is
//! recorded with the server's content, so the plan shows an update or replace with the
//! field diff. Several of the same name cannot be told apart: they are reported with
//! their IDs and nothing is recorded. [`record`] is pure; [`adopt`] does the searching:
//! a search per name, or for more than 20 names one listing of the workspace.
//!
//! Content is compared as [`sent_fields`] says: what the answer omits (the service may
//! leave out `task_config`) is unknown, not a difference. A task whose answer does not
//! show its identity (name, data_source_type, dir_id, the schedule: [`identity_echoed`])
//! is recorded with what the answer shows, so the plan sends the manifest's content.

use super::{echoed_fields, identity_echoed, sent_fields};
use crate::hash;
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::Error;
use crate::remote::api::remote_task_id;
use crate::remote::client::{Listing, TaskApi, map_concurrent};
use crate::state::{State, TaskRecord};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Searches in flight at once.
const CONCURRENCY: usize = 8;

/// What adoption did for one manifest that had a remote task of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// Recorded; the server has the manifest's content.
    Same { name: String, task_id: String },
    /// Recorded with the server's content, which differs from the manifest's.
    Differs { name: String, task_id: String },
    /// Several remote tasks have this name; none was recorded.
    Ambiguous { name: String, ids: Vec<String> },
}

/// Records the remote task found for `m` (tasks whose name is exactly the manifest's).
pub fn record(state: &mut State, m: &Manifest, found: &[Value], key: &Key) -> Option<Adopted> {
    let name = m.name.clone();
    let one = match found {
        [] => return None,
        [one] => one,
        several => {
            return Some(Adopted::Ambiguous {
                name,
                ids: several.iter().map(remote_task_id).collect(),
            });
        }
    };
    let task_id = remote_task_id(one);
    let sent = m.shown_body();
    let known = match identity_echoed(one, &sent) {
        Ok(()) => sent_fields(one, &sent, key),
        Err(missing) => {
            tracing::warn!(task = %name, task_id = %task_id, missing = %missing.join(", "), "the service's answer does not show what identifies the task; recorded with what it shows, so the plan sends the manifest's content");
            echoed_fields(one, &sent, key)
        }
    };
    let (theirs, _) = hash::canonical_and_hash(&known);
    let h = m.hash_of(&known);
    let same = h == m.hash;
    let body = if same {
        m.shown_canonical().to_string()
    } else {
        theirs
    };
    state.record_created(
        &name,
        TaskRecord {
            task_id: task_id.clone(),
            hash: h,
            file: Some(m.file.clone()),
            applied_at: None,
            body: serde_json::value::RawValue::from_string(body).ok(),
            superseded: Vec::new(),
        },
    );
    Some(if same {
        Adopted::Same { name, task_id }
    } else {
        Adopted::Differs { name, task_id }
    })
}

/// Looks up every manifest the state neither records nor has in doubt, and records
/// what is found. `Ok(None)` when the endpoint offers no search.
pub async fn adopt(
    state: &mut State,
    manifests: &[Manifest],
    api: &Arc<dyn TaskApi>,
    key: &Key,
) -> Result<Option<Vec<Adopted>>, Error> {
    let wanted: Vec<usize> = manifests
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            !state.tasks.contains_key(&m.name) && !state.in_doubt.contains_key(&m.name)
        })
        .map(|(i, _)| i)
        .collect();
    let found = match find(&wanted, manifests, api).await? {
        Some(found) => found,
        None => return Ok(None),
    };
    let mut out = Vec::new();
    for (i, tasks) in found {
        out.extend(record(state, &manifests[i], &tasks, key));
    }
    Ok(Some(out))
}

/// Above this many names, one listing of the workspace (pages of 100) is cheaper than
/// a search per name.
const LIST_ABOVE: usize = 20;

/// The remote tasks named exactly as each wanted manifest. `Ok(None)`: no search.
async fn find(
    wanted: &[usize],
    manifests: &[Manifest],
    api: &Arc<dyn TaskApi>,
) -> Result<Option<Vec<(usize, Vec<Value>)>>, Error> {
    let names = wanted.iter().map(|&i| manifests[i].name.clone()).collect();
    let Some(mut by_name) = named(names, api).await? else {
        return Ok(None);
    };
    Ok(Some(
        wanted
            .iter()
            .map(|&i| (i, by_name.remove(&manifests[i].name).unwrap_or_default()))
            .collect(),
    ))
}

/// Every remote task whose name is exactly one of `names`, by name (names without
/// one are absent): a search per name, or for more than 20 names one listing of the
/// workspace. `Ok(None)` when the endpoint offers no search.
pub async fn named(
    names: Vec<String>,
    api: &Arc<dyn TaskApi>,
) -> Result<Option<HashMap<String, Vec<Value>>>, Error> {
    if names.len() > LIST_ABOVE {
        match api.list_tasks().await? {
            None => return Ok(None),
            Some(Listing {
                tasks,
                complete: true,
            }) => {
                let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
                let mut by_name: HashMap<String, Vec<Value>> = HashMap::new();
                for t in tasks {
                    if let Some(n) = t
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| wanted.contains(n))
                    {
                        by_name.entry(n.to_string()).or_default().push(t);
                    }
                }
                return Ok(Some(by_name));
            }
            Some(Listing {
                complete: false, ..
            }) => {
                tracing::info!(
                    "the workspace has more tasks than a search lists; searching by name"
                );
            }
        }
    }
    let found = map_concurrent(names, CONCURRENCY, |name| {
        let api = api.clone();
        async move {
            let r = api.search_by_name(&name).await;
            (name, r)
        }
    })
    .await?;
    let mut by_name = HashMap::new();
    for (name, r) in found {
        match r? {
            Some(tasks) if !tasks.is_empty() => {
                by_name.insert(name, tasks);
            }
            Some(_) => {}
            None => return Ok(None),
        }
    }
    Ok(Some(by_name))
}

/// Several remote tasks share a manifest's name: taskform cannot tell which to record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "several remote tasks share a manifest's name, so taskform cannot tell which one to record:\n{}\ndelete the duplicates on the server (or rename the manifest), then run again",
    .names.iter().map(|(name, ids)| format!("  {name}: tasks {}", ids.join(", "))).collect::<Vec<_>>().join("\n")
)]
pub struct Ambiguous {
    /// Each name with the IDs of the remote tasks that bear it.
    pub names: Vec<(String, Vec<String>)>,
}

/// The error for names that several remote tasks share, if any.
pub fn ambiguous(adopted: &[Adopted]) -> Option<Ambiguous> {
    let names: Vec<(String, Vec<String>)> = adopted
        .iter()
        .filter_map(|a| match a {
            Adopted::Ambiguous { name, ids } => Some((name.clone(), ids.clone())),
            _ => None,
        })
        .collect();
    (!names.is_empty()).then_some(Ambiguous { names })
}

/// Logs what adoption did.
pub fn report(adopted: &Option<Vec<Adopted>>) {
    match adopted {
        None => tracing::warn!(
            "the endpoint offers no search: nothing can be adopted (create-only behaviour)"
        ),
        Some(list) => {
            for a in list {
                match a {
                    Adopted::Same { name, task_id } => {
                        tracing::info!(task = %name, task_id = %task_id, "adopted: the remote task has the manifest's content")
                    }
                    Adopted::Differs { name, task_id } => {
                        tracing::info!(task = %name, task_id = %task_id, "adopted: the remote task's content differs; the plan shows the change")
                    }
                    Adopted::Ambiguous { .. } => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Manifest {
        Manifest::from_body(
            "a".into(),
            &json!({"name": "a", "task_config": {"x": 1}}),
            "a.yaml".into(),
            "d/a.yaml".into(),
            0,
        )
    }

    #[test]
    fn same_content_is_recorded_unchanged() {
        let mut s = State::new();
        let m = manifest();
        let found = [json!({"id": "7", "name": "a", "task_config": {"x": 1, "echo": 1}})];
        assert_eq!(
            record(&mut s, &m, &found, &Key::default()),
            Some(Adopted::Same {
                name: "a".into(),
                task_id: "7".into()
            })
        );
        assert_eq!(s.tasks["a"].hash, m.hash);
    }

    #[test]
    fn other_content_is_recorded_as_the_servers() {
        let mut s = State::new();
        let m = manifest();
        let found = [json!({"id": "7", "name": "a", "task_config": {"x": 2}})];
        assert!(matches!(
            record(&mut s, &m, &found, &Key::default()),
            Some(Adopted::Differs { .. })
        ));
        assert_ne!(s.tasks["a"].hash, m.hash);
    }

    #[test]
    fn an_answer_without_task_config_is_the_same_content_unless_the_identity_is_missing() {
        let m = Manifest::from_body(
            "a".into(),
            &json!({"name": "a", "dir_id": "0", "data_source_type": "DLI",
                "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10},
                "task_config": {"x": 1}}),
            "a.yaml".into(),
            "d/a.yaml".into(),
            0,
        );
        let mut remote = m.shown_body();
        remote["id"] = json!("7");
        remote.as_object_mut().unwrap().shift_remove("task_config");
        let mut s = State::new();
        assert!(matches!(
            record(&mut s, &m, std::slice::from_ref(&remote), &Key::default()),
            Some(Adopted::Same { .. })
        ));
        assert_eq!(s.tasks["a"].hash, m.hash);

        remote.as_object_mut().unwrap().shift_remove("dir_id");
        let mut s = State::new();
        assert!(matches!(
            record(&mut s, &m, &[remote], &Key::default()),
            Some(Adopted::Differs { .. })
        ));
        // Recorded with what the answer showed: the plan's diff adds the rest.
        let body: Value = serde_json::from_str(s.tasks["a"].body.as_ref().unwrap().get()).unwrap();
        assert!(body.get("dir_id").is_none() && body.get("task_config").is_none());
        assert_eq!(body["name"], "a");
    }

    #[test]
    fn several_are_reported_not_recorded() {
        let mut s = State::new();
        let found = [
            json!({"id": "7", "name": "a"}),
            json!({"id": "8", "name": "a"}),
        ];
        let a = record(&mut s, &manifest(), &found, &Key::default()).unwrap();
        assert!(s.tasks.is_empty());
        assert!(
            ambiguous(&[a])
                .unwrap()
                .to_string()
                .contains("a: tasks 7, 8")
        );
        assert_eq!(record(&mut s, &manifest(), &[], &Key::default()), None);
    }
}
