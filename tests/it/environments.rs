//! One config repo, many environments: the example repo planned and applied per
//! environment against one emulator each (its own project, workspace and token),
//! overlays (patch, add, remove), variables, and the errors a person gets.

use crate::common::envs::*;
use crate::common::*;
use serde_json::Value;

fn run(p: &Project, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let t = tokens();
    let mut env: Vec<(&str, &str)> = t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(extra);
    p.run(args, &env)
}

fn task(emu: &Emu, name: &str) -> Value {
    emu.tasks()
        .into_iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not on the server"))
}

#[test]
fn the_example_repo_applies_per_environment_and_plans_all_at_once() {
    let (p, emus) = example();
    let all = run(&p, &["plan", "--all-envs", "--format", "json", "repo"], &[]);
    let plans = all.succeeds().json();
    let creates = |env: &str| -> Vec<String> {
        plans["environments"][env]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["action"], "create");
                t["name"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let shared = [
        "dli-orders-nightly",
        "dli-sales-archive",
        "dli-sales-daily",
        "dws-warehouse-marts",
    ];
    assert_eq!(creates("dev"), shared, "dev leaves hive-lake-hourly out");
    let mut staging = shared.to_vec();
    staging.push("hive-lake-hourly");
    assert_eq!(creates("staging"), staging);
    let mut prod = vec!["dli-audit-weekly"];
    prod.extend(&staging);
    assert_eq!(creates("prod"), prod, "prod adds its own task");

    for (env, emu) in ENVS.iter().zip(&emus) {
        run(&p, &["apply", "--yes", "--env", env, "repo"], &[])
            .succeeds()
            .stdout_has(&format!("workspace {env}-workspace"));
        assert!(
            emu.requests().iter().all(|r| r["path"]
                .as_str()
                .unwrap()
                .contains(&format!("/v3/{}", &emu_project(env)))),
            "{env}: every request went to its own project"
        );
    }
    // Each environment's own values, through variables, defaults and patches.
    let (dev, staging, prod) = (&emus[0], &emus[1], &emus[2]);
    let orders = task(dev, "dli-orders-nightly");
    assert_eq!(orders["schedule_config"]["cron_expression"], "0 0 12 * * ?");
    assert_eq!(orders["schedule_config"]["enabled"], 0);
    assert_eq!(
        orders["schedule_config"]["interval"], "1 days",
        "the rest is shared"
    );
    assert_eq!(orders["task_config"]["queue"], "default");
    assert_eq!(orders["schedule_config"]["max_time_out"], 10);
    assert_eq!(
        task(staging, "dli-orders-nightly")["task_config"]["queue"],
        "staging"
    );
    assert_eq!(
        task(staging, "dws-warehouse-marts")["description"],
        "Daily collection of the warehouse marts (staging)."
    );
    let orders = task(prod, "dli-orders-nightly");
    assert_eq!(orders["task_config"]["queue"], "batch");
    assert_eq!(orders["task_config"]["enableDataClassification"], false);
    assert_eq!(orders["task_config"]["enableDataProfile"], true);
    assert_eq!(
        orders["schedule_config"]["max_time_out"], 60,
        "an integer from a variable"
    );
    assert_eq!(orders["duty_person"], "data-platform-oncall");
    assert_eq!(
        task(prod, "dli-audit-weekly")["task_config"]["queue"],
        "batch"
    );
    assert_eq!(dev.tasks().len(), 4);
    assert_eq!(staging.tasks().len(), 5);
    assert_eq!(prod.tasks().len(), 6);

    // Everything applied: one review says so, and exit 0 with --detailed-exitcode.
    run(
        &p,
        &["plan", "--all-envs", "--detailed-exitcode", "repo"],
        &[],
    )
    .succeeds()
    .stdout_has("dev: No changes")
    .stdout_has("prod: No changes");
    // A change in the shared manifests shows in every environment.
    let path = p.path("repo/tasks/dws/warehouse.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("Data marts in", "The data marts in")).unwrap();
    let md = run(
        &p,
        &[
            "plan",
            "--all-envs",
            "--format",
            "markdown",
            "--detailed-exitcode",
            "repo",
        ],
        &[],
    );
    md.fails_with(2)
        .stdout_has("### taskform plan: 3 environments")
        .stdout_has("Changes in `dev`, `prod`.")
        .stdout_has("### Environment `staging`");
    // prevent_destroy from prod's patch: prod refuses to destroy it; dev does not.
    run(&p, &["plan", "--env", "prod", "--destroy", "repo"], &[])
        .fails_with(1)
        .stderr_has("prevent_destroy");
}

fn emu_project(env: &str) -> String {
    let i = ENVS.iter().position(|e| *e == env).unwrap();
    format!("{i}a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d")
}

#[test]
fn an_environment_uses_its_own_credentials_never_the_shared_ones() {
    let (p, emus) = example();
    // Only the shared variable is set (with dev's token): prod must not use it.
    p.run(
        &["apply", "--yes", "--env", "prod", "repo"],
        &[("TASKFORM_AUTH_TOKEN", "prod-token")],
    )
    .fails_with(1)
    .stderr_has("credentials");
    assert_eq!(emus[2].requests().len(), 0, "nothing was sent");
    // Its own variable works.
    p.run(
        &["apply", "--yes", "--env", "prod", "repo"],
        &[("PROD_TASKFORM_AUTH_TOKEN", "prod-token")],
    )
    .succeeds();
}

#[test]
fn a_repo_with_environments_needs_env() {
    let (p, _emus) = example();
    for args in [
        vec!["apply", "--yes", "repo"],
        vec!["plan", "repo"],
        vec!["state", "list", "--dir", "repo"],
    ] {
        run(&p, &args, &[])
            .fails_with(1)
            .stderr_has("declares environments (dev, staging, prod): pass --env NAME");
    }
    run(&p, &["plan", "--env", "qa", "repo"], &[])
        .fails_with(1)
        .stderr_has(
            "--env qa: no such environment (this settings file declares dev, staging, prod)",
        );
}

/// A small repo with one environment and the overlay `overlays/e/`.
fn overlay_repo(overlay: &str) -> Project {
    let p = Project::new();
    p.write(
        "r/taskform.yaml",
        &format!(
            "variables:\n  t: 5\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\nenvironments:\n  e:\n    project_id: {PROJECT}\n    workspace: {WORKSPACE}\n    state: state/e.json\n"
        ),
    );
    p.write("r/tasks/a.yaml", &manifest("a", 10));
    p.write("r/tasks/b.yaml", &manifest("b", 10));
    p.write("r/overlays/e/o.yaml", overlay);
    p
}

#[test]
fn overlays_patch_add_and_remove_and_point_at_their_own_lines() {
    let p = overlay_repo(
        "patch: a\nschedule_config:\n  max_time_out: ${var:t}\n---\nremove: b\n---\nname: c\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 1\ntask_config: {}\n",
    );
    let plan = p
        .run(&["plan", "--env", "e", "--format", "json", "r"], &[])
        .succeeds()
        .json();
    let names: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    // The patch took: the applied body of `a` has the variable's integer.
    let emu = Emu::start(&["--rate-limit", "0"]);
    p.online(&["apply", "--yes", "--env", "e", "r"], &emu.url)
        .succeeds();
    let a = emu.tasks().into_iter().find(|t| t["name"] == "a").unwrap();
    assert_eq!(a["schedule_config"]["max_time_out"], 5);

    // A patch naming no shared task: an error at the patch's line.
    let p = overlay_repo("# a typo\npatch: aa\ndescription: x\n");
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("overlays/e/o.yaml:2:8: the patch names `aa`, but no shared task has that name")
        .stderr_has("did you mean `a`?");
    let p = overlay_repo("remove: [b, zz]\n");
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("overlays/e/o.yaml:1:13: `remove` names `zz`");
    // A bad value in a patch: at the patch's line, not the shared file's.
    let p = overlay_repo("patch: a\nschedule_config:\n  max_time_out: lots\n");
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("overlays/e/o.yaml:3:17:")
        .stderr_has("from the overlay's patch of the task in");
    // An undefined variable: at its line.
    let p = overlay_repo("patch: a\ndescription: ${var:nope}\n");
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("overlays/e/o.yaml:2:14: variable `nope` is not defined");
    // A variable that is not a whole number in an integer field.
    let p = overlay_repo("patch: a\nschedule_config:\n  max_time_out: ${var:t}\n");
    let settings = std::fs::read_to_string(p.path("r/taskform.yaml")).unwrap();
    p.write("r/taskform.yaml", &settings.replace("  t: 5", "  t: five"));
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("must give a whole number");
    // An overlay task of a shared name: a duplicate (use `patch:`).
    let p = overlay_repo(&manifest("a", 3));
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("duplicate task name `a`");
}

#[test]
fn plan_all_envs_markdown_fits_one_comment_and_names_every_change() {
    let p = Project::new();
    let mut settings = "defaults:\n  user_id: u-1\n  dir_id: \"0\"\nenvironments:\n".to_string();
    for env in ENVS {
        settings.push_str(&format!(
            "  {env}:\n    project_id: {PROJECT}\n    workspace: {env}\n    state: state/{env}.json\n"
        ));
    }
    p.write("r/taskform.yaml", &settings);
    for i in 0..500 {
        p.write(
            &format!("r/tasks/t{i:04}.yaml"),
            &manifest(&format!("collect-the-metadata-of-table-{i:04}"), 10),
        );
    }
    let out = p.run(&["plan", "--all-envs", "--format", "markdown", "r"], &[]);
    out.succeeds();
    let chars = out.stdout.chars().count();
    assert!(chars <= 65_536, "{chars} characters");
    for env in ENVS {
        let section = out
            .stdout
            .split(&format!("### Environment `{env}`"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {env}"));
        let section = section.split("### Environment").next().unwrap();
        for i in 0..500 {
            let name = format!("collect-the-metadata-of-table-{i:04}");
            assert!(section.contains(&name), "{env}: {name} is not named");
        }
    }
}

#[test]
fn validate_checks_every_environment_and_says_which_one_failed() {
    let (p, _emus) = example();
    run(&p, &["validate", "repo"], &[])
        .succeeds()
        .stdout_has("6 tasks in 8 files are valid");
    run(&p, &["fmt", "--check", "repo"], &[]).succeeds();
    p.write(
        "repo/overlays/prod/changes.yaml",
        "patch: dli-orders-nightly\ndescription: ${var:missing}\n",
    );
    run(&p, &["validate", "repo"], &[])
        .fails_with(1)
        .stderr_has("overlays/prod/changes.yaml:2:14: variable `missing` is not defined")
        .stderr_has("(in environment prod)");
}

#[test]
fn export_of_a_thousand_tasks_then_plan_is_a_no_op() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let made = Project::new();
    made.tasks(1000);
    made.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let before = emu.requests().len();
    let p = Project::new();
    let started = std::time::Instant::now();
    p.online(
        &["export", "out", "--project-id", PROJECT, "--workspace", WORKSPACE],
        &emu.url,
    )
    .succeeds()
    .stdout_has("Exported 1000 tasks into out (1000 files and taskform.yaml); 1000 recorded in out/state/taskform.json.");
    eprintln!("export of 1,000 tasks: {:?}", started.elapsed());
    let searches = emu.requests().len() - before;
    assert!(
        searches <= 11,
        "{searches} requests for 1,000 tasks (pages of 100)"
    );
    let settings = std::fs::read_to_string(p.path("out/taskform.yaml")).unwrap();
    assert!(settings.contains("user_id: u-1"), "lifted: {settings}");
    let one = std::fs::read_to_string(p.path("out/dli/t0007.yaml")).unwrap();
    assert!(
        one.starts_with("name: t0007\n") && !one.contains("user_id"),
        "{one}"
    );
    p.run(&["plan", "--detailed-exitcode", "out"], &[])
        .succeeds()
        .stdout_has("No changes. 1000 tasks up to date.");
    let before = emu.requests().len();
    p.online(&["apply", "--yes", "out"], &emu.url).succeeds();
    assert_eq!(emu.requests().len(), before, "apply sent nothing");
    // Again: every task is recorded, so nothing is exported.
    p.online(&["export", "out"], &emu.url)
        .succeeds()
        .stdout_has("Exported 0 tasks")
        .stdout_has("1000 the state records already");
    // With another state, the files are in the way: refused, then --force.
    p.online(&["export", "out", "--state", "other.json"], &emu.url)
        .fails_with(1)
        .stderr_has("1000 already exist in out")
        .stderr_has("--force");
    p.online(
        &["export", "out", "--state", "other.json", "--force"],
        &emu.url,
    )
    .succeeds();
}

#[test]
fn export_writes_both_tasks_of_a_duplicate_name_and_records_neither() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let made = Project::new();
    made.task("a").task("b");
    made.apply(&emu.url, &[]).succeeds();
    let other = Project::new();
    other.task("b");
    other
        .apply(&emu.url, &["--allow-duplicate-names"])
        .succeeds();
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
        .stderr_has("2 remote tasks are named b")
        .stdout_has("1 recorded");
    let files: Vec<String> = std::fs::read_dir(p.path("out/dli"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b"))
        .collect();
    assert!(
        files.len() == 2 && files.contains(&"b.yaml".to_string()),
        "one file each, the second with its task ID's first letters: {files:?}"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("out/state/taskform.json")).unwrap())
            .unwrap();
    assert!(state["tasks"].get("a").is_some() && state["tasks"].get("b").is_none());
    // The team keeps one file and records its task by ID.
    let second = files.iter().find(|f| *f != "b.yaml").unwrap();
    std::fs::remove_file(p.path("out/dli").join(second)).unwrap();
    p.run(&["plan", "out"], &[]).succeeds().stdout_has("+ b");
    let first = emu
        .tasks()
        .into_iter()
        .filter(|t| t["name"] == "b")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    out.stderr_has("taskform state import b TASK_ID --dir out");
    p.online(&["state", "import", "b", &first, "--dir", "out"], &emu.url)
        .succeeds();
    p.run(&["plan", "--detailed-exitcode", "out"], &[])
        .succeeds()
        .stdout_has("No changes");
}

#[test]
fn a_manifest_cannot_read_an_environments_credential() {
    let (p, _emus) = example();
    // dev's plan must not print prod's token, whichever environment is planned.
    p.write(
        "repo/overlays/dev/leak.yaml",
        &manifest("leak", 10).replace("dli_test", "${PROD_TASKFORM_AUTH_TOKEN}"),
    );
    let out = run(&p, &["plan", "--env", "dev", "repo"], &[]);
    out.fails_with(1)
        .stderr_has("`${PROD_TASKFORM_AUTH_TOKEN}` names a credential taskform uses itself");
    assert!(!out.stdout.contains("prod-token") && !out.stderr.contains("prod-token"));
}

#[test]
fn an_environment_target_beats_the_process_environment_and_all_envs_takes_no_target_flags() {
    let (p, emus) = example();
    // A runner's HW_PROJECT_ID / TASKFORM_WORKSPACE / TASKFORM_STATE do not move prod.
    run(
        &p,
        &["apply", "--yes", "--env", "prod", "repo"],
        &[
            ("HW_PROJECT_ID", "ffffffffffffffffffffffffffffffff"),
            ("TASKFORM_WORKSPACE", "elsewhere"),
            ("TASKFORM_STATE", "elsewhere.json"),
        ],
    )
    .succeeds()
    .stdout_has("workspace prod-workspace")
    .stdout_has("state repo/state/prod.json");
    assert_eq!(emus[2].tasks().len(), 6);
    run(&p, &["plan", "--all-envs", "--workspace", "x", "repo"], &[])
        .fails_with(1)
        .stderr_has("--workspace would point them all at one");
}

#[test]
fn overlays_of_undeclared_environments_are_never_shared_and_states_are_per_environment() {
    let p = overlay_repo("remove: b\n");
    // A folder left from an environment that is gone is an error (#28.6), never
    // shared manifests.
    p.write("r/overlays/qa/extra.yaml", &manifest("qa-only", 1));
    p.run(&["plan", "--env", "e", "r"], &[])
        .fails_with(1)
        .stderr_has("the overlay folder `overlays/qa` matches no environment");
    std::fs::remove_dir_all(p.path("r/overlays/qa")).unwrap();
    let plan = p
        .run(&["plan", "--env", "e", "--format", "json", "r"], &[])
        .succeeds()
        .json();
    assert_eq!(plan["tasks"].as_array().unwrap().len(), 1, "{plan}");
    // `overlay: ./overlays/e/` is the same folder.
    let settings = std::fs::read_to_string(p.path("r/taskform.yaml")).unwrap();
    p.write(
        "r/taskform.yaml",
        &format!("{settings}    overlay: ./overlays/e/\n"),
    );
    p.run(&["plan", "--env", "e", "r"], &[]).succeeds();
    // Two environments on one state file are refused.
    p.write(
        "r/taskform.yaml",
        &format!(
            "{settings}  f:\n    project_id: {PROJECT}\n    workspace: other\n    state: ./state/e.json\n"
        ),
    );
    p.run(&["plan", "--env", "f", "r"], &[])
        .fails_with(1)
        .stderr_has("environments e and f would share one state");
    // Without `state:` anywhere, each environment gets state/<name>.json.
    let no_state = settings.replace("    state: state/e.json\n", "");
    p.write(
        "r/taskform.yaml",
        &format!("{no_state}  f:\n    project_id: {PROJECT}\n    workspace: other\n"),
    );
    p.run(&["plan", "--env", "f", "r"], &[])
        .succeeds()
        .stdout_has("state r/state/f.json");
}

#[test]
fn variables_only_environments_define_work_with_all_envs_and_validate() {
    let p = overlay_repo("remove: b\n");
    let settings = std::fs::read_to_string(p.path("r/taskform.yaml")).unwrap();
    // `q` exists only in the environment; the shared defaults use it.
    p.write(
        "r/taskform.yaml",
        &(settings.replace(
            "  dir_id: \"0\"\n",
            "  dir_id: \"0\"\n  description: ${var:q}\n",
        ) + "    variables:\n      q: from-e\n"),
    );
    p.run(&["plan", "--all-envs", "r"], &[])
        .succeeds()
        .stdout_has("e: Plan: 1 to create");
    p.run(&["validate", "r"], &[]).succeeds();
    p.run(&["plan", "r"], &[])
        .fails_with(1)
        .stderr_has("declares environments (e): pass --env NAME");
}

#[test]
fn a_saved_plan_keeps_its_environment() {
    let (p, _emus) = example();
    run(
        &p,
        &["plan", "--env", "dev", "--out", "dev.plan", "repo"],
        &[],
    )
    .succeeds();
    run(&p, &["apply", "--env", "prod", "dev.plan"], &[])
        .fails_with(1)
        .stderr_has("the plan was made for the environment dev, not prod");
    // TASKFORM_ENV set for the job does not stand in the way; the plan says dev.
    run(&p, &["apply", "dev.plan"], &[("TASKFORM_ENV", "prod")])
        .succeeds()
        .stdout_has("workspace dev-workspace");
}

#[test]
fn export_into_an_environment_writes_its_overlay() {
    let (p, emus) = example();
    run(&p, &["apply", "--yes", "--env", "staging", "repo"], &[]).succeeds();
    // A task made in the console, named like a settings file.
    let made = Project::new();
    made.write(
        "t/taskform.yaml",
        &format!(
            "project_id: {}\nworkspace: staging-workspace\nstate: ../s.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n",
            emu_project("staging")
        ),
    );
    made.write("t/x.yaml", &manifest("taskform", 3));
    made.run(
        &["apply", "--yes", "t", "--endpoint", &emus[1].url],
        &[("TASKFORM_AUTH_TOKEN", "staging-token")],
    )
    .succeeds();
    // Into staging's overlay, under a name that is not a settings file; the tasks the
    // staging state knows stay as they are.
    let out = run(&p, &["export", "--env", "staging", "--force", "repo"], &[]);
    out.succeeds();
    assert!(
        p.path("repo/overlays/staging/dli/taskform-task.yaml")
            .exists(),
        "{}",
        out.stderr
    );
    assert!(
        !p.path("repo/overlays/staging/dli/dli-orders-nightly.yaml")
            .exists()
    );
    run(
        &p,
        &["plan", "--env", "staging", "--detailed-exitcode", "repo"],
        &[],
    )
    .succeeds()
    .stdout_has("No changes. 6 tasks up to date.");
}

/// `export --all-envs` (#28.9): three environments onboarded at once. What they share
/// becomes shared manifests, their differences patches in their overlays, their own
/// tasks manifests there; every task is recorded in its environment's state, and
/// `plan --all-envs` is clean afterwards. One listing per environment.
#[test]
fn export_all_envs_shares_what_environments_share_and_patches_the_rest() {
    let (p, emus) = example();
    for env in ENVS {
        run(&p, &["apply", "--yes", "--env", env, "repo"], &[]).succeeds();
    }
    // Console-made extras: a secret that differs per environment, one that does not,
    // and a name that is another kind of task in prod.
    for (i, env) in ENVS.iter().enumerate() {
        let extra = Project::new();
        let dst = if *env == "prod" { "HIVE" } else { "DLI" };
        extra.write(
            "tasks/extra.yaml",
            &format!(
                "name: mysql-crm\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: crm\n  password: Pw-{env}-0042\n---\nname: shared-secret\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: s\n  token: Same-Token-0042\n---\nname: mixed\ndata_source_type: {dst}\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: m\n"
            ),
        );
        let emu = &emus[i];
        let mut settings = std::fs::read_to_string(extra.path("tasks/taskform.yaml")).unwrap();
        settings = settings
            .replace(PROJECT, &format!("{i}a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d"))
            .replace(WORKSPACE, &format!("{env}-workspace"));
        extra.write("tasks/taskform.yaml", &settings);
        extra
            .run(
                &["apply", "--yes", "tasks", "--endpoint", &emu.url],
                &[("TASKFORM_AUTH_TOKEN", &format!("{env}-token"))],
            )
            .succeeds();
    }
    // A new repo with the same settings and no manifest.
    let settings = std::fs::read_to_string(p.path("repo/taskform.yaml")).unwrap();
    p.write("onboard/taskform.yaml", &settings);
    let before: Vec<usize> = emus.iter().map(|e| e.requests().len()).collect();
    let key = ("TASKFORM_SECRET_KEY", "k-0123456789abcdef");
    let out = run(&p, &["export", "--all-envs", "onboard"], &[key]);
    out.succeeds();
    for (emu, before) in emus.iter().zip(&before) {
        assert_eq!(
            emu.requests().len() - before,
            1,
            "one listing per environment"
        );
    }
    // Shared manifests, patches, environment-only manifests.
    let read = |rel: &str| std::fs::read_to_string(p.path(&format!("onboard/{rel}")));
    let shared = read("dli/dli-orders-nightly.yaml").expect("shared manifest");
    assert!(shared.starts_with("name: dli-orders-nightly\n"), "{shared}");
    let dev_patch = read("overlays/dev/dli/dli-orders-nightly.yaml").expect("dev's patch");
    assert!(
        dev_patch.starts_with("patch: dli-orders-nightly\n"),
        "{dev_patch}"
    );
    assert!(dev_patch.contains("0 0 12 * * ?"), "{dev_patch}");
    // The queue differs in every environment (a variable in the example): each says
    // its own, and nothing else.
    let staging = read("overlays/staging/dli/dli-orders-nightly.yaml").unwrap();
    assert_eq!(
        staging,
        "patch: dli-orders-nightly\ntask_config:\n  queue: staging\n"
    );
    let audit = read("overlays/prod/dli/dli-audit-weekly.yaml").expect("prod's own task");
    assert!(audit.starts_with("name: dli-audit-weekly\n"), "{audit}");
    assert!(
        read("overlays/staging/hive/hive-lake-hourly.yaml").is_ok(),
        "not in dev: per environment"
    );
    assert!(read("hive/hive-lake-hourly.yaml").is_err());
    assert!(
        out.stdout.contains("mixed (another data_source_type)"),
        "{}",
        out.stdout
    );
    assert!(
        read("overlays/prod/hive/mixed.yaml").is_ok()
            && read("overlays/dev/dli/mixed.yaml").is_ok()
    );
    // Secrets: one variable per environment where they differ, one where they agree.
    let crm = read("dli/mysql-crm.yaml").unwrap();
    assert!(
        !crm.contains("password"),
        "a differing secret is left to the patches: {crm}"
    );
    let prod_crm = read("overlays/prod/dli/mysql-crm.yaml").unwrap();
    assert!(
        prod_crm.contains("${secret:PROD_MYSQL_CRM_PASSWORD}"),
        "{prod_crm}"
    );
    assert!(
        read("dli/shared-secret.yaml")
            .unwrap()
            .contains("${secret:SHARED_SECRET_TOKEN}")
    );
    let everything = format!("{}{}", out.stdout, out.stderr);
    for env in ENVS {
        assert!(!everything.contains(&format!("Pw-{env}-0042")));
    }
    for f in files_below(&p.path("onboard")) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains("-0042"), "{} holds a secret", f.display());
    }
    // The next plan of every environment is clean.
    let mut vars = vec![key, ("SHARED_SECRET_TOKEN", "Same-Token-0042")];
    let pws: Vec<(String, String)> = ENVS
        .iter()
        .map(|e| {
            (
                format!("{}_MYSQL_CRM_PASSWORD", e.to_uppercase()),
                format!("Pw-{e}-0042"),
            )
        })
        .collect();
    vars.extend(pws.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let plan = run(
        &p,
        &["plan", "--all-envs", "--detailed-exitcode", "onboard"],
        &vars,
    );
    plan.succeeds();
    // Again: everything is recorded, nothing is exported.
    let again = run(&p, &["export", "--all-envs", "onboard"], &vars);
    again.succeeds().stdout_has("0 shared manifests");
    // --all-envs takes no target.
    run(
        &p,
        &["export", "--all-envs", "--env", "dev", "onboard"],
        &[],
    )
    .fails_with(1)
    .stderr_has("leave out --env");
}

/// One environment that cannot be planned gets its own error section (text, Markdown,
/// JSON `environments.NAME.error`); the others are planned; the exit code is 1
/// (issue #29.3).
#[test]
fn one_environment_that_fails_does_not_hide_the_others() {
    let (p, _emus) = example();
    std::fs::create_dir_all(p.path("repo/state")).unwrap();
    std::fs::write(p.path("repo/state/staging.json"), "not a state {").unwrap();
    let text = run(&p, &["plan", "--all-envs", "repo"], &[]);
    text.fails_with(1)
        .stdout_has("== Environment staging ==")
        .stdout_has("staging: not planned")
        .stdout_has("dev: Plan: 4 to create")
        .stdout_has("prod: Plan: 6 to create")
        .stderr_has("environment staging:");
    let json = run(&p, &["plan", "--all-envs", "--format", "json", "repo"], &[]);
    json.fails_with(1);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(doc["environments"]["staging"]["error"].is_string(), "{doc}");
    assert_eq!(doc["environments"]["prod"]["summary"]["create"], 6);
    let md = run(
        &p,
        &["plan", "--all-envs", "--format", "markdown", "repo"],
        &[],
    );
    md.fails_with(1)
        .stdout_has("### Environment `staging`: not planned")
        .stdout_has("Environment `prod`");
}

/// `plan --all-envs --out FILE` saves every environment's plan, each bound to its own
/// state; `apply --env prod FILE` applies exactly prod's (issue #29.2). A folder gets
/// one plan file per environment.
#[test]
fn the_plan_reviewed_for_every_environment_is_the_plan_applied() {
    let (p, emus) = example();
    run(
        &p,
        &["plan", "--all-envs", "repo", "--out", "plans.json"],
        &[],
    )
    .succeeds();
    run(&p, &["apply", "plans.json"], &[])
        .fails_with(1)
        .stderr_has("holds the plans of dev, staging, prod: apply one with --env NAME");
    run(&p, &["apply", "--env", "qa", "plans.json"], &[])
        .fails_with(1)
        .stderr_has("no plan for the environment qa");
    run(&p, &["apply", "--env", "prod", "plans.json"], &[]).succeeds();
    assert_eq!(emus[2].tasks().len(), 6, "prod applied");
    assert!(
        emus[0].tasks().is_empty() && emus[1].tasks().is_empty(),
        "only prod"
    );
    // The same file again: prod's plan is stale now.
    run(&p, &["apply", "--env", "prod", "plans.json"], &[]).fails_with(1);
    // TASKFORM_ENV picks one too.
    run(&p, &["apply", "plans.json"], &[("TASKFORM_ENV", "dev")]).succeeds();
    assert_eq!(emus[0].tasks().len(), 4, "dev has no hourly lake task");
    // A folder: one file per environment.
    run(&p, &["plan", "--all-envs", "repo", "--out", "plans/"], &[]).succeeds();
    for env in ENVS {
        assert!(p.path(&format!("plans/{env}.json")).is_file(), "{env}");
    }
    run(&p, &["apply", "plans/staging.json"], &[]).succeeds();
    assert_eq!(emus[1].tasks().len(), 5);
}

#[test]
fn show_takes_one_environment_of_a_file_of_plans() {
    let (p, _emus) = example();
    run(
        &p,
        &["plan", "--all-envs", "repo", "--out", "plans.json"],
        &[],
    )
    .succeeds();
    run(&p, &["show", "plans.json"], &[])
        .fails_with(1)
        .stderr_has("--env NAME");
    run(&p, &["show", "--env", "prod", "plans.json"], &[])
        .succeeds()
        .stdout_has("workspace prod-workspace");
}

/// The command a message suggests, between backticks, as arguments.
fn suggested(stderr: &str, starts: &str) -> Vec<String> {
    let at = stderr
        .find(&format!("`{starts}"))
        .unwrap_or_else(|| panic!("no `{starts}...` in: {stderr}"));
    let rest = &stderr[at + 1..];
    let cmd = &rest[..rest.find('`').unwrap()];
    cmd.split_whitespace().skip(1).map(str::to_string).collect()
}

/// Every command a message suggests runs as printed in a repo with environments: it
/// keeps `--env` (issue #29.6); a value from TASKFORM_ENV is named as such.
#[test]
fn suggested_commands_keep_the_environment() {
    let (p, emus) = example();
    // A saved plan refuses --prune: the suggested plan command names prod.
    run(
        &p,
        &["plan", "--env", "prod", "repo", "--out", "p.json"],
        &[],
    )
    .succeeds();
    let refused = run(&p, &["apply", "p.json", "--prune"], &[]);
    refused.fails_with(1);
    let args = suggested(&refused.stderr, "taskform plan");
    assert!(args.contains(&"--env".to_string()), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&p, &args, &[]).succeeds();
    // A stale plan: the suggested command makes prod's plan again.
    run(
        &p,
        &["plan", "--env", "prod", "repo", "--out", "p.json"],
        &[],
    )
    .succeeds();
    run(&p, &["apply", "--yes", "--env", "prod", "repo"], &[]).succeeds();
    let stale = run(&p, &["apply", "p.json"], &[]);
    stale.fails_with(1);
    let args = suggested(&stale.stderr, "taskform plan");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(args.contains(&"prod"), "{args:?}");
    run(&p, &args, &[]).succeeds();
    // A new state while prod's tasks exist: the suggested import names prod.
    std::fs::remove_file(p.path("repo/state/prod.json")).unwrap();
    let dup = run(&p, &["apply", "--yes", "--env", "prod", "repo"], &[]);
    dup.fails_with(1);
    let args = suggested(&dup.stderr, "taskform import");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&p, &args, &[]).succeeds();
    assert_eq!(emus[2].tasks().len(), 6, "nothing created twice");
    run(
        &p,
        &["plan", "--env", "prod", "--detailed-exitcode", "repo"],
        &[],
    )
    .succeeds();
    // TASKFORM_ENV is named as what it is.
    run(&p, &["plan", "repo"], &[("TASKFORM_ENV", "qa")])
        .fails_with(1)
        .stderr_has("TASKFORM_ENV=qa: no such environment");
}

/// In `plan --all-envs`, a warning names its environment (issue #29.5).
#[test]
fn all_envs_warnings_name_their_environment() {
    let (p, _emus) = example();
    for env in ENVS {
        run(&p, &["apply", "--yes", "--env", env, "repo"], &[]).succeeds();
    }
    std::fs::remove_file(p.path("repo/tasks/dli/sales.yaml")).unwrap();
    let out = run(&p, &["plan", "--all-envs", "repo"], &[]);
    out.succeeds();
    for env in ENVS {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(&format!("environment{{name={env}}}")) && l.contains("orphan")),
            "{env}: {}",
            out.stderr
        );
    }
}

