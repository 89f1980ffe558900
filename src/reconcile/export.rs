//! `taskform export`: onboarding a workspace whose tasks already exist. Lists every
//! task (one listing, pages of 100), writes a manifest per task into the folder, and
//! records each in the state as `import` would, so that the next plan says
//! "No changes" for all of them.
//!
//! Files are never overwritten without `force` (checked before anything is written).
//! Two remote tasks of one name are both written, under distinct file names, and
//! neither is recorded: the team decides which one the manifest is (as `import`
//! refuses to guess). A folder without a `taskform.yaml` gets one naming the target,
//! with the fields every task sets alike lifted into its `defaults`.

use crate::load::export::{
    SecretKeys, escape_references, file_for, lift_defaults, manifest_body, secret_paths,
    secret_variable, strip_defaulted, strip_echoed, yaml_of_escaped,
};
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::load::settings::Settings;
use crate::reconcile::observe::adopt;
use crate::remote::api::remote_task_id;
use crate::remote::client::{Listing, TaskApi};
use crate::state::{State, Target};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    /// Tasks on the server.
    pub tasks: usize,
    /// Tasks left out because the state records them already (the repo manages them).
    pub managed: usize,
    /// Files written, relative to the folder.
    pub files: Vec<String>,
    /// The settings file written, when the folder had none.
    pub settings_file: Option<String>,
    /// Tasks recorded in the state.
    pub recorded: usize,
    /// Names that several remote tasks bear: (name, [(task ID, file)]), not recorded.
    pub duplicates: Vec<(String, Vec<(String, String)>)>,
    /// Names the state already records with another task: (name, recorded ID).
    pub kept: Vec<(String, String)>,
    /// Remote tasks left out: the answer gave no usable name or ID (what it gave).
    pub unusable: Vec<String>,
    /// Fields that look like secrets, written as the service returned them
    /// (`--plaintext-secrets`): (file, paths).
    pub secrets: Vec<(String, Vec<String>)>,
    /// Secret values written as `${secret:VARIABLE}` (their fingerprints recorded):
    /// (variable, task name, path), for the summary of the variables to provide.
    pub placeholders: Vec<Placeholder>,
}

/// A secret value export wrote as `${secret:VARIABLE}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub variable: String,
    pub task: String,
    pub path: String,
}

/// How export treats values that look like secrets.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Which keys hold secrets.
    pub keys: SecretKeys,
    /// Write them as the service returned them (and warn) instead of as
    /// `${secret:VARIABLE}`.
    pub plaintext: bool,
}

/// Where the manifests go and what a settings file written beside them names.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The folder the files are written in.
    pub folder: PathBuf,
    /// The folder's path below the manifest folder (empty when it is the manifest
    /// folder), for the files the state records.
    pub below: String,
    /// Settings for a settings file written into a folder that has none (the state
    /// and endpoint, when they did not come from a settings file).
    pub settings: Vec<(String, Value)>,
}

/// Why nothing (or not everything) was exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Remote(#[from] crate::remote::Error),
    #[error("the endpoint offers no search of its tasks: there is nothing to export from")]
    NoSearch,
    #[error(
        "the listing of the workspace was cut short (the service stopped paging); nothing was written. Try again"
    )]
    Incomplete,
    #[error(
        "{} already exist{} in {dir} (first: {}); nothing was written. Export into an empty folder, or pass --force to overwrite them",
        .files.len(), if .files.len() == 1 { "s" } else { "" }, .files[0]
    )]
    Exists { dir: String, files: Vec<String> },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the task {name} as YAML: {detail}")]
    Yaml { name: String, detail: String },
    #[error(
        "export writes the values of secret-looking keys as ${{secret:NAME}}, and cannot for these (a number or a boolean, or a key holding `.`, `[` or `]`): {}; nothing was written. Name other keys with --secret-keys, or pass --plaintext-secrets and move these values into ${{secret:NAME}} by hand before committing",
        .0.iter().map(|(t, p)| format!("{} {}", crate::load::diagnostic::escape(t), crate::load::diagnostic::escape(p))).collect::<Vec<_>>().join(", ")
    )]
    UnwritableSecrets(Vec<(String, String)>),
}

