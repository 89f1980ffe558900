//! The chaos test: seeded, bounded, randomized. Concurrent appliers and watchers share
//! one state (PostgreSQL, or the state file) and work against the emulator with faults
//! (500s, 429s, creates whose answer is lost after the server committed them, slow
//! answers, a PUT that keeps a paused task paused), while the manifests change under
//! them (tasks added and removed, timeouts changed, CRON schedules turned on and off,
//! `on_change` switched between `update` and `recreate`) and actors die: SIGKILL of a
//! random one, `pg_terminate_backend` of the lock holder's session, a restart of the
//! database.
//!
//! After each round every actor is stopped, the emulator is restarted without faults
//! on the same data, one converging `apply --refresh --prune` runs, and then: one
//! remote task per manifest, every remote task recorded, nothing in doubt, no
//! duplicate, no task left paused, every `enabled: 1` CRON manifest scheduling on the
//! server, and `plan --refresh --detailed-exitcode` says "No changes".
//!
//! `TASKFORM_CHAOS_SEED` (default a fixed seed, so that CI makes the same choices) and
//! `TASKFORM_CHAOS_ROUNDS` (default 3) pick the run; a failure prints the seed and the
//! round, the emulator's tasks, the state and the actors' logs. The seed fixes every
//! choice (edits, actors, flags, faults, which event when); the processes' timing is
//! still the machine's, so a rerun replays the same storm, not the same interleaving.
//!
//! The PostgreSQL test restarts the database for real (`pg_ctl restart`) on a private
//! server it starts itself when it runs as root on a machine with PostgreSQL's binaries
//! (`.ci/run` does); elsewhere it uses the test server (`TASKFORM_TEST_POSTGRES`) and
//! stands in for a restart by terminating every session of its schema at once.

use crate::common::pg::{self, Pg};
use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Manifest names: `c0`..`c3` are CRON tasks, `c4`.. run once.
const NAMES: usize = 8;
const CRON_NAMES: usize = 4;
/// How long the actors run in one round.
const ROUND: Duration = Duration::from_secs(4);

/// Prints how to reproduce a failing run when the test panics.
struct Reproduce {
    test: &'static str,
    seed: u64,
    rounds: usize,
    round: usize,
}

impl Drop for Reproduce {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos seed {seed} failed in round {round}: rerun with TASKFORM_CHAOS_SEED={seed} TASKFORM_CHAOS_ROUNDS={rounds} cargo test --test chaos {test}",
                seed = self.seed,
                round = self.round,
                rounds = self.rounds,
                test = self.test,
            );
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

/// What one manifest says.
#[derive(Debug, Clone, Copy)]
struct Spec {
    timeout: i64,
    /// For a CRON task, `enabled` (0 or 1).
    enabled: Option<i64>,
}

fn name(i: usize) -> String {
    format!("c{i}")
}

fn text(name: &str, spec: Spec) -> String {
    match spec.enabled {
        None => manifest(name, spec.timeout),
        Some(enabled) => format!(
            "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 * * * ?\"\n  enabled: {enabled}\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n  databaseName: [db1]\n",
            timeout = spec.timeout
        ),
    }
}

/// The manifests, as the test last wrote them.
struct Manifests {
    specs: BTreeMap<usize, Spec>,
    settings: String,
}

impl Manifests {
    fn write(&self, p: &Project, i: usize) {
        let rel = format!("tasks/{}.yaml", name(i));
        match self.specs.get(&i) {
            // Written whole under a hidden name, then renamed: the watcher never reads
            // half a file (hidden paths are ignored).
            Some(spec) => {
                p.write(&format!("tasks/.{}.tmp", name(i)), &text(&name(i), *spec));
                std::fs::rename(p.path(&format!("tasks/.{}.tmp", name(i))), p.path(&rel)).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(p.path(&rel));
            }
        }
    }

    fn set_on_change(&self, p: &Project, on_change: &str) {
        p.write(
            "tasks/taskform.yaml",
            &format!("{}on_change: {on_change}\n", self.settings),
        );
    }

