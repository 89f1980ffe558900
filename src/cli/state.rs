//! `taskform state list|show|rm|mv|import`: look at the state and edit it by hand,
//! under the state lock, through the same store as apply (serial + 1, lineage kept,
//! an earlier run's journal folded in first). Nothing changes on the server.

use super::connect::{ConnectArgs, Connection};
use super::{Env, block_on, load_manifests};
use crate::error::{Error, Exit};
use crate::load::target::{self, Resolved, TargetFlags};
use crate::reconcile::records::{self, Imported};
use crate::render::{self, Format, escape};
use crate::state::store::{TargetCheck, Transaction};
use crate::state::{self, Forgotten, State, StateStore, lock::Holder};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// What `taskform state` does.
#[derive(Debug, Clone)]
pub enum StateCommand {
    List,
    Show {
        name: String,
    },
    Rm {
        names: Vec<String>,
    },
    Mv {
        old: String,
        new: String,
    },
    Import {
        name: String,
        task_id: String,
    },
    /// `taskform suspend --reason TEXT`.
    Suspend {
        reason: String,
    },
    /// `taskform resume`.
    Resume,
}

/// Options of `taskform state`.
#[derive(Debug, Clone)]
pub struct StateArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub lock_timeout: Option<Duration>,
    /// For `import` (reads the task with show).
    pub connect: ConnectArgs,
}

/// `taskform state ...`.
pub fn state(cmd: StateCommand, args: StateArgs, env: Env) -> Exit {
    block_on(run(cmd, args, env))
}

async fn run(cmd: StateCommand, args: StateArgs, env: Env<'_>) -> Result<Exit, Error> {
    if let StateCommand::Import { name, task_id } = &cmd {
        return import(&args, env, name, task_id).await;
    }
    let environment = super::environment(&args.target, env);
    let settings = crate::load::manifest::settings_for(&args.dir, environment.as_deref(), env)?;
    let scoped = settings.scope.over(env);
    let env: Env = &scoped;
    let resolved = target::resolve(&args.target, env, &settings, &args.dir)?;
    let store = super::open_store(&resolved, &args.dir, env, "state")?;
    match cmd {
        StateCommand::List => {
            let state = store.load()?;
            let resume = format!("taskform resume{}", again(&args, environment.as_deref()));
            print!("{}", list(&state, &store.describe(), args.format, &resume));
        }
        StateCommand::Show { name } => {
            let state = store.load()?;
            print!("{}", show(&state, &name, args.format)?);
        }
        StateCommand::Rm { names } => {
            let mut tx = locked(store.as_ref(), &resolved, args.lock_timeout, "state rm")?;
            let mut out = String::new();
            for name in &names {
                let Some(r) = tx.state_mut().forget(name) else {
                    return Err(Error::Command(format!(
                        "the state {} records no task named {}; nothing was changed",
                        store.describe(),
                        escape(name)
                    )));
                };
                out.push_str(&match r {
                    Forgotten::InDoubt => format!("forgot {} (in doubt)\n", escape(name)),
                    Forgotten::Task(r) => format!(
                        "forgot {} (task {}{}); it stays on the server\n",
                        escape(name),
                        escape(&r.task_id),
                        match r.superseded.len() {
                            0 => String::new(),
                            n => format!(" and {n} superseded"),
                        }
                    ),
                });
            }
            let state = tx.commit(true, None)?;
            print!("{out}{}", written(&state, store.as_ref()));
        }
        StateCommand::Mv { old, new } => {
            let mut tx = locked(store.as_ref(), &resolved, args.lock_timeout, "state mv")?;
            tx.state_mut()
                .rename(&old, &new)
                .map_err(|e| Error::Command(e.to_string()))?;
            let state = tx.commit(true, None)?;
            print!(
                "moved {} to {} (task {})\n{}",
                escape(&old),
                escape(&new),
                escape(&state.tasks[&new].task_id),
                written(&state, store.as_ref())
            );
        }
        StateCommand::Suspend { reason } => {
            let mut tx = locked(store.as_ref(), &resolved, args.lock_timeout, "suspend")?;
            let before = tx.state().suspended.clone();
            tx.state_mut().suspended = Some(state::Suspension {
                by: crate::state::lock::user_at_host(env, "suspend"),
                at: crate::clock::now_rfc3339(),
                reason: reason.clone(),
            });
            let state = tx.commit(true, None)?;
            let flag = again(&args, environment.as_deref());
            if let Some(b) = before {
                println!(
                    "It was already suspended by {} at {}: {}; the new reason replaces it.",
                    escape(&b.by),
                    escape(&b.at),
                    escape(&b.reason)
                );
            }
            print!(
                "Suspended {}: {}\nWatchers of it keep fetching and planning, and send nothing; `taskform apply{flag}` refuses without --ignore-suspend. Resume with `taskform resume{flag}`.\n{}",
                escape(&store.describe()),
                escape(&reason),
                written(&state, store.as_ref())
            );
        }
        StateCommand::Resume => {
            let mut tx = locked(store.as_ref(), &resolved, args.lock_timeout, "resume")?;
            let Some(was) = tx.state_mut().suspended.take() else {
                println!(
                    "{} is not suspended; nothing was changed.",
                    escape(&store.describe())
                );
                return Ok(Exit::Ok);
            };
            let state = tx.commit(true, None)?;
            print!(
                "Resumed {} (suspended by {} at {}: {}). Its watchers apply at once.\n{}",
                escape(&store.describe()),
                escape(&was.by),
                escape(&was.at),
                escape(&was.reason),
                written(&state, store.as_ref())
            );
        }
        StateCommand::Import { .. } => {}
    }
    Ok(Exit::Ok)
}

