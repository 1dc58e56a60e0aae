//! `KeyChange`, a key whose content differs between two maps, and the decoding of what
//! the key index stores (content refs, keys) into it.
//!
//! It sits apart from `store.rs` because the reads, the landing validation (`validate.rs`)
//! and merges all speak it: with it here, `validate.rs` needs nothing from the store.

use crate::content::ContentRef;
use crate::error::{ReadError, StorageError};
use crate::key::{ContentKey, KeyError};
use crate::tree;

/// A key whose content differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: ContentKey,
    pub before: Option<ContentRef>,
    pub after: Option<ContentRef>,
}

/// A content ref as a leaf of the key index stores it. The node it came from was checked
/// against its hash when read, so a failure here is a value written damaged: no object
/// is to blame as a whole, and the error names none.
pub(crate) fn decode_ref(v: &[u8]) -> Result<ContentRef, ReadError> {
    ContentRef::decode(v)
        .map_err(|e| ReadError::Storage(StorageError::corrupt(None, e.0.to_owned())))
}

/// A key as the index stores it failed its checks (see `decode_ref` for why no hash).
pub(crate) fn corrupt_key(e: &KeyError) -> ReadError {
    ReadError::Storage(StorageError::corrupt(None, format!("stored key: {e}")))
}

/// The tree's byte-level changes as key changes.
pub(crate) fn decode_changes(raw: Vec<tree::Change>) -> Result<Vec<KeyChange>, ReadError> {
    raw.into_iter()
        .map(|c| {
            Ok(KeyChange {
                key: ContentKey::from_stored(c.key).map_err(|e| corrupt_key(&e))?,
                before: c.before.map(|v| decode_ref(&v)).transpose()?,
                after: c.after.map(|v| decode_ref(&v)).transpose()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{ContentId, ContentKind};
    use crate::hash::{ContentHash, Hash};

    #[test]
    fn stored_refs_decode_or_are_corrupt_without_a_blamed_object() {
        let r = ContentRef {
            hash: ContentHash(Hash::of(b"t")),
            id: ContentId::from_u128(9),
            kind: ContentKind::IcebergTable,
        };
        assert_eq!(decode_ref(&r.to_bytes()), Ok(r));
        let short = &r.to_bytes()[1..];
        assert!(matches!(
            decode_ref(short),
            Err(ReadError::Storage(StorageError::Corrupt { hash: None, .. }))
        ));
        let raw = vec![tree::Change {
            key: bytes::Bytes::from_static(b"a\0b"),
            before: None,
            after: Some(bytes::Bytes::from(r.to_bytes())),
        }];
        let changes = decode_changes(raw).unwrap();
        assert_eq!(changes[0].key, ContentKey::new(["a", "b"]).unwrap());
        assert_eq!((changes[0].before, changes[0].after), (None, Some(r)));
    }
}
