//! The emulator's task table and its persistence.
//!
//! With `--data FILE`, every change is appended to FILE as a JSON line before it is
//! answered (so a killed emulator loses nothing it acknowledged), and the file is
//! compacted atomically (temp file, fsync, rename) when the emulator starts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A stored task: the body fields plus what the service adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTask {
    /// Creation order, for stable listing.
    pub seq: u64,
    pub fields: Map<String, Value>,
}

impl StoredTask {
    pub fn id(&self) -> &str {
        self.fields
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// Whether the task is being scheduled (must be stopped before update or delete).
    pub fn scheduling(&self) -> bool {
        self.fields
            .get("schedule_config")
            .and_then(|s| s.get("enabled"))
            .and_then(Value::as_i64)
            == Some(3)
    }
    /// The `schedule_config.job_id` the service assigned.
    pub fn job_id(&self) -> Option<i64> {
        self.fields
            .get("schedule_config")
            .and_then(|s| s.get("job_id"))
            .and_then(Value::as_i64)
    }
    /// Whether the task's schedule is paused (`enabled: 5`, after a stop).
    pub fn paused(&self) -> bool {
        self.fields
            .get("schedule_config")
            .and_then(|s| s.get("enabled"))
            .and_then(Value::as_i64)
            == Some(5)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum LogRecord {
    Put { task: StoredTask },
    Delete { id: String },
}

/// All tasks, by ID, with an optional append log.
pub struct Tasks {
    by_id: BTreeMap<String, StoredTask>,
    next_seq: u64,
    log: Option<(PathBuf, File)>,
}

impl Tasks {
    /// An empty, in-memory table.
    pub fn in_memory() -> Tasks {
        Tasks {
            by_id: BTreeMap::new(),
            next_seq: 1,
            log: None,
        }
    }

    /// Opens (or creates) the data file, replays it and compacts it.
    pub fn open(path: &Path) -> std::io::Result<Tasks> {
        let mut t = Tasks::in_memory();
        match std::fs::read(path) {
            Ok(bytes) => {
                let lines: Vec<&[u8]> = bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                for (i, line) in lines.iter().enumerate() {
                    match serde_json::from_slice::<LogRecord>(line) {
                        Ok(LogRecord::Put { task }) => {
                            t.next_seq = t.next_seq.max(task.seq + 1);
                            t.by_id.insert(task.id().to_string(), task);
                        }
                        Ok(LogRecord::Delete { id }) => {
                            t.by_id.remove(&id);
                        }
                        Err(_) if i + 1 == lines.len() => {
                            tracing::warn!(file = %path.display(), "ignoring a last record cut short")
                        }
                        Err(e) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("{}: line {}: {e}", path.display(), i + 1),
                            ));
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut snapshot = Vec::new();
        for task in t.ordered() {
            snapshot.extend(
                serde_json::to_vec(&LogRecord::Put { task: task.clone() }).unwrap_or_default(),
            );
            snapshot.push(b'\n');
        }
        crate::fsutil::write_atomic(path, &snapshot)?;
        let file = OpenOptions::new().append(true).open(path)?;
        t.log = Some((path.to_path_buf(), file));
        Ok(t)
    }

    fn append(&mut self, rec: &LogRecord) {
        if let Some((path, file)) = &mut self.log {
            let mut line = serde_json::to_vec(rec).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                tracing::error!(file = %path.display(), error = %e, "cannot persist the emulator's data");
            }
        }
    }

    /// Inserts a new task with `fields` (which hold its `id`).
    pub fn insert(&mut self, fields: Map<String, Value>) -> StoredTask {
        let task = StoredTask {
            seq: self.next_seq,
            fields,
        };
        self.next_seq += 1;
        self.append(&LogRecord::Put { task: task.clone() });
        self.by_id.insert(task.id().to_string(), task.clone());
        task
    }

    /// Replaces a task's fields.
    pub fn update(&mut self, id: &str, fields: Map<String, Value>) -> bool {
        let Some(existing) = self.by_id.get_mut(id) else {
            return false;
        };
        existing.fields = fields;
        let rec = LogRecord::Put {
            task: existing.clone(),
        };
        self.append(&rec);
        true
    }

    pub fn remove(&mut self, id: &str) -> bool {
        if self.by_id.remove(id).is_some() {
            self.append(&LogRecord::Delete { id: id.to_string() });
            true
        } else {
            false
        }
    }

    pub fn get(&self, id: &str) -> Option<&StoredTask> {
        self.by_id.get(id)
    }

    /// Every task in creation order.
    pub fn ordered(&self) -> Vec<&StoredTask> {
        let mut v: Vec<&StoredTask> = self.by_id.values().collect();
        v.sort_by_key(|t| t.seq);
        v
    }

    /// The creation order the next inserted task gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(id: &str, name: &str) -> Map<String, Value> {
        serde_json::json!({"id": id, "name": name})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn persists_across_reopen_and_tolerates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emu.json");
        {
            let mut t = Tasks::open(&p).unwrap();
            t.insert(fields("a", "one"));
            t.insert(fields("b", "two"));
            t.update("a", fields("a", "uno"));
            t.remove("b");
        }
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"op\":\"put\",\"ta").unwrap();
        let t = Tasks::open(&p).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("a").unwrap().name(), "uno");
    }
}
