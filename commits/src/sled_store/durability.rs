//! The durability of the sled backend: the durability thread (one log append and one
//! `fdatasync` per group of writes), the checkpoint thread (sled flushed to the device,
//! then the log segments it covers removed), recovery, the durable views' bookkeeping
//! and the waits. A child of `sled_store`, sharing its private `Inner` state.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{Inner, STATE_WAL_LSN, SledBackend, read_err, wal};
use crate::backend::{BackendError, BackendResult, RefRecord};
use crate::deferred::{self, DurableSignal, Scope};
use crate::name::RefName;

/// What the durability thread does, in order, for a test hook: the barrier-order test
/// checks that every acknowledgement follows the completion of a sync that began after
/// the acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityEvent {
    /// A write (a ref move, a meta write) is in sled, not yet durable.
    Written {
        ticket: u64,
    },
    /// A log append + fdatasync began; it covers every write up to `upto`.
    SyncStarted {
        upto: u64,
    },
    SyncCompleted {
        upto: u64,
    },
    /// A writer was told its write applied (or a reader that waited for `ticket` answered).
    Acknowledged {
        ticket: u64,
    },
    /// A caller began waiting for the sync that covers `ticket` (tests synchronise on it).
    Waiting {
        ticket: u64,
    },
    /// sled was flushed to the device (a checkpoint's flush, recovery's, a close's): what
    /// its files hold now is what a power cut leaves of the index until the next one.
    IndexFlushed,
    /// Log segments that the index covers were removed.
    SegmentsRemoved,
}

/// Observes the durability thread; may inject a failed fdatasync. For tests only.
pub trait DurabilityHook: Send + Sync + std::fmt::Debug {
    /// Called in the order the events happen (under the durability lock; `IndexFlushed`
    /// and `SegmentsRemoved` on the thread that flushes, outside it).
    fn event(&self, event: DurabilityEvent);

    /// An error to report instead of the next fdatasync's outcome.
    fn sync_fault(&self) -> Option<String> {
        None
    }
}

/// The durability thread's state, behind one lock.
#[derive(Debug, Default)]
pub(super) struct Durable {
    /// Tickets handed out: one per write, in the order the writes completed in sled.
    pub(super) written: u64,
    /// Every write with a ticket up to here is on the device.
    pub(super) durable: u64,
    pub(super) poisoned: Option<String>,
    pub(super) stop: bool,
    /// Refs with moves not durable yet: what the durable view shows meanwhile, and the
    /// pending moves in order, so that each sync advances the view to the newest move it
    /// covers (a ref that keeps moving still shows every acknowledged move).
    pub(super) undurable: HashMap<RefName, Undurable>,
    /// Reflog entries not durable yet, oldest first: (ticket, reflog seq). Reflog reads
    /// stop before the first, so the reflog never shows a move that a crash could undo.
    pub(super) undurable_reflog: VecDeque<(u64, u64)>,
    /// The lsn the next write-ahead log record gets.
    pub(super) next_lsn: u64,
    /// Records not yet handed to the durability thread, encoded.
    pub(super) log: Vec<u8>,
    /// Checkpoints asked for (`SledBackend::checkpoint`), begun (the segment sealed) and
    /// completed (sled flushed, sealed segments removed).
    pub(super) checkpoints_asked: u64,
    pub(super) checkpoints_sealed: u64,
    pub(super) checkpoints_done: u64,
    /// Segments whose records sled holds in memory, waiting for a checkpoint's flush.
    pub(super) sealed: Vec<PathBuf>,
}

/// Async callers awaiting a ticket (`deferred`), apart from the durability lock (which a
/// ref move holds across its sled transaction: an async worker must not wait for it).
#[derive(Debug, Default)]
pub(super) struct Wakers {
    /// Every write with a ticket up to here is durable (`Durable::durable`, mirrored).
    pub(super) durable: std::sync::atomic::AtomicU64,
    /// Woken once their ticket is durable or the store is poisoned.
    pub(super) waiting: Mutex<Vec<(u64, Waker)>>,
}

