//! The load generator of every HTTP figure that a fixed request (or one with a unique name)
//! can express: `wrk` (Debian's `wrk` 4.1, C and LuaJIT, epoll), run as a child process.
//! It costs a few µs of CPU per request where the blocking `ureq` clients this replaced cost
//! more than the server, so the figures measure floe and not the client. Each run reports
//! wrk's own CPU (read by its Lua `done()` from `/proc/self/stat` after its threads ended)
//! beside the server's (`/proc/PID/stat` before and after).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cpu::{OtherLoad, cpu_time, stat_cpu};
use super::report::Cpu;

/// The longest a single answer may take before wrk counts a timeout.
const WRK_TIMEOUT_S: u64 = 30;

/// wrk's version line, after making sure it is installed: the bench installs the Debian
/// package when it can (root with apt-get), else stops saying how.
pub fn ensure() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            if let Some(v) = version() {
                return v;
            }
            let root = Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
            if root {
                println!("wrk is missing: installing the Debian package (apt-get install -y wrk)");
                let install = || {
                    Command::new("apt-get")
                        .args(["install", "-y", "wrk"])
                        .status()
                        .is_ok_and(|s| s.success())
                };
                if !install() {
                    let _ = Command::new("apt-get").arg("update").status();
                    install();
                }
            }
            version().unwrap_or_else(|| {
                panic!(
                    "the HTTP benches drive floe with wrk, which is not installed: run \
                     `sudo apt-get install -y wrk` (Debian/Ubuntu package `wrk`, 4.1), then the \
                     bench again"
                )
            })
        })
        .clone()
}

fn version() -> Option<String> {
    let out = Command::new("wrk").arg("-v").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.starts_with("wrk"))?;
    Some(line.split(" Copyright").next().unwrap_or(line).to_owned())
}

/// One load: `connections` keep-alive connections on `threads` wrk threads for `seconds`.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    /// `http://HOST:PORT`.
    pub base: &'a str,
    pub path: &'a str,
    pub connections: usize,
    pub threads: usize,
    pub seconds: u64,
    /// For writes: a POST body in two halves, joined by a name unique to the request
    /// (`<run>-<thread>-<count>`), e.g. `{"name":"` and `","from":"main"}`.
    pub post: Option<(&'a str, &'a str)>,
    /// The server's process, or `None` for the trivial server inside the bench process.
    pub server_pid: Option<u32>,
    /// A header every request carries (`Authorization: Bearer ...`).
    pub header: Option<&'a str>,
}

impl<'a> Load<'a> {
    pub fn get(base: &'a str, path: &'a str, connections: usize, seconds: u64) -> Load<'a> {
        Load {
            base,
            path,
            connections,
            // One wrk thread per 8 connections, at most 2: wrk's thread is an event loop,
            // and a second only helps when the first is busy.
            threads: connections.div_ceil(8).clamp(1, 2),
            seconds,
            post: None,
            server_pid: None,
            header: None,
        }
    }
    pub fn header(mut self, header: &'a str) -> Load<'a> {
        self.header = Some(header);
        self
    }
    pub fn post(mut self, pre: &'a str, post: &'a str) -> Load<'a> {
        self.post = Some((pre, post));
        self
    }
    pub fn server(mut self, pid: u32) -> Load<'a> {
        self.server_pid = Some(pid);
        self
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct Run {
    pub requests: u64,
    pub wall: Duration,
    pub bytes: u64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub wrk_cpu: Duration,
    pub server_cpu: Duration,
    pub server_name: String,
    /// Cores other processes of the machine used meanwhile.
    pub other_cores: f64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
    /// Bytes per answer, headers included.
    pub fn bytes_per_answer(&self) -> u64 {
        self.bytes / self.requests.max(1)
    }
    pub fn cpu(&self) -> Cpu {
        Cpu {
            generator_name: "wrk".into(),
            generator: self.wrk_cpu,
            server_name: self.server_name.clone(),
            server: self.server_cpu,
            requests: self.requests,
            wall: self.wall,
        }
    }
    /// Checks that every answer had the body size `body` (plus headers): wrk does not read
    /// bodies, so the size is what says the answer was the expected one.
    /// wrk also counts the bytes of the answers in flight when it stopped (at most one per
    /// connection), which the bound allows for.
    pub fn expect_body(&self, what: &str, body: usize, connections: usize) -> &Run {
        const HEADERS_BYTES_MAX: usize = 512;
        let answer = body + HEADERS_BYTES_MAX;
        let in_flight = answer * connections / self.requests.max(1) as usize;
        let per = self.bytes_per_answer() as usize;
        assert!(
            per >= body && per <= answer + in_flight,
            "{what}: {per} B per answer, expected {body} B of body and a few hundred of headers"
        );
        self
    }
}

