//! The PostgreSQL state backend against a real server (see `crate::common::pg`): the same
//! guarantees as the file backend, across processes: one lock, nothing lost after
//! kill -9, no request sent by a process that lost its lock, exact copies, clear
//! errors that never show the password.

use crate::common::pg::{self, Pg};
use crate::common::*;
use std::time::Duration;

macro_rules! server {
    () => {
        match pg::server(module_path!()) {
            Some(pg) => pg,
            None => return,
        }
    };
}

fn tasks_on(emu: &Emu) -> usize {
    emu.tasks().len()
}

#[test]
fn apply_plan_and_saved_plans_work_on_a_postgres_state() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (p, schema) = pg.project("ci");
    p.tasks(5);
    p.apply(&emu.url, &[]).succeeds().stdout_has("5 created");
    assert!(!p.path("state/taskform.json").exists(), "no state file");
    assert_eq!(
        pg.value(&format!(
            "SELECT count(*) FROM {schema}.states WHERE name = 'ci' AND data LIKE '%t0004%'"
        ))
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        pg.value(&format!(
            "SELECT value FROM {schema}.meta WHERE key = 'schema_version'"
        ))
        .as_deref(),
        Some("3")
    );
    p.online(&["plan", "tasks"], &emu.url)
        .succeeds()
        .stdout_has("No changes")
        .stdout_has("(state \"ci\"");
    // A saved plan: made and applied against the PostgreSQL state.
    p.task("t0005");
    p.online(&["plan", "tasks", "--out", "next.plan"], &emu.url)
        .succeeds();
    let plan = std::fs::read_to_string(p.path("next.plan")).unwrap();
    assert!(plan.contains("(state \\\"ci\\\" in schema"), "{plan}");
    p.apply_file("next.plan", &emu.url, &[])
        .succeeds()
        .stdout_has("1 created");
    // The state moved on: the same plan is stale now.
    p.apply_file("next.plan", &emu.url, &[])
        .fails_with(1)
        .stderr_has("moved on");
    // Another state name is another state: the plan refuses it.
    p.online(&["plan", "tasks", "--out", "again.plan"], &emu.url)
        .succeeds();
    p.apply_file("again.plan", &emu.url, &["--state-name", "other"])
        .fails_with(1)
        .stderr_has("the plan was made against the PostgreSQL state");
    p.run(&["state", "list", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has("t0005");
    check_invariants(&p, &emu);
    assert_eq!(tasks_on(&emu), 6);
}

#[test]
fn named_states_are_separate_and_a_file_state_takes_no_name() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (p, schema) = pg.project("dev");
    p.tasks(2);
    p.apply(&emu.url, &[]).succeeds();
    p.apply(&emu.url, &["--state-name", "staging"])
        .fails_with(1)
        .stderr_has("already has");
    let names = pg.sql(&format!("SELECT name FROM {schema}.states ORDER BY name"));
    assert_eq!(names, vec![vec![Some("dev".to_string())]]);
    p.run(
        &["plan", "tasks", "--state", "x.json", "--state-name", "prod"],
        &[],
    )
    .fails_with(1)
    .stderr_has("applies to a PostgreSQL state only");
}

#[test]
fn two_applies_at_once_one_creates_the_other_names_the_holder_or_waits() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "20"]);
    let (p, _) = pg.project("race");
    p.tasks(40);
    let args = ["apply", "--yes", "tasks", "--endpoint", &emu.url];
    let a = p.spawn(&args);
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 1));
    let b = p.run(&args, &[("TASKFORM_AUTH_TOKEN", TOKEN)]);
    b.fails_with(1)
        .stderr_has("is locked by taskform apply (pid ")
        .stderr_has(&format!("pid {}", a.id()));
    Output::from(a.wait_with_output().unwrap()).succeeds();
    assert_eq!(tasks_on(&emu), 40);

    // With --lock-timeout the second waits, then finds nothing to do.
    p.tasks(60);
    let a = p.spawn(&args);
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 41));
    let mut waiting = args.to_vec();
    waiting.extend(["--lock-timeout", "60"]);
    p.run(&waiting, &[("TASKFORM_AUTH_TOKEN", TOKEN)])
        .succeeds()
        .stdout_has("No changes");
    Output::from(a.wait_with_output().unwrap()).succeeds();
    assert_eq!(emu.creates(), 60);
    check_invariants(&p, &emu);
}

