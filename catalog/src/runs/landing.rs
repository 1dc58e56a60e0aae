//! Landing a run on its target (the landing rule), settling it, and telling its work
//! from its landing: sealing and recovery (DESIGN §5).
//!
//! A landing commit is identified by the run's record (`landed`) and, until the record says
//! so, by the target's reflog entry of the landing's move, which carries the run id: a
//! property only the landing's own write sets (a user's write cannot set `floe.*`
//! properties, and no commit property reaches the reflog). Commit properties alone
//! identify nothing.

use std::collections::BTreeMap;

use floe_commits::limits::REFLOG_PAGE_MAX;
use floe_commits::{
    Conflict, ConflictKind, Content, ContentKey, ContentKind, ContentRef, Expect, Fence, Hash, Op,
    RefName, Resolved, WriteCtx, WriteError,
};

use super::{
    LiveWrite, RECORD_PREFIX, RUN_ID_PROPERTY, RUN_PART_PROPERTY, RUN_SOURCE_PROPERTY, RunRecord,
    RunState, bounded, ended_elsewhere, invalid_record,
};
use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::limits::{
    LANDING_CLOCK_SLACK_MS, LANDING_REFLOG_SCAN_MAX, META_PAGE_MAX, RUN_ERROR_BYTES_MAX,
};
use crate::table_merge::{TableMerge, TableMergeOptions};
use crate::{Authored, Catalog};

/// What a landing writes and reads.
#[derive(Debug, Clone, Default)]
pub struct Landing {
    /// Keys the run materialized on its branch.
    pub outputs: Vec<ContentKey>,
    /// Catalog keys the run read (checked unchanged since the fork).
    pub inputs: Vec<ContentKey>,
    /// The outputs written by appending rows (a run's `APPEND`, an import in append
    /// mode): where the target changed such a table since the fork by appends only, the
    /// output lands merged with them (the Iceberg-aware merge) instead of conflicting.
    pub appends: Vec<ContentKey>,
    pub message: String,
    /// The request's idempotency key: recorded with the landing commit (detail: the run
    /// id), so a retry finds the run.
    pub idempotency: Option<crate::IdemRequest>,
    /// What the run answers; stored beside its record before it lands.
    pub answer: Option<serde_json::Value>,
}

/// A landed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The landing commit on the target.
    pub commit: Hash,
    /// Bookkeeping after the landing that failed: the run landed all the same, and its
    /// record is settled by the next maintenance pass or restart. The caller says so to
    /// the client; it is never only a log line.
    pub bookkeeping_error: Option<String>,
}

impl Catalog {
    /// Lands a run on its target as one commit (the landing rule), marks it succeeded and
    /// deletes its branch. A conflict leaves the target as it was; the caller fails the
    /// run. The answer is stored (and the record points at it) before the landing, so a
    /// run whose answer cannot be kept never lands.
    pub fn land_run(
        &self,
        executor: &Principal,
        record: &RunRecord,
        landing: &Landing,
        authored: &Authored,
    ) -> CatalogResult<Landed> {
        let mut record = record.clone();
        if let Some(answer) = &landing.answer {
            record.stored_answer = Some(self.store_answer(&record.id, answer)?);
            // Only over its live record: one settled meanwhile is never put back.
            self.save_run(executor, &record)?;
        }
        let outcome = self.landing_commit_of(executor, &record, landing, authored, false)?;
        // Landed: whatever happens to the bookkeeping now, the run succeeded.
        let bookkeeping_error = self
            .finish_run(&record, RunState::Succeeded, Some(outcome), None)
            .err()
            .map(|e| {
                format!(
                    "run {} landed as {}, but its record could not say so yet ({e}); the server settles it on its next maintenance pass or restart",
                    record.id, outcome
                )
            });
        Ok(Landed {
            commit: outcome,
            bookkeeping_error,
        })
    }

    /// Lands part of a run's work now, leaving the run running (`floe run
    /// --no-transaction`: each output lands as it is written). Returns the commit.
    ///
    /// A part is the target's own history at once, whatever becomes of the run: it carries
    /// `floe.run.part`, not `floe.run.id`, so it is never sealed, and it is never taken for
    /// the run's landing (a run that fails after a part landed is failed, not succeeded).
    pub fn land_run_part(
        &self,
        executor: &Principal,
        record: &RunRecord,
        landing: &Landing,
        authored: &Authored,
    ) -> CatalogResult<Hash> {
        self.landing_commit_of(executor, record, landing, authored, true)
    }

