//! Benchmarks of durable commits on the sled backend (issue 3), each against the baseline
//! measured in the same run: "raw fdatasync", 4 KiB appended to a preallocated file in the
//! same folder and `fdatasync`ed, 2,000 times. A plain harness (not criterion): the
//! figures are percentiles and rates of real fsyncs, which criterion's model does not fit.
//!
//! `cargo bench -p floe-commits --bench durable` prints one line per figure; with
//! `FLOE_BENCH_DIR` the stores are made there (default: a temporary folder beside the
//! target directory's disk, `std::env::temp_dir()`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_commits::*;

fn main() {
    if let Some(dir) = std::env::var_os("FLOE_BENCH_RECOVERY_CHILD") {
        recovery_child(Path::new(&dir));
        return;
    }
    if let Ok(spec) = std::env::var("FLOE_BENCH_BUILD_CHILD") {
        let mut parts = spec.split('|');
        let dir = parts.next().unwrap().to_owned();
        let namespaces: u128 = parts.next().unwrap().parse().unwrap();
        let tables: u128 = parts.next().unwrap().parse().unwrap();
        build_fixture(Path::new(&dir), namespaces, tables);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small.
    let full = std::env::args().any(|a| a == "--bench");
    let root = tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .expect("a folder for the stores");
    let scale: u64 = if full { 1 } else { 100 };
    println!(
        "==== floe-commits durable benchmarks ({}) ====",
        if full { "full" } else { "smoke run" }
    );

    let raw = raw_fdatasync(root.path(), (2_000 / scale) as usize);
    println!(
        "raw fdatasync (4 KiB append + fdatasync): p50 {} p99 {}",
        us(raw.p50()),
        us(raw.p99())
    );

    let small = Fixture::bulk(&root.path().join("small"), 10, 100);
    small.counter.sync_times.lock().clear();
    let cpu0 = cpu_time();
    let one = small.commits(1, 500 / scale.min(50));
    let one_cpu = (cpu_time() - cpu0) / one.latencies.0.len() as u32;
    let one_sync = Samples(std::mem::take(&mut *small.counter.sync_times.lock())).p50();
    // The baseline again, right after: the device's fdatasync time drifts within a run.
    let raw_after = raw_fdatasync(root.path(), (2_000 / scale) as usize);
    let raw_p50 = (raw.p50() + raw_after.p50()) / 2;
    println!(
        "durable commit, 1 writer, 1k keys: p50 {} ({:.2}x raw fdatasync p50 {}, the mean of {} before and {} after; target <= 1.3x), {:.0} commits/s, CPU per commit {}; the log's write + fdatasync p50 {} ({:.2}x raw), the rest is the commit's own work and two thread wake-ups",
        us(one.latencies.p50()),
        one.latencies.p50().as_secs_f64() / raw_p50.as_secs_f64(),
        us(raw_p50),
        us(raw.p50()),
        us(raw_after.p50()),
        one.rate(),
        us(one_cpu),
        us(one_sync),
        one_sync.as_secs_f64() / raw_p50.as_secs_f64()
    );
    let (w0, s0) = small.counter.read();
    let cpu0 = cpu_time();
    let sixteen = small.commits(16, 200 / scale.min(50));
    let sixteen_cpu = (cpu_time() - cpu0) / sixteen.latencies.0.len() as u32;
    let (w1, s1) = small.counter.read();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ceiling = cores as f64 / sixteen_cpu.as_secs_f64();
    println!(
        "durable commits, 16 writers on one branch, different keys: {:.0} commits/s = {:.1}x the 1-writer rate, {:.0}% of the CPU-bound ceiling ({cores} cores / {} CPU per commit = {:.0} commits/s; target >= 80% or >= 10x, whichever is lower); p50 {}; {:.1} writes per fdatasync",
        sixteen.rate(),
        sixteen.rate() / one.rate(),
        100.0 * sixteen.rate() / ceiling,
        us(sixteen_cpu),
        ceiling,
        us(sixteen.latencies.p50()),
        (w1 - w0) as f64 / (s1 - s0).max(1) as f64
    );

    let (namespaces, tables) = if full { (1_000, 1_000) } else { (10, 100) };
    let started = Instant::now();
    let big = Fixture::bulk(&root.path().join("big"), namespaces, tables);
    println!(
        "bulk-loaded {} keys in {:.1?}",
        namespaces * (tables + 1),
        started.elapsed()
    );
    let at_big = big.commits(1, 500 / scale.min(50));
    let at_small = small.commits(1, 500 / scale.min(50));
    println!(
        "durable commit p50 at {} keys {} vs at 1k keys {}: {:.2}x (target <= 1.1x)",
        namespaces * (tables + 1),
        us(at_big.latencies.p50()),
        us(at_small.latencies.p50()),
        at_big.latencies.p50().as_secs_f64() / at_small.latencies.p50().as_secs_f64()
    );

    let merge100 = small.merge_of(100, 20 / scale.min(20));
    println!(
        "merge of 100 keys: p50 {} (raw fdatasync p50 + 1 ms = {}; target below)",
        us(merge100.p50()),
        us(raw.p50() + Duration::from_millis(1))
    );
    let merge10k = small.merge_of(u128::from(10_000 / scale), 3);
    println!(
        "merge of {} changes in one namespace: p50 {} (target <= 100 ms)",
        10_000 / scale,
        us(merge10k.p50())
    );

    let size = small.backend.size_on_disk().unwrap();
    let commits = small.commits_made.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "space: the 1k-key store holds {commits} commits in {:.1} MiB on disk ({:.1} KiB per commit, fixture included)",
        size as f64 / 1_048_576.0,
        size as f64 / 1024.0 / commits as f64
    );
    let commits = 100_000 / scale;
    let (built, open, first, size) = recovery(&root.path().join("recovery"), commits);
    println!(
        "recovery after SIGKILL of a store with {commits} commits ({:.1} MiB on disk, built in {built:.1?}): open {open:.1?}, first answer (the head of main and a page of its keys) after {first:.1?} (target <= 2 s)",
        size as f64 / 1_048_576.0
    );
    println!("==========================================");
}