#[test]
fn kill_9_at_seeded_moments_loses_nothing_and_duplicates_nothing() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "5"]);
    let (p, _) = pg.project("kill");
    p.tasks(300);
    let mut rng = fastrand::Rng::with_seed(1616);
    for round in 0..6 {
        let mut child = p.spawn_apply(&emu.url, &["--max-rate", "0", "--concurrency", "8"]);
        std::thread::sleep(Duration::from_millis(rng.u64(30..400)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let plan = check_invariants(&p, &emu);
        eprintln!("round {round}: {}", plan["summary"]);
    }
    // A run from another process settles what was in doubt and creates the rest.
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["unchanged"], 300);
    assert_eq!(tasks_on(&emu), 300);
}

#[test]
fn a_terminated_lock_connection_stops_the_run_and_the_next_run_converges() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "30"]);
    let (p, schema) = pg.project("fenced");
    p.tasks(120);
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
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 10));
    let killed = pg.value(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ));
    assert_eq!(killed.as_deref(), Some("1"));
    let out = Output::from(child.wait_with_output().unwrap());
    out.fails_with(1).stderr_has("lock was lost");
    let sent = emu.creates();
    assert!(sent < 120, "the run stopped sending ({sent} creates)");
    // Every task the server holds was created under a committed intent: it is
    // recorded or in doubt, never planned as a fresh create.
    check_invariants(&p, &emu);
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["unchanged"], 120);
    assert_eq!(tasks_on(&emu), 120);
}

/// The leases issue's scenario: runner A is paced so that creates are queued behind
/// the pacer with their intents committed; its lock connection is terminated (what a
/// failover does); runner B retries until it gets the lock. B must wait out A's lease
/// (3 s here) and A's request timeout before it settles A's intents by search, and A
/// must send nothing once its lease cannot be confirmed: one task per name.
#[test]
fn a_lost_lock_with_a_runner_waiting_costs_no_duplicate() {
    let pg = server!();
    lost_lock_scenario(&pg, "lease", &[], &[]);
}

