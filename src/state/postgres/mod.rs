//! The PostgreSQL backend: many named states in one database, shared by CI runners
//! and watchers on any machine (`--state postgres://...`, `--state-name`).
//!
//! - **One session.** A store talks to the server over one dedicated connection,
//!   opened on first use and kept for the store's life, driven by a small runtime on a
//!   thread of its own (so the store's methods can be called from anywhere, as the
//!   file backend's are). It is never reopened behind the caller's back.
//! - **The lock** is a session advisory lock on that connection
//!   (`pg_try_advisory_lock`, polled until `--lock-timeout`), with the holder's
//!   host, pid, command and start time in the `locks` table for a refused process's
//!   message. However the holder dies, its connection closes and the server frees the
//!   lock; the session sets the server's TCP keepalives so that a holder that vanished
//!   without closing it (VM gone, network cut) is noticed within about a minute.
//! - **The journal** is rows of the `journal` table, group-committed like the file
//!   journal: every record waiting is written by one `INSERT`, one commit per batch.
//! - **Fencing.** Every write (journal batch, state) succeeds only when the server
//!   confirms, in the same statement or transaction, that this very session holds the
//!   lock. So nothing is sent unless its intent was committed by the lock holder; a
//!   connection that dropped, or a pooler in transaction mode that ran the statement on
//!   another server session, stops the run with a clear message.
//! - **The lease** ([`crate::state::lease`]): the holder's row carries `lease_until`,
//!   renewed every few seconds from the database's clock by a task on the session's
//!   thread; every request to the service goes out only while the lease is confirmed
//!   (the journal's `fence`, a local check: no round trip per request). A holder that
//!   takes the lock from one that died while sending waits out that lease first.
//! - **The state** is written in one transaction that checks the row's serial
//!   (`SELECT ... FOR UPDATE`), writes the document and deletes the journal.
//!
//! Tables and migrations: [`sql`]. URL, environment, password file and TLS:
//! [`connect`].

pub mod connect;
pub mod sql;

use super::State;
use super::journal::{self, JournalError, Record};
use super::lease::{Lease, LeaseConfig, Takeover};
use super::lock::{Holder, LockError};
use super::remembered::Remembered;
use super::store::{Journal, StateStore, StoreError, StoreLock};
use crate::location::PgState;
use connect::Endpoint;
use sql::Sql;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

/// How long one exchange with the server may take before the store gives up on the
/// session (the server's own `statement_timeout` is 60 s).
const OP_TIMEOUT: Duration = Duration::from_secs(75);
/// How often a waiting `lock` tries again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// A named state in a PostgreSQL database.
pub struct PgStore {
    target: PgState,
    endpoint: Endpoint,
    sql: Arc<Sql>,
    session: Mutex<Option<Arc<Session>>>,
    journal_rows: AtomicBool,
    /// The journal is known to be empty: this store holds the lock and emptied it (a
    /// write) or read it empty since it took the lock. Nobody else writes it while the
    /// lock is held (every journal write checks the lock), so a load need not read it.
    journal_empty: AtomicBool,
    /// A journal's close gave up waiting for its writer: rows may still land, so the
    /// journal is not known empty until a DELETE ran after that.
    journal_stalled: Arc<AtomicBool>,
    /// The command, for `states.updated_by`.
    command: String,
    /// The lease's timing.
    lease: LeaseConfig,
    /// The state last read or written, by the row's version (`xmin`) and serial: a
    /// watcher's next load reads the version, not the whole document.
    last: Remembered<(String, i64)>,
}

impl PgStore {
    /// A store for `target`; connection settings missing from the URL come from
    /// `env` (libpq's variables). Nothing is connected until the store is used.
    pub fn new(
        target: PgState,
        env: &dyn Fn(&str) -> Option<String>,
        command: &str,
    ) -> Result<PgStore, StoreError> {
        let endpoint = connect::endpoint(&target.url, env, command)
            .map_err(|e| StoreError::Postgres(format!("the PostgreSQL state {target}: {e}")))?;
        let lease = LeaseConfig::from_env(env)?;
        Ok(PgStore {
            sql: Arc::new(Sql::new(&target.schema, &target.name)),
            target,
            endpoint,
            session: Mutex::new(None),
            journal_rows: AtomicBool::new(false),
            journal_empty: AtomicBool::new(false),
            journal_stalled: Arc::new(AtomicBool::new(false)),
            command: command.to_string(),
            lease,
            last: Remembered::default(),
        })
    }

    fn err(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres(format!(
            "the PostgreSQL state {:?} at {}: {detail}",
            self.target.name, self.endpoint.shown
        ))
    }

