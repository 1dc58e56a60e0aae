//! The write-ahead log in front of sled (DESIGN §2 "Durability"; ARCHITECTURE "The
//! write-ahead log").
//!
//! Every write the store makes to sled is also a record here: its log sequence number
//! (lsn) and the puts and removals it made, with their values. A group of records is
//! appended with one `write` and made durable with one `fdatasync` of the log file, which
//! is the only device round trip a commit waits for. sled is the index behind the log: it
//! is flushed to the device in the background (a checkpoint), after which the log records
//! it covers are deleted.
//!
//! Recovery replays, in order, the records newer than the lsn sled holds: each sled write
//! sets the `wal-lsn` key of the `state` tree in the same atomic write, so the index knows
//! how far it got. A record older than that marker is never applied on top of a newer
//! index (that would move a ref back under reflog entries that came after it). Records
//! are absolute puts and removals, so replaying one twice gives the same state.
//!
//! The log is a folder of segments, `wal/<first lsn, 20 digits>.log`, each created at
//! `SEGMENT_BYTES` (a sparse file, like the benchmark's raw `fdatasync` baseline) so an
//! append does not grow the file. A record is `len: u32 | crc32: u32 | body`, the body
//! `lsn: u64 | op count: u32 | ops`, an op `tree: u8 | key len: u32 | key | kind: u8
//! [| value len: u32 | value]`, all little-endian. The log ends at the first header whose
//! length is zero; a record cut short or whose checksum fails is a write that a power
//! cut interrupted, and ends the log only in its last segment.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The size a segment is created at; the durability thread starts a new segment (and the
/// checkpointer flushes sled and deletes the old one) once a segment holds this much.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

const HEADER: usize = 8;
/// A batch of objects is split into records of about this size at most (each object is
/// at most 64 KiB).
pub const OBJECTS_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The sled tree an operation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeId {
    Objects = 0,
    Refs = 1,
    Reflog = 2,
    ReflogByRef = 3,
    Meta = 4,
    State = 5,
}

impl TreeId {
    pub const ALL: [TreeId; 6] = [
        TreeId::Objects,
        TreeId::Refs,
        TreeId::Reflog,
        TreeId::ReflogByRef,
        TreeId::Meta,
        TreeId::State,
    ];

    fn from_byte(b: u8) -> Option<TreeId> {
        TreeId::ALL.get(usize::from(b)).copied()
    }
}

/// One put (`value` set) or removal in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op<K, V> {
    pub tree: TreeId,
    pub key: K,
    pub value: Option<V>,
}

/// An op to be logged, borrowing its bytes.
pub type OpRef<'a> = Op<&'a [u8], &'a [u8]>;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub ops: Vec<Op<Vec<u8>, Vec<u8>>>,
}

impl Record {
    /// Whether the record only adds objects, which are named by their hash and written
    /// once: replaying it is harmless whatever the index holds.
    pub fn only_objects(&self) -> bool {
        self.ops.iter().all(|op| op.tree == TreeId::Objects)
    }
}

/// Appends one record to `buf`.
pub fn encode(buf: &mut Vec<u8>, lsn: u64, ops: &[OpRef<'_>]) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&len32(ops.len()).to_le_bytes());
    for op in ops {
        buf.push(op.tree as u8);
        buf.extend_from_slice(&len32(op.key.len()).to_le_bytes());
        buf.extend_from_slice(op.key);
        match op.value {
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&len32(v.len()).to_le_bytes());
                buf.extend_from_slice(v);
            }
            None => buf.push(0),
        }
    }
    let body_len = len32(buf.len() - start - HEADER);
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// The bytes of one record, counted the way `encode` lays them out (to split batches).
pub fn encoded_len(ops: &[OpRef<'_>]) -> usize {
    HEADER
        + 12
        + ops
            .iter()
            .map(|op| 1 + 4 + op.key.len() + 1 + op.value.map_or(0, |v| 4 + v.len()))
            .sum::<usize>()
}

fn len32(n: usize) -> u32 {
    // Keys and values are bounded far below this (limits.rs), and so are batches.
    u32::try_from(n).expect("a log record field fits in u32")
}

/// How a segment's records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At a zero header (the unwritten rest of the segment) or the end of the file.
    Clean,
    /// At a record cut short or failing its checksum, at this byte offset.
    Torn(usize),
}

