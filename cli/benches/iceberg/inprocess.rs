//! The Iceberg bench's baselines without HTTP: durable floe commits in this process (one
//! thread, and 1 thread vs 16), and the metadata write alone (`Warehouse::write_new`, the
//! server's own code) by 1 thread vs 16, to show where a limit on commits comes from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use floe_catalog::Warehouse;
use floe_commits::{
    CommitMeta, Content, ContentId, ContentKey, Expect, Op, RefName, SledBackend, Store,
    SystemClock, WriteCtx,
};

use crate::support::cpu::ServerThreads;
use crate::support::{Row, Samples, us};

/// A durable commit of a new namespace `name` on `main`.
fn commit_namespace(store: &Store, i: u64, prefix: &str) {
    let op = Op::Put {
        key: ContentKey::new([format!("{prefix}{i}")]).expect("a key"),
        content: Content::namespace(
            ContentId::from_u128(1_000_000 + u128::from(i)),
            BTreeMap::new(),
        ),
        expect: Expect::Absent,
    };
    let main = RefName::parse("main").expect("main");
    store
        .commit(
            &main,
            None,
            vec![op],
            CommitMeta::new("bench", "ns", 0),
            &WriteCtx::principal("bench"),
        )
        .expect("an in-process commit");
}

fn open(dir: &Path) -> (Arc<SledBackend>, Store) {
    let backend = Arc::new(SledBackend::open(dir).expect("a durable store"));
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).expect("the store opens");
    (backend, store)
}

/// Durable floe commits (each creates a namespace) on a fresh sled store in this process.
pub fn commits(dir: &Path, commits: u64) -> (Row, Duration) {
    let (backend, store) = open(dir);
    let mut threads = ServerThreads::new(std::process::id());
    let before = threads.sample();
    let latency = Samples::new(
        (0..commits)
            .map(|i| {
                let start = Instant::now();
                commit_namespace(&store, i, "ns");
                start.elapsed()
            })
            .collect(),
    );
    let cpu = threads.sample().since(&before).per(commits);
    drop(store);
    drop(backend);
    let row = Row::new(
        "in-process durable floe commit (new namespace, fresh store, no HTTP): p50",
        format!("{} (p99 {})", us(latency.p50()), us(latency.p99())),
    )
    .note(format!(
        "{commits} commits; CPU per commit {}, of which the durability thread (log write + fdatasync) {}",
        us(cpu.total()),
        us(cpu.durability)
    ));
    (row, latency.p50())
}

/// A step run by 1 thread, then by 16.
struct Parallel {
    one: Samples,
    one_rate: f64,
    sixteen: Samples,
    sixteen_rate: f64,
}

/// `per` calls of `step(thread)` by 1 thread, then by 16 threads each.
fn parallel(per: u64, step: impl Fn(usize) + Sync) -> Parallel {
    let run = |threads: usize| {
        let barrier = Barrier::new(threads + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, step) = (&barrier, &step);
                    s.spawn(move || {
                        barrier.wait();
                        (0..per)
                            .map(|_| {
                                let start = Instant::now();
                                step(t);
                                start.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let all: Vec<Duration> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("a thread"))
                .collect();
            let rate = all.len() as f64 / start.elapsed().as_secs_f64();
            (Samples::new(all), rate)
        })
    };
    let (one, one_rate) = run(1);
    let (sixteen, sixteen_rate) = run(16);
    Parallel {
        one,
        one_rate,
        sixteen,
        sixteen_rate,
    }
}

/// 4c: the two durable steps of a commit alone, in this process, 1 thread vs 16: store
/// commits on one branch of a fresh store, and metadata writes of `size` bytes, each
/// thread into its own folder.
pub fn durable_steps(root: &Path, size: usize, per: u64) -> Row {
    let (backend, store) = open(&root.join("par-store"));
    let next = AtomicU64::new(0);
    let store_par = parallel(per, |_| {
        commit_namespace(&store, next.fetch_add(1, Ordering::Relaxed), "p");
    });
    drop(store);
    drop(backend);
    let warehouse = Warehouse::open(&root.join("par-warehouse")).expect("a warehouse");
    let payload = vec![b' '; size];
    let url = warehouse.root_url();
    let write_par = parallel(per, |t| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let location = format!("{url}/t{t:02}/metadata/{i:06}.metadata.json");
        warehouse
            .write_new(&location, &payload)
            .expect("a metadata write");
    });
    let x = |p: &Parallel| p.sixteen_rate / p.one_rate;
    Row::new(
        "4c. the durable steps alone in the bench process (no HTTP), 16 threads vs 1",
        format!(
            "store commits on one branch {:.2}x; metadata writes of {size} B {:.2}x",
            x(&store_par),
            x(&write_par)
        ),
    )
    .note(format!(
        "store commits: {:.0} vs {:.0}/s (p50 {} vs {}); metadata writes, one folder per thread: {:.0} vs {:.0}/s (p50 {} vs {})",
        store_par.sixteen_rate,
        store_par.one_rate,
        us(store_par.sixteen.p50()),
        us(store_par.one.p50()),
        write_par.sixteen_rate,
        write_par.one_rate,
        us(write_par.sixteen.p50()),
        us(write_par.one.p50())
    ))
}
