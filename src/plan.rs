//! The planner: a pure function from manifests and state to actions.
//!
//! No I/O happens here, so tests call [`plan`] directly and every command (plan,
//! apply, watch) plans the same way.

use crate::manifest::Manifest;
use crate::state::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What apply will do with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not in the state: a create request will be sent.
    Create,
    /// In the state with another hash: a new task will be created and recorded; the
    /// previous remote task stays on the server (the create API cannot change it).
    Replace,
    Unchanged,
    /// In the state but in no manifest: reported, not acted on.
    Orphan,
    /// A create was sent but its answer never recorded: the task may exist.
    InDoubt,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Unchanged => "unchanged",
            Action::Orphan => "orphan",
            Action::InDoubt => "in_doubt",
        }
    }
    /// Whether apply sends a request for it.
    pub fn sends(self) -> bool {
        matches!(self, Action::Create | Action::Replace)
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub name: String,
    pub action: Action,
    /// The manifest's hash (none for orphans).
    pub hash: Option<String>,
    /// The recorded remote task, if any.
    pub task_id: Option<String>,
    /// Path relative to DIR (none for orphans).
    pub file: Option<String>,
    /// Index into the manifests the plan was made from.
    pub manifest: Option<usize>,
    /// The hash recorded in the state (replace, orphan, unchanged).
    pub previous_hash: Option<String>,
}

/// Counts by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub replace: usize,
    pub unchanged: usize,
    pub orphan: usize,
    pub in_doubt: usize,
}

/// Every task, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub tasks: Vec<PlannedTask>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for t in &self.tasks {
            match t.action {
                Action::Create => s.create += 1,
                Action::Replace => s.replace += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Orphan => s.orphan += 1,
                Action::InDoubt => s.in_doubt += 1,
            }
        }
        s
    }
    /// Whether anything is listed besides `unchanged` (what `--detailed-exitcode` asks).
    pub fn has_changes(&self) -> bool {
        self.tasks.iter().any(|t| t.action != Action::Unchanged)
    }
    /// The tasks apply sends requests for.
    pub fn to_send(&self) -> impl Iterator<Item = &PlannedTask> {
        self.tasks.iter().filter(|t| t.action.sends())
    }
}

/// Options that change what is planned.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Plan in-doubt tasks as create/replace (the user accepts a possible duplicate).
    pub recreate_in_doubt: bool,
}

/// Compares manifests (unique names) with the state.
pub fn plan(manifests: &[Manifest], state: &State, opts: PlanOptions) -> Plan {
    let mut tasks = Vec::with_capacity(manifests.len() + 8);
    let mut declared: BTreeMap<&str, ()> = BTreeMap::new();
    for (i, m) in manifests.iter().enumerate() {
        declared.insert(&m.name, ());
        let recorded = state.tasks.get(&m.name);
        let in_doubt = state.in_doubt.contains_key(&m.name) && !opts.recreate_in_doubt;
        let action = match recorded {
            _ if in_doubt => Action::InDoubt,
            Some(r) if r.hash == m.hash => Action::Unchanged,
            Some(_) => Action::Replace,
            None => Action::Create,
        };
        tasks.push(PlannedTask {
            name: m.name.clone(),
            action,
            hash: Some(m.hash.clone()),
            task_id: recorded.map(|r| r.task_id.clone()),
            file: Some(m.file.clone()),
            manifest: Some(i),
            previous_hash: recorded.map(|r| r.hash.clone()),
        });
    }
    for (name, r) in &state.tasks {
        if !declared.contains_key(name.as_str()) {
            tasks.push(PlannedTask {
                name: name.clone(),
                action: if state.in_doubt.contains_key(name) {
                    Action::InDoubt
                } else {
                    Action::Orphan
                },
                hash: None,
                task_id: Some(r.task_id.clone()),
                file: None,
                manifest: None,
                previous_hash: Some(r.hash.clone()),
            });
        }
    }
    for (name, d) in &state.in_doubt {
        if !declared.contains_key(name.as_str()) && !state.tasks.contains_key(name) {
            tasks.push(PlannedTask {
                name: name.clone(),
                action: Action::InDoubt,
                hash: None,
                task_id: None,
                file: d.file.clone(),
                manifest: None,
                previous_hash: None,
            });
        }
    }
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    Plan { tasks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{InDoubt, TaskRecord};

    fn manifest(name: &str, hash: &str) -> Manifest {
        let mut m = Manifest::from_body(
            name.into(),
            &serde_json::json!({"name": name}),
            format!("{name}.yaml"),
            format!("d/{name}.yaml"),
            0,
        );
        m.hash = hash.into();
        m
    }

    fn record(id: &str, hash: &str) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            hash: hash.into(),
            file: None,
            applied_at: None,
            body: None,
            superseded: vec![],
        }
    }

    #[test]
    fn every_action() {
        let mut state = State::new();
        state.tasks.insert("same".into(), record("1", "h"));
        state.tasks.insert("changed".into(), record("2", "old"));
        state.tasks.insert("gone".into(), record("3", "h"));
        state.in_doubt.insert(
            "doubt".into(),
            InDoubt {
                hash: "h".into(),
                file: None,
                sent_at: None,
                reason: None,
            },
        );
        let ms = vec![
            manifest("changed", "new"),
            manifest("doubt", "h"),
            manifest("new", "h"),
            manifest("same", "h"),
        ];
        let p = plan(&ms, &state, PlanOptions::default());
        let got: Vec<(&str, Action)> = p
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("changed", Action::Replace),
                ("doubt", Action::InDoubt),
                ("gone", Action::Orphan),
                ("new", Action::Create),
                ("same", Action::Unchanged)
            ]
        );
        assert_eq!(
            p.summary(),
            Summary {
                create: 1,
                replace: 1,
                unchanged: 1,
                orphan: 1,
                in_doubt: 1
            }
        );
        assert_eq!(p.tasks[0].task_id.as_deref(), Some("2"));
        assert!(p.has_changes());
        let p = plan(
            &ms,
            &state,
            PlanOptions {
                recreate_in_doubt: true,
            },
        );
        assert_eq!(p.tasks[1].action, Action::Create);
    }

    #[test]
    fn no_changes_when_everything_matches() {
        let mut state = State::new();
        state.tasks.insert("a".into(), record("1", "h"));
        let p = plan(&[manifest("a", "h")], &state, PlanOptions::default());
        assert!(!p.has_changes());
        assert_eq!(p.to_send().count(), 0);
    }
}
