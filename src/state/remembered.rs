//! The state a store last read or wrote, kept for the next load of a long-running
//! process (the watcher, which holds the lock and loads at every reconcile).
//!
//! Each entry carries a token from the backend that changes whenever the stored state
//! does (the file's identity; the row's version in PostgreSQL); a load whose token
//! matches gets a copy instead of reading and parsing the whole state again.
//!
//! Copying 10,000 records is itself several milliseconds, on the path from a change
//! to its request. So once a store has served a copy (the process loads more than
//! once), the next copy is made ahead of time on a thread of its own, shortly after
//! each load and write (not at once: a reconcile that writes would make it useless,
//! and it would compete with the reconcile for the CPU), and the next load takes it.
//! A one-shot command never pays for that.

use super::State;
use std::sync::{Arc, Mutex};

/// How long after a load or write the next copy is made.
const AHEAD_AFTER: std::time::Duration = std::time::Duration::from_millis(300);

/// The state last read or written, with its backend's token.
pub struct Remembered<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

struct Slot<T> {
    last: Option<(T, Arc<State>)>,
    /// A copy of `last` (that very `Arc`: a token may repeat, say a file's size,
    /// time and reused inode) made ahead of time, for the next load.
    spare: Option<(Arc<State>, State)>,
    /// A copy was served: copies are made ahead of time from now on.
    served: bool,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Remembered {
            slot: Arc::new(Mutex::new(Slot {
                last: None,
                spare: None,
                served: false,
            })),
        }
    }
}

impl<T> std::fmt::Debug for Remembered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remembered")
    }
}

impl<T: Clone + PartialEq + Send + 'static> Remembered<T> {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing is known (a write is under way, or failed).
    pub fn forget(&self) {
        let mut s = self.slot();
        s.last = None;
        s.spare = None;
    }

    /// `state` is what the store holds under `token` now.
    pub fn remember(&self, token: T, state: &State) {
        let mut s = self.slot();
        s.last = Some((token, Arc::new(state.clone())));
        s.spare = None;
        if s.served {
            self.prepare(&s);
        }
    }

    /// The token of the state kept, if any.
    pub fn token(&self) -> Option<T> {
        self.slot().last.as_ref().map(|(t, _)| t.clone())
    }

    /// `f` of the state kept, if the store still holds it under `token` (no copy made).
    pub fn peek<R>(&self, token: &T, f: impl FnOnce(&State) -> R) -> Option<R> {
        let s = self.slot();
        let (known, last) = s.last.as_ref()?;
        (known == token).then(|| f(last))
    }

    /// A copy of the state, if the store still holds it under `token`.
    pub fn get(&self, token: &T) -> Option<State> {
        let mut s = self.slot();
        let (known, last) = s.last.as_ref()?;
        if known != token {
            return None;
        }
        let last = Arc::clone(last);
        let copy = match s.spare.take() {
            Some((of, spare)) if Arc::ptr_eq(&of, &last) => spare,
            _ => State::clone(&last),
        };
        s.served = true;
        self.prepare(&s);
        Some(copy)
    }

    /// Makes the next copy on a thread of its own.
    fn prepare(&self, s: &Slot<T>) {
        let Some((_, last)) = s.last.clone() else {
            return;
        };
        let slot = Arc::clone(&self.slot);
        let current = move |slot: &Mutex<Slot<T>>, of: &Arc<State>| {
            let s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.last.as_ref().is_some_and(|(_, l)| Arc::ptr_eq(l, of))
        };
        let spawned = std::thread::Builder::new()
            .name("state-copy".into())
            .spawn(move || {
                std::thread::sleep(AHEAD_AFTER);
                if !current(&slot, &last) {
                    return;
                }
                let copy = State::clone(&last);
                let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                // Only if it is still the state the store holds.
                if s.last.as_ref().is_some_and(|(_, l)| Arc::ptr_eq(l, &last)) {
                    s.spare = Some((last, copy));
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("no thread for copying the state ahead of time: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(serial: u64) -> State {
        let mut s = State::new();
        s.serial = serial;
        s
    }

    fn wait_for_spare(r: &Remembered<u32>) {
        for _ in 0..1000 {
            if r.slot().spare.is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("no copy was made ahead of time");
    }

    #[test]
    fn a_copy_only_under_the_same_token() {
        let r = Remembered::default();
        assert!(r.get(&1).is_none());
        r.remember(1, &state(5));
        assert_eq!(r.get(&1).unwrap().serial, 5);
        assert!(r.get(&2).is_none());
        r.forget();
        assert!(r.get(&1).is_none());
    }

    #[test]
    fn copies_are_made_ahead_once_one_was_served() {
        let r = Remembered::default();
        r.remember(1, &state(5));
        assert!(
            r.slot().spare.is_none(),
            "a one-shot load makes no spare copy"
        );
        let mut first = r.get(&1).unwrap();
        first.serial = 99; // the caller's copy is its own
        wait_for_spare(&r);
        assert_eq!(r.get(&1).unwrap().serial, 5);
        // A write: the spare of the old state is never served.
        r.remember(2, &state(6));
        wait_for_spare(&r);
        assert!(r.get(&1).is_none());
        assert_eq!(r.get(&2).unwrap().serial, 6);
    }
}
