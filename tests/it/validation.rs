//! Validation that catches what the service would reject (issues #14.10, #14.11, #15.5,
//! #15.9): `schedule_type`, `enabled`, Quartz cron expressions field by field,
//! `data_source_type` warnings, settings files that are not tasks (`taskform.yml`,
//! nested targets), a server-assigned `job_id`, and control characters in task names.
//! Every problem is `file:line:col: message` with a hint, at the node concerned.

use crate::common::*;

/// A task whose schedule is `schedule` (indented lines under `schedule_config:`, line 5
/// onwards).
fn with_schedule(name: &str, schedule: &str) -> String {
    format!("name: {name}\ndata_source_type: DLI\ntask_config: {{}}\nschedule_config:\n{schedule}")
}

#[test]
fn schedule_type_and_enabled_are_checked_with_hints() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        &with_schedule(
            "a",
            "  schedule_type: cron\n  cron_expression: nonsense\n  enabled: 7\n",
        ),
    );
    p.write(
        "tasks/b.yaml",
        &with_schedule("b", "  schedule_type: Daily\n  enabled: true\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stdout_is("")
        .stderr_has("error: tasks/a.yaml:5:18: `schedule_config.schedule_type` must be RUN_ONCE or CRON, not `cron`\n  hint: did you mean `CRON`?")
        .stderr_has("error: tasks/a.yaml:6:20: invalid cron_expression `nonsense`: expected 6 or 7 fields (seconds first), found 1\n  hint: ")
        .stderr_has("error: tasks/a.yaml:7:12: `schedule_config.enabled` must be 0 or 1, found 7\n  hint: 1 schedules the task")
        .stderr_has("error: tasks/b.yaml:5:18: `schedule_config.schedule_type` must be RUN_ONCE or CRON, not `Daily`\n  hint: RUN_ONCE runs the task once; CRON runs it on `cron_expression`")
        .stderr_has("error: tasks/b.yaml:6:12: `schedule_config.enabled` must be a 32-bit integer, found a boolean\n  hint: write enabled: 1 (1 schedules the task, 0 leaves it stopped)")
        .stderr_has("5 problems in 2 files");
}

#[test]
fn quartz_needs_a_question_mark_in_exactly_one_day_field() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        &with_schedule(
            "a",
            "  schedule_type: CRON\n  cron_expression: \"0 0 2 * * *\"\n",
        ),
    );
    p.write(
        "tasks/b.yaml",
        &with_schedule(
            "b",
            "  schedule_type: CRON\n  cron_expression: \"0 0 2 ? * ?\"\n",
        ),
    );
    p.write(
        "tasks/c.yaml",
        &with_schedule(
            "c",
            "  schedule_type: CRON\n  cron_expression: \"0 0 2 1 * MON\"\n",
        ),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/a.yaml:6:20: invalid cron_expression `0 0 2 * * *`: day-of-month `*` and day-of-week `*`: Quartz needs `?` in exactly one of them\n  hint: put `?` in the one you do not use, e.g. \"0 0 2 * * ?\"")
        .stderr_has("error: tasks/b.yaml:6:20: invalid cron_expression `0 0 2 ? * ?`: day-of-month `?` and day-of-week `?`: Quartz needs `?` in exactly one of them\n  hint: put `*` in one of them, e.g. \"0 0 2 * * ?\"")
        .stderr_has("error: tasks/c.yaml:6:20: invalid cron_expression `0 0 2 1 * MON`: day-of-month `1` and day-of-week `MON`: Quartz needs `?` in exactly one of them\n  hint: Quartz cannot combine a day of the month with a day of the week");
}

