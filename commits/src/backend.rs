//! The storage contract every backend implements (DESIGN §2 "Backend trait").
//!
//! Deliberately small: write-once objects, refs moved only by compare-and-swap together
//! with their reflog entry and an optional idempotency record in one atomic write, and a
//! keyspace outside history (run records, tokens, idempotency lookups). Everything else —
//! the commit rule, merges, validation — lives in the store, above the trait, so every
//! backend gets the same semantics from the same code.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::clock::Clock;
use crate::hash::Hash;
use crate::name::{RefKind, RefName};

/// What a ref points at, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRecord {
    pub kind: RefKind,
    pub head: Hash,
    pub created_by: String,
    pub created_at_ms: i64,
    pub attributes: BTreeMap<String, String>,
}

/// Why a ref moved; recorded in the reflog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefOperation {
    Create,
    Delete,
    Commit,
    Merge,
    CherryPick,
    Revert,
    Assign,
}

impl RefOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            RefOperation::Create => "create",
            RefOperation::Delete => "delete",
            RefOperation::Commit => "commit",
            RefOperation::Merge => "merge",
            RefOperation::CherryPick => "cherry-pick",
            RefOperation::Revert => "revert",
            RefOperation::Assign => "assign",
        }
    }
}

/// One move of one ref: the audit log and the undo list. `seq` is assigned by the backend,
/// increasing across all refs in the order the moves applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflogEntry {
    pub seq: u64,
    pub ref_name: RefName,
    pub kind: RefKind,
    pub old: Option<Hash>,
    pub new: Option<Hash>,
    pub operation: RefOperation,
    pub principal: String,
    /// Server time (from the store's clock), never a client's authored time.
    pub at_ms: i64,
    pub properties: BTreeMap<String, String>,
}

/// A write to the meta keyspace carried by a ref move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaWrite {
    pub key: Bytes,
    pub value: Bytes,
    /// A claim the move consumes, `(key, value)`: the move applies only while that key
    /// holds exactly that value, and removes it in the same atomic write. This fences a
    /// takeover: a writer whose claim another server took over (after its lease) writes
    /// nothing.
    pub claim: Option<(Bytes, Bytes)>,
}

/// One compare-and-swap of a ref.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub name: RefName,
    /// The head the ref must have now; `None`: the ref must not exist.
    pub expected: Option<Hash>,
    /// The new record; `None` deletes the ref.
    pub new: Option<RefRecord>,
    /// The reflog entry written in the same atomic write (`seq` is ignored and assigned).
    pub reflog: ReflogEntry,
    /// An idempotency record written in the same atomic write.
    pub meta: Option<MetaWrite>,
    /// A meta value the move depends on, `(key, value)`: the move applies only while that
    /// key holds exactly that value, which it leaves as it is (a run's landing depends on
    /// its owner token, which a server settling the run removes first).
    pub fence: Option<(Bytes, Bytes)>,
    /// Objects the move refers to, written in the same atomic write whether or not the
    /// move applies: given only to a backend that `writes_objects_with_moves` (the store
    /// writes them before the move for the others; a backend given some writes them
    /// first).
    pub objects: Vec<(Hash, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The ref moved (pending); the reflog entry got this sequence number. The move is
    /// durable once `Backend::wait_durable(ticket)` returns.
    Applied { seq: u64, ticket: u64 },
    /// Nothing was written: the ref's head is not the expected one.
    Mismatch { current: Option<RefRecord> },
    /// Nothing was written: the meta write's claim no longer holds.
    ClaimLost,
    /// Nothing was written: the fence's key no longer holds its value.
    FenceLost,
}

/// Which head a read sees. Writers chain on pending heads; every response to a client
/// shows durable heads. A backend without deferred durability has one view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefView {
    Pending,
    Durable,
}

/// A backend failure. `outcome_unknown` is true when a write may or may not have applied
/// (the storage failed midway): callers must not report success, nor a clean rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
    pub outcome_unknown: bool,
    /// The storage could not be reached (a database down, no connection free): nothing
    /// was written and the same call may well succeed later. Not set for damaged data.
    pub unavailable: bool,
}

impl BackendError {
    pub fn read(message: impl Into<String>) -> BackendError {
        BackendError {
            message: message.into(),
            outcome_unknown: false,
            unavailable: false,
        }
    }

    pub fn unknown(message: impl Into<String>) -> BackendError {
        BackendError {
            outcome_unknown: true,
            ..BackendError::read(message)
        }
    }

