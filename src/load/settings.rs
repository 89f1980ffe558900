//! The optional settings file `DIR/taskform.yaml`.
//!
//! ```yaml
//! project_id: 0833a573fe80d5401f6dc010a775569a
//! workspace: 1a2b3c4d
//! endpoint: https://dayu.cn-north-4.myhuaweicloud.com   # or: region: cn-north-4
//! state: ../state/taskform.json                         # relative to this file
//! # or a shared state: state: postgres://ci@db.internal:5432/taskform?sslmode=require
//! state_name: prod                                      # PostgreSQL states: which one
//! state_schema: taskform                                # PostgreSQL states: the schema
//! known_data_source_types: [MY_SOURCE]                # no warning for these values
//! require_user_id: false                              # default true; see below
//! defaults:                                             # deep-merged under every manifest
//!   user_id: 0833a573fe80d5401f6dc010a775569a
//!   dir_id: "0"
//! ```
//!
//! Flags and environment variables override every setting (see `target`).
//!
//! `require_user_id` (default `true`): the create page and Huawei's SDK make `user_id`
//! mandatory, so a manifest without it is an error; yet the Terraform provider never
//! sends it and its acceptance tests pass, so the service accepts a body without it
//! (docs/API-EVIDENCE.md). `require_user_id: false` lets manifests leave it out (one
//! that is set must still be a string).
//!
//! Only `taskform.yaml` is a settings file: a `taskform.yml` is refused (with a hint to
//! rename it) rather than read as a task, and a folder below DIR holding its own
//! `taskform.yaml` is a separate target that the loader skips (see `manifest`).

use crate::load::diagnostic::Diagnostic;
use crate::load::interpolate;
use crate::load::schema::suggest;
use crate::load::yaml::{self, Part, Seg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// The settings file's name inside DIR.
pub const FILE_NAME: &str = "taskform.yaml";

/// A near miss of [`FILE_NAME`] that taskform refuses rather than reading it as a task.
pub const WRONG_FILE_NAME: &str = "taskform.yml";

const KEYS: &[&str] = &[
    "project_id",
    "workspace",
    "endpoint",
    "region",
    "state",
    "state_name",
    "state_schema",
    "defaults",
    "on_change",
    "known_data_source_types",
    "require_user_id",
    "moved",
];

/// A rename declared in `moved:` (like Terraform's `moved` blocks): the task recorded
/// as `from` is the one the manifest `to` declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub from: String,
    pub to: String,
}

/// What apply does with a task whose content changed (`on_change` in taskform.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// Create a new task and record the previous one as superseded (works with the
    /// create endpoint alone; the previous task stays on the server until `--prune`).
    Recreate,
    /// Change the task in place with PUT, keeping its ID: the default, as the service
    /// offers update. A gateway that exposes create alone answers the PUT 404, and
    /// apply then replaces the task instead, with a warning.
    #[default]
    Update,
}

impl OnChange {
    pub fn parse(s: &str) -> Option<OnChange> {
        match s {
            "recreate" => Some(OnChange::Recreate),
            "update" => Some(OnChange::Update),
            _ => None,
        }
    }
}

