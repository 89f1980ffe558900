//! The watcher as a service: probes, status and metrics on `--listen`.
//!
//! - `GET /healthz`: 200 while the process runs its loop (liveness).
//! - `GET /readyz`: 200 when this instance is useful: the leader (holding the state
//!   lock) whose last reconcile succeeded (or has not run yet), or a standby waiting for
//!   the lock. 503 for a leader whose last reconcile failed, or a standby that cannot
//!   reach the state. A Kubernetes readiness probe then keeps both replicas of a healthy
//!   pair in service and takes out the one that needs a person.
//! - `GET /status`: JSON: role, environment, last reconcile (time, trigger, result,
//!   counts by action, tasks in doubt), last error.
//! - `GET /metrics`: Prometheus/OpenMetrics text, from `prometheus-client`:
//!   `taskform_reconciles_total{result}`, `taskform_reconcile_duration_seconds`,
//!   `taskform_requests_total{operation,status}`, `taskform_tasks{action}`,
//!   `taskform_tasks_in_doubt`, `taskform_drift_detected_total`, `taskform_leader`,
//!   `taskform_last_reconcile_timestamp_seconds`, `taskform_build_info{version,environment}`.
//!
//! - `POST /hooks/git` (with `--git`): fetch at once, for push webhooks. The request
//!   must carry the secret of `TASKFORM_WEBHOOK_SECRET`: `Authorization: Bearer
//!   SECRET`, `X-Gitlab-Token: SECRET`, or GitHub's `X-Hub-Signature-256` (HMAC-SHA256
//!   of the body), compared in constant time; 401 otherwise, 404 without a secret set.
//!
//! Every request the watcher sends goes through [`Metered`], which counts it by
//! operation and HTTP status (`none` when no answer came).

use crate::reconcile::watch::{Observer, Reconciled};
use crate::remote::Error as RemoteError;
use crate::remote::client::{Listing, Outcome, Shown, TaskApi};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The watcher's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the state lock another process holds.
    Standby,
    /// Holding the lock and reconciling.
    Leader,
    /// `--plan-only`: planning, never sending, no lock.
    PlanOnly,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: String,
}

struct Metrics {
    registry: Registry,
    revision: Family<RevisionLabel, Gauge>,
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    tasks: Family<ActionLabel, Gauge>,
    in_doubt: Gauge,
    drift: Counter,
    leader: Gauge,
    last: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    fn new(environment: &str) -> Metrics {
        let mut registry = Registry::with_prefix("taskform");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register("reconciles", "Reconciles, by result", reconciles.clone());
        // 5 ms to 44 minutes: a first reconcile of 10,000 tasks at the service's rate
        // limit takes minutes.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 20));
        registry.register_with_unit(
            "reconcile_duration",
            "How long a reconcile took",
            Unit::Seconds,
            duration.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests sent to the DataArts API, by operation and HTTP status",
            requests.clone(),
        );
        let tasks = Family::<ActionLabel, Gauge>::default();
        registry.register(
            "tasks",
            "Tasks by action still pending after the last reconcile (what it applied counts as unchanged; 0 once applied)",
            tasks.clone(),
        );
        let in_doubt = Gauge::default();
        registry.register(
            "tasks_in_doubt",
            "Creates whose outcome is unknown, after the last reconcile",
            in_doubt.clone(),
        );
        let drift = Counter::default();
        registry.register(
            "drift_detected",
            "Tasks an interval reconcile (no file changed) had to send: changed outside taskform",
            drift.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the state lock and reconciles, 0 on standby",
            leader.clone(),
        );
        let last = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "last_reconcile_timestamp",
            "When the last reconcile ended (Unix time)",
            Unit::Seconds,
            last.clone(),
        );
        registry.register(
            "build",
            "The running taskform",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("environment".to_string(), environment.to_string()),
            ]),
        );
        let revision = Family::<RevisionLabel, Gauge>::default();
        registry.register(
            "revision",
            "The live revision of the config repo (watch --git): 1 for its commit",
            revision.clone(),
        );
        Metrics {
            registry,
            revision,
            reconciles,
            duration,
            requests,
            tasks,
            in_doubt,
            drift,
            leader,
            last,
        }
    }
}

