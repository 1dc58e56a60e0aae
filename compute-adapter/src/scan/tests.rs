//! The scan against a real warehouse: byte ranges read every row once, and aggregates
//! are answered from the manifests only where the metadata decides them.

use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema as ArrowSchema};
use datafusion::common::ScalarValue;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use floe_commits::ContentKey;
use futures::{StreamExt, TryStreamExt};

use super::*;
use crate::import::tests::{Fixture, fixture, request};
use crate::import::{ImportFile, ImportMode, Importer};
use crate::query::{QueryEngine, QueryLimits, QueryRequest};

/// A Parquet file of ids `0..rows` (and `name` = `n<id>`, null every 7th row) in row
/// groups of `group` rows, imported into `db.t` (appended when `append`).
async fn import(f: &Fixture, file: &str, ids: std::ops::Range<i64>, group: usize, append: bool) {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = ids.collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 7 != 0).then(|| format!("n{i}")))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap();
    let path = f.dir.path().join(file);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = ImportFile {
        name: file.to_owned(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        size: bytes.len() as u64,
        path,
        identity: None,
        held: None,
    };
    let mode = append.then_some(ImportMode::Append);
    Importer::new(f.catalog.clone())
        .run(&f.who, request(f, mode, file))
        .await
        .unwrap();
}

struct Answer {
    batches: Vec<RecordBatch>,
    scans: Vec<ScanStats>,
}

