//! Benchmarks of floe's own API over HTTP (issue 5): a real `floe serve` child process on
//! a fresh data folder, driven by blocking `ureq` clients with keep-alive (one agent per
//! client thread), every figure against a baseline measured in the same run (raw
//! `fdatasync`, the same load against a trivial axum handler, the same sizes side by
//! side). A plain harness (not criterion): the figures are percentiles and rates of real
//! fsyncs and real sockets, which criterion's model does not fit.
//!
//! `cargo bench -p floe --bench api` runs at full scale and prints one line per figure,
//! then a table with every target and its verdict. `FLOE_BENCH_SCALE=10` divides every
//! count by 10 for a quick run (not for the record); `cargo test --benches` (no `--bench`
//! argument) runs at 1/100. `FLOE_BENCH_DIR` chooses where the data folders are made
//! (default `std::env::temp_dir()`). Every response's status is checked: a request
//! answered with anything but the expected status stops the run with the answer.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{
    Client, CpuMeter, Report, Samples, Server, cpu_time, encode, machine_notes, ratio, run_clients,
    us,
};

use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use floe_commits::{
    CommitMeta, Content, ContentId, ContentKey, Expect, Op, Payload, RefKind, RefName, SledBackend,
    Store, SystemClock, TablePayload, WriteCtx,
};