/// Takes the lock and loads the state, refusing one of another target.
fn locked<'s>(
    store: &'s dyn StateStore,
    resolved: &Resolved,
    timeout: Option<Duration>,
    command: &str,
) -> Result<Transaction<'s>, Error> {
    Ok(Transaction::begin(
        store,
        &Holder::this_process(command),
        timeout,
        TargetCheck::Known {
            project_id: resolved.project_id.as_deref(),
            workspace: resolved.workspace.as_deref(),
        },
    )?)
}

/// The flags that name this state again in a suggested command: the environment, a
/// folder other than `.`, a state file given by flag (a PostgreSQL URL is not repeated:
/// it may hold a password; the environment or taskform.yaml names it).
fn again(args: &StateArgs, environment: Option<&str>) -> String {
    let mut s = crate::plan::document::env_flag(environment);
    if args.dir != std::path::Path::new(".") {
        s.push_str(&format!(" --dir {}", super::shell_word(&args.dir)));
    }
    if let Some(st) = &args.target.state
        && !crate::location::is_postgres_url(st)
    {
        s.push_str(&format!(
            " --state {}",
            super::shell_word(std::path::Path::new(st))
        ));
    }
    s
}

fn written(state: &State, store: &dyn StateStore) -> String {
    format!(
        "State {} written (serial {}).\n",
        escape(&store.describe()),
        state.serial
    )
}

/// `taskform state import NAME TASK_ID`.
async fn import(args: &StateArgs, env: Env<'_>, name: &str, task_id: &str) -> Result<Exit, Error> {
    let environment = super::environment(&args.target, env);
    let loaded = load_manifests(&args.dir, environment.as_deref(), env)?;
    let scoped = loaded.settings.scope.over(env);
    let env: Env = &scoped;
    let conn = Connection::open(
        &args.target,
        &args.connect,
        "state import",
        env,
        &loaded.settings,
        &args.dir,
    )
    .await?;
    let store = super::open_store(&conn.resolved, &args.dir, env, "state import")?;
    let mut tx = Transaction::begin(
        store.as_ref(),
        &Holder::this_process("state import"),
        args.lock_timeout,
        TargetCheck::Exact(&conn.target),
    )?;
    let how = records::import_by_id(
        tx.state_mut(),
        &loaded.manifests,
        name,
        task_id,
        conn.api.as_ref(),
        &loaded.settings.secret_key,
    )
    .await
    .map_err(|e| Error::Command(e.to_string()))?;
    if how == Imported::Unread {
        tracing::warn!(
            task = %escape(name),
            task_id = %escape(task_id),
            "the endpoint offers no show: recorded as holding the manifest's content without reading it; if it differs, the next update will not show it"
        );
    }
    let state = tx.commit(true, Some(&conn.target))?;
    print!(
        "imported {} as task {} ({})\n{}",
        escape(name),
        escape(task_id),
        match how {
            Imported::Same => "same content",
            Imported::Differs => "content differs: the next plan shows the change",
            Imported::Unread => "not read: the endpoint offers no show",
        },
        written(&state, store.as_ref())
    );
    Ok(Exit::Ok)
}