async fn query(f: &Fixture, sql: &str) -> Answer {
    let engine = QueryEngine::new(f.catalog.clone(), QueryLimits::default());
    let answer = engine
        .run(
            &f.who,
            QueryRequest {
                sql: sql.to_owned(),
                spec: f.main.clone(),
                namespace: None,
                max_rows: None,
                timeout: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = answer.batches.try_collect().await.unwrap();
    Answer {
        batches,
        scans: answer.scans,
    }
}

/// The first row of an answer, each value as text.
fn row(answer: &Answer) -> Vec<String> {
    let b = &answer.batches[0];
    (0..b.num_columns())
        .map(|c| datafusion::arrow::util::display::array_value_to_string(b.column(c), 0).unwrap())
        .collect()
}

/// The plan `EXPLAIN` prints, as one text.
fn plan_text(answer: &Answer) -> String {
    let mut text = String::new();
    for b in &answer.batches {
        let plans = b.column(1).as_string::<i32>();
        for i in 0..plans.len() {
            text.push_str(plans.value(i));
            text.push('\n');
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_of_a_file_read_every_row_group_exactly_once() {
    let f = fixture();
    import(&f, "a.parquet", 0..20_000, 1_000, false).await;
    let engine = QueryEngine::new(f.catalog.clone(), QueryLimits::default());
    let at = f.catalog.resolve(&f.who, &f.main).unwrap().hash;
    let key = ContentKey::new(["db", "t"]).unwrap();
    let read = engine
        .table_provider(&f.who, &f.main, at, &key, &ScanLog::default())
        .await
        .unwrap();
    let tasks: Vec<FileScanTask> = read
        .table
        .scan()
        .select(["id"])
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    let size = tasks[0].length;
    for pieces in [2u64, 3, 7, 40] {
        let ranges = split_by(tasks.clone(), size.div_ceil(pieces));
        assert_eq!(ranges.len() as u64, pieces);
        assert_eq!(
            ranges.iter().map(|t| t.length).sum::<u64>(),
            size,
            "they tile"
        );
        let mut ids = Vec::new();
        let mut nonempty = 0;
        for range in ranges {
            let reader = read.table.reader_builder().build();
            let batches: Vec<RecordBatch> = reader
                .read(futures::stream::iter([Ok(range)]).boxed())
                .unwrap()
                .stream()
                .try_collect()
                .await
                .unwrap();
            let before = ids.len();
            for b in &batches {
                ids.extend(
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
            nonempty += usize::from(ids.len() > before);
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..20_000).collect::<Vec<i64>>(), "{pieces} ranges");
        assert!(
            nonempty >= 2,
            "{pieces} ranges share the row groups: {nonempty} read rows"
        );
    }
    // Small files are not cut: the pieces would cost more footer reads than they save.
    assert_eq!(split(tasks.clone(), 2).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_bounds_come_from_the_manifests_where_they_are_exact() {
    let f = fixture();
    import(&f, "a.parquet", 0..1_000, 300, false).await;
    import(&f, "b.parquet", 5_000..5_500, 300, true).await;

    let a = query(
        &f,
        "SELECT count(*) AS n, min(id) AS lo, max(id) AS hi, count(name) AS named FROM db.t",
    )
    .await;
    let nulls = (0..1_000)
        .chain(5_000..5_500)
        .filter(|i| i % 7 == 0)
        .count();
    assert_eq!(
        row(&a),
        ["1500", "0", "5499", &(1_500 - nulls).to_string()],
        "the answer is the rows'"
    );
    assert!(a.scans[0].from_manifests, "{:?}", a.scans);
    assert_eq!((a.scans[0].files_scanned, a.scans[0].files_total), (0, 2));
    let explain = query(&f, "EXPLAIN SELECT count(*) FROM db.t").await;
    let text = plan_text(&explain);
    assert!(
        text.contains("ManifestAnswerExec: table=db.t, answered from the manifests of 2 data files (1500 rows), no data file read"),
        "{text}"
    );
    assert!(!text.contains("IcebergScanExec"), "{text}");

    // What the metadata does not decide is read: a filter on a column that is not an
    // identity partition, a string's bounds (they may be truncated), a sum.
    for (sql, expected) in [
        ("SELECT count(*) FROM db.t WHERE id >= 900", "600"),
        ("SELECT max(name) FROM db.t", "n999"),
        (
            "SELECT sum(id) FROM db.t",
            &((0..1_000).chain(5_000..5_500).sum::<i64>()).to_string(),
        ),
        (
            "SELECT count(*), max(id) FROM db.t WHERE name IS NULL",
            &nulls.to_string(),
        ),
    ] {
        let answer = query(&f, sql).await;
        assert_eq!(row(&answer)[0], expected, "{sql}");
        assert!(!answer.scans[0].from_manifests, "{sql}");
        assert!(answer.scans[0].files_scanned > 0, "{sql}");
        let text = plan_text(&query(&f, &format!("EXPLAIN {sql}")).await);
        assert!(
            text.contains("IcebergScanExec") && !text.contains("ManifestAnswerExec"),
            "{sql}: {text}"
        );
    }
    // A LIMIT under the aggregate is the rows', not the table's.
    let limited = query(&f, "SELECT count(*) FROM (SELECT id FROM db.t LIMIT 10)").await;
    assert_eq!(row(&limited), ["10"]);
}

#[test]
fn a_file_with_deletes_or_a_range_does_not_count_exactly() {
    let whole = |rows: u64| {
        FileScanTask::builder()
            .with_file_size_in_bytes(100)
            .with_start(0)
            .with_length(100)
            .with_record_count(Some(rows))
            .with_data_file_path(format!("/w/{rows}.parquet"))
            .with_data_file_format(DataFileFormat::Parquet)
            .with_schema(Arc::new(iceberg::spec::Schema::builder().build().unwrap()))
            .with_project_field_ids(vec![])
            .with_case_sensitive(true)
            .build()
    };
    assert_eq!(
        metadata::row_count(&[whole(3), whole(4)]),
        Precision::Exact(7)
    );
    let mut deleted = whole(5);
    deleted.deletes.push(
        iceberg::scan::FileScanTaskDeleteFile::builder()
            .with_file_path("/w/d.parquet".to_owned())
            .with_file_size_in_bytes(10)
            .with_file_type(iceberg::spec::DataContentType::PositionDeletes)
            .with_partition_spec_id(0)
            .build(),
    );
    assert_eq!(
        metadata::row_count(&[whole(3), deleted]),
        Precision::Inexact(8)
    );
    let pieces = split_by(vec![whole(9)], 40);
    assert_eq!(pieces.len(), 3);
    assert!(!metadata::row_count(&pieces).is_exact().unwrap_or(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_read_again_at_the_same_commit_plans_from_memory() {
    let f = fixture();
    import(&f, "a.parquet", 0..100, 100, false).await;
    let engine = QueryEngine::new(f.catalog.clone(), QueryLimits::default());
    let ask = |sql: &'static str| {
        let engine = engine.clone();
        let (who, main) = (f.who.clone(), f.main.clone());
        async move {
            let answer = engine
                .run(
                    &who,
                    QueryRequest {
                        sql: sql.to_owned(),
                        spec: main,
                        namespace: None,
                        max_rows: None,
                        timeout: None,
                    },
                )
                .await?;
            let batches: Vec<RecordBatch> = answer.batches.try_collect().await.unwrap();
            let b = &batches[0];
            Ok::<_, crate::query::QueryError>(
                datafusion::arrow::util::display::array_value_to_string(b.column(0), 0).unwrap(),
            )
        }
    };
    assert_eq!(ask("SELECT count(*) FROM db.t").await.unwrap(), "100");
    // The manifests are gone from storage: the engine planned them once and keeps them.
    let manifests: Vec<_> = walk(&f.dir.path().join("warehouse"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "avro"))
        .collect();
    assert!(!manifests.is_empty());
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = manifests
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for p in &manifests {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(ask("SELECT count(*) FROM db.t").await.unwrap(), "100");
    // Another engine has nothing kept: it reads storage, and fails without the files.
    let fresh = QueryEngine::new(f.catalog.clone(), QueryLimits::default());
    let err = fresh
        .run(
            &f.who,
            QueryRequest {
                sql: "SELECT count(*) FROM db.t".into(),
                spec: f.main.clone(),
                namespace: None,
                max_rows: None,
                timeout: None,
            },
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    for (p, bytes) in saved {
        std::fs::write(p, bytes).unwrap();
    }
    // A new commit is a new metadata file: the table is planned again, with the new rows.
    import(&f, "b.parquet", 100..150, 100, true).await;
    assert_eq!(ask("SELECT count(*) FROM db.t").await.unwrap(), "150");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_partition_filter_is_decided_only_when_translated_whole() {
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::in_list;
    use iceberg::spec::PrimitiveType;

    let columns: std::collections::HashMap<String, PrimitiveType> = [
        ("region".to_owned(), PrimitiveType::String),
        ("n".to_owned(), PrimitiveType::Long),
    ]
    .into();
    let decided = |e: datafusion::logical_expr::Expr| {
        metadata::partition_predicate(&e, &columns).map(|p| p.to_string())
    };
    assert_eq!(
        decided(col("region").eq(lit("eu"))).as_deref(),
        Some("region = \"eu\"")
    );
    // `literal < column` is `column > literal`.
    assert_eq!(decided(lit(5i64).lt(col("n"))).as_deref(), Some("n > 5"));
    assert!(decided(in_list(col("region"), vec![lit("a"), lit("b")], false)).is_some());
    assert!(decided(col("region").is_null().or(col("n").gt_eq(lit(1i64)))).is_some());
    // Not whole: a side on another column, a literal of another type, a null, a negation.
    assert_eq!(
        decided(col("region").eq(lit("eu")).or(col("id").eq(lit(1i64)))),
        None
    );
    assert_eq!(
        decided(col("region").eq(lit("eu")).and(col("id").eq(lit(1i64)))),
        None
    );
    assert_eq!(decided(col("n").eq(lit(1i32))), None);
    assert_eq!(decided(col("n").eq(lit(ScalarValue::Int64(None)))), None);
    assert_eq!(
        decided(in_list(
            col("region"),
            vec![lit("a"), lit(ScalarValue::Utf8(None))],
            false
        )),
        None
    );
    assert_eq!(decided(in_list(col("region"), vec![lit("a")], true)), None);
    assert_eq!(decided(col("region").not_eq(lit("eu"))), None);
    assert_eq!(decided(!col("region").eq(lit("eu"))), None);
}
