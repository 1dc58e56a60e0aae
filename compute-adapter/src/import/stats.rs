//! Column statistics of a written Parquet file for the table's manifests: per top-level
//! column its size, value and null counts and its bounds, read from the file's footer and
//! kept only when every row group has them, since a manifest bound that is not a bound
//! would make scans skip rows.

use std::collections::HashMap;

use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::statistics::Statistics;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, Schema, Struct, Type,
};

use super::ImportError;

/// The data file entry of a Parquet file in the table: counts, sizes and bounds of its
/// top-level columns, found by name.
pub(super) fn data_file(
    location: &str,
    size: u64,
    meta: &ParquetMetaData,
    schema: &Schema,
    partition: Struct,
    spec_id: i32,
) -> Result<iceberg::spec::DataFile, ImportError> {
    let mut column_sizes = HashMap::new();
    let mut value_counts = HashMap::new();
    let mut null_counts = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    let mut exact = HashMap::<i32, bool>::new();
    let descr = meta.file_metadata().schema_descr();
    for rg in meta.row_groups() {
        for (i, col) in rg.columns().iter().enumerate() {
            let path = descr.column(i).path().parts().to_vec();
            if path.len() != 1 {
                continue;
            }
            let Some(field) = schema.field_by_name(&path[0]) else {
                continue;
            };
            let id = field.id;
            *column_sizes.entry(id).or_insert(0u64) +=
                u64::try_from(col.compressed_size()).unwrap_or(0);
            *value_counts.entry(id).or_insert(0u64) += u64::try_from(col.num_values()).unwrap_or(0);
            let ok = exact.entry(id).or_insert(true);
            let Some(stats) = col.statistics() else {
                *ok = false;
                continue;
            };
            match stats.null_count_opt() {
                Some(n) => *null_counts.entry(id).or_insert(0u64) += n,
                None => *ok = false,
            }
            let Type::Primitive(p) = field.field_type.as_ref() else {
                continue;
            };
            match bounds(p, stats) {
                Some((lo, hi)) => {
                    merge_bound(&mut lower, id, lo, true);
                    merge_bound(&mut upper, id, hi, false);
                }
                None => {
                    // A row group without bounds (all nulls, or unknown) leaves the file's
                    // bounds open only if it holds values.
                    if stats.null_count_opt() != Some(u64::try_from(col.num_values()).unwrap_or(0))
                    {
                        *ok = false;
                    }
                }
            }
        }
    }
    for (id, ok) in exact {
        if !ok {
            lower.remove(&id);
            upper.remove(&id);
            null_counts.remove(&id);
        }
    }
    let split_offsets: Vec<i64> = meta
        .row_groups()
        .iter()
        .filter_map(|rg| rg.file_offset())
        .collect();
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(location.to_owned())
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .record_count(u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0))
        .file_size_in_bytes(size)
        .column_sizes(column_sizes)
        .value_counts(value_counts)
        .null_value_counts(null_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(split_offsets))
        .partition_spec_id(spec_id)
        .build()
        .map_err(|e| ImportError::Io(format!("building the data file of {location}: {e}")))
}

/// Widens a file's bound of column `id` (its lower bound when `low`) to take in `value`.
fn merge_bound(map: &mut HashMap<i32, Datum>, id: i32, value: Datum, low: bool) {
    match map.get(&id) {
        Some(old) => {
            let replace = match old.partial_cmp(&value) {
                Some(std::cmp::Ordering::Greater) => low,
                Some(std::cmp::Ordering::Less) => !low,
                _ => false,
            };
            if replace {
                map.insert(id, value);
            }
        }
        None => {
            map.insert(id, value);
        }
    }
}

/// A row group's bounds as Iceberg values, for the types floe prunes on.
fn bounds(p: &PrimitiveType, stats: &Statistics) -> Option<(Datum, Datum)> {
    match (p, stats) {
        (PrimitiveType::Boolean, Statistics::Boolean(s)) => {
            Some((Datum::bool(*s.min_opt()?), Datum::bool(*s.max_opt()?)))
        }
        (PrimitiveType::Int, Statistics::Int32(s)) => {
            Some((Datum::int(*s.min_opt()?), Datum::int(*s.max_opt()?)))
        }
        (PrimitiveType::Date, Statistics::Int32(s)) => {
            Some((Datum::date(*s.min_opt()?), Datum::date(*s.max_opt()?)))
        }
        (PrimitiveType::Long, Statistics::Int64(s)) => {
            Some((Datum::long(*s.min_opt()?), Datum::long(*s.max_opt()?)))
        }
        (PrimitiveType::Timestamp, Statistics::Int64(s)) => Some((
            Datum::timestamp_micros(*s.min_opt()?),
            Datum::timestamp_micros(*s.max_opt()?),
        )),
        (PrimitiveType::Timestamptz, Statistics::Int64(s)) => Some((
            Datum::timestamptz_micros(*s.min_opt()?),
            Datum::timestamptz_micros(*s.max_opt()?),
        )),
        (PrimitiveType::Float, Statistics::Float(s)) => {
            let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
            (!lo.is_nan() && !hi.is_nan()).then(|| (Datum::float(lo), Datum::float(hi)))
        }
        (PrimitiveType::Double, Statistics::Double(s)) => {
            let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
            (!lo.is_nan() && !hi.is_nan()).then(|| (Datum::double(lo), Datum::double(hi)))
        }
        (PrimitiveType::String, Statistics::ByteArray(s)) => {
            // Only exact bounds: a truncated maximum is not a bound.
            if !s.min_is_exact() || !s.max_is_exact() {
                return None;
            }
            let lo = std::str::from_utf8(s.min_opt()?.data()).ok()?;
            let hi = std::str::from_utf8(s.max_opt()?.data()).ok()?;
            Some((Datum::string(lo), Datum::string(hi)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    use datafusion::parquet::file::properties::WriterProperties;
    use iceberg::spec::NestedField;

    use super::*;

    /// A file of two row groups: the bounds of a column span both, its counts add up, and
    /// a row group where the column is all nulls leaves its bounds as the other made them.
    #[test]
    fn statistics_span_every_row_group() {
        let arrow = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("extra", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            arrow.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(5), Some(-3), Some(40), None])),
                Arc::new(StringArray::from(vec![Some("m"), Some("b"), None, None])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut bytes = Vec::new();
        let mut w = ArrowWriter::try_new(&mut bytes, arrow, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
            .unwrap();
        assert_eq!(meta.num_row_groups(), 2);
        // The table has no `extra`: the file's column is left out of the entry.
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let size = bytes.len() as u64;
        let f = data_file(
            "memory:///t/data/f.parquet",
            size,
            &meta,
            &schema,
            Struct::empty(),
            0,
        )
        .unwrap();
        assert_eq!(f.record_count(), 4);
        assert_eq!(f.file_size_in_bytes(), size);
        assert_eq!(f.value_counts(), &HashMap::from([(1, 4), (2, 4)]));
        assert_eq!(f.null_value_counts(), &HashMap::from([(1, 1), (2, 2)]));
        assert_eq!(
            f.lower_bounds(),
            &HashMap::from([(1, Datum::long(-3)), (2, Datum::string("b"))])
        );
        assert_eq!(
            f.upper_bounds(),
            &HashMap::from([(1, Datum::long(40)), (2, Datum::string("m"))])
        );
        assert_eq!(f.split_offsets().map(<[i64]>::len), Some(2));
    }
}
