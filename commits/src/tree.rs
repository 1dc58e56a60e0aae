//! The key index: a prolly tree over sorted byte keys.
//!
//! Chunk boundaries are a pure function of the sorted entries: after each entry the
//! chunker cuts when a keyed BLAKE3 of the entry's key falls below a threshold that rises
//! with the chunk's length, always at `NODE_ENTRIES_MAX`, and whenever one more entry of
//! the largest possible size might not fit in `NODE_BYTES_MAX`. A cut depends only on the
//! entries of its own chunk, so
//! - the same map has the same root however it was built (history independence);
//! - an edit re-chunks from the start of the node it touches until a cut falls on an old
//!   boundary, so a value-only change rewrites one root-to-leaf path;
//! - no choice of names makes a node larger than the bound.
//!
//! Level 0 holds the entries; each node of level L+1 holds, per child, the child's first
//! key and hash. The cut hash is salted with the level, so the levels chunk independently.
//! Diffs skip equal subtrees by hash; scans are ordered range scans with a limit.

use std::sync::Arc;

use bytes::Bytes;

use crate::encoding::{DecodeError, ObjectKind, Reader, Writer, push_varint};
use crate::hash::{Hash, HashMapByDigest};
use crate::limits::{KEY_BYTES_MAX, NODE_BYTES_MAX, NODE_ENTRIES_MAX, NODE_ENTRIES_TARGET};

/// The largest encoded entry: a key and a value of at most `KEY_BYTES_MAX` bytes each
/// (an id-index value is a content key), with their two-byte length prefixes.
pub const ENTRY_BYTES_MAX: usize = 2 + KEY_BYTES_MAX + 2 + KEY_BYTES_MAX;

/// Version, kind, level and an entry count of at most three varint bytes.
const NODE_HEADER_BYTES_MAX: usize = 2 + 1 + 3;

/// The hazard constant of the cut rule: after the n-th entry of a chunk the cut
/// probability is n / CUT_HAZARD, which makes the mean chunk length about
/// sqrt(pi * CUT_HAZARD / 2) = NODE_ENTRIES_TARGET.
const CUT_HAZARD: u64 = (2 * NODE_ENTRIES_TARGET * NODE_ENTRIES_TARGET * 100 / 314) as u64;

pub type Entry = (Bytes, Bytes);

/// A node as its parent sees it: its first key and its hash.
type NodeRef = (Bytes, Hash);

/// An index node: its stored bytes and, per entry, where its key and value lie in them.
/// Reading a node parses offsets once; keys and values are borrowed slices, and owned
/// `Bytes` are made only for what a caller keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    level: u8,
    raw: Bytes,
    /// Per entry: key offset, key length, value offset, value length.
    slots: Vec<[u32; 4]>,
}

impl Node {
    /// Builds and encodes a node from sorted entries (tests and fixtures; the chunker
    /// builds nodes itself).
    pub fn build<'a>(level: u8, entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Node {
        let mut body = Body::default();
        for (k, v) in entries {
            body.push(level, k, v);
        }
        body.finish(level)
    }

    pub fn decode(raw: Bytes) -> Result<Node, DecodeError> {
        let mut r = Reader::new(&raw, ObjectKind::Node)?;
        let level = r.u8()?;
        let n = r.varint()?;
        if n == 0 || n > NODE_ENTRIES_MAX as u64 {
            return Err(DecodeError("node entry count out of bounds"));
        }
        let mut slots: Vec<[u32; 4]> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let klen = r.len_prefix()?;
            let kpos = r.position();
            let key = r.raw(klen)?;
            if let Some(last) = slots.last()
                && &raw[last[0] as usize..(last[0] + last[1]) as usize] >= key
            {
                return Err(DecodeError("node keys out of order"));
            }
            let vlen = if level == 0 { r.len_prefix()? } else { 32 };
            let vpos = r.position();
            r.raw(vlen)?;
            slots.push([kpos as u32, klen as u32, vpos as u32, vlen as u32]);
        }
        r.end()?;
        Ok(Node { level, raw, slots })
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    /// The stored encoding.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let [at, len, ..] = self.slots[i];
        &self.raw[at as usize..(at + len) as usize]
    }

    pub fn value(&self, i: usize) -> &[u8] {
        let [.., at, len] = self.slots[i];
        &self.raw[at as usize..(at + len) as usize]
    }

    /// The key as owned bytes sharing the node's buffer.
    pub fn key_bytes(&self, i: usize) -> Bytes {
        let [at, len, ..] = self.slots[i];
        self.raw.slice(at as usize..(at + len) as usize)
    }

    pub fn value_bytes(&self, i: usize) -> Bytes {
        let [.., at, len] = self.slots[i];
        self.raw.slice(at as usize..(at + len) as usize)
    }

    pub fn first_key(&self) -> &[u8] {
        self.key(0)
    }

    /// The child hash of an internal entry.
    pub fn child(&self, i: usize) -> Hash {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.value(i));
        Hash::from_bytes(h)
    }

    /// The index of `key`, or where it would go.
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.slots.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The index of the first entry with a key `>= key`.
    fn lower_bound(&self, key: &[u8]) -> usize {
        if key.is_empty() {
            return 0;
        }
        match self.search(key) {
            Ok(i) | Err(i) => i,
        }
    }

    /// For an internal node: the index of the child whose range holds `key` (the last
    /// child whose first key is <= `key`, or the first child).
    fn child_for(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// The same node with some values replaced by values of the same lengths: the bytes
    /// are copied and patched in place, the offsets stay.
    fn with_values(&self, edits: &[Edit]) -> Option<Node> {
        let mut raw = self.raw.to_vec();
        for (k, v) in edits {
            let v = v.as_ref()?;
            let i = self.search(k).ok()?;
            let [.., at, len] = self.slots[i];
            if len as usize != v.len() {
                return None;
            }
            raw[at as usize..(at + len) as usize].copy_from_slice(v);
        }
        Some(Node {
            level: self.level,
            raw: Bytes::from(raw),
            slots: self.slots.clone(),
        })
    }
}