    /// The session, connecting (and creating or migrating the schema) on first use.
    fn session(&self) -> Result<Arc<Session>, StoreError> {
        let mut slot = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &*slot {
            // A session that holds (or held) the lock is never replaced: its loss must
            // stop the run. One that never locked (a plan, a plan-only watcher) is.
            if s.lost().is_none()
                || s.locked.load(Ordering::SeqCst)
                || s.leading.load(Ordering::SeqCst)
            {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(
            Session::open(&self.endpoint, self.sql.clone()).map_err(|e| {
                StoreError::Postgres(format!(
                    "cannot use the PostgreSQL state {:?} at {}: {e}",
                    self.target.name, self.endpoint.shown
                ))
            })?,
        );
        *slot = Some(s.clone());
        Ok(s)
    }

    /// The session, which must hold the lock (every write needs it).
    fn locked_session(&self) -> Result<Arc<Session>, StoreError> {
        let s = self.session()?;
        if !s.locked.load(Ordering::SeqCst) {
            return Err(self.err("the state is written without its lock (a taskform bug)"));
        }
        if let Some(why) = s.lost() {
            return Err(self.err(lost_message(&why)));
        }
        Ok(s)
    }

    /// Writes `data` as the state (`lineage`, `serial`) in one transaction that checks
    /// the lock and that the stored row is still at `expected` (`None`: no row).
    fn write(
        &self,
        lineage: &str,
        serial: u64,
        data: Vec<u8>,
        expected: Option<Option<(String, u64)>>,
    ) -> Result<String, StoreError> {
        let s = self.locked_session()?;
        let sql = self.sql.clone();
        let name = self.target.name.clone();
        let lineage = lineage.to_string();
        let data = String::from_utf8(data).map_err(|e| self.err(e))?;
        let who = Holder::this_process(&self.command).to_string();
        let result = s.call(OP_TIMEOUT, move |client| async move {
            let mut c = client.lock().await;
            let tx = c.transaction().await.map_err(Failure::pg)?;
            require_lock(&tx, &sql).await?;
            let row = tx
                .query_opt(&sql.state_for_update(), &[&name])
                .await
                .map_err(Failure::pg)?;
            let stored = row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64));
            if let Some(expected) = expected
                && stored != expected
            {
                return Err(Failure::Other(format!(
                    "the stored state changed underneath this run ({} stored, {} expected); nothing was written. Run again",
                    shown_row(&stored),
                    shown_row(&expected)
                )));
            }
            let version: String = tx
                .query_one(
                    &sql.write_state(),
                    &[&name, &lineage, &(serial as i64), &data, &who],
                )
                .await
                .map_err(Failure::pg)?
                .get(0);
            tx.execute(&sql.clear_journal(), &[&name])
                .await
                .map_err(Failure::pg)?;
            tx.commit().await.map_err(Failure::pg)?;
            Ok(version)
        });
        match result {
            Ok(version) => {
                self.journal_rows.store(false, Ordering::SeqCst);
                let stalled = self.journal_stalled.load(Ordering::SeqCst);
                self.journal_empty.store(!stalled, Ordering::SeqCst);
                Ok(version)
            }
            Err(f) => Err(self.failure(&s, f)),
        }
    }

    /// Reads the state and folds its journal, in one snapshot. `known`: the row
    /// version of the copy kept in [`PgStore::last`]; when it is still the stored one
    /// the document is not sent, and the copy is used (`None` if it went away).
    fn load_from(&self, known: Option<String>) -> Result<Option<State>, StoreError> {
        let s = self.session()?;
        let sql = self.sql.clone();
        let name = self.target.name.clone();
        let shown = self.describe();
        // Under the lock, a journal known to be empty is not read.
        let read_journal =
            !(s.locked.load(Ordering::SeqCst) && self.journal_empty.load(Ordering::SeqCst));
        // One statement, so one snapshot: an apply persisting in between is never seen
        // half-done. The document is parsed where it arrives, from the row's buffer.
        let (row, records) = s
            .call(OP_TIMEOUT, move |client| async move {
                let c = client.lock().await;
                let r = c
                    .query_one(&sql.load_state(), &[&name, &known, &read_journal])
                    .await
                    .map_err(Failure::pg)?;
                let records: Vec<String> = r.get::<_, Option<Vec<String>>>(4).unwrap_or_default();
                let row = r.get::<_, Option<String>>(0).map(|lineage| {
                    let data: Option<&str> = r.get(2);
                    (
                        lineage,
                        r.get::<_, i64>(1),
                        data.map(|d| State::from_bytes(d.as_bytes(), &shown)),
                        r.get::<_, String>(3),
                    )
                });
                Ok((row, records))
            })
            .map_err(|f| self.failure(&s, f))?;
        let (mut state, fresh) = match row {
            None => (State::new(), None),
            Some((lineage, serial, data, version)) => {
                let (state, fresh) = match data {
                    Some(parsed) => (parsed?, Some((version, serial))),
                    None => match self.last.get(&(version, serial)) {
                        Some(kept) => (kept, None),
                        None => return Ok(None),
                    },
                };
                if state.lineage != lineage || state.serial as i64 != serial {
                    return Err(self.err(format!(
                        "the stored document (lineage {} serial {}) disagrees with its row (lineage {lineage} serial {serial}); restore it with `taskform state copy`",
                        state.lineage, state.serial
                    )));
                }
                (state, fresh)
            }
        };
        let journal = format!("of {}", self.target);
        let mut parsed = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            parsed.push(
                serde_json::from_str::<Record>(r).map_err(|e| JournalError::Corrupt {
                    path: journal.clone(),
                    line: i + 1,
                    detail: e.to_string(),
                })?,
            );
        }
        // Only a document as stored is kept: one with a journal folded in is not.
        if let Some(token) = fresh.filter(|_| parsed.is_empty()) {
            self.last.remember(token, &state);
        }
        journal::fold(&mut state, &parsed, &journal)?;
        self.journal_rows
            .store(!parsed.is_empty(), Ordering::SeqCst);
        if read_journal
            && parsed.is_empty()
            && s.locked.load(Ordering::SeqCst)
            && !self.journal_stalled.load(Ordering::SeqCst)
        {
            self.journal_empty.store(true, Ordering::SeqCst);
        }
        Ok(Some(state))
    }

    /// A failure as an error; one that lost the session marks it lost.
    fn failure(&self, s: &Session, f: Failure) -> StoreError {
        match f {
            Failure::LockLost(why) => {
                s.mark_lost(&why);
                self.err(lost_message(&why))
            }
            Failure::Closed(why) => {
                s.mark_lost(&why);
                match s.locked.load(Ordering::SeqCst) {
                    true => self.err(lost_message(&why)),
                    false => self.err(why),
                }
            }
            Failure::Other(why) => self.err(why),
        }
    }
}