    /// One random edit: a task added or removed, its timeout changed, its schedule
    /// turned on or off.
    fn edit(&mut self, p: &Project, rng: &mut fastrand::Rng) -> String {
        let i = rng.usize(..NAMES);
        let what = match self.specs.get(&i).copied() {
            None => {
                let spec = Spec {
                    timeout: rng.i64(1..60),
                    enabled: (i < CRON_NAMES).then(|| rng.i64(0..=1)),
                };
                self.specs.insert(i, spec);
                format!("add {} {spec:?}", name(i))
            }
            Some(_) if rng.u8(..5) == 0 => {
                self.specs.remove(&i);
                format!("remove {}", name(i))
            }
            Some(mut spec) => {
                if spec.enabled.is_some() && rng.bool() {
                    spec.enabled = Some(1 - spec.enabled.unwrap());
                } else {
                    spec.timeout = rng.i64(1..60);
                }
                self.specs.insert(i, spec);
                format!("change {} {spec:?}", name(i))
            }
        };
        self.write(p, i);
        what
    }
}

/// A PostgreSQL server of the test's own, for real restarts: initdb and pg_ctl as the
/// `postgres` user, on loopback and a free port, trust authentication.
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePg {
    /// `None` when this is not root or PostgreSQL's binaries are not installed.
    fn start() -> Option<PrivatePg> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .collect();
        versions.sort();
        let bin = versions.pop()?;
        let dir = tempfile::tempdir().ok()?;
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        if !ok(Command::new("chown").arg("postgres:").arg(dir.path())) {
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            l.local_addr().ok()?.port()
        };
        let server = PrivatePg { dir, bin, port };
        let data = server.data();
        let initdb = server.bin.join("initdb");
        if !ok(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(initdb)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null()))
        {
            return None;
        }
        server.pg_ctl(&["start"]).then_some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o", &options])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg(&self) -> Pg {
        Pg {
            url: format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            password: String::new(),
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

/// Where the state lives, and what can be done to it.
enum Backend {
    File,
    Postgres {
        pg: Pg,
        schema: String,
        /// A server of our own, restarted for real; `None`: the shared test server.
        private: Option<PrivatePg>,
    },
}

impl Backend {
    fn is_pg(&self) -> bool {
        matches!(self, Backend::Postgres { .. })
    }

    /// Terminates the session holding the state's advisory lock; whether there was one.
    fn terminate_holder(&self) -> bool {
        let Backend::Postgres { pg, schema, .. } = self else {
            return false;
        };
        pg.value(&format!(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '{schema}'"
        ))
        .is_some_and(|n| n != "0")
    }

    /// Restarts the database (fast or immediate shutdown); without a private server,
    /// terminates every session of the schema at once instead.
    fn restart(&self, immediate: bool) -> String {
        match self {
            Backend::File => String::new(),
            Backend::Postgres {
                private: Some(server),
                ..
            } => {
                let mode = if immediate { "immediate" } else { "fast" };
                assert!(
                    server.pg_ctl(&["restart", "-m", mode]),
                    "pg_ctl restart -m {mode} failed; see {}",
                    server.dir.path().join("log").display()
                );
                format!("database restarted (-m {mode})")
            }
            Backend::Postgres { pg, schema, .. } => {
                let n = pg.value(&format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{schema}'"
                ));
                format!("every session terminated ({n:?})")
            }
        }
    }

    /// The state document, as the converged run wrote it (its journal folded in).
    fn state(&self, p: &Project) -> Value {
        match self {
            Backend::File => p.state(),
            Backend::Postgres { pg, schema, .. } => {
                let data = pg
                    .value(&format!(
                        "SELECT data FROM {schema}.states WHERE name = 'chaos'"
                    ))
                    .unwrap_or_else(|| "{}".into());
                serde_json::from_str(&data).expect("state JSON")
            }
        }
    }

    /// Rows of the journal not folded in yet.
    fn journal_rows(&self, p: &Project) -> usize {
        match self {
            Backend::File => std::fs::read_to_string(p.path("state/taskform.json.journal"))
                .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
                .unwrap_or(0),
            Backend::Postgres { pg, schema, .. } => pg
                .value(&format!("SELECT count(*) FROM {schema}.journal"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Apply,
    Watch,
}

struct Actor {
    child: Child,
    log: PathBuf,
}

/// The running actors; every one is killed when this is dropped.
struct Actors {
    list: Vec<Actor>,
    spawned: usize,
    killed: usize,
}

impl Actors {
    fn stop_all(&mut self) {
        for a in &mut self.list {
            if matches!(a.child.try_wait(), Ok(None)) {
                sigterm(&a.child);
            }
        }
        let end = Instant::now() + Duration::from_secs(4);
        for a in &mut self.list {
            while Instant::now() < end && matches!(a.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }
}

impl Drop for Actors {
    fn drop(&mut self) {
        for a in &mut self.list {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }
}

/// Counts of what a run did, printed at the end.
#[derive(Default, Debug)]
struct Tally {
    rounds: usize,
    edits: usize,
    actors: usize,
    sigkills: usize,
    holder_terminations: usize,
    restarts: usize,
    on_change_recreate_rounds: usize,
    converge_retries: usize,
    /// What the faulty emulators saw and did.
    requests: usize,
    creates: usize,
    puts: usize,
    stops: usize,
    runs: usize,
    deletes: usize,
    answered_500: usize,
    answered_429: usize,
    dropped_after_create: usize,
}

impl Tally {
    fn count(&mut self, emu: &Emu) {
        for r in emu.requests() {
            let path = r["path"].as_str().unwrap_or_default();
            self.requests += 1;
            match r["method"].as_str().unwrap_or_default() {
                "POST" if path.ends_with("/create") => self.creates += 1,
                "POST" if path.ends_with("action=stop") => self.stops += 1,
                "POST" if path.contains("action=run") => self.runs += 1,
                "PUT" => self.puts += 1,
                "DELETE" => self.deletes += 1,
                _ => {}
            }
            match r["status"].as_u64() {
                Some(500) => self.answered_500 += 1,
                Some(429) => self.answered_429 += 1,
                _ => {}
            }
            if r["dropped"] == true {
                self.dropped_after_create += 1;
            }
        }
    }
}

struct Chaos<'a> {
    p: &'a Project,
    backend: &'a Backend,
    rng: fastrand::Rng,
    manifests: Manifests,
    data: PathBuf,
    tally: Tally,
    events: Vec<String>,
    reproduce: Reproduce,
}

const EMU_BASE: [&str; 3] = ["--rate-limit", "0", "--put-keeps-paused"];

impl Chaos<'_> {
    fn faulty_emulator(&mut self) -> Emu {
        let latency = self.rng.u64(0..120).to_string();
        let seed = self.rng.u64(..).to_string();
        let fail = format!("{:.2}", self.rng.f64() * 0.08);
        let throttle = format!("{:.2}", self.rng.f64() * 0.08);
        let drop = format!("{:.2}", self.rng.f64() * 0.15);
        let data = self.data.display().to_string();
        let mut args: Vec<&str> = EMU_BASE.to_vec();
        args.extend([
            "--data",
            &data,
            "--latency-ms",
            &latency,
            "--fail-rate",
            &fail,
            "--throttle-rate",
            &throttle,
            "--drop-rate",
            &drop,
            "--seed",
            &seed,
        ]);
        self.events.push(format!("emulator {args:?}"));
        Emu::start(&args)
    }

    fn clean_emulator(&self) -> Emu {
        let data = self.data.display().to_string();
        let mut args: Vec<&str> = EMU_BASE.to_vec();
        args.extend(["--data", &data]);
        Emu::start(&args)
    }

    fn spawn(&mut self, actors: &mut Actors, kind: Kind, endpoint: &str) {
        let round = self.reproduce.round;
        let mut args: Vec<String> = match kind {
            Kind::Apply => vec![
                "apply".into(),
                "--yes".into(),
                "--lock-timeout".into(),
                self.rng.u64(1..6).to_string(),
            ],
            Kind::Watch => vec![
                "watch".into(),
                "--debounce-ms".into(),
                "100".into(),
                "--retry-interval".into(),
                "1".into(),
                "--lock-timeout".into(),
                "20".into(),
            ],
        };
        args.extend(
            ["tasks", "--endpoint", endpoint, "--timeout", "2"]
                .iter()
                .map(|s| s.to_string()),
        );
        if self.rng.bool() {
            args.extend(["--prune".into(), "--max-deletes".into(), "100".into()]);
        }
        if self.rng.u8(..3) == 0 {
            args.push("--refresh".into());
        }
        let n = actors.spawned;
        actors.spawned += 1;
        self.tally.actors += 1;
        let log = self.p.path(&format!("logs/r{round}-a{n}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&log).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self
            .p
            .cmd(&args)
            .env("TASKFORM_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn taskform");
        self.events
            .push(format!("a{n} (pid {}): {}", child.id(), args.join(" ")));
        actors.list.push(Actor { child, log });
    }

    /// One round: actors at work under faults and edits, then the check.
    fn round(&mut self) {
        let on_change = if self.rng.u8(..3) == 0 {
            self.tally.on_change_recreate_rounds += 1;
            "recreate"
        } else {
            "update"
        };
        self.manifests.set_on_change(self.p, on_change);
        self.events.push(format!("on_change: {on_change}"));
        for _ in 0..self.rng.usize(1..4) {
            let e = self.manifests.edit(self.p, &mut self.rng);
            self.events.push(e);
        }
        let emu = self.faulty_emulator();
        let mut actors = Actors {
            list: Vec::new(),
            spawned: 0,
            killed: 0,
        };
        // 2 or 3 slots, each an apply loop or a watcher, started at once.
        let slots: Vec<Kind> = (0..self.rng.usize(2..=3))
            .map(|_| match self.rng.u8(..5) {
                0 | 1 => Kind::Watch,
                _ => Kind::Apply,
            })
            .collect();
        // The actor each slot runs now (an index in `actors.list`).
        let mut running: Vec<usize> = Vec::new();
        for kind in &slots {
            self.spawn(&mut actors, *kind, &emu.url);
            running.push(actors.list.len() - 1);
        }
        let mut restarted = false;
        let end = Instant::now() + ROUND;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(self.rng.u64(50..300)));
            // Each slot runs again when its process ended.
            for (slot, kind) in slots.iter().enumerate() {
                if !matches!(actors.list[running[slot]].child.try_wait(), Ok(None)) {
                    self.spawn(&mut actors, *kind, &emu.url);
                    running[slot] = actors.list.len() - 1;
                }
            }
            match self.rng.u8(..100) {
                0..=24 => {
                    let e = self.manifests.edit(self.p, &mut self.rng);
                    self.tally.edits += 1;
                    self.events.push(e);
                }
                25..=34 => {
                    let live: Vec<usize> = (0..actors.list.len())
                        .filter(|&i| matches!(actors.list[i].child.try_wait(), Ok(None)))
                        .collect();
                    if !live.is_empty() {
                        let i = live[self.rng.usize(..live.len())];
                        let _ = actors.list[i].child.kill();
                        let _ = actors.list[i].child.wait();
                        actors.killed += 1;
                        self.tally.sigkills += 1;
                        self.events.push(format!(
                            "SIGKILL pid {} ({})",
                            actors.list[i].child.id(),
                            actors.list[i].log.display()
                        ));
                    }
                }
                35..=41 if self.backend.is_pg() && self.backend.terminate_holder() => {
                    self.tally.holder_terminations += 1;
                    self.events.push("lock holder's session terminated".into());
                }
                42..=45 if self.backend.is_pg() && !restarted => {
                    restarted = true;
                    let e = self.backend.restart(self.rng.bool());
                    self.tally.restarts += 1;
                    self.events.push(e);
                }
                _ => {}
            }
        }
        actors.stop_all();
        self.tally.count(&emu);
        drop(emu);
        self.check(&actors);
    }

    /// Converge with a clean service, then check everything.
    fn check(&mut self, actors: &Actors) {
        let emu = self.clean_emulator();
        let mut outputs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // A replace's superseded task is pruned by the next run (the plan is made
        // before the replace): up to 3 successful runs until one has nothing to do.
        let mut successes = 0;
        let converged = loop {
            let out = self.p.apply(
                &emu.url,
                &[
                    "--refresh",
                    "--prune",
                    "--max-deletes",
                    "1000",
                    "--timeout",
                    "2",
                    "--lock-timeout",
                    "20",
                ],
            );
            let ok = out.code == Some(0);
            let done = ok && out.stdout.contains("No changes");
            successes += usize::from(ok);
            // Only a lock still held (a server that has not noticed a killed session
            // yet) is worth another try after a failure; anything else is a finding.
            let again = match ok {
                true => !done && successes < 3,
                false => out.stderr.contains("locked by") && Instant::now() < deadline,
            };
            outputs.push(out);
            if !again {
                break done;
            }
            if !ok {
                self.tally.converge_retries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        };
        let mut problems = Vec::new();
        if !converged {
            problems.push("apply --refresh --prune did not converge (\"No changes\")".to_string());
        }
        let state = self.backend.state(self.p);
        let server = emu.tasks();
        let declared: BTreeSet<String> = self.manifests.specs.keys().map(|&i| name(i)).collect();
        let mut by_name: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for t in &server {
            by_name
                .entry(t["name"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(t);
        }
        for (n, ts) in &by_name {
            if ts.len() != 1 {
                problems.push(format!("{n}: {} remote tasks", ts.len()));
            }
            if !declared.contains(n) {
                problems.push(format!("{n}: on the server, declared by no manifest"));
            }
        }
        let mut recorded = BTreeSet::new();
        if let Some(tasks) = state["tasks"].as_object() {
            for (n, r) in tasks {
                recorded.insert(r["task_id"].as_str().unwrap_or_default().to_string());
                for s in r["superseded"].as_array().into_iter().flatten() {
                    recorded.insert(s["task_id"].as_str().unwrap_or_default().to_string());
                }
                if !declared.contains(n) {
                    problems.push(format!("{n}: recorded, declared by no manifest"));
                }
            }
        }
        for n in &declared {
            if !by_name.contains_key(n) {
                problems.push(format!("{n}: declared, not on the server"));
            }
            if state["tasks"].get(n).is_none() {
                problems.push(format!("{n}: declared, not recorded"));
            }
        }
        for t in &server {
            let id = t["id"].as_str().unwrap_or_default();
            if !recorded.contains(id) {
                problems.push(format!("{}: remote task {id} not recorded", t["name"]));
            }
            let enabled = &t["schedule_config"]["enabled"];
            if enabled == 5 {
                problems.push(format!("{}: left paused", t["name"]));
            }
        }
        for (i, spec) in &self.manifests.specs {
            if spec.enabled == Some(1) {
                let scheduling = by_name
                    .get(&name(*i))
                    .is_some_and(|ts| ts.iter().all(|t| t["schedule_config"]["enabled"] == 3));
                if !scheduling {
                    problems.push(format!("{}: enabled: 1, not scheduling", name(*i)));
                }
            }
        }
        for key in ["in_doubt", "duplicates"] {
            if state[key].as_object().is_some_and(|m| !m.is_empty()) {
                problems.push(format!("the state has {key}: {}", state[key]));
            }
        }
        let journal = self.backend.journal_rows(self.p);
        if journal != 0 {
            problems.push(format!("{journal} journal rows left after a converged run"));
        }
        let plan = self.p.online(
            &["plan", "tasks", "--refresh", "--detailed-exitcode"],
            &emu.url,
        );
        if plan.code != Some(0) || !plan.stdout.contains("No changes") {
            problems.push(format!(
                "plan --refresh --detailed-exitcode exited {:?}:\n{}{}",
                plan.code, plan.stdout, plan.stderr
            ));
        }
        for a in &actors.list {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            if log.contains("panicked at") {
                problems.push(format!("{} panicked", a.log.display()));
            }
        }
        if problems.is_empty() {
            return;
        }
        let mut report = format!(
            "chaos round {} (seed {}): {} problem(s):\n  {}\n",
            self.reproduce.round,
            self.reproduce.seed,
            problems.len(),
            problems.join("\n  ")
        );
        let _ = writeln!(report, "--- events ---\n{}", self.events.join("\n"));
        for (i, out) in outputs.iter().enumerate() {
            let _ = writeln!(
                report,
                "--- converging apply {i}: exit {:?} ---\n{}{}",
                out.code, out.stdout, out.stderr
            );
        }
        let _ = writeln!(
            report,
            "--- emulator tasks ---\n{}",
            serde_json::to_string_pretty(&server).unwrap()
        );
        let _ = writeln!(
            report,
            "--- state ---\n{}",
            serde_json::to_string_pretty(&state).unwrap()
        );
        for a in &actors.list {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            let _ = writeln!(
                report,
                "--- {} (last {} lines) ---\n{}",
                a.log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
        panic!("{report}");
    }
}

fn run(test: &'static str, p: &Project, backend: &Backend) {
    let seed = env_number("TASKFORM_CHAOS_SEED", 20_260_501);
    let rounds = env_number("TASKFORM_CHAOS_ROUNDS", 3) as usize;
    let settings = std::fs::read_to_string(p.path("tasks/taskform.yaml")).unwrap();
    let mut chaos = Chaos {
        p,
        backend,
        rng: fastrand::Rng::with_seed(seed),
        manifests: Manifests {
            specs: BTreeMap::new(),
            settings,
        },
        data: p.path("emulator.json"),
        tally: Tally::default(),
        events: Vec::new(),
        reproduce: Reproduce {
            test,
            seed,
            rounds,
            round: 0,
        },
    };
    eprintln!("chaos seed {seed}, {rounds} rounds ({test})");
    for i in 0..NAMES {
        if chaos.rng.bool() {
            let spec = Spec {
                timeout: chaos.rng.i64(1..60),
                enabled: (i < CRON_NAMES).then(|| chaos.rng.i64(0..=1)),
            };
            chaos.manifests.specs.insert(i, spec);
            chaos.manifests.write(p, i);
        }
    }
    let started = Instant::now();
    for round in 0..rounds {
        chaos.reproduce.round = round;
        chaos.events.clear();
        chaos.round();
        chaos.tally.rounds += 1;
    }
    eprintln!(
        "chaos seed {seed}: {:?} in {:.1} s",
        chaos.tally,
        started.elapsed().as_secs_f64()
    );
}

/// Every taskform process gets a 5 s lease renewed every second (a 1 s margin: a
/// process paused longer than that between its check and its send, on a loaded
/// machine, is outside the lease's timing assumption), so that a takeover waits about
/// 7 s (the lease plus the holder's 2 s `--timeout`).
fn short_lease(p: &mut Project) {
    p.env.push(("TASKFORM_LEASE".into(), "5".into()));
    p.env.push(("TASKFORM_LEASE_RENEW".into(), "1".into()));
}

#[test]
fn chaos_on_a_postgres_state() {
    let Some(shared) = pg::server(module_path!()) else {
        return;
    };
    let private = PrivatePg::start();
    if private.is_none() {
        eprintln!(
            "chaos: no private PostgreSQL server (not root, or no /usr/lib/postgresql/*/bin): database restarts are stood in for by terminating every session of the schema"
        );
    }
    let pg = private.as_ref().map(PrivatePg::pg).unwrap_or(shared);
    let (mut p, schema) = pg.project("chaos");
    short_lease(&mut p);
    let backend = Backend::Postgres {
        pg,
        schema,
        private,
    };
    run("chaos_on_a_postgres_state", &p, &backend);
}

#[test]
fn chaos_on_a_file_state() {
    let mut p = Project::new();
    short_lease(&mut p);
    run("chaos_on_a_file_state", &p, &Backend::File);
}
