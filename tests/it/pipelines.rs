//! Real pipelines (issue #14): no ordinary path creates a task twice, and CI can rely
//! on exit codes and on what a plan says about its target.

use crate::common::*;

const SETTINGS: &str = "project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\nworkspace: demo-workspace\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n";

/// A project whose settings do not name a state file, so the default applies.
fn without_state_setting() -> Project {
    let p = Project::new();
    p.write("tasks/taskform.yaml", SETTINGS);
    p
}

#[test]
fn usage_errors_exit_1_not_the_changes_code() {
    let p = Project::new();
    p.run(&["plan", "--no-such-flag", "tasks"], &[])
        .fails_with(1)
        .stderr_has("--no-such-flag");
    p.run(&["plan", "--format", "yaml", "tasks"], &[])
        .fails_with(1);
    p.run(&[], &[]).fails_with(1);
    p.run(&["--help"], &[]).succeeds().stdout_has("Usage");
    p.run(&["--version"], &[]).succeeds().stdout_has("taskform");
}

#[test]
fn detailed_exitcode_is_2_only_when_apply_would_send() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    // The orphan is reported and warned about, but apply would send nothing.
    p.run(&["plan", "--detailed-exitcode", "tasks"], &[])
        .succeeds()
        .stdout_has("orphan")
        .stderr_has("b");
    p.run(&["plan", "--detailed-exitcode", "--prune", "tasks"], &[])
        .fails_with(2);
    p.task("c");
    p.run(&["plan", "--detailed-exitcode", "tasks"], &[])
        .fails_with(2);
}

#[test]
fn an_explicit_endpoint_beats_one_derived_from_a_region() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.write(
        "tasks/taskform.yaml",
        &format!(
            "{SETTINGS}endpoint: {}\nstate: ../state/taskform.json\n",
            emu.url
        ),
    );
    p.task("a");
    p.run(
        &["apply", "--yes", "tasks"],
        &[
            ("TASKFORM_AUTH_TOKEN", TOKEN),
            ("HW_REGION_NAME", "cn-north-4"),
        ],
    )
    .succeeds();
    assert_eq!(emu.creates(), 1);
}

#[test]
fn an_empty_folder_warns_on_validate_and_is_refused_by_apply() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.run(&["validate", "tasks"], &[])
        .succeeds()
        .stderr_has("no manifests");
    p.apply(&emu.url, &[])
        .fails_with(1)
        .stderr_has("no manifests")
        .stderr_has("--allow-empty");
    p.apply(&emu.url, &["--allow-empty"]).succeeds();
    assert_eq!(emu.creates(), 0);
}

#[test]
fn the_default_state_follows_the_manifest_folder_not_the_working_folder() {
    let emu = Emu::start(&[]);
    let p = without_state_setting();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    assert!(p.path("tasks/state/taskform.json").exists());
    // The same folder, from inside it: nothing to do.
    p.run_in(
        "tasks",
        &["apply", "--yes", ".", "--endpoint", &emu.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .succeeds()
    .stdout_has("No changes");
    assert_eq!(emu.creates(), 2);
}

#[test]
fn a_state_at_the_old_default_location_is_not_silently_ignored() {
    let p = without_state_setting();
    p.task("a");
    p.write(
        "state/taskform.json",
        r#"{"version": 1, "serial": 1, "lineage": "l", "tasks": {"a": {"task_id": "T1", "hash": "sha256:x"}}}"#,
    );
    p.run(&["plan", "tasks"], &[])
        .fails_with(1)
        .stderr_has("state/taskform.json")
        .stderr_has("state: ../state/taskform.json");
}

#[test]
fn apply_with_a_new_state_refuses_to_create_names_the_service_already_has() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    let ids: Vec<String> = emu
        .tasks()
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect();
    // Another runner with another (empty) copy of the state.
    let out = p.apply(&emu.url, &["--state", "other/taskform.json"]);
    out.fails_with(1).stderr_has("taskform import");
    for id in &ids {
        out.stderr_has(id);
    }
    assert_eq!(emu.creates(), 2, "nothing created twice");
    p.apply(
        &emu.url,
        &["--state", "other/taskform.json", "--allow-duplicate-names"],
    )
    .succeeds();
    assert_eq!(emu.creates(), 4);
}

#[test]
fn a_saved_plan_applies_to_the_state_it_was_made_against() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.run(
        &[
            "plan",
            "tasks",
            "--state",
            "m9state.json",
            "--out",
            "p.json",
        ],
        &[],
    )
    .succeeds();
    p.online(&["apply", "p.json"], &emu.url).succeeds();
    assert!(p.path("m9state.json").exists());
    assert!(!p.path("state/taskform.json").exists());
    p.run(
        &[
            "plan",
            "tasks",
            "--state",
            "m9state.json",
            "--detailed-exitcode",
        ],
        &[],
    )
    .succeeds();
    assert_eq!(emu.creates(), 1);
}

