//! Plans and apply results as text for a person on a terminal or in a CI log.

//!
//! Every name, file, task ID, note, path and value is untrusted (manifests, the state
//! and the server write them) and goes through [`escape`]: a task is one line,
//! whatever its name holds, with or without colour.

use super::{ApplySummary, ChangeKind, detail, escape, field_changes, outcome_text, succeeded};
use crate::plan::Action;
use crate::plan::document::{Entry, SavedPlan};
use crate::reconcile::applier::TaskResult;
use crate::render::style::Style;
use std::fmt::Write;

/// Every environment's plan (or why it could not be planned), one after the other,
/// and a line per environment at the end.
pub fn environments_text(
    plans: &[(String, Result<SavedPlan, String>)],
    style: Style,
    show_unchanged: bool,
) -> String {
    let mut out = String::new();
    for (name, plan) in plans {
        let _ = writeln!(
            out,
            "{}\n",
            style.bold(&format!("== Environment {} ==", escape(name)))
        );
        match plan {
            Ok(plan) => out.push_str(&plan_text(plan, style, show_unchanged)),
            Err(e) => {
                for line in e.lines() {
                    let _ = writeln!(out, "{}", style.red(&format!("error: {}", escape(line))));
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", style.bold("All environments:"));
    for (name, plan) in plans {
        let line = match plan {
            Ok(plan) => summary_line(plan),
            Err(_) => style.red("not planned: see its error above"),
        };
        let _ = writeln!(out, "  {}: {line}", escape(name));
    }
    out
}

/// The plan for a person: one line per task that changes (or is orphaned, superseded,
/// in doubt, a duplicate, or has a note) sorted by name, field diffs for replaces and
/// updates, `N other tasks unchanged` (never "No changes", which says that a plan
/// changes nothing), and a summary line. `show_unchanged`
/// lists every unchanged task too.
pub fn plan_text(plan: &SavedPlan, style: Style, show_unchanged: bool) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut out = format!(
        "{}\n\n",
        style.dim(&format!("Target: {}", super::target_line(plan)))
    );
    let shown: Vec<&Entry> = plan
        .tasks
        .iter()
        .filter(|t| show_unchanged || t.action != Action::Unchanged || t.note.is_some())
        .collect();
    let hidden = plan.tasks.len() - shown.len();
    let names: Vec<_> = shown.iter().map(|t| escape(&t.name)).collect();
    // Columns by display width: a CJK character takes two.
    let width = names.iter().map(|n| n.width()).max().unwrap_or(0).min(48);
    for (t, name) in shown.into_iter().zip(&names) {
        let (mark, label) = match t.action {
            Action::Create => (style.green("+"), style.green("create   ")),
            Action::Replace => (style.yellow("~"), style.yellow("replace  ")),
            Action::Unchanged => (" ".to_string(), style.dim("unchanged")),
            Action::Update => (style.yellow("~"), style.yellow("update   ")),
            Action::Orphan => (style.magenta("-"), style.magenta("orphan   ")),
            Action::InDoubt => (style.red("?"), style.red("in doubt ")),
            Action::Delete => (style.red("-"), style.red("delete   ")),
            Action::Superseded => (style.magenta("-"), style.magenta("superseded")),
            Action::Duplicate => (style.red("!"), style.red("duplicate")),
        };
        let name = format!("{name}{}", " ".repeat(width.saturating_sub(name.width())));
        let name = if t.action == Action::Unchanged {
            style.dim(&name)
        } else {
            style.bold(&name)
        };
        let _ = write!(out, "  {mark} {name}  {label}");
        if let Some(f) = &t.file {
            let _ = write!(out, "  {}", style.dim(&escape(f)));
        }
        if let Some(id) = &t.task_id {
            let _ = write!(out, "  {}", style.dim(&format!("task {}", escape(id))));
        }
        out.push('\n');
        let note = |out: &mut String, text: &str| {
            let _ = writeln!(out, "        {}", style.dim(&escape(text)));
        };
        match t.action {
            Action::Replace | Action::Update => {
                if let Some(text) = &t.note {
                    note(&mut out, text);
                }
                changed_fields(t, style, &mut out);
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
            Action::Superseded => {
                if let Some(text) = &t.note {
                    note(&mut out, text);
                }
            }
            Action::Delete => {
                let text = t
                    .note
                    .as_deref()
                    .unwrap_or("no manifest declares it any more");
                let _ = writeln!(
                    out,
                    "        {}",
                    style.red(&format!(
                        "{}; the remote task will be deleted",
                        escape(text)
                    ))
                );
            }
            _ => {
                if let Some(text) = &t.note {
                    note(&mut out, text);
                }
            }
        }
    }
    if hidden > 0 && plan.has_changes() {
        let _ = writeln!(
            out,
            "  {}",
            style.dim(&format!(
                "{hidden} other task{} unchanged (--show-unchanged lists them).",
                if hidden == 1 { "" } else { "s" }
            ))
        );
    }
    if !plan.tasks.is_empty() && (hidden < plan.tasks.len() || plan.has_changes()) {
        out.push('\n');
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// The field changes of a replace or update, one line each.
fn changed_fields(t: &Entry, style: Style, out: &mut String) {
    let Some(changes) = field_changes(t) else {
        let _ = writeln!(out, "        {}", style.dim("(the previously applied body is not in the state, so the changed fields cannot be shown)"));
        return;
    };
    for c in changes {
        let line = c.line("->");
        let line = match c.kind {
            ChangeKind::Added => style.green(&line),
            ChangeKind::Removed => style.red(&line),
            ChangeKind::Changed => style.yellow(&line),
        };
        let _ = writeln!(out, "        {line}");
    }
}

/// `Plan: 1 to create, 0 to replace, 3 unchanged, 0 orphaned, 0 in doubt.` (with
/// `N to update` and `N to delete` when there are any).
pub fn summary_line(plan: &SavedPlan) -> String {
    let s = plan.summary;
    let left = match plan.not_selected {
        0 => String::new(),
        n => format!(" {n} task(s) not selected (--target, --label) are left alone."),
    };
    if !plan.has_changes() {
        return format!(
            "No changes. {} task{} up to date.{left}",
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
    let mut superseded = match s.superseded {
        0 => String::new(),
        n => format!(", {n} superseded still on the server"),
    };
    if s.duplicate > 0 {
        let _ = write!(superseded, ", {} duplicate(s) on the server", s.duplicate);
    }
    format!(
        "Plan: {} to create, {} to replace, {extra}{} unchanged, {} orphaned, {} in doubt{superseded}.{left}",
        s.create, s.replace, s.unchanged, s.orphan, s.in_doubt
    )
}

/// One line per task that did not succeed: `failed: name (file): HTTP 400 DLG.0003: ...`.
pub fn apply_problems_text(results: &[TaskResult]) -> String {
    let mut out = String::new();
    for r in results.iter().filter(|r| !succeeded(r)) {
        let file = r
            .file
            .as_deref()
            .map(|f| format!(" ({})", escape(f)))
            .unwrap_or_default();
        let what = match r.action {
            Action::Update | Action::Delete => {
                format!("{} ({})", outcome_text(r.outcome), r.action.as_str())
            }
            _ => outcome_text(r.outcome).to_string(),
        };
        let _ = writeln!(
            out,
            "{what}: {}{file}: {}",
            escape(&r.name),
            escape(&detail(r))
        );
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
