//! `/api/v1/trees/{ref}/merge`, `/cherry-pick` and `/revert`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{
    AppliedRecord, Authored, IdemRequest, Isolation, MergeRequest, TableMergeOptions,
    TableMergeReport,
};
use floe_commits::merge::MERGE_SOURCE;
use floe_commits::{
    CommitMeta, Hash, MergeKind, MergeOptions, MergeOutcome, MergeStrategy, RefSpec, Resolution,
};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{self, ApiPath};
use crate::metrics::Metrics;
use crate::v1::namespaces::commit_replay;
use crate::wire::{
    ChangeBody, CommitResult, MergeKindBody, MergeRequestBody, MergeResponse, ReplayRequestBody,
    ResolutionBody, StrategyBody, TableMergeBody,
};
use crate::write::{self, Call, Ctx, Reply, Write};

/// Changes a merge answer lists at most; `diff` pages through the rest.
pub const MERGE_CHANGES_LISTED_MAX: usize = 1_000;

fn resolution(r: ResolutionBody) -> Resolution {
    match r {
        ResolutionBody::Fail => Resolution::Fail,
        ResolutionBody::Source => Resolution::TakeSource,
        ResolutionBody::Target => Resolution::KeepTarget,
    }
}

fn kind_body(k: MergeKind) -> MergeKindBody {
    match k {
        MergeKind::FastForward => MergeKindBody::FastForward,
        MergeKind::Merged => MergeKindBody::Merged,
        MergeKind::Squashed => MergeKindBody::Squashed,
        MergeKind::NothingToMerge => MergeKindBody::NothingToMerge,
    }
}

fn merge_request(req: MergeRequestBody) -> ApiResult<(RefSpec, MergeRequest)> {
    let source = extract::spec(&req.source)?;
    let mut resolutions = std::collections::BTreeMap::new();
    for (k, r) in req.resolutions {
        resolutions.insert(extract::key(&k)?, resolution(r));
    }
    let options = MergeOptions {
        strategy: match req.strategy {
            StrategyBody::Normal => MergeStrategy::Normal,
            StrategyBody::Squash => MergeStrategy::Squash,
            StrategyBody::FfOnly => MergeStrategy::FastForwardOnly,
            StrategyBody::NoFf => MergeStrategy::NoFastForward,
        },
        dry_run: req.dry_run,
        on_conflict: resolution(req.on_conflict),
        resolutions,
        meta: CommitMeta {
            message: req.message.unwrap_or_default(),
            properties: req.properties,
            ..CommitMeta::default()
        },
    };
    Ok((
        source,
        MergeRequest {
            expected_head: extract::opt_hash(req.expected_head.as_deref(), "expectedHead")?,
            options,
            author: None,
            tables: TableMergeOptions {
                enabled: req.table_merge,
                isolation: req.isolation.map(Isolation::from),
                target_appends_only: false,
            },
        },
    ))
}

fn table_body(t: &TableMergeReport) -> TableMergeBody {
    TableMergeBody {
        key: t.key.to_string(),
        isolation: t.isolation.into(),
        snapshots_replayed: t.snapshots_replayed as u64,
        source_snapshots: t.source_snapshots as u64,
        data_files_added: t.data_files_added as u64,
        delete_files_added: t.delete_files_added as u64,
        files_removed: t.files_removed as u64,
        metadata_location: t.metadata_location.clone(),
        files_read: t.files_read as u64,
        warnings: t.warnings.clone(),
    }
}

fn merge_response(
    source: Hash,
    outcome: &MergeOutcome,
    tables: &[TableMergeReport],
) -> MergeResponse {
    MergeResponse {
        kind: kind_body(outcome.kind),
        dry_run: outcome.dry_run,
        source: source.to_hex(),
        target_head: outcome.target_head.to_hex(),
        head: outcome.head.to_hex(),
        merge_bases: outcome.merge_bases.iter().map(Hash::to_hex).collect(),
        change_count: outcome.changes.len() as u64,
        changes: outcome
            .changes
            .iter()
            .take(MERGE_CHANGES_LISTED_MAX)
            .map(ChangeBody::new)
            .collect(),
        tables: tables.iter().map(table_body).collect(),
    }
}

fn count_merge(metrics: &Metrics, outcome: &MergeOutcome) {
    if outcome.dry_run {
        return;
    }
    let kind = match outcome.kind {
        MergeKind::FastForward => "fast-forward",
        MergeKind::Merged => "merged",
        MergeKind::Squashed => "squashed",
        MergeKind::NothingToMerge => "nothing-to-merge",
    };
    metrics.merge(kind);
    if matches!(outcome.kind, MergeKind::Merged | MergeKind::Squashed) {
        metrics.commit();
    }
}

