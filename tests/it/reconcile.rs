//! In-process tests of one reconcile ([`taskform::reconcile::once`]), the applier and
//! the observers, against a fake of the DataArts task API ([`FakeApi`]) and the state
//! store in memory ([`MemoryStore`]). No process, socket or file is involved.
//!
//! Tests of retries run with tokio's clock paused: `Retry-After` and backoff waits
//! pass as virtual time, so they are asserted exactly and cost nothing.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use taskform::load::manifest::{Loaded, Manifest};
use taskform::load::secret::Key;
use taskform::load::target::Resolved;
use taskform::plan::document::SavedPlan;
use taskform::plan::{Action, OnChange, PlanOptions};
use taskform::reconcile::applier::{self, ApplyOptions, Silent, TaskOutcome, TaskResult};
use taskform::reconcile::observe::refresh;
use taskform::reconcile::observe::settle::{self, Settled};
use taskform::reconcile::{self, Context, Decision, Error, Policy, Report, Sending};
use taskform::remote::client::{Failure, InDoubtCause, Listing, Outcome, Shown, TaskApi};
use taskform::state::journal::Record;
use taskform::state::memory::MemoryStore;
use taskform::state::store::Journal;
use taskform::state::{InDoubt, State, StateStore, Target, TaskRecord};
use tokio::sync::watch;

const PROJECT: &str = "0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d";
const WORKSPACE: &str = "demo-workspace";

// ---------------------------------------------------------------------------------
// The fake service
// ---------------------------------------------------------------------------------

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a scripted call does instead of the fake's own answer.
enum Scripted {
    /// Answer this, doing nothing.
    Answer(Outcome),
    /// Do the request, then lose the answer (`InDoubt`).
    Lost,
    /// Do the request and answer as the fake does (to script a later call).
    Act,
}

struct RemoteTask {
    body: Value,
    /// Being scheduled: the service refuses update and delete (`DLG.2206`) until stopped.
    scheduled: bool,
}

#[derive(Default)]
struct Inner {
    /// By ID; IDs are zero-padded, so this is creation order.
    tasks: BTreeMap<String, RemoteTask>,
    next_id: u64,
    calls: Vec<String>,
    /// Answers to give first, by operation (`create`, `update`, `delete`, `action`).
    script: HashMap<&'static str, VecDeque<Scripted>>,
    /// A gateway that exposes create only: everything else is HTTP 404.
    create_only: bool,
}

/// The DataArts task API in memory, answering as the service does: "no such task" is
/// HTTP 400 `DLG.2253` (delete: `DLG.2208`), a scheduled task refuses update and delete
/// with `DLG.2206`, and a create-only gateway answers 404 to everything but create.
/// Every call is logged in order: `POST create NAME`, `PUT ID`, `DELETE ID`,
/// `POST ACTION ID`, `SEARCH NAME`, `LIST`, `GET ID`.
#[derive(Default)]
struct FakeApi {
    inner: Mutex<Inner>,
}

fn failure(status: u16, code: Option<&str>) -> Failure {
    Failure {
        status: Some(status),
        error_code: code.map(str::to_string),
        error_msg: match code {
            Some(c) => format!("fake service error {c}"),
            None => "fake gateway: no such endpoint".into(),
        },
    }
}

fn is_cron(body: &Value) -> bool {
    let sc = &body["schedule_config"];
    sc["schedule_type"].as_str() == Some("CRON") && sc["enabled"].as_i64() != Some(0)
}

impl FakeApi {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a task out of band (made by someone else, or by a create whose answer was
    /// lost); not logged as a call.
    fn insert(&self, body: Value) -> String {
        let mut s = self.inner();
        s.next_id += 1;
        let id = format!("task-{:04}", s.next_id);
        let scheduled = is_cron(&body);
        s.tasks.insert(id.clone(), RemoteTask { body, scheduled });
        id
    }

    fn set_create_only(&self) {
        self.inner().create_only = true;
    }

    /// Answers to give to the next calls of `op`, before the fake's own.
    fn script(&self, op: &'static str, answers: impl IntoIterator<Item = Scripted>) {
        self.inner().script.entry(op).or_default().extend(answers);
    }

    fn calls(&self) -> Vec<String> {
        self.inner().calls.clone()
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.inner().calls)
    }

    fn creates(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with("POST create"))
            .count()
    }

    fn ids(&self) -> Vec<String> {
        self.inner().tasks.keys().cloned().collect()
    }

    fn body(&self, id: &str) -> Option<Value> {
        self.inner().tasks.get(id).map(|t| t.body.clone())
    }

    fn scheduled(&self, id: &str) -> bool {
        self.inner().tasks.get(id).is_some_and(|t| t.scheduled)
    }

    /// A task as search and show return it: the body with its ID, echoed fields, and
    /// `enabled` read back as a state (3 scheduling, 5 paused).
    fn shown(id: &str, t: &RemoteTask) -> Value {
        let mut v = t.body.clone();
        v["id"] = json!(id);
        v["create_time"] = json!("2024-05-01T00:00:00Z");
        if let Some(e) = v.pointer_mut("/schedule_config/enabled") {
            *e = json!(if t.scheduled { 3 } else { 5 });
        }
        v
    }

    /// One write: logged, then the scripted answer or `act`.
    async fn write(
        &self,
        op: &'static str,
        call: String,
        act: impl FnOnce(&mut Inner) -> Outcome,
    ) -> Outcome {
        // A request takes a moment: other tasks of the run go on meanwhile.
        tokio::task::yield_now().await;
        let mut s = self.inner();
        s.calls.push(call);
        match s.script.get_mut(op).and_then(VecDeque::pop_front) {
            Some(Scripted::Answer(o)) => o,
            Some(Scripted::Lost) => {
                let _ = act(&mut s);
                Outcome::InDoubt(InDoubtCause::Unclear(
                    "the connection was reset after the request was sent".into(),
                ))
            }
            Some(Scripted::Act) | None => act(&mut s),
        }
    }

    async fn read<T>(&self, call: String, act: impl FnOnce(&Inner) -> T) -> T {
        tokio::task::yield_now().await;
        let mut s = self.inner();
        s.calls.push(call);
        act(&s)
    }
}

impl TaskApi for FakeApi {
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let name = body["name"].as_str().unwrap_or("?").to_string();
            self.write("create", format!("POST create {name}"), |s| {
                s.next_id += 1;
                let id = format!("task-{:04}", s.next_id);
                let scheduled = is_cron(&body);
                s.tasks.insert(id.clone(), RemoteTask { body, scheduled });
                Outcome::Created(id)
            })
            .await
        })
    }

    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(async move {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            self.write("update", format!("PUT {task_id}"), |s| {
                if s.create_only {
                    return Outcome::Failed(failure(404, None));
                }
                match s.tasks.get_mut(task_id) {
                    None => Outcome::Failed(failure(400, Some("DLG.2253"))),
                    Some(t) if t.scheduled => Outcome::Failed(failure(400, Some("DLG.2206"))),
                    Some(t) => {
                        t.body = body;
                        Outcome::Done(200)
                    }
                }
            })
            .await
        })
    }

    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome> {
        Box::pin(async move {
            self.write("delete", format!("DELETE {task_id}"), |s| {
                if s.create_only {
                    return Outcome::Failed(failure(404, None));
                }
                match s.tasks.get(task_id) {
                    None => Outcome::Failed(failure(400, Some("DLG.2208"))),
                    Some(t) if t.scheduled => Outcome::Failed(failure(400, Some("DLG.2206"))),
                    Some(_) => {
                        s.tasks.remove(task_id);
                        Outcome::Done(200)
                    }
                }
            })
            .await
        })
    }

    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome> {
        Box::pin(async move {
            self.write("action", format!("POST {action} {task_id}"), |s| {
                if s.create_only {
                    return Outcome::Failed(failure(404, None));
                }
                let Some(t) = s.tasks.get_mut(task_id) else {
                    return Outcome::Failed(failure(400, Some("DLG.2253")));
                };
                match action {
                    "stop" => t.scheduled = false,
                    "run" => t.scheduled = is_cron(&t.body),
                    _ => {}
                }
                Outcome::Done(200)
            })
            .await
        })
    }

    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, taskform::remote::Error>> {
        Box::pin(async move {
            self.read(format!("SEARCH {name}"), |s| {
                Ok((!s.create_only).then(|| {
                    s.tasks
                        .iter()
                        .filter(|(_, t)| t.body["name"].as_str() == Some(name))
                        .map(|(id, t)| FakeApi::shown(id, t))
                        .collect()
                }))
            })
            .await
        })
    }

    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, taskform::remote::Error>> {
        Box::pin(async move {
            self.read("LIST".into(), |s| {
                Ok((!s.create_only).then(|| Listing {
                    tasks: s
                        .tasks
                        .iter()
                        .map(|(id, t)| FakeApi::shown(id, t))
                        .collect(),
                    complete: true,
                }))
            })
            .await
        })
    }

    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, taskform::remote::Error>> {
        Box::pin(async move {
            self.read(format!("GET {task_id}"), |s| {
                Ok(match (s.create_only, s.tasks.get(task_id)) {
                    (true, _) => Shown::Unsupported,
                    (false, None) => Shown::Gone,
                    (false, Some(t)) => Shown::Found(FakeApi::shown(task_id, t)),
                })
            })
            .await
        })
    }
}

