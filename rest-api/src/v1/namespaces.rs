//! `/api/v1/trees/{ref}/namespaces`: list, create, get, drop, update properties.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, Authored, IdemRequest, PropertiesUpdate};
use floe_commits::{Hash, RefSpec};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{self, ApiPath, ApiQuery};
use crate::wire::{
    CommitResult, CreateNamespaceRequest, NamespaceBody, NamespaceList, NamespaceResponse,
    UpdatePropertiesRequest, UpdatePropertiesResponse,
};
use crate::write::{self, Call, Ctx, Reply, Write};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListNamespacesQuery {
    /// Only namespaces under this one (elements joined by `.`).
    pub parent: Option<String>,
    /// Only direct children (of `parent`, or top-level ones); default: all descendants.
    #[serde(default)]
    pub children_only: bool,
    /// At most this many namespaces (default and maximum 1000).
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

fn head_of(record: &AppliedRecord) -> ApiResult<Hash> {
    record
        .head
        .ok_or_else(|| ApiError::internal(&"an applied commit recorded no head"))
}

fn hash_spec(h: &Hash) -> ApiResult<RefSpec> {
    extract::spec(&h.to_hex())
}

#[utoipa::path(get, path = "/api/v1/trees/{ref}/namespaces", tag = "namespaces", operation_id = "listNamespaces",
    params(("ref" = String, Path, description = "A ref spec"), ListNamespacesQuery),
    responses(
        (status = 200, description = "Namespaces in key order", body = NamespaceList),
        (status = 400, description = "Invalid spec or parent", body = ErrorBody),
        (status = 404, description = "The spec or the parent names nothing", body = ErrorBody),
    ))]