/// The entries of a node being built, encoded as they arrive; the header is added when
/// the node is cut, since it holds the entry count.
#[derive(Debug, Default)]
struct Body {
    bytes: Vec<u8>,
    slots: Vec<[u32; 4]>,
}

impl Body {
    fn push(&mut self, level: u8, key: &[u8], value: &[u8]) {
        push_varint(&mut self.bytes, key.len() as u64);
        let kpos = self.bytes.len();
        self.bytes.extend_from_slice(key);
        if level == 0 {
            push_varint(&mut self.bytes, value.len() as u64);
        }
        let vpos = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.slots.push([
            kpos as u32,
            key.len() as u32,
            vpos as u32,
            value.len() as u32,
        ]);
    }

    fn finish(self, level: u8) -> Node {
        let mut w =
            Writer::with_capacity(ObjectKind::Node, NODE_HEADER_BYTES_MAX + self.bytes.len());
        w.u8(level);
        w.varint(self.slots.len() as u64);
        let header = w.len() as u32;
        w.raw(&self.bytes);
        let slots = self
            .slots
            .into_iter()
            .map(|[k, kl, v, vl]| [k + header, kl, v + header, vl])
            .collect();
        Node {
            level,
            raw: Bytes::from(w.finish()),
            slots,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("index node {0} is missing from storage")]
    Missing(Hash),
    #[error("index node {hash} is damaged: {reason}")]
    Corrupt { hash: Hash, reason: String },
    #[error("storage read failed: {0}")]
    Read(String),
}

/// Where tree algorithms read nodes from: the store's cache over its backend.
pub trait NodeSource {
    fn node(&self, hash: &Hash) -> Result<Arc<Node>, TreeError>;

    /// A hint: these nodes are about to be read, in order (a scan's next siblings). A
    /// source behind a network reads them in one round trip; the default does nothing.
    fn prefetch(&self, hashes: &[Hash]) {
        let _ = hashes;
    }
}

/// How many of a scan's next siblings a cursor announces (`NodeSource::prefetch`).
const PREFETCH_SIBLINGS: usize = 16;

/// Announces the children of `parent` from `from` on (at most `PREFETCH_SIBLINGS`).
fn prefetch_children(src: &dyn NodeSource, parent: &Node, from: usize) {
    let end = parent.len().min(from + PREFETCH_SIBLINGS);
    if from + 1 < end {
        let hashes: Vec<Hash> = (from..end).map(|i| parent.child(i)).collect();
        src.prefetch(&hashes);
    }
}

/// Nodes created by an edit, waiting to be written before the ref moves.
#[derive(Debug, Default)]
pub struct NewNodes {
    pub written: Vec<(Hash, Bytes)>,
    nodes: HashMapByDigest<Arc<Node>>,
}

impl NewNodes {
    fn add(&mut self, node: Node) -> Hash {
        debug_assert!(node.raw.len() <= NODE_BYTES_MAX);
        let hash = Hash::of(&node.raw);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.nodes.entry(hash) {
            self.written.push((hash, node.raw.clone()));
            slot.insert(Arc::new(node));
        }
        hash
    }

    pub fn get(&self, hash: &Hash) -> Option<&Arc<Node>> {
        self.nodes.get(hash)
    }

    pub fn len(&self) -> usize {
        self.written.len()
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&Hash, &Arc<Node>)> {
        self.nodes.iter()
    }
}

/// Reads new nodes first, then the source.
struct Overlay<'a> {
    base: &'a dyn NodeSource,
    new: &'a NewNodes,
}

impl NodeSource for Overlay<'_> {
    fn node(&self, hash: &Hash) -> Result<Arc<Node>, TreeError> {
        match self.new.get(hash) {
            Some(n) => Ok(n.clone()),
            None => self.base.node(hash),
        }
    }
}

/// Builds the nodes of one level from a stream of entries.
struct Chunker {
    level: u8,
    body: Body,
}

