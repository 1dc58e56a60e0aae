//! The bounded in-memory commit graph (hash -> parents, generation) and the ancestry
//! walks over it: merge bases and "is an ancestor of".
//!
//! Walks pop commits in generation order, so they stop as soon as no commit below the
//! frontier can matter; every commit the store writes or reads enters the graph, so a walk
//! over recent history never reads storage once per ancestor.

use std::collections::BinaryHeap;

use crate::hash::{Hash, HashMapByDigest};
use crate::limits::{COMMIT_GRAPH_ENTRIES_MAX, MERGE_BASE_VISITS_MAX};
use crate::object::Parents;

#[derive(Debug, Clone)]
pub struct GraphEntry {
    pub parents: Parents,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub struct CommitGraph {
    entries: HashMapByDigest<GraphEntry>,
}

impl CommitGraph {
    pub fn get(&self, h: &Hash) -> Option<&GraphEntry> {
        self.entries.get(h)
    }

    pub fn insert(&mut self, h: Hash, entry: GraphEntry) {
        if self.entries.len() >= COMMIT_GRAPH_ENTRIES_MAX && !self.entries.contains_key(&h) {
            // Forget everything rather than keep an arbitrary part: walks reload what they
            // need, and a store this large is better served by a persisted graph.
            self.entries.clear();
        }
        self.entries.insert(h, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a walk stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError<E> {
    TooLong,
    Load(E),
}

/// Looks up a commit's graph entry, loading it when the graph does not have it.
pub trait GraphSource {
    type Error;
    fn entry(&self, h: &Hash) -> Result<GraphEntry, Self::Error>;
}

const FROM_A: u8 = 1;
const FROM_B: u8 = 2;
const STALE: u8 = 4;
const RESULT: u8 = 8;

/// The best common ancestors of `a` and `b` (none is an ancestor of another), keeping
/// only those of the highest generation (DESIGN §2 "Merge").
pub fn merge_bases<S: GraphSource>(
    src: &S,
    a: Hash,
    b: Hash,
) -> Result<Vec<Hash>, WalkError<S::Error>> {
    if a == b {
        return Ok(vec![a]);
    }
    let mut flags: HashMapByDigest<u8> = HashMapByDigest::default();
    let mut heap: BinaryHeap<(u64, Hash, u8)> = BinaryHeap::new();
    // Live frontier entries per side, counted as pushed: when one side has none left, no
    // commit can newly gain its color, so no new base can appear.
    let mut live = [0usize; 2];
    let push = |heap: &mut BinaryHeap<(u64, Hash, u8)>,
                live: &mut [usize; 2],
                generation: u64,
                h: Hash,
                f: u8| {
        if f & STALE == 0 {
            if f & FROM_A != 0 {
                live[0] += 1;
            }
            if f & FROM_B != 0 {
                live[1] += 1;
            }
        }
        heap.push((generation, h, f));
    };
    let ea = src.entry(&a).map_err(WalkError::Load)?;
    let eb = src.entry(&b).map_err(WalkError::Load)?;
    flags.insert(a, FROM_A);
    flags.insert(b, FROM_B);
    push(&mut heap, &mut live, ea.generation, a, FROM_A);
    push(&mut heap, &mut live, eb.generation, b, FROM_B);
    let mut results = Vec::new();
    let mut visits = 0usize;
    while live[0] > 0 && live[1] > 0 {
        let Some((_, c, pushed)) = heap.pop() else {
            break;
        };
        if pushed & STALE == 0 {
            if pushed & FROM_A != 0 {
                live[0] -= 1;
            }
            if pushed & FROM_B != 0 {
                live[1] -= 1;
            }
        }
        visits += 1;
        if visits > MERGE_BASE_VISITS_MAX {
            return Err(WalkError::TooLong);
        }
        let f = flags[&c];
        let mut propagate = f & (FROM_A | FROM_B | STALE);
        if f & (FROM_A | FROM_B) == (FROM_A | FROM_B) {
            if f & (RESULT | STALE) == 0 {
                results.push(c);
                flags.insert(c, f | RESULT);
            }
            // Everything below a common ancestor is a worse one.
            propagate |= STALE;
        }
        let entry = src.entry(&c).map_err(WalkError::Load)?;
        for p in &entry.parents {
            let old = flags.get(p).copied().unwrap_or(0);
            let new = old | propagate;
            if new != old {
                flags.insert(*p, new);
                let pe = src.entry(p).map_err(WalkError::Load)?;
                push(&mut heap, &mut live, pe.generation, *p, new);
            }
        }
    }
    // Drop candidates that turned out to lie below another common ancestor.
    results.retain(|r| flags[r] & STALE == 0);
    let mut best: Vec<Hash> = Vec::new();
    for r in &results {
        let mut redundant = false;
        for o in &results {
            if o != r && is_ancestor(src, *r, *o)? {
                redundant = true;
                break;
            }
        }
        if !redundant {
            best.push(*r);
        }
    }
    let mut with_gen = Vec::with_capacity(best.len());
    for h in best {
        with_gen.push((src.entry(&h).map_err(WalkError::Load)?.generation, h));
    }
    let top = with_gen.iter().map(|(g, _)| *g).max();
    let mut out: Vec<Hash> = with_gen
        .into_iter()
        .filter(|(g, _)| Some(*g) == top)
        .map(|(_, h)| h)
        .collect();
    out.sort();
    Ok(out)
}

/// True when `ancestor` is `descendant` or one of its ancestors.
pub fn is_ancestor<S: GraphSource>(
    src: &S,
    ancestor: Hash,
    descendant: Hash,
) -> Result<bool, WalkError<S::Error>> {
    if ancestor == descendant {
        return Ok(true);
    }
    let floor = src.entry(&ancestor).map_err(WalkError::Load)?.generation;
    let mut seen: HashMapByDigest<()> = HashMapByDigest::default();
    let mut heap: BinaryHeap<(u64, Hash)> = BinaryHeap::new();
    let top = src.entry(&descendant).map_err(WalkError::Load)?;
    heap.push((top.generation, descendant));
    let mut visits = 0usize;
    while let Some((generation, c)) = heap.pop() {
        if c == ancestor {
            return Ok(true);
        }
        if generation <= floor {
            continue;
        }
        visits += 1;
        if visits > MERGE_BASE_VISITS_MAX {
            return Err(WalkError::TooLong);
        }
        for p in src.entry(&c).map_err(WalkError::Load)?.parents {
            if seen.insert(p, ()).is_none() {
                let g = src.entry(&p).map_err(WalkError::Load)?.generation;
                if g >= floor {
                    heap.push((g, p));
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Dag(HashMap<Hash, GraphEntry>);

    impl GraphSource for Dag {
        type Error = ();
        fn entry(&self, h: &Hash) -> Result<GraphEntry, ()> {
            self.0.get(h).cloned().ok_or(())
        }
    }

    fn h(i: u8) -> Hash {
        Hash::from_bytes([i; 32])
    }

    /// Builds a DAG from (commit, parents) in topological order.
    fn dag(edges: &[(u8, &[u8])]) -> Dag {
        let mut map: HashMap<Hash, GraphEntry> = HashMap::new();
        for (c, ps) in edges {
            let generation = ps.iter().map(|p| map[&h(*p)].generation).max().unwrap_or(0) + 1;
            map.insert(
                h(*c),
                GraphEntry {
                    parents: ps.iter().map(|p| h(*p)).collect(),
                    generation,
                },
            );
        }
        Dag(map)
    }

    #[test]
    fn linear_fork_and_criss_cross() {
        // 1 - 2 - 3 (a)    and 2 - 4 (b)
        let d = dag(&[(1, &[]), (2, &[1]), (3, &[2]), (4, &[2])]);
        assert_eq!(merge_bases(&d, h(3), h(4)).unwrap(), vec![h(2)]);
        assert_eq!(merge_bases(&d, h(3), h(2)).unwrap(), vec![h(2)]);
        assert!(is_ancestor(&d, h(1), h(3)).unwrap());
        assert!(!is_ancestor(&d, h(4), h(3)).unwrap());
        // Criss-cross: 5 = merge(3, 4), 6 = merge(4, 3); bases of 5 and 6 are 3 and 4.
        let d = dag(&[
            (1, &[]),
            (2, &[1]),
            (3, &[2]),
            (4, &[2]),
            (5, &[3, 4]),
            (6, &[4, 3]),
        ]);
        assert_eq!(merge_bases(&d, h(5), h(6)).unwrap(), vec![h(3), h(4)]);
    }

    #[test]
    fn a_long_first_parent_history_is_walked_once() {
        // s merged into the target at m; then 300 target commits; then s gets a child.
        let mut edges: Vec<(u8, Vec<u8>)> =
            vec![(1, vec![]), (2, vec![1]), (3, vec![1]), (4, vec![2, 3])];
        let mut last = 4u8;
        for i in 5..200u8 {
            edges.push((i, vec![last]));
            last = i;
        }
        edges.push((250, vec![3]));
        let refs: Vec<(u8, &[u8])> = edges.iter().map(|(c, p)| (*c, p.as_slice())).collect();
        let d = dag(&refs);
        assert_eq!(merge_bases(&d, h(250), h(last)).unwrap(), vec![h(3)]);
        assert!(is_ancestor(&d, h(3), h(last)).unwrap());
    }
}
