//! The watcher's incremental reload gives exactly what a full reload gives: after a
//! change, an added file, a deleted file, a renamed file, a file replaced by a symlink,
//! a whole folder removed, and a settings change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use taskform::load::cache::{LoadCache, load_cached};
use taskform::load::manifest::{Loaded, load_for};

fn env(_: &str) -> Option<String> {
    None
}

fn manifest(name: &str, timeout: i64) -> String {
    format!(
        "name: {name}\nuser_id: u-1\ndir_id: \"0\"\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n"
    )
}

/// What a plan depends on: every manifest's name, file and hash, or the problems.
fn seen(r: Result<&Loaded, &taskform::load::LoadError>) -> String {
    match r {
        Ok(l) => {
            let mut s: String = l
                .manifests
                .iter()
                .map(|m| format!("{} {} {}\n", m.name, m.file, m.hash))
                .collect();
            s.push_str(&format!("{:?} {:?}", l.file_digests, l.separate_targets));
            s
        }
        Err(taskform::load::LoadError::Invalid(d)) => format!("{d:?}"),
        Err(taskform::load::LoadError::Dir(d)) => d.clone(),
    }
}

/// Two caches: one checks every file at each load, the other is told the changed
/// paths, as the watcher's file events name them.
struct Caches {
    full: LoadCache,
    events: LoadCache,
    root: PathBuf,
}

impl Caches {
    fn new(dir: &Path) -> Caches {
        Caches {
            full: LoadCache::default(),
            events: LoadCache::default(),
            root: std::fs::canonicalize(dir).unwrap(),
        }
    }

    /// Both caches give what a full reload gives, after `step` changed `paths`.
    fn same(&self, dir: &Path, step: &str, paths: &[&str]) {
        let full = seen(load_for(dir, None, &env).as_ref());
        let checked = seen(load_cached(dir, None, &env, &self.full, None).as_deref());
        assert_eq!(checked, full, "after {step} (full check)");
        // An empty path is what the watcher sends when events were lost.
        let named: BTreeSet<PathBuf> = paths
            .iter()
            .map(|p| match p.is_empty() {
                true => PathBuf::new(),
                false => self.root.join(p),
            })
            .collect();
        let told = seen(load_cached(dir, None, &env, &self.events, Some(&named)).as_deref());
        assert_eq!(told, full, "after {step} (by events)");
    }
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
    let c = Caches::new(dir);
    c.same(dir, "the first load", &[]);
    assert!(
        c.events.last_load().walked,
        "the first load walks the folder"
    );
    c.same(dir, "no change", &[]);
    // Within the settle time every file is compared by content, not parsed again.
    assert_eq!(
        c.full.last_load().parsed,
        0,
        "nothing parsed when nothing changed"
    );
    let quiet = c.events.last_load();
    assert!(!quiet.walked && quiet.parsed == 0, "{quiet:?}");

    write(dir, "g0/t000.yaml", &manifest("t000", 11));
    c.same(dir, "a change", &["g0/t000.yaml"]);
    assert_eq!(
        c.full.last_load().parsed,
        1,
        "only the changed file is parsed"
    );
    let one = c.events.last_load();
    assert!(!one.walked && one.parsed == 1, "{one:?}");

    // The same size and a rewrite within the same second: caught by content.
    write(dir, "g0/t000.yaml", &manifest("t000", 12));
    c.same(dir, "a same-size rewrite", &["g0/t000.yaml"]);

    write(dir, "g0/new.yaml", &manifest("new", 1));
    c.same(dir, "an added file", &["g0/new.yaml"]);
    assert!(!c.events.last_load().walked);

    // An editor's save: a temporary file renamed over the manifest.
    write(dir, "g0/.new.yaml.swp", "junk");
    write(dir, "g0/new.yaml.tmp", &manifest("new", 2));
    std::fs::rename(dir.join("g0/new.yaml.tmp"), dir.join("g0/new.yaml")).unwrap();
    c.same(
        dir,
        "an atomic save",
        &["g0/.new.yaml.swp", "g0/new.yaml.tmp", "g0/new.yaml"],
    );
    assert!(!c.events.last_load().walked);

    write(dir, "g9/new.yaml", &manifest("new9", 1));
    c.same(dir, "an added file in a new folder", &["g9", "g9/new.yaml"]);
    assert!(c.events.last_load().walked, "a new folder is walked");

    std::fs::remove_file(dir.join("g1/t001.yaml")).unwrap();
    c.same(dir, "a deleted file", &["g1/t001.yaml"]);

    std::fs::rename(dir.join("g2/t002.yaml"), dir.join("g2/renamed.yaml")).unwrap();
    c.same(dir, "a renamed file", &["g2/t002.yaml", "g2/renamed.yaml"]);

    // A manifest turned into a duplicate of another, then back.
    write(dir, "g2/renamed.yaml", &manifest("t007", 3));
    c.same(dir, "a duplicate name", &["g2/renamed.yaml"]);
    write(dir, "g2/renamed.yaml", &manifest("t002", 3));
    c.same(dir, "the duplicate renamed", &["g2/renamed.yaml"]);

