//! Sensitive values (`${secret:NAME}`, issue #14.9): sent to the service and nowhere
//! else. Every output, file and log of a run is searched for the value.

use crate::common::*;

const SECRET: &str = "Hunter2-S3cret-Value";

fn project() -> Project {
    let p = Project::new();
    p.write(
        "tasks/db.yaml",
        "name: db\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: dli\n  password: ${secret:DB_PASSWORD}\n  dsn: host=db;pw=${secret:DB_PASSWORD}\n",
    );
    p
}

fn env(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DB_PASSWORD", secret.to_string()),
        ("TASKFORM_SECRET_KEY", "k-0123456789abcdef".into()),
        ("TASKFORM_AUTH_TOKEN", TOKEN.into()),
    ]
}

fn run(p: &Project, args: &[&str], env: &[(&'static str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.run(args, &env)
}

/// Every file below the project, concatenated.
fn all_files(p: &Project) -> String {
    text_below(p.dir.path())
}

fn assert_hidden(o: &Output) {
    assert!(!o.stdout.contains(SECRET), "stdout: {}", o.stdout);
    assert!(!o.stderr.contains(SECRET), "stderr: {}", o.stderr);
}

#[test]
fn a_secret_reaches_the_service_and_no_output_file_or_log() {
    let emu = Emu::start(&[]);
    let p = project();
    let e = env(SECRET);
    for format in ["text", "json", "markdown"] {
        let o = run(&p, &["plan", "tasks", "--format", format], &e);
        o.succeeds();
        assert_hidden(&o);
    }
    let o = run(&p, &["plan", "tasks", "--out", "plan.json", "-vv"], &e);
    o.succeeds();
    assert_hidden(&o);
    let o = run(
        &p,
        &[
            "apply",
            "plan.json",
            "--endpoint",
            &emu.url,
            "-vv",
            "--format",
            "json",
        ],
        &e,
    );
    o.succeeds();
    assert_hidden(&o);
    // The service got the value, exactly as written.
    let tasks = emu.tasks();
    assert_eq!(tasks[0]["task_config"]["password"], SECRET);
    assert_eq!(
        tasks[0]["task_config"]["dsn"],
        format!("host=db;pw={SECRET}")
    );
    // Nothing written here holds it: plan file, state, journal.
    let files = all_files(&p);
    assert!(!files.contains(SECRET), "a file holds the secret");
    assert!(
        files.contains("(sensitive:"),
        "the state records a fingerprint"
    );
    // Reading the server back finds no drift, and records no secret.
    let o = run(&p, &["refresh", "tasks", "--endpoint", &emu.url, "-vv"], &e);
    o.succeeds().stdout_has("no drift");
    assert_hidden(&o);
    let o = run(
        &p,
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--refresh",
            "--adopt",
        ],
        &e,
    );
    o.succeeds().stdout_has("No changes");
    assert!(!all_files(&p).contains(SECRET));
}

#[test]
fn a_changed_secret_changes_the_plan_but_shows_no_value() {
    let emu = Emu::start(&[]);
    let p = project();
    run(
        &p,
        &["apply", "--yes", "tasks", "--endpoint", &emu.url],
        &env(SECRET),
    )
    .succeeds();
    let rotated = "Rotated-N3w-Secret";
    let e = env(rotated);
    for format in ["text", "json", "markdown"] {
        let o = run(
            &p,
            &["plan", "tasks", "--format", format, "--detailed-exitcode"],
            &e,
        );
        o.fails_with(2);
        assert!(
            !o.stdout.contains(rotated) && !o.stdout.contains(SECRET),
            "{}",
            o.stdout
        );
    }
    let o = run(
        &p,
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--on-change",
            "update",
        ],
        &e,
    );
    o.succeeds();
    assert!(!o.stdout.contains(rotated) && !o.stderr.contains(rotated));
    assert_eq!(emu.tasks()[0]["task_config"]["password"], rotated);
    assert!(!all_files(&p).contains(rotated));
}

#[test]
fn a_saved_plan_refuses_a_secret_that_changed_since() {
    let emu = Emu::start(&[]);
    let p = project();
    run(&p, &["plan", "tasks", "--out", "plan.json"], &env(SECRET)).succeeds();
    run(
        &p,
        &["apply", "plan.json", "--endpoint", &emu.url],
        &env("Another-Value-42"),
    )
    .fails_with(1)
    .stderr_has("sensitive value");
    assert_eq!(emu.creates(), 0, "nothing sent");
}

