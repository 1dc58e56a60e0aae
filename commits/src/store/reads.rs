//! Reads at a commit: ref specs resolved, contents, entries and diffs by prefix, the log
//! with its filters, the reflog, and the commit-graph walks (ancestry, merge bases).

use super::*;
use crate::change::{corrupt_key, decode_changes, decode_ref};

impl Store {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> ContentKey {
        ContentKey::new(path.split('.')).unwrap()
    }

    #[test]
    fn a_listing_range_is_the_prefix_subtree_after_the_cursor() {
        assert_eq!(range_of(None, None), (Vec::new(), None));
        let (lo, hi) = key("sales").subtree_range();
        assert_eq!(
            range_of(Some(&key("sales")), None),
            (lo.to_vec(), Some(hi.to_vec()))
        );
        // The cursor is excluded: the range starts at the smallest string past it.
        let after = key("sales.t1");
        let (from, to) = range_of(Some(&key("sales")), Some(&after));
        assert_eq!(from, [after.as_bytes().as_ref(), b"\0"].concat());
        assert_eq!(to, Some(hi.to_vec()));
        // A cursor before the prefix does not widen the range.
        assert_eq!(
            range_of(Some(&key("sales")), Some(&key("a"))).0,
            lo.to_vec()
        );
    }
}
