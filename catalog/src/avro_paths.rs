//! The paths a manifest list or a manifest names, read for the commit check
//! (`table_files`) without parsing the file's Avro schema again.
//!
//! A client's manifests and lists of one table carry the same writer schema, and parsing
//! it (names checked by regular expression, the record tree built and cloned) was most of
//! what the check cost a commit (issue 23's profile). Here the object container is read
//! directly (header, codec, sync markers), the writer schema is parsed once per distinct
//! schema text and kept, and each record is decoded with it. Anything unexpected (another
//! magic, a codec not built in, a path field missing or not a string) answers `None`, and
//! the caller reads the file with the iceberg crate's full parser instead.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use apache_avro::types::Value;
use apache_avro::{Codec, Schema};
use parking_lot::Mutex;

/// Distinct writer schemas kept; past it the cache starts over.
const SCHEMAS_KEPT_MAX: usize = 64;

/// The longest writer schema read here (an Iceberg manifest's is about 5-10 KiB): apache
/// avro resolves the schema's names again for every record it decodes, so a larger one
/// (and every larger one kept) would make each record cost more than the file's bytes.
const SCHEMA_TEXT_MAX: usize = 16 << 10;

/// The most records of one file read here.
const RECORDS_MAX: i64 = 100_000;

/// The `manifest_path` of every entry of a manifest list.
pub(crate) fn manifest_list_paths(bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    records(bytes, |record| {
        out.push(string_field(record, "manifest_path")?.to_owned());
        Some(())
    })?;
    Some(out)
}

/// The `data_file.file_path` of every entry of a manifest (whatever its status).
pub(crate) fn manifest_data_paths(bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    records(bytes, |entry| {
        let file = field(entry, "data_file")?;
        out.push(string_field(file, "file_path")?.to_owned());
        Some(())
    })?;
    Some(out)
}

fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Record(fields) = record else {
        return None;
    };
    let mut found = fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
    let value = found.next()?;
    if found.next().is_some() {
        return None;
    }
    match value {
        Value::Union(_, inner) => Some(inner),
        other => Some(other),
    }
}

fn string_field<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    match field(record, name)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Refuses a manifest (`manifest`) or manifest list whose writer schema gives a path
/// field a name and an Iceberg field id that disagree: floe's check and the iceberg
/// crate find `data_file.file_path` and `manifest_path` by name, Java and PyIceberg by
/// field id (2 and 100, 500), so where the two name different fields readers would read
/// paths the check never saw. A file whose header or schema does not parse is left to
/// the parsers, which refuse it.
pub(crate) fn path_fields_agree(bytes: &[u8], manifest: bool) -> Result<(), String> {
    static LISTS: Kept<Result<(), String>> = Kept::new();
    static MANIFESTS: Kept<Result<(), String>> = Kept::new();
    let Some(Header {
        schema: Some(text), ..
    }) = header(bytes)
    else {
        return Ok(());
    };
    let kept = if manifest { &MANIFESTS } else { &LISTS };
    kept.get_or(text, || schema_fields_agree(text, manifest))
}

fn schema_fields_agree(text: &[u8], manifest: bool) -> Result<(), String> {
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(text) else {
        return Ok(());
    };
    // Records written in place (as every Iceberg writer does): a union or a reference to
    // a record named elsewhere would hide the fields from this look.
    fn fields<'a>(
        record: &'a serde_json::Value,
        what: &str,
    ) -> Result<&'a [serde_json::Value], String> {
        record["fields"]
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| format!("its Avro schema does not write {what} as a record in place"))
    }
    if !manifest {
        return agreeing(fields(&schema, "the list entry")?, 500, "manifest_path").map(|_| ());
    }
    let Some(data_file) = agreeing(fields(&schema, "the manifest entry")?, 2, "data_file")? else {
        return Ok(());
    };
    agreeing(fields(&data_file["type"], "data_file")?, 100, "file_path").map(|_| ())
}

/// The one field of a record that carries both field id `id` and `name`; an error when
/// they name different fields, or the id is carried twice.
fn agreeing<'a>(
    fields: &'a [serde_json::Value],
    id: i64,
    name: &str,
) -> Result<Option<&'a serde_json::Value>, String> {
    let by_id: Vec<&serde_json::Value> = fields
        .iter()
        .filter(|f| f["field-id"].as_i64() == Some(id))
        .collect();
    let by_name: Vec<&serde_json::Value> = fields
        .iter()
        .filter(|f| f["name"].as_str() == Some(name))
        .collect();
    let ids_used = fields.iter().any(|f| f.get("field-id").is_some());
    match (by_id.as_slice(), by_name.as_slice()) {
        ([a], [b]) if std::ptr::eq(*a, *b) => Ok(Some(a)),
        // No field ids at all: every reader goes by name.
        ([], [b]) if !ids_used => Ok(Some(b)),
        ([], []) => Ok(None),
        _ => Err(format!(
            "its Avro schema does not give field id {id} to the one field named {name} (readers that go by id and readers that go by name would read different fields)"
        )),
    }
}

