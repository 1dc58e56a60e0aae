//! A run's trail and its undoing (issue 18), against a real `floe serve`: `floe run
//! revert` (all of a run's tables in one commit, or none, naming what changed), `floe log
//! --run`, the run on `floe show` and in `floe table history`, and `GET /api/v1/runs?table=`.

use serde_json::Value;

use crate::pipelines::{DEMO, count, project, run_floe, seeded};

fn ids(list: &Value) -> Vec<String> {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_run_is_reverted_whole_or_not_at_all_and_its_trail_is_shown() {
    let run = seeded();
    let dir = project(&run, "demo", DEMO);
    let start = |args: &[&str]| {
        let mut all = vec!["--json", "run", dir.to_str().unwrap(), "--ref", "dev"];
        all.extend_from_slice(args);
        let out = run_floe(&run, &all);
        out.expect(0);
        out.json()
    };
    let first = start(&[]);
    let (first_id, first_landed) = (
        first["id"].as_str().unwrap().to_owned(),
        first["landed"].as_str().unwrap().to_owned(),
    );
    assert_eq!(first["tables"], serde_json::json!(["db.base", "db.report"]));
    let second = start(&["--no-cache", "--param", "min_id=50"]);
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(count(&run, "db.base", "dev"), Ok(50));
    assert_eq!(count(&run, "db.report", "dev"), Ok(70));

    // Which runs wrote a table: both runs wrote db.report; the import wrote db.t.
    let writers = |table: &str| {
        let out = run_floe(&run, &["--json", "run", "list", "--table", table]);
        out.expect(0);
        ids(&out.json())
    };
    assert_eq!(
        writers("db.report"),
        vec![first_id.clone(), second_id.clone()]
    );
    let import = writers("db.t");
    assert_eq!(import.len(), 1);
    assert!(!import.contains(&first_id));
    assert!(writers("db.nothing").is_empty());
    let (status, body) = run.server.get("/api/v1/runs?table=");
    assert_eq!(status, 400, "{body}");

    // The trail: the landing commit names its run in floe show, floe log --run and the
    // table's history.
    let shown = run_floe(&run, &["show", &first_landed]);
    assert!(
        shown.expect(0).contains(&format!("Run:    run {first_id}")),
        "{}",
        shown.stdout
    );
    let log = run_floe(&run, &["--json", "log", "--run", &first_id]);
    log.expect(0);
    let hashes: Vec<String> = log.json()["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hashes, vec![first_landed.clone()]);
    let history = run_floe(&run, &["table", "history", "db.report", "--ref", "dev"]);
    let history = history.expect(0).to_owned();
    assert!(history.contains(&format!("run {first_id}")), "{history}");
    assert!(history.contains(&format!("run {second_id}")), "{history}");

    // The first run's tables changed since (the second run wrote both): refused, naming
    // them, and nothing changes.
    let dev = run.head("dev");
    let refused = run_floe(&run, &["run", "revert", &first_id]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("cannot be reverted"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("db.base"), "{}", refused.stderr);
    assert!(refused.stderr.contains("db.report"), "{}", refused.stderr);
    assert_eq!(run.head("dev"), dev);

    // The second run reverts: both of its tables, in one commit.
    let reverted = run_floe(&run, &["--json", "run", "revert", &second_id]);
    reverted.expect(0);
    let reverted = reverted.json();
    assert_eq!(reverted["created"], true);
    assert_eq!(reverted["branch"], "dev");
    assert_eq!(reverted["parent"].as_str().unwrap(), dev);
    assert_eq!(run.head("dev"), reverted["head"].as_str().unwrap());
    assert_eq!(count(&run, "db.base", "dev"), Ok(90));
    assert_eq!(count(&run, "db.report", "dev"), Ok(45));
    let trail = run_floe(&run, &["log", "--run", &second_id]);
    let trail = trail.expect(0).to_owned();
    assert!(
        trail.contains(&format!("reverts run {second_id}")),
        "{trail}"
    );
    assert_eq!(
        trail.lines().count(),
        2,
        "its landing and its revert: {trail}"
    );
    // Again: nothing is left to revert.
    let again = run_floe(&run, &["run", "revert", &second_id]);
    assert!(
        again.expect(0).contains("nothing to revert"),
        "{}",
        again.stdout
    );

    // Now the first run reverts, on another branch only: its tables go there.
    run.branch("copy", "dev");
    run_floe(&run, &["run", "revert", &first_id, "--on", "copy"]).expect(0);
    assert!(count(&run, "db.report", "copy").is_err());
    assert!(count(&run, "db.base", "copy").is_err());
    assert_eq!(count(&run, "db.report", "dev"), Ok(45));

    // A run that did not land has nothing to revert.
    let failing = project(
        &run,
        "failing",
        &[(
            "a.sql",
            "SELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM t",
        )],
    );
    let failed = run_floe(
        &run,
        &["--json", "run", failing.to_str().unwrap(), "--ref", "dev"],
    );
    failed.expect(4);
    let failed_id = failed.json()["id"].as_str().unwrap().to_owned();
    let refused = run_floe(&run, &["run", "revert", &failed_id]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("landed nothing"),
        "{}",
        refused.stderr
    );
    let missing = run_floe(&run, &["run", "revert", "no-such-run"]);
    missing.expect(5);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}
