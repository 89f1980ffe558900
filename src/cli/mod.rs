//! Stage 5, the CLI: each command takes its options, calls the library and prints.
//! `main.rs` only parses arguments and calls these; this module is the one place that
//! prints errors ([`finish`]), and where the terminal's concerns live (the progress
//! bar in [`progress`], the confirmation prompt in [`prompt`]).

mod apply;
mod connect;
mod export;
mod files;
pub mod logging;
mod notify;
mod plan;
pub mod progress;
pub mod prompt;
mod read;
pub mod service;
mod shell;
mod state;
mod sync;
mod watch;

pub use apply::{ApplyArgs, apply};
pub use connect::ConnectArgs;
pub use export::{ExportArgs, export};
pub use files::{FmtArgs, ValidateArgs, diagnostics_json, fmt, schema, validate};
pub use notify::notify_test;
pub use plan::{PlanArgs, plan, show};
pub use read::{ReadArgs, import, refresh};
pub use shell::{BuildInfo, build_info, completions, man, version};
pub use state::{CopyArgs, StateArgs, StateCommand, state, state_copy};
pub use sync::{SyncArgs, sync};
pub use watch::{GitArgs, WatchArgs, watch};

use crate::error::{Error, Exit};
use crate::load::{self, Loaded};
use std::io::Write;
use std::path::Path;

/// How commands read the environment (tests pass their own).
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Prints an error for a person on stderr: `error: ...`, or for invalid manifests
/// every problem as `error: file:line:col: message` and a summary line. Messages quote
/// untrusted text (names, files, the server's words): control and bidi characters are
/// escaped visibly, line by line.
pub fn report(e: &Error) {
    use crate::render::escape_lines;
    let mut err = std::io::stderr().lock();
    match e {
        Error::Reported => {}
        Error::Invalid(diags) => {
            for d in diags {
                let _ = writeln!(err, "error: {}", escape_lines(&d.to_string()));
            }
            let _ = writeln!(err, "{e}");
        }
        other => {
            let _ = writeln!(err, "error: {}", escape_lines(&other.to_string()));
        }
    }
}

/// An error as [`report`] prints it, without the `error: ` prefixes: every problem of
/// invalid manifests on its own line, then the summary.
pub fn error_text(e: &Error) -> String {
    match e {
        Error::Invalid(diags) => diags
            .iter()
            .map(|d| d.to_string())
            .chain([e.to_string()])
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// Ends a command: an error is reported and gives its exit code.
fn finish(result: Result<Exit, Error>) -> Exit {
    result.unwrap_or_else(|e| {
        report(&e);
        e.exit()
    })
}

/// The environment a command runs for: `--env`, else `TASKFORM_ENV`.
pub fn environment(flags: &crate::load::target::TargetFlags, env: Env) -> Option<String> {
    flags
        .environment
        .clone()
        .or_else(|| env("TASKFORM_ENV"))
        .filter(|e| !e.is_empty())
}

/// `--all-envs` works on each environment against its own target and state: `--env`
/// and every target flag are refused (`verb`: "plans", "exports").
pub fn refuse_target_flags_for_all_envs(
    t: &crate::load::target::TargetFlags,
    verb: &str,
) -> Result<(), Error> {
    if t.environment.is_some() {
        return Err(Error::Command(format!(
            "--all-envs {verb} every environment: leave out --env"
        )));
    }
    let flags = [
        ("--endpoint", t.endpoint.is_some()),
        ("--region", t.region.is_some()),
        ("--project-id", t.project_id.is_some()),
        ("--workspace", t.workspace.is_some()),
        ("--state", t.state.is_some()),
        ("--state-name", t.state_name.is_some()),
        ("--state-schema", t.state_schema.is_some()),
    ];
    if let Some((flag, _)) = flags.iter().find(|(_, set)| *set) {
        return Err(Error::Command(format!(
            "--all-envs {verb} each environment against its own target and state: {flag} would point them all at one; leave it out, or name one environment with --env"
        )));
    }
    Ok(())
}

/// A path as a shell word: quoted when it holds anything but letters, digits and
/// `/._-` (escaped for the terminal either way), for the commands messages suggest.
pub(crate) fn shell_word(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    match s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
    {
        true => s,
        false => format!("'{}'", crate::render::escape(&s.replace('\'', "'\\''"))),
    }
}

/// Loads DIR (for an environment of a repo that declares them).
pub fn load_manifests(dir: &Path, environment: Option<&str>, env: Env) -> Result<Loaded, Error> {
    let started = std::time::Instant::now();
    let loaded = load::manifest::load_for(dir, environment, env)?;
    tracing::debug!(
        manifests = loaded.manifests.len(),
        files = loaded.file_digests.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "manifests loaded"
    );
    Ok(loaded)
}

/// The state store for a resolved target; a default location left empty while the
/// old default (in the working folder) holds a state is refused.
pub fn open_store(
    resolved: &crate::load::target::Resolved,
    dir: &Path,
    env: Env,
    command: &str,
) -> Result<Box<dyn crate::state::StateStore>, Error> {
    crate::load::target::check_legacy_state(resolved, dir)?;
    Ok(crate::state::open(&resolved.state, env, command)?)
}

/// Warns that DIR holds no manifest (apply refuses it without `--allow-empty`).
fn warn_if_empty(loaded: &Loaded, dir: &Path) {
    if loaded.manifests.is_empty() {
        tracing::warn!(
            "no manifests found in {}: check the folder (apply refuses an empty folder without --allow-empty)",
            dir.display()
        );
    }
}

/// Builds the runtime commands use: two workers suit the CLI's I/O-bound work.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Command(format!("cannot start the async runtime: {e}")))
}

/// Runs an async command on the runtime.
fn block_on<F: std::future::Future<Output = Result<Exit, Error>>>(f: F) -> Exit {
    finish(runtime().and_then(|rt| rt.block_on(f)))
}

/// `taskform emulator`.
pub fn emulator(cfg: crate::emulator::Config, modes: crate::emulator::Modes) -> Exit {
    block_on(async {
        crate::emulator::run_with(cfg, modes)
            .await
            .map(|_| Exit::Ok)
            .map_err(|e| Error::Command(format!("emulator: {e}")))
    })
}

/// Ctrl-C / SIGTERM: the first turns `cancel` true (no new sends; what is in flight
/// finishes and is recorded), the second exits at once (the journal keeps what was
/// sent).
fn cancel_on_signals(
    cancel: tokio::sync::watch::Sender<bool>,
    first: &'static str,
    warn: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        crate::signals::wait_for_shutdown().await;
        match warn {
            true => tracing::warn!("{first}"),
            false => tracing::info!("{first}"),
        }
        let _ = cancel.send(true);
        crate::signals::wait_for_shutdown().await;
        std::process::exit(Exit::Interrupted.code());
    })
}
