//! The watcher's incremental reload: parsed files kept between loads of one folder,
//! so that a change to one file of a large repo re-reads and re-parses that file only,
//! and the manifests assembled by the last load are patched rather than built again.
//!
//! Two ways to find what changed:
//! - **By the watcher's file events** ([`load_cached`] with `Some(paths)`): only the
//!   paths named are looked at (no walk of the folder, no `stat` of the other files).
//!   The events must be complete since the last load (the watcher watched the whole
//!   time and the kernel's queue did not overflow: an overflow, a watcher error or an
//!   empty path means "rescan"). A path that may change which files exist beyond
//!   itself (a folder created, removed or renamed, a settings file, a symbolic link, a
//!   path outside the folder) makes it a full check instead, and so does a folder
//!   whose manifests include symbolic links (their targets' events name other paths).
//! - **A full check** (`None`: the first load, `--interval`, retries): the folder is
//!   walked and every file's identity (size, modification time, inode, device)
//!   compared with the cached one.
//!
//! What file events cannot tell, and so what the next full check catches (the next
//! `--interval` or restart): a write through a hard link from outside the folder, a
//! change on a network file system, a permission change (`chmod`), the target of a
//! symbolic link that names a subfolder's `taskform.yaml`. The watcher walks instead
//! while its last walk reported problems (a folder it could not read, a link pointing
//! outside), so that their fixes are seen.
//!
//! A file is taken from the cache when its identity is unchanged and it was last
//! modified more than [`SETTLED`] ago (a path the events name is always compared by
//! content); a file modified more recently than that (a
//! rewrite within the file system's timestamp granularity would keep its identity) is
//! read again and compared by content, and parsed only if the content changed. Files
//! that could not be read or held problems are looked at again on every load.
//! Everything is dropped when the settings (the file's content, the environment) or
//! the folder change. Not used with an environment's overlay (its patches change
//! shared files' results): such a load is a full, uncached one.
//!
//! The result is exactly what [`super::manifest::load_for`] gives for the same files
//! (`tests/it/incremental.rs` holds it to that).

use super::diagnostic::{self, Diagnostic};
use super::manifest::{self, Discovered, FileResult, LoadError, Loaded, MAX_FILE_BYTES};
use super::settings::{self, Settings};
use crate::hash;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parsed files kept between loads of one folder (the watcher's).
#[derive(Default)]
pub struct LoadCache {
    inner: std::sync::Mutex<Inner>,
}

/// Invariant: `base` holds the manifests and digests of exactly `files` (before
/// secret values are hidden), and `listing` is what the walk that found `files` saw,
/// updated by every load since. A load that does not keep it (an error before the
/// files are read, a load through an overlay) drops `listing`, so the next one walks.
#[derive(Default)]
struct Inner {
    /// The settings' digest and environment the entries were made under.
    context: String,
    /// The folder the entries were read from, as given.
    dir: PathBuf,
    /// Every manifest file of the last load, by path relative to DIR.
    files: BTreeMap<String, Cached>,
    /// What the last walk of the folder found besides the files (`None`: no walk yet).
    listing: Option<Listing>,
    /// The manifests of the last load, before secret values were hidden.
    base: Option<Arc<Loaded>>,
    last: LastLoad,
}

/// What the last walk of the folder found besides the files.
struct Listing {
    /// DIR's canonical path (what the file events name).
    root: PathBuf,
    /// Folders whose entries were read, relative to DIR.
    folders: BTreeSet<String>,
    /// Folders skipped as separate targets: as the user names them, and relative.
    separate_targets: Vec<String>,
    separate_rel: BTreeSet<String>,
    /// A manifest file is a symbolic link.
    links: bool,
    /// Problems of the walk itself (a folder that cannot be read, a link outside).
    diags: Vec<Diagnostic>,
}

#[derive(Clone)]
struct Cached {
    key: Option<FileKey>,
    result: Arc<FileResult>,
}

/// What the last load did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastLoad {
    /// Files taken from the cache without parsing.
    pub cached: usize,
    /// Files parsed.
    pub parsed: usize,
    /// Whether the folder was walked (a full check), rather than only the paths the
    /// file events named.
    pub walked: bool,
}

