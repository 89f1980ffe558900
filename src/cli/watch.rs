//! `taskform watch [DIR]`: sets up the watcher (settings, target, credentials, the
//! state lock held for its whole life, signals) and runs [`reconcile::watch`].

use super::connect::{ConnectArgs, Connection};
use super::{Env, block_on};
use crate::error::{Error, Exit};
use crate::load::settings;
use crate::load::target::{self, TargetFlags};
use crate::reconcile::applier::ApplyOptions;
use crate::reconcile::{self, Policy};
use crate::state::lock::Holder;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `taskform watch`.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub apply: ApplyOptions,
    pub debounce: Duration,
    pub retry_interval: Duration,
    pub interval: Option<Duration>,
    pub plan_only: bool,
    pub lock_timeout: Option<Duration>,
    pub connect: ConnectArgs,
    /// `on_change`, `--prune` (with its guard), `--refresh`, `--adopt`.
    pub policy: Policy,
}

/// `taskform watch`.
pub fn watch(args: WatchArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(args: WatchArgs, env: Env<'_>) -> Result<Exit, Error> {
    if !args.dir.is_dir() {
        return Err(Error::Command(format!(
            "cannot watch {}: not a folder",
            args.dir.display()
        )));
    }
    let environment = super::environment(&args.target, env);
    let settings =
        settings::load_for(&args.dir, environment.as_deref(), env).map_err(Error::Invalid)?;
    if environment.is_none() && !settings.environments.is_empty() {
        return Err(Error::Folder(crate::load::manifest::choose_environment(
            &args.dir,
            &settings.environments,
        )));
    }
    let scope = settings.scope.clone();
    let scoped = move |k: &str| scope.lookup(k, env);
    let env: Env = &scoped;
    let conn = match args.plan_only {
        true => None,
        false => Some(
            Connection::open(
                &args.target,
                &args.connect,
                "watch",
                env,
                &settings,
                &args.dir,
            )
            .await?,
        ),
    };
    let resolved = match &conn {
        Some(c) => c.resolved.clone(),
        None => target::resolve(&args.target, env, &settings, &args.dir)?,
    };
    let store = super::open_store(&resolved, &args.dir, env, "watch")?;
    let lock = match args.plan_only {
        true => None,
        false => Some(store.lock(&Holder::this_process("watch"), args.lock_timeout)?),
    };
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    super::cancel_on_signals(cancel_tx, "stopping: finishing creates in flight", false);
    reconcile::watch::run(reconcile::watch::Watcher {
        spec: reconcile::watch::Spec {
            dir: args.dir,
            debounce: args.debounce,
            retry_interval: args.retry_interval,
            interval: args.interval,
            plan_only: args.plan_only,
            environment,
            apply: args.apply,
            policy: args.policy,
        },
        env,
        resolved,
        store: store.as_ref(),
        lock: lock.as_deref(),
        remote: conn.as_ref().map(|c| (c.api.clone(), c.target.clone())),
        cancel,
    })
    .await?;
    Ok(Exit::Ok)
}
