//! floe's Iceberg snapshot producer (DESIGN §3): from a table's metadata, an operation and
//! new data files, the manifests, the manifest list and the table updates and requirements
//! of one new snapshot. Imports commit through it; runs materializing their outputs and an
//! Iceberg-aware merge will too, so it knows nothing of where the files came from.
//!
//! The `iceberg` crate's own producer (`transaction::SnapshotProducer`) is private to it and
//! commits through a `Catalog` of its own; this one returns what to commit, so the caller
//! commits it on the branch it chooses, with its own expectations.
//!
//! It writes format-version 2 metadata only: manifests of data files, the parent's manifests
//! carried as they are when nothing in them changes, removed files as deleted entries, and
//! a summary with the added, removed and total counts Iceberg's writers keep.

use std::collections::{BTreeSet, HashMap};

use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestList, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, PartitionSpecRef, Snapshot, SnapshotReference,
    SnapshotRetention, TableMetadata,
};
use iceberg::{TableRequirement, TableUpdate};
use uuid::Uuid;

use crate::limits::SNAPSHOT_ID_ATTEMPTS_MAX;
use removal::Rewrite;
use summary::{Tally, summary};

mod removal;
mod summary;

/// What a new snapshot does to the table's data files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOperation {
    /// Adds the new files; every live file stays (Iceberg `append`).
    Append,
    /// Removes files and adds the new ones, changing the table's rows (Iceberg
    /// `overwrite`): an import in replace mode, a run's output written again.
    Overwrite(Removed),
    /// Removes files and adds new ones that hold the same rows (Iceberg `replace`): a
    /// compaction. Readers of the rows see no change; nothing checks that the rows agree.
    Replace(Removed),
}

/// The live data files an overwrite or a replace removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Every live data file, and the delete files with them (nothing is left to delete).
    All,
    /// The live data files at these paths; the others, and every delete file, are kept.
    Files(BTreeSet<String>),
}

/// One snapshot to produce.
#[derive(Debug, Clone)]
pub struct NewSnapshot<'a> {
    /// The table as it is now: the new snapshot's parent is the head of `branch` here.
    pub metadata: &'a TableMetadata,
    /// The table's branch the snapshot goes on (Iceberg's, not floe's: usually `main`).
    pub branch: &'a str,
    pub operation: SnapshotOperation,
    /// The new data files, of the table's default partition spec.
    pub added: Vec<DataFile>,
    /// Summary properties of the caller's own (what made the snapshot), beside Iceberg's.
    pub properties: HashMap<String, String>,
    /// The time of the snapshot; a time before the table's last update is moved just past
    /// it, so the table's history stays in order.
    pub timestamp_ms: i64,
    /// A fresh id: it names the snapshot's manifest files, and its snapshot id is derived
    /// from it.
    pub id: Uuid,
}

/// What to commit: the updates and requirements of the snapshot, whose files are written.
#[derive(Debug, Clone)]
pub struct SnapshotCommit {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    /// The table is the one read, and its branch has not moved since.
    pub requirements: Vec<TableRequirement>,
    /// Adds the snapshot and moves the branch to it.
    pub updates: Vec<TableUpdate>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("floe writes snapshots of format-version 2 tables; this table is format-version {0}")]
    FormatVersion(FormatVersion),
    #[error("data file {path} names partition spec {spec_id}, which the table does not have")]
    UnknownPartitionSpec { path: String, spec_id: i32 },
    /// An overwrite or a replace names a file the branch's head does not hold.
    #[error("{0} is not a live data file of the table, so it cannot be removed")]
    NotInTable(String),
    #[error("no snapshot id derived from {0} is free in the table")]
    NoFreeId(Uuid),
    /// Reading the parent's manifests or writing the new ones failed.
    #[error("writing the snapshot: {0}")]
    Iceberg(#[from] iceberg::Error),
}

