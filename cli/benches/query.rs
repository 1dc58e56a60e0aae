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
use support::{Report, Samples, Server, machine_notes, ratio, us};

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
    let mut report = Report::default();

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
    report.row(
        "Parquet import without conversion, rate vs cp + fsync",
        ">= 50%",
        &format!(
            "{:.0}% ({:.0} vs {:.0} MiB/s)",
            100.0 * ratio(cp, import),
            rate(import),
            rate(cp)
        ),
        ratio(cp, import) >= 0.5,
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
    let floe = |sql: &str| -> (Duration, Duration, Vec<u8>, ureq::http::HeaderMap) {
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
        assert_eq!(status, 200, "{sql}: {}", String::from_utf8_lossy(&body));
        (first, started.elapsed(), body, headers)
    };
    let timed = |sql: &str| -> (Samples, Samples, Vec<u8>, ureq::http::HeaderMap) {
        let (_, _, body, headers) = floe(sql);
        let mut firsts = Vec::new();
        let mut totals = Vec::new();
        for _ in 0..REPEATS {
            let (first, total, again, _) = floe(sql);
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
    let (_, agg, agg_body, _) = timed(AGG);
    let (_, sum, sum_body, _) = timed(SUM);
    let (_, read, _, _) = timed(READ);
    let (_, plan, _, _) = timed(&format!("EXPLAIN {AGG}"));
    let (_, filter, filter_body, filter_headers) = timed(FILTER);
    let (limit_first, limit_total, _, _) = timed(LIMIT);
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
    report.row(
        "full scan with an aggregate over 10M rows, vs DuckDB (stretch)",
        "<= 1.5x",
        &format!(
            "{:.2}x (group by: {} vs {}; plan {}, read {}, aggregate {}); sum: {:.2}x",
            ratio(agg.p50(), d(0)),
            us(agg.p50()),
            us(d(0)),
            us(plan.p50()),
            us(read.p50()),
            us(agg.p50().saturating_sub(read.p50())),
            ratio(sum.p50(), d(1))
        ),
        ratio(agg.p50(), d(0)) <= 1.5,
    );
    let duck_files = duck[3]["files"].as_u64().unwrap();
    report.row(
        "selective filter on a partitioned table: files read vs DuckDB",
        "<= DuckDB's",
        &format!("floe {floe_files}, DuckDB {duck_files} (of {total_files})"),
        floe_files <= duck_files,
    );
    report.row(
        "time to the first row of LIMIT 10",
        "<= 50 ms",
        &format!(
            "p50 {}, max {}",
            us(limit_first.p50()),
            us(limit_first.pct(1.0))
        ),
        limit_first.pct(1.0) <= Duration::from_millis(50),
    );
    let stderr = server.stop();
    assert!(
        !stderr.contains("error"),
        "the server logged errors:\n{stderr}"
    );
    report.print(div);
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
