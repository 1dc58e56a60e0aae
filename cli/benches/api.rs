//! Benchmarks of floe's own API over HTTP (issues 5, 15): a real `floe serve` child process
//! on a fresh data folder, driven by `wrk` (each write with a name unique to the request)
//! and, for the ref listing whose every page names the next, by the async generator. Every
//! figure is one function returning its row (the figure, its baseline from the same run,
//! their ratio, the budget, and the generator's CPU beside the server's); the table is
//! printed once, at the end. Baselines: raw `fdatasync`, the trivial axum server under the
//! same load, the same work on a durable store in this process, the same sizes side by side.
//!
//! `cargo bench -p floe --bench api` runs at full scale. `FLOE_BENCH_SCALE=10` divides
//! every count and wrk duration by 10 (wrk runs at least 1 s; not for the record);
//! `cargo test --benches` runs at 1/100. `FLOE_BENCH_DIR` chooses where the data folders
//! are made. wrk counts every answer that is not 2xx, and the bench stops on any.

#[path = "api/inprocess.rs"]
mod inprocess;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::cpu::{OtherLoad, cpu_time};
use support::loadgen::Serial;
use support::server::{Server, Trivial};
use support::wrk::{self, Load, Run};
use support::{Client, Cpu, Row, Scale, encode, ratio, us};

