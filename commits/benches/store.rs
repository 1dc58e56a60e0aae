//! Criterion benchmarks of the version store's performance targets (issue 2, "Performance";
//! results and commands in BENCHMARKS.md): commit CPU at 1,000 vs 1,000,000 keys, diff and
//! merge of 10,000 changes, ordered listing, no-op merges and merges over long histories.
//!
//! Everything runs on the in-memory backend, CPU only. Fixtures are built once per process
//! (lazily, so a filtered run builds only what it needs) with commits of at most
//! `OPS_PER_COMMIT_MAX` operations, as a client would load them. Keys are
//! `ns0000 .. ns{N}` namespaces each holding tables `t0000 ..`; the big fixture holds
//! 1,000 namespaces x 1,000 tables (1,001,000 keys), the small one 10 x 100 (1,010 keys).
//!
//! After the criterion groups, a report (skipped by `FLOE_BENCH_REPORT=0`, `--list` and
//! `--test`) prints what criterion cannot: fixture load times, the index shape and the
//! nodes written per commit, the first real merge of each kind, and the commit-cost ratio
//! measured with the two fixtures interleaved, so that the noise of a shared machine hits
//! both sides alike.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use floe_commits::limits::OPS_PER_COMMIT_MAX;
use floe_commits::{
    CommitMeta, Content, ContentHash, ContentId, ContentKey, Expect, Hash, ManualClock,
    MemoryBackend, MergeKind, MergeOptions, MergeOutcome, MergeStrategy, Op, Payload, RefKind,
    RefName, Resolver, Store, TablePayload, WriteCtx,
};

/// Ids of namespaces start here, ids of the fixture's tables at `TABLE_ID_BASE`, and ids
/// of tables the benchmarks create come from `NEW_IDS`: the three never meet.
const NAMESPACE_ID_BASE: u128 = 1;
const TABLE_ID_BASE: u128 = 1 << 32;
static NEW_IDS: AtomicU64 = AtomicU64::new(0);
const NEW_ID_BASE: u128 = 1 << 48;

/// Snapshot ids of modified tables: unique in the process, so no two benchmark commits
/// ever write the same content (which would be deduplicated and skew object counts).
static SNAPSHOTS: AtomicI64 = AtomicI64::new(1);

/// Changes in each diff and merge benchmark.
const CHANGES: usize = 10_000;

/// First-parent commits between a merge of `src` and the merge being measured.
const HISTORY_COMMITS: usize = 10_000;

/// A fresh content id for a new table, and its sequence number (used in its name).
fn new_id() -> (ContentId, u64) {
    let n = NEW_IDS.fetch_add(1, Ordering::Relaxed);
    (ContentId::from_u128(NEW_ID_BASE + u128::from(n)), n)
}

fn ctx() -> WriteCtx {
    WriteCtx::principal("bench")
}

fn meta(message: &str) -> CommitMeta {
    CommitMeta::new("bench", message, 1_700_000_000_000)
}

fn ref_name(name: &str) -> RefName {
    RefName::parse(name).expect("a valid ref name")
}

