//! Executing one node. A SQL model runs on DataFusion in the server: the tables it reads
//! at the fork commit (through the run's branch) and the outputs of upstream models (in
//! memory, as Arrow), its identifiers matched to their columns regardless of case
//! (`sql::match_columns`), read-only like every query. A Python node runs in a worker
//! process (`worker`): its inputs scanned into Arrow IPC files with the columns and the
//! filter it asks for (an upstream's own file when it asks for all of it), its output an
//! Arrow IPC file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{DataFrame, SessionContext};
use floe_catalog::Principal;
use floe_commits::{Hash, RefSpec};
use futures::StreamExt;
use parking_lot::Mutex;

use super::envs::Env;
use super::plan::{Body, Input, Node, NodeKind, PyFunction, Read, Source};
use super::{RunLog, sql, worker};
use crate::query::{QueryEngine, QueryError, register};
use crate::scan::ScanLog;

/// A node's output: its schema and rows, in memory (SQL) or in an Arrow IPC file of the
/// run's scratch folder (Python), read into memory only when something needs its rows.
#[derive(Debug, Clone)]
pub struct Output {
    pub schema: SchemaRef,
    pub rows: u64,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    Memory(Arc<Vec<RecordBatch>>),
    File {
        path: Arc<PathBuf>,
        read: Arc<OnceLock<Arc<Vec<RecordBatch>>>>,
    },
}

impl Output {
    pub fn memory(schema: SchemaRef, batches: Vec<RecordBatch>) -> Output {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        Output {
            schema,
            rows,
            data: Data::Memory(Arc::new(batches)),
        }
    }

    /// An Arrow IPC file a worker wrote (its schema read from the file).
    pub fn file(path: PathBuf, rows: u64) -> Result<Output, String> {
        let reader = open_ipc(&path)?;
        Ok(Output {
            schema: reader.schema(),
            rows,
            data: Data::File {
                path: Arc::new(path),
                read: Arc::new(OnceLock::new()),
            },
        })
    }

    /// The file holding the rows, if they are in one (a Python consumer maps it).
    pub fn path(&self) -> Option<&Path> {
        match &self.data {
            Data::File { path, .. } => Some(path),
            Data::Memory(_) => None,
        }
    }

    /// The rows in memory (a file is read once).
    pub fn batches(&self) -> Result<Arc<Vec<RecordBatch>>, String> {
        match &self.data {
            Data::Memory(b) => Ok(b.clone()),
            Data::File { path, read } => {
                if let Some(b) = read.get() {
                    return Ok(b.clone());
                }
                let batches = open_ipc(path)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("reading the output file: {e}"))?;
                Ok(read.get_or_init(|| Arc::new(batches)).clone())
            }
        }
    }

    /// Removes its file, if it has one (its last reader is done with it).
    pub fn discard(&self) {
        if let Data::File { path, .. } = &self.data {
            let _ = std::fs::remove_file(&**path);
        }
    }

    /// Writes it to `to` as an Arrow IPC file (a file is copied).
    pub fn write_ipc(&self, to: &Path) -> Result<(), String> {
        match &self.data {
            Data::File { path, .. } => std::fs::copy(&**path, to)
                .map(drop)
                .map_err(|e| format!("copying the output file: {e}")),
            Data::Memory(batches) => {
                let file = std::fs::File::create(to).map_err(|e| format!("the file: {e}"))?;
                let mut writer = FileWriter::try_new(std::io::BufWriter::new(file), &self.schema)
                    .map_err(|e| e.to_string())?;
                for batch in batches.iter() {
                    writer.write(batch).map_err(|e| format!("writing: {e}"))?;
                }
                writer.finish().map_err(|e| format!("writing: {e}"))
            }
        }
    }

    /// The bytes it holds (in memory, or in its file).
    pub fn held_bytes(&self) -> usize {
        match &self.data {
            Data::Memory(b) => b.iter().map(RecordBatch::get_array_memory_size).sum(),
            Data::File { path, .. } => std::fs::metadata(&**path)
                .map(|m| m.len() as usize)
                .unwrap_or(0),
        }
    }
}

