//! Pipeline runs end to end (issue 16), against a real `floe serve`: `floe run` of a SQL
//! project on a branch landed as one commit; a failing node, a conflicting and an
//! unrelated concurrent commit; planning errors with file and line; hostile archives; a
//! server killed mid-run. PyIceberg and DuckDB reading the outputs is a slow test.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::data::{p, parquet};
use crate::harness::{Running, Server, serve_command};

const PROJECT: &str = "project:\n  id: 5e1f0c2a\n  name: demo\nparameters:\n  min_id:\n    type: int\n    default: 10\ndefaults:\n  namespace: db\n";

/// A project folder with `files` (path, text) beside its project file.
pub(crate) fn project(run: &Running, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = run.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bauplan_project.yml"), PROJECT).unwrap();
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Three SQL models: a parameter, a fan-in, one REPLACE, one APPEND, one NONE.
pub(crate) const DEMO: &[(&str, &str)] = &[
    (
        "models/base.sql",
        "-- bauplan: materialization_strategy = REPLACE\nSELECT id, name, score AS Score FROM t WHERE id >= $min_id",
    ),
    ("models/evens.sql", "SELECT ID FROM base WHERE id % 2 = 0"),
    (
        "report.sql",
        "-- bauplan: materialization_strategy = APPEND\nSELECT b.id, b.score FROM base b JOIN evens e ON b.id = e.id",
    ),
    // Not part of the run: only the project file, .py, .sql and requirements.txt travel.
    ("notes.txt", "left at home"),
];

/// A server with `db.t` (ids 0..100) on `main` and a branch `dev` from it.
pub(crate) fn seeded() -> Running {
    let run = Running::start();
    seed(&run);
    run
}

/// `db.t` (ids 0..100) on `main` and a branch `dev` from it, on a running server.
fn seed(run: &Running) {
    run.namespace("main", "db");
    let files = run.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let f = parquet(&files, "t.parquet", 0..100);
    run.floe(&run.config_dir(), &["import", p(&f), "--table", "db.t"])
        .expect(0);
    run.branch("dev", "main");
}

/// On `run`: `db.t` seeded and the demo project run to its end on `dev`; its id.
pub(crate) fn finished_run(run: &Running) -> String {
    seed(run);
    let dir = project(run, "demo", DEMO);
    let out = run_floe(
        run,
        &[
            "--json",
            "run",
            p(&dir),
            "--ref",
            "dev",
            "--param",
            "min_id=20",
        ],
    );
    out.expect(0);
    out.json()["id"].as_str().unwrap().to_owned()
}

/// On `run`: `db.t` seeded, and a slow run started detached and running; its id.
pub(crate) fn slow_run_started(run: &Running) -> String {
    seed(run);
    let dir = project(run, "slow", &[("slow.sql", SLOW)]);
    detached_until_running(run, &dir)
}

pub(crate) fn count(run: &Running, table: &str, at: &str) -> Result<i64, Value> {
    let r =
        run.query_json(json!({ "sql": format!("SELECT count(*) AS n FROM {table}"), "ref": at }));
    if r.status != 200 {
        return Err(r.body);
    }
    Ok(r.body[0]["n"].as_i64().unwrap())
}

pub(crate) fn run_floe(run: &Running, args: &[&str]) -> crate::harness::Cli {
    run.floe(&run.config_dir(), args)
}

#[test]
fn a_sql_project_runs_on_a_branch_and_lands_as_one_commit() {
    let run = seeded();
    let dir = project(&run, "demo", DEMO);
    let main_before = run.head("main");
    let dev_before = run.head("dev");
    let out = run_floe(
        &run,
        &[
            "--json",
            "run",
            p(&dir),
            "--ref",
            "dev",
            "--param",
            "min_id=20",
        ],
    );
    out.expect(0);
    let record = out.json();
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["kind"], "run");
    let id = record["id"].as_str().unwrap();
    let landed = record["landed"].as_str().unwrap();
    assert_eq!(run.head("dev"), landed);
    assert_eq!(run.head("main"), main_before, "main is untouched");
    // One commit on dev, carrying the run's id, changing exactly the materialized tables.
    let commit = run.get(&format!("/api/v1/commits/{landed}"));
    assert_eq!(commit.status, 200, "{:?}", commit.body);
    assert_eq!(
        commit.body["commit"]["parents"],
        json!([dev_before]),
        "{}",
        commit.body
    );
    assert_eq!(commit.body["commit"]["properties"]["floe.run.id"], id);
    let changed: Vec<&str> = commit.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(changed, vec!["db.base", "db.report"]);
    // The outputs on dev and not on main; the NONE model nowhere.
    assert_eq!(count(&run, "db.base", "dev"), Ok(80));
    assert_eq!(count(&run, "db.report", "dev"), Ok(40));
    assert!(count(&run, "db.base", "main").is_err());
    assert!(count(&run, "db.evens", "dev").is_err());
    // The record: per node state, rows and output; the parameter as given.
    let nodes: Vec<(String, String, i64)> = record["pipeline"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![
            ("base".into(), "succeeded".into(), 80),
            ("evens".into(), "succeeded".into(), 40),
            ("report".into(), "succeeded".into(), 40),
        ]
    );
    assert_eq!(record["pipeline"]["parameters"]["min_id"], 20);
    assert_eq!(record["pipeline"]["projectName"], "demo");
    // The log, the code snapshot (exactly what a run needs), the listing's filters.
    let log = run.get_text(&format!("/api/v1/runs/{id}/logs"));
    assert!(log.contains(" base info 80 rows"), "{log}");
    assert!(log.contains(" run info succeeded"), "{log}");
    let code = code_entries(&run, id);
    assert_eq!(
        code,
        vec![
            "bauplan_project.yml",
            "models/base.sql",
            "models/evens.sql",
            "report.sql"
        ]
    );
    let listed = run.get("/api/v1/runs?kind=run&project=demo&state=succeeded");
    assert_eq!(
        listed.body["runs"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    let none = run.get("/api/v1/runs?kind=import&project=demo");
    assert_eq!(none.body["runs"], json!([]));
    let bad = run.get("/api/v1/runs?state=sleeping");
    assert_eq!(bad.status, 400);
    // The human form: the plan, the progress, the summary.
    let plan = run_floe(&run, &["run", p(&dir), "--ref", "dev", "--plan"]);
    let text = plan.expect(0);
    assert!(
        text.contains("report") && text.contains("base, evens"),
        "{text}"
    );
    let human = run_floe(&run, &["run", p(&dir), "--ref", "dev", "--dry-run"]);
    let text = human.expect(0);
    assert!(
        text.contains("succeeded") && text.contains("report"),
        "{text}"
    );
    assert_eq!(run.head("dev"), landed, "a dry run lands nothing");
}

/// The paths in a run's code snapshot.
fn code_entries(run: &Running, id: &str) -> Vec<String> {
    let response = ureq::get(format!("{}/api/v1/runs/{id}/code", run.url()))
        .call()
        .unwrap();
    let bytes = response.into_body().read_to_vec().unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failing_node_leaves_the_target_unchanged_and_seals_the_branch() {
    let run = seeded();
    let dir = project(
        &run,
        "failing",
        &[
            (
                "a.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
            ),
            (
                "b.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM a",
            ),
        ],
    );
    let before = run.head("main");
    let out = run_floe(&run, &["--json", "run", p(&dir)]);
    out.expect(4);
    let record = out.json();
    assert_eq!(record["state"], "failed");
    assert_eq!(record["pipeline"]["failure"], "execution");
    assert_eq!(record["pipeline"]["nodes"][1]["state"], "failed");
    assert!(
        record["pipeline"]["nodes"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x0"),
        "{record}"
    );
    assert_eq!(run.head("main"), before);
    assert!(count(&run, "db.a", "main").is_err());
    // Its branch stays, sealed.
    let branch = record["branch"].as_str().unwrap();
    let head = run.head(branch);
    let copy = run.post("/api/v1/refs", json!({ "name": "copy", "from": head }));
    assert_eq!(copy.status, 409, "{:?}", copy.body);
    assert_eq!(copy.body["type"], "RunSealed");
}

/// A model slow enough to commit beside while it runs (a cross join of `t` with a range).
const SLOW: &str = "-- bauplan: materialization_strategy = REPLACE\nSELECT t.id, sum(r.value % 7) AS s FROM t CROSS JOIN range(500000) r GROUP BY t.id";

/// Starts a run of `dir` detached and waits until its slow node runs; returns its id.
fn detached_until_running(run: &Running, dir: &Path) -> String {
    // Executed, never reused from the cache: the node must be running when this returns.
    let out = run_floe(run, &["--json", "run", p(dir), "--detach", "--no-cache"]);
    out.expect(0);
    let id = out.json()["id"].as_str().unwrap().to_owned();
    let mut log = ureq::get(format!("{}/api/v1/runs/{id}/logs?follow=true", run.url()))
        .call()
        .unwrap()
        .into_body()
        .into_reader();
    // The followed log says when the node starts: read up to that line.
    let mut seen = String::new();
    let mut byte = [0u8; 1];
    while !seen.contains(" slow info running\n") {
        let n = std::io::Read::read(&mut log, &mut byte).unwrap();
        assert!(n == 1, "the log ended before the node ran: {seen}");
        seen.push(byte[0] as char);
    }
    id
}

fn wait_for(run: &Running, id: &str) -> Value {
    let out = run_floe(run, &["run", "logs", id, "-f"]);
    out.expect(0);
    run.get(&format!("/api/v1/runs/{id}")).body
}

#[test]
fn a_change_to_an_input_after_the_fork_fails_the_run_and_an_unrelated_commit_does_not() {
    let run = seeded();
    let dir = project(&run, "slow", &[("slow.sql", SLOW)]);
    // Unrelated: a namespace created while the run runs.
    let id = detached_until_running(&run, &dir);
    run.namespace("main", "other");
    let record = wait_for(&run, &id);
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(count(&run, "db.slow", "main"), Ok(100));
    // Its input: db.t appended to while the run runs.
    let id = detached_until_running(&run, &dir);
    let files = run.dir.path().join("files");
    let more = parquet(&files, "more.parquet", 100..110);
    run_floe(
        &run,
        &["import", p(&more), "--table", "db.t", "--mode", "append"],
    )
    .expect(0);
    let head = run.head("main");
    let record = wait_for(&run, &id);
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["pipeline"]["failure"], "conflict");
    assert!(
        record["error"].as_str().unwrap().contains("db.t"),
        "{record}"
    );
    assert_eq!(
        run.head("main"),
        head,
        "the conflicting run changed nothing"
    );
    // `floe run` says a landing conflict with exit 3.
    let out = run_floe(&run, &["run", "show", &id]);
    assert!(out.expect(0).contains("conflict"), "{}", out.stdout);
}

#[test]
fn planning_errors_name_file_and_line_and_fork_nothing() {
    let run = seeded();
    let refs_before = run.get("/api/v1/refs").body["refs"]
        .as_array()
        .unwrap()
        .len();
    /// A project's files, the CLI's extra arguments, and what the error says.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[("a.sql", "SELECT 1 AS x"), ("sub/a.sql", "SELECT 2 AS x")],
            &[],
            "sub/a.sql:1: model a is defined twice",
        ),
        (
            &[("a.sql", "SELECT * FROM b"), ("b.sql", "\nSELECT * FROM a")],
            &[],
            "a.sql:1: the models form a cycle",
        ),
        (
            &[("a.sql", "SELECT x\nFROM nowhere")],
            &[],
            "a.sql:2: a reads nowhere, which is neither a model",
        ),
        (
            &[("a.sql", "SELECT id\nFROM t WHERE id > $nope")],
            &[],
            "a.sql:2: $nope names no parameter",
        ),
        (
            &[("a.sql", "SELECT 1 AS x")],
            &["--param", "min_id=many"],
            "bauplan_project.yml:5: parameter min_id",
        ),
        (
            &[("a.sql", "SELECT 1 AS x")],
            &["--param", "other=1"],
            "unknown parameter other",
        ),
        (
            &[("a.sql", "SELECT id\nFROM t WHERE")],
            &[],
            "a.sql:2: SQL syntax error",
        ),
        (
            &[("m.py", "import bauplan\n\n@bauplan.model(\ndef broken(:\n")],
            &[],
            "m.py:4",
        ),
    ];
    for (n, (files, args, said)) in cases.iter().enumerate() {
        let dir = project(&run, &format!("p{n}"), files);
        let mut argv = vec!["run", p(&dir)];
        argv.extend_from_slice(args);
        let out = run_floe(&run, &argv);
        out.expect(4);
        assert!(
            out.stderr.contains(said),
            "case {n}: {said}\n{}",
            out.stderr
        );
    }
    let runs = run.get("/api/v1/runs?kind=run");
    assert_eq!(runs.body["runs"], json!([]), "no run was recorded");
    let refs_after = run.get("/api/v1/refs").body["refs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(refs_before, refs_after, "nothing was forked");
    // A Python project plans (and shows its DAG) with --plan.
    let py = project(
        &run,
        "py",
        &[(
            "models.py",
            "import bauplan\n\n@bauplan.model(materialization_strategy='REPLACE')\n@bauplan.python('3.11')\ndef clean(data=bauplan.Model('t', columns=['id'])):\n    return data\n",
        )],
    );
    let out = run_floe(&run, &["--json", "run", p(&py), "--plan"]);
    out.expect(0);
    let plan = out.json();
    assert_eq!(plan["nodes"][0]["name"], "clean");
    assert_eq!(plan["nodes"][0]["kind"], "python");
    assert_eq!(plan["nodes"][0]["inputs"], json!(["db.t"]));
}

/// A tar of one entry whose header is written by hand, so that a hostile path or type is
/// kept as it is.
fn hostile_tar(path: &str, kind: u8, link: &str) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..path.len()].copy_from_slice(path.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(b"00000000001\0");
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = kind;
    header[157..157 + link.len()].copy_from_slice(link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    let mut data = [0u8; 512];
    data[0] = b'x';
    out.extend_from_slice(&data);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn post_archive(run: &Running, archive: &[u8]) -> (u16, Value) {
    post_run(run, "{}", archive, None)
}

/// `POST /api/v1/runs` with an options part, an archive and an optional Idempotency-Key.
fn post_run(run: &Running, options: &str, archive: &[u8], key: Option<&str>) -> (u16, Value) {
    let boundary = "floe-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{options}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"project\"; filename=\"p.tar\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(archive);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut request = ureq::post(format!("{}/api/v1/runs", run.url())).header(
        "Content-Type",
        &format!("multipart/form-data; boundary={boundary}"),
    );
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let mut response = request
        .config()
        .http_status_as_error(false)
        .build()
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every file under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_archives_are_refused_naming_the_entry_and_write_nothing() {
    let run = seeded();
    let before = tree(run.dir.path());
    let cases: &[(&str, u8, &str, &str)] = &[
        ("/etc/evil.sql", b'0', "", "absolute"),
        ("../evil.sql", b'0', "", "`..`"),
        ("a/../../evil.sql", b'0', "", "`..`"),
        ("link.sql", b'2', "/etc/passwd", "symbolic link"),
        ("hard.sql", b'1', "bauplan_project.yml", "hard link"),
        ("tty", b'3', "", "device"),
        ("disk", b'4', "", "device"),
        ("pipe", b'6', "", "named pipe"),
    ];
    for (path, kind, link, why) in cases {
        let (status, body) = post_archive(&run, &hostile_tar(path, *kind, link));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["type"], "InvalidProject", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{path:?}")) && message.contains(why),
            "{path}: {message}"
        );
    }
    let (status, body) = post_archive(&run, b"not a tar");
    assert_eq!(status, 400, "{body}");
    assert_eq!(tree(run.dir.path()), before, "nothing was written");
    assert_eq!(run.get("/api/v1/runs?kind=run").body["runs"], json!([]));
}

#[test]
fn a_server_killed_mid_run_fails_the_run_on_restart() {
    let mut run = seeded();
    let dir = project(&run, "slow", &[("slow.sql", SLOW)]);
    let before = run.head("main");
    let id = detached_until_running(&run, &dir);
    let scratch = run.dir.path().join("runs").join("scratch").join(&id);
    assert!(
        scratch.is_dir(),
        "the run has its scratch folder while it runs"
    );
    let data = run.dir.path().to_str().unwrap().to_owned();
    let restarted = || Server::start_with(&mut serve_command(Path::new(&data), &[]));
    // SIGKILL, then a new server on the same folder.
    let placeholder = Server::start(tempfile::tempdir().unwrap().path());
    std::mem::replace(&mut run.server, placeholder).kill9();
    run.server = restarted();
    let record = run.get(&format!("/api/v1/runs/{id}")).body;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["sealed"], true);
    assert!(!scratch.exists(), "its scratch folder is gone");
    assert_eq!(run.head("main"), before, "the target is unchanged");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("the server stopped"),
        "{record}"
    );
}