/// The same with the two runners' clocks hours apart (libfaketime): the lease is
/// written and read by the database's clock alone, and each runner measures its own
/// on its monotonic clock, so neither waits too little nor hours too long.
#[test]
fn the_runners_clocks_do_not_matter_to_the_lease() {
    let pg = server!();
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if !std::path::Path::new(LIB).exists() {
        if std::env::var_os("CI").is_some()
            || std::env::var_os("TASKFORM_REQUIRE_POSTGRES").is_some()
        {
            panic!("{LIB} is missing: apt-get install faketime (.ci/run installs it)");
        }
        eprintln!("skipped: {LIB} is missing (apt-get install faketime)");
        return;
    }
    // The wall clocks differ (the machines' clocks); each monotonic clock is its own.
    let ahead = [
        ("LD_PRELOAD", LIB),
        ("FAKETIME", "+3h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let behind = [
        ("LD_PRELOAD", LIB),
        ("FAKETIME", "-5h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let (a, b) = lost_lock_scenario(&pg, "clocks", &ahead, &behind);
    // The fake clocks took effect: the log lines' times are hours apart.
    let hour = |text: &str| -> Option<u32> {
        text.lines().find_map(|l| {
            l.get(11..13)
                .and_then(|h| h.parse().ok())
                .filter(|_| l.starts_with("20"))
        })
    };
    assert_ne!(
        hour(&a.stderr),
        hour(&b.stderr),
        "A: {}\nB: {}",
        a.stderr,
        b.stderr
    );
}

/// Runs the scenario with extra environment for runner A and for runner B; returns
/// both outputs after checking that no task was created twice.
fn lost_lock_scenario(
    pg: &Pg,
    name: &str,
    a_env: &[(&str, &str)],
    b_env: &[(&str, &str)],
) -> (Output, Output) {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (mut p, schema) = pg.project(name);
    p.env.push(("TASKFORM_LEASE".into(), "3".into()));
    p.env.push(("TASKFORM_LEASE_RENEW".into(), "1".into()));
    p.tasks(21);
    let mut a = p.cmd(&[
        "apply",
        "--yes",
        "tasks",
        "--endpoint",
        &emu.url,
        "--max-rate",
        "2",
        "--timeout",
        "2",
    ]);
    a.env("TASKFORM_AUTH_TOKEN", TOKEN)
        .envs(a_env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let a = a.spawn().expect("spawn runner A");
    assert!(wait_until(Duration::from_secs(20), || emu.creates() >= 3));
    let killed = pg.value(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ));
    assert_eq!(killed.as_deref(), Some("1"));
    let started = std::time::Instant::now();
    let mut env = vec![("TASKFORM_AUTH_TOKEN", TOKEN)];
    env.extend_from_slice(b_env);
    let b = loop {
        let b = p.run(
            &[
                "apply",
                "--yes",
                "tasks",
                "--endpoint",
                &emu.url,
                "--max-rate",
                "0",
            ],
            &env,
        );
        if b.code == Some(0) {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "runner B never got through: {b:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // B waited about the lease and A's timeout (3 + 2 s), not hours.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "runner B took {:?}",
        started.elapsed()
    );
    let a = Output::from(a.wait_with_output().unwrap());
    check_invariants(&p, &emu);
    assert_eq!(tasks_on(&emu), 21, "one remote task per manifest");
    a.fails_with(1)
        .stderr_has("nothing more was sent")
        .stderr_lacks("could not be journaled");
    b.stderr_has("waiting")
        .stderr_has("previous holder's lease");
    p.online(&["plan", "tasks", "--refresh"], &emu.url)
        .succeeds()
        .stdout_has("No changes");
    (a, b)
}

#[test]
fn state_copy_round_trips_exactly_and_refuses_another_lineage() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = Project::new();
    p.tasks(3);
    p.apply(&emu.url, &[]).succeeds();
    let original = std::fs::read(p.path("state/taskform.json")).unwrap();
    let schema = pg::fresh_schema();
    let url = pg.url_with("sslmode=disable");
    let pw = [("PGPASSWORD", pg.password.as_str())];
    let copy = |src: &str, dst: &str, extra: &[&str]| {
        let mut args = vec!["state", "copy", src, dst, "--state-schema", &schema];
        args.extend_from_slice(extra);
        p.run(&args, &pw)
    };
    copy("state/taskform.json", &url, &["--state-name", "moved"])
        .succeeds()
        .stdout_has("Copied the state state/taskform.json to postgres://")
        .stdout_has("serial 2, 3 tasks");
    copy(&url, "back.json", &["--state-name", "moved"]).succeeds();
    assert_eq!(std::fs::read(p.path("back.json")).unwrap(), original);
    // Another lineage in the destination: refused, then replaced with --force.
    let other = Project::new();
    other.task("z");
    other.apply(&emu.url, &[]).succeeds();
    let other_state = other.path("state/taskform.json");
    let other_state = other_state.to_str().unwrap();
    copy(other_state, &url, &["--state-name", "moved"])
        .fails_with(1)
        .stderr_has("holds another state")
        .stderr_has("--force");
    copy(other_state, &url, &["--state-name", "moved", "--force"])
        .succeeds()
        .stdout_has("replacing another state");
    // Applying with the copied state creates nothing again.
    copy(
        "state/taskform.json",
        &url,
        &["--state-name", "moved", "--force"],
    )
    .succeeds();
    p.write(
        "tasks/taskform.yaml",
        &format!(
            "project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: {url}\nstate_name: moved\nstate_schema: {schema}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"
        ),
    );
    std::fs::remove_file(p.path("state/taskform.json")).unwrap();
    p.run(
        &["apply", "--yes", "tasks", "--endpoint", &emu.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN), ("PGPASSWORD", &pg.password)],
    )
    .succeeds()
    .stdout_has("No changes");
    assert_eq!(tasks_on(&emu), 4);
}

#[test]
fn bad_credentials_unreachable_servers_and_newer_schemas_are_clear_errors() {
    let pg = server!();
    let secret = "Wr0ngSecret-4711";
    let host_part = pg.url.trim_start_matches("postgres://");
    let (user, rest) = host_part.split_once('@').unwrap();
    let p = Project::new();
    p.task("a");
    let wrong = format!("postgres://{user}:{secret}@{rest}?sslmode=disable");
    let out = p.run(&["plan", "tasks", "--state", &wrong], &[]);
    out.fails_with(1)
        .stderr_has("password authentication failed")
        .stderr_has("Check the password (taken from the URL)");
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    // A wrong PGPASSWORD (no password in the URL).
    let out = p.run(
        &[
            "plan",
            "tasks",
            "--state",
            &format!("postgres://{user}@{rest}?sslmode=disable"),
        ],
        &[("PGPASSWORD", secret)],
    );
    out.fails_with(1).stderr_has("taken from PGPASSWORD");
    assert!(!out.stderr.contains(secret));
    // No password anywhere.
    p.run(
        &[
            "plan",
            "tasks",
            "--state",
            &format!("postgres://{user}@{rest}?sslmode=disable"),
        ],
        &[("HOME", "/nonexistent")],
    )
    .fails_with(1)
    .stderr_has("none was given");
    // Nobody listening.
    let out = p.run(
        &[
            "plan",
            "tasks",
            "--state",
            &format!("postgres://{user}:{secret}@127.0.0.1:1/tasks"),
        ],
        &[],
    );
    out.fails_with(1)
        .stderr_has("127.0.0.1:1/tasks")
        .stderr_has("Connection refused");
    assert!(!out.stderr.contains(secret));
    // A schema written by a newer taskform.
    let (p, schema) = pg.project("x");
    p.task("a");
    p.run(&["plan", "tasks"], &[]).succeeds();
    pg.sql(&format!(
        "UPDATE {schema}.meta SET value = '99' WHERE key = 'schema_version'"
    ));
    p.run(&["plan", "tasks"], &[])
        .fails_with(1)
        .stderr_has("written by a newer taskform (schema version 99");
}

#[test]
fn an_older_schema_is_migrated() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (p, schema) = pg.project("old");
    p.tasks(2);
    p.apply(&emu.url, &[]).succeeds();
    // Back to version 1: no lock-holder table.
    pg.sql(&format!(
        "DROP TABLE {schema}.locks; UPDATE {schema}.meta SET value = '1' WHERE key = 'schema_version'"
    ));
    p.tasks(3);
    p.apply(&emu.url, &[]).succeeds().stdout_has("1 created");
    assert_eq!(
        pg.value(&format!(
            "SELECT value FROM {schema}.meta WHERE key = 'schema_version'"
        ))
        .as_deref(),
        Some("3")
    );
    assert_eq!(
        pg.value(&format!("SELECT count(*) FROM {schema}.locks"))
            .as_deref(),
        Some("0"),
        "the holder row goes with the lock"
    );
}

#[test]
fn tls_modes_follow_libpq() {
    let pg = server!();
    if pg.value("SHOW ssl").as_deref() != Some("on") {
        panic!("the test server has ssl = off; pg_virtualenv's clusters have it on");
    }
    let cert = pg.value("SHOW ssl_cert_file").expect("ssl_cert_file");
    assert!(
        std::path::Path::new(&cert).is_absolute() && std::path::Path::new(&cert).exists(),
        "the server's certificate {cert} is not readable here"
    );
    let (p, schema) = pg.project("tls");
    p.task("a");
    let run = |url: String| {
        p.run(
            &[
                "plan",
                "tasks",
                "--state",
                &url,
                "--state-name",
                "tls",
                "--state-schema",
                &schema,
            ],
            &[],
        )
    };
    let tagged = |params: &str| format!("{params}&application_name={schema}-tls");
    // require: encrypted (the server says so), the certificate not checked.
    let mut watch = p.spawn(&[
        "watch",
        "tasks",
        "--plan-only",
        "--state",
        &pg.url_with(&tagged("sslmode=require")),
        "--state-name",
        "tls",
        "--state-schema",
        &schema,
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            pg.value(&format!(
                "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{schema}-tls'"
            ))
            .as_deref()
                == Some("true")
        }),
        "the require session is encrypted"
    );
    let _ = watch.kill();
    let _ = watch.wait();
    run(pg.url_with("sslmode=verify-full"))
        .fails_with(1)
        .stderr_has("sslrootcert");
    // The server's own (self-signed, CN=localhost) certificate as the root: the chain
    // verifies; the host name only when it is the certificate's.
    run(pg.url_at(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={cert}"),
    ))
    .succeeds();
    run(pg.url_at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .succeeds();
    run(pg.url_at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .fails_with(1)
    .stderr_has("not valid for name");
    // Another authority's certificate: refused even without the host name check.
    let other = p.path("other-ca.pem");
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&other, ca.cert.pem()).unwrap();
    run(pg.url_at(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other.display()),
    ))
    .fails_with(1)
    .stderr_has("invalid peer certificate");
    run(pg.url_with("sslmode=verify-ca&sslrootcert=/nonexistent.pem"))
        .fails_with(1)
        .stderr_has("cannot read sslrootcert /nonexistent.pem");
}

