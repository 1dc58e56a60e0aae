//! PostgreSQL's ref reads for an async server (`Backend::read_refs_async`), on the test
//! cluster (`FLOE_TEST_PG`, which `.ci/run` sets; `source .ci/pg.sh && pg_up` by hand):
//! concurrent reads share statements, yet each sees every move that returned before it
//! began; a reader whose runtime went away leaves nothing stuck, nor a read left on a
//! current-thread runtime; a damaged record fails its reads, not the connection; a reader
//! whose connection the server cut reads over a new one, and one whose connections have
//! no lifetime still reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use floe_commits::*;

fn open() -> (Arc<PostgresBackend>, Store) {
    open_with(&PgOptions::for_test())
}

fn open_with(options: &PgOptions) -> (Arc<PostgresBackend>, Store) {
    let backend =
        Arc::new(PostgresBackend::open(options).expect("the test PostgreSQL is reachable"));
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).expect("a new store opens");
    (backend, store)
}

/// A connection of the test's own to the test cluster, driven on `runtime`.
fn administrator(runtime: &tokio::runtime::Runtime) -> tokio_postgres::Client {
    let (admin, connection) = runtime
        .block_on(tokio_postgres::connect(
            &std::env::var("FLOE_TEST_PG").unwrap(),
            tokio_postgres::NoTls,
        ))
        .expect("an administrator's connection");
    runtime.spawn(connection);
    admin
}

/// A runtime with worker threads (a server's kind).
fn workers(n: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .enable_all()
        .build()
        .unwrap()
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
    let runtime = workers(2);
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
        // Asked inside: led on the readers' runtime, on the same connection.
        let records = runtime
            .block_on(async {
                let read = store
                    .read_refs_async(vec![r("main"), r("absent")])
                    .expect("PostgreSQL reads refs without blocking");
                read.await
            })
            .expect("a read");
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
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        1,
        "the connection is kept across statements and leaders"
    );
}

/// The reader's leader runs on its caller's runtime when it has worker threads. When that
/// runtime shuts down under it, the reads it held are answered, with an error if need be,
/// and the next read, from another runtime, gets a new leader and a working connection.
/// A read asked on a current-thread runtime that then goes away is led on the backend's
/// runtime, and answered. (A leader dropped before it ever ran answers its reads with an
/// error: `ref_reads::tests`.)
#[test]
fn a_read_after_its_readers_runtime_went_away_is_answered() {
    let (backend, store) = open();
    let head = commit(&store, 1);
    let first = workers(1);
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
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let asked_on_current = current
        .block_on(async { Some(backend.read_refs_async(vec![r("main")]).unwrap()) })
        .unwrap();
    drop(current);
    let second = workers(1);
    second.block_on(async {
        // The orphaned read's leader is gone: it answers (an error, or a record read
        // before the runtime went) rather than hanging.
        let orphaned = tokio::time::timeout(Duration::from_secs(10), orphan).await;
        assert!(orphaned.is_ok(), "a read of a runtime that went away hangs");
        let records = tokio::time::timeout(Duration::from_secs(10), asked_on_current)
            .await
            .expect("a read asked on a current-thread runtime that went away is answered")
            .expect("led on the backend's runtime");
        assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
        let read = backend.read_refs_async(vec![r("main")]).unwrap();
        let records = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a read on a new runtime is answered")
            .expect("over a new connection");
        assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    });
}

/// A current-thread runtime runs its tasks only while something blocks on it: reads asked
/// there are led on the backend's own runtime, so a read left in flight when its
/// `block_on` returned (the runtime alive, no longer driven) holds up no other read, and
/// is answered itself. A leader on another runtime reads over a connection of its own.
#[test]
fn a_read_left_on_a_current_thread_runtime_holds_up_no_other() {
    let (backend, store) = open();
    let head = commit(&store, 1);
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = idle
        .block_on(async { backend.read_refs_async(vec![r("main")]).unwrap().await })
        .expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    let head = commit(&store, 2);
    // (In an Option: a future returned bare from an async block reads as one forgotten.)
    let left = idle
        .block_on(async {
            let read = backend.read_refs_async(vec![r("main")]).unwrap();
            tokio::task::yield_now().await;
            Some(read)
        })
        .unwrap();
    let other = workers(1);
    for _ in 0..3 {
        // Asked inside: led on `other`.
        let records = other
            .block_on(async {
                let read = backend.read_refs_async(vec![r("main")]).unwrap();
                tokio::time::timeout(Duration::from_secs(10), read).await
            })
            .expect("a read is answered while another runtime is not driven")
            .expect("a read");
        assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    }
    let records = other
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), left).await })
        .expect("the read left behind is answered")
        .expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    // `other`'s reads may all have joined statements of the backend's leader (the one
    // that answered `left`); one of them leads sooner or later, over a connection of
    // `other`'s own.
    let mut more = 0;
    while gauge(&backend, "floe_store_async_ref_connections_total") < 2 && more < 100 {
        other
            .block_on(async { backend.read_refs_async(vec![r("main")]).unwrap().await })
            .expect("a read");
        more += 1;
    }
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        2,
        "one connection for the backend's runtime, one for the other"
    );
    drop(idle);
}