fn shown_row(row: &Option<(String, u64)>) -> String {
    match row {
        Some((lineage, serial)) => format!("lineage {lineage} serial {serial}"),
        None => "no state".into(),
    }
}

fn lost_message(why: &str) -> String {
    format!(
        "the connection holding the state lock was lost ({why}). taskform stopped sending: nothing more was sent, and another process may hold the lock by now. Run again: the next run waits until this run's lease has expired, then settles what was in flight"
    )
}

/// What the session that just took the lock found of a previous holder:
/// `(holder JSON, seconds its lease still runs, journal records, seconds what an
/// earlier holder sent may still land)`.
type Previous = (String, Option<f64>, Vec<String>, Option<f64>);

/// Who held the lock (as a refused process is told): `(holder JSON if it is the
/// holder's row, server pid, client address, application name)`.
type HolderRow = (Option<String>, i32, Option<String>, Option<String>);

/// Who holds a lock, as a refused process is told.
fn holder_of(row: Option<HolderRow>) -> String {
    match row {
        None => "another session, which keeps releasing and taking it".into(),
        Some((Some(json), ..)) if serde_json::from_str::<Holder>(&json).is_ok() => {
            serde_json::from_str::<Holder>(&json)
                .map(|h| h.to_string())
                .unwrap_or_default()
        }
        Some((_, pid, addr, app)) => format!(
            "another session (server process {pid}{}{})",
            addr.map(|a| format!(" from {a}")).unwrap_or_default(),
            app.filter(|a| !a.is_empty())
                .map(|a| format!(", application {a:?}"))
                .unwrap_or_default()
        ),
    }
}

/// The wait a new holder owes a previous one that did not release the lock.
fn takeover(previous: Previous, cfg: &LeaseConfig) -> Takeover {
    let (json, left, records, drain) = previous;
    let seconds = |s: f64| Duration::from_secs_f64(s.min(86_400.0));
    let holder = serde_json::from_str::<Holder>(&json).ok();
    let parsed: Vec<Record> = records
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    Takeover {
        holder: holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "a taskform process".into()),
        // A row without a lease was written by an older taskform: wait a whole lease.
        lease_left: left
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(seconds)
            .unwrap_or(cfg.duration),
        drain_left: drain
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(seconds)
            .unwrap_or_default(),
        longest_send: holder
            .map(|h| h.longest_send())
            .unwrap_or(Duration::from_secs(30)),
        unfinished: super::lease::unfinished(&parsed),
        was_sending: !records.is_empty(),
    }
}

impl StateStore for PgStore {
    fn describe(&self) -> String {
        self.target.to_string()
    }

    fn describe_journal(&self) -> String {
        format!("the journal of {}", self.target)
    }

    fn load_raw(&self) -> Result<State, StoreError> {
        let known = self.last.token();
        match self.load_from(known.as_ref().map(|(version, _)| version.clone()))? {
            Some(state) => Ok(state),
            // The copy kept went away in between: read the document.
            None => Ok(self.load_from(None)?.unwrap_or_default()),
        }
    }

