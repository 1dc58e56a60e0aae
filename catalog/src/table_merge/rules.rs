//! The file rules of the Iceberg-aware merge (`../shared/notes/iceberg-merge.md` A2, the
//! table's rules 1-11): what both sides' deltas may hold at once under an isolation level.
//!
//! Two files overlap when they are of the same partition spec and partition, or when
//! either is unpartitioned or the specs differ (Iceberg's own validation does not prune
//! across specs either). Rules 3 and 4 are symmetric (the direction of a merge does not
//! change what conflicts); rule 5 is about the replayed side only, whose equality deletes
//! get sequence numbers above the target's new rows.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataContentType, Datum, Literal, Operation, PrimitiveLiteral, Struct};

use super::history::{Delta, Entry};
use super::{Finding, Isolation};

/// Field id of `file_path` in a position delete file (the Iceberg spec's reserved id).
const DELETE_FILE_PATH_ID: i32 = 2_147_483_546;

/// How many files or partitions a conflict names at most.
pub(super) const INVOLVED_MAX: usize = 5;

/// Partitions by spec, for the overlap test.
#[derive(Default)]
struct Partitions {
    by_spec: HashMap<i32, HashSet<Struct>>,
    unpartitioned: bool,
}

impl Partitions {
    fn of<'a>(entries: impl Iterator<Item = &'a Entry>) -> Partitions {
        let mut p = Partitions::default();
        for e in entries {
            let partition = e.entry.data_file().partition();
            p.unpartitioned |= partition.fields().is_empty();
            p.by_spec
                .entry(e.spec_id)
                .or_default()
                .insert(partition.clone());
        }
        p
    }

    fn overlaps(&self, e: &Entry) -> bool {
        if self.by_spec.is_empty() {
            return false;
        }
        let partition = e.entry.data_file().partition();
        self.unpartitioned
            || partition.fields().is_empty()
            || self.by_spec.keys().any(|s| *s != e.spec_id)
            || self
                .by_spec
                .get(&e.spec_id)
                .is_some_and(|set| set.contains(partition))
    }
}

/// What a delete file applies to.
enum Target {
    File(String),
    /// Every data file of a partition (equality deletes; position deletes naming no one
    /// file).
    Partition,
}

fn target(d: &Entry) -> Target {
    let file = d.entry.data_file();
    if d.content() == DataContentType::EqualityDeletes {
        return Target::Partition;
    }
    if let Some(f) = file.referenced_data_file() {
        return Target::File(f);
    }
    let bound = |m: &HashMap<i32, Datum>| {
        m.get(&DELETE_FILE_PATH_ID).and_then(|d| match d.literal() {
            PrimitiveLiteral::String(s) => Some(s.clone()),
            _ => None,
        })
    };
    match (bound(file.lower_bounds()), bound(file.upper_bounds())) {
        (Some(lo), Some(hi)) if lo == hi => Target::File(lo),
        _ => Target::Partition,
    }
}

/// Whether the delete file `d` may apply to the data file `f`.
fn applies(d: &Entry, f: &Entry) -> bool {
    let same_partition = d.spec_id != f.spec_id
        || d.entry.data_file().partition().fields().is_empty()
        || d.entry.data_file().partition() == f.entry.data_file().partition();
    match target(d) {
        Target::File(path) => path == f.path(),
        Target::Partition => same_partition,
    }
}

/// Whether two delete files may apply to a common data file.
fn same_target(a: &Entry, b: &Entry) -> bool {
    match (target(a), target(b)) {
        (Target::File(x), Target::File(y)) => x == y,
        _ => {
            a.spec_id != b.spec_id
                || a.entry.data_file().partition().fields().is_empty()
                || a.entry.data_file().partition() == b.entry.data_file().partition()
        }
    }
}

/// A partition as people read it: `a=1, b=x` (or `unpartitioned`).
pub(super) fn partition_text(e: &Entry) -> String {
    let partition = e.entry.data_file().partition();
    if partition.fields().is_empty() {
        return "unpartitioned".to_owned();
    }
    let values: Vec<String> = partition
        .iter()
        .map(|v| match v {
            None => "null".to_owned(),
            Some(Literal::Primitive(p)) => primitive_text(p),
            Some(other) => format!("{other:?}"),
        })
        .collect();
    format!("spec {} ({})", e.spec_id, values.join(", "))
}

