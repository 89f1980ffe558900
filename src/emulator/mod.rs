//! `taskform emulator`: a local server that behaves like the DataArts Catalog
//! collection-task API as documented, for the quick start, CI and tests.
//!
//! Endpoints: create, search, show, update, delete and action of
//! `/v3/{project_id}/metadata/tasks`, with the service's error shapes and codes
//! (unknown task IDs are HTTP 400 `DLG.2253`/`DLG.2208` by default; a task being
//! scheduled must be stopped before update or delete, `DLG.2206`). Authentication by
//! `X-Auth-Token` or `SDK-HMAC-SHA256` signature (a signed request must also carry a
//! signed `X-Project-Id` naming the path's project, as Huawei's SDK sends it);
//! throttling over `rate_limit` requests a second (429 `APIGW.0308` with
//! `Retry-After`); seeded fault injection.
//!
//! Where the public evidence allows several readings of the service, a mode picks one
//! (see `docs/API-EVIDENCE.md`): [`UnknownTask`] (how an unknown task ID is answered),
//! [`Echo`] (how show and search echo `task_config`) and `user_id_optional`; what
//! the documentation leaves open about scheduling is in [`Modes`] ([`start_with`]).
//!
//! Test hooks, outside the API's paths and without authentication:
//! `GET /_emulator/tasks` (every task) and `GET /_emulator/requests` (every API request
//! received: method, path, status, task name).
//!
//! The emulator shares only [`crate::remote::api`] and [`crate::remote::signer`] with the client.

mod faults;
mod tasks;
mod validate;

use crate::remote::api::{self, ApiError};
use crate::remote::signer;
use bytes::Bytes;
use faults::{Fault, Faults, RateLimit};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use tasks::{StoredTask, Tasks};
use tokio::net::TcpListener;

/// The demo project the README and examples use.
pub const DEMO_PROJECT_ID: &str = "0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d";
/// The demo workspace the README and examples use.
pub const DEMO_WORKSPACE: &str = "demo-workspace";
/// The demo token the emulator accepts by default.
pub const DEMO_TOKEN: &str = "taskform-demo-token";
/// The user the emulator names as a task's `user_name` (and default `duty_person`)
/// when the body names none: the service fills in the caller's user name.
pub const DEMO_USER_NAME: &str = "taskform-demo-user";
/// The first `schedule_config.job_id` the emulator assigns.
const FIRST_JOB_ID: i64 = 1001;

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: Option<PathBuf>,
    pub token: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub project_id: String,
    pub workspace: String,
    /// Requests a second before 429 (0 = unlimited).
    pub rate_limit: u32,
    pub latency: Duration,
    pub fail_rate: f64,
    pub throttle_rate: f64,
    pub drop_rate: f64,
    pub seed: Option<u64>,
    /// Expose the create endpoint only (everything else answers 404), as a gateway
    /// that publishes only the seed's documented API.
    pub create_only: bool,
    /// How show, update, delete and action answer a task ID that does not exist.
    pub unknown_task: UnknownTask,
    /// How show and search answers echo `task_config`.
    pub task_config_echo: Echo,
    /// Accept task bodies without `user_id`: the Terraform provider never sends it and
    /// its acceptance tests pass, although the create page calls it mandatory.
    pub user_id_optional: bool,
}

/// How the emulator answers a request naming a task ID that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownTask {
    /// HTTP 400 `DLG.2253` (show, update, action) or `DLG.2208` (delete), as seen by
    /// the Terraform provider.
    #[default]
    Status400,
    /// HTTP 400 `DLG.0818` for all four: "the workspace or metadata task does not
    /// exist" (the provider's comment on that code).
    Dlg0818,
    /// HTTP 404 with the `DLG.2253`/`DLG.2208` body: the API definitions document 404
    /// with `{error_code, error_msg}` on every operation.
    Status404,
}

impl UnknownTask {
    /// The names `taskform emulator --unknown-task` takes.
    pub const NAMES: [&'static str; 3] = ["400", "0818", "404"];

    pub fn parse(s: &str) -> Option<UnknownTask> {
        match s {
            "400" => Some(UnknownTask::Status400),
            "0818" => Some(UnknownTask::Dlg0818),
            "404" => Some(UnknownTask::Status404),
            _ => None,
        }
    }
}

/// How show and search answers echo a task's `task_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Echo {
    /// As it was sent.
    #[default]
    Exact,
    /// Left out of the answer, as the Terraform provider's import documentation says
    /// the service does.
    Omitted,
    /// Its keys in another order, with keys the service adds (defaults, the resolved
    /// connection ID).
    Reordered,
}

