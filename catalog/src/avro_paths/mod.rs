//! The paths a manifest list or a manifest names, read for the commit check
//! (`table_files`) by floe's own Avro reader. It is the only reader the check uses: a file
//! it cannot read is refused, never handed to a more lenient parser, because an attacker
//! who can pick the parser can pick the one that disagrees with Java and PyIceberg, the
//! readers that matter (they read every later scan's paths).
//!
//! **It reads only what Iceberg's manifests use, as Java and PyIceberg read it:**
//! - **Types.** Records written in place (no named references, so nothing recurses),
//!   arrays, maps, `["null", T]` unions, fixed of 1 to 64 bytes and the primitives.
//!   Enums, other unions and references are refused.
//! - **Logical types.** Only these are accepted: `date` on int; `time-micros` and the
//!   `timestamp-*` types on long; `uuid` on fixed(16); `decimal` on a fixed of exactly the
//!   bytes its precision needs; `map` on an array. Java reads a `uuid` as 16 raw bytes
//!   whatever its base type, and PyIceberg reads a decimal as the bytes its precision
//!   needs, so any other pairing would be read differently by them. A `logicalType` on a
//!   field (not its type) is refused.
//! - **Finding the paths.** `manifest_path` (field id 500), `data_file` (2) and
//!   `file_path` (100) are found by field id, as Java and PyIceberg find them. A field id
//!   must be an integer within i32, used once per record. The field with the id must carry
//!   the name, and no other field may carry it. Only a schema with no field ids at all is
//!   read by name, as every reader does then.
//! - **Bounded work.** An array or a map block must have a positive count, and no larger
//!   than its bytes. An array's items must take at least a byte. Every record a block
//!   claims must be there, and a file has at most `RECORDS_MAX`. One commit's files may
//!   visit at most `VISITS_MAX` values and decompress to `COMMIT_BYTES_MAX`. Blocks are
//!   decompressed by floe (deflate, snappy with its checksum, zstandard with a bounded
//!   window), at most `BLOCK_BYTES_MAX` each and `FILE_BYTES_MAX` per file.
//!
//! Each distinct writer schema is compiled once and kept: a client's manifests and lists
//! of one table carry the same one, and parsing it was most of what the check cost a
//! commit (issue 23's profile). apache avro is not used here; `limit_avro_allocations`
//! bounds it for the scans, which read manifests through the iceberg crate.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::Value as Json;

/// Distinct writer schemas kept; past it the cache starts over.
const SCHEMAS_KEPT_MAX: usize = 64;

/// The longest writer schema read (an Iceberg manifest's is about 1.5-10 KiB).
const SCHEMA_TEXT_MAX: usize = 64 << 10;

/// The most bytes one block decompresses to, and all the blocks of one file together.
const BLOCK_BYTES_MAX: usize = 64 << 20;
const FILE_BYTES_MAX: usize = 256 << 20;

/// The most values decoded for one commit, in all its files (each field, item and entry
/// counts one), and the most bytes its blocks decompress to.
const VISITS_MAX: u64 = 100_000_000;
const COMMIT_BYTES_MAX: usize = 1 << 30;

/// The most records of one file (a manifest of 8 MB, Java's default target, holds some
/// tens of thousands).
const RECORDS_MAX: i64 = 500_000;

/// What one commit's check may still spend reading its lists and manifests.
#[derive(Debug)]
pub(crate) struct Budget {
    visits: u64,
    bytes: usize,
}

impl Budget {
    pub(crate) fn per_commit() -> Budget {
        Budget {
            visits: VISITS_MAX,
            bytes: COMMIT_BYTES_MAX,
        }
    }
}

/// How deep a writer schema may nest (Iceberg's manifests nest about 5 deep), and how
/// many types it may have.
const DEPTH_MAX: usize = 32;
const NODES_MAX: usize = 20_000;

/// The largest `fixed` read (an Iceberg `fixed[L]` column is written as a fixed of L
/// bytes; skipping one costs only a bounds check).
const FIXED_MAX: u64 = 1 << 20;

/// The largest single allocation apache avro makes while decoding (a string, bytes, a
/// block) anywhere in the process: the scans read manifests through the iceberg crate,
/// which uses it. It can be set only before the process's first Avro decode (apache
/// avro's default is 512 MiB), so `floe` calls this first thing, and every catalog when
/// it is made. Returns the limit in force.
pub fn limit_avro_allocations() -> usize {
    static SET: OnceLock<usize> = OnceLock::new();
    *SET.get_or_init(|| apache_avro::util::max_allocation_bytes(BLOCK_BYTES_MAX))
}

