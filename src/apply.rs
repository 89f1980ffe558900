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
use tokio::sync::{Mutex, Semaphore, watch};

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

/// Sends every create/replace of `plan` and returns a result per sent task, in plan
/// order. `cancel` turning true stops new sends.
pub async fn execute(
    plan: &Plan,
    manifests: &[Manifest],
    api: Arc<dyn TaskApi>,
    journal: Arc<dyn Journal>,
    opts: &ApplyOptions,
    cancel: watch::Receiver<bool>,
) -> Vec<TaskResult> {
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let pacer = Arc::new(Pacer::new(opts.max_rate));
    let stop = Arc::new(AtomicBool::new(false));
    let auth_failure: Arc<Mutex<Option<Failure>>> = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    let total = plan.to_send().count();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        let (sem, pacer, stop, auth_failure, api, journal, opts, cancel, done) = (
            sem.clone(),
            pacer.clone(),
            stop.clone(),
            auth_failure.clone(),
            api.clone(),
            journal.clone(),
            opts.clone(),
            cancel.clone(),
            done.clone(),
        );
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = run_one(
                job,
                &*api,
                &*journal,
                &pacer,
                &opts,
                &stop,
                &auth_failure,
                &cancel,
            )
            .await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(done = n, total, "progress");
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
    results
}

struct Job {
    name: String,
    action: Action,
    hash: String,
    file: String,
    /// The canonical JSON body: sent as is, and recorded as the applied body.
    body: String,
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    job: Job,
    api: &dyn TaskApi,
    journal: &dyn Journal,
    pacer: &Pacer,
    opts: &ApplyOptions,
    stop: &AtomicBool,
    auth_failure: &Mutex<Option<Failure>>,
    cancel: &watch::Receiver<bool>,
) -> TaskResult {
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
    let stopped = |result: &mut TaskResult, why: &str| {
        result.outcome = TaskOutcome::Skipped;
        result.error_msg = Some(why.to_string());
    };
    if *cancel.borrow() {
        stopped(&mut result, "not sent: interrupted");
        return result;
    }
    if stop.load(Ordering::SeqCst) {
        stopped(
            &mut result,
            "not sent: the credential was refused for another task",
        );
        return result;
    }
    let intent = Record::Intent {
        name: job.name.clone(),
        hash: job.hash.clone(),
        file: Some(job.file.clone()),
        at: crate::clock::now_rfc3339(),
    };
    if let Err(e) = journal.append(&intent).await {
        stopped(&mut result, &format!("not sent: {e}"));
        stop.store(true, Ordering::SeqCst);
        return result;
    }
    loop {
        if *cancel.borrow() && result.attempts > 0 {
            // A retry that was never answered by a create cannot have made a task.
            journal.append_nowait(&Record::Failed {
                name: job.name.clone(),
                hash: job.hash.clone(),
            });
            stopped(&mut result, "not sent again: interrupted");
            return result;
        }
        pacer.wait().await;
        result.attempts += 1;
        let outcome = api.create(job.body.as_bytes()).await;
        match outcome {
            Outcome::Created(id) => {
                pacer.succeeded();
                let rec = Record::Created {
                    name: job.name.clone(),
                    hash: job.hash.clone(),
                    task_id: id.clone(),
                    file: Some(job.file.clone()),
                    at: crate::clock::now_rfc3339(),
                    body: serde_json::value::RawValue::from_string(job.body.clone()).ok(),
                };
                if let Err(e) = journal.append(&rec).await {
                    // The ID is only in memory now: say it loudly so it can be recorded by hand.
                    tracing::error!(task = %job.name, task_id = %id, error = %e, "task created but its ID could not be journaled; record it by hand if the state write also fails");
                    stop.store(true, Ordering::SeqCst);
                }
                tracing::info!(task = %job.name, task_id = %id, action = job.action.as_str(), "created");
                result.outcome = TaskOutcome::Created;
                result.task_id = Some(id);
                return result;
            }
            Outcome::Retry {
                failure,
                retry_after,
                throttled,
            } => {
                if throttled {
                    pacer.throttled();
                }
                if result.attempts >= opts.max_attempts {
                    journal.append_nowait(&Record::Failed {
                        name: job.name.clone(),
                        hash: job.hash.clone(),
                    });
                    tracing::warn!(task = %job.name, attempts = result.attempts, error = %failure, "giving up after retries");
                    fill_failure(&mut result, &failure);
                    result.error_msg = Some(format!(
                        "{} (gave up after {} attempts)",
                        result.error_msg.clone().unwrap_or_default(),
                        result.attempts
                    ));
                    result.outcome = TaskOutcome::Failed;
                    return result;
                }
                let wait = retry_after
                    .map(|r| r + Duration::from_millis(fastrand::u64(0..250)))
                    .unwrap_or_else(|| backoff(opts, result.attempts - 1));
                tracing::info!(task = %job.name, attempt = result.attempts, error = %failure, wait_ms = wait.as_millis() as u64, "retrying");
                let mut c = cancel.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = c.wait_for(|v| *v) => {}
                }
            }
            Outcome::Failed(failure) => {
                journal.append_nowait(&Record::Failed {
                    name: job.name.clone(),
                    hash: job.hash.clone(),
                });
                tracing::warn!(task = %job.name, file = %job.file, error = %failure, "create refused");
                fill_failure(&mut result, &failure);
                result.outcome = TaskOutcome::Failed;
                return result;
            }
            Outcome::Unauthorized(failure) => {
                journal.append_nowait(&Record::Failed {
                    name: job.name.clone(),
                    hash: job.hash.clone(),
                });
                stop.store(true, Ordering::SeqCst);
                let mut first = auth_failure.lock().await;
                if first.is_none() {
                    *first = Some(failure.clone());
                }
                fill_failure(&mut result, &failure);
                result.outcome = TaskOutcome::Failed;
                return result;
            }
            Outcome::InDoubt(reason) => {
                journal.append_nowait(&Record::InDoubt {
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
    }
}

fn fill_failure(result: &mut TaskResult, f: &Failure) {
    result.http_status = (f.status != 0).then_some(f.status);
    result.error_code = f.error_code.clone();
    result.error_msg = Some(f.error_msg.clone());
}
