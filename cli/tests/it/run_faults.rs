//! Runs under failure (issue 18): many runs of small SQL and Python projects against one
//! server while faults are injected at random (a worker killed, a worker's timeout, a
//! cancel, a conflicting commit on the target, `kill -9` of the server and a restart).
//! Afterwards no target shows part of a run, every failed or cancelled run is sealed,
//! no worker process or scratch folder is left, and every succeeded run names its
//! landing commit. The slow suite runs 100; `FLOE_FAULT_RUNS=1000` runs a thousand.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::data::{p, parquet};
use crate::harness::{Running, Server, serve_command};

const PROJECT: &str = "project:\n  id: faults\n  name: faults\ndefaults:\n  namespace: db\n";

/// Server flags: three runs at once, two nodes each.
const FLAGS: &[&str] = &["--max-runs", "3", "--run-workers", "2"];

/// A Python model whose worker says it is ready, then sleeps `secs` (`timeout` bounds
/// it), and a SQL model reading it: two outputs.
fn python(secs: u32, timeout: Option<u32>) -> Vec<(&'static str, String)> {
    let resources = timeout
        .map(|t| format!("@bauplan.resources(timeout={t})\n"))
        .unwrap_or_default();
    vec![
        (
            "py.py",
            format!(
                "import time\nimport bauplan\n\n{resources}@bauplan.model(materialization_strategy=\"REPLACE\")\ndef p1(data=bauplan.Model(\"t\", columns=[\"id\"])):\n    print(\"floe-fault-ready\", flush=True)\n    time.sleep({secs})\n    return data\n"
            ),
        ),
        (
            "p2.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT count(*) AS n, sum(id) AS s FROM p1".to_owned(),
        ),
    ]
}

fn sql() -> Vec<(&'static str, String)> {
    vec![
        (
            "s1.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT id, id * 3 AS x FROM t".to_owned(),
        ),
        (
            "s2.sql",
            "-- bauplan: materialization_strategy = APPEND\nSELECT count(*) AS n, max(x) AS m FROM s1".to_owned(),
        ),
    ]
}

/// The tables runs write.
const OUTPUTS: [&str; 4] = ["db.s1", "db.s2", "db.p1", "db.p2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    /// A commit to `db.t` (which every run reads) while the run works.
    Conflict,
    Cancel,
    KillWorker,
    WorkerTimeout,
    KillServer,
}

/// A small deterministic generator (xorshift), seeded per test run and printed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct World {
    run: Running,
    projects: PathBuf,
    log: PathBuf,
    appends: u32,
}

impl World {
    /// A project folder of `files`, made once per variant.
    fn project(&self, name: &str, files: &[(&str, String)]) -> PathBuf {
        let dir = self.projects.join(name);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("bauplan_project.yml"), PROJECT).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
        }
        dir
    }

    /// `kill -9` of the server, then a new one on the same folder (which settles its
    /// runs).
    fn kill_and_restart(&mut self) {
        let placeholder = Server::start(&self.run.dir.path().join("placeholder"));
        std::mem::replace(&mut self.run.server, placeholder).kill9();
        self.start();
    }

    fn start(&mut self) {
        let mut command = serve_command(self.run.dir.path(), FLAGS);
        self.run.server = Server::start_logging_to(&mut command, &self.log);
    }

    /// Submits a run in the background; its id.
    fn submit(&self, dir: &Path, no_cache: bool) -> String {
        let mut args = vec!["--json", "run", p(dir), "--ref", "main", "--detach"];
        if no_cache {
            args.push("--no-cache");
        }
        let out = self.run.floe(&self.run.config_dir(), &args);
        out.expect(0);
        out.json()["id"].as_str().unwrap().to_owned()
    }

    /// A commit on the target that every run's landing checks (an append to `db.t`).
    fn conflicting_commit(&mut self) {
        self.appends += 1;
        let n = i64::from(self.appends);
        let file = parquet(
            &self.projects,
            &format!("more-{n}.parquet"),
            1000 * n..1000 * n + 5,
        );
        self.run
            .floe(
                &self.run.config_dir(),
                &["import", p(&file), "--table", "db.t", "--mode", "append"],
            )
            .expect(0);
    }

    fn record(&self, id: &str) -> Value {
        let r = self.run.get(&format!("/api/v1/runs/{id}"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}

/// Follows run `id`'s log (`floe run logs -f`) until a line holds `text` or the run ends;
/// true when the line came. The follower is returned to wait on.
fn follow_until(run: &Running, id: &str, text: &str) -> (bool, std::process::Child) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["run", "logs", id, "-f"])
        .env("FLOE_SERVER", run.url())
        .env("FLOE_CONFIG_DIR", run.config_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = lines.any(|l| l.is_ok_and(|l| l.contains(text)));
    // The rest of the log is read by a thread, so the follower never blocks on a pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (seen, child)
}

/// The processes whose working folder is under a run's scratch folder (its workers).
fn workers_of(run_id: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd"))
            .is_ok_and(|cwd| cwd.to_string_lossy().contains(run_id))
        {
            pids.push(pid);
        }
    }
    pids
}

