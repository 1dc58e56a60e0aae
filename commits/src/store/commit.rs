//! The commit rule (DESIGN §2): `commit` evaluates every operation's expectation at the
//! head it lands on and rebases when it loses a race; `land` validates and builds every
//! landing (commit, merge, cherry-pick, revert) and moves the branch.

use super::*;

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
        let out = self.commit_unsettled(branch, expected_head, ops, meta, ctx);
        self.settled(branch, out, |o| (!o.created).then_some(o.commit))
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
            self.commit_object(&e)
                .map_err(|_| WriteError::CommitNotFound(e))?;
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
                    && let Some(other) = self.first_under(&head_commit, prefix, &changes)?
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
            let parents: Parents = [head].into_iter().collect();
            match self.land(
                branch,
                &record,
                &head_commit,
                changes,
                parents,
                &meta,
                RefOperation::Commit,
                objects.clone(),
                ctx,
                false,
            )? {
                Landed::Applied(commit, ticket) => {
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
                Landed::DryRun(_) => unreachable!("commit is never a dry run"),
            }
        }
        Err(contention(branch))
    }

    /// The first key strictly under `prefix` in (the map at `commit`) + `changes`.
    pub(crate) fn first_under(
        &self,
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
        tree::for_each(self, commit.key_index, &lo, Some(&hi), |node, i| {
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
            return Err(StorageError::Corrupt {
                hash: Hash::from_bytes([0; 32]),
                reason: e.to_string(),
            }
            .into());
        }
        Ok(found)
    }

    /// Validates `changes` against `head_commit`, builds the commit and moves `branch` from
    /// the head to it. Every landing (commit, merge, cherry-pick, revert) goes through here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn land(
        &self,
        branch: &RefName,
        record: &RefRecord,
        head_commit: &Commit,
        changes: Vec<KeyChange>,
        parents: Parents,
        meta: &CommitMeta,
        operation: RefOperation,
        mut objects: Vec<(Hash, Bytes)>,
        ctx: &WriteCtx,
        dry_run: bool,
    ) -> Result<Landed, WriteError> {
        let head = record.head;
        let id_edits =
            validate::landing(self, head_commit, &changes).map_err(
                |conflicts| match conflicts {
                    validate::Failure::Conflicts(conflicts) => {
                        WriteError::Conflict { head, conflicts }
                    }
                    validate::Failure::Write(e) => e,
                },
            )?;
        let key_edits: Vec<tree::Edit> = changes
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
        for p in &parents {
            generation = generation.max(self.graph_entry(p)?.generation);
        }
        let commit = Commit {
            parents,
            key_index,
            id_index,
            // An empty author is the principal writing; an empty committer, the author.
            author: if meta.author.is_empty() {
                ctx.principal.clone()
            } else {
                meta.author.clone()
            },
            committer: match (meta.committer.is_empty(), meta.author.is_empty()) {
                (false, _) => meta.committer.clone(),
                (true, false) => meta.author.clone(),
                (true, true) => ctx.principal.clone(),
            },
            message: meta.message.clone(),
            authored_at_ms: meta.authored_at_ms,
            properties: meta.properties.clone(),
            generation: generation + 1,
        };
        let bytes = Bytes::from(commit.encode());
        let hash = Hash::of(&bytes);
        if dry_run {
            return Ok(Landed::DryRun(hash));
        }
        objects.extend(nodes.written.iter().cloned());
        objects.push((hash, bytes));
        // Nothing refers to these objects until the ref moves: a failure here changed
        // nothing a reader can see, so it is a plain rejection, never "outcome unknown".
        self.backend.put_objects(&objects).map_err(not_applied)?;
        self.nodes
            .insert_many(nodes.nodes().map(|(h, n)| (*h, n.clone())));
        let new_record = RefRecord {
            head: hash,
            ..record.clone()
        };
        match self.move_ref(
            branch,
            RefKind::Branch,
            Some(head),
            Some(new_record),
            operation,
            ctx,
            BTreeMap::new(),
        )? {
            CasOutcome::Applied { ticket, .. } => {
                self.remember_commit(hash, Arc::new(commit));
                Ok(Landed::Applied(hash, ticket))
            }
            CasOutcome::Mismatch { current } => Ok(Landed::Moved(current)),
        }
    }
}
