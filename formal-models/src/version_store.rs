//! The version store as a Stateright model: clients read branch heads and commit from what
//! they read (so expected heads go stale), and refs are created, deleted, assigned, merged
//! into (every strategy, on-conflict choice and dry run), cherry-picked onto, reverted on
//! and tagged. Transitions are the specification's (`spec::Oracle`); a `Mutant` removes
//! one guard so that the checker can show the property it protects failing.
//!
//! The universe is small on purpose: namespace `a` with tables `a.t1` and `a.t2` (and
//! namespace `b`), branches `main` and `dev`, the tag `v1`, two clients. Values toggle
//! between two versions, so the same map recurs and merges meet equal changes.

use std::collections::BTreeMap;

use floe_commits::{MergeStrategy, Resolution};
use stateright::{Model, Property};

use crate::spec::*;

/// A guard removed, to show what it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// A commit lands on the head its client read, not the branch's current head, and the
    /// branch moves to it: the commits in between are dropped without a reflog entry.
    BlindWrite,
    /// A commit's expectations are checked at the head its client read, then its writes
    /// are rebased onto the current head (the write-skew pair both land).
    StaleExpectations,
    /// A merge takes the source's value for a key both sides changed, instead of
    /// reporting the conflict.
    UnguardedMerge,
    /// A multi-key commit lands one key first, then the rest: a read between sees half.
    TornCommit,
    /// Landings skip the structural validation.
    NoValidation,
    /// A commit rewrites its branch's head commit in place instead of adding a child.
    AmendInPlace,
    /// A tag on `main`'s head follows `main` when it moves.
    MovingTag,
}

impl Mutant {
    pub const ALL: [Mutant; 7] = [
        Mutant::BlindWrite,
        Mutant::StaleExpectations,
        Mutant::UnguardedMerge,
        Mutant::TornCommit,
        Mutant::NoValidation,
        Mutant::AmendInPlace,
        Mutant::MovingTag,
    ];

    /// The property this mutant breaks.
    pub fn breaks(self) -> &'static str {
        match self {
            Mutant::BlindWrite => NO_LOST_ACK,
            Mutant::StaleExpectations => EXPECTATIONS,
            Mutant::UnguardedMerge => MERGE_SAFETY,
            Mutant::TornCommit => ATOMIC,
            Mutant::NoValidation => STRUCTURAL,
            Mutant::AmendInPlace => HISTORY,
            Mutant::MovingTag => ISOLATION,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mutant::BlindWrite => "blind-write",
            Mutant::StaleExpectations => "stale-expectations",
            Mutant::UnguardedMerge => "unguarded-merge",
            Mutant::TornCommit => "torn-commit",
            Mutant::NoValidation => "no-validation",
            Mutant::AmendInPlace => "amend-in-place",
            Mutant::MovingTag => "moving-tag",
        }
    }
}

pub const HISTORY: &str = "history integrity: a commit never changes, parents precede it";
pub const NO_LOST_ACK: &str =
    "no lost acknowledged commit: reachable from its branch unless an assign or delete moved it";
pub const ISOLATION: &str = "branch isolation: an operation moves only the ref it names";
pub const ATOMIC: &str = "atomic commits: a commit holds all of its write or none";
pub const EXPECTATIONS: &str = "expectations hold at the head a commit lands on";
pub const MERGE_SAFETY: &str =
    "merge safety: both-changed keys conflict or take the chosen side; one-sided changes arrive";
pub const STRUCTURAL: &str = "structural: every key has its namespace; no id under two keys";
pub const SOME_MERGE: &str = "a merge succeeds";
pub const SOME_REBASE: &str = "a stale commit lands by rebase";
pub const SOME_CONFLICT: &str = "a conflict is reported";
pub const SOME_SKIP: &str = "a cherry-pick skips an already-applied change";

/// The depth CI checks exhaustively, as stateright counts it (the initial state is depth
/// 1: five actions). Every `sometimes` property is reached here, so it is also the
/// command line's default (a smaller depth never reaches "a stale commit lands by rebase").
pub const CI_DEPTH: usize = 6;
/// The depth within which every mutant's counterexample is found (12 steps), with normal
/// merges only.
pub const MUTANT_DEPTH: usize = 13;

