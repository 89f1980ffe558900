//! `taskform state copy`: one state, journal folded in, from any location to any
//! other (a committed state file into PostgreSQL when a team moves, and back), under
//! both locks. The copy keeps the lineage and serial, so saved plans and journals still
//! know it, and a file copied to PostgreSQL and back is the same file, byte for byte.

use super::lock::Holder;
use super::store::{StateStore, StoreError};
use std::time::Duration;

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub lineage: String,
    pub serial: u64,
    pub tasks: usize,
    pub in_doubt: usize,
    /// The destination's state that was replaced (lineage, serial), if it held one.
    pub replaced: Option<(String, u64)>,
    /// The source was retired (`--move`): it holds a tombstone naming the destination.
    pub moved: bool,
}

/// Copies `src`'s state into `dst`. A destination holding another lineage, a newer
/// serial of the same lineage, or an unfinished journal is refused unless `force`
/// (a tombstone of a moved state is replaced). With `move_to` (the destination as the
/// tombstone names it: an absolute path, a URL without password), the source is then
/// retired: it holds a tombstone naming the destination (same lineage, next serial,
/// no task), so that a run against it is refused with where the state went, and two
/// live copies of one lineage never diverge.
pub fn copy(
    src: &dyn StateStore,
    dst: &dyn StateStore,
    me: &Holder,
    timeout: Option<Duration>,
    force: bool,
    move_to: Option<&str>,
) -> Result<Copied, StoreError> {
    if src.describe() == dst.describe() {
        return Err(StoreError::Refused(format!(
            "the source and the destination are the same state ({}); nothing was copied",
            src.describe()
        )));
    }
    let _src_lock = src.lock(me, timeout)?;
    let _dst_lock = dst.lock(me, timeout)?;
    let mut state = src.load()?;
    let empty = state.tasks.is_empty() && state.in_doubt.is_empty();
    if state.lineage.is_empty() && empty {
        return Err(StoreError::Refused(format!(
            "{} holds no state (nothing was ever applied with it); nothing was copied",
            src.describe()
        )));
    }
    if src.has_journal() || state.lineage.is_empty() {
        // An earlier run's journal, or a hand-written state without a lineage: write
        // the source first, so that both sides agree on what this serial holds.
        src.persist(&mut state)?;
    }
    let mut existing = dst.load_raw()?;
    if existing.moved.is_some() {
        // The tombstone of a state moved away from here: nothing to keep.
        existing = crate::state::State::new();
    }
    let replaced =
        (!existing.lineage.is_empty()).then(|| (existing.lineage.clone(), existing.serial));
    if !force {
        let refuse = |why: String| {
            Err(StoreError::Refused(format!(
                "{} {why}; nothing was copied. Pass --force to replace it",
                dst.describe()
            )))
        };
        if !existing.lineage.is_empty() && existing.lineage != state.lineage {
            return refuse(format!(
                "holds another state (lineage {}, serial {}, {} tasks), not a copy of {} (lineage {})",
                existing.lineage,
                existing.serial,
                existing.tasks.len(),
                src.describe(),
                state.lineage
            ));
        }
        if existing.lineage == state.lineage && existing.serial > state.serial {
            return refuse(format!(
                "is newer (serial {}) than {} (serial {})",
                existing.serial,
                src.describe(),
                state.serial
            ));
        }
        if dst.has_journal() {
            return refuse(
                "has the journal of an unfinished apply; run `taskform plan` or `apply` against it first to fold it in"
                    .to_string(),
            );
        }
    }
    dst.replace(&state)?;
    if let Some(to) = move_to {
        let mut tombstone = crate::state::State::new();
        tombstone.lineage = state.lineage.clone();
        tombstone.serial = state.serial + 1;
        tombstone.target = state.target.clone();
        tombstone.moved = Some(crate::state::MovedTo {
            to: to.to_string(),
            at: crate::clock::now_rfc3339(),
        });
        src.replace(&tombstone)?;
    }
    Ok(Copied {
        lineage: state.lineage.clone(),
        serial: state.serial,
        tasks: state.tasks.len(),
        in_doubt: state.in_doubt.len(),
        replaced,
        moved: move_to.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use crate::state::{LocalStore, State, TaskRecord};

    fn some_state() -> State {
        let mut s = State::new();
        s.tasks.insert(
            "a".into(),
            TaskRecord {
                task_id: "1".into(),
                hash: "sha256:x".into(),
                file: None,
                applied_at: None,
                body: None,
                superseded: vec![],
            },
        );
        s
    }

    #[test]
    fn copies_exactly_and_refuses_another_lineage_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let file = LocalStore::new(dir.path().join("s.json"));
        let mut s = some_state();
        file.persist(&mut s).unwrap();
        let before = std::fs::read(file.path()).unwrap();
        let me = Holder::this_process("state copy");
        let mem = MemoryStore::new();
        let c = copy(&file, &mem, &me, None, false, None).unwrap();
        assert_eq!((c.serial, c.tasks, c.replaced), (1, 1, None));
        std::fs::remove_file(file.path()).unwrap();
        copy(&mem, &file, &me, None, false, None).unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), before);

        let other = MemoryStore::new();
        other.persist(&mut some_state()).unwrap();
        let e = copy(&file, &other, &me, None, false, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds another state"), "{e}");
        let c = copy(&file, &other, &me, None, true, None).unwrap();
        assert!(c.replaced.is_some());
        assert_eq!(other.load().unwrap().lineage, s.lineage);
        let empty = LocalStore::new(dir.path().join("empty.json"));
        let e = copy(&empty, &other, &me, None, false, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no state"), "{e}");
        let e = copy(&file, &file, &me, None, true, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("are the same state"), "{e}");
        // A hand-written state without a lineage is given one, then copied.
        let old = LocalStore::new(dir.path().join("old.json"));
        std::fs::write(
            old.path(),
            r#"{"version": 1, "tasks": {"a": {"task_id": "1", "hash": "sha256:x"}}}"#,
        )
        .unwrap();
        let c = copy(&old, &MemoryStore::new(), &me, None, false, None).unwrap();
        assert!(!c.lineage.is_empty());
        assert_eq!((c.serial, c.tasks), (1, 1));
    }
}
