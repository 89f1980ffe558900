//! Plans and apply results as Markdown for a pull-request comment.

use super::text::{apply_summary_line, summary_line};
use super::{ApplySummary, MARKDOWN_LIMIT, changes, detail, outcome_text, parse, succeeded};
use crate::plan::Action;
use crate::plan::document::{Entry, SavedPlan};
use crate::reconcile::applier::TaskResult;
use std::fmt::Write;

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