/// The records of one segment, in order, and how they ended.
pub fn decode_segment(bytes: &[u8]) -> (Vec<Record>, End) {
    let mut records = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(header) = bytes.get(at..at + HEADER) else {
            let end = if bytes[at..].iter().all(|&b| b == 0) {
                End::Clean
            } else {
                End::Torn(at)
            };
            return (records, end);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 && crc == 0 {
            return (records, End::Clean);
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            return (records, End::Torn(at));
        };
        if crc32fast::hash(body) != crc {
            return (records, End::Torn(at));
        }
        match decode_body(body) {
            Some(record) => records.push(record),
            // A body that passes its checksum but does not parse was not written by floe.
            None => return (records, End::Torn(at)),
        }
        at += HEADER + len;
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut r = Reader(body);
    let lsn = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let count = r.u32()?;
    let mut ops = Vec::new();
    for _ in 0..count {
        let tree = TreeId::from_byte(r.take(1)?[0])?;
        let key_len = r.u32()? as usize;
        let key = r.take(key_len)?.to_vec();
        let value = match r.take(1)?[0] {
            0 => None,
            1 => {
                let len = r.u32()? as usize;
                Some(r.take(len)?.to_vec())
            }
            _ => return None,
        };
        ops.push(Op { tree, key, value });
    }
    r.0.is_empty().then_some(Record { lsn, ops })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// The log's folder in a store's folder.
pub fn dir(store: &Path) -> PathBuf {
    store.join("wal")
}

/// The segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every record of the log in `dir`, checking that their lsns follow each other
/// past `held` (the lsn the index holds: a gap below it is a checkpoint's removal that
/// reached the device only in part). Only the last segment may end torn (the group a
/// power cut interrupted).
pub fn read(dir: &Path, held: u64) -> Result<Vec<Record>, String> {
    let paths = segments(dir)?;
    let mut records: Vec<Record> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (found, end) = decode_segment(&bytes);
        if let End::Torn(at) = end
            && i + 1 < paths.len()
        {
            return Err(format!(
                "the write-ahead log segment {} is damaged at byte {at}, and a later segment exists; restore the store from a backup",
                path.display()
            ));
        }
        for record in found {
            if let Some(last) = records.last()
                && record.lsn != last.lsn + 1
                && (record.lsn <= last.lsn || record.lsn - 1 > held)
            {
                return Err(format!(
                    "the write-ahead log skips from lsn {} to {} in {}; restore the store from a backup",
                    last.lsn,
                    record.lsn,
                    path.display()
                ));
            }
            records.push(record);
        }
    }
    Ok(records)
}

/// The segment the durability thread appends to.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    file: File,
    /// Where the next group is written.
    offset: u64,
    /// The size it was created at: once past it, the segment is full.
    capacity: u64,
}

impl Segment {
    /// Creates the segment whose first record is `first_lsn`, at its full size
    /// (`capacity`, `SEGMENT_BYTES` but in tests), and makes its name durable.
    pub fn create(dir: &Path, first_lsn: u64, capacity: u64) -> Result<Segment, String> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            if let Some(store) = dir.parent() {
                sync_dir(store)?;
            }
        }
        let path = dir.join(format!("{first_lsn:020}.log"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.set_len(capacity)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
        sync_dir(dir)?;
        Ok(Segment {
            path,
            file,
            offset: 0,
            capacity,
        })
    }

    /// Appends a group of records and `fdatasync`s the file: one device round trip.
    pub fn append_durably(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(bytes, self.offset)
            .map_err(|e| format!("write-ahead log write failed: {e}"))?;
        self.offset += bytes.len() as u64;
        self.file
            .sync_data()
            .map_err(|e| format!("fdatasync of the write-ahead log failed: {e}"))
    }

    pub fn is_full(&self) -> bool {
        self.offset >= self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }
}

