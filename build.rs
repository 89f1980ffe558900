//! Build information for `taskform version`: the target triple, the git commit and a
//! build date, as `TASKFORM_TARGET`, `TASKFORM_COMMIT` and `TASKFORM_BUILD_DATE`.
//! Reruns only when HEAD moves or the variables below change, so it never makes an
//! ordinary rebuild recompile the crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `YYYY-MM-DD` of a Unix time (UTC), by the days-to-civil algorithm.
fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["TASKFORM_COMMIT", "SOURCE_DATE_EPOCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TASKFORM_TARGET={target}");

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let commit = std::env::var("TASKFORM_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&dir, &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TASKFORM_COMMIT={commit}");
    // Rerun when HEAD moves: HEAD itself, and the branch it points to (loose or packed).
    if let Some(git_dir) = git(&dir, &["rev-parse", "--git-dir"]) {
        let git_dir = dir.join(git_dir);
        let mut watch = vec![git_dir.join("HEAD")];
        if let (Some(common), Some(branch)) = (
            git(&dir, &["rev-parse", "--git-common-dir"]),
            git(&dir, &["symbolic-ref", "-q", "HEAD"]),
        ) {
            let common = dir.join(common);
            watch.push(common.join(branch));
            watch.push(common.join("packed-refs"));
        }
        for path in watch.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        })
        .map_or_else(|| "unknown".into(), date);
    println!("cargo:rustc-env=TASKFORM_BUILD_DATE={date}");
}