impl Echo {
    /// The names `taskform emulator --task-config-echo` takes.
    pub const NAMES: [&'static str; 3] = ["exact", "omitted", "reordered"];

    pub fn parse(s: &str) -> Option<Echo> {
        match s {
            "exact" => Some(Echo::Exact),
            "omitted" => Some(Echo::Omitted),
            "reordered" => Some(Echo::Reordered),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: None,
            token: Some(DEMO_TOKEN.to_string()),
            access_key: None,
            secret_key: None,
            project_id: DEMO_PROJECT_ID.to_string(),
            workspace: DEMO_WORKSPACE.to_string(),
            rate_limit: 50,
            latency: Duration::ZERO,
            fail_rate: 0.0,
            throttle_rate: 0.0,
            drop_rate: 0.0,
            seed: None,
            create_only: false,
            unknown_task: UnknownTask::default(),
            task_config_echo: Echo::default(),
            user_id_optional: false,
        }
    }
}

/// Ways the real service may behave that its documentation leaves open: each mode
/// models one, so that tests can check taskform copes with it. All off by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Modes {
    /// A PUT leaves a paused task (`enabled: 5`) paused, even when its body says
    /// `enabled: 1`: only `action?action=run` starts the schedule again. (By default a
    /// PUT of an enabled CRON body schedules the task.)
    pub put_keeps_paused: bool,
}

/// One API request as the emulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub method: String,
    /// The path, with the query string if there was one.
    pub path: String,
    pub status: u16,
    /// The `name` in a POST or PUT body (a task's name, or a search filter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the connection was dropped instead of answering.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

struct Shared {
    cfg: Config,
    modes: Modes,
    tasks: Mutex<Tasks>,
    seen: Mutex<Vec<Seen>>,
    rate: RateLimit,
    faults: Faults,
}

/// A running emulator; dropping it stops accepting connections.
pub struct Emulator {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds and starts serving in the background.
pub async fn start(cfg: Config) -> std::io::Result<Emulator> {
    start_with(cfg, Modes::default()).await
}

/// [`start`], with the service's open questions answered as `modes` says.
pub async fn start_with(cfg: Config, modes: Modes) -> std::io::Result<Emulator> {
    let tasks = match &cfg.data {
        Some(p) => Tasks::open(p)?,
        None => Tasks::in_memory(),
    };
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        rate: RateLimit::new(cfg.rate_limit),
        faults: Faults::new(cfg.fail_rate, cfg.throttle_rate, cfg.drop_rate, cfg.seed),
        tasks: Mutex::new(tasks),
        seen: Mutex::new(Vec::new()),
        cfg,
        modes,
    });
    tracing::info!(%addr, tasks = lock(&shared.tasks).len(), "emulator listening");
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { shared.handle(req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Emulator { addr, accept })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

type Answer = Response<Full<Bytes>>;

fn json_response(status: u16, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "Content-Type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn empty_ok() -> Answer {
    Response::new(Full::new(Bytes::new()))
}

fn error(status: u16, code: &str, msg: impl Into<String>) -> Answer {
    json_response(
        status,
        &serde_json::to_value(ApiError {
            error_code: code.into(),
            error_msg: msg.into(),
        })
        .unwrap_or_default(),
    )
}

/// The parsed route of an API request.
enum Route {
    Create,
    Search,
    Task(String),
    Action(String),
}

/// The route of a path as sent: split at `/`, then each segment percent-decoded (a task
/// ID sent as `a%2Fb` is `a/b`, as Huawei's SDK encodes it).
fn route(path: &str) -> Option<(String, Route)> {
    let rest = path.strip_prefix("/v3/")?;
    let parts: Vec<String> = rest.split('/').map(decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let r = match parts.as_slice() {
        [_, "metadata", "tasks", "create"] => Route::Create,
        [_, "metadata", "tasks", "search"] => Route::Search,
        [_, "metadata", "tasks", id] if !id.is_empty() => Route::Task(id.to_string()),
        [_, "metadata", "tasks", id, "action"] if !id.is_empty() => Route::Action(id.to_string()),
        _ => return None,
    };
    Some((parts[0].to_string(), r))
}

/// A path segment or query value, percent-decoded (invalid UTF-8 replaced).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The decoded value of the query parameter `name` (`+` is a space).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(&k.replace('+', " ")) == name).then(|| decode(&v.replace('+', " ")))
    })
}

