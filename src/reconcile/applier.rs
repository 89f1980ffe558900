//! The applier: sends the plan's creates, updates and deletes with bounded concurrency,
//! a client-side rate limit that backs off after throttling, safe retries, and durable
//! journal records.
//!
//! For a create: an `intent` record is made durable, then the create is sent; a
//! returned task ID is made durable (`created`) before the task counts as done. A
//! create whose outcome is unknown stays `in_doubt` in the journal and is never retried
//! here. Updates (PUT of the full body) and deletes are idempotent, so they need no
//! intent and are retried even after a lost answer; their completion is journaled
//! (`updated`, `deleted`).
//!
//! Scheduling: a task the state records as being scheduled (an enabled CRON task; read
//! back, `enabled` 3) is stopped before it is changed or deleted, as the Terraform
//! provider's `terminal_before_modify` does, rather than after a refused request; one
//! the service refuses all the same (`DLG.2206`) is stopped then. After an update, a
//! body that enables a CRON schedule is started (`run`) whatever state the task was
//! in, so that a paused task (a pause in the console, or a run killed between its stop
//! and its PUT) ends scheduling; a body with `enabled: 0` leaves it stopped. Until that
//! `run` answers, the journal records the task as it is after the PUT (the new content
//! with `enabled: 0`), then the manifest's content: a run that ends in between leaves a
//! state whose next plan sends the update that starts it. A delete
//! refused as scheduling after the task was stopped is checked with show: a task the
//! service no longer shows (a soft-deleted instance, in the provider's words) counts as
//! deleted. A task already gone counts as deleted. An endpoint that offers no
//! update or delete (HTTP 404: a create-only gateway) falls back to create-only
//! behaviour: the update becomes a replace, the delete is left undone, with a warning.
//! After a cancel (Ctrl-C / SIGTERM) nothing new is started; what is in flight finishes
//! (bounded by the request timeout) and is recorded.
//!
//! Failing fast: the first write of a run goes out alone (with its retries), and the
//! others follow only once the service has answered something other than a refused
//! credential or throttling, so that a wrong token or workspace costs one request, not
//! one per slot. A refused credential (401/403) stops the run. So does an endpoint that
//! does not answer: when the first write got no answer to any attempt (connection
//! refused, timeouts), or when [`UNREACHABLE_IN_A_ROW`] requests in a row did after
//! the service had answered. The tasks not sent then are `skipped`, and one error line
//! names the endpoint.

use super::Sending;
use crate::load::manifest::Manifest;
use crate::plan::{Action, Plan};
use crate::remote::client::{Failure, Outcome, Shown, TaskApi};
use crate::remote::pacer::Pacer;
use crate::state::State;
use crate::state::journal::{JournalError, Record};
use crate::state::store::Journal;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Once the service has answered, this many requests in a row that got no answer to
/// any attempt (each after its retries) stop the run.
pub const UNREACHABLE_IN_A_ROW: u32 = 3;

/// Knobs of an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Creates in flight at once.
    pub concurrency: usize,
    /// Requests a second (0 = no limit).
    pub max_rate: f64,
    /// Attempts per task, counting the first.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// How an apply reports its progress. The applier calls it; the CLI draws a bar on a
/// terminal with it, and everything else passes [`Silent`].
pub trait Progress: Send + Sync {
    /// `total` tasks are about to be sent.
    fn start(&self, _total: u64) {}
    /// One task is done (whatever its outcome).
    fn task_done(&self) {}
    /// The apply is over.
    fn finish(&self) {}
    /// Whether the display replaces the log line per task (a bar on a terminal).
    fn replaces_logs(&self) -> bool {
        false
    }
}

/// No progress display: a log line per task.
pub struct Silent;
impl Progress for Silent {}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 8,
            max_rate: 40.0,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What became of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Created,
    Updated,
    Deleted,
    /// Not done because the endpoint offers no such request (create-only gateway).
    Unsupported,
    Failed,
    InDoubt,
    /// Not sent: cancelled, or stopped after an authentication failure.
    Skipped,
}

