//! Model-based property tests of the version store: random operation sequences run against
//! the real `Store` (on `MemoryBackend`) and against a small, pure oracle of DESIGN §2, and
//! the two are compared after every step.
//!
//! The oracle is deliberately naive — commits are `(parents, map)` in a `Vec`, branches
//! point into it, merge bases come from brute-force ancestor sets, validation scans the
//! whole result — so that it states the rules rather than re-implements the store. The
//! formal-models issue replaces it with the Stateright model's transition function.
//!
//! What it covers: the commit rule (every expectation evaluated at the landing head, stale
//! expected heads rebasing, `CheckPrefixEmpty`, no-op commits, invalid op lists), landing
//! validation (parent namespaces, non-empty namespaces, duplicate content ids), merge
//! (normal, no-ff, squash, ff-only, dry run, on-conflict and per-key resolutions, the
//! `Resolver` hook, several merge bases), cherry-pick, revert, and branch create / assign /
//! delete with strict expected heads. Outcomes are compared exactly (error class; conflict
//! keys, kinds, expected and actual values, change kinds; merge kind, bases and changes).
//! After every step: refs, every branch's map (entries, contents, the id index), history
//! integrity, and that a refused or no-op write persists nothing (objects, reflog, refs).
//! At the end of a history: every commit's map, equal maps having equal index roots, and
//! the first-parent log of every branch.
//!
//! A coverage check fails the test when the generator stops reaching an interesting
//! outcome. Histories are deterministic; `FLOE_MODEL_SEED=<u64>` explores others, and
//! `FLOE_MODEL_TRACE=1` prints each history's steps. `FLOE_SLOW=1` runs the heavy variant.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::AddAssign;
use std::sync::Arc;

use bytes::Bytes;
use floe_commits::{
    ChangeKind, Commit, CommitMeta, Conflict, ConflictResolver, Content, ContentId, ContentKey,
    ContentKind, ContentRef, Expect, Hash, KeyChange, LogFilter, ManualClock, MemoryBackend,
    MergeKind, MergeOptions, MergeStrategy, Op, Payload, RefKind, RefName, Resolution, Resolved,
    Resolver, Store, TablePayload, ViewPayload, WriteCtx, WriteError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};

// ----- the universe -----------------------------------------------------------------------

/// Every key the tests use, in the store's key order (element by element): two top-level
/// namespaces, a nested namespace, and tables under each.
const KEYS: [&[&str]; 8] = [
    &["a"],
    &["a", "n"],
    &["a", "n", "t"],
    &["a", "t1"],
    &["a", "t2"],
    &["b"],
    &["b", "t1"],
    &["b", "t2"],
];
/// The parent of each key of `KEYS`, by index.
const PARENT: [Option<usize>; 8] = [
    None,
    Some(0),
    Some(1),
    Some(0),
    Some(0),
    None,
    Some(5),
    Some(5),
];
const BRANCHES: [&str; 3] = ["main", "dev", "feat"];
/// Content ids shared by generated puts, so that duplicates and renames happen.
const POOL_IDS: [u32; 3] = [1, 2, 3];
/// Fresh content ids start here.
const FRESH_ID_START: u32 = 100;
const VALIDATION_KINDS: [&str; 3] = [
    "namespace-missing",
    "namespace-not-empty",
    "duplicate-content-id",
];

fn key_name(k: usize) -> String {
    KEYS[k].join(".")
}

fn strictly_under(k: usize, prefix: usize) -> bool {
    let mut p = PARENT[k];
    while let Some(x) = p {
        if x == prefix {
            return true;
        }
        p = PARENT[x];
    }
    false
}

fn natural_kind(k: usize) -> ContentKind {
    if matches!(k, 0 | 1 | 5) {
        ContentKind::Namespace
    } else {
        ContentKind::IcebergTable
    }
}

/// A content value of the oracle: equal values have equal store hashes and vice versa.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct OContent {
    id: u32,
    kind: ContentKind,
    version: u8,
}

impl fmt::Debug for OContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ContentKind::Namespace => "ns",
            ContentKind::IcebergTable => "table",
            ContentKind::IcebergView => "view",
        };
        write!(f, "{kind}#{}v{}", self.id, self.version)
    }
}

impl OContent {
    fn content(&self) -> Content {
        let id = ContentId::from_u128(u128::from(self.id));
        let location = format!("mem://warehouse/{}/v{}", self.id, self.version);
        let payload = match self.kind {
            ContentKind::Namespace => Payload::Namespace {
                properties: BTreeMap::from([("version".to_owned(), self.version.to_string())]),
            },
            ContentKind::IcebergTable => Payload::IcebergTable(TablePayload {
                metadata_location: location,
                table_uuid: id.0,
                snapshot_id: i64::from(self.version),
                schema_id: 0,
                spec_id: 0,
                sort_order_id: 0,
            }),
            ContentKind::IcebergView => Payload::IcebergView(ViewPayload {
                metadata_location: location,
                view_uuid: id.0,
                version_id: i64::from(self.version),
                schema_id: 0,
            }),
        };
        Content { id, payload }
    }

    fn content_ref(&self) -> ContentRef {
        self.content().content_ref()
    }
}

// ----- the oracle -------------------------------------------------------------------------

type Map = BTreeMap<usize, OContent>;
/// A key whose content differs between two maps: (key, before, after).
type Change = (usize, Option<OContent>, Option<OContent>);

#[derive(Debug, Clone)]
struct OCommit {
    parents: Vec<usize>,
    map: Map,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OExpect {
    Absent,
    Present,
    Is(OContent),
}

impl OExpect {
    fn holds(&self, actual: Option<&OContent>) -> bool {
        match self {
            OExpect::Absent => actual.is_none(),
            OExpect::Present => actual.is_some(),
            OExpect::Is(c) => actual == Some(c),
        }
    }

