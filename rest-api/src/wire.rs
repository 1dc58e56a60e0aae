//! The JSON of floe's own API (`/api/v1`): request and response bodies, camelCase, with
//! their OpenAPI schemas. Hashes are always 64 hex characters; times are RFC 3339 (UTC,
//! milliseconds) with the same instant in ms beside them where clients compute with it.

use std::collections::BTreeMap;

use floe_commits::{
    ChangeKind, Commit, ContentKey, EntryRef, Hash, KeyChange, RefKind, RefName, RefRecord,
    ReflogEntry,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Formats server or authored time (ms since the epoch) as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefKindBody {
    Branch,
    Tag,
}

impl From<RefKind> for RefKindBody {
    fn from(k: RefKind) -> RefKindBody {
        match k {
            RefKind::Branch => RefKindBody::Branch,
            RefKind::Tag => RefKindBody::Tag,
        }
    }
}

impl From<RefKindBody> for RefKind {
    fn from(k: RefKindBody) -> RefKind {
        match k {
            RefKindBody::Branch => RefKind::Branch,
            RefKindBody::Tag => RefKind::Tag,
        }
    }
}

/// A branch or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefBody {
    pub name: String,
    pub kind: RefKindBody,
    pub head: String,
    pub created_by: String,
    pub created_at: String,
    pub created_at_ms: i64,
}

