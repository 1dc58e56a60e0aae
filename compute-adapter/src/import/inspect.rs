//! Reading and checking an import's sources: each file's format and Arrow schema (the
//! Parquet footer, read once, or CSV inference), whether it fits the table (every misfit per
//! file and column), whether it can be copied as it is, and whether it was imported before.
//! The table's name mapping is made here too, since it is what lets copied files be read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema as ArrowSchema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::ParquetMetaData;
use floe_catalog::{Catalog, CatalogError, LoadedTable, Principal};
use floe_commits::{ContentKey, RefSpec};
use iceberg::spec::{FormatVersion, MappedField, NameMapping, NestedFieldRef, Schema, Type};

use super::{
    FileAction, FileFormat, FileOutcome, IMPORTED_FILES_PROPERTY, ImportError, ImportFile,
    ImportMode, ImportRequest, io,
};
use crate::limits::CSV_INFER_ROWS;
use crate::types::{fits, iceberg_schema, shape, type_name};

/// A file as inspected.
pub(super) struct Inspected {
    pub(super) file: ImportFile,
    pub(super) format: FileFormat,
    pub(super) schema: SchemaRef,
    /// Parquet columns carry field ids already (rewritten, since they may not be ours).
    pub(super) has_field_ids: bool,
    pub(super) rows: Option<u64>,
    /// A Parquet file's footer, read once: a file copied as it is needs no second read.
    pub(super) footer: Option<Arc<ParquetMetaData>>,
}

