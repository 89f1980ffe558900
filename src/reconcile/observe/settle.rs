//! Settling in-doubt creates: before planning, search the service for tasks of the
//! same name, leaving out every task the state records (the name's task, its
//! superseded ones, any other recorded ID: a replace's search finds the task it
//! replaces). Of the others, exactly one with the content that was sent means the
//! create did happen: its ID is recorded (adopted). None of that name means it did
//! not: the doubt is cleared and the plan does what the manifests now say (create,
//! replace again, or nothing). Several, or tasks of that name with other content, stay
//! in doubt with their IDs named, for a person to decide, unless `--recreate-in-doubt`:
//! then one with the content sent is adopted (the other copies recorded as superseded,
//! so that `--prune` deletes them), and only when none has it is the doubt cleared, so
//! that the task is created again.
//!
//! "The content that was sent" is the body the intent journaled (as shown: sensitive
//! values fingerprinted) or, for an intent from before taskform journaled it, the
//! manifest that still has the intent's hash. It is compared as [`sent_fields`] says:
//! what the answer omits (the service may leave out `task_config`) is unknown, not a
//! difference; but the identity (name, data_source_type, dir_id and the schedule,
//! [`identity_echoed`]) must be in the answer and equal, or the task is not taken for
//! the one sent. An old intent whose manifest changed cannot be compared: it is
//! cleared only when the service has no unrecorded task of that name.

use super::{identity_echoed, sent_fields};
use crate::hash;
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::remote::Error;
use crate::remote::api::remote_task_id;
use crate::remote::client::TaskApi;
use crate::state::{InDoubt, State, TaskRecord};
use serde_json::Value;
use serde_json::value::RawValue;

/// What became of one in-doubt task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The create had happened: this remote task is now recorded.
    Adopted { name: String, task_id: String },
    /// No remote task the state does not record has that name: the plan does what the
    /// manifest says (created again when it is still declared).
    Cleared { name: String },
    /// `--recreate-in-doubt`: no unrecorded task of the name has the content sent (or
    /// it cannot be compared), so it is created again; `left` are the unrecorded tasks
    /// of the name, with other content, that stay on the service unrecorded.
    Recreated { name: String, left: Vec<String> },
    /// Still in doubt, with why.
    Unresolved { name: String, why: String },
}

/// What was sent, as settling compares it.
struct Sent {
    /// As shown (sensitive values fingerprinted).
    body: Value,
    /// The record of it, when adopted.
    raw: Option<Box<RawValue>>,
    file: Option<String>,
    /// The manifest that still has the intent's hash, which counts hashes its way.
    manifest: Option<Manifest>,
}

impl Sent {
    /// What the intent sent: its journaled body, else the manifest of its hash. `None`
    /// when neither is known (an old intent whose manifest changed).
    fn of(name: &str, doubt: &InDoubt, manifests: &[Manifest]) -> Option<Sent> {
        if let Some(m) = manifests
            .iter()
            .find(|m| m.name == name && m.hash == doubt.hash)
        {
            return Some(Sent {
                body: m.shown_body(),
                raw: RawValue::from_string(m.shown_canonical().to_string()).ok(),
                file: Some(m.file.clone()),
                manifest: Some(m.clone()),
            });
        }
        let raw = doubt.body.clone()?;
        let body = serde_json::from_str(raw.get()).ok()?;
        Some(Sent {
            body,
            raw: Some(raw),
            file: doubt.file.clone(),
            manifest: None,
        })
    }

    /// Whether `remote` is the task this body made.
    fn made(&self, remote: &Value, doubt: &InDoubt, key: &Key) -> bool {
        if identity_echoed(remote, &self.body).is_err() {
            return false;
        }
        let found = sent_fields(remote, &self.body, key);
        match &self.manifest {
            Some(m) => m.hash_of(&found) == doubt.hash,
            // Without the manifest's `ignore_changes`, every field sent counts.
            None => hash::content_hash(&found) == hash::content_hash(&self.body),
        }
    }
}

