//! `taskform watch` against the emulator: one reconcile per burst, invalid manifests
//! block everything until fixed, renames send nothing, SIGTERM leaves a clean state.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEBOUNCE_MS: u64 = 300;

struct Watch {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    fn start(p: &Project, emu: &Emu, extra: &[&str]) -> Watch {
        Watch::start_debounced(p, emu, extra, DEBOUNCE_MS)
    }

    fn start_debounced(p: &Project, emu: &Emu, extra: &[&str], debounce_ms: u64) -> Watch {
        let debounce = debounce_ms.to_string();
        let mut args = vec![
            "watch",
            "tasks",
            "--endpoint",
            &emu.url,
            "--log-format",
            "json",
            "--debounce-ms",
            &debounce,
        ];
        args.extend_from_slice(extra);
        let mut c = p.cmd(&args);
        c.env("TASKFORM_AUTH_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"message": line}));
                sink.lock().unwrap().push(v);
            }
        });
        let w = Watch { child, logs };
        assert!(
            w.wait_for(Duration::from_secs(10), |l| l
                .iter()
                .any(|v| (v["message"] == "reconciled"
                    || v["message"] == "planned (plan only)")
                    && v["trigger"] == "start")),
            "no first reconcile: {:?}",
            w.logs()
        );
        w
    }

    fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    fn reconciles(&self, trigger: &str) -> usize {
        self.logs()
            .iter()
            .filter(|v| v["message"] == "reconciled" && v["trigger"] == trigger)
            .count()
    }

    fn wait_for(&self, timeout: Duration, f: impl Fn(&[Value]) -> bool) -> bool {
        wait_until(timeout, || f(&self.logs()))
    }

    fn terminate(mut self) -> Option<i32> {
        sigterm(&self.child);
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_new_manifest_is_created_once_within_debounce_plus_a_second() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    let w = Watch::start(&p, &emu, &[]);
    assert_eq!(emu.creates(), 1);
    let written = Instant::now();
    p.task("b");
    assert!(
        wait_until(Duration::from_millis(DEBOUNCE_MS + 1000), || emu.creates()
            == 2),
        "no create within debounce + 1 s"
    );
    let latency = written.elapsed();
    std::thread::sleep(Duration::from_millis(DEBOUNCE_MS + 300));
    assert_eq!(emu.creates(), 2, "exactly one create");
    assert!(
        latency < Duration::from_millis(DEBOUNCE_MS + 1000),
        "{latency:?}"
    );
    assert_eq!(w.terminate(), Some(0));
    assert_eq!(p.state()["tasks"].as_object().unwrap().len(), 2);
}

#[test]
fn a_burst_of_200_writes_is_one_reconcile() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let w = Watch::start(&p, &emu, &["--max-rate", "0", "--concurrency", "16"]);
    for i in 0..200 {
        p.write(
            &format!("tasks/burst/t{i:03}.yaml"),
            &manifest(&format!("t{i:03}"), 10),
        );
    }
    assert!(
        w.wait_for(Duration::from_secs(15), |l| l
            .iter()
            .any(|v| v["message"] == "reconciled" && v["created"] == 200)),
        "{:?}",
        w.logs().last()
    );
    std::thread::sleep(Duration::from_millis(DEBOUNCE_MS + 300));
    assert_eq!(w.reconciles("change"), 1, "one reconcile for the burst");
    assert_eq!(emu.creates(), 200);
}

#[test]
fn a_broken_manifest_blocks_everything_until_fixed() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let w = Watch::start(&p, &emu, &[]);
    p.write("tasks/good.yaml", &manifest("good", 10));
    p.write("tasks/bad.yaml", "name: bad\ndata_source_type: DLI\nschedule_config:\n  max_time_out: soon\ntask_config: {}\n");
    assert!(w.wait_for(Duration::from_secs(5), |l| l.iter().any(
        |v| v["message"] == "invalid manifests: nothing is applied until they are fixed"
    )));
    let logs = w.logs();
    let err = logs
        .iter()
        .find(|v| v["file"] == "tasks/bad.yaml")
        .expect("the problem is logged with its file");
    assert_eq!(err["line"], 4);
    assert!(err["message"].as_str().unwrap().contains("max_time_out"));
    assert_eq!(emu.creates(), 0, "all or nothing: not even the good task");
    p.write("tasks/bad.yaml", &manifest("bad", 10));
    assert!(wait_until(Duration::from_secs(5), || emu.creates() == 2));
}

#[test]
fn renaming_a_file_with_unchanged_content_sends_nothing() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    let w = Watch::start(&p, &emu, &[]);
    std::fs::rename(p.path("tasks/a.yaml"), p.path("tasks/renamed.yaml")).unwrap();
    assert!(w.wait_for(Duration::from_secs(5), |l| {
        l.iter()
            .any(|v| v["message"] == "reconciled" && v["trigger"] == "change")
    }));
    assert_eq!(emu.creates(), 1);
}

