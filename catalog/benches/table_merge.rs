//! The Iceberg-aware merge's cost (issue 22, BENCHMARKS.md "The Iceberg-aware merge").
//!
//! - **Proportional to the change, not the table:** a table of N data files (one
//!   snapshot), then S appends of one file each on `dev` and on `main`; merging `dev` into
//!   a fresh copy of `main` (a real merge: manifests, manifest list and metadata written),
//!   for N = 10,000 and 100,000. The figure: the merge's time at 100,000 over its time at
//!   10,000 (<= 1.3x).
//! - **Against reading the change:** the same run reads every manifest list and manifest
//!   the 2S new snapshots wrote (the least a merge that reads what changed must read) from
//!   the same warehouse; the figure: the merge over that read (<= 3x).
//! - **No table changed on both sides:** a merge whose only table changed on one side, with
//!   the table merge on and off (`--no-table-merge`): the same cost (no metadata read).
//!
//! `cargo bench -p floe-catalog --bench table_merge`; under `cargo test --benches` it runs
//! at a hundredth of the sizes.

#[path = "../tests/table_merge/lake.rs"]
mod lake;

use std::time::{Duration, Instant};

use floe_catalog::{Isolation, TableMergeOptions};
use iceberg::spec::{FormatVersion, Manifest, ManifestList};
use lake::{Lake, local};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Reads what the snapshots since the base wrote on `at`: each one's manifest list and
/// the manifests it added.
fn read_change(lake: &Lake, at: &str, base_snapshot: i64) -> usize {
    let t = lake.table(at);
    let mut files = 0;
    let mut s = t.current_snapshot().cloned();
    while let Some(snap) = s {
        if snap.snapshot_id() == base_snapshot {
            break;
        }
        let list = ManifestList::parse_with_version(
            &std::fs::read(local(snap.manifest_list())).unwrap(),
            t.format_version(),
        )
        .unwrap();
        files += 1;
        for m in list.entries() {
            if m.added_snapshot_id == snap.snapshot_id() {
                let manifest =
                    Manifest::parse_avro(&std::fs::read(local(&m.manifest_path)).unwrap()).unwrap();
                std::hint::black_box(manifest.entries().len());
                files += 1;
            }
        }
        s = snap
            .parent_snapshot_id()
            .and_then(|p| t.snapshot_by_id(p).cloned());
    }
    files
}

/// A table of `files` data files with `snapshots` appends on `dev` and on `main` since.
struct Setup {
    lake: Lake,
    files: usize,
    base: i64,
    rounds: usize,
}

fn setup(files: usize, snapshots: usize) -> Setup {
    let lake = Lake::new(false, FormatVersion::V2);
    lake.append_files("main", "-", files);
    let base = lake.table("main").current_snapshot_id().unwrap();
    lake.branch("dev", "main");
    for i in 0..snapshots as i64 {
        lake.append("dev", "-", &[1_000_000 + i]);
        lake.append("main", "-", &[2_000_000 + i]);
    }
    Setup {
        lake,
        files,
        base,
        rounds: 0,
    }
}

/// One round: `dev` merged into a fresh copy of `main` (a real merge), then the change
/// read; their times and the files each read.
fn round(s: &mut Setup) -> (Duration, Duration, usize, usize) {
    let target = format!("t{}", s.rounds);
    s.rounds += 1;
    s.lake.branch(&target, "main");
    let started = Instant::now();
    let (_, reports) = s
        .lake
        .merge("dev", &target, Isolation::Serializable)
        .unwrap();
    let merge = started.elapsed();
    assert_eq!(reports.len(), 1, "the table merged file by file");
    let started = Instant::now();
    let read_files = read_change(&s.lake, "dev", s.base) + read_change(&s.lake, "main", s.base);
    let read = started.elapsed();
    (merge, read, reports[0].files_read, read_files)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A merge whose table changed on the source only, with the table merge on and off.
fn one_sided(reps: usize) -> (Duration, Duration) {
    let lake = Lake::new(false, FormatVersion::V2);
    lake.append_files("main", "-", 1_000);
    lake.branch("dev", "main");
    lake.append("dev", "-", &[1]);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        for (enabled, times) in [(true, &mut on), (false, &mut off)] {
            let target = format!("o{rep}-{enabled}");
            lake.branch(&target, "main");
            lake.namespace(&target, &format!("n{rep}{enabled}"));
            let started = Instant::now();
            let (outcome, reports) = lake
                .merge_with(
                    "dev",
                    &target,
                    TableMergeOptions {
                        enabled,
                        ..TableMergeOptions::default()
                    },
                )
                .unwrap();
            let took = started.elapsed();
            assert!(reports.is_empty(), "no table changed on both sides");
            assert_eq!(outcome.kind, floe_commits::MergeKind::Merged);
            if rep > 0 {
                times.push(took);
            }
        }
    }
    (median(on), median(off))
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (sizes, snapshots, reps) = if bench {
        ([10_000, 100_000], 100, 9)
    } else {
        ([100, 1_000], 5, 1)
    };
    let mut setups: Vec<Setup> = sizes.iter().map(|n| setup(*n, snapshots)).collect();
    // A warm-up round each, then rounds alternating which size goes first.
    for s in setups.iter_mut() {
        round(s);
    }
    let mut merges: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut reads: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut files = (0, 0);
    for rep in 0..reps {
        let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (m, r, merged_files, read_files) = round(&mut setups[i]);
            merges[i].push(m);
            reads[i].push(r);
            files = (merged_files, read_files);
        }
    }
    println!("Iceberg-aware merge, {snapshots} appends on each side, {reps} rounds (medians)");
    for i in 0..2 {
        let per_round: Vec<f64> = merges[i]
            .iter()
            .zip(&reads[i])
            .map(|(m, r)| ratio(*m, *r))
            .collect();
        println!(
            "  {:>7} data files: merge {:>8.2} ms ({} files read), reading the change {:>7.2} ms ({} files): {:.2}x (rounds {:?})",
            setups[i].files,
            median(merges[i].clone()).as_secs_f64() * 1e3,
            files.0,
            median(reads[i].clone()).as_secs_f64() * 1e3,
            files.1,
            median_f(per_round.clone()),
            per_round
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>(),
        );
    }
    let by_size: Vec<f64> = merges[1]
        .iter()
        .zip(&merges[0])
        .map(|(b, a)| ratio(*b, *a))
        .collect();
    println!(
        "  merge at {} over merge at {} files: {:.2}x, median of the rounds' ratios (rounds {:?}; target <= 1.3x)",
        setups[1].files,
        setups[0].files,
        median_f(by_size.clone()),
        by_size
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>(),
    );
    let (on, off) = one_sided(reps * 3);
    println!(
        "No table changed on both sides: table merge on {:.3} ms, off {:.3} ms: {:.2}x",
        on.as_secs_f64() * 1e3,
        off.as_secs_f64() * 1e3,
        ratio(on, off)
    );
}
