//! What tables and views share as content under a key of a branch (DESIGN §3), whatever
//! their kind: creating or registering new content (absent until now, its namespace
//! there), dropping it (files stay) and renaming it (its content id moves with it), and
//! the store's conflicts said of what the request named. Also the one retry policy of
//! every load-modify-commit, namespaces' included (`retry_on_conflict`): tables and views
//! keep only what is their own.

use std::fmt::Display;

use floe_commits::{
    CommitOutcome, ConflictKind, Content, ContentKey, ContentKind, ContentRef, Expect, Hash, Op,
    Page, RefName, RefSpec, WriteError,
};

use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::limits::{CONFLICT_RETRIES_MAX, TABLE_SCAN_MAX};
use crate::refs::branch_of;
use crate::{Authored, Catalog};

/// What one attempt of a load-modify-commit came to.
pub(crate) enum Attempt<T> {
    Done(T),
    /// A concurrent writer changed what the attempt read (the store answers so once that
    /// writer's commit is durable: a conflict waits for the head it was evaluated at), so
    /// the next attempt reloads at the new head.
    Changed,
}

/// A commit's result as an attempt: `Changed` when the conflict is a concurrent change to
/// what the attempt read (`changed`), else the error as `conflict` says it.
pub(crate) fn attempted<T>(
    result: Result<T, WriteError>,
    changed: impl FnOnce(&WriteError) -> bool,
    conflict: impl FnOnce(WriteError) -> CatalogError,
) -> CatalogResult<Attempt<T>> {
    match result {
        Ok(done) => Ok(Attempt::Done(done)),
        Err(e) if changed(&e) => Ok(Attempt::Changed),
        Err(e) => Err(conflict(e)),
    }
}

/// True when every conflict is an expectation on a key the write read (`read`) that failed
/// because the content there changed, not because it vanished: a reload sees the change.
pub(crate) fn changed_under_us(e: &WriteError, read: impl Fn(&ContentKey) -> bool) -> bool {
    matches!(e, WriteError::Conflict { conflicts, .. }
        if conflicts.iter().all(|c| c.kind == ConflictKind::Expectation
            && c.actual.is_some()
            && read(&c.key)))
}

/// The operations that put new content at `key`: absent until now, its namespace there.
pub(crate) fn new_content_ops(key: &ContentKey, content: Content) -> Vec<Op> {
    let mut ops = vec![Op::Put {
        key: key.clone(),
        content,
        expect: Expect::Absent,
    }];
    if let Some(namespace) = key.parent() {
        ops.push(Op::Check {
            key: namespace,
            expect: Expect::Present,
        });
    }
    ops
}

/// The namespace a table or view goes in: every such key has one.
pub(crate) fn namespace_of(key: &ContentKey) -> CatalogResult<ContentKey> {
    key.parent()
        .ok_or_else(|| CatalogError::Invalid(format!("{key} has no namespace")))
}

/// What people call content of a kind.
pub(crate) fn noun(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::Namespace => "namespace",
        ContentKind::IcebergTable => "table",
        ContentKind::IcebergView => "view",
    }
}

/// No table (or view) at `key`.
pub(crate) fn not_found(kind: ContentKind, key: &ContentKey) -> CatalogError {
    match kind {
        ContentKind::IcebergView => CatalogError::ViewNotFound(key.clone()),
        _ => CatalogError::TableNotFound(key.clone()),
    }
}

/// Something is at `key` already, where a table (or view) was to go.
pub(crate) fn already_exists(kind: ContentKind, key: &ContentKey) -> CatalogError {
    match kind {
        ContentKind::IcebergView => CatalogError::ViewAlreadyExists(key.clone()),
        _ => CatalogError::TableAlreadyExists(key.clone()),
    }
}

