//! Workers confined (issue 19, DESIGN §5 "Python workers"): user code never runs with the
//! server's rights. Where the server runs as root, a worker starts through floe's own
//! binary (`floe worker-sandbox SPEC`), which, before any thread exists:
//!
//! 1. leaves the server's namespaces: a new mount, PID, IPC and UTS namespace, and a new
//!    network namespace unless the function asked for `internet_access`; it joins the
//!    worker's memory cgroup first, so nothing escapes the bound;
//! 2. starts itself again as PID 1 of the new PID namespace (`--inner`), which builds a new
//!    root on a tmpfs: the system folders (`/usr`, `/etc`, the `/lib`s) read-only, the
//!    environment and its interpreter read-only, the run's code and inputs read-only, the
//!    worker's own folder writable, a fresh `/proc` (this namespace's processes only), a
//!    `/dev` of the harmless devices, a private `/tmp` and `/dev/shm`; the server's data folder and
//!    token files are covered should a system folder hold them. The old root goes
//!    (`pivot_root`, then detached): nothing else of the host can be named.
//! 3. sets `no_new_privs`, drops every group, becomes the worker user (`--worker-user`,
//!    default `nobody`) and executes the interpreter. As PID 1, its end ends everything it
//!    started.
//!
//! The first stage waits for the second and ends as it did (its exit code, or its signal).
//! Where this cannot work (the server is not root, or the host has no namespaces) the
//! server says so at start and starting a run needs `manage` (`Sandbox::probe`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use floe_catalog::{CatalogError, Principal};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid, User};
use serde::{Deserialize, Serialize};

use super::{Plan, RunError, plan};
use crate::limits::WORKER_PROCESSES_MAX as PROCESSES_MAX;

/// The subcommand of the floe binary that confines a worker (not a user's verb).
pub const SUBCOMMAND: &str = "worker-sandbox";

/// System folders a worker sees read-only, where the host has them.
pub(super) const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// What a worker sees of `/etc`: what the dynamic linker, name lookups, TLS, time zones,
/// fonts and Python need; never the rest (service environments, credentials).
const ETC: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
];
/// The share of memory a worker's `/tmp` and `/dev/shm` may each take.
const TMPFS_SIZE: &str = "size=25%";
/// Where the probe sees its folder (as workers see theirs: under `/floe`).
const PROBE_HOME: &str = "/floe/home";
/// Devices a worker may open.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// A host path a worker sees, at `to` in its root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub from: PathBuf,
    pub to: PathBuf,
    pub writable: bool,
}

impl Bind {
    pub fn read_only(from: &Path, to: &Path) -> Bind {
        Bind {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            writable: false,
        }
    }

    pub fn writable(from: &Path, to: &Path) -> Bind {
        Bind {
            writable: true,
            ..Bind::read_only(from, to)
        }
    }
}

/// How workers are confined: floe's binary as the launcher, and the user they run as.
#[derive(Debug, Clone)]
pub struct Sandbox {
    launcher: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// What workers may never see, wherever it is: the data folder, token files.
    hidden: Vec<PathBuf>,
}

/// One confined start, as the launcher reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confinement {
    pub uid: u32,
    pub gid: u32,
    /// Keep the host's network (`internet_access=True`).
    pub network: bool,
    /// The memory cgroup's `cgroup.procs`, joined before anything starts.
    pub cgroup_procs: Option<PathBuf>,
    /// An empty folder the new root is mounted on.
    pub root: PathBuf,
    /// What the worker sees of the host, and where.
    pub binds: Vec<Bind>,
    /// Covered if a system folder holds them.
    pub hidden: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub program: Vec<String>,
}

