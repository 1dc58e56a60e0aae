//! What floe keeps only for a while, and the maintenance pass that forgets it (DESIGN §5
//! "Sealing", §3 "Idempotency-Key"), so that the meta keyspace and the ref list do not grow
//! without bound:
//! - a failed or cancelled run's branch stays (sealed) for `Retention::run_branches_ms`
//!   after the run ended (default 7 days), then is deleted;
//! - a finished run's record and its stored answer stay for `Retention::run_records_ms`
//!   (default 30 days); a failed run's branch goes first;
//! - idempotency records stay for their advertised lifetime (`IDEMPOTENCY_LIFETIME_MS`);
//! - a record left `running` whose landing exists (its bookkeeping failed) is settled.
//!
//! Every pass is bounded: it examines at most `MAINTENANCE_SCAN_MAX` entries and deletes
//! at most `MAINTENANCE_DELETES_MAX` of each kind, and says when more is left.

use serde::Serialize;

use super::answers::answer_prefix;
use super::{RECORD_PREFIX, RunRecord, RunState, invalid_record, record_key};
use crate::Catalog;
use crate::auth::{Action, Principal, Target};
use crate::error::CatalogResult;

/// Entries of each kind (run records, idempotency records) one pass examines.
pub const MAINTENANCE_SCAN_MAX: usize = 100_000;
/// Deletions of each kind one pass makes.
pub const MAINTENANCE_DELETES_MAX: usize = 1_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

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
            run_branches_ms: 7 * DAY_MS,
            run_records_ms: 30 * DAY_MS,
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Runs left `running` after they landed, now succeeded.
    pub settled_runs: usize,
    /// Failed or cancelled runs' branches deleted.
    pub pruned_run_branches: usize,
    /// Finished runs' records (and answers) deleted.
    pub expired_run_records: usize,
    /// Idempotency records past their lifetime, deleted.
    pub expired_idempotency_records: usize,
    /// True when a bound stopped the pass early: another pass has more to do.
    pub more: bool,
}

impl Catalog {
    /// One maintenance pass (the server runs one periodically; `POST /api/v1/maintenance`
    /// runs one at once).
    pub fn maintain(
        &self,
        principal: &Principal,
        retention: &Retention,
    ) -> CatalogResult<RetentionReport> {
        self.authorize(
            principal,
            Action::Maintain,
            Target {
                ref_name: None,
                namespace: None,
            },
        )?;
        let mut report = RetentionReport {
            settled_runs: self.settle_landed_runs()?.len(),
            ..RetentionReport::default()
        };
        self.expire_runs(retention, &mut report)?;
        let (expired, more) =
            self.expire_idempotency(MAINTENANCE_SCAN_MAX, MAINTENANCE_DELETES_MAX)?;
        report.expired_idempotency_records = expired;
        report.more |= more;
        Ok(report)
    }

    /// Prunes failed runs' branches and forgets old records, within the pass's bounds.
    fn expire_runs(
        &self,
        retention: &Retention,
        report: &mut RetentionReport,
    ) -> CatalogResult<()> {
        let now = self.now_ms();
        let mut after: Option<Vec<u8>> = None;
        let mut scanned = 0usize;
        loop {
            let page = self
                .store
                .meta_scan(RECORD_PREFIX.as_bytes(), after.as_deref(), 1_000)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.to_vec());
            for (_, bytes) in &page {
                scanned += 1;
                let record: RunRecord = serde_json::from_slice(bytes).map_err(invalid_record)?;
                let Some(finished) = record.finished_ms else {
                    continue;
                };
                let age = now.saturating_sub(finished);
                let unlanded = matches!(record.state, RunState::Failed | RunState::Cancelled);
                let prune_branch = unlanded
                    && (age >= retention.run_branches_ms || age >= retention.run_records_ms);
                if prune_branch && report.pruned_run_branches < MAINTENANCE_DELETES_MAX {
                    report.pruned_run_branches += usize::from(self.prune_run_branch(&record)?);
                }
                if age >= retention.run_records_ms {
                    if report.expired_run_records >= MAINTENANCE_DELETES_MAX {
                        report.more = true;
                        return Ok(());
                    }
                    if unlanded && self.store.get_ref(&record.branch()).is_ok() {
                        // Its branch could not go yet (the deletion bound): keep the record.
                        report.more = true;
                        continue;
                    }
                    if self.forget_run(&record, bytes)? {
                        report.expired_run_records += 1;
                    }
                }
            }
            if scanned >= MAINTENANCE_SCAN_MAX {
                report.more = true;
                return Ok(());
            }
        }
    }

    /// Deletes a run's branch; false when it was gone already.
    fn prune_run_branch(&self, record: &RunRecord) -> CatalogResult<bool> {
        let executor = Principal::named(record.principal.clone()).in_run(&record.id);
        match self
            .store
            .delete_ref(&record.branch(), None, &self.write_ctx(&executor, None, ""))
        {
            Ok(()) => Ok(true),
            Err(floe_commits::WriteError::RefNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a run's stored answer, then its record if it is still `stored` (false when
    /// it changed meanwhile, say by a promotion: the next pass looks again).
    fn forget_run(&self, record: &RunRecord, stored: &[u8]) -> CatalogResult<bool> {
        if let Some(answer) = &record.stored_answer {
            self.delete_answer(&record.id, answer)?;
        } else {
            // An answer written before a failed landing, not referenced by the record.
            let prefix = answer_prefix(&record.id);
            for (key, value) in self.store.meta_scan(&prefix, None, 1_000)? {
                self.store.meta_cas(&key, Some(&value), None)?;
            }
        }
        Ok(self
            .store
            .meta_cas(&record_key(&record.id), Some(stored), None)?)
    }
}
