//! Onboarding without silent mistakes (issue #28): the inputs a new team gets wrong
//! are refused with what to write instead, never taken for something else.

use crate::common::*;

/// A mistyped PostgreSQL URL, by flag, environment or taskform.yaml, is refused with
/// a did-you-mean; it never becomes a local state file.
#[test]
fn a_mistyped_state_url_is_refused_never_a_file() {
    let p = Project::new();
    p.task("a");
    for bad in [
        "postgress://taskform@127.0.0.1:55432/taskform",
        "postgresql//taskform@127.0.0.1:55432/taskform",
        "postgres:/taskform@127.0.0.1/taskform",
        "Postgres//taskform@db/taskform",
        "pg://taskform@db/taskform",
    ] {
        let by_flag = p.run(&["plan", "tasks", "--state", bad], &[]);
        by_flag.fails_with(1).stderr_has("did you mean postgres://");
        let by_env = p.run(&["plan", "tasks"], &[("TASKFORM_STATE", bad)]);
        by_env.fails_with(1).stderr_has("did you mean postgres://");
        p.write(
            "tasks/taskform.yaml",
            &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: {bad}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
        );
        let by_file = p.run(&["plan", "tasks"], &[]);
        by_file
            .fails_with(1)
            .stderr_has("taskform.yaml:3:8")
            .stderr_has("did you mean postgres://");
        p.write(
            "tasks/taskform.yaml",
            &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: ../state/taskform.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
        );
        let apply = p.apply("http://127.0.0.1:9", &["--state", bad]);
        apply.fails_with(1);
        assert!(
            !p.path("state").exists() && !p.path("tasks/postgress:").exists(),
            "{bad}: a state was written"
        );
        let _ = std::fs::remove_dir_all(p.path("postgresql"));
    }
    // Ordinary paths, even with a colon in a later component or a drive-like letter,
    // stay paths.
    p.run(&["plan", "tasks", "--state", "state/a:b.json"], &[])
        .succeeds();
}

/// `schema DIR` of a repo with `environments:` leaves out of `required` what the shared
/// defaults or any environment's defaults set (every manifest of such a repo failed
/// the editor's schema check).
#[test]
fn the_schema_of_an_environments_repo_knows_every_defaults() {
    let p = Project::new();
    p.write(
        "tasks/taskform.yaml",
        "defaults:\n  user_id: u-1\nenvironments:\n  dev:\n    project_id: p\n    workspace: w\n    defaults:\n      dir_id: \"0\"\n  prod:\n    project_id: p\n    workspace: w\n    defaults:\n      schedule_config:\n        cron_expression: 0 0 2 * * ?\n",
    );
    let schema = p.run(&["schema", "tasks"], &[]).succeeds().json();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!required.contains(&"user_id"), "{required:?}");
    assert!(!required.contains(&"dir_id"), "{required:?}");
    assert!(required.contains(&"data_source_type"), "{required:?}");
    let text = schema.to_string();
    assert!(
        !text.contains("\"required\":[\"cron_expression\"]"),
        "a cron expression set by prod's defaults is not required: {text}"
    );
    // The example repo: every shared default is honoured.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments");
    let o = p.run(&["schema", example.to_str().unwrap()], &[]);
    o.succeeds();
    let required = o.json()["required"].clone();
    assert!(!required.to_string().contains("user_id"), "{required}");
}

/// A folder below `overlays/` that matches no environment (`prdo`, a typo of prod)
/// silently dropped prod's own tasks from every plan: it is an error naming the folder,
/// with did-you-mean, for validate and plan alike.
#[test]
fn an_overlay_folder_that_matches_no_environment_is_an_error() {
    let p = Project::new();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments"),
        &p.path("repo"),
    );
    std::fs::rename(p.path("repo/overlays/prod"), p.path("repo/overlays/prdo")).unwrap();
    for args in [
        vec!["validate", "repo"],
        vec!["plan", "repo", "--all-envs"],
        vec!["plan", "repo", "--env", "dev"],
    ] {
        p.run(&args, &[])
            .fails_with(1)
            .stderr_has(
                "repo/overlays/prdo/: the overlay folder `overlays/prdo` matches no environment",
            )
            .stderr_has("did you mean `overlays/prod`?");
    }
    // Pointed at by an environment's `overlay:`, the folder is that overlay.
    let settings = std::fs::read_to_string(p.path("repo/taskform.yaml")).unwrap();
    let settings = settings.replace(
        "    state: state/prod.json\n",
        "    state: state/prod.json\n    overlay: overlays/prdo\n",
    );
    p.write("repo/taskform.yaml", &settings);
    p.run(&["validate", "repo"], &[]).succeeds();
}

const PW: &str = "Hunter2-Crm-Pass";
const AK: &str = "AKIA-0123456789-TEST";