#[test]
fn a_saved_plan_resolves_its_paths_from_its_own_folder() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.run(&["plan", "tasks", "--out", "plans/deeper/p.json"], &[])
        .succeeds();
    // From the folder it was made in, at another depth than the plan file.
    p.run(&["show", "plans/deeper/p.json", "--format", "json"], &[])
        .succeeds();
    std::fs::create_dir_all(p.path("elsewhere")).unwrap();
    p.run_in(
        "elsewhere",
        &["apply", "../plans/deeper/p.json", "--endpoint", &emu.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    )
    .succeeds();
    assert!(p.path("state/taskform.json").exists());
    assert!(!p.path("elsewhere/state").exists());
    assert_eq!(emu.creates(), 1);
}

#[test]
fn a_saved_plan_refuses_another_state_and_flags_it_was_not_made_with() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.run(&["plan", "tasks", "--out", "p.json"], &[]).succeeds();
    p.online(&["apply", "p.json", "--state", "other.json"], &emu.url)
        .fails_with(1)
        .stderr_has("other.json")
        .stderr_has("state/taskform.json");
    p.online(&["apply", "p.json", "--prune"], &emu.url)
        .fails_with(1)
        .stderr_has("--prune");
    assert_eq!(emu.creates(), 0);
    // A stale plan names the folder to plan again.
    p.task("b");
    p.online(&["apply", "p.json"], &emu.url)
        .fails_with(1)
        .stderr_has("taskform plan tasks --out p.json");
}

#[test]
fn a_changed_task_is_updated_in_place_by_default() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.apply(&emu.url, &[]).succeeds();
    let id = p.state()["tasks"]["a"]["task_id"].clone();
    p.write("tasks/a.yaml", &manifest("a", 20));
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("1 to update");
    p.apply(&emu.url, &[]).succeeds();
    assert_eq!(
        p.state()["tasks"]["a"]["task_id"],
        id,
        "same task, changed in place"
    );
    assert_eq!(emu.tasks().len(), 1, "no second copy on the server");
}

#[test]
fn superseded_tasks_left_on_the_server_stay_visible_in_every_plan() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    p.write("tasks/a.yaml", &manifest("a", 20));
    p.apply(&emu.url, &["--on-change", "recreate"]).succeeds();
    assert_eq!(emu.tasks().len(), 3, "the replace left the previous task");
    // Not "No changes": the previous copy still runs.
    let out = p.run(&["plan", "tasks", "--detailed-exitcode"], &[]);
    out.succeeds()
        .stdout_lacks("No changes")
        .stdout_has("superseded")
        .stdout_has("1 superseded still on the server")
        .stderr_has("superseded task(s)");
    let v = p.plan_json();
    assert_eq!(v["summary"]["superseded"], 1);
    assert!(
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["action"] == "superseded")
    );
    p.run(&["plan", "tasks", "--format", "markdown"], &[])
        .succeeds()
        .stdout_has("superseded");
    // --prune deletes it.
    p.run(&["plan", "tasks", "--prune", "--detailed-exitcode"], &[])
        .fails_with(2)
        .stdout_has("1 to delete");
}