fn main() {
    let div = support::scale_divisor();
    let n = |full: u64, min: u64| (full / div).max(min);
    let root = tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .expect("a folder for the stores");
    let mut report = Report::default();
    println!(
        "==== floe API over HTTP (issue 5): {} ====",
        if div == 1 {
            "full scale".to_owned()
        } else {
            format!("counts divided by {div} (NOT for the record)")
        }
    );
    machine_notes(root.path());

    // ---- baselines that need no server -------------------------------------------------
    let me = std::process::id();
    let cpu0 = cpu_time(me);
    let raw = raw_fdatasync(root.path(), n(2_000, 20) as usize);
    let raw_cpu = (cpu_time(me) - cpu0) / raw.len() as u32;
    println!(
        "raw fdatasync (4 KiB append + fdatasync, {} times): p50 {} p95 {} p99 {}; CPU per call {}",
        raw.len(),
        us(raw.p50()),
        us(raw.p95()),
        us(raw.p99()),
        us(raw_cpu)
    );
    report.info(
        "raw fdatasync p50 (baseline)",
        &format!(
            "{} (p99 {}); CPU per call (user + system) {}",
            us(raw.p50()),
            us(raw.p99()),
            us(raw_cpu)
        ),
    );

    let inproc = in_process(
        &root.path().join("inproc"),
        n(1_000, 20),
        n(200, 10),
        n(100_000, 1_000),
    );
    let [sync1, sync4, sync64] = &inproc.syncs;
    println!(
        "in-process durable store (no HTTP): serial create_ref p50 {} p95 {} p99 {} ({:.1} writes per sync, sync p50 {}); 4 threads p50 {} p95 {} ({:.1} writes per sync, sync p50 {}); 64 threads, {} refs: {:.0} creates/s ({:.1} writes per sync, sync p50 {}); serial commit (new namespace) p50 {}",
        us(inproc.serial.p50()),
        us(inproc.serial.p95()),
        us(inproc.serial.p99()),
        inproc.serial_wps,
        us(sync1.p50()),
        us(inproc.four.p50()),
        us(inproc.four.p95()),
        inproc.four_wps,
        us(sync4.p50()),
        inproc.many,
        inproc.many_rate,
        inproc.many_wps,
        us(sync64.p50()),
        us(inproc.commit.p50()),
    );
    report.info(
        "in-process `Store::create_ref` on durable sled, serial (no HTTP)",
        &format!(
            "p50 {} p95 {} p99 {}; one group's sled flush + fdatasync p50 {} (p95 {}); CPU per create {}",
            us(inproc.serial.p50()),
            us(inproc.serial.p95()),
            us(inproc.serial.p99()),
            us(sync1.p50()),
            us(sync1.p95()),
            us(inproc.serial_cpu)
        ),
    );
    report.info(
        "in-process `Store::create_ref`, 4 threads (no HTTP)",
        &format!(
            "p50 {} p95 {} = **{:.2}x the serial p95**; {:.1} writes per sync; sync p50 {} (p95 {})",
            us(inproc.four.p50()),
            us(inproc.four.p95()),
            ratio(inproc.four.p95(), inproc.serial.p95()),
            inproc.four_wps,
            us(sync4.p50()),
            us(sync4.p95())
        ),
    );
    report.info(
        &format!(
            "in-process `Store::create_ref`, 64 threads, {} refs (no HTTP)",
            inproc.many
        ),
        &format!(
            "{:.0} creates/s; {:.1} writes per sync; sync p50 {}; CPU per create {}",
            inproc.many_rate,
            inproc.many_wps,
            us(sync64.p50()),
            us(inproc.many_cpu)
        ),
    );
    report.info(
        "in-process durable commit (create a namespace), serial (no HTTP)",
        &format!("p50 {}", us(inproc.commit.p50())),
    );

    // ---- fixtures, built in bulk mode before the server opens the folder --------------
    let data_dir = root.path().join("data");
    let tables = u128::from(n(10_000, 100));
    let history = n(100_000, 1_000);
    let built = build_fixtures(&data_dir.join("catalog"), tables, history);
    println!(
        "fixtures (bulk-mode sled, no fsync): branches with 8 and {tables} tables bulk-loaded in {:.1?}; {history} commits on `history` through Store::commit in {:.1?} ({:.0} commits/s)",
        built.tables,
        built.history,
        history as f64 / built.history.as_secs_f64()
    );
    report.info(
        &format!("fixture: {history} real commits on one branch (`Store::commit`, bulk-mode sled)"),
        &format!(
            "{:.1?} = {:.0} commits/s",
            built.history,
            history as f64 / built.history.as_secs_f64()
        ),
    );
    // Refs that exist before the benchmark creates any: main and the three fixtures.
    let mut refs_made: u64 = 4;

    let server = Server::start(&data_dir, &root.path().join("serve.stderr"), &[]);
    println!("server: {}", server.base);
    let base = server.base.clone();
    let pid = Some(server.child.id());
    let warm = Client::new(&base);
    for _ in 0..20 {
        warm.get("/health", 200);
        warm.get("/api/v1/refs/main", 200);
    }

    // ---- 1. serial branch creation -----------------------------------------------------
    let serial_n = n(1_000, 20);
    let m0 = warm.route_time("/api/v1/refs", "POST");
    let cpu = CpuMeter::start(pid);
    let serial = {
        let mut out = Vec::with_capacity(serial_n as usize);
        for i in 0..serial_n {
            let body = create_body(&format!("serial-{i}"), "main");
            let start = Instant::now();
            warm.post("/api/v1/refs", &body, 201);
            out.push(start.elapsed());
        }
        Samples::new(out)
    };
    refs_made += serial_n;
    let serial_cpu = cpu.per_request(serial_n);
    let m1 = warm.route_time("/api/v1/refs", "POST");
    let serial_server_mean = m1.mean_since(&m0);
    let bound1 = raw.p50().mul_f64(1.5) + Duration::from_millis(1);
    println!(
        "1. branch create over HTTP, serial, {serial_n}: p50 {} p95 {} p99 {} ({:.2}x raw fdatasync p50; target p50 <= 1.5x raw + 1 ms = {}); server-side mean {} (in-process create_ref p50 {}); {serial_cpu}",
        us(serial.p50()),
        us(serial.p95()),
        us(serial.p99()),
        ratio(serial.p50(), raw.p50()),
        us(bound1),
        us(serial_server_mean),
        us(inproc.serial.p50())
    );
    report.row(
        &format!("1. branch create, serial, {serial_n} branches: p50"),
        &format!("<= 1.5x raw fdatasync p50 + 1 ms = {}", us(bound1)),
        &format!(
            "**{}** = {:.2}x raw p50 (p95 {}, p99 {}); server-side mean {}",
            us(serial.p50()),
            ratio(serial.p50(), raw.p50()),
            us(serial.p95()),
            us(serial.p99()),
            us(serial_server_mean)
        ),
        serial.p50() <= bound1,
    );

    // ---- 2. four parallel clients ------------------------------------------------------
    let four_n = n(1_000, 20);
    let m0 = warm.route_time("/api/v1/refs", "POST");
    let cpu = CpuMeter::start(pid);
    let four = run_clients(&base, 4, four_n, |c, i| {
        c.post(
            "/api/v1/refs",
            &create_body(&format!("four-{i}"), "main"),
            201,
        );
    });
    refs_made += four_n;
    let four_cpu = cpu.per_request(four_n);
    let four_server_mean = warm.route_time("/api/v1/refs", "POST").mean_since(&m0);
    println!(
        "2. branch create over HTTP, 4 clients, {four_n}: p50 {} p95 {} p99 {}, {:.0} creates/s; p95 {:.2}x the serial p95 (target <= 2x); server-side mean {}; {four_cpu}",
        us(four.latencies.p50()),
        us(four.latencies.p95()),
        us(four.latencies.p99()),
        four.rate(),
        ratio(four.latencies.p95(), serial.p95()),
        us(four_server_mean)
    );
    report.row(
        "2. branch create, 4 parallel clients: p95 vs serial p95",
        "<= 2x",
        &format!(
            "**{:.2}x** (p95 {} vs {}; p50 {}, {:.0} creates/s)",
            ratio(four.latencies.p95(), serial.p95()),
            us(four.latencies.p95()),
            us(serial.p95()),
            us(four.latencies.p50()),
            four.rate()
        ),
        four.latencies.p95().as_secs_f64() <= 2.0 * serial.p95().as_secs_f64(),
    );
    report.info(
        "where figures 1 and 2 spend it",
        &format!(
            "server-side mean (floe's own histogram: handler, blocking task, store) {} serial, {} with 4 clients; serial: {serial_cpu}; 4 clients: {four_cpu}",
            us(serial_server_mean),
            us(four_server_mean)
        ),
    );

    // The same shape without a write: HTTP and the two cores alone, serial vs 4 clients.
    let reads_n = n(2_000, 50);
    let reads1 = run_clients(&base, 1, reads_n, |c, _| {
        c.get("/api/v1/refs/main", 200);
    });
    let reads4 = run_clients(&base, 4, reads_n, |c, _| {
        c.get("/api/v1/refs/main", 200);
    });
    println!(
        "   reads (GET /api/v1/refs/main), serial vs 4 clients: p50 {} vs {}, p95 {} vs {} = {:.2}x",
        us(reads1.latencies.p50()),
        us(reads4.latencies.p50()),
        us(reads1.latencies.p95()),
        us(reads4.latencies.p95()),
        ratio(reads4.latencies.p95(), reads1.latencies.p95())
    );
    report.info(
        "no write, same shape: `GET /refs/main`, 4 clients vs serial",
        &format!(
            "p95 {} vs {} = {:.2}x (p50 {} vs {})",
            us(reads4.latencies.p95()),
            us(reads1.latencies.p95()),
            ratio(reads4.latencies.p95(), reads1.latencies.p95()),
            us(reads4.latencies.p50()),
            us(reads1.latencies.p50())
        ),
    );

    // ---- 3. creating from a big ref as from a small one (alternating blocks) -----------
    let blocks = 50u64;
    let per_block = n(1_000, 50).div_ceil(blocks);
    let (mut big, mut small) = (Vec::new(), Vec::new());
    for b in 0..blocks {
        for (from, out) in [("tables-big", &mut big), ("tables-small", &mut small)] {
            for i in 0..per_block {
                let body = create_body(&format!("from-{from}-{b}-{i}"), from);
                let start = Instant::now();
                warm.post("/api/v1/refs", &body, 201);
                out.push(start.elapsed());
            }
        }
    }
    refs_made += 2 * blocks * per_block;
    let (big, small) = (Samples::new(big), Samples::new(small));
    let r3 = ratio(big.p50(), small.p50());
    println!(
        "3. branch create from a ref with {tables} tables vs with 8, {} each in {blocks} alternating blocks: p50 {} vs {} = {r3:.2}x (target <= 1.2x); p95 {} vs {}; mean {} vs {}",
        big.len(),
        us(big.p50()),
        us(small.p50()),
        us(big.p95()),
        us(small.p95()),
        us(big.mean()),
        us(small.mean())
    );
    report.row(
        &format!("3. branch create from a ref holding {tables} tables vs 8 tables: p50 ratio"),
        "<= 1.2x",
        &format!(
            "**{r3:.2}x** ({} vs {}; p95 {} vs {})",
            us(big.p50()),
            us(small.p50()),
            us(big.p95()),
            us(small.p95())
        ),
        r3 <= 1.2,
    );

    // ---- 5. a page of log from a long history ------------------------------------------
    let log_n = n(2_000, 50);
    let log_path = "/api/v1/trees/history/log?pageSize=10";
    for _ in 0..10 {
        check_log(&warm.get(log_path, 200));
    }
    let m0 = warm.route_time("/api/v1/trees/{ref}/log", "GET");
    let log = {
        let mut out = Vec::with_capacity(log_n as usize);
        for _ in 0..log_n {
            let start = Instant::now();
            let body = warm.get(log_path, 200);
            out.push(start.elapsed());
            check_log(&body);
        }
        Samples::new(out)
    };
    let log_server_mean = warm
        .route_time("/api/v1/trees/{ref}/log", "GET")
        .mean_since(&m0);
    println!(
        "5. log of 10 from a branch with {history} commits, {log_n} requests: p50 {} p99 {} (target p50 <= 2 ms); server-side mean {}",
        us(log.p50()),
        us(log.p99()),
        us(log_server_mean)
    );
    report.row(
        &format!("5. `GET /trees/history/log?pageSize=10`, {history} commits of history: p50"),
        "<= 2 ms",
        &format!(
            "**{}** (p99 {}); server-side mean {}",
            us(log.p50()),
            us(log.p99()),
            us(log_server_mean)
        ),
        log.p50() <= Duration::from_millis(2),
    );

    // A durable commit over HTTP, for the record (no target).
    let ns_n = n(200, 10);
    let ns = {
        let mut out = Vec::with_capacity(ns_n as usize);
        for i in 0..ns_n {
            let body = format!(r#"{{"namespace":["bench{i}"]}}"#);
            let start = Instant::now();
            warm.post("/api/v1/trees/main/namespaces", &body, 201);
            out.push(start.elapsed());
        }
        Samples::new(out)
    };
    println!(
        "durable commit over HTTP (POST namespaces), serial, {ns_n}: p50 {} p99 {} (in-process commit p50 {})",
        us(ns.p50()),
        us(ns.p99()),
        us(inproc.commit.p50())
    );
    report.info(
        "durable commit over HTTP (`POST /trees/main/namespaces`), serial",
        &format!("p50 {} (p99 {})", us(ns.p50()), us(ns.p99())),
    );

    // ---- 4. many branches by many clients, against a trivial handler -------------------
    let many = n(100_000, 1_000);
    let clients = 64;
    let (trivial_rt, trivial_base) = trivial_server();
    let cpu = CpuMeter::start(None);
    let trivial = run_clients(&trivial_base, clients, many, |c, i| {
        c.post("/x", &create_body(&format!("many-{i}"), "main"), 201);
    });
    let trivial_cpu = cpu.per_request(many);
    trivial_rt.shutdown_background();
    let m0 = warm.route_time("/api/v1/refs", "POST");
    let cpu = CpuMeter::start(pid);
    let floe = run_clients(&base, clients, many, |c, i| {
        c.post(
            "/api/v1/refs",
            &create_body(&format!("many-{i}"), "main"),
            201,
        );
    });
    refs_made += many;
    let floe_cpu = cpu.per_request(many);
    let many_server_mean = warm.route_time("/api/v1/refs", "POST").mean_since(&m0);
    let share = floe.rate() / trivial.rate();
    println!(
        "4a. {many} branches by {clients} clients: {:.0} creates/s (target >= 5,000/s), p50 {} p99 {}, server-side mean {}; trivial axum handler, same load: {:.0} requests/s (p50 {}); floe = {:.1}% of it (target >= 20%); floe: {floe_cpu}; trivial (server in the bench process): {trivial_cpu}",
        floe.rate(),
        us(floe.latencies.p50()),
        us(floe.latencies.p99()),
        us(many_server_mean),
        trivial.rate(),
        us(trivial.latencies.p50()),
        100.0 * share
    );
    report.row(
        &format!("4a. {many} branches created by {clients} parallel clients"),
        ">= 5,000 creates/s",
        &format!(
            "**{:.0} creates/s** in {:.1?} (p50 {}, p99 {}; server-side mean {})",
            floe.rate(),
            floe.elapsed,
            us(floe.latencies.p50()),
            us(floe.latencies.p99()),
            us(many_server_mean)
        ),
        floe.rate() >= 5_000.0,
    );
    report.row(
        &format!(
            "4b. the same vs a trivial axum handler (`POST /x` -> 201), {clients} connections"
        ),
        ">= 20% of the trivial rate",
        &format!(
            "**{:.1}%** ({:.0} vs {:.0} requests/s; trivial p50 {})",
            100.0 * share,
            floe.rate(),
            trivial.rate(),
            us(trivial.latencies.p50())
        ),
        share >= 0.2,
    );
    report.info(
        "where figure 4 spends it",
        &format!(
            "floe: {floe_cpu}; trivial handler (its server runs in the bench process): {trivial_cpu}"
        ),
    );

    // ---- 4c. list every ref, a page of 1,000 at a time ---------------------------------
    let mut listings = Vec::new();
    for _ in 0..3 {
        let (count, elapsed, pages) = list_all(&warm);
        assert_eq!(count, refs_made, "the listing shows every ref once");
        listings.push((elapsed, pages));
    }
    listings.sort();
    let (list_time, pages) = listings[listings.len() / 2];
    let list_rate = refs_made as f64 / list_time.as_secs_f64();
    println!(
        "4c. list all {refs_made} refs, pageSize=1000, following nextPageToken ({pages} pages): median of 3 {:.1?} = {:.0} refs/s (target >= 200,000/s); all three: {}",
        list_time,
        list_rate,
        listings
            .iter()
            .map(|(t, _)| format!("{t:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    report.row(
        &format!("4c. list all {refs_made} refs over HTTP, pageSize=1000 ({pages} pages)"),
        ">= 200,000 refs/s",
        &format!(
            "**{list_rate:.0} refs/s** ({list_time:.1?}, median of 3; {:.1} ms per page)",
            list_time.as_secs_f64() * 1e3 / pages as f64
        ),
        list_rate >= 200_000.0,
    );

    let stderr = server.stop();
    if !stderr.trim().is_empty() {
        println!("floe serve wrote to stderr:\n{stderr}");
    }
    report.print(div);
}

// ---- the server under test -------------------------------------------------------------

/// An in-process axum server on its own tokio runtime that answers `POST /x` with 201
/// and a tiny JSON body: what the load generator and HTTP stack cost by themselves.
fn trivial_server() -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a free port");
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/x",
        axum::routing::post(|_body: axum::body::Bytes| async {
            (
                axum::http::StatusCode::CREATED,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"ok":true}"#,
            )
        }),
    );
    runtime.spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the trivial server runs");
    });
    (runtime, format!("http://{addr}"))
}

