//! Executing one node. A SQL model runs on DataFusion in the server: the tables it reads
//! at the fork commit (through the run's branch) and the outputs of upstream models (in
//! memory, as Arrow), its identifiers matched to their columns regardless of case
//! (`sql::match_columns`), read-only like every query. Python nodes arrive in issue 17.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::DataFrame;
use floe_catalog::Principal;
use floe_commits::{Hash, RefSpec};
use parking_lot::Mutex;

use super::plan::{Body, Node, Source};
use super::sql;
use crate::query::{QueryEngine, QueryError, register};
use crate::scan::ScanLog;

/// A node's output: its schema and its rows, in memory.
#[derive(Debug, Clone)]
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Arc<Vec<RecordBatch>>,
}

impl Output {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
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

/// Runs a node and returns its output.
pub async fn run(node: &Node, reads: &Reads, outputs: &Outputs) -> Result<Output, String> {
    match &node.body {
        Body::Sql {
            statement,
            references,
            ..
        } => run_sql(node, statement, references, reads, outputs).await,
        Body::Python { function } => Err(format!(
            "{} is a Python function ({function}); this floe plans Python models but does not execute them yet",
            node.name
        )),
    }
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
) -> Result<Output, String> {
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
        let provider: Arc<dyn TableProvider> = match &input.source {
            Source::Model(m) => {
                let output = outputs
                    .lock()
                    .get(m)
                    .cloned()
                    .ok_or_else(|| format!("the output of {} is not there", input.name))?;
                Arc::new(
                    MemTable::try_new(output.schema.clone(), vec![output.batches.to_vec()])
                        .map_err(|e| e.to_string())?,
                )
            }
            Source::Table(key) => reads
                .engine
                .table_provider(&reads.executor, &reads.branch, reads.fork, key, &log)
                .await
                .map_err(|e| e.to_string())?,
        };
        columns.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
        register(&ctx, reference.clone(), provider).map_err(|e| e.to_string())?;
    }
    let mut statement = statement.clone();
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
    let df = DataFrame::new(state, plan);
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| engine_error(e, reads))?;
    Ok(Output {
        schema,
        batches: Arc::new(batches),
    })
}
