//! Figure 4 of the Iceberg bench: concurrent writers, each committing appends to its own
//! table, driven by the async generator (one connection per writer, all on one thread: a
//! commit must carry the snapshot id the previous answer made current, which wrk cannot
//! express). Its CPU is that thread's, shown beside floe serve's.

use std::time::{Duration, Instant};

use crate::Bench;
use crate::support::cpu::{Split, cpu_time, thread_cpu};
use crate::support::loadgen::{self, Conn};
use crate::support::{Cpu, Row, Samples, head, us};
use crate::table::{Table, metadata_location_of};

/// A writers run: `count` writers of `per` commits, on tables named `{prefix}-{i}`.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub prefix: &'a str,
    pub count: usize,
    pub per: u64,
    /// Each table on its own branch (`{prefix}-{i}`, made from main) instead of `main`.
    pub own_branches: bool,
    /// Every acknowledged commit is followed by a loadTable of the same table (not timed),
    /// and loads that answer an older metadata file are counted.
    pub read_back: bool,
}

pub struct Writers {
    pub latency: Samples,
    pub rate: f64,
    pub server_mean: Duration,
    /// floe serve's CPU per commit by thread group.
    pub split: Split,
    pub cpu: Cpu,
    /// Commits answered 409 `CommitFailedException` although no other client touched the
    /// table, then sent again unchanged after 1 ms; and the first such answer.
    pub spurious: u64,
    pub example: Option<String>,
    pub reads: u64,
    pub stale_reads: u64,
    pub stale_example: Option<String>,
}

/// What one writer saw.
#[derive(Default)]
struct Out {
    latency: Vec<Duration>,
    spurious: u64,
    example: Option<String>,
    reads: u64,
    stale_reads: u64,
    stale_example: Option<String>,
}

/// One writer: `per` commits to its table through its connection. A 409 is sent again
/// unchanged after 1 ms (and counted): nobody else writes the table, so its requirement
/// can only fail when the server answers from a state older than the writer's own last
/// commit.
async fn writer(mut conn: Conn, mut t: Table, per: u64, read_back: bool) -> Out {
    let mut out = Out::default();
    for _ in 0..per {
        let body = t.next_commit();
        let path = t.path();
        let start = Instant::now();
        let mut tries = 0;
        let text = loop {
            let (status, answer) = conn.send("POST", &path, body.as_bytes()).await;
            let text = String::from_utf8(answer).expect("a UTF-8 answer");
            match status {
                200 => break text,
                409 if text.contains("CommitFailedException") && tries < 10_000 => {
                    tries += 1;
                    out.spurious += 1;
                    out.example.get_or_insert_with(|| {
                        format!(
                            "commit of snapshot {} to {} (its own last commit, snapshot {}, was acknowledged): {}",
                            t.snapshots + 1,
                            t.name,
                            t.snapshots,
                            head(&text)
                        )
                    });
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => panic!(
                    "POST {path} {}: expected 200, got {status}: {}",
                    head(&body),
                    head(&text)
                ),
            }
        };
        out.latency.push(start.elapsed());
        t.accept(&text);
        if read_back {
            let (status, load) = conn.send("GET", &path, b"").await;
            assert_eq!(status, 200, "loadTable {path}");
            out.reads += 1;
            let answered = metadata_location_of(&String::from_utf8_lossy(&load));
            if answered != t.metadata_location {
                out.stale_reads += 1;
                out.stale_example.get_or_insert_with(|| {
                    format!(
                        "{}: the commit of snapshot {} was acknowledged with {}; the next loadTable answered {answered}",
                        t.name, t.snapshots, t.metadata_location
                    )
                });
            }
        }
    }
    out
}

pub fn writers(b: &mut Bench, shape: Shape<'_>) -> Writers {
    let Shape {
        prefix,
        count,
        per,
        own_branches,
        read_back,
    } = shape;
    let tables: Vec<Table> = (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i:02}");
            if own_branches {
                b.c.post(
                    "/api/v1/refs",
                    &format!(r#"{{"name":"{name}","from":"main"}}"#),
                    201,
                );
                Table::create_on(&b.c, &name, &name)
            } else {
                Table::create(&b.c, &name)
            }
        })
        .collect();
    let rt = loadgen::runtime();
    let base = b.server.base.clone();
    let conns: Vec<Conn> = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..count {
            conns.push(Conn::connect(&base).await);
        }
        conns
    });
    let m0 = b.c.route_time(crate::TABLE_ROUTE, "POST");
    let before = b.threads.sample();
    let server0 = cpu_time(b.pid());
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let outs: Vec<Out> = rt.block_on(async {
        let handles: Vec<_> = conns
            .into_iter()
            .zip(tables)
            .map(|(conn, t)| tokio::spawn(writer(conn, t, per, read_back)))
            .collect();
        let mut outs = Vec::new();
        for h in handles {
            outs.push(h.await.expect("a writer"));
        }
        outs
    });
    let elapsed = start.elapsed();
    let generator = thread_cpu() - cpu0;
    let server = cpu_time(b.pid()) - server0;
    let commits = outs.iter().map(|o| o.latency.len() as u64).sum::<u64>();
    let split = b.threads.sample().since(&before).per(commits);
    let server_mean = b.c.route_time(crate::TABLE_ROUTE, "POST").mean_since(&m0);
    let first = |f: fn(&Out) -> &Option<String>| outs.iter().find_map(|o| f(o).clone());
    Writers {
        rate: commits as f64 / elapsed.as_secs_f64(),
        latency: Samples::new(outs.iter().flat_map(|o| o.latency.clone()).collect()),
        server_mean,
        split,
        cpu: Cpu {
            generator_name: "async generator".into(),
            generator,
            server_name: "floe serve".into(),
            server,
            requests: commits,
            wall: elapsed,
        },
        spurious: outs.iter().map(|o| o.spurious).sum(),
        example: first(|o| &o.example),
        reads: outs.iter().map(|o| o.reads).sum(),
        stale_reads: outs.iter().map(|o| o.stale_reads).sum(),
        stale_example: first(|o| &o.stale_example),
    }
}

