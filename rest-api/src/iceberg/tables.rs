//! Tables: list, create (staged or not), load, exists, commit, drop, register,
//! unregister, rename, and metrics reports.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::{AppliedRecord, Catalog, IdemRequest, LoadedTable, TableChange, TableCreate};
use serde::Deserialize;

use super::namespaces::PageQuery;
use super::wire::{
    CommitTableRequest, CommitTableResponse, CreateTableRequest, LoadResult, RegisterTableRequest,
    RenameTableRequest, ReportMetricsRequest,
};
use super::{
    authored, body, check_identifier, check_names, identified, identifiers_reply, namespace,
    object_key, page, prefix, recorded, ref_of,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::write::{self, Call, Ctx, Reply, Write};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropQuery {
    purge_requested: Option<String>,
}

/// A `LoadTableResult`: the metadata as stored, with its location, and what an engine
/// needs to reach the table's files (the warehouse's `s3.*` properties on S3).
pub(super) fn load_reply(cx: &Ctx, p: &str, t: &LoadedTable) -> ApiResult<Reply> {
    table_reply(cx, p, t, false)
}

/// The `LoadTableResult` of a create or register that committed: credentials STS could not
/// give are left out (said in the log), never an error, since the table exists now.
fn created_reply(cx: &Ctx, p: &str, t: &LoadedTable) -> ApiResult<Reply> {
    table_reply(cx, p, t, true)
}

fn table_reply(cx: &Ctx, p: &str, t: &LoadedTable, committed: bool) -> ApiResult<Reply> {
    let mut config = cx.catalog.storage_properties();
    // Credentials only for a client that asks for them, whole or not at all.
    let asked = cx
        .call
        .headers
        .get_all("x-iceberg-access-delegation")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|mode| mode.trim() == "vended-credentials");
    let storage_credentials = match (asked, committed) {
        (false, _) => Vec::new(),
        (true, false) => vended(cx, p, t)?,
        (true, true) => vended(cx, p, t).unwrap_or_else(|e| {
            tracing::warn!(error = ?e, "no credentials vended with a committed table");
            Vec::new()
        }),
    };
    if let Some(c) = storage_credentials.first() {
        config.extend(c.config.clone());
    }
    let secret = !storage_credentials.is_empty();
    let metadata = t.metadata_json.raw();
    let answer = LoadResult {
        metadata_location: t.metadata_location.as_deref(),
        metadata,
        config,
        storage_credentials,
    };
    // The metadata is most of the answer.
    let bytes = metadata.get().len() + 1024;
    Ok(Reply::json_sized(StatusCode::OK, &answer, bytes)?.secret(secret))
}

/// The credentials vended for a table's files, as the ref `p` names it (none where the
/// server vends none, or none to this principal).
fn vended(cx: &Ctx, p: &str, t: &LoadedTable) -> ApiResult<Vec<super::wire::StorageCredential>> {
    Ok(cx
        .catalog
        .vended_credentials(&cx.principal, &prefix(p)?, t)?
        .map(|config| super::wire::StorageCredential {
            prefix: t.metadata.location().trim_end_matches('/').to_owned(),
            config,
        })
        .into_iter()
        .collect())
}

/// The table a request's path names, loaded for its principal (read on the ref).
fn named(cx: &Ctx, p: &str, ns: &str, table: &str) -> ApiResult<LoadedTable> {
    let key = object_key(&namespace(ns)?, table)?;
    Ok(cx.catalog.load_table(&cx.principal, &prefix(p)?, &key)?.1)
}

/// `GET .../tables/{table}/credentials`: fresh credentials for a long job (a
/// `LoadCredentialsResponse`; empty where the server vends none). Needs read on the ref.
pub async fn credentials(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let t = named(cx, &p, &ns, &table)?;
        let storage_credentials = vended(cx, &p, &t)?;
        let secret = !storage_credentials.is_empty();
        Ok(Reply::ok(&super::wire::LoadCredentialsResponse {
            storage_credentials,
        })?
        .secret(secret))
    })
    .await
}

/// A `CommitTableResponse`.
fn commit_reply(t: &LoadedTable) -> ApiResult<Reply> {
    Reply::ok(&CommitTableResponse {
        metadata_location: t.metadata_location.as_deref(),
        metadata: t.metadata_json.raw(),
    })
}

/// A table as the commit `head` left it: what a retry of an applied write answers.
fn at_head(
    cx: &Ctx,
    head: Option<floe_commits::Hash>,
    key: &floe_commits::ContentKey,
) -> ApiResult<LoadedTable> {
    let (_, t) = cx
        .catalog
        .load_table(&cx.principal, &recorded(head)?, key)?;
    Ok(t)
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
        let (_, page) =
            cx.catalog
                .list_tables(&cx.principal, &prefix(&p)?, &key, after.as_ref(), limit)?;
        identifiers_reply(&key, &page.items, page.next.as_ref())
    })
    .await
}

