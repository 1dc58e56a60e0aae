//! Reading one Iceberg table at one commit as a DataFusion table (DESIGN §5 "Reads").
//!
//! `IcebergRead` is the table provider: it plans the files of the scan with the `iceberg`
//! crate (projection and filters pushed in, so manifests and data files whose statistics
//! rule them out are never opened), records what the plan reads in `ScanStats`, cuts large
//! Parquet files into byte ranges and spreads the pieces over DataFusion's partitions so
//! one file uses every core. Each partition reads its pieces with the crate's
//! `ArrowReader` (field ids, name mapping, schema evolution and delete files handled
//! there; a range reads the row groups whose midpoints it holds).
//!
//! The scan reports what the metadata decides exactly (`metadata`): filters on identity
//! partition columns, the row count, and where asked, column bounds; `answer` folds
//! `count`, `min` and `max` over such a scan into constants named in the plan.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DataFusionError;
use datafusion::common::stats::{Precision, Statistics};
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFileFormat, PrimitiveType};
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;
use parking_lot::Mutex;
use serde::Serialize;

use crate::limits::{SCAN_FILES_IN_FLIGHT_MAX, SCAN_SPLIT_BYTES_MIN};

mod answer;
mod metadata;

pub(crate) use answer::optimizer_rules;

/// What the scans of one query read: the evidence that filters were pushed down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// The table as the statement named it.
    pub table: String,
    /// Data files the plan reads, after partition and statistics pruning.
    pub files_scanned: u64,
    /// Data files of the snapshot (from its summary).
    pub files_total: u64,
    /// Bytes of the data files the plan reads.
    pub bytes_scanned: u64,
    /// The query's aggregates were answered from the manifests: no data file was read.
    pub from_manifests: bool,
}

/// The shared list the scans of one query report to.
pub type ScanLog = Arc<Mutex<Vec<ScanStats>>>;