    fn peek(&self) -> Result<super::store::Peek, StoreError> {
        if let Some(token) = self.last.token() {
            let s = self.session()?;
            let sql = self.sql.clone();
            let name = self.target.name.clone();
            let row = s
                .call(OP_TIMEOUT, move |client| async move {
                    let c = client.lock().await;
                    let r = c
                        .query_opt(&sql.peek_state(), &[&name])
                        .await
                        .map_err(Failure::pg)?;
                    Ok(r.map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, bool>(2),
                        )
                    }))
                })
                .map_err(|f| self.failure(&s, f))?;
            if let Some((version, serial, false)) = row
                && (version.as_str(), serial) == (token.0.as_str(), token.1)
                && let Some(p) = self.last.peek(&token, super::store::Peek::of)
            {
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
        let s = self.session()?;
        let sql = self.sql.clone();
        let name = self.target.name.clone();
        let holder = serde_json::to_string(me).unwrap_or_default();
        let wait = timeout.unwrap_or_default();
        let lease_secs = self.lease.duration.as_secs_f64();
        let cfg = self.lease;
        let taken = s
            .call(OP_TIMEOUT + wait, move |client| async move {
                let c = client.lock().await;
                let deadline = Instant::now() + wait;
                let mut released = 0;
                loop {
                    let got: bool = c
                        .query_one(&sql.try_lock(), &[])
                        .await
                        .map_err(Failure::pg)?
                        .get(0);
                    if got {
                        if !holds_lock(&*c, &sql).await? {
                            // Two statements, two server sessions: a pooler in
                            // transaction mode. The lock stays on a pooled session.
                            let _ = c.query_one(&sql.unlock(), &[]).await;
                            return Err(Failure::Other(
                                "the lock, just taken, is not held by the session of the next statement: the connection goes through a pooler in transaction or statement mode (PgBouncer's pool_mode = transaction?). A session advisory lock needs one server session for the whole run: use the pooler's session mode, or connect to the server directly".into(),
                            ));
                        }
                        let previous = match c.query_opt(&sql.previous_holder(), &[&name]).await {
                            Ok(row) => row.map(|r| -> Takeover {
                                let p: Previous = (
                                    r.get(0),
                                    r.get(1),
                                    r.get::<_, Option<Vec<String>>>(2).unwrap_or_default(),
                                    r.get(3),
                                );
                                takeover(p, &cfg)
                            }),
                            Err(e) => {
                                let _ = c.query_one(&sql.unlock(), &[]).await;
                                return Err(Failure::pg(e));
                            }
                        };
                        // What the previous holder may still send is recorded first, so
                        // that a holder after this one waits for it too.
                        let drain = previous
                            .as_ref()
                            .map_or(0.0, |t| t.wait().as_secs_f64());
                        // The lease counts from before the statement that grants it.
                        let sent = Instant::now();
                        if let Err(e) = c
                            .execute(&sql.set_holder(), &[&name, &holder, &lease_secs, &drain])
                            .await
                        {
                            let _ = c.query_one(&sql.unlock(), &[]).await;
                            return Err(Failure::pg(e));
                        }
                        return Ok(Ok((previous, sent)));
                    }
                    if Instant::now() >= deadline {
                        let row = c
                            .query_opt(&sql.holder(), &[&name])
                            .await
                            .map_err(Failure::pg)?;
                        if row.is_none() && released < 3 {
                            // Released between the two statements: try again.
                            released += 1;
                            continue;
                        }
                        return Ok(Err(row.map(|r| -> HolderRow {
                            (r.get(0), r.get(1), r.get(2), r.get(3))
                        })));
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
            })
            .map_err(|f| self.failure(&s, f))?;
        match taken {
            Ok((previous, sent)) => {
                // What the journal held before the lock was taken is not known.
                self.journal_empty.store(false, Ordering::SeqCst);
                s.locked.store(true, Ordering::SeqCst);
                let lease = Arc::new(Lease::new(self.lease));
                lease.confirmed(sent);
                *s.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease.clone());
                let (stop, stopped) = oneshot::channel();
                s.rt.spawn(renewer(
                    s.client.clone(),
                    self.sql.clone(),
                    self.target.name.clone(),
                    lease,
                    s.lost.clone(),
                    stopped,
                ));
                let lock = PgLock {
                    session: s,
                    sql: self.sql.clone(),
                    name: self.target.name.clone(),
                    renewing: Some(stop),
                };
                if let Some(t) = previous {
                    let wait = t.wait();
                    if !wait.is_zero() {
                        tracing::warn!(state = %self.describe(), "{}", t.message());
                        std::thread::sleep(wait);
                        if let Some(why) = lock.session.lost() {
                            return Err(self.err(lost_message(&why)));
                        }
                        tracing::info!(
                            "the previous holder's lease has expired: settling what it may have sent"
                        );
                    } else {
                        tracing::debug!(holder = %t.holder, "the previous holder did not release the lock, but was not sending: taken over at once");
                    }
                }
                Ok(Box::new(lock))
            }
            Err(row) => Err(LockError::Held {
                state: self.describe(),
                holder: holder_of(row),
            }
            .into()),
        }
    }

    fn leadership(
        &self,
        me: &Holder,
        timeout: Option<Duration>,
    ) -> Result<Box<dyn StoreLock>, StoreError> {
        let s = self.session()?;
        let sql = Arc::new(Sql::leadership(&self.target.schema, &self.target.name));
        let row = sql::leader_row(&self.target.name);
        let holder = serde_json::to_string(me).unwrap_or_default();
        let wait = timeout.unwrap_or_default();
        let (sql2, row2) = (sql.clone(), row.clone());
        let taken = s
            .call(OP_TIMEOUT + wait, move |client| async move {
                let c = client.lock().await;
                let deadline = Instant::now() + wait;
                loop {
                    let got: bool = c
                        .query_one(&sql2.try_lock(), &[])
                        .await
                        .map_err(Failure::pg)?
                        .get(0);
                    if got {
                        if let Err(e) = c
                            .execute(&sql2.set_holder(), &[&row2, &holder, &0.0f64, &0.0f64])
                            .await
                        {
                            let _ = c.query_one(&sql2.unlock(), &[]).await;
                            return Err(Failure::pg(e));
                        }
                        return Ok(None);
                    }
                    if Instant::now() >= deadline {
                        let row = c
                            .query_opt(&sql2.holder(), &[&row2])
                            .await
                            .map_err(Failure::pg)?;
                        return Ok(Some(row.map(|r| -> HolderRow {
                            (r.get(0), r.get(1), r.get(2), r.get(3))
                        })));
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
            })
            .map_err(|f| self.failure(&s, f))?;
        match taken {
            None => {
                s.leading.store(true, Ordering::SeqCst);
                Ok(Box::new(PgLeadership {
                    session: s,
                    sql,
                    row,
                }))
            }
            Some(row) => Err(LockError::Held {
                state: format!("the watchers' leadership of {}", self.describe()),
                holder: holder_of(row),
            }
            .into()),
        }
    }

    fn persist(&self, state: &mut State) -> Result<(), StoreError> {
        let expected = match state.lineage.is_empty() {
            true => None,
            false => Some((state.lineage.clone(), state.serial)),
        };
        let data = state.next_version();
        self.last.forget();
        match self.write(&state.lineage.clone(), state.serial, data, Some(expected)) {
            Ok(version) => {
                self.last.remember((version, state.serial as i64), state);
                Ok(())
            }
            Err(e) => {
                state.serial -= 1;
                Err(e)
            }
        }
    }

    fn replace(&self, state: &State) -> Result<(), StoreError> {
        self.last.forget();
        self.write(&state.lineage, state.serial, state.encode(), None)
            .map(|_| ())
    }

    fn open_journal(&self, state: &State) -> Result<Box<dyn Journal>, StoreError> {
        let s = self.locked_session()?;
        let open = Record::Open {
            lineage: state.lineage.clone(),
            base_serial: state.serial,
            at: crate::clock::now_rfc3339(),
        };
        let open = serde_json::to_string(&open).unwrap_or_default();
        let sql = self.sql.clone();
        let name = self.target.name.clone();
        // A journal known to be empty needs no clearing (a DELETE scans what earlier
        // runs' rows left until vacuum).
        let empty = self.journal_empty.swap(false, Ordering::SeqCst)
            && !self.journal_stalled.load(Ordering::SeqCst);
        s.call(OP_TIMEOUT, move |client| async move {
            let mut c = client.lock().await;
            let tx = c.transaction().await.map_err(Failure::pg)?;
            require_lock(&tx, &sql).await?;
            // This commit waits for the disk: an update or a delete may be sent right
            // after it with no record of its own before it, and a holder taking over
            // after a crash must see that this one was sending.
            if !empty {
                tx.execute(&sql.clear_journal(), &[&name])
                    .await
                    .map_err(Failure::pg)?;
            }
            tx.execute(&sql.insert_record(), &[&name, &0i64, &open])
                .await
                .map_err(Failure::pg)?;
            tx.commit().await.map_err(Failure::pg)
        })
        .map_err(|f| self.failure(&s, f))?;
        self.journal_rows.store(true, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        s.rt.spawn(writer(
            rx,
            s.client.clone(),
            s.lost.clone(),
            self.sql.clone(),
            self.target.name.clone(),
            self.describe(),
        ));
        if !empty {
            // The DELETE above ran after any stalled writer's rows could land.
            self.journal_stalled.store(false, Ordering::SeqCst);
        }
        Ok(Box::new(PgJournal {
            tx: Mutex::new(Some(tx)),
            stalled: self.journal_stalled.clone(),
            lease: s.lease.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            lost: s.lost.clone(),
        }))
    }

    fn has_journal(&self) -> bool {
        self.journal_rows.load(Ordering::SeqCst)
    }
}

/// Why a write through a session that lost the lock is refused.
const NOT_HELD: &str = "the server says this session no longer holds the lock";

/// Whether this session holds the state's lock, asked through `c` (in a
/// transaction: in order with its writes).
async fn holds_lock(
    c: &(impl tokio_postgres::GenericClient + Sync),
    sql: &Sql,
) -> Result<bool, Failure> {
    Ok(c.query_one(&sql.check_lock(), &[])
        .await
        .map_err(Failure::pg)?
        .get(0))
}

/// Refuses to go on unless this session holds the lock.
async fn require_lock(
    c: &(impl tokio_postgres::GenericClient + Sync),
    sql: &Sql,
) -> Result<(), Failure> {
    match holds_lock(c, sql).await? {
        true => Ok(()),
        false => Err(Failure::LockLost(NOT_HELD.into())),
    }
}

/// Why an exchange with the server failed.
enum Failure {
    /// The connection is gone (closed, reset, timed out).
    Closed(String),
    /// The server says this session does not hold the lock.
    LockLost(String),
    /// Anything else (a refused statement, a conflict).
    Other(String),
}

impl Failure {
    fn pg(e: tokio_postgres::Error) -> Failure {
        // A FATAL answer (the session terminated, the server shutting down) or a
        // connection exception ends the session as surely as a closed socket.
        let ends_session = match e.as_db_error() {
            None => true,
            Some(db) => {
                let code = db.code().code();
                matches!(db.severity(), "FATAL" | "PANIC")
                    || code.starts_with("57P")
                    || code.starts_with("08")
            }
        };
        match e.is_closed() || ends_session {
            true => Failure::Closed(describe_error(&e)),
            false => Failure::Other(describe_error(&e)),
        }
    }
    fn text(&self) -> &str {
        match self {
            Failure::Closed(s) | Failure::LockLost(s) | Failure::Other(s) => s,
        }
    }
}

/// A server error with its SQLSTATE and hint, or a connection error with its cause.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        source = cause.source();
    }
    s
}

/// The dedicated connection and the thread that drives it.
struct Session {
    rt: tokio::runtime::Handle,
    client: Arc<tokio::sync::Mutex<Client>>,
    /// Why the connection is unusable, once it is.
    lost: Arc<Mutex<Option<String>>>,
    /// Whether this session took the state's lock.
    locked: AtomicBool,
    /// Whether this session holds the watchers' leadership.
    leading: AtomicBool,
    /// The lease of the lock this session holds.
    lease: Mutex<Option<Arc<Lease>>>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Session {
    /// Connects, sets the session's keepalives and timeouts, and creates or migrates
    /// the schema.
    fn open(endpoint: &Endpoint, sql: Arc<Sql>) -> Result<Session, String> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = handle_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| format!("cannot start the connection's thread: {e}"))?;
        let rt = handle_rx
            .recv()
            .map_err(|_| "the connection's thread stopped".to_string())??;
        let lost = Arc::new(Mutex::new(None));
        let (config, tls) = (endpoint.config.clone(), endpoint.tls.clone());
        let lost2 = lost.clone();
        let connect_for = endpoint
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(OP_TIMEOUT);
        let password_from = endpoint.password_from.clone();
        let password_hint = endpoint.password_hint.clone();
        let (ctx, crx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(connect_for + Duration::from_secs(5), async {
                let (client, conn) = match tls {
                    Some(tls) => {
                        let (client, conn) = config.connect(tls).await?;
                        let conn: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(conn);
                        (client, conn)
                    }
                    None => {
                        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                        let conn: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(conn);
                        (client, conn)
                    }
                };
                tokio::spawn(async move {
                    let why = match conn.await {
                        Ok(()) => "the server closed the connection".to_string(),
                        Err(e) => describe_error(&e),
                    };
                    lost2
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(why);
                });
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await;
            let r = match r {
                Ok(Ok(mut client)) => setup(&mut client, &sql).await.map(|_| client),
                Ok(Err(e)) => Err(connect_error(&e, &password_from, &password_hint)),
                Err(_) => Err(format!(
                    "no connection within {} s",
                    (connect_for + Duration::from_secs(5)).as_secs()
                )),
            };
            let _ = ctx.send(r);
        });
        let client = crx
            .recv()
            .map_err(|_| "the connection's thread stopped".to_string())??;
        Ok(Session {
            rt,
            client: Arc::new(tokio::sync::Mutex::new(client)),
            lost,
            locked: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            lease: Mutex::new(None),
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark_lost(&self, why: &str) {
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| why.to_string());
    }

    /// Runs `f` on the session's thread and waits for it (at most `limit`).
    fn call<T, F, Fut>(&self, limit: Duration, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(Arc<tokio::sync::Mutex<Client>>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        if let Some(why) = self.lost() {
            return Err(Failure::Closed(why));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let client = self.client.clone();
        self.rt.spawn(async move {
            let r = match tokio::time::timeout(limit, f(client)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Closed(format!(
                    "no answer within {} s",
                    limit.as_secs()
                ))),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(Failure::Closed("the connection's thread stopped".into())))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// A connection error with what to check.
fn connect_error(e: &tokio_postgres::Error, password_from: &str, password_hint: &str) -> String {
    use tokio_postgres::error::SqlState;
    let text = describe_error(e);
    if text.contains("password missing") {
        return format!("the server asks for a password, and none was given: {password_hint}");
    }
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => {
            format!("{text}. Check the password (taken from {password_from})")
        }
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            format!("{text}. Check the user, and pg_hba.conf on the server")
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            format!("{text}. Create the database first (createdb), or name another")
        }
        _ => text,
    }
}

/// The session's settings, then the schema: created on first use, migrated when
/// older, refused when newer.
async fn setup(client: &mut Client, sql: &Sql) -> Result<(), String> {
    use tokio_postgres::error::SqlState;
    client
        .batch_execute(sql::SESSION_SETTINGS)
        .await
        .map_err(|e| describe_error(&e))?;
    for optional in sql::SESSION_OPTIONAL {
        if let Err(e) = client.batch_execute(optional).await {
            tracing::debug!(setting = optional, error = %describe_error(&e), "not set (an older PostgreSQL)");
        }
    }
    // An acknowledged record must survive a server crash, whatever the database's
    // or the role's default.
    let sync = client
        .query_one(
            "SELECT pg_catalog.current_setting('synchronous_commit')",
            &[],
        )
        .await
        .map_err(|e| describe_error(&e))?
        .get::<_, String>(0);
    if sync == "off" || sync == "local" {
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(|e| describe_error(&e))?;
    }
    let newer = |v: i64| {
        format!(
            "the schema {} was written by a newer taskform (schema version {v}; this taskform knows up to {}): upgrade taskform",
            sql.schema,
            sql::SCHEMA_VERSION
        )
    };
    let parse = |s: String| s.trim().parse::<i64>().unwrap_or(i64::MAX);
    match client.query_opt(&sql.version(), &[]).await {
        Ok(Some(row)) => {
            let v = parse(row.get(0));
            if v == sql::SCHEMA_VERSION {
                return Ok(());
            }
            if v > sql::SCHEMA_VERSION {
                return Err(newer(v));
            }
        }
        Ok(None) => {}
        Err(e)
            if e.code() == Some(&SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&SqlState::INVALID_SCHEMA_NAME) => {}
        Err(e) => return Err(describe_error(&e)),
    }
    let pg = |e: tokio_postgres::Error| {
        format!(
            "cannot create or migrate the schema {}: {}",
            sql.schema,
            describe_error(&e)
        )
    };
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute(&sql.migration_lock()).await.map_err(pg)?;
    let exists: bool = tx
        .query_one(Sql::SCHEMA_EXISTS, &[&sql.schema])
        .await
        .map_err(pg)?
        .get(0);
    if !exists {
        tx.batch_execute(&sql.create_schema()).await.map_err(pg)?;
    }
    tx.batch_execute(&sql.create_meta()).await.map_err(pg)?;
    let from = tx
        .query_opt(&sql.version(), &[])
        .await
        .map_err(pg)?
        .map(|r| parse(r.get(0)))
        .unwrap_or(0);
    if from > sql::SCHEMA_VERSION {
        return Err(newer(from));
    }
    for m in sql.migrations(from) {
        tx.batch_execute(&m).await.map_err(pg)?;
    }
    tx.execute(&sql.set_version(), &[&sql::SCHEMA_VERSION.to_string()])
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    if from < sql::SCHEMA_VERSION {
        tracing::info!(
            schema = %sql.schema,
            from,
            to = sql::SCHEMA_VERSION,
            "PostgreSQL state schema {}",
            if from == 0 { "created" } else { "migrated" }
        );
    }
    Ok(())
}

/// The state's lock; dropping it releases the lock (and stops renewing its lease).
struct PgLock {
    session: Arc<Session>,
    sql: Arc<Sql>,
    name: String,
    /// Dropped first when the lock is: the renewal task stops before the unlock.
    renewing: Option<oneshot::Sender<()>>,
}

/// Renews the lease every [`LeaseConfig::renew`] while the lock is held: each renewal
/// that the database confirms extends it from the moment it was sent; one that gets
/// no answer within the interval leaves it to run down (requests stop before it
/// ends); a session that ended, or a database that says this session no longer holds
/// the lock, loses it for good.
async fn renewer(
    client: Arc<tokio::sync::Mutex<Client>>,
    sql: Arc<Sql>,
    name: String,
    lease: Arc<Lease>,
    lost: Arc<Mutex<Option<String>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let cfg = lease.config();
    let secs = cfg.duration.as_secs_f64();
    let statement = sql.renew_lease();
    // A fixed rate from each renewal's send: one that took its whole interval is
    // followed at once by the next.
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + cfg.renew, cfg.renew);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        if let Some(why) = lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            lease.lose(&why);
            return;
        }
        let sent = Instant::now();
        let renewed = tokio::time::timeout(cfg.renew, async {
            let c = client.lock().await;
            c.query_opt(&statement, &[&name, &secs]).await
        })
        .await;
        // The lock was released meanwhile (the holder is done): nothing to report.
        if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return;
        }
        match renewed {
            Ok(Ok(Some(_))) => lease.confirmed(sent),
            Ok(Ok(None)) => {
                lease.lose(NOT_HELD);
                lost.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| NOT_HELD.to_string());
                tracing::error!("{}", lost_message(NOT_HELD));
                return;
            }
            Ok(Err(e)) => match Failure::pg(e) {
                Failure::Closed(why) | Failure::LockLost(why) => {
                    lease.lose(&why);
                    lost.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| why.clone());
                    return;
                }
                Failure::Other(why) => {
                    tracing::warn!("the state lock's lease was not renewed: {why}");
                    lease.unconfirmed(&why);
                }
            },
            Err(_) => {
                let why = format!(
                    "no answer from the database within {} s",
                    cfg.renew.as_secs_f64()
                );
                tracing::warn!("the state lock's lease was not renewed: {why}");
                lease.unconfirmed(&why);
            }
        }
    }
}

