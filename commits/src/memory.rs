//! The in-memory backend: for tests, models and benchmarks. One lock makes every ref move
//! (CAS, reflog entry, meta write) atomic; the pending and durable views are the same.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::backend::{
    Backend, BackendResult, CasOutcome, ClockSample, RefRecord, RefUpdate, RefView, ReflogEntry,
};
use crate::clock::Clock;
use crate::hash::{Hash, HashMapByDigest};
use crate::name::RefName;

#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: RwLock<Objects>,
    state: RwLock<State>,
    /// Says it is shared (`Backend::is_shared`), as PostgreSQL does: for tests of what
    /// servers sharing a catalog do.
    shared: bool,
    /// The storage's own clock (`Backend::shared_clock`), as PostgreSQL's is: for tests
    /// of servers whose clocks disagree.
    clock: Option<Arc<dyn Clock>>,
}

/// Objects by hash, plus an ordered index for prefix scans: 65,536 buckets by the first
/// two bytes, each kept sorted. A write costs a hash insert and a small sorted insert, not
/// a descent through a tree of millions of entries.
#[derive(Debug)]
struct Objects {
    by_hash: HashMapByDigest<Bytes>,
    buckets: Vec<Vec<Hash>>,
}

impl Default for Objects {
    fn default() -> Objects {
        Objects {
            by_hash: HashMapByDigest::default(),
            buckets: vec![Vec::new(); 1 << 16],
        }
    }
}

fn bucket_of(h: &Hash) -> usize {
    let b = h.as_bytes();
    usize::from(b[0]) << 8 | usize::from(b[1])
}

#[derive(Debug, Default)]
struct State {
    refs: BTreeMap<RefName, RefRecord>,
    reflog: Vec<ReflogEntry>,
    /// Positions in `reflog` per ref, oldest first.
    reflog_by_ref: HashMap<RefName, Vec<usize>>,
    meta: BTreeMap<Bytes, Bytes>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// A backend that behaves as one several servers share (PostgreSQL's stand-in in
    /// tests): it says it is shared, and its refs are read as PostgreSQL's are, not inline
    /// but through `read_refs_async`.
    pub fn shared() -> MemoryBackend {
        MemoryBackend {
            shared: true,
            ..MemoryBackend::default()
        }
    }

    /// `shared()`, with a clock of its own that the servers sharing it read for their
    /// leases, as PostgreSQL's.
    pub fn shared_with_clock(clock: Arc<dyn Clock>) -> MemoryBackend {
        MemoryBackend {
            clock: Some(clock),
            ..MemoryBackend::shared()
        }
    }

    pub fn object_count(&self) -> usize {
        self.objects.read().by_hash.len()
    }
}

impl Backend for MemoryBackend {
    fn reads_from_memory(&self) -> bool {
        !self.shared
    }

    fn read_refs_async(&self, names: Vec<RefName>) -> Option<crate::backend::RefsFuture> {
        if !self.shared {
            return None;
        }
        let records: BackendResult<Vec<_>> = names
            .iter()
            .map(|n| self.get_ref(n, RefView::Durable))
            .collect();
        Some(Box::pin(std::future::ready(records)))
    }

    fn is_shared(&self) -> bool {
        self.shared
    }

    fn shared_clock(&self, local: Arc<dyn Clock>) -> BackendResult<Option<ClockSample>> {
        Ok(self.clock.as_ref().map(|c| ClockSample {
            sent_ms: local.now_ms(),
            shared_ms: c.now_ms(),
            received_ms: local.now_ms(),
        }))
    }

    fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()> {
        let mut store = self.objects.write();
        for (h, bytes) in objects {
            if store.by_hash.insert(*h, bytes.clone()).is_none() {
                let bucket = &mut store.buckets[bucket_of(h)];
                let at = bucket.partition_point(|x| x < h);
                bucket.insert(at, *h);
            }
        }
        Ok(())
    }

    fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>> {
        Ok(self.objects.read().by_hash.get(hash).cloned())
    }

    fn scan_objects(&self, from: &Hash, limit: usize) -> BackendResult<Vec<Hash>> {
        let store = self.objects.read();
        let mut out = Vec::new();
        for bucket in &store.buckets[bucket_of(from)..] {
            let start = bucket.partition_point(|x| x < from);
            for h in &bucket[start..] {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(*h);
            }
        }
        Ok(out)
    }

    fn get_ref(&self, name: &RefName, _view: RefView) -> BackendResult<Option<RefRecord>> {
        Ok(self.state.read().refs.get(name).cloned())
    }

    fn list_refs(
        &self,
        after: Option<&RefName>,
        limit: usize,
        _view: RefView,
    ) -> BackendResult<Vec<(RefName, RefRecord)>> {
        let state = self.state.read();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(state
            .refs
            .range::<RefName, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect())
    }

    fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
        self.put_objects(&update.objects)?;
        let mut state = self.state.write();
        if let Some((key, value)) = &update.fence
            && state.meta.get(key) != Some(value)
        {
            return Ok(CasOutcome::FenceLost);
        }
        if let Some((key, value)) = update.meta.as_ref().and_then(|m| m.claim.as_ref())
            && state.meta.get(key) != Some(value)
        {
            return Ok(CasOutcome::ClaimLost);
        }
        let current = state.refs.get(&update.name);
        if current.map(|r| r.head) != update.expected {
            return Ok(CasOutcome::Mismatch {
                current: current.cloned(),
            });
        }
        match update.new {
            Some(record) => state.refs.insert(update.name.clone(), record),
            None => state.refs.remove(&update.name),
        };
        let seq = state.reflog.len() as u64 + 1;
        let mut entry = update.reflog;
        entry.seq = seq;
        let position = state.reflog.len();
        state.reflog.push(entry);
        state
            .reflog_by_ref
            .entry(update.name)
            .or_default()
            .push(position);
        if let Some(meta) = update.meta {
            if let Some((key, _)) = &meta.claim {
                state.meta.remove(key);
            }
            state.meta.insert(meta.key, meta.value);
        }
        Ok(CasOutcome::Applied { seq, ticket: 0 })
    }

    fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> BackendResult<Vec<ReflogEntry>> {
        let state = self.state.read();
        // Sequence numbers are positions + 1, so `seq < before` is `position < before - 1`.
        let end = before.map_or(state.reflog.len(), |b| {
            (b.saturating_sub(1) as usize).min(state.reflog.len())
        });
        Ok(match name {
            None => state.reflog[..end]
                .iter()
                .rev()
                .take(limit)
                .cloned()
                .collect(),
            Some(name) => {
                let positions = state
                    .reflog_by_ref
                    .get(name)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let cut = positions.partition_point(|p| *p < end);
                positions[..cut]
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|p| state.reflog[*p].clone())
                    .collect()
            }
        })
    }

    fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>> {
        Ok(self.state.read().meta.get(key).cloned())
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()> {
        self.state
            .write()
            .meta
            .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        Ok(())
    }

    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool> {
        let mut state = self.state.write();
        if state.meta.get(key).map(Bytes::as_ref) != expected {
            return Ok(false);
        }
        match new {
            Some(v) => state
                .meta
                .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(v)),
            None => state.meta.remove(key),
        };
        Ok(true)
    }

    fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> BackendResult<Vec<(Bytes, Bytes)>> {
        let state = self.state.read();
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(Bytes::copy_from_slice(a)),
            _ => Bound::Included(Bytes::copy_from_slice(prefix)),
        };
        Ok(state
            .meta
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
