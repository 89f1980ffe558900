//! The watcher and the team share an environment: suspend and resume, sync now
//! (`POST /reconcile`, `taskform reconcile`), an apply from CI between two reconciles
//! (the watcher re-applies its own revision after it), and one watcher for every
//! environment of a repo (`watch --all-envs`), each against an emulator of its own.

use crate::common::envs::*;
use crate::common::repo::*;
use crate::common::*;
use std::process::Child;
use std::time::Duration;

/// `taskform watch --git` of the project's repository (`--path tasks`), the state in
/// `state.json`, probes on `port`; the log in `watch.log`.
fn watch_git_on(p: &Project, emu: &Emu, port: u16, poll: &str) -> Child {
    let log = std::fs::File::create(p.path("watch.log")).unwrap();
    watch_git(
        p,
        port,
        &[
            "--poll",
            poll,
            "--state",
            "state.json",
            "--endpoint",
            &emu.url,
            "--max-rate",
            "0",
        ],
        log.into(),
    )
}

fn stop(mut w: Child) {
    sigterm(&w);
    assert!(wait_until(Duration::from_secs(20), || matches!(
        w.try_wait(),
        Ok(Some(_))
    )));
}

fn live(port: u16) -> Option<String> {
    status(port)["revision"]["sha"].as_str().map(str::to_string)
}

fn names(emu: &Emu) -> Vec<String> {
    let mut n: Vec<String> = emu
        .tasks()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

/// `taskform <args> --dir git/work/tasks --state state.json` with the demo token.
fn on_state(p: &Project, args: &[&str], emu: &Emu) -> Output {
    let mut all = args.to_vec();
    all.extend([
        "--state",
        "state.json",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "0",
    ]);
    p.run(&all, &[("TASKFORM_AUTH_TOKEN", TOKEN)])
}

#[test]
fn suspend_plans_and_sends_nothing_and_resume_applies_at_once() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    let first = git(&work, &["rev-parse", "HEAD"]);
    let port = free_port();
    let w = watch_git_on(&p, &emu, port, "1");
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));

    // Suspended, with a reason; recorded in the state, seen by every process.
    p.run(
        &[
            "suspend",
            "--dir",
            "git/work/tasks",
            "--state",
            "state.json",
            "--reason",
            "incident 42: hold all changes",
        ],
        &[],
    )
    .succeeds()
    .stdout_has("Suspended state.json: incident 42")
    // The command it suggests runs as printed (it is the one run below).
    .stdout_has("Resume with `taskform resume --dir git/work/tasks --state state.json`.");
    p.run(
        &[
            "state",
            "list",
            "--dir",
            "git/work/tasks",
            "--state",
            "state.json",
        ],
        &[],
    )
    .succeeds()
    .stdout_has("Suspended by ")
    .stdout_has("incident 42");
    assert!(wait_until(Duration::from_secs(10), || {
        status(port)["suspended"]["reason"] == "incident 42: hold all changes"
    }));
    assert_eq!(
        sample(
            &metrics(port),
            "taskform_suspended",
            &[("environment", "default")]
        ),
        Some(1.0)
    );

    // A pushed commit is fetched and planned, and nothing is sent.
    std::fs::write(work.join("tasks/b.yaml"), manifest("b", 10)).unwrap();
    let second = commit(&work, "task b");
    assert!(wait_until(Duration::from_secs(20), || {
        let s = status(port);
        s["last_reconcile"]["suspended"] == true && s["last_reconcile"]["plan"]["create"] == 1
    }));
    let s = status(port);
    assert_eq!(s["revision"]["sha"], first.as_str(), "not live: {s}");
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(names(&emu), ["a"]);

    // apply is refused with who and why; --ignore-suspend goes through.
    on_state(&p, &["apply", "--yes", "git/work/tasks"], &emu)
        .fails_with(1)
        .stderr_has("is suspended by ")
        .stderr_has("incident 42")
        .stderr_has("--ignore-suspend");
    assert_eq!(names(&emu), ["a"]);
    on_state(
        &p,
        &["apply", "--yes", "--ignore-suspend", "git/work/tasks"],
        &emu,
    )
    .succeeds();
    assert_eq!(names(&emu), ["a", "b"]);

    // Still suspended: the next commit waits; resume applies it at once.
    std::fs::write(work.join("tasks/c.yaml"), manifest("c", 10)).unwrap();
    let third = commit(&work, "task c");
    assert!(wait_until(Duration::from_secs(20), || {
        let s = status(port);
        s["last_reconcile"]["suspended"] == true
            && s["last_reconcile"]["plan"]["create"] == 1
            && s["last_reconcile"]["trigger"] == "poll"
            && s["revision"]["sha"] == first.as_str()
    }));
    assert_eq!(names(&emu), ["a", "b"]);
    p.run(
        &["resume", "--dir", "git/work/tasks", "--state", "state.json"],
        &[],
    )
    .succeeds()
    .stdout_has("Resumed state.json (suspended by ");
    assert!(
        wait_until(Duration::from_secs(5), || names(&emu) == ["a", "b", "c"]),
        "applied within a few seconds of the resume"
    );
    assert!(wait_until(Duration::from_secs(5), || live(port).as_deref()
        == Some(third.as_str())));
    assert!(status(port)["suspended"].is_null());
    assert_eq!(
        sample(
            &metrics(port),
            "taskform_suspended",
            &[("environment", "default")]
        ),
        Some(0.0)
    );
    assert_eq!(emu.creates(), 3, "no duplicate");
    let _ = second;
    stop(w);
}