/// Reads what an import checks: that the namespace exists, the table if it does, and
/// every source file's format and schema.
pub(super) fn read_sources(
    catalog: &Catalog,
    who: &Principal,
    spec: &RefSpec,
    ns: &ContentKey,
    key: &ContentKey,
    sources: Vec<ImportFile>,
) -> Result<(Option<LoadedTable>, Vec<Inspected>), ImportError> {
    match catalog.get_namespace(who, spec, ns) {
        Err(CatalogError::NamespaceNotFound(_)) => {
            return Err(ImportError::Invalid(format!(
                "namespace {ns} does not exist on {spec}; create it with `floe namespace create {ns} --ref {spec}`"
            )));
        }
        other => {
            other?;
        }
    }
    let existing = match catalog.load_table(who, spec, key) {
        Ok((_, t)) => Some(t),
        Err(CatalogError::TableNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let files = sources
        .into_iter()
        .map(inspect)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((existing, files))
}

fn detect(file: &ImportFile) -> Result<FileFormat, ImportError> {
    let lower = file.name.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".csv.txt") {
        return Ok(FileFormat::Csv);
    }
    let mut magic = [0u8; 4];
    let mut f = file.open().map_err(|e| io(&file.name, e))?;
    let is_parquet = std::io::Read::read_exact(&mut f, &mut magic).is_ok() && &magic == b"PAR1";
    if is_parquet || lower.ends_with(".parquet") || lower.ends_with(".pq") {
        Ok(FileFormat::Parquet)
    } else {
        Err(ImportError::Invalid(format!(
            "{}: floe imports Parquet (.parquet) and CSV (.csv) files; this is neither",
            file.name
        )))
    }
}

fn inspect(file: ImportFile) -> Result<Inspected, ImportError> {
    let format = detect(&file)?;
    let bad = |e: &dyn std::fmt::Display| {
        ImportError::Invalid(format!(
            "{}: not a readable {format:?} file: {e}",
            file.name
        ))
    };
    match format {
        FileFormat::Parquet => {
            let f = file.open().map_err(|e| io(&file.name, e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(&e))?;
            let descr = builder.metadata().file_metadata().schema_descr();
            let has_field_ids = descr
                .root_schema()
                .get_fields()
                .iter()
                .any(|f| f.get_basic_info().has_id());
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
            let schema = builder.schema().clone();
            Ok(Inspected {
                file,
                format,
                schema: Arc::new(strip_metadata(&schema)),
                has_field_ids,
                rows,
                footer: Some(builder.metadata().clone()),
            })
        }
        FileFormat::Csv => {
            let f = file.open().map_err(|e| io(&file.name, e))?;
            let (schema, _) = datafusion::arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(f, Some(CSV_INFER_ROWS))
                .map_err(|e| bad(&e))?;
            if schema.fields().is_empty() {
                return Err(bad(&"no header row"));
            }
            Ok(Inspected {
                file,
                format,
                schema: Arc::new(schema),
                has_field_ids: false,
                rows: None,
                footer: None,
            })
        }
    }
}

fn strip_metadata(schema: &ArrowSchema) -> ArrowSchema {
    ArrowSchema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
            .collect::<Vec<_>>(),
    )
}

/// Checks every file against the table's schema; lists every misfit.
pub(super) fn check_fit(files: &[Inspected], schema: &Schema) -> Result<(), ImportError> {
    let mut problems = Vec::new();
    for f in files {
        let mut seen = BTreeSet::new();
        for column in f.schema.fields() {
            seen.insert(column.name().clone());
            let Some(field) = schema.field_by_name(column.name()) else {
                problems.push(format!(
                    "{}: column {} is not in the table",
                    f.file.name,
                    column.name()
                ));
                continue;
            };
            match shape(column.data_type()) {
                Err(e) => problems.push(format!("{}: {e}", f.file.name)),
                Ok(t) if !fits(&t, &field.field_type) => problems.push(format!(
                    "{}: column {} is {} in the file and {} in the table",
                    f.file.name,
                    column.name(),
                    type_name(&t),
                    type_name(&field.field_type)
                )),
                Ok(_) => {}
            }
        }
        for field in schema.as_struct().fields() {
            if !seen.contains(&field.name) && field.required {
                problems.push(format!(
                    "{}: the table's required column {} is missing",
                    f.file.name, field.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ImportError::Incompatible(problems))
    }
}

/// Whether a file can be added as it is: Parquet, no field ids of its own, and every
/// column already in the Arrow type the table's readers expect.
pub(super) fn copyable(f: &Inspected, table_arrow: &ArrowSchema) -> bool {
    f.format == FileFormat::Parquet
        && !f.has_field_ids
        && f.schema.fields().iter().all(|c| {
            table_arrow.field_with_name(c.name()).is_ok_and(|t| {
                // A required column must be checked for nulls: only a rewrite does.
                t.is_nullable() && strip_nested(t.data_type()) == strip_nested(c.data_type())
            })
        })
}

/// A type without the field metadata iceberg puts on nested fields.
fn strip_nested(t: &DataType) -> String {
    // The Debug text without metadata maps is enough to compare shapes; metadata only
    // ever appears in `metadata: {...}` parts.
    let text = format!("{t:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("metadata: {") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let mut depth = 0;
        let mut end = after.len();
        for (j, ch) in after.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The name mapping of a schema (top-level and nested fields by name), keeping every name
/// an `existing` mapping gave a field id: files copied in before a rename still find
/// their columns under the old name.
pub(super) fn name_mapping(schema: &Schema, existing: Option<&str>) -> String {
    fn known(v: &serde_json::Value, names: &mut HashMap<i32, Vec<String>>) {
        for field in v.as_array().into_iter().flatten() {
            if let Some(id) = field["field-id"]
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
            {
                let list = names.entry(id).or_default();
                for n in field["names"].as_array().into_iter().flatten() {
                    if let Some(n) = n.as_str()
                        && !list.iter().any(|k| k == n)
                    {
                        list.push(n.to_owned());
                    }
                }
            }
            known(&field["fields"], names);
        }
    }
    fn mapped(fields: &[NestedFieldRef], names: &HashMap<i32, Vec<String>>) -> Vec<MappedField> {
        fields
            .iter()
            .map(|f| {
                let mut all = vec![f.name.clone()];
                for n in names.get(&f.id).into_iter().flatten() {
                    if !all.contains(n) {
                        all.push(n.clone());
                    }
                }
                MappedField::new(
                    Some(f.id),
                    all,
                    match f.field_type.as_ref() {
                        Type::Struct(s) => mapped(s.fields(), names),
                        Type::List(l) => mapped(std::slice::from_ref(&l.element_field), names),
                        Type::Map(m) => {
                            mapped(&[m.key_field.clone(), m.value_field.clone()], names)
                        }
                        Type::Primitive(_) => Vec::new(),
                    },
                )
            })
            .collect()
    }
    let mut names = HashMap::new();
    if let Some(text) = existing
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
    {
        known(&v, &mut names);
    }
    serde_json::to_string(&NameMapping::new(mapped(
        schema.as_struct().fields(),
        &names,
    )))
    .expect("a name mapping serializes")
}

pub(super) fn refuse_duplicates(
    table: &LoadedTable,
    files: &[Inspected],
    key: &ContentKey,
) -> Result<(), ImportError> {
    for snapshot in table.metadata.snapshots() {
        let Some(listed) = snapshot
            .summary()
            .additional_properties
            .get(IMPORTED_FILES_PROPERTY)
        else {
            continue;
        };
        for f in files {
            if listed.split(',').any(|h| h == f.file.blake3) {
                return Err(ImportError::Duplicate {
                    file: f.file.name.clone(),
                    table: key.to_string(),
                    snapshot: snapshot.snapshot_id(),
                });
            }
        }
    }
    Ok(())
}

/// What an import will do, once its files are checked against the table.
pub(super) struct Plan {
    pub(super) mode: ImportMode,
    /// The table's schema after the import (the file's own when it creates the table).
    pub(super) schema: Schema,
    pub(super) table_arrow: ArrowSchema,
    /// How each file goes in (`copy` or `convert`); rows and locations come later.
    pub(super) outcomes: Vec<FileOutcome>,
}

/// Chooses the mode, the table's schema and each file's action, and refuses what does not
/// fit: a mode that does not match the table, a misfit per file and column, the same bytes
/// twice, a file already imported (the last two unless forced).
pub(super) fn plan(
    request: &ImportRequest,
    existing: Option<&LoadedTable>,
    files: &[Inspected],
) -> Result<Plan, ImportError> {
    let mode = match (request.mode, &existing) {
        (None, None) => ImportMode::Create,
        (None, Some(_)) => {
            return Err(ImportError::Invalid(format!(
                "table {} already exists on {}; pass --mode append to add the rows or --mode replace to replace them",
                request.table, request.branch
            )));
        }
        (Some(ImportMode::Create), Some(_)) => {
            return Err(ImportError::Catalog(CatalogError::TableAlreadyExists(
                request.table.clone(),
            )));
        }
        (Some(ImportMode::Append | ImportMode::Replace), None) => {
            return Err(ImportError::Invalid(format!(
                "table {} does not exist on {}; leave out --mode (or pass --mode create) to create it",
                request.table, request.branch
            )));
        }
        (Some(mode), _) => mode,
    };
    let schema = match existing {
        Some(t) => {
            refuse_format(t, &request.table)?;
            t.metadata.current_schema().as_ref().clone()
        }
        None => iceberg_schema(&files[0].schema).map_err(|errors| {
            ImportError::Incompatible(
                errors
                    .into_iter()
                    .map(|e| format!("{}: {e}", files[0].file.name))
                    .collect(),
            )
        })?,
    };
    check_fit(files, &schema)?;
    if !request.force {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for f in files {
            if let Some(first) = seen.insert(f.file.blake3.as_str(), f.file.name.as_str()) {
                return Err(ImportError::Invalid(format!(
                    "{} and {first} hold the same bytes; import one of them, or pass --force",
                    f.file.name
                )));
            }
        }
    }
    if let (Some(t), false) = (existing, request.force) {
        refuse_duplicates(t, files, &request.table)?;
    }
    // Files of a partitioned table are split by partition: always rewritten.
    let partitioned =
        existing.is_some_and(|t| !t.metadata.default_partition_spec().is_unpartitioned());
    let table_arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    let outcomes: Vec<FileOutcome> = files
        .iter()
        .map(|f| FileOutcome {
            name: f.file.name.clone(),
            format: f.format,
            action: if !partitioned && copyable(f, &table_arrow) {
                FileAction::Copy
            } else {
                FileAction::Convert
            },
            rows: f.rows.unwrap_or(0),
            bytes: f.file.size,
            blake3: f.file.blake3.clone(),
            locations: Vec::new(),
        })
        .collect();
    Ok(Plan {
        mode,
        schema,
        table_arrow,
        outcomes,
    })
}

/// Refuses a target table floe cannot import into, or a file already imported into it
/// (unless forced): what `plan` checked before the run's fork, checked again at the fork.
pub(super) fn check_target(
    table: &LoadedTable,
    files: &[Inspected],
    key: &ContentKey,
    force: bool,
) -> Result<(), ImportError> {
    refuse_format(table, key)?;
    if !force {
        refuse_duplicates(table, files, key)?;
    }
    Ok(())
}

/// Refuses a table of a format version floe does not write.
fn refuse_format(table: &LoadedTable, key: &ContentKey) -> Result<(), ImportError> {
    if table.metadata.format_version() == FormatVersion::V2 {
        return Ok(());
    }
    Err(ImportError::Invalid(format!(
        "table {key} is format-version {}; floe imports into format-version 2 tables",
        table.metadata.format_version()
    )))
}

#[cfg(test)]
mod tests {
    use iceberg::spec::PrimitiveType;

    use super::*;

    #[test]
    fn a_name_mapping_keeps_the_names_files_were_copied_under() {
        let schema = Schema::builder()
            .with_fields(vec![Arc::new(iceberg::spec::NestedField::optional(
                1,
                "total",
                Type::Primitive(PrimitiveType::Long),
            ))])
            .build()
            .unwrap();
        let old = r#"[{"field-id":1,"names":["amount"]}]"#;
        let mapping: serde_json::Value =
            serde_json::from_str(&name_mapping(&schema, Some(old))).unwrap();
        assert_eq!(mapping[0]["names"], serde_json::json!(["total", "amount"]));
        let fresh: serde_json::Value = serde_json::from_str(&name_mapping(&schema, None)).unwrap();
        assert_eq!(fresh[0]["names"], serde_json::json!(["total"]));
    }
}
