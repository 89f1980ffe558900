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
    /// Which keys hold secrets, and whether to write them as they are.
    pub secrets: crate::reconcile::export::Secrets,
    /// Every environment the repo declares: shared manifests, patches, overlays.
    pub all_envs: bool,
}

/// `taskform export [DIR]`.
pub fn export(args: ExportArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(args: ExportArgs, env: Env<'_>) -> Result<Exit, Error> {
    if args.all_envs {
        return all_envs(args, env).await;
    }
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
    // A state folder this export creates ignores the lock files beside the state.
    let new_state_folder = new_state_folder(&conn.resolved);
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
        settings: settings_lines(&conn.resolved, &args.dir, args.connect.emulator),
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
        (args.force, &args.secrets),
    )
    .await
    .map_err(|e| Error::Command(e.to_string()))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "exported"
    );
    tx.commit(done.recorded > 0, Some(&conn.target))?;
    ignore_locks(new_state_folder);
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
    let summary = placeholders_summary(&done.placeholders, settings.secret_key.explicit);
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
    if let Some(summary) = summary {
        print!("{summary}");
    }
    Ok(match done.duplicates.is_empty() {
        true => Exit::Ok,
        false => Exit::Error,
    })
}

/// One summary of the variables an export's `${secret:...}` placeholders read: what
/// to provide wherever taskform plans or applies the folder.
fn placeholders_summary(
    placeholders: &[crate::reconcile::export::Placeholder],
    key_set: bool,
) -> Option<String> {
    if placeholders.is_empty() {
        return None;
    }
    let n = placeholders.len();
    let width = placeholders
        .iter()
        .map(|p| p.variable.len())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "\n{n} secret value{} written as ${{secret:NAME}}, never as {}; the state records {} fingerprint{}. Set {} wherever taskform plans or applies this folder:\n",
        if n == 1 { " was" } else { "s were" },
        if n == 1 { "it is" } else { "they are" },
        if n == 1 { "its" } else { "their" },
        if n == 1 { "" } else { "s" },
        if n == 1 {
            "this variable"
        } else {
            "these variables"
        },
    );
    for p in placeholders {
        out.push_str(&format!(
            "  {:width$}  {} {}\n",
            p.variable,
            escape(&p.task),
            escape(&p.path)
        ));
    }
    if !key_set {
        out.push_str(&format!(
            "{} was not set: the fingerprints were made with the fixed key. Set it (a long random value, the same for every run of this repo) and export again, or every task with a secret plans an update once it is set.\n",
            crate::load::secret::KEY_VAR
        ));
    }
    Some(out)
}

/// The folder of a file state that export creates: its `.gitignore` keeps the lock
/// file (the running process's) out of commits.
fn new_state_folder(resolved: &crate::load::target::Resolved) -> Option<PathBuf> {
    resolved
        .state
        .as_file()
        .map(crate::fsutil::parent_dir)
        .filter(|d| !d.exists())
        .map(std::path::Path::to_path_buf)
}

/// Writes `.gitignore` (`*.lock`) into a state folder export created.
fn ignore_locks(folder: Option<PathBuf>) {
    let Some(folder) = folder.filter(|f| f.is_dir() && !f.join(".gitignore").exists()) else {
        return;
    };
    let text = "# Written by `taskform export`: the lock beside the state is the running\n# process's, never committed.\n*.lock\n";
    if let Err(e) = crate::fsutil::write_atomic(&folder.join(".gitignore"), text.as_bytes()) {
        tracing::warn!(
            "cannot write {}: {e}",
            escape(&folder.join(".gitignore").display().to_string())
        );
    }
}

