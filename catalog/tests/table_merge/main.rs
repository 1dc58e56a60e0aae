//! The Iceberg-aware merge on what the Python clients cannot write (issue 22): equality
//! deletes and their replay order, position deletes on both sides, compaction against
//! deletes and appends, format v3 row lineage; and a property test: a clean merge reads
//! exactly as the target's rows with the source's changes applied after them.

mod lake;

use std::collections::BTreeSet;

use floe_catalog::{CatalogError, Isolation};
use floe_commits::WriteError;
use iceberg::spec::FormatVersion;
use lake::Lake;
use proptest::prelude::*;

fn rows(pairs: &[(i64, &str)]) -> BTreeSet<(i64, String)> {
    pairs.iter().map(|(i, p)| (*i, (*p).to_owned())).collect()
}

/// The rule a refused merge names.
fn rule(e: CatalogError) -> String {
    match e {
        CatalogError::Write(WriteError::Conflict { conflicts, .. }) => conflicts[0]
            .reason
            .as_ref()
            .map(|r| r.rule.clone())
            .unwrap_or_else(|| format!("no reason: {:?}", conflicts[0])),
        other => panic!("not a conflict: {other}"),
    }
}

/// Two sides from one base: `main` and `dev`.
fn forked(partitioned: bool) -> Lake {
    let lake = Lake::new(partitioned, FormatVersion::V2);
    lake.append("main", "a", &[1, 2, 3]);
    lake.append("main", "b", &[4, 5]);
    lake.branch("dev", "main");
    lake
}

#[test]
fn equality_deletes_are_replayed_one_snapshot_at_a_time() {
    let lake = forked(true);
    // The source deletes value 6 after adding it, then adds it again: only the last
    // survives, which a squash into one sequence number would get wrong (an equality
    // delete applies only to rows of strictly lower sequence numbers).
    lake.append("dev", "a", &[6]);
    lake.equality_delete("dev", "a", &[6]);
    lake.append("dev", "a", &[6]);
    lake.append("main", "b", &[7]);
    let (_, reports) = lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(reports[0].snapshots_replayed, 3, "{reports:?}");
    assert_eq!(
        lake.rows("main"),
        rows(&[
            (1, "a"),
            (2, "a"),
            (3, "a"),
            (4, "b"),
            (5, "b"),
            (6, "a"),
            (7, "b")
        ])
    );
    assert_eq!(lake.rows("dev").len() + 1, lake.rows("main").len());
}

#[test]
fn equality_deletes_over_the_targets_new_rows_conflict_unless_snapshot_isolation() {
    let lake = forked(true);
    lake.equality_delete("dev", "a", &[2]);
    lake.append("main", "a", &[8]);
    let e = lake
        .merge("dev", "main", Isolation::Serializable)
        .unwrap_err();
    assert_eq!(rule(e), "equality-delete-vs-append");
    let (_, reports) = lake.merge("dev", "main", Isolation::Snapshot).unwrap();
    assert_eq!(reports[0].warnings.len(), 1, "{reports:?}");
    assert_eq!(
        lake.rows("main"),
        rows(&[(1, "a"), (3, "a"), (4, "b"), (5, "b"), (8, "a")])
    );
}

#[test]
fn position_deletes_of_one_file_on_both_sides_are_a_union() {
    let lake = forked(false);
    lake.delete_positions("dev", &[2]);
    lake.delete_positions("main", &[2, 3]);
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(lake.rows("main"), rows(&[(1, "-"), (4, "-"), (5, "-")]));
}

#[test]
fn a_compaction_conflicts_with_deletes_of_the_files_it_rewrote() {
    let lake = Lake::new(true, FormatVersion::V2);
    lake.append("main", "a", &[1, 2]);
    lake.append("main", "a", &[3]);
    lake.branch("dev", "main");
    lake.compact("main", "a");
    lake.delete_positions("dev", &[2]);
    let e = lake.merge("dev", "main", Isolation::Snapshot).unwrap_err();
    assert_eq!(rule(e), "deletes-for-removed-file");
    // The other way round too.
    let e = lake.merge("main", "dev", Isolation::Snapshot).unwrap_err();
    assert_eq!(rule(e), "deletes-for-removed-file");
}

