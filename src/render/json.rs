//! Plans and apply results as JSON documents for programs (`format_version` "1").

use super::ApplySummary;
use crate::plan::Action;
use crate::plan::document::SavedPlan;
use crate::reconcile::applier::TaskResult;
use serde::Serialize;

/// The plan's JSON document (`format_version` "1").
#[derive(Debug, Serialize)]
struct PlanJson<'a> {
    format_version: &'static str,
    summary: crate::plan::Summary,
    tasks: Vec<PlanTaskJson<'a>>,
}

#[derive(Debug, Serialize)]
struct PlanTaskJson<'a> {
    name: &'a str,
    action: Action,
    hash: Option<&'a str>,
    task_id: Option<&'a str>,
    file: Option<&'a str>,
}

/// The plan as one JSON document.
pub fn plan_json(plan: &SavedPlan) -> String {
    let doc = PlanJson {
        format_version: "1",
        summary: plan.summary,
        tasks: plan
            .tasks
            .iter()
            .map(|t| PlanTaskJson {
                name: &t.name,
                action: t.action,
                hash: t.hash.as_deref(),
                task_id: t.task_id.as_deref(),
                file: t.file.as_deref(),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// The apply's JSON document.
#[derive(Serialize)]
struct ApplyJson<'a> {
    format_version: &'static str,
    summary: ApplySummary,
    plan: crate::plan::Summary,
    tasks: &'a [TaskResult],
}

/// The apply's result as one JSON document.
pub fn apply_json(plan: &SavedPlan, results: &[TaskResult]) -> String {
    let doc = ApplyJson {
        format_version: "1",
        summary: ApplySummary::of(results),
        plan: plan.summary,
        tasks: results,
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