/// Exports every task of the workspace into `dir` and records them in `state`.
/// `settings` are `dir`'s (read before); `target` the workspace's; `force`
/// overwrites files; `secrets` says how secret-looking values are written.
pub async fn export(
    api: &Arc<dyn TaskApi>,
    dest: &Destination,
    settings: &Settings,
    target: &Target,
    state: &mut State,
    key: &Key,
    (force, secrets): (bool, &Secrets),
) -> Result<Exported, Error> {
    let dir = dest.folder.as_path();
    let Listing { tasks, complete } = api.list_tasks().await?.ok_or(Error::NoSearch)?;
    if !complete {
        return Err(Error::Incomplete);
    }
    let mut out = Exported {
        tasks: tasks.len(),
        ..Exported::default()
    };
    // Sorted by name, then ID: the same workspace always gives the same files.
    let mut remote: Vec<(String, String, Value)> = Vec::new();
    for t in tasks {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let id = t
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty());
        let recorded = |n: &str, id: &str| {
            state
                .tasks
                .get(n)
                .is_some_and(|r| r.task_id == id || r.superseded.iter().any(|s| s.task_id == id))
        };
        match (name, id) {
            (Some(n), Some(i)) if recorded(n, i) => out.managed += 1,
            (Some(n), Some(_)) => remote.push((n.to_string(), remote_task_id(&t), t)),
            _ => out.unusable.push(format!(
                "name {}, id {}",
                t.get("name").map_or("missing".into(), |v| v.to_string()),
                t.get("id").map_or("missing".into(), |v| v.to_string())
            )),
        }
    }
    remote.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let own_settings = settings.file.is_none();
    // The bodies as the loader will read them (plain values), and as written: fields
    // the folder's defaults set left out, references escaped, secrets as
    // `${secret:VARIABLE}`.
    let mut plain: Vec<Value> = Vec::with_capacity(remote.len());
    let mut bodies: Vec<Value> = Vec::with_capacity(remote.len());
    let mut sensitive: Vec<Vec<String>> = Vec::with_capacity(remote.len());
    let mut variables = HashSet::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    for (name, _, t) in &remote {
        let mut body = manifest_body(t);
        let defaults = match own_settings {
            true => &Map::new(),
            false => &settings.defaults,
        };
        strip_echoed(
            &mut body,
            t.get("user_name").and_then(Value::as_str),
            defaults,
        );
        if !own_settings {
            strip_defaulted(&mut body, &settings.defaults);
        }
        let mut written = body.clone();
        escape_references(&mut written);
        let (paths, unwritable) = secret_paths(&body, &secrets.keys);
        if !secrets.plaintext {
            refused.extend(unwritable.into_iter().map(|p| (name.clone(), p)));
            for path in &paths {
                let variable = secret_variable(name, path, &mut variables);
                if let Some(v) = crate::load::secret::pointer_mut(&mut written, path) {
                    *v = Value::String(format!("${{secret:{variable}}}"));
                }
                out.placeholders.push(Placeholder {
                    variable,
                    task: name.clone(),
                    path: path.clone(),
                });
            }
        }
        plain.push(body);
        bodies.push(written);
        sensitive.push(match secrets.plaintext {
            true => Vec::new(),
            false => paths,
        });
    }
    if !refused.is_empty() {
        return Err(Error::UnwritableSecrets(refused));
    }
    let lifted = match own_settings {
        true => lift_defaults(&mut bodies),
        false => Map::new(),
    };
    let mut taken = HashSet::new();
    let files: Vec<String> = remote
        .iter()
        .map(|(name, id, t)| {
            file_for(
                name,
                id,
                t.get("data_source_type").and_then(Value::as_str),
                &mut taken,
            )
        })
        .collect();
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(String::as_str)
            .chain(own_settings.then_some(crate::load::settings::FILE_NAME))
            .filter(|f| dir.join(f).exists())
            .map(str::to_string)
            .collect();
        if !existing.is_empty() {
            return Err(Error::Exists {
                dir: dir.display().to_string(),
                files: existing,
            });
        }
    }
    let write = |path: PathBuf, text: &str| -> Result<(), Error> {
        let err = |source| Error::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(crate::fsutil::parent_dir(&path)).map_err(err)?;
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(err)
    };
    // Every text first: nothing is written unless all of it can be.
    let mut texts = Vec::with_capacity(bodies.len());
    for (body, (name, _, _)) in bodies.iter().zip(&remote) {
        texts.push(yaml_of_escaped(body).map_err(|detail| Error::Yaml {
            name: name.clone(),
            detail,
        })?);
    }
    if own_settings {
        let has_user_id =
            bodies.iter().all(|b| b.get("user_id").is_some()) || lifted.contains_key("user_id");
        write(
            dir.join(crate::load::settings::FILE_NAME),
            &settings_text(target, &dest.settings, &lifted, has_user_id),
        )?;
        out.settings_file = Some(crate::load::settings::FILE_NAME.to_string());
    }
    let writes: Vec<(PathBuf, String)> = texts
        .into_iter()
        .zip(&files)
        .map(|(text, rel)| (dir.join(rel), text))
        .collect();
    crate::fsutil::write_many(&writes).map_err(|(path, source)| Error::Write {
        path: path.display().to_string(),
        source,
    })?;
    for (rel, body) in files.iter().zip(&plain) {
        out.files.push(rel.clone());
        if secrets.plaintext {
            let (mut found, odd) = secret_paths(body, &secrets.keys);
            found.extend(odd);
            if !found.is_empty() {
                out.secrets.push((rel.clone(), found));
            }
        }
    }
    // Record each name borne by one remote task, with the body the loader will read
    // (the file over the folder's defaults).
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (name, _, _)) in remote.iter().enumerate() {
        by_name.entry(name).or_default().push(i);
    }
    for (name, idx) in by_name {
        if idx.len() > 1 {
            out.duplicates.push((
                name.to_string(),
                idx.iter()
                    .map(|&i| (remote[i].1.clone(), files[i].clone()))
                    .collect(),
            ));
            continue;
        }
        let i = idx[0];
        let (_, id, task) = &remote[i];
        if let Some(r) = state.tasks.get(name) {
            if r.task_id != *id {
                out.kept.push((name.to_string(), r.task_id.clone()));
            }
            continue;
        }
        // The file's plain values over the folder's defaults (an own settings file's
        // lifted defaults came out of the same bodies).
        let mut body = plain[i].clone();
        if !own_settings {
            crate::load::schema::merge_defaults(&mut body, &settings.defaults);
        }
        let rel = match dest.below.is_empty() {
            true => files[i].clone(),
            false => format!("{}/{}", dest.below, files[i]),
        };
        let m = Manifest::from_body(
            name.to_string(),
            &body,
            rel,
            dir.join(&files[i]).display().to_string(),
            0,
        )
        .with_sensitive(
            with_sensitive_defaults(sensitive[i].clone(), &plain[i], settings),
            key,
        );
        if adopt::record(state, &m, std::slice::from_ref(task), key).is_some() {
            out.recorded += 1;
        }
    }
    Ok(out)
}