#[test]
fn a_password_in_the_url_is_shown_nowhere_and_saved_plans_do_not_need_it() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (p, schema) = pg.project("pw");
    p.tasks(2);
    let host_part = pg.url.trim_start_matches("postgres://");
    let (user, rest) = host_part.split_once('@').unwrap();
    let with_pw = format!("postgres://{user}:{}@{rest}?sslmode=disable", pg.password);
    assert!(
        pg.password.len() >= 4,
        "a password that can be searched for"
    );
    let no_pw = [("PGPASSWORD", "")];
    let state = [
        "--state",
        with_pw.as_str(),
        "--state-name",
        "pw",
        "--state-schema",
        &schema,
    ];
    let mut plan = vec!["plan", "tasks", "--out", "pw.plan", "--endpoint", &emu.url];
    plan.extend_from_slice(&state);
    let out = p.run(&plan, &no_pw);
    out.succeeds()
        .stdout_has(&format!("state postgres://{user}@"));
    let saved = std::fs::read_to_string(p.path("pw.plan")).unwrap();
    assert!(
        !saved.contains(&pg.password) && !saved.contains("***"),
        "{saved}"
    );
    let mut apply = vec!["apply", "pw.plan", "--endpoint", &emu.url];
    apply.extend_from_slice(&state);
    let out = p.run(
        &apply,
        &[("TASKFORM_AUTH_TOKEN", TOKEN), ("PGPASSWORD", "")],
    );
    out.succeeds();
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&pg.password), "{text}");
    }
    // The same plan's state named without the password (PGPASSWORD instead): the same
    // state.
    p.tasks(3);
    p.run(&plan, &no_pw).succeeds();
    p.apply_file("pw.plan", &emu.url, &[])
        .succeeds()
        .stdout_has("1 created");
    for f in ["tasks/taskform.yaml", "pw.plan"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap();
        assert!(!text.contains(&pg.password), "{f}");
    }
    let row = pg
        .value(&format!(
            "SELECT data FROM {schema}.states WHERE name = 'pw'"
        ))
        .unwrap();
    assert!(!row.contains(&pg.password));
}

