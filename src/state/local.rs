//! The local file backend: the state file on a local disk, with `<state>.journal` and
//! `<state>.lock` beside it. Atomic writes (temp file, fsync, rename, fsync of the
//! folder), a group-committed journal, and an OS file lock.

use super::State;
use super::journal::{self, JournalError, Record};
use super::lock::{self, Holder};
use super::store::{Journal, StateStore, StoreError, StoreLock};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// The state file on a local disk, with `<state>.journal` and `<state>.lock` beside it.
#[derive(Debug, Clone)]
pub struct LocalStore {
    path: PathBuf,
}

impl LocalStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalStore { path: path.into() }
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
        self.journal_path().display().to_string()
    }

    fn load(&self) -> Result<State, StoreError> {
        let mut state = State::load(&self.path)?;
        let jpath = self.journal_path();
        let records = journal::read(&jpath)?;
        journal::fold(&mut state, &records, &jpath.display().to_string())?;
        Ok(state)
    }

    fn lock(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let l = lock::acquire(&lock::path_for(&self.path), &self.describe(), me, timeout)?;
        Ok(Box::new(l))
    }

    fn persist(&self, state: &mut State) -> Result<(), StoreError> {
        state.save(&self.path)?;
        // The journal's records are now in the state; a crash before this removal
        // leaves a journal whose serial is older than the state's, which is ignored.
        let _ = std::fs::remove_file(self.journal_path());
        Ok(())
    }

    fn replace(&self, state: &State) -> Result<(), StoreError> {
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