/// An Avro object container file's header.
struct Header<'a> {
    /// The writer schema's text.
    schema: Option<&'a [u8]>,
    codec: Codec,
    /// What follows the header (the sync marker first).
    rest: &'a [u8],
}

fn header(bytes: &[u8]) -> Option<Header<'_>> {
    let mut r = bytes.strip_prefix(b"Obj\x01")?;
    let (mut schema, mut codec) = (None, Codec::Null);
    loop {
        let mut count = long(&mut r)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg()?;
            long(&mut r)?;
        }
        for _ in 0..count {
            let key = bytes_of(&mut r)?;
            let value = bytes_of(&mut r)?;
            match key {
                b"avro.schema" => schema = Some(value),
                b"avro.codec" => codec = std::str::from_utf8(value).ok()?.parse().ok()?,
                _ => {}
            }
        }
    }
    Some(Header {
        schema,
        codec,
        rest: r,
    })
}

/// Calls `each` with every record of an Avro object container file.
fn records(bytes: &[u8], mut each: impl FnMut(&Value) -> Option<()>) -> Option<()> {
    let Header {
        schema,
        codec,
        rest: mut r,
    } = header(bytes)?;
    let sync = take(&mut r, 16)?;
    let schema = schema.filter(|s| s.len() <= SCHEMA_TEXT_MAX)?;
    let schema = writer_schema(schema)?;
    let mut records = 0i64;
    while !r.is_empty() {
        let count = long(&mut r)?;
        // A block of no records ends the file for Avro's readers (apache avro's,
        // PyIceberg's): what follows is not read here either.
        records = records.checked_add(count).filter(|_| count > 0)?;
        if records > RECORDS_MAX {
            return None;
        }
        let size = usize::try_from(long(&mut r)?).ok()?;
        let mut block = take(&mut r, size)?.to_vec();
        // (apache avro's snappy takes a checksum off the end without looking.)
        if matches!(codec, Codec::Snappy) && block.len() < 4 {
            return None;
        }
        codec.decompress(&mut block).ok()?;
        if take(&mut r, 16)? != sync {
            return None;
        }
        let mut at = block.as_slice();
        for _ in 0..count {
            let record = apache_avro::from_avro_datum(&schema, &mut at, None).ok()?;
            each(&record)?;
        }
        if !at.is_empty() {
            return None;
        }
    }
    Some(())
}

/// The writer schema of this text, parsed once.
fn writer_schema(text: &[u8]) -> Option<Arc<Schema>> {
    static SCHEMAS: Kept<Option<Arc<Schema>>> = Kept::new();
    SCHEMAS.get_or(text, || {
        Some(Arc::new(
            Schema::parse_str(std::str::from_utf8(text).ok()?).ok()?,
        ))
    })
}

/// What was made of each distinct writer schema text (up to `SCHEMA_TEXT_MAX` bytes),
/// kept; past `SCHEMAS_KEPT_MAX` texts the cache starts over.
struct Kept<V>(OnceLock<Mutex<HashMap<Vec<u8>, V>>>);

impl<V: Clone> Kept<V> {
    const fn new() -> Kept<V> {
        Kept(OnceLock::new())
    }