/// Workers of any run of this server: processes working under its scratch folder.
fn any_workers(scratch: &Path) -> Vec<String> {
    let root = std::fs::canonicalize(scratch).unwrap_or_else(|_| scratch.to_path_buf());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(&root)
        {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    found
}

/// No worker runs under `scratch`, and no run's scratch folder is there.
fn assert_nothing_left(scratch: &Path) {
    assert_eq!(any_workers(scratch), Vec::<String>::new());
    let left: Vec<_> = std::fs::read_dir(scratch)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch folders left: {left:?}");
}

fn kill9(pid: i32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Starts runs with faults until `total` were submitted; each run's fault, by id.
fn exercise(w: &mut World, total: usize, dice: &mut Dice) -> BTreeMap<String, Fault> {
    let mut faults = BTreeMap::new();
    let sql_dir = w.project("sql", &sql());
    let quick = w.project("py", &python(0, None));
    let slow = w.project("py-slow", &python(60, None));
    let timing_out = w.project("py-timeout", &python(60, Some(1)));
    let mut round = 0;
    while faults.len() < total {
        round += 1;
        if round % 5 == 0 {
            // A server killed while a worker runs and a SQL run is in flight.
            let victim = w.submit(&slow, true);
            let other = w.submit(&sql_dir, dice.below(2) == 0);
            let (ready, mut follower) = follow_until(&w.run, &victim, "floe-fault-ready");
            assert!(ready, "run {victim} never started its worker");
            w.kill_and_restart();
            let _ = follower.wait();
            faults.insert(victim, Fault::KillServer);
            faults.insert(other, Fault::KillServer);
            continue;
        }
        let mut followers = Vec::new();
        for _ in 0..3 {
            let fault = match dice.below(10) {
                0..=3 => Fault::None,
                4 | 5 => Fault::Conflict,
                6 => Fault::Cancel,
                7 | 8 => Fault::KillWorker,
                _ => Fault::WorkerTimeout,
            };
            let dir = match fault {
                Fault::None | Fault::Conflict => {
                    if dice.below(2) == 0 {
                        &sql_dir
                    } else {
                        &quick
                    }
                }
                Fault::Cancel | Fault::KillWorker | Fault::KillServer => &slow,
                Fault::WorkerTimeout => &timing_out,
            };
            let id = w.submit(dir, dice.below(2) == 0);
            faults.insert(id.clone(), fault);
            followers.push((id, fault));
        }
        let mut waiting = Vec::new();
        for (id, fault) in followers {
            match fault {
                Fault::None | Fault::WorkerTimeout | Fault::KillServer => {
                    waiting.push(follow_until(&w.run, &id, "\u{0}").1);
                }
                Fault::Conflict => {
                    w.conflicting_commit();
                    waiting.push(follow_until(&w.run, &id, "\u{0}").1);
                }
                Fault::Cancel | Fault::KillWorker => {
                    let (ready, child) = follow_until(&w.run, &id, "floe-fault-ready");
                    assert!(ready, "run {id} never started its worker");
                    if fault == Fault::Cancel {
                        w.run
                            .floe(&w.run.config_dir(), &["run", "cancel", &id])
                            .expect(0);
                    } else {
                        let pids = workers_of(&id);
                        assert!(!pids.is_empty(), "run {id} has a worker");
                        pids.into_iter().for_each(kill9);
                    }
                    waiting.push(child);
                }
            }
        }
        for mut child in waiting {
            let _ = child.wait();
        }
    }
    faults
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_runs_under_injected_faults_never_show_part_of_a_run() {
    let total: usize = std::env::var("FLOE_FAULT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let seed = std::env::var("FLOE_FAULT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("FLOE_FAULT_RUNS={total} FLOE_FAULT_SEED={seed}");
    let run = crate::pipelines::seeded();
    let projects = run.dir.path().join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    let log = run.dir.path().join("server.log");
    let mut w = World {
        run,
        projects,
        log,
        appends: 0,
    };
    w.kill_and_restart();
    let mut dice = Dice(seed);
    let faults = exercise(&mut w, total, &mut dice);
    // Every run has ended on the live server (each was followed to its end, or settled by
    // a restart): it left no worker and no scratch folder, before any restart clears them.
    let scratch = w.run.dir.path().join("runs").join("scratch");
    assert_nothing_left(&scratch);
    // A last restart: whatever a server left is settled, and it stays clean.
    w.kill_and_restart();

    let mut outcomes: BTreeMap<(Fault, String), usize> = BTreeMap::new();
    let mut landings: BTreeMap<String, String> = BTreeMap::new();
    for (id, fault) in &faults {
        let r = w.record(id);
        let state = r["state"].as_str().unwrap().to_owned();
        *outcomes.entry((*fault, state.clone())).or_default() += 1;
        match state.as_str() {
            "succeeded" => {
                let landed = r["landed"]
                    .as_str()
                    .unwrap_or_else(|| panic!("succeeded run {id} names no landing commit: {r}"));
                landings.insert(landed.to_owned(), id.clone());
            }
            "failed" | "cancelled" => assert_eq!(r["sealed"], true, "{r}"),
            other => panic!("run {id} is still {other} after a restart: {r}"),
        }
        let allowed: &[&str] = match fault {
            Fault::None | Fault::Conflict | Fault::KillServer => &["succeeded", "failed"],
            Fault::Cancel => &["cancelled"],
            Fault::KillWorker | Fault::WorkerTimeout => &["failed"],
        };
        assert!(allowed.contains(&state.as_str()), "{fault:?}: {r}");
        if *fault == Fault::WorkerTimeout {
            let error = r["error"].as_str().unwrap_or("");
            assert!(error.contains("timeout") || error.contains("longer"), "{r}");
        }
    }
    println!("outcomes (fault, state) -> runs: {outcomes:?}");

    // Every landing commit holds all of its run's outputs, and nothing else writes them.
    let mut token: Option<String> = None;
    let mut seen_landings = BTreeSet::new();
    loop {
        let mut path = "/api/v1/trees/main/log?pageSize=1000".to_owned();
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let page = w.run.get(&path).body;
        for c in page["commits"].as_array().unwrap() {
            let hash = c["hash"].as_str().unwrap();
            let detail = w.run.get(&format!("/api/v1/commits/{hash}")).body;
            let changed: BTreeSet<String> = detail["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["key"].as_str().unwrap().to_owned())
                .filter(|k| OUTPUTS.contains(&k.as_str()))
                .collect();
            match landings.get(hash) {
                Some(id) => {
                    let declared: BTreeSet<String> = w.record(id)["tables"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect();
                    assert_eq!(changed, declared, "landing {hash} of run {id}");
                    seen_landings.insert(hash.to_owned());
                }
                None => assert!(
                    changed.is_empty(),
                    "commit {hash} writes {changed:?} and is no run's landing"
                ),
            }
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen_landings.len(),
        landings.len(),
        "every succeeded run's landing is on main"
    );

    assert_nothing_left(&scratch);

    // The faults happened: some runs failed of each cause, and some succeeded.
    let count = |fault: Fault, state: &str| {
        outcomes
            .get(&(fault, state.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(count(Fault::None, "succeeded") > 0, "{outcomes:?}");
    assert!(count(Fault::KillWorker, "failed") > 0, "{outcomes:?}");
    assert!(count(Fault::Cancel, "cancelled") > 0, "{outcomes:?}");
    assert!(count(Fault::KillServer, "failed") > 0, "{outcomes:?}");
}
