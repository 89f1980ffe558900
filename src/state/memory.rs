//! A state store in memory: the same contract as the file backend (a journal folded on
//! load, serial + 1 and a lineage on persist, one lock holder at a time), without a
//! disk. In-process tests of the applier and the observers use it, and can look at
//! the journal records a run made durable.

use super::State;
use super::journal::{self, JournalError, Record};
use super::lock::{Holder, LockError};
use super::store::{Journal, StateStore, StoreError, StoreLock};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    /// The persisted state (`None`: never written).
    state: Option<State>,
    /// The journal, starting with its `open` record.
    journal: Option<Vec<Record>>,
    /// Who holds the lock.
    holder: Option<String>,
    /// Who leads the watchers.
    leader: Option<String>,
    /// Appends after this many fail (a full disk).
    fail_appends_after: Option<usize>,
}

/// A [`StateStore`] in memory; clones share one store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A store whose persisted state is `state`, as it is (serial and lineage kept).
    pub fn with_state(state: State) -> Self {
        let store = MemoryStore::default();
        store.inner().state = Some(state);
        store
    }

    /// The state as last persisted (without the journal).
    pub fn persisted(&self) -> Option<State> {
        self.inner().state.clone()
    }

    /// The records of the current journal, `open` first.
    pub fn journal(&self) -> Vec<Record> {
        self.inner().journal.clone().unwrap_or_default()
    }

    /// Makes every durable append after the first `n` fail, as a full disk would.
    pub fn fail_appends_after(&self, n: usize) {
        self.inner().fail_appends_after = Some(n);
    }
}

struct MemoryLock(Arc<Mutex<Inner>>);
impl StoreLock for MemoryLock {}
impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).holder = None;
    }
}

struct MemoryLeader(Arc<Mutex<Inner>>);
impl StoreLock for MemoryLeader {}
impl Drop for MemoryLeader {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).leader = None;
    }
}

struct MemoryJournal(Arc<Mutex<Inner>>);

impl MemoryJournal {
    fn push(&self, record: &Record, durable: bool) -> Result<(), JournalError> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let len = inner
            .journal
            .as_ref()
            .map_or(0, |j| j.len().saturating_sub(1));
        if durable && inner.fail_appends_after.is_some_and(|n| len >= n) {
            return Err(JournalError::Write(
                "cannot write the journal: No space left on device".into(),
            ));
        }
        inner
            .journal
            .get_or_insert_with(Vec::new)
            .push(record.clone());
        Ok(())
    }
}

impl Journal for MemoryJournal {
    fn append<'a>(
        &'a self,
        record: &'a Record,
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>> {
        let r = self.push(record, true);
        Box::pin(async move { r })
    }
    fn append_nowait(&self, record: &Record) {
        let _ = self.push(record, false);
    }
    fn close(&self) {}
}

impl StateStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn describe_journal(&self) -> String {
        "the memory journal".into()
    }

    fn load_raw(&self) -> Result<State, StoreError> {
        let inner = self.inner();
        let mut state = inner.state.clone().unwrap_or_default();
        if let Some(records) = &inner.journal {
            journal::fold(&mut state, records, "memory journal")?;
        }
        Ok(state)
    }

    fn lock(
        &self,
        me: &Holder,
        _timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let mut inner = self.inner();
        if let Some(holder) = &inner.holder {
            return Err(LockError::Held {
                state: "memory".into(),
                holder: holder.clone(),
            }
            .into());
        }
        inner.holder = Some(me.to_string());
        Ok(Box::new(MemoryLock(self.inner.clone())))
    }

    fn leadership(
        &self,
        me: &Holder,
        _timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let mut inner = self.inner();
        if let Some(holder) = &inner.leader {
            return Err(LockError::Held {
                state: "memory (leadership)".into(),
                holder: holder.clone(),
            }
            .into());
        }
        inner.leader = Some(me.to_string());
        Ok(Box::new(MemoryLeader(self.inner.clone())))
    }

    fn persist(&self, state: &mut State) -> Result<(), StoreError> {
        if state.lineage.is_empty() {
            state.lineage = uuid::Uuid::new_v4().to_string();
        }
        state.serial += 1;
        let mut inner = self.inner();
        inner.state = Some(state.clone());
        inner.journal = None;
        Ok(())
    }

    fn replace(&self, state: &State) -> Result<(), StoreError> {
        let mut inner = self.inner();
        inner.state = Some(state.clone());
        inner.journal = None;
        Ok(())
    }

    fn open_journal(&self, state: &State) -> Result<Box<dyn Journal>, StoreError> {
        self.inner().journal = Some(vec![Record::Open {
            lineage: state.lineage.clone(),
            base_serial: state.serial,
            at: crate::clock::now_rfc3339(),
        }]);
        Ok(Box::new(MemoryJournal(self.inner.clone())))
    }

    fn has_journal(&self) -> bool {
        self.inner().journal.is_some()
    }
}
