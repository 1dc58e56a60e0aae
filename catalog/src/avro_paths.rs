//! The paths a manifest list or a manifest names, read for the commit check
//! (`table_files`). This is the only reader the check uses: a file it cannot read is
//! refused, never handed to a more lenient parser, because an attacker who can pick the
//! parser can pick the one that disagrees with Java and PyIceberg.
//!
//! The object container is read directly (header, codec, sync markers), with limits:
//! - **Schema gate.** The writer schema (at most `SCHEMA_TEXT_MAX`) may use only what
//!   Iceberg's manifests use: records written in place, arrays, maps, unions, enums,
//!   fixed and the primitives. A named type is refused if it refers to itself, so decoding
//!   cannot recurse without end. An array whose items can take no bytes is refused, so a
//!   few bytes cannot stand for a huge array. The schema is nested at most `DEPTH_MAX`
//!   deep.
//! - **Logical types dropped.** Every `logicalType` is removed before the schema is
//!   parsed. Avro lays each one out exactly as its underlying type, and apache avro's
//!   `fixed` + `uuid` (or `duration`) would read other bytes than Java does.
//! - **Decompression bounded.** Blocks are decompressed by floe (deflate, snappy with
//!   its checksum, zstandard), at most `BLOCK_BYTES_MAX` per block and
//!   `FILE_BYTES_MAX` per file.
//! - **Record counts bounded.** A block claims no more records than it has bytes, and a
//!   file has at most `RECORDS_MAX`.
//!
//! Each distinct writer schema is parsed once and kept: a client's manifests and lists
//! of one table carry the same one, and parsing it was most of what the check cost a
//! commit (issue 23's profile). `path_fields_agree` also refuses a schema whose path
//! fields' names and Iceberg field ids disagree.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use apache_avro::Schema;
use apache_avro::types::Value;
use parking_lot::Mutex;

/// Distinct writer schemas kept; past it the cache starts over.
const SCHEMAS_KEPT_MAX: usize = 64;

/// The longest writer schema read (an Iceberg manifest's is about 5-10 KiB): apache avro
/// resolves the schema's names again for every record it decodes, so a larger one would
/// make each record cost more than the file's bytes.
const SCHEMA_TEXT_MAX: usize = 16 << 10;

/// The most records of one file (a manifest of 8 MB, Java's default target, holds some
/// tens of thousands).
const RECORDS_MAX: i64 = 500_000;

/// The most bytes one block decompresses to, and all the blocks of one file together.
const BLOCK_BYTES_MAX: usize = 64 << 20;
const FILE_BYTES_MAX: usize = 256 << 20;

/// How deep a writer schema may nest (Iceberg's manifests nest about 5 deep).
const DEPTH_MAX: usize = 32;

/// The largest single allocation apache avro makes while decoding (a string, bytes, a
/// block) anywhere in the process: the scans read manifests through it too. Set once,
/// before any decoding (apache avro's default is 512 MiB).
pub(crate) fn limit_avro_allocations() {
    static SET: OnceLock<usize> = OnceLock::new();
    SET.get_or_init(|| apache_avro::util::max_allocation_bytes(BLOCK_BYTES_MAX));
}

/// The `manifest_path` of every entry of a manifest list.
pub(crate) fn manifest_list_paths(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    records(bytes, |record| {
        let path = string_field(record, "manifest_path")
            .ok_or("an entry has no manifest_path string (is it a manifest list?)")?;
        out.push(path.to_owned());
        Ok(())
    })?;
    Ok(out)
}

