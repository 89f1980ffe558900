//! The planner: a pure function from manifests and state to actions.
//!
//! No I/O happens here, so tests call [`plan`] directly and every command (plan,
//! apply, watch) plans the same way.

pub mod diff;
pub mod document;
pub mod guard;
pub mod select;

use crate::load::manifest::Manifest;
use crate::state::{State, TaskRecord};
use serde::{Deserialize, Serialize};

pub use crate::load::settings::OnChange;

/// What apply will do with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not in the state: a create request will be sent.
    Create,
    /// In the state with another hash: a new task will be created and recorded; the
    /// previous remote task is recorded as superseded (pruned with `--prune`).
    Replace,
    /// In the state with another hash: the remote task is changed in place (PUT).
    Update,
    Unchanged,
    /// In the state but in no manifest: reported, not acted on (without `--prune`).
    Orphan,
    /// A create was sent but its answer never recorded: the task may exist.
    InDoubt,
    /// A remote task taskform owns that no manifest declares any more (an orphan, or
    /// the superseded task of a replace): deleted with `--prune`.
    Delete,
    /// A previous remote task of this name that a replace left on the server (it may
    /// still be scheduled, so two copies run): reported, deleted with `--prune`.
    Superseded,
    /// Another remote task of a name the state manages, recorded nowhere (a refresh
    /// found it): reported; deleted with `--prune` when its content is exactly what
    /// taskform sends for that manifest (a lost create of taskform's own).
    Duplicate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Orphan => "orphan",
            Action::InDoubt => "in_doubt",
            Action::Delete => "delete",
            Action::Superseded => "superseded",
            Action::Duplicate => "duplicate",
        }
    }
    /// Whether apply sends a request for it.
    pub fn sends(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Replace | Action::Update | Action::Delete
        )
    }
    /// Whether apply sends the manifest's body for it.
    pub fn sends_body(self) -> bool {
        matches!(self, Action::Create | Action::Replace | Action::Update)
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub name: String,
    pub action: Action,
    /// The manifest's hash; for a delete, the hash recorded for that remote task.
    pub hash: Option<String>,
    /// The recorded remote task, if any (for a delete: the task to delete).
    pub task_id: Option<String>,
    /// Path relative to DIR (for orphans and deletes: the file recorded, if any).
    pub file: Option<String>,
    /// Index into the manifests the plan was made from.
    pub manifest: Option<usize>,
    /// For a delete: the task is a superseded one (a replace left it), not an orphan.
    pub superseded: bool,
    /// A remote task of the name that no record holds (a duplicate), not the name's
    /// recorded task.
    pub duplicate: bool,
}

/// Counts by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub replace: usize,
    #[serde(default)]
    pub update: usize,
    #[serde(default)]
    pub delete: usize,
    pub unchanged: usize,
    pub orphan: usize,
    pub in_doubt: usize,
    /// Previous remote tasks that replaces left on the server (without `--prune`).
    #[serde(default)]
    pub superseded: usize,
    /// Remote tasks of managed names that no record holds (left alone).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate: usize,
}

/// For `skip_serializing_if`: counts of zero are left out of plan documents.
pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every task: deletes first, then by name.
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
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Orphan => s.orphan += 1,
                Action::InDoubt => s.in_doubt += 1,
                Action::Superseded => s.superseded += 1,
                Action::Duplicate => s.duplicate += 1,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Plan in-doubt tasks as create/replace (the user accepts a possible duplicate).
    #[serde(default)]
    pub recreate_in_doubt: bool,
    /// Replace or update changed tasks.
    #[serde(default)]
    pub on_change: OnChange,
    /// Delete orphans and superseded tasks.
    #[serde(default)]
    pub prune: bool,
    /// Read every recorded task from the server first (drift). The planner does not
    /// look at it: it is recorded so that a saved plan is applied the way it was made.
    #[serde(default)]
    pub refresh: bool,
    /// Look up unrecorded manifests on the server first (adoption); as `refresh`.
    #[serde(default)]
    pub adopt: bool,
    /// `--destroy`: delete every task the state records (and every superseded one),
    /// whatever the manifests say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroy: bool,
}

