//! Planning (DESIGN §5): a project's files become a DAG of nodes, without running any of
//! its code. SQL models come from `.sql` files (`sql.rs`), Python models and expectations
//! from the Python planner (`python.rs`). An input name means a model of the project
//! first, then a table at the fork (bare names in the run namespace). A name defined
//! twice, a cycle, an unknown input, a missing or ill-typed parameter and a syntax error
//! are planning errors naming the file and line; every one found is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::common::TableReference;
use datafusion::sql::parser::Statement as DfStatement;
use floe_commits::ContentKey;
use serde::{Deserialize, Serialize};

use super::PlanError;
use super::archive::ProjectFiles;
use super::project::{PROJECT_FILES, Param, Project};
use super::python::PyPlan;
use super::schema::Schemas;
use super::sql;
use crate::limits::RUN_NODES_MAX;

/// The run namespace when neither `--namespace` nor the project's defaults name one.
pub const DEFAULT_RUN_NAMESPACE: &str = "bauplan";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A `.sql` file.
    Sql,
    /// A function decorated with `model`.
    Python,
    /// A function decorated with `expectation`.
    Expectation,
}

/// What a model's output becomes on the run branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Materialization {
    /// Not written (the default): passed to the models that read it.
    None,
    Replace,
    Append,
    OverwritePartitions,
}

impl Materialization {
    pub(super) fn parse(text: &str) -> Option<Materialization> {
        match text.trim().to_ascii_uppercase().as_str() {
            "NONE" => Some(Materialization::None),
            "REPLACE" => Some(Materialization::Replace),
            "APPEND" => Some(Materialization::Append),
            "OVERWRITE_PARTITIONS" => Some(Materialization::OverwritePartitions),
            _ => None,
        }
    }
}

/// A model's declared options (the model decorator's arguments, or a SQL file's headers).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelOptions {
    pub materialization: Materialization,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitioned_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrite_filter: Option<String>,
    /// The columns the output declares (`--strict` checks them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<String>,
}

impl Default for ModelOptions {
    fn default() -> ModelOptions {
        ModelOptions {
            materialization: Materialization::None,
            partitioned_by: Vec::new(),
            overwrite_filter: None,
            columns: None,
            output_schema: None,
        }
    }
}

/// Where an input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The output of node `n` of the plan.
    Model(usize),
    /// A table at the fork.
    Table(ContentKey),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The name as the code spells it.
    pub name: String,
    pub source: Source,
    /// What a Python function asks of it (`None` for SQL, which reads it whole).
    pub read: Option<Read>,
}

/// A Python function's input: the argument it arrives in, with the columns and the
/// filter pushed into its scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub arg: String,
    pub columns: Option<Vec<String>>,
    /// A SQL boolean expression, parameters substituted.
    pub filter: Option<String>,
}

/// A Python function as it runs: its environment, limits and parameters.
#[derive(Debug, Clone)]
pub struct PyFunction {
    pub function: String,
    /// (argument, parameter name) for each `Parameter(...)` argument.
    pub parameters: Vec<(String, String)>,
    /// `None`: the default environment.
    pub environment: Option<super::envs::EnvSpec>,
    /// `@resources(timeout=)`.
    pub timeout: Option<std::time::Duration>,
    /// `@resources(memory=)`, bytes.
    pub memory: Option<u64>,
    /// `@model(internet_access=True)`.
    pub internet: bool,
}

/// What runs for a node.
#[derive(Debug, Clone)]
pub enum Body {
    /// The statement with its parameters substituted, and the tables it names as
    /// DataFusion resolves them (one per input, in order).
    Sql {
        statement: Box<DfStatement>,
        references: Vec<TableReference>,
        /// The file's text as written (parameters not substituted: secrets stay out).
        text: String,
    },
    /// A Python function, run by a worker process.
    Python(Box<PyFunction>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub file: String,
    pub line: u32,
    pub inputs: Vec<Input>,
    pub options: ModelOptions,
    /// The table a materialized output is written to.
    pub output: ContentKey,
    pub body: Body,
}

impl Node {
    /// The nodes this one waits for.
    pub fn upstream(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().filter_map(|i| match i.source {
            Source::Model(n) => Some(n),
            Source::Table(_) => None,
        })
    }

