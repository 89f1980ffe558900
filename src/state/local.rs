//! The local file backend: the state file on a local disk, with `<state>.journal` and
//! `<state>.lock` beside it. Atomic writes (temp file, fsync, rename, fsync of the
//! folder), a group-committed journal, and an OS file lock.

use super::State;
use super::journal::{self, JournalError, Record};
use super::lock::{self, Holder};
use super::remembered::Remembered;
use super::store::{Journal, StateStore, StoreError, StoreLock};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// The state file on a local disk, with `<state>.journal` and `<state>.lock` beside it.
///
/// The state last read or written is kept with the file's identity (size, modification
/// time, inode): a long-running process (the watcher, which holds the lock) then reads
/// a large state file once, not at every reconcile ([`Remembered`]). Every write
/// renames a new file into place, so a new identity; a file modified in the last
/// [`SETTLED`] is read again.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    last: Remembered<Identity>,
}

impl Clone for LocalStore {
    fn clone(&self) -> Self {
        LocalStore::new(self.path.clone())
    }
}

/// How long after its last modification a file's identity is trusted.
const SETTLED: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Identity {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

impl LocalStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalStore {
            path: path.into(),
            last: Remembered::default(),
        }
    }

    fn remember(&self, state: Option<&State>) {
        match (state, identity(&self.path)) {
            (Some(s), Some(i)) => self.last.remember(i, s),
            _ => self.last.forget(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn journal_path(&self) -> PathBuf {
        journal::path_for(&self.path)
    }
}

impl StateStore for LocalStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn describe_journal(&self) -> String {
        format!("the journal {}", self.journal_path().display())
    }

    fn load_raw(&self) -> Result<State, StoreError> {
        let jpath = self.journal_path();
        if !jpath.exists()
            && let Some(now) = identity(&self.path)
        {
            let settled = now
                .modified
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > SETTLED);
            if settled && let Some(state) = self.last.get(&now) {
                return Ok(state);
            }
        }
        let mut state = State::load(&self.path)?;
        let records = journal::read(&jpath)?;
        let folded = journal::fold(&mut state, &records, &jpath.display().to_string())?;
        self.remember((!folded && records.is_empty()).then_some(&state));
        Ok(state)
    }

    fn peek(&self) -> Result<super::store::Peek, StoreError> {
        if !self.journal_path().exists()
            && let Some(now) = identity(&self.path)
        {
            let settled = now
                .modified
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > SETTLED);
            if settled && let Some(p) = self.last.peek(&now, super::store::Peek::of) {
                return Ok(p);
            }
        }
        self.load().map(|s| super::store::Peek::of(&s))
    }

    fn lock(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let l = lock::acquire(&lock::path_for(&self.path), &self.describe(), me, timeout)?;
        Ok(Box::new(l))
    }

    fn leadership(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let l = lock::acquire(
            &lock::leader_path_for(&self.path),
            &format!("the watchers' leadership of {}", self.describe()),
            me,
            timeout,
        )?;
        Ok(Box::new(l))
    }

    fn persist(&self, state: &mut State) -> Result<(), StoreError> {
        self.remember(None);
        state.save(&self.path)?;
        self.remember(Some(state));
        // The journal's records are now in the state; a crash before this removal
        // leaves a journal whose serial is older than the state's, which is ignored.
        let _ = std::fs::remove_file(self.journal_path());
        Ok(())
    }

    fn replace(&self, state: &State) -> Result<(), StoreError> {
        self.remember(None);
        state.write_exact(&self.path)?;
        let _ = std::fs::remove_file(self.journal_path());
        Ok(())
    }

    fn open_journal(&self, state: &State) -> Result<Box<dyn Journal>, StoreError> {
        let p = self.journal_path();
        let w =
            journal::Writer::create(&p, state, crate::clock::now_rfc3339()).map_err(|source| {
                StoreError::JournalOpen {
                    path: p.display().to_string(),
                    source,
                }
            })?;
        Ok(Box::new(w))
    }

    fn has_journal(&self) -> bool {
        self.journal_path().exists()
    }
}

impl Journal for journal::Writer {
    fn append<'a>(
        &'a self,
        record: &'a Record,
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>> {
        Box::pin(journal::Writer::append(self, record))
    }
    fn append_nowait(&self, record: &Record) {
        journal::Writer::append_nowait(self, record)
    }
    fn close(&self) {
        journal::Writer::close(self)
    }
}
