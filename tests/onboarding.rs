//! Onboarding without silent mistakes (issue #28): the inputs a new team gets wrong
//! are refused with what to write instead, never taken for something else.

mod common;
use common::*;

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

/// Copies `examples/environments` into `to`.
fn copy_example(to: &std::path::Path) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let (f, t) = (e.path(), to.join(e.file_name()));
            match f.is_dir() {
                true => copy(&f, &t),
                false => {
                    std::fs::copy(&f, &t).unwrap();
                }
            }
        }
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments");
    copy(&example, to);
}

/// A folder below `overlays/` that matches no environment (`prdo`, a typo of prod)
/// silently dropped prod's own tasks from every plan: it is an error naming the folder,
/// with did-you-mean, for validate and plan alike.
#[test]
fn an_overlay_folder_that_matches_no_environment_is_an_error() {
    let p = Project::new();
    copy_example(&p.path("repo"));
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
