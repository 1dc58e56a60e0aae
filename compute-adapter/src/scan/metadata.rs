//! What a table's metadata says exactly about a scan, so that DataFusion may answer
//! `count(*)`, `count(col)`, `min` and `max` from it without reading a data file.
//!
//! - Filters on a column that every partition spec of the table partitions by identity
//!   are decided per file by its partition value: the scan takes them as exact, so no
//!   filter is left above it, and every row of every planned file matches them.
//! - The row count is exact when every planned file is read whole and carries no deletes
//!   (the manifests' record counts).
//! - A column's null count and bounds are exact when every planned file's manifest entry
//!   holds them, the column's type keeps its bounds whole (integers, dates, timestamps,
//!   booleans: strings may be truncated, floats carry NaN and signed zeros), and the
//!   bounds have the column's current type.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::datatypes::{DataType, Schema as ArrowSchema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::common::stats::{ColumnStatistics, Precision};
use datafusion::logical_expr::{Expr, Operator};
use iceberg::expr::{Predicate, Reference};
use iceberg::scan::FileScanTask;
use iceberg::spec::{
    DataContentType, DataFile, Datum, ManifestContentType, PrimitiveLiteral, PrimitiveType,
    TableMetadata, Transform, Type,
};
use iceberg::table::Table;

/// Top-level columns, by name with their types, that every partition spec of the table
/// partitions by identity and whose type compares the same in Iceberg and in SQL.
pub(super) fn identity_columns(metadata: &TableMetadata) -> HashMap<String, PrimitiveType> {
    let mut common: Option<HashSet<i32>> = None;
    for spec in metadata.partition_specs_iter() {
        let ids: HashSet<i32> = spec
            .fields()
            .iter()
            .filter(|f| f.transform == Transform::Identity)
            .map(|f| f.source_id)
            .collect();
        common = Some(match common {
            None => ids,
            Some(before) => before.intersection(&ids).copied().collect(),
        });
    }
    let schema = metadata.current_schema();
    let top: HashSet<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    common
        .unwrap_or_default()
        .into_iter()
        .filter(|id| top.contains(id))
        .filter_map(|id| schema.field_by_id(id))
        .filter_map(|f| match f.field_type.as_ref() {
            Type::Primitive(
                kind @ (PrimitiveType::Boolean
                | PrimitiveType::Int
                | PrimitiveType::Long
                | PrimitiveType::Date
                | PrimitiveType::String
                | PrimitiveType::Timestamp
                | PrimitiveType::Timestamptz),
            ) => Some((f.name.clone(), kind.clone())),
            _ => None,
        })
        .collect()
}

/// The whole of `filter` as an Iceberg predicate when it only compares identity-partition
/// columns with literals of their own type, in forms whose partition-value test is the
/// row test (a null partition value matches none); otherwise `None`. The scan applies
/// such a filter exactly (its files hold only matching rows), so nothing of it may be
/// dropped in the translation: this one translates every leaf or fails.
pub(super) fn partition_predicate(
    filter: &Expr,
    columns: &HashMap<String, PrimitiveType>,
) -> Option<Predicate> {
    fn column<'a>(
        e: &'a Expr,
        columns: &'a HashMap<String, PrimitiveType>,
    ) -> Option<(&'a str, &'a PrimitiveType)> {
        match e {
            Expr::Column(c) => columns.get(&c.name).map(|kind| (c.name.as_str(), kind)),
            _ => None,
        }
    }
    match filter {
        Expr::BinaryExpr(b) => match b.op {
            Operator::And => Some(
                partition_predicate(&b.left, columns)?.and(partition_predicate(&b.right, columns)?),
            ),
            Operator::Or => Some(
                partition_predicate(&b.left, columns)?.or(partition_predicate(&b.right, columns)?),
            ),
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                // `literal op column` is `column op' literal`.
                let (name, kind, value, op) =
                    match (column(&b.left, columns), column(&b.right, columns)) {
                        (Some((name, kind)), None) => (name, kind, &*b.right, b.op),
                        (None, Some((name, kind))) => (name, kind, &*b.left, b.op.swap()?),
                        _ => return None,
                    };
                let datum = datum(value, kind)?;
                let r = Reference::new(name);
                Some(match op {
                    Operator::Eq => r.equal_to(datum),
                    Operator::Lt => r.less_than(datum),
                    Operator::LtEq => r.less_than_or_equal_to(datum),
                    Operator::Gt => r.greater_than(datum),
                    Operator::GtEq => r.greater_than_or_equal_to(datum),
                    _ => return None,
                })
            }
            _ => None,
        },
        Expr::InList(list) if !list.negated => {
            let (name, kind) = column(&list.expr, columns)?;
            let values: Option<Vec<Datum>> = list.list.iter().map(|v| datum(v, kind)).collect();
            Some(Reference::new(name).is_in(values?))
        }
        Expr::IsNull(e) => Some(Reference::new(column(e, columns)?.0).is_null()),
        Expr::IsNotNull(e) => Some(Reference::new(column(e, columns)?.0).is_not_null()),
        _ => None,
    }
}

