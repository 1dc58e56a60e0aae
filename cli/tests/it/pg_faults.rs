//! Faults of PostgreSQL under a serving floe, on a cluster of the test's own (it is
//! stopped and killed, so not the shared test cluster): a restart under load loses no
//! acknowledged commit and the requests meanwhile get 503 and succeed after; a connection
//! killed in the middle of a commit is reported as outcome unknown, and a retry with the
//! same Idempotency-Key resolves it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Running, eventually, key};

/// A throwaway PostgreSQL cluster on a unix socket in a folder of its own.
pub(crate) struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub(crate) url: String,
    /// More server settings (`-c name=value ...`), for every start.
    settings: String,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        PrivatePg::start_with(|_| String::new())
    }

    /// A cluster started with the settings `prepare` returns, given the cluster before
    /// its first start (its folder may take files the settings name).
    pub(crate) fn start_with(prepare: impl FnOnce(&PrivatePg) -> String) -> PrivatePg {
        let bin = std::env::var_os("FLOE_TEST_PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|b| b.join("initdb").exists())
                    .collect();
                found.sort();
                found.pop()
            })
            .expect("PostgreSQL's binaries (FLOE_TEST_PG_BIN, or Debian's postgresql-15)");
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            // initdb refuses to run as root: the cluster is the postgres user's.
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let mut pg = PrivatePg {
            url: format!("host={} user=floe dbname=postgres", dir.path().display()),
            dir,
            bin,
            settings: String::new(),
        };
        run(pg
            .as_owner(&pg.bin.join("initdb"))
            .arg("-D")
            .arg(pg.data())
            .args([
                "-U",
                "floe",
                "--auth=trust",
                "--locale=C.UTF-8",
                "--no-sync",
            ]));
        pg.settings = prepare(&pg);
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes `file` (in the cluster's folder) the server's own, readable by it only (as
    /// PostgreSQL wants its key).
    pub(crate) fn own(&self, file: &Path) {
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(file));
        }
        run(Command::new("chmod").arg("600").arg(file));
    }

    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn start_again(&self) {
        run(self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "start", "-o"])
            .arg(format!(
                "-c listen_addresses='' -k {} -c fsync=off {}",
                self.dir.path().display(),
                self.settings
            )));
    }

    /// Stops the server at once, as a crash would (no checkpoint, connections cut).
    fn kill(&self) {
        run(self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]));
    }

    pub(crate) fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg(&self.url)
            .args(["-Atc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A psql session reading statements from its standard input.
    fn session(&self) -> Child {
        Command::new(self.bin.join("psql"))
            .arg(&self.url)
            .args(["-At", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn postgres_restarted_under_load_loses_no_acknowledged_commit() {
    let pg = PrivatePg::start();
    let server = Running::start_args(&["--store", &pg.url, "--store-pool", "4"]);
    let acked = Mutex::new(Vec::<usize>::new());
    let (outage_503, unknown) = (AtomicBool::new(false), Mutex::new(Vec::<usize>::new()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for writer in 0..2usize {
            let (server, acked, outage_503, unknown, stop) =
                (&server, &acked, &outage_503, &unknown, &stop);
            s.spawn(move || {
                let mut i = writer;
                while !stop.load(Ordering::SeqCst) {
                    let k = key();
                    let body = json!({"namespace": [format!("ns{i}")]});
                    // The same request and key until it is answered: a 503 wrote nothing, a
                    // 500 may have (the retry's answer says which).
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let r =
                            server.send("POST", "/api/v1/trees/main/namespaces", &body, Some(&k));
                        match r.status {
                            201 => break,
                            503 => {
                                assert_eq!(r.body["type"], "Unavailable", "{:?}", r.body);
                                assert!(r.headers.contains_key("retry-after"));
                                outage_503.store(true, Ordering::SeqCst);
                            }
                            500 => unknown.lock().unwrap().push(i),
                            // The key's first attempt is still running here.
                            409 if r.body["type"] == "IdempotencyInFlight" => {}
                            other => panic!("ns{i}: {other} {:?}", r.body),
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    acked.lock().unwrap().push(i);
                    i += 2;
                }
            });
        }
        // The writers stop however this thread ends (a failed wait panics).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        eventually(Duration::from_secs(30), || {
            (acked.lock().unwrap().len() >= 10).then_some(())
        });
        pg.kill();
        eventually(Duration::from_secs(30), || {
            outage_503.load(Ordering::SeqCst).then_some(())
        });
        let before = acked.lock().unwrap().len();
        pg.start_again();
        eventually(Duration::from_secs(60), || {
            (acked.lock().unwrap().len() >= before + 10).then_some(())
        });
    });
    let acked = acked.into_inner().unwrap();
    // Every acknowledged namespace is there, and each applied once: one commit each.
    for i in &acked {
        let r = server.get(&format!("/iceberg/v1/main/namespaces/ns{i}"));
        assert_eq!(r.status, 200, "ns{i} was acknowledged: {:?}", r.body);
    }
    let log = server.get("/api/v1/trees/main/log?pageSize=1000").body;
    assert_eq!(
        log["commits"].as_array().unwrap().len(),
        acked.len() + 1,
        "one commit per acknowledged write (retries with the key applied nothing twice); unknown outcomes met: {:?}",
        unknown.into_inner().unwrap()
    );
}

#[test]
fn a_connection_killed_mid_commit_is_outcome_unknown_and_a_retry_resolves_it() {
    let pg = PrivatePg::start();
    let server = Running::start_args(&["--store", &pg.url]);
    server.namespace("main", "base");
    let before = server.head("main");
    // Another session holds the reflog counter's row: the next ref move waits on it, in the
    // middle of its commit.
    let mut holder = pg.session();
    let stdin = holder.stdin.as_mut().unwrap();
    stdin
        .write_all(b"BEGIN;\nSELECT v FROM floe_counters FOR UPDATE;\n")
        .unwrap();
    stdin.flush().unwrap();
    eventually(Duration::from_secs(30), || {
        let held = pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql' AND state = 'idle in transaction'",
        );
        (held.trim() == "1").then_some(())
    });
    let k = key();
    let body = json!({"namespace": ["late"]});
    let answer = std::thread::scope(|s| {
        let call =
            s.spawn(|| server.send("POST", "/api/v1/trees/main/namespaces", &body, Some(&k)));
        let pid = eventually(Duration::from_secs(30), || {
            let pids = pg.psql(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'floe' AND wait_event_type = 'Lock'",
            );
            pids.lines().next().map(str::to_owned)
        });
        pg.psql(&format!("SELECT pg_terminate_backend({pid})"));
        call.join().unwrap()
    });
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("outcome is unknown"),
        "{:?}",
        answer.body
    );
    let stdin = holder.stdin.as_mut().unwrap();
    stdin.write_all(b"ROLLBACK;\n\\q\n").unwrap();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_eq!(server.head("main"), before, "the killed move wrote nothing");
    // The retry with the same key resolves it: applied now, once; a second retry replays.
    let retry = server.send("POST", "/api/v1/trees/main/namespaces", &body, Some(&k));
    assert_eq!(retry.status, 201, "{:?}", retry.body);
    let again = server.send("POST", "/api/v1/trees/main/namespaces", &body, Some(&k));
    assert_eq!((again.status, &again.body), (201, &retry.body));
    let log = server.get("/api/v1/trees/main/log?pageSize=100").body;
    assert_eq!(log["commits"].as_array().unwrap().len(), 3, "{log}");
}
