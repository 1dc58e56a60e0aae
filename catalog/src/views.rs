//! Iceberg views as content (DESIGN §3): like tables, a view's entry is a small payload
//! pointing at its metadata file in the warehouse; views branch and merge like tables.
//! Replace applies the REST `ViewUpdate`s through the `iceberg` crate's view metadata
//! builder (the crate has no dispatcher: `apply_view_update` is floe's).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use floe_commits::{
    CommitMeta, Content, ContentId, ContentKey, ContentKind, Expect, Hash, Op, Page, Payload,
    RefName, RefSpec, ViewPayload,
};
use iceberg::ViewUpdate;
use iceberg::spec::{Schema, ViewFormatVersion, ViewMetadata, ViewMetadataBuilder, ViewVersion};

use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::tables::{COMMIT_RETRIES_MAX, TABLE_SCAN_MAX};
use crate::{Authored, Catalog, Principal};

/// A view as loaded at a commit.
#[derive(Debug, Clone)]
pub struct LoadedView {
    pub key: ContentKey,
    pub metadata_location: String,
    pub metadata: Arc<ViewMetadata>,
    pub metadata_json: Bytes,
    content_id: ContentId,
    content_hash: floe_commits::ContentHash,
}

/// A create-view request (the REST body, minus the namespace).
#[derive(Debug, Clone)]
pub struct ViewCreate {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub view_version: ViewVersion,
    pub properties: HashMap<String, String>,
}

/// The requirements a view replace may carry (the REST spec has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewRequirement {
    AssertViewUuid(uuid::Uuid),
}

fn invalid(e: iceberg::Error) -> CatalogError {
    CatalogError::Invalid(e.message().to_owned())
}

/// Applies one REST view update to a builder.
fn apply_view_update(
    b: ViewMetadataBuilder,
    update: ViewUpdate,
    location: &str,
    current_uuid: uuid::Uuid,
) -> CatalogResult<ViewMetadataBuilder> {
    Ok(match update {
        ViewUpdate::AssignUuid { uuid } => {
            if uuid != current_uuid {
                return Err(CatalogError::Invalid(format!(
                    "a view's uuid cannot change (it is {current_uuid})"
                )));
            }
            b
        }
        ViewUpdate::UpgradeFormatVersion { format_version } => {
            b.upgrade_format_version(format_version).map_err(invalid)?
        }
        ViewUpdate::AddSchema { schema, .. } => b.add_schema(schema),
        ViewUpdate::SetLocation { location: asked } => {
            if asked.trim_end_matches('/') != location {
                return Err(CatalogError::Invalid(format!(
                    "a view's location cannot change (it is {location})"
                )));
            }
            b
        }
        ViewUpdate::SetProperties { updates } => b.set_properties(updates).map_err(invalid)?,
        ViewUpdate::RemoveProperties { removals } => b.remove_properties(&removals),
        ViewUpdate::AddViewVersion { view_version } => {
            b.add_version(view_version).map_err(invalid)?
        }
        ViewUpdate::SetCurrentViewVersion { view_version_id } => {
            b.set_current_version_id(view_version_id).map_err(invalid)?
        }
    })
}

fn view_content(id: ContentId, metadata_location: &str, m: &ViewMetadata) -> Content {
    Content {
        id,
        payload: Payload::IcebergView(ViewPayload {
            metadata_location: metadata_location.to_owned(),
            view_uuid: m.uuid().into_bytes(),
            version_id: i64::from(m.current_version_id()),
            schema_id: m.current_version().schema_id(),
        }),
    }
}

/// `<location>/metadata/<version:05>-<uuid>.metadata.json`, the version one past the
/// previous file's (`<n>-<uuid>` or Hadoop's `v<n>`; 0 for a new view, or a registered one
/// named otherwise).
fn next_metadata_location(location: &str, previous: Option<&str>) -> String {
    let version = previous
        .and_then(|p| p.rsplit('/').next())
        .and_then(crate::table_files::file_version)
        .map_or(0, |v| v.saturating_add(1));
    format!(
        "{location}/metadata/{version:05}-{}.metadata.json",
        uuid::Uuid::now_v7()
    )
}