fn table(id: ContentId, namespace: &str, name: &str, snapshot: i64) -> Content {
    Content {
        id,
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!(
                "s3://warehouse/{namespace}/{name}-{id}/metadata/{snapshot:05}-metadata.json"
            ),
            table_uuid: id.0,
            snapshot_id: snapshot,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

/// A store loaded with `namespaces` x `tables_per_namespace` tables on `main`.
#[derive(Debug)]
struct Fixture {
    name: &'static str,
    backend: Arc<MemoryBackend>,
    store: Store,
    namespaces: usize,
    tables_per_namespace: usize,
    /// The head of `main` once loaded: every benchmark reads or branches from it.
    head: Hash,
    load_time: Duration,
    load_commits: usize,
}

impl Fixture {
    fn build(name: &'static str, namespaces: usize, tables_per_namespace: usize) -> Fixture {
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(
            backend.clone(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
        .expect("a store opens");
        let mut fixture = Fixture {
            name,
            backend,
            store,
            namespaces,
            tables_per_namespace,
            head: Store::root_commit(),
            load_time: Duration::ZERO,
            load_commits: 0,
        };
        eprintln!("building the {name} fixture ({} keys) ...", fixture.keys());
        let main = ref_name("main");
        let started = Instant::now();
        let namespace_ops: Vec<Op> = (0..namespaces)
            .map(|n| Op::Put {
                key: fixture.namespace_key(n),
                content: Content::namespace(
                    ContentId::from_u128(NAMESPACE_ID_BASE + n as u128),
                    BTreeMap::from([("owner".to_owned(), "bench".to_owned())]),
                ),
                expect: Expect::Absent,
            })
            .collect();
        let table_ops = (0..fixture.tables()).map(|t| Op::Put {
            key: fixture.table_key(t),
            content: fixture.table_content(t, 0),
            expect: Expect::Absent,
        });
        let mut head = fixture.head;
        let mut commits = 0;
        let mut load = |ops: Vec<Op>| {
            let out = fixture
                .store
                .commit(&main, Some(head), ops, meta("load"), &ctx())
                .expect("the fixture loads");
            head = out.commit;
            commits += 1;
        };
        for chunk in namespace_ops.chunks(OPS_PER_COMMIT_MAX) {
            load(chunk.to_vec());
        }
        let mut batch = Vec::with_capacity(OPS_PER_COMMIT_MAX);
        for op in table_ops {
            batch.push(op);
            if batch.len() == OPS_PER_COMMIT_MAX {
                load(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            load(batch);
        }
        fixture.head = head;
        fixture.load_time = started.elapsed();
        fixture.load_commits = commits;
        eprintln!(
            "built the {name} fixture: {} keys in {} commits, {:.2} s",
            fixture.keys(),
            commits,
            fixture.load_time.as_secs_f64()
        );
        fixture
    }

    fn tables(&self) -> usize {
        self.namespaces * self.tables_per_namespace
    }

    fn keys(&self) -> usize {
        self.namespaces + self.tables()
    }

    fn namespace_name(n: usize) -> String {
        format!("ns{n:04}")
    }

    fn namespace_key(&self, n: usize) -> ContentKey {
        ContentKey::new([Self::namespace_name(n)]).expect("a valid key")
    }

    /// Table `t` (0 .. tables()) sits in namespace `t / tables_per_namespace`.
    fn table_key(&self, t: usize) -> ContentKey {
        let (n, i) = (t / self.tables_per_namespace, t % self.tables_per_namespace);
        ContentKey::new([Self::namespace_name(n), format!("t{i:04}")]).expect("a valid key")
    }

    fn table_content(&self, t: usize, snapshot: i64) -> Content {
        let (n, i) = (t / self.tables_per_namespace, t % self.tables_per_namespace);
        table(
            ContentId::from_u128(TABLE_ID_BASE + t as u128),
            &Self::namespace_name(n),
            &format!("t{i:04}"),
            snapshot,
        )
    }

    fn branch(&self, name: &str, at: Hash) -> RefName {
        let name = ref_name(name);
        self.store
            .create_ref(&name, RefKind::Branch, at, &ctx())
            .expect("the branch is new");
        name
    }

    fn depth(&self, commit: Hash) -> usize {
        self.store
            .index_shape(commit)
            .expect("the index reads")
            .len()
    }
}

fn small() -> &'static Fixture {
    static SMALL: OnceLock<Fixture> = OnceLock::new();
    SMALL.get_or_init(|| Fixture::build("1k-key", 10, 100))
}

fn big() -> &'static Fixture {
    static BIG: OnceLock<Fixture> = OnceLock::new();
    BIG.get_or_init(|| Fixture::build("1M-key", 1_000, 1_000))
}

/// Commits one small change at a time to its own branch, keeping the head and the
/// current hash of every table it changed (so each put expects `Is(old hash)`, as the
/// catalog's commits do).
#[derive(Debug)]
struct Driver<'f> {
    fixture: &'f Fixture,
    branch: RefName,
    head: Hash,
    rng: u64,
    current: HashMap<usize, ContentHash>,
}

impl<'f> Driver<'f> {
    /// A driver on a new branch at the fixture's loaded head.
    fn new(fixture: &'f Fixture, branch: &str) -> Driver<'f> {
        Driver::at(fixture, branch, fixture.head)
    }

    /// A driver on a new branch at `head`; its random stream is seeded by the name.
    fn at(fixture: &'f Fixture, branch: &str, head: Hash) -> Driver<'f> {
        let seed = branch.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Driver {
            fixture,
            branch: fixture.branch(branch, head),
            head,
            rng: seed | 1,
            current: HashMap::new(),
        }
    }

    fn random(&mut self) -> usize {
        // xorshift64: deterministic, uniform enough to spread edits over the index.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng as usize
    }

    /// A new snapshot of table `t`, expecting its current content.
    fn modify(&mut self, t: usize) -> Vec<Op> {
        let expect = match self.current.get(&t) {
            Some(h) => *h,
            None => self.fixture.table_content(t, 0).hash(),
        };
        let snapshot = SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
        let content = self.fixture.table_content(t, snapshot);
        self.current.insert(t, content.hash());
        vec![Op::Put {
            key: self.fixture.table_key(t),
            content,
            expect: Expect::Is(expect),
        }]
    }

    fn modify_random(&mut self) -> Vec<Op> {
        let t = self.random() % self.fixture.tables();
        self.modify(t)
    }

    /// A new table in a random namespace, with the namespace check the catalog sends.
    fn insert_random(&mut self) -> Vec<Op> {
        let n = self.random() % self.fixture.namespaces;
        let (id, seq) = new_id();
        let namespace = Fixture::namespace_name(n);
        let name = format!("new{seq:09}");
        vec![
            Op::Check {
                key: self.fixture.namespace_key(n),
                expect: Expect::Present,
            },
            Op::Put {
                key: ContentKey::new([namespace.as_str(), &name]).expect("a valid key"),
                content: table(id, &namespace, &name, 0),
                expect: Expect::Absent,
            },
        ]
    }

    /// Commits `ops`; only the `Store::commit` call is timed.
    fn commit(&mut self, ops: Vec<Op>) -> Duration {
        let meta = meta("update a table");
        let started = Instant::now();
        let out = self
            .fixture
            .store
            .commit(&self.branch, Some(self.head), ops, meta, &ctx())
            .expect("the commit lands");
        let elapsed = started.elapsed();
        assert!(out.created && !out.rebased);
        self.head = out.commit;
        elapsed
    }

    fn run(&mut self, iters: u64, insert: bool) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let ops = if insert {
                self.insert_random()
            } else {
                self.modify_random()
            };
            total += self.commit(ops);
        }
        total
    }
}

/// Figure 1: CPU per commit at 1,000 and 1,000,000 keys.
fn commit_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    type Fix = fn() -> &'static Fixture;
    let cases: [(&str, &str, Fix); 2] = [("1k", "1k_keys", small), ("1M", "1M_keys", big)];
    for (insert, kind) in [(false, "modify"), (true, "insert")] {
        for (short, label, fixture) in cases {
            let mut driver: Option<Driver<'static>> = None;
            group.bench_function(BenchmarkId::new(kind, label), |b| {
                let d = driver.get_or_insert_with(|| {
                    Driver::new(fixture(), &format!("bench-{kind}-{short}"))
                });
                b.iter_custom(|iters| d.run(iters, insert));
            });
        }
    }
    group.finish();
}

/// Branches on the big fixture for the diff and merge benchmarks.
#[derive(Debug)]
struct MergeSetup {
    /// The fork point: the loaded head.
    base: Hash,
    /// 10,000 new tables in namespace ns0500, in one commit on `dev-one-ns`.
    one_namespace: Hash,
    /// 10,000 modified tables spread uniformly (every 100th table), on `dev-spread`.
    spread: Hash,
    /// `main-div`: the base plus one unrelated change, so merges are three-way.
    target: RefName,
    target_head: Hash,
    /// A branch into which `one_namespace` is already merged.
    merged: RefName,
    dev_commit_one_namespace: Duration,
    dev_commit_spread: Duration,
    /// The first real merge of each source (time, objects written): every later real
    /// merge of the same source writes objects that are already stored.
    first_merge_one_namespace: (Duration, usize),
    first_merge_spread: (Duration, usize),
}

fn merges() -> &'static MergeSetup {
    static MERGES: OnceLock<MergeSetup> = OnceLock::new();
    MERGES.get_or_init(|| {
        let f = big();
        let mut dev = Driver::new(f, "dev-one-ns");
        let namespace = Fixture::namespace_name(500);
        let ops: Vec<Op> = (0..CHANGES)
            .map(|i| {
                let name = format!("x{i:05}");
                Op::Put {
                    key: ContentKey::new([namespace.as_str(), &name]).expect("a valid key"),
                    content: table(new_id().0, &namespace, &name, 0),
                    expect: Expect::Absent,
                }
            })
            .collect();
        let dev_commit_one_namespace = dev.commit(ops);
        let mut spread = Driver::new(f, "dev-spread");
        let stride = f.tables() / CHANGES;
        let ops: Vec<Op> = (0..CHANGES)
            .flat_map(|i| spread.modify(i * stride))
            .collect();
        let dev_commit_spread = spread.commit(ops);
        let mut target = Driver::new(f, "main-div");
        let ops = target.modify(1);
        target.commit(ops);
        let first_merge = |name: &str, source: Hash| {
            let branch = f.branch(name, target.head);
            let objects = f.backend.object_count();
            let started = Instant::now();
            let out = merge(f, source, &branch, Some(target.head), false);
            let elapsed = started.elapsed();
            assert_eq!(out.kind, MergeKind::Merged);
            assert_eq!(out.changes.len(), CHANGES);
            (branch, (elapsed, f.backend.object_count() - objects))
        };
        let (merged, first_merge_one_namespace) = first_merge("merged", dev.head);
        let (_, first_merge_spread) = first_merge("merged-spread", spread.head);
        MergeSetup {
            base: f.head,
            one_namespace: dev.head,
            spread: spread.head,
            target: target.branch,
            target_head: target.head,
            merged,
            dev_commit_one_namespace,
            dev_commit_spread,
            first_merge_one_namespace,
            first_merge_spread,
        }
    })
}

fn merge(
    f: &Fixture,
    source: Hash,
    target: &RefName,
    expected: Option<Hash>,
    dry_run: bool,
) -> MergeOutcome {
    let options = MergeOptions {
        strategy: MergeStrategy::Normal,
        dry_run,
        ..MergeOptions::default()
    };
    let resolver: &dyn Resolver = &floe_commits::ConflictResolver;
    f.store
        .merge(source, target, expected, &options, resolver, &ctx())
        .expect("the merge succeeds")
}

/// Every change from `from` to `to`, in pages of `limit`.
fn diff_all(f: &Fixture, from: Hash, to: Hash, limit: usize) -> usize {
    let mut after: Option<ContentKey> = None;
    let mut n = 0;
    loop {
        let page = f
            .store
            .diff(from, to, None, after.as_ref(), limit)
            .expect("the diff reads");
        n += page.items.len();
        black_box(&page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return n,
        }
    }
}

/// A real merge of `source` into a new branch at `main-div`'s head; only the merge is timed.
fn real_merge(f: &Fixture, m: &MergeSetup, source: Hash, n: &AtomicU64) -> Duration {
    let name = format!("real-merge-{}", n.fetch_add(1, Ordering::Relaxed));
    let target = f.branch(&name, m.target_head);
    let started = Instant::now();
    let out = merge(f, source, &target, Some(m.target_head), false);
    let elapsed = started.elapsed();
    assert_eq!(out.kind, MergeKind::Merged);
    assert_eq!(out.changes.len(), CHANGES);
    elapsed
}

/// Figure 2: diff and merge of 10,000 changes on the 1M-key fixture.
fn diff_merge_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("diff_merge_10k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(CHANGES as u64));
    let real_merges = AtomicU64::new(0);
    for (label, pick) in [
        (
            "one_namespace",
            (|m: &MergeSetup| m.one_namespace) as fn(&MergeSetup) -> Hash,
        ),
        ("spread_1M", |m: &MergeSetup| m.spread),
    ] {
        group.bench_function(BenchmarkId::new("diff", label), |b| {
            let (f, m) = (big(), merges());
            let to = pick(m);
            b.iter(|| assert_eq!(diff_all(f, m.base, to, CHANGES), CHANGES));
        });
        group.bench_function(BenchmarkId::new("diff_paged_1000", label), |b| {
            let (f, m) = (big(), merges());
            let to = pick(m);
            b.iter(|| assert_eq!(diff_all(f, m.base, to, 1_000), CHANGES));
        });
        group.bench_function(BenchmarkId::new("merge_dry_run", label), |b| {
            let (f, m) = (big(), merges());
            let source = pick(m);
            b.iter(|| {
                let out = merge(f, source, &m.target, Some(m.target_head), true);
                assert_eq!(out.kind, MergeKind::Merged);
                assert_eq!(out.changes.len(), CHANGES);
                out
            });
        });
        group.bench_function(BenchmarkId::new("merge_real", label), |b| {
            let (f, m) = (big(), merges());
            let source = pick(m);
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| real_merge(f, m, source, &real_merges))
                    .sum()
            });
        });
    }
    group.finish();
}

