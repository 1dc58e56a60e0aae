//! The Python planner (DESIGN §5): `python/planner.py`, embedded in the binary, run under
//! the server's Python with the project's `.py` files on stdin. It parses them with `ast`
//! (never importing or running them) and answers every decorated function with its
//! inputs, parameters and decorator arguments, and every error with its file and line.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

use std::collections::BTreeMap;

use floe_commits::ContentKey;

use super::PlanError;
use super::archive::ProjectFiles;
use super::envs::EnvSpec;
use super::plan::{
    Body, Draft, Materialization, ModelOptions, Node, NodeKind, PyFunction, Read, at, output_key,
};
use super::project::Param;
use super::schema::Schemas;
use super::sql;
use crate::limits::PLANNER_TIMEOUT_MS;

/// The planner script.
pub const PLANNER: &str = include_str!("../../python/planner.py");

/// The interpreter that plans: `FLOE_PYTHON` if set, else `python3` on PATH.
pub fn interpreter() -> String {
    std::env::var("FLOE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// An executable named `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The `major.minor` of the server's Python (the default environment's), asked once.
pub fn server_version() -> Result<String, String> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let python = interpreter();
            let out = Command::new(&python)
                .args([
                    "-I",
                    "-c",
                    "import sys; print('%d.%d' % sys.version_info[:2])",
                ])
                .output()
                .map_err(|e| format!("the server's Python ({python}, FLOE_PYTHON): {e}"))?;
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || version.is_empty() {
                return Err(format!("the server's Python ({python}) does not run"));
            }
            Ok(version)
        })
        .clone()
}

/// The interpreter of Python `version` (`3.11`): `FLOE_PYTHON_3_11`, else `python3.11` on
/// PATH; an error naming the versions that are there otherwise.
pub fn find_version(version: &str) -> Result<PathBuf, String> {
    let valid = version.split('.').count() == 2
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(format!(
            "Python version {version:?} is not a version such as \"3.11\""
        ));
    }
    let var = format!("FLOE_PYTHON_{}", version.replace('.', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return Ok(PathBuf::from(path));
    }
    // The server's own Python (`FLOE_PYTHON`) is the one of its version.
    if server_version().is_ok_and(|v| v == version) {
        let python = interpreter();
        return Ok(on_path(&python).unwrap_or_else(|| PathBuf::from(python)));
    }
    if let Some(path) = on_path(&format!("python{version}")) {
        return Ok(path);
    }
    let there = available_versions();
    Err(format!(
        "Python {version} is not on this server (put python{version} on PATH or set {var}); it has {}",
        if there.is_empty() {
            "none".to_owned()
        } else {
            there.join(", ")
        }
    ))
}

