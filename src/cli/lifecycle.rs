//! What plan, apply and watch share beyond comparing hashes: the planning options
//! (`on_change`, `--prune` and its guard), and reading the server before planning
//! (settling in-doubt creates, `--adopt`, `--refresh`).

use crate::load::manifest::Loaded;
use crate::plan::document::SavedPlan;
use crate::plan::{self, OnChange, PlanOptions};
use crate::remote::client::Client;
use crate::state::State;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The default of `--max-deletes`.
pub const DEFAULT_MAX_DELETES: usize = 10;

/// Lifecycle flags of plan, apply and watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// Overrides `on_change` of taskform.yaml.
    pub on_change: Option<OnChange>,
    pub prune: bool,
    pub max_deletes: usize,
    /// Delete past the guard.
    pub force_prune: bool,
    pub refresh: bool,
    pub adopt: bool,
    pub recreate_in_doubt: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            on_change: None,
            prune: false,
            max_deletes: DEFAULT_MAX_DELETES,
            force_prune: false,
            refresh: false,
            adopt: false,
            recreate_in_doubt: false,
        }
    }
}

/// What reading the server changed.
#[derive(Debug, Default)]
pub struct ServerRead {
    /// The state changed (settled, adopted or refreshed records): write it before use.
    pub changed: bool,
    /// Notes for the plan, by task name.
    pub notes: BTreeMap<String, String>,
}

impl Lifecycle {
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
        }
    }

    /// The same flags as a plan file's options (applying a saved plan).
    pub fn from_options(&self, o: PlanOptions) -> Lifecycle {
        Lifecycle {
            on_change: Some(o.on_change),
            prune: o.prune,
            refresh: o.refresh,
            adopt: o.adopt,
            recreate_in_doubt: o.recreate_in_doubt,
            ..self.clone()
        }
    }

    /// Refuses a plan whose deletes trip the guard, unless forced.
    pub fn check_deletes(&self, doc: &SavedPlan, state: &State) -> Result<(), String> {
        let (all, recorded) = doc.deletes();
        let Some(why) = plan::delete_guard(all, recorded, state.tasks.len(), self.max_deletes)
        else {
            return Ok(());
        };
        if self.force_prune {
            tracing::warn!("{why}; deleting anyway (--force-prune)");
            return Ok(());
        }
        let list: Vec<String> = doc
            .tasks
            .iter()
            .filter(|t| t.action == crate::plan::Action::Delete)
            .take(20)
            .map(|t| {
                format!(
                    "  - {} (task {})",
                    t.name,
                    t.task_id.as_deref().unwrap_or("?")
                )
            })
            .collect();
        Err(format!(
            "refusing to prune: {why}; nothing was sent.\n{}{}\ncheck the folder and the state; re-run with --force-prune to delete them anyway, or raise --max-deletes",
            list.join("\n"),
            if all > list.len() {
                format!("\n  ... and {} more", all - list.len())
            } else {
                String::new()
            }
        ))
    }

    /// Reads the server into `state` before planning: settles in-doubt creates (unless
    /// they are to be created again), adopts with `adopt`, refreshes with `refresh`.
    /// An endpoint without search or show falls back to create-only behaviour with a
    /// warning.
    pub async fn read_server(
        &self,
        state: &mut State,
        loaded: &Loaded,
        client: &Arc<Client>,
    ) -> Result<ServerRead, String> {
        let mut read = ServerRead::default();
        let before = state.in_doubt.len();
        if before > 0 && !self.recreate_in_doubt {
            let settled =
                crate::reconcile::observe::settle::settle(state, &loaded.manifests, client).await?;
            crate::reconcile::observe::settle::report(&settled);
            read.changed |= state.in_doubt.len() < before;
        }
        if self.refresh {
            let drift =
                crate::reconcile::observe::refresh::refresh(state, &loaded.manifests, client)
                    .await?;
            crate::reconcile::observe::refresh::report(&drift);
            if let Some(drift) = drift {
                read.changed |= !drift.is_empty();
                read.notes
                    .extend(crate::reconcile::observe::refresh::notes(&drift));
            }
        }
        if self.adopt {
            let adopted =
                crate::reconcile::observe::adopt::adopt(state, &loaded.manifests, client).await?;
            crate::reconcile::observe::adopt::report(&adopted);
            if let Some(adopted) = adopted {
                if let Some(msg) = crate::reconcile::observe::adopt::ambiguous(&adopted) {
                    return Err(msg);
                }
                read.changed |= !adopted.is_empty();
                for a in adopted {
                    if let crate::reconcile::observe::adopt::Adopted::Differs { name, task_id } = a
                    {
                        read.notes.insert(name, format!("adopted task {task_id}, whose content on the server differs from the manifest's; the diff goes from the server's content to the manifest's"));
                    }
                }
            }
        }
        Ok(read)
    }
}
