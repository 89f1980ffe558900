//! `apply` end to end: the real binary against the emulator (child process) or a
//! scripted server, asserting on what the server received and on the state file.

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn names_on_server(emu: &Emu) -> Vec<String> {
    emu.tasks()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn happy_path_records_every_id_and_a_second_apply_sends_nothing() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(20);
    p.apply(&emu.url, &["--max-rate", "0"])
        .succeeds()
        .stdout_has("Apply complete: 20 created, 0 replaced, 0 failed, 0 in doubt, 0 skipped.");
    let server: BTreeMap<String, String> = emu
        .tasks()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(server.len(), 20);
    let state = p.state();
    for (name, rec) in state["tasks"].as_object().unwrap() {
        assert_eq!(
            rec["task_id"].as_str(),
            server.get(name).map(|s| s.as_str()),
            "{name}"
        );
        assert!(rec["body"].is_object());
    }
    assert_eq!(state["tasks"].as_object().unwrap().len(), 20);
    assert_eq!(state["target"]["project_id"], PROJECT);
    assert!(
        !p.path("state/taskform.json.journal").exists(),
        "the journal is folded and removed"
    );

    // What was sent is exactly the body that was hashed.
    let plan = p.plan_json();
    assert_eq!(plan["summary"]["unchanged"], 20);
    let before = emu.requests().len();
    p.apply(&emu.url, &[])
        .succeeds()
        .stdout_has("No changes. 20 tasks up to date.");
    assert_eq!(emu.requests().len(), before, "no request for a no-op apply");
}

#[test]
fn a_changed_task_is_replaced_and_the_old_one_kept_as_superseded() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    let old_id = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    p.write("tasks/a.yaml", &manifest("a", 99));
    p.apply(&emu.url, &["--on-change", "recreate"])
        .succeeds()
        .stdout_has("~ schedule_config.max_time_out: 10 -> 99")
        .stdout_has("0 created, 1 replaced");
    let rec = &p.state()["tasks"]["a"];
    assert_ne!(rec["task_id"].as_str().unwrap(), old_id);
    assert_eq!(rec["superseded"][0]["task_id"], old_id.as_str());
    assert_eq!(emu.creates(), 3);
}