/// The recorded tasks, a line each (or one JSON document).
fn list(state: &State, location: &str, format: Format, resume: &str) -> String {
    if format == Format::Json {
        let tasks: Vec<serde_json::Value> = state
            .tasks
            .iter()
            .map(|(name, r)| {
                json!({"name": name, "task_id": r.task_id, "hash": r.hash, "file": r.file,
                       "applied_at": r.applied_at,
                       "superseded": r.superseded.iter().map(|s| &s.task_id).collect::<Vec<_>>()})
            })
            .collect();
        let in_doubt: Vec<serde_json::Value> = state
            .in_doubt
            .iter()
            .map(|(name, d)| json!({"name": name, "hash": d.hash, "file": d.file, "sent_at": d.sent_at}))
            .collect();
        let doc = json!({"format_version": "1", "state": location, "lineage": state.lineage,
                         "serial": state.serial, "target": state.target, "tasks": tasks, "in_doubt": in_doubt,
                         "last_applied": state.last_applied, "suspended": state.suspended});
        let mut s = render::json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default());
        s.push('\n');
        return s;
    }
    let mut out = String::new();
    for (name, r) in &state.tasks {
        out.push_str(&format!(
            "{}  task {}  {}  {}  {}\n",
            escape(name),
            escape(&r.task_id),
            short(&r.hash),
            escape(r.file.as_deref().unwrap_or("-")),
            escape(r.applied_at.as_deref().unwrap_or("-")),
        ));
        for s in &r.superseded {
            out.push_str(&format!("    superseded task {}\n", escape(&s.task_id)));
        }
    }
    for (name, d) in &state.in_doubt {
        out.push_str(&format!(
            "{}  in doubt since {}\n",
            escape(name),
            escape(d.sent_at.as_deref().unwrap_or("?"))
        ));
    }
    out.push_str(&format!(
        "{} task(s), {} in doubt, in {} (serial {}).\n",
        state.tasks.len(),
        state.in_doubt.len(),
        escape(location),
        state.serial
    ));
    if let Some(s) = &state.suspended {
        out.push_str(&format!(
            "Suspended by {} at {}: {}. Watchers send nothing; apply refuses until `{resume}`.\n",
            escape(&s.by),
            escape(&s.at),
            escape(&s.reason)
        ));
    }
    match &state.last_applied {
        Some(
            l @ crate::state::LastApplied {
                revision: Some(rev),
                ..
            },
        ) => out.push_str(&format!(
            "Live revision: {} ({}), applied {}.\n",
            escape(rev),
            escape(l.subject.as_deref().unwrap_or("")),
            escape(&l.at)
        )),
        Some(l) => out.push_str(&format!(
            "Last applied {} by {}, not from a watched revision.\n",
            escape(&l.at),
            escape(l.by.as_deref().unwrap_or("a command"))
        )),
        None => {}
    }
    out
}

fn short(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    format!("sha256:{}", hex.chars().take(12).collect::<String>())
}

/// Every scalar below a secret-looking key (`password`, `token`...) shown as
/// `(sensitive)`.
fn hide_secret_keys(
    v: &mut serde_json::Value,
    keys: &crate::load::export::SecretKeys,
    under: bool,
) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                hide_secret_keys(v, keys, under || (k != "name" && keys.matches(k)));
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| hide_secret_keys(i, keys, under)),
        Value::Null => {}
        scalar if under => *scalar = Value::String(render::SENSITIVE.into()),
        _ => {}
    }
}

/// One record and its stored body (sensitive values shown as `(sensitive)`).
fn show(state: &State, name: &str, format: Format) -> Result<String, Error> {
    let r = state.tasks.get(name).ok_or_else(|| {
        Error::Command(format!("the state records no task named {}", escape(name)))
    })?;
    let body = r
        .body
        .as_ref()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b.get()).ok())
        .map(|b| {
            // A record written before a value became `${secret:...}` (by an export
            // with --plaintext-secrets, or an older taskform) may hold it in plain
            // text until the next apply rewrites it: values of secret-looking keys
            // are never shown.
            let mut b = render::redacted(&b);
            hide_secret_keys(&mut b, &crate::load::export::SecretKeys::default(), false);
            b
        });
    if format == Format::Json {
        let doc = json!({"name": name, "task_id": r.task_id, "hash": r.hash, "file": r.file,
                         "applied_at": r.applied_at, "superseded": r.superseded, "body": body});
        let mut s = render::json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default());
        s.push('\n');
        return Ok(s);
    }
    let mut out = format!(
        "name: {}\ntask_id: {}\nhash: {}\nfile: {}\napplied_at: {}\n",
        escape(name),
        escape(&r.task_id),
        r.hash,
        escape(r.file.as_deref().unwrap_or("-")),
        escape(r.applied_at.as_deref().unwrap_or("-"))
    );
    for s in &r.superseded {
        out.push_str(&format!("superseded: task {}\n", escape(&s.task_id)));
    }
    match body {
        Some(b) => out.push_str(&format!(
            "body:\n{}\n",
            render::escape_lines(&serde_json::to_string_pretty(&b).unwrap_or_default())
        )),
        None => out.push_str("body: (not recorded)\n"),
    }
    Ok(out)
}

