//! `taskform export --all-envs`: onboarding every environment of a repo at once. Each
//! environment's workspace is listed once; a task every environment has, alike enough,
//! becomes one shared manifest, and each environment's differences a `patch:` document
//! in its overlay (`<overlay>/<same path>`); a task some environments lack, or one too
//! different to share (another `data_source_type`, most fields differing), becomes a
//! plain manifest in each overlay that has it. Every task is recorded in its
//! environment's state with the body the loader will read for that environment, so
//! that `plan --all-envs` is clean afterwards.
//!
//! Secrets are written as `${secret:NAME}` as in a one-environment export; a value
//! that differs between environments reads a variable per environment
//! (`PROD_MYSQL_CRM_PASSWORD`), and the shared manifest leaves it to the patches.
//!
//! Names that the state of any environment records already, and names several tasks
//! of one workspace bear, are left out (reported), as export leaves them.

use super::export::{Error, Placeholder, Secrets};
use crate::load::export::{
    Layout, escape_references, file_for, manifest_body, secret_paths, split_shared,
    strip_defaulted, strip_echoed, yaml_of_escaped,
};
use crate::load::manifest::Manifest;
use crate::load::secret::{Key, pointer_mut};
use crate::load::settings::Settings;
use crate::reconcile::observe::adopt;
use crate::remote::api::remote_task_id;
use crate::remote::client::{Listing, TaskApi};
use crate::state::State;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One environment, as `export --all-envs` reads and records it.
pub struct Side<'a> {
    pub name: String,
    pub api: Arc<dyn TaskApi>,
    /// The environment's settings (its defaults over the shared ones, its overlay).
    pub settings: &'a Settings,
    pub state: &'a mut State,
    pub key: Key,
}

/// What `export --all-envs` did.
#[derive(Debug, Default)]
pub struct ExportedEnvs {
    /// Tasks listed, per environment (in the order of the sides).
    pub listed: Vec<usize>,
    /// Tasks left out because that environment's state records them already.
    pub managed: Vec<usize>,
    /// Tasks recorded, per environment.
    pub recorded: Vec<usize>,
    /// Shared manifests written.
    pub shared: usize,
    /// Patches written, per environment.
    pub patched: Vec<usize>,
    /// Names every environment has but that were kept apart: (name, why).
    pub apart: Vec<(String, &'static str)>,
    /// Plain manifests written into each overlay (environment-only or kept apart).
    pub own: Vec<usize>,
    /// Names left out, and why.
    pub left_out: Vec<(String, LeftOut)>,
    /// Files written, relative to the repo.
    pub files: Vec<String>,
    /// Secrets written as `${secret:NAME}`.
    pub placeholders: Vec<Placeholder>,
    /// Remote tasks without a usable name or ID: (environment, what it gave).
    pub unusable: Vec<(String, String)>,
}

/// Why a name was left out of `export --all-envs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftOut {
    /// A state records it already: the repo manages it.
    Managed,
    /// Several tasks of one environment's workspace bear it.
    Duplicate {
        environment: String,
        ids: Vec<String>,
    },
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftOut::Managed => write!(f, "a state records it already: the repo manages it"),
            LeftOut::Duplicate { environment, ids } => write!(
                f,
                "{} tasks of {environment} bear it ({}): delete or rename all but one in the console, then export again",
                ids.len(),
                ids.join(", ")
            ),
        }
    }
}

/// How one name is written: its environments (indexes of the sides that have it),
/// its layout (`None`: environment-only) and its written bodies (one per present
/// environment).
struct Decided {
    name: String,
    present: Vec<usize>,
    layout: Option<Layout>,
    written: Vec<Value>,
}

/// One task of one environment, ready to write and record.
struct Found {
    id: String,
    remote: Value,
    /// As the loader will read it (plain values), the environment's defaults left out.
    plain: Value,
    /// Paths of its secret values.
    secrets: Vec<String>,
    /// Paths of secret values it cannot write as placeholders.
    unwritable: Vec<String>,
}

