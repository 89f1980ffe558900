//! Hostile and broken input: every case ends in a clear error (exit 1 with a message)
//! or a bounded-time success, never a hang, a stack overflow or a panic (exit 101),
//! and nothing reaches the server.

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn yaml_bombs_deep_nesting_and_huge_files_end_in_bounded_errors() {
    let p = Project::new();
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let q = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{q}, *a{q}, *a{q}, *a{q}, *a{q}, *a{q}, *a{q}, *a{q}, *a{q}, *a{q}]\n"
        ));
    }
    p.write("tasks/bomb.yaml", &bomb);
    p.write(
        "tasks/deep.yaml",
        &format!("name: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
    );
    p.write(
        "tasks/deep-map.yaml",
        &(0..10_000)
            .map(|i| format!("{}k:", " ".repeat(i)))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let big = std::fs::File::create(p.path("tasks/huge.yaml")).unwrap();
    big.set_len(100 * 1024 * 1024).unwrap();
    let started = Instant::now();
    let out = p.run(&["validate", "tasks"], &[]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    out.fails_with(1)
        .stderr_has("tasks/huge.yaml: file is 104857600 bytes, over the 16777216 byte limit")
        .stderr_has("tasks/bomb.yaml:")
        .stderr_has("tasks/deep.yaml:1:")
        .stderr_has("tasks/deep-map.yaml:")
        .stderr_has("recursion limit exceeded");
}

#[test]
fn non_utf8_and_nul_bytes_are_errors_with_positions() {
    let p = Project::new();
    p.write("tasks/ok.yaml", &manifest("ok", 1));
    std::fs::write(p.path("tasks/latin1.yaml"), b"name: caf\xe9\n").unwrap();
    std::fs::write(p.path("tasks/nul.yaml"), b"name: a\x00b\n").unwrap();
    let out = p.run(&["validate", "tasks"], &[]);
    out.fails_with(1)
        .stderr_has("tasks/latin1.yaml:1:10: file is not valid UTF-8")
        .stderr_has("tasks/nul.yaml:1:");
}

#[test]
fn a_folder_of_100000_files_loads_in_bounded_time() {
    let p = Project::new();
    for d in 0..100 {
        let dir = p.path(&format!("tasks/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:04}.yaml")), b"# nothing here yet\n").unwrap();
        }
    }
    p.task("real");
    let started = Instant::now();
    let out = p.run(&["plan", "tasks", "--format", "json"], &[]);
    out.succeeds();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let v = out.json();
    assert_eq!(v["summary"]["create"], 1);
}

