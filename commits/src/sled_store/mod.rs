//! The sled backend: floe's embedded default (DESIGN §2 "Durability"). The only module
//! that knows sled.
//!
//! Trees: `objects` (hash -> bytes), `refs` (name -> record), `reflog` (sequence number ->
//! entry), `reflog_by_ref` (name, 0x00, sequence number -> nothing), `meta` (key -> value)
//! and `state` (the reflog counter). A ref move is one sled transaction over refs, reflog,
//! its index, meta and state, so the CAS, its reflog entry and the idempotency record are
//! all or nothing.
//!
//! Durability (group commit over a write-ahead log, `wal.rs`): a write lands in sled
//! (pending), appends its record to the log's buffer and takes a ticket; one durability
//! thread gathers every waiting record, appends them to the log with one `write` and one
//! `fdatasync` (a single device round trip), marks every ticket it covered durable and
//! wakes the writers, who only then report success. sled is flushed to the device in the
//! background by a checkpoint thread, which then deletes the log segments it covers;
//! opening the store replays the records sled does not hold yet.
//! Until its move is durable, a ref shows its previous record in the durable view (an
//! overlay under the same lock as the moves), so no response shows a head a crash could
//! lose; writers read the pending view and chain on each other's heads. A failed flush or
//! fdatasync, or a failed checkpoint, poisons the store: every later call fails, and
//! nothing is retried.
//!
//! sled still writes each transaction's io buffer with a `sync_file_range` that waits for
//! the device (twice per transaction, on sled's io threads: 145 µs of CPU per branch
//! create in a profile of floe serve). Its recovery and its reuse of segments rely on that
//! ordering of device writes: turning it off (`temporary`) would let a power cut after a
//! checkpoint lose pages the log no longer holds, so it stays.
//!
//! The store is created with an 8 MiB segment, so every item up to 2 MiB (a quarter of a
//! segment) is written inline in the log that a checkpoint's flush syncs, never as a
//! separate blob file (which sled does not fsync); values are at most `VALUE_BYTES_MAX`
//! (64 KiB).

mod durability;
mod wal;

pub use durability::{DurabilityEvent, DurabilityHook};
use durability::{Durable, Undurable, check_poisoned};

use std::collections::{BTreeMap, VecDeque};
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
/// The lsn of the last write-ahead log record sled holds, set by every write with it.
const STATE_WAL_LSN: &[u8] = b"wal-lsn";

#[derive(Debug)]
pub struct SledBackend {
    inner: Arc<Inner>,
    flusher: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
pub struct Inner {
    db: sled::Db,
    /// The `db` file sled writes its log to; fdatasync'ed after each checkpoint's flush.
    db_file: File,
    /// The log segment the durability thread appends to (only it and `Drop` lock this).
    segment: Mutex<Option<wal::Segment>>,
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
    /// Async callers awaiting durability, and the durable point they read.
    wakers: durability::Wakers,
    /// Wakes the durability thread when a write is waiting.
    flusher_wake: Condvar,
    /// Wakes the checkpoint thread when a segment is sealed or it must stop.
    checkpoint_wake: Condvar,
    /// Wakes writers when a sync completes or the store is poisoned.
    writers_wake: Condvar,
    hook: Option<Arc<dyn DurabilityHook>>,
    /// Bulk-load mode: no flushes until `flush()` (fixtures only).
    bulk: bool,
    /// The size of a log segment (`wal::SEGMENT_BYTES`; smaller in tests).
    segment_bytes: u64,
    path: PathBuf,
    /// Held (locked) for as long as the store is open.
    _lock: File,
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
        SledBackend::open_inner(dir, None, true, wal::SEGMENT_BYTES)
    }

    /// Opens a store whose log segments are `segment_bytes` long, so that tests see
    /// segments sealed and checkpointed after a few writes.
    #[doc(hidden)]
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> BackendResult<SledBackend> {
        SledBackend::open_inner(dir, None, false, segment_bytes)
    }

    /// Opens a store with a durability hook (tests).
    pub fn open_with(
        dir: &Path,
        hook: Option<Arc<dyn DurabilityHook>>,
    ) -> BackendResult<SledBackend> {
        SledBackend::open_inner(dir, hook, false, wal::SEGMENT_BYTES)
    }

