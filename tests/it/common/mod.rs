//! Integration-test helpers: a project folder, the real binary, the emulator as a child
//! process, and a scripted HTTP server for answers the emulator does not give.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PROJECT: &str = "0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d";
pub const WORKSPACE: &str = "demo-workspace";
pub const TOKEN: &str = "taskform-demo-token";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_taskform"))
}

/// A temporary config repo: `tasks/` with manifests and a settings file.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Environment every command of this project gets (a PostgreSQL password).
    pub env: Vec<(String, String)>,
}

impl Project {
    /// A project whose settings name the emulator's demo project and workspace, and the
    /// state file `state/taskform.json` beside `tasks/`.
    pub fn new() -> Project {
        let p = Project {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        };
        p.write("tasks/taskform.yaml", &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: ../state/taskform.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"));
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Writes `tasks/{name}.yaml`, a valid task.
    pub fn task(&self, name: &str) -> &Self {
        self.write(&format!("tasks/{name}.yaml"), &manifest(name, 10))
    }

    /// Writes `n` tasks named `t0000`...
    pub fn tasks(&self, n: usize) -> &Self {
        for i in 0..n {
            self.task(&format!("t{i:04}"));
        }
        self
    }

    /// The binary, run in the project folder with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.dir.path())
            .env_clear()
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        c
    }

    /// Runs to completion.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        let out = c.output().expect("run taskform");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs to completion in the folder `sub` of the project.
    pub fn run_in(&self, sub: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        c.current_dir(self.path(sub));
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c.output().expect("run taskform").into()
    }

    /// Runs `args --endpoint ENDPOINT` with the demo token.
    pub fn online(&self, args: &[&str], endpoint: &str) -> Output {
        let mut all = args.to_vec();
        all.extend(["--endpoint", endpoint]);
        self.run(&all, &[("TASKFORM_AUTH_TOKEN", TOKEN)])
    }

    /// `apply --yes tasks` against an endpoint with the demo token.
    pub fn apply(&self, endpoint: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "--yes", "tasks"];
        args.extend_from_slice(extra);
        self.online(&args, endpoint)
    }

    /// `plan --format json tasks`, parsed.
    pub fn plan_json(&self) -> Value {
        self.run(&["plan", "--format", "json", "tasks"], &[])
            .succeeds()
            .json()
    }

    pub fn state(&self) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.path("state/taskform.json")).expect("state file"),
        )
        .expect("state JSON")
    }

    /// Every file the run left in the state folder, concatenated.
    pub fn state_folder_text(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.path("state")) {
            for e in rd.flatten() {
                s.push_str(&String::from_utf8_lossy(
                    &std::fs::read(e.path()).unwrap_or_default(),
                ));
            }
        }
        s
    }
}

pub mod envs;
pub mod pg;
pub mod repo;

/// A valid manifest.
pub fn manifest(name: &str, timeout: i64) -> String {
    format!(
        "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n  databaseName: [db1]\n"
    )
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Chainable assertions, in the style of casey/just's tests:
/// `p.run(&["plan", "tasks"], &[]).succeeds().stdout_has("No changes")`. A failure
/// names the expectation and shows the exit code and the whole stdout and stderr, and
/// (through `#[track_caller]`) points at the line in the test.
impl Output {
    /// Panics with `expectation`, the exit code, stdout and stderr.
    #[track_caller]
    pub fn fail(&self, expectation: &str) -> ! {
        let code = match self.code {
            Some(c) => c.to_string(),
            None => "none (killed by a signal)".to_string(),
        };
        panic!(
            "{expectation}\nexit code: {code}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.stdout, self.stderr
        )
    }

    /// Exit code 0.
    #[track_caller]
    pub fn succeeds(&self) -> &Self {
        if self.code != Some(0) {
            self.fail("expected success (exit code 0)");
        }
        self
    }

    /// Exactly exit code `code` (not 0: use `succeeds`).
    #[track_caller]
    pub fn fails_with(&self, code: i32) -> &Self {
        assert_ne!(code, 0, "fails_with(0): use succeeds()");
        if self.code != Some(code) {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            self.fail(&format!("expected stdout to contain {needle:?}"));
        }
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            self.fail(&format!("expected stderr to contain {needle:?}"));
        }
        self
    }

    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        if self.stdout.contains(needle) {
            self.fail(&format!("expected stdout not to contain {needle:?}"));
        }
        self
    }

    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        if self.stderr.contains(needle) {
            self.fail(&format!("expected stderr not to contain {needle:?}"));
        }
        self
    }

    /// stdout is exactly `expected`.
    #[track_caller]
    pub fn stdout_is(&self, expected: &str) -> &Self {
        if self.stdout != expected {
            self.fail(&format!("expected stdout to be exactly {expected:?}"));
        }
        self
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("expected stdout to be one JSON document: {e}")),
        }
    }
}

