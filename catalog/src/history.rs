//! History at a ref spec: resolve, log, one commit with its changes, diff and entries.
//! Reads see durable heads only (the store's rule): nothing shown can be undone by a crash.

use std::sync::Arc;

use floe_commits::{
    Commit, ContentKey, EntryRef, Hash, KeyChange, LogFilter, Page, RefSpec, ResolvedSpec,
};

use crate::Catalog;
use crate::auth::Principal;
use crate::error::{CatalogError, CatalogResult};

/// A page of a log: commits newest first; `next` continues it.
pub type LogPage = Page<(Hash, Arc<Commit>), Hash>;

/// One commit and a page of the keys it changed against its first parent.
#[derive(Debug, Clone)]
pub struct CommitDetail {
    pub hash: Hash,
    pub commit: Arc<Commit>,
    pub changes: Page<KeyChange, ContentKey>,
}

impl Catalog {
    pub fn resolve(&self, principal: &Principal, spec: &RefSpec) -> CatalogResult<ResolvedSpec> {
        self.read_at(principal, spec)
    }

    /// First-parent history from the spec's commit (or from `page`, a commit the previous
    /// page handed out), newest first.
    ///
    /// A page token is signed for the ref (or, for a bare hash, the commit) it continues:
    /// a caller cannot start a log at a commit it could not read by naming it as a token.
    pub fn log(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        page: Option<&str>,
        filter: &LogFilter,
        limit: usize,
    ) -> CatalogResult<(ResolvedSpec, LogPage, Option<String>)> {
        let at = self.read_at(principal, spec)?;
        let start = match page {
            Some(token) => self.open_page(&at, token)?,
            None => at.hash,
        };
        let log = self.store.log(start, filter, limit)?;
        let next = match log.next {
            Some(h) => Some(self.sign_page(&at, h)?),
            None => None,
        };
        Ok((at, log, next))
    }

    /// `<next hash>.<MAC>`, the MAC binding it to what the log was of.
    fn sign_page(&self, at: &ResolvedSpec, next: Hash) -> CatalogResult<String> {
        Ok(format!("{}.{}", next.to_hex(), self.page_mac(at, next)?))
    }

    fn open_page(&self, at: &ResolvedSpec, token: &str) -> CatalogResult<Hash> {
        let bad = || {
            CatalogError::Invalid(
                "pageToken is not a token this log answered (pass nextPageToken as it came)"
                    .to_owned(),
            )
        };
        let (hash, mac) = token.split_once('.').ok_or_else(bad)?;
        let hash = Hash::parse(hash).map_err(|_| bad())?;
        // Equal hashes of both: a comparison whose time says nothing of the MAC.
        let expected = self.page_mac(at, hash)?;
        if blake3::hash(expected.as_bytes()) != blake3::hash(mac.as_bytes()) {
            return Err(bad());
        }
        Ok(hash)
    }

    fn page_mac(&self, at: &ResolvedSpec, next: Hash) -> CatalogResult<String> {
        let of = match &at.ref_name {
            Some(name) => format!("ref\0{name}"),
            None => format!("commit\0{}", at.hash.to_hex()),
        };
        let key = self.page_key()?;
        let mac = blake3::keyed_hash(&key, format!("log\0{of}\0{}", next.to_hex()).as_bytes());
        Ok(mac.to_hex()[..32].to_owned())
    }

    pub fn commit_detail(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<CommitDetail> {
        let hash = self.read_at(principal, spec)?.hash;
        Ok(CommitDetail {
            hash,
            commit: self.store.commit_object(&hash)?,
            changes: self.store.commit_changes(hash, after, limit)?,
        })
    }

    /// What changes from `from` to `to`, at or under `prefix`.
    pub fn diff(
        &self,
        principal: &Principal,
        from: &RefSpec,
        to: &RefSpec,
        prefix: Option<&ContentKey>,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<(Hash, Hash, Page<KeyChange, ContentKey>)> {
        let a = self.read_at(principal, from)?.hash;
        let b = self.read_at(principal, to)?.hash;
        Ok((a, b, self.store.diff(a, b, prefix, after, limit)?))
    }

    /// Keys at or under `prefix` at the spec's commit, in key order.
    pub fn entries(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        prefix: Option<&ContentKey>,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<(Hash, Page<EntryRef, ContentKey>)> {
        let at = self.read_at(principal, spec)?.hash;
        Ok((at, self.store.entries(at, prefix, after, limit)?))
    }

    /// The merge bases of two commits (to rebuild a recorded merge's answer).
    pub fn merge_bases(&self, principal: &Principal, a: Hash, b: Hash) -> CatalogResult<Vec<Hash>> {
        self.read_at(principal, &RefSpec::Hash(hash_spec(&a)))?;
        Ok(self.store.merge_bases(a, b)?)
    }

    /// The hash of each key's content at the commit `at` names (`None` where there is
    /// none): what a run's results cache keys a table input by. `at` is read as any spec
    /// is (a run asks `floe-run/<id>@<fork>`: its own branch, no read on `**` needed).
    pub fn content_hashes(
        &self,
        principal: &Principal,
        at: &RefSpec,
        keys: &[ContentKey],
    ) -> CatalogResult<Vec<Option<Hash>>> {
        let at = self.read_at(principal, at)?.hash;
        keys.iter()
            .map(|k| Ok(self.store.content_ref_at(at, k)?.map(|r| r.hash.0)))
            .collect()
    }
}

pub(crate) fn hash_spec(h: &Hash) -> floe_commits::HashPrefix {
    floe_commits::HashPrefix::parse(&h.to_hex()).expect("a full hash is a valid prefix")
}
