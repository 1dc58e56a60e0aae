//! Table metadata by location. Metadata files never change once written (their names
//! carry a UUID and the warehouse never replaces a file), so a location names one content
//! forever: the cache keeps both the bytes as stored (what `loadTable` sends without
//! re-serializing) and the parsed metadata (what a commit builds on). Bounded by entries
//! and by bytes; when full it forgets a quarter of its entries.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::spec::TableMetadata;
use parking_lot::Mutex;

use crate::limits::{METADATA_CACHE_BYTES_MAX, METADATA_CACHE_ENTRIES_MAX};

/// One metadata file: its bytes and their parse.
#[derive(Debug)]
pub struct CachedMetadata {
    pub bytes: Bytes,
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
        let size = entry.bytes.len();
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
                    inner.bytes -= e.bytes.len();
                }
            }
        }
        if let Some(old) = inner.entries.insert(location.to_owned(), entry) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += size;
    }
}
