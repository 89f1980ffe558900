//! Settling in-doubt creates: before planning, search the service for tasks of the
//! same name. Exactly one with the content that was sent means the create did happen:
//! its ID is recorded (adopted). None of that name means it did not: the task is
//! created again. Several, or tasks of that name with other content, stay in doubt
//! with their IDs named, for a person to decide.
//!
//! "The content that was sent" is compared as [`sent_fields`] says: what the answer
//! omits (the service may leave out `task_config`) is unknown, not a difference; but
//! the identity (name, data_source_type, dir_id and the schedule, [`identity_echoed`])
//! must be in the answer and equal, or the task is not taken for the one sent.

use super::{identity_echoed, sent_fields};
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
        let (matching, other): (Vec<&Value>, Vec<&Value>) = found.iter().partition(|t| {
            identity_echoed(t, &sent).is_ok()
                && m.hash_of(&sent_fields(t, &sent, key)) == doubt.hash
        });
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
                // Tasks whose answer does not show what identifies them, named.
                let unseen: Vec<String> = found
                    .iter()
                    .filter_map(|t| {
                        identity_echoed(t, &sent).err().map(|missing| {
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
                    why: format!("the service has {} task(s) of that name ({}), {} with the content that was sent{unseen}; delete the extra ones or run with --recreate-in-doubt", found.len(), ids.join(", "), matching.len()),
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
            },
        );
        let settled = settle(&mut state, &[m], &Found(vec![found]), &Key::default())
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
}