/// Makes the creation or removal of files in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync the folder {}: {e}", dir.display()))
}

/// Removes segments the index covers (after a checkpoint's flush), durably.
pub fn remove(dir: &Path, paths: &[PathBuf]) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<'a>(tree: TreeId, key: &'a [u8], value: Option<&'a [u8]>) -> OpRef<'a> {
        Op { tree, key, value }
    }

    #[test]
    fn records_read_back_as_written_and_a_torn_tail_ends_the_segment() {
        let mut buf = Vec::new();
        let first = [
            op(TreeId::Refs, b"main", Some(b"head")),
            op(TreeId::Meta, b"k", None),
        ];
        encode(&mut buf, 7, &first);
        assert_eq!(buf.len(), encoded_len(&first));
        let second = [op(TreeId::Objects, &[1; 32], Some(&[9; 1000]))];
        encode(&mut buf, 8, &second);
        let whole = buf.len();
        buf.resize(whole + 100, 0);
        let (records, end) = decode_segment(&buf);
        assert_eq!(end, End::Clean);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].lsn, 7);
        assert_eq!(records[0].ops[0].value.as_deref(), Some(&b"head"[..]));
        assert_eq!(records[0].ops[1].value, None);
        assert!(records[1].only_objects() && !records[0].only_objects());

        // Every cut inside the second record leaves the first, and says the log is torn
        // (or clean, where the cut leaves only zeros).
        let first_len = encoded_len(&first);
        for cut in first_len + 1..whole {
            let (records, end) = decode_segment(&buf[..cut]);
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(end, End::Torn(first_len), "cut at {cut}");
        }
        // A flipped bit anywhere in the second record fails its checksum.
        for at in [first_len + 5, first_len + 20, whole - 1] {
            let mut damaged = buf.clone();
            damaged[at] ^= 0x40;
            let (records, end) = decode_segment(&damaged);
            assert_eq!(
                (records.len(), end),
                (1, End::Torn(first_len)),
                "bit at {at}"
            );
        }
    }

    #[test]
    fn a_damaged_segment_followed_by_another_is_refused_and_lsns_must_follow() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Segment::create(dir.path(), 1, 4096).unwrap();
        let mut buf = Vec::new();
        encode(&mut buf, 1, &[op(TreeId::Meta, b"a", Some(b"1"))]);
        encode(&mut buf, 2, &[op(TreeId::Meta, b"b", Some(b"2"))]);
        a.append_durably(&buf).unwrap();
        let mut b = Segment::create(dir.path(), 3, 4096).unwrap();
        let mut next = Vec::new();
        encode(&mut next, 3, &[op(TreeId::Meta, b"c", Some(b"3"))]);
        b.append_durably(&next).unwrap();
        let lsns: Vec<u64> = read(dir.path(), 0).unwrap().iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, [1, 2, 3]);

        // Damage in the first segment, with the second after it: refused.
        let file = File::options().write(true).open(&a.path).unwrap();
        file.write_all_at(&[0xff], 12).unwrap();
        let err = read(dir.path(), 0).unwrap_err();
        assert!(err.contains("damaged"), "{err}");

        // A gap in the lsns: refused.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segment::create(dir.path(), 1, 4096).unwrap();
        let mut buf = Vec::new();
        encode(&mut buf, 1, &[]);
        encode(&mut buf, 3, &[]);
        s.append_durably(&buf).unwrap();
        let err = read(dir.path(), 1).unwrap_err();
        assert!(err.contains("skips from lsn 1 to 3"), "{err}");
        // Below what the index holds, a gap is a removal that reached the device in part.
        assert_eq!(read(dir.path(), 2).unwrap().len(), 2);
    }
}
