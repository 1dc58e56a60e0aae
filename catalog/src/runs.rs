//! Runs (DESIGN §5): the record, the temporary branch, the landing rule, sealing and
//! recovery. Imports are the first kind; pipeline runs reuse all of it.
//!
//! A run forks `floe-run/<id>` from the target's head F and records itself (id, kind,
//! principal, target, F, state) in the store's meta keyspace under `run/<id>`. Only the
//! executor (a `Principal::in_run`) writes the run branch, and each of its commits carries
//! `floe.run.id`. Landing is one commit on the target: each output is `Put` expecting its
//! content at F (or `Absent`, with a `Check` that its namespace is there), each input is a
//! `Check` of its content at F. So unrelated commits on the target do not block a run, and
//! a change to anything it read or wrote fails it with a conflict that names the keys.
//!
//! A failed run's branch stays, sealed: creating a ref from, merging from, cherry-picking
//! or assigning to one of its commits is refused (`RunSealed`). On restart every run still
//! marked running is settled: succeeded when its landing commit is on the target, failed
//! otherwise.

use std::collections::BTreeMap;

use floe_commits::{
    Content, ContentKey, Expect, Hash, LogFilter, Op, RefKind, RefName, RefSpec, WriteCtx,
};
use serde::{Deserialize, Serialize};

use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::namespaces::branch_of;
use crate::{Authored, Catalog};

/// The commit property naming the run a commit belongs to.
pub const RUN_ID_PROPERTY: &str = "floe.run.id";
/// The landing commit's property saying where the run's work came from.
pub const RUN_SOURCE_PROPERTY: &str = "floe.run.source";

const RECORD_PREFIX: &str = "run/";
/// Commits of the target searched for a landing commit on recovery.
const RECOVERY_LOG_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    Import,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A run as the meta keyspace keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    pub kind: RunKind,
    pub principal: String,
    /// The branch the run lands on.
    pub target: String,
    /// The target's head when the run forked (64 hex characters).
    pub fork: String,
    pub state: RunState,
    /// What the run does, for people (`import 2 files into db.t`).
    pub source: String,
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// The landing commit, once succeeded.
    #[serde(default)]
    pub landed: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// A failed run's commits may be used again once promoted.
    #[serde(default)]
    pub promoted: bool,
    /// What the run answered when it landed (so a retry of its request gets it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

impl RunRecord {
    /// The temporary branch the run works on.
    pub fn branch(&self) -> RefName {
        RefName::parse(&format!(
            "{}{}",
            floe_commits::name::RUN_BRANCH_PREFIX,
            self.id
        ))
        .expect("a run id makes a valid ref name")
    }

    pub fn fork_hash(&self) -> CatalogResult<Hash> {
        Hash::parse(&self.fork).map_err(|e| {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "run {} has an unreadable fork head: {e}",
                self.id
            )))
        })
    }

    /// Nothing may build on a run's work until it succeeded (or was promoted): not while
    /// it runs, and never after it failed.
    fn sealed(&self) -> bool {
        self.state != RunState::Succeeded && !self.promoted
    }
}

fn record_key(id: &str) -> Vec<u8> {
    format!("{RECORD_PREFIX}{id}").into_bytes()
}

fn invalid_record(e: serde_json::Error) -> CatalogError {
    CatalogError::Read(floe_commits::ReadError::Invalid(format!(
        "a run record does not parse: {e}"
    )))
}

/// What a landing writes and reads.
#[derive(Debug, Clone, Default)]
pub struct Landing {
    /// Keys the run materialized on its branch.
    pub outputs: Vec<ContentKey>,
    /// Catalog keys the run read (checked unchanged since the fork).
    pub inputs: Vec<ContentKey>,
    pub message: String,
    /// The request's idempotency key: recorded with the landing commit (detail: the run
    /// id), so a retry finds the run.
    pub idempotency: Option<crate::IdemRequest>,
    /// Kept in the succeeded record.
    pub answer: Option<serde_json::Value>,
}