#[test]
fn updates_stop_at_once_when_the_lock_connection_is_terminated() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "40"]);
    let (p, schema) = pg.project("fenced-updates");
    p.tasks(80);
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    for i in 0..80 {
        p.write(
            &format!("tasks/t{i:04}.yaml"),
            &manifest(&format!("t{i:04}"), 20),
        );
    }
    let puts = || {
        emu.requests()
            .iter()
            .filter(|r| r["method"] == "PUT")
            .count()
    };
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
    assert!(wait_until(Duration::from_secs(20), || puts() >= 8));
    pg.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ));
    let at_kill = puts();
    let out = Output::from(child.wait_with_output().unwrap());
    out.fails_with(1).stderr_has("lock was lost");
    // Only the requests already in flight (at most --concurrency) went out after it.
    let after = puts();
    assert!(
        after <= at_kill + 4,
        "{at_kill} PUTs at the kill, {after} after"
    );
    assert!(after < 80);
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let plan = check_invariants(&p, &emu);
    assert_eq!(plan["summary"]["unchanged"], 80);
}

/// The watcher leads for its life (its own row and advisory lock) and takes the state
/// lock only while it reconciles: an apply from CI with `--lock-timeout` goes through
/// within one reconcile, nothing is created twice, and the watcher's next reconcile
/// plans nothing. kill -9 frees the leadership with the connection: the next watcher
/// leads at once.
#[test]
fn a_watch_leads_for_its_life_and_an_apply_from_ci_gets_its_turn() {
    let pg: Pg = server!();
    let emu = Emu::start(&["--rate-limit", "0", "--latency-ms", "30"]);
    let (p, schema) = pg.project("w");
    p.tasks(20);
    let port = crate::common::repo::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut watch = p.spawn(&[
        "watch",
        "tasks",
        "--endpoint",
        &emu.url,
        "--listen",
        &listen,
        "--max-rate",
        "0",
    ]);
    assert!(wait_until(Duration::from_secs(30), || {
        crate::common::repo::status(port)["last_reconcile"]["result"] == "success"
    }));
    assert_eq!(tasks_on(&emu), 20);
    assert_eq!(
        pg.value(&format!(
            "SELECT count(*) FROM {schema}.locks WHERE state = 'w' || chr(1) || 'leader'"
        ))
        .as_deref(),
        Some("1"),
        "the leader's row"
    );
    // A new manifest, seen by the watcher and applied from CI at once: one of them
    // creates it, the other finds it recorded.
    p.write("tasks/hotfix.yaml", &manifest("hotfix", 10));
    p.apply(&emu.url, &["--lock-timeout", "30"]).succeeds();
    assert!(wait_until(Duration::from_secs(10), || {
        let s = crate::common::repo::status(port);
        s["last_reconcile"]["result"] == "success"
            && s["last_reconcile"]["plan"]["create"] == 0
            && s["waiting_for_lock"].is_null()
    }));
    assert_eq!(tasks_on(&emu), 21);
    assert_eq!(emu.creates(), 21, "no duplicate");
    // CI applies again: nothing to do; the watcher's reconcile after it plans nothing.
    p.apply(&emu.url, &["--lock-timeout", "30"])
        .succeeds()
        .stdout_has("No changes");
    let plan = p.plan_json();
    assert_eq!(plan["summary"]["create"], 0, "{plan}");
    let _ = watch.kill();
    let _ = watch.wait();
    // kill -9 released the leadership with the connection: a new watcher leads.
    let port2 = crate::common::repo::free_port();
    let listen2 = format!("127.0.0.1:{port2}");
    let mut next = p.spawn(&[
        "watch",
        "tasks",
        "--endpoint",
        &emu.url,
        "--listen",
        &listen2,
    ]);
    assert!(wait_until(Duration::from_secs(20), || {
        crate::common::repo::status(port2)["role"] == "leader"
    }));
    let _ = next.kill();
    let _ = next.wait();
    assert_eq!(emu.creates(), 21);
}

