//! `/api/v1/runs`: the records of runs (imports and pipeline runs), their logs and code,
//! the promotion of a failed run, and `/api/v1/maintenance`, one pass of the server's
//! retention. Submitting a pipeline run is `submit.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, IdemRequest, RetentionReport, RunKind, RunRecord, RunState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ErrorBody;
use crate::extract::{self, ApiPath, ApiQuery};
use crate::write::{self, Call, Ctx, Reply, Write};

/// Runs listed per page by default and at most.
const RUNS_PAGE_MAX: usize = 1_000;

/// A run as its record keeps it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunBody {
    pub id: String,
    /// `import` or `run` (a pipeline run).
    pub kind: String,
    pub principal: String,
    /// The branch the run lands on.
    pub target: String,
    /// The target's head when the run forked (64 hex characters).
    pub fork: String,
    /// The temporary branch the run works on (`floe-run/<id>`); gone once landed.
    pub branch: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// What the run does.
    pub source: String,
    pub started_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// The landing commit, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landed: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A failed run's commits are sealed unless promoted.
    pub sealed: bool,
    /// A failed or cancelled run whose work may be used (`floe run promote`).
    pub promoted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_ms: Option<i64>,
    /// A pipeline run's project, code snapshot, parameters (secrets masked), options and
    /// nodes (each with its kind, state, times, rows, bytes, output table and error; an
    /// expectation's `passed`; a Python node's worker `environment`; `cached` and
    /// `cachedFrom` when its output was an earlier run's, from the results cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub pipeline: Option<serde_json::Value>,
    /// The tables the run writes (`namespace.table`), as declared when it was submitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

impl From<&RunRecord> for RunBody {
    fn from(r: &RunRecord) -> RunBody {
        RunBody {
            id: r.id.clone(),
            kind: r.kind.as_str().to_owned(),
            principal: r.principal.clone(),
            target: r.target.clone(),
            fork: r.fork.clone(),
            branch: r.branch().to_string(),
            state: r.state.as_str().to_owned(),
            source: r.source.clone(),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            landed: r.landed.clone(),
            error: r.error.clone(),
            sealed: matches!(r.state, RunState::Failed | RunState::Cancelled) && !r.promoted,
            promoted: r.promoted,
            promoted_by: r.promoted_by.clone(),
            promoted_ms: r.promoted_ms,
            pipeline: r.pipeline.clone(),
            tables: r.written_tables(),
        }
    }
}

/// A page of runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// At most this many runs (default and maximum 1000).
    pub page_size: Option<u32>,
    /// The `nextPageToken` of the previous page.
    pub page_token: Option<String>,
    /// Only runs in this state (`queued`, `running`, `succeeded`, `failed`, `cancelled`).
    pub state: Option<String>,
    /// Only runs landing on this branch.
    pub target: Option<String>,
    /// Only runs of this kind (`import`, `run`).
    pub kind: Option<String>,
    /// Only pipeline runs of this project (its id or its name).
    pub project: Option<String>,
    /// Only runs that write this table (`namespace.table`): pipeline runs that materialize
    /// it, imports into it.
    pub table: Option<String>,
}

/// The filter a listing asks for, checked.
fn filter(q: &ListRunsQuery) -> crate::error::ApiResult<impl Fn(&RunRecord) -> bool + use<>> {
    const STATES: [RunState; 5] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(
            STATES
                .into_iter()
                .find(|k| k.as_str() == s)
                .ok_or_else(|| {
                    crate::error::ApiError::bad_request(format!(
                        "state must be queued, running, succeeded, failed or cancelled, got {s:?}"
                    ))
                })?,
        ),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(
            [RunKind::Import, RunKind::Run]
                .into_iter()
                .find(|r| r.as_str() == k)
                .ok_or_else(|| {
                    crate::error::ApiError::bad_request(format!(
                        "kind must be import or run, got {k:?}"
                    ))
                })?,
        ),
    };
    let table = q.table.as_deref().map(extract::key).transpose()?;
    let (target, project) = (q.target.clone(), q.project.clone());
    Ok(move |r: &RunRecord| {
        state.is_none_or(|s| r.state == s)
            && kind.is_none_or(|k| r.kind == k)
            && target.as_ref().is_none_or(|t| r.target == *t)
            && table.as_ref().is_none_or(|t| r.writes(&t.to_string()))
            && project.as_ref().is_none_or(|p| {
                let field = |name: &str| r.pipeline.as_ref().and_then(|v| v[name].as_str());
                field("projectId") == Some(p) || field("projectName") == Some(p)
            })
    })
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", operation_id = "listRuns",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "A page of runs, oldest first (a sparse filter may answer fewer runs than the page size, with a token to go on)", body = RunList),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    ))]
pub async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListRunsQuery>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let limit = extract::page_size(q.page_size, RUNS_PAGE_MAX, RUNS_PAGE_MAX);
        let keep = filter(&q)?;
        let (runs, next) = catalog.list_runs(principal, q.page_token.as_deref(), limit, &keep)?;
        Reply::json(
            StatusCode::OK,
            &RunList {
                runs: runs.iter().map(RunBody::from).collect(),
                next_page_token: next,
            },
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", operation_id = "getRun",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
pub async fn get_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let run = catalog.get_run(principal, &id)?;
        Reply::json(StatusCode::OK, &RunBody::from(&run))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/promote", tag = "runs", operation_id = "promoteRun",
    params(("id" = String, Path, description = "The run's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key gets the same answer")),
    responses(
        (status = 200, description = "The run, promoted: its commits may be used (promoting twice changes nothing)", body = RunBody),
        (status = 400, description = "Invalid input (an Idempotency-Key that is not a UUIDv7)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is running or succeeded: only a failed or cancelled run is promoted", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn promote_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    call: Call,
) -> Response {
    let again = id.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, _: Option<&IdemRequest>| {
                let run = cx.catalog.promote_run(&cx.principal, &id)?;
                Reply::json(StatusCode::OK, &RunBody::from(&run))
            },
            replay: move |cx: &Ctx, _: &AppliedRecord| {
                let run = cx.catalog.get_run(&cx.principal, &again)?;
                Reply::json(StatusCode::OK, &RunBody::from(&run))
            },
        },
    )
    .await
}