/// The `data_file.file_path` of every entry of a manifest (whatever its status).
pub(crate) fn manifest_data_paths(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    records(bytes, |entry| {
        let path = field(entry, "data_file")
            .and_then(|file| string_field(file, "file_path"))
            .ok_or("an entry has no data_file.file_path string (is it a manifest?)")?;
        out.push(path.to_owned());
        Ok(())
    })?;
    Ok(out)
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
/// field a name and an Iceberg field id that disagree: floe's check finds
/// `data_file.file_path` and `manifest_path` by name, Java and PyIceberg by field id
/// (2 and 100, 500), so where the two name different fields readers would read paths the
/// check never saw. A file whose header or schema does not parse is refused by
/// `manifest_data_paths` and `manifest_list_paths`.
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
    codec: Option<&'a [u8]>,
    /// What follows the header (the sync marker first).
    rest: &'a [u8],
}

fn header(bytes: &[u8]) -> Option<Header<'_>> {
    let mut r = bytes.strip_prefix(b"Obj\x01")?;
    let (mut schema, mut codec) = (None, None);
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
                b"avro.codec" => codec = Some(value),
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

/// A block's compression, as Avro names it.
#[derive(Debug, Clone, Copy)]
enum Codec {
    Null,
    Deflate,
    Snappy,
    Zstandard,
}

impl Codec {
    fn named(name: Option<&[u8]>) -> Result<Codec, String> {
        match name {
            None | Some(b"null") => Ok(Codec::Null),
            Some(b"deflate") => Ok(Codec::Deflate),
            Some(b"snappy") => Ok(Codec::Snappy),
            Some(b"zstandard") => Ok(Codec::Zstandard),
            Some(other) => Err(format!(
                "its Avro codec {:?} is not one floe reads (null, deflate, snappy, zstandard)",
                String::from_utf8_lossy(other)
            )),
        }
    }

    /// The block's bytes, decompressed: at most `limit` of them, else an error.
    fn decompress(self, block: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let too_large = || format!("a block decompresses to more than {limit} bytes");
        let out = match self {
            Codec::Null => block.to_vec(),
            Codec::Deflate => miniz_oxide::inflate::decompress_to_vec_with_limit(block, limit)
                .map_err(|e| match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => too_large(),
                    _ => format!("a deflate block does not decompress ({:?})", e.status),
                })?,
            Codec::Snappy => {
                // Snappy blocks end with the CRC-32 of their decompressed bytes.
                let (data, crc) = block
                    .split_last_chunk::<4>()
                    .ok_or("a snappy block is shorter than its checksum")?;
                let len = snap::raw::decompress_len(data)
                    .map_err(|e| format!("a snappy block does not decompress: {e}"))?;
                if len > limit {
                    return Err(too_large());
                }
                let out = snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| format!("a snappy block does not decompress: {e}"))?;
                if crc32fast::hash(&out) != u32::from_be_bytes(*crc) {
                    return Err("a snappy block fails its checksum".to_owned());
                }
                out
            }
            Codec::Zstandard => {
                let mut out = Vec::new();
                zstd::stream::read::Decoder::new(block)
                    .map_err(|e| format!("a zstandard block does not decompress: {e}"))?
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("a zstandard block does not decompress: {e}"))?;
                out
            }
        };
        if out.len() > limit {
            return Err(too_large());
        }
        Ok(out)
    }
}