/// Parsed settings; every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub project_id: Option<String>,
    pub workspace: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The state: a file path, already resolved against the settings file's folder,
    /// or a PostgreSQL URL (its name and schema are applied when the target is
    /// resolved).
    pub state: Option<crate::location::StateLocation>,
    /// `state_name:` (PostgreSQL states).
    pub state_name: Option<String>,
    /// `state_schema:` (PostgreSQL states).
    pub state_schema: Option<String>,
    /// Partial task body merged under every manifest (already interpolated).
    pub defaults: Map<String, Value>,
    /// Values of `defaults` read from `${secret:...}`, by path in the task body.
    pub sensitive_defaults: Vec<interpolate::Sensitive>,
    /// The key of sensitive values' fingerprints (`TASKFORM_SECRET_KEY`).
    pub secret_key: crate::load::secret::Key,
    /// What apply does with a changed task (`on_change: recreate | update`).
    pub on_change: Option<OnChange>,
    /// Renames declared in `moved:`, in order.
    pub moved: Vec<Moved>,
    /// `data_source_type` values to accept without a warning, besides those seen in
    /// Huawei's documentation (`schema::KNOWN_DATA_SOURCE_TYPES`).
    pub known_data_source_types: Vec<String>,
    /// `require_user_id` in taskform.yaml: `Some(false)` lets manifests leave out
    /// `user_id` (see [`Settings::requires_user_id`]).
    pub require_user_id: Option<bool>,
    /// The settings file, when one was read (for messages).
    pub file: Option<String>,
    /// The settings file's text, for locating problems in `defaults`.
    pub source: Option<String>,
    /// `sha256:<hex>` of the settings file's bytes.
    pub digest: Option<String>,
}

impl Settings {
    /// Whether every manifest must set `user_id` (the default, as the create page
    /// says), unless `require_user_id: false`.
    pub fn requires_user_id(&self) -> bool {
        self.require_user_id.unwrap_or(true)
    }

    /// The rules manifests are validated by.
    pub fn rules(&self) -> crate::load::schema::Rules {
        crate::load::schema::Rules {
            require_user_id: self.requires_user_id(),
        }
    }
}

