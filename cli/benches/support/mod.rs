//! What the benches of `cli/benches/` share: a `floe serve` child process, samples with
//! percentiles, and the table of targets each bench prints at the end.

#![allow(dead_code)] // each bench uses its own part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a bench divides its counts by: `FLOE_BENCH_SCALE`, else 1 under `cargo bench`
/// (which passes `--bench`) and 100 under `cargo test --benches` (which passes nothing).
pub fn scale_divisor() -> u64 {
    let bench = std::env::args().any(|a| a == "--bench");
    std::env::var("FLOE_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("FLOE_BENCH_SCALE is a positive integer"))
        .unwrap_or(if bench { 1 } else { 100 })
        .max(1)
}

/// A `floe serve` child process on a free port.
pub struct Server {
    pub child: Child,
    pub base: String,
    stderr: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, stderr: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).expect("a file for the server's stderr"))
            .spawn()
            .expect("floe serve starts");
        // The first line says where it listens: "floe 0.1.0 listening on http://ADDR, data in ...".
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("floe serve prints where it listens");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no address in floe serve's first line {line:?}; stderr: {}",
                    std::fs::read_to_string(stderr).unwrap_or_default()
                )
            })
            .trim()
            .to_owned();
        Server {
            child,
            base: format!("http://{addr}"),
            stderr: stderr.to_owned(),
        }
    }

    /// Kills the server and returns what it wrote to stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Durations, sorted.
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Samples {
        assert!(!v.is_empty(), "no samples");
        v.sort();
        Samples(v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Nearest-rank percentile.
    pub fn pct(&self, p: f64) -> Duration {
        let rank = (self.0.len() as f64 * p).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
    pub fn p50(&self) -> Duration {
        self.pct(0.50)
    }
    pub fn p95(&self) -> Duration {
        self.pct(0.95)
    }
    pub fn p99(&self) -> Duration {
        self.pct(0.99)
    }
    pub fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

pub fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The table of figures, targets and verdicts a bench ends with.
#[derive(Default)]
pub struct Report {
    rows: Vec<(String, String, String, Option<bool>)>,
}

impl Report {
    pub fn row(&mut self, figure: &str, target: &str, measured: &str, met: bool) {
        self.rows
            .push((figure.into(), target.into(), measured.into(), Some(met)));
    }
    pub fn info(&mut self, figure: &str, measured: &str) {
        self.rows
            .push((figure.into(), "—".into(), measured.into(), None));
    }
    pub fn print(&self, div: u64) {
        println!();
        if div != 1 {
            println!("(counts divided by {div}: NOT the figures of record)");
        }
        println!("| Figure | Target | Measured | Verdict |");
        println!("|---|---|---|---|");
        for (figure, target, measured, met) in &self.rows {
            let verdict = match met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "—",
            };
            println!("| {figure} | {target} | {measured} | {verdict} |");
        }
        let targets = self.rows.iter().filter(|r| r.3.is_some()).count();
        let met = self.rows.iter().filter(|r| r.3 == Some(true)).count();
        println!("\n{met} of {targets} targets met.");
        println!("==========================================");
    }
}

/// The machine a bench ran on, for the record.
pub fn machine_notes(dir: &Path) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_owned()))
        .unwrap_or_default();
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dir_s = dir.to_string_lossy();
    println!(
        "machine: {} cores ({model}), {mem} RAM, kernel {}; data under {} ({}, device {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run("uname", &["-r"]),
        dir.display(),
        run("findmnt", &["-n", "-o", "FSTYPE", "-T", &dir_s]),
        run("df", &["--output=source", &dir_s])
            .lines()
            .last()
            .unwrap_or("?")
    );
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU time a process used so far (`/proc/PID/stat`).
pub fn cpu_time(pid: u32) -> Duration {
    let ticks_per_s = ticks_per_s();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or_else(Vec::new, |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((field(14) + field(15)) as f64 / ticks_per_s)
}

/// CPU used by the server and by this process (the clients) over a phase.
pub struct CpuMeter {
    server: Option<u32>,
    server0: Duration,
    me0: Duration,
    start: Instant,
}

impl CpuMeter {
    pub fn start(server: Option<u32>) -> CpuMeter {
        CpuMeter {
            server,
            server0: server.map_or(Duration::ZERO, cpu_time),
            me0: cpu_time(std::process::id()),
            start: Instant::now(),
        }
    }

    /// CPU per request in each process, and how busy the machine's cores were.
    pub fn per_request(&self, requests: u64) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let me = (cpu_time(std::process::id()) - self.me0).as_secs_f64();
        let server = self
            .server
            .map_or(0.0, |p| (cpu_time(p) - self.server0).as_secs_f64());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = |s: f64| us(Duration::from_secs_f64(s / requests.max(1) as f64));
        let busy = 100.0 * (me + server) / wall / cores as f64;
        match self.server {
            Some(_) => format!(
                "CPU per request: {} in floe serve + {} in the bench process; {busy:.0}% of {cores} cores busy",
                per(server),
                per(me)
            ),
            None => format!(
                "CPU per request: {} (clients and server); {busy:.0}% of {cores} cores busy",
                per(me)
            ),
        }
    }
}

