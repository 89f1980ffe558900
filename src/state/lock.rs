//! The state lock: an exclusive OS file lock on `<state>.lock`.
//!
//! The OS releases the lock when its holder exits, however it exits, so a lock left by
//! a dead process never blocks anyone. The file holds who took it (pid, command, start
//! time, host) so that a refused process can say who holds the state.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// `apply`, `watch`...
    pub command: String,
    pub started_at: String,
    #[serde(default)]
    pub host: String,
    /// The longest one request of this holder can take (its HTTP timeout, and a token
    /// fetch before it), in milliseconds: a holder that takes over after this one died
    /// while sending waits that long after its lease ([`super::lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_send_ms: Option<u64>,
}

/// This machine's host name (empty when the kernel does not say).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// `user@host (command)`: who applies, for the state's `last_applied`. The user from
/// `USER` (or `LOGNAME`), the host from the kernel.
pub fn user_at_host(env: &dyn Fn(&str) -> Option<String>, command: &str) -> String {
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{} ({command})", host_name())
}

impl Holder {
    /// This process, running `command`.
    pub fn this_process(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            command: command.to_string(),
            started_at: crate::clock::now_rfc3339(),
            host: host_name(),
            longest_send_ms: None,
        }
    }

    /// This holder sends requests that take at most `longest` each.
    pub fn sending(mut self, longest: Duration) -> Holder {
        self.longest_send_ms = Some(longest.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// [`Holder::longest_send_ms`], or the client's default timeout when not recorded.
    pub fn longest_send(&self) -> Duration {
        self.longest_send_ms
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(30))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "taskform {} (pid {}", self.command, self.pid)?;
        if !self.host.is_empty() {
            write!(f, " on {}", self.host)?;
        }
        write!(f, ", started {})", self.started_at)
    }
}

/// The lock's path for a state file: `<state>.lock`.
pub fn path_for(state_path: &Path) -> PathBuf {
    let mut name = state_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    state_path.with_file_name(name)
}

/// The watchers' leadership lock of a state file: `<state>.leader.lock`.
pub fn leader_path_for(state_path: &Path) -> PathBuf {
    let mut name = state_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".leader.lock");
    state_path.with_file_name(name)
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the state {state} is locked by {holder}; wait for it to finish, or pass --lock-timeout SECS to wait"
    )]
    Held { state: String, holder: String },
    #[error("cannot lock the state with {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Takes the lock, waiting up to `timeout` (none: fail at once).
pub fn acquire(
    lock_path: &Path,
    state_display: &str,
    me: &Holder,
    timeout: Option<Duration>,
) -> Result<FileLock, LockError> {
    let io = |source| LockError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    if let Some(dir) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .map_err(io)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let mut text = String::new();
                let _ = file.seek(SeekFrom::Start(0));
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<Holder>(&text)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| "another taskform process".to_string());
                return Err(LockError::Held {
                    state: state_display.to_string(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // Who holds it, for the message another process gets. Not synced: the lock is
    // the OS's (held by the open file), this text only informs, and a watcher takes
    // the lock at every reconcile.
    let info = serde_json::to_vec(me).unwrap_or_default();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&info))
        .map_err(io)?;
    Ok(FileLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named_then_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json.lock");
        let first = acquire(&p, "s.json", &Holder::this_process("apply"), None).unwrap();
        let err = acquire(&p, "s.json", &Holder::this_process("watch"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("taskform apply (pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(
            &p,
            "s.json",
            &Holder::this_process("watch"),
            Some(Duration::from_millis(10)),
        )
        .unwrap();
    }
}
