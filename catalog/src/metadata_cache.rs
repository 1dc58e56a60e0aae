//! Table metadata by location. Metadata files never change once written (their names
//! carry a UUID and the warehouse never replaces a file), so a location names one content
//! forever: the cache keeps both the bytes as stored (what `loadTable` sends without
//! re-serializing) and the parsed metadata (what a commit builds on). Bounded by entries
//! and by bytes; when full it forgets a quarter of its entries.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::TableMetadata;
use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::limits::{METADATA_CACHE_BYTES_MAX, METADATA_CACHE_ENTRIES_MAX};

/// A metadata file's text, checked once to be one JSON value: what a load answers as it
/// is stored, never re-serialized, and never parsed again per request (the HTTP layer
/// serialises it as a `RawValue` field of its answer).
#[derive(Debug, Clone)]
pub struct MetadataJson(Arc<RawValue>);

impl MetadataJson {
    /// The text of a metadata file read from the warehouse.
    pub fn parse(bytes: Vec<u8>) -> Result<MetadataJson, String> {
        let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_owned())?;
        RawValue::from_string(text)
            .map(|raw| MetadataJson(Arc::from(raw)))
            .map_err(|e| e.to_string())
    }

    /// The text floe writes for `metadata`.
    pub fn of<T: serde::Serialize>(metadata: &T) -> Result<MetadataJson, String> {
        serde_json::value::to_raw_value(metadata)
            .map(|raw| MetadataJson(Arc::from(raw)))
            .map_err(|e| e.to_string())
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.get().as_bytes()
    }
}

/// One metadata file: its text and its parse.
#[derive(Debug)]
pub struct CachedMetadata {
    pub json: MetadataJson,
    pub metadata: Arc<TableMetadata>,
}

#[derive(Debug, Default)]
pub struct MetadataCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Arc<CachedMetadata>>,
    bytes: usize,
}

impl MetadataCache {
    pub fn get(&self, location: &str) -> Option<Arc<CachedMetadata>> {
        self.inner.lock().entries.get(location).cloned()
    }

    pub fn insert(&self, location: &str, entry: Arc<CachedMetadata>) {
        let size = entry.json.as_bytes().len();
        if size > METADATA_CACHE_BYTES_MAX / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.entries.len() >= METADATA_CACHE_ENTRIES_MAX
            || inner.bytes + size > METADATA_CACHE_BYTES_MAX
        {
            let forget: Vec<String> = inner
                .entries
                .keys()
                .take(inner.entries.len() / 4 + 1)
                .cloned()
                .collect();
            for k in forget {
                if let Some(e) = inner.entries.remove(&k) {
                    inner.bytes -= e.json.as_bytes().len();
                }
            }
        }
        if let Some(old) = inner.entries.insert(location.to_owned(), entry) {
            inner.bytes -= old.json.as_bytes().len();
        }
        inner.bytes += size;
    }
}
