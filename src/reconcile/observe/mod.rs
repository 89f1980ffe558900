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

/// Reads the server into `state` as `policy` asks: settles in-doubt creates (unless they
/// are to be created again), refreshes with `refresh`, adopts with `adopt`. An endpoint
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
    if before > 0 && !policy.recreate_in_doubt {
        let settled = settle::settle(state, manifests, api.as_ref(), key).await?;
        settle::report(&settled);
        read.changed |= state.in_doubt.len() < before;
    }
    if policy.refresh {
        let drift = refresh::refresh(state, manifests, api, key).await?;
        refresh::report(&drift);
        if let Some(drift) = drift {
            read.changed |= !drift.is_empty();
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

/// The remote task reduced to the fields taskform sent: the service may echo more
/// (IDs, times, defaults) or echo `task_config` with extra keys. The schedule's
/// `enabled` is read back as a state (3 = scheduling, 5 = paused): it is compared as
/// what was sent (1, 0). Where `sent` holds a sensitive value's fingerprint, the
/// server's value is fingerprinted with `key` too: compared, and recorded, as such.
pub fn sent_fields(remote: &Value, sent: &Value, key: &Key) -> Value {
    let mut out = filter(remote, sent);
    crate::load::secret::fingerprint_like(&mut out, sent, key);
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
}
