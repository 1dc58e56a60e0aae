//! Namespaces: list, create, load, exists, drop, update properties.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, CatalogError, IdemRequest, PropertiesUpdate};
use serde::Deserialize;

use super::wire::{
    CreateNamespaceRequest, ListNamespacesResponse, NamespaceResponse,
    UpdateNamespacePropertiesRequest, UpdateNamespacePropertiesResponse,
};
use super::{authored, body, elements, levels, namespace, page, prefix, recorded, ref_of};
use crate::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::extract::{self, ApiPath, ApiQuery};
use crate::write::{self, Call, Ctx, Reply, Write};

/// The query of the list operations (namespaces, tables, views).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    pub parent: Option<String>,
    pub page_token: Option<String>,
    pub page_size: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let parent = q
            .parent
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(namespace)
            .transpose()?;
        let (after, limit) = page(q.page_token.as_deref(), q.page_size)?;
        let (_, page) = cx.catalog.list_namespaces(
            &cx.principal,
            &prefix(&p)?,
            parent.as_ref(),
            true,
            after.as_ref(),
            limit,
        )?;
        Reply::ok(&ListNamespacesResponse {
            namespaces: page.items.iter().map(|n| elements(&n.key)).collect(),
            next_page_token: page.next.as_ref().map(extract::key_token),
        })
    })
    .await
}

fn namespace_reply(ns: &floe_catalog::Namespace) -> Result<Reply, ApiError> {
    Reply::ok(&NamespaceResponse {
        namespace: elements(&ns.key),
        properties: &ns.properties,
    })
}

pub async fn create(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<String>,
    call: Call,
) -> Response {
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let req: CreateNamespaceRequest = body(&cx.call.body)?;
                let key = levels(&req.namespace)?;
                let authored = authored(&cx.call.headers);
                let created = cx.catalog.create_namespace(
                    &cx.principal,
                    &prefix(&p)?,
                    &key,
                    req.properties,
                    &authored,
                    idem,
                );
                let (_, ns) = created.map_err(|e| match e {
                    // The spec's createNamespace has no 404: a missing parent is a
                    // request to fix (create the parent first).
                    CatalogError::NamespaceNotFound(parent) => ApiError::bad_request(format!(
                        "the parent namespace {parent} does not exist; create it first"
                    )),
                    other => ApiError::from(other),
                })?;
                namespace_reply(&ns)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let req: CreateNamespaceRequest = body(&cx.call.body)?;
                let (_, ns) = cx.catalog.get_namespace(
                    &cx.principal,
                    &recorded(rec.head)?,
                    &levels(&req.namespace)?,
                )?;
                namespace_reply(&ns)
            },
        },
    )
    .await
}

pub async fn load(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let (_, n) = cx
            .catalog
            .get_namespace(&cx.principal, &prefix(&p)?, &namespace(&ns)?)?;
        namespace_reply(&n)
    })
    .await
}

pub async fn exists(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        cx.catalog
            .get_namespace(&cx.principal, &prefix(&p)?, &namespace(&ns)?)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn drop(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        cx.catalog.drop_namespace(
            &cx.principal,
            &prefix(&p)?,
            &namespace(&ns)?,
            &authored(&cx.call.headers),
            idem,
        )?;
        Ok(())
    })
    .await
}

/// The update a body asks for; a property both updated and removed is a 422 (the spec's).
fn properties_update(bytes: &[u8]) -> Result<PropertiesUpdate, ApiError> {
    let req: UpdateNamespacePropertiesRequest = body(bytes)?;
    if let Some(k) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
        return Err(ApiError::new(
            ErrorKind::UnprocessableEntity,
            format!("property {k:?} is both updated and removed"),
        ));
    }
    Ok(PropertiesUpdate {
        updates: req.updates,
        removals: req.removals,
    })
}

fn properties_reply(done: floe_catalog::PropertiesUpdated) -> Result<Reply, ApiError> {
    Reply::ok(&UpdateNamespacePropertiesResponse {
        updated: done.updated,
        removed: done.removed,
        missing: done.missing,
    })
}

pub async fn update_properties(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    let ns2 = ns.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let update = properties_update(&cx.call.body)?;
                let done = cx.catalog.update_namespace_properties(
                    &cx.principal,
                    &prefix(&p)?,
                    &namespace(&ns)?,
                    &update,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                properties_reply(done)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let update = properties_update(&cx.call.body)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"an applied write recorded no head"))?;
                let done = cx.catalog.replayed_properties_update(
                    &cx.principal,
                    &namespace(&ns2)?,
                    &update,
                    rec.previous,
                    head,
                )?;
                properties_reply(done)
            },
        },
    )
    .await
}
