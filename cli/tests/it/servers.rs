//! Several `floe serve` processes on one catalog in PostgreSQL (`FLOE_TEST_PG`, which
//! `.ci/run` starts) and one warehouse folder: what one server writes, another reads; races
//! through different servers resolve as they do in one; a key sent to two servers applies
//! once; a killed server's run is settled by another after its lease, and a paused one's
//! lands nothing when it wakes; a live run's log streams through another server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Running, eventually, key, merge_in_thread};

/// Servers sharing one catalog schema and one warehouse.
struct Cluster {
    servers: Vec<Running>,
    store: String,
    schema: String,
    warehouse: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize, extra: &[&str]) -> Cluster {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut cluster = Cluster {
            servers: Vec::new(),
            store: std::env::var("FLOE_TEST_PG").expect(
                "FLOE_TEST_PG names the test PostgreSQL (.ci/run starts one; by hand: source .ci/pg.sh && pg_up)",
            ),
            schema: format!(
                "c_{}_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            warehouse: tempfile::tempdir().unwrap(),
        };
        for _ in 0..n {
            cluster.add(extra);
        }
        cluster
    }

    /// Starts one more server on the catalog; returns its index.
    fn add(&mut self, extra: &[&str]) -> usize {
        let warehouse = self.warehouse.path().to_str().unwrap().to_owned();
        let mut args = vec![
            "--store",
            &self.store,
            "--store-schema",
            &self.schema,
            "--warehouse",
            &warehouse,
        ];
        args.extend_from_slice(extra);
        self.servers.push(Running::start_args(&args));
        self.servers.len() - 1
    }
}

#[test]
fn what_one_server_writes_the_others_read_at_once() {
    let c = Cluster::start(3, &[]);
    let [a, b, z] = &c.servers[..] else {
        unreachable!()
    };
    let head = a.namespace("main", "sales");
    // A ref head is read from the database on every request: no server serves a stale one.
    assert_eq!(b.head("main"), head);
    assert_eq!(z.head("main"), head);
    b.branch("dev", "main");
    let on_dev = z.namespace("dev", "staging");
    assert_eq!(a.head("dev"), on_dev);
    let listed = a.get("/api/v1/refs").body["refs"].clone();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "main"]);
    // A table created through one server loads through another (one warehouse).
    let created = a.post(
        "/iceberg/v1/main/namespaces/sales/tables",
        json!({"name": "orders", "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": false, "type": "long"}]}}),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let loaded = z.get("/iceberg/v1/main/namespaces/sales/tables/orders");
    assert_eq!(loaded.status, 200, "{:?}", loaded.body);
    assert_eq!(
        loaded.body["metadata-location"],
        created.body["metadata-location"]
    );
}