impl Sandbox {
    /// Workers run by `launcher` (floe's binary) as `user` (a name, or `uid[:gid]`),
    /// never seeing `hidden`. Refuses root and users the host does not know.
    pub fn new(launcher: PathBuf, user: &str, hidden: &[PathBuf]) -> Result<Sandbox, String> {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (
                u.parse::<u32>()
                    .map_err(|_| format!("--worker-user {user:?}: expected NAME or UID[:GID]"))?,
                g.parse::<u32>()
                    .map_err(|_| format!("--worker-user {user:?}: expected NAME or UID[:GID]"))?,
            ),
            None => match user.parse::<u32>() {
                Ok(uid) => (uid, uid),
                Err(_) => {
                    let found = User::from_name(user)
                        .map_err(|e| format!("--worker-user {user:?}: {e}"))?
                        .ok_or_else(|| {
                            format!("--worker-user {user:?}: no such user on this host")
                        })?;
                    (found.uid.as_raw(), found.gid.as_raw())
                }
            },
        };
        if uid == 0 || gid == 0 {
            return Err(format!(
                "--worker-user {user:?} is root: workers run as an unprivileged user"
            ));
        }
        // As the host names them: a link in a system folder is covered where it leads.
        let hidden = hidden
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        Ok(Sandbox {
            launcher,
            uid,
            gid,
            hidden,
        })
    }

    /// Whether this host confines workers: a confined worker must run as the worker user,
    /// write its own folder and nothing else. `Err` says why not. `scratch` holds the
    /// probe's folders for the moment it takes.
    pub fn probe(&self, scratch: &Path) -> Result<(), String> {
        possible()?;
        let dir = std::path::absolute(scratch)
            .map_err(|e| format!("{}: {e}", scratch.display()))?
            .join(format!("sandbox-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (root, home) = (dir.join("root"), dir.join("home"));
        for d in [&root, &home] {
            std::fs::create_dir_all(d).map_err(|e| format!("a folder for the probe: {e}"))?;
        }
        let answer = self.probe_in(&dir, root, home);
        let _ = std::fs::remove_dir_all(&dir);
        answer
    }

    fn probe_in(&self, dir: &Path, root: PathBuf, home: PathBuf) -> Result<(), String> {
        self.hand_over(&home)
            .map_err(|e| format!("handing the probe its folder: {e}"))?;
        let spec = Confinement {
            uid: self.uid,
            gid: self.gid,
            network: false,
            cgroup_procs: None,
            root,
            binds: vec![Bind::writable(&home, Path::new(PROBE_HOME))],
            hidden: self.hidden.clone(),
            cwd: PathBuf::from(PROBE_HOME),
            // A worker's user can write its own folder and nothing of the host's.
            program: vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!(
                    "test \"$(id -u)\" = {} && touch \"$PWD/probe\" && ! touch /probe 2>/dev/null",
                    self.uid
                ),
            ],
        };
        let out = self
            .command(&spec)?
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("starting {}: {e}", self.launcher.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "a confined worker did not start ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The launcher's command line for `spec` (environment and descriptors are the
    /// caller's: they pass through both stages to the program).
    pub fn command(&self, spec: &Confinement) -> Result<std::process::Command, String> {
        let text = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new(&self.launcher);
        command.arg(SUBCOMMAND).arg(text);
        Ok(command)
    }

    /// A confinement for this sandbox's user.
    pub fn confine(&self, network: bool, program: Vec<String>) -> Confinement {
        Confinement {
            uid: self.uid,
            gid: self.gid,
            network,
            cgroup_procs: None,
            root: PathBuf::new(),
            binds: Vec::new(),
            hidden: self.hidden.clone(),
            cwd: PathBuf::new(),
            program,
        }
    }

    /// Makes the fresh folder `path` and its `tmp` (made by the server a moment ago, before
    /// any worker could touch them) the worker user's.
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        let owner = (Some(self.uid), Some(self.gid));
        std::os::unix::fs::lchown(path, owner.0, owner.1)?;
        let tmp = path.join("tmp");
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_dir()) {
            std::os::unix::fs::lchown(&tmp, owner.0, owner.1)?;
        }
        Ok(())
    }
}

