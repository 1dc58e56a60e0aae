//! The catalog's errors: one small family for its entry points. Rejections (nothing
//! persisted) and unknown outcomes stay apart, as in `floe-commits`, so the HTTP layer
//! answers 4xx for the first and 5xx for the second. No HTTP here: `floe-rest` maps these
//! once, in one file.

use floe_commits::{ContentKey, Hash, ReadError, WriteError};

use crate::auth::Action;
use crate::run_state::RunState;
use crate::warehouse::WarehouseError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{principal} may not {action} {target}{why}")]
    Forbidden {
        principal: String,
        action: Action,
        target: String,
        /// What the policy adds (`: main is protected: commit on a branch and merge`).
        why: String,
    },
    /// The request is malformed; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{spec} is read-only (a tag, a commit, name@hash, ~N or *time); write to a branch by its name"
    )]
    ReadOnly { spec: String },
    #[error("{0} is the default branch and cannot be deleted; reset it to another commit instead")]
    DefaultBranch(String),
    #[error("namespace {0} does not exist; create it first")]
    NamespaceNotFound(ContentKey),
    #[error("namespace {0} already exists")]
    NamespaceAlreadyExists(ContentKey),
    #[error("{key} exists and is a {kind}, not a namespace")]
    NotANamespace { key: ContentKey, kind: &'static str },
    #[error("namespace {namespace} is not empty{}; drop what it holds first", other.as_ref().map(|o| format!(" ({o} is in it)")).unwrap_or_default())]
    NamespaceNotEmpty {
        namespace: ContentKey,
        other: Option<ContentKey>,
        head: Hash,
    },
    #[error("table {0} does not exist")]
    TableNotFound(ContentKey),
    /// The table (its Iceberg table-uuid) is at the ref under another key already.
    #[error(
        "{key} would be the same table as {other} (the same table-uuid): a table lives under one key per ref; drop or rename {other} first"
    )]
    SameTable { key: ContentKey, other: ContentKey },
    #[error("{0} already exists")]
    TableAlreadyExists(ContentKey),
    #[error("view {0} does not exist")]
    ViewNotFound(ContentKey),
    #[error("{0} already exists")]
    ViewAlreadyExists(ContentKey),
    /// A table requirement does not hold at the branch head (nothing was written).
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A request floe understands and refuses by rule.
    #[error("{0}")]
    Unsupported(String),
    #[error("run {0} does not exist")]
    RunNotFound(String),
    #[error("run {run} cannot be promoted: {why}")]
    RunNotPromotable { run: String, why: String },
    #[error("run {run} cannot be reverted: {why}")]
    RunNotRevertible { run: String, why: String },
    /// A commit of a failed or cancelled run, which nothing may build on.
    #[error(
        "commit {commit} belongs to run {run}, which is {state:?} and sealed: its work cannot be used (merge, cherry-pick, branch or reset to it); re-run it, or promote the run (floe run promote {run})"
    )]
    RunSealed {
        run: String,
        commit: Hash,
        state: RunState,
    },
    /// A commit of a run whose record has expired (and was not its landing).
    #[error(
        "commit {commit} is work of run {run}, whose record has expired: its work cannot be used any more; re-run it"
    )]
    RunExpired { run: String, commit: Hash },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A concurrent writer kept changing what this write read; it may be retried.
    #[error("{0} kept changing under concurrent writes; retry")]
    Contention(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl CatalogError {
    /// Commit properties a caller may not set: `floe.*` is floe's own (runs, merges,
    /// cherry-picks, reverts), and other writes trust what it says.
    pub fn check_user_properties<'a>(
        keys: impl IntoIterator<Item = &'a String>,
    ) -> CatalogResult<()> {
        let reserved: Vec<&str> = keys
            .into_iter()
            .filter(|k| k.starts_with(RESERVED_PROPERTY_PREFIX))
            .map(String::as_str)
            .collect();
        if reserved.is_empty() {
            return Ok(());
        }
        Err(CatalogError::Invalid(format!(
            "commit properties starting with {RESERVED_PROPERTY_PREFIX:?} are reserved for floe: {}; leave them out",
            reserved.join(", ")
        )))
    }

    /// True when a write may or may not have applied (storage failed midway): never a
    /// success, never a clean rejection.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            CatalogError::Write(e) => e.is_outcome_unknown(),
            CatalogError::Read(ReadError::Storage(_)) => true,
            _ => false,
        }
    }
}

/// The prefix of the commit properties floe writes itself.
pub const RESERVED_PROPERTY_PREFIX: &str = "floe.";

pub type CatalogResult<T> = Result<T, CatalogError>;