pub async fn create(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    let (ns2, p2) = (ns.clone(), p.clone());
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let req: CreateTableRequest = body(&cx.call.body)?;
                check_names([req.name.as_str()])?;
                let create = TableCreate {
                    name: req.name,
                    location: req.location,
                    schema: req.schema,
                    partition_spec: req.partition_spec,
                    write_order: req.write_order,
                    stage_create: req.stage_create,
                    properties: req.properties,
                };
                let t = cx.catalog.create_table(
                    &cx.principal,
                    &prefix(&p)?,
                    &namespace(&ns)?,
                    create,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                created_reply(cx, &p, &t)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let req: CreateTableRequest = body(&cx.call.body)?;
                load_reply(
                    cx,
                    &p2,
                    &at_head(cx, rec.head, &object_key(&namespace(&ns2)?, &req.name)?)?,
                )
            },
        },
    )
    .await
}

pub async fn load(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        load_reply(cx, &p, &named(cx, &p, &ns, &table)?)
    })
    .await
}

pub async fn exists(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let key = object_key(&namespace(&ns)?, &table)?;
        cx.catalog.load_table(&cx.principal, &prefix(&p)?, &key)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn commit(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    let key = namespace(&ns).and_then(|ns| object_key(&ns, &table));
    let key2 = key.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let key = key?;
                let req: CommitTableRequest = body(&cx.call.body)?;
                check_identifier(req.identifier.as_ref(), &key, "table")?;
                let change = TableChange {
                    key,
                    requirements: req.requirements,
                    updates: req.updates,
                };
                let t = cx.catalog.commit_table(
                    &cx.principal,
                    &prefix(&p)?,
                    change,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                metrics.commit();
                commit_reply(&t)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                commit_reply(&at_head(cx, rec.head, &key2?)?)
            },
        },
    )
    .await
}

pub async fn drop(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DropQuery>,
    call: Call,
) -> Response {
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        // Parsed (case-insensitively, as clients send True and false) but never acted
        // on: dropping never deletes files; garbage collection will, over every ref.
        if let Some(v) = &q.purge_requested
            && !v.eq_ignore_ascii_case("true")
            && !v.eq_ignore_ascii_case("false")
        {
            return Err(ApiError::bad_request(format!(
                "purgeRequested must be true or false, got {v:?}"
            )));
        }
        let key = object_key(&namespace(&ns)?, &table)?;
        cx.catalog.drop_table(
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
    rename_with(state, p, call, Catalog::rename_table).await
}

/// How a table or a view is renamed (the catalog's entry point for each).
pub(super) type RenameFn = fn(
    &Catalog,
    &floe_catalog::Principal,
    &floe_commits::RefSpec,
    &floe_commits::ContentKey,
    &floe_commits::ContentKey,
    &floe_catalog::Authored,
    Option<&IdemRequest>,
) -> Result<floe_commits::CommitOutcome, floe_catalog::CatalogError>;

/// Renames a table or a view: the request and the answer are the same for both.
pub(super) async fn rename_with(state: AppState, p: String, call: Call, how: RenameFn) -> Response {
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        let req: RenameTableRequest = body(&cx.call.body)?;
        how(
            &cx.catalog,
            &cx.principal,
            &prefix(&p)?,
            &identified(&req.source)?,
            &identified(&req.destination)?,
            &authored(&cx.call.headers),
            idem,
        )?;
        Ok(())
    })
    .await
}

pub async fn register(
    State(state): State<AppState>,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    call: Call,
) -> Response {
    let (ns2, p2) = (ns.clone(), p.clone());
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let req: RegisterTableRequest = body(&cx.call.body)?;
                if req.overwrite {
                    return Err(ApiError::bad_request(
                        "register with overwrite is refused: drop the table first (its history stays in floe)",
                    ));
                }
                let key = object_key(&namespace(&ns)?, &req.name)?;
                let t = cx.catalog.register_table(
                    &cx.principal,
                    &prefix(&p)?,
                    &key,
                    &req.metadata_location,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                created_reply(cx, &p, &t)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                let req: RegisterTableRequest = body(&cx.call.body)?;
                load_reply(cx, &p2, &at_head(cx, rec.head, &object_key(&namespace(&ns2)?, &req.name)?)?)
            },
        },
    )
    .await
}

/// Accepts an Iceberg metrics report for a table that exists at the prefix, and counts it.
pub async fn report_metrics(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    write::read_on(&state, call, ref_of(&p), move |cx| {
        let report: ReportMetricsRequest = body(&cx.call.body)?;
        let key = object_key(&namespace(&ns)?, &table)?;
        cx.catalog.load_table(&cx.principal, &prefix(&p)?, &key)?;
        metrics.report(&report.report_type);
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

/// Removes a table from the ref and answers it as it was (the retry too).
pub async fn unregister(
    State(state): State<AppState>,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    call: Call,
) -> Response {
    let key = namespace(&ns).and_then(|ns| object_key(&ns, &table));
    let key2 = key.clone();
    write::write(
        &state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                let t = cx.catalog.unregister_table(
                    &cx.principal,
                    &prefix(&p)?,
                    &key?,
                    &authored(&cx.call.headers),
                    idem,
                )?;
                commit_reply(&t)
            },
            replay: move |cx: &Ctx, rec: &AppliedRecord| {
                commit_reply(&at_head(cx, rec.previous, &key2?)?)
            },
        },
    )
    .await
}
