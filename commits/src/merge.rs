//! Merge, cherry-pick and revert (DESIGN §2 "Merge", "Cherry-pick").
//!
//! A merge is three-way against the merge base: each key comes from the side that changed
//! it; a key both sides changed differently is resolved by the caller's per-key choice,
//! the `--on-conflict` default, or the `Resolver` hook, else reported as a conflict with
//! both sides' change kinds — never silently overwritten. With several merge bases, a key
//! whose outcome differs between them is an `AmbiguousBase` conflict. Every result goes
//! through the same landing validation as a commit. Expected heads are strict here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::backend::RefOperation;
use crate::content::{Content, ContentRef};
use crate::error::{ChangeKind, Conflict, ConflictKind, ConflictReason, Expect, WriteError};
use crate::hash::Hash;
use crate::key::ContentKey;
use crate::limits::COMMIT_CAS_RETRIES_MAX;
use crate::name::RefName;
use crate::object::{Commit, CommitMeta, Parents};
use crate::store::refs::Moved;
use crate::store::{
    CommitOutcome, KeyChange, Landed, Landing, Store, WriteCtx, check_expected, contention,
    lost_race,
};

/// Encoded objects waiting to be written with a landing.
type Objects = Vec<(Hash, Bytes)>;

/// Property naming the commit a cherry-pick copied.
pub const CHERRY_PICK_OF: &str = "floe.cherry-pick.of";
/// Property naming the commit a revert undid.
pub const REVERT_OF: &str = "floe.revert.of";
/// Property naming the source head of a merge.
pub const MERGE_SOURCE: &str = "floe.merge.source";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MergeStrategy {
    /// Fast-forward when possible, else a merge commit with two parents.
    #[default]
    Normal,
    /// One commit with one parent holding the source's changes.
    Squash,
    /// Only a fast-forward; anything else is refused.
    FastForwardOnly,
    /// Always a merge commit, even when a fast-forward is possible.
    NoFastForward,
}

/// What to do with a key both sides changed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resolution {
    #[default]
    Fail,
    TakeSource,
    KeepTarget,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOptions {
    pub strategy: MergeStrategy,
    pub dry_run: bool,
    /// The default for conflicting keys without a per-key resolution.
    pub on_conflict: Resolution,
    pub resolutions: BTreeMap<ContentKey, Resolution>,
    /// Message and properties of the merge commit; an empty message gets a default.
    pub meta: CommitMeta,
}

/// A resolver's answer for one conflicting key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    TakeSource,
    KeepTarget,
    /// A merged value (for example, Iceberg metadata combined by the catalog).
    Content(Content),
    /// The content's own merge refuses the key, and says why.
    Conflict(ConflictReason),
}

/// Decides keys both sides changed; the catalog may implement it per content kind.
///
/// With several merge bases it is asked once per base; a key is resolved only when every
/// base gives the same answer, so a resolver that writes what it resolves should name it
/// by what it was computed from. An error stops the merge (nothing lands).
pub trait Resolver: Send + Sync {
    fn resolve(
        &self,
        key: &ContentKey,
        base: Option<&ContentRef>,
        source: Option<&ContentRef>,
        target: Option<&ContentRef>,
    ) -> Result<Option<Resolved>, WriteError>;

