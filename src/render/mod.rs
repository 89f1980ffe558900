//! Rendering plans and apply results for people (text), programs (JSON) and pull
//! requests (Markdown). Everything renders from a [`SavedPlan`], so a plan shown now
//! and a saved plan shown later look the same.

pub mod json;
pub mod markdown;
pub mod style;
pub mod text;

pub use json::{apply_json, environments_json, plan_json};
pub use markdown::full_plan_hint;
pub use markdown::{apply_markdown, environments_markdown, plan_markdown};
pub use text::{
    apply_problems_text, apply_summary_line, environments_text, plan_text, summary_line,
};

use crate::plan::Action;
use crate::plan::diff::{self, Change};
use crate::plan::document::{Entry, SavedPlan};
use crate::reconcile::applier::{TaskOutcome, TaskResult};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
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

/// What the Markdown plan may use of [`MARKDOWN_LIMIT`]: the rest is left for what a
/// pipeline adds to the comment (the CI example appends a marker line).
pub const MARKDOWN_BUDGET: usize = MARKDOWN_LIMIT - 1_024;

pub use crate::load::diagnostic::is_unsafe_char;

/// Text from manifests, the state or a server, made safe to print: every character
/// [`is_unsafe_char`] names is written visibly as `\u{1b}` (Rust's notation), so a
/// value can neither move the cursor, recolour the terminal, reorder what follows,
/// nor start a line of its own. Everything else is unchanged. Every output for a
/// person (text plan, diffs, apply results, Markdown, log lines, error messages)
/// prints untrusted text through this.
pub fn escape(s: &str) -> Cow<'_, str> {
    crate::load::diagnostic::escape_with(s, |c| format!("\\u{{{:x}}}", c as u32))
}

/// [`escape`] line by line: the newlines of `s` stay (for text made of lines on
/// purpose, such as an error with a hint), everything else unsafe is escaped.
pub fn escape_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    out
}

/// A JSON text with every unsafe character outside the C0 range written as a `\uXXXX`
/// escape. serde already escapes C0 controls inside strings; DEL, C1 controls and the
/// bidi characters it leaves raw. The document decodes to exactly the same values, but
/// its bytes are safe on a terminal. (Outside strings JSON holds only ASCII, so
/// replacing them anywhere is correct.)
pub fn json_safe(json: String) -> String {
    if !json.chars().any(|c| c > '\u{7e}' && is_unsafe_char(c)) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c > '\u{7e}' && is_unsafe_char(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The one place a value of a request body is turned into what an output shows or
/// emits: the text and Markdown diffs and the JSON plan's `changes` all take their
/// values from here. `path` is the field's dotted path (`task_config.password`); a
/// value may also be a whole mapping or list holding deeper fields (a field added or
/// removed as a whole, a list compared as one value). A sensitive value is held as its
/// fingerprint (see [`crate::load::secret`]) and shown as `(sensitive)`: a change of
/// it still shows, as a changed field, without any trace of the value.
pub fn shown<'a>(task: &Entry, path: &str, value: &'a Value) -> Cow<'a, Value> {
    let _ = (task, path);
    match crate::load::secret::holds_fingerprint(value) {
        true => Cow::Owned(redacted(value)),
        false => Cow::Borrowed(value),
    }
}

/// Where the plan applies: `endpoint H · project P · workspace W · state S`, with
/// `(not set)` for a part nothing named (an offline plan), escaped.
pub fn target_line(plan: &SavedPlan) -> String {
    fn or(v: &Option<String>) -> String {
        v.as_deref()
            .map(|s| escape(s).into_owned())
            .unwrap_or_else(|| "(not set)".into())
    }
    format!(
        "endpoint {} · project {} · workspace {} · state {}",
        or(&plan.target.endpoint_host),
        or(&plan.target.project_id),
        or(&plan.target.workspace),
        escape(&plan.state_path)
    )
}

/// `value` with every sensitive value's fingerprint shown as `(sensitive)`.
pub fn redacted(value: &Value) -> Value {
    let mut v = value.clone();
    redact(&mut v);
    v
}

/// What a sensitive value is shown as.
pub const SENSITIVE: &str = "(sensitive)";

