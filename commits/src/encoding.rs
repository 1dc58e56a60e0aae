//! The canonical byte encoding that object hashes are computed over.
//!
//! Hand-written on purpose (never `serde_json` of a struct): a refactor of a Rust type
//! must not change a single object id. Every object starts with a format version byte and
//! a kind byte; integers are LEB128 varints or fixed big-endian; strings and byte strings
//! are length-prefixed; maps are written in key order, so one value has one encoding.

use std::collections::BTreeMap;

/// The version byte that starts every object. A new encoding gets a new version and the
/// decoder keeps reading the old one.
pub const FORMAT_VERSION: u8 = 1;

/// The kind byte that follows the version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Commit = 1,
    Node = 2,
    Content = 3,
}

impl ObjectKind {
    pub fn from_byte(byte: u8) -> Option<ObjectKind> {
        match byte {
            1 => Some(ObjectKind::Commit),
            2 => Some(ObjectKind::Node),
            3 => Some(ObjectKind::Content),
            _ => None,
        }
    }
}

/// Stored bytes that do not decode: a bug or a damaged store, never user input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt object: {0}")]
pub struct DecodeError(pub &'static str);

#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(kind: ObjectKind) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(256),
        };
        w.buf.push(FORMAT_VERSION);
        w.buf.push(kind as u8);
        w
    }

    pub fn with_capacity(kind: ObjectKind, capacity: usize) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(capacity),
        };
        w.buf.push(FORMAT_VERSION);
        w.buf.push(kind as u8);
        w
    }

    /// A writer without the object header, for values embedded in other records.
    pub fn bare() -> Writer {
        Writer {
            buf: Vec::with_capacity(64),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn varint(&mut self, v: u64) {
        push_varint(&mut self.buf, v);
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn map(&mut self, map: &BTreeMap<String, String>) {
        self.varint(map.len() as u64);
        for (k, v) in map {
            self.str(k);
            self.str(v);
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Appends `v` as a LEB128 varint.
pub fn push_varint(buf: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

/// The number of bytes `Writer::varint` uses for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the header and returns a reader positioned after it.
    pub fn new(buf: &'a [u8], kind: ObjectKind) -> Result<Reader<'a>, DecodeError> {
        if buf.len() < 2 {
            return Err(DecodeError("shorter than its header"));
        }
        if buf[0] != FORMAT_VERSION {
            return Err(DecodeError("unknown format version"));
        }
        if buf[1] != kind as u8 {
            return Err(DecodeError("unexpected object kind"));
        }
        Ok(Reader { buf, pos: 2 })
    }

    pub fn bare(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    pub fn len_prefix(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError("length overflow"))?;
        if n > self.buf.len() - self.pos {
            return Err(DecodeError("length past the end"));
        }
        Ok(n)
    }

    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() - self.pos {
            return Err(DecodeError("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.raw(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len_prefix()?;
        self.raw(n)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("string is not UTF-8"))
    }

    pub fn map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.varint()?;
        let mut map = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let k = self.str()?;
            if last.is_some_and(|l| l >= k) {
                return Err(DecodeError("map keys out of order"));
            }
            last = Some(k);
            map.insert(k.to_owned(), self.str()?.to_owned());
        }
        Ok(map)
    }

    /// Fails unless every byte was read: trailing bytes would give one value two encodings.
    pub fn end(self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

/// The bytes a string map counts against a properties limit: every key and value.
pub fn map_payload_bytes(map: &BTreeMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_have_predicted_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut w = Writer::bare();
            w.varint(v);
            let bytes = w.finish();
            assert_eq!(bytes.len(), varint_len(v), "length of {v}");
            let mut r = Reader::bare(&bytes);
            assert_eq!(r.varint().unwrap(), v);
            r.end().unwrap();
        }
    }

    #[test]
    fn readers_refuse_damage() {
        let mut w = Writer::new(ObjectKind::Commit);
        w.str("abc");
        let bytes = w.finish();
        assert!(Reader::new(&bytes, ObjectKind::Node).is_err());
        let mut r = Reader::new(&bytes[..4], ObjectKind::Commit).unwrap();
        assert!(r.str().is_err());
    }
}
