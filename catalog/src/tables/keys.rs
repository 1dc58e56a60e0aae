//! A table or view under a key of a branch: drop (files stay), rename (its content id
//! moves with it), register an existing metadata file, and unregister.

use super::*;

impl Catalog {
    /// Drops a table from a branch. Its files stay (garbage collection will decide, over
    /// every ref); `purgeRequested` does not change that.
    pub fn drop_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        self.drop_content(
            principal,
            branch,
            key,
            ContentKind::IcebergTable,
            authored,
            idempotency,
        )
    }

    /// Drops a view from a branch (its files stay).
    pub fn drop_view(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        self.drop_content(
            principal,
            branch,
            key,
            ContentKind::IcebergView,
            authored,
            idempotency,
        )
    }

    fn drop_content(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        kind: ContentKind,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let missing = || match kind {
            ContentKind::IcebergView => CatalogError::ViewNotFound(key.clone()),
            _ => CatalogError::TableNotFound(key.clone()),
        };
        let noun = if kind == ContentKind::IcebergView {
            "view"
        } else {
            "table"
        };
        let name = self.authorize_content_write(principal, branch, key)?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<CommitOutcome> {
            for _ in 0..COMMIT_RETRIES_MAX {
                let head = heads.read()?;
                let Some(r) = self.store.content_ref_at(head, key)? else {
                    return Err(missing());
                };
                if r.kind != kind {
                    return Err(missing());
                }
                let ops = vec![Op::Delete {
                    key: key.clone(),
                    expect: Expect::Is(r.hash),
                }];
                let meta = self.meta(principal, authored, format!("drop {noun} {key}"));
                let ctx = self.write_ctx(principal, idempotency, "");
                match self.store.commit(&name, None, ops, meta, &ctx) {
                    Err(e) if is_key_conflict(&e, key) => continue,
                    other => return other.map_err(|e| table_conflict(e, key)),
                }
            }
            Err(CatalogError::Contention(format!("table {key}")))
        })
    }
}