/// Where to revert a run (`POST /api/v1/runs/{id}/revert`); an empty body reverts it on
/// its target.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevertRunRequest {
    /// The branch to revert it on (default: the run's target).
    #[serde(default)]
    pub on: Option<String>,
}

/// A run's landing commit, reverted.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevertRunResult {
    pub run: String,
    /// The branch written.
    pub branch: String,
    /// The reverted landing commit.
    pub reverted: String,
    #[serde(flatten)]
    pub commit: crate::wire::CommitResult,
}

/// The answer of a run's revert.
fn reverted(
    run: &str,
    branch: String,
    landing: String,
    head: floe_commits::Hash,
    parent: floe_commits::Hash,
    created: bool,
) -> crate::error::ApiResult<Reply> {
    Reply::json(
        StatusCode::OK,
        &RevertRunResult {
            run: run.to_owned(),
            branch,
            reverted: landing,
            commit: crate::wire::CommitResult {
                head: head.to_hex(),
                parent: parent.to_hex(),
                created,
            },
        },
    )
}

fn revert_request(body: &[u8]) -> crate::error::ApiResult<RevertRunRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RevertRunRequest::default());
    }
    extract::json(body)
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/revert", tag = "runs", operation_id = "revertRun",
    params(("id" = String, Path, description = "The run's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body(content = Option<RevertRunRequest>, description = "Optional: the branch to revert it on"),
    responses(
        (status = 200, description = "Every table the run wrote reverted in one commit (created is false when they already were as before the run)", body = RevertRunResult),
        (status = 400, description = "Invalid input, or the branch is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such run or branch", body = ErrorBody),
        (status = 409, description = "RunNotRevertible: a table the run wrote changed since (the message names them; nothing was reverted), or the run did not land", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn revert_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    call: Call,
) -> Response {
    let again = id.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let req = revert_request(&cx.call.body)?;
                let on = req.on.as_deref().map(extract::spec).transpose()?;
                let done = cx
                    .catalog
                    .revert_run(&cx.principal, &id, on.as_ref(), idem)?;
                let outcome = done.outcome;
                reverted(
                    &done.record.id,
                    done.branch,
                    done.record.landed.clone().unwrap_or_default(),
                    outcome.commit,
                    outcome.parent,
                    outcome.created,
                )
            },
            // From what the write recorded (the branch, the reverted commit), so a replay
            // answers as the first call did even once the run's record has expired.
            replay: move |_: &Ctx, rec: &AppliedRecord| {
                let head = rec.head.ok_or_else(|| {
                    crate::error::ApiError::internal(&"an applied revert recorded no head")
                })?;
                reverted(
                    &again,
                    rec.ref_name.clone(),
                    rec.detail.clone(),
                    head,
                    rec.previous.unwrap_or(head),
                    true,
                )
            },
        },
    )
    .await
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceBody {
    /// Runs left `running` after they landed (their bookkeeping failed), now succeeded.
    pub settled_runs: usize,
    /// Failed or cancelled runs' branches deleted after `--run-retention`.
    pub pruned_run_branches: usize,
    /// Finished runs' records deleted after `--run-record-retention`.
    pub expired_run_records: usize,
    /// Idempotency records deleted after their lifetime.
    pub expired_idempotency_records: usize,
    /// Leases of servers gone for a day, removed (several servers on one catalog).
    pub removed_server_leases: usize,
    /// Run logs whose run's record is gone, deleted.
    pub removed_run_logs: usize,
    /// Code snapshots no run's record names any more, deleted (this server's copies and,
    /// with several servers, the catalog's).
    pub removed_code_snapshots: usize,
    /// True when a bound stopped the pass early: another pass has more to do.
    pub more: bool,
}

impl From<RetentionReport> for MaintenanceBody {
    fn from(r: RetentionReport) -> MaintenanceBody {
        MaintenanceBody {
            settled_runs: r.settled_runs,
            pruned_run_branches: r.pruned_run_branches,
            expired_run_records: r.expired_run_records,
            expired_idempotency_records: r.expired_idempotency_records,
            removed_server_leases: r.removed_server_leases,
            removed_run_logs: 0,
            removed_code_snapshots: 0,
            more: r.more,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/maintenance", tag = "service", operation_id = "maintain",
    responses(
        (status = 200, description = "One maintenance pass ran now (the server also runs one periodically)", body = MaintenanceBody),
    ))]
pub async fn maintain(State(state): State<AppState>, call: Call) -> Response {
    let retention = state.options.retention;
    #[cfg(feature = "compute")]
    let runner = state.runner.clone();
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let report = catalog.maintain(principal, &retention)?;
        #[allow(unused_mut)]
        let mut body = MaintenanceBody::from(report);
        // Logs and code snapshots go with their run's record.
        #[cfg(feature = "compute")]
        {
            let swept = runner
                .sweep(principal)
                .map_err(crate::error::ApiError::from)?;
            body.removed_run_logs = swept.logs;
            body.removed_code_snapshots = swept.code_snapshots;
        }
        Reply::json(StatusCode::OK, &body)
    })
    .await
}
