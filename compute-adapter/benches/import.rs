//! Imports that convert (issue 8): CSV, and Parquet whose types need conversion
//! (timestamp[ns], uint32, large strings), through floe's `Importer` in this process on a
//! fresh catalog and warehouse, against DataFusion writing the same rows to Parquet (same
//! compression, snappy) in the same run. Each side runs `REPEATS` times, interleaved; the
//! medians are compared.
//!
//! `cargo bench -p floe-compute --bench import`; `FLOE_BENCH_SCALE=10` divides the rows by
//! 10 (not for the record).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Float64Array, LargeStringArray, RecordBatch, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use floe_catalog::{Authored, Catalog, Principal, Warehouse};
use floe_commits::{ContentKey, RefSpec};
use floe_compute::{ImportFile, ImportRequest, Importer};

const ROWS: usize = 2_000_000;
const REPEATS: usize = 5;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let div: usize = std::env::var("FLOE_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("FLOE_BENCH_SCALE is a positive integer"))
        .unwrap_or(if bench { 1 } else { 100 })
        .max(1);
    let rows = (ROWS / div).max(1_000);
    let root = tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    println!(
        "==== floe imports that convert (issue 8): {rows} rows{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    let csv = write_csv(root.path(), rows);
    let parquet = write_parquet(root.path(), rows);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for (name, file, csv_input) in [
        ("CSV", &csv, true),
        ("Parquet (ns, uint32, large string)", &parquet, false),
    ] {
        let mut floe = Vec::new();
        let mut datafusion = Vec::new();
        for round in 0..=REPEATS {
            let f = runtime.block_on(floe_import(root.path(), file, round));
            let d = runtime.block_on(datafusion_write(root.path(), file, csv_input, round));
            if round > 0 {
                floe.push(f);
                datafusion.push(d);
            }
        }
        floe.sort();
        datafusion.sort();
        let (f, d) = (floe[REPEATS / 2], datafusion[REPEATS / 2]);
        let ratio = f.as_secs_f64() / d.as_secs_f64();
        println!(
            "{name}: floe import p50 {:.1} ms, DataFusion read + write Parquet p50 {:.1} ms: {ratio:.2}x",
            f.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
        results.push((name, ratio, f, d));
    }
    println!();
    if div != 1 {
        println!("(rows divided by {div}: NOT the figures of record)");
    }
    println!("| Figure | Target | Measured | Verdict |");
    println!("|---|---|---|---|");
    for (name, ratio, f, d) in results {
        println!(
            "| {name} import vs DataFusion writing the same rows to Parquet | <= 1.5x | {ratio:.2}x ({:.0} vs {:.0} ms) | {} |",
            f.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3,
            if ratio <= 1.5 { "met" } else { "**missed**" }
        );
    }
}

fn write_csv(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("rows.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(out, "id,k,v,name").unwrap();
    for i in 0..rows {
        writeln!(out, "{i},{},{},name-{}", i % 100, i as f64 * 0.5, i % 1000).unwrap();
    }
    out.flush().unwrap();
    path
}

fn write_parquet(dir: &Path, rows: usize) -> PathBuf {
    let schema = Arc::new(Schema::new(vec![
        Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("k", DataType::UInt32, true),
        Field::new("v", DataType::Float64, true),
        Field::new("name", DataType::LargeUtf8, true),
    ]));
    let path = dir.join("rows.parquet");
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None).unwrap();
    let chunk = 65_536;
    let mut start = 0;
    while start < rows {
        let n = chunk.min(rows - start);
        let ids = start..start + n;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(
                    ids.clone()
                        .map(|i| 1_700_000_000_000_000_000 + i as i64 * 1_000)
                        .collect::<Vec<_>>(),
                )),
                Arc::new(UInt32Array::from(
                    ids.clone().map(|i| (i % 100) as u32).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    ids.clone().map(|i| i as f64 * 0.5).collect::<Vec<_>>(),
                )),
                Arc::new(LargeStringArray::from(
                    ids.map(|i| format!("name-{}", i % 1000))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
        start += n;
    }
    w.close().unwrap();
    path
}

/// One import into a fresh catalog and warehouse (create mode).
async fn floe_import(root: &Path, file: &Path, round: usize) -> Duration {
    let dir = root.join(format!(
        "floe-{round}-{}",
        file.extension().unwrap().to_str().unwrap()
    ));
    let warehouse = Warehouse::open(&dir).unwrap();
    let catalog = Catalog::in_memory().with_warehouse(warehouse);
    let who = Principal::anonymous();
    let main = RefSpec::parse("main").unwrap();
    catalog
        .create_namespace(
            &who,
            &main,
            &ContentKey::new(["db"]).unwrap(),
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap();
    let size = std::fs::metadata(file).unwrap().len();
    let request = ImportRequest {
        table: ContentKey::new(["db", "t"]).unwrap(),
        branch: main,
        mode: None,
        dry_run: false,
        force: false,
        files: vec![ImportFile {
            name: file.file_name().unwrap().to_str().unwrap().to_owned(),
            path: file.to_owned(),
            blake3: format!("round-{round}"),
            size,
            identity: None,
            held: None,
        }],
        idempotency: None,
    };
    let started = Instant::now();
    let outcome = Importer::new(catalog).run(&who, request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.files[0].action, floe_compute::FileAction::Convert);
    let _ = std::fs::remove_dir_all(&dir);
    took
}

/// DataFusion reads the same file and writes it as Parquet (snappy), with the same casts.
async fn datafusion_write(root: &Path, file: &Path, csv: bool, round: usize) -> Duration {
    let out = root.join(format!(
        "df-{round}-{}",
        file.extension().unwrap().to_str().unwrap()
    ));
    let ctx = SessionContext::new();
    ctx.sql("SET datafusion.execution.parquet.compression = 'snappy'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let started = Instant::now();
    let df = if csv {
        ctx.read_csv(
            file.to_str().unwrap(),
            CsvReadOptions::new().has_header(true),
        )
        .await
        .unwrap()
    } else {
        ctx.read_parquet(file.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap()
            .select_exprs(&[
                "arrow_cast(at, 'Timestamp(Microsecond, None)') AS at",
                "arrow_cast(k, 'Int64') AS k",
                "v",
                "arrow_cast(name, 'Utf8') AS name",
            ])
            .unwrap()
    };
    df.write_parquet(out.to_str().unwrap(), DataFrameWriteOptions::new(), None)
        .await
        .unwrap();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&out);
    took
}