/// The result for one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub name: String,
    pub action: Action,
    pub outcome: TaskOutcome,
    pub task_id: Option<String>,
    pub file: Option<String>,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub attempts: u32,
}

/// What every task of one apply shares.
struct Run {
    api: Arc<dyn TaskApi>,
    journal: Arc<dyn Journal>,
    opts: ApplyOptions,
    /// Bounds the requests in flight (not the journal writes around them).
    slots: Semaphore,
    pacer: Pacer,
    /// Why the run stopped sending, once it did: a refused credential, an endpoint
    /// that does not answer, a journal that cannot be written.
    halt: watch::Sender<Option<String>>,
    /// Held by the write that goes out alone while the gate is closed.
    probe: tokio::sync::Mutex<()>,
    /// The gate: the service answered a write with something other than a refused
    /// credential or throttling, so writes may go out side by side.
    open: AtomicBool,
    /// The endpoint answered a request of this run (any HTTP status).
    reached: AtomicBool,
    /// Requests in a row (since the last answer) that got no answer to any attempt.
    unanswered: AtomicU32,
    cancel: watch::Receiver<bool>,
    /// Every record given to the journal, in order, so that the state can be updated
    /// from memory even when the journal could not be written.
    records: std::sync::Mutex<Vec<Record>>,
    progress: Arc<dyn Progress>,
}

/// What an apply did.
pub struct Applied {
    /// One per task sent (or skipped), in plan order.
    pub results: Vec<TaskResult>,
    /// The journal records, in order: fold them into the state with [`crate::state::journal::replay`].
    pub records: Vec<Record>,
}

/// Sends every create, replace, update and delete of `plan` and returns a result per
/// sent task, in plan order. `recorded` is the state the plan was made from: what it
/// recorded of each task (its schedule) decides whether it is stopped first. The
/// sending's `cancel` turning true stops new sends.
pub async fn execute(
    plan: &Plan,
    manifests: &[Manifest],
    recorded: &State,
    api: Arc<dyn TaskApi>,
    journal: Arc<dyn Journal>,
    sending: &Sending<'_>,
) -> Applied {
    let opts = sending.options;
    let cancel = sending.cancel.clone();
    let progress = sending.progress.clone();
    progress.start(plan.to_send().count() as u64);
    let run = Arc::new(Run {
        api,
        journal,
        slots: Semaphore::new(opts.concurrency.max(1)),
        pacer: Pacer::new(opts.max_rate),
        opts: opts.clone(),
        halt: watch::Sender::new(None),
        probe: tokio::sync::Mutex::new(()),
        open: AtomicBool::new(false),
        reached: AtomicBool::new(false),
        unanswered: AtomicU32::new(0),
        cancel,
        records: std::sync::Mutex::new(Vec::new()),
        progress,
    });
    let mut handles = Vec::new();
    for t in plan.to_send() {
        let m = t.manifest.and_then(|i| manifests.get(i));
        if t.action.sends_body() && m.is_none() {
            continue;
        }
        let task_id = t.task_id.clone().unwrap_or_default();
        let job = Job {
            recorded_scheduling: recorded_scheduling(recorded, &t.name, &task_id),
            name: t.name.clone(),
            action: t.action,
            hash: m.map_or_else(|| t.hash.clone().unwrap_or_default(), |m| m.hash.clone()),
            file: m.map(|m| m.file.clone()).or_else(|| t.file.clone()),
            task_id,
            body: m.map(|m| m.canonical.clone()).unwrap_or_default(),
            shown: m
                .map(|m| m.shown_canonical().to_string())
                .unwrap_or_default(),
            paused: m.and_then(paused),
        };
        let run = run.clone();
        handles.push(tokio::spawn(async move {
            let r = run.one(job).await;
            run.progress.task_done();
            r
        }));
    }
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!(error = %e, "a create task panicked"),
        }
    }
    run.progress.finish();
    let records = std::mem::take(&mut *run.records.lock().unwrap_or_else(|p| p.into_inner()));
    Applied { results, records }
}

