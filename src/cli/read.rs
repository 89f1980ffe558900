//! `taskform import [DIR]` and `taskform refresh [DIR]`: read the server into the state
//! without creating, changing or deleting anything on the server.

use super::connect::{ConnectArgs, Connection};
use super::{Env, block_on, load_manifests};
use crate::error::{Error, Exit};
use crate::load::manifest::Loaded;
use crate::load::target::TargetFlags;
use crate::plan::select::{self, Selection};
use crate::reconcile::observe::adopt::{self, Adopted};
use crate::reconcile::observe::refresh::{self, Drift};
use crate::state::store::{TargetCheck, Transaction};
use crate::state::{State, lock::Holder};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `taskform import` and `taskform refresh`.
#[derive(Debug, Clone)]
pub struct ReadArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub connect: ConnectArgs,
    pub lock_timeout: Option<Duration>,
    /// `--target` patterns and `--label key=value` (refresh reads only those records).
    pub targets: Vec<String>,
    pub labels: Vec<String>,
}

/// `taskform import`: records remote tasks whose names match manifests the state does
/// not know, so that apply does not create duplicates.
pub fn import(args: ReadArgs, env: Env) -> Exit {
    block_on(with_state(&args, env, "import", |state, loaded, conn| {
        Box::pin(async move {
            let Some(adopted) = adopt::adopt(
                state,
                &loaded.manifests,
                &conn.api,
                &loaded.settings.secret_key,
            )
            .await?
            else {
                return Err(Error::Command("the endpoint offers no search (HTTP 404), so nothing can be imported by name; record each task by its ID with `taskform state import NAME TASK_ID`".into()));
            };
            if let Some(e) = adopt::ambiguous(&adopted) {
                return Err(crate::reconcile::Error::from(e).into());
            }
            let mut out = String::new();
            for a in &adopted {
                match a {
                        Adopted::Same { name, task_id } => out.push_str(&format!(
                            "imported {name}: task {task_id} (same content)\n"
                        )),
                        Adopted::Differs { name, task_id } => out.push_str(&format!(
                            "imported {name}: task {task_id} (content differs: the next plan shows the change)\n"
                        )),
                        Adopted::Ambiguous { .. } => {}
                    }
            }
            let unknown = loaded
                .manifests
                .iter()
                .filter(|m| !state.tasks.contains_key(&m.name))
                .count();
            out.push_str(&format!(
                "Import complete: {} imported, {unknown} not on the server (apply creates them).\n",
                adopted.len()
            ));
            Ok((!adopted.is_empty(), out))
        })
    }))
}

