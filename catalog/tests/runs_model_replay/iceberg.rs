//! The model's `a.t2` as a real Iceberg table, written the way engines write one: a
//! generation is the table property `version`, a replace is an `overwrite` snapshot that
//! deletes every live data file and adds one, an append is an `append` snapshot adding one
//! data file named by its row (`row-c-…`, `row-r1-…`), and a table a run creates by
//! appending is created and appended to in one commit (a staged create, then `assert-create`
//! with its snapshot, as DuckDB does), because the model's write is one commit. Data files
//! are named, never read: the rows are the names of the live files, read from the
//! manifests as an engine would.

use std::collections::HashMap;

use floe_catalog::{Authored, Catalog, LoadedTable, Principal, TableChange, TableCreate};
use floe_commits::{ContentId, ContentKey, RefSpec};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, FormatVersion, ManifestFile, ManifestList,
    ManifestListWriter, ManifestStatus, ManifestWriterBuilder, NestedField, Operation,
    PrimitiveType, Schema, Snapshot, SnapshotReference, SnapshotRetention, Struct, Summary,
    TableMetadata, Type,
};
use iceberg::{TableRequirement, TableUpdate};

/// The table property that holds the model's generation.
pub const GENERATION: &str = "version";
/// The prefix of a data file that holds an appended row.
const ROW: &str = "row-";

/// Writes `a.t2` on one ref, as `who`; `id` numbers snapshots and files (unique in the
/// world, so that no two snapshots of one table's histories share an id).
pub struct Writer<'a> {
    pub catalog: &'a Catalog,
    pub who: &'a Principal,
    pub at: RefSpec,
    pub key: ContentKey,
    pub id: i64,
}

/// What the model observes of the table: its content id, generation and rows.
pub struct Observed {
    pub id: Option<ContentId>,
    pub generation: String,
    pub rows: Vec<String>,
}

fn local(location: &str) -> String {
    location
        .strip_prefix("file://")
        .unwrap_or(location)
        .to_owned()
}

/// The live data files of the table's current snapshot.
fn live_files(t: &TableMetadata) -> Vec<String> {
    let Some(s) = t.current_snapshot() else {
        return Vec::new();
    };
    let list = ManifestList::parse_with_version(
        &std::fs::read(local(s.manifest_list())).expect("the manifest list"),
        t.format_version(),
    )
    .expect("a manifest list");
    let mut files = Vec::new();
    for m in list.entries() {
        let bytes = std::fs::read(local(&m.manifest_path)).expect("a manifest");
        let manifest = iceberg::spec::Manifest::parse_avro(&bytes).expect("a manifest");
        files.extend(
            manifest
                .entries()
                .iter()
                .filter(|e| e.status() != ManifestStatus::Deleted)
                .map(|e| e.file_path().to_owned()),
        );
    }
    files
}

/// Checks what any reader relies on: sequence numbers rise along the snapshot chain to
/// the table's last one, and no file is live twice (a merge that carried one twice).
fn check(t: &TableMetadata, live: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for f in live {
        assert!(seen.insert(f), "{f} is live twice in {}", t.location());
    }
    let mut at = t.current_snapshot().cloned();
    if let Some(s) = &at {
        assert_eq!(s.sequence_number(), t.last_sequence_number());
    }
    while let Some(s) = at {
        let parent = s.parent_snapshot_id().map(|p| {
            t.snapshot_by_id(p)
                .unwrap_or_else(|| panic!("snapshot {p} is gone"))
        });
        if let Some(p) = &parent {
            assert!(
                p.sequence_number() < s.sequence_number(),
                "sequence numbers fall from {} to {}",
                p.sequence_number(),
                s.sequence_number()
            );
        }
        at = parent.cloned();
    }
}

/// The table as the model observes it, from its metadata and manifests (checked first).
pub fn observe(t: &LoadedTable) -> Observed {
    let generation = t
        .metadata
        .properties()
        .get(GENERATION)
        .expect("a generation")
        .clone();
    let live = live_files(&t.metadata);
    check(&t.metadata, &live);
    let bases = live.iter().filter(|f| f.contains("/data/base-")).count();
    assert!(bases <= 1, "{bases} base files are live");
    let mut rows: Vec<String> = live
        .iter()
        .filter_map(|path| {
            let name = path.rsplit('/').next()?.strip_prefix(ROW)?;
            Some(name.split('-').next()?.to_owned())
        })
        .collect();
    // The model's order: the client's row, then the runs' in order.
    rows.sort_by_key(|r| (r != "c", r.clone()));
    Observed {
        id: t.content_id,
        generation,
        rows,
    }
}

