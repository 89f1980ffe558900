//! `validate` and `plan`: exit codes, messages with positions, JSON schema, detailed
//! exit codes, state handling. No network.

use crate::common::*;
use serde_json::json;

#[test]
fn validate_accepts_the_examples() {
    let out = std::process::Command::new(bin())
        .args([
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks"),
        ])
        .output()
        .unwrap();
    Output::from(out)
        .succeeds()
        .stdout_is("5 tasks in 4 files are valid.\n");
}

#[test]
fn validate_reports_every_problem_with_its_position() {
    let p = Project::new();
    p.write(
        "tasks/bad.yaml",
        "name: a\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: ten\ntask_config: {}\ndir_id: 0\n",
    );
    p.write("tasks/sub/broken.yml", "name: b\n  oops: [\n");
    p.write("tasks/dup1.yaml", &manifest("same", 1));
    p.write(
        "tasks/dup2.yaml",
        &format!("# comment\n{}", manifest("same", 2)),
    );
    p.write(
        "tasks/typo.yaml",
        &manifest("typo", 1).replace("data_source_type", "data_sorce_type"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stdout_is("")
        .stderr_has("error: tasks/bad.yaml:5:17: `schedule_config.max_time_out` must be a 32-bit integer, found a string")
        .stderr_has("error: tasks/bad.yaml:7:9: `dir_id` must be a string, found an integer\n  hint: YAML reads the unquoted `0` as an integer; quote it to send a string: dir_id: \"0\"")
        .stderr_has("error: tasks/dup1.yaml:1:7: duplicate task name `same`, also defined at tasks/dup2.yaml:2:7")
        .stderr_has("error: tasks/dup2.yaml:2:7: duplicate task name `same`, also defined at tasks/dup1.yaml:1:7")
        .stderr_has("error: tasks/typo.yaml:2:1: unknown field `data_sorce_type`\n  hint: did you mean `data_source_type`?")
        .stderr_has("error: tasks/typo.yaml:1:1: missing mandatory field `data_source_type`")
        .stderr_has("error: tasks/sub/broken.yml:2:")
        .stderr_has("7 problems in 5 files; nothing was planned or sent");
}

#[test]
fn fields_from_defaults_are_reported_in_the_settings_file() {
    let p = Project::new();
    p.write("tasks/taskform.yaml", &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: 7\n  dir_id: \"0\"\n"));
    p.task("a");
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/taskform.yaml:4:12: `user_id` must be a string, found an integer (from `defaults`, merged into the task in tasks/a.yaml)");
}

#[test]
fn interpolation_uses_the_environment_and_names_missing_variables() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        &manifest("a", 1).replace("dli_test", "${CONN}-$${LITERAL}"),
    );
    p.run(&["plan", "--format", "json", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/a.yaml:7:25: environment variable `CONN` is not set");
    let h1 = p
        .run(
            &["plan", "--format", "json", "tasks"],
            &[("CONN", "dli_prod")],
        )
        .succeeds()
        .json()["tasks"][0]["hash"]
        .clone();
    let h2 = p
        .run(
            &["plan", "--format", "json", "tasks"],
            &[("CONN", "dli_other")],
        )
        .json()["tasks"][0]["hash"]
        .clone();
    assert_ne!(h1, h2, "the interpolated value is part of the hash");
}

#[test]
fn plan_json_schema_and_detailed_exit_codes() {
    let p = Project::new();
    p.task("b").task("a");
    let v = p
        .run(
            &["plan", "--format", "json", "--detailed-exitcode", "tasks"],
            &[],
        )
        .fails_with(2)
        .json();
    assert_eq!(v["format_version"], "1");
    assert_eq!(
        v["summary"],
        json!({"create": 2, "replace": 0, "update": 0, "delete": 0, "unchanged": 0, "orphan": 0, "in_doubt": 0, "superseded": 0})
    );
    let t = &v["tasks"][0];
    assert_eq!(t["name"], "a");
    assert_eq!(t["action"], "create");
    assert_eq!(t["task_id"], json!(null));
    assert_eq!(t["file"], "a.yaml");
    assert!(t["hash"].as_str().unwrap().starts_with("sha256:"));
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        ["name", "action", "hash", "task_id", "file", "changes"]
    );
    assert_eq!(t["changes"], json!(null));

    // A state that records both tasks with the planned hashes: no changes, exit 0.
    let tasks = v["tasks"].as_array().unwrap();
    let mut recorded = serde_json::Map::new();
    for t in tasks {
        recorded.insert(
            t["name"].as_str().unwrap().into(),
            json!({"task_id": format!("id-{}", t["name"].as_str().unwrap()), "hash": t["hash"]}),
        );
    }
    recorded.insert(
        "gone".into(),
        json!({"task_id": "id-gone", "hash": "sha256:00"}),
    );
    p.write("state/taskform.json", &json!({"version": 1, "serial": 3, "lineage": "l", "target": {"project_id": PROJECT, "workspace": WORKSPACE}, "tasks": recorded}).to_string());
    // An orphan alone is reported, not a change apply would send (issue #14.6).
    let v = p
        .run(
            &["plan", "--format", "json", "--detailed-exitcode", "tasks"],
            &[],
        )
        .succeeds()
        .stderr_has("1 orphan task(s) stay on the server")
        .json();
    assert_eq!(v["summary"]["orphan"], 1);
    assert_eq!(v["tasks"][2]["name"], "gone");
    assert_eq!(v["tasks"][2]["hash"], json!(null));
    assert_eq!(v["tasks"][2]["file"], json!(null));
    assert_eq!(v["tasks"][2]["task_id"], "id-gone");

    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    p.task("gone");
    let state = p.state();
    let mut s = state.clone();
    let gone_hash = p.plan_json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gone" && t["action"] == "update")
        .unwrap()["hash"]
        .clone();
    s["tasks"]["gone"]["hash"] = gone_hash;
    s["tasks"].as_object_mut().unwrap().remove("b");
    p.write("state/taskform.json", &s.to_string());
    let out = p.run(&["plan", "--detailed-exitcode", "tasks"], &[]);
    out.succeeds();
    assert!(
        out.stdout.ends_with("No changes. 2 tasks up to date.\n"),
        "{}",
        out.stdout
    );

    p.run(&["plan", "--detailed-exitcode", "missing-dir"], &[])
        .fails_with(1)
        .stderr_has("cannot read manifest folder missing-dir");
}