struct Job {
    name: String,
    action: Action,
    hash: String,
    file: Option<String>,
    /// The remote task to update or delete.
    task_id: String,
    /// The canonical JSON body: sent as is.
    body: String,
    /// The body as the journal and the state record it (sensitive values fingerprinted).
    shown: String,
    /// The state records the remote task as being scheduled: it is stopped before it
    /// is changed or deleted.
    recorded_scheduling: bool,
    /// For a body that enables a CRON schedule: the hash and shown body of its content
    /// with the schedule stopped (`enabled: 0`), which is what the task holds after
    /// the PUT until its `run` succeeds.
    paused: Option<(String, String)>,
}

/// The content of `m` with its schedule stopped (hash, shown body), when `m` enables a
/// CRON schedule: what an update journals between its PUT and its `run`.
fn paused(m: &Manifest) -> Option<(String, String)> {
    let mut shown = m.shown_body();
    if schedule_of(&shown) != Schedule::On {
        return None;
    }
    shown["schedule_config"]["enabled"] = Value::from(0);
    let (text, _) = crate::hash::canonical_and_hash(&shown);
    Some((m.hash_of(&shown), text))
}

/// What a body says of its task's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// A CRON schedule, enabled (`enabled` 1; read back, 3).
    On,
    /// Not scheduled: run once, or `enabled` 0 (read back, 5: paused).
    Off,
    /// A CRON schedule that does not say whether it is enabled.
    Unsaid,
}

fn schedule_of(body: &Value) -> Schedule {
    let sc = &body["schedule_config"];
    if sc["schedule_type"].as_str() != Some("CRON") {
        return Schedule::Off;
    }
    match sc["enabled"].as_i64() {
        Some(1 | 3) => Schedule::On,
        None => Schedule::Unsaid,
        Some(_) => Schedule::Off,
    }
}

/// Whether the state's record of `task_id` (the current task of `name`) says it is
/// being scheduled. A superseded task keeps no body: not known, so not stopped first.
fn recorded_scheduling(state: &State, name: &str, task_id: &str) -> bool {
    state
        .tasks
        .get(name)
        .filter(|r| r.task_id == task_id)
        .and_then(|r| r.body.as_ref())
        .and_then(|b| serde_json::from_str::<Value>(b.get()).ok())
        .is_some_and(|b| schedule_of(&b) == Schedule::On)
}

impl Job {
    fn failed(&self) -> Record {
        Record::Failed {
            name: self.name.clone(),
            hash: self.hash.clone(),
        }
    }
    fn deleted(&self) -> Record {
        Record::Deleted {
            name: self.name.clone(),
            task_id: self.task_id.clone(),
        }
    }
    /// The applied body as recorded: never a sensitive value.
    fn raw_body(&self) -> Option<Box<serde_json::value::RawValue>> {
        raw(&self.shown)
    }
    /// The task now holds this content (hash, shown body).
    fn updated(&self, hash: String, body: Option<Box<serde_json::value::RawValue>>) -> Record {
        Record::Updated {
            name: self.name.clone(),
            task_id: self.task_id.clone(),
            hash,
            file: self.file.clone(),
            at: crate::clock::now_rfc3339(),
            body,
        }
    }
    /// Whether the task is started (`run`) after its update: when the new body enables
    /// a CRON schedule, whatever state the task was in (a paused task is not started
    /// by a PUT on every service); when it does not say, only if the update had to
    /// stop it (it is left as it was).
    fn start_after_update(&self, stopped: bool) -> bool {
        let body: Value = serde_json::from_str(&self.body).unwrap_or_default();
        match schedule_of(&body) {
            Schedule::On => true,
            Schedule::Unsaid => stopped,
            Schedule::Off => false,
        }
    }
}