#[utoipa::path(post, path = "/api/v1/trees/{ref}/merge", tag = "merges", operation_id = "merge",
    params(("ref" = String, Path, description = "The branch to merge into"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = MergeRequestBody,
    responses(
        (status = 200, description = "Merged (or, for a dry run, what would happen)", body = MergeResponse),
        (status = 400, description = "Invalid input, or the target is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such branch or source", body = ErrorBody),
        (status = 409, description = "Conflicting keys, a stale expected head, or no fast-forward", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn merge(
    State(state): State<AppState>,
    ApiPath(branch): ApiPath<String>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let target = extract::spec(&branch)?;
                let (source, request) = merge_request(extract::json(&cx.call.body)?)?;
                let (from, outcome, tables) =
                    catalog.merge(principal, &source, &target, &request, idem)?;
                count_merge(&metrics, &outcome);
                Reply::json(StatusCode::OK, &merge_response(from, &outcome, &tables))
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let (_, request) = merge_request(extract::json(&cx.call.body)?)?;
                let source = extract::hash(&rec.detail, "the recorded merge source")?;
                let (Some(head), Some(previous)) = (rec.head, rec.previous) else {
                    return Err(ApiError::internal(&"an applied merge recorded no heads"));
                };
                let at = |h: &Hash| extract::spec(&h.to_hex());
                let commit = catalog
                    .commit_detail(principal, &at(&head)?, None, 1)?
                    .commit;
                // A fast-forward exactly when the new head is the source (whatever kind of
                // commit the source is); otherwise the merge commit says which it was.
                let kind = if head == source {
                    MergeKind::FastForward
                } else if commit.parents.len() == 2 {
                    MergeKind::Merged
                } else if commit.properties.contains_key(MERGE_SOURCE) {
                    MergeKind::Squashed
                } else {
                    MergeKind::FastForward
                };
                let (_, _, changes) = catalog.diff(
                    principal,
                    &at(&previous)?,
                    &at(&head)?,
                    None,
                    None,
                    MERGE_CHANGES_LISTED_MAX,
                )?;
                let outcome = MergeOutcome {
                    kind,
                    dry_run: request.options.dry_run,
                    target_head: previous,
                    head,
                    merge_bases: catalog.merge_bases(principal, source, previous)?,
                    changes: changes.items,
                };
                let tables = floe_catalog::reports_of(&commit.properties);
                Reply::json(StatusCode::OK, &merge_response(source, &outcome, &tables))
            },
        },
    )
    .await
}

fn replay_parts(body: &[u8]) -> ApiResult<(RefSpec, Option<Hash>, Authored)> {
    let req: ReplayRequestBody = extract::json(body)?;
    Ok((
        extract::spec(&req.commit)?,
        extract::opt_hash(req.expected_head.as_deref(), "expectedHead")?,
        Authored {
            author: None,
            message: req.message,
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/trees/{ref}/cherry-pick", tag = "merges", operation_id = "cherryPick",
    params(("ref" = String, Path, description = "The branch to apply the change to"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = ReplayRequestBody,
    responses(
        (status = 200, description = "Applied as one commit (created is false when the branch already had it)", body = CommitResult),
        (status = 400, description = "Invalid input, or the target is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such branch or commit", body = ErrorBody),
        (status = 409, description = "The branch diverged on a key, or a stale expected head", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn cherry_pick(
    State(state): State<AppState>,
    ApiPath(branch): ApiPath<String>,
    call: Call,
) -> Response {
    replay_write(state, branch, call, false).await
}

#[utoipa::path(post, path = "/api/v1/trees/{ref}/revert", tag = "merges", operation_id = "revert",
    params(("ref" = String, Path, description = "The branch to undo the change on"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = ReplayRequestBody,
    responses(
        (status = 200, description = "Undone as one commit (created is false when nothing was left to undo)", body = CommitResult),
        (status = 400, description = "Invalid input, or the target is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such branch or commit", body = ErrorBody),
        (status = 409, description = "The branch diverged on a key, or a stale expected head", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn revert(
    State(state): State<AppState>,
    ApiPath(branch): ApiPath<String>,
    call: Call,
) -> Response {
    replay_write(state, branch, call, true).await
}

async fn replay_write(state: AppState, branch: String, call: Call, invert: bool) -> Response {
    let metrics = state.metrics.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let branch = extract::spec(&branch)?;
                let (commit, expected, authored) = replay_parts(&cx.call.body)?;
                let outcome = if invert {
                    catalog.revert(principal, &commit, &branch, expected, &authored, idem)?
                } else {
                    catalog.cherry_pick(principal, &commit, &branch, expected, &authored, idem)?
                };
                if outcome.created {
                    metrics.commit();
                }
                Reply::json(
                    StatusCode::OK,
                    &CommitResult {
                        head: outcome.commit.to_hex(),
                        parent: outcome.parent.to_hex(),
                        created: outcome.created,
                    },
                )
            },
            replay: commit_replay,
        },
    )
    .await
}
