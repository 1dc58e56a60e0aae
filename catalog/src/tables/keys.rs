//! A table under a key of a branch: drop (files stay), rename (its content id moves with
//! it), register an existing metadata file, and unregister. What a view's key moves share
//! with these is in `content.rs`.

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
        namespace_of(key)?;
        // Confined to the warehouse before anything is read.
        self.warehouse()?.confine(metadata_location)?;
        let cached = self.read_metadata(key, metadata_location)?;
        // What the file points at must be inside the warehouse too: the table's location,
        // its path properties, and the file itself under `<location>/metadata/`.
        let table_location = cached.metadata.location().trim_end_matches('/');
        self.warehouse()?.confine(table_location)?;
        if !metadata_location.starts_with(&format!("{table_location}/metadata/")) {
            return Err(CatalogError::Invalid(format!(
                "{metadata_location} is not under its table's location {table_location}/metadata/"
            )));
        }
        self.check_paths(&cached.metadata)?;
        // A registered table's own location is its root: every snapshot's files too.
        self.check_new_snapshots(None, &cached.metadata, &[])?;
        let kind = ContentKind::IcebergTable;
        self.create_content(principal, &name, key, kind, authored, idempotency, || {
            // One table, one key: its content id is its table-uuid, and the store refuses a
            // content id under two keys when the commit lands.
            let id = table_id(&cached.metadata);
            let content = table_content(id, metadata_location, &cached.metadata);
            Ok(NewContent::Put {
                message: format!("register table {key} from {metadata_location}"),
                answer: LoadedTable {
                    key: key.clone(),
                    metadata_location: Some(metadata_location.to_owned()),
                    metadata: cached.metadata.clone(),
                    metadata_json: cached.json.clone(),
                    content_id: Some(id),
                    content_hash: Some(content.hash()),
                },
                content,
            })
        })
    }

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
        let kind = ContentKind::IcebergTable;
        self.retry_on_conflict(&name, format_args!("table {key}"), |head| {
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
            attempted(
                self.store
                    .commit(&name, None, ops, meta, &ctx)
                    .map(|_| table),
                |e| changed_under_us(e, |k| k == key),
                |e| content_conflict(e, key, kind),
            )
        })
    }
}
