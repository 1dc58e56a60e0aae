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
[roles.runner]
rules = [{ refs = ["dev/**"], allow = ["run"] }]
[principals]
alice = ["dev"]
bob = ["dev"]
carol = ["runner"]
"#;

fn floe_as(run: &Running, token: &str, args: &[&str]) -> Cli {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    run.floe(&run.config_dir(), &all)
}

/// `dev/x` with the namespace `db` and `tables` imported there (ids in their ranges).
fn seed(run: &Running, files: &Path, tables: &[(&str, std::ops::Range<i64>)]) {
    floe_as(run, ADMIN, &["branch", "create", "dev/x"]).expect(0);
    floe_as(run, ADMIN, &["namespace", "create", "db", "--ref", "dev/x"]).expect(0);
    for (table, ids) in tables {
        let f = parquet(files, &format!("{table}.parquet"), ids.clone());
        floe_as(
            run,
            ADMIN,
            &["import", p(&f), "--table", table, "--ref", "dev/x"],
        )
        .expect(0);
    }
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
            return "read %d" % len(f.read())
    except OSError as e:
        return type(e).__name__


def write(path):
    try:
        with open(path, "w") as f:
            f.write("planted")
        return "wrote"
    except OSError as e:
        return type(e).__name__


@bauplan.model(materialization_strategy="REPLACE")
def probe(data=bauplan.Model("t")):
    import pyarrow as pa

    with open("mine.txt", "w") as f:
        f.write("the worker's own folder is writable")
    paths = list(TRIES) + ["/", "/proc", "/etc", "write /floe/io", "write /floe/code"]
    outcomes = [attempt(p) for p in TRIES] + [
        ",".join(sorted(os.listdir("/"))),
        ",".join(sorted(n for n in os.listdir("/proc") if n.isdigit())),
        ",".join(sorted(os.listdir("/etc"))),
        write("/floe/io/planted.arrow"),
        write("/floe/code/planted.py"),
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
    // The admin token in a system folder workers otherwise see (`/usr`): covered.
    let system = SystemFolder::new();
    let token_file = system.0.join("admin-token");
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
    seed(
        &run,
        files.path(),
        &[("db.t", 0..50), ("db.secret", 1000..1010)],
    );
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
    assert_eq!(answer.len(), tries.len() + 5, "{answer:?}");
    let nobody = uid_of("nobody");
    let mut by_path = std::collections::BTreeMap::new();
    for row in &answer {
        // It ran as the worker user, read its input, wrote its own folder.
        assert_eq!(row["uid"], nobody, "{row}");
        assert_eq!(row["rows"], 50, "{row}");
        assert_eq!(row["own"], "the worker's own folder is writable", "{row}");
        by_path.insert(
            row["path"].as_str().unwrap().to_owned(),
            row["outcome"].as_str().unwrap().to_owned(),
        );
    }
    // Nothing: absent, refused, or (a covered file) empty.
    for t in &tries {
        let outcome = &by_path[t];
        assert!(
            ["FileNotFoundError", "PermissionError", "read 0"].contains(&outcome.as_str()),
            "the function got at {t}: {outcome}"
        );
    }
    // The run's inputs and code are read-only to it.
    for planted in ["write /floe/io", "write /floe/code"] {
        assert_ne!(by_path[planted], "wrote", "{planted}");
    }
    // Of /etc, what libraries and Python need, not the rest.
    let etc = &by_path["/etc"];
    assert!(etc.split(',').any(|n| n == "passwd"), "/etc shows {etc}");
    for absent in ["shadow", "environment", "default", "systemd", "sudoers"] {
        assert!(!etc.split(',').any(|n| n == absent), "/etc shows {etc}");
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

/// A folder under `/usr/local/share` (a system folder workers see), removed at the end.
struct SystemFolder(PathBuf);

impl SystemFolder {
    fn new() -> SystemFolder {
        let dir = PathBuf::from(format!(
            "/usr/local/share/floe-isolation-test-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        SystemFolder(dir)
    }
}

impl Drop for SystemFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uid_of(user: &str) -> u64 {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Processes of `uid` whose command line holds `marker`.
fn processes_of(uid: u64, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if owner == Some(uid) && cmdline.contains(marker) {
            found.push(format!("{}: {cmdline}", dir.display()));
        }
    }
    found
}

/// A function that leaves its process group (`setsid`), starts a child in a session of
/// its own, and outlives its timeout: when the run fails, nothing of it is left. A function
/// with `internet_access=True` needs `manage` on its target; an admin may run it.
const ESCAPE: &str = r#"
import os
import subprocess
import time

import bauplan


@bauplan.resources(timeout=3)
@bauplan.model(materialization_strategy="REPLACE")
def escape(data=bauplan.Model("t")):
    os.setsid()
    subprocess.Popen(["/bin/sleep", "SLEEP_MARK"], start_new_session=True)
    time.sleep(3600)
    return data
"#;

const ONLINE: &str = r#"
import bauplan


@bauplan.model(materialization_strategy="REPLACE", internet_access=True)
def online(data=bauplan.Model("t")):
    return data
"#;

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_a_confined_function_that_leaves_its_group_ends_with_its_run_and_the_network_needs_manage() {
    if !crate::authz_matrix::workers_confined() {
        eprintln!(
            "SKIPPED: this host cannot confine run workers (the server is not root or has no namespaces)"
        );
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    // An environment cache of its own: the default environment is built here, its import
    // check confined.
    let envs = files.path().join("envs");
    let run = Running::start_with_env(
        &["--auth", "required", "--policy", p(&policy)],
        &[("FLOE_ADMIN_TOKEN", ADMIN), ("FLOE_ENV_CACHE", p(&envs))],
    );
    seed(&run, files.path(), &[("db.t", 0..10)]);
    let alice = floe_as(&run, ADMIN, &["token", "create", "--principal", "alice"]);
    let alice = alice.expect(0).trim().to_owned();
    let project = |name: &str, code: &str| {
        let dir = files.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bauplan_project.yml"),
            format!("project:\n  id: {name}\n  name: {name}\ndefaults:\n  namespace: db\n"),
        )
        .unwrap();
        std::fs::write(dir.join("f.py"), code).unwrap();
        dir
    };

    // Marks of this test's processes: a sleep of its own length, workers of its own
    // environment cache.
    let sleep_mark = (100_000 + std::process::id()).to_string();
    let escape = project("escape", &ESCAPE.replace("SLEEP_MARK", &sleep_mark));
    let ended = floe_as(
        &run,
        &alice,
        &["--json", "run", p(&escape), "--ref", "dev/x"],
    );
    let record: Value = ended.json();
    assert_eq!(record["state"], "failed", "{record}");
    let built = std::fs::read_dir(&envs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("bin/python").exists())
        .count();
    assert_eq!(
        built, 1,
        "the default environment is built in the server's cache: {record}"
    );
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout"),
        "{record}"
    );
    let nobody = uid_of("nobody");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ours = || {
        let mut left = processes_of(nobody, &format!("sleep {sleep_mark}"));
        left.extend(processes_of(nobody, p(&envs)));
        left
    };
    let mut left = ours();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        left = ours();
    }
    assert!(left.is_empty(), "left running: {left:?}");

    // One dev's run is not another's to cancel; its owner may.
    let bob = floe_as(&run, ADMIN, &["token", "create", "--principal", "bob"]);
    let bob = bob.expect(0).trim().to_owned();
    let started = floe_as(
        &run,
        &alice,
        &["--json", "run", p(&escape), "--ref", "dev/x", "--detach"],
    );
    started.expect(0);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let refused = floe_as(&run, &bob, &["--json", "run", "cancel", &id]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("manage on dev/x"),
        "{refused:?}"
    );
    let cancelled = floe_as(&run, &alice, &["--json", "run", "cancel", &id]);
    assert_eq!(cancelled.json()["state"], "cancelled", "{cancelled:?}");

    // One who may start runs on dev/x but not read it reads nothing of it through a run.
    let carol = floe_as(&run, ADMIN, &["token", "create", "--principal", "carol"]);
    let carol = carol.expect(0).trim().to_owned();
    let head = floe_as(&run, ADMIN, &["--json", "branch", "show", "dev/x"]);
    let reader = files.path().join("reader");
    std::fs::create_dir_all(&reader).unwrap();
    std::fs::write(
        reader.join("bauplan_project.yml"),
        "project:\n  id: reader\n  name: reader\ndefaults:\n  namespace: db\n",
    )
    .unwrap();
    std::fs::write(
        reader.join("copy.sql"),
        "-- bauplan: materialization_strategy = REPLACE\nSELECT * FROM db.t",
    )
    .unwrap();
    let refused = floe_as(
        &run,
        &carol,
        &["--json", "run", p(&reader), "--ref", "dev/x"],
    );
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(said.contains("403") && said.contains("read"), "{said}");
    let after = floe_as(&run, ADMIN, &["--json", "branch", "show", "dev/x"]);
    assert_eq!(head.stdout, after.stdout, "a refused run changed dev/x");

    let online = project("online", ONLINE);
    let refused = floe_as(
        &run,
        &alice,
        &["--json", "run", p(&online), "--ref", "dev/x"],
    );
    assert_ne!(refused.code, Some(0), "{refused:?}");
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        said.contains("internet_access=True") && said.contains("manage on dev/x"),
        "{refused:?}"
    );
    let landed = floe_as(
        &run,
        ADMIN,
        &["--json", "run", p(&online), "--ref", "dev/x"],
    );
    assert_eq!(landed.json()["state"], "succeeded", "{landed:?}");
}