impl Catalog {
    /// Starts a run on `target` (a branch): records it and forks its branch from the
    /// target's head. Returns the record and the executor principal to write with.
    pub fn start_run(
        &self,
        principal: &Principal,
        target: &RefSpec,
        kind: RunKind,
        source: String,
    ) -> CatalogResult<(RunRecord, Principal)> {
        let name = branch_of(target)?;
        self.authorize(
            principal,
            Action::Commit,
            Target {
                ref_name: Some(name),
                namespace: None,
            },
        )?;
        // The fork may be a pending head; the run branch's own move is acknowledged after
        // it, so once the branch exists its fork is durable too.
        let fork = self.writer_heads(name).read()?;
        let id = uuid::Uuid::now_v7().to_string();
        let record = RunRecord {
            id: id.clone(),
            kind,
            principal: principal.name().to_owned(),
            target: name.to_string(),
            fork: fork.to_hex(),
            state: RunState::Running,
            source,
            started_ms: self.now_ms(),
            finished_ms: None,
            landed: None,
            error: None,
            promoted: false,
            answer: None,
        };
        self.put_record(&record)?;
        let executor = principal.in_run(&id);
        let forked = self.store.create_ref(
            &record.branch(),
            RefKind::Branch,
            fork,
            &self.write_ctx(&executor, None, ""),
        );
        if let Err(e) = forked {
            let _ = self.finish_run(
                &record,
                RunState::Failed,
                None,
                Some(format!("its branch could not be created: {e}")),
            );
            return Err(e.into());
        }
        Ok((record, executor))
    }

    fn put_record(&self, record: &RunRecord) -> CatalogResult<()> {
        let bytes = serde_json::to_vec(record).expect("a run record serializes");
        self.store.meta_put(&record_key(&record.id), &bytes)?;
        Ok(())
    }

    /// Runs in id order (oldest first: ids are UUIDv7), after `after`.
    pub fn list_runs(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: usize,
    ) -> CatalogResult<(Vec<RunRecord>, Option<String>)> {
        self.authorize(
            principal,
            Action::ReadRefs,
            Target {
                ref_name: None,
                namespace: None,
            },
        )?;
        let after = after.map(record_key);
        let page = self
            .store
            .meta_scan(RECORD_PREFIX.as_bytes(), after.as_deref(), limit + 1)?;
        let mut runs = page
            .iter()
            .map(|(_, bytes)| serde_json::from_slice(bytes).map_err(invalid_record))
            .collect::<CatalogResult<Vec<RunRecord>>>()?;
        let next = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((runs, next))
    }

    /// One run, for a principal.
    pub fn get_run(&self, principal: &Principal, id: &str) -> CatalogResult<RunRecord> {
        self.authorize(
            principal,
            Action::ReadRefs,
            Target {
                ref_name: None,
                namespace: None,
            },
        )?;
        self.run_record(id)?
            .ok_or_else(|| CatalogError::RunNotFound(id.chars().take(100).collect()))
    }

