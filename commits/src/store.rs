//! The `Store`: refs, the commit rule, and every read, over any `Backend`.
//!
//! A ref moves only by compare-and-swap through the backend, with its reflog entry in the
//! same atomic write. `commit` evaluates every expectation at the head it lands on and
//! retries at the new head when it loses a race (the automatic rebase); every other write
//! (merge, cherry-pick, revert, assign, delete) treats its expected head as strict.
//! Decoded nodes and commits are cached, and every commit seen enters the commit graph.
//!
//! Here: the store, its construction, its objects, and the per-ref sequencing and
//! durability every write shares (`sequencer`, `settle`). Refs and the writes that only
//! move one are in `store/refs.rs`, the commit rule and every landing in
//! `store/commit.rs`, the reads in `store/reads.rs`, the meta keyspace and idempotency
//! records in `store/meta.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{Backend, MetaWrite, RefOperation, RefRecord, ReflogEntry};
use crate::cache::ObjectCache;
use crate::clock::Clock;
use crate::content::{Content, ContentRef};
use crate::encoding::{ObjectKind, Reader, Writer};
use crate::error::{Conflict, ConflictKind, Expect, ReadError, StorageError, WriteError};
use crate::graph::{self, CommitGraph, GraphEntry, GraphSource, WalkError};
use crate::hash::{Hash, HashPrefix};
use crate::key::ContentKey;
use crate::limits::*;
use crate::name::{RefKind, RefName, RefSpec};
use crate::object::{Commit, CommitMeta, Parents};
use crate::tree::{self, NewNodes, Node, NodeSource, TreeError};
use crate::validate;

mod commit;
mod meta;
mod reads;
pub(crate) mod refs;

pub use crate::change::KeyChange;
pub(crate) use commit::{Landed, Landing};
pub(crate) use refs::{check_expected, contention, lost_race};

/// The branch every store starts with.
pub const DEFAULT_BRANCH: &str = "main";

/// Meta-keyspace prefix of idempotency records.
pub const IDEMPOTENCY_PREFIX: &[u8] = b"idempotency/";

/// One operation of a commit. Every one carries an expectation checked at the landing head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: ContentKey,
        content: Content,
        expect: Expect,
    },
    Delete {
        key: ContentKey,
        expect: Expect,
    },
    /// A read assertion: the key must be as expected when the commit lands.
    Check {
        key: ContentKey,
        expect: Expect,
    },
    /// Nothing may be strictly under `prefix` in the commit's result.
    CheckPrefixEmpty {
        prefix: ContentKey,
    },
}

impl Op {
    fn key(&self) -> &ContentKey {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Check { key, .. } => key,
            Op::CheckPrefixEmpty { prefix } => prefix,
        }
    }
}

/// An idempotency record to store atomically with a ref move: the caller's fingerprint
/// of the request (and whatever it needs to rebuild the response), under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub value: Vec<u8>,
    /// The claim the request holds on its key (`Store::claim_idempotency`), consumed by
    /// the move: the move applies only while the claim is still this request's.
    pub claim: Option<Vec<u8>>,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's until the lease ends; the marker to carry and release.
    Held(Vec<u8>),
    /// Another request holds a live claim on the key.
    Busy,
}

/// What the store found under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyOutcome {
    pub value: Vec<u8>,
    pub ref_name: String,
    /// The head the recorded write left the ref at (`None` for a delete).
    pub head: Option<Hash>,
    /// The head the ref had before the recorded write (`None` for a create).
    pub previous: Option<Hash>,
}

/// Who writes, and what rides along with the ref move.
#[derive(Debug, Clone, Default)]
pub struct WriteCtx {
    pub principal: String,
    pub idempotency: Option<Idempotency>,
    /// The run executor: the only writer of `floe-run/` refs.
    pub executor: bool,
    /// Properties of the reflog entry of the ref move this write makes (beside the
    /// store's own): a landing names its run here, where no commit property can reach.
    pub reflog: BTreeMap<String, String>,
    /// A meta value the write depends on: its ref move applies only while the value
    /// holds, in the same atomic write ([`WriteError::Fenced`] otherwise).
    pub fence: Option<Fence>,
}

/// A meta value a write depends on: `key` must hold exactly `value` when the ref moves.
/// The value is left as it is; whoever removes it first stops every write fenced on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// What the writer is told when the fence no longer holds.
    pub lost: String,
}

