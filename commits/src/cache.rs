//! A bounded map of decoded objects keyed by hash (index nodes, commits).
//!
//! When full, it forgets an arbitrary quarter of its entries at once: no per-access
//! bookkeeping on the read path, no cliff where the whole working set is lost, and the
//! hot upper nodes of an index come back on their next read.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::hash::{Hash, HashMapByDigest};

#[derive(Debug)]
pub struct ObjectCache<V> {
    map: Mutex<HashMapByDigest<Arc<V>>>,
    capacity: usize,
}

impl<V> ObjectCache<V> {
    pub fn new(capacity: usize) -> ObjectCache<V> {
        ObjectCache {
            map: Mutex::new(HashMapByDigest::default()),
            capacity: capacity.max(4),
        }
    }

    pub fn get(&self, hash: &Hash) -> Option<Arc<V>> {
        self.map.lock().get(hash).cloned()
    }

    pub fn insert(&self, hash: Hash, value: Arc<V>) {
        self.insert_many(std::iter::once((hash, value)));
    }

    pub fn insert_many(&self, items: impl IntoIterator<Item = (Hash, Arc<V>)>) {
        let mut map = self.map.lock();
        for (hash, value) in items {
            if map.len() >= self.capacity {
                let mut i = 0usize;
                map.retain(|_, _| {
                    i += 1;
                    !i.is_multiple_of(4)
                });
            }
            map.insert(hash, value);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_most_entries() {
        let cache = ObjectCache::new(100);
        for i in 0..1_000u32 {
            cache.insert(Hash::of(&i.to_le_bytes()), Arc::new(i));
            assert!(cache.len() <= 100);
        }
        assert!(
            cache.len() >= 75,
            "a full cache forgets a quarter, not everything"
        );
        assert_eq!(
            cache.get(&Hash::of(&999u32.to_le_bytes())).as_deref(),
            Some(&999)
        );
    }
}
