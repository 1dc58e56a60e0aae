//! The sled backend: floe's embedded default (DESIGN §2 "Durability"). The only module
//! that knows sled.
//!
//! Trees: `objects` (hash -> bytes), `refs` (name -> record), `reflog` (sequence number ->
//! entry), `reflog_by_ref` (name, 0x00, sequence number -> nothing), `meta` (key -> value)
//! and `state` (the reflog counter). A ref move is one sled transaction over refs, reflog,
//! its index, meta and state, so the CAS, its reflog entry and the idempotency record are
//! all or nothing.
//!
//! Durability (group commit): a write lands in sled (pending) and takes a ticket; one
//! durability thread gathers every waiting ticket, runs sled's `flush` (which uses
//! `sync_file_range`, not a device flush) and then an `fdatasync` of the `db` file, marks
//! every ticket it covered durable and wakes the writers, who only then report success.
//! Until its move is durable, a ref shows its previous record in the durable view (an
//! overlay under the same lock as the moves), so no response shows a head a crash could
//! lose; writers read the pending view and chain on each other's heads. A failed flush or
//! fdatasync poisons the store: every later call fails, and nothing is retried.
//!
//! The store is created with an 8 MiB segment, so every item up to 2 MiB (a quarter of a
//! segment) is written inline in the log that the flush syncs, never as a separate blob
//! file (which sled does not fsync); values are at most `VALUE_BYTES_MAX` (64 KiB).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::backend::{
    Backend, BackendError, BackendResult, CasOutcome, RefRecord, RefUpdate, RefView, ReflogEntry,
};
use crate::encoding::DecodeError;
use crate::hash::Hash;
use crate::name::RefName;
use crate::records::{decode_entry, decode_record, encode_entry, encode_record};

/// sled's segment size: items up to a quarter of it stay inline in the fsynced log.
pub const SLED_SEGMENT_BYTES: usize = 8 * 1024 * 1024;

// sled 0.34.7's `snapshot_after_ops` is deprecated and "does nothing for now": sled
// snapshots on its own schedule. Recovery of 100,000 commits measured 72-142 ms with it
// (BENCHMARKS.md, issue 3), so there is nothing to set.

const STATE_REFLOG_SEQ: &[u8] = b"reflog-seq";

/// What the durability thread does, in order, for a test hook: the barrier-order test
/// checks that every acknowledgement follows the completion of a sync that began after
/// the acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityEvent {
    /// A write (a ref move, a meta write) is in sled, not yet durable.
    Written {
        ticket: u64,
    },
    /// A flush + fdatasync began; it covers every write up to `upto`.
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
}

/// Observes the durability thread; may inject a failed fdatasync. For tests only.
pub trait DurabilityHook: Send + Sync + std::fmt::Debug {
    /// Called in the order the events happen (under the durability lock).
    fn event(&self, event: DurabilityEvent);

    /// An error to report instead of the next fdatasync's outcome.
    fn sync_fault(&self) -> Option<String> {
        None
    }
}

