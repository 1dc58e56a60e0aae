//! SQL at a ref spec (DESIGN §5 "Reads"): `POST /api/v1/query` and `floe query`.
//!
//! A query resolves its ref spec once, so every table is read at the same commit. It
//! parses the statement with DataFusion, refuses anything but a query (DDL, DML, `SET`,
//! `COPY`), and registers only the tables the statement names: `ns.table`, `a.b.table`
//! for a nested namespace, or a bare name in the default namespace. The result is a
//! stream of Arrow batches, bounded by a memory pool and a deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionConfig};
use datafusion::sql::parser::Statement as DfStatement;
use floe_catalog::deferred::Scope;
use floe_catalog::{Catalog, CatalogError, Principal};
use floe_commits::{ContentKey, Hash, RefSpec};
use futures::StreamExt;
use iceberg::TableIdent;
use iceberg::table::Table;

use crate::limits::{
    QUERY_BATCHES_AHEAD, QUERY_MEMORY_DEFAULT_BYTES, QUERY_TABLE_CACHE_BYTES, QUERY_TABLE_KEPT_MS,
    QUERY_TABLES_KEPT_MAX, QUERY_TIMEOUT_DEFAULT_MS,
};
use crate::scan::{IcebergRead, ScanLog, ScanStats};

/// The namespace bare table names resolve in when the request names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Limits every query runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall time from the request to the last batch.
    pub timeout: Duration,
    /// The memory pool of one query (sorts, joins, aggregates).
    pub memory_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_millis(QUERY_TIMEOUT_DEFAULT_MS),
            memory_bytes: QUERY_MEMORY_DEFAULT_BYTES,
        }
    }
}

/// One query.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub sql: String,
    pub spec: RefSpec,
    /// Where bare table names resolve (default `default`).
    pub namespace: Option<ContentKey>,
    /// Stop after this many rows.
    pub max_rows: Option<usize>,
    /// A shorter timeout than the server's.
    pub timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement is not a query floe runs; the message is the engine's or says why.
    #[error("{0}")]
    Invalid(String),
    /// A table the statement names is not at the ref.
    #[error("{0}")]
    TableNotFound(String),
    #[error(
        "the query ran longer than its limit of {0:?}; narrow it (filters, LIMIT) or ask for a longer timeout"
    )]
    Timeout(Duration),
    #[error(
        "the query needs more memory than its limit of {limit} bytes: {detail}; narrow it or raise the server's --query-memory"
    )]
    Memory { limit: usize, detail: String },
    /// A table the statement reads cannot be read as its metadata says: it names files
    /// outside its own location, or files that are not what they claim.
    #[error("{0}")]
    TableUnreadable(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Anything else the engine reports (a server-side fault).
    #[error("query execution failed: {0}")]
    Engine(String),
}

impl QueryError {
    pub(crate) fn from_engine(e: DataFusionError, limits: &QueryLimits) -> QueryError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(detail) => QueryError::Memory {
                limit: limits.memory_bytes,
                detail: detail.clone(),
            },
            // What the statement asked for cannot be planned or computed (a syntax error, a
            // division by zero, a failed cast): the query's fault, not the server's.
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..) => QueryError::Invalid(e.strip_backtrace()),
            DataFusionError::External(inner) => {
                if let Some(e) = inner.downcast_ref::<QueryError>() {
                    return match e {
                        QueryError::Timeout(d) => QueryError::Timeout(*d),
                        other => QueryError::Engine(other.to_string()),
                    };
                }
                // The iceberg crate wraps what the storage refused ("failed to load
                // manifest list", source: the refusal): look along the chain.
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
                while let Some(c) = cause {
                    // (Its object cache shares errors: they arrive as `Arc<iceberg::Error>`.)
                    let found = c
                        .downcast_ref::<iceberg::Error>()
                        .or_else(|| c.downcast_ref::<Arc<iceberg::Error>>().map(|e| e.as_ref()));
                    if let Some(e) = found
                        && e.kind() == iceberg::ErrorKind::DataInvalid
                    {
                        return QueryError::TableUnreadable(format!(
                            "a table cannot be read: {}",
                            e.message()
                        ));
                    }
                    cause = c.source();
                }
                QueryError::Engine(e.strip_backtrace())
            }
            _ => QueryError::Engine(e.strip_backtrace()),
        }
    }
}