/// Builds a store of `commits` commits (bulk mode), lets a child process open it durably,
/// commit, and die by SIGKILL mid-stream, then times the reopening: sled's recovery, the
/// store's open, and the first answer a server would give.
fn recovery(dir: &Path, commits: u64) -> (Duration, Duration, Duration, u64) {
    let started = Instant::now();
    {
        let backend = Arc::new(SledBackend::open_bulk(dir).unwrap());
        let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
        let main = RefName::parse("main").unwrap();
        let ctx = WriteCtx::principal("fixture");
        let ns = ContentKey::new(["ns"]).unwrap();
        let create = Op::Put {
            key: ns.clone(),
            content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
            expect: Expect::Absent,
        };
        store
            .commit(
                &main,
                None,
                vec![create],
                CommitMeta::new("f", "ns", 0),
                &ctx,
            )
            .unwrap();
        for i in 0..commits {
            let t = u128::from(i % 1_000);
            let key = ns.child(&format!("t{t:03}")).unwrap();
            let expect = if i < 1_000 {
                Expect::Absent
            } else {
                Expect::Present
            };
            let op = Op::Put {
                key,
                content: table(10 + t, i),
                expect,
            };
            store
                .commit(&main, None, vec![op], CommitMeta::new("f", "c", 0), &ctx)
                .unwrap();
        }
        backend.flush().unwrap();
    }
    let built = started.elapsed();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("FLOE_BENCH_RECOVERY_CHILD", dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child says when it is committing; kill it a moment later.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    let backend = Arc::new(SledBackend::open(dir).unwrap());
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
    let open = start.elapsed();
    let main = store.get_ref(&RefName::parse("main").unwrap()).unwrap();
    let page = store.entries(main.head, None, None, 100).unwrap();
    assert!(!page.items.is_empty());
    let first = start.elapsed();
    (built, open, first, backend.size_on_disk().unwrap())
}

/// Bulk-loads `namespaces` x `tables` tables into a new store in `dir` and flushes it.
fn build_fixture(dir: &Path, namespaces: u128, tables: u128) {
    let backend = Arc::new(SledBackend::open_bulk(dir).unwrap());
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
    let contents = (0..namespaces).flat_map(move |n| {
        let ns = ContentKey::new([format!("ns{n:04}")]).unwrap();
        let children: Vec<(ContentKey, Content)> = (0..tables)
            .map(|t| {
                (
                    ns.child(&format!("t{t:04}")).unwrap(),
                    table(1_000_000 + n * tables + t, 0),
                )
            })
            .collect();
        std::iter::once((
            ns,
            Content::namespace(ContentId::from_u128(1 + n), BTreeMap::new()),
        ))
        .chain(children)
    });
    let main = RefName::parse("main").unwrap();
    store
        .bulk_load(
            &main,
            contents,
            CommitMeta::new("fixture", "load", 0),
            &WriteCtx::principal("fixture"),
        )
        .unwrap();
    backend.flush().unwrap();
}

/// The writer killed by `recovery`: commits durably until it dies.
fn recovery_child(dir: &Path) {
    let backend = Arc::new(SledBackend::open(dir).unwrap());
    let store = Store::open(backend, Arc::new(SystemClock)).unwrap();
    let main = RefName::parse("main").unwrap();
    let ctx = WriteCtx::principal("child");
    println!("committing");
    for i in 0u64.. {
        let key = ContentKey::new(["ns".to_owned(), format!("t{:03}", i % 1_000)]).unwrap();
        let op = Op::Put {
            key,
            content: table(10 + u128::from(i % 1_000), 1_000_000 + i),
            expect: Expect::Present,
        };
        store
            .commit(&main, None, vec![op], CommitMeta::new("c", "c", 0), &ctx)
            .unwrap();
    }
}

/// Latencies of one measurement.
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize]
    }
    fn p50(&self) -> Duration {
        self.pct(0.5)
    }
    fn p99(&self) -> Duration {
        self.pct(0.99)
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// CPU time of this process so far (every thread: writers, durability, checkpoint, sled).
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1_000);
    tv(usage.user_time()) + tv(usage.system_time())
}

