//! The run lifecycle's figures (issue 18), against a real `floe serve`:
//!
//! - **a fully cached run**: `floe run` of an unchanged project whose every node is in the
//!   results cache (a 3-model SQL DAG, and a project of two Python models and a SQL
//!   model), wall time minus its fork and landing commits, each at the p50 of one
//!   durable commit measured alone over HTTP in the same run (a branch created);
//! - **a fan-out of 8 independent Python nodes** (each a CPU-bound loop), run without the
//!   cache on the server's default workers (the cores): the wall time from the first
//!   node's start to the last node's end against the sum of the nodes' own times.
//!
//! `cargo bench -p floe --bench run_lifecycle`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::server::Server;
use support::{Row, Samples, machine_notes, us};

const REPEATS: usize = 15;
const FAN_OUT: usize = 8;
const FAN_REPEATS: usize = 3;

const PROJECT: &str = "project: {id: bench, name: bench}\ndefaults: {namespace: db}\n";

fn main() {
    let div = support::scale_divisor();
    let repeats = if div == 1 { REPEATS } else { 3 };
    let fan_repeats = if div == 1 { FAN_REPEATS } else { 1 };
    // A loop of this many steps is one node's work (about 0.4 s of CPython).
    let loop_steps = (4_000_000 / div).max(10_000);
    let root = support::bench_root();
    println!(
        "==== floe run lifecycle (issue 18): cached runs; a fan-out of {FAN_OUT} Python nodes{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let server = Server::start(&root.path().join("data"), &root.path().join("stderr"), &[]);
    let config = root.path().join("cli");
    let cli = |args: &[&str]| -> Value { support::floe_cli(&server.base, &config, args) };
    cli(&["namespace", "create", "db"]);
    // The source table: 10,000 rows.
    let csv = root.path().join("src.csv");
    let mut text = String::from("id,k,v\n");
    for i in 0..10_000 {
        text.push_str(&format!("{i},{},{}\n", i % 100, f64::from(i) / 3.0));
    }
    std::fs::write(&csv, text).unwrap();
    cli(&["import", csv.to_str().unwrap(), "--table", "db.src"]);

    let sql = project(
        root.path(),
        "sql",
        &[
            (
                "base.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id, k, v FROM src WHERE id % 2 = 0".to_owned(),
            ),
            ("agg.sql", "SELECT k, sum(v) AS s FROM base GROUP BY k".to_owned()),
            (
                "report.sql",
                "-- bauplan: materialization_strategy = APPEND\nSELECT b.k, b.v, a.s FROM base b JOIN agg a ON b.k = a.k WHERE b.id < 1000".to_owned(),
            ),
        ],
    );
    let python = project(
        root.path(),
        "python",
        &[
            (
                "models.py",
                "import bauplan\nimport pyarrow.compute as pc\n\n@bauplan.model(materialization_strategy=\"REPLACE\")\ndef doubled(data=bauplan.Model(\"src\", columns=[\"id\", \"v\"])):\n    return data.append_column(\"w\", pc.multiply(data[\"v\"], 2))\n\n@bauplan.model()\ndef evens(data=bauplan.Model(\"doubled\", filter=\"id % 2 = 0\")):\n    return data\n".to_owned(),
            ),
            (
                "report.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT count(*) AS n, sum(w) AS s FROM evens".to_owned(),
            ),
        ],
    );

    // One durable commit alone, over HTTP (no process start): a branch created.
    let mut agent = support::loadgen::Serial::connect(&server.base);
    let commit = Samples::new(
        (0..repeats)
            .map(|i| {
                let body = format!(r#"{{"name":"c{i}","kind":"branch","from":"main"}}"#);
                let started = Instant::now();
                agent.post("/api/v1/refs", &body, 201);
                started.elapsed()
            })
            .collect(),
    );
    let mut figures = Vec::new();
    for (name, dir) in [
        ("3-model SQL DAG", &sql),
        ("2 Python models + 1 SQL", &python),
    ] {
        // The first run fills the cache; the rest reuse every node.
        let first = cli(&["run", dir.to_str().unwrap()]);
        assert_eq!(first["state"], "succeeded", "{first}");
        let mut walls = Vec::new();
        let mut server_side = Vec::new();
        for _ in 0..repeats {
            let started = Instant::now();
            let record = cli(&["run", dir.to_str().unwrap()]);
            walls.push(started.elapsed());
            assert_eq!(record["state"], "succeeded", "{record}");
            let nodes = record["pipeline"]["nodes"].as_array().unwrap();
            assert!(
                nodes.iter().all(|n| n["cached"] == true),
                "every node cached: {record}"
            );
            let ms = record["finishedMs"].as_i64().unwrap() - record["startedMs"].as_i64().unwrap();
            server_side.push(Duration::from_millis(ms.max(0) as u64));
        }
        let walls = Samples::new(walls);
        let server_side = Samples::new(server_side);
        let above = walls.p50().saturating_sub(commit.p50() * 2);
        println!(
            "{name}, fully cached: floe run p50 {} (server side {}), a durable commit p50 {}, above fork + landing {}",
            us(walls.p50()),
            us(server_side.p50()),
            us(commit.p50()),
            us(above)
        );
        figures.push(
            Row::new(
                format!("`floe run` of an unchanged {name}, every node cached (wall time above its fork and landing commits)"),
                format!(
                    "{} (floe run {}, of which in the server {})",
                    us(above),
                    us(walls.p50()),
                    us(server_side.p50())
                ),
            )
            .baseline(
                format!(
                    "a durable commit alone over HTTP: {} (x2: fork, landing)",
                    us(commit.p50())
                ),
                walls.p50().as_secs_f64() / (2.0 * commit.p50().as_secs_f64()).max(1e-9),
            )
            .budget("<= 100 ms", above <= Duration::from_millis(100))
            .note("the CLI's process start, packing and upload, planning, the cache lookups, materialization (REPLACE rewrites, APPEND appends again), the landing and following the log are all inside the wall time".to_owned()),
        );
    }

    // ---- a fan-out of 8 Python nodes ------------------------------------------------------
    let mut code = String::from("import bauplan\n");
    for i in 0..FAN_OUT {
        code.push_str(&format!(
            "\n@bauplan.model()\ndef n{i}(data=bauplan.Model(\"src\", columns=[\"id\"])):\n    total = 0\n    for x in range({loop_steps}):\n        total += x * {i}\n    return data.slice(0, 1)\n"
        ));
    }
    let fan = project(root.path(), "fan", &[("fan.py", code)]);
    let mut ratios = Vec::new();
    let mut detail = String::new();
    for _ in 0..fan_repeats {
        let record = cli(&["run", fan.to_str().unwrap(), "--no-cache"]);
        assert_eq!(record["state"], "succeeded", "{record}");
        let nodes = record["pipeline"]["nodes"].as_array().unwrap();
        let span = |n: &Value| {
            (
                n["startedMs"].as_i64().unwrap(),
                n["finishedMs"].as_i64().unwrap(),
            )
        };
        let sum: i64 = nodes.iter().map(|n| span(n).1 - span(n).0).sum();
        let first = nodes.iter().map(|n| span(n).0).min().unwrap();
        let last = nodes.iter().map(|n| span(n).1).max().unwrap();
        let wall = last - first;
        ratios.push(wall as f64 / sum as f64);
        detail = format!("wall {wall} ms, sum of the nodes' times {sum} ms");
        println!(
            "fan-out of {FAN_OUT}: {detail} ({:.2}x)",
            wall as f64 / sum as f64
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    figures.push(
        Row::new(
            format!("A fan-out of {FAN_OUT} independent Python nodes on {} cores (wall time from the first node's start to the last node's end)", support::cpu::cores()),
            format!("{median:.2}x the sum of the nodes' times (median of {fan_repeats}; last: {detail})"),
        )
        .baseline("the sum of the nodes' own times (one at a time)", median)
        .budget("<= 0.6x", median <= 0.6),
    );
    let _ = server.stop();
    support::report::print("run lifecycle (issue 18)", &figures, div);
}

/// A project folder `name` with `files` beside its project file.
fn project(root: &Path, name: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bauplan_project.yml"), PROJECT).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}
