//! PostgreSQL's ref reads for an async server (`Backend::read_refs_async`), on the test
//! cluster (`FLOE_TEST_PG`, which `.ci/run` sets; `source .ci/pg.sh && pg_up` by hand):
//! concurrent reads share statements, yet each sees every move that returned before it
//! began; a reader whose runtime went away leaves nothing stuck.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use floe_commits::*;

fn open() -> (Arc<PostgresBackend>, Store) {
    let backend = Arc::new(
        PostgresBackend::open(&PgOptions::for_test()).expect("the test PostgreSQL is reachable"),
    );
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).expect("a new store opens");
    (backend, store)
}

fn r(name: &str) -> RefName {
    RefName::parse(name).unwrap()
}

fn gauge(backend: &PostgresBackend, name: &str) -> u64 {
    backend
        .gauges()
        .into_iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no gauge {name}"))
        .value as u64
}

/// A commit on `main` adding namespace `n{i}`; its head.
fn commit(store: &Store, i: u128) -> Hash {
    let op = Op::Put {
        key: ContentKey::new([format!("n{i}")]).unwrap(),
        content: Content::namespace(ContentId::from_u128(i), BTreeMap::new()),
        expect: Expect::Absent,
    };
    store
        .commit(
            &r("main"),
            None,
            vec![op],
            CommitMeta::new("t", "a commit", 0),
            &WriteCtx::principal("t"),
        )
        .expect("the commit lands")
        .commit
}

/// Readers keep statements in flight while the test commits and reads: each read after a
/// commit returned names that commit (a read never joins a statement sent before it
/// queued), an absent ref reads as absent, and the readers shared statements.
#[test]
fn concurrent_reads_share_statements_and_each_sees_what_returned_before_it() {
    let (backend, store) = open();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (backend, stop) = (backend.clone(), stop.clone());
            runtime.spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let read = backend.read_refs_async(vec![r("main")]).expect("a path");
                    let records = read.await.expect("a read");
                    assert!(records[0].is_some(), "main exists");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 1..=150u128 {
        let head = commit(&store, i);
        let read = store
            .read_refs_async(vec![r("main"), r("absent")])
            .expect("PostgreSQL reads refs without blocking");
        let records = runtime.block_on(read).expect("a read");
        assert_eq!(
            records[0].as_ref().map(|rec| rec.head),
            Some(head),
            "read {i} began after its commit returned, and saw an older head"
        );
        assert_eq!(records[1], None);
    }
    stop.store(true, Ordering::Relaxed);
    let background: u64 = runtime.block_on(async {
        let mut n = 0;
        for reader in readers {
            n += reader.await.expect("a reader");
        }
        n
    });
    let (reads, statements) = (
        gauge(&backend, "floe_store_async_ref_reads_total"),
        gauge(&backend, "floe_store_async_ref_statements_total"),
    );
    assert_eq!(reads, background + 150, "every read is counted");
    assert!(
        statements < reads,
        "concurrent reads share statements: {statements} statements for {reads} reads"
    );
}

/// The reader's leader runs on its caller's runtime. When that runtime shuts down under
/// it (while it runs, or before it ever ran), the reads it held are answered, with an
/// error if need be, and the next read, from another runtime, gets a new leader and a
/// working connection.
#[test]
fn a_read_after_its_readers_runtime_went_away_is_answered() {
    let (backend, store) = open();
    let head = commit(&store, 1);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A read that gets its answer (the connection is made on this runtime), then one in
    // flight when the runtime goes.
    // (Asked inside: a read asked outside any runtime is led on the backend's own, which
    // could still be leading, and so answer, the reads below.)
    let records = first
        .block_on(async { backend.read_refs_async(vec![r("main")]).unwrap().await })
        .expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    // (In an Option: a future returned bare from an async block reads as one forgotten.)
    let orphan = first
        .block_on(async {
            let read = backend.read_refs_async(vec![r("main")]).unwrap();
            tokio::task::yield_now().await;
            Some(read)
        })
        .unwrap();
    drop(first);
    // A leader whose runtime goes before it ever ran.
    let unpolled = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let never_led = unpolled
        .block_on(async { Some(backend.read_refs_async(vec![r("main")]).unwrap()) })
        .unwrap();
    drop(unpolled);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        // The orphaned read's leader is gone: it answers (an error, or a record read
        // before the runtime went) rather than hanging.
        let orphaned = tokio::time::timeout(Duration::from_secs(10), orphan).await;
        assert!(orphaned.is_ok(), "a read of a runtime that went away hangs");
        let never = tokio::time::timeout(Duration::from_secs(10), never_led).await;
        assert!(
            matches!(never, Ok(Err(_))),
            "a read whose leader never ran is answered with an error"
        );
        let read = backend.read_refs_async(vec![r("main")]).unwrap();
        let records = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a read on a new runtime is answered")
            .expect("over a new connection");
        assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    });
}
