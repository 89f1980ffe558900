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

use crate::load::export::{file_for, lift_defaults, manifest_body, yaml_of};
use crate::load::manifest::Manifest;
use crate::load::secret::Key;
use crate::load::settings::Settings;
use crate::reconcile::observe::adopt;
use crate::remote::api::remote_task_id;
use crate::remote::client::{Listing, TaskApi};
use crate::state::{State, Target};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    /// Tasks on the server.
    pub tasks: usize,
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
}

/// Exports every task of the workspace into `dir` and records them in `state`.
/// `settings` are `dir`'s (read before); `target` the workspace's.
pub async fn export(
    api: &Arc<dyn TaskApi>,
    dir: &Path,
    settings: &Settings,
    target: &Target,
    state: &mut State,
    key: &Key,
    force: bool,
) -> Result<Exported, Error> {
    let Listing { tasks, complete } = api.list_tasks().await?.ok_or(Error::NoSearch)?;
    if !complete {
        return Err(Error::Incomplete);
    }
    let mut out = Exported {
        tasks: tasks.len(),
        ..Exported::default()
    };
    // Sorted by name, then ID: the same workspace always gives the same files.
    let mut remote: Vec<(String, String, Value)> = tasks
        .into_iter()
        .map(|t| {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (name, remote_task_id(&t), t)
        })
        .collect();
    remote.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut bodies: Vec<Value> = remote.iter().map(|(_, _, t)| manifest_body(t)).collect();
    let own_settings = settings.file.is_none();
    let lifted = match own_settings {
        true => lift_defaults(&mut bodies),
        false => Map::new(),
    };
    let mut taken = HashSet::new();
    let files: Vec<String> = remote
        .iter()
        .map(|(name, _, t)| {
            file_for(
                name,
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
    if own_settings {
        let needs_user_id =
            bodies.iter().all(|b| b.get("user_id").is_some()) || lifted.contains_key("user_id");
        write(
            dir.join(crate::load::settings::FILE_NAME),
            &settings_text(target, &lifted, needs_user_id),
        )?;
        out.settings_file = Some(crate::load::settings::FILE_NAME.to_string());
    }
    for ((body, rel), (name, _, _)) in bodies.iter().zip(&files).zip(&remote) {
        let text = yaml_of(body).map_err(|detail| Error::Yaml {
            name: name.clone(),
            detail,
        })?;
        write(dir.join(rel), &text)?;
        out.files.push(rel.clone());
    }
    // Record each name borne by one remote task, with the body the loader will read
    // (the file over the folder's defaults).
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (name, _, _)) in remote.iter().enumerate() {
        by_name.entry(name).or_default().push(i);
    }
    let defaults = match own_settings {
        true => &lifted,
        false => &settings.defaults,
    };
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
        let mut body = bodies[i].clone();
        crate::load::schema::merge_defaults(&mut body, defaults);
        let m = Manifest::from_body(
            name.to_string(),
            &body,
            files[i].clone(),
            dir.join(&files[i]).display().to_string(),
            0,
        );
        if adopt::record(state, &m, std::slice::from_ref(task), key).is_some() {
            out.recorded += 1;
        }
    }
    Ok(out)
}

/// The settings file of an export folder: the target, the lifted defaults, and
/// `require_user_id: false` when some task has no `user_id`.
fn settings_text(target: &Target, defaults: &Map<String, Value>, user_id: bool) -> String {
    let mut map = Map::new();
    map.insert(
        "project_id".into(),
        Value::String(target.project_id.clone()),
    );
    map.insert("workspace".into(), Value::String(target.workspace.clone()));
    if !user_id {
        map.insert("require_user_id".into(), Value::Bool(false));
    }
    if !defaults.is_empty() {
        let mut d = Value::Object(defaults.clone());
        crate::load::export::escape_references(&mut d);
        map.insert("defaults".into(), d);
    }
    let yaml = serde_yaml::to_string(&Value::Object(map)).unwrap_or_default();
    format!(
        "# Written by `taskform export`: the workspace the tasks below were exported from,\n# and the fields every one of them sets alike (merged under each manifest).\n{yaml}"
    )
}
