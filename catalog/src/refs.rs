//! Refs: list, get, create from any spec, delete and assign with an expected head, and the
//! reflog. Names and specs arrive validated; tags never move (the store refuses).

use floe_commits::{Hash, Page, RefKind, RefName, RefRecord, RefSpec, ReflogEntry};

use crate::Catalog;
use crate::auth::{Action, Principal, Target};
use floe_commits::store::DEFAULT_BRANCH;

use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;

/// The branch a write goes to: only a plain name is writable (a tag, a hash, `~N` or
/// `*time` is `ReadOnly`).
pub(crate) fn branch_of(spec: &RefSpec) -> CatalogResult<&RefName> {
    match spec {
        RefSpec::Name(name) => Ok(name),
        other => Err(CatalogError::ReadOnly {
            spec: other.to_string(),
        }),
    }
}

impl Catalog {
    pub fn list_refs(
        &self,
        principal: &Principal,
        kind: Option<RefKind>,
        after: Option<&RefName>,
        limit: usize,
    ) -> CatalogResult<Page<(RefName, RefRecord), RefName>> {
        self.authorize(principal, Action::ReadRefs, Target::default())?;
        // Only the refs the principal may read; the page goes on after the last one shown,
        // so a token never names a ref it may not see.
        let mut items = Vec::new();
        let mut cursor = after.cloned();
        loop {
            let page = self.store.list_refs(kind, cursor.as_ref(), limit)?;
            for (name, record) in page.items {
                if items.len() == limit {
                    let next = items.last().map(|(n, _): &(RefName, RefRecord)| n.clone());
                    return Ok(Page { items, next });
                }
                if self.may(principal, Action::ReadRefs, &name) {
                    items.push((name, record));
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(Page { items, next: None }),
            }
        }
    }

    pub fn get_ref(&self, principal: &Principal, name: &RefName) -> CatalogResult<RefRecord> {
        self.authorize(principal, Action::ReadRefs, Target::on_ref(name))?;
        Ok(self.store.get_ref(name)?)
    }

    /// Creates a branch or tag at the commit `from` names.
    pub fn create_ref(
        &self,
        principal: &Principal,
        name: &RefName,
        kind: RefKind,
        from: &RefSpec,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<RefRecord> {
        self.authorize(principal, Action::CreateRef, Target::on_ref(name))?;
        let target = self.read_at(principal, from)?.hash;
        self.check_not_sealed(target)?;
        let ctx = self.write_ctx(principal, idempotency, kind.as_str());
        Ok(self.store.create_ref(name, kind, target, &ctx)?)
    }

    /// Deletes a ref; with `expected_head` only if the ref is still there.
    pub fn delete_ref(
        &self,
        principal: &Principal,
        name: &RefName,
        expected_head: Option<Hash>,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<()> {
        self.authorize(principal, Action::DeleteRef, Target::on_ref(name))?;
        if name.as_str() == DEFAULT_BRANCH {
            return Err(CatalogError::DefaultBranch(name.to_string()));
        }
        let ctx = self.write_ctx(principal, idempotency, "");
        Ok(self.store.delete_ref(name, expected_head, &ctx)?)
    }

    /// Points a branch at the commit `target` names (`floe reset`).
    pub fn assign_ref(
        &self,
        principal: &Principal,
        name: &RefName,
        target: &RefSpec,
        expected_head: Option<Hash>,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<RefRecord> {
        self.authorize(principal, Action::AssignRef, Target::on_ref(name))?;
        let to = self.read_at(principal, target)?.hash;
        self.check_not_sealed(to)?;
        let ctx = self.write_ctx(principal, idempotency, "");
        Ok(self.store.assign(name, expected_head, to, &ctx)?)
    }

    /// Reflog entries newest first, of one ref or of all.
    pub fn reflog(
        &self,
        principal: &Principal,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> CatalogResult<Page<ReflogEntry, u64>> {
        match name {
            Some(name) => self.authorize(principal, Action::ReadRefs, Target::on_ref(name))?,
            // Every ref's moves, the hidden ones too: the catalog's managers only.
            None => self.authorize(principal, Action::Manage, Target::default())?,
        }
        Ok(self.store.reflog(name, before, limit)?)
    }
}