    /// The storage is out of reach; nothing was written.
    pub fn unavailable(message: impl Into<String>) -> BackendError {
        BackendError {
            unavailable: true,
            ..BackendError::read(message)
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// The storage's clock (`shared_ms`) read between two readings of a server's own
/// (`sent_ms`, `received_ms`), all ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    pub sent_ms: i64,
    pub shared_ms: i64,
    pub received_ms: i64,
}

/// What `Backend::read_refs_async` answers: the records in the order asked.
pub type RefsFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = BackendResult<Vec<Option<RefRecord>>>> + Send + 'static>,
>;

/// One gauge a backend reports: a Prometheus name, its help text and its value now. A
/// name ending in `_total` is a counter (a value that only grows while the backend is
/// open).
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

/// Storage for one floe store. Implementations: in-memory (tests, models), sled (the
/// embedded default) and PostgreSQL (several servers on one database). All methods are safe to call concurrently.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Writes objects that are not there yet; an object's bytes never change.
    fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()>;

    fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>>;

    /// Several objects, in the order asked (`None` where one is absent). A remote backend
    /// reads them in one round trip; the default asks one at a time.
    fn get_objects(&self, hashes: &[Hash]) -> BackendResult<Vec<Option<Bytes>>> {
        hashes.iter().map(|h| self.get_object(h)).collect()
    }

    /// Up to `limit` object hashes `>= from`, in order (hash-prefix resolution).
    fn scan_objects(&self, from: &Hash, limit: usize) -> BackendResult<Vec<Hash>>;

    fn get_ref(&self, name: &RefName, view: RefView) -> BackendResult<Option<RefRecord>>;

    /// Up to `limit` refs with names `> after`, in name order.
    fn list_refs(
        &self,
        after: Option<&RefName>,
        limit: usize,
        view: RefView,
    ) -> BackendResult<Vec<(RefName, RefRecord)>>;

    /// Moves a ref if its head is the expected one, with its reflog entry and the optional
    /// meta write, all or nothing. The move is pending: readers of the durable view see it
    /// once it is durable, and a caller acknowledges it only after `wait_durable`.
    fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome>;

    /// Blocks until the write that returned `ticket` is on the device. A backend whose
    /// writes are durable when they return does nothing.
    fn wait_durable(&self, ticket: u64) -> BackendResult<()> {
        let _ = ticket;
        Ok(())
    }

    /// Blocks until a ref's moves are durable: with `head`, the newest pending move that
    /// set the ref to it (at once if none is pending: it is durable already); without, the
    /// ref's newest move. An answer computed from a pending head (a write that changed
    /// nothing, a dry run, a rejection) waits here, so it names only durable heads.
    fn wait_ref_durable(&self, name: &RefName, head: Option<&Hash>) -> BackendResult<()> {
        let _ = (name, head);
        Ok(())
    }

    /// Up to `limit` reflog entries with `seq < before` (newest first), of one ref or all.
    fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> BackendResult<Vec<ReflogEntry>>;

    fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>>;

    fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()>;

    /// Sets (or with `new = None`, removes) a key if its value is `expected` (`None`:
    /// absent). Returns whether it applied.
    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool>;

    /// Whether reads are answered from this process's memory (sled's page cache, the
    /// memory backend), so that a server may run them on its async workers instead of
    /// handing them to a blocking thread. False (the default) for a backend whose reads
    /// wait on the network (PostgreSQL).
    fn reads_from_memory(&self) -> bool {
        false
    }

    /// Reads the durable records of refs (`None` where a ref is absent) without blocking
    /// the calling thread: a future an async server awaits before it runs a read inline
    /// with the records pinned (`crate::inline::run_inline_with`). `None` (the default)
    /// where the backend has no such path; one whose reads come from memory needs none.
    fn read_refs_async(&self, names: Vec<RefName>) -> Option<RefsFuture> {
        let _ = names;
        None
    }

    /// Whether several processes may use this storage at once (PostgreSQL): then what
    /// correctness needs between requests (idempotency claims, run ownership) must live
    /// in meta, not in one process.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether a ref move writes the objects it refers to in its own atomic write
    /// (`RefUpdate::objects`; PostgreSQL: one transaction, one flush of the log, instead of
    /// one for the objects and one for the move). False by default: the store writes a
    /// commit's objects first.
    fn writes_objects_with_moves(&self) -> bool {
        false
    }

    /// A reading of the storage's own clock (PostgreSQL's), when several servers share it,
    /// between two readings of `local` taken as near the statement as the backend can (not
    /// around a wait for a connection): leases one server writes are judged by another on
    /// this one clock, not on two machines' (`Store::sync_lease_clock`). None by default.
    fn shared_clock(&self, local: Arc<dyn Clock>) -> BackendResult<Option<ClockSample>> {
        let _ = local;
        Ok(None)
    }

    /// The backend's own gauges for `/metrics` (name, help, value), e.g. a connection
    /// pool's; none by default.
    fn gauges(&self) -> Vec<Gauge> {
        Vec::new()
    }

    /// Up to `limit` entries whose keys start with `prefix` and are `> after`, in order.
    fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> BackendResult<Vec<(Bytes, Bytes)>>;
}
