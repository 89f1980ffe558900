//! The applier: sends the plan's creates with bounded concurrency, a client-side rate
//! limit that backs off after throttling, safe retries, and durable journal records.
//!
//! For every task: an `intent` record is made durable, then the create is sent; a
//! returned task ID is made durable (`created`) before the task counts as done. A task
//! whose outcome is unknown stays `in_doubt` in the journal and is never retried here.
//! After a cancel (Ctrl-C / SIGTERM) no new create is started; those in flight finish
//! (bounded by the request timeout) and are recorded.

use crate::client::{Failure, Outcome, TaskApi};
use crate::journal::Record;
use crate::manifest::Manifest;
use crate::plan::{Action, Plan};
use crate::store::Journal;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

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
    /// Show a progress bar on stderr (a terminal); otherwise a log line per task.
    pub progress_bar: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 8,
            max_rate: 40.0,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            progress_bar: false,
        }
    }
}

/// What became of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Created,
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

/// Client-side rate limit that halves after throttling and recovers slowly.
struct Pacer {
    max: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl Pacer {
    fn new(max: f64) -> Self {
        Pacer {
            max,
            state: std::sync::Mutex::new((max, Instant::now())),
        }
    }
    async fn wait(&self) {
        let slot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (rate, next) = *s;
            if rate <= 0.0 {
                return;
            }
            let now = Instant::now();
            let slot = next.max(now);
            s.1 = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
    fn throttled(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = if s.0 <= 0.0 {
            10.0
        } else {
            (s.0 / 2.0).max(1.0)
        };
        tracing::info!(rate = s.0, "throttled by the service; slowing down");
    }
    fn succeeded(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 > 0.0 && (self.max <= 0.0 || s.0 < self.max) {
            s.0 += 0.2;
            if self.max > 0.0 {
                s.0 = s.0.min(self.max);
            } else if s.0 > 1000.0 {
                s.0 = 0.0;
            }
        }
    }
}

fn backoff(opts: &ApplyOptions, attempt: u32) -> Duration {
    let exp = opts
        .backoff_base
        .saturating_mul(1u32 << attempt.min(16))
        .min(opts.backoff_max);
    Duration::from_secs_f64(exp.as_secs_f64() * (0.5 + fastrand::f64() * 0.5))
}

/// What every task of one apply shares.
struct Run {
    api: Arc<dyn TaskApi>,
    journal: Arc<dyn Journal>,
    opts: ApplyOptions,
    /// Bounds the requests in flight (not the journal writes around them).
    slots: Semaphore,
    pacer: Pacer,
    /// Set after a refused credential or a journal that cannot be written.
    stop: AtomicBool,
    cancel: watch::Receiver<bool>,
    /// Every record given to the journal, in order, so that the state can be updated
    /// from memory even when the journal could not be written.
    records: std::sync::Mutex<Vec<Record>>,
    progress: Option<indicatif::ProgressBar>,
}

/// What an apply did.
pub struct Applied {
    /// One per task sent (or skipped), in plan order.
    pub results: Vec<TaskResult>,
    /// The journal records, in order: fold them into the state with [`crate::journal::replay`].
    pub records: Vec<Record>,
}

/// Sends every create/replace of `plan` and returns a result per sent task, in plan
/// order. `cancel` turning true stops new sends.
pub async fn execute(
    plan: &Plan,
    manifests: &[Manifest],
    api: Arc<dyn TaskApi>,
    journal: Arc<dyn Journal>,
    opts: &ApplyOptions,
    cancel: watch::Receiver<bool>,
) -> Applied {
    let run = Arc::new(Run {
        api,
        journal,
        slots: Semaphore::new(opts.concurrency.max(1)),
        pacer: Pacer::new(opts.max_rate),
        opts: opts.clone(),
        stop: AtomicBool::new(false),
        cancel,
        records: std::sync::Mutex::new(Vec::new()),
        progress: opts
            .progress_bar
            .then(|| progress_bar(plan.to_send().count() as u64)),
    });
    let mut handles = Vec::new();
    for t in plan.to_send() {
        let Some(m) = t.manifest.and_then(|i| manifests.get(i)) else {
            continue;
        };
        let job = Job {
            name: m.name.clone(),
            action: t.action,
            hash: m.hash.clone(),
            file: m.file.clone(),
            body: m.canonical.clone(),
        };
        let run = run.clone();
        handles.push(tokio::spawn(async move {
            let r = run.one(job).await;
            if let Some(pb) = &run.progress {
                pb.inc(1);
            }
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
    if let Some(pb) = &run.progress {
        pb.finish_and_clear();
    }
    let records = std::mem::take(&mut *run.records.lock().unwrap_or_else(|p| p.into_inner()));
    Applied { results, records }
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} creating [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

struct Job {
    name: String,
    action: Action,
    hash: String,
    file: String,
    /// The canonical JSON body: sent as is, and recorded as the applied body.
    body: String,
}

impl Job {
    fn failed(&self) -> Record {
        Record::Failed {
            name: self.name.clone(),
            hash: self.hash.clone(),
        }
    }
}

impl Run {
    /// Journals a record and waits until it is durable.
    async fn record(&self, rec: Record) -> Result<(), String> {
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

    async fn one(&self, job: Job) -> TaskResult {
        let mut result = TaskResult {
            name: job.name.clone(),
            action: job.action,
            outcome: TaskOutcome::Skipped,
            task_id: None,
            file: Some(job.file.clone()),
            http_status: None,
            error_code: None,
            error_msg: None,
            attempts: 0,
        };
        let skipped = |mut result: TaskResult, why: String| {
            result.outcome = TaskOutcome::Skipped;
            result.error_msg = Some(why);
            result
        };
        // The slot covers the intent record and the requests, so that the created
        // record's fsync does not hold back the next send.
        let slot = self.slots.acquire().await;
        if *self.cancel.borrow() {
            return skipped(result, "not sent: interrupted".into());
        }
        if self.stop.load(Ordering::SeqCst) {
            return skipped(
                result,
                "not sent: the run stopped after an earlier error (see above)".into(),
            );
        }
        let intent = Record::Intent {
            name: job.name.clone(),
            hash: job.hash.clone(),
            file: Some(job.file.clone()),
            at: crate::clock::now_rfc3339(),
        };
        if let Err(e) = self.record(intent).await {
            self.stop.store(true, Ordering::SeqCst);
            return skipped(result, format!("not sent: {e}"));
        }
        let id = loop {
            if *self.cancel.borrow() && result.attempts > 0 {
                // Every earlier attempt was answered with "nothing created".
                self.note(job.failed());
                return skipped(result, "not sent again: interrupted".into());
            }
            self.pacer.wait().await;
            result.attempts += 1;
            match self.api.create(job.body.as_bytes()).await {
                Outcome::Created(id) => break id,
                Outcome::Retry {
                    failure,
                    retry_after,
                    throttled,
                } => {
                    if throttled {
                        self.pacer.throttled();
                    }
                    if result.attempts >= self.opts.max_attempts {
                        self.note(job.failed());
                        tracing::warn!(task = %job.name, attempts = result.attempts, error = %failure, "giving up after retries");
                        fill_failure(&mut result, &failure);
                        result.error_msg = Some(format!(
                            "{} (gave up after {} attempts)",
                            failure.error_msg, result.attempts
                        ));
                        result.outcome = TaskOutcome::Failed;
                        return result;
                    }
                    let wait = retry_after
                        .map(|r| r + Duration::from_millis(fastrand::u64(0..250)))
                        .unwrap_or_else(|| backoff(&self.opts, result.attempts - 1));
                    tracing::info!(task = %job.name, attempt = result.attempts, error = %failure, wait_ms = wait.as_millis() as u64, "retrying");
                    let mut c = self.cancel.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = c.wait_for(|v| *v) => {}
                    }
                }
                Outcome::Failed(failure) => {
                    self.note(job.failed());
                    tracing::warn!(task = %job.name, file = %job.file, error = %failure, "create refused");
                    fill_failure(&mut result, &failure);
                    result.outcome = TaskOutcome::Failed;
                    return result;
                }
                Outcome::Unauthorized(failure) => {
                    self.note(job.failed());
                    self.stop.store(true, Ordering::SeqCst);
                    fill_failure(&mut result, &failure);
                    result.outcome = TaskOutcome::Failed;
                    return result;
                }
                Outcome::InDoubt(reason) => {
                    self.note(Record::InDoubt {
                        name: job.name.clone(),
                        hash: job.hash.clone(),
                        reason: reason.clone(),
                    });
                    tracing::warn!(task = %job.name, reason = %reason, "create outcome unknown; recorded as in doubt");
                    result.outcome = TaskOutcome::InDoubt;
                    result.error_msg = Some(reason);
                    return result;
                }
            }
        };
        drop(slot);
        self.pacer.succeeded();
        let rec = Record::Created {
            name: job.name.clone(),
            hash: job.hash.clone(),
            task_id: id.clone(),
            file: Some(job.file.clone()),
            at: crate::clock::now_rfc3339(),
            body: serde_json::value::RawValue::from_string(job.body).ok(),
        };
        if let Err(e) = self.record(rec).await {
            // The ID is in memory only: the state written at the end of the run holds it.
            tracing::error!(task = %job.name, task_id = %id, error = %e, "task created but its ID could not be journaled");
            self.stop.store(true, Ordering::SeqCst);
        }
        if self.progress.is_some() {
            tracing::debug!(task = %job.name, task_id = %id, action = job.action.as_str(), "created");
        } else {
            tracing::info!(task = %job.name, task_id = %id, action = job.action.as_str(), "created");
        }
        result.outcome = TaskOutcome::Created;
        result.task_id = Some(id);
        result
    }
}

fn fill_failure(result: &mut TaskResult, f: &Failure) {
    result.http_status = (f.status != 0).then_some(f.status);
    result.error_code = f.error_code.clone();
    result.error_msg = Some(f.error_msg.clone());
}