/// The `manifest_path` of every entry of a manifest list.
pub(crate) fn manifest_list_paths(
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<String>, String> {
    static PLANS: Kept<Result<Arc<Plan>, String>> = Kept::new();
    paths(bytes, &PLANS, &[(500, "manifest_path")], budget)
}

/// The `data_file.file_path` of every entry of a manifest (whatever its status).
pub(crate) fn manifest_data_paths(
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<String>, String> {
    static PLANS: Kept<Result<Arc<Plan>, String>> = Kept::new();
    paths(
        bytes,
        &PLANS,
        &[(2, "data_file"), (100, "file_path")],
        budget,
    )
}

/// A writer schema's type, as far as the check reads it.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Record(Vec<Node>),
    Array(Box<Node>),
    Map(Box<Node>),
    /// `["null", T]`.
    Optional(Box<Node>),
}

/// A compiled writer schema: its root record, and the field indexes that lead from it to
/// the path (one per level).
#[derive(Debug)]
struct Plan {
    root: Node,
    path: Vec<usize>,
}

fn paths(
    bytes: &[u8],
    plans: &Kept<Result<Arc<Plan>, String>>,
    want: &[(i64, &str)],
    budget: &mut Budget,
) -> Result<Vec<String>, String> {
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
    let plan = plans.get_or(schema, || compile(schema, want).map(Arc::new))?;
    let mut out = Vec::new();
    let mut decoder = Decoder { budget };
    let mut records = 0i64;
    let mut decompressed = 0usize;
    while !r.is_empty() {
        let count = long(&mut r).ok_or_else(cut)?;
        // A block of no records ends the file for Avro's readers (Java's, PyIceberg's):
        // what follows is not read here either. It is read whole, as readers that go on
        // past it (avro-c) would: it must be empty, end with the sync marker and end the
        // file.
        if count == 0 {
            let size = usize::try_from(long(&mut r).ok_or_else(cut)?).map_err(|_| cut())?;
            let data = take(&mut r, size).ok_or_else(cut)?;
            let empty = codec.decompress(data, 0).is_ok_and(|b| b.is_empty());
            if !empty || take(&mut r, 16).ok_or_else(cut)? != sync || !r.is_empty() {
                return Err(
                    "an Avro block of no records carries data or does not end the file".to_owned(),
                );
            }
            break;
        }
        records = records.saturating_add(count);
        if records > RECORDS_MAX {
            return Err(format!(
                "it holds more than {RECORDS_MAX} records (RECORDS_MAX)"
            ));
        }
        if count < 0 {
            return Err("an Avro block claims a negative number of records".to_owned());
        }
        let size = usize::try_from(long(&mut r).ok_or_else(cut)?).map_err(|_| cut())?;
        let compressed = take(&mut r, size).ok_or_else(cut)?;
        let limit = BLOCK_BYTES_MAX
            .min(FILE_BYTES_MAX - decompressed)
            .min(decoder.budget.bytes);
        let block = codec.decompress(compressed, limit)?;
        decompressed += block.len();
        decoder.budget.bytes -= block.len();
        if take(&mut r, 16).ok_or_else(cut)? != sync {
            return Err("an Avro block does not end with the file's sync marker".to_owned());
        }
        // Every record takes at least a byte (`compile`): a larger count is not true.
        if count as u64 > block.len() as u64 {
            return Err(cut());
        }
        let mut at = block.as_slice();
        for _ in 0..count {
            out.push(decoder.record(&plan.root, &plan.path, &mut at)?);
        }
        if !at.is_empty() {
            return Err("an Avro block has bytes after its records".to_owned());
        }
    }
    Ok(out)
}

/// Compiles a writer schema for reading the path `want` leads to (a string).
fn compile(text: &[u8], want: &[(i64, &str)]) -> Result<Plan, String> {
    let json: Json =
        serde_json::from_slice(text).map_err(|e| format!("its Avro schema is not JSON: {e}"))?;
    let mut nodes = Types::default();
    let root = node(&json, 0, &mut nodes)?;
    if empty(&root) {
        return Err("its Avro records take no bytes".to_owned());
    }
    let mut path = Vec::new();
    let (mut json_at, mut node_at) = (&json, &root);
    for (id, name) in want {
        let Node::Record(children) = node_at else {
            return Err(format!(
                "its Avro schema does not write the record holding {name} in place"
            ));
        };
        let fields = json_at["fields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let index = select(fields, *id, name)?;
        path.push(index);
        json_at = &fields[index]["type"];
        node_at = &children[index];
    }
    if !matches!(node_at, Node::String) {
        let (_, name) = want[want.len() - 1];
        return Err(format!(
            "its Avro schema does not write {name} as a required string"
        ));
    }
    Ok(Plan { root, path })
}

/// The index of the field Java and PyIceberg read for `id`: the one field with the id,
/// which must carry `name`, and no other field may. Without any field ids, by name.
fn select(fields: &[Json], id: i64, name: &str) -> Result<usize, String> {
    let by_id: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i]["field-id"].as_i64() == Some(id))
        .collect();
    let by_name: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i]["name"].as_str() == Some(name))
        .collect();
    let ids_used = fields.iter().any(|f| f.get("field-id").is_some());
    match (by_id.as_slice(), by_name.as_slice()) {
        ([a], [b]) if a == b => Ok(*a),
        ([], [b]) if !ids_used => Ok(*b),
        ([], []) => Err(format!(
            "its Avro schema has no field {name} (field id {id})"
        )),
        _ => Err(format!(
            "its Avro schema does not give field id {id} to the one field named {name} (readers that go by id and readers that go by name would read different fields)"
        )),
    }
}