impl Chunker {
    fn new(level: u8) -> Chunker {
        Chunker {
            level,
            body: Body::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.body.slots.is_empty()
    }

    /// Adds an entry; returns the (first key, hash) of a node when this entry ends one.
    fn push(&mut self, key: &[u8], value: &[u8], out: &mut NewNodes) -> Option<NodeRef> {
        debug_assert!(key.len() <= KEY_BYTES_MAX && value.len() <= KEY_BYTES_MAX);
        self.body.push(self.level, key, value);
        let cut = is_boundary(
            self.level,
            key,
            self.body.slots.len(),
            self.body.bytes.len(),
        );
        if cut { self.cut(out) } else { None }
    }

    fn cut(&mut self, out: &mut NewNodes) -> Option<NodeRef> {
        if self.is_empty() {
            return None;
        }
        let node = std::mem::take(&mut self.body).finish(self.level);
        let first = node.key_bytes(0);
        Some((first, out.add(node)))
    }
}

/// The cut rule: a pure function of the chunk's own entries up to and including this one.
fn is_boundary(level: u8, key: &[u8], len: usize, bytes: usize) -> bool {
    if len >= NODE_ENTRIES_MAX || bytes + ENTRY_BYTES_MAX + NODE_HEADER_BYTES_MAX > NODE_BYTES_MAX {
        return true;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[level]);
    hasher.update(key);
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    let h = u64::from_le_bytes(first);
    h < (u64::MAX / CUT_HAZARD).saturating_mul(len as u64)
}

/// A position at one level of a tree: the path of internal nodes above it and the node.
struct Cursor {
    path: Vec<(Arc<Node>, usize)>,
    node: Arc<Node>,
    hash: Hash,
}

impl Cursor {
    /// The node at `level` whose range holds `key`.
    fn seek(
        src: &dyn NodeSource,
        root: &(Hash, Arc<Node>),
        level: u8,
        key: &[u8],
    ) -> Result<Cursor, TreeError> {
        let mut path = Vec::new();
        let (mut hash, mut node) = root.clone();
        while node.level() > level {
            let i = node.child_for(key);
            hash = node.child(i);
            if node.level() == level + 1 {
                // The scan goes on through this node's next children.
                prefetch_children(src, &node, i);
            }
            let child = src.node(&hash)?;
            path.push((node, i));
            node = child;
        }
        Ok(Cursor { path, node, hash })
    }

    /// The first key of the next node at this level, if there is one.
    fn next_first_key(&self) -> Option<&[u8]> {
        self.path
            .iter()
            .rev()
            .find(|(n, i)| i + 1 < n.len())
            .map(|(n, i)| n.key(i + 1))
    }

