//! The everyday path at team scale (issue #29): plans that show what changes, the
//! reviewed plan applied per environment, and messages that do not mislead.

use crate::common::*;

/// The text plan lists what changes (and what has a note), then counts the others;
/// `--show-unchanged` lists them all; JSON keeps every task.
#[test]
fn the_text_plan_shows_only_what_changes() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.tasks(5);
    p.apply(&emu.url, &[]).succeeds();
    p.write("tasks/t0002.yaml", &manifest("t0002", 99));
    let plan = p.run(&["plan", "tasks"], &[]);
    plan.succeeds()
        .stdout_has("~ t0002")
        .stdout_has("4 other tasks unchanged (--show-unchanged lists them).")
        .stdout_lacks("No changes")
        .stdout_lacks("t0001");
    let all = p.run(&["plan", "tasks", "--show-unchanged"], &[]);
    all.succeeds()
        .stdout_has("t0001")
        .stdout_lacks("other tasks unchanged");
    assert_eq!(p.plan_json()["tasks"].as_array().unwrap().len(), 5);
    // Nothing to change: the summary alone.
    p.apply(&emu.url, &[]).succeeds();
    let quiet = p.run(&["plan", "tasks"], &[]);
    quiet
        .succeeds()
        .stdout_has("No changes. 5 tasks up to date.")
        .stdout_lacks("t000");
}

/// Wide names (CJK) are measured by display width: the action column lines up.
#[test]
fn wide_names_keep_the_columns_aligned() {
    let p = Project::new();
    p.task("任务一").task("a-much-longer-ascii-name");
    let out = p.run(&["plan", "tasks"], &[]);
    out.succeeds();
    let cols: Vec<usize> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  + "))
        .map(|l| {
            let before = &l[..l.find("create").unwrap()];
            unicode_width::UnicodeWidthStr::width(before)
        })
        .collect();
    assert_eq!(cols.len(), 2, "{}", out.stdout);
    assert_eq!(cols[0], cols[1], "{}", out.stdout);
}

/// A saved plan downloaded to another folder (a CI artifact): the message says the
/// plan's folder is not where the plan file says, and `apply PLAN --dir DIR` applies it
/// against the right folder and state (issue #29.7).
#[test]
fn a_plan_file_moved_elsewhere_is_applied_with_dir() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.tasks(2);
    p.run(&["plan", "tasks", "--out", "plan.json"], &[])
        .succeeds();
    std::fs::create_dir_all(p.path("downloads/artifact")).unwrap();
    std::fs::rename(p.path("plan.json"), p.path("downloads/artifact/plan.json")).unwrap();
    let moved = p.online(&["apply", "downloads/artifact/plan.json"], &emu.url);
    moved
        .fails_with(1)
        .stderr_has("was the plan file moved")
        .stderr_has("--dir DIR");
    assert!(emu.tasks().is_empty());
    p.online(
        &["apply", "downloads/artifact/plan.json", "--dir", "tasks"],
        &emu.url,
    )
    .succeeds();
    assert_eq!(emu.tasks().len(), 2);
    assert_eq!(
        p.state()["tasks"].as_object().unwrap().len(),
        2,
        "the project's state"
    );
    // --dir with a folder (no plan file) is refused with what to run instead.
    p.online(&["apply", "tasks", "--dir", "tasks"], &emu.url)
        .fails_with(1)
        .stderr_has("`taskform apply tasks`");
}

/// Messages that misled (issue #29.10–12).
#[test]
fn destroy_help_enabled_and_overlay_messages_say_what_is_true() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.apply(&emu.url, &[]).succeeds();
    p.run(&["plan", "tasks", "--destroy"], &[])
        .succeeds()
        .stdout_has(
            "its manifest still declares it; --destroy deletes every task the state records",
        )
        .stdout_lacks("no manifest declares it any more");
    p.run(&["plan", "--help"], &[])
        .succeeds()
        .stdout_has("[default: DIR/state/taskform.json]");
    p.write(
        "tasks/b.yaml",
        "name: b\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  enabled: yes\ntask_config:\n  x: 1\n",
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("hint: write enabled: 1");
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments");
    let file = repo.join("overlays/dev/changes.yaml");
    p.run(&["validate", file.to_str().unwrap()], &[])
        .succeeds()
        .stdout_has(
            "is valid: a patch of 1 shared task and 1 shared task left out, for environment dev.",
        );
}

