//! Refresh: reads every task the state records (current and superseded) and brings the
//! state in line with the server before planning.
//!
//! - A task the service says does not exist (`DLG.2253`) was deleted outside taskform:
//!   its record is dropped as a delete would drop it, so the plan creates it again.
//! - A task whose content differs, compared only on the fields taskform sent (the
//!   service echoes more, and reads `enabled` back as a state), was changed outside
//!   taskform: the record takes the server's content, so the plan shows an update or
//!   replace with the field diff from the server's content to the manifest's.
//!
//! Reading: a show per task, 8 at a time; for more than [`LIST_ABOVE`] tasks, one
//! listing of the workspace (search, pages of 100) instead, since search answers hold
//! the same task model as show (the SDK's `MetadataCollectionTask`). A task the listing
//! does not hold is shown (it may be gone, or a page may have shifted); so is one whose
//! listed form lacks a field taskform compares, unless showing one such task showed the
//! show lacks it too. A listing that is unavailable or incomplete means a show for
//! every task. Either way the observations, and so the drift, are the same.
//!
//! Duplicates: the same complete listing (one is made for this when the state is small
//! enough to be shown task by task) names every remote task of a name the state records
//! a task for whose ID no record holds ([`duplicates`]). They are recorded in the
//! state (the plan lists them until they are gone) and never invisible: a create whose
//! answer was lost and whose intent was settled wrongly shows up here.
//!
//! [`observe`] does the reading; [`reconcile`] is pure, so tests call it directly.

use super::sent_fields;
use crate::hash;
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::Error;
use crate::remote::api::remote_task_id;
use crate::remote::client::{Listing, Shown, TaskApi, map_concurrent};
use crate::state::State;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Reads in flight at once.
const CONCURRENCY: usize = 8;

/// Above this many recorded tasks, one listing of the workspace (about one request per
/// 100 tasks of the workspace) replaces a show per task.
pub const LIST_ABOVE: usize = 20;

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
    /// A remote task of a managed name that no record holds.
    Duplicate {
        name: String,
        task_id: String,
        same_content: bool,
    },
}

/// What a refresh compares a recorded task on: the body recorded, else the manifest's.
/// `None` for a superseded task (only whether it still exists matters).
fn template(state: &State, manifests: &[Manifest], name: &str, task_id: &str) -> Option<Value> {
    let record = state.tasks.get(name).filter(|r| r.task_id == task_id)?;
    record
        .body
        .as_ref()
        .and_then(|b| serde_json::from_str::<Value>(b.get()).ok())
        .or_else(|| {
            manifests
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.shown_body())
        })
}