/// Keys of the model's universe (indices into `spec::KEYS`).
pub const NS_A: usize = 0;
pub const T1: usize = 3;
pub const T2: usize = 4;
/// Branches the model works on (`feat` exists and stays put).
pub const MAIN: usize = 0;
pub const DEV: usize = 1;

/// What a client writes, from what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Write {
    /// A new version of `a.t1`, expecting `a.t1` and `a.t2` as read (one half of the
    /// write-skew pair).
    T1,
    /// The other half: `a.t2`, expecting both as read.
    T2,
    /// Both tables in one commit.
    Both,
    /// Delete `a.t1` as read.
    DeleteT1,
    /// Drop namespace `a` as read (refused while it holds tables).
    DropNamespace,
}

impl Write {
    pub const ALL: [Write; 5] = [
        Write::T1,
        Write::T2,
        Write::Both,
        Write::DeleteT1,
        Write::DropNamespace,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelAction {
    /// A client reads a branch's head.
    Read { client: usize, branch: usize },
    /// A client commits on the branch it read, expecting the head it read.
    Write { client: usize, write: Write },
    /// Any other operation, as the specification's step.
    Do(Step),
}

/// Where a commit came from, for the properties.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Seed,
    Write {
        expects: Vec<(usize, OExpect)>,
        changes: Vec<(usize, Option<OContent>)>,
        rebased: bool,
    },
    Merge {
        source: usize,
        target: usize,
        bases: Vec<usize>,
        on_conflict: Resolution,
    },
    /// A cherry-pick or a revert.
    Replay,
}

/// A ref of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefId {
    Branch(usize),
    Tag(usize),
}

/// How a ref moved, as the reflog records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Move {
    Advance,
    Assign,
    Create,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub spec: Oracle,
    /// Per client: the branch it read and the head it saw.
    pub reads: Vec<Option<(usize, usize)>>,
    /// Per commit: where it came from, and the commit as first made.
    pub origins: Vec<Origin>,
    pub frozen: Vec<OCommit>,
    /// Acknowledged commits: (branch, commit, reflog length after the acknowledgement).
    pub acked: Vec<(usize, usize, usize)>,
    pub reflog: Vec<(RefId, Move)>,
    /// The ref the last operation named, and the refs it moved.
    pub last: Option<(RefId, Vec<RefId>)>,
    pub saw_conflict: bool,
    pub saw_skip: bool,
}

#[derive(Debug, Clone)]
pub struct VersionStore {
    pub mutant: Option<Mutant>,
    pub clients: usize,
    /// Offer every merge strategy and on-conflict choice (else normal merges only).
    pub all_merges: bool,
}

impl Default for VersionStore {
    fn default() -> Self {
        VersionStore {
            mutant: None,
            clients: 2,
            all_merges: true,
        }
    }
}

fn refs(o: &Oracle) -> BTreeMap<RefId, usize> {
    o.branches
        .iter()
        .map(|(b, c)| (RefId::Branch(*b), *c))
        .chain(o.tags.iter().map(|(t, c)| (RefId::Tag(*t), *c)))
        .collect()
}

fn apply_changes(map: &Map, changes: &[(usize, Option<OContent>)]) -> Map {
    let mut out = map.clone();
    for (k, v) in changes {
        match v {
            Some(v) => out.insert(*k, *v),
            None => out.remove(k),
        };
    }
    out
}

/// The next version of a table's value, from what was read.
fn next_value(key: usize, read: Option<OContent>) -> OContent {
    OContent {
        id: POOL_IDS[if key == T1 { 0 } else { 1 }],
        kind: natural_kind(key),
        version: read.map_or(0, |c| (c.version + 1) % 2),
    }
}

fn expect_of(read: Option<OContent>) -> OExpect {
    read.map_or(OExpect::Absent, OExpect::Is)
}

impl VersionStore {
    pub fn with_mutant(mutant: Mutant) -> VersionStore {
        VersionStore {
            mutant: Some(mutant),
            ..VersionStore::default()
        }
    }

    fn is(&self, m: Mutant) -> bool {
        self.mutant == Some(m)
    }

