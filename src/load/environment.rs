//! Environments: one config repo, many targets (dev, staging, prod).
//!
//! `taskform.yaml` at the root of the repo declares them:
//!
//! ```yaml
//! variables: {queue: default}          # shared; ${var:queue} in manifests and settings
//! defaults: {dir_id: "0"}              # shared
//! environments:
//!   prod:
//!     region: cn-north-4               # the target, as at the top level
//!     project_id: 0833a573fe80d5401f6dc010a775569a
//!     workspace: a1b2c3
//!     state: postgres://taskform@db:5432/taskform?sslmode=require
//!     state_name: prod
//!     credentials:                     # where this environment's credentials are
//!       TASKFORM_AUTH_TOKEN: PROD_TASKFORM_AUTH_TOKEN
//!       PGPASSWORD: PROD_PGPASSWORD
//!     variables: {queue: batch, timeout: 60}
//!     defaults: {user_id: 0833...}     # merged over the shared defaults
//!     overlay: overlays/prod           # the default
//! ```
//!
//! The manifests below the repo are shared by every environment, except the overlay
//! folders (`overlays/` and any `overlay:`), which belong to one environment each. An
//! overlay folder holds the tasks of that environment only, and documents that change
//! the shared ones:
//!
//! ```yaml
//! patch: dli-orders-nightly           # a shared task's name: merged over it
//! schedule_config: {cron_expression: "0 0 3 * * ?"}
//! ---
//! remove: hive-lake-hourly            # a shared task left out here (or a list)
//! ```
//!
//! A patch is a JSON merge patch (RFC 7386): mappings merge, `null` removes a field,
//! anything else (lists included) replaces. Problems in a patched value point at the
//! patch; a patch or removal naming no shared task is an error at its line.
//!
//! The [`Scope`] is the one lookup every `${...}` goes through: `${var:NAME}` from
//! the variables (the environment's over the shared ones), and, when an environment
//! names any of its credentials, every standard credential variable from the variable
//! it names, or unset (never from the standard ones, so that dev's token never
//! applies prod). A variable any environment names as holding a credential is never
//! interpolated into a task.

use crate::load::diagnostic::Diagnostic;
use crate::load::interpolate::VAR_PREFIX;
use crate::load::yaml::{self, Part, Seg};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The overlay folder of an environment when `overlay:` does not name one.
pub const OVERLAYS: &str = "overlays";

/// The credential variables an environment may take from variables of its own: the
/// service's, then the PostgreSQL state's password.
pub const SERVICE_CREDENTIALS: &[&str] = &[
    "TASKFORM_AUTH_TOKEN",
    "HW_ACCESS_KEY",
    "HW_SECRET_KEY",
    "HW_SECURITY_TOKEN",
    "HW_USER_NAME",
    "HW_PASSWORD",
    "HW_DOMAIN_NAME",
];
pub const STATE_CREDENTIALS: &[&str] = &["PGPASSWORD"];

/// What `${...}` may read: variables, and the credentials of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `${var:NAME}`: the environment's variables over the shared ones.
    pub variables: BTreeMap<String, String>,
    /// Standard credential variable -> the variable holding it for this environment.
    /// Names of variables only, never values.
    pub credentials: BTreeMap<String, String>,
    /// Every variable any environment names as holding a credential: like the
    /// standard ones, never interpolated into a task (a pull request must not be able
    /// to print prod's token into its plan, whichever environment it plans).
    pub credential_sources: std::collections::BTreeSet<String>,
}

/// The key under which [`Scope::lookup`] says whether NAME holds a credential
/// (answers `Some` if so): asked by interpolation before it reads NAME.
pub const CREDENTIAL_PREFIX: &str = "credential:";

pub use crate::location::SOURCE_PREFIX;

