//! What the benches of `cli/benches/` share, once: the servers (`floe serve` on a free port,
//! the trivial axum baseline), the load generators (wrk, and an async generator for
//! sequences), CPU accounting, samples with percentiles, the figure rows and their one
//! printer, and a setup client (`ureq`) for the requests that are not measured.

#![allow(dead_code)] // each bench uses its own part of it

pub mod cpu;
pub mod loadgen;
pub mod report;
pub mod server;
pub mod wrk;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every bench shows CPU
pub use report::{Cpu, Row};

/// What a bench divides its counts and durations by: `FLOE_BENCH_SCALE`, else 1 under
/// `cargo bench` (which passes `--bench`) and 100 under `cargo test --benches` (which
/// passes nothing).
pub fn scale_divisor() -> u64 {
    let bench = std::env::args().any(|a| a == "--bench");
    std::env::var("FLOE_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("FLOE_BENCH_SCALE is a positive integer"))
        .unwrap_or(if bench { 1 } else { 100 })
        .max(1)
}

/// Counts and durations at the bench's scale.
#[derive(Clone, Copy)]
pub struct Scale(pub u64);

impl Scale {
    pub fn from_env() -> Scale {
        Scale(scale_divisor())
    }
    /// `full / divisor`, at least `min`.
    pub fn n(self, full: u64, min: u64) -> u64 {
        (full / self.0).max(min)
    }
    /// A wrk run's seconds: `full / divisor`, at least 1 (wrk counts whole seconds).
    pub fn secs(self, full: u64) -> u64 {
        (full / self.0).max(1)
    }
}

/// The folder a bench's stores are made in: `FLOE_BENCH_DIR`, else the temp folder.
pub fn bench_root() -> tempfile::TempDir {
    tempfile::tempdir_in(
        std::env::var_os("FLOE_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .expect("a folder for the stores")
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

/// The median of some values.
pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no values");
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
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

/// `floe --json --server BASE ARGS...` with its own config folder, asserting it succeeded:
/// its JSON answer (`Null` when it printed none).
pub fn floe_cli(base: &str, config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["--json", "--server", base])
        .args(args)
        .env("FLOE_CONFIG_DIR", config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "floe {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The machine a bench ran on, and how loaded it was as the bench started, for the record.
pub fn machine_notes(dir: &Path) -> String {
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
    let rustc = run("pgrep", &["-c", "-x", "rustc"]);
    let notes = format!(
        "machine: {} cores ({model}), {mem} RAM, kernel {}; data under {} ({}, device {}); load average {}; rustc processes running: {}",
        cpu::cores(),
        run("uname", &["-r"]),
        dir.display(),
        run("findmnt", &["-n", "-o", "FSTYPE", "-T", &dir_s]),
        run("df", &["--output=source", &dir_s])
            .lines()
            .last()
            .unwrap_or("?"),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if rustc.is_empty() {
            "0".to_owned()
        } else {
            rustc
        }
    );
    println!("{notes}");
    notes
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

pub fn head(text: &str) -> &str {
    let mut end = text.len().min(600);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// 4 KiB appended to a preallocated file in `dir` and `fdatasync`ed, `n` times: the
/// device's durable-write latency, the baseline of every durable figure.
pub fn raw_fdatasync(dir: &Path, n: usize) -> Samples {
    let path = dir.join("raw");
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len((n as u64 + 1) * 4096).unwrap();
    file.sync_all().unwrap();
    let block = vec![7u8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        out.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    Samples::new(out)
}

/// The raw fdatasync row every durable bench starts with.
pub fn raw_fdatasync_row(dir: &Path, s: Scale) -> (Row, Samples) {
    let cpu0 = cpu::thread_cpu();
    let raw = raw_fdatasync(dir, s.n(2_000, 20) as usize);
    let per = (cpu::thread_cpu() - cpu0) / raw.len() as u32;
    let row = Row::new(
        "raw fdatasync p50 (4 KiB append + fdatasync)",
        format!("{} (p99 {})", us(raw.p50()), us(raw.p99())),
    )
    .note(format!(
        "{} calls; CPU per call (user + system) {}",
        raw.len(),
        us(per)
    ));
    (row, raw)
}

/// One keep-alive `ureq` client for the requests a bench makes to set up and check, not to
/// measure (the measured ones go through [`wrk`] or [`loadgen`]).
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

    /// A POST whatever its status: (status, body).
    pub fn send_post(&self, path: &str, body: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path} {}: {e}", head(body)));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("POST {path}: reading the body: {e}"));
        (status, text)
    }

    pub fn post(&self, path: &str, body: &str, expect: u16) -> String {
        loadgen::checked("POST", path, body, expect, self.send_post(path, body))
    }

    pub fn get(&self, path: &str, expect: u16) -> String {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {path}: reading the body: {e}"));
        loadgen::checked("GET", path, "", expect, (status, text))
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
