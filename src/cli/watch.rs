//! `taskform watch [DIR]`: sets up the watcher (settings, target, credentials, the
//! state lock held for its whole life, signals) and runs [`reconcile::watch`].

use super::connect::{ConnectArgs, Connection};
use super::service::{Metered, Service};
use super::{Env, block_on};
use crate::error::{Error, Exit};
use crate::load::settings;
use crate::load::target::{self, TargetFlags};
use crate::reconcile::applier::ApplyOptions;
use crate::reconcile::{self, Policy};
use crate::state::StateStore;
use crate::state::lock::{Holder, LockError};
use crate::state::store::{StoreError, StoreLock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a standby waits on the lock before looking again (and reporting).
const STANDBY_POLL: Duration = Duration::from_secs(2);

/// Takes the state lock, waiting as a standby while another process holds it:
/// `--lock-timeout` bounds the wait (none: as long as it takes, as a replica does).
/// `None` when cancelled while waiting.
async fn stand_by(
    store: &dyn StateStore,
    service: &Arc<Service>,
    (timeout, longest_send): (Option<Duration>, Option<Duration>),
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Box<dyn StoreLock>>, Error> {
    let mut me = Holder::this_process("watch");
    if let Some(longest) = longest_send {
        me = me.sending(longest);
    }
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut reported: Option<String> = None;
    loop {
        if *cancel.borrow() {
            return Ok(None);
        }
        let wait = match deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .min(STANDBY_POLL),
            None => STANDBY_POLL,
        };
        let attempt = tokio::task::block_in_place(|| store.lock(&me, Some(wait)));
        match attempt {
            Ok(lock) => {
                if reported.is_some() {
                    tracing::info!("the lock is free: this watcher takes over as the leader");
                }
                return Ok(Some(lock));
            }
            Err(StoreError::Lock(LockError::Held { holder, .. })) => {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(StoreError::Lock(LockError::Held {
                        state: store.describe(),
                        holder,
                    })
                    .into());
                }
                if reported.as_deref() != Some(holder.as_str()) {
                    tracing::info!(state = %store.describe(), "standing by: the state is locked by {holder}; this watcher takes over when it is released");
                    reported = Some(holder.clone());
                }
                service.standby(Some(holder), None);
            }
            Err(e) if timeout.is_none() => {
                // A replica keeps trying: the database may come back.
                tracing::warn!("standing by: {e}");
                service.standby(None, Some(e.to_string()));
                tokio::select! {
                    _ = cancel.changed() => {}
                    _ = tokio::time::sleep(STANDBY_POLL) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

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
    /// `--listen`: serve /healthz, /readyz, /status and /metrics here.
    pub listen: Option<std::net::SocketAddr>,
    /// `--git URL`: watch a repository instead of a local folder.
    pub git: Option<GitArgs>,
}

/// `watch --git URL [--branch] [--path] [--poll] [--git-cache]`.
#[derive(Debug, Clone)]
pub struct GitArgs {
    pub url: String,
    pub branch: String,
    pub path: String,
    pub poll: Duration,
    pub cache: Option<PathBuf>,
}

/// `taskform watch`.
pub fn watch(args: WatchArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

async fn run(mut args: WatchArgs, env: Env<'_>) -> Result<Exit, Error> {
    use crate::reconcile::watch::Observer as _;
    // Probes answer from the start (a --git watcher may wait for its first good commit).
    let early = Service::new(super::environment(&args.target, env));
    if let Some(addr) = args.listen {
        let bound = early
            .clone()
            .serve(addr)
            .await
            .map_err(|e| Error::Command(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(%bound, "serving /healthz, /readyz, /status and /metrics");
    }
    // With --git, the first fetch gives the tree whose taskform.yaml names the target.
    // The cache is this watcher's for its whole life: another one's prune would remove
    // the tree it reads, and their fetches would race.
    let mut _cache_lock = None;
    let git = match &args.git {
        None => None,
        Some(g) => {
            if std::path::Path::new(&g.path).components().any(|c| {
                !matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            }) {
                return Err(Error::Command(format!(
                    "--path {} must be a folder inside the repository",
                    g.path
                )));
            }
            let source = crate::load::git::GitSource {
                url: g.url.clone(),
                branch: g.branch.clone(),
                path: g.path.clone(),
                cache: g.cache.clone().unwrap_or_else(|| {
                    crate::load::git::default_cache(&g.url, env, std::path::Path::new("."))
                }),
            };
            _cache_lock = Some(lock_cache(&source.cache)?);
            // The first commit with usable settings names the target. Until there is
            // one (the remote unreachable, taskform.yaml invalid) the watcher stays up
            // and tries again every --poll, reporting on /status.
            let environment = super::environment(&args.target, env);
            let rev = loop {
                let first = source.clone();
                let fetched = tokio::task::spawn_blocking(move || first.sync())
                    .await
                    .map_err(|e| Error::Command(e.to_string()))?;
                let problem = match fetched {
                    Err(e @ crate::load::git::GitError::Unavailable(_)) => {
                        return Err(Error::Command(e.to_string()));
                    }
                    Err(e) => e.to_string(),
                    Ok(rev) => match settings::load_for(&rev.dir, environment.as_deref(), env) {
                        Ok(_) => break rev,
                        Err(diags) => {
                            for d in &diags {
                                tracing::error!("{}", crate::render::escape_lines(&d.to_string()));
                            }
                            format!("the settings of revision {} are invalid", rev.sha)
                        }
                    },
                };
                tracing::error!(
                    retry_in_secs = g.poll.as_secs(),
                    "cannot start from the repository: {problem}; trying again"
                );
                early.revision(None, Some(&problem));
                tokio::time::sleep(g.poll).await;
            };
            tracing::info!(revision = %rev.sha, cache = %source.cache.display(), "fetched");
            args.dir = rev.dir.clone();
            Some(reconcile::watch::GitSpec {
                source,
                poll: g.poll,
            })
        }
    };
    if !args.dir.is_dir() {
        return Err(Error::Command(format!(
            "cannot watch {}: not a folder",
            args.dir.display()
        )));
    }
    let environment = super::environment(&args.target, env);
    let settings = crate::load::manifest::settings_for(&args.dir, environment.as_deref(), env)?;
    let scoped = settings.scope.over(env);
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
    if git.is_some()
        && (resolved.state_source == target::StateSource::Default
            || (resolved.state_source == target::StateSource::Settings
                && resolved.state.as_file().is_some()))
    {
        return Err(Error::Command(
            "with --git, the state cannot live in the fetched tree (each commit is a new folder): name a state file outside it with --state / TASKFORM_STATE, or use a PostgreSQL state".into(),
        ));
    }
    let store = super::open_store(&resolved, &args.dir, env, "watch")?;
    let service = early;
    let (hook_tx, hook_rx) = tokio::sync::mpsc::unbounded_channel();
    if git.is_some() {
        service.enable_hook(
            hook_tx,
            env("TASKFORM_WEBHOOK_SECRET").filter(|s| !s.is_empty()),
        );
    }
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    super::cancel_on_signals(cancel_tx, "stopping: finishing creates in flight", false);
    let lock = match args.plan_only {
        true => None,
        false => match stand_by(
            store.as_ref(),
            &service,
            (
                args.lock_timeout,
                conn.as_ref().map(|c| c.client.longest_send()),
            ),
            cancel.clone(),
        )
        .await?
        {
            Some(lock) => Some(lock),
            None => return Ok(Exit::Ok),
        },
    };
    match lock.is_some() {
        true => service.leader(),
        false => service.plan_only(),
    }
    reconcile::watch::run(reconcile::watch::Watcher {
        spec: reconcile::watch::Spec {
            dir: args.dir,
            debounce: args.debounce,
            retry_interval: args.retry_interval,
            interval: args.interval,
            plan_only: args.plan_only,
            environment,
            git,
            apply: args.apply,
            policy: args.policy,
            by: crate::state::lock::user_at_host(env, "watch"),
        },
        env,
        resolved,
        store: store.as_ref(),
        lock: lock.as_deref(),
        remote: conn.as_ref().map(|c| {
            let api: Arc<dyn crate::remote::client::TaskApi> = Arc::new(Metered {
                inner: c.api.clone(),
                service: service.clone(),
            });
            (api, c.target.clone())
        }),
        cancel,
        observer: service.clone(),
        hooks: Some(hook_rx),
        cache: Default::default(),
        revision: Default::default(),
    })
    .await?;
    Ok(Exit::Ok)
}

/// Takes the git cache for this watcher (`<cache>/taskform.lock`), or says which
/// process has it.
fn lock_cache(cache: &std::path::Path) -> Result<crate::state::lock::FileLock, Error> {
    use crate::state::lock::{self, Holder, LockError};
    let shown = crate::render::escape_lines(&cache.display().to_string());
    lock::acquire(
        &cache.join("taskform.lock"),
        &shown,
        &Holder::this_process("watch"),
        None,
    )
    .map_err(|e| match e {
        LockError::Held { holder, .. } => Error::Command(format!(
            "the git cache {shown} is in use by {holder}: two watchers cannot share one (each prunes the trees it does not use); give each its own --git-cache"
        )),
        LockError::Io { path, source } => Error::Command(format!(
            "cannot lock the git cache with {}: {source}",
            crate::render::escape_lines(&path)
        )),
    })
}
