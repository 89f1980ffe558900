//! A config repo in git (a local bare repository as the remote, a work tree pushing
//! to it), `watch --git` of it, and the watcher's HTTP endpoints (status, metrics
//! parsed as Prometheus text, hooks), for the watch tests.

use super::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http(port: u16, request: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// GET `path`: (status, body); `None` while nothing listens.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, &format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n"))
}

pub fn status(port: u16) -> Value {
    get(port, "/status")
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

pub fn hook(port: u16, auth: &str) -> u16 {
    http(
        port,
        &format!("POST /hooks/git HTTP/1.0\r\n{auth}Content-Length: 0\r\n\r\n"),
    )
    .map(|r| r.0)
    .unwrap_or(0)
}

/// A work tree pushing to a bare repository: `remote.git`, `work/tasks/`.
pub fn repo(p: &Project) -> std::path::PathBuf {
    let root = p.path("git");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q", "--bare", "remote.git"]);
    git(&root, &["init", "-q", "-b", "main", "work"]);
    let work = root.join("work");
    std::fs::create_dir_all(work.join("tasks")).unwrap();
    std::fs::write(
        work.join("tasks/taskform.yaml"),
        format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
    )
    .unwrap();
    std::fs::write(work.join("tasks/a.yaml"), manifest("a", 10)).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "task a"]);
    git(
        &work,
        &[
            "remote",
            "add",
            "origin",
            &format!("file://{}", root.join("remote.git").display()),
        ],
    );
    git(&work, &["push", "-q", "origin", "main"]);
    work
}

pub fn commit(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "-f", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// `POST /reconcile` with `auth` (a header line with its CRLF, or nothing): the status.
pub fn sync(port: u16, auth: &str, query: &str) -> (u16, String) {
    http(
        port,
        &format!("POST /reconcile{query} HTTP/1.0\r\n{auth}Content-Length: 0\r\n\r\n"),
    )
    .unwrap_or((0, String::new()))
}

/// The metrics, parsed as Prometheus text: (name, labels, value) samples.
pub fn metrics(port: u16) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let (code, body) = get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (s.metric, labels, v)
        })
        .collect()
}

/// The value of the first sample named `name` with every label of `labels`.
pub fn sample(
    m: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    m.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// `taskform watch --git` of the project's bare repository (`--path tasks`, cache
/// `cache`, probes on `port`) with `args`, the demo token and the hook secret
/// `hook-secret`; its log goes to `log`.
pub fn watch_git(
    p: &Project,
    port: u16,
    args: &[&str],
    log: std::process::Stdio,
) -> std::process::Child {
    let url = format!("file://{}", p.path("git/remote.git").display());
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![
        "watch",
        "--git",
        &url,
        "--path",
        "tasks",
        "--git-cache",
        "cache",
        "--listen",
        &listen,
    ];
    all.extend_from_slice(args);
    p.cmd(&all)
        .env("TASKFORM_AUTH_TOKEN", TOKEN)
        .env("TASKFORM_WEBHOOK_SECRET", "hook-secret")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}
