//! The replay driver: runs operations against the real `Store` and the specification
//! side by side and compares them after every step — outcomes exactly (error class;
//! conflict keys, kinds, expected and actual values, change kinds; merge kind, bases and
//! changes), then refs, every branch's map (entries, contents, the id index), history
//! integrity, and that a refused or no-op write persists nothing (objects, reflog, refs).
//! At the end of a history: every commit's map, equal maps having equal index roots, and
//! the first-parent log of every branch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::AddAssign;
use std::sync::Arc;

use bytes::Bytes;
use floe_commits::{
    Backend, Commit, CommitMeta, Conflict, ConflictResolver, ContentId, ContentKey, ContentRef,
    Hash, KeyChange, LogFilter, ManualClock, MergeKind, MergeOptions, RefKind, RefName, RefRecord,
    Resolver, Store, WriteCtx, WriteError,
};

use crate::spec::*;

// ----- the driver -------------------------------------------------------------------------

/// How a step ended, for the side-effect checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The step did not reach the store (its source branch does not exist).
    Skipped,
    /// Refused, or applied with nothing written: no object, no reflog entry, no ref move.
    Unchanged,
    /// One ref moved (one reflog entry).
    Moved,
}

#[allow(missing_debug_implementations)]
pub struct World {
    pub backend: Arc<dyn Backend>,
    pub clock: Arc<ManualClock>,
    pub store: Store,
    pub oracle: Oracle,
    pub keys: Vec<ContentKey>,
    pub names: Vec<RefName>,
    /// Oracle commit index -> store hash, and back.
    pub hashes: Vec<Hash>,
    pub index: HashMap<Hash, usize>,
    /// Each commit's encoding and decoded form when first seen: they never change.
    pub recorded: Vec<(Bytes, Commit)>,
    pub step_no: i64,
    pub trace: Vec<String>,
    /// How many steps ended how, for the coverage check.
    pub stats: BTreeMap<String, usize>,
}

pub type Check = Result<(), String>;

pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(what()) }
}

pub fn ctx() -> WriteCtx {
    WriteCtx::principal("model")
}

impl World {
    /// Reads an object straight from the backend, bypassing the store's caches.
    fn raw_object(&self, hash: &Hash) -> Option<Bytes> {
        self.backend.get_object(hash).expect("the backend reads")
    }

    fn object_count(&self) -> Result<usize, String> {
        let mut count = 0;
        let mut from = Hash::from_bytes([0; 32]);
        loop {
            let page = self
                .backend
                .scan_objects(&from, 1024)
                .map_err(|e| e.message)?;
            let skip = usize::from(count > 0);
            count += page.len().saturating_sub(skip);
            match page.last() {
                Some(last) if page.len() > skip => from = *last,
                _ => return Ok(count),
            }
        }
    }

