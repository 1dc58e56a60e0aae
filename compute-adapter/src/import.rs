//! Imports (DESIGN §5): Parquet or CSV files become an Iceberg table, on a temporary
//! branch, landed by the landing rule, so a failed or conflicting import changes nothing.
//!
//! 1. Inspect: each file's Arrow schema (the Parquet footer, or CSV inference), its
//!    Iceberg schema, and whether it fits the table (per file and column).
//! 2. Refuse a file already imported into the table (its BLAKE3 is in a snapshot summary's
//!    `floe.import.files`) unless forced.
//! 3. Start a run: its record and its `floe-run/<id>` branch forked from the target head.
//! 4. On the run branch: create the table (mode create), then put the files in the table's
//!    `data/` folder. A Parquet file whose types need no conversion is copied as it is
//!    (fsynced; read through the table's name mapping); any other file is rewritten as
//!    Parquet with field ids. Statistics come from each written file's footer.
//! 5. Commit one snapshot (append, or an overwrite for replace) with floe's own manifest
//!    and manifest-list writer, then land the table on the target as one commit.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
#[cfg(test)]
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::source::ImportFile;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Schema as ArrowSchema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::statistics::Statistics;
use floe_catalog::{
    Authored, Catalog, CatalogError, Landing, LoadedTable, Principal, RunKind, RunRecord,
    TableChange, TableCreate,
};
use floe_commits::{ContentKey, RefSpec};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::PartitionKey;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, FormatVersion, ManifestContentType,
    ManifestListWriter, ManifestWriterBuilder, MappedField, NameMapping, NestedFieldRef, Operation,
    PrimitiveType, Schema, Snapshot, SnapshotReference, SnapshotRetention, Struct, Summary, Type,
};
use iceberg::{TableRequirement, TableUpdate};
use serde::Serialize;

use crate::types::{fits, iceberg_schema, shape, type_name};

/// The snapshot summary property listing the BLAKE3 of each file an import added.
pub const IMPORTED_FILES_PROPERTY: &str = "floe.import.files";
const NAME_MAPPING_PROPERTY: &str = "schema.name-mapping.default";
/// Rows CSV schema inference reads.
const CSV_INFER_ROWS: usize = 10_000;
const BATCH_ROWS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportMode {
    Create,
    Append,
    Replace,
}

