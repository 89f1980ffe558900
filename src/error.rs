//! How a taskform process ends: the exit codes (documented in the README and `--help`),
//! and the one error type commands return. Each stage has its own error enum; this one
//! wraps them, gives every error its exit code, and is printed in one place
//! ([`crate::cli`]).

use crate::load::diagnostic::Diagnostic;

/// How a taskform process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or nothing to do.
    Ok = 0,
    /// An error: invalid manifests, unusable state, a failed or in-doubt create, refused
    /// confirmation.
    Error = 1,
    /// `plan --detailed-exitcode` found something other than `unchanged`.
    Changes = 2,
    /// Interrupted by Ctrl-C or SIGTERM (what was in flight is recorded).
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Why a command failed, for a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Manifests with problems, each `file:line:col: message` with a hint.
    #[error("{} problem{} in {} file{}; nothing was planned or sent", .0.len(), if .0.len() == 1 { "" } else { "s" }, files(.0), if files(.0) == 1 { "" } else { "s" })]
    Invalid(Vec<Diagnostic>),
    /// Already told to the user in full (nothing more to print).
    #[error("see above")]
    Reported,
    /// The manifest folder cannot be read.
    #[error("{0}")]
    Folder(String),
    #[error(transparent)]
    LegacyState(#[from] crate::load::target::LegacyState),
    /// A `--state` location that cannot be used (a bad URL, schema or name).
    #[error(transparent)]
    Location(#[from] crate::location::LocationError),
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
    #[error(transparent)]
    Target(#[from] crate::state::TargetMismatch),
    #[error(transparent)]
    Remote(#[from] crate::remote::Error),
    #[error(transparent)]
    PlanFile(#[from] crate::plan::document::FileError),
    #[error(transparent)]
    PlanTarget(#[from] crate::plan::document::TargetChanged),
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::Error),
    #[error(transparent)]
    Persist(#[from] crate::reconcile::PersistFailed),
    /// A command's own refusal (missing target, no confirmation, tasks left in doubt).
    #[error("{0}")]
    Command(String),
}

fn files(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .map(|d| d.file.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        Exit::Error
    }
}

impl From<crate::load::LoadError> for Error {
    fn from(e: crate::load::LoadError) -> Self {
        match e {
            crate::load::LoadError::Dir(msg) => Error::Folder(msg),
            crate::load::LoadError::Invalid(diags) => Error::Invalid(diags),
        }
    }
}

impl From<crate::state::store::BeginError> for Error {
    fn from(e: crate::state::store::BeginError) -> Error {
        match e {
            crate::state::store::BeginError::Store(e) => Error::Store(e),
            crate::state::store::BeginError::Target(e) => Error::Target(e),
        }
    }
}
