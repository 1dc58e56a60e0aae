//! The bulk loader, for test and benchmark fixtures only: it builds a large map in one
//! pass over sorted keys (both indexes from scratch) and lands it as one commit, instead
//! of feeding millions of keys through the commit rule. It skips the landing validation,
//! so its caller guarantees a valid map (every table's namespace is in it, ids unique);
//! with a bulk-mode backend (`SledBackend::open_bulk`) nothing is flushed until the
//! caller flushes. `floe serve` never calls it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::backend::RefOperation;
use crate::content::Content;
use crate::error::WriteError;
use crate::hash::Hash;
use crate::key::ContentKey;
use crate::name::RefName;
use crate::object::{Commit, CommitMeta};
use crate::store::refs::Moved;
use crate::store::{Store, WriteCtx, lost_race};
use crate::tree::{self, NewNodes};

/// Objects written per backend call while loading.
const LOAD_BATCH_OBJECTS: usize = 10_000;

impl Store {
    /// Replaces the map of `branch` by `contents` in one commit on top of its head, and
    /// returns the commit. Fixtures only: the map is not validated.
    pub fn bulk_load(
        &self,
        branch: &RefName,
        contents: impl IntoIterator<Item = (ContentKey, Content)>,
        meta: CommitMeta,
        ctx: &WriteCtx,
    ) -> Result<Hash, WriteError> {
        let mut keys: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        let mut ids: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        let mut objects: Vec<(Hash, Bytes)> = Vec::with_capacity(LOAD_BATCH_OBJECTS);
        for (key, content) in contents {
            let (hash, bytes) = content.encode_checked()?;
            let content_ref = crate::content::ContentRef {
                hash,
                id: content.id,
                kind: content.kind(),
            };
            keys.insert(key.as_bytes().clone(), Bytes::from(content_ref.to_bytes()));
            ids.insert(
                Bytes::copy_from_slice(&content.id.0),
                key.as_bytes().clone(),
            );
            objects.push((hash.0, Bytes::from(bytes)));
            if objects.len() == LOAD_BATCH_OBJECTS {
                self.backend().put_objects(&objects)?;
                objects.clear();
            }
        }
        let mut nodes = NewNodes::default();
        let key_index = tree::build(keys.into_iter().collect(), &mut nodes)?;
        let id_index = tree::build(ids.into_iter().collect(), &mut nodes)?;
        objects.extend(nodes.written.iter().cloned());
        for batch in objects.chunks(LOAD_BATCH_OBJECTS) {
            self.backend().put_objects(batch)?;
        }
        let record = self.pending_branch(branch, ctx)?;
        let parent = self.graph_entry(&record.head)?;
        let commit = Commit {
            parents: [record.head].into_iter().collect(),
            key_index,
            id_index,
            author: meta.author.clone(),
            committer: meta.author.clone(),
            message: meta.message.clone(),
            authored_at_ms: meta.authored_at_ms,
            properties: meta.properties.clone(),
            generation: parent.generation + 1,
        };
        let bytes = Bytes::from(commit.encode());
        let hash = Hash::of(&bytes);
        self.backend().put_objects(&[(hash, bytes)])?;
        let new = crate::backend::RefRecord {
            head: hash,
            ..record.clone()
        };
        match self.move_ref(
            branch,
            record.kind,
            Some(record.head),
            Some(new),
            RefOperation::Commit,
            ctx,
            BTreeMap::new(),
        )? {
            Moved::Applied { ticket, .. } => {
                self.acknowledge(ticket)?;
                Ok(hash)
            }
            Moved::Mismatch { current } => {
                lost_race(branch, Some(record.head), current)?;
                Err(WriteError::Invalid(format!(
                    "{branch} moved during a bulk load"
                )))
            }
        }
    }
}
