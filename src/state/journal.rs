//! The append-only journal beside the state file.
//!
//! Before a create is sent, an `intent` record is made durable, with the body about to
//! be sent in its shown form (sensitive values fingerprinted), so that settling can
//! compare the service's tasks with it whatever the manifests say later; when the answer
//! arrives, a `created` record (with the task ID) is made durable before the task counts
//! as done. The journal is folded into the state file at the end of a run and at the
//! start of the next, so after a crash at any moment every returned task ID is
//! recorded and every create that may have reached the server is either recorded or
//! `in_doubt`.
//!
//! Format: JSON lines. The first line is an `open` record naming the state's lineage
//! and the serial the journal applies to; a journal whose serial is older than the
//! state's has already been folded and is ignored. A last line cut short by a crash is
//! ignored; a bad line before the last is corruption and an error.
//!
//! Writes go through one thread that batches whatever records are waiting into a
//! single `write` + `fdatasync` (group commit), so durability costs one sync per batch,
//! not per task.

use crate::state::{State, TaskRecord};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// One journal line.
/// Externally tagged (`{"created": {...}}`), so that bodies stay raw JSON when read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Open {
        lineage: String,
        base_serial: u64,
        at: String,
    },
    Intent {
        name: String,
        hash: String,
        #[serde(default)]
        file: Option<String>,
        at: String,
        /// The body about to be sent, as shown (sensitive values fingerprinted): what
        /// settling compares with once the manifest changed. Absent in older journals.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Box<RawValue>>,
    },
    Created {
        name: String,
        hash: String,
        task_id: String,
        #[serde(default)]
        file: Option<String>,
        at: String,
        #[serde(default)]
        body: Option<Box<RawValue>>,
    },
    /// A recorded task was changed in place (PUT) to this content.
    Updated {
        name: String,
        task_id: String,
        hash: String,
        #[serde(default)]
        file: Option<String>,
        at: String,
        #[serde(default)]
        body: Option<Box<RawValue>>,
    },
    /// A remote task of this name is gone (deleted, or found already deleted).
    Deleted { name: String, task_id: String },
    /// The create was answered with an error: no task was made.
    Failed { name: String, hash: String },
    /// The create's outcome is unknown (why, for the user).
    InDoubt {
        name: String,
        hash: String,
        reason: String,
    },
}

/// Why a journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read journal {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "journal {path} is corrupt at line {line}: {detail}; move it aside and run `taskform plan` to see what is in doubt"
    )]
    Corrupt {
        path: String,
        line: usize,
        detail: String,
    },
    #[error(
        "journal {path} belongs to another state (lineage {found}, state has {expected}); it was not written for this state file"
    )]
    OtherLineage {
        path: String,
        found: String,
        expected: String,
    },
    /// An append did not become durable.
    #[error("{0}")]
    Write(String),
    #[error(
        "journal {path} continues state serial {found}, but the state file is at serial {expected}: the state file was replaced by an older copy; restore the newer state file or move the journal aside after checking it"
    )]
    Ahead {
        path: String,
        found: u64,
        expected: u64,
    },
}

/// The journal's path for a state file: `<state>.journal`.
pub fn path_for(state_path: &Path) -> PathBuf {
    let mut name = state_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".journal");
    state_path.with_file_name(name)
}

/// Reads every complete record; a torn last line is dropped with a warning.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let p = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path: p, source }),
    };
    parse(&bytes, &p)
}

/// Parses journal bytes (see [`read`]).
pub fn parse(bytes: &[u8], path: &str) -> Result<Vec<Record>, JournalError> {
    let mut records = Vec::new();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.iter().rposition(|l| !l.is_empty());
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => records.push(r),
            Err(e) if Some(i) == last => {
                tracing::warn!(journal = path, line = i + 1, error = %e, "ignoring the journal's last record, cut short by a crash");
            }
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.into(),
                    line: i + 1,
                    detail: e.to_string(),
                });
            }
        }
    }
    Ok(records)
}

