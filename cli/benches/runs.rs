//! Pipeline runs against a real `floe serve` (issue 16), with DataFusion in this process
//! doing the same work as the baseline, in the same run.
//!
//! Figures:
//! - **control-plane overhead** of a 3-model SQL DAG (a REPLACE, a NONE, an APPEND reading
//!   both): `floe run` wall time (the CLI: pack, upload, plan, fork, schedule, execute,
//!   materialize, land durably, follow the log, read the record) minus the same three
//!   statements run directly on DataFusion with the two materialized outputs written as
//!   Parquet (p50 of `REPEATS`), with the share of durable writes: the run's ref moves
//!   (from the reflog) and record writes, each at the p50 of a durable commit measured alone;
//! - a **REPLACE model writing `BIG_ROWS` rows**: `floe run` wall time against DataFusion
//!   reading the same Parquet and writing it as Parquet (Snappy, as floe writes).
//!
//! `cargo bench -p floe --bench runs`. `FLOE_BENCH_SCALE=10` divides the rows by 10 (not
//! for the record).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::Value;

use support::server::Server;
use support::{Row, Samples, machine_notes, ratio, us};

const SMALL_ROWS: u64 = 10_000;
const BIG_ROWS: u64 = 10_000_000;
const REPEATS: usize = 15;
const BIG_REPEATS: usize = 3;

const PROJECT: &str = "project: {id: bench, name: bench}\ndefaults: {namespace: db}\n";
const BASE: &str = "SELECT id, k, v FROM small WHERE id % 2 = 0";
const AGG: &str = "SELECT k, sum(v) AS s FROM base GROUP BY k";
const REPORT: &str = "SELECT b.k, b.v, a.s FROM base b JOIN agg a ON b.k = a.k WHERE b.id < 1000";
const COPY: &str = "SELECT id, k, v FROM big";