/// How long after its last modification a file's identity is trusted.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// More changed files than this and the manifests are assembled afresh rather than
/// patched.
const PATCH_LIMIT: usize = 256;

#[derive(Clone, PartialEq, Eq)]
struct FileKey {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
    device: u64,
}

impl FileKey {
    fn of(m: &std::fs::Metadata) -> FileKey {
        #[cfg(unix)]
        let (inode, device) = {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.dev())
        };
        #[cfg(not(unix))]
        let (inode, device) = (0, 0);
        FileKey {
            len: m.len(),
            modified: m.modified().ok(),
            inode,
            device,
        }
    }

    fn settled(&self) -> bool {
        self.modified
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > SETTLED)
    }
}

impl LoadCache {
    /// What the last load did.
    pub fn last_load(&self) -> LastLoad {
        self.lock().last
    }

    /// The cache; one left half-updated by a panic is started afresh.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = Inner::default();
            g
        })
    }
}

/// [`super::manifest::load_for`] with a cache kept between loads (the watcher's).
/// `changed`: the paths the file events named since the last load with this cache
/// (complete, see the module doc), or `None` for a full check.
///
/// The manifests are shared with the cache: drop the result before the next load and
/// the next load patches them in place rather than copying them.
pub fn load_cached(
    dir: &Path,
    environment: Option<&str>,
    outer_env: &(dyn Fn(&str) -> Option<String> + Sync),
    cache: &LoadCache,
    changed: Option<&BTreeSet<PathBuf>>,
) -> Result<Arc<Loaded>, LoadError> {
    let mut guard = cache.lock();
    // Whatever returns before the files are read leaves events unused: walk next time.
    let kept = guard.listing.take();
    manifest::check_folder(dir)?;
    let settings = manifest::settings_for(dir, environment, outer_env)?;
    if settings.overlay.is_some() {
        guard.last = LastLoad {
            walked: true,
            ..LastLoad::default()
        };
        drop(guard);
        let mut warnings = Vec::new();
        return manifest::load_inner(dir, environment, outer_env, &mut warnings).map(Arc::new);
    }
    let scoped = settings.scope.clone();
    let scoped = scoped.over(outer_env);
    let env: &(dyn Fn(&str) -> Option<String> + Sync) = &scoped;
    let inner = &mut *guard;
    let context = format!(
        "{}|{}",
        settings.digest.as_deref().unwrap_or(""),
        settings.environment.as_deref().unwrap_or("")
    );
    if inner.context != context || inner.dir != dir {
        *inner = Inner {
            context,
            dir: dir.to_path_buf(),
            ..Inner::default()
        };
    } else {
        inner.listing = kept;
    }

    let events = changed.and_then(|paths| {
        // A walk that found links or problems is done again (see the module doc).
        let listing = inner
            .listing
            .as_ref()
            .filter(|l| !l.links && l.diags.is_empty())?;
        by_events(paths, listing, &inner.files, &settings)
    });
    let mut stats = LastLoad::default();
    let touched: BTreeSet<String> = match events {
        Some(paths) => {
            // The paths named, and every file that could not be read or held problems.
            let again = inner
                .files
                .iter()
                .filter(|(_, c)| c.key.is_none() || !c.result.diags.is_empty())
                .map(|(rel, _)| rel.clone());
            let paths: BTreeSet<String> = paths.into_iter().chain(again).collect();
            let mut touched = BTreeSet::new();
            for rel in paths {
                let path = dir.join(&rel);
                let previous = inner.files.get(&rel);
                let exists = std::fs::symlink_metadata(&path).is_ok();
                let now = exists.then(|| cached_file(&rel, &path, &settings, env, previous, true));
                match (previous, now) {
                    (Some(p), Some((c, hit))) => {
                        count(&mut stats, hit);
                        if !Arc::ptr_eq(&p.result, &c.result) {
                            touched.insert(rel.clone());
                        }
                        inner.files.insert(rel, c);
                    }
                    (None, Some((c, hit))) => {
                        count(&mut stats, hit);
                        touched.insert(rel.clone());
                        inner.files.insert(rel, c);
                    }
                    (Some(_), None) => {
                        inner.files.remove(&rel);
                        touched.insert(rel);
                    }
                    (None, None) => {}
                }
            }
            // Every file not parsed was taken from the cache, named or not.
            stats.cached = inner.files.len() - stats.parsed;
            touched
        }
        None => {
            stats.walked = true;
            let mut diags = Vec::new();
            let Discovered {
                mut files,
                separate_targets,
                separate_rel,
                folders,
                links,
            } = manifest::discover(dir, &mut diags);
            files.retain(|(rel, _)| !settings.in_overlay(rel));
            let found: Vec<(String, Cached, bool)> = files
                .par_iter()
                .map(|(rel, path)| {
                    let (c, hit) =
                        cached_file(rel, path, &settings, env, inner.files.get(rel), false);
                    (rel.clone(), c, hit)
                })
                .collect();
            let mut touched = BTreeSet::new();
            let mut now = BTreeMap::new();
            for (rel, c, hit) in found {
                count(&mut stats, hit);
                if inner
                    .files
                    .get(&rel)
                    .is_none_or(|p| !Arc::ptr_eq(&p.result, &c.result))
                {
                    touched.insert(rel.clone());
                }
                now.insert(rel, c);
            }
            for rel in inner.files.keys() {
                if !now.contains_key(rel) {
                    touched.insert(rel.clone());
                }
            }
            inner.files = now;
            inner.listing = Some(Listing {
                root: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
                folders: folders.into_iter().collect(),
                separate_targets,
                separate_rel: separate_rel.into_iter().collect(),
                links,
                diags,
            });
            touched
        }
    };
    inner.last = stats;
    let listing = inner
        .listing
        .as_ref()
        .expect("a walk precedes every load by events");

    let mut diags = listing.diags.clone();
    if !listing.separate_targets.is_empty() {
        if inner.files.is_empty() && diags.is_empty() {
            // Nothing to assemble: the next load assembles afresh.
            inner.base = None;
            return Err(LoadError::Dir(manifest::only_separate_targets(
                dir,
                &listing.separate_targets,
            )));
        }
        tracing::info!("{}", manifest::skipped_targets(&listing.separate_targets));
    }
    let mut warnings = manifest::defaults_warnings(&settings);
    for c in inner.files.values() {
        diags.extend(c.result.diags.iter().cloned());
        warnings.extend(c.result.warnings.iter().cloned());
    }
    diagnostic::sort(&mut warnings);

    let base = assemble(inner.base.take(), &inner.files, &touched);
    let base = inner.base.insert(base);
    {
        let b = Arc::make_mut(base);
        b.settings = settings;
        b.warnings = warnings;
        b.separate_targets = listing.separate_targets.clone();
    }
    let values = manifest::secret_values(&base.manifests, &base.settings, env);
    let out = if values.is_empty() {
        Arc::clone(base)
    } else {
        let mut hidden = Loaded::clone(base);
        manifest::hide_secret_values(&mut hidden.manifests, &values, &base.settings, &mut diags);
        Arc::new(hidden)
    };
    drop(guard);
    manifest::duplicate_names(dir, &out.manifests, &mut diags);
    manifest::log_warnings(&out.warnings, &out.settings, &out.manifests);
    if diags.is_empty() {
        Ok(out)
    } else {
        diagnostic::sort(&mut diags);
        Err(LoadError::Invalid(diags))
    }
}