/// A watcher whose lock connection is terminated stops (exit 1) rather than going on
/// without the lock; restarted, it takes the lock again.
#[test]
fn a_watch_that_loses_its_lock_stops() {
    let pg = server!();
    let emu = Emu::start(&["--rate-limit", "0"]);
    let (p, schema) = pg.project("lost");
    p.tasks(1);
    let watch = p.spawn(&["watch", "tasks", "--endpoint", &emu.url]);
    assert!(wait_until(Duration::from_secs(20), || {
        tasks_on(&emu) == 1
            && pg
                .value(&format!("SELECT count(*) FROM {schema}.locks"))
                .as_deref()
                == Some("1")
    }));
    let killed = pg.value(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ));
    assert_eq!(killed.as_deref(), Some("1"));
    let out = Output::from(watch.wait_with_output().unwrap());
    out.fails_with(1)
        .stderr_has("leadership was lost")
        .stderr_has("the watcher stops");
    p.apply(&emu.url, &[]).succeeds().stdout_has("No changes");
}

/// A store of the state `name` in `schema`, in this process.
fn store(pg: &Pg, schema: &str, name: &str) -> taskform::state::postgres::PgStore {
    let target = taskform::location::PgState {
        url: taskform::location::PgUrl::parse(&pg.url_with("sslmode=disable")).unwrap(),
        name: name.into(),
        schema: schema.into(),
    };
    let password = pg.password.clone();
    let env = move |k: &str| (k == "PGPASSWORD").then(|| password.clone());
    taskform::state::postgres::PgStore::new(target, &env, "test").unwrap()
}