/// A worker's output file, opened to read (its schema, then its batches).
fn open_ipc(path: &Path) -> Result<FileReader<std::io::BufReader<std::fs::File>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("the output file: {e}"))?;
    FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| format!("the output file is not Arrow IPC: {e}"))
}

/// What a node did: its output, and an expectation's answer.
#[derive(Debug, Clone)]
pub struct Done {
    pub output: Output,
    pub passed: Option<bool>,
    /// Its output follows from its inputs alone (no `now()`, `random()`, `uuid()`): a
    /// later run may reuse it (the results cache).
    pub reusable: bool,
}

/// The outputs of the nodes that finished, by node.
pub type Outputs = Arc<Mutex<HashMap<usize, Output>>>;

/// Where a node reads: the query engine, the run's executor, its branch and fork.
#[derive(Debug, Clone)]
pub struct Reads {
    pub engine: QueryEngine,
    pub executor: Principal,
    pub branch: RefSpec,
    pub fork: Hash,
    pub namespace: String,
}

/// What a run's Python nodes need: their environments, folders and parameter values.
#[derive(Debug)]
pub struct PyRuntime {
    /// Per node index, its environment.
    pub envs: HashMap<usize, Env>,
    pub scratch: PathBuf,
    /// The project's files, as uploaded.
    pub code: PathBuf,
    /// Each parameter's value (secrets too: a worker gets them on stdin).
    pub params: BTreeMap<String, serde_json::Value>,
    /// A worker's timeout without `@resources(timeout=)`.
    pub timeout: Duration,
    pub strict: bool,
    /// How workers are confined, where the server can.
    pub sandbox: Option<super::Sandbox>,
}

/// Runs node `n` and returns what it did.
pub async fn run(
    n: usize,
    node: &Node,
    reads: &Reads,
    outputs: &Outputs,
    py: Option<&PyRuntime>,
    log: &Arc<RunLog>,
) -> Result<Done, String> {
    match &node.body {
        Body::Sql {
            statement,
            references,
            ..
        } => {
            let (output, reusable) = run_sql(node, statement, references, reads, outputs).await?;
            Ok(Done {
                output,
                passed: None,
                reusable,
            })
        }
        Body::Python(f) => {
            let py = py.ok_or("the run has no Python runtime")?;
            run_python(n, node, f, reads, outputs, py, log).await
        }
    }
}

/// The provider of an input: an upstream output (in memory) or a table at the fork.
async fn provider(
    source: &Source,
    name: &str,
    reads: &Reads,
    outputs: &Outputs,
    log: &ScanLog,
) -> Result<Arc<dyn TableProvider>, String> {
    Ok(match source {
        Source::Model(m) => {
            let output = outputs
                .lock()
                .get(m)
                .cloned()
                .ok_or_else(|| format!("the output of {name} is not there"))?;
            let batches = output.batches()?;
            Arc::new(
                MemTable::try_new(output.schema.clone(), vec![batches.to_vec()])
                    .map_err(|e| e.to_string())?,
            )
        }
        Source::Table(key) => reads
            .engine
            .table_provider(&reads.executor, &reads.branch, reads.fork, key, log)
            .await
            .map_err(|e| e.to_string())?,
    })
}

/// Plans a statement (its identifiers matched to `columns`), refusing anything but reads.
async fn read_only(
    ctx: &SessionContext,
    mut statement: datafusion::sql::parser::Statement,
    columns: &[String],
    reads: &Reads,
) -> Result<DataFrame, String> {
    sql::match_columns(&mut statement, columns.iter().map(String::as_str));
    let state = ctx.state();
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| engine_error(e, reads))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| format!("a SQL model only reads: {}", e.strip_backtrace()))?;
    Ok(DataFrame::new(state, plan))
}

fn engine_error(e: datafusion::error::DataFusionError, reads: &Reads) -> String {
    QueryError::from_engine(e, &reads.engine.limits()).to_string()
}

