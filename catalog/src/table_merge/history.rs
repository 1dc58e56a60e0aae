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

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// A snapshot's origin: the snapshot it copies, else itself.
pub(super) fn origin(s: &SnapshotRef) -> i64 {
    s.summary()
        .additional_properties
        .get(SOURCE_SNAPSHOT_ID)
        .and_then(|v| v.parse().ok())
        .unwrap_or(s.snapshot_id())
}

/// The table's `main` ancestry, newest first, as far as its metadata still holds it.
fn ancestry(metadata: &TableMetadata) -> Vec<SnapshotRef> {
    let mut out = Vec::new();
    let mut at = metadata.snapshot_for_ref("main").cloned();
    while let Some(s) = at {
        if out.len() > TABLE_MERGE_SNAPSHOTS_MAX * 4 {
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
    let base_origins: HashSet<i64> = base_chain.iter().map(origin).collect();
    let mut new = Vec::new();
    let mut carried: HashSet<i64> = HashSet::new();
    let mut fork = None;
    let mut at = side.snapshot_for_ref("main").cloned();
    while let Some(s) = at {
        if base_ids.contains(&s.snapshot_id()) {
            fork = Some(s.snapshot_id());
            break;
        }
        if base_origins.contains(&origin(&s)) {
            carried.insert(origin(&s));
        } else {
            new.push(s.clone());
        }
        if new.len() + carried.len() > TABLE_MERGE_SNAPSHOTS_MAX {
            return Err(format!(
                "more than {TABLE_MERGE_SNAPSHOTS_MAX} snapshots since the merge base (TABLE_MERGE_SNAPSHOTS_MAX)"
            ));
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
        if !carried.contains(&origin(b)) {
            return Err(format!(
                "snapshot {} of the merge base is not in this side's history (rolled back?)",
                b.snapshot_id()
            ));
        }
    }
    new.reverse();
    Ok(new)
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
    pub origin: i64,
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
}

impl Delta {
    pub fn of(snapshots: Vec<SnapshotChange>) -> Delta {
        let mut added: BTreeMap<String, (Entry, Operation)> = BTreeMap::new();
        let mut removed = BTreeMap::new();
        for s in &snapshots {
            for e in &s.removed {
                if added.remove(e.path()).is_none() {
                    removed.insert(e.path().to_owned(), (e.clone(), s.operation.clone()));
                }
            }
            for e in &s.added {
                added.insert(e.path().to_owned(), (e.clone(), s.operation.clone()));
            }
        }
        Delta {
            snapshots,
            added,
            removed,
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
            files_read: 0,
        }
    }

    fn read(&mut self, what: &str, path: &str) -> CatalogResult<Vec<u8>> {
        if !inside(&self.location, path) {
            return Err(CatalogError::Invalid(format!(
                "{what} {path} is outside the table's location {}",
                self.location
            )));
        }
        self.files_read += 1;
        Ok(self.warehouse.read_small(path)?)
    }

    pub fn list(&mut self, path: &str) -> CatalogResult<Vec<ManifestFile>> {
        let bytes = self.read("manifest list", path)?;
        let list = ManifestList::parse_with_version(&bytes, self.format).map_err(|e| {
            CatalogError::Invalid(format!("manifest list {path} does not parse: {e}"))
        })?;
        Ok(list.consume_entries().into_iter().collect())
    }

    pub fn manifest(&mut self, path: &str) -> CatalogResult<Arc<Manifest>> {
        if let Some(m) = self.manifests.get(path) {
            return Ok(m.clone());
        }
        let bytes = self.read("manifest", path)?;
        let manifest =
            Arc::new(Manifest::parse_avro(&bytes).map_err(|e| {
                CatalogError::Invalid(format!("manifest {path} does not parse: {e}"))
            })?);
        self.manifests.insert(path.to_owned(), manifest.clone());
        Ok(manifest)
    }

    /// A manifest's entries, with what they inherit from the manifest made explicit.
    pub fn entries(&mut self, file: &ManifestFile) -> CatalogResult<Vec<(ManifestStatus, Entry)>> {
        let manifest = self.manifest(&file.manifest_path)?;
        Ok(manifest
            .entries()
            .iter()
            .map(|e| {
                let seq = e.sequence_number().unwrap_or(file.sequence_number);
                (
                    e.status(),
                    Entry {
                        entry: e.clone(),
                        snapshot_id: e.snapshot_id().unwrap_or(file.added_snapshot_id),
                        sequence_number: seq,
                        file_sequence_number: e.file_sequence_number.unwrap_or(seq),
                        spec_id: file.partition_spec_id,
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
            origin: origin(snapshot),
            operation: snapshot.summary().operation.clone(),
            added,
            removed,
        })
    }
}

/// Whether a manifest holds data or delete files.
pub(super) fn holds_deletes(file: &ManifestFile) -> bool {
    file.content == ManifestContentType::Deletes
}