/// A non-null literal of exactly the column's type, as an Iceberg value.
fn datum(e: &Expr, kind: &PrimitiveType) -> Option<Datum> {
    let Expr::Literal(value, _) = e else {
        return None;
    };
    Some(match (value, kind) {
        (ScalarValue::Boolean(Some(b)), PrimitiveType::Boolean) => Datum::bool(*b),
        (ScalarValue::Int32(Some(v)), PrimitiveType::Int) => Datum::int(*v),
        (ScalarValue::Int64(Some(v)), PrimitiveType::Long) => Datum::long(*v),
        (ScalarValue::Date32(Some(v)), PrimitiveType::Date) => Datum::date(*v),
        (
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)),
            PrimitiveType::String,
        ) => Datum::string(v),
        (ScalarValue::TimestampMicrosecond(Some(v), None), PrimitiveType::Timestamp) => {
            Datum::timestamp_micros(*v)
        }
        (ScalarValue::TimestampMicrosecond(Some(v), Some(_)), PrimitiveType::Timestamptz) => {
            Datum::timestamptz_micros(*v)
        }
        _ => return None,
    })
}

/// The scan's row count: exact when every file is read whole and has no deletes.
pub(super) fn row_count(tasks: &[FileScanTask]) -> Precision<usize> {
    let mut rows = 0usize;
    let mut exact = true;
    for task in tasks {
        match task.record_count {
            Some(n) if task.deletes.is_empty() && task.start == 0 => {
                rows = rows.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            }
            Some(n) => {
                exact = false;
                rows = rows.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            }
            None => exact = false,
        }
    }
    if exact {
        Precision::Exact(rows)
    } else {
        Precision::Inexact(rows)
    }
}

/// The manifest entries of the planned files, read again from the current snapshot.
pub(super) async fn planned_entries(
    table: &Table,
    tasks: &[FileScanTask],
) -> iceberg::Result<Vec<DataFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let mut wanted: HashSet<&str> = tasks.iter().map(|t| t.data_file_path.as_str()).collect();
    let list = table.manifest_list_reader(snapshot).load().await?;
    let mut out = Vec::with_capacity(wanted.len());
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data || wanted.is_empty() {
            continue;
        }
        let manifest = manifest.load_manifest(table.file_io()).await?;
        for entry in manifest.entries() {
            if entry.is_alive()
                && entry.content_type() == DataContentType::Data
                && wanted.remove(entry.file_path())
            {
                out.push(entry.data_file().clone());
            }
        }
    }
    Ok(out)
}

/// Null counts and bounds of the output columns over `files`, exact where the metadata
/// decides them, unknown elsewhere.
pub(super) fn column_statistics(
    metadata: &TableMetadata,
    output: &ArrowSchema,
    files: &[DataFile],
) -> Vec<ColumnStatistics> {
    let schema = metadata.current_schema();
    output
        .fields()
        .iter()
        .map(|field| {
            let Some(column) = schema
                .as_struct()
                .fields()
                .iter()
                .find(|f| &f.name == field.name())
            else {
                return ColumnStatistics::new_unknown();
            };
            let Type::Primitive(kind) = column.field_type.as_ref() else {
                return ColumnStatistics::new_unknown();
            };
            column_of(column.id, kind, field.data_type(), files)
        })
        .collect()
}

fn column_of(
    id: i32,
    kind: &PrimitiveType,
    arrow: &DataType,
    files: &[DataFile],
) -> ColumnStatistics {
    let mut stats = ColumnStatistics::new_unknown();
    // A file claiming more nulls than rows says nothing trustworthy about the column.
    let nulls: Option<u64> = files
        .iter()
        .map(|f| {
            f.null_value_counts()
                .get(&id)
                .copied()
                .filter(|n| *n <= f.record_count())
        })
        .sum();
    if let Some(n) = nulls.and_then(|n| usize::try_from(n).ok()) {
        stats.null_count = Precision::Exact(n);
    }
    let Ok(none) = ScalarValue::try_from(arrow) else {
        return stats;
    };
    let mut low: Option<&Datum> = None;
    let mut high: Option<&Datum> = None;
    for file in files {
        let null_here = file.null_value_counts().get(&id).copied();
        if null_here == Some(file.record_count()) {
            // Every value of this file is null: it bounds nothing.
            continue;
        }
        let (Some(l), Some(u)) = (file.lower_bounds().get(&id), file.upper_bounds().get(&id))
        else {
            return stats;
        };
        if l.data_type() != kind || u.data_type() != kind {
            return stats;
        }
        low = match low {
            Some(m) if m.partial_cmp(l) != Some(std::cmp::Ordering::Greater) => Some(m),
            _ => Some(l),
        };
        high = match high {
            Some(m) if m.partial_cmp(u) != Some(std::cmp::Ordering::Less) => Some(m),
            _ => Some(u),
        };
    }
    let value = |d: Option<&Datum>| match d {
        None => Some(none.clone()),
        Some(d) => scalar(d, arrow),
    };
    if let (Some(min), Some(max)) = (value(low), value(high)) {
        stats.min_value = Precision::Exact(min);
        stats.max_value = Precision::Exact(max);
    }
    stats
}

/// A bound as the value DataFusion computes for the column, for the types whose bounds
/// are whole values.
fn scalar(datum: &Datum, arrow: &DataType) -> Option<ScalarValue> {
    Some(match (datum.literal(), arrow) {
        (PrimitiveLiteral::Boolean(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (PrimitiveLiteral::Int(v), DataType::Int32) => ScalarValue::Int32(Some(*v)),
        (PrimitiveLiteral::Int(v), DataType::Date32) => ScalarValue::Date32(Some(*v)),
        (PrimitiveLiteral::Long(v), DataType::Int64) => ScalarValue::Int64(Some(*v)),
        (PrimitiveLiteral::Long(v), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), tz.clone())
        }
        (PrimitiveLiteral::Long(v), DataType::Timestamp(TimeUnit::Nanosecond, tz)) => {
            ScalarValue::TimestampNanosecond(Some(*v), tz.clone())
        }
        _ => return None,
    })
}
