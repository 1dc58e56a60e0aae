//! Scans through `POST /api/v1/query` (issue 23): filters on identity partition columns
//! are decided by partition values, and counts and bounds the manifests decide are
//! answered without reading a data file, only while every spec keeps the partition.

use serde_json::{Value, json};

use crate::data::{create_region_day_table, csv, p};
use crate::harness::Running;

const REGIONS: [Option<&str>; 4] = [Some("eu"), Some("us"), Some("a/b c"), None];

struct Row {
    id: i64,
    region: Option<&'static str>,
    month: u32,
}

fn rows() -> Vec<Row> {
    (0..600)
        .map(|i| Row {
            id: i,
            region: REGIONS[i as usize % 4],
            month: 1 + (i as u32 / 4) % 2,
        })
        .collect()
}

/// `(answer, files scanned)` of a query.
fn ask(run: &Running, sql: &str) -> (Value, u64) {
    let (status, headers, bytes) = run.query(&json!({ "sql": sql }), "application/json");
    assert_eq!(status, 200, "{sql}: {}", String::from_utf8_lossy(&bytes));
    let scanned = headers
        .get("floe-files-scanned")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (serde_json::from_slice(&bytes).unwrap(), scanned)
}

#[test]
fn partition_filters_are_exact_and_counts_come_from_the_manifests() {
    let run = Running::start();
    let cfg = run.config_dir();
    run.namespace("main", "db");
    create_region_day_table(&run);
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let data = rows();
    let f = csv(
        &dir,
        "rows.csv",
        "id,region,day",
        data.iter().map(|r| {
            format!(
                "{},{},2024-0{}-1{}",
                r.id,
                r.region.unwrap_or(""),
                r.month,
                r.id % 10
            )
        }),
    );
    run.floe(
        &cfg,
        &["import", p(&f), "--table", "db.p", "--mode", "append"],
    )
    .expect(0);

    type Keep = fn(&Row) -> bool;
    // (filter, which rows it keeps, decided by the partition values)
    let cases: [(&str, Keep, bool); 9] = [
        ("region = 'eu'", |r| r.region == Some("eu"), true),
        (
            "region IN ('eu', 'us')",
            |r| matches!(r.region, Some("eu" | "us")),
            true,
        ),
        (
            "region = 'eu' OR region IS NULL",
            |r| matches!(r.region, Some("eu") | None),
            true,
        ),
        ("region IS NOT NULL", |r| r.region.is_some(), true),
        ("region > 'b'", |r| r.region.is_some_and(|g| g > "b"), true),
        // A null region is neither equal nor unequal: these are left to the rows.
        (
            "region <> 'eu'",
            |r| r.region.is_some_and(|g| g != "eu"),
            false,
        ),
        (
            "NOT (region = 'eu')",
            |r| r.region.is_some_and(|g| g != "eu"),
            false,
        ),
        // A month partition does not decide a day's comparison.
        ("day >= DATE '2024-02-01'", |r| r.month == 2, false),
        (
            "region = 'eu' AND id < 100",
            |r| r.region == Some("eu") && r.id < 100,
            false,
        ),
    ];
    for (filter, keep, decided) in cases {
        let kept: Vec<i64> = data.iter().filter(|r| keep(r)).map(|r| r.id).collect();
        let sql = format!("SELECT count(*) AS n FROM db.p WHERE {filter}");
        let (answer, scanned) = ask(&run, &sql);
        assert_eq!(answer, json!([{ "n": kept.len() }]), "{sql}");
        assert_eq!(scanned == 0, decided, "{sql}: {scanned} files scanned");
        // The rows themselves, read through the same filter.
        let sql = format!("SELECT id FROM db.p WHERE {filter} ORDER BY id");
        let (answer, scanned) = ask(&run, &sql);
        let ids: Vec<i64> = answer
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, kept, "{sql}");
        assert!(scanned > 0 || kept.is_empty(), "{sql}");
    }
    let (answer, scanned) = ask(
        &run,
        "SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM db.p WHERE region IN ('us', 'a/b c')",
    );
    assert_eq!(answer, json!([{ "n": 300, "lo": 1, "hi": 598 }]));
    assert_eq!(scanned, 0);
    let (plan, _) = ask(
        &run,
        "EXPLAIN SELECT count(*) FROM db.p WHERE region = 'eu'",
    );
    let plan = plan.to_string();
    assert!(plan.contains("ManifestAnswerExec: table=db.p"), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");

    // A new spec without the region: files written under it hold any region, so a
    // region filter is the rows' again (and still answered right).
    let evolved = run.post(
        "/iceberg/v1/main/namespaces/db/tables/p",
        json!({
            "requirements": [],
            "updates": [
                { "action": "add-spec", "spec": { "fields": [
                    { "source-id": 3, "field-id": 1002, "name": "day_month", "transform": "month" },
                ]}},
                { "action": "set-default-spec", "spec-id": -1 },
            ],
        }),
    );
    assert_eq!(evolved.status, 200, "{:?}", evolved.body);
    let (answer, scanned) = ask(&run, "SELECT count(*) AS n FROM db.p WHERE region = 'eu'");
    assert_eq!(answer, json!([{ "n": 150 }]));
    assert!(scanned > 0, "the region no longer decides files");
    let (answer, scanned) = ask(&run, "SELECT count(*) AS n FROM db.p");
    assert_eq!((answer, scanned), (json!([{ "n": 600 }]), 0));
}
