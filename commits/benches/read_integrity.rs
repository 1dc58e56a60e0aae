//! Criterion benchmarks of what checking every object read against its hash costs
//! (issue 15, "Integrity on read"; results and commands in BENCHMARKS.md).
//!
//! Two kinds of figures. First, the check itself beside the decode it precedes: BLAKE3 of
//! an index node's bytes against `Node::decode` of the same bytes, for a node at
//! `NODE_BYTES_MAX` and for a node of typical size. Second, cold reads: a fresh `Store`
//! (empty node and commit caches) over an in-memory backend already holding the data, so
//! that every object a read needs comes from the backend and is checked once — warm reads
//! hit the caches, which hold objects that were checked when they entered, and cost the
//! same with or without the check. Run on a commit without the check and on one with it,
//! the cold figures give the ratio.
//!
//! Every figure is the on-CPU time of the benchmark's thread (Linux `schedstat`), not
//! wall time: this machine is shared with other builds, and time spent waiting for a core
//! is not the cost of a read. `schedstat` advances in scheduler ticks (4 ms here), so every
//! sample runs at least 400 ms (`SamplingMode::Flat`, 10 samples over 4 s): under 1 %.
//!
//! The fixture is bulk-loaded (no commit rule, seconds instead of minutes): 1,000
//! namespaces x 1,000 tables, a second commit where every 100th table changed, and a
//! history of `LOG_COMMITS` one-key commits on a small branch for the log.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use floe_commits::limits::{NODE_BYTES_MAX, NODE_ENTRIES_MAX, NODE_ENTRIES_TARGET};
use floe_commits::tree::Node;
use floe_commits::{
    CommitMeta, Content, ContentId, ContentKey, Expect, Hash, LogFilter, ManualClock,
    MemoryBackend, Op, Payload, RefKind, RefName, Store, TablePayload, WriteCtx,
};

const NAMESPACES: usize = 1_000;
const TABLES_PER_NAMESPACE: usize = 1_000;
/// Every `SPREAD`-th table changes between the two bulk-loaded commits.
const SPREAD: usize = 100;
/// Keys one cold `get_contents` reads.
const GET_KEYS: usize = 1_000;
/// One-key commits in the history the cold log walks.
const LOG_COMMITS: usize = 1_000;

struct Fixture {
    backend: Arc<MemoryBackend>,
    clock: Arc<ManualClock>,
    base: Hash,
    spread: Hash,
    /// The head of the branch with `LOG_COMMITS` commits.
    log_head: Hash,
    /// Keys spread evenly over the map, for the cold get.
    get_keys: Vec<ContentKey>,
}

fn ctx() -> WriteCtx {
    WriteCtx::principal("bench")
}

fn key(n: usize, t: Option<usize>) -> ContentKey {
    let ns = format!("ns{n:04}");
    match t {
        None => ContentKey::new([ns]),
        Some(t) => ContentKey::new([ns, format!("t{t:04}")]),
    }
    .expect("a valid key")
}

fn table(id: u128, snapshot: i64) -> Content {
    Content {
        id: ContentId::from_u128(id),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!("s3://warehouse/t{id}/metadata/{snapshot:05}-metadata.json"),
            table_uuid: id.to_le_bytes(),
            snapshot_id: snapshot,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

/// The whole map, with every `SPREAD`-th table at `snapshot` (the others at 0).
fn map(snapshot: i64) -> impl Iterator<Item = (ContentKey, Content)> {
    (0..NAMESPACES).flat_map(move |n| {
        let ns = (
            key(n, None),
            Content::namespace(ContentId::from_u128(n as u128 + 1), BTreeMap::new()),
        );
        let tables = (0..TABLES_PER_NAMESPACE).map(move |t| {
            let i = n * TABLES_PER_NAMESPACE + t;
            let s = if i.is_multiple_of(SPREAD) {
                snapshot
            } else {
                0
            };
            (key(n, Some(t)), table((1 << 32) + i as u128, s))
        });
        std::iter::once(ns).chain(tables)
    })
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let backend = Arc::new(MemoryBackend::new());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let store = Store::open(backend.clone(), clock.clone()).expect("a store opens");
        let main = RefName::parse("main").expect("a valid name");
        let meta = |m: &str| CommitMeta::new("bench", m, 0);
        let base = store
            .bulk_load(&main, map(0), meta("base"), &ctx())
            .expect("the base loads");
        let spread = store
            .bulk_load(&main, map(1), meta("spread"), &ctx())
            .expect("the spread change loads");
        let log = RefName::parse("log").expect("a valid name");
        store
            .create_ref(&log, RefKind::Branch, base, &ctx())
            .expect("the log branch is new");
        let mut log_head = base;
        for i in 0..LOG_COMMITS {
            let put = Op::Put {
                key: key(0, Some(0)),
                content: table(1 << 32, i as i64 + 1),
                expect: Expect::Present,
            };
            log_head = store
                .commit(&log, Some(log_head), vec![put], meta("one key"), &ctx())
                .expect("the commit lands")
                .commit;
        }
        let keys = NAMESPACES * TABLES_PER_NAMESPACE;
        let get_keys = (0..GET_KEYS)
            .map(|i| {
                let t = i * (keys / GET_KEYS);
                key(t / TABLES_PER_NAMESPACE, Some(t % TABLES_PER_NAMESPACE))
            })
            .collect();
        Fixture {
            backend,
            clock,
            base,
            spread,
            log_head,
            get_keys,
        }
    })
}

