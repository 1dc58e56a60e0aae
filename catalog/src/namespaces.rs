//! Namespaces as content: create (its parent must exist), drop (only when empty), read,
//! list, and update properties by load-modify-commit with `Is(old)` and a bounded retry.
//! The Iceberg REST layer reuses these entry points.

use std::collections::BTreeMap;

use floe_commits::{
    CommitOutcome, ConflictKind, Content, ContentId, ContentKey, ContentKind, Expect, Hash, Op,
    Page, Payload, RefName, RefSpec, WriteError,
};

use crate::auth::{Action, Principal, Target};
use crate::content::{attempted, changed_under_us, new_content_ops};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::limits::{LISTING_PAGE_MAX, NAMESPACE_SCAN_MAX};
use crate::refs::branch_of;
use crate::{Authored, Catalog};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub key: ContentKey,
    pub id: ContentId,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertiesUpdate {
    pub updates: BTreeMap<String, String>,
    pub removals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertiesUpdated {
    pub outcome: CommitOutcome,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Removals that named no property.
    pub missing: Vec<String>,
}

impl Catalog {
    fn authorize_namespace_write(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
    ) -> CatalogResult<RefName> {
        let name = branch_of(branch)?;
        self.authorize(
            principal,
            Action::Commit,
            Target {
                ref_name: Some(name),
                namespace: Some(namespace),
            },
        )?;
        Ok(name.clone())
    }

    pub fn create_namespace(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
        properties: BTreeMap<String, String>,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<(CommitOutcome, Namespace)> {
        let name = self.authorize_namespace_write(principal, branch, namespace)?;
        let id = ContentId(self.new_uuid().into_bytes());
        let ops = new_content_ops(namespace, Content::namespace(id, properties.clone()));
        let meta = self.meta(principal, authored, format!("create namespace {namespace}"));
        let ctx = self.write_ctx(principal, idempotency, "");
        let outcome = self
            .store
            .commit(&name, None, ops, meta, &ctx)
            .map_err(|e| namespace_conflict(e, namespace))?;
        Ok((
            outcome,
            Namespace {
                key: namespace.clone(),
                id,
                properties,
            },
        ))
    }

    pub fn drop_namespace(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let name = self.authorize_namespace_write(principal, branch, namespace)?;
        self.retry_on_conflict(&name, format_args!("namespace {namespace}"), |head| {
            let current = self.namespace_at(head, namespace)?;
            let ops = vec![
                Op::Delete {
                    key: namespace.clone(),
                    expect: Expect::Is(current.1),
                },
                Op::CheckPrefixEmpty {
                    prefix: namespace.clone(),
                },
            ];
            let meta = self.meta(principal, authored, format!("drop namespace {namespace}"));
            let ctx = self.write_ctx(principal, idempotency, "");
            attempted(
                self.store.commit(&name, None, ops, meta, &ctx),
                |e| changed_under_us(e, |k| k == namespace),
                |e| namespace_conflict(e, namespace),
            )
        })
    }

    pub fn get_namespace(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        namespace: &ContentKey,
    ) -> CatalogResult<(Hash, Namespace)> {
        let at = self.read_at(principal, spec)?.hash;
        Ok((at, self.namespace_at(at, namespace)?.0))
    }

    /// Namespaces under `parent` (everywhere without one), in key order: all descendants,
    /// or only direct children.
    pub fn list_namespaces(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        parent: Option<&ContentKey>,
        children_only: bool,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<(Hash, Page<Namespace, ContentKey>)> {
        let at = self.read_at(principal, spec)?.hash;
        if let Some(p) = parent {
            self.namespace_at(at, p)?;
        }
        let depth = parent.map_or(0, ContentKey::element_count) + 1;
        let limit = limit.clamp(1, LISTING_PAGE_MAX);
        let Page { items: keys, next } =
            self.scan_keys(at, parent, after, limit, NAMESPACE_SCAN_MAX, |e| {
                e.content.kind == ContentKind::Namespace
                    && Some(&e.key) != parent
                    && (!children_only || e.key.element_count() == depth)
            })?;
        let contents = self.store.get_contents(at, &keys)?;
        let items = keys
            .into_iter()
            .zip(contents)
            .filter_map(|(key, c)| {
                let (r, content) = c?;
                Some(Namespace {
                    key,
                    id: r.id,
                    properties: properties_of(&content)?.clone(),
                })
            })
            .collect();
        Ok((at, Page { items, next }))
    }

    pub fn update_namespace_properties(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
        update: &PropertiesUpdate,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<PropertiesUpdated> {
        let name = self.authorize_namespace_write(principal, branch, namespace)?;
        if let Some(both) = update
            .removals
            .iter()
            .find(|k| update.updates.contains_key(*k))
        {
            return Err(CatalogError::Invalid(format!(
                "property {both:?} is both updated and removed; name it once"
            )));
        }
        self.retry_on_conflict(&name, format_args!("namespace {namespace}"), |head| {
            let (current, hash) = self.namespace_at(head, namespace)?;
            let mut properties = current.properties.clone();
            let mut removed = Vec::new();
            let mut missing = Vec::new();
            for k in &update.removals {
                match properties.remove(k) {
                    Some(_) => removed.push(k.clone()),
                    None => missing.push(k.clone()),
                }
            }
            properties.extend(update.updates.clone());
            let ops = vec![Op::Put {
                key: namespace.clone(),
                content: Content::namespace(current.id, properties),
                expect: Expect::Is(hash),
            }];
            let meta = self.meta(
                principal,
                authored,
                format!("update properties of namespace {namespace}"),
            );
            let ctx = self.write_ctx(principal, idempotency, "");
            let updated = self
                .store
                .commit(&name, None, ops, meta, &ctx)
                .map(|outcome| PropertiesUpdated {
                    outcome,
                    updated: update.updates.keys().cloned().collect(),
                    removed,
                    missing,
                });
            attempted(
                updated,
                |e| changed_under_us(e, |k| k == namespace),
                |e| namespace_conflict(e, namespace),
            )
        })
    }

    /// Keys at or under `prefix`, after `after`, that `wanted` keeps, in key order: at most
    /// `limit` of them, examining at most `scan_max` entries. `next` continues the listing
    /// whenever it stopped early, whether at `limit` or at `scan_max`.
    pub(crate) fn scan_keys(
        &self,
        at: Hash,
        prefix: Option<&ContentKey>,
        after: Option<&ContentKey>,
        limit: usize,
        scan_max: usize,
        wanted: impl Fn(&floe_commits::EntryRef) -> bool,
    ) -> CatalogResult<Page<ContentKey, ContentKey>> {
        let mut cursor = after.cloned();
        let mut items = Vec::new();
        let mut scanned = 0;
        let next = 'scan: loop {
            let page = self
                .store
                .entries(at, prefix, cursor.as_ref(), LISTING_PAGE_MAX)?;
            for e in page.items {
                scanned += 1;
                cursor = Some(e.key.clone());
                if wanted(&e) {
                    items.push(e.key);
                    if items.len() == limit {
                        break 'scan cursor;
                    }
                }
            }
            if page.next.is_none() {
                break None;
            }
            if scanned >= scan_max {
                break cursor;
            }
        };
        Ok(Page { items, next })
    }

    /// The answer of a properties update recorded under an idempotency key: rebuilt from
    /// the namespace as it was before the recorded write (`previous`), which says which
    /// removals named a property.
    pub fn replayed_properties_update(
        &self,
        principal: &Principal,
        namespace: &ContentKey,
        update: &PropertiesUpdate,
        previous: Option<Hash>,
        head: Hash,
    ) -> CatalogResult<PropertiesUpdated> {
        let before = match previous {
            Some(p) => {
                let spec = RefSpec::Hash(crate::history::hash_spec(&p));
                Some(self.get_namespace(principal, &spec, namespace)?.1)
            }
            None => None,
        };
        let had = |k: &String| {
            before
                .as_ref()
                .is_some_and(|b| b.properties.contains_key(k))
        };
        Ok(PropertiesUpdated {
            outcome: CommitOutcome {
                commit: head,
                parent: previous.unwrap_or(head),
                rebased: false,
                created: true,
            },
            updated: update.updates.keys().cloned().collect(),
            removed: update.removals.iter().filter(|k| had(k)).cloned().collect(),
            missing: update
                .removals
                .iter()
                .filter(|k| !had(k))
                .cloned()
                .collect(),
        })
    }

    /// The namespace at a key of a commit, with its content hash.
    fn namespace_at(
        &self,
        at: Hash,
        namespace: &ContentKey,
    ) -> CatalogResult<(Namespace, floe_commits::ContentHash)> {
        let Some((r, content)) = self.content_at(at, namespace)? else {
            return Err(CatalogError::NamespaceNotFound(namespace.clone()));
        };
        let Some(properties) = properties_of(&content) else {
            return Err(CatalogError::NotANamespace {
                key: namespace.clone(),
                kind: r.kind.as_str(),
            });
        };
        Ok((
            Namespace {
                key: namespace.clone(),
                id: r.id,
                properties: properties.clone(),
            },
            r.hash,
        ))
    }
}

fn properties_of(content: &Content) -> Option<&BTreeMap<String, String>> {
    match &content.payload {
        Payload::Namespace { properties } => Some(properties),
        _ => None,
    }
}

/// Turns the store's conflicts on a namespace write into what the user asked about.
fn namespace_conflict(e: WriteError, namespace: &ContentKey) -> CatalogError {
    let WriteError::Conflict { head, conflicts } = &e else {
        return e.into();
    };
    for c in conflicts {
        match c.kind {
            ConflictKind::PrefixNotEmpty | ConflictKind::NamespaceNotEmpty => {
                return CatalogError::NamespaceNotEmpty {
                    namespace: namespace.clone(),
                    other: c.other_key.clone(),
                    head: *head,
                };
            }
            ConflictKind::Expectation if &c.key == namespace => {
                return match (c.expected, c.actual_kind) {
                    (Some(Expect::Absent), Some(ContentKind::Namespace)) => {
                        CatalogError::NamespaceAlreadyExists(namespace.clone())
                    }
                    (Some(Expect::Absent), Some(kind)) => CatalogError::NotANamespace {
                        key: namespace.clone(),
                        kind: kind.as_str(),
                    },
                    (_, None) => CatalogError::NamespaceNotFound(namespace.clone()),
                    _ => e.clone().into(),
                };
            }
            // The parent's `Check(Present)` failed.
            ConflictKind::Expectation if c.actual.is_none() => {
                return CatalogError::NamespaceNotFound(c.key.clone());
            }
            ConflictKind::NamespaceMissing => {
                let parent = c.other_key.clone().or_else(|| c.key.parent());
                return CatalogError::NamespaceNotFound(parent.unwrap_or_else(|| c.key.clone()));
            }
            _ => {}
        }
    }
    e.into()
}
