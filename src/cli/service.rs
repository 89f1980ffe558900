//! The watcher as a service: probes, status and metrics on `--listen`, for one
//! environment or, with `watch --all-envs`, for every environment of the repo.
//!
//! - `GET /healthz`: 200 while the process runs its loop (liveness).
//! - `GET /readyz`: 200 when every environment's watcher is useful: the leader whose
//!   last reconcile succeeded (or has not run yet), or a standby waiting for the
//!   leadership. 503 naming each environment that is not (a leader whose last reconcile
//!   failed, a standby that cannot reach the state, an environment that could not
//!   start). `GET /readyz?environment=NAME` answers for one environment (404 for one the
//!   watcher does not run). A Kubernetes readiness probe then keeps both replicas of a
//!   healthy pair in service and takes out the one that needs a person.
//! - `GET /status`: JSON: a section per environment under `environments` (role, last
//!   reconcile with its number, trigger, result and counts, `last_error` until a
//!   reconcile succeeds, then `resolved_error`, the revision and `revision_problem`
//!   with every `path:line:col` problem, `suspended`, `changed_outside`); with one
//!   environment its section's fields are at the top level too.
//! - `GET /metrics`: Prometheus/OpenMetrics text, from `prometheus-client`, every
//!   series labelled with its `environment` (`default` without environments):
//!   `taskform_reconciles_total{result}`, `taskform_reconcile_duration_seconds`,
//!   `taskform_requests_total{operation,status}`, `taskform_tasks{action}`,
//!   `taskform_tasks_in_doubt`, `taskform_drift_detected_total`, `taskform_leader`,
//!   `taskform_suspended`, `taskform_last_reconcile_timestamp_seconds`,
//!   `taskform_revision{revision}`, `taskform_build_info{version}`, and
//!   `taskform_notifications_total{receiver,result}` (not by environment).
//! - `POST /hooks/git` (with `--git`): fetch at once, for push webhooks.
//! - `POST /reconcile[?environment=NAME]`: fetch (with `--git`) and reconcile at once
//!   (`taskform reconcile`); 202 with, per environment, the revision it will reconcile
//!   and the number that reconcile will have on `/status`.
//!
//! Both POSTs must carry the secret of `TASKFORM_WEBHOOK_SECRET`: `Authorization: Bearer
//! SECRET`, `X-Gitlab-Token: SECRET`, or GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of
//! the body), compared in constant time; 401 otherwise, 404 without a secret set.
//!
//! Every request the watcher sends goes through [`Metered`], which counts it by
//! operation and HTTP status (`none` when no answer came).

use crate::reconcile::watch::{
    External, Observer, OutsideChange, Reconciled, RevisionProblem, SyncAnswer,
};
use crate::remote::Error as RemoteError;
use crate::remote::client::{Listing, Outcome, Shown, TaskApi};
use crate::state::Suspension;
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
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// The `environment` label of a repo without environments.
pub const NO_ENVIRONMENT: &str = "default";

/// A watcher's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the leadership another process holds.
    Standby,
    /// Leading: reconciling (taking the state lock for each reconcile).
    Leader,
    /// `--plan-only`: planning, never sending, no lock.
    PlanOnly,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabel {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    environment: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    environment: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    environment: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    receiver: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    environment: String,
    revision: String,
}

type Seconds = Gauge<f64, std::sync::atomic::AtomicU64>;