    /// Moves to the next node at this level; false at the end.
    fn advance(&mut self, src: &dyn NodeSource) -> Result<bool, TreeError> {
        let Some(depth) = self.path.iter().rposition(|(n, i)| i + 1 < n.len()) else {
            return Ok(false);
        };
        self.path.truncate(depth + 1);
        self.path[depth].1 += 1;
        loop {
            let (parent, i) = self.path.last().expect("path is not empty");
            if parent.level() == self.node.level() + 1 && i % PREFETCH_SIBLINGS == 0 {
                prefetch_children(src, parent, *i);
            }
            let hash = parent.child(*i);
            let child = src.node(&hash)?;
            if child.level() == self.node.level() {
                self.node = child;
                self.hash = hash;
                return Ok(true);
            }
            self.path.push((child, 0));
        }
    }
}

/// An edit of one key: `Some(value)` puts, `None` deletes.
pub type Edit = (Bytes, Option<Bytes>);

/// Applies sorted, unique edits to the tree at `root` and returns the new root. New nodes
/// go to `out`; nothing is written to storage here.
pub fn apply(
    src: &dyn NodeSource,
    root: Option<Hash>,
    edits: Vec<Edit>,
    out: &mut NewNodes,
) -> Result<Option<Hash>, TreeError> {
    debug_assert!(
        edits.windows(2).all(|w| w[0].0 < w[1].0),
        "edits sorted and unique"
    );
    if edits.is_empty() {
        return Ok(root);
    }
    let old_root = match root {
        Some(h) => Some((h, src.node(&h)?)),
        None => None,
    };
    let height = old_root.as_ref().map_or(0, |(_, r)| r.level() as usize + 1);
    let mut edits = edits;
    let mut level: usize = 0;
    loop {
        let nodes: Vec<NodeRef> = match &old_root {
            Some(r) if level + 1 < height => {
                // Below the root: the level above changes by what changed here.
                let (removed, added) = edit_level(src, r, level as u8, &edits, out)?;
                let next = merge_level_edits(removed, added);
                if next.is_empty() {
                    // Every rewritten node came out as it was: nothing above changes.
                    return Ok(root);
                }
                edits = next;
                level += 1;
                continue;
            }
            // The root's level: its one node is re-chunked whole, so the new nodes are
            // the whole level.
            Some(r) if level + 1 == height => edit_level(src, r, level as u8, &edits, out)?.1,
            // Above the old tree: only puts matter.
            _ => chunk_puts(level as u8, edits, out),
        };
        match nodes.len() {
            0 => return Ok(None),
            1 => {
                return collapse(
                    &Overlay {
                        base: src,
                        new: out,
                    },
                    nodes[0].1,
                );
            }
            _ => {
                edits = nodes
                    .into_iter()
                    .map(|(k, h)| (k, Some(Bytes::copy_from_slice(h.as_bytes()))))
                    .collect();
                level += 1;
            }
        }
    }
}

/// A root with a single child is not a root: the child is (from-scratch builds stop at
/// the first level with one node).
fn collapse(src: &dyn NodeSource, mut root: Hash) -> Result<Option<Hash>, TreeError> {
    loop {
        let node = src.node(&root)?;
        if node.level() > 0 && node.len() == 1 {
            root = node.child(0);
        } else {
            return Ok(Some(root));
        }
    }
}

/// Chunks a level that has no old nodes: only the puts count.
fn chunk_puts(level: u8, edits: Vec<Edit>, out: &mut NewNodes) -> Vec<NodeRef> {
    let mut chunker = Chunker::new(level);
    let mut nodes = Vec::new();
    for (k, v) in &edits {
        if let Some(v) = v
            && let Some(node) = chunker.push(k, v, out)
        {
            nodes.push(node);
        }
    }
    nodes.extend(chunker.cut(out));
    nodes
}

/// Applies edits to the nodes of one level and returns the old nodes it rewrote and the
/// new nodes that replace them, as (first key, hash).
fn edit_level(
    src: &dyn NodeSource,
    root: &(Hash, Arc<Node>),
    level: u8,
    edits: &[Edit],
    out: &mut NewNodes,
) -> Result<(Vec<NodeRef>, Vec<NodeRef>), TreeError> {
    let mut removed: Vec<NodeRef> = Vec::new();
    let mut added: Vec<NodeRef> = Vec::new();
    let mut i = 0;
    while i < edits.len() {
        let mut cursor = Cursor::seek(src, root, level, &edits[i].0)?;
        let mut chunker = Chunker::new(level);
        loop {
            let node = cursor.node.clone();
            let end = match cursor.next_first_key() {
                Some(limit) => i + edits[i..].partition_point(|(k, _)| k.as_ref() < limit),
                None => edits.len(),
            };
            removed.push((node.key_bytes(0), cursor.hash));
            if chunker.is_empty()
                && let Some(patched) = node.with_values(&edits[i..end])
            {
                // Same keys, same sizes: every cut stays where it was.
                added.push((node.key_bytes(0), out.add(patched)));
                i = end;
                break;
            }
            let (mut o, mut e) = (0, i);
            loop {
                let take_edit = match (o < node.len(), e < end) {
                    (false, false) => break,
                    (false, true) => true,
                    (true, false) => false,
                    (true, true) => edits[e].0.as_ref() <= node.key(o),
                };
                let pushed = if take_edit {
                    let (k, v) = &edits[e];
                    e += 1;
                    if o < node.len() && node.key(o) == k.as_ref() {
                        o += 1;
                    }
                    match v {
                        Some(v) => chunker.push(k, v, out),
                        None => None,
                    }
                } else {
                    o += 1;
                    chunker.push(node.key(o - 1), node.value(o - 1), out)
                };
                added.extend(pushed);
            }
            i = end;
            if chunker.is_empty() {
                break;
            }
            if !cursor.advance(src)? {
                added.extend(chunker.cut(out));
                break;
            }
        }
    }
    Ok((removed, added))
}

/// Combines the old nodes removed and the new nodes added at one level (below the root)
/// into sorted edits of the level above; a node that came out unchanged cancels out.
fn merge_level_edits(mut removed: Vec<NodeRef>, mut added: Vec<NodeRef>) -> Vec<Edit> {
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    removed.dedup_by(|a, b| a.0 == b.0);
    added.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(removed.len() + added.len());
    let (mut r, mut a) = (removed.into_iter().peekable(), added.into_iter().peekable());
    loop {
        match (r.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => {
                let (k, _) = r.next().expect("peeked");
                out.push((k, None));
            }
            (None, Some(_)) => {
                let (k, h) = a.next().expect("peeked");
                out.push((k, Some(Bytes::copy_from_slice(h.as_bytes()))));
            }
            (Some((rk, _)), Some((ak, _))) => match rk.cmp(ak) {
                std::cmp::Ordering::Less => {
                    let (k, _) = r.next().expect("peeked");
                    out.push((k, None));
                }
                std::cmp::Ordering::Greater => {
                    let (k, h) = a.next().expect("peeked");
                    out.push((k, Some(Bytes::copy_from_slice(h.as_bytes()))));
                }
                std::cmp::Ordering::Equal => {
                    let (_, rh) = r.next().expect("peeked");
                    let (k, ah) = a.next().expect("peeked");
                    if rh != ah {
                        out.push((k, Some(Bytes::copy_from_slice(ah.as_bytes()))));
                    }
                }
            },
        }
    }
    out
}

/// Builds a tree from sorted, unique entries.
pub fn build(entries: Vec<Entry>, out: &mut NewNodes) -> Result<Option<Hash>, TreeError> {
    struct Empty;
    impl NodeSource for Empty {
        fn node(&self, hash: &Hash) -> Result<Arc<Node>, TreeError> {
            Err(TreeError::Missing(*hash))
        }
    }
    apply(
        &Empty,
        None,
        entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        out,
    )
}

/// The value at `key`.
pub fn get(
    src: &dyn NodeSource,
    root: Option<Hash>,
    key: &[u8],
) -> Result<Option<Bytes>, TreeError> {
    let Some(root) = root else { return Ok(None) };
    let mut node = src.node(&root)?;
    while node.level() > 0 {
        if key < node.first_key() {
            return Ok(None);
        }
        node = src.node(&node.child(node.child_for(key)))?;
    }
    Ok(node.search(key).ok().map(|i| node.value_bytes(i)))
}

/// Up to `limit` entries with `start <= key < end` (`end = None`: no upper bound), in key
/// order, and whether more remain.
pub fn scan(
    src: &dyn NodeSource,
    root: Option<Hash>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Entry>, bool), TreeError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    for_each(src, root, start, end, |node, i| {
        if out.len() == limit {
            more = true;
            return false;
        }
        out.push((node.key_bytes(i), node.value_bytes(i)));
        true
    })?;
    Ok((out, more))
}

