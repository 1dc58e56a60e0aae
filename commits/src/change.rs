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