#[test]
fn a_refused_task_fails_alone_with_the_service_error() {
    let srv = Scripted::without_search(|n, r| {
        if r.json()["name"] == "bad" {
            api_error(400, "DLG.0003", "The parameter dir_id is invalid.")
        } else {
            created(n)
        }
    });
    let p = Project::new();
    p.task("a").task("bad").task("c");
    p.apply(&srv.url, &[])
        .fails_with(1)
        .stderr_has("failed: bad (bad.yaml): HTTP 400 DLG.0003: The parameter dir_id is invalid.")
        .stdout_has("2 created, 0 replaced, 1 failed");
    let state = p.state();
    assert!(
        state["tasks"].get("a").is_some()
            && state["tasks"].get("c").is_some()
            && state["tasks"].get("bad").is_none()
    );
    assert!(
        state.get("in_doubt").is_none(),
        "a refused create is not in doubt: {state}"
    );
    assert_eq!(
        srv.requests()
            .iter()
            .filter(|r| r.json()["name"] == "bad")
            .count(),
        1,
        "a 400 is not retried"
    );
    // The request carried what the reference asks for.
    let r = &srv.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/v3/{PROJECT}/metadata/tasks/create"));
    assert_eq!(r.header("workspace"), Some(WORKSPACE));
    assert_eq!(r.header("x-auth-token"), Some(TOKEN));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn retryable_answers_are_retried_and_in_doubt_ones_are_not() {
    // 500, 503 and a throttling code are retried; the task is created once.
    let srv = Scripted::without_search(|n, _| match n {
        0 => api_error(500, "DLG.0500", "boom"),
        1 => api_error(503, "X", "unavailable"),
        2 => api_error(400, "APIG.0308", "throttled"),
        _ => created(n),
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--max-rate", "0"]).succeeds();
    assert_eq!(srv.requests().len(), 4);
    assert_eq!(p.state()["tasks"]["a"]["task_id"], format!("{:032x}", 3));

    // 502 and 504 may have created the task: in doubt, never retried.
    for status in [502, 504] {
        let srv = Scripted::without_search(move |_, _| api_error(status, "GW", "gateway"));
        let p = Project::new();
        p.task("a");
        p.apply(&srv.url, &[])
            .fails_with(1)
            .stderr_has("in doubt: a (a.yaml)");
        assert_eq!(srv.requests().len(), 1);
        assert!(p.state()["in_doubt"]["a"].is_object());
    }
}

#[test]
fn retries_give_up_after_max_attempts() {
    let srv = Scripted::without_search(|_, _| api_error(500, "DLG.0500", "always"));
    let p = Project::new();
    p.task("a");
    let out = p.apply(&srv.url, &["--max-attempts", "3"]);
    out.fails_with(1);
    assert_eq!(srv.requests().len(), 3);
    out.stderr_has("failed: a (a.yaml): HTTP 500 DLG.0500: always (gave up after 3 attempts)");
    assert!(
        p.state().get("in_doubt").is_none(),
        "nothing was created, so nothing is in doubt"
    );
}

#[test]
fn throttling_honours_retry_after() {
    let srv = Scripted::without_search(|n, _| {
        if n == 0 {
            Reply::Answer(
                429,
                vec![("Retry-After", "1".into())],
                r#"{"error_code":"APIGW.0308","error_msg":"slow"}"#.into(),
            )
        } else {
            created(n)
        }
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--max-rate", "0"]).succeeds();
    let r = srv.requests();
    assert_eq!(r.len(), 2);
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(1000),
        "waited {:?}",
        r[1].at - r[0].at
    );
}

#[test]
fn a_timeout_is_in_doubt_and_not_created_again_unless_asked() {
    // A create-only gateway: search answers 404, so the in-doubt task cannot be settled.
    let srv = Scripted::without_search(|n, r| {
        if r.path.ends_with("/search") {
            api_error(404, "APIG.0101", "The API does not exist")
        } else if n == 0 {
            Reply::Hang(Duration::from_secs(3))
        } else {
            created(n)
        }
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--timeout", "0.5"])
        .fails_with(1)
        .stderr_has("in doubt: a (a.yaml): no answer (timeout after 0.5 s)");
    assert_eq!(p.plan_json()["tasks"][0]["action"], "in_doubt");
    // In-doubt tasks are reported, and the run fails.
    let out = p.apply(&srv.url, &[]);
    out.fails_with(1);
    let creates = || {
        srv.requests()
            .iter()
            .filter(|r| r.path.ends_with("/create"))
            .count()
    };
    assert_eq!(creates(), 1, "and not sent again");
    out.stderr_has("the endpoint offers no search");
    p.apply(&srv.url, &["--recreate-in-doubt"]).succeeds();
    assert_eq!(creates(), 2);
    assert!(p.state().get("in_doubt").is_none());
}

#[test]
fn a_dropped_connection_after_the_create_is_in_doubt() {
    let emu = Emu::start(&["--drop-rate", "1"]);
    let p = Project::new();
    p.task("a");
    p.apply(&emu.url, &[])
        .fails_with(1)
        .stderr_has("in doubt: a");
    assert_eq!(emu.tasks().len(), 1, "the server did create it");
    assert_eq!(emu.creates(), 1, "never retried blindly");
}

#[test]
fn connection_refused_is_retried_then_failed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Project::new();
    p.task("a");
    // The create's own retries (the search for duplicate names, made first into an
    // empty state, is left out).
    p.apply(
        &format!("http://127.0.0.1:{port}"),
        &["--max-attempts", "2", "--allow-duplicate-names"],
    )
    .fails_with(1)
    .stderr_has("failed: a (a.yaml): no answer (connection refused)");
    assert!(p.state().get("in_doubt").is_none());
}

#[test]
fn unauthorized_stops_the_run_and_names_the_credential_not_its_value() {
    let emu = Emu::start(&["--token", "the-right-one"]);
    let p = Project::new();
    p.tasks(5);
    let out = p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--concurrency",
            "1",
            "-vv",
        ],
        &[("TASKFORM_AUTH_TOKEN", "wrong-token-XYZZY")],
    );
    out.fails_with(1)
        .stderr_has("HTTP 401 APIGW.0301")
        .stderr_has("the service refused the token in TASKFORM_AUTH_TOKEN")
        .stderr_lacks("XYZZY")
        .stdout_lacks("XYZZY");
    // Into an empty state, the search for duplicate names comes first and is refused:
    // nothing is created at all.
    assert_eq!(emu.creates(), 0, "no create after a 401");
    assert!(!p.state_folder_text().contains("XYZZY"));
}

#[test]
fn missing_credentials_or_target_fail_before_anything_is_sent() {
    let srv = Scripted::without_search(|n, _| created(n));
    let p = Project::new();
    p.task("a");
    p.run(&["apply", "--yes", "tasks", "--endpoint", &srv.url], &[])
        .fails_with(1)
        .stderr_has("error: no credentials: set TASKFORM_AUTH_TOKEN");
    p.run(
        &["apply", "--yes", "tasks"],
        &[("TASKFORM_AUTH_TOKEN", "t")],
    )
    .stderr_has("apply needs the endpoint");
    p.run(
        &["apply", "--yes", "tasks", "--endpoint", &srv.url],
        &[("HW_ACCESS_KEY", "ak")],
    )
    .stderr_has("HW_SECRET_KEY is not");
    assert_eq!(srv.requests().len(), 0);
    // Without a terminal and without --yes, apply refuses.
    p.run(
        &["apply", "tasks", "--endpoint", &srv.url],
        &[("TASKFORM_AUTH_TOKEN", "t")],
    )
    .fails_with(1)
    .stderr_has("pass --yes");
    assert!(
        !p.path("state/taskform.json").exists(),
        "a refused apply writes nothing"
    );
    assert_eq!(srv.requests().len(), 0);
}

#[test]
fn aksk_signed_requests_are_accepted_by_the_emulator() {
    let emu = Emu::start(&["--access-key", "AKTEST", "--secret-key", "SKSECRET-123"]);
    let p = Project::new();
    p.task("a");
    p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "-vv",
            "--log-format",
            "json",
        ],
        &[
            ("HW_ACCESS_KEY", "AKTEST"),
            ("HW_SECRET_KEY", "SKSECRET-123"),
        ],
    )
    .succeeds()
    .stderr_lacks("SKSECRET");
    assert!(!p.state_folder_text().contains("SKSECRET"));
    assert!(!emu.stderr.lock().unwrap().contains("SKSECRET"));
    // Nothing to do needs no request.
    p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--recreate-in-doubt",
        ],
        &[("HW_ACCESS_KEY", "AKTEST"), ("HW_SECRET_KEY", "wrong")],
    )
    .succeeds();
}