/// Turns the store's conflicts on a write of a table (or view) at `key` into what the
/// request named: the key taken, the content or its namespace gone, or the same table
/// under another key.
pub(crate) fn content_conflict(e: WriteError, key: &ContentKey, kind: ContentKind) -> CatalogError {
    if let WriteError::Conflict { conflicts, .. } = &e {
        for c in conflicts {
            match c.kind {
                ConflictKind::Expectation
                    if &c.key == key && c.expected == Some(Expect::Absent) =>
                {
                    return already_exists(kind, key);
                }
                ConflictKind::Expectation if c.actual.is_none() => {
                    return if c.actual_kind.is_none() && key.parent().as_ref() == Some(&c.key) {
                        CatalogError::NamespaceNotFound(c.key.clone())
                    } else {
                        not_found(kind, &c.key)
                    };
                }
                ConflictKind::NamespaceMissing => {
                    return CatalogError::NamespaceNotFound(
                        key.parent().unwrap_or_else(|| key.clone()),
                    );
                }
                ConflictKind::DuplicateContentId => {
                    if let Some(other) = &c.other_key {
                        return CatalogError::SameTable {
                            key: c.key.clone(),
                            other: other.clone(),
                        };
                    }
                }
                _ => {}
            }
        }
    }
    e.into()
}

/// What a create makes once its key is known to be free.
pub(crate) enum NewContent<T> {
    /// Only answered (a staged create): nothing is committed.
    Staged(T),
    /// Committed as new content at the key, with this commit message.
    Put {
        content: Content,
        message: String,
        answer: T,
    },
}

impl Catalog {
    /// Authorizes a write of content at `key` on the branch `branch` names.
    pub(crate) fn authorize_content_write(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
    ) -> CatalogResult<RefName> {
        let name = branch_of(branch)?;
        let namespace = key.parent();
        self.authorize(
            principal,
            Action::Commit,
            Target {
                ref_name: Some(name),
                namespace: namespace.as_ref(),
            },
        )?;
        Ok(name.clone())
    }

    /// Keys of `kind` directly in a namespace, in name order, at the commit `spec` names:
    /// at most `limit` of them, examining at most `TABLE_SCAN_MAX` entries.
    pub(crate) fn list_content(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        namespace: &ContentKey,
        kind: ContentKind,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<(Hash, Page<ContentKey, ContentKey>)> {
        let (at, _) = self.get_namespace(principal, spec, namespace)?;
        let depth = namespace.element_count() + 1;
        let limit = limit.clamp(1, TABLE_SCAN_MAX);
        let page = self.scan_keys(at, Some(namespace), after, limit, TABLE_SCAN_MAX, |e| {
            e.content.kind == kind && e.key.element_count() == depth
        })?;
        Ok((at, page))
    }

    /// The content at a key of a commit, with its ref (id, hash, kind), if any is there.
    pub(crate) fn content_at(
        &self,
        at: Hash,
        key: &ContentKey,
    ) -> CatalogResult<Option<(ContentRef, Content)>> {
        let found = self.store.get_contents(at, std::slice::from_ref(key))?;
        Ok(found.into_iter().next().flatten())
    }

    /// Refuses unless a namespace is at `namespace` in the commit `head`.
    pub(crate) fn namespace_exists(&self, head: Hash, namespace: &ContentKey) -> CatalogResult<()> {
        match self.store.content_ref_at(head, namespace)? {
            Some(r) if r.kind == ContentKind::Namespace => Ok(()),
            _ => Err(CatalogError::NamespaceNotFound(namespace.clone())),
        }
    }

    /// The one retry policy of a load-modify-commit on the branch `branch`: each attempt
    /// reads the branch's head and builds on it; one that a concurrent writer's change
    /// undid (`Attempt::Changed`) is made again at the new head, at most
    /// `CONFLICT_RETRIES_MAX` times in all, after which the write gives up with
    /// `Contention` (the client may retry). The answer waits until the last head read is
    /// durable (`Catalog::on_writer_heads`).
    pub(crate) fn retry_on_conflict<T>(
        &self,
        branch: &RefName,
        what: impl Display,
        mut attempt: impl FnMut(Hash) -> CatalogResult<Attempt<T>>,
    ) -> CatalogResult<T> {
        self.on_writer_heads(branch, |heads| {
            for _ in 0..CONFLICT_RETRIES_MAX {
                if let Attempt::Done(done) = attempt(heads.read()?)? {
                    return Ok(done);
                }
            }
            Err(CatalogError::Contention(format!(
                "{what} ({CONFLICT_RETRIES_MAX} attempts)"
            )))
        })
    }

    /// Creates content of `kind` at `key` on the (authorized) branch `branch`: refused
    /// unless its namespace is there and the key free at the head; then `make` builds it,
    /// and it is committed as new (`Put(Absent)` and a `Check` of its namespace), or only
    /// answered for a staged create. No retry: a concurrent create of the same key is the
    /// conflict the caller hears of.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_content<T>(
        &self,
        principal: &Principal,
        branch: &RefName,
        key: &ContentKey,
        kind: ContentKind,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
        make: impl FnOnce() -> CatalogResult<NewContent<T>>,
    ) -> CatalogResult<T> {
        let namespace = namespace_of(key)?;
        self.on_writer_heads(branch, |heads| {
            let head = heads.read()?;
            self.namespace_exists(head, &namespace)?;
            if self.store.content_ref_at(head, key)?.is_some() {
                return Err(already_exists(kind, key));
            }
            match make()? {
                NewContent::Staged(answer) => Ok(answer),
                NewContent::Put {
                    content,
                    message,
                    answer,
                } => {
                    let meta = self.meta(principal, authored, message);
                    let ctx = self.write_ctx(principal, idempotency, "");
                    self.store
                        .commit(branch, None, new_content_ops(key, content), meta, &ctx)
                        .map_err(|e| content_conflict(e, key, kind))?;
                    Ok(answer)
                }
            }
        })
    }

