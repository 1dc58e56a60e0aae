//! Worker environments (DESIGN §5 "Python workers"): one virtual environment per (Python
//! version, sorted pins, floe runtime version), built by `uv` with Python downloads
//! disabled, cached by the BLAKE3 of that triple in `$FLOE_ENV_CACHE`
//! (`~/.cache/floe/envs/`), built in a temporary folder and renamed into place once every
//! pinned package imports. floe's runtime (the `bauplan` module and the worker) is copied
//! into every environment. Two runs (or two servers) needing one environment build it once:
//! a lock per key in this process, a file lock across processes.
//!
//! Pins without an upper bound on their own dependencies resolve as they did when they
//! were current: uv's `--exclude-newer` at the newest exact pin's upload time (from the
//! index's JSON simple API), with the pins themselves and floe's pyarrow exempt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::python;

/// The pyarrow every environment gets unless the project pins its own: newer releases
/// refuse numpy < 2, which older pins need.
pub const PYARROW: &str = "pyarrow==20.0.0";
/// What the default environment (a function without `@python`) has besides pyarrow.
pub const DEFAULT_PINS: &[(&str, &str)] = &[("pandas", "==2.2.3")];
/// The uv floe installs into its cache when none is on PATH (or `FLOE_UV`).
pub const UV_VERSION: &str = "0.13.9";

/// floe's runtime, copied into every environment (its hash is part of the key).
const RUNTIME: &[(&str, &str)] = &[
    (
        "bauplan/__init__.py",
        include_str!("../../python/bauplan/__init__.py"),
    ),
    (
        "bauplan/_decorators.py",
        include_str!("../../python/bauplan/_decorators.py"),
    ),
    (
        "bauplan/_inputs.py",
        include_str!("../../python/bauplan/_inputs.py"),
    ),
    (
        "bauplan/_schema.py",
        include_str!("../../python/bauplan/_schema.py"),
    ),
    (
        "bauplan/standard_expectations.py",
        include_str!("../../python/bauplan/standard_expectations.py"),
    ),
    (
        "floe_worker.py",
        include_str!("../../python/floe_worker.py"),
    ),
];
const RELEASE_DATES: &str = include_str!("../../python/release_dates.py");
/// Imports every pinned distribution's own module (argv: the distributions): the
/// top-level module named as the distribution, else its one top-level module, else at
/// least one of them (a wheel's other top-level modules may need optional packages:
/// duckdb's `adbc_driver_duckdb`).
const CHECK: &str = r#"
import importlib, importlib.metadata as md, re, sys
for dist in sys.argv[1:]:
    d = md.distribution(dist)
    top = (d.read_text("top_level.txt") or "").split()
    if not top:
        top = sorted({str(f).split("/")[0].removesuffix(".py") for f in (d.files or [])
                      if not str(f).split("/")[0].endswith((".dist-info", ".data", ".pth", ".so"))
                      and "." not in str(f).split("/")[0].removesuffix(".py")
                      and not str(f).startswith(("..", "__pycache__", "bin/"))})
    top = [m for m in top if m.isidentifier() and not m.startswith("_")]
    own = re.sub(r"[-_.]+", "_", dist).lower()
    named = [m for m in top if m.lower() == own]
    if named or len(top) == 1:
        importlib.import_module((named or top)[0])
        continue
    failures = []
    for module in top:
        try:
            importlib.import_module(module)
            break
        except ImportError as e:
            failures.append(e)
    else:
        if failures:
            raise failures[0]
import bauplan, bauplan.standard_expectations, floe_worker, pyarrow
"#;

/// What a function's environment is: the Python version and the pins (`name` to
/// requirement, e.g. `==1.5.3`; empty for any version).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvSpec {
    pub python: String,
    pub pins: BTreeMap<String, String>,
}

impl EnvSpec {
    /// The default environment: the server's Python with pyarrow and pandas.
    pub fn default_for(python: &str) -> EnvSpec {
        EnvSpec {
            python: python.to_owned(),
            pins: DEFAULT_PINS
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The requirements uv installs: the pins, and pyarrow unless pinned.
    pub fn requirements(&self) -> Vec<String> {
        let mut r: Vec<String> = self.pins.iter().map(|(n, v)| format!("{n}{v}")).collect();
        if !self.pins.contains_key("pyarrow") {
            r.push(PYARROW.to_owned());
        }
        r.sort();
        r
    }

    /// BLAKE3 of (Python version, sorted requirements, floe runtime version).
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"floe-env-1\0");
        h.update(self.python.as_bytes());
        for r in self.requirements() {
            h.update(b"\0");
            h.update(r.as_bytes());
        }
        h.update(b"\0runtime\0");
        h.update(runtime_version().as_bytes());
        h.finalize().to_hex()[..32].to_owned()
    }
}