#[test]
fn a_whole_variable_in_an_integer_field_is_an_integer() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.write(
        "tasks/t.yaml",
        "name: t\ndata_source_type: DLI\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 2 * * ?\"\n  enabled: ${ENABLED}\n  max_time_out: ${TIMEOUT}\ntask_config: {}\n",
    );
    p.run(
        &["validate", "tasks"],
        &[("ENABLED", "0"), ("TIMEOUT", "30")],
    )
    .succeeds();
    p.run(
        &["validate", "tasks"],
        &[("ENABLED", "yes"), ("TIMEOUT", "30")],
    )
    .fails_with(1)
    .stderr_has("tasks/t.yaml:6:12")
    .stderr_has("whole number")
    .stderr_lacks("remove the quotes");
    p.run(
        &["apply", "--yes", "tasks", "--endpoint", &emu.url],
        &[
            ("ENABLED", "0"),
            ("TIMEOUT", "30"),
            ("TASKFORM_AUTH_TOKEN", TOKEN),
        ],
    )
    .succeeds();
    assert_eq!(emu.tasks()[0]["schedule_config"]["enabled"], 0);
    assert_eq!(emu.tasks()[0]["schedule_config"]["max_time_out"], 30);
}

#[test]
fn a_secret_cannot_leak_through_another_field_a_credential_or_an_identity_field() {
    let p = project();
    // The same variable read plainly elsewhere is hidden there too.
    p.write(
        "tasks/db.yaml",
        "name: db\ndescription: \"copy: ${DB_PASSWORD}\"\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  password: ${secret:DB_PASSWORD}\n",
    );
    let e = env(SECRET);
    for format in ["text", "json", "markdown"] {
        let o = run(&p, &["plan", "tasks", "--format", format], &e);
        o.succeeds();
        assert_hidden(&o);
    }
    run(&p, &["plan", "tasks", "--out", "plan.json"], &e).succeeds();
    assert!(
        !all_files(&p).contains(SECRET),
        "the plan file holds the secret"
    );
    // A credential is never interpolated.
    p.write(
        "tasks/db.yaml",
        "name: db\ndescription: ${TASKFORM_AUTH_TOKEN}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config: {}\n",
    );
    let o = run(&p, &["plan", "tasks"], &e);
    o.fails_with(1)
        .stderr_has("names a credential taskform uses itself");
    assert!(!o.stdout.contains(TOKEN) && !o.stderr.contains(TOKEN));
    // Nor in a field whose value plans show.
    p.write(
        "tasks/db.yaml",
        "name: db\ndata_source_type: ${secret:DB_PASSWORD}\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config: {}\n",
    );
    let o = run(&p, &["plan", "tasks"], &e);
    o.fails_with(1)
        .stderr_has("tasks/db.yaml:2:")
        .stderr_has("cannot be used for `data_source_type`");
    assert_hidden(&o);
}

#[test]
fn ignore_changes_still_counts_for_a_task_whose_secret_is_also_read_plainly() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let write = |timeout: i64| {
        p.write(
            "tasks/db.yaml",
            &format!("name: db\ndescription: \"copy: ${{DB_PASSWORD}}\"\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: {timeout}\ntask_config:\n  password: ${{secret:DB_PASSWORD}}\ntaskform:\n  ignore_changes: [schedule_config.max_time_out]\n"),
        );
    };
    let e = env(SECRET);
    write(10);
    run(&p, &["apply", "--yes", "tasks", "--endpoint", &emu.url], &e).succeeds();
    write(30);
    run(&p, &["plan", "tasks"], &e)
        .succeeds()
        .stdout_has("No changes");
}

/// Issue #28.1: a state recording a value in plain text (as `export` does) and a
/// manifest that now reads it as `${secret:...}`: no plan output, plan file or state
/// shows it, and the apply records its fingerprint.
#[test]
fn a_value_recorded_plainly_then_made_sensitive_is_hidden_on_both_sides() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let write = |password: &str| {
        p.write(
            "tasks/db.yaml",
            &format!("name: db\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: dli\n  password: {password}\n"),
        );
    };
    let e = env(SECRET);
    write(SECRET);
    run(&p, &["apply", "--yes", "tasks", "--endpoint", &emu.url], &e).succeeds();
    assert!(all_files(&p).contains(SECRET), "the state holds it plainly");
    write("${secret:DB_PASSWORD}");
    for format in ["text", "json", "markdown"] {
        let o = run(&p, &["plan", "tasks", "--format", format], &e);
        o.succeeds();
        assert_hidden(&o);
        if format != "json" {
            assert!(o.stdout.contains("fingerprint"), "{format}: {}", o.stdout);
        }
    }
    run(&p, &["plan", "tasks", "--out", "plan.json"], &e).succeeds();
    let plan = std::fs::read_to_string(p.dir.path().join("plan.json")).unwrap();
    assert!(!plan.contains(SECRET), "the plan file holds it: {plan}");
    let o = run(&p, &["apply", "plan.json", "--endpoint", &emu.url], &e);
    o.succeeds();
    assert_hidden(&o);
    std::fs::remove_file(p.dir.path().join("plan.json")).unwrap();
    assert!(!all_files(&p).contains(SECRET), "the state still holds it");
    let o = run(&p, &["state", "show", "db"], &e);
    o.succeeds().stdout_has("(sensitive)");
    assert_hidden(&o);
    assert_eq!(
        emu.tasks().last().unwrap()["task_config"]["password"],
        SECRET
    );
}