/// Settles every in-doubt task of `state`. Returns `None` when the endpoint offers no
/// search (create-only gateway). `recreate`: `--recreate-in-doubt` (see the module).
pub async fn settle(
    state: &mut State,
    manifests: &[Manifest],
    api: &dyn TaskApi,
    key: &Key,
    recreate: bool,
) -> Result<Option<Vec<Settled>>, Error> {
    let mut out = Vec::new();
    for (name, doubt) in state.in_doubt.clone() {
        let Some(found) = api.search_by_name(&name).await? else {
            return Ok(None);
        };
        let recorded = state.recorded_ids();
        // A duplicate a refresh found before this create was sent cannot be its result.
        let earlier: std::collections::HashSet<&str> = state
            .duplicates
            .get(&name)
            .into_iter()
            .flatten()
            .filter(|d| {
                let at = |t: &Option<String>| t.as_deref().and_then(crate::clock::parse_rfc3339);
                matches!((at(&d.found_at), at(&doubt.sent_at)), (Some(f), Some(s)) if f < s)
            })
            .map(|d| d.task_id.as_str())
            .collect();
        let found: Vec<&Value> = found
            .iter()
            .filter(|t| {
                let id = remote_task_id(t);
                !recorded.contains(id.as_str()) && !earlier.contains(id.as_str())
            })
            .collect();
        let ids =
            |tasks: &[&Value]| -> Vec<String> { tasks.iter().map(|t| remote_task_id(t)).collect() };
        let Some(sent) = Sent::of(&name, &doubt, manifests) else {
            if found.is_empty() {
                state.record_failed(&name, &doubt.hash);
                out.push(Settled::Cleared { name });
            } else if recreate {
                state.record_failed(&name, &doubt.hash);
                out.push(Settled::Recreated {
                    name,
                    left: ids(&found),
                });
            } else {
                out.push(Settled::Unresolved {
                    name,
                    why: format!(
                        "its manifest changed since the create was sent and this intent does not hold the body sent, so the service's task(s) of that name that the state does not record ({}) cannot be compared with it; check them in the console and delete those that are not this create's, or run with --recreate-in-doubt to create the task again",
                        ids(&found).join(", ")
                    ),
                });
            }
            continue;
        };
        let (matching, other): (Vec<&Value>, Vec<&Value>) =
            found.iter().partition(|t| sent.made(t, &doubt, key));
        let adopt = |state: &mut State, one: &Value| {
            let task_id = remote_task_id(one);
            state.record_created(
                &name,
                TaskRecord {
                    task_id: task_id.clone(),
                    hash: doubt.hash.clone(),
                    file: sent.file.clone(),
                    applied_at: doubt.sent_at.clone(),
                    body: sent.raw.clone(),
                    superseded: Vec::new(),
                },
            );
            task_id
        };
        match (matching.as_slice(), other.as_slice(), recreate) {
            ([one], [], _) | ([one, ..], _, true) => {
                let task_id = adopt(state, one);
                let at = doubt.sent_at.clone().unwrap_or_default();
                for extra in &matching[1..] {
                    let id = remote_task_id(extra);
                    state.record_left_behind(&name, &id, &doubt.hash, &at);
                    tracing::warn!(task = %name, task_id = %id, "another task of that name with the content sent (from an earlier lost answer): recorded as superseded, deleted with --prune");
                }
                if !other.is_empty() {
                    tracing::warn!(task = %name, "the service has other task(s) of that name, with other content, that the state does not record: {}", ids(&other).join(", "));
                }
                out.push(Settled::Adopted { name, task_id });
            }
            ([], [], _) => {
                // The create never happened: as if it had been refused.
                state.record_failed(&name, &doubt.hash);
                out.push(Settled::Cleared { name });
            }
            ([], _, true) => {
                state.record_failed(&name, &doubt.hash);
                out.push(Settled::Recreated {
                    name,
                    left: ids(&other),
                });
            }
            _ => {
                // Tasks whose answer does not show what identifies them, named.
                let unseen: Vec<String> = found
                    .iter()
                    .filter_map(|t| {
                        identity_echoed(t, &sent.body).err().map(|missing| {
                            format!(
                                "the answer for task {} does not show {}",
                                remote_task_id(t),
                                missing.join(", ")
                            )
                        })
                    })
                    .collect();
                let unseen = match unseen.is_empty() {
                    true => String::new(),
                    false => format!(" ({})", unseen.join("; ")),
                };
                out.push(Settled::Unresolved {
                    name,
                    why: format!(
                        "the service has {} task(s) of that name that the state does not record ({}), {} with the content that was sent{unseen}; check them in the console and delete those that are not this create's, or run with --recreate-in-doubt to record one with the content sent (the task is created again only when none has it)",
                        found.len(),
                        ids(&found).join(", "),
                        matching.len()
                    ),
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
                        tracing::info!(task = %name, "in doubt → no task of that name on the server besides those the state records: the create did not happen; planned as the manifests now say (created again while declared)")
                    }
                    Settled::Recreated { name, left } if left.is_empty() => {
                        tracing::warn!(task = %name, "in doubt → created again (--recreate-in-doubt)")
                    }
                    Settled::Recreated { name, left } => {
                        tracing::warn!(task = %name, "in doubt → created again (--recreate-in-doubt); the service's other task(s) of that name, which the state does not record, stay: {}", left.join(", "))
                    }
                    Settled::Unresolved { name, why } => {
                        tracing::error!(task = %name, "still in doubt: {why}")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::client::{Listing, Outcome, Shown};
    use crate::state::InDoubt;
    use serde_json::json;
    use std::future::Future;
    use std::pin::Pin;

    type P<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// A service whose search answers `.0` for every name, and that is sent nothing else.
    struct Found(Vec<Value>);

    impl TaskApi for Found {
        fn create<'a>(&'a self, _: &'a [u8]) -> P<'a, Outcome> {
            unimplemented!("settling sends no create")
        }
        fn update<'a>(&'a self, _: &'a str, _: &'a [u8]) -> P<'a, Outcome> {
            unimplemented!("settling sends no update")
        }
        fn delete<'a>(&'a self, _: &'a str) -> P<'a, Outcome> {
            unimplemented!("settling sends no delete")
        }
        fn action<'a>(&'a self, _: &'a str, _: &'a str) -> P<'a, Outcome> {
            unimplemented!("settling sends no action")
        }
        fn search_by_name<'a>(&'a self, _: &'a str) -> P<'a, Result<Option<Vec<Value>>, Error>> {
            Box::pin(async move { Ok(Some(self.0.clone())) })
        }
        fn list_tasks(&self) -> P<'_, Result<Option<Listing>, Error>> {
            unimplemented!("settling searches by name")
        }
        fn show<'a>(&'a self, _: &'a str) -> P<'a, Result<Shown, Error>> {
            unimplemented!("settling shows nothing")
        }
    }

    fn manifest() -> Manifest {
        Manifest::from_body(
            "a".into(),
            &json!({"name": "a", "dir_id": "0", "data_source_type": "DLI",
                "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10},
                "task_config": {"x": 1}}),
            "a.yaml".into(),
            "d/a.yaml".into(),
            0,
        )
    }

    async fn settle_with(found: Value) -> (State, Vec<Settled>) {
        let m = manifest();
        let mut state = State::new();
        state.in_doubt.insert(
            "a".into(),
            InDoubt {
                hash: m.hash.clone(),
                file: None,
                sent_at: None,
                reason: None,
                body: None,
            },
        );
        let settled = settle(
            &mut state,
            &[m],
            &Found(vec![found]),
            &Key::default(),
            false,
        )
        .await
        .unwrap()
        .unwrap();
        (state, settled)
    }

    #[tokio::test]
    async fn an_answer_without_task_config_settles_but_one_without_the_identity_does_not() {
        let mut remote = manifest().shown_body();
        remote["id"] = json!("7");
        remote.as_object_mut().unwrap().shift_remove("task_config");
        let (state, settled) = settle_with(remote.clone()).await;
        assert_eq!(
            settled,
            vec![Settled::Adopted {
                name: "a".into(),
                task_id: "7".into()
            }]
        );
        assert_eq!(state.tasks["a"].task_id, "7");

        remote.as_object_mut().unwrap().shift_remove("dir_id");
        let (state, settled) = settle_with(remote).await;
        match &settled[..] {
            [Settled::Unresolved { why, .. }] => {
                assert!(
                    why.contains("the answer for task 7 does not show dir_id"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(state.in_doubt.contains_key("a"));
    }

    #[tokio::test]
    async fn without_its_manifest_the_body_sent_is_compared_fingerprints_included() {
        let key = Key::default();
        let body = json!({"name": "a", "dir_id": "0", "data_source_type": "DLI",
            "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10},
            "task_config": {"x": 1, "password": "hunter2"}});
        let m = Manifest::from_body("a".into(), &body, "a.yaml".into(), "d/a.yaml".into(), 0)
            .with_sensitive(vec!["task_config.password".into()], &key);
        let intent = || {
            let mut state = State::new();
            state.record_intent(
                "a",
                &m.hash,
                Some(m.file.clone()),
                "t",
                RawValue::from_string(m.shown_canonical().to_string()).ok(),
            );
            state
        };
        assert!(
            !String::from_utf8(intent().encode())
                .unwrap()
                .contains("hunter2")
        );
        let mut remote = body.clone();
        remote["id"] = json!("7");
        // No manifest (edited or deleted since): the service's plaintext is fingerprinted
        // like the body sent, and matches.
        let mut state = intent();
        let settled = settle(&mut state, &[], &Found(vec![remote.clone()]), &key, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            settled,
            vec![Settled::Adopted {
                name: "a".into(),
                task_id: "7".into()
            }]
        );
        assert_eq!(state.tasks["a"].hash, m.hash);
        assert!(
            !String::from_utf8(state.encode())
                .unwrap()
                .contains("hunter2")
        );
        // Another password is other content: still in doubt, the task named.
        remote["task_config"]["password"] = json!("other");
        let mut state = intent();
        let settled = settle(&mut state, &[], &Found(vec![remote]), &key, false)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&settled[..], [Settled::Unresolved { why, .. }] if why.contains("(7), 0 with"))
        );
        // Nothing of the name: cleared.
        let mut state = intent();
        let settled = settle(&mut state, &[], &Found(vec![]), &key, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(settled, vec![Settled::Cleared { name: "a".into() }]);
        assert!(state.in_doubt.is_empty() && state.tasks.is_empty());
    }
}