    fn to_store(self) -> Expect {
        match self {
            OExpect::Absent => Expect::Absent,
            OExpect::Present => Expect::Present,
            OExpect::Is(c) => Expect::Is(c.content().hash()),
        }
    }
}

/// A resolved commit operation on a key of `KEYS`.
#[derive(Debug, Clone)]
enum ROp {
    Put(usize, OContent, OExpect),
    Delete(usize, OExpect),
    Check(usize, OExpect),
    PrefixEmpty(usize),
}

impl ROp {
    fn to_store(&self, keys: &[ContentKey]) -> Op {
        match self {
            ROp::Put(k, c, e) => Op::Put {
                key: keys[*k].clone(),
                content: c.content(),
                expect: e.to_store(),
            },
            ROp::Delete(k, e) => Op::Delete {
                key: keys[*k].clone(),
                expect: e.to_store(),
            },
            ROp::Check(k, e) => Op::Check {
                key: keys[*k].clone(),
                expect: e.to_store(),
            },
            ROp::PrefixEmpty(k) => Op::CheckPrefixEmpty {
                prefix: keys[*k].clone(),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            ROp::Put(k, c, e) => format!("Put({} = {c:?}, {e:?})", key_name(*k)),
            ROp::Delete(k, e) => format!("Delete({}, {e:?})", key_name(*k)),
            ROp::Check(k, e) => format!("Check({}, {e:?})", key_name(*k)),
            ROp::PrefixEmpty(k) => format!("CheckPrefixEmpty({})", key_name(*k)),
        }
    }
}

/// How the oracle expects a write to be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reject {
    Invalid,
    RefNotFound,
    RefExists,
    RefConflict,
    NotFastForward,
    Conflict(ConflictSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConflictSpec {
    /// Exactly these (key, conflict kind) pairs.
    Exact(BTreeMap<(usize, &'static str), Detail>),
    /// Exactly these keys fail their expectation; `PrefixNotEmpty` entries are a reporting
    /// detail once an expectation failed, and are not compared.
    Expectations(BTreeMap<usize, Detail>),
    /// The result breaks the landing validation; the store may name any of these keys
    /// (the keys the landing changes) with a validation conflict kind.
    Validation(BTreeSet<usize>),
}

/// What the conflict on one key must say, where the oracle knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Detail {
    expected: Option<OExpect>,
    /// The key's content at the head the write was evaluated at.
    actual: Option<Option<OContent>>,
    /// How the source and the target changed the key since the base.
    changes: Option<(Option<ChangeKind>, Option<ChangeKind>)>,
}

/// What an applied write does to the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// Applied, and nothing written (no change, nothing to merge, dry run).
    Nothing,
    Move {
        branch: usize,
        to: usize,
    },
    NewCommit {
        branch: usize,
        parents: Vec<usize>,
        map: Map,
    },
    Create {
        branch: usize,
        at: usize,
    },
    Delete {
        branch: usize,
    },
}

/// How a merge decides keys both sides changed differently.
#[derive(Debug, Clone, Copy)]
struct Resolving {
    on_conflict: Resolution,
    /// A per-key choice that overrides `on_conflict` for one key.
    per_key: Option<(u8, Resolution)>,
    /// Ask `HookResolver` about the keys still failing.
    hook: bool,
}

impl Resolving {
    fn of(&self, k: usize) -> Resolution {
        match self.per_key {
            Some((key, r)) if key as usize % KEYS.len() == k => r,
            _ => self.on_conflict,
        }
    }

    fn per_key_map(&self, keys: &[ContentKey]) -> BTreeMap<ContentKey, Resolution> {
        self.per_key
            .map(|(k, r)| (keys[k as usize % KEYS.len()].clone(), r))
            .into_iter()
            .collect()
    }
}

/// The version `HookResolver` gives the values it merges.
const MERGED_VERSION: u8 = 7;

/// What `HookResolver` makes of a key both sides changed, where the target holds `t`.
fn merged_by_hook(t: OContent) -> OContent {
    OContent {
        version: MERGED_VERSION,
        ..t
    }
}

/// A `Resolver` as the catalog might write one: where the target still holds the key, a
/// merged value (the target's id and kind, version `MERGED_VERSION`); else the source's.
#[derive(Debug)]
struct HookResolver;

impl Resolver for HookResolver {
    fn resolve(
        &self,
        _key: &ContentKey,
        _base: Option<&ContentRef>,
        source: Option<&ContentRef>,
        target: Option<&ContentRef>,
    ) -> Option<Resolved> {
        match target {
            Some(t) => {
                let id = u32::from_be_bytes(t.id.0[12..].try_into().expect("four bytes"));
                let merged = merged_by_hook(OContent {
                    id,
                    kind: t.kind,
                    version: 0,
                });
                Some(Resolved::Content(merged.content()))
            }
            None => source.map(|_| Resolved::TakeSource),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MergeWant {
    kind: MergeKind,
    bases: Vec<usize>,
    changes: Vec<Change>,
    effect: Effect,
}

/// One key's fate under one merge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Value(Option<OContent>),
    Conflict(Option<ChangeKind>, Option<ChangeKind>),
}

fn change_kind(before: Option<OContent>, after: Option<OContent>) -> Option<ChangeKind> {
    match (before, after) {
        (None, Some(_)) => Some(ChangeKind::Added),
        (Some(_), None) => Some(ChangeKind::Removed),
        (Some(b), Some(a)) if b != a => Some(ChangeKind::Modified),
        _ => None,
    }
}

fn diff(a: &Map, b: &Map) -> Vec<Change> {
    (0..KEYS.len())
        .filter_map(|k| {
            let (x, y) = (a.get(&k).copied(), b.get(&k).copied());
            (x != y).then_some((k, x, y))
        })
        .collect()
}

/// The landing validation, stated over the whole result: every key with a parent has a
/// namespace there, and no content id sits under two keys.
fn valid(map: &Map) -> bool {
    let parents = map.keys().all(|&k| {
        PARENT[k].is_none_or(|p| {
            map.get(&p)
                .is_some_and(|c| c.kind == ContentKind::Namespace)
        })
    });
    let ids: BTreeSet<u32> = map.values().map(|c| c.id).collect();
    parents && ids.len() == map.len()
}

#[derive(Debug, Clone)]
struct Oracle {
    commits: Vec<OCommit>,
    branches: BTreeMap<usize, usize>,
}

impl Oracle {
    fn new() -> Oracle {
        Oracle {
            commits: vec![OCommit {
                parents: Vec::new(),
                map: Map::new(),
                generation: 1,
            }],
            branches: BTreeMap::from([(0, 0)]),
        }
    }

    fn head(&self, branch: usize) -> Result<usize, Reject> {
        self.branches
            .get(&branch)
            .copied()
            .ok_or(Reject::RefNotFound)
    }

    /// The head of a branch for a write whose expected head is strict.
    fn strict_head(&self, branch: usize, expected: Option<usize>) -> Result<usize, Reject> {
        let head = self.head(branch)?;
        if expected.is_some_and(|e| e != head) {
            return Err(Reject::RefConflict);
        }
        Ok(head)
    }

    fn ancestors(&self, c: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![c];
        while let Some(x) = stack.pop() {
            if seen.insert(x) {
                stack.extend(self.commits[x].parents.iter().copied());
            }
        }
        seen
    }

    fn first_parent_back(&self, mut c: usize, n: u8) -> usize {
        for _ in 0..n {
            match self.commits[c].parents.first() {
                Some(p) => c = *p,
                None => break,
            }
        }
        c
    }

    /// Common ancestors that are not ancestors of another common ancestor, keeping those
    /// of the highest generation.
    fn merge_bases(&self, a: usize, b: usize) -> Vec<usize> {
        let common: Vec<usize> = self
            .ancestors(a)
            .intersection(&self.ancestors(b))
            .copied()
            .collect();
        let best: Vec<usize> = common
            .iter()
            .copied()
            .filter(|&c| {
                !common
                    .iter()
                    .any(|&o| o != c && self.ancestors(o).contains(&c))
            })
            .collect();
        let top = best.iter().map(|&c| self.commits[c].generation).max();
        best.into_iter()
            .filter(|&c| Some(self.commits[c].generation) == top)
            .collect()
    }

    /// Validates a landing's result (when it changes anything) and makes the commit.
    fn land(
        &self,
        branch: usize,
        head: usize,
        parents: Vec<usize>,
        result: Map,
    ) -> Result<Effect, Reject> {
        let map = &self.commits[head].map;
        if result == *map {
            return Ok(Effect::Nothing);
        }
        if !valid(&result) {
            let changed = diff(map, &result).into_iter().map(|c| c.0).collect();
            return Err(Reject::Conflict(ConflictSpec::Validation(changed)));
        }
        Ok(Effect::NewCommit {
            branch,
            parents,
            map: result,
        })
    }

    /// The commit rule: returns the effect and whether the commit rebased.
    fn commit(
        &self,
        branch: usize,
        expected: Option<usize>,
        ops: &[ROp],
    ) -> Result<(Effect, bool), Reject> {
        if ops.is_empty() {
            return Err(Reject::Invalid);
        }
        let mut seen = BTreeSet::new();
        for op in ops {
            match op {
                ROp::PrefixEmpty(_) => {}
                ROp::Put(k, ..) | ROp::Check(k, _) => {
                    if !seen.insert(*k) {
                        return Err(Reject::Invalid);
                    }
                }
                ROp::Delete(k, e) => {
                    if !seen.insert(*k) || *e == OExpect::Absent {
                        return Err(Reject::Invalid);
                    }
                }
            }
        }
        let head = self.head(branch)?;
        let map = &self.commits[head].map;
        let mut failed = BTreeMap::new();
        let mut result = map.clone();
        for op in ops {
            let (k, e) = match op {
                ROp::Put(k, _, e) | ROp::Delete(k, e) | ROp::Check(k, e) => (*k, e),
                ROp::PrefixEmpty(_) => continue,
            };
            if !e.holds(map.get(&k)) {
                let detail = Detail {
                    expected: Some(*e),
                    actual: Some(map.get(&k).copied()),
                    changes: None,
                };
                failed.insert(k, detail);
                continue;
            }
            match op {
                ROp::Put(_, c, _) => {
                    result.insert(k, *c);
                }
                ROp::Delete(..) => {
                    result.remove(&k);
                }
                _ => {}
            }
        }
        if !failed.is_empty() {
            return Err(Reject::Conflict(ConflictSpec::Expectations(failed)));
        }
        let not_empty: BTreeMap<(usize, &'static str), Detail> = ops
            .iter()
            .filter_map(|op| match op {
                ROp::PrefixEmpty(p) if result.keys().any(|&k| strictly_under(k, *p)) => {
                    Some(((*p, "prefix-not-empty"), Detail::default()))
                }
                _ => None,
            })
            .collect();
        if !not_empty.is_empty() {
            return Err(Reject::Conflict(ConflictSpec::Exact(not_empty)));
        }
        let rebased = expected.is_some_and(|e| e != head);
        Ok((self.land(branch, head, vec![head], result)?, rebased))
    }

    fn merge(
        &self,
        source: usize,
        target: usize,
        strategy: MergeStrategy,
        resolving: Resolving,
        dry_run: bool,
        expected: Option<usize>,
    ) -> Result<MergeWant, Reject> {
        let head = self.strict_head(target, expected)?;
        let nothing = |bases| MergeWant {
            kind: MergeKind::NothingToMerge,
            bases,
            changes: Vec::new(),
            effect: Effect::Nothing,
        };
        if self.ancestors(head).contains(&source) {
            return Ok(nothing(vec![source]));
        }
        let bases = self.merge_bases(source, head);
        let tmap = &self.commits[head].map;
        let smap = &self.commits[source].map;
        if bases == [head]
            && matches!(
                strategy,
                MergeStrategy::Normal | MergeStrategy::FastForwardOnly
            )
        {
            return Ok(MergeWant {
                kind: MergeKind::FastForward,
                bases,
                changes: diff(tmap, smap),
                effect: if dry_run {
                    Effect::Nothing
                } else {
                    Effect::Move {
                        branch: target,
                        to: source,
                    }
                },
            });
        }
        if strategy == MergeStrategy::FastForwardOnly {
            return Err(Reject::NotFastForward);
        }
        let mut result = Map::new();
        let mut conflicts = BTreeMap::new();
        for k in 0..KEYS.len() {
            let t = tmap.get(&k).copied();
            let s = smap.get(&k).copied();
            let fates: Vec<Fate> = bases
                .iter()
                .map(|&base| {
                    let b = self.commits[base].map.get(&k).copied();
                    if s == b || s == t {
                        Fate::Value(t)
                    } else if t == b {
                        Fate::Value(s)
                    } else {
                        match resolving.of(k) {
                            Resolution::TakeSource => Fate::Value(s),
                            Resolution::KeepTarget => Fate::Value(t),
                            Resolution::Fail if resolving.hook => match t {
                                Some(t) => Fate::Value(Some(merged_by_hook(t))),
                                None => Fate::Value(s),
                            },
                            Resolution::Fail => {
                                Fate::Conflict(change_kind(b, s), change_kind(b, t))
                            }
                        }
                    }
                })
                .collect();
            let now = Detail {
                actual: Some(t),
                ..Detail::default()
            };
            if fates.iter().any(|f| *f != fates[0]) {
                conflicts.insert((k, "ambiguous-base"), now);
                continue;
            }
            match fates[0] {
                Fate::Value(Some(v)) => {
                    result.insert(k, v);
                }
                Fate::Value(None) => {}
                Fate::Conflict(source, target) => {
                    let detail = Detail {
                        changes: Some((source, target)),
                        ..now
                    };
                    conflicts.insert((k, "both-changed"), detail);
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(Reject::Conflict(ConflictSpec::Exact(conflicts)));
        }
        let squash = strategy == MergeStrategy::Squash;
        let parents = if squash {
            vec![head]
        } else {
            vec![head, source]
        };
        let changes = diff(tmap, &result);
        let effect = self.land(target, head, parents, result)?;
        if effect == Effect::Nothing {
            return Ok(nothing(bases));
        }
        Ok(MergeWant {
            kind: if squash {
                MergeKind::Squashed
            } else {
                MergeKind::Merged
            },
            bases,
            changes,
            effect: if dry_run { Effect::Nothing } else { effect },
        })
    }

    /// Cherry-pick (or, with `revert`, revert) `picked` onto a branch.
    fn replay(
        &self,
        picked: usize,
        branch: usize,
        revert: bool,
        expected: Option<usize>,
    ) -> Result<Effect, Reject> {
        let head = self.strict_head(branch, expected)?;
        let c = &self.commits[picked];
        let empty = Map::new();
        let before = c.parents.first().map_or(&empty, |p| &self.commits[*p].map);
        let mut result = self.commits[head].map.clone();
        let mut conflicts = BTreeMap::new();
        for (k, mut from, mut to) in diff(before, &c.map) {
            if revert {
                std::mem::swap(&mut from, &mut to);
            }
            let now = result.get(&k).copied();
            if now == from {
                match to {
                    Some(v) => result.insert(k, v),
                    None => result.remove(&k),
                };
            } else if now != to {
                let detail = Detail {
                    expected: Some(from.map_or(OExpect::Absent, OExpect::Is)),
                    actual: Some(now),
                    changes: None,
                };
                conflicts.insert((k, "diverged"), detail);
            }
        }
        if !conflicts.is_empty() {
            return Err(Reject::Conflict(ConflictSpec::Exact(conflicts)));
        }
        self.land(branch, head, vec![head], result)
    }

    fn assign(&self, branch: usize, to: usize, expected: Option<usize>) -> Result<Effect, Reject> {
        self.strict_head(branch, expected)?;
        Ok(Effect::Move { branch, to })
    }

    fn create(&self, branch: usize, at: usize) -> Result<Effect, Reject> {
        if self.branches.contains_key(&branch) {
            return Err(Reject::RefExists);
        }
        Ok(Effect::Create { branch, at })
    }

    fn delete(&self, branch: usize, expected: Option<usize>) -> Result<Effect, Reject> {
        self.strict_head(branch, expected)?;
        Ok(Effect::Delete { branch })
    }
}

// ----- generated steps --------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The head of a branch (the step is skipped when the branch does not exist).
    Head(u8),
    /// The first parent of a branch's head (the head itself for the root): merging it
    /// after a merge the other way makes criss-cross histories.
    HeadParent(u8),
    /// Any commit made so far (modulo their number).
    Any(u16),
}

/// The expected head of a strict write.
#[derive(Debug, Clone, Copy)]
enum HeadGen {
    None,
    Current,
    Any(u16),
}

/// The expected head of a commit, which is also the commit its expectations were read at.
#[derive(Debug, Clone, Copy)]
enum BaseGen {
    None,
    Current,
    /// The n-th first-parent ancestor of the head: a stale read.
    Back(u8),
    Any(u16),
}

#[derive(Debug, Clone, Copy)]
enum ExpGen {
    /// What the key holds at the read commit (`Is` or `Absent`; `Present` for a delete).
    Right,
    Present,
    Absent,
    Is {
        id: u8,
        version: u8,
    },
}

#[derive(Debug, Clone, Copy)]
enum IdGen {
    /// The id at the key in the read commit (an update), else fresh.
    Keep,
    Fresh,
    Pool(u8),
}

#[derive(Debug, Clone, Copy)]
enum KindGen {
    Natural,
    Keep,
    Namespace,
    Table,
    View,
}

#[derive(Debug, Clone, Copy)]
struct ContentGen {
    id: IdGen,
    kind: KindGen,
    version: u8,
}

#[derive(Debug, Clone, Copy)]
enum OpKindGen {
    Put(ContentGen),
    Delete,
    Check,
    PrefixEmpty,
}

#[derive(Debug, Clone, Copy)]
struct OpGen {
    key: u8,
    what: OpKindGen,
    expect: ExpGen,
}

#[derive(Debug, Clone)]
enum Step {
    Commit {
        branch: u8,
        base: BaseGen,
        ops: Vec<OpGen>,
        /// Repeat the first op's key in a `Check` (an invalid op list).
        dup: bool,
        /// Also create the missing parent namespaces of the keys it puts, as a client would.
        parents: bool,
    },
    /// Delete + put of the same content id under another key, in one commit.
    Rename {
        branch: u8,
        from: u8,
        to: u8,
        bump: bool,
    },
    CreateBranch {
        name: u8,
        from: u8,
    },
    Assign {
        branch: u8,
        to: Pick,
        expect: HeadGen,
    },
    DeleteBranch {
        branch: u8,
        expect: HeadGen,
    },
    Merge {
        from: Pick,
        into: u8,
        strategy: MergeStrategy,
        resolving: Resolving,
        dry_run: bool,
        expect: HeadGen,
    },
    Replay {
        commit: Pick,
        branch: u8,
        revert: bool,
        expect: HeadGen,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0u8..3).prop_map(Pick::Head),
        1 => (0u8..3).prop_map(Pick::HeadParent),
        1 => any::<u16>().prop_map(Pick::Any),
    ]
}

fn head_gen() -> impl Strategy<Value = HeadGen> {
    prop_oneof![
        4 => Just(HeadGen::None),
        3 => Just(HeadGen::Current),
        1 => any::<u16>().prop_map(HeadGen::Any),
    ]
}

fn base_gen() -> impl Strategy<Value = BaseGen> {
    prop_oneof![
        3 => Just(BaseGen::None),
        3 => Just(BaseGen::Current),
        2 => (1u8..4).prop_map(BaseGen::Back),
        1 => any::<u16>().prop_map(BaseGen::Any),
    ]
}

fn exp_gen() -> impl Strategy<Value = ExpGen> {
    prop_oneof![
        20 => Just(ExpGen::Right),
        1 => Just(ExpGen::Present),
        1 => Just(ExpGen::Absent),
        1 => (0u8..3, 0u8..3).prop_map(|(id, version)| ExpGen::Is { id, version }),
    ]
}

fn content_gen() -> impl Strategy<Value = ContentGen> {
    let id = prop_oneof![
        4 => Just(IdGen::Keep),
        3 => Just(IdGen::Fresh),
        1 => (0u8..3).prop_map(IdGen::Pool),
    ];
    let kind = prop_oneof![
        12 => Just(KindGen::Natural),
        4 => Just(KindGen::Keep),
        1 => Just(KindGen::Namespace),
        1 => Just(KindGen::Table),
        1 => Just(KindGen::View),
    ];
    (id, kind, 0u8..3).prop_map(|(id, kind, version)| ContentGen { id, kind, version })
}

fn op_gen() -> impl Strategy<Value = OpGen> {
    let what = prop_oneof![
        6 => content_gen().prop_map(OpKindGen::Put),
        2 => Just(OpKindGen::Delete),
        2 => Just(OpKindGen::Check),
        1 => Just(OpKindGen::PrefixEmpty),
    ];
    (0u8..8, what, exp_gen()).prop_map(|(key, what, expect)| OpGen { key, what, expect })
}

/// One generated step, or a short pattern of steps that random choice rarely hits.
fn step_or_pattern() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        60 => step().prop_map(|s| vec![s]),
        // Criss-cross: a commit on A and one on B; A into B and B's old head into A, both as
        // merge commits; then A into B again, which has two merge bases.
        4 => (
            (0u8..3, 1u8..3, resolution(), resolution()),
            prop::collection::vec(op_gen(), 1..3),
            prop::collection::vec(op_gen(), 1..3),
        ).prop_map(|((a, d, r1, r2), ops_a, ops_b)| {
            let b = (a + d) % 3;
            let commit = |branch, ops| Step::Commit {
                branch,
                base: BaseGen::None,
                ops,
                dup: false,
                parents: true,
            };
            let merge = |from, into, strategy, on_conflict| Step::Merge {
                from,
                into,
                strategy,
                resolving: Resolving {
                    on_conflict,
                    per_key: None,
                    hook: false,
                },
                dry_run: false,
                expect: HeadGen::None,
            };
            vec![
                commit(a, ops_a),
                commit(b, ops_b),
                merge(Pick::Head(a), b, MergeStrategy::NoFastForward, r1),
                merge(Pick::HeadParent(b), a, MergeStrategy::NoFastForward, r1),
                merge(Pick::Head(a), b, MergeStrategy::Normal, r2),
            ]
        }),
    ]
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        6 => Just(Resolution::Fail),
        2 => Just(Resolution::TakeSource),
        2 => Just(Resolution::KeepTarget),
    ]
}

fn resolving() -> impl Strategy<Value = Resolving> {
    (
        resolution(),
        prop::option::weighted(0.2, (0u8..8, resolution())),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(on_conflict, per_key, hook)| Resolving {
            on_conflict,
            per_key,
            hook,
        })
}

fn step() -> impl Strategy<Value = Step> {
    let strategy = prop_oneof![
        5 => Just(MergeStrategy::Normal),
        2 => Just(MergeStrategy::NoFastForward),
        2 => Just(MergeStrategy::Squash),
        1 => Just(MergeStrategy::FastForwardOnly),
    ];
    let commit = (
        (0u8..3, base_gen(), prop::collection::vec(op_gen(), 1..5)),
        (prop::bool::weighted(0.04), prop::bool::weighted(0.7)),
    )
        .prop_map(|((branch, base, ops), (dup, parents))| Step::Commit {
            branch,
            base,
            ops,
            dup,
            parents,
        });
    let rename =
        (0u8..3, 0u8..8, 0u8..7, any::<bool>()).prop_map(|(branch, from, to, bump)| Step::Rename {
            branch,
            from,
            to,
            bump,
        });
    let create = (1u8..3, 0u8..3).prop_map(|(name, from)| Step::CreateBranch { name, from });
    let assign = (0u8..3, pick(), head_gen()).prop_map(|(branch, to, expect)| Step::Assign {
        branch,
        to,
        expect,
    });
    // `main` stays, so that most steps have a branch to work on.
    let delete =
        (1u8..3, head_gen()).prop_map(|(branch, expect)| Step::DeleteBranch { branch, expect });
    let merge = (
        pick(),
        0u8..3,
        strategy,
        resolving(),
        prop::bool::weighted(0.1),
        head_gen(),
    )
        .prop_map(
            |(from, into, strategy, resolving, dry_run, expect)| Step::Merge {
                from,
                into,
                strategy,
                resolving,
                dry_run,
                expect,
            },
        );
    let replay =
        (pick(), 0u8..3, any::<bool>(), head_gen()).prop_map(|(commit, branch, revert, expect)| {
            Step::Replay {
                commit,
                branch,
                revert,
                expect,
            }
        });
    prop_oneof![
        16 => commit,
        4 => rename,
        3 => create,
        2 => assign,
        1 => delete,
        10 => merge,
        6 => replay,
    ]
}

// ----- the driver -------------------------------------------------------------------------

/// How a step ended, for the side-effect checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The step did not reach the store (its source branch does not exist).
    Skipped,
    /// Refused, or applied with nothing written: no object, no reflog entry, no ref move.
    Unchanged,
    /// One ref moved (one reflog entry).
    Moved,
}

struct World {
    backend: Arc<MemoryBackend>,
    clock: Arc<ManualClock>,
    store: Store,
    oracle: Oracle,
    keys: Vec<ContentKey>,
    names: Vec<RefName>,
    /// Oracle commit index -> store hash, and back.
    hashes: Vec<Hash>,
    index: HashMap<Hash, usize>,
    /// Each commit's encoding and decoded form when first seen: they never change.
    recorded: Vec<(Bytes, Commit)>,
    next_id: u32,
    step_no: i64,
    trace: Vec<String>,
    /// How many steps ended how, for the coverage check.
    stats: BTreeMap<String, usize>,
}

type Check = Result<(), String>;

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(what()) }
}

