//! Checking the files and folders a command names, as `validate` and `fmt` take them.
//!
//! A folder is loaded whole ([`crate::load::manifest::load_reporting`]). A file (as
//! pre-commit passes them) is checked as part of the target it belongs to
//! ([`target_dir_of`]): the nearest folder at or above it holding `taskform.yaml`, not
//! looking above the root of its git repository (the first folder holding `.git`),
//! else its own folder. That folder is loaded, so `defaults` apply and a task name
//! used by another file of the target is reported, and the problems of the named file
//! are kept (with the settings file's, which concern every task). The settings file
//! itself may be named: its problems are reported. A named file that the loader would
//! not read (a hidden one, another extension) is checked as a manifest all the same.

use crate::load::diagnostic::{self, Diagnostic};
use crate::load::manifest::{self, LoadError};
use crate::load::settings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a named file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Manifest,
    /// A target's `taskform.yaml`.
    Settings,
}

/// One file checked.
#[derive(Debug, Clone)]
pub struct CheckedFile {
    /// As the user named it (or as found below a named folder).
    pub display: String,
    /// The path to read and write.
    pub path: PathBuf,
    pub kind: FileKind,
    /// Whether it was checked and has no problem (a settings problem of its target
    /// counts: its tasks could not be checked).
    pub ok: bool,
}

/// The result of checking paths.
#[derive(Debug, Default)]
pub struct Checked {
    /// Problems, sorted: any one fails the check.
    pub errors: Vec<Diagnostic>,
    /// What the service may refuse (never fails the check), sorted.
    pub warnings: Vec<Diagnostic>,
    pub files: Vec<CheckedFile>,
    /// Tasks in the manifest files checked without problems.
    pub tasks: usize,
    /// Named folders that hold no manifest.
    pub empty_folders: Vec<String>,
    /// Folders (or named paths) that could not be checked at all: the message names
    /// them; `file` is the path, without a position.
    pub unreadable: Vec<Diagnostic>,
}

impl Checked {
    /// Whether anything failed the check.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || !self.unreadable.is_empty()
    }
}