/// Reads `DIR/taskform.yaml` if it exists.
pub fn load(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<Diagnostic>> {
    let mut settings = read(dir, env)?;
    settings.secret_key = crate::load::secret::Key::from_env(env);
    Ok(settings)
}

fn read(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<Diagnostic>> {
    let path = dir.join(FILE_NAME);
    let display = path.display().to_string();
    let src = match std::fs::read(&path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                return Err(vec![Diagnostic::new(
                    &display,
                    0,
                    0,
                    "settings file is not valid UTF-8",
                )]);
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => {
            return Err(vec![Diagnostic::new(
                &display,
                0,
                0,
                format!("cannot read settings file: {e}"),
            )]);
        }
    };
    let mut settings = parse(&src, &display, dir, env)?;
    settings.digest = Some(crate::hash::sha256_tagged(src.as_bytes()));
    Ok(settings)
}

/// Parses settings text; `file` names it in messages and `dir` anchors relative paths.
pub fn parse(
    src: &str,
    file: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<Diagnostic>> {
    let value = yaml::parse_single(src)
        .map_err(|e| vec![Diagnostic::new(file, e.line, e.col, e.message)])?;
    let mut settings = Settings {
        file: Some(file.to_string()),
        source: Some(src.to_string()),
        ..Settings::default()
    };
    let map = match value {
        Value::Null => return Ok(settings),
        Value::Object(map) => map,
        _ => {
            return Err(vec![Diagnostic::new(
                file,
                1,
                1,
                "the settings file must be a mapping of settings",
            )]);
        }
    };
    let at = |path: &[Seg], part: Part| yaml::locate(src, 0, path, part).unwrap_or((0, 0));
    let mut diags = Vec::new();
    for (key, value) in map {
        let path = [Seg::Key(key.clone())];
        if !KEYS.contains(&key.as_str()) {
            let (l, c) = at(&path, Part::Key);
            diags.push(
                Diagnostic::new(file, l, c, format!("unknown setting `{key}`"))
                    .with_hint_opt(suggest(&key, KEYS).map(|s| format!("did you mean `{s}`?"))),
            );
            continue;
        }
        if key == "defaults" {
            match value {
                Value::Object(mut defaults) => {
                    let mut v = Value::Object(std::mem::take(&mut defaults));
                    let found =
                        interpolate::interpolate(&mut v, env, &crate::load::schema::wants_integer);
                    settings.sensitive_defaults = found.sensitive;
                    for err in found.errors {
                        let mut p = vec![Seg::Key("defaults".into())];
                        p.extend(err.path);
                        let (l, c) = at(&p, Part::Value);
                        diags
                            .push(Diagnostic::new(file, l, c, err.message).with_hint_opt(err.hint));
                    }
                    if let Value::Object(m) = v {
                        settings.defaults = m;
                    }
                }
                Value::Null => {}
                _ => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(Diagnostic::new(
                        file,
                        l,
                        c,
                        "`defaults` must be a mapping of task fields",
                    ));
                }
            }
            continue;
        }
        if key == "moved" {
            let hint = "moved:\n  - from: old-name\n    to: new-name";
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let from = item.get("from").and_then(Value::as_str);
                        let to = item.get("to").and_then(Value::as_str);
                        let extra = item
                            .as_object()
                            .is_some_and(|m| m.keys().any(|k| k != "from" && k != "to"));
                        match (from, to, extra) {
                            (Some(f), Some(t), false)
                                if !f.is_empty() && !t.is_empty() && f != t =>
                            {
                                settings.moved.push(Moved {
                                    from: f.to_string(),
                                    to: t.to_string(),
                                })
                            }
                            _ => {
                                let (l, c) =
                                    at(&[Seg::Key("moved".into()), Seg::Index(i)], Part::Value);
                                diags.push(
                                    Diagnostic::new(
                                        file,
                                        l,
                                        c,
                                        "each `moved` entry needs `from` and `to`, two different task names, and nothing else",
                                    )
                                    .with_hint(hint),
                                );
                            }
                        }
                    }
                }
                Value::Null => {}
                _ => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(
                        Diagnostic::new(file, l, c, "`moved` must be a list of renames")
                            .with_hint(hint),
                    );
                }
            }
            continue;
        }
        if key == "known_data_source_types" {
            match value {
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    settings.known_data_source_types = items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                }
                Value::Null => {}
                _ => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(
                        Diagnostic::new(
                            file,
                            l,
                            c,
                            "`known_data_source_types` must be a list of strings",
                        )
                        .with_hint("known_data_source_types: [MY_TYPE, OTHER_TYPE]"),
                    );
                }
            }
            continue;
        }
        if key == "require_user_id" {
            match value {
                Value::Bool(b) => settings.require_user_id = Some(b),
                Value::Null => {}
                other => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(
                        Diagnostic::new(
                            file,
                            l,
                            c,
                            format!(
                                "`require_user_id` must be true or false, not {}",
                                crate::load::diagnostic::escape(&other.to_string())
                            ),
                        )
                        .with_hint(
                            "require_user_id: false lets manifests leave out user_id (the Terraform provider never sends it); the default, true, makes it mandatory as the create page does",
                        ),
                    );
                }
            }
            continue;
        }
        let text = match value {
            Value::String(s) => match interpolate::expand(&s, env) {
                Ok(s) => s,
                Err((message, hint)) => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(Diagnostic::new(file, l, c, message).with_hint_opt(hint));
                    continue;
                }
            },
            Value::Null => continue,
            other => {
                let (l, c) = at(&path, Part::Value);
                diags.push(
                    Diagnostic::new(file, l, c, format!("`{key}` must be a string"))
                        .with_hint(format!("quote the value: {key}: \"{other}\"")),
                );
                continue;
            }
        };
        match key.as_str() {
            "project_id" => settings.project_id = Some(text),
            "workspace" => settings.workspace = Some(text),
            "endpoint" => settings.endpoint = Some(text),
            "region" => settings.region = Some(text),
            "state" if crate::location::is_postgres_url(&text) => {
                match crate::location::StateLocation::parse(&text, None, None) {
                    Ok(mut l) => {
                        // A relative certificate file is relative to this file.
                        if let crate::location::StateLocation::Postgres(pg) = &mut l
                            && let Some(c) = pg.url.sslrootcert.as_mut()
                            && c != "system"
                            && Path::new(c.as_str()).is_relative()
                        {
                            *c = dir.join(c.as_str()).display().to_string();
                        }
                        settings.state = Some(l)
                    }
                    Err(e) => {
                        let (l, c) = at(&path, Part::Value);
                        diags.push(Diagnostic::new(file, l, c, e.to_string()).with_hint(
                            "write postgres://USER@HOST:PORT/DATABASE?sslmode=require, and give the password in PGPASSWORD or ~/.pgpass",
                        ));
                    }
                }
            }
            "state" => settings.state = Some(crate::location::StateLocation::File(dir.join(text))),
            "state_name" => settings.state_name = Some(text),
            "state_schema" => settings.state_schema = Some(text),
            "on_change" => match OnChange::parse(&text) {
                Some(v) => settings.on_change = Some(v),
                None => {
                    let (l, c) = at(&path, Part::Value);
                    diags.push(
                        Diagnostic::new(
                            file,
                            l,
                            c,
                            format!("`on_change` must be `recreate` or `update`, not `{text}`"),
                        )
                        .with_hint(
                            "recreate: create a new task for changed content (create-only APIs); update: change the task in place with PUT",
                        ),
                    );
                }
            },
            _ => unreachable!("key list checked above"),
        }
    }
    if diags.is_empty() {
        Ok(settings)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_every_setting() {
        let src = "project_id: p\nworkspace: w\nregion: cn-north-4\nstate: st/x.json\non_change: update\nknown_data_source_types: [KAFKA, ES]\ndefaults:\n  dir_id: \"0\"\n";
        let s = parse(src, "t/taskform.yaml", Path::new("t"), &no_env).unwrap();
        assert_eq!(s.known_data_source_types, ["KAFKA", "ES"]);
        let bad = parse(
            "known_data_source_types: [1]\n",
            "t.yaml",
            Path::new("."),
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            bad[0].to_string(),
            "t.yaml:1:26: `known_data_source_types` must be a list of strings\n  hint: known_data_source_types: [MY_TYPE, OTHER_TYPE]"
        );
        assert_eq!(s.on_change, Some(OnChange::Update));
        let bad = parse("on_change: patch\n", "t.yaml", Path::new("."), &no_env).unwrap_err();
        assert!(
            bad[0]
                .to_string()
                .starts_with("t.yaml:1:12: `on_change` must be"),
            "{}",
            bad[0]
        );
        assert_eq!(s.project_id.as_deref(), Some("p"));
        assert_eq!(
            s.state,
            Some(crate::location::StateLocation::File(PathBuf::from(
                "t/st/x.json"
            )))
        );
        assert_eq!(s.defaults.get("dir_id"), Some(&Value::String("0".into())));
    }

    #[test]
    fn require_user_id_is_a_boolean_defaulting_to_true() {
        let s = parse("project_id: p\n", "t.yaml", Path::new("."), &no_env).unwrap();
        assert!(s.requires_user_id());
        let s = parse(
            "require_user_id: false\n",
            "t.yaml",
            Path::new("."),
            &no_env,
        )
        .unwrap();
        assert!(!s.requires_user_id() && !s.rules().require_user_id);
        let s = parse("require_user_id: true\n", "t.yaml", Path::new("."), &no_env).unwrap();
        assert!(s.requires_user_id());
        let bad = parse(
            "require_user_id: \"no\"\n",
            "t.yaml",
            Path::new("."),
            &no_env,
        )
        .unwrap_err();
        assert!(
            bad[0]
                .to_string()
                .starts_with("t.yaml:1:18: `require_user_id` must be true or false, not \"no\""),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn unknown_settings_get_a_hint_and_a_position() {
        let errs = parse(
            "worksapce: w\nprojet_id: 3\n",
            "taskform.yaml",
            Path::new("."),
            &no_env,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].to_string(),
            "taskform.yaml:1:1: unknown setting `worksapce`\n  hint: did you mean `workspace`?"
        );
        assert_eq!((errs[1].line, errs[1].col), (2, 1));
    }
}
