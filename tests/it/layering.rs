//! The layering of `src/` stays true: data flows files → load → plan → reconcile →
//! render → cli, and no module imports from a later stage. This test reads every source
//! file and fails on a `crate::` path that runs back up (or sideways where the stages
//! are independent), naming the file, the line and the rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A source file's stage: the folder below `src/` (or `base` for the small files at the
/// top that every stage may use).
fn stage_of(rel: &Path) -> String {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    match (first.as_str(), rel.components().count()) {
        ("lib.rs" | "main.rs", 1) => "root".into(),
        ("error.rs", 1) => "error".into(),
        (_, 1) => "base".into(),
        (dir, _) => dir.into(),
    }
}

/// What each stage may import (besides itself).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("base", &[][..]),
        ("load", &["base"][..]),
        ("state", &["base"][..]),
        ("remote", &["base"][..]),
        ("plan", &["base", "load", "state"][..]),
        (
            "reconcile",
            &["base", "load", "state", "plan", "remote"][..],
        ),
        (
            "render",
            &["base", "load", "state", "plan", "reconcile"][..],
        ),
        (
            "alert",
            &["base", "load", "state", "plan", "remote", "reconcile"][..],
        ),
        (
            "error",
            &["base", "load", "state", "plan", "remote", "reconcile"][..],
        ),
        (
            "cli",
            &[
                "base",
                "load",
                "state",
                "plan",
                "remote",
                "reconcile",
                "render",
                "error",
                "emulator",
                "alert",
            ][..],
        ),
        // The emulator is an independent model of the service: it shares only the API's
        // shapes and the signer with the client.
        ("emulator", &["base", "remote::api", "remote::signer"][..]),
        (
            "root",
            &[
                "base",
                "load",
                "state",
                "plan",
                "remote",
                "reconcile",
                "render",
                "error",
                "cli",
                "emulator",
                "alert",
            ][..],
        ),
    ])
}

/// The top-level module a `crate::` path names, as a stage (`remote::api` for the
/// emulator's finer rule).
fn target_of(path: &str, base_files: &[String]) -> (String, String) {
    let mut segs = path.split("::");
    let first = segs.next().unwrap_or_default().to_string();
    let second = segs.next().unwrap_or_default().to_string();
    let stage = if base_files.contains(&first) {
        "base".to_string()
    } else {
        first.clone()
    };
    (stage.clone(), format!("{stage}::{second}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_later_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let base_files: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            (stage_of(rel) == "base").then(|| rel.with_extension("").to_string_lossy().into_owned())
        })
        .collect();
    let rules = allowed();
    let mut broken = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let stage = stage_of(rel);
        let Some(may) = rules.get(stage.as_str()) else {
            broken.push(format!(
                "{}: stage `{stage}` has no rule in tests/it/layering.rs",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let (to, fine) = target_of(&path, &base_files);
                if to == stage || may.contains(&to.as_str()) || may.contains(&fine.as_str()) {
                    continue;
                }
                broken.push(format!(
                    "src/{}:{}: `{stage}` imports crate::{path}, from `{to}` (allowed: {})",
                    rel.display(),
                    n + 1,
                    may.join(", ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the pipeline's direction:\n{}",
        broken.join("\n")
    );
}
