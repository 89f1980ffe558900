//! Manifests from a git repository, for `taskform watch --git URL`: a bare clone in a
//! cache folder, fetched on demand, and each commit's tree materialized in a folder of
//! its own (`trees/<sha>`), written under a temporary name and renamed into place, so
//! that a reconcile never sees a half-updated tree.
//!
//! This runs the system `git`: it brings the user's usual authentication with it (ssh
//! keys and agent, credential helpers, `GIT_ASKPASS`, a token in the URL or in
//! `http.extraHeader`), which a git library would have to re-implement; and what it
//! needs (init, fetch, rev-parse, archive) is stable plumbing. `tar` unpacks the
//! archive. Prompts are disabled (`GIT_TERMINAL_PROMPT=0`); whatever git prints is
//! reported with any `user:password@` of a URL replaced by `***@`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The longest a git command may take.
const GIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Where the manifests come from.
#[derive(Clone)]
pub struct GitSource {
    pub url: String,
    pub branch: String,
    /// The manifest folder inside the repository (`""`: its root).
    pub path: String,
    /// The cache folder: `repo.git` and `trees/`.
    pub cache: PathBuf,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", redact(&self.url), self.branch, self.path)
    }
}

/// One commit, materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The commit's SHA.
    pub sha: String,
    /// The first line of its message.
    pub subject: String,
    /// The manifest folder in its tree.
    pub dir: PathBuf,
}

/// Why the repository could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// git (or tar) cannot be run at all: trying again cannot help.
    #[error("git: {0}")]
    Unavailable(String),
    /// A fetch, a git command or the cache failed: worth another try.
    #[error("git: {0}")]
    Failed(String),
}

/// `text` with the `user:password@` of every URL in it replaced by `***@`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The URL's token runs to the next space or quote; its credentials end at its
        // last `@` (a password may hold a `/`; an `@` in a path only hides more).
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The default cache folder for a repository: `$XDG_CACHE_HOME/taskform/git/<hash>`
/// (or `~/.cache/...`), else below `fallback`.
pub fn default_cache(url: &str, env: &dyn Fn(&str) -> Option<String>, fallback: &Path) -> PathBuf {
    let key = &crate::hash::sha256_tagged(url.as_bytes())["sha256:".len()..][..16];
    let base = env("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        });
    match base {
        Some(b) => b.join("taskform/git").join(key),
        None => fallback.join("git-cache").join(key),
    }
}

impl GitSource {
    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("--git-dir")
            .arg(self.cache.join("repo.git"))
            .env("GIT_TERMINAL_PROMPT", "0")
            // A transfer that stalls is given up (then retried with backoff), and ssh
            // never waits for a prompt.
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .stdin(Stdio::null());
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            c.env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
            );
        }
        c
    }

    fn run(&self, mut c: Command, what: &str) -> Result<String, GitError> {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| GitError::Unavailable(format!("cannot run git ({e}); install git")))?;
        // Whatever happens, a git command ends within the deadline.
        let deadline = std::time::Instant::now() + GIT_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(GitError::Failed(format!(
                        "{what} failed: no result within {} s",
                        GIT_DEADLINE.as_secs()
                    )));
                }
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| GitError::Unavailable(format!("cannot run git ({e})")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            return Err(GitError::Failed(format!("{what} failed: {}", redact(err))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Fetches the branch and materializes its commit (once per commit).
    pub fn sync(&self) -> Result<Revision, GitError> {
        let repo = self.cache.join("repo.git");
        if !repo.join("HEAD").exists() {
            std::fs::create_dir_all(&self.cache).map_err(|e| {
                GitError::Failed(format!(
                    "cannot create the cache {}: {e}",
                    self.cache.display()
                ))
            })?;
            let mut c = Command::new("git");
            c.arg("init").arg("--bare").arg("--quiet").arg(&repo);
            self.run(c, "git init")?;
        }
        let local = format!("refs/taskform/{}", self.branch);
        let mut c = self.git();
        c.args(["fetch", "--quiet", "--force", "--no-tags", "--"])
            .arg(&self.url)
            .arg(format!("+refs/heads/{}:{local}", self.branch));
        self.run(
            c,
            &format!("fetching {} from {}", self.branch, redact(&self.url)),
        )?;
        let mut c = self.git();
        c.args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{local}^{{commit}}"));
        let sha = self.run(c, "reading the branch")?;
        let mut c = self.git();
        c.args(["log", "-1", "--format=%s", &sha]);
        let subject = self.run(c, "reading the commit")?;
        let trees = self.cache.join("trees");
        let tree = trees.join(&sha);
        if !tree.is_dir() {
            let tmp = trees.join(format!(".{sha}.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)
                .map_err(|e| GitError::Failed(format!("cannot create {}: {e}", tmp.display())))?;
            let mut archive = self.git();
            archive
                .args(["archive", "--format=tar", &sha])
                .stdout(Stdio::piped());
            let mut child = archive
                .spawn()
                .map_err(|e| GitError::Unavailable(format!("cannot run git ({e}); install git")))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| GitError::Failed("git archive gave no output".into()))?;
            let tar = Command::new("tar")
                .arg("-x")
                .arg("-C")
                .arg(&tmp)
                .stdin(stdout)
                .output()
                .map_err(|e| GitError::Unavailable(format!("cannot run tar ({e})")))?;
            let archived = child.wait().map_err(|e| GitError::Failed(e.to_string()))?;
            if !archived.success() || !tar.status.success() {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(GitError::Failed(format!(
                    "cannot unpack commit {sha}: {}",
                    String::from_utf8_lossy(&tar.stderr).trim()
                )));
            }
            std::fs::rename(&tmp, &tree)
                .map_err(|e| GitError::Failed(format!("cannot move the tree into place: {e}")))?;
        }
        let dir = match self.path.trim_matches('/') {
            "" => tree.clone(),
            p => tree.join(p),
        };
        Ok(Revision { sha, subject, dir })
    }

    /// Removes materialized trees but those of `keep` (the live and the newest
    /// commits).
    pub fn prune(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(self.cache.join("trees")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !keep.contains(&name.as_str()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        assert_eq!(
            redact("fatal: unable to access 'https://ci:ghp_secret@github.com/o/r.git/': 403"),
            "fatal: unable to access 'https://***@github.com/o/r.git/': 403"
        );
        assert_eq!(redact("ssh://git@host/r"), "ssh://***@host/r");
        assert_eq!(redact("file:///tmp/r.git"), "file:///tmp/r.git");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(
            redact("https://u:pa/ss@host/r.git failed"),
            "https://***@host/r.git failed"
        );
    }
}