/// Figure 3: ordered listing of the 1M-key commit.
fn listing_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("listing");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(big_keys()));
    group.bench_function("for_each_entry/1M_keys", |b| {
        let f = big();
        b.iter(|| {
            let mut n = 0u64;
            f.store
                .for_each_entry(f.head, None, |k, v| {
                    black_box((k, v));
                    n += 1;
                    true
                })
                .expect("the listing reads");
            assert_eq!(n, f.keys() as u64);
        });
    });
    group.bench_function("entries_paged_10000/1M_keys", |b| {
        let f = big();
        b.iter(|| {
            let mut after: Option<ContentKey> = None;
            let mut n = 0;
            loop {
                let page = f
                    .store
                    .entries(f.head, None, after.as_ref(), 10_000)
                    .expect("the listing reads");
                n += page.items.len();
                black_box(&page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(n, f.keys());
        });
    });
    group.finish();
}

/// The big fixture's key count, without building it (criterion wants it up front).
fn big_keys() -> u64 {
    1_000 + 1_000 * 1_000
}

/// A small store where `src` was merged into two branches `HISTORY_COMMITS` first-parent
/// commits ago, and `src` then got one more commit.
#[derive(Debug)]
struct HistorySetup {
    fixture: Fixture,
    /// `src` after the merge: one more modified table.
    source: Hash,
    /// The commit of `src` that was merged.
    merged_source: Hash,
    /// Branches whose 10,000 commits since the merge touched 10 tables, and every table.
    hot: (RefName, Hash),
    wide: (RefName, Hash),
    build_time: Duration,
}

fn history() -> &'static HistorySetup {
    static HISTORY: OnceLock<HistorySetup> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let started = Instant::now();
        let fixture = Fixture::build("history", 10, 100);
        let f = &fixture;
        let mut src = Driver::new(f, "src");
        let ops = src.modify(5);
        src.commit(ops);
        let merged_source = src.head;
        let options = MergeOptions {
            strategy: MergeStrategy::NoFastForward,
            ..MergeOptions::default()
        };
        let main = ref_name("main");
        let out = f
            .store
            .merge(
                merged_source,
                &main,
                Some(f.head),
                &options,
                &floe_commits::ConflictResolver,
                &ctx(),
            )
            .expect("src merges into main");
        assert_eq!(out.kind, MergeKind::Merged);
        let merge_commit = out.head;
        // Table 7 is what `src` changes next: the target branches leave it alone.
        let merged_current = src.current.clone();
        let run = |name: &str, pick: &dyn Fn(usize) -> usize| {
            let mut d = Driver::at(f, name, merge_commit);
            d.current = merged_current.clone();
            for i in 0..HISTORY_COMMITS {
                let ops = d.modify(pick(i));
                d.commit(ops);
            }
            (d.branch, d.head)
        };
        let hot = run("hot", &|i| 10 + i % 10);
        let tables = f.tables();
        let wide = run("wide", &|i| {
            let t = i % (tables - 1);
            if t >= 7 { t + 1 } else { t }
        });
        let ops = src.modify(7);
        src.commit(ops);
        let source = src.head;
        drop(src);
        HistorySetup {
            source,
            merged_source,
            hot,
            wide,
            build_time: started.elapsed(),
            fixture,
        }
    })
}

