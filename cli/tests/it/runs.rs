//! Runs' bookkeeping end to end (issue 14): an answer too large for one record, reserved
//! commit properties, promotion of a failed run, `floe run list|show|promote`, and the
//! retention of run branches and records.

use std::process::Command;

use serde_json::{Value, json};

use crate::data::{midway_csv, p, parquet};
use crate::harness::{Running, key};

/// A failed import on `db.t` (a CSV whose types break after the inferred rows); returns
/// the failed run's id and branch.
fn failed_import(run: &Running) -> (String, String) {
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let f = midway_csv(&dir);
    let out = run.floe(
        &run.config_dir(),
        &["--json", "import", p(&f), "--table", "db.t"],
    );
    out.expect(1);
    let runs = run.get("/api/v1/runs").body;
    let failed = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "failed")
        .expect("the import's run failed")
        .clone();
    (
        failed["id"].as_str().unwrap().to_owned(),
        failed["branch"].as_str().unwrap().to_owned(),
    )
}

/// An import of 300 files answers more than one record may hold (64 KiB): it lands, its
/// record says so, its branch is gone, and a retry under its key gets the whole first
/// answer (issue 14, item 2).
#[test]
fn an_import_whose_answer_outgrows_a_record_lands_settles_and_replays() {
    let run = Running::start();
    run.namespace("main", "db");
    let dir = run.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let name = format!("part-{i:04}-of-a-rather-long-export-name.parquet");
            let bytes = std::fs::read(parquet(&dir, &name, i * 2..i * 2 + 2)).unwrap();
            (name, bytes)
        })
        .collect();
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let k = key();
    let first = run.import(&json!({ "table": "db.t" }), &parts, Some(&k));
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["files"].as_array().unwrap().len(), 300);
    assert!(
        first.body.to_string().len() > 64 * 1024,
        "the answer outgrows one stored value"
    );
    assert_eq!(
        first.body["warnings"],
        Value::Null,
        "{:?}",
        first.body["warnings"]
    );
    let id = first.body["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first.body["run"]["state"], "succeeded");
    let record = run.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(record.body["state"], "succeeded", "{:?}", record.body);
    assert_eq!(record.body["landed"].as_str().unwrap(), run.head("main"));
    let branch = format!("floe-run/{id}");
    assert_eq!(
        run.get(&format!("/api/v1/refs/{}", branch.replace('/', "%2F")))
            .status,
        404,
        "a landed run's branch is deleted"
    );
    let retry = run.import(&json!({ "table": "db.t" }), &parts, Some(&k));
    assert_eq!(retry.status, 201, "{:?}", retry.body);
    assert_eq!(retry.body, first.body, "the retry gets the first answer");
    let q = run.query_json(json!({ "sql": "SELECT count(*) AS n FROM db.t" }));
    assert_eq!(q.body[0]["n"], 600, "landed once");
}

/// `floe.*` commit properties are floe's own: a merge carrying one is a 400 naming it,
/// and changes nothing (issue 14, item 4).
#[test]
fn a_merge_carrying_reserved_properties_is_refused() {
    let run = Running::start();
    run.branch("dev", "main");
    run.namespace("dev", "a");
    let head = run.head("main");
    let r = run.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "properties": {"floe.run.id": "0193b2f0-0000-7000-8000-000000000000", "ticket": "7"}}),
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["message"].as_str().unwrap();
    assert!(message.contains("floe.run.id"), "{message}");
    assert!(!message.contains("ticket"), "{message}");
    assert_eq!(run.head("main"), head);
    let ok = run.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "properties": {"ticket": "7"}}),
    );
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

