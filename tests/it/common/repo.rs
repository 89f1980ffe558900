//! A config repo in git (a local bare repository as the remote, a work tree pushing
//! to it) and the watcher's HTTP endpoints, for the watch tests.

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

pub fn status(port: u16) -> Value {
    http(port, "GET /status HTTP/1.0\r\n\r\n")
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

/// Prometheus text as (name, labels, value) samples.
pub fn metrics(port: u16) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let text = http(port, "GET /metrics HTTP/1.0\r\n\r\n")
        .map(|r| r.1)
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((
                        k.trim_start_matches(',').to_string(),
                        v.trim_end_matches('"').to_string(),
                    ))
                })
                .collect();
            Some((name.to_string(), labels, value))
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