/// PyIceberg and DuckDB read a run's outputs on its branch, and not on `main` before a
/// merge (issue 16).
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_real_clients_read_a_runs_outputs_on_its_branch_only() {
    let run = seeded();
    let dir = project(&run, "demo", DEMO);
    run_floe(
        &run,
        &["run", p(&dir), "--ref", "dev", "--param", "min_id=20"],
    )
    .expect(0);
    let venv = std::env::var("FLOE_TEST_VENV").expect("FLOE_TEST_VENV names the test venv");
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients");
    let output = Command::new(format!("{venv}/bin/python"))
        .arg(format!("{scripts}/pipeline_outputs.py"))
        .arg(run.url())
        .current_dir(scripts)
        .env("HOME", run.dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && out.trim_end().ends_with("ok"),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // After a merge, main has them too.
    let merged = run.post("/api/v1/trees/main/merge", json!({ "source": "dev" }));
    assert!(merged.status < 300, "{:?}", merged.body);
    assert_eq!(count(&run, "db.report", "main"), Ok(40));
}

/// A run's submission retried under its Idempotency-Key answers the same run; the key with
/// another request is refused (422).
#[test]
fn a_retried_submission_answers_the_same_run() {
    let run = seeded();
    let mut builder = tar::Builder::new(Vec::new());
    let mut files = vec![("bauplan_project.yml", PROJECT)];
    files.extend(
        DEMO.iter()
            .filter(|(name, _)| name.ends_with(".sql"))
            .copied(),
    );
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, text.as_bytes())
            .unwrap();
    }
    let archive = builder.into_inner().unwrap();
    let key = crate::harness::key();
    let options = r#"{"ref": "dev"}"#;
    let (status, first) = post_run(&run, options, &archive, Some(&key));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["state"], "queued");
    let (status, again) = post_run(&run, options, &archive, Some(&key));
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    let runs = run.get("/api/v1/runs?kind=run");
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 1, "one run");
    let (status, other) = post_run(&run, r#"{"ref": "main"}"#, &archive, Some(&key));
    assert_eq!(status, 422, "{other}");
    let record = wait_for(&run, first["id"].as_str().unwrap());
    assert_eq!(record["state"], "succeeded", "{record}");
}