#[test]
fn every_plan_names_its_target_and_state() {
    let p = Project::new();
    p.task("a");
    let env = [("HW_REGION_NAME", "cn-north-4")];
    p.run(&["plan", "tasks"], &env).succeeds().stdout_has(
        "Target: endpoint dayu.cn-north-4.myhuaweicloud.com · project 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d · workspace demo-workspace · state state/taskform.json",
    );
    p.run(&["plan", "tasks", "--format", "markdown"], &env)
        .succeeds()
        .stdout_has("endpoint `dayu.cn-north-4.myhuaweicloud.com`")
        .stdout_has("state `state/taskform.json`");
    let v = p
        .run(&["plan", "tasks", "--format", "json"], &env)
        .succeeds()
        .json();
    assert_eq!(
        v["target"]["endpoint_host"],
        "dayu.cn-north-4.myhuaweicloud.com"
    );
    assert_eq!(v["target"]["workspace"], "demo-workspace");
    assert_eq!(v["target"]["state"], "state/taskform.json");
}

#[test]
fn a_partly_known_target_is_still_checked_against_the_state() {
    let p = Project::new();
    p.write("tasks/taskform.yaml", "workspace: demo-workspace\nstate: ../state/taskform.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n");
    p.task("a");
    p.write(
        "state/taskform.json",
        r#"{"version": 1, "serial": 1, "lineage": "l", "target": {"project_id": "p-1", "workspace": "demo-workspace"}, "tasks": {}}"#,
    );
    p.run(&["plan", "tasks"], &[]).succeeds();
    p.run(&["plan", "tasks", "--workspace", "other"], &[])
        .fails_with(1)
        .stderr_has("belongs to project p-1 / workspace demo-workspace");
}

#[test]
fn target_plans_and_applies_only_the_matching_tasks() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("dli-a").task("dli-b").task("dws-c");
    p.apply(&emu.url, &[]).succeeds();
    for n in ["dli-a", "dli-b", "dws-c"] {
        p.write(&format!("tasks/{n}.yaml"), &manifest(n, 20));
    }
    let v = p
        .run(
            &["plan", "tasks", "--target", "dli-a", "--format", "json"],
            &[],
        )
        .succeeds()
        .json();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(v["selection"]["not_selected"], 2);
    p.run(&["plan", "tasks", "--target", "dli-*"], &[])
        .succeeds()
        .stdout_has("2 to update")
        .stdout_has("1 task(s) not selected (--target, --label) are left alone");
    // A saved plan records its selection and applies exactly it.
    p.run(
        &["plan", "tasks", "--target", "dws-?", "--out", "p.json"],
        &[],
    )
    .succeeds();
    p.online(&["apply", "p.json", "--target", "dli-a"], &emu.url)
        .fails_with(1)
        .stderr_has("--target");
    p.online(&["apply", "p.json"], &emu.url).succeeds();
    let updated: Vec<String> = emu
        .tasks()
        .iter()
        .filter(|t| t["schedule_config"]["max_time_out"] == 20)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(updated, ["dws-c"]);
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("2 to update");
}