impl Writers {
    fn spurious_note(&self) -> String {
        if self.spurious == 0 {
            "no 409".to_owned()
        } else {
            format!(
                "**{} spurious 409s** ({:.2} per commit; each sent again after 1 ms, the latency counts from the first send); first: {}",
                self.spurious,
                self.spurious as f64 / self.latency.len() as f64,
                self.example.as_deref().unwrap_or("")
            )
        }
    }

    fn breakdown(&self) -> String {
        format!(
            "p50 {} p99 {}; server-side mean {}; floe serve's CPU per commit: tokio threads {}, durability thread {}, sled-io threads {}, other {}; {}",
            us(self.latency.p50()),
            us(self.latency.p99()),
            us(self.server_mean),
            us(self.split.request),
            us(self.split.durability),
            us(self.split.sled),
            us(self.split.other),
            self.spurious_note()
        )
    }
}

/// 4a, 4b, 4d: 16 writers on 16 tables of `main` against 1 writer (before and after), 16
/// writers each on its own branch, and the read-your-writes check.
pub fn figure_4(b: &mut Bench) -> Vec<Row> {
    let per = b.s.n(300, 10);
    let shape = |prefix, count, own_branches| Shape {
        prefix,
        count,
        per,
        own_branches,
        read_back: false,
    };
    let one_a = writers(b, shape("one-a", 1, false));
    let sixteen = writers(b, shape("w16", 16, false));
    let branches = writers(b, shape("br16", 16, true));
    let one_b = writers(b, shape("one-b", 1, false));
    let read_back = writers(
        b,
        Shape {
            per: b.s.n(50, 5),
            read_back: true,
            ..shape("rb16", 16, false)
        },
    );
    let one = (one_a.rate + one_b.rate) / 2.0;
    let (r, r_branches) = (sixteen.rate / one, branches.rate / one);
    let how = format!("async generator, one connection per writer, {per} commits per table");
    vec![
        Row::new(
            "4a. 16 writers on 16 tables of `main` (one each) vs 1 writer on 1 table: commit rate",
            format!("{:.0} commits/s", sixteen.rate),
        )
        .baseline(
            format!(
                "1 writer: {one:.0}/s (before {:.0}, after {:.0})",
                one_a.rate, one_b.rate
            ),
            r,
        )
        .budget(">= 8x", r >= 8.0)
        .cpu(sixteen.cpu.clone())
        .cpu(one_a.cpu.clone())
        .note(format!(
            "{how}; 16 writers: {}; 1 writer: {}",
            sixteen.breakdown(),
            one_a.breakdown()
        )),
        Row::new(
            "4b. the same, each writer's table on its own branch (no shared ref)",
            format!("{:.0} commits/s", branches.rate),
        )
        .baseline(format!("1 writer: {one:.0}/s"), r_branches)
        .cpu(branches.cpu.clone())
        .note(branches.breakdown()),
        Row::new(
            "4d. read your writes: 16 writers on main, a loadTable of the same table right after each acknowledged commit (not timed)",
            format!(
                "{} of {} loads answered an older metadata file",
                read_back.stale_reads, read_back.reads
            ),
        )
        .cpu(read_back.cpu.clone())
        .note(format!(
            "{}; {}",
            read_back.stale_example.as_deref().unwrap_or("no stale load"),
            read_back.spurious_note()
        )),
    ]
}