// ---------------------------------------------------------------------------------
// Manifests, state and one reconcile
// ---------------------------------------------------------------------------------

/// A valid run-once task body (as the loader makes it, defaults merged).
fn body(name: &str, timeout: i64) -> Value {
    json!({
        "name": name,
        "data_source_type": "DLI",
        "user_id": "u-1",
        "dir_id": "0",
        "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": timeout},
        "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"]}
    })
}

/// A task body scheduled by cron, enabled.
fn cron_body(name: &str, timeout: i64) -> Value {
    json!({
        "name": name,
        "data_source_type": "DLI",
        "user_id": "u-1",
        "dir_id": "0",
        "schedule_config": {
            "schedule_type": "CRON",
            "cron_expression": "0 0 2 * * ?",
            "enabled": 1,
            "max_time_out": timeout
        },
        "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"]}
    })
}

fn manifest(body: &Value) -> Manifest {
    let name = body["name"].as_str().unwrap().to_string();
    Manifest::from_body(
        name.clone(),
        body,
        format!("{name}.yaml"),
        format!("tasks/{name}.yaml"),
        0,
    )
}

/// The record of a task taskform created with `body`.
fn record(task_id: &str, body: &Value) -> TaskRecord {
    let m = manifest(body);
    TaskRecord {
        task_id: task_id.into(),
        hash: m.hash,
        file: Some(m.file),
        applied_at: None,
        body: serde_json::value::RawValue::from_string(m.canonical).ok(),
        superseded: Vec::new(),
    }
}

/// Everything a reconcile works with: the fake, a store, manifests, flags.
struct World {
    fake: Arc<FakeApi>,
    api: Arc<dyn TaskApi>,
    store: MemoryStore,
    loaded: Loaded,
    resolved: Resolved,
    target: Target,
    policy: Policy,
    options: ApplyOptions,
    /// Kept alive: the run is never cancelled.
    cancel: (watch::Sender<bool>, watch::Receiver<bool>),
}

impl World {
    /// Manifests of run-once tasks with these names.
    fn new(names: &[&str]) -> World {
        World::with(names.iter().map(|n| body(n, 10)).collect())
    }

    fn with(bodies: Vec<Value>) -> World {
        let fake = Arc::new(FakeApi::default());
        let mut manifests: Vec<Manifest> = bodies.iter().map(manifest).collect();
        manifests.sort_by(|a, b| a.name.cmp(&b.name));
        World {
            api: fake.clone(),
            fake,
            store: MemoryStore::new(),
            loaded: Loaded {
                manifests,
                ..Loaded::default()
            },
            resolved: Resolved {
                endpoint: Some("https://dayu.cn-north-4.myhuaweicloud.com".into()),
                project_id: Some(PROJECT.into()),
                workspace: Some(WORKSPACE.into()),
                state: taskform::location::StateLocation::File("state/taskform.json".into()),
                ..Resolved::default()
            },
            target: Target {
                project_id: PROJECT.into(),
                workspace: WORKSPACE.into(),
            },
            policy: Policy::default(),
            options: ApplyOptions {
                concurrency: 4,
                max_rate: 0.0,
                max_attempts: 5,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
            },
            cancel: watch::channel(false),
        }
    }

    /// Writes a state that records these (name, task ID, body applied).
    fn seed(&self, tasks: &[(&str, &str, &Value)]) {
        let mut state = State::new();
        for (name, id, body) in tasks {
            state.tasks.insert(name.to_string(), record(id, body));
        }
        self.store.persist(&mut state).unwrap();
    }

    /// The state as last persisted.
    fn state(&self) -> State {
        self.store.persisted().expect("a persisted state")
    }

    fn sending(&self) -> Sending<'_> {
        Sending {
            options: &self.options,
            cancel: self.cancel.1.clone(),
            progress: Arc::new(Silent),
        }
    }

    /// One reconcile whose approval step decides with `approve`.
    async fn run_with<F>(&self, approve: F) -> Result<Report, Error>
    where
        F: FnOnce(&mut SavedPlan, &State) -> Result<Decision, Error>,
    {
        let ctx = Context {
            loaded: &self.loaded,
            resolved: &self.resolved,
            dir: Path::new("tasks"),
            store: &self.store,
            target: Some(&self.target),
            api: Some(&self.api),
            policy: &self.policy,
            origin: reconcile::Origin::Command("tester@test (apply)".into()),
        };
        reconcile::once(&ctx, None, approve, &self.sending()).await
    }

    /// One reconcile, approved.
    async fn apply(&self) -> Report {
        match self.run_with(|_, _| Ok(Decision::Apply)).await {
            Ok(r) => r,
            Err(e) => panic!("reconcile failed: {e}"),
        }
    }
}

fn result<'a>(report: &'a Report, name: &str) -> &'a TaskResult {
    report
        .results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

fn outcomes(report: &Report) -> Vec<(&str, TaskOutcome)> {
    report
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.outcome))
        .collect()
}

fn actions(doc: &SavedPlan) -> Vec<(&str, Action)> {
    doc.tasks
        .iter()
        .map(|t| (t.name.as_str(), t.action))
        .collect()
}

fn throttled(after: Duration) -> Scripted {
    Scripted::Answer(Outcome::Retry {
        failure: failure(429, Some("APIGW.0308")),
        retry_after: Some(after),
        throttled: true,
    })
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn three_creates_are_sent_and_recorded_with_the_services_ids() {
    let w = World::new(&["a", "b", "c"]);
    let report = w.apply().await;
    assert_eq!(
        outcomes(&report),
        vec![
            ("a", TaskOutcome::Created),
            ("b", TaskOutcome::Created),
            ("c", TaskOutcome::Created)
        ]
    );
    assert_eq!(w.fake.creates(), 3);
    let state = w.state();
    let recorded: Vec<&str> = state.tasks.values().map(|r| r.task_id.as_str()).collect();
    let mut remote = w.fake.ids();
    remote.sort();
    let mut recorded_sorted = recorded.clone();
    recorded_sorted.sort();
    assert_eq!(recorded_sorted, remote);
    for (name, r) in &state.tasks {
        assert_eq!(result(&report, name).task_id.as_deref(), Some(&*r.task_id));
        assert_eq!(w.fake.body(&r.task_id).unwrap()["name"], json!(name));
    }
    assert!(state.in_doubt.is_empty());
    // Written once to start the journal, once at the end.
    assert_eq!(state.serial, 2);
    assert!(!state.lineage.is_empty());
    assert_eq!(state.target.as_ref(), Some(&w.target));
    assert!(w.store.journal().is_empty(), "the journal is retired");
    assert!(!w.store.has_journal());
    assert!(report.persist_error.is_none());
}

#[tokio::test]
async fn a_stopped_plan_sends_and_writes_nothing() {
    let w = World::new(&["a", "b", "c"]);
    let report = w.run_with(|_, _| Ok(Decision::Stop)).await.unwrap();
    assert_eq!(report.doc.summary.create, 3);
    assert!(report.results.is_empty());
    assert_eq!(w.fake.calls(), Vec::<String>::new());
    assert!(w.store.persisted().is_none());
    assert!(!w.store.has_journal());
}

#[tokio::test]
async fn a_declined_approval_sends_and_writes_nothing() {
    let w = World::new(&["a", "b", "c"]);
    let r = w
        .run_with(|doc, _| {
            assert_eq!(doc.sends().len(), 3);
            Err(Error::Declined("apply cancelled; nothing was sent".into()))
        })
        .await;
    match r {
        Err(Error::Declined(m)) => assert!(m.contains("nothing was sent")),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a declined plan was applied"),
    }
    assert_eq!(w.fake.calls(), Vec::<String>::new());
    assert!(w.store.persisted().is_none());
    assert!(!w.store.has_journal());
}

#[tokio::test(start_paused = true)]
async fn throttled_creates_wait_as_told_and_then_succeed() {
    let w = World::new(&["a"]);
    let after = Duration::from_secs(2);
    w.fake
        .script("create", [throttled(after), throttled(after)]);
    let started = tokio::time::Instant::now();
    let report = w.apply().await;
    let waited = started.elapsed();
    let r = result(&report, "a");
    assert_eq!(r.outcome, TaskOutcome::Created);
    assert_eq!(r.attempts, 3);
    assert_eq!(w.fake.creates(), 3);
    assert_eq!(w.fake.ids().len(), 1, "one task made");
    assert!(
        waited >= after * 2,
        "waited {waited:?}, less than the two Retry-After of {after:?}"
    );
    assert_eq!(w.state().tasks["a"].task_id, w.fake.ids()[0]);
}

#[tokio::test]
async fn a_create_in_doubt_is_not_retried_and_stays_in_doubt() {
    let w = World::new(&["a"]);
    w.fake.script(
        "create",
        [Scripted::Answer(Outcome::InDoubt(InDoubtCause::NoAnswer(
            "timeout after 30 s".into(),
        )))],
    );
    let report = w.apply().await;
    let r = result(&report, "a");
    assert_eq!(r.outcome, TaskOutcome::InDoubt);
    assert_eq!(r.attempts, 1);
    // The search is the check for duplicate names before creating into an empty state.
    assert_eq!(w.fake.calls(), vec!["SEARCH a", "POST create a"]);
    let state = w.state();
    assert!(state.tasks.is_empty());
    let doubt = &state.in_doubt["a"];
    assert_eq!(doubt.hash, w.loaded.manifests[0].hash);
    assert_eq!(
        doubt.reason.as_deref(),
        Some("no answer (timeout after 30 s)")
    );
}

#[tokio::test]
async fn an_in_doubt_create_that_happened_is_adopted_next_time() {
    let w = World::new(&["a"]);
    w.fake.script("create", [Scripted::Lost]);
    assert_eq!(
        outcomes(&w.apply().await),
        vec![("a", TaskOutcome::InDoubt)]
    );
    assert!(w.state().in_doubt.contains_key("a"));
    let made = w.fake.ids();
    assert_eq!(made.len(), 1, "the create did happen");
    w.fake.take_calls();

    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["SEARCH a"], "no create sent");
    assert_eq!(actions(&report.doc), vec![("a", Action::Unchanged)]);
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, made[0]);
    assert!(state.in_doubt.is_empty());
    assert_eq!(w.fake.ids(), made);
}

