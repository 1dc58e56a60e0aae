//! Queries and imports against a real `floe serve` (issue 8): `floe import` puts Parquet
//! and CSV files into tables, `POST /api/v1/query` (and `floe query`) reads them at any
//! ref spec.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Value, json};

use crate::harness::Running;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]))
}

/// A Parquet file with rows `ids` (name `n<id>`, score id / 2).
pub(crate) fn parquet(dir: &Path, file: &str, ids: Range<i64>) -> PathBuf {
    let ids: Vec<i64> = ids.collect();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(
                ids.iter().map(|i| format!("n{i}")).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 / 2.0).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let path = dir.join(file);
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema(), None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

/// A CSV file with a header and the given lines.
pub(crate) fn csv(
    dir: &Path,
    file: &str,
    header: &str,
    lines: impl IntoIterator<Item = String>,
) -> PathBuf {
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn count(run: &Running, sql: &str, at: &str) -> i64 {
    let r = run.query_json(json!({ "sql": sql, "ref": at }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let row = &r.body[0];
    row.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no count in {:?}", r.body))
}

/// A CSV file whose types are inferred from its first 10,000 rows and broken by row 10,040:
/// an import of it starts, then fails midway.
pub(crate) fn midway_csv(dir: &Path) -> PathBuf {
    let rows = (0..10_050).map(|i| {
        if i == 10_040 {
            "oops,n".to_owned()
        } else {
            format!("{i},n{i}")
        }
    });
    csv(dir, "midway.csv", "id,name", rows)
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_same_sql_answers_per_ref_and_travels_in_time() {
    let run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    let a = parquet(&dir, "a.parquet", 0..100);
    run.floe(&cfg, &["import", p(&a), "--table", "db.t"])
        .expect(0);
    let first = run.head("main");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    run.branch("dev", "main");
    let b = csv(
        &dir,
        "b.csv",
        "id,name,score",
        (100..150).map(|i| format!("{i},n{i},1.5")),
    );
    run.floe(
        &cfg,
        &[
            "import",
            p(&b),
            "--table",
            "db.t",
            "--branch",
            "dev",
            "--mode",
            "append",
        ],
    )
    .expect(0);
    let sql = "SELECT count(*) AS n FROM db.t";
    assert_eq!(count(&run, sql, "main"), 100);
    assert_eq!(count(&run, sql, "dev"), 150);
    // One table named two ways is one table.
    let r = run.query_json(json!({
        "sql": "SELECT count(*) AS n FROM t a JOIN db.t b ON a.id = b.id",
        "ref": "dev", "namespace": "db",
    }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!([{ "n": 150 }]));
    // A bare name resolves in the namespace the request names.
    let r = run.query_json(
        json!({ "sql": "SELECT max(id) AS m FROM t", "ref": "dev", "namespace": "db" }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!([{ "m": 149 }]));
    // main moves on; its past stays readable by hash and by time.
    let c = parquet(&dir, "c.parquet", 200..300);
    run.floe(
        &cfg,
        &["import", p(&c), "--table", "db.t", "--mode", "append"],
    )
    .expect(0);
    assert_eq!(count(&run, sql, "main"), 200);
    assert_eq!(count(&run, sql, &first), 100);
    assert_eq!(count(&run, sql, &format!("main@{}", &first[..12])), 100);
    assert_eq!(count(&run, sql, &format!("main*{between}")), 100);
    assert_eq!(count(&run, sql, "main~1"), 100);
    // The answer names the commit it read.
    let (_, headers, _) = run.query(&json!({ "sql": sql, "ref": first }), "text/csv");
    assert_eq!(headers.get("floe-commit").unwrap(), first.as_str());
    // The CLI: a table on request, exact CSV otherwise.
    let out = run.floe(
        &cfg,
        &[
            "query",
            "SELECT id, name FROM db.t WHERE id < 2 ORDER BY id",
            "--ref",
            "main",
        ],
    );
    assert_eq!(out.expect(0), "id,name\n0,n0\n1,n1\n");
    let out = run.floe(
        &cfg,
        &[
            "query",
            "SELECT id, name FROM db.t WHERE id < 2 ORDER BY id",
            "--format",
            "table",
        ],
    );
    let text = out.expect(0);
    assert!(text.contains("| 1  | n1   |"), "{text}");
    assert!(text.contains("(2 rows)"), "{text}");
    let out = run.floe(
        &cfg,
        &[
            "query",
            "SELECT id FROM db.t ORDER BY id",
            "--format",
            "json",
            "--max-rows",
            "3",
        ],
    );
    assert_eq!(out.json(), json!([{ "id": 0 }, { "id": 1 }, { "id": 2 }]));
}

#[test]
fn every_answer_format_carries_the_same_rows() {
    let run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    let a = parquet(&dir, "a.parquet", 0..5000);
    run.floe(&cfg, &["import", p(&a), "--table", "db.t"])
        .expect(0);
    let body = json!({ "sql": "SELECT id, name, score FROM db.t WHERE id % 1000 = 7 ORDER BY id" });
    let expected: Vec<(i64, String, f64)> = (0..5)
        .map(|k| k * 1000 + 7)
        .map(|i| (i, format!("n{i}"), i as f64 / 2.0))
        .collect();

    let (status, headers, bytes) = run.query(&body, "application/json");
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    let json_rows: Vec<(i64, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap().to_owned(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(json_rows, expected);

    let (_, _, bytes) = run.query(&body, "application/x-ndjson");
    let nd: Vec<(i64, String, f64)> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap().to_owned(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(nd, expected);

    let (_, headers, bytes) = run.query(&body, "text/csv");
    assert_eq!(headers.get("content-type").unwrap(), "text/csv");
    let text = String::from_utf8(bytes).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,name,score"));
    let csv_rows: Vec<(i64, String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].to_owned(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(csv_rows, expected);

    let (_, headers, bytes) = run.query(&body, "application/vnd.apache.arrow.stream");
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/vnd.apache.arrow.stream"
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let arrow_rows = rows_of(reader.map(Result::unwrap).collect());
    assert_eq!(arrow_rows, expected);

    let (_, _, bytes) = run.query(&body, "application/vnd.apache.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(rows_of(reader.map(Result::unwrap).collect()), expected);

    // An empty answer is still well formed in each format.
    let none = json!({ "sql": "SELECT id, name FROM db.t WHERE id < 0" });
    let (_, _, bytes) = run.query(&none, "application/json");
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), json!([]));
    let (_, _, bytes) = run.query(&none, "text/csv");
    assert_eq!(String::from_utf8(bytes).unwrap(), "id,name\n");
    // A large answer streams whole.
    let (_, _, bytes) = run.query(
        &json!({ "sql": "SELECT * FROM db.t" }),
        "application/x-ndjson",
    );
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), 5000);
}

fn rows_of(batches: Vec<RecordBatch>) -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let name = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let score = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((id.value(i), name.value(i).to_owned(), score.value(i)));
        }
    }
    out
}

#[test]
fn filters_reach_the_scan_and_prune_files() {
    let run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    for (k, name) in ["a.parquet", "b.parquet", "c.parquet"].iter().enumerate() {
        let k = k as i64;
        let f = parquet(&dir, name, k * 1000..k * 1000 + 1000);
        let mode = if k == 0 { "create" } else { "append" };
        run.floe(&cfg, &["import", p(&f), "--table", "db.t", "--mode", mode])
            .expect(0);
    }
    let scanned = |sql: &str| {
        let (status, h, bytes) = run.query(&json!({ "sql": sql }), "text/csv");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let n = |k: &str| h.get(k).unwrap().to_str().unwrap().parse::<u64>().unwrap();
        (
            n("floe-files-scanned"),
            n("floe-files-total"),
            String::from_utf8(bytes).unwrap(),
        )
    };
    let (files, total, text) = scanned("SELECT count(*) FROM db.t");
    assert_eq!(
        (files, total),
        (0, 3),
        "the manifests' record counts answer it"
    );
    assert_eq!(text, "count(*)\n3000\n");
    let (files, total, text) = scanned("SELECT sum(score) FROM db.t");
    assert_eq!((files, total), (3, 3));
    assert_eq!(text, "sum(db.t.score)\n2249250.0\n");
    let (files, total, text) = scanned("SELECT count(*) FROM db.t WHERE id >= 2500");
    assert_eq!(
        (files, total),
        (1, 3),
        "only the third file holds ids >= 2500"
    );
    assert_eq!(text, "count(*)\n500\n");
    let (files, _, text) = scanned("SELECT count(*) FROM db.t WHERE name = 'n1500'");
    // Lexicographic bounds: "n0".."n999" holds "n1500", "n2000".."n2999" does not.
    assert_eq!(files, 2, "string bounds prune too");
    assert_eq!(text, "count(*)\n1\n");
    let (files, _, _) = scanned("SELECT count(*) FROM db.t WHERE id > 99999");
    assert_eq!(files, 0);
    // Filters with casts are not used to prune (a cast can change the order), and a
    // literal of another type does not break the scan.
    let expected = (0..3000)
        .filter(|i: &i64| i.to_string().as_str() < "5")
        .count();
    let (files, _, text) = scanned("SELECT count(*) FROM db.t WHERE CAST(id AS VARCHAR) < '5'");
    assert_eq!(files, 3);
    assert_eq!(text, format!("count(*)\n{expected}\n"));
    let (_, _, text) = scanned("SELECT count(*) FROM db.t WHERE id < 5.5");
    assert_eq!(text, "count(*)\n6\n");
    let metrics = run.get_text("/metrics");
    assert!(
        metrics.contains("floe_query_files_scanned_total 12"),
        "{metrics}"
    );
    assert!(metrics.contains("floe_query_files_total 21"), "{metrics}");
}

#[test]
fn bad_queries_are_clear_4xx_and_change_nothing() {
    let run = Running::start_args(&["--query-memory", "16"]);
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    let a = parquet(&dir, "a.parquet", 0..10);
    run.floe(&cfg, &["import", p(&a), "--table", "db.t"])
        .expect(0);
    let head = run.head("main");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({ "sql": "SELEC 1" }), 400, "InvalidQuery", "SELEC"),
        (
            json!({ "sql": "SELECT * FROM db.nope" }),
            400,
            "TableNotFound",
            "db.nope",
        ),
        (
            json!({ "sql": "SELECT nope FROM db.t" }),
            400,
            "InvalidQuery",
            "nope",
        ),
        (
            json!({ "sql": "INSERT INTO db.t VALUES (1, 'x', 1.0)" }),
            400,
            "InvalidQuery",
            "queries only",
        ),
        (
            json!({ "sql": "DROP TABLE db.t" }),
            400,
            "InvalidQuery",
            "queries only",
        ),
        (
            json!({ "sql": "CREATE TABLE x AS SELECT 1" }),
            400,
            "InvalidQuery",
            "queries only",
        ),
        (
            json!({ "sql": "COPY (SELECT 1) TO '/tmp/floe-x.csv'" }),
            400,
            "InvalidQuery",
            "queries only",
        ),
        (
            json!({ "sql": "SET datafusion.execution.batch_size = 1" }),
            400,
            "InvalidQuery",
            "queries only",
        ),
        (
            json!({ "sql": "SELECT 1; SELECT 2" }),
            400,
            "InvalidQuery",
            "single",
        ),
        (
            json!({ "sql": "SELECT * FROM '/etc/passwd'" }),
            400,
            "TableNotFound",
            "/etc/passwd",
        ),
        (json!({ "sql": " " }), 400, "BadRequest", "empty"),
        (
            json!({ "sql": "SELECT 1 / (id - id) FROM db.t" }),
            400,
            "InvalidQuery",
            "Divide by zero",
        ),
        (
            json!({ "sql": "SELECT CAST(name AS INT) FROM db.t" }),
            400,
            "InvalidQuery",
            "Cast",
        ),
        (
            json!({ "sql": "SELECT 1", "ref": "nope" }),
            404,
            "RefNotFound",
            "nope",
        ),
        (
            json!({ "sql": "SELECT 1", "ref": "../x" }),
            400,
            "BadRequest",
            "",
        ),
        (
            json!({ "sql": "SELECT 1", "bogus": 1 }),
            400,
            "BadRequest",
            "bogus",
        ),
        (
            json!({ "sql": "SELECT 1", "timeoutMs": 0 }),
            400,
            "BadRequest",
            "timeoutMs",
        ),
        (
            json!({ "sql": "SELECT sum(value) FROM range(4000000000)", "timeoutMs": 200 }),
            422,
            "QueryTimeout",
            "longer than its limit",
        ),
        (
            json!({ "sql": "SELECT value FROM range(20000000) ORDER BY value DESC" }),
            422,
            "QueryMemoryExceeded",
            "more memory",
        ),
    ];
    for (body, status, kind, needle) in cases {
        let r = run.query_json(body.clone());
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert_eq!(r.body["type"], kind, "{body}: {:?}", r.body);
        let message = r.body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, _, bytes) = run.query(&json!({ "sql": "SELECT 1" }), "image/png");
    assert_eq!(status, 406, "{}", String::from_utf8_lossy(&bytes));
    // The engine's plan is readable, and queries without tables run too.
    let r = run.query_json(json!({ "sql": "EXPLAIN SELECT id FROM db.t WHERE id > 3" }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body.to_string().contains("IcebergScanExec"),
        "{:?}",
        r.body
    );
    assert_eq!(
        run.query_json(json!({ "sql": "SELECT 1 + 1 AS two" })).body,
        json!([{ "two": 2 }])
    );
    assert_eq!(run.head("main"), head);
    let out = run.floe(&cfg, &["query", "SELEC 1"]);
    out.expect(1);
    assert!(out.stderr.contains("SELEC"), "{}", out.stderr);
}

#[test]
fn imports_infer_check_and_refuse_what_does_not_fit() {
    let run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let a = parquet(&dir, "a.parquet", 0..100);
    // A missing namespace names the command that creates it.
    let out = run.floe(&cfg, &["import", p(&a), "--table", "db.t"]);
    out.expect(1);
    assert!(
        out.stderr.contains("floe namespace create db"),
        "{}",
        out.stderr
    );
    run.namespace("main", "db");
    let head = run.head("main");
    // A dry run shows the schema and the plan, and changes nothing.
    let out = run.floe(
        &cfg,
        &["--json", "import", p(&a), "--table", "db.t", "--dry-run"],
    );
    let plan = out.json();
    assert_eq!(plan["dryRun"], true);
    assert_eq!(plan["mode"], "create");
    let fields: Vec<(String, String)> = plan["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [("id", "long"), ("name", "string"), ("score", "double")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(plan["files"][0]["action"], "copy");
    assert_eq!(plan["files"][0]["rows"], 100);
    assert_eq!(run.head("main"), head);
    let human = run.floe(&cfg, &["import", p(&a), "--table", "db.t", "--dry-run"]);
    assert!(
        human.expect(0).contains("nothing changed"),
        "{}",
        human.stdout
    );
    // Create, then the same file again is refused unless forced.
    let created = run
        .floe(&cfg, &["--json", "import", p(&a), "--table", "db.t"])
        .json();
    assert_eq!(created["files"][0]["action"], "copy");
    assert_eq!(created["commit"].as_str().unwrap(), run.head("main"));
    assert_eq!(created["run"]["state"], "succeeded");
    let again = run.floe(
        &cfg,
        &["import", p(&a), "--table", "db.t", "--mode", "append"],
    );
    again.expect(3);
    assert!(
        again.stderr.contains("already imported") && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    // An existing table needs a mode.
    let b = csv(
        &dir,
        "b.csv",
        "id,name,score",
        (100..110).map(|i| format!("{i},n{i},2.5")),
    );
    let out = run.floe(&cfg, &["import", p(&b), "--table", "db.t"]);
    out.expect(1);
    assert!(out.stderr.contains("--mode append"), "{}", out.stderr);
    // CSV converts; forced duplicates land.
    let out = run.floe(
        &cfg,
        &[
            "--json",
            "import",
            p(&b),
            p(&a),
            "--table",
            "db.t",
            "--mode",
            "append",
            "--force",
        ],
    );
    let appended = out.json();
    assert_eq!(appended["files"][0]["action"], "convert");
    assert_eq!(appended["rows"], 110);
    assert_eq!(count(&run, "SELECT count(*) FROM db.t", "main"), 210);
    // Per file and column: what does not fit is named, and nothing changes.
    let head = run.head("main");
    let bad = csv(&dir, "bad.csv", "id,name,extra", ["x,n,1".to_owned()]);
    let out = run.floe(
        &cfg,
        &[
            "--json",
            "import",
            p(&bad),
            "--table",
            "db.t",
            "--mode",
            "append",
        ],
    );
    out.expect(1);
    let e = out.json();
    assert_eq!(e["type"], "IncompatibleFiles");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("bad.csv: column id is string in the file and long in the table"),
        "{message}"
    );
    assert!(
        message.contains("bad.csv: column extra is not in the table"),
        "{message}"
    );
    let nulls = dir.join("nulls.parquet");
    {
        let s = Arc::new(Schema::new(vec![Field::new("n", DataType::Null, true)]));
        let batch = RecordBatch::try_new(
            s.clone(),
            vec![Arc::new(arrow::array::NullArray::new(3)) as Arc<dyn Array>],
        )
        .unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&nulls).unwrap(), s, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let out = run.floe(&cfg, &["import", p(&nulls), "--table", "db.n"]);
    out.expect(1);
    assert!(
        out.stderr.contains("column n") && out.stderr.contains("null"),
        "{}",
        out.stderr
    );
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "not a table").unwrap();
    run.floe(&cfg, &["import", p(&junk), "--table", "db.j"])
        .expect(1);
    assert_eq!(run.head("main"), head);
    // Replace writes an overwrite snapshot.
    let c = parquet(&dir, "c.parquet", 500..520);
    let out = run.floe(
        &cfg,
        &["import", p(&c), "--table", "db.t", "--mode", "replace"],
    );
    out.expect(0);
    assert_eq!(count(&run, "SELECT count(*) FROM db.t", "main"), 20);
    let show = run.floe(&cfg, &["--json", "table", "show", "db.t"]).json();
    let snapshots = show["metadata"]["snapshots"].as_array().unwrap();
    let current = show["metadata"]["current-snapshot-id"].as_i64().unwrap();
    let last = snapshots
        .iter()
        .find(|s| s["snapshot-id"].as_i64() == Some(current))
        .unwrap();
    assert_eq!(last["summary"]["operation"], "overwrite");
    assert_eq!(last["summary"]["total-records"], "20");
    assert_eq!(last["summary"]["deleted-records"], "210");
    // Table show and history, for people.
    let text = run
        .floe(&cfg, &["table", "show", "db.t"])
        .expect(0)
        .to_owned();
    for needle in [
        "schema (id 0):",
        "score",
        "double",
        "partition spec: unpartitioned",
        "rows 20, data files 1",
        "overwrite",
        "schema.name-mapping.default",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let history = run
        .floe(&cfg, &["table", "history", "db.t"])
        .expect(0)
        .to_owned();
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(
        history.lines().all(|l| l.contains("import into db.t")),
        "{history}"
    );
}

#[test]
fn server_side_sources_are_confined_to_import_roots() {
    let outside = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = Running::start_args(&["--import-root", root.path().to_str().unwrap()]);
    let cfg = run.config_dir();
    run.namespace("main", "db");
    let inside = parquet(root.path(), "in.parquet", 0..10);
    let other = parquet(outside.path(), "out.parquet", 0..10);
    let url = format!("file://{}", inside.display());
    run.floe(&cfg, &["import", &url, "--table", "db.t"])
        .expect(0);
    assert_eq!(count(&run, "SELECT count(*) FROM db.t", "main"), 10);
    for source in [
        format!("file://{}", other.display()),
        format!(
            "file://{}/../{}/out.parquet",
            root.path().display(),
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
        "file:///etc/passwd".to_owned(),
    ] {
        let out = run.floe(&cfg, &["--json", "import", &source, "--table", "db.u"]);
        out.expect(1);
        assert_eq!(
            out.json()["type"],
            "OutsideImportRoots",
            "{source}: {}",
            out.stdout
        );
    }
    let plain = Running::start();
    let out = plain.floe(
        &plain.config_dir(),
        &["--json", "import", &url, "--table", "db.t"],
    );
    out.expect(1);
    assert_eq!(out.json()["type"], "ImportRootRequired");
}

#[test]
fn a_failed_import_changes_nothing_and_its_work_is_sealed() {
    let run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    let head = run.head("main");
    let f = midway_csv(&dir);
    let out = run.floe(&cfg, &["--json", "import", p(&f), "--table", "db.t"]);
    out.expect(1);
    let e = out.json();
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("failed and changed nothing") && message.contains("midway.csv"),
        "{message}"
    );
    assert_eq!(
        run.head("main"),
        head,
        "a failed import leaves the target as it was"
    );
    let q = run.query_json(json!({ "sql": "SELECT 1 FROM db.t" }));
    assert_eq!(q.body["type"], "TableNotFound");
    // Its branch stays, sealed: nothing may build on its work.
    let refs = run.get("/api/v1/refs?kind=branch").body;
    let branch = refs["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .find(|n| n.starts_with("floe-run/"))
        .expect("the failed run's branch stays");
    let run_head = run.head(&branch);
    assert_ne!(
        run_head, head,
        "the run committed its table before it failed"
    );
    let sealed = [
        run.post("/api/v1/refs", json!({ "name": "rescue", "from": branch })),
        run.post("/api/v1/trees/main/merge", json!({ "source": branch })),
        run.post(
            "/api/v1/trees/main/cherry-pick",
            json!({ "commit": run_head }),
        ),
        run.send(
            "PUT",
            "/api/v1/refs/main",
            &json!({ "target": run_head }),
            None,
        ),
    ];
    for r in sealed {
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(r.body["type"], "RunSealed", "{:?}", r.body);
    }
    assert_eq!(run.head("main"), head);
    // Nobody but the executor writes run branches.
    let r = run.send(
        "DELETE",
        &format!("/api/v1/refs/{}", branch.replace('/', "%2F")),
        &Value::Null,
        None,
    );
    // A run branch is reserved for the executor: 403 ReservedRef.
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["type"], "ReservedRef", "{:?}", r.body);
    // `branch list` hides run branches unless asked.
    let listed = run.floe(&cfg, &["branch", "list"]).expect(0).to_owned();
    assert!(!listed.contains("floe-run/"), "{listed}");
    let all = run
        .floe(&cfg, &["branch", "list", "--all"])
        .expect(0)
        .to_owned();
    assert!(all.contains(&branch), "{all}");
}

#[test]
fn a_restart_settles_an_import_the_server_left_running() {
    let mut run = Running::start();
    let cfg = run.config_dir();
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    run.namespace("main", "db");
    let head = run.head("main");
    // Big enough that the conversion is still running when the server dies.
    let big = csv(
        &dir,
        "big.csv",
        "id,name,score",
        (0..1_500_000).map(|i| format!("{i},name-{i},{i}.5")),
    );
    let mut import = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["import", p(&big), "--table", "db.big"])
        .env("FLOE_SERVER", run.url())
        .env("FLOE_CONFIG_DIR", &cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let id = loop {
        let runs = run.get("/api/v1/runs").body;
        if let Some(r) = runs["runs"].as_array().unwrap().first() {
            assert_eq!(r["state"], "running", "{r}");
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the import never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // Kill it once the run has committed on its branch (the table is created first, then
    // the file converts).
    let branch = format!("floe-run/{id}");
    loop {
        let r = run.get(&format!("/api/v1/refs/{}", branch.replace('/', "%2F")));
        if r.status == 200 && r.body["head"] != head.as_str() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the run never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    run.server.signal("KILL");
    let _ = import.wait();
    run.server = crate::harness::Server::start(run.dir.path());
    let r = run.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "failed", "{:?}", r.body);
    assert_eq!(r.body["sealed"], true);
    assert!(
        r.body["error"].as_str().unwrap().contains("stopped"),
        "{:?}",
        r.body
    );
    assert_eq!(run.head("main"), head, "nothing landed");
    assert_eq!(r.body["branch"].as_str().unwrap(), branch);
    let merged = run.post("/api/v1/trees/main/merge", json!({ "source": branch }));
    assert_eq!(merged.status, 409, "{:?}", merged.body);
    assert_eq!(merged.body["type"], "RunSealed");
    // A successful import's run records its landing.
    let small = parquet(&dir, "small.parquet", 0..10);
    let done = run
        .floe(
            &cfg,
            &["--json", "import", p(&small), "--table", "db.small"],
        )
        .json();
    let landed = run.get(&format!(
        "/api/v1/runs/{}",
        done["run"]["id"].as_str().unwrap()
    ));
    assert_eq!(landed.body["state"], "succeeded");
    assert_eq!(landed.body["landed"].as_str().unwrap(), run.head("main"));
    assert_eq!(run.get("/api/v1/runs/nope").status, 404);
}

#[test]
fn an_import_retried_with_its_idempotency_key_lands_once() {
    let run = Running::start();
    run.namespace("main", "db");
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(parquet(&dir, "a.parquet", 0..10)).unwrap();
    let key = crate::harness::key();
    let request = json!({ "table": "db.t" });
    let first = run.import(&request, &[("a.parquet", &bytes)], Some(&key));
    assert_eq!(first.status, 201, "{:?}", first.body);
    let head = run.head("main");
    let again = run.import(&request, &[("a.parquet", &bytes)], Some(&key));
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(run.head("main"), head, "the retry landed nothing");
    for field in [
        "commit",
        "snapshotId",
        "rows",
        "files",
        "schema",
        "table",
        "mode",
    ] {
        assert_eq!(again.body[field], first.body[field], "{field}");
    }
    assert_eq!(again.body["run"]["id"], first.body["run"]["id"]);
    assert_eq!(again.body["run"]["state"], "succeeded");
    assert_eq!(count(&run, "SELECT count(*) FROM db.t", "main"), 10);
    // The same key on another request is refused; a bad key is a 400.
    let other = run.import(
        &json!({ "table": "db.u" }),
        &[("a.parquet", &bytes)],
        Some(&key),
    );
    assert_eq!(other.status, 422, "{:?}", other.body);
    let bad = run.import(&request, &[("a.parquet", &bytes)], Some("not-a-uuid"));
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    // A rejection replays as the same rejection.
    let key = crate::harness::key();
    let refused = run.import(&request, &[("a.parquet", &bytes)], Some(&key));
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let replayed = run.import(&request, &[("a.parquet", &bytes)], Some(&key));
    assert_eq!(replayed.body, refused.body);
    // Malformed multipart bodies are clear 400s.
    let none = run.import(&json!({ "table": "db.v" }), &[], None);
    assert_eq!(none.status, 400, "{:?}", none.body);
    assert!(
        none.body["message"]
            .as_str()
            .unwrap()
            .contains("at least one file"),
        "{:?}",
        none.body
    );
    let r = run.post("/api/v1/imports", json!({ "table": "db.v" }));
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{:?}",
        r.body
    );
}

/// `db.p` (id long, region string, day date), partitioned by `identity(region)` and
/// `month(day)`, created over the Iceberg REST API.
pub(crate) fn create_region_day_table(run: &Running) {
    let created = run.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({
            "name": "p",
            "schema": { "type": "struct", "schema-id": 0, "fields": [
                { "id": 1, "name": "id", "required": false, "type": "long" },
                { "id": 2, "name": "region", "required": false, "type": "string" },
                { "id": 3, "name": "day", "required": false, "type": "date" },
            ]},
            "partition-spec": { "spec-id": 0, "fields": [
                { "source-id": 2, "field-id": 1000, "name": "region", "transform": "identity" },
                { "source-id": 3, "field-id": 1001, "name": "day_month", "transform": "month" },
            ]},
        }),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
}

#[test]
fn imports_into_a_partitioned_table_split_rows_by_partition() {
    let run = Running::start();
    let cfg = run.config_dir();
    run.namespace("main", "db");
    create_region_day_table(&run);
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let regions = ["eu", "us", "a/b c"];
    let f = csv(
        &dir,
        "rows.csv",
        "id,region,day",
        (0..600).map(|i| {
            format!(
                "{i},{},2024-0{}-1{}",
                regions[i % 3],
                1 + (i / 3) % 2,
                i % 10
            )
        }),
    );
    let out = run.floe(
        &cfg,
        &[
            "--json",
            "import",
            p(&f),
            "--table",
            "db.p",
            "--mode",
            "append",
        ],
    );
    let outcome = out.json();
    assert_eq!(outcome["files"][0]["action"], "convert", "{outcome}");
    let locations = outcome["files"][0]["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 6, "3 regions x 2 months: {outcome}");
    assert!(
        locations.iter().all(|l| {
            let l = l.as_str().unwrap();
            l.contains("/data/region=") && !l.contains("a/b c") && !l.contains("..")
        }),
        "{outcome}"
    );
    assert_eq!(count(&run, "SELECT count(*) FROM db.p", "main"), 600);
    let (status, headers, bytes) = run.query(
        &json!({ "sql": "SELECT count(*) AS n, min(id) AS lo, sum(id) AS s FROM db.p WHERE region = 'a/b c'" }),
        "application/json",
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!([{ "n": 200, "lo": 2, "s": (0..600).filter(|i| i % 3 == 2).sum::<i64>() }])
    );
    assert_eq!(
        headers.get("floe-files-scanned").unwrap(),
        "2",
        "one region: 2 of 6 files"
    );
    assert_eq!(headers.get("floe-files-total").unwrap(), "6");
    let r = run.query_json(json!({
        "sql": "SELECT count(*) AS n FROM db.p WHERE day >= DATE '2024-02-01' AND region = 'eu'"
    }));
    assert_eq!(r.body, json!([{ "n": 100 }]));
}
