//! `taskform watch [DIR]`: sets up each watched environment (settings, target,
//! credentials, the watchers' leadership held for its whole life, signals) and runs
//! [`reconcile::watch`] for it; with `--all-envs`, one per environment of the repo in
//! this process (each on a thread and runtime of its own), sharing one file watcher (a
//! folder) and one service.

use super::connect::{ConnectArgs, Connection};
use super::service::{EnvService, Metered, Service};
use super::{Env, block_on};
use crate::error::{Error, Exit};
use crate::load::settings;
use crate::load::target::{self, TargetFlags};
use crate::reconcile::applier::ApplyOptions;
use crate::reconcile::watch::{Observer as _, RevisionProblem};
use crate::reconcile::{self, Policy};
use crate::state::StateStore;
use crate::state::lock::{Holder, LockError};
use crate::state::store::{StoreError, StoreLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a standby waits for the leadership before looking again (and reporting).
const STANDBY_POLL: Duration = Duration::from_secs(2);

/// How many environments of `watch --all-envs` reconcile at once.
const ENVIRONMENTS_AT_ONCE: usize = 4;

/// Takes the watchers' leadership of the state, waiting as a standby while another
/// process holds it: `--lock-timeout` bounds the wait (none: as long as it takes, as a
/// replica does). `None` when cancelled while waiting.
async fn stand_by(
    store: &dyn StateStore,
    part: &EnvService,
    timeout: Option<Duration>,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Box<dyn StoreLock>>, Error> {
    let me = Holder::this_process("watch");
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut reported: Option<String> = None;
    loop {
        if *cancel.borrow() {
            return Ok(None);
        }
        // One quick try (no wait inside the store): the waiting is done here, so that
        // the other environments of `watch --all-envs` and the stop signal go on.
        let attempt = tokio::task::block_in_place(|| store.leadership(&me, None));
        match attempt {
            Ok(lock) => {
                if reported.is_some() {
                    tracing::info!("the leadership is free: this watcher takes over");
                }
                return Ok(Some(lock));
            }
            Err(StoreError::Lock(LockError::Held { holder, .. })) => {
                let holder = crate::render::escape(&holder).into_owned();
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(Error::Command(format!(
                        "another watcher of {} leads: {holder}; this one gave up waiting after --lock-timeout (leave it out to stand by as a replica)",
                        crate::render::escape(&store.describe())
                    )));
                }
                if reported.as_deref() != Some(holder.as_str()) {
                    tracing::info!(state = %crate::render::escape(&store.describe()), "standing by: another watcher leads ({holder}); this one takes over when it stops");
                    reported = Some(holder.clone());
                }
                part.standby(Some(holder), None);
            }
            Err(e) if timeout.is_none() => {
                // A replica keeps trying: the database may come back.
                tracing::warn!("standing by: {e}");
                part.standby(None, Some(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        let wait = match deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .min(STANDBY_POLL),
            None => STANDBY_POLL,
        };
        tokio::select! {
            _ = cancel.changed() => {}
            _ = tokio::time::sleep(wait) => {}
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
    /// `--all-envs`: every environment of the repo, in this process.
    pub all_envs: bool,
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

async fn run(args: WatchArgs, env: Env<'_>) -> Result<Exit, Error> {
    if let Some(g) = &args.git
        && Path::new(&g.path).components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        return Err(Error::Command(format!(
            "--path {} must be a folder inside the repository",
            g.path
        )));
    }
    if args.all_envs {
        super::refuse_target_flags_for_all_envs(&args.target, "watches")?;
    }
    // Probes answer from the start (a --git watcher may wait for its first good commit).
    let service = Service::new();
    if let Some(addr) = args.listen {
        let bound = service
            .clone()
            .serve(addr)
            .await
            .map_err(|e| Error::Command(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(%bound, "serving /healthz, /readyz, /status and /metrics");
    }
    service.enable_requests(
        env("TASKFORM_WEBHOOK_SECRET").filter(|s| !s.is_empty()),
        args.git.is_some(),
    );
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    super::cancel_on_signals(cancel_tx, "stopping: finishing creates in flight", false);
    if !args.all_envs {
        let environment = super::environment(&args.target, env);
        let part = service.environment(environment.clone());
        watch_environment(&args, env, environment, part, cancel, Shared::default()).await?;
        return Ok(Exit::Ok);
    }
    all_envs(&args, env, &service, cancel).await
}

/// What the environments of `watch --all-envs` share.
#[derive(Default)]
struct Shared {
    /// The folder's file events (one file watcher for them all).
    events: Option<mpsc::UnboundedReceiver<PathBuf>>,
    /// Reconciles at once.
    permits: Option<Arc<tokio::sync::Semaphore>>,
    /// With `--git`: this environment's own clone, below `--git-cache`.
    cache: Option<PathBuf>,
}

/// `watch --all-envs`: a watcher per environment of the repo, each against its own
/// target, state, lock and leadership; one that cannot start (its settings, its
/// database) is reported on /status and tried again, never blocking the others.
async fn all_envs(
    args: &WatchArgs,
    env: Env<'_>,
    service: &Arc<Service>,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Exit, Error> {
    // The environments: from the folder, or from a first fetch of the repository.
    let (names, base_cache) = match &args.git {
        None => (declared(&args.dir, env)?, None),
        Some(g) => {
            let cache = g
                .cache
                .clone()
                .unwrap_or_else(|| crate::load::git::default_cache(&g.url, env, Path::new(".")));
            let source = crate::load::git::GitSource {
                url: g.url.clone(),
                branch: g.branch.clone(),
                path: g.path.clone(),
                cache: cache.join("environments"),
            };
            let _lock = lock_cache(&source.cache)?;
            let rev = tokio::task::spawn_blocking(move || source.sync())
                .await
                .map_err(|e| Error::Command(e.to_string()))?
                .map_err(|e| Error::Command(e.to_string()))?;
            (declared(&rev.dir, env)?, Some(cache))
        }
    };
    tracing::info!(environments = %names.join(", "), "watching every environment");
    let permits = Arc::new(tokio::sync::Semaphore::new(ENVIRONMENTS_AT_ONCE));
    // One file watcher for the folder, its events sent to every environment.
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in &names {
        let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let _files = match args.git {
        Some(_) => None,
        None => {
            let root = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
            let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
            let handle = reconcile::events::start(&root, tx).map_err(Error::Command)?;
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    for s in &senders {
                        let _ = s.send(p.clone());
                    }
                }
            });
            Some(handle)
        }
    };
    let runs = names.iter().zip(receivers.iter_mut()).map(|(name, rx)| {
        let part = service.environment(Some(name.clone()));
        let shared_events = match args.git {
            None => rx.take(),
            Some(_) => None,
        };
        let cache = base_cache.as_ref().map(|c| c.join(name));
        let permits = permits.clone();
        let cancel = cancel.clone();
        let span = tracing::info_span!("environment", name = %crate::render::escape(name));
        let one = async move {
            let mut events = shared_events;
            loop {
                let shared = Shared {
                    events: events.take(),
                    permits: Some(permits.clone()),
                    cache: cache.clone(),
                };
                let result = watch_environment(
                    args,
                    env,
                    Some(name.clone()),
                    part.clone(),
                    cancel.clone(),
                    shared,
                )
                .await;
                part.stopped();
                let e = match result {
                    Ok(()) => return,
                    Err(e) => e,
                };
                let text = super::error_text(&e);
                let (first, rest) = crate::load::diagnostic::split_lines(&text);
                tracing::error!(
                    retry_in_secs = args.retry_interval.as_secs(),
                    "cannot watch this environment: {first}; the others go on; trying again"
                );
                for line in rest {
                    tracing::error!("  {line}");
                }
                part.setup_failed(&text);
                let mut stop = cancel.clone();
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(args.retry_interval.max(Duration::from_secs(1))) => {}
                }
                if *cancel.borrow() {
                    return;
                }
                // The file events were given to the run that ended: a new run of a
                // folder watches it itself.
            }
        };
        (name.clone(), tracing::Instrument::instrument(one, span))
    });
    let runs: Vec<_> = runs.collect();
    // Each environment on a thread and a runtime of its own: a reconcile's CPU work
    // and its state writes in one environment never hold back another's.
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            for (name, run) in runs {
                let spawned = std::thread::Builder::new()
                    .name(format!("env-{name}"))
                    .spawn_scoped(
                        scope,
                        move || match tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .thread_name(format!("env-{name}"))
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(run),
                            Err(e) => tracing::error!(
                                environment = %crate::render::escape(&name),
                                "cannot start this environment's runtime: {e}"
                            ),
                        },
                    );
                if let Err(e) = spawned {
                    tracing::error!("cannot start a thread for an environment: {e}");
                }
            }
        })
    });
    Ok(Exit::Ok)
}

/// The environments `dir`'s taskform.yaml declares (an error when none).
fn declared(dir: &Path, env: Env) -> Result<Vec<String>, Error> {
    let settings = settings::load(dir, env).map_err(Error::Invalid)?;
    if settings.environments.is_empty() {
        return Err(Error::Command(format!(
            "--all-envs: {} declares no environments",
            dir.join(settings::FILE_NAME).display()
        )));
    }
    Ok(settings.environments.clone())
}

/// Sets up one environment's watcher and runs it until cancelled.
async fn watch_environment(
    args: &WatchArgs,
    env: Env<'_>,
    environment: Option<String>,
    part: Arc<EnvService>,
    cancel: tokio::sync::watch::Receiver<bool>,
    shared: Shared,
) -> Result<(), Error> {
    let mut dir = args.dir.clone();
    // With --git, the first fetch gives the tree whose taskform.yaml names the target.
    // The cache is this watcher's for its whole life: another one's prune would remove
    // the tree it reads, and their fetches would race.
    let mut _cache_lock = None;
    let git = match &args.git {
        None => None,
        Some(g) => {
            let source = crate::load::git::GitSource {
                url: g.url.clone(),
                branch: g.branch.clone(),
                path: g.path.clone(),
                cache: shared.cache.clone().or(g.cache.clone()).unwrap_or_else(|| {
                    crate::load::git::default_cache(&g.url, env, std::path::Path::new("."))
                }),
            };
            _cache_lock = Some(lock_cache(&source.cache)?);
            // The first commit with usable settings names the target. Until there is
            // one (the remote unreachable, taskform.yaml invalid) the watcher stays up
            // and tries again every --poll, reporting on /status.
            let rev = loop {
                let first = source.clone();
                let fetched = tokio::task::spawn_blocking(move || first.sync())
                    .await
                    .map_err(|e| Error::Command(e.to_string()))?;
                let problem = match fetched {
                    Err(e @ crate::load::git::GitError::Unavailable(_)) => {
                        return Err(Error::Command(e.to_string()));
                    }
                    Err(e) => RevisionProblem::Fetch(e.to_string()),
                    Ok(rev) => match settings::load_for(&rev.dir, environment.as_deref(), env) {
                        Ok(_) => break rev,
                        Err(diags) => {
                            let problems = repo_problems(&diags, &rev.dir, &g.path);
                            for p in &problems {
                                tracing::error!("{p}");
                            }
                            RevisionProblem::Invalid {
                                sha: rev.sha.clone(),
                                subject: crate::load::diagnostic::escape(&rev.subject).into_owned(),
                                problems,
                            }
                        }
                    },
                };
                let text = match &problem {
                    RevisionProblem::Fetch(e) => e.clone(),
                    RevisionProblem::Invalid { sha, .. } => {
                        format!("the settings of revision {sha} are invalid")
                    }
                };
                tracing::error!(
                    retry_in_secs = g.poll.as_secs(),
                    "cannot start from the repository: {text}; trying again"
                );
                part.revision(None, Some(&problem));
                let mut stop = cancel.clone();
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    _ = tokio::time::sleep(g.poll) => {}
                }
            };
            tracing::info!(revision = %rev.sha, cache = %source.cache.display(), "fetched");
            dir = rev.dir.clone();
            Some(reconcile::watch::GitSpec {
                source,
                poll: g.poll,
            })
        }
    };
    if !dir.is_dir() {
        return Err(Error::Command(format!(
            "cannot watch {}: not a folder",
            dir.display()
        )));
    }
    let mut target_flags = args.target.clone();
    if environment.is_some() {
        target_flags.environment = environment.clone();
    }
    let settings = crate::load::manifest::settings_for(&dir, environment.as_deref(), env)?;
    let scoped = settings.scope.over(env);
    let env: Env = &scoped;
    let conn = match args.plan_only {
        true => None,
        false => Some(
            Connection::open(&target_flags, &args.connect, "watch", env, &settings, &dir).await?,
        ),
    };
    let resolved = match &conn {
        Some(c) => c.resolved.clone(),
        None => target::resolve(&target_flags, env, &settings, &dir)?,
    };
    // A state file inside the fetched trees would be left behind by the next commit;
    // one named outside them (an absolute path in taskform.yaml) is fine.
    let in_cache = |f: &Path| {
        git.as_ref()
            .is_some_and(|g| f.starts_with(&g.source.cache) || f.is_relative())
    };
    if git.is_some()
        && (resolved.state_source == target::StateSource::Default
            || (resolved.state_source == target::StateSource::Settings
                && resolved.state.as_file().is_some_and(in_cache)))
    {
        return Err(Error::Command(
            "with --git, the state cannot live in the fetched tree (each commit is a new folder): name a state file outside it with --state / TASKFORM_STATE (or an absolute path in taskform.yaml), or use a PostgreSQL state".into(),
        ));
    }
    let store = super::open_store(&resolved, &dir, env, "watch")?;
    let leadership = match args.plan_only {
        true => None,
        false => match stand_by(store.as_ref(), &part, args.lock_timeout, cancel.clone()).await? {
            Some(lock) => Some(lock),
            None => return Ok(()),
        },
    };
    match leadership.is_some() {
        true => part.leader(),
        false => part.plan_only(),
    }
    let mut holder = Holder::this_process("watch");
    if let Some(c) = &conn {
        holder = holder.sending(c.client.longest_send());
    }
    let observer: Arc<dyn reconcile::watch::Observer> = match settings.notify.as_deref() {
        Some(receivers) if !receivers.is_empty() => {
            let alerts =
                crate::alert::Alerts::new(receivers, env, part.tally()).map_err(Error::Command)?;
            tracing::info!(
                receivers = %receivers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
                "alerts go to the receivers of notify:"
            );
            Arc::new(crate::alert::watch::Both(
                part.clone(),
                Arc::new(crate::alert::watch::AlertObserver::new(
                    Arc::new(alerts),
                    environment.clone(),
                )),
            ))
        }
        _ => part.clone(),
    };
    let mut w = reconcile::watch::Watcher::new(
        reconcile::watch::Spec {
            dir,
            debounce: args.debounce,
            retry_interval: args.retry_interval,
            interval: args.interval,
            plan_only: args.plan_only,
            environment,
            git,
            apply: args.apply.clone(),
            policy: args.policy.clone(),
            by: crate::state::lock::user_at_host(env, "watch"),
        },
        env,
        resolved,
        store.as_ref(),
        leadership.as_deref(),
        holder,
        conn.as_ref().map(|c| {
            let api: Arc<dyn crate::remote::client::TaskApi> = Arc::new(Metered {
                inner: c.api.clone(),
                service: part.clone(),
            });
            (api, c.target.clone())
        }),
        cancel,
        observer,
    );
    let (tx, rx) = mpsc::unbounded_channel();
    part.external(tx);
    w.external = Some(rx);
    w.events = shared.events;
    w.permits = shared.permits;
    reconcile::watch::run(w).await?;
    Ok(())
}

/// Problems of a fetched tree, each as `path:line:col: message` with the path as in
/// the repository (the tree's folder left out, `--path` put back), escaped.
fn repo_problems(
    diags: &[crate::load::diagnostic::Diagnostic],
    tree_dir: &Path,
    path: &str,
) -> Vec<String> {
    diags
        .iter()
        .map(|d| {
            let file = match Path::new(&d.file).strip_prefix(tree_dir) {
                Ok(rel) => Path::new(path)
                    .join(rel)
                    .to_string_lossy()
                    .replace('\\', "/"),
                Err(_) => d.file.clone(),
            };
            let shown = crate::load::diagnostic::Diagnostic { file, ..d.clone() };
            crate::load::diagnostic::escape(&shown.to_string()).into_owned()
        })
        .collect()
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
