//! History at a ref spec: log, one commit with its changes, diff, entries.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{RUN_ID_PROPERTY, RUN_PART_PROPERTY, RUN_REVERTED_PROPERTY};
use floe_commits::LogFilter;
use floe_commits::limits::{ENTRIES_PAGE_MAX, LOG_PAGE_MAX};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{self, ApiPath, ApiQuery};
use crate::wire::{
    ChangeBody, CommitBody, CommitResponse, DiffResponse, EntriesResponse, EntryBody, LogResponse,
};
use crate::write::{self, Call, Reply};

/// Changes listed per page by default.
const CHANGES_PAGE_DEFAULT: usize = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// At most this many commits (default 100, maximum 1000).
    pub page_size: Option<u32>,
    /// The `nextPageToken` of the previous page, as it came (signed for this log).
    pub page_token: Option<String>,
    /// Case-insensitive substring of the author or committer.
    pub author: Option<String>,
    /// Authored at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Authored at or before this RFC 3339 time.
    pub until: Option<String>,
    /// Case-insensitive substring of the message.
    pub grep: Option<String>,
    /// Only commits that changed a key at or under this prefix (elements joined by `.`).
    pub path: Option<String>,
    /// Only commits of this run: its landing (or, with `--no-transaction`, its parts) and
    /// any revert of it.
    pub run: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct KeyPageQuery {
    /// Only keys at or under this prefix (elements joined by `.`).
    pub prefix: Option<String>,
    /// At most this many items (default 1000, maximum 10000).
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// At most this many changes (default 1000, maximum 10000).
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

fn time_ms(text: Option<&str>, what: &str) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "{what} must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got {t:?}"
                ))
            })?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ApiError::bad_request(format!("{what} is out of range")))
    })
    .transpose()
}

#[utoipa::path(get, path = "/api/v1/trees/{ref}/log", tag = "history", operation_id = "log",
    params(("ref" = String, Path, description = "A ref spec: name, name@hash, hash, spec~N, name*time"), LogQuery),
    responses(
        (status = 200, description = "First-parent history, newest first", body = LogResponse),
        (status = 400, description = "Invalid spec or filter", body = ErrorBody),
        (status = 404, description = "The spec names nothing", body = ErrorBody),
    ))]
pub async fn log(
    State(state): State<AppState>,
    ApiPath(spec): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let spec = extract::spec(&spec)?;
        let page = q.page_token.as_deref();
        let filter = LogFilter {
            author: q.author,
            since_ms: time_ms(q.since.as_deref(), "since")?,
            until_ms: time_ms(q.until.as_deref(), "until")?,
            grep: q.grep,
            path: q.path.as_deref().map(extract::key).transpose()?,
            properties: Default::default(),
            any_of: q
                .run
                .iter()
                .flat_map(|run| {
                    [RUN_ID_PROPERTY, RUN_PART_PROPERTY, RUN_REVERTED_PROPERTY]
                        .map(|p| (p.to_owned(), run.clone()))
                })
                .collect(),
        };
        let limit = extract::page_size(q.page_size, 100, LOG_PAGE_MAX);
        let (at, log, next) = catalog.log(principal, &spec, page, &filter, limit)?;
        Reply::json(
            StatusCode::OK,
            &LogResponse {
                head: at.hash.to_hex(),
                commits: log
                    .items
                    .iter()
                    .map(|(h, c)| CommitBody::new(h, c))
                    .collect(),
                next_page_token: next,
            },
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/commits/{spec}", tag = "history", operation_id = "getCommit",
    params(("spec" = String, Path, description = "A commit: a hash (or unique prefix of 8+), or any ref spec"), ChangesQuery),
    responses(
        (status = 200, description = "The commit and the keys it changed", body = CommitResponse),
        (status = 400, description = "Invalid or ambiguous spec", body = ErrorBody),
        (status = 404, description = "No such commit", body = ErrorBody),
    ))]
pub async fn get_commit(
    State(state): State<AppState>,
    ApiPath(spec): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let spec = extract::spec(&spec)?;
        let after = extract::parse_key_token(q.page_token.as_deref())?;
        let limit = extract::page_size(q.page_size, CHANGES_PAGE_DEFAULT, ENTRIES_PAGE_MAX);
        let detail = catalog.commit_detail(principal, &spec, after.as_ref(), limit)?;
        Reply::json(
            StatusCode::OK,
            &CommitResponse {
                commit: CommitBody::new(&detail.hash, &detail.commit),
                changes: detail.changes.items.iter().map(ChangeBody::new).collect(),
                next_page_token: detail.changes.next.as_ref().map(extract::key_token),
            },
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/diff/{from}/{to}", tag = "history", operation_id = "diff",
    params(("from" = String, Path, description = "A ref spec"), ("to" = String, Path, description = "A ref spec"), KeyPageQuery),
    responses(
        (status = 200, description = "What changes from `from` to `to`, in key order", body = DiffResponse),
        (status = 400, description = "Invalid spec or prefix", body = ErrorBody),
        (status = 404, description = "A spec names nothing", body = ErrorBody),
    ))]
pub async fn diff(
    State(state): State<AppState>,
    ApiPath((from, to)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<KeyPageQuery>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let from = extract::spec(&from)?;
        let to = extract::spec(&to)?;
        let prefix = q.prefix.as_deref().map(extract::key).transpose()?;
        let after = extract::parse_key_token(q.page_token.as_deref())?;
        let limit = extract::page_size(q.page_size, CHANGES_PAGE_DEFAULT, ENTRIES_PAGE_MAX);
        let (a, b, page) = catalog.diff(
            principal,
            &from,
            &to,
            prefix.as_ref(),
            after.as_ref(),
            limit,
        )?;
        Reply::json(
            StatusCode::OK,
            &DiffResponse {
                from: a.to_hex(),
                to: b.to_hex(),
                changes: page.items.iter().map(ChangeBody::new).collect(),
                next_page_token: page.next.as_ref().map(extract::key_token),
            },
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/trees/{ref}/entries", tag = "history", operation_id = "entries",
    params(("ref" = String, Path, description = "A ref spec"), KeyPageQuery),
    responses(
        (status = 200, description = "Keys at the spec's commit, in key order", body = EntriesResponse),
        (status = 400, description = "Invalid spec or prefix", body = ErrorBody),
        (status = 404, description = "The spec names nothing", body = ErrorBody),
    ))]
pub async fn entries(
    State(state): State<AppState>,
    ApiPath(spec): ApiPath<String>,
    ApiQuery(q): ApiQuery<KeyPageQuery>,
    call: Call,
) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let spec = extract::spec(&spec)?;
        let prefix = q.prefix.as_deref().map(extract::key).transpose()?;
        let after = extract::parse_key_token(q.page_token.as_deref())?;
        let limit = extract::page_size(q.page_size, CHANGES_PAGE_DEFAULT, ENTRIES_PAGE_MAX);
        let (at, page) =
            catalog.entries(principal, &spec, prefix.as_ref(), after.as_ref(), limit)?;
        Reply::json(
            StatusCode::OK,
            &EntriesResponse {
                head: at.to_hex(),
                entries: page.items.iter().map(EntryBody::new).collect(),
                next_page_token: page.next.as_ref().map(extract::key_token),
            },
        )
    })
    .await
}