/// `taskform refresh`: reads every recorded task and records drift.
pub fn refresh(args: ReadArgs, env: Env) -> Exit {
    let (targets, labels) = (args.targets.clone(), args.labels.clone());
    block_on(with_state(
        &args,
        env,
        "refresh",
        move |state, loaded, conn| {
            Box::pin(async move {
                // `--target`/`--label`: only the selected records are read (and changed).
                let selection = Selection {
                    targets: &targets,
                    labels: &labels,
                };
                let all = targets.is_empty() && labels.is_empty();
                let mut part = state.clone();
                part.tasks
                    .retain(|name, _| all || select::selected(name, selection, &loaded.manifests));
                let Some(drift) = refresh::refresh(
                    &mut part,
                    &loaded.manifests,
                    &conn.api,
                    &loaded.settings.secret_key,
                )
                .await?
                else {
                    return Err(Error::Command(
                        "the endpoint offers no show (HTTP 404), so the state cannot be refreshed"
                            .into(),
                    ));
                };
                // A task another record holds (a name not selected) is no duplicate.
                let held: std::collections::HashSet<String> =
                    state.recorded_ids().into_iter().map(String::from).collect();
                let drift: Vec<Drift> = drift
                    .into_iter()
                    .filter(|d| !matches!(d, Drift::Duplicate { task_id, .. } if held.contains(task_id)))
                    .collect();
                for list in part.duplicates.values_mut() {
                    list.retain(|d| !held.contains(&d.task_id));
                }
                part.duplicates.retain(|_, list| !list.is_empty());
                let chosen: Vec<String> = state
                    .tasks
                    .keys()
                    .filter(|name| all || select::selected(name, selection, &loaded.manifests))
                    .cloned()
                    .collect();
                for name in chosen {
                    state.tasks.remove(&name);
                    if let Some(r) = part.tasks.remove(&name) {
                        state.tasks.insert(name, r);
                    }
                }
                // Duplicates of the names read replace what was known of them.
                let chosen =
                    |name: &str| all || select::selected(name, selection, &loaded.manifests);
                let known = state.duplicates.clone();
                state.duplicates.retain(|name, _| !chosen(name));
                state
                    .duplicates
                    .extend(part.duplicates.into_iter().filter(|(name, _)| chosen(name)));
                let duplicates_changed = state.duplicates != known;
                let mut out = String::new();
                for d in &drift {
                    match d {
                        Drift::Gone {
                            name,
                            task_id,
                            superseded,
                        } => out.push_str(&format!(
                            "deleted outside taskform: {name} (task {task_id}{}); record dropped\n",
                            if *superseded { ", superseded" } else { "" }
                        )),
                        Drift::Changed { name, task_id } => out.push_str(&format!(
                            "changed outside taskform: {name} (task {task_id}); the next plan shows the change\n"
                        )),
                        Drift::Duplicate {
                            name,
                            task_id,
                            same_content,
                        } => out.push_str(&format!(
                            "duplicate: {name} (task {task_id}) is another remote task of this name that no state records{}\n",
                            match same_content {
                                true => ", with exactly the content taskform sends; `taskform apply --prune` deletes it",
                                false => "; the plan lists it with what to do",
                            }
                        )),
                    }
                }
                let drifted = drift
                    .iter()
                    .filter(|d| !matches!(d, Drift::Duplicate { .. }))
                    .count();
                let duplicates = drift.len() - drifted;
                out.push_str(&match (drifted, duplicates) {
                    (0, 0) => format!(
                        "Refresh complete: no drift in {} task(s).\n",
                        state.tasks.len()
                    ),
                    (d, 0) => format!("Refresh complete: {d} drifted.\n"),
                    (d, n) => format!("Refresh complete: {d} drifted, {n} duplicate(s).\n"),
                });
                Ok((drifted > 0 || duplicates_changed, out))
            })
        },
    ))
}

type Step<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(bool, String), Error>> + Send + 'a>>;

/// Connects, locks and loads the state, runs `step` (which says whether it changed the
/// state, and what to print), and writes the state if it changed.
async fn with_state<F>(
    args: &ReadArgs,
    env: Env<'_>,
    command: &'static str,
    step: F,
) -> Result<Exit, Error>
where
    F: for<'a> FnOnce(&'a mut State, &'a Loaded, &'a Connection) -> Step<'a>,
{
    let environment = super::environment(&args.target, env);
    let loaded = load_manifests(&args.dir, environment.as_deref(), env)?;
    let scoped = loaded.settings.scope.over(env);
    let env: Env = &scoped;
    let conn = Connection::open(
        &args.target,
        &args.connect,
        command,
        env,
        &loaded.settings,
        &args.dir,
    )
    .await?;
    let store = super::open_store(&conn.resolved, &args.dir, env, command)?;
    let mut tx = Transaction::begin(
        store.as_ref(),
        &Holder::this_process(command),
        args.lock_timeout,
        TargetCheck::Exact(&conn.target),
    )?;
    let (changed, out) = step(tx.state_mut(), &loaded, &conn).await?;
    tx.commit(changed, Some(&conn.target))?;
    print!("{}", crate::render::escape_lines(&out));
    Ok(Exit::Ok)
}