/// Options of `taskform state copy` (no Debug: SRC and DST may hold a password).
#[derive(Clone)]
pub struct CopyArgs {
    /// A state file path or a `postgres://` URL.
    pub src: String,
    pub dst: String,
    /// `--state-name`: the name on a PostgreSQL side (both, unless `to_state_name`).
    pub state_name: Option<String>,
    /// `--to-state-name`: the destination's name, when both sides are PostgreSQL.
    pub to_state_name: Option<String>,
    pub state_schema: Option<String>,
    pub lock_timeout: Option<Duration>,
    pub force: bool,
    /// `--move`: retire the source (a tombstone naming the destination).
    pub move_source: bool,
}

/// `taskform state copy SRC DST`.
pub fn state_copy(args: CopyArgs, env: Env) -> Exit {
    super::finish(copy(&args, env))
}

fn copy(args: &CopyArgs, env: Env) -> Result<Exit, Error> {
    use crate::location::StateLocation;
    let name = args
        .state_name
        .clone()
        .or_else(|| env("TASKFORM_STATE_NAME").filter(|n| !n.is_empty()));
    let schema = args
        .state_schema
        .clone()
        .or_else(|| env("TASKFORM_STATE_SCHEMA").filter(|n| !n.is_empty()));
    let to_name = args.to_state_name.clone().or(name.clone());
    // A state name applies to the PostgreSQL side(s) only.
    let at = |value: &str, name: Option<&str>| -> Result<StateLocation, Error> {
        let pg = crate::location::is_postgres_url(value);
        Ok(StateLocation::parse(
            value,
            name.filter(|_| pg),
            schema.as_deref(),
        )?)
    };
    let src = at(&args.src, name.as_deref())?;
    let dst = at(&args.dst, to_name.as_deref())?;
    let src_store = state::open(&src, env, "state copy")?;
    let dst_store = state::open(&dst, env, "state copy")?;
    let me = Holder::this_process("state copy");
    // The tombstone names the destination so that it can be found from anywhere: a
    // file by its absolute path, a PostgreSQL state by its URL (no password).
    let move_to = args.move_source.then(|| match &dst {
        StateLocation::File(p) => std::path::absolute(p)
            .map(|a| crate::fsutil::normalize(&a).display().to_string())
            .unwrap_or_else(|_| p.display().to_string()),
        StateLocation::Postgres(_) => dst_store.describe(),
    });
    let c = state::copy::copy(
        src_store.as_ref(),
        dst_store.as_ref(),
        &me,
        args.lock_timeout,
        args.force,
        move_to.as_deref(),
    )?;
    let replaced = match &c.replaced {
        Some((lineage, serial)) if *lineage != c.lineage => {
            format!(", replacing another state (lineage {lineage}, serial {serial})")
        }
        Some((_, serial)) if *serial != c.serial => format!(", replacing serial {serial}"),
        _ => String::new(),
    };
    println!(
        "Copied the state {} to {} (lineage {}, serial {}, {} task{}{}){}.",
        escape(&src_store.describe()),
        escape(&dst_store.describe()),
        escape(&c.lineage),
        c.serial,
        c.tasks,
        if c.tasks == 1 { "" } else { "s" },
        match c.in_doubt {
            0 => String::new(),
            n => format!(", {n} in doubt"),
        },
        escape(&replaced)
    );
    if c.moved {
        println!(
            "{} now holds only a tombstone naming {}: a run against it is refused with where the state went.",
            escape(&src_store.describe()),
            escape(&dst_store.describe())
        );
    }
    Ok(Exit::Ok)
}