impl ImportMode {
    pub fn parse(text: &str) -> Option<ImportMode> {
        match text {
            "create" => Some(ImportMode::Create),
            "append" => Some(ImportMode::Append),
            "replace" => Some(ImportMode::Replace),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    Parquet,
    Csv,
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub table: ContentKey,
    /// The branch to land on.
    pub branch: RefSpec,
    /// `None`: create when the table is absent, else an error naming append or replace.
    pub mode: Option<ImportMode>,
    pub dry_run: bool,
    pub force: bool,
    pub files: Vec<ImportFile>,
    /// Recorded with the landing commit, so a retry of the request finds this import.
    pub idempotency: Option<floe_catalog::IdemRequest>,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileOutcome {
    pub name: String,
    pub format: FileFormat,
    /// `copy` (added as it is) or `convert` (rewritten as Parquet).
    pub action: &'static str,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
    /// Where the data now lives: one file, or one per partition (none on a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
}

/// The answer of an import (and of a dry run).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportOutcome {
    pub table: String,
    pub branch: String,
    pub mode: ImportMode,
    pub dry_run: bool,
    /// The table's schema after the import (Iceberg JSON).
    pub schema: serde_json::Value,
    pub files: Vec<FileOutcome>,
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    /// The landing commit on the branch (64 hex characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// What went wrong after the import landed (its run's bookkeeping): the data is on
    /// the branch all the same.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ImportOutcome {
    /// The answer of a landed import, rebuilt for a retry of its request: the answer its run
    /// stored before landing, with the run's record and landing commit as they are now
    /// (`commit` from the idempotency record when the run's record has not caught up).
    pub fn replayed(
        record: &RunRecord,
        stored: Option<serde_json::Value>,
        commit: Option<floe_commits::Hash>,
    ) -> serde_json::Value {
        let mut answer = stored.unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = answer.as_object_mut() {
            map.insert(
                "run".to_owned(),
                serde_json::to_value(record).expect("a run record serializes"),
            );
            if let Some(commit) = record.landed.clone().or(commit.map(|c| c.to_hex())) {
                map.insert("commit".to_owned(), serde_json::Value::String(commit));
            }
        }
        answer
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The request or a file is wrong; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// Files that do not fit, per file and column.
    #[error("{}", .0.join("; "))]
    Incompatible(Vec<String>),
    #[error(
        "{file} was already imported into {table} (snapshot {snapshot}); pass --force to import it again"
    )]
    Duplicate {
        file: String,
        table: String,
        snapshot: i64,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The import ran and failed: its run is failed and sealed, the target unchanged.
    #[error("import run {run} failed and changed nothing: {source}{}", record_error.as_ref().map(|e| format!("; {e}")).unwrap_or_default())]
    RunFailed {
        run: String,
        #[source]
        source: Box<ImportError>,
        /// Marking the run failed did not work (it is settled later).
        record_error: Option<String>,
    },
    /// Reading or writing files failed on the server.
    #[error("{0}")]
    Io(String),
}

impl ImportError {
    /// The error a failed run carries, for its status.
    pub fn root(&self) -> &ImportError {
        match self {
            ImportError::RunFailed { source, .. } => source.root(),
            other => other,
        }
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::Io(format!("{what}: {e}"))
}

/// A file as inspected.
struct Inspected {
    file: ImportFile,
    format: FileFormat,
    schema: SchemaRef,
    /// Parquet columns carry field ids already (rewritten, since they may not be ours).
    has_field_ids: bool,
    rows: Option<u64>,
    /// A Parquet file's footer, read once: a file copied as it is needs no second read.
    footer: Option<Arc<ParquetMetaData>>,
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
fn check_fit(files: &[Inspected], schema: &Schema) -> Result<(), ImportError> {
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
fn copyable(f: &Inspected, table_arrow: &ArrowSchema) -> bool {
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
fn name_mapping(schema: &Schema, existing: Option<&str>) -> String {
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

/// Called on the run branch's work just before it lands (tests race a writer there).
pub type LandingHook = Arc<dyn Fn(&Catalog) + Send + Sync>;

/// One device flush an import makes of what it wrote, reported in order (tests of the
/// barrier order: every file and every folder it created is durable before the landing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// A data file's contents (fsync of the file).
    File(PathBuf),
    /// A folder's entries (fsync of the folder).
    Folder(PathBuf),
}

/// Observes an import's flushes.
pub type SyncHook = Arc<dyn Fn(Synced) + Send + Sync>;

/// Runs imports over one catalog.
#[derive(Clone)]
pub struct Importer {
    catalog: Catalog,
    before_landing: Option<LandingHook>,
    synced: Option<SyncHook>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer").finish_non_exhaustive()
    }
}

impl Importer {
    pub fn new(catalog: Catalog) -> Importer {
        Importer {
            catalog,
            before_landing: None,
            synced: None,
        }
    }

    /// Reports every fsync of the imports' files and folders to `hook`.
    pub fn with_sync_hook(mut self, hook: SyncHook) -> Importer {
        self.synced = Some(hook);
        self
    }

    /// Runs `hook` after an import's work and before its landing.
    pub fn with_landing_hook(mut self, hook: LandingHook) -> Importer {
        self.before_landing = Some(hook);
        self
    }

    /// Imports (or, on a dry run, plans) the request's files into its table.
    pub async fn run(
        &self,
        principal: &Principal,
        request: ImportRequest,
    ) -> Result<ImportOutcome, ImportError> {
        if request.files.is_empty() {
            return Err(ImportError::Invalid(
                "name at least one file to import".to_owned(),
            ));
        }
        let Some(namespace) = request.table.parent() else {
            return Err(ImportError::Invalid(format!(
                "name the table as namespace.table, got {}",
                request.table
            )));
        };
        let catalog = self.catalog.clone();
        let who = principal.clone();
        let spec = request.branch.clone();
        let key = request.table.clone();
        let ns = namespace.clone();
        let (existing, files) = blocking(move || {
            match catalog.get_namespace(&who, &spec, &ns) {
                Err(CatalogError::NamespaceNotFound(_)) => {
                    return Err(ImportError::Invalid(format!(
                        "namespace {ns} does not exist on {spec}; create it with `floe namespace create {ns} --ref {spec}`"
                    )));
                }
                other => {
                    other?;
                }
            }
            let existing = match catalog.load_table(&who, &spec, &key) {
                Ok((_, t)) => Some(t),
                Err(CatalogError::TableNotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let files = request
                .files
                .iter()
                .cloned()
                .map(inspect)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((existing, files))
        })
        .await?;
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
        let schema = match &existing {
            Some(t) => {
                if t.metadata.format_version() != FormatVersion::V2 {
                    return Err(ImportError::Invalid(format!(
                        "table {} is format-version {}; floe imports into format-version 2 tables",
                        request.table,
                        t.metadata.format_version()
                    )));
                }
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
        check_fit(&files, &schema)?;
        if !request.force {
            let mut seen: HashMap<&str, &str> = HashMap::new();
            for f in &files {
                if let Some(first) = seen.insert(f.file.blake3.as_str(), f.file.name.as_str()) {
                    return Err(ImportError::Invalid(format!(
                        "{} and {first} hold the same bytes; import one of them, or pass --force",
                        f.file.name
                    )));
                }
            }
        }
        if let (Some(t), false) = (&existing, request.force) {
            refuse_duplicates(t, &files, &request.table)?;
        }
        // Files of a partitioned table are split by partition: always rewritten.
        let partitioned = existing
            .as_ref()
            .is_some_and(|t| !t.metadata.default_partition_spec().is_unpartitioned());
        let table_arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| ImportError::Invalid(e.to_string()))?;
        let schema_json = serde_json::to_value(&schema).expect("a schema serializes");
        let mut outcomes: Vec<FileOutcome> = files
            .iter()
            .map(|f| FileOutcome {
                name: f.file.name.clone(),
                format: f.format,
                action: if !partitioned && copyable(f, &table_arrow) {
                    "copy"
                } else {
                    "convert"
                },
                rows: f.rows.unwrap_or(0),
                bytes: f.file.size,
                blake3: f.file.blake3.clone(),
                locations: Vec::new(),
            })
            .collect();
        let branch_name = request.branch.to_string();
        if request.dry_run {
            return Ok(ImportOutcome {
                table: request.table.to_string(),
                branch: branch_name,
                mode,
                dry_run: true,
                schema: schema_json,
                rows: outcomes.iter().map(|o| o.rows).sum(),
                files: outcomes,
                run: None,
                commit: None,
                snapshot_id: None,
                warnings: Vec::new(),
            });
        }
        let source = format!(
            "import {} file{} into {} ({})",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            request.table,
            files
                .iter()
                .map(|f| f.file.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
                .chars()
                .take(500)
                .collect::<String>()
        );
        let catalog = self.catalog.clone();
        let who = principal.clone();
        let spec = request.branch.clone();
        let (record, executor) =
            blocking(move || Ok(catalog.start_run(&who, &spec, RunKind::Import, source)?)).await?;
        let work = Work {
            catalog: self.catalog.clone(),
            executor: executor.clone(),
            record: record.clone(),
            table: request.table.clone(),
            namespace,
            mode,
            schema,
            table_arrow: Arc::new(table_arrow),
            before_landing: self.before_landing.clone(),
            synced: self.synced.clone(),
            idempotency: request.idempotency.clone(),
            force: request.force,
            answer: ImportOutcome {
                table: request.table.to_string(),
                branch: branch_name.clone(),
                mode,
                dry_run: false,
                schema: schema_json.clone(),
                rows: 0,
                files: Vec::new(),
                run: None,
                commit: None,
                snapshot_id: None,
                warnings: Vec::new(),
            },
        };
        let landed = work.run(&files, &mut outcomes).await;
        match landed {
            Ok((landed, snapshot_id)) => {
                let run = self.catalog.run_record(&record.id).ok().flatten();
                Ok(ImportOutcome {
                    table: request.table.to_string(),
                    branch: branch_name,
                    mode,
                    dry_run: false,
                    schema: schema_json,
                    rows: outcomes.iter().map(|o| o.rows).sum(),
                    files: outcomes,
                    run,
                    commit: Some(landed.commit.to_hex()),
                    snapshot_id: Some(snapshot_id),
                    warnings: landed.bookkeeping_error.into_iter().collect(),
                })
            }
            Err(e) => {
                let catalog = self.catalog.clone();
                let failed = record.clone();
                let message = e.to_string();
                // The client hears of a record that could not say so, not only the log.
                let record_error = blocking(move || Ok(catalog.fail_run(&failed, &message)?))
                    .await
                    .err()
                    .map(|e| {
                        format!(
                            "its record could not say so yet ({e}); the server settles it on restart"
                        )
                    });
                Err(ImportError::RunFailed {
                    run: record.id,
                    source: Box::new(e),
                    record_error,
                })
            }
        }
    }
}

fn refuse_duplicates(
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImportError::Io(format!("an import task failed: {e}")))?
}

/// One import's work on its run branch.
struct Work {
    catalog: Catalog,
    executor: Principal,
    record: RunRecord,
    table: ContentKey,
    namespace: ContentKey,
    mode: ImportMode,
    schema: Schema,
    table_arrow: SchemaRef,
    before_landing: Option<LandingHook>,
    synced: Option<SyncHook>,
    idempotency: Option<floe_catalog::IdemRequest>,
    force: bool,
    /// The answer so far (files, rows and the snapshot are filled in before landing).
    answer: ImportOutcome,
}

impl Work {
    fn branch(&self) -> RefSpec {
        RefSpec::parse(self.record.branch().as_str()).expect("a run branch is a ref spec")
    }

    async fn run(
        &self,
        files: &[Inspected],
        outcomes: &mut [FileOutcome],
    ) -> Result<(floe_catalog::Landed, i64), ImportError> {
        let catalog = self.catalog.clone();
        let executor = self.executor.clone();
        let branch = self.branch();
        let key = self.table.clone();
        let namespace = self.namespace.clone();
        let create = (self.mode == ImportMode::Create).then(|| TableCreate {
            name: key.elements().last().unwrap_or_default().to_owned(),
            location: None,
            schema: self.schema.clone(),
            partition_spec: None,
            write_order: None,
            stage_create: false,
            properties: HashMap::from([(
                NAME_MAPPING_PROPERTY.to_owned(),
                name_mapping(&self.schema, None),
            )]),
        });
        let table = blocking(move || {
            if let Some(create) = create {
                catalog.create_table(
                    &executor,
                    &branch,
                    &namespace,
                    create,
                    &Authored::default(),
                    None,
                )?;
            }
            Ok(catalog.load_table(&executor, &branch, &key)?.1)
        })
        .await?;
        if self.mode != ImportMode::Create
            && table.metadata.current_schema().as_struct() != self.schema.as_struct()
        {
            // A concurrent change, not this request's fault: a retry runs it again (never a
            // recorded answer).
            return Err(ImportError::Catalog(CatalogError::Contention(format!(
                "the schema of {} (it changed while the import started)",
                self.table
            ))));
        }
        if self.mode != ImportMode::Create {
            // What was checked before the fork, again at the fork.
            self.check_target(&table, files)?;
        }
        let mut written = Vec::new();
        let committed = self
            .write_and_commit(&table, files, outcomes, &mut written)
            .await;
        let snapshot_id = match committed {
            Ok(id) => id,
            Err(e) => {
                // Nothing refers to these files: remove them.
                for path in written {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        };
        let catalog = self.catalog.clone();
        let executor = self.executor.clone();
        let record = self.record.clone();
        let key = self.table.clone();
        let mode = self.mode;
        let hook = self.before_landing.clone();
        let idempotency = self.idempotency.clone();
        let answer = ImportOutcome {
            rows: outcomes.iter().map(|o| o.rows).sum(),
            files: outcomes.to_vec(),
            snapshot_id: Some(snapshot_id),
            ..self.answer.clone()
        };
        let answer = serde_json::to_value(&answer).expect("an import outcome serializes");
        let landed = blocking(move || {
            if let Some(hook) = hook {
                hook(&catalog);
            }
            let landing = Landing {
                outputs: vec![key.clone()],
                inputs: Vec::new(),
                message: format!(
                    "import into {key} ({}; run {})",
                    match mode {
                        ImportMode::Create => "create",
                        ImportMode::Append => "append",
                        ImportMode::Replace => "replace",
                    },
                    record.id
                ),
                idempotency,
                answer: Some(answer),
            };
            Ok(catalog.land_run(&executor, &record, &landing, &Authored::default())?)
        })
        .await?;
        Ok((landed, snapshot_id))
    }

    /// Refuses a target table floe cannot import into, or a file already imported into it.
    fn check_target(&self, table: &LoadedTable, files: &[Inspected]) -> Result<(), ImportError> {
        if table.metadata.format_version() != FormatVersion::V2 {
            return Err(ImportError::Invalid(format!(
                "table {} is format-version {}; floe imports into format-version 2 tables",
                self.table,
                table.metadata.format_version()
            )));
        }
        if !self.force {
            refuse_duplicates(table, files, &self.table)?;
        }
        Ok(())
    }

    /// Puts the files into the table's folder (each path in `written` before it is
    /// written) and commits one snapshot of them on the run branch.
    async fn write_and_commit(
        &self,
        table: &LoadedTable,
        files: &[Inspected],
        outcomes: &mut [FileOutcome],
        written: &mut Vec<PathBuf>,
    ) -> Result<i64, ImportError> {
        let location = table.metadata.location().trim_end_matches('/').to_owned();
        let spec = table.metadata.default_partition_spec().clone();
        let spec_id = spec.spec_id();
        let split = (!spec.is_unpartitioned())
            .then(|| (table.metadata.current_schema().clone(), spec.clone()));
        let mut data_files = Vec::new();
        let mut folders = BTreeSet::new();
        for (f, outcome) in files.iter().zip(outcomes.iter_mut()) {
            let copy = outcome.action == "copy";
            let source = f.file.clone();
            let format = f.format;
            let from = f.schema.clone();
            let to = self.table_arrow.clone();
            let name = f.file.name.clone();
            let catalog = self.catalog.clone();
            let location = location.clone();
            let split = split.clone();
            // Where one output file goes: `data/`, or `data/<partition path>/`.
            let place =
                move |key: Option<&PartitionKey>| -> Result<(String, PathBuf), ImportError> {
                    let folder = match key {
                        Some(k) => format!("{location}/data/{}", partition_folder(&k.to_path())),
                        None => format!("{location}/data"),
                    };
                    let target = format!(
                        "{folder}/{}-{}.parquet",
                        uuid::Uuid::now_v7(),
                        sanitize(&name)
                    );
                    let path = catalog.warehouse_path(&target)?;
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| io("creating the data folder", e))?;
                    }
                    Ok((target, path))
                };
            let name = f.file.name.clone();
            // Each output: location, path, partition, size and footer.
            let pieces = if let (true, Some(footer)) = (copy, f.footer.clone()) {
                let (target, path) = place(None)?;
                written.push(path.clone());
                let to = path.clone();
                let synced = self.synced.clone();
                let size = blocking(move || {
                    copy_file(&source, &to, synced.as_ref()).map_err(|e| io(&name, e))
                })
                .await?;
                vec![(target, path, Struct::empty(), size, footer)]
            } else {
                let synced = self.synced.clone();
                let pieces = blocking(move || {
                    convert_file(
                        &name,
                        &source,
                        format,
                        (&from, &to),
                        split,
                        &place,
                        synced.as_ref(),
                    )
                })
                .await?;
                written.extend(pieces.iter().map(|(_, path, _)| path.clone()));
                let name = f.file.name.clone();
                blocking(move || {
                    pieces
                        .into_iter()
                        .map(|(target, path, partition)| {
                            let file = File::open(&path).map_err(|e| io(&name, e))?;
                            let size = file.metadata().map_err(|e| io(&name, e))?.len();
                            let meta = ParquetMetaDataReader::new()
                                .parse_and_finish(&file)
                                .map_err(|e| io(&name, e))?;
                            Ok((target, path, partition, size, Arc::new(meta)))
                        })
                        .collect::<Result<Vec<_>, ImportError>>()
                })
                .await?
            };
            outcome.rows = 0;
            for (target, path, partition, size, meta) in pieces {
                outcome.rows += u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
                outcome.locations.push(target.clone());
                if let Some(dir) = path.parent() {
                    folders.insert(dir.to_path_buf());
                }
                data_files.push(data_file(
                    &target,
                    size,
                    &meta,
                    &self.schema,
                    partition,
                    spec_id,
                )?);
            }
        }
        // Every folder the files were put in, and each of its ancestors up to the table's
        // root, is flushed after the files, deepest first: a new folder's entry is durable
        // only once its parent is (the metadata path does the same).
        let root = self.catalog.warehouse_path(&location)?;
        for dir in with_ancestors(&folders, &root) {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing the data folder", e))?;
            if let Some(hook) = &self.synced {
                hook(Synced::Folder(dir));
            }
        }
        let hashes: Vec<String> = files.iter().map(|f| f.file.blake3.clone()).collect();
        let (change, snapshot_id) = self.snapshot(table, data_files, &hashes).await?;
        let catalog = self.catalog.clone();
        let executor = self.executor.clone();
        let branch = self.branch();
        blocking(move || {
            catalog.commit_table(&executor, &branch, change, &Authored::default(), None)?;
            Ok(())
        })
        .await?;
        Ok(snapshot_id)
    }

    /// floe's snapshot producer: a manifest of the added files (and, for replace, one of
    /// the deleted ones), a manifest list, and the snapshot (DESIGN §3).
    async fn snapshot(
        &self,
        table: &LoadedTable,
        added: Vec<iceberg::spec::DataFile>,
        hashes: &[String],
    ) -> Result<(TableChange, i64), ImportError> {
        let metadata = &table.metadata;
        // Reads and writes of the table's files stay inside its location.
        let file_io = self.catalog.table_file_io(metadata)?;
        let ice = |e: iceberg::Error| ImportError::Io(format!("writing the snapshot: {e}"));
        let location = metadata.location().trim_end_matches('/').to_owned();
        let snapshot_id = new_snapshot_id(metadata);
        let parent = metadata.current_snapshot().cloned();
        let sequence = metadata.last_sequence_number() + 1;
        let spec = metadata.default_partition_spec().as_ref().clone();
        let schema = metadata.current_schema().clone();
        let commit_uuid = uuid::Uuid::now_v7();
        let mut manifests = Vec::new();
        let added_records: u64 = added.iter().map(|f| f.record_count()).sum();
        let added_size: u64 = added.iter().map(|f| f.file_size_in_bytes()).sum();
        let added_count = added.len() as u64;
        let out = file_io
            .new_output(format!("{location}/metadata/{commit_uuid}-m0.avro"))
            .map_err(ice)?;
        let mut writer =
            ManifestWriterBuilder::new(out, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data();
        for f in added {
            writer.add_file(f, sequence).map_err(ice)?;
        }
        manifests.push(writer.write_manifest_file().await.map_err(ice)?);
        let (mut deleted_records, mut deleted_size, mut deleted_count) = (0u64, 0u64, 0u64);
        if let Some(parent) = &parent {
            let bytes = file_io
                .new_input(parent.manifest_list())
                .map_err(ice)?
                .read()
                .await
                .map_err(ice)?;
            let list =
                iceberg::spec::ManifestList::parse_with_version(&bytes, metadata.format_version())
                    .map_err(ice)?;
            if self.mode == ImportMode::Replace {
                // Every live data file, as deleted, in a manifest of its own partition spec.
                let mut gone: Vec<(i32, iceberg::spec::ManifestWriter)> = Vec::new();
                for m in list.entries() {
                    if m.content != ManifestContentType::Data {
                        continue;
                    }
                    let manifest = m.load_manifest(&file_io).await.map_err(ice)?;
                    for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                        let f = entry.data_file().clone();
                        let spec_id = m.partition_spec_id;
                        let at = match gone.iter().position(|(id, _)| *id == spec_id) {
                            Some(at) => at,
                            None => {
                                let spec = metadata
                                    .partition_spec_by_id(spec_id)
                                    .ok_or_else(|| {
                                        ImportError::Io(format!(
                                            "data file {} names partition spec {spec_id}, which the table does not have",
                                            f.file_path()
                                        ))
                                    })?
                                    .as_ref()
                                    .clone();
                                let out = file_io
                                    .new_output(format!(
                                        "{location}/metadata/{commit_uuid}-m{}.avro",
                                        gone.len() + 1
                                    ))
                                    .map_err(ice)?;
                                gone.push((
                                    spec_id,
                                    ManifestWriterBuilder::new(
                                        out,
                                        Some(snapshot_id),
                                        schema.clone(),
                                        spec,
                                    )
                                    .build_v2_data(),
                                ));
                                gone.len() - 1
                            }
                        };
                        deleted_records += f.record_count();
                        deleted_size += f.file_size_in_bytes();
                        deleted_count += 1;
                        gone[at]
                            .1
                            .add_delete_file(
                                f,
                                entry.sequence_number().unwrap_or(0),
                                entry.file_sequence_number,
                            )
                            .map_err(ice)?;
                    }
                }
                for (_, writer) in gone {
                    manifests.push(writer.write_manifest_file().await.map_err(ice)?);
                }
            } else {
                manifests.extend(list.entries().iter().cloned());
            }
        }
        let list_location = format!("{location}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro");
        let out = file_io.new_output(&list_location).map_err(ice)?;
        let mut list = ManifestListWriter::v2(
            out.writer().await.map_err(ice)?,
            snapshot_id,
            parent.as_ref().map(|p| p.snapshot_id()),
            sequence,
        );
        list.add_manifests(manifests.into_iter()).map_err(ice)?;
        list.close().await.map_err(ice)?;
        let replace = self.mode == ImportMode::Replace;
        // A total is known after a replace (only the new files), on a first snapshot, or
        // when the parent has it; otherwise it is left out, as Iceberg's writers do.
        let total = |k: &str, added: u64| -> Option<String> {
            match &parent {
                _ if replace => Some(added),
                None => Some(added),
                Some(p) => p
                    .summary()
                    .additional_properties
                    .get(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|before| before + added),
            }
            .map(|n| n.to_string())
        };
        let mut props = HashMap::from([
            ("added-data-files".to_owned(), added_count.to_string()),
            ("added-records".to_owned(), added_records.to_string()),
            ("added-files-size".to_owned(), added_size.to_string()),
            (IMPORTED_FILES_PROPERTY.to_owned(), hashes.join(",")),
            ("floe.run.id".to_owned(), self.record.id.clone()),
        ]);
        for (k, added) in [
            ("total-data-files", added_count),
            ("total-records", added_records),
            ("total-files-size", added_size),
            ("total-delete-files", 0),
            ("total-position-deletes", 0),
            ("total-equality-deletes", 0),
        ] {
            if let Some(v) = total(k, added) {
                props.insert(k.to_owned(), v);
            }
        }
        if replace && deleted_count > 0 {
            props.insert("deleted-data-files".to_owned(), deleted_count.to_string());
            props.insert("deleted-records".to_owned(), deleted_records.to_string());
            props.insert("removed-files-size".to_owned(), deleted_size.to_string());
        }
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
            .with_sequence_number(sequence)
            .with_timestamp_ms(self.catalog.now_ms().max(metadata.last_updated_ms() + 1))
            .with_manifest_list(list_location)
            .with_schema_id(metadata.current_schema_id())
            .with_summary(Summary {
                operation: if replace {
                    Operation::Overwrite
                } else {
                    Operation::Append
                },
                additional_properties: props,
            })
            .build();
        let mut updates = Vec::new();
        let existing = metadata.properties().get(NAME_MAPPING_PROPERTY);
        let mapping = name_mapping(&self.schema, existing.map(String::as_str));
        if existing != Some(&mapping) {
            updates.push(TableUpdate::SetProperties {
                updates: HashMap::from([(NAME_MAPPING_PROPERTY.to_owned(), mapping)]),
            });
        }
        updates.push(TableUpdate::AddSnapshot { snapshot });
        updates.push(TableUpdate::SetSnapshotRef {
            ref_name: "main".to_owned(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        });
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: "main".to_owned(),
                snapshot_id: parent.as_ref().map(|p| p.snapshot_id()),
            },
        ];
        let _ = FormatVersion::V2;
        Ok((
            TableChange {
                key: self.table.clone(),
                requirements,
                updates,
            },
            snapshot_id,
        ))
    }
}

fn new_snapshot_id(metadata: &iceberg::spec::TableMetadata) -> i64 {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let id = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) & i64::MAX;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// A file name safe inside a data path: letters, digits, `-`, `_`, `.`; at most 64.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = base
        .strip_suffix(".parquet")
        .or_else(|| base.strip_suffix(".csv"))
        .unwrap_or(base);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("f{clean}")
    } else {
        clean
    }
}

/// Copies a file and makes it durable.
fn copy_file(from: &ImportFile, to: &Path, synced: Option<&SyncHook>) -> std::io::Result<u64> {
    let mut source = from.open()?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let size = std::io::copy(&mut source, &mut target)?;
    sync_file(&target, to, synced)?;
    Ok(size)
}

/// `folders` and every ancestor of each up to `root` (inclusive), deepest first.
fn with_ancestors(folders: &BTreeSet<PathBuf>, root: &Path) -> Vec<PathBuf> {
    let mut all = BTreeSet::new();
    for folder in folders {
        let mut dir = folder.as_path();
        while dir.starts_with(root) && all.insert(dir.to_owned()) && dir != root {
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
    }
    let mut all: Vec<PathBuf> = all.into_iter().collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    all
}

/// Flushes a written file to the device.
fn sync_file(file: &File, path: &Path, synced: Option<&SyncHook>) -> std::io::Result<()> {
    file.sync_all()?;
    if let Some(hook) = synced {
        hook(Synced::File(path.to_owned()));
    }
    Ok(())
}

/// Files one conversion may write at once (one per partition value it meets).
const PARTITION_FILES_MAX: usize = 1_000;

/// Where a converted file's pieces go: its location and local path, given its partition.
type Place<'a> = dyn Fn(Option<&PartitionKey>) -> Result<(String, PathBuf), ImportError> + 'a;

/// Rewrites a file as Parquet in the table's Arrow schema (with field ids): one output
/// file, or, for a partitioned table, one per partition value. Returns each output's
/// location, path and partition; on error removes what it wrote.
fn convert_file(
    name: &str,
    source: &ImportFile,
    format: FileFormat,
    (from, to): (&SchemaRef, &SchemaRef),
    split: Option<(iceberg::spec::SchemaRef, iceberg::spec::PartitionSpecRef)>,
    place: &Place<'_>,
    synced: Option<&SyncHook>,
) -> Result<Vec<(String, PathBuf, Struct)>, ImportError> {
    let bad = |e: &dyn std::fmt::Display| ImportError::Invalid(format!("{name}: {e}"));
    let f = source.open().map_err(|e| io(name, e))?;
    let reader: Box<dyn RecordBatchReader + Send> = match format {
        FileFormat::Parquet => Box::new(
            ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| bad(&e))?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| bad(&e))?,
        ),
        FileFormat::Csv => Box::new(
            datafusion::arrow::csv::ReaderBuilder::new(from.clone())
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(f)
                .map_err(|e| bad(&e))?,
        ),
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    // One writer per partition value met (one in all for an unpartitioned table).
    let mut outputs: HashMap<String, (ArrowWriter<File>, String, PathBuf, Struct)> = HashMap::new();
    // Reading, casting and splitting on one thread, encoding and writing on this one: a
    // file's conversion uses two cores.
    type Pieces = Vec<(Option<PartitionKey>, RecordBatch)>;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Pieces, ImportError>>(2);
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            let splitter = match split {
                None => None,
                Some((schema, spec)) => {
                    match RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
                    {
                        Ok(s) => Some(s),
                        Err(e) => {
                            let _ = sender.send(Err(bad(&e)));
                            return;
                        }
                    }
                }
            };
            let mut row = 0u64;
            for batch in reader {
                let pieces = batch
                    .map_err(|e| {
                        bad(&format!(
                            "cannot read the rows after row {row}: {e} (the types were inferred from the first {CSV_INFER_ROWS} rows)"
                        ))
                    })
                    .and_then(|batch| cast_batch(&batch, to, &options).map_err(|e| bad(&e)))
                    .and_then(|batch| {
                        row += batch.num_rows() as u64;
                        match &splitter {
                            None => Ok(vec![(None, batch)]),
                            Some(s) => s
                                .split(&batch)
                                .map(|parts| parts.into_iter().map(|(k, b)| (Some(k), b)).collect())
                                .map_err(|e| bad(&format!("cannot partition the rows: {e}"))),
                        }
                    });
                let failed = pieces.is_err();
                if sender.send(pieces).is_err() || failed {
                    return;
                }
            }
        });
        for pieces in receiver {
            for (key, batch) in pieces? {
                let id = key.as_ref().map(PartitionKey::to_path).unwrap_or_default();
                if !outputs.contains_key(&id) {
                    if outputs.len() == PARTITION_FILES_MAX {
                        return Err(bad(&format!(
                            "the rows fall into more than {PARTITION_FILES_MAX} partitions; split the file"
                        )));
                    }
                    let (location, path) = place(key.as_ref())?;
                    let out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| io(name, e))?;
                    // Registered before it is written: an error removes it.
                    let writer = ArrowWriter::try_new(out, to.clone(), Some(props.clone()));
                    let partition = key
                        .as_ref()
                        .map_or_else(Struct::empty, |k| k.data().clone());
                    match writer {
                        Ok(w) => {
                            outputs.insert(id.clone(), (w, location, path, partition));
                        }
                        Err(e) => {
                            let _ = std::fs::remove_file(&path);
                            return Err(io(name, e));
                        }
                    }
                }
                let (writer, ..) = outputs.get_mut(&id).expect("inserted above");
                writer.write(&batch).map_err(|e| io(name, e))?;
            }
        }
        Ok::<(), ImportError>(())
    });
    let mut done = Vec::with_capacity(outputs.len());
    let mut failure = result.err();
    for (_, (writer, location, path, partition)) in outputs {
        if failure.is_none() {
            match writer
                .into_inner()
                .and_then(|f| sync_file(&f, &path, synced).map_err(Into::into))
            {
                Ok(()) => {
                    done.push((location, path, partition));
                    continue;
                }
                Err(e) => failure = Some(io(name, e)),
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    match failure {
        None => Ok(done),
        Some(e) => {
            for (_, path, _) in done {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// A partition path (`region=eu/day=2024-01-01`) as folders safe in the warehouse.
fn partition_folder(path: &str) -> String {
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let clean: String = p
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect();
            if clean.starts_with('.') {
                format!("_{clean}")
            } else {
                clean
            }
        })
        .take(16)
        .collect();
    if parts.is_empty() {
        "_".to_owned()
    } else {
        parts.join("/")
    }
}

/// A batch in the table's Arrow schema: each column cast (checked: an overflow or an
/// unparsable value is an error), missing optional columns as nulls.
fn cast_batch(
    batch: &RecordBatch,
    to: &SchemaRef,
    options: &CastOptions<'_>,
) -> Result<RecordBatch, String> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(to.fields().len());
    for field in to.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) => cast_with_options(c, field.data_type(), options).map_err(|e| {
                format!(
                    "column {} does not convert to {}: {e}",
                    field.name(),
                    field.data_type()
                )
            })?,
            None => datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(to.clone(), columns).map_err(|e: ArrowError| e.to_string())
}

/// The data file entry of a Parquet file in the table: counts, sizes and bounds of its
/// top-level columns, found by name.
fn data_file(
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
    use std::collections::BTreeMap;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;
    use floe_catalog::{RunState, Warehouse};
    use floe_commits::{RefKind, RefName};

    use super::*;

    struct Fixture {
        catalog: Catalog,
        who: Principal,
        main: RefSpec,
        dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&dir.path().join("warehouse")).unwrap();
        let catalog = Catalog::in_memory().with_warehouse(warehouse);
        let who = Principal::anonymous();
        let main = RefSpec::parse("main").unwrap();
        catalog
            .create_namespace(
                &who,
                &main,
                &ContentKey::new(["db"]).unwrap(),
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
            .unwrap();
        Fixture {
            catalog,
            who,
            main,
            dir,
        }
    }

    fn ids(f: &Fixture, name: &str, ids: Range<i64>) -> ImportFile {
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(
            "id",
            DataType::Int64,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids.collect::<Vec<_>>()))],
        )
        .unwrap();
        let path = f.dir.path().join(name);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        ImportFile {
            name: name.to_owned(),
            blake3: format!("{:x}", bytes.len()) + name,
            size: bytes.len() as u64,
            path,
            identity: None,
            held: None,
        }
    }

