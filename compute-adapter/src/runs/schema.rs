//! A project's `bauplan.TableSchema` classes (found by the Python planner, never run):
//! the columns of an input's `projection_schema`, and the declared output schema that
//! `--strict` checks a model's output against (`-> Annotated[pyarrow.Table, S]`, or a SQL
//! model's `-- bauplan: output_schema = S`).

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaColumn {
    pub name: String,
    /// The field type as written (`Int64`, `bauplan.String`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub nullable: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct SchemaClass {
    #[serde(default)]
    bases: Vec<String>,
    #[serde(default)]
    columns: Vec<SchemaColumn>,
}

/// The schema classes of a project, by class name.
#[derive(Debug, Clone, Default)]
pub struct Schemas(BTreeMap<String, SchemaClass>);

impl Schemas {
    /// From the planner's `schemas` answer (entries that do not parse are left out).
    pub fn from_planner(map: &serde_json::Map<String, serde_json::Value>) -> Schemas {
        Schemas(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
                .collect(),
        )
    }

    pub fn contains(&self, class: &str) -> bool {
        self.0.contains_key(class)
    }

    /// The columns of `class`: its bases' first (in order), then its own; a column
    /// declared again replaces the inherited one in place.
    pub fn columns(&self, class: &str) -> Option<Vec<SchemaColumn>> {
        let mut out: Vec<SchemaColumn> = Vec::new();
        self.collect(class, &mut out, 0)?;
        Some(out)
    }

    fn collect(&self, class: &str, out: &mut Vec<SchemaColumn>, depth: usize) -> Option<()> {
        let found = self.0.get(class)?;
        if depth < 32 {
            for base in &found.bases {
                let _ = self.collect(base, out, depth + 1);
            }
        }
        for c in &found.columns {
            match out.iter_mut().find(|o| o.name == c.name) {
                Some(o) => *o = c.clone(),
                None => out.push(c.clone()),
            }
        }
        Some(())
    }
}

/// Whether an Arrow type is what a declared field type names; `None` when floe does not
/// know the name (then only the column's presence is checked).
fn type_matches(declared: &str, actual: &DataType) -> Option<bool> {
    let name = declared.rsplit('.').next().unwrap_or(declared);
    use DataType as T;
    let ok = match name {
        "Int8" => matches!(actual, T::Int8),
        "Int16" => matches!(actual, T::Int16),
        "Int32" => matches!(actual, T::Int32),
        "Int64" | "int" => matches!(actual, T::Int64),
        "UInt8" => matches!(actual, T::UInt8),
        "UInt16" => matches!(actual, T::UInt16),
        "UInt32" => matches!(actual, T::UInt32),
        "UInt64" => matches!(actual, T::UInt64),
        "Float16" => matches!(actual, T::Float16),
        "Float32" => matches!(actual, T::Float32),
        "Float64" | "Float" | "Double" | "float" => matches!(actual, T::Float64),
        "String" | "LargeString" | "Utf8" | "str" => {
            matches!(actual, T::Utf8 | T::LargeUtf8 | T::Utf8View)
        }
        "Binary" | "LargeBinary" | "bytes" => {
            matches!(actual, T::Binary | T::LargeBinary | T::BinaryView)
        }
        "Bool" | "Boolean" | "bool" => matches!(actual, T::Boolean),
        "Date" | "Date32" => matches!(actual, T::Date32),
        "Date64" => matches!(actual, T::Date64),
        n if n.starts_with("Timestamp") => {
            let T::Timestamp(unit, tz) = actual else {
                return Some(false);
            };
            let unit_ok = if n.contains("Micro") {
                *unit == TimeUnit::Microsecond
            } else if n.contains("Nano") {
                *unit == TimeUnit::Nanosecond
            } else if n.contains("Milli") {
                *unit == TimeUnit::Millisecond
            } else {
                true
            };
            unit_ok && (!n.ends_with("UTC") || tz.is_some())
        }
        n if n.starts_with("Decimal") => matches!(actual, T::Decimal128(..) | T::Decimal256(..)),
        _ => return None,
    };
    Some(ok)
}

/// How `schema` differs from the declared columns (empty: it matches). Column names
/// match regardless of case, as in SQL models.
pub fn differences(schema: &Schema, declared: &[SchemaColumn], class: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in declared {
        match schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(&c.name))
        {
            None => out.push(format!("column {} of {class} is missing", c.name)),
            Some(f) => {
                if type_matches(&c.kind, f.data_type()) == Some(false) {
                    out.push(format!(
                        "column {} is {} but {class} declares {}",
                        f.name(),
                        f.data_type(),
                        c.kind
                    ));
                }
            }
        }
    }
    for f in schema.fields() {
        if !declared
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(f.name()))
        {
            out.push(format!("column {} is not declared by {class}", f.name()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn inherited_columns_and_each_kind_of_difference() {
        let planner = serde_json::json!({
            "Base": {"bases": [], "columns": [{"name": "id", "type": "Int64"}]},
            "Trip": {"bases": ["Base"], "columns": [
                {"name": "at", "type": "TimestampMicroUTC"},
                {"name": "fare", "type": "bauplan.Float64", "nullable": true}]},
        });
        let schemas = Schemas::from_planner(planner.as_object().unwrap());
        let cols = schemas.columns("Trip").unwrap();
        assert_eq!(
            cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["id", "at", "fare"]
        );
        assert!(schemas.columns("Nope").is_none());
        let good = Schema::new(vec![
            Field::new("ID", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("fare", DataType::Float64, true),
        ]);
        assert!(differences(&good, &cols, "Trip").is_empty());
        let bad = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("extra", DataType::Int32, false),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]);
        let d = differences(&bad, &cols, "Trip");
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            d.iter()
                .any(|m| m.contains("column fare of Trip is missing"))
        );
        assert!(d.iter().any(|m| m.contains("extra is not declared")));
        assert!(d.iter().any(|m| m.starts_with("column id is Utf8")));
        assert!(d.iter().any(|m| m.starts_with("column at is Timestamp")));
    }
}