/// Issue #28.3: a secret's value is matched as a whole value, or where its variable was
/// read, never as a part of another string: unrelated tasks are neither hidden,
/// updated nor refused, and nothing says what the secret is.
#[test]
fn a_secret_hides_whole_values_and_its_variable_never_parts_of_strings() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let task = |name: &str, config: &str| {
        format!(
            "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n{config}"
        )
    };
    p.write(
        "tasks/a.yaml",
        &task("a", "  queue: my-default-queue\n  other: S3cr3t-283\n"),
    );
    p.write("tasks/sales.yaml", &task("sales-daily", "  queue: q\n"));
    let e = |secret: &str| {
        vec![
            ("DB_PASSWORD", secret.to_string()),
            ("TASKFORM_SECRET_KEY", "k-0123456789abcdef".into()),
            ("TASKFORM_AUTH_TOKEN", TOKEN.into()),
        ]
    };
    run(
        &p,
        &["apply", "--yes", "tasks", "--endpoint", &emu.url],
        &e("x"),
    )
    .succeeds();
    p.write(
        "tasks/db.yaml",
        &task(
            "db",
            "  password: ${secret:DB_PASSWORD}\n  copy: \"pw=${DB_PASSWORD}\"\n",
        ),
    );
    p.write(
        "tasks/same.yaml",
        &task("same", "  literal: default-secret-value\n"),
    );
    for secret in ["default", "S3cr3t-28", "sales"] {
        let o = run(&p, &["plan", "tasks", "--format", "json"], &e(secret));
        o.succeeds();
        let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        for t in plan["tasks"].as_array().unwrap() {
            if ["a", "sales-daily"].contains(&t["name"].as_str().unwrap()) {
                assert_eq!(t["action"], "unchanged", "{secret}: {t}");
            }
        }
        assert!(!o.stderr.contains(secret), "{secret}: {}", o.stderr);
        run(&p, &["plan", "tasks", "--out", "plan.json"], &e(secret)).succeeds();
        let saved = std::fs::read_to_string(p.dir.path().join("plan.json")).unwrap();
        assert!(
            !saved.contains(&format!("pw={secret}")),
            "read plainly: hidden"
        );
    }
    // A whole value equal to the secret is hidden, in any task.
    let o = run(
        &p,
        &["plan", "tasks", "--format", "json"],
        &e("default-secret-value"),
    );
    o.succeeds();
    assert!(!o.stdout.contains("default-secret-value"), "{}", o.stdout);
}

/// Issue #28.1/#28.3, the planner's side: a value the state records plainly, now
/// sensitive but unchanged (moved into `${secret:...}` with the same value, or equal
/// to a secret as a whole), plans no update: the plan says the apply records its
/// fingerprint, the apply sends nothing and rewrites the record, and the next plan
/// has nothing to say. A changed value still plans an update.
#[test]
fn a_value_made_sensitive_but_unchanged_plans_no_update() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    let write = |password: &str| {
        p.write(
            "tasks/db.yaml",
            &format!("name: db\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: dli\n  password: {password}\n"),
        );
        p.write(
            "tasks/other.yaml",
            &format!("name: other\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: dli\n  literal: {SECRET}\n"),
        );
    };
    let e = env(SECRET);
    write(SECRET);
    run(&p, &["apply", "--yes", "tasks", "--endpoint", &emu.url], &e).succeeds();
    write("${secret:DB_PASSWORD}");
    let plan = run(&p, &["plan", "tasks", "--detailed-exitcode"], &e);
    plan.succeeds()
        .stdout_has("No changes")
        .stdout_has("applying records the fingerprint instead");
    assert_hidden(&plan);
    let json = run(&p, &["plan", "tasks", "--format", "json"], &e);
    json.succeeds();
    assert_hidden(&json);
    assert!(
        json.stdout.contains("applying records the fingerprint"),
        "{}",
        json.stdout
    );
    let before = emu.requests().len();
    let apply = run(&p, &["apply", "--yes", "tasks", "--endpoint", &emu.url], &e);
    apply.succeeds();
    assert_hidden(&apply);
    assert_eq!(emu.requests().len(), before, "nothing sent");
    let state = p.state_folder_text();
    assert!(!state.contains(SECRET), "the state still holds it: {state}");
    run(&p, &["plan", "tasks", "--detailed-exitcode"], &e)
        .succeeds()
        .stdout_lacks("fingerprint");
    // Another value is a change.
    run(
        &p,
        &["plan", "tasks", "--detailed-exitcode"],
        &env("Another-S3cret-Value"),
    )
    .fails_with(2)
    .stdout_has("update");
}