#[test]
fn broken_state_and_journal_files_send_nothing() {
    let srv = Scripted::without_search(|n, _| created(n));
    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        ("truncated state", "{\"version\": 1, \"serial\": 2, \"lineage\": \"l\", \"tasks\": {\"a\": {\"task_id\": \"1\",".into(), None, "the file ends early"),
        ("newer version", r#"{"version": 2, "serial": 1, "lineage": "l", "tasks": {}}"#.into(), None, "written by a newer taskform"),
        ("other target", format!(r#"{{"version": 1, "serial": 1, "lineage": "l", "target": {{"project_id": "{PROJECT}", "workspace": "other"}}, "tasks": {{}}}}"#), None, "belongs to project"),
        ("journal of another state", r#"{"version": 1, "serial": 1, "lineage": "l", "tasks": {}}"#.into(), Some("{\"open\":{\"lineage\":\"x\",\"base_serial\":1,\"at\":\"t\"}}\n"), "belongs to another state"),
        ("corrupt journal", r#"{"version": 1, "serial": 1, "lineage": "l", "tasks": {}}"#.into(), Some("{\"open\":{\"lineage\":\"l\",\"base_serial\":1,\"at\":\"t\"}}\ngarbage\n{\"failed\":{\"name\":\"a\",\"hash\":\"h\"}}\n"), "is corrupt at line 2"),
        ("state that is not JSON", "\u{0}\u{1}binary".into(), None, "is corrupt"),
    ];
    for (what, state, journal, needle) in cases {
        let p = Project::new();
        p.task("a");
        p.write("state/taskform.json", &state);
        if let Some(j) = journal {
            p.write("state/taskform.json.journal", j);
        }
        let before = std::fs::read(p.path("state/taskform.json")).unwrap();
        let out = p.apply(&srv.url, &[]);
        out.fails_with(1).stderr_has(needle);
        assert!(
            out.stderr.contains("state/taskform.json"),
            "{what}: names the file: {}",
            out.stderr
        );
        assert_eq!(
            std::fs::read(p.path("state/taskform.json")).unwrap(),
            before,
            "{what}: the state is unchanged"
        );
        p.run(&["plan", "tasks"], &[])
            .fails_with(1)
            .stderr_has(needle);
    }
    assert_eq!(srv.requests().len(), 0, "nothing reached the server");
}

#[test]
fn a_torn_journal_tail_is_recovered() {
    let p = Project::new();
    p.task("a");
    p.write(
        "state/taskform.json",
        r#"{"version": 1, "serial": 1, "lineage": "l", "tasks": {}}"#,
    );
    p.write(
        "state/taskform.json.journal",
        "{\"open\":{\"lineage\":\"l\",\"base_serial\":1,\"at\":\"t\"}}\n{\"intent\":{\"name\":\"a\",\"hash\":\"sha256:1\",\"file\":\"a.yaml\",\"at\":\"t\"}}\n{\"created\":{\"name\":\"a\",\"hash\":\"sha256:1\",\"task_id\":\"T",
    );
    let v = p
        .run(&["plan", "tasks", "--format", "json"], &[])
        .succeeds()
        .stderr_has("ignoring the journal's last record, cut short by a crash")
        .json();
    assert_eq!(
        v["tasks"][0]["action"], "in_doubt",
        "the intent without an answer is in doubt"
    );
}

/// Every file in tests/corpus (found by fuzzing and by hand) through validate and plan,
/// as a manifest and as a state file: exit 0 or 1 with a message, never a panic.
#[test]
fn the_corpus_never_panics() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&corpus).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let p = Project::new();
        std::fs::write(p.path("tasks/case.yaml"), &bytes).unwrap();
        let out = p.run(&["validate", "tasks"], &[]);
        assert!(
            matches!(out.code, Some(0 | 1)),
            "{:?}: exit {:?}\n{}",
            entry.path(),
            out.code,
            out.stderr
        );
        if out.code == Some(1) {
            assert!(
                out.stderr.contains("error: "),
                "{:?}: no message",
                entry.path()
            );
        }
        std::fs::remove_file(p.path("tasks/case.yaml")).unwrap();
        p.task("a");
        std::fs::create_dir_all(p.path("state")).unwrap();
        std::fs::write(p.path("state/taskform.json"), &bytes).unwrap();
        let out = p.run(&["plan", "tasks"], &[]);
        assert!(
            matches!(out.code, Some(0 | 1)),
            "{:?} as state: exit {:?}\n{}",
            entry.path(),
            out.code,
            out.stderr
        );
        std::fs::write(
            p.path("state/taskform.json"),
            br#"{"version": 1, "serial": 1, "lineage": "l", "tasks": {}}"#,
        )
        .unwrap();
        let mut journal =
            b"{\"open\":{\"lineage\":\"l\",\"base_serial\":1,\"at\":\"t\"}}\n".to_vec();
        journal.extend_from_slice(&bytes);
        std::fs::write(p.path("state/taskform.json.journal"), &journal).unwrap();
        let out = p.run(&["plan", "tasks"], &[]);
        assert!(
            matches!(out.code, Some(0 | 1)),
            "{:?} as journal: exit {:?}\n{}",
            entry.path(),
            out.code,
            out.stderr
        );
        n += 1;
    }
    assert!(n >= 10, "the corpus has {n} files");
}
