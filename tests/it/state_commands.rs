//! `taskform state list|show|rm|mv|import` (issue #19): the state file and the emulator
//! are checked after each command.

use crate::common::*;

fn ids(p: &Project) -> Vec<(String, String)> {
    p.state()["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["task_id"].as_str().unwrap().to_string()))
        .collect()
}

fn applied() -> (Emu, Project) {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    (emu, p)
}

#[test]
fn list_and_show_read_the_state() {
    let (_emu, p) = applied();
    let id_a = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    p.run(&["state", "list", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has(&format!("a  task {id_a}"))
        .stdout_has("3 task(s), 0 in doubt, in state/taskform.json");
    let v = p
        .run(
            &["state", "list", "--dir", "tasks", "--format", "json"],
            &[],
        )
        .succeeds()
        .json();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(v["tasks"][0]["task_id"], id_a.as_str());
    p.run(&["state", "show", "a", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has(&format!("task_id: {id_a}"))
        .stdout_has("\"data_connection_name\": \"dli_test\"");
    p.run(&["state", "show", "nope", "--dir", "tasks"], &[])
        .fails_with(1)
        .stderr_has("records no task named nope");
}

#[test]
fn rm_forgets_without_deleting_on_the_server() {
    let (emu, p) = applied();
    let serial = p.state()["serial"].as_u64().unwrap();
    let id_b = p.state()["tasks"]["b"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    p.run(&["state", "rm", "b", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has(&format!("forgot b (task {id_b}); it stays on the server"))
        .stdout_has(&format!("(serial {})", serial + 1));
    assert!(p.state()["tasks"].get("b").is_none());
    assert_eq!(p.state()["serial"].as_u64().unwrap(), serial + 1);
    assert_eq!(emu.tasks().len(), 3, "nothing deleted on the server");
    p.run(&["state", "rm", "zzz", "--dir", "tasks"], &[])
        .fails_with(1)
        .stderr_has("records no task named zzz");
    // Recording it again by ID makes the plan unchanged, with nothing sent.
    p.online(&["state", "import", "b", &id_b, "--dir", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!("imported b as task {id_b} (same content)"));
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes. 3 tasks up to date.");
    assert_eq!(emu.creates(), 3);
}

#[test]
fn mv_lets_a_rename_update_the_task_in_place() {
    let (emu, p) = applied();
    let id_a = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(p.path("tasks/a.yaml")).unwrap();
    p.task("a2");
    p.run(&["state", "mv", "a", "a2", "--dir", "tasks"], &[])
        .succeeds()
        .stdout_has(&format!("moved a to a2 (task {id_a})"));
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("~ a2  update");
    p.apply(&emu.url, &[]).succeeds();
    assert!(
        ids(&p).contains(&("a2".into(), id_a.clone())),
        "same task, renamed"
    );
    assert_eq!(emu.tasks().len(), 3, "no new task");
    assert!(
        emu.tasks()
            .iter()
            .any(|t| t["id"] == id_a.as_str() && t["name"] == "a2")
    );
    p.run(&["state", "mv", "nope", "x", "--dir", "tasks"], &[])
        .fails_with(1)
        .stderr_has("records no task named nope");
    p.run(&["state", "mv", "a2", "b", "--dir", "tasks"], &[])
        .fails_with(1)
        .stderr_has("already records a task named b");
}

#[test]
fn import_refuses_what_it_cannot_record_and_falls_back_on_create_only_gateways() {
    let (emu, p) = applied();
    p.online(
        &["state", "import", "a", "0123", "--dir", "tasks"],
        &emu.url,
    )
    .fails_with(1)
    .stderr_has("already records a as task");
    p.run(&["state", "rm", "a", "--dir", "tasks"], &[])
        .succeeds();
    p.online(
        &[
            "state",
            "import",
            "a",
            "00000000000000000000000000000bad",
            "--dir",
            "tasks",
        ],
        &emu.url,
    )
    .fails_with(1)
    .stderr_has("has no task 00000000000000000000000000000bad");
    p.online(
        &["state", "import", "nomanifest", "0123", "--dir", "tasks"],
        &emu.url,
    )
    .fails_with(1)
    .stderr_has("no manifest declares nomanifest");
    let gw = Emu::start(&["--create-only"]);
    p.online(
        &["state", "import", "a", "ID-ON-GATEWAY", "--dir", "tasks"],
        &gw.url,
    )
    .succeeds()
    .stderr_has("offers no show")
    .stdout_has("not read");
    assert_eq!(p.state()["tasks"]["a"]["task_id"], "ID-ON-GATEWAY");
}

#[test]
fn a_rename_declared_in_moved_updates_the_task_in_place() {
    let (emu, p) = applied();
    let id_a = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(p.path("tasks/a.yaml")).unwrap();
    p.task("renamed");
    let settings = std::fs::read_to_string(p.path("tasks/taskform.yaml")).unwrap();
    p.write(
        "tasks/taskform.yaml",
        &format!("{settings}moved:\n  - from: a\n    to: renamed\n"),
    );
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("~ renamed  update")
        .stdout_has("renamed from a")
        .stdout_has("0 to create, 0 to replace, 1 to update");
    p.apply(&emu.url, &[]).succeeds();
    assert!(ids(&p).contains(&("renamed".into(), id_a.clone())));
    assert!(
        emu.tasks()
            .iter()
            .any(|t| t["id"] == id_a.as_str() && t["name"] == "renamed")
    );
    assert_eq!(emu.tasks().len(), 3);
    // The entry is stale now: harmless, and said in debug output only (issue #29.5:
    // it was logged on every run forever).
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes")
        .stderr_lacks("moved entry");
    p.run(&["plan", "tasks", "-v"], &[])
        .succeeds()
        .stderr_has("moved entry: already moved");
    p.write(
        "tasks/taskform.yaml",
        &format!("{settings}moved:\n  - from: a\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("tasks/taskform.yaml:")
        .stderr_has("each `moved` entry needs `from` and `to`");
}
