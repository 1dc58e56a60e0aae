//! Python workers (issue 17), in the default worker environment (built by uv into the
//! shared cache if it is not there yet), each figure against its baseline in the same run:
//!
//! - **Arrow handoff** of a `ROWS`-row table from one Python node to the next: the
//!   producer's write plus the consumer's open (floe's own `floe_worker` functions: an
//!   Arrow IPC file, memory-mapped) against the same through Parquet (`benches/handoff.py`);
//! - **worker start** in a cached environment, up to the user's function being called
//!   (`worker::run`, as a run starts a node: process group, scrubbed environment, network
//!   namespace where the host has them, spec on stdin), against `python -c "import
//!   pyarrow"` in the same environment, start to exit; and that the worker imported
//!   neither pandas nor polars; with `FLOE_BIN` (floe's binary, the launcher) on a host
//!   that confines workers (issue 19), the same start confined (its own user and
//!   namespaces, a new root), against the unconfined one;
//! - **a new environment** with one small pinned package, uv's download cache warm, into
//!   an empty environment cache.
//!
//! `cargo bench -p floe-compute --bench python`; `FLOE_BENCH_SCALE=10` divides the rows
//! by 10 (not for the record).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floe_compute::runs::envs::{EnvSpec, Environments, default_cache};
use floe_compute::runs::{Sandbox, python, worker};

