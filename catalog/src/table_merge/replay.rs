//! Replaying the source's changes onto the target's head: new snapshots with fresh ids and
//! sequence numbers, stamped with `source-snapshot-id`, whose manifests are new files (the
//! source's committed manifests carry sequence numbers of its own history and are never
//! reused). A file the source removed is marked deleted in a rewrite of the target's
//! manifest that holds it; the files it added go into one new manifest per partition spec
//! and content.
//!
//! The source's snapshots are replayed one at a time when it wrote equality deletes (they
//! apply only to rows of strictly lower sequence numbers, so squashing them with the rows
//! written before them would resurrect rows deleted in between); otherwise its net change
//! is one snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, FormatVersion, ManifestFile, ManifestListWriter,
    ManifestStatus, ManifestWriterBuilder, Operation, Snapshot, Summary, TableMetadata,
};

use super::Finding;
use super::history::{
    Delta, Entry, Reader, SOURCE_SNAPSHOT_ID, SOURCE_SNAPSHOT_IDS, holds_deletes,
};
use crate::error::{CatalogError, CatalogResult};
use crate::warehouse::Warehouse;

/// Source snapshots one squashed snapshot stands for at most (their ids are in its summary).
const SQUASHED_MAX: usize = 1_000;

/// One snapshot to write.
pub(super) struct Step {
    /// The source snapshots it copies (their own origins).
    pub origins: BTreeSet<i64>,
    /// The one `source-snapshot-id` names: the newest's.
    pub origin: i64,
    pub operation: Operation,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
}

/// The steps that replay `source` onto a target that changed `target` since the base.
/// Files both added (the same path) are added once; files both removed are removed once.
pub(super) fn steps(source: &Delta, target: &Delta) -> (Vec<Step>, bool) {
    let keep_added = |e: &Entry| !target.added.contains_key(e.path());
    let keep_removed = |e: &Entry| !target.removed.contains_key(e.path());
    let squash = !source.snapshots.iter().any(|s| s.adds_equality_deletes())
        && source.snapshots.len() <= SQUASHED_MAX;
    if squash {
        let Some(last) = source.snapshots.last() else {
            return (Vec::new(), true);
        };
        // One kind of operation keeps its name; a mix is an overwrite, Iceberg's general
        // change.
        let operation = if source
            .snapshots
            .iter()
            .all(|s| s.operation == last.operation)
        {
            last.operation.clone()
        } else {
            Operation::Overwrite
        };
        let step = Step {
            origins: source
                .snapshots
                .iter()
                .flat_map(|s| s.origins.iter().copied())
                .collect(),
            origin: last
                .origins
                .last()
                .copied()
                .unwrap_or(last.snapshot.snapshot_id()),
            operation,
            added: source
                .added
                .values()
                .map(|(e, _)| e.clone())
                .filter(|e| keep_added(e))
                .collect(),
            removed: source
                .removed
                .values()
                .map(|(e, _)| e.clone())
                .filter(|e| keep_removed(e))
                .collect(),
        };
        return (vec![step], true);
    }
    let steps = source
        .snapshots
        .iter()
        .map(|s| Step {
            origins: s.origins.clone(),
            origin: s
                .origins
                .last()
                .copied()
                .unwrap_or(s.snapshot.snapshot_id()),
            operation: s.operation.clone(),
            added: s.added.iter().filter(|e| keep_added(e)).cloned().collect(),
            removed: s
                .removed
                .iter()
                .filter(|e| keep_removed(e))
                .cloned()
                .collect(),
        })
        .collect();
    (steps, false)
}

/// Counts for a summary.
#[derive(Default)]
struct Tally {
    data_files: u64,
    delete_files: u64,
    records: u64,
    bytes: u64,
    position_deletes: u64,
    equality_deletes: u64,
}

impl Tally {
    fn count(&mut self, e: &Entry) {
        let f = e.entry.data_file();
        self.bytes += f.file_size_in_bytes();
        match e.content() {
            DataContentType::Data => {
                self.data_files += 1;
                self.records += f.record_count();
            }
            DataContentType::PositionDeletes => {
                self.delete_files += 1;
                self.position_deletes += f.record_count();
            }
            DataContentType::EqualityDeletes => {
                self.delete_files += 1;
                self.equality_deletes += f.record_count();
            }
        }
    }
}

