//! Durable file writes: temp file in the same folder, fsync, rename, fsync the folder.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically: readers see the old or the new content,
/// never a mix, even after a crash or power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes)?;
    sync_dir(parent_dir(path))
}

/// Writes `bytes` to a temp file beside `path` (its folder created as needed),
/// fsyncs it and renames it over `path`; the folder is not synced (the caller does,
/// once for many files). The temp file is removed on an error.
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes many files, each as [`write_atomic`] does, with the fsyncs in parallel (a
/// disk groups them; one after the other, 1,000 files cost about a second) and each
/// folder synced once at the end. Folders are created as needed. On an error, the
/// files written before it stay; the error names the file.
pub fn write_many(
    files: &[(std::path::PathBuf, String)],
) -> Result<(), (std::path::PathBuf, io::Error)> {
    const THREADS: usize = 16;
    let chunk = files.len().div_ceil(THREADS).max(1);
    let failed = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for (path, text) in part {
                        replace_file(path, text.as_bytes()).map_err(|e| (path.clone(), e))?;
                    }
                    Ok::<(), (std::path::PathBuf, io::Error)>(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err((
                        std::path::PathBuf::new(),
                        io::Error::other("a writer thread panicked"),
                    ))
                })
            })
            .find(Result::is_err)
    });
    if let Some(Err(e)) = failed {
        return Err(e);
    }
    let mut dirs: Vec<&Path> = files.iter().map(|(p, _)| parent_dir(p)).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        sync_dir(d).map_err(|e| (d.to_path_buf(), e))?;
    }
    Ok(())
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a folder so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// `path` with `.` and `name/..` removed, lexically (no file system access), so that
/// `tasks/../state/taskform.json` reads `state/taskform.json` in messages. A leading
/// `..` stays.
pub fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return std::path::PathBuf::from(".");
    }
    out.iter().collect()
}

/// `path` relative to the folder `base` (both taken from the working folder when
/// relative), lexically: `relative_to("tasks", "plans")` is `../tasks`.
pub fn relative_to(path: &Path, base: &Path) -> io::Result<std::path::PathBuf> {
    let cwd = std::env::current_dir()?;
    let path = normalize(&cwd.join(path));
    let base = normalize(&cwd.join(base));
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_relative_paths() {
        assert_eq!(
            normalize(Path::new("tasks/../state/t.json")),
            Path::new("state/t.json")
        );
        assert_eq!(normalize(Path::new("./a/./b/..")), Path::new("a"));
        assert_eq!(normalize(Path::new("../x/../y")), Path::new("../y"));
        assert_eq!(normalize(Path::new("a/..")), Path::new("."));
        assert_eq!(
            relative_to(Path::new("tasks"), Path::new("plans")).unwrap(),
            Path::new("../tasks")
        );
        assert_eq!(
            relative_to(Path::new("state/t.json"), Path::new(".")).unwrap(),
            Path::new("state/t.json")
        );
        assert_eq!(
            relative_to(Path::new("a/b"), Path::new("a/b")).unwrap(),
            Path::new(".")
        );
    }
}