#[test]
fn cron_errors_name_the_field_and_its_value() {
    let p = Project::new();
    let cases = [
        ("0 0 25 * * ?", "hours field `25`: 25 is out of range 0-23"),
        (
            "60 0 2 * * ?",
            "seconds field `60`: 60 is out of range 0-59",
        ),
        (
            "0 5-75 2 * * ?",
            "minutes field `5-75`: 75 is out of range 0-59",
        ),
        (
            "0 0 2 32 * ?",
            "day-of-month field `32`: 32 is out of range 1-31",
        ),
        (
            "0 0 2 ? 13 *",
            "month field `13`: 13 is out of range 1-12 or JAN-DEC",
        ),
        (
            "0 0 2 ? * 0",
            "day-of-week field `0`: 0 is out of range 1-7 (1 = Sunday) or SUN-SAT",
        ),
        (
            "0 0 2 ? * MON 1969",
            "year field `1969`: 1969 is out of range 1970-2099",
        ),
        (
            "0 */0 2 * * ?",
            "minutes field `*/0`: the step after `/` must be 1 or more",
        ),
        (
            "0 0 2 ? FOO *",
            "month field `FOO`: `FOO` is not a number or a month name (JAN-DEC)",
        ),
        (
            "0 0 2 ? * MON#6",
            "day-of-week field `MON#6`: the week after `#` must be 1-5",
        ),
        (
            "0 0 ? * * *",
            "hours field `?`: `?` is allowed only in day-of-month and day-of-week",
        ),
    ];
    for (i, (expr, _)) in cases.iter().enumerate() {
        p.write(
            &format!("tasks/c{i:02}.yaml"),
            &with_schedule(
                &format!("c{i:02}"),
                &format!("  schedule_type: CRON\n  cron_expression: \"{expr}\"\n"),
            ),
        );
    }
    let out = p.run(&["validate", "tasks"], &[]);
    out.fails_with(1)
        .stderr_lacks("out of bounds")
        .stderr_has(&format!(
            "{} problems in {} files",
            cases.len(),
            cases.len()
        ));
    for (i, (expr, msg)) in cases.iter().enumerate() {
        out.stderr_has(&format!(
            "error: tasks/c{i:02}.yaml:6:20: invalid cron_expression `{expr}`: {msg}\n  hint: Quartz fields, seconds first: seconds minutes hours day-of-month month day-of-week [year]"
        ));
    }
}

#[test]
fn valid_quartz_expressions_pass() {
    let p = Project::new();
    let good = [
        "0 30 2 * * ?",
        "00 */15 9-23 * * ?",
        "0 0 */6 ? * MON-FRI",
        "0 0 2 ? * mon-fri",
        "0 0/30 * * * ? 2027",
        "0 0 12 L * ?",
        "0 0 12 LW * ?",
        "0 0 12 L-3 * ?",
        "0 0 12 15W * ?",
        "0 15 10 ? * 6L",
        "0 15 10 ? * 6#3",
        "0 15 10 ? * L",
        "0 0 22-2 * * ?",
        "0 0 12 ? JAN,MAR-MAY SUN 2026-2030",
        "0 0/5 14,18 * * ?",
        "*/10 * * * * ?",
    ];
    for (i, expr) in good.iter().enumerate() {
        p.write(
            &format!("tasks/g{i:02}.yaml"),
            &with_schedule(
                &format!("g{i:02}"),
                &format!("  schedule_type: CRON\n  cron_expression: \"{expr}\"\n  enabled: 1\n"),
            ),
        );
    }
    p.run(&["validate", "tasks"], &[])
        .succeeds()
        .stdout_is(&format!(
            "{n} tasks in {n} files are valid.\n",
            n = good.len()
        ));
}

#[test]
fn job_id_is_assigned_by_the_service() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        &with_schedule("a", "  schedule_type: RUN_ONCE\n  job_id: 42\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/a.yaml:6:3: `schedule_config.job_id` is assigned by the service and must not be in a manifest\n  hint: remove `job_id`: the service assigns it when it creates the task's schedule");
}