/// Tasks made in the console: secrets in their task_config, a non-ASCII name.
fn console_tasks(emu: &Emu) {
    let made = Project::new();
    made.write(
        "tasks/mysql.yaml",
        &format!("name: mysql-crm-028\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: crm\n  password: {PW}\n  obs:\n    access_key: {AK}\n  queue: default\n"),
    );
    made.write(
        "tasks/orders.yaml",
        "name: 订单 任务\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: orders\n",
    );
    made.write(
        "tasks/orders2.yaml",
        "name: 订单-任务\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: orders2\n",
    );
    made.apply(&emu.url, &[]).succeeds();
}

/// `export` writes `${secret:NAME}` for every secret-looking value (never the value,
/// in a manifest, the state or any output), records the value's fingerprint so that
/// the next plan is clean once the variables are set, and prints one summary of the
/// variables to provide.
#[test]
fn export_writes_placeholders_for_secrets_and_records_their_fingerprints() {
    let emu = Emu::start(&[]);
    console_tasks(&emu);
    let p = Project::new();
    let key = ("TASKFORM_SECRET_KEY", "k-0123456789abcdef");
    let out = p.run(
        &[
            "export",
            "out",
            "--project-id",
            PROJECT,
            "--workspace",
            WORKSPACE,
            "--endpoint",
            &emu.url,
        ],
        &[("TASKFORM_AUTH_TOKEN", TOKEN), key],
    );
    out.succeeds();
    let files = text_below(&p.path("out"));
    for text in [&out.stdout, &out.stderr, &files] {
        assert!(
            !text.contains(PW) && !text.contains(AK),
            "a secret written: {text}"
        );
    }
    let manifest = std::fs::read_to_string(p.path("out/dli/mysql-crm-028.yaml")).unwrap();
    assert!(
        manifest.contains("password: ${secret:MYSQL_CRM_028_PASSWORD}")
            && manifest.contains("access_key: ${secret:MYSQL_CRM_028_ACCESS_KEY}")
            && manifest.contains("queue: default"),
        "{manifest}"
    );
    // One summary, naming each variable once.
    let summary = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        summary.matches("MYSQL_CRM_028_PASSWORD").count(),
        1,
        "{summary}"
    );
    assert!(summary.contains("2 secret values"), "{summary}");
    // Without the variables the plan says which are missing; with them it is clean.
    p.run(&["plan", "out"], &[key])
        .fails_with(1)
        .stderr_has("MYSQL_CRM_028_PASSWORD");
    p.run(
        &["plan", "out", "--detailed-exitcode"],
        &[
            key,
            ("MYSQL_CRM_028_PASSWORD", PW),
            ("MYSQL_CRM_028_ACCESS_KEY", AK),
        ],
    )
    .succeeds()
    .stdout_has("No changes.");
    // --plaintext-secrets keeps the values (for those who insist).
    let plain = p.run(
        &[
            "export",
            "plain",
            "--project-id",
            PROJECT,
            "--workspace",
            WORKSPACE,
            "--endpoint",
            &emu.url,
            "--plaintext-secrets",
        ],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    );
    plain.succeeds();
    let manifest = std::fs::read_to_string(p.path("plain/dli/mysql-crm-028.yaml")).unwrap();
    assert!(manifest.contains(PW), "{manifest}");
    // --secret-keys names the keys instead: `queue` is then a secret, password not.
    p.run(
        &[
            "export",
            "custom",
            "--project-id",
            PROJECT,
            "--workspace",
            WORKSPACE,
            "--endpoint",
            &emu.url,
            "--secret-keys",
            "queue",
        ],
        &[("TASKFORM_AUTH_TOKEN", TOKEN), key],
    )
    .succeeds();
    let manifest = std::fs::read_to_string(p.path("custom/dli/mysql-crm-028.yaml")).unwrap();
    assert!(
        manifest.contains("queue: ${secret:MYSQL_CRM_028_QUEUE}") && manifest.contains(PW),
        "{manifest}"
    );
}