    /// Its output, when it is written by appending rows (it lands over concurrent
    /// appends, issue 22).
    pub fn appended(&self) -> Option<ContentKey> {
        (self.options.materialization == Materialization::Append).then(|| self.output.clone())
    }
}

/// A planned run: nodes in a topological order (each after every node it reads).
#[derive(Debug, Clone)]
pub struct Plan {
    pub project: Project,
    pub namespace: ContentKey,
    pub params: BTreeMap<String, Param>,
    pub nodes: Vec<Node>,
    /// The project's `bauplan.TableSchema` classes.
    pub schemas: Schemas,
}

impl Plan {
    /// The values of the run's secret parameters.
    pub fn secrets(&self) -> super::project::Secrets {
        super::project::Secrets::of(&self.params)
    }
}

/// What planning needs beyond the files.
#[allow(missing_debug_implementations)] // closures
pub struct PlanContext<'a> {
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--param k=v`, as given.
    pub params: BTreeMap<String, String>,
    /// The server's environment, for `FLOE_SECRET_<NAME>`.
    pub secret_env: &'a dyn Fn(&str) -> Option<String>,
    /// The table a key names at the target's head, matched regardless of case; `None`
    /// when there is none.
    pub table: &'a dyn Fn(&ContentKey) -> Result<Option<ContentKey>, String>,
}

pub(super) fn at(file: &str, line: Option<u32>, message: impl Into<String>) -> PlanError {
    PlanError {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// The project file of an archive.
fn project_file(files: &ProjectFiles) -> Result<(String, String), Vec<PlanError>> {
    for name in PROJECT_FILES {
        if let Some(bytes) = files.get(name) {
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| vec![at(name, None, "it is not UTF-8 text")])?;
            return Ok((name.to_owned(), text));
        }
    }
    Err(vec![at(
        PROJECT_FILES[0],
        None,
        "the project has no bauplan_project.yml (or .yaml) at its root",
    )])
}

/// A planned node before its inputs are resolved.
pub(super) struct Draft {
    pub(super) node: Node,
    /// Input names with the line that names them (and what a function reads of them).
    pub(super) names: Vec<(String, Option<u32>, Option<Read>)>,
}

/// Plans a project: files, parameters and the Python planner's answer (`py`).
pub fn plan(
    files: &ProjectFiles,
    py: PyPlan,
    cx: &PlanContext<'_>,
) -> Result<Plan, Vec<PlanError>> {
    let (file, text) = project_file(files)?;
    let project = Project::parse(&file, &text)?;
    let mut errors: Vec<PlanError> = py.errors.into_iter().map(PlanError::from).collect();
    let schemas = Schemas::from_planner(&py.schemas);
    let params = match project.resolve(&cx.params, cx.secret_env) {
        Ok(p) => p,
        Err(e) => {
            errors.extend(e);
            BTreeMap::new()
        }
    };
    let ns_name = cx
        .namespace
        .clone()
        .or_else(|| project.namespace.clone())
        .unwrap_or_else(|| DEFAULT_RUN_NAMESPACE.to_owned());
    let namespace = ContentKey::new(ns_name.split('.')).map_err(|e| {
        vec![at(
            &file,
            None,
            format!("the run namespace {ns_name:?} is not a valid namespace: {e}"),
        )]
    })?;
    let mut drafts = Vec::new();
    for (path, bytes) in files {
        if !path.ends_with(".sql") {
            continue;
        }
        match sql_node(path, bytes, &params, &namespace, &schemas) {
            Ok(d) => drafts.push(d),
            Err(e) => errors.extend(e),
        }
    }
    for node in py.nodes {
        match super::python::python_node(node, &params, &namespace, &schemas) {
            Ok(d) => drafts.push(d),
            Err(e) => errors.extend(e),
        }
    }
    if drafts.len() > RUN_NODES_MAX {
        errors.push(at(
            &file,
            None,
            format!(
                "the project has {} nodes, more than a run plans (RUN_NODES_MAX, {RUN_NODES_MAX})",
                drafts.len()
            ),
        ));
    }
    if drafts.is_empty() && errors.is_empty() {
        errors.push(at(
            &file,
            None,
            "the project has no models: no .sql file and no function decorated with bauplan.model",
        ));
    }
    let nodes = resolve(drafts, &namespace, cx, &mut errors);
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(errors);
    }
    Ok(Plan {
        project,
        namespace,
        params,
        nodes,
        schemas,
    })
}

fn sql_node(
    path: &str,
    bytes: &[u8],
    params: &BTreeMap<String, Param>,
    namespace: &ContentKey,
    schemas: &Schemas,
) -> Result<Draft, Vec<PlanError>> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| vec![at(path, None, "it is not UTF-8 text")])?;
    let file = sql::read(path, text)?;
    let header = |k: &str| file.headers.get(k).map(|(v, _)| v.clone());
    let line_of = |k: &str| file.headers.get(k).map(|(_, l)| *l);
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".sql")
        .to_owned();
    let name = header("name").unwrap_or(stem);
    let mut errors = Vec::new();
    let materialization = match header("materialization_strategy") {
        None => Materialization::None,
        Some(m) => Materialization::parse(&m).unwrap_or_else(|| {
            errors.push(at(
                path,
                line_of("materialization_strategy"),
                format!("materialization_strategy {m} is not one of NONE, REPLACE, APPEND, OVERWRITE_PARTITIONS"),
            ));
            Materialization::None
        }),
    };
    let options = ModelOptions {
        materialization,
        partitioned_by: header("partitioned_by")
            .map(|v| sql::list(&v))
            .unwrap_or_default(),
        overwrite_filter: header("overwrite_filter"),
        columns: header("columns").map(|v| sql::list(&v)),
        output_schema: header("output_schema"),
    };
    if let Some(class) = &options.output_schema
        && !schemas.contains(class)
    {
        errors.push(at(
            path,
            line_of("output_schema"),
            format!("output_schema {class} is not a bauplan.TableSchema class of the project"),
        ));
    }
    let substituted = sql::substitute(text, params).map_err(|(p, line)| {
        vec![at(
            path,
            Some(line),
            format!("${p} names no parameter with a value (declare it in the project file, or pass --param {p}=...)"),
        )]
    })?;
    let statement = sql::parse(path, &substituted).map_err(|e| vec![e])?;
    let references = sql::tables(path, &statement).map_err(|e| vec![e])?;
    if !errors.is_empty() {
        return Err(errors);
    }
    let names = references
        .iter()
        .map(|r| (r.to_string(), line_naming(text, r.table()), None))
        .collect();
    let inputs = Vec::new();
    Ok(Draft {
        node: Node {
            output: output_key(namespace, &name).map_err(|e| vec![at(path, None, e)])?,
            name,
            kind: NodeKind::Sql,
            file: path.to_owned(),
            line: 1,
            inputs,
            options,
            body: Body::Sql {
                statement: Box::new(statement),
                references,
                text: text.to_owned(),
            },
        },
        names,
    })
}

/// The first line of `text` naming `word` (any case), for errors about it.
fn line_naming(text: &str, word: &str) -> Option<u32> {
    let word = word.to_lowercase();
    text.lines()
        .position(|l| !l.trim_start().starts_with("--") && l.to_lowercase().contains(&word))
        .and_then(|n| u32::try_from(n + 1).ok())
}

/// A model's output table: `name` in the run namespace, or `ns.name` as written.
pub(super) fn output_key(namespace: &ContentKey, name: &str) -> Result<ContentKey, String> {
    let key = if name.contains('.') {
        ContentKey::new(name.split('.'))
    } else {
        namespace.child(name)
    };
    key.map_err(|e| format!("model name {name:?} is not a valid table name: {e}"))
}

/// Resolves every input (a model first, then a table), refuses names defined twice and
/// cycles, and orders the nodes so each comes after the nodes it reads.
fn resolve(
    drafts: Vec<Draft>,
    namespace: &ContentKey,
    cx: &PlanContext<'_>,
    errors: &mut Vec<PlanError>,
) -> Vec<Node> {
    // Models by lowercased name (bare) and lowercased output key.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (n, d) in drafts.iter().enumerate() {
        for alias in [
            d.node.name.to_lowercase(),
            d.node.output.to_string().to_lowercase(),
        ] {
            if let Some(&first) = by_name.get(&alias) {
                if first != n {
                    let other = &drafts[first].node;
                    errors.push(at(
                        &d.node.file,
                        Some(d.node.line),
                        format!(
                            "model {} is defined twice: here and in {}:{}",
                            d.node.name, other.file, other.line
                        ),
                    ));
                }
                break;
            }
            by_name.insert(alias, n);
        }
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(drafts.len());
    for d in drafts {
        let mut node = d.node;
        for (name, line, read) in d.names {
            let lower = name.to_lowercase();
            let qualified_here = lower
                .strip_prefix(&format!("{}.", namespace.to_string().to_lowercase()))
                .map(str::to_owned);
            let model = by_name
                .get(&lower)
                .or_else(|| qualified_here.as_ref().and_then(|q| by_name.get(q)))
                .copied();
            let source = match model {
                Some(m) => Source::Model(m),
                None => {
                    let key = if name.contains('.') {
                        ContentKey::new(name.split('.'))
                    } else {
                        namespace.child(&name)
                    };
                    let found = key
                        .map_err(|e| e.to_string())
                        .and_then(|k| (cx.table)(&k).map(|t| (k, t)));
                    match found {
                        Ok((_, Some(table))) => Source::Table(table),
                        Ok((key, None)) => {
                            errors.push(at(
                                &node.file,
                                line,
                                format!(
                                    "{} reads {name}, which is neither a model of the project nor a table ({key} does not exist on the target)",
                                    node.name
                                ),
                            ));
                            continue;
                        }
                        Err(e) => {
                            errors.push(at(
                                &node.file,
                                line,
                                format!("{} reads {name}: {e}", node.name),
                            ));
                            continue;
                        }
                    }
                }
            };
            node.inputs.push(Input { name, source, read });
        }
        nodes.push(node);
    }
    order(nodes, errors)
}

/// The nodes in a topological order (ties by file and line); a cycle is an error naming
/// its nodes.
fn order(nodes: Vec<Node>, errors: &mut Vec<PlanError>) -> Vec<Node> {
    let n = nodes.len();
    let mut waiting: Vec<usize> = nodes.iter().map(|node| node.upstream().count()).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        for up in node.upstream() {
            readers[up].push(i);
        }
    }
    let rank = |i: usize| (nodes[i].file.clone(), nodes[i].line, i);
    let mut ready: BTreeSet<(String, u32, usize)> =
        (0..n).filter(|&i| waiting[i] == 0).map(rank).collect();
    let mut sequence = Vec::with_capacity(n);
    while let Some(first) = ready.pop_first() {
        let i = first.2;
        sequence.push(i);
        for &r in &readers[i] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.insert(rank(r));
            }
        }
    }
    if sequence.len() < n {
        let stuck: Vec<usize> = (0..n).filter(|i| waiting[*i] > 0).collect();
        let names: Vec<&str> = stuck.iter().map(|&i| nodes[i].name.as_str()).collect();
        let first = &nodes[stuck[0]];
        errors.push(at(
            &first.file,
            Some(first.line),
            format!(
                "the models form a cycle: {} read each other",
                names.join(", ")
            ),
        ));
        return nodes;
    }
    // Renumber the model inputs to the new order.
    let mut position = vec![0usize; n];
    for (new, &old) in sequence.iter().enumerate() {
        position[old] = new;
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    sequence
        .iter()
        .map(|&old| {
            let mut node = slots[old].take().expect("each node once");
            for input in &mut node.inputs {
                if let Source::Model(m) = &mut input.source {
                    *m = position[*m];
                }
            }
            node
        })
        .collect()
}