#[test]
fn moving_and_reformatting_a_manifest_keeps_its_hash() {
    let p = Project::new();
    p.task("a");
    let before = p.plan_json()["tasks"][0]["hash"].clone();
    std::fs::remove_file(p.path("tasks/a.yaml")).unwrap();
    p.write(
        "tasks/deep/er/other.yml",
        "# moved and reordered\ntask_config: {databaseName: [db1], data_connection_name: dli_test}\nschedule_config: {max_time_out: 10, schedule_type: RUN_ONCE}\ndata_source_type: DLI\nname: a\n",
    );
    let after = p.plan_json()["tasks"][0].clone();
    assert_eq!(after["hash"], before);
    assert_eq!(after["file"], "deep/er/other.yml");
}

#[test]
fn replace_shows_the_changed_fields() {
    let p = Project::new();
    p.task("a");
    let plan = p.plan_json();
    let hash = plan["tasks"][0]["hash"].clone();
    let body = json!({"name": "a", "user_id": "u-1", "dir_id": "0", "data_source_type": "DLI", "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10}, "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"]}});
    p.write("state/taskform.json", &json!({"version": 1, "serial": 1, "lineage": "l", "tasks": {"a": {"task_id": "T1", "hash": hash, "body": body}}}).to_string());
    p.write(
        "tasks/a.yaml",
        &manifest("a", 20).replace("[db1]", "[db1, db2]"),
    );
    p.run(&["plan", "tasks", "--on-change", "recreate"], &[])
        .succeeds()
        .stdout_has("~ a  replace    a.yaml  task T1")
        .stdout_has("~ schedule_config.max_time_out: 10 -> 20")
        .stdout_has("~ task_config.databaseName: [\"db1\"] -> [\"db1\",\"db2\"]")
        .stdout_has("the previous remote task T1 is recorded as superseded (deleted by --prune)")
        .stdout_has("Plan: 0 to create, 1 to replace, 0 unchanged, 0 orphaned, 0 in doubt.")
        // No colour without a terminal.
        .stdout_lacks("\x1b");

    // A hand-repaired state without bodies still plans, and says why no diff is shown.
    p.write("state/taskform.json", &json!({"version": 1, "serial": 1, "lineage": "l", "tasks": {"a": {"task_id": "T1", "hash": "sha256:old"}}}).to_string());
    p.run(&["plan", "tasks"], &[])
        .stdout_has("previously applied body is not in the state");
}

#[test]
fn unusable_state_files_are_errors_that_name_the_file() {
    let p = Project::new();
    p.task("a");
    p.write("state/taskform.json", "{\"version\": 1, \"tasks\": {");
    p.run(&["plan", "tasks"], &[])
        .fails_with(1)
        .stderr_has("state file state/taskform.json is corrupt: the file ends early");
    p.write("state/taskform.json", "{\"version\": 9, \"tasks\": {}}");
    p.run(&["plan", "tasks"], &[])
        .stderr_has("has version 9, written by a newer taskform");
    p.write("state/taskform.json", &json!({"version": 1, "serial": 1, "lineage": "l", "target": {"project_id": "other", "workspace": WORKSPACE}, "tasks": {}}).to_string());
    p.run(&["plan", "tasks"], &[])
        .fails_with(1)
        .stderr_has("belongs to project other / workspace demo-workspace");
    // --state picks another file.
    p.run(&["plan", "tasks", "--state", "elsewhere/s.json"], &[])
        .succeeds();
    // TASKFORM_STATE picks another file.
    p.run(
        &["plan", "tasks"],
        &[("TASKFORM_STATE", "elsewhere/s.json")],
    )
    .succeeds();
}

#[test]
fn hidden_folders_and_other_files_are_skipped() {
    let p = Project::new();
    p.task("a");
    p.write("tasks/.git/config.yaml", "not: [valid");
    p.write("tasks/.hidden.yaml", "not: [valid");
    p.write("tasks/notes.txt", "name: x");
    p.write("tasks/empty.yaml", "# nothing here\n---\n");
    let v = p.plan_json();
    assert_eq!(v["summary"]["create"], 1);
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_folder_are_refused() {
    let p = Project::new();
    p.task("a");
    p.write("outside/secret.yaml", &manifest("evil", 1));
    std::os::unix::fs::symlink(p.path("outside/secret.yaml"), p.path("tasks/link.yaml")).unwrap();
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("link.yaml: symbolic link points outside the manifest folder");
}