fn redact(v: &mut Value) {
    match v {
        Value::String(s) if crate::load::secret::is_fingerprint(s) => {
            *v = Value::String(SENSITIVE.into())
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::Object(m) => m.values_mut().for_each(redact),
        _ => {}
    }
}

/// A JSON value on one line, at most 120 characters, made safe to print.
pub(crate) fn value_text(v: &Value) -> String {
    let s = v.to_string();
    let s = if s.chars().count() > 120 {
        format!("{}…", s.chars().take(117).collect::<String>())
    } else {
        s
    };
    escape(&s).into_owned()
}

pub(crate) fn parse(raw: Option<&serde_json::value::RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// What happened to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One changed field of a replace or update, with its values as [`shown`] gives them
/// (`before` is absent for an added field, `after` for a removed one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub kind: ChangeKind,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl FieldChange {
    /// `path: before → after` (`arrow` between), `+ path: after`, `- path: before`,
    /// with a sign first (`~`, `+`, `-`); escaped for printing.
    pub(crate) fn line(&self, arrow: &str) -> String {
        let v = |v: &Option<Value>| v.as_ref().map(value_text).unwrap_or_default();
        let path = escape(&self.path);
        match self.kind {
            ChangeKind::Added => format!("+ {path}: {}", v(&self.after)),
            ChangeKind::Removed => format!("- {path}: {}", v(&self.before)),
            ChangeKind::Changed => {
                format!("~ {path}: {} {arrow} {}", v(&self.before), v(&self.after))
            }
        }
    }
}

/// The field changes of a replace or update, if both bodies are known, every value
/// passed through [`shown`].
pub fn field_changes(t: &Entry) -> Option<Vec<FieldChange>> {
    if !matches!(t.action, Action::Replace | Action::Update) {
        return None;
    }
    let changes = diff::diff(
        &parse(t.previous_body.as_deref())?,
        &parse(t.body.as_deref())?,
    );
    Some(
        changes
            .into_iter()
            .map(|c| match c {
                Change::Added { path, new } => FieldChange {
                    after: Some(shown(t, &path, &new).into_owned()),
                    before: None,
                    kind: ChangeKind::Added,
                    path,
                },
                Change::Removed { path, old } => FieldChange {
                    before: Some(shown(t, &path, &old).into_owned()),
                    after: None,
                    kind: ChangeKind::Removed,
                    path,
                },
                // Sensitive on either side: redacted on both (a value that was, or
                // becomes, a secret is not shown on the other side either).
                Change::Changed { path, old, new }
                    if crate::load::secret::holds_fingerprint(&old)
                        || crate::load::secret::holds_fingerprint(&new) =>
                {
                    FieldChange {
                        before: Some(Value::String(SENSITIVE.into())),
                        after: Some(Value::String(SENSITIVE.into())),
                        kind: ChangeKind::Changed,
                        path,
                    }
                }
                Change::Changed { path, old, new } => FieldChange {
                    before: Some(shown(t, &path, &old).into_owned()),
                    after: Some(shown(t, &path, &new).into_owned()),
                    kind: ChangeKind::Changed,
                    path,
                },
            })
            .collect(),
    )
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
                // An update that a create-only gateway turned into a replace counts as one.
                TaskOutcome::Created if matches!(r.action, Action::Replace | Action::Update) => {
                    s.replaced += 1
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escape_writes_controls_and_bidi_visibly_and_leaves_the_rest() {
        assert!(matches!(escape("dli-sales é 名前 ✏️"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}[2J\u{7}\nb\r\t\u{7f}\u{85}\u{9b}\u{202e}\u{2066}\u{2069}\u{2028}c"),
            r"a\u{1b}[2J\u{7}\u{a}b\u{d}\u{9}\u{7f}\u{85}\u{9b}\u{202e}\u{2066}\u{2069}\u{2028}c"
        );
        assert_eq!(escape_lines("one\u{1b}\ntwo\u{7}"), "one\\u{1b}\ntwo\\u{7}");
    }

    #[test]
    fn json_safe_keeps_the_document_exact() {
        let v = json!({"name": "a\u{1b}\u{7f}\u{9b}\u{202e}\u{2067} é\n"});
        let text = json_safe(serde_json::to_string_pretty(&v).unwrap());
        assert!(
            !text.chars().any(|c| c != '\n' && is_unsafe_char(c)),
            "{text}"
        );
        assert!(text.contains(r"\u007f\u009b\u202e\u2067 é"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    fn entry(action: &str, previous: Value, body: Value) -> Entry {
        serde_json::from_value(json!({"name": "a", "action": action, "hash": null,
            "task_id": "T", "file": "a.yaml", "body": body, "previous_body": previous}))
        .unwrap()
    }

    #[test]
    fn field_changes_of_updates_and_replaces_only() {
        let old = json!({"a": 1, "b": {"c": "x"}, "gone": true});
        let new = json!({"a": 2, "b": {"c": "x", "d": null}});
        let changes = field_changes(&entry("update", old.clone(), new.clone())).unwrap();
        assert_eq!(
            changes,
            vec![
                FieldChange {
                    path: "a".into(),
                    kind: ChangeKind::Changed,
                    before: Some(json!(1)),
                    after: Some(json!(2))
                },
                FieldChange {
                    path: "b.d".into(),
                    kind: ChangeKind::Added,
                    before: None,
                    after: Some(Value::Null)
                },
                FieldChange {
                    path: "gone".into(),
                    kind: ChangeKind::Removed,
                    before: Some(json!(true)),
                    after: None
                },
            ]
        );
        assert_eq!(changes[0].line("→"), "~ a: 1 → 2");
        assert_eq!(changes[1].line("→"), "+ b.d: null");
        assert_eq!(changes[2].line("→"), "- gone: true");
        assert!(field_changes(&entry("replace", old.clone(), new.clone())).is_some());
        assert!(field_changes(&entry("create", old, new)).is_none());
    }

    #[test]
    fn a_field_sensitive_on_either_side_is_redacted_on_both() {
        let fp = crate::load::secret::Key::default().fingerprint("p", &json!("hunter2"));
        let plain = json!({"p": "hunter2"});
        let secret = json!({"p": fp});
        for (old, new) in [(&plain, &secret), (&secret, &plain)] {
            let c = field_changes(&entry("update", old.clone(), new.clone())).unwrap();
            assert_eq!(c[0].before, Some(json!(SENSITIVE)));
            assert_eq!(c[0].after, Some(json!(SENSITIVE)));
        }
    }

    #[test]
    fn change_lines_escape_keys_and_values() {
        let c = FieldChange {
            path: "task_config.k\ney".into(),
            kind: ChangeKind::Changed,
            before: Some(json!("\u{202e}")),
            after: Some(json!("x".repeat(200))),
        };
        let line = c.line("->");
        assert!(
            line.starts_with(r#"~ task_config.k\u{a}ey: "\u{202e}" -> "xxx"#),
            "{line}"
        );
        assert!(line.ends_with('…'));
        assert!(!line.chars().any(is_unsafe_char));
    }
}
