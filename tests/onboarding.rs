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
