//! Rendering plans and apply results for people (text), programs (JSON) and pull
//! requests (Markdown). Everything renders from a [`SavedPlan`], so a plan shown now
//! and a saved plan shown later look the same.

pub mod json;
pub mod markdown;
pub mod style;
pub mod text;

pub use json::{apply_json, plan_json};
pub use markdown::{apply_markdown, plan_markdown};
pub use text::{apply_problems_text, apply_summary_line, plan_text, summary_line};

use crate::plan::Action;
use crate::plan::diff::{self, Change};
use crate::plan::document::Entry;
use crate::reconcile::applier::{TaskOutcome, TaskResult};
use serde::Serialize;
use serde_json::Value;

/// Output format of plan, apply and show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Markdown,
}

/// GitHub's limit on one comment; the Markdown plan stays under it.
pub const MARKDOWN_LIMIT: usize = 65_536;

pub(crate) fn value_text(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(117).collect::<String>())
    } else {
        s
    }
}

pub(crate) fn parse(raw: Option<&serde_json::value::RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Field-level changes of a replace, if both bodies are known.
pub(crate) fn changes(t: &Entry) -> Option<Vec<Change>> {
    Some(diff::diff(
        &parse(t.previous_body.as_deref())?,
        &parse(t.body.as_deref())?,
    ))
}

/// Counts of an apply's outcomes.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplySummary {
    pub created: usize,
    pub replaced: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Not done: the endpoint offers no such request.
    pub unsupported: usize,
    pub failed: usize,
    pub in_doubt: usize,
    pub skipped: usize,
}

impl ApplySummary {
    pub fn of(results: &[TaskResult]) -> ApplySummary {
        let mut s = ApplySummary::default();
        for r in results {
            match r.outcome {
                TaskOutcome::Created if r.action == Action::Replace => s.replaced += 1,
                TaskOutcome::Created => s.created += 1,
                TaskOutcome::Updated => s.updated += 1,
                TaskOutcome::Deleted => s.deleted += 1,
                TaskOutcome::Unsupported => s.unsupported += 1,
                TaskOutcome::Failed => s.failed += 1,
                TaskOutcome::InDoubt => s.in_doubt += 1,
                TaskOutcome::Skipped => s.skipped += 1,
            }
        }
        s
    }
}

pub(crate) fn detail(r: &TaskResult) -> String {
    match (r.http_status, &r.error_code) {
        (Some(s), Some(c)) => format!(
            "HTTP {s} {c}: {}",
            r.error_msg.as_deref().unwrap_or_default()
        ),
        (Some(s), None) => format!("HTTP {s}: {}", r.error_msg.as_deref().unwrap_or_default()),
        _ => r.error_msg.clone().unwrap_or_default(),
    }
}

pub(crate) fn succeeded(r: &TaskResult) -> bool {
    matches!(
        r.outcome,
        TaskOutcome::Created | TaskOutcome::Updated | TaskOutcome::Deleted
    )
}

pub(crate) fn outcome_text(o: TaskOutcome) -> &'static str {
    match o {
        TaskOutcome::Created => "created",
        TaskOutcome::Updated => "updated",
        TaskOutcome::Deleted => "deleted",
        TaskOutcome::Unsupported => "not supported by the endpoint",
        TaskOutcome::Failed => "failed",
        TaskOutcome::InDoubt => "in doubt",
        TaskOutcome::Skipped => "skipped",
    }
}