fn ctx() -> WriteCtx {
    WriteCtx::principal("model")
}

impl World {
    fn new() -> World {
        let backend = Arc::new(MemoryBackend::new());
        let clock = Arc::new(ManualClock::new(1_000));
        let store = Store::open(backend.clone(), clock.clone()).expect("open the store");
        let root = Store::root_commit();
        let mut world = World {
            backend,
            clock,
            store,
            oracle: Oracle::new(),
            keys: KEYS
                .iter()
                .map(|k| ContentKey::new(k.iter().copied()).expect("a valid key"))
                .collect(),
            names: BRANCHES
                .iter()
                .map(|n| RefName::parse(n).expect("a valid name"))
                .collect(),
            hashes: Vec::new(),
            index: HashMap::new(),
            recorded: Vec::new(),
            next_id: FRESH_ID_START,
            step_no: 0,
            trace: Vec::new(),
            stats: BTreeMap::new(),
        };
        world.register(root, &[], 1).expect("the root commit");
        // Every history starts with namespaces `a` and `b` on `main`, and every branch there.
        let seed = ["a", "b"].map(|n| {
            let k = KEYS
                .iter()
                .position(|key| *key == [n])
                .expect("a namespace key");
            let ns = OContent {
                id: world.fresh_id(),
                kind: ContentKind::Namespace,
                version: 0,
            };
            ROp::Put(k, ns, OExpect::Absent)
        });
        world
            .run_commit(0, None, seed.to_vec())
            .expect("the seed commit");
        let seeded = world.hashes[1];
        for b in 1..BRANCHES.len() {
            world
                .store
                .create_ref(&world.names[b], RefKind::Branch, seeded, &ctx())
                .expect("create a branch");
            world.oracle.branches.insert(b, 1);
        }
        world.stats.clear();
        world
    }