const ROWS: usize = 10_000_000;
const HANDOFF_REPEATS: usize = 5;
const START_REPEATS: usize = 20;
const ENV_REPEATS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let div: usize = std::env::var("FLOE_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("FLOE_BENCH_SCALE is a positive integer"))
        .unwrap_or(if bench { 1 } else { 100 })
        .max(1);
    let rows = (ROWS / div).max(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let say: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|m: &str| eprintln!("  env: {m}"));
    let version = python::server_version().expect("the server's Python runs");
    let envs = Environments::new(default_cache());
    let env = runtime
        .block_on(envs.get(&EnvSpec::default_for(&version), say.clone()))
        .expect("the default environment builds");
    // Scratch as runs have it: tmpfs when the host has one.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    println!(
        "==== Python workers (issue 17): Python {version}, environment {}, scratch {}{} ====",
        env.key,
        scratch.path().display(),
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );

    // Handoff.
    let out = Command::new(&env.python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/handoff.py"))
        .arg(rows.to_string())
        .arg(scratch.path())
        .arg(HANDOFF_REPEATS.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| h[k].as_f64().unwrap();
    println!(
        "handoff of {rows} rows ({} MB): floe (IPC write + mmap open) {:.1} ms, Parquet (write + read) {:.1} ms: {:.1}x faster (need >= 10x)",
        h["ipc_bytes"].as_u64().unwrap() >> 20,
        f("floe_handoff_ms"),
        f("parquet_handoff_ms"),
        f("parquet_handoff_ms") / f("floe_handoff_ms"),
    );
    println!(
        "consumer's open: floe (mmap) {:.2} ms, Parquet read {:.1} ms: {:.0}x faster (need >= 50x)",
        f("floe_open_ms"),
        f("parquet_open_ms"),
        f("parquet_open_ms") / f("floe_open_ms"),
    );

    // Worker start.
    let project = scratch.path().join("code");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("start.py"),
        "import sys, time\nimport bauplan\nimport pyarrow as pa\n\n@bauplan.model()\ndef called():\n    at = time.time()\n    return pa.table({'at': [at], 'pandas': ['pandas' in sys.modules], 'polars': ['polars' in sys.modules]})\n",
    )
    .unwrap();
    let isolated = worker::network_isolation().is_some();
    let io = scratch.path().join("io");
    std::fs::create_dir_all(&io).unwrap();
    let sandbox = std::env::var_os("FLOE_BIN").and_then(|bin| {
        let sandbox = Sandbox::new(bin.into(), "nobody", &[]).ok()?;
        match sandbox.probe(scratch.path()) {
            Ok(()) => Some(sandbox),
            Err(e) => {
                eprintln!("  workers cannot be confined here: {e}");
                None
            }
        }
    });
    let start = |i: usize, confined: Option<&Sandbox>| {
        let folder = scratch.path().join(format!("w{i}-{}", confined.is_some()));
        let output = worker::output(&folder);
        let spec = serde_json::json!({
            "project": project, "file": "start.py", "function": "called", "name": "called",
            "kind": "model", "inputs": {}, "parameters": {}, "output": output,
        });
        let launched = SystemTime::now();
        let answer = runtime
            .block_on(worker::run(
                worker::Launch {
                    python: &env.python,
                    folder: &folder,
                    code: &project,
                    io: &io,
                    sandbox: confined,
                    spec,
                    timeout: Duration::from_secs(60),
                    isolated: true,
                    memory: None,
                },
                &|_: &str, _: &str| {},
            ))
            .unwrap();
        assert!(answer.ok, "{answer:?}");
        let (at, pandas, polars) = read_start(&env.python, &output);
        assert!(!pandas && !polars, "the worker imported pandas or polars");
        let since = launched.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        (at - since) * 1e3
    };
    let mut starts = Vec::new();
    let mut confined_starts = Vec::new();
    let mut imports = Vec::new();
    for i in 0..START_REPEATS {
        starts.push(start(i, None));
        if let Some(sandbox) = &sandbox {
            confined_starts.push(start(i, Some(sandbox)));
        }
        let t = Instant::now();
        let status = Command::new(&env.python)
            .args(["-c", "import pyarrow"])
            .status()
            .unwrap();
        assert!(status.success());
        imports.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (start, import) = (median(starts), median(imports));
    println!(
        "worker start to the function's call: {start:.1} ms p50 ({}network namespace); python -c \"import pyarrow\": {import:.1} ms p50: {:.2}x (need <= 1.5x); pandas and polars not imported",
        if isolated { "with a " } else { "no " },
        start / import
    );
    if confined_starts.is_empty() {
        println!("confined worker start: not measured (set FLOE_BIN to floe's binary, as root)");
    } else {
        let confined = median(confined_starts);
        println!(
            "confined worker start to the function's call: {confined:.1} ms p50: {:.2}x the unconfined start, {:.2}x python -c \"import pyarrow\" (need <= 1.5x)",
            confined / start,
            confined / import
        );
    }

    // A new environment with one small pin, uv's download cache warm (the first build
    // warms it; each timed build goes into an empty cache).
    let pin = EnvSpec {
        python: version.clone(),
        pins: BTreeMap::from([("six".to_owned(), "==1.16.0".to_owned())]),
    };
    let warm = tempfile::tempdir().unwrap();
    runtime
        .block_on(Environments::new(warm.path().to_owned()).get(&pin, say.clone()))
        .unwrap();
    let mut builds = Vec::new();
    for _ in 0..ENV_REPEATS {
        let cache = tempfile::tempdir().unwrap();
        let quiet: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|_: &str| {});
        let t = Instant::now();
        runtime
            .block_on(Environments::new(cache.path().to_owned()).get(&pin, quiet))
            .unwrap();
        builds.push(t.elapsed().as_secs_f64());
    }
    println!(
        "a new environment (six==1.16.0 and pyarrow, uv's cache warm): {:.2} s p50 of {ENV_REPEATS} (need <= 5 s)",
        median(builds)
    );
}

/// The time the function was called at, and whether pandas or polars were imported.
fn read_start(python: &Path, output: &Path) -> (f64, bool, bool) {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, pyarrow as pa\nt = pa.ipc.open_file(pa.memory_map(sys.argv[1])).read_all().to_pylist()[0]\nprint(repr(t['at']), t['pandas'], t['polars'])",
        ])
        .arg(output)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let at: f64 = parts.next().unwrap().parse().unwrap();
    (
        at,
        parts.next() == Some("True"),
        parts.next() == Some("True"),
    )
}