impl super::Runner {
    /// Where workers are confined, `run` starts confined code only: a run whose functions
    /// reach past their confinement (the network, with `internet_access=True`; the
    /// server's `FLOE_SECRET_*` values) needs `manage` on its target as well.
    pub(super) fn check_past_confinement(
        &self,
        principal: &Principal,
        target: &str,
        plan: &Plan,
        served_secrets: &[String],
    ) -> Result<(), RunError> {
        if self.inner.config.sandbox.is_none() {
            return Ok(());
        }
        let mut reaches: Vec<String> = plan
            .nodes
            .iter()
            .filter(|node| matches!(&node.body, plan::Body::Python(f) if f.internet))
            .map(|node| format!("{} has internet_access=True", node.name))
            .collect();
        reaches.extend(
            served_secrets
                .iter()
                .map(|s| format!("it would receive the server's {s}")),
        );
        if reaches.is_empty() {
            return Ok(());
        }
        let name = floe_commits::RefName::parse(target)
            .map_err(|e| RunError::Invalid(format!("a run lands on a branch: {target:?}: {e}")))?;
        if self.inner.catalog.may_manage(principal, &name) {
            return Ok(());
        }
        Err(RunError::Catalog(CatalogError::Forbidden {
            principal: principal.name().to_owned(),
            action: floe_catalog::Action::Run,
            target: name.to_string(),
            why: format!(
                " this way: {} (confined workers have no network and no server secrets; manage on {name} allows it)",
                reaches.join("; ")
            ),
        }))
    }
}

/// Whether this server could confine workers at all: it must be root to make their
/// namespaces and become their user.
pub fn possible() -> Result<(), String> {
    if Uid::effective().is_root() {
        Ok(())
    } else {
        Err("the server does not run as root, so workers cannot run as another user in namespaces of their own".to_owned())
    }
}

/// The launcher: `floe worker-sandbox SPEC [--inner]`. Never returns; exits as the
/// worker did. Must run before the process starts a thread (`unshare` of a mount
/// namespace needs a process of one thread).
pub fn enter(args: &[OsString]) -> ! {
    let spec = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|t| serde_json::from_str::<Confinement>(t).ok());
    let Some(spec) = spec else {
        eprintln!("floe {SUBCOMMAND}: not a confinement (this subcommand is floe's own)");
        std::process::exit(125);
    };
    let inner = args.get(1).is_some_and(|a| a == "--inner");
    let failed = if inner {
        second_stage(&spec)
    } else {
        first_stage(&spec, &args[0])
    };
    eprintln!("floe {SUBCOMMAND}: {failed}");
    std::process::exit(125)
}

/// New namespaces, then the second stage as PID 1 of the new PID namespace; ends as it did.
fn first_stage(spec: &Confinement, text: &OsString) -> String {
    if let Some(procs) = &spec.cgroup_procs
        && let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"0"))
    {
        return format!("joining the memory cgroup: {e}");
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if !spec.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        return format!("new namespaces: {e}");
    }
    // Stage 2 holds the read end: at its EOF, this stage is gone (killed with its
    // group), and so must stage 2 be (it also asks for SIGKILL at this stage's death).
    let (alive_read, alive_write) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return format!("a pipe to the confined stage: {e}"),
    };
    let mut inner = std::process::Command::new("/proc/self/exe");
    inner.arg(SUBCOMMAND).arg(text).arg("--inner");
    use command_fds::{CommandFdExt, FdMapping};
    if let Err(e) = inner.fd_mappings(vec![FdMapping {
        parent_fd: std::os::fd::OwnedFd::from(alive_read),
        child_fd: ALIVE_FD,
    }]) {
        return format!("a pipe to the confined stage: {e}");
    }
    let status = inner.status();
    drop(alive_write);
    let status = match status {
        Ok(s) => s,
        Err(e) => return format!("starting the confined stage: {e}"),
    };
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
            let _ = nix::sys::signal::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(status.code().unwrap_or(125))
}