/// A foreground `floe run` on `dev` of a Python model that prints, then sleeps `seconds`:
/// the process, once the print reached its stdout, with the rest of its stdout.
fn foreground_sleeper(
    run: &Running,
    seconds: u32,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let model = format!(
        "import bauplan, time\n\n@bauplan.model(materialization_strategy=\"REPLACE\")\ndef waits(data=bauplan.Model(\"t\")):\n    print(\"waiting for ctrl-c\")\n    time.sleep({seconds})\n    return data\n"
    );
    let dir = project(run, "waits", &[("w.py", &model)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["run", p(&dir), "--ref", "dev"])
        .env("FLOE_SERVER", run.url())
        .env("FLOE_CONFIG_DIR", run.config_dir())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("waiting for ctrl-c"));
    assert!(waiting.is_some(), "the run's log reached the terminal");
    (child, lines)
}

/// Sends SIGINT to process `pid`.
fn interrupt(pid: u32) {
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// No worker of `foreground_sleeper(_, seconds)` is left.
fn assert_no_sleeper(seconds: u32) {
    let left = Command::new("pgrep")
        .args(["-f", &format!("time.sleep\\({seconds}\\)")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// Ctrl-C in a foreground `floe run` asks the server to cancel the run, says so and exits
/// 130; the run ends `cancelled`, its workers stopped, the branch unchanged (issue 18).
/// `floe run cancel` of a run that ended shows it as it is.
#[test]
fn ctrl_c_cancels_a_foreground_run_and_exits_130() {
    let run = seeded();
    let before = run.get("/api/v1/refs/dev").body["head"].clone();
    let (child, lines) = foreground_sleeper(&run, 402);
    interrupt(child.id());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{rest:?}\n{stderr}");
    assert!(stderr.contains("cancelling run"), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    let runs = run.get("/api/v1/runs?state=cancelled").body;
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(run.get("/api/v1/refs/dev").body["head"], before);
    assert_no_sleeper(402);
    let shown = run_floe(&run, &["run", "cancel", &id, "--json"]);
    shown.expect(0);
    assert_eq!(shown.json()["state"], "cancelled");
}

/// A second Ctrl-C stops waiting for the cancel's answer: with the server paused (SIGSTOP)
/// the cancel cannot answer, and `floe run` still exits 130 at once, saying so and how to
/// ask again (a request whose client went away may never be served).
#[test]
fn a_second_ctrl_c_stops_waiting_for_the_cancel() {
    use std::io::BufRead;
    let run = seeded();
    let (mut child, _lines) = foreground_sleeper(&run, 403);
    run.server.signal("STOP");
    interrupt(child.id());
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let cancelling = err
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("cancelling run"))
        .expect("the cancel is announced");
    let id = cancelling
        .split_whitespace()
        .nth(2)
        .expect("the run's id")
        .to_owned();
    interrupt(child.id());
    let rest: Vec<String> = err.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    run.server.signal("CONT");
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("not waiting for run")),
        "{rest:?}"
    );
    // Asked again, with the server awake, the run ends cancelled.
    let again = run_floe(&run, &["--json", "run", "cancel", &id]);
    assert_eq!(again.json()["state"], "cancelled", "{:?}", again.json());
    assert_no_sleeper(403);
}

/// `floe run wait ID` waits for a detached run and exits as `floe run` would (issue 18).
#[test]
fn floe_run_wait_exits_as_the_run_ended() {
    let run = seeded();
    let detach = |name: &str, files: &[(&str, &str)]| {
        let dir = project(&run, name, files);
        let out = run_floe(
            &run,
            &["--json", "run", p(&dir), "--ref", "dev", "--detach"],
        );
        out.expect(0);
        out.json()["id"].as_str().unwrap().to_owned()
    };
    let ok = detach("ok", DEMO);
    let waited = run_floe(&run, &["--json", "run", "wait", &ok]);
    waited.expect(0);
    assert_eq!(waited.json()["state"], "succeeded");
    let bad = detach(
        "bad",
        &[(
            "b.sql",
            "SELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM t",
        )],
    );
    let waited = run_floe(&run, &["--json", "run", "wait", &bad]);
    waited.expect(4);
    assert_eq!(waited.json()["state"], "failed");
}

/// `floe run rerun ID` runs the recorded code again on the recorded ref, with the recorded
/// parameters unless `--param` overrides them (issue 18).
#[test]
fn a_rerun_runs_the_recorded_code_with_its_recorded_parameters() {
    let run = seeded();
    let dir = project(&run, "demo", DEMO);
    let first = run_floe(
        &run,
        &[
            "--json",
            "run",
            p(&dir),
            "--ref",
            "dev",
            "--param",
            "min_id=20",
        ],
    );
    first.expect(0);
    let first = first.json();
    let id = first["id"].as_str().unwrap().to_owned();
    // The folder changes afterwards: a rerun runs what was recorded, not what is there.
    std::fs::write(
        dir.join("models/base.sql"),
        "SELECT 1 AS broken FROM nowhere",
    )
    .unwrap();
    let again = run_floe(&run, &["--json", "run", "rerun", &id]);
    again.expect(0);
    let again = again.json();
    assert_eq!(again["target"], "dev");
    assert_eq!(again["pipeline"]["code"], first["pipeline"]["code"]);
    assert_eq!(again["pipeline"]["parameters"]["min_id"], 20);
    assert_eq!(count(&run, "db.base", "dev"), Ok(80));
    let overridden = run_floe(
        &run,
        &["--json", "run", "rerun", &id, "--param", "min_id=90"],
    );
    overridden.expect(0);
    assert_eq!(overridden.json()["pipeline"]["parameters"]["min_id"], 90);
    assert_eq!(count(&run, "db.base", "dev"), Ok(10));
}

#[test]
fn an_unchanged_project_reuses_its_outputs_and_no_cache_runs_everything() {
    let run = seeded();
    let dir = project(&run, "demo", DEMO);
    let args = ["run", p(&dir), "--ref", "dev"];
    run_floe(&run, &args).expect(0);
    assert_eq!(count(&run, "db.report", "dev"), Ok(45));
    let again = run_floe(&run, &args);
    let out = again.expect(0);
    // Every node reused, and still landed: the APPEND appended again.
    assert_eq!(out.matches("succeeded (cached)").count(), 3, "{out}");
    assert_eq!(count(&run, "db.report", "dev"), Ok(90));
    let fresh = run_floe(
        &run,
        &["--json", "run", p(&dir), "--ref", "dev", "--no-cache"],
    );
    fresh.expect(0);
    let fresh = fresh.json();
    assert_eq!(fresh["pipeline"]["options"]["noCache"], true, "{fresh}");
    for node in fresh["pipeline"]["nodes"].as_array().unwrap() {
        assert!(node.get("cached").is_none(), "{node}");
    }
    assert_eq!(count(&run, "db.report", "dev"), Ok(135));
}