#[test]
fn a_compaction_merges_with_appends_in_its_partition() {
    let lake = Lake::new(true, FormatVersion::V2);
    lake.append("main", "a", &[1, 2]);
    lake.append("main", "a", &[3]);
    lake.branch("dev", "main");
    lake.compact("dev", "a");
    lake.append("main", "a", &[4]);
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(
        lake.rows("main"),
        rows(&[(1, "a"), (2, "a"), (3, "a"), (4, "a")])
    );
    let data = lake
        .live("main")
        .iter()
        .filter(|f| f.file.content_type() == iceberg::spec::DataContentType::Data)
        .count();
    assert_eq!(data, 2, "the compacted file and the new one");
}

#[test]
fn a_format_v3_table_merges_with_fresh_row_ids() {
    let lake = Lake::new(false, FormatVersion::V3);
    lake.append("main", "-", &[1, 2]);
    lake.branch("dev", "main");
    lake.append("dev", "-", &[3, 4, 5]);
    lake.append("main", "-", &[6]);
    let before = lake.table("main").next_row_id();
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    let t = lake.table("main");
    assert_eq!(t.format_version(), FormatVersion::V3);
    // The replayed snapshot took the next row ids: as many as the rows it added.
    let current = t.current_snapshot().unwrap();
    assert_eq!(current.first_row_id(), Some(before));
    assert_eq!(t.next_row_id(), before + 3);
    assert_eq!(lake.rows("main").len(), 6);
}

#[test]
fn deletion_vectors_for_one_file_on_both_sides_conflict_and_for_others_merge() {
    let lake = Lake::new(true, FormatVersion::V3);
    lake.append("main", "a", &[1, 2, 3]);
    lake.append("main", "b", &[4, 5]);
    lake.branch("dev", "main");
    lake.branch("other", "main");
    lake.delete_with_vectors("dev", &[2]);
    lake.delete_with_vectors("other", &[3]);
    let e = lake.merge("dev", "other", Isolation::Snapshot).unwrap_err();
    assert_eq!(rule(e), "two-deletion-vectors");
    lake.delete_with_vectors("main", &[5]);
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(lake.rows("main"), rows(&[(1, "a"), (3, "a"), (4, "b")]));
}

/// Criss-cross merges leave two merge bases: the table is merged because both give the
/// same result (the source's one new file), and nothing is added twice.
#[test]
fn a_table_merges_across_two_merge_bases_when_both_agree() {
    let lake = forked(false);
    lake.append("dev", "-", &[10]);
    lake.append("main", "-", &[20]);
    let who = floe_catalog::Principal::anonymous();
    let head = |at: &str| {
        lake.catalog
            .resolve(&who, &floe_commits::RefSpec::parse(at).unwrap())
            .unwrap()
            .hash
            .to_hex()
    };
    let (m, d) = (head("main"), head("dev"));
    lake.merge(&d, "main", Isolation::Serializable).unwrap();
    lake.merge(&m, "dev", Isolation::Serializable).unwrap();
    lake.append("dev", "-", &[11]);
    lake.append("main", "-", &[21]);
    let (outcome, reports) = lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(outcome.merge_bases.len(), 2, "{outcome:?}");
    assert_eq!(reports[0].data_files_added, 1, "{reports:?}");
    let expected: Vec<i64> = vec![1, 2, 3, 4, 5, 10, 11, 20, 21];
    let got: Vec<i64> = lake.rows("main").iter().map(|(i, _)| *i).collect();
    assert_eq!(got, expected);
    let paths: Vec<String> = lake
        .live("main")
        .iter()
        .map(|f| f.file.file_path().to_owned())
        .collect();
    let unique: BTreeSet<&String> = paths.iter().collect();
    assert_eq!(unique.len(), paths.len(), "no file twice: {paths:?}");
}