/// The Python versions this server can build environments for.
pub fn available_versions() -> Vec<String> {
    let mut found: BTreeSet<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("FLOE_PYTHON_").map(|v| v.replace('_', ".")))
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = name.strip_prefix("python")
                    && v.starts_with("3.")
                    && v[2..].bytes().all(|b| b.is_ascii_digit())
                    && v.len() > 2
                {
                    found.insert(v.to_owned());
                }
            }
        }
    }
    found.into_iter().collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct PyPlan {
    pub nodes: Vec<PyNode>,
    #[serde(default)]
    pub schemas: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub errors: Vec<PyError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PyNode {
    pub name: String,
    pub function: String,
    /// `model` or `expectation`.
    pub kind: String,
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub inputs: Vec<PyInput>,
    #[serde(default)]
    pub parameters: Vec<PyParameter>,
    /// The literal keyword arguments of `model(...)`.
    #[serde(default)]
    pub model: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub python: Option<serde_json::Value>,
    #[serde(default)]
    pub resources: Option<serde_json::Value>,
    #[serde(default)]
    pub output_schema: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PyInput {
    pub arg: String,
    pub model: String,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub projection_schema: Option<String>,
    pub line: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PyParameter {
    pub arg: String,
    pub name: String,
    pub line: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PyError {
    pub file: String,
    pub line: Option<u32>,
    pub message: String,
}

fn failed(message: String) -> Vec<PlanError> {
    vec![PlanError {
        file: "(planner)".to_owned(),
        line: None,
        message,
    }]
}

/// Plans the project's `.py` files (none: an empty plan, without starting Python).
pub fn plan(files: &ProjectFiles) -> Result<PyPlan, Vec<PlanError>> {
    let sources: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .filter(|(path, _)| path.ends_with(".py"))
        .map(|(path, bytes)| {
            (
                path.clone(),
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
            )
        })
        .collect();
    if sources.is_empty() {
        return Ok(PyPlan {
            nodes: Vec::new(),
            schemas: serde_json::Map::new(),
            errors: Vec::new(),
        });
    }
    let input = serde_json::json!({ "files": sources }).to_string();
    let python = interpreter();
    // The planner reads nothing but the files: an unchanged project plans from memory.
    let key = blake3::hash(format!("{python}\0{PLANNER}\0{input}").as_bytes());
    if let Some(known) = planned(&key) {
        return Ok(known);
    }
    let answer = run_planner(&python, input)?;
    remember(key, &answer);
    Ok(answer)
}

/// The planner's answers kept, most recently used last.
static PLANS: std::sync::Mutex<Vec<(blake3::Hash, PyPlan)>> = std::sync::Mutex::new(Vec::new());
/// At most this many answers are kept (a project's answer is a few KiB).
const PLANS_KEPT: usize = 64;

fn planned(key: &blake3::Hash) -> Option<PyPlan> {
    let mut plans = PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = plans.iter().position(|(k, _)| k == key)?;
    let hit = plans.remove(at);
    let plan = hit.1.clone();
    plans.push(hit);
    Some(plan)
}

fn remember(key: blake3::Hash, plan: &PyPlan) {
    let mut plans = PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if plans.len() >= PLANS_KEPT {
        plans.remove(0);
    }
    plans.push((key, plan.clone()));
}

#[cfg(test)]
thread_local! {
    /// Planner processes this thread started (the tests count them).
    static PLANNERS_STARTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One planner process over `input` (the files as JSON).
fn run_planner(python: &str, input: String) -> Result<PyPlan, Vec<PlanError>> {
    #[cfg(test)]
    PLANNERS_STARTED.with(|n| n.set(n.get() + 1));
    let mut child = Command::new(python)
        .args(["-I", "-c", PLANNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "the project has Python files, and planning them needs {python} on the server: {e} (set FLOE_PYTHON)"
            ))
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Read both pipes on their own threads so a chatty planner never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    // Planning a project takes milliseconds; its deadline is checked between polls.
    let deadline = Instant::now() + Duration::from_millis(PLANNER_TIMEOUT_MS);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "the Python planner took longer than {PLANNER_TIMEOUT_MS} ms"
                )));
            }
            Err(e) => return Err(failed(format!("waiting for the Python planner: {e}"))),
        }
    };
    let _ = writer.join();
    let stdout = reader.join().ok().and_then(Result::ok).unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(failed(format!(
            "the Python planner failed ({status}): {}",
            String::from_utf8_lossy(&stderr)
                .chars()
                .take(2000)
                .collect::<String>()
        )));
    }
    serde_json::from_slice(&stdout)
        .map_err(|e| failed(format!("the Python planner's answer does not parse: {e}")))
}