fn duration_histogram() -> Histogram {
    // 5 ms to 44 minutes: a first reconcile of 10,000 tasks at the service's rate
    // limit takes minutes.
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

struct Metrics {
    registry: Registry,
    revision: Family<RevisionLabel, Gauge>,
    reconciles: Family<ResultLabel, Counter>,
    duration: Family<EnvLabel, Histogram, fn() -> Histogram>,
    requests: Family<RequestLabels, Counter>,
    tasks: Family<ActionLabel, Gauge>,
    in_doubt: Family<EnvLabel, Gauge>,
    drift: Family<EnvLabel, Counter>,
    leader: Family<EnvLabel, Gauge>,
    suspended: Family<EnvLabel, Gauge>,
    last: Family<EnvLabel, Seconds>,
    notifications: Family<NotificationLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("taskform");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register("reconciles", "Reconciles, by result", reconciles.clone());
        let duration = Family::<EnvLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
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
        let in_doubt = Family::<EnvLabel, Gauge>::default();
        registry.register(
            "tasks_in_doubt",
            "Creates whose outcome is unknown, after the last reconcile",
            in_doubt.clone(),
        );
        let drift = Family::<EnvLabel, Counter>::default();
        registry.register(
            "drift_detected",
            "Tasks an interval reconcile (no file changed) had to send: changed outside taskform",
            drift.clone(),
        );
        let leader = Family::<EnvLabel, Gauge>::default();
        registry.register(
            "leader",
            "1 while this instance leads the environment's watchers and reconciles, 0 on standby",
            leader.clone(),
        );
        let suspended = Family::<EnvLabel, Gauge>::default();
        registry.register(
            "suspended",
            "1 while the environment's state is suspended (`taskform suspend`): planned, nothing sent",
            suspended.clone(),
        );
        let last = Family::<EnvLabel, Seconds>::default();
        registry.register_with_unit(
            "last_reconcile_timestamp",
            "When the last reconcile ended (Unix time)",
            Unit::Seconds,
            last.clone(),
        );
        registry.register(
            "build",
            "The running taskform",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Alerts to the receivers of `notify:`, by receiver and result (sent, failed after its retries, suppressed as a repeat within 5 minutes, dropped from a full queue)",
            notifications.clone(),
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
            suspended,
            last,
            notifications,
        }
    }
}

/// Why a reconcile is a failure: it stopped (`error`), or requests failed.
fn failure(r: &Reconciled) -> Option<&str> {
    r.error.as_deref().or(r.failed_requests.as_deref())
}

/// What `/status` shows of one environment.
#[derive(Debug, Default)]
struct Status {
    role: Option<Role>,
    /// Who leads, on standby.
    holder: Option<String>,
    /// A standby that cannot reach the state.
    standby_error: Option<String>,
    /// The environment could not start (`watch --all-envs`): its settings, its
    /// target, its credentials. Tried again.
    setup_error: Option<String>,
    /// The reconcile waits for the state lock this holder has.
    waiting_for: Option<String>,
    last: Option<(String, Reconciled)>,
    last_error: Option<(String, String)>,
    /// The last error once a reconcile succeeded: (at, error, resolved at).
    resolved_error: Option<(String, String, String)>,
    /// With `--git`: the live revision (sha, subject) and why the newest is not live.
    revision: Option<(String, String)>,
    revision_problem: Option<(String, RevisionProblem)>,
    suspended: Option<Suspension>,
    changed_outside: Option<(String, OutsideChange)>,
    /// Where to send what `POST /hooks/git` and `POST /reconcile` ask.
    external: Option<UnboundedSender<External>>,
}

impl Status {
    /// Ready, or why not.
    fn ready(&self) -> Result<(), String> {
        if let Some(e) = &self.setup_error {
            return Err(format!("cannot start: {e}"));
        }
        match self.role {
            Some(Role::Leader | Role::PlanOnly) => match &self.last {
                Some((_, r)) => match failure(r) {
                    Some(why) => Err(format!("the last reconcile failed: {why}")),
                    None => Ok(()),
                },
                None => Ok(()),
            },
            Some(Role::Standby) => match &self.standby_error {
                Some(e) => Err(format!("standby, cannot reach the state: {e}")),
                None => Ok(()),
            },
            None => Err("starting".into()),
        }
    }

