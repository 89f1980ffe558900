//! Observing the server before planning: what the state believes is brought in line
//! with what the service holds. Three readings, each a module:
//!
//! - [`settle`]: creates whose answer never arrived (in doubt) are looked up by name;
//! - [`refresh`]: every recorded task is read back, to find drift made outside taskform;
//! - [`adopt`]: manifests the state does not know are looked up by name, so that apply
//!   records existing tasks instead of creating duplicates.
//!
//! Each changes the state only through its transitions ([`crate::state::State`]'s
//! `record_*` methods) and reaches the service only through
//! [`TaskApi`], so tests run them in-process against a fake.

pub mod adopt;
pub mod refresh;
pub mod settle;

use super::{Error, Policy};
use crate::load::Loaded;
use crate::load::secret::Key;
use crate::remote::client::TaskApi;
use crate::state::State;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What observing the server changed.
#[derive(Debug, Default)]
pub struct Observed {
    /// The state changed (settled, adopted or refreshed records): write it before use.
    pub changed: bool,
    /// The state recorded nothing (no task, nothing in doubt) before it was observed: a
    /// new state, or another copy of one, which the check for duplicate names guards.
    pub started_empty: bool,
    /// Notes for the plan, by task name.
    pub notes: BTreeMap<String, String>,
}

/// Reads the server into `state` as `policy` asks: settles in-doubt creates (with
/// `--recreate-in-doubt` too: by search first), refreshes with `refresh`, adopts with `adopt`. An endpoint
/// without search or show falls back to create-only behaviour with a warning.
pub async fn observe(
    state: &mut State,
    loaded: &Loaded,
    api: &Arc<dyn TaskApi>,
    policy: &Policy,
) -> Result<Observed, Error> {
    let manifests = &loaded.manifests;
    let key = &loaded.settings.secret_key;
    let mut read = Observed {
        started_empty: state.tasks.is_empty() && state.in_doubt.is_empty(),
        ..Observed::default()
    };
    let before = state.in_doubt.len();
    if before > 0 {
        let settled = settle::settle(
            state,
            manifests,
            api.as_ref(),
            key,
            policy.recreate_in_doubt,
        )
        .await?;
        settle::report(&settled);
        read.changed |= state.in_doubt.len() < before;
    }
    if policy.refresh {
        let known = state.duplicates.clone();
        let drift = refresh::refresh(state, manifests, api, key).await?;
        refresh::report(&drift);
        if let Some(drift) = drift {
            let drifted = drift
                .iter()
                .any(|d| !matches!(d, refresh::Drift::Duplicate { .. }));
            read.changed |= drifted || state.duplicates != known;
            read.notes.extend(refresh::notes(&drift));
        }
    }
    if policy.adopt {
        let adopted = adopt::adopt(state, manifests, api, key).await?;
        adopt::report(&adopted);
        if let Some(adopted) = adopted {
            if let Some(e) = adopt::ambiguous(&adopted) {
                return Err(e.into());
            }
            read.changed |= !adopted.is_empty();
            for a in adopted {
                if let adopt::Adopted::Differs { name, task_id } = a {
                    read.notes.insert(name, format!("adopted task {task_id}, whose content on the server differs from the manifest's; the diff goes from the server's content to the manifest's"));
                }
            }
        }
    }
    Ok(read)
}

/// The remote task reduced to the fields taskform sent, for comparing with what was
/// sent (its content hash). The rule, since the service does not echo a body as it was
/// sent (`docs/API-EVIDENCE.md`):
///
/// - a field the answer carries is compared: only the keys that were sent, at every
///   depth (the service adds IDs, times, defaults, and keys in `task_config`), and a
///   list whose length did not change is compared entry by entry the same way (the
///   service adds `task_id` to `parameter_config` entries);
/// - a field the answer omits (or answers `null`) is unknown, never a difference: it
///   takes the value that was sent. The Terraform provider's import documentation says
///   the answer lacks `task_config`; taskform cannot see drift there when it does;
/// - the schedule's `enabled` is read back as a state (3 = scheduling, 5 = paused) and
///   compared as what was sent (1, 0);
/// - where `sent` holds a sensitive value's fingerprint, the server's value is
///   fingerprinted with `key` too: compared, and recorded, as such.
///
/// Settling and adopting also need [`identity_echoed`]: a task whose answer does not
/// show its identity is not taken for the one that was sent.
pub fn sent_fields(remote: &Value, sent: &Value, key: &Key) -> Value {
    let mut out = echoed_fields(remote, sent, key);
    fill_unknown(&mut out, sent);
    out
}

/// The remote task reduced to the fields taskform sent that the answer carries, without
/// filling in what it omits: what the server is known to hold.
pub fn echoed_fields(remote: &Value, sent: &Value, key: &Key) -> Value {
    let mut out = filter(remote, sent);
    crate::load::secret::fingerprint_like(&mut out, sent, key);
    if let Some(enabled) = out.pointer_mut("/schedule_config/enabled")
        && let Some(state) = enabled.as_i64()
    {
        *enabled = Value::from(crate::load::schema::enabled_as_written(state));
    }
    out
}

/// The fields that identify a task when settling an in-doubt create or adopting: they
/// must be in the answer and equal to what was sent, whatever the answer omits
/// elsewhere. `schedule_config` counts with every key that was sent in it.
pub const IDENTITY: &[&str] = &["name", "data_source_type", "dir_id", "schedule_config"];

