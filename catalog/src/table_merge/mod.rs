//! The Iceberg-aware merge (DESIGN §10; `../shared/notes/iceberg-merge.md`): when both sides
//! of a merge changed one table since the merge base, the table is merged at the level of
//! its snapshots and files instead of conflicting.
//!
//! `TableMerge` is the store's `Resolver` for one merge. For a table both sides changed it
//! reads the three metadata files, finds each side's new snapshots (`history`), their net
//! change to the files, checks Iceberg's conflict rules under the merge's isolation level
//! (`rules`, and `shape` for the schema, specs, sort orders and properties), and on a clean
//! result replays the source's change onto the target's head (`replay`) and writes the new
//! metadata file; the store then lands it like any merged value. A conflict names the rule,
//! both sides' operations, the first files or partitions involved and what to do.
//!
//! What it writes is named by what it was computed from (the target's and the source's
//! metadata and the snapshots replayed), so a merge with several bases resolves a table
//! only when every base gives the same result, and a dry run reports exactly what the merge
//! would do, writing nothing.

use std::collections::{BTreeMap, HashMap};

use floe_commits::{
    ConflictReason, Content, ContentKey, ContentKind, ContentRef, KeyChange, Payload, Resolved,
    Resolver, WriteError,
};
use iceberg::spec::TableMetadata;
use parking_lot::Mutex;

use crate::Catalog;
use crate::error::{CatalogError, CatalogResult};

mod history;
mod replay;
mod rules;
mod shape;

pub use history::SOURCE_SNAPSHOT_ID;

/// The table property that sets a table's default isolation level for merges.
pub const ISOLATION_PROPERTY: &str = "floe.merge.isolation-level";

/// Which concurrent changes a merge accepts, as Iceberg's writers name them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// The merged table reads as if the target's and the source's changes ran one after
    /// the other: a change that read rows the other side added (an overwrite by filter,
    /// row deletes) conflicts with those additions.
    #[default]
    Serializable,
    /// Only changes to the same files conflict.
    Snapshot,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Serializable => "serializable",
            Isolation::Snapshot => "snapshot",
        }
    }

    pub fn parse(text: &str) -> Option<Isolation> {
        match text.trim().to_ascii_lowercase().as_str() {
            "serializable" => Some(Isolation::Serializable),
            "snapshot" => Some(Isolation::Snapshot),
            _ => None,
        }
    }
}

/// How a merge treats tables both sides changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMergeOptions {
    /// Off: such a table conflicts, as with any key (`--no-table-merge`).
    pub enabled: bool,
    /// The merge's isolation level; unset: the target table's `floe.merge.isolation-level`,
    /// else serializable.
    pub isolation: Option<Isolation>,
    /// Merge only when the target's snapshots since the base are appends alone (a run's
    /// `APPEND` output landing, DESIGN §5 as amended in ARCHITECTURE.md); its shape still
    /// merges three-way.
    pub target_appends_only: bool,
}

impl Default for TableMergeOptions {
    fn default() -> Self {
        TableMergeOptions {
            enabled: true,
            isolation: None,
            target_appends_only: false,
        }
    }
}

/// The merge commit's property holding its `TableMergeReport`s (JSON), so that the answer
/// to a retried request reads as the first one did.
pub const TABLES_PROPERTY: &str = "floe.merge.tables";

/// How many bytes of reports a merge commit carries at most (commit properties are
/// bounded); the reports past it are left out and `floe.merge.tables-truncated` says so.
const TABLES_PROPERTY_BYTES_MAX: usize = 8 * 1024;

/// What the merge did with one table both sides changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableMergeReport {
    #[serde(with = "key_text")]
    pub key: ContentKey,
    pub isolation: Isolation,
    /// Snapshots written on the target (one when the source's change was squashed).
    pub snapshots_replayed: usize,
    /// The source's snapshots since the merge base.
    pub source_snapshots: usize,
    pub data_files_added: usize,
    pub delete_files_added: usize,
    pub files_removed: usize,
    /// The merged metadata file; a dry run names one it does not write (each attempt names
    /// its own).
    pub metadata_location: String,
    /// Manifest lists and manifests read.
    pub files_read: usize,
    pub warnings: Vec<String>,
}

/// A conflict found by a rule, before it is dressed for the answer.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    rule: &'static str,
    message: String,
    involved: Vec<String>,
    /// The same merge under snapshot isolation passes this rule.
    snapshot_clean: bool,
}

impl Finding {
    fn new(rule: &'static str, message: String, involved: Vec<String>) -> Finding {
        Finding {
            rule,
            message,
            involved,
            snapshot_clean: false,
        }
    }