/// A planned function: its inputs (columns and filter, parameters substituted), its
/// parameters, its environment and limits, checked.
pub(super) fn python_node(
    node: PyNode,
    params: &BTreeMap<String, Param>,
    namespace: &ContentKey,
    schemas: &Schemas,
) -> Result<Draft, Vec<PlanError>> {
    let file = node.file.clone();
    let mut errors = Vec::new();
    let mut parameters = Vec::new();
    for p in &node.parameters {
        if !params.contains_key(&p.name) {
            errors.push(at(
                &file,
                Some(p.line),
                format!(
                    "Parameter({:?}) of {} names no parameter with a value (declare it in the project file, or pass --param {}=...)",
                    p.name, node.function, p.name
                ),
            ));
        }
        parameters.push((p.arg.clone(), p.name.clone()));
    }
    let arg = |k: &str| node.model.get(k);
    let text = |k: &str| arg(k).and_then(|v| v.as_str()).map(str::to_owned);
    let strings = |k: &str| match arg(k) {
        Some(serde_json::Value::String(s)) => Some(vec![s.clone()]),
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    let materialization = match text("materialization_strategy") {
        None => Materialization::None,
        Some(m) => Materialization::parse(&m).unwrap_or_else(|| {
            errors.push(at(
                &file,
                Some(node.line),
                format!("materialization_strategy {m} is not one of NONE, REPLACE, APPEND, OVERWRITE_PARTITIONS"),
            ));
            Materialization::None
        }),
    };
    let kind = if node.kind == "expectation" {
        NodeKind::Expectation
    } else {
        NodeKind::Python
    };
    if let Some(s) = &node.output_schema
        && !schemas.contains(s)
    {
        errors.push(at(
            &file,
            Some(node.line),
            format!(
                "{} returns {s}, which is not a bauplan.TableSchema class of the project",
                node.function
            ),
        ));
    }
    let options = ModelOptions {
        materialization: if kind == NodeKind::Expectation {
            Materialization::None
        } else {
            materialization
        },
        partitioned_by: strings("partitioned_by").unwrap_or_default(),
        overwrite_filter: text("overwrite_filter"),
        columns: strings("columns"),
        output_schema: node.output_schema.clone(),
    };
    let mut names = Vec::new();
    let settings = PySettings::read(&node, &mut errors);
    for input in node.inputs {
        let mut columns = input.columns.clone();
        if let Some(class) = &input.projection_schema {
            match schemas.columns(class) {
                Some(c) if columns.is_none() => {
                    columns = Some(c.into_iter().map(|c| c.name).collect());
                }
                Some(_) => {}
                None => errors.push(at(
                    &file,
                    Some(input.line),
                    format!("projection_schema {class} is not a bauplan.TableSchema class of the project"),
                )),
            }
        }
        let filter = match &input.filter {
            None => None,
            Some(f) => match sql::substitute(f, params) {
                Ok(f) => Some(f),
                Err((p, _)) => {
                    errors.push(at(
                        &file,
                        Some(input.line),
                        format!("the filter of {} names ${p}, which is no parameter with a value (declare it in the project file, or pass --param {p}=...)", input.model),
                    ));
                    None
                }
            },
        };
        let read = Read {
            arg: input.arg.clone(),
            columns,
            filter,
        };
        names.push((input.model, Some(input.line), Some(read)));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Draft {
        node: Node {
            output: output_key(namespace, &node.name)
                .map_err(|e| vec![at(&file, Some(node.line), e)])?,
            name: node.name,
            kind,
            file,
            line: node.line,
            inputs: Vec::new(),
            options,
            body: Body::Python(Box::new(PyFunction {
                function: node.function,
                parameters,
                environment: settings.environment,
                timeout: settings.timeout,
                memory: settings.memory,
                internet: node.model.get("internet_access").and_then(|v| v.as_bool()) == Some(true),
            })),
        },
        names,
    })
}

/// A function's `@python` and `@resources` arguments, checked.
struct PySettings {
    environment: Option<EnvSpec>,
    timeout: Option<std::time::Duration>,
    memory: Option<u64>,
}

impl PySettings {
    fn read(node: &PyNode, errors: &mut Vec<PlanError>) -> PySettings {
        let mut error = |m: String| errors.push(at(&node.file, Some(node.line), m));
        let environment = node.python.as_ref().map(|p| {
            let version = match p.get("version").and_then(|v| v.as_str()) {
                Some(v) => v.trim().to_owned(),
                None => server_version().unwrap_or_else(|e| {
                    error(e);
                    String::new()
                }),
            };
            if !version.is_empty()
                && let Err(e) = find_version(&version)
            {
                error(format!("{}: {e}", node.function));
            }
            let mut pins = BTreeMap::new();
            if let Some(pip) = p.get("pip").and_then(|v| v.as_object()) {
                for (name, v) in pip {
                    let Some(v) = v.as_str() else {
                        error(format!(
                            "pip version {v} of {name} must be a string, such as \"1.5.3\""
                        ));
                        continue;
                    };
                    match pin(name, v) {
                        Ok((n, r)) => {
                            pins.insert(n, r);
                        }
                        Err(e) => error(e),
                    }
                }
            }
            EnvSpec {
                python: version,
                pins,
            }
        });
        let resources = node.resources.as_ref();
        let get = |k: &str| resources.and_then(|r| r.get(k)).filter(|v| !v.is_null());
        let timeout = get("timeout").and_then(|v| match v.as_f64() {
            Some(s) if s > 0.0 && s < 1e9 => Some(std::time::Duration::from_secs_f64(s)),
            _ => {
                error(format!(
                    "the timeout of {} must be a number of seconds above 0",
                    node.function
                ));
                None
            }
        });
        let memory = get("memory").and_then(|v| match memory_bytes(v) {
            Ok(b) => Some(b),
            Err(e) => {
                error(format!("the memory of {}: {e}", node.function));
                None
            }
        });
        PySettings {
            environment,
            timeout,
            memory,
        }
    }
}

/// A `pip={name: version}` entry as (normalized name, requirement): `"1.5.3"` is `==1.5.3`,
/// `""` or `"*"` any version, a specifier (`">=1,<2"`) as written.
fn pin(name: &str, version: &str) -> Result<(String, String), String> {
    let valid_name = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid_name {
        return Err(format!("pip package {name:?} is not a package name"));
    }
    let version = version.trim();
    let valid_version = version.len() <= 100
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".*+!<>=~,- ".contains(&b));
    if !valid_version {
        return Err(format!(
            "pip version {version:?} of {name} is not a version or a specifier"
        ));
    }
    let normalized = name.to_ascii_lowercase().replace(['_', '.'], "-");
    let requirement = if version.is_empty() || version == "*" {
        String::new()
    } else if version.starts_with(['<', '>', '=', '~', '!']) {
        version.replace(' ', "")
    } else {
        format!("=={version}")
    };
    Ok((normalized, requirement))
}

