//! Merge, cherry-pick and revert onto a branch. The source of a merge may be any ref spec;
//! the target is a branch by name. Expected heads are strict (the store's rule).

use floe_commits::{CommitMeta, CommitOutcome, Hash, MergeOptions, MergeOutcome, RefName, RefSpec};

use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::refs::branch_of;
use crate::table_merge::{TableMerge, TableMergeOptions, TableMergeReport};
use crate::{Authored, Catalog};

/// A merge as a caller asks for it. `options.meta` carries the message and properties;
/// the catalog fills the author, committer and time.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    pub expected_head: Option<Hash>,
    pub options: MergeOptions,
    pub author: Option<String>,
    /// How tables both sides changed are merged (DESIGN §10).
    pub tables: TableMergeOptions,
}

impl Catalog {
    pub(crate) fn authorize_branch_write(
        &self,
        principal: &Principal,
        action: Action,
        branch: &RefSpec,
    ) -> CatalogResult<RefName> {
        let name = branch_of(branch)?;
        self.authorize(principal, action, Target::on_ref(name))?;
        Ok(name.clone())
    }

    /// Merges what `source` names into the branch `target`. Returns the source commit too,
    /// and what the merge did with each table both sides changed.
    pub fn merge(
        &self,
        principal: &Principal,
        source: &RefSpec,
        target: &RefSpec,
        request: &MergeRequest,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<(Hash, MergeOutcome, Vec<TableMergeReport>)> {
        let into = self.authorize_branch_write(principal, Action::Merge, target)?;
        CatalogError::check_user_properties(request.options.meta.properties.keys())?;
        let from = self.read_at(principal, source)?.hash;
        self.check_not_sealed(from)?;
        let mut options = request.options.clone();
        let authored = Authored {
            author: request.author.clone(),
            message: None,
        };
        let message = std::mem::take(&mut options.meta.message);
        let properties = std::mem::take(&mut options.meta.properties);
        options.meta = CommitMeta {
            message,
            properties,
            ..self.meta(principal, &authored, String::new())
        };
        let ctx = self.write_ctx(principal, idempotency, &from.to_hex());
        let resolver = TableMerge::new(self, request.tables, options.dry_run);
        let outcome = self.store.merge(
            from,
            &into,
            request.expected_head,
            &options,
            &resolver,
            &ctx,
        );
        let (tables, failure) = resolver.finish();
        if let Some(e) = failure {
            return Err(e);
        }
        let outcome = outcome?;
        // Only the tables the landed merge holds (a retry after a lost race computes them
        // again, at the new head): what the merge commit records.
        let tables = tables
            .into_iter()
            .filter(|t| outcome.changes.iter().any(|c| c.key == t.key))
            .collect();
        Ok((from, outcome, tables))
    }

    /// Applies the change `commit` made (against its first parent) onto `onto`.
    pub fn cherry_pick(
        &self,
        principal: &Principal,
        commit: &RefSpec,
        onto: &RefSpec,
        expected_head: Option<Hash>,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let branch = self.authorize_branch_write(principal, Action::CherryPick, onto)?;
        let picked = self.read_at(principal, commit)?.hash;
        self.check_not_sealed(picked)?;
        let meta = self.replay_meta(principal, authored);
        let ctx = self.write_ctx(principal, idempotency, &picked.to_hex());
        Ok(self
            .store
            .cherry_pick(picked, &branch, expected_head, meta, &ctx)?)
    }

    /// Undoes the change `commit` made (against its first parent) on `on`.
    pub fn revert(
        &self,
        principal: &Principal,
        commit: &RefSpec,
        on: &RefSpec,
        expected_head: Option<Hash>,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let branch = self.authorize_branch_write(principal, Action::Revert, on)?;
        let reverted = self.read_at(principal, commit)?.hash;
        let meta = self.replay_meta(principal, authored);
        let ctx = self.write_ctx(principal, idempotency, &reverted.to_hex());
        Ok(self
            .store
            .revert(reverted, &branch, expected_head, meta, &ctx)?)
    }

    /// A cherry-pick or revert keeps the store's default message (and, for a cherry-pick,
    /// the original author) unless the caller names one.
    fn replay_meta(&self, principal: &Principal, authored: &Authored) -> Option<CommitMeta> {
        authored
            .message
            .as_ref()
            .map(|_| self.meta(principal, authored, String::new()))
    }
}