/// The emulator, as a child process on an ephemeral port.
pub struct Emu {
    child: Child,
    pub url: String,
    pub addr: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Emu {
    pub fn start(args: &[&str]) -> Emu {
        let mut c = Command::new(bin());
        c.env_clear()
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("emulator URL");
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "first line: {url:?}");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let addr = url.trim_start_matches("http://").to_string();
        Emu {
            child,
            url,
            addr,
            stderr,
        }
    }

    fn get(&self, path: &str) -> Value {
        get_json(&self.addr, path)
    }

    /// Every task on the server.
    pub fn tasks(&self) -> Vec<Value> {
        self.get("/_emulator/tasks")["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every API request received.
    pub fn requests(&self) -> Vec<Value> {
        self.get("/_emulator/requests")["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Create requests received.
    pub fn creates(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/create")))
            .count()
    }

    /// An API request made outside taskform (an operator in the console): returns the
    /// status and the body.
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let path = format!("/v3/{PROJECT}/metadata/tasks{path}");
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nX-Auth-Token: {TOKEN}\r\nworkspace: {WORKSPACE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The API requests received, as `METHOD path status` without the project prefix.
    pub fn calls(&self) -> Vec<String> {
        let prefix = format!("/v3/{PROJECT}/metadata/tasks");
        self.requests()
            .iter()
            .map(|r| {
                let path = r["path"].as_str().unwrap_or_default();
                format!(
                    "{} {} {}",
                    r["method"].as_str().unwrap_or_default(),
                    path.strip_prefix(&prefix).unwrap_or(path),
                    r["status"]
                )
            })
            .collect()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET returning JSON.
pub fn get_json(addr: &str, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A request as the scripted server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the scripted server does with a request.
pub enum Reply {
    /// Status, extra headers, body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Waits, then closes without answering.
    Hang(Duration),
    /// Closes the connection without answering.
    Close,
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;
/// Answers a request itself (not scripted, not recorded), or passes it on.
type Answer = dyn Fn(&Received) -> Option<Reply> + Send + Sync;

/// An HTTP server on an ephemeral port that answers by a script and records requests.
pub struct Scripted {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Scripted {
    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Scripted {
        Scripted::start_filtered(|_| None, script)
    }

    /// A gateway that publishes the create endpoint alone: searches are answered 404
    /// `APIG.0101` here (so taskform's search before creating into an empty state finds
    /// no search, as on such a gateway) and are neither scripted nor recorded; every
    /// other request goes to `script`, numbered from 0.
    pub fn without_search(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Scripted {
        let n = std::sync::atomic::AtomicUsize::new(0);
        Scripted::start_filtered(
            |r| {
                r.path.ends_with("/metadata/tasks/search").then(|| {
                    api_error(
                        404,
                        "APIG.0101",
                        "The API does not exist or has not been published in the environment",
                    )
                })
            },
            move |_, r| script(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst), r),
        )
    }

    /// Like `start`, but a request for which `answer` gives a reply gets it without
    /// being scripted or recorded.
    fn start_filtered(
        answer: impl Fn(&Received) -> Option<Reply> + Send + Sync + 'static,
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Scripted {
        let answer: Arc<Answer> = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let script: Arc<Script> = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let rec = rec.clone();
                let script = script.clone();
                let answer = answer.clone();
                std::thread::spawn(move || serve_filtered(stream, &rec, &*script, &*answer));
            }
        });
        Scripted { url, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve_filtered(stream: TcpStream, rec: &Mutex<Vec<Received>>, script: &Script, answer: &Answer) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut start = String::new();
        if reader.read_line(&mut start).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let r = Received {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        };
        let reply = match answer(&r) {
            Some(reply) => reply,
            None => {
                let n = {
                    let mut g = rec.lock().unwrap();
                    g.push(r.clone());
                    g.len() - 1
                };
                script(n, &r)
            }
        };
        match reply {
            Reply::Answer(status, extra, body) => {
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                if out.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
            Reply::Close => return,
        }
    }
}

/// `{"task_id": "<n as 32 hex>"}`.
pub fn created(n: usize) -> Reply {
    Reply::Answer(200, vec![], format!("{{\"task_id\":\"{n:032x}\"}}"))
}

pub fn api_error(status: u16, code: &str, msg: &str) -> Reply {
    Reply::Answer(
        status,
        vec![],
        format!("{{\"error_code\":\"{code}\",\"error_msg\":\"{msg}\"}}"),
    )
}

/// Waits until `f` holds or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Copies the folder `from` (recursively) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file below `dir` (recursively).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.path().is_dir() {
            true => out.extend(files_below(&e.path())),
            false => out.push(e.path()),
        }
    }
    out
}

/// Every file below `dir`, concatenated (as text, lossily).
pub fn text_below(dir: &Path) -> String {
    files_below(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

pub fn file_exists(p: &Path) -> bool {
    p.exists()
}

impl Project {
    /// `apply FILE` (a saved plan) with the demo token and no --yes.
    pub fn apply_file(&self, file: &str, endpoint: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", file];
        args.extend_from_slice(extra);
        self.online(&args, endpoint)
    }
}

/// The apply invariants, checked by comparing the emulator's tasks with the state (as
/// every command reads it, journal included): every recorded ID is one the server
/// returned; every task on the server is recorded or in doubt (never planned as a
/// fresh create); no name exists twice on the server. Returns the plan.
pub fn check_invariants(p: &Project, emu: &Emu) -> Value {
    let plan = p.plan_json();
    let mut server: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for t in emu.tasks() {
        server
            .entry(t["name"].as_str().unwrap().to_string())
            .or_default()
            .push(t["id"].as_str().unwrap().to_string());
    }
    for t in plan["tasks"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        match t["action"].as_str().unwrap() {
            "unchanged" | "replace" | "orphan" => {
                let id = t["task_id"].as_str().unwrap();
                assert!(
                    server
                        .get(name)
                        .is_some_and(|ids| ids.iter().any(|i| i == id)),
                    "{name}: recorded ID {id} is not on the server"
                );
            }
            "create" => assert!(
                !server.contains_key(name),
                "{name} exists on the server but would be created again"
            ),
            "in_doubt" => {}
            other => panic!("unexpected action {other} for {name}"),
        }
    }
    for (name, ids) in &server {
        assert_eq!(ids.len(), 1, "{name} created twice: {ids:?}");
    }
    plan
}

impl Project {
    /// Starts taskform with `args` and the demo token in the background; stdout and
    /// stderr are captured (read them with `wait_with_output`).
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut c = self.cmd(args);
        c.env("TASKFORM_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn taskform")
    }

    /// Starts `apply --yes tasks --endpoint URL EXTRA...` in the background with the
    /// demo token, its output discarded.
    pub fn spawn_apply(&self, endpoint: &str, extra: &[&str]) -> Child {
        let mut args = vec!["apply", "--yes", "tasks", "--endpoint", endpoint];
        args.extend_from_slice(extra);
        let mut c = self.cmd(&args);
        c.env("TASKFORM_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().expect("spawn taskform")
    }
}

/// Sends SIGTERM.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}
