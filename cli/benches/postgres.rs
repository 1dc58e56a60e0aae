//! The catalog on PostgreSQL (issue 21): a cluster of the bench's own on this machine with
//! fsync and synchronous_commit on (a unix socket), real `floe serve` processes on it.
//!
//! - **A commit over HTTP** (a namespace created on `main`, one at a time, the async
//!   generator): p50 against the database's own commit cost, measured in the same run by
//!   `pgbench` (PostgreSQL's C client) running one transaction that updates one row and
//!   inserts one.
//! - **Two servers against one** at the same total client concurrency (8 writers, each on
//!   its own branch): aggregate commits/s, with the CPU per commit of floe and of
//!   PostgreSQL and how much of the machine was busy.
//! - **loadTable** through one server on PostgreSQL against the same table through a
//!   server on sled, wrk at 64 connections (and at 16, reported), rounds alternating.
//!
//! `cargo bench -p floe --bench postgres` (about 3 minutes after the build);
//! `FLOE_BENCH_SCALE=10` divides counts and durations (not for the record).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::cpu::{cpu_time, machine_busy};
use support::loadgen::{Conn, Serial, runtime};
use support::server::Server;
use support::wrk::{self, Load};
use support::{Cpu, Row, Samples, Scale, machine_notes, us};

const WRITERS: usize = 8;
const TABLE: &str = "/iceberg/v1/main/namespaces/db/tables/t";