/// A query ready to stream: its schema, its batches, and what its scans read.
pub struct QueryAnswer {
    pub at: Hash,
    pub schema: SchemaRef,
    pub batches: SendableRecordBatchStream,
    pub scans: Vec<ScanStats>,
}

impl std::fmt::Debug for QueryAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryAnswer")
            .field("at", &self.at)
            .field("scans", &self.scans)
            .finish_non_exhaustive()
    }
}

/// Runs queries over one catalog.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    catalog: Catalog,
    limits: QueryLimits,
    tables: Arc<KeptTables>,
}

/// Tables built for earlier queries, by (metadata location, name): each holds the
/// manifests its scans parsed, so the next query at the same commit does not read and
/// parse them again. Who may read a table is still decided per query (the catalog's
/// load); only what the immutable metadata file names is kept.
#[derive(Debug, Default)]
struct KeptTables {
    tables: parking_lot::Mutex<HashMap<(String, String), (Instant, Table)>>,
}

impl KeptTables {
    fn get(&self, location: &str, name: &str) -> Option<Table> {
        let keep = Duration::from_millis(QUERY_TABLE_KEPT_MS);
        let mut tables = self.tables.lock();
        let key = (location.to_owned(), name.to_owned());
        match tables.get(&key) {
            Some((built, table)) if built.elapsed() < keep => Some(table.clone()),
            Some(_) => {
                tables.remove(&key);
                None
            }
            None => None,
        }
    }

    fn put(&self, location: &str, name: &str, table: Table) {
        let keep = Duration::from_millis(QUERY_TABLE_KEPT_MS);
        let mut tables = self.tables.lock();
        tables.retain(|_, (built, _)| built.elapsed() < keep);
        if tables.len() >= QUERY_TABLES_KEPT_MAX {
            let oldest = tables
                .iter()
                .min_by_key(|(_, (built, _))| *built)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                tables.remove(&k);
            }
        }
        tables.insert(
            (location.to_owned(), name.to_owned()),
            (Instant::now(), table),
        );
    }
}

/// The cores queries spread over, read once (it reads cgroup files each time).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from))
}