/// What `node` has seen of a schema: how many types, and the `fixed` types by name (the
/// one kind of named type a schema may refer to again: Java's writer names a second
/// fixed of the same size and logical type by reference).
#[derive(Default)]
struct Types {
    count: usize,
    /// Every named type by its simple name: `Some(size)` for a fixed, `None` for a
    /// record. A reference may name only a fixed, and a simple name only one type (two
    /// fixed of one size excepted), so no reader can resolve a reference to another type.
    named: HashMap<String, Option<usize>>,
}

impl Types {
    fn define(&mut self, name: Option<&Json>, fixed: Option<usize>) -> Result<(), String> {
        let name = name
            .and_then(Json::as_str)
            .ok_or("an Avro named type has no name")?;
        match self.named.insert(simple_name(name).to_owned(), fixed) {
            None => Ok(()),
            Some(before) if before.is_some() && before == fixed => Ok(()),
            Some(_) => Err(format!(
                "its Avro schema has two types named {name} (readers could resolve a reference to either)"
            )),
        }
    }
}

/// A named type's name without its namespace. Two `fixed` types with one simple name must
/// have one size, so however a reader resolves a reference it reads the same bytes.
fn simple_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// One type of a writer schema, checked against what the check reads.
fn node(json: &Json, depth: usize, nodes: &mut Types) -> Result<Node, String> {
    nodes.count += 1;
    if depth > DEPTH_MAX || nodes.count > NODES_MAX {
        return Err(format!(
            "its Avro schema nests deeper than {DEPTH_MAX} or has more than {NODES_MAX} types"
        ));
    }
    match json {
        Json::String(name) => primitive(name)
            .or_else(|| {
                nodes
                    .named
                    .get(simple_name(name))
                    .copied()
                    .flatten()
                    .map(Node::Fixed)
            })
            .ok_or_else(|| {
                format!(
                    "its Avro schema refers to the type {name} by name (floe reads types written in place, as Iceberg writes them, and refers again only to a fixed)"
                )
            }),
        Json::Array(branches) => match branches.as_slice() {
            [Json::String(null), other] if null == "null" && !other.is_array() => {
                let inner = node(other, depth + 1, nodes)?;
                if matches!(inner, Node::Null) {
                    return Err("its Avro schema has a union of null and null".to_owned());
                }
                Ok(Node::Optional(Box::new(inner)))
            }
            _ => Err(
                "its Avro schema has a union other than [\"null\", type] (Iceberg writes no other)"
                    .to_owned(),
            ),
        },
        Json::Object(object) => {
            let logical = match object.get("logicalType") {
                None => None,
                Some(Json::String(l)) => Some(l.as_str()),
                Some(_) => return Err("its Avro schema has a logicalType that is not a name".to_owned()),
            };
            let kind = object
                .get("type")
                .and_then(Json::as_str)
                .ok_or("its Avro schema has a type that is neither a name nor written in place")?;
            let refused = || {
                format!(
                    "its Avro schema has logicalType {:?} on {kind}, which Java or PyIceberg would read other than as its {kind}",
                    logical.unwrap_or_default()
                )
            };
            match kind {
                "record" => {
                    if logical.is_some() {
                        return Err(refused());
                    }
                    nodes.define(object.get("name"), None)?;
                    record(object.get("fields"), depth, nodes)
                }
                "array" => {
                    if logical.is_some_and(|l| l != "map") {
                        return Err(refused());
                    }
                    let items = node(
                        object.get("items").ok_or("an Avro array has no items")?,
                        depth + 1,
                        nodes,
                    )?;
                    if empty(&items) {
                        return Err("its Avro schema has an array of items that take no bytes".to_owned());
                    }
                    Ok(Node::Array(Box::new(items)))
                }
                "map" => {
                    if logical.is_some() {
                        return Err(refused());
                    }
                    let values = object.get("values").ok_or("an Avro map has no values")?;
                    Ok(Node::Map(Box::new(node(values, depth + 1, nodes)?)))
                }
                "fixed" => {
                    let size = object
                        .get("size")
                        .and_then(Json::as_u64)
                        .filter(|s| (1..=FIXED_MAX).contains(s))
                        .ok_or_else(|| format!("an Avro fixed is not 1 to {FIXED_MAX} bytes"))?;
                    match logical {
                        None => {}
                        Some("uuid") if size == 16 => {}
                        Some("decimal")
                            if object
                                .get("precision")
                                .and_then(Json::as_u64)
                                .is_some_and(|p| decimal_bytes(p) == Some(size)) => {}
                        Some(_) => return Err(refused()),
                    }
                    let size = size as usize;
                    nodes.define(object.get("name"), Some(size))?;
                    Ok(Node::Fixed(size))
                }
                name => {
                    let base = primitive(name).ok_or_else(|| {
                        format!("its Avro schema has the type {name}, which Iceberg's manifests do not use")
                    })?;
                    let agreed = match (&base, logical) {
                        (_, None) => true,
                        (Node::Int, Some("date")) => true,
                        (Node::Long, Some(l)) => l == "time-micros" || l.starts_with("timestamp-") || l.starts_with("local-timestamp-"),
                        _ => false,
                    };
                    if !agreed {
                        return Err(refused());
                    }
                    Ok(base)
                }
            }
        }
        _ => Err("its Avro schema has a type that is neither a name, a union nor an object".to_owned()),
    }
}