fn primitive_text(p: &PrimitiveLiteral) -> String {
    match p {
        PrimitiveLiteral::Boolean(b) => b.to_string(),
        PrimitiveLiteral::Int(i) => i.to_string(),
        PrimitiveLiteral::Long(l) => l.to_string(),
        PrimitiveLiteral::Float(f) => f.to_string(),
        PrimitiveLiteral::Double(d) => d.to_string(),
        PrimitiveLiteral::String(s) => s.clone(),
        PrimitiveLiteral::Int128(i) => i.to_string(),
        PrimitiveLiteral::UInt128(u) => u.to_string(),
        other => format!("{other:?}"),
    }
}

fn first<I: IntoIterator<Item = String>>(items: I) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
        if out.len() == INVOLVED_MAX {
            break;
        }
    }
    out
}

/// New rows a side wrote: data files added by anything but a compaction of rows that were
/// there at the base (a compaction of the side's own new files still holds new rows).
fn appended(d: &Delta) -> impl Iterator<Item = &Entry> {
    d.added
        .iter()
        .filter(|(path, (e, op))| {
            e.is_data() && (*op != Operation::Replace || d.compacted_new.contains(*path))
        })
        .map(|(_, (e, _))| e)
}

fn added_deletes(d: &Delta) -> impl Iterator<Item = (&Entry, &Operation)> {
    d.added
        .values()
        .filter(|(e, _)| !e.is_data())
        .map(|(e, op)| (e, op))
}