impl WriteCtx {
    pub fn principal(principal: impl Into<String>) -> WriteCtx {
        WriteCtx {
            principal: principal.into(),
            ..WriteCtx::default()
        }
    }
}

/// A key and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    pub key: ContentKey,
    pub content: ContentRef,
}

/// One page of a listing; `next` continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, N> {
    pub items: Vec<T>,
    pub next: Option<N>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new head (the old one when nothing changed).
    pub commit: Hash,
    /// The head the commit landed on.
    pub parent: Hash,
    /// True when the expected head was stale and the commit landed on a newer head.
    pub rebased: bool,
    /// False when only checks ran (or every put matched): nothing was written.
    pub created: bool,
}

/// A spec resolved to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSpec {
    pub hash: Hash,
    pub ref_name: Option<RefName>,
    pub ref_kind: Option<RefKind>,
    /// Only a plain branch name is writable; tags, hashes, `~N` and `*time` are read-only.
    pub writable: bool,
}

/// Filters of a log; all given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Case-insensitive substring of the author or committer.
    pub author: Option<String>,
    /// Authored at or after (ms).
    pub since_ms: Option<i64>,
    /// Authored at or before (ms).
    pub until_ms: Option<i64>,
    /// Case-insensitive substring of the message.
    pub grep: Option<String>,
    /// The commit changed a key at or under this prefix (against its first parent).
    pub path: Option<ContentKey>,
    /// Every listed property has this value.
    pub properties: BTreeMap<String, String>,
    /// At least one listed property has its value (none listed: no constraint).
    pub any_of: Vec<(String, String)>,
}

impl LogFilter {
    fn matches_meta(&self, c: &Commit) -> bool {
        let contains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.author
            .as_ref()
            .is_none_or(|a| contains(&c.author, a) || contains(&c.committer, a))
            && self.since_ms.is_none_or(|t| c.authored_at_ms >= t)
            && self.until_ms.is_none_or(|t| c.authored_at_ms <= t)
            && self.grep.as_ref().is_none_or(|g| contains(&c.message, g))
            && self
                .properties
                .iter()
                .all(|(k, v)| c.properties.get(k) == Some(v))
            && (self.any_of.is_empty()
                || self
                    .any_of
                    .iter()
                    .any(|(k, v)| c.properties.get(k) == Some(v)))
    }
}

/// The longest round trip a reading of the shared backend's clock may take to be used
/// (`Store::sync_lease_clock`): the offset it gives is within half of it.
pub const CLOCK_SAMPLE_ROUND_TRIP_MAX_MS: i64 = 250;

