//! Manifest loading: discovers `*.yaml`/`*.yml` files below DIR, parses every document,
//! interpolates `${VAR}`, merges `defaults`, validates, and computes content hashes.
//!
//! Files are read and hashed in parallel; the result never depends on discovery order
//! (manifests are sorted by name, diagnostics by position). Every problem of every file
//! is collected before the load fails, so one run shows everything to fix.

use crate::hash;
use crate::load::diagnostic::{self, Diagnostic};
use crate::load::interpolate;
use crate::load::schema::{self, Problem};
use crate::load::settings::{self, Settings};
use crate::load::yaml::{self, Part, Seg};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files larger than this are refused rather than parsed.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One task as declared in a manifest, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The task's identity.
    pub name: String,
    /// The exact request body (manifest + defaults, interpolated) as RFC 8785
    /// canonical JSON: what apply sends, byte for byte. Kept as text rather than a
    /// parsed value so that 10,000 manifests stay small in memory; see [`Manifest::body`].
    pub canonical: String,
    /// `sha256:<hex>` of `canonical`.
    pub hash: String,
    /// Path relative to DIR with `/` separators (what the state records).
    pub file: String,
    /// Path as the user named it (DIR joined), for messages.
    pub display: String,
    /// Index of the YAML document within the file.
    pub doc_index: usize,
}

impl Manifest {
    /// The request body as a JSON value (parsed from the canonical text).
    pub fn body(&self) -> Value {
        serde_json::from_str(&self.canonical).unwrap_or(Value::Null)
    }

    /// Builds a manifest from a body (computes the canonical text and the hash).
    pub fn from_body(
        name: String,
        body: &Value,
        file: String,
        display: String,
        doc_index: usize,
    ) -> Manifest {
        let (canonical, hash) = hash::canonical_and_hash(body);
        Manifest {
            name,
            canonical,
            hash,
            file,
            display,
            doc_index,
        }
    }
}

/// Everything read from DIR.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Sorted by name.
    pub manifests: Vec<Manifest>,
    /// `sha256:<hex>` of every manifest file's bytes, by path relative to DIR.
    pub file_digests: BTreeMap<String, String>,
    pub settings: Settings,
}

/// Why loading failed.
#[derive(Debug)]
pub enum LoadError {
    /// DIR itself cannot be read.
    Dir(String),
    /// Problems in the manifests or settings, sorted by position.
    Invalid(Vec<Diagnostic>),
}

/// Loads and validates every manifest below `dir`.
pub fn load(
    dir: &Path,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Loaded, LoadError> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        LoadError::Dir(format!(
            "cannot read manifest folder {}: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(LoadError::Dir(format!("{} is not a folder", dir.display())));
    }
    let settings = settings::load(dir, env).map_err(LoadError::Invalid)?;
    let mut diags = Vec::new();
    let files = discover(dir, &mut diags);

    let results: Vec<FileResult> = files
        .par_iter()
        .map(|(rel, path)| load_file(rel, path, &settings, env))
        .collect();

    let mut manifests = Vec::new();
    let mut file_digests = BTreeMap::new();
    for r in results {
        diags.extend(r.diags);
        manifests.extend(r.manifests);
        if let Some(d) = r.digest {
            file_digests.insert(r.rel.clone(), d);
        }
    }
    manifests.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.file.cmp(&b.file))
            .then(a.doc_index.cmp(&b.doc_index))
    });
    duplicate_names(dir, &manifests, &mut diags);

    if diags.is_empty() {
        Ok(Loaded {
            manifests,
            file_digests,
            settings,
        })
    } else {
        diagnostic::sort(&mut diags);
        Err(LoadError::Invalid(diags))
    }
}

/// Walks `dir`, returning (path relative to DIR, full path) of each manifest file, sorted.
fn discover(dir: &Path, diags: &mut Vec<Diagnostic>) -> Vec<(String, PathBuf)> {
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel_dir, path)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) => {
                diags.push(Diagnostic::new(
                    path.display().to_string(),
                    0,
                    0,
                    format!("cannot read folder: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let full = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let is_manifest_name = name.ends_with(".yaml") || name.ends_with(".yml");
            if ft.is_symlink() {
                let target = std::fs::canonicalize(&full);
                match target {
                    Ok(t) if t.starts_with(&root) => {
                        if t.is_file() && is_manifest_name {
                            out.push((rel, full));
                        } else if t.is_dir() {
                            tracing::warn!(path = %full.display(), "symbolic link to a folder not followed");
                        }
                    }
                    _ if is_manifest_name || full.is_dir() => diags.push(
                        Diagnostic::new(full.display().to_string(), 0, 0, "symbolic link points outside the manifest folder; refusing to follow it")
                            .with_hint("copy the file into the folder, or point the link inside it"),
                    ),
                    _ => {}
                }
            } else if ft.is_dir() {
                stack.push((rel, full));
            } else if ft.is_file()
                && is_manifest_name
                && !(rel_dir.is_empty() && name == settings::FILE_NAME)
            {
                out.push((rel, full));
            }
        }
    }
    out.sort();
    out
}

struct FileResult {
    rel: String,
    manifests: Vec<Manifest>,
    diags: Vec<Diagnostic>,
    digest: Option<String>,
}

fn load_file(
    rel: &str,
    path: &Path,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> FileResult {
    let display = path.display().to_string();
    let mut result = FileResult {
        rel: rel.to_string(),
        manifests: Vec::new(),
        diags: Vec::new(),
        digest: None,
    };
    let fail = |mut r: FileResult, d: Diagnostic| {
        r.diags.push(d);
        r
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return fail(
                result,
                Diagnostic::new(
                    &display,
                    0,
                    0,
                    format!(
                        "file is {} bytes, over the {} byte limit for a manifest",
                        m.len(),
                        MAX_FILE_BYTES
                    ),
                )
                .with_hint("split it into several files"),
            );
        }
        Err(e) => {
            return fail(
                result,
                Diagnostic::new(&display, 0, 0, format!("cannot read file: {e}")),
            );
        }
        _ => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                result,
                Diagnostic::new(&display, 0, 0, format!("cannot read file: {e}")),
            );
        }
    };
    result.digest = Some(hash::sha256_tagged(&bytes));
    let (manifests, diags) = parse_source(&bytes, rel, &display, settings, env);
    result.manifests = manifests;
    result.diags = diags;
    result
}