    fn key_index(&self, key: &ContentKey) -> Result<usize, String> {
        self.keys
            .iter()
            .position(|k| k == key)
            .ok_or_else(|| format!("the store names key {key}, which no operation wrote"))
    }

    fn commit_index(&self, hash: &Hash) -> Result<usize, String> {
        self.index.get(hash).copied().ok_or_else(|| {
            format!("the store names commit {hash:?}, which the oracle does not know")
        })
    }

    fn meta(&self) -> CommitMeta {
        CommitMeta::new("model", format!("step {}", self.step_no), self.step_no)
    }

    fn pick(&self, p: Pick) -> Option<usize> {
        match p {
            Pick::Head(b) => self.oracle.branches.get(&(b as usize % 3)).copied(),
            Pick::HeadParent(b) => self
                .oracle
                .branches
                .get(&(b as usize % 3))
                .map(|h| self.oracle.first_parent_back(*h, 1)),
            Pick::Any(i) => Some(i as usize % self.oracle.commits.len()),
        }
    }

    fn expected(&self, g: HeadGen, head: Option<usize>) -> Option<usize> {
        match g {
            HeadGen::None => None,
            HeadGen::Current => head,
            HeadGen::Any(i) => Some(i as usize % self.oracle.commits.len()),
        }
    }

    fn hash_of(&self, c: Option<usize>) -> Option<Hash> {
        c.map(|c| self.hashes[c])
    }

    fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn ids(&self) -> BTreeSet<u32> {
        let mut ids: BTreeSet<u32> = POOL_IDS.into_iter().collect();
        ids.extend(FRESH_ID_START..self.next_id);
        ids
    }

