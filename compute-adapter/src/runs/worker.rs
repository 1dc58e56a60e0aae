//! One Python worker process (DESIGN §5 "Python workers"): `python -I -u -m floe_worker`
//! in the node's environment, in its own process group, with a scrubbed environment; the
//! node's spec on stdin, the result on descriptor 3, stdout and stderr streamed into the
//! run log line by line as they are printed. A timeout, the end of the node or the loss
//! of its future kills the whole process group; a worker that dies by a signal fails its
//! node naming the signal. Confined (`sandbox.rs`) where the server can: its own user and
//! namespaces, seeing only its folder, the run's code and inputs, and its environment.
//! Otherwise, without `internet_access` it runs in a new network namespace where the host
//! allows one (`unshare`).
//!
//! A worker's folder (`workers/<node>/`) is the server's; the worker's own is `home/` in
//! it, and what the worker leaves there is untrusted: its output is taken only as a plain
//! file, after the worker and everything it started have ended (`take_output`).

use crate::limits::{
    WORKER_DRAIN_AFTER_EXIT_MS, WORKER_LINE_READ_BYTES_MAX, WORKER_OUTPUT_BYTES_MAX,
};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};

use super::cgroup;
use super::sandbox::{Bind, Sandbox};
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
    /// The worker's folder (`folder`): its `home/` is the worker's current directory,
    /// home and temporary files.
    pub folder: &'a Path,
    /// The run's code, and its inputs' folder (which the spec's paths name).
    pub code: &'a Path,
    pub io: &'a Path,
    /// Confined where the server can confine workers.
    pub sandbox: Option<&'a Sandbox>,
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
    let home = &launch.folder.join(HOME);
    std::fs::create_dir_all(home.join("tmp")).map_err(|e| format!("the worker's folder: {e}"))?;
    let cgroup = launch.memory.and_then(cgroup::MemoryCgroup::create);
    let program = [launch.python.as_os_str(), "-I".as_ref(), "-u".as_ref()]
        .into_iter()
        .chain(["-m".as_ref(), "floe_worker".as_ref()]);
    let mut spec = launch.spec;
    // Where the worker sees its folder (a confined one sees the run's paths under `/floe`).
    let mut seen = home.clone();
    let mut command = match (launch.sandbox, launch.isolated, network_isolation()) {
        (Some(sandbox), ..) => {
            let program = program
                .map(|a| a.to_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("the environment's path is not UTF-8, which a confined worker needs")?;
            let mut confined = sandbox.confine(!launch.isolated, program);
            let root = launch.folder.join(ROOT);
            std::fs::create_dir_all(&root).map_err(|e| format!("the worker's folder: {e}"))?;
            sandbox
                .hand_over(home)
                .map_err(|e| format!("handing the worker its folder: {e}"))?;
            // What it reads is readable by its user, whatever the server's umask.
            for shown in [launch.code, launch.io] {
                super::envs::readable_by_all(shown)
                    .map_err(|e| format!("showing the worker {}: {e}", shown.display()))?;
            }
            let (code, io) = (Path::new(INSIDE_CODE), Path::new(INSIDE_IO));
            seen = PathBuf::from(INSIDE_HOME);
            relocate(
                &mut spec,
                &[(launch.code, code), (launch.io, io), (home, &seen)],
            )?;
            confined.root = root;
            confined.binds = vec![
                Bind::read_only(launch.code, code),
                Bind::read_only(launch.io, io),
                Bind::writable(home, &seen),
            ];
            // The environment where it is: its scripts and `pyvenv.cfg` name their paths.
            confined.binds.extend(
                environment(launch.python)
                    .iter()
                    .map(|p| Bind::read_only(p, p)),
            );
            confined.cwd = seen.clone();
            confined.cgroup_procs = cgroup.as_ref().map(cgroup::MemoryCgroup::procs);
            tokio::process::Command::from(sandbox.command(&confined)?)
        }
        (None, true, Some(prefix)) => {
            let mut c = tokio::process::Command::new(prefix[0]);
            c.args(&prefix[1..]).args(program);
            c
        }
        (None, ..) => {
            let mut c = tokio::process::Command::new(launch.python);
            c.args(program.skip(1));
            c
        }
    };
    let bin = launch
        .python
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    command
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("HOME", &seen)
        .env("TMPDIR", seen.join("tmp"))
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
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
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
        // Recorded (in the server's part of the folder) so that a restart after a crash
        // stops it (`stop_leftovers`).
        let _ = std::fs::write(launch.folder.join(PGID_FILE), pid.as_raw().to_string());
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

const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(WORKER_DRAIN_AFTER_EXIT_MS);
/// The file in a worker's folder holding its process group id.
const PGID_FILE: &str = "pgid";
/// The worker's own part of its folder.
const HOME: &str = "home";
/// Where a confined worker's root is built.
const ROOT: &str = "root";
/// The file a model's worker writes its output to, in its home.
const OUTPUT: &str = "output.arrow";

/// What a worker's environment is on the host: the environment's folder and its base
/// interpreter's prefix (as linked, and as the environment's `pyvenv.cfg` names it).
pub(super) fn environment(python: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Some(env) = python.parent().and_then(Path::parent) else {
        return found;
    };
    found.push(env.to_path_buf());
    if let Some(prefix) = std::fs::canonicalize(python)
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()))
    {
        found.push(prefix);
    }
    if let Ok(cfg) = std::fs::read_to_string(env.join("pyvenv.cfg")) {
        let home = cfg.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
        });
        if let Some(prefix) = home.as_deref().and_then(Path::parent) {
            found.push(prefix.to_path_buf());
        }
    }
    // What the system folders show already is not shown twice; nor is a prefix as broad
    // as `/` or `/opt` (an interpreter there is unusual: its worker fails to start, saying
    // what it missed, rather than see half the host).
    found.retain(|p| {
        p.is_absolute()
            && p.components().count() > 2
            && !super::sandbox::SYSTEM.iter().any(|s| p.starts_with(s))
    });
    found.dedup();
    found
}