/// What `/status` shows.
#[derive(Debug, Default)]
struct Status {
    role: Option<Role>,
    /// Who holds the lock, on standby.
    holder: Option<String>,
    /// A standby that cannot reach the state.
    standby_error: Option<String>,
    last: Option<(String, Reconciled)>,
    last_error: Option<(String, String)>,
    /// With `--git`: the live revision (sha, subject) and why the newest is not live.
    revision: Option<(String, String)>,
    revision_problem: Option<String>,
}

/// The watcher's status and metrics, shared by the loop and the server.
pub struct Service {
    environment: Option<String>,
    status: Mutex<Status>,
    metrics: Metrics,
    /// `POST /hooks/git`: where to say "fetch now", and the secret it needs.
    hook: Mutex<Option<(tokio::sync::mpsc::UnboundedSender<()>, Option<String>)>>,
}

impl Service {
    pub fn new(environment: Option<String>) -> Arc<Service> {
        Arc::new(Service {
            metrics: Metrics::new(environment.as_deref().unwrap_or("")),
            environment,
            status: Mutex::new(Status::default()),
            hook: Mutex::new(None),
        })
    }

    /// Serves `POST /hooks/git`: a request with `secret` sends on `tx`.
    pub fn enable_hook(&self, tx: tokio::sync::mpsc::UnboundedSender<()>, secret: Option<String>) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some((tx, secret));
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This instance waits for the lock `holder` holds (`error`: it cannot reach
    /// the state).
    pub fn standby(&self, holder: Option<String>, error: Option<String>) {
        let mut s = self.status();
        s.role = Some(Role::Standby);
        s.holder = holder;
        s.standby_error = error;
        self.metrics.leader.set(0);
    }

    /// This instance holds the lock.
    pub fn leader(&self) {
        let mut s = self.status();
        s.role = Some(Role::Leader);
        s.holder = None;
        s.standby_error = None;
        self.metrics.leader.set(1);
    }

    /// `--plan-only`: no lock, nothing sent; ready as a leader would be.
    pub fn plan_only(&self) {
        self.status().role = Some(Role::PlanOnly);
        self.metrics.leader.set(0);
    }

    fn ready(&self) -> bool {
        let s = self.status();
        match s.role {
            Some(Role::Leader | Role::PlanOnly) => {
                s.last.as_ref().is_none_or(|(_, r)| r.error.is_none())
            }
            Some(Role::Standby) => s.standby_error.is_none(),
            None => false,
        }
    }

    fn status_json(&self) -> Value {
        let s = self.status();
        let last = s.last.as_ref().map(|(at, r)| {
            let sm = r.summary;
            json!({
                "at": at,
                "trigger": r.trigger,
                "result": if r.error.is_none() { "success" } else { "failure" },
                "duration_seconds": r.duration.as_secs_f64(),
                "plan": {"create": sm.create, "replace": sm.replace, "update": sm.update,
                         "delete": sm.delete, "unchanged": sm.unchanged, "orphan": sm.orphan,
                         "in_doubt": sm.in_doubt},
                "sent": {"created": r.created, "updated": r.updated, "deleted": r.deleted,
                         "failed": r.failed},
                "in_doubt": r.in_doubt,
            })
        });
        json!({
            "role": match s.role {
                Some(Role::Leader) => "leader",
                Some(Role::Standby) => "standby",
                Some(Role::PlanOnly) => "plan-only",
                None => "starting",
            },
            "ready": drop_then(s, || self.ready()),
            "environment": self.environment,
            "lock_holder": self.status().holder,
            "last_reconcile": last,
            "last_error": self.status().last_error.as_ref().map(|(at, e)| json!({"at": at, "error": e})),
            "revision": self.status().revision.as_ref().map(|(sha, subject)| json!({"sha": sha, "subject": subject})),
            "revision_problem": self.status().revision_problem,
            "version": env!("CARGO_PKG_VERSION"),
        })
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry);
        out
    }

