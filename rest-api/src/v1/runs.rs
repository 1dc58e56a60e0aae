//! `/api/v1/runs`: the records of runs (imports today; pipeline runs later), read-only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use floe_catalog::{RunKind, RunRecord, RunState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ErrorBody;
use crate::extract::{self, ApiPath, ApiQuery};
use crate::write::{self, Reply};

/// Runs listed per page by default and at most.
const RUNS_PAGE_MAX: usize = 1_000;

/// A run as its record keeps it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunBody {
    pub id: String,
    /// `import` (pipeline runs arrive later).
    pub kind: String,
    pub principal: String,
    /// The branch the run lands on.
    pub target: String,
    /// The target's head when the run forked (64 hex characters).
    pub fork: String,
    /// The temporary branch the run works on (`floe-run/<id>`); gone once landed.
    pub branch: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
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
}

impl From<&RunRecord> for RunBody {
    fn from(r: &RunRecord) -> RunBody {
        RunBody {
            id: r.id.clone(),
            kind: match r.kind {
                RunKind::Import => "import".to_owned(),
            },
            principal: r.principal.clone(),
            target: r.target.clone(),
            fork: r.fork.clone(),
            branch: r.branch().to_string(),
            state: match r.state {
                RunState::Running => "running",
                RunState::Succeeded => "succeeded",
                RunState::Failed => "failed",
                RunState::Cancelled => "cancelled",
            }
            .to_owned(),
            source: r.source.clone(),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            landed: r.landed.clone(),
            error: r.error.clone(),
            sealed: matches!(r.state, RunState::Failed | RunState::Cancelled) && !r.promoted,
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
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", operation_id = "listRuns",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "A page of runs, oldest first", body = RunList),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    ))]
pub async fn list_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListRunsQuery>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let limit = extract::page_size(q.page_size, RUNS_PAGE_MAX, RUNS_PAGE_MAX);
        let (runs, next) = catalog.list_runs(principal, q.page_token.as_deref(), limit)?;
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
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let run = catalog.get_run(principal, &id)?;
        Reply::json(StatusCode::OK, &RunBody::from(&run))
    })
    .await
}
