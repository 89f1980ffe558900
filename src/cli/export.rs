//! `taskform export [DIR]`: writes a manifest for every task of the workspace into
//! DIR and records them in the state (see `reconcile::export`).

use super::connect::{ConnectArgs, Connection};
use super::{Env, block_on};
use crate::error::{Error, Exit};
use crate::load::target::TargetFlags;
use crate::render::escape;
use crate::state::lock::Holder;
use crate::state::store::{TargetCheck, Transaction};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `taskform export`.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub connect: ConnectArgs,
    pub lock_timeout: Option<Duration>,
    /// Overwrite files that exist.
    pub force: bool,
}

/// `taskform export [DIR]`.
pub fn export(args: ExportArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(args: ExportArgs, env: Env<'_>) -> Result<Exit, Error> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::Folder(format!("cannot create {}: {e}", args.dir.display())))?;
    let environment = super::environment(&args.target, env);
    let settings = crate::load::manifest::settings_for(&args.dir, environment.as_deref(), env)?;
    let scoped = settings.scope.over(env);
    let env: Env = &scoped;
    let conn = Connection::open(
        &args.target,
        &args.connect,
        "export",
        env,
        &settings,
        &args.dir,
    )
    .await?;
    let store = super::open_store(&conn.resolved, &args.dir, env, "export")?;
    let mut tx = Transaction::begin(
        store.as_ref(),
        &Holder::this_process("export"),
        args.lock_timeout,
        TargetCheck::Exact(&conn.target),
    )?;
    // In a repo with environments, an environment's tasks go into its overlay: they
    // are its own until the team moves them to the shared manifests.
    let below = match (&settings.environment, &settings.overlay_rel) {
        (Some(_), Some(o)) => o.clone(),
        _ => String::new(),
    };
    let folder = match below.is_empty() {
        true => args.dir.clone(),
        false => args.dir.join(&below),
    };
    let dest = crate::reconcile::export::Destination {
        settings: settings_lines(&conn.resolved, &args.dir),
        folder,
        below,
    };
    let started = std::time::Instant::now();
    let done = crate::reconcile::export::export(
        &conn.api,
        &dest,
        &settings,
        &conn.target,
        tx.state_mut(),
        &settings.secret_key,
        args.force,
    )
    .await
    .map_err(|e| Error::Command(e.to_string()))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "exported"
    );
    tx.commit(done.recorded > 0, Some(&conn.target))?;
    for (name, tasks) in &done.duplicates {
        let list: Vec<String> = tasks
            .iter()
            .map(|(id, file)| format!("task {} in {}", escape(id), escape(file)))
            .collect();
        tracing::warn!(
            "{} remote tasks are named {}: {}. All were written and none was recorded: keep the file of the task the manifest is, delete the others (or rename them, and delete or rename their tasks in the console), then record it with `taskform state import {} TASK_ID --dir {}`",
            tasks.len(),
            escape(name),
            list.join(", "),
            escape(name),
            args.dir.display()
        );
    }
    for what in &done.unusable {
        tracing::warn!(
            "a task of the listing has no usable name or ID ({}): left out",
            escape(what)
        );
    }
    for (file, paths) in &done.secrets {
        tracing::warn!(
            "{} holds values that look like secrets, as the service returned them ({}): move each into ${{secret:NAME}} before committing the file",
            escape(file),
            paths.join(", ")
        );
    }
    for (name, id) in &done.kept {
        tracing::warn!(
            "{} is recorded in the state as task {}, not the one exported: the state was left as it is",
            escape(name),
            escape(id)
        );
    }
    let exported = done.tasks - done.managed;
    println!(
        "Exported {} task{} into {} ({} file{}{}); {} recorded in {}.{}{}",
        exported,
        if exported == 1 { "" } else { "s" },
        dest.folder.display(),
        done.files.len(),
        if done.files.len() == 1 { "" } else { "s" },
        match &done.settings_file {
            Some(f) => format!(" and {f}"),
            None => String::new(),
        },
        done.recorded,
        escape(&store.describe()),
        match done.managed {
            0 => String::new(),
            n => format!(" {n} the state records already were left as they are."),
        },
        match done.duplicates.len() {
            0 => String::new(),
            n => format!(
                " {n} name{} borne by several tasks left for you to decide (see above).",
                if n == 1 { " is" } else { "s are" }
            ),
        }
    );
    Ok(match done.duplicates.is_empty() {
        true => Exit::Ok,
        false => Exit::Error,
    })
}

/// What a settings file written by export names besides the target: the state and
/// the endpoint, when they came from flags or the environment (so that the next
/// `plan DIR` finds them); never a password, never the built-in emulator's port.
fn settings_lines(
    resolved: &crate::load::target::Resolved,
    dir: &std::path::Path,
) -> Vec<(String, serde_json::Value)> {
    use crate::load::target::StateSource;
    use crate::location::StateLocation;
    use serde_json::Value;
    let mut out = Vec::new();
    if let Some(e) = &resolved.endpoint
        && let Ok(url) = reqwest::Url::parse(e)
        && !crate::remote::client::is_loopback(&url)
    {
        out.push(("endpoint".to_string(), Value::String(e.clone())));
    }
    if matches!(resolved.state_source, StateSource::Flag | StateSource::Env) {
        match &resolved.state {
            StateLocation::File(p) => {
                let abs = std::env::current_dir()
                    .map(|c| crate::fsutil::normalize(&c.join(p)))
                    .unwrap_or_else(|_| p.clone());
                let base = std::env::current_dir()
                    .map(|c| crate::fsutil::normalize(&c.join(dir)))
                    .unwrap_or_else(|_| dir.to_path_buf());
                let rel = crate::fsutil::relative_to(&abs, &base)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| abs.display().to_string());
                out.push(("state".to_string(), Value::String(rel)));
            }
            StateLocation::Postgres(pg) => {
                out.push((
                    "state".to_string(),
                    Value::String(pg.url.without_password()),
                ));
                out.push(("state_name".to_string(), Value::String(pg.name.clone())));
                if pg.schema != crate::location::DEFAULT_SCHEMA {
                    out.push(("state_schema".to_string(), Value::String(pg.schema.clone())));
                }
            }
        }
    }
    out
}