fn main() {
    let div = support::scale_divisor();
    let big_rows = (BIG_ROWS / div).max(10_000);
    let root = support::bench_root();
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    println!(
        "==== floe runs (issue 16): a 3-model DAG over {SMALL_ROWS} rows; a REPLACE of {big_rows} rows{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let small = src.join("small.parquet");
    let big = src.join("big.parquet");
    write_parquet(&small, SMALL_ROWS);
    write_parquet(&big, big_rows);

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
    let config = root.path().join("cli");
    let cli = |args: &[&str]| -> Value { support::floe_cli(&server.base, &config, args) };
    cli(&["namespace", "create", "db"]);
    for (file, table) in [(&small, "db.small"), (&big, "db.big")] {
        cli(&[
            "import",
            &format!("file://{}", file.display()),
            "--table",
            table,
        ]);
    }
    let project = |name: &str, files: &[(&str, String)]| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bauplan_project.yml"), PROJECT).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    };
    let dag = project(
        "dag",
        &[
            (
                "base.sql",
                format!("-- bauplan: materialization_strategy = REPLACE\n{BASE}"),
            ),
            ("agg.sql", AGG.to_owned()),
            (
                "report.sql",
                format!("-- bauplan: materialization_strategy = APPEND\n{REPORT}"),
            ),
        ],
    );
    let copy = project(
        "copy",
        &[(
            "copy.sql",
            format!("-- bauplan: materialization_strategy = REPLACE\n{COPY}"),
        )],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut figures = Vec::new();

    // ---- the 3-model DAG ------------------------------------------------------------------
    let reflog_len = || -> usize {
        let text = ureq::get(format!("{}/api/v1/reflog?pageSize=1000", server.base))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        let r: Value = serde_json::from_str(&text).unwrap();
        r["entries"].as_array().map_or(0, Vec::len)
    };
    let run = |dir: &Path| -> (Duration, Value) {
        let started = Instant::now();
        // Executed every time (the issue-16 figures are of execution, not of the cache).
        let record = cli(&["run", dir.to_str().unwrap(), "--no-cache"]);
        let took = started.elapsed();
        assert_eq!(record["state"], "succeeded", "{record}");
        (took, record)
    };
    run(&dag);
    let moves_before = reflog_len();
    let mut floe = Vec::new();
    let mut server_side = Vec::new();
    for _ in 0..REPEATS {
        let (took, record) = run(&dag);
        floe.push(took);
        let ms = record["finishedMs"].as_i64().unwrap() - record["startedMs"].as_i64().unwrap();
        server_side.push(Duration::from_millis(ms.max(0) as u64));
    }
    let moves = (reflog_len() - moves_before) as f64 / REPEATS as f64;
    let floe = Samples::new(floe);
    let server_side = Samples::new(server_side);
    let df = Samples::new(
        (0..=REPEATS)
            .map(|_| rt.block_on(datafusion_dag(&small, root.path())))
            .skip(1)
            .collect(),
    );
    // A durable commit alone: create and delete a branch (two ref moves).
    let commit = Samples::new(
        (0..REPEATS)
            .map(|i| {
                let started = Instant::now();
                cli(&["branch", "create", &format!("b{i}"), "--from", "main"]);
                started.elapsed()
            })
            .collect(),
    );
    let overhead = floe.p50().saturating_sub(df.p50());
    println!(
        "3-model DAG: floe run p50 {} (server side {}), DataFusion p50 {}, overhead {}; {moves:.1} ref moves per run, a CLI commit p50 {}",
        us(floe.p50()),
        us(server_side.p50()),
        us(df.p50()),
        us(overhead),
        us(commit.p50())
    );
    figures.push(
        Row::new(
            "Control-plane overhead of a 3-model SQL DAG (`floe run` p50 minus DataFusion doing the same statements and writes)",
            format!(
                "{} (floe run {}, of which in the server {})",
                us(overhead),
                us(floe.p50()),
                us(server_side.p50())
            ),
        )
        .baseline(format!("DataFusion in process: {}", us(df.p50())), ratio(df.p50(), floe.p50()))
        .budget("<= 50 ms", overhead <= Duration::from_millis(50))
        .note(format!(
            "durable writes: {moves:.1} ref moves per run (fork, table creates and snapshot commits on the run branch, the landing, the branch's deletion) beside the record's writes; a CLI branch create (process start, one durable commit) p50 {}",
            us(commit.p50())
        )),
    );

    // ---- REPLACE of the big table ---------------------------------------------------------
    let big_floe = Samples::new((0..BIG_REPEATS).map(|_| run(&copy).0).collect());
    let big_df = Samples::new(
        (0..BIG_REPEATS)
            .map(|_| rt.block_on(datafusion_copy(&big, root.path())))
            .collect(),
    );
    println!(
        "REPLACE {big_rows} rows: floe run p50 {}, DataFusion read + write Parquet p50 {}",
        us(big_floe.p50()),
        us(big_df.p50())
    );
    figures.push(
        Row::new(
            format!("A REPLACE model writing {big_rows} rows (`floe run` wall time)"),
            us(big_floe.p50()),
        )
        .baseline(
            format!(
                "DataFusion reading and writing the same Parquet (Snappy): {}",
                us(big_df.p50())
            ),
            ratio(big_df.p50(), big_floe.p50()),
        )
        .budget(
            "<= 1.5x",
            big_floe.p50().as_secs_f64() <= 1.5 * big_df.p50().as_secs_f64(),
        ),
    );
    let _ = server.stop();
    support::report::print("runs (issue 16)", &figures, div);
}

/// `rows` rows (id, k = id % 100, v = id / 3) in one Parquet file of 1M-row groups.
fn write_parquet(path: &Path, rows: u64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
    ]));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut start = 0i64;
    while (start as u64) < rows {
        let end = (start + 65_536).min(rows as i64);
        let ids: Vec<i64> = (start..end).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Int64Array::from(
                    ids.iter().map(|i| i % 100).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    ids.iter().map(|i| *i as f64 / 3.0).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
        start = end;
    }
    w.close().unwrap();
}

fn session() -> SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().execution.parquet.compression = Some("snappy".to_owned());
    SessionContext::new_with_config(config)
}

/// The DAG's three statements on DataFusion, the REPLACE and APPEND outputs written as
/// Parquet.
async fn datafusion_dag(small: &Path, scratch: &Path) -> Duration {
    let out = tempfile::tempdir_in(scratch).unwrap();
    let started = Instant::now();
    let ctx = session();
    ctx.register_parquet(
        "small",
        small.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let memory = |batches: Vec<RecordBatch>| {
        let schema = batches[0].schema();
        Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![batches]).unwrap())
    };
    let base = ctx.sql(BASE).await.unwrap().collect().await.unwrap();
    ctx.register_table("base", memory(base.clone())).unwrap();
    let agg = ctx.sql(AGG).await.unwrap().collect().await.unwrap();
    ctx.register_table("agg", memory(agg)).unwrap();
    let report = ctx.sql(REPORT).await.unwrap();
    report
        .write_parquet(
            out.path().join("report.parquet").to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    ctx.read_batches(base)
        .unwrap()
        .write_parquet(
            out.path().join("base.parquet").to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    started.elapsed()
}

/// DataFusion reading the big Parquet and writing it as Parquet.
async fn datafusion_copy(big: &Path, scratch: &Path) -> Duration {
    let out = tempfile::tempdir_in(scratch).unwrap();
    let started = Instant::now();
    let ctx = session();
    ctx.register_parquet("big", big.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap();
    ctx.sql(COPY)
        .await
        .unwrap()
        .write_parquet(
            out.path().join("copy.parquet").to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    let file = std::fs::File::open(out.path().join("copy.parquet")).unwrap();
    file.sync_all().unwrap();
    started.elapsed()
}