#[tokio::test]
async fn an_in_doubt_create_that_did_not_happen_is_sent_again() {
    let w = World::new(&["a"]);
    w.fake.script(
        "create",
        [Scripted::Answer(Outcome::InDoubt(InDoubtCause::NoAnswer(
            "timeout after 30 s".into(),
        )))],
    );
    w.apply().await;
    assert!(w.state().in_doubt.contains_key("a"));
    assert!(w.fake.ids().is_empty());
    w.fake.take_calls();

    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["SEARCH a", "POST create a"]);
    assert_eq!(outcomes(&report), vec![("a", TaskOutcome::Created)]);
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, w.fake.ids()[0]);
    assert!(state.in_doubt.is_empty());
}

#[tokio::test]
async fn settling_leaves_several_tasks_of_the_name_in_doubt() {
    let fake = FakeApi::default();
    let m = manifest(&body("a", 10));
    let first = fake.insert(body("a", 10));
    let second = fake.insert(body("a", 10));
    let mut state = State::new();
    state.in_doubt.insert(
        "a".into(),
        InDoubt {
            hash: m.hash.clone(),
            file: Some(m.file.clone()),
            sent_at: None,
            reason: None,
            body: None,
        },
    );
    let settled = settle::settle(
        &mut state,
        std::slice::from_ref(&m),
        &fake,
        &taskform::load::secret::Key::default(),
        false,
    )
    .await
    .unwrap()
    .unwrap();
    match settled.as_slice() {
        [Settled::Unresolved { name, why }] => {
            assert_eq!(name, "a");
            assert!(why.contains(&first) && why.contains(&second), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(state.tasks.is_empty());
    assert!(state.in_doubt.contains_key("a"));
}

#[tokio::test]
async fn a_scheduled_task_is_stopped_updated_and_started_again() {
    let w = World::with(vec![cron_body("a", 20)]);
    let id = w.fake.insert(cron_body("a", 10));
    assert!(w.fake.scheduled(&id));
    w.seed(&[("a", &id, &cron_body("a", 10))]);
    let mut w = w;
    w.policy = Policy {
        on_change: Some(OnChange::Update),
        ..Policy::default()
    };
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Update)]);
    // The state records it as scheduling: stopped first, not after a refused PUT.
    assert_eq!(
        w.fake.calls(),
        vec![
            format!("POST stop {id}"),
            format!("PUT {id}"),
            format!("POST run {id}"),
        ]
    );
    let r = result(&report, "a");
    assert_eq!(r.outcome, TaskOutcome::Updated);
    assert_eq!(r.error_msg, None);
    assert_eq!(w.fake.body(&id).unwrap(), cron_body("a", 20));
    assert!(w.fake.scheduled(&id), "scheduled again");
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, id);
    assert_eq!(state.tasks["a"].hash, w.loaded.manifests[0].hash);
}

#[tokio::test]
async fn pruning_a_task_already_gone_counts_as_deleted() {
    let mut w = World::new(&[]);
    w.seed(&[("gone", "task-9999", &body("gone", 10))]);
    w.policy = Policy {
        prune: true,
        allow_empty: true,
        ..Policy::default()
    };
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("gone", Action::Delete)]);
    assert_eq!(w.fake.calls(), vec!["DELETE task-9999"]);
    assert_eq!(outcomes(&report), vec![("gone", TaskOutcome::Deleted)]);
    assert!(w.state().tasks.is_empty(), "record dropped");
}

#[tokio::test]
async fn the_applier_stops_a_scheduled_task_before_deleting_it() {
    let fake = Arc::new(FakeApi::default());
    let id = fake.insert(cron_body("old", 10));
    let store = MemoryStore::new();
    let mut state = State::new();
    state
        .tasks
        .insert("old".into(), record(&id, &cron_body("old", 10)));
    store.persist(&mut state).unwrap();
    let plan = taskform::plan::plan(
        &[],
        &state,
        PlanOptions {
            prune: true,
            ..PlanOptions::default()
        },
    );
    let journal: Arc<dyn Journal> = Arc::from(store.open_journal(&state).unwrap());
    let (_tx, cancel) = watch::channel(false);
    let options = ApplyOptions::default();
    let sending = Sending {
        options: &options,
        cancel,
        progress: Arc::new(Silent),
    };
    let applied = applier::execute(&plan, &[], &state, fake.clone(), journal, &sending).await;
    // The state records it as scheduling: stopped first, not after a refused DELETE.
    assert_eq!(
        fake.calls(),
        vec![format!("POST stop {id}"), format!("DELETE {id}")]
    );
    assert_eq!(applied.results.len(), 1);
    assert_eq!(applied.results[0].outcome, TaskOutcome::Deleted);
    assert!(fake.ids().is_empty());
    // The deletion is durable in the journal before the run ends.
    assert!(matches!(
        store.journal().as_slice(),
        [Record::Open { .. }, Record::Deleted { name, task_id }] if name == "old" && *task_id == id
    ));
    taskform::state::journal::replay(&mut state, &applied.records);
    assert!(state.tasks.is_empty());
}

#[tokio::test]
async fn a_refused_credential_stops_the_run() {
    let mut w = World::new(&["a", "b", "c"]);
    w.options.concurrency = 1;
    // No search for duplicate names first: this test is about the creates alone.
    w.policy.allow_duplicate_names = true;
    w.fake.script(
        "create",
        [Scripted::Answer(Outcome::Unauthorized(failure(
            401,
            Some("APIGW.0301"),
        )))],
    );
    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["POST create a"]);
    assert_eq!(
        outcomes(&report),
        vec![
            ("a", TaskOutcome::Failed),
            ("b", TaskOutcome::Skipped),
            ("c", TaskOutcome::Skipped)
        ]
    );
    assert_eq!(result(&report, "a").http_status, Some(401));
    assert_eq!(result(&report, "b").attempts, 0);
    let state = w.state();
    assert!(state.tasks.is_empty());
    assert!(state.in_doubt.is_empty(), "{:?}", state.in_doubt);
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_loses_no_created_task() {
    let mut w = World::new(&["a", "b", "c", "d", "e"]);
    w.options.concurrency = 2;
    // Two intents are durable; every record after them fails, as on a full disk.
    w.store.fail_appends_after(2);
    let report = w.apply().await;
    assert!(report.persist_error.is_none());
    let created: Vec<&TaskResult> = report
        .results
        .iter()
        .filter(|r| r.outcome == TaskOutcome::Created)
        .collect();
    assert!(!created.is_empty());
    assert!(
        w.fake.creates() < 5,
        "the run went on sending: {:?}",
        w.fake.calls()
    );
    assert_eq!(w.fake.creates(), created.len());
    assert!(
        report
            .results
            .iter()
            .filter(|r| r.outcome != TaskOutcome::Created)
            .all(|r| r.outcome == TaskOutcome::Skipped && r.attempts == 0)
    );
    let state = w.state();
    let mut recorded: Vec<String> = state.tasks.values().map(|r| r.task_id.clone()).collect();
    recorded.sort();
    assert_eq!(recorded, w.fake.ids(), "every created task is recorded");
}