    /// Marks a run succeeded with nothing (more) to land: a dry run, a run that
    /// materializes nothing, or a `--no-transaction` run whose last part landed as
    /// `landed`. Its branch is deleted.
    pub fn succeed_run(
        &self,
        executor: &Principal,
        record: &RunRecord,
        landed: Option<Hash>,
    ) -> CatalogResult<()> {
        self.may_keep_run(executor, record, false)?;
        self.finish_run(record, RunState::Succeeded, landed, None)
    }

    /// The landing commit itself (the landing rule), on the run's target.
    fn landing_commit_of(
        &self,
        executor: &Principal,
        record: &RunRecord,
        landing: &Landing,
        authored: &Authored,
        part: bool,
    ) -> CatalogResult<Hash> {
        let target = record.target_ref()?;
        // Asked again as it lands: a right taken away (or a token revoked) while the run
        // worked stops its landing. An import writes its table; a pipeline run needs `run`.
        let action = match record.kind {
            super::RunKind::Import => Action::Commit,
            super::RunKind::Run => Action::Run,
        };
        self.authorize(&executor.outside_run(), action, Target::on_ref(&target))?;
        let ops = self.landing_ops(record, landing)?;
        let mut meta = self.meta(executor, authored, landing.message.clone());
        let names = if part {
            meta.properties.remove(RUN_ID_PROPERTY);
            RUN_PART_PROPERTY
        } else {
            RUN_ID_PROPERTY
        };
        meta.properties.insert(names.to_owned(), record.id.clone());
        meta.properties
            .insert(RUN_SOURCE_PROPERTY.to_owned(), record.source.clone());
        // The landing is the principal's own write on the target; its reflog entry names
        // the run (how recovery and sealing recognise it; a part's names it as a part).
        // Fenced on the run's owner token: whoever ended the run meanwhile (a cancel, or a
        // server that settled it after its owner's lease ran out) removed it first, and a
        // paused owner lands nothing.
        // The same fence as the executor's other writes (`Catalog::write_ctx`), saying so.
        let fence = Fence {
            lost: format!(
                "run {} was ended before its landing applied (cancelled, or settled by another server while this one ({}) could not renew its lease); nothing of it landed",
                record.id, self.server_id
            ),
            ..super::owner_fence(&record.id, &self.server_id)
        };
        let ctx = WriteCtx {
            executor: false,
            reflog: BTreeMap::from([(names.to_owned(), record.id.clone())]),
            fence: Some(fence),
            ..self.write_ctx(executor, landing.idempotency.as_ref(), &record.id)
        };
        Ok(self.store.commit(&target, None, ops, meta, &ctx)?.commit)
    }

    /// The landing rule's operations: each output `Put` expecting its content at the fork
    /// (or `Absent`, with a `Check` of its namespace), each input a `Check` of its content
    /// at the fork.
    fn landing_ops(&self, record: &RunRecord, landing: &Landing) -> CatalogResult<Vec<Op>> {
        let fork = record.fork_hash()?;
        let head = self.store.get_ref(&record.branch())?.head;
        let target_head = self.store.get_ref(&record.target_ref()?)?.head;
        let mut ops = Vec::new();
        let at_head = self.store.get_contents(head, &landing.outputs)?;
        let at_fork = self.store.get_contents(fork, &landing.outputs)?;
        for ((key, now), before) in landing.outputs.iter().zip(at_head).zip(at_fork) {
            let Some((now_ref, content)) = now else {
                return Err(CatalogError::Invalid(format!(
                    "run {} did not materialize {key}",
                    record.id
                )));
            };
            let (run_ref, content): (ContentRef, Content) = (now_ref, content);
            if let Some((r, _)) = &before
                && landing.appends.contains(key)
                && let Some(op) = self.append_landing(key, r, &run_ref, target_head)?
            {
                ops.push(op);
                continue;
            }
            match before {
                Some((r, _)) => ops.push(Op::Put {
                    key: key.clone(),
                    content,
                    expect: Expect::Is(r.hash),
                }),
                None => {
                    ops.push(Op::Put {
                        key: key.clone(),
                        content,
                        expect: Expect::Absent,
                    });
                    // One check per namespace, however many new tables go in it.
                    if let Some(parent) = key.parent()
                        && !landing.outputs.contains(&parent)
                        && !ops
                            .iter()
                            .any(|op| matches!(op, Op::Check { key, .. } if *key == parent))
                    {
                        ops.push(Op::Check {
                            key: parent,
                            expect: Expect::Present,
                        });
                    }
                }
            }
        }
        let inputs = self.store.get_contents(fork, &landing.inputs)?;
        for (key, before) in landing.inputs.iter().zip(inputs) {
            if landing.outputs.contains(key)
                || ops
                    .iter()
                    .any(|op| matches!(op, Op::Check { key: k, .. } if k == key))
            {
                continue;
            }
            ops.push(Op::Check {
                key: key.clone(),
                expect: before.map_or(Expect::Absent, |(r, _)| Expect::Is(r.hash)),
            });
        }
        Ok(ops)
    }

