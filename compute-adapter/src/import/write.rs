//! Writing an import's data files into the table's `data/` folder: a Parquet file whose
//! types need nothing is copied as it is; any other file is rewritten as Parquet in the
//! table's Arrow schema (with field ids), split by partition. Every file, and then every
//! folder from its own up to the table's root, is flushed before the import may land.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::parquet::file::properties::WriterProperties;
use floe_catalog::{Catalog, LoadedTable};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, PartitionKey, Struct, TableMetadata};

use super::inspect::Inspected;
use super::stats::data_file;
use super::{FileAction, FileFormat, FileOutcome, ImportError, ImportFile, Work, blocking, io};
use crate::limits::{
    CONVERT_BATCHES_AHEAD, CSV_INFER_ROWS, DATA_FILE_NAME_CHARS_MAX, IMPORT_BATCH_ROWS,
    PARTITION_FILES_MAX, PARTITION_FOLDER_CHARS_MAX, PARTITION_FOLDERS_MAX,
};

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

impl Work {
    /// Puts the files into the table's folder (each path in `written` before it is
    /// written), flushes them and their folders, and returns their data file entries. Each
    /// outcome gets its rows and locations.
    pub(super) async fn write_files(
        &self,
        table: &LoadedTable,
        files: &[Inspected],
        outcomes: &mut [FileOutcome],
        written: &mut Vec<PathBuf>,
    ) -> Result<Vec<DataFile>, ImportError> {
        let location = table.metadata.location().trim_end_matches('/').to_owned();
        let spec = table.metadata.default_partition_spec().clone();
        let spec_id = spec.spec_id();
        let split = (!spec.is_unpartitioned())
            .then(|| (table.metadata.current_schema().clone(), spec.clone()));
        let mut data_files = Vec::new();
        let mut folders = BTreeSet::new();
        for (f, outcome) in files.iter().zip(outcomes.iter_mut()) {
            let copy = outcome.action == FileAction::Copy;
            let source = f.file.clone();
            let format = f.format;
            let from = f.schema.clone();
            let to = self.table_arrow.clone();
            let name = f.file.name.clone();
            let split = split.clone();
            let place = placer(self.catalog.clone(), location.clone(), name);
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
        Ok(data_files)
    }
}

/// Where one output file of a table goes: `data/`, or `data/<partition path>/`, named by
/// a fresh UUID and `name` (its folder is created).
fn placer(
    catalog: Catalog,
    location: String,
    name: String,
) -> impl Fn(Option<&PartitionKey>) -> Result<(String, PathBuf), ImportError> + Send + Clone {
    move |key: Option<&PartitionKey>| {
        let folder = match key {
            Some(k) => format!("{location}/data/{}", partition_folder(&k.to_path())),
            None => format!("{location}/data"),
        };
        let id = catalog.new_uuid();
        let target = format!("{folder}/{id}-{}.parquet", sanitize(&name));
        let path = catalog.warehouse_path(&target)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the data folder", e))?;
        }
        Ok((target, path))
    }
}

/// Writes rows as data files of a table (under its `data/` folder, split by its default
/// partition spec, in its current schema), flushes them and every folder up to the table's
/// root, and returns their entries. Nothing it wrote is left when it fails. Blocking.
pub(crate) fn write_table_files(
    catalog: &Catalog,
    metadata: &TableMetadata,
    name: &str,
    reader: Box<dyn RecordBatchReader + Send>,
) -> Result<Vec<DataFile>, ImportError> {
    let location = metadata.location().trim_end_matches('/').to_owned();
    let spec = metadata.default_partition_spec().clone();
    let schema = metadata.current_schema().clone();
    let to: SchemaRef = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| ImportError::Invalid(format!("{name}: {e}")))?,
    );
    let split = (!spec.is_unpartitioned()).then(|| (schema.clone(), spec.clone()));
    let place = placer(catalog.clone(), location.clone(), name.to_owned());
    let pieces = write_rows(name, reader, &to, split, &place, None)?;
    let described = || -> Result<Vec<DataFile>, ImportError> {
        let mut files = Vec::with_capacity(pieces.len());
        let mut folders = BTreeSet::new();
        for (target, path, partition) in &pieces {
            let file = File::open(path).map_err(|e| io(name, e))?;
            let size = file.metadata().map_err(|e| io(name, e))?.len();
            let meta = ParquetMetaDataReader::new()
                .parse_and_finish(&file)
                .map_err(|e| io(name, e))?;
            if let Some(dir) = path.parent() {
                folders.insert(dir.to_path_buf());
            }
            files.push(data_file(
                target,
                size,
                &meta,
                &schema,
                partition.clone(),
                spec.spec_id(),
            )?);
        }
        let root = catalog.warehouse_path(&location)?;
        for dir in with_ancestors(&folders, &root) {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing the data folder", e))?;
        }
        Ok(files)
    };
    described().inspect_err(|_| {
        for (_, path, _) in &pieces {
            let _ = std::fs::remove_file(path);
        }
    })
}

/// A file name safe inside a data path: letters, digits, `-`, `_`, `.`; at most
/// `DATA_FILE_NAME_CHARS_MAX` of them.
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
        .take(DATA_FILE_NAME_CHARS_MAX)
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

/// Where a converted file's pieces go: its location and local path, given its partition.
pub(crate) type Place<'a> =
    dyn Fn(Option<&PartitionKey>) -> Result<(String, PathBuf), ImportError> + 'a;

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
                .with_batch_size(IMPORT_BATCH_ROWS)
                .build()
                .map_err(|e| bad(&e))?,
        ),
        FileFormat::Csv => Box::new(
            datafusion::arrow::csv::ReaderBuilder::new(from.clone())
                .with_header(true)
                .with_batch_size(IMPORT_BATCH_ROWS)
                .build(f)
                .map_err(|e| bad(&e))?,
        ),
    };
    write_rows(name, reader, to, split, place, synced)
}

/// Writes rows as Parquet in the table's Arrow schema `to` (with field ids; each batch
/// cast, checked): one output file, or, for a partitioned table, one per partition value.
/// Returns each output's location, path and partition; on error removes what it wrote.
pub(crate) fn write_rows(
    name: &str,
    reader: Box<dyn RecordBatchReader + Send>,
    to: &SchemaRef,
    split: Option<(iceberg::spec::SchemaRef, iceberg::spec::PartitionSpecRef)>,
    place: &Place<'_>,
    synced: Option<&SyncHook>,
) -> Result<Vec<(String, PathBuf, Struct)>, ImportError> {
    let bad = |e: &dyn std::fmt::Display| ImportError::Invalid(format!("{name}: {e}"));
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
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<Result<Pieces, ImportError>>(CONVERT_BATCHES_AHEAD);
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
                .take(PARTITION_FOLDER_CHARS_MAX)
                .collect();
            if clean.starts_with('.') {
                format!("_{clean}")
            } else {
                clean
            }
        })
        .take(PARTITION_FOLDERS_MAX)
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
    use floe_catalog::{Authored, Catalog};
    use floe_commits::ContentKey;

    use super::*;
    use crate::import::tests::{fixture, request};
    use crate::import::{ImportMode, Importer};

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
