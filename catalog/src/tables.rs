//! Iceberg tables as content (DESIGN §3 "Tables"). A table's entry in the index is a
//! `TablePayload`: where its current metadata file lives, and the ids a listing or a
//! requirement needs. The metadata itself is a file in the warehouse, written before the
//! commit that points at it and never changed afterwards.
//!
//! The commit path: load every table at the branch head, check the requirements, apply
//! the updates through the `iceberg` crate, write the new metadata files, then one floe
//! commit that puts each changed table with `Is(old content)` and checks each read-only
//! table with `Is(content)`. So every requirement holds at the head the commit lands on
//! (write skew is impossible). When a concurrent writer changed one of the tables, the
//! whole transaction reloads and retries (`retry_on_conflict`, up to `CONFLICT_RETRIES_MAX`
//! attempts).
//!
//! Here: load, list, create and commit. A table's key moves (drop, rename, register,
//! unregister) are in `tables/keys.rs`; what tables share with views (create, register,
//! drop, rename, listing, conflicts, the retry policy) in `content.rs`; the checks of the
//! files its metadata names in `table_files.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use floe_commits::{
    CommitOutcome, Content, ContentHash, ContentId, ContentKey, ContentKind, Expect, Hash, Op,
    Page, Payload, RefSpec, TablePayload, WriteError,
};
use iceberg::spec::{
    FormatVersion, Schema, SortOrder, TableMetadata, TableMetadataBuilder, TableProperties,
    UnboundPartitionSpec,
};
use iceberg::{MetadataLocation, TableCreation, TableRequirement, TableUpdate};

use crate::auth::{Action, Principal, Target};
use crate::content::{
    Attempt, NewContent, attempted, changed_under_us, content_conflict, namespace_of,
    new_content_ops,
};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::metadata_cache::{CachedMetadata, MetadataJson};
use crate::table_files::{metadata_location, next_metadata_location};
use crate::warehouse::WarehouseError;
use crate::{Authored, Catalog};

mod keys;

/// A table as loaded at a commit.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub key: ContentKey,
    /// `None` for a staged create (nothing is stored yet).
    pub metadata_location: Option<String>,
    pub metadata: Arc<TableMetadata>,
    /// The metadata as stored (for a staged create: as it would be): what a load answers.
    pub metadata_json: MetadataJson,
    pub content_id: Option<ContentId>,
    content_hash: Option<ContentHash>,
}

/// A create-table request (the REST body, minus the namespace).
#[derive(Debug, Clone)]
pub struct TableCreate {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub write_order: Option<SortOrder>,
    pub stage_create: bool,
    pub properties: HashMap<String, String>,
}