/// The fields of `sent` (as JSON pointers, objects followed key by key) that `remote`
/// does not carry (absent, or null where a value was sent).
fn missing(remote: &Value, sent: &Value) -> Vec<String> {
    fn walk(remote: Option<&Value>, sent: &Value, at: &str, out: &mut Vec<String>) {
        let Value::Object(fields) = sent else { return };
        for (k, sv) in fields {
            let path = format!("{at}/{k}");
            match remote.and_then(|r| r.get(k)) {
                Some(Value::Null) | None if !sv.is_null() => out.push(path),
                Some(rv) => walk(Some(rv), sv, &path, out),
                None => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(Some(remote), sent, "", &mut out);
    out
}

/// Every task of the workspace by ID, when a complete listing is to be had; `None`
/// when not (no search endpoint, a listing cut short, a search answer that cannot be
/// used), so that every task is shown.
async fn listed(api: &Arc<dyn TaskApi>) -> Result<Option<HashMap<String, Value>>, Error> {
    let tasks = match api.list_tasks().await {
        Ok(Some(Listing {
            tasks,
            complete: true,
        })) => tasks,
        Ok(Some(Listing { tasks, .. })) => {
            tracing::info!(
                listed = tasks.len(),
                "the listing of the workspace stopped before its end; showing each task (duplicates are not looked for)"
            );
            return Ok(None);
        }
        Ok(None) => return Ok(None),
        Err(e @ (Error::Garbage { .. } | Error::GaveUp { .. })) => {
            tracing::warn!(error = %e, "cannot list the workspace; showing each task (duplicates are not looked for)");
            return Ok(None);
        }
        Err(Error::Unexpected { what, failure }) if !matches!(failure.status, Some(401 | 403)) => {
            tracing::warn!(error = %failure, "cannot list the workspace ({what}); showing each task (duplicates are not looked for)");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut by_id = HashMap::with_capacity(tasks.len());
    for t in tasks {
        let id = remote_task_id(&t);
        if id != "?" {
            by_id.entry(id).or_insert(t);
        }
    }
    Ok(Some(by_id))
}

/// What a refresh read: an observation per recorded task, and, when a complete listing
/// of the workspace was made, the listed tasks no record holds, by ID.
pub struct Read {
    pub seen: Vec<Observation>,
    pub unrecorded: Option<HashMap<String, Value>>,
}

/// Reads every recorded task: from a listing of the workspace for more than
/// [`LIST_ABOVE`], else (and for what the listing cannot answer) with show. In state
/// order. `Ok(None)` when the endpoint offers no show and the listing did not answer
/// for every task.
pub async fn observe(
    state: &State,
    manifests: &[Manifest],
    api: &Arc<dyn TaskApi>,
) -> Result<Option<Read>, Error> {
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
    let list_to_read = ids.len() > LIST_ABOVE;
    let mut listing = match list_to_read {
        true => listed(api).await?,
        false => None,
    };
    let mut found: Vec<Option<Option<Value>>> = vec![None; ids.len()];
    let mut to_show: Vec<usize> = Vec::new();
    // Listed tasks lacking fields taskform compares, by the fields they lack.
    let mut lacking: BTreeMap<Vec<String>, Vec<(usize, Value)>> = BTreeMap::new();
    for (i, (name, task_id)) in ids.iter().enumerate() {
        let Some(entry) = listing.as_mut().and_then(|l| l.remove(task_id)) else {
            to_show.push(i);
            continue;
        };
        let gaps = template(state, manifests, name, task_id)
            .map(|t| missing(&entry, &t))
            .unwrap_or_default();
        match gaps.is_empty() {
            true => found[i] = Some(Some(entry)),
            false => lacking.entry(gaps).or_default().push((i, entry)),
        }
    }
    // For each set of fields the listing lacks, show one task: when the show holds
    // none of them either, the listing is as good as a show for the others.
    for (gaps, members) in lacking {
        let mut members = members.into_iter();
        let mut decided = None;
        for (i, _listed) in members.by_ref() {
            let (name, task_id) = &ids[i];
            match api.show(task_id).await? {
                Shown::Unsupported => return Ok(None),
                Shown::Gone => found[i] = Some(None),
                Shown::Found(v) => {
                    let adds = template(state, manifests, name, task_id)
                        .map(|t| missing(&v, &t))
                        .is_some_and(|still| gaps.iter().any(|g| !still.contains(g)));
                    tracing::debug!(fields = ?gaps, show_has_them = adds, "the listing lacks fields taskform compares; one task shown");
                    found[i] = Some(Some(v));
                    decided = Some(adds);
                    break;
                }
            }
        }
        for (i, entry) in members {
            match decided {
                Some(true) => to_show.push(i),
                _ => found[i] = Some(Some(entry)),
            }
        }
    }
    to_show.sort_unstable();
    let shows = to_show.len();
    let work: Vec<(usize, String)> = to_show.into_iter().map(|i| (i, ids[i].1.clone())).collect();
    let shown = map_concurrent(work, CONCURRENCY, |(i, task_id)| {
        let api = api.clone();
        async move {
            let r = api.show(&task_id).await;
            (i, r)
        }
    })
    .await?;
    for (i, r) in shown {
        found[i] = Some(match r? {
            Shown::Unsupported => return Ok(None),
            Shown::Gone => None,
            Shown::Found(v) => Some(v),
        });
    }
    tracing::debug!(
        tasks = ids.len(),
        shown = shows,
        "refresh: read every recorded task"
    );
    // A small state was shown task by task: one listing (a request per 100 tasks of
    // the workspace) looks for duplicates all the same.
    let mut unrecorded = match list_to_read {
        true => listing,
        false => listed(api).await?,
    };
    if let Some(rest) = &mut unrecorded {
        let recorded = state.recorded_ids();
        rest.retain(|id, _| !recorded.contains(id.as_str()));
    }
    Ok(Some(Read {
        seen: ids
            .into_iter()
            .zip(found)
            .map(|((name, task_id), remote)| Observation {
                name,
                task_id,
                remote: remote.flatten(),
            })
            .collect(),
        unrecorded,
    }))
}

/// The duplicates among the listed tasks no record holds: those bearing a name the
/// state records a task for (not one whose create is still in doubt: settling deals
/// with it; a name without a record is for `import`/`--adopt`), each marked when its
/// content is exactly what taskform sends for the name's manifest: every field sent is
/// in the answer and equal, nothing taken as unknown ([`same_content`]). By name, in
/// task ID order; `found_at` kept from an earlier finding.
pub fn duplicates(
    state: &State,
    manifests: &[Manifest],
    unrecorded: &HashMap<String, Value>,
    key: &Key,
    now: &str,
) -> std::collections::BTreeMap<String, Vec<crate::state::Duplicate>> {
    let by_name = by_name(manifests);
    let mut out: std::collections::BTreeMap<String, Vec<crate::state::Duplicate>> =
        Default::default();
    for (id, t) in unrecorded {
        let Some(name) = duplicate_of(state, t) else {
            continue;
        };
        let same_content = by_name
            .get(name)
            .is_some_and(|m| same_content(t, m, key) == Some(true));
        let found_at = state
            .duplicates
            .get(name)
            .and_then(|l| l.iter().find(|d| d.task_id == *id))
            .and_then(|d| d.found_at.clone())
            .unwrap_or_else(|| now.to_string());
        out.entry(name.to_string())
            .or_default()
            .push(crate::state::Duplicate {
                task_id: id.clone(),
                same_content,
                found_at: Some(found_at),
            });
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    out
}

/// The name a listed task no record holds is a duplicate of: one the state records a
/// task for, whose create is not in doubt (settling deals with that).
fn duplicate_of<'t>(state: &State, listed: &'t Value) -> Option<&'t str> {
    listed
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| state.tasks.contains_key(*n) && !state.in_doubt.contains_key(*n))
}

fn by_name(manifests: &[Manifest]) -> HashMap<&str, &Manifest> {
    manifests.iter().map(|m| (m.name.as_str(), m)).collect()
}

/// Whether `remote` holds exactly what taskform sends for `m`: `None` when the answer
/// leaves out a field that was sent (a listing may omit `task_config`), so that it
/// cannot be told; a deletion is never decided on what an answer leaves out.
pub fn same_content(remote: &Value, m: &Manifest, key: &Key) -> Option<bool> {
    let sent = m.shown_body();
    if super::identity_echoed(remote, &sent).is_err() {
        return Some(false);
    }
    if !missing(remote, &sent).is_empty() {
        return None;
    }
    Some(m.hash_of(&super::echoed_fields(remote, &sent, key)) == m.hash)
}

/// Shows the listed duplicates whose listed form cannot tell whether they hold
/// taskform's content (it omits fields that were sent), so that [`duplicates`] judges
/// them on the full answer; one gone meanwhile is left out.
async fn show_undecided(
    state: &State,
    manifests: &[Manifest],
    unrecorded: &mut HashMap<String, Value>,
    api: &Arc<dyn TaskApi>,
    key: &Key,
) -> Result<(), Error> {
    let by_name = by_name(manifests);
    let undecided: Vec<String> = unrecorded
        .iter()
        .filter(|(_, t)| {
            duplicate_of(state, t)
                .and_then(|n| by_name.get(n))
                .is_some_and(|m| same_content(t, m, key).is_none())
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in undecided {
        match api.show(&id).await? {
            Shown::Found(v) => {
                unrecorded.insert(id, v);
            }
            Shown::Gone => {
                unrecorded.remove(&id);
            }
            Shown::Unsupported => {}
        }
    }
    Ok(())
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
        let Some(template) = template(state, manifests, &o.name, &o.task_id) else {
            continue;
        };
        let known = sent_fields(remote, &template, key);
        let (theirs, plain) = hash::canonical_and_hash(&known);
        // Counted as the manifest counts it (its `ignore_changes` left out).
        let h = match manifests.iter().find(|m| m.name == o.name) {
            Some(m) => m.hash_of(&known),
            None => plain,
        };
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
    let Some(read) = observe(state, manifests, api).await? else {
        return Ok(None);
    };
    let mut drift = reconcile(state, manifests, &read.seen, key);
    if let Some(mut unrecorded) = read.unrecorded {
        show_undecided(state, manifests, &mut unrecorded, api, key).await?;
        let unrecorded = &unrecorded;
        let found = duplicates(
            state,
            manifests,
            unrecorded,
            key,
            &crate::clock::now_rfc3339(),
        );
        for (name, list) in &found {
            for d in list {
                drift.push(Drift::Duplicate {
                    name: name.clone(),
                    task_id: d.task_id.clone(),
                    same_content: d.same_content,
                });
            }
        }
        state.record_duplicates(found);
    }
    Ok(Some(drift))
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
            Drift::Gone { .. } | Drift::Duplicate { .. } => {}
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
                    Drift::Duplicate {
                        name,
                        task_id,
                        same_content,
                    } => {
                        tracing::warn!(task = %name, task_id = %task_id, same_content = *same_content, "duplicate: another remote task of this name that no state records")
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
    fn missing_names_the_sent_fields_an_answer_lacks() {
        let sent = json!({"name": "a", "task_config": {"x": 1}, "schedule_config": {"enabled": 1, "cron_expression": "c"}, "description": null});
        let full = json!({"id": "2", "name": "a", "task_config": {"x": 1, "y": 2}, "schedule_config": {"enabled": 3, "cron_expression": "c"}});
        assert!(missing(&full, &sent).is_empty());
        let lacking =
            json!({"name": "a", "schedule_config": {"enabled": 3, "cron_expression": null}});
        assert_eq!(
            missing(&lacking, &sent),
            vec!["/task_config", "/schedule_config/cron_expression"]
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