/// An overlay's patch with a selector changes every shared task it selects, in file
/// order before the patches by name; a bad value points at the selector patch; a
/// selector that selects nothing is a warning naming it (issue #29.4).
#[test]
fn selector_patches_change_every_task_they_select() {
    let (p, _emus) = example();
    p.write(
        "repo/overlays/dev/all.yaml",
        "patch: \"*\"\nschedule_config:\n  enabled: 0\n---\npatch: {names: \"dli-sales-*\"}\ndescription: sales, in dev\n---\npatch: {labels: {team: nobody}}\ndescription: never\n",
    );
    let plan = run(
        &p,
        &["plan", "--env", "dev", "--format", "json", "repo"],
        &[],
    );
    plan.succeeds();
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let saved = run(
        &p,
        &["plan", "--env", "dev", "repo", "--out", "dev.json"],
        &[],
    );
    saved
        .succeeds()
        .stderr_has("the patch of `labels: team=nobody` selects no shared task");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("dev.json")).unwrap()).unwrap();
    let body = |name: &str| -> Value {
        let t = file["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone();
        t["body"].clone()
    };
    assert_eq!(doc["summary"]["create"], 4, "{doc}");
    for name in [
        "dli-orders-nightly",
        "dli-sales-daily",
        "dws-warehouse-marts",
    ] {
        assert_eq!(body(name)["schedule_config"]["enabled"], 0, "{name}");
    }
    assert_eq!(body("dli-sales-daily")["description"], "sales, in dev");
    assert_ne!(body("dws-warehouse-marts")["description"], "sales, in dev");
    // The per-name patch applies after the selector: its cron stays.
    assert_eq!(
        body("dli-orders-nightly")["schedule_config"]["cron_expression"],
        "0 0 12 * * ?"
    );
    // A bad value set by a selector patch is reported at its line.
    p.write(
        "repo/overlays/dev/all.yaml",
        "patch: \"*\"\nschedule_config:\n  max_time_out: ten\n",
    );
    run(&p, &["validate", "repo"], &[])
        .fails_with(1)
        .stderr_has("overlays/dev/all.yaml:3:17:");
    // A selector that is not one.
    p.write(
        "repo/overlays/dev/all.yaml",
        "patch: {team: crm}\ndescription: x\n",
    );
    run(&p, &["validate", "repo"], &[])
        .fails_with(1)
        .stderr_has("a patch selector takes `names` and `labels`, not `team`");
}
