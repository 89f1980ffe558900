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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    "variables",
    "environments",
    "notify",
];

/// What an environment of `environments:` may set.
const ENV_KEYS: &[&str] = &[
    "project_id",
    "workspace",
    "endpoint",
    "region",
    "state",
    "state_name",
    "state_schema",
    "defaults",
    "on_change",
    "variables",
    "credentials",
    "overlay",
    "notify",
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
    /// What `${...}` reads besides the process environment: `variables:` (an
    /// environment's over the shared ones) and an environment's credentials.
    pub scope: crate::load::environment::Scope,
    /// The environments `environments:` declares, in file order.
    pub environments: Vec<String>,
    /// The environment these settings are for (its target, state, defaults and
    /// variables applied), when one was chosen.
    pub environment: Option<String>,
    /// The chosen environment's overlay folder (below DIR), if it exists.
    pub overlay: Option<PathBuf>,
    /// Every environment's overlay folder, relative to DIR: never shared manifests
    /// (nor is anything below `overlays/`).
    pub overlay_dirs: Vec<String>,
    /// The chosen environment's overlay folder relative to DIR, existing or not.
    pub overlay_rel: Option<String>,
    /// Where `defaults` are written in the settings file, most specific first.
    pub defaults_at: Vec<Vec<Seg>>,
    /// `notify:`: where alerts go (an environment's list replaces the shared one).
    pub notify: Option<Vec<crate::load::alerts::Receiver>>,
}

impl Settings {
    /// Whether every manifest must set `user_id` (the default, as the create page
    /// says), unless `require_user_id: false`.
    pub fn requires_user_id(&self) -> bool {
        self.require_user_id.unwrap_or(true)
    }

