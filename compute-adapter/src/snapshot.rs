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
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestList, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpecRef, Snapshot,
    SnapshotReference, SnapshotRetention, Summary, TableMetadata,
};
use iceberg::{TableRequirement, TableUpdate};
use uuid::Uuid;

use crate::limits::SNAPSHOT_ID_ATTEMPTS_MAX;

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
                let (kept, gone) = rewrite.run(list.consume_entries()).await?;
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

/// Counts of data files, as the summary reports them.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    records: u64,
    bytes: u64,
    /// The files' paths (an overwrite checks that every file it names was removed).
    paths: BTreeSet<String>,
}

impl Tally {
    fn of(files: &[DataFile]) -> Tally {
        let mut tally = Tally::default();
        for f in files {
            tally.count(f);
        }
        tally
    }

    fn count(&mut self, f: &DataFile) {
        self.files += 1;
        self.records += f.record_count();
        self.bytes += f.file_size_in_bytes();
        self.paths.insert(f.file_path().to_owned());
    }
}

/// The parent's manifests under an overwrite or a replace: those that hold no removed file
/// are kept as they are; the entries of the others are written again, per partition spec,
/// the removed files as deleted and the rest as existing.
struct Rewrite<'a, W> {
    file_io: &'a FileIO,
    metadata: &'a TableMetadata,
    which: &'a Removed,
    writer: &'a W,
}

impl<W> Rewrite<'_, W>
where
    W: Fn(usize, &PartitionSpecRef) -> Result<ManifestWriter, SnapshotError>,
{
    async fn run(
        &self,
        parent: impl IntoIterator<Item = ManifestFile>,
    ) -> Result<(Vec<ManifestFile>, Tally), SnapshotError> {
        let mut kept = Vec::new();
        let mut removed = Tally::default();
        // One writer per partition spec, numbered in the order the specs are met (m0 is
        // the added files').
        let mut rewritten: Vec<(i32, ManifestWriter)> = Vec::new();
        for m in parent {
            if m.content != ManifestContentType::Data {
                // Delete files go with every data file, or stay for the files kept.
                if matches!(self.which, Removed::Files(_)) {
                    kept.push(m);
                }
                continue;
            }
            let manifest = m.load_manifest(self.file_io).await?;
            let gone = |path: &str| match self.which {
                Removed::All => true,
                Removed::Files(paths) => paths.contains(path),
            };
            let touched = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && gone(e.file_path()));
            if !touched {
                // Under `All` such a manifest holds no live file: the snapshot drops it.
                if matches!(self.which, Removed::Files(_)) {
                    kept.push(m);
                }
                continue;
            }
            let at = match rewritten
                .iter()
                .position(|(id, _)| *id == m.partition_spec_id)
            {
                Some(at) => at,
                None => {
                    let spec_id = m.partition_spec_id;
                    let spec = self.metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
                        SnapshotError::UnknownPartitionSpec {
                            path: manifest
                                .entries()
                                .iter()
                                .find(|e| e.is_alive())
                                .map_or_else(
                                    || m.manifest_path.clone(),
                                    |e| e.file_path().to_owned(),
                                ),
                            spec_id,
                        }
                    })?;
                    let w = (self.writer)(rewritten.len() + 1, spec)?;
                    rewritten.push((m.partition_spec_id, w));
                    rewritten.len() - 1
                }
            };
            let writer = &mut rewritten[at].1;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let f = entry.data_file().clone();
                let sequence = entry.sequence_number().unwrap_or(0);
                if gone(f.file_path()) {
                    removed.count(&f);
                    writer.add_delete_file(f, sequence, entry.file_sequence_number)?;
                } else {
                    let added_by = entry.snapshot_id().unwrap_or(m.added_snapshot_id);
                    writer.add_existing_file(f, added_by, sequence, entry.file_sequence_number)?;
                }
            }
        }
        for (_, writer) in rewritten {
            kept.push(writer.write_manifest_file().await?);
        }
        Ok((kept, removed))
    }
}

/// The summary of a snapshot: what it added and removed, and the table's totals after it.
/// A total is known when every file was removed (only the new files are left), on a first
/// snapshot, or when the parent's summary has it; otherwise it is left out, as Iceberg's
/// writers do.
fn summary(
    operation: Operation,
    parent: Option<&Summary>,
    removed_all: bool,
    added: &Tally,
    removed: &Tally,
    own: HashMap<String, String>,
) -> Summary {
    let total = |key: &str, added: u64, removed: u64| -> Option<String> {
        match parent {
            _ if removed_all => Some(added),
            None => Some(added),
            Some(p) => p
                .additional_properties
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .and_then(|before| (before + added).checked_sub(removed)),
        }
        .map(|n| n.to_string())
    };
    let mut props = own;
    props.extend([
        ("added-data-files".to_owned(), added.files.to_string()),
        ("added-records".to_owned(), added.records.to_string()),
        ("added-files-size".to_owned(), added.bytes.to_string()),
    ]);
    for (key, added, removed) in [
        ("total-data-files", added.files, removed.files),
        ("total-records", added.records, removed.records),
        ("total-files-size", added.bytes, removed.bytes),
        ("total-delete-files", 0, 0),
        ("total-position-deletes", 0, 0),
        ("total-equality-deletes", 0, 0),
    ] {
        if let Some(v) = total(key, added, removed) {
            props.insert(key.to_owned(), v);
        }
    }
    if removed.files > 0 {
        props.extend([
            ("deleted-data-files".to_owned(), removed.files.to_string()),
            ("deleted-records".to_owned(), removed.records.to_string()),
            ("removed-files-size".to_owned(), removed.bytes.to_string()),
        ]);
    }
    Summary {
        operation,
        additional_properties: props,
    }
}
