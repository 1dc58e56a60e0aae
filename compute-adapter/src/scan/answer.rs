//! Aggregates answered from manifests: `count(*)`, `count(col)`, `min` and `max` over an
//! Iceberg scan whose statistics are exact (see `metadata`) become constants, and the plan
//! says so: a `ManifestAnswerExec` stands where the scan stood.
//!
//! The folding itself is DataFusion's `AggregateStatistics`; this rule takes its place in
//! the physical optimizer so that a fold over an Iceberg scan is named in `EXPLAIN` and
//! the scan's log says no data file was read.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::aggregate_statistics::AggregateStatistics;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateInputMode};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::{IcebergScanExec, ScanFacts};

/// The physical optimizer's rules, with DataFusion's statistics fold replaced by
/// `AnswerFromManifests` (which runs it too, for every other source).
pub(crate) fn optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new()
        .rules
        .into_iter()
        .map(|rule| -> Arc<dyn PhysicalOptimizerRule + Send + Sync> {
            if rule.name() == AggregateStatistics::new().name() {
                Arc::new(AnswerFromManifests)
            } else {
                rule
            }
        })
        .collect()
}

/// Folds aggregates over Iceberg scans with exact statistics into constants.
#[derive(Debug, Default)]
pub(crate) struct AnswerFromManifests;

impl PhysicalOptimizerRule for AnswerFromManifests {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let answered = plan
            .transform_down(|node| {
                let Some(scan) = aggregate_over_scan(&node) else {
                    return Ok(Transformed::no(node));
                };
                let folded = AggregateStatistics::new().optimize(node.clone(), config)?;
                if find_scan(&folded).is_some() {
                    return Ok(Transformed::no(node));
                }
                let answer = ManifestAnswerExec::new(folded, &scan);
                scan.answered_from_manifests();
                Ok(Transformed::new(
                    Arc::new(answer),
                    true,
                    TreeNodeRecursion::Jump,
                ))
            })?
            .data;
        AggregateStatistics::new().optimize(answered, config)
    }

    fn name(&self) -> &str {
        "answer_from_manifests"
    }

    /// The fold changes nullability, as DataFusion's own rule does.
    fn schema_check(&self) -> bool {
        false
    }
}

/// The Iceberg scan under a final aggregate without groups, through single-input nodes.
fn aggregate_over_scan(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<ScanFacts>> {
    let aggregate = node.as_any().downcast_ref::<AggregateExec>()?;
    if aggregate.mode().input_mode() != AggregateInputMode::Partial
        || !aggregate.group_expr().is_empty()
    {
        return None;
    }
    find_scan(node)
}

fn find_scan(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<ScanFacts>> {
    let mut at = node.clone();
    loop {
        if let Some(scan) = at.as_any().downcast_ref::<IcebergScanExec>() {
            return Some(scan.facts.clone());
        }
        let next = match at.children().as_slice() {
            [only] => Arc::clone(only),
            _ => return None,
        };
        at = next;
    }
}

/// Where a scan stood, answered from its table's manifests: runs the constants below it.
#[derive(Debug)]
pub(crate) struct ManifestAnswerExec {
    input: Arc<dyn ExecutionPlan>,
    table: String,
    files: usize,
    rows: usize,
}

impl ManifestAnswerExec {
    fn new(input: Arc<dyn ExecutionPlan>, scan: &ScanFacts) -> ManifestAnswerExec {
        ManifestAnswerExec {
            input,
            table: scan.table.clone(),
            files: scan.files,
            rows: scan.rows,
        }
    }
}

impl DisplayAs for ManifestAnswerExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManifestAnswerExec: table={}, answered from the manifests of {} data files ({} rows), no data file read",
            self.table, self.files, self.rows
        )
    }
}

impl ExecutionPlan for ManifestAnswerExec {
    fn name(&self) -> &str {
        "ManifestAnswerExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = match children.pop() {
            Some(input) if children.is_empty() => input,
            _ => {
                return Err(datafusion::error::DataFusionError::Internal(
                    "ManifestAnswerExec takes one input".into(),
                ));
            }
        };
        Ok(Arc::new(ManifestAnswerExec {
            input,
            table: self.table.clone(),
            files: self.files,
            rows: self.rows,
        }))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        self.input.partition_statistics(partition)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
