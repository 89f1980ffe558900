//! Rendering plans and apply results for people (text), programs (JSON) and pull
//! requests (Markdown). Everything renders from a [`SavedPlan`], so a plan shown now
//! and a saved plan shown later look the same.

pub mod style;

use crate::plan::Action;
use crate::plan::diff::{self, Change};
use crate::plan::document::{Entry, SavedPlan};
use crate::reconcile::applier::{TaskOutcome, TaskResult};
use crate::render::style::Style;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;

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

fn value_text(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(117).collect::<String>())
    } else {
        s
    }
}

fn parse(raw: Option<&serde_json::value::RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Field-level changes of a replace, if both bodies are known.
fn changes(t: &Entry) -> Option<Vec<Change>> {
    Some(diff::diff(
        &parse(t.previous_body.as_deref())?,
        &parse(t.body.as_deref())?,
    ))
}

/// The plan for a person: one line per task sorted by name, field diffs for replaces,
/// and a summary line.
pub fn plan_text(plan: &SavedPlan, style: Style) -> String {
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
            Action::Update => (style.yellow("~"), style.yellow("update   ")),
            Action::Orphan => (style.magenta("-"), style.magenta("orphan   ")),
            Action::InDoubt => (style.red("?"), style.red("in doubt ")),
            Action::Delete => (style.red("-"), style.red("delete   ")),
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
        let note = |out: &mut String, text: &str| {
            let _ = writeln!(out, "        {}", style.dim(text));
        };
        match t.action {
            Action::Replace | Action::Update => {
                if let Some(text) = &t.note {
                    note(&mut out, text);
                }
                field_changes(t, style, &mut out);
                let id = t.task_id.as_deref().unwrap_or("?");
                if t.action == Action::Replace {
                    note(
                        &mut out,
                        &format!(
                            "a new task will be created; the previous remote task {id} is recorded as superseded (deleted by --prune)"
                        ),
                    );
                } else {
                    note(
                        &mut out,
                        &format!("task {id} will be changed in place (PUT), keeping its ID"),
                    );
                }
            }
            Action::Orphan => note(
                &mut out,
                "no manifest declares it any more; the remote task is left alone (--prune deletes it)",
            ),
            Action::Delete => {
                let text = t
                    .note
                    .as_deref()
                    .unwrap_or("no manifest declares it any more");
                let _ = writeln!(
                    out,
                    "        {}",
                    style.red(&format!("{text}; the remote task will be deleted"))
                );
            }
            _ => {
                if let Some(text) = &t.note {
                    note(&mut out, text);
                }
            }
        }
    }
    if !plan.tasks.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// The field changes of a replace or update, one line each.
fn field_changes(t: &Entry, style: Style, out: &mut String) {
    let Some(changes) = changes(t) else {
        let _ = writeln!(out, "        {}", style.dim("(the previously applied body is not in the state, so the changed fields cannot be shown)"));
        return;
    };
    for c in changes {
        let line = match c {
            Change::Added { path, new } => style.green(&format!("+ {path}: {}", value_text(&new))),
            Change::Removed { path, old } => style.red(&format!("- {path}: {}", value_text(&old))),
            Change::Changed { path, old, new } => style.yellow(&format!(
                "~ {path}: {} -> {}",
                value_text(&old),
                value_text(&new)
            )),
        };
        let _ = writeln!(out, "        {line}");
    }
}

/// `Plan: 1 to create, 0 to replace, 3 unchanged, 0 orphaned, 0 in doubt.` (with
/// `N to update` and `N to delete` when there are any).
pub fn summary_line(plan: &SavedPlan) -> String {
    let s = plan.summary;
    if !plan.has_changes() {
        return format!(
            "No changes. {} task{} up to date.",
            s.unchanged,
            if s.unchanged == 1 { "" } else { "s" }
        );
    }
    let mut extra = String::new();
    if s.update > 0 {
        let _ = write!(extra, "{} to update, ", s.update);
    }
    if s.delete > 0 {
        let _ = write!(extra, "{} to delete, ", s.delete);
    }
    format!(
        "Plan: {} to create, {} to replace, {extra}{} unchanged, {} orphaned, {} in doubt.",
        s.create, s.replace, s.unchanged, s.orphan, s.in_doubt
    )
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('`', "'")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pretty(raw: Option<&serde_json::value::RawValue>) -> String {
    parse(raw)
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default()
}

/// A unified diff of two pretty-printed bodies, with full context.
fn body_diff(t: &Entry) -> String {
    let old = pretty(t.previous_body.as_deref());
    let new = pretty(t.body.as_deref());
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn summary_table(plan: &SavedPlan, out: &mut String) {
    let s = plan.summary;
    let _ = writeln!(
        out,
        "| create | replace | update | delete | unchanged | orphan | in doubt |\n|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} |\n",
        s.create, s.replace, s.update, s.delete, s.unchanged, s.orphan, s.in_doubt
    );
}

/// The plan as Markdown for a pull-request comment: a summary table first, then the
/// tasks that change, then a section per replace with a `diff` of the request body
/// (collapsed when long). Stays under [`MARKDOWN_LIMIT`]: past it, only the summary
/// and a note saying where the full plan is (`full_plan_hint`).
pub fn plan_markdown(plan: &SavedPlan, full_plan_hint: &str) -> String {
    let mut head = String::from("### taskform plan\n\n");
    let target = match (&plan.target.project_id, &plan.target.workspace) {
        (Some(p), Some(w)) => format!("project `{p}`, workspace `{w}`"),
        _ => "target not set".to_string(),
    };
    let _ = writeln!(
        head,
        "{} · {target} · state serial {}\n",
        md_escape(&summary_line(plan)),
        plan.state.serial
    );
    summary_table(plan, &mut head);

    let mut body = String::new();
    let changed: Vec<&Entry> = plan
        .tasks
        .iter()
        .filter(|t| t.action != Action::Unchanged)
        .collect();
    if !changed.is_empty() {
        body.push_str("| | task | action | file | task ID |\n|---|---|---|---|---|\n");
        for t in &changed {
            let icon = match t.action {
                Action::Create => "➕",
                Action::Replace => "🔁",
                Action::Update => "✏️",
                Action::Delete => "🗑️",
                Action::Orphan => "➖",
                Action::InDoubt => "❓",
                Action::Unchanged => "",
            };
            let _ = writeln!(
                body,
                "| {icon} | `{}` | {} | {} | {} |",
                md_escape(&t.name),
                t.action.as_str(),
                t.file
                    .as_deref()
                    .map(|f| format!("`{}`", md_escape(f)))
                    .unwrap_or_default(),
                t.task_id
                    .as_deref()
                    .map(|i| format!("`{i}`"))
                    .unwrap_or_default()
            );
        }
        body.push('\n');
    }
    for t in changed
        .iter()
        .filter(|t| matches!(t.action, Action::Replace | Action::Update))
    {
        let id = t.task_id.as_deref().unwrap_or("?");
        if t.action == Action::Replace {
            let _ = writeln!(body, "#### 🔁 `{}`\n", md_escape(&t.name));
            let _ = writeln!(
                body,
                "A new task is created; the previous remote task `{id}` is recorded as superseded (deleted by `--prune`).\n"
            );
        } else {
            let _ = writeln!(body, "#### ✏️ `{}`\n", md_escape(&t.name));
            let _ = writeln!(body, "Task `{id}` is changed in place.\n");
        }
        if let Some(note) = &t.note {
            let _ = writeln!(body, "_{}_\n", md_escape(note));
        }
        if t.previous_body.is_none() {
            body.push_str(
                "_The previously applied body is not in the state, so no diff can be shown._\n\n",
            );
            continue;
        }
        let diff = body_diff(t);
        let fenced = format!("```diff\n{diff}```\n");
        if diff.lines().count() > 40 {
            let n = changes(t).map_or(0, |c| c.len());
            let _ = writeln!(
                body,
                "<details><summary>{n} field{} changed</summary>\n\n{fenced}\n</details>\n",
                if n == 1 { "" } else { "s" }
            );
        } else {
            let _ = writeln!(body, "{fenced}");
        }
    }
    for t in &changed {
        let icon = match t.action {
            Action::InDoubt => "❓",
            Action::Delete => "🗑️",
            Action::Create => "➕",
            _ => continue,
        };
        if let Some(note) = &t.note {
            let _ = writeln!(
                body,
                "> {icon} `{}`: {}\n",
                md_escape(&t.name),
                md_escape(note)
            );
        }
    }
    let full = format!("{head}{body}");
    if full.chars().count() <= MARKDOWN_LIMIT {
        return full;
    }
    format!(
        "{head}_The full plan ({} characters) is over GitHub's comment limit; {full_plan_hint}._\n",
        full.chars().count()
    )
}

/// The apply's JSON document.
#[derive(Serialize)]
struct ApplyJson<'a> {
    format_version: &'static str,
    summary: ApplySummary,
    plan: crate::plan::Summary,
    tasks: &'a [TaskResult],
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

fn detail(r: &TaskResult) -> String {
    match (r.http_status, &r.error_code) {
        (Some(s), Some(c)) => format!(
            "HTTP {s} {c}: {}",
            r.error_msg.as_deref().unwrap_or_default()
        ),
        (Some(s), None) => format!("HTTP {s}: {}", r.error_msg.as_deref().unwrap_or_default()),
        _ => r.error_msg.clone().unwrap_or_default(),
    }
}

fn succeeded(r: &TaskResult) -> bool {
    matches!(
        r.outcome,
        TaskOutcome::Created | TaskOutcome::Updated | TaskOutcome::Deleted
    )
}

fn outcome_text(o: TaskOutcome) -> &'static str {
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

/// One line per task that did not succeed: `failed: name (file): HTTP 400 DLG.0003: ...`.
pub fn apply_problems_text(results: &[TaskResult]) -> String {
    let mut out = String::new();
    for r in results.iter().filter(|r| !succeeded(r)) {
        let file = r
            .file
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let what = match r.action {
            Action::Update | Action::Delete => {
                format!("{} ({})", outcome_text(r.outcome), r.action.as_str())
            }
            _ => outcome_text(r.outcome).to_string(),
        };
        let _ = writeln!(out, "{what}: {}{file}: {}", r.name, detail(r));
    }
    out
}

/// `Apply complete: 3 created, 1 replaced, 0 failed, 0 in doubt, 0 skipped.`
pub fn apply_summary_line(results: &[TaskResult], interrupted: bool) -> String {
    let s = ApplySummary::of(results);
    let mut extra = String::new();
    for (n, what) in [
        (s.updated, "updated"),
        (s.deleted, "deleted"),
        (s.unsupported, "not supported"),
    ] {
        if n > 0 {
            let _ = write!(extra, "{n} {what}, ");
        }
    }
    format!(
        "Apply {}: {} created, {} replaced, {extra}{} failed, {} in doubt, {} skipped.",
        if interrupted {
            "interrupted"
        } else {
            "complete"
        },
        s.created,
        s.replaced,
        s.failed,
        s.in_doubt,
        s.skipped
    )
}

/// The apply's result as Markdown: the outcome table, then every task that did not succeed.
pub fn apply_markdown(results: &[TaskResult], interrupted: bool) -> String {
    let s = ApplySummary::of(results);
    let mut out = format!(
        "### taskform apply\n\n{}\n\n",
        apply_summary_line(results, interrupted)
    );
    let _ = writeln!(
        out,
        "| created | replaced | updated | deleted | failed | in doubt | skipped |\n|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} |\n",
        s.created, s.replaced, s.updated, s.deleted, s.failed, s.in_doubt, s.skipped
    );
    let problems: Vec<&TaskResult> = results.iter().filter(|r| !succeeded(r)).collect();
    if !problems.is_empty() {
        out.push_str("| task | outcome | file | error |\n|---|---|---|---|\n");
        for r in problems {
            let outcome = outcome_text(r.outcome);
            let _ = writeln!(
                out,
                "| `{}` | {outcome} | {} | {} |",
                md_escape(&r.name),
                r.file.as_deref().map(md_escape).unwrap_or_default(),
                md_escape(&detail(r))
            );
        }
    }
    out
}
