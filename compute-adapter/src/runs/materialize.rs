//! Materialization (DESIGN §5): a model's output written to its table on the run branch,
//! through the snapshot producer. `REPLACE` makes the output the table's rows and schema;
//! `APPEND` adds its rows; `OVERWRITE_PARTITIONS` replaces the partitions its rows fall in.
//! `APPEND` and `OVERWRITE_PARTITIONS` add the output's new columns to the table's schema
//! (a column whose type does not fit is an error naming it); `partitioned_by` partitions a
//! new table by identity. A schema change is its own commit on the run branch, before the
//! files are written in the new schema; the landing carries the table's final state.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchIterator};
use datafusion::arrow::datatypes::SchemaRef;
use floe_catalog::deferred::Scope;
use floe_catalog::{
    Authored, Catalog, CatalogError, LoadedTable, Principal, TableChange, TableCreate,
};
use floe_commits::{ContentKey, RefSpec};
use iceberg::TableUpdate;
use iceberg::spec::{
    MAIN_BRANCH, NestedField, NestedFieldRef, Schema, Struct, Transform, UnboundPartitionSpec,
};

use super::plan::Materialization;
use crate::limits::RUN_FILE_ROWS_MIN;
use crate::snapshot::{NewSnapshot, Removed, SnapshotOperation};
use crate::types::{fits, iceberg_type, same_shape};

/// The snapshot summary property naming the run that made the snapshot.
const RUN_ID_PROPERTY: &str = "floe.run.id";

/// Where a run writes: its catalog, its executor and its branch.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    pub catalog: Catalog,
    pub executor: Principal,
    pub branch: RefSpec,
    pub run_id: String,
}

/// What one materialization wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    pub rows: u64,
    pub bytes: u64,
    pub snapshot_id: i64,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| format!("a run task failed: {e}"))?
}

/// Store work off the async workers (`crate::off_store`).
async fn store<T: Send + 'static>(
    scope: Scope,
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    crate::off_store(scope, f, |why| {
        CatalogError::Unsupported(format!("a run task failed: {why}"))
    })
    .await
}

impl Writer {
    /// Writes `batches` (of `schema`) to table `key` as `how` says.
    pub(super) async fn materialize(
        &self,
        key: &ContentKey,
        how: Materialization,
        partitioned_by: &[String],
        overwrite_filter: Option<&str>,
        schema: SchemaRef,
        batches: Arc<Vec<RecordBatch>>,
    ) -> Result<Written, String> {
        let table = self.table(key, how, partitioned_by, &schema).await?;
        let added = self.write_files(&table, key, schema, &batches).await?;
        let written_paths: Vec<String> = added.iter().map(|f| f.file_path().to_owned()).collect();
        let rows = added.iter().map(|f| f.record_count()).sum();
        let bytes = added.iter().map(|f| f.file_size_in_bytes()).sum();
        let committed = self
            .commit_snapshot(key, &table, how, overwrite_filter, added)
            .await;
        match committed {
            Ok(snapshot_id) => Ok(Written {
                rows,
                bytes,
                snapshot_id,
            }),
            Err(e) => {
                // Nothing refers to the files: remove them. Not when the commit's outcome
                // is unknown: it may have landed, naming them.
                if !e.unknown {
                    self.remove_unreferenced(&table, written_paths).await;
                }
                Err(e.message)
            }
        }
    }

