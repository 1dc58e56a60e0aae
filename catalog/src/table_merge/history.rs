//! Each side's history since the merge base: which of its snapshots are new, and which data
//! and delete files they added and removed (read from the manifests those snapshots wrote,
//! never from the whole table).
//!
//! A side's new snapshots are found by walking its `main` ancestry from its head until a
//! snapshot the base's ancestry holds (the fork point). On the way, a snapshot whose origin
//! (its `source-snapshot-id` when an earlier floe merge wrote it, else its own id) is a
//! snapshot of the base's ancestry is already in the base: merging a branch twice, or back
//! and forth, never counts (or replays) the same change twice. Every base snapshot after
//! the fork point must be in the side that way; otherwise the side rolled the table back,
//! or its history is gone, and the merge cannot tell what it did (rule 18).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFileFormat, FormatVersion, Manifest, ManifestContentType,
    ManifestEntryRef, ManifestFile, ManifestList, ManifestStatus, Operation, SnapshotRef,
    TableMetadata,
};

use crate::error::{CatalogError, CatalogResult};
use crate::limits::TABLE_MERGE_SNAPSHOTS_MAX;
use crate::table_files::inside;
use crate::warehouse::Warehouse;

/// The summary property naming the snapshot a replayed snapshot copies (Iceberg's
/// cherry-pick writes the same one).
pub const SOURCE_SNAPSHOT_ID: &str = "source-snapshot-id";

/// The summary property of a snapshot that replays several source snapshots at once (a
/// squash): every one of their origins, comma-separated.
pub const SOURCE_SNAPSHOT_IDS: &str = "floe.source-snapshot-ids";

/// A snapshot's origins: the snapshots it copies (`source-snapshot-id`, and every one a
/// squash covered), else itself.
pub(super) fn origins(s: &SnapshotRef) -> BTreeSet<i64> {
    let props = &s.summary().additional_properties;
    let mut out: BTreeSet<i64> = props
        .get(SOURCE_SNAPSHOT_IDS)
        .map(|v| {
            v.split(',')
                .filter_map(|id| id.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let Some(id) = props.get(SOURCE_SNAPSHOT_ID).and_then(|v| v.parse().ok()) {
        out.insert(id);
    }
    if out.is_empty() {
        out.insert(s.snapshot_id());
    }
    out
}

/// The table's `main` ancestry, newest first, as far as its metadata still holds it (and
/// never around a cycle a damaged file might hold).
fn ancestry(metadata: &TableMetadata) -> Vec<SnapshotRef> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut at = metadata.snapshot_for_ref("main").cloned();
    while let Some(s) = at {
        if out.len() > TABLE_MERGE_SNAPSHOTS_MAX * 4 || !seen.insert(s.snapshot_id()) {
            break;
        }
        at = s
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p).cloned());
        out.push(s);
    }
    out
}

/// The snapshots of `side` since `base`, oldest first; `Err` says why they cannot be known.
pub(super) fn new_snapshots(
    base: &TableMetadata,
    side: &TableMetadata,
) -> Result<Vec<SnapshotRef>, String> {
    let base_chain = ancestry(base);
    let base_ids: HashSet<i64> = base_chain.iter().map(|s| s.snapshot_id()).collect();
    let base_origins: HashSet<i64> = base_chain.iter().flat_map(origins).collect();
    let mut new = Vec::new();
    let mut carried: HashSet<i64> = HashSet::new();
    let mut fork = None;
    let mut walked: HashSet<i64> = HashSet::new();
    let mut at = side.snapshot_for_ref("main").cloned();
    while let Some(s) = at {
        if base_ids.contains(&s.snapshot_id()) {
            fork = Some(s.snapshot_id());
            break;
        }
        if !walked.insert(s.snapshot_id()) || walked.len() > TABLE_MERGE_SNAPSHOTS_MAX {
            return Err(format!(
                "more than {TABLE_MERGE_SNAPSHOTS_MAX} snapshots since the merge base, or a cycle of parents (TABLE_MERGE_SNAPSHOTS_MAX)"
            ));
        }
        let from = origins(&s);
        let known = from.iter().filter(|o| base_origins.contains(o)).count();
        if known == from.len() {
            carried.extend(from);
        } else if known > 0 {
            return Err(format!(
                "snapshot {} replays some snapshots of the merge base and some others",
                s.snapshot_id()
            ));
        } else {
            new.push(s.clone());
        }
        at = match s.parent_snapshot_id() {
            None => None,
            Some(p) => match side.snapshot_by_id(p) {
                Some(parent) => Some(parent.clone()),
                None => {
                    return Err(format!(
                        "snapshot {p}, the parent of {}, is no longer in the table's metadata",
                        s.snapshot_id()
                    ));
                }
            },
        };
    }
    for b in &base_chain {
        if Some(b.snapshot_id()) == fork {
            break;
        }
        if !origins(b).iter().all(|o| carried.contains(o)) {
            return Err(format!(
                "snapshot {} of the merge base is not in this side's history (rolled back?)",
                b.snapshot_id()
            ));
        }
    }
    new.reverse();
    Ok(new)
}