/// `paths` and the paths of the folder's sensitive defaults (`${secret:...}` in
/// `defaults`) that `body` does not set itself: what the loader marks sensitive in
/// the body it reads, so that the state never records those values either.
pub(crate) fn with_sensitive_defaults(
    mut paths: Vec<String>,
    body: &Value,
    settings: &Settings,
) -> Vec<String> {
    let mut probe = body.clone();
    for d in &settings.sensitive_defaults {
        let p = crate::load::yaml::path_string(&d.path);
        if crate::load::secret::pointer_mut(&mut probe, &p).is_none() && !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

/// The settings file of an export folder: the target, the lifted defaults, and
/// `require_user_id: false` when some task has no `user_id`.
fn settings_text(
    target: &Target,
    extra: &[(String, Value)],
    defaults: &Map<String, Value>,
    user_id: bool,
) -> String {
    let mut map = Map::new();
    map.insert(
        "project_id".into(),
        Value::String(target.project_id.clone()),
    );
    map.insert("workspace".into(), Value::String(target.workspace.clone()));
    for (k, v) in extra {
        map.insert(k.clone(), v.clone());
    }
    if !user_id {
        map.insert("require_user_id".into(), Value::Bool(false));
    }
    if !defaults.is_empty() {
        // Lifted from the written bodies: references escaped already.
        map.insert("defaults".into(), Value::Object(defaults.clone()));
    }
    let yaml = serde_yaml::to_string(&Value::Object(map)).unwrap_or_default();
    format!(
        "# Written by `taskform export`: the workspace the tasks below were exported from,\n# and the fields every one of them sets alike (merged under each manifest).\n{yaml}"
    )
}