    fn json(&self, name: Option<&str>) -> Value {
        let last = self.last.as_ref().map(|(at, r)| {
            let sm = r.summary;
            json!({
                "number": r.number,
                "at": at,
                "trigger": r.trigger.as_str(),
                "result": if failure(r).is_none() { "success" } else { "failure" },
                "duration_seconds": r.duration.as_secs_f64(),
                "plan": {"create": sm.create, "replace": sm.replace, "update": sm.update,
                         "delete": sm.delete, "unchanged": sm.unchanged, "orphan": sm.orphan,
                         "in_doubt": sm.in_doubt},
                "sent": {"created": r.created, "updated": r.updated, "deleted": r.deleted,
                         "failed": r.failed},
                "in_doubt": r.in_doubt,
                "suspended": r.suspended.is_some(),
                "problems": r.problems,
            })
        });
        let problem = self.revision_problem.as_ref().map(|(at, p)| match p {
            RevisionProblem::Fetch(e) => json!({"at": at, "kind": "fetch", "error": e}),
            RevisionProblem::Invalid {
                sha,
                subject,
                problems,
            } => json!({"at": at, "kind": "invalid", "revision": sha, "subject": subject,
                        "error": format!("revision {sha} ({subject}) is invalid: {} problem(s); the live revision stays", problems.len()),
                        "problems": problems}),
        });
        json!({
            "environment": name,
            "role": match self.role {
                Some(Role::Leader) => "leader",
                Some(Role::Standby) => "standby",
                Some(Role::PlanOnly) => "plan-only",
                None => "starting",
            },
            "ready": self.ready().is_ok(),
            "not_ready": self.ready().err(),
            "lock_holder": self.holder,
            "waiting_for_lock": self.waiting_for,
            "suspended": self.suspended.as_ref().map(|s| json!({"by": s.by, "at": s.at, "reason": s.reason})),
            "last_reconcile": last,
            "last_error": self.last_error.as_ref().map(|(at, e)| json!({"at": at, "error": e})),
            "resolved_error": self.resolved_error.as_ref().map(|(at, e, r)| json!({"at": at, "error": e, "resolved_at": r})),
            "revision": self.revision.as_ref().map(|(sha, subject)| json!({"sha": sha, "subject": subject})),
            "revision_problem": problem,
            "changed_outside": self.changed_outside.as_ref().map(|(at, c)| json!({
                "at": at,
                "serial": c.serial,
                "last_applied": c.last_applied,
                "note": "the state changed outside this watcher: it re-applies its own revision",
            })),
            "setup_error": self.setup_error,
        })
    }
}

/// The watchers' status and metrics, shared by their loops and the server.
pub struct Service {
    envs: Mutex<BTreeMap<String, Status>>,
    metrics: Metrics,
    /// `TASKFORM_WEBHOOK_SECRET`: what `POST /hooks/git` and `POST /reconcile` need.
    secret: Mutex<Option<String>>,
    /// Whether the watchers fetch a repository (`POST /hooks/git` is served).
    git: std::sync::atomic::AtomicBool,
}

/// One environment's part of the [`Service`]: what its watcher reports to.
pub struct EnvService {
    service: Arc<Service>,
    /// The environment (`None`: a repo without environments).
    name: Option<String>,
}

impl Service {
    pub fn new() -> Arc<Service> {
        Arc::new(Service {
            envs: Mutex::new(BTreeMap::new()),
            metrics: Metrics::new(),
            secret: Mutex::new(None),
            git: Default::default(),
        })
    }

    /// The part of environment `name` (`None`: no environments), shown on `/status`
    /// from now on.
    pub fn environment(self: &Arc<Self>, name: Option<String>) -> Arc<EnvService> {
        self.envs()
            .entry(name.clone().unwrap_or_default())
            .or_default();
        Arc::new(EnvService {
            service: self.clone(),
            name,
        })
    }

    /// Counts alerts in `taskform_notifications_total{receiver,result}`.
    pub fn tally(self: &Arc<Self>) -> crate::alert::send::Tally {
        let me = self.clone();
        Arc::new(move |receiver: &str, result: &str| {
            me.metrics
                .notifications
                .get_or_create(&NotificationLabels {
                    receiver: receiver.to_string(),
                    result: result.to_string(),
                })
                .inc();
        })
    }

    /// Serves `POST /hooks/git` (when `git`) and `POST /reconcile` to requests that
    /// carry `secret`.
    pub fn enable_requests(&self, secret: Option<String>, git: bool) {
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = secret;
        self.git.store(git, std::sync::atomic::Ordering::SeqCst);
    }