    /// A world over a fresh, empty backend.
    pub fn new(backend: Arc<dyn Backend>) -> World {
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
            step_no: 0,
            trace: Vec::new(),
            stats: BTreeMap::new(),
        };
        world.register(root, &[], 1).expect("the root commit");
        // Every history starts with namespaces `a` and `b` on `main`, and every branch there.
        let (seeded, seed) = Oracle::seeded();
        let seeded_state = Box::new(seeded);
        world.oracle.next_id = seeded_state.next_id;
        world.run_commit(0, None, seed).expect("the seed commit");
        let seeded = world.hashes[1];
        for b in 1..BRANCHES.len() {
            world
                .store
                .create_ref(&world.names[b], RefKind::Branch, seeded, &ctx())
                .expect("create a branch");
            world.oracle.branches.insert(b, 1);
        }
        assert_eq!(
            world.oracle, *seeded_state,
            "the world starts where the specification does"
        );
        world.stats.clear();
        world
    }

    pub fn key_index(&self, key: &ContentKey) -> Result<usize, String> {
        self.keys
            .iter()
            .position(|k| k == key)
            .ok_or_else(|| format!("the store names key {key}, which no operation wrote"))
    }

    pub fn commit_index(&self, hash: &Hash) -> Result<usize, String> {
        self.index.get(hash).copied().ok_or_else(|| {
            format!("the store names commit {hash:?}, which the oracle does not know")
        })
    }

    pub fn meta(&self) -> CommitMeta {
        CommitMeta::new("model", format!("step {}", self.step_no), self.step_no)
    }

    pub fn hash_of(&self, c: Option<usize>) -> Option<Hash> {
        c.map(|c| self.hashes[c])
    }

    /// Records a new store commit and checks its parents and generation.
    pub fn register(&mut self, hash: Hash, parents: &[usize], generation: u64) -> Check {
        ensure(!self.index.contains_key(&hash), || {
            format!("the store made commit {hash:?} twice")
        })?;
        let bytes = self
            .raw_object(&hash)
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

    pub fn apply(&mut self, effect: Effect, new_commit: Option<Hash>) -> Check {
        let first = match &effect {
            Effect::NewCommit { parents, .. } => Some(self.oracle.commits[parents[0]].map.clone()),
            _ => None,
        };
        let Some(c) = self.oracle.apply(effect) else {
            return Ok(());
        };
        let hash = new_commit.ok_or("a new commit without a hash")?;
        let (parents, generation) = {
            let o = &self.oracle.commits[c];
            (o.parents.clone(), o.generation)
        };
        self.register(hash, &parents, generation)?;
        // What the commit changed against its first parent (what cherry-pick uses).
        let page = self
            .store
            .commit_changes(hash, None, 100)
            .map_err(|e| e.to_string())?;
        let map = self.oracle.commits[c].map.clone();
        self.same_changes(
            &page.items,
            &diff(&first.unwrap_or_default(), &map),
            "commit_changes",
        )
    }

    fn run_create_tag(&mut self, tag: usize, at: usize) -> Result<Ended, String> {
        let want = self.oracle.create_tag(tag, at);
        self.count("tag create", &want, effect_label);
        self.trace.push(format!(
            "{}: tag {} at {at} -> oracle {want:?}",
            self.step_no, TAGS[tag]
        ));
        let name = RefName::parse(TAGS[tag]).map_err(|e| e.to_string())?;
        let got = self
            .store
            .create_ref(&name, RefKind::Tag, self.hashes[at], &ctx());
        self.finish_move(want, got.map(Some), Some(at), RefKind::Tag, None)
    }

    fn run_delete_tag(&mut self, tag: usize, expected: Option<usize>) -> Result<Ended, String> {
        let want = self.oracle.delete_tag(tag, expected);
        self.count("tag delete", &want, effect_label);
        self.trace.push(format!(
            "{}: delete tag {} expecting {expected:?} -> oracle {want:?}",
            self.step_no, TAGS[tag]
        ));
        let name = RefName::parse(TAGS[tag]).map_err(|e| e.to_string())?;
        let got = self.store.delete_ref(&name, self.hash_of(expected), &ctx());
        let head = self.oracle.tags.get(&tag).copied();
        self.finish_move(want, got.map(|()| None), None, RefKind::Tag, head)
    }

    /// Compares a ref move (create, assign, delete) with the oracle's verdict: applied by
    /// both, the store's ref where the oracle puts it (`at`; `None`: deleted), or refused
    /// by both alike. `head` is the ref's commit before the move, for the refusal.
    fn finish_move(
        &mut self,
        want: Result<Effect, Reject>,
        got: Result<Option<RefRecord>, WriteError>,
        at: Option<usize>,
        kind: RefKind,
        head: Option<usize>,
    ) -> Result<Ended, String> {
        match (want, got) {
            (Ok(effect), Ok(record)) => {
                let left = record.as_ref().map(|r| (r.head, r.kind));
                ensure(left == at.map(|c| (self.hashes[c], kind)), || {
                    format!("the store left the ref at {record:?}, the oracle at {at:?}")
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

    pub fn same_changes(&self, got: &[KeyChange], want: &[Change], what: &str) -> Check {
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

    pub fn check_reject(&self, want: &Reject, got: &WriteError, head: Option<usize>) -> Check {
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

    /// Runs one commit against both, given resolved ops and the expected head.
    pub fn run_commit(
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

    pub fn step(&mut self, s: &Step) -> Result<Ended, String> {
        match self.oracle.resolve(s) {
            None => Ok(Ended::Skipped),
            Some(action) => self.run(action),
        }
    }

    /// Runs one resolved action against both the specification and the store.
    pub fn run(&mut self, action: Action) -> Result<Ended, String> {
        match action {
            Action::Commit {
                branch,
                expected,
                ops,
            } => self.run_commit(branch, expected, ops),
            Action::Create { branch: b, at } => {
                let want = self.oracle.create(b, at);
                self.count("create", &want, effect_label);
                self.trace.push(format!(
                    "{}: create {} at {at} -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let got =
                    self.store
                        .create_ref(&self.names[b], RefKind::Branch, self.hashes[at], &ctx());
                self.finish_move(want, got.map(Some), Some(at), RefKind::Branch, None)
            }
            Action::Assign {
                branch: b,
                to,
                expected,
            } => {
                let head = self.oracle.branches.get(&b).copied();
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
                self.finish_move(want, got.map(Some), Some(to), RefKind::Branch, head)
            }
            Action::Delete {
                branch: b,
                expected,
            } => {
                let head = self.oracle.branches.get(&b).copied();
                let want = self.oracle.delete(b, expected);
                self.count("delete", &want, effect_label);
                self.trace.push(format!(
                    "{}: delete {} expecting {expected:?} (now {head:?}) -> oracle {want:?}",
                    self.step_no, BRANCHES[b]
                ));
                let got = self
                    .store
                    .delete_ref(&self.names[b], self.hash_of(expected), &ctx());
                self.finish_move(want, got.map(|()| None), None, RefKind::Branch, head)
            }
            Action::Merge {
                source,
                branch: b,
                strategy,
                resolving,
                dry_run,
                expected,
            } => {
                let head = self.oracle.branches.get(&b).copied();
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
                                ensure(self.raw_object(&out.head).is_none(), || {
                                    "a dry-run merge stored its commit".to_owned()
                                })?;
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
            Action::Replay {
                picked,
                branch: b,
                revert,
                expected,
            } => {
                let head = self.oracle.branches.get(&b).copied();
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
            Action::CreateTag { tag, at } => self.run_create_tag(tag, at),
            Action::DeleteTag { tag, expected } => self.run_delete_tag(tag, expected),
        }
    }

    /// The store's merge bases and ancestry agree with the brute-force oracle.
    pub fn check_ancestry(&self, a: usize, b: usize) -> Check {
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
    pub fn check_map(&self, c: usize) -> Check {
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
        for id in self.oracle.ids() {
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
    pub fn check_all(&self) -> Check {
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
            .chain(
                self.oracle
                    .tags
                    .iter()
                    .map(|(t, c)| (TAGS[*t].to_owned(), self.hashes[*c])),
            )
            .collect();
        ensure(got == want, || {
            format!("refs: the store {got:?}, the oracle {want:?}")
        })?;
        for (name, record) in &refs.items {
            let tag = TAGS.contains(&name.as_str());
            let kind = if tag { RefKind::Tag } else { RefKind::Branch };
            ensure(record.kind == kind, || {
                format!("{name} is a {:?}", record.kind)
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
            ensure(self.raw_object(&h).as_ref() == Some(bytes), || {
                format!("the stored bytes of commit {c} changed")
            })?;
            let now = self.store.commit_object(&h).map_err(|e| e.to_string())?;
            ensure(*now == *commit, || {
                format!("commit_object of commit {c} changed")
            })?;
        }
        Ok(())
    }

    /// Once per history: every commit's map, history independence of the index roots,
    /// and the first-parent log of every branch.
    pub fn check_end(&self) -> Check {
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

    pub fn count<T>(&mut self, op: &str, want: &Result<T, Reject>, ok: impl FnOnce(&T) -> String) {
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

    pub fn side_effects(&self, ended: Ended, before: (usize, Option<u64>)) -> Check {
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
    pub fn footprint(&self) -> Result<(usize, Option<u64>), String> {
        let reflog = self
            .store
            .reflog(None, None, 1)
            .map_err(|e| e.to_string())?;
        Ok((self.object_count()?, reflog.items.first().map(|e| e.seq)))
    }
}

pub fn effect_label(e: &Effect) -> String {
    match e {
        Effect::Nothing => "nothing",
        Effect::Move { .. } => "moved",
        Effect::NewCommit { parents, .. } if parents.len() == 2 => "merge commit",
        Effect::NewCommit { .. } => "new commit",
        Effect::Create { .. } => "created",
        Effect::Delete { .. } | Effect::DeleteTag { .. } => "deleted",
        Effect::CreateTag { .. } => "created",
    }
    .to_owned()
}

/// Runs a history of generated steps on a fresh backend, checking after every step.
pub fn run(
    backend: Arc<dyn Backend>,
    steps: &[Step],
    stats: &mut BTreeMap<String, usize>,
) -> Check {
    let mut w = World::new(backend);
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

/// Replays a path of the version-store model against the real store: each action runs on
/// the model and, resolved to the specification's action, on the store through a `World`;
/// after every step the world's checks run and the model's specification state must equal
/// the world's.
pub fn replay_model_path(
    backend: Arc<dyn Backend>,
    model: &crate::version_store::VersionStore,
    path: &[crate::version_store::ModelAction],
) -> Check {
    use stateright::Model;
    let mut w = World::new(backend);
    let mut state = model.init_states().remove(0);
    ensure(state.spec == w.oracle, || {
        "the model and the world start apart".to_owned()
    })?;
    for (i, a) in path.iter().enumerate() {
        w.step_no = i as i64 + 1;
        w.clock.advance(1);
        let context = |w: &World, e: String| {
            format!(
                "step {} ({a:?}) failed: {e}\ntrace:\n{}",
                i + 1,
                w.trace.join("\n")
            )
        };
        let action = model.action(&state, a);
        if let Some(next) = model.next_state(&state, a.clone()) {
            state = next;
        }
        if let Some(action) = action {
            let before = w.footprint().map_err(|e| context(&w, e))?;
            let ended = w.run(action).map_err(|e| context(&w, e))?;
            w.side_effects(ended, before).map_err(|e| context(&w, e))?;
            w.check_all().map_err(|e| context(&w, e))?;
        }
        ensure(state.spec == w.oracle, || {
            context(
                &w,
                format!(
                    "the model's specification state {:?} differs from the world's {:?}",
                    state.spec, w.oracle
                ),
            )
        })?;
    }
    w.check_end()
        .map_err(|e| format!("final check failed: {e}\ntrace:\n{}", w.trace.join("\n")))
}
