//! The commit figures of the Iceberg bench (3, and the big tables of 2): serial table
//! commits through the async generator's one connection, floe serve's threads sampled
//! around each, the same-size metadata write and a plain store commit measured right after
//! each as baselines; the 10,000-snapshot fixture; the server's Iceberg steps timed apart.

use std::time::{Duration, Instant};

use floe_catalog::Warehouse;

use crate::Bench;
use crate::support::cpu::{Split, thread_cpu};
use crate::support::{Cpu, Row, Samples, us};
use crate::table::{Table, local};

/// Per-commit measures: each Iceberg commit with the server's CPU per thread group, then a
/// metadata write of the same size into the same folder, then a plain durable floe commit
/// over HTTP (the store-commit proxy).
#[derive(Default)]
pub struct CommitLog {
    latency: Vec<Duration>,
    bytes: Vec<u64>,
    commit_cpu: Vec<Split>,
    /// The generator's CPU in the Iceberg commits' requests.
    generator: Duration,
    write: Vec<Duration>,
    write_cpu: Vec<Duration>,
    proxy: Vec<Duration>,
    proxy_cpu: Vec<Split>,
}

impl CommitLog {
    pub fn commit(&mut self, t: &mut Table, b: &mut Bench) {
        let body = t.next_commit();
        let path = t.path();
        let before = b.threads.sample();
        let gen0 = b.g.cpu;
        let start = Instant::now();
        let text = b.g.post(&path, &body, 200);
        let elapsed = start.elapsed();
        self.generator += b.g.cpu - gen0;
        let cpu = b.threads.sample().since(&before);
        t.accept(&text);
        self.latency.push(elapsed);
        self.commit_cpu.push(cpu);
        let bytes = t.metadata_bytes();
        self.bytes.push(bytes);
        self.write(&b.warehouse, t, bytes);
        self.proxy(b);
    }

    /// The metadata write alone: the server's own code, the same size, the same folder.
    fn write(&mut self, warehouse: &Warehouse, t: &Table, bytes: u64) {
        let payload = vec![b' '; bytes as usize];
        let location = format!(
            "{}/metadata/bench-write-{:06}.json",
            t.location,
            self.write.len()
        );
        let cpu0 = thread_cpu();
        let start = Instant::now();
        warehouse
            .write_new(&location, &payload)
            .expect("the metadata-write baseline");
        self.write.push(start.elapsed());
        self.write_cpu.push(thread_cpu() - cpu0);
        let _ = std::fs::remove_file(local(&location));
    }