/// Calls `f(node, i)` for every entry with `start <= key < end`, in order, until it
/// returns false. The entry is `node.key(i)` and `node.value(i)`, borrowed.
pub fn for_each(
    src: &dyn NodeSource,
    root: Option<Hash>,
    start: &[u8],
    end: Option<&[u8]>,
    mut f: impl FnMut(&Node, usize) -> bool,
) -> Result<(), TreeError> {
    let Some(root) = root else { return Ok(()) };
    let root = (root, src.node(&root)?);
    let mut cursor = Cursor::seek(src, &root, 0, start)?;
    loop {
        let node = &cursor.node;
        for i in node.lower_bound(start)..node.len() {
            if end.is_some_and(|e| node.key(i) >= e) || !f(node, i) {
                return Ok(());
            }
        }
        if !cursor.advance(src)? {
            return Ok(());
        }
    }
}

/// One key whose value differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Bytes,
    pub before: Option<Bytes>,
    pub after: Option<Bytes>,
}

enum Item {
    Subtree { hash: Hash, first: Bytes, level: u8 },
    Entry(Entry),
}

impl Item {
    fn first(&self) -> &Bytes {
        match self {
            Item::Subtree { first, .. } => first,
            Item::Entry((k, _)) => k,
        }
    }
}

/// A walk over one side of a diff: a stack of pending items, front last.
struct Frontier<'a> {
    stack: Vec<Item>,
    start: &'a [u8],
    end: Option<&'a [u8]>,
}

impl Frontier<'_> {
    fn expand(
        &mut self,
        src: &dyn NodeSource,
        hash: Hash,
        hi: Option<Bytes>,
    ) -> Result<(), TreeError> {
        let node = src.node(&hash)?;
        let n = node.len();
        for i in (0..n).rev() {
            let k = node.key(i);
            if self.end.is_some_and(|e| k >= e) {
                continue;
            }
            if node.level() == 0 {
                if self.start.is_empty() || k >= self.start {
                    self.stack
                        .push(Item::Entry((node.key_bytes(i), node.value_bytes(i))));
                }
            } else {
                // A child's keys end before the next child's first key (or `hi`).
                let next = if i + 1 < n {
                    Some(node.key(i + 1))
                } else {
                    hi.as_deref()
                };
                if !self.start.is_empty() && next.is_some_and(|nk| nk <= self.start) {
                    continue;
                }
                self.stack.push(Item::Subtree {
                    hash: node.child(i),
                    first: node.key_bytes(i),
                    level: node.level() - 1,
                });
            }
        }
        Ok(())
    }

    /// The upper bound of the front item: the first key of the item after it.
    fn pop_subtree(&mut self) -> Option<(Hash, Option<Bytes>)> {
        match self.stack.pop() {
            Some(Item::Subtree { hash, .. }) => {
                Some((hash, self.stack.last().map(|i| i.first().clone())))
            }
            Some(entry) => {
                self.stack.push(entry);
                None
            }
            None => None,
        }
    }
}