impl Wakers {
    /// Publishes `upto` as durable and wakes the callers it covers (all, when poisoned:
    /// `None`), outside the lock.
    pub(super) fn publish(&self, upto: Option<u64>) {
        if let Some(upto) = upto {
            self.durable.store(upto, Ordering::SeqCst);
        }
        let done: Vec<Waker> = {
            let mut waiting = self.waiting.lock();
            let (done, left) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|(ticket, _)| upto.is_none_or(|upto| *ticket <= upto));
            *waiting = left;
            done.into_iter().map(|(_, waker)| waker).collect()
        };
        done.into_iter().for_each(Waker::wake);
    }
}

/// One ref's durable view while some of its moves await a sync.
#[derive(Debug)]
pub(super) struct Undurable {
    /// The record the durable view shows (`None`: the ref does not durably exist).
    pub(super) durable: Option<RefRecord>,
    /// Moves not durable yet, oldest first: (ticket, the record after the move).
    pub(super) pending: VecDeque<(u64, Option<RefRecord>)>,
}

impl Durable {
    /// Advances every ref's durable view to the newest of its moves with a ticket up to
    /// `upto`, and forgets refs with nothing pending.
    pub(super) fn made_durable(&mut self, upto: u64) {
        self.undurable.retain(|_, u| {
            while let Some((ticket, _)) = u.pending.front() {
                if *ticket > upto {
                    break;
                }
                if let Some((_, record)) = u.pending.pop_front() {
                    u.durable = record;
                }
            }
            !u.pending.is_empty()
        });
    }

    /// Reflog entries from this seq on are not durable yet.
    pub(super) fn reflog_horizon(&self) -> u64 {
        self.undurable_reflog
            .front()
            .map_or(u64::MAX, |&(_, seq)| seq)
    }
}

impl SledBackend {
    /// Flushes sled to the device and removes the log segments it then covers, waiting
    /// for it (tests; the checkpoint thread does this on its own once a segment is full).
    pub fn checkpoint(&self) -> BackendResult<()> {
        if self.bulk {
            return self.flush();
        }
        let mut d = self.durability.lock();
        check_poisoned(&d)?;
        d.checkpoints_asked += 1;
        let asked = d.checkpoints_asked;
        self.flusher_wake.notify_one();
        while d.checkpoints_done < asked {
            check_poisoned(&d)?;
            self.writers_wake.wait(&mut d);
        }
        Ok(())
    }

    /// Flushes sled to the device without touching the log (tests: an index that is
    /// ahead of what the log made durable, as the page cache may leave it).
    #[doc(hidden)]
    pub fn flush_index_only(&self) -> BackendResult<()> {
        self.flush_index().map_err(BackendError::unknown)
    }

    /// Makes everything written so far durable and waits for it (used at shutdown).
    pub fn flush(&self) -> BackendResult<()> {
        if self.bulk {
            self.check()?;
            return self.flush_index().map_err(|why| {
                self.poison(&mut self.durability.lock(), why.clone());
                BackendError::unknown(why)
            });
        }
        let ticket = {
            let mut d = self.durability.lock();
            check_poisoned(&d)?;
            self.ticket(&mut d)
        };
        self.wait_now(ticket)
    }

    /// Waits until every write up to `ticket` is durable: on this thread, or, when it runs
    /// its store work in a deferral scope, in the caller's `Pending` (`deferred`).
    /// `acknowledge`: the write is being reported applied.
    pub(super) fn wait_for(&self, ticket: u64, acknowledge: bool) -> BackendResult<()> {
        if self.bulk {
            return self.check();
        }
        if deferred::scope().is_some() {
            let d = self.durability.lock();
            if d.durable < ticket {
                check_poisoned(&d)?;
                self.defer(ticket, acknowledge);
                return Ok(());
            }
        } else {
            self.wait_now(ticket)?;
        }
        if acknowledge {
            self.emit(DurabilityEvent::Acknowledged { ticket });
        }
        Ok(())
    }

    /// Notes, in this thread's deferral scope, a wait for `ticket` (not durable yet; the
    /// caller holds the durability lock, so that `Waiting` is in order).
    pub(super) fn defer(&self, ticket: u64, acknowledge: bool) {
        self.emit(DurabilityEvent::Waiting { ticket });
        let signal: Arc<dyn DurableSignal> = self.inner.clone();
        deferred::defer(&signal, ticket, acknowledge);
    }

