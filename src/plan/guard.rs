//! The prune guard: a plan that deletes more remote tasks than `--max-deletes`, or
//! every task the state records (the usual sign of a wrong folder or an emptied
//! checkout), is refused unless forced. Pure: apply and watch check a plan with it
//! before anything is sent, plan warns with it.

use super::Action;
use super::document::SavedPlan;
use crate::state::State;

/// The default of `--max-deletes`.
pub const DEFAULT_MAX_DELETES: usize = 10;

/// Why a plan's deletes are refused: more than `max_deletes`, or every task the state
/// records (the usual sign of a wrong folder or an emptied checkout). `None` = allowed.
pub fn delete_guard(
    deletes: usize,
    deletes_of_recorded: usize,
    recorded: usize,
    max_deletes: usize,
) -> Option<String> {
    if deletes > max_deletes {
        return Some(format!(
            "the plan deletes {deletes} remote tasks, more than --max-deletes {max_deletes}"
        ));
    }
    if recorded > 0 && deletes_of_recorded >= recorded {
        return Some(format!(
            "the plan deletes every task the state records ({recorded}): is DIR the right folder?"
        ));
    }
    None
}

/// A plan that would replace tasks whose manifests set `prevent_destroy`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plan would replace or destroy {} task(s) whose manifests set `prevent_destroy: true`: {}; nothing was sent. Change them in place instead (`on_change: update`), or remove the rule in a reviewed change first", .names.len(), .names.join(", "))]
pub struct Protected {
    pub names: Vec<String>,
}

/// Refuses a plan that replaces or deletes (`--destroy`) the current task of a name
/// whose manifest protects it (`prevent_destroy`); superseded copies and duplicates
/// may go.
pub fn protected(doc: &SavedPlan, loaded: &crate::load::Loaded) -> Result<(), Protected> {
    let names: Vec<String> = doc
        .tasks
        .iter()
        .filter(|t| {
            t.action == Action::Replace
                || (t.action == Action::Delete && !t.superseded && !t.duplicate)
        })
        .filter(|t| {
            loaded
                .manifests
                .iter()
                .any(|m| m.name == t.name && m.rules.prevent_destroy)
        })
        .map(|t| crate::load::diagnostic::escape(&t.name).into_owned())
        .collect();
    match names.is_empty() {
        true => Ok(()),
        false => Err(Protected { names }),
    }
}

/// A plan whose deletes the guard refuses: why, and the deletes (name, task ID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to prune: {why}; nothing was sent.\n{}{}\ncheck the folder and the state; re-run with --force-prune to delete them anyway, or raise --max-deletes", self.listed(), self.more())]
pub struct Refused {
    pub why: String,
    /// The first deletes, for the message.
    pub deletes: Vec<(String, Option<String>)>,
    /// How many deletes the plan holds.
    pub total: usize,
}

impl Refused {
    fn listed(&self) -> String {
        self.deletes
            .iter()
            .map(|(name, id)| {
                // Untrusted: escaped here, so that the message's own line breaks are
                // the only ones (a log shows it line by line).
                format!(
                    "  - {} (task {})",
                    crate::load::diagnostic::escape(name),
                    crate::load::diagnostic::escape(id.as_deref().unwrap_or("?"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn more(&self) -> String {
        if self.total > self.deletes.len() {
            format!("\n  ... and {} more", self.total - self.deletes.len())
        } else {
            String::new()
        }
    }
}

/// Checks a plan's deletes against the guard; `force` lets them through with a warning.
pub fn check(
    doc: &SavedPlan,
    state: &State,
    max_deletes: usize,
    force: bool,
) -> Result<(), Refused> {
    let (all, recorded) = doc.deletes();
    // `--destroy` deletes every recorded task by design: only the count is guarded.
    let every = match doc.options.destroy {
        true => usize::MAX,
        false => state.tasks.len(),
    };
    let Some(why) = delete_guard(all, recorded, every, max_deletes) else {
        return Ok(());
    };
    if force {
        tracing::warn!("{why}; deleting anyway (--force-prune)");
        return Ok(());
    }
    let deletes = doc
        .tasks
        .iter()
        .filter(|t| t.action == Action::Delete)
        .take(20)
        .map(|t| (t.name.clone(), t.task_id.clone()))
        .collect();
    Err(Refused {
        why,
        deletes,
        total: all,
    })
}
