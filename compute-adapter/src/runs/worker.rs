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
    let mut child = command.spawn().map_err(|e| {
        format!(
            "starting the Python worker ({}): {e}",
            launch.python.display()
        )
    })?;
    // The parent's end of the result pipe closes with the command.
    drop(command);
    let group = Group(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let result = tokio::task::spawn_blocking(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut { result_read }, &mut text).map(|_| text)
    });
    let mut stdin = child.stdin.take().expect("piped");
    let spec = launch.spec.to_string();
    let feed = async move {
        let _ = stdin.write_all(spec.as_bytes()).await;
        let _ = stdin.shutdown().await;
    };
    let stdout_stream = pump(child.stdout.take(), lines, "stdout");
    let stderr_stream = pump(child.stderr.take(), lines, "stderr");
    let waited = async {
        let (_, _, _, status) = tokio::join!(feed, stdout_stream, stderr_stream, child.wait());
        status
    };
    let status = match tokio::time::timeout(launch.timeout, waited).await {
        Ok(status) => status.map_err(|e| format!("waiting for the worker: {e}"))?,
        Err(_) => {
            drop(group);
            let _ = child.wait().await;
            return Err(format!(
                "it ran longer than its timeout ({} s) and was killed",
                launch.timeout.as_secs_f64()
            ));
        }
    };
    // Whatever the function started goes with it.
    drop(group);
    let text = result
        .await
        .map_err(|e| format!("reading the worker's result: {e}"))?
        .map_err(|e| format!("reading the worker's result: {e}"))?;
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
    serde_json::from_slice(&text).map_err(|e| format!("the worker's answer does not parse: {e}"))
}

/// Streams a pipe into the run log, line by line as they come.
async fn pump<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, lines: Lines<'_>, stream: &str) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::new(pipe).lines();
    loop {
        match reader.next_line().await {
            Ok(Some(line)) => lines(stream, &line),
            Ok(None) => break,
            // Not UTF-8: the line is shown as far as it reads.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                lines(stream, "[a line that is not UTF-8]");
            }
            Err(_) => break,
        }
    }
}

/// The per-node folder of a worker inside the run's scratch folder.
pub fn home(scratch: &Path, node: usize) -> PathBuf {
    scratch.join("workers").join(node.to_string())
}
