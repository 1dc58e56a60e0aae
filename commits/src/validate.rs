//! The validation of every landing (DESIGN §2 "Every landing is validated"), computed
//! from the changes a landing makes and point lookups at the head it lands on — never by
//! scanning the map:
//! - a key other than a top-level one needs its parent namespace in the result;
//! - a namespace leaves the map only when nothing is under it in the result;
//! - no content id sits under two keys: an id added at a new key must not be in the id
//!   index of the head unless this landing also removes it from its old key.
//!
//! It returns the edits of the id index that keep that index equal to the key index.
//!
//! It reads the head through a `NodeSource` and knows nothing of the `Store`: the store
//! calls it, never the other way round.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::change::{KeyChange, decode_ref};
use crate::content::{ContentId, ContentKind, ContentRef};
use crate::error::{Conflict, ConflictKind, StorageError, WriteError};
use crate::key::ContentKey;
use crate::object::Commit;
use crate::tree::{self, Edit, NodeSource};

pub(crate) enum Failure {
    Conflicts(Vec<Conflict>),
    Write(WriteError),
}

impl<E: Into<WriteError>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Write(e.into())
    }
}

/// Checks `changes` (sorted by key) against `head` and returns the id-index edits.
pub(crate) fn landing(
    store: &dyn NodeSource,
    head: &Commit,
    changes: &[KeyChange],
) -> Result<Vec<Edit>, Failure> {
    let mut conflicts = Vec::new();

    // Parents: one lookup per distinct parent.
    let mut parent_ok: HashMap<ContentKey, bool> = HashMap::new();
    for c in changes.iter().filter(|c| c.after.is_some()) {
        let Some(parent) = c.key.parent() else {
            continue;
        };
        // A key that exists at the head has its parent there (the head was validated); it
        // still does unless this landing changes the parent too.
        if c.before.is_some() && changes.binary_search_by(|x| x.key.cmp(&parent)).is_err() {
            continue;
        }
        let ok = match parent_ok.get(&parent) {
            Some(ok) => *ok,
            None => {
                let ok = state_after(store, head, changes, &parent)?
                    .is_some_and(|r| r.kind == ContentKind::Namespace);
                parent_ok.insert(parent.clone(), ok);
                ok
            }
        };
        if !ok {
            conflicts.push(Conflict {
                other_key: Some(parent),
                ..Conflict::new(c.key.clone(), ConflictKind::NamespaceMissing)
            });
        }
    }

    // Namespaces that stop being namespaces must be empty.
    for c in changes {
        let was_namespace = c.before.is_some_and(|b| b.kind == ContentKind::Namespace);
        let is_namespace = c.after.is_some_and(|a| a.kind == ContentKind::Namespace);
        if was_namespace
            && !is_namespace
            && let Some(other) = first_under(store, head, &c.key, changes)?
        {
            conflicts.push(Conflict {
                other_key: Some(other),
                ..Conflict::new(c.key.clone(), ConflictKind::NamespaceNotEmpty)
            });
        }
    }

    // Content ids: removed where a key loses its id, added where a key gains one.
    let mut removed: HashSet<ContentId> = HashSet::new();
    let mut added: Vec<(ContentId, &ContentKey)> = Vec::new();
    for c in changes {
        let before = c.before.map(|b| b.id);
        let after = c.after.map(|a| a.id);
        if before != after {
            removed.extend(before);
            if let Some(a) = after {
                added.push((a, &c.key));
            }
        }
    }
    added.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    for pair in added.windows(2) {
        if pair[0].0 == pair[1].0 {
            conflicts.push(Conflict {
                other_key: Some(pair[0].1.clone()),
                ..Conflict::new(pair[1].1.clone(), ConflictKind::DuplicateContentId)
            });
        }
    }
    for (id, key) in &added {
        if removed.contains(id) {
            continue;
        }
        if let Some(existing) = tree::get(store, head.id_index, &id.0)? {
            let existing = ContentKey::from_stored(existing).map_err(WriteError::from)?;
            if existing != **key {
                conflicts.push(Conflict {
                    other_key: Some(existing),
                    ..Conflict::new((*key).clone(), ConflictKind::DuplicateContentId)
                });
            }
        }
    }
    if !conflicts.is_empty() {
        // One conflict per key and kind: a key can break one rule in two ways (an id
        // put twice that also exists elsewhere); the first reason found is enough.
        conflicts.sort_by(|a, b| a.key.cmp(&b.key));
        conflicts.dedup_by(|a, b| a.key == b.key && a.kind == b.kind);
        return Err(Failure::Conflicts(conflicts));
    }

    let mut edits: HashMap<ContentId, Option<Bytes>> =
        removed.into_iter().map(|id| (id, None)).collect();
    for (id, key) in added {
        edits.insert(id, Some(key.as_bytes().clone()));
    }
    let mut edits: Vec<Edit> = edits
        .into_iter()
        .map(|(id, k)| (Bytes::copy_from_slice(&id.0), k))
        .collect();
    edits.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(edits)
}

/// What `key` holds after `changes` apply to `head`.
fn state_after(
    store: &dyn NodeSource,
    head: &Commit,
    changes: &[KeyChange],
    key: &ContentKey,
) -> Result<Option<ContentRef>, Failure> {
    if let Ok(i) = changes.binary_search_by(|c| c.key.cmp(key)) {
        return Ok(changes[i].after);
    }
    match tree::get(store, head.key_index, key.as_bytes())? {
        Some(v) => Ok(Some(decode_ref(&v)?)),
        None => Ok(None),
    }
}

/// The first key strictly under `prefix` in (the map at `commit`) + `changes` (sorted by
/// key): what keeps a namespace from being dropped, and what `CheckPrefixEmpty` refuses.
pub(crate) fn first_under(
    src: &dyn NodeSource,
    commit: &Commit,
    prefix: &ContentKey,
    changes: &[KeyChange],
) -> Result<Option<ContentKey>, WriteError> {
    let (lo, hi) = prefix.children_range();
    let lo_i = changes.partition_point(|c| c.key.as_bytes() < &lo);
    let hi_i = changes.partition_point(|c| c.key.as_bytes() < &hi);
    let window = &changes[lo_i..hi_i];
    if let Some(c) = window.iter().find(|c| c.after.is_some()) {
        return Ok(Some(c.key.clone()));
    }
    // Keys deleted by the changes do not count; there are at most `window.len()` of them.
    let mut found = None;
    let mut failure = None;
    tree::for_each(src, commit.key_index, &lo, Some(&hi), |node, i| {
        let k = node.key(i);
        let deleted = window
            .binary_search_by(|c| c.key.as_bytes().as_ref().cmp(k))
            .is_ok();
        if deleted {
            return true;
        }
        match ContentKey::from_stored(node.key_bytes(i)) {
            Ok(key) => found = Some(key),
            Err(e) => failure = Some(e),
        }
        false
    })?;
    if let Some(e) = failure {
        // The node was checked against its hash when read: the key was written damaged.
        return Err(StorageError::corrupt(None, format!("stored key: {e}")).into());
    }
    Ok(found)
}