    /// Serves the probes, `/status` and `/metrics` on `addr` until the process ends.
    pub async fn serve(self: Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        // Probes and scrapes are small and quick: a few connections at a time, each
        // with a deadline, so that slow or idle clients cannot use up the process's
        // file descriptors (which the watcher needs for the service and the state).
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.answer(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(CONNECTION_DEADLINE)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
                    drop(slot);
                });
            }
        });
        Ok(bound)
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, ctype: &'static str, body: String| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(ctype),
            );
            r
        };
        if req.method() == hyper::Method::POST && req.uri().path() == "/hooks/git" {
            let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let Some((tx, Some(secret))) = hook else {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "no hook: watch --git with TASKFORM_WEBHOOK_SECRET set\n".into(),
                );
            };
            let headers = req.headers().clone();
            let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
                req.into_body(),
                1 << 20,
            ))
            .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "text/plain",
                        "too large\n".into(),
                    );
                }
            };
            if !authorized(&headers, &body, &secret) {
                tracing::warn!("refused a /hooks/git request without the secret");
                return reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    "unauthorized\n".into(),
                );
            }
            let _ = tx.send(());
            return reply(StatusCode::ACCEPTED, "text/plain", "fetching\n".into());
        }
        if req.method() != hyper::Method::GET {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            );
        }
        match req.uri().path() {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => match self.ready() {
                true => reply(StatusCode::OK, "text/plain", "ready\n".into()),
                false => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: see /status\n".into(),
                ),
            },
            "/status" => {
                let mut body =
                    serde_json::to_string_pretty(&self.status_json()).unwrap_or_default();
                body.push('\n');
                reply(StatusCode::OK, "application/json", body)
            }
            "/metrics" => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics_text(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "/healthz, /readyz, /status, /metrics\n".into(),
            ),
        }
    }

    fn request(&self, operation: &str, status: String) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: operation.to_string(),
                status,
            })
            .inc();
    }
}