impl RefBody {
    pub fn new(name: &RefName, r: &RefRecord) -> RefBody {
        RefBody {
            name: name.to_string(),
            kind: r.kind.into(),
            head: r.head.to_hex(),
            created_by: r.created_by.clone(),
            created_at: rfc3339(r.created_at_ms),
            created_at_ms: r.created_at_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefList {
    pub refs: Vec<RefBody>,
    /// Pass as `pageToken` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRefRequest {
    /// Letters, digits, `.`, `_`, `-` and `/` between parts; at most 200 bytes.
    pub name: String,
    /// `branch` (default) or `tag`.
    #[serde(default)]
    pub kind: Option<RefKindBody>,
    /// Any ref spec: `name`, `name@hash`, `hash`, `spec~N`, `name*time`. Default `main`.
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignRefRequest {
    /// The ref spec whose commit the branch will point at.
    pub target: String,
    /// Refuse (409) unless the branch is still at this head.
    #[serde(default)]
    pub expected_head: Option<String>,
}

/// A commit as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitBody {
    pub hash: String,
    pub parents: Vec<String>,
    pub author: String,
    pub committer: String,
    pub message: String,
    pub authored_at: String,
    pub authored_at_ms: i64,
    pub properties: BTreeMap<String, String>,
    /// 1 + the largest generation of the parents (the root commit is 0).
    pub generation: u64,
}

impl CommitBody {
    pub fn new(hash: &Hash, c: &Commit) -> CommitBody {
        CommitBody {
            hash: hash.to_hex(),
            parents: c.parents.iter().map(Hash::to_hex).collect(),
            author: c.author.clone(),
            committer: c.committer.clone(),
            message: c.message.clone(),
            authored_at: rfc3339(c.authored_at_ms),
            authored_at_ms: c.authored_at_ms,
            properties: c.properties.clone(),
            generation: c.generation,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogResponse {
    /// The commit the spec resolved to.
    pub head: String,
    pub commits: Vec<CommitBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKindBody {
    Added,
    Modified,
    Removed,
}

/// One key whose content differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeBody {
    /// The key, its elements joined by `.`.
    pub key: String,
    pub elements: Vec<String>,
    pub kind: ChangeKindBody,
    /// `namespace`, `iceberg-table` or `iceberg-view` (of the content after, else before).
    pub content_kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl ChangeBody {
    pub fn new(c: &KeyChange) -> ChangeBody {
        let kind = match ChangeKind::of(c.before.as_ref(), c.after.as_ref()) {
            Some(ChangeKind::Added) => ChangeKindBody::Added,
            Some(ChangeKind::Removed) => ChangeKindBody::Removed,
            _ => ChangeKindBody::Modified,
        };
        let content = c.after.or(c.before);
        ChangeBody {
            key: c.key.to_string(),
            elements: elements(&c.key),
            kind,
            content_kind: content.map_or("", |r| r.kind.as_str()).to_owned(),
            before: c.before.map(|r| r.hash.0.to_hex()),
            after: c.after.map(|r| r.hash.0.to_hex()),
        }
    }
}

pub fn elements(key: &ContentKey) -> Vec<String> {
    key.elements().map(str::to_owned).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    pub commit: CommitBody,
    /// The keys the commit changed against its first parent.
    pub changes: Vec<ChangeBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffResponse {
    pub from: String,
    pub to: String,
    pub changes: Vec<ChangeBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryBody {
    pub key: String,
    pub elements: Vec<String>,
    /// `namespace`, `iceberg-table` or `iceberg-view`.
    pub kind: String,
    pub content_id: String,
    pub content_hash: String,
}

impl EntryBody {
    pub fn new(e: &EntryRef) -> EntryBody {
        EntryBody {
            key: e.key.to_string(),
            elements: elements(&e.key),
            kind: e.content.kind.as_str().to_owned(),
            content_id: e.content.id.to_string(),
            content_hash: e.content.hash.0.to_hex(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntriesResponse {
    pub head: String,
    pub entries: Vec<EntryBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One move of one ref.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReflogEntryBody {
    /// Increases across all refs in the order the moves applied.
    pub seq: u64,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub kind: RefKindBody,
    /// `create`, `delete`, `commit`, `merge`, `cherry-pick`, `revert` or `assign`.
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    pub principal: String,
    pub at: String,
    pub at_ms: i64,
    pub properties: BTreeMap<String, String>,
}

impl ReflogEntryBody {
    pub fn new(e: &ReflogEntry) -> ReflogEntryBody {
        ReflogEntryBody {
            seq: e.seq,
            ref_name: e.ref_name.to_string(),
            kind: e.kind.into(),
            operation: e.operation.as_str().to_owned(),
            old: e.old.map(|h| h.to_hex()),
            new: e.new.map(|h| h.to_hex()),
            principal: e.principal.clone(),
            at: rfc3339(e.at_ms),
            at_ms: e.at_ms,
            properties: e.properties.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReflogResponse {
    pub entries: Vec<ReflogEntryBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceBody {
    /// The elements joined by `.`.
    pub namespace: String,
    pub elements: Vec<String>,
    pub content_id: String,
    pub properties: BTreeMap<String, String>,
}

impl NamespaceBody {
    pub fn new(n: &floe_catalog::Namespace) -> NamespaceBody {
        NamespaceBody {
            namespace: n.key.to_string(),
            elements: elements(&n.key),
            content_id: n.id.to_string(),
            properties: n.properties.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceResponse {
    /// The commit read (for a read) or written (for a create).
    pub head: String,
    pub namespace: NamespaceBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceList {
    pub head: String,
    pub namespaces: Vec<NamespaceBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateNamespaceRequest {
    /// The namespace's elements, outermost first (`["sales", "eu"]`).
    pub namespace: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The commit message (default: what happened).
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePropertiesRequest {
    #[serde(default)]
    pub updates: BTreeMap<String, String>,
    #[serde(default)]
    pub removals: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePropertiesResponse {
    /// The branch head after the write.
    pub head: String,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Removals that named no property.
    pub missing: Vec<String>,
}

/// The outcome of a write that made (or would have made) one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitResult {
    /// The branch head after the write.
    pub head: String,
    /// The head the write landed on.
    pub parent: String,
    /// False when nothing changed (the branch already held the result).
    pub created: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyBody {
    #[default]
    Normal,
    Squash,
    FfOnly,
    NoFf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionBody {
    #[default]
    Fail,
    Source,
    Target,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeRequestBody {
    /// The ref spec to merge from.
    pub source: String,
    /// Refuse (409) unless the target is still at this head.
    #[serde(default)]
    pub expected_head: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub strategy: StrategyBody,
    /// What to do with keys both sides changed and `resolutions` does not name.
    #[serde(default)]
    pub on_conflict: ResolutionBody,
    /// Per key (elements joined by `.`): how to resolve it.
    #[serde(default)]
    pub resolutions: BTreeMap<String, ResolutionBody>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// For Iceberg tables both sides changed: `serializable` or `snapshot` (default: the
    /// target table's `floe.merge.isolation-level`, else `serializable`).
    #[serde(default)]
    pub isolation: Option<IsolationBody>,
    /// Merge Iceberg tables both sides changed at the level of their snapshots and files
    /// (default); `false`: such a table conflicts like any key.
    #[serde(default = "yes")]
    pub table_merge: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IsolationBody {
    Serializable,
    Snapshot,
}

impl From<IsolationBody> for floe_catalog::Isolation {
    fn from(i: IsolationBody) -> Self {
        match i {
            IsolationBody::Serializable => floe_catalog::Isolation::Serializable,
            IsolationBody::Snapshot => floe_catalog::Isolation::Snapshot,
        }
    }
}

impl From<floe_catalog::Isolation> for IsolationBody {
    fn from(i: floe_catalog::Isolation) -> Self {
        match i {
            floe_catalog::Isolation::Serializable => IsolationBody::Serializable,
            floe_catalog::Isolation::Snapshot => IsolationBody::Snapshot,
        }
    }
}

/// What a merge did with an Iceberg table both sides changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableMergeBody {
    /// The table's key, its elements joined by `.`.
    pub key: String,
    pub isolation: IsolationBody,
    /// Snapshots written on the target (one when the source's change was squashed).
    pub snapshots_replayed: u64,
    /// The source's snapshots since the merge base.
    pub source_snapshots: u64,
    pub data_files_added: u64,
    pub delete_files_added: u64,
    pub files_removed: u64,
    /// The merged metadata file. A dry run names one it does not write (a real merge names
    /// its file after its own attempt, so the two names differ).
    pub metadata_location: String,
    /// Manifest lists and manifests the merge read.
    pub files_read: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MergeKindBody {
    FastForward,
    Merged,
    Squashed,
    NothingToMerge,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MergeResponse {
    pub kind: MergeKindBody,
    pub dry_run: bool,
    /// The source commit.
    pub source: String,
    /// The target's head before the merge.
    pub target_head: String,
    /// The target's head after it (what it would be, for a dry run).
    pub head: String,
    pub merge_bases: Vec<String>,
    /// How many keys the merge changes on the target.
    pub change_count: u64,
    /// What the merge changes on the target (the first 1000; `diff` pages through all).
    pub changes: Vec<ChangeBody>,
    /// The Iceberg tables both sides changed, merged at the level of their files.
    #[serde(default)]
    pub tables: Vec<TableMergeBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequestBody {
    /// The commit (any ref spec) whose change to apply or undo.
    pub commit: String,
    #[serde(default)]
    pub expected_head: Option<String>,
    /// The commit message (default: the picked commit's, or `Revert "..."`).
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusBody {
    pub status: String,
}