    /// Properties the merge commit carries about what the resolver did for `changes` (the
    /// keys the merge changes on the target).
    fn commit_properties(&self, _changes: &[KeyChange]) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// The default resolver: every key both sides changed is a conflict.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConflictResolver;

impl Resolver for ConflictResolver {
    fn resolve(
        &self,
        _: &ContentKey,
        _: Option<&ContentRef>,
        _: Option<&ContentRef>,
        _: Option<&ContentRef>,
    ) -> Result<Option<Resolved>, WriteError> {
        Ok(None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeKind {
    FastForward,
    Merged,
    Squashed,
    /// The source is already in the target, or the merge would change nothing.
    NothingToMerge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    pub kind: MergeKind,
    pub dry_run: bool,
    /// The target's head before the merge.
    pub target_head: Hash,
    /// The target's head after it (the would-be head for a dry run).
    pub head: Hash,
    pub merge_bases: Vec<Hash>,
    /// The keys the merge changes on the target, with their values before and after.
    pub changes: Vec<KeyChange>,
}

/// One key's fate under one merge base.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// The key ends with this value.
    Value(Option<ContentRef>),
    Conflict(Conflict),
}

impl Store {
    /// Merges the commit `source` into the branch `target`.
    pub fn merge(
        &self,
        source: Hash,
        target: &RefName,
        expected_head: Option<Hash>,
        options: &MergeOptions,
        resolver: &dyn Resolver,
        ctx: &WriteCtx,
    ) -> Result<MergeOutcome, WriteError> {
        let span = tracing::debug_span!(
            "merge",
            r#ref = %target,
            source = %source,
            kind = tracing::field::Empty,
            head = tracing::field::Empty,
            durable_wait_ms = tracing::field::Empty,
        );
        let _in_merge = span.enter();
        let out = self.merge_unsettled(source, target, expected_head, options, resolver, ctx);
        let out = self.settled(target, out, |o| {
            (o.dry_run || o.kind == MergeKind::NothingToMerge).then_some(o.target_head)
        });
        match &out {
            Ok(o) => {
                span.record("kind", tracing::field::debug(o.kind));
                span.record("head", tracing::field::display(o.head));
                tracing::debug!("merged");
            }
            Err(e) => tracing::debug!(error = %e, "merge refused"),
        }
        out
    }

    /// `merge` up to its answer, computed from the ref's pending head (`merge`
    /// then waits until that head is durable).
    fn merge_unsettled(
        &self,
        source: Hash,
        target: &RefName,
        expected_head: Option<Hash>,
        options: &MergeOptions,
        resolver: &dyn Resolver,
        ctx: &WriteCtx,
    ) -> Result<MergeOutcome, WriteError> {
        options.meta.check()?;
        let source_commit = self.named_commit(&source)?;
        let sequencer = self.sequencer(target);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let record = self.pending_branch(target, ctx)?;
            let head = record.head;
            check_expected(target, expected_head, head)?;
            let nothing = |bases: Vec<Hash>| MergeOutcome {
                kind: MergeKind::NothingToMerge,
                dry_run: options.dry_run,
                target_head: head,
                head,
                merge_bases: bases,
                changes: Vec::new(),
            };
            // One walk answers both "already merged?" (the source is the base) and "from
            // where?".
            let bases = self.merge_bases(source, head)?;
            if bases == [source] {
                return Ok(nothing(bases));
            }
            let head_commit = self.commit_object(&head)?;
            let fast_forward = bases == [head];
            if fast_forward
                && matches!(
                    options.strategy,
                    MergeStrategy::Normal | MergeStrategy::FastForwardOnly
                )
            {
                let changes = self.all_changes(head_commit.key_index, source_commit.key_index)?;
                let outcome = MergeOutcome {
                    kind: MergeKind::FastForward,
                    dry_run: options.dry_run,
                    target_head: head,
                    head: source,
                    merge_bases: bases,
                    changes,
                };
                if options.dry_run {
                    return Ok(outcome);
                }
                let new = crate::backend::RefRecord {
                    head: source,
                    ..record.clone()
                };
                match self.move_ref(
                    target,
                    record.kind,
                    Some(head),
                    Some(new),
                    RefOperation::Merge,
                    ctx,
                    BTreeMap::new(),
                )? {
                    Moved::Applied { ticket, .. } => {
                        drop(guard);
                        self.acknowledge(ticket)?;
                        return Ok(outcome);
                    }
                    Moved::Mismatch { current } => {
                        lost_race(target, expected_head, current)?;
                        continue;
                    }
                }
            }
            if options.strategy == MergeStrategy::FastForwardOnly {
                return Err(WriteError::NotFastForward {
                    target: target.clone(),
                    source_head: source,
                });
            }
            let (changes, objects) = self.three_way(
                &bases,
                &source_commit,
                &head_commit,
                head,
                options,
                resolver,
            )?;
            if changes.is_empty() {
                return Ok(nothing(bases));
            }
            let squash = options.strategy == MergeStrategy::Squash;
            let parents: Parents = if squash {
                [head].into_iter().collect()
            } else {
                [head, source].into_iter().collect()
            };
            let mut meta = options.meta.clone();
            if meta.message.is_empty() {
                meta.message = format!(
                    "{} {source} into {target}",
                    if squash { "Squash" } else { "Merge" }
                );
            }
            meta.properties
                .insert(MERGE_SOURCE.to_owned(), source.to_string());
            meta.properties.extend(resolver.commit_properties(&changes));
            meta.check()?;
            let kind = if squash {
                MergeKind::Squashed
            } else {
                MergeKind::Merged
            };
            let plan = self.plan_landing(Landing {
                branch: target,
                record: &record,
                head_commit: &head_commit,
                changes: &changes,
                parents,
                meta: &meta,
                operation: RefOperation::Merge,
                objects,
                ctx,
            })?;
            // A dry run answers with the head the merge would make; only a real merge
            // applies the plan.
            let new_head = if options.dry_run {
                plan.head()
            } else {
                match self.apply_landing(plan)? {
                    Landed::Applied { head, ticket } => {
                        drop(guard);
                        self.acknowledge(ticket)?;
                        head
                    }
                    Landed::Moved(current) => {
                        lost_race(target, expected_head, current)?;
                        continue;
                    }
                }
            };
            return Ok(MergeOutcome {
                kind,
                dry_run: options.dry_run,
                target_head: head,
                head: new_head,
                merge_bases: bases,
                changes,
            });
        }
        Err(contention(target))
    }

    /// The changes a three-way merge makes to the target, and the content objects that
    /// resolutions created.
    fn three_way(
        &self,
        bases: &[Hash],
        source: &Commit,
        target: &Commit,
        head: Hash,
        options: &MergeOptions,
        resolver: &dyn Resolver,
    ) -> Result<(Vec<KeyChange>, Objects), WriteError> {
        let mut objects = Vec::new();
        let mut per_base: Vec<BTreeMap<ContentKey, Fate>> = Vec::new();
        if bases.is_empty() {
            // Every store shares the root commit, so only foreign commits land here.
            return Err(WriteError::Invalid(
                "the source and the target have no common ancestor".to_owned(),
            ));
        }
        // The target's current value of each key a base's diffs touch: its value after the
        // target's change, else the base's value (the target did not change it).
        let mut current: HashMap<ContentKey, Option<ContentRef>> = HashMap::new();
        for base in bases {
            let base_commit = self.commit_object(base)?;
            let sc = self.all_changes(base_commit.key_index, source.key_index)?;
            let tc = self.all_changes(base_commit.key_index, target.key_index)?;
            for c in &sc {
                current.entry(c.key.clone()).or_insert(c.before);
            }
            for c in &tc {
                current.insert(c.key.clone(), c.after);
            }
            per_base.push(self.fates(&sc, &tc, options, resolver, &mut objects)?);
        }
        let keys: BTreeSet<ContentKey> = per_base.iter().flat_map(|m| m.keys().cloned()).collect();
        let mut changes = Vec::new();
        let mut conflicts = Vec::new();
        for key in keys {
            let now = current.get(&key).copied().flatten();
            let outcomes: Vec<Fate> = per_base
                .iter()
                .map(|m| m.get(&key).cloned().unwrap_or(Fate::Value(now)))
                .collect();
            let first = &outcomes[0];
            if outcomes.iter().any(|o| o != first) {
                conflicts.push(
                    Conflict::new(key, ConflictKind::AmbiguousBase).with_actual(now.as_ref()),
                );
                continue;
            }
            match first {
                Fate::Conflict(c) => conflicts.push(c.clone()),
                Fate::Value(v) => {
                    if *v != now {
                        changes.push(KeyChange {
                            key,
                            before: now,
                            after: *v,
                        });
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(WriteError::Conflict { head, conflicts });
        }
        Ok((changes, objects))
    }

    /// Per key changed on either side since one base: its value after the merge, or a
    /// conflict. `sc` and `tc` are sorted by key.
    fn fates(
        &self,
        sc: &[KeyChange],
        tc: &[KeyChange],
        options: &MergeOptions,
        resolver: &dyn Resolver,
        objects: &mut Vec<(Hash, Bytes)>,
    ) -> Result<BTreeMap<ContentKey, Fate>, WriteError> {
        let mut fates = BTreeMap::new();
        let (mut i, mut j) = (0, 0);
        while i < sc.len() || j < tc.len() {
            let order = match (sc.get(i), tc.get(j)) {
                (Some(s), Some(t)) => s.key.cmp(&t.key),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    fates.insert(sc[i].key.clone(), Fate::Value(sc[i].after));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    fates.insert(tc[j].key.clone(), Fate::Value(tc[j].after));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (s, t) = (&sc[i], &tc[j]);
                    i += 1;
                    j += 1;
                    if s.after == t.after {
                        fates.insert(s.key.clone(), Fate::Value(s.after));
                        continue;
                    }
                    let explicit = options
                        .resolutions
                        .get(&s.key)
                        .copied()
                        .unwrap_or(options.on_conflict);
                    let resolved = match explicit {
                        Resolution::TakeSource => Some(Resolved::TakeSource),
                        Resolution::KeepTarget => Some(Resolved::KeepTarget),
                        Resolution::Fail => resolver.resolve(
                            &s.key,
                            s.before.as_ref(),
                            s.after.as_ref(),
                            t.after.as_ref(),
                        )?,
                    };
                    let both_changed = || Conflict {
                        source_change: ChangeKind::of(s.before.as_ref(), s.after.as_ref()),
                        target_change: ChangeKind::of(t.before.as_ref(), t.after.as_ref()),
                        ..Conflict::new(s.key.clone(), ConflictKind::BothChanged)
                            .with_actual(t.after.as_ref())
                    };
                    let fate = match resolved {
                        Some(Resolved::TakeSource) => Fate::Value(s.after),
                        Some(Resolved::KeepTarget) => Fate::Value(t.after),
                        Some(Resolved::Content(content)) => {
                            let (hash, bytes) = content.encode_checked()?;
                            objects.push((hash.0, Bytes::from(bytes)));
                            Fate::Value(Some(ContentRef {
                                hash,
                                id: content.id,
                                kind: content.kind(),
                            }))
                        }
                        Some(Resolved::Conflict(reason)) => Fate::Conflict(Conflict {
                            reason: Some(Box::new(reason)),
                            ..both_changed()
                        }),
                        None => Fate::Conflict(both_changed()),
                    };
                    fates.insert(s.key.clone(), fate);
                }
            }
        }
        Ok(fates)
    }

    /// Applies the change a commit made (against its first parent) onto a branch.
    pub fn cherry_pick(
        &self,
        commit: Hash,
        onto: &RefName,
        expected_head: Option<Hash>,
        meta: Option<CommitMeta>,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        self.replay(commit, onto, expected_head, meta, ctx, false)
    }

    /// Undoes the change a commit made (against its first parent) on a branch.
    pub fn revert(
        &self,
        commit: Hash,
        on: &RefName,
        expected_head: Option<Hash>,
        meta: Option<CommitMeta>,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        self.replay(commit, on, expected_head, meta, ctx, true)
    }

    fn replay(
        &self,
        commit: Hash,
        branch: &RefName,
        expected_head: Option<Hash>,
        meta: Option<CommitMeta>,
        ctx: &WriteCtx,
        invert: bool,
    ) -> Result<CommitOutcome, WriteError> {
        let out = self.replay_unsettled(commit, branch, expected_head, meta, ctx, invert);
        self.settled(branch, out, |o| (!o.created).then_some(o.commit))
    }

    /// `replay` up to its answer, computed from the ref's pending head (`replay`
    /// then waits until that head is durable).
    fn replay_unsettled(
        &self,
        commit: Hash,
        branch: &RefName,
        expected_head: Option<Hash>,
        meta: Option<CommitMeta>,
        ctx: &WriteCtx,
        invert: bool,
    ) -> Result<CommitOutcome, WriteError> {
        let picked = self.named_commit(&commit)?;
        let base = match picked.first_parent() {
            Some(p) => self.commit_object(&p)?.key_index,
            None => None,
        };
        let mut delta = self.all_changes(base, picked.key_index)?;
        if invert {
            for c in &mut delta {
                std::mem::swap(&mut c.before, &mut c.after);
            }
        }
        let mut meta = meta.unwrap_or_else(|| {
            let message = if invert {
                format!("Revert \"{}\"", picked.message)
            } else {
                picked.message.clone()
            };
            CommitMeta {
                author: if invert {
                    String::new()
                } else {
                    picked.author.clone()
                },
                committer: String::new(),
                message,
                authored_at_ms: if invert {
                    self.now_ms()
                } else {
                    picked.authored_at_ms
                },
                properties: BTreeMap::new(),
            }
        });
        meta.properties.insert(
            (if invert { REVERT_OF } else { CHERRY_PICK_OF }).to_owned(),
            commit.to_string(),
        );
        meta.check()?;
        let operation = if invert {
            RefOperation::Revert
        } else {
            RefOperation::CherryPick
        };
        let sequencer = self.sequencer(branch);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let record = self.pending_branch(branch, ctx)?;
            let head = record.head;
            check_expected(branch, expected_head, head)?;
            let head_commit = self.commit_object(&head)?;
            let current = self.refs_in(&head_commit, delta.iter().map(|c| &c.key))?;
            let mut changes = Vec::new();
            let mut conflicts = Vec::new();
            for c in &delta {
                let now = current.get(&c.key).copied().flatten();
                if now == c.before {
                    changes.push(KeyChange {
                        key: c.key.clone(),
                        before: now,
                        after: c.after,
                    });
                } else if now != c.after {
                    let expected = match c.before {
                        Some(b) => Expect::Is(b.hash),
                        None => Expect::Absent,
                    };
                    conflicts.push(Conflict {
                        expected: Some(expected),
                        ..Conflict::new(c.key.clone(), ConflictKind::Diverged)
                            .with_actual(now.as_ref())
                    });
                }
            }
            if !conflicts.is_empty() {
                return Err(WriteError::Conflict { head, conflicts });
            }
            if changes.is_empty() {
                return Ok(CommitOutcome {
                    commit: head,
                    parent: head,
                    rebased: false,
                    created: false,
                });
            }
            let landing = Landing {
                branch,
                record: &record,
                head_commit: &head_commit,
                changes: &changes,
                parents: [head].into_iter().collect(),
                meta: &meta,
                operation,
                objects: Vec::new(),
                ctx,
            };
            match self.land(landing)? {
                Landed::Applied { head: h, ticket } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(CommitOutcome {
                        commit: h,
                        parent: head,
                        rebased: false,
                        created: true,
                    });
                }
                Landed::Moved(current) => lost_race(branch, expected_head, current)?,
            }
        }
        Err(contention(branch))
    }
}