/// A PostgreSQL cluster of the bench's own, durable as a production one.
struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    url: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Pg {
    fn start(under: &Path) -> Pg {
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
            .expect("PostgreSQL's binaries (Debian's postgresql-15; .ci/pg.sh installs it)");
        let dir = tempfile::tempdir_in(under).unwrap();
        if is_root() {
            check(Command::new("chown").arg("postgres:").arg(dir.path()));
            // The folders above must let the postgres user through.
            let mut p = dir.path().parent();
            while let Some(d) = p {
                let _ = Command::new("chmod").arg("o+x").arg(d).status();
                p = d.parent();
            }
        }
        let pg = Pg {
            url: format!("host={} user=floe dbname=postgres", dir.path().display()),
            dir,
            bin,
        };
        check(
            pg.owner("initdb")
                .arg("-D")
                .arg(pg.dir.path().join("data"))
                .args(["-U", "floe", "--auth=trust", "--locale=C.UTF-8"]),
        );
        check(
            pg.owner("pg_ctl")
                .arg("-D")
                .arg(pg.dir.path().join("data"))
                .arg("-l")
                .arg(pg.dir.path().join("log"))
                .args(["-w", "start", "-o"])
                .arg(format!(
                    "-c listen_addresses='' -k {} -c max_connections=200 -c fsync=on -c synchronous_commit=on",
                    pg.dir.path().display()
                )),
        );
        pg
    }

    fn owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn psql(&self, sql: &str) -> String {
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
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// CPU the cluster used so far: the postmaster and every backend now alive (floe's
    /// pooled connections live for the whole phase).
    fn cpu(&self) -> Duration {
        let pid: u32 = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        std::iter::once(pid)
            .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
            .map(cpu_time)
            .sum()
    }

    /// pgbench, one client, one transaction updating one row and inserting one: the
    /// latency of each, from its per-transaction log.
    fn baseline(&self, seconds: u64, work: &Path) -> Samples {
        self.psql(
            "CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, v bigint); \
             INSERT INTO bench_row VALUES (1, 0) ON CONFLICT DO NOTHING; \
             CREATE TABLE IF NOT EXISTS bench_log (id bigserial PRIMARY KEY, v bigint)",
        );
        let script = work.join("baseline.sql");
        std::fs::write(
            &script,
            "BEGIN;\nUPDATE bench_row SET v = v + 1 WHERE id = 1;\nINSERT INTO bench_log (v) VALUES (1);\nEND;\n",
        )
        .unwrap();
        let logs = work.join("pgbench-logs");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        check(
            Command::new(self.bin.join("pgbench"))
                .args(["-n", "-c", "1", "-T", &seconds.to_string(), "-f"])
                .arg(&script)
                .arg("-l")
                .arg(format!("--log-prefix={}/tx", logs.display()))
                .arg(&self.url),
        );
        let mut latencies = Vec::new();
        for file in std::fs::read_dir(&logs).unwrap().flatten() {
            for line in std::fs::read_to_string(file.path()).unwrap().lines() {
                let us: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
                latencies.push(Duration::from_micros(us));
            }
        }
        assert!(!latencies.is_empty(), "pgbench logged no transaction");
        Samples::new(latencies)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .owner("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "stop"])
            .output();
    }
}

fn check(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server on the bench's cluster (schema `schema`), with a warehouse of the run.
fn on_pg(root: &Path, name: &str, pg: &Pg, schema: &str) -> Server {
    let data = root.join(name);
    std::fs::create_dir_all(&data).unwrap();
    Server::start(
        &data,
        &root.join(format!("{name}.log")),
        &[
            "--store",
            &pg.url,
            "--store-schema",
            schema,
            "--warehouse",
            root.join("warehouse").to_str().unwrap(),
        ],
    )
}

fn namespace_body(name: &str) -> String {
    format!(r#"{{"namespace":["{name}"]}}"#)
}

/// Serial commits through one server: each request's wall time, and the CPU the generator
/// and the server spent on them.
fn serial_commits(server: &Server, n: u64, tag: &str) -> (Samples, Cpu) {
    let mut g = Serial::connect(&server.base);
    let mut times = Vec::new();
    let (floe0, started) = (cpu_time(server.pid()), Instant::now());
    for i in 0..n {
        let started = Instant::now();
        g.post(
            "/api/v1/trees/main/namespaces",
            &namespace_body(&format!("{tag}{i}")),
            201,
        );
        times.push(started.elapsed());
    }
    let cpu = Cpu {
        generator_name: "async generator".into(),
        generator: g.cpu,
        server_name: "floe serve".into(),
        server: cpu_time(server.pid()) - floe0,
        requests: g.requests,
        wall: started.elapsed(),
    };
    (Samples::new(times), cpu)
}

/// `WRITERS` writers for `seconds`, writer `w` committing to branch `b{w}` through
/// `bases[w % bases.len()]`: the commits they made.
fn concurrent_commits(bases: &[&str], seconds: u64, tag: &str) -> u64 {
    let rt = runtime();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let base = bases[w % bases.len()].to_owned();
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    let mut conn = Conn::connect(&base).await;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let path = format!("/api/v1/trees/b{w}/namespaces");
                        let body = namespace_body(&format!("{tag}w{w}n{n}"));
                        let (status, answer) = conn.send("POST", &path, body.as_bytes()).await;
                        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    })
}

struct Throughput {
    commits: u64,
    wall: Duration,
    /// The writers' (this process's) CPU.
    generator_cpu: Duration,
    floe_cpu: Duration,
    pg_cpu: Duration,
    busy: Duration,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.commits as f64 / self.wall.as_secs_f64()
    }
    fn cpu(&self) -> Cpu {
        Cpu {
            generator_name: "async generator".into(),
            generator: self.generator_cpu,
            server_name: "floe serve".into(),
            server: self.floe_cpu,
            requests: self.commits,
            wall: self.wall,
        }
    }
    fn describe(&self) -> String {
        let per = |d: Duration| us(d / self.commits.max(1) as u32);
        format!(
            "{:.0} commits/s; CPU per commit: floe {}, PostgreSQL {}; machine busy {:.2} of {} cores",
            self.rate(),
            per(self.floe_cpu),
            per(self.pg_cpu),
            self.busy.as_secs_f64() / self.wall.as_secs_f64(),
            support::cpu::cores()
        )
    }
}

fn measure(pg: &Pg, servers: &[&Server], seconds: u64, tag: &str) -> Throughput {
    let floe0: Duration = servers.iter().map(|s| cpu_time(s.pid())).sum();
    let me = std::process::id();
    let (pg0, busy0, gen0, started) = (pg.cpu(), machine_busy(), cpu_time(me), Instant::now());
    let bases: Vec<&str> = servers.iter().map(|s| s.base.as_str()).collect();
    let commits = concurrent_commits(&bases, seconds, tag);
    Throughput {
        commits,
        wall: started.elapsed(),
        generator_cpu: cpu_time(me) - gen0,
        floe_cpu: servers.iter().map(|s| cpu_time(s.pid())).sum::<Duration>() - floe0,
        pg_cpu: pg.cpu() - pg0,
        busy: machine_busy() - busy0,
    }
}

/// The server's async ref reads and the statements they took, from `/metrics`.
fn ref_reads(base: &str) -> (u64, u64) {
    let metrics = support::Client::new(base).get("/metrics", 200);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("/metrics has no {name}")) as u64
    };
    (
        value("floe_store_async_ref_reads_total"),
        value("floe_store_async_ref_statements_total"),
    )
}