/// One keep-alive HTTP client (one `ureq::Agent`, so one connection when used serially).
pub struct Client {
    pub agent: ureq::Agent,
    pub base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Client {
            agent: config.into(),
            base: base.to_owned(),
        }
    }

    pub fn post(&self, path: &str, body: &str, expect: u16) -> String {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path} {}: {e}", head(body)));
        checked("POST", path, body, expect, response)
    }

    pub fn get(&self, path: &str, expect: u16) -> String {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        checked("GET", path, "", expect, response)
    }

    /// The server's own count and total time of a route, from `/metrics`.
    pub fn route_time(&self, route: &str, method: &str) -> RouteTime {
        let text = self.get("/metrics", 200);
        let labels = format!("{{route=\"{route}\",method=\"{method}\"}} ");
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}{labels}")))
                .map_or(0.0, |v| v.trim().parse::<f64>().unwrap_or(0.0))
        };
        RouteTime {
            count: value("floe_http_request_duration_seconds_count"),
            sum_s: value("floe_http_request_duration_seconds_sum"),
        }
    }
}

/// Reads the whole body (so the connection goes back to the pool) and checks the status.
pub fn checked(
    method: &str,
    path: &str,
    body: &str,
    expect: u16,
    mut response: ureq::http::Response<ureq::Body>,
) -> String {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
    assert_eq!(
        status,
        expect,
        "{method} {path} {}: expected {expect}, got {status}: {}",
        head(body),
        head(&text)
    );
    text
}

pub fn head(text: &str) -> &str {
    let mut end = text.len().min(600);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A route's request count and summed latency as the server measured them.
#[derive(Debug, Clone, Copy)]
pub struct RouteTime {
    pub count: f64,
    pub sum_s: f64,
}

impl RouteTime {
    pub fn mean_since(&self, before: &RouteTime) -> Duration {
        let n = self.count - before.count;
        if n <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((self.sum_s - before.sum_s) / n)
    }
}

pub struct Run {
    pub latencies: Samples,
    pub elapsed: Duration,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `total` requests by `clients` threads, each with its own agent (connected before the
/// clock starts), taking request numbers from a shared counter.
pub fn run_clients(base: &str, clients: usize, total: u64, f: impl Fn(&Client, u64) + Sync) -> Run {
    let next = AtomicU64::new(0);
    let barrier = Barrier::new(clients + 1);
    let (latencies, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (next, barrier, f) = (&next, &barrier, &f);
                s.spawn(move || {
                    let client = Client::new(base);
                    // Opens the keep-alive connection (the trivial server 404s on it).
                    let _ = client
                        .agent
                        .get(format!("{base}/health"))
                        .call()
                        .map(|mut r| {
                            let _ = r.body_mut().read_to_string();
                        });
                    barrier.wait();
                    let mut out = Vec::with_capacity((total / clients as u64 + 1) as usize);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let start = Instant::now();
                        f(&client, i);
                        out.push(start.elapsed());
                    }
                    out
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let all: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("a client thread"))
            .collect();
        (all, start.elapsed())
    });
    Run {
        latencies: Samples::new(latencies),
        elapsed,
    }
}
