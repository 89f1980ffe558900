//! Exit codes, documented in the README and `--help`.

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