    /// Whether a file (path below DIR) is in an overlay folder: any below `overlays/`
    /// or an environment's `overlay:`, in a repo that declares environments.
    pub fn in_overlay(&self, rel: &str) -> bool {
        if self.environments.is_empty() {
            return false;
        }
        let under = |o: &str| rel.starts_with(&format!("{o}/"));
        under(crate::load::environment::OVERLAYS) || self.overlay_dirs.iter().any(|o| under(o))
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
    load_for(dir, None, env)
}

/// Reads `DIR/taskform.yaml` for the environment `environment` (its target, state,
/// defaults, variables and credentials over the shared settings).
pub fn load_for(
    dir: &Path,
    environment: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<Diagnostic>> {
    let mut settings = read(dir, environment, env)?;
    settings.secret_key = crate::load::secret::Key::from_env(env);
    Ok(settings)
}

fn read(
    dir: &Path,
    environment: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<Diagnostic>> {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(name) = environment {
                return Err(vec![Diagnostic::new(
                    &display,
                    0,
                    0,
                    format!(
                        "{}: there is no settings file declaring environments",
                        chosen_label(name, env)
                    ),
                )
                .with_hint("declare them under `environments:` in taskform.yaml at the root of the config repo")]);
            }
            return Ok(Settings {
                defaults_at: vec![vec![Seg::Key("defaults".into())]],
                ..Settings::default()
            });
        }
        Err(e) => {
            return Err(vec![Diagnostic::new(
                &display,
                0,
                0,
                format!("cannot read settings file: {e}"),
            )]);
        }
    };
    let mut settings = parse_for(&src, &display, dir, environment, env)?;
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
    parse_for(src, file, dir, None, env)
}

/// [`parse`] for the environment `environment`.
pub fn parse_for(
    src: &str,
    file: &str,
    dir: &Path,
    environment: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<Diagnostic>> {
    let value = yaml::parse_single(src)
        .map_err(|e| vec![Diagnostic::new(file, e.line, e.col, e.message)])?;
    let mut settings = Settings {
        file: Some(file.to_string()),
        source: Some(src.to_string()),
        defaults_at: vec![vec![Seg::Key("defaults".into())]],
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
    let mut diags = Vec::new();
    let mut map = map;
    let variables = map.remove("variables");
    let environments = map.remove("environments");
    if let Some(v) = variables {
        read_variables(
            &mut settings.scope.variables,
            v,
            &[Seg::Key("variables".into())],
            src,
            file,
            &mut diags,
        );
    }
    let label = environment.map(|name| chosen_label(name, env));
    let chosen = read_environments(
        &mut settings,
        environments,
        (environment, label.as_deref()),
        src,
        file,
        dir,
        &mut diags,
    );
    if environment.is_none() && !settings.environments.is_empty() {
        // Without an environment only the names count (a command then asks for one,
        // or goes through them all): the shared values may use variables that only
        // the environments define.
        return match diags.is_empty() {
            true => Ok(settings),
            false => Err(diags),
        };
    }
    let scope = settings.scope.clone();
    let scoped = |k: &str| scope.lookup(k, env);
    for (key, value) in map {
        apply_setting(
            &mut settings,
            key,
            value,
            &[],
            KEYS,
            src,
            file,
            dir,
            &scoped,
            &mut diags,
        );
    }
    if let (Some(name), Some(env_map)) = (environment, chosen) {
        // The environment's own settings over the shared ones.
        let prefix = [Seg::Key("environments".into()), Seg::Key(name.to_string())];
        let mut own = Settings::default();
        for (key, value) in env_map {
            if matches!(key.as_str(), "variables" | "credentials" | "overlay")
                || !ENV_KEYS.contains(&key.as_str())
            {
                continue;
            }
            apply_setting(
                &mut own, key, value, &prefix, ENV_KEYS, src, file, dir, &scoped, &mut diags,
            );
        }
        settings.project_id = own.project_id.or(settings.project_id);
        settings.workspace = own.workspace.or(settings.workspace);
        settings.on_change = own.on_change.or(settings.on_change);
        settings.notify = own.notify.or(settings.notify.take());
        // A region or an endpoint of the environment replaces both of the shared ones.
        if own.endpoint.is_some() || own.region.is_some() {
            settings.endpoint = own.endpoint;
            settings.region = own.region;
        }
        if own.state.is_some() {
            settings.state = own.state;
            settings.state_name = own.state_name;
            settings.state_schema = own.state_schema.or(settings.state_schema);
        } else if settings.state.is_none() {
            // Each environment its own state file unless told otherwise.
            settings.state = Some(crate::location::StateLocation::File(
                dir.join(format!("state/{name}.json")),
            ));
            settings.state_name = own.state_name;
        } else {
            settings.state_name = own.state_name.or(settings.state_name);
            settings.state_schema = own.state_schema.or(settings.state_schema);
        }
        let mut defaults = Value::Object(own.defaults);
        crate::load::schema::merge_defaults(&mut defaults, &settings.defaults);
        if let Value::Object(m) = defaults {
            settings.defaults = m;
        }
        let mut sensitive = own.sensitive_defaults;
        sensitive.extend(std::mem::take(&mut settings.sensitive_defaults));
        settings.sensitive_defaults = sensitive;
        let mut at = prefix.to_vec();
        at.push(Seg::Key("defaults".into()));
        settings.defaults_at.insert(0, at);
    }
    if diags.is_empty() {
        Ok(settings)
    } else {
        Err(diags)
    }
}

/// An overlay folder as written, made relative to the settings file's folder (`./`
/// and trailing `/` dropped); `None` for an absolute path or one leaving the folder.
fn below(o: &str) -> Option<String> {
    let p = Path::new(o);
    if o.is_empty() || p.is_absolute() {
        return None;
    }
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Reads a `variables:` mapping: scalars, kept as text (`${var:NAME}` in an integer
/// field gives an integer again).
fn read_variables(
    into: &mut BTreeMap<String, String>,
    value: Value,
    at_path: &[Seg],
    src: &str,
    file: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let at = |path: &[Seg], part: Part| yaml::locate(src, 0, path, part).unwrap_or((0, 0));
    match value {
        Value::Object(vars) => {
            for (name, v) in vars {
                let mut path = at_path.to_vec();
                path.push(Seg::Key(name.clone()));
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        let (l, c) = at(&path, Part::Value);
                        diags.push(
                            Diagnostic::new(
                                file,
                                l,
                                c,
                                format!(
                                    "variable `{name}` must be a string, a number or a boolean"
                                ),
                            )
                            .with_hint("variables hold single values: queue: batch, timeout: 60"),
                        );
                        continue;
                    }
                };
                into.insert(name, text);
            }
        }
        Value::Null => {}
        _ => {
            let (l, c) = at(at_path, Part::Value);
            diags.push(
                Diagnostic::new(
                    file,
                    l,
                    c,
                    "`variables` must be a mapping of names to values",
                )
                .with_hint("variables:\n  queue: batch"),
            );
        }
    }
}

/// How the chosen environment was named, for messages: `TASKFORM_ENV=qa` when the
/// variable holds it, else `--env qa` (the flag wins over the variable, so a flag of
/// the same value reads the same either way).
pub fn chosen_label(name: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    match env("TASKFORM_ENV").as_deref() == Some(name) {
        true => format!("TASKFORM_ENV={name}"),
        false => format!("--env {name}"),
    }
}

/// Reads `environments:`: the names, every environment's overlay folder, and for the
/// chosen one its variables (into the scope), credentials and overlay. Returns the
/// chosen environment's other settings, to apply over the shared ones.
#[allow(clippy::too_many_arguments)]
fn read_environments(
    settings: &mut Settings,
    value: Option<Value>,
    (chosen, label): (Option<&str>, Option<&str>),
    src: &str,
    file: &str,
    dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<serde_json::Map<String, Value>> {
    use crate::load::environment::{OVERLAYS, SERVICE_CREDENTIALS, STATE_CREDENTIALS};
    let at = |path: &[Seg], part: Part| yaml::locate(src, 0, path, part).unwrap_or((0, 0));
    let top = [Seg::Key("environments".into())];
    let envs = match value {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            let (l, c) = at(&top, Part::Value);
            diags.push(
                Diagnostic::new(
                    file,
                    l,
                    c,
                    "`environments` must be a mapping of environment names to their settings",
                )
                .with_hint("environments:\n  dev:\n    workspace: ..."),
            );
            serde_json::Map::new()
        }
    };
    let mut result = None;
    let mut states: Vec<(String, String)> = Vec::new();
    for (name, v) in envs {
        let prefix = [top[0].clone(), Seg::Key(name.clone())];
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            let (l, c) = at(&prefix, Part::Key);
            diags.push(Diagnostic::new(
                file,
                l,
                c,
                format!(
                    "environment name `{}` must be letters, digits, `-` and `_`",
                    crate::load::diagnostic::escape(&name)
                ),
            ));
            continue;
        }
        let map = match v {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            _ => {
                let (l, c) = at(&prefix, Part::Value);
                diags.push(Diagnostic::new(
                    file,
                    l,
                    c,
                    format!("environment `{name}` must be a mapping of settings"),
                ));
                continue;
            }
        };
        for key in map.keys() {
            if !ENV_KEYS.contains(&key.as_str()) {
                let mut p = prefix.to_vec();
                p.push(Seg::Key(key.clone()));
                let (l, c) = at(&p, Part::Key);
                diags.push(
                    Diagnostic::new(
                        file,
                        l,
                        c,
                        format!("unknown setting `{key}` for an environment"),
                    )
                    .with_hint(match suggest(key, ENV_KEYS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("an environment takes {}", ENV_KEYS.join(", ")),
                    }),
                );
            }
        }
        let overlay = match map.get("overlay") {
            Some(Value::String(o)) if below(o).is_some() => {
                let o = below(o).unwrap_or_default();
                if !dir.join(&o).is_dir() {
                    let mut p = prefix.to_vec();
                    p.push(Seg::Key("overlay".into()));
                    let (l, c) = at(&p, Part::Value);
                    diags.push(
                        Diagnostic::new(file, l, c, format!("the overlay folder `{o}` does not exist"))
                            .with_hint("create it, or leave `overlay` out for the default overlays/<environment>"),
                    );
                    continue;
                }
                o
            }
            Some(Value::Null) | None => format!("{OVERLAYS}/{name}"),
            Some(_) => {
                let mut p = prefix.to_vec();
                p.push(Seg::Key("overlay".into()));
                let (l, c) = at(&p, Part::Value);
                diags.push(Diagnostic::new(
                    file,
                    l,
                    c,
                    "`overlay` must be a folder below this file's folder",
                ));
                continue;
            }
        };
        // Two environments on one state would share its lock and records.
        let state_of = |m: &serde_json::Map<String, Value>| {
            m.get("state").and_then(Value::as_str).map(|s| {
                let name = m.get("state_name").and_then(Value::as_str).unwrap_or("");
                match crate::location::is_postgres_url(s) {
                    true => format!("{s}#{name}"),
                    false => crate::fsutil::normalize(&dir.join(s)).display().to_string(),
                }
            })
        };
        if let Some(state) = state_of(&map) {
            if let Some(other) = states
                .iter()
                .find(|(_, s)| *s == state)
                .map(|(n, _)| n.clone())
            {
                let mut p = prefix.to_vec();
                p.push(Seg::Key("state".into()));
                let (l, c) = at(&p, Part::Value);
                diags.push(
                    Diagnostic::new(
                        file,
                        l,
                        c,
                        format!("environments {other} and {name} would share one state (and its lock)"),
                    )
                    .with_hint("give each environment its own state: a file of its own, or its own state_name"),
                );
            }
            states.push((name.clone(), state));
        }
        settings.environments.push(name.clone());
        settings.overlay_dirs.push(overlay.clone());
        if let Some(Value::Object(creds)) = map.get("credentials") {
            settings
                .scope
                .credential_sources
                .extend(creds.values().filter_map(Value::as_str).map(str::to_string));
        }
        if chosen != Some(name.as_str()) {
            continue;
        }
        if let Some(v) = map.get("variables") {
            let mut p = prefix.to_vec();
            p.push(Seg::Key("variables".into()));
            read_variables(
                &mut settings.scope.variables,
                v.clone(),
                &p,
                src,
                file,
                diags,
            );
        }
        if let Some(v) = map.get("credentials") {
            let mut p = prefix.to_vec();
            p.push(Seg::Key("credentials".into()));
            match v {
                Value::Object(creds) => {
                    for (standard, source) in creds {
                        let mut kp = p.clone();
                        kp.push(Seg::Key(standard.clone()));
                        let known = SERVICE_CREDENTIALS.contains(&standard.as_str())
                            || STATE_CREDENTIALS.contains(&standard.as_str());
                        let source_name = source.as_str().filter(|s| {
                            !s.is_empty()
                                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        });
                        if !known {
                            let (l, c) = at(&kp, Part::Key);
                            diags.push(
                                Diagnostic::new(
                                    file,
                                    l,
                                    c,
                                    format!("`{standard}` is not a credential taskform reads"),
                                )
                                .with_hint(format!(
                                    "credentials map these variables to the ones holding this environment's values: {}",
                                    [SERVICE_CREDENTIALS, STATE_CREDENTIALS].concat().join(", ")
                                )),
                            );
                        } else if let Some(src_name) = source_name {
                            settings
                                .scope
                                .credentials
                                .insert(standard.clone(), src_name.to_string());
                        } else {
                            let (l, c) = at(&kp, Part::Value);
                            diags.push(
                                Diagnostic::new(
                                    file,
                                    l,
                                    c,
                                    "a credential is given by the name of the environment variable holding it, never by its value",
                                )
                                .with_hint(format!("{standard}: PROD_{standard}")),
                            );
                        }
                    }
                }
                _ => {
                    let (l, c) = at(&p, Part::Value);
                    diags.push(
                        Diagnostic::new(
                            file,
                            l,
                            c,
                            "`credentials` must map credential variables to the variables holding them",
                        )
                        .with_hint("credentials:\n  TASKFORM_AUTH_TOKEN: PROD_TASKFORM_AUTH_TOKEN"),
                    );
                }
            }
        }
        let folder = dir.join(&overlay);
        settings.overlay = folder.is_dir().then_some(folder);
        settings.overlay_rel = Some(overlay.clone());
        settings.environment = Some(name.clone());
        result = Some(map);
    }
    if !settings.environments.is_empty() {
        stray_overlays(settings, dir, file, diags);
    }
    if let Some(name) = chosen
        && settings.environment.is_none()
        && diags.is_empty()
    {
        let (l, c) = at(&top, Part::Key);
        let names: Vec<&str> = settings.environments.iter().map(String::as_str).collect();
        diags.push(
            Diagnostic::new(
                file,
                l.max(1),
                c.max(1),
                match names.is_empty() {
                    true => format!(
                        "{}: this settings file declares no environments",
                        label.unwrap_or(name)
                    ),
                    false => format!(
                        "{}: no such environment (this settings file declares {})",
                        label.unwrap_or(name),
                        names.join(", ")
                    ),
                },
            )
            .with_hint_opt(suggest(name, &names).map(|s| format!("did you mean `{s}`?"))),
        );
    }
    result
}

/// A folder below `overlays/` that is no environment's overlay would be silently
/// ignored (`overlays/prdo/` drops prod's own tasks from every plan): an error naming
/// it, with did-you-mean. A folder named after an environment whose `overlay:` points
/// elsewhere is left alone (that environment chose another folder).
fn stray_overlays(settings: &Settings, dir: &Path, file: &str, diags: &mut Vec<Diagnostic>) {
    use crate::load::environment::OVERLAYS;
    let Ok(entries) = std::fs::read_dir(dir.join(OVERLAYS)) else {
        return;
    };
    let mut stray: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| {
            let rel = format!("{OVERLAYS}/{n}");
            let holds_one = settings
                .overlay_dirs
                .iter()
                .any(|o| *o == rel || o.starts_with(&format!("{rel}/")));
            !holds_one && !settings.environments.contains(n)
        })
        .collect();
    stray.sort();
    let names: Vec<&str> = settings.environments.iter().map(String::as_str).collect();
    let shown = Path::new(file)
        .parent()
        .unwrap_or(Path::new(""))
        .join(OVERLAYS);
    for n in stray {
        let folder = shown.join(&n);
        diags.push(
            Diagnostic::new(
                format!("{}/", folder.display()),
                0,
                0,
                format!(
                    "the overlay folder `{OVERLAYS}/{}` matches no environment ({} declared in {file}): nothing in it would be planned for any environment",
                    crate::load::diagnostic::escape(&n),
                    names.join(", "),
                ),
            )
            .with_hint(match suggest(&n, &names) {
                Some(s) => format!(
                    "did you mean `{OVERLAYS}/{s}`? Rename the folder, or point an environment's `overlay:` at it"
                ),
                None => "rename it after an environment, point an environment's `overlay:` at it, or remove it".to_string(),
            }),
        );
    }
}

/// Applies one setting (`key: value` at `prefix`) to `settings`; problems go to
/// `diags`, at their place in `src`.
#[allow(clippy::too_many_arguments)]
fn apply_setting(
    settings: &mut Settings,
    key: String,
    value: Value,
    prefix: &[Seg],
    allowed: &[&str],
    src: &str,
    file: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let at = |path: &[Seg], part: Part| yaml::locate(src, 0, path, part).unwrap_or((0, 0));
    let path: Vec<Seg> = prefix
        .iter()
        .cloned()
        .chain([Seg::Key(key.clone())])
        .collect();
    if !allowed.contains(&key.as_str()) {
        let (l, c) = at(&path, Part::Key);
        diags.push(
            Diagnostic::new(file, l, c, format!("unknown setting `{key}`"))
                .with_hint_opt(suggest(&key, allowed).map(|s| format!("did you mean `{s}`?"))),
        );
        return;
    }
    if key == "defaults" {
        match value {
            Value::Object(mut defaults) => {
                let mut v = Value::Object(std::mem::take(&mut defaults));
                let found =
                    interpolate::interpolate(&mut v, env, &crate::load::schema::wants_integer);
                settings.sensitive_defaults = found.sensitive;
                for err in found.errors {
                    let mut p = path.clone();
                    p.extend(err.path);
                    let (l, c) = at(&p, Part::Value);
                    diags.push(Diagnostic::new(file, l, c, err.message).with_hint_opt(err.hint));
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
        return;
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
                        (Some(f), Some(t), false) if !f.is_empty() && !t.is_empty() && f != t => {
                            settings.moved.push(Moved {
                                from: f.to_string(),
                                to: t.to_string(),
                            })
                        }
                        _ => {
                            let mut p = path.clone();
                            p.push(Seg::Index(i));
                            let (l, c) = at(&p, Part::Value);
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
        return;
    }
    if key == "notify" {
        settings.notify = Some(crate::load::alerts::parse(&value, &path, file, &at, diags));
        return;
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
        return;
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
        return;
    }
    let text = match value {
        Value::String(s) => match interpolate::expand(&s, env) {
            Ok(s) => s,
            Err((message, hint)) => {
                let (l, c) = at(&path, Part::Value);
                diags.push(Diagnostic::new(file, l, c, message).with_hint_opt(hint));
                return;
            }
        },
        Value::Null => return,
        other => {
            let (l, c) = at(&path, Part::Value);
            diags.push(
                Diagnostic::new(file, l, c, format!("`{key}` must be a string"))
                    .with_hint(format!("quote the value: {key}: \"{other}\"")),
            );
            return;
        }
    };
    match key.as_str() {
        "project_id" => settings.project_id = Some(text),
        "workspace" => settings.workspace = Some(text),
        "endpoint" => settings.endpoint = Some(text),
        "region" => settings.region = Some(text),
        "state"
            if crate::location::is_postgres_url(&text)
                || crate::location::url_like(&text).is_some() =>
        {
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
        // `variables`, `environments`, `credentials` and `overlay` are read by their
        // callers before the other keys; one reaching here is not a setting here.
        _ => {
            let (l, c) = at(&path, Part::Key);
            diags.push(Diagnostic::new(
                file,
                l,
                c,
                format!("`{key}` is not a setting here"),
            ));
        }
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