/// A replayed snapshot's summary: what it added and removed, the table's totals after it
/// (when the parent's summary has them), and the snapshot it copies.
fn summary(step: &Step, parent: Option<&Summary>) -> Summary {
    let (mut added, mut removed) = (Tally::default(), Tally::default());
    step.added.iter().for_each(|e| added.count(e));
    step.removed.iter().for_each(|e| removed.count(e));
    let mut props: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: u64| {
        if v > 0 {
            props.insert(k.to_owned(), v.to_string());
        }
    };
    put("added-data-files", added.data_files);
    put("added-delete-files", added.delete_files);
    put("added-records", added.records);
    put("added-files-size", added.bytes);
    put("added-position-deletes", added.position_deletes);
    put("added-equality-deletes", added.equality_deletes);
    put("deleted-data-files", removed.data_files);
    put("removed-delete-files", removed.delete_files);
    put("deleted-records", removed.records);
    put("removed-files-size", removed.bytes);
    put("removed-position-deletes", removed.position_deletes);
    put("removed-equality-deletes", removed.equality_deletes);
    for (key, plus, minus) in [
        ("total-data-files", added.data_files, removed.data_files),
        (
            "total-delete-files",
            added.delete_files,
            removed.delete_files,
        ),
        ("total-records", added.records, removed.records),
        ("total-files-size", added.bytes, removed.bytes),
        (
            "total-position-deletes",
            added.position_deletes,
            removed.position_deletes,
        ),
        (
            "total-equality-deletes",
            added.equality_deletes,
            removed.equality_deletes,
        ),
    ] {
        let before = match parent {
            None => Some(0),
            Some(p) => p
                .additional_properties
                .get(key)
                .and_then(|v| v.parse::<u64>().ok()),
        };
        if let Some(total) = before.and_then(|b| (b + plus).checked_sub(minus)) {
            props.insert(key.to_owned(), total.to_string());
        }
    }
    props.insert(SOURCE_SNAPSHOT_ID.to_owned(), step.origin.to_string());
    if step.origins.len() > 1 {
        let ids: Vec<String> = step.origins.iter().map(i64::to_string).collect();
        props.insert(SOURCE_SNAPSHOT_IDS.to_owned(), ids.join(","));
    }
    Summary {
        operation: step.operation.clone(),
        additional_properties: props,
    }
}

/// A snapshot id from the plan's seed: the first 63 bits of BLAKE3(seed, step, attempt)
/// that are not zero and not taken.
fn snapshot_id(seed: &[u8; 32], step: usize, taken: &HashSet<i64>) -> CatalogResult<i64> {
    (0u32..64)
        .map(|attempt| {
            let mut h = blake3::Hasher::new();
            h.update(seed)
                .update(&(step as u64).to_le_bytes())
                .update(&attempt.to_le_bytes());
            let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().expect("8 bytes");
            i64::from_le_bytes(bytes) & i64::MAX
        })
        .find(|n| *n != 0 && !taken.contains(n))
        .ok_or_else(|| CatalogError::Invalid("no free snapshot id for the merge".to_owned()))
}

/// A data file with its first row id set to `row_id` (format v3): `None` for one a
/// replayed snapshot adds (its rows get new ids), the id it had for one carried as it is
/// in a rewritten manifest (ids it inherited from its old manifest must not change).
fn with_row_id(file: &DataFile, spec_id: i32, row_id: Option<i64>) -> CatalogResult<DataFile> {
    if file.first_row_id() == row_id {
        return Ok(file.clone());
    }
    let mut b = DataFileBuilder::default();
    b.content(file.content_type())
        .file_path(file.file_path().to_owned())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
        .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
        .equality_ids(file.equality_ids())
        .first_row_id(row_id)
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(id) = file.sort_order_id() {
        b.sort_order_id(id);
    }
    b.build()
        .map_err(|e| CatalogError::Invalid(format!("replaying {}: {e}", file.file_path())))
}

