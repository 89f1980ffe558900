//! Fault injection against the emulator: 500 and 429 storms, connections dropped after
//! the create, the server killed and restarted mid-apply, the client killed at 20
//! seeded moments, a full disk, and concurrent appliers. After each, the invariants of
//! `crate::common::check_invariants` hold.

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn storms_of_500s_and_429s_end_with_every_task_created_once() {
    for faults in [["--fail-rate", "0.4"], ["--throttle-rate", "0.4"]] {
        let emu = Emu::start(&[faults[0], faults[1], "--seed", "7", "--rate-limit", "0"]);
        let p = Project::new();
        p.tasks(30);
        let out = p.apply(&emu.url, &["--max-attempts", "12", "--max-rate", "0"]);
        assert_eq!(out.code, Some(0), "{faults:?}: {}", out.stderr);
        let plan = check_invariants(&p, &emu);
        assert_eq!(plan["summary"]["unchanged"], 30, "{faults:?}");
        assert!(
            emu.requests().iter().any(|r| r["status"] != 200),
            "{faults:?}: the storm happened"
        );
    }
}

#[test]
fn dropped_connections_leave_tasks_in_doubt_never_duplicated() {
    let emu = Emu::start(&["--drop-rate", "0.3", "--seed", "11", "--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(30);
    // Drops make tasks in doubt.
    p.apply(&emu.url, &["--max-rate", "0"]).fails_with(1);
    let plan = check_invariants(&p, &emu);
    let dropped = emu
        .requests()
        .iter()
        .filter(|r| r["dropped"] == true)
        .count();
    assert!(dropped > 0);
    assert_eq!(
        plan["summary"]["in_doubt"].as_u64().unwrap() as usize,
        dropped
    );
    // Another apply sends nothing for them.
    let before = emu.creates();
    p.apply(&emu.url, &[]);
    assert_eq!(emu.creates(), before);
    check_invariants(&p, &emu);
}

#[test]
fn the_server_killed_and_restarted_mid_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let data_arg = data.to_str().unwrap().to_string();
    let mut emu = Emu::start(&[
        "--data",
        &data_arg,
        "--latency-ms",
        "40",
        "--rate-limit",
        "0",
    ]);

    let p = Project::new();
    p.tasks(60);
    let child = p.spawn(&[
        "apply",
        "--yes",
        "tasks",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "0",
        "--concurrency",
        "4",
        "--max-attempts",
        "4",
    ]);
    assert!(wait_until(Duration::from_secs(10), || emu.creates() >= 10));
    emu.kill();
    std::thread::sleep(Duration::from_millis(300));
    let emu = Emu::start(&["--data", &data_arg, "--rate-limit", "0"]);
    // Restarted on a new port: the running apply sees the old one refuse connections.

    // The rest failed or is in doubt.
    Output::from(child.wait_with_output().unwrap()).fails_with(1);
    let plan = check_invariants(&p, &emu);
    assert!(plan["summary"]["unchanged"].as_u64().unwrap() >= 10);
    // Finishing against the restarted server creates the rest, once.
    let out = p.apply(&emu.url, &["--max-rate", "0"]);
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["create"], 0, "{}", out.stderr);
}

/// 20 seeded kill -9 moments during one large apply; the invariants hold after each
/// and a final apply completes the job.
#[test]
fn kill_9_at_20_seeded_moments() {
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "5"]);
    let p = Project::new();
    p.tasks(300);
    let mut rng = fastrand::Rng::with_seed(2026);
    for run in 0..20 {
        let delay = Duration::from_millis(rng.u64(20..400));
        let mut child = p.spawn_apply(&emu.url, &["--max-rate", "0", "--concurrency", "8"]);
        let start = Instant::now();
        while start.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        let plan = check_invariants(&p, &emu);
        if plan["summary"]["create"] == 0 {
            eprintln!("all tasks settled after {} kills", run + 1);
        }
    }
    p.apply(&emu.url, &["--max-rate", "0"]);
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["create"], 0);
    let settled = plan["summary"]["unchanged"].as_u64().unwrap()
        + plan["summary"]["in_doubt"].as_u64().unwrap();
    assert_eq!(settled, 300);
}