#[tokio::test]
async fn a_create_that_was_never_sent_is_not_in_doubt() {
    let mut w = World::new(&["a", "b", "c"]);
    w.options.concurrency = 3;
    // Two intents are durable; the third fails, so that task is not sent.
    w.store.fail_appends_after(2);
    let report = w.apply().await;
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome == TaskOutcome::Skipped)
        .map(|r| r.name.as_str())
        .collect();
    // The first create goes out alone; the others' intents are made meanwhile, and
    // the run stops at the one that fails: every other create is left unsent.
    assert!(!skipped.is_empty(), "{:?}", outcomes(&report));
    let created = report.results.len() - skipped.len();
    assert_eq!(w.fake.creates(), created);
    let state = w.state();
    assert_eq!(state.tasks.len(), created);
    for unsent in skipped {
        assert!(!w.fake.calls().contains(&format!("POST create {unsent}")));
        assert!(
            !state.in_doubt.contains_key(unsent),
            "{unsent} was never sent, yet the state says it may exist: {:?}",
            state.in_doubt.get(unsent)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_wait_even_when_nobody_can_cancel() {
    let mut w = World::new(&["a"]);
    // As `cli/plan.rs` builds its Sending: `watch::channel(false).1`.
    let (tx, rx) = watch::channel(false);
    drop(tx);
    w.cancel.1 = rx;
    let after = Duration::from_secs(2);
    w.fake
        .script("create", [throttled(after), throttled(after)]);
    let started = tokio::time::Instant::now();
    let report = w.apply().await;
    let waited = started.elapsed();
    assert_eq!(result(&report, "a").outcome, TaskOutcome::Created);
    assert!(
        waited >= after * 2,
        "retried after {waited:?} although the service asked for {after:?} twice"
    );
}

#[tokio::test]
async fn adopting_refuses_several_remote_tasks_of_one_name() {
    let mut w = World::new(&["a"]);
    let first = w.fake.insert(body("a", 10));
    let second = w.fake.insert(body("a", 10));
    w.policy = Policy {
        adopt: true,
        ..Policy::default()
    };
    match w.run_with(|_, _| Ok(Decision::Apply)).await {
        Err(Error::Ambiguous(a)) => {
            assert_eq!(
                a.names,
                vec![("a".to_string(), vec![first.clone(), second.clone()])]
            );
            let msg = a.to_string();
            assert!(msg.contains(&first) && msg.contains(&second), "{msg}");
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("an ambiguous adoption was applied"),
    }
    assert_eq!(w.fake.calls(), vec!["SEARCH a"]);
    assert!(w.store.persisted().is_none());
}

#[tokio::test]
async fn adopting_records_the_one_remote_task_of_the_name() {
    let mut w = World::new(&["a"]);
    let id = w.fake.insert(body("a", 10));
    w.policy = Policy {
        adopt: true,
        ..Policy::default()
    };
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Unchanged)]);
    assert!(report.results.is_empty());
    assert_eq!(w.fake.calls(), vec!["SEARCH a"], "nothing created");
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, id);
    assert_eq!(state.tasks["a"].hash, w.loaded.manifests[0].hash);
}

#[tokio::test]
async fn refreshing_creates_again_a_task_deleted_outside_taskform() {
    let mut w = World::new(&["a"]);
    w.seed(&[("a", "task-0042", &body("a", 10))]);
    w.policy = Policy {
        refresh: true,
        ..Policy::default()
    };
    let report = w.apply().await;
    let note = &report.observed.notes["a"];
    assert!(
        note.contains("drift") && note.contains("task-0042"),
        "{note}"
    );
    assert_eq!(actions(&report.doc), vec![("a", Action::Create)]);
    assert_eq!(report.doc.tasks[0].note.as_deref(), Some(note.as_str()));
    // The LIST looks for duplicates (a small state is shown task by task).
    assert_eq!(
        w.fake.calls(),
        vec!["GET task-0042", "LIST", "POST create a"]
    );
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, w.fake.ids()[0]);
    assert!(state.tasks["a"].superseded.is_empty());
}

#[tokio::test]
async fn a_create_only_gateway_turns_an_update_into_a_replace() {
    let mut w = World::new(&["a"]);
    let old = w.fake.insert(body("a", 10));
    w.fake.set_create_only();
    w.seed(&[("a", &old, &body("a", 10))]);
    w.loaded.manifests = vec![manifest(&body("a", 20))];
    w.policy = Policy {
        on_change: Some(OnChange::Update),
        ..Policy::default()
    };
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Update)]);
    let r = result(&report, "a");
    assert_eq!(r.outcome, TaskOutcome::Created);
    let new = r.task_id.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        w.fake.calls(),
        vec![format!("PUT {old}"), "POST create a".into()]
    );
    let state = w.state();
    let rec = &state.tasks["a"];
    assert_eq!(rec.task_id, new);
    assert_eq!(rec.hash, w.loaded.manifests[0].hash);
    let superseded: Vec<&str> = rec.superseded.iter().map(|s| s.task_id.as_str()).collect();
    assert_eq!(superseded, vec![old.as_str()]);
}

// ---------------------------------------------------------------------------------
// Failing fast (issue #14, point 12)
// ---------------------------------------------------------------------------------

/// A connection that could not be made: nothing sent, no answer.
fn unreachable() -> Scripted {
    Scripted::Answer(Outcome::Retry {
        failure: Failure {
            status: None,
            error_code: None,
            error_msg: "no answer (connection refused)".into(),
        },
        retry_after: None,
        throttled: false,
    })
}

fn created_as(id: &str) -> Scripted {
    Scripted::Answer(Outcome::Created(id.into()))
}

#[tokio::test]
async fn a_refused_credential_lets_only_the_first_create_out() {
    let mut w = World::new(&["a", "b", "c", "d", "e", "f"]);
    w.policy.allow_duplicate_names = true;
    w.options.concurrency = 4;
    w.fake.script(
        "create",
        [Scripted::Answer(Outcome::Unauthorized(failure(
            401,
            Some("APIGW.0301"),
        )))],
    );
    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["POST create a"]);
    let skipped: Vec<&TaskResult> = report
        .results
        .iter()
        .filter(|r| r.outcome == TaskOutcome::Skipped)
        .collect();
    assert_eq!(skipped.len(), 5, "{:?}", outcomes(&report));
    assert!(skipped.iter().all(|r| r.attempts == 0));
    assert!(w.state().in_doubt.is_empty(), "{:?}", w.state().in_doubt);
}

#[tokio::test]
async fn a_workspace_403_on_the_first_update_stops_the_others() {
    let bodies: Vec<Value> = ["a", "b", "c"].iter().map(|n| body(n, 20)).collect();
    let mut w = World::with(bodies);
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| w.fake.insert(body(n, 10)))
        .collect();
    w.seed(&[
        ("a", &ids[0], &body("a", 10)),
        ("b", &ids[1], &body("b", 10)),
        ("c", &ids[2], &body("c", 10)),
    ]);
    w.policy = Policy {
        on_change: Some(OnChange::Update),
        ..Policy::default()
    };
    w.fake.script(
        "update",
        [Scripted::Answer(Outcome::Unauthorized(failure(
            403,
            Some("DLG.0818"),
        )))],
    );
    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec![format!("PUT {}", ids[0])]);
    assert_eq!(
        outcomes(&report),
        vec![
            ("a", TaskOutcome::Failed),
            ("b", TaskOutcome::Skipped),
            ("c", TaskOutcome::Skipped)
        ]
    );
}

/// Creates that take 10 ms, counting how many are in flight: at most, and before the
/// first has been answered.
struct Timed {
    fake: Arc<FakeApi>,
    /// (in flight, answered, peak before the first answer, peak)
    counts: Mutex<(usize, usize, usize, usize)>,
}