#[test]
fn per_task_rules_select_by_label_and_protect_from_replacement() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let with_rules = |name: &str, timeout: i64, rules: &str| {
        format!("{}taskform:\n{rules}", manifest(name, timeout))
    };
    p.write(
        "tasks/a.yaml",
        &with_rules("a", 10, "  labels: {team: dw}\n  prevent_destroy: true\n"),
    );
    p.write(
        "tasks/b.yaml",
        &with_rules("b", 10, "  labels: {team: bi}\n"),
    );
    let plain = p.plan_json();
    p.apply(&emu.url, &[]).succeeds();
    // The rules are not sent, and leave the hash as it would be without them.
    assert!(emu.tasks().iter().all(|t| t.get("taskform").is_none()));
    p.write("tasks/b.yaml", &manifest("b", 10));
    let v = p.plan_json();
    assert_eq!(v["tasks"][1]["action"], "unchanged", "no rules, same hash");
    assert_eq!(plain["tasks"][1]["hash"], v["tasks"][1]["hash"]);
    // Selection by label.
    p.write(
        "tasks/a.yaml",
        &with_rules("a", 20, "  labels: {team: dw}\n  prevent_destroy: true\n"),
    );
    p.write(
        "tasks/b.yaml",
        &with_rules("b", 20, "  labels: {team: bi}\n"),
    );
    p.run(&["plan", "tasks", "--label", "team=bi"], &[])
        .succeeds()
        .stdout_has("~ b  update")
        .stdout_lacks("~ a")
        .stdout_has("1 task(s) not selected");
    // prevent_destroy: a replace of `a` is an error; an update in place is fine.
    p.run(&["plan", "tasks", "--on-change", "recreate"], &[])
        .fails_with(1)
        .stderr_has("prevent_destroy")
        .stderr_has(": a;");
    p.apply(&emu.url, &["--on-change", "recreate"])
        .fails_with(1);
    assert_eq!(emu.creates(), 2, "nothing replaced");
    p.apply(&emu.url, &[]).succeeds();
    // Bad rules are reported where they are.
    p.write(
        "tasks/a.yaml",
        &with_rules("a", 20, "  prevent_destroy: yes please\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("tasks/a.yaml:10:")
        .stderr_has("`prevent_destroy` must be true or false");
}

#[test]
fn destroy_deletes_every_recorded_task_but_a_protected_one() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.write(
        "tasks/c.yaml",
        &format!("{}taskform:\n  prevent_destroy: true\n", manifest("c", 10)),
    );
    p.apply(&emu.url, &[]).succeeds();
    p.run(&["plan", "tasks", "--destroy"], &[])
        .fails_with(1)
        .stderr_has("prevent_destroy")
        .stderr_has(": c;");
    p.write("tasks/c.yaml", &manifest("c", 10));
    p.run(&["plan", "tasks", "--destroy", "--detailed-exitcode"], &[])
        .fails_with(2)
        .stdout_has("3 to delete");
    p.apply(&emu.url, &["--destroy", "--max-deletes", "2"])
        .fails_with(1)
        .stderr_has("more than --max-deletes 2");
    assert_eq!(emu.tasks().len(), 3);
    p.apply(&emu.url, &["--destroy"]).succeeds();
    assert_eq!(emu.tasks().len(), 0, "every task deleted");
    assert!(p.state()["tasks"].as_object().unwrap().is_empty());
}

#[test]
fn ignore_changes_leaves_fields_out_of_the_hash_and_of_drift() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let rules = "taskform:\n  ignore_changes: [schedule_config.max_time_out]\n";
    p.write("tasks/a.yaml", &format!("{}{rules}", manifest("a", 10)));
    p.apply(&emu.url, &[]).succeeds();
    let id = p.state()["tasks"]["a"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    // An operator changes the field in the console: no drift.
    let mut body = emu.tasks()[0].clone();
    body["schedule_config"]["max_time_out"] = serde_json::json!(99);
    let (status, _) = emu.call("PUT", &format!("/{id}"), &body.to_string());
    assert_eq!(status, 200);
    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has("no drift");
    // Nor does changing it in the manifest make a plan.
    p.write("tasks/a.yaml", &format!("{}{rules}", manifest("a", 30)));
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes");
    // Another field still does.
    p.write(
        "tasks/a.yaml",
        &format!("{}description: new\n{rules}", manifest("a", 30)),
    );
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("1 to update");
    // A saved plan keeps the rule: its file checks, applies, and the next plan is empty.
    p.run(&["plan", "tasks", "--out", "p.json"], &[]).succeeds();
    p.online(&["apply", "p.json"], &emu.url).succeeds();
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes");
    p.write(
        "tasks/a.yaml",
        &format!("{}taskform:\n  ignore_changes: nope\n", manifest("a", 30)),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("`ignore_changes` must be a list of field paths");
}

#[test]
fn refresh_reads_only_the_selected_tasks() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    for name in ["a", "b"] {
        let id = p.state()["tasks"][name]["task_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(emu.call("DELETE", &format!("/{id}"), "").0, 200);
    }
    let shows_before = emu.calls().iter().filter(|c| c.starts_with("GET")).count();
    p.online(&["refresh", "tasks", "--target", "a"], &emu.url)
        .succeeds()
        .stdout_has("deleted outside taskform: a")
        .stdout_lacks(": b");
    let shows = emu.calls().iter().filter(|c| c.starts_with("GET")).count() - shows_before;
    assert_eq!(shows, 1, "only a was read");
    let state = p.state();
    assert!(state["tasks"].get("a").is_none());
    assert!(state["tasks"].get("b").is_some(), "b left alone");
}
