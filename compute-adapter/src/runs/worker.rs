//! One Python worker process (DESIGN §5 "Python workers"): `python -I -u -m floe_worker`
//! in the node's environment, in its own process group, with a scrubbed environment; the
//! node's spec on stdin, the result on descriptor 3, stdout and stderr streamed into the
//! run log line by line as they are printed. A timeout, the end of the node or the loss
//! of its future kills the whole process group; a worker that dies by a signal fails its
//! node naming the signal. Without `internet_access` it runs in a new network namespace
//! where the host allows one (`unshare`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};

use super::cgroup;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Where a worker's output lines go: `(stream, line)`.
pub type Lines<'a> = &'a (dyn Fn(&str, &str) + Send + Sync);

/// What a worker answered.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub returned: Option<String>,
    #[serde(default)]
    pub passed: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
}

/// How a worker is started.
#[derive(Debug)]
pub struct Launch<'a> {
    pub python: &'a Path,
    /// The worker's folder: its current directory, home and temporary files.
    pub home: &'a Path,
    pub spec: serde_json::Value,
    pub timeout: Duration,
    /// Cut off from the network (where the host allows it).
    pub isolated: bool,
    /// The most memory it may use (`@resources(memory=)`): a cgroup where the host has
    /// one, else `RLIMIT_DATA` set by the worker itself.
    pub memory: Option<u64>,
}

/// The command prefix that puts a process in a new network namespace, if this host can.
pub fn network_isolation() -> Option<&'static [&'static str]> {
    static FOUND: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        const AS_ROOT: &[&str] = &["unshare", "--net", "--"];
        const UNPRIVILEGED: &[&str] = &["unshare", "--net", "--map-root-user", "--"];
        [AS_ROOT, UNPRIVILEGED].into_iter().find(|prefix| {
            std::process::Command::new(prefix[0])
                .args(&prefix[1..])
                .arg("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Kills a process group when dropped (the worker and anything it started).
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

/// Runs one worker to its end. `Err` is why the node failed.
pub async fn run(launch: Launch<'_>, lines: Lines<'_>) -> Result<Answer, String> {
    let home = launch.home;
    std::fs::create_dir_all(home.join("tmp")).map_err(|e| format!("the worker's folder: {e}"))?;
    let mut command = match (launch.isolated, network_isolation()) {
        (true, Some(prefix)) => {
            let mut c = tokio::process::Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(launch.python);
            c
        }
        _ => tokio::process::Command::new(launch.python),
    };
    let bin = launch
        .python
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    command
        .args(["-I", "-u", "-m", "floe_worker"])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .current_dir(home)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (result_read, result_write) =
        std::io::pipe().map_err(|e| format!("the worker's result pipe: {e}"))?;
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: OwnedFd::from(result_write),
            child_fd: 3,
        }])
        .map_err(|e| format!("the worker's result descriptor: {e}"))?;
    let cgroup = launch.memory.and_then(cgroup::MemoryCgroup::create);
    let mut spec = launch.spec;
    if cgroup.is_none()
        && let (Some(bytes), Some(fields)) = (launch.memory, spec.as_object_mut())
    {
        fields.insert("memory".to_owned(), bytes.into());
    }
    let mut child = command.spawn().map_err(|e| {
        format!(
            "starting the Python worker ({}): {e}",
            launch.python.display()
        )
    })?;
    // The parent's end of the result pipe closes with the command.
    drop(command);
    if let (Some(group), Some(pid)) = (&cgroup, child.id())
        && let Err(e) = group.add(pid)
    {
        let _ = child.start_kill();
        return Err(format!("putting the worker in its memory cgroup: {e}"));
    }
    let mut group = Group(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    if let Some(pid) = group.0 {
        // Recorded so that a restart after a crash stops it (`stop_leftovers`).
        let _ = std::fs::write(home.join(PGID_FILE), pid.as_raw().to_string());
    }
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let read = std::io::Read::read_to_end(&mut { result_read }, &mut text).map(|_| text);
        let _ = answer_tx.send(read);
    });
    let mut stdin = child.stdin.take().expect("piped");
    let spec = spec.to_string();
    let feed = async move {
        let _ = stdin.write_all(spec.as_bytes()).await;
        let _ = stdin.shutdown().await;
    };
    // The worker is done when it exits. Its output is drained until then and for a moment
    // after: a process it started outside its group may hold the pipes open.
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
    let pumps = async move {
        let drain =
            async { tokio::join!(pump(stdout, lines, "stdout"), pump(stderr, lines, "stderr")) };
        let grace = async {
            let mut exited = exited_rx;
            let _ = exited.wait_for(|e| *e).await;
            tokio::time::sleep(DRAIN_AFTER_EXIT).await;
        };
        tokio::select! {
            _ = drain => {}
            _ = grace => {}
        }
    };
    let pgid = group.0;
    let waiter = async {
        let status = child.wait().await;
        // Whatever the function started in its group goes with it.
        if let Some(pid) = pgid {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = exited_tx.send(true);
        status
    };
    let ran = async { tokio::join!(feed, waiter, pumps).1 };
    let status = match tokio::time::timeout(launch.timeout, ran).await {
        Ok(status) => status.map_err(|e| format!("waiting for the worker: {e}"))?,
        Err(_) => {
            drop(group);
            let _ = child.wait().await;
            if let Some(c) = cgroup {
                c.release().await;
            }
            return Err(format!(
                "it ran longer than its timeout ({} s) and was killed",
                launch.timeout.as_secs_f64()
            ));
        }
    };
    let out_of_memory = cgroup
        .as_ref()
        .is_some_and(cgroup::MemoryCgroup::oom_killed);
    if let Some(c) = cgroup {
        c.release().await;
    }
    // Killed already, as the worker exited.
    group.0 = None;
    // The answer's descriptor closes with the worker (it is not inherited by what the
    // function starts); a process that kept it anyway is not waited for.
    let text = match tokio::time::timeout(DRAIN_AFTER_EXIT, answer_rx).await {
        Ok(Ok(Ok(text))) => text,
        Ok(Ok(Err(e))) => return Err(format!("reading the worker's answer: {e}")),
        Ok(Err(_)) | Err(_) => Vec::new(),
    };
    if let Ok(answer) = serde_json::from_slice::<Answer>(&text) {
        // An answer counts even if the interpreter died on its way out.
        return Ok(answer);
    }
    if out_of_memory {
        return Err(format!(
            "it ran out of memory (its limit is {} bytes) and was killed",
            launch.memory.unwrap_or_default()
        ));
    }
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
        return Err(format!("its worker was killed by {name}"));
    }
    if text.is_empty() {
        return Err(format!(
            "its worker ended ({status}) without an answer; see its stderr in the run log"
        ));
    }
    Err("the worker's answer does not parse".to_owned())
}

