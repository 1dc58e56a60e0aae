//! Runs are not a way around the policy (issue 19): a Python function runs as the worker
//! user, in namespaces of its own, seeing its input and its folder and nothing of the
//! server's: not the store, not the token file, not the files of any table, not the
//! server's process. Where workers are confined, `run` (not `manage`) starts runs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::{p, parquet};
use crate::harness::{Cli, Running};

const ADMIN: &str = "floe-admin-bootstrap-token-for-isolation";

const POLICY: &str = r#"
protected = ["main"]
[roles.dev]
rules = [
  { refs = ["**"], allow = ["read"] },
  { refs = ["dev/**"], allow = ["write", "create", "delete", "run"] },
]
[principals]
alice = ["dev"]
"#;

fn floe_as(run: &Running, token: &str, args: &[&str]) -> Cli {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    run.floe(&run.config_dir(), &all)
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The function: tries each path (read a byte of a file, list a folder) and answers what
/// happened to each, with its user id and what it could do in its own folder and input.
const PROBE: &str = r#"
import json
import os

import bauplan

TRIES = json.loads(r'''TRIES_JSON''')


def attempt(path):
    try:
        if os.path.isdir(path):
            return "listed %d" % len(os.listdir(path))
        with open(path, "rb") as f:
            f.read(1)
        return "read"
    except OSError as e:
        return type(e).__name__


@bauplan.model(materialization_strategy="REPLACE")
def probe(data=bauplan.Model("t")):
    import pyarrow as pa

    with open("mine.txt", "w") as f:
        f.write("the worker's own folder is writable")
    paths = list(TRIES) + ["/", "/proc"]
    outcomes = [attempt(p) for p in TRIES] + [
        ",".join(sorted(os.listdir("/"))),
        ",".join(sorted(n for n in os.listdir("/proc") if n.isdigit())),
    ]
    n = len(paths)
    return pa.table({
        "path": paths,
        "outcome": outcomes,
        "uid": [os.getuid()] * n,
        "rows": [data.num_rows] * n,
        "own": [open("mine.txt").read()] * n,
    })
"#;

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_a_confined_function_cannot_open_the_store_the_token_file_or_another_tables_files() {
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let token_file = files.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let run = Running::start_args(&[
        "--auth",
        "required",
        "--policy",
        p(&policy),
        "--admin-token-file",
        p(&token_file),
    ]);
    let data = run.dir.path().to_path_buf();
    let confined = crate::authz_matrix::workers_confined();

    // Two tables on main (the run reads `t`; `secret` is another table), a branch for alice.
    floe_as(&run, ADMIN, &["branch", "create", "dev/x"]).expect(0);
    floe_as(
        &run,
        ADMIN,
        &["namespace", "create", "db", "--ref", "dev/x"],
    )
    .expect(0);
    for (table, ids) in [("db.t", 0..50), ("db.secret", 1000..1010)] {
        let f = parquet(files.path(), &format!("{table}.parquet"), ids);
        floe_as(
            &run,
            ADMIN,
            &["import", p(&f), "--table", table, "--ref", "dev/x"],
        )
        .expect(0);
    }
    let alice = floe_as(&run, ADMIN, &["token", "create", "--principal", "alice"]);
    let alice = alice.expect(0).trim().to_owned();

    let mut tries: Vec<PathBuf> = vec![data.clone(), token_file.clone()];
    tries.extend(files_under(&data.join("catalog")));
    tries.extend(files_under(&data.join("warehouse")));
    assert!(
        tries.iter().any(|t| t.to_string_lossy().contains("secret")),
        "{tries:?}"
    );
    // The server's own view of the host, through its process.
    let server = run.server.pid();
    tries.push(PathBuf::from(format!(
        "/proc/{server}/root{}",
        data.display()
    )));
    tries.push(PathBuf::from(format!("/proc/{server}/environ")));
    let tries: Vec<String> = tries
        .iter()
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    let code = PROBE.replace("TRIES_JSON", &serde_json::to_string(&tries).unwrap());
    let project = files.path().join("probe");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("bauplan_project.yml"),
        "project:\n  id: probe\n  name: probe\ndefaults:\n  namespace: db\n",
    )
    .unwrap();
    std::fs::write(project.join("probe.py"), code).unwrap();

    let started = floe_as(
        &run,
        &alice,
        &["--json", "run", p(&project), "--ref", "dev/x"],
    );
    if !confined {
        // Where workers cannot be confined, only a manager starts runs.
        assert_eq!(started.code, Some(1), "{started:?}");
        assert!(started.stderr.contains("403") || started.stderr.contains("may not"));
        eprintln!(
            "SKIPPED: this host cannot confine run workers (the server is not root or has no namespaces)"
        );
        return;
    }
    let record: Value = started.json();
    assert_eq!(record["state"], "succeeded", "{record}");

    let answer = floe_as(
        &run,
        ADMIN,
        &[
            "--json",
            "query",
            "SELECT path, outcome, uid, rows, own FROM db.probe",
            "--ref",
            "dev/x",
        ],
    );
    answer.expect(0);
    let answer = answer.json().as_array().cloned().unwrap();
    assert_eq!(answer.len(), tries.len() + 2, "{answer:?}");
    let mut by_path = std::collections::BTreeMap::new();
    for row in &answer {
        // It ran as the worker user, read its input, wrote its own folder.
        assert_eq!(row["uid"], 65534, "{row}");
        assert_eq!(row["rows"], 50, "{row}");
        assert_eq!(row["own"], "the worker's own folder is writable", "{row}");
        by_path.insert(
            row["path"].as_str().unwrap().to_owned(),
            row["outcome"].as_str().unwrap().to_owned(),
        );
    }
    for t in &tries {
        let outcome = &by_path[t];
        assert!(
            outcome == "FileNotFoundError" || outcome == "PermissionError",
            "the function got at {t}: {outcome}"
        );
    }
    // Its root holds the system folders, its environment, its own paths (under /floe) and
    // nothing else of the host's; its /tmp is its own.
    let root = &by_path["/"];
    assert!(root.split(',').any(|n| n == "floe"), "/ shows {root}");
    for absent in ["home", "var", "srv", "run", "mnt", "opt"] {
        assert!(!root.split(',').any(|n| n == absent), "/ shows {root}");
    }
    // Its processes are its own: it is the first of its PID namespace.
    let pids = &by_path["/proc"];
    assert!(pids.split(',').any(|n| n == "1"), "/proc shows {pids}");
    assert!(
        !pids.split(',').any(|n| n == server.to_string()),
        "/proc shows the server: {pids}"
    );
}