/// The new root, then the worker user, then the program.
fn second_stage(spec: &Confinement) -> String {
    // Only ever the first process of a PID namespace stage 1 made: never the host's.
    if std::process::id() != 1 {
        return "the confined stage runs only as stage 1 starts it".to_owned();
    }
    // What this stage makes (the root's folders) is for everyone to read.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // Opened while still root (the pipe is root's).
    let alive = match std::fs::File::open(format!("/proc/self/fd/{ALIVE_FD}")) {
        Ok(f) => f,
        Err(e) => return format!("the stage-1 pipe: {e}"),
    };
    match build_root(spec)
        .and_then(|()| become_worker(spec))
        .and_then(|()| bound_to_stage_one(&alive))
    {
        Ok(()) => {}
        Err(e) => return e,
    }
    drop(alive);
    if let Err(e) = close_inherited() {
        return e;
    }
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = spec.program.split_first() else {
        return "no program to run".to_owned();
    };
    let e = std::process::Command::new(program).args(args).exec();
    format!("running {program}: {e}")
}

/// The descriptor on which stage 2 sees stage 1 alive (a pipe whose writer is stage 1).
const ALIVE_FD: i32 = 4;

/// Dies with stage 1: SIGKILL at its death (set after the change of user, which clears
/// it), and, for a death before that, its end of the pipe already closed. As PID 1 of the
/// namespace, this process's death ends everything in it, including what left the
/// process group (`setsid`).
fn bound_to_stage_one(alive: &std::fs::File) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("the parent-death signal: {e}"))?;
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(alive),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)
        .map_err(|e| format!("the stage-1 pipe: {e}"))?;
    if ready > 0 {
        // EOF (or anything at all): stage 1 is gone.
        std::process::exit(137);
    }
    Ok(())
}

/// Closes every descriptor but the standard three and the answer's (3): nothing the
/// server inherited reaches the worker.
fn close_inherited() -> Result<(), String> {
    let entries =
        std::fs::read_dir("/proc/self/fd").map_err(|e| format!("listing descriptors: {e}"))?;
    let open: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 3)
        .collect();
    for fd in open {
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

fn build_root(spec: &Confinement) -> Result<(), String> {
    let none: Option<&str> = None;
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    // Nothing mounted here reaches the host.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making mounts private: {e}"))?;
    let root = &spec.root;
    fresh(
        "tmpfs",
        root,
        quiet,
        Some("mode=0755,size=4m"),
        &format!("the new root on {}", root.display()),
    )?;
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    for system in SYSTEM {
        let path = Path::new(system);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(path).map_err(|e| format!("{system}: {e}"))?;
                std::os::unix::fs::symlink(to, inside(path))
                    .map_err(|e| format!("{system}: {e}"))?;
            }
            Ok(m) if m.is_dir() => bind(path, &inside(path), false)?,
            _ => {}
        }
    }
    let etc = root.join("etc");
    std::fs::create_dir(&etc).map_err(|e| format!("/etc: {e}"))?;
    let python_etc = std::fs::read_dir("/etc")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("python3"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for name in ETC
        .iter()
        .copied()
        .chain(python_etc.iter().map(String::as_str))
    {
        let path = Path::new("/etc").join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&path).map_err(|e| format!("/etc/{name}: {e}"))?;
                std::os::unix::fs::symlink(to, etc.join(name))
                    .map_err(|e| format!("/etc/{name}: {e}"))?;
            }
            Ok(_) => bind(&path, &etc.join(name), false)?,
            Err(_) => {}
        }
    }
    // Where DNS answers may live (an `/etc/resolv.conf` link into `/run`).
    if spec.network
        && let Ok(resolv) = std::fs::canonicalize("/etc/resolv.conf")
        && !resolv.starts_with("/etc")
    {
        bind(&resolv, &inside(&resolv), false)?;
    }
    // The data folder or a token file inside a system folder is covered.
    for hidden in &spec.hidden {
        let at = inside(hidden);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => fresh(
                "tmpfs",
                &at,
                quiet | MsFlags::MS_NOEXEC,
                Some("mode=0755,size=64k"),
                &format!("covering {}", hidden.display()),
            )?,
            Ok(_) => bind(Path::new("/dev/null"), &at, false)?,
            Err(_) => {}
        }
    }
    // A `/tmp` of its own, /dev and /proc, before the worker's own folders (which may lie
    // under the host's /tmp or /dev/shm).
    let sized = format!("mode=1777,{TMPFS_SIZE}");
    fresh("tmpfs", &root.join("tmp"), quiet, Some(&sized), "/tmp")?;
    let dev = root.join("dev");
    fresh(
        "tmpfs",
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
        "/dev",
    )?;
    for device in DEVICES {
        let from = Path::new("/dev").join(device);
        if from.exists() {
            let to = dev.join(device);
            std::fs::write(&to, b"").map_err(|e| format!("/dev/{device}: {e}"))?;
            mount(Some(&from), &to, none, MsFlags::MS_BIND, none)
                .map_err(|e| format!("/dev/{device}: {e}"))?;
        }
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name)).map_err(|e| format!("/dev/{name}: {e}"))?;
    }
    fresh("tmpfs", &dev.join("shm"), quiet, Some(&sized), "/dev/shm")?;
    fresh(
        "proc",
        &root.join("proc"),
        quiet | MsFlags::MS_NOEXEC,
        None,
        "/proc",
    )?;
    for b in &spec.binds {
        // A bind never shows what is covered.
        let from = std::fs::canonicalize(&b.from).unwrap_or_else(|_| b.from.clone());
        if let Some(h) = spec.hidden.iter().find(|h| h.starts_with(&from)) {
            return Err(format!(
                "{} holds {}, which workers may not see",
                b.from.display(),
                h.display()
            ));
        }
        bind(&b.from, &inside(&b.to), b.writable)?;
    }
    // The old root stacks under the new one, then goes.
    std::env::set_current_dir(root).map_err(|e| format!("entering the new root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("leaving the old root: {e}"))?;
    // The root itself is read-only: a worker writes its own folder and `/tmp` only.
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | quiet,
        none,
    )
    .map_err(|e| format!("the new root read-only: {e}"))?;
    std::env::set_current_dir(&spec.cwd)
        .map_err(|e| format!("entering {}: {e}", spec.cwd.display()))
}