    /// A run's record.
    pub fn run_record(&self, id: &str) -> CatalogResult<Option<RunRecord>> {
        if id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        match self.store.meta_get(&record_key(id))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(invalid_record),
        }
    }

    /// Lands a run on its target as one commit (the landing rule), marks it succeeded and
    /// deletes its branch. A conflict leaves the target as it was; the caller fails the
    /// run.
    pub fn land_run(
        &self,
        executor: &Principal,
        record: &RunRecord,
        landing: &Landing,
        authored: &Authored,
    ) -> CatalogResult<Hash> {
        let target = RefName::parse(&record.target)
            .map_err(|e| CatalogError::Invalid(format!("run target: {e}")))?;
        let fork = record.fork_hash()?;
        let branch = record.branch();
        let head = self.store.get_ref(&branch)?.head;
        let mut ops = Vec::new();
        let at_head = self.store.get_contents(head, &landing.outputs)?;
        let at_fork = self.store.get_contents(fork, &landing.outputs)?;
        for ((key, now), before) in landing.outputs.iter().zip(at_head).zip(at_fork) {
            let Some((_, content)) = now else {
                return Err(CatalogError::Invalid(format!(
                    "run {} did not materialize {key}",
                    record.id
                )));
            };
            let content: Content = content;
            match before {
                Some((r, _)) => ops.push(Op::Put {
                    key: key.clone(),
                    content,
                    expect: Expect::Is(r.hash),
                }),
                None => {
                    ops.push(Op::Put {
                        key: key.clone(),
                        content,
                        expect: Expect::Absent,
                    });
                    if let Some(parent) = key.parent() {
                        ops.push(Op::Check {
                            key: parent,
                            expect: Expect::Present,
                        });
                    }
                }
            }
        }
        let inputs = self.store.get_contents(fork, &landing.inputs)?;
        for (key, before) in landing.inputs.iter().zip(inputs) {
            if landing.outputs.contains(key) {
                continue;
            }
            ops.push(Op::Check {
                key: key.clone(),
                expect: before.map_or(Expect::Absent, |(r, _)| Expect::Is(r.hash)),
            });
        }
        let mut meta = self.meta(executor, authored, landing.message.clone());
        meta.properties
            .insert(RUN_ID_PROPERTY.to_owned(), record.id.clone());
        meta.properties
            .insert(RUN_SOURCE_PROPERTY.to_owned(), record.source.clone());
        // The landing is the principal's own write on the target.
        let ctx = WriteCtx {
            executor: false,
            ..self.write_ctx(executor, landing.idempotency.as_ref(), &record.id)
        };
        let outcome = self.store.commit(&target, None, ops, meta, &ctx)?;
        let landed = RunRecord {
            answer: landing.answer.clone(),
            ..record.clone()
        };
        // Landed: whatever happens to the bookkeeping now, the run succeeded (recovery
        // settles a record left behind).
        if let Err(e) = self.finish_run(&landed, RunState::Succeeded, Some(outcome.commit), None) {
            eprintln!(
                "floe: run {} landed as {} but its record was not updated: {e}",
                record.id, outcome.commit
            );
        }
        Ok(outcome.commit)
    }

    /// Marks a run failed; its branch stays, sealed.
    /// (If its landing commit is on the target after all, say after a write whose outcome
    /// was unknown, the run succeeded.)
    pub fn fail_run(&self, record: &RunRecord, error: &str) -> CatalogResult<()> {
        if let Some(commit) = self.landing_commit(record)? {
            return self.finish_run(record, RunState::Succeeded, Some(commit), None);
        }
        self.finish_run(record, RunState::Failed, None, Some(error.to_owned()))
    }

    fn finish_run(
        &self,
        record: &RunRecord,
        state: RunState,
        landed: Option<Hash>,
        error: Option<String>,
    ) -> CatalogResult<()> {
        let done = RunRecord {
            state,
            finished_ms: Some(self.now_ms()),
            landed: landed.map(|h| h.to_hex()),
            error,
            ..record.clone()
        };
        self.put_record(&done)?;
        if state == RunState::Succeeded {
            let executor = Principal::named(record.principal.clone()).in_run(&record.id);
            match self.store.delete_ref(
                &record.branch(),
                None,
                &self.write_ctx(&executor, None, ""),
            ) {
                Ok(()) | Err(floe_commits::WriteError::RefNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Refuses a commit of a failed or cancelled run (409 `RunSealed`).
    pub(crate) fn check_not_sealed(&self, commit: Hash) -> CatalogResult<()> {
        let object = self.store.commit_object(&commit)?;
        let Some(id) = object.properties.get(RUN_ID_PROPERTY) else {
            return Ok(());
        };
        // A landing commit (it alone says where the work came from) is the target's own
        // history, whatever the record says.
        if object.properties.contains_key(RUN_SOURCE_PROPERTY) {
            return Ok(());
        }
        match self.run_record(id)? {
            Some(record) if record.sealed() => Err(CatalogError::RunSealed {
                run: record.id,
                commit,
                state: record.state,
            }),
            _ => Ok(()),
        }
    }

    /// Settles runs a stopped server left running: succeeded when the landing commit is on
    /// the target, failed otherwise. Returns the runs it settled.
    pub fn recover_runs(&self) -> CatalogResult<Vec<RunRecord>> {
        let mut settled = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .meta_scan(RECORD_PREFIX.as_bytes(), after.as_deref(), 1_000)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.to_vec());
            for (_, bytes) in &page {
                let record: RunRecord = serde_json::from_slice(bytes).map_err(invalid_record)?;
                if record.state != RunState::Running {
                    continue;
                }
                let landed = self.landing_commit(&record)?;
                match landed {
                    Some(commit) => {
                        self.finish_run(&record, RunState::Succeeded, Some(commit), None)?
                    }
                    None => self.fail_run(
                        &record,
                        "the server stopped before the run finished; nothing landed",
                    )?,
                }
                settled.push(self.run_record(&record.id)?.unwrap_or(record));
            }
        }
        Ok(settled)
    }

    fn landing_commit(&self, record: &RunRecord) -> CatalogResult<Option<Hash>> {
        let Ok(target) = RefName::parse(&record.target) else {
            return Ok(None);
        };
        let head = match self.store.get_ref(&target) {
            Ok(r) => r.head,
            Err(floe_commits::ReadError::RefNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let filter = LogFilter {
            properties: BTreeMap::from([(RUN_ID_PROPERTY.to_owned(), record.id.clone())]),
            ..LogFilter::default()
        };
        let mut from = head;
        let mut seen = 0;
        loop {
            let page = self.store.log(from, &filter, 1)?;
            if let Some((hash, _)) = page.items.first() {
                return Ok(Some(*hash));
            }
            seen += floe_commits::limits::LOG_SCAN_MAX;
            match page.next {
                Some(next) if seen < RECOVERY_LOG_MAX => from = next,
                _ => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use floe_commits::RefKind;

    use super::*;
    use crate::Authored;

    fn setup() -> (Catalog, Principal, RefSpec) {
        (
            Catalog::in_memory(),
            Principal::named("ann"),
            RefSpec::parse("main").unwrap(),
        )
    }

    /// A run on `main` that created namespace `db` on its branch.
    fn started(
        catalog: &Catalog,
        who: &Principal,
        main: &RefSpec,
    ) -> (RunRecord, Principal, RefSpec, ContentKey) {
        let (record, executor) = catalog
            .start_run(who, main, RunKind::Import, "import x".to_owned())
            .unwrap();
        let branch = RefSpec::parse(record.branch().as_str()).unwrap();
        let ns = ContentKey::new(["db"]).unwrap();
        catalog
            .create_namespace(
                &executor,
                &branch,
                &ns,
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
            .unwrap();
        (record, executor, branch, ns)
    }

    #[test]
    fn recovery_fails_a_run_that_never_landed_and_seals_it() {
        let (catalog, who, main) = setup();
        let (record, _, branch, _) = started(&catalog, &who, &main);
        // Only the executor writes the run branch.
        let refused = catalog.create_namespace(
            &who,
            &branch,
            &ContentKey::new(["other"]).unwrap(),
            BTreeMap::new(),
            &Authored::default(),
            None,
        );
        assert!(refused.is_err());
        // While it runs, nothing may build on its work either.
        let running = catalog
            .create_ref(
                &who,
                &RefName::parse("early").unwrap(),
                RefKind::Branch,
                &branch,
                None,
            )
            .unwrap_err();
        assert!(
            matches!(running, CatalogError::RunSealed { .. }),
            "{running}"
        );
        let settled = catalog.recover_runs().unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].state, RunState::Failed);
        assert!(settled[0].error.as_deref().unwrap().contains("stopped"));
        // A second recovery has nothing to do.
        assert!(catalog.recover_runs().unwrap().is_empty());
        let head = catalog.store.get_ref(&record.branch()).unwrap().head;
        let sealed = catalog
            .merge(
                &who,
                &RefSpec::parse(&head.to_hex()).unwrap(),
                &main,
                &crate::MergeRequest::default(),
                None,
            )
            .unwrap_err();
        assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
        assert!(sealed.to_string().contains(&record.id), "{sealed}");
    }

    #[test]
    fn recovery_finds_a_landing_whose_record_was_not_updated() {
        let (catalog, who, main) = setup();
        let (record, executor, _, ns) = started(&catalog, &who, &main);
        // An unrelated commit on the target does not block the landing.
        catalog
            .create_namespace(
                &who,
                &main,
                &ContentKey::new(["other"]).unwrap(),
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
            .unwrap();
        let landing = Landing {
            outputs: vec![ns.clone()],
            inputs: Vec::new(),
            message: "land".to_owned(),
            ..Landing::default()
        };
        let landed = catalog
            .land_run(&executor, &record, &landing, &Authored::default())
            .unwrap();
        let commit = catalog.store.commit_object(&landed).unwrap();
        assert_eq!(commit.properties.get(RUN_ID_PROPERTY), Some(&record.id));
        assert_eq!(
            commit.properties.get(RUN_SOURCE_PROPERTY).unwrap(),
            "import x"
        );
        assert!(
            catalog.store.get_ref(&record.branch()).is_err(),
            "landed: branch deleted"
        );
        // A crash between the landing commit and the record's update.
        catalog.put_record(&record).unwrap();
        let settled = catalog.recover_runs().unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].state, RunState::Succeeded);
        assert_eq!(settled[0].landed.as_deref(), Some(landed.to_hex().as_str()));
        // Landing twice conflicts: the namespace exists now.
        let (again, executor) = catalog
            .start_run(&who, &main, RunKind::Import, "import y".to_owned())
            .unwrap();
        let branch = RefSpec::parse(again.branch().as_str()).unwrap();
        let fork_head = catalog.resolve(&who, &main).unwrap().hash;
        catalog
            .update_namespace_properties(
                &executor,
                &branch,
                &ns,
                &crate::PropertiesUpdate {
                    updates: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                    removals: Vec::new(),
                },
                &Authored::default(),
                None,
            )
            .unwrap();
        catalog
            .update_namespace_properties(
                &who,
                &main,
                &ns,
                &crate::PropertiesUpdate {
                    updates: BTreeMap::from([("k".to_owned(), "w".to_owned())]),
                    removals: Vec::new(),
                },
                &Authored::default(),
                None,
            )
            .unwrap();
        let moved = catalog.resolve(&who, &main).unwrap().hash;
        assert_ne!(moved, fork_head);
        let conflict = catalog
            .land_run(
                &executor,
                &again,
                &Landing {
                    outputs: vec![ns],
                    message: "land".to_owned(),
                    ..Landing::default()
                },
                &Authored::default(),
            )
            .unwrap_err();
        assert!(matches!(conflict, CatalogError::Write(_)), "{conflict}");
        assert_eq!(catalog.resolve(&who, &main).unwrap().hash, moved);
    }
}