#[test]
fn unknown_data_source_types_warn_and_a_setting_silences_them() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        &manifest("a", 1).replace("data_source_type: DLI", "data_source_type: FOO"),
    );
    p.write(
        "tasks/b.yaml",
        &manifest("b", 1).replace("data_source_type: DLI", "data_source_type: dli"),
    );
    for (i, known) in ["DWS", "HIVE", "MRS_HIVE", "MRS_SPARK", "POSTGRESQL"]
        .iter()
        .enumerate()
    {
        p.write(
            &format!("tasks/k{i}.yaml"),
            &manifest(&format!("k{i}"), 1).replace(
                "data_source_type: DLI",
                &format!("data_source_type: {known}"),
            ),
        );
    }
    p.run(&["validate", "tasks"], &[])
        .succeeds()
        .stdout_is("7 tasks in 7 files are valid.\n")
        .stderr_has("WARN")
        .stderr_has("tasks/a.yaml:2:19: `data_source_type` `FOO` is not a value seen in the DataArts documentation or SDKs; the service may refuse it")
        .stderr_has("known_data_source_types: [FOO]")
        .stderr_has("tasks/b.yaml:2:19: `data_source_type` `dli` is not a value seen")
        .stderr_has("did you mean `DLI`?")
        .stderr_lacks("DWS`")
        .stderr_lacks("MRS_HIVE`");

    p.write(
        "tasks/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nknown_data_source_types: [FOO, dli]\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .succeeds()
        .stderr_lacks("data_source_type");

    p.write(
        "tasks/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nknown_data_source_types: FOO\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/taskform.yaml:3:26: `known_data_source_types` must be a list of strings\n  hint: known_data_source_types: [MY_TYPE, OTHER_TYPE]");
}

#[test]
fn an_unknown_data_source_type_in_defaults_is_shown_in_the_settings_file() {
    let p = Project::new();
    p.write(
        "tasks/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n  data_source_type: ODD\n"),
    );
    p.write(
        "tasks/a.yaml",
        &manifest("a", 1).replace("data_source_type: DLI\n", ""),
    );
    p.run(&["validate", "tasks"], &[])
        .succeeds()
        .stderr_has("tasks/taskform.yaml:6:21: `data_source_type` `ODD` is not a value seen");
}

#[test]
fn taskform_yml_is_not_a_task_and_must_be_renamed() {
    let p = Project::new();
    p.task("a");
    p.write("tasks/taskform.yml", &format!("project_id: {PROJECT}\n"));
    p.write("tasks/sub/taskform.yml", "workspace: w\n");
    p.write("tasks/sub/b.yaml", &manifest("b", 1));
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/taskform.yml: `taskform.yml` is not read as settings: taskform reads settings only from `taskform.yaml`\n  hint: merge it into tasks/taskform.yaml and delete it")
        .stderr_has("error: tasks/sub/taskform.yml: `taskform.yml` is not read as settings: taskform reads settings only from `taskform.yaml`\n  hint: rename it to taskform.yaml")
        .stderr_lacks("unknown field `project_id`")
        .stderr_lacks("unknown field `workspace`")
        .stderr_has("2 problems in 2 files");

    let q = Project::new();
    std::fs::remove_file(q.path("tasks/taskform.yaml")).unwrap();
    q.task("a");
    q.write("tasks/taskform.yml", &format!("project_id: {PROJECT}\n"));
    q.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/taskform.yml: `taskform.yml` is not read as settings: taskform reads settings only from `taskform.yaml`\n  hint: rename it to taskform.yaml");
}

/// `envs/` holding one target per environment, each with its own settings.
fn environments() -> Project {
    let p = Project::new();
    for env in ["dev", "prod"] {
        p.write(
            &format!("envs/{env}/taskform.yaml"),
            &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
        );
        p.write(
            &format!("envs/{env}/tasks/a.yaml"),
            &manifest(&format!("{env}-a"), 1),
        );
    }
    p
}

