//! A small lake for the merge's Rust tests: one table `db.t` (`id long, p string`,
//! optionally partitioned by `p`) in a real catalog and warehouse, written the way engines
//! write Iceberg (manifests, manifest lists, snapshots committed through the catalog),
//! with operations the Python clients cannot make: equality deletes, position deletes
//! naming their data file, compactions.
//!
//! Data files are not written: a data file's rows are its name (`d<n>-<id>_<id>...`, one
//! row per id), a delete file's rows are in its name too, and `rows` reads the table as an
//! engine would, from the manifests: a data file's rows, less the positions of position
//! deletes of a sequence number at least its own, less the values of equality deletes of
//! a higher sequence number in its partition.

// Shared by the merge's tests and its bench (`benches/table_merge.rs`); each uses part.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use floe_catalog::{
    Authored, Catalog, Isolation, MergeRequest, Principal, TableChange, TableCreate,
    TableMergeOptions, TableMergeReport, Warehouse,
};
use floe_commits::{ContentKey, MergeOutcome, RefKind, RefName, RefSpec};
use iceberg::TableUpdate;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, FormatVersion, Literal, Manifest,
    ManifestList, ManifestListWriter, ManifestStatus, ManifestWriterBuilder, NestedField,
    Operation, PrimitiveType, Schema, Snapshot, SnapshotReference, SnapshotRetention, Struct,
    Summary, TableMetadata, Transform, Type, UnboundPartitionSpec,
};

pub struct Lake {
    pub catalog: Catalog,
    who: Principal,
    key: ContentKey,
    partitioned: bool,
    next: AtomicU32,
    _dir: tempfile::TempDir,
}

/// A live file of the table, as the manifests list it.
#[derive(Debug, Clone)]
pub struct Live {
    pub file: DataFile,
    pub seq: i64,
}

fn spec(at: &str) -> RefSpec {
    RefSpec::parse(at).unwrap()
}

pub fn local(location: &str) -> String {
    location
        .strip_prefix("file://")
        .unwrap_or(location)
        .to_owned()
}

