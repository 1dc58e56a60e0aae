//! What floe keeps only for a while, and the maintenance pass that forgets it (DESIGN §5
//! "Sealing", §3 "Idempotency-Key"), so that the meta keyspace and the ref list do not grow
//! without bound:
//! - a failed or cancelled run's branch stays (sealed) for `Retention::run_branches_ms`
//!   after the run ended (default 7 days), then is deleted;
//! - a finished run's record and its stored answer stay for `Retention::run_records_ms`
//!   (default 30 days); a failed run's branch goes first; a promoted run's record stays
//!   (it is what lets the run's commits be used), and its branch's retention counts from
//!   the promotion;
//! - idempotency records stay for their advertised lifetime (`IDEMPOTENCY_LIFETIME_MS`);
//! - a record left `running` whose landing exists (its bookkeeping failed) is settled, and a
//!   landed run's branch that its landing could not delete is deleted.
//!
//! Every pass is bounded: it examines at most `MAINTENANCE_SCAN_MAX` entries of each kind
//! (the next pass resumes where it stopped) and deletes at most `MAINTENANCE_DELETES_MAX`
//! of each kind (`more` says so, and the server runs another pass at once).

use super::answers::answer_prefix;
use super::{RECORD_PREFIX, RunRecord, RunState, record_key};
use crate::auth::{Action, Principal, Target};
use crate::error::CatalogResult;
use crate::limits::{
    MAINTENANCE_DELETES_MAX, MAINTENANCE_SCAN_MAX, META_PAGE_MAX,
    RUN_BRANCHES_RETENTION_MS_DEFAULT, RUN_RECORDS_RETENTION_MS_DEFAULT,
};
use crate::{Catalog, resumable_scan};

/// How long runs' leftovers are kept (flags of `floe serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A failed or cancelled run's branch, after the run ended (`--run-retention`).
    pub run_branches_ms: i64,
    /// A finished run's record and answer, after the run ended (`--run-record-retention`).
    pub run_records_ms: i64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            run_branches_ms: RUN_BRANCHES_RETENTION_MS_DEFAULT,
            run_records_ms: RUN_RECORDS_RETENTION_MS_DEFAULT,
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Runs left `running` after they landed, now succeeded.
    pub settled_runs: usize,
    /// Failed or cancelled runs' branches deleted.
    pub pruned_run_branches: usize,
    /// Finished runs' records (and answers) deleted.
    pub expired_run_records: usize,
    /// Idempotency records past their lifetime, deleted.
    pub expired_idempotency_records: usize,
    /// Leases of servers gone for a day (`SERVER_LEASE_RETENTION_MS`), removed.
    pub removed_server_leases: usize,
    /// True when a bound stopped the pass early: another pass has more to do.
    pub more: bool,
}

/// Where the next maintenance pass resumes each of its scans (a pass examines at most
/// `MAINTENANCE_SCAN_MAX` entries of each kind; the next one goes on from there, and a
/// scan that reaches the end starts over). One per catalog, behind a lock that also keeps
/// two passes from running at once.
#[derive(Debug, Default)]
pub(crate) struct MaintenanceCursor {
    runs: Option<Vec<u8>>,
    applied: Option<String>,
    rejected: Option<Vec<u8>>,
    /// Where the sweep of shared code snapshots goes on (`files.rs`).
    pub(super) shared_code: Option<Vec<u8>>,
}

impl Catalog {
    /// One maintenance pass (the server runs one periodically; `POST /api/v1/maintenance`
    /// runs one at once). `more` means a deletion bound stopped it: another pass at once
    /// has work. Entries past the scan bound are seen by the next pass.
    pub fn maintain(
        &self,
        principal: &Principal,
        retention: &Retention,
    ) -> CatalogResult<RetentionReport> {
        self.authorize(principal, Action::Maintain, Target::default())?;
        let mut guard = self.maintenance.lock();
        let cursor = &mut *guard;
        let mut report = RetentionReport::default();
        self.expire_runs(retention, &mut report, &mut cursor.runs)?;
        let (expired, more) = self.expire_idempotency(
            MAINTENANCE_SCAN_MAX,
            MAINTENANCE_DELETES_MAX,
            (&mut cursor.applied, &mut cursor.rejected),
        )?;
        report.expired_idempotency_records = expired;
        report.more |= more;
        report.removed_server_leases = self.prune_server_leases()?;
        Ok(report)
    }

