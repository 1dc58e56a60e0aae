//! A pipeline run's part of its run record (DESIGN §7): the project, the code snapshot,
//! the parameters (secrets masked), the options and, per node, its kind, state, times,
//! rows and bytes out, output table and error. Stored as the record's `pipeline` value;
//! bounded so a record stays one meta value (`RUN_NODES_MAX` nodes, errors cut to
//! `NODE_ERROR_BYTES_MAX`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{Materialization, NodeKind, Plan, Source};
use super::scheduler::NodeState;
use crate::limits::{NODE_ERROR_BYTES_MAX, NODE_EXCERPT_CHARS};

/// How `--preview` shows each model's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preview {
    Head,
    Tail,
    #[default]
    Off,
}

/// What a run was asked to do (the `options` part of `POST /api/v1/runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunOptions {
    /// The branch the run lands on (default `main`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where bare names resolve (else the project's `defaults.namespace`, else `bauplan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `--param k=v`, as given (parsed by the declared types).
    #[serde(default, skip_serializing)]
    pub params: BTreeMap<String, String>,
    /// Execute, materialize nothing, land nothing; report each model's schema and rows.
    #[serde(default)]
    pub dry_run: bool,
    /// Plan only: answer the DAG, run nothing.
    #[serde(default)]
    pub plan: bool,
    /// An output whose columns differ from those declared fails the run.
    #[serde(default)]
    pub strict: bool,
    /// Each materialized model lands as its own commit as soon as it is written (not atomic).
    #[serde(default)]
    pub no_transaction: bool,
    #[serde(default)]
    pub preview: Preview,
    /// The run's deadline, in seconds (at most the server's `--run-timeout`); past it the
    /// run is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Execute every node, reusing no earlier output (and keeping none).
    #[serde(default)]
    pub no_cache: bool,
}

/// Why a run failed, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The run did not plan once it started: a worker environment did not build.
    Planning,
    /// A node failed.
    Execution,
    /// The landing met a concurrent change to something the run read or wrote.
    Conflict,
    /// The server stopped, or the run's bookkeeping failed.
    Server,
    /// Someone cancelled it.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeError {
    pub message: String,
    /// What the node ran (a SQL model's statement, cut to `NODE_EXCERPT_CHARS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    pub kind: NodeKind,
    pub file: String,
    pub line: u32,
    /// The models and tables it reads, as named in its code.
    pub inputs: Vec<String>,
    pub materialization: Materialization,
    /// The table it writes (materialized models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_table: Option<String>,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes written to the table (materialized models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<Column>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    /// An expectation's answer (`false` without `--strict` is a warning, not a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The worker environment of a Python node (its key in the environment cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Its output was an earlier run's (the results cache): it did not execute.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// The run whose output it reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// The BLAKE3 of the code snapshot (`GET /api/v1/runs/{id}/code`).
    pub code: String,
    pub namespace: String,
    /// Each parameter's value (secrets masked).
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub options: RunOptions,
    pub nodes: Vec<NodeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Commits of a `--no-transaction` run, in the order they landed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<String>,
}

impl Pipeline {
    pub fn new(plan: &Plan, code: String, options: &RunOptions) -> Pipeline {
        Pipeline {
            project_id: plan.project.id.clone(),
            project_name: plan.project.name.clone(),
            code,
            namespace: plan.namespace.to_string(),
            parameters: plan
                .params
                .iter()
                .map(|(k, p)| (k.clone(), p.shown()))
                .collect(),
            options: options.clone(),
            nodes: plan
                .nodes
                .iter()
                .map(|n| NodeRecord {
                    name: n.name.clone(),
                    kind: n.kind,
                    file: n.file.clone(),
                    line: n.line,
                    inputs: n
                        .inputs
                        .iter()
                        .map(|i| match &i.source {
                            Source::Model(m) => plan.nodes[*m].name.clone(),
                            Source::Table(key) => key.to_string(),
                        })
                        .collect(),
                    materialization: n.options.materialization,
                    output_table: (n.options.materialization != Materialization::None)
                        .then(|| n.output.to_string()),
                    state: NodeState::Pending,
                    started_ms: None,
                    finished_ms: None,
                    rows: None,
                    bytes: None,
                    schema: None,
                    error: None,
                    passed: None,
                    environment: None,
                    cached: false,
                    cached_from: None,
                })
                .collect(),
            failure: None,
            commits: Vec::new(),
        }
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a pipeline record serializes")
    }

    pub fn from_value(value: &serde_json::Value) -> Option<Pipeline> {
        serde_json::from_value(value.clone()).ok()
    }
}

/// `text` cut to the bytes a record keeps of an error.
pub fn cut(text: &str) -> String {
    if text.len() <= NODE_ERROR_BYTES_MAX {
        return text.to_owned();
    }
    let mut end = NODE_ERROR_BYTES_MAX - 16;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [... cut]", &text[..end])
}

/// The start of what a node ran, for its error.
pub fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(NODE_EXCERPT_CHARS).collect();
    if out.len() < text.len() {
        out.push_str(" ...");
    }
    out
}