#[test]
fn post_reconcile_needs_the_secret_and_reconciles_at_once() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    let first = git(&work, &["rev-parse", "HEAD"]);
    let port = free_port();
    // An hour between polls: only a request fetches.
    let w = watch_git_on(&p, &emu, port, "3600");
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));
    std::fs::write(work.join("tasks/b.yaml"), manifest("b", 10)).unwrap();
    let second = commit(&work, "task b");

    assert_eq!(sync(port, "", "").0, 401);
    assert_eq!(sync(port, "Authorization: Bearer wrong\r\n", "").0, 401);
    assert_eq!(names(&emu), ["a"]);
    let asked = std::time::Instant::now();
    let (code, body) = sync(port, "Authorization: Bearer hook-secret\r\n", "");
    assert_eq!(code, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["revision"], second.as_str(), "{answer}");
    let number = answer["reconcile"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(1), || names(&emu) == ["a", "b"]));
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(wait_until(Duration::from_secs(5), || {
        status(port)["last_reconcile"]["number"].as_u64() >= Some(number)
    }));
    assert_eq!(status(port)["last_reconcile"]["trigger"], "sync");
    // An unknown environment is not found.
    assert_eq!(
        sync(
            port,
            "Authorization: Bearer hook-secret\r\n",
            "?environment=nope"
        )
        .0,
        404
    );

    // The command: asks, waits, reports the result.
    std::fs::write(work.join("tasks/c.yaml"), manifest("c", 10)).unwrap();
    let third = commit(&work, "task c");
    let listen = format!("127.0.0.1:{port}");
    p.run(
        &[
            "reconcile",
            "--listen",
            &listen,
            "--wait",
            "--timeout",
            "30",
        ],
        &[("TASKFORM_WEBHOOK_SECRET", "hook-secret")],
    )
    .succeeds()
    .stdout_has(&format!("of revision {third} requested"))
    .stdout_has("succeeded: created 1");
    assert_eq!(names(&emu), ["a", "b", "c"]);
    p.run(&["reconcile", "--listen", &listen], &[])
        .fails_with(1)
        .stderr_has("set TASKFORM_WEBHOOK_SECRET");
    p.run(
        &["reconcile", "--listen", &listen],
        &[("TASKFORM_WEBHOOK_SECRET", "wrong")],
    )
    .fails_with(1)
    .stderr_has("401");
    stop(w);
}

/// An apply from CI of other content between two reconciles: it goes through, the
/// watcher sees the state changed outside it, says so on /status and re-applies its
/// own folder.
#[test]
fn the_watcher_re_applies_its_own_folder_after_an_apply_from_elsewhere() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.task("a");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut w = p.spawn(&[
        "watch",
        "tasks",
        "--endpoint",
        &emu.url,
        "--listen",
        &listen,
        "--max-rate",
        "0",
    ]);
    assert!(wait_until(Duration::from_secs(20), || {
        status(port)["last_reconcile"]["result"] == "success"
    }));
    // CI applies a copy of the folder where task a has another timeout.
    copy_dir(&p.path("tasks"), &p.path("ci"));
    p.write("ci/a.yaml", &manifest("a", 20));
    p.online(
        &[
            "apply",
            "--yes",
            "ci",
            "--lock-timeout",
            "30",
            "--state",
            "state/taskform.json",
        ],
        &emu.url,
    )
    .succeeds();
    let timeout = |emu: &Emu| {
        emu.tasks()
            .iter()
            .find(|t| t["name"] == "a")
            .map(|t| t["schedule_config"]["max_time_out"].clone())
    };
    assert!(
        wait_until(Duration::from_secs(10), || timeout(&emu)
            == Some(serde_json::json!(10))),
        "the watcher's folder wins: {:?}",
        timeout(&emu)
    );
    let s = status(port);
    assert!(
        s["changed_outside"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("changed outside this watcher")),
        "{s}"
    );
    assert_eq!(emu.creates(), 1);
    let _ = w.kill();
    let _ = w.wait();
}