    fn envs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Status>> {
        self.envs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ready, or a line per environment that is not (`only`: that environment;
    /// `Err(None)`: the watcher does not run it).
    fn ready(&self, only: Option<&str>) -> Result<(), Option<String>> {
        let envs = self.envs();
        if let Some(name) = only
            && !envs.contains_key(name)
        {
            return Err(None);
        }
        let not: Vec<String> = envs
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .filter_map(|(n, s)| s.ready().err().map(|why| format!("{}: {why}", label_of(n))))
            .collect();
        match not.is_empty() && !envs.is_empty() {
            true => Ok(()),
            false if envs.is_empty() => Err(Some("starting".into())),
            false => Err(Some(not.join("\n"))),
        }
    }

    fn status_json(&self) -> Value {
        let envs = self.envs();
        let sections: serde_json::Map<String, Value> = envs
            .iter()
            .map(|(n, s)| {
                let name = (!n.is_empty()).then_some(n.as_str());
                (label_of(n).to_string(), s.json(name))
            })
            .collect();
        let mut doc = match envs.len() {
            1 => envs
                .iter()
                .next()
                .map(|(n, s)| s.json((!n.is_empty()).then_some(n.as_str())))
                .unwrap_or_else(|| json!({})),
            _ => json!({}),
        };
        drop(envs);
        doc["ready"] = json!(self.ready(None).is_ok());
        doc["environments"] = Value::Object(sections);
        doc["version"] = json!(env!("CARGO_PKG_VERSION"));
        doc
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
        let path = req.uri().path().to_string();
        let only = query_param(req.uri().query(), "environment");
        if req.method() == hyper::Method::POST
            && matches!(path.as_str(), "/hooks/git" | "/reconcile")
        {
            let secret = self
                .secret
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let git = self.git.load(std::sync::atomic::Ordering::SeqCst);
            let Some(secret) = secret.filter(|_| git || path == "/reconcile") else {
                let why = match path.as_str() {
                    "/hooks/git" => "no hook: watch --git with TASKFORM_WEBHOOK_SECRET set\n",
                    _ => "no /reconcile: set TASKFORM_WEBHOOK_SECRET for the watcher\n",
                };
                return reply(StatusCode::NOT_FOUND, "text/plain", why.into());
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
                tracing::warn!("refused a {path} request without the secret");
                return reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    "unauthorized\n".into(),
                );
            }
            return match path.as_str() {
                "/hooks/git" => {
                    for tx in self.senders(None).into_iter().flat_map(|(_, tx)| tx) {
                        let _ = tx.send(External::Hook);
                    }
                    reply(StatusCode::ACCEPTED, "text/plain", "fetching\n".into())
                }
                _ => self.sync(only.as_deref()).await,
            };
        }
        if req.method() != hyper::Method::GET {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET, or POST to /reconcile and /hooks/git\n".into(),
            );
        }
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => match self.ready(only.as_deref()) {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n".into()),
                Err(None) => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!(
                        "this watcher runs no environment {}\n",
                        crate::render::escape(only.as_deref().unwrap_or_default())
                    ),
                ),
                Err(Some(why)) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!(
                        "not ready (see /status):\n{}\n",
                        crate::render::escape_lines(&why)
                    ),
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
                "/healthz, /readyz, /status, /metrics; POST /reconcile, /hooks/git\n".into(),
            ),
        }
    }

    /// Each environment (or only `only`) with where to send what the service asks
    /// (`None`: its watcher does not lead, so it takes no request).
    fn senders(&self, only: Option<&str>) -> Vec<(String, Option<UnboundedSender<External>>)> {
        self.envs()
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(n, s)| {
                let leads = matches!(s.role, Some(Role::Leader | Role::PlanOnly));
                (n.clone(), s.external.clone().filter(|_| leads))
            })
            .collect()
    }

    /// `POST /reconcile`: asks each environment's watcher to fetch and reconcile now,
    /// and says what each will reconcile.
    async fn sync(&self, only: Option<&str>) -> Response<Full<Bytes>> {
        let targets = self.senders(only);
        if targets.is_empty() {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!(
                    "this watcher runs no environment {}\n",
                    crate::render::escape(only.unwrap_or_default())
                ),
            );
        }
        // Every environment asked at once, under one deadline (within the
        // connection's).
        let asks = targets.into_iter().map(|(name, tx)| async move {
            let answer = match tx {
                None => json!({"accepted": false, "why": "not leading (a standby, or not started): the leader reconciles"}),
                Some(tx) => {
                    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
                    match tx.send(External::Sync(reply_tx)) {
                        Err(_) => json!({"accepted": false, "why": "this environment's watcher is not running"}),
                        Ok(()) => match tokio::time::timeout(SYNC_ANSWER, reply_rx).await {
                            Ok(Ok(SyncAnswer { revision, reconcile: Some(n) })) => {
                                json!({"accepted": true, "revision": revision, "reconcile": n})
                            }
                            Ok(Ok(SyncAnswer { reconcile: None, .. })) => json!({
                                "accepted": false,
                                "why": "no usable revision to reconcile (see revision_problem on /status)"
                            }),
                            Ok(Err(_)) => json!({"accepted": false, "why": "this environment's watcher stopped"}),
                            // Busy with a reconcile: the request waits its turn.
                            Err(_) => json!({"accepted": true, "queued": true}),
                        },
                    }
                }
            };
            (label_of(&name).to_string(), answer)
        });
        let answers: serde_json::Map<String, Value> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect();
        let mut doc = match answers.len() {
            1 => answers.values().next().cloned().unwrap_or_default(),
            _ => json!({}),
        };
        doc["environments"] = Value::Object(answers);
        let mut body = serde_json::to_string_pretty(&doc).unwrap_or_default();
        body.push('\n');
        reply(StatusCode::ACCEPTED, "application/json", body)
    }
}