#[derive(Debug)]
pub struct SledBackend {
    inner: Arc<Inner>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
pub struct Inner {
    db: sled::Db,
    /// The `db` file sled writes its log to; fdatasync'ed after each flush.
    db_file: File,
    objects: sled::Tree,
    refs: sled::Tree,
    reflog: sled::Tree,
    reflog_by_ref: sled::Tree,
    meta: sled::Tree,
    state: sled::Tree,
    durability: Mutex<Durable>,
    /// Mirrors `Durable::poisoned`, so that object and meta reads (the hot path) check it
    /// without taking the lock ref moves hold during their transaction.
    poisoned: AtomicBool,
    /// Wakes the durability thread when a write is waiting.
    flusher_wake: Condvar,
    /// Wakes writers when a sync completes or the store is poisoned.
    writers_wake: Condvar,
    hook: Option<Arc<dyn DurabilityHook>>,
    /// Bulk-load mode: no flushes until `flush()` (fixtures only).
    bulk: bool,
    path: PathBuf,
    /// Held (locked) for as long as the store is open.
    _lock: File,
}

/// The durability thread's state, behind one lock.
#[derive(Debug, Default)]
struct Durable {
    /// Tickets handed out: one per write, in the order the writes completed in sled.
    written: u64,
    /// Every write with a ticket up to here is on the device.
    durable: u64,
    poisoned: Option<String>,
    stop: bool,
    /// Refs with moves not durable yet: what the durable view shows meanwhile, and the
    /// pending moves in order, so that each sync advances the view to the newest move it
    /// covers (a ref that keeps moving still shows every acknowledged move).
    undurable: HashMap<RefName, Undurable>,
    /// Reflog entries not durable yet, oldest first: (ticket, reflog seq). Reflog reads
    /// stop before the first, so the reflog never shows a move that a crash could undo.
    undurable_reflog: VecDeque<(u64, u64)>,
}

/// One ref's durable view while some of its moves await a sync.
#[derive(Debug)]
struct Undurable {
    /// The record the durable view shows (`None`: the ref does not durably exist).
    durable: Option<RefRecord>,
    /// Moves not durable yet, oldest first: (ticket, the record after the move).
    pending: VecDeque<(u64, Option<RefRecord>)>,
}

impl Durable {
    /// Advances every ref's durable view to the newest of its moves with a ticket up to
    /// `upto`, and forgets refs with nothing pending.
    fn made_durable(&mut self, upto: u64) {
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
    fn reflog_horizon(&self) -> u64 {
        self.undurable_reflog
            .front()
            .map_or(u64::MAX, |&(_, seq)| seq)
    }
}

impl std::ops::Deref for SledBackend {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl SledBackend {
    /// Opens (or creates) a store in `dir`.
    pub fn open(dir: &Path) -> BackendResult<SledBackend> {
        SledBackend::open_with(dir, None)
    }

    /// Opens a store in bulk-load mode: writes are acknowledged without any flush, and
    /// nothing is durable until `flush()` (or a clean close). For test and benchmark
    /// fixtures only; `floe serve` never opens a store this way.
    pub fn open_bulk(dir: &Path) -> BackendResult<SledBackend> {
        SledBackend::open_inner(dir, None, true)
    }

    /// Opens a store with a durability hook (tests).
    pub fn open_with(
        dir: &Path,
        hook: Option<Arc<dyn DurabilityHook>>,
    ) -> BackendResult<SledBackend> {
        SledBackend::open_inner(dir, hook, false)
    }

    fn open_inner(
        dir: &Path,
        hook: Option<Arc<dyn DurabilityHook>>,
        bulk: bool,
    ) -> BackendResult<SledBackend> {
        // One process per store: take the lock before sled touches anything.
        std::fs::create_dir_all(dir)
            .map_err(|e| BackendError::read(format!("cannot create {}: {e}", dir.display())))?;
        let lock_path = dir.join("floe.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BackendError::read(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BackendError::read(format!(
                    "the store in {} is in use by another floe process (it holds {}); stop it or choose another data folder",
                    dir.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(BackendError::read(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )));
            }
        }
        discard_unfinished_snapshots(dir)?;
        let db = sled::Config::default()
            .path(dir)
            .segment_size(SLED_SEGMENT_BYTES)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                BackendError::read(format!(
                    "cannot open the sled store in {}: {e}",
                    dir.display()
                ))
            })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| BackendError::read(format!("cannot open sled tree {name}: {e}")))
        };
        let db_file = File::options()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .map_err(|e| {
                BackendError::read(format!("cannot open {}: {e}", dir.join("db").display()))
            })?;
        let inner = Arc::new(Inner {
            objects: tree("objects")?,
            refs: tree("refs")?,
            reflog: tree("reflog")?,
            reflog_by_ref: tree("reflog_by_ref")?,
            meta: tree("meta")?,
            state: tree("state")?,
            db_file,
            db,
            durability: Mutex::new(Durable::default()),
            poisoned: AtomicBool::new(false),
            flusher_wake: Condvar::new(),
            writers_wake: Condvar::new(),
            hook,
            bulk,
            path: dir.to_owned(),
            _lock: lock,
        });
        let worker = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("floe-durability".to_owned())
            .spawn(move || worker.run_flusher())
            .map_err(|e| BackendError::read(format!("cannot start the durability thread: {e}")))?;
        Ok(SledBackend {
            inner,
            flusher: Some(flusher),
        })
    }

    /// Makes everything written so far durable and waits for it (used at shutdown).
    pub fn flush(&self) -> BackendResult<()> {
        if self.bulk {
            self.check()?;
            return self
                .db
                .flush()
                .map_err(|e| format!("sled flush failed: {e}"))
                .and_then(|_| {
                    self.db_file
                        .sync_data()
                        .map_err(|e| format!("fdatasync failed: {e}"))
                })
                .map_err(|why| {
                    self.poison(&mut self.durability.lock(), why.clone());
                    BackendError::unknown(why)
                });
        }
        let ticket = {
            let mut d = self.durability.lock();
            check_poisoned(&d)?;
            self.ticket(&mut d)
        };
        self.wait_durable(ticket)
    }
}