impl TaskApi for Timed {
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(async move {
            {
                let mut c = self.counts.lock().unwrap();
                c.0 += 1;
                if c.1 == 0 {
                    c.2 = c.2.max(c.0);
                }
                c.3 = c.3.max(c.0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let o = self.fake.create(body).await;
            let mut c = self.counts.lock().unwrap();
            c.0 -= 1;
            c.1 += 1;
            o
        })
    }
    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome> {
        self.fake.update(task_id, body)
    }
    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome> {
        self.fake.delete(task_id)
    }
    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome> {
        self.fake.action(task_id, action)
    }
    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, taskform::remote::Error>> {
        self.fake.search_by_name(name)
    }
    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, taskform::remote::Error>> {
        self.fake.list_tasks()
    }
    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, taskform::remote::Error>> {
        self.fake.show(task_id)
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_write_goes_out_alone_and_then_they_fan_out() {
    let names: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = World::new(&names);
    w.options.concurrency = 4;
    let timed = Arc::new(Timed {
        fake: w.fake.clone(),
        counts: Mutex::new((0, 0, 0, 0)),
    });
    w.api = timed.clone();
    let report = w.apply().await;
    assert!(
        report
            .results
            .iter()
            .all(|r| r.outcome == TaskOutcome::Created)
    );
    assert_eq!(w.fake.creates(), 20);
    let (_, answered, before_first, peak) = *timed.counts.lock().unwrap();
    assert_eq!(answered, 20);
    assert_eq!(before_first, 1, "alone until the first answer");
    assert_eq!(peak, 4, "then as many as --concurrency");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_stops_the_run_after_the_first_task() {
    let names: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = World::new(&names);
    w.options.max_attempts = 3;
    w.fake.script("create", (0..100).map(|_| unreachable()));
    let report = w.apply().await;
    // Before: every task made its 3 attempts (36 creates).
    assert_eq!(w.fake.creates(), 3, "{:?}", w.fake.calls());
    let first = result(&report, "t00");
    assert_eq!(first.outcome, TaskOutcome::Failed);
    assert_eq!(first.http_status, None);
    assert!(
        first
            .error_msg
            .as_deref()
            .unwrap()
            .starts_with("no answer (connection refused)"),
        "{first:?}"
    );
    for r in report.results.iter().filter(|r| r.name != "t00") {
        assert_eq!(r.outcome, TaskOutcome::Skipped, "{r:?}");
        assert_eq!(r.attempts, 0);
        assert!(
            r.error_msg.as_deref().unwrap().contains("no answer"),
            "{r:?}"
        );
    }
    let state = w.state();
    assert!(state.in_doubt.is_empty() && state.tasks.is_empty());
    let text = taskform::render::apply_problems_text(&report.results);
    assert!(!text.contains("HTTP 0"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_dies_mid_run_stops_it_after_three_tasks_in_a_row() {
    let names: Vec<String> = (0..10).map(|i| format!("t{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = World::new(&names);
    w.options.concurrency = 1;
    w.options.max_attempts = 2;
    w.fake.script(
        "create",
        [created_as("task-a"), created_as("task-b")]
            .into_iter()
            .chain((0..100).map(|_| unreachable())),
    );
    let report = w.apply().await;
    let got = outcomes(&report);
    assert_eq!(
        got,
        vec![
            ("t00", TaskOutcome::Created),
            ("t01", TaskOutcome::Created),
            ("t02", TaskOutcome::Failed),
            ("t03", TaskOutcome::Failed),
            ("t04", TaskOutcome::Failed),
            ("t05", TaskOutcome::Skipped),
            ("t06", TaskOutcome::Skipped),
            ("t07", TaskOutcome::Skipped),
            ("t08", TaskOutcome::Skipped),
            ("t09", TaskOutcome::Skipped),
        ]
    );
    // Before: all 8 remaining tasks made their 2 attempts.
    assert_eq!(w.fake.creates(), 2 + 3 * 2);
    assert_eq!(w.state().tasks.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_answer_between_failures_to_connect_starts_the_count_again() {
    let mut w = World::new(&["a", "b", "c", "d", "e", "f", "g"]);
    w.options.concurrency = 1;
    w.options.max_attempts = 2;
    w.fake.script(
        "create",
        [
            created_as("task-a"),
            unreachable(),
            unreachable(),
            unreachable(),
            unreachable(),
            created_as("task-d"),
            unreachable(),
            unreachable(),
            unreachable(),
            unreachable(),
            created_as("task-g"),
        ],
    );
    let report = w.apply().await;
    assert_eq!(
        outcomes(&report),
        vec![
            ("a", TaskOutcome::Created),
            ("b", TaskOutcome::Failed),
            ("c", TaskOutcome::Failed),
            ("d", TaskOutcome::Created),
            ("e", TaskOutcome::Failed),
            ("f", TaskOutcome::Failed),
            ("g", TaskOutcome::Created),
        ]
    );
}

#[tokio::test]
async fn a_first_create_without_an_answer_stops_the_run_in_doubt() {
    let mut w = World::new(&["a", "b", "c"]);
    w.policy.allow_duplicate_names = true;
    w.options.concurrency = 3;
    w.fake.script(
        "create",
        [Scripted::Answer(Outcome::InDoubt(InDoubtCause::NoAnswer(
            "timeout after 30 s".into(),
        )))],
    );
    let report = w.apply().await;
    // Before: all three were sent, each waiting out its timeout.
    assert_eq!(w.fake.calls(), vec!["POST create a"]);
    assert_eq!(
        outcomes(&report),
        vec![
            ("a", TaskOutcome::InDoubt),
            ("b", TaskOutcome::Skipped),
            ("c", TaskOutcome::Skipped)
        ]
    );
    let state = w.state();
    assert_eq!(state.in_doubt.keys().collect::<Vec<_>>(), vec!["a"]);
}

// ---------------------------------------------------------------------------------
// Schedules that converge, soft-deleted tasks, refresh from a listing (issue #15)
// ---------------------------------------------------------------------------------

/// An enabled CRON body with `enabled` set to `enabled`.
fn cron_with(name: &str, timeout: i64, enabled: i64) -> Value {
    let mut b = cron_body(name, timeout);
    b["schedule_config"]["enabled"] = json!(enabled);
    b
}

impl FakeApi {
    /// Pauses a task's schedule out of band (a pause in the console, or a stop whose
    /// run was killed before its PUT).
    fn pause(&self, id: &str) {
        if let Some(t) = self.inner().tasks.get_mut(id) {
            t.scheduled = false;
        }
    }
}

fn updating(mut w: World) -> World {
    w.policy.on_change = Some(OnChange::Update);
    w
}

#[tokio::test]
async fn a_run_killed_between_stop_and_put_ends_scheduling_at_the_next_apply() {
    // The state still records the old content, scheduled; the server has the old
    // content, paused: the stop went out, the PUT did not. The fake's PUT, as some
    // services may, leaves a paused task paused.
    let w = updating(World::with(vec![cron_body("a", 20)]));
    let id = w.fake.insert(cron_body("a", 10));
    w.fake.pause(&id);
    w.seed(&[("a", &id, &cron_body("a", 10))]);
    let report = w.apply().await;
    assert_eq!(
        w.fake.calls(),
        vec![
            format!("POST stop {id}"),
            format!("PUT {id}"),
            format!("POST run {id}"),
        ]
    );
    assert_eq!(result(&report, "a").outcome, TaskOutcome::Updated);
    assert_eq!(w.fake.body(&id).unwrap(), cron_body("a", 20));
    assert!(w.fake.scheduled(&id), "scheduling, as the manifest says");
}

#[tokio::test]
async fn apply_refresh_starts_again_a_task_paused_in_the_console_and_then_rests() {
    let mut w = updating(World::with(vec![cron_body("a", 10)]));
    w.policy.refresh = true;
    let id = w.fake.insert(cron_body("a", 10));
    w.fake.pause(&id);
    w.seed(&[("a", &id, &cron_body("a", 10))]);
    let report = w.apply().await;
    assert!(report.observed.notes["a"].contains("drift"));
    // Read back as paused (`enabled` 5 = 0): not scheduling, so no stop; the PUT does
    // not start it, the run does.
    assert_eq!(
        w.fake.take_calls(),
        vec![
            format!("GET {id}"),
            "LIST".to_string(),
            format!("PUT {id}"),
            format!("POST run {id}")
        ]
    );
    assert!(w.fake.scheduled(&id));
    // Converged: the next apply --refresh reads it and sends nothing.
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Unchanged)]);
    assert_eq!(
        w.fake.take_calls(),
        vec![format!("GET {id}"), "LIST".to_string()]
    );
}

#[tokio::test]
async fn a_manifest_that_turns_the_schedule_off_stops_the_task_first_and_leaves_it_stopped() {
    let w = updating(World::with(vec![cron_with("a", 10, 0)]));
    let id = w.fake.insert(cron_body("a", 10));
    w.seed(&[("a", &id, &cron_body("a", 10))]);
    let report = w.apply().await;
    assert_eq!(
        w.fake.calls(),
        vec![format!("POST stop {id}"), format!("PUT {id}")]
    );
    assert_eq!(result(&report, "a").outcome, TaskOutcome::Updated);
    assert!(!w.fake.scheduled(&id), "stopped, as the manifest says");
}

#[tokio::test]
async fn a_task_scheduled_behind_the_states_back_is_stopped_after_the_refused_put() {
    // Recorded as not scheduled (enabled 0), started in the console since: the PUT is
    // refused (`DLG.2206`), as before.
    let w = updating(World::with(vec![cron_with("a", 20, 0)]));
    let id = w.fake.insert(cron_body("a", 10));
    assert!(w.fake.scheduled(&id));
    w.seed(&[("a", &id, &cron_with("a", 10, 0))]);
    let report = w.apply().await;
    assert_eq!(
        w.fake.calls(),
        vec![
            format!("PUT {id}"),
            format!("POST stop {id}"),
            format!("PUT {id}")
        ]
    );
    assert_eq!(result(&report, "a").outcome, TaskOutcome::Updated);
    assert!(!w.fake.scheduled(&id));
}

#[tokio::test]
async fn updating_scheduled_and_other_tasks_costs_three_and_one_requests() {
    let bodies: Vec<Value> = (0..6)
        .map(|i| match i % 2 {
            0 => cron_body(&format!("t{i}"), 20),
            _ => body(&format!("t{i}"), 20),
        })
        .collect();
    let w = updating(World::with(bodies));
    let mut seeded = Vec::new();
    for i in 0..6 {
        let old = match i % 2 {
            0 => cron_body(&format!("t{i}"), 10),
            _ => body(&format!("t{i}"), 10),
        };
        let id = w.fake.insert(old.clone());
        seeded.push((format!("t{i}"), id, old));
    }
    let seed: Vec<(&str, &str, &Value)> = seeded
        .iter()
        .map(|(n, id, b)| (n.as_str(), id.as_str(), b))
        .collect();
    w.seed(&seed);
    let report = w.apply().await;
    assert!(
        report
            .results
            .iter()
            .all(|r| r.outcome == TaskOutcome::Updated)
    );
    let calls = w.fake.calls();
    for (i, (_, id, _)) in seeded.iter().enumerate() {
        let n = calls
            .iter()
            .filter(|c| c.ends_with(&format!(" {id}")))
            .count();
        assert_eq!(n, if i % 2 == 0 { 3 } else { 1 }, "{calls:?}");
        assert_eq!(w.fake.scheduled(id), i % 2 == 0);
    }
}

/// A state recording `old` (task `task-0042`, which the fake does not hold: deleted,
/// or soft-deleted), no manifests, `--prune`.
fn pruning(old: &Value) -> World {
    let mut w = World::new(&[]);
    w.seed(&[("old", "task-0042", old)]);
    w.policy = Policy {
        prune: true,
        allow_empty: true,
        ..Policy::default()
    };
    w
}

#[tokio::test]
async fn a_delete_refused_as_scheduling_whose_stop_finds_no_task_counts_as_deleted() {
    for code in taskform::remote::client::NOT_FOUND_CODES {
        // Not recorded as scheduling: the DELETE is refused first (the provider: "deletion
        // is not supported for soft-deleted instances that are in a scheduling state").
        let w = pruning(&body("old", 10));
        w.fake.script(
            "delete",
            [Scripted::Answer(Outcome::Failed(failure(
                400,
                Some("DLG.2206"),
            )))],
        );
        w.fake.script(
            "action",
            [Scripted::Answer(Outcome::Failed(failure(400, Some(code))))],
        );
        let report = w.apply().await;
        assert_eq!(
            w.fake.calls(),
            vec!["DELETE task-0042", "POST stop task-0042"],
            "{code}"
        );
        assert_eq!(
            outcomes(&report),
            vec![("old", TaskOutcome::Deleted)],
            "{code}"
        );
        assert!(w.state().tasks.is_empty(), "{code}: record dropped");

        // Recorded as scheduling: the stop goes first, and finds no task.
        let w = pruning(&cron_body("old", 10));
        w.fake.script(
            "action",
            [Scripted::Answer(Outcome::Failed(failure(400, Some(code))))],
        );
        let report = w.apply().await;
        assert_eq!(w.fake.calls(), vec!["POST stop task-0042"], "{code}");
        assert_eq!(
            outcomes(&report),
            vec![("old", TaskOutcome::Deleted)],
            "{code}"
        );
        assert!(w.state().tasks.is_empty(), "{code}: record dropped");
    }
}

#[tokio::test]
async fn a_delete_refused_as_scheduling_after_its_stop_counts_as_deleted_when_the_task_is_gone() {
    // A soft-deleted instance: the stop is accepted, the DELETE still refused, and show
    // finds no such task.
    let w = pruning(&body("old", 10));
    let refused = || Scripted::Answer(Outcome::Failed(failure(400, Some("DLG.2206"))));
    w.fake.script("delete", [refused(), refused()]);
    w.fake
        .script("action", [Scripted::Answer(Outcome::Done(200))]);
    let report = w.apply().await;
    assert_eq!(
        w.fake.calls(),
        vec![
            "DELETE task-0042",
            "POST stop task-0042",
            "DELETE task-0042",
            "GET task-0042"
        ]
    );
    assert_eq!(outcomes(&report), vec![("old", TaskOutcome::Deleted)]);
    assert!(w.state().tasks.is_empty());
}

#[tokio::test]
async fn a_delete_still_refused_after_its_stop_fails_while_the_task_is_shown() {
    let mut w = World::new(&[]);
    let id = w.fake.insert(body("old", 10));
    w.seed(&[("old", &id, &body("old", 10))]);
    w.policy = Policy {
        prune: true,
        allow_empty: true,
        ..Policy::default()
    };
    let refused = || Scripted::Answer(Outcome::Failed(failure(400, Some("DLG.2206"))));
    w.fake.script("delete", [refused(), refused()]);
    let report = w.apply().await;
    let r = result(&report, "old");
    assert_eq!(r.outcome, TaskOutcome::Failed);
    assert_eq!(r.error_code.as_deref(), Some("DLG.2206"));
    assert_eq!(w.fake.ids(), vec![id.clone()], "still there");
    assert_eq!(w.state().tasks["old"].task_id, id, "still recorded");
}

/// How [`Reshaped`] lists the workspace.
#[derive(Clone, Copy)]
enum Listed {
    /// As the fake does: every task, complete.
    All,
    /// The first `n` tasks, the listing cut short.
    Cut(usize),
    /// No search endpoint.
    NoSearch,
}

/// The fake, with its search answers listed as `listed` and a field left out of listed
/// tasks (`strip_listed`) or of shown ones (`strip_shown`).
struct Reshaped {
    fake: Arc<FakeApi>,
    listed: Listed,
    strip_listed: Option<&'static str>,
    strip_shown: Option<&'static str>,
}

fn strip(mut v: Value, field: Option<&str>) -> Value {
    if let (Some(f), Some(o)) = (field, v.as_object_mut()) {
        o.remove(f);
    }
    v
}

impl TaskApi for Reshaped {
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome> {
        self.fake.create(body)
    }
    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome> {
        self.fake.update(task_id, body)
    }
    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome> {
        self.fake.delete(task_id)
    }
    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome> {
        self.fake.action(task_id, action)
    }
    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, taskform::remote::Error>> {
        self.fake.search_by_name(name)
    }
    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, taskform::remote::Error>> {
        Box::pin(async move {
            let listing = self.fake.list_tasks().await?;
            Ok(match (self.listed, listing) {
                (Listed::NoSearch, _) | (_, None) => None,
                (Listed::All, Some(l)) => Some(Listing {
                    tasks: l
                        .tasks
                        .into_iter()
                        .map(|t| strip(t, self.strip_listed))
                        .collect(),
                    complete: true,
                }),
                (Listed::Cut(n), Some(l)) => Some(Listing {
                    tasks: l.tasks.into_iter().take(n).collect(),
                    complete: false,
                }),
            })
        })
    }
    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, taskform::remote::Error>> {
        Box::pin(async move {
            Ok(match self.fake.show(task_id).await? {
                Shown::Found(v) => Shown::Found(strip(v, self.strip_shown)),
                other => other,
            })
        })
    }
}

/// 30 recorded tasks (more than a refresh shows one by one) on the fake: `t05` was
/// deleted outside taskform, `t07` changed; the state as recorded, and the manifests.
fn thirty() -> (Arc<FakeApi>, State, Vec<Manifest>, Vec<String>) {
    let fake = Arc::new(FakeApi::default());
    let mut state = State::new();
    let mut manifests = Vec::new();
    let mut ids = Vec::new();
    for i in 0..30 {
        let name = format!("t{i:02}");
        let b = match i % 3 {
            0 => cron_body(&name, 10),
            _ => body(&name, 10),
        };
        let id = match i {
            5 => "task-gone".to_string(),
            7 => fake.insert(body(&name, 99)),
            _ => fake.insert(b.clone()),
        };
        state.tasks.insert(name.clone(), record(&id, &b));
        manifests.push(manifest(&b));
        ids.push(id);
    }
    // Tasks of the workspace that this state does not record.
    for i in 0..5 {
        fake.insert(body(&format!("other-{i}"), 10));
    }
    (fake, state, manifests, ids)
}

/// Refreshes a copy of `state` through `api`: the drift, and the state after, as JSON.
async fn refreshed(
    state: &State,
    manifests: &[Manifest],
    api: Arc<dyn TaskApi>,
) -> (Vec<refresh::Drift>, Value) {
    let mut s = state.clone();
    let drift = refresh::refresh(&mut s, manifests, &api, &Key::default())
        .await
        .expect("refresh")
        .expect("a service with show");
    (drift, serde_json::to_value(&s).unwrap())
}

fn reshaped(fake: &Arc<FakeApi>, listed: Listed) -> Reshaped {
    Reshaped {
        fake: fake.clone(),
        listed,
        strip_listed: None,
        strip_shown: None,
    }
}

#[tokio::test]
async fn refreshing_many_tasks_reads_one_listing_with_the_same_results_as_shows() {
    let (fake, state, manifests, ids) = thirty();
    let by_shows = refreshed(
        &state,
        &manifests,
        Arc::new(reshaped(&fake, Listed::NoSearch)),
    )
    .await;
    assert_eq!(
        fake.take_calls().len(),
        31,
        "a LIST answered 'no search', 30 shows"
    );
    let by_listing = refreshed(&state, &manifests, fake.clone()).await;
    // One listing; a show for the one task it does not hold (deleted).
    assert_eq!(fake.take_calls(), vec!["LIST", "GET task-gone"]);
    assert_eq!(by_listing, by_shows);
    let (drift, _) = by_listing;
    assert_eq!(
        drift,
        vec![
            refresh::Drift::Gone {
                name: "t05".into(),
                task_id: "task-gone".into(),
                superseded: false
            },
            refresh::Drift::Changed {
                name: "t07".into(),
                task_id: ids[7].clone()
            },
        ]
    );
}

#[tokio::test]
async fn an_incomplete_or_missing_listing_means_a_show_per_task() {
    let (fake, state, manifests, _) = thirty();
    let by_shows = refreshed(
        &state,
        &manifests,
        Arc::new(reshaped(&fake, Listed::NoSearch)),
    )
    .await;
    fake.take_calls();
    let cut = refreshed(
        &state,
        &manifests,
        Arc::new(reshaped(&fake, Listed::Cut(10))),
    )
    .await;
    let calls = fake.take_calls();
    assert_eq!(calls[0], "LIST");
    assert_eq!(calls.iter().filter(|c| c.starts_with("GET ")).count(), 30);
    assert_eq!(cut, by_shows);
}

#[tokio::test]
async fn listed_tasks_without_a_compared_field_are_shown_when_show_has_it() {
    let (fake, state, manifests, _) = thirty();
    let by_shows = refreshed(
        &state,
        &manifests,
        Arc::new(reshaped(&fake, Listed::NoSearch)),
    )
    .await;
    fake.take_calls();
    let api = Reshaped {
        strip_listed: Some("task_config"),
        ..reshaped(&fake, Listed::All)
    };
    let r = refreshed(&state, &manifests, Arc::new(api)).await;
    let calls = fake.take_calls();
    assert_eq!(calls[0], "LIST");
    assert_eq!(calls.iter().filter(|c| c.starts_with("GET ")).count(), 30);
    assert_eq!(
        r, by_shows,
        "no false drift from what the listing leaves out"
    );
}

#[tokio::test]
async fn when_show_lacks_the_field_too_one_show_is_enough() {
    let (fake, state, manifests, _) = thirty();
    let without = |listed| Reshaped {
        strip_listed: Some("task_config"),
        strip_shown: Some("task_config"),
        ..reshaped(&fake, listed)
    };
    let by_shows = refreshed(&state, &manifests, Arc::new(without(Listed::NoSearch))).await;
    fake.take_calls();
    let r = refreshed(&state, &manifests, Arc::new(without(Listed::All))).await;
    let calls = fake.take_calls();
    // The listing, one show to learn that show lacks it too, the deleted task's show.
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], "LIST");
    assert_eq!(r, by_shows);
}

// ---------------------------------------------------------------------------------
// Settling never gets stuck and never leaks (issue #25)
// ---------------------------------------------------------------------------------

/// A create sent whose answer never came back: it did not reach the service (killed
/// after the intent, or lost on the way), or it did and the answer was lost.
fn lost_create(arrived: bool) -> Scripted {
    match arrived {
        true => Scripted::Lost,
        false => Scripted::Answer(Outcome::InDoubt(InDoubtCause::NoAnswer(
            "timeout after 30 s".into(),
        ))),
    }
}

/// `a` recorded as task `old` (body `a`, 10); its manifest says 20; `on_change:
/// recreate`; the replace's create sent, its answer lost.
async fn replace_in_doubt(arrived: bool) -> (World, String) {
    let mut w = World::with(vec![body("a", 20)]);
    w.policy.on_change = Some(OnChange::Recreate);
    let old = w.fake.insert(body("a", 10));
    w.seed(&[("a", &old, &body("a", 10))]);
    w.fake.script("create", [lost_create(arrived)]);
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Replace)]);
    assert_eq!(outcomes(&report), vec![("a", TaskOutcome::InDoubt)]);
    let state = w.state();
    assert_eq!(state.tasks["a"].task_id, old);
    assert!(state.in_doubt.contains_key("a"));
    w.fake.take_calls();
    (w, old)
}

#[tokio::test]
async fn a_replace_whose_create_arrived_settles_leaving_out_the_recorded_task() {
    let (w, old) = replace_in_doubt(true).await;
    let made = w.fake.ids().into_iter().find(|id| *id != old).unwrap();
    let report = w.apply().await;
    // The search finds the recorded task and the new one: only the new one is judged.
    assert_eq!(w.fake.calls(), vec!["SEARCH a"], "nothing sent again");
    assert_eq!(
        actions(&report.doc),
        vec![("a", Action::Unchanged), ("a", Action::Superseded)]
    );
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_eq!(state.tasks["a"].task_id, made);
    assert_eq!(state.tasks["a"].superseded[0].task_id, old);
}

#[tokio::test]
async fn a_replace_whose_create_never_arrived_is_sent_again() {
    let (w, old) = replace_in_doubt(false).await;
    assert_eq!(w.fake.ids(), vec![old.clone()]);
    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["SEARCH a", "POST create a"]);
    assert_eq!(outcomes(&report), vec![("a", TaskOutcome::Created)]);
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_ne!(state.tasks["a"].task_id, old);
    assert_eq!(state.tasks["a"].superseded[0].task_id, old);
}

#[tokio::test]
async fn recreate_in_doubt_with_prune_settles_a_replace_by_search_and_leaks_nothing() {
    for arrived in [true, false] {
        let (mut w, old) = replace_in_doubt(arrived).await;
        w.policy.recreate_in_doubt = true;
        w.policy.prune = true;
        w.apply().await;
        let calls = w.fake.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("POST create"))
                .count(),
            usize::from(!arrived),
            "created again only when it never arrived: {calls:?}"
        );
        // A replace made in this run leaves its superseded task to the next one.
        w.apply().await;
        let state = w.state();
        assert!(state.in_doubt.is_empty());
        let ids = w.fake.ids();
        assert_eq!(ids.len(), 1, "one task left on the service: {ids:?}");
        assert_eq!(state.tasks["a"].task_id, ids[0]);
        assert_ne!(ids[0], old);
        assert!(state.tasks["a"].superseded.is_empty());
    }
}