    /// An append output whose table the target changed since the fork: the merged table
    /// (`Put` expecting the target's table as it is now), when the target changed it by
    /// appends only; `None` for the plain landing rule: when the target did not change
    /// it, or when any side holds another table (another id) or other content there.
    fn append_landing(
        &self,
        key: &ContentKey,
        at_fork: &ContentRef,
        run: &ContentRef,
        target_head: Hash,
    ) -> CatalogResult<Option<Op>> {
        let Some(now) = self.store.content_ref_at(target_head, key)? else {
            return Ok(None);
        };
        let tables = [at_fork, run, &now]
            .iter()
            .all(|r| r.kind == ContentKind::IcebergTable);
        if now.hash == at_fork.hash || now.id != at_fork.id || run.id != at_fork.id || !tables {
            return Ok(None);
        }
        let options = TableMergeOptions {
            target_appends_only: true,
            ..TableMergeOptions::default()
        };
        match TableMerge::new(self, options, false).resolve_table(key, at_fork, run, &now)? {
            Resolved::Content(content) => Ok(Some(Op::Put {
                key: key.clone(),
                content,
                expect: Expect::Is(now.hash),
            })),
            Resolved::KeepTarget => Ok(Some(Op::Check {
                key: key.clone(),
                expect: Expect::Is(now.hash),
            })),
            Resolved::TakeSource => Ok(Some(Op::Put {
                key: key.clone(),
                content: self.store.content(&run.hash.0)?,
                expect: Expect::Is(now.hash),
            })),
            Resolved::Conflict(reason) => Err(CatalogError::Write(WriteError::Conflict {
                head: target_head,
                conflicts: vec![Conflict {
                    reason: Some(Box::new(reason)),
                    ..Conflict::new(key.clone(), ConflictKind::BothChanged).with_actual(Some(&now))
                }],
            })),
        }
    }

    /// Marks a run failed; its branch stays, sealed.
    /// (If its landing commit is on the target after all, say after a write whose outcome
    /// was unknown, the run succeeded.)
    pub fn fail_run(
        &self,
        executor: &Principal,
        record: &RunRecord,
        error: &str,
    ) -> CatalogResult<()> {
        self.may_keep_run(executor, record, false)?;
        self.end_unlanded(record, RunState::Failed, error)
    }

    /// Marks a run cancelled; its branch (if it forked) stays, sealed like a failed run's.
    /// A run another live server executes is asked to stop instead (`request_cancel`).
    /// (A run whose landing commit is on the target after all succeeded.)
    pub fn cancel_run(
        &self,
        principal: &Principal,
        record: &RunRecord,
        why: &str,
    ) -> CatalogResult<()> {
        self.may_keep_run(principal, record, true)?;
        if self.owner_alive_elsewhere(record)? {
            // Another live server executes it: asked through the catalog, that server
            // stops it and records it.
            return self.request_cancel(record, why);
        }
        self.end_unlanded(record, RunState::Cancelled, why)
    }

