//! Queries and imports against a real `floe serve` (issues 8 and 23), with DuckDB 1.5.5
//! (iceberg extension, through floe's Iceberg REST catalog) on the same tables in the same
//! run.
//!
//! Data: the same `ROWS` rows (id, k = id % 100, v double) twice, written by pyarrow and
//! imported with `floe import file://...` from an `--import-root` (each file added as it
//! is): `db.one` is one file of 10 row groups, `db.many` is `MANY` small files. And a table
//! PyIceberg writes partitioned by region (16 values).
//!
//! Figures (each query: one warm-up, then the median of `REPEATS` runs, `REPEATS_FAST`
//! for a query under 20 ms, in both engines; answers compared with DuckDB's), on each of
//! `db.one` and `db.many`:
//! - a group-by, a filtered sum, `count(*)` and a `LIMIT 10` scan, floe / DuckDB (issue
//!   23: each <= 1.3x); the group-by's note has floe's phases: plan (an EXPLAIN), read (the
//!   scan and a trivial aggregate), aggregate (the rest);
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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use std::cell::Cell;

use support::cpu::{cpu_time, thread_cpu};
use support::server::Server;
use support::{Cpu, Row, Samples, machine_notes, ratio, us};

/// Rows of each of `db.one` and `db.many`.
const ROWS: u64 = 10_000_000;
/// Row groups of `db.one`'s file.
const GROUPS: u64 = 10;
/// Files of `db.many`.
const MANY: u64 = 100;
const REPEATS: usize = 7;
/// Repeats of a query whose warm-up took under `FAST`: enough for its CPU, read in 10 ms
/// ticks, to add up, and for a steadier median.
const REPEATS_FAST: usize = 49;
const FAST: Duration = Duration::from_millis(20);
const PARTITIONS: u64 = 16;
const PARTITIONED_ROWS: u64 = 1_000_000;

