//! Rendering plans for people (text) and programs (JSON).

use crate::diff::{self, Change};
use crate::manifest::Manifest;
use crate::plan::{Action, Plan};
use crate::state::State;
use crate::style::Style;
use serde::Serialize;
use std::fmt::Write;

/// Output format of plan and apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The plan's JSON document (`format_version` "1").
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    pub format_version: &'static str,
    pub summary: crate::plan::Summary,
    pub tasks: Vec<PlanTaskJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct PlanTaskJson<'a> {
    pub name: &'a str,
    pub action: Action,
    pub hash: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub file: Option<&'a str>,
}

/// The plan as one JSON document.
pub fn plan_json(plan: &Plan) -> String {
    let doc = PlanJson {
        format_version: "1",
        summary: plan.summary(),
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

fn value_text(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// The plan for a person: one line per task sorted by name, field diffs for replaces,
/// and a summary line.
pub fn plan_text(plan: &Plan, manifests: &[Manifest], state: &State, style: Style) -> String {
    let mut out = String::new();
    let width = plan
        .tasks
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for t in &plan.tasks {
        let (mark, label) = match t.action {
            Action::Create => (style.green("+"), style.green("create   ")),
            Action::Replace => (style.yellow("~"), style.yellow("replace  ")),
            Action::Unchanged => (" ".to_string(), style.dim("unchanged")),
            Action::Orphan => (style.magenta("-"), style.magenta("orphan   ")),
            Action::InDoubt => (style.red("?"), style.red("in doubt ")),
        };
        let name = format!("{:width$}", t.name, width = width);
        let name = if t.action == Action::Unchanged {
            style.dim(&name)
        } else {
            style.bold(&name)
        };
        let _ = write!(out, "  {mark} {name}  {label}");
        if let Some(f) = &t.file {
            let _ = write!(out, "  {}", style.dim(f));
        }
        if let Some(id) = &t.task_id {
            let _ = write!(out, "  {}", style.dim(&format!("task {id}")));
        }
        out.push('\n');
        match t.action {
            Action::Replace => {
                let new = t.manifest.and_then(|i| manifests.get(i)).map(|m| m.body());
                let old = state
                    .tasks
                    .get(&t.name)
                    .and_then(|r| r.body.as_ref())
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(b.get()).ok());
                match (old, new) {
                    (Some(old), Some(new)) => {
                        for c in diff::diff(&old, &new) {
                            let line = match c {
                                Change::Added { path, new } => {
                                    style.green(&format!("+ {path}: {}", value_text(&new)))
                                }
                                Change::Removed { path, old } => {
                                    style.red(&format!("- {path}: {}", value_text(&old)))
                                }
                                Change::Changed { path, old, new } => style.yellow(&format!(
                                    "~ {path}: {} -> {}",
                                    value_text(&old),
                                    value_text(&new)
                                )),
                            };
                            let _ = writeln!(out, "        {line}");
                        }
                    }
                    _ => {
                        let _ = writeln!(out, "        {}", style.dim("(the previously applied body is not in the state, so the changed fields cannot be shown)"));
                    }
                }
                let _ = writeln!(
                    out,
                    "        {}",
                    style.dim(&format!(
                        "a new task will be created; the previous remote task {} stays on the server",
                        t.task_id.as_deref().unwrap_or("?")
                    ))
                );
            }
            Action::Orphan => {
                let _ = writeln!(
                    out,
                    "        {}",
                    style.dim("no manifest declares it any more; the remote task is left alone")
                );
            }
            Action::InDoubt => {
                let why = state.in_doubt.get(&t.name).map(|d| {
                    format!(
                        "a create was sent{} but its answer was never recorded ({}); the task may exist on the server. Check the console, then re-run with --recreate-in-doubt to create it again",
                        d.sent_at.as_deref().map(|s| format!(" at {s}")).unwrap_or_default(),
                        d.reason.as_deref().unwrap_or("unknown outcome")
                    )
                });
                if let Some(why) = why {
                    let _ = writeln!(out, "        {}", style.dim(&why));
                }
            }
            _ => {}
        }
    }
    if !plan.tasks.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// `Plan: 1 to create, 0 to replace, 3 unchanged, 0 orphaned, 0 in doubt.`
pub fn summary_line(plan: &Plan) -> String {
    let s = plan.summary();
    if !plan.has_changes() {
        return format!(
            "No changes. {} task{} up to date.",
            s.unchanged,
            if s.unchanged == 1 { "" } else { "s" }
        );
    }
    format!(
        "Plan: {} to create, {} to replace, {} unchanged, {} orphaned, {} in doubt.",
        s.create, s.replace, s.unchanged, s.orphan, s.in_doubt
    )
}