pub async fn list_namespaces(
    State(state): State<AppState>,
    ApiPath(spec): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListNamespacesQuery>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let spec = extract::spec(&spec)?;
        let parent = q.parent.as_deref().map(extract::key).transpose()?;
        let after = extract::parse_key_token(q.page_token.as_deref())?;
        let limit = extract::page_size(q.page_size, 1_000, 1_000);
        let (at, page) = catalog.list_namespaces(
            principal,
            &spec,
            parent.as_ref(),
            q.children_only,
            after.as_ref(),
            limit,
        )?;
        Reply::json(
            StatusCode::OK,
            &NamespaceList {
                head: at.to_hex(),
                namespaces: page.items.iter().map(NamespaceBody::new).collect(),
                next_page_token: page.next.as_ref().map(extract::key_token),
            },
        )
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/trees/{ref}/namespaces", tag = "namespaces", operation_id = "createNamespace",
    params(("ref" = String, Path, description = "The branch to write to"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = CreateNamespaceRequest,
    responses(
        (status = 201, description = "Created, in one commit", body = NamespaceResponse),
        (status = 400, description = "Invalid input, or the ref is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such branch, or the parent namespace is missing", body = ErrorBody),
        (status = 409, description = "It already exists", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn create_namespace(
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
                let branch = extract::spec(&branch)?;
                let req: CreateNamespaceRequest = extract::json(&cx.call.body)?;
                let key = extract::key_of(&req.namespace)?;
                let authored = Authored {
                    author: None,
                    message: req.message,
                };
                let (outcome, ns) = catalog.create_namespace(
                    principal,
                    &branch,
                    &key,
                    req.properties,
                    &authored,
                    idem,
                )?;
                metrics.commit();
                Reply::json(
                    StatusCode::CREATED,
                    &NamespaceResponse {
                        head: outcome.commit.to_hex(),
                        namespace: NamespaceBody::new(&ns),
                    },
                )
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let req: CreateNamespaceRequest = extract::json(&cx.call.body)?;
                let key = extract::key_of(&req.namespace)?;
                let head = head_of(rec)?;
                let (_, ns) = catalog.get_namespace(principal, &hash_spec(&head)?, &key)?;
                Reply::json(
                    StatusCode::CREATED,
                    &NamespaceResponse {
                        head: head.to_hex(),
                        namespace: NamespaceBody::new(&ns),
                    },
                )
            },
        },
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/trees/{ref}/namespaces/{namespace}", tag = "namespaces", operation_id = "getNamespace",
    params(("ref" = String, Path, description = "A ref spec"),
        ("namespace" = String, Path, description = "Elements joined by `.` (or U+001F)")),
    responses(
        (status = 200, description = "The namespace", body = NamespaceResponse),
        (status = 400, description = "Invalid spec or namespace", body = ErrorBody),
        (status = 404, description = "No such namespace", body = ErrorBody),
        (status = 409, description = "The key holds a table or view", body = ErrorBody),
    ))]
pub async fn get_namespace(
    State(state): State<AppState>,
    ApiPath((spec, namespace)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let (catalog, principal) = (&cx.catalog, &cx.principal);
        let spec = extract::spec(&spec)?;
        let key = extract::key(&namespace)?;
        let (at, ns) = catalog.get_namespace(principal, &spec, &key)?;
        Reply::json(
            StatusCode::OK,
            &NamespaceResponse {
                head: at.to_hex(),
                namespace: NamespaceBody::new(&ns),
            },
        )
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/trees/{ref}/namespaces/{namespace}", tag = "namespaces", operation_id = "dropNamespace",
    params(("ref" = String, Path, description = "The branch to write to"),
        ("namespace" = String, Path, description = "Elements joined by `.` (or U+001F)"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    responses(
        (status = 200, description = "Dropped, in one commit", body = CommitResult),
        (status = 400, description = "Invalid input, or the ref is not a writable branch", body = ErrorBody),
        (status = 404, description = "No such branch or namespace", body = ErrorBody),
        (status = 409, description = "The namespace is not empty", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn drop_namespace(
    State(state): State<AppState>,
    ApiPath((branch, namespace)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let branch = extract::spec(&branch)?;
                let key = extract::key(&namespace)?;
                let outcome =
                    catalog.drop_namespace(principal, &branch, &key, &Authored::default(), idem)?;
                metrics.commit();
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

/// The answer of a recorded write that made one commit.
pub fn commit_replay(_: &Ctx, rec: &AppliedRecord) -> ApiResult<Reply> {
    let head = head_of(rec)?;
    Reply::json(
        StatusCode::OK,
        &CommitResult {
            head: head.to_hex(),
            parent: rec.previous.unwrap_or(head).to_hex(),
            created: true,
        },
    )
}

#[utoipa::path(post, path = "/api/v1/trees/{ref}/namespaces/{namespace}/properties", tag = "namespaces",
    operation_id = "updateNamespaceProperties",
    params(("ref" = String, Path, description = "The branch to write to"),
        ("namespace" = String, Path, description = "Elements joined by `.` (or U+001F)"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key applies once")),
    request_body = UpdatePropertiesRequest,
    responses(
        (status = 200, description = "Updated, in one commit", body = UpdatePropertiesResponse),
        (status = 400, description = "Invalid input, or a key both updated and removed", body = ErrorBody),
        (status = 404, description = "No such branch or namespace", body = ErrorBody),
        (status = 409, description = "The key holds a table or view, or writers kept racing", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
    ))]
pub async fn update_properties(
    State(state): State<AppState>,
    ApiPath((branch, namespace)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    let namespace2 = namespace.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let branch = extract::spec(&branch)?;
                let key = extract::key(&namespace)?;
                let req: UpdatePropertiesRequest = extract::json(&cx.call.body)?;
                let update = PropertiesUpdate {
                    updates: req.updates,
                    removals: req.removals,
                };
                let authored = Authored {
                    author: None,
                    message: req.message,
                };
                let done = catalog.update_namespace_properties(
                    principal, &branch, &key, &update, &authored, idem,
                )?;
                metrics.commit();
                Reply::json(
                    StatusCode::OK,
                    &UpdatePropertiesResponse {
                        head: done.outcome.commit.to_hex(),
                        updated: done.updated,
                        removed: done.removed,
                        missing: done.missing,
                    },
                )
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let (catalog, principal) = (&cx.catalog, &cx.principal);
                let key = extract::key(&namespace2)?;
                let req: UpdatePropertiesRequest = extract::json(&cx.call.body)?;
                let update = PropertiesUpdate {
                    updates: req.updates,
                    removals: req.removals,
                };
                let done = catalog.replayed_properties_update(
                    principal,
                    &key,
                    &update,
                    rec.previous,
                    head_of(rec)?,
                )?;
                Reply::json(
                    StatusCode::OK,
                    &UpdatePropertiesResponse {
                        head: done.outcome.commit.to_hex(),
                        updated: done.updated,
                        removed: done.removed,
                        missing: done.missing,
                    },
                )
            },
        },
    )
    .await
}