#[test]
fn one_watcher_reconciles_every_environment_and_one_down_never_blocks_the_others() {
    let (p, mut emus) = example();
    // What each environment creates, planned before the watcher starts.
    let plans = p
        .run(&["plan", "--all-envs", "--format", "json", "repo"], &[])
        .succeeds()
        .json();
    let expected = |env: &str| {
        plans["environments"][env]["summary"]["create"]
            .as_u64()
            .unwrap() as usize
    };
    assert!(expected("prod") > 0);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let t = tokens();
    let mut c = p.cmd(&[
        "watch",
        "--all-envs",
        "repo",
        "--listen",
        &listen,
        "--max-rate",
        "0",
        "--retry-interval",
        "1",
        "--debounce-ms",
        "100",
    ]);
    for (k, v) in &t {
        c.env(k, v);
    }
    let log = std::fs::File::create(p.path("watch.log")).unwrap();
    let mut w = c
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Each environment's tasks in its own emulator, recorded in its own state.
    assert!(
        wait_until(Duration::from_secs(30), || ENVS
            .iter()
            .zip(&emus)
            .all(|(e, emu)| emu.tasks().len() == expected(e))),
        "{}",
        std::fs::read_to_string(p.path("watch.log")).unwrap_or_default()
    );
    for env in ENVS {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.path(&format!("repo/state/{env}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            state["tasks"].as_object().unwrap().len(),
            expected(env),
            "{env}"
        );
    }
    let s = status(port);
    for env in ENVS {
        assert_eq!(s["environments"][env]["role"], "leader", "{s}");
        assert_eq!(
            s["environments"][env]["last_reconcile"]["result"], "success",
            "{s}"
        );
    }
    assert_eq!(
        http(port, "GET /readyz HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(200)
    );

    // Staging's emulator goes down; a shared manifest changes: dev and prod apply it.
    emus[1].kill();
    let shared = p.path("repo/tasks/dli/sales.yaml");
    let text = std::fs::read_to_string(&shared).unwrap();
    let old = "description: Collect the sales lake's tables once; re-run on every change.";
    assert!(text.contains(old), "{text}");
    std::fs::write(
        &shared,
        text.replacen(old, "description: Changed for every environment.", 1),
    )
    .unwrap();
    let updates = |emu: &Emu| {
        emu.requests()
            .iter()
            .filter(|r| r["method"] == "PUT")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || updates(&emus[0]) >= 1
            && updates(&emus[2]) >= 1),
        "{}",
        std::fs::read_to_string(p.path("watch.log")).unwrap_or_default()
    );
    assert!(wait_until(Duration::from_secs(20), || {
        http(port, "GET /readyz HTTP/1.0\r\n\r\n").is_some_and(|(code, body)| {
            code == 503 && body.contains("staging") && !body.contains("dev:")
        })
    }));
    assert_eq!(
        http(port, "GET /readyz?environment=dev HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        http(port, "GET /readyz?environment=nope HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(404)
    );
    let m = metrics(port);
    assert!(
        sample(
            &m,
            "taskform_reconciles_total",
            &[("environment", "staging"), ("result", "failure")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    for env in ["dev", "prod"] {
        assert!(
            sample(
                &m,
                "taskform_reconciles_total",
                &[("environment", env), ("result", "success")]
            )
            .is_some_and(|v| v >= 2.0),
            "{env}"
        );
        assert_eq!(
            sample(&m, "taskform_leader", &[("environment", env)]),
            Some(1.0)
        );
    }
    let _ = w.kill();
    let _ = w.wait();
}

/// Two `watch --all-envs` replicas: the first leads every environment, the second
/// stands by for each (and stays ready) without holding back anything; when the first
/// stops, the second leads them all.
#[test]
fn a_standby_of_every_environment_takes_over_each() {
    let (p, emus) = example();
    let t = tokens();
    let start = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        let mut c = p.cmd(&[
            "watch",
            "--all-envs",
            "repo",
            "--listen",
            &listen,
            "--max-rate",
            "0",
        ]);
        for (k, v) in &t {
            c.env(k, v);
        }
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (one, two) = (free_port(), free_port());
    let first = start(one);
    assert!(wait_until(Duration::from_secs(30), || ENVS.iter().all(
        |e| { status(one)["environments"][*e]["last_reconcile"]["result"] == "success" }
    )));
    let second = start(two);
    assert!(wait_until(Duration::from_secs(20), || ENVS
        .iter()
        .all(|e| status(two)["environments"][*e]["role"] == "standby")));
    assert_eq!(
        http(two, "GET /readyz HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(200)
    );
    // The leader still reconciles every environment while the standby waits.
    p.write(
        "repo/tasks/dli/added.yaml",
        &manifest("added-while-a-standby-waits", 10),
    );
    assert!(wait_until(Duration::from_secs(20), || emus.iter().all(
        |e| e
            .tasks()
            .iter()
            .any(|t| t["name"] == "added-while-a-standby-waits")
    )));
    stop(first);
    assert!(wait_until(Duration::from_secs(20), || ENVS
        .iter()
        .all(|e| status(two)["environments"][*e]["role"] == "leader")));
    assert!(wait_until(Duration::from_secs(20), || ENVS.iter().all(
        |e| { status(two)["environments"][*e]["last_reconcile"]["result"] == "success" }
    )));
    let creates: usize = emus.iter().map(|e| e.creates()).sum();
    let tasks: usize = emus.iter().map(|e| e.tasks().len()).sum();
    assert_eq!(creates, tasks, "no duplicate");
    stop(second);
}

/// `watch --all-envs --git`: every environment of the repository, each with its own
/// clone below the cache, its state outside the fetched trees; a pushed commit reaches
/// every environment.
#[test]
fn one_watcher_follows_every_environment_of_a_git_repository() {
    let (p, emus) = example();
    // The states outside the fetched trees.
    let settings = std::fs::read_to_string(p.path("repo/taskform.yaml")).unwrap();
    let states = p.path("states");
    let settings = ENVS.iter().fold(settings, |s, e| {
        s.replace(
            &format!("state: state/{e}.json"),
            &format!("state: {}/{e}.json", states.display()),
        )
    });
    p.write("repo/taskform.yaml", &settings);
    let work = p.path("repo");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "environments"]);
    let bare = p.path("remote.git");
    git(
        &p.path(""),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    git(
        &work,
        &[
            "remote",
            "add",
            "origin",
            &format!("file://{}", bare.display()),
        ],
    );
    git(&work, &["push", "-q", "origin", "main"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("file://{}", bare.display());
    let mut c = p.cmd(&[
        "watch",
        "--all-envs",
        "--git",
        &url,
        "--git-cache",
        "cache",
        "--poll",
        "1",
        "--listen",
        &listen,
        "--max-rate",
        "0",
    ]);
    for (k, v) in tokens() {
        c.env(k, v);
    }
    let log = std::fs::File::create(p.path("watch.log")).unwrap();
    let w = c
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || ENVS.iter().all(|e| {
            status(port)["environments"][*e]["last_reconcile"]["result"] == "success"
        })),
        "{}",
        std::fs::read_to_string(p.path("watch.log")).unwrap_or_default()
    );
    assert!(emus.iter().all(|e| !e.tasks().is_empty()));
    for e in ENVS {
        assert!(p.path(&format!("cache/{e}")).is_dir(), "{e}'s own clone");
        assert!(states.join(format!("{e}.json")).is_file(), "{e}'s state");
    }
    // A new shared task, pushed: every environment creates it.
    p.write(
        "repo/tasks/dli/pushed.yaml",
        &manifest("pushed-to-every-environment", 10),
    );
    let sha = commit(&work, "a shared task");
    assert!(wait_until(Duration::from_secs(30), || emus.iter().all(
        |e| e
            .tasks()
            .iter()
            .any(|t| t["name"] == "pushed-to-every-environment")
    )));
    assert!(wait_until(Duration::from_secs(10), || ENVS.iter().all(
        |e| status(port)["environments"][*e]["revision"]["sha"] == sha.as_str()
    )));
    stop(w);
}
