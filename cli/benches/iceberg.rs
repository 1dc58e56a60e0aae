//! Benchmarks of the Iceberg REST catalog (issues 7, 14, 15): a real `floe serve` child
//! process on a fresh data folder, driven over `/iceberg/v1/main` by load generators that
//! are not the bottleneck: `wrk` for reads (a fixed request), an async generator on tokio
//! for commit sequences (each commit carries what the previous answer made current). Every
//! figure is one function returning its rows (the figure, its baseline from the same run,
//! their ratio, the budget, and the generator's CPU beside the server's); one printer prints
//! them once, at the end. Baselines: the trivial axum server answering the very bytes floe
//! answered and a tiny body, at the same connection count; the metadata write itself
//! (`Warehouse::write_new`, the server's own code); raw `fdatasync`; a plain durable floe
//! commit over HTTP; the durable steps alone in this process; the same table in a fresh
//! catalog (a second `floe serve`).
//!
//! `cargo bench -p floe --bench iceberg` runs at full scale (about 6 minutes after the
//! build, ~17 GB of metadata files written and removed). `FLOE_BENCH_SCALE=10` divides
//! every count and wrk duration by 10 (wrk runs at least 1 s; not for the record);
//! `cargo test --benches` runs at 1/100. `FLOE_BENCH_DIR` chooses where the data folders
//! are made. Every status is checked, every commit's answer must carry the snapshot just
//! added, every wrk answer must have the expected size: anything else stops the run. The
//! one exception is counted, not hidden: a concurrent writer's 409 on its own table is
//! sent again and reported.

#[path = "iceberg/commits.rs"]
mod commits;
#[path = "iceberg/inprocess.rs"]
mod inprocess;
#[path = "iceberg/loads.rs"]
mod loads;
#[path = "iceberg/steps.rs"]
mod steps;
mod support;
#[path = "iceberg/table.rs"]
mod table;
#[path = "iceberg/writers.rs"]
mod writers;

use std::time::Instant;

use floe_catalog::Warehouse;
use support::cpu::{OtherLoad, ServerThreads};
use support::loadgen::Serial;
use support::server::{Server, Trivial};
use support::{Client, Row, Scale, wrk};
use table::{PREFIX, Table};

/// The route of loadTable and of a table commit, as floe's `/metrics` names it.
const TABLE_ROUTE: &str = "/iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}";

/// What every figure of this bench works with.
struct Bench {
    s: Scale,
    root: tempfile::TempDir,
    server: Server,
    /// Setup and checks (not measured).
    c: Client,
    /// The async generator's connection for serial commits.
    g: Serial,
    trivial: Trivial,
    threads: ServerThreads,
    /// The bench's own handle on the server's warehouse: the metadata-write baseline runs
    /// the server's code into the tables' folders.
    warehouse: Warehouse,
    /// Plain commits made so far (each creates namespace `proxy{n}`).
    proxy_n: u64,
}

impl Bench {
    fn pid(&self) -> u32 {
        self.server.pid()
    }
}

