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
//! or assigning to one of its commits is refused (`RunSealed`) until the run is promoted.
//! On restart every run still marked running is settled: succeeded when its landing commit
//! is on the target, failed otherwise. Retention (`retention.rs`) prunes failed runs'
//! branches and forgets old records.
//!
//! Records stay small (DESIGN §7): what grows with the input — an import's answer with its
//! file list — is stored beside the record in bounded chunks (`answers.rs`), written before
//! the landing, so that a run whose answer cannot be stored never lands.

use bytes::Bytes;
use floe_commits::{Fence, Hash, RefKind, RefName, RefSpec};
use serde::{Deserialize, Serialize};

use crate::Catalog;
use crate::auth::{Action, Principal, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::limits::{
    META_PAGE_MAX, QUOTED_CHARS_MAX, RUN_ERROR_BYTES_MAX, RUN_LIST_SCAN_MAX, RUN_SOURCE_BYTES_MAX,
};
use crate::refs::branch_of;
pub use crate::run_state::RunState;

mod answers;
mod files;
mod landing;
mod retention;
mod revert;
#[cfg(test)]
mod tests;

pub use answers::StoredAnswer;
pub use files::{LogPart, RunFile};
pub use landing::{Landed, Landing};
pub(crate) use retention::MaintenanceCursor;
pub use retention::{Retention, RetentionReport};
pub use revert::RunReverted;

/// The commit property naming the run a commit belongs to.
pub const RUN_ID_PROPERTY: &str = "floe.run.id";
/// The property of a commit that lands part of a run (`--no-transaction`), naming the run.
pub const RUN_PART_PROPERTY: &str = "floe.run.part";
/// The property of a commit that reverts a run's landing (`floe run revert`), naming it.
pub const RUN_REVERTED_PROPERTY: &str = "floe.run.reverted";
/// The landing commit's property saying where the run's work came from.
pub const RUN_SOURCE_PROPERTY: &str = "floe.run.source";

const RECORD_PREFIX: &str = "run/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    Import,
    /// A pipeline run of a project (`floe run`).
    Run,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Import => "import",
            RunKind::Run => "run",
        }
    }
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Queued or running: the run has not ended.
    pub fn is_live(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
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
    /// Who promoted it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_ms: Option<i64>,
    /// Where the run's answer is kept (so a retry of its request gets it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_answer: Option<StoredAnswer>,
    /// A pipeline run's own part of the record (project, code, parameters, options and
    /// its nodes' states), kept by `floe-compute`, which owns its shape. Bounded there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<serde_json::Value>,
    /// The tables an import writes (`namespace.table`); a pipeline's are its materialized
    /// nodes' (`written_tables`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// The server that executes the run (`Catalog::server_id`): when its lease runs out,
    /// any server settles the run. None in records from before owners were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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

    /// The branch the run lands on.
    pub fn target_ref(&self) -> CatalogResult<RefName> {
        RefName::parse(&self.target)
            .map_err(|e| CatalogError::Invalid(format!("run {} has a bad target: {e}", self.id)))
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

    /// The tables the run writes (`namespace.table`), as declared when it was submitted:
    /// an import's table, a pipeline's materialized outputs (none for a dry run).
    pub fn written_tables(&self) -> Vec<String> {
        let mut tables = self.tables.clone();
        let dry = self
            .pipeline
            .as_ref()
            .is_some_and(|p| p["options"]["dryRun"] == true);
        if !dry {
            tables.extend(pipeline_tables(self.pipeline.as_ref()).map(str::to_owned));
        }
        tables
    }

    /// Whether the run writes `table` (`namespace.table`).
    pub fn writes(&self, table: &str) -> bool {
        self.written_tables().iter().any(|t| t == table)
    }

    /// The landing commit the record names, once succeeded.
    fn landed_hash(&self) -> Option<Hash> {
        self.landed.as_deref().and_then(|h| Hash::parse(h).ok())
    }
}

/// A pipeline record's materialized outputs (its nodes' `outputTable`s).
fn pipeline_tables(pipeline: Option<&serde_json::Value>) -> impl Iterator<Item = &str> {
    pipeline
        .and_then(|p| p["nodes"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|n| n["outputTable"].as_str())
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying so.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(16);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [... cut]", &text[..end])
}

fn record_key(id: &str) -> Vec<u8> {
    format!("{RECORD_PREFIX}{id}").into_bytes()
}

/// Meta-keyspace prefix of run owner tokens: `run-owner/<id>` holds the id of the server
/// executing the run. Every write of the run's executor (its branch's commits, its
/// landing) is fenced on it; whoever ends the run otherwise (a cancel, a failure, a server
/// settling it after its owner's lease ran out) removes it first (`revoke_owner`), so a
/// paused owner that wakes up writes and lands nothing.
const OWNER_TOKEN_PREFIX: &str = "run-owner/";

fn owner_token_key(id: &str) -> Vec<u8> {
    format!("{OWNER_TOKEN_PREFIX}{id}").into_bytes()
}

/// The fence of a write by run `id`'s executor on server `owner`: the run's owner token
/// must still name `owner` when the ref moves.
pub(crate) fn owner_fence(id: &str, owner: &str) -> Fence {
    Fence {
        key: owner_token_key(id),
        value: owner.as_bytes().to_vec(),
        lost: format!(
            "run {id} ended before this write of it applied (cancelled, failed, or settled by another server while this one ({owner}) could not renew its lease); nothing of it was written"
        ),
    }
}

/// How often a write of a run's record (or token) reads it again when a concurrent write
/// changed it.
const RECORD_WRITE_ATTEMPTS: usize = 8;

/// What `Catalog::write_live_record` found.
pub(super) enum LiveWrite {
    Written,
    /// The run had ended first: its record as stored.
    Ended(RunRecord),
    /// No record: never written, or past its retention.
    Gone,
}

/// A run's record ended (cancelled, failed, or settled by another server after its own
/// stopped renewing its lease) before this write: it writes nothing.
fn ended_elsewhere(id: &str, state: RunState) -> CatalogError {
    CatalogError::Write(floe_commits::WriteError::Fenced(format!(
        "run {id} is {} already (cancelled, failed, or settled by another server while this one could not renew its lease): nothing more of it is written",
        state.as_str()
    )))
}

/// A record's stored form. Every field that could grow is bounded where it is set.
fn encode_record(record: &RunRecord) -> CatalogResult<Vec<u8>> {
    serde_json::to_vec(record)
        .map_err(|e| CatalogError::Invalid(format!("run {} does not serialize: {e}", record.id)))
}

/// No run has this id (what is said of it is cut to `QUOTED_CHARS_MAX` characters).
fn run_not_found(id: &str) -> CatalogError {
    CatalogError::RunNotFound(id.chars().take(QUOTED_CHARS_MAX).collect())
}

fn invalid_record(e: serde_json::Error) -> CatalogError {
    CatalogError::Read(floe_commits::ReadError::Invalid(format!(
        "a run record does not parse: {e}"
    )))
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
        self.start_run_writing(principal, target, kind, source, Vec::new())
    }

    /// `start_run` of a run that declares the tables it writes (`namespace.table`).
    pub fn start_run_writing(
        &self,
        principal: &Principal,
        target: &RefSpec,
        kind: RunKind,
        source: String,
        tables: Vec<String>,
    ) -> CatalogResult<(RunRecord, Principal)> {
        let mut record = self.new_run(principal, target, kind, source, None, RunState::Running)?;
        record.tables = tables;
        self.fork_run(record, principal)
    }

    /// Records a run that waits for its turn (`queued`, nothing forked yet); `begin_run`
    /// forks it when its turn comes.
    pub fn queue_run(
        &self,
        principal: &Principal,
        target: &RefSpec,
        kind: RunKind,
        source: String,
        pipeline: Option<serde_json::Value>,
    ) -> CatalogResult<RunRecord> {
        let record = self.new_run(principal, target, kind, source, pipeline, RunState::Queued)?;
        self.put_record(&record)?;
        Ok(record)
    }

    /// Forks a queued run's branch from its target's head now, and marks it running
    /// (`principal` is who queued it).
    pub fn begin_run(
        &self,
        principal: &Principal,
        record: &RunRecord,
    ) -> CatalogResult<(RunRecord, Principal)> {
        let target = record.target_ref()?;
        self.authorize(principal, Action::Run, Target::on_ref(&target))?;
        let record = RunRecord {
            state: RunState::Running,
            started_ms: self.now_ms(),
            owner: Some(self.server_id().to_owned()),
            ..record.clone()
        };
        self.fork_run(record, principal)
    }

    /// A new record for a run on `target`, authorized, with its fork still empty.
    fn new_run(
        &self,
        principal: &Principal,
        target: &RefSpec,
        kind: RunKind,
        source: String,
        pipeline: Option<serde_json::Value>,
        state: RunState,
    ) -> CatalogResult<RunRecord> {
        let name = branch_of(target)?;
        // An import is a write of its table; a pipeline run needs `run` on its target.
        let action = match kind {
            RunKind::Import => Action::Commit,
            RunKind::Run => Action::Run,
        };
        self.authorize(principal, action, Target::on_ref(name))?;
        // The branch must exist now (a queued run says so at once, not at its turn).
        self.store.get_ref(name)?;
        Ok(RunRecord {
            id: self.new_uuid().to_string(),
            kind,
            principal: principal.name().to_owned(),
            target: name.to_string(),
            fork: String::new(),
            state,
            source: bounded(&source, RUN_SOURCE_BYTES_MAX),
            started_ms: self.now_ms(),
            finished_ms: None,
            landed: None,
            error: None,
            promoted: false,
            promoted_by: None,
            promoted_ms: None,
            stored_answer: None,
            tables: Vec::new(),
            pipeline,
            owner: Some(self.server_id().to_owned()),
        })
    }

    /// Forks the run's branch from its target's head and records the run running.
    fn fork_run(
        &self,
        mut record: RunRecord,
        principal: &Principal,
    ) -> CatalogResult<(RunRecord, Principal)> {
        let target = record.target_ref()?;
        // The fork may be a pending head; the run branch's own move is acknowledged after
        // it, so once the branch exists its fork is durable too.
        let fork = self.writer_heads(&target).read()?;
        record.fork = fork.to_hex();
        record.state = RunState::Running;
        // The owner token goes first: a record that says running always has one to fence
        // its executor's writes on (whoever ends the run otherwise removes it first).
        if let Some(owner) = &record.owner {
            self.store
                .meta_put(&owner_token_key(&record.id), owner.as_bytes())?;
        }
        match self.stored_record(&record.id)? {
            // A queued run's turn: only over its queued record, so a run cancelled or
            // settled meanwhile (by another server, while this one was paused) stays so.
            Some((stored, current)) => {
                if current.state != RunState::Queued {
                    return Err(ended_elsewhere(&record.id, current.state));
                }
                if !self.store.meta_cas(
                    &record_key(&record.id),
                    Some(&stored),
                    Some(&encode_record(&record)?),
                )? {
                    return Err(CatalogError::Contention(format!(
                        "the record of run {}",
                        record.id
                    )));
                }
            }
            None => self.put_record(&record)?,
        }
        let executor = principal.in_run(&record.id);
        let forked = self.store.create_ref(
            &record.branch(),
            RefKind::Branch,
            fork,
            &self.write_ctx(&executor, None, ""),
        );
        if let Err(e) = forked {
            // Ended meanwhile (a cancel, or a server that settled it): its record says so.
            if let floe_commits::WriteError::Fenced(_) = e {
                return Err(e.into());
            }
            let why = format!("its branch could not be created: {e}");
            if let Err(bookkeeping) = self.finish_run(&record, RunState::Failed, None, Some(why)) {
                // Said, not only logged: the record stays running until a restart settles it.
                return Err(CatalogError::Invalid(format!(
                    "run {} could not start ({e}), and its record could not say so ({bookkeeping}); a restart settles it",
                    record.id
                )));
            }
            return Err(e.into());
        }
        Ok((record, executor))
    }

    /// Saves a live run's progress (a pipeline's node states). Only the run's executor
    /// writes a live record; nothing else changes it until it ends.
    pub fn save_run(&self, executor: &Principal, record: &RunRecord) -> CatalogResult<()> {
        self.may_keep_run(executor, record, false)?;
        let ended = || {
            CatalogError::Invalid(format!(
                "run {} has ended; its record is settled by finishing it",
                record.id
            ))
        };
        if !record.state.is_live() {
            return Err(ended());
        }
        // Only over a live stored record: a record settled meanwhile (by recovery, say)
        // is never put back.
        let (stored, current) = self
            .stored_record(&record.id)?
            .ok_or_else(|| run_not_found(&record.id))?;
        if !current.state.is_live() {
            return Err(ended_elsewhere(&record.id, current.state));
        }
        if !self.store.meta_cas(
            &record_key(&record.id),
            Some(&stored),
            Some(&encode_record(record)?),
        )? {
            return Err(CatalogError::Contention(format!(
                "the record of run {}",
                record.id
            )));
        }
        Ok(())
    }

    /// Settles a run whose server stopped renewing its lease. Its owner token goes first:
    /// from then on no landing of the run applies, so the target's reflog says for good
    /// whether it landed (succeeded) or not (failed). The record is written only while it
    /// is live: over `stored` (what this pass read), or, if its server wrote it meanwhile
    /// (it was paused, not dead), over what it wrote, unless that ended the run. False
    /// when the run had ended.
    pub(super) fn settle_orphan(
        &self,
        record: &RunRecord,
        stored: &[u8],
        owner: &str,
    ) -> CatalogResult<bool> {
        self.revoke_owner(&record.id)?;
        let landed = self.landing_commit(record)?;
        let settle = |current: &RunRecord| match landed {
            Some(commit) => RunRecord {
                state: RunState::Succeeded,
                finished_ms: Some(self.now_ms()),
                landed: Some(commit.to_hex()),
                ..current.clone()
            },
            None => RunRecord {
                state: RunState::Failed,
                finished_ms: Some(self.now_ms()),
                error: Some(bounded(
                    &format!("the server {owner} running it stopped; nothing landed"),
                    RUN_ERROR_BYTES_MAX,
                )),
                ..current.clone()
            },
        };
        let read = (Bytes::copy_from_slice(stored), record.clone());
        match self.write_live_record(&record.id, Some(read), settle)? {
            LiveWrite::Written => {
                if landed.is_some() {
                    self.delete_run_branch(record)?;
                }
                Ok(true)
            }
            LiveWrite::Ended(_) | LiveWrite::Gone => Ok(false),
        }
    }

    /// Writes `next(current)` over run `id`'s record while it is live: over `read` (its
    /// bytes and record as the caller read them) or what it reads now, and again over what
    /// a concurrent write left, at most `RECORD_WRITE_ATTEMPTS` times.
    pub(super) fn write_live_record(
        &self,
        id: &str,
        read: Option<(Bytes, RunRecord)>,
        next: impl Fn(&RunRecord) -> RunRecord,
    ) -> CatalogResult<LiveWrite> {
        let mut known = read;
        for _ in 0..RECORD_WRITE_ATTEMPTS {
            let (stored, current) = match known.take() {
                Some(read) => read,
                None => match self.stored_record(id)? {
                    Some(read) => read,
                    None => return Ok(LiveWrite::Gone),
                },
            };
            if !current.state.is_live() {
                return Ok(LiveWrite::Ended(current));
            }
            let written = encode_record(&next(&current))?;
            if self
                .store
                .meta_cas(&record_key(id), Some(&stored), Some(&written))?
            {
                return Ok(LiveWrite::Written);
            }
        }
        Err(CatalogError::Contention(format!("the record of run {id}")))
    }

    /// Ends the owner's hold on a run: its owner token goes, whatever it holds, so no
    /// landing of the run applies from then on. Whoever ends a run other than by its
    /// landing calls it before looking for the landing.
    pub(super) fn revoke_owner(&self, id: &str) -> CatalogResult<()> {
        let key = owner_token_key(id);
        for _ in 0..RECORD_WRITE_ATTEMPTS {
            match self.store.meta_get(&key)? {
                None => return Ok(()),
                Some(value) if self.store.meta_cas(&key, Some(&value), None)? => return Ok(()),
                Some(_) => {}
            }
        }
        Err(CatalogError::Contention(format!(
            "the owner token of run {id}"
        )))
    }

    /// Writes a record. Every field that could grow is bounded where it is set, so a record
    /// always fits one meta value; a failure here is an error the caller reports.
    fn put_record(&self, record: &RunRecord) -> CatalogResult<()> {
        self.store
            .meta_put(&record_key(&record.id), &encode_record(record)?)?;
        Ok(())
    }

    /// A run's record as stored (its bytes, for a compare-and-swap over them) and read.
    /// A run id is a UUID: anything else names no run (and never reaches the store).
    fn stored_record(&self, id: &str) -> CatalogResult<Option<(Bytes, RunRecord)>> {
        if uuid::Uuid::try_parse(id).is_err() {
            return Ok(None);
        }
        match self.store.meta_get(&record_key(id))? {
            None => Ok(None),
            Some(bytes) => {
                let record = serde_json::from_slice(&bytes).map_err(invalid_record)?;
                Ok(Some((bytes, record)))
            }
        }
    }

    /// Promotes a failed or cancelled run (DESIGN §5 "Sealing"): recorded in its record, after
    /// which its commits may be branched from, merged, cherry-picked and reset to. Whoever
    /// may merge into the run's target may promote it.
    pub fn promote_run(&self, principal: &Principal, id: &str) -> CatalogResult<RunRecord> {
        // A run on a branch the principal cannot read is not there for it.
        self.visible_run(principal, id)?;
        let (stored, record) = self.stored_record(id)?.ok_or_else(|| run_not_found(id))?;
        let target = record.target_ref()?;
        self.authorize(principal, Action::Merge, Target::on_ref(&target))?;
        match record.state {
            RunState::Failed | RunState::Cancelled => {}
            RunState::Queued | RunState::Running => {
                return Err(CatalogError::RunNotPromotable {
                    run: record.id,
                    why: "it is still running; wait for it to end".to_owned(),
                });
            }
            RunState::Succeeded => {
                return Err(CatalogError::RunNotPromotable {
                    run: record.id,
                    why: "it succeeded; its work is on its target already".to_owned(),
                });
            }
        }
        if record.promoted {
            // Promoting twice changes nothing.
            return Ok(record);
        }
        let promoted = RunRecord {
            promoted: true,
            promoted_by: Some(principal.name().to_owned()),
            promoted_ms: Some(self.now_ms()),
            ..record
        };
        // Only over the record read (retention may have forgotten it meanwhile).
        if !self.store.meta_cas(
            &record_key(&promoted.id),
            Some(&stored),
            Some(&encode_record(&promoted)?),
        )? {
            return Err(CatalogError::Contention(format!("the record of run {id}")));
        }
        Ok(promoted)
    }

    /// Runs in id order (oldest first: ids are UUIDv7), after `after`, that `keep`
    /// accepts. A page examines at most `RUN_LIST_SCAN_MAX` records: a sparse filter may
    /// answer fewer than `limit` runs with a token to go on from.
    pub fn list_runs(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&RunRecord) -> bool,
    ) -> CatalogResult<(Vec<RunRecord>, Option<String>)> {
        self.authorize(principal, Action::ReadRefs, Target::default())?;
        let mut cursor = after.map(record_key);
        let mut runs = Vec::new();
        let mut examined = 0usize;
        loop {
            let page =
                self.store
                    .meta_scan(RECORD_PREFIX.as_bytes(), cursor.as_deref(), META_PAGE_MAX)?;
            let Some((last, _)) = page.last() else {
                return Ok((runs, None));
            };
            let last = last.to_vec();
            for (key, bytes) in &page {
                examined += 1;
                let record: RunRecord = serde_json::from_slice(bytes).map_err(invalid_record)?;
                // Only runs whose target the principal may read.
                let visible = RefName::parse(&record.target)
                    .is_ok_and(|t| self.may(principal, Action::ReadRefs, &t));
                if visible && keep(&record) {
                    if runs.len() == limit {
                        let next = runs.last().map(|r: &RunRecord| r.id.clone());
                        return Ok((runs, next));
                    }
                    runs.push(record);
                }
                if examined >= RUN_LIST_SCAN_MAX {
                    let id = String::from_utf8_lossy(&key[RECORD_PREFIX.len()..]).into_owned();
                    return Ok((runs, Some(id)));
                }
            }
            cursor = Some(last);
        }
    }

    /// One run, for a principal.
    pub fn get_run(&self, principal: &Principal, id: &str) -> CatalogResult<RunRecord> {
        self.authorize(principal, Action::ReadRefs, Target::default())?;
        self.visible_run(principal, id)
    }

    /// Run `id`'s record if the principal may read its target; else, as if there were
    /// none (a hidden branch's runs say nothing of it).
    pub(crate) fn visible_run(&self, principal: &Principal, id: &str) -> CatalogResult<RunRecord> {
        let record = self.record_of(id)?.ok_or_else(|| run_not_found(id))?;
        let readable =
            RefName::parse(&record.target).is_ok_and(|t| self.may(principal, Action::ReadRefs, &t));
        if readable {
            Ok(record)
        } else {
            Err(run_not_found(id))
        }
    }

    /// Run `id`'s record, if the principal may read its target (its executor may).
    pub fn run_record(&self, principal: &Principal, id: &str) -> CatalogResult<Option<RunRecord>> {
        match self.visible_run(principal, id) {
            Ok(record) => Ok(Some(record)),
            Err(CatalogError::RunNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A run's record, whoever asks (the crate's own bookkeeping).
    pub(crate) fn record_of(&self, id: &str) -> CatalogResult<Option<RunRecord>> {
        Ok(self.stored_record(id)?.map(|(_, record)| record))
    }
}