/// Leaves out of each side the snapshots the other side holds too (the same snapshot, or
/// copies of the same ones: a squash merge, a cherry-pick): their change is on both sides
/// already, neither concurrent nor to replay.
pub(super) fn drop_shared(source: &mut Vec<SnapshotRef>, target: &mut Vec<SnapshotRef>) {
    let all = |v: &Vec<SnapshotRef>| -> HashSet<i64> {
        v.iter()
            .flat_map(|s| origins(s).into_iter().chain([s.snapshot_id()]))
            .collect()
    };
    let (in_source, in_target) = (all(source), all(target));
    source.retain(|s| !origins(s).iter().all(|o| in_target.contains(o)));
    target.retain(|s| !origins(s).iter().all(|o| in_source.contains(o)));
}

/// A manifest entry with what it inherits from its manifest made explicit: the snapshot
/// that added (or removed) it and its sequence numbers.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub entry: ManifestEntryRef,
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub file_sequence_number: i64,
    /// The partition spec of its manifest.
    pub spec_id: i32,
    /// Its first row id (format v3): its own, else what it inherits from its manifest.
    pub first_row_id: Option<i64>,
    /// Added with a data sequence number older than its snapshot's (a compaction that
    /// keeps its inputs' sequence number, as Spark's `use-starting-sequence-number`
    /// does): a replay could not keep that number.
    pub keeps_older_sequence: bool,
}

impl Entry {
    pub fn path(&self) -> &str {
        self.entry.file_path()
    }

    pub fn content(&self) -> DataContentType {
        self.entry.content_type()
    }

    pub fn is_data(&self) -> bool {
        self.content() == DataContentType::Data
    }

    /// A deletion vector (format v3): a position delete stored in a Puffin file.
    pub fn is_deletion_vector(&self) -> bool {
        self.content() == DataContentType::PositionDeletes
            && self.entry.file_format() == DataFileFormat::Puffin
    }
}

/// What one new snapshot did.
#[derive(Debug, Clone)]
pub(super) struct SnapshotChange {
    pub snapshot: SnapshotRef,
    pub origins: BTreeSet<i64>,
    pub operation: Operation,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
}

impl SnapshotChange {
    pub fn adds_equality_deletes(&self) -> bool {
        self.added
            .iter()
            .any(|e| e.content() == DataContentType::EqualityDeletes)
    }
}

/// A side's change since the base: its new snapshots, and their net effect on the files.
#[derive(Debug, Clone, Default)]
pub(super) struct Delta {
    pub snapshots: Vec<SnapshotChange>,
    /// Files live now that were not live at the base, by path, with the operation that
    /// added them.
    pub added: BTreeMap<String, (Entry, Operation)>,
    /// Files live at the base that are gone now, by path, with the operation that removed
    /// them.
    pub removed: BTreeMap<String, (Entry, Operation)>,
    /// Every file any new snapshot added, kept or not.
    pub ever_added: BTreeSet<String>,
    /// Files a compaction wrote from files added since the base: new rows, for the rules,
    /// though a compaction wrote them.
    pub compacted_new: BTreeSet<String>,
}

impl Delta {
    pub fn of(snapshots: Vec<SnapshotChange>) -> Delta {
        let mut added: BTreeMap<String, (Entry, Operation)> = BTreeMap::new();
        let mut removed = BTreeMap::new();
        let mut ever_added = BTreeSet::new();
        let mut compacted_new = BTreeSet::new();
        for s in &snapshots {
            let rewrites_new = s.removed.iter().any(|e| added.contains_key(e.path()));
            for e in &s.removed {
                if added.remove(e.path()).is_none() {
                    removed.insert(e.path().to_owned(), (e.clone(), s.operation.clone()));
                }
            }
            for e in &s.added {
                added.insert(e.path().to_owned(), (e.clone(), s.operation.clone()));
                ever_added.insert(e.path().to_owned());
                if rewrites_new && s.operation == Operation::Replace {
                    compacted_new.insert(e.path().to_owned());
                }
            }
        }
        Delta {
            snapshots,
            added,
            removed,
            ever_added,
            compacted_new,
        }
    }

