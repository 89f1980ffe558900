//! Where state, journal and lock live, behind one small interface.
//!
//! The planner never sees this: it takes a [`State`] value. Commands reach storage only
//! through [`StateStore`]: the local file backend ([`LocalStore`]), the shared
//! PostgreSQL one ([`super::postgres::PgStore`]) and an in-memory one for tests
//! ([`super::memory::MemoryStore`]). [`super::open`] picks one from a `--state`
//! location.

use crate::state::journal::{JournalError, Record};
use crate::state::lock::{FileLock, Holder, LockError};
use crate::state::{State, StateError};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Any storage problem, with a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Lease(#[from] super::lease::LeaseConfigError),
    #[error("cannot start the journal {path}: {source}")]
    JournalOpen {
        path: String,
        source: std::io::Error,
    },
    /// A PostgreSQL state could not be reached, read or written (the message names
    /// the server and database, never the password).
    #[error("{0}")]
    Postgres(String),
    /// The destination of `state copy` holds another state.
    #[error("{0}")]
    Refused(String),
    /// The location holds only the tombstone `state copy --move` left.
    #[error(
        "the state {state} was moved to {} at {} (`taskform state copy --move`); nothing was read from here. Use the new location: --state, TASKFORM_STATE or `state:` in taskform.yaml",
        .moved.to, .moved.at
    )]
    Moved {
        state: String,
        moved: Box<super::MovedTo>,
    },
}

/// The parts of a stored state a watcher compares between reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    pub lineage: String,
    pub serial: u64,
    pub suspended: Option<super::Suspension>,
    pub last_applied: Option<super::LastApplied>,
}

impl Peek {
    pub fn of(s: &State) -> Peek {
        Peek {
            lineage: s.lineage.clone(),
            serial: s.serial,
            suspended: s.suspended.clone(),
            last_applied: s.last_applied.clone(),
        }
    }
}

/// A held state lock; dropping it releases the lock.
pub trait StoreLock: Send + Sync {
    /// Why the lock is no longer held, once it is not (a PostgreSQL connection that
    /// dropped). A file lock is held until it is dropped.
    fn lost(&self) -> Option<String> {
        None
    }
}
impl StoreLock for FileLock {}

/// A durable, append-only record of what an apply is doing.
pub trait Journal: Send + Sync {
    /// Appends a record and resolves once it is durable.
    fn append<'a>(
        &'a self,
        record: &'a Record,
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;
    /// Appends a record that need not be waited for (it is durable before any later
    /// durable append is acknowledged).
    fn append_nowait(&self, record: &Record);
    /// Flushes and closes.
    fn close(&self);
    /// Resolves once it is certain that this process still holds the state's lock,
    /// before any request that creates, changes or deletes a remote task is sent. A
    /// local journal's lock cannot be lost; a PostgreSQL one's lease must be
    /// confirmed with more than its margin left ([`super::lease`]).
    fn fence(&self) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// State, journal and lock of one target.
pub trait StateStore: Send + Sync {
    /// For messages: where the state lives.
    fn describe(&self) -> String;
    /// For messages: where the journal lives, as a noun phrase (`the journal
    /// state/taskform.json.journal`, `the journal of postgres://... (state "dev")`).
    fn describe_journal(&self) -> String;
    /// The state with any journal folded in (in memory; nothing is written); a
    /// moved state's tombstone is refused ([`StoreError::Moved`]).
    fn load(&self) -> Result<State, StoreError> {
        let state = self.load_raw()?;
        match &state.moved {
            Some(m) => Err(StoreError::Moved {
                state: self.describe(),
                moved: Box::new(m.clone()),
            }),
            None => Ok(state),
        }
    }
    /// [`StateStore::load`], a tombstone included (`state copy` replaces one).
    fn load_raw(&self) -> Result<State, StoreError>;
    /// What a watcher compares between reconciles, read as cheaply as the backend can:
    /// without copying a state it keeps when the stored one is still that one.
    fn peek(&self) -> Result<Peek, StoreError> {
        self.load().map(|s| Peek::of(&s))
    }
    /// Takes the exclusive lock, waiting up to `timeout`.
    fn lock(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError>;
    /// Takes the leadership of this state's watchers, waiting up to `timeout`: held by
    /// a watcher for its whole life, apart from the state lock, which it takes only
    /// while it reconciles (so `apply` and the `state` commands get their turn between
    /// two reconciles). A standby waits for it. [`LockError::Held`] names the leader.
    fn leadership(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError>;
    /// Writes `state` (serial + 1) and retires the journal it includes.
    fn persist(&self, state: &mut State) -> Result<(), StoreError>;
    /// Writes `state` exactly as it is (same lineage and serial) in place of whatever
    /// is stored, and drops any journal: `state copy`. The caller holds the lock.
    fn replace(&self, state: &State) -> Result<(), StoreError>;
    /// Starts a journal continuing `state` (which must have been persisted).
    fn open_journal(&self, state: &State) -> Result<Box<dyn Journal>, StoreError>;
    /// Whether a journal exists that `load` folded in (so `persist` should be called
    /// before a new journal is opened).
    fn has_journal(&self) -> bool;
}

/// A state under its store's lock: what every command that edits the state by hand
/// works on (`state rm/mv/import`, `import`, `refresh`, `export`). [`Transaction::begin`]
/// takes the lock (waiting out a previous holder's lease if it died while sending)
/// and reads the state with any journal folded in, refusing a state of another
/// target; [`Transaction::commit`] writes it (serial + 1) when it changed or a journal
/// was folded in. Dropping it releases the lock; nothing is written without a commit.
/// `apply` and `watch` go through [`crate::reconcile`], which journals as it sends.
pub struct Transaction<'s> {
    store: &'s dyn StateStore,
    state: State,
    lock: Box<dyn StoreLock>,
}

/// Which target a transaction's state must belong to.
pub enum TargetCheck<'a> {
    /// The whole target (a command that reaches the service).
    Exact(&'a super::Target),
    /// The parts of it that are known (an offline command).
    Known {
        project_id: Option<&'a str>,
        workspace: Option<&'a str>,
    },
}

/// Why a transaction could not begin.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] super::TargetMismatch),
}

impl<'s> Transaction<'s> {
    /// Takes the lock as `me` (waiting up to `timeout` for another holder) and reads
    /// the state, checked against `target`.
    pub fn begin(
        store: &'s dyn StateStore,
        me: &Holder,
        timeout: Option<Duration>,
        target: TargetCheck<'_>,
    ) -> Result<Transaction<'s>, BeginError> {
        let lock = store.lock(me, timeout)?;
        let state = store.load()?;
        match target {
            TargetCheck::Exact(t) => super::check_target(&state, t, &store.describe())?,
            TargetCheck::Known {
                project_id,
                workspace,
            } => super::check_known_parts(&state, project_id, workspace, &store.describe())?,
        }
        Ok(Transaction { store, state, lock })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// The held lock (whether it is still held).
    pub fn lock(&self) -> &dyn StoreLock {
        self.lock.as_ref()
    }

    /// Writes the state when `changed` or when a journal was folded in (recording
    /// `target` in a state that names none) and releases the lock. Returns the state
    /// as written (its serial), or as read when nothing was written.
    pub fn commit(
        mut self,
        changed: bool,
        target: Option<&super::Target>,
    ) -> Result<State, StoreError> {
        if changed || self.store.has_journal() {
            if let Some(t) = target {
                self.state.target.get_or_insert(t.clone());
            }
            self.store.persist(&mut self.state)?;
        }
        Ok(self.state)
    }
}