/// Folds journal records into `state`. Returns whether anything was applied.
pub fn fold(state: &mut State, records: &[Record], path: &str) -> Result<bool, JournalError> {
    let Some(Record::Open {
        lineage,
        base_serial,
        ..
    }) = records.first()
    else {
        if records.is_empty() {
            return Ok(false);
        }
        return Err(JournalError::Corrupt {
            path: path.into(),
            line: 1,
            detail: "the first record is not `open`".into(),
        });
    };
    if *lineage != state.lineage {
        return Err(JournalError::OtherLineage {
            path: path.into(),
            found: lineage.clone(),
            expected: state.lineage.clone(),
        });
    }
    if *base_serial < state.serial {
        return Ok(false); // already folded before a crash removed it
    }
    if *base_serial > state.serial {
        return Err(JournalError::Ahead {
            path: path.into(),
            found: *base_serial,
            expected: state.serial,
        });
    }
    Ok(replay(state, &records[1..]))
}

/// Applies records (without an `open` header) to `state`, as folding does. Returns
/// whether anything was applied.
pub fn replay(state: &mut State, records: &[Record]) -> bool {
    let mut changed = false;
    for r in records {
        changed |= apply(state, r);
    }
    changed
}

/// Applies one record through the state's transitions; idempotent, so replaying a
/// journal twice changes nothing more.
fn apply(state: &mut State, r: &Record) -> bool {
    match r {
        Record::Open { .. } => false,
        Record::Intent {
            name,
            hash,
            file,
            at,
            body,
        } => {
            state.record_intent(name, hash, file.clone(), at, body.clone());
            true
        }
        Record::InDoubt { name, hash, reason } => {
            state.record_in_doubt_reason(name, hash, reason);
            true
        }
        Record::Failed { name, hash } => {
            state.record_failed(name, hash);
            true
        }
        Record::Updated {
            name,
            task_id,
            hash,
            file,
            at,
            body,
        } => state.record_updated(name, task_id, hash, file.clone(), at, body.clone()),
        Record::Deleted { name, task_id } => state.record_deleted(name, task_id),
        Record::Created {
            name,
            hash,
            task_id,
            file,
            at,
            body,
        } => {
            state.record_created(
                name,
                TaskRecord {
                    task_id: task_id.clone(),
                    hash: hash.clone(),
                    file: file.clone(),
                    applied_at: Some(at.clone()),
                    body: body.clone(),
                    superseded: Vec::new(),
                },
            );
            true
        }
    }
}

type Pending = (Vec<u8>, Option<oneshot::Sender<Result<(), JournalError>>>);

/// Appends records durably from one writer thread with group commit.
pub struct Writer {
    tx: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Starts a new journal for `state` (replacing any folded one) and makes its
    /// `open` record durable.
    pub fn create(path: &Path, state: &State, now: String) -> io::Result<Writer> {
        let dir = crate::fsutil::parent_dir(path);
        std::fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let open = Record::Open {
            lineage: state.lineage.clone(),
            base_serial: state.serial,
            at: now,
        };
        file.write_all(&line(&open))?;
        file.sync_all()?;
        crate::fsutil::sync_dir(dir)?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer_loop(file, rx))?;
        Ok(Writer {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends a record and waits until it is on disk.
    pub async fn append(&self, record: &Record) -> Result<(), JournalError> {
        let stopped = || JournalError::Write("journal writer stopped".into());
        let (ack, done) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let tx = tx
                .as_ref()
                .ok_or_else(|| JournalError::Write("journal closed".into()))?;
            tx.send((line(record), Some(ack))).map_err(|_| stopped())?;
        }
        done.await.map_err(|_| stopped())?
    }

    /// Appends a record without waiting for it to reach the disk (it will, in order,
    /// before any later durable append is acknowledged).
    pub fn append_nowait(&self, record: &Record) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send((line(record), None));
        }
    }

    /// Flushes everything and stops the writer thread.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn line(record: &Record) -> Vec<u8> {
    let mut v = serde_json::to_vec(record).unwrap_or_default();
    v.push(b'\n');
    v
}

