//! The store's errors, in two families: reads (`ReadError`) and writes (`WriteError`).
//!
//! Every write ends in one of three outcomes: applied (`Ok`), rejected with nothing
//! persisted (every `WriteError` but `Storage` with `outcome_unknown`), or unknown (the
//! storage failed midway). `WriteError::is_outcome_unknown` tells the last apart, so the
//! HTTP layer answers 409/4xx for rejections and 5xx only when the outcome is unknown.

use std::fmt;

use crate::backend::BackendError;
use crate::content::{ContentError, ContentKind, ContentRef};
use crate::hash::{ContentHash, Hash, HashPrefix};
use crate::key::{ContentKey, KeyError};
use crate::name::RefName;
use crate::object::MetaError;
use crate::tree::TreeError;

/// Storage failed or returned damaged bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("storage failed: {0}")]
    Backend(#[from] BackendError),
    /// Stored bytes that do not hash to their name, or do not decode. `hash` names the
    /// damaged object; it is `None` only where no object is to blame as a whole (a value
    /// inside a node that decoded, a meta record).
    #[error("{} is damaged: {reason}", damaged(hash))]
    Corrupt { hash: Option<Hash>, reason: String },
    #[error("object {0} is missing from storage")]
    Missing(Hash),
}

fn damaged(hash: &Option<Hash>) -> String {
    hash.map_or_else(
        || "stored data".to_owned(),
        |h| format!("stored object {h}"),
    )
}

impl StorageError {
    /// Damaged stored data; `hash` names the object when one is to blame.
    pub fn corrupt(hash: Option<Hash>, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            hash,
            reason: reason.into(),
        }
    }

    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, StorageError::Backend(e) if e.outcome_unknown)
    }

    /// A backend failure that certainly wrote nothing (the storage unreachable, a
    /// connection refused): worth a retry, unlike damaged data or an unknown outcome.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Backend(e) if e.unavailable && !e.outcome_unknown)
    }
}

impl From<TreeError> for StorageError {
    fn from(e: TreeError) -> StorageError {
        match e {
            TreeError::Missing(h) => StorageError::Missing(h),
            TreeError::Corrupt { hash, reason } => StorageError::corrupt(Some(hash), reason),
            TreeError::Read(m) => StorageError::Backend(BackendError::read(m)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("ref {0} does not exist")]
    RefNotFound(RefName),
    #[error("commit {0} does not exist")]
    CommitNotFound(String),
    #[error("hash prefix {prefix} is ambiguous; it matches {}", list(candidates))]
    AmbiguousPrefix {
        prefix: HashPrefix,
        candidates: Vec<Hash>,
    },
    #[error("commit {commit} is not in the history of {name}")]
    NotInHistory { name: RefName, commit: Hash },
    #[error(
        "{spec} goes back {depth} first-parent generations, but the history has only {available}"
    )]
    HistoryTooShort {
        spec: String,
        depth: u64,
        available: u64,
    },
    #[error("ref {name} had no head at or before that time (no reflog entry)")]
    NoHeadAtTime { name: RefName },
    #[error("{0}")]
    Invalid(String),
    #[error("{what} exceeded its bound {limit} ({name}); narrow the request")]
    Bound {
        what: &'static str,
        name: &'static str,
        limit: usize,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<TreeError> for ReadError {
    fn from(e: TreeError) -> ReadError {
        ReadError::Storage(e.into())
    }
}

impl From<BackendError> for ReadError {
    fn from(e: BackendError) -> ReadError {
        ReadError::Storage(e.into())
    }
}

/// What an operation expects at a key, checked at the head it lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    Absent,
    Present,
    Is(ContentHash),
}

impl Expect {
    pub fn holds(&self, actual: Option<&ContentRef>) -> bool {
        match self {
            Expect::Absent => actual.is_none(),
            Expect::Present => actual.is_some(),
            Expect::Is(h) => actual.is_some_and(|a| a.hash == *h),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("absent"),
            Expect::Present => f.write_str("present"),
            Expect::Is(h) => write!(f, "content {h}"),
        }
    }
}

/// How one side of a merge changed a key since the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

impl ChangeKind {
    pub fn of(before: Option<&ContentRef>, after: Option<&ContentRef>) -> Option<ChangeKind> {
        match (before, after) {
            (None, Some(_)) => Some(ChangeKind::Added),
            (Some(_), None) => Some(ChangeKind::Removed),
            (Some(b), Some(a)) if b.hash != a.hash => Some(ChangeKind::Modified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// An operation's expectation does not hold at the landing head.
    Expectation,
    /// Both sides of a merge changed the key differently since the base.
    BothChanged,
    /// The merge bases disagree on the key's outcome.
    AmbiguousBase,
    /// A cherry-pick or revert found neither the value it replaces nor its result.
    Diverged,
    /// A key would exist without its parent namespace.
    NamespaceMissing,
    /// A namespace would be dropped with keys still under it.
    NamespaceNotEmpty,
    /// One content id would sit under two keys.
    DuplicateContentId,
    /// `CheckPrefixEmpty` found a key under the prefix.
    PrefixNotEmpty,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Expectation => "expectation",
            ConflictKind::BothChanged => "both-changed",
            ConflictKind::AmbiguousBase => "ambiguous-base",
            ConflictKind::Diverged => "diverged",
            ConflictKind::NamespaceMissing => "namespace-missing",
            ConflictKind::NamespaceNotEmpty => "namespace-not-empty",
            ConflictKind::DuplicateContentId => "duplicate-content-id",
            ConflictKind::PrefixNotEmpty => "prefix-not-empty",
        }
    }
}

/// One key that stopped a write, with what was expected and what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: ContentKey,
    pub kind: ConflictKind,
    pub expected: Option<Expect>,
    /// The content at the key at the head the write was evaluated at.
    pub actual: Option<ContentHash>,
    pub actual_kind: Option<ContentKind>,
    /// For merges: how the source and the target changed the key since the base.
    pub source_change: Option<ChangeKind>,
    pub target_change: Option<ChangeKind>,
    /// The other key involved (the key already holding a duplicate id, the key under a
    /// namespace that is not empty).
    pub other_key: Option<ContentKey>,
    /// For merges: why the content's own merge (a `Resolver`) refused the key.
    pub reason: Option<Box<ConflictReason>>,
}

/// Why a resolver refused to merge a key both sides changed: the rule that caught it, in
/// words a user acts on (DESIGN §10: an Iceberg table's conflict names the rule, both
/// sides' operations, the first files or partitions involved and what to do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictReason {
    /// A stable name of the rule (`overwrite-vs-append`, `schema-changes-differ`, ...).
    pub rule: String,
    /// One sentence: what both sides did that cannot be combined.
    pub message: String,
    /// The source's and the target's operations since the merge base, oldest first.
    pub source_operations: Vec<String>,
    pub target_operations: Vec<String>,
    /// The first files, partitions or fields involved.
    pub involved: Vec<String>,
    /// What to do about it.
    pub hint: String,
}