impl Lake {
    pub fn new(partitioned: bool, format: FormatVersion) -> Lake {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&dir.path().join("warehouse")).unwrap();
        let catalog = Catalog::in_memory().with_warehouse(warehouse);
        let who = Principal::anonymous();
        let ns = ContentKey::new(["db"]).unwrap();
        catalog
            .create_namespace(
                &who,
                &spec("main"),
                &ns,
                Default::default(),
                &Authored::default(),
                None,
            )
            .unwrap();
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "p", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let partition_spec = partitioned.then(|| {
            UnboundPartitionSpec::builder()
                .add_partition_field(2, "p", Transform::Identity)
                .unwrap()
                .build()
        });
        let mut properties = std::collections::HashMap::new();
        if format == FormatVersion::V3 {
            properties.insert("format-version".to_owned(), "3".to_owned());
        }
        catalog
            .create_table(
                &who,
                &spec("main"),
                &ns,
                TableCreate {
                    name: "t".to_owned(),
                    location: None,
                    schema,
                    partition_spec,
                    write_order: None,
                    stage_create: false,
                    properties,
                },
                &Authored::default(),
                None,
            )
            .unwrap();
        Lake {
            catalog,
            who,
            key: ContentKey::new(["db", "t"]).unwrap(),
            partitioned,
            next: AtomicU32::new(0),
            _dir: dir,
        }
    }

    pub fn branch(&self, name: &str, from: &str) {
        self.catalog
            .create_ref(
                &self.who,
                &RefName::parse(name).unwrap(),
                RefKind::Branch,
                &spec(from),
                None,
            )
            .unwrap();
    }

    /// A namespace on `at` (a commit that touches no table).
    pub fn namespace(&self, at: &str, name: &str) {
        self.catalog
            .create_namespace(
                &self.who,
                &spec(at),
                &ContentKey::new([name]).unwrap(),
                Default::default(),
                &Authored::default(),
                None,
            )
            .unwrap();
    }

    pub fn table(&self, at: &str) -> TableMetadata {
        let (_, t) = self
            .catalog
            .load_table(&self.who, &spec(at), &self.key)
            .unwrap();
        t.metadata.as_ref().clone()
    }

    fn partition(&self, p: &str) -> Struct {
        if self.partitioned {
            Struct::from_iter([Some(Literal::string(p))])
        } else {
            Struct::empty()
        }
    }

    fn name(&self, kind: &str, values: &[i64]) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let v: Vec<String> = values.iter().map(i64::to_string).collect();
        format!("{kind}{n}-{}", v.join("_"))
    }

    fn file(
        &self,
        metadata: &TableMetadata,
        content: DataContentType,
        name: &str,
        part: &str,
        rows: usize,
        referenced: Option<String>,
    ) -> DataFile {
        let mut b = DataFileBuilder::default();
        b.content(content)
            .file_path(format!("{}/data/{name}.parquet", metadata.location()))
            .file_format(DataFileFormat::Parquet)
            .partition(self.partition(part))
            .record_count(rows as u64)
            .file_size_in_bytes(100 + rows as u64)
            .partition_spec_id(metadata.default_partition_spec_id())
            .referenced_data_file(referenced);
        if content == DataContentType::EqualityDeletes {
            b.equality_ids(Some(vec![1]));
        }
        b.build().unwrap()
    }

    /// The live files of the table at `at` (data and deletes).
    pub fn live(&self, at: &str) -> Vec<Live> {
        let t = self.table(at);
        let Some(s) = t.current_snapshot() else {
            return Vec::new();
        };
        let list = ManifestList::parse_with_version(
            &std::fs::read(local(s.manifest_list())).unwrap(),
            t.format_version(),
        )
        .unwrap();
        let mut out = Vec::new();
        for m in list.entries() {
            let manifest =
                Manifest::parse_avro(&std::fs::read(local(&m.manifest_path)).unwrap()).unwrap();
            for e in manifest.entries() {
                if e.status() == ManifestStatus::Deleted {
                    continue;
                }
                out.push(Live {
                    file: e.data_file().clone(),
                    seq: e.sequence_number().unwrap_or(m.sequence_number),
                });
            }
        }
        out
    }

    /// Format v3: each live data file's first row id, its own or the one it inherits
    /// from its manifest (the manifest's, plus the rows of the files before it that
    /// inherit theirs).
    pub fn row_ids(&self, at: &str) -> std::collections::BTreeMap<String, i64> {
        let t = self.table(at);
        let mut out = std::collections::BTreeMap::new();
        let Some(s) = t.current_snapshot() else {
            return out;
        };
        let list = ManifestList::parse_with_version(
            &std::fs::read(local(s.manifest_list())).unwrap(),
            t.format_version(),
        )
        .unwrap();
        for m in list.entries() {
            let mut next = m.first_row_id.map(|r| r as i64);
            let manifest =
                Manifest::parse_avro(&std::fs::read(local(&m.manifest_path)).unwrap()).unwrap();
            for e in manifest.entries() {
                if e.status() == ManifestStatus::Deleted
                    || e.content_type() != DataContentType::Data
                {
                    continue;
                }
                let id = match e.data_file().first_row_id() {
                    Some(own) => own,
                    None => {
                        let id = next.expect("a v3 data manifest has a first row id");
                        next = Some(id + e.record_count() as i64);
                        id
                    }
                };
                out.insert(e.file_path().to_owned(), id);
            }
        }
        out
    }

    /// The table's rows at `at`, as (id, partition) pairs, read as an engine reads them.
    pub fn rows(&self, at: &str) -> BTreeSet<(i64, String)> {
        let live = self.live(at);
        let mut out = BTreeSet::new();
        for f in live
            .iter()
            .filter(|f| f.file.content_type() == DataContentType::Data)
        {
            let ids = values(f.file.file_path());
            let part = part_of(&f.file);
            for (pos, id) in ids.iter().enumerate() {
                let by_position = live.iter().any(|d| {
                    d.file.content_type() == DataContentType::PositionDeletes
                        && d.seq >= f.seq
                        && d.file.referenced_data_file().as_deref() == Some(f.file.file_path())
                        && values(d.file.file_path()).contains(&(pos as i64))
                });
                let by_equality = live.iter().any(|d| {
                    d.file.content_type() == DataContentType::EqualityDeletes
                        && d.seq > f.seq
                        && (d.file.partition().fields().is_empty()
                            || d.file.partition() == f.file.partition())
                        && values(d.file.file_path()).contains(id)
                });
                if !by_position && !by_equality {
                    out.insert((*id, part.clone()));
                }
            }
        }
        out
    }

    /// Commits a snapshot on `at`: `added` in one new manifest per content, `removed` (by
    /// path) marked deleted in rewrites of the manifests that hold them.
    fn commit(&self, at: &str, operation: Operation, added: Vec<DataFile>, removed: &[String]) {
        let t = self.table(at);
        let io = self.catalog.table_file_io(&t).unwrap();
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let id = 1_000_000 + i64::from(n);
        let seq = t.last_sequence_number() + 1;
        let folder = format!("{}/metadata", t.location());
        let schema = t.current_schema().clone();
        let partition_spec = t.default_partition_spec().as_ref().clone();
        let parent = t.current_snapshot().cloned();
        let mut manifests = Vec::new();
        let mut k = 0;
        let mut writer = |deletes: bool| {
            k += 1;
            let out = io
                .new_output(format!("{folder}/test-{n}-m{k}.avro"))
                .unwrap();
            let b =
                ManifestWriterBuilder::new(out, Some(id), schema.clone(), partition_spec.clone());
            match (deletes, t.format_version() >= FormatVersion::V3) {
                (false, false) => b.build_v2_data(),
                (true, false) => b.build_v2_deletes(),
                (false, true) => b.build_v3_data(),
                (true, true) => b.build_v3_deletes(),
            }
        };
        if let Some(p) = &parent {
            let list = ManifestList::parse_with_version(
                &std::fs::read(local(p.manifest_list())).unwrap(),
                t.format_version(),
            )
            .unwrap();
            for m in list.consume_entries() {
                let manifest =
                    Manifest::parse_avro(&std::fs::read(local(&m.manifest_path)).unwrap()).unwrap();
                let hits = manifest.entries().iter().any(|e| {
                    e.status() != ManifestStatus::Deleted
                        && removed.iter().any(|r| r == e.file_path())
                });
                if !hits {
                    manifests.push(m);
                    continue;
                }
                let mut w = writer(m.content == iceberg::spec::ManifestContentType::Deletes);
                for e in manifest.entries() {
                    if e.status() == ManifestStatus::Deleted {
                        continue;
                    }
                    let s = e.sequence_number().unwrap_or(m.sequence_number);
                    let fs = e.file_sequence_number.unwrap_or(s);
                    if removed.iter().any(|r| r == e.file_path()) {
                        w.add_delete_file(e.data_file().clone(), s, Some(fs))
                            .unwrap();
                    } else {
                        let snap = e.snapshot_id().unwrap_or(m.added_snapshot_id);
                        w.add_existing_file(e.data_file().clone(), snap, s, Some(fs))
                            .unwrap();
                    }
                }
                manifests.push(futures::executor::block_on(w.write_manifest_file()).unwrap());
            }
        }
        for deletes in [false, true] {
            let files: Vec<DataFile> = added
                .iter()
                .filter(|f| (f.content_type() != DataContentType::Data) == deletes)
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            let mut w = writer(deletes);
            for f in files {
                w.add_file(f, seq).unwrap();
            }
            manifests.insert(
                0,
                futures::executor::block_on(w.write_manifest_file()).unwrap(),
            );
        }
        let list_path = format!("{folder}/snap-{id}-test.avro");
        let out = io.new_output(&list_path).unwrap();
        let v3 = t.format_version() >= FormatVersion::V3;
        let first_row = t.next_row_id();
        let next = futures::executor::block_on(async {
            let mut w = if v3 {
                ManifestListWriter::v3(
                    out.writer().await.unwrap(),
                    id,
                    parent.as_ref().map(|p| p.snapshot_id()),
                    seq,
                    Some(first_row),
                )
            } else {
                ManifestListWriter::v2(
                    out.writer().await.unwrap(),
                    id,
                    parent.as_ref().map(|p| p.snapshot_id()),
                    seq,
                )
            };
            w.add_manifests(manifests.into_iter()).unwrap();
            let next = w.next_row_id();
            w.close().await.unwrap();
            next
        });
        let builder = Snapshot::builder()
            .with_snapshot_id(id)
            .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
            .with_sequence_number(seq)
            .with_timestamp_ms(t.last_updated_ms() + 1)
            .with_manifest_list(list_path)
            .with_schema_id(t.current_schema_id())
            .with_summary(Summary {
                operation,
                additional_properties: Default::default(),
            });
        let snapshot = match (v3, next) {
            (true, Some(next)) => builder.with_row_range(first_row, next - first_row).build(),
            _ => builder.build(),
        };
        self.catalog
            .commit_table(
                &self.who,
                &spec(at),
                TableChange {
                    key: self.key.clone(),
                    requirements: Vec::new(),
                    updates: vec![
                        TableUpdate::AddSnapshot { snapshot },
                        TableUpdate::SetSnapshotRef {
                            ref_name: "main".to_owned(),
                            reference: SnapshotReference::new(
                                id,
                                SnapshotRetention::branch(None, None, None),
                            ),
                        },
                    ],
                },
                &Authored::default(),
                None,
            )
            .unwrap();
    }

    pub fn append(&self, at: &str, part: &str, ids: &[i64]) {
        let t = self.table(at);
        let name = self.name("d", ids);
        let f = self.file(&t, DataContentType::Data, &name, part, ids.len(), None);
        self.commit(at, Operation::Append, vec![f], &[]);
    }

    /// One snapshot adding `count` data files of one row each (a big table, fast).
    pub fn append_files(&self, at: &str, part: &str, count: usize) {
        let t = self.table(at);
        let files = (0..count)
            .map(|i| {
                let name = self.name("d", &[i as i64]);
                self.file(&t, DataContentType::Data, &name, part, 1, None)
            })
            .collect();
        self.commit(at, Operation::Append, files, &[]);
    }

    /// Deletes rows by position: one position delete file per data file holding them.
    pub fn delete_positions(&self, at: &str, ids: &[i64]) {
        let t = self.table(at);
        let mut added = Vec::new();
        for f in self
            .live(at)
            .iter()
            .filter(|f| f.file.content_type() == DataContentType::Data)
        {
            let rows = values(f.file.file_path());
            let positions: Vec<i64> = rows
                .iter()
                .enumerate()
                .filter(|(_, id)| ids.contains(id))
                .map(|(p, _)| p as i64)
                .collect();
            if positions.is_empty() {
                continue;
            }
            let name = self.name("pd", &positions);
            let part = part_of(&f.file);
            added.push(self.file(
                &t,
                DataContentType::PositionDeletes,
                &name,
                &part,
                positions.len(),
                Some(f.file.file_path().to_owned()),
            ));
        }
        self.commit(at, Operation::Delete, added, &[]);
    }

    /// Deletes rows with a deletion vector (format v3): one per data file holding them,
    /// replacing the file's earlier vector as v3 requires.
    pub fn delete_with_vectors(&self, at: &str, ids: &[i64]) {
        let t = self.table(at);
        let live = self.live(at);
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for f in live
            .iter()
            .filter(|f| f.file.content_type() == DataContentType::Data)
        {
            let rows = values(f.file.file_path());
            let earlier: Vec<&Live> = live
                .iter()
                .filter(|d| d.file.referenced_data_file().as_deref() == Some(f.file.file_path()))
                .collect();
            let mut positions: Vec<i64> = earlier
                .iter()
                .flat_map(|d| values(d.file.file_path()))
                .collect();
            positions.extend(
                rows.iter()
                    .enumerate()
                    .filter(|(_, id)| ids.contains(id))
                    .map(|(p, _)| p as i64),
            );
            if positions.len()
                == earlier
                    .iter()
                    .map(|d| values(d.file.file_path()).len())
                    .sum::<usize>()
            {
                continue;
            }
            removed.extend(earlier.iter().map(|d| d.file.file_path().to_owned()));
            let name = self.name("dv", &positions);
            let mut b = DataFileBuilder::default();
            b.content(DataContentType::PositionDeletes)
                .file_path(format!("{}/data/{name}.puffin", t.location()))
                .file_format(DataFileFormat::Puffin)
                .partition(f.file.partition().clone())
                .record_count(positions.len() as u64)
                .file_size_in_bytes(64)
                .partition_spec_id(t.default_partition_spec_id())
                .referenced_data_file(Some(f.file.file_path().to_owned()))
                .content_offset(Some(4))
                .content_size_in_bytes(Some(40));
            added.push(b.build().unwrap());
        }
        self.commit(at, Operation::Delete, added, &removed);
    }

    pub fn equality_delete(&self, at: &str, part: &str, ids: &[i64]) {
        let t = self.table(at);
        let name = self.name("ed", ids);
        let f = self.file(
            &t,
            DataContentType::EqualityDeletes,
            &name,
            part,
            ids.len(),
            None,
        );
        self.commit(at, Operation::Delete, vec![f], &[]);
    }

    /// Copy-on-write delete: the data files holding the ids are rewritten without them.
    pub fn overwrite_without(&self, at: &str, ids: &[i64]) {
        let t = self.table(at);
        let live = self.live(at);
        let rows = self.rows(at);
        let mut removed = Vec::new();
        let mut added = Vec::new();
        for f in live
            .iter()
            .filter(|f| f.file.content_type() == DataContentType::Data)
        {
            let held = values(f.file.file_path());
            if !held.iter().any(|id| ids.contains(id)) {
                continue;
            }
            removed.push(f.file.file_path().to_owned());
            let part = part_of(&f.file);
            let kept: Vec<i64> = held
                .iter()
                .copied()
                .filter(|id| !ids.contains(id) && rows.contains(&(*id, part.clone())))
                .collect();
            if !kept.is_empty() {
                let name = self.name("d", &kept);
                added.push(self.file(&t, DataContentType::Data, &name, &part, kept.len(), None));
            }
            // Its deletes go with it.
            for d in live
                .iter()
                .filter(|d| d.file.referenced_data_file().as_deref() == Some(f.file.file_path()))
            {
                removed.push(d.file.file_path().to_owned());
            }
        }
        if removed.is_empty() {
            return;
        }
        self.commit(at, Operation::Overwrite, added, &removed);
    }

    /// Compaction: the data files of `part` that no delete touches become one file.
    pub fn compact(&self, at: &str, part: &str) {
        let t = self.table(at);
        let live = self.live(at);
        let untouched: Vec<&Live> = live
            .iter()
            .filter(|f| f.file.content_type() == DataContentType::Data && part_of(&f.file) == part)
            .filter(|f| {
                !live.iter().any(|d| {
                    d.file.content_type() != DataContentType::Data
                        && (d.file.referenced_data_file().as_deref() == Some(f.file.file_path())
                            || d.file.content_type() == DataContentType::EqualityDeletes)
                })
            })
            .collect();
        if untouched.len() < 2 {
            return;
        }
        let ids: Vec<i64> = untouched
            .iter()
            .flat_map(|f| values(f.file.file_path()))
            .collect();
        let name = self.name("d", &ids);
        let f = self.file(&t, DataContentType::Data, &name, part, ids.len(), None);
        let removed: Vec<String> = untouched
            .iter()
            .map(|f| f.file.file_path().to_owned())
            .collect();
        self.commit(at, Operation::Replace, vec![f], &removed);
    }

    pub fn merge(
        &self,
        from: &str,
        into: &str,
        isolation: Isolation,
    ) -> Result<(MergeOutcome, Vec<TableMergeReport>), floe_catalog::CatalogError> {
        self.merge_with(
            from,
            into,
            TableMergeOptions {
                isolation: Some(isolation),
                ..TableMergeOptions::default()
            },
        )
    }

    pub fn merge_with(
        &self,
        from: &str,
        into: &str,
        tables: TableMergeOptions,
    ) -> Result<(MergeOutcome, Vec<TableMergeReport>), floe_catalog::CatalogError> {
        self.merge_request(
            from,
            into,
            MergeRequest {
                tables,
                ..MergeRequest::default()
            },
        )
    }

    /// A floe squash merge (one commit, one parent: the merge base does not move).
    pub fn merge_squash(
        &self,
        from: &str,
        into: &str,
    ) -> Result<(MergeOutcome, Vec<TableMergeReport>), floe_catalog::CatalogError> {
        let mut request = MergeRequest::default();
        request.options.strategy = floe_commits::MergeStrategy::Squash;
        self.merge_request(from, into, request)
    }

    fn merge_request(
        &self,
        from: &str,
        into: &str,
        request: MergeRequest,
    ) -> Result<(MergeOutcome, Vec<TableMergeReport>), floe_catalog::CatalogError> {
        self.catalog
            .merge(&self.who, &spec(from), &spec(into), &request, None)
            .map(|(_, o, t)| (o, t))
    }
}

/// The numbers a test file's name carries.
pub fn values(path: &str) -> Vec<i64> {
    let name = path
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".parquet")
        .trim_end_matches(".puffin");
    let Some((_, list)) = name.split_once('-') else {
        return Vec::new();
    };
    list.split('_')
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
        .collect()
}

fn part_of(f: &DataFile) -> String {
    match f.partition().fields().first() {
        Some(Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::String(s)))) => s.clone(),
        _ => "-".to_owned(),
    }
}