    fn clean_under_snapshot(mut self) -> Finding {
        self.snapshot_clean = true;
        self
    }

    fn reason(self, key: &ContentKey, source: Vec<String>, target: Vec<String>) -> ConflictReason {
        let take = format!(
            "keep one side for this table: resolutions {{\"{key}\": \"source\"}} or {{\"{key}\": \"target\"}} (floe merge --take-source {key} | --keep-target {key})"
        );
        let hint = if self.snapshot_clean {
            format!("the merge is clean under snapshot isolation (--isolation snapshot); or {take}")
        } else {
            take
        };
        ConflictReason {
            rule: self.rule.to_owned(),
            message: self.message,
            source_operations: source,
            target_operations: target,
            involved: self.involved,
            hint,
        }
    }
}

#[derive(Default)]
struct State {
    reports: BTreeMap<ContentKey, TableMergeReport>,
    /// Results by what they were computed from (several merge bases ask twice).
    memo: HashMap<[u8; 32], Resolved>,
    /// The first failure, returned as it is by the catalog's merge.
    error: Option<CatalogError>,
}

impl TableMerge<'_> {
    /// Resolves one table outside a store merge (a run's append output landing): the
    /// merged content, or why not.
    pub(crate) fn resolve_table(
        self,
        key: &ContentKey,
        base: &ContentRef,
        source: &ContentRef,
        target: &ContentRef,
    ) -> CatalogResult<Resolved> {
        self.merge_table(key, base, source, target)
    }
}

/// The resolver of one merge.
pub(crate) struct TableMerge<'c> {
    catalog: &'c Catalog,
    options: TableMergeOptions,
    dry_run: bool,
    /// Names this merge's files (with what each table's result was computed from).
    seed: uuid::Uuid,
    now_ms: i64,
    state: Mutex<State>,
}

/// A table's value at one side of the merge.
struct Side {
    location: String,
    metadata: std::sync::Arc<TableMetadata>,
}

impl<'c> TableMerge<'c> {
    pub(crate) fn new(catalog: &'c Catalog, options: TableMergeOptions, dry_run: bool) -> Self {
        TableMerge {
            catalog,
            options,
            dry_run,
            seed: catalog.new_uuid(),
            now_ms: catalog.now_ms(),
            state: Mutex::new(State::default()),
        }
    }

    /// The reports of the tables merged, and the first failure.
    pub(crate) fn finish(self) -> (Vec<TableMergeReport>, Option<CatalogError>) {
        let state = self.state.into_inner();
        (state.reports.into_values().collect(), state.error)
    }

    fn side(&self, key: &ContentKey, r: &ContentRef) -> CatalogResult<Side> {
        let content: Content = self.catalog.store.content(&r.hash.0)?;
        let Payload::IcebergTable(t) = &content.payload else {
            return Err(CatalogError::Invalid(format!(
                "{key} is not an Iceberg table"
            )));
        };
        let cached = self.catalog.read_metadata(key, &t.metadata_location)?;
        Ok(Side {
            location: t.metadata_location.clone(),
            metadata: cached.metadata.clone(),
        })
    }

