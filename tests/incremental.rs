//! The watcher's incremental reload gives exactly what a full reload gives: after a
//! change, an added file, a deleted file, a renamed file, a file replaced by a symlink,
//! a whole folder removed, and a settings change.

use std::path::Path;
use taskform::load::manifest::{LoadCache, Loaded, load_cached, load_for};

fn env(_: &str) -> Option<String> {
    None
}

fn manifest(name: &str, timeout: i64) -> String {
    format!(
        "name: {name}\nuser_id: u-1\ndir_id: \"0\"\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n"
    )
}

/// What a plan depends on: every manifest's name, file and hash, or the problems.
fn seen(r: Result<Loaded, taskform::load::LoadError>) -> String {
    match r {
        Ok(l) => l
            .manifests
            .iter()
            .map(|m| format!("{} {} {}\n", m.name, m.file, m.hash))
            .collect(),
        Err(taskform::load::LoadError::Invalid(d)) => format!("{d:?}"),
        Err(taskform::load::LoadError::Dir(d)) => d,
    }
}

fn same(dir: &Path, cache: &LoadCache, step: &str) {
    let full = seen(load_for(dir, None, &env));
    let incremental = seen(load_cached(dir, None, &env, cache));
    assert_eq!(incremental, full, "after {step}");
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn every_kind_of_change_gives_what_a_full_reload_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for i in 0..50 {
        write(
            dir,
            &format!("g{}/t{i:03}.yaml", i % 5),
            &manifest(&format!("t{i:03}"), 10),
        );
    }
    let cache = LoadCache::default();
    same(dir, &cache, "the first load");
    same(dir, &cache, "no change");
    // Within the settle time every file is compared by content, not parsed again.
    assert_eq!(
        cache.last_load().1,
        0,
        "nothing parsed when nothing changed"
    );

    write(dir, "g0/t000.yaml", &manifest("t000", 11));
    same(dir, &cache, "a change");
    assert_eq!(cache.last_load().1, 1, "only the changed file is parsed");

    // The same size and a rewrite within the same second: caught by content.
    write(dir, "g0/t000.yaml", &manifest("t000", 12));
    same(dir, &cache, "a same-size rewrite");

    write(dir, "g9/new.yaml", &manifest("new", 1));
    same(dir, &cache, "an added file");

    std::fs::remove_file(dir.join("g1/t001.yaml")).unwrap();
    same(dir, &cache, "a deleted file");

    std::fs::rename(dir.join("g2/t002.yaml"), dir.join("g2/renamed.yaml")).unwrap();
    same(dir, &cache, "a renamed file");

    #[cfg(unix)]
    {
        write(dir, "elsewhere/target.yaml", &manifest("linked", 7));
        std::fs::remove_file(dir.join("g3/t003.yaml")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere/target.yaml"), dir.join("g3/t003.yaml"))
            .unwrap();
        std::fs::remove_dir_all(dir.join("elsewhere")).ok();
        write(dir, "elsewhere/target.yaml", &manifest("linked", 8));
        same(dir, &cache, "a file replaced by a symlink");
    }

    std::fs::remove_dir_all(dir.join("g4")).unwrap();
    same(dir, &cache, "a folder removed");

    write(
        dir,
        "g0/broken.yaml",
        "name: broken\nschedule_config: {schedule_type: cron}\n",
    );
    same(dir, &cache, "an invalid file");
    std::fs::remove_file(dir.join("g0/broken.yaml")).unwrap();
    same(dir, &cache, "the invalid file removed");

    write(
        dir,
        "taskform.yaml",
        "defaults:\n  description: from the settings\n",
    );
    same(dir, &cache, "a settings change");
    assert!(
        cache.last_load().1 > 40,
        "a settings change parses everything again"
    );

    // Past the settle time, files are taken by their identity alone; a change of
    // identity (a rewrite) is still seen.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    same(dir, &cache, "settled files");
    assert_eq!(cache.last_load().1, 0);
    write(dir, "g0/t000.yaml", &manifest("t000", 13));
    same(dir, &cache, "a change after settling");
    assert_eq!(cache.last_load().1, 1);
}