/// What a settings file written by export names besides the target: the state and
/// the endpoint, when they came from flags or the environment (so that the next
/// `plan DIR` finds them); never a password, never the built-in emulator's port.
fn settings_lines(
    resolved: &crate::load::target::Resolved,
    dir: &std::path::Path,
    built_in_emulator: bool,
) -> Vec<(String, serde_json::Value)> {
    use crate::load::target::StateSource;
    use crate::location::StateLocation;
    use serde_json::Value;
    let mut out = Vec::new();
    // The built-in emulator's port changes with every run; any other endpoint given
    // by flag or environment (a loopback one included) is where the tasks are.
    if let Some(e) = &resolved.endpoint
        && !built_in_emulator
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

/// `taskform export --all-envs DIR`: every environment of the repo, each listed once,
/// under its own lock; see `reconcile::export_envs`.
async fn all_envs(args: ExportArgs, env: Env<'_>) -> Result<Exit, Error> {
    super::refuse_target_flags_for_all_envs(&args.target, "exports")?;
    let shared = crate::load::settings::load(&args.dir, env).map_err(Error::Invalid)?;
    if shared.environments.is_empty() {
        return Err(Error::Command(format!(
            "--all-envs: {} declares no environments (write `environments:` first, or export one target without --all-envs)",
            args.dir.join(crate::load::settings::FILE_NAME).display()
        )));
    }
    let mut settings = Vec::new();
    for name in &shared.environments {
        settings.push(crate::load::manifest::settings_for(
            &args.dir,
            Some(name),
            env,
        )?);
    }
    let scopes: Vec<_> = settings.iter().map(|s| s.scope.over(env)).collect();
    let mut conns = Vec::new();
    let mut stores = Vec::new();
    let mut new_folders = Vec::new();
    for (s, scoped) in settings.iter().zip(&scopes) {
        let env: Env = scoped;
        let conn =
            Connection::open(&args.target, &args.connect, "export", env, s, &args.dir).await?;
        new_folders.push(new_state_folder(&conn.resolved));
        stores.push(super::open_store(&conn.resolved, &args.dir, env, "export")?);
        conns.push(conn);
    }
    let mut txs = Vec::new();
    for (store, conn) in stores.iter().zip(&conns) {
        txs.push(Transaction::begin(
            store.as_ref(),
            &Holder::this_process("export"),
            args.lock_timeout,
            TargetCheck::Exact(&conn.target),
        )?);
    }
    let started = std::time::Instant::now();
    let mut sides: Vec<crate::reconcile::export_envs::Side> = Vec::new();
    for (((name, s), conn), tx) in shared
        .environments
        .iter()
        .zip(&settings)
        .zip(&conns)
        .zip(txs.iter_mut())
    {
        sides.push(crate::reconcile::export_envs::Side {
            name: name.clone(),
            api: conn.api.clone(),
            settings: s,
            state: tx.state_mut(),
            key: s.secret_key.clone(),
        });
    }
    let done =
        crate::reconcile::export_envs::export_all(&mut sides, &args.dir, args.force, &args.secrets)
            .await
            .map_err(|e| Error::Command(e.to_string()))?;
    drop(sides);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "exported"
    );
    for (i, tx) in txs.into_iter().enumerate() {
        tx.commit(done.recorded[i] > 0, Some(&conns[i].target))?;
    }
    for folder in new_folders {
        ignore_locks(folder);
    }
    for (envname, what) in &done.unusable {
        tracing::warn!(
            "a task of {}'s listing has no usable name or ID ({}): left out",
            escape(envname),
            escape(what)
        );
    }
    for (name, why) in &done.left_out {
        tracing::warn!(
            "{} was left out: {}",
            escape(name),
            escape(&why.to_string())
        );
    }
    let envs = &shared.environments;
    let per_env = |counts: &[usize]| -> String {
        envs.iter()
            .zip(counts)
            .map(|(e, n)| format!("{e} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let exported: usize = done.recorded.iter().sum();
    println!(
        "Exported {} environments into {} ({} files): {} shared manifest{}; patches: {}; kept apart: {}; environment-only or apart manifests: {}.",
        envs.len(),
        args.dir.display(),
        done.files.len(),
        done.shared,
        if done.shared == 1 { "" } else { "s" },
        per_env(&done.patched),
        match done.apart.len() {
            0 => "none".to_string(),
            _ => done
                .apart
                .iter()
                .map(|(n, why)| format!("{} ({why})", escape(n)))
                .collect::<Vec<_>>()
                .join(", "),
        },
        per_env(&done.own),
    );
    for (i, store) in stores.iter().enumerate() {
        println!(
            "  {}: {} listed, {} recorded in {}{}",
            envs[i],
            done.listed[i],
            done.recorded[i],
            escape(&store.describe()),
            match done.managed[i] {
                0 => String::new(),
                n => format!(", {n} the state records already left as they are"),
            }
        );
    }
    if exported > 0 {
        println!(
            "Next: taskform plan --all-envs {}",
            super::shell_word(&args.dir)
        );
    }
    if let Some(summary) = placeholders_summary(
        &done.placeholders,
        settings.iter().all(|s| s.secret_key.explicit),
    ) {
        print!("{summary}");
    }
    use crate::reconcile::export_envs::LeftOut;
    Ok(
        match done
            .left_out
            .iter()
            .any(|(_, why)| *why != LeftOut::Managed)
        {
            true => Exit::Error,
            false => Exit::Ok,
        },
    )
}