/// Calls `each` with every record of an Avro object container file, or says why the file
/// is not read.
fn records(
    bytes: &[u8],
    mut each: impl FnMut(&Value) -> Result<(), &'static str>,
) -> Result<(), String> {
    let Header {
        schema,
        codec,
        rest: mut r,
    } = header(bytes).ok_or("it is not an Avro object container file")?;
    let cut = || "the Avro file is cut short or damaged".to_owned();
    let sync = take(&mut r, 16).ok_or_else(cut)?;
    let codec = Codec::named(codec)?;
    let schema = schema.ok_or("its Avro header has no schema")?;
    if schema.len() > SCHEMA_TEXT_MAX {
        return Err(format!(
            "its Avro schema is longer than {SCHEMA_TEXT_MAX} bytes (SCHEMA_TEXT_MAX)"
        ));
    }
    let schema = writer_schema(schema)?;
    let (mut records, mut decompressed) = (0i64, 0usize);
    while !r.is_empty() {
        let count = long(&mut r).ok_or_else(cut)?;
        // A block of no records ends the file for Avro's readers (Java's, PyIceberg's):
        // what follows is not read here either.
        if count == 0 {
            break;
        }
        if count < 0 {
            return Err("an Avro block claims a negative number of records".to_owned());
        }
        records = records.saturating_add(count);
        if records > RECORDS_MAX {
            return Err(format!(
                "it holds more than {RECORDS_MAX} records (RECORDS_MAX)"
            ));
        }
        let size = usize::try_from(long(&mut r).ok_or_else(cut)?).map_err(|_| cut())?;
        let compressed = take(&mut r, size).ok_or_else(cut)?;
        let limit = BLOCK_BYTES_MAX.min(FILE_BYTES_MAX - decompressed);
        let block = codec.decompress(compressed, limit)?;
        decompressed += block.len();
        if take(&mut r, 16).ok_or_else(cut)? != sync {
            return Err("an Avro block does not end with the file's sync marker".to_owned());
        }
        // Every record takes at least one byte (the schema gate): a count larger than
        // the block cannot be true, and is not looped over.
        if count as u64 > block.len() as u64 {
            return Err(cut());
        }
        let mut at = block.as_slice();
        for _ in 0..count {
            let record = apache_avro::from_avro_datum(&schema, &mut at, None)
                .map_err(|e| format!("an Avro record does not decode: {e}"))?;
            each(&record).map_err(str::to_owned)?;
        }
        if !at.is_empty() {
            return Err("an Avro block has bytes after its records".to_owned());
        }
    }
    Ok(())
}

/// The writer schema of this text, checked and without logical types, parsed once.
fn writer_schema(text: &[u8]) -> Result<Arc<Schema>, String> {
    static SCHEMAS: Kept<Result<Arc<Schema>, String>> = Kept::new();
    SCHEMAS.get_or(text, || {
        let mut json: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| format!("its Avro schema is not JSON: {e}"))?;
        let mut gate = Gate::default();
        if !json.is_object() || json["type"] != "record" {
            return Err("its Avro schema is not a record".to_owned());
        }
        if gate.check(&mut json, 0)? {
            return Err("its Avro records can take no bytes".to_owned());
        }
        let schema =
            Schema::parse(&json).map_err(|e| format!("its Avro schema does not parse: {e}"))?;
        Ok(Arc::new(schema))
    })
}

/// The schema gate: what a writer schema may use, checked while its logical types are
/// taken off (see the module's documentation).
#[derive(Default)]
struct Gate {
    /// Named types being defined (the ones a reference may not name: recursion).
    open: Vec<String>,
    /// Named types defined, and whether a value of each can take no bytes.
    defined: HashMap<String, bool>,
}