async fn run_sql(
    node: &Node,
    statement: &datafusion::sql::parser::Statement,
    references: &[datafusion::common::TableReference],
    reads: &Reads,
    outputs: &Outputs,
) -> Result<(Output, bool), String> {
    let ctx = reads
        .engine
        .session_with(&reads.namespace, false)
        .map_err(|e| e.to_string())?;
    let log = ScanLog::default();
    let mut columns: Vec<String> = Vec::new();
    for (reference, input) in references.iter().zip(&node.inputs) {
        if ctx.table_exist(reference.clone()).unwrap_or(false) {
            continue;
        }
        let provider = provider(&input.source, &input.name, reads, outputs, &log).await?;
        columns.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
        register(&ctx, reference.clone(), provider).map_err(|e| e.to_string())?;
    }
    let df = read_only(&ctx, statement.clone(), &columns, reads).await?;
    let reusable = deterministic(df.logical_plan());
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| engine_error(e, reads))?;
    Ok((Output::memory(schema, batches), reusable))
}

/// Whether a plan's answer follows from its inputs alone: no function of it is volatile
/// (`random()`, `uuid()`) or stable (`now()`, the same within a query but not across runs).
fn deterministic(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut pure = true;
    let mut visit = |e: &Expr| {
        if let Expr::ScalarFunction(f) = e
            && f.func.signature().volatility != Volatility::Immutable
        {
            pure = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    };
    let walked = plan.apply_with_subqueries(|node| node.apply_expressions(|e| e.apply(&mut visit)));
    walked.is_ok() && pure
}

/// A Python input as a file: the upstream's own file when the function reads all of it
/// (no copy), else the columns and rows it asks for, scanned into an Arrow IPC file.
async fn input_file(
    input: &Input,
    read: &Read,
    to: PathBuf,
    reads: &Reads,
    outputs: &Outputs,
) -> Result<PathBuf, String> {
    if let Source::Model(m) = &input.source
        && read.columns.is_none()
        && read.filter.is_none()
        && let Some(path) = outputs
            .lock()
            .get(m)
            .and_then(|o| o.path().map(Path::to_path_buf))
    {
        return Ok(path);
    }
    let ctx = reads
        .engine
        .session_with(&reads.namespace, false)
        .map_err(|e| e.to_string())?;
    let log = ScanLog::default();
    let provider = provider(&input.source, &input.name, reads, outputs, &log).await?;
    let columns: Vec<String> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    register(&ctx, TableReference::bare(INPUT), provider).map_err(|e| e.to_string())?;
    let projection = match &read.columns {
        Some(c) if !c.is_empty() => c
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "*".to_owned(),
    };
    let text = match &read.filter {
        // On a line of its own: a filter ending in a `--` comment still closes.
        Some(f) => format!("SELECT {projection} FROM {INPUT} WHERE ({f}\n)"),
        None => format!("SELECT {projection} FROM {INPUT}"),
    };
    let statement = sql::parse(&input.name, &text).map_err(|e| {
        format!(
            "the columns or filter asked of {} do not parse: {}",
            input.name, e.message
        )
    })?;
    let df = read_only(&ctx, statement, &columns, reads)
        .await
        .map_err(|e| format!("reading {}: {e}", input.name))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df
        .execute_stream()
        .await
        .map_err(|e| engine_error(e, reads))?;
    let file = std::fs::File::create(&to).map_err(|e| format!("the input file: {e}"))?;
    let mut writer =
        FileWriter::try_new(std::io::BufWriter::new(file), &schema).map_err(|e| e.to_string())?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| engine_error(e, reads))?;
        writer
            .write(&batch)
            .map_err(|e| format!("writing the input file: {e}"))?;
    }
    writer
        .finish()
        .map_err(|e| format!("writing the input file: {e}"))?;
    Ok(to)
}

/// Files removed when dropped.
struct Scanned(Vec<PathBuf>);