/// A failed run is sealed until promoted; `floe run list|show|promote` show and do it; its
/// branch is pruned after `--run-retention`; a finished run's record is forgotten after
/// `--run-record-retention`, a promoted one's kept (issue 14, item 13).
#[test]
fn a_failed_run_is_promoted_then_pruned_and_forgotten_by_retention() {
    let mut run = Running::start_args(&["--run-retention", "0s", "--maintenance-interval", "1d"]);
    let cfg = run.config_dir();
    run.namespace("main", "db");
    let (id, branch) = failed_import(&run);

    let listed = run.floe(&cfg, &["run", "list"]).expect(0).to_owned();
    let line = listed
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("failed (sealed)"), "{line}");
    let shown = run.floe(&cfg, &["--json", "run", "show", &id]).json();
    assert_eq!(
        (shown["state"].as_str(), shown["sealed"].as_bool()),
        (Some("failed"), Some(true))
    );
    let human = run.floe(&cfg, &["run", "show", &id]).expect(0).to_owned();
    assert!(
        human.contains("(kept, sealed, until retention prunes it)"),
        "{human}"
    );
    let sealed = run.post("/api/v1/refs", json!({ "name": "rescue", "from": branch }));
    assert_eq!(sealed.body["type"], "RunSealed", "{:?}", sealed.body);
    assert!(
        sealed.body["message"]
            .as_str()
            .unwrap()
            .contains("floe run promote")
    );

    run.floe(&cfg, &["run", "promote", &id]).expect(0);
    let shown = run.floe(&cfg, &["--json", "run", "show", &id]).json();
    assert_eq!(
        (shown["promoted"].as_bool(), shown["sealed"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(shown["promotedBy"], "anonymous");
    let human = run.floe(&cfg, &["run", "show", &id]).expect(0).to_owned();
    assert!(human.contains("(kept, promoted)"), "{human}");
    let rescued = run.post("/api/v1/refs", json!({ "name": "rescue", "from": branch }));
    assert_eq!(rescued.status, 201, "{:?}", rescued.body);
    // Only a failed or cancelled run is promoted; an unknown one is not found.
    let small = parquet(&run.dir.path().join("files"), "ok.parquet", 0..3);
    let done = run
        .floe(&cfg, &["--json", "import", p(&small), "--table", "db.ok"])
        .json();
    let ok_id = done["run"]["id"].as_str().unwrap().to_owned();
    let refused = run.floe(&cfg, &["--json", "run", "promote", &ok_id]);
    refused.expect(3);
    assert_eq!(refused.json()["type"], "RunNotPromotable");
    run.floe(&cfg, &["run", "promote", "no-such-run"]).expect(5);

    // Retention: the failed run's branch goes at the next pass (0s); its record stays.
    let all = run
        .floe(&cfg, &["branch", "list", "--all"])
        .expect(0)
        .to_owned();
    assert!(all.contains(&branch), "{all}");
    let pass = run.post("/api/v1/maintenance", Value::Null);
    assert_eq!(pass.status, 200, "{:?}", pass.body);
    assert_eq!(pass.body["prunedRunBranches"], 1, "{:?}", pass.body);
    assert_eq!(pass.body["expiredRunRecords"], 0, "{:?}", pass.body);
    let all = run
        .floe(&cfg, &["branch", "list", "--all"])
        .expect(0)
        .to_owned();
    assert!(!all.contains(&branch), "{all}");
    assert_eq!(run.get(&format!("/api/v1/runs/{id}")).status, 200);
    let human = run.floe(&cfg, &["run", "show", &id]).expect(0).to_owned();
    assert!(human.contains("(pruned by retention)"), "{human}");
    // The rescued work stays on its own branch.
    assert_eq!(run.get("/api/v1/refs/rescue").status, 200);

    // A server keeping records for 0s forgets both finished runs at its next pass.
    run.restart_args(&[
        "--run-record-retention",
        "0s",
        "--maintenance-interval",
        "1d",
    ]);
    let pass = run.post("/api/v1/maintenance", Value::Null);
    assert_eq!(pass.body["expiredRunRecords"], 1, "{:?}", pass.body);
    assert_eq!(run.get(&format!("/api/v1/runs/{ok_id}")).status, 404);
    // The promoted run's record stays (it is what lets its work be used): the branch
    // made from its work still branches, merges and resets.
    assert_eq!(run.get(&format!("/api/v1/runs/{id}")).status, 200);
    let again = run.post(
        "/api/v1/refs",
        json!({ "name": "rescue2", "from": "rescue" }),
    );
    assert_eq!(again.status, 201, "{:?}", again.body);
    // main's head is the succeeded import's landing commit, and stays usable.
    let from_main = run.post("/api/v1/refs", json!({ "name": "after", "from": "main" }));
    assert_eq!(from_main.status, 201, "{:?}", from_main.body);
}

#[test]
fn retention_flags_take_durations_with_units() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--run-retention",
            "7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a unit"), "{stderr}");
}