/// How long `POST /reconcile` waits for the watcher to say what it will reconcile (a
/// fetch) before answering that the request is queued behind a running reconcile.
const SYNC_ANSWER: std::time::Duration = std::time::Duration::from_secs(6);

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

/// A query parameter's value (percent-decoded).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// An environment's name on `/status` and in metrics.
fn label_of(name: &str) -> &str {
    match name {
        "" => NO_ENVIRONMENT,
        n => n,
    }
}

/// Whether a request carries the secret: a bearer token, GitLab's token header, or
/// GitHub's HMAC-SHA256 signature of the body. Compared in constant time.
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

/// Equal, in time that depends on neither where they differ nor the secret's length:
/// their SHA-256 digests (one length) compared with `subtle`'s constant-time equality.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.as_slice().ct_eq(y.as_slice()).into()
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

impl EnvService {
    fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| NO_ENVIRONMENT.to_string())
    }

    fn env_label(&self) -> EnvLabel {
        EnvLabel {
            environment: self.label(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        let mut envs = self.service.envs();
        f(envs
            .entry(self.name.clone().unwrap_or_default())
            .or_default())
    }

    /// Counts alerts (`taskform_notifications_total`).
    pub fn tally(&self) -> crate::alert::send::Tally {
        self.service.tally()
    }

    /// Where `POST /hooks/git` and `POST /reconcile` reach this environment's watcher.
    pub fn external(&self, tx: UnboundedSender<External>) {
        self.with(|s| s.external = Some(tx));
    }

    /// This instance's role: who leads when it stands by, and why it cannot reach the
    /// state.
    fn set_role(&self, role: Role, holder: Option<String>, standby_error: Option<String>) {
        self.with(|s| {
            s.role = Some(role);
            s.holder = holder;
            s.standby_error = standby_error;
            s.setup_error = None;
        });
        self.service
            .metrics
            .leader
            .get_or_create(&self.env_label())
            .set((role == Role::Leader) as i64);
    }

    /// This instance waits for the leadership `holder` holds (`error`: it cannot reach
    /// the state).
    pub fn standby(&self, holder: Option<String>, error: Option<String>) {
        self.set_role(Role::Standby, holder, error);
    }

    /// This instance leads.
    pub fn leader(&self) {
        self.set_role(Role::Leader, None, None);
    }

    /// `--plan-only`: no lock, nothing sent; ready as a leader would be.
    pub fn plan_only(&self) {
        self.set_role(Role::PlanOnly, None, None);
    }

    /// This environment's watcher stopped (`watch --all-envs` starts it again): it
    /// neither leads nor takes requests until then.
    pub fn stopped(&self) {
        self.with(|s| {
            s.role = None;
            s.external = None;
            s.waiting_for = None;
        });
        self.service
            .metrics
            .leader
            .get_or_create(&self.env_label())
            .set(0);
    }

    /// The environment could not start (`watch --all-envs`); it is tried again.
    pub fn setup_failed(&self, error: &str) {
        self.with(|s| s.setup_error = Some(error.to_string()));
    }

    fn request(&self, operation: &str, status: String) {
        self.service
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                environment: self.label(),
                operation: operation.to_string(),
                status,
            })
            .inc();
    }
}

