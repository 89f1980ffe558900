//! Plans and apply results as Markdown for a pull-request comment.
//!
//! A plan that fits in [`MARKDOWN_BUDGET`] characters has a table of the tasks that
//! change and a section per task with its field diff. One that does not fit lists
//! every changed task by action (names only), then the field diffs of as many tasks as
//! fit in one `diff` block, in plan order, then a line saying how many were cut and
//! where the full plan is. Names are never cut before details (only past about 4,000
//! names, when the names alone fill the comment, are the last ones cut).
//!
//! Names, files, IDs, notes and values are untrusted. Outside code blocks they are
//! written as code spans, or as `<code>` with every Markdown and HTML metacharacter as
//! an entity when they hold one (`|`, `<`, `>`, `&`, backtick, ...), so no value can
//! add a table cell, a tag, a link or emphasis; control and bidi characters are
//! escaped visibly ([`escape`]). A `diff` block's fence is longer than any run of
//! backticks inside it.

use super::text::{apply_summary_line, summary_line};
use super::{
    ApplySummary, FieldChange, MARKDOWN_BUDGET, MARKDOWN_LIMIT, detail, escape, field_changes,
    outcome_text, succeeded,
};
use crate::plan::Action;
use crate::plan::document::{Entry, SavedPlan};
use crate::reconcile::applier::TaskResult;
use std::fmt::Write;
use std::path::Path;

/// Markdown and HTML metacharacters as entities (the text is already [`escape`]d).
fn entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '*' => out.push_str("&#42;"),
            '_' => out.push_str("&#95;"),
            '[' => out.push_str("&#91;"),
            ']' => out.push_str("&#93;"),
            '\\' => out.push_str("&#92;"),
            '~' => out.push_str("&#126;"),
            '$' => out.push_str("&#36;"),
            c => out.push(c),
        }
    }
    out
}

/// Untrusted text as Markdown text, safe in a table cell, a heading or a paragraph.
pub(crate) fn md_text(s: &str) -> String {
    entities(&escape(s))
}

/// Untrusted text as code: a code span when that is safe in a table cell, else
/// `<code>` with entities.
pub(crate) fn md_code(s: &str) -> String {
    let e = escape(s);
    let span_safe = !e.is_empty()
        && !e.starts_with(' ')
        && !e.ends_with(' ')
        && !e.contains(['`', '|', '<', '>', '&', '\\']);
    if span_safe {
        format!("`{e}`")
    } else {
        format!("<code>{}</code>", entities(&e))
    }
}

