//! Black-box tests of `floe serve`: a real process on a free port over a fresh data
//! folder, spoken to over real HTTP, stopped by real signals.

use std::path::Path;
use std::process::Command;

use crate::harness::Server;

#[test]
fn serve_answers_health_and_ready_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.get("/health"),
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        server.get("/ready"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    assert_eq!(server.get("/nope").0, 404);
    server.signal("TERM");
    let (code, out) = server.wait();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("floe stopped"), "{out}");
    // The store survives the restart; SIGINT stops it the same way.
    let server = Server::start(dir.path());
    assert_eq!(server.get("/ready").0, 200);
    server.signal("INT");
    assert_eq!(server.wait().0, Some(0));
    assert!(dir.path().join("catalog").join("db").exists());
}

#[test]
fn a_second_server_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let listing = |p: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(&dir.path().join("catalog"));
    let second = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another floe process"), "{err}");
    assert_eq!(
        listing(&dir.path().join("catalog")),
        before,
        "the second server touched nothing"
    );
    assert_eq!(first.get("/ready").0, 200, "the first server still serves");
}

#[test]
fn serve_reads_its_address_and_folder_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let server = Server::start_with(
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .arg("serve")
            .env("FLOE_ADDR", "127.0.0.1:0")
            .env("FLOE_DATA_DIR", &data),
    );
    assert_eq!(server.get("/ready").0, 200);
    assert!(data.join("catalog").join("floe.lock").exists());
}

#[test]
fn serve_explains_an_address_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--addr",
            "not-an-address",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot listen on not-an-address"), "{err}");
}

/// `--log-format json` writes one JSON object per event on standard error; each request
/// ends with a line of its method, route, status, latency and, for an error answer, the
/// error id the client was shown and the error's type, inside its span (issue 15).
#[test]
fn requests_are_logged_as_structured_spans_with_their_error_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .env("FLOE_LOG", "info,floe_rest=debug,floe_commits=debug"),
    );
    let (status, body) = server.get("/api/v1/refs/nope");
    assert_eq!(status, 404, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error_id = body["errorId"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/iceberg/v1/main/namespaces/a").0, 404);
    assert_eq!(server.get("/health").0, 200);
    let created = crate::harness::post(
        &server.addr,
        "/api/v1/trees/main/namespaces",
        r#"{"namespace":["db"]}"#,
    );
    let head = created["head"].as_str().unwrap().to_owned();
    server.signal("TERM");
    let (code, logs) = server.wait_for_logs();
    assert_eq!(code, Some(0), "{logs}");
    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let answered = |route: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == "answered" && e["fields"]["route"] == route)
            .unwrap_or_else(|| panic!("no request line for {route} in {logs}"))
    };
    let refs = answered("/api/v1/refs/{name}");
    assert_eq!(refs["fields"]["method"], "GET");
    assert_eq!(refs["fields"]["status"], 404);
    assert_eq!(refs["fields"]["error_id"], error_id.as_str());
    assert_eq!(refs["fields"]["error"], "RefNotFound");
    assert_eq!(refs["span"]["principal"], "anonymous");
    assert!(refs["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let iceberg = answered("/iceberg/v1/{prefix}/namespaces/{namespace}");
    assert_eq!(iceberg["fields"]["error"], "NamespaceNotFound");
    assert_eq!(answered("/health")["fields"]["status"], 200);
    // The commit's own span, inside the request's: its ref, size, head and durable wait.
    let commit = events
        .iter()
        .find(|e| e["fields"]["message"] == "committed")
        .unwrap_or_else(|| panic!("no commit line in {logs}"));
    assert_eq!(commit["span"]["ref"], "main");
    assert!(commit["span"]["ops"].as_u64().unwrap() >= 1);
    assert_eq!(commit["span"]["head"], head.as_str());
    assert_eq!(commit["span"]["created"], true);
    assert!(commit["span"]["durable_wait_ms"].as_i64().unwrap() >= 0);
    let request = &commit["spans"][0];
    assert_eq!(request["route"], "/api/v1/trees/{ref}/namespaces");
}

/// A run logs one span (its id, kind, target, table, how it ended and its landing commit),
/// and the commits of its work are logged inside it.
#[test]
fn a_run_logs_its_span_around_the_commits_of_its_work() {
    let run = crate::harness::Running::start_with_env(
        &["--log-format", "json"],
        &[("FLOE_LOG", "info,floe_commits=debug")],
    );
    run.namespace("main", "db");
    let csv = b"id,name\n1,a\n2,b\n";
    let imported = run.import(
        &serde_json::json!({ "table": "db.t" }),
        &[("a.csv", csv)],
        None,
    );
    assert_eq!(imported.status, 201, "{:?}", imported.body);
    let id = imported.body["run"]["id"].as_str().unwrap().to_owned();
    let landing = imported.body["commit"].as_str().unwrap().to_owned();
    run.server.signal("TERM");
    let (code, logs) = run.server.wait_for_logs();
    assert_eq!(code, Some(0), "{logs}");
    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let landed = events
        .iter()
        .find(|e| e["fields"]["message"] == "run landed")
        .unwrap_or_else(|| panic!("no run line in {logs}"));
    assert_eq!(landed["span"]["id"], id.as_str());
    assert_eq!(landed["span"]["kind"], "import");
    assert_eq!(landed["span"]["target"], "main");
    assert_eq!(landed["span"]["table"], "db.t");
    assert_eq!(landed["span"]["state"], "succeeded");
    assert_eq!(landed["span"]["commit"], landing.as_str());
    let in_run = events
        .iter()
        .filter(|e| e["fields"]["message"] == "committed")
        .filter(|e| {
            e["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == "run" && s["id"] == id.as_str())
            })
        })
        .count();
    assert!(
        in_run >= 2,
        "the run's commits (create, append) are in its span: {logs}"
    );
}