impl Gate {
    /// Checks one schema node; returns whether its values can be encoded in no bytes.
    fn check(&mut self, node: &mut serde_json::Value, depth: usize) -> Result<bool, String> {
        use serde_json::Value as J;
        if depth > DEPTH_MAX {
            return Err(format!("its Avro schema nests deeper than {DEPTH_MAX}"));
        }
        match node {
            J::String(name) => self.named(name),
            J::Array(branches) => {
                for branch in branches {
                    self.check(branch, depth + 1)?;
                }
                // A union writes its branch's index.
                Ok(false)
            }
            J::Object(object) => {
                object.remove("logicalType");
                let kind = object
                    .get("type")
                    .cloned()
                    .ok_or("an Avro schema node has no type")?;
                match kind.as_str() {
                    Some("record" | "error") => {
                        let name = simple_name(object.get("name"))?;
                        self.open.push(name.clone());
                        let mut empty = true;
                        let fields = object
                            .get_mut("fields")
                            .and_then(J::as_array_mut)
                            .ok_or("an Avro record has no fields")?;
                        for field in fields {
                            let ty = field
                                .get_mut("type")
                                .ok_or("an Avro record field has no type")?;
                            empty &= self.check(ty, depth + 1)?;
                        }
                        self.open.pop();
                        self.defined.insert(name, empty);
                        Ok(empty)
                    }
                    Some("enum") => {
                        self.defined.insert(simple_name(object.get("name"))?, false);
                        Ok(false)
                    }
                    Some("fixed") => {
                        let empty = object.get("size").and_then(J::as_u64) == Some(0);
                        self.defined.insert(simple_name(object.get("name"))?, empty);
                        Ok(empty)
                    }
                    Some("array" | "map") => {
                        let key = if kind == "array" { "items" } else { "values" };
                        let item = object
                            .get_mut(key)
                            .ok_or_else(|| format!("an Avro {kind} has no {key}"))?;
                        if self.check(item, depth + 1)? && key == "items" {
                            return Err("its Avro schema has an array of items that take no bytes"
                                .to_owned());
                        }
                        Ok(false)
                    }
                    Some(_) => {
                        // A primitive written as an object ({"type": "long", ...}).
                        let ty = object.get_mut("type").ok_or("an Avro node has no type")?;
                        self.check(ty, depth + 1)
                    }
                    None => {
                        let ty = object.get_mut("type").ok_or("an Avro node has no type")?;
                        self.check(ty, depth + 1)
                    }
                }
            }
            _ => Err("an Avro schema node is neither a name, a union nor an object".to_owned()),
        }
    }

    /// A type given by name: a primitive, or a named type defined before and not open.
    fn named(&self, name: &str) -> Result<bool, String> {
        match name {
            "null" => Ok(true),
            "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string" => Ok(false),
            _ => {
                let simple = name.rsplit('.').next().unwrap_or(name);
                if self.open.iter().any(|n| n == simple) {
                    return Err(format!(
                        "its Avro schema's type {name} contains itself (Iceberg's manifests do not recurse)"
                    ));
                }
                self.defined
                    .get(simple)
                    .copied()
                    .ok_or_else(|| format!("its Avro schema names an unknown type {name}"))
            }
        }
    }
}