/// A warning of several lines is shown line by line: taskform's own line breaks are
/// not escaped as data (issue #29.8). (A name cannot hold a line break: the loader
/// refuses control characters in names, and the guard escapes names all the same.)
#[test]
fn multi_line_warnings_keep_their_lines_and_escape_names() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    let out = p.run(&["plan", "tasks", "--prune", "--max-deletes", "1"], &[]);
    out.succeeds();
    assert!(!out.stderr.contains("\\u{a}"), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("  - b (task ")),
        "each delete on a line of its own: {}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("check the folder and the state")),
        "{}",
        out.stderr
    );
}

/// `state copy --move` retires the source: a tombstone naming the destination, so a
/// later run against it is refused with where the state went (issue #29.16); copying
/// back replaces the tombstone.
#[test]
fn state_copy_move_leaves_a_tombstone_that_says_where_the_state_went() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.tasks(2);
    p.apply(&emu.url, &[]).succeeds();
    p.run(
        &[
            "state",
            "copy",
            "--move",
            "state/taskform.json",
            "moved.json",
        ],
        &[],
    )
    .succeeds()
    .stdout_has("now holds only a tombstone naming moved.json");
    p.run(&["plan", "tasks"], &[])
        .fails_with(1)
        .stderr_has("was moved to /")
        .stderr_has("/moved.json at ");
    p.online(&["apply", "--yes", "tasks"], &emu.url)
        .fails_with(1)
        .stderr_has("was moved to /")
        .stderr_has("/moved.json at ");
    p.run(&["state", "list", "--dir", "tasks"], &[])
        .fails_with(1)
        .stderr_has("was moved to /")
        .stderr_has("/moved.json at ");
    assert_eq!(emu.creates(), 2, "nothing created again");
    p.run(&["plan", "tasks", "--state", "moved.json"], &[])
        .succeeds()
        .stdout_has("No changes. 2 tasks up to date.");
    // And back: the tombstone is replaced.
    p.run(
        &[
            "state",
            "copy",
            "--move",
            "moved.json",
            "state/taskform.json",
        ],
        &[],
    )
    .succeeds();
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes. 2 tasks up to date.");
    p.run(&["plan", "tasks", "--state", "moved.json"], &[])
        .fails_with(1)
        .stderr_has("/state/taskform.json at ");
}

/// The state follows a manifest that moved (no request sent), and records who applied
/// last: a command's apply is "not from a watched revision" (issue #29.14).
#[test]
fn the_state_follows_moved_files_and_records_who_applied() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.tasks(2);
    p.online(&["apply", "--yes", "tasks"], &emu.url).succeeds();
    let state = p.state();
    assert!(state["last_applied"].get("revision").is_none(), "{state}");
    assert!(
        state["last_applied"]["by"]
            .as_str()
            .unwrap()
            .ends_with("(apply)"),
        "{state}"
    );
    p.run(&["state", "list", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has("not from a watched revision");
    // The manifest moves: nothing is sent, the record follows.
    std::fs::create_dir_all(p.path("tasks/sub")).unwrap();
    std::fs::rename(p.path("tasks/t0000.yaml"), p.path("tasks/sub/t0000.yaml")).unwrap();
    let before = emu.requests().len();
    p.online(&["apply", "--yes", "tasks"], &emu.url)
        .succeeds()
        .stdout_has("No changes");
    assert_eq!(emu.requests().len(), before, "nothing sent");
    assert_eq!(p.state()["tasks"]["t0000"]["file"], "sub/t0000.yaml");
    p.run(&["state", "list", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has("sub/t0000.yaml");
}
