//! The Python planner (DESIGN §5): `python/planner.py`, embedded in the binary, run under
//! the server's Python with the project's `.py` files on stdin. It parses them with `ast`
//! (never importing or running them) and answers every decorated function with its
//! inputs, parameters and decorator arguments, and every error with its file and line.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::PlanError;
use super::archive::ProjectFiles;
use crate::limits::PLANNER_TIMEOUT_MS;

/// The planner script.
pub const PLANNER: &str = include_str!("../../python/planner.py");

/// The interpreter that plans: `FLOE_PYTHON` if set, else `python3` on PATH.
pub fn interpreter() -> String {
    std::env::var("FLOE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
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
    let mut child = Command::new(&python)
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
    /// The planner's own tests (`python/test_planner.py`): both decorator generations,
    /// aliases, every error kind with its line, and that user code never runs.
    #[test]
    fn the_planners_own_tests_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
        let out = std::process::Command::new(super::interpreter())
            .args(["-B", "-m", "unittest", "-q", "test_planner"])
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