/// `@resources(memory=)`: a number of GiB, or a size such as `"512MB"`, `"2GiB"`, `"4G"`.
fn memory_bytes(value: &serde_json::Value) -> Result<u64, String> {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let bytes = match value {
        serde_json::Value::Number(n) => n.as_f64().map(|g| g * GIB),
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (number, unit) = s.split_at(split);
            let scale = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "g" | "gb" | "gib" => Some(GIB),
                "m" | "mb" | "mib" => Some(GIB / 1024.0),
                "k" | "kb" | "kib" => Some(1024.0),
                "t" | "tb" | "tib" => Some(GIB * 1024.0),
                _ => None,
            };
            number.parse::<f64>().ok().zip(scale).map(|(n, s)| n * s)
        }
        _ => None,
    };
    match bytes {
        Some(b) if (1024.0 * 1024.0..1e15).contains(&b) => Ok(b as u64),
        _ => Err(format!(
            "{value} is not a size of at least 1 MiB (a number of GiB, or \"512MB\", \"2GB\")"
        )),
    }
}

impl From<PyError> for PlanError {
    fn from(e: PyError) -> PlanError {
        PlanError {
            file: e.file,
            line: e.line,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PLANNERS_STARTED, ProjectFiles, plan};

    #[test]
    fn an_unchanged_project_plans_without_starting_python_again() {
        let started = || PLANNERS_STARTED.with(std::cell::Cell::get);
        let mut files = ProjectFiles::new();
        let code = "import bauplan\n\n@bauplan.model()\ndef memo_{n}(data=bauplan.Model('t')):\n    return data\n";
        let unique = format!("{:?}", std::time::SystemTime::now());
        files.insert("m.py".to_owned(), code.replace("{n}", "a").into_bytes());
        files.insert("note.py".to_owned(), format!("# {unique}\n").into_bytes());
        let before = started();
        let first = plan(&files).unwrap();
        assert_eq!(started(), before + 1);
        let again = plan(&files).unwrap();
        assert_eq!(started(), before + 1, "planned from memory");
        assert_eq!(again.nodes.len(), first.nodes.len());
        assert_eq!(again.nodes[0].name, "memo_a");
        // Any change to a file plans again.
        files.insert("m.py".to_owned(), code.replace("{n}", "b").into_bytes());
        let changed = plan(&files).unwrap();
        assert_eq!(started(), before + 2);
        assert_eq!(changed.nodes[0].name, "memo_b");
    }

    /// The planner's own tests (`python/test_planner.py`: both decorator generations,
    /// aliases, every error kind with its line, and that user code never runs) and those
    /// of the release dates of pins (`python/test_release_dates.py`).
    #[test]
    fn the_planners_own_tests_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
        let out = std::process::Command::new(super::interpreter())
            .args([
                "-B",
                "-m",
                "unittest",
                "-q",
                "test_planner",
                "test_release_dates",
            ])
            .current_dir(dir)
            .output()
            .expect("python3 runs (set FLOE_PYTHON to another interpreter)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
