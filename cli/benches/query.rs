//! Queries and imports against a real `floe serve` (issue 8), with DuckDB 1.5.5 (iceberg
//! extension, through floe's Iceberg REST catalog) on the same tables in the same run.
//!
//! Data: `FILES` Parquet files of `ROWS` rows each (id, k = id % 100, v double), written
//! by pyarrow and imported with `floe import file://...` from an `--import-root` (each
//! file added as it is), and a table PyIceberg writes partitioned by region (16 values).
//!
//! Figures (each query: one warm-up, then the median of `REPEATS` runs, answers compared
//! with DuckDB's):
//! - a full scan with an aggregate, floe / DuckDB, with floe's phases: plan (an EXPLAIN),
//!   read (the scan and a trivial aggregate), aggregate (the rest);
//! - the files a selective filter on the partitioned table reads, floe and DuckDB;
//! - the time to the first row of `LIMIT 10` (floe answers after computing the first batch,
//!   so the time to the headers is the time to the first row);
//! - importing Parquet files that need no conversion, against `cp` + `fsync` of the same
//!   files into the same file system.
//!
//! `cargo bench -p floe --bench query` (needs `FLOE_TEST_VENV`, the pinned test venv
//! `.ci/run` builds). `FLOE_BENCH_SCALE=10` divides the rows by 10 (not for the record).

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use std::cell::Cell;

use support::cpu::{cpu_time, thread_cpu};
use support::server::Server;
use support::{Cpu, Row, Samples, machine_notes, ratio, us};

const FILES: u64 = 10;
const ROWS: u64 = 1_000_000;
const REPEATS: usize = 7;
const PARTITIONS: u64 = 16;

const AGG: &str = "SELECT k, sum(v) AS s, count(*) AS n FROM db.big GROUP BY k ORDER BY k";
const SUM: &str = "SELECT sum(v) AS s, count(*) AS n FROM db.big";
const READ: &str = "SELECT max(v) AS m FROM db.big";
const FILTER: &str = "SELECT count(*) AS n, sum(v) AS s FROM db.p WHERE region = 'r03'";
const LIMIT: &str = "SELECT * FROM db.big LIMIT 10";