fn count(stats: &mut LastLoad, hit: bool) {
    match hit {
        true => stats.cached += 1,
        false => stats.parsed += 1,
    }
}

/// The files (relative to DIR) to look at for the events' `paths`, or `None` when a
/// path needs a full check.
fn by_events(
    paths: &BTreeSet<PathBuf>,
    listing: &Listing,
    files: &BTreeMap<String, Cached>,
    settings: &Settings,
) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for p in paths {
        let rel = p.strip_prefix(&listing.root).ok()?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(n) => parts.push(n.to_str()?),
                _ => return None,
            }
        }
        let (name, parent) = parts.split_last()?;
        // Hidden entries are never walked into.
        if parts.iter().any(|c| c.starts_with('.')) {
            continue;
        }
        if *name == settings::FILE_NAME || *name == settings::WRONG_FILE_NAME {
            return None;
        }
        let rel = parts.join("/");
        // Inside a separate target: never read.
        if (1..parts.len()).any(|i| listing.separate_rel.contains(&parts[..i].join("/"))) {
            continue;
        }
        if settings.in_overlay(&rel) {
            continue;
        }
        if files.contains_key(&rel) {
            // Changed, removed or replaced: a regular file (or gone) is looked at; a
            // folder or a link in its place needs a walk.
            match std::fs::symlink_metadata(p) {
                Ok(m) if !m.is_file() => return None,
                _ => {
                    out.insert(rel);
                }
            }
            continue;
        }
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_file() => {
                let manifest_name = name.ends_with(".yaml") || name.ends_with(".yml");
                if !manifest_name {
                    continue;
                }
                if !listing.folders.contains(&parent.join("/")) {
                    return None;
                }
                out.insert(rel);
            }
            // A folder, a link, a device: what it holds or points to is unknown.
            Ok(_) => return None,
            Err(_) => {
                // Gone: a folder that was walked, held files or was a separate target.
                let prefix = format!("{rel}/");
                let held = files
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix));
                if held || listing.folders.contains(&rel) || listing.separate_rel.contains(&rel) {
                    return None;
                }
            }
        }
    }
    Some(out)
}