#[test]
fn sigterm_leaves_a_consistent_state_and_no_lock_and_an_apply_gets_its_turn() {
    let emu = Emu::start(&["--latency-ms", "200", "--rate-limit", "0"]);
    let p = Project::new();
    p.task("first");
    let w = Watch::start(&p, &emu, &["--max-rate", "0"]);
    // The watcher holds the state lock only while it reconciles: an apply waits for
    // that reconcile at most, and has nothing left to do.
    p.apply(&emu.url, &["--lock-timeout", "30"])
        .succeeds()
        .stdout_has("No changes");
    assert_eq!(emu.creates(), 1, "no duplicate");
    p.tasks(10);
    assert!(wait_until(Duration::from_secs(5), || emu.creates() >= 3));
    assert_eq!(w.terminate(), Some(0));
    let state = p.state();
    let recorded = state["tasks"].as_object().unwrap().len();
    assert_eq!(
        recorded,
        emu.tasks().len(),
        "every task on the server is recorded"
    );
    assert!(state.get("in_doubt").is_none());
    assert!(!p.path("state/taskform.json.journal").exists());
    // The lock is free and the rest is applied.
    p.apply(&emu.url, &[]).succeeds();
}

#[test]
fn plan_only_never_applies_and_a_missing_folder_is_a_clear_error() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    let w = Watch::start(&p, &emu, &["--plan-only"]);
    assert!(
        w.logs()
            .iter()
            .any(|v| v["message"] == "planned" && v["task"] == "a" && v["action"] == "create")
    );
    p.task("b");
    assert!(w.wait_for(Duration::from_secs(5), |l| {
        l.iter()
            .filter(|v| v["message"] == "planned (plan only)")
            .count()
            >= 2
    }));
    assert_eq!(emu.creates(), 0);
    p.run(&["watch", "nope"], &[("TASKFORM_AUTH_TOKEN", TOKEN)])
        .fails_with(1)
        .stderr_has("cannot watch nope: not a folder");
}

#[test]
fn a_watcher_settles_in_doubt_creates_by_search() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let data = data.to_str().unwrap();
    let p = Project::new();
    p.task("a");
    {
        let emu = Emu::start(&["--data", data, "--drop-rate", "1"]);
        let w = Watch::start(&p, &emu, &[]);
        assert_eq!(w.terminate(), Some(0));
        assert_eq!(p.plan_json()["summary"]["in_doubt"], 1);
    }
    let emu = Emu::start(&["--data", data]);
    let w = Watch::start(&p, &emu, &[]);
    assert!(
        w.logs().iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.contains("found on the server with the content sent"))),
        "{:?}",
        w.logs()
    );
    assert_eq!(w.terminate(), Some(0));
    assert_eq!(emu.creates(), 0, "adopted, not created again");
    assert_eq!(p.plan_json()["summary"]["unchanged"], 1);
}

#[test]
fn a_watcher_updates_in_place_prunes_and_corrects_drift() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    let w = Watch::start(
        &p,
        &emu,
        &[
            "--on-change",
            "update",
            "--prune",
            "--refresh",
            "--interval",
            "1",
        ],
    );
    assert_eq!(emu.tasks().len(), 2);
    let id = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    p.write("tasks/a.yaml", &manifest("a", 20));
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    assert!(
        w.wait_for(Duration::from_secs(10), |l| l
            .iter()
            .any(|v| v["message"] == "reconciled"
                && v["updated"] == 1
                && v["deleted"] == 1)),
        "{:?}",
        w.logs()
    );
    let tasks = emu.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], id.as_str(), "updated in place");
    assert_eq!(tasks[0]["schedule_config"]["max_time_out"], 20);
    // Changed in the console: the next interval puts the manifest's content back.
    let mut changed = tasks[0].clone();
    changed["schedule_config"]["max_time_out"] = serde_json::json!(99);
    assert_eq!(
        emu.call("PUT", &format!("/{id}"), &changed.to_string()).0,
        200
    );
    assert!(
        wait_until(
            Duration::from_secs(10),
            || emu.tasks()[0]["schedule_config"]["max_time_out"] == 20
        ),
        "drift not corrected: {:?}",
        w.logs()
    );
    assert_eq!(w.terminate(), Some(0));
}

