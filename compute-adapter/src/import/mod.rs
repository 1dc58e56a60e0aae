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
//! 5. Commit one snapshot (append, or an overwrite for replace) through floe's snapshot
//!    producer (`crate::snapshot`), then land the table on the target as one commit.
//!
//! `inspect` reads and checks the sources, `write` puts the data files in place and
//! `stats` reads their column statistics for the manifests; this module runs the steps.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use floe_catalog::deferred::Scope;
use floe_catalog::{
    Authored, Catalog, CatalogError, Landing, LoadedTable, Principal, RunKind, RunRecord,
    TableChange, TableCreate,
};
use floe_commits::{ContentKey, RefSpec};
use iceberg::TableUpdate;
use iceberg::spec::{DataFile, MAIN_BRANCH, Schema};
use serde::Serialize;
use tracing::Instrument;

pub use crate::source::ImportFile;
pub use write::{SyncHook, Synced};
pub(crate) use write::{remove_unreferenced, write_table_files};

use crate::limits::RUN_SOURCE_CHARS_MAX;
use crate::snapshot::{NewSnapshot, Removed, SnapshotOperation};
use inspect::{Inspected, Plan, check_target, name_mapping, plan, read_sources};

mod inspect;
mod stats;
mod write;

/// The snapshot summary property listing the BLAKE3 of each file an import added.
pub const IMPORTED_FILES_PROPERTY: &str = "floe.import.files";
/// The snapshot summary property naming the run that made the snapshot.
const RUN_ID_PROPERTY: &str = "floe.run.id";
const NAME_MAPPING_PROPERTY: &str = "schema.name-mapping.default";

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

/// How a file went into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAction {
    /// Added as it is (`copy` on the wire).
    Copy,
    /// Rewritten as Parquet in the table's schema (`convert` on the wire).
    Convert,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileOutcome {
    pub name: String,
    pub format: FileFormat,
    pub action: FileAction,
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
    /// The answer before anything ran: the files, the rows and what the run made come
    /// later.
    fn planned(
        request: &ImportRequest,
        mode: ImportMode,
        schema: serde_json::Value,
        dry_run: bool,
    ) -> ImportOutcome {
        ImportOutcome {
            table: request.table.to_string(),
            branch: request.branch.to_string(),
            mode,
            dry_run,
            schema,
            files: Vec::new(),
            rows: 0,
            run: None,
            commit: None,
            snapshot_id: None,
            warnings: Vec::new(),
        }
    }

    /// The answer with its files, and their rows summed.
    fn with_files(self, files: Vec<FileOutcome>) -> ImportOutcome {
        ImportOutcome {
            rows: files.iter().map(|o| o.rows).sum(),
            files,
            ..self
        }
    }

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

/// Called on the run branch's work just before it lands (tests race a writer there).
pub type LandingHook = Arc<dyn Fn(&Catalog) + Send + Sync>;

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
        let sources = request.files.clone();
        let (existing, files) =
            reading(move || read_sources(&catalog, &who, &spec, &ns, &key, sources)).await?;
        let Plan {
            mode,
            schema,
            table_arrow,
            mut outcomes,
        } = plan(&request, existing.as_ref(), &files)?;
        let schema_json = serde_json::to_value(&schema).expect("a schema serializes");
        if request.dry_run {
            return Ok(
                ImportOutcome::planned(&request, mode, schema_json, true).with_files(outcomes)
            );
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
                .take(RUN_SOURCE_CHARS_MAX)
                .collect::<String>()
        );
        let catalog = self.catalog.clone();
        let who = principal.clone();
        let spec = request.branch.clone();
        let tables = vec![request.table.to_string()];
        let (record, executor) = store(move || {
            Ok(catalog.start_run_writing(&who, &spec, RunKind::Import, source, tables)?)
        })
        .await?;
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
            answer: ImportOutcome::planned(&request, mode, schema_json, false),
        };
        // The run's span: what its work (and the catalog and store under it) logs is
        // logged under the run's id; its end says how it ended.
        let span = tracing::info_span!(
            "run",
            id = %record.id,
            kind = "import",
            target = %record.target,
            table = %request.table,
            state = tracing::field::Empty,
            commit = tracing::field::Empty,
        );
        let landed = work
            .run(&files, &mut outcomes)
            .instrument(span.clone())
            .await;
        match landed {
            Ok((landed, snapshot_id)) => {
                span.record("state", "succeeded");
                span.record("commit", landed.commit.to_hex());
                span.in_scope(|| tracing::info!("run landed"));
                let (catalog, who, id) =
                    (self.catalog.clone(), principal.clone(), record.id.clone());
                let run = reading(move || Ok(catalog.run_record(&who, &id)?))
                    .await
                    .ok()
                    .flatten();
                Ok(ImportOutcome {
                    run,
                    commit: Some(landed.commit.to_hex()),
                    snapshot_id: Some(snapshot_id),
                    warnings: landed.bookkeeping_error.into_iter().collect(),
                    ..work.answer.with_files(outcomes)
                })
            }
            Err(e) => {
                span.record("state", "failed");
                span.in_scope(
                    || tracing::warn!(error = %e, "run failed; its branch stays, sealed"),
                );
                let catalog = self.catalog.clone();
                let failed = record.clone();
                let message = e.to_string();
                // The client hears of a record that could not say so, not only the log.
                let executor = principal.in_run(&failed.id);
                let record_error = store(move || {
                    Ok(catalog.fail_run(&executor, &failed, &message)?)
                })
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

/// Store work that writes, off the async workers: its durability waits are awaited here,
/// parking no thread (`floe_catalog::off_thread`); a failed task or wait is an outcome
/// unknown (so no file is removed after it).
async fn store<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    off_store(Scope::Write, f).await
}

/// Store work that only reads, likewise.
async fn reading<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    off_store(Scope::Read, f).await
}

