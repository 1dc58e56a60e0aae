//! Arrow types as Iceberg types (DESIGN §5 "Types written to Iceberg", format v2).
//!
//! timestamp[ns] becomes timestamp(us) by truncation; large and view strings and binaries
//! become string and binary; unsigned integers the next signed width (uint64 into long,
//! checked value by value when written); a dictionary its value type; the null type is
//! refused, naming the column. Every imported column is optional, so later files may
//! hold nulls where earlier ones did not.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use crate::limits::DECIMAL_PRECISION_MAX;

/// Why a column has no Iceberg type.
pub fn type_error(column: &str, t: &DataType, why: &str) -> String {
    format!("column {column} ({t}): {why}")
}

/// The Iceberg type of an Arrow type; nested fields take ids from `next_id`.
pub fn iceberg_type(column: &str, t: &DataType, next_id: &mut i32) -> Result<Type, String> {
    let p = |p: PrimitiveType| Ok(Type::Primitive(p));
    match t {
        DataType::Null => Err(type_error(
            column,
            t,
            "the column holds only nulls (Arrow's null type); give it a type in the file",
        )),
        DataType::Boolean => p(PrimitiveType::Boolean),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            p(PrimitiveType::Int)
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => p(PrimitiveType::Long),
        DataType::Float16 | DataType::Float32 => p(PrimitiveType::Float),
        DataType::Float64 => p(PrimitiveType::Double),
        DataType::Decimal32(precision, scale)
        | DataType::Decimal64(precision, scale)
        | DataType::Decimal128(precision, scale)
        | DataType::Decimal256(precision, scale) => {
            if *precision > DECIMAL_PRECISION_MAX || *scale < 0 {
                return Err(type_error(
                    column,
                    t,
                    &format!(
                        "Iceberg decimals have a precision up to {DECIMAL_PRECISION_MAX} and a scale of 0 or more"
                    ),
                ));
            }
            p(PrimitiveType::Decimal {
                precision: u32::from(*precision),
                scale: u32::try_from(*scale).unwrap_or_default(),
            })
        }
        DataType::Date32 | DataType::Date64 => p(PrimitiveType::Date),
        DataType::Time32(_) | DataType::Time64(_) => p(PrimitiveType::Time),
        DataType::Timestamp(_, None) => p(PrimitiveType::Timestamp),
        DataType::Timestamp(_, Some(_)) => p(PrimitiveType::Timestamptz),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => p(PrimitiveType::String),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => p(PrimitiveType::Binary),
        DataType::FixedSizeBinary(n) => p(PrimitiveType::Fixed(u64::try_from(*n).unwrap_or(0))),
        DataType::Dictionary(_, value) => iceberg_type(column, value, next_id),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let id = take(next_id);
            let element = iceberg_type(&format!("{column}.element"), f.data_type(), next_id)?;
            Ok(Type::List(ListType::new(Arc::new(
                NestedField::list_element(id, element, false),
            ))))
        }
        DataType::Struct(fields) => {
            let fields = struct_fields(column, fields.iter().map(|f| f.as_ref()), next_id)?;
            Ok(Type::Struct(StructType::new(fields)))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(type_error(column, t, "a map's entries must be a struct"));
            };
            let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
                return Err(type_error(
                    column,
                    t,
                    "a map's entries need a key and a value",
                ));
            };
            let key_id = take(next_id);
            let value_id = take(next_id);
            let key = iceberg_type(&format!("{column}.key"), k.data_type(), next_id)?;
            let value = iceberg_type(&format!("{column}.value"), v.data_type(), next_id)?;
            Ok(Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(key_id, key)),
                Arc::new(NestedField::map_value_element(value_id, value, false)),
            )))
        }
        other => Err(type_error(
            column,
            other,
            "this Arrow type has no Iceberg type",
        )),
    }
}

fn take(next_id: &mut i32) -> i32 {
    let id = *next_id;
    *next_id += 1;
    id
}