    /// Where new content at `key` lives: `<root>/<levels>/<name>-<uuid>`, which floe gives;
    /// a location the request asked for must be that one.
    pub(crate) fn new_content_location(
        &self,
        key: &ContentKey,
        kind: ContentKind,
        uuid: uuid::Uuid,
        asked: Option<&str>,
    ) -> CatalogResult<String> {
        let namespace = namespace_of(key)?;
        let location =
            self.warehouse()?
                .table_location(namespace.elements(), key.name(), &uuid.to_string());
        if let Some(asked) = asked
            && asked.trim_end_matches('/') != location
        {
            return Err(CatalogError::Invalid(format!(
                "floe assigns {} locations; leave location out (it would be {location})",
                noun(kind)
            )));
        }
        Ok(location)
    }

    /// Drops the table or view at `key` from a branch (`Delete(Is)`); its files stay
    /// (garbage collection will decide, over every ref).
    pub(crate) fn drop_content(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        kind: ContentKind,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let name = self.authorize_content_write(principal, branch, key)?;
        let noun = noun(kind);
        self.retry_on_conflict(&name, format_args!("{noun} {key}"), |head| {
            let Some(r) = self.store.content_ref_at(head, key)? else {
                return Err(not_found(kind, key));
            };
            if r.kind != kind {
                return Err(not_found(kind, key));
            }
            let ops = vec![Op::Delete {
                key: key.clone(),
                expect: Expect::Is(r.hash),
            }];
            let meta = self.meta(principal, authored, format!("drop {noun} {key}"));
            let ctx = self.write_ctx(principal, idempotency, "");
            attempted(
                self.store.commit(&name, None, ops, meta, &ctx),
                |e| changed_under_us(e, |k| k == key),
                |e| content_conflict(e, key, kind),
            )
        })
    }