/// A state folder that cannot grow (a 4 KB file-size limit): apply fails loudly, and
/// every task the server created is either recorded or named in the error.
#[cfg(unix)]
#[test]
fn a_full_disk_loses_no_task_id() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(12);
    let script = format!(
        "trap '' XFSZ; ulimit -f 8; exec {} apply --yes tasks --endpoint {} --max-rate 0 --concurrency 2",
        bin().display(),
        emu.url
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(p.dir.path())
        .env_clear()
        .env("TASKFORM_AUTH_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = Output::from(out);
    out.fails_with(1);
    let stderr = &out.stderr;
    assert!(
        stderr.contains("File too large") || stderr.contains("cannot write"),
        "{stderr}"
    );
    // Whatever reached the disk is readable; every created task is recorded or named.
    let plan = p.plan_json();
    for t in emu.tasks() {
        let name = t["name"].as_str().unwrap();
        let id = t["id"].as_str().unwrap();
        let recorded = plan["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == name && (x["task_id"] == id || x["action"] == "in_doubt"));
        assert!(
            recorded || stderr.contains(&format!("created {name} as task {id}")),
            "{name} ({id}) is neither recorded nor reported:\n{stderr}"
        );
    }
}

#[test]
fn two_applies_and_a_watcher_at_once_one_at_a_time_never_a_duplicate() {
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "300"]);
    let p = Project::new();
    p.tasks(5);
    let a = p.spawn(&[
        "apply",
        "--yes",
        "tasks",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "0",
    ]);
    let b = p.spawn(&[
        "apply",
        "--yes",
        "tasks",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "0",
    ]);
    let w = p.spawn(&["watch", "tasks", "--endpoint", &emu.url, "--max-rate", "0"]);
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&w);
    let outs: Vec<_> = [a, b, w]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    // One apply (or the watcher) takes the lock first; the other apply is refused
    // at once; a watcher that found the lock taken stands by and reconciles after it
    // (finding nothing to do), or holds it first and both applies are refused.
    let err = |i: usize| String::from_utf8_lossy(&outs[i].stderr).to_string();
    let refused = (0..2)
        .filter(|&i| err(i).contains("is locked by taskform"))
        .count();
    assert!(refused >= 1, "{:?}", (err(0), err(1), err(2)));
    assert_eq!(outs[2].status.code(), Some(0), "{}", err(2));
    if refused == 1 {
        assert!(
            err(2).contains("unchanged=5") || err(2).contains("standing by"),
            "{}",
            err(2)
        );
    }
    assert_eq!(emu.creates(), 5);
    check_invariants(&p, &emu);
}

/// Issue #25: answers lost after the service committed (the emulator drops the
/// connection after the create) to a replace's create (`on_change: recreate`) and to a
/// create whose manifest is then edited. Before, the first stayed in doubt forever (the
/// search found the replaced task too) and the second too (no manifest with the
/// intent's hash); `--recreate-in-doubt --prune` then left three tasks. Now each settles
/// by search, nothing is created twice and `--prune` leaves exactly the recorded tasks.
#[test]
fn lost_answers_to_a_replace_and_to_an_edited_create_settle_without_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let data = data.to_str().unwrap();
    let recreate = ["--on-change", "recreate"];
    let mut emu = Emu::start(&["--data", data, "--rate-limit", "0"]);
    let p = Project::new();
    p.write("tasks/a.yaml", &manifest("a", 10));
    p.apply(&emu.url, &recreate).succeeds();
    let first_a = p.state()["tasks"]["a"]["task_id"].clone();
    emu.kill();

    let mut lossy = Emu::start(&["--data", data, "--rate-limit", "0", "--drop-rate", "1"]);
    p.write("tasks/a.yaml", &manifest("a", 20));
    p.apply(&lossy.url, &recreate)
        .fails_with(1)
        .stderr_has("in doubt: a");
    assert!(p.state()["in_doubt"].get("a").is_some());
    // The replace in doubt settles (its search finds the replaced task too); b's create
    // is lost in turn.
    p.write("tasks/b.yaml", &manifest("b", 10));
    p.apply(&lossy.url, &recreate)
        .fails_with(1)
        .stderr_has("in doubt: b");
    let state = p.state();
    assert!(state["in_doubt"].get("a").is_none(), "{state}");
    assert_eq!(state["tasks"]["a"]["superseded"][0]["task_id"], first_a);
    lossy.kill();

    // b's manifest is edited before the next apply (a cancelled CI job, a new commit).
    p.write("tasks/b.yaml", &manifest("b", 30));
    let emu = Emu::start(&["--data", data, "--rate-limit", "0"]);
    assert_eq!(emu.tasks().len(), 3, "both lost creates were committed");
    let prune = ["--on-change", "recreate", "--prune"];
    p.apply(&emu.url, &prune).succeeds();
    // b was adopted and, as its manifest changed, replaced; that replace's superseded
    // task goes with the next prune.
    p.apply(&emu.url, &prune).succeeds();
    let state = p.state();
    assert!(state.get("in_doubt").is_none(), "{state}");
    let mut recorded: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| state["tasks"][n]["task_id"].as_str().unwrap().to_string())
        .collect();
    let mut remote: Vec<String> = emu
        .tasks()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    recorded.sort();
    remote.sort();
    assert_eq!(remote, recorded, "exactly the recorded tasks are left");
    assert_eq!(emu.creates(), 1, "only b's replace was created here");
    p.apply(&emu.url, &recreate)
        .succeeds()
        .stdout_has("No changes");
}