/// The changes to one table inside a commit.
#[derive(Debug, Clone)]
pub struct TableChange {
    pub key: ContentKey,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

fn iceberg_error(e: iceberg::Error) -> CatalogError {
    match e.kind() {
        iceberg::ErrorKind::CatalogCommitConflicts => {
            CatalogError::CommitFailed(e.message().to_owned())
        }
        _ => CatalogError::Invalid(e.message().to_owned()),
    }
}

impl Catalog {
    /// Tables directly in a namespace, in name order.
    pub fn list_tables(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        namespace: &ContentKey,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<(Hash, Page<ContentKey, ContentKey>)> {
        let kind = ContentKind::IcebergTable;
        self.list_content(principal, spec, namespace, kind, after, limit)
    }

    /// A table at a ref spec.
    pub fn load_table(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        key: &ContentKey,
    ) -> CatalogResult<(Hash, LoadedTable)> {
        let at = self.read_at(principal, spec)?.hash;
        match self.table_at(at, key)? {
            Some(t) => Ok((at, t)),
            None => Err(CatalogError::TableNotFound(key.clone())),
        }
    }

    /// A table at a commit already resolved from `spec` (a query reads every table at one
    /// commit): authorizes the read against `spec`, then loads at `at`.
    pub fn load_table_at(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        at: Hash,
        key: &ContentKey,
    ) -> CatalogResult<LoadedTable> {
        let namespace = key.parent();
        self.authorize(
            principal,
            Action::Read,
            Target {
                ref_name: spec.ref_name(),
                namespace: namespace.as_ref(),
            },
        )?;
        self.table_at(at, key)?
            .ok_or_else(|| CatalogError::TableNotFound(key.clone()))
    }

    /// The data files of the table at `location` (refused outside the warehouse): where
    /// imports and runs write the files they add, confined to that location.
    pub fn data_files(&self, location: &str) -> CatalogResult<crate::DataFiles> {
        let warehouse = self.warehouse()?;
        warehouse.confine(location)?;
        Ok(crate::DataFiles::new(warehouse.clone(), location))
    }

    /// The table at a key of a commit, if one is there.
    fn table_at(&self, at: Hash, key: &ContentKey) -> CatalogResult<Option<LoadedTable>> {
        let Some((r, content)) = self.content_at(at, key)? else {
            return Ok(None);
        };
        let Payload::IcebergTable(t) = &content.payload else {
            return Ok(None);
        };
        // A stored table whose metadata file is gone is the server's fault (a 5xx), not
        // the request's.
        let cached = self
            .read_metadata(key, &t.metadata_location)
            .map_err(|e| match e {
                CatalogError::Warehouse(WarehouseError::NotFound(path)) => {
                    CatalogError::Warehouse(WarehouseError::Io {
                        path,
                        message: format!("the metadata file of table {key} is missing"),
                    })
                }
                other => other,
            })?;
        Ok(Some(LoadedTable {
            key: key.clone(),
            metadata_location: Some(t.metadata_location.clone()),
            metadata: cached.metadata.clone(),
            metadata_json: cached.json.clone(),
            content_id: Some(r.id),
            content_hash: Some(r.hash),
        }))
    }

    /// A metadata file, from the cache or the warehouse (then cached).
    pub(crate) fn read_metadata(
        &self,
        key: &ContentKey,
        location: &str,
    ) -> CatalogResult<Arc<CachedMetadata>> {
        if let Some(hit) = self.metadata.get(location) {
            return Ok(hit);
        }
        let bytes = self.warehouse()?.read(location)?;
        let unreadable = |e: &dyn std::fmt::Display| {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the metadata file of {key} ({location}) does not parse: {e}"
            )))
        };
        let metadata: TableMetadata = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        let entry = Arc::new(CachedMetadata {
            json: MetadataJson::parse(bytes).map_err(|e| unreadable(&e))?,
            metadata: Arc::new(metadata),
        });
        self.metadata.insert(location, entry.clone());
        Ok(entry)
    }

    /// Creates a table (or, with `stage_create`, only answers the metadata it would have).
    pub fn create_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
        request: TableCreate,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedTable> {
        let key = namespace.child(&request.name).map_err(WriteError::from)?;
        let name = self.authorize_content_write(principal, branch, &key)?;
        let kind = ContentKind::IcebergTable;
        self.create_content(principal, &name, &key, kind, authored, idempotency, || {
            let uuid = self.new_uuid();
            let location =
                self.new_content_location(&key, kind, uuid, request.location.as_deref())?;
            let mut properties = request.properties;
            let format_version = match properties
                .remove(TableProperties::PROPERTY_FORMAT_VERSION)
                .as_deref()
            {
                None | Some("2") => FormatVersion::V2,
                Some("1") => FormatVersion::V1,
                Some("3") => FormatVersion::V3,
                Some(v) => {
                    return Err(CatalogError::Invalid(format!(
                        "format-version must be 1, 2 or 3, got {v:?}"
                    )));
                }
            };
            properties.retain(|k, _| !TableProperties::RESERVED_PROPERTIES.contains(&k.as_str()));
            let creation = TableCreation::builder()
                .name(request.name.clone())
                .location(location.clone())
                .schema(request.schema)
                .partition_spec_opt(request.partition_spec)
                .sort_order_opt(request.write_order)
                .properties(properties)
                .format_version(format_version)
                .build();
            let metadata = TableMetadataBuilder::from_table_creation(creation)
                .map_err(iceberg_error)?
                .assign_uuid(uuid)
                .build()
                .map_err(iceberg_error)?
                .metadata;
            self.check_paths(&metadata)?;
            if request.stage_create {
                let metadata_json = to_json(&metadata)?;
                return Ok(NewContent::Staged(LoadedTable {
                    key: key.clone(),
                    metadata_location: None,
                    metadata: Arc::new(metadata),
                    metadata_json,
                    content_id: None,
                    content_hash: None,
                }));
            }
            let first = metadata_location(&location, 0, self.new_uuid(), &metadata)?;
            let (answer, content) =
                self.write_table(&key, table_id(&metadata), &first, metadata)?;
            Ok(NewContent::Put {
                message: format!("create table {key}"),
                answer,
                content,
            })
        })
    }

    /// Commits changes to one table; returns it as committed.
    pub fn commit_table(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        change: TableChange,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedTable> {
        let key = change.key.clone();
        let mut done =
            self.commit_tables(principal, branch, vec![change], authored, idempotency)?;
        done.pop().ok_or_else(|| CatalogError::TableNotFound(key))
    }

    /// Commits changes to many tables as one floe commit (`transactions/commit`).
    pub fn commit_tables(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        changes: Vec<TableChange>,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<Vec<LoadedTable>> {
        let mut name = None;
        for c in &changes {
            name = Some(self.authorize_content_write(principal, branch, &c.key)?);
            check_updates(&c.updates)?;
        }
        let Some(name) = name else {
            return Err(CatalogError::Invalid(
                "a commit needs at least one table change".to_owned(),
            ));
        };
        let mut seen = HashSet::new();
        if let Some(dup) = changes.iter().find(|c| !seen.insert(c.key.clone())) {
            return Err(CatalogError::Invalid(format!(
                "table {} appears twice in one commit",
                dup.key
            )));
        }
        let what = changes
            .iter()
            .map(|c| c.key.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // Locations this request's creates took (its own retries find their metadata).
        let mut claimed = HashSet::new();
        self.retry_on_conflict(&name, what, |head| {
            let mut ops = Vec::new();
            let mut results = Vec::new();
            for change in &changes {
                let current = self.table_at(head, &change.key)?;
                for r in &change.requirements {
                    r.check(current.as_ref().map(|t| t.metadata.as_ref()))
                        .map_err(|e| match e.kind() {
                            iceberg::ErrorKind::TableNotFound => {
                                CatalogError::TableNotFound(change.key.clone())
                            }
                            _ => iceberg_error(e),
                        })?;
                }
                let (table, table_ops) = self.apply(&change.key, current, change, &mut claimed)?;
                ops.extend(table_ops);
                results.push(table);
            }
            let summary: Vec<String> = changes
                .iter()
                .filter(|c| !c.updates.is_empty())
                .map(|c| format!("{} ({})", c.key, describe(&c.updates)))
                .collect();
            let meta = self.meta(
                principal,
                authored,
                format!("commit to table {}", summary.join(", ")),
            );
            let ctx = self.write_ctx(principal, idempotency, "");
            // Tables created in one namespace each check it: one check is enough (the store
            // takes each key once per commit).
            let mut checked = HashSet::new();
            ops.retain(|op| match op {
                Op::Check { key, .. } => checked.insert(key.clone()),
                _ => true,
            });
            if ops.iter().all(|op| matches!(op, Op::Check { .. })) {
                return Ok(Attempt::Done(results));
            }
            attempted(
                self.store
                    .commit(&name, None, ops, meta, &ctx)
                    .map(|_| results),
                |e| changed_under_us(e, |k| changes.iter().any(|c| &c.key == k)),
                |e| content_conflict(e, &changes[0].key, ContentKind::IcebergTable),
            )
        })
    }

    /// Applies one table's updates; returns the table as it will be and the op for it.
    fn apply(
        &self,
        key: &ContentKey,
        current: Option<LoadedTable>,
        change: &TableChange,
        claimed: &mut HashSet<String>,
    ) -> CatalogResult<(LoadedTable, Vec<Op>)> {
        let Some(current) = current else {
            if !change
                .requirements
                .iter()
                .any(|r| matches!(r, TableRequirement::NotExist))
            {
                return Err(CatalogError::TableNotFound(key.clone()));
            }
            return self.create_from_updates(key, &change.updates, claimed);
        };
        let (Some(location), Some(hash), Some(id)) = (
            current.metadata_location.clone(),
            current.content_hash,
            current.content_id,
        ) else {
            return Err(CatalogError::TableNotFound(key.clone()));
        };
        if change.updates.is_empty() {
            // Requirements only: the table must be unchanged when the commit lands.
            return Ok((
                current,
                vec![Op::Check {
                    key: key.clone(),
                    expect: Expect::Is(hash),
                }],
            ));
        }
        let mut builder = current
            .metadata
            .as_ref()
            .clone()
            .into_builder(Some(location.clone()));
        for u in &change.updates {
            if let TableUpdate::SetLocation { location: asked } = u
                && asked.trim_end_matches('/') != current.metadata.location()
            {
                return Err(CatalogError::Invalid(format!(
                    "a table's location cannot change (it is {})",
                    current.metadata.location()
                )));
            }
            if let TableUpdate::AssignUuid { uuid } = u
                && *uuid != current.metadata.uuid()
            {
                return Err(CatalogError::Invalid(format!(
                    "a table's uuid cannot change (it is {})",
                    current.metadata.uuid()
                )));
            }
            builder = u.clone().apply(builder).map_err(iceberg_error)?;
        }
        let metadata = builder.build().map_err(iceberg_error)?.metadata;
        self.check_paths(&metadata)?;
        let added: Vec<i64> = change
            .updates
            .iter()
            .filter_map(|u| match u {
                TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
                _ => None,
            })
            .collect();
        self.check_new_snapshots(Some(&current.metadata), &metadata, &added)?;
        let next = next_metadata_location(&location, &metadata, self.new_uuid())?;
        let (table, content) = self.write_table(key, id, &next, metadata)?;
        Ok((
            table,
            vec![Op::Put {
                key: key.clone(),
                content,
                expect: Expect::Is(hash),
            }],
        ))
    }

    /// A table created by a commit (a stage-create answered earlier, then `assert-create`
    /// with the updates that make it, as DuckDB does): the iceberg crate builds metadata
    /// only from a schema, a spec, a sort order and a location, so those are taken from the
    /// first add-schema / add-spec / add-sort-order / set-location (with assign-uuid,
    /// upgrade-format-version and set-properties), and the rest is applied on top.
    fn create_from_updates(
        &self,
        key: &ContentKey,
        updates: &[TableUpdate],
        claimed: &mut HashSet<String>,
    ) -> CatalogResult<(LoadedTable, Vec<Op>)> {
        let (mut schema, mut spec, mut order, mut location) = (None, None, None, None);
        let (mut format_version, mut uuid) = (None, None);
        let mut properties = HashMap::new();
        let mut rest = Vec::new();
        for u in updates {
            match u {
                TableUpdate::AddSchema { schema: s } if schema.is_none() => {
                    schema = Some(s.clone());
                }
                TableUpdate::AddSpec { spec: s } if spec.is_none() => spec = Some(s.clone()),
                TableUpdate::AddSortOrder { sort_order } if order.is_none() => {
                    order = Some(sort_order.clone());
                }
                TableUpdate::SetLocation { location: l } => location = Some(l.clone()),
                TableUpdate::UpgradeFormatVersion { format_version: v } => {
                    format_version = Some(*v);
                }
                TableUpdate::AssignUuid { uuid: u } => uuid = Some(*u),
                TableUpdate::SetProperties { updates } => properties.extend(updates.clone()),
                other => rest.push(other.clone()),
            }
        }
        let Some(schema) = schema else {
            return Err(CatalogError::Invalid(
                "a commit that creates a table (assert-create) needs an add-schema update"
                    .to_owned(),
            ));
        };
        let namespace = namespace_of(key)?;
        let warehouse = self.warehouse()?;
        let location = match location {
            Some(l) => {
                let l = l.trim_end_matches('/').to_owned();
                if !warehouse.is_table_location(namespace.elements(), key.name(), &l) {
                    return Err(CatalogError::Invalid(format!(
                        "floe assigns table locations: {l:?} is not one it gives {key} \
                         (stage-create the table to get it)"
                    )));
                }
                l
            }
            None => warehouse.table_location(
                namespace.elements(),
                key.name(),
                &self.new_uuid().to_string(),
            ),
        };
        properties.retain(|k, _| !TableProperties::RESERVED_PROPERTIES.contains(&k.as_str()));
        let mut builder = TableMetadataBuilder::new(
            schema,
            spec.unwrap_or_else(|| iceberg::spec::PartitionSpec::unpartition_spec().into()),
            order.unwrap_or_else(SortOrder::unsorted_order),
            location.clone(),
            format_version.unwrap_or(FormatVersion::V2),
            properties,
        )
        .map_err(iceberg_error)?;
        if let Some(u) = uuid {
            builder = builder.assign_uuid(u);
        }
        for u in rest {
            builder = u.apply(builder).map_err(iceberg_error)?;
        }
        let metadata = builder.build().map_err(iceberg_error)?.metadata;
        self.check_paths(&metadata)?;
        self.check_location_unused(&metadata, claimed)?;
        self.check_new_snapshots(None, &metadata, &[])?;
        let first = metadata_location(&location, 0, self.new_uuid(), &metadata)?;
        let (table, content) = self.write_table(key, table_id(&metadata), &first, metadata)?;
        Ok((table, new_content_ops(key, content)))
    }

    /// The bytes just written at a location (from the cache, else read back).
    fn cached_json(&self, location: &str) -> CatalogResult<MetadataJson> {
        match self.metadata.get(location) {
            Some(hit) => Ok(hit.json.clone()),
            None => MetadataJson::parse(self.warehouse()?.read(location)?).map_err(|e| {
                CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                    "the metadata file {location} does not parse: {e}"
                )))
            }),
        }
    }

    /// Writes a table's new metadata file at `location`; answers the table as it will be
    /// once committed, and its content (id `id`) for the commit.
    fn write_table(
        &self,
        key: &ContentKey,
        id: ContentId,
        location: &MetadataLocation,
        metadata: TableMetadata,
    ) -> CatalogResult<(LoadedTable, Content)> {
        let metadata_location = self.write_metadata(location, &metadata)?;
        let content = table_content(id, &metadata_location, &metadata);
        let table = LoadedTable {
            key: key.clone(),
            metadata_json: self.cached_json(&metadata_location)?,
            metadata_location: Some(metadata_location),
            metadata: Arc::new(metadata),
            content_id: Some(id),
            content_hash: Some(content.hash()),
        };
        Ok((table, content))
    }

    pub(crate) fn write_metadata(
        &self,
        location: &MetadataLocation,
        metadata: &TableMetadata,
    ) -> CatalogResult<String> {
        if location.compression_codec() != iceberg::compression::CompressionCodec::None {
            return Err(CatalogError::Unsupported(
                "compressed metadata files (write.metadata.compression-codec) are not served yet"
                    .to_owned(),
            ));
        }
        let text = location.to_string();
        let json = to_json(metadata)?;
        self.warehouse()?.write_new(&text, json.as_bytes())?;
        self.metadata.insert(
            &text,
            Arc::new(CachedMetadata {
                json,
                metadata: Arc::new(metadata.clone()),
            }),
        );
        Ok(text)
    }
}

