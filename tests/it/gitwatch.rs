//! `taskform watch --git`: a local bare repository (a `file://` URL) as the remote.
//! Commits pushed to it are applied; an invalid one is not, and the last good one stays
//! live; a fix is applied; a force-push to an older commit too; a remote that goes
//! away and comes back is followed again; `/hooks/git` fetches at once with the
//! secret and refuses without it.

use crate::common::repo::*;
use crate::common::*;
use serde_json::Value;
use std::time::Duration;

/// A leader's arguments: the state in `state.json`, the emulator at `url`, fetching
/// every `poll` seconds.
fn leading<'a>(url: &'a str, poll: &'a str) -> [&'a str; 8] {
    [
        "--poll",
        poll,
        "--state",
        "state.json",
        "--endpoint",
        url,
        "--max-rate",
        "0",
    ]
}

fn live(port: u16) -> Option<String> {
    status(port)["revision"]["sha"].as_str().map(str::to_string)
}

#[test]
fn commits_are_applied_an_invalid_one_is_not_and_a_rewind_is() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    let first = git(&work, &["rev-parse", "HEAD"]);
    let port = free_port();
    let mut w = watch_git(
        &p,
        port,
        &leading(&emu.url, "1"),
        std::fs::File::create(p.path("watch.log")).unwrap().into(),
    );
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));
    assert_eq!(emu.tasks().len(), 1);

    // A new commit: exactly the new task.
    std::fs::write(work.join("tasks/b.yaml"), manifest("b", 10)).unwrap();
    let second = commit(&work, "task b");
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(second.as_str())));
    assert_eq!(emu.creates(), 2);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("state.json")).unwrap()).unwrap();
    assert_eq!(state["last_applied"]["revision"], second);
    assert_eq!(state["last_applied"]["subject"], "task b");
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
    .stdout_has(&format!("Live revision: {second} (task b)"));

    // An invalid commit: nothing sent, reported, the previous revision stays live.
    std::fs::write(work.join("tasks/c.yaml"), manifest("c", 10)).unwrap();
    std::fs::write(
        work.join("tasks/bad.yaml"),
        "name: bad\nschedule_config: {schedule_type: cron}\n",
    )
    .unwrap();
    let bad = commit(&work, "broken");
    assert!(wait_until(Duration::from_secs(20), || {
        status(port)["revision_problem"]["revision"] == bad.as_str()
    }));
    let s = status(port);
    assert_eq!(s["revision"]["sha"], second.as_str(), "{s}");
    // Every problem, with its path as in the repository (not the cache's tree), and
    // the revision's subject; the two fields do not point at each other.
    let problem = &s["revision_problem"];
    assert_eq!(problem["kind"], "invalid", "{s}");
    assert_eq!(problem["subject"], "broken", "{s}");
    let problems: Vec<&str> = problem["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p.starts_with("tasks/bad.yaml:")),
        "{s}"
    );
    assert!(!problems.iter().any(|p| p.contains("cache")), "{s}");
    let last_error = s["last_error"]["error"].as_str().unwrap();
    assert!(
        last_error.contains("invalid") && last_error.contains("tasks/bad.yaml:"),
        "{s}"
    );
    assert!(!last_error.contains("see the"), "{s}");
    assert_eq!(s["last_reconcile"]["problems"][0], problems[0], "{s}");
    assert_eq!(emu.creates(), 2, "nothing of the broken commit was sent");

    // The fix: applied.
    std::fs::remove_file(work.join("tasks/bad.yaml")).unwrap();
    let fixed = commit(&work, "fixed");
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(fixed.as_str())));
    assert_eq!(emu.tasks().len(), 3);
    // The error is over: cleared, and kept as resolved with the time.
    let s = status(port);
    assert!(s["last_error"].is_null(), "{s}");
    assert!(s["revision_problem"].is_null(), "{s}");
    assert!(s["resolved_error"]["resolved_at"].is_string(), "{s}");

    // Rewritten history: a force-push back to the first commit is applied like any.
    git(&work, &["reset", "-q", "--hard", &first]);
    git(&work, &["push", "-q", "-f", "origin", "main"]);
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));

    // The remote goes away: the live revision stays; it comes back: followed again.
    std::fs::rename(p.path("git/remote.git"), p.path("git/away.git")).unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        status(port)["revision_problem"]["error"]
            .as_str()
            .is_some_and(|p| p.contains("fetching main"))
    }));
    assert_eq!(live(port).as_deref(), Some(first.as_str()));
    std::fs::rename(p.path("git/away.git"), p.path("git/remote.git")).unwrap();
    std::fs::write(work.join("tasks/d.yaml"), manifest("d", 10)).unwrap();
    let back = commit(&work, "task d");
    // A hook fetches at once (and a wrong secret is refused).
    assert_eq!(hook(port, "Authorization: Bearer wrong\r\n"), 401);
    assert_eq!(hook(port, ""), 401);
    assert_eq!(hook(port, "Authorization: Bearer hook-secret\r\n"), 202);
    assert!(wait_until(Duration::from_secs(30), || live(port)
        .as_deref()
        == Some(back.as_str())));
    assert!(emu.tasks().iter().any(|t| t["name"] == "d"));
    sigterm(&w);
    assert_eq!(w.wait().unwrap().code(), Some(0));
    let log = std::fs::read_to_string(p.path("watch.log")).unwrap();
    assert!(
        log.contains("the revision's manifests are invalid"),
        "{log}"
    );
}