/// The body of a branch create, in two halves around the unique name.
const CREATE_FROM_MAIN: (&str, &str) = (r#"{"name":""#, r#"","from":"main"}"#);
/// Rounds of figure 3's alternation.
const ROUNDS_FROM: usize = 5;

struct Bench {
    s: Scale,
    server: Server,
    c: Client,
    raw_p50: Duration,
}

impl Bench {
    fn pid(&self) -> u32 {
        self.server.pid()
    }
    fn load<'a>(&'a self, path: &'a str, connections: usize, seconds: u64) -> Load<'a> {
        Load::get(&self.server.base, path, connections, seconds).server(self.pid())
    }
}

fn main() {
    let s = Scale::from_env();
    let root = support::bench_root();
    let title = format!(
        "floe API over HTTP: {}",
        if s.0 == 1 {
            "full scale".to_owned()
        } else {
            format!(
                "counts and durations divided by {} (NOT for the record)",
                s.0
            )
        }
    );
    println!("==== {title} ====");
    let machine = support::machine_notes(root.path());
    let wrk_version = wrk::ensure();
    let run_load = OtherLoad::start(&[]);
    let mut rows = Vec::new();
    let (raw_row, raw) = support::raw_fdatasync_row(root.path(), s);
    push(&mut rows, raw_row);
    let inproc = inprocess::in_process(
        &root.path().join("inproc"),
        s.n(1_000, 20),
        s.n(200, 10),
        s.n(100_000, 1_000),
    );
    for row in in_process_rows(&inproc) {
        push(&mut rows, row);
    }

    let data_dir = root.path().join("data");
    let tables = u128::from(s.n(10_000, 100));
    let history = s.n(100_000, 1_000);
    let built = inprocess::build_fixtures(&data_dir.join("catalog"), tables, history);
    push(
        &mut rows,
        Row::new(
            format!(
                "fixture: {history} real commits on one branch (`Store::commit`, bulk-mode sled)"
            ),
            format!(
                "{:.1?} = {:.0} commits/s",
                built.history,
                history as f64 / built.history.as_secs_f64()
            ),
        )
        .note(format!(
            "branches with 8 and {tables} tables bulk-loaded in {:.1?}",
            built.tables
        )),
    );
    let server = Server::start(&data_dir, &root.path().join("serve.stderr"), &[]);
    let c = Client::new(&server.base);
    for _ in 0..20 {
        c.get("/health", 200);
        c.get("/api/v1/refs/main", 200);
    }
    let b = Bench {
        s,
        server,
        c,
        raw_p50: raw.p50(),
    };
    // Refs that exist before the bench creates any: main and the three fixtures.
    let mut refs_made = 4;
    let (serial_rows, made) = creates(&b);
    refs_made += made;
    for row in serial_rows {
        push(&mut rows, row);
    }
    push(&mut rows, reads(&b));
    let (row, made) = from_big_ref(&b, tables);
    refs_made += made;
    push(&mut rows, row);
    push(&mut rows, log_page(&b, history));
    push(&mut rows, namespace_commits(&b, &inproc));
    let (many_rows, made) = many_clients(&b);
    refs_made += made;
    for row in many_rows {
        push(&mut rows, row);
    }
    push(&mut rows, list_refs(&b, refs_made));
    let stderr = b.server.stop();
    if !stderr.trim().is_empty() {
        println!("floe serve wrote to stderr:\n{stderr}");
    }
    push(
        &mut rows,
        Row::new(
            "the run",
            format!(
                "other processes used {:.2} cores on average",
                run_load.cores()
            ),
        )
        .note(format!("{machine}; {wrk_version}")),
    );
    support::report::print(&title, &rows, s.0);
}

fn push(rows: &mut Vec<Row>, row: Row) {
    row.announce();
    rows.push(row);
}

fn in_process_rows(inproc: &inprocess::InProcess) -> Vec<Row> {
    let [sync1, sync4, sync64] = &inproc.syncs;
    vec![
        Row::new(
            "in-process `Store::create_ref` on durable sled, serial (no HTTP): p50",
            format!("{} (p95 {})", us(inproc.serial.p50()), us(inproc.serial.p95())),
        )
        .note(format!(
            "p99 {}; one group's log write + fdatasync p50 {} (p95 {}); {:.1} writes per sync; CPU per create {}",
            us(inproc.serial.p99()),
            us(sync1.p50()),
            us(sync1.p95()),
            inproc.serial_wps,
            us(inproc.serial_cpu)
        )),
        Row::new(
            "in-process `Store::create_ref`, 4 threads (no HTTP): p95",
            us(inproc.four.p95()),
        )
        .baseline(
            format!("serial p95 {}", us(inproc.serial.p95())),
            ratio(inproc.four.p95(), inproc.serial.p95()),
        )
        .note(format!(
            "p50 {}; {:.1} writes per sync; sync p50 {} (p95 {})",
            us(inproc.four.p50()),
            inproc.four_wps,
            us(sync4.p50()),
            us(sync4.p95())
        )),
        Row::new(
            format!(
                "in-process `Store::create_ref`, 64 threads, {} refs (no HTTP)",
                inproc.many
            ),
            format!("{:.0} creates/s", inproc.many_rate),
        )
        .note(format!(
            "{:.1} writes per sync; sync p50 {}; CPU per create {}",
            inproc.many_wps,
            us(sync64.p50()),
            us(inproc.many_cpu)
        )),
        Row::new(
            "in-process durable commit (create a namespace), serial (no HTTP): p50",
            us(inproc.commit.p50()),
        ),
    ]
}

/// Figures 1 and 2: branch creates by 1 connection, then by 4. Returns the refs made.
fn creates(b: &Bench) -> (Vec<Row>, u64) {
    let secs = b.s.secs(5);
    let (pre, post) = CREATE_FROM_MAIN;
    let m0 = b.c.route_time("/api/v1/refs", "POST");
    let serial = wrk::run(b.load("/api/v1/refs", 1, secs).post(pre, post));
    let m1 = b.c.route_time("/api/v1/refs", "POST");
    let four = wrk::run(b.load("/api/v1/refs", 4, secs).post(pre, post));
    let m2 = b.c.route_time("/api/v1/refs", "POST");
    let bound = b.raw_p50.mul_f64(1.5) + Duration::from_millis(1);
    let r4 = ratio(four.p95, serial.p95);
    let rows = vec![
        Row::new(
            "1. branch create (`POST /api/v1/refs`), 1 connection: p50",
            format!("{} (p95 {}, p99 {})", us(serial.p50), us(serial.p95), us(serial.p99)),
        )
        .baseline(format!("raw fdatasync p50 {}", us(b.raw_p50)), ratio(serial.p50, b.raw_p50))
        .budget(
            format!("<= 1.5x raw fdatasync p50 + 1 ms = {}", us(bound)),
            serial.p50 <= bound,
        )
        .cpu(serial.cpu())
        .note(format!(
            "wrk -t1 -c1 -d{secs}s, a unique name per request: {} creates ({:.0}/s); server-side mean {}",
            serial.requests,
            serial.rate(),
            us(m1.mean_since(&m0))
        )),
        Row::new(
            "2. branch create, 4 connections: p95",
            format!("{} (p50 {}; {:.0} creates/s)", us(four.p95), us(four.p50), four.rate()),
        )
        .baseline(format!("1 connection: p95 {}", us(serial.p95)), r4)
        .budget("<= 2x", r4 <= 2.0)
        .cpu(four.cpu())
        .note(format!(
            "wrk -t1 -c4 -d{secs}s: {} creates; server-side mean {}",
            four.requests,
            us(m2.mean_since(&m1))
        )),
    ];
    (rows, serial.requests + four.requests)
}

/// The same shape as figure 2 without a write: HTTP and the two cores alone.
fn reads(b: &Bench) -> Row {
    let secs = b.s.secs(2);
    let body = b.c.get("/api/v1/refs/main", 200);
    let one = wrk::run(b.load("/api/v1/refs/main", 1, secs));
    let four = wrk::run(b.load("/api/v1/refs/main", 4, secs));
    for r in [&one, &four] {
        r.expect_body("GET /api/v1/refs/main", body.len(), 4);
    }
    Row::new(
        "no write, same shape: `GET /api/v1/refs/main`, 4 connections: p95",
        format!("{} ({:.0} req/s)", us(four.p95), four.rate()),
    )
    .baseline(
        format!(
            "1 connection: p95 {} ({:.0} req/s)",
            us(one.p95),
            one.rate()
        ),
        ratio(four.p95, one.p95),
    )
    .cpu(four.cpu())
    .cpu(one.cpu())
    .note(format!("wrk -t1 -c1 and -c4, -d{secs}s each"))
}

/// Figure 3: branch creates from a ref holding `tables` tables against from one holding 8,
/// in alternating rounds. Returns the refs made.
fn from_big_ref(b: &Bench, tables: u128) -> (Row, u64) {
    let secs = b.s.secs(2);
    let [big, small] = wrk::rounds(
        ROUNDS_FROM,
        [
            b.load("/api/v1/refs", 1, secs)
                .post(r#"{"name":""#, r#"","from":"tables-big"}"#),
            b.load("/api/v1/refs", 1, secs)
                .post(r#"{"name":""#, r#"","from":"tables-small"}"#),
        ],
        |_, _| {},
    );
    let r = ratio(big.p50(), small.p50());
    let row = Row::new(
        format!("3. branch create from a ref holding {tables} tables: p50"),
        us(big.p50()),
    )
    .baseline(format!("from a ref holding 8 tables: p50 {}", us(small.p50())), r)
    .budget("<= 1.2x", r <= 1.2)
    .cpu(big.cpu())
    .cpu(small.cpu())
    .note(format!(
        "wrk -t1 -c1 -d{secs}s, {ROUNDS_FROM} rounds alternating; median of the rounds' p50; p99 {} vs {}",
        us(big.p99()),
        us(small.p99())
    ));
    (row, big.requests() + small.requests())
}

/// Figure 5: a page of log from a branch with a long history.
fn log_page(b: &Bench, history: u64) -> Row {
    let path = "/api/v1/trees/history/log?pageSize=10";
    let body = b.c.get(path, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON log");
    assert_eq!(v["commits"].as_array().map(Vec::len), Some(10), "{body}");
    let secs = b.s.secs(3);
    let m0 = b.c.route_time("/api/v1/trees/{ref}/log", "GET");
    let run = wrk::run(b.load(path, 1, secs));
    run.expect_body("a page of log", body.len(), 1);
    let server =
        b.c.route_time("/api/v1/trees/{ref}/log", "GET")
            .mean_since(&m0);
    Row::new(
        format!("5. `GET {path}`, {history} commits of history, 1 connection: p50"),
        format!("{} (p99 {})", us(run.p50), us(run.p99)),
    )
    .budget("<= 2 ms", run.p50 <= Duration::from_millis(2))
    .cpu(run.cpu())
    .note(format!(
        "wrk -t1 -c1 -d{secs}s: {} pages; server-side mean {}",
        run.requests,
        us(server)
    ))
}

/// A durable commit over HTTP, for the record: `POST /trees/main/namespaces`, serial.
fn namespace_commits(b: &Bench, inproc: &inprocess::InProcess) -> Row {
    let secs = b.s.secs(2);
    let run = wrk::run(
        b.load("/api/v1/trees/main/namespaces", 1, secs)
            .post(r#"{"namespace":[""#, r#""]}"#),
    );
    Row::new(
        "durable commit over HTTP (`POST /api/v1/trees/main/namespaces`), 1 connection: p50",
        format!("{} (p99 {})", us(run.p50), us(run.p99)),
    )
    .baseline(
        format!(
            "in-process commit p50 {} (a fresh store)",
            us(inproc.commit.p50())
        ),
        ratio(run.p50, inproc.commit.p50()),
    )
    .cpu(run.cpu())
    .note(format!("wrk -t1 -c1 -d{secs}s: {} commits", run.requests))
}

/// Figures 4a and 4b: branch creates by 64 connections, against the trivial handler under
/// the same load. Returns the refs made.
fn many_clients(b: &Bench) -> (Vec<Row>, u64) {
    let secs = b.s.secs(20);
    let connections = 64;
    let (pre, post) = CREATE_FROM_MAIN;
    let trivial_server = Trivial::start();
    let trivial =
        wrk::run(Load::get(&trivial_server.base, "/x", connections, secs).post(pre, post));
    drop(trivial_server);
    let m0 = b.c.route_time("/api/v1/refs", "POST");
    let floe: Run = wrk::run(b.load("/api/v1/refs", connections, secs).post(pre, post));
    let server = b.c.route_time("/api/v1/refs", "POST").mean_since(&m0);
    let share = floe.rate() / trivial.rate();
    let rows = vec![
        Row::new(
            format!("4a. branch creates by {connections} connections"),
            format!("{:.0} creates/s ({} in {:.1?})", floe.rate(), floe.requests, floe.wall),
        )
        .budget(">= 5,000 creates/s", floe.rate() >= 5_000.0)
        .cpu(floe.cpu())
        .note(format!(
            "wrk -t2 -c{connections} -d{secs}s, a unique name per request; p50 {}, p99 {}; server-side mean {}; other processes {:.2} cores",
            us(floe.p50),
            us(floe.p99),
            us(server),
            floe.other_cores
        )),
        Row::new(
            format!("4b. the same vs a trivial axum handler (`POST /x` -> 201), {connections} connections"),
            format!("{:.0} creates/s", floe.rate()),
        )
        .baseline(format!("trivial: {:.0} req/s (p50 {})", trivial.rate(), us(trivial.p50)), share)
        .budget(">= 0.20x", share >= 0.2)
        .cpu(floe.cpu())
        .cpu(trivial.cpu()),
    ];
    (rows, floe.requests)
}

/// Figure 4c: every ref listed a page of 1,000 at a time, each page naming the next, by the
/// async generator; median of 3. At least `made` refs exist (wrk counts answers; a request
/// in flight when it stopped may have created one more).
fn list_refs(b: &Bench, made: u64) -> Row {
    let mut g = Serial::connect(&b.server.base);
    let mut runs = Vec::new();
    let mut cpu = None;
    for _ in 0..3 {
        g.reset();
        let server0 = cpu_time(b.pid());
        let start = Instant::now();
        let (count, pages) = list_all(&mut g);
        let wall = start.elapsed();
        assert!(
            count >= made,
            "the listing shows {count} refs, {made} were made"
        );
        runs.push((wall, pages, count));
        cpu = Some(Cpu {
            generator_name: "async generator".into(),
            generator: g.cpu,
            server_name: "floe serve".into(),
            server: cpu_time(b.pid()) - server0,
            requests: g.requests,
            wall,
        });
    }
    runs.sort();
    let (time, pages, count) = runs[1];
    let rate = count as f64 / time.as_secs_f64();
    Row::new(
        format!("4c. list all {count} refs over HTTP, pageSize=1000, following nextPageToken ({pages} pages)"),
        format!("{rate:.0} refs/s ({time:.1?}, median of 3)"),
    )
    .budget(">= 200,000 refs/s", rate >= 200_000.0)
    .cpu(cpu.expect("three listings"))
    .note(format!(
        "{:.1} ms per page; all three: {}",
        time.as_secs_f64() * 1e3 / pages as f64,
        runs.iter()
            .map(|(t, _, _)| format!("{t:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Lists every ref, following `nextPageToken`: (refs, pages). Checks that no ref shows
/// twice (the check runs outside the generator's counted CPU).
fn list_all(g: &mut Serial) -> (u64, u64) {
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/api/v1/refs?pageSize=1000&pageToken={}", encode(t)),
            None => "/api/v1/refs?pageSize=1000".to_owned(),
        };
        let body = g.get(&path, 200);
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
    (seen.len() as u64, pages)
}
