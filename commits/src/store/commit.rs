//! The commit rule (DESIGN §2): `commit` evaluates every operation's expectation at the
//! head it lands on and rebases when it loses a race. Every landing (commit, merge,
//! cherry-pick, revert) goes through two halves here: `plan_landing` validates it and
//! computes the commit it makes, writing nothing; `apply_landing` writes that commit's
//! objects and moves the branch. A dry run calls only the first half, so no applied
//! answer can come from a dry run and no dry-run answer from a write.

use super::refs::{Moved, RefChange, check_principal};
use super::*;

/// A landing: what a commit, merge, cherry-pick or revert asks of one branch.
pub(crate) struct Landing<'a> {
    pub branch: &'a RefName,
    /// The branch's record at the head the landing builds on.
    pub record: &'a RefRecord,
    /// The commit at that head.
    pub head_commit: &'a Commit,
    /// The keys the landing changes, sorted by key, with their values at the head.
    pub changes: &'a [KeyChange],
    pub parents: Parents,
    pub meta: &'a CommitMeta,
    pub operation: RefOperation,
    /// New content objects the changes refer to, written with the landing.
    pub objects: Vec<(Hash, Bytes)>,
    pub ctx: &'a WriteCtx,
}

/// A validated landing, computed and not written: the commit it makes and every new
/// object that commit needs. A dry run reads its head and drops it; `apply_landing`
/// writes it.
pub(crate) struct Plan<'a> {
    landing: Landing<'a>,
    commit: Commit,
    hash: Hash,
    bytes: Bytes,
    nodes: NewNodes,
}

impl Plan<'_> {
    /// The commit the landing makes: the branch's head once it is applied.
    pub(crate) fn head(&self) -> Hash {
        self.hash
    }
}

/// What applying a landing did.
pub(crate) enum Landed {
    /// The ref moved (pending durability: acknowledge the ticket before reporting it).
    Applied { head: Hash, ticket: u64 },
    /// The ref moved under us; nothing was written to it.
    Moved(Option<RefRecord>),
}

impl Store {
    /// Commits `ops` to `branch`. Every expectation is checked at the head the commit
    /// lands on; a stale `expected_head` only means the store re-evaluates at the current
    /// head (it never walks the commits in between).
    pub fn commit(
        &self,
        branch: &RefName,
        expected_head: Option<Hash>,
        ops: Vec<Op>,
        meta: CommitMeta,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        // The commit's span: its ref and size now; its head, whether it created a commit,
        // and how long it waited for durability (`acknowledge`) when it ends.
        let span = tracing::debug_span!(
            "commit",
            r#ref = %branch,
            ops = ops.len(),
            head = tracing::field::Empty,
            created = tracing::field::Empty,
            durable_wait_ms = tracing::field::Empty,
        );
        let _in_commit = span.enter();
        let out = self.commit_unsettled(branch, expected_head, ops, meta, ctx);
        let out = self.settled(branch, out, |o| (!o.created).then_some(o.commit));
        match &out {
            Ok(o) => {
                span.record("head", tracing::field::display(o.commit));
                span.record("created", o.created);
                tracing::debug!("committed");
            }
            Err(e) => tracing::debug!(error = %e, "commit refused"),
        }
        out
    }