/// How long a worker's pipes are read after it exits, at most.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The most of one line of a worker's output that is read (the rest of a longer line is
/// dropped); the log cuts what it shows of a line shorter still, after masking secrets.
const LINE_READ_MAX: usize = 1 << 20;
/// A worker's output beyond this many bytes (per stream) is not logged.
const OUTPUT_BYTES_MAX: usize = 16 << 20;
/// The file in a worker's folder holding its process group id.
const PGID_FILE: &str = "pgid";

/// Streams a pipe into the run log line by line as they come: a line's first
/// `LINE_READ_MAX` bytes, a stream's output beyond `OUTPUT_BYTES_MAX` left out (said once).
async fn pump<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, lines: Lines<'_>, stream: &str) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let emit = |line: &mut Vec<u8>, total: &mut usize| {
        if *total < OUTPUT_BYTES_MAX {
            lines(stream, &String::from_utf8_lossy(line));
            *total += line.len();
            if *total >= OUTPUT_BYTES_MAX {
                lines(
                    stream,
                    &format!(
                        "[more than {OUTPUT_BYTES_MAX} bytes of output: the rest is not logged]"
                    ),
                );
            }
        }
        line.clear();
    };
    loop {
        let buffer = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let (take, complete) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        let room = LINE_READ_MAX.saturating_sub(line.len());
        let body = if complete { take - 1 } else { take };
        line.extend_from_slice(&buffer[..body.min(room)]);
        reader.consume(take);
        if complete {
            emit(&mut line, &mut total);
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut total);
    }
}

/// Kills the workers a stopped server left running (their process groups, recorded in
/// each worker's folder under `scratch`), before their folders are removed. A group id is
/// killed only while its leader still works in that worker's folder (not a process that
/// took its id since).
pub fn stop_leftovers(scratch: &Path) {
    let Ok(runs) = std::fs::read_dir(scratch) else {
        return;
    };
    for run in runs.flatten() {
        let Ok(workers) = std::fs::read_dir(run.path().join("workers")) else {
            continue;
        };
        for worker in workers.flatten() {
            let Some(pid) = std::fs::read_to_string(worker.path().join(PGID_FILE))
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|p| *p > 1)
            else {
                continue;
            };
            // Still this worker: the group's leader works in this worker's own folder.
            let is_worker = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| {
                cwd == worker.path() || std::fs::canonicalize(worker.path()).is_ok_and(|w| w == cwd)
            });
            if is_worker {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The per-node folder of a worker inside the run's scratch folder.
pub fn home(scratch: &Path, node: usize) -> PathBuf {
    scratch.join("workers").join(node.to_string())
}