/// Whether the answer shows every identity field that was sent ([`IDENTITY`]); `Err`
/// names those it omits (`dir_id`, `schedule_config.cron_expression`).
pub fn identity_echoed(remote: &Value, sent: &Value) -> Result<(), Vec<String>> {
    let present = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    let mut missing = Vec::new();
    for f in IDENTITY {
        let Some(s) = sent.get(*f) else { continue };
        let r = remote.get(*f);
        if !present(r) {
            missing.push(f.to_string());
            continue;
        }
        if let (Value::Object(s), Some(Value::Object(r))) = (s, r) {
            for k in s.keys() {
                if !present(r.get(k)) {
                    missing.push(format!("{f}.{k}"));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// `remote` where it has a key of `sent` with a value (not `null`), keeping only those
/// keys, at every depth; lists of one length entry by entry.
fn filter(remote: &Value, sent: &Value) -> Value {
    match (remote, sent) {
        (Value::Object(r), Value::Object(s)) => {
            let mut out = Map::new();
            for (k, sv) in s {
                match r.get(k) {
                    None | Some(Value::Null) => {}
                    Some(rv) => {
                        out.insert(k.clone(), filter(rv, sv));
                    }
                }
            }
            Value::Object(out)
        }
        (Value::Array(r), Value::Array(s)) if r.len() == s.len() => {
            Value::Array(r.iter().zip(s).map(|(r, s)| filter(r, s)).collect())
        }
        (r, _) => r.clone(),
    }
}

/// Gives every key of `sent` that `out` lacks the value sent, at every depth (lists of
/// one length entry by entry): what the answer omitted is taken as unchanged.
fn fill_unknown(out: &mut Value, sent: &Value) {
    match (out, sent) {
        (Value::Object(o), Value::Object(s)) => {
            for (k, sv) in s {
                match o.get_mut(k) {
                    Some(ov) => fill_unknown(ov, sv),
                    None => {
                        o.insert(k.clone(), sv.clone());
                    }
                }
            }
        }
        (Value::Array(o), Value::Array(s)) if o.len() == s.len() => {
            for (ov, sv) in o.iter_mut().zip(s) {
                fill_unknown(ov, sv);
            }
        }
        _ => {}
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
        assert_eq!(sent_fields(&remote, &sent, &Key::default()), sent);
        let changed =
            json!({"name": "a", "task_config": {"x": 2}, "schedule_config": {"max_time_out": 10}});
        assert_ne!(sent_fields(&changed, &sent, &Key::default()), sent);
        let sent = json!({"schedule_config": {"enabled": 1}});
        let scheduling = json!({"schedule_config": {"enabled": 3}});
        let paused = json!({"schedule_config": {"enabled": 5}});
        assert_eq!(sent_fields(&scheduling, &sent, &Key::default()), sent);
        assert_eq!(
            sent_fields(&paused, &sent, &Key::default()),
            json!({"schedule_config": {"enabled": 0}})
        );
    }

    fn sent() -> Value {
        json!({"name": "a", "dir_id": "0", "data_source_type": "DLI",
            "schedule_config": {"schedule_type": "CRON", "cron_expression": "0 0 * * * ?", "enabled": 1},
            "task_config": {"x": 1, "y": [1, 2]},
            "parameter_config": [{"description": "d", "type": "string"}]})
    }

    #[test]
    fn what_the_answer_omits_is_unknown_not_a_difference() {
        let k = Key::default();
        let mut remote = sent();
        remote["schedule_config"]["enabled"] = json!(3);
        remote["id"] = json!("7");
        // task_config left out, or null: taken as sent.
        remote.as_object_mut().unwrap().shift_remove("task_config");
        assert_eq!(sent_fields(&remote, &sent(), &k), sent());
        remote["task_config"] = Value::Null;
        assert_eq!(sent_fields(&remote, &sent(), &k), sent());
        // Echoed reordered, with extra keys, and parameter entries with their task_id.
        remote["task_config"] = json!({"z": "added", "y": [1, 2], "x": 1});
        remote["parameter_config"] =
            json!([{"task_id": "7", "type": "string", "description": "d"}]);
        assert_eq!(sent_fields(&remote, &sent(), &k), sent());
        // A key left out of task_config is unknown too; a value that is there is compared.
        remote["task_config"] = json!({"x": 1});
        assert_eq!(sent_fields(&remote, &sent(), &k), sent());
        remote["task_config"] = json!({"x": 2});
        assert_ne!(sent_fields(&remote, &sent(), &k), sent());
        // Lists are values: another order or length is a difference.
        remote["task_config"] = json!({"x": 1, "y": [2, 1]});
        assert_ne!(sent_fields(&remote, &sent(), &k), sent());
        remote["task_config"] = json!({"x": 1});
        remote["parameter_config"] = json!([]);
        assert_ne!(sent_fields(&remote, &sent(), &k), sent());
        // What is known, without filling in: what the server showed.
        assert_eq!(
            echoed_fields(&remote, &sent(), &k)["task_config"],
            json!({"x": 1})
        );
    }

    #[test]
    fn identity_must_be_echoed() {
        let mut remote = sent();
        remote.as_object_mut().unwrap().shift_remove("task_config");
        assert_eq!(identity_echoed(&remote, &sent()), Ok(()));
        remote.as_object_mut().unwrap().shift_remove("dir_id");
        remote["schedule_config"]
            .as_object_mut()
            .unwrap()
            .shift_remove("cron_expression");
        remote["name"] = Value::Null;
        assert_eq!(
            identity_echoed(&remote, &sent()),
            Err(vec![
                "name".to_string(),
                "dir_id".to_string(),
                "schedule_config.cron_expression".to_string()
            ])
        );
        remote
            .as_object_mut()
            .unwrap()
            .shift_remove("schedule_config");
        assert!(
            identity_echoed(&remote, &sent())
                .unwrap_err()
                .contains(&"schedule_config".to_string())
        );
    }
}