impl QueryEngine {
    pub fn new(catalog: Catalog, limits: QueryLimits) -> QueryEngine {
        QueryEngine {
            catalog,
            limits,
            tables: Arc::default(),
        }
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    pub(crate) fn session(&self, default_schema: &str) -> Result<SessionContext, QueryError> {
        self.session_with(default_schema, true)
    }

    /// A session whose unquoted identifiers are lowered (`normalize`, DataFusion's
    /// default, what queries use) or kept as written (SQL models, as DuckDB keeps them).
    pub(crate) fn session_with(
        &self,
        default_schema: &str,
        normalize: bool,
    ) -> Result<SessionContext, QueryError> {
        // No spilling: a query's memory is its limit, and the server's disk is not a
        // query's scratch space.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                datafusion::execution::disk_manager::DiskManagerBuilder::default()
                    .with_mode(datafusion::execution::disk_manager::DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Engine(e.strip_backtrace()))?;
        let config = SessionConfig::new()
            .with_target_partitions(cores())
            .with_information_schema(false)
            .with_default_catalog_and_schema("floe", default_schema);
        let mut config = config;
        config.options_mut().sql_parser.enable_ident_normalization = normalize;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rules(crate::scan::optimizer_rules())
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Plans a query and starts it: errors in the statement, its tables or its plan come
    /// back here; errors while it streams come in the stream.
    pub async fn run(
        &self,
        principal: &Principal,
        request: QueryRequest,
    ) -> Result<QueryAnswer, QueryError> {
        let timeout = request
            .timeout
            .map_or(self.limits.timeout, |t| t.min(self.limits.timeout));
        let deadline = tokio::time::Instant::now() + timeout;
        let planned = tokio::time::timeout_at(deadline, self.plan(principal, &request)).await;
        let (at, df, log) = planned.map_err(|_| QueryError::Timeout(timeout))??;
        let df = match request.max_rows {
            Some(n) => df
                .limit(0, Some(n))
                .map_err(|e| QueryError::from_engine(e, &self.limits))?,
            None => df,
        };
        let started = tokio::time::timeout_at(deadline, df.execute_stream()).await;
        let batches = started
            .map_err(|_| QueryError::Timeout(timeout))?
            .map_err(|e| QueryError::from_engine(e, &self.limits))?;
        let schema = batches.schema();
        let scans = std::mem::take(&mut *log.lock());
        Ok(QueryAnswer {
            at,
            schema,
            batches: under_deadline(batches, deadline, timeout),
            scans,
        })
    }

    async fn plan(
        &self,
        principal: &Principal,
        request: &QueryRequest,
    ) -> Result<(Hash, DataFrame, ScanLog), QueryError> {
        let default = match &request.namespace {
            Some(ns) => ns.clone(),
            None => ContentKey::new([DEFAULT_NAMESPACE]).expect("a valid namespace"),
        };
        // Bare names live in the default schema, named as the namespace: `t` and `db.t`
        // are then one DataFusion table when the namespace is `db`.
        let ctx = self.session(&default.to_string())?;
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state
            .sql_to_statement(&request.sql, &dialect)
            .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        if !is_query(&statement) {
            return Err(QueryError::Invalid(format!(
                "{}: floe runs queries only (SELECT, WITH, VALUES, EXPLAIN); write through a branch with an Iceberg client or an import",
                first_words(&request.sql)
            )));
        }
        let references = state
            .resolve_table_references(&statement)
            .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        let catalog = self.catalog.clone();
        let who = principal.clone();
        let spec = request.spec.clone();
        let at = reading(move || catalog.resolve(&who, &spec)).await??.hash;
        let log = ScanLog::default();
        let functions = state.table_functions().clone();
        for reference in references {
            // `range(10)` and the like are table functions, not tables.
            if let TableReference::Bare { table } = &reference
                && functions.contains_key(table.as_ref())
            {
                continue;
            }
            // `t` and `default.t` name one DataFusion table: register it once.
            if ctx.table_exist(reference.clone()).unwrap_or(false) {
                continue;
            }
            let key = table_key(&reference, &default)?;
            let provider = self
                .table_provider(principal, &request.spec, at, &key, &log)
                .await
                .map_err(|e| match e {
                    QueryError::TableNotFound(_) => QueryError::TableNotFound(format!(
                        "table {key} does not exist at {} ({}); a bare name means a table in namespace {default}",
                        request.spec,
                        &at.to_hex()[..12]
                    )),
                    other => other,
                })?;
            register(&ctx, reference, provider)?;
        }
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| QueryError::from_engine(e, &self.limits))?;
        want_bounds_under_aggregates(&plan);
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                QueryError::Invalid(format!(
                    "{}; floe runs queries only (SELECT, WITH, VALUES, EXPLAIN): write through a branch with an Iceberg client or an import",
                    e.strip_backtrace()
                ))
            })?;
        Ok((at, DataFrame::new(ctx.state(), plan), log))
    }

    /// Table `key` at commit `at` (reached through `spec`) as a DataFusion table, every
    /// read inside the table's own location; its scans are logged in `log`.
    pub(crate) async fn table_provider(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        at: Hash,
        key: &ContentKey,
        log: &ScanLog,
    ) -> Result<Arc<IcebergRead>, QueryError> {
        let catalog = self.catalog.clone();
        let who = principal.clone();
        let spec = spec.clone();
        let lookup = key.clone();
        let loaded = reading(move || catalog.load_table_at(&who, &spec, at, &lookup)).await?;
        let loaded = match loaded {
            Err(CatalogError::TableNotFound(_)) => {
                return Err(QueryError::TableNotFound(format!(
                    "table {key} does not exist"
                )));
            }
            other => other?,
        };
        let name = key.to_string();
        if let Some(location) = &loaded.metadata_location
            && let Some(table) = self.tables.get(location, &name)
        {
            let provider = IcebergRead::new(name, table, log.clone())
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            return Ok(Arc::new(provider));
        }
        let ident = TableIdent::new(
            iceberg::NamespaceIdent::from_strs(key.parent().iter().flat_map(|p| p.elements()))
                .map_err(|e| QueryError::Engine(e.to_string()))?,
            key.elements().last().unwrap_or_default().to_owned(),
        );
        // Every read for the table (planning, manifests, data) stays inside its
        // location: a snapshot naming another table's files cannot read them.
        let file_io = self.catalog.table_file_io(&loaded.metadata)?;
        let mut table = Table::builder()
            .metadata(loaded.metadata.clone())
            .identifier(ident)
            .file_io(file_io)
            .runtime(iceberg::Runtime::current())
            .cache_size_bytes(QUERY_TABLE_CACHE_BYTES)
            .readonly(true);
        if let Some(location) = &loaded.metadata_location {
            table = table.metadata_location(location.clone());
        }
        let table = table
            .build()
            .map_err(|e| QueryError::Engine(e.to_string()))?;
        if let Some(location) = &loaded.metadata_location {
            self.tables.put(location, &name, table.clone());
        }
        let provider = IcebergRead::new(name, table, log.clone())
            .map_err(|e| QueryError::Engine(e.to_string()))?;
        Ok(Arc::new(provider))
    }
}