    /// Ends a run that did not land as `state`, saying why; one whose landing commit is on
    /// the target after all succeeded.
    pub(super) fn end_unlanded(
        &self,
        record: &RunRecord,
        state: RunState,
        why: &str,
    ) -> CatalogResult<()> {
        // The stored record may know more than the caller's copy (its answer).
        let record = &self
            .record_of(&record.id)?
            .unwrap_or_else(|| record.clone());
        if !record.state.is_live() {
            // It ended already (another server settled it while its own was paused, say):
            // whoever ended it decided.
            return Ok(());
        }
        // The owner's hold goes first: from then on no landing of the run applies, so what
        // the reflog says next is final.
        self.revoke_owner(&record.id)?;
        if let Some(commit) = self.landing_commit(record)? {
            return self.finish_run(record, RunState::Succeeded, Some(commit), None);
        }
        self.finish_run(record, state, None, Some(bounded(why, RUN_ERROR_BYTES_MAX)))
    }

    pub(super) fn finish_run(
        &self,
        record: &RunRecord,
        state: RunState,
        landed: Option<Hash>,
        error: Option<String>,
    ) -> CatalogResult<()> {
        let done = RunRecord {
            state,
            finished_ms: Some(self.now_ms()),
            landed: landed.map(|h| h.to_hex()),
            error: error.map(|e| bounded(&e, RUN_ERROR_BYTES_MAX)),
            ..record.clone()
        };
        // Only over a live record: one that ended meanwhile keeps its outcome (the same
        // one is taken as written).
        match self.write_live_record(&record.id, None, |_| done.clone())? {
            LiveWrite::Written => {}
            LiveWrite::Ended(current)
                if current.state == state && current.landed == done.landed => {}
            LiveWrite::Ended(current) => return Err(ended_elsewhere(&record.id, current.state)),
            LiveWrite::Gone => {
                return Err(CatalogError::Write(WriteError::Fenced(format!(
                    "the record of run {} is gone (past its retention); its outcome was not recorded",
                    record.id
                ))));
            }
        }
        if state == RunState::Succeeded {
            self.delete_run_branch(record)?;
        }
        Ok(())
    }