#[test]
fn a_state_inside_the_fetched_tree_is_refused() {
    let p = Project::new();
    repo(&p);
    let url = format!("file://{}", p.path("git/remote.git").display());
    p.run(
        &[
            "watch",
            "--git",
            &url,
            "--path",
            "tasks",
            "--git-cache",
            "cache",
            "--plan-only",
        ],
        &[],
    )
    .fails_with(1)
    .stderr_has("with --git, the state cannot live in the fetched tree");
}

#[test]
fn a_signed_hook_fetches_at_once_and_plan_only_is_ready() {
    use hmac::{Hmac, KeyInit, Mac};
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    let port = free_port();
    let mut w = watch_git(
        &p,
        port,
        &leading(&emu.url, "300"),
        std::process::Stdio::null(),
    );
    let first = git(&work, &["rev-parse", "HEAD"]);
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));
    std::fs::write(work.join("tasks/b.yaml"), manifest("b", 10)).unwrap();
    let second = commit(&work, "task b");
    // GitHub's signature of the body: a wrong one is refused, the right one fetches
    // at once (the poll is five minutes away).
    let body = r#"{"ref":"refs/heads/main"}"#;
    let sign = |key: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(body.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let post = |sig: &str| {
        http(
            port,
            &format!(
                "POST /hooks/git HTTP/1.0\r\nX-Hub-Signature-256: sha256={sig}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .map(|r| r.0)
    };
    assert_eq!(post(&sign(b"not-the-secret")), Some(401));
    assert_eq!(live(port).as_deref(), Some(first.as_str()));
    assert_eq!(post(&sign(b"hook-secret")), Some(202));
    assert!(wait_until(Duration::from_secs(10), || live(port)
        .as_deref()
        == Some(second.as_str())));
    sigterm(&w);
    assert_eq!(w.wait().unwrap().code(), Some(0));

    // A plan-only watcher is ready, and writes no state.
    let port = free_port();
    let mut w = watch_git(
        &p,
        port,
        &["--state", "plan-only.json", "--plan-only"],
        std::process::Stdio::null(),
    );
    assert!(wait_until(Duration::from_secs(20), || status(port)["role"]
        == "plan-only"
        && status(port)["last_reconcile"]["result"] == "success"));
    assert_eq!(
        http(port, "GET /readyz HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(200)
    );
    sigterm(&w);
    let _ = w.wait();
    assert!(
        !p.path("plan-only.json").exists(),
        "a plan-only watcher writes no state"
    );
}

#[test]
fn a_watcher_started_on_an_invalid_commit_waits_for_a_good_one() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    std::fs::write(
        work.join("tasks/taskform.yaml"),
        "project_id: [not, a, string]\n",
    )
    .unwrap();
    commit(&work, "broken settings");
    let port = free_port();
    let mut w = watch_git(
        &p,
        port,
        &leading(&emu.url, "1"),
        std::process::Stdio::null(),
    );
    assert!(wait_until(Duration::from_secs(20), || {
        let s = status(port);
        s["revision_problem"]["kind"] == "invalid"
            && s["revision_problem"]["problems"][0]
                .as_str()
                .is_some_and(|p| p.starts_with("tasks/taskform.yaml:1:"))
    }));
    assert_eq!(
        http(port, "GET /readyz HTTP/1.0\r\n\r\n").map(|r| r.0),
        Some(503)
    );
    std::fs::write(
        work.join("tasks/taskform.yaml"),
        format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
    )
    .unwrap();
    let good = commit(&work, "settings fixed");
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(good.as_str())));
    assert_eq!(emu.tasks().len(), 1);
    sigterm(&w);
    assert_eq!(w.wait().unwrap().code(), Some(0));
}

/// Two watchers cannot share a git cache: the second is refused at once and names the
/// first, which goes on.
#[test]
fn a_second_watcher_on_the_same_git_cache_is_refused() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    let work = repo(&p);
    let first = git(&work, &["rev-parse", "HEAD"]);
    let port = free_port();
    let args = leading(&emu.url, "300");
    let mut w = watch_git(&p, port, &args, std::process::Stdio::null());
    assert!(wait_until(Duration::from_secs(20), || live(port)
        .as_deref()
        == Some(first.as_str())));
    let second = watch_git(&p, free_port(), &args, std::process::Stdio::piped());
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the git cache cache is in use by") && err.contains("--git-cache"),
        "{err}"
    );
    assert_eq!(
        live(port).as_deref(),
        Some(first.as_str()),
        "the first goes on"
    );
    let _ = w.kill();
    let _ = w.wait();
}
