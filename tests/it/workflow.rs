//! The pull-request and CI workflow: saved plans and their staleness checks,
//! Markdown for PR comments (snapshots), JSON schema stability, `show`.

use crate::common::*;
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A state that records task `a` (timeout 10) as task T-A with its body, at serial 7.
fn state_with_a(p: &Project) {
    let hash = {
        let q = Project::new();
        q.task("a");
        q.plan_json()["tasks"][0]["hash"].clone()
    };
    let body = json!({"data_source_type": "DLI", "dir_id": "0", "name": "a", "schedule_config": {"max_time_out": 10, "schedule_type": "RUN_ONCE"}, "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"]}, "user_id": "u-1"});
    p.write(
        "state/taskform.json",
        &json!({"version": 1, "serial": 7, "lineage": "lineage-1", "target": {"project_id": PROJECT, "workspace": WORKSPACE}, "tasks": {"a": {"task_id": "T-A", "hash": hash, "body": body}, "gone": {"task_id": "T-GONE", "hash": "sha256:00"}}})
            .to_string(),
    );
}

#[test]
fn saved_plan_holds_bodies_and_no_credentials_and_applies_without_a_prompt() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.run(
        &[
            "plan",
            "tasks",
            "--out",
            "plan.json",
            "--endpoint",
            &emu.url,
        ],
        &[("TASKFORM_AUTH_TOKEN", "SECRET-TOKEN-42")],
    )
    .succeeds();
    let text = std::fs::read_to_string(p.path("plan.json")).unwrap();
    assert!(!text.contains("SECRET-TOKEN-42"));
    let plan: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        keys(&plan),
        [
            "format_version",
            "tool_version",
            "created_at",
            "dir",
            "state_path",
            "paths_from_plan_file",
            "target",
            "state",
            "manifests",
            "options",
            "summary",
            "tasks"
        ]
    );
    assert_eq!(plan["format_version"], "1");
    assert_eq!(plan["target"]["project_id"], PROJECT);
    assert_eq!(plan["target"]["endpoint_host"], emu.addr.as_str());
    assert_eq!(plan["state"], json!({"lineage": "", "serial": 0}));
    assert!(
        plan["manifests"]["files"]["a.yaml"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(plan["manifests"]["files"]["taskform.yaml"].is_string());
    assert_eq!(plan["tasks"][0]["body"]["name"], "a");
    assert_eq!(
        keys(&plan["tasks"][0]),
        ["name", "action", "hash", "task_id", "file", "body"]
    );

    // No --yes and no terminal: a saved plan is its own approval.
    p.run(
        &["apply", "plan.json", "--endpoint", &emu.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .succeeds();
    assert_eq!(emu.creates(), 2);
    let mut sent: Vec<Value> = emu.tasks();
    // The service adds the schedule's job_id to what was sent.
    let schedule = sent[0]["schedule_config"].as_object_mut().unwrap();
    assert!(schedule.shift_remove("job_id").is_some());
    assert_eq!(
        sent[0]["schedule_config"],
        plan["tasks"][0]["body"]["schedule_config"]
    );
    // Applying it again is refused: the state moved on and a fresh plan sends nothing.
    p.run(
        &["apply", "plan.json", "--endpoint", &emu.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .fails_with(1)
    .stderr_has("refusing to apply plan.json: the state moved on (empty in the plan, serial 2 now")
    .stderr_has("taskform plan tasks --out plan.json");
    assert_eq!(emu.creates(), 2);
}

#[test]
fn a_saved_plan_is_refused_when_manifests_changed_or_the_target_differs() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.run(&["plan", "tasks", "--out", "plan.json"], &[])
        .succeeds();

    // A new manifest is not applied by an old plan.
    p.task("b");
    p.apply_file("plan.json", &emu.url, &[])
        .fails_with(1)
        .stderr_has("the manifests changed since the plan was made (b.yaml)");
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();

    // A changed value is not applied either.
    p.write("tasks/a.yaml", &manifest("a", 11));
    p.apply_file("plan.json", &emu.url, &[])
        .stderr_has("the manifests changed since the plan was made (a.yaml)");

    // Reformatting changes the file but not the requests: applied, and said so.
    p.write(
        "tasks/a.yaml",
        &format!("# reviewed\n{}", manifest("a", 10)),
    );
    p.apply_file("plan.json", &emu.url, &["--project-id", "other-project"])
        .fails_with(1)
        .stderr_has("the plan was made for project 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d, but this apply targets other-project");
    assert_eq!(emu.creates(), 0);
    p.apply_file("plan.json", &emu.url, &[])
        .succeeds()
        .stderr_has("a fresh plan sends exactly the same requests");
    assert_eq!(emu.creates(), 1);
}

#[test]
fn a_tampered_plan_file_is_refused() {
    let p = Project::new();
    p.task("a");
    p.run(&["plan", "tasks", "--out", "plan.json"], &[])
        .succeeds();
    let text = std::fs::read_to_string(p.path("plan.json"))
        .unwrap()
        .replace("\"max_time_out\":10", "\"max_time_out\":99");
    assert!(text.contains("\"max_time_out\":99"));
    p.write("plan.json", &text);
    p.apply_file("plan.json", "http://127.0.0.1:9", &[])
        .fails_with(1)
        .stderr_has("the body of task a does not match its hash");
    p.write("plan.json", r#"{"format_version": "9"}"#);
    p.run(&["show", "plan.json"], &[])
        .stderr_has("has format version 9");
}

#[test]
fn markdown_plan_snapshot() {
    let p = Project::new();
    state_with_a(&p);
    p.write(
        "tasks/a.yaml",
        &manifest("a", 20).replace("[db1]", "[db1, db2]"),
    );
    p.task("new-task");
    let out = p.run(&["plan", "tasks", "--format", "markdown"], &[]);
    out.succeeds();
    insta::assert_snapshot!("markdown_plan", out.stdout);
    // show renders a saved plan the same way.
    p.run(&["plan", "tasks", "--out", "plan.json"], &[])
        .succeeds();
    p.run(&["show", "plan.json", "--format", "markdown"], &[])
        .stdout_is(&out.stdout);
    p.run(&["show", "plan.json"], &[])
        .stdout_has("~ schedule_config.max_time_out: 10 -> 20");
}

#[test]
fn markdown_stays_under_the_comment_limit() {
    let p = Project::new();
    let mut tasks = serde_json::Map::new();
    for i in 0..400 {
        let name = format!("task-{i:03}");
        let big: Vec<String> = (0..30).map(|t| format!("db.table_{t:03}")).collect();
        p.write(
            &format!("tasks/{name}.yaml"),
            &format!("{}  tableName: [{}]\n", manifest(&name, 20), big.join(", ")),
        );
        tasks.insert(name.clone(), json!({"task_id": format!("T{i}"), "hash": "sha256:old", "body": {"name": name, "task_config": {"tableName": big}}}));
    }
    p.write(
        "state/taskform.json",
        &json!({"version": 1, "serial": 1, "lineage": "l", "tasks": tasks}).to_string(),
    );
    let out = p.run(
        &[
            "plan",
            "tasks",
            "--format",
            "markdown",
            "--out",
            "plan.json",
            "--on-change",
            "recreate",
        ],
        &[],
    );
    out.succeeds();
    assert!(out.stdout.chars().count() <= 65_536);
    out.stdout_has("| 0 | 400 | 0 | 0 | 0 | 0 | 0 |")
        .stdout_has("The full plan: `plan.json` (`taskform show plan.json`)");
    for i in 0..400 {
        out.stdout_has(&format!("`task-{i:03}`"));
    }
}

#[test]
fn json_documents_keep_their_schema() {
    let srv = Scripted::without_search(|n, _| created(n));
    let p = Project::new();
    state_with_a(&p);
    p.task("a").task("b");
    let plan = p.plan_json();
    assert_eq!(
        keys(&plan),
        ["format_version", "target", "summary", "tasks"]
    );
    assert_eq!(
        keys(&plan["target"]),
        ["endpoint_host", "project_id", "workspace", "state"]
    );
    assert_eq!(
        keys(&plan["summary"]),
        [
            "create",
            "replace",
            "update",
            "delete",
            "unchanged",
            "orphan",
            "in_doubt",
            "superseded"
        ]
    );
    for t in plan["tasks"].as_array().unwrap() {
        assert_eq!(
            keys(t),
            ["name", "action", "hash", "task_id", "file", "changes"]
        );
    }
    let v = p
        .run(
            &[
                "apply",
                "--yes",
                "tasks",
                "--format",
                "json",
                "--endpoint",
                &srv.url,
            ],
            &[("TASKFORM_AUTH_TOKEN", TOKEN)],
        )
        .succeeds()
        .json();
    assert_eq!(keys(&v), ["format_version", "summary", "plan", "tasks"]);
    assert_eq!(
        keys(&v["summary"]),
        [
            "created",
            "replaced",
            "updated",
            "deleted",
            "unsupported",
            "failed",
            "in_doubt",
            "skipped"
        ]
    );
    assert_eq!(
        keys(&v["tasks"][0]),
        [
            "name",
            "action",
            "outcome",
            "task_id",
            "file",
            "http_status",
            "error_code",
            "error_msg",
            "attempts"
        ]
    );
    assert_eq!(v["tasks"][0]["outcome"], "created");
}

#[test]
fn help_documents_the_exit_codes() {
    Project::new()
        .run(&["plan", "--help"], &[])
        .stdout_has("2    plan --detailed-exitcode");
}