#[test]
fn a_folder_of_targets_is_not_one_target() {
    let p = environments();
    p.run(&["validate", "envs"], &[])
        .fails_with(1)
        .stderr_has("error: no task manifests in envs: its subfolders envs/dev, envs/prod have their own taskform.yaml and are separate targets")
        .stderr_has("`taskform plan envs/dev`, `taskform plan envs/prod`")
        .stderr_lacks("unknown field");
    p.run(&["plan", "envs"], &[])
        .fails_with(1)
        .stderr_has("separate targets");
    p.run(&["validate", "envs/dev"], &[])
        .succeeds()
        .stdout_is("1 task in 1 file is valid.\n");
}

#[test]
fn nested_targets_are_skipped_and_named() {
    let p = environments();
    p.write(
        "envs/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
    );
    p.write("envs/shared.yaml", &manifest("shared", 1));
    p.run(&["validate", "envs"], &[])
        .succeeds()
        .stdout_is("1 task in 1 file is valid.\n")
        .stderr_has("skipped envs/dev, envs/prod: each has its own taskform.yaml and is a separate target; plan each on its own: `taskform plan envs/dev`, `taskform plan envs/prod`");
    let plan = p
        .run(&["plan", "--format", "json", "envs"], &[])
        .succeeds()
        .json();
    let names: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shared"], "{plan}");
}

#[test]
fn control_and_bidi_characters_in_names_are_refused_and_shown_escaped() {
    let p = Project::new();
    let cases = [
        ("esc", "\\e[31mred", "\\u{1b}"),
        ("nl", "forged\\n+ other", "\\n"),
        ("del", "x\\x7Fy", "\\u{7f}"),
        ("c1", "x\\x9By", "\\u{9b}"),
        ("rlo", "x\\u202Ey", "\\u{202e}"),
        ("fsi", "x\\u2068y", "\\u{2068}"),
    ];
    for (file, yaml_escaped, _) in &cases {
        p.write(
            &format!("tasks/{file}.yaml"),
            &manifest("PLACEHOLDER", 1)
                .replace("name: PLACEHOLDER", &format!("name: \"{yaml_escaped}\"")),
        );
    }
    p.write("tasks/fine.yaml", &manifest("dépôt-日本-ok", 1));
    let out = p.run(&["validate", "tasks"], &[]);
    out.fails_with(1)
        .stderr_has(&format!("{n} problems in {n} files", n = cases.len()));
    for (file, _, shown) in &cases {
        out.stderr_has(&format!("error: tasks/{file}.yaml:1:7: `name` contains a control or bidirectional-override character, shown here as `{shown}`"))
            .stderr_has("hint: task names are shown in plans, logs and pull-request comments, where such characters can hide or forge text; remove it");
    }
    for raw in ['\u{1b}', '\u{7f}', '\u{9b}', '\u{202e}', '\u{2068}'] {
        assert!(
            !out.stderr.contains(raw),
            "raw {raw:?} in stderr: {}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("forged\n"),
        "a raw newline from a name: {}",
        out.stderr
    );
}

#[test]
fn parameter_config_entries_are_checked_against_custom_metadata() {
    let p = Project::new();
    p.write(
        "tasks/a.yaml",
        "name: a\ndata_source_type: DLI\ntask_config: {}\nschedule_config:\n  schedule_type: RUN_ONCE\nparameter_config:\n  - {description: 5, type: [a, b], descriptoin: typo}\n  - {description: Owning team, type: string}\n",
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/a.yaml:7:19: `parameter_config[0].description` must be a string, found an integer\n  hint: YAML reads the unquoted `5` as an integer; quote it to send a string: description: \"5\"")
        .stderr_has("error: tasks/a.yaml:7:28: `parameter_config[0].type` must be a string, found a list")
        .stderr_has("unknown field `parameter_config[0].descriptoin`\n  hint: did you mean `description`?")
        .stderr_has("3 problems in 1 file");
    p.write(
        "tasks/a.yaml",
        "name: a\ndata_source_type: DLI\ntask_config: {}\nschedule_config:\n  schedule_type: RUN_ONCE\nparameter_config:\n  - {description: Owning team, type: string, task_id: \"x\"}\n",
    );
    p.run(&["validate", "tasks"], &[]).succeeds();
}