/// Up to `limit` changes from tree `a` to tree `b` with `start <= key < end`, in key
/// order, and whether more remain. Equal subtrees are skipped by hash, so the work is
/// proportional to the changes times the depth, not to the size of the maps.
pub fn diff(
    src: &dyn NodeSource,
    a: Option<Hash>,
    b: Option<Hash>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Change>, bool), TreeError> {
    let mut out = Vec::new();
    if a == b {
        return Ok((out, false));
    }
    let mut fa = Frontier {
        stack: Vec::new(),
        start,
        end,
    };
    let mut fb = Frontier {
        stack: Vec::new(),
        start,
        end,
    };
    let level_of = |h: Option<Hash>| -> Result<Option<Item>, TreeError> {
        Ok(match h {
            Some(h) => {
                let n = src.node(&h)?;
                Some(Item::Subtree {
                    hash: h,
                    first: n.key_bytes(0),
                    level: n.level(),
                })
            }
            None => None,
        })
    };
    fa.stack.extend(level_of(a)?);
    fb.stack.extend(level_of(b)?);
    enum Step {
        SkipBoth,
        ExpandA,
        ExpandB,
        ExpandBoth,
        EmitA,
        EmitB,
        EmitBoth,
    }
    loop {
        let step = match (fa.stack.last(), fb.stack.last()) {
            (None, None) => return Ok((out, false)),
            (Some(Item::Subtree { .. }), None) => Step::ExpandA,
            (None, Some(Item::Subtree { .. })) => Step::ExpandB,
            (Some(Item::Entry(_)), None) => Step::EmitA,
            (None, Some(Item::Entry(_))) => Step::EmitB,
            (Some(x), Some(y)) => match (x, y) {
                (
                    Item::Subtree {
                        hash: ha,
                        level: la,
                        first: ka,
                    },
                    Item::Subtree {
                        hash: hb,
                        level: lb,
                        first: kb,
                    },
                ) => {
                    if ha == hb {
                        Step::SkipBoth
                    } else {
                        match ka.cmp(kb) {
                            std::cmp::Ordering::Less => Step::ExpandA,
                            std::cmp::Ordering::Greater => Step::ExpandB,
                            std::cmp::Ordering::Equal => match la.cmp(lb) {
                                std::cmp::Ordering::Greater => Step::ExpandA,
                                std::cmp::Ordering::Less => Step::ExpandB,
                                std::cmp::Ordering::Equal => Step::ExpandBoth,
                            },
                        }
                    }
                }
                (Item::Subtree { first: ka, .. }, Item::Entry((kb, _))) => {
                    if kb < ka {
                        Step::EmitB
                    } else {
                        Step::ExpandA
                    }
                }
                (Item::Entry((ka, _)), Item::Subtree { first: kb, .. }) => {
                    if ka < kb {
                        Step::EmitA
                    } else {
                        Step::ExpandB
                    }
                }
                (Item::Entry((ka, va)), Item::Entry((kb, vb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => Step::EmitA,
                    std::cmp::Ordering::Greater => Step::EmitB,
                    std::cmp::Ordering::Equal => {
                        if va == vb {
                            fa.stack.pop();
                            fb.stack.pop();
                            continue;
                        }
                        Step::EmitBoth
                    }
                },
            },
        };
        let emitting = matches!(step, Step::EmitA | Step::EmitB | Step::EmitBoth);
        if emitting && out.len() == limit {
            return Ok((out, true));
        }
        match step {
            Step::SkipBoth => {
                fa.stack.pop();
                fb.stack.pop();
            }
            Step::ExpandA => {
                let (h, hi) = fa.pop_subtree().expect("front is a subtree");
                fa.expand(src, h, hi)?;
            }
            Step::ExpandB => {
                let (h, hi) = fb.pop_subtree().expect("front is a subtree");
                fb.expand(src, h, hi)?;
            }
            Step::ExpandBoth => {
                let level = match fa.stack.last() {
                    Some(Item::Subtree { level, .. }) => *level,
                    _ => unreachable!("front is a subtree"),
                };
                let (ha, hia) = fa.pop_subtree().expect("front is a subtree");
                let (hb, hib) = fb.pop_subtree().expect("front is a subtree");
                if level == 0 && hia == hib {
                    // Two leaves over the same key range: join their entries directly
                    // instead of stacking every entry of both.
                    if !join_leaves(src, ha, hb, &fa, &mut out, limit)? {
                        return Ok((out, true));
                    }
                } else {
                    fa.expand(src, ha, hia)?;
                    fb.expand(src, hb, hib)?;
                }
            }
            Step::EmitA => {
                let Some(Item::Entry((k, v))) = fa.stack.pop() else {
                    unreachable!("front is an entry")
                };
                out.push(Change {
                    key: k,
                    before: Some(v),
                    after: None,
                });
            }
            Step::EmitB => {
                let Some(Item::Entry((k, v))) = fb.stack.pop() else {
                    unreachable!("front is an entry")
                };
                out.push(Change {
                    key: k,
                    before: None,
                    after: Some(v),
                });
            }
            Step::EmitBoth => {
                let Some(Item::Entry((k, va))) = fa.stack.pop() else {
                    unreachable!("front is an entry")
                };
                let Some(Item::Entry((_, vb))) = fb.stack.pop() else {
                    unreachable!("front is an entry")
                };
                out.push(Change {
                    key: k,
                    before: Some(va),
                    after: Some(vb),
                });
            }
        }
    }
}

/// Emits the changes between two leaves that cover the same key range, within the
/// frontier's bounds. Returns false when `limit` stopped it (the caller resumes after the
/// last emitted key).
fn join_leaves(
    src: &dyn NodeSource,
    a: Hash,
    b: Hash,
    bounds: &Frontier<'_>,
    out: &mut Vec<Change>,
    limit: usize,
) -> Result<bool, TreeError> {
    let (na, nb) = (src.node(&a)?, src.node(&b)?);
    let stop = |n: &Node| match bounds.end {
        Some(e) => n.lower_bound(e),
        None => n.len(),
    };
    let (mut i, end_a) = (na.lower_bound(bounds.start), stop(&na));
    let (mut j, end_b) = (nb.lower_bound(bounds.start), stop(&nb));
    loop {
        let order = match (i < end_a, j < end_b) {
            (false, false) => return Ok(true),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (true, true) => na.key(i).cmp(nb.key(j)),
        };
        let change = match order {
            std::cmp::Ordering::Less => {
                i += 1;
                Change {
                    key: na.key_bytes(i - 1),
                    before: Some(na.value_bytes(i - 1)),
                    after: None,
                }
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                Change {
                    key: nb.key_bytes(j - 1),
                    before: None,
                    after: Some(nb.value_bytes(j - 1)),
                }
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                if na.value(i - 1) == nb.value(j - 1) {
                    continue;
                }
                Change {
                    key: na.key_bytes(i - 1),
                    before: Some(na.value_bytes(i - 1)),
                    after: Some(nb.value_bytes(j - 1)),
                }
            }
        };
        if out.len() == limit {
            return Ok(false);
        }
        out.push(change);
    }
}

/// Counts a tree's nodes per level (root level first): for tests and benchmark reports.
pub fn shape(src: &dyn NodeSource, root: Option<Hash>) -> Result<Vec<usize>, TreeError> {
    let mut levels = Vec::new();
    let mut frontier: Vec<Hash> = root.into_iter().collect();
    while !frontier.is_empty() {
        levels.push(frontier.len());
        let mut next = Vec::new();
        for h in &frontier {
            let n = src.node(h)?;
            if n.level() > 0 {
                next.extend((0..n.len()).map(|i| n.child(i)));
            }
        }
        frontier = next;
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use parking_lot::Mutex;
    use proptest::prelude::*;

    use super::*;

    /// Nodes kept in a map, as a store's cache would.
    #[derive(Default)]
    struct Mem(Mutex<HashMap<Hash, Arc<Node>>>);

    impl NodeSource for Mem {
        fn node(&self, hash: &Hash) -> Result<Arc<Node>, TreeError> {
            self.0
                .lock()
                .get(hash)
                .cloned()
                .ok_or(TreeError::Missing(*hash))
        }
    }

    impl Mem {
        fn keep(&self, out: NewNodes) -> usize {
            let n = out.written.len();
            for (h, bytes) in out.written {
                let node = Node::decode(bytes.clone()).expect("a written node decodes");
                assert_eq!(Hash::of(&bytes), h);
                let entries: Vec<(&[u8], &[u8])> = (0..node.len())
                    .map(|i| (node.key(i), node.value(i)))
                    .collect();
                assert_eq!(
                    Node::build(node.level(), entries).raw(),
                    &bytes,
                    "encoding is canonical"
                );
                assert!(bytes.len() <= NODE_BYTES_MAX);
                self.0.lock().insert(h, Arc::new(node));
            }
            n
        }

        fn apply(
            &self,
            root: Option<Hash>,
            edits: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        ) -> Option<Hash> {
            let edits = edits
                .iter()
                .map(|(k, v)| (Bytes::from(k.clone()), v.clone().map(Bytes::from)))
                .collect();
            let mut out = NewNodes::default();
            let root = apply(self, root, edits, &mut out).unwrap();
            self.keep(out);
            root
        }

        fn build(&self, map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Option<Hash> {
            let mut out = NewNodes::default();
            let entries = map
                .iter()
                .map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone())))
                .collect();
            let root = build(entries, &mut out).unwrap();
            self.keep(out);
            root
        }

        fn all(&self, root: Option<Hash>) -> BTreeMap<Vec<u8>, Vec<u8>> {
            let (entries, more) = scan(self, root, b"", None, usize::MAX).unwrap();
            assert!(!more);
            entries
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        }
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key-{i:08}").into_bytes()
    }

    #[test]
    fn a_value_change_rewrites_one_path_and_builds_match_edits() {
        let mem = Mem::default();
        let map: BTreeMap<_, _> = (0..20_000).map(|i| (key(i), vec![1u8; 49])).collect();
        let root = mem.build(&map);
        let depth = shape(&mem, root).unwrap().len();
        assert!(
            depth >= 3,
            "20,000 keys make at least three levels, got {depth}"
        );
        let mut edit = BTreeMap::new();
        edit.insert(key(777), Some(vec![2u8; 49]));
        let mut out = NewNodes::default();
        let edits = edit
            .iter()
            .map(|(k, v)| (Bytes::from(k.clone()), v.clone().map(Bytes::from)))
            .collect();
        let new_root = apply(&mem, root, edits, &mut out).unwrap();
        assert_eq!(out.len(), depth, "one node per level is rewritten");
        mem.keep(out);
        let mut expected = map.clone();
        expected.insert(key(777), vec![2u8; 49]);
        assert_eq!(mem.build(&expected), new_root);
        let (changes, more) = diff(&mem, root, new_root, b"", None, 100).unwrap();
        assert!(!more);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].key.as_ref(), key(777).as_slice());
    }

    #[test]
    fn huge_keys_never_overflow_a_node() {
        let mem = Mem::default();
        let map: BTreeMap<_, _> = (0..300u32)
            .map(|i| {
                let mut k = format!("{i:05}").into_bytes();
                k.resize(KEY_BYTES_MAX, b'x');
                (k, vec![7u8; KEY_BYTES_MAX])
            })
            .collect();
        let root = mem.build(&map);
        assert_eq!(mem.all(root), map);
    }

    #[test]
    fn deleting_everything_leaves_the_empty_tree() {
        let mem = Mem::default();
        let map: BTreeMap<_, _> = (0..5_000).map(|i| (key(i), vec![1u8])).collect();
        let root = mem.build(&map);
        let deletes = map.keys().map(|k| (k.clone(), None)).collect();
        assert_eq!(mem.apply(root, &deletes), None);
    }

    /// Regression: appending to a one-node tree when the old node's end is also a cut
    /// keeps the old node (once lost because the unchanged node cancelled out).
    #[test]
    fn one_key_at_a_time_matches_builds() {
        let mem = Mem::default();
        let mut model = BTreeMap::new();
        let mut root = None;
        for t in 0..4 {
            for i in 0..40 {
                let k = format!("ns\0t{t}_{i}").into_bytes();
                let edit = BTreeMap::from([(k.clone(), Some(vec![1u8; 49]))]);
                root = mem.apply(root, &edit);
                model.insert(k, vec![1u8; 49]);
                assert_eq!(mem.all(root), model);
                assert_eq!(root, mem.build(&model));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Single-key edits on small trees, where roots split and collapse often.
        #[test]
        fn single_edits_keep_roots_canonical(
            initial in proptest::collection::btree_map(0u32..400, 0u8..4, 0..200),
            edits in proptest::collection::vec((0u32..400, proptest::option::of(0u8..4)), 1..60),
        ) {
            let mem = Mem::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = initial.iter().map(|(k, v)| (key(*k), vec![*v])).collect();
            let mut root = mem.build(&model);
            for (k, v) in edits {
                let edit = BTreeMap::from([(key(k), v.map(|v| vec![v]))]);
                root = mem.apply(root, &edit);
                match v {
                    Some(v) => { model.insert(key(k), vec![v]); }
                    None => { model.remove(&key(k)); }
                }
                prop_assert_eq!(mem.all(root), model.clone());
                prop_assert_eq!(root, mem.build(&model));
            }
        }

        /// History independence: any sequence of edit batches ends at the root a
        /// from-scratch build of the final map has; diffs and scans agree with a BTreeMap.
        #[test]
        fn equal_maps_have_equal_roots(
            initial in proptest::collection::btree_map(0u32..3_000, 0u8..4, 0..1_500),
            batches in proptest::collection::vec(
                proptest::collection::btree_map(0u32..3_000, proptest::option::of(0u8..4), 1..300), 1..6),
        ) {
            let mem = Mem::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = initial.iter().map(|(k, v)| (key(*k), vec![*v])).collect();
            let mut root = mem.build(&model);
            for batch in &batches {
                let before = root;
                let before_model = model.clone();
                let edits: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
                    batch.iter().map(|(k, v)| (key(*k), v.map(|v| vec![v]))).collect();
                root = mem.apply(root, &edits);
                for (k, v) in &edits {
                    match v {
                        Some(v) => { model.insert(k.clone(), v.clone()); }
                        None => { model.remove(k); }
                    }
                }
                prop_assert_eq!(mem.all(root), model.clone());
                prop_assert_eq!(root, mem.build(&model));
                let (changes, _) = diff(&mem, before, root, b"", None, usize::MAX).unwrap();
                let expected: Vec<Vec<u8>> = before_model.keys().chain(model.keys())
                    .filter(|k| before_model.get(*k) != model.get(*k))
                    .cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                let got: Vec<Vec<u8>> = changes.iter().map(|c| c.key.to_vec()).collect();
                prop_assert_eq!(got, expected);
                // A bounded range scan and a bounded diff see only their range.
                let (lo, hi) = (key(1_000), key(2_000));
                let (ranged, _) = scan(&mem, root, &lo, Some(&hi), usize::MAX).unwrap();
                let want: Vec<Vec<u8>> = model.range(lo.clone()..hi.clone()).map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(ranged.iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>(), want);
                let (ranged_diff, _) = diff(&mem, before, root, &lo, Some(&hi), usize::MAX).unwrap();
                prop_assert!(ranged_diff.iter().all(|c| c.key.as_ref() >= lo.as_slice() && c.key.as_ref() < hi.as_slice()));
                prop_assert_eq!(ranged_diff.len(), changes.iter().filter(|c| c.key.as_ref() >= lo.as_slice() && c.key.as_ref() < hi.as_slice()).count());
            }
        }
    }
}