/// Where a confined worker sees the run's code, inputs and its own folder.
const INSIDE_CODE: &str = "/floe/code";
const INSIDE_IO: &str = "/floe/io";
const INSIDE_HOME: &str = "/floe/home";

/// The paths of a worker's spec (its project, inputs and output) as a confined worker
/// sees them: each `(host, inside)` prefix replaced. A path under none of them is an error
/// (the worker could not open it).
fn relocate(spec: &mut serde_json::Value, moves: &[(&Path, &Path)]) -> Result<(), String> {
    let moved = |value: &mut serde_json::Value| -> Result<(), String> {
        let Some(text) = value.as_str() else {
            return Ok(());
        };
        let path = Path::new(text);
        let (rest, to) = moves
            .iter()
            .find_map(|(from, to)| Some((path.strip_prefix(from).ok()?, to)))
            .ok_or_else(|| format!("{text} is not among what the worker is shown"))?;
        *value = to.join(rest).to_string_lossy().into_owned().into();
        Ok(())
    };
    if let Some(fields) = spec.as_object_mut() {
        for key in ["project", "output"] {
            if let Some(v) = fields.get_mut(key) {
                moved(v)?;
            }
        }
        if let Some(inputs) = fields.get_mut("inputs").and_then(|i| i.as_object_mut()) {
            inputs.values_mut().try_for_each(moved)?;
        }
    }
    Ok(())
}

/// Where a model's worker writes its output.
pub fn output(folder: &Path) -> PathBuf {
    folder.join(HOME).join(OUTPUT)
}

/// Moves a model's output out of the worker's folder to `to`, once the worker has ended:
/// only a plain file the worker wrote (never a link it left to make the server read or
/// overwrite something else).
pub fn take_output(folder: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let from = output(folder);
    let what = |e: &dyn std::fmt::Display| format!("the worker's output {}: {e}", from.display());
    // Opened without following a link, then made the server's own (root, 0644) through
    // that descriptor: whatever the worker's user does to the name, this file is checked.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&from)
        .map_err(|e| what(&e))?;
    let meta = file.metadata().map_err(|e| what(&e))?;
    if !meta.file_type().is_file() {
        return Err("the worker's output is not a plain file".to_owned());
    }
    let server = (nix::unistd::geteuid(), nix::unistd::getegid());
    nix::unistd::fchown(&file, Some(server.0), Some(server.1)).map_err(|e| what(&e))?;
    nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .map_err(|e| what(&e))?;
    // A name in the run's folder no worker can write; the file moved must be the one
    // checked.
    let _ = std::fs::remove_file(to);
    std::fs::rename(&from, to).map_err(|e| format!("taking the worker's output: {e}"))?;
    let moved = std::fs::symlink_metadata(to).map_err(|e| what(&e))?;
    if (moved.dev(), moved.ino()) != (meta.dev(), meta.ino()) {
        let _ = std::fs::remove_file(to);
        return Err("the worker's output changed while it was taken".to_owned());
    }
    Ok(())
}

/// Streams a pipe into the run log line by line as they come: a line's first
/// `WORKER_LINE_READ_BYTES_MAX` bytes, a stream's output beyond `WORKER_OUTPUT_BYTES_MAX` left out (said once).
async fn pump<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, lines: Lines<'_>, stream: &str) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let emit = |line: &mut Vec<u8>, total: &mut usize| {
        if *total < WORKER_OUTPUT_BYTES_MAX {
            lines(stream, &String::from_utf8_lossy(line));
            *total += line.len();
            if *total >= WORKER_OUTPUT_BYTES_MAX {
                lines(
                    stream,
                    &format!(
                        "[more than {WORKER_OUTPUT_BYTES_MAX} bytes of output: the rest is not logged]"
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
        let room = WORKER_LINE_READ_BYTES_MAX.saturating_sub(line.len());
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
            let home = worker.path().join(HOME);
            let is_worker = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| {
                cwd == home || std::fs::canonicalize(&home).is_ok_and(|w| w == cwd)
            });
            if is_worker {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The per-node folder of a worker inside the run's scratch folder.
pub fn folder(scratch: &Path, node: usize) -> PathBuf {
    scratch.join("workers").join(node.to_string())
}