fn main() {
    let div = support::scale_divisor();
    let Some(venv) = std::env::var_os("FLOE_TEST_VENV") else {
        println!(
            "query bench: set FLOE_TEST_VENV to the pinned test venv (.ci/run builds it); skipped"
        );
        return;
    };
    let python = Path::new(&venv).join("bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/query_clients.py");
    let rows = (ROWS / div).max(1_000);
    let root = tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .expect("a folder for the bench");
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    println!(
        "==== floe queries and imports (issue 8): {FILES} files x {rows} rows{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    python_step(
        &python,
        script,
        &[
            "gen",
            src.to_str().unwrap(),
            &FILES.to_string(),
            &rows.to_string(),
        ],
    );
    let files: Vec<_> = (0..FILES)
        .map(|f| src.join(format!("big-{f}.parquet")))
        .collect();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let mut figures: Vec<Row> = Vec::new();

    let server = Server::start(
        &root.path().join("data"),
        &root.path().join("stderr"),
        &[
            "--import-root",
            src.to_str().unwrap(),
            "--query-memory",
            "8192",
        ],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let created = agent
        .post(format!("{}/api/v1/trees/main/namespaces", server.base))
        .content_type("application/json")
        .send(json!({ "namespace": ["db"] }).to_string())
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    // ---- import: files added as they are, against cp + fsync ---------------------------
    let copies = root.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let started = Instant::now();
    for f in &files {
        let target = copies.join(f.file_name().unwrap());
        std::fs::copy(f, &target).unwrap();
        std::fs::File::open(&target).unwrap().sync_all().unwrap();
    }
    std::fs::File::open(&copies).unwrap().sync_all().unwrap();
    let cp = started.elapsed();
    let urls: Vec<String> = files
        .iter()
        .map(|f| format!("file://{}", f.display()))
        .collect();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["--json", "--server", &server.base, "import"])
        .args(&urls)
        .args(["--table", "db.big"])
        .env("FLOE_CONFIG_DIR", root.path().join("cli"))
        .output()
        .unwrap();
    let import = started.elapsed();
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "import failed ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        outcome["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "copy"),
        "{outcome}"
    );
    assert_eq!(outcome["rows"].as_u64(), Some(FILES * rows));
    let mib = bytes as f64 / (1 << 20) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    println!(
        "import (copy) {mib:.0} MiB: floe {} ({:.0} MiB/s), cp+fsync {} ({:.0} MiB/s)",
        us(import),
        rate(import),
        us(cp),
        rate(cp)
    );
    figures.push(
        Row::new(
            "Parquet import without conversion (`floe import`, server-side files): rate",
            format!("{:.0} MiB/s ({})", rate(import), us(import)),
        )
        .baseline(
            format!("cp + fsync of the same files: {:.0} MiB/s", rate(cp)),
            ratio(cp, import),
        )
        .budget(">= 0.50x", ratio(cp, import) >= 0.5),
    );

    python_step(
        &python,
        script,
        &[
            "partitioned",
            &server.base,
            &(rows).to_string(),
            &PARTITIONS.to_string(),
        ],
    );

    // ---- floe's side --------------------------------------------------------------------
    // The generator is one `ureq` request at a time: its CPU (this thread's, in the
    // request) is counted beside floe serve's, so that each row shows who did the work.
    let (gen_cpu, server_cpu, requests) = (
        Cell::new(Duration::ZERO),
        Cell::new(Duration::ZERO),
        Cell::new(0u64),
    );
    let pid = server.pid();
    let floe = |sql: &str| -> (Duration, Duration, Vec<u8>, ureq::http::HeaderMap) {
        let (cpu0, server0) = (thread_cpu(), cpu_time(pid));
        let started = Instant::now();
        let mut r = agent
            .post(format!("{}/api/v1/query", server.base))
            .header("Accept", "application/json")
            .content_type("application/json")
            .send(json!({ "sql": sql }).to_string())
            .unwrap();
        let first = started.elapsed();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let mut body = Vec::new();
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .reader()
            .read_to_end(&mut body)
            .unwrap();
        let total = started.elapsed();
        gen_cpu.set(gen_cpu.get() + (thread_cpu() - cpu0));
        server_cpu.set(server_cpu.get() + cpu_time(pid).saturating_sub(server0));
        requests.set(requests.get() + 1);
        assert_eq!(status, 200, "{sql}: {}", String::from_utf8_lossy(&body));
        (first, total, body, headers)
    };
    let wall = Cell::new(Duration::ZERO);
    // The CPU of the queries since the last call.
    let take_cpu = || Cpu {
        generator_name: "ureq (1 request at a time)".into(),
        generator: gen_cpu.replace(Duration::ZERO),
        server_name: "floe serve".into(),
        server: server_cpu.replace(Duration::ZERO),
        requests: requests.replace(0),
        wall: wall.replace(Duration::ZERO),
    };
    let timed = |sql: &str| -> (Samples, Samples, Vec<u8>, ureq::http::HeaderMap) {
        let (_, warm, body, headers) = floe(sql);
        wall.set(wall.get() + warm);
        let mut firsts = Vec::new();
        let mut totals = Vec::new();
        for _ in 0..REPEATS {
            let (first, total, again, _) = floe(sql);
            wall.set(wall.get() + total);
            // A LIMIT without ORDER BY may take its rows from any file; others must agree.
            if sql.contains("ORDER BY") || !sql.contains("LIMIT") {
                assert_eq!(again, body, "{sql}: the same answer each time");
            } else {
                let rows: Vec<Value> = serde_json::from_slice(&again).unwrap();
                assert_eq!(rows.len(), 10, "{sql}");
            }
            firsts.push(first);
            totals.push(total);
        }
        (Samples::new(firsts), Samples::new(totals), body, headers)
    };
    take_cpu();
    let (_, agg, agg_body, _) = timed(AGG);
    let agg_cpu = take_cpu();
    let (_, sum, sum_body, _) = timed(SUM);
    let (_, read, _, _) = timed(READ);
    let (_, plan, _, _) = timed(&format!("EXPLAIN {AGG}"));
    take_cpu();
    let (_, filter, filter_body, filter_headers) = timed(FILTER);
    let filter_cpu = take_cpu();
    let (limit_first, limit_total, _, _) = timed(LIMIT);
    let limit_cpu = take_cpu();
    let files_of = |h: &ureq::http::HeaderMap, k: &str| -> u64 {
        h.get(k).unwrap().to_str().unwrap().parse().unwrap()
    };
    let floe_files = files_of(&filter_headers, "floe-files-scanned");
    let total_files = files_of(&filter_headers, "floe-files-total");

    // ---- DuckDB's side ------------------------------------------------------------------
    let out = Command::new(&python)
        .args([
            script,
            "duckdb",
            &server.base,
            &REPEATS.to_string(),
            AGG,
            SUM,
            READ,
            FILTER,
            LIMIT,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.trim_end().ends_with("ok"),
        "duckdb failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = |i: usize| Duration::from_secs_f64(duck[i]["median_s"].as_f64().unwrap());
    // The answers agree.
    let first_row =
        |body: &[u8]| -> Value { serde_json::from_slice::<Value>(body).unwrap()[0].clone() };
    let sum_row = first_row(&sum_body);
    assert_eq!(sum_row["n"].as_u64(), Some(FILES * rows));
    assert_eq!(
        duck[1]["first"][1].as_str().unwrap(),
        (FILES * rows).to_string()
    );
    let agg_rows: Vec<Value> = serde_json::from_slice(&agg_body).unwrap();
    assert_eq!(agg_rows.len(), 100);
    assert_eq!(duck[0]["rows"].as_u64(), Some(100));
    let filter_row = first_row(&filter_body);
    assert_eq!(
        filter_row["n"].as_u64(),
        Some(rows / PARTITIONS + u64::from(rows % PARTITIONS > 3))
    );
    assert_eq!(
        duck[3]["first"][0].as_str().unwrap(),
        filter_row["n"].to_string()
    );

    println!(
        "full scan + group by ({} rows): floe p50 {} (plan {}, read {}, aggregate {}), DuckDB {}",
        FILES * rows,
        us(agg.p50()),
        us(plan.p50()),
        us(read.p50()),
        us(agg.p50().saturating_sub(read.p50())),
        us(d(0))
    );
    println!(
        "full scan + sum: floe p50 {}, DuckDB {}",
        us(sum.p50()),
        us(d(1))
    );
    println!(
        "read (max(v)): floe p50 {}, DuckDB {}",
        us(read.p50()),
        us(d(2))
    );
    println!(
        "selective filter on the partitioned table: floe {floe_files} of {total_files} files ({}), DuckDB {} files ({})",
        us(filter.p50()),
        duck[3]["files"],
        us(d(3))
    );
    println!(
        "LIMIT 10: first row p50 {} (max {}), whole answer p50 {}; DuckDB {}",
        us(limit_first.p50()),
        us(limit_first.pct(1.0)),
        us(limit_total.p50()),
        us(d(4))
    );
    let r_agg = ratio(agg.p50(), d(0));
    figures.push(
        Row::new(
            format!(
                "full scan + group by over {} rows (`POST /api/v1/query`), floe vs DuckDB (stretch)",
                FILES * rows
            ),
            format!(
                "{} (plan {}, read {}, aggregate {})",
                us(agg.p50()),
                us(plan.p50()),
                us(read.p50()),
                us(agg.p50().saturating_sub(read.p50()))
            ),
        )
        .baseline(format!("DuckDB {}", us(d(0))), r_agg)
        .budget("<= 1.5x", r_agg <= 1.5)
        .cpu(agg_cpu)
        .note(format!(
            "median of {REPEATS} after a warm-up; sum: {} vs {} = {:.2}x; read alone (max(v)): {} vs {}",
            us(sum.p50()),
            us(d(1)),
            ratio(sum.p50(), d(1)),
            us(read.p50()),
            us(d(2))
        )),
    );
    let duck_files = duck[3]["files"].as_u64().unwrap();
    figures.push(
        Row::new(
            "selective filter on a partitioned table: files read",
            format!("floe {floe_files} of {total_files} ({})", us(filter.p50())),
        )
        .baseline(
            format!("DuckDB {duck_files} ({})", us(d(3))),
            floe_files as f64 / duck_files.max(1) as f64,
        )
        .budget("<= DuckDB's", floe_files <= duck_files)
        .cpu(filter_cpu),
    );
    figures.push(
        Row::new(
            "time to the first row of LIMIT 10",
            format!(
                "p50 {}, max {}",
                us(limit_first.p50()),
                us(limit_first.pct(1.0))
            ),
        )
        .budget(
            "<= 50 ms",
            limit_first.pct(1.0) <= Duration::from_millis(50),
        )
        .cpu(limit_cpu)
        .note(format!(
            "whole answer p50 {}; DuckDB {}",
            us(limit_total.p50()),
            us(d(4))
        )),
    );
    let stderr = server.stop();
    assert!(
        !stderr.contains("error"),
        "the server logged errors:\n{stderr}"
    );
    support::report::print("floe queries and imports", &figures, div);
}

fn python_step(python: &Path, script: &str, args: &[&str]) {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