/// The hash of floe's runtime files (a change rebuilds every environment).
pub fn runtime_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        for (path, text) in RUNTIME {
            h.update(path.as_bytes());
            h.update(b"\0");
            h.update(text.as_bytes());
        }
        h.finalize().to_hex()[..16].to_owned()
    })
}

/// Where an environment build tells what it does (the run log).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// A built environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub dir: PathBuf,
    pub python: PathBuf,
    pub key: String,
}

/// What a cached environment says of itself (written last: its presence means built).
#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    key: String,
    python: String,
    requirements: Vec<String>,
    /// Paths (relative to the environment) that must be there.
    files: Vec<String>,
    #[serde(default)]
    exclude_newer: Option<String>,
}

const STAMP: &str = "floe-env.json";

/// The environments of one server.
#[derive(Debug, Clone)]
pub struct Environments {
    inner: Arc<EnvInner>,
}

#[derive(Debug)]
struct EnvInner {
    cache: PathBuf,
    /// Where workers are confined, packages' code (the import check) is too, and only
    /// wheels are installed (no package's build script runs).
    sandbox: Option<super::Sandbox>,
    /// One lock per key being built in this process.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// `$FLOE_ENV_CACHE`, else `~/.cache/floe/envs`.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOE_ENV_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("floe").join("envs")
}

impl Environments {
    pub fn new(cache: PathBuf) -> Environments {
        Environments::confined(cache, None)
    }

