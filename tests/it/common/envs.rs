//! The example repo of environments (`examples/environments`), each environment
//! pointed at an emulator of its own.

use super::*;
use std::path::Path;

pub const ENVS: [&str; 3] = ["dev", "staging", "prod"];

/// The example repo in a temp folder, each environment pointed at its own emulator
/// (project, workspace and token of its own); the emulators, in ENVS order.
pub fn example() -> (Project, Vec<Emu>) {
    let p = Project::new();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments"),
        &p.path("repo"),
    );
    let mut settings = std::fs::read_to_string(p.path("repo/taskform.yaml")).unwrap();
    let mut emus = Vec::new();
    for (i, env) in ENVS.iter().enumerate() {
        let project = format!("{i}a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d");
        let workspace = format!("{env}-workspace");
        let emu = Emu::start(&[
            "--rate-limit",
            "0",
            "--token",
            &format!("{env}-token"),
            "--project-id",
            &project,
            "--workspace",
            &workspace,
        ]);
        settings = settings.replacen(
            &format!("  {env}:\n    project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\n"),
            &format!(
                "  {env}:\n    endpoint: {}\n    project_id: {project}\n",
                emu.url
            ),
            1,
        );
        emus.push(emu);
    }
    assert_eq!(settings.matches("endpoint: http").count(), 3, "{settings}");
    p.write("repo/taskform.yaml", &settings);
    (p, emus)
}

/// The three environments' tokens, under the names taskform.yaml gives them.
pub fn tokens() -> Vec<(String, String)> {
    ENVS.iter()
        .map(|e| {
            (
                format!("{}_TASKFORM_AUTH_TOKEN", e.to_uppercase()),
                format!("{e}-token"),
            )
        })
        .collect()
}