fn raw_fdatasync(dir: &Path, n: usize) -> Samples {
    let path = dir.join("raw");
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len((n as u64 + 1) * 4096).unwrap();
    file.sync_all().unwrap();
    let block = vec![7u8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        out.push(start.elapsed());
    }
    Samples(out)
}

struct Run {
    latencies: Samples,
    elapsed: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.0.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Counts writes and syncs, to report how many writes one fdatasync covers, and times
/// each sync (from its start to its completion, on the durability thread).
#[derive(Debug, Default)]
struct SyncCounter {
    writes: std::sync::atomic::AtomicU64,
    syncs: std::sync::atomic::AtomicU64,
    started: parking_lot::Mutex<Option<Instant>>,
    sync_times: parking_lot::Mutex<Vec<Duration>>,
}

impl floe_commits::sled_store::DurabilityHook for SyncCounter {
    fn event(&self, event: floe_commits::sled_store::DurabilityEvent) {
        use floe_commits::sled_store::DurabilityEvent::*;
        match event {
            Written { .. } => self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            SyncStarted { .. } => {
                *self.started.lock() = Some(Instant::now());
                0
            }
            SyncCompleted { .. } => {
                if let Some(t) = self.started.lock().take() {
                    self.sync_times.lock().push(t.elapsed());
                }
                self.syncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }
            _ => 0,
        };
    }
}

impl SyncCounter {
    /// (writes, syncs) so far.
    fn read(&self) -> (u64, u64) {
        let o = std::sync::atomic::Ordering::Relaxed;
        (self.writes.load(o), self.syncs.load(o))
    }
}

struct Fixture {
    counter: Arc<SyncCounter>,
    backend: Arc<SledBackend>,
    store: Arc<Store>,
    tables: u128,
    namespaces: u128,
    next: std::sync::atomic::AtomicU64,
    commits_made: Arc<std::sync::atomic::AtomicU64>,
}

fn table(id: u128, version: u64) -> Content {
    Content {
        id: ContentId::from_u128(id),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!(
                "file:///warehouse/ns/t{id}/metadata/{version:05}.metadata.json"
            ),
            table_uuid: [(id % 251) as u8; 16],
            snapshot_id: version as i64,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

impl Fixture {
    /// A store with `namespaces` x `tables` tables, bulk-loaded by a child process, then
    /// opened durable here: measured as a server would run, in a process that did not just
    /// push a million objects through sled (which slows the next commits 15x).
    fn bulk(dir: &Path, namespaces: u128, tables: u128) -> Fixture {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env(
                "FLOE_BENCH_BUILD_CHILD",
                format!("{}|{namespaces}|{tables}", dir.display()),
            )
            .status()
            .unwrap();
        assert!(status.success(), "the fixture builder failed");
        let counter = Arc::new(SyncCounter::default());
        let backend = Arc::new(SledBackend::open_with(dir, Some(counter.clone())).unwrap());
        let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
        Fixture {
            counter,
            backend,
            store,
            tables,
            namespaces,
            next: std::sync::atomic::AtomicU64::new(1),
            commits_made: Arc::new(std::sync::atomic::AtomicU64::new(2)),
        }
    }

    /// `writers` threads, each committing `per_writer` modifications of its own tables
    /// on `main`, durably; every commit's latency.
    fn commits(&self, writers: u64, per_writer: u64) -> Run {
        let main = RefName::parse("main").unwrap();
        let started = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = self.store.clone();
                let main = main.clone();
                let version = self
                    .next
                    .fetch_add(per_writer, std::sync::atomic::Ordering::SeqCst);
                let (namespaces, tables) = (self.namespaces, self.tables);
                let made = self.commits_made.clone();
                std::thread::spawn(move || {
                    let mut out = Vec::with_capacity(per_writer as usize);
                    for i in 0..per_writer {
                        // Spread over the whole map: writer w owns every table t with t % 64 == w.
                        let slot =
                            (u128::from(w) + 64 * u128::from(i) * 7919) % (namespaces * tables);
                        let (n, t) = (slot / tables, slot % tables);
                        let key =
                            ContentKey::new([format!("ns{n:04}"), format!("t{t:04}")]).unwrap();
                        let op = Op::Put {
                            key,
                            content: table(1_000_000 + slot, version + i),
                            expect: Expect::Present,
                        };
                        let start = Instant::now();
                        store
                            .commit(
                                &main,
                                None,
                                vec![op],
                                CommitMeta::new("bench", "modify", 0),
                                &WriteCtx::principal("bench"),
                            )
                            .unwrap();
                        out.push(start.elapsed());
                        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    out
                })
            })
            .collect();
        let latencies: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        Run {
            latencies: Samples(latencies),
            elapsed: started.elapsed(),
        }
    }

    /// Durable merges of a branch that changed `changes` keys (new tables in one new
    /// namespace) into a `main` that also moved; the latency of each merge alone.
    fn merge_of(&self, changes: u128, rounds: u64) -> Samples {
        let ctx = WriteCtx::principal("bench");
        let main = RefName::parse("main").unwrap();
        let mut out = Vec::new();
        for round in 0..rounds {
            let v = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let branch = RefName::parse(&format!("merge-{changes}-{round}-{v}")).unwrap();
            let head = self.store.get_ref(&main).unwrap().head;
            self.store
                .create_ref(&branch, RefKind::Branch, head, &ctx)
                .unwrap();
            let ns = ContentKey::new([format!("m{changes}x{round}x{v}")]).unwrap();
            let mut ops = vec![Op::Put {
                key: ns.clone(),
                content: Content::namespace(
                    ContentId::from_u128(u128::from(v) << 64 | 1),
                    BTreeMap::new(),
                ),
                expect: Expect::Absent,
            }];
            for i in 0..changes.min(9_999) {
                ops.push(Op::Put {
                    key: ns.child(&format!("t{i:05}")).unwrap(),
                    content: table(u128::from(v) << 64 | (2 + i), 0),
                    expect: Expect::Absent,
                });
            }
            self.store
                .commit(
                    &branch,
                    None,
                    ops,
                    CommitMeta::new("bench", "load", 0),
                    &ctx,
                )
                .unwrap();
            // main diverges, so the merge is three-way.
            self.commits(1, 1);
            let source = self.store.get_ref(&branch).unwrap().head;
            let start = Instant::now();
            let outcome = self
                .store
                .merge(
                    source,
                    &main,
                    None,
                    &MergeOptions::default(),
                    &ConflictResolver,
                    &ctx,
                )
                .unwrap();
            out.push(start.elapsed());
            assert_eq!(outcome.kind, MergeKind::Merged);
            self.commits_made
                .fetch_add(3, std::sync::atomic::Ordering::SeqCst);
        }
        Samples(out)
    }
}
