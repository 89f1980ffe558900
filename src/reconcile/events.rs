//! The pieces of `taskform watch` that do not need a running loop: which file events
//! matter, the file watcher itself, and the memory of failing creates that keeps a
//! watcher from hammering the service with the same failing content.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Whether an event on `path` can change the plan: a `*.yaml`/`*.yml` file or a
/// folder (no extension), not hidden below `root`, and not inside `ignore` (the state
/// folder when it lies inside the manifest folder).
pub fn relevant(path: &Path, root: &Path, ignore: Option<&Path>) -> bool {
    if ignore.is_some_and(|i| path.starts_with(i)) {
        return false;
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(ext) => ext == "yaml" || ext == "yml",
    }
}

/// Starts watching `dir` recursively (new subfolders included); every event's paths
/// go to `tx`.
pub fn start(dir: &Path, tx: UnboundedSender<PathBuf>) -> Result<RecommendedWatcher, String> {
    let errors = tx.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                for p in paths_of(event) {
                    let _ = tx.send(p);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "file watcher error; reconciling to be safe");
                let _ = errors.send(PathBuf::new());
            }
        })
        .map_err(watch_error)?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

/// The paths an event names, when it may change what is loaded; an empty path when
/// everything must be looked at again (the kernel's queue overflowed).
fn paths_of(event: notify::Event) -> Vec<PathBuf> {
    if event.need_rescan() {
        tracing::warn!(
            "file events were lost (the kernel's queue overflowed): checking every file"
        );
        return vec![PathBuf::new()];
    }
    if !changes_content(&event.kind) {
        return Vec::new();
    }
    event.paths
}

/// Creations, removals, renames and writes; not reads (taskform's own reads of the
/// manifests would wake it up again) nor metadata changes.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) => false,
    }
}

fn watch_error(e: notify::Error) -> String {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "cannot watch the manifest folder: the system's limit of inotify watches is reached ({e}). Raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` (and fs.inotify.max_user_instances), or use `taskform apply` on a schedule instead"
        ),
        notify::ErrorKind::PathNotFound => {
            format!("cannot watch the manifest folder: it does not exist ({e})")
        }
        _ => format!("cannot watch the manifest folder: {e}"),
    }
}

/// Failing creates by task: the same content is retried only after a backoff
/// (`base`, doubling, capped at an hour); changed content is tried at once.
#[derive(Debug)]
pub struct FailureMemory {
    base: Duration,
    entries: HashMap<String, Failing>,
}

#[derive(Debug, Clone)]
struct Failing {
    hash: String,
    failures: u32,
    next: Instant,
}

impl FailureMemory {
    pub fn new(base: Duration) -> Self {
        FailureMemory {
            base,
            entries: HashMap::new(),
        }
    }

    /// Records a failed create of `name` with content `hash`.
    pub fn failed(&mut self, name: &str, hash: &str, now: Instant) {
        let e = self.entries.entry(name.to_string()).or_insert(Failing {
            hash: hash.to_string(),
            failures: 0,
            next: now,
        });
        if e.hash != hash {
            *e = Failing {
                hash: hash.to_string(),
                failures: 0,
                next: now,
            };
        }
        e.failures += 1;
        let wait = self
            .base
            .saturating_mul(1 << (e.failures - 1).min(10))
            .min(Duration::from_secs(3600));
        e.next = now + wait;
    }

    /// Forgets a task (it was created, or is no longer declared).
    pub fn forget(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Whether sending `name` with `hash` now would repeat a recent failure.
    pub fn blocked(&self, name: &str, hash: &str, now: Instant) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| e.hash == hash && e.next > now)
    }

    /// When the next blocked task may be retried.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_events_ask_for_a_rescan_and_reads_are_ignored() {
        use notify::event::{AccessKind, CreateKind, Flag};
        use notify::{Event, EventKind};
        // The kernel's queue overflowed: no path, a rescan flag.
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(paths_of(overflow), vec![PathBuf::new()]);
        let created = Event::new(EventKind::Create(CreateKind::File)).add_path("/r/a.yaml".into());
        assert_eq!(paths_of(created), vec![PathBuf::from("/r/a.yaml")]);
        let read = Event::new(EventKind::Access(AccessKind::Read)).add_path("/r/a.yaml".into());
        assert!(paths_of(read).is_empty());
    }

    #[test]
    fn only_manifests_and_folders_outside_hidden_and_state_folders_matter() {
        let root = Path::new("/repo");
        assert!(relevant(Path::new("/repo/a/b.yaml"), root, None));
        assert!(relevant(Path::new("/repo/a/b.yml"), root, None));
        assert!(relevant(Path::new("/repo/newdir"), root, None));
        assert!(!relevant(Path::new("/repo/.git/index"), root, None));
        assert!(!relevant(Path::new("/repo/a/.b.yaml.swp"), root, None));
        assert!(!relevant(Path::new("/repo/a/b.yaml~"), root, None));
        assert!(!relevant(Path::new("/repo/notes.txt"), root, None));
        assert!(!relevant(
            Path::new("/repo/state/x"),
            root,
            Some(Path::new("/repo/state"))
        ));
    }

    #[test]
    fn failing_content_backs_off_and_new_content_is_tried_at_once() {
        let mut m = FailureMemory::new(Duration::from_secs(60));
        let t0 = Instant::now();
        m.failed("a", "h1", t0);
        assert!(m.blocked("a", "h1", t0 + Duration::from_secs(59)));
        assert!(!m.blocked("a", "h1", t0 + Duration::from_secs(61)));
        assert!(!m.blocked("a", "h2", t0), "changed content is not blocked");
        m.failed("a", "h1", t0);
        assert!(
            m.blocked("a", "h1", t0 + Duration::from_secs(119)),
            "the wait doubles"
        );
        assert_eq!(m.next_retry(), Some(t0 + Duration::from_secs(120)));
        m.forget("a");
        assert!(m.next_retry().is_none());
    }
}
