//! `taskform completions`, `taskform man` and `taskform version`: the shell's view of
//! taskform. Completions and the man page are generated from the same clap
//! definition that parses the arguments (`main.rs` passes it in), so they never drift.

use crate::error::{Error, Exit};
use std::io::Write;

/// `taskform completions SHELL`: the completion script on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Exit {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "taskform", &mut out);
    write_stdout(&out)
}

/// `taskform man`: the man page (roff) on stdout.
pub fn man(cmd: clap::Command) -> Exit {
    let mut out = Vec::new();
    match clap_mangen::Man::new(cmd).render(&mut out) {
        Ok(()) => write_stdout(&out),
        Err(e) => super::finish(Err(Error::Command(format!(
            "cannot render the man page: {e}"
        )))),
    }
}

fn write_stdout(bytes: &[u8]) -> Exit {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Exit::Ok,
        // A closed pipe (`taskform man | head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => super::finish(Err(Error::Command(format!("cannot write: {e}")))),
    }
}

/// What this binary is: set at build time (`build.rs`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    /// The git commit built (`git rev-parse --short=12 HEAD`, or `TASKFORM_COMMIT`),
    /// `unknown` outside a git checkout.
    pub commit: &'static str,
    /// `YYYY-MM-DD`: from `SOURCE_DATE_EPOCH` when set (reproducible builds), else
    /// the day the build script last ran.
    pub build_date: &'static str,
    /// The target triple (`x86_64-unknown-linux-gnu`).
    pub target: &'static str,
}

/// This binary's build information.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("TASKFORM_COMMIT"),
        build_date: env!("TASKFORM_BUILD_DATE"),
        target: env!("TASKFORM_TARGET"),
    }
}

/// `taskform version [--format json]`.
pub fn version(json: bool) -> Exit {
    let info = build_info();
    let text = if json {
        let mut t = serde_json::to_string_pretty(&info).unwrap_or_default();
        t.push('\n');
        t
    } else {
        format!(
            "taskform {} (commit {}, built {}, {})\n",
            info.version, info.commit, info.build_date, info.target
        )
    };
    write_stdout(text.as_bytes())
}