/// Mounts a new file system of `kind` (a tmpfs, a proc) at `at`, made first if it is not
/// there; errors name `what`.
fn fresh(
    kind: &str,
    at: &Path,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(at).map_err(|e| format!("{what}: {e}"))?;
    mount(Some(kind), at, Some(kind), flags, data).map_err(|e| format!("{what}: {e}"))
}

/// Binds `from` at `to` (made as a folder or an empty file first), read-only unless
/// `writable`, never honouring set-user-id bits or devices.
fn bind(from: &Path, to: &Path, writable: bool) -> Result<(), String> {
    let none: Option<&str> = None;
    let what = |e: &dyn std::fmt::Display| format!("showing {}: {e}", from.display());
    let source = std::fs::canonicalize(from).map_err(|e| what(&e))?;
    if !to.exists() {
        if source.is_dir() {
            std::fs::create_dir_all(to).map_err(|e| what(&e))?;
        } else {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| what(&e))?;
            }
            std::fs::write(to, b"").map_err(|e| what(&e))?;
        }
    }
    mount(
        Some(&source),
        to,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| what(&e))?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    // The bind and every mount under it (a remount changes one mount only).
    for at in std::iter::once(to.to_path_buf()).chain(mounts_under(to)) {
        mount(none, &at, none, flags, none).map_err(|e| what(&e))?;
    }
    Ok(())
}

/// The mount points strictly under `dir`, as `/proc/self/mountinfo` lists them.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p != dir && p.starts_with(dir))
        .collect()
}

/// No way back to privilege: `no_new_privs`, no groups, the worker's group and user.
fn become_worker(spec: &Confinement) -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NPROC,
        PROCESSES_MAX,
        PROCESSES_MAX,
    )
    .map_err(|e| format!("bounding processes: {e}"))?;
    let (uid, gid) = (Uid::from_raw(spec.uid), Gid::from_raw(spec.gid));
    nix::unistd::setgroups(&[]).map_err(|e| format!("dropping groups: {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("becoming group {gid}: {e}"))?;
    nix::unistd::setuid(uid).map_err(|e| format!("becoming user {uid}: {e}"))?;
    if Uid::effective() != uid || nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("the worker user could regain root".to_owned());
    }
    Ok(())
}