    fn request(f: &Fixture, mode: Option<ImportMode>, file: ImportFile) -> ImportRequest {
        ImportRequest {
            table: ContentKey::new(["db", "t"]).unwrap(),
            branch: f.main.clone(),
            mode,
            dry_run: false,
            force: false,
            files: vec![file],
            idempotency: None,
        }
    }

    fn snapshots(f: &Fixture) -> usize {
        let key = ContentKey::new(["db", "t"]).unwrap();
        let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
        t.metadata.snapshots().count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_concurrent_change_to_the_table_fails_the_import_cleanly() {
        let f = fixture();
        let first = ids(&f, "a.parquet", 0..10);
        Importer::new(f.catalog.clone())
            .run(&f.who, request(&f, None, first))
            .await
            .unwrap();
        // Another writer changes the table between the import's fork and its landing.
        let hook: LandingHook = Arc::new(|catalog: &Catalog| {
            let key = ContentKey::new(["db", "t"]).unwrap();
            let change = TableChange {
                key,
                requirements: Vec::new(),
                updates: vec![TableUpdate::SetProperties {
                    updates: HashMap::from([("owner".to_owned(), "someone else".to_owned())]),
                }],
            };
            catalog
                .commit_table(
                    &Principal::named("other"),
                    &RefSpec::parse("main").unwrap(),
                    change,
                    &Authored::default(),
                    None,
                )
                .unwrap();
        });
        let second = ids(&f, "b.parquet", 10..20);
        let err = Importer::new(f.catalog.clone())
            .with_landing_hook(hook)
            .run(&f.who, request(&f, Some(ImportMode::Append), second))
            .await
            .unwrap_err();
        let ImportError::RunFailed { run, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            matches!(err.root(), ImportError::Catalog(CatalogError::Write(_))),
            "{err}"
        );
        assert!(err.to_string().contains("db.t"), "{err}");
        // The target has the other writer's change and not the import's rows.
        assert_eq!(snapshots(&f), 1);
        let key = ContentKey::new(["db", "t"]).unwrap();
        let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
        assert_eq!(
            t.metadata.properties().get("owner").unwrap(),
            "someone else"
        );
        let record = f.catalog.run_record(run).unwrap().unwrap();
        assert_eq!(record.state, RunState::Failed);
        // Its work is sealed.
        let sealed = f
            .catalog
            .create_ref(
                &f.who,
                &RefName::parse("rescue").unwrap(),
                RefKind::Branch,
                &RefSpec::parse(record.branch().as_str()).unwrap(),
                None,
            )
            .unwrap_err();
        assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unrelated_concurrent_commits_do_not_block_an_import() {
        let f = fixture();
        let hook: LandingHook = Arc::new(|catalog: &Catalog| {
            catalog
                .create_namespace(
                    &Principal::named("other"),
                    &RefSpec::parse("main").unwrap(),
                    &ContentKey::new(["elsewhere"]).unwrap(),
                    BTreeMap::new(),
                    &Authored::default(),
                    None,
                )
                .unwrap();
        });
        let outcome = Importer::new(f.catalog.clone())
            .with_landing_hook(hook)
            .run(&f.who, request(&f, None, ids(&f, "a.parquet", 0..10)))
            .await
            .unwrap();
        assert_eq!(outcome.rows, 10);
        assert_eq!(snapshots(&f), 1);
        let record = outcome.run.unwrap();
        assert_eq!(record.state, RunState::Succeeded);
        // Landed: one commit with the run's id on main; the run branch is gone.
        let head = f.catalog.resolve(&f.who, &f.main).unwrap().hash;
        assert_eq!(outcome.commit.unwrap(), head.to_hex());
        assert!(
            f.catalog.get_ref(&f.who, &record.branch()).is_err(),
            "a landed run's branch is deleted"
        );
    }

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

    /// The barrier order of an import's files and folders, as a power cut would judge it
    /// (issue 14, item 11): at the landing, every data file is flushed, and so is every
    /// folder from the file's own up to the table's root, after the file's entry was made
    /// in it. Only then does a crash leave no landed snapshot pointing at a file or folder
    /// the device lost. A partitioned table makes the new folders nest (data/region=a/).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_flushes_its_files_and_every_new_folder_before_it_lands() {
        use iceberg::spec::{NestedField, PrimitiveType, Transform, Type, UnboundPartitionSpec};
        let f = fixture();
        let schema = iceberg::spec::Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(2, "region", Transform::Identity)
            .unwrap()
            .build();
        let table = f
            .catalog
            .create_table(
                &f.who,
                &f.main,
                &ContentKey::new(["db"]).unwrap(),
                floe_catalog::TableCreate {
                    name: "t".to_owned(),
                    location: None,
                    schema,
                    partition_spec: Some(spec),
                    write_order: None,
                    stage_create: false,
                    properties: HashMap::new(),
                },
                &Authored::default(),
                None,
            )
            .unwrap();
        let root = f.catalog.warehouse_path(table.metadata.location()).unwrap();
        let arrow = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("region", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            arrow.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    "a", "b", "a",
                ])),
            ],
        )
        .unwrap();
        let path = f.dir.path().join("r.parquet");
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), arrow, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = ImportFile {
            name: "r.parquet".to_owned(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            size: bytes.len() as u64,
            path,
            identity: None,
            held: None,
        };
        let events: Arc<parking_lot::Mutex<Vec<Synced>>> = Arc::default();
        let at_landing: Arc<parking_lot::Mutex<Option<usize>>> = Arc::default();
        let importer = Importer::new(f.catalog.clone())
            .with_sync_hook({
                let events = events.clone();
                Arc::new(move |e| events.lock().push(e))
            })
            .with_landing_hook({
                let (events, at_landing) = (events.clone(), at_landing.clone());
                Arc::new(move |_: &Catalog| *at_landing.lock() = Some(events.lock().len()))
            });
        let outcome = importer
            .run(&f.who, request(&f, Some(ImportMode::Append), file))
            .await
            .unwrap();
        let events = events.lock().clone();
        let landed_after = at_landing.lock().expect("the import landed");
        let before: &[Synced] = &events[..landed_after];
        let locations = &outcome.files[0].locations;
        assert_eq!(locations.len(), 2, "one file per region");
        for location in locations {
            let file = f.catalog.warehouse_path(location).unwrap();
            let flushed = before
                .iter()
                .position(|e| *e == Synced::File(file.clone()))
                .unwrap_or_else(|| panic!("{} was not flushed before the landing", file.display()));
            let mut dir = file.parent().unwrap().to_owned();
            loop {
                let entry = before[flushed..]
                    .iter()
                    .any(|e| *e == Synced::Folder(dir.clone()));
                assert!(
                    entry,
                    "folder {} was not flushed after {} was made in it, before the landing: {before:?}",
                    dir.display(),
                    file.display()
                );
                if dir == root {
                    break;
                }
                dir = dir.parent().unwrap().to_owned();
            }
        }
    }

    #[test]
    fn data_file_names_are_safe_path_segments() {
        assert_eq!(sanitize("/tmp/a b/../x.parquet"), "x");
        assert_eq!(sanitize("..\\evil.csv"), "evil");
        assert_eq!(sanitize("..."), "f...");
        assert_eq!(sanitize(""), "f");
        assert!(sanitize(&"x".repeat(500)).len() <= 64);
    }
}