/// Writes the manifests and the manifest list of a new snapshot through `file_io`, under
/// the table's `metadata/` folder, and returns what to commit.
pub async fn produce(
    file_io: &FileIO,
    new: NewSnapshot<'_>,
) -> Result<SnapshotCommit, SnapshotError> {
    let metadata = new.metadata;
    if metadata.format_version() != FormatVersion::V2 {
        return Err(SnapshotError::FormatVersion(metadata.format_version()));
    }
    let folder = format!("{}/metadata", metadata.location().trim_end_matches('/'));
    let snapshot_id = snapshot_id(metadata, new.id)?;
    let parent = metadata.snapshot_for_ref(new.branch).cloned();
    let parent_id = parent.as_ref().map(|p| p.snapshot_id());
    let sequence = metadata.last_sequence_number() + 1;
    let schema = metadata.current_schema().clone();
    let writer = |n: usize, spec: &PartitionSpecRef| -> Result<ManifestWriter, SnapshotError> {
        let out = file_io.new_output(format!("{folder}/{}-m{n}.avro", new.id))?;
        Ok(ManifestWriterBuilder::new(
            out,
            Some(snapshot_id),
            schema.clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data())
    };

    let added = Tally::of(&new.added);
    let mut manifests = Vec::new();
    if !new.added.is_empty() {
        let mut m0 = writer(0, metadata.default_partition_spec())?;
        for f in new.added {
            m0.add_file(f, sequence)?;
        }
        manifests.push(m0.write_manifest_file().await?);
    }
    let removing = match &new.operation {
        SnapshotOperation::Append => None,
        SnapshotOperation::Overwrite(removed) | SnapshotOperation::Replace(removed) => {
            Some(removed)
        }
    };
    let mut removed = Tally::default();
    if let Some(parent) = &parent {
        let bytes = file_io.new_input(parent.manifest_list())?.read().await?;
        let list = ManifestList::parse_with_version(&bytes, metadata.format_version())?;
        match removing {
            None => manifests.extend(list.consume_entries()),
            Some(which) => {
                let rewrite = Rewrite {
                    file_io,
                    metadata,
                    which,
                    writer: &writer,
                };
                // A Vec (not the list's opaque iterator): the future stays `Send`.
                let parent: Vec<_> = list.consume_entries().into_iter().collect();
                let (kept, gone) = rewrite.run(parent).await?;
                manifests.extend(kept);
                removed = gone;
            }
        }
    }
    if let Some(Removed::Files(paths)) = removing
        && let Some(missing) = paths.iter().find(|p| !removed.paths.contains(*p))
    {
        return Err(SnapshotError::NotInTable(missing.clone()));
    }

    let list_location = format!("{folder}/snap-{snapshot_id}-1-{}.avro", new.id);
    let mut list = ManifestListWriter::v2(
        file_io.new_output(&list_location)?.writer().await?,
        snapshot_id,
        parent_id,
        sequence,
    );
    list.add_manifests(manifests.into_iter())?;
    list.close().await?;

    let operation = match &new.operation {
        SnapshotOperation::Append => Operation::Append,
        SnapshotOperation::Overwrite(_) => Operation::Overwrite,
        SnapshotOperation::Replace(_) => Operation::Replace,
    };
    let summary = summary(
        operation,
        parent.as_ref().map(|p| p.summary()),
        matches!(removing, Some(Removed::All)),
        &added,
        &removed,
        new.properties,
    );
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence)
        .with_timestamp_ms(new.timestamp_ms.max(metadata.last_updated_ms() + 1))
        .with_manifest_list(list_location)
        .with_schema_id(metadata.current_schema_id())
        .with_summary(summary)
        .build();
    Ok(SnapshotCommit {
        snapshot_id,
        sequence_number: sequence,
        requirements: vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: new.branch.to_owned(),
                snapshot_id: parent_id,
            },
        ],
        updates: vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: new.branch.to_owned(),
                reference: SnapshotReference::new(
                    snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ],
    })
}