    /// `commit` up to its answer, computed from the ref's pending head (`commit`
    /// then waits until that head is durable).
    fn commit_unsettled(
        &self,
        branch: &RefName,
        expected_head: Option<Hash>,
        ops: Vec<Op>,
        meta: CommitMeta,
        ctx: &WriteCtx,
    ) -> Result<CommitOutcome, WriteError> {
        meta.check()?;
        check_principal(&ctx.principal)?;
        if ops.is_empty() {
            return Err(WriteError::Invalid(
                "a commit needs at least one operation".to_owned(),
            ));
        }
        if ops.len() > OPS_PER_COMMIT_MAX {
            return Err(WriteError::Invalid(format!(
                "a commit has at most {OPS_PER_COMMIT_MAX} operations (OPS_PER_COMMIT_MAX), got {}",
                ops.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut objects = Vec::new();
        let mut puts: HashMap<ContentKey, ContentRef> = HashMap::new();
        for op in &ops {
            if !matches!(op, Op::CheckPrefixEmpty { .. }) && !seen.insert(op.key().clone()) {
                return Err(WriteError::Invalid(format!(
                    "key {} appears in more than one operation",
                    op.key()
                )));
            }
            match op {
                Op::Put { key, content, .. } => {
                    let (hash, bytes) = content.encode_checked()?;
                    objects.push((hash.0, Bytes::from(bytes)));
                    puts.insert(
                        key.clone(),
                        ContentRef {
                            hash,
                            id: content.id,
                            kind: content.kind(),
                        },
                    );
                }
                Op::Delete {
                    key,
                    expect: Expect::Absent,
                } => {
                    return Err(WriteError::Invalid(format!(
                        "deleting {key} must expect it present (Present or Is), not Absent"
                    )));
                }
                _ => {}
            }
        }
        if let Some(e) = expected_head {
            self.named_commit(&e)?;
        }
        let sequencer = self.sequencer(branch);
        for _ in 0..COMMIT_CAS_RETRIES_MAX {
            let guard = sequencer.lock();
            let record = self.pending_branch(branch, ctx)?;
            let head = record.head;
            let head_commit = self.commit_object(&head)?;
            let keys: Vec<&ContentKey> = ops
                .iter()
                .filter(|o| !matches!(o, Op::CheckPrefixEmpty { .. }))
                .map(Op::key)
                .collect();
            let actual = self.refs_in(&head_commit, keys.iter().copied())?;
            let mut conflicts = Vec::new();
            let mut changes = Vec::new();
            for op in &ops {
                let (key, expect) = match op {
                    Op::Put { key, expect, .. }
                    | Op::Delete { key, expect }
                    | Op::Check { key, expect } => (key, expect),
                    Op::CheckPrefixEmpty { .. } => continue,
                };
                let now = actual.get(key).and_then(Option::as_ref);
                if !expect.holds(now) {
                    conflicts.push(Conflict {
                        expected: Some(*expect),
                        ..Conflict::new(key.clone(), ConflictKind::Expectation).with_actual(now)
                    });
                    continue;
                }
                match op {
                    Op::Put { .. } => {
                        let after = puts[key];
                        if now.is_none_or(|n| n.hash != after.hash || n.id != after.id) {
                            changes.push(KeyChange {
                                key: key.clone(),
                                before: now.copied(),
                                after: Some(after),
                            });
                        }
                    }
                    Op::Delete { .. } => changes.push(KeyChange {
                        key: key.clone(),
                        before: now.copied(),
                        after: None,
                    }),
                    _ => {}
                }
            }
            changes.sort_by(|a, b| a.key.cmp(&b.key));
            for op in &ops {
                if let Op::CheckPrefixEmpty { prefix } = op
                    && let Some(other) =
                        validate::first_under(self, &head_commit, prefix, &changes)?
                {
                    conflicts.push(Conflict {
                        other_key: Some(other),
                        ..Conflict::new(prefix.clone(), ConflictKind::PrefixNotEmpty)
                    });
                }
            }
            if !conflicts.is_empty() {
                return Err(WriteError::Conflict { head, conflicts });
            }
            let rebased = expected_head.is_some_and(|e| e != head);
            if changes.is_empty() {
                return Ok(CommitOutcome {
                    commit: head,
                    parent: head,
                    rebased,
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
                operation: RefOperation::Commit,
                objects: objects.clone(),
                ctx,
            };
            match self.land(landing)? {
                Landed::Applied {
                    head: commit,
                    ticket,
                } => {
                    drop(guard);
                    self.acknowledge(ticket)?;
                    return Ok(CommitOutcome {
                        commit,
                        parent: head,
                        rebased,
                        created: true,
                    });
                }
                Landed::Moved(_) => continue,
            }
        }
        Err(contention(branch))
    }
}

impl Store {
    /// Validates a landing at its head and computes its commit and new index nodes. Writes
    /// nothing: a rejection here, and a dry run that stops here, leave storage as it was.
    pub(crate) fn plan_landing<'a>(&self, landing: Landing<'a>) -> Result<Plan<'a>, WriteError> {
        let head = landing.record.head;
        let head_commit = landing.head_commit;
        let id_edits =
            validate::landing(self, head_commit, landing.changes).map_err(|f| match f {
                validate::Failure::Conflicts(conflicts) => WriteError::Conflict { head, conflicts },
                validate::Failure::Write(e) => e,
            })?;
        let key_edits: Vec<tree::Edit> = landing
            .changes
            .iter()
            .map(|c| {
                (
                    c.key.as_bytes().clone(),
                    c.after.map(|a| Bytes::from(a.to_bytes())),
                )
            })
            .collect();
        let mut nodes = NewNodes::default();
        let key_index = tree::apply(self, head_commit.key_index, key_edits, &mut nodes)?;
        let id_index = tree::apply(self, head_commit.id_index, id_edits, &mut nodes)?;
        let mut generation = 0;
        for p in &landing.parents {
            generation = generation.max(self.graph_entry(p)?.generation);
        }
        let (meta, principal) = (landing.meta, &landing.ctx.principal);
        let commit = Commit {
            parents: landing.parents.clone(),
            key_index,
            id_index,
            // An empty author is the principal writing; an empty committer, the author.
            author: if meta.author.is_empty() {
                principal.clone()
            } else {
                meta.author.clone()
            },
            committer: match (meta.committer.is_empty(), meta.author.is_empty()) {
                (false, _) => meta.committer.clone(),
                (true, false) => meta.author.clone(),
                (true, true) => principal.clone(),
            },
            message: meta.message.clone(),
            authored_at_ms: meta.authored_at_ms,
            properties: meta.properties.clone(),
            generation: generation + 1,
        };
        let bytes = Bytes::from(commit.encode());
        let hash = Hash::of(&bytes);
        Ok(Plan {
            landing,
            commit,
            hash,
            bytes,
            nodes,
        })
    }

    /// Writes a planned landing's objects and moves its branch from the head it was
    /// planned at to its commit, by compare-and-swap.
    pub(crate) fn apply_landing(&self, plan: Plan<'_>) -> Result<Landed, WriteError> {
        let Plan {
            landing,
            commit,
            hash,
            bytes,
            nodes,
        } = plan;
        let mut objects = landing.objects;
        objects.extend(nodes.written.iter().cloned());
        objects.push((hash, bytes));
        // Written with the move where the backend can (one atomic write), else first.
        // Nothing refers to these objects until the ref moves: a failure writing them
        // first changed nothing a reader can see, so it is a plain rejection, never
        // "outcome unknown". The nodes are cached once the move returned (a failed write
        // with the move may have written none of them).
        let objects = match self.backend.writes_objects_with_moves() {
            true => objects,
            false => {
                self.backend.put_objects(&objects).map_err(not_applied)?;
                Vec::new()
            }
        };
        let record = landing.record;
        let new_record = RefRecord {
            head: hash,
            ..record.clone()
        };
        let change = RefChange {
            name: landing.branch,
            kind: RefKind::Branch,
            expected: Some(record.head),
            new: Some(new_record),
            operation: landing.operation,
        };
        let moved = self.move_ref_writing(change, landing.ctx, BTreeMap::new(), objects)?;
        self.nodes
            .insert_many(nodes.nodes().map(|(h, n)| (*h, n.clone())));
        match moved {
            Moved::Applied { ticket, .. } => {
                self.remember_commit(hash, Arc::new(commit));
                Ok(Landed::Applied { head: hash, ticket })
            }
            Moved::Mismatch { current } => Ok(Landed::Moved(current)),
        }
    }

    /// Plans a landing and applies it: every landing that is not a dry run.
    pub(crate) fn land(&self, landing: Landing<'_>) -> Result<Landed, WriteError> {
        let plan = self.plan_landing(landing)?;
        self.apply_landing(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::content::ContentId;
    use crate::memory::MemoryBackend;

    struct Fx {
        backend: Arc<MemoryBackend>,
        store: Store,
        main: RefName,
        who: WriteCtx,
    }

    fn fx() -> Fx {
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone(), Arc::new(ManualClock::new(0))).unwrap();
        Fx {
            backend,
            store,
            main: RefName::parse("main").unwrap(),
            who: WriteCtx::principal("alice"),
        }
    }

    fn key(path: &str) -> ContentKey {
        ContentKey::new(path.split('.')).unwrap()
    }

    /// The change that adds a namespace at `path`, and its content object.
    fn add_namespace(path: &str, id: u128) -> (KeyChange, (Hash, Bytes)) {
        let content = Content::namespace(ContentId::from_u128(id), BTreeMap::new());
        let (hash, bytes) = content.encode_checked().unwrap();
        let change = KeyChange {
            key: key(path),
            before: None,
            after: Some(content.content_ref()),
        };
        (change, (hash.0, Bytes::from(bytes)))
    }

    #[test]
    fn a_plan_writes_nothing_and_its_application_lands_exactly_it() {
        let fx = fx();
        let record = fx.store.pending_ref(&fx.main).unwrap();
        let head_commit = fx.store.commit_object(&record.head).unwrap();
        let (change, object) = add_namespace("sales", 1);
        let changes = [change];
        let meta = CommitMeta::new("", "plan", 5);
        let landing = || Landing {
            branch: &fx.main,
            record: &record,
            head_commit: &head_commit,
            changes: &changes,
            parents: [record.head].into_iter().collect(),
            meta: &meta,
            operation: RefOperation::Commit,
            objects: vec![object.clone()],
            ctx: &fx.who,
        };
        let objects = fx.backend.object_count();
        let plan = fx.store.plan_landing(landing()).unwrap();
        let planned = plan.head();
        drop(plan);
        assert_eq!(fx.backend.object_count(), objects, "a plan writes nothing");
        assert_eq!(fx.store.get_ref(&fx.main).unwrap().head, record.head);
        // The same landing planned again makes the same commit: a dry run's head is the
        // head the write makes.
        let plan = fx.store.plan_landing(landing()).unwrap();
        assert_eq!(plan.head(), planned);
        let Landed::Applied { head, ticket } = fx.store.apply_landing(plan).unwrap() else {
            panic!("nothing else moved main");
        };
        fx.store.acknowledge(ticket).unwrap();
        assert_eq!(head, planned);
        assert_eq!(fx.store.get_ref(&fx.main).unwrap().head, planned);
        // The content object, one node per index and the commit.
        assert_eq!(fx.backend.object_count(), objects + 4);
        let commit = fx.store.commit_object(&planned).unwrap();
        assert_eq!(
            (commit.author.as_str(), commit.committer.as_str()),
            ("alice", "alice"),
            "an empty author is the principal writing"
        );
        assert_eq!(commit.parents.as_slice(), [record.head]);
        assert_eq!(commit.generation, head_commit.generation + 1);
        assert!(
            fx.store
                .content_ref_at(planned, &key("sales"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_plan_is_validated_before_anything_is_computed_past_it() {
        let fx = fx();
        let record = fx.store.pending_ref(&fx.main).unwrap();
        let head_commit = fx.store.commit_object(&record.head).unwrap();
        let (change, object) = add_namespace("sales.eu", 1);
        let changes = [change];
        let meta = CommitMeta::new("alice", "orphan", 5);
        let objects = fx.backend.object_count();
        let refused = fx.store.plan_landing(Landing {
            branch: &fx.main,
            record: &record,
            head_commit: &head_commit,
            changes: &changes,
            parents: [record.head].into_iter().collect(),
            meta: &meta,
            operation: RefOperation::Commit,
            objects: vec![object],
            ctx: &fx.who,
        });
        match refused.map(|p| p.head()) {
            Err(WriteError::Conflict { head, conflicts }) => {
                assert_eq!(head, record.head);
                assert_eq!(conflicts[0].kind, ConflictKind::NamespaceMissing);
                assert_eq!(conflicts[0].other_key, Some(key("sales")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fx.backend.object_count(), objects);
    }

    #[test]
    fn a_plan_applied_after_the_branch_moved_does_not_move_it() {
        let fx = fx();
        let record = fx.store.pending_ref(&fx.main).unwrap();
        let head_commit = fx.store.commit_object(&record.head).unwrap();
        let (change, object) = add_namespace("sales", 1);
        let changes = [change];
        let meta = CommitMeta::new("alice", "late", 5);
        let plan = fx
            .store
            .plan_landing(Landing {
                branch: &fx.main,
                record: &record,
                head_commit: &head_commit,
                changes: &changes,
                parents: [record.head].into_iter().collect(),
                meta: &meta,
                operation: RefOperation::Commit,
                objects: vec![object],
                ctx: &fx.who,
            })
            .unwrap();
        // Another writer lands first.
        let (other, _) = add_namespace("hr", 2);
        let op = Op::Put {
            key: other.key,
            content: Content::namespace(ContentId::from_u128(2), BTreeMap::new()),
            expect: Expect::Absent,
        };
        let moved = fx
            .store
            .commit(
                &fx.main,
                None,
                vec![op],
                CommitMeta::new("bob", "first", 1),
                &fx.who,
            )
            .unwrap()
            .commit;
        match fx.store.apply_landing(plan).unwrap() {
            Landed::Moved(Some(current)) => assert_eq!(current.head, moved),
            Landed::Moved(None) => panic!("main exists"),
            Landed::Applied { .. } => panic!("the compare-and-swap must fail"),
        }
        assert_eq!(fx.store.get_ref(&fx.main).unwrap().head, moved);
    }
}