/// Export's details (#28.8): a loopback endpoint given by flag is written (so the
/// commands it prints run), server-echoed fields stay out of manifests and defaults,
/// non-ASCII names get stable readable files, later exports leave out what the
/// defaults set, and the state folder it creates ignores lock files.
#[test]
fn export_writes_what_a_user_sets_under_stable_names() {
    let emu = Emu::start(&[]);
    console_tasks(&emu);
    let p = Project::new();
    let env = [
        ("TASKFORM_AUTH_TOKEN", TOKEN),
        ("TASKFORM_SECRET_KEY", "k-0123456789abcdef"),
        ("MYSQL_CRM_028_PASSWORD", PW),
        ("MYSQL_CRM_028_ACCESS_KEY", AK),
    ];
    let export = |dir: &str| {
        p.run(
            &[
                "export",
                dir,
                "--project-id",
                PROJECT,
                "--workspace",
                WORKSPACE,
                "--endpoint",
                &emu.url,
            ],
            &env,
        )
    };
    export("out").succeeds();
    let settings = std::fs::read_to_string(p.path("out/taskform.yaml")).unwrap();
    assert!(
        settings.contains(&format!("endpoint: {}", emu.url)),
        "{settings}"
    );
    let files = text_below(&p.path("out"));
    for echoed in ["project_id: ", "user_name:", "path:", "task_id:"] {
        let in_manifests = files.matches(echoed).count();
        let allowed = usize::from(echoed == "project_id: "); // the target's, in taskform.yaml
        assert!(in_manifests <= allowed, "{echoed} written: {files}");
    }
    // Readable, stable names for non-ASCII task names.
    let mut names: Vec<String> = std::fs::read_dir(p.path("out/dli"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n != "task.yaml" && !n.starts_with("task-")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("ding")), "{names:?}");
    export("again").succeeds();
    let mut again: Vec<String> = std::fs::read_dir(p.path("again/dli"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    again.sort();
    assert_eq!(names, again);
    // The state folder ignores lock files.
    let ignore = std::fs::read_to_string(p.path("out/state/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*.lock"), "{ignore}");
    // The state import command it would print runs as printed: the endpoint is known.
    let task = emu
        .tasks()
        .into_iter()
        .find(|t| t["name"] == "订单-任务")
        .unwrap();
    let (id, name) = (task["id"].as_str().unwrap(), task["name"].as_str().unwrap());
    p.run(&["state", "rm", name, "--dir", "out"], &env)
        .succeeds();
    p.run(&["state", "import", name, id, "--dir", "out"], &env)
        .succeeds();
    // A later export into the folder leaves out what its defaults set.
    let later = Project::new();
    later.task("later-task");
    later.apply(&emu.url, &[]).succeeds();
    export("out").succeeds();
    let written = std::fs::read_to_string(p.path("out/dli/later-task.yaml")).unwrap();
    assert!(
        !written.contains("user_id") && !written.contains("dir_id"),
        "{written}"
    );
    p.run(
        &["plan", "out", "--detailed-exitcode"],
        &[
            ("TASKFORM_SECRET_KEY", "k-0123456789abcdef"),
            ("MYSQL_CRM_028_PASSWORD", PW),
            ("MYSQL_CRM_028_ACCESS_KEY", AK),
        ],
    )
    .succeeds()
    .stdout_has("No changes.");
}

/// What a review found (issue #28): export refuses a secret it cannot write as a
/// placeholder rather than write it in plain text; a secret from the folder's
/// defaults never reaches the state; `state show` never prints the value of a
/// secret-looking key; a nested overlay folder is no stray one.
#[test]
fn export_never_writes_a_secret_it_cannot_place_and_show_hides_plain_ones() {
    let emu = Emu::start(&[]);
    let made = Project::new();
    made.write(
        "tasks/odd.yaml",
        "name: odd\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: x\n  spark.secret.key: Dotted-S3cret-77\n",
    );
    made.apply(&emu.url, &[]).succeeds();
    let p = Project::new();
    let out = p.online(
        &[
            "export",
            "out",
            "--project-id",
            PROJECT,
            "--workspace",
            WORKSPACE,
        ],
        &emu.url,
    );
    out.fails_with(1)
        .stderr_has("odd task_config.spark.secret.key");
    assert!(!p.path("out/dli").exists(), "nothing written");
    assert!(!out.stdout.contains("Dotted-S3cret-77") && !out.stderr.contains("Dotted-S3cret-77"));
    // --plaintext-secrets writes it (with a warning); `state show` still hides it.
    p.online(
        &[
            "export",
            "out",
            "--project-id",
            PROJECT,
            "--workspace",
            WORKSPACE,
            "--plaintext-secrets",
        ],
        &emu.url,
    )
    .succeeds();
    let show = p.run(&["state", "show", "odd", "--dir", "out"], &[]);
    show.succeeds().stdout_has("(sensitive)");
    assert!(!show.stdout.contains("Dotted-S3cret-77"), "{}", show.stdout);

    // A secret from the folder's defaults: the state records its fingerprint.
    let q = Project::new();
    q.write(
        "out/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n  task_config:\n    token: ${{secret:SHARED_TOKEN}}\n"),
    );
    let shared = Project::new();
    shared.write(
        "tasks/t.yaml",
        "name: with-token\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: y\n  token: Shared-T0ken-88\n",
    );
    shared.apply(&emu.url, &[]).succeeds();
    q.run(
        &[
            "export",
            "out",
            "--endpoint",
            &emu.url,
            "--secret-keys",
            "nothing-matches",
        ],
        &[
            ("TASKFORM_AUTH_TOKEN", TOKEN),
            ("SHARED_TOKEN", "Shared-T0ken-88"),
        ],
    )
    .succeeds();
    let state = q.state_folder_text();
    assert!(!state.contains("Shared-T0ken-88"), "{state}");
}

#[test]
fn a_nested_overlay_folder_is_no_stray_one() {
    let p = Project::new();
    p.write(
        "r/taskform.yaml",
        &format!("defaults:\n  user_id: u-1\n  dir_id: \"0\"\nenvironments:\n  dev:\n    project_id: {PROJECT}\n    workspace: {WORKSPACE}\n    overlay: overlays/team-a/dev\n"),
    );
    p.write("r/tasks/a.yaml", &manifest("a", 10));
    p.write("r/overlays/team-a/dev/b.yaml", &manifest("b", 10));
    p.run(&["validate", "r"], &[]).succeeds();
}