/// A squash of several source snapshots records them all: merging the branch again, or
/// back, finds its history (and adds nothing twice).
#[test]
fn a_squashed_replay_names_every_snapshot_it_copies() {
    let lake = forked(false);
    lake.append("dev", "-", &[10]);
    lake.append("dev", "-", &[11]);
    lake.append("main", "-", &[20]);
    let (_, reports) = lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(reports[0].snapshots_replayed, 1, "squashed: {reports:?}");
    lake.append("dev", "-", &[12]);
    lake.append("main", "-", &[21]);
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    lake.merge("main", "dev", Isolation::Serializable).unwrap();
    let ids = |at: &str| -> Vec<i64> { lake.rows(at).iter().map(|(i, _)| *i).collect() };
    assert_eq!(ids("main"), vec![1, 2, 3, 4, 5, 10, 11, 12, 20, 21]);
    assert_eq!(ids("dev"), ids("main"));
}

/// A floe squash merge leaves the merge base where it was: the next merge meets the
/// source's snapshots on both sides, and the target compacted one of their files since.
#[test]
fn snapshots_on_both_sides_are_neither_replayed_nor_in_conflict() {
    let lake = Lake::new(true, FormatVersion::V2);
    lake.append("main", "a", &[1]);
    lake.branch("dev", "main");
    lake.append("dev", "a", &[2]);
    lake.append("main", "b", &[9]);
    lake.merge_squash("dev", "main").unwrap();
    lake.compact("main", "a");
    lake.append("dev", "a", &[3]);
    lake.merge("dev", "main", Isolation::Serializable).unwrap();
    assert_eq!(
        lake.rows("main"),
        rows(&[(1, "a"), (2, "a"), (3, "a"), (9, "b")])
    );
    let data: Vec<String> = lake
        .live("main")
        .iter()
        .map(|f| f.file.file_path().to_owned())
        .collect();
    assert_eq!(data.len(), 3, "the compacted file, 9's and 3's: {data:?}");
}

/// The target's new rows, compacted, are still new rows: the source's equality delete over
/// that partition conflicts under serializable isolation.
#[test]
fn a_compaction_of_the_targets_new_rows_still_counts_as_appended() {
    let lake = forked(true);
    lake.append("main", "c", &[6]);
    lake.append("main", "c", &[7]);
    lake.compact("main", "c");
    lake.equality_delete("dev", "c", &[6]);
    let e = lake
        .merge("dev", "main", Isolation::Serializable)
        .unwrap_err();
    assert_eq!(rule(e), "equality-delete-vs-append");
}

/// Format v3: a replay that rewrites a target manifest (the source removed one of its
/// files) keeps the row ids of the files it carries.
#[test]
fn a_rewritten_manifest_keeps_the_row_ids_of_the_files_it_carries() {
    let lake = Lake::new(false, FormatVersion::V3);
    lake.append_files("main", "-", 3);
    lake.branch("dev", "main");
    lake.append("main", "-", &[7]);
    let before = lake.row_ids("main");
    let gone = lake
        .live("dev")
        .iter()
        .map(|f| lake::values(f.file.file_path()))
        .next()
        .unwrap();
    lake.overwrite_without("dev", &gone);
    lake.merge("dev", "main", Isolation::Snapshot).unwrap();
    let after = lake.row_ids("main");
    assert_eq!(after.len(), before.len() - 1, "{after:?}");
    for (path, id) in &after {
        if let Some(was) = before.get(path) {
            assert_eq!(id, was, "{path} kept its row ids");
        }
    }
    let t = lake.table("main");
    assert!(t.next_row_id() as i64 > *before.values().max().unwrap());
}