/// Whether a hook request carries the secret: a bearer token, GitLab's token header,
/// or GitHub's HMAC-SHA256 signature of the body. Compared in constant time.
fn authorized(headers: &hyper::HeaderMap, body: &[u8], secret: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("authorization").and_then(|v| v.strip_prefix("Bearer ")) {
        return same(token.as_bytes(), secret.as_bytes());
    }
    if let Some(token) = header("x-gitlab-token") {
        return same(token.as_bytes(), secret.as_bytes());
    }
    if let Some(sig) = header("x-hub-signature-256").and_then(|v| v.strip_prefix("sha256=")) {
        let Some(sig) = hex_decode(sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        return mac.verify_slice(&sig).is_ok();
    }
    false
}

/// Equal, in time that depends on neither where they differ nor the secret's length
/// (their SHA-256 digests are compared).
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// A connection's whole life (headers, body, answer).
const CONNECTION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn drop_then<T, R>(guard: T, f: impl FnOnce() -> R) -> R {
    drop(guard);
    f()
}

impl Observer for Service {
    fn revision(&self, live: Option<&crate::load::git::Revision>, problem: Option<&str>) {
        let mut s = self.status();
        let previous = s.revision.as_ref().map(|(sha, _)| sha.clone());
        s.revision = live.map(|r| (r.sha.clone(), r.subject.clone()));
        s.revision_problem = problem.map(str::to_string);
        if let Some(p) = problem {
            s.last_error = Some((crate::clock::now_rfc3339(), p.to_string()));
        }
        let now = s.revision.as_ref().map(|(sha, _)| sha.clone());
        drop(s);
        if previous != now {
            if let Some(p) = previous {
                self.metrics.revision.remove(&RevisionLabel { revision: p });
            }
            if let Some(n) = now {
                self.metrics
                    .revision
                    .get_or_create(&RevisionLabel { revision: n })
                    .set(1);
            }
        }
    }

    fn reconciled(&self, r: &Reconciled) {
        let now = crate::clock::now_rfc3339();
        let m = &self.metrics;
        let result = match r.error {
            None => "success",
            Some(_) => "failure",
        };
        m.reconciles
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        m.duration.observe(r.duration.as_secs_f64());
        m.last.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        if r.error.is_none() {
            let s = r.pending;
            for (action, n) in [
                ("create", s.create),
                ("replace", s.replace),
                ("update", s.update),
                ("delete", s.delete),
                ("unchanged", s.unchanged),
                ("orphan", s.orphan),
                ("in_doubt", s.in_doubt),
                ("superseded", s.superseded),
                ("duplicate", s.duplicate),
            ] {
                m.tasks
                    .get_or_create(&ActionLabel {
                        action: action.into(),
                    })
                    .set(n as i64);
            }
            m.in_doubt.set(r.in_doubt as i64);
            m.drift.inc_by(r.drift as u64);
        }
        let mut s = self.status();
        if let Some(e) = &r.error {
            s.last_error = Some((now.clone(), e.clone()));
        }
        s.last = Some((now, r.clone()));
    }
}

/// A [`TaskApi`] that counts every request by operation and HTTP status.
pub struct Metered {
    pub inner: Arc<dyn TaskApi>,
    pub service: Arc<Service>,
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn outcome_status(o: &Outcome) -> String {
    match o {
        // A create's answer is 200 (the API documents no other success).
        Outcome::Created(_) => "200".into(),
        Outcome::Done(status) => status.to_string(),
        Outcome::Retry { failure, .. }
        | Outcome::Failed(failure)
        | Outcome::Unauthorized(failure) => match failure.status {
            0 => "none".into(),
            s => s.to_string(),
        },
        Outcome::InDoubt(_) => "none".into(),
    }
}

fn read_status<T>(r: &Result<T, RemoteError>) -> String {
    match r {
        Ok(_) => "200".into(),
        Err(e) => e.status().map_or("none".into(), |s| s.to_string()),
    }
}

impl TaskApi for Metered {
    fn endpoint(&self) -> Option<String> {
        self.inner.endpoint()
    }
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let o = self.inner.create(body).await;
            self.service.request("create", outcome_status(&o));
            o
        })
    }
    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let o = self.inner.update(task_id, body).await;
            self.service.request("update", outcome_status(&o));
            o
        })
    }
    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let o = self.inner.delete(task_id).await;
            self.service.request("delete", outcome_status(&o));
            o
        })
    }
    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let o = self.inner.action(task_id, action).await;
            self.service.request(action, outcome_status(&o));
            o
        })
    }
    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, RemoteError>> {
        Box::pin(async move {
            let r = self.inner.search_by_name(name).await;
            self.service.request("search", read_status(&r));
            r
        })
    }
    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, RemoteError>> {
        Box::pin(async move {
            let r = self.inner.list_tasks().await;
            self.service.request("list", read_status(&r));
            r
        })
    }
    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, RemoteError>> {
        Box::pin(async move {
            let r = self.inner.show(task_id).await;
            self.service.request("show", read_status(&r));
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::client::Failure;

    #[test]
    fn requests_are_counted_by_the_status_the_service_answered() {
        assert_eq!(outcome_status(&Outcome::Done(204)), "204");
        assert_eq!(outcome_status(&Outcome::Created("id".into())), "200");
        let refused = Failure {
            status: 400,
            error_code: Some("DLG.0818".into()),
            error_msg: "bad".into(),
        };
        assert_eq!(outcome_status(&Outcome::Failed(refused)), "400");
        assert_eq!(
            outcome_status(&Outcome::InDoubt(
                crate::remote::client::InDoubtCause::NoAnswer("timeout".into())
            )),
            "none"
        );
    }
}