/// Runs wrk once; stops the bench if any answer was not 2xx or any socket failed.
pub fn run(load: Load<'_>) -> Run {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run_id = RUNS.fetch_add(1, Ordering::Relaxed);
    let script = std::env::temp_dir().join(format!(
        "floe-bench-wrk-{}-{run_id}.lua",
        std::process::id()
    ));
    std::fs::write(&script, lua(&load, run_id)).expect("the wrk script is written");
    let server_name = match load.server_pid {
        Some(_) => "floe serve",
        None => "trivial axum",
    };
    let server_pid = load.server_pid.unwrap_or_else(std::process::id);
    let other = OtherLoad::start(&[server_pid]);
    let server0 = cpu_time(server_pid);
    let started = Instant::now();
    let out = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg(format!("--timeout={WRK_TIMEOUT_S}s"))
        .args(load.header.iter().flat_map(|h| ["-H", h]))
        .arg("-s")
        .arg(&script)
        .arg(format!("{}{}", load.base, load.path))
        .output()
        .expect("wrk runs");
    let wall = started.elapsed();
    let server_cpu = cpu_time(server_pid).saturating_sub(server0);
    let other_cores = other.cores();
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let what = format!(
        "wrk -c{} {} {}",
        load.connections,
        if load.post.is_some() { "POST" } else { "GET" },
        load.path
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FLOE_WRK "))
        .unwrap_or_else(|| {
            panic!(
                "{what}: no summary from wrk:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    let stat = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FLOE_WRK_STAT "))
        .unwrap_or_default();
    let [
        requests,
        duration_us,
        bytes,
        connect,
        read,
        write,
        status,
        timeout,
        p50,
        p95,
        p99,
        max,
    ] = v[..]
    else {
        panic!("{what}: a malformed summary {line:?}")
    };
    assert!(
        status == 0.0 && connect + read + write + timeout == 0.0 && requests > 0.0,
        "{what}: {status} answers were not 2xx, socket errors connect {connect} read {read} \
         write {write} timeout {timeout}, {requests} answers:\n{stdout}"
    );
    let us = |x: f64| Duration::from_nanos((x * 1e3) as u64);
    Run {
        requests: requests as u64,
        // wrk's own clock, from its first connection to its stop: what the rate divides by.
        wall: us(duration_us).max(Duration::from_millis(1)).min(wall),
        bytes: bytes as u64,
        p50: us(p50),
        p95: us(p95),
        p99: us(p99),
        max: us(max),
        wrk_cpu: stat_cpu(stat),
        server_cpu,
        server_name: server_name.into(),
        other_cores,
    }
}

/// The Lua of one run: a unique body per request for writes, and a `done()` that prints
/// the summary and wrk's own `/proc/self/stat` on one line each.
fn lua(load: &Load<'_>, run_id: u64) -> String {
    let request = match load.post {
        None => String::new(),
        Some((pre, post)) => format!(
            r#"
local counter = 0
local headers = {{ ["Content-Type"] = "application/json" }}
request = function()
  counter = counter + 1
  local name = "w{run_id}-" .. tid .. "-" .. counter
  return wrk.format("POST", {path:?}, headers, {pre:?} .. name .. {post:?})
end
"#,
            path = load.path,
        ),
    };
    format!(
        r#"-- Generated by the floe benches (cli/benches/support/wrk.rs).
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
tid = 0
{request}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FLOE_WRK %d %d %d %d %d %d %d %d %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
  local f = io.open("/proc/self/stat", "r")
  io.write("FLOE_WRK_STAT " .. f:read("*l") .. "\n")
  f:close()
end
"#
    )
}

/// Several runs of one load (rounds alternating with other loads): medians, and the CPU
/// of all of them together.
#[derive(Default)]
pub struct Series(pub Vec<Run>);

impl Series {
    pub fn rate(&self) -> f64 {
        super::median(self.0.iter().map(Run::rate).collect())
    }
    pub fn p50(&self) -> Duration {
        Duration::from_secs_f64(super::median(
            self.0.iter().map(|r| r.p50.as_secs_f64()).collect(),
        ))
    }
    pub fn p99(&self) -> Duration {
        Duration::from_secs_f64(super::median(
            self.0.iter().map(|r| r.p99.as_secs_f64()).collect(),
        ))
    }
    pub fn requests(&self) -> u64 {
        self.0.iter().map(|r| r.requests).sum()
    }
    pub fn other_cores(&self) -> f64 {
        self.0.iter().map(|r| r.other_cores).sum::<f64>() / self.0.len().max(1) as f64
    }
    pub fn cpu(&self) -> Cpu {
        let mut cpu = self.0[0].cpu();
        for r in &self.0[1..] {
            cpu.generator += r.wrk_cpu;
            cpu.server += r.server_cpu;
            cpu.requests += r.requests;
            cpu.wall += r.wall;
        }
        cpu
    }
    /// Every round's rate, for the record of the spread.
    pub fn rates(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{:.0}", r.rate()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `rounds` rounds; in each, one run of every load in turn, so that every load sees the
/// same conditions. `check(i, run)` checks each run of load `i`.
pub fn rounds<const N: usize>(
    rounds: usize,
    loads: [Load<'_>; N],
    check: impl Fn(usize, &Run),
) -> [Series; N] {
    let mut out: [Vec<Run>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..rounds {
        for (i, load) in loads.iter().enumerate() {
            let r = run(*load);
            check(i, &r);
            out[i].push(r);
        }
    }
    out.map(Series)
}
