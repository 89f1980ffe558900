//! Refresh: reads every task the state records (current and superseded) with show,
//! and brings the state in line with the server before planning.
//!
//! - A task the service says does not exist (`DLG.2253`) was deleted outside taskform:
//!   its record is dropped as a delete would drop it, so the plan creates it again.
//! - A task whose content differs, compared only on the fields taskform sent (the
//!   service echoes more, and reads `enabled` back as a state), was changed outside
//!   taskform: the record takes the server's content, so the plan shows an update or
//!   replace with the field diff from the server's content to the manifest's.
//!
//! [`observe`] does the reading; [`reconcile`] is pure, so tests call it directly.

use super::sent_fields;
use crate::hash;
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::Error;
use crate::remote::client::{Shown, TaskApi, map_concurrent};
use crate::state::State;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads in flight at once.
const CONCURRENCY: usize = 8;

/// What the server said about one recorded task.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub name: String,
    pub task_id: String,
    /// `None`: the service says it does not exist.
    pub remote: Option<Value>,
}

/// A difference between the state and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Deleted on the server outside taskform.
    Gone {
        name: String,
        task_id: String,
        superseded: bool,
    },
    /// Changed on the server outside taskform; the record now holds the server's content.
    Changed { name: String, task_id: String },
}

/// Reads every recorded task. `Ok(None)` when the endpoint offers no show.
pub async fn observe(
    state: &State,
    api: &Arc<dyn TaskApi>,
) -> Result<Option<Vec<Observation>>, Error> {
    let ids: Vec<(String, String)> = state
        .tasks
        .iter()
        .flat_map(|(name, r)| {
            std::iter::once((name.clone(), r.task_id.clone())).chain(
                r.superseded
                    .iter()
                    .map(move |s| (name.clone(), s.task_id.clone())),
            )
        })
        .collect();
    let shown = map_concurrent(ids, CONCURRENCY, |(name, task_id)| {
        let api = api.clone();
        async move {
            let r = api.show(&task_id).await;
            (name, task_id, r)
        }
    })
    .await?;
    let mut out = Vec::with_capacity(shown.len());
    for (name, task_id, r) in shown {
        let remote = match r? {
            Shown::Unsupported => return Ok(None),
            Shown::Gone => None,
            Shown::Found(v) => Some(v),
        };
        out.push(Observation {
            name,
            task_id,
            remote,
        });
    }
    Ok(Some(out))
}

/// Applies observations to the state; returns the drift found, in state order.
pub fn reconcile(
    state: &mut State,
    manifests: &[Manifest],
    seen: &[Observation],
    key: &Key,
) -> Vec<Drift> {
    let mut drift = Vec::new();
    for o in seen {
        let Some(record) = state.tasks.get(&o.name) else {
            continue;
        };
        let current = record.task_id == o.task_id;
        let Some(remote) = &o.remote else {
            drift.push(Drift::Gone {
                name: o.name.clone(),
                task_id: o.task_id.clone(),
                superseded: !current,
            });
            state.record_deleted(&o.name, &o.task_id);
            continue;
        };
        if !current {
            continue;
        }
        // Compare on what was sent: the recorded body, else the manifest's.
        let template = record
            .body
            .as_ref()
            .and_then(|b| serde_json::from_str::<Value>(b.get()).ok())
            .or_else(|| {
                manifests
                    .iter()
                    .find(|m| m.name == o.name)
                    .map(|m| m.shown_body())
            });
        let Some(template) = template else { continue };
        let (theirs, h) = hash::canonical_and_hash(&sent_fields(remote, &template, key));
        if h != record.hash {
            state.record_drift(
                &o.name,
                h,
                serde_json::value::RawValue::from_string(theirs).ok(),
            );
            drift.push(Drift::Changed {
                name: o.name.clone(),
                task_id: o.task_id.clone(),
            });
        }
    }
    drift
}

/// Reads the server and reconciles the state. `Ok(None)`: the endpoint offers no show
/// (create-only gateway), nothing changed.
pub async fn refresh(
    state: &mut State,
    manifests: &[Manifest],
    api: &Arc<dyn TaskApi>,
    key: &Key,
) -> Result<Option<Vec<Drift>>, Error> {
    let Some(seen) = observe(state, api).await? else {
        return Ok(None);
    };
    Ok(Some(reconcile(state, manifests, &seen, key)))
}