impl Conflict {
    pub fn new(key: ContentKey, kind: ConflictKind) -> Conflict {
        Conflict {
            key,
            kind,
            expected: None,
            actual: None,
            actual_kind: None,
            source_change: None,
            target_change: None,
            other_key: None,
            reason: None,
        }
    }

    pub fn with_actual(mut self, actual: Option<&ContentRef>) -> Conflict {
        self.actual = actual.map(|a| a.hash);
        self.actual_kind = actual.map(|a| a.kind);
        self
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.kind.as_str())?;
        if let Some(e) = &self.expected {
            write!(f, " (expected {e}, found ")?;
            match &self.actual {
                Some(h) => write!(f, "content {h})")?,
                None => f.write_str("nothing)")?,
            }
        }
        if let (Some(s), Some(t)) = (self.source_change, self.target_change) {
            write!(f, " (source {}, target {})", s.as_str(), t.as_str())?;
        }
        if let Some(o) = &self.other_key {
            write!(f, " (see {o})")?;
        }
        if let Some(r) = &self.reason {
            write!(f, " ({}: {})", r.rule, r.message)?;
        }
        Ok(())
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("ref {0} does not exist")]
    RefNotFound(RefName),
    #[error("ref {0} already exists")]
    RefAlreadyExists(RefName),
    #[error("{0} is a tag; only branches take commits")]
    NotABranch(RefName),
    #[error("{0} is a tag and tags never move; delete it and create it again")]
    TagImmutable(RefName),
    #[error("{0} is reserved for the run executor (refs under floe-run/)")]
    ReservedRef(RefName),
    #[error(
        "ref {name} moved: expected head {}, current head {}; reload and retry",
        opt(expected),
        opt(current)
    )]
    ReferenceConflict {
        name: RefName,
        expected: Option<Hash>,
        current: Option<Hash>,
    },
    #[error("conflict at head {head} on {} key(s): {}", conflicts.len(), list(conflicts))]
    Conflict {
        head: Hash,
        conflicts: Vec<Conflict>,
    },
    #[error("{target} cannot be fast-forwarded to {source_head}: the histories diverged")]
    NotFastForward { target: RefName, source_head: Hash },
    #[error("commit {0} does not exist")]
    CommitNotFound(Hash),
    /// Concurrent writers kept moving the ref: nothing was written, and the same request
    /// may well apply when retried (never a final answer).
    #[error(
        "ref {0} kept moving: lost {max} compare-and-swap races in a row (COMMIT_CAS_RETRIES_MAX); retry",
        max = crate::limits::COMMIT_CAS_RETRIES_MAX
    )]
    Contention(RefName),
    #[error(transparent)]
    Read(ReadError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request's idempotency claim was taken over by another server (its lease ran
    /// out): nothing was written; the other server's outcome is the request's.
    #[error(
        "the request under Idempotency-Key {0} ran past its lease and another server took it over; nothing was written here: retry with the same key for the outcome"
    )]
    ClaimLost(String),
    /// The meta value the write depended on (`WriteCtx::fence`) no longer holds: nothing
    /// was written. The fence's own message says why.
    #[error("{0}")]
    Fenced(String),
}

fn opt(h: &Option<Hash>) -> String {
    h.map_or_else(|| "none".to_owned(), |h| h.to_string())
}

impl WriteError {
    /// A wait for durability that failed (the store is poisoned): what was written may or
    /// may not survive.
    pub fn outcome_unknown(e: crate::backend::BackendError) -> WriteError {
        WriteError::Storage(StorageError::Backend(crate::backend::BackendError {
            outcome_unknown: true,
            unavailable: false,
            ..e
        }))
    }

    /// True when the write may or may not have applied.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            WriteError::Storage(e) => e.is_outcome_unknown(),
            WriteError::Read(ReadError::Storage(e)) => e.is_outcome_unknown(),
            _ => false,
        }
    }
}

impl From<ReadError> for WriteError {
    fn from(e: ReadError) -> WriteError {
        match e {
            ReadError::RefNotFound(n) => WriteError::RefNotFound(n),
            ReadError::Storage(s) => WriteError::Storage(s),
            other => WriteError::Read(other),
        }
    }
}

impl From<TreeError> for WriteError {
    fn from(e: TreeError) -> WriteError {
        WriteError::Storage(e.into())
    }
}

impl From<BackendError> for WriteError {
    fn from(e: BackendError) -> WriteError {
        WriteError::Storage(e.into())
    }
}