#[test]
fn iam_password_login_gets_a_token_once() {
    let srv = Scripted::without_search(|n, r| {
        if r.path == "/v3/auth/tokens" {
            let j = r.json();
            assert_eq!(j["auth"]["identity"]["password"]["user"]["name"], "alice");
            assert_eq!(j["auth"]["scope"]["project"]["id"], PROJECT);
            Reply::Answer(
                201,
                vec![("X-Subject-Token", "iam-token-123".into())],
                r#"{"token":{"expires_at":"2099-01-01T00:00:00.000000Z"}}"#.into(),
            )
        } else if r.header("x-auth-token") == Some("iam-token-123") {
            created(n)
        } else {
            api_error(401, "APIGW.0301", "bad token")
        }
    });
    let p = Project::new();
    p.tasks(3);
    let out = p.run(
        &["apply", "--yes", "tasks", "--endpoint", &srv.url],
        &[
            ("HW_USER_NAME", "alice"),
            ("HW_PASSWORD", "pw-SECRET"),
            ("HW_DOMAIN_NAME", "dom"),
            ("TASKFORM_IAM_ENDPOINT", &srv.url),
        ],
    );
    out.succeeds();
    assert_eq!(
        srv.requests()
            .iter()
            .filter(|r| r.path == "/v3/auth/tokens")
            .count(),
        1,
        "the token is cached"
    );
    out.stderr_lacks("pw-SECRET").stderr_lacks("iam-token-123");
}

/// A token revoked before its expiry: the 401 drops it and taskform logs in once more
/// (then goes on with the new token); a token refused again fails as before, after
/// one more login, not one per request.
#[test]
fn a_refused_iam_token_is_dropped_and_fetched_once_more() {
    let logins = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = logins.clone();
    let srv = Scripted::without_search(move |n, r| {
        if r.path == "/v3/auth/tokens" {
            let k = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Reply::Answer(
                201,
                vec![("X-Subject-Token", format!("iam-token-{k}"))],
                r#"{"token":{"expires_at":"2099-01-01T00:00:00.000000Z"}}"#.into(),
            )
        } else if r.header("x-auth-token") == Some("iam-token-2") {
            created(n)
        } else {
            api_error(401, "APIGW.0301", "the token has been revoked")
        }
    });
    let p = Project::new();
    p.tasks(3);
    let env = [
        ("HW_USER_NAME", "alice"),
        ("HW_PASSWORD", "pw-SECRET"),
        ("HW_DOMAIN_NAME", "dom"),
        ("TASKFORM_IAM_ENDPOINT", srv.url.as_str()),
    ];
    let out = p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &srv.url,
            "--concurrency",
            "1",
        ],
        &env,
    );
    out.succeeds();
    assert_eq!(logins.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(p.state()["tasks"].as_object().map(|t| t.len()), Some(3));
    out.stderr_lacks("pw-SECRET").stderr_lacks("iam-token-");

    // Every token refused: one more login, then the apply fails as before.
    let refusing = Scripted::without_search(|_, r| {
        if r.path == "/v3/auth/tokens" {
            Reply::Answer(
                201,
                vec![("X-Subject-Token", "iam-token-x".into())],
                r#"{"token":{"expires_at":"2099-01-01T00:00:00.000000Z"}}"#.into(),
            )
        } else {
            api_error(401, "APIGW.0301", "the token has been revoked")
        }
    });
    let q = Project::new();
    q.task("a");
    let env = [
        ("HW_USER_NAME", "alice"),
        ("HW_PASSWORD", "pw-SECRET"),
        ("HW_DOMAIN_NAME", "dom"),
        ("TASKFORM_IAM_ENDPOINT", refusing.url.as_str()),
    ];
    let out = q.run(
        &["apply", "--yes", "tasks", "--endpoint", &refusing.url],
        &env,
    );
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    let reqs = refusing.requests();
    let logins = reqs.iter().filter(|r| r.path == "/v3/auth/tokens").count();
    let creates = reqs.iter().filter(|r| r.path.ends_with("/create")).count();
    assert_eq!((logins, creates), (2, 2), "{reqs:?}");
    out.stderr_has("APIGW.0301").stderr_lacks("iam-token-x");
}