/// The queries of issue 23, over table `{t}`.
const QUERIES: [(&str, &str); 4] = [
    (
        "group by",
        "SELECT k, sum(v) AS s, count(*) AS n FROM {t} GROUP BY k ORDER BY k",
    ),
    (
        "filtered sum",
        "SELECT sum(v) AS s, count(*) AS n FROM {t} WHERE k < 10",
    ),
    ("count(*)", "SELECT count(*) AS n FROM {t}"),
    ("LIMIT 10 scan", "SELECT * FROM {t} LIMIT 10"),
];
const READ: &str = "SELECT max(v) AS m FROM db.one";
const FILTER: &str = "SELECT count(*) AS n, sum(v) AS s FROM db.p WHERE region = 'r03'";

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
    let rows = (ROWS / div).max(100_000);
    let partitioned_rows = (PARTITIONED_ROWS / div).max(1_000);
    let root = tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .expect("a folder for the bench");
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    println!(
        "==== floe queries and imports (issues 8, 23): {rows} rows as 1 file of {GROUPS} row groups and as {MANY} files{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let generate = |prefix: &str, files: u64, groups: u64| -> Vec<PathBuf> {
        let per_file = rows / files;
        python_step(
            &python,
            script,
            &[
                "gen",
                src.to_str().unwrap(),
                prefix,
                &files.to_string(),
                &per_file.to_string(),
                &(per_file / groups).to_string(),
            ],
        );
        (0..files)
            .map(|f| src.join(format!("{prefix}-{f}.parquet")))
            .collect()
    };
    let one = generate("one", 1, GROUPS);
    let many = generate("many", MANY, 1);
    let all: Vec<&PathBuf> = one.iter().chain(&many).collect();
    let bytes: u64 = all
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
    for f in &all {
        let target = copies.join(f.file_name().unwrap());
        std::fs::copy(f, &target).unwrap();
        std::fs::File::open(&target).unwrap().sync_all().unwrap();
    }
    std::fs::File::open(&copies).unwrap().sync_all().unwrap();
    let cp = started.elapsed();
    let started = Instant::now();
    for (files, table) in [(&one, "db.one"), (&many, "db.many")] {
        let urls: Vec<String> = files
            .iter()
            .map(|f| format!("file://{}", f.display()))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["--json", "--server", &server.base, "import"])
            .args(&urls)
            .args(["--table", table])
            .env("FLOE_CONFIG_DIR", root.path().join("cli"))
            .output()
            .unwrap();
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
        assert_eq!(outcome["rows"].as_u64(), Some(rows), "{table}");
    }
    let import = started.elapsed();
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
            &partitioned_rows.to_string(),
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
        let repeats = if warm < FAST { REPEATS_FAST } else { REPEATS };
        for _ in 0..repeats {
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
    struct Measured {
        table: &'static str,
        name: &'static str,
        sql: String,
        first: Samples,
        total: Samples,
        body: Vec<u8>,
        scanned: u64,
        cpu: Cpu,
    }
    let files_of = |h: &ureq::http::HeaderMap, k: &str| -> u64 {
        h.get(k).unwrap().to_str().unwrap().parse().unwrap()
    };
    let mut measured: Vec<Measured> = Vec::new();
    take_cpu();
    for table in ["db.one", "db.many"] {
        for (name, template) in QUERIES {
            let sql = template.replace("{t}", table);
            let (first, total, body, headers) = timed(&sql);
            measured.push(Measured {
                table,
                name,
                sql,
                first,
                total,
                body,
                scanned: files_of(&headers, "floe-files-scanned"),
                cpu: take_cpu(),
            });
        }
    }
    let (_, read, _, _) = timed(READ);
    let (_, plan, _, _) = timed(&format!(
        "EXPLAIN {}",
        QUERIES[0].1.replace("{t}", "db.one")
    ));
    take_cpu();
    let (_, filter, filter_body, filter_headers) = timed(FILTER);
    let filter_cpu = take_cpu();
    let floe_files = files_of(&filter_headers, "floe-files-scanned");
    let total_files = files_of(&filter_headers, "floe-files-total");

    // ---- DuckDB's side ------------------------------------------------------------------
    let mut sqls: Vec<&str> = measured.iter().map(|m| m.sql.as_str()).collect();
    sqls.push(FILTER);
    let out = Command::new(&python)
        .args([
            script,
            "duckdb",
            &server.base,
            &REPEATS.to_string(),
            &REPEATS_FAST.to_string(),
        ])
        .args(&sqls)
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
    assert_eq!(duck.len(), sqls.len());
    let d = |i: usize| Duration::from_secs_f64(duck[i]["median_s"].as_f64().unwrap());

    // The answers agree, with each other and with the data.
    let first_row =
        |body: &[u8]| -> Value { serde_json::from_slice::<Value>(body).unwrap()[0].clone() };
    for (i, m) in measured.iter().enumerate() {
        match m.name {
            "group by" => {
                let groups: Vec<Value> = serde_json::from_slice(&m.body).unwrap();
                assert_eq!(groups.len(), 100, "{}", m.sql);
                assert_eq!(duck[i]["rows"].as_u64(), Some(100), "{}", m.sql);
            }
            "filtered sum" => {
                let row = first_row(&m.body);
                assert_eq!(row["n"].as_u64(), Some(rows / 10), "{}", m.sql);
                assert_eq!(
                    duck[i]["first"][1].as_str(),
                    Some(&*(rows / 10).to_string())
                );
            }
            "count(*)" => {
                assert_eq!(first_row(&m.body)["n"].as_u64(), Some(rows), "{}", m.sql);
                assert_eq!(duck[i]["first"][0].as_str(), Some(&*rows.to_string()));
                assert_eq!(m.scanned, 0, "{}: answered from the manifests", m.sql);
            }
            _ => assert_eq!(duck[i]["rows"].as_u64(), Some(10), "{}", m.sql),
        }
    }
    let f = measured.len();
    let filter_row = first_row(&filter_body);
    assert_eq!(
        filter_row["n"].as_u64(),
        Some(partitioned_rows / PARTITIONS + u64::from(partitioned_rows % PARTITIONS > 3))
    );
    assert_eq!(
        duck[f]["first"][0].as_str().unwrap(),
        filter_row["n"].to_string()
    );

    for (i, m) in measured.into_iter().enumerate() {
        let r = ratio(m.total.p50(), d(i));
        println!(
            "{} on {} ({} files read): floe p50 {}, DuckDB {} = {r:.2}x",
            m.name,
            m.table,
            m.scanned,
            us(m.total.p50()),
            us(d(i))
        );
        let mut row = Row::new(
            format!(
                "{} on `{}` (`POST /api/v1/query`), floe vs DuckDB",
                m.name, m.table
            ),
            us(m.total.p50()),
        )
        .baseline(format!("DuckDB {}", us(d(i))), r)
        .budget("<= 1.3x", r <= 1.3)
        .cpu(m.cpu);
        if m.name == "group by" && m.table == "db.one" {
            row = row.note(format!(
                "median of {REPEATS} after a warm-up ({REPEATS_FAST} under 20 ms); plan (EXPLAIN) {}, read alone (max(v)) {}",
                us(plan.p50()),
                us(read.p50()),
            ));
        }
        if m.name == "LIMIT 10 scan" {
            row = row.note(format!(
                "time to the first row: p50 {}, max {}",
                us(m.first.p50()),
                us(m.first.pct(1.0))
            ));
            if m.table == "db.one" {
                figures.push(
                    Row::new(
                        "time to the first row of LIMIT 10",
                        format!("p50 {}, max {}", us(m.first.p50()), us(m.first.pct(1.0))),
                    )
                    .budget("<= 50 ms", m.first.pct(1.0) <= Duration::from_millis(50)),
                );
            }
        }
        figures.push(row);
    }
    println!(
        "selective filter on the partitioned table: floe {floe_files} of {total_files} files ({}), DuckDB {} files ({})",
        us(filter.p50()),
        duck[f]["files"],
        us(d(f))
    );
    let duck_files = duck[f]["files"].as_u64().unwrap();
    figures.push(
        Row::new(
            "selective filter on a partitioned table: files read",
            format!("floe {floe_files} of {total_files} ({})", us(filter.p50())),
        )
        .baseline(
            format!("DuckDB {duck_files} ({})", us(d(f))),
            floe_files as f64 / duck_files.max(1) as f64,
        )
        .budget("<= DuckDB's", floe_files <= duck_files)
        .cpu(filter_cpu),
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