// ---- CPU accounting ----------------------------------------------------------------------

// ---- the client -------------------------------------------------------------------------

fn create_body(name: &str, from: &str) -> String {
    format!(r#"{{"name":"{name}","from":"{from}"}}"#)
}

fn check_log(body: &str) {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON log");
    let commits = v["commits"].as_array().expect("a commits array");
    assert_eq!(commits.len(), 10, "a page of 10 commits: {body}");
    assert!(v["head"].is_string(), "{body}");
}

/// Lists every ref, following `nextPageToken`: (refs, time, pages). Checks that no ref
/// shows twice.
fn list_all(client: &Client) -> (u64, Duration, u64) {
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let start = Instant::now();
    loop {
        let path = match &token {
            Some(t) => format!("/api/v1/refs?pageSize=1000&pageToken={}", encode(t)),
            None => "/api/v1/refs?pageSize=1000".to_owned(),
        };
        let body = client.get(&path, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON page of refs");
        pages += 1;
        for r in v["refs"].as_array().expect("a refs array") {
            let name = r["name"].as_str().expect("a ref name").to_owned();
            assert!(seen.insert(name), "a ref listed twice");
        }
        match v["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    (seen.len() as u64, start.elapsed(), pages)
}

// ---- fixtures and in-process baselines -------------------------------------------------

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

struct Built {
    tables: Duration,
    history: Duration,
}

/// Builds, in bulk mode, `tables-small` (8 tables), `tables-big` (`tables` tables) and
/// `history` (`commits` commits of one table change each), flushes, and closes the store
/// so that `floe serve` can open the folder.
fn build_fixtures(dir: &Path, tables: u128, commits: u64) -> Built {
    let backend = Arc::new(SledBackend::open_bulk(dir).expect("a bulk-mode store"));
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).expect("the store opens");
    let ctx = WriteCtx::principal("bench");
    let main = store.get_ref(&RefName::parse("main").unwrap()).unwrap();
    let ns = ContentKey::new(["ns"]).unwrap();
    let start = Instant::now();
    for (name, count) in [("tables-small", 8u128), ("tables-big", tables)] {
        let branch = RefName::parse(name).unwrap();
        store
            .create_ref(&branch, RefKind::Branch, main.head, &ctx)
            .unwrap();
        let contents = std::iter::once((
            ns.clone(),
            Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
        ))
        .chain((0..count).map(|i| (ns.child(&format!("t{i:05}")).unwrap(), table(100 + i, 0))));
        store
            .bulk_load(&branch, contents, CommitMeta::new("bench", "load", 0), &ctx)
            .unwrap();
    }
    let tables_time = start.elapsed();

    let start = Instant::now();
    let history = RefName::parse("history").unwrap();
    store
        .create_ref(&history, RefKind::Branch, main.head, &ctx)
        .unwrap();
    let create_ns = Op::Put {
        key: ns.clone(),
        content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
        expect: Expect::Absent,
    };
    store
        .commit(
            &history,
            None,
            vec![create_ns],
            CommitMeta::new("bench", "ns", 0),
            &ctx,
        )
        .unwrap();
    for i in 0..commits {
        let t = u128::from(i % 1_000);
        let op = Op::Put {
            key: ns.child(&format!("t{t:03}")).unwrap(),
            content: table(100 + t, i),
            expect: if i < 1_000 {
                Expect::Absent
            } else {
                Expect::Present
            },
        };
        store
            .commit(
                &history,
                None,
                vec![op],
                CommitMeta::new("bench", "c", 0),
                &ctx,
            )
            .unwrap();
    }
    backend.flush().expect("the fixture is flushed");
    let history_time = start.elapsed();
    drop(store);
    drop(backend);
    Built {
        tables: tables_time,
        history: history_time,
    }
}

struct InProcess {
    serial: Samples,
    /// CPU (user + system, every thread of this process) per create, serial and 64 threads.
    serial_cpu: Duration,
    many_cpu: Duration,
    serial_wps: f64,
    four: Samples,
    four_wps: f64,
    many: u64,
    many_rate: f64,
    many_wps: f64,
    commit: Samples,
    /// How long one group's sled flush + fdatasync took (durability thread), in the
    /// serial, 4-thread and 64-thread runs.
    syncs: [Samples; 3],
}

/// Counts writes and syncs and times each sync, to report how many writes one
/// fdatasync covers and what a sync costs.
#[derive(Debug, Default)]
struct SyncCounter {
    writes: AtomicU64,
    syncs: AtomicU64,
    started: Mutex<Option<Instant>>,
    durations: Mutex<Vec<Duration>>,
}

impl DurabilityHook for SyncCounter {
    fn event(&self, event: DurabilityEvent) {
        match event {
            DurabilityEvent::Written { .. } => {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            DurabilityEvent::SyncStarted { .. } => {
                *self.started.lock().unwrap() = Some(Instant::now());
            }
            DurabilityEvent::SyncCompleted { .. } => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                if let Some(start) = self.started.lock().unwrap().take() {
                    self.durations.lock().unwrap().push(start.elapsed());
                }
            }
            DurabilityEvent::Acknowledged { .. } | DurabilityEvent::Waiting { .. } => {}
        }
    }
}

impl SyncCounter {
    /// (writes, syncs) so far.
    fn read(&self) -> (u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
        )
    }
    /// Writes per sync since `before`.
    fn per_sync(&self, before: (u64, u64)) -> f64 {
        let (w, s) = self.read();
        (w - before.0) as f64 / (s - before.1).max(1) as f64
    }
    /// The sync durations recorded since the first `from`.
    fn syncs_since(&self, from: usize) -> Samples {
        Samples::new(self.durations.lock().unwrap()[from..].to_vec())
    }
    fn syncs_so_far(&self) -> usize {
        self.durations.lock().unwrap().len()
    }
}

/// The same work as figures 1, 2 and 4 straight on a durable sled store in this process:
/// what the store costs without HTTP.
fn in_process(dir: &Path, serial: u64, commits: u64, many: u64) -> InProcess {
    let counter = Arc::new(SyncCounter::default());
    let backend =
        Arc::new(SledBackend::open_with(dir, Some(counter.clone())).expect("a durable store"));
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let main = RefName::parse("main").unwrap();
    let head = store.get_ref(&main).unwrap().head;
    let ctx = WriteCtx::principal("bench");
    let create = |name: String| {
        let start = Instant::now();
        store
            .create_ref(&RefName::parse(&name).unwrap(), RefKind::Branch, head, &ctx)
            .unwrap();
        start.elapsed()
    };
    let threads = |n: u64, total: u64, prefix: &str| -> (Vec<Duration>, Duration) {
        let next = AtomicU64::new(0);
        let start = Instant::now();
        let all = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                break out;
                            }
                            out.push(create(format!("{prefix}-{i}")));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        (all, start.elapsed())
    };
    let me = std::process::id();
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let cpu0 = cpu_time(me);
    let serial_samples = Samples::new((0..serial).map(|i| create(format!("s-{i}"))).collect());
    let serial_cpu = (cpu_time(me) - cpu0) / serial as u32;
    let serial_wps = counter.per_sync(before);
    let serial_syncs = counter.syncs_since(at);
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let (four, _) = threads(4, serial, "four");
    let four_wps = counter.per_sync(before);
    let four_syncs = counter.syncs_since(at);
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let cpu0 = cpu_time(me);
    let (_, many_time) = threads(64, many, "many");
    let many_cpu = (cpu_time(me) - cpu0) / many as u32;
    let many_wps = counter.per_sync(before);
    let many_syncs = counter.syncs_since(at);
    let commit = Samples::new(
        (0..commits)
            .map(|i| {
                let op = Op::Put {
                    key: ContentKey::new([format!("ns{i}")]).unwrap(),
                    content: Content::namespace(
                        ContentId::from_u128(1_000 + u128::from(i)),
                        BTreeMap::new(),
                    ),
                    expect: Expect::Absent,
                };
                let start = Instant::now();
                store
                    .commit(
                        &main,
                        None,
                        vec![op],
                        CommitMeta::new("bench", "ns", 0),
                        &ctx,
                    )
                    .unwrap();
                start.elapsed()
            })
            .collect(),
    );
    let syncs = [serial_syncs, four_syncs, many_syncs];
    InProcess {
        serial: serial_samples,
        serial_cpu,
        many_cpu,
        serial_wps,
        four: Samples::new(four),
        four_wps,
        many,
        many_rate: many as f64 / many_time.as_secs_f64(),
        many_wps,
        commit,
        syncs,
    }
}

/// 4 KiB appended to a preallocated file in `dir` and `fdatasync`ed, `n` times.
fn raw_fdatasync(dir: &Path, n: usize) -> Samples {
    let path = dir.join("raw");
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
    drop(file);
    let _ = std::fs::remove_file(path);
    Samples::new(out)
}

// ---- figures ------------------------------------------------------------------------------