    /// Moves a table or view to another key of the same branch in one commit
    /// (`Delete(Is)`, `Put(Absent)` and a `Check` of the target namespace): its content id
    /// stays, so history and merges follow it. The target namespace must exist and the
    /// target key be free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename_content(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        from: &ContentKey,
        to: &ContentKey,
        kind: ContentKind,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let name = self.authorize_content_write(principal, branch, from)?;
        self.authorize_content_write(principal, branch, to)?;
        let target_namespace = namespace_of(to)?;
        let noun = noun(kind);
        self.retry_on_conflict(&name, format_args!("{noun} {from}"), |head| {
            let Some((r, content)) = self.content_at(head, from)? else {
                return Err(not_found(kind, from));
            };
            if r.kind != kind {
                return Err(not_found(kind, from));
            }
            self.namespace_exists(head, &target_namespace)?;
            if self.store.content_ref_at(head, to)?.is_some() {
                return Err(already_exists(kind, to));
            }
            let ops = vec![
                Op::Delete {
                    key: from.clone(),
                    expect: Expect::Is(r.hash),
                },
                Op::Put {
                    key: to.clone(),
                    content,
                    expect: Expect::Absent,
                },
                Op::Check {
                    key: target_namespace.clone(),
                    expect: Expect::Present,
                },
            ];
            let meta = self.meta(principal, authored, format!("rename {noun} {from} to {to}"));
            let ctx = self.write_ctx(principal, idempotency, "");
            attempted(
                self.store.commit(&name, None, ops, meta, &ctx),
                |e| changed_under_us(e, |k| k == from),
                |e| content_conflict(e, to, kind),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floe_commits::{ManualClock, MemoryBackend, Store};

    use super::*;
    use crate::{SequentialIds, Warehouse};

    #[test]
    fn retry_on_conflict_makes_a_changed_attempt_again_and_gives_up_at_the_bound() {
        let catalog = Catalog::in_memory().with_ids(Arc::new(SequentialIds::new(0)));
        let main = RefName::parse("main").unwrap();
        let mut attempts = 0;
        let done = catalog
            .retry_on_conflict(&main, "table db.t", |_| {
                attempts += 1;
                Ok(if attempts < 3 {
                    Attempt::Changed
                } else {
                    Attempt::Done(attempts)
                })
            })
            .unwrap();
        assert_eq!(done, 3);
        let mut attempts = 0;
        let err = catalog
            .retry_on_conflict(&main, "namespace db", |_| -> CatalogResult<Attempt<()>> {
                attempts += 1;
                Ok(Attempt::Changed)
            })
            .unwrap_err();
        assert_eq!(attempts, CONFLICT_RETRIES_MAX);
        assert_eq!(
            err,
            CatalogError::Contention(format!("namespace db ({CONFLICT_RETRIES_MAX} attempts)"))
        );
        // An error ends the retries at once.
        let mut attempts = 0;
        let err = catalog
            .retry_on_conflict(&main, "view db.v", |_| -> CatalogResult<Attempt<()>> {
                attempts += 1;
                Err(CatalogError::Invalid("no".to_owned()))
            })
            .unwrap_err();
        assert_eq!((attempts, err), (1, CatalogError::Invalid("no".to_owned())));
    }

    /// Ids and time are passed in: the same requests against a catalog on the same id
    /// seed and clock make the same commits, content ids, table uuid and metadata file.
    #[test]
    fn the_same_requests_on_the_same_ids_and_clock_make_the_same_commits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("warehouse");
        let run = || {
            std::fs::create_dir_all(&root).unwrap();
            let store = Store::open(
                Arc::new(MemoryBackend::new()),
                Arc::new(ManualClock::new(1_700_000_000_000)),
            )
            .unwrap();
            let catalog = Catalog::new(Arc::new(store))
                .with_ids(Arc::new(SequentialIds::new(41)))
                .with_warehouse(Warehouse::open(&root).unwrap());
            let (who, main) = (Principal::anonymous(), RefSpec::parse("main").unwrap());
            let db = ContentKey::new(["db"]).unwrap();
            let none = Authored::default();
            let (_, namespace) = catalog
                .create_namespace(&who, &main, &db, Default::default(), &none, None)
                .unwrap();
            let create = crate::tables::one_column_table("t");
            let table = catalog
                .create_table(&who, &main, &db, create, &none, None)
                .unwrap();
            let head = catalog.resolve(&who, &main).unwrap().hash;
            std::fs::remove_dir_all(&root).unwrap();
            (
                head,
                namespace.id,
                table.metadata.uuid(),
                table.metadata_location.unwrap(),
            )
        };
        let first = run();
        assert_eq!(run(), first);
        assert_eq!(
            first.2.to_string(),
            "00000000-0000-7000-8000-00000000002b",
            "the table uuid is the seed's second id"
        );
        assert!(
            first.3.ends_with(&format!(
                "/db/t-{}/metadata/00000-00000000-0000-7000-8000-00000000002c.metadata.json",
                first.2
            )),
            "{}",
            first.3
        );
    }
}