/// A file through the cache: its identity (not for a path an event `named`), else its
/// content, else parsed. True when it was not parsed.
fn cached_file(
    rel: &str,
    path: &Path,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    previous: Option<&Cached>,
    named: bool,
) -> (Cached, bool) {
    let key = std::fs::metadata(path).ok().map(|m| FileKey::of(&m));
    if let (Some(k), Some(p)) = (&key, previous)
        && p.result.rel == rel
    {
        // A path an event names changed, whatever its identity says.
        if !named && p.key.as_ref() == Some(k) && k.settled() {
            return (p.clone(), true);
        }
        // Recently modified, or another identity: the same content needs no parse.
        if let Ok(bytes) = std::fs::read(path)
            && bytes.len() as u64 <= MAX_FILE_BYTES
            && p.result.digest.as_deref() == Some(hash::sha256_tagged(&bytes).as_str())
        {
            return (
                Cached {
                    key,
                    result: Arc::clone(&p.result),
                },
                true,
            );
        }
    }
    let result = Arc::new(manifest::load_file(rel, path, settings, env, None, false));
    (Cached { key, result }, false)
}

/// The manifests and digests of `files`: the previous ones with the `touched` files'
/// replaced (in place when nobody else holds them), or assembled afresh.
fn assemble(
    previous: Option<Arc<Loaded>>,
    files: &BTreeMap<String, Cached>,
    touched: &BTreeSet<String>,
) -> Arc<Loaded> {
    match previous {
        Some(mut base) if touched.len() <= PATCH_LIMIT => {
            if touched.is_empty() {
                return base;
            }
            let b = Arc::make_mut(&mut base);
            b.manifests.retain(|m| !touched.contains(&m.file));
            for rel in touched {
                b.file_digests.remove(rel);
                let Some(c) = files.get(rel) else { continue };
                if let Some(d) = &c.result.digest {
                    b.file_digests.insert(rel.clone(), d.clone());
                }
                for m in &c.result.manifests {
                    let at = b
                        .manifests
                        .partition_point(|x| manifest::order(x, m).is_lt());
                    b.manifests.insert(at, m.clone());
                }
            }
            base
        }
        _ => {
            let mut manifests: Vec<_> = files
                .values()
                .flat_map(|c| c.result.manifests.iter().cloned())
                .collect();
            manifests.par_sort_by(manifest::order);
            let file_digests = files
                .iter()
                .filter_map(|(rel, c)| Some((rel.clone(), c.result.digest.clone()?)))
                .collect();
            Arc::new(Loaded {
                manifests,
                file_digests,
                ..Loaded::default()
            })
        }
    }
}