fn now_string() -> String {
    crate::clock::now_rfc3339()
}

/// The next whole minute, as RFC 3339 in UTC.
fn next_minute() -> String {
    let now = time::OffsetDateTime::now_utc();
    let next = now + time::Duration::seconds(60 - i64::from(now.second()));
    next.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(now_string)
}

impl Shared {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Answer, DropConnection> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(DropConnection),
        };
        // The `name` of a POST or PUT body, for the request log.
        let name = matches!(method, Method::POST | Method::PUT)
            .then(|| {
                serde_json::from_slice::<Value>(&body)
                    .ok()?
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            })
            .flatten();
        let mut dropped = false;
        let answer = if path.starts_with("/_emulator/") {
            self.inspect(&method, &path)
        } else {
            match self
                .api(&method, &path, query.as_deref(), &parts.headers, &body)
                .await
            {
                Ok(a) => a,
                Err(DropConnection) => {
                    dropped = true;
                    error(0, "", "")
                }
            }
        };
        let status = if dropped { 0 } else { answer.status().as_u16() };
        if !path.starts_with("/_emulator/") {
            tracing::info!(method = %method, path = %path, status, latency_ms = started.elapsed().as_millis() as u64, dropped, "request");
            lock(&self.seen).push(Seen {
                method: method.to_string(),
                path: match &query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                },
                status,
                name,
                dropped,
            });
        }
        if dropped {
            Err(DropConnection)
        } else {
            Ok(answer)
        }
    }

    fn inspect(&self, method: &Method, path: &str) -> Answer {
        match (method, path) {
            (&Method::GET, "/_emulator/tasks") => {
                let tasks = lock(&self.tasks);
                let list: Vec<&Map<String, Value>> =
                    tasks.ordered().into_iter().map(|t| &t.fields).collect();
                json_response(200, &json!({"tasks": list}))
            }
            (&Method::GET, "/_emulator/requests") => {
                json_response(200, &json!({"requests": *lock(&self.seen)}))
            }
            _ => error(
                404,
                "APIG.0101",
                "The API does not exist or has not been published in the environment.",
            ),
        }
    }

    async fn api(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &hyper::HeaderMap,
        body: &Bytes,
    ) -> Result<Answer, DropConnection> {
        let Some((project, route)) = route(path) else {
            return Ok(error(
                404,
                "APIG.0101",
                "The API does not exist or has not been published in the environment.",
            ));
        };
        let allowed = match (&route, method) {
            (Route::Create, &Method::POST) => true,
            _ if self.cfg.create_only => false,
            (Route::Search | Route::Action(_), &Method::POST) => true,
            (Route::Task(_), &Method::GET | &Method::PUT | &Method::DELETE) => true,
            _ => false,
        };
        if !allowed {
            return Ok(error(
                404,
                "APIG.0101",
                "The API does not exist or has not been published in the environment.",
            ));
        }
        if let Some(wait) = self.rate.check() {
            return Ok(throttled(wait));
        }
        if let Err(a) = self.authenticate(method, path, query, headers, body, &project) {
            return Ok(*a);
        }
        if project != self.cfg.project_id {
            return Ok(error(
                400,
                "DLG.0818",
                format!("The project {project} does not exist or has no DataArts Studio instance."),
            ));
        }
        match headers.get("workspace").and_then(|v| v.to_str().ok()) {
            None | Some("") => {
                return Ok(error(400, "DLG.0818", "The workspace header is mandatory."));
            }
            Some(w) if w != self.cfg.workspace => {
                return Ok(error(
                    403,
                    "DLG.0818",
                    format!("You have no access to workspace {w}."),
                ));
            }
            _ => {}
        }
        if !self.cfg.latency.is_zero() {
            tokio::time::sleep(self.cfg.latency).await;
        }
        match self.faults.before() {
            Fault::Throttle => return Ok(throttled(Duration::from_secs(1))),
            Fault::Fail => {
                return Ok(error(
                    500,
                    "DLG.0500",
                    "Internal server error (injected by the emulator).",
                ));
            }
            Fault::None => {}
        }
        match route {
            Route::Create => {
                let fields = match validate::task_body(body, self.cfg.user_id_optional) {
                    Ok(f) => f,
                    Err((code, msg)) => return Ok(error(400, code, msg)),
                };
                let id = uuid::Uuid::new_v4().simple().to_string();
                let mut tasks = lock(&self.tasks);
                let job_id = FIRST_JOB_ID + tasks.next_seq() as i64;
                let stored = self.stored_fields(fields, &id, None, job_id);
                tasks.insert(stored);
                drop(tasks);
                if self.faults.drop_after_create() {
                    return Err(DropConnection);
                }
                Ok(json_response(200, &json!({"task_id": id})))
            }
            Route::Search => Ok(self.search(body)),
            Route::Task(id) => Ok(match *method {
                Method::GET => match lock(&self.tasks).get(&id) {
                    Some(t) => json_response(200, &self.echoed(&t.fields)),
                    None => self.unknown_task(&id, false),
                },
                Method::PUT => {
                    let fields = match validate::task_body(body, self.cfg.user_id_optional) {
                        Ok(f) => f,
                        Err((code, msg)) => return Ok(error(400, code, msg)),
                    };
                    let mut tasks = lock(&self.tasks);
                    match tasks.get(&id) {
                        None => self.unknown_task(&id, false),
                        Some(t) if t.scheduling() => error(
                            400,
                            "DLG.2206",
                            "The task is being scheduled. Stop it before changing it.",
                        ),
                        Some(t) => {
                            let created = t.fields.get("create_time").cloned();
                            let keep_paused = self.modes.put_keeps_paused && t.paused();
                            let job_id = t.job_id().unwrap_or(FIRST_JOB_ID + t.seq as i64);
                            let mut stored = self.stored_fields(fields, &id, created, job_id);
                            if keep_paused
                                && let Some(Value::Object(sc)) = stored.get_mut("schedule_config")
                                && sc.get("enabled").and_then(Value::as_i64) == Some(3)
                            {
                                sc.insert("enabled".into(), json!(5));
                            }
                            tasks.update(&id, stored);
                            empty_ok()
                        }
                    }
                }
                _ => {
                    let mut tasks = lock(&self.tasks);
                    match tasks.get(&id) {
                        None => self.unknown_task(&id, true),
                        Some(t) if t.scheduling() => error(
                            400,
                            "DLG.2206",
                            "The task is being scheduled and cannot be deleted. Stop it first.",
                        ),
                        Some(_) => {
                            tasks.remove(&id);
                            empty_ok()
                        }
                    }
                }
            }),
            Route::Action(id) => Ok(self.action(&id, query)),
        }
    }

    /// The stored form of a body: what the service adds (id, times, project, the
    /// schedule's `job_id`, each `parameter_config` entry's `task_id`, and where the
    /// body names none the caller's `user_name`, the `duty_person` (the same user) and
    /// the directory's `path`) and the scheduling state of an enabled CRON task (read
    /// back as `enabled: 3`).
    fn stored_fields(
        &self,
        mut fields: Map<String, Value>,
        id: &str,
        created: Option<Value>,
        job_id: i64,
    ) -> Map<String, Value> {
        let now = now_string();
        fields.insert("id".into(), json!(id));
        fields.insert("create_time".into(), created.unwrap_or_else(|| json!(now)));
        fields.insert("update_time".into(), json!(now));
        fields.insert("project_id".into(), json!(self.cfg.project_id));
        let dir = fields
            .get("dir_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let path = match dir.as_str() {
            "" | "0" => "/".to_string(),
            d => format!("/{d}"),
        };
        for (k, v) in [
            ("user_name", DEMO_USER_NAME.to_string()),
            ("duty_person", DEMO_USER_NAME.to_string()),
            ("path", path),
        ] {
            if fields
                .get(k)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                fields.insert(k.into(), json!(v));
            }
        }
        if let Some(Value::Object(sc)) = fields.get_mut("schedule_config") {
            sc.insert("job_id".into(), json!(job_id));
            if sc.get("schedule_type").and_then(Value::as_str) == Some("CRON")
                && sc.get("enabled").and_then(Value::as_i64) == Some(1)
            {
                sc.insert("enabled".into(), json!(3));
            }
        }
        if let Some(Value::Array(params)) = fields.get_mut("parameter_config") {
            for p in params.iter_mut() {
                if let Value::Object(p) = p {
                    p.insert("task_id".into(), json!(id));
                }
            }
        }
        fields
    }

    /// The answer to a request naming a task ID that does not exist (`delete`: a
    /// delete), as [`Config::unknown_task`] says.
    fn unknown_task(&self, id: &str, delete: bool) -> Answer {
        let (code, msg) = match delete {
            true => (
                "DLG.2208",
                format!("The task {id} to delete does not exist."),
            ),
            false => ("DLG.2253", format!("The task {id} does not exist.")),
        };
        match self.cfg.unknown_task {
            UnknownTask::Status400 => error(400, code, msg),
            UnknownTask::Status404 => error(404, code, msg),
            UnknownTask::Dlg0818 => error(
                400,
                "DLG.0818",
                format!("The workspace or metadata task {id} does not exist."),
            ),
        }
    }

    /// A stored task as show and search answer it, as [`Config::task_config_echo`]
    /// says; a task being scheduled has a `next_run_time` (the next whole minute: the
    /// emulator does not evaluate the cron expression).
    fn echoed(&self, fields: &Map<String, Value>) -> Value {
        let mut out = fields.clone();
        let scheduling = fields
            .get("schedule_config")
            .and_then(|s| s.get("enabled"))
            .and_then(Value::as_i64)
            == Some(3);
        if scheduling {
            out.insert("next_run_time".into(), json!(next_minute()));
        }
        match self.cfg.task_config_echo {
            Echo::Exact => {}
            Echo::Omitted => {
                out.shift_remove("task_config");
            }
            Echo::Reordered => {
                if let Some(Value::Object(tc)) = out.get_mut("task_config") {
                    let mut echoed: Map<String, Value> = Map::new();
                    // What the service might add: a default and the connection's ID.
                    for (k, v) in [
                        ("queue", json!("default")),
                        (
                            "data_connection_id",
                            json!("0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"),
                        ),
                    ] {
                        if !tc.contains_key(k) {
                            echoed.insert(k.into(), v);
                        }
                    }
                    for (k, v) in tc.iter().rev() {
                        echoed.insert(k.clone(), v.clone());
                    }
                    *tc = echoed;
                }
            }
        }
        Value::Object(out)
    }

    fn search(&self, body: &Bytes) -> Answer {
        let req: api::SearchRequest = if body.is_empty() {
            api::SearchRequest::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => {
                    return error(
                        400,
                        "DLG.0001",
                        format!("The request body is not valid: {e}"),
                    );
                }
            }
        };
        let limit = req.limit.unwrap_or(10).min(100) as usize;
        let offset = req.offset.unwrap_or(0) as usize;
        let tasks = lock(&self.tasks);
        let matching: Vec<&StoredTask> = tasks
            .ordered()
            .into_iter()
            .filter(|t| req.name.as_deref().is_none_or(|n| t.name().contains(n)))
            .filter(|t| {
                let field = |k: &str| t.fields.get(k).and_then(Value::as_str);
                let connection = t
                    .fields
                    .get("task_config")
                    .and_then(|c| c.get("data_connection_id"))
                    .and_then(Value::as_str);
                let is = |filter: &Option<String>, v: Option<&str>| {
                    filter.as_deref().is_none_or(|f| Some(f) == v)
                };
                is(&req.data_source_type, field("data_source_type"))
                    && is(&req.directory_id, field("dir_id"))
                    && is(&req.user_name, field("user_name"))
                    && is(&req.data_connection_id, connection)
            })
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|t| self.echoed(&t.fields))
            .collect();
        json_response(
            200,
            // As the service: `total_records` counts every task, not the matches.
            &json!({"count": page.len(), "total_records": tasks.len(), "max_records": 10000, "resources": page}),
        )
    }

    fn action(&self, id: &str, query: Option<&str>) -> Answer {
        let action = query_value(query, "action").unwrap_or_default();
        let mut tasks = lock(&self.tasks);
        let Some(task) = tasks.get(id) else {
            return self.unknown_task(id, false);
        };
        let mut fields = task.fields.clone();
        let set_enabled = |fields: &mut Map<String, Value>, v: i64| {
            if let Some(Value::Object(sc)) = fields.get_mut("schedule_config") {
                sc.insert("enabled".into(), json!(v));
            }
        };
        match action.as_str() {
            "run" => set_enabled(&mut fields, 3),
            "stop" => set_enabled(&mut fields, 5),
            "runimmediate" => {
                fields.insert("last_run_time".into(), json!(now_string()));
            }
            other => {
                return error(
                    400,
                    "DLG.0001",
                    format!("Unknown action {other:?}: use run, runimmediate or stop."),
                );
            }
        }
        tasks.update(id, fields);
        empty_ok()
    }

    fn authenticate(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &hyper::HeaderMap,
        body: &[u8],
        project: &str,
    ) -> Result<(), Box<Answer>> {
        let refuse = |why: &str| {
            Box::new(error(
                401,
                "APIGW.0301",
                format!("Incorrect IAM authentication information: {why}"),
            ))
        };
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        if let Some(tok) = header("x-auth-token") {
            return match &self.cfg.token {
                Some(t) if t == tok => Ok(()),
                _ => Err(refuse("the token is invalid or expired.")),
            };
        }
        if let Some(auth) = header("authorization") {
            let (Some(ak), Some(sk)) = (&self.cfg.access_key, &self.cfg.secret_key) else {
                return Err(refuse("AK/SK authentication is not enabled."));
            };
            let Some(parsed) = signer::parse_authorization(auth) else {
                return Err(refuse("malformed Authorization header."));
            };
            if parsed.access_key != *ak {
                return Err(refuse("unknown access key."));
            }
            let Some(date) = header("x-sdk-date") else {
                return Err(refuse("the X-Sdk-Date header is missing."));
            };
            let Some(when) = signer::parse_sdk_date(date) else {
                return Err(refuse("X-Sdk-Date is malformed."));
            };
            if (time::OffsetDateTime::now_utc().unix_timestamp() - when).abs() > 15 * 60 {
                return Err(Box::new(error(
                    401,
                    "APIGW.0303",
                    "Incorrect app authentication information: the request date is more than 15 minutes from the server time.",
                )));
            }
            if !parsed.signed_headers.iter().any(|h| h == "host")
                || !parsed.signed_headers.iter().any(|h| h == "x-sdk-date")
            {
                return Err(refuse("host and x-sdk-date must be signed."));
            }
            let mut signed = Vec::new();
            for h in &parsed.signed_headers {
                let Some(v) = header(h) else {
                    return Err(refuse(&format!("signed header {h} is missing.")));
                };
                signed.push((h.clone(), v.to_string()));
            }
            let req = signer::Request {
                method: method.as_str(),
                path,
                query,
                headers: &signed,
                body,
            };
            let (expected, _) = signer::signature(sk, &req, date);
            if expected != parsed.signature {
                return Err(refuse("verify AK/SK signature failed."));
            }
            // Huawei's SDK adds `X-Project-Id` to every request it signs
            // (core/auth/basic_credentials.go) and signs every header it sets.
            return match header("x-project-id") {
                None => Err(refuse("the X-Project-Id header is missing.")),
                Some(_) if !parsed.signed_headers.iter().any(|h| h == "x-project-id") => {
                    Err(refuse("X-Project-Id must be signed."))
                }
                Some(p) if p != project => Err(refuse(&format!(
                    "X-Project-Id {p} is not the project {project} of the request path."
                ))),
                Some(_) => Ok(()),
            };
        }
        Err(refuse("no X-Auth-Token or Authorization header."))
    }
}

fn throttled(wait: Duration) -> Answer {
    let mut r = error(
        429,
        "APIGW.0308",
        "The throttling threshold has been reached: policy user over ratelimit, limit:50, time:1 second",
    );
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert("Retry-After", v);
    }
    r
}

/// Runs the emulator until Ctrl-C or SIGTERM; prints its URL on stdout first.
pub async fn run(cfg: Config) -> std::io::Result<()> {
    run_with(cfg, Modes::default()).await
}

/// [`run`], with the service behaving as `modes` say.
pub async fn run_with(cfg: Config, modes: Modes) -> std::io::Result<()> {
    let emu = start_with(cfg, modes).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", emu.url());
        let _ = out.flush();
    }
    crate::signals::wait_for_shutdown().await;
    tracing::info!("emulator stopping");
    drop(emu);
    Ok(())
}