/// Checks every path (folders and files); see the module documentation.
pub fn check(paths: &[PathBuf], env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Checked {
    let mut out = Checked::default();
    let mut targets: BTreeMap<PathBuf, Target> = BTreeMap::new();
    for path in paths {
        if path.is_dir() {
            check_folder(path, env, &mut out);
        } else if let Err(e) = std::fs::metadata(path) {
            out.unreadable.push(Diagnostic::new(
                path.display().to_string(),
                0,
                0,
                format!("cannot read {}: {e}", path.display()),
            ));
        } else {
            let dir = target_dir_of(path);
            let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            let target = targets.entry(key).or_insert_with(|| Target::load(dir, env));
            target.check_file(path, env, &mut out);
        }
    }
    dedup(&mut out.errors);
    dedup(&mut out.warnings);
    out
}

fn dedup(diags: &mut Vec<Diagnostic>) {
    diagnostic::sort(diags);
    diags.dedup();
}

fn check_folder(dir: &Path, env: &(dyn Fn(&str) -> Option<String> + Sync), out: &mut Checked) {
    let (result, warnings) = manifest::load_reporting_all(dir, env);
    let files: Vec<(String, PathBuf)> = manifest::manifest_files(dir)
        .into_iter()
        .map(|(_, p)| (p.display().to_string(), p))
        .collect();
    out.warnings.extend(warnings);
    let failed: Vec<Diagnostic> = match result {
        Ok(loaded) => {
            out.tasks += loaded.manifests.len();
            if loaded.manifests.is_empty() {
                out.empty_folders.push(dir.display().to_string());
            }
            Vec::new()
        }
        Err(LoadError::Dir(msg)) => {
            out.unreadable
                .push(Diagnostic::new(dir.display().to_string(), 0, 0, msg));
            return;
        }
        Err(LoadError::Invalid(diags)) => diags,
    };
    let everything = failed
        .iter()
        .any(|d| !files.iter().any(|(display, _)| *display == d.file));
    for (display, path) in files {
        let ok = !everything && !failed.iter().any(|d| d.file == display);
        out.files.push(CheckedFile {
            display,
            path,
            kind: FileKind::Manifest,
            ok,
        });
    }
    out.errors.extend(failed);
}

/// The folder whose `taskform.yaml` governs `file`: the nearest at or above the file's
/// folder holding one, not looking above a folder holding `.git` (the repository's
/// root); the file's own folder when there is none.
pub fn target_dir_of(file: &Path) -> PathBuf {
    let start = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dir = start.clone();
    for _ in 0..128 {
        if dir.join(settings::FILE_NAME).is_file() {
            return dir;
        }
        if dir.join(".git").exists() {
            break;
        }
        let Ok(real) = std::fs::canonicalize(&dir) else {
            break;
        };
        if real.parent().is_none() {
            break;
        }
        dir = match dir.file_name() {
            Some(_) => match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            // `.`, `..` or a root: go up by name.
            None => dir.join(".."),
        };
    }
    start
}

/// A target folder loaded once for the files named in it.
struct Target {
    dir: PathBuf,
    /// (path below the folder, path for messages, path) of each manifest file.
    files: Vec<(String, String, PathBuf)>,
    loaded: Option<crate::load::Loaded>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Problems not in any manifest file (the settings file, the folder): they
    /// concern every file of the target.
    general: Vec<Diagnostic>,
    /// The folder itself could not be loaded (reported without a position).
    unreadable: Option<Diagnostic>,
    general_reported: bool,
}

impl Target {
    fn load(dir: PathBuf, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Target {
        let (result, warnings) = manifest::load_reporting_all(&dir, env);
        let files: Vec<(String, String, PathBuf)> = manifest::manifest_files(&dir)
            .into_iter()
            .map(|(rel, p)| (rel, p.display().to_string(), p))
            .collect();
        let mut unreadable = None;
        let (loaded, errors) = match result {
            Ok(l) => (Some(l), Vec::new()),
            Err(LoadError::Dir(msg)) => {
                let d = Diagnostic::new(dir.display().to_string(), 0, 0, msg);
                unreadable = Some(d.clone());
                (None, vec![d])
            }
            Err(LoadError::Invalid(d)) => (None, d),
        };
        let general = errors
            .iter()
            .filter(|d| !files.iter().any(|(_, display, _)| *display == d.file))
            .cloned()
            .collect();
        Target {
            dir,
            files,
            loaded,
            errors,
            warnings,
            general,
            unreadable,
            general_reported: false,
        }
    }

    fn settings_display(&self) -> String {
        self.dir.join(settings::FILE_NAME).display().to_string()
    }

    fn check_file(
        &mut self,
        path: &Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
        out: &mut Checked,
    ) {
        let given = path.display().to_string();
        let real = std::fs::canonicalize(path).ok();
        let same = |p: &Path| real.is_some() && std::fs::canonicalize(p).ok() == real;
        // Problems of the settings file (and the folder) concern every file: once.
        if !self.general_reported {
            self.general_reported = true;
            match &self.unreadable {
                Some(d) => out.unreadable.push(d.clone()),
                None => out.errors.extend(self.general.iter().cloned()),
            }
            let settings = self.settings_display();
            out.warnings
                .extend(self.warnings.iter().filter(|w| w.file == settings).cloned());
        }
        let settings_path = self.dir.join(settings::FILE_NAME);
        if same(&settings_path) {
            out.files.push(CheckedFile {
                display: given,
                path: path.to_path_buf(),
                kind: FileKind::Settings,
                ok: self.general.is_empty(),
            });
            return;
        }
        let renamed = |d: &Diagnostic| Diagnostic {
            file: given.clone(),
            ..d.clone()
        };
        let Some((rel, display, _)) = self.files.iter().find(|(_, _, p)| same(p)) else {
            // Not a file the loader reads: checked as a manifest all the same.
            let (ok, tasks) = self.check_alone(path, &given, env, out);
            out.tasks += tasks;
            out.files.push(CheckedFile {
                display: given,
                path: path.to_path_buf(),
                kind: FileKind::Manifest,
                ok: ok && self.general.is_empty(),
            });
            return;
        };
        let mine: Vec<Diagnostic> = self
            .errors
            .iter()
            .filter(|d| d.file == *display)
            .map(renamed)
            .collect();
        out.warnings.extend(
            self.warnings
                .iter()
                .filter(|w| w.file == *display)
                .map(renamed),
        );
        let ok = mine.is_empty() && self.general.is_empty();
        if ok {
            out.tasks += match &self.loaded {
                Some(l) => l.manifests.iter().filter(|m| m.file == *rel).count(),
                None => documents(path),
            };
        }
        out.errors.extend(mine);
        out.files.push(CheckedFile {
            display: given,
            path: path.to_path_buf(),
            kind: FileKind::Manifest,
            ok,
        });
    }

    /// Checks a file the loader does not read with its target's settings; returns
    /// whether it has no problem and its number of tasks.
    fn check_alone(
        &self,
        path: &Path,
        given: &str,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
        out: &mut Checked,
    ) -> (bool, usize) {
        let settings = match settings::load(&self.dir, env) {
            Ok(s) => s,
            Err(_) => return (false, 0), // reported with the target's problems
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                out.errors.push(Diagnostic::new(
                    given,
                    0,
                    0,
                    format!("cannot read file: {e}"),
                ));
                return (false, 0);
            }
        };
        let parsed = manifest::parse_source_full(&bytes, given, given, &settings, env);
        for w in &parsed.warnings {
            tracing::warn!("{}", w.log_line());
        }
        out.warnings.extend(parsed.warnings);
        let ok = parsed.diags.is_empty();
        out.errors.extend(parsed.diags);
        (ok, parsed.manifests.len())
    }
}

/// The number of non-empty YAML documents of a file (its tasks, when it is valid).
fn documents(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| crate::load::yaml::parse_documents(&s).ok())
        .map_or(0, |d| d.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_belongs_to_the_nearest_settings_not_above_the_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in [
            "repo/.git",
            "repo/tasks/dli/deep",
            "repo/envs/dev",
            "repo/other",
            "loose/x",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("repo/tasks/taskform.yaml"), "").unwrap();
        std::fs::write(root.join("repo/envs/taskform.yaml"), "").unwrap();
        std::fs::write(root.join("repo/envs/dev/taskform.yaml"), "").unwrap();
        std::fs::write(root.join("taskform.yaml"), "").unwrap();
        let of = |p: &str| target_dir_of(&root.join(p));
        assert_eq!(of("repo/tasks/dli/deep/a.yaml"), root.join("repo/tasks"));
        assert_eq!(of("repo/tasks/a.yaml"), root.join("repo/tasks"));
        assert_eq!(of("repo/envs/dev/a.yaml"), root.join("repo/envs/dev"));
        // Never above the repository's root, even when a folder there has settings.
        assert_eq!(of("repo/other/a.yaml"), root.join("repo/other"));
        assert_eq!(of("loose/x/a.yaml"), root.to_path_buf());
    }
}
