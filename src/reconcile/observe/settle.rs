//! Settling in-doubt creates: before planning, search the service for tasks of the
//! same name. Exactly one with the content that was sent means the create did happen:
//! its ID is recorded (adopted). None of that name means it did not: the task is
//! created again. Several, or tasks of that name with other content, stay in doubt
//! with their IDs named, for a person to decide.

use crate::hash;
use crate::load::manifest::Manifest;
use crate::remote::api::remote_task_id;
use crate::remote::client::Client;
use crate::state::{State, Superseded, TaskRecord};
use serde_json::{Map, Value};

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

/// The remote task reduced to the fields taskform sent: the service may echo more
/// (IDs, times, defaults) or echo `task_config` with extra keys. The schedule's
/// `enabled` is read back as a state (3 = scheduling, 5 = paused): it is compared as
/// what was sent (1, 0).
pub fn sent_fields(remote: &Value, sent: &Value) -> Value {
    let mut out = filter(remote, sent);
    if let Some(enabled) = out.pointer_mut("/schedule_config/enabled") {
        match enabled.as_i64() {
            Some(3) => *enabled = Value::from(1),
            Some(5) => *enabled = Value::from(0),
            _ => {}
        }
    }
    out
}

fn filter(remote: &Value, sent: &Value) -> Value {
    match (remote, sent) {
        (Value::Object(r), Value::Object(s)) => {
            let mut out = Map::new();
            for (k, sv) in s {
                if let Some(rv) = r.get(k) {
                    out.insert(k.clone(), filter(rv, sv));
                }
            }
            Value::Object(out)
        }
        (r, _) => r.clone(),
    }
}

/// Settles every in-doubt task of `state` that a manifest still declares with the same
/// content. Returns `None` when the endpoint offers no search (create-only gateway).
pub async fn settle(
    state: &mut State,
    manifests: &[Manifest],
    client: &Client,
) -> Result<Option<Vec<Settled>>, String> {
    let mut out = Vec::new();
    for (name, doubt) in state.in_doubt.clone() {
        let Some(m) = manifests
            .iter()
            .find(|m| m.name == name && m.hash == doubt.hash)
        else {
            out.push(Settled::Unresolved { name, why: "its manifest changed since the create was sent, so the remote task cannot be compared".into() });
            continue;
        };
        let Some(found) = client.search_by_name(&name).await? else {
            return Ok(None);
        };
        let sent = m.body();
        let (matching, other): (Vec<&Value>, Vec<&Value>) = found
            .iter()
            .partition(|t| hash::content_hash(&sent_fields(t, &sent)) == doubt.hash);
        match (matching.as_slice(), other.as_slice()) {
            ([one], []) => {
                let task_id = remote_task_id(one);
                let mut superseded = Vec::new();
                if let Some(old) = state.tasks.remove(&name) {
                    superseded = old.superseded;
                    superseded.push(Superseded {
                        task_id: old.task_id,
                        hash: old.hash,
                        replaced_at: Some(crate::clock::now_rfc3339()),
                    });
                }
                state.tasks.insert(
                    name.clone(),
                    TaskRecord {
                        task_id: task_id.clone(),
                        hash: m.hash.clone(),
                        file: Some(m.file.clone()),
                        applied_at: doubt.sent_at.clone(),
                        body: serde_json::value::RawValue::from_string(m.canonical.clone()).ok(),
                        superseded,
                    },
                );
                state.in_doubt.remove(&name);
                out.push(Settled::Adopted { name, task_id });
            }
            ([], []) => {
                state.in_doubt.remove(&name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_fields_sent_are_compared() {
        let sent =
            json!({"name": "a", "task_config": {"x": 1}, "schedule_config": {"max_time_out": 10}});
        let remote = json!({"id": "7", "name": "a", "create_time": "t", "task_config": {"x": 1, "echoed": true}, "schedule_config": {"max_time_out": 10, "enabled": 3}});
        assert_eq!(sent_fields(&remote, &sent), sent);
        let changed =
            json!({"name": "a", "task_config": {"x": 2}, "schedule_config": {"max_time_out": 10}});
        assert_ne!(sent_fields(&changed, &sent), sent);
        let sent = json!({"schedule_config": {"enabled": 1}});
        let scheduling = json!({"schedule_config": {"enabled": 3}});
        let paused = json!({"schedule_config": {"enabled": 5}});
        assert_eq!(sent_fields(&scheduling, &sent), sent);
        assert_eq!(
            sent_fields(&paused, &sent),
            json!({"schedule_config": {"enabled": 0}})
        );
    }
}