#[tokio::test]
async fn an_unrecorded_task_of_another_content_names_only_unrecorded_tasks() {
    // Someone else made a task of the name with other content meanwhile: still in
    // doubt, but the message names that task only, never the recorded one.
    let (w, old) = replace_in_doubt(false).await;
    let stranger = w.fake.insert(body("a", 99));
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::InDoubt)]);
    let mut state = w.state();
    let settled = settle::settle(
        &mut state,
        &w.loaded.manifests,
        w.fake.as_ref(),
        &Key::default(),
        false,
    )
    .await
    .unwrap()
    .unwrap();
    match settled.as_slice() {
        [Settled::Unresolved { why, .. }] => {
            assert!(why.contains(&stranger), "{why}");
            assert!(!why.contains(&old), "the recorded task is not named: {why}");
        }
        other => panic!("{other:?}"),
    }
}

/// `a` (body 10) created into an empty state, the answer lost.
async fn create_in_doubt(arrived: bool) -> World {
    let w = World::new(&["a"]);
    w.fake.script("create", [lost_create(arrived)]);
    assert_eq!(
        outcomes(&w.apply().await),
        vec![("a", TaskOutcome::InDoubt)]
    );
    assert!(w.state().in_doubt.contains_key("a"));
    w.fake.take_calls();
    w
}