/// A manifest to write: its content, spec and entries.
struct NewManifest {
    deletes: bool,
    spec_id: i32,
    entries: Vec<(ManifestStatus, Entry)>,
}

/// What a replay wrote (or, for a dry run, would write).
pub(super) struct Replayed {
    pub metadata: TableMetadata,
    pub snapshots: usize,
}

/// Sequence numbers and (format v3) first row ids a manifest list assigns to the manifests
/// it lists without them, as `ManifestListWriter` does: the list as written, and the next
/// row id.
fn as_listed(
    mut list: Vec<ManifestFile>,
    sequence: i64,
    mut next_row: Option<u64>,
) -> (Vec<ManifestFile>, Option<u64>) {
    for m in &mut list {
        if m.sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.sequence_number = sequence;
        }
        if m.min_sequence_number == iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER {
            m.min_sequence_number = sequence;
        }
        if let Some(next) = next_row
            && m.content == iceberg::spec::ManifestContentType::Data
            && m.first_row_id.is_none()
        {
            m.first_row_id = Some(next);
            let rows = m.existing_rows_count.unwrap_or(0) + m.added_rows_count.unwrap_or(0);
            next_row = Some(next + rows);
        }
    }
    (list, next_row)
}

/// The replay of `steps` onto `target` with the source's shape changes (`shape`): the new
/// metadata. Writes the manifests and manifest lists unless `dry_run`; a dry run computes
/// the same snapshots (and refuses what the real one would refuse).
#[allow(clippy::too_many_arguments)]
pub(super) fn replay(
    reader: &mut Reader<'_>,
    warehouse: &Warehouse,
    file_io: &FileIO,
    target: &TableMetadata,
    target_location: &str,
    shape: &[iceberg::TableUpdate],
    steps: &[Step],
    seed: &[u8; 32],
    plan: uuid::Uuid,
    timestamp_ms: i64,
    dry_run: bool,
) -> Result<Replayed, ReplayError> {
    let mut builder = target
        .clone()
        .into_builder(Some(target_location.to_owned()));
    for u in shape {
        builder = u.clone().apply(builder).map_err(unmergeable)?;
    }
    // The shape the replayed manifests are written with.
    let shaped = builder_metadata(target, target_location, shape)?;
    let schema = shaped.current_schema().clone();
    let v3 = shaped.format_version() >= FormatVersion::V3;
    let folder = format!("{}/metadata", target.location().trim_end_matches('/'));
    let mut taken: HashSet<i64> = target.snapshots().map(|s| s.snapshot_id()).collect();
    let mut parent = target.snapshot_for_ref("main").cloned();
    let mut current: Vec<ManifestFile> = match &parent {
        Some(p) => reader.list(p.manifest_list())?,
        None => Vec::new(),
    };
    let mut parent_summary = parent.as_ref().map(|p| p.summary().clone());
    let mut sequence = target.last_sequence_number();
    let mut next_row_id = shaped.next_row_id();
    let mut time = timestamp_ms.max(target.last_updated_ms() + 1);
    // Files earlier steps added (a dry run lists no manifest for them).
    let mut added_before: HashSet<&str> = HashSet::new();
    for (n, step) in steps.iter().enumerate() {
        let id = snapshot_id(seed, n, &taken)?;
        taken.insert(id);
        sequence += 1;
        // The target's manifests holding a removed file are rewritten with it deleted.
        let gone: HashSet<&str> = step.removed.iter().map(Entry::path).collect();
        let mut found: HashSet<&str> = HashSet::new();
        let mut manifests: Vec<NewManifest> = Vec::new();
        let mut kept: Vec<ManifestFile> = Vec::new();
        for file in &current {
            if gone.is_empty() {
                kept.push(file.clone());
                continue;
            }
            let entries = reader.entries(file)?;
            let hits = entries
                .iter()
                .filter(|(s, e)| *s != ManifestStatus::Deleted && gone.contains(e.path()))
                .count();
            if hits == 0 {
                kept.push(file.clone());
                continue;
            }
            let mut rewritten = Vec::new();
            for (status, e) in entries {
                if status == ManifestStatus::Deleted {
                    continue;
                }
                if let Some(p) = gone.get(e.path()) {
                    found.insert(p);
                    rewritten.push((ManifestStatus::Deleted, e));
                } else {
                    rewritten.push((ManifestStatus::Existing, e));
                }
            }
            manifests.push(NewManifest {
                deletes: holds_deletes(file),
                spec_id: file.partition_spec_id,
                entries: rewritten,
            });
        }
        if dry_run {
            found.extend(gone.iter().filter(|p| added_before.contains(*p)));
        }
        if let Some(missing) = gone.iter().find(|p| !found.contains(*p)) {
            return Err(ReplayError::Conflict(Finding::new(
                "removed-file-missing",
                "the source removed a file the target no longer holds".to_owned(),
                vec![(*missing).to_owned()],
            )));
        }
        added_before.extend(step.added.iter().map(Entry::path));
        let mut groups: BTreeMap<(bool, i32), Vec<(ManifestStatus, Entry)>> = BTreeMap::new();
        for e in &step.added {
            groups
                .entry((!e.is_data(), e.spec_id))
                .or_default()
                .push((ManifestStatus::Added, e.clone()));
        }
        for ((deletes, spec_id), entries) in groups {
            manifests.push(NewManifest {
                deletes,
                spec_id,
                entries,
            });
        }
        // The writers, whether or not they write: what they accept is the same.
        let mut writers = Vec::new();
        let mut counts = Vec::new();
        for (m, new) in manifests.into_iter().enumerate() {
            let spec = shaped.partition_spec_by_id(new.spec_id).ok_or_else(|| {
                ReplayError::Conflict(Finding::new(
                    "partition-spec-ids-differ",
                    format!(
                        "the source's files use partition spec {}, which the merged table does not hold",
                        new.spec_id
                    ),
                    Vec::new(),
                ))
            })?;
            let out = file_io
                .new_output(format!("{folder}/{plan}-r{}-m{m}.avro", n + 1))
                .map_err(failed)?;
            let builder =
                ManifestWriterBuilder::new(out, Some(id), schema.clone(), spec.as_ref().clone());
            let mut writer = match (new.deletes, v3) {
                (false, false) => builder.build_v2_data(),
                (true, false) => builder.build_v2_deletes(),
                (false, true) => builder.build_v3_data(),
                (true, true) => builder.build_v3_deletes(),
            };
            let (mut added, mut existing) = (0u64, 0u64);
            for (status, e) in new.entries {
                let file = e.entry.data_file();
                let r = match status {
                    ManifestStatus::Added => {
                        added += file.record_count();
                        writer.add_file(with_row_id(file, e.spec_id, None)?, sequence)
                    }
                    ManifestStatus::Existing => {
                        existing += file.record_count();
                        writer.add_existing_file(
                            with_row_id(file, e.spec_id, e.first_row_id)?,
                            e.snapshot_id,
                            e.sequence_number,
                            Some(e.file_sequence_number),
                        )
                    }
                    ManifestStatus::Deleted => writer.add_delete_file(
                        file.clone(),
                        e.sequence_number,
                        Some(e.file_sequence_number),
                    ),
                };
                r.map_err(unmergeable)?;
            }
            counts.push((new.deletes, new.spec_id, added, existing));
            writers.push(writer);
        }
        let list_path = format!("{folder}/snap-{id}-{}-{plan}.avro", n + 1);
        let row = v3.then_some(next_row_id);
        let new_manifests: Vec<ManifestFile> = if dry_run {
            // What the writers would answer, for the sequence and row id assignment.
            counts
                .iter()
                .enumerate()
                .map(|(m, (deletes, spec_id, added, existing))| ManifestFile {
                    manifest_path: format!("{folder}/{plan}-r{}-m{m}.avro", n + 1),
                    manifest_length: 0,
                    partition_spec_id: *spec_id,
                    content: if *deletes {
                        iceberg::spec::ManifestContentType::Deletes
                    } else {
                        iceberg::spec::ManifestContentType::Data
                    },
                    sequence_number: iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER,
                    min_sequence_number: iceberg::spec::UNASSIGNED_SEQUENCE_NUMBER,
                    added_snapshot_id: id,
                    added_files_count: Some(0),
                    existing_files_count: Some(0),
                    deleted_files_count: Some(0),
                    added_rows_count: Some(*added),
                    existing_rows_count: Some(*existing),
                    deleted_rows_count: Some(0),
                    partitions: None,
                    key_metadata: None,
                    first_row_id: None,
                })
                .collect()
        } else {
            warehouse
                .run(async move {
                    let mut out = Vec::new();
                    for w in writers {
                        out.push(w.write_manifest_file().await?);
                    }
                    Ok::<_, iceberg::Error>(out)
                })
                .map_err(failed)?
        };
        let mut list = new_manifests;
        list.extend(kept);
        let (listed, next) = as_listed(list.clone(), sequence, row);
        if !dry_run {
            let out = file_io.new_output(&list_path).map_err(failed)?;
            let parent_id = parent.as_ref().map(|p| p.snapshot_id());
            let written_next = warehouse
                .run(async move {
                    let w = out.writer().await?;
                    let mut writer = match row {
                        Some(r) => ManifestListWriter::v3(w, id, parent_id, sequence, Some(r)),
                        None => ManifestListWriter::v2(w, id, parent_id, sequence),
                    };
                    writer.add_manifests(list.into_iter())?;
                    let next = writer.next_row_id();
                    writer.close().await?;
                    Ok::<_, iceberg::Error>(next)
                })
                .map_err(failed)?;
            if written_next != next {
                return Err(ReplayError::Failed(CatalogError::Invalid(format!(
                    "the merge's row ids disagree with the manifest list writer's ({next:?} against {written_next:?})"
                ))));
            }
        }
        current = listed;
        let summary = summary(step, parent_summary.as_ref());
        let snapshot = Snapshot::builder()
            .with_snapshot_id(id)
            .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
            .with_sequence_number(sequence)
            .with_timestamp_ms(time)
            .with_manifest_list(list_path)
            .with_schema_id(shaped.current_schema_id())
            .with_summary(summary.clone());
        let snapshot = match (v3, next) {
            (true, Some(next)) => {
                let first = next_row_id;
                next_row_id = next;
                snapshot.with_row_range(first, next - first).build()
            }
            _ => snapshot.build(),
        };
        time += 1;
        parent_summary = Some(summary);
        builder = builder
            .set_branch_snapshot(snapshot.clone(), "main")
            .map_err(unmergeable)?;
        parent = Some(std::sync::Arc::new(snapshot));
    }
    let metadata = builder.build().map_err(unmergeable)?.metadata;
    Ok(Replayed {
        metadata,
        snapshots: steps.len(),
    })
}