impl StoreLock for PgLock {
    fn lost(&self) -> Option<String> {
        self.session.lost().map(|why| lost_message(&why))
    }
}

/// The watchers' leadership, held on the store's session; lost with it.
struct PgLeadership {
    session: Arc<Session>,
    sql: Arc<Sql>,
    row: String,
}

impl StoreLock for PgLeadership {
    fn lost(&self) -> Option<String> {
        self.session.lost().map(|why| {
            format!("the connection holding the watchers' leadership was lost ({why}); a standby may lead by now")
        })
    }
}

impl Drop for PgLeadership {
    fn drop(&mut self) {
        self.session.leading.store(false, Ordering::SeqCst);
        release(&self.session, &self.sql, &self.row);
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        self.renewing.take();
        self.session.locked.store(false, Ordering::SeqCst);
        release(&self.session, &self.sql, &self.name);
    }
}

/// Forgets the holder's row `row` and releases the advisory lock of `sql` (the state's
/// or the leadership's). If this fails, the lock goes when the connection closes.
fn release(session: &Session, sql: &Arc<Sql>, row: &str) {
    let sql = sql.clone();
    let row = row.to_string();
    let _ = session.call(Duration::from_secs(5), move |client| async move {
        let c = client.lock().await;
        c.execute(&sql.clear_holder(), &[&row])
            .await
            .map_err(Failure::pg)?;
        c.query_one(&sql.unlock(), &[]).await.map_err(Failure::pg)?;
        Ok(())
    });
}