#[tokio::test]
async fn an_in_doubt_create_that_never_arrived_whose_manifest_changed_is_created_as_it_now_is() {
    let mut w = create_in_doubt(false).await;
    w.loaded.manifests = vec![manifest(&body("a", 20))];
    let report = w.apply().await;
    assert_eq!(w.fake.calls(), vec!["SEARCH a", "POST create a"]);
    assert_eq!(outcomes(&report), vec![("a", TaskOutcome::Created)]);
    let ids = w.fake.ids();
    assert_eq!(ids.len(), 1);
    assert_eq!(w.fake.body(&ids[0]).unwrap(), body("a", 20));
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_eq!(state.tasks["a"].hash, w.loaded.manifests[0].hash);
}

#[tokio::test]
async fn an_in_doubt_create_that_arrived_whose_manifest_changed_is_adopted_then_updated() {
    let mut w = create_in_doubt(true).await;
    let made = w.fake.ids();
    w.loaded.manifests = vec![manifest(&body("a", 20))];
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Update)]);
    assert_eq!(
        w.fake.calls(),
        vec!["SEARCH a".to_string(), format!("PUT {}", made[0])]
    );
    assert_eq!(w.fake.ids(), made, "no second task");
    assert_eq!(w.fake.body(&made[0]).unwrap(), body("a", 20));
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_eq!(state.tasks["a"].task_id, made[0]);
    assert_eq!(state.tasks["a"].hash, w.loaded.manifests[0].hash);
}