fn record(fields: Option<&Json>, depth: usize, nodes: &mut Types) -> Result<Node, String> {
    let fields = fields
        .and_then(Json::as_array)
        .ok_or("an Avro record has no fields")?;
    let (mut names, mut ids) = (HashSet::new(), HashSet::new());
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let name = field["name"]
            .as_str()
            .ok_or("an Avro record field has no name")?;
        if !names.insert(name) {
            return Err(format!("its Avro schema has two fields named {name}"));
        }
        if let Some(id) = field.get("field-id") {
            let id = id
                .as_i64()
                .filter(|i| i32::try_from(*i).is_ok())
                .ok_or_else(|| format!("field {name}'s field-id is not an integer"))?;
            if !ids.insert(id) {
                return Err(format!("its Avro schema gives field id {id} to two fields"));
            }
        }
        if field.get("logicalType").is_some() {
            return Err(format!(
                "its Avro field {name} carries a logicalType itself (readers disagree on it)"
            ));
        }
        let ty = field
            .get("type")
            .ok_or("an Avro record field has no type")?;
        out.push(node(ty, depth + 1, nodes)?);
    }
    Ok(Node::Record(out))
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

/// Whether a value of this type can take no bytes.
fn empty(node: &Node) -> bool {
    match node {
        Node::Null => true,
        Node::Record(fields) => fields.iter().all(empty),
        _ => false,
    }
}

/// The bytes a decimal of `precision` digits takes (Iceberg's and PyIceberg's rule: the
/// fewest whose two's complement holds 10^precision - 1).
fn decimal_bytes(precision: u64) -> Option<u64> {
    if !(1..=38).contains(&precision) {
        return None;
    }
    let max = 10u128.pow(precision as u32) - 1;
    (1..=16u64).find(|n| max < 1u128 << (8 * n - 1))
}