/// A connection is closed at its lifetime, checked after a statement: with none at all,
/// every statement gets a new connection, and reads are still answered.
#[test]
fn a_reader_whose_connections_have_no_lifetime_still_answers() {
    let mut options = PgOptions::for_test();
    options.max_lifetime = Duration::ZERO;
    let (backend, store) = open_with(&options);
    let runtime = workers(2);
    for i in 1..=5 {
        let head = commit(&store, i);
        let read = backend.read_refs_async(vec![r("main")]).unwrap();
        let records = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), read).await })
            .expect("a read is answered")
            .expect("a read");
        assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    }
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        gauge(&backend, "floe_store_async_ref_statements_total"),
        "a connection per statement"
    );
}

/// A damaged record fails the reads of it, not the connection that read it: the reads
/// after it, once it is whole again, use the same connection.
#[test]
fn a_damaged_record_fails_its_reads_and_keeps_the_connection() {
    let options = PgOptions::for_test();
    let schema = options.schema.clone().unwrap();
    let (backend, store) = open_with(&options);
    let runtime = workers(1);
    let head = commit(&store, 1);
    let read =
        || runtime.block_on(async { backend.read_refs_async(vec![r("main")]).unwrap().await });
    let records = read().expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    let admin = administrator(&runtime);
    let table = format!("{schema}.floe_refs");
    let whole: Vec<u8> = runtime
        .block_on(admin.query_one(
            &format!("SELECT record FROM {table} WHERE name = 'main'"),
            &[],
        ))
        .expect("main's record")
        .get(0);
    let set = |record: &[u8]| {
        runtime
            .block_on(admin.execute(
                &format!("UPDATE {table} SET record = $1 WHERE name = 'main'"),
                &[&record],
            ))
            .expect("main's record is written")
    };
    set(&[0xff, 0x00]);
    let failed = read().expect_err("a read of a damaged record");
    assert!(failed.to_string().contains("damaged"), "{failed}");
    set(&whole);
    let records = read().expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        1,
        "the same connection throughout"
    );
}

/// The leader holds the reader's connection across statements. When the server ends that
/// connection (an administrator, a failover) between statements, the next read gets a new
/// one; when it ends it under a statement, the reads of that statement are answered with
/// an error (their callers then read where they may block), the connection is dropped, and
/// the reads after it get a new one and the current record.
#[test]
fn a_read_after_the_server_cut_the_readers_connection_gets_a_new_one() {
    let mut options = PgOptions::for_test();
    let name = format!("floe-cut-{}", std::process::id());
    options.url = if options.url.contains("://") {
        let join = if options.url.contains('?') { '&' } else { '?' };
        format!("{}{join}application_name={name}", options.url)
    } else {
        format!("{} application_name={name}", options.url)
    };
    let schema = options.schema.clone().unwrap();
    let (backend, store) = open_with(&options);
    let runtime = workers(2);
    let read = || {
        let read = backend.read_refs_async(vec![r("main")]).unwrap();
        runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("a ref read is answered")
        })
    };
    let answer = |read: tokio::task::JoinHandle<_>| runtime.block_on(read).unwrap();
    let head = commit(&store, 1);
    let records = answer(read()).expect("a read");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    let admin = administrator(&runtime);
    // The reader's connection is the one whose statement is the ref read.
    let cut = |waiting: bool| {
        runtime
            .block_on(admin.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND query LIKE 'SELECT name, record FROM floe_refs WHERE name =%' \
                 AND CASE WHEN $2 THEN wait_event_type = 'Lock' ELSE state = 'idle' END",
                &[&name, &waiting],
            ))
            .expect("the reader's connection is ended")
            .len()
    };
    // Between statements. The next leader polls the idle connection once before using
    // it; if the server's goodbye has not reached this process's reactor yet, that read
    // fails, and the one after it may not.
    let made = gauge(&backend, "floe_store_async_ref_connections_total");
    assert_eq!(cut(false), 1, "one reader connection");
    let head = commit(&store, 2);
    let records = answer(read())
        .or_else(|_| answer(read()))
        .expect("a read over a new connection");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        made + 1
    );
    // Under a statement: the table is locked, the reader's statement waits for it, and
    // its connection is ended while it waits.
    runtime
        .block_on(admin.batch_execute(&format!(
            "SET lock_timeout = '10s'; BEGIN; LOCK TABLE {schema}.floe_refs IN ACCESS EXCLUSIVE MODE"
        )))
        .expect("the refs are locked");
    let stuck = read();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ended = 0;
    while ended == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never waited for the lock"
        );
        ended = cut(true);
    }
    // Ended by the cut, not by the statement's own timeout (2 s).
    let failed = answer(stuck).expect_err("a read whose statement was cut");
    assert!(failed.to_string().contains("administrator"), "{failed}");
    runtime
        .block_on(admin.batch_execute("ROLLBACK"))
        .expect("the refs are unlocked");
    let head = commit(&store, 3);
    let records = answer(read()).expect("a read over a new connection");
    assert_eq!(records[0].as_ref().map(|rec| rec.head), Some(head));
    assert_eq!(
        gauge(&backend, "floe_store_async_ref_connections_total"),
        made + 2
    );
}