impl Writer<'_> {
    fn current(&self) -> Option<LoadedTable> {
        self.catalog
            .load_table(self.who, &self.at, &self.key)
            .ok()
            .map(|(_, t)| t)
    }

    /// A replace: the table at generation `generation` with none of its rows; created when
    /// absent.
    pub fn replace(&self, generation: &str) {
        let properties = HashMap::from([(GENERATION.to_owned(), generation.to_owned())]);
        let Some(t) = self.current() else {
            let create = self.staged(properties.clone());
            let snapshot = self.snapshot(&create, Operation::Append, "base");
            self.commit(&create, create_updates(&create, properties, snapshot), true);
            return;
        };
        let snapshot = self.snapshot(&t.metadata, Operation::Overwrite, "base");
        let updates = vec![TableUpdate::SetProperties {
            updates: properties,
        }];
        self.commit(&t.metadata, with_snapshot(updates, snapshot), false);
    }

    /// Appends row `row` (`c`, `r1`); creates the table at generation `generation` first,
    /// in the same commit, when it is absent.
    pub fn append(&self, row: &str, generation: &str) {
        let file = format!("{ROW}{row}");
        let Some(t) = self.current() else {
            let properties = HashMap::from([(GENERATION.to_owned(), generation.to_owned())]);
            let create = self.staged(properties.clone());
            let snapshot = self.snapshot(&create, Operation::Append, &file);
            self.commit(&create, create_updates(&create, properties, snapshot), true);
            return;
        };
        let snapshot = self.snapshot(&t.metadata, Operation::Append, &file);
        self.commit(&t.metadata, with_snapshot(Vec::new(), snapshot), false);
    }

    /// The metadata a create would have (its location and uuid come from the catalog).
    fn staged(&self, properties: HashMap<String, String>) -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .expect("a schema");
        let namespace = self.key.parent().expect("a.t2 is in a namespace");
        let staged = self
            .catalog
            .create_table(
                self.who,
                &self.at,
                &namespace,
                TableCreate {
                    name: self.key.name().to_owned(),
                    location: None,
                    schema,
                    partition_spec: None,
                    write_order: None,
                    stage_create: true,
                    properties,
                },
                &Authored::default(),
                None,
            )
            .expect("a staged create");
        staged.metadata.as_ref().clone()
    }

    /// A snapshot on `t`'s current one that adds the data file `file` (its sequence number
    /// inherited from the manifest list, as Java writers leave it) and, for an overwrite,
    /// deletes every live data file (its manifests rewritten with them deleted). Manifests
    /// left with no live file are dropped, as engines drop them.
    fn snapshot(&self, t: &TableMetadata, operation: Operation, file: &str) -> Snapshot {
        // A staged table's folder is not there yet: an engine's writer makes it.
        std::fs::create_dir_all(local(t.location())).expect("the table's folder");
        let io = self.catalog.table_file_io(t).expect("the table's files");
        let folder = format!("{}/metadata", t.location());
        let (id, seq) = (self.id, t.last_sequence_number() + 1);
        let schema = t.current_schema().clone();
        let spec = t.default_partition_spec().as_ref().clone();
        let parent = t.current_snapshot().cloned();
        let writer = |k: usize, name: &str| {
            let out = io
                .new_output(format!("{folder}/{name}-{id}-m{k}.avro"))
                .expect("a manifest");
            ManifestWriterBuilder::new(out, Some(id), schema.clone(), spec.clone()).build_v2_data()
        };
        let mut manifests: Vec<ManifestFile> = Vec::new();
        if let Some(p) = &parent {
            let list = ManifestList::parse_with_version(
                &std::fs::read(local(p.manifest_list())).expect("the manifest list"),
                t.format_version(),
            )
            .expect("a manifest list");
            for (k, m) in list.consume_entries().into_iter().enumerate() {
                let live = m.added_files_count.unwrap_or(1) + m.existing_files_count.unwrap_or(1);
                if live == 0 {
                    continue;
                }
                if operation == Operation::Append {
                    manifests.push(m);
                    continue;
                }
                let bytes = std::fs::read(local(&m.manifest_path)).expect("a manifest");
                let manifest = iceberg::spec::Manifest::parse_avro(&bytes).expect("a manifest");
                let mut w = writer(k + 1, "deleted");
                for e in manifest.entries() {
                    if e.status() == ManifestStatus::Deleted {
                        continue;
                    }
                    let s = e.sequence_number().unwrap_or(m.sequence_number);
                    let fs = e.file_sequence_number.unwrap_or(s);
                    w.add_delete_file(e.data_file().clone(), s, Some(fs))
                        .expect("a deleted entry");
                }
                manifests.push(futures::executor::block_on(w.write_manifest_file()).unwrap());
            }
        }
        let mut data = DataFileBuilder::default();
        data.content(DataContentType::Data)
            .file_path(format!("{}/data/{file}-{id}.parquet", t.location()))
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(1)
            .file_size_in_bytes(100)
            .partition_spec_id(t.default_partition_spec_id());
        let mut w = writer(0, "added");
        w.add_file(data.build().expect("a data file"), -1)
            .expect("an added entry");
        manifests.insert(
            0,
            futures::executor::block_on(w.write_manifest_file()).unwrap(),
        );
        let list_path = format!("{folder}/snap-{id}-replay.avro");
        let out = io.new_output(&list_path).expect("a manifest list");
        let parent_id = parent.as_ref().map(|p| p.snapshot_id());
        futures::executor::block_on(async {
            let mut w = ManifestListWriter::v2(out.writer().await.unwrap(), id, parent_id, seq);
            w.add_manifests(manifests.into_iter()).unwrap();
            w.close().await.unwrap();
        });
        Snapshot::builder()
            .with_snapshot_id(id)
            .with_parent_snapshot_id(parent_id)
            .with_sequence_number(seq)
            .with_timestamp_ms(t.last_updated_ms() + 1)
            .with_manifest_list(list_path)
            .with_schema_id(t.current_schema_id())
            .with_summary(Summary {
                operation,
                additional_properties: Default::default(),
            })
            .build()
    }

    /// Commits `updates` to the table `t` (or creates it), with the requirements engines
    /// send: the table is absent, or it is the same table at the same snapshot.
    fn commit(&self, t: &TableMetadata, updates: Vec<TableUpdate>, create: bool) {
        let requirements = if create {
            vec![TableRequirement::NotExist]
        } else {
            vec![
                TableRequirement::UuidMatch { uuid: t.uuid() },
                TableRequirement::RefSnapshotIdMatch {
                    r#ref: "main".to_owned(),
                    snapshot_id: t.current_snapshot().map(|s| s.snapshot_id()),
                },
            ]
        };
        self.catalog
            .commit_table(
                self.who,
                &self.at,
                TableChange {
                    key: self.key.clone(),
                    requirements,
                    updates,
                },
                &Authored::default(),
                None,
            )
            .expect("the table's commit");
    }
}