/// Checks the file rules; `Ok` holds the warnings of a clean merge.
pub(super) fn check(
    target: &Delta,
    source: &Delta,
    isolation: Isolation,
) -> Result<Vec<String>, Finding> {
    let mut warnings = Vec::new();
    let serializable = isolation == Isolation::Serializable;
    // A file both sides added (a squash merge, a cherry-pick) that one of them removed
    // since: adding it back would duplicate its rows, or bring back rows deleted.
    for (a, b, b_name) in [(source, target, "target"), (target, source, "source")] {
        let hit: Vec<String> = a
            .added
            .keys()
            .filter(|p| b.ever_added.contains(*p) && !b.added.contains_key(*p))
            .cloned()
            .collect();
        if !hit.is_empty() {
            return Err(Finding::new(
                "shared-file-removed",
                format!("both sides added these files and the {b_name} removed them since"),
                first(hit),
            ));
        }
    }
    // A file added with an older data sequence number than its snapshot's (a compaction
    // that keeps its inputs' number): replayed, it would take a new one, and deletes
    // written meanwhile would stop applying to its rows.
    let kept: Vec<String> = source
        .added
        .values()
        .filter(|(e, _)| e.keeps_older_sequence)
        .map(|(e, _)| e.path().to_owned())
        .collect();
    if !kept.is_empty() {
        return Err(Finding::new(
            "kept-sequence-number",
            "the source added files that keep an older data sequence number (a compaction that keeps its inputs' number), which a replay cannot keep".to_owned(),
            first(kept),
        ));
    }
    // Rule 6: a file both removed (a double rewrite would duplicate rows), unless both
    // sides made the very same change.
    let both: Vec<String> = target
        .removed
        .keys()
        .filter(|p| source.removed.contains_key(*p))
        .cloned()
        .collect();
    let identical = target.removed.keys().eq(source.removed.keys())
        && target.added.keys().eq(source.added.keys());
    if !both.is_empty() && !identical {
        return Err(Finding::new(
            "both-removed-file",
            "both sides removed or rewrote the same files".to_owned(),
            first(both),
        ));
    }
    for (a, b, a_name, b_name) in [
        (target, source, "target", "source"),
        (source, target, "source", "target"),
    ] {
        let b_appended = Partitions::of(appended(b));
        // Rule 3: rows removed by a filter (overwrite, copy-on-write delete or update)
        // where the other side added rows the filter may have matched.
        let hit: Vec<&Entry> = a
            .removed
            .values()
            .filter(|(e, op)| e.is_data() && *op != Operation::Replace)
            .map(|(e, _)| e)
            .filter(|e| b_appended.overlaps(e))
            .collect();
        if serializable && !hit.is_empty() {
            return Err(Finding::new(
                "overwrite-vs-append",
                format!(
                    "the {a_name} overwrote or deleted rows by a filter in partitions where the {b_name} added rows the filter may match"
                ),
                first(hit.iter().map(|e| partition_text(e))),
            )
            .clean_under_snapshot());
        }
        // Rule 4: row-level deletes where the other side added rows.
        let hit: Vec<&Entry> = added_deletes(a)
            .filter(|(e, _)| e.content() == DataContentType::PositionDeletes)
            .map(|(e, _)| e)
            .filter(|e| b_appended.overlaps(e))
            .collect();
        if serializable && !hit.is_empty() {
            return Err(Finding::new(
                "row-delete-vs-append",
                format!(
                    "the {a_name} deleted rows (position deletes) in partitions where the {b_name} added rows"
                ),
                first(hit.iter().map(|e| partition_text(e))),
            )
            .clean_under_snapshot());
        }
        // Rule 7: deletes for a file the other side removed (compaction included): they
        // would be lost, or dangle.
        let a_removed: Vec<&Entry> = a
            .removed
            .values()
            .map(|(e, _)| e)
            .filter(|e| e.is_data())
            .collect();
        let hit: Vec<String> = added_deletes(b)
            .flat_map(|(d, _)| {
                a_removed
                    .iter()
                    .filter(move |f| applies(d, f))
                    .map(|f| f.path().to_owned())
            })
            .collect();
        if !hit.is_empty() {
            return Err(Finding::new(
                "deletes-for-removed-file",
                format!("the {b_name} deleted rows of data files the {a_name} removed or rewrote"),
                first(hit),
            ));
        }
        // Rule 9: an update or merge (merge-on-read: deletes and new rows in one
        // snapshot) on files the other side also deleted rows of: a row changed twice.
        let updates: Vec<&Entry> = added_deletes(a)
            .filter(|(_, op)| **op == Operation::Overwrite)
            .map(|(e, _)| e)
            .collect();
        let hit: Vec<String> = added_deletes(b)
            .flat_map(|(d, _)| {
                updates
                    .iter()
                    .filter(move |u| same_target(d, u))
                    .map(|u| u.path().to_owned())
            })
            .collect();
        if !hit.is_empty() {
            return Err(Finding::new(
                "update-vs-delete",
                format!(
                    "the {a_name} updated rows (merge-on-read) of files the {b_name} also deleted or updated rows of"
                ),
                first(hit),
            ));
        }
    }
    // Rule 10: one deletion vector per data file (format v3).
    let dvs: HashSet<String> = added_deletes(target)
        .filter(|(e, _)| e.is_deletion_vector())
        .filter_map(|(e, _)| e.entry.data_file().referenced_data_file())
        .collect();
    let hit: Vec<String> = added_deletes(source)
        .filter(|(e, _)| e.is_deletion_vector())
        .filter_map(|(e, _)| e.entry.data_file().referenced_data_file())
        .filter(|f| dvs.contains(f))
        .collect();
    if !hit.is_empty() {
        return Err(Finding::new(
            "two-deletion-vectors",
            "both sides wrote a deletion vector for the same data file (a file has one)".to_owned(),
            first(hit),
        ));
    }
    // Rule 5: the source's equality deletes, replayed above the target's new rows, would
    // delete rows they never saw.
    let target_appended = Partitions::of(appended(target));
    let hit: Vec<&Entry> = added_deletes(source)
        .filter(|(e, _)| e.content() == DataContentType::EqualityDeletes)
        .map(|(e, _)| e)
        .filter(|e| target_appended.overlaps(e))
        .collect();
    if !hit.is_empty() {
        let involved = first(hit.iter().map(|e| partition_text(e)));
        if serializable {
            return Err(Finding::new(
                "equality-delete-vs-append",
                "the source's equality deletes would apply to rows the target added since the merge base".to_owned(),
                involved,
            )
            .clean_under_snapshot());
        }
        warnings.push(format!(
            "the source's equality deletes also delete matching rows the target added ({})",
            involved.join("; ")
        ));
    }
    Ok(warnings)
}