/// Compares manifests (unique names) with the state.
pub fn plan(manifests: &[Manifest], state: &State, opts: PlanOptions) -> Plan {
    if opts.destroy {
        // Every recorded task is an orphan to prune.
        let all = PlanOptions {
            destroy: false,
            prune: true,
            ..opts
        };
        return plan(&[], state, all);
    }
    let mut tasks = Vec::with_capacity(manifests.len() + 8);
    // Manifests and records are walked together in name order (a merge, not a lookup
    // per name): manifests come sorted by name as loaded, else their order is sorted.
    let mut order: Vec<usize> = (0..manifests.len()).collect();
    if !manifests.is_sorted_by(|a, b| a.name <= b.name) {
        order.sort_by(|&a, &b| manifests[a].name.cmp(&manifests[b].name));
    }
    let declared = |name: &str| {
        order
            .binary_search_by(|&i| manifests[i].name.as_str().cmp(name))
            .is_ok()
    };
    // A record no manifest declares: an orphan, a delete with --prune, or in doubt.
    let undeclared = |name: &String, r: &TaskRecord, tasks: &mut Vec<PlannedTask>| {
        let action = if state.in_doubt.contains_key(name) {
            Action::InDoubt
        } else if opts.prune {
            Action::Delete
        } else {
            Action::Orphan
        };
        tasks.push(PlannedTask {
            name: name.clone(),
            action,
            hash: if action == Action::Delete {
                Some(r.hash.clone())
            } else {
                None
            },
            task_id: Some(r.task_id.clone()),
            file: if action == Action::Delete {
                r.file.clone()
            } else {
                None
            },
            manifest: None,
            superseded: false,
            duplicate: false,
        });
    };
    // Earlier remote tasks a replace left behind, declared or not.
    let superseded = |name: &String, r: &TaskRecord, tasks: &mut Vec<PlannedTask>| {
        for s in &r.superseded {
            tasks.push(PlannedTask {
                name: name.clone(),
                action: if opts.prune {
                    Action::Delete
                } else {
                    Action::Superseded
                },
                hash: Some(s.hash.clone()),
                task_id: Some(s.task_id.clone()),
                file: None,
                manifest: None,
                superseded: true,
                duplicate: false,
            });
        }
    };
    let mut records = state.tasks.iter().peekable();
    for (k, &i) in order.iter().enumerate() {
        let m = &manifests[i];
        while let Some((name, r)) = records.next_if(|(n, _)| n.as_str() < m.name.as_str()) {
            undeclared(name, r, &mut tasks);
            superseded(name, r, &mut tasks);
        }
        let recorded = records
            .peek()
            .filter(|(n, _)| **n == m.name)
            .map(|(_, r)| *r);
        let in_doubt = state.in_doubt.contains_key(&m.name) && !opts.recreate_in_doubt;
        let action = match recorded {
            _ if in_doubt => Action::InDoubt,
            Some(r) if r.hash == m.hash => Action::Unchanged,
            Some(_) if opts.on_change == OnChange::Update => Action::Update,
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
            superseded: false,
            duplicate: false,
        });
        // The record is passed once the last manifest of its name is (a duplicate
        // name, refused by the loader, would see it too).
        let last_of_name = order
            .get(k + 1)
            .is_none_or(|&j| manifests[j].name != m.name);
        if last_of_name && let Some((name, r)) = records.next_if(|(n, _)| **n == m.name) {
            superseded(name, r, &mut tasks);
        }
    }
    for (name, r) in records {
        undeclared(name, r, &mut tasks);
        superseded(name, r, &mut tasks);
    }
    for (name, d) in &state.in_doubt {
        if !declared(name) && !state.tasks.contains_key(name) {
            tasks.push(PlannedTask {
                name: name.clone(),
                action: Action::InDoubt,
                hash: None,
                task_id: None,
                file: d.file.clone(),
                manifest: None,
                superseded: false,
                duplicate: false,
            });
        }
    }
    // Remote tasks of managed names recorded nowhere: only a lost create of taskform's
    // own (exactly the content it sends) is pruned; any other is only reported.
    // A finding of an earlier refresh is not deleted on its strength alone: only one
    // this run's refresh made (`--refresh`) is.
    for (name, dups) in &state.duplicates {
        for d in dups {
            let prune = opts.prune && opts.refresh && d.same_content;
            tasks.push(PlannedTask {
                name: name.clone(),
                action: if prune {
                    Action::Delete
                } else {
                    Action::Duplicate
                },
                hash: None,
                task_id: Some(d.task_id.clone()),
                file: None,
                manifest: None,
                superseded: false,
                duplicate: true,
            });
        }
    }
    tasks.sort_by(|a, b| {
        (
            a.action != Action::Delete,
            &a.name,
            a.superseded,
            &a.task_id,
        )
            .cmp(&(
                b.action != Action::Delete,
                &b.name,
                b.superseded,
                &b.task_id,
            ))
    });
    Plan { tasks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::guard::delete_guard;
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

    /// The planner as first written: a lookup per name. The merge must give exactly
    /// what it gives.
    fn reference(manifests: &[Manifest], state: &State, opts: PlanOptions) -> Vec<PlannedTask> {
        let declared = |n: &str| manifests.iter().any(|m| m.name == n);
        let mut tasks = Vec::new();
        for (i, m) in manifests.iter().enumerate() {
            let recorded = state.tasks.get(&m.name);
            let in_doubt = state.in_doubt.contains_key(&m.name) && !opts.recreate_in_doubt;
            let action = match recorded {
                _ if in_doubt => Action::InDoubt,
                Some(r) if r.hash == m.hash => Action::Unchanged,
                Some(_) if opts.on_change == OnChange::Update => Action::Update,
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
                superseded: false,
                duplicate: false,
            });
        }
        for (name, r) in &state.tasks {
            if !declared(name) {
                let action = match (state.in_doubt.contains_key(name), opts.prune) {
                    (true, _) => Action::InDoubt,
                    (false, true) => Action::Delete,
                    (false, false) => Action::Orphan,
                };
                let delete = action == Action::Delete;
                tasks.push(PlannedTask {
                    name: name.clone(),
                    action,
                    hash: delete.then(|| r.hash.clone()),
                    task_id: Some(r.task_id.clone()),
                    file: if delete { r.file.clone() } else { None },
                    manifest: None,
                    superseded: false,
                    duplicate: false,
                });
            }
            for s in &r.superseded {
                tasks.push(PlannedTask {
                    name: name.clone(),
                    action: if opts.prune {
                        Action::Delete
                    } else {
                        Action::Superseded
                    },
                    hash: Some(s.hash.clone()),
                    task_id: Some(s.task_id.clone()),
                    file: None,
                    manifest: None,
                    superseded: true,
                    duplicate: false,
                });
            }
        }
        for (name, d) in &state.in_doubt {
            if !declared(name) && !state.tasks.contains_key(name) {
                tasks.push(PlannedTask {
                    name: name.clone(),
                    action: Action::InDoubt,
                    hash: None,
                    task_id: None,
                    file: d.file.clone(),
                    manifest: None,
                    superseded: false,
                    duplicate: false,
                });
            }
        }
        let key = |t: &PlannedTask| {
            (
                t.action != Action::Delete,
                t.name.clone(),
                t.superseded,
                t.task_id.clone(),
            )
        };
        tasks.sort_by_key(key);
        tasks
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn the_merge_plans_what_a_lookup_per_name_plans(
            declared in proptest::collection::btree_map(0u8..40, 0u8..3, 0..25),
            recorded in proptest::collection::btree_map(0u8..40, (0u8..3, 0usize..3), 0..25),
            doubtful in proptest::collection::btree_set(0u8..40, 0..5),
            shuffle in proptest::prelude::any::<u64>(),
            prune in proptest::prelude::any::<bool>(),
            update in proptest::prelude::any::<bool>(),
        ) {
            let mut manifests: Vec<Manifest> = declared
                .iter()
                .map(|(n, h)| manifest(&format!("t{n:02}"), &format!("h{h}")))
                .collect();
            // Sorted as loaded, or in any order.
            if shuffle % 2 == 1 {
                let mut rng = fastrand::Rng::with_seed(shuffle);
                rng.shuffle(&mut manifests);
            }
            let mut state = State::new();
            for (n, (h, superseded)) in &recorded {
                let mut r = record(&format!("id-{n}"), &format!("h{h}"));
                for k in 0..*superseded {
                    r.superseded.push(crate::state::Superseded {
                        task_id: format!("old-{n}-{k}"),
                        hash: "h9".into(),
                        replaced_at: None,
                    });
                }
                state.tasks.insert(format!("t{n:02}"), r);
            }
            for n in &doubtful {
                state.in_doubt.insert(
                    format!("t{n:02}"),
                    InDoubt { hash: "h0".into(), file: None, sent_at: None, reason: None, body: None },
                );
            }
            let opts = PlanOptions {
                prune,
                on_change: if update { OnChange::Update } else { OnChange::Recreate },
                ..PlanOptions::default()
            };
            proptest::prop_assert_eq!(plan(&manifests, &state, opts).tasks, reference(&manifests, &state, opts));
        }
    }

    fn names(p: &Plan) -> Vec<(&str, Action, Option<&str>)> {
        p.tasks
            .iter()
            .map(|t| (t.name.as_str(), t.action, t.task_id.as_deref()))
            .collect()
    }

    #[test]
    fn update_and_prune() {
        let mut state = State::new();
        let mut changed = record("2", "old");
        changed.superseded.push(crate::state::Superseded {
            task_id: "1".into(),
            hash: "older".into(),
            replaced_at: None,
        });
        state.tasks.insert("changed".into(), changed);
        state.tasks.insert("gone".into(), record("3", "h"));
        let ms = vec![manifest("changed", "new")];
        let opts = PlanOptions {
            on_change: OnChange::Update,
            prune: true,
            ..PlanOptions::default()
        };
        let p = plan(&ms, &state, opts);
        assert_eq!(
            names(&p),
            vec![
                ("changed", Action::Delete, Some("1")),
                ("gone", Action::Delete, Some("3")),
                ("changed", Action::Update, Some("2")),
            ],
            "deletes first"
        );
        assert!(p.tasks[0].superseded && !p.tasks[1].superseded);
        assert_eq!(p.summary().delete, 2);
        assert_eq!(p.summary().update, 1);
        let recreate = PlanOptions {
            on_change: OnChange::Recreate,
            ..PlanOptions::default()
        };
        let p = plan(&ms, &state, recreate);
        assert_eq!(
            names(&p),
            vec![
                ("changed", Action::Replace, Some("2")),
                ("changed", Action::Superseded, Some("1")),
                ("gone", Action::Orphan, Some("3")),
            ],
            "without --prune, the superseded task is listed, not deleted"
        );
        assert_eq!(p.summary().superseded, 1);
        assert_eq!(
            plan(&ms, &state, PlanOptions::default()).tasks[0].action,
            Action::Update,
            "update is the default"
        );
    }

    #[test]
    fn the_delete_guard() {
        assert_eq!(delete_guard(3, 3, 10, 10), None);
        assert!(
            delete_guard(11, 11, 100, 10)
                .unwrap()
                .contains("--max-deletes 10")
        );
        assert!(delete_guard(2, 2, 2, 10).unwrap().contains("every task"));
        assert_eq!(delete_guard(2, 0, 2, 10), None, "superseded only");
        assert_eq!(delete_guard(0, 0, 0, 10), None);
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
                body: None,
            },
        );
        let ms = vec![
            manifest("changed", "new"),
            manifest("doubt", "h"),
            manifest("new", "h"),
            manifest("same", "h"),
        ];
        let recreate = PlanOptions {
            on_change: OnChange::Recreate,
            ..PlanOptions::default()
        };
        let p = plan(&ms, &state, recreate);
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
                in_doubt: 1,
                ..Summary::default()
            }
        );
        assert_eq!(p.tasks[0].task_id.as_deref(), Some("2"));
        assert!(p.has_changes());
        let p = plan(
            &ms,
            &state,
            PlanOptions {
                recreate_in_doubt: true,
                ..PlanOptions::default()
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