impl Drop for Scanned {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The table name a Python input's scan reads from.
const INPUT: &str = "floe_input";

async fn run_python(
    n: usize,
    node: &Node,
    f: &PyFunction,
    reads: &Reads,
    outputs: &Outputs,
    py: &PyRuntime,
    log: &Arc<RunLog>,
) -> Result<Done, String> {
    let env = py
        .envs
        .get(&n)
        .ok_or_else(|| format!("{} has no environment", node.name))?;
    let io = py.scratch.join("io");
    std::fs::create_dir_all(&io).map_err(|e| format!("the run's scratch folder: {e}"))?;
    let mut inputs = serde_json::Map::new();
    // The files scanned for this node alone go when its worker ends.
    let mut scanned = Scanned(Vec::new());
    let limits = reads.engine.limits();
    for (i, input) in node.inputs.iter().enumerate() {
        let Some(read) = &input.read else { continue };
        let to = io.join(format!("{n}-{i}.arrow"));
        let path = tokio::time::timeout(
            limits.timeout,
            input_file(input, read, to.clone(), reads, outputs),
        )
        .await
        .map_err(|_| {
            format!(
                "reading {} took longer than a query may ({:?}, floe serve --query-timeout)",
                input.name, limits.timeout
            )
        })??;
        // Everything a worker reads is in the inputs' folder (a confined worker sees only
        // that one): an output kept elsewhere (the results cache's) is linked in.
        let path = if path.starts_with(&io) {
            path
        } else {
            std::fs::hard_link(&path, &to)
                .or_else(|_| std::fs::copy(&path, &to).map(drop))
                .map_err(|e| format!("handing {} to the worker: {e}", input.name))?;
            to.clone()
        };
        if path == to {
            scanned.0.push(to);
        }
        inputs.insert(read.arg.clone(), path.to_string_lossy().into_owned().into());
    }
    let mut parameters = serde_json::Map::new();
    for (arg, name) in &f.parameters {
        let value = py
            .params
            .get(name)
            .cloned()
            .ok_or_else(|| format!("parameter {name} has no value"))?;
        parameters.insert(arg.clone(), value);
    }
    let expectation = node.kind == NodeKind::Expectation;
    let folder = worker::folder(&py.scratch, n);
    let output = io.join(format!("{n}.arrow"));
    let spec = serde_json::json!({
        "project": py.code,
        "file": node.file,
        "function": f.function,
        "name": node.name,
        "kind": if expectation { "expectation" } else { "model" },
        "inputs": inputs,
        "parameters": parameters,
        "output": if expectation { serde_json::Value::Null } else { worker::output(&folder).to_string_lossy().into() },
    });
    let launch = worker::Launch {
        python: &env.python,
        folder: &folder,
        code: &py.code,
        io: &io,
        sandbox: py.sandbox.as_ref(),
        spec,
        timeout: f.timeout.unwrap_or(py.timeout),
        isolated: !f.internet,
        memory: f.memory,
    };
    let lines = |stream: &str, line: &str| log.line(&node.name, stream, line);
    let answer = worker::run(launch, &lines).await?;
    if !answer.ok {
        if let Some(tb) = answer.traceback.as_deref().filter(|t| !t.is_empty()) {
            for line in tb.lines() {
                log.line(&node.name, "traceback", line);
            }
        }
        return Err(answer
            .error
            .unwrap_or_else(|| "the function failed".to_owned()));
    }
    if expectation {
        let passed = answer.passed.unwrap_or(false);
        if !passed && py.strict {
            return Err(format!(
                "expectation {} failed: {} returned False (--strict)",
                node.name, f.function
            ));
        }
        let empty: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        return Ok(Done {
            output: Output::memory(empty, Vec::new()),
            passed: Some(passed),
            reusable: true,
        });
    }
    worker::take_output(&folder, &output)?;
    Ok(Done {
        output: Output::file(output, answer.rows.unwrap_or(0))?,
        passed: None,
        reusable: true,
    })
}