/// A code fence longer than any run of backticks in `content` (at least three).
fn fence_for(content: &str) -> String {
    let (mut longest, mut run) = (0, 0);
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn icon(a: Action) -> &'static str {
    match a {
        Action::Create => "➕",
        Action::Replace => "🔁",
        Action::Update => "✏️",
        Action::Delete => "🗑️",
        Action::Orphan => "➖",
        Action::Superseded => "♻️",
        Action::Duplicate => "⚠️",
        Action::InDoubt => "❓",
        Action::Unchanged => "",
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Where the full plan is, for the note of a cut plan: the plan file (`--out`, or the
/// file `show` renders), and `hint` (Markdown written by whoever runs taskform, such
/// as the CI artifact's name); without either, the command that shows it.
pub fn full_plan_hint(file: Option<&Path>, hint: Option<&str>, dir: &str) -> String {
    let mut parts = Vec::new();
    if let Some(f) = file {
        let f = f.display().to_string();
        parts.push(format!(
            "{} ({})",
            md_code(&f),
            md_code(&format!("taskform show {f}"))
        ));
    }
    if let Some(h) = hint.filter(|h| !h.trim().is_empty()) {
        parts.push(escape(h.trim()).into_owned());
    }
    if parts.is_empty() {
        parts.push(format!("run {}", md_code(&format!("taskform plan {dir}"))));
    }
    parts.join("; ")
}

fn summary_table(plan: &SavedPlan, out: &mut String) {
    let s = plan.summary;
    // The superseded column only when there are some (tables of older plans stay as
    // they were).
    let (mut head, mut rule, mut cell) = match s.superseded {
        0 => (String::new(), String::new(), String::new()),
        n => (" superseded |".into(), "---:|".into(), format!(" {n} |")),
    };
    if s.duplicate > 0 {
        head.push_str(" duplicate |");
        rule.push_str("---:|");
        let _ = write!(cell, " {} |", s.duplicate);
    }
    let _ = writeln!(
        out,
        "| create | replace | update | delete | unchanged | orphan | in doubt |{head}\n|---:|---:|---:|---:|---:|---:|---:|{rule}\n| {} | {} | {} | {} | {} | {} | {} |{cell}\n",
        s.create, s.replace, s.update, s.delete, s.unchanged, s.orphan, s.in_doubt
    );
}

fn head(plan: &SavedPlan, title: &str) -> String {
    let mut head = format!("### {title}\n\n");
    let or = |v: &Option<String>| {
        v.as_deref()
            .map(md_code)
            .unwrap_or_else(|| "(not set)".into())
    };
    let target = format!(
        "endpoint {}, project {}, workspace {}, state {}",
        or(&plan.target.endpoint_host),
        or(&plan.target.project_id),
        or(&plan.target.workspace),
        md_code(&plan.state_path)
    );
    let _ = writeln!(
        head,
        "{} · {target} · state serial {}\n",
        md_text(&summary_line(plan)),
        plan.state.serial
    );
    summary_table(plan, &mut head);
    head
}

/// The field diff lines of a replace or update (`None` without a previous body).
fn diff_lines(t: &Entry) -> Option<Vec<String>> {
    field_changes(t).map(|c| c.iter().map(|c: &FieldChange| c.line("→")).collect())
}

const NO_PREVIOUS: &str =
    "The previously applied body is not in the state, so no diff can be shown.";

/// The plan with a table row and a section per changing task.
fn detailed(changed: &[&Entry]) -> String {
    let mut body = String::new();
    if !changed.is_empty() {
        body.push_str("| | task | action | file | task ID |\n|---|---|---|---|---|\n");
        for t in changed {
            let _ = writeln!(
                body,
                "| {} | {} | {} | {} | {} |",
                icon(t.action),
                md_code(&t.name),
                t.action.as_str(),
                t.file.as_deref().map(md_code).unwrap_or_default(),
                t.task_id.as_deref().map(md_code).unwrap_or_default()
            );
        }
        body.push('\n');
    }
    for t in changed
        .iter()
        .filter(|t| matches!(t.action, Action::Replace | Action::Update))
    {
        let id = md_code(t.task_id.as_deref().unwrap_or("?"));
        let _ = writeln!(
            body,
            "#### {} {} · {}\n",
            icon(t.action),
            md_code(&t.name),
            t.action.as_str()
        );
        if t.action == Action::Replace {
            let _ = writeln!(
                body,
                "A new task is created; the previous remote task {id} is recorded as superseded (deleted by `--prune`).\n"
            );
        } else {
            let _ = writeln!(body, "Task {id} is changed in place.\n");
        }
        if let Some(note) = &t.note {
            let _ = writeln!(body, "_{}_\n", md_text(note));
        }
        let Some(lines) = diff_lines(t) else {
            let _ = writeln!(body, "_{NO_PREVIOUS}_\n");
            continue;
        };
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let fence = fence_for(&text);
        let fenced = format!("{fence}diff\n{text}{fence}\n");
        if lines.len() > 20 {
            let _ = writeln!(
                body,
                "<details><summary>{} fields changed</summary>\n\n{fenced}\n</details>\n",
                lines.len()
            );
        } else {
            let _ = writeln!(body, "{fenced}");
        }
    }
    for t in changed {
        if matches!(
            t.action,
            Action::InDoubt
                | Action::Delete
                | Action::Create
                | Action::Orphan
                | Action::Superseded
                | Action::Duplicate
        ) && let Some(note) = &t.note
        {
            let _ = writeln!(
                body,
                "> {} {}: {}\n",
                icon(t.action),
                md_code(&t.name),
                md_text(note)
            );
        }
    }
    body
}

/// The order of the actions in the list of names.
const ORDER: [Action; 8] = [
    Action::Delete,
    Action::Duplicate,
    Action::InDoubt,
    Action::Create,
    Action::Replace,
    Action::Update,
    Action::Orphan,
    Action::Superseded,
];

/// Every changed task's name by action, within `room` characters; past it the last
/// names are cut (with how many), never the actions' counts. Also says whether every
/// name is there.
fn names(changed: &[&Entry], room: usize, full_plan: &str) -> (String, bool) {
    let mut out = format!(
        "This plan is too long for one comment in full: every task that changes is named below by action, with its changed fields as far as they fit (files and task IDs are in the full plan). The full plan: {full_plan}.\n\n"
    );
    let groups: Vec<(Action, Vec<&Entry>)> = ORDER
        .iter()
        .map(|a| {
            (
                *a,
                changed
                    .iter()
                    .copied()
                    .filter(|t| t.action == *a)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, ts)| !ts.is_empty())
        .collect();
    // Each group's line without names, so that every count is always shown.
    let fixed: usize = groups
        .iter()
        .map(|(a, ts)| {
            chars(&format!(
                "- {} **{}** ({}): \n",
                icon(*a),
                a.as_str(),
                ts.len()
            )) + 40
        })
        .sum();
    let mut left = room.saturating_sub(chars(&out) + fixed);
    let mut complete = true;
    for (a, ts) in &groups {
        let _ = write!(out, "- {} **{}** ({}): ", icon(*a), a.as_str(), ts.len());
        let mut first = true;
        for (i, t) in ts.iter().enumerate() {
            let name = md_code(&t.name);
            let cost = chars(&name) + 2;
            if cost > left {
                let _ = write!(
                    out,
                    "{}… and {} more",
                    if first { "" } else { ", " },
                    ts.len() - i
                );
                left = 0;
                complete = false;
                break;
            }
            left -= cost;
            if !first {
                out.push_str(", ");
            }
            out.push_str(&name);
            first = false;
        }
        out.push('\n');
    }
    out.push('\n');
    (out, complete)
}

/// One task's part of the compact `diff` block: a header line (name and action: the
/// file and task ID are in the full plan) and its field diff (or its note).
fn chunk(t: &Entry) -> Option<String> {
    let lines = diff_lines(t);
    let sends_diff = matches!(t.action, Action::Replace | Action::Update);
    if !sends_diff && t.note.is_none() {
        return None;
    }
    let mut out = format!("@@ {} · {} @@\n", escape(&t.name), t.action.as_str());
    if let Some(note) = &t.note {
        let _ = writeln!(out, "  {}", escape(note));
    }
    match lines {
        Some(lines) => {
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        None if sends_diff => {
            let _ = writeln!(out, "  ({NO_PREVIOUS})");
        }
        None => {}
    }
    Some(out)
}

/// The cut note: how many tasks' details were left out, and where the full plan is.
fn cut_note(cut: usize, total: usize, all_named: bool, full_plan: &str) -> String {
    let named = match all_named {
        true => "every task that changes is named above",
        false => "so were the names past those listed above",
    };
    format!(
        "> The details of {cut} of {total} tasks were cut to stay under GitHub's 65,536-character comment limit ({named}). The full plan: {full_plan}.\n"
    )
}

/// The plan as Markdown for a pull-request comment: a summary table first, then the
/// tasks that change and their field diffs. Stays under [`MARKDOWN_BUDGET`] characters
/// (GitHub allows [`MARKDOWN_LIMIT`]): see the module's documentation for what is cut,
/// and `full_plan` ([`full_plan_hint`]) for where the note says the full plan is.
pub fn plan_markdown(plan: &SavedPlan, full_plan: &str) -> String {
    plan_markdown_within(plan, full_plan, MARKDOWN_BUDGET, "taskform plan")
}

/// Every environment's plan for one comment: a table of them all, then a section
/// per environment, each within its share of [`MARKDOWN_BUDGET`] (cut as
/// [`plan_markdown`] cuts, naming every changed task first).
pub fn environments_markdown(
    all: &[(String, Result<SavedPlan, String>)],
    full_plan: &str,
) -> String {
    let plans: Vec<(String, SavedPlan)> = all
        .iter()
        .filter_map(|(n, p)| Some((n.clone(), p.as_ref().ok()?.clone())))
        .collect();
    let failed: Vec<(&String, &String)> = all
        .iter()
        .filter_map(|(n, p)| Some((n, p.as_ref().err()?)))
        .collect();
    let mut out = format!(
        "### taskform plan: {} environments\n\n| environment | workspace | create | replace | update | delete | unchanged | orphan | in doubt |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        all.len()
    );
    for (name, _) in &failed {
        let _ = writeln!(
            out,
            "| {} | **not planned** (see below) | | | | | | | |",
            md_code(name)
        );
    }
    for (name, plan) in &plans {
        let s = plan.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_code(name),
            plan.target
                .workspace
                .as_deref()
                .map(md_code)
                .unwrap_or_else(|| "(not set)".into()),
            s.create,
            s.replace,
            s.update,
            s.delete,
            s.unchanged,
            s.orphan,
            s.in_doubt
        );
    }
    let changed: Vec<String> = plans
        .iter()
        .filter(|(_, p)| p.would_send())
        .map(|(n, _)| md_code(n))
        .collect();
    let _ = writeln!(
        out,
        "\n{}\n",
        match (changed.is_empty(), failed.is_empty()) {
            (true, true) => "No changes in any environment.".to_string(),
            (true, false) => "No changes in the environments planned.".to_string(),
            (false, _) => format!("Changes in {}.", changed.join(", ")),
        }
    );
    for (name, e) in &failed {
        let text: String = e.lines().map(|l| format!("{}\n", escape(l))).collect();
        let fence = fence_for(&text);
        let _ = writeln!(
            out,
            "### Environment {}: not planned\n\n{fence}\n{text}{fence}\n",
            md_code(name)
        );
    }
    // Each section in full when they all fit; otherwise the small ones in full and
    // what is left shared by the others, each cut as a single plan is.
    let title = |name: &str| format!("Environment {}", md_code(name));
    let full: Vec<usize> = plans
        .iter()
        .map(|(name, plan)| {
            chars(&plan_markdown_within(
                plan,
                full_plan,
                usize::MAX,
                &title(name),
            ))
        })
        .collect();
    let mut left = MARKDOWN_BUDGET.saturating_sub(chars(&out));
    let mut budgets = vec![0; plans.len()];
    let mut open: Vec<usize> = (0..plans.len()).collect();
    loop {
        let share = left / open.len().max(1);
        let (fits, rest): (Vec<usize>, Vec<usize>) = open.iter().partition(|&&i| full[i] <= share);
        if fits.is_empty() {
            for &i in &rest {
                budgets[i] = share;
            }
            break;
        }
        for &i in &fits {
            budgets[i] = full[i];
            left -= full[i];
        }
        open = rest;
        if open.is_empty() {
            break;
        }
    }
    for ((name, plan), budget) in plans.iter().zip(budgets) {
        out.push_str(&plan_markdown_within(plan, full_plan, budget, &title(name)));
    }
    debug_assert!(chars(&out) <= MARKDOWN_LIMIT);
    out
}

fn plan_markdown_within(plan: &SavedPlan, full_plan: &str, budget: usize, title: &str) -> String {
    let head = head(plan, title);
    let changed: Vec<&Entry> = plan
        .tasks
        .iter()
        .filter(|t| t.action != Action::Unchanged)
        .collect();
    let full = detailed(&changed);
    // Unchanged tasks with something to say (a record the apply rewrites).
    let quiet: String = plan
        .tasks
        .iter()
        .filter(|t| t.action == Action::Unchanged)
        .filter_map(|t| {
            let note = t.note.as_deref()?;
            Some(format!("> {}: {}\n\n", md_code(&t.name), md_text(note)))
        })
        .collect();
    if chars(&head) + chars(&full) + chars(&quiet) <= budget {
        return head + &full + &quiet;
    }
    if chars(&head) + chars(&full) <= budget {
        return head + &full;
    }
    // Too long: names first, then details as long as they fit.
    let chunks: Vec<String> = changed.iter().filter_map(|t| chunk(t)).collect();
    let total = chunks.len();
    let note_room = chars(&cut_note(total, total, false, full_plan)) + 8;
    let heading = "#### Changed fields\n\n";
    let fence = fence_for(&chunks.concat());
    let frame = chars(heading) + 2 * chars(&fence) + "diff\n\n\n".len();
    let names_room = budget.saturating_sub(chars(&head) + note_room + frame);
    let (names, all_named) = names(&changed, names_room, full_plan);
    let mut left = budget.saturating_sub(chars(&head) + chars(&names) + note_room + frame);
    let mut shown = 0;
    let mut block = String::new();
    for c in &chunks {
        let n = chars(c);
        if n > left {
            break;
        }
        left -= n;
        block.push_str(c);
        shown += 1;
    }
    let mut out = head + &names;
    if shown > 0 {
        let _ = write!(out, "{heading}{fence}diff\n{block}{fence}\n\n");
    }
    if shown < total {
        out.push_str(&cut_note(total - shown, total, all_named, full_plan));
    }
    debug_assert!(chars(&out) <= MARKDOWN_LIMIT);
    out
}

/// The apply's result as Markdown: the outcome table, then every task that did not succeed.
pub fn apply_markdown(results: &[TaskResult], interrupted: bool) -> String {
    let s = ApplySummary::of(results);
    let mut out = format!(
        "### taskform apply\n\n{}\n\n",
        md_text(&apply_summary_line(results, interrupted))
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
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                md_code(&r.name),
                outcome_text(r.outcome),
                r.file.as_deref().map(md_code).unwrap_or_default(),
                md_text(&detail(r))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_only_when_safe_in_a_table_cell() {
        assert_eq!(md_code("dli-sales.yaml"), "`dli-sales.yaml`");
        assert_eq!(md_code("a|b"), "<code>a&#124;b</code>");
        assert_eq!(
            md_code("<script>`x`</script>"),
            "<code>&lt;script&gt;&#96;x&#96;&lt;/script&gt;</code>"
        );
        assert_eq!(md_code("a\nb"), "<code>a&#92;u{a}b</code>");
        assert_eq!(md_code(""), "<code></code>");
        assert_eq!(
            md_text("*bold* & [link](x) $x$"),
            "&#42;bold&#42; &amp; &#91;link&#93;(x) &#36;x&#36;"
        );
    }

    #[test]
    fn fences_outlast_backticks_inside() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ``` b"), "````");
        assert_eq!(fence_for("`````"), "``````");
    }

    fn entry(name: &str, action: &str) -> Entry {
        serde_json::from_value(serde_json::json!({"name": name, "action": action,
            "hash": null, "task_id": null, "file": null}))
        .unwrap()
    }

    #[test]
    fn names_past_the_room_are_cut_with_every_count_kept() {
        let tasks: Vec<Entry> = (0..50)
            .map(|i| entry(&format!("task-{i:02}"), "update"))
            .chain([entry("old", "delete")])
            .collect();
        let refs: Vec<&Entry> = tasks.iter().collect();
        let (all, complete) = names(&refs, 100_000, "F");
        assert!(complete);
        assert!(all.contains("- 🗑️ **delete** (1): `old`\n- ✏️ **update** (50): `task-00`,"));
        assert!(all.contains("`task-49`\n"));
        let (cut, complete) = names(&refs, all.chars().count() - 200, "F");
        assert!(!complete);
        assert!(cut.contains("**update** (50): `task-00`,"), "{cut}");
        assert!(
            cut.contains(" more\n") && !cut.contains("`task-49`"),
            "{cut}"
        );
        assert!(cut.chars().count() <= all.chars().count() - 200, "{cut}");
    }

    fn plan_of(tasks: Vec<serde_json::Value>) -> SavedPlan {
        let n = tasks.len();
        serde_json::from_value(serde_json::json!({
            "format_version": "1", "tool_version": "0", "created_at": "now", "dir": "tasks",
            "state_path": "state/taskform.json",
            "target": {"endpoint_host": null, "project_id": "p", "workspace": "w"},
            "state": {"lineage": "l", "serial": 1},
            "manifests": {"digest": "d", "files": {}},
            "summary": {"create": 0, "replace": 0, "update": n, "delete": 0, "unchanged": 0,
                        "orphan": 0, "in_doubt": 0},
            "tasks": tasks}))
        .unwrap()
    }

    fn update(name: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "action": "update", "hash": "h", "task_id": "T",
            "file": format!("{name}.yaml"), "body": {"name": name, "max_time_out": 20},
            "previous_body": {"name": name, "max_time_out": 10}})
    }

    #[test]
    fn a_plan_that_fits_has_a_table_and_a_section_per_task() {
        let md = plan_markdown(&plan_of(vec![update("a"), update("b")]), "F");
        assert!(
            md.contains("| ✏️ | `a` | update | `a.yaml` | `T` |"),
            "{md}"
        );
        assert!(md.contains("#### ✏️ `b` · update\n\nTask `T` is changed in place.\n\n```diff\n~ max_time_out: 10 → 20\n```\n"), "{md}");
        assert!(!md.contains("The full plan"), "{md}");
    }

    #[test]
    fn only_thousands_of_names_are_cut_and_the_note_says_so() {
        let tasks = (0..6000)
            .map(|i| update(&format!("a-rather-long-collection-task-name-{i:04}")))
            .collect();
        let md = plan_markdown(&plan_of(tasks), "`plan.json`");
        assert!(md.chars().count() <= MARKDOWN_BUDGET);
        assert!(md.contains("**update** (6000): `a-rather-long-collection-task-name-0000`, "));
        assert!(md.contains(" more\n"), "{md}");
        assert!(
            md.contains("The details of 6000 of 6000 tasks were cut"),
            "{md}"
        );
        assert!(
            md.contains("so were the names past those listed above). The full plan: `plan.json`.")
        );
    }

    #[test]
    fn the_full_plan_is_named() {
        assert_eq!(
            full_plan_hint(
                Some(Path::new("plan.json")),
                Some("the artifact `x`"),
                "tasks"
            ),
            "`plan.json` (`taskform show plan.json`); the artifact `x`"
        );
        assert_eq!(
            full_plan_hint(None, None, "tasks"),
            "run `taskform plan tasks`"
        );
    }
}