    /// Writes the rows as data files of the table: the rows cut into contiguous pieces of
    /// at least `RUN_FILE_ROWS_MIN`, one per core at most, each written (encoded,
    /// compressed, flushed) on its own thread, so a large output uses every core. Nothing
    /// is left when one piece fails.
    async fn write_files(
        &self,
        table: &LoadedTable,
        key: &ContentKey,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<Vec<iceberg::spec::DataFile>, String> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let chunks = cut(batches, (rows / RUN_FILE_ROWS_MIN).clamp(1, cores));
        let mut tasks = Vec::new();
        for chunk in chunks {
            let (catalog, metadata) = (self.catalog.clone(), table.metadata.clone());
            let (name, schema) = (key.to_string(), schema.clone());
            tasks.push(blocking(move || {
                let reader = RecordBatchIterator::new(chunk.into_iter().map(Ok), schema);
                crate::import::write_table_files(&catalog, &metadata, &name, Box::new(reader))
                    .map_err(|e| e.to_string())
            }));
        }
        let mut added = Vec::new();
        let mut failure = None;
        for done in futures::future::join_all(tasks).await {
            match done {
                Ok(files) => added.extend(files),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            let written: Vec<String> = added.iter().map(|f| f.file_path().to_owned()).collect();
            self.remove_unreferenced(table, written).await;
            return Err(e);
        }
        Ok(added)
    }

    /// Removes the data files of a failed materialization (best effort, logged).
    async fn remove_unreferenced(&self, table: &LoadedTable, locations: Vec<String>) {
        match self.catalog.data_files(table.metadata.location()) {
            Ok(store) => {
                let _ = blocking(move || {
                    crate::import::remove_unreferenced(&store, &locations);
                    Ok(())
                })
                .await;
            }
            Err(e) => tracing::warn!(error = %e, "unreferenced data files were left"),
        }
    }

    /// The table to write, created or with its schema evolved for the output first.
    async fn table(
        &self,
        key: &ContentKey,
        how: Materialization,
        partitioned_by: &[String],
        output: &SchemaRef,
    ) -> Result<LoadedTable, String> {
        let this = self.clone();
        let lookup = key.clone();
        let existing = store(Scope::Read, move || {
            match this
                .catalog
                .load_table(&this.executor, &this.branch, &lookup)
            {
                Ok((_, t)) => Ok(Some(t)),
                Err(CatalogError::TableNotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        let Some(table) = existing else {
            let schema = fresh_schema(output, 1)?;
            let spec = partition_spec(&schema, partitioned_by)?;
            let create = TableCreate {
                name: key.elements().last().unwrap_or_default().to_owned(),
                location: None,
                schema,
                partition_spec: spec,
                write_order: None,
                stage_create: false,
                properties: HashMap::new(),
            };
            let this = self.clone();
            let namespace = key.parent().unwrap_or_else(|| key.clone());
            return store(Scope::Write, move || {
                this.catalog.create_table(
                    &this.executor,
                    &this.branch,
                    &namespace,
                    create,
                    &Authored::default(),
                    None,
                )
            })
            .await
            .map_err(|e| e.to_string());
        };
        let current = table.metadata.current_schema();
        let next = evolve(current, output, how, table.metadata.last_column_id())?;
        if next.as_struct() == current.as_struct() {
            return Ok(table);
        }
        let change = TableChange {
            key: key.clone(),
            requirements: vec![iceberg::TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: current.schema_id(),
            }],
            updates: vec![
                TableUpdate::AddSchema { schema: next },
                TableUpdate::SetCurrentSchema { schema_id: -1 },
            ],
        };
        self.commit(change).await.map_err(|e| e.to_string())
    }

    /// Commits `change` on the run's branch.
    async fn commit(&self, change: TableChange) -> Result<LoadedTable, CatalogError> {
        let this = self.clone();
        store(Scope::Write, move || {
            this.catalog.commit_table(
                &this.executor,
                &this.branch,
                change,
                &Authored::default(),
                None,
            )
        })
        .await
    }

    /// Commits one snapshot of the written files and returns its id.
    async fn commit_snapshot(
        &self,
        key: &ContentKey,
        table: &LoadedTable,
        how: Materialization,
        overwrite_filter: Option<&str>,
        added: Vec<iceberg::spec::DataFile>,
    ) -> Result<i64, CommitFailed> {
        let metadata = &table.metadata;
        let file_io = self
            .catalog
            .table_file_io(metadata)
            .map_err(|e| e.to_string())?;
        let operation = match how {
            Materialization::Replace => SnapshotOperation::Overwrite(Removed::All),
            Materialization::OverwritePartitions => {
                if metadata.default_partition_spec().is_unpartitioned() {
                    return Err(format!(
                        "OVERWRITE_PARTITIONS needs a partitioned table, and {key} is not partitioned; declare partitioned_by (on a new table) or use REPLACE"
                    )
                    .into());
                }
                let live = live_files(&file_io, metadata).await?;
                let removed: BTreeSet<String> = match overwrite_filter {
                    // The partitions the filter selects.
                    Some(filter) => matching(metadata, &live, filter).await?,
                    // The partitions the output's rows fall in.
                    None => {
                        let touched: HashSet<String> = added
                            .iter()
                            .map(|f| format!("{:?}", f.partition()))
                            .collect();
                        live.into_iter()
                            .filter(|(_, partition)| touched.contains(&format!("{partition:?}")))
                            .map(|(path, _)| path)
                            .collect()
                    }
                };
                if removed.is_empty() {
                    SnapshotOperation::Append
                } else {
                    SnapshotOperation::Overwrite(Removed::Files(removed))
                }
            }
            Materialization::Append | Materialization::None => SnapshotOperation::Append,
        };
        let produced = crate::snapshot::produce(
            &file_io,
            NewSnapshot {
                metadata,
                branch: MAIN_BRANCH,
                operation,
                added,
                properties: HashMap::from([(RUN_ID_PROPERTY.to_owned(), self.run_id.clone())]),
                timestamp_ms: self.catalog.now_ms(),
                id: self.catalog.new_uuid(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let change = TableChange {
            key: key.clone(),
            requirements: produced.requirements,
            updates: produced.updates,
        };
        match self.commit(change).await {
            Ok(_) => Ok(produced.snapshot_id),
            Err(e) => Err(CommitFailed {
                unknown: e.is_outcome_unknown(),
                message: e.to_string(),
            }),
        }
    }
}

/// Why a materialization's snapshot did not commit, and whether it may have all the same.
struct CommitFailed {
    message: String,
    unknown: bool,
}

impl From<String> for CommitFailed {
    fn from(message: String) -> CommitFailed {
        CommitFailed {
            message,
            unknown: false,
        }
    }
}

/// The rows of `batches`, in order, cut into `pieces` runs of (nearly) equal row counts.
fn cut(batches: &[RecordBatch], pieces: usize) -> Vec<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_piece = rows.div_ceil(pieces.max(1)).max(1);
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new(); pieces.max(1)];
    let (mut piece, mut filled) = (0, 0);
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let last = piece + 1 == out.len();
            if filled == per_piece && !last {
                piece += 1;
                filled = 0;
                continue;
            }
            let room = if last { usize::MAX } else { per_piece - filled };
            let take = (batch.num_rows() - offset).min(room);
            out[piece].push(batch.slice(offset, take));
            offset += take;
            filled += take;
        }
    }
    out
}

/// The live data files of the table's current snapshot, with their partitions.
async fn live_files(
    file_io: &iceberg::io::FileIO,
    metadata: &iceberg::spec::TableMetadata,
) -> Result<Vec<(String, Struct)>, String> {
    let Some(snapshot) = metadata.snapshot_for_ref(MAIN_BRANCH) else {
        return Ok(Vec::new());
    };
    let bytes = file_io
        .new_input(snapshot.manifest_list())
        .map_err(|e| e.to_string())?
        .read()
        .await
        .map_err(|e| e.to_string())?;
    let list = iceberg::spec::ManifestList::parse_with_version(&bytes, metadata.format_version())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for manifest in list.entries() {
        if manifest.content != iceberg::spec::ManifestContentType::Data {
            continue;
        }
        let m = manifest
            .load_manifest(file_io)
            .await
            .map_err(|e| e.to_string())?;
        for entry in m.entries() {
            if entry.is_alive() {
                let f = entry.data_file();
                out.push((f.file_path().to_owned(), f.partition().clone()));
            }
        }
    }
    Ok(out)
}

/// The live files whose partition `filter` (SQL on the table's identity partition
/// columns) selects: the partition values become a table of one row per file, and
/// DataFusion evaluates the filter over it.
async fn matching(
    metadata: &iceberg::spec::TableMetadata,
    live: &[(String, Struct)],
    filter: &str,
) -> Result<BTreeSet<String>, String> {
    use datafusion::arrow::array::UInt32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
    use datafusion::common::ScalarValue;

    let spec = metadata.default_partition_spec();
    let schema = metadata.current_schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (i, field) in spec.fields().iter().enumerate() {
        let source = schema
            .field_by_id(field.source_id)
            .ok_or_else(|| format!("partition field {} has no source column", field.name))?;
        if field.transform != Transform::Identity {
            continue;
        }
        let iceberg::spec::Type::Primitive(kind) = source.field_type.as_ref() else {
            continue;
        };
        let values = live
            .iter()
            .map(|(_, partition)| scalar(kind, partition.iter().nth(i).flatten()))
            .collect::<Result<Vec<ScalarValue>, String>>()?;
        let Some(first) = values.first() else {
            return Ok(BTreeSet::new());
        };
        fields.push(Field::new(source.name.clone(), first.data_type(), true));
        columns.push(ScalarValue::iter_to_array(values).map_err(|e| e.to_string())?);
    }
    if live.is_empty() {
        return Ok(BTreeSet::new());
    }
    fields.push(Field::new("__floe_file", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values(
        0..u32::try_from(live.len()).unwrap_or(u32::MAX),
    )));
    let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
        .map_err(|e| e.to_string())?;
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    let df = ctx.read_batch(batch).map_err(|e| e.to_string())?;
    let bad = |e: datafusion::error::DataFusionError| {
        format!(
            "overwrite_filter {filter:?} must be a condition on the table's identity partition columns: {}",
            e.strip_backtrace()
        )
    };
    let predicate = df.parse_sql_expr(filter).map_err(bad)?;
    let rows = df
        .filter(predicate)
        .map_err(bad)?
        .select_columns(&["__floe_file"])
        .map_err(bad)?
        .collect()
        .await
        .map_err(bad)?;
    let mut out = BTreeSet::new();
    for b in rows {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or("the filter's answer is not a row list")?;
        for id in ids.values() {
            out.insert(live[*id as usize].0.clone());
        }
    }
    Ok(out)
}

/// A partition value as DataFusion's scalar of the source column's type.
fn scalar(
    kind: &iceberg::spec::PrimitiveType,
    value: Option<&iceberg::spec::Literal>,
) -> Result<datafusion::common::ScalarValue, String> {
    use datafusion::common::ScalarValue as S;
    use iceberg::spec::{Literal, PrimitiveLiteral as L, PrimitiveType as P};
    let v = match value {
        Some(Literal::Primitive(v)) => Some(v),
        None => None,
        Some(other) => return Err(format!("a partition value {other:?} is not a primitive")),
    };
    Ok(match (kind, v) {
        (P::Boolean, v) => S::Boolean(v.and_then(|v| match v {
            L::Boolean(b) => Some(*b),
            _ => None,
        })),
        (P::Int, v) => S::Int32(v.and_then(|v| match v {
            L::Int(i) => Some(*i),
            _ => None,
        })),
        (P::Long, v) => S::Int64(v.and_then(|v| match v {
            L::Long(i) => Some(*i),
            _ => None,
        })),
        (P::Float, v) => S::Float32(v.and_then(|v| match v {
            L::Float(f) => Some(f.0),
            _ => None,
        })),
        (P::Double, v) => S::Float64(v.and_then(|v| match v {
            L::Double(f) => Some(f.0),
            _ => None,
        })),
        (P::Date, v) => S::Date32(v.and_then(|v| match v {
            L::Int(i) => Some(*i),
            _ => None,
        })),
        (P::Timestamp, v) => S::TimestampMicrosecond(
            v.and_then(|v| match v {
                L::Long(i) => Some(*i),
                _ => None,
            }),
            None,
        ),
        (P::Timestamptz, v) => S::TimestampMicrosecond(
            v.and_then(|v| match v {
                L::Long(i) => Some(*i),
                _ => None,
            }),
            Some("+00:00".into()),
        ),
        (P::String, v) => S::Utf8(v.and_then(|v| match v {
            L::String(s) => Some(s.clone()),
            _ => None,
        })),
        (other, _) => {
            return Err(format!(
                "overwrite_filter over a partition column of type {other} is not supported; partition by a boolean, number, date, timestamp or string column"
            ));
        }
    })
}

/// The Iceberg schema of an output, ids from `first_id`.
fn fresh_schema(output: &SchemaRef, first_id: i32) -> Result<Schema, String> {
    let mut next_id = first_id + i32::try_from(output.fields().len()).unwrap_or(i32::MAX);
    let mut fields = Vec::new();
    for (n, f) in output.fields().iter().enumerate() {
        let id = first_id + i32::try_from(n).unwrap_or(i32::MAX);
        let t = iceberg_type(f.name(), f.data_type(), &mut next_id)?;
        fields.push(Arc::new(NestedField::optional(id, f.name(), t)));
    }
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(|e| e.to_string())
}

/// The table's next schema for an output: `REPLACE` takes the output's columns (a column
/// of the same name and shape keeps its field id); `APPEND` and `OVERWRITE_PARTITIONS`
/// keep every column and add the output's new ones. New ids come after `last_id`.
fn evolve(
    current: &Schema,
    output: &SchemaRef,
    how: Materialization,
    last_id: i32,
) -> Result<Schema, String> {
    let mut next_id = last_id + 1;
    let mut fields: Vec<NestedFieldRef> = Vec::new();
    let mut errors = Vec::new();
    let keep_all = how != Materialization::Replace;
    if keep_all {
        fields.extend(current.as_struct().fields().iter().cloned());
    }
    for f in output.fields() {
        let mut probe = 1_000_000;
        let shape = match iceberg_type(f.name(), f.data_type(), &mut probe) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match (keep_all, current.field_by_name(f.name())) {
            (true, Some(existing)) => {
                if !fits(&shape, &existing.field_type) {
                    errors.push(format!(
                        "column {} is {} in the output but {} in the table; cast it in the model",
                        f.name(),
                        f.data_type(),
                        existing.field_type
                    ));
                }
            }
            (false, Some(existing)) if same_shape(&shape, &existing.field_type) => {
                fields.push(existing.clone());
            }
            _ => {
                let id = next_id;
                next_id += 1;
                let t = iceberg_type(f.name(), f.data_type(), &mut next_id)?;
                fields.push(Arc::new(NestedField::optional(id, f.name(), t)));
            }
        }
    }
    if keep_all {
        for existing in current.as_struct().fields() {
            if existing.required && output.field_with_name(&existing.name).is_err() {
                errors.push(format!(
                    "the table's required column {} is not in the output",
                    existing.name
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .build()
        .map_err(|e| e.to_string())
}

/// An identity partition spec over `columns` (none: unpartitioned).
fn partition_spec(
    schema: &Schema,
    columns: &[String],
) -> Result<Option<UnboundPartitionSpec>, String> {
    if columns.is_empty() {
        return Ok(None);
    }
    let mut spec = UnboundPartitionSpec::builder().with_spec_id(0);
    for c in columns {
        let field = schema.field_by_name(c).ok_or_else(|| {
            format!("partitioned_by names {c}, which is not a column of the output")
        })?;
        spec = spec
            .add_partition_field(field.id, c, Transform::Identity)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(spec.build()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};

    use super::*;

    fn arrow(fields: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(ArrowSchema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn append_adds_new_columns_and_keeps_ids() {
        let current =
            fresh_schema(&arrow(&[("a", DataType::Int64), ("b", DataType::Utf8)]), 1).unwrap();
        let out = arrow(&[("b", DataType::Utf8), ("c", DataType::Float64)]);
        let next = evolve(&current, &out, Materialization::Append, 2).unwrap();
        let ids: Vec<(String, i32)> = next
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.id))
            .collect();
        assert_eq!(ids, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
        let bad = arrow(&[("a", DataType::Utf8)]);
        assert!(
            evolve(&current, &bad, Materialization::Append, 2)
                .unwrap_err()
                .contains("column a")
        );
    }

    #[test]
    fn outputs_are_cut_in_order_into_even_pieces() {
        use datafusion::arrow::array::Int64Array;
        let schema = arrow(&[("n", DataType::Int64)]);
        let batch = |r: std::ops::Range<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(r))],
            )
            .unwrap()
        };
        let batches = vec![batch(0..7), batch(7..8), batch(8..20)];
        let pieces = cut(&batches, 3);
        let rows: Vec<Vec<i64>> = pieces
            .iter()
            .map(|p| {
                p.iter()
                    .flat_map(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap()
                            .values()
                            .to_vec()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(rows.iter().map(Vec::len).collect::<Vec<_>>(), vec![7, 7, 6]);
        assert_eq!(rows.concat(), (0..20).collect::<Vec<_>>());
        assert_eq!(
            cut(&batches, 1).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(cut(&[], 2).len(), 2);
    }

    #[test]
    fn replace_takes_the_outputs_columns() {
        let current =
            fresh_schema(&arrow(&[("a", DataType::Int64), ("b", DataType::Utf8)]), 1).unwrap();
        let out = arrow(&[("b", DataType::Utf8), ("a", DataType::Utf8)]);
        let next = evolve(&current, &out, Materialization::Replace, 2).unwrap();
        let ids: Vec<(String, i32)> = next
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.id))
            .collect();
        // b keeps its id; a changed type, so it is a new column.
        assert_eq!(ids, vec![("b".into(), 2), ("a".into(), 3)]);
    }
}
