//! Refs: reading and listing them, and the writes that only move a ref (create, assign,
//! delete), each answered once what it was computed from is durable (`Store::settled`).
//! Here too are the rules every ref move shares: who may write a ref, the strict
//! expected-head rule, what a lost compare-and-swap race means, and `move_ref`, the one
//! compare-and-swap with its reflog entry.
//!
//! Tags are refs whose head never moves: `assign` refuses them, and `pending_branch`
//! keeps every landing off them.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::meta::idempotency_write;
use super::{Page, Store, WriteCtx};
use crate::backend::{CasOutcome, RefOperation, RefRecord, RefUpdate, RefView, ReflogEntry};
use crate::error::{ReadError, WriteError};
use crate::hash::Hash;
use crate::limits::{COMMIT_CAS_RETRIES_MAX, PRINCIPAL_BYTES_MAX, REFS_PAGE_MAX};
use crate::name::{RefKind, RefName};

impl Store {
    /// A ref as clients see it (its durable head).
    ///
    /// Inside an inline read (`crate::inline`) a ref pinned for the run is answered from
    /// its pin; on a store whose refs are not in memory any other ref is refused and noted
    /// as wanted, so that the caller reads it without blocking and runs the read again.
    pub fn get_ref(&self, name: &RefName) -> Result<RefRecord, ReadError> {
        let record = match crate::inline::pinned_ref(name) {
            Some(pinned) => pinned,
            None => {
                if !self.backend.reads_from_memory() && !crate::inline::may_read_ref(name) {
                    return Err(ReadError::Invalid(crate::inline::REFUSED.to_owned()));
                }
                self.backend.get_ref(name, RefView::Durable)?
            }
        };
        record.ok_or_else(|| ReadError::RefNotFound(name.clone()))
    }

    /// Reads refs without blocking the calling thread, for an inline read to pin
    /// (`crate::inline::run_inline_with`); `None` where the backend has no such path.
    pub fn read_refs_async(&self, names: Vec<RefName>) -> Option<crate::backend::RefsFuture> {
        self.backend.read_refs_async(names)
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
        self.named_commit(&target)?;
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
            Moved::Applied { ticket, .. } => {
                self.acknowledge(ticket)?;
                Ok(record)
            }
            Moved::Mismatch { .. } => Err(WriteError::RefAlreadyExists(name.clone())),
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
                Moved::Applied { ticket, .. } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(());
                }
                Moved::Mismatch { current: now } => lost_race(name, expected_head, now)?,
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
        self.named_commit(&target)?;
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
                Moved::Applied { ticket, .. } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(record);
                }
                Moved::Mismatch { current: now } => lost_race(name, expected_head, now)?,
            }
        }
        Err(contention(name))
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
    ) -> Result<Moved, WriteError> {
        let change = RefChange {
            name,
            kind,
            expected,
            new,
            operation,
        };
        self.move_ref_writing(change, ctx, properties, Vec::new())
    }

    /// `move_ref`, writing `objects` in the same atomic write (`RefUpdate::objects`).
    pub(crate) fn move_ref_writing(
        &self,
        change: RefChange<'_>,
        ctx: &WriteCtx,
        properties: BTreeMap<String, String>,
        objects: Vec<(Hash, Bytes)>,
    ) -> Result<Moved, WriteError> {
        let RefChange {
            name,
            kind,
            expected,
            new,
            operation,
        } = change;
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
            fence: ctx
                .fence
                .as_ref()
                .map(|f| (Bytes::from(f.key.clone()), Bytes::from(f.value.clone()))),
            objects,
        };
        match self.backend.compare_and_swap_ref(update)? {
            CasOutcome::Applied { ticket, .. } => Ok(Moved::Applied { ticket }),
            CasOutcome::Mismatch { current } => Ok(Moved::Mismatch { current }),
            CasOutcome::ClaimLost => Err(WriteError::ClaimLost(
                ctx.idempotency
                    .as_ref()
                    .map(|i| i.key.clone())
                    .unwrap_or_default(),
            )),
            CasOutcome::FenceLost => Err(WriteError::Fenced(
                ctx.fence
                    .as_ref()
                    .map(|f| f.lost.clone())
                    .unwrap_or_else(|| "the write's fence no longer holds".to_owned()),
            )),
        }
    }
}

/// What a ref move changes: `name` (of `kind`) from `expected` to `new` (`None`: absent).
pub(crate) struct RefChange<'a> {
    pub(crate) name: &'a RefName,
    pub(crate) kind: RefKind,
    pub(crate) expected: Option<Hash>,
    pub(crate) new: Option<RefRecord>,
    pub(crate) operation: RefOperation,
}