fn df_error(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One table at one commit (its current snapshot there).
pub struct IcebergRead {
    name: String,
    table: Table,
    schema: SchemaRef,
    log: ScanLog,
    /// Filters on these columns are decided by partition values (see `metadata`).
    identity: HashMap<String, PrimitiveType>,
    /// An aggregate over this table may fold its bounds: read them from the manifests.
    bounds_wanted: AtomicBool,
}

impl fmt::Debug for IcebergRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcebergRead")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl IcebergRead {
    pub fn new(name: String, table: Table, log: ScanLog) -> Result<IcebergRead, iceberg::Error> {
        let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(
            table.metadata().current_schema(),
        )?);
        let identity = metadata::identity_columns(table.metadata());
        Ok(IcebergRead {
            name,
            table,
            schema,
            log,
            identity,
            bounds_wanted: AtomicBool::new(false),
        })
    }

    /// Asks the scan for column bounds from the manifests, for an aggregate to fold.
    pub(crate) fn want_bounds(&self) {
        self.bounds_wanted.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl TableProvider for IcebergRead {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The scan prunes files and row groups with what it can translate; DataFusion
        // still applies every filter to the rows, except those the partition values
        // decide (the scan's files then hold only matching rows).
        Ok(filters
            .iter()
            .map(|f| {
                if metadata::partition_predicate(f, &self.identity).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let files_total = self
            .table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-data-files"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut tasks = Vec::new();
        if self.table.metadata().current_snapshot().is_some() {
            let builder = || {
                let b = self.table.scan();
                match projection {
                    Some(p) => b.select(p.iter().map(|i| self.schema.field(*i).name().clone())),
                    None => b.select_all(),
                }
            };
            // Filters the partition values decide are translated whole (`metadata`); of
            // the others, only those without casts prune: the translation drops a cast and
            // compares the column's own values, which is wrong when the cast changes the
            // order (numbers as text) and fails when the literal has another type.
            let mut decided = Vec::new();
            let mut plain = Vec::new();
            for f in filters {
                match metadata::partition_predicate(f, &self.identity) {
                    Some(p) => decided.push(p),
                    None if !has_cast(f) => plain.push(f.clone()),
                    None => {}
                }
            }
            let decided = decided.into_iter().reduce(Predicate::and);
            let whole = match (decided.clone(), convert_filters_to_predicate(&plain)) {
                (Some(d), Some(p)) => Some(d.and(p)),
                (d, p) => d.or(p),
            };
            let scan = match whole.map(|p| builder().with_filter(p).build()) {
                None => builder().build().map_err(df_error)?,
                Some(Ok(scan)) => scan,
                // A predicate the crate cannot bind only loses the pruning, except the
                // decided filters': they are the scan's to apply, never dropped.
                Some(Err(_)) => match decided {
                    None => builder().build().map_err(df_error)?,
                    Some(d) => builder()
                        .with_filter(d)
                        .build()
                        .map_err(|_| unapplied(filters))?,
                },
            };
            tasks = scan
                .plan_files()
                .await
                .map_err(df_error)?
                .try_collect::<Vec<_>>()
                .await
                .map_err(df_error)?;
        }
        let mut files: Vec<&str> = tasks.iter().map(|t| t.data_file_path.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        let file_count = files.len();
        let mut statistics = Statistics::new_unknown(&output);
        let bytes = tasks
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.length));
        statistics.num_rows = match limit {
            Some(_) => Precision::Absent,
            // A path listed twice is read twice: its rows are not the manifests' count.
            None if tasks.len() != file_count => metadata::row_count(&tasks).to_inexact(),
            None => metadata::row_count(&tasks),
        };
        statistics.total_byte_size =
            Precision::Inexact(usize::try_from(bytes).unwrap_or(usize::MAX));
        if statistics.num_rows.is_exact() == Some(true)
            && self.bounds_wanted.load(Ordering::Relaxed)
            && !output.fields().is_empty()
        {
            let entries = metadata::planned_entries(&self.table, &tasks)
                .await
                .map_err(df_error)?;
            if entries.len() == file_count {
                statistics.column_statistics =
                    metadata::column_statistics(self.table.metadata(), &output, &entries);
            }
        }
        let entry = {
            let mut log = self.log.lock();
            log.push(ScanStats {
                table: self.name.clone(),
                files_scanned: file_count as u64,
                files_total,
                bytes_scanned: bytes,
                from_manifests: false,
            });
            log.len() - 1
        };
        let facts = Arc::new(ScanFacts {
            table: self.name.clone(),
            files: file_count,
            rows: statistics.num_rows.get_value().copied().unwrap_or(0),
            log: self.log.clone(),
            entry,
        });
        let n = state.config().target_partitions().max(1);
        // A limit reads the first rows it finds: cutting a file would only start a second
        // row group's read beside the first.
        let partitions = match limit {
            Some(_) => spread(tasks, n),
            None => spread(split(tasks, n), n),
        };
        Ok(Arc::new(IcebergScanExec::new(
            self.table.clone(),
            output,
            partitions,
            limit,
            state.config().batch_size(),
            statistics,
            facts,
        )))
    }
}

/// What an aggregate answered from the manifests needs of its scan.
#[derive(Debug)]
pub(crate) struct ScanFacts {
    table: String,
    files: usize,
    rows: usize,
    log: ScanLog,
    entry: usize,
}

impl ScanFacts {
    /// The scan will not run: its log says no data file was read.
    fn answered_from_manifests(&self) {
        if let Some(stats) = self.log.lock().get_mut(self.entry) {
            stats.files_scanned = 0;
            stats.bytes_scanned = 0;
            stats.from_manifests = true;
        }
    }
}

fn unapplied(filters: &[Expr]) -> DataFusionError {
    DataFusionError::Plan(format!(
        "the filters {} cannot be applied to the table's files",
        filters
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" AND ")
    ))
}

fn has_cast(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::Cast(_) | Expr::TryCast(_))))
        .unwrap_or(true)
}

/// Cuts each whole Parquet file larger than one partition's share of the scan into
/// contiguous byte ranges of about that share (never below `SCAN_SPLIT_BYTES_MIN`). The
/// ranges tile the file, so each row group is read by exactly the range that holds its
/// midpoint.
fn split(tasks: Vec<FileScanTask>, n: usize) -> Vec<FileScanTask> {
    let total = tasks
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.length));
    split_by(
        tasks,
        total.div_ceil(n.max(1) as u64).max(SCAN_SPLIT_BYTES_MIN),
    )
}

