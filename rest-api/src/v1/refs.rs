//! `/api/v1/refs` and `/api/v1/reflog`: list, create, get, assign, delete; the reflog.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, Catalog, IdemRequest, Principal};
use floe_commits::limits::{REFLOG_PAGE_MAX, REFS_PAGE_MAX};
use floe_commits::{Hash, RefKind, RefName, RefRecord};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{self, ApiPath, ApiQuery};
use crate::wire::{
    AssignRefRequest, CreateRefRequest, RefBody, RefKindBody, RefList, ReflogEntryBody,
    ReflogResponse,
};
use crate::write::{self, Call, Ctx, Reply, Write};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListRefsQuery {
    /// Only branches or only tags.
    pub kind: Option<RefKindBody>,
    /// At most this many refs (default and maximum 1000).
    pub page_size: Option<u32>,
    /// The `nextPageToken` of the previous page.
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeleteRefQuery {
    /// Refuse (409) unless the ref is still at this head.
    pub expected_head: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ReflogQuery {
    /// Only this ref's moves.
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    pub ref_name: Option<String>,
    /// At most this many entries (default 100, maximum 1000).
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/refs", tag = "refs", operation_id = "listRefs",
    params(ListRefsQuery),
    responses(
        (status = 200, description = "A page of refs in name order", body = RefList),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    ))]
pub async fn list_refs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListRefsQuery>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let after = q.page_token.as_deref().map(extract::ref_name).transpose()?;
        let limit = extract::page_size(q.page_size, REFS_PAGE_MAX, REFS_PAGE_MAX);
        let page =
            catalog.list_refs(principal, q.kind.map(RefKind::from), after.as_ref(), limit)?;
        Reply::json(
            StatusCode::OK,
            &RefList {
                refs: page.items.iter().map(|(n, r)| RefBody::new(n, r)).collect(),
                next_page_token: page.next.map(|n| n.to_string()),
            },
        )
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/refs", tag = "refs", operation_id = "createRef",
    params(("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = CreateRefRequest,
    responses(
        (status = 201, description = "The ref was created", body = RefBody),
        (status = 400, description = "Invalid name, spec or body", body = ErrorBody),
        (status = 404, description = "The source spec names nothing", body = ErrorBody),
        (status = 409, description = "The ref already exists", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn create_ref(State(state): State<AppState>, call: Call) -> Response {
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let req: CreateRefRequest = extract::json(&cx.call.body)?;
                let name = extract::ref_name(&req.name)?;
                let from = extract::spec(req.from.as_deref().unwrap_or("main"))?;
                let kind = req.kind.map_or(RefKind::Branch, RefKind::from);
                let record = catalog.create_ref(principal, &name, kind, &from, idem)?;
                Reply::json(StatusCode::CREATED, &RefBody::new(&name, &record))
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let kind = if rec.detail == "tag" {
                    RefKind::Tag
                } else {
                    RefKind::Branch
                };
                let record = replayed_ref(catalog, principal, rec, kind)?;
                let name = extract::ref_name(&rec.ref_name)?;
                Reply::json(StatusCode::CREATED, &RefBody::new(&name, &record))
            },
        },
    )
    .await
}

/// A ref as a recorded write left it: the live record when it still has that head, else
/// the record rebuilt from what the idempotency record holds.
fn replayed_ref(
    catalog: &Catalog,
    principal: &Principal,
    rec: &AppliedRecord,
    kind: RefKind,
) -> ApiResult<RefRecord> {
    let name = extract::ref_name(&rec.ref_name)?;
    let head = rec
        .head
        .ok_or_else(|| ApiError::internal(&"an applied ref write recorded no head"))?;
    match catalog.get_ref(principal, &name) {
        Ok(live) if live.head == head => Ok(live),
        _ => Ok(RefRecord {
            kind,
            head,
            created_by: principal.name().to_owned(),
            created_at_ms: catalog.now_ms(),
            attributes: Default::default(),
        }),
    }
}

#[utoipa::path(get, path = "/api/v1/refs/{name}", tag = "refs", operation_id = "getRef",
    params(("name" = String, Path, description = "The ref name (percent-encode `/`)")),
    responses(
        (status = 200, description = "The ref", body = RefBody),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 404, description = "No such ref", body = ErrorBody),
    ))]
pub async fn get_ref(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let name = extract::ref_name(&name)?;
        let record = catalog.get_ref(principal, &name)?;
        Reply::json(StatusCode::OK, &RefBody::new(&name, &record))
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/refs/{name}", tag = "refs", operation_id = "assignRef",
    params(("name" = String, Path, description = "The branch to move"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = AssignRefRequest,
    responses(
        (status = 200, description = "The branch now points at the target", body = RefBody),
        (status = 400, description = "Invalid input, or the ref is a tag", body = ErrorBody),
        (status = 404, description = "No such ref or target", body = ErrorBody),
        (status = 409, description = "The branch is not at the expected head", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn assign_ref(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    call: Call,
) -> Response {
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let name = extract::ref_name(&name)?;
                let req: AssignRefRequest = extract::json(&cx.call.body)?;
                let target = extract::spec(&req.target)?;
                let expected = extract::opt_hash(req.expected_head.as_deref(), "expectedHead")?;
                let record = catalog.assign_ref(principal, &name, &target, expected, idem)?;
                Reply::json(StatusCode::OK, &RefBody::new(&name, &record))
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let record = replayed_ref(catalog, principal, rec, RefKind::Branch)?;
                Reply::json(
                    StatusCode::OK,
                    &RefBody::new(&extract::ref_name(&rec.ref_name)?, &record),
                )
            },
        },
    )
    .await
}

#[utoipa::path(delete, path = "/api/v1/refs/{name}", tag = "refs", operation_id = "deleteRef",
    params(("name" = String, Path, description = "The ref to delete"), DeleteRefQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    responses(
        (status = 204, description = "The ref is gone"),
        (status = 400, description = "Invalid input, or the default branch", body = ErrorBody),
        (status = 404, description = "No such ref", body = ErrorBody),
        (status = 409, description = "The ref is not at the expected head", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn delete_ref(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteRefQuery>,
    call: Call,
) -> Response {
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let name: RefName = extract::ref_name(&name)?;
        let expected: Option<Hash> = extract::opt_hash(q.expected_head.as_deref(), "expectedHead")?;
        catalog.delete_ref(principal, &name, expected, idem)?;
        Ok(())
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/reflog", tag = "refs", operation_id = "reflog",
    params(ReflogQuery),
    responses(
        (status = 200, description = "Ref moves, newest first", body = ReflogResponse),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    ))]
pub async fn reflog(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ReflogQuery>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let name = q.ref_name.as_deref().map(extract::ref_name).transpose()?;
        let before = q
            .page_token
            .as_deref()
            .map(|t| {
                t.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "pageToken {t:?} is not one this server handed out"
                    ))
                })
            })
            .transpose()?;
        let limit = extract::page_size(q.page_size, 100, REFLOG_PAGE_MAX);
        let page = catalog.reflog(principal, name.as_ref(), before, limit)?;
        Reply::json(
            StatusCode::OK,
            &ReflogResponse {
                entries: page.items.iter().map(ReflogEntryBody::new).collect(),
                next_page_token: page.next.map(|s| s.to_string()),
            },
        )
    })
    .await
}
