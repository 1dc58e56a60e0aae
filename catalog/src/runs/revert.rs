//! Reverting a run: its landing commit undone as one commit (every table it wrote, or
//! none), on its target or any branch. Refused, naming the tables, when any of them
//! changed since the run wrote it: a revert never undoes someone else's work, and never
//! splits a run (DESIGN §5).

use floe_commits::{CommitMeta, CommitOutcome, RefSpec, WriteError};

use super::{RUN_REVERTED_PROPERTY, RunRecord, RunState};
use crate::Catalog;
use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;

/// What reverting a run did.
#[derive(Debug, Clone)]
pub struct RunReverted {
    pub record: RunRecord,
    /// The branch written.
    pub branch: String,
    /// The revert commit; `created` is false when every table already was as before
    /// the run (nothing to revert).
    pub outcome: CommitOutcome,
}

impl Catalog {
    /// Reverts run `id`'s landing commit on `on` (default: the run's target) as one commit
    /// carrying `floe.run.reverted`.
    pub fn revert_run(
        &self,
        principal: &Principal,
        id: &str,
        on: Option<&RefSpec>,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<RunReverted> {
        // Who may see runs at all, first: nothing below says whether a run exists.
        self.authorize(principal, Action::ReadRefs, Target::default())?;
        let record = self.visible_run(principal, id)?;
        let on = match on {
            Some(on) => on.clone(),
            None => RefSpec::parse(&record.target).map_err(|e| {
                CatalogError::Invalid(format!("run {} has a bad target: {e}", record.id))
            })?,
        };
        let branch = self.authorize_branch_write(principal, Action::Revert, &on)?;
        let refuse = |why: String| CatalogError::RunNotRevertible {
            run: record.id.clone(),
            why,
        };
        let parts = record
            .pipeline
            .as_ref()
            .and_then(|p| p["commits"].as_array())
            .map_or(0, Vec::len);
        let landed = match (record.state, record.landed_hash()) {
            (RunState::Succeeded, Some(h)) if parts <= 1 => h,
            (state, _) if state.is_live() => {
                return Err(refuse(format!(
                    "it is {}; cancel it, or wait for it to end",
                    state.as_str()
                )));
            }
            (state, _) if parts > 0 && (parts > 1 || state != RunState::Succeeded) => {
                return Err(refuse(format!(
                    "it ran with --no-transaction and landed {parts} commit{} as it went ({}); `floe log --run {}` lists them, `floe revert` undoes each",
                    if parts == 1 { "" } else { "s" },
                    if state == RunState::Succeeded {
                        "then succeeded".to_owned()
                    } else {
                        format!("then {}", state.as_str())
                    },
                    record.id
                )));
            }
            (RunState::Succeeded, _) => {
                return Err(refuse(
                    "it landed nothing (a dry run, or no materialized model)".to_owned(),
                ));
            }
            (state, _) => {
                return Err(refuse(format!(
                    "it {} and landed nothing on its target",
                    state.as_str()
                )));
            }
        };
        // The landing commit is read where it lives: in the branch reverted, else in the
        // run's target (neither needs read on `**`), else as a bare hash (which does).
        let readable = [branch.as_str(), record.target.as_str()]
            .iter()
            .any(|name| {
                RefSpec::parse(&format!("{name}@{}", landed.to_hex()))
                    .is_ok_and(|spec| self.read_at(principal, &spec).is_ok())
            });
        if !readable {
            self.read_at(
                principal,
                &RefSpec::Hash(crate::history::hash_spec(&landed)),
            )?;
        }
        let mut meta = CommitMeta::new(
            principal.name().to_owned(),
            format!("Revert run {}", record.id),
            self.now_ms(),
        );
        meta.committer = principal.name().to_owned();
        meta.properties
            .insert(RUN_REVERTED_PROPERTY.to_owned(), record.id.clone());
        let ctx = self.write_ctx(principal, idempotency, &landed.to_hex());
        match self.store.revert(landed, &branch, None, Some(meta), &ctx) {
            Ok(outcome) => Ok(RunReverted {
                branch: branch.to_string(),
                record,
                outcome,
            }),
            Err(WriteError::Conflict { conflicts, .. }) => {
                let tables: Vec<String> = conflicts.iter().map(|c| c.key.to_string()).collect();
                Err(refuse(format!(
                    "{} changed on {branch} since the run wrote {}: {}; nothing was reverted",
                    if tables.len() == 1 {
                        "a table it wrote"
                    } else {
                        "tables it wrote"
                    },
                    if tables.len() == 1 { "it" } else { "them" },
                    tables.join(", ")
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