/// The updates that create the staged table `t` with its first snapshot.
fn create_updates(
    t: &TableMetadata,
    properties: HashMap<String, String>,
    snapshot: Snapshot,
) -> Vec<TableUpdate> {
    let updates = vec![
        TableUpdate::AssignUuid { uuid: t.uuid() },
        TableUpdate::UpgradeFormatVersion {
            format_version: FormatVersion::V2,
        },
        TableUpdate::AddSchema {
            schema: t.current_schema().as_ref().clone(),
        },
        TableUpdate::SetCurrentSchema { schema_id: -1 },
        TableUpdate::AddSpec {
            spec: t.default_partition_spec().as_ref().clone().into_unbound(),
        },
        TableUpdate::SetDefaultSpec { spec_id: -1 },
        TableUpdate::AddSortOrder {
            sort_order: t.default_sort_order().as_ref().clone(),
        },
        TableUpdate::SetDefaultSortOrder { sort_order_id: -1 },
        TableUpdate::SetLocation {
            location: t.location().to_owned(),
        },
        TableUpdate::SetProperties {
            updates: properties,
        },
    ];
    with_snapshot(updates, snapshot)
}

fn with_snapshot(mut updates: Vec<TableUpdate>, snapshot: Snapshot) -> Vec<TableUpdate> {
    let id = snapshot.snapshot_id();
    updates.push(TableUpdate::AddSnapshot { snapshot });
    updates.push(TableUpdate::SetSnapshotRef {
        ref_name: "main".to_owned(),
        reference: SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)),
    });
    updates
}
