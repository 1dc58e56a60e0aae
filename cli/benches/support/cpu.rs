//! CPU accounting for the benches: a process's user + system time (`/proc/PID/stat`), a
//! thread's (`schedstat`), the machine's, and floe serve's threads by what they do. Every
//! HTTP figure shows its load generator's CPU beside the server's, so a reader can see which
//! side was the bottleneck; these are the readings behind that.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`, usually 100).
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

/// User + system CPU time a process used so far (`/proc/PID/stat`, fields 14 and 15), its
/// ended threads included.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_cpu(&stat)
}

/// User + system time in the text of a `/proc/PID/stat` file.
pub fn stat_cpu(stat: &str) -> Duration {
    // The fields after the command name start with the state, field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or_else(Vec::new, |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((field(14) + field(15)) as f64 / ticks_per_s())
}

/// Nanoseconds on CPU from a `schedstat` file (its first field).
pub fn schedstat(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of the calling thread so far, to the nanosecond. A running thread's
/// `schedstat` is only as fresh as the scheduler's last look at it (a tick or a switch), so
/// work done just before a measured region would be counted in it; reading the process's
/// `stat` first makes the kernel account the calling thread's pending time
/// (`thread_group_cputime` updates the current task). The two reads cost ~10 µs, counted
/// in the region: a generator's CPU is overstated a little, never understated.
pub fn thread_cpu() -> Duration {
    let _ = std::fs::read("/proc/self/stat");
    Duration::from_nanos(schedstat("/proc/thread-self/schedstat").expect("schedstat"))
}

/// CPU time every process of the machine used so far (`/proc/stat`: all but idle and
/// iowait).
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Duration::from_secs_f64(busy as f64 / ticks_per_s())
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine's CPU over a phase, and what of it went to processes other than the
/// bench, its children and the server: the other engineers' builds on a shared machine.
pub struct OtherLoad {
    busy0: Duration,
    mine0: Duration,
    start: Instant,
    pids: Vec<u32>,
}

impl OtherLoad {
    /// Counts from now; `pids` (floe serve) and the bench itself are not "other".
    pub fn start(pids: &[u32]) -> OtherLoad {
        OtherLoad {
            busy0: machine_busy(),
            mine0: Self::mine(pids),
            start: Instant::now(),
            pids: pids.to_vec(),
        }
    }

    fn mine(pids: &[u32]) -> Duration {
        let children = std::fs::read_to_string("/proc/self/stat")
            .map(|s| {
                // cutime and cstime, fields 16 and 17: the children waited for (wrk).
                let fields: Vec<&str> = s
                    .rsplit_once(')')
                    .map_or_else(Vec::new, |(_, r)| r.split_whitespace().collect());
                let f = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
                Duration::from_secs_f64(
                    (f(16).unwrap_or(0) + f(17).unwrap_or(0)) as f64 / ticks_per_s(),
                )
            })
            .unwrap_or_default();
        pids.iter().map(|p| cpu_time(*p)).sum::<Duration>()
            + cpu_time(std::process::id())
            + children
    }

    /// Cores' worth of CPU other processes used since the start, on average.
    pub fn cores(&self) -> f64 {
        let busy = machine_busy().saturating_sub(self.busy0);
        let mine = Self::mine(&self.pids).saturating_sub(self.mine0);
        busy.saturating_sub(mine).as_secs_f64() / self.start.elapsed().as_secs_f64()
    }
}

/// Where a thread of floe serve works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// tokio's workers and blocking threads: the handler, the request's blocking task and
    /// the metadata write's blocking hop.
    Request,
    /// `floe-durability`: the group commit's sled flush and `fdatasync`.
    Durability,
    /// sled's own I/O threads (`sled-io-N`), which write its log buffers.
    Sled,
    Other,
}

/// CPU time by thread group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Split {
    pub request: Duration,
    pub durability: Duration,
    pub sled: Duration,
    pub other: Duration,
}

impl Split {
    pub fn total(&self) -> Duration {
        self.request + self.durability + self.sled + self.other
    }

    pub fn per(&self, n: u64) -> Split {
        let n = n.max(1) as u32;
        Split {
            request: self.request / n,
            durability: self.durability / n,
            sled: self.sled / n,
            other: self.other / n,
        }
    }
}

/// The threads of a process and their CPU time, by `/proc/PID/task/*/schedstat`
/// (nanoseconds, where `/proc/PID/stat` counts 10 ms ticks).
pub struct ServerThreads {
    pid: u32,
    groups: HashMap<u32, (Group, String)>,
}

/// CPU time of every thread at one moment.
pub struct ThreadTimes(HashMap<u32, (Group, u64)>);

impl ServerThreads {
    pub fn new(pid: u32) -> ServerThreads {
        ServerThreads {
            pid,
            groups: HashMap::new(),
        }
    }

    pub fn sample(&mut self) -> ThreadTimes {
        let mut out = HashMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return ThreadTimes(out);
        };
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let task = format!("/proc/{}/task/{tid}", self.pid);
            let group = match self.groups.get(&tid) {
                Some((g, _)) => *g,
                None => {
                    let comm = std::fs::read_to_string(format!("{task}/comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    let g = if comm.starts_with("tokio") {
                        Group::Request
                    } else if comm == "floe-durability" {
                        Group::Durability
                    } else if comm.starts_with("sled") {
                        Group::Sled
                    } else {
                        Group::Other
                    };
                    self.groups.insert(tid, (g, comm));
                    g
                }
            };
            if let Some(ns) = schedstat(&format!("{task}/schedstat")) {
                out.insert(tid, (group, ns));
            }
        }
        ThreadTimes(out)
    }

    /// The thread names seen so far, with counts.
    pub fn names(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, name) in self.groups.values() {
            *counts.entry(name.as_str()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(n, c)| format!("{n} x{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ThreadTimes {
    /// CPU used since `before`, by group (a thread born since counts from zero; one that
    /// ended since is lost).
    pub fn since(&self, before: &ThreadTimes) -> Split {
        let mut split = Split::default();
        for (tid, (group, ns)) in &self.0 {
            let was = before.0.get(tid).map_or(0, |(_, ns)| *ns);
            let d = Duration::from_nanos(ns.saturating_sub(was));
            match group {
                Group::Request => split.request += d,
                Group::Durability => split.durability += d,
                Group::Sled => split.sled += d,
                Group::Other => split.other += d,
            }
        }
        split
    }
}
