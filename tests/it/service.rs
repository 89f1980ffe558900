//! `taskform watch` as a service: probes, status and metrics on `--listen`, and a
//! second watcher standing by until the first one's lock is released.

use crate::common::repo::*;
use crate::common::*;
use serde_json::Value;
use std::process::Child;
use std::time::Duration;

fn watch(p: &Project, emu: &Emu, port: u16) -> Child {
    p.spawn(&[
        "watch",
        "tasks",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "0",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
}

#[test]
fn probes_status_and_metrics_follow_the_reconciles() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(3);
    let port = free_port();
    let mut w = watch(&p, &emu, port);
    assert!(wait_until(
        Duration::from_secs(20),
        || status(port)["last_reconcile"]["result"] == "success"
    ));
    assert_eq!(get(port, "/healthz").unwrap().0, 200);
    assert_eq!(get(port, "/readyz").unwrap().0, 200);
    let s = status(port);
    assert_eq!(s["role"], "leader");
    assert_eq!(s["last_reconcile"]["sent"]["created"], 3);
    let m = metrics(port);
    assert_eq!(
        sample(&m, "taskform_reconciles_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "taskform_requests_total",
            &[("operation", "create"), ("status", "200")]
        ),
        Some(3.0)
    );
    // What is pending after the reconcile: the three creates were applied (issue
    // #29.15: the last plan's counts stayed and an alert on them fired falsely).
    assert_eq!(
        sample(&m, "taskform_tasks", &[("action", "create")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "taskform_tasks", &[("action", "unchanged")]),
        Some(3.0)
    );
    assert_eq!(sample(&m, "taskform_leader", &[]), Some(1.0));
    assert!(sample(&m, "taskform_reconcile_duration_seconds_count", &[]).is_some());

    // An invalid manifest: nothing applied, not ready, the error on /status.
    p.write(
        "tasks/bad.yaml",
        "name: bad\nschedule_config: {schedule_type: cron}\n",
    );
    assert!(wait_until(Duration::from_secs(20), || get(port, "/readyz")
        .map(|r| r.0)
        == Some(503)));
    let s = status(port);
    assert_eq!(s["last_reconcile"]["result"], "failure");
    assert!(
        s["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("bad.yaml:"),
        "{s}"
    );
    let m = metrics(port);
    assert_eq!(
        sample(&m, "taskform_reconciles_total", &[("result", "failure")]),
        Some(1.0)
    );
    // Fixed: applied, ready again.
    std::fs::remove_file(p.path("tasks/bad.yaml")).unwrap();
    p.task("good");
    assert!(wait_until(Duration::from_secs(20), || get(port, "/readyz")
        .map(|r| r.0)
        == Some(200)));
    assert_eq!(emu.tasks().len(), 4);
    assert_eq!(get(port, "/nope").unwrap().0, 404);
    sigterm(&w);
    assert_eq!(w.wait().unwrap().code(), Some(0));
}

#[test]
fn a_second_watcher_stands_by_and_takes_over_without_a_duplicate() {
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "20"]);
    let p = Project::new();
    p.tasks(5);
    let (one, two) = (free_port(), free_port());
    let mut leader = watch(&p, &emu, one);
    assert!(wait_until(Duration::from_secs(20), || status(one)["role"] == "leader"));
    let mut standby = watch(&p, &emu, two);
    assert!(wait_until(Duration::from_secs(20), || status(two)["role"] == "standby"));
    let s = status(two);
    assert!(
        s["lock_holder"]
            .as_str()
            .unwrap()
            .contains(&format!("taskform watch (pid {}", leader.id())),
        "{s}"
    );
    assert_eq!(
        get(two, "/readyz").unwrap().0,
        200,
        "a healthy standby is ready"
    );
    assert_eq!(sample(&metrics(two), "taskform_leader", &[]), Some(0.0));
    // A burst of new manifests, and the leader killed in the middle of it.
    p.tasks(60);
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 10));
    let _ = leader.kill();
    let _ = leader.wait();
    assert!(wait_until(Duration::from_secs(20), || status(two)["role"] == "leader"));
    assert!(wait_until(Duration::from_secs(30), || {
        status(two)["last_reconcile"]["result"] == "success" && emu.tasks().len() == 60
    }));
    assert_eq!(sample(&metrics(two), "taskform_leader", &[]), Some(1.0));
    sigterm(&standby);
    assert_eq!(standby.wait().unwrap().code(), Some(0));
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["unchanged"], 60);
}

#[test]
fn two_watchers_on_a_postgres_state_one_leads_and_the_other_takes_over() {
    let Some(pg) = crate::common::pg::server(module_path!()) else {
        return;
    };
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "20"]);
    let (p, _) = pg.project("watchers");
    p.tasks(40);
    let (one, two) = (free_port(), free_port());
    let mut a = watch(&p, &emu, one);
    let mut b = watch(&p, &emu, two);
    assert!(wait_until(Duration::from_secs(20), || {
        let roles = [status(one)["role"].clone(), status(two)["role"].clone()];
        roles.contains(&Value::from("leader")) && roles.contains(&Value::from("standby"))
    }));
    let (mut leader, mut other, other_port) = match status(one)["role"] == "leader" {
        true => (a, b, two),
        false => {
            std::mem::swap(&mut a, &mut b);
            (a, b, one)
        }
    };
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 5));
    let _ = leader.kill(); // kill -9 mid-burst: its connection closes, the lock goes
    let _ = leader.wait();
    assert!(wait_until(
        Duration::from_secs(20),
        || status(other_port)["role"] == "leader"
    ));
    // The new leader leads at once and its first reconcile waits out the killed
    // holder's lease and its longest request (the state lock is taken per reconcile):
    // up to 15 + 30 s.
    assert!(wait_until(Duration::from_secs(90), || emu.tasks().len()
        == 40
        && status(other_port)["last_reconcile"]["result"] == "success"));
    sigterm(&other);
    let _ = other.wait();
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["unchanged"], 40);
}
