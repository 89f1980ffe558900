//! Working on part of a repo (`--target NAME`, like Terraform's `-target`): only tasks
//! whose names match a pattern are planned; the others are left alone. Patterns are
//! names with `*` (any run of characters) and `?` (one character).

use super::Plan;

/// What `--target` and `--label` ask for (nothing: every task).
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Name patterns.
    pub targets: &'a [String],
    /// `key=value` labels.
    pub labels: &'a [String],
}

pub use crate::glob::matches;

/// Whether the task `name` is selected (its manifest, if any, carries the labels).
pub fn selected(name: &str, selection: Selection<'_>, manifests: &[crate::load::Manifest]) -> bool {
    keeps(name, manifests.iter().find(|m| m.name == name), selection)
}

/// Whether a task of this name and manifest (none for an orphan, which has no
/// labels) is selected.
fn keeps(name: &str, manifest: Option<&crate::load::Manifest>, selection: Selection<'_>) -> bool {
    let named = selection.targets.is_empty() || selection.targets.iter().any(|p| matches(p, name));
    let labelled = selection.labels.is_empty()
        || manifest.is_some_and(|m| {
            selection.labels.iter().all(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                m.rules.labels.get(k).map(String::as_str) == Some(v)
            })
        });
    named && labelled
}

/// Keeps the selected tasks of `plan` (all when nothing is asked for); returns how
/// many were left out.
pub fn select(
    plan: &mut Plan,
    selection: Selection<'_>,
    manifests: &[crate::load::Manifest],
) -> usize {
    if selection.targets.is_empty() && selection.labels.is_empty() {
        return 0;
    }
    let before = plan.tasks.len();
    plan.tasks.retain(|t| {
        let manifest = t
            .manifest
            .and_then(|i| manifests.get(i))
            .or_else(|| manifests.iter().find(|m| m.name == t.name));
        keeps(&t.name, manifest, selection)
    });
    before - plan.tasks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("dli-*", "dli-sales"));
        assert!(matches("*-daily", "dli-sales-daily"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(!matches("dli-*", "dws-x"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("ü*", "über"));
    }
}