/// Figure 4: a no-op merge right after a merge, and a merge whose source was merged
/// 10,000 first-parent commits ago.
fn merge_history_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge_history");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("noop_after_merge/1M_keys", |b| {
        let (f, m) = (big(), merges());
        b.iter(|| {
            let out = merge(f, m.one_namespace, &m.merged, None, false);
            assert_eq!(out.kind, MergeKind::NothingToMerge);
            out
        });
    });
    for (label, which) in [
        (
            "merged_10k_commits_ago/hot_10_tables",
            (|h: &HistorySetup| h.hot.clone()) as fn(&HistorySetup) -> (RefName, Hash),
        ),
        ("merged_10k_commits_ago/all_tables", |h: &HistorySetup| {
            h.wide.clone()
        }),
    ] {
        group.bench_function(label, |b| {
            let h = history();
            let (target, head) = which(h);
            b.iter(|| {
                let out = merge(&h.fixture, h.source, &target, Some(head), true);
                assert_eq!(out.kind, MergeKind::Merged);
                assert_eq!(out.merge_bases, vec![h.merged_source]);
                assert_eq!(out.changes.len(), 1);
                out
            });
        });
    }
    group.finish();
}

/// Median of a sample, in nanoseconds.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Objects and index nodes one commit writes, averaged over `n` commits.
fn nodes_per_commit(d: &mut Driver<'_>, n: usize, insert: bool) -> f64 {
    let before = d.fixture.backend.object_count();
    d.run(n as u64, insert);
    let written = d.fixture.backend.object_count() - before;
    // One content object and one commit object per commit; the rest are index nodes.
    (written - 2 * n) as f64 / n as f64
}