    /// The steps offered besides client reads and writes.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let plain = Resolving {
            on_conflict: Resolution::Fail,
            per_key: None,
            hook: false,
        };
        for (from, into) in [(DEV, MAIN), (MAIN, DEV)] {
            let mut merge = |strategy, on_conflict, dry_run| {
                steps.push(Step::Merge {
                    from: Pick::Head(from as u8),
                    into: into as u8,
                    strategy,
                    resolving: Resolving {
                        on_conflict,
                        ..plain
                    },
                    dry_run,
                    expect: HeadGen::Current,
                })
            };
            merge(MergeStrategy::Normal, Resolution::Fail, false);
            if self.all_merges {
                merge(MergeStrategy::NoFastForward, Resolution::Fail, false);
                merge(MergeStrategy::Squash, Resolution::Fail, false);
                merge(MergeStrategy::FastForwardOnly, Resolution::Fail, false);
                merge(MergeStrategy::Normal, Resolution::TakeSource, false);
                merge(MergeStrategy::Normal, Resolution::KeepTarget, false);
                merge(MergeStrategy::Normal, Resolution::Fail, true);
            }
            steps.push(Step::Replay {
                commit: Pick::Head(from as u8),
                branch: into as u8,
                revert: false,
                expect: HeadGen::Current,
            });
            steps.push(Step::Replay {
                commit: Pick::Head(into as u8),
                branch: into as u8,
                revert: true,
                expect: HeadGen::Current,
            });
            steps.push(Step::Assign {
                branch: into as u8,
                to: Pick::Head(from as u8),
                expect: HeadGen::Current,
            });
        }
        steps.push(Step::DeleteBranch {
            branch: DEV as u8,
            expect: HeadGen::Current,
        });
        steps.push(Step::CreateBranch {
            name: DEV as u8,
            from: MAIN as u8,
        });
        steps.push(Step::CreateTag {
            tag: 0,
            from: MAIN as u8,
        });
        steps.push(Step::DeleteTag { tag: 0 });
        steps
    }

    /// The concrete action a model action stands for in a state (`None`: not enabled).
    pub fn action(&self, state: &State, a: &ModelAction) -> Option<Action> {
        match a {
            ModelAction::Read { .. } => None,
            ModelAction::Write { client, write } => {
                let (branch, read_at) = state.reads[*client]?;
                let read = &state.spec.commits[read_at].map;
                let at = |k| read.get(&k).copied();
                let ops = match write {
                    Write::T1 => vec![
                        ROp::Put(T1, next_value(T1, at(T1)), expect_of(at(T1))),
                        ROp::Check(T2, expect_of(at(T2))),
                    ],
                    Write::T2 => vec![
                        ROp::Put(T2, next_value(T2, at(T2)), expect_of(at(T2))),
                        ROp::Check(T1, expect_of(at(T1))),
                    ],
                    Write::Both => vec![
                        ROp::Put(T1, next_value(T1, at(T1)), expect_of(at(T1))),
                        ROp::Put(T2, next_value(T2, at(T2)), expect_of(at(T2))),
                    ],
                    Write::DeleteT1 => vec![ROp::Delete(T1, OExpect::Is(at(T1)?))],
                    Write::DropNamespace => vec![ROp::Delete(NS_A, OExpect::Is(at(NS_A)?))],
                };
                Some(Action::Commit {
                    branch,
                    expected: Some(read_at),
                    ops,
                })
            }
            ModelAction::Do(step) => state.spec.clone().resolve(step),
        }
    }

    /// A commit under the mutants that change the commit rule; `None`: as specified.
    fn mutated_commit(
        &self,
        o: &Oracle,
        branch: usize,
        expected: Option<usize>,
        ops: &[ROp],
    ) -> Option<Result<Effect, Reject>> {
        let head = *o.branches.get(&branch)?;
        let read = expected.unwrap_or(head);
        let stale = read != head;
        let evaluate = |at: usize, onto: usize| -> Result<Map, Reject> {
            let checked = &o.commits[at].map;
            if ops.iter().any(|op| match op {
                ROp::Put(k, _, e) | ROp::Delete(k, e) | ROp::Check(k, e) => {
                    !e.holds(checked.get(k))
                }
                ROp::PrefixEmpty(_) => false,
            }) {
                return Err(Reject::Conflict(
                    ConflictSpec::Expectations(BTreeMap::new()),
                ));
            }
            let mut result = o.commits[onto].map.clone();
            for op in ops {
                match op {
                    ROp::Put(k, c, _) => {
                        result.insert(*k, *c);
                    }
                    ROp::Delete(k, _) => {
                        result.remove(k);
                    }
                    _ => {}
                }
            }
            Ok(result)
        };
        let land = |base: usize, result: Map, validate: bool| {
            if result == o.commits[base].map {
                return Ok(Effect::Nothing);
            }
            if validate && !valid(&result) {
                return Err(Reject::Conflict(ConflictSpec::Validation(
                    Default::default(),
                )));
            }
            Ok(Effect::NewCommit {
                branch,
                parents: vec![base],
                map: result,
            })
        };
        match self.mutant? {
            Mutant::BlindWrite if stale => {
                Some(evaluate(read, read).and_then(|r| land(read, r, true)))
            }
            Mutant::StaleExpectations if stale => {
                Some(evaluate(read, head).and_then(|r| land(head, r, true)))
            }
            Mutant::NoValidation => Some(evaluate(head, head).and_then(|r| land(head, r, false))),
            _ => None,
        }
    }

    /// Applies an action; returns the state, or `None` when it changes nothing.
    fn transition(&self, state: &State, a: &ModelAction) -> Option<State> {
        if let ModelAction::Read { client, branch } = a {
            let head = *state.spec.branches.get(branch)?;
            let mut next = state.clone();
            next.reads[*client] = Some((*branch, head));
            next.last = None;
            return (next != *state).then_some(next);
        }
        let action = self.action(state, a)?;
        let o = &state.spec;
        let mut decided = match &action {
            Action::Commit {
                branch,
                expected,
                ops,
            } => self
                .mutated_commit(o, *branch, *expected, ops)
                .unwrap_or_else(|| o.decide(&action)),
            Action::Merge {
                source,
                branch,
                strategy,
                resolving,
                dry_run,
                expected,
            } if self.is(Mutant::UnguardedMerge) && resolving.on_conflict == Resolution::Fail => {
                let silent = Resolving {
                    on_conflict: Resolution::TakeSource,
                    ..*resolving
                };
                o.merge(*source, *branch, *strategy, silent, *dry_run, *expected)
                    .map(|w| w.effect)
            }
            _ => o.decide(&action),
        };
        let mut next = state.clone();
        next.last = None;
        let effect = match decided {
            Ok(ref mut effect) => std::mem::replace(effect, Effect::Nothing),
            Err(Reject::Conflict(_)) => {
                next.saw_conflict = true;
                return (next != *state).then_some(next);
            }
            Err(_) => return (next != *state).then_some(next),
        };
        if effect == Effect::Nothing {
            if let Action::Replay { revert: false, .. } = action {
                next.saw_skip = true;
            }
            return (next != *state).then_some(next);
        }
        let before = refs(&next.spec);
        let target = match &action {
            Action::Commit { branch, .. }
            | Action::Create { branch, .. }
            | Action::Assign { branch, .. }
            | Action::Delete { branch, .. }
            | Action::Merge { branch, .. }
            | Action::Replay { branch, .. } => RefId::Branch(*branch),
            Action::CreateTag { tag, .. } | Action::DeleteTag { tag, .. } => RefId::Tag(*tag),
        };
        let origin = match &action {
            Action::Commit {
                branch,
                expected,
                ops,
            } => {
                let head = o.branches[branch];
                Origin::Write {
                    expects: ops
                        .iter()
                        .filter_map(|op| match op {
                            ROp::Put(k, _, e) | ROp::Delete(k, e) | ROp::Check(k, e) => {
                                Some((*k, *e))
                            }
                            ROp::PrefixEmpty(_) => None,
                        })
                        .collect(),
                    changes: ops
                        .iter()
                        .filter_map(|op| match op {
                            ROp::Put(k, c, _) => Some((*k, Some(*c))),
                            ROp::Delete(k, _) => Some((*k, None)),
                            _ => None,
                        })
                        .collect(),
                    rebased: expected.is_some_and(|e| e != head),
                }
            }
            Action::Merge {
                source,
                branch,
                strategy,
                resolving,
                ..
            } => Origin::Merge {
                source: *source,
                target: o.branches[branch],
                bases: o.merge_bases(*source, o.branches[branch]),
                on_conflict: if *strategy == MergeStrategy::FastForwardOnly {
                    Resolution::Fail
                } else {
                    resolving.on_conflict
                },
            },
            _ => Origin::Replay,
        };
        let old_main = next.spec.branches.get(&MAIN).copied();
        match effect {
            Effect::NewCommit {
                branch,
                parents,
                map,
            } => {
                if self.is(Mutant::AmendInPlace) && parents.len() == 1 && parents[0] > 1 {
                    next.spec.commits[parents[0]].map = map;
                } else if self.is(Mutant::TornCommit)
                    && let Origin::Write { changes, .. } = &origin
                    && changes.len() > 1
                {
                    let half = apply_changes(&next.spec.commits[parents[0]].map, &changes[..1]);
                    let first = Effect::NewCommit {
                        branch,
                        parents: parents.clone(),
                        map: half,
                    };
                    self.land(&mut next, first, origin.clone(), branch);
                    let tip = next.spec.branches[&branch];
                    let rest = Effect::NewCommit {
                        branch,
                        parents: vec![tip],
                        map,
                    };
                    self.land(&mut next, rest, origin, branch);
                } else {
                    let effect = Effect::NewCommit {
                        branch,
                        parents,
                        map,
                    };
                    self.land(&mut next, effect, origin, branch);
                }
            }
            Effect::Move { branch, to } => {
                next.spec.apply(Effect::Move { branch, to });
                let kind = match action {
                    Action::Assign { .. } => Move::Assign,
                    _ => Move::Advance,
                };
                next.reflog.push((RefId::Branch(branch), kind));
                if kind == Move::Advance {
                    next.acked.push((branch, to, next.reflog.len()));
                }
            }
            other => {
                let kind = match other {
                    Effect::Create { .. } | Effect::CreateTag { .. } => Move::Create,
                    _ => Move::Delete,
                };
                next.spec.apply(other);
                next.reflog.push((target, kind));
            }
        }
        if self.is(Mutant::MovingTag)
            && let (Some(old), Some(new)) = (old_main, next.spec.branches.get(&MAIN).copied())
            && old != new
        {
            for at in next.spec.tags.values_mut() {
                if *at == old {
                    *at = new;
                }
            }
        }
        let after = refs(&next.spec);
        let moved: Vec<RefId> = before
            .keys()
            .chain(after.keys())
            .filter(|r| before.get(r) != after.get(r))
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        next.last = Some((target, moved));
        Some(next)
    }

    /// Adds a new commit, records where it came from, and acknowledges it.
    fn land(&self, next: &mut State, effect: Effect, origin: Origin, branch: usize) {
        if let Some(c) = next.spec.apply(effect) {
            next.origins.push(origin);
            next.frozen.push(next.spec.commits[c].clone());
            next.reflog.push((RefId::Branch(branch), Move::Advance));
            next.acked.push((branch, c, next.reflog.len()));
        }
    }
}