impl Catalog {
    fn view_at(&self, at: Hash, key: &ContentKey) -> CatalogResult<Option<LoadedView>> {
        let found = self.store.get_contents(at, std::slice::from_ref(key))?;
        let Some(Some((r, content))) = found.into_iter().next() else {
            return Ok(None);
        };
        let Payload::IcebergView(v) = &content.payload else {
            return Ok(None);
        };
        let bytes = Bytes::from(self.warehouse()?.read(&v.metadata_location)?);
        let metadata: ViewMetadata = serde_json::from_slice(&bytes).map_err(|e| {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the metadata file of view {key} ({}) does not parse: {e}",
                v.metadata_location
            )))
        })?;
        Ok(Some(LoadedView {
            key: key.clone(),
            metadata_location: v.metadata_location.clone(),
            metadata: Arc::new(metadata),
            metadata_json: bytes,
            content_id: r.id,
            content_hash: r.hash,
        }))
    }

    fn write_view_metadata(&self, location: &str, m: &ViewMetadata) -> CatalogResult<Bytes> {
        let bytes = Bytes::from(serde_json::to_vec(m).map_err(|e| {
            CatalogError::Invalid(format!("the view metadata does not serialize: {e}"))
        })?);
        self.warehouse()?.write_new(location, &bytes)?;
        Ok(bytes)
    }

    pub fn load_view(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        key: &ContentKey,
    ) -> CatalogResult<LoadedView> {
        let at = self.read_at(principal, spec)?.hash;
        self.view_at(at, key)?
            .ok_or_else(|| CatalogError::ViewNotFound(key.clone()))
    }

    /// Views directly in a namespace, in name order.
    pub fn list_views(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        namespace: &ContentKey,
        after: Option<&ContentKey>,
        limit: usize,
    ) -> CatalogResult<Page<ContentKey, ContentKey>> {
        let (at, _) = self.get_namespace(principal, spec, namespace)?;
        let depth = namespace.element_count() + 1;
        let limit = limit.clamp(1, TABLE_SCAN_MAX);
        self.scan_keys(at, Some(namespace), after, limit, TABLE_SCAN_MAX, |e| {
            e.content.kind == ContentKind::IcebergView && e.key.element_count() == depth
        })
    }

    pub fn create_view(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        namespace: &ContentKey,
        request: ViewCreate,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedView> {
        let key = namespace
            .child(&request.name)
            .map_err(floe_commits::WriteError::from)?;
        let name = self.authorize_content_write(principal, branch, &key)?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<LoadedView> {
            let head = heads.read()?;
            self.namespace_exists(head, namespace)?;
            if self.store.content_ref_at(head, &key)?.is_some() {
                return Err(CatalogError::ViewAlreadyExists(key));
            }
            let uuid = uuid::Uuid::now_v7();
            let location = self.warehouse()?.table_location(
                namespace.elements(),
                &request.name,
                &uuid.to_string(),
            );
            if let Some(asked) = &request.location
                && asked.trim_end_matches('/') != location
            {
                return Err(CatalogError::Invalid(format!(
                    "floe assigns view locations; leave location out (it would be {location})"
                )));
            }
            let metadata = ViewMetadataBuilder::new(
                location.clone(),
                request.schema,
                request.view_version,
                ViewFormatVersion::V1,
                request.properties,
            )
            .map_err(invalid)?
            .assign_uuid(uuid)
            .build()
            .map_err(invalid)?
            .metadata;
            let metadata_location = next_metadata_location(&location, None);
            let bytes = self.write_view_metadata(&metadata_location, &metadata)?;
            let id = ContentId(uuid::Uuid::now_v7().into_bytes());
            let content = view_content(id, &metadata_location, &metadata);
            let meta = self.meta(principal, authored, format!("create view {key}"));
            self.commit_new(
                &name,
                &key,
                content.clone(),
                ContentKind::IcebergView,
                meta,
                principal,
                idempotency,
            )?;
            Ok(LoadedView {
                key,
                metadata_location,
                metadata: Arc::new(metadata),
                metadata_json: bytes,
                content_id: id,
                content_hash: content.hash(),
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    /// Replaces a view: requirements at the head, updates through the view builder, a new
    /// metadata file, `Put(Is(old))`; a concurrent change reloads and retries.
    pub fn replace_view(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        requirements: &[ViewRequirement],
        updates: &[ViewUpdate],
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedView> {
        let name = self.authorize_content_write(principal, branch, key)?;
        self.on_writer_heads(&name, |heads| -> CatalogResult<LoadedView> {
            for _ in 0..COMMIT_RETRIES_MAX {
                let head = heads.read()?;
                let current = self
                    .view_at(head, key)?
                    .ok_or_else(|| CatalogError::ViewNotFound(key.clone()))?;
                for r in requirements {
                    let ViewRequirement::AssertViewUuid(u) = r;
                    if *u != current.metadata.uuid() {
                        return Err(CatalogError::CommitFailed(format!(
                            "view {key} has uuid {}, not {u}",
                            current.metadata.uuid()
                        )));
                    }
                }
                let location = current.metadata.location().to_owned();
                let mut builder =
                    ViewMetadataBuilder::new_from_metadata(current.metadata.as_ref().clone());
                for u in updates {
                    builder =
                        apply_view_update(builder, u.clone(), &location, current.metadata.uuid())?;
                }
                let metadata = builder.build().map_err(invalid)?.metadata;
                let metadata_location =
                    next_metadata_location(&location, Some(&current.metadata_location));
                let bytes = self.write_view_metadata(&metadata_location, &metadata)?;
                let content = view_content(current.content_id, &metadata_location, &metadata);
                let ops = vec![Op::Put {
                    key: key.clone(),
                    content: content.clone(),
                    expect: Expect::Is(current.content_hash),
                }];
                let meta = self.meta(principal, authored, format!("replace view {key}"));
                let ctx = self.write_ctx(principal, idempotency, "");
                match self.store.commit(&name, None, ops, meta, &ctx) {
                    Ok(_) => {
                        return Ok(LoadedView {
                            key: key.clone(),
                            metadata_location,
                            metadata: Arc::new(metadata),
                            metadata_json: bytes,
                            content_id: current.content_id,
                            content_hash: content.hash(),
                        });
                    }
                    // Another writer changed the view: reload (the conflict waited for its head).
                    Err(e) if crate::tables::is_key_conflict(&e, key) => continue,
                    Err(e) => return Err(self.content_conflict(e, key, ContentKind::IcebergView)),
                }
            }
            Err(CatalogError::Contention(format!("view {key}")))
        })
    }

    /// Registers an existing view metadata file (inside the warehouse) as a view.
    pub fn register_view(
        &self,
        principal: &Principal,
        branch: &RefSpec,
        key: &ContentKey,
        metadata_location: &str,
        authored: &Authored,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<LoadedView> {
        let name = self.authorize_content_write(principal, branch, key)?;
        let namespace = key
            .parent()
            .ok_or_else(|| CatalogError::Invalid(format!("{key} has no namespace")))?;
        let bytes = Bytes::from(self.warehouse()?.read(metadata_location)?);
        let metadata: ViewMetadata = serde_json::from_slice(&bytes).map_err(|e| {
            CatalogError::Invalid(format!("{metadata_location} is not view metadata: {e}"))
        })?;
        let view_location = metadata.location().trim_end_matches('/');
        self.warehouse()?.resolve(view_location)?;
        if !metadata_location.starts_with(&format!("{view_location}/metadata/")) {
            return Err(CatalogError::Invalid(format!(
                "{metadata_location} is not under its view's location {view_location}/metadata/"
            )));
        }
        self.on_writer_heads(&name, |heads| -> CatalogResult<LoadedView> {
            let head = heads.read()?;
            self.namespace_exists(head, &namespace)?;
            if self.store.content_ref_at(head, key)?.is_some() {
                return Err(CatalogError::ViewAlreadyExists(key.clone()));
            }
            let id = ContentId(uuid::Uuid::now_v7().into_bytes());
            let content = view_content(id, metadata_location, &metadata);
            let meta = self.meta(
                principal,
                authored,
                format!("register view {key} from {metadata_location}"),
            );
            self.commit_new(
                &name,
                key,
                content.clone(),
                ContentKind::IcebergView,
                meta,
                principal,
                idempotency,
            )?;
            Ok(LoadedView {
                key: key.clone(),
                metadata_location: metadata_location.to_owned(),
                metadata: Arc::new(metadata),
                metadata_json: bytes,
                content_id: id,
                content_hash: content.hash(),
            })
        })
    }
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

impl Catalog {
    /// Commits new content (a table or a view) at `key` on `branch`, its conflicts said of
    /// what it is.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_new(
        &self,
        branch: &RefName,
        key: &ContentKey,
        content: Content,
        kind: ContentKind,
        meta: CommitMeta,
        principal: &Principal,
        idempotency: Option<&IdemRequest>,
    ) -> CatalogResult<()> {
        let ctx = self.write_ctx(principal, idempotency, "");
        self.store
            .commit(branch, None, new_content_ops(key, content), meta, &ctx)
            .map_err(|e| self.content_conflict(e, key, kind))?;
        Ok(())
    }

    /// A table conflict, said of a view where it concerns one.
    fn content_conflict(
        &self,
        e: floe_commits::WriteError,
        key: &ContentKey,
        kind: ContentKind,
    ) -> CatalogError {
        let err = crate::tables::table_conflict(e, key);
        match (kind, err) {
            (ContentKind::IcebergView, CatalogError::TableAlreadyExists(k)) => {
                CatalogError::ViewAlreadyExists(k)
            }
            (ContentKind::IcebergView, CatalogError::TableNotFound(k)) => {
                CatalogError::ViewNotFound(k)
            }
            (_, other) => other,
        }
    }
}