/// Decodes records, counting the values it visits against the commit's budget.
struct Decoder<'b> {
    budget: &'b mut Budget,
}

impl Decoder<'_> {
    fn visit(&mut self) -> Result<(), String> {
        self.budget.visits = self.budget.visits.checked_sub(1).ok_or_else(|| {
            format!("the commit's files hold more than {VISITS_MAX} values (VISITS_MAX)")
        })?;
        Ok(())
    }

    /// Decodes one record of `root` and returns the string `path` leads to.
    fn record(&mut self, root: &Node, path: &[usize], r: &mut &[u8]) -> Result<String, String> {
        let Node::Record(fields) = root else {
            return Err("the Avro schema's root is not a record".to_owned());
        };
        let (want, rest) = path.split_first().ok_or("no path to read")?;
        let mut found = None;
        for (i, field) in fields.iter().enumerate() {
            if i == *want {
                found = Some(if rest.is_empty() {
                    self.visit()?;
                    let s = bytes_of(r).ok_or("the Avro file is cut short or damaged")?;
                    std::str::from_utf8(s)
                        .map_err(|_| "a path is not UTF-8".to_owned())?
                        .to_owned()
                } else {
                    self.record(field, rest, r)?
                });
            } else {
                self.skip(field, r)?;
            }
        }
        found.ok_or_else(|| "no path to read".to_owned())
    }

    /// Reads past one value of `node`, checking it as Java's decoder would.
    fn skip(&mut self, node: &Node, r: &mut &[u8]) -> Result<(), String> {
        self.visit()?;
        let cut = || "the Avro file is cut short or damaged".to_owned();
        match node {
            Node::Null => {}
            Node::Boolean => match take(r, 1).ok_or_else(cut)? {
                [0 | 1] => {}
                _ => return Err("an Avro boolean is neither 0 nor 1".to_owned()),
            },
            Node::Int => {
                let v = long(r).ok_or_else(cut)?;
                i32::try_from(v).map_err(|_| "an Avro int is out of range".to_owned())?;
            }
            Node::Long => {
                long(r).ok_or_else(cut)?;
            }
            Node::Float => {
                take(r, 4).ok_or_else(cut)?;
            }
            Node::Double => {
                take(r, 8).ok_or_else(cut)?;
            }
            Node::Bytes | Node::String => {
                bytes_of(r).ok_or_else(cut)?;
            }
            Node::Fixed(n) => {
                take(r, *n).ok_or_else(cut)?;
            }
            Node::Record(fields) => {
                for field in fields {
                    self.skip(field, r)?;
                }
            }
            Node::Optional(inner) => match long(r).ok_or_else(cut)? {
                0 => {}
                1 => self.skip(inner, r)?,
                _ => return Err("an Avro union's branch is out of range".to_owned()),
            },
            Node::Array(item) | Node::Map(item) => loop {
                let count = long(r).ok_or_else(cut)?;
                if count == 0 {
                    break;
                }
                // Writers write positive counts; a negative one carries a byte size that
                // some readers skip by and others ignore.
                if count < 0 || count as u64 > r.len() as u64 {
                    return Err(
                        "an Avro array or map block has a count floe does not read".to_owned()
                    );
                }
                for _ in 0..count {
                    if matches!(node, Node::Map(_)) {
                        self.visit()?;
                        bytes_of(r).ok_or_else(cut)?;
                    }
                    self.skip(item, r)?;
                }
            },
        }
        Ok(())
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
                let mut decoder = zstd::stream::read::Decoder::new(block)
                    .map_err(|e| format!("a zstandard block does not decompress: {e}"))?;
                // A window of at most 128 MiB (zstd's own default limit; Java's highest
                // levels use it).
                decoder
                    .window_log_max(27)
                    .map_err(|e| format!("a zstandard block does not decompress: {e}"))?;
                decoder
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

/// What was made of each distinct writer schema text (up to `SCHEMA_TEXT_MAX` bytes),
/// kept; past `SCHEMAS_KEPT_MAX` texts the cache starts over.
struct Kept<V>(OnceLock<Mutex<HashMap<Vec<u8>, V>>>);

impl<V: Clone> Kept<V> {
    const fn new() -> Kept<V> {
        Kept(OnceLock::new())
    }

    fn get_or(&self, text: &[u8], make: impl FnOnce() -> V) -> V {
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
mod tests;