    fn merge_table(
        &self,
        key: &ContentKey,
        base: &ContentRef,
        source: &ContentRef,
        target: &ContentRef,
    ) -> CatalogResult<Resolved> {
        let (b, s, t) = (
            self.side(key, base)?,
            self.side(key, source)?,
            self.side(key, target)?,
        );
        let isolation = self.options.isolation.unwrap_or_else(|| {
            t.metadata
                .properties()
                .get(ISOLATION_PROPERTY)
                .and_then(|v| Isolation::parse(v))
                .unwrap_or_default()
        });
        let conflict = |f: Finding, sd: &history::Delta, td: &history::Delta| {
            Ok(Resolved::Conflict(f.reason(
                key,
                sd.operations(),
                td.operations(),
            )))
        };
        let empty = history::Delta::default();
        // Rule 17 (floe refuses location changes; a registered table might differ) and
        // format v1 (floe writes v2 and v3 files), before anything is read.
        let locations =
            [&b, &s, &t].map(|x| x.metadata.location().trim_end_matches('/').to_owned());
        if locations[1] != locations[2] || locations[0] != locations[2] {
            return conflict(
                Finding::new(
                    "location-changed",
                    "the sides hold the table at different locations".to_owned(),
                    locations.to_vec(),
                ),
                &empty,
                &empty,
            );
        }
        if [&s, &t]
            .iter()
            .any(|x| x.metadata.format_version() == iceberg::spec::FormatVersion::V1)
        {
            return conflict(
                Finding::new(
                    "format-v1",
                    "floe merges tables of format version 2 and 3; upgrade the table (format-version=2) on both sides first".to_owned(),
                    Vec::new(),
                ),
                &empty,
                &empty,
            );
        }
        let (mut s_new, mut t_new) = match (
            history::new_snapshots(&b.metadata, &s.metadata),
            history::new_snapshots(&b.metadata, &t.metadata),
        ) {
            (Ok(s_new), Ok(t_new)) => (s_new, t_new),
            (Err(why), _) | (_, Err(why)) => {
                return conflict(
                    Finding::new(
                        "history-unknown",
                        format!(
                            "the table's history since the merge base cannot be determined: {why}"
                        ),
                        Vec::new(),
                    ),
                    &empty,
                    &empty,
                );
            }
        };
        history::drop_shared(&mut s_new, &mut t_new);
        let warehouse = self.catalog.warehouse()?;
        let mut reader = history::Reader::new(warehouse, &t.metadata);
        let mut read = |snapshots: &[iceberg::spec::SnapshotRef]| -> CatalogResult<history::Delta> {
            let changes = snapshots
                .iter()
                .map(|snap| reader.changes(snap))
                .collect::<CatalogResult<Vec<_>>>()?;
            Ok(history::Delta::of(changes))
        };
        let (sd, td) = (read(&s_new)?, read(&t_new)?);
        if self.options.target_appends_only {
            let others: Vec<String> = td
                .snapshots
                .iter()
                .filter(|s| {
                    s.operation != iceberg::spec::Operation::Append || !s.removed.is_empty()
                })
                .map(|s| format!("{} {}", s.operation.as_str(), s.snapshot.snapshot_id()))
                .collect();
            // The table's shape (schema, properties: an import's name mapping) merges
            // three-way as in any merge; its data must only have grown.
            if !others.is_empty() {
                let mut involved = others;
                involved.truncate(rules::INVOLVED_MAX);
                return conflict(
                    Finding::new(
                        "target-changed-beyond-appends",
                        "the target's table changed since the run forked by more than appends; an append output lands only over appends".to_owned(),
                        involved,
                    ),
                    &sd,
                    &td,
                );
            }
        }
        let shape = match shape::merge(&b.metadata, &t.metadata, &s.metadata, &td, &sd) {
            Ok(updates) => updates,
            Err(f) => return conflict(f, &sd, &td),
        };
        let warnings = match rules::check(&td, &sd, isolation) {
            Ok(w) => w,
            Err(f) => return conflict(f, &sd, &td),
        };
        if sd.is_empty() && shape.is_empty() {
            return Ok(Resolved::KeepTarget);
        }
        let (steps, _squashed) = replay::steps(&sd, &td);
        // What the result is computed from: the two heads, the shape changes and the
        // steps replayed. Several merge bases that lead to the same replay give the same
        // table (and the same files), so the key resolves; they do not otherwise.
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.seed.as_bytes());
        for part in [t.location.as_str(), s.location.as_str(), isolation.as_str()] {
            hasher.update(part.as_bytes()).update(&[0]);
        }
        // As JSON values: their maps are ordered, so equal updates hash alike.
        let shape_text =
            serde_json::to_value(&shape).map_or_else(|e| e.to_string(), |v| v.to_string());
        hasher.update(shape_text.as_bytes());
        for step in &steps {
            for origin in &step.origins {
                hasher.update(&origin.to_le_bytes());
            }
            hasher.update(step.operation.as_str().as_bytes());
            for e in &step.added {
                hasher.update(e.path().as_bytes()).update(&[1]);
            }
            for e in &step.removed {
                hasher.update(e.path().as_bytes()).update(&[2]);
            }
        }
        let fingerprint: [u8; 32] = *hasher.finalize().as_bytes();
        if let Some(hit) = self.state.lock().memo.get(&fingerprint) {
            return Ok(hit.clone());
        }
        let plan = uuid::Uuid::from_slice(&fingerprint[..16]).expect("16 bytes");
        let file_io = self.catalog.table_file_io(&t.metadata)?;
        let replayed = match replay::replay(
            &mut reader,
            warehouse,
            &file_io,
            &t.metadata,
            &t.location,
            &shape,
            &steps,
            &fingerprint,
            plan,
            self.now_ms,
            self.dry_run,
        ) {
            Ok(r) => r,
            Err(replay::ReplayError::Conflict(f)) => return conflict(f, &sd, &td),
            Err(replay::ReplayError::Failed(e)) => return Err(e),
        };
        let next =
            crate::table_files::next_metadata_location(&t.location, &replayed.metadata, plan)?;
        let location = if self.dry_run {
            next.to_string()
        } else {
            self.catalog.write_metadata(&next, &replayed.metadata)?
        };
        let content = crate::tables::table_content(
            floe_commits::ContentId(replayed.metadata.uuid().into_bytes()),
            &location,
            &replayed.metadata,
        );
        let added = steps.iter().flat_map(|s| &s.added);
        let report = TableMergeReport {
            key: key.clone(),
            isolation,
            snapshots_replayed: replayed.snapshots,
            source_snapshots: sd.snapshots.len(),
            data_files_added: added.clone().filter(|e| e.is_data()).count(),
            delete_files_added: added.filter(|e| !e.is_data()).count(),
            files_removed: steps.iter().map(|s| s.removed.len()).sum(),
            metadata_location: location,
            files_read: reader.files_read,
            warnings,
        };
        let resolved = Resolved::Content(content);
        let mut state = self.state.lock();
        state.reports.insert(key.clone(), report);
        state.memo.insert(fingerprint, resolved.clone());
        Ok(resolved)
    }
}