    /// Records a new store commit and checks its parents and generation.
    fn register(&mut self, hash: Hash, parents: &[usize], generation: u64) -> Check {
        ensure(!self.index.contains_key(&hash), || {
            format!("the store made commit {hash:?} twice")
        })?;
        let bytes = self
            .backend
            .get_object_for_test(&hash)
            .ok_or_else(|| format!("commit {hash:?} is not stored"))?;
        let commit = self.store.commit_object(&hash).map_err(|e| e.to_string())?;
        let want: Vec<Hash> = parents.iter().map(|p| self.hashes[*p]).collect();
        ensure(commit.parents.as_slice() == want.as_slice(), || {
            format!(
                "commit {hash:?} has parents {:?}, the oracle {want:?}",
                commit.parents
            )
        })?;
        ensure(commit.generation == generation, || {
            format!(
                "commit {hash:?} has generation {}, the oracle {generation}",
                commit.generation
            )
        })?;
        self.index.insert(hash, self.hashes.len());
        self.hashes.push(hash);
        self.recorded.push((bytes, (*commit).clone()));
        Ok(())
    }

    fn apply(&mut self, effect: Effect, new_commit: Option<Hash>) -> Check {
        match effect {
            Effect::Nothing => {}
            Effect::Move { branch, to } | Effect::Create { branch, at: to } => {
                self.oracle.branches.insert(branch, to);
            }
            Effect::Delete { branch } => {
                self.oracle.branches.remove(&branch);
            }
            Effect::NewCommit {
                branch,
                parents,
                map,
            } => {
                let generation = 1 + parents
                    .iter()
                    .map(|p| self.oracle.commits[*p].generation)
                    .max()
                    .unwrap_or(0);
                let hash = new_commit.ok_or("a new commit without a hash")?;
                self.register(hash, &parents, generation)?;
                let first = self.oracle.commits[parents[0]].map.clone();
                self.oracle.commits.push(OCommit {
                    parents,
                    map: map.clone(),
                    generation,
                });
                self.oracle.branches.insert(branch, self.hashes.len() - 1);
                // What the commit changed against its first parent (what cherry-pick uses).
                let page = self
                    .store
                    .commit_changes(hash, None, 100)
                    .map_err(|e| e.to_string())?;
                self.same_changes(&page.items, &diff(&first, &map), "commit_changes")?;
            }
        }
        Ok(())
    }

    fn same_changes(&self, got: &[KeyChange], want: &[Change], what: &str) -> Check {
        let got: Vec<(usize, Option<ContentRef>, Option<ContentRef>)> = got
            .iter()
            .map(|c| Ok((self.key_index(&c.key)?, c.before, c.after)))
            .collect::<Result<_, String>>()?;
        let want: Vec<(usize, Option<ContentRef>, Option<ContentRef>)> = want
            .iter()
            .map(|(k, b, a)| (*k, b.map(|c| c.content_ref()), a.map(|c| c.content_ref())))
            .collect();
        ensure(got == want, || {
            format!("{what}: the store lists {got:?}, the oracle {want:?}")
        })
    }