type Ack = oneshot::Sender<Result<(), JournalError>>;

enum Entry {
    Record(String, Option<Ack>),
    Close(std::sync::mpsc::SyncSender<()>),
}

/// The journal's handle: records go to the writer task on the session's thread.
struct PgJournal {
    tx: Mutex<Option<mpsc::UnboundedSender<Entry>>>,
    /// Set when closing gave up waiting for the writer.
    stalled: Arc<AtomicBool>,
    /// The lease requests go out under.
    lease: Option<Arc<Lease>>,
    /// Why the session ended, once it did.
    lost: Arc<Mutex<Option<String>>>,
}

impl PgJournal {
    fn send(&self, e: Entry) -> bool {
        match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(e).is_ok(),
            None => false,
        }
    }
}

impl Journal for PgJournal {
    fn append<'a>(
        &'a self,
        record: &'a Record,
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>> {
        let line = serde_json::to_string(record).unwrap_or_default();
        let (ack, done) = oneshot::channel();
        let sent = self.send(Entry::Record(line, Some(ack)));
        Box::pin(async move {
            if !sent {
                return Err(JournalError::Write("journal closed".into()));
            }
            done.await
                .unwrap_or_else(|_| Err(JournalError::Write("journal writer stopped".into())))
        })
    }

    fn append_nowait(&self, record: &Record) {
        let line = serde_json::to_string(record).unwrap_or_default();
        self.send(Entry::Record(line, None));
    }