/// Parses, interpolates, merges `defaults`, validates and hashes one file's bytes:
/// the loader without the file system (benchmarks and fuzzing call it directly).
/// `rel` is the path below DIR, `display` the path for messages.
pub fn parse_source(
    bytes: &[u8],
    rel: &str,
    display: &str,
    settings: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (Vec<Manifest>, Vec<Diagnostic>) {
    let mut manifests = Vec::new();
    let mut diags = Vec::new();
    let src = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            diags.push(
                Diagnostic::new(display, line, col, "file is not valid UTF-8")
                    .with_hint("save the file as UTF-8"),
            );
            return (manifests, diags);
        }
    };
    let docs = match yaml::parse_documents(src) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::new(display, e.line, e.col, e.message));
            return (manifests, diags);
        }
    };
    for doc in docs {
        let mut body = doc.value;
        let mut problems: Vec<Problem> = interpolate::interpolate(&mut body, env)
            .into_iter()
            .map(|e| Problem {
                path: e.path,
                part: Part::Value,
                message: e.message,
                hint: e.hint,
            })
            .collect();
        schema::merge_defaults(&mut body, &settings.defaults);
        if problems.is_empty() {
            problems = schema::validate(&body);
        }
        if !problems.is_empty() {
            for p in problems {
                diags.push(place(src, display, doc.index, settings, p));
            }
            continue;
        }
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        manifests.push(Manifest::from_body(
            name,
            &body,
            rel.to_string(),
            display.to_string(),
            doc.index,
        ));
    }
    (manifests, diags)
}

/// Turns a problem's path into a position: in the manifest when the node is there, in
/// the settings file when it came from `defaults`, else at the document's start.
fn place(src: &str, display: &str, doc: usize, settings: &Settings, p: Problem) -> Diagnostic {
    if let Some((l, c)) = yaml::locate(src, doc, &p.path, p.part) {
        return Diagnostic::new(display, l, c, p.message).with_hint_opt(p.hint);
    }
    if let (Some(file), Some(settings_src)) = (&settings.file, &settings.source)
        && !p.path.is_empty()
    {
        let mut dpath = vec![Seg::Key("defaults".into())];
        dpath.extend(p.path.iter().cloned());
        if let Some((l, c)) = yaml::locate(settings_src, 0, &dpath, p.part) {
            return Diagnostic::new(
                file,
                l,
                c,
                format!(
                    "{} (from `defaults`, merged into the task in {display})",
                    p.message
                ),
            )
            .with_hint_opt(p.hint);
        }
    }
    let (l, c) = yaml::locate(src, doc, &[], Part::Value).unwrap_or((0, 0));
    Diagnostic::new(display, l, c, p.message).with_hint_opt(p.hint)
}

fn duplicate_names(dir: &Path, manifests: &[Manifest], diags: &mut Vec<Diagnostic>) {
    let mut i = 0;
    while i < manifests.len() {
        let mut j = i + 1;
        while j < manifests.len() && manifests[j].name == manifests[i].name {
            j += 1;
        }
        if j - i > 1 {
            let places: Vec<(usize, usize)> = manifests[i..j]
                .iter()
                .map(|m| name_position(dir, m))
                .collect();
            for (k, m) in manifests[i..j].iter().enumerate() {
                let others: Vec<String> = manifests[i..j]
                    .iter()
                    .zip(&places)
                    .enumerate()
                    .filter(|(o, _)| *o != k)
                    .map(|(_, (o, (l, c)))| format!("{}:{l}:{c}", o.display))
                    .collect();
                let (l, c) = places[k];
                diags.push(
                    Diagnostic::new(
                        &m.display,
                        l,
                        c,
                        format!(
                            "duplicate task name `{}`, also defined at {}",
                            m.name,
                            others.join(", ")
                        ),
                    )
                    .with_hint("task names identify tasks and must be unique; rename one of them"),
                );
            }
        }
        i = j;
    }
}

fn name_position(dir: &Path, m: &Manifest) -> (usize, usize) {
    std::fs::read_to_string(dir.join(&m.file))
        .ok()
        .and_then(|src| yaml::locate(&src, m.doc_index, &[Seg::Key("name".into())], Part::Value))
        .unwrap_or((0, 0))
}