/// Asks each Iceberg scan under an aggregate without groups (through projections,
/// filters and aliases) for its column bounds, which only such an aggregate can fold:
/// other scans do not read their manifests twice.
fn want_bounds_under_aggregates(plan: &LogicalPlan) {
    let _ = plan.apply(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node
            && aggregate.group_expr.is_empty()
            && !aggregate.aggr_expr.iter().all(counts_rows)
        {
            let mut input = aggregate.input.as_ref();
            loop {
                input = match input {
                    LogicalPlan::Projection(p) => p.input.as_ref(),
                    LogicalPlan::Filter(f) => f.input.as_ref(),
                    LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
                    LogicalPlan::TableScan(scan) => {
                        if let Ok(provider) = source_as_provider(&scan.source)
                            && let Some(read) = provider.as_any().downcast_ref::<IcebergRead>()
                        {
                            read.want_bounds();
                        }
                        break;
                    }
                    _ => break,
                };
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// `count(*)` and `count(1)`: the row count answers them, without bounds.
fn counts_rows(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => counts_rows(&a.expr),
        Expr::AggregateFunction(f) => {
            f.func.name() == "count" && f.params.args.iter().all(|a| matches!(a, Expr::Literal(..)))
        }
        _ => false,
    }
}

/// True for statements that only read: a query, or EXPLAIN of one.
fn is_query(statement: &DfStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Sql::Query(_) => true,
            Sql::Explain { statement, .. } => matches!(statement.as_ref(), Sql::Query(_)),
            _ => false,
        },
        DfStatement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// The start of a statement, for messages.
fn first_words(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(3).collect();
    words.join(" ")
}

/// The catalog key a table reference names: `t` in the default namespace, `ns.t`,
/// `a.b.t` (a two-level namespace).
fn table_key(reference: &TableReference, default: &ContentKey) -> Result<ContentKey, QueryError> {
    let key = match reference {
        TableReference::Bare { table } => default.child(table),
        TableReference::Partial { schema, table } => ContentKey::new([&**schema, &**table]),
        TableReference::Full {
            catalog,
            schema,
            table,
        } => ContentKey::new([&**catalog, &**schema, &**table]),
    };
    key.map_err(|e| QueryError::Invalid(format!("table name {reference}: {e}")))
}

/// Registers a provider under exactly the reference the statement used.
pub(crate) fn register(
    ctx: &SessionContext,
    reference: TableReference,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<(), QueryError> {
    let engine = |e: DataFusionError| QueryError::Engine(e.strip_backtrace());
    let (catalog_name, schema_name) = match &reference {
        TableReference::Bare { .. } => {
            return ctx
                .register_table(reference, provider)
                .map(|_| ())
                .map_err(engine);
        }
        TableReference::Partial { schema, .. } => ("floe".to_owned(), schema.to_string()),
        TableReference::Full {
            catalog, schema, ..
        } => (catalog.to_string(), schema.to_string()),
    };
    let catalog = match ctx.catalog(&catalog_name) {
        Some(c) => c,
        None => {
            let c = Arc::new(MemoryCatalogProvider::new());
            ctx.register_catalog(&catalog_name, c.clone());
            c
        }
    };
    if catalog.schema(&schema_name).is_none() {
        catalog
            .register_schema(&schema_name, Arc::new(MemorySchemaProvider::new()))
            .map_err(engine)?;
    }
    ctx.register_table(reference, provider)
        .map(|_| ())
        .map_err(engine)
}

/// Runs a query's stream in a task of its own, a couple of batches ahead of its reader,
/// until the deadline. Past it the stream (and the memory it holds) is dropped and the
/// reader gets `QueryError::Timeout`, even a reader that stopped reading for a while: the
/// answer never ends as if it were whole.
fn under_deadline(
    mut batches: SendableRecordBatchStream,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> SendableRecordBatchStream {
    let schema = batches.schema();
    let late = move || DataFusionError::External(Box::new(QueryError::Timeout(timeout)));
    let (tx, rx) = tokio::sync::mpsc::channel(QUERY_BATCHES_AHEAD);
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    tokio::spawn(async move {
        let run = tokio::time::timeout_at(deadline, async {
            while let Some(item) = batches.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        })
        .await;
        if run.is_err() {
            drop(batches);
            flag.store(true, Ordering::SeqCst);
            let _ = tx.try_send(Err(late()));
        }
    });
    let received = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    // A timeout the full channel could not take is said once the channel is drained.
    let ending =
        futures::stream::once(async move { expired.load(Ordering::SeqCst).then(|| Err(late())) })
            .filter_map(futures::future::ready);
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        received.chain(ending),
    ))
}

/// The error a streaming query ended with, in floe's terms.
pub fn stream_error(e: DataFusionError, limits: &QueryLimits) -> QueryError {
    QueryError::from_engine(e, limits)
}

/// A read of the catalog off the async workers, its durability waits (meta it saw
/// pending) awaited here (`floe_catalog::off_thread`).
async fn reading<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, QueryError> {
    crate::off_store(Scope::Read, move || Ok(f()), QueryError::Engine).await
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_pauses_past_the_deadline_gets_a_timeout_not_a_short_answer() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))])
            .unwrap();
        // An endless query.
        let endless = futures::stream::repeat_with(move || Ok(batch.clone()));
        let stream: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(schema, endless));
        let timeout = Duration::from_millis(50);
        let mut answer = under_deadline(stream, tokio::time::Instant::now() + timeout, timeout);
        assert!(answer.next().await.unwrap().is_ok());
        // The reader stops reading for longer than the query may run.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut last = None;
        while let Some(item) = answer.next().await {
            last = Some(item);
        }
        let err = last.expect("the stream says why it ended").unwrap_err();
        assert!(
            matches!(
                QueryError::from_engine(err, &QueryLimits::default()),
                QueryError::Timeout(_)
            ),
            "the answer ends with a timeout"
        );
    }
}