/// Exports every environment's tasks into `dir` (the repo) and records them in each
/// environment's state. Nothing is written unless everything can be.
pub async fn export_all(
    sides: &mut [Side<'_>],
    dir: &Path,
    force: bool,
    secrets: &Secrets,
) -> Result<ExportedEnvs, Error> {
    let n = sides.len();
    let mut out = ExportedEnvs {
        listed: vec![0; n],
        managed: vec![0; n],
        recorded: vec![0; n],
        patched: vec![0; n],
        own: vec![0; n],
        ..ExportedEnvs::default()
    };
    // One listing per environment.
    let mut found: Vec<BTreeMap<String, Vec<Found>>> = Vec::with_capacity(n);
    let mut recorded_anywhere: BTreeSet<String> = BTreeSet::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let Listing { tasks, complete } = side.api.list_tasks().await?.ok_or(Error::NoSearch)?;
        if !complete {
            return Err(Error::Incomplete);
        }
        out.listed[i] = tasks.len();
        let defaults = &side.settings.defaults;
        let mut by_name: BTreeMap<String, Vec<Found>> = BTreeMap::new();
        for t in tasks {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let id = t
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let (Some(name), Some(_)) = (name, id) else {
                out.unusable.push((
                    side.name.clone(),
                    format!(
                        "name {}, id {}",
                        t.get("name").map_or("missing".into(), |v| v.to_string()),
                        t.get("id").map_or("missing".into(), |v| v.to_string())
                    ),
                ));
                continue;
            };
            let id = remote_task_id(&t);
            if let Some(r) = side.state.tasks.get(name) {
                recorded_anywhere.insert(name.to_string());
                if r.task_id == id || r.superseded.iter().any(|s| s.task_id == id) {
                    out.managed[i] += 1;
                    continue;
                }
            }
            let mut plain = manifest_body(&t);
            strip_echoed(
                &mut plain,
                t.get("user_name").and_then(Value::as_str),
                defaults,
            );
            strip_defaulted(&mut plain, defaults);
            let (secrets_at, unwritable) = secret_paths(&plain, &secrets.keys);
            by_name.entry(name.to_string()).or_default().push(Found {
                id,
                remote: t,
                plain,
                secrets: secrets_at,
                unwritable,
            });
        }
        found.push(by_name);
    }
    let started = std::time::Instant::now();
    let names: BTreeSet<String> = found.iter().flat_map(|m| m.keys().cloned()).collect();
    let mut shared_taken = HashSet::new();
    let mut own_taken: Vec<HashSet<String>> = vec![HashSet::new(); n];
    let mut variables = HashSet::new();
    // (task, path) -> its variable: the environments that share a value share it.
    let mut assigned: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    // (path below the repo, text), and per environment the records to make:
    // (name, index in found, file below the repo).
    let mut writes: Vec<(String, String)> = Vec::new();
    let mut records: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    let overlay =
        |i: usize| -> String {
            sides[i].settings.overlay_rel.clone().unwrap_or_else(|| {
                format!("{}/{}", crate::load::environment::OVERLAYS, sides[i].name)
            })
        };
    let mut decided: Vec<Decided> = Vec::new();
    for name in &names {
        if recorded_anywhere.contains(name) {
            out.left_out.push((name.clone(), LeftOut::Managed));
            continue;
        }
        if let Some(i) = (0..n).find(|&i| found[i].get(name).is_some_and(|f| f.len() > 1)) {
            out.left_out.push((
                name.clone(),
                LeftOut::Duplicate {
                    environment: sides[i].name.clone(),
                    ids: found[i][name].iter().map(|f| f.id.clone()).collect(),
                },
            ));
            continue;
        }
        let present: Vec<usize> = (0..n).filter(|&i| found[i].contains_key(name)).collect();
        // Only what is written can be refused.
        if !secrets.plaintext {
            for &i in &present {
                refused.extend(
                    found[i][name][0]
                        .unwritable
                        .iter()
                        .map(|p| (format!("{name} ({})", sides[i].name), p.clone())),
                );
            }
        }
        let one = |i: usize| &found[i][name][0];
        // Written bodies: references escaped, secrets as placeholders. A secret whose
        // value every environment shares reads one variable; otherwise one each.
        let everywhere = present.len() == n && n > 1;
        let mut written: Vec<Value> = Vec::with_capacity(present.len());
        for &i in &present {
            let f = one(i);
            let mut w = f.plain.clone();
            escape_references(&mut w);
            if !secrets.plaintext {
                for path in &f.secrets {
                    let value = |j: usize| {
                        let mut p = one(j).plain.clone();
                        pointer_mut(&mut p, path).map(|v| v.clone())
                    };
                    let same = everywhere && present.iter().all(|&j| value(j) == value(i));
                    let task = match same {
                        true => name.clone(),
                        false => format!("{}_{name}", sides[i].name),
                    };
                    let variable = assigned
                        .entry((task.clone(), path.clone()))
                        .or_insert_with(|| {
                            crate::load::export::secret_variable(&task, path, &mut variables)
                        })
                        .clone();
                    if let Some(v) = pointer_mut(&mut w, path) {
                        *v = Value::String(format!("${{secret:{variable}}}"));
                    }
                    if !out.placeholders.iter().any(|p| p.variable == variable) {
                        out.placeholders.push(Placeholder {
                            variable,
                            task: match same {
                                true => name.clone(),
                                false => format!("{name} ({})", sides[i].name),
                            },
                            path: path.clone(),
                        });
                    }
                }
            }
            written.push(w);
        }
        // `None`: environment-only.
        let layout = everywhere.then(|| split_shared(&written.iter().collect::<Vec<_>>()));
        decided.push(Decided {
            name: name.clone(),
            present,
            layout,
            written,
        });
    }
    if !refused.is_empty() {
        return Err(Error::UnwritableSecrets(refused));
    }
    // Shared files first, so that no overlay file of another task takes the path of
    // a shared task's patch.
    decided.sort_by_key(|d| !matches!(d.layout, Some(Layout::Shared { .. })));
    for Decided {
        name,
        present,
        layout,
        written,
    } in decided
    {
        let name = &name;
        let one = |i: usize| &found[i][name][0];
        let dst = |i: usize| {
            one(i)
                .remote
                .get("data_source_type")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match layout {
            Some(Layout::Shared { base, patches }) => {
                let first = present[0];
                let rel = file_for(
                    name,
                    &one(first).id,
                    dst(first).as_deref(),
                    &mut shared_taken,
                );
                writes.push((rel.clone(), yaml_text(name, &base, None)?));
                out.shared += 1;
                for &i in &present {
                    own_taken[i].insert(rel.to_lowercase());
                    records[i].push((name.clone(), rel.clone()));
                }
                for (k, patch) in patches {
                    let i = present[k];
                    let prel = format!("{}/{rel}", overlay(i));
                    writes.push((prel, yaml_text(name, &patch, Some(name))?));
                    out.patched[i] += 1;
                }
            }
            apart => {
                if let Some(Layout::Apart(why)) = apart {
                    out.apart.push((name.clone(), why));
                }
                for (k, &i) in present.iter().enumerate() {
                    let rel = file_for(name, &one(i).id, dst(i).as_deref(), &mut own_taken[i]);
                    let full = format!("{}/{rel}", overlay(i));
                    writes.push((full.clone(), yaml_text(name, &written[k], None)?));
                    out.own[i] += 1;
                    records[i].push((name.clone(), full));
                }
            }
        }
    }
    // Never two texts for one file (compared without case, as some disks do).
    let mut paths = HashSet::new();
    if let Some((rel, _)) = writes
        .iter()
        .find(|(rel, _)| !paths.insert(rel.to_lowercase()))
    {
        return Err(Error::Exists {
            dir: dir.display().to_string(),
            files: vec![format!("{rel} (two tasks would be written to it)")],
        });
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        files = writes.len(),
        "export laid out"
    );
    if !force {
        let existing: Vec<String> = writes
            .iter()
            .map(|(rel, _)| rel.clone())
            .filter(|rel| dir.join(rel).exists())
            .collect();
        if !existing.is_empty() {
            return Err(Error::Exists {
                dir: dir.display().to_string(),
                files: existing,
            });
        }
    }
    let files: Vec<(PathBuf, String)> = writes
        .into_iter()
        .map(|(rel, text)| {
            out.files.push(rel.clone());
            (dir.join(rel), text)
        })
        .collect();
    crate::fsutil::write_many(&files).map_err(|(path, source)| Error::Write {
        path: path.display().to_string(),
        source,
    })?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "export written"
    );
    // Record each task with the body the loader reads for its environment.
    for (i, side) in sides.iter_mut().enumerate() {
        for (name, rel) in &records[i] {
            let f = &found[i][name][0];
            let mut body = f.plain.clone();
            crate::load::schema::merge_defaults(&mut body, &side.settings.defaults);
            let sensitive = match secrets.plaintext {
                true => Vec::new(),
                false => f.secrets.clone(),
            };
            let m = Manifest::from_body(
                name.clone(),
                &body,
                rel.clone(),
                dir.join(rel).display().to_string(),
                0,
            )
            .with_sensitive(
                super::export::with_sensitive_defaults(sensitive, &f.plain, side.settings),
                &side.key,
            );
            if adopt::record(side.state, &m, std::slice::from_ref(&f.remote), &side.key).is_some() {
                out.recorded[i] += 1;
            }
        }
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "export recorded"
    );
    Ok(out)
}

/// A manifest's text, or a patch's (`patch: NAME` first) when `patch` is given.
fn yaml_text(name: &str, body: &Value, patch: Option<&str>) -> Result<String, Error> {
    let doc = match patch {
        Some(p) => {
            let mut m = Map::new();
            m.insert("patch".into(), Value::String(p.to_string()));
            if let Value::Object(fields) = body {
                m.extend(fields.clone());
            }
            Value::Object(m)
        }
        None => body.clone(),
    };
    yaml_of_escaped(&doc).map_err(|detail| Error::Yaml {
        name: name.to_string(),
        detail,
    })
}