    pub fn operations(&self) -> Vec<String> {
        self.snapshots
            .iter()
            .map(|s| format!("{} {}", s.operation.as_str(), s.snapshot.snapshot_id()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Reads a table's manifest lists and manifests (inside its location only), each once.
pub(super) struct Reader<'a> {
    warehouse: &'a Warehouse,
    location: String,
    format: FormatVersion,
    manifests: HashMap<String, Arc<Manifest>>,
    /// Manifest lists read (the target head's is read by its history and again by the
    /// replay that extends it).
    lists: HashMap<String, Vec<ManifestFile>>,
    /// Files read, for the report (what the merge cost).
    pub files_read: usize,
}

impl<'a> Reader<'a> {
    pub fn new(warehouse: &'a Warehouse, metadata: &TableMetadata) -> Reader<'a> {
        Reader {
            warehouse,
            location: metadata.location().trim_end_matches('/').to_owned(),
            format: metadata.format_version(),
            manifests: HashMap::new(),
            lists: HashMap::new(),
            files_read: 0,
        }
    }

    fn read(&mut self, what: &str, path: &str) -> CatalogResult<Vec<u8>> {
        if !inside(&self.location, path) {
            return Err(damaged(
                path,
                format!(
                    "{what} {path} is outside the table's location {}",
                    self.location
                ),
            ));
        }
        self.files_read += 1;
        Ok(self
            .warehouse
            .read_small(path, crate::limits::MANIFEST_BYTES_MAX)?)
    }

    pub fn list(&mut self, path: &str) -> CatalogResult<Vec<ManifestFile>> {
        if let Some(list) = self.lists.get(path) {
            return Ok(list.clone());
        }
        let bytes = self.read("manifest list", path)?;
        let list: Vec<ManifestFile> = ManifestList::parse_with_version(&bytes, self.format)
            .map_err(|e| damaged(path, format!("manifest list {path} does not parse: {e}")))?
            .consume_entries()
            .into_iter()
            .collect();
        self.lists.insert(path.to_owned(), list.clone());
        Ok(list)
    }

    pub fn manifest(&mut self, path: &str) -> CatalogResult<Arc<Manifest>> {
        if let Some(m) = self.manifests.get(path) {
            return Ok(m.clone());
        }
        let bytes = self.read("manifest", path)?;
        let manifest = Arc::new(
            Manifest::parse_avro(&bytes)
                .map_err(|e| damaged(path, format!("manifest {path} does not parse: {e}")))?,
        );
        self.manifests.insert(path.to_owned(), manifest.clone());
        Ok(manifest)
    }

    /// A manifest's entries, with what they inherit from the manifest made explicit.
    pub fn entries(&mut self, file: &ManifestFile) -> CatalogResult<Vec<(ManifestStatus, Entry)>> {
        let manifest = self.manifest(&file.manifest_path)?;
        // Format v3: a live data file without a first row id of its own takes the
        // manifest's, plus the rows of the ones before it that took theirs.
        let mut next_row = file.first_row_id.map(|r| r as i64);
        Ok(manifest
            .entries()
            .iter()
            .map(|e| {
                let seq = e.sequence_number().unwrap_or(file.sequence_number);
                let first_row_id = match e.data_file().first_row_id() {
                    Some(own) => Some(own),
                    None if e.status() != ManifestStatus::Deleted
                        && e.content_type() == DataContentType::Data =>
                    {
                        let id = next_row;
                        next_row = next_row.map(|n| n + e.record_count() as i64);
                        id
                    }
                    None => None,
                };
                (
                    e.status(),
                    Entry {
                        entry: e.clone(),
                        snapshot_id: e.snapshot_id().unwrap_or(file.added_snapshot_id),
                        sequence_number: seq,
                        file_sequence_number: e
                            .file_sequence_number
                            .unwrap_or(file.sequence_number),
                        spec_id: file.partition_spec_id,
                        first_row_id,
                        keeps_older_sequence: e.status() == ManifestStatus::Added
                            && e.sequence_number()
                                .is_some_and(|n| n < file.sequence_number),
                    },
                )
            })
            .collect())
    }

    /// What a snapshot did: the entries its own manifests added and removed.
    pub fn changes(&mut self, snapshot: &SnapshotRef) -> CatalogResult<SnapshotChange> {
        let id = snapshot.snapshot_id();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for file in self.list(snapshot.manifest_list())? {
            if file.added_snapshot_id != id {
                continue;
            }
            for (status, e) in self.entries(&file)? {
                if e.snapshot_id != id {
                    continue;
                }
                match status {
                    ManifestStatus::Added => added.push(e),
                    ManifestStatus::Deleted => removed.push(e),
                    ManifestStatus::Existing => {}
                }
            }
        }
        Ok(SnapshotChange {
            snapshot: snapshot.clone(),
            origins: origins(snapshot),
            operation: snapshot.summary().operation.clone(),
            added,
            removed,
        })
    }
}

/// A stored file the merge cannot use: the table is damaged (the server's side, a 5xx),
/// not the request.
fn damaged(path: &str, message: String) -> CatalogError {
    CatalogError::Warehouse(crate::WarehouseError::Io {
        path: path.to_owned(),
        message,
    })
}

/// Whether a manifest holds data or delete files.
pub(super) fn holds_deletes(file: &ManifestFile) -> bool {
    file.content == ManifestContentType::Deletes
}
