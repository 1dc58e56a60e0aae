//! The executable specification of the version store (DESIGN §2): a deliberately naive,
//! pure oracle over a small universe of keys and branches. Commits are `(parents, map)` in
//! a `Vec`, branches point into it, merge bases come from brute-force ancestor sets,
//! validation scans the whole result — it states the rules rather than re-implements the
//! store. The Stateright model (`version_store`) and the replay driver (`replay`) both use
//! these transition functions: one specification.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use floe_commits::{
    ChangeKind, Content, ContentId, ContentKey, ContentKind, ContentRef, Expect, MergeKind,
    MergeStrategy, Op, Payload, Resolution, Resolved, Resolver, TablePayload, ViewPayload,
};

// ----- the universe -----------------------------------------------------------------------

/// Every key the tests use, in the store's key order (element by element): two top-level
/// namespaces, a nested namespace, and tables under each.
pub const KEYS: [&[&str]; 8] = [
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
pub const PARENT: [Option<usize>; 8] = [
    None,
    Some(0),
    Some(1),
    Some(0),
    Some(0),
    None,
    Some(5),
    Some(5),
];
pub const BRANCHES: [&str; 3] = ["main", "dev", "feat"];
/// Tags (immutable refs: only create and delete change them).
pub const TAGS: [&str; 1] = ["v1"];
/// Content ids shared by generated puts, so that duplicates and renames happen.
pub const POOL_IDS: [u32; 3] = [1, 2, 3];
/// Fresh content ids start here.
pub const FRESH_ID_START: u32 = 100;
pub const VALIDATION_KINDS: [&str; 3] = [
    "namespace-missing",
    "namespace-not-empty",
    "duplicate-content-id",
];

pub fn key_name(k: usize) -> String {
    KEYS[k].join(".")
}

pub fn strictly_under(k: usize, prefix: usize) -> bool {
    let mut p = PARENT[k];
    while let Some(x) = p {
        if x == prefix {
            return true;
        }
        p = PARENT[x];
    }
    false
}

pub fn natural_kind(k: usize) -> ContentKind {
    if matches!(k, 0 | 1 | 5) {
        ContentKind::Namespace
    } else {
        ContentKind::IcebergTable
    }
}

/// A content value of the oracle: equal values have equal store hashes and vice versa.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OContent {
    pub id: u32,
    pub kind: ContentKind,
    pub version: u8,
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
    pub fn content(&self) -> Content {
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

    pub fn content_ref(&self) -> ContentRef {
        self.content().content_ref()
    }
}

// ----- the oracle -------------------------------------------------------------------------

pub type Map = BTreeMap<usize, OContent>;
/// A key whose content differs between two maps: (key, before, after).
pub type Change = (usize, Option<OContent>, Option<OContent>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OCommit {
    pub parents: Vec<usize>,
    pub map: Map,
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OExpect {
    Absent,
    Present,
    Is(OContent),
}

impl OExpect {
    pub fn holds(&self, actual: Option<&OContent>) -> bool {
        match self {
            OExpect::Absent => actual.is_none(),
            OExpect::Present => actual.is_some(),
            OExpect::Is(c) => actual == Some(c),
        }
    }

    pub fn to_store(self) -> Expect {
        match self {
            OExpect::Absent => Expect::Absent,
            OExpect::Present => Expect::Present,
            OExpect::Is(c) => Expect::Is(c.content().hash()),
        }
    }
}

/// A resolved commit operation on a key of `KEYS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ROp {
    Put(usize, OContent, OExpect),
    Delete(usize, OExpect),
    Check(usize, OExpect),
    PrefixEmpty(usize),
}

impl ROp {
    pub fn to_store(&self, keys: &[ContentKey]) -> Op {
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

    pub fn describe(&self) -> String {
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
pub enum Reject {
    Invalid,
    RefNotFound,
    RefExists,
    RefConflict,
    NotFastForward,
    Conflict(ConflictSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictSpec {
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
pub struct Detail {
    pub expected: Option<OExpect>,
    /// The key's content at the head the write was evaluated at.
    pub actual: Option<Option<OContent>>,
    /// How the source and the target changed the key since the base.
    pub changes: Option<(Option<ChangeKind>, Option<ChangeKind>)>,
}

/// What an applied write does to the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
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
    CreateTag {
        tag: usize,
        at: usize,
    },
    DeleteTag {
        tag: usize,
    },
}

/// How a merge decides keys both sides changed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resolving {
    pub on_conflict: Resolution,
    /// A per-key choice that overrides `on_conflict` for one key.
    pub per_key: Option<(u8, Resolution)>,
    /// Ask `HookResolver` about the keys still failing.
    pub hook: bool,
}

impl Resolving {
    pub fn of(&self, k: usize) -> Resolution {
        match self.per_key {
            Some((key, r)) if key as usize % KEYS.len() == k => r,
            _ => self.on_conflict,
        }
    }

    pub fn per_key_map(&self, keys: &[ContentKey]) -> BTreeMap<ContentKey, Resolution> {
        self.per_key
            .map(|(k, r)| (keys[k as usize % KEYS.len()].clone(), r))
            .into_iter()
            .collect()
    }
}

/// The version `HookResolver` gives the values it merges.
pub const MERGED_VERSION: u8 = 7;

/// What `HookResolver` makes of a key both sides changed, where the target holds `t`.
pub fn merged_by_hook(t: OContent) -> OContent {
    OContent {
        version: MERGED_VERSION,
        ..t
    }
}

/// A `Resolver` as the catalog might write one: where the target still holds the key, a
/// merged value (the target's id and kind, version `MERGED_VERSION`); else the source's.
#[derive(Debug)]
pub struct HookResolver;

impl Resolver for HookResolver {
    fn resolve(
        &self,
        _key: &ContentKey,
        _base: Option<&ContentRef>,
        source: Option<&ContentRef>,
        target: Option<&ContentRef>,
    ) -> Result<Option<Resolved>, floe_commits::WriteError> {
        Ok(match target {
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
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeWant {
    pub kind: MergeKind,
    pub bases: Vec<usize>,
    pub changes: Vec<Change>,
    pub effect: Effect,
}

/// One key's fate under one merge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Value(Option<OContent>),
    Conflict(Option<ChangeKind>, Option<ChangeKind>),
}

pub fn change_kind(before: Option<OContent>, after: Option<OContent>) -> Option<ChangeKind> {
    match (before, after) {
        (None, Some(_)) => Some(ChangeKind::Added),
        (Some(_), None) => Some(ChangeKind::Removed),
        (Some(b), Some(a)) if b != a => Some(ChangeKind::Modified),
        _ => None,
    }
}

pub fn diff(a: &Map, b: &Map) -> Vec<Change> {
    (0..KEYS.len())
        .filter_map(|k| {
            let (x, y) = (a.get(&k).copied(), b.get(&k).copied());
            (x != y).then_some((k, x, y))
        })
        .collect()
}

/// The landing validation, stated over the whole result: every key with a parent has a
/// namespace there, and no content id sits under two keys.
pub fn valid(map: &Map) -> bool {
    let parents = map.keys().all(|&k| {
        PARENT[k].is_none_or(|p| {
            map.get(&p)
                .is_some_and(|c| c.kind == ContentKind::Namespace)
        })
    });
    let ids: BTreeSet<u32> = map.values().map(|c| c.id).collect();
    parents && ids.len() == map.len()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Oracle {
    pub commits: Vec<OCommit>,
    pub branches: BTreeMap<usize, usize>,
    pub tags: BTreeMap<usize, usize>,
    /// The next fresh content id.
    pub next_id: u32,
}

impl Default for Oracle {
    fn default() -> Self {
        Oracle::new()
    }
}

impl Oracle {
    pub fn new() -> Oracle {
        Oracle {
            commits: vec![OCommit {
                parents: Vec::new(),
                map: Map::new(),
                generation: 1,
            }],
            branches: BTreeMap::from([(0, 0)]),
            tags: BTreeMap::new(),
            next_id: FRESH_ID_START,
        }
    }

    /// The state every history starts from: namespaces `a` and `b` committed on `main`
    /// (commit 1), and every branch there.
    pub fn seeded() -> (Oracle, Vec<ROp>) {
        let mut o = Oracle::new();
        let seed: Vec<ROp> = ["a", "b"]
            .iter()
            .map(|n| {
                let k = KEYS
                    .iter()
                    .position(|key| *key == [*n])
                    .expect("a namespace key");
                let ns = OContent {
                    id: o.fresh_id(),
                    kind: ContentKind::Namespace,
                    version: 0,
                };
                ROp::Put(k, ns, OExpect::Absent)
            })
            .collect();
        let (effect, _) = o.commit(0, None, &seed).expect("the seed commit lands");
        o.apply(effect);
        for b in 1..BRANCHES.len() {
            o.branches.insert(b, 1);
        }
        (o, seed)
    }

    /// Applies an effect; returns the new commit's index when it made one.
    pub fn apply(&mut self, effect: Effect) -> Option<usize> {
        match effect {
            Effect::Nothing => None,
            Effect::Move { branch, to } | Effect::Create { branch, at: to } => {
                self.branches.insert(branch, to);
                None
            }
            Effect::Delete { branch } => {
                self.branches.remove(&branch);
                None
            }
            Effect::CreateTag { tag, at } => {
                self.tags.insert(tag, at);
                None
            }
            Effect::DeleteTag { tag } => {
                self.tags.remove(&tag);
                None
            }
            Effect::NewCommit {
                branch,
                parents,
                map,
            } => {
                let generation = 1 + parents
                    .iter()
                    .map(|p| self.commits[*p].generation)
                    .max()
                    .unwrap_or(0);
                self.commits.push(OCommit {
                    parents,
                    map,
                    generation,
                });
                let c = self.commits.len() - 1;
                self.branches.insert(branch, c);
                Some(c)
            }
        }
    }

    /// What an action does, or why it is refused (merges: the effect of the merge).
    pub fn decide(&self, action: &Action) -> Result<Effect, Reject> {
        match action {
            Action::Commit {
                branch,
                expected,
                ops,
            } => self.commit(*branch, *expected, ops).map(|(e, _)| e),
            Action::Create { branch, at } => self.create(*branch, *at),
            Action::Assign {
                branch,
                to,
                expected,
            } => self.assign(*branch, *to, *expected),
            Action::Delete { branch, expected } => self.delete(*branch, *expected),
            Action::Merge {
                source,
                branch,
                strategy,
                resolving,
                dry_run,
                expected,
            } => self
                .merge(*source, *branch, *strategy, *resolving, *dry_run, *expected)
                .map(|w| w.effect),
            Action::Replay {
                picked,
                branch,
                revert,
                expected,
            } => self.replay(*picked, *branch, *revert, *expected),
            Action::CreateTag { tag, at } => self.create_tag(*tag, *at),
            Action::DeleteTag { tag, expected } => self.delete_tag(*tag, *expected),
        }
    }

    pub fn create_tag(&self, tag: usize, at: usize) -> Result<Effect, Reject> {
        if self.tags.contains_key(&tag) {
            return Err(Reject::RefExists);
        }
        Ok(Effect::CreateTag { tag, at })
    }

    pub fn delete_tag(&self, tag: usize, expected: Option<usize>) -> Result<Effect, Reject> {
        let head = self.tags.get(&tag).copied().ok_or(Reject::RefNotFound)?;
        if expected.is_some_and(|e| e != head) {
            return Err(Reject::RefConflict);
        }
        Ok(Effect::DeleteTag { tag })
    }

    pub fn pick(&self, p: Pick) -> Option<usize> {
        match p {
            Pick::Head(b) => self.branches.get(&(b as usize % 3)).copied(),
            Pick::HeadParent(b) => self
                .branches
                .get(&(b as usize % 3))
                .map(|h| self.first_parent_back(*h, 1)),
            Pick::Any(i) => Some(i as usize % self.commits.len()),
        }
    }

    pub fn expected(&self, g: HeadGen, head: Option<usize>) -> Option<usize> {
        match g {
            HeadGen::None => None,
            HeadGen::Current => head,
            HeadGen::Any(i) => Some(i as usize % self.commits.len()),
        }
    }

    pub fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }

    pub fn ids(&self) -> BTreeSet<u32> {
        let mut ids: BTreeSet<u32> = POOL_IDS.into_iter().collect();
        ids.extend(FRESH_ID_START..self.next_id);
        ids
    }

    pub fn resolve_expect(
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

    pub fn resolve_content(
        &mut self,
        g: ContentGen,
        key: usize,
        read: Option<OContent>,
    ) -> OContent {
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

    pub fn resolve_ops(&mut self, ops: &[OpGen], dup: bool, parents: bool, read: &Map) -> Vec<ROp> {
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

    /// Resolves a generated step against the current state: the concrete action it
    /// stands for, or `None` when its subject does not exist. Fresh content ids come from
    /// `next_id`, so resolution is deterministic.
    pub fn resolve(&mut self, s: &Step) -> Option<Action> {
        match *s {
            Step::Commit {
                branch,
                base,
                ref ops,
                dup,
                parents,
            } => {
                let b = branch as usize % 3;
                let head = self.branches.get(&b).copied();
                let expected = match base {
                    BaseGen::None => None,
                    BaseGen::Current => head,
                    BaseGen::Back(n) => head.map(|h| self.first_parent_back(h, n)),
                    BaseGen::Any(i) => Some(i as usize % self.commits.len()),
                };
                let read = expected
                    .or(head)
                    .map(|c| self.commits[c].map.clone())
                    .unwrap_or_default();
                let ops = self.resolve_ops(ops, dup, parents, &read);
                Some(Action::Commit {
                    branch: b,
                    expected,
                    ops,
                })
            }
            Step::Rename {
                branch,
                from,
                to,
                bump,
            } => {
                let b = branch as usize % 3;
                let head = self.branches.get(&b).copied();
                let read = head
                    .map(|h| self.commits[h].map.clone())
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
                Some(Action::Commit {
                    branch: b,
                    expected: head,
                    ops,
                })
            }
            Step::CreateBranch { name, from } => {
                let mut b = name as usize % 3;
                if self.branches.contains_key(&b) {
                    // Mostly re-create a deleted branch.
                    b = (1..BRANCHES.len())
                        .find(|x| !self.branches.contains_key(x))
                        .unwrap_or(b);
                }
                let at = self
                    .pick(Pick::Head(from))
                    .or_else(|| self.branches.get(&0).copied())?;
                Some(Action::Create { branch: b, at })
            }
            Step::Assign { branch, to, expect } => {
                let b = branch as usize % 3;
                let to = self.pick(to)?;
                let head = self.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                Some(Action::Assign {
                    branch: b,
                    to,
                    expected,
                })
            }
            Step::DeleteBranch { branch, expect } => {
                let b = branch as usize % 3;
                let head = self.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                Some(Action::Delete {
                    branch: b,
                    expected,
                })
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
                let source = self.pick(from)?;
                let head = self.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                Some(Action::Merge {
                    source,
                    branch: b,
                    strategy,
                    resolving,
                    dry_run,
                    expected,
                })
            }
            Step::Replay {
                commit,
                branch,
                revert,
                expect,
            } => {
                let b = branch as usize % 3;
                let picked = self.pick(commit)?;
                let head = self.branches.get(&b).copied();
                let expected = self.expected(expect, head);
                Some(Action::Replay {
                    picked,
                    branch: b,
                    revert,
                    expected,
                })
            }
            Step::CreateTag { tag, from } => {
                let at = self.pick(Pick::Head(from))?;
                Some(Action::CreateTag {
                    tag: tag as usize % TAGS.len(),
                    at,
                })
            }
            Step::DeleteTag { tag } => {
                let tag = tag as usize % TAGS.len();
                Some(Action::DeleteTag {
                    tag,
                    expected: self.tags.get(&tag).copied(),
                })
            }
        }
    }

    pub fn head(&self, branch: usize) -> Result<usize, Reject> {
        self.branches
            .get(&branch)
            .copied()
            .ok_or(Reject::RefNotFound)
    }

    /// The head of a branch for a write whose expected head is strict.
    pub fn strict_head(&self, branch: usize, expected: Option<usize>) -> Result<usize, Reject> {
        let head = self.head(branch)?;
        if expected.is_some_and(|e| e != head) {
            return Err(Reject::RefConflict);
        }
        Ok(head)
    }

    pub fn ancestors(&self, c: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![c];
        while let Some(x) = stack.pop() {
            if seen.insert(x) {
                stack.extend(self.commits[x].parents.iter().copied());
            }
        }
        seen
    }

    pub fn first_parent_back(&self, mut c: usize, n: u8) -> usize {
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
    pub fn merge_bases(&self, a: usize, b: usize) -> Vec<usize> {
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
    pub fn land(
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
    pub fn commit(
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

    pub fn merge(
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
    pub fn replay(
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

    pub fn assign(
        &self,
        branch: usize,
        to: usize,
        expected: Option<usize>,
    ) -> Result<Effect, Reject> {
        self.strict_head(branch, expected)?;
        Ok(Effect::Move { branch, to })
    }

    pub fn create(&self, branch: usize, at: usize) -> Result<Effect, Reject> {
        if self.branches.contains_key(&branch) {
            return Err(Reject::RefExists);
        }
        Ok(Effect::Create { branch, at })
    }

    pub fn delete(&self, branch: usize, expected: Option<usize>) -> Result<Effect, Reject> {
        self.strict_head(branch, expected)?;
        Ok(Effect::Delete { branch })
    }
}

// ----- generated steps --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The head of a branch (the step is skipped when the branch does not exist).
    Head(u8),
    /// The first parent of a branch's head (the head itself for the root): merging it
    /// after a merge the other way makes criss-cross histories.
    HeadParent(u8),
    /// Any commit made so far (modulo their number).
    Any(u16),
}

/// The expected head of a strict write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadGen {
    None,
    Current,
    Any(u16),
}

/// The expected head of a commit, which is also the commit its expectations were read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseGen {
    None,
    Current,
    /// The n-th first-parent ancestor of the head: a stale read.
    Back(u8),
    Any(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpGen {
    /// What the key holds at the read commit (`Is` or `Absent`; `Present` for a delete).
    Right,
    Present,
    Absent,
    Is {
        id: u8,
        version: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdGen {
    /// The id at the key in the read commit (an update), else fresh.
    Keep,
    Fresh,
    Pool(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KindGen {
    Natural,
    Keep,
    Namespace,
    Table,
    View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentGen {
    pub id: IdGen,
    pub kind: KindGen,
    pub version: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKindGen {
    Put(ContentGen),
    Delete,
    Check,
    PrefixEmpty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpGen {
    pub key: u8,
    pub what: OpKindGen,
    pub expect: ExpGen,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
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
    /// A tag at the head of a branch.
    CreateTag {
        tag: u8,
        from: u8,
    },
    DeleteTag {
        tag: u8,
    },
}

/// A step resolved against a state: every commit, branch and operation concrete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Commit {
        branch: usize,
        expected: Option<usize>,
        ops: Vec<ROp>,
    },
    Create {
        branch: usize,
        at: usize,
    },
    Assign {
        branch: usize,
        to: usize,
        expected: Option<usize>,
    },
    Delete {
        branch: usize,
        expected: Option<usize>,
    },
    Merge {
        source: usize,
        branch: usize,
        strategy: MergeStrategy,
        resolving: Resolving,
        dry_run: bool,
        expected: Option<usize>,
    },
    Replay {
        picked: usize,
        branch: usize,
        revert: bool,
        expected: Option<usize>,
    },
    CreateTag {
        tag: usize,
        at: usize,
    },
    DeleteTag {
        tag: usize,
        expected: Option<usize>,
    },
}