    #[cfg(unix)]
    {
        write(dir, "elsewhere/target.yaml", &manifest("linked", 7));
        std::fs::remove_file(dir.join("g3/t003.yaml")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere/target.yaml"), dir.join("g3/t003.yaml"))
            .unwrap();
        c.same(
            dir,
            "a file replaced by a symlink",
            &["elsewhere", "elsewhere/target.yaml", "g3/t003.yaml"],
        );
        // The link's target changes: the events name the target only.
        write(dir, "elsewhere/target.yaml", &manifest("linked", 8));
        c.same(
            dir,
            "a symlink's target changed",
            &["elsewhere/target.yaml"],
        );
        std::fs::remove_file(dir.join("g3/t003.yaml")).unwrap();
        std::fs::remove_dir_all(dir.join("elsewhere")).unwrap();
        c.same(
            dir,
            "the symlink and its target removed",
            &["g3/t003.yaml", "elsewhere", "elsewhere/target.yaml"],
        );
    }

    #[cfg(unix)]
    {
        // A link pointing outside is refused; removing it is seen (the walk that
        // reported it is done again).
        std::os::unix::fs::symlink("/etc/hostname", dir.join("g0/out.yaml")).unwrap();
        c.same(dir, "a link pointing outside", &["g0/out.yaml"]);
        std::fs::remove_file(dir.join("g0/out.yaml")).unwrap();
        c.same(dir, "the outside link removed", &["g0/out.yaml"]);
    }

    std::fs::remove_dir_all(dir.join("g4")).unwrap();
    c.same(dir, "a folder removed", &["g4"]);
    std::fs::rename(dir.join("g3"), dir.join("g3b")).unwrap();
    c.same(dir, "a folder renamed", &["g3", "g3b"]);

    // A subfolder becomes a separate target, then stops being one.
    write(dir, "g9/taskform.yaml", "defaults:\n  description: apart\n");
    c.same(dir, "a separate target", &["g9/taskform.yaml"]);
    write(dir, "g9/more.yaml", &manifest("more", 1));
    c.same(dir, "a file inside the separate target", &["g9/more.yaml"]);
    std::fs::remove_file(dir.join("g9/taskform.yaml")).unwrap();
    c.same(dir, "no longer a separate target", &["g9/taskform.yaml"]);

    write(
        dir,
        "g0/broken.yaml",
        "name: broken\nschedule_config: {schedule_type: cron}\n",
    );
    c.same(dir, "an invalid file", &["g0/broken.yaml"]);
    std::fs::remove_file(dir.join("g0/broken.yaml")).unwrap();
    c.same(dir, "the invalid file removed", &["g0/broken.yaml"]);

    // A rescan (the kernel's queue overflowed) is an empty path.
    write(dir, "g0/t005.yaml", &manifest("t005", 99));
    c.same(dir, "lost events", &[""]);
    assert!(c.events.last_load().walked);

    write(
        dir,
        "taskform.yaml",
        "defaults:\n  description: from the settings\n",
    );
    c.same(dir, "a settings change", &["taskform.yaml"]);
    assert!(
        c.full.last_load().parsed > 40,
        "a settings change parses everything again"
    );

    // Past the settle time, files are taken by their identity alone; a change of
    // identity (a rewrite) is still seen.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    c.same(dir, "settled files", &[]);
    assert_eq!(c.full.last_load().parsed, 0);
    write(dir, "g0/t000.yaml", &manifest("t000", 13));
    c.same(dir, "a change after settling", &["g0/t000.yaml"]);
    assert_eq!(c.full.last_load().parsed, 1);
    assert_eq!(c.events.last_load().parsed, 1);
}

/// Many files changed at once (a branch switch) are assembled afresh, not patched
/// one by one; the result is the same.
#[test]
fn a_burst_of_changes_gives_what_a_full_reload_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for i in 0..600 {
        write(
            dir,
            &format!("t{i:03}.yaml"),
            &manifest(&format!("t{i:03}"), 10),
        );
    }
    let c = Caches::new(dir);
    c.same(dir, "the first load", &[]);
    let mut paths = Vec::new();
    for i in (0..600).step_by(2) {
        let rel = format!("t{i:03}.yaml");
        write(dir, &rel, &manifest(&format!("u{i:03}"), 11));
        paths.push(rel);
    }
    let named: Vec<&str> = paths.iter().map(String::as_str).collect();
    c.same(dir, "300 files changed", &named);
    assert_eq!(c.events.last_load().parsed, 300);
}

/// A result kept by the caller is not changed by the next load.
#[test]
fn a_kept_result_stays_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &manifest("a", 1));
    let cache = LoadCache::default();
    let first = load_cached(dir, None, &env, &cache, None).unwrap();
    write(dir, "b.yaml", &manifest("b", 1));
    let root = std::fs::canonicalize(dir).unwrap();
    let named = BTreeSet::from([root.join("b.yaml")]);
    let second = load_cached(dir, None, &env, &cache, Some(&named)).unwrap();
    assert_eq!(first.manifests.len(), 1);
    assert_eq!(second.manifests.len(), 2);
}

/// A folder whose only manifest is removed while a subfolder is a separate target is
/// an error; the next manifest written is all there is.
#[test]
fn a_folder_left_with_only_separate_targets_and_then_a_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &manifest("a", 1));
    write(
        dir,
        "sub/taskform.yaml",
        "defaults:\n  description: apart\n",
    );
    write(dir, "sub/s.yaml", &manifest("s", 1));
    let c = Caches::new(dir);
    c.same(dir, "the first load", &[]);
    std::fs::remove_file(dir.join("a.yaml")).unwrap();
    c.same(dir, "only a separate target left", &["a.yaml"]);
    write(dir, "b.yaml", &manifest("b", 1));
    c.same(dir, "a new file", &["b.yaml"]);
}