    fn get_or(&self, text: &[u8], make: impl FnOnce() -> V) -> V {
        if text.len() > SCHEMA_TEXT_MAX {
            return make();
        }
        let kept = self.0.get_or_init(Mutex::default);
        if let Some(v) = kept.lock().get(text) {
            return v.clone();
        }
        let v = make();
        let mut kept = kept.lock();
        if kept.len() >= SCHEMAS_KEPT_MAX {
            kept.clear();
        }
        kept.insert(text.to_vec(), v.clone());
        v
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

/// An Avro `long`: zig-zag, variable length.
fn long(r: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *take(r, 1)?.first()?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

fn bytes_of<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(long(r)?).ok()?;
    take(r, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data file paths the iceberg crate's parser reads in a manifest.
    fn full_parser_paths(manifest: &[u8]) -> Vec<String> {
        iceberg::spec::Manifest::parse_avro(manifest)
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.file_path().to_owned())
            .collect()
    }

    #[test]
    fn a_long_reads_as_avro_writes_it() {
        for v in [0i64, -1, 1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
            let bytes = apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap();
            let mut r = bytes.as_slice();
            assert_eq!(long(&mut r), Some(v));
            assert!(r.is_empty());
        }
        assert_eq!(long(&mut &[0x80u8][..]), None, "a cut long");
    }

    /// A manifest and a manifest list as the iceberg crate writes them (as engines do):
    /// read here, they name what the crate's own parser reads, and the cut or altered
    /// ones go to that parser.
    #[test]
    fn paths_read_here_are_the_full_parsers_paths() {
        use iceberg::spec::{
            DataContentType, DataFileBuilder, DataFileFormat, ManifestList, ManifestListWriter,
            ManifestWriterBuilder, NestedField, PartitionSpec, PrimitiveType,
            Schema as IcebergSchema, Struct, Type,
        };

        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let io = iceberg::io::FileIOBuilder::new(Arc::new(crate::WarehouseStorageFactory))
            .with_props([(
                crate::WAREHOUSE_ROOT_PROP.to_owned(),
                root.display().to_string(),
            )])
            .build();
        let schema = Arc::new(
            IcebergSchema::builder()
                .with_fields([
                    NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                ])
                .build()
                .unwrap(),
        );
        let spec = PartitionSpec::unpartition_spec();
        let manifest_path = format!("file://{}/m0.avro", root.display());
        let list_path = format!("file://{}/snap-1.avro", root.display());
        let files: Vec<String> = (0..3)
            .map(|i| format!("file://{}/data/f{i}.parquet", root.display()))
            .collect();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let out = io.new_output(&manifest_path).unwrap();
            let mut writer = ManifestWriterBuilder::new(out, Some(1), schema.clone(), spec.clone())
                .build_v2_data();
            for f in &files {
                let file = DataFileBuilder::default()
                    .content(DataContentType::Data)
                    .file_path(f.clone())
                    .file_format(DataFileFormat::Parquet)
                    .partition(Struct::empty())
                    .record_count(10)
                    .file_size_in_bytes(100)
                    .partition_spec_id(0)
                    .build()
                    .unwrap();
                writer.add_file(file, 1).unwrap();
            }
            let manifest = writer.write_manifest_file().await.unwrap();
            let out = io.new_output(&list_path).unwrap();
            let mut list = ManifestListWriter::v2(out.writer().await.unwrap(), 1, None, 1);
            list.add_manifests([manifest].into_iter()).unwrap();
            list.close().await.unwrap();
        });
        let manifest = std::fs::read(root.join("m0.avro")).unwrap();
        let list = std::fs::read(root.join("snap-1.avro")).unwrap();
        let full = full_parser_paths(&manifest);
        assert_eq!(full, files);
        assert_eq!(manifest_data_paths(&manifest), Some(full));
        assert_eq!(path_fields_agree(&manifest, true), Ok(()));
        assert_eq!(path_fields_agree(&list, false), Ok(()));
        let listed: Vec<String> =
            ManifestList::parse_with_version(&list, iceberg::spec::FormatVersion::V2)
                .unwrap()
                .consume_entries()
                .into_iter()
                .map(|m| m.manifest_path)
                .collect();
        assert_eq!(listed, std::slice::from_ref(&manifest_path));
        assert_eq!(manifest_list_paths(&list), Some(listed));
        // A manifest list is not a manifest, nor the other way round.
        assert_eq!(manifest_data_paths(&list), None);
        assert_eq!(manifest_list_paths(&manifest), None);
        // Cut anywhere, or with one byte of a block changed, the file is not read here.
        for cut in [5, manifest.len() / 2, manifest.len() - 1] {
            assert_eq!(manifest_data_paths(&manifest[..cut]), None, "cut at {cut}");
        }
        let mut sync_broken = manifest.clone();
        let last = sync_broken.len() - 1;
        sync_broken[last] ^= 0xff;
        assert_eq!(manifest_data_paths(&sync_broken), None);
    }

    /// Files PyIceberg 0.12 wrote (an append's manifest and its list, deflate-compressed):
    /// read here, not by the fallback, with the full parser's paths.
    #[test]
    fn pyiceberg_files_are_read_here() {
        use iceberg::spec::{FormatVersion, ManifestList};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pyiceberg");
        let manifest = std::fs::read(format!("{dir}/manifest.avro")).unwrap();
        let list = std::fs::read(format!("{dir}/manifest-list.avro")).unwrap();
        let full = full_parser_paths(&manifest);
        assert!(!full.is_empty());
        assert_eq!(manifest_data_paths(&manifest), Some(full));
        let listed: Vec<String> = ManifestList::parse_with_version(&list, FormatVersion::V2)
            .unwrap()
            .consume_entries()
            .into_iter()
            .map(|m| m.manifest_path)
            .collect();
        assert!(listed.len() > 1);
        assert_eq!(manifest_list_paths(&list), Some(listed));
    }