impl Observer for EnvService {
    fn revision(
        &self,
        live: Option<&crate::load::git::Revision>,
        problem: Option<&RevisionProblem>,
    ) {
        let now = crate::clock::now_rfc3339();
        let (previous, current) = self.with(|s| {
            let previous = s.revision.as_ref().map(|(sha, _)| sha.clone());
            s.revision = live.map(|r| (r.sha.clone(), r.subject.clone()));
            s.revision_problem = problem.map(|p| (now, p.clone()));
            (previous, s.revision.as_ref().map(|(sha, _)| sha.clone()))
        });
        if previous != current {
            let m = &self.service.metrics;
            if let Some(p) = previous {
                m.revision.remove(&RevisionLabel {
                    environment: self.label(),
                    revision: p,
                });
            }
            if let Some(n) = current {
                m.revision
                    .get_or_create(&RevisionLabel {
                        environment: self.label(),
                        revision: n,
                    })
                    .set(1);
            }
        }
    }

    fn suspended(&self, suspension: Option<&Suspension>) {
        self.with(|s| s.suspended = suspension.cloned());
        self.service
            .metrics
            .suspended
            .get_or_create(&self.env_label())
            .set(suspension.is_some() as i64);
    }

    fn changed_outside(&self, c: &OutsideChange) {
        let now = crate::clock::now_rfc3339();
        self.with(|s| s.changed_outside = Some((now, c.clone())));
    }

    fn waiting_for_lock(&self, holder: Option<&str>) {
        self.with(|s| s.waiting_for = holder.map(str::to_string));
    }

    fn reconciled(&self, r: &Reconciled) {
        let now = crate::clock::now_rfc3339();
        let m = &self.service.metrics;
        let environment = self.label();
        let result = match failure(r) {
            None => "success",
            Some(_) => "failure",
        };
        m.reconciles
            .get_or_create(&ResultLabel {
                environment: environment.clone(),
                result: result.into(),
            })
            .inc();
        m.duration
            .get_or_create(&self.env_label())
            .observe(r.duration.as_secs_f64());
        m.last.get_or_create(&self.env_label()).set(
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
                        environment: environment.clone(),
                        action: action.into(),
                    })
                    .set(n as i64);
            }
            m.in_doubt
                .get_or_create(&self.env_label())
                .set(r.in_doubt as i64);
            m.drift
                .get_or_create(&self.env_label())
                .inc_by(r.drift as u64);
        }
        self.with(|s| {
            match failure(r) {
                Some(e) => s.last_error = Some((now.clone(), e.to_string())),
                // A suspended reconcile sent nothing: it resolves nothing either.
                None if r.suspended.is_some() => {}
                None => {
                    if let Some((at, e)) = s.last_error.take() {
                        s.resolved_error = Some((at, e, now.clone()));
                    }
                }
            }
            s.last = Some((now, r.clone()));
        });
    }
}

/// A [`TaskApi`] that counts every request by operation and HTTP status.
pub struct Metered {
    pub inner: Arc<dyn TaskApi>,
    pub service: Arc<EnvService>,
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
            None => "none".into(),
            Some(s) => s.to_string(),
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
            status: Some(400),
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