    fn check_reject(&self, want: &Reject, got: &WriteError, head: Option<usize>) -> Check {
        let mismatch = || format!("the oracle refuses with {want:?}, the store with {got}");
        match (want, got) {
            (Reject::Invalid, WriteError::Invalid(_))
            | (Reject::RefNotFound, WriteError::RefNotFound(_))
            | (Reject::RefExists, WriteError::RefAlreadyExists(_))
            | (Reject::NotFastForward, WriteError::NotFastForward { .. }) => Ok(()),
            (Reject::RefConflict, WriteError::ReferenceConflict { current, .. }) => {
                ensure(*current == self.hash_of(head), || {
                    format!(
                        "a reference conflict names current head {current:?}, the head is {:?}",
                        self.hash_of(head)
                    )
                })
            }
            (
                Reject::Conflict(spec),
                WriteError::Conflict {
                    head: at,
                    conflicts,
                },
            ) => {
                ensure(Some(*at) == self.hash_of(head), || {
                    format!(
                        "a conflict evaluated at {at:?}, the head is {:?}",
                        self.hash_of(head)
                    )
                })?;
                let named: Vec<((usize, &'static str), &Conflict)> = conflicts
                    .iter()
                    .map(|c| Ok(((self.key_index(&c.key)?, c.kind.as_str()), c)))
                    .collect::<Result<_, String>>()?;
                if let ConflictSpec::Validation(changed) = spec {
                    // Each key and rule is named once, whatever else it collides with.
                    let distinct: BTreeSet<&(usize, &'static str)> =
                        named.iter().map(|(n, _)| n).collect();
                    ensure(distinct.len() == named.len(), || {
                        format!("the store names a key and rule twice: {conflicts:?}")
                    })?;
                    return ensure(
                        !named.is_empty()
                            && named.iter().all(|((k, kind), _)| {
                                changed.contains(k) && VALIDATION_KINDS.contains(kind)
                            }),
                        || {
                            format!(
                                "the oracle expects a validation conflict on {changed:?}, the store reports {conflicts:?}"
                            )
                        },
                    );
                }
                let mut got: BTreeMap<(usize, &'static str), &Conflict> = BTreeMap::new();
                for (named, c) in named {
                    let previous = got.insert(named, c);
                    ensure(previous.is_none(), || {
                        format!("the store reports {c} twice")
                    })?;
                }
                let want: BTreeMap<(usize, &str), Detail> = match spec {
                    ConflictSpec::Exact(want) => want.clone(),
                    ConflictSpec::Expectations(want) => {
                        got.retain(|(_, kind), _| *kind != "prefix-not-empty");
                        want.iter()
                            .map(|(k, d)| ((*k, "expectation"), *d))
                            .collect()
                    }
                    ConflictSpec::Validation(_) => unreachable!("handled above"),
                };
                ensure(got.keys().eq(want.keys()), || {
                    format!(
                        "the oracle expects conflicts {want:?}, the store reports {:?}",
                        got.keys()
                    )
                })?;
                for (c, d) in got.values().zip(want.values()) {
                    let expected_ok = d.expected.is_none_or(|e| c.expected == Some(e.to_store()));
                    let actual_ok = d.actual.is_none_or(|a| {
                        c.actual == a.map(|x| x.content().hash())
                            && c.actual_kind == a.map(|x| x.kind)
                    });
                    let changes_ok = d
                        .changes
                        .is_none_or(|(s, t)| c.source_change == s && c.target_change == t);
                    ensure(expected_ok && actual_ok && changes_ok, || {
                        format!("the conflict {c:?} should say {d:?}")
                    })?;
                }
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }

    fn resolve_expect(
        &self,
        g: ExpGen,
        key: usize,
        read: Option<OContent>,
        delete: bool,
    ) -> OExpect {
        match g {
            ExpGen::Right => match read {
                Some(c) => OExpect::Is(c),
                None if delete => OExpect::Present,
                None => OExpect::Absent,
            },
            ExpGen::Present => OExpect::Present,
            ExpGen::Absent => OExpect::Absent,
            ExpGen::Is { id, version } => OExpect::Is(OContent {
                id: POOL_IDS[id as usize % POOL_IDS.len()],
                kind: natural_kind(key),
                version,
            }),
        }
    }

    fn resolve_content(&mut self, g: ContentGen, key: usize, read: Option<OContent>) -> OContent {
        let id = match (g.id, read) {
            (IdGen::Keep, Some(c)) => c.id,
            (IdGen::Keep, None) | (IdGen::Fresh, _) => self.fresh_id(),
            (IdGen::Pool(i), _) => POOL_IDS[i as usize % POOL_IDS.len()],
        };
        let kind = match (g.kind, read) {
            (KindGen::Keep, Some(c)) => c.kind,
            (KindGen::Natural | KindGen::Keep, _) => natural_kind(key),
            (KindGen::Namespace, _) => ContentKind::Namespace,
            (KindGen::Table, _) => ContentKind::IcebergTable,
            (KindGen::View, _) => ContentKind::IcebergView,
        };
        OContent {
            id,
            kind,
            version: g.version % 3,
        }
    }

    fn resolve_ops(&mut self, ops: &[OpGen], dup: bool, parents: bool, read: &Map) -> Vec<ROp> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for g in ops {
            let mut k = g.key as usize % KEYS.len();
            if matches!(g.what, OpKindGen::Delete) && !read.is_empty() {
                // Deletes mostly aim at a key that is there.
                k = *read
                    .keys()
                    .nth(g.key as usize % read.len())
                    .expect("in range");
            }
            if !seen.insert(k) {
                continue;
            }
            let at = read.get(&k).copied();
            out.push(match g.what {
                OpKindGen::Put(c) => {
                    let content = self.resolve_content(c, k, at);
                    ROp::Put(k, content, self.resolve_expect(g.expect, k, at, false))
                }
                OpKindGen::Delete => ROp::Delete(k, self.resolve_expect(g.expect, k, at, true)),
                OpKindGen::Check => ROp::Check(k, self.resolve_expect(g.expect, k, at, false)),
                OpKindGen::PrefixEmpty => ROp::PrefixEmpty(k),
            });
        }
        if parents {
            // Create each missing ancestor namespace of a put.
            let mut missing = Vec::new();
            for op in &out {
                if let ROp::Put(k, ..) = op {
                    let mut p = PARENT[*k];
                    while let Some(x) = p {
                        if !read.contains_key(&x) && !seen.contains(&x) && !missing.contains(&x) {
                            missing.push(x);
                        }
                        p = PARENT[x];
                    }
                }
            }
            for k in missing {
                let ns = OContent {
                    id: self.fresh_id(),
                    kind: ContentKind::Namespace,
                    version: 0,
                };
                out.push(ROp::Put(k, ns, OExpect::Absent));
            }
        }
        if dup && let Some(first) = ops.first() {
            out.push(ROp::Check(
                first.key as usize % KEYS.len(),
                OExpect::Present,
            ));
        }
        out
    }

    /// Runs one commit against both, given resolved ops and the expected head.
    fn run_commit(
        &mut self,
        b: usize,
        expected: Option<usize>,
        ops: Vec<ROp>,
    ) -> Result<Ended, String> {
        let head = self.oracle.branches.get(&b).copied();
        let want = self.oracle.commit(b, expected, &ops);
        let rebased = matches!(want, Ok((_, true)));
        self.count("commit", &want, |(e, _)| effect_label(e));
        if rebased {
            self.stats
                .entry("commit rebased".to_owned())
                .or_default()
                .add_assign(1);
        }
        self.trace.push(format!(
            "{}: commit on {} expecting head {:?} (now {:?}): [{}] -> oracle {want:?}",
            self.step_no,
            BRANCHES[b],
            expected,
            head,
            ops.iter().map(ROp::describe).collect::<Vec<_>>().join(", ")
        ));
        let store_ops = ops.iter().map(|o| o.to_store(&self.keys)).collect();
        let got = self.store.commit(
            &self.names[b],
            self.hash_of(expected),
            store_ops,
            self.meta(),
            &ctx(),
        );
        match (want, got) {
            (Ok((effect, rebased)), Ok(out)) => {
                let head = head.ok_or("the store committed to a missing branch")?;
                let created = matches!(effect, Effect::NewCommit { .. });
                ensure(
                    out.parent == self.hashes[head]
                        && out.rebased == rebased
                        && out.created == created,
                    || {
                        format!(
                            "commit outcome {out:?}; the oracle: parent {head}, rebased {rebased}, created {created}"
                        )
                    },
                )?;
                if !created {
                    ensure(out.commit == self.hashes[head], || {
                        format!(
                            "a commit that changed nothing returned head {:?}",
                            out.commit
                        )
                    })?;
                }
                self.apply(effect, Some(out.commit))?;
                Ok(if created {
                    Ended::Moved
                } else {
                    Ended::Unchanged
                })
            }
            (Err(r), Err(e)) => {
                self.check_reject(&r, &e, head)?;
                Ok(Ended::Unchanged)
            }
            (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
        }
    }

    fn step(&mut self, s: &Step) -> Result<Ended, String> {
        match *s {
            Step::Commit {
                branch,
                base,
                ref ops,
                dup,
                parents,
            } => {
                let b = branch as usize % 3;
                let head = self.oracle.branches.get(&b).copied();
                let expected = match base {
                    BaseGen::None => None,
                    BaseGen::Current => head,
                    BaseGen::Back(n) => head.map(|h| self.oracle.first_parent_back(h, n)),
                    BaseGen::Any(i) => Some(i as usize % self.oracle.commits.len()),
                };
                let read = expected
                    .or(head)
                    .map(|c| self.oracle.commits[c].map.clone())
                    .unwrap_or_default();
                let ops = self.resolve_ops(ops, dup, parents, &read);
                self.run_commit(b, expected, ops)
            }
            Step::Rename {
                branch,
                from,
                to,
                bump,
            } => {
                let b = branch as usize % 3;
                let head = self.oracle.branches.get(&b).copied();
                let read = head
                    .map(|h| self.oracle.commits[h].map.clone())
                    .unwrap_or_default();
                // Mostly rename something that is there.
                let from = match read.len() {
                    0 => from as usize % KEYS.len(),
                    n => *read.keys().nth(from as usize % n).expect("in range"),
                };
                let to = (from + 1 + to as usize % (KEYS.len() - 1)) % KEYS.len();
                let mut ops = Vec::new();
                match read.get(&from) {
                    Some(c) => {
                        let moved = OContent {
                            version: if bump { (c.version + 1) % 3 } else { c.version },
                            ..*c
                        };
                        ops.push(ROp::Delete(from, OExpect::Is(*c)));
                        ops.push(ROp::Put(to, moved, OExpect::Absent));
                    }
                    None => {
                        let fresh = OContent {
                            id: self.fresh_id(),
                            kind: natural_kind(to),
                            version: 0,
                        };
                        ops.push(ROp::Delete(from, OExpect::Present));
                        ops.push(ROp::Put(to, fresh, OExpect::Absent));
                    }
                }
                if let Some(p) = PARENT[to].filter(|p| *p != from) {
                    ops.push(ROp::Check(p, OExpect::Present));
                }
                self.run_commit(b, head, ops)
            }
            Step::CreateBranch { name, from } => {
                let mut b = name as usize % 3;
                if self.oracle.branches.contains_key(&b) {
                    // Mostly re-create a deleted branch.
                    b = (1..BRANCHES.len())
                        .find(|x| !self.oracle.branches.contains_key(x))
                        .unwrap_or(b);
                }
                let Some(at) = self
                    .pick(Pick::Head(from))
                    .or_else(|| self.oracle.branches.get(&0).copied())
                else {
                    return Ok(Ended::Skipped);
                };
                let want = self.oracle.create(b, at);
                self.count("create", &want, effect_label);
                self.trace.push(format!(
                    "{}: create {} at {at} -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let got =
                    self.store
                        .create_ref(&self.names[b], RefKind::Branch, self.hashes[at], &ctx());
                match (want, got) {
                    (Ok(effect), Ok(record)) => {
                        ensure(record.head == self.hashes[at], || {
                            format!("created at {:?}", record.head)
                        })?;
                        self.apply(effect, None)?;
                        Ok(Ended::Moved)
                    }
                    (Err(r), Err(e)) => {
                        self.check_reject(&r, &e, None)?;
                        Ok(Ended::Unchanged)
                    }
                    (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
                }
            }
            Step::Assign { branch, to, expect } => {
                let b = branch as usize % 3;
                let Some(to) = self.pick(to) else {
                    return Ok(Ended::Skipped);
                };
                let head = self.oracle.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                let want = self.oracle.assign(b, to, expected);
                self.count("assign", &want, effect_label);
                self.trace.push(format!(
                    "{}: assign {} to {to} expecting {expected:?} (now {head:?}) -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let got = self.store.assign(
                    &self.names[b],
                    self.hash_of(expected),
                    self.hashes[to],
                    &ctx(),
                );
                match (want, got) {
                    (Ok(effect), Ok(record)) => {
                        ensure(record.head == self.hashes[to], || {
                            format!("assigned to {:?}", record.head)
                        })?;
                        self.apply(effect, None)?;
                        Ok(Ended::Moved)
                    }
                    (Err(r), Err(e)) => {
                        self.check_reject(&r, &e, head)?;
                        Ok(Ended::Unchanged)
                    }
                    (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
                }
            }
            Step::DeleteBranch { branch, expect } => {
                let b = branch as usize % 3;
                let head = self.oracle.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                let want = self.oracle.delete(b, expected);
                self.count("delete", &want, effect_label);
                self.trace.push(format!(
                    "{}: delete {} expecting {expected:?} (now {head:?}) -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let got = self
                    .store
                    .delete_ref(&self.names[b], self.hash_of(expected), &ctx());
                match (want, got) {
                    (Ok(effect), Ok(())) => {
                        self.apply(effect, None)?;
                        Ok(Ended::Moved)
                    }
                    (Err(r), Err(e)) => {
                        self.check_reject(&r, &e, head)?;
                        Ok(Ended::Unchanged)
                    }
                    (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
                }
            }
            Step::Merge {
                from,
                into,
                strategy,
                resolving,
                dry_run,
                expect,
            } => {
                let b = into as usize % 3;
                // A branch's own head is always nothing to merge: take the next branch's.
                let from = match from {
                    Pick::Head(x) if x as usize % 3 == b => Pick::Head(x.wrapping_add(1) % 3),
                    other => other,
                };
                let Some(source) = self.pick(from) else {
                    return Ok(Ended::Skipped);
                };
                let head = self.oracle.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                if let Some(h) = head {
                    self.check_ancestry(source, h)?;
                }
                let want = self
                    .oracle
                    .merge(source, b, strategy, resolving, dry_run, expected);
                self.count("merge", &want, |w| format!("{:?}", w.kind));
                if want.as_ref().is_ok_and(|w| w.bases.len() > 1) {
                    self.stats
                        .entry("merge several bases".to_owned())
                        .or_default()
                        .add_assign(1);
                }
                let hooked = |w: &MergeWant| {
                    w.changes
                        .iter()
                        .any(|(_, _, after)| after.is_some_and(|a| a.version == MERGED_VERSION))
                };
                if want.as_ref().is_ok_and(hooked) {
                    self.stats
                        .entry("merge resolver hook".to_owned())
                        .or_default()
                        .add_assign(1);
                }
                self.trace.push(format!(
                    "{}: merge {source} into {} ({strategy:?}, {resolving:?}, dry run {dry_run}) expecting {expected:?} (now {head:?}) -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let options = MergeOptions {
                    strategy,
                    dry_run,
                    on_conflict: resolving.on_conflict,
                    resolutions: resolving.per_key_map(&self.keys),
                    meta: self.meta(),
                };
                let resolver: &dyn Resolver = if resolving.hook {
                    &HookResolver
                } else {
                    &ConflictResolver
                };
                let got = self.store.merge(
                    self.hashes[source],
                    &self.names[b],
                    self.hash_of(expected),
                    &options,
                    resolver,
                    &ctx(),
                );
                match (want, got) {
                    (Ok(w), Ok(out)) => {
                        let head = head.ok_or("the store merged into a missing branch")?;
                        ensure(
                            out.kind == w.kind
                                && out.dry_run == dry_run
                                && out.target_head == self.hashes[head],
                            || format!("merge outcome {out:?}, the oracle {w:?}"),
                        )?;
                        let mut bases: Vec<Hash> =
                            w.bases.iter().map(|c| self.hashes[*c]).collect();
                        bases.sort();
                        let mut got_bases = out.merge_bases.clone();
                        got_bases.sort();
                        ensure(bases == got_bases, || {
                            format!(
                                "merge bases {got_bases:?}, the oracle {bases:?} ({:?})",
                                w.bases
                            )
                        })?;
                        self.same_changes(&out.changes, &w.changes, "merge changes")?;
                        let ended = match (&w.effect, w.kind) {
                            (Effect::Nothing, MergeKind::NothingToMerge) => {
                                ensure(out.head == self.hashes[head], || {
                                    "nothing to merge moved the head".to_owned()
                                })?;
                                Ended::Unchanged
                            }
                            (Effect::Nothing, MergeKind::FastForward) => {
                                ensure(out.head == self.hashes[source], || {
                                    "a dry-run fast-forward names another head".to_owned()
                                })?;
                                Ended::Unchanged
                            }
                            (Effect::Nothing, _) => {
                                ensure(
                                    self.backend.get_object_for_test(&out.head).is_none(),
                                    || "a dry-run merge stored its commit".to_owned(),
                                )?;
                                Ended::Unchanged
                            }
                            (Effect::Move { .. }, _) => {
                                ensure(out.head == self.hashes[source], || {
                                    "a fast-forward to another head".to_owned()
                                })?;
                                Ended::Moved
                            }
                            _ => Ended::Moved,
                        };
                        self.apply(w.effect, Some(out.head))?;
                        Ok(ended)
                    }
                    (Err(r), Err(e)) => {
                        self.check_reject(&r, &e, head)?;
                        Ok(Ended::Unchanged)
                    }
                    (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
                }
            }
            Step::Replay {
                commit,
                branch,
                revert,
                expect,
            } => {
                let b = branch as usize % 3;
                let Some(picked) = self.pick(commit) else {
                    return Ok(Ended::Skipped);
                };
                let head = self.oracle.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                let want = self.oracle.replay(picked, b, revert, expected);
                self.count(
                    if revert { "revert" } else { "cherry-pick" },
                    &want,
                    effect_label,
                );
                self.trace.push(format!(
                    "{}: {} {picked} onto {} expecting {expected:?} (now {head:?}) -> oracle {want:?}",
                    self.step_no,
                    if revert { "revert" } else { "cherry-pick" },
                    BRANCHES[b]
                ));
                let meta = Some(self.meta());
                let (hash, name, exp) =
                    (self.hashes[picked], &self.names[b], self.hash_of(expected));
                let got = if revert {
                    self.store.revert(hash, name, exp, meta, &ctx())
                } else {
                    self.store.cherry_pick(hash, name, exp, meta, &ctx())
                };
                match (want, got) {
                    (Ok(effect), Ok(out)) => {
                        let head = head.ok_or("the store replayed onto a missing branch")?;
                        let created = matches!(effect, Effect::NewCommit { .. });
                        ensure(
                            out.parent == self.hashes[head] && out.created == created,
                            || {
                                format!(
                                    "replay outcome {out:?}; the oracle: parent {head}, created {created}"
                                )
                            },
                        )?;
                        if !created {
                            ensure(out.commit == self.hashes[head], || {
                                "a no-op replay moved the head".to_owned()
                            })?;
                        }
                        self.apply(effect, Some(out.commit))?;
                        Ok(if created {
                            Ended::Moved
                        } else {
                            Ended::Unchanged
                        })
                    }
                    (Err(r), Err(e)) => {
                        self.check_reject(&r, &e, head)?;
                        Ok(Ended::Unchanged)
                    }
                    (want, got) => Err(format!("the oracle says {want:?}, the store {got:?}")),
                }
            }
        }
    }

    /// The store's merge bases and ancestry agree with the brute-force oracle.
    fn check_ancestry(&self, a: usize, b: usize) -> Check {
        let (ha, hb) = (self.hashes[a], self.hashes[b]);
        let mut want: Vec<Hash> = self
            .oracle
            .merge_bases(a, b)
            .into_iter()
            .map(|c| self.hashes[c])
            .collect();
        want.sort();
        let mut got = self.store.merge_bases(ha, hb).map_err(|e| e.to_string())?;
        got.sort();
        ensure(got == want, || {
            format!("merge_bases({a}, {b}): the store {got:?}, the oracle {want:?}")
        })?;
        for (x, y) in [(a, b), (b, a)] {
            let got = self
                .store
                .is_ancestor(self.hashes[x], self.hashes[y])
                .map_err(|e| e.to_string())?;
            let want = self.oracle.ancestors(y).contains(&x);
            ensure(got == want, || {
                format!("is_ancestor({x}, {y}): the store {got}, the oracle {want}")
            })?;
        }
        Ok(())
    }

    /// The visible map of commit `c` (entries, contents, the id index) equals the oracle's.
    fn check_map(&self, c: usize) -> Check {
        let h = self.hashes[c];
        let want = &self.oracle.commits[c].map;
        let page = self
            .store
            .entries(h, None, None, 100)
            .map_err(|e| e.to_string())?;
        ensure(page.next.is_none(), || {
            "a short listing has a next page".to_owned()
        })?;
        let keys: Vec<ContentKey> = page.items.iter().map(|e| e.key.clone()).collect();
        let contents = self
            .store
            .get_contents(h, &keys)
            .map_err(|e| e.to_string())?;
        let mut got = Map::new();
        for (entry, content) in page.items.iter().zip(contents) {
            let k = self.key_index(&entry.key)?;
            let (r, content) =
                content.ok_or_else(|| format!("{} is listed but not found", entry.key))?;
            ensure(r == entry.content, || {
                format!("{}: get and entries disagree", entry.key)
            })?;
            let Some(w) = want.get(&k) else {
                return Err(format!(
                    "commit {c}: the store holds {} = {r:?}, the oracle nothing",
                    entry.key
                ));
            };
            ensure(content == w.content() && r == w.content_ref(), || {
                format!(
                    "commit {c}: {} holds {content:?}, the oracle {w:?}",
                    entry.key
                )
            })?;
            got.insert(k, *w);
        }
        ensure(got == *want, || {
            format!(
                "commit {c}: the store lists {:?}, the oracle {want:?}",
                got.keys().map(|k| key_name(*k)).collect::<Vec<_>>()
            )
        })?;
        for id in self.ids() {
            let at = want
                .iter()
                .find(|(_, v)| v.id == id)
                .map(|(k, _)| self.keys[*k].clone());
            let got = self
                .store
                .key_of_id(h, &ContentId::from_u128(u128::from(id)))
                .map_err(|e| e.to_string())?;
            ensure(got == at, || {
                format!("commit {c}: the id index puts id {id} at {got:?}, the map at {at:?}")
            })?;
        }
        Ok(())
    }

    /// Refs, branch maps and history after every step.
    fn check_all(&self) -> Check {
        let refs = self
            .store
            .list_refs(None, None, 100)
            .map_err(|e| e.to_string())?;
        let got: BTreeMap<String, Hash> = refs
            .items
            .iter()
            .map(|(n, r)| (n.as_str().to_owned(), r.head))
            .collect();
        let want: BTreeMap<String, Hash> = self
            .oracle
            .branches
            .iter()
            .map(|(b, c)| (BRANCHES[*b].to_owned(), self.hashes[*c]))
            .collect();
        ensure(got == want, || {
            format!("refs: the store {got:?}, the oracle {want:?}")
        })?;
        for (_, record) in &refs.items {
            ensure(record.kind == RefKind::Branch, || {
                "a ref is not a branch".to_owned()
            })?;
            self.commit_index(&record.head)?;
            self.store
                .commit_object(&record.head)
                .map_err(|e| format!("a ref points at a missing commit: {e}"))?;
        }
        for c in self.oracle.branches.values() {
            self.check_map(*c)?;
        }
        for (c, (bytes, commit)) in self.recorded.iter().enumerate() {
            let h = self.hashes[c];
            ensure(
                self.backend.get_object_for_test(&h).as_ref() == Some(bytes),
                || format!("the stored bytes of commit {c} changed"),
            )?;
            let now = self.store.commit_object(&h).map_err(|e| e.to_string())?;
            ensure(*now == *commit, || {
                format!("commit_object of commit {c} changed")
            })?;
        }
        Ok(())
    }

    /// Once per history: every commit's map, history independence of the index roots,
    /// and the first-parent log of every branch.
    fn check_end(&self) -> Check {
        // The roots of the key index and the id index, per map.
        let mut roots: HashMap<&Map, [Option<Hash>; 2]> = HashMap::new();
        for c in 0..self.hashes.len() {
            self.check_map(c)?;
            let commit = &self.recorded[c].1;
            let these = [commit.key_index, commit.id_index];
            let first = *roots.entry(&self.oracle.commits[c].map).or_insert(these);
            ensure(first == these, || {
                format!("commit {c}: an equal map built in another order has other index roots")
            })?;
        }
        for (b, c) in &self.oracle.branches {
            let page = self
                .store
                .log(self.hashes[*c], &LogFilter::default(), 1000)
                .map_err(|e| e.to_string())?;
            let got: Vec<Hash> = page.items.iter().map(|(h, _)| *h).collect();
            let mut want = Vec::new();
            let mut at = Some(*c);
            while let Some(x) = at {
                want.push(self.hashes[x]);
                at = self.oracle.commits[x].parents.first().copied();
            }
            ensure(got == want, || {
                format!("log of {}: {got:?}, the oracle {want:?}", BRANCHES[*b])
            })?;
        }
        Ok(())
    }

    fn count<T>(&mut self, op: &str, want: &Result<T, Reject>, ok: impl FnOnce(&T) -> String) {
        let what = match want {
            Ok(t) => ok(t),
            Err(Reject::Conflict(ConflictSpec::Exact(set))) => {
                let kinds: BTreeSet<&str> = set.keys().map(|(_, kind)| *kind).collect();
                format!(
                    "conflict {}",
                    kinds.into_iter().collect::<Vec<_>>().join("+")
                )
            }
            Err(Reject::Conflict(ConflictSpec::Expectations(_))) => {
                "conflict expectation".to_owned()
            }
            Err(Reject::Conflict(ConflictSpec::Validation(_))) => "conflict validation".to_owned(),
            Err(r) => format!("{r:?}"),
        };
        *self.stats.entry(format!("{op} {what}")).or_default() += 1;
    }

    fn side_effects(&self, ended: Ended, before: (usize, Option<u64>)) -> Check {
        let after = self.footprint()?;
        match ended {
            Ended::Skipped => Ok(()),
            Ended::Unchanged => ensure(after == before, || {
                format!(
                    "a refused or empty write persisted something: objects and reflog {before:?} -> {after:?}"
                )
            }),
            Ended::Moved => ensure(after.1 == Some(before.1.unwrap_or(0) + 1), || {
                format!(
                    "a ref move wrote reflog {:?} -> {:?}, not one entry",
                    before.1, after.1
                )
            }),
        }
    }

    /// The number of stored objects and the newest reflog sequence number.
    fn footprint(&self) -> Result<(usize, Option<u64>), String> {
        let reflog = self
            .store
            .reflog(None, None, 1)
            .map_err(|e| e.to_string())?;
        Ok((
            self.backend.object_count(),
            reflog.items.first().map(|e| e.seq),
        ))
    }
}

/// Reads an object straight from the backend, bypassing the store's caches.
trait RawObjects {
    fn get_object_for_test(&self, hash: &Hash) -> Option<Bytes>;
}

impl RawObjects for MemoryBackend {
    fn get_object_for_test(&self, hash: &Hash) -> Option<Bytes> {
        floe_commits::Backend::get_object(self, hash).expect("the memory backend reads")
    }
}

fn effect_label(e: &Effect) -> String {
    match e {
        Effect::Nothing => "nothing",
        Effect::Move { .. } => "moved",
        Effect::NewCommit { parents, .. } if parents.len() == 2 => "merge commit",
        Effect::NewCommit { .. } => "new commit",
        Effect::Create { .. } => "created",
        Effect::Delete { .. } => "deleted",
    }
    .to_owned()
}

fn run(steps: &[Step], stats: &mut BTreeMap<String, usize>) -> Check {
    let mut w = World::new();
    for (i, s) in steps.iter().enumerate() {
        w.step_no = i as i64 + 1;
        w.clock.advance(1);
        let context = |w: &World, e: String| {
            format!(
                "step {} ({s:?}) failed: {e}\ntrace:\n{}",
                i + 1,
                w.trace.join("\n")
            )
        };
        let before = w.footprint().map_err(|e| context(&w, e))?;
        let ended = w.step(s).map_err(|e| context(&w, e))?;
        w.side_effects(ended, before).map_err(|e| context(&w, e))?;
        w.check_all().map_err(|e| context(&w, e))?;
    }
    w.check_end()
        .map_err(|e| format!("final check failed: {e}\ntrace:\n{}", w.trace.join("\n")))?;
    if std::env::var_os("FLOE_MODEL_TRACE").is_some() {
        eprintln!("----\n{}", w.trace.join("\n"));
    }
    for (k, v) in w.stats {
        *stats.entry(k).or_default() += v;
    }
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        // Deterministic; `FLOE_MODEL_SEED=<u64>` explores other histories.
        rng_seed: RngSeed::Fixed(
            std::env::var("FLOE_MODEL_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0xf10e_5eed),
        ),
        max_shrink_iters: 10_000,
        ..Config::default()
    }
}

fn check_histories(cases: u32, steps: std::ops::Range<usize>) {
    let mut runner = TestRunner::new(config(cases));
    let strategy = prop::collection::vec(step_or_pattern(), steps)
        .prop_map(|s| s.into_iter().flatten().collect::<Vec<_>>());
    let stats = std::sync::Mutex::new(BTreeMap::new());
    if let Err(e) = runner.run(&strategy, |steps| {
        let mut stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        run(&steps, &mut stats).map_err(TestCaseError::fail)
    }) {
        panic!("{e}");
    }
    let stats = stats
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    eprintln!("outcomes over {cases} histories: {stats:#?}");
    // The generator must keep reaching the interesting cases, or the comparison is hollow.
    let missing: Vec<&str> = COVERED
        .iter()
        .copied()
        .filter(|label| !stats.contains_key(*label))
        .collect();
    assert!(missing.is_empty(), "no generated step reached {missing:?}");
}

/// Outcomes every run must reach at least once.
const COVERED: &[&str] = &[
    "commit new commit",
    "commit nothing",
    "commit rebased",
    "commit conflict expectation",
    "commit conflict validation",
    "commit conflict prefix-not-empty",
    "commit Invalid",
    "create created",
    "assign moved",
    "merge FastForward",
    "merge Merged",
    "merge Squashed",
    "merge NothingToMerge",
    "merge NotFastForward",
    "merge RefConflict",
    "merge conflict both-changed",
    "merge conflict validation",
    "merge several bases",
    "merge conflict ambiguous-base",
    "merge resolver hook",
    "cherry-pick new commit",
    "cherry-pick conflict diverged",
    "revert new commit",
    "revert conflict diverged",
];

#[test]
fn random_histories_match_the_oracle() {
    check_histories(128, 20..50);
}

/// The heavy variant, run by `.ci/run` (which sets `FLOE_SLOW=1`).
#[test]
fn slow_random_histories_match_the_oracle() {
    if std::env::var_os("FLOE_SLOW").is_none() {
        return;
    }
    check_histories(2_000, 30..90);
}