/// Nanoseconds this thread has run on a core.
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    let ran = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    ran.expect("schedstat starts with the run time in ns")
}

/// Benchmarks `f` by the on-CPU time of `iters` calls.
fn on_cpu<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: impl Into<String>,
    mut f: impl FnMut() -> T,
) {
    group.bench_function(id.into(), |b| {
        b.iter_custom(|iters| {
            let started = cpu_ns();
            for _ in 0..iters {
                black_box(f());
            }
            Duration::from_nanos(cpu_ns() - started)
        });
    });
}

/// Samples long enough for `schedstat`'s resolution.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
}

/// A store over the fixture's backend whose caches are empty: every read goes to storage.
fn cold(f: &Fixture) -> Store {
    Store::new(f.backend.clone(), f.clock.clone())
}

/// A leaf node of `entries` entries with 49-byte values (a content ref's size), its keys
/// padded so that the node's encoding is about `bytes` long.
fn leaf(entries: usize, bytes: usize) -> Node {
    let key_len = (bytes / entries).saturating_sub(49 + 4).max(8);
    let keys: Vec<Vec<u8>> = (0..entries)
        .map(|i| {
            let mut k = format!("{i:08}").into_bytes();
            k.resize(key_len, b'k');
            k
        })
        .collect();
    let value = [7u8; 49];
    Node::build(0, keys.iter().map(|k| (k.as_slice(), &value[..])))
}

fn node_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("node");
    configure(&mut group);
    // A leaf of the benchmarks' 1M-key index: about 48 entries of a 12-byte key and a
    // 49-byte content ref.
    let typical = NODE_ENTRIES_TARGET * (16 + 49 + 4);
    for (label, node) in [
        ("max", leaf(NODE_ENTRIES_MAX, NODE_BYTES_MAX - 1024)),
        ("typical", leaf(NODE_ENTRIES_TARGET, typical)),
    ] {
        let raw = node.raw().clone();
        let label = format!("{label}_{}_bytes", raw.len());
        group.throughput(Throughput::Bytes(raw.len() as u64));
        on_cpu(&mut group, format!("hash/{label}"), || {
            Hash::of(black_box(&raw))
        });
        on_cpu(&mut group, format!("decode/{label}"), || {
            Node::decode(black_box(raw.clone())).expect("the node decodes")
        });
    }
    group.finish();
}

fn cold_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("cold");
    configure(&mut group);
    // Each closure asks for the fixture, so that a filtered run builds it only if needed.
    on_cpu(&mut group, "for_each_entry/1M_keys", || {
        let f = fixture();
        let mut n = 0usize;
        cold(f)
            .for_each_entry(f.base, None, |k, v| {
                black_box((k, v));
                n += 1;
                true
            })
            .expect("the listing reads");
        assert_eq!(n, NAMESPACES * (TABLES_PER_NAMESPACE + 1));
    });
    on_cpu(&mut group, "get_contents/1000_keys", || {
        let f = fixture();
        let got = cold(f)
            .get_contents(f.base, &f.get_keys)
            .expect("the contents read");
        assert!(got.iter().all(Option::is_some));
        got
    });
    on_cpu(&mut group, "diff/10k_spread_changes", || {
        let f = fixture();
        let page = cold(f)
            .diff(f.base, f.spread, None, None, 10_000)
            .expect("the diff reads");
        assert_eq!(page.items.len(), NAMESPACES * TABLES_PER_NAMESPACE / SPREAD);
        page
    });
    on_cpu(&mut group, "log/1000_commits", || {
        let f = fixture();
        let page = cold(f)
            .log(f.log_head, &LogFilter::default(), LOG_COMMITS)
            .expect("the log reads");
        assert_eq!(page.items.len(), LOG_COMMITS);
        page
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    node_benches(&mut c);
    cold_benches(&mut c);
    c.final_summary();
}