impl Scope {
    /// The lookup `${...}` and the credentials go through: this scope over `outer`
    /// (the process environment).
    pub fn over<'a>(
        &'a self,
        outer: &'a (dyn Fn(&str) -> Option<String> + Sync),
    ) -> impl Fn(&str) -> Option<String> + Sync + 'a {
        move |k| self.lookup(k, outer)
    }

    /// Looks `key` up: `var:NAME` in the variables; a credential variable through the
    /// environment's mapping (a service credential it does not map is unset once it
    /// maps any); anything else in `outer` (the process environment).
    pub fn lookup(&self, key: &str, outer: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        if let Some(name) = key.strip_prefix(VAR_PREFIX) {
            return self.variables.get(name).cloned();
        }
        if let Some(name) = key.strip_prefix(CREDENTIAL_PREFIX) {
            return self.credential_sources.contains(name).then(String::new);
        }
        if let Some(name) = key.strip_prefix(SOURCE_PREFIX) {
            let standard = SERVICE_CREDENTIALS.contains(&name) || STATE_CREDENTIALS.contains(&name);
            return match self.credentials.get(name) {
                Some(source) => Some(source.clone()),
                None if standard && !self.credentials.is_empty() => Some(String::new()),
                None => None,
            };
        }
        if let Some(source) = self.credentials.get(key) {
            return outer(source);
        }
        if self.credential_sources.contains(key) {
            return None;
        }
        // An environment that names any credential names them all: the others are
        // unset, never the shared variables (which may hold another environment's).
        let standard = SERVICE_CREDENTIALS.contains(&key) || STATE_CREDENTIALS.contains(&key);
        if !self.credentials.is_empty() && standard {
            return None;
        }
        outer(key)
    }
}

/// One shared task changed by an overlay.
#[derive(Debug)]
pub struct Patch {
    /// The patch document without its `patch:` key, as written (not interpolated).
    pub body: Value,
    pub src: Arc<str>,
    pub display: String,
    pub doc: usize,
    pub used: AtomicBool,
}

/// One shared task left out by an overlay.
#[derive(Debug)]
pub struct Removal {
    pub display: String,
    pub line: usize,
    pub col: usize,
    pub used: AtomicBool,
}

/// Which shared tasks a selector patch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `patch: "*"`: every shared task.
    All,
    /// `patch: {names: GLOB or [GLOB...], labels: {KEY: VALUE}}`: tasks whose name
    /// matches one of the globs (any name when none is given) and that carry every
    /// label (`taskform: labels:`).
    Match {
        names: Vec<String>,
        labels: BTreeMap<String, String>,
    },
}

impl Selector {
    /// Whether the shared task `name` (whose raw body is `body`) is selected.
    pub fn selects(&self, name: &str, body: &Value) -> bool {
        match self {
            Selector::All => true,
            Selector::Match { names, labels } => {
                let named = names.is_empty() || names.iter().any(|g| crate::glob::matches(g, name));
                let labelled = labels.iter().all(|(k, v)| {
                    body.get("taskform")
                        .and_then(|t| t.get("labels"))
                        .and_then(|l| l.get(k))
                        .and_then(Value::as_str)
                        == Some(v.as_str())
                });
                named && labelled
            }
        }
    }

    /// As written, for messages (`"*"`, `names: mysql-*, labels: team=crm`).
    pub fn shown(&self) -> String {
        match self {
            Selector::All => "\"*\"".into(),
            Selector::Match { names, labels } => {
                let mut parts = Vec::new();
                if !names.is_empty() {
                    parts.push(format!("names: {}", names.join(", ")));
                }
                if !labels.is_empty() {
                    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    parts.push(format!("labels: {}", l.join(", ")));
                }
                parts.join("; ")
            }
        }
    }
}

/// An environment's changes to the shared tasks.
#[derive(Debug, Default)]
pub struct Overlay {
    pub patches: BTreeMap<String, Patch>,
    pub removals: BTreeMap<String, Removal>,
    /// Patches of every shared task a selector selects, in file order (applied before
    /// the patches by name).
    pub selected: Vec<(Selector, Patch)>,
}