fn raw(shown: &str) -> Option<Box<serde_json::value::RawValue>> {
    serde_json::value::RawValue::from_string(shown.to_string()).ok()
}

/// How a request ended, when it did not succeed.
enum Ended {
    /// Refused by the service (no retry).
    Failed(Failure),
    /// The credential is refused.
    Unauthorized(Failure),
    /// A create may or may not have happened.
    InDoubt(String),
    /// Retried `max_attempts` times.
    GaveUp(Failure),
    /// Interrupted between attempts.
    Cancelled,
    /// The run stopped (why); `last` is the failure of this request's last attempt,
    /// `None` when it was not sent.
    Halted { why: String, last: Option<Failure> },
}

impl Run {
    /// Journals a record and waits until it is durable.
    async fn record(&self, rec: Record) -> Result<(), JournalError> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec.clone());
        self.journal.append(&rec).await
    }

    /// Journals a record without waiting (it is durable before any later `record`).
    fn note(&self, rec: Record) {
        self.journal.append_nowait(&rec);
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
    }

    /// Why the run stopped, once it did.
    fn halted(&self) -> Option<String> {
        self.halt.borrow().clone()
    }

    /// Stops the run (the first reason stays).
    fn stop(&self, why: String) {
        self.halt.send_if_modified(|h| {
            if h.is_some() {
                return false;
            }
            *h = Some(why);
            true
        });
    }

    /// While the gate is closed, waits for the write that goes out alone to finish, and
    /// returns the guard for this one to go out alone; `None` once it is open.
    async fn probe(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.open.load(Ordering::SeqCst) {
            return None;
        }
        let guard = self.probe.lock().await;
        (!self.open.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Learns from an attempt's outcome: opens the gate, counts what got no answer,
    /// stops the run after a refused credential.
    fn saw(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Unauthorized(f) => {
                self.stop(format!("the service answered {f}"));
            }
            Outcome::Retry {
                throttled: true, ..
            } => {}
            o if o.answered() => self.open.store(true, Ordering::SeqCst),
            _ => {}
        }
        if outcome.answered() {
            self.reached.store(true, Ordering::SeqCst);
            self.unanswered.store(0, Ordering::SeqCst);
        }
    }

    /// A request got no answer to any of its attempts: stops the run when it was the
    /// first of the run, or the [`UNREACHABLE_IN_A_ROW`]th in a row.
    fn no_answer(&self, job: &Job, tries: u32, last: &str) {
        let n = self.unanswered.fetch_add(1, Ordering::SeqCst) + 1;
        let first = !self.reached.load(Ordering::SeqCst);
        if !first && n < UNREACHABLE_IN_A_ROW {
            return;
        }
        if self.halted().is_some() {
            return;
        }
        let endpoint = self.api.endpoint().unwrap_or_else(|| "the endpoint".into());
        let why = crate::remote::client::no_answer_why(last);
        let what = match first {
            true => format!(
                "the first request of the run ({}, {tries} attempt{})",
                job.name,
                if tries == 1 { "" } else { "s" }
            ),
            false => format!("{n} requests in a row"),
        };
        tracing::error!(
            "stopping the run: no answer from {endpoint} ({why}) to {what}; the tasks not sent yet are skipped. Check the endpoint (--endpoint / TASKFORM_ENDPOINT / `endpoint:` or `region:` in taskform.yaml) and the network, then run again"
        );
        self.stop(format!("no answer from {endpoint}"));
    }

    /// Sends one request with retries where they are safe. `idempotent` requests
    /// (update, delete, action) are retried after a lost answer too. While the gate is
    /// closed, the request goes out alone, retries included.
    async fn call<F, Fut>(
        &self,
        job: &Job,
        attempts: &mut u32,
        idempotent: bool,
        op: F,
    ) -> Result<Outcome, Ended>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let mut tries = 0;
        let mut probe = self.probe().await;
        let mut last: Option<Failure> = None;
        let mut answered = false;
        loop {
            if *self.cancel.borrow() {
                return Err(Ended::Cancelled);
            }
            if let Some(why) = self.halted() {
                return Err(Ended::Halted { why, last });
            }
            self.pacer.wait().await;
            // Every request, a create's first attempt included, goes out only while
            // the state's lock is certainly held, checked here after the pacer's wait
            // and any backoff: free with a state file; with PostgreSQL, whose lock can
            // be lost with its connection, the lease must be confirmed with its margin
            // left (a local check; a new holder waits the lease out before it reads
            // the server).
            if let Err(e) = self.journal.fence().await {
                tracing::error!(task = %job.name, "not sent: {e}");
                self.stop("the state lock was lost".into());
                let why = self.halted().unwrap_or_default();
                return Err(Ended::Halted { why, last });
            }
            *attempts += 1;
            tries += 1;
            // Nothing may leave later than the longest send the lock's holder row
            // promises (a token fetch queued behind another, a retry after a refused
            // token): past it the request is dropped, its outcome unknown.
            let outcome = match self.api.longest_send() {
                Some(limit) => tokio::time::timeout(limit, op()).await.unwrap_or_else(|_| {
                    Outcome::InDoubt(crate::remote::client::InDoubtCause::NoAnswer(format!(
                        "cut off after {} s, the longest a request may take under the state lock's lease",
                        limit.as_secs_f64()
                    )))
                }),
                None => op().await,
            };
            self.saw(&outcome);
            answered |= outcome.answered();
            if self.open.load(Ordering::SeqCst) {
                drop(probe.take());
            }
            let (failure, retry_after) = match outcome.retry(&self.pacer) {
                Ok(retry) => retry,
                Err(o @ (Outcome::Created(_) | Outcome::Done(_))) => return Ok(o),
                Err(Outcome::InDoubt(cause)) if idempotent => (
                    Failure {
                        status: None,
                        error_code: None,
                        error_msg: cause.to_string(),
                    },
                    None,
                ),
                Err(Outcome::InDoubt(cause)) => {
                    let reason = cause.to_string();
                    if !answered {
                        self.no_answer(job, tries, &reason);
                    }
                    return Err(Ended::InDoubt(reason));
                }
                Err(Outcome::Failed(f)) => return Err(Ended::Failed(f)),
                Err(Outcome::Unauthorized(f)) => return Err(Ended::Unauthorized(f)),
                // `retry()` takes every Retry; kept for an exhaustive match.
                Err(Outcome::Retry {
                    failure,
                    retry_after,
                    ..
                }) => (failure, retry_after),
            };
            if tries >= self.opts.max_attempts {
                tracing::warn!(task = %job.name, attempts = tries, error = %failure, "giving up after retries");
                if !answered {
                    self.no_answer(job, tries, &failure.error_msg);
                }
                return Err(Ended::GaveUp(failure));
            }
            let wait = retry_after
                .map(|r| r + Duration::from_millis(fastrand::u64(0..250)))
                .unwrap_or_else(|| {
                    crate::remote::pacer::backoff(
                        self.opts.backoff_base,
                        self.opts.backoff_max,
                        tries - 1,
                    )
                });
            tracing::info!(task = %job.name, attempt = tries, error = %failure, wait_ms = wait.as_millis() as u64, "retrying");
            last = Some(failure);
            let mut c = self.cancel.clone();
            let mut h = self.halt.subscribe();
            // A cancel or a stop cuts the wait short; a closed channel (nobody can
            // cancel) does not.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Ok(_) = c.wait_for(|v| *v) => {}
                Ok(_) = h.wait_for(Option::is_some) => {}
            }
        }
    }

    /// Fills `result` for a request that did not succeed, and stops the run after a
    /// refused credential.
    fn ended(&self, result: &mut TaskResult, ended: Ended) {
        match ended {
            Ended::Cancelled => {
                result.outcome = TaskOutcome::Skipped;
                result.error_msg = Some(match result.attempts {
                    0 => "not sent: interrupted".into(),
                    _ => "not sent again: interrupted".into(),
                });
            }
            Ended::GaveUp(f) => {
                fill_failure(result, &f);
                result.error_msg = Some(format!(
                    "{} (gave up after {} attempts)",
                    f.error_msg, result.attempts
                ));
                result.outcome = TaskOutcome::Failed;
            }
            Ended::Failed(f) => {
                tracing::warn!(task = %result.name, action = result.action.as_str(), error = %f, "refused");
                fill_failure(result, &f);
                result.outcome = TaskOutcome::Failed;
            }
            Ended::Unauthorized(f) => {
                fill_failure(result, &f);
                result.outcome = TaskOutcome::Failed;
            }
            Ended::Halted { why, last: None } => {
                result.outcome = TaskOutcome::Skipped;
                result.error_msg = Some(format!("not sent: the run stopped ({why}; see above)"));
            }
            Ended::Halted { why, last: Some(f) } => {
                fill_failure(result, &f);
                result.error_msg = Some(format!(
                    "{} (not retried: the run stopped: {why})",
                    f.error_msg
                ));
                result.outcome = TaskOutcome::Failed;
            }
            Ended::InDoubt(reason) => {
                result.outcome = TaskOutcome::InDoubt;
                result.error_msg = Some(reason);
            }
        }
    }

    async fn one(&self, job: Job) -> TaskResult {
        let mut result = TaskResult {
            name: job.name.clone(),
            action: job.action,
            outcome: TaskOutcome::Skipped,
            task_id: (!job.task_id.is_empty()).then(|| job.task_id.clone()),
            file: job.file.clone(),
            http_status: None,
            error_code: None,
            error_msg: None,
            attempts: 0,
        };
        // The slot covers the intent record and the requests, so that the created
        // record's fsync does not hold back the next send.
        let slot = self.slots.acquire().await;
        if *self.cancel.borrow() {
            result.error_msg = Some("not sent: interrupted".into());
            return result;
        }
        if let Some(why) = self.halted() {
            result.error_msg = Some(format!("not sent: the run stopped ({why}; see above)"));
            return result;
        }
        match job.action {
            Action::Update => self.update(&job, &mut result).await,
            Action::Delete => self.delete(&job, &mut result).await,
            _ => self.create(&job, &mut result).await,
        }
        drop(slot);
        result
    }

    async fn create(&self, job: &Job, result: &mut TaskResult) {
        let intent = Record::Intent {
            name: job.name.clone(),
            hash: job.hash.clone(),
            file: job.file.clone(),
            at: crate::clock::now_rfc3339(),
            body: job.raw_body(),
        };
        if let Err(e) = self.record(intent).await {
            // Never sent: the intent kept in memory must not leave it in doubt.
            self.note(job.failed());
            self.stop("the journal cannot be written".into());
            result.error_msg = Some(format!("not sent: {e}"));
            return;
        }
        tracing::debug!(task = %job.name, "sending the create");
        let id = match self
            .call(job, &mut result.attempts, false, || {
                self.api.create(job.body.as_bytes())
            })
            .await
        {
            Ok(Outcome::Created(id)) => id,
            Ok(_) => {
                self.ended(
                    result,
                    Ended::InDoubt("the create was answered without a task_id".into()),
                );
                self.note_in_doubt(job, result);
                return;
            }
            Err(Ended::InDoubt(reason)) => {
                self.ended(result, Ended::InDoubt(reason));
                self.note_in_doubt(job, result);
                return;
            }
            Err(e) => {
                // Every attempt was answered with "nothing created".
                self.note(job.failed());
                self.ended(result, e);
                return;
            }
        };
        self.pacer.succeeded();
        let rec = Record::Created {
            name: job.name.clone(),
            hash: job.hash.clone(),
            task_id: id.clone(),
            file: job.file.clone(),
            at: crate::clock::now_rfc3339(),
            body: job.raw_body(),
        };
        self.durable(rec, &job.name, &id).await;
        self.done(job, "created", &id);
        result.outcome = TaskOutcome::Created;
        result.task_id = Some(id);
    }

    fn note_in_doubt(&self, job: &Job, result: &TaskResult) {
        let reason = result.error_msg.clone().unwrap_or_default();
        self.note(Record::InDoubt {
            name: job.name.clone(),
            hash: job.hash.clone(),
            reason: reason.clone(),
        });
        tracing::warn!(task = %job.name, reason = %reason, "create outcome unknown; recorded as in doubt");
    }

    /// Journals a completion record durably; a failure stops the run (the record is
    /// still in memory, so the state written at the end holds it).
    async fn durable(&self, rec: Record, name: &str, task_id: &str) {
        if let Err(e) = self.record(rec).await {
            tracing::error!(task = %name, task_id = %task_id, error = %e, "done, but it could not be journaled");
            self.stop("the journal cannot be written".into());
        }
    }

    fn done(&self, job: &Job, what: &str, id: &str) {
        if self.progress.replaces_logs() {
            tracing::debug!(task = %job.name, task_id = %id, action = job.action.as_str(), "{what}");
        } else {
            tracing::info!(task = %job.name, task_id = %id, action = job.action.as_str(), "{what}");
        }
    }

    /// Stops the task: before changing or deleting a task the state records as being
    /// scheduled, or after the service refused to (`DLG.2206`).
    async fn stop_task(&self, job: &Job, result: &mut TaskResult) -> Result<(), Ended> {
        self.call(job, &mut result.attempts, true, || {
            self.api.action(&job.task_id, "stop")
        })
        .await
        .map(|_| ())
    }

    /// Stops a task the service refused to change as being scheduled, then sends `op`
    /// again.
    async fn stop_then<F, Fut>(
        &self,
        job: &Job,
        result: &mut TaskResult,
        op: F,
    ) -> Result<(), Ended>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        tracing::info!(task = %job.name, task_id = %job.task_id, "the service says the task is being scheduled; stopping it first");
        self.stop_task(job, result).await?;
        self.call(job, &mut result.attempts, true, op)
            .await
            .map(|_| ())
    }

    /// Stops a task the state records as being scheduled before changing or deleting
    /// it (as the provider's `terminal_before_modify`): one request instead of a
    /// refused one and a stop.
    async fn stop_first(&self, job: &Job, result: &mut TaskResult) -> Result<bool, Ended> {
        if !job.recorded_scheduling {
            return Ok(false);
        }
        tracing::debug!(task = %job.name, task_id = %job.task_id, "recorded as being scheduled; stopping it first");
        self.stop_task(job, result).await.map(|()| true)
    }

    async fn update(&self, job: &Job, result: &mut TaskResult) {
        let put = || self.api.update(&job.task_id, job.body.as_bytes());
        let mut stopped = false;
        let sent = match self.stop_first(job, result).await {
            Ok(s) => {
                stopped = s;
                match self.call(job, &mut result.attempts, true, put).await {
                    Err(Ended::Failed(f)) if f.is_scheduling() => {
                        stopped = true;
                        self.stop_then(job, result, put).await
                    }
                    other => other.map(|_| ()),
                }
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {}
            Err(Ended::Failed(f)) if f.is_not_found() => {
                tracing::warn!(task = %job.name, task_id = %job.task_id, "the recorded task no longer exists on the server; creating it again");
                self.note(job.deleted());
                return self.create(job, result).await;
            }
            Err(Ended::Failed(f)) if f.is_unsupported() => {
                tracing::warn!(task = %job.name, error = %f, "the endpoint offers no update; replacing the task instead (create-only behaviour)");
                return self.create(job, result).await;
            }
            Err(e) => {
                // It was being scheduled: leave it so, with its old content (only
                // under the lock, as every request: without it, the next run's plan
                // starts it).
                if stopped && self.journal.fence().await.is_ok() {
                    let _ = self.api.action(&job.task_id, "run").await;
                }
                return self.ended(result, e);
            }
        }
        self.pacer.succeeded();
        let start = job.start_after_update(stopped);
        // Until its `run` succeeds, a task whose schedule is to be started holds the
        // new content with its schedule stopped (a PUT need not start a paused task):
        // journaled as such, so that a run that ends here (killed, its lock lost, the
        // `run` refused) leaves a state whose next plan sends what is missing.
        let between = match (start, &job.paused) {
            (true, Some((hash, shown))) => Some((hash.clone(), shown.clone())),
            _ => None,
        };
        let (hash, body) = match &between {
            Some((hash, shown)) => (hash.clone(), raw(shown)),
            None => (job.hash.clone(), job.raw_body()),
        };
        self.durable(job.updated(hash, body), &job.name, &job.task_id)
            .await;
        self.done(job, "updated", &job.task_id);
        result.outcome = TaskOutcome::Updated;
        if start {
            let run = || self.api.action(&job.task_id, "run");
            match self.call(job, &mut result.attempts, true, run).await {
                Ok(_) if between.is_some() => {
                    self.durable(
                        job.updated(job.hash.clone(), job.raw_body()),
                        &job.name,
                        &job.task_id,
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => {
                    self.ended(result, e);
                    result.error_msg = Some(format!(
                        "updated, but starting its schedule failed: {}; it is recorded as stopped, so the next apply starts it (or start it in the console or with the action API, `action?action=run`)",
                        result.error_msg.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
    }

    async fn delete(&self, job: &Job, result: &mut TaskResult) {
        let del = || self.api.delete(&job.task_id);
        let mut stopped = false;
        let mut sent = match self.stop_first(job, result).await {
            Ok(s) => {
                stopped = s;
                match self.call(job, &mut result.attempts, true, del).await {
                    Err(Ended::Failed(f)) if f.is_scheduling() && !stopped => {
                        stopped = true;
                        self.stop_then(job, result, del).await
                    }
                    other => other.map(|_| ()),
                }
            }
            Err(e) => Err(e),
        };
        // Refused as scheduling although it was stopped: the provider reads this as a
        // soft-deleted instance. The task is deleted when the service no longer shows it.
        if let Err(Ended::Failed(f)) = &sent
            && f.is_scheduling()
            && stopped
            && matches!(self.api.show(&job.task_id).await, Ok(Shown::Gone))
        {
            tracing::info!(task = %job.name, task_id = %job.task_id, "refused as being scheduled, but the service no longer shows the task (soft-deleted); counted as deleted");
            sent = Ok(());
        }
        match sent {
            Ok(()) => {}
            Err(Ended::Failed(f)) if f.is_not_found() => {
                tracing::info!(task = %job.name, task_id = %job.task_id, "already gone from the server");
            }
            Err(Ended::Failed(f)) if f.is_unsupported() => {
                tracing::warn!(task = %job.name, task_id = %job.task_id, error = %f, "the endpoint offers no delete (create-only); the task stays on the server and in the state");
                fill_failure(result, &f);
                result.outcome = TaskOutcome::Unsupported;
                return;
            }
            Err(e) => return self.ended(result, e),
        }
        self.pacer.succeeded();
        self.durable(job.deleted(), &job.name, &job.task_id).await;
        self.done(job, "deleted", &job.task_id);
        result.outcome = TaskOutcome::Deleted;
    }
}

fn fill_failure(result: &mut TaskResult, f: &Failure) {
    result.http_status = f.status;
    result.error_code = f.error_code.clone();
    result.error_msg = Some(f.error_msg.clone());
}
