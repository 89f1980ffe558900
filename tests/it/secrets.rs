//! Recognisable credential values never appear in stdout, stderr (every verbosity, text
//! and JSON logs, RUST_LOG=trace), the state, the journal, saved plans, or the
//! emulator's logs.

use crate::common::*;
use std::process::Stdio;
use std::time::Duration;

const TOKEN_VALUE: &str = "SECRET-TOKEN-7f3a9c";
const SK_VALUE: &str = "SECRET-SK-b41d07";
const PASSWORD_VALUE: &str = "SECRET-PW-e99c2a";
const SECRETS: [&str; 3] = [TOKEN_VALUE, SK_VALUE, PASSWORD_VALUE];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} contains a secret:\n{text}");
    }
}

#[test]
fn no_secret_in_any_output_or_file() {
    let emu = Emu::start(&[
        "--token",
        TOKEN_VALUE,
        "--access-key",
        "AK-TEST",
        "--secret-key",
        SK_VALUE,
        "--latency-ms",
        "50",
        "--rate-limit",
        "0",
    ]);
    let p = Project::new();
    p.tasks(3);
    let token = [("TASKFORM_AUTH_TOKEN", TOKEN_VALUE)];
    let aksk = [
        ("HW_ACCESS_KEY", "AK-TEST"),
        ("HW_SECRET_KEY", SK_VALUE),
        ("HW_SECURITY_TOKEN", TOKEN_VALUE),
    ];
    let mut runs = Vec::new();
    for verbosity in [&[][..], &["-v"][..], &["-vv"][..]] {
        for log in ["text", "json"] {
            let mut args = vec![
                "plan",
                "tasks",
                "--out",
                "plan.json",
                "--endpoint",
                &emu.url,
                "--log-format",
                log,
            ];
            args.extend_from_slice(verbosity);
            runs.push(p.run(&args, &token));
        }
    }
    runs.push(p.run(
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
        &token,
    ));
    p.task("more");
    runs.push(p.run(
        &["apply", "--yes", "tasks", "--endpoint", &emu.url, "-vv"],
        &[("HW_ACCESS_KEY", "AK-TEST"), ("HW_SECRET_KEY", SK_VALUE)],
    ));
    p.task("more2");
    let mut trace = aksk.to_vec();
    trace.push(("RUST_LOG", "trace"));
    runs.push(p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--format",
            "json",
        ],
        &trace,
    ));
    for (i, out) in runs.iter().enumerate() {
        assert_clean(&format!("run {i} stdout"), &out.stdout);
        assert_clean(&format!("run {i} stderr"), &out.stderr);
    }
    // RUST_LOG=trace was on.
    runs.last().unwrap().stderr_has("TRACE");

    // A journal left by a killed apply, and the saved plan.
    for i in 0..5 {
        p.task(&format!("late{i}"));
    }
    let mut c = p.cmd(&[
        "apply",
        "--yes",
        "tasks",
        "--endpoint",
        &emu.url,
        "--concurrency",
        "1",
        "--max-rate",
        "0",
    ]);
    c.env("TASKFORM_AUTH_TOKEN", TOKEN_VALUE)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(10), || p
        .path("state/taskform.json.journal")
        .exists()
        && emu.creates() >= 7));
    let _ = child.kill();
    let _ = child.wait();
    let journal = std::fs::read_to_string(p.path("state/taskform.json.journal")).unwrap();
    assert!(journal.contains("intent"), "a journal was left: {journal}");
    assert_clean("journal", &journal);
    assert_clean("state folder", &p.state_folder_text());
    assert_clean(
        "saved plan",
        &std::fs::read_to_string(p.path("plan.json")).unwrap(),
    );
    assert_clean("emulator log", &emu.stderr.lock().unwrap());
}

#[test]
fn iam_passwords_and_tokens_stay_out_of_logs() {
    let srv = Scripted::without_search(|n, r| {
        if r.path == "/v3/auth/tokens" {
            Reply::Answer(
                201,
                vec![("X-Subject-Token", TOKEN_VALUE.into())],
                r#"{"token":{"expires_at":"2099-01-01T00:00:00Z"}}"#.into(),
            )
        } else {
            created(n)
        }
    });
    let p = Project::new();
    p.task("a");
    let out = p.run(
        &["apply", "--yes", "tasks", "--endpoint", &srv.url, "-vv"],
        &[
            ("HW_USER_NAME", "alice"),
            ("HW_PASSWORD", PASSWORD_VALUE),
            ("HW_DOMAIN_NAME", "d"),
            ("TASKFORM_IAM_ENDPOINT", &srv.url),
            ("RUST_LOG", "trace"),
        ],
    );
    out.succeeds();
    assert_clean("stderr", &out.stderr);
    assert_clean("stdout", &out.stdout);
    assert_clean("state", &p.state_folder_text());
}