/// Notes for the plan, by task name.
pub fn notes(drift: &[Drift]) -> BTreeMap<String, String> {
    let mut notes = BTreeMap::new();
    for d in drift {
        match d {
            Drift::Gone {
                name,
                task_id,
                superseded: false,
            } => {
                notes.insert(
                    name.clone(),
                    format!("drift: task {task_id} was deleted on the server outside taskform"),
                );
            }
            Drift::Changed { name, task_id } => {
                notes.insert(
                    name.clone(),
                    format!("drift: task {task_id} was changed on the server outside taskform; the diff goes from the server's content to the manifest's"),
                );
            }
            Drift::Gone { .. } => {}
        }
    }
    notes
}

/// Logs what a refresh found.
pub fn report(found: &Option<Vec<Drift>>) {
    match found {
        None => tracing::warn!(
            "the endpoint offers no show: the state is not refreshed (create-only behaviour)"
        ),
        Some(list) if list.is_empty() => tracing::info!("refresh: no drift"),
        Some(list) => {
            for d in list {
                match d {
                    Drift::Gone {
                        name,
                        task_id,
                        superseded,
                    } => {
                        tracing::warn!(task = %name, task_id = %task_id, superseded = *superseded, "drift: deleted on the server outside taskform; record dropped")
                    }
                    Drift::Changed { name, task_id } => {
                        tracing::warn!(task = %name, task_id = %task_id, "drift: changed on the server outside taskform")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Superseded, TaskRecord};
    use serde_json::json;

    fn state() -> State {
        let body = json!({"name": "a", "task_config": {"x": 1}});
        let mut s = State::new();
        s.tasks.insert(
            "a".into(),
            TaskRecord {
                task_id: "2".into(),
                hash: hash::content_hash(&body),
                file: None,
                applied_at: None,
                body: serde_json::value::RawValue::from_string(body.to_string()).ok(),
                superseded: vec![Superseded {
                    task_id: "1".into(),
                    hash: "h".into(),
                    replaced_at: None,
                }],
            },
        );
        s
    }

    fn seen(id: &str, remote: Option<Value>) -> Observation {
        Observation {
            name: "a".into(),
            task_id: id.into(),
            remote,
        }
    }

    #[test]
    fn echoed_fields_are_not_drift() {
        let mut s = state();
        let before = s.tasks["a"].hash.clone();
        let remote = json!({"id": "2", "name": "a", "task_config": {"x": 1, "extra": true}, "update_time": "t"});
        assert_eq!(
            reconcile(&mut s, &[], &[seen("2", Some(remote))], &Key::default()),
            vec![]
        );
        assert_eq!(s.tasks["a"].hash, before);
    }

    #[test]
    fn changed_content_is_recorded_as_the_servers() {
        let mut s = state();
        let remote = json!({"id": "2", "name": "a", "task_config": {"x": 2}});
        let d = reconcile(&mut s, &[], &[seen("2", Some(remote))], &Key::default());
        assert_eq!(
            d,
            vec![Drift::Changed {
                name: "a".into(),
                task_id: "2".into()
            }]
        );
        assert_eq!(
            s.tasks["a"].hash,
            hash::content_hash(&json!({"name": "a", "task_config": {"x": 2}}))
        );
        assert!(
            s.tasks["a"]
                .body
                .as_ref()
                .unwrap()
                .get()
                .contains("\"x\":2")
        );
    }

    #[test]
    fn deleted_tasks_are_dropped() {
        let mut s = state();
        let d = reconcile(&mut s, &[], &[seen("1", None)], &Key::default());
        assert!(matches!(
            d[0],
            Drift::Gone {
                superseded: true,
                ..
            }
        ));
        assert!(s.tasks["a"].superseded.is_empty());
        let d = reconcile(&mut s, &[], &[seen("2", None)], &Key::default());
        assert!(matches!(
            d[0],
            Drift::Gone {
                superseded: false,
                ..
            }
        ));
        assert!(s.tasks.is_empty());
        assert!(notes(&d)["a"].contains("deleted on the server"));
    }
}