    /// Deletes a run's branch (as its executor, the only writer of `floe-run/` refs); false
    /// when it was gone already.
    pub(super) fn delete_run_branch(&self, record: &RunRecord) -> CatalogResult<bool> {
        let executor = Principal::named(record.principal.clone()).in_run(&record.id);
        // Not fenced: whoever ends a run (its owner, or a server that settled it) deletes
        // its branch after the owner token went.
        let ctx = WriteCtx {
            fence: None,
            ..self.write_ctx(&executor, None, "")
        };
        match self.store.delete_ref(&record.branch(), None, &ctx) {
            Ok(()) => Ok(true),
            Err(floe_commits::WriteError::RefNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a commit of a failed or cancelled run (409 `RunSealed`), unless promoted. A
    /// run's landing commit is its target's own history, whatever became of the run.
    pub(crate) fn check_not_sealed(&self, commit: Hash) -> CatalogResult<()> {
        let object = self.store.commit_object(&commit)?;
        let Some(id) = object.properties.get(RUN_ID_PROPERTY) else {
            return Ok(());
        };
        let Some(record) = self.record_of(id)? else {
            // Its record expired (retention): a landing commit is still its target's own
            // history; any other commit of the run is work nobody may use any more.
            if object.properties.contains_key(RUN_SOURCE_PROPERTY) {
                return Ok(());
            }
            return Err(CatalogError::RunExpired {
                run: id.clone(),
                commit,
            });
        };
        if !record.sealed() || record.landed_hash() == Some(commit) {
            return Ok(());
        }
        // A landing whose record does not say so yet (it is settled on the next pass):
        // recognised by its reflog entry, never by its properties alone.
        if object.properties.contains_key(RUN_SOURCE_PROPERTY)
            && self.landing_commit(&record)? == Some(commit)
        {
            return Ok(());
        }
        Err(CatalogError::RunSealed {
            run: record.id,
            commit,
            state: record.state,
        })
    }

    /// Settles runs a stopped server left running: succeeded when the landing commit is on
    /// the target, failed otherwise. Returns the runs it settled. Called once at start,
    /// before anything runs: the runs of this server's earlier life, and of servers
    /// whose lease ran out (servers sharing the catalog). The runs of live servers are
    /// theirs. (While runs are live, the maintenance pass settles the ones that landed,
    /// and those of servers that stopped renewing their lease.)
    pub fn recover_runs(&self, principal: &Principal) -> CatalogResult<Vec<RunRecord>> {
        self.authorize(principal, Action::Maintain, Target::default())?;
        let mut settled = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .meta_scan(RECORD_PREFIX.as_bytes(), after.as_deref(), META_PAGE_MAX)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.to_vec());
            for (_, bytes) in &page {
                let record: RunRecord = serde_json::from_slice(bytes).map_err(invalid_record)?;
                if !record.state.is_live() || self.owner_alive_elsewhere(&record)? {
                    continue;
                }
                match self.landing_commit(&record)? {
                    Some(commit) => {
                        self.finish_run(&record, RunState::Succeeded, Some(commit), None)?
                    }
                    // Another server's (its lease ran out): fenced on what was read.
                    None if let Some(owner) = record.owner.as_deref()
                        && owner != self.server_id() =>
                    {
                        if !self.settle_orphan(&record, bytes, owner)? {
                            continue;
                        }
                    }
                    None => self.end_unlanded(
                        &record,
                        RunState::Failed,
                        "the server stopped before the run finished; nothing landed",
                    )?,
                }
                settled.push(self.record_of(&record.id)?.unwrap_or(record));
            }
        }
        Ok(settled)
    }

    /// Whether another live server runs `record` (its owner, whose lease has not run out).
    pub(crate) fn owner_alive_elsewhere(&self, record: &RunRecord) -> CatalogResult<bool> {
        match record.owner.as_deref() {
            Some(owner) if owner != self.server_id() => self.owner_alive(Some(owner)),
            _ => Ok(false),
        }
    }

    /// Who may write a run's record: its own executor; whoever may start runs on its
    /// target, for a cancel (`on_behalf`); the server's maintenance (recovery, retention).
    pub(crate) fn may_keep_run(
        &self,
        principal: &Principal,
        record: &RunRecord,
        on_behalf: bool,
    ) -> CatalogResult<()> {
        if principal.run() == Some(record.id.as_str()) {
            return Ok(());
        }
        // Cancelling: one's own run, while one may start runs on its target; anyone's, for
        // a manager of the target.
        let outside = principal.outside_run();
        if on_behalf
            && let Ok(target) = RefName::parse(&record.target)
            && ((record.principal == outside.name() && self.may(&outside, Action::Run, &target))
                || self.may_manage(&outside, &target))
        {
            return Ok(());
        }
        self.authorize(principal, Action::Maintain, Target::default())
    }

    /// A run's landing commit: the one its record names, else the commit of the target's
    /// reflog entry that carries the run id (written with the landing's move), searched
    /// back to the run's start.
    pub(super) fn landing_commit(&self, record: &RunRecord) -> CatalogResult<Option<Hash>> {
        if let Some(h) = record.landed_hash() {
            return Ok(Some(h));
        }
        let Ok(target) = record.target_ref() else {
            return Ok(None);
        };
        let since = record.started_ms.saturating_sub(LANDING_CLOCK_SLACK_MS);
        let mut before = None;
        let mut seen = 0usize;
        loop {
            let page = self.store.reflog(Some(&target), before, REFLOG_PAGE_MAX)?;
            for entry in &page.items {
                if entry.at_ms < since {
                    return Ok(None);
                }
                if entry.properties.get(RUN_ID_PROPERTY) == Some(&record.id) {
                    return Ok(entry.new);
                }
            }
            seen += page.items.len();
            match page.next {
                Some(next) if seen < LANDING_REFLOG_SCAN_MAX => before = Some(next),
                _ => return Ok(None),
            }
        }
    }

    /// What a run answered when it landed (for a retry of its request), read for a
    /// principal who may read its target. `None` when the run kept no answer.
    pub fn run_answer(
        &self,
        principal: &Principal,
        record: &RunRecord,
    ) -> CatalogResult<Option<serde_json::Value>> {
        let target = record.target_ref()?;
        self.authorize(principal, Action::Read, Target::on_ref(&target))?;
        match &record.stored_answer {
            Some(stored) => Ok(Some(self.stored_answer(&record.id, stored)?)),
            None => Ok(None),
        }
    }
}