impl Catalog {
    /// Moves a table to another key of the same branch (its content id stays: history and
    /// merges follow it). The target namespace must exist and the target key be free.
    pub fn rename_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        from: &ContentKey,
        to: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        self.rename_content(
            principal,
            branch,
            from,
            to,
            ContentKind::IcebergTable,
            authored,
            idempotency,
        )
    }

    /// Moves a view to another key of the same branch.
    pub fn rename_view(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        from: &ContentKey,
        to: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        self.rename_content(
            principal,
            branch,
            from,
            to,
            ContentKind::IcebergView,
            authored,
            idempotency,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_content(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        from: &ContentKey,
        to: &ContentKey,
        kind: ContentKind,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<CommitOutcome> {
        let view = kind == ContentKind::IcebergView;
        let missing = |k: &ContentKey| {
            if view {
                CatalogError::ViewNotFound(k.clone())
            } else {
                CatalogError::TableNotFound(k.clone())
            }
        };
        let taken = |k: &ContentKey| {
            if view {
                CatalogError::ViewAlreadyExists(k.clone())
            } else {
                CatalogError::TableAlreadyExists(k.clone())
            }
        };
        let noun = if view { "view" } else { "table" };
        let name = self.authorize_content_write(principal, branch, from)?;
        self.authorize_content_write(principal, branch, to)?;
        let target_namespace = to
            .parent()
            .ok_or_else(|| CatalogError::Invalid(format!("{to} has no namespace")))?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<CommitOutcome> {
            for _ in 0..COMMIT_RETRIES_MAX {
                let head = heads.read()?;
                let found = self.store.get_contents(head, std::slice::from_ref(from))?;
                let Some(Some((r, content))) = found.into_iter().next() else {
                    return Err(missing(from));
                };
                if r.kind != kind {
                    return Err(missing(from));
                }
                self.namespace_exists(head, &target_namespace)?;
                if self.store.content_ref_at(head, to)?.is_some() {
                    return Err(taken(to));
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
                match self.store.commit(&name, None, ops, meta, &ctx) {
                    Err(e) if is_key_conflict(&e, from) => continue,
                    other => {
                        return other.map_err(|e| match table_conflict(e, to) {
                            CatalogError::TableAlreadyExists(k) => taken(&k),
                            other => other,
                        });
                    }
                }
            }
            Err(CatalogError::Contention(format!("{noun} {from}")))
        })
    }

    /// Registers an existing metadata file (inside the warehouse) as a table. A table with
    /// the same Iceberg table-uuid already at the ref is a conflict: one table, one key.
    pub fn register_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        metadata_location: &str,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedTable> {
        let name = self.authorize_content_write(principal, branch, key)?;
        let namespace = key
            .parent()
            .ok_or_else(|| CatalogError::Invalid(format!("{key} has no namespace")))?;
        // Confined to the warehouse before anything is read.
        self.warehouse()?.resolve(metadata_location)?;
        let cached = self.read_metadata(key, metadata_location)?;
        // What the file points at must be inside the warehouse too: the table's location,
        // its path properties, and the file itself under `<location>/metadata/`.
        let table_location = cached.metadata.location().trim_end_matches('/');
        self.warehouse()?.resolve(table_location)?;
        if !metadata_location.starts_with(&format!("{table_location}/metadata/")) {
            return Err(CatalogError::Invalid(format!(
                "{metadata_location} is not under its table's location {table_location}/metadata/"
            )));
        }
        self.check_paths(&cached.metadata)?;
        // A registered table's own location is its root: every snapshot's files too.
        self.check_new_snapshots(None, &cached.metadata, &[])?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<LoadedTable> {
            let head = heads.read()?;
            self.namespace_exists(head, &namespace)?;
            if self.store.content_ref_at(head, key)?.is_some() {
                return Err(CatalogError::TableAlreadyExists(key.clone()));
            }
            // One table, one key: its content id is its table-uuid, and the store refuses a
            // content id under two keys when the commit lands.
            let id = table_id(&cached.metadata);
            let content = table_content(id, metadata_location, &cached.metadata);
            let meta = self.meta(
                principal,
                authored,
                format!("register table {key} from {metadata_location}"),
            );
            self.commit_new(
                &name,
                key,
                content.clone(),
                ContentKind::IcebergTable,
                meta,
                principal,
                idempotency,
            )?;
            Ok(LoadedTable {
                key: key.clone(),
                metadata_location: Some(metadata_location.to_owned()),
                metadata: cached.metadata.clone(),
                metadata_json: cached.bytes.clone(),
                content_id: Some(id),
                content_hash: Some(content.hash()),
            })
        })
    }
}

impl Catalog {
    /// Removes a table from a branch and answers its last metadata, so that another
    /// catalog can register it. Files stay, as with every drop.
    pub fn unregister_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedTable> {
        let name = self.authorize_content_write(principal, branch, key)?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<LoadedTable> {
            for _ in 0..COMMIT_RETRIES_MAX {
                let head = heads.read()?;
                let Some(table) = self.table_at(head, key)? else {
                    return Err(CatalogError::TableNotFound(key.clone()));
                };
                let Some(hash) = table.content_hash else {
                    return Err(CatalogError::TableNotFound(key.clone()));
                };
                let ops = vec![Op::Delete {
                    key: key.clone(),
                    expect: Expect::Is(hash),
                }];
                let meta = self.meta(principal, authored, format!("unregister table {key}"));
                let ctx = self.write_ctx(principal, idempotency, "");
                match self.store.commit(&name, None, ops, meta, &ctx) {
                    Err(e) if is_key_conflict(&e, key) => continue,
                    Err(e) => return Err(table_conflict(e, key)),
                    Ok(_) => return Ok(table),
                }
            }
            Err(CatalogError::Contention(format!("table {key}")))
        })
    }
}