    /// A manifest whose `file_path` is not the field with id 100 is refused: Java and
    /// PyIceberg would read the other field.
    #[test]
    fn path_fields_whose_names_and_ids_disagree_are_refused() {
        let file = |schema: &str| {
            let schema = Schema::parse_str(schema).unwrap();
            apache_avro::Writer::new(&schema, Vec::new())
                .into_inner()
                .unwrap()
        };
        let manifest = |fields: &str| {
            file(&format!(
                r#"{{"type":"record","name":"e","fields":[{{"name":"status","type":"int","field-id":0}},
                {{"name":"data_file","field-id":2,"type":{{"type":"record","name":"r2","fields":[{fields}]}}}}]}}"#
            ))
        };
        let agreeing = manifest(r#"{"name":"file_path","type":"string","field-id":100}"#);
        assert_eq!(path_fields_agree(&agreeing, true), Ok(()));
        let swapped = manifest(
            r#"{"name":"file_path","type":"string","field-id":9999},{"name":"x","type":"string","field-id":100}"#,
        );
        let err = path_fields_agree(&swapped, true).unwrap_err();
        assert!(err.contains("field id 100"), "{err}");
        let twice = manifest(
            r#"{"name":"file_path","type":"string","field-id":100},{"name":"y","type":"string","field-id":100}"#,
        );
        assert!(path_fields_agree(&twice, true).is_err());
        let unnumbered = manifest(
            r#"{"name":"file_path","type":"string","field-id":101},{"name":"z","type":"string"}"#,
        );
        assert!(path_fields_agree(&unnumbered, true).is_err());
        // A data_file that is not a record in place is not looked into: refused.
        let hidden = file(
            r#"{"type":"record","name":"e","fields":[{"name":"data_file","field-id":2,"type":["null",{"type":"record","name":"r2","fields":[{"name":"file_path","type":"string","field-id":9}]}]}]}"#,
        );
        assert!(path_fields_agree(&hidden, true).is_err());
        // Without any field ids every reader goes by name.
        let plain = file(
            r#"{"type":"record","name":"e","fields":[{"name":"data_file","type":{"type":"record","name":"r2","fields":[{"name":"file_path","type":"string"}]}}]}"#,
        );
        assert_eq!(path_fields_agree(&plain, true), Ok(()));
        let list = |fields: &str| {
            file(&format!(
                r#"{{"type":"record","name":"m","fields":[{fields}]}}"#
            ))
        };
        assert_eq!(
            path_fields_agree(
                &list(r#"{"name":"manifest_path","type":"string","field-id":500}"#),
                false
            ),
            Ok(())
        );
        assert!(
            path_fields_agree(
                &list(r#"{"name":"manifest_path","type":"string","field-id":501},{"name":"p","type":"string","field-id":500}"#),
                false
            )
            .is_err()
        );
        // The files engines write agree.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pyiceberg");
        let read = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap();
        assert_eq!(path_fields_agree(&read("manifest.avro"), true), Ok(()));
        assert_eq!(
            path_fields_agree(&read("manifest-list.avro"), false),
            Ok(())
        );
    }

    #[test]
    fn files_that_are_not_what_they_seem_go_to_the_full_parser() {
        assert_eq!(manifest_list_paths(b""), None);
        assert_eq!(manifest_list_paths(b"PAR1...."), None);
        assert_eq!(manifest_data_paths(b"Obj\x01\x02"), None);
        // A schema longer than what is read here goes to the full parser.
        let long_schema = format!(
            r#"{{"type":"record","name":"r","doc":"{}","fields":[{{"name":"manifest_path","type":"string"}}]}}"#,
            "x".repeat(SCHEMA_TEXT_MAX)
        );
        let schema = Schema::parse_str(&long_schema).unwrap();
        let mut w = apache_avro::Writer::new(&schema, Vec::new());
        let mut record = apache_avro::types::Record::new(&schema).unwrap();
        record.put("manifest_path", "file:///w/t/m.avro");
        w.append(record).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(manifest_list_paths(&bytes), None);
        // A block of no records ends the file for Avro's readers: a file that goes on
        // after one is not read here.
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"}]}"#,
        )
        .unwrap();
        let mut w = apache_avro::Writer::new(&schema, Vec::new());
        let mut record = apache_avro::types::Record::new(&schema).unwrap();
        record.put("manifest_path", "file:///w/t/m.avro");
        w.append(record).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(
            manifest_list_paths(&bytes),
            Some(vec!["file:///w/t/m.avro".to_owned()])
        );
        let sync = bytes[bytes.len() - 16..].to_vec();
        let mut ended = bytes.clone();
        ended.extend([0u8, 0u8]);
        ended.extend(&sync);
        assert_eq!(manifest_list_paths(&ended), None);
    }
}