async fn off_store<T: Send + 'static>(
    scope: Scope,
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    crate::off_store(scope, f, |why| {
        ImportError::Io(format!("an import task failed: {why}"))
    })
    .await
}

/// File work (no store calls) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, ImportError> {
    // The caller's span (a run's, a request's) follows the work onto the blocking thread.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
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
        let table = store(move || {
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
            check_target(&table, files, &self.table, self.force)?;
        }
        let mut written = Vec::new();
        let committed = self
            .write_and_commit(&table, files, outcomes, &mut written)
            .await;
        let snapshot_id = match committed {
            Ok(id) => id,
            Err(e) => {
                // Nothing refers to these files: remove them (off the async threads). Not
                // when the commit's outcome is unknown: it may have landed, naming them.
                let unknown = matches!(&e, ImportError::Catalog(c) if c.is_outcome_unknown());
                if let (false, Ok(store)) =
                    (unknown, self.catalog.data_files(table.metadata.location()))
                {
                    let _ = blocking(move || {
                        write::remove_unreferenced(&store, &written);
                        Ok(())
                    })
                    .await;
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
            snapshot_id: Some(snapshot_id),
            ..self.answer.clone().with_files(outcomes.to_vec())
        };
        let answer = serde_json::to_value(&answer).expect("an import outcome serializes");
        let landed = store(move || {
            if let Some(hook) = hook {
                hook(&catalog);
            }
            let landing = Landing {
                outputs: vec![key.clone()],
                appends: match mode {
                    ImportMode::Append => vec![key.clone()],
                    _ => Vec::new(),
                },
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

    /// Puts the files into the table's folder (each location in `written` before it is
    /// written) and commits one snapshot of them on the run branch; returns its id.
    async fn write_and_commit(
        &self,
        table: &LoadedTable,
        files: &[Inspected],
        outcomes: &mut [FileOutcome],
        written: &mut Vec<String>,
    ) -> Result<i64, ImportError> {
        let data_files = self.write_files(table, files, outcomes, written).await?;
        self.commit_snapshot(table, files, data_files).await
    }

    /// Commits one snapshot of the written files on the run branch (an append, or an
    /// overwrite of every live file for replace), with the table's name mapping brought up
    /// to date, and returns the snapshot's id.
    async fn commit_snapshot(
        &self,
        table: &LoadedTable,
        files: &[Inspected],
        added: Vec<DataFile>,
    ) -> Result<i64, ImportError> {
        let metadata = &table.metadata;
        let hashes: Vec<&str> = files.iter().map(|f| f.file.blake3.as_str()).collect();
        // Reads and writes of the table's files stay inside its location.
        let file_io = self.catalog.table_file_io(metadata)?;
        let produced = crate::snapshot::produce(
            &file_io,
            NewSnapshot {
                metadata,
                branch: MAIN_BRANCH,
                operation: match self.mode {
                    ImportMode::Replace => SnapshotOperation::Overwrite(Removed::All),
                    ImportMode::Create | ImportMode::Append => SnapshotOperation::Append,
                },
                added,
                properties: HashMap::from([
                    (IMPORTED_FILES_PROPERTY.to_owned(), hashes.join(",")),
                    (RUN_ID_PROPERTY.to_owned(), self.record.id.clone()),
                ]),
                timestamp_ms: self.catalog.now_ms(),
                id: self.catalog.new_uuid(),
            },
        )
        .await
        .map_err(|e| ImportError::Io(e.to_string()))?;
        let mut updates = Vec::new();
        let existing = metadata.properties().get(NAME_MAPPING_PROPERTY);
        let mapping = name_mapping(&self.schema, existing.map(String::as_str));
        if existing != Some(&mapping) {
            updates.push(TableUpdate::SetProperties {
                updates: HashMap::from([(NAME_MAPPING_PROPERTY.to_owned(), mapping)]),
            });
        }
        updates.extend(produced.updates);
        let change = TableChange {
            key: self.table.clone(),
            requirements: produced.requirements,
            updates,
        };
        let catalog = self.catalog.clone();
        let executor = self.executor.clone();
        let branch = self.branch();
        store(move || {
            catalog.commit_table(&executor, &branch, change, &Authored::default(), None)?;
            Ok(())
        })
        .await?;
        Ok(produced.snapshot_id)
    }
}

#[cfg(test)]
pub(crate) mod tests;