/// A named type's name without its namespace (compared conservatively).
fn simple_name(name: Option<&serde_json::Value>) -> Result<String, String> {
    let name = name
        .and_then(serde_json::Value::as_str)
        .ok_or("an Avro named type has no name")?;
    Ok(name.rsplit('.').next().unwrap_or(name).to_owned())
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
        assert_eq!(manifest_data_paths(&manifest), Ok(full));
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
        assert_eq!(manifest_list_paths(&list), Ok(listed));
        // A manifest list is not a manifest, nor the other way round.
        assert!(
            manifest_data_paths(&list)
                .unwrap_err()
                .contains("is it a manifest?")
        );
        assert!(manifest_list_paths(&manifest).is_err());
        // Cut anywhere, or with one byte of a block changed, the file is refused.
        for cut in [5, manifest.len() / 2, manifest.len() - 1] {
            assert!(
                manifest_data_paths(&manifest[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut sync_broken = manifest.clone();
        let last = sync_broken.len() - 1;
        sync_broken[last] ^= 0xff;
        assert!(manifest_data_paths(&sync_broken).is_err());
    }

    /// Files PyIceberg 0.12 wrote (an append's manifest and its list, deflate-compressed):
    /// read here with the full parser's paths.
    #[test]
    fn pyiceberg_files_are_read_here() {
        use iceberg::spec::{FormatVersion, ManifestList};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pyiceberg");
        let manifest = std::fs::read(format!("{dir}/manifest.avro")).unwrap();
        let list = std::fs::read(format!("{dir}/manifest-list.avro")).unwrap();
        let full = full_parser_paths(&manifest);
        assert!(!full.is_empty());
        assert_eq!(manifest_data_paths(&manifest), Ok(full));
        let listed: Vec<String> = ManifestList::parse_with_version(&list, FormatVersion::V2)
            .unwrap()
            .consume_entries()
            .into_iter()
            .map(|m| m.manifest_path)
            .collect();
        assert!(listed.len() > 1);
        assert_eq!(manifest_list_paths(&list), Ok(listed));
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
    fn files_that_are_not_what_they_seem_are_refused() {
        assert!(manifest_list_paths(b"").is_err());
        assert!(manifest_list_paths(b"PAR1....").is_err());
        assert!(manifest_data_paths(b"Obj\x01\x02").is_err());
        // A schema longer than what is read here is refused.
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
        assert!(
            manifest_list_paths(&bytes)
                .unwrap_err()
                .contains("SCHEMA_TEXT_MAX")
        );
        // A block of no records ends the file for Avro's readers: what follows it is not
        // read here either.
        let schema = Schema::parse_str(LIST_SCHEMA).unwrap();
        let mut w = apache_avro::Writer::new(&schema, Vec::new());
        let mut record = apache_avro::types::Record::new(&schema).unwrap();
        record.put("manifest_path", "file:///w/t/m.avro");
        w.append(record).unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(
            manifest_list_paths(&bytes),
            Ok(vec!["file:///w/t/m.avro".to_owned()])
        );
        let sync = bytes[bytes.len() - 16..].to_vec();
        let mut ended = bytes.clone();
        ended.extend([0u8, 0u8]);
        ended.extend(&sync);
        ended.extend([2u8, 4, b'x', b'y', 0, 0]);
        assert_eq!(
            manifest_list_paths(&ended),
            Ok(vec!["file:///w/t/m.avro".to_owned()])
        );
    }

    const LIST_SCHEMA: &str =
        r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"}]}"#;
    const SYNC: [u8; 16] = [7; 16];

    fn avro_long(v: i64) -> Vec<u8> {
        apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap()
    }

    fn avro_bytes(b: &[u8]) -> Vec<u8> {
        let mut out = avro_long(b.len() as i64);
        out.extend_from_slice(b);
        out
    }

    /// An object container written by hand: one block of `count` records (`data`,
    /// already compressed with `codec`).
    fn container(schema: &str, codec: &str, count: i64, data: &[u8]) -> Vec<u8> {
        let mut out = b"Obj\x01".to_vec();
        out.extend(avro_long(2));
        out.extend(avro_bytes(b"avro.schema"));
        out.extend(avro_bytes(schema.as_bytes()));
        out.extend(avro_bytes(b"avro.codec"));
        out.extend(avro_bytes(codec.as_bytes()));
        out.extend(avro_long(0));
        out.extend(SYNC);
        out.extend(avro_long(count));
        out.extend(avro_bytes(data));
        out.extend(SYNC);
        out
    }

    /// A `fixed` with a logical type is read as the fixed it is laid out as (Java and
    /// PyIceberg do; apache avro would read a `uuid` there as a string, and so other
    /// bytes as the path).
    #[test]
    fn logical_types_are_read_as_their_layout() {
        let schema = r#"{"type":"record","name":"r","fields":[
            {"name":"u","type":{"type":"fixed","name":"f16","size":16,"logicalType":"uuid"}},
            {"name":"d","type":{"type":"fixed","name":"f12","size":12,"logicalType":"duration"}},
            {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"manifest_path","type":"string"}]}"#;
        let path = "file:///w/t/metadata/m.avro";
        let mut record = Vec::new();
        // Sixteen bytes that read as a string would be a 2-byte path "ev".
        record.extend([4u8, b'e', b'v']);
        record.extend([0u8; 13]);
        record.extend([1u8; 12]);
        record.extend(avro_long(1_700_000_000_000_000));
        record.extend(avro_bytes(path.as_bytes()));
        let file = container(schema, "null", 1, &record);
        assert_eq!(manifest_list_paths(&file), Ok(vec![path.to_owned()]));
    }

    #[test]
    fn schemas_that_could_make_decoding_unbounded_are_refused() {
        let refused = |schema: &str, why: &str| {
            let file = container(schema, "null", 1, &[2, b'x']);
            let err = manifest_list_paths(&file).unwrap_err();
            assert!(err.contains(why), "{schema}: {err}");
        };
        refused(
            r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"next","type":["null","r"]}]}"#,
            "contains itself",
        );
        refused(
            r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"a","type":{"type":"array","items":"null"}}]}"#,
            "array of items that take no bytes",
        );
        refused(
            r#"{"type":"record","name":"r","fields":[{"name":"n","type":"null"}]}"#,
            "can take no bytes",
        );
        refused(
            r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"x","type":"nowhere"}]}"#,
            "unknown type nowhere",
        );
        let deep = format!(
            r#"{{"type":"record","name":"r","fields":[{{"name":"manifest_path","type":"string"}},{{"name":"a","type":{}"int"{}}}]}}"#,
            r#"{"type":"array","items":"#.repeat(DEPTH_MAX + 1),
            "}".repeat(DEPTH_MAX + 1)
        );
        refused(&deep, "nests deeper");
        refused(
            LIST_SCHEMA.replace("record", "enum").as_str(),
            "not a record",
        );
        // A block that claims more records than it has bytes.
        let file = container(LIST_SCHEMA, "null", 1_000, &[2, b'x']);
        assert!(manifest_list_paths(&file).is_err());
        // A codec floe does not read.
        let file = container(LIST_SCHEMA, "bzip2", 1, &[2, b'x']);
        assert!(manifest_list_paths(&file).unwrap_err().contains("codec"));
    }

    /// Blocks that decompress past the limit are refused without being decompressed
    /// whole; blocks within it read.
    #[test]
    fn decompression_is_bounded() {
        let record = avro_bytes(b"file:///w/t/m.avro");
        let deflated = miniz_oxide::deflate::compress_to_vec(&record, 6);
        assert_eq!(
            manifest_list_paths(&container(LIST_SCHEMA, "deflate", 1, &deflated)),
            Ok(vec!["file:///w/t/m.avro".to_owned()])
        );
        let zeros = vec![0u8; BLOCK_BYTES_MAX + 1];
        let bomb = miniz_oxide::deflate::compress_to_vec(&zeros, 1);
        let err = manifest_list_paths(&container(LIST_SCHEMA, "deflate", 1, &bomb)).unwrap_err();
        assert!(err.contains("decompresses to more than"), "{err}");
        let bomb = zstd::stream::encode_all(&zeros[..], 1).unwrap();
        let err = manifest_list_paths(&container(LIST_SCHEMA, "zstandard", 1, &bomb)).unwrap_err();
        assert!(err.contains("decompresses to more than"), "{err}");
        let mut snappy = snap::raw::Encoder::new().compress_vec(&record).unwrap();
        snappy.extend(crc32fast::hash(&record).to_be_bytes());
        assert_eq!(
            manifest_list_paths(&container(LIST_SCHEMA, "snappy", 1, &snappy)),
            Ok(vec!["file:///w/t/m.avro".to_owned()])
        );
        let last = snappy.len() - 1;
        snappy[last] ^= 1;
        let err = manifest_list_paths(&container(LIST_SCHEMA, "snappy", 1, &snappy)).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        // A snappy block that claims a length past the limit (its header is a varint).
        let mut claims = Vec::new();
        let mut n = (BLOCK_BYTES_MAX + 1) as u64;
        while n >= 0x80 {
            claims.push((n as u8) | 0x80);
            n >>= 7;
        }
        claims.push(n as u8);
        claims.extend([0u8; 8]);
        let err = manifest_list_paths(&container(LIST_SCHEMA, "snappy", 1, &claims)).unwrap_err();
        assert!(err.contains("decompresses to more than"), "{err}");
    }
}