    /// Settles runs left running after they landed, prunes leftover run branches, and
    /// forgets old records, within the pass's bounds, from `after` on.
    fn expire_runs(
        &self,
        retention: &Retention,
        report: &mut RetentionReport,
        after: &mut Option<Vec<u8>>,
    ) -> CatalogResult<()> {
        let now = self.now_ms();
        let stopped = resumable_scan(
            after,
            MAINTENANCE_SCAN_MAX,
            |after| {
                Ok(self
                    .store
                    .meta_scan(
                        RECORD_PREFIX.as_bytes(),
                        after.map(Vec::as_slice),
                        META_PAGE_MAX,
                    )?
                    .into_iter()
                    .map(|(key, value)| (key.to_vec(), value))
                    .collect())
            },
            |_, bytes| {
                if report.pruned_run_branches >= MAINTENANCE_DELETES_MAX
                    || report.expired_run_records >= MAINTENANCE_DELETES_MAX
                {
                    return Ok(false);
                }
                // A damaged record is skipped, not a failed pass (a read of it says why).
                if let Ok(record) = serde_json::from_slice::<RunRecord>(bytes) {
                    self.retain_run(&record, bytes, retention, now, report)?;
                }
                Ok(true)
            },
        )?;
        report.more |= stopped;
        Ok(())
    }

    /// What retention does to one run.
    fn retain_run(
        &self,
        record: &RunRecord,
        stored: &[u8],
        retention: &Retention,
        now: i64,
        report: &mut RetentionReport,
    ) -> CatalogResult<()> {
        let Some(finished) = record.finished_ms else {
            // Running: settled if it landed (its bookkeeping failed after the landing).
            if let Some(commit) = self.landing_commit(record)? {
                self.finish_run(record, RunState::Succeeded, Some(commit), None)?;
                report.settled_runs += 1;
            } else if let Some(owner) = record.owner.as_deref()
                && owner != self.server_id()
                && !self.owner_alive(Some(owner))?
                && self.settle_orphan(record, stored, owner)?
            {
                report.settled_runs += 1;
            }
            return Ok(());
        };
        match record.state {
            // A landed run's branch went with its landing; if that delete failed, now.
            RunState::Succeeded => {
                if self.store.get_ref(&record.branch()).is_ok() {
                    report.pruned_run_branches += usize::from(self.delete_run_branch(record)?);
                }
            }
            // A failed run's branch stays, sealed, for the branch retention; a promoted
            // one's counts from its promotion.
            RunState::Failed | RunState::Cancelled => {
                let since = record.promoted_ms.unwrap_or(finished).max(finished);
                if now.saturating_sub(since) >= retention.run_branches_ms
                    && self.store.get_ref(&record.branch()).is_ok()
                {
                    report.pruned_run_branches += usize::from(self.delete_run_branch(record)?);
                }
            }
            RunState::Queued | RunState::Running => {}
        }
        // A promoted run's record stays: it is what lets its commits be used, wherever
        // they were branched to.
        if record.promoted || now.saturating_sub(finished) < retention.run_records_ms {
            return Ok(());
        }
        // The branch deleted above shows gone in the durable view once it is durable.
        self.store.durable_now()?;
        if self.store.get_ref(&record.branch()).is_ok() {
            // Its branch is still there (branch retention longer than record retention):
            // the record goes with a later pass, after the branch.
            return Ok(());
        }
        if self.forget_run(record, stored)? {
            report.expired_run_records += 1;
        }
        Ok(())
    }

    /// Deletes a run's stored answer, then its record if it is still `stored` (false when
    /// it changed meanwhile, say by a promotion: the next pass looks again).
    fn forget_run(&self, record: &RunRecord, stored: &[u8]) -> CatalogResult<bool> {
        self.delete_shared_log(&record.id)?;
        if let Some(answer) = &record.stored_answer {
            self.delete_answer(&record.id, answer)?;
        } else {
            // An answer written before a failed landing, not referenced by the record.
            let prefix = answer_prefix(&record.id);
            for (key, value) in self.store.meta_scan(&prefix, None, META_PAGE_MAX)? {
                self.store.meta_cas(&key, Some(&value), None)?;
            }
        }
        // Its owner token goes with it (none is left of a run that never forked, or was
        // ended other than by its landing).
        self.revoke_owner(&record.id)?;
        Ok(self
            .store
            .meta_cas(&record_key(&record.id), Some(stored), None)?)
    }
}
