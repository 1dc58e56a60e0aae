//! The `Store`: refs, the commit rule, and every read, over any `Backend`.
//!
//! A ref moves only by compare-and-swap through the backend, with its reflog entry in the
//! same atomic write. `commit` evaluates every expectation at the head it lands on and
//! retries at the new head when it loses a race (the automatic rebase); every other write
//! (merge, cherry-pick, revert, assign, delete) treats its expected head as strict.
//! Decoded nodes and commits are cached, and every commit seen enters the commit graph.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{
    Backend, CasOutcome, MetaWrite, RefOperation, RefRecord, RefUpdate, RefView, ReflogEntry,
};
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
}

impl WriteCtx {
    pub fn principal(principal: impl Into<String>) -> WriteCtx {
        WriteCtx {
            principal: principal.into(),
            ..WriteCtx::default()
        }
    }
}

/// A key whose content differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: ContentKey,
    pub before: Option<ContentRef>,
    pub after: Option<ContentRef>,
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
    }
}

#[derive(Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    nodes: ObjectCache<Node>,
    commits: ObjectCache<Commit>,
    graph: Mutex<CommitGraph>,
    sequencers: Mutex<HashMap<RefName, Arc<Mutex<()>>>>,
}

/// What `land` did.
pub(crate) enum Landed {
    /// The ref moved (pending durability: acknowledge the ticket before reporting it).
    Applied(Hash, u64),
    /// The ref moved under us; nothing was written to it.
    Moved(Option<RefRecord>),
    DryRun(Hash),
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Store {
        Store {
            backend,
            clock,
            nodes: ObjectCache::new(NODE_CACHE_ENTRIES_MAX),
            commits: ObjectCache::new(COMMIT_CACHE_ENTRIES_MAX),
            graph: Mutex::new(CommitGraph::default()),
            sequencers: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a store and makes sure the root commit and `main` exist.
    pub fn open(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Result<Store, WriteError> {
        let store = Store::new(backend, clock);
        store.init()?;
        Ok(store)
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

    pub fn commit_object(&self, hash: &Hash) -> Result<Arc<Commit>, ReadError> {
        if let Some(c) = self.commits.get(hash) {
            return Ok(c);
        }
        let bytes = self
            .backend
            .get_object(hash)?
            .ok_or_else(|| ReadError::CommitNotFound(hash.to_string()))?;
        if bytes.get(1) != Some(&(ObjectKind::Commit as u8)) {
            return Err(ReadError::CommitNotFound(hash.to_string()));
        }
        let commit = Arc::new(Commit::decode(&bytes).map_err(|e| StorageError::Corrupt {
            hash: *hash,
            reason: e.0.to_owned(),
        })?);
        self.remember_commit(*hash, commit.clone());
        Ok(commit)
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
        let bytes = self
            .backend
            .get_object(hash)?
            .ok_or(StorageError::Missing(*hash))?;
        Ok(Content::decode(&bytes).map_err(|e| StorageError::Corrupt {
            hash: *hash,
            reason: e.0.to_owned(),
        })?)
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
            if self.commit_object(&h).is_ok() {
                candidates.push(h);
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

    // ----- refs ----------------------------------------------------------------------

    /// A ref as clients see it (its durable head).
    pub fn get_ref(&self, name: &RefName) -> Result<RefRecord, ReadError> {
        self.backend
            .get_ref(name, RefView::Durable)?
            .ok_or_else(|| ReadError::RefNotFound(name.clone()))
    }

    /// A page of refs in name order, optionally of one kind.
    pub fn list_refs(
        &self,
        kind: Option<RefKind>,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Page<(RefName, RefRecord), RefName>, ReadError> {
        let limit = limit.clamp(1, REFS_PAGE_MAX);
        let mut items = Vec::new();
        let mut cursor = after.cloned();
        // Filtering by kind may skip many refs: bounded by REFS_PAGE_MAX reads per page.
        for _ in 0..REFS_PAGE_MAX {
            let batch = self
                .backend
                .list_refs(cursor.as_ref(), limit + 1, RefView::Durable)?;
            let exhausted = batch.len() <= limit;
            for (name, record) in batch {
                cursor = Some(name.clone());
                if kind.is_none_or(|k| k == record.kind) {
                    if items.len() == limit {
                        let last = items.last().map(|(n, _): &(RefName, RefRecord)| n.clone());
                        return Ok(Page { items, next: last });
                    }
                    items.push((name, record));
                }
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
        Ok(Page {
            next: cursor,
            items,
        })
    }

    fn check_ref_writable(&self, name: &RefName, ctx: &WriteCtx) -> Result<(), WriteError> {
        if name.is_run_branch() && !ctx.executor {
            return Err(WriteError::ReservedRef(name.clone()));
        }
        Ok(())
    }

    /// Creates a branch or tag at a commit.
    pub fn create_ref(
        &self,
        name: &RefName,
        kind: RefKind,
        target: Hash,
        ctx: &WriteCtx,
    ) -> Result<RefRecord, WriteError> {
        let out = self.create_ref_unsettled(name, kind, target, ctx);
        self.settled(name, out, |_| None)
    }

    /// `create_ref` up to its answer, computed from the ref's pending head (`create_ref`
    /// then waits until that head is durable).
    fn create_ref_unsettled(
        &self,
        name: &RefName,
        kind: RefKind,
        target: Hash,
        ctx: &WriteCtx,
    ) -> Result<RefRecord, WriteError> {
        self.check_ref_writable(name, ctx)?;
        check_principal(&ctx.principal)?;
        self.commit_object(&target)
            .map_err(|_| WriteError::CommitNotFound(target))?;
        let now = self.clock.now_ms();
        let record = RefRecord {
            kind,
            head: target,
            created_by: ctx.principal.clone(),
            created_at_ms: now,
            attributes: BTreeMap::new(),
        };
        match self.move_ref(
            name,
            kind,
            None,
            Some(record.clone()),
            RefOperation::Create,
            ctx,
            BTreeMap::new(),
        )? {
            CasOutcome::Applied { ticket, .. } => {
                self.acknowledge(ticket)?;
                Ok(record)
            }
            CasOutcome::Mismatch { .. } => Err(WriteError::RefAlreadyExists(name.clone())),
        }
    }

    /// Deletes a branch or tag; with an expected head the delete is strict.
    pub fn delete_ref(
        &self,
        name: &RefName,
        expected_head: Option<Hash>,
        ctx: &WriteCtx,
    ) -> Result<(), WriteError> {
        let out = self.delete_ref_unsettled(name, expected_head, ctx);
        self.settled(name, out, |_| None)
    }

    /// `delete_ref` up to its answer, computed from the ref's pending head (`delete_ref`
    /// then waits until that head is durable).
    fn delete_ref_unsettled(
        &self,
        name: &RefName,
        expected_head: Option<Hash>,
        ctx: &WriteCtx,
    ) -> Result<(), WriteError> {
        self.check_ref_writable(name, ctx)?;
        check_principal(&ctx.principal)?;
        let sequencer = self.sequencer(name);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let current = self.pending_ref(name)?;
            check_expected(name, expected_head, current.head)?;
            match self.move_ref(
                name,
                current.kind,
                Some(current.head),
                None,
                RefOperation::Delete,
                ctx,
                BTreeMap::new(),
            )? {
                CasOutcome::Applied { ticket, .. } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(());
                }
                CasOutcome::Mismatch { current: now } => lost_race(name, expected_head, now)?,
            }
        }
        Err(contention(name))
    }

    /// Points a branch at any commit (`floe reset`). Strict with an expected head; tags
    /// never move.
    pub fn assign(
        &self,
        name: &RefName,
        expected_head: Option<Hash>,
        target: Hash,
        ctx: &WriteCtx,
    ) -> Result<RefRecord, WriteError> {
        let out = self.assign_unsettled(name, expected_head, target, ctx);
        self.settled(name, out, |_| None)
    }

    /// `assign` up to its answer, computed from the ref's pending head (`assign`
    /// then waits until that head is durable).
    fn assign_unsettled(
        &self,
        name: &RefName,
        expected_head: Option<Hash>,
        target: Hash,
        ctx: &WriteCtx,
    ) -> Result<RefRecord, WriteError> {
        self.check_ref_writable(name, ctx)?;
        check_principal(&ctx.principal)?;
        self.commit_object(&target)
            .map_err(|_| WriteError::CommitNotFound(target))?;
        let sequencer = self.sequencer(name);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let current = self.pending_ref(name)?;
            if current.kind == RefKind::Tag {
                return Err(WriteError::TagImmutable(name.clone()));
            }
            check_expected(name, expected_head, current.head)?;
            let record = RefRecord {
                head: target,
                ..current.clone()
            };
            match self.move_ref(
                name,
                RefKind::Branch,
                Some(current.head),
                Some(record.clone()),
                RefOperation::Assign,
                ctx,
                BTreeMap::new(),
            )? {
                CasOutcome::Applied { ticket, .. } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(record);
                }
                CasOutcome::Mismatch { current: now } => lost_race(name, expected_head, now)?,
            }
        }
        Err(contention(name))
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
            .map_err(outcome_unknown)
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

    /// Waits until a pending move is durable; only then is it reported applied. If it
    /// never becomes durable (the store is poisoned), the outcome is unknown.
    pub(crate) fn acknowledge(&self, ticket: u64) -> Result<(), WriteError> {
        self.backend.wait_durable(ticket).map_err(outcome_unknown)
    }

    /// The head writers build on (DESIGN §2 "Durability"): the newest applied head, possibly
    /// still awaiting its flush. A writer that loads, modifies and commits reads here, so it
    /// chains on a concurrent writer's commit instead of failing against it until that one
    /// is durable; its own acknowledgement still waits for the flush that covers both.
    /// Never show it to a client as the ref's head.
    pub fn writer_head(&self, name: &RefName) -> Result<Hash, ReadError> {
        Ok(self
            .backend
            .get_ref(name, RefView::Pending)?
            .ok_or_else(|| ReadError::RefNotFound(name.clone()))?
            .head)
    }

    /// The newest head of a ref, possibly awaiting durability: what writers chain on.
    pub(crate) fn pending_ref(&self, name: &RefName) -> Result<RefRecord, WriteError> {
        self.backend
            .get_ref(name, RefView::Pending)?
            .ok_or_else(|| WriteError::RefNotFound(name.clone()))
    }

    pub(crate) fn pending_branch(
        &self,
        name: &RefName,
        ctx: &WriteCtx,
    ) -> Result<RefRecord, WriteError> {
        self.check_ref_writable(name, ctx)?;
        let record = self.pending_ref(name)?;
        if record.kind != RefKind::Branch {
            return Err(WriteError::NotABranch(name.clone()));
        }
        Ok(record)
    }

    /// One compare-and-swap with its reflog entry and the caller's idempotency record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn move_ref(
        &self,
        name: &RefName,
        kind: RefKind,
        expected: Option<Hash>,
        new: Option<RefRecord>,
        operation: RefOperation,
        ctx: &WriteCtx,
        properties: BTreeMap<String, String>,
    ) -> Result<CasOutcome, WriteError> {
        let new_head = new.as_ref().map(|r| r.head);
        let mut properties = properties;
        properties.extend(ctx.reflog.iter().map(|(k, v)| (k.clone(), v.clone())));
        let meta = match &ctx.idempotency {
            Some(i) => Some(idempotency_write(i, name, expected, new_head)?),
            None => None,
        };
        let update = RefUpdate {
            name: name.clone(),
            expected,
            new,
            reflog: ReflogEntry {
                seq: 0,
                ref_name: name.clone(),
                kind,
                old: expected,
                new: new_head,
                operation,
                principal: ctx.principal.clone(),
                at_ms: self.clock.now_ms(),
                properties,
            },
            meta,
        };
        Ok(self.backend.compare_and_swap_ref(update)?)
    }

    // ----- the commit rule -----------------------------------------------------------

    /// Commits `ops` to `branch`. Every expectation is checked at the head the commit
    /// lands on; a stale `expected_head` only means the store re-evaluates at the current
    /// head (it never walks the commits in between).
    pub fn commit(
        &self,
        branch: &RefName,
        expected_head: Option<Hash>,
        ops: Vec<Op>,
        meta: CommitMeta,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        let out = self.commit_unsettled(branch, expected_head, ops, meta, ctx);
        self.settled(branch, out, |o| (!o.created).then_some(o.commit))
    }

    /// `commit` up to its answer, computed from the ref's pending head (`commit`
    /// then waits until that head is durable).
    fn commit_unsettled(
        &self,
        branch: &RefName,
        expected_head: Option<Hash>,
        ops: Vec<Op>,
        meta: CommitMeta,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        meta.check()?;
        check_principal(&ctx.principal)?;
        if ops.is_empty() {
            return Err(WriteError::Invalid(
                "a commit needs at least one operation".to_owned(),
            ));
        }
        if ops.len() > OPS_PER_COMMIT_MAX {
            return Err(WriteError::Invalid(format!(
                "a commit has at most {OPS_PER_COMMIT_MAX} operations (OPS_PER_COMMIT_MAX), got {}",
                ops.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut objects = Vec::new();
        let mut puts: HashMap<ContentKey, ContentRef> = HashMap::new();
        for op in &ops {
            if !matches!(op, Op::CheckPrefixEmpty { .. }) && !seen.insert(op.key().clone()) {
                return Err(WriteError::Invalid(format!(
                    "key {} appears in more than one operation",
                    op.key()
                )));
            }
            match op {
                Op::Put { key, content, .. } => {
                    let (hash, bytes) = content.encode_checked()?;
                    objects.push((hash.0, Bytes::from(bytes)));
                    puts.insert(
                        key.clone(),
                        ContentRef {
                            hash,
                            id: content.id,
                            kind: content.kind(),
                        },
                    );
                }
                Op::Delete {
                    key,
                    expect: Expect::Absent,
                } => {
                    return Err(WriteError::Invalid(format!(
                        "deleting {key} must expect it present (Present or Is), not Absent"
                    )));
                }
                _ => {}
            }
        }
        if let Some(e) = expected_head {
            self.commit_object(&e)
                .map_err(|_| WriteError::CommitNotFound(e))?;
        }
        let sequencer = self.sequencer(branch);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let record = self.pending_branch(branch, ctx)?;
            let head = record.head;
            let head_commit = self.commit_object(&head)?;
            let keys: Vec<&ContentKey> = ops
                .iter()
                .filter(|o| !matches!(o, Op::CheckPrefixEmpty { .. }))
                .map(Op::key)
                .collect();
            let actual = self.refs_in(&head_commit, keys.iter().copied())?;
            let mut conflicts = Vec::new();
            let mut changes = Vec::new();
            for op in &ops {
                let (key, expect) = match op {
                    Op::Put { key, expect, .. }
                    | Op::Delete { key, expect }
                    | Op::Check { key, expect } => (key, expect),
                    Op::CheckPrefixEmpty { .. } => continue,
                };
                let now = actual.get(key).and_then(Option::as_ref);
                if !expect.holds(now) {
                    conflicts.push(Conflict {
                        expected: Some(*expect),
                        ..Conflict::new(key.clone(), ConflictKind::Expectation).with_actual(now)
                    });
                    continue;
                }
                match op {
                    Op::Put { .. } => {
                        let after = puts[key];
                        if now.is_none_or(|n| n.hash != after.hash || n.id != after.id) {
                            changes.push(KeyChange {
                                key: key.clone(),
                                before: now.copied(),
                                after: Some(after),
                            });
                        }
                    }
                    Op::Delete { .. } => changes.push(KeyChange {
                        key: key.clone(),
                        before: now.copied(),
                        after: None,
                    }),
                    _ => {}
                }
            }
            changes.sort_by(|a, b| a.key.cmp(&b.key));
            for op in &ops {
                if let Op::CheckPrefixEmpty { prefix } = op
                    && let Some(other) = self.first_under(&head_commit, prefix, &changes)?
                {
                    conflicts.push(Conflict {
                        other_key: Some(other),
                        ..Conflict::new(prefix.clone(), ConflictKind::PrefixNotEmpty)
                    });
                }
            }
            if !conflicts.is_empty() {
                return Err(WriteError::Conflict { head, conflicts });
            }
            let rebased = expected_head.is_some_and(|e| e != head);
            if changes.is_empty() {
                return Ok(CommitOutcome {
                    commit: head,
                    parent: head,
                    rebased,
                    created: false,
                });
            }
            let parents: Parents = [head].into_iter().collect();
            match self.land(
                branch,
                &record,
                &head_commit,
                changes,
                parents,
                &meta,
                RefOperation::Commit,
                objects.clone(),
                ctx,
                false,
            )? {
                Landed::Applied(commit, ticket) => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(CommitOutcome {
                        commit,
                        parent: head,
                        rebased,
                        created: true,
                    });
                }
                Landed::Moved(_) => continue,
                Landed::DryRun(_) => unreachable!("commit is never a dry run"),
            }
        }
        Err(contention(branch))
    }

    /// The first key strictly under `prefix` in (the map at `commit`) + `changes`.
    pub(crate) fn first_under(
        &self,
        commit: &Commit,
        prefix: &ContentKey,
        changes: &[KeyChange],
    ) -> Result<Option<ContentKey>, WriteError> {
        let (lo, hi) = prefix.children_range();
        let lo_i = changes.partition_point(|c| c.key.as_bytes() < &lo);
        let hi_i = changes.partition_point(|c| c.key.as_bytes() < &hi);
        let window = &changes[lo_i..hi_i];
        if let Some(c) = window.iter().find(|c| c.after.is_some()) {
            return Ok(Some(c.key.clone()));
        }
        // Keys deleted by the changes do not count; there are at most `window.len()` of them.
        let mut found = None;
        let mut failure = None;
        tree::for_each(self, commit.key_index, &lo, Some(&hi), |node, i| {
            let k = node.key(i);
            let deleted = window
                .binary_search_by(|c| c.key.as_bytes().as_ref().cmp(k))
                .is_ok();
            if deleted {
                return true;
            }
            match ContentKey::from_stored(node.key_bytes(i)) {
                Ok(key) => found = Some(key),
                Err(e) => failure = Some(e),
            }
            false
        })?;
        if let Some(e) = failure {
            return Err(StorageError::Corrupt {
                hash: Hash::from_bytes([0; 32]),
                reason: e.to_string(),
            }
            .into());
        }
        Ok(found)
    }

    /// Validates `changes` against `head_commit`, builds the commit and moves `branch` from
    /// the head to it. Every landing (commit, merge, cherry-pick, revert) goes through here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn land(
        &self,
        branch: &RefName,
        record: &RefRecord,
        head_commit: &Commit,
        changes: Vec<KeyChange>,
        parents: Parents,
        meta: &CommitMeta,
        operation: RefOperation,
        mut objects: Vec<(Hash, Bytes)>,
        ctx: &WriteCtx,
        dry_run: bool,
    ) -> Result<Landed, WriteError> {
        let head = record.head;
        let id_edits =
            validate::landing(self, head_commit, &changes).map_err(
                |conflicts| match conflicts {
                    validate::Failure::Conflicts(conflicts) => {
                        WriteError::Conflict { head, conflicts }
                    }
                    validate::Failure::Write(e) => e,
                },
            )?;
        let key_edits: Vec<tree::Edit> = changes
            .iter()
            .map(|c| {
                (
                    c.key.as_bytes().clone(),
                    c.after.map(|a| Bytes::from(a.to_bytes())),
                )
            })
            .collect();
        let mut nodes = NewNodes::default();
        let key_index = tree::apply(self, head_commit.key_index, key_edits, &mut nodes)?;
        let id_index = tree::apply(self, head_commit.id_index, id_edits, &mut nodes)?;
        let mut generation = 0;
        for p in &parents {
            generation = generation.max(self.graph_entry(p)?.generation);
        }
        let commit = Commit {
            parents,
            key_index,
            id_index,
            // An empty author is the principal writing; an empty committer, the author.
            author: if meta.author.is_empty() {
                ctx.principal.clone()
            } else {
                meta.author.clone()
            },
            committer: match (meta.committer.is_empty(), meta.author.is_empty()) {
                (false, _) => meta.committer.clone(),
                (true, false) => meta.author.clone(),
                (true, true) => ctx.principal.clone(),
            },
            message: meta.message.clone(),
            authored_at_ms: meta.authored_at_ms,
            properties: meta.properties.clone(),
            generation: generation + 1,
        };
        let bytes = Bytes::from(commit.encode());
        let hash = Hash::of(&bytes);
        if dry_run {
            return Ok(Landed::DryRun(hash));
        }
        objects.extend(nodes.written.iter().cloned());
        objects.push((hash, bytes));
        // Nothing refers to these objects until the ref moves: a failure here changed
        // nothing a reader can see, so it is a plain rejection, never "outcome unknown".
        self.backend.put_objects(&objects).map_err(not_applied)?;
        self.nodes
            .insert_many(nodes.nodes().map(|(h, n)| (*h, n.clone())));
        let new_record = RefRecord {
            head: hash,
            ..record.clone()
        };
        match self.move_ref(
            branch,
            RefKind::Branch,
            Some(head),
            Some(new_record),
            operation,
            ctx,
            BTreeMap::new(),
        )? {
            CasOutcome::Applied { ticket, .. } => {
                self.remember_commit(hash, Arc::new(commit));
                Ok(Landed::Applied(hash, ticket))
            }
            CasOutcome::Mismatch { current } => Ok(Landed::Moved(current)),
        }
    }

    // ----- reads ---------------------------------------------------------------------

    /// Resolves a ref spec to a commit.
    pub fn resolve(&self, spec: &RefSpec) -> Result<ResolvedSpec, ReadError> {
        match spec {
            RefSpec::Name(name) => {
                let r = self.get_ref(name)?;
                Ok(ResolvedSpec {
                    hash: r.head,
                    ref_name: Some(name.clone()),
                    ref_kind: Some(r.kind),
                    writable: r.kind == RefKind::Branch,
                })
            }
            RefSpec::NameAt(name, prefix) => {
                let r = self.get_ref(name)?;
                let hash = self.resolve_prefix(prefix)?;
                if !self.is_ancestor(hash, r.head)? {
                    return Err(ReadError::NotInHistory {
                        name: name.clone(),
                        commit: hash,
                    });
                }
                Ok(ResolvedSpec {
                    hash,
                    ref_name: Some(name.clone()),
                    ref_kind: Some(r.kind),
                    writable: false,
                })
            }
            RefSpec::Hash(prefix) => Ok(ResolvedSpec {
                hash: self.resolve_prefix(prefix)?,
                ref_name: None,
                ref_kind: None,
                writable: false,
            }),
            RefSpec::Ancestor(base, depth) => {
                let base_resolved = self.resolve(base)?;
                let mut hash = base_resolved.hash;
                for i in 0..*depth {
                    match self.graph_entry(&hash)?.parents.first() {
                        Some(p) => hash = *p,
                        None => {
                            return Err(ReadError::HistoryTooShort {
                                spec: spec.to_string(),
                                depth: *depth,
                                available: i,
                            });
                        }
                    }
                }
                Ok(ResolvedSpec {
                    hash,
                    writable: false,
                    ..base_resolved
                })
            }
            RefSpec::AtTime(name, at_ms) => {
                let mut before = None;
                let mut scanned = 0;
                while scanned < REFLOG_SCAN_MAX {
                    let page = self.backend.reflog(Some(name), before, REFLOG_PAGE_MAX)?;
                    if page.is_empty() {
                        break;
                    }
                    scanned += page.len();
                    for e in &page {
                        if e.at_ms <= *at_ms {
                            let hash = e
                                .new
                                .ok_or_else(|| ReadError::NoHeadAtTime { name: name.clone() })?;
                            return Ok(ResolvedSpec {
                                hash,
                                ref_name: Some(name.clone()),
                                ref_kind: Some(e.kind),
                                writable: false,
                            });
                        }
                    }
                    before = page.last().map(|e| e.seq);
                }
                if scanned >= REFLOG_SCAN_MAX {
                    return Err(ReadError::Bound {
                        what: "reflog scan",
                        name: "REFLOG_SCAN_MAX",
                        limit: REFLOG_SCAN_MAX,
                    });
                }
                Err(ReadError::NoHeadAtTime { name: name.clone() })
            }
        }
    }

    /// The content refs of `keys` at a commit.
    pub(crate) fn refs_in<'k>(
        &self,
        commit: &Commit,
        keys: impl IntoIterator<Item = &'k ContentKey>,
    ) -> Result<HashMap<ContentKey, Option<ContentRef>>, ReadError> {
        let mut out = HashMap::new();
        for key in keys {
            let value = tree::get(self, commit.key_index, key.as_bytes())?;
            out.insert(key.clone(), value.map(|v| decode_ref(&v)).transpose()?);
        }
        Ok(out)
    }

    /// The content ref at one key of a commit.
    pub fn content_ref_at(
        &self,
        commit: Hash,
        key: &ContentKey,
    ) -> Result<Option<ContentRef>, ReadError> {
        let c = self.commit_object(&commit)?;
        let value = tree::get(self, c.key_index, key.as_bytes())?;
        value.map(|v| decode_ref(&v)).transpose()
    }

    /// The contents of many keys at a commit (`None` where a key is absent).
    pub fn get_contents(
        &self,
        commit: Hash,
        keys: &[ContentKey],
    ) -> Result<Vec<Option<(ContentRef, Content)>>, ReadError> {
        if keys.len() > GET_KEYS_MAX {
            return Err(ReadError::Bound {
                what: "keys in one get",
                name: "GET_KEYS_MAX",
                limit: GET_KEYS_MAX,
            });
        }
        let c = self.commit_object(&commit)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(match tree::get(self, c.key_index, key.as_bytes())? {
                Some(v) => {
                    let r = decode_ref(&v)?;
                    Some((r, self.content(&r.hash.0)?))
                }
                None => None,
            });
        }
        Ok(out)
    }

    /// The key that holds a content id at a commit, if any.
    pub fn key_of_id(
        &self,
        commit: Hash,
        id: &crate::content::ContentId,
    ) -> Result<Option<ContentKey>, ReadError> {
        let c = self.commit_object(&commit)?;
        match tree::get(self, c.id_index, &id.0)? {
            Some(k) => Ok(Some(
                ContentKey::from_stored(k).map_err(|e| corrupt_key(&e))?,
            )),
            None => Ok(None),
        }
    }

    /// Keys at or under `prefix` (all keys without one), after `after`, in key order.
    pub fn entries(
        &self,
        commit: Hash,
        prefix: Option<&ContentKey>,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> Result<Page<EntryRef, ContentKey>, ReadError> {
        let limit = limit.clamp(1, ENTRIES_PAGE_MAX);
        let c = self.commit_object(&commit)?;
        let (lo, hi) = range_of(prefix, after);
        let (raw, more) = tree::scan(self, c.key_index, &lo, hi.as_deref(), limit)?;
        let mut items = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            items.push(EntryRef {
                key: ContentKey::from_stored(k).map_err(|e| corrupt_key(&e))?,
                content: decode_ref(&v)?,
            });
        }
        let next = if more {
            items.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Calls `f` for every key at or under `prefix`, in order, until it returns false:
    /// the fast path for callers that stream whole listings.
    pub fn for_each_entry(
        &self,
        commit: Hash,
        prefix: Option<&ContentKey>,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), ReadError> {
        let c = self.commit_object(&commit)?;
        let (lo, hi) = range_of(prefix, None);
        tree::for_each(self, c.key_index, &lo, hi.as_deref(), |n, i| {
            f(n.key(i), n.value(i))
        })?;
        Ok(())
    }

    /// Changes from `from` to `to`, at or under `prefix`, after `after`, in key order.
    pub fn diff(
        &self,
        from: Hash,
        to: Hash,
        prefix: Option<&ContentKey>,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> Result<Page<KeyChange, ContentKey>, ReadError> {
        let limit = limit.clamp(1, ENTRIES_PAGE_MAX);
        let a = self.commit_object(&from)?;
        let b = self.commit_object(&to)?;
        let (lo, hi) = range_of(prefix, after);
        let (raw, more) = tree::diff(self, a.key_index, b.key_index, &lo, hi.as_deref(), limit)?;
        let items = decode_changes(raw)?;
        let next = if more {
            items.last().map(|c| c.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Every change between two index roots, refusing more than `CHANGES_PER_MERGE_MAX`.
    pub(crate) fn all_changes(
        &self,
        a: Option<Hash>,
        b: Option<Hash>,
    ) -> Result<Vec<KeyChange>, WriteError> {
        let (raw, more) = tree::diff(self, a, b, b"", None, CHANGES_PER_MERGE_MAX)?;
        if more {
            return Err(WriteError::Invalid(format!(
                "more than {CHANGES_PER_MERGE_MAX} keys changed (CHANGES_PER_MERGE_MAX); split the operation"
            )));
        }
        Ok(decode_changes(raw)?)
    }

    /// The keys a commit changed against its first parent (the root commit: everything).
    pub fn commit_changes(
        &self,
        commit: Hash,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> Result<Page<KeyChange, ContentKey>, ReadError> {
        let c = self.commit_object(&commit)?;
        let base = match c.first_parent() {
            Some(p) => self.commit_object(&p)?.key_index,
            None => None,
        };
        let limit = limit.clamp(1, ENTRIES_PAGE_MAX);
        let (lo, hi) = range_of(None, after);
        let (raw, more) = tree::diff(self, base, c.key_index, &lo, hi.as_deref(), limit)?;
        let items = decode_changes(raw)?;
        let next = if more {
            items.last().map(|c| c.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// First-parent history from `from` (or from the page token), newest first, keeping
    /// the commits that pass `filter`. Examines at most `LOG_SCAN_MAX` commits per call.
    pub fn log(
        &self,
        from: Hash,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Page<(Hash, Arc<Commit>), Hash>, ReadError> {
        let limit = limit.clamp(1, LOG_PAGE_MAX);
        let mut items = Vec::new();
        let mut next = Some(from);
        let mut scanned = 0;
        while let Some(h) = next {
            if items.len() == limit || scanned == LOG_SCAN_MAX {
                return Ok(Page {
                    items,
                    next: Some(h),
                });
            }
            scanned += 1;
            let c = self.commit_object(&h)?;
            next = c.first_parent();
            if !filter.matches_meta(&c) {
                continue;
            }
            if let Some(path) = &filter.path {
                let base = match c.first_parent() {
                    Some(p) => self.commit_object(&p)?.key_index,
                    None => None,
                };
                let (lo, hi) = path.subtree_range();
                let (changed, _) = tree::diff(self, base, c.key_index, &lo, Some(&hi), 1)?;
                if changed.is_empty() {
                    continue;
                }
            }
            items.push((h, c));
        }
        Ok(Page { items, next: None })
    }

    /// Reflog entries newest first, of one ref or all, with `seq < before`.
    pub fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ReflogEntry, u64>, ReadError> {
        let limit = limit.clamp(1, REFLOG_PAGE_MAX);
        let mut items = self.backend.reflog(name, before, limit + 1)?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The generation and parents of a commit, from the graph or storage.
    pub(crate) fn graph_entry(&self, h: &Hash) -> Result<GraphEntry, ReadError> {
        if let Some(e) = self.graph.lock().get(h) {
            return Ok(e.clone());
        }
        let c = self.commit_object(h)?;
        Ok(GraphEntry {
            parents: c.parents.clone(),
            generation: c.generation,
        })
    }

    pub fn is_ancestor(&self, ancestor: Hash, descendant: Hash) -> Result<bool, ReadError> {
        graph::is_ancestor(self, ancestor, descendant).map_err(walk_error)
    }

    pub fn merge_bases(&self, a: Hash, b: Hash) -> Result<Vec<Hash>, ReadError> {
        graph::merge_bases(self, a, b).map_err(walk_error)
    }

    // ----- the meta keyspace -----------------------------------------------------------

    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Bytes>, ReadError> {
        check_meta_key(key).map_err(ReadError::Invalid)?;
        Ok(self.backend.meta_get(key)?)
    }

    pub fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        check_meta(key, Some(value))?;
        Ok(self.backend.meta_put(key, value)?)
    }

    pub fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, WriteError> {
        check_meta(key, new)?;
        Ok(self.backend.meta_cas(key, expected, new)?)
    }

    pub fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ReadError> {
        check_meta_key(prefix).map_err(ReadError::Invalid)?;
        Ok(self
            .backend
            .meta_scan(prefix, after, limit.clamp(1, META_SCAN_PAGE_MAX))?)
    }

    /// The outcome recorded under an idempotency key, if a write carried it.
    pub fn idempotency_lookup(&self, key: &str) -> Result<Option<IdempotencyOutcome>, ReadError> {
        let mut k = IDEMPOTENCY_PREFIX.to_vec();
        k.extend_from_slice(key.as_bytes());
        let Some(bytes) = self.backend.meta_get(&k)? else {
            return Ok(None);
        };
        Ok(Some(decode_idempotency(&bytes)?))
    }

    /// Up to `limit` recorded idempotency outcomes with keys after `after`, in key order,
    /// each with its stored bytes (to remove it only if unchanged): what retention scans.
    pub fn idempotency_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, IdempotencyOutcome, Bytes)>, ReadError> {
        let after = after.map(|a| [IDEMPOTENCY_PREFIX, a.as_bytes()].concat());
        let page = self.meta_scan(IDEMPOTENCY_PREFIX, after.as_deref(), limit)?;
        page.into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(&k[IDEMPOTENCY_PREFIX.len()..]).into_owned();
                Ok((key, decode_idempotency(&v)?, v))
            })
            .collect()
    }

    /// Removes a recorded idempotency outcome if its stored bytes are still `stored`.
    pub fn remove_idempotency(&self, key: &str, stored: &[u8]) -> Result<bool, WriteError> {
        let k = [IDEMPOTENCY_PREFIX, key.as_bytes()].concat();
        self.meta_cas(&k, Some(stored), None)
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
            .backend
            .get_object(hash)
            .map_err(|e| TreeError::Read(e.message))?
            .ok_or(TreeError::Missing(*hash))?;
        let node = Arc::new(Node::decode(bytes)?);
        self.nodes.insert(*hash, node.clone());
        Ok(node)
    }
}

impl GraphSource for Store {
    type Error = ReadError;
    fn entry(&self, h: &Hash) -> Result<GraphEntry, ReadError> {
        self.graph_entry(h)
    }
}

fn walk_error(e: WalkError<ReadError>) -> ReadError {
    match e {
        WalkError::TooLong => ReadError::Bound {
            what: "ancestry walk",
            name: "MERGE_BASE_VISITS_MAX",
            limit: MERGE_BASE_VISITS_MAX,
        },
        WalkError::Load(e) => e,
    }
}

pub(crate) fn decode_ref(v: &[u8]) -> Result<ContentRef, ReadError> {
    ContentRef::decode(v).map_err(|e| {
        ReadError::Storage(StorageError::Corrupt {
            hash: Hash::from_bytes([0; 32]),
            reason: e.0.to_owned(),
        })
    })
}

fn corrupt_key(e: &crate::key::KeyError) -> ReadError {
    ReadError::Storage(StorageError::Corrupt {
        hash: Hash::from_bytes([0; 32]),
        reason: format!("stored key: {e}"),
    })
}

fn decode_changes(raw: Vec<tree::Change>) -> Result<Vec<KeyChange>, ReadError> {
    raw.into_iter()
        .map(|c| {
            Ok(KeyChange {
                key: ContentKey::from_stored(c.key).map_err(|e| corrupt_key(&e))?,
                before: c.before.map(|v| decode_ref(&v)).transpose()?,
                after: c.after.map(|v| decode_ref(&v)).transpose()?,
            })
        })
        .collect()
}

/// The byte range of a listing: at or under `prefix`, strictly after `after`.
fn range_of(prefix: Option<&ContentKey>, after: Option<&ContentKey>) -> (Vec<u8>, Option<Vec<u8>>) {
    let (mut lo, hi) = match prefix {
        Some(p) => {
            let (lo, hi) = p.subtree_range();
            (lo.to_vec(), Some(hi.to_vec()))
        }
        None => (Vec::new(), None),
    };
    if let Some(a) = after {
        // The smallest byte string greater than `a`.
        let mut past = a.as_bytes().to_vec();
        past.push(0);
        if past > lo {
            lo = past;
        }
    }
    (lo, hi)
}

pub(crate) fn reference_conflict(
    name: &RefName,
    expected: Option<Hash>,
    current: Option<Hash>,
) -> WriteError {
    WriteError::ReferenceConflict {
        name: name.clone(),
        expected,
        current,
    }
}

/// The strict expected-head rule of every write but `commit`: a given head must be the
/// current one.
pub(crate) fn check_expected(
    name: &RefName,
    expected: Option<Hash>,
    head: Hash,
) -> Result<(), WriteError> {
    match expected {
        Some(e) if e != head => Err(reference_conflict(name, Some(e), Some(head))),
        _ => Ok(()),
    }
}

/// After losing a compare-and-swap race: with an expected head, the write is refused
/// (strict); without one, the caller recomputes at the new head.
pub(crate) fn lost_race(
    name: &RefName,
    expected: Option<Hash>,
    current: Option<RefRecord>,
) -> Result<(), WriteError> {
    match (expected, current) {
        (_, None) => Err(WriteError::RefNotFound(name.clone())),
        (Some(_), Some(r)) => Err(reference_conflict(name, expected, Some(r.head))),
        (None, Some(_)) => Ok(()),
    }
}

pub(crate) fn contention(name: &RefName) -> WriteError {
    WriteError::Contention(name.clone())
}

/// A wait for durability that failed (the store is poisoned): what was written may or may
/// not survive.
fn outcome_unknown(e: crate::backend::BackendError) -> WriteError {
    WriteError::Storage(StorageError::Backend(crate::backend::BackendError {
        outcome_unknown: true,
        ..e
    }))
}

/// A storage failure before any ref moved: nothing persisted is visible.
fn not_applied(e: crate::backend::BackendError) -> WriteError {
    WriteError::Storage(StorageError::Backend(crate::backend::BackendError {
        outcome_unknown: false,
        ..e
    }))
}

fn check_principal(principal: &str) -> Result<(), WriteError> {
    if principal.len() > PRINCIPAL_BYTES_MAX {
        return Err(WriteError::Invalid(format!(
            "a principal is at most {PRINCIPAL_BYTES_MAX} bytes (PRINCIPAL_BYTES_MAX), got {}",
            principal.len()
        )));
    }
    Ok(())
}

fn check_meta_key(key: &[u8]) -> Result<(), String> {
    if key.len() > META_KEY_BYTES_MAX {
        return Err(format!(
            "a meta key is at most {META_KEY_BYTES_MAX} bytes (META_KEY_BYTES_MAX), got {}",
            key.len()
        ));
    }
    Ok(())
}

fn check_meta(key: &[u8], value: Option<&[u8]>) -> Result<(), WriteError> {
    check_meta_key(key).map_err(WriteError::Invalid)?;
    if let Some(v) = value
        && v.len() > VALUE_BYTES_MAX
    {
        return Err(WriteError::Invalid(format!(
            "a meta value is at most {VALUE_BYTES_MAX} bytes (VALUE_BYTES_MAX), got {}",
            v.len()
        )));
    }
    Ok(())
}

fn decode_idempotency(bytes: &[u8]) -> Result<IdempotencyOutcome, ReadError> {
    let mut r = Reader::bare(bytes);
    let parse = |r: &mut Reader<'_>| -> Result<IdempotencyOutcome, crate::encoding::DecodeError> {
        let value = r.bytes()?.to_vec();
        let ref_name = r.str()?.to_owned();
        let hash = |r: &mut Reader<'_>| -> Result<Option<Hash>, _> {
            Ok(match r.u8()? {
                0 => None,
                _ => Some(Hash::from_bytes(r.array()?)),
            })
        };
        let head = hash(r)?;
        let previous = hash(r)?;
        Ok(IdempotencyOutcome {
            value,
            ref_name,
            head,
            previous,
        })
    };
    parse(&mut r).map_err(|e| {
        ReadError::Storage(StorageError::Corrupt {
            hash: Hash::from_bytes([0; 32]),
            reason: e.0.to_owned(),
        })
    })
}

fn idempotency_write(
    i: &Idempotency,
    name: &RefName,
    previous: Option<Hash>,
    head: Option<Hash>,
) -> Result<MetaWrite, WriteError> {
    let mut key = IDEMPOTENCY_PREFIX.to_vec();
    key.extend_from_slice(i.key.as_bytes());
    let mut w = Writer::bare();
    w.bytes(&i.value);
    w.str(name.as_str());
    for hash in [head, previous] {
        match hash {
            None => w.u8(0),
            Some(h) => {
                w.u8(1);
                w.raw(h.as_bytes());
            }
        }
    }
    let value = w.finish();
    check_meta(&key, Some(&value))?;
    Ok(MetaWrite {
        key: Bytes::from(key),
        value: Bytes::from(value),
    })
}