/// The target's metadata with the shape updates applied (no snapshot yet).
fn builder_metadata(
    target: &TableMetadata,
    location: &str,
    shape: &[iceberg::TableUpdate],
) -> Result<TableMetadata, ReplayError> {
    let mut builder = target.clone().into_builder(Some(location.to_owned()));
    for u in shape {
        builder = u.clone().apply(builder).map_err(unmergeable)?;
    }
    Ok(builder.build().map_err(unmergeable)?.metadata)
}

pub(super) enum ReplayError {
    Conflict(Finding),
    Failed(CatalogError),
}

impl From<CatalogError> for ReplayError {
    fn from(e: CatalogError) -> ReplayError {
        ReplayError::Failed(e)
    }
}

/// The merged metadata does not hold together (the source's spec on a column the target
/// dropped, a file the manifest refuses): the two sides cannot be combined, a conflict.
fn unmergeable(e: iceberg::Error) -> ReplayError {
    ReplayError::Conflict(Finding::new(
        "table-metadata-invalid",
        format!(
            "the merged table's metadata would be invalid: {}",
            e.message()
        ),
        Vec::new(),
    ))
}

fn failed(e: iceberg::Error) -> ReplayError {
    // The merge's own output failed to build or write: the server's fault, not the
    // request's.
    ReplayError::Failed(CatalogError::Warehouse(crate::WarehouseError::Io {
        path: "the merged table's metadata".to_owned(),
        message: e.to_string(),
    }))
}
