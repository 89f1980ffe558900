//! Failing fast and clearly (issue #14, point 12), end to end: the real binary against
//! the emulator, a scripted server or a closed port. A refused credential or workspace
//! costs one request; a dead endpoint stops the run with one message naming it;
//! missing answers are said so ("no answer (connection refused)"), never "HTTP 0";
//! reads honour `--max-attempts`.

use crate::common::*;
use std::time::{Duration, Instant};

/// An endpoint where nothing listens.
fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_refused_token_lets_exactly_one_request_reach_the_server() {
    let emu = Emu::start(&["--token", "the-right-one"]);
    let p = Project::new();
    p.tasks(12);
    // The default concurrency (8): before, 8 creates went out before the first 401.
    let out = p.run(
        // The write path: no search for duplicate names first.
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--allow-duplicate-names",
        ],
        &[("TASKFORM_AUTH_TOKEN", "wrong-token")],
    );
    out.fails_with(1)
        .stderr_has("the service refused the token in TASKFORM_AUTH_TOKEN")
        .stdout_has("1 failed, 0 in doubt, 11 skipped.");
    assert_eq!(emu.requests().len(), 1, "requests: {:?}", emu.calls());
    assert!(p.state().get("in_doubt").is_none(), "nothing is in doubt");
    // The tasks not sent are planned as creates again.
    assert_eq!(p.plan_json()["summary"]["create"], 12);
}

#[test]
fn a_workspace_403_names_the_workspace_not_the_token() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.tasks(5);
    let out = p.apply(
        &emu.url,
        &["--workspace", "someone-elses", "--allow-duplicate-names"],
    );
    out.fails_with(1)
        .stderr_has(&format!(
            "error: the service refused access to workspace someone-elses of project {PROJECT} (HTTP 403 DLG.0818: You have no access to workspace someone-elses.); check --workspace / TASKFORM_WORKSPACE / `workspace:` in taskform.yaml"
        ))
        .stderr_lacks("refused the token")
        .stdout_has("1 failed, 0 in doubt, 4 skipped.");
    assert_eq!(emu.requests().len(), 1, "requests: {:?}", emu.calls());
}

#[test]
fn a_dead_endpoint_stops_the_run_with_one_message_naming_it() {
    let url = closed_port();
    let p = Project::new();
    p.tasks(12);
    let started = Instant::now();
    let out = p.apply(&url, &["--allow-duplicate-names"]);
    let took = started.elapsed();
    out.fails_with(1)
        .stdout_has("Apply complete: 0 created, 0 replaced, 1 failed, 0 in doubt, 11 skipped.")
        .stderr_lacks("HTTP 0");
    let stops = lines_with(&out.stderr, "stopping the run");
    assert_eq!(stops.len(), 1, "one message: {}", out.stderr);
    assert!(
        stops[0].contains(&format!("no answer from {url} (connection refused)"))
            && stops[0].contains("--endpoint"),
        "{}",
        stops[0]
    );
    // Before: 12 tasks took 11.6 s (8 at a time, each retried 5 times over about 6 s).
    // Now the first task's retries alone (at most 7.5 s, about 5.6 s on average).
    assert!(took < Duration::from_secs(9), "took {took:?}");
    assert!(p.state().get("in_doubt").is_none());
}

#[test]
fn no_answer_is_said_so_never_http_0() {
    let url = closed_port();
    let p = Project::new();
    p.task("a");
    let out = p.apply(
        &url,
        &["--max-attempts", "2", "-v", "--allow-duplicate-names"],
    );
    out.fails_with(1)
        .stderr_has("failed: a (a.yaml): no answer (connection refused) (gave up after 2 attempts)")
        .stderr_lacks("HTTP 0");
    let json = p
        .apply(
            &url,
            &[
                "--max-attempts",
                "2",
                "--format",
                "json",
                "--allow-duplicate-names",
            ],
        )
        .json();
    let t = &json["tasks"][0];
    assert_eq!(t["outcome"], "failed");
    assert!(t["http_status"].is_null(), "{t}");
    assert!(
        t["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("no answer (connection refused)"),
        "{t}"
    );

    // Reads: import.
    p.run(
        &["import", "tasks", "--endpoint", &url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .fails_with(1)
    .stderr_has(&format!(
        "search failed: no answer from {url} (connection refused) to 5 attempts"
    ))
    .stderr_lacks("HTTP 0");

    // An update whose answers time out is retried; the log and the result say why.
    let srv = Scripted::start(|n, r| match r.method.as_str() {
        "PUT" => Reply::Hang(Duration::from_secs(2)),
        _ => created(n),
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &[]).succeeds();
    p.write("tasks/a.yaml", &manifest("a", 20));
    p.apply(
        &srv.url,
        &[
            "--on-change",
            "update",
            "--timeout",
            "0.3",
            "--max-attempts",
            "2",
        ],
    )
    .fails_with(1)
    .stderr_has(
        "failed (update): a (a.yaml): no answer (timeout after 0.3 s) (gave up after 2 attempts)",
    )
    .stderr_lacks("HTTP 0");
}

#[test]
fn reads_honour_max_attempts() {
    let srv = Scripted::start(
        |n, r| match (r.method.as_str(), r.path.ends_with("/create")) {
            ("POST", true) => created(n),
            _ => api_error(503, "DLG.0503", "busy"),
        },
    );
    let count = |method: &str| {
        srv.requests()
            .iter()
            .filter(|r| r.method == method && !r.path.ends_with("/create"))
            .count()
    };
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--allow-duplicate-names"]).succeeds();

    // `a` is recorded; import looks up `b`.
    p.task("b");
    p.run(
        &[
            "import",
            "tasks",
            "--endpoint",
            &srv.url,
            "--max-attempts",
            "2",
        ],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .fails_with(1)
    .stderr_has("search failed after 2 attempts: HTTP 503 DLG.0503: busy");
    assert_eq!(count("POST"), 2, "search requests");

    for (args, shows) in [
        (vec!["refresh", "tasks", "--max-attempts", "1"], 1),
        (vec!["plan", "tasks", "--refresh", "--max-attempts", "3"], 4),
        (
            vec![
                "apply",
                "--yes",
                "tasks",
                "--refresh",
                "--max-attempts",
                "2",
            ],
            6,
        ),
    ] {
        let mut args = args;
        args.extend(["--endpoint", &srv.url]);
        p.run(&args, &[("TASKFORM_AUTH_TOKEN", TOKEN)])
            .fails_with(1)
            .stderr_has("show failed after");
        assert_eq!(count("GET"), shows, "after {args:?}");
    }
}

#[test]
fn a_dead_endpoint_fails_reads_after_one_reads_retries() {
    let mut emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(30);
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let url = emu.url.clone();
    emu.kill();
    let started = Instant::now();
    let out = p.run(
        &["refresh", "tasks", "--endpoint", &url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    );
    let took = started.elapsed();
    out.fails_with(1)
        .stderr_has(&format!("no answer from {url} (connection refused)"))
        .stderr_lacks("HTTP 0");
    // Before: every one of the 30 shows made its 6 attempts, 8 at a time (about 36 s).
    assert!(took < Duration::from_secs(12), "took {took:?}");
}