/// Whether a document of an overlay changes a shared task (rather than being a task).
pub fn is_change(doc: &Value) -> bool {
    doc.get("patch").is_some() || doc.get("remove").is_some()
}

impl Overlay {
    /// Collects the `patch:` and `remove:` documents of one overlay file.
    pub fn collect(
        &mut self,
        src: &str,
        display: &str,
        docs: &[yaml::Document],
        diags: &mut Vec<Diagnostic>,
    ) {
        let shared: Arc<str> = Arc::from(src);
        for doc in docs.iter().filter(|d| is_change(&d.value)) {
            let Value::Object(map) = &doc.value else {
                continue;
            };
            let at = |path: &[Seg], part: Part| {
                yaml::locate(src, doc.index, path, part).unwrap_or((0, 0))
            };
            if let Some(target) = map.get("remove") {
                let names: Vec<(Option<&str>, Vec<Seg>)> = match target {
                    Value::String(s) => vec![(Some(s.as_str()), vec![Seg::Key("remove".into())])],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (v.as_str(), vec![Seg::Key("remove".into()), Seg::Index(i)]))
                        .collect(),
                    _ => vec![(None, vec![Seg::Key("remove".into())])],
                };
                if map.len() > 1 {
                    let (l, c) = at(&[], Part::Value);
                    diags.push(
                        Diagnostic::new(display, l, c, "a `remove:` document holds nothing else")
                            .with_hint("remove: [task-a, task-b]"),
                    );
                }
                for (name, path) in names {
                    let (l, c) = at(&path, Part::Value);
                    match name {
                        Some(n) if !n.is_empty() => {
                            if self.removals.contains_key(n) || self.patches.contains_key(n) {
                                diags.push(Diagnostic::new(
                                    display,
                                    l,
                                    c,
                                    format!("the overlay changes `{n}` twice"),
                                ));
                            }
                            self.removals.insert(
                                n.to_string(),
                                Removal {
                                    display: display.to_string(),
                                    line: l,
                                    col: c,
                                    used: AtomicBool::new(false),
                                },
                            );
                        }
                        _ => diags.push(
                            Diagnostic::new(
                                display,
                                l,
                                c,
                                "`remove` takes a task name or a list of them",
                            )
                            .with_hint("remove: hive-lake-hourly"),
                        ),
                    }
                }
                continue;
            }
            let selector = match map.get("patch") {
                Some(Value::String(s)) if s == "*" => Some(Selector::All),
                Some(Value::String(_)) => None,
                Some(Value::Object(sel)) => match selector_of(sel) {
                    Ok(s) => Some(s),
                    Err(why) => {
                        let (l, c) = at(&[Seg::Key("patch".into())], Part::Value);
                        diags.push(
                            Diagnostic::new(display, l, c, why).with_hint(
                                "patch: {names: \"mysql-*\"}, patch: {labels: {team: crm}}, or patch: \"*\"",
                            ),
                        );
                        continue;
                    }
                },
                _ => {
                    let (l, c) = at(&[Seg::Key("patch".into())], Part::Value);
                    diags.push(
                        Diagnostic::new(
                            display,
                            l,
                            c,
                            "`patch` takes the name of a shared task, or a selector",
                        )
                        .with_hint("patch: dli-orders-nightly, patch: {names: \"mysql-*\"}, patch: {labels: {team: crm}}, or patch: \"*\""),
                    );
                    continue;
                }
            };
            if let Some(selector) = selector {
                let mut body = map.clone();
                body.remove("patch");
                if body.contains_key("name") {
                    let (l, c) = at(&[Seg::Key("name".into())], Part::Key);
                    diags.push(Diagnostic::new(
                        display,
                        l,
                        c,
                        "a patch of several tasks cannot set `name`",
                    ));
                    continue;
                }
                self.selected.push((
                    selector,
                    Patch {
                        body: Value::Object(body),
                        src: shared.clone(),
                        display: display.to_string(),
                        doc: doc.index,
                        used: AtomicBool::new(false),
                    },
                ));
                continue;
            }
            let Some(Value::String(name)) = map.get("patch") else {
                continue;
            };
            let mut body = map.clone();
            body.remove("patch");
            if let Some(other) = body.get("name").and_then(Value::as_str)
                && other != name
            {
                let (l, c) = at(&[Seg::Key("name".into())], Part::Value);
                diags.push(
                    Diagnostic::new(
                        display,
                        l,
                        c,
                        format!("a patch cannot rename the task `{name}`"),
                    )
                    .with_hint("rename it in the shared manifest (and add a `moved:` entry)"),
                );
                continue;
            }
            if self.patches.contains_key(name) || self.removals.contains_key(name) {
                let (l, c) = at(&[Seg::Key("patch".into())], Part::Value);
                diags.push(Diagnostic::new(
                    display,
                    l,
                    c,
                    format!("the overlay changes `{name}` twice"),
                ));
                continue;
            }
            self.patches.insert(
                name.clone(),
                Patch {
                    body: Value::Object(body),
                    src: shared.clone(),
                    display: display.to_string(),
                    doc: doc.index,
                    used: AtomicBool::new(false),
                },
            );
        }
    }

    /// The patches of a shared task (`body` as written), in the order they apply:
    /// every selector patch that selects it, in file order, then its own; each marked
    /// used.
    pub fn patches_for(&self, name: &str, body: &Value) -> Vec<&Patch> {
        let mut out: Vec<&Patch> = self
            .selected
            .iter()
            .filter(|(s, _)| s.selects(name, body))
            .map(|(_, p)| p)
            .collect();
        out.extend(self.patches.get(name));
        for p in &out {
            p.used.store(true, Ordering::SeqCst);
        }
        out
    }

    /// Selector patches that selected no shared task: warnings naming them (a
    /// selector may match nothing in one environment on purpose).
    pub fn unused_selectors(&self) -> Vec<Diagnostic> {
        self.selected
            .iter()
            .filter(|(_, p)| !p.used.load(Ordering::SeqCst))
            .map(|(s, p)| {
                let (l, c) = yaml::locate(&p.src, p.doc, &[Seg::Key("patch".into())], Part::Value)
                    .unwrap_or((0, 0));
                Diagnostic::new(
                    &p.display,
                    l,
                    c,
                    format!("the patch of `{}` selects no shared task", s.shown()),
                )
            })
            .collect()
    }

    /// Whether a shared task is left out (marked used).
    pub fn removes(&self, name: &str) -> bool {
        match self.removals.get(name) {
            Some(r) => {
                r.used.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// A patch or removal that named no shared task: an error at its line.
    pub fn unused(&self, shared_names: &[String], diags: &mut Vec<Diagnostic>) {
        let names: Vec<&str> = shared_names.iter().map(String::as_str).collect();
        let hint = |n: &str| {
            crate::load::schema::suggest(n, &names)
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "patch and remove name a task of the shared manifests".into())
        };
        for (name, p) in &self.patches {
            if !p.used.load(Ordering::SeqCst) {
                let (l, c) = yaml::locate(&p.src, p.doc, &[Seg::Key("patch".into())], Part::Value)
                    .unwrap_or((0, 0));
                diags.push(
                    Diagnostic::new(
                        &p.display,
                        l,
                        c,
                        format!("the patch names `{name}`, but no shared task has that name"),
                    )
                    .with_hint(hint(name)),
                );
            }
        }
        for (name, r) in &self.removals {
            if !r.used.load(Ordering::SeqCst) {
                diags.push(
                    Diagnostic::new(
                        &r.display,
                        r.line,
                        r.col,
                        format!("`remove` names `{name}`, but no shared task has that name"),
                    )
                    .with_hint(hint(name)),
                );
            }
        }
    }
}

/// A `patch:` mapping as a selector: `names` (a glob or a list of them) and/or
/// `labels` (a mapping of strings).
fn selector_of(sel: &serde_json::Map<String, Value>) -> Result<Selector, String> {
    let mut names = Vec::new();
    let mut labels = BTreeMap::new();
    for (k, v) in sel {
        match (k.as_str(), v) {
            ("names", Value::String(g)) if !g.is_empty() => names.push(g.clone()),
            ("names", Value::Array(items)) if !items.is_empty() => {
                for i in items {
                    match i.as_str().filter(|g| !g.is_empty()) {
                        Some(g) => names.push(g.to_string()),
                        None => return Err("`names` takes name globs (strings)".into()),
                    }
                }
            }
            ("names", _) => return Err("`names` takes a name glob or a list of them".into()),
            ("labels", Value::Object(m)) if !m.is_empty() => {
                for (lk, lv) in m {
                    match lv.as_str() {
                        Some(v) => {
                            labels.insert(lk.clone(), v.to_string());
                        }
                        None => return Err(format!("the label `{lk}` takes a string")),
                    }
                }
            }
            ("labels", _) => return Err("`labels` takes a mapping of label values".into()),
            (other, _) => {
                return Err(format!(
                    "a patch selector takes `names` and `labels`, not `{other}`"
                ));
            }
        }
    }
    if names.is_empty() && labels.is_empty() {
        return Err("a patch selector needs `names` or `labels`".into());
    }
    Ok(Selector::Match { names, labels })
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": 1, "s": {"x": 1, "y": 2}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": null, "s": {"y": 3, "z": 4}, "l": [9], "n": "new"}),
        );
        assert_eq!(
            t,
            json!({"s": {"x": 1, "y": 3, "z": 4}, "l": [9], "n": "new"})
        );
    }

    #[test]
    fn credentials_come_only_from_the_variables_an_environment_names() {
        let outer = |k: &str| match k {
            "TASKFORM_AUTH_TOKEN" => Some("global".to_string()),
            "PROD_TOKEN" => Some("prod".to_string()),
            "HW_ACCESS_KEY" => Some("global-ak".to_string()),
            "PGPASSWORD" => Some("pg".to_string()),
            "HOME" => Some("/root".to_string()),
            _ => None,
        };
        let mut scope = Scope::default();
        scope.variables.insert("queue".into(), "batch".into());
        assert_eq!(
            scope.lookup("TASKFORM_AUTH_TOKEN", &outer).as_deref(),
            Some("global")
        );
        scope
            .credentials
            .insert("TASKFORM_AUTH_TOKEN".into(), "PROD_TOKEN".into());
        assert_eq!(
            scope.lookup("TASKFORM_AUTH_TOKEN", &outer).as_deref(),
            Some("prod")
        );
        assert_eq!(
            scope.lookup("HW_ACCESS_KEY", &outer),
            None,
            "not the global one"
        );
        assert_eq!(
            scope.lookup("PGPASSWORD", &outer),
            None,
            "nor the global password"
        );
        assert_eq!(scope.lookup("var:queue", &outer).as_deref(), Some("batch"));
        assert_eq!(
            scope.lookup("source:PGPASSWORD", &outer).as_deref(),
            Some("")
        );
        assert_eq!(
            scope
                .lookup("source:TASKFORM_AUTH_TOKEN", &outer)
                .as_deref(),
            Some("PROD_TOKEN")
        );
        assert_eq!(Scope::default().lookup("source:PGPASSWORD", &outer), None);
        assert_eq!(scope.lookup("var:nope", &outer), None);
        assert_eq!(scope.lookup("HOME", &outer).as_deref(), Some("/root"));
        // Another environment's credential variable is never read by name.
        scope.credential_sources.insert("PROD_TOKEN".into());
        assert_eq!(scope.lookup("PROD_TOKEN", &outer), None);
        assert!(scope.lookup("credential:PROD_TOKEN", &outer).is_some());
        assert_eq!(
            scope.lookup("TASKFORM_AUTH_TOKEN", &outer).as_deref(),
            Some("prod")
        );
    }
}