#[test]
fn a_second_apply_is_refused_while_the_state_is_locked() {
    let emu = Emu::start(&["--latency-ms", "3000"]);
    let p = Project::new();
    p.task("a");
    let mut child = p.spawn_apply(&emu.url, &[]);
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(p.path("state/taskform.json.lock"))
            .is_ok_and(|s| s.contains("\"pid\""))
    }));
    p.apply(&emu.url, &[])
        .fails_with(1)
        .stderr_has(&format!("is locked by taskform apply (pid {}", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    // A lock left by a dead process blocks nobody.
    p.apply(&emu.url, &["--recreate-in-doubt", "--lock-timeout", "1"])
        .stderr_lacks("is locked");
}

/// kill -9 in the middle of a large apply: the state stays readable, every recorded ID
/// is one the server returned, every task on the server is recorded or in doubt, and
/// a re-run finishes the job without duplicates.
#[test]
fn kill_9_mid_apply_loses_nothing() {
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "15"]);
    let p = Project::new();
    p.tasks(150);
    for delay_ms in [300u64, 700] {
        let mut child = p.spawn_apply(&emu.url, &["--max-rate", "0", "--concurrency", "4"]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay_ms) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        check_invariants(&p, &emu);
    }
    let out = p.apply(&emu.url, &["--max-rate", "0"]);
    let plan = p.plan_json();
    let in_doubt = plan["summary"]["in_doubt"].as_u64().unwrap();
    if in_doubt > 0 {
        out.fails_with(1);
    } else {
        out.succeeds();
    }
    check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["create"], 0);
    let names = names_on_server(&emu);
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no task created twice");
    // Every task is on the server once, except in-doubt ones, which may or may not be.
    assert!(
        unique.len() as u64 >= 150 - in_doubt && unique.len() <= 150,
        "{} on the server, {in_doubt} in doubt",
        unique.len()
    );
}

#[test]
fn json_output_is_one_result_document() {
    let srv = Scripted::without_search(|n, r| {
        if r.json()["name"] == "b" {
            api_error(400, "DLG.0002", "no")
        } else {
            created(n)
        }
    });
    let p = Project::new();
    p.task("a").task("b");
    let v = p
        .apply(&srv.url, &["--format", "json"])
        .fails_with(1)
        .json();
    assert_eq!(v["format_version"], "1");
    assert_eq!(v["summary"]["created"], 1);
    assert_eq!(v["summary"]["failed"], 1);
    let b = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "b")
        .unwrap();
    assert_eq!(b["outcome"], "failed");
    assert_eq!(b["error_code"], "DLG.0002");
    assert_eq!(b["http_status"], 400);
    let a = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "a")
        .unwrap();
    assert_eq!(a["outcome"], "created");
    assert_eq!(a["task_id"], p.state()["tasks"]["a"]["task_id"]);
}

#[cfg(unix)]
#[test]
fn sigterm_records_what_was_in_flight() {
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "400"]);
    let p = Project::new();
    p.tasks(40);
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
    ]);
    assert!(wait_until(Duration::from_secs(10), || emu.creates() >= 2));
    sigterm(&child);
    Output::from(child.wait_with_output().unwrap())
        .fails_with(130)
        .stdout_has("Apply interrupted");
    std::thread::sleep(Duration::from_millis(500));
    let state = p.state();
    let recorded = state["tasks"].as_object().unwrap().len();
    assert_eq!(
        recorded,
        emu.tasks().len(),
        "every task the server made is recorded"
    );
    assert!(recorded < 40, "no new creates after SIGTERM");
    assert!(state.get("in_doubt").is_none());
    assert!(!p.path("state/taskform.json.journal").exists());
}