#[derive(Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    nodes: ObjectCache<Node>,
    commits: ObjectCache<Commit>,
    contents: ObjectCache<Content>,
    graph: Mutex<CommitGraph>,
    sequencers: Mutex<HashMap<RefName, Arc<Mutex<()>>>>,
    /// How far the shared backend's clock is ahead of `clock` (ms), as last measured: what
    /// `lease_now_ms` adds.
    lease_skew_ms: AtomicI64,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Store {
        Store {
            backend,
            clock,
            nodes: ObjectCache::new(NODE_CACHE_ENTRIES_MAX),
            commits: ObjectCache::new(COMMIT_CACHE_ENTRIES_MAX),
            contents: ObjectCache::new(CONTENT_CACHE_ENTRIES_MAX),
            graph: Mutex::new(CommitGraph::default()),
            sequencers: Mutex::new(HashMap::new()),
            lease_skew_ms: AtomicI64::new(0),
        }
    }

    /// Opens a store and makes sure the root commit and `main` exist.
    pub fn open(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Result<Store, WriteError> {
        let store = Store::new(backend, clock);
        store.init()?;
        store.sync_lease_clock()?;
        Ok(store)
    }

    /// The time leases are written and judged by (ms since the Unix epoch): the shared
    /// backend's clock as of the last `sync_lease_clock`, followed on this machine's, so
    /// that servers whose clocks disagree agree on whose lease ran out. This machine's
    /// clock on a backend without one of its own.
    pub fn lease_now_ms(&self) -> i64 {
        self.clock
            .now_ms()
            .saturating_add(self.lease_skew_ms.load(Ordering::Relaxed))
    }

    /// Measures how far the shared backend's clock is from this machine's (to half a
    /// round trip): `Store::open` does, and a server renewing its lease, so drift between
    /// two measures stays small. A sample whose round trip took longer than
    /// `CLOCK_SAMPLE_ROUND_TRIP_MAX_MS` is not used (the offset stays as measured before).
    /// Nothing on a backend without a clock of its own.
    pub fn sync_lease_clock(&self) -> Result<(), ReadError> {
        let Some(sample) = self.backend.shared_clock(self.clock.clone())? else {
            return Ok(());
        };
        let round_trip = sample.received_ms.saturating_sub(sample.sent_ms);
        if !(0..=CLOCK_SAMPLE_ROUND_TRIP_MAX_MS).contains(&round_trip) {
            return Ok(());
        }
        let local = sample.sent_ms.saturating_add(round_trip / 2);
        self.lease_skew_ms
            .store(sample.shared_ms.saturating_sub(local), Ordering::Relaxed);
        Ok(())
    }

    /// Whether several servers may share this store's backend (see `Backend::is_shared`).
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Whether reads are answered from memory (see `Backend::reads_from_memory`).
    pub fn reads_from_memory(&self) -> bool {
        self.backend.reads_from_memory()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The commit every store starts from.
    pub fn root_commit() -> Hash {
        Hash::of(&Commit::root().encode())
    }

    /// Writes the root commit and creates `main` at it when it does not exist.
    pub fn init(&self) -> Result<(), WriteError> {
        let root = Commit::root();
        let bytes = Bytes::from(root.encode());
        let hash = Hash::of(&bytes);
        self.backend
            .put_objects(&[(hash, bytes)])
            .map_err(not_applied)?;
        let main = RefName::parse(DEFAULT_BRANCH).expect("the default branch name is valid");
        match self.create_ref(&main, RefKind::Branch, hash, &WriteCtx::principal("floe")) {
            Ok(_) | Err(WriteError::RefAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- objects -----------------------------------------------------------------

    /// An object's bytes from the backend, checked against their hash before anything
    /// decodes or caches them. Every object the store reads (commits, index nodes, content
    /// values) comes through here, whatever the backend: damaged or substituted bytes are
    /// a `Corrupt` error naming the object, never a wrong answer. The hash costs more
    /// than the offset-only decode that follows (about 2.8 µs for a typical node), but
    /// only on a cache miss (BENCHMARKS.md, "Integrity on read").
    fn read_object(&self, hash: &Hash) -> Result<Option<Bytes>, StorageError> {
        let Some(bytes) = self.backend.get_object(hash)? else {
            return Ok(None);
        };
        let actual = Hash::of(&bytes);
        if actual != *hash {
            return Err(StorageError::corrupt(
                Some(*hash),
                format!("its bytes hash to {actual}"),
            ));
        }
        Ok(Some(bytes))
    }

    pub fn commit_object(&self, hash: &Hash) -> Result<Arc<Commit>, ReadError> {
        if let Some(c) = self.commits.get(hash) {
            return Ok(c);
        }
        let bytes = self
            .read_object(hash)?
            .ok_or_else(|| ReadError::CommitNotFound(hash.to_string()))?;
        if bytes.get(1) != Some(&(ObjectKind::Commit as u8)) {
            return Err(ReadError::CommitNotFound(hash.to_string()));
        }
        let commit = Arc::new(
            Commit::decode(&bytes)
                .map_err(|e| StorageError::corrupt(Some(*hash), e.0.to_owned()))?,
        );
        self.remember_commit(*hash, commit.clone());
        Ok(commit)
    }

    /// A commit a write names (a target, a source, an expected head): an absent one is
    /// the caller's `CommitNotFound`; a storage failure or damage stays what it is.
    pub(crate) fn named_commit(&self, hash: &Hash) -> Result<Arc<Commit>, WriteError> {
        self.commit_object(hash).map_err(|e| match e {
            ReadError::CommitNotFound(_) => WriteError::CommitNotFound(*hash),
            other => other.into(),
        })
    }

    fn remember_commit(&self, hash: Hash, commit: Arc<Commit>) {
        self.graph.lock().insert(
            hash,
            GraphEntry {
                parents: commit.parents.clone(),
                generation: commit.generation,
            },
        );
        self.commits.insert(hash, commit);
    }

    pub fn content(&self, hash: &Hash) -> Result<Content, ReadError> {
        if let Some(c) = self.contents.get(hash) {
            return Ok((*c).clone());
        }
        let bytes = self
            .read_object(hash)?
            .ok_or(StorageError::Missing(*hash))?;
        let content = Content::decode(&bytes)
            .map_err(|e| StorageError::corrupt(Some(*hash), e.0.to_owned()))?;
        self.contents.insert(*hash, Arc::new(content.clone()));
        Ok(content)
    }

    /// Resolves a hash prefix to the one commit it names.
    pub fn resolve_prefix(&self, prefix: &HashPrefix) -> Result<Hash, ReadError> {
        if let Some(full) = prefix.full() {
            self.commit_object(&full)?;
            return Ok(full);
        }
        // Objects of other kinds share the hash space: scan a little past the candidates.
        let hashes = self
            .backend
            .scan_objects(&prefix.lower_bound(), HASH_PREFIX_CANDIDATES_MAX * 8)?;
        let mut candidates = Vec::new();
        for h in hashes.into_iter().take_while(|h| prefix.matches(h)) {
            // Objects of other kinds are skipped; a damaged one is an error, not a miss.
            match self.commit_object(&h) {
                Ok(_) => candidates.push(h),
                Err(ReadError::CommitNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        match candidates.len() {
            0 => Err(ReadError::CommitNotFound(prefix.to_string())),
            1 => Ok(candidates[0]),
            _ => {
                candidates.truncate(HASH_PREFIX_CANDIDATES_MAX);
                Err(ReadError::AmbiguousPrefix {
                    prefix: prefix.clone(),
                    candidates,
                })
            }
        }
    }

    /// The in-process sequencer of a ref: writers to one branch take turns computing and
    /// moving it, so they chain on each other's pending heads instead of storming the
    /// compare-and-swap (which stays the guard across processes). The turn ends before the
    /// writer waits for durability, so one fdatasync covers many of them.
    pub(crate) fn sequencer(&self, name: &RefName) -> Arc<Mutex<()>> {
        let mut map = self.sequencers.lock();
        if map.len() >= SEQUENCERS_MAX {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(name.clone()).or_default().clone()
    }

    /// Waits until `head` of `name` is durable (at once if it is; `None`: the ref's newest
    /// move). DESIGN §2: every answer shows durable heads. A writer's own acknowledged move
    /// is durable; any other answer of a write — one that changed nothing, a dry run, a
    /// rejection — was computed from the pending head, and names it only after this.
    pub fn settle(&self, name: &RefName, head: Option<&Hash>) -> Result<(), WriteError> {
        self.backend
            .wait_ref_durable(name, head)
            .map_err(WriteError::outcome_unknown)
    }

    /// The answer of a write on `name`, once what it was computed from is durable:
    /// `unacknowledged` names the head of a success that moved nothing; a rejection waits
    /// for the head it was evaluated at (or the ref's newest move).
    pub(crate) fn settled<T>(
        &self,
        name: &RefName,
        out: Result<T, WriteError>,
        unacknowledged: impl FnOnce(&T) -> Option<Hash>,
    ) -> Result<T, WriteError> {
        match &out {
            Ok(value) => {
                if let Some(head) = unacknowledged(value) {
                    self.settle(name, Some(&head))?;
                }
            }
            Err(WriteError::Storage(_)) => {}
            Err(WriteError::Conflict { head, .. }) => self.settle(name, Some(head))?,
            Err(_) => self.settle(name, None)?,
        }
        out
    }

    /// Waits on this thread for every durability wait deferred on it so far
    /// (`deferred::barrier`): called before anything irreversible outside the store, or
    /// visible to other requests, that rests on them.
    pub fn durable_now(&self) -> Result<(), WriteError> {
        crate::deferred::barrier().map_err(WriteError::outcome_unknown)
    }

    /// Waits until a pending move is durable; only then is it reported applied. If it
    /// never becomes durable (the store is poisoned), the outcome is unknown.
    pub(crate) fn acknowledge(&self, ticket: u64) -> Result<(), WriteError> {
        let waited_from_ms = self.now_ms();
        let out = self
            .backend
            .wait_durable(ticket)
            .map_err(WriteError::outcome_unknown);
        // The enclosing commit's or merge's span says how long durability took (by the
        // store's clock: the core reads no other).
        tracing::Span::current().record("durable_wait_ms", self.now_ms() - waited_from_ms);
        out
    }

    /// Nodes written by this store or read through it, for tests and benchmark reports.
    pub fn cached_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The shape of a commit's key index (nodes per level, root first).
    pub fn index_shape(&self, commit: Hash) -> Result<Vec<usize>, ReadError> {
        let c = self.commit_object(&commit)?;
        Ok(tree::shape(self, c.key_index)?)
    }
}

impl NodeSource for Store {
    fn node(&self, hash: &Hash) -> Result<Arc<Node>, TreeError> {
        if let Some(n) = self.nodes.get(hash) {
            return Ok(n);
        }
        let bytes = self
            .read_object(hash)
            .map_err(|e| match e {
                StorageError::Backend(e) => TreeError::Read(e.message),
                StorageError::Missing(h) => TreeError::Missing(h),
                StorageError::Corrupt { hash: h, reason } => TreeError::Corrupt {
                    hash: h.unwrap_or(*hash),
                    reason,
                },
            })?
            .ok_or(TreeError::Missing(*hash))?;
        let node = Arc::new(Node::decode(bytes).map_err(|e| TreeError::Corrupt {
            hash: *hash,
            reason: e.0.to_owned(),
        })?);
        self.nodes.insert(*hash, node.clone());
        Ok(node)
    }

    /// On a shared (remote) backend, reads the nodes not cached yet in one round trip,
    /// each checked against its hash before it is decoded and cached. A failure is left
    /// to the reads that follow, which report it.
    fn prefetch(&self, hashes: &[Hash]) {
        if !self.backend.is_shared() {
            return;
        }
        let missing: Vec<Hash> = hashes
            .iter()
            .filter(|h| self.nodes.get(h).is_none())
            .copied()
            .collect();
        if missing.len() < 2 {
            return;
        }
        let Ok(found) = self.backend.get_objects(&missing) else {
            return;
        };
        let nodes = missing.iter().zip(found).filter_map(|(hash, bytes)| {
            let bytes = bytes.filter(|b| Hash::of(b) == *hash)?;
            Some((*hash, Arc::new(Node::decode(bytes).ok()?)))
        });
        self.nodes.insert_many(nodes);
    }
}

impl GraphSource for Store {
    type Error = ReadError;
    fn entry(&self, h: &Hash) -> Result<GraphEntry, ReadError> {
        self.graph_entry(h)
    }
}

/// A storage failure before any ref moved: nothing persisted is visible.
fn not_applied(e: crate::backend::BackendError) -> WriteError {
    WriteError::Storage(StorageError::Backend(crate::backend::BackendError {
        outcome_unknown: false,
        ..e
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendResult, CasOutcome, RefUpdate, RefView};
    use crate::clock::ManualClock;
    use crate::error::Conflict;
    use crate::memory::MemoryBackend;

    /// The in-memory backend, recording every `wait_ref_durable` a store makes.
    #[derive(Debug, Default)]
    struct Recording {
        inner: MemoryBackend,
        waits: Mutex<Vec<(RefName, Option<Hash>)>>,
        /// Objects read one by one, batches read, and objects read in batches.
        reads: Mutex<(usize, usize, usize)>,
    }

    impl Backend for Recording {
        fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()> {
            self.inner.put_objects(objects)
        }
        fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>> {
            self.reads.lock().0 += 1;
            self.inner.get_object(hash)
        }
        fn get_objects(&self, hashes: &[Hash]) -> BackendResult<Vec<Option<Bytes>>> {
            let mut reads = self.reads.lock();
            reads.1 += 1;
            reads.2 += hashes.len();
            hashes.iter().map(|h| self.inner.get_object(h)).collect()
        }
        fn is_shared(&self) -> bool {
            self.inner.is_shared()
        }
        fn scan_objects(&self, from: &Hash, limit: usize) -> BackendResult<Vec<Hash>> {
            self.inner.scan_objects(from, limit)
        }
        fn get_ref(&self, name: &RefName, view: RefView) -> BackendResult<Option<RefRecord>> {
            self.inner.get_ref(name, view)
        }
        fn list_refs(
            &self,
            after: Option<&RefName>,
            limit: usize,
            view: RefView,
        ) -> BackendResult<Vec<(RefName, RefRecord)>> {
            self.inner.list_refs(after, limit, view)
        }
        fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
            self.inner.compare_and_swap_ref(update)
        }
        fn writes_objects_with_moves(&self) -> bool {
            self.inner.writes_objects_with_moves()
        }
        fn wait_ref_durable(&self, name: &RefName, head: Option<&Hash>) -> BackendResult<()> {
            self.waits.lock().push((name.clone(), head.copied()));
            Ok(())
        }
        fn reflog(
            &self,
            name: Option<&RefName>,
            before: Option<u64>,
            limit: usize,
        ) -> BackendResult<Vec<ReflogEntry>> {
            self.inner.reflog(name, before, limit)
        }
        fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>> {
            self.inner.meta_get(key)
        }
        fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()> {
            self.inner.meta_put(key, value)
        }
        fn meta_cas(
            &self,
            key: &[u8],
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> BackendResult<bool> {
            self.inner.meta_cas(key, expected, new)
        }
        fn meta_scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> BackendResult<Vec<(Bytes, Bytes)>> {
            self.inner.meta_scan(prefix, after, limit)
        }
    }

    fn store_over(backend: Arc<dyn Backend>) -> Store {
        Store::open(backend, Arc::new(ManualClock::new(0))).unwrap()
    }

    fn name(s: &str) -> RefName {
        RefName::parse(s).unwrap()
    }

    #[test]
    fn a_ref_has_one_sequencer_and_idle_ones_are_dropped_past_the_bound() {
        let store = store_over(Arc::new(MemoryBackend::new()));
        let main = store.sequencer(&name("main"));
        assert!(Arc::ptr_eq(&main, &store.sequencer(&name("main"))));
        assert!(!Arc::ptr_eq(&main, &store.sequencer(&name("dev"))));
        for i in 0..SEQUENCERS_MAX * 2 {
            drop(store.sequencer(&name(&format!("b{i}"))));
            assert!(store.sequencers.lock().len() <= SEQUENCERS_MAX + 1);
        }
        // A sequencer someone holds survives the pruning: its holders still take turns
        // with the next writer to that ref.
        assert!(Arc::ptr_eq(&main, &store.sequencer(&name("main"))));
    }

    #[test]
    fn a_sequencer_makes_writers_to_one_ref_take_turns() {
        let store = store_over(Arc::new(MemoryBackend::new()));
        let turn = store.sequencer(&name("main"));
        let guard = turn.lock();
        // Another writer to main waits; a writer to another ref does not.
        assert!(store.sequencer(&name("main")).try_lock().is_none());
        assert!(store.sequencer(&name("dev")).try_lock().is_some());
        drop(guard);
        assert!(store.sequencer(&name("main")).try_lock().is_some());
    }

    #[test]
    fn settled_waits_for_the_head_an_answer_was_computed_from() {
        let backend = Arc::new(Recording::default());
        let store = store_over(backend.clone());
        let main = name("main");
        let (h1, h2) = (Hash::of(b"one"), Hash::of(b"two"));
        let waits = || std::mem::take(&mut *backend.waits.lock());
        waits();
        // A success that moved nothing names its head: it waits for that head.
        store.settled(&main, Ok(h1), |h| Some(*h)).unwrap();
        assert_eq!(waits(), [(main.clone(), Some(h1))]);
        // A success that is its own acknowledged move waits for nothing more.
        store.settled(&main, Ok(h1), |_| None).unwrap();
        assert_eq!(waits(), []);
        // A conflict was evaluated at its head.
        let conflict = WriteError::Conflict {
            head: h2,
            conflicts: vec![Conflict::new(
                ContentKey::new(["a"]).unwrap(),
                ConflictKind::Expectation,
            )],
        };
        assert_eq!(
            store.settled(&main, Err::<(), _>(conflict.clone()), |_| None),
            Err(conflict)
        );
        assert_eq!(waits(), [(main.clone(), Some(h2))]);
        // Any other rejection waits for the ref's newest move.
        let tag = WriteError::TagImmutable(main.clone());
        assert_eq!(
            store.settled(&main, Err::<(), _>(tag.clone()), |_| None),
            Err(tag)
        );
        assert_eq!(waits(), [(main.clone(), None)]);
        // A storage failure has nothing durable to wait for.
        let failed = WriteError::Storage(StorageError::Missing(h1));
        assert!(
            store
                .settled(&main, Err::<(), _>(failed), |_| None)
                .is_err()
        );
        assert_eq!(waits(), []);
    }

    /// On a shared (remote) backend a scan reads the nodes it walks through in batches,
    /// not one round trip per node; on another, one by one as before.
    #[test]
    fn scans_on_a_shared_backend_read_sibling_nodes_in_batches() {
        for shared in [true, false] {
            let backend = Arc::new(Recording {
                inner: if shared {
                    MemoryBackend::shared()
                } else {
                    MemoryBackend::new()
                },
                ..Recording::default()
            });
            let writer = store_over(backend.clone());
            let ctx = WriteCtx::principal("t");
            for chunk in 0..5u128 {
                let ops = (0..1_000u128)
                    .map(|i| Op::Put {
                        key: ContentKey::new([format!("n{:05}", chunk * 1_000 + i)]).unwrap(),
                        content: Content::namespace(
                            crate::ContentId::from_u128(chunk * 1_000 + i + 1),
                            BTreeMap::new(),
                        ),
                        expect: Expect::Absent,
                    })
                    .collect();
                writer
                    .commit(&name("main"), None, ops, CommitMeta::new("t", "m", 0), &ctx)
                    .unwrap();
            }
            // A second store over the same backend: nothing cached.
            let reader = store_over(backend.clone());
            let head = reader.get_ref(&name("main")).unwrap().head;
            *backend.reads.lock() = (0, 0, 0);
            let (mut seen, mut after) = (0, None);
            loop {
                let page = reader.entries(head, None, after.as_ref(), 1_000).unwrap();
                seen += page.items.len();
                match page.next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            assert_eq!(seen, 5_000);
            let (singles, batches, batched) = *backend.reads.lock();
            if shared {
                assert!(
                    batches > 0 && batched > 4 * singles,
                    "{singles} single reads, {batches} batches of {batched}"
                );
            } else {
                assert_eq!((batches, batched), (0, 0));
                assert!(singles > 10, "{singles}");
            }
        }
    }

    #[test]
    fn objects_that_do_not_hash_to_their_name_are_corrupt() {
        let backend = Arc::new(MemoryBackend::new());
        let store = store_over(backend.clone());
        let root = Store::root_commit();
        let content = Content::namespace(crate::content::ContentId::from_u128(1), BTreeMap::new());
        let node = Node::build(0, [(&b"k"[..], &b"v"[..])]);
        // Each kind of object, stored under a name that is not its hash.
        let (commit_at, content_at, node_at) = (Hash::of(b"c"), Hash::of(b"t"), Hash::of(b"n"));
        let commit_bytes = Bytes::from(Commit::root().encode());
        backend
            .put_objects(&[
                (commit_at, commit_bytes),
                (content_at, Bytes::from(content.encode())),
                (node_at, node.raw().clone()),
            ])
            .unwrap();
        let corrupt = |e: StorageError, at: Hash| {
            assert!(
                matches!(&e, StorageError::Corrupt { hash: Some(h), .. } if *h == at),
                "{e:?}"
            );
            assert!(e.to_string().contains(&at.to_string()), "{e}");
        };
        match store.commit_object(&commit_at) {
            Err(ReadError::Storage(e)) => corrupt(e, commit_at),
            other => panic!("{other:?}"),
        }
        match store.content(&content_at) {
            Err(ReadError::Storage(e)) => corrupt(e, content_at),
            other => panic!("{other:?}"),
        }
        match store.node(&node_at) {
            Err(e) => corrupt(e.into(), node_at),
            Ok(n) => panic!("{n:?}"),
        }
        // Nothing damaged was cached: the honest objects still read.
        assert_eq!(store.cached_nodes(), 0);
        assert_eq!(store.commit_object(&root).unwrap().generation, 1);
        // A write naming the damaged commit is refused as damaged, not as absent.
        assert!(matches!(
            store.named_commit(&commit_at),
            Err(WriteError::Storage(StorageError::Corrupt { .. }))
        ));
        assert_eq!(
            store.named_commit(&Hash::of(b"absent")).unwrap_err(),
            WriteError::CommitNotFound(Hash::of(b"absent"))
        );
    }
}
