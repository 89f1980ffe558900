//! Plans and apply results as JSON documents for programs (`format_version` "1").
//!
//! Values are exact: serde escapes control characters inside strings, and
//! [`json_safe`] writes DEL, C1 controls and bidi characters as `\uXXXX` too, so the
//! bytes are safe on a terminal and decode to exactly the same strings. Versions only
//! ever add keys: `changes` (per task) came after the first release.

use super::{ApplySummary, FieldChange, field_changes, json_safe};
use crate::plan::Action;
use crate::plan::document::SavedPlan;
use crate::reconcile::applier::TaskResult;
use serde::Serialize;

/// The plan's JSON document (`format_version` "1").
#[derive(Debug, Serialize)]
struct PlanJson<'a> {
    format_version: &'static str,
    target: TargetJson<'a>,
    /// With `--target`: the patterns, and how many tasks they left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    selection: Option<serde_json::Value>,
    summary: crate::plan::Summary,
    tasks: Vec<PlanTaskJson<'a>>,
}

/// Where the plan applies (null where nothing named a part).
#[derive(Debug, Serialize)]
struct TargetJson<'a> {
    endpoint_host: Option<&'a str>,
    project_id: Option<&'a str>,
    workspace: Option<&'a str>,
    state: &'a str,
}

#[derive(Debug, Serialize)]
struct PlanTaskJson<'a> {
    name: &'a str,
    action: Action,
    hash: Option<&'a str>,
    task_id: Option<&'a str>,
    file: Option<&'a str>,
    /// For a replace or update whose previous body is known: every changed field with
    /// its value before and after (`kind`: added, removed, changed). Null otherwise.
    changes: Option<Vec<FieldChangeJson>>,
    /// What the plan says about the task besides its action (why it is in doubt, what
    /// a delete removes, a record the apply rewrites); absent when nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

/// `{"path", "kind", "before", "after"}`: `before` is null for an added field, `after`
/// for a removed one (`kind` tells those from a field whose value is null).
#[derive(Debug, Serialize)]
struct FieldChangeJson {
    path: String,
    kind: super::ChangeKind,
    before: serde_json::Value,
    after: serde_json::Value,
}

impl From<FieldChange> for FieldChangeJson {
    fn from(c: FieldChange) -> Self {
        FieldChangeJson {
            path: c.path,
            kind: c.kind,
            before: c.before.unwrap_or_default(),
            after: c.after.unwrap_or_default(),
        }
    }
}

/// Every environment's plan: `{"format_version": "1", "environments": {"dev": <plan>,
/// ...}}`, each plan as [`plan_json`] prints it, or `{"error": "..."}` for an
/// environment that could not be planned.
pub fn environments_json(plans: &[(String, Result<SavedPlan, String>)]) -> String {
    let mut map = serde_json::Map::new();
    for (name, plan) in plans {
        let v: serde_json::Value = match plan {
            Ok(plan) => serde_json::from_str(&plan_json(plan)).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e }),
        };
        map.insert(name.clone(), v);
    }
    let doc = serde_json::json!({"format_version": "1", "environments": map});
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    super::json_safe(s)
}

/// The plan as one JSON document.
pub fn plan_json(plan: &SavedPlan) -> String {
    let doc = PlanJson {
        format_version: "1",
        target: TargetJson {
            endpoint_host: plan.target.endpoint_host.as_deref(),
            project_id: plan.target.project_id.as_deref(),
            workspace: plan.target.workspace.as_deref(),
            state: &plan.state_path,
        },
        selection: (!plan.targets.is_empty() || !plan.labels.is_empty()).then(|| {
            serde_json::json!({"targets": plan.targets, "labels": plan.labels, "not_selected": plan.not_selected})
        }),
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
                changes: field_changes(t).map(|c| c.into_iter().map(Into::into).collect()),
                note: t.note.as_deref(),
            })
            .collect(),
    };
    let mut s = json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default());
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
    let mut s = json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default());
    s.push('\n');
    s
}
