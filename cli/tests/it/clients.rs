//! Real Iceberg clients against a real `floe serve` (DESIGN §3, `../shared/CLIENTS.md`):
//! PyIceberg 0.12 and DuckDB 1.5.5 from the pinned venv (`tests/requirements.txt`), running
//! the scenarios in `tests/clients/`. Each scenario asserts every step itself and ends by
//! printing `ok`; the test checks that and the server's side. Slow: they are
//! ignored by a plain `cargo test` and run by `.ci/run`'s slow phase (`-- --ignored`), which
//! provides `FLOE_TEST_VENV`.

use std::process::Command;

use crate::harness::Running;

/// Runs one scenario against the server; returns its stdout.
fn scenario(s: &Running, script: &str) -> String {
    scenario_with(s, script, &[])
}

/// Runs one scenario against the server with arguments after the server's URL (a token,
/// an issuer's token endpoint); returns its stdout.
pub fn scenario_with(s: &Running, script: &str, args: &[&str]) -> String {
    scenario_env(s, script, args, &[])
}

/// `scenario_with`, with environment variables for the scenario (a warehouse on S3).
pub fn scenario_env(s: &Running, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let venv = std::env::var("FLOE_TEST_VENV").expect(
        "FLOE_TEST_VENV names the Python venv with the pinned test clients (tests/requirements.txt); \
         .ci/run creates it",
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients");
    let output = Command::new(format!("{venv}/bin/python"))
        .arg(format!("{dir}/{script}"))
        .arg(s.url())
        .args(args)
        .current_dir(dir)
        .env("HOME", s.dir.path())
        .envs(env.iter().copied())
        .output()
        .expect("the venv's python runs");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && out.trim_end().ends_with("ok"),
        "{script} failed:\n{out}\n{err}"
    );
    out
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_pyiceberg_writes_branches_merges_and_time_travels() {
    let s = Running::start();
    scenario(&s, "pyiceberg_branches.py");
    // The server's side: every write was a floe commit by the anonymous principal, and
    // the table's files live in the warehouse folder.
    let reflog = s.get("/api/v1/reflog?ref=main&pageSize=100");
    let moves: Vec<(&str, &str)> = reflog.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["principal"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first: the merge, the table writes, the namespace, then main's creation.
    assert_eq!(moves.first(), Some(&("merge", "anonymous")), "{moves:?}");
    assert_eq!(moves.last(), Some(&("create", "floe")), "{moves:?}");
    assert!(
        moves[..moves.len() - 1]
            .iter()
            .all(|(_, p)| *p == "anonymous"),
        "{moves:?}"
    );
    assert!(s.dir.path().join("warehouse/sales").is_dir());
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_pyiceberg_concurrent_appenders_all_land() {
    let s = Running::start();
    scenario(&s, "pyiceberg_concurrent.py");
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_duckdb_creates_inserts_and_deletes_on_a_branch() {
    let s = Running::start();
    scenario(&s, "duckdb_branches.py");
    let log = s.get("/api/v1/trees/dev/log?pageSize=100");
    let messages: Vec<&str> = log.body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"create namespace s"), "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("commit to table s.t")),
        "{messages:?}"
    );
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_concurrent_transactions_never_write_skew() {
    let s = Running::start();
    let out = scenario(&s, "write_skew.py");
    assert!(out.contains("never both"), "{out}");
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_imported_tables_read_alike_in_every_client() {
    let s = Running::start();
    let cfg = s.config_dir();
    s.namespace("main", "db");
    let dir = s.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    // ids 0..1000 as Parquet (added as it is), 1000..1100 as CSV (converted).
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, true),
        arrow::datatypes::Field::new("name", arrow::datatypes::DataType::Utf8, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(
                (0..1000).collect::<Vec<i64>>(),
            )),
            std::sync::Arc::new(arrow::array::StringArray::from(
                (0..1000).map(|i| format!("n{i}")).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let parquet_file = dir.join("a.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet_file).unwrap(),
        schema,
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let csv_file = dir.join("b.csv");
    let mut text = "id,name\n".to_owned();
    for i in 1000..1100 {
        text.push_str(&format!("{i},n{i}\n"));
    }
    std::fs::write(&csv_file, text).unwrap();
    let out = s.floe(
        &cfg,
        &[
            "--json",
            "import",
            parquet_file.to_str().unwrap(),
            csv_file.to_str().unwrap(),
            "--table",
            "db.t",
        ],
    );
    let outcome = out.json();
    assert_eq!(outcome["files"][0]["action"], "copy", "{outcome}");
    assert_eq!(outcome["files"][1]["action"], "convert", "{outcome}");
    scenario(&s, "imported_tables.py");
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_iceberg_aware_merge_with_pyiceberg_and_duckdb() {
    let s = Running::start();
    scenario(&s, "table_merge.py");
    // The server's side: the merge of m1 is a merge commit that records what it did with
    // the table, as the answer to a retried request reads it.
    let log = s.get("/api/v1/trees/main/log?pageSize=500");
    let merge = log.body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["properties"]["floe.merge.tables"]
                .as_str()
                .is_some_and(|t| t.contains("\"m1\""))
        })
        .unwrap_or_else(|| panic!("no merge commit records table m1: {}", log.body));
    assert_eq!(merge["parents"].as_array().unwrap().len(), 2, "{merge}");
}