fn main() {
    let s = Scale::from_env();
    let root = support::bench_root();
    let title = format!(
        "floe Iceberg REST catalog: {}",
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
    let run_start = Instant::now();
    let run_load = OtherLoad::start(&[]);
    let mut rows: Vec<Row> = Vec::new();

    // Baselines that need no server.
    let (raw, _) = support::raw_fdatasync_row(root.path(), s);
    push(&mut rows, raw);
    let (inproc, _) = inprocess::commits(&root.path().join("inproc"), s.n(500, 10));
    push(&mut rows, inproc);

    let data_dir = root.path().join("data");
    let server = Server::start(&data_dir, &root.path().join("serve.stderr"), &[]);
    let c = Client::new(&server.base);
    c.post(
        &format!("{PREFIX}/namespaces"),
        r#"{"namespace":["db"]}"#,
        200,
    );
    let mut b = Bench {
        s,
        g: Serial::connect(&server.base),
        threads: ServerThreads::new(server.pid()),
        warehouse: Warehouse::open(&data_dir.join("warehouse")).expect("the warehouse"),
        trivial: Trivial::start(),
        proxy_n: 0,
        root,
        server,
        c,
    };
    let server_load = OtherLoad::start(&[b.pid()]);

    // 2b (before): the small table in an almost empty catalog.
    let mut small = Table::create(&b.c, "small");
    for _ in 0..10 {
        small.commit(&mut b.g);
    }
    let small_body = small.load(&b.c);
    let small_same = b.trivial.add(small_body.clone());
    let before = loads::small_moment(&b, &small, &small_body, &small_same);

    // 3: serial commits on tables of at most 100 snapshots.
    let rounds = s.n(100, 5).min(100);
    let mut tables: Vec<Table> = (0..s.n(20, 2))
        .map(|i| Table::create(&b.c, &format!("c{i:02}")))
        .collect();
    extend(&mut rows, commits::serial(&mut b, &mut tables, rounds));
    let steps = steps::commit_steps(&mut tables[0], 50);
    push(
        &mut rows,
        Row::new(
            format!(
                "3a. the server's Iceberg steps timed apart in the bench on `{}` ({} snapshots), median of 50",
                tables[0].name, tables[0].snapshots
            ),
            steps.line(),
        ),
    );

    // 1: loadTable of a small table (the one figure 3 left at `rounds` snapshots).
    extend(&mut rows, loads::many_connections(&b, &tables[0]));
    extend(&mut rows, loads::one_connection(&b, &tables[0]));

    // 4: concurrent writers, and the durable steps alone.
    extend(&mut rows, writers::figure_4(&mut b));
    push(
        &mut rows,
        inprocess::durable_steps(
            b.root.path(),
            tables[0].metadata_bytes() as usize,
            s.n(300, 10),
        ),
    );

    // 2: big tables, many other tables, then loads by size and the small table again.
    let (mid, big, big_rows) = commits::big_tables(&mut b);
    extend(&mut rows, big_rows);
    let others = s.n(2_000, 20);
    let start = Instant::now();
    for i in 0..others {
        Table::create(&b.c, &format!("other{i:05}"));
    }
    println!("created {others} other tables in {:.1?}", start.elapsed());
    push(&mut rows, loads::by_size(&b, [&small, &mid, &big]));
    let after = loads::small_moment(&b, &small, &small_body, &small_same);
    push(&mut rows, loads::before_after(&before, &after));

    // 2c, 2d: the same table in a fresh catalog, at the same moment; then again after
    // restarting this catalog's server on its folder (the data, or the process?).
    let twin = Server::start(
        &b.root.path().join("dat2"),
        &b.root.path().join("twin.stderr"),
        &[],
    );
    let twin_c = Client::new(&twin.base);
    twin_c.post(
        &format!("{PREFIX}/namespaces"),
        r#"{"namespace":["db"]}"#,
        200,
    );
    let mut twin_g = Serial::connect(&twin.base);
    let mut twin_small = Table::create(&twin_c, "small");
    for _ in 0..10 {
        twin_small.commit(&mut twin_g);
    }
    push(
        &mut rows,
        loads::against_fresh(
            &b,
            &small,
            &twin,
            &twin_small,
            &format!(
                "2c. the 10-snapshot table in this catalog ({} tables, {} commits) vs in a fresh catalog, at the same moment",
                after.tables, after.writes
            ),
            true,
        ),
    );
    let server_cores = server_load.cores();
    let threads_seen = b.threads.names();
    let (writes, conflicts) = writes_and_conflicts(&b.c);
    let data_dir = b.root.path().join("data");
    let stderr = b.server.halt();
    b.server = Server::start(&data_dir, &b.root.path().join("serve2.stderr"), &[]);
    b.c = Client::new(&b.server.base);
    for _ in 0..200 {
        small.load(&b.c); // warms the fresh process's caches, as the first server's were
    }
    push(
        &mut rows,
        loads::against_fresh(
            &b,
            &small,
            &twin,
            &twin_small,
            "2d. the same after restarting this catalog's server on its folder (a fresh process, the same data)",
            false,
        ),
    );
    for (name, text) in [
        ("floe serve", stderr),
        ("the second floe serve", twin.stop()),
    ] {
        if !text.trim().is_empty() {
            println!("{name} wrote to stderr:\n{text}");
        }
    }
    push(
        &mut rows,
        Row::new(
            "the run",
            format!(
                "{:.1?}; other processes used {:.2} cores on average ({server_cores:.2} while the first server ran)",
                run_start.elapsed(),
                run_load.cores()
            ),
        )
        .note(format!(
            "{machine}; {wrk_version}; every status as expected; {conflicts} requests answered 409; {writes} commits through the API; server threads seen: {threads_seen}"
        )),
    );
    support::report::print(&title, &rows, s.0);
}

fn push(rows: &mut Vec<Row>, row: Row) {
    row.announce();
    rows.push(row);
}

fn extend(rows: &mut Vec<Row>, new: Vec<Row>) {
    for row in new {
        push(rows, row);
    }
}

/// Successful writes the server answered so far (every POST the bench sends with a 200 or
/// 201 is a commit), and the requests it answered 409.
fn writes_and_conflicts(c: &Client) -> (u64, u64) {
    let text = c.get("/metrics", 200);
    let mut writes = 0.0;
    let mut conflicts = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        if name.starts_with("floe_http_requests_total{")
            && name.contains("method=\"POST\"")
            && (name.contains("status=\"200\"") || name.contains("status=\"201\""))
        {
            writes += value;
        } else if name == "floe_conflicts_total" {
            conflicts = value;
        }
    }
    (writes as u64, conflicts as u64)
}