/// After a change the watcher reloads from its file events alone: only the paths they
/// name are looked at (the folder is not walked, the other files not even checked),
/// and a new folder is walked. What is sent is what a full reload would send.
#[test]
fn a_change_reloads_only_the_paths_the_file_events_name() {
    let emu = Emu::start(&[]);
    let mut p = Project::new();
    p.env.push(("RUST_LOG".into(), "taskform=debug".into()));
    p.tasks(40);
    let w = Watch::start(&p, &emu, &[]);
    assert_eq!(emu.creates(), 40);
    let loads = || -> Vec<Value> {
        w.logs()
            .into_iter()
            .filter(|v| v["message"] == "manifests loaded" && v["trigger"] == "change")
            .collect()
    };
    // Each step's writes may land in one burst or two: wait for its effect.
    let settle = |n: usize| {
        assert!(
            w.wait_for(Duration::from_secs(10), |_| w.reconciles("change") >= n),
            "no change reconcile {n}: {:?}",
            w.logs()
        );
    };

    p.task("new1");
    settle(1);
    assert_eq!(emu.creates(), 41);
    let first = &loads()[0];
    assert_eq!(first["walked"], false, "{first}");
    assert_eq!(first["parsed"], 1, "{first}");

    std::fs::remove_file(p.path("tasks/t0001.yaml")).unwrap();
    std::fs::rename(p.path("tasks/t0002.yaml"), p.path("tasks/renamed.yaml")).unwrap();
    p.write("tasks/t0003.yaml", &manifest("t0003", 11));
    // t0001 is no longer declared (an orphan: no --prune); t0003 changed (updated in
    // place, or replaced: one more create); the rename changed nothing.
    let changes = || -> Vec<Value> {
        w.logs()
            .into_iter()
            .filter(|v| v["message"] == "reconciled" && v["trigger"] == "change")
            .collect()
    };
    let sent = |c: &[Value]| -> u64 {
        c.iter()
            .map(|d| d["created"].as_u64().unwrap_or(0) + d["updated"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        w.wait_for(Duration::from_secs(10), |_| {
            let c = changes();
            sent(&c) == 2 && c.last().is_some_and(|d| d["orphan"] == 1)
        }),
        "{:?}",
        w.logs()
    );
    assert!(
        loads().iter().all(|l| l["walked"] == false),
        "{:?}",
        loads()
    );

    let before = (loads().len(), emu.creates());
    p.write("tasks/sub/deep.yaml", &manifest("deep", 10));
    settle(before.0 + 1);
    assert!(
        loads()[before.0..].iter().any(|l| l["walked"] == true),
        "a new folder is walked: {:?}",
        loads()
    );
    assert!(wait_until(Duration::from_secs(5), || emu.creates() == before.1 + 1));
    assert_eq!(w.terminate(), Some(0));
    let state = p.state();
    let tasks = state["tasks"].as_object().unwrap();
    for name in ["deep", "new1", "t0002", "t0003"] {
        assert!(tasks.contains_key(name), "{name}: {tasks:?}");
    }
}

/// The reconcile is prepared shortly after the last event, while the quiet runs; an
/// event after that drops it and the next preparation (or the reconcile) sees it.
#[test]
fn a_change_after_the_reconcile_was_prepared_is_applied_with_it() {
    let emu = Emu::start(&[]);
    let mut p = Project::new();
    p.env.push(("RUST_LOG".into(), "taskform=debug".into()));
    p.task("a");
    // A long quiet, so that c surely comes after b's preparation and before its end.
    let w = Watch::start_debounced(&p, &emu, &[], 3000);
    assert_eq!(emu.creates(), 1);
    let plans = || {
        w.logs()
            .iter()
            .filter(|v| v["message"] == "plan made")
            .count()
    };
    let before = plans();
    p.task("b");
    assert!(
        w.wait_for(Duration::from_secs(2), |_| plans() > before),
        "b's reconcile was not prepared during the quiet: {:?}",
        w.logs()
    );
    assert_eq!(w.reconciles("change"), 0);
    p.task("c");
    assert!(
        w.wait_for(Duration::from_secs(15), |_| w.reconciles("change") >= 1),
        "{:?}",
        w.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.reconciles("change"), 1, "one reconcile: {:?}", w.logs());
    assert_eq!(
        emu.creates(),
        3,
        "b's prepared plan was dropped for one with c"
    );
    assert!(
        w.logs()
            .iter()
            .any(|v| v["message"] == "prepared during the wait"),
        "{:?}",
        w.logs()
    );
    assert_eq!(w.terminate(), Some(0));
    assert_eq!(p.state()["tasks"].as_object().unwrap().len(), 3);
}

/// SIGTERM during the quiet stops at once: nothing prepared is applied.
#[test]
fn sigterm_during_the_quiet_applies_nothing() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    let w = Watch::start_debounced(&p, &emu, &[], 5000);
    p.task("b");
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    assert_eq!(w.terminate(), Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(emu.creates(), 1, "b was not applied");
}