#[test]
fn merges_racing_through_two_servers_exactly_one_wins() {
    let c = Cluster::start(2, &[]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    a.namespace("main", "base");
    a.branch("one", "main");
    b.branch("two", "main");
    a.namespace("one", "x");
    b.namespace("two", "y");
    for round in 0..5 {
        let head = a.head("main");
        let merge = |via: &Running, source: &str| merge_in_thread(via.url(), source, &head);
        let (x, y) = (merge(a, "one"), merge(b, "two"));
        let mut results = vec![x.join().unwrap(), y.join().unwrap()];
        results.sort_by_key(|(status, _)| *status);
        assert_eq!(
            (results[0].0, results[1].0),
            (200, 409),
            "round {round}: {results:?}"
        );
        let winner = results[0].1["head"].as_str().unwrap().to_owned();
        assert_eq!(results[1].1["type"], "ReferenceConflict");
        assert_eq!(results[1].1["currentHead"], winner.as_str());
        assert_eq!(b.head("main"), winner);
        a.namespace("one", &format!("x{round}"));
        b.namespace("two", &format!("y{round}"));
    }
}

#[test]
fn one_idempotency_key_sent_to_two_servers_applies_once() {
    let c = Cluster::start(2, &[]);
    for round in 0..10 {
        let k = key();
        let body = json!({"namespace": [format!("ns{round}")]});
        // Both at once; one may be told the other is in flight (409 + Retry-After), and
        // retries until it is not.
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let calls: Vec<_> = c
                .servers
                .iter()
                .map(|server| {
                    let (k, body) = (k.clone(), body.clone());
                    s.spawn(move || {
                        loop {
                            let r = server.send(
                                "POST",
                                "/api/v1/trees/main/namespaces",
                                &body,
                                Some(&k),
                            );
                            if r.status == 409 && r.body["type"] == "IdempotencyInFlight" {
                                assert!(r.headers.contains_key("retry-after"));
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            return (r.status, r.body);
                        }
                    })
                })
                .collect();
            calls.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            answers[0], answers[1],
            "round {round}: both answers are the one write's"
        );
        assert_eq!(answers[0].0, 201, "round {round}: {:?}", answers[0]);
        // Applied once: one reflog entry moved main to the answered head.
        let reflog = c.servers[1]
            .get("/api/v1/reflog?ref=main&pageSize=100")
            .body;
        let head = answers[0].1["head"].as_str().unwrap();
        let moves = reflog["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{reflog}"))
            .iter()
            .filter(|e| e["new"] == head)
            .count();
        assert_eq!(moves, 1, "round {round}: {reflog}");
    }
    // Every round added exactly one commit.
    let log = c.servers[0].get("/api/v1/trees/main/log?pageSize=100").body;
    assert_eq!(log["commits"].as_array().unwrap().len(), 10 + 1, "{log}");
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_pyiceberg_and_duckdb_write_one_branch_through_two_servers() {
    let c = Cluster::start(2, &[]);
    let out =
        crate::clients::scenario_with(&c.servers[0], "two_servers.py", &[&c.servers[1].url()]);
    assert!(out.contains("retries after lost races"), "{out}");
}

#[test]
fn a_killed_servers_run_is_settled_by_another_after_its_lease() {
    // The first server renews a 5 s lease; the second runs maintenance every second.
    let mut c = Cluster::start(1, &["--server-lease", "5s"]);
    c.add(&["--maintenance-interval", "1s"]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let id = crate::pipelines::slow_run_started(a);
    let before = b.head("main");
    // While the first server lives, its run is its own: the second leaves it running.
    let running = b.get(&format!("/api/v1/runs/{id}")).body;
    assert_eq!(running["state"], "running", "{running}");
    let mut c = c;
    let placeholder = Running::start();
    std::mem::replace(&mut c.servers[0], placeholder)
        .server
        .kill9();
    let b = &c.servers[1];
    let settled = eventually(Duration::from_secs(60), || {
        let r = b.get(&format!("/api/v1/runs/{id}")).body;
        (r["state"] != "running").then_some(r)
    });
    assert_eq!(settled["state"], "failed", "{settled}");
    assert!(
        settled["error"].as_str().unwrap().contains("stopped"),
        "{settled}"
    );
    assert_eq!(b.head("main"), before, "nothing landed");
}

/// A server paused (SIGSTOP), not dead: another settles its run after the lease; woken
/// up, the paused server lands nothing and writes nothing over the settled record.
#[test]
fn a_paused_servers_run_settled_elsewhere_lands_nothing_when_it_wakes() {
    let mut c = Cluster::start(1, &["--server-lease", "5s"]);
    c.add(&["--maintenance-interval", "1s"]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let id = crate::pipelines::slow_run_started(a);
    let before = b.head("main");
    a.server.signal("STOP");
    let settled = eventually(Duration::from_secs(60), || {
        let r = b.get(&format!("/api/v1/runs/{id}")).body;
        (r["state"] != "running").then_some(r)
    });
    a.server.signal("CONT");
    assert_eq!(settled["state"], "failed", "{settled}");
    // Woken, the first server goes on with the run until it finds it settled.
    let log = eventually(Duration::from_secs(120), || {
        let text = a.get_text(&format!("/api/v1/runs/{id}/logs"));
        text.contains("ended").then_some(text)
    });
    assert!(
        log.contains("settled") || log.contains("has ended"),
        "{log}"
    );
    for server in [a, b] {
        assert_eq!(server.head("main"), before, "nothing landed");
        let seen = server.get(&format!("/api/v1/runs/{id}")).body;
        assert_eq!(seen["state"], "failed", "{seen}");
        assert_eq!(seen["error"], settled["error"], "the settled record stands");
    }
}

#[test]
fn store_copy_moves_a_sled_catalog_to_postgres_resumably_and_verified() {
    // A catalog on sled: namespaces, a branch, a table with a commit, a tag, a merge.
    let sled = Running::start_args(&["--store", "sled"]);
    sled.namespace("main", "sales");
    sled.branch("dev", "main");
    let created = sled.post(
        "/iceberg/v1/dev/namespaces/sales/tables",
        json!({"name": "orders", "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": false, "type": "long"}]}}),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let merged = sled.post("/api/v1/trees/main/merge", json!({"source": "dev"}));
    assert_eq!(merged.status, 200, "{:?}", merged.body);
    let tag = sled.post(
        "/api/v1/refs",
        json!({"name": "v1", "from": "main", "kind": "tag"}),
    );
    assert_eq!(tag.status, 201, "{:?}", tag.body);
    let refs = sled.get("/api/v1/refs").body;
    let log = sled.get("/api/v1/trees/main/log?pageSize=100").body;
    let reflog = sled.get("/api/v1/reflog?pageSize=100").body;
    // Stopped (the copy reads a store no server holds).
    let Running { server, dir, .. } = sled;
    server.signal("TERM");
    server.wait();
    let data = dir.path().to_owned();

    let url = std::env::var("FLOE_TEST_PG").expect("FLOE_TEST_PG");
    let schema = format!(
        "copy_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let copy = |schema: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["store", "copy", "--data-dir"])
            .arg(&data)
            .args(["--to", &url, "--to-schema", schema])
            .output()
            .unwrap()
    };
    // Twice: the second run finds everything there (what a resumed copy does) and verifies.
    for _ in 0..2 {
        let out = copy(&schema);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("verified"), "{text}");
    }
    // A server on the copy answers as the sled server did (the same warehouse folder).
    let warehouse = data.join("warehouse");
    let pg = Running::start_args(&[
        "--store",
        &url,
        "--store-schema",
        &schema,
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]);
    assert_eq!(pg.get("/api/v1/refs").body, refs);
    assert_eq!(pg.get("/api/v1/trees/main/log?pageSize=100").body, log);
    assert_eq!(pg.get("/api/v1/reflog?pageSize=100").body, reflog);
    let loaded = pg.get("/iceberg/v1/v1/namespaces/sales/tables/orders");
    assert_eq!(loaded.status, 200, "{:?}", loaded.body);
    // New writes continue the reflog's sequence.
    pg.namespace("main", "after");
    let newest = pg.get("/api/v1/reflog?pageSize=1").body;
    assert_eq!(
        newest["entries"][0]["seq"].as_u64().unwrap(),
        reflog["entries"][0]["seq"].as_u64().unwrap() + 1
    );
    // Into a schema holding another catalog: refused, nothing changed there.
    let out = copy(&schema);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds another catalog"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_run_is_cancelled_through_another_server() {
    let c = Cluster::start(2, &[]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let id = crate::pipelines::slow_run_started(a);
    let before = a.head("main");
    // The second server asks the first (through the catalog); its answer waits for the end.
    let r = b.post(&format!("/api/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "cancelled", "{:?}", r.body);
    let seen = a.get(&format!("/api/v1/runs/{id}")).body;
    assert_eq!(seen["state"], "cancelled", "{seen}");
    assert_eq!(a.head("main"), before, "nothing landed");
}

#[test]
fn a_runs_log_and_code_read_through_another_server() {
    let c = Cluster::start(2, &[]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let id = crate::pipelines::finished_run(a);
    let here = a.get_text(&format!("/api/v1/runs/{id}/logs"));
    assert!(here.contains("ended"), "{here}");
    // Kept in the catalog when the run ended (just after its record did).
    let there = eventually(Duration::from_secs(30), || {
        let text = b.get_text(&format!("/api/v1/runs/{id}/logs"));
        (!text.is_empty()).then_some(text)
    });
    assert_eq!(there, here);
    let code = |server: &Running| {
        let mut r = ureq::get(format!("{}/api/v1/runs/{id}/code", server.url()))
            .call()
            .unwrap();
        r.body_mut().read_to_vec().unwrap()
    };
    let (ours, theirs) = (code(a), code(b));
    assert!(!ours.is_empty());
    assert_eq!(theirs, ours, "the code snapshot through the other server");
}

#[test]
fn a_live_runs_log_streams_through_another_server() {
    let c = Cluster::start(2, &[]);
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let id = crate::pipelines::slow_run_started(a);
    // Followed through the other server while the run lives: what its server wrote comes
    // as that server shares it, not when the run ends.
    let mut log = ureq::get(format!("{}/api/v1/runs/{id}/logs?follow=true", b.url()))
        .call()
        .unwrap()
        .into_body()
        .into_reader();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains(" slow info running\n") {
        let n = std::io::Read::read(&mut log, &mut byte).unwrap();
        assert!(
            n == 1,
            "the followed log ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
    }
    let state = a.get(&format!("/api/v1/runs/{id}")).body["state"].clone();
    assert_eq!(state, "running", "the line came while the run lived");
    // Cancelled: the follower reads on to the end of the share made when the run ended,
    // and stops there; it has the log as the run's own server has it.
    let r = a.post(&format!("/api/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    std::io::Read::read_to_end(&mut log, &mut seen).unwrap();
    let followed = String::from_utf8(seen).unwrap();
    assert!(followed.contains("ended"), "{followed}");
    assert_eq!(followed, a.get_text(&format!("/api/v1/runs/{id}/logs")));
}