    /// Environments whose packages' code runs confined by `sandbox` (when there is one).
    pub fn confined(cache: PathBuf, sandbox: Option<super::Sandbox>) -> Environments {
        // Absolute: an environment's python is started from a worker's own folder.
        let cache = std::path::absolute(&cache).unwrap_or(cache);
        Environments {
            inner: Arc::new(EnvInner {
                cache,
                sandbox,
                building: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn cache(&self) -> &Path {
        &self.inner.cache
    }

    /// The environment `spec` describes, built unless it is cached (and intact). `say`
    /// tells the run log what happens.
    pub async fn get(&self, spec: &EnvSpec, say: Say) -> Result<Env, String> {
        let key = spec.key();
        let lock = self
            .inner
            .building
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        let (cache, sandbox) = (self.inner.cache.clone(), self.inner.sandbox.clone());
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || build(&cache, sandbox.as_ref(), &spec, &key, &*say))
            .await
            .map_err(|e| format!("the environment build stopped: {e}"))?
    }
}

/// Whether the cached environment in `dir` is whole.
fn intact(dir: &Path, key: &str) -> bool {
    let Ok(text) = std::fs::read(dir.join(STAMP)) else {
        return false;
    };
    let Ok(stamp) = serde_json::from_slice::<Stamp>(&text) else {
        return false;
    };
    stamp.key == key
        && dir.join("bin/python").exists()
        && stamp.files.iter().all(|f| dir.join(f).exists())
}

fn build(
    cache: &Path,
    sandbox: Option<&super::Sandbox>,
    spec: &EnvSpec,
    key: &str,
    say: &dyn Fn(&str),
) -> Result<Env, String> {
    let dir = cache.join(key);
    let env = Env {
        python: dir.join("bin/python"),
        dir: dir.clone(),
        key: key.to_owned(),
    };
    if intact(&dir, key) {
        return Ok(env);
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("the environment cache {}: {e}", cache.display()))?;
    // Across processes: one builder per key; the others wait and find it built.
    let lock = std::fs::File::create(cache.join(format!("{key}.lock")))
        .map_err(|e| format!("the environment cache {}: {e}", cache.display()))?;
    lock.lock()
        .map_err(|e| format!("locking the environment {key}: {e}"))?;
    if intact(&dir, key) {
        return Ok(env);
    }
    if dir.exists() {
        say(&format!(
            "the cached environment {key} is damaged: rebuilding it"
        ));
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    let started = std::time::Instant::now();
    say(&format!(
        "building environment {key}: Python {}, {}",
        spec.python,
        spec.requirements().join(" ")
    ));
    // Builds of this key a crashed process left: the lock is ours, so nobody builds them.
    if let Ok(entries) = std::fs::read_dir(cache) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".build-{key}-"))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = cache.join(format!(".build-{key}-{}", std::process::id()));
    let built = build_into(&tmp, sandbox, spec, key, cache, say);
    match built {
        Ok(()) => {
            std::fs::rename(&tmp, &dir)
                .map_err(|e| format!("moving the environment into place: {e}"))?;
            say(&format!(
                "environment {key} built in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Ok(env)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn build_into(
    tmp: &Path,
    sandbox: Option<&super::Sandbox>,
    spec: &EnvSpec,
    key: &str,
    cache: &Path,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let interpreter = python::find_version(&spec.python)?;
    let uv = uv(cache, say)?;
    // Nothing of the server's own secrets reaches a build (its tokens, run secrets, cloud
    // credentials).
    let secret = |k: &std::ffi::OsStr| {
        let k = k.to_string_lossy();
        k.starts_with("FLOE_") || k.starts_with("AWS_")
    };
    let scrubbed: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| secret(k))
        .collect();
    let run = |what: &str, cmd: &mut Command| -> Result<String, String> {
        for k in &scrubbed {
            cmd.env_remove(k);
        }
        let out = cmd
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_NO_PROGRESS", "1")
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
        if out.status.success() {
            return Ok(text(&out.stdout));
        }
        let mut message = text(&out.stderr);
        if message.is_empty() {
            message = text(&out.stdout);
        }
        Err(format!("{what} failed ({}): {message}", out.status))
    };
    run(
        "creating the environment (uv venv)",
        Command::new(&uv)
            .args(["venv", "--relocatable", "--no-python-downloads", "--quiet"])
            .arg("--python")
            .arg(&interpreter)
            .arg(tmp),
    )?;
    let requirements = spec.requirements();
    let file = tmp.join("floe-requirements.txt");
    std::fs::write(&file, requirements.join("\n") + "\n").map_err(|e| e.to_string())?;
    let mut install = Command::new(&uv);
    install.args(["pip", "install", "--no-python-downloads", "--quiet"]);
    if sandbox.is_some() {
        // Wheels only: a source package's build script would run with the server's rights.
        install.arg("--no-build");
    }
    install
        .arg("--python")
        .arg(tmp.join("bin/python"))
        .arg("-r")
        .arg(&file);
    let exclude_newer = cut_off(spec, say);
    if let Some(date) = &exclude_newer {
        install.arg("--exclude-newer").arg(date);
        for name in spec.pins.keys().map(String::as_str).chain(["pyarrow"]) {
            install
                .arg("--exclude-newer-package")
                .arg(format!("{name}=2999-01-01T00:00:00Z"));
        }
    }
    run("installing the pins (uv pip install)", &mut install)?;
    // A virtual environment's own site-packages, found without starting its Python (which
    // would run the packages' `.pth` files).
    let site = tmp
        .join("lib")
        .join(format!("python{}", spec.python))
        .join("site-packages");
    if !site.is_dir() {
        return Err(format!(
            "the environment has no {}: uv made something else than a virtual environment",
            site.display()
        ));
    }
    let mut files = vec![
        relative(tmp, &site.join("floe_worker.py")),
        relative(tmp, &site.join("bauplan/__init__.py")),
    ];
    for (path, text) in RUNTIME {
        let to = site.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&to, text).map_err(|e| format!("installing floe's runtime: {e}"))?;
    }
    let names: Vec<&str> = spec.pins.keys().map(String::as_str).collect();
    if sandbox.is_some() {
        // Bytecode now, by the server: confined workers see the environment read-only and
        // would compile every module at every start. `-S`: no package's `.pth` file runs;
        // compiling runs no package code. A file that does not compile is left as it is.
        let _ = Command::new(tmp.join("bin/python"))
            .args(["-I", "-S", "-m", "compileall", "-q", "-j", "0"])
            .arg(&site)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    // Readable by the worker user, whatever the server's umask.
    readable_by_all(tmp).map_err(|e| format!("opening the environment to workers: {e}"))?;
    let python = tmp.join("bin/python");
    match sandbox {
        // Importing runs the packages' code: confined, as a worker is.
        Some(sandbox) => {
            let checks = tmp.with_extension("check");
            let result = confined_check(sandbox, &python, &checks, &names);
            let _ = std::fs::remove_dir_all(&checks);
            result?;
        }
        None => {
            run(
                "checking that every pinned package imports",
                Command::new(&python).args(["-I", "-c", CHECK]).args(&names),
            )?;
        }
    }
    // Each pinned distribution's metadata must stay: a damaged entry is rebuilt.
    for entry in std::fs::read_dir(&site)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.ends_with(".dist-info") {
            files.push(relative(tmp, &entry.path()));
        }
    }
    let stamp = Stamp {
        key: key.to_owned(),
        python: spec.python.clone(),
        requirements,
        files,
        exclude_newer,
    };
    std::fs::write(
        tmp.join(STAMP),
        serde_json::to_vec_pretty(&stamp).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

/// The import check run confined: as the worker user, without network, seeing the
/// environment and a folder of its own under `dir`.
fn confined_check(
    sandbox: &super::Sandbox,
    python: &Path,
    dir: &Path,
    names: &[&str],
) -> Result<(), String> {
    let (root, home) = (dir.join("root"), dir.join("home"));
    for d in [&root, &home.join("tmp")] {
        std::fs::create_dir_all(d).map_err(|e| format!("the import check's folder: {e}"))?;
    }
    sandbox
        .hand_over(&home)
        .map_err(|e| format!("the import check's folder: {e}"))?;
    let mut program = vec![
        python.to_string_lossy().into_owned(),
        "-I".to_owned(),
        "-c".to_owned(),
        CHECK.to_owned(),
    ];
    program.extend(names.iter().map(|n| (*n).to_owned()));
    let inside = Path::new("/floe/home");
    let mut spec = sandbox.confine(false, program);
    spec.root = root;
    spec.binds = super::worker::environment(python)
        .iter()
        .map(|p| super::sandbox::Bind::read_only(p, p))
        .collect();
    spec.binds
        .push(super::sandbox::Bind::writable(&home, inside));
    spec.cwd = inside.to_path_buf();
    let mut command = sandbox.command(&spec)?;
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", inside)
        .env("TMPDIR", inside.join("tmp"))
        .env("LANG", "C.UTF-8")
        .current_dir(dir);
    // Bounded: a package whose import hangs or floods its output fails the build rather
    // than holding it (and its lock) for ever.
    let what = "checking that every pinned package imports";
    let errors = dir.join("stderr");
    let file = std::fs::File::create(&errors).map_err(|e| format!("{what}: {e}"))?;
    use std::os::unix::process::CommandExt;
    let mut child = command
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = std::time::Instant::now() + IMPORT_CHECK_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            Some(status) => break status,
            None if std::time::Instant::now() >= deadline => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait();
                return Err(format!(
                    "{what} took longer than {} s",
                    IMPORT_CHECK_TIMEOUT.as_secs()
                ));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = Vec::new();
    if let Ok(f) = std::fs::File::open(&errors) {
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, 64 * 1024), &mut said);
    }
    Err(format!(
        "{what} failed ({status}): {}",
        String::from_utf8_lossy(&said).trim()
    ))
}

const IMPORT_CHECK_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(crate::limits::ENV_IMPORT_CHECK_S);

/// Adds read (and, where the owner may, execute) for everyone under `dir`, links left
/// alone.
pub(super) fn readable_by_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // A file another node of the run removed meanwhile needs nothing.
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    let wanted = if meta.is_dir() || mode & 0o100 != 0 {
        mode | 0o555
    } else {
        mode | 0o444
    };
    let gone = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    };
    if wanted != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted)).or_else(gone)?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)?.flatten() {
            readable_by_all(&entry.path())?;
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The newest upload time of the exact pins, or `None` (no exact pin, or the index
/// could not say: then uv resolves as of today, and the log says so).
fn cut_off(spec: &EnvSpec, say: &dyn Fn(&str)) -> Option<String> {
    let exact: Vec<String> = spec
        .pins
        .iter()
        .filter_map(|(n, v)| v.strip_prefix("==").map(|v| format!("{n}=={v}")))
        .filter(|p| !p.contains('*'))
        .collect();
    if exact.is_empty() {
        return None;
    }
    let index = std::env::var("UV_DEFAULT_INDEX")
        .or_else(|_| std::env::var("UV_INDEX_URL"))
        .unwrap_or_else(|_| "https://pypi.org/simple".to_owned());
    let out = Command::new(python::interpreter())
        .args(["-I", "-c", RELEASE_DATES, &index])
        .args(&exact)
        .output();
    let dates: BTreeMap<String, String> = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_default();
    // A day after the newest pin: a release's own sibling packages (polars and its
    // runtime) are uploaded moments after it.
    let newest = dates.values().max().and_then(|d| {
        let at =
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok()?;
        (at + time::Duration::days(1))
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    match &newest {
        Some(date) => say(&format!(
            "resolving what the pins leave open as of {date} (a day after the newest pin's release)"
        )),
        None => say(&format!(
            "the index ({index}) did not say when the pins were released: resolving as of today"
        )),
    }
    newest
}

/// uv: `FLOE_UV`, else on PATH, else installed once from PyPI into `~/.cache/floe`
/// (shared by every environment cache; the cache folder without a home).
fn uv(cache: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("FLOE_UV").map(PathBuf::from) {
        // Named by the operator: used as it is, or refused saying why.
        return recent_enough(path).map_err(|why| format!("FLOE_UV names {why}"));
    }
    if let Some(path) = python::on_path("uv") {
        match recent_enough(path) {
            Ok(path) => return Ok(path),
            Err(why) => say(&format!("{why}: using floe's own uv {UV_VERSION}")),
        }
    }
    let tools = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("floe"))
        .filter(|d| std::fs::create_dir_all(d).is_ok())
        .unwrap_or_else(|| cache.to_path_buf());
    let home = tools.join(format!("uv-{UV_VERSION}"));
    let binary = home.join("bin/uv");
    if binary.exists() {
        return Ok(binary);
    }
    let tmp = tools.join(format!(".uv-{UV_VERSION}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new(python::interpreter())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&tmp)
        .arg(format!("uv=={UV_VERSION}"))
        .output()
        .map_err(|e| format!("installing uv (set FLOE_UV, or put uv on PATH): {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "installing uv {UV_VERSION} from PyPI failed (set FLOE_UV, or put uv on PATH): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match std::fs::rename(&tmp, &home) {
        Ok(()) => {}
        // Another process installed it first.
        Err(_) if binary.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(format!("installing uv: {e}")),
    }
    Ok(binary)
}

/// The oldest uv floe uses (`--exclude-newer-package`, `venv --relocatable`).
const UV_VERSION_MIN: (u32, u32) = (0, 9);

/// `uv`, if it is at least `UV_VERSION_MIN`; else what it is.
fn recent_enough(uv: PathBuf) -> Result<PathBuf, String> {
    match uv_version(&uv) {
        Some(v) if v >= UV_VERSION_MIN => Ok(uv),
        found => Err(format!(
            "{}, which is uv {}; floe needs uv {}.{} or newer",
            uv.display(),
            found.map_or_else(
                || "of an unknown version".to_owned(),
                |(a, b)| format!("{a}.{b}")
            ),
            UV_VERSION_MIN.0,
            UV_VERSION_MIN.1
        )),
    }
}

/// `uv --version` as (major, minor).
fn uv_version(uv: &Path) -> Option<(u32, u32)> {
    let out = Command::new(uv).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_version_and_the_pins_but_not_their_order() {
        let a = EnvSpec {
            python: "3.11".into(),
            pins: [
                ("pandas".into(), "==1.5.3".into()),
                ("numpy".into(), "".into()),
            ]
            .into(),
        };
        let mut b = a.clone();
        b.pins = [
            ("numpy".into(), "".into()),
            ("pandas".into(), "==1.5.3".into()),
        ]
        .into();
        assert_eq!(a.key(), b.key());
        b.python = "3.12".into();
        assert_ne!(a.key(), b.key());
        let mut c = a.clone();
        c.pins.insert("pandas".into(), "==2.2.0".into());
        assert_ne!(a.key(), c.key());
        assert!(a.requirements().contains(&PYARROW.to_owned()));
        c.pins.insert("pyarrow".into(), "==19.0.1".into());
        assert!(!c.requirements().contains(&PYARROW.to_owned()));
    }

    /// What an environment build said, to count builds.
    fn recorder() -> (Arc<Mutex<Vec<String>>>, Say) {
        let said = Arc::new(Mutex::new(Vec::new()));
        let to = said.clone();
        (said, Arc::new(move |m: &str| to.lock().push(m.to_owned())))
    }

    fn builds(said: &Mutex<Vec<String>>) -> usize {
        said.lock()
            .iter()
            .filter(|m| m.starts_with("building environment"))
            .count()
    }

    /// pyarrow only: the smallest environment.
    fn small() -> EnvSpec {
        EnvSpec {
            python: python::server_version().unwrap(),
            pins: BTreeMap::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cached_environment_is_reused_and_a_damaged_one_rebuilt() {
        let cache = tempfile::tempdir().unwrap();
        let envs = Environments::new(cache.path().to_owned());
        let (said, say) = recorder();
        let env = envs.get(&small(), say.clone()).await.unwrap();
        assert_eq!(builds(&said), 1, "{said:?}");
        assert!(env.python.exists());
        // The environment runs floe's worker module and pyarrow.
        let out = std::process::Command::new(&env.python)
            .args([
                "-I",
                "-c",
                "import floe_worker, bauplan, pyarrow; print(pyarrow.__version__)",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20.0.0");
        // A hit builds nothing.
        let again = envs.get(&small(), say.clone()).await.unwrap();
        assert_eq!(again.dir, env.dir);
        assert_eq!(builds(&said), 1, "{said:?}");
        // A damaged entry (a package's metadata gone) is rebuilt.
        let dist = std::fs::read_dir(
            std::fs::read_dir(env.dir.join("lib"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("site-packages"),
        )
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("pyarrow-"))
        .unwrap()
        .path();
        std::fs::remove_dir_all(&dist).unwrap();
        envs.get(&small(), say.clone()).await.unwrap();
        assert_eq!(builds(&said), 2, "{said:?}");
        assert!(
            said.lock()
                .iter()
                .any(|m| m.contains("is damaged: rebuilding it"))
        );
        assert!(dist.exists());
        // So is one whose stamp does not parse.
        std::fs::write(env.dir.join(STAMP), b"{").unwrap();
        envs.get(&small(), say).await.unwrap();
        assert_eq!(builds(&said), 3, "{said:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runs_needing_one_environment_build_it_once() {
        let cache = tempfile::tempdir().unwrap();
        // Two servers' worth of caches on one folder: each its own process-local locks.
        let a = Environments::new(cache.path().to_owned());
        let b = Environments::new(cache.path().to_owned());
        let (said, say) = recorder();
        let spec = small();
        let (x, y) = tokio::join!(a.get(&spec, say.clone()), b.get(&spec, say.clone()));
        assert_eq!(x.unwrap().dir, y.unwrap().dir);
        assert_eq!(builds(&said), 1, "{said:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_build_says_what_the_installer_said_and_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let envs = Environments::new(cache.path().to_owned());
        let (_, say) = recorder();
        let mut spec = small();
        spec.pins
            .insert("floe-no-such-package-anywhere".into(), "==1.0".into());
        let e = envs.get(&spec, say).await.unwrap_err();
        assert!(e.contains("installing the pins"), "{e}");
        assert!(e.contains("floe-no-such-package-anywhere"), "{e}");
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_runtime_holds_every_file_of_the_bauplan_module() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
        let mut on_disk: Vec<String> = std::fs::read_dir(format!("{dir}/bauplan"))
            .unwrap()
            .flatten()
            .map(|e| format!("bauplan/{}", e.file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.push("floe_worker.py".to_owned());
        on_disk.sort();
        let mut embedded: Vec<String> = RUNTIME.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "RUNTIME (envs.rs) lists every runtime file"
        );
    }

    /// The `bauplan` module's own tests (`python/test_bauplan.py`), in an environment
    /// with pyarrow, so none of them skips.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bauplan_modules_own_tests_pass_with_pyarrow() {
        let envs = Environments::new(default_cache());
        let (_, say) = recorder();
        let env = envs.get(&small(), say).await.unwrap();
        let out = std::process::Command::new(&env.python)
            .args(["-B", "-m", "unittest", "-v", "test_bauplan"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/python"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains("skipped"), "{text}");
    }

    #[test]
    fn a_python_version_that_is_not_there_names_those_that_are() {
        let e = python::find_version("3.1").unwrap_err();
        assert!(e.contains("Python 3.1 is not on this server"), "{e}");
        let here = python::server_version().unwrap();
        assert!(e.contains(&here), "{e}");
        assert!(
            python::find_version("3.x")
                .unwrap_err()
                .contains("not a version")
        );
    }
}