    fn close(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.send(Entry::Close(tx)) && rx.recv_timeout(OP_TIMEOUT).is_err() {
            self.stalled.store(true, Ordering::SeqCst);
        }
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn fence(&self) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + '_>> {
        // A local check: the lease is confirmed by its renewals, not per request.
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let r = match (lost, &self.lease) {
            (Some(why), _) => Err(JournalError::Write(lost_message(&why))),
            (None, None) => Err(JournalError::Write(
                "the journal was opened without the state lock (a taskform bug)".into(),
            )),
            (None, Some(lease)) => lease.check().map_err(|e| {
                JournalError::Write(format!(
                    "{e}. taskform stopped sending: nothing more was sent. Run again: the next run waits until this run's lease has expired, then settles what was in flight"
                ))
            }),
        };
        Box::pin(std::future::ready(r))
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Group commit: whatever records are waiting go in one `INSERT`, which commits only
/// if this session holds the lock. After a failure every later record fails too.
async fn writer(
    mut rx: mpsc::UnboundedReceiver<Entry>,
    client: Arc<tokio::sync::Mutex<Client>>,
    lost: Arc<Mutex<Option<String>>>,
    sql: Arc<Sql>,
    name: String,
    shown: String,
) {
    let mut seq: i64 = 0;
    let mut failed: Option<String> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut seqs = Vec::new();
        let mut lines = Vec::new();
        let mut acks = Vec::new();
        let mut closing = None;
        for e in batch {
            match e {
                Entry::Record(line, ack) => {
                    seq += 1;
                    seqs.push(seq);
                    lines.push(line);
                    acks.extend(ack);
                }
                Entry::Close(reply) => closing = Some(reply),
            }
        }
        if failed.is_none() && !lines.is_empty() {
            let gone = lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(why) = gone {
                failed = Some(why);
            } else {
                let c = client.lock().await;
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    c.execute(&sql.append(), &[&name, &seqs, &lines]),
                )
                .await
                .map(|r| r.map(|n| n == lines.len() as u64));
                drop(c);
                failed = match r {
                    Ok(Ok(true)) => None,
                    Ok(Ok(false)) => Some(NOT_HELD.into()),
                    Ok(Err(e)) => Some(Failure::pg(e).text().to_string()),
                    Err(_) => Some(format!("no answer within {} s", OP_TIMEOUT.as_secs())),
                };
                if let Some(why) = &failed {
                    lost.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| why.clone());
                    tracing::error!(state = %shown, "{}", lost_message(why));
                }
            }
        }
        for a in acks {
            let _ = a.send(match &failed {
                None => Ok(()),
                Some(why) => Err(JournalError::Write(format!(
                    "cannot write {shown}'s journal: {}",
                    lost_message(why)
                ))),
            });
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
            break;
        }
    }
}