/// What a list of updates does, for the commit message: the distinct actions in order,
/// an added snapshot named by its operation (`append`, `overwrite`, `delete`).
fn describe(updates: &[TableUpdate]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for u in updates {
        let part = match u {
            TableUpdate::AddSnapshot { snapshot } => {
                format!(
                    "{} snapshot {}",
                    snapshot.summary().operation.as_str(),
                    snapshot.snapshot_id()
                )
            }
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v["action"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "update".to_owned()),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    parts.join(", ")
}

fn to_json(metadata: &TableMetadata) -> CatalogResult<MetadataJson> {
    MetadataJson::of(metadata)
        .map_err(|e| CatalogError::Invalid(format!("the table metadata does not serialize: {e}")))
}

/// Updates floe refuses (DESIGN §3 rules).
fn check_updates(updates: &[TableUpdate]) -> CatalogResult<()> {
    for u in updates {
        match u {
            TableUpdate::RemoveSnapshots { .. } => {
                return Err(CatalogError::Unsupported(
                    "remove-snapshots is refused: other branches may read those snapshots' files; \
                     floe's garbage collection will expire them over every ref"
                        .to_owned(),
                ));
            }
            TableUpdate::SetSnapshotRef { ref_name, .. }
            | TableUpdate::RemoveSnapshotRef { ref_name }
                if ref_name != "main" =>
            {
                return Err(CatalogError::Unsupported(format!(
                    "Iceberg ref {ref_name:?} is refused: use floe branches and tags (only the table's main ref is served)"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A table's content id is its Iceberg table-uuid (DESIGN §3 register: one table, one key
/// per ref). The store refuses a content id under two keys when a commit lands, so two
/// registrations of one table (or a create that assigns another table's uuid) cannot both
/// land, however they interleave.
fn table_id(metadata: &TableMetadata) -> ContentId {
    ContentId(metadata.uuid().into_bytes())
}

pub(crate) fn table_content(id: ContentId, metadata_location: &str, m: &TableMetadata) -> Content {
    Content {
        id,
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: metadata_location.to_owned(),
            table_uuid: m.uuid().into_bytes(),
            snapshot_id: m.current_snapshot_id().unwrap_or(-1),
            schema_id: m.current_schema_id(),
            spec_id: m.default_partition_spec_id(),
            sort_order_id: i32::try_from(m.default_sort_order_id()).unwrap_or(i32::MAX),
        }),
    }
}

/// A create of a table with one optional `long` column, the fixture of the crate's tests.
#[cfg(test)]
pub(crate) fn one_column_table(name: &str) -> TableCreate {
    use iceberg::spec::{NestedField, PrimitiveType, Type};
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .expect("a one-column schema builds");
    TableCreate {
        name: name.to_owned(),
        location: None,
        schema,
        partition_spec: None,
        write_order: None,
        stage_create: false,
        properties: HashMap::new(),
    }
}