fn create_table(base: &str) {
    let c = support::Client::new(base);
    c.post(
        "/iceberg/v1/main/namespaces",
        r#"{"namespace":["db"]}"#,
        200,
    );
    let mut fields = String::new();
    for i in 1..=20 {
        if i > 1 {
            fields.push(',');
        }
        fields.push_str(&format!(
            r#"{{"id":{i},"name":"c{i}","required":false,"type":"long"}}"#
        ));
    }
    c.post(
        "/iceberg/v1/main/namespaces/db/tables",
        &format!(
            r#"{{"name":"t","schema":{{"type":"struct","schema-id":0,"fields":[{fields}]}}}}"#
        ),
        200,
    );
}

/// One load's rounds (a server at one connection count), with the machine's busy cores
/// and, on PostgreSQL, the ref reads and statements they took.
#[derive(Default)]
struct ReadLoad {
    runs: wrk::Series,
    busy: Vec<f64>,
    reads: u64,
    statements: u64,
}

impl ReadLoad {
    fn describe(&self) -> String {
        format!(
            "{:.0} req/s, p50 {}, {:.2} of the machine's cores busy ({:.2} by other processes)",
            self.runs.rate(),
            us(self.runs.p50()),
            support::median(self.busy.clone()),
            self.runs.other_cores(),
        )
    }
}

