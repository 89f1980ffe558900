//! What a reconcile may do beyond comparing hashes: what a changed task gets
//! (`on_change`), pruning and its guard, reading the server first (`--refresh`,
//! `--adopt`), and in-doubt creates. The lifecycle flags of plan, apply and watch.

use crate::load::Loaded;
use crate::plan::document::SavedPlan;
use crate::plan::guard::{self, DEFAULT_MAX_DELETES, Refused};
use crate::plan::{OnChange, PlanOptions};
use crate::state::State;

/// The lifecycle flags of plan, apply and watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Overrides `on_change` of taskform.yaml.
    pub on_change: Option<OnChange>,
    pub prune: bool,
    pub max_deletes: usize,
    /// Delete past the guard.
    pub force_prune: bool,
    pub refresh: bool,
    pub adopt: bool,
    pub recreate_in_doubt: bool,
    /// Apply (or watch) a folder without manifests (with `--prune`, the guard still
    /// refuses to delete every recorded task).
    pub allow_empty: bool,
    /// Create tasks although the service already has tasks of their names (a state
    /// that records nothing is checked against the service before creating).
    pub allow_duplicate_names: bool,
    /// `--target` patterns: only matching tasks are planned and applied.
    pub targets: Vec<String>,
    /// `--label key=value`: only tasks whose manifests carry every one.
    pub labels: Vec<String>,
    /// `--destroy`: delete every recorded task (guard and confirmation as prune).
    pub destroy: bool,
    /// `--ignore-suspend`: apply to a suspended state (`taskform suspend`).
    pub ignore_suspend: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_change: None,
            prune: false,
            max_deletes: DEFAULT_MAX_DELETES,
            force_prune: false,
            refresh: false,
            adopt: false,
            recreate_in_doubt: false,
            allow_empty: false,
            allow_duplicate_names: false,
            targets: Vec::new(),
            labels: Vec::new(),
            destroy: false,
            ignore_suspend: false,
        }
    }
}

impl Policy {
    /// The planner's options: flags over taskform.yaml over the defaults.
    pub fn options(&self, loaded: &Loaded) -> PlanOptions {
        PlanOptions {
            recreate_in_doubt: self.recreate_in_doubt,
            on_change: self
                .on_change
                .or(loaded.settings.on_change)
                .unwrap_or_default(),
            prune: self.prune,
            refresh: self.refresh,
            adopt: self.adopt,
            destroy: self.destroy,
        }
    }

    /// The policy a saved plan was made with; the guard's flags (`max_deletes`,
    /// `force_prune`) stay this one's, so that apply's flags decide.
    pub fn for_saved(&self, saved: &SavedPlan) -> Policy {
        let o = saved.options;
        Policy {
            targets: saved.targets.clone(),
            labels: saved.labels.clone(),
            on_change: Some(o.on_change),
            prune: o.prune,
            refresh: o.refresh,
            adopt: o.adopt,
            recreate_in_doubt: o.recreate_in_doubt,
            destroy: o.destroy,
            ..self.clone()
        }
    }

    /// Refuses a plan whose deletes trip the guard, unless forced.
    pub fn check_deletes(&self, doc: &SavedPlan, state: &State) -> Result<(), Refused> {
        guard::check(doc, state, self.max_deletes, self.force_prune)
    }
}