/// A store keeps the state it read or wrote and, while the row's version is the same,
/// loads it without the document; a write by anyone else is always seen.
#[test]
fn a_kept_state_is_used_only_while_the_stored_one_is_the_same() {
    use taskform::state::StateStore;
    let pg = server!();
    let schema = pg::fresh_schema();
    let a = store(&pg, &schema, "kept");
    let b = store(&pg, &schema, "kept");
    let record = |id: &str| taskform::state::TaskRecord {
        task_id: id.into(),
        hash: "sha256:00".into(),
        file: None,
        applied_at: None,
        body: None,
        superseded: Vec::new(),
    };
    let me = taskform::state::lock::Holder::this_process("test");
    let lock = a.lock(&me, None).unwrap();
    let mut s = a.load().unwrap();
    s.tasks.insert("one".into(), record("id-1"));
    a.persist(&mut s).unwrap();
    drop(lock);
    for _ in 0..3 {
        // Served from the copy (and, from the second load on, one made ahead).
        let again = a.load().unwrap();
        assert_eq!(again.tasks.keys().collect::<Vec<_>>(), ["one"]);
        assert_eq!(again.serial, s.serial);
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    // Another process writes: the next load reads its document.
    let lock = b.lock(&me, None).unwrap();
    let mut other = b.load().unwrap();
    other.tasks.insert("two".into(), record("id-2"));
    b.persist(&mut other).unwrap();
    drop(lock);
    let seen = a.load().unwrap();
    assert_eq!(seen.tasks.keys().collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(seen.serial, other.serial);
    // A copy changed by its caller changes nothing kept.
    let mut mine = a.load().unwrap();
    mine.tasks.clear();
    assert_eq!(a.load().unwrap().tasks.len(), 2);
}

/// Under the lock a load skips a journal known to be empty; one written since (a run
/// that stopped before writing the state) is read and folded in.
#[test]
fn a_journal_written_under_the_lock_is_read_by_the_next_load() {
    use taskform::state::StateStore;
    use taskform::state::journal::Record;
    let pg = server!();
    let store = store(&pg, &pg::fresh_schema(), "journal");
    let me = taskform::state::lock::Holder::this_process("test");
    let lock = store.lock(&me, None).unwrap();
    let mut s = store.load().unwrap();
    store.persist(&mut s).unwrap();
    // The journal is now known to be empty.
    assert!(store.load().unwrap().tasks.is_empty());
    let journal = store.open_journal(&s).unwrap();
    let created = Record::Created {
        name: "a".into(),
        hash: "sha256:00".into(),
        task_id: "id-a".into(),
        file: None,
        at: "2026-11-29T00:00:00Z".into(),
        body: None,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(journal.append(&created))
        .unwrap();
    journal.close();
    drop(journal);
    let after = store.load().unwrap();
    assert_eq!(
        after.tasks["a"].task_id, "id-a",
        "the journal was folded in"
    );
    drop(lock);
}

/// An environment whose `credentials:` map PGPASSWORD reads the password from the
/// variable it names, and the errors name that variable (issue #28.7): never "set
/// PGPASSWORD" while PGPASSWORD is set and deliberately ignored.
#[test]
fn the_password_errors_name_the_variable_an_environment_reads() {
    let pg = server!();
    let schema = pg::fresh_schema();
    let url = pg.url_with("sslmode=disable");
    let p = Project::new();
    p.write(
        "tasks/taskform.yaml",
        &format!(
            "defaults:\n  user_id: u-1\n  dir_id: \"0\"\nenvironments:\n  prod:\n    project_id: {PROJECT}\n    workspace: {WORKSPACE}\n    state: {url}\n    state_name: prod\n    state_schema: {schema}\n    credentials:\n      PGPASSWORD: PROD_PGPASSWORD\n  qa:\n    project_id: {PROJECT}\n    workspace: {WORKSPACE}\n    state: {url}\n    state_name: qa\n    state_schema: {schema}\n    credentials:\n      TASKFORM_AUTH_TOKEN: QA_TOKEN\n"
        ),
    );
    p.task("a");
    let plan = |env: &str, vars: &[(&str, &str)]| {
        let mut v = vec![("HOME", "/nonexistent")];
        v.extend_from_slice(vars);
        p.run(&["plan", "tasks", "--env", env], &v)
    };
    // PGPASSWORD set (and right), PROD_PGPASSWORD unset.
    let out = plan("prod", &[("PGPASSWORD", &pg.password)]);
    out.fails_with(1)
        .stderr_has("set PROD_PGPASSWORD")
        .stderr_lacks("set PGPASSWORD");
    assert!(
        out.stderr.contains("PGPASSWORD is not read"),
        "{}",
        out.stderr
    );
    // A wrong PROD_PGPASSWORD.
    plan(
        "prod",
        &[
            ("PROD_PGPASSWORD", "Wr0ng-4711"),
            ("PGPASSWORD", &pg.password),
        ],
    )
    .fails_with(1)
    .stderr_has("taken from PROD_PGPASSWORD");
    // The right one.
    plan("prod", &[("PROD_PGPASSWORD", &pg.password)]).succeeds();
    // An environment that maps other credentials but not PGPASSWORD does not read it.
    let out = plan("qa", &[("PGPASSWORD", &pg.password)]);
    out.fails_with(1).stderr_has("PGPASSWORD is not read");
    assert!(out.stderr.contains("credentials:"), "{}", out.stderr);
}