/// The reports a merge commit carries, as `commit_properties` wrote them.
pub fn reports_of(properties: &BTreeMap<String, String>) -> Vec<TableMergeReport> {
    properties
        .get(TABLES_PROPERTY)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

mod key_text {
    use floe_commits::ContentKey;
    use serde::{Deserialize, Deserializer, Serializer};

    /// As its elements (a `.` may be inside one).
    pub fn serialize<S: Serializer>(key: &ContentKey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(key.elements())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ContentKey, D::Error> {
        let elements = Vec::<String>::deserialize(d)?;
        ContentKey::new(elements).map_err(serde::de::Error::custom)
    }
}

/// A reason for a table changed on one side and dropped or replaced on the other.
fn key_conflict(rule: &str, message: &str, key: &ContentKey) -> Resolved {
    Resolved::Conflict(ConflictReason {
        rule: rule.to_owned(),
        message: message.to_owned(),
        source_operations: Vec::new(),
        target_operations: Vec::new(),
        involved: Vec::new(),
        hint: format!(
            "keep one side for this table: resolutions {{\"{key}\": \"source\"}} or {{\"{key}\": \"target\"}}"
        ),
    })
}

impl Resolver for TableMerge<'_> {
    fn resolve(
        &self,
        key: &ContentKey,
        base: Option<&ContentRef>,
        source: Option<&ContentRef>,
        target: Option<&ContentRef>,
    ) -> Result<Option<Resolved>, WriteError> {
        let table = |r: Option<&ContentRef>| r.is_some_and(|r| r.kind == ContentKind::IcebergTable);
        if !self.options.enabled || !(table(base) || table(source) || table(target)) {
            return Ok(None);
        }
        let (Some(b), Some(s), Some(t)) = (base, source, target) else {
            return Ok(Some(match (base, source, target) {
                (None, Some(_), Some(_)) => key_conflict(
                    "created-on-both",
                    "both sides created a table at this key",
                    key,
                ),
                _ => key_conflict(
                    "dropped-vs-changed",
                    "one side dropped the table (or what was at this key) while the other changed it",
                    key,
                ),
            }));
        };
        if !(table(base) && table(source) && table(target)) || s.id != t.id || b.id != t.id {
            return Ok(Some(key_conflict(
                "replaced-table",
                "the key holds a different table (or another kind of content) on one side",
                key,
            )));
        }
        match self.merge_table(key, b, s, t) {
            Ok(resolved) => Ok(Some(resolved)),
            Err(e) => {
                let message = e.to_string();
                self.state.lock().error.get_or_insert(e);
                Err(WriteError::Invalid(format!(
                    "merging table {key}: {message}"
                )))
            }
        }
    }

    fn commit_properties(&self, changes: &[KeyChange]) -> BTreeMap<String, String> {
        let state = self.state.lock();
        // Each report serialized once; the array is their texts joined.
        let mut kept: Vec<String> = Vec::new();
        let mut bytes = 2;
        let mut truncated = false;
        for report in state.reports.values() {
            if !changes.iter().any(|c| c.key == report.key) {
                continue;
            }
            let text = serde_json::to_string(report).unwrap_or_default();
            if bytes + text.len() + 1 > TABLES_PROPERTY_BYTES_MAX {
                truncated = true;
                break;
            }
            bytes += text.len() + 1;
            kept.push(text);
        }
        let mut out = BTreeMap::new();
        if !kept.is_empty() {
            out.insert(TABLES_PROPERTY.to_owned(), format!("[{}]", kept.join(",")));
        }
        if truncated {
            out.insert(format!("{TABLES_PROPERTY}-truncated"), "true".to_owned());
        }
        out
    }
}
