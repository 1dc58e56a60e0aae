//! A worker's memory bound (`@resources(memory=)`) as a memory cgroup where the host
//! offers one: a child of the server's own cgroup (v2 `memory.max`, or v1
//! `memory.limit_in_bytes`), swap included, which the kernel enforces on the worker and
//! everything it starts. Where there is none (no memory controller, or one the server
//! cannot write), the worker bounds itself with `RLIMIT_DATA` instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of the cgroups floe makes for workers.
const PREFIX: &str = "floe-worker-";

/// The server's memory cgroup, and whether it is cgroup v2; `None` when the server cannot
/// make a child there with a memory limit (probed once).
fn parent() -> Option<&'static (PathBuf, bool)> {
    static FOUND: OnceLock<Option<(PathBuf, bool)>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let candidates = own.lines().filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let path = path.trim_start_matches('/');
                if controllers.is_empty() {
                    Some((Path::new("/sys/fs/cgroup").join(path), true))
                } else if controllers.split(',').any(|c| c == "memory") {
                    Some((Path::new("/sys/fs/cgroup/memory").join(path), false))
                } else {
                    None
                }
            });
            let mut found = None;
            for (dir, v2) in candidates {
                // A cgroup file system, not a folder that happens to be there (on v1 hosts
                // `/sys/fs/cgroup` itself is a tmpfs).
                let magic = if v2 {
                    nix::sys::statfs::CGROUP2_SUPER_MAGIC
                } else {
                    nix::sys::statfs::CGROUP_SUPER_MAGIC
                };
                if !nix::sys::statfs::statfs(&dir).is_ok_and(|f| f.filesystem_type() == magic) {
                    continue;
                }
                let probe = dir.join(format!("{PREFIX}probe-{}", std::process::id()));
                let usable = std::fs::create_dir(&probe).is_ok()
                    && control(&probe.join(limit_file(v2)), &(64u64 << 20).to_string()).is_ok();
                let _ = std::fs::remove_dir(&probe);
                if usable {
                    found = Some((dir, v2));
                    break;
                }
            }
            found
        })
        .as_ref()
}

/// Writes a cgroup control file (which must exist: a cgroup's files are the kernel's).
fn control(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

fn limit_file(v2: bool) -> &'static str {
    if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    }
}

/// Whether workers' memory is bounded by cgroups on this host.
pub fn available() -> bool {
    parent().is_some()
}

/// One worker's memory cgroup; removed when dropped (once its processes are gone).
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    /// A new cgroup bounded to `bytes` (swap included), or `None` where the host has none.
    pub fn create(bytes: u64) -> Option<MemoryCgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (parent, v2) = parent()?;
        let dir = parent.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        let group = MemoryCgroup { dir, v2: *v2 };
        control(&group.dir.join(limit_file(*v2)), &bytes.to_string()).ok()?;
        // Swap counts too (where the kernel accounts it): a bound is a bound.
        if *v2 {
            let _ = control(&group.dir.join("memory.swap.max"), "0");
        } else {
            let _ = control(
                &group.dir.join("memory.memsw.limit_in_bytes"),
                &bytes.to_string(),
            );
        }
        Some(group)
    }

    /// Moves process `pid` (and what it starts from then on) into the cgroup.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        control(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// The file a process writes `0` to, to join the cgroup itself.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Whether the kernel killed a process of the cgroup for memory.
    pub fn oom_killed(&self) -> bool {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }
}

impl MemoryCgroup {
    /// Removes the cgroup once its (killed) processes have left it.
    pub async fn release(self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Best effort: a cgroup left behind is removed by `sweep` at the next start.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes the (empty) worker cgroups a stopped server left (not those of a live server:
/// their names carry its process id).
pub fn sweep() {
    let Some((parent, _)) = parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        let _ = std::fs::remove_dir(e.path());
    }
}
