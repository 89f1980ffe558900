//! The commands behind the CLI: each takes its options, does its work and returns the
//! process's [`Exit`]. `main.rs` only parses arguments and calls these.
//!
//! Inside, steps return `Result<_, String>`: an `Err` is a message for a person,
//! printed as `error: ...` with exit status 1.

mod apply;
mod connect;
mod lifecycle;
pub mod logging;
mod plan;
mod read;
mod watch;

pub use apply::{ApplyArgs, apply};
pub use connect::ConnectArgs;
pub use lifecycle::{DEFAULT_MAX_DELETES, Lifecycle};
pub use plan::{PlanArgs, plan, show};
pub use read::{ReadArgs, import, refresh};
pub use watch::{WatchArgs, watch};

use crate::error::Exit;
use crate::load::diagnostic::Diagnostic;
use crate::load::manifest::{self, LoadError, Loaded};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How commands read the environment (tests pass their own).
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Prints an error for a person on stderr.
pub fn report_error(message: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

/// Runs a step, turning an error message into exit status 1.
fn finish(result: Result<Exit, String>) -> Exit {
    result.unwrap_or_else(|msg| {
        if !msg.is_empty() {
            report_error(msg);
        }
        Exit::Error
    })
}

fn report_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "error: {d}");
    }
    let files: std::collections::BTreeSet<&str> = diags.iter().map(|d| d.file.as_str()).collect();
    let _ = writeln!(
        err,
        "{} problem{} in {} file{}; nothing was planned or sent",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
}

/// Loads DIR. Problems are printed; the `Err` is then empty (already reported).
pub fn load_manifests(dir: &Path, env: Env) -> Result<Loaded, String> {
    let started = std::time::Instant::now();
    match manifest::load(dir, env) {
        Ok(loaded) => {
            tracing::debug!(
                manifests = loaded.manifests.len(),
                files = loaded.file_digests.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "manifests loaded"
            );
            Ok(loaded)
        }
        Err(LoadError::Dir(msg)) => Err(msg),
        Err(LoadError::Invalid(diags)) => {
            report_diagnostics(&diags);
            Err(String::new())
        }
    }
}

/// `taskform validate [DIR]`.
pub fn validate(dir: PathBuf, env: Env) -> Exit {
    finish(load_manifests(&dir, env).map(|l| {
        let (m, f) = (l.manifests.len(), l.file_digests.len());
        println!(
            "{m} task{} in {f} file{} valid.",
            if m == 1 { "" } else { "s" },
            if f == 1 { " is" } else { "s are" }
        );
        Exit::Ok
    }))
}

/// Builds the runtime commands use: two workers suit the CLI's I/O-bound work.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// `taskform emulator`.
pub fn emulator(cfg: crate::emulator::Config) -> Exit {
    finish(runtime().and_then(|rt| {
        rt.block_on(crate::emulator::run(cfg))
            .map(|_| Exit::Ok)
            .map_err(|e| format!("emulator: {e}"))
    }))
}
