//! Durability hooks the sled tests share: a recorder of the durability thread's events
//! (optionally failing the n-th fdatasync), a hook that holds the thread at its next
//! sync, and the barrier-order checker.
#![allow(dead_code)] // each test crate uses its own part

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use parking_lot::Mutex;

/// Records every event in the order the durability thread emits them; optionally fails
/// the n-th fdatasync.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<DurabilityEvent>>,
    pub syncs: AtomicUsize,
    pub fail_sync: Option<usize>,
}

impl DurabilityHook for Recorder {
    fn event(&self, event: DurabilityEvent) {
        self.events.lock().push(event);
    }

    fn sync_fault(&self) -> Option<String> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        (Some(n) == self.fail_sync).then(|| "injected: fdatasync failed (EIO)".to_owned())
    }
}

/// Holds the durability thread at its next sync while closed, and tells the test when a
/// caller is waiting for a sync or has finished, so tests synchronise on events, never on
/// time. The thread is held in `sync_fault`, outside the durability lock (events are
/// emitted under it, where blocking would block readers too).
#[derive(Debug, Default)]
pub struct Held {
    state: Mutex<HeldState>,
    changed: parking_lot::Condvar,
}

#[derive(Debug, Default)]
pub struct HeldState {
    closed: bool,
    events: Vec<DurabilityEvent>,
    /// Callers that began waiting for a sync (`Waiting` events).
    waiting: usize,
    /// Threads spawned through `spawn` that returned.
    finished: usize,
    /// What the next sync reports instead of its outcome (`Held::fail_next`).
    fail: Option<String>,
}

impl DurabilityHook for Held {
    fn event(&self, event: DurabilityEvent) {
        let mut s = self.state.lock();
        if matches!(event, DurabilityEvent::Waiting { .. }) {
            s.waiting += 1;
        }
        s.events.push(event);
        self.changed.notify_all();
    }

    fn sync_fault(&self) -> Option<String> {
        let mut s = self.state.lock();
        while s.closed {
            self.changed.wait(&mut s);
        }
        s.fail.take()
    }
}

/// A thread started through `Held::spawn`.
pub struct Spawned<T> {
    handle: std::thread::JoinHandle<T>,
    /// `waiting` when it was spawned.
    waiting_before: usize,
    finished_before: usize,
}

impl<T> Spawned<T> {
    pub fn join(self) -> std::thread::Result<T> {
        self.handle.join()
    }
}

impl Held {
    pub fn close(&self) {
        self.state.lock().closed = true;
    }

    /// Makes the next sync fail with `why` (it poisons the store).
    pub fn fail_next(&self, why: &str) {
        self.state.lock().fail = Some(why.to_owned());
    }

    pub fn open(&self) {
        self.state.lock().closed = false;
        self.changed.notify_all();
    }

    pub fn events(&self) -> Vec<DurabilityEvent> {
        self.state.lock().events.clone()
    }

    /// Runs `f` on a thread of its own; one spawned thread at a time may be pending in
    /// `blocks`.
    pub fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Spawned<T> {
        let (waiting_before, finished_before) = {
            let s = self.state.lock();
            (s.waiting, s.finished)
        };
        let held = self.clone();
        let handle = std::thread::spawn(move || {
            let out = f();
            held.state.lock().finished += 1;
            held.changed.notify_all();
            out
        });
        Spawned {
            handle,
            waiting_before,
            finished_before,
        }
    }

    /// Whether the spawned thread ended up waiting for a sync (true) rather than returning
    /// while the sync is held (false). Decided by events, with no timing involved.
    pub fn blocks<T>(&self, t: &Spawned<T>) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.waiting > t.waiting_before {
                return true;
            }
            if s.finished > t.finished_before {
                return false;
            }
            self.changed.wait(&mut s);
        }
    }
}

/// Every acknowledgement follows the completion of a sync that began after its write.
/// Returns the first violation.
pub fn barrier_violation(events: &[DurabilityEvent]) -> Option<String> {
    let mut written_at: HashMap<u64, usize> = HashMap::new();
    let mut started_at: HashMap<u64, usize> = HashMap::new();
    // The syncs completed so far: (upto, position of its start).
    let mut completed: Vec<(u64, usize)> = Vec::new();
    let mut acked = 0;
    for (i, e) in events.iter().enumerate() {
        match *e {
            DurabilityEvent::Written { ticket } => {
                written_at.insert(ticket, i);
            }
            DurabilityEvent::SyncStarted { upto } => {
                started_at.insert(upto, i);
            }
            DurabilityEvent::SyncCompleted { upto } => match started_at.get(&upto) {
                Some(start) => completed.push((upto, *start)),
                None => return Some(format!("sync up to {upto} completed without starting")),
            },
            // The index's own flushes are not what acknowledges a write: the log's sync is.
            DurabilityEvent::Waiting { .. }
            | DurabilityEvent::IndexFlushed
            | DurabilityEvent::SegmentsRemoved => {}
            DurabilityEvent::Acknowledged { ticket } => {
                acked += 1;
                let Some(&written) = written_at.get(&ticket) else {
                    return Some(format!(
                        "ticket {ticket} acknowledged before it was written"
                    ));
                };
                let covered = completed
                    .iter()
                    .any(|(upto, start)| *upto >= ticket && *start > written);
                if !covered {
                    return Some(format!(
                        "ticket {ticket} acknowledged at event {i} without a completed sync that began after its write (event {written})"
                    ));
                }
            }
        }
    }
    (acked == 0).then(|| "nothing was acknowledged".to_owned())
}