/// The numbers criterion does not give: load times, shapes, nodes written per commit,
/// single real merges and the interleaved commit-cost ratio.
fn report() {
    let (s, b) = (small(), big());
    println!();
    println!("==== floe-commits benchmark report ====");
    for f in [s, b] {
        let shape = f.store.index_shape(f.head).expect("the index reads");
        println!(
            "fixture {}: {} keys loaded in {} commits (<= {OPS_PER_COMMIT_MAX} ops each) in {:.2} s; key index depth {} (nodes per level, root first: {:?}); objects {}",
            f.name,
            f.keys(),
            f.load_commits,
            f.load_time.as_secs_f64(),
            shape.len(),
            shape,
            f.backend.object_count(),
        );
    }
    for (label, insert) in [("modify", false), ("insert", true)] {
        let mut ds = Driver::new(s, &format!("report-{label}-1k"));
        let mut db = Driver::new(b, &format!("report-{label}-1M"));
        let ns = nodes_per_commit(&mut ds, 200, insert);
        let nb = nodes_per_commit(&mut db, 200, insert);
        println!(
            "{label} commit: index nodes written per commit: 1k keys {ns:.2} (key index depth {}), 1M keys {nb:.2} (key index depth {})",
            s.depth(ds.head),
            b.depth(db.head),
        );
        // Interleaved blocks of commits on both fixtures: the ratio of the medians.
        let (mut small_ns, mut big_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        const BLOCK: u64 = 300;
        const BLOCKS: usize = 31;
        for _ in 0..BLOCKS {
            let a = ds.run(BLOCK, insert).as_nanos() as f64 / BLOCK as f64;
            let z = db.run(BLOCK, insert).as_nanos() as f64 / BLOCK as f64;
            small_ns.push(a);
            big_ns.push(z);
            ratios.push(z / a);
        }
        let (ms, mb) = (median(small_ns), median(big_ns));
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        println!(
            "{label} commit, interleaved ({BLOCKS} blocks of {BLOCK}): 1k keys {:.1} us, 1M keys {:.1} us, ratio of medians {:.2}, median of block ratios {:.2} (min {lo:.2}, max {hi:.2}; target <= 2.5)",
            ms / 1e3,
            mb / 1e3,
            mb / ms,
            median(ratios),
        );
    }
    let m = merges();
    println!(
        "dev commits of {CHANGES} ops on the 1M-key fixture: one namespace (inserts) {:.1} ms, spread (modifies) {:.1} ms",
        m.dev_commit_one_namespace.as_secs_f64() * 1e3,
        m.dev_commit_spread.as_secs_f64() * 1e3,
    );
    for (label, (time, objects)) in [
        ("one namespace", m.first_merge_one_namespace),
        ("spread", m.first_merge_spread),
    ] {
        println!(
            "first real merge of {CHANGES} changes ({label}): {:.1} ms, {objects} objects written",
            time.as_secs_f64() * 1e3,
        );
    }
    let h = history();
    println!(
        "history fixture ({} keys, {} commits on each of two branches after the merge) built in {:.2} s",
        h.fixture.keys(),
        HISTORY_COMMITS,
        h.build_time.as_secs_f64(),
    );
    println!(
        "node cache of the 1M-key store: {} nodes",
        b.store.cached_nodes()
    );
    println!("=======================================");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    commit_benches(&mut c);
    diff_merge_benches(&mut c);
    listing_benches(&mut c);
    merge_history_benches(&mut c);
    c.final_summary();
    let args: Vec<String> = std::env::args().collect();
    let skip = std::env::var("FLOE_BENCH_REPORT").is_ok_and(|v| v == "0")
        || args.iter().any(|a| a == "--list" || a == "--test");
    if !skip {
        report();
    }
}
