//! What the benches of `cli/benches/` share: a `floe serve` child process, samples with
//! percentiles, and the table of targets each bench prints at the end.

#![allow(dead_code)] // each bench uses its own part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