    fn open_inner(
        dir: &Path,
        hook: Option<Arc<dyn DurabilityHook>>,
        bulk: bool,
        segment_bytes: u64,
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
            segment: Mutex::new(None),
            durability: Mutex::new(Durable::default()),
            poisoned: AtomicBool::new(false),
            wakers: durability::Wakers::default(),
            flusher_wake: Condvar::new(),
            checkpoint_wake: Condvar::new(),
            writers_wake: Condvar::new(),
            hook,
            bulk,
            segment_bytes,
            path: dir.to_owned(),
            _lock: lock,
        });
        // sled writes its `conf` once, at creation, and never syncs it: a power cut soon
        // after would leave a store sled cannot open. Synced here, then sled's files (and,
        // once created, `wal/`) are named durably in the store's folder.
        let conf = dir.join("conf");
        File::open(&conf)
            .and_then(|f| f.sync_all())
            .map_err(|e| BackendError::read(format!("cannot sync {}: {e}", conf.display())))?;
        wal::sync_dir(dir).map_err(BackendError::read)?;
        let next_lsn = inner.recover()?;
        inner.durability.lock().next_lsn = next_lsn;
        if !bulk {
            *inner.segment.lock() = Some(
                wal::Segment::create(&wal::dir(dir), next_lsn, segment_bytes)
                    .map_err(BackendError::read)?,
            );
        }
        let spawn = |name: &str, work: fn(&Inner)| {
            let worker = inner.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || work(&worker))
                .map_err(|e| BackendError::read(format!("cannot start the {name} thread: {e}")))
        };
        Ok(SledBackend {
            flusher: Some(spawn("floe-durability", Inner::run_flusher)?),
            checkpointer: Some(spawn("floe-checkpoint", Inner::run_checkpointer)?),
            inner,
        })
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

    /// The ref as sled has it now (the pending view).
    fn read_ref(&self, name: &RefName) -> BackendResult<Option<RefRecord>> {
        match self.refs.get(name.as_str()).map_err(read_err)? {
            Some(v) => Ok(Some(decode_record(&v).map_err(corrupt)?)),
            None => Ok(None),
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
pub(super) fn discard_unfinished_snapshots(dir: &Path) -> BackendResult<()> {
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
    FenceLost,
    Corrupt(DecodeError),
}

fn meta_op<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> wal::OpRef<'a> {
    wal::Op {
        tree: wal::TreeId::Meta,
        key,
        value,
    }
}

impl Inner {
    /// Writes one meta key with the log's marker in one sled transaction: `decide` gets
    /// the current value and returns the new one (`Some(None)` removes the key), or
    /// `None` to write nothing. Returns whether it wrote. Called under the durability lock.
    fn meta_write<'v>(
        &self,
        lsn: u64,
        key: &[u8],
        decide: impl Fn(Option<&[u8]>) -> Option<Option<&'v [u8]>>,
    ) -> BackendResult<bool> {
        let result = (&self.meta, &self.state).transaction(|(meta, state)| {
            let current = meta.get(key)?;
            let Some(new) = decide(current.as_deref()) else {
                return Ok(false);
            };
            match new {
                Some(v) => meta.insert(key, v)?,
                None => meta.remove(key)?,
            };
            state.insert(STATE_WAL_LSN, &lsn.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        match result {
            Ok(wrote) => Ok(wrote),
            Err(TransactionError::Storage(e)) => Err(write_err(e)),
            Err(TransactionError::Abort(())) => Ok(false),
        }
    }
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
        // the next ref move's sync makes their records durable before anything refers to
        // them. sled holds them before their records are logged, so a checkpoint that
        // covers the records covers the objects.
        let ops: Vec<wal::OpRef<'_>> = objects
            .iter()
            .map(|(h, bytes)| wal::Op {
                tree: wal::TreeId::Objects,
                key: h.as_bytes().as_slice(),
                value: Some(bytes.as_ref()),
            })
            .collect();
        // Under the lock from the sled write to the record: no ref move can refer to these
        // objects (having found them in sled) and be synced before their record is logged.
        let mut d = self.durability.lock();
        check_poisoned(&d)?;
        self.objects.apply_batch(batch).map_err(write_err)?;
        let mut start = 0;
        while start < ops.len() {
            // One record per few MiB of objects, so no record grows with the batch.
            let mut end = start + 1;
            let mut bytes = wal::encoded_len(&ops[start..end]);
            while end < ops.len() && bytes < wal::OBJECTS_RECORD_BYTES {
                bytes += wal::encoded_len(&ops[end..end + 1]);
                end += 1;
            }
            let lsn = d.next_lsn;
            self.logged(&mut d, lsn, &ops[start..end]);
            start = end;
        }
        // Objects wait for the ref move that refers to them, unless they pile up (a commit
        // that lost its race leaves its objects behind).
        if d.log.len() >= wal::OBJECTS_RECORD_BYTES && !self.bulk {
            self.flusher_wake.notify_one();
        }
        Ok(())
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
            let newest = || u.pending.back().map(|(t, _)| *t);
            let Some(ticket) = SledBackend::pending_for_writer(&d, newest) else {
                return Ok(u.durable.clone());
            };
            self.defer(ticket, false);
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
        let newest = || {
            if view != RefView::Durable {
                return None;
            }
            let after = |n: &&RefName| after.is_none_or(|a| *n > a);
            let pending = d.undurable.iter().filter(|(n, _)| after(n));
            let newest = pending
                .filter_map(|(_, u)| u.pending.back())
                .map(|(t, _)| *t);
            newest.max()
        };
        let view = match SledBackend::pending_for_writer(&d, newest) {
            Some(ticket) => {
                self.defer(ticket, false);
                RefView::Pending
            }
            None => view,
        };
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
        if !update.objects.is_empty() {
            self.put_objects(&update.objects)?;
        }
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
        let lsn = d.next_lsn;
        let result = (
            &self.refs,
            &self.reflog,
            &self.reflog_by_ref,
            &self.meta,
            &self.state,
        )
            .transaction(|(refs, reflog, by_ref, meta, state)| {
                if let Some((key, value)) = &update.fence
                    && meta.get(key.as_ref())?.as_deref() != Some(value.as_ref())
                {
                    return Err(ConflictableTransactionError::Abort(Refused::FenceLost));
                }
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
                state.insert(STATE_WAL_LSN, &lsn.to_be_bytes())?;
                let entry = encode_entry(&ReflogEntry {
                    seq,
                    ..update.reflog.clone()
                });
                reflog.insert(&seq.to_be_bytes(), entry.as_slice())?;
                by_ref.insert(by_ref_key(&update.name, seq), &[])?;
                if let Some(m) = &update.meta {
                    if let Some((key, _)) = &m.claim {
                        meta.remove(key.as_ref())?;
                    }
                    meta.insert(m.key.as_ref(), m.value.as_ref())?;
                }
                Ok((seq, entry))
            });
        match result {
            Ok((seq, entry)) => {
                let seq_key = seq.to_be_bytes();
                let lsn_value = lsn.to_be_bytes();
                let by_ref = by_ref_key(&update.name, seq);
                let op = |tree, key, value| wal::Op { tree, key, value };
                let mut ops = vec![
                    op(wal::TreeId::Refs, name, new_record.as_deref()),
                    op(wal::TreeId::State, STATE_REFLOG_SEQ, Some(&seq_key[..])),
                    op(wal::TreeId::State, STATE_WAL_LSN, Some(&lsn_value[..])),
                    op(wal::TreeId::Reflog, &seq_key[..], Some(entry.as_slice())),
                    op(wal::TreeId::ReflogByRef, by_ref.as_slice(), Some(&[][..])),
                ];
                if let Some(m) = &update.meta {
                    if let Some((key, _)) = &m.claim {
                        ops.push(op(wal::TreeId::Meta, key.as_ref(), None));
                    }
                    ops.push(op(
                        wal::TreeId::Meta,
                        m.key.as_ref(),
                        Some(m.value.as_ref()),
                    ));
                }
                self.logged(&mut d, lsn, &ops);
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
            Err(TransactionError::Abort(Refused::FenceLost)) => Ok(CasOutcome::FenceLost),
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
            let newest = || d.undurable_reflog.back().map(|(t, _)| *t);
            match SledBackend::pending_for_writer(&d, newest) {
                Some(ticket) => {
                    self.defer(ticket, false);
                    u64::MAX
                }
                None => d.reflog_horizon(),
            }
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
            let lsn = d.next_lsn;
            self.meta_write(lsn, key, |_| Some(Some(value)))?;
            self.logged(&mut d, lsn, &[meta_op(key, Some(value))]);
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
        self.wait_for(ticket, true)
    }

    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool> {
        let (ticket, swapped) = {
            let mut d = self.durability.lock();
            check_poisoned(&d)?;
            let lsn = d.next_lsn;
            let swapped =
                self.meta_write(lsn, key, |current| (current == expected).then_some(new))?;
            if swapped {
                self.logged(&mut d, lsn, &[meta_op(key, new)]);
                (self.ticket(&mut d), true)
            } else {
                (d.written, false)
            }
        };
        if swapped {
            self.wait_durable(ticket)?;
        } else {
            // The refusal rests on the value found, which may be a pending write's.
            self.wait_for(ticket, false)?;
        }
        Ok(swapped)
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
