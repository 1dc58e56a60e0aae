//! How ref records and reflog entries are stored: one versioned byte encoding shared by
//! the on-disk backends (sled, PostgreSQL), so a catalog copied between them is the same
//! bytes.

use crate::backend::{RefOperation, RefRecord, ReflogEntry};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::name::{RefKind, RefName};

fn kind_byte(kind: RefKind) -> u8 {
    match kind {
        RefKind::Branch => 0,
        RefKind::Tag => 1,
    }
}

fn read_kind(r: &mut Reader<'_>) -> Result<RefKind, DecodeError> {
    match r.u8()? {
        0 => Ok(RefKind::Branch),
        1 => Ok(RefKind::Tag),
        _ => Err(DecodeError("unknown ref kind")),
    }
}

pub(crate) fn encode_record(r: &RefRecord) -> Vec<u8> {
    let mut w = Writer::bare();
    w.u8(1);
    w.u8(kind_byte(r.kind));
    w.raw(r.head.as_bytes());
    w.str(&r.created_by);
    w.i64(r.created_at_ms);
    w.map(&r.attributes);
    w.finish()
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<RefRecord, DecodeError> {
    let mut r = Reader::bare(bytes);
    if r.u8()? != 1 {
        return Err(DecodeError("unknown ref record version"));
    }
    let kind = read_kind(&mut r)?;
    let record = RefRecord {
        kind,
        head: Hash::from_bytes(r.array()?),
        created_by: r.str()?.to_owned(),
        created_at_ms: r.i64()?,
        attributes: r.map()?,
    };
    r.end()?;
    Ok(record)
}

const OPERATIONS: [RefOperation; 7] = [
    RefOperation::Create,
    RefOperation::Delete,
    RefOperation::Commit,
    RefOperation::Merge,
    RefOperation::CherryPick,
    RefOperation::Revert,
    RefOperation::Assign,
];

pub(crate) fn encode_entry(e: &ReflogEntry) -> Vec<u8> {
    let mut w = Writer::bare();
    w.u8(1);
    w.varint(e.seq);
    w.str(e.ref_name.as_str());
    w.u8(kind_byte(e.kind));
    for h in [&e.old, &e.new] {
        match h {
            None => w.u8(0),
            Some(h) => {
                w.u8(1);
                w.raw(h.as_bytes());
            }
        }
    }
    let op = OPERATIONS
        .iter()
        .position(|o| *o == e.operation)
        .unwrap_or(0);
    w.u8(op as u8);
    w.str(&e.principal);
    w.i64(e.at_ms);
    w.map(&e.properties);
    w.finish()
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<ReflogEntry, DecodeError> {
    let mut r = Reader::bare(bytes);
    if r.u8()? != 1 {
        return Err(DecodeError("unknown reflog entry version"));
    }
    let seq = r.varint()?;
    let ref_name = RefName::parse(r.str()?).map_err(|_| DecodeError("bad ref name"))?;
    let kind = read_kind(&mut r)?;
    let mut heads = [None, None];
    for h in &mut heads {
        *h = match r.u8()? {
            0 => None,
            1 => Some(Hash::from_bytes(r.array()?)),
            _ => return Err(DecodeError("bad head flag")),
        };
    }
    let operation = *OPERATIONS
        .get(usize::from(r.u8()?))
        .ok_or(DecodeError("unknown ref operation"))?;
    let entry = ReflogEntry {
        seq,
        ref_name,
        kind,
        old: heads[0],
        new: heads[1],
        operation,
        principal: r.str()?.to_owned(),
        at_ms: r.i64()?,
        properties: r.map()?,
    };
    r.end()?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn records_and_entries_round_trip() {
        let record = RefRecord {
            kind: RefKind::Tag,
            head: Hash::of(b"x"),
            created_by: "alice".into(),
            created_at_ms: 7,
            attributes: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
        };
        assert_eq!(decode_record(&encode_record(&record)).unwrap(), record);
        for operation in OPERATIONS {
            let entry = ReflogEntry {
                seq: 9,
                ref_name: RefName::parse("feature/x").unwrap(),
                kind: RefKind::Branch,
                old: None,
                new: Some(Hash::of(b"y")),
                operation,
                principal: "bob".into(),
                at_ms: 11,
                properties: BTreeMap::new(),
            };
            assert_eq!(decode_entry(&encode_entry(&entry)).unwrap(), entry);
        }
    }
}
