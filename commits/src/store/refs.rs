//! Refs: reading and listing them, and the writes that only move a ref (create, assign,
//! delete), each answered once what it was computed from is durable (`Store::settled`).
//! Here too are the rules every ref move shares: who may write a ref, the strict
//! expected-head rule, what a lost compare-and-swap race means, and `move_ref`, the one
//! compare-and-swap with its reflog entry.
//!
//! Tags are refs whose head never moves: `assign` refuses them, and `pending_branch`
//! keeps every landing off them.

use std::collections::BTreeMap;

use super::meta::idempotency_write;
use super::{Page, Store, WriteCtx};
use crate::backend::{CasOutcome, RefOperation, RefRecord, RefUpdate, RefView, ReflogEntry};
use crate::error::{ReadError, WriteError};
use crate::hash::Hash;
use crate::limits::{COMMIT_CAS_RETRIES_MAX, PRINCIPAL_BYTES_MAX, REFS_PAGE_MAX};
use crate::name::{RefKind, RefName};

impl Store {
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