/// One change a side makes, on ids only it ever writes.
#[derive(Debug, Clone)]
enum Change {
    Append(&'static str, u8),
    DeletePositions(u8),
    DeleteEquality(&'static str, u8),
    Overwrite(u8),
    Compact(&'static str),
}

fn change() -> impl Strategy<Value = Change> {
    let part = prop_oneof![Just("a"), Just("b")];
    prop_oneof![
        3 => (part.clone(), 1u8..4).prop_map(|(p, n)| Change::Append(p, n)),
        1 => (0u8..8).prop_map(Change::DeletePositions),
        1 => (part.clone(), 0u8..8).prop_map(|(p, n)| Change::DeleteEquality(p, n)),
        1 => (0u8..8).prop_map(Change::Overwrite),
        1 => part.prop_map(Change::Compact),
    ]
}

/// Applies a change on `at`; `mine` are the ids this side has written, its deletes pick
/// among them (and the base's), and its appends take fresh ids from `next`.
fn apply(lake: &Lake, at: &str, c: &Change, next: &mut i64) {
    let pick = |n: u8| -> Vec<i64> {
        let ids: Vec<i64> = lake.rows(at).iter().map(|(i, _)| *i).collect();
        if ids.is_empty() {
            return Vec::new();
        }
        vec![ids[n as usize % ids.len()]]
    };
    match c {
        Change::Append(p, n) => {
            let ids: Vec<i64> = (0..i64::from(*n)).map(|k| *next + k).collect();
            *next += i64::from(*n);
            lake.append(at, p, &ids);
        }
        Change::DeletePositions(n) => {
            let ids = pick(*n);
            if !ids.is_empty() {
                lake.delete_positions(at, &ids);
            }
        }
        Change::DeleteEquality(p, n) => {
            let ids = pick(*n);
            if !ids.is_empty() {
                lake.equality_delete(at, p, &ids);
            }
        }
        Change::Overwrite(n) => lake.overwrite_without(at, &pick(*n)),
        Change::Compact(p) => lake.compact(at, p),
    }
}

/// Clean merges among the property test's cases (a resolver that refused everything
/// would pass the property alone).
static CLEAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const CASES: u32 = 32;

#[test]
fn a_clean_merge_reads_as_the_sources_changes_applied_after_the_targets() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(change(), 1..5),
        proptest::collection::vec(change(), 1..5),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(source, target, snapshot)| {
            merge_case(source, target, snapshot)
        })
        .unwrap();
    let clean = CLEAN.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        clean >= CASES as usize / 4,
        "only {clean} of {CASES} cases merged cleanly"
    );
}

/// One case: both sides change the table, then the source merges into the target.
fn merge_case(
    source: Vec<Change>,
    target: Vec<Change>,
    snapshot: bool,
) -> Result<(), TestCaseError> {
    {
        let lake = forked(true);
        let base = lake.rows("main");
        let (mut s_next, mut t_next) = (100, 200);
        for c in &source {
            apply(&lake, "dev", c, &mut s_next);
        }
        for c in &target {
            apply(&lake, "main", c, &mut t_next);
        }
        let (dev, main) = (lake.rows("dev"), lake.rows("main"));
        let isolation = if snapshot {
            Isolation::Snapshot
        } else {
            Isolation::Serializable
        };
        match lake.merge("dev", "main", isolation) {
            Ok(_) => {
                let added: BTreeSet<_> = dev.difference(&base).cloned().collect();
                let deleted: BTreeSet<_> = base.difference(&dev).cloned().collect();
                let expected: BTreeSet<_> =
                    main.difference(&deleted).cloned().chain(added).collect();
                prop_assert_eq!(lake.rows("main"), expected);
                CLEAN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Err(CatalogError::Write(WriteError::Conflict { conflicts, .. })) => {
                // A refusal names its rule, and changes nothing.
                prop_assert!(conflicts[0].reason.is_some(), "{:?}", conflicts);
                prop_assert_eq!(lake.rows("main"), main);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
    Ok(())
}