impl Model for VersionStore {
    type State = State;
    type Action = ModelAction;

    fn init_states(&self) -> Vec<State> {
        let (spec, _) = Oracle::seeded();
        let frozen = spec.commits.clone();
        vec![State {
            origins: vec![Origin::Seed; spec.commits.len()],
            frozen,
            spec,
            reads: vec![None; self.clients],
            acked: Vec::new(),
            reflog: Vec::new(),
            last: None,
            saw_conflict: false,
            saw_skip: false,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<ModelAction>) {
        for client in 0..self.clients {
            for branch in [MAIN, DEV] {
                if state.spec.branches.contains_key(&branch) {
                    actions.push(ModelAction::Read { client, branch });
                }
            }
            if state.reads[client].is_some() {
                for write in Write::ALL {
                    actions.push(ModelAction::Write { client, write });
                }
            }
        }
        actions.extend(self.steps().into_iter().map(ModelAction::Do));
    }

    fn next_state(&self, state: &State, action: ModelAction) -> Option<State> {
        self.transition(state, &action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(HISTORY, |_: &VersionStore, s: &State| history_intact(s)),
            Property::always(NO_LOST_ACK, |_: &VersionStore, s: &State| no_lost_ack(s)),
            Property::always(ISOLATION, |_: &VersionStore, s: &State| isolated(s)),
            Property::always(ATOMIC, |_: &VersionStore, s: &State| atomic(s)),
            Property::always(EXPECTATIONS, |_: &VersionStore, s: &State| {
                expectations_hold(s)
            }),
            Property::always(MERGE_SAFETY, |_: &VersionStore, s: &State| merges_safe(s)),
            Property::always(STRUCTURAL, |_: &VersionStore, s: &State| {
                s.spec.commits.iter().all(|c| valid(&c.map))
            }),
            Property::sometimes(SOME_MERGE, |_: &VersionStore, s: &State| {
                s.origins
                    .iter()
                    .zip(&s.spec.commits)
                    .any(|(o, c)| matches!(o, Origin::Merge { .. }) && c.parents.len() == 2)
            }),
            Property::sometimes(SOME_REBASE, |_: &VersionStore, s: &State| {
                s.origins
                    .iter()
                    .any(|o| matches!(o, Origin::Write { rebased: true, .. }))
            }),
            Property::sometimes(SOME_CONFLICT, |_: &VersionStore, s: &State| s.saw_conflict),
            Property::sometimes(SOME_SKIP, |_: &VersionStore, s: &State| s.saw_skip),
        ]
    }
}

fn isolated(s: &State) -> bool {
    s.last
        .as_ref()
        .is_none_or(|(target, moved)| moved.iter().all(|r| r == target))
}

fn history_intact(s: &State) -> bool {
    s.spec.commits.len() == s.frozen.len()
        && s.spec
            .commits
            .iter()
            .zip(&s.frozen)
            .enumerate()
            .all(|(i, (c, f))| c == f && c.parents.iter().all(|p| *p < i))
}

fn no_lost_ack(s: &State) -> bool {
    s.acked.iter().all(|&(branch, c, at)| {
        let moved_explicitly = s.reflog[at..]
            .iter()
            .any(|(r, m)| *r == RefId::Branch(branch) && matches!(m, Move::Assign | Move::Delete));
        moved_explicitly
            || s.spec
                .branches
                .get(&branch)
                .is_some_and(|h| s.spec.ancestors(*h).contains(&c))
    })
}

fn atomic(s: &State) -> bool {
    s.origins.iter().zip(&s.spec.commits).all(|(o, c)| match o {
        Origin::Write { changes, .. } => {
            c.map == apply_changes(&s.spec.commits[c.parents[0]].map, changes)
        }
        _ => true,
    })
}

fn expectations_hold(s: &State) -> bool {
    s.origins.iter().zip(&s.spec.commits).all(|(o, c)| match o {
        Origin::Write { expects, .. } => {
            let landed_on = &s.spec.commits[c.parents[0]].map;
            expects.iter().all(|(k, e)| e.holds(landed_on.get(k)))
        }
        _ => true,
    })
}

fn merges_safe(s: &State) -> bool {
    s.origins.iter().zip(&s.spec.commits).all(|(o, c)| {
        let Origin::Merge {
            source,
            target,
            bases,
            on_conflict,
        } = o
        else {
            return true;
        };
        let [base] = bases.as_slice() else {
            return true;
        };
        let at = |commit: usize, k: usize| s.spec.commits[commit].map.get(&k).copied();
        (0..KEYS.len()).all(|k| {
            let (b, src, tgt) = (at(*base, k), at(*source, k), at(*target, k));
            let want = if src == b || src == tgt {
                tgt
            } else if tgt == b {
                src
            } else {
                match on_conflict {
                    Resolution::Fail => return false,
                    Resolution::TakeSource => src,
                    Resolution::KeepTarget => tgt,
                }
            };
            c.map.get(&k).copied() == want
        })
    })
}