fn writer_loop(mut file: File, rx: mpsc::Receiver<Pending>) {
    let mut failed: Option<String> = None;
    let mut buf = Vec::new();
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 4096 {
                break;
            }
        }
        buf.clear();
        acks.clear();
        for (bytes, ack) in batch {
            buf.extend_from_slice(&bytes);
            if let Some(a) = ack {
                acks.push(a);
            }
        }
        if failed.is_none()
            && let Err(e) = file.write_all(&buf).and_then(|_| file.sync_data())
        {
            failed = Some(format!("cannot write the journal: {e}"));
        }
        for a in acks.drain(..) {
            let _ = a.send(match &failed {
                None => Ok(()),
                Some(e) => Err(JournalError::Write(e.clone())),
            });
        }
    }
    let _ = file.sync_data();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, id: &str, hash: &str) -> Record {
        Record::Created {
            name: name.into(),
            hash: hash.into(),
            task_id: id.into(),
            file: None,
            at: "t".into(),
            body: None,
        }
    }

    #[test]
    fn fold_records_and_ignore_stale_journals() {
        let mut s = State::new();
        let recs = vec![
            Record::Open {
                lineage: s.lineage.clone(),
                base_serial: 0,
                at: "t".into(),
            },
            Record::Intent {
                name: "a".into(),
                hash: "h1".into(),
                file: None,
                at: "t".into(),
                body: None,
            },
            Record::Intent {
                name: "b".into(),
                hash: "h2".into(),
                file: None,
                at: "t".into(),
                body: None,
            },
            Record::Intent {
                name: "c".into(),
                hash: "h3".into(),
                file: None,
                at: "t".into(),
                body: None,
            },
            created("a", "id-a", "h1"),
            Record::Failed {
                name: "c".into(),
                hash: "h3".into(),
            },
        ];
        assert!(fold(&mut s, &recs, "j").unwrap());
        assert_eq!(s.tasks["a"].task_id, "id-a");
        assert!(s.in_doubt.contains_key("b"));
        assert!(!s.in_doubt.contains_key("c"));
        let snapshot = serde_json::to_string(&s).unwrap();
        s.serial = 1;
        assert!(
            !fold(&mut s, &recs, "j").unwrap(),
            "a folded journal is ignored"
        );
        s.serial = 0;
        fold(&mut s, &recs, "j").unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            snapshot,
            "replay is idempotent"
        );
    }

    #[test]
    fn replace_keeps_the_previous_task_as_superseded() {
        let mut s = State::new();
        let recs = vec![
            Record::Open {
                lineage: s.lineage.clone(),
                base_serial: 0,
                at: "t".into(),
            },
            created("a", "1", "h1"),
            created("a", "2", "h2"),
        ];
        fold(&mut s, &recs, "j").unwrap();
        assert_eq!(s.tasks["a"].task_id, "2");
        assert_eq!(s.tasks["a"].superseded[0].task_id, "1");
    }

    #[test]
    fn updates_and_deletes_replay_idempotently() {
        let mut s = State::new();
        let recs = vec![
            created("a", "1", "h1"),
            created("a", "2", "h2"),
            Record::Updated {
                name: "a".into(),
                task_id: "2".into(),
                hash: "h3".into(),
                file: None,
                at: "t".into(),
                body: None,
            },
            Record::Updated {
                name: "a".into(),
                task_id: "1".into(),
                hash: "ignored: not the recorded task".into(),
                file: None,
                at: "t".into(),
                body: None,
            },
        ];
        replay(&mut s, &recs);
        assert_eq!(s.tasks["a"].hash, "h3");
        let del = |id: &str| Record::Deleted {
            name: "a".into(),
            task_id: id.into(),
        };
        // The current task first: the superseded one is still recorded.
        let mut one = s.clone();
        replay(&mut one, &[del("2")]);
        assert_eq!(one.tasks["a"].task_id, "1");
        replay(&mut one, &[del("1"), del("1"), del("2")]);
        assert!(one.tasks.is_empty());
        // The superseded task first.
        replay(&mut s, &[del("1"), del("1")]);
        assert_eq!(s.tasks["a"].task_id, "2");
        assert!(s.tasks["a"].superseded.is_empty());
        replay(&mut s, &[del("2")]);
        assert!(s.tasks.is_empty());
    }

    #[test]
    fn an_intent_keeps_the_body_sent_and_an_old_one_without_it_still_folds() {
        let old = br#"{"intent":{"name":"a","hash":"h1","file":null,"at":"t"}}"#;
        let new = br#"{"intent":{"name":"b","hash":"h2","file":"b.yaml","at":"t","body":{"name":"b","x":"sha256:fp"}}}"#;
        let mut s = State::new();
        replay(&mut s, &parse(old, "j").unwrap());
        replay(&mut s, &parse(new, "j").unwrap());
        assert!(s.in_doubt["a"].body.is_none());
        assert_eq!(
            s.in_doubt["b"].body.as_ref().map(|b| b.get()),
            Some(r#"{"name":"b","x":"sha256:fp"}"#)
        );
        // The state keeps it (and writes nothing for an old intent).
        let text = String::from_utf8(s.encode()).unwrap();
        let back = State::from_bytes(text.as_bytes(), "s").unwrap();
        assert_eq!(back.in_doubt, s.in_doubt);
        let a = serde_json::to_value(&s.in_doubt["a"]).unwrap();
        assert!(a.get("body").is_none(), "{a}");
        // Written without a body, an intent reads as before.
        let line = line(&Record::Intent {
            name: "c".into(),
            hash: "h".into(),
            file: None,
            at: "t".into(),
            body: None,
        });
        assert!(!String::from_utf8(line).unwrap().contains("body"));
    }

    #[test]
    fn torn_last_line_is_ignored_but_corruption_inside_is_not() {
        let ok = b"{\"failed\":{\"name\":\"a\",\"hash\":\"h\"}}\n{\"intent\":{\"na";
        assert_eq!(parse(ok, "j").unwrap().len(), 1);
        let bad = b"{\"failed\":{\"name\":\"a\",\"hash\":\"h\"}}\ngarbage\n{\"failed\":{\"name\":\"a\",\"hash\":\"h\"}}\n";
        assert!(matches!(
            parse(bad, "j"),
            Err(JournalError::Corrupt { line: 2, .. })
        ));
    }

    #[test]
    fn other_lineage_and_rolled_back_state_are_errors() {
        let mut s = State::new();
        let recs = vec![Record::Open {
            lineage: "other".into(),
            base_serial: 0,
            at: "t".into(),
        }];
        assert!(matches!(
            fold(&mut s, &recs, "j"),
            Err(JournalError::OtherLineage { .. })
        ));
        let recs = vec![Record::Open {
            lineage: s.lineage.clone(),
            base_serial: 5,
            at: "t".into(),
        }];
        assert!(matches!(
            fold(&mut s, &recs, "j"),
            Err(JournalError::Ahead { .. })
        ));
    }

    #[tokio::test]
    async fn writer_makes_records_durable_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json.journal");
        let state = State::new();
        let w = Writer::create(&path, &state, "t".into()).unwrap();
        let w = std::sync::Arc::new(w);
        let mut handles = Vec::new();
        for i in 0..50 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.append(&created(&format!("t{i}"), "id", "h")).await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let recs = read(&path).unwrap();
        assert_eq!(recs.len(), 51);
        assert!(matches!(recs[0], Record::Open { .. }));
    }
}