/// A snapshot id from `id`: the first 63 bits of BLAKE3(id, attempt) that are not zero
/// and not already a snapshot of the table.
fn snapshot_id(metadata: &TableMetadata, id: Uuid) -> Result<i64, SnapshotError> {
    (0..SNAPSHOT_ID_ATTEMPTS_MAX)
        .map(|attempt| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(id.as_bytes()).update(&attempt.to_le_bytes());
            let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
                .try_into()
                .expect("8 bytes");
            i64::from_le_bytes(bytes) & i64::MAX
        })
        .find(|n| *n != 0 && metadata.snapshot_by_id(*n).is_none())
        .ok_or(SnapshotError::NoFreeId(id))
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{
        DataContentType, DataFileBuilder, DataFileFormat, MAIN_BRANCH, ManifestStatus, NestedField,
        PrimitiveType, Schema, SortOrder, Struct, TableMetadataBuilder, Type, UnboundPartitionSpec,
    };

    use super::*;

    /// Given with a trailing slash, as a catalog may store it: paths have no `//`.
    const LOCATION: &str = "memory:///warehouse/db/t";

    fn table(version: FormatVersion) -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap();
        TableMetadataBuilder::new(
            schema,
            UnboundPartitionSpec::builder().build(),
            SortOrder::unsorted_order(),
            format!("{LOCATION}/"),
            version,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    fn file(name: &str, records: u64) -> DataFile {
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(path(name))
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(records)
            .file_size_in_bytes(records * 10)
            .partition_spec_id(0)
            .build()
            .unwrap()
    }

    fn path(name: &str) -> String {
        format!("{LOCATION}/data/{name}.parquet")
    }

    fn new(
        table: &TableMetadata,
        operation: SnapshotOperation,
        added: Vec<DataFile>,
    ) -> NewSnapshot<'_> {
        NewSnapshot {
            metadata: table,
            branch: MAIN_BRANCH,
            operation,
            added,
            properties: HashMap::from([("made-by".to_owned(), "a test".to_owned())]),
            timestamp_ms: 1_000,
            id: next_id(),
        }
    }

    /// A fresh id per snapshot, the same in every run.
    fn next_id() -> Uuid {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Uuid::from_u128(u128::from(
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Produces a snapshot and applies it as a catalog's commit would: its requirements
    /// hold on the table it was made from, and the metadata builder takes its updates.
    async fn commit(io: &FileIO, new: NewSnapshot<'_>) -> (SnapshotCommit, TableMetadata) {
        let before = new.metadata.clone();
        let produced = produce(io, new).await.unwrap();
        for requirement in &produced.requirements {
            requirement.check(Some(&before)).unwrap();
        }
        let mut builder = TableMetadataBuilder::new_from_metadata(before, None);
        for update in produced.updates.clone() {
            builder = update.apply(builder).unwrap();
        }
        (produced, builder.build().unwrap().metadata)
    }

    fn summary(table: &TableMetadata) -> (Operation, HashMap<String, String>) {
        let s = table.current_snapshot().unwrap().summary().clone();
        (s.operation, s.additional_properties)
    }

    fn has(props: &HashMap<String, String>, expected: &[(&str, &str)]) {
        for (key, value) in expected {
            assert_eq!(
                props.get(*key).map(String::as_str),
                Some(*value),
                "{key}: {props:?}"
            );
        }
    }

    /// Every entry of the table's current snapshot: its manifest, status, file and data
    /// sequence number.
    async fn entries(
        io: &FileIO,
        table: &TableMetadata,
    ) -> Vec<(String, ManifestStatus, String, i64)> {
        let snapshot = table.current_snapshot().unwrap();
        let bytes = io
            .new_input(snapshot.manifest_list())
            .unwrap()
            .read()
            .await
            .unwrap();
        let list = ManifestList::parse_with_version(&bytes, FormatVersion::V2).unwrap();
        let mut all = Vec::new();
        for m in list.entries() {
            for e in m.load_manifest(io).await.unwrap().entries() {
                all.push((
                    m.manifest_path.clone(),
                    e.status(),
                    e.file_path().to_owned(),
                    e.sequence_number().unwrap(),
                ));
            }
        }
        all
    }

    fn statuses(
        entries: &[(String, ManifestStatus, String, i64)],
    ) -> Vec<(ManifestStatus, String)> {
        let mut all: Vec<_> = entries.iter().map(|(_, s, f, _)| (*s, f.clone())).collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    }

    #[tokio::test]
    async fn an_append_to_an_empty_table_is_its_first_snapshot() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let added = vec![file("a", 10), file("b", 5)];
        let (produced, after) = commit(&io, new(&empty, SnapshotOperation::Append, added)).await;
        let snapshot = after.current_snapshot().unwrap();
        assert_eq!(snapshot.snapshot_id(), produced.snapshot_id);
        assert_eq!(snapshot.parent_snapshot_id(), None);
        assert_eq!(
            (snapshot.sequence_number(), produced.sequence_number),
            (1, 1)
        );
        assert!(
            produced
                .requirements
                .contains(&TableRequirement::RefSnapshotIdMatch {
                    r#ref: MAIN_BRANCH.to_owned(),
                    snapshot_id: None,
                })
        );
        // Moved past the table's last update, which is later than the time given.
        assert!(snapshot.timestamp_ms() > empty.last_updated_ms());
        let (operation, props) = summary(&after);
        assert_eq!(operation, Operation::Append);
        has(
            &props,
            &[
                ("added-data-files", "2"),
                ("added-records", "15"),
                ("added-files-size", "150"),
                ("total-data-files", "2"),
                ("total-records", "15"),
                ("total-files-size", "150"),
                ("total-delete-files", "0"),
                ("made-by", "a test"),
            ],
        );
        assert!(!props.contains_key("deleted-data-files"), "{props:?}");
        let entries = entries(&io, &after).await;
        assert_eq!(
            statuses(&entries),
            [
                (ManifestStatus::Added, path("a")),
                (ManifestStatus::Added, path("b")),
            ]
        );
        assert!(entries.iter().all(|e| e.3 == 1), "{entries:?}");
        // Every file the snapshot wrote is under the table's metadata folder.
        let folder = format!("{LOCATION}/metadata/");
        assert!(
            snapshot.manifest_list().starts_with(&folder),
            "{}",
            snapshot.manifest_list()
        );
        assert!(
            entries.iter().all(|e| e.0.starts_with(&folder)),
            "{entries:?}"
        );
    }

    #[tokio::test]
    async fn an_append_to_a_table_with_snapshots_adds_to_its_totals() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let (first, one) = commit(
            &io,
            new(&empty, SnapshotOperation::Append, vec![file("a", 10)]),
        )
        .await;
        let added = vec![file("b", 5), file("c", 1)];
        let (second, two) = commit(&io, new(&one, SnapshotOperation::Append, added)).await;
        let snapshot = two.current_snapshot().unwrap();
        assert_eq!(snapshot.parent_snapshot_id(), Some(first.snapshot_id));
        assert_ne!(second.snapshot_id, first.snapshot_id);
        assert_eq!(snapshot.sequence_number(), 2);
        let (operation, props) = summary(&two);
        assert_eq!(operation, Operation::Append);
        has(
            &props,
            &[
                ("added-data-files", "2"),
                ("added-records", "6"),
                ("total-data-files", "3"),
                ("total-records", "16"),
                ("total-files-size", "160"),
            ],
        );
        // The first snapshot's manifest is carried as it is, its file's sequence number kept.
        let before = entries(&io, &one).await;
        let after = entries(&io, &two).await;
        assert!(after.contains(&before[0]), "{after:?}");
        assert_eq!(statuses(&after).len(), 3);
        assert!(
            after.iter().filter(|e| e.2 != path("a")).all(|e| e.3 == 2),
            "{after:?}"
        );
        // A snapshot made from the first table no longer commits: the branch moved.
        assert!(
            first
                .requirements
                .iter()
                .any(|r| r.check(Some(&two)).is_err())
        );
    }

    #[tokio::test]
    async fn an_overwrite_of_every_file_leaves_only_the_new_ones() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let (_, one) = commit(
            &io,
            new(
                &empty,
                SnapshotOperation::Append,
                vec![file("a", 10), file("b", 5)],
            ),
        )
        .await;
        let replace = SnapshotOperation::Overwrite(Removed::All);
        let (_, two) = commit(&io, new(&one, replace, vec![file("c", 2)])).await;
        let (operation, props) = summary(&two);
        assert_eq!(operation, Operation::Overwrite);
        has(
            &props,
            &[
                ("added-data-files", "1"),
                ("deleted-data-files", "2"),
                ("deleted-records", "15"),
                ("removed-files-size", "150"),
                ("total-data-files", "1"),
                ("total-records", "2"),
                ("total-files-size", "20"),
            ],
        );
        let before = entries(&io, &one).await;
        let after = entries(&io, &two).await;
        assert_eq!(
            statuses(&after),
            [
                (ManifestStatus::Deleted, path("a")),
                (ManifestStatus::Deleted, path("b")),
                (ManifestStatus::Added, path("c")),
            ]
        );
        // Nothing of the parent's is carried: its files are listed again, as deleted.
        assert!(after.iter().all(|e| e.0 != before[0].0), "{after:?}");
    }

    #[tokio::test]
    async fn an_overwrite_of_some_files_keeps_the_others_and_their_manifests() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let (_, one) = commit(
            &io,
            new(&empty, SnapshotOperation::Append, vec![file("a", 10)]),
        )
        .await;
        let (_, two) = commit(
            &io,
            new(
                &one,
                SnapshotOperation::Append,
                vec![file("b", 5), file("c", 1)],
            ),
        )
        .await;
        let removed = Removed::Files([path("b")].into());
        let (_, three) = commit(
            &io,
            new(
                &two,
                SnapshotOperation::Overwrite(removed),
                vec![file("d", 7)],
            ),
        )
        .await;
        let (operation, props) = summary(&three);
        assert_eq!(operation, Operation::Overwrite);
        has(
            &props,
            &[
                ("added-data-files", "1"),
                ("deleted-data-files", "1"),
                ("deleted-records", "5"),
                ("removed-files-size", "50"),
                ("total-data-files", "3"),
                ("total-records", "18"),
                ("total-files-size", "180"),
            ],
        );
        let untouched = entries(&io, &one).await;
        let after = entries(&io, &three).await;
        assert!(
            after.contains(&untouched[0]),
            "a's manifest is carried as it is: {after:?}"
        );
        assert_eq!(
            statuses(&after),
            [
                (ManifestStatus::Added, path("a")),
                (ManifestStatus::Deleted, path("b")),
                (ManifestStatus::Existing, path("c")),
                (ManifestStatus::Added, path("d")),
            ]
        );
        // Each file keeps the sequence number it was added with.
        let sequence = |name: &str| after.iter().find(|e| e.2 == path(name)).unwrap().3;
        assert_eq!(
            [sequence("a"), sequence("b"), sequence("c"), sequence("d")],
            [1, 2, 2, 3]
        );
    }

    #[tokio::test]
    async fn a_replace_is_recorded_as_such_and_removes_only_live_files() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let (_, one) = commit(
            &io,
            new(
                &empty,
                SnapshotOperation::Append,
                vec![file("a", 4), file("b", 6)],
            ),
        )
        .await;
        let compact = SnapshotOperation::Replace(Removed::Files([path("a"), path("b")].into()));
        let (_, two) = commit(&io, new(&one, compact, vec![file("ab", 10)])).await;
        let (operation, props) = summary(&two);
        assert_eq!(operation, Operation::Replace);
        has(
            &props,
            &[
                ("deleted-data-files", "2"),
                ("total-data-files", "1"),
                ("total-records", "10"),
            ],
        );
        // `a` is gone now: removing it again is refused, naming it.
        let again = SnapshotOperation::Replace(Removed::Files([path("a")].into()));
        let err = produce(&io, new(&two, again, vec![file("x", 4)]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SnapshotError::NotInTable(p) if *p == path("a")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_table_of_format_version_1_is_refused() {
        let io = FileIO::new_with_memory();
        let v1 = table(FormatVersion::V1);
        let err = produce(&io, new(&v1, SnapshotOperation::Append, vec![file("a", 1)]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::FormatVersion(FormatVersion::V1)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_snapshot_id_comes_from_its_id_and_is_never_one_the_table_has() {
        let io = FileIO::new_with_memory();
        let empty = table(FormatVersion::V2);
        let id = Uuid::from_u128(7);
        let mut made = new(&empty, SnapshotOperation::Append, vec![file("a", 1)]);
        made.id = id;
        let (produced, one) = commit(&io, made).await;
        assert_eq!(snapshot_id(&empty, id).unwrap(), produced.snapshot_id);
        let next = snapshot_id(&one, id).unwrap();
        assert!(next != produced.snapshot_id && next > 0);
    }
}