impl Drop for SledBackend {
    fn drop(&mut self) {
        self.durability.lock().stop = true;
        self.flusher_wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

fn check_poisoned(d: &Durable) -> BackendResult<()> {
    match &d.poisoned {
        Some(why) => Err(BackendError::unknown(format!(
            "the store is poisoned ({why}); restart to recover what is durable"
        ))),
        None => Ok(()),
    }
}

impl Inner {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes sled uses on disk (for space-amplification reports).
    pub fn size_on_disk(&self) -> BackendResult<u64> {
        self.db
            .size_on_disk()
            .map_err(|e| BackendError::read(e.to_string()))
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    fn poison(&self, d: &mut Durable, why: String) {
        d.poisoned = Some(why);
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Reads sled under the durability lock (so every write the read can see has a
    /// ticket), then answers once those writes are durable: the read may see a write a
    /// crash could still undo.
    fn read_durable<T>(&self, read: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
        let (value, seen) = {
            let d = self.durability.lock();
            check_poisoned(&d)?;
            (read()?, d.written)
        };
        self.wait_for(seen)?;
        Ok(value)
    }

    /// Waits until every write up to `ticket` is durable (at once in bulk mode).
    fn wait_for(&self, ticket: u64) -> BackendResult<()> {
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

    /// The ref as sled has it now (the pending view).
    fn read_ref(&self, name: &RefName) -> BackendResult<Option<RefRecord>> {
        match self.refs.get(name.as_str()).map_err(read_err)? {
            Some(v) => Ok(Some(decode_record(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    fn emit(&self, event: DurabilityEvent) {
        if let Some(hook) = &self.hook {
            hook.event(event);
        }
    }

    /// Fails once the store is poisoned; takes the durability lock only then.
    fn check(&self) -> BackendResult<()> {
        if self.is_poisoned() {
            return check_poisoned(&self.durability.lock());
        }
        Ok(())
    }

    /// Hands out the ticket of a write that just completed in sled (under the lock).
    fn ticket(&self, d: &mut Durable) -> u64 {
        d.written += 1;
        let ticket = d.written;
        self.emit(DurabilityEvent::Written { ticket });
        if !self.bulk {
            self.flusher_wake.notify_one();
        }
        ticket
    }

    /// The durability thread: gathers every write waiting, makes them durable with one
    /// sled flush and one fdatasync of the `db` file, publishes the durable point, wakes
    /// the writers. A failure poisons the store and ends the thread: nothing is retried.
    fn run_flusher(&self) {
        loop {
            let upto = {
                let mut d = self.durability.lock();
                while d.written == d.durable && !d.stop {
                    self.flusher_wake.wait(&mut d);
                }
                if d.written == d.durable {
                    return;
                }
                self.emit(DurabilityEvent::SyncStarted { upto: d.written });
                d.written
            };
            let result = self
                .db
                .flush()
                .map_err(|e| format!("sled flush failed: {e}"))
                .and_then(|_| {
                    self.db_file
                        .sync_data()
                        .map_err(|e| format!("fdatasync of the db file failed: {e}"))
                })
                .and_then(|()| match self.hook.as_ref().and_then(|h| h.sync_fault()) {
                    Some(fault) => Err(fault),
                    None => Ok(()),
                });
            let mut d = self.durability.lock();
            match result {
                Ok(()) => {
                    d.durable = upto;
                    d.made_durable(upto);
                    while d.undurable_reflog.front().is_some_and(|&(t, _)| t <= upto) {
                        d.undurable_reflog.pop_front();
                    }
                    self.emit(DurabilityEvent::SyncCompleted { upto });
                    self.writers_wake.notify_all();
                }
                Err(why) => {
                    self.poison(&mut d, why);
                    self.writers_wake.notify_all();
                    return;
                }
            }
        }
    }
}

fn read_err(e: sled::Error) -> BackendError {
    BackendError::read(format!("sled read failed: {e}"))
}

fn write_err(e: sled::Error) -> BackendError {
    BackendError::unknown(format!("sled write failed: {e}"))
}

fn corrupt(e: DecodeError) -> BackendError {
    BackendError::read(format!("a stored record is damaged: {e}"))
}

/// Removes the snapshot files sled was still writing when its process died.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it to
/// `snap.<lsn>`, removing the older snapshot only after the rename. But on open it reads
/// the greatest `snap.*` name, which is the unfinished `.generating` file when one is
/// left: a SIGKILL in the middle of that write makes the store refuse to open ("Read
/// corrupted data at file offset None"; spacejam/sled#1527). Such a file is never the
/// only record of anything: the previous snapshot is still in place, and the log it
/// summarises is replayed from that snapshot's position, as sled does with no snapshot.
fn discard_unfinished_snapshots(dir: &Path) -> BackendResult<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BackendError::read(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| {
                BackendError::read(format!(
                    "cannot remove the unfinished sled snapshot {}: {e}",
                    entry.path().display()
                ))
            })?;
        }
    }
    Ok(())
}

/// Why a ref move's transaction wrote nothing.
enum Refused {
    Mismatch(Option<RefRecord>),
    ClaimLost,
    Corrupt(DecodeError),
}

fn by_ref_key(name: &RefName, seq: u64) -> Vec<u8> {
    let mut k = name.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Backend for SledBackend {
    fn reads_from_memory(&self) -> bool {
        true
    }

    fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()> {
        self.check()?;
        let mut batch = sled::Batch::default();
        for (h, bytes) in objects {
            batch.insert(h.as_bytes().as_slice(), bytes.as_ref());
        }
        // Objects are written once and named by their hash: rewriting one is a no-op, and
        // the next ref move's flush makes them durable before anything refers to them.
        self.objects.apply_batch(batch).map_err(write_err)
    }

    fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>> {
        self.check()?;
        Ok(self
            .objects
            .get(hash.as_bytes())
            .map_err(read_err)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan_objects(&self, from: &Hash, limit: usize) -> BackendResult<Vec<Hash>> {
        self.check()?;
        let mut out = Vec::new();
        for item in self.objects.range(from.as_bytes().as_slice()..).take(limit) {
            let (k, _) = item.map_err(read_err)?;
            let mut h = [0u8; 32];
            if k.len() == 32 {
                h.copy_from_slice(&k);
                out.push(Hash::from_bytes(h));
            }
        }
        Ok(out)
    }

    fn get_ref(&self, name: &RefName, view: RefView) -> BackendResult<Option<RefRecord>> {
        // Read sled under the durability lock, so no move lands between the overlay check
        // and the read.
        let d = self.durability.lock();
        check_poisoned(&d)?;
        if view == RefView::Durable
            && let Some(u) = d.undurable.get(name)
        {
            return Ok(u.durable.clone());
        }
        self.read_ref(name)
    }

    fn list_refs(
        &self,
        after: Option<&RefName>,
        limit: usize,
        view: RefView,
    ) -> BackendResult<Vec<(RefName, RefRecord)>> {
        let d = self.durability.lock();
        check_poisoned(&d)?;
        let overlay: Vec<(&RefName, &Option<RefRecord>)> = match view {
            RefView::Durable => d
                .undurable
                .iter()
                .filter(|(n, _)| after.is_none_or(|a| *n > a))
                .map(|(n, u)| (n, &u.durable))
                .collect(),
            RefView::Pending => Vec::new(),
        };
        // Read enough that hiding the not-yet-durable refs cannot shorten a full page.
        let fetch = limit.saturating_add(overlay.len());
        let lower: Bound<&[u8]> = match after {
            Some(a) => Bound::Excluded(a.as_str().as_bytes()),
            None => Bound::Unbounded,
        };
        let mut page: BTreeMap<RefName, RefRecord> = BTreeMap::new();
        for item in self
            .refs
            .range::<&[u8], _>((lower, Bound::Unbounded))
            .take(fetch)
        {
            let (k, v) = item.map_err(read_err)?;
            let name = std::str::from_utf8(&k)
                .ok()
                .and_then(|n| RefName::parse(n).ok())
                .ok_or_else(|| BackendError::read("a stored ref name is damaged"))?;
            page.insert(name, decode_record(&v).map_err(corrupt)?);
        }
        let exhausted = page.len() < fetch;
        let last = page.keys().next_back().cloned();
        for (name, durable) in overlay {
            if !exhausted && last.as_ref().is_some_and(|l| name > l) {
                continue;
            }
            match durable {
                Some(r) => page.insert(name.clone(), r.clone()),
                None => page.remove(name),
            };
        }
        Ok(page.into_iter().take(limit).collect())
    }

    fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
        // The durability lock is held across the transaction: a durable reader never sees
        // the move before the overlay hides it, and tickets follow the order of moves.
        let mut d = self.durability.lock();
        check_poisoned(&d)?;
        let prior_durable = match d.undurable.contains_key(&update.name) {
            true => None,
            false => Some(self.read_ref(&update.name)?),
        };
        let name = update.name.as_str().as_bytes();
        let new_record = update.new.as_ref().map(encode_record);
        let result = (
            &self.refs,
            &self.reflog,
            &self.reflog_by_ref,
            &self.meta,
            &self.state,
        )
            .transaction(|(refs, reflog, by_ref, meta, state)| {
                if let Some((key, value)) = update.meta.as_ref().and_then(|m| m.claim.as_ref())
                    && meta.get(key.as_ref())?.as_deref() != Some(value.as_ref())
                {
                    return Err(ConflictableTransactionError::Abort(Refused::ClaimLost));
                }
                let current = refs.get(name)?;
                let current =
                    match current {
                        Some(v) => Some(decode_record(&v).map_err(|e| {
                            ConflictableTransactionError::Abort(Refused::Corrupt(e))
                        })?),
                        None => None,
                    };
                if current.as_ref().map(|r| r.head) != update.expected {
                    return Err(ConflictableTransactionError::Abort(Refused::Mismatch(
                        current,
                    )));
                }
                match &new_record {
                    Some(r) => refs.insert(name, r.as_slice())?,
                    None => refs.remove(name)?,
                };
                let seq = match state.get(STATE_REFLOG_SEQ)? {
                    Some(v) if v.len() == 8 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&v);
                        u64::from_be_bytes(b)
                    }
                    _ => 0,
                } + 1;
                state.insert(STATE_REFLOG_SEQ, &seq.to_be_bytes())?;
                let entry = ReflogEntry {
                    seq,
                    ..update.reflog.clone()
                };
                reflog.insert(&seq.to_be_bytes(), encode_entry(&entry))?;
                by_ref.insert(by_ref_key(&update.name, seq), &[])?;
                if let Some(m) = &update.meta {
                    if let Some((key, _)) = &m.claim {
                        meta.remove(key.as_ref())?;
                    }
                    meta.insert(m.key.as_ref(), m.value.as_ref())?;
                }
                Ok(seq)
            });
        match result {
            Ok(seq) => {
                let ticket = self.ticket(&mut d);
                if !self.bulk {
                    d.undurable
                        .entry(update.name.clone())
                        .or_insert_with(|| Undurable {
                            durable: prior_durable.flatten(),
                            pending: VecDeque::new(),
                        })
                        .pending
                        .push_back((ticket, update.new.clone()));
                    d.undurable_reflog.push_back((ticket, seq));
                }
                Ok(CasOutcome::Applied { seq, ticket })
            }
            Err(TransactionError::Abort(Refused::Mismatch(current))) => {
                Ok(CasOutcome::Mismatch { current })
            }
            Err(TransactionError::Abort(Refused::ClaimLost)) => Ok(CasOutcome::ClaimLost),
            Err(TransactionError::Abort(Refused::Corrupt(e))) => Err(corrupt(e)),
            Err(TransactionError::Storage(e)) => Err(write_err(e)),
        }
    }

    fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> BackendResult<Vec<ReflogEntry>> {
        let horizon = {
            let d = self.durability.lock();
            check_poisoned(&d)?;
            d.reflog_horizon()
        };
        // Entries at or past the horizon are not durable: a reader never sees them.
        let before = before.map_or(horizon, |b| b.min(horizon));
        let mut out = Vec::new();
        match name {
            None => {
                let upper = Bound::Excluded(before.to_be_bytes());
                for item in self
                    .reflog
                    .range::<[u8; 8], _>((Bound::Unbounded, upper))
                    .rev()
                    .take(limit)
                {
                    let (_, v) = item.map_err(read_err)?;
                    out.push(decode_entry(&v).map_err(corrupt)?);
                }
            }
            Some(name) => {
                let lower = by_ref_key(name, 0);
                let upper = by_ref_key(name, before);
                for item in self.reflog_by_ref.range(lower..upper).rev().take(limit) {
                    let (k, _) = item.map_err(read_err)?;
                    let seq = &k[k.len() - 8..];
                    let v =
                        self.reflog.get(seq).map_err(read_err)?.ok_or_else(|| {
                            BackendError::read("a reflog index entry has no entry")
                        })?;
                    out.push(decode_entry(&v).map_err(corrupt)?);
                }
            }
        }
        Ok(out)
    }

    fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>> {
        let value = self.read_durable(|| self.meta.get(key).map_err(read_err))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()> {
        let ticket = {
            let mut d = self.durability.lock();
            check_poisoned(&d)?;
            self.meta.insert(key, value).map_err(write_err)?;
            self.ticket(&mut d)
        };
        self.wait_durable(ticket)
    }

    fn wait_ref_durable(&self, name: &RefName, head: Option<&Hash>) -> BackendResult<()> {
        let ticket = {
            // A head that is durable already needs no wait, even on a store poisoned since.
            let d = self.durability.lock();
            let Some(u) = d.undurable.get(name) else {
                return Ok(());
            };
            let newest = u
                .pending
                .iter()
                .rev()
                .find(|(_, r)| head.is_none_or(|h| r.as_ref().is_some_and(|r| r.head == *h)));
            match newest {
                Some((t, _)) => *t,
                None => return Ok(()),
            }
        };
        self.wait_durable(ticket)
    }

    fn wait_durable(&self, ticket: u64) -> BackendResult<()> {
        self.wait_for(ticket)?;
        if !self.bulk {
            self.emit(DurabilityEvent::Acknowledged { ticket });
        }
        Ok(())
    }

    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool> {
        let ticket = {
            let mut d = self.durability.lock();
            check_poisoned(&d)?;
            let swapped = self
                .meta
                .compare_and_swap(key, expected, new)
                .map_err(write_err)?;
            if swapped.is_err() {
                return Ok(false);
            }
            self.ticket(&mut d)
        };
        self.wait_durable(ticket)?;
        Ok(true)
    }

    fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> BackendResult<Vec<(Bytes, Bytes)>> {
        let lower: Bound<&[u8]> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.read_durable(|| {
            let mut out = Vec::new();
            for item in self.meta.range::<&[u8], _>((lower, Bound::Unbounded)) {
                let (k, v) = item.map_err(read_err)?;
                if !k.starts_with(prefix) || out.len() == limit {
                    break;
                }
                out.push((Bytes::copy_from_slice(&k), Bytes::copy_from_slice(&v)));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process killed while sled wrote a snapshot leaves `snap.<lsn>.generating`
    /// half-written; the store still opens, with everything acknowledged before.
    #[test]
    fn an_unfinished_sled_snapshot_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().unwrap();
        let object = Bytes::from_static(b"an object");
        let hash = Hash::of(&object);
        {
            let backend = SledBackend::open(dir.path()).unwrap();
            backend.put_objects(&[(hash, object.clone())]).unwrap();
            backend.meta_put(b"k", b"v").unwrap();
        }
        // Greater than any real snapshot name, so sled would read it first.
        let unfinished = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"half a snap").unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        assert_eq!(backend.get_object(&hash).unwrap(), Some(object));
        assert_eq!(backend.meta_get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(!unfinished.exists());
    }
}
