//! `Content`: what a key holds — a namespace, an Iceberg table or an Iceberg view.
//!
//! The store never interprets a payload beyond its kind: table and view payloads are plain
//! fields the catalog fills (a metadata location, ids), never a schema. A content value is
//! stored as its own object; the index holds a fixed-size `ContentRef` (hash, id, kind) per
//! key, so listings, diffs and the duplicate-id check never load the values.

use std::collections::BTreeMap;
use std::fmt;

use crate::encoding::{DecodeError, ObjectKind, Reader, Writer, map_payload_bytes};
use crate::hash::{ContentHash, Hash};
use crate::limits::{NAMESPACE_PROPERTIES_BYTES_MAX, VALUE_BYTES_MAX};

/// floe's own id of a namespace, table or view: a UUIDv7 chosen by the catalog when the
/// entity is created, kept across renames and branches. The store takes ids from outside
/// (never generates them) so that tests and models replay exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 16]);

impl ContentId {
    pub fn from_u128(v: u128) -> ContentId {
        ContentId(v.to_be_bytes())
    }

    /// Parses the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(text: &str) -> Option<ContentId> {
        let compact: String = text.chars().filter(|c| *c != '-').collect();
        if compact.len() != 32 || text.len() != 36 {
            return None;
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&compact, &mut bytes).ok()?;
        Some(ContentId(bytes))
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ContentKind {
    Namespace = 1,
    IcebergTable = 2,
    IcebergView = 3,
}

impl ContentKind {
    pub fn from_byte(b: u8) -> Option<ContentKind> {
        match b {
            1 => Some(ContentKind::Namespace),
            2 => Some(ContentKind::IcebergTable),
            3 => Some(ContentKind::IcebergView),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Namespace => "namespace",
            ContentKind::IcebergTable => "iceberg-table",
            ContentKind::IcebergView => "iceberg-view",
        }
    }
}

/// An Iceberg table as the index sees it: where its current metadata lives and the ids a
/// requirement or a listing needs without reading that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePayload {
    pub metadata_location: String,
    pub table_uuid: [u8; 16],
    /// Iceberg's current snapshot id, `-1` when the table has no snapshot.
    pub snapshot_id: i64,
    pub schema_id: i32,
    pub spec_id: i32,
    pub sort_order_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewPayload {
    pub metadata_location: String,
    pub view_uuid: [u8; 16],
    pub version_id: i64,
    pub schema_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Namespace {
        properties: BTreeMap<String, String>,
    },
    IcebergTable(TablePayload),
    IcebergView(ViewPayload),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub id: ContentId,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error(
        "a content value is at most {max} bytes encoded (VALUE_BYTES_MAX), this one is {0}",
        max = VALUE_BYTES_MAX
    )]
    TooLarge(usize),
    #[error(
        "namespace properties are at most {max} bytes of keys and values (NAMESPACE_PROPERTIES_BYTES_MAX), got {0}",
        max = NAMESPACE_PROPERTIES_BYTES_MAX
    )]
    NamespacePropertiesTooLarge(usize),
}

impl Content {
    pub fn namespace(id: ContentId, properties: BTreeMap<String, String>) -> Content {
        Content {
            id,
            payload: Payload::Namespace { properties },
        }
    }

    pub fn kind(&self) -> ContentKind {
        match self.payload {
            Payload::Namespace { .. } => ContentKind::Namespace,
            Payload::IcebergTable(_) => ContentKind::IcebergTable,
            Payload::IcebergView(_) => ContentKind::IcebergView,
        }
    }

    /// The canonical encoding: the bytes stored and hashed.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(ObjectKind::Content);
        w.raw(&self.id.0);
        w.u8(self.kind() as u8);
        match &self.payload {
            Payload::Namespace { properties } => w.map(properties),
            Payload::IcebergTable(t) => {
                w.str(&t.metadata_location);
                w.raw(&t.table_uuid);
                w.i64(t.snapshot_id);
                w.i32(t.schema_id);
                w.i32(t.spec_id);
                w.i32(t.sort_order_id);
            }
            Payload::IcebergView(v) => {
                w.str(&v.metadata_location);
                w.raw(&v.view_uuid);
                w.i64(v.version_id);
                w.i32(v.schema_id);
            }
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Content, DecodeError> {
        let mut r = Reader::new(bytes, ObjectKind::Content)?;
        let id = ContentId(r.array()?);
        let kind = ContentKind::from_byte(r.u8()?).ok_or(DecodeError("unknown content kind"))?;
        let payload = match kind {
            ContentKind::Namespace => Payload::Namespace {
                properties: r.map()?,
            },
            ContentKind::IcebergTable => Payload::IcebergTable(TablePayload {
                metadata_location: r.str()?.to_owned(),
                table_uuid: r.array()?,
                snapshot_id: r.i64()?,
                schema_id: r.i32()?,
                spec_id: r.i32()?,
                sort_order_id: r.i32()?,
            }),
            ContentKind::IcebergView => Payload::IcebergView(ViewPayload {
                metadata_location: r.str()?.to_owned(),
                view_uuid: r.array()?,
                version_id: r.i64()?,
                schema_id: r.i32()?,
            }),
        };
        r.end()?;
        Ok(Content { id, payload })
    }

    /// Checks the limits and returns the encoding with its hash.
    pub fn encode_checked(&self) -> Result<(ContentHash, Vec<u8>), ContentError> {
        if let Payload::Namespace { properties } = &self.payload {
            let n = map_payload_bytes(properties);
            if n > NAMESPACE_PROPERTIES_BYTES_MAX {
                return Err(ContentError::NamespacePropertiesTooLarge(n));
            }
        }
        let bytes = self.encode();
        if bytes.len() > VALUE_BYTES_MAX {
            return Err(ContentError::TooLarge(bytes.len()));
        }
        Ok((ContentHash(Hash::of(&bytes)), bytes))
    }

    pub fn hash(&self) -> ContentHash {
        ContentHash(Hash::of(&self.encode()))
    }

    pub fn content_ref(&self) -> ContentRef {
        ContentRef {
            hash: self.hash(),
            id: self.id,
            kind: self.kind(),
        }
    }
}

/// What the key index stores per key: enough to compare, list and check ids without
/// loading the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentRef {
    pub hash: ContentHash,
    pub id: ContentId,
    pub kind: ContentKind,
}

/// The encoded size of a `ContentRef` inside an index leaf.
pub const CONTENT_REF_BYTES: usize = 32 + 16 + 1;

impl ContentRef {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.hash.0.as_bytes());
        out.extend_from_slice(&self.id.0);
        out.push(self.kind as u8);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTENT_REF_BYTES);
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ContentRef, DecodeError> {
        if bytes.len() != CONTENT_REF_BYTES {
            return Err(DecodeError("content ref has the wrong length"));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[..32]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[32..48]);
        let kind = ContentKind::from_byte(bytes[48]).ok_or(DecodeError("unknown content kind"))?;
        Ok(ContentRef {
            hash: ContentHash(Hash::from_bytes(hash)),
            id: ContentId(id),
            kind,
        })
    }
}
