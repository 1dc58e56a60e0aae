//! Views: list, create, load, exists, replace, drop, rename, register.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, Catalog, IdemRequest, LoadedView, ViewCreate};

use super::namespaces::PageQuery;
use super::tables::rename_with;
use super::wire::{
    CommitViewRequest, CreateViewRequest, LoadResult, RegisterViewRequest, ViewRequirement,
};
use super::{
    authored, body, check_identifier, check_names, identifiers_reply, namespace, object_key, page,
    prefix, recorded, ref_of,
};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery};
use crate::write::{self, Call, Ctx, Reply, Write};

/// A `LoadViewResult`: the metadata as stored, with its location.
fn view_reply(v: &LoadedView) -> ApiResult<Reply> {
    Reply::ok(&LoadResult {
        metadata_location: Some(&v.metadata_location),
        metadata: v.metadata_json.raw(),
        config: BTreeMap::new(),
        storage_credentials: Vec::new(),
    })
}

/// A view as the commit `head` left it: what a retry of an applied write answers.
fn at_head(
    cx: &Ctx,
    head: Option<floe_commits::Hash>,
    key: &floe_commits::ContentKey,
) -> ApiResult<Reply> {
    view_reply(&cx.catalog.load_view(&cx.principal, &recorded(head)?, key)?)
}

pub async fn list(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let key = namespace(&ns)?;
        let (after, limit) = page(q.page_token.as_deref(), q.page_size)?;
        let page =
            cx.catalog
                .list_views(&cx.principal, &prefix(&p)?, &key, after.as_ref(), limit)?;
        identifiers_reply(&key, &page.items, page.next.as_ref())
    })
    .await
}

pub async fn create(
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
                let req: CreateViewRequest = body(&cx.call.body)?;
                check_names([req.name.as_str()])?;
                let create = ViewCreate {
                    name: req.name,
                    location: req.location,
                    schema: req.schema,
                    view_version: req.view_version,
                    properties: req.properties,
                };
                let v = cx.catalog.create_view(
                    &cx.principal,
                    &prefix(&p)?,
                    &namespace(&ns)?,
                    create,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                view_reply(&v)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let req: CreateViewRequest = body(&cx.call.body)?;
                at_head(cx, rec.head, &object_key(&namespace(&ns2)?, &req.name)?)
            },
        },
    )
    .await
}

pub async fn load(
    State(state): State<AppState>,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let key = object_key(&namespace(&ns)?, &view)?;
        view_reply(&cx.catalog.load_view(&cx.principal, &prefix(&p)?, &key)?)
    })
    .await
}

pub async fn exists(
    State(state): State<AppState>,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let key = object_key(&namespace(&ns)?, &view)?;
        cx.catalog.load_view(&cx.principal, &prefix(&p)?, &key)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn replace(
    State(state): State<AppState>,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    let key = namespace(&ns).and_then(|ns| object_key(&ns, &view));
    let key2 = key.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let key = key?;
                let req: CommitViewRequest = body(&cx.call.body)?;
                check_identifier(req.identifier.as_ref(), &key, "view")?;
                let requirements: Vec<floe_catalog::ViewRequirement> = req
                    .requirements
                    .into_iter()
                    .map(|ViewRequirement::AssertViewUuid { uuid }| {
                        floe_catalog::ViewRequirement::AssertViewUuid(uuid)
                    })
                    .collect();
                let v = cx.catalog.replace_view(
                    &cx.principal,
                    &prefix(&p)?,
                    &key,
                    &requirements,
                    &req.updates,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                view_reply(&v)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| at_head(cx, rec.head, &key2?),
        },
    )
    .await
}

pub async fn drop(
    State(state): State<AppState>,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        let key = object_key(&namespace(&ns)?, &view)?;
        cx.catalog.drop_view(
            &cx.principal,
            &prefix(&p)?,
            &key,
            &authored(&cx.call.headers),
            idem,
        )?;
        Ok(())
    })
    .await
}

pub async fn rename(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<String>,
    call: Call,
) -> Response {
    rename_with(state, p, call, Catalog::rename_view).await
}

pub async fn register(
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
                let req: RegisterViewRequest = body(&cx.call.body)?;
                let v = cx.catalog.register_view(
                    &cx.principal,
                    &prefix(&p)?,
                    &object_key(&namespace(&ns)?, &req.name)?,
                    &req.metadata_location,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                view_reply(&v)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let req: RegisterViewRequest = body(&cx.call.body)?;
                at_head(cx, rec.head, &object_key(&namespace(&ns2)?, &req.name)?)
            },
        },
    )
    .await
}