/// Cuts whole Parquet files longer than `share` bytes into ranges of at most `share`.
fn split_by(tasks: Vec<FileScanTask>, share: u64) -> Vec<FileScanTask> {
    let share = share.max(1);
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let whole = task.start == 0 && task.length == task.file_size_in_bytes;
        if !whole || task.data_file_format != DataFileFormat::Parquet || task.length <= share {
            out.push(task);
            continue;
        }
        let pieces = task.length.div_ceil(share);
        let at = |i: u64| (u128::from(task.length) * u128::from(i) / u128::from(pieces)) as u64;
        for i in 0..pieces {
            let (start, end) = (at(i), at(i + 1));
            let mut piece = task.clone();
            piece.start = start;
            piece.length = end - start;
            piece.record_count = None;
            out.push(piece);
        }
    }
    out
}

/// Deals the files to `n` partitions, largest first onto the lightest partition.
fn spread(mut tasks: Vec<FileScanTask>, n: usize) -> Vec<Vec<FileScanTask>> {
    let n = n.min(tasks.len()).max(1);
    tasks.sort_by_key(|t| std::cmp::Reverse(t.length));
    let mut parts: Vec<(u64, Vec<FileScanTask>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for task in tasks {
        let lightest = parts
            .iter_mut()
            .min_by_key(|(weight, _)| *weight)
            .expect("at least one partition");
        lightest.0 += task.length;
        lightest.1.push(task);
    }
    parts.into_iter().map(|(_, tasks)| tasks).collect()
}

/// The physical scan: one partition per group of files.
#[derive(Debug)]
struct IcebergScanExec {
    table: Table,
    schema: SchemaRef,
    partitions: Vec<Vec<FileScanTask>>,
    limit: Option<usize>,
    batch_size: usize,
    properties: Arc<PlanProperties>,
    statistics: Statistics,
    facts: Arc<ScanFacts>,
}

impl IcebergScanExec {
    fn new(
        table: Table,
        schema: SchemaRef,
        partitions: Vec<Vec<FileScanTask>>,
        limit: Option<usize>,
        batch_size: usize,
        statistics: Statistics,
        facts: Arc<ScanFacts>,
    ) -> IcebergScanExec {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        IcebergScanExec {
            table,
            schema,
            partitions,
            limit,
            batch_size,
            properties,
            statistics,
            facts,
        }
    }
}

impl DisplayAs for IcebergScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: usize = self.partitions.iter().map(Vec::len).sum();
        write!(
            f,
            "IcebergScanExec: table={}, files={}, ranges={ranges}, partitions={}",
            self.table.identifier(),
            self.facts.files,
            self.partitions.len()
        )?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IcebergScanExec {
    fn name(&self) -> &str {
        "IcebergScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// The whole scan's statistics, exact where the metadata decides them; a partition's
    /// are unknown.
    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        Ok(match partition {
            None => self.statistics.clone(),
            Some(_) => Statistics::new_unknown(&self.schema),
        })
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let tasks = self.partitions.get(partition).cloned().unwrap_or_default();
        let reader = self
            .table
            .reader_builder()
            .with_batch_size(self.batch_size)
            .with_data_file_concurrency_limit(SCAN_FILES_IN_FLIGHT_MAX)
            .build();
        let files = futures::stream::iter(tasks.into_iter().map(Ok)).boxed();
        let batches = reader
            .read(files)
            .map_err(df_error)?
            .stream()
            .map_err(df_error);
        let stream = match self.limit {
            None => batches.boxed(),
            Some(limit) => batches
                .scan(limit, |left, item| {
                    let out = match item {
                        Ok(_) if *left == 0 => None,
                        Ok(batch) => {
                            let keep = batch.num_rows().min(*left);
                            *left -= keep;
                            Some(Ok(batch.slice(0, keep)))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(out)
                })
                .boxed(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests;
