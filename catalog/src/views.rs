//! Iceberg views as content (DESIGN §3): like tables, a view's entry is a small payload
//! pointing at its metadata file in the warehouse; views branch and merge like tables.
//! Replace applies the REST `ViewUpdate`s through the `iceberg` crate's view metadata
//! builder (the crate has no dispatcher: `apply_view_update` is floe's). What views share
//! with tables (create, register, drop, rename, listing, conflicts, the retry policy) is
//! in `content.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use floe_commits::{
    CommitOutcome, Content, ContentId, ContentKey, ContentKind, Expect, Hash, Op, Page, Payload,
    RefSpec, ViewPayload,
};
use iceberg::ViewUpdate;
use iceberg::spec::{Schema, ViewFormatVersion, ViewMetadata, ViewMetadataBuilder, ViewVersion};

use crate::content::{NewContent, attempted, changed_under_us, content_conflict, namespace_of};
use crate::error::{CatalogError, CatalogResult};
use crate::idempotency::IdemRequest;
use crate::metadata_cache::MetadataJson;
use crate::{Authored, Catalog, Principal};

/// A view as loaded at a commit.
#[derive(Debug, Clone)]
pub struct LoadedView {
    pub key: ContentKey,
    pub metadata_location: String,
    pub metadata: Arc<ViewMetadata>,
    pub metadata_json: MetadataJson,
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

/// `<location>/metadata/<version:05>-<id>.metadata.json`, the version one past the
/// previous file's (`<n>-<uuid>` or Hadoop's `v<n>`; 0 for a new view, or a registered one
/// named otherwise).
fn next_metadata_location(location: &str, previous: Option<&str>, id: uuid::Uuid) -> String {
    let version = previous
        .and_then(|p| p.rsplit('/').next())
        .and_then(crate::table_files::file_version)
        .map_or(0, |v| v.saturating_add(1));
    format!("{location}/metadata/{version:05}-{id}.metadata.json")
}

impl Catalog {
    fn view_at(&self, at: Hash, key: &ContentKey) -> CatalogResult<Option<LoadedView>> {
        let Some((r, content)) = self.content_at(at, key)? else {
            return Ok(None);
        };
        let Payload::IcebergView(v) = &content.payload else {
            return Ok(None);
        };
        let bytes = self.warehouse()?.read(&v.metadata_location)?;
        let unreadable = |e: &dyn std::fmt::Display| {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the metadata file of view {key} ({}) does not parse: {e}",
                v.metadata_location
            )))
        };
        let metadata: ViewMetadata = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        Ok(Some(LoadedView {
            key: key.clone(),
            metadata_location: v.metadata_location.clone(),
            metadata: Arc::new(metadata),
            metadata_json: MetadataJson::parse(bytes).map_err(|e| unreadable(&e))?,
            content_id: r.id,
            content_hash: r.hash,
        }))
    }

    fn write_view_metadata(&self, location: &str, m: &ViewMetadata) -> CatalogResult<MetadataJson> {
        let json = MetadataJson::of(m).map_err(|e| {
            CatalogError::Invalid(format!("the view metadata does not serialize: {e}"))
        })?;
        self.warehouse()?.write_new(location, json.as_bytes())?;
        Ok(json)
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
        let kind = ContentKind::IcebergView;
        Ok(self
            .list_content(principal, spec, namespace, kind, after, limit)?
            .1)
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
        let kind = ContentKind::IcebergView;
        self.create_content(principal, &name, &key, kind, authored, idempotency, || {
            let uuid = self.new_uuid();
            let location =
                self.new_content_location(&key, kind, uuid, request.location.as_deref())?;
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
            let metadata_location = next_metadata_location(&location, None, self.new_uuid());
            let bytes = self.write_view_metadata(&metadata_location, &metadata)?;
            let id = ContentId(self.new_uuid().into_bytes());
            let content = view_content(id, &metadata_location, &metadata);
            Ok(NewContent::Put {
                message: format!("create view {key}"),
                answer: LoadedView {
                    key: key.clone(),
                    metadata_location,
                    metadata: Arc::new(metadata),
                    metadata_json: bytes,
                    content_id: id,
                    content_hash: content.hash(),
                },
                content,
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
        let kind = ContentKind::IcebergView;
        self.retry_on_conflict(&name, format_args!("view {key}"), |head| {
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
            let metadata_location = next_metadata_location(
                &location,
                Some(&current.metadata_location),
                self.new_uuid(),
            );
            let bytes = self.write_view_metadata(&metadata_location, &metadata)?;
            let content = view_content(current.content_id, &metadata_location, &metadata);
            let replaced = LoadedView {
                key: key.clone(),
                metadata_location,
                metadata: Arc::new(metadata),
                metadata_json: bytes,
                content_id: current.content_id,
                content_hash: content.hash(),
            };
            let ops = vec![Op::Put {
                key: key.clone(),
                content,
                expect: Expect::Is(current.content_hash),
            }];
            let meta = self.meta(principal, authored, format!("replace view {key}"));
            let ctx = self.write_ctx(principal, idempotency, "");
            attempted(
                self.store
                    .commit(&name, None, ops, meta, &ctx)
                    .map(|_| replaced),
                |e| changed_under_us(e, |k| k == key),
                |e| content_conflict(e, key, kind),
            )
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
        namespace_of(key)?;
        let bytes = self.warehouse()?.read(metadata_location)?;
        let not_view = |e: &dyn std::fmt::Display| {
            CatalogError::Invalid(format!("{metadata_location} is not view metadata: {e}"))
        };
        let metadata: ViewMetadata = serde_json::from_slice(&bytes).map_err(|e| not_view(&e))?;
        let bytes = MetadataJson::parse(bytes).map_err(|e| not_view(&e))?;
        let view_location = metadata.location().trim_end_matches('/');
        self.warehouse()?.confine(view_location)?;
        if !metadata_location.starts_with(&format!("{view_location}/metadata/")) {
            return Err(CatalogError::Invalid(format!(
                "{metadata_location} is not under its view's location {view_location}/metadata/"
            )));
        }
        let kind = ContentKind::IcebergView;
        self.create_content(principal, &name, key, kind, authored, idempotency, || {
            let id = ContentId(self.new_uuid().into_bytes());
            let content = view_content(id, metadata_location, &metadata);
            Ok(NewContent::Put {
                message: format!("register view {key} from {metadata_location}"),
                answer: LoadedView {
                    key: key.clone(),
                    metadata_location: metadata_location.to_owned(),
                    metadata: Arc::new(metadata),
                    metadata_json: bytes,
                    content_id: id,
                    content_hash: content.hash(),
                },
                content,
            })
        })
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

    /// Moves a view to another key of the same branch (its content id stays).
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
}