fn main() {
    let div = support::scale_divisor();
    let s = Scale(div);
    wrk::ensure();
    let root = support::bench_root();
    println!(
        "==== floe's catalog on PostgreSQL (issue 21){} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let pg = Pg::start(root.path());
    println!("{}", pg.psql("SELECT version()").trim());
    let mut rows = Vec::new();

    // A commit over HTTP against the database's own commit cost.
    let a = on_pg(root.path(), "a", &pg, "bench");
    let n = s.n(2_000, 50);
    serial_commits(&a, n / 10, "warm"); // connections and caches
    let baseline = pg.baseline(s.secs(10), root.path());
    let (floe, floe_cpu) = serial_commits(&a, n, "c");
    let budget = baseline.p50() * 2 + Duration::from_millis(1);
    rows.push(
        Row::new(
            "A commit over HTTP (one at a time), p50",
            format!(
                "p50 {}, p95 {} ({} commits)",
                us(floe.p50()),
                us(floe.p95()),
                floe.len()
            ),
        )
        .baseline(
            format!(
                "pgbench: one transaction updating a row and inserting one, p50 {}, p95 {} ({} transactions)",
                us(baseline.p50()),
                us(baseline.p95()),
                baseline.len()
            ),
            floe.p50().as_secs_f64() / baseline.p50().as_secs_f64(),
        )
        .budget(format!("<= 2x + 1 ms = {}", us(budget)), floe.p50() <= budget)
        .cpu(floe_cpu),
    );
    rows.last().unwrap().announce();

    // Two servers against one, the same 8 writers on 8 branches.
    let b = on_pg(root.path(), "b", &pg, "bench");
    let c = support::Client::new(&a.base);
    for w in 0..WRITERS {
        c.post(
            "/api/v1/refs",
            &format!(r#"{{"name":"b{w}","from":"main"}}"#),
            201,
        );
    }
    let seconds = s.secs(10);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let rounds = if div == 1 { 3 } else { 1 };
    for round in 0..rounds {
        one.push(measure(&pg, &[&a], seconds, &format!("r{round}one")));
        two.push(measure(&pg, &[&a, &b], seconds, &format!("r{round}two")));
    }
    let pick = |v: &mut Vec<Throughput>| {
        v.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
        v.remove(v.len() / 2)
    };
    let (one, two) = (pick(&mut one), pick(&mut two));
    rows.push(
        Row::new(
            format!(
                "Two servers, {WRITERS} writers on {WRITERS} branches (median of {rounds} rounds)"
            ),
            two.describe(),
        )
        .baseline(
            format!("one server, the same writers: {}", one.describe()),
            two.rate() / one.rate(),
        )
        .budget(">= 0.90x", two.rate() / one.rate() >= 0.9)
        .cpu(two.cpu())
        .cpu(one.cpu()),
    );
    rows.last().unwrap().announce();
    drop(b);

    // loadTable on PostgreSQL against sled.
    let sled_dir = root.path().join("sled");
    let sled = Server::start(&sled_dir, &root.path().join("sled.log"), &[]);
    create_table(&a.base);
    create_table(&sled.base);
    let wrk_s = s.secs(4);
    // Each round runs both servers at 16 and at 64 connections (the order alternating).
    // wrk keeps each connection's next request until its answer came (a closed loop), so a
    // rate at a given count is that count over the latency. On PostgreSQL a read waits for
    // a statement's round trip (one statement out at a time, shared by the reads queued
    // meanwhile): at 16 connections that wait leaves cores idle and few reads share a
    // statement. The figure is the ratio at 64 connections, where both servers keep the
    // machine busy; the ratio at 16 is reported beside it.
    let counts = [16, 64];
    let mut runs: [[ReadLoad; 2]; 2] = Default::default();
    for round in 0..if div == 1 { 10 } else { 1 } {
        let mut order: Vec<(usize, usize)> = (0..2).flat_map(|c| [(0, c), (1, c)]).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (server, c) in order {
            let (base, pid) = match server {
                0 => (&a.base, a.pid()),
                _ => (&sled.base, sled.pid()),
            };
            let (reads0, busy0) = (ref_reads(&a.base), machine_busy());
            let run = wrk::run(Load::get(base, TABLE, counts[c], wrk_s).server(pid));
            let busy = machine_busy().saturating_sub(busy0).as_secs_f64() / run.wall.as_secs_f64();
            let reads1 = ref_reads(&a.base);
            let load = &mut runs[server][c];
            load.busy.push(busy);
            load.reads += reads1.0 - reads0.0;
            load.statements += reads1.1 - reads0.1;
            load.runs.0.push(run);
        }
    }
    for (c, connections) in counts.into_iter().enumerate() {
        let (pg, sled) = (&runs[0][c], &runs[1][c]);
        let ratios: Vec<f64> = pg
            .runs
            .0
            .iter()
            .zip(&sled.runs.0)
            .map(|(p, l)| p.rate() / l.rate())
            .collect();
        let ratio = support::median(ratios.clone());
        let row = Row::new(
            format!(
                "loadTable through one server on PostgreSQL, wrk at {connections} connections{}",
                if c == 0 { " (reported)" } else { "" }
            ),
            format!(
                "{}; {:.3} ref statements per ref read ({} for {}) (rounds' ratios {ratios:.3?})",
                pg.describe(),
                pg.statements as f64 / pg.reads.max(1) as f64,
                pg.statements,
                pg.reads,
            ),
        )
        .baseline(
            format!(
                "the same table through a server on sled: {}",
                sled.describe()
            ),
            ratio,
        )
        .cpu(pg.runs.cpu())
        .cpu(sled.runs.cpu());
        rows.push(match c {
            0 => row,
            _ => row.budget(">= 0.60x", ratio >= 0.6),
        });
        rows.last().unwrap().announce();
    }
    support::report::print("floe's catalog on PostgreSQL", &rows, div);
}