#[tokio::test]
async fn an_in_doubt_create_whose_manifest_is_gone_is_recorded_and_pruned() {
    let mut w = create_in_doubt(true).await;
    let made = w.fake.ids();
    w.loaded.manifests = Vec::new();
    w.policy.allow_empty = true;
    // Without --prune: recorded, an orphan.
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Orphan)]);
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_eq!(state.tasks["a"].task_id, made[0]);
    // With it: deleted.
    w.policy.prune = true;
    w.policy.force_prune = true;
    let report = w.apply().await;
    assert_eq!(outcomes(&report), vec![("a", TaskOutcome::Deleted)]);
    assert!(w.fake.ids().is_empty());
    assert!(w.state().tasks.is_empty());
}

#[tokio::test]
async fn an_in_doubt_create_that_never_arrived_whose_manifest_is_gone_is_forgotten() {
    let mut w = create_in_doubt(false).await;
    w.loaded.manifests = Vec::new();
    w.policy.allow_empty = true;
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![]);
    assert_eq!(w.fake.calls(), vec!["SEARCH a"]);
    let state = w.state();
    assert!(state.in_doubt.is_empty() && state.tasks.is_empty());
}

#[tokio::test]
async fn recreate_in_doubt_records_extra_copies_with_the_sent_content_as_superseded() {
    // Two lost answers made two copies; without the flag it stays in doubt, with it one
    // is recorded and the other is superseded, deleted with --prune: nothing leaks.
    let mut w = create_in_doubt(true).await;
    let second = w.fake.insert(body("a", 10));
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::InDoubt)]);
    w.policy.recreate_in_doubt = true;
    let report = w.apply().await;
    assert_eq!(w.fake.creates(), 0, "never created again");
    assert_eq!(
        actions(&report.doc),
        vec![("a", Action::Unchanged), ("a", Action::Superseded)]
    );
    let state = w.state();
    assert!(state.in_doubt.is_empty());
    assert_eq!(state.tasks["a"].superseded[0].task_id, second);
    w.policy.prune = true;
    w.apply().await;
    assert_eq!(w.fake.ids(), vec![state.tasks["a"].task_id.clone()]);
}

#[tokio::test]
async fn a_schedule_whose_run_failed_after_the_put_is_started_by_the_next_apply() {
    let w = updating(World::with(vec![cron_body("a", 20)]));
    let id = w.fake.insert(cron_body("a", 10));
    w.seed(&[("a", &id, &cron_body("a", 10))]);
    // The stop goes through; the run is refused (as a fence, or retries spent, end it).
    w.fake.script(
        "action",
        [
            Scripted::Act,
            Scripted::Answer(Outcome::Failed(failure(400, Some("DLG.9999")))),
        ],
    );
    let report = w.apply().await;
    let r = result(&report, "a");
    assert_ne!(r.outcome, TaskOutcome::Updated, "{r:?}");
    assert!(!w.fake.scheduled(&id), "left paused by the PUT");
    assert_eq!(w.fake.body(&id).unwrap(), cron_body("a", 20));
    w.fake.take_calls();
    // The state says what the task is: the new content, stopped.
    assert_eq!(
        w.state().tasks["a"].hash,
        manifest(&cron_with("a", 20, 0)).hash
    );
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Update)]);
    let previous: Value =
        serde_json::from_str(report.doc.tasks[0].previous_body.as_ref().unwrap().get()).unwrap();
    assert_eq!(
        previous,
        cron_with("a", 20, 0),
        "the plan shows enabled 0 -> 1"
    );
    assert_eq!(
        w.fake.take_calls(),
        vec![format!("PUT {id}"), format!("POST run {id}")]
    );
    assert_eq!(result(&report, "a").outcome, TaskOutcome::Updated);
    assert!(w.fake.scheduled(&id));
    let state = w.state();
    assert_eq!(state.tasks["a"].hash, w.loaded.manifests[0].hash);
    // Converged: nothing to send, nor drift to read.
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Unchanged)]);
    assert!(w.fake.take_calls().is_empty());
    let mut w = w;
    w.policy.refresh = true;
    let report = w.apply().await;
    assert_eq!(actions(&report.doc), vec![("a", Action::Unchanged)]);
    assert!(report.observed.notes.is_empty());
}

#[tokio::test]
async fn between_the_put_and_the_run_the_journal_says_the_schedule_is_stopped() {
    // A run killed (or fenced off) after the PUT leaves this journal: the new content
    // with `enabled: 0`, then, once `run` answered, the manifest's.
    let fake = Arc::new(FakeApi::default());
    let id = fake.insert(cron_body("a", 10));
    let store = MemoryStore::new();
    let mut state = State::new();
    state
        .tasks
        .insert("a".into(), record(&id, &cron_body("a", 10)));
    store.persist(&mut state).unwrap();
    let manifests = vec![manifest(&cron_body("a", 20))];
    let opts = PlanOptions {
        on_change: OnChange::Update,
        ..PlanOptions::default()
    };
    let plan = taskform::plan::plan(&manifests, &state, opts);
    let journal: Arc<dyn Journal> = Arc::from(store.open_journal(&state).unwrap());
    let (_tx, cancel) = watch::channel(false);
    let options = ApplyOptions::default();
    let sending = Sending {
        options: &options,
        cancel,
        progress: Arc::new(Silent),
    };
    let applied =
        applier::execute(&plan, &manifests, &state, fake.clone(), journal, &sending).await;
    assert_eq!(applied.results[0].outcome, TaskOutcome::Updated);
    let updated: Vec<(String, Value)> = store
        .journal()
        .into_iter()
        .filter_map(|r| match r {
            Record::Updated { hash, body, .. } => {
                Some((hash, serde_json::from_str(body.unwrap().get()).unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        updated,
        vec![
            (manifest(&cron_with("a", 20, 0)).hash, cron_with("a", 20, 0)),
            (manifests[0].hash.clone(), cron_body("a", 20)),
        ]
    );
    // Folded up to the first record only (a kill -9 before the run's answer), the next
    // plan is the update that starts it; folded twice, the same.
    let first = store.journal()[1..2].to_vec();
    let mut killed = state.clone();
    taskform::state::journal::replay(&mut killed, &first);
    taskform::state::journal::replay(&mut killed, &first);
    assert_eq!(killed.tasks["a"].hash, updated[0].0);
    let p = taskform::plan::plan(&manifests, &killed, opts);
    assert_eq!(p.tasks[0].action, Action::Update);
    // All of it: done, and folding it again changes nothing.
    taskform::state::journal::replay(&mut state, &applied.records);
    taskform::state::journal::replay(&mut state, &applied.records);
    assert_eq!(state.tasks["a"].hash, manifests[0].hash);
    let p = taskform::plan::plan(&manifests, &state, opts);
    assert_eq!(p.tasks[0].action, Action::Unchanged);
}