    /// A plain durable floe commit over HTTP: what the store's commit costs through HTTP.
    fn proxy(&mut self, b: &mut Bench) {
        let body = format!(r#"{{"namespace":["proxy{}"]}}"#, b.proxy_n);
        b.proxy_n += 1;
        let before = b.threads.sample();
        let start = Instant::now();
        b.g.post("/api/v1/trees/main/namespaces", &body, 201);
        self.proxy.push(start.elapsed());
        self.proxy_cpu.push(b.threads.sample().since(&before));
    }

    pub fn summary(&self) -> CommitSummary {
        let col =
            |f: &dyn Fn(&Split) -> Duration, v: &[Split]| Samples::new(v.iter().map(f).collect());
        let server: Duration = self.commit_cpu.iter().map(Split::total).sum();
        CommitSummary {
            latency: Samples::new(self.latency.clone()),
            tokio: col(&|s| s.request, &self.commit_cpu),
            durability: col(&|s| s.durability, &self.commit_cpu),
            sled: col(&|s| s.sled, &self.commit_cpu),
            other: col(&|s| s.other, &self.commit_cpu),
            total: col(&|s| s.total(), &self.commit_cpu),
            net: Samples::new(
                self.commit_cpu
                    .iter()
                    .zip(&self.write_cpu)
                    .map(|(s, w)| s.request.saturating_sub(*w))
                    .collect(),
            ),
            write: Samples::new(self.write.clone()),
            write_cpu: Samples::new(self.write_cpu.clone()),
            proxy: Samples::new(self.proxy.clone()),
            proxy_tokio: col(&|s| s.request, &self.proxy_cpu),
            bytes_min: self.bytes.iter().copied().min().unwrap_or(0),
            bytes_max: self.bytes.iter().copied().max().unwrap_or(0),
            cpu: Cpu {
                generator_name: "async generator".into(),
                generator: self.generator,
                server_name: "floe serve".into(),
                server,
                requests: self.latency.len() as u64,
                wall: self.latency.iter().sum(),
            },
        }
    }
}

pub struct CommitSummary {
    pub latency: Samples,
    pub tokio: Samples,
    pub durability: Samples,
    pub sled: Samples,
    pub other: Samples,
    pub total: Samples,
    /// Tokio-thread CPU of each commit minus the CPU of the same-size metadata write
    /// measured right after it.
    pub net: Samples,
    pub write: Samples,
    pub write_cpu: Samples,
    pub proxy: Samples,
    pub proxy_tokio: Samples,
    pub bytes_min: u64,
    pub bytes_max: u64,
    /// The generator's CPU in the commits beside floe serve's (all its threads).
    pub cpu: Cpu,
}

impl CommitSummary {
    fn breakdown(&self) -> String {
        format!(
            "floe serve's CPU per commit p50: tokio threads {} (p99 {}), durability thread {}, sled-io threads {}, other {}, all {}; the metadata write alone ({}..{} B, same folder, bench thread): wall {}, CPU {}; store commit (`POST /api/v1/trees/main/namespaces`, right after): p50 {}, tokio threads {}",
            us(self.tokio.p50()),
            us(self.tokio.p99()),
            us(self.durability.p50()),
            us(self.sled.p50()),
            us(self.other.p50()),
            us(self.total.p50()),
            self.bytes_min,
            self.bytes_max,
            us(self.write.p50()),
            us(self.write_cpu.p50()),
            us(self.proxy.p50()),
            us(self.proxy_tokio.p50())
        )
    }
}

/// 3a, 3b: `rounds` serial commits on each of `tables` (tables of at most `rounds`
/// snapshots), through one connection.
pub fn serial(b: &mut Bench, tables: &mut [Table], rounds: u64) -> Vec<Row> {
    let mut log = CommitLog::default();
    for _ in 0..rounds {
        for t in tables.iter_mut() {
            log.commit(t, b);
        }
    }
    let f = log.summary();
    let p99 = f.net.p99();
    let bound = f.write.p50() + f.proxy.p50() + Duration::from_millis(1);
    let how = format!(
        "{} commits, {} tables x {rounds}, one connection of the async generator",
        f.latency.len(),
        tables.len()
    );
    vec![
        Row::new(
            format!(
                "3a. floe serve's tokio-thread CPU per table commit (<= {rounds} snapshots), minus the same-size metadata write: p99"
            ),
            format!("{} (p50 {})", us(p99), us(f.net.p50())),
        )
        .budget("<= 1 ms", p99 <= Duration::from_millis(1))
        .cpu(f.cpu.clone())
        .note(format!("{how}; {}", f.breakdown())),
        Row::new(
            "3b. table commit end to end, serial: p50",
            format!("{} (p99 {})", us(f.latency.p50()), us(f.latency.p99())),
        )
        .baseline(
            format!(
                "metadata write {} + store commit {} + 1 ms = {}",
                us(f.write.p50()),
                us(f.proxy.p50()),
                us(bound)
            ),
            f.latency.p50().as_secs_f64() / bound.as_secs_f64(),
        )
        .budget(
            "<= metadata-write p50 + store-commit p50 + 1 ms",
            f.latency.p50() <= bound,
        )
        .cpu(f.cpu),
    ]
}

/// The fixture of figure 2 (`s1000`, `s10000`: one add-snapshot per commit over HTTP) and
/// figure 3c (the commit measures on the last commits of the big one).
pub fn big_tables(b: &mut Bench) -> (Table, Table, Vec<Row>) {
    let (mid_n, big_n) = (b.s.n(1_000, 20), b.s.n(10_000, 100));
    let mut mid = Table::create(&b.c, "s1000");
    let start = Instant::now();
    for _ in 0..mid_n {
        mid.commit(&mut b.g);
    }
    let mid_time = start.elapsed();
    let mut big = Table::create(&b.c, "s10000");
    let tail = b.s.n(200, 10).min(big_n);
    let mut log = CommitLog::default();
    b.g.reset();
    let server0 = crate::support::cpu::cpu_time(b.pid());
    let start = Instant::now();
    let mut chunk = Instant::now();
    let step = (big_n / 10).max(1);
    let mut build_cpu = None;
    for i in 0..big_n {
        if i == big_n - tail {
            build_cpu = Some(Cpu {
                generator_name: "async generator".into(),
                generator: b.g.cpu,
                server_name: "floe serve".into(),
                server: crate::support::cpu::cpu_time(b.pid()) - server0,
                requests: b.g.requests,
                wall: start.elapsed(),
            });
        }
        if i >= big_n - tail {
            log.commit(&mut big, b);
        } else {
            big.commit(&mut b.g);
        }
        if (i + 1) % step == 0 {
            println!(
                "   s10000: {} commits in {:.1?} (last {step}: {:.1?}; metadata now {} B)",
                i + 1,
                start.elapsed(),
                chunk.elapsed(),
                big.metadata_bytes()
            );
            chunk = Instant::now();
        }
    }
    let time = start.elapsed();
    let f = log.summary();
    let mut rows = vec![
        Row::new(
            format!("fixture: a table of {big_n} snapshots, one add-snapshot per commit over HTTP, serial"),
            format!(
                "{time:.1?} = {:.0} commits/s",
                big_n as f64 / time.as_secs_f64()
            ),
        )
        .note(format!(
            "{} B of metadata at the end; the `s1000` table: {mid_n} commits in {mid_time:.1?}",
            big.metadata_bytes()
        )),
        Row::new(
            format!(
                "3c. a commit of the {}-snapshot table (its last {tail} commits, {} B of metadata): p50",
                big.snapshots, f.bytes_max
            ),
            format!("{} (p99 {})", us(f.latency.p50()), us(f.latency.p99())),
        )
        .baseline(
            format!(
                "metadata write {} + store commit {} + 1 ms",
                us(f.write.p50()),
                us(f.proxy.p50())
            ),
            f.latency.p50().as_secs_f64()
                / (f.write.p50() + f.proxy.p50() + Duration::from_millis(1)).as_secs_f64(),
        )
        .cpu(f.cpu.clone())
        .note(format!(
            "tokio-thread CPU minus the write p50 {} p99 {}; {}",
            us(f.net.p50()),
            us(f.net.p99()),
            f.breakdown()
        )),
    ];
    if let Some(cpu) = build_cpu {
        rows[0].cpu.push(cpu);
    }
    let steps = crate::steps::commit_steps(&mut big, 10);
    rows.push(Row::new(
        format!(
            "3c. the server's Iceberg steps (iceberg 0.10.1, serde_json) timed apart in the bench on the {}-snapshot metadata, median of 10",
            big.snapshots
        ),
        steps.line(),
    ));
    (mid, big, rows)
}