    /// The ticket a reader in a write scope waits for to see `view` as pending state (the
    /// newest pending move, or `None`: nothing of it is pending): a write's answer reads
    /// back its own moves before they are durable, and is sent after they are.
    /// `newest` is asked only in a write scope (it walks the pending refs).
    pub(super) fn pending_for_writer(
        d: &Durable,
        newest: impl FnOnce() -> Option<u64>,
    ) -> Option<u64> {
        if deferred::scope() != Some(Scope::Write) {
            return None;
        }
        newest().filter(|t| *t > d.durable)
    }

    /// Reads sled under the durability lock (so every write the read can see has a
    /// ticket), then answers once those writes are durable: the read may see a write a
    /// crash could still undo.
    pub(super) fn read_durable<T>(
        &self,
        read: impl FnOnce() -> BackendResult<T>,
    ) -> BackendResult<T> {
        let (value, seen) = {
            let d = self.durability.lock();
            check_poisoned(&d)?;
            (read()?, d.written)
        };
        self.wait_for(seen, false)?;
        Ok(value)
    }
}

impl DurableSignal for Inner {
    fn poll_durable(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<BackendResult<()>> {
        // The durable point is published before the waiters are taken, both under
        // `waiting`'s lock on this side: a waker registered here is either seen by the
        // next `publish` or not needed.
        let mut waiting = self.wakers.waiting.lock();
        if self.wakers.durable.load(Ordering::SeqCst) >= ticket {
            return Poll::Ready(Ok(()));
        }
        if self.poisoned.load(Ordering::SeqCst) {
            drop(waiting);
            // A sync that completed just before the poison may not be published yet.
            let d = self.durability.lock();
            if d.durable >= ticket {
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(check_poisoned(&d));
        }
        if !waiting
            .iter()
            .any(|(t, w)| *t == ticket && w.will_wake(cx.waker()))
        {
            waiting.push((ticket, cx.waker().clone()));
        }
        Poll::Pending
    }

    fn wait_durable_now(&self, ticket: u64) -> BackendResult<()> {
        self.wait_now(ticket)
    }

    fn acknowledged(&self, tickets: &[u64]) {
        for &ticket in tickets {
            self.emit(DurabilityEvent::Acknowledged { ticket });
        }
    }
}

impl Drop for SledBackend {
    /// Makes every write durable, then checkpoints once, so the next open has nothing to
    /// replay (unless the store is poisoned: then what is on the device stays as it is).
    fn drop(&mut self) {
        self.durability.lock().stop = true;
        self.flusher_wake.notify_one();
        self.checkpoint_wake.notify_one();
        for thread in [self.flusher.take(), self.checkpointer.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
        if self.bulk || self.is_poisoned() {
            return;
        }
        let dir = wal::dir(&self.path);
        let closed = self.flush_index().and_then(|()| {
            drop(self.segment.lock().take());
            self.remove_segments(&wal::segments(&dir)?)
        });
        if let Err(why) = closed {
            tracing::warn!("closing the store left its write-ahead log to replay: {why}");
        }
    }
}

pub(super) fn check_poisoned(d: &Durable) -> BackendResult<()> {
    match &d.poisoned {
        Some(why) => Err(BackendError::unknown(format!(
            "the store is poisoned ({why}); restart to recover what is durable"
        ))),
        None => Ok(()),
    }
}

impl Inner {
    pub(super) fn poison(&self, d: &mut Durable, why: String) {
        d.poisoned = Some(why);
        self.poisoned.store(true, Ordering::SeqCst);
        self.wakers.publish(None);
    }

    /// Waits on this thread until every write up to `ticket` is durable (at once in bulk
    /// mode).
    pub(super) fn wait_now(&self, ticket: u64) -> BackendResult<()> {
        if self.bulk {
            return self.check();
        }
        let mut d = self.durability.lock();
        if d.durable < ticket && d.poisoned.is_none() {
            self.emit(DurabilityEvent::Waiting { ticket });
        }
        loop {
            if d.durable >= ticket {
                return Ok(());
            }
            check_poisoned(&d)?;
            self.writers_wake.wait(&mut d);
        }
    }

    pub(super) fn emit(&self, event: DurabilityEvent) {
        if let Some(hook) = &self.hook {
            hook.event(event);
        }
    }

    /// Fails once the store is poisoned; takes the durability lock only then.
    pub(super) fn check(&self) -> BackendResult<()> {
        if self.is_poisoned() {
            return check_poisoned(&self.durability.lock());
        }
        Ok(())
    }

    /// Hands out the ticket of a write that just completed in sled (under the lock).
    pub(super) fn ticket(&self, d: &mut Durable) -> u64 {
        d.written += 1;
        let ticket = d.written;
        self.emit(DurabilityEvent::Written { ticket });
        if !self.bulk {
            self.flusher_wake.notify_one();
        }
        ticket
    }

    /// The durability thread: takes every record waiting, appends them to the log with one
    /// write and one fdatasync, publishes the durable point, wakes the writers. A full
    /// segment (or a checkpoint asked for) is sealed between groups and handed to the
    /// checkpoint thread. A failure poisons the store and ends the thread: nothing is
    /// retried.
    pub(super) fn run_flusher(&self) {
        loop {
            let (upto, group, last_lsn, seal) = {
                let mut d = self.durability.lock();
                // Records of objects alone wake nobody: the ref move that refers to them
                // follows, and they go with its group.
                let idle = |d: &Durable| {
                    d.written == d.durable && d.checkpoints_asked == d.checkpoints_sealed
                };
                while idle(&d) && d.log.len() < wal::OBJECTS_RECORD_BYTES && !d.stop {
                    self.flusher_wake.wait(&mut d);
                }
                if idle(&d) && d.stop {
                    return;
                }
                let tickets = d.written > d.durable;
                if tickets {
                    self.emit(DurabilityEvent::SyncStarted { upto: d.written });
                }
                let seal =
                    (d.checkpoints_asked > d.checkpoints_sealed).then_some(d.checkpoints_asked);
                (
                    tickets.then_some(d.written),
                    std::mem::take(&mut d.log),
                    d.next_lsn - 1,
                    seal,
                )
            };
            let mut segment = self.segment.lock();
            let result = match segment.as_mut() {
                _ if group.is_empty() => Ok(()),
                Some(segment) => segment.append_durably(&group),
                None => Err("the write-ahead log is closed".to_owned()),
            }
            .and_then(|()| match self.hook.as_ref().and_then(|h| h.sync_fault()) {
                Some(fault) => Err(fault),
                None => Ok(()),
            });
            // Every record up to `last_lsn` is in sled and in the segments written so far:
            // a checkpoint that flushes sled from now on covers them all.
            let sealed = match (result, segment.as_mut()) {
                (Err(why), _) => Err(why),
                (Ok(()), Some(current))
                    if (seal.is_some() || current.is_full()) && !current.is_empty() =>
                {
                    wal::Segment::create(&wal::dir(&self.path), last_lsn + 1, self.segment_bytes)
                        .map(|next| Some(std::mem::replace(current, next).path))
                }
                (Ok(()), _) => Ok(None),
            };
            drop(segment);
            let mut published = None;
            let mut d = self.durability.lock();
            match sealed {
                Ok(sealed) => {
                    if let Some(upto) = upto {
                        d.durable = upto;
                        d.made_durable(upto);
                        published = Some(upto);
                        while d.undurable_reflog.front().is_some_and(|&(t, _)| t <= upto) {
                            d.undurable_reflog.pop_front();
                        }
                        self.emit(DurabilityEvent::SyncCompleted { upto });
                        self.writers_wake.notify_all();
                    }
                    d.sealed.extend(sealed);
                    if let Some(asked) = seal {
                        d.checkpoints_sealed = asked;
                    }
                    if !d.sealed.is_empty() || seal.is_some() {
                        self.checkpoint_wake.notify_one();
                    }
                    drop(d);
                    if published.is_some() {
                        self.wakers.publish(published);
                    }
                }
                Err(why) => {
                    self.poison(&mut d, why);
                    self.writers_wake.notify_all();
                    self.checkpoint_wake.notify_one();
                    return;
                }
            }
        }
    }

    /// The checkpoint thread: for every sealed segment, flushes sled to the device (its
    /// records were in sled before the segment was sealed) and only then removes them.
    pub(super) fn run_checkpointer(&self) {
        loop {
            let (sealed, covers) = {
                let mut d = self.durability.lock();
                while d.sealed.is_empty()
                    && d.checkpoints_done == d.checkpoints_sealed
                    && !d.stop
                    && d.poisoned.is_none()
                {
                    self.checkpoint_wake.wait(&mut d);
                }
                if d.poisoned.is_some()
                    || (d.stop && d.sealed.is_empty() && d.checkpoints_done == d.checkpoints_sealed)
                {
                    return;
                }
                (std::mem::take(&mut d.sealed), d.checkpoints_sealed)
            };
            let result = self
                .flush_index()
                .and_then(|()| self.remove_segments(&sealed));
            let mut d = self.durability.lock();
            if let Err(why) = result {
                self.poison(&mut d, why);
                self.writers_wake.notify_all();
                return;
            }
            d.checkpoints_done = covers;
            self.writers_wake.notify_all();
        }
    }
}

impl Inner {
    /// Replays the log records sled does not hold yet (those after its `wal-lsn`), then
    /// checkpoints: sled is flushed and the replayed segments removed. Returns the lsn the
    /// next record gets.
    ///
    /// The flush runs even with no log to replay: after a killed process, sled may read
    /// back writes that only the page cache holds (never synced, never acknowledged), and
    /// what this process serves from now on must not rest on them. The durability model
    /// (`recovery-without-flush`) finds the lost head without it.
    pub(super) fn recover(&self) -> BackendResult<u64> {
        let dir = wal::dir(&self.path);
        let segments = wal::segments(&dir).map_err(BackendError::read)?;
        let held = match self.state.get(STATE_WAL_LSN).map_err(read_err)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| BackendError::read("the stored wal-lsn is damaged"))?,
            ),
            None => 0,
        };
        let records = wal::read(&dir, held).map_err(BackendError::read)?;
        let trees = [
            &self.objects,
            &self.refs,
            &self.reflog,
            &self.reflog_by_ref,
            &self.meta,
            &self.state,
        ];
        let mut last = held;
        for record in &records {
            // Objects are named by their hash: an older record is replayed too, harmlessly.
            if record.lsn <= held && !record.only_objects() {
                continue;
            }
            trees
                .transaction(|views| {
                    for op in &record.ops {
                        let view = &views[op.tree as usize];
                        match &op.value {
                            Some(v) => view.insert(op.key.as_slice(), v.as_slice())?,
                            None => view.remove(op.key.as_slice())?,
                        };
                    }
                    if record.lsn > held {
                        views[wal::TreeId::State as usize]
                            .insert(STATE_WAL_LSN, &record.lsn.to_be_bytes())?;
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|e| BackendError::read(format!("replaying the write-ahead log: {e:?}")))?;
            last = last.max(record.lsn);
        }
        self.flush_index().map_err(BackendError::read)?;
        self.remove_segments(&segments)
            .map_err(BackendError::read)?;
        Ok(last + 1)
    }

    /// sled's flush (its log, with `sync_file_range`) and an `fdatasync` of its file: after
    /// this, every write sled held when it began is on the device.
    pub(super) fn flush_index(&self) -> Result<(), String> {
        self.db
            .flush()
            .map_err(|e| format!("sled flush failed: {e}"))?;
        self.db_file
            .sync_data()
            .map_err(|e| format!("fdatasync of the db file failed: {e}"))?;
        self.emit(DurabilityEvent::IndexFlushed);
        Ok(())
    }

    /// Removes log segments the index holds on the device, durably.
    fn remove_segments(&self, paths: &[std::path::PathBuf]) -> Result<(), String> {
        if paths.is_empty() {
            return Ok(());
        }
        wal::remove(&wal::dir(&self.path), paths)?;
        self.emit(DurabilityEvent::SegmentsRemoved);
        Ok(())
    }

    /// Logs a write sled just made with `lsn` (under the durability lock, in lsn order).
    pub(super) fn logged(&self, d: &mut Durable, lsn: u64, ops: &[wal::OpRef<'_>]) {
        debug_assert_eq!(lsn, d.next_lsn);
        if !self.bulk {
            // Encoded whole before it joins the buffer: a record cut short there would read
            // back as the log's end and hide every record after it.
            let mut record = Vec::with_capacity(wal::encoded_len(ops));
            wal::encode(&mut record, lsn, ops);
            d.log.extend_from_slice(&record);
        }
        d.next_lsn += 1;
    }
}