/// A ref move that wrote or found the ref elsewhere (a lost claim is an error).
#[derive(Debug)]
pub(crate) enum Moved {
    Applied { ticket: u64 },
    Mismatch { current: Option<RefRecord> },
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

pub(super) fn check_principal(principal: &str) -> Result<(), WriteError> {
    if principal.len() > PRINCIPAL_BYTES_MAX {
        return Err(WriteError::Invalid(format!(
            "a principal is at most {PRINCIPAL_BYTES_MAX} bytes (PRINCIPAL_BYTES_MAX), got {}",
            principal.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryBackend;

    fn store() -> Store {
        Store::open(
            Arc::new(MemoryBackend::new()),
            Arc::new(ManualClock::new(7)),
        )
        .unwrap()
    }

    fn name(s: &str) -> RefName {
        RefName::parse(s).unwrap()
    }

    #[test]
    fn a_given_expected_head_must_be_the_current_one() {
        let main = name("main");
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        assert_eq!(check_expected(&main, None, a), Ok(()));
        assert_eq!(check_expected(&main, Some(a), a), Ok(()));
        assert_eq!(
            check_expected(&main, Some(b), a),
            Err(WriteError::ReferenceConflict {
                name: main,
                expected: Some(b),
                current: Some(a),
            })
        );
    }

    #[test]
    fn a_lost_race_is_a_refusal_only_for_a_strict_write() {
        let main = name("main");
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        let record = |head| RefRecord {
            kind: RefKind::Branch,
            head,
            created_by: String::new(),
            created_at_ms: 0,
            attributes: BTreeMap::new(),
        };
        // Without an expected head the writer recomputes at the new head.
        assert_eq!(lost_race(&main, None, Some(record(b))), Ok(()));
        assert_eq!(
            lost_race(&main, Some(a), Some(record(b))),
            Err(reference_conflict(&main, Some(a), Some(b)))
        );
        // The ref went away: nothing to recompute at, whatever was expected.
        for expected in [None, Some(a)] {
            assert_eq!(
                lost_race(&main, expected, None),
                Err(WriteError::RefNotFound(main.clone()))
            );
        }
    }

    #[test]
    fn run_branches_belong_to_the_executor() {
        let store = store();
        let run = name("floe-run/1");
        let root = Store::root_commit();
        let user = WriteCtx::principal("alice");
        assert_eq!(
            store.create_ref(&run, RefKind::Branch, root, &user),
            Err(WriteError::ReservedRef(run.clone()))
        );
        let executor = WriteCtx {
            executor: true,
            ..WriteCtx::principal("floe")
        };
        store
            .create_ref(&run, RefKind::Branch, root, &executor)
            .unwrap();
        for refused in [
            store.assign(&run, None, root, &user).map(|_| ()),
            store.delete_ref(&run, None, &user),
            store.pending_branch(&run, &user).map(|_| ()),
        ] {
            assert_eq!(refused, Err(WriteError::ReservedRef(run.clone())));
        }
        store.delete_ref(&run, Some(root), &executor).unwrap();
    }

    #[test]
    fn tags_never_move_and_never_take_a_landing() {
        let store = store();
        let tag = name("v1");
        let root = Store::root_commit();
        let who = WriteCtx::principal("alice");
        let created = store.create_ref(&tag, RefKind::Tag, root, &who).unwrap();
        assert_eq!(
            (created.kind, created.head, created.created_at_ms),
            (RefKind::Tag, root, 7)
        );
        assert_eq!(
            store.assign(&tag, None, root, &who),
            Err(WriteError::TagImmutable(tag.clone()))
        );
        assert_eq!(
            store.pending_branch(&tag, &who).map(|_| ()),
            Err(WriteError::NotABranch(tag.clone()))
        );
        assert_eq!(
            store.create_ref(&tag, RefKind::Tag, root, &who),
            Err(WriteError::RefAlreadyExists(tag.clone()))
        );
        // A tag is deleted like a branch (and may then be created again elsewhere).
        store.delete_ref(&tag, Some(root), &who).unwrap();
        assert_eq!(
            store.get_ref(&tag),
            Err(ReadError::RefNotFound(tag.clone()))
        );
    }

    #[test]
    fn a_ref_names_an_existing_commit_and_a_bounded_principal() {
        let store = store();
        let dev = name("dev");
        let missing = Hash::of(b"no such commit");
        let who = WriteCtx::principal("alice");
        assert_eq!(
            store.create_ref(&dev, RefKind::Branch, missing, &who),
            Err(WriteError::CommitNotFound(missing))
        );
        let long = WriteCtx::principal("p".repeat(PRINCIPAL_BYTES_MAX + 1));
        assert!(matches!(
            store.create_ref(&dev, RefKind::Branch, Store::root_commit(), &long),
            Err(WriteError::Invalid(m)) if m.contains("PRINCIPAL_BYTES_MAX")
        ));
        let at_bound = WriteCtx::principal("p".repeat(PRINCIPAL_BYTES_MAX));
        store
            .create_ref(&dev, RefKind::Branch, Store::root_commit(), &at_bound)
            .unwrap();
    }

    #[test]
    fn a_move_logs_its_operation_principal_and_the_writers_properties() {
        let store = store();
        let main = name("main");
        let root = Store::root_commit();
        let ctx = WriteCtx {
            reflog: BTreeMap::from([("floe.run".to_owned(), "r1".to_owned())]),
            ..WriteCtx::principal("alice")
        };
        let record = store.get_ref(&main).unwrap();
        let own = BTreeMap::from([("floe.own".to_owned(), "x".to_owned())]);
        let moved = store
            .move_ref(
                &main,
                RefKind::Branch,
                Some(root),
                Some(record.clone()),
                RefOperation::Assign,
                &ctx,
                own,
            )
            .unwrap();
        assert!(matches!(moved, Moved::Applied { .. }));
        let entry = store.reflog(Some(&main), None, 1).unwrap().items.remove(0);
        assert_eq!(
            (
                entry.operation,
                entry.principal.as_str(),
                entry.old,
                entry.new
            ),
            (RefOperation::Assign, "alice", Some(root), Some(root))
        );
        assert_eq!(
            entry.properties.get("floe.run").map(String::as_str),
            Some("r1")
        );
        assert_eq!(
            entry.properties.get("floe.own").map(String::as_str),
            Some("x")
        );
        // A stale expected head moves nothing and reports the current record.
        let stale = store
            .move_ref(
                &main,
                RefKind::Branch,
                Some(Hash::of(b"stale")),
                Some(record),
                RefOperation::Assign,
                &ctx,
                BTreeMap::new(),
            )
            .unwrap();
        assert!(matches!(stale, Moved::Mismatch { current: Some(r) } if r.head == root));
    }
}