fn struct_fields<'a>(
    prefix: &str,
    fields: impl Iterator<Item = &'a Field>,
    next_id: &mut i32,
) -> Result<Vec<NestedFieldRef>, String> {
    // Ids of one level first, then the levels below (as Iceberg writers number them).
    let fields: Vec<&Field> = fields.collect();
    let ids: Vec<i32> = fields.iter().map(|_| take(next_id)).collect();
    let mut out = Vec::with_capacity(fields.len());
    for (f, id) in fields.into_iter().zip(ids) {
        let name = if prefix.is_empty() {
            f.name().clone()
        } else {
            format!("{prefix}.{}", f.name())
        };
        let t = iceberg_type(&name, f.data_type(), next_id)?;
        out.push(Arc::new(NestedField::optional(id, f.name(), t)));
    }
    Ok(out)
}

/// The Iceberg schema of an Arrow schema (ids from 1), or every column that has none.
pub fn iceberg_schema(arrow: &ArrowSchema) -> Result<Schema, Vec<String>> {
    let mut next_id = 1;
    let mut errors = Vec::new();
    let mut fields = Vec::new();
    let ids: Vec<i32> = arrow.fields().iter().map(|_| take(&mut next_id)).collect();
    for (f, id) in arrow.fields().iter().zip(ids) {
        match iceberg_type(f.name(), f.data_type(), &mut next_id) {
            Ok(t) => fields.push(Arc::new(NestedField::optional(id, f.name(), t))),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(|e| vec![e.to_string()])
}

/// The Iceberg type of an Arrow type with throwaway ids: for comparing a file's column
/// with a table's.
pub fn shape(t: &DataType) -> Result<Type, String> {
    iceberg_type("", t, &mut 1_000_000)
}

/// True when two Iceberg types are the same, nested field ids aside.
pub fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::List(x), Type::List(y)) => {
            same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        (Type::Map(x), Type::Map(y)) => {
            same_shape(&x.key_field.field_type, &y.key_field.field_type)
                && same_shape(&x.value_field.field_type, &y.value_field.field_type)
        }
        (Type::Struct(x), Type::Struct(y)) => {
            x.fields().len() == y.fields().len()
                && x.fields()
                    .iter()
                    .zip(y.fields())
                    .all(|(f, g)| f.name == g.name && same_shape(&f.field_type, &g.field_type))
        }
        _ => false,
    }
}

/// Whether a file's column type may be written into a table column of type `table`
/// (equal, or a safe promotion: int to long, float to double).
pub fn fits(file: &Type, table: &Type) -> bool {
    same_shape(file, table)
        || matches!(
            (file, table),
            (
                Type::Primitive(PrimitiveType::Int),
                Type::Primitive(PrimitiveType::Long)
            ) | (
                Type::Primitive(PrimitiveType::Float),
                Type::Primitive(PrimitiveType::Double)
            )
        )
}

/// The Iceberg type name people read in errors and schemas.
pub fn type_name(t: &Type) -> String {
    match t {
        Type::Primitive(p) => p.to_string(),
        Type::List(l) => format!("list<{}>", type_name(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{}, {}>",
            type_name(&m.key_field.field_type),
            type_name(&m.value_field.field_type)
        ),
        Type::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .iter()
                .map(|f| format!("{}: {}", f.name, type_name(&f.field_type)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn arrow_types_map_as_the_design_says() {
        let cases = [
            (DataType::Timestamp(TimeUnit::Nanosecond, None), "timestamp"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamptz",
            ),
            (DataType::LargeUtf8, "string"),
            (DataType::LargeBinary, "binary"),
            (DataType::UInt8, "int"),
            (DataType::UInt16, "int"),
            (DataType::UInt32, "long"),
            (DataType::UInt64, "long"),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                "string",
            ),
            (DataType::Decimal128(10, 2), "decimal(10, 2)"),
        ];
        for (arrow, iceberg) in cases {
            assert_eq!(type_name(&shape(&arrow).unwrap()), iceberg, "{arrow}");
        }
        let err = iceberg_schema(&ArrowSchema::new(vec![Field::new(
            "n",
            DataType::Null,
            true,
        )]))
        .unwrap_err();
        assert!(err[0].starts_with("column n "), "{err:?}");
        assert!(fits(
            &shape(&DataType::Int32).unwrap(),
            &shape(&DataType::Int64).unwrap()
        ));
        assert!(!fits(
            &shape(&DataType::Int64).unwrap(),
            &shape(&DataType::Int32).unwrap()
        ));
    }
}
