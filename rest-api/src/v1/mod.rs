//! floe's own API, `/api/v1` (DESIGN §4): the routes, and the OpenAPI document utoipa
//! derives from their annotations. `openapi/floe-api.json` is the committed copy; a test
//! fails when it differs from what the code describes.

pub mod access;
pub mod history;
pub mod imports;
pub mod merges;
pub mod namespaces;
pub mod query;
pub mod refs;
pub mod runs;
pub mod submit;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::error::{ConflictBody, ConflictReasonBody, ErrorBody};
use crate::wire;
use crate::{AppState, Mount};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "floe API",
        description = "floe's own API: branches, tags, commits, merges and history across every table of a lakehouse. \
            The Iceberg REST catalog is served separately under /iceberg. Every error has one shape (ErrorBody); \
            every write takes an Idempotency-Key (a UUIDv7).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
        version = "1"
    ),
    paths(
        crate::health, crate::ready, crate::metrics, openapi_json,
        refs::list_refs, refs::create_ref, refs::get_ref, refs::assign_ref, refs::delete_ref,
        refs::reflog,
        history::log, history::get_commit, history::diff, history::entries,
        namespaces::list_namespaces, namespaces::create_namespace, namespaces::get_namespace,
        namespaces::drop_namespace, namespaces::update_properties,
        merges::merge, merges::cherry_pick, merges::revert,
        query::query, imports::import, runs::list_runs, runs::get_run, runs::promote_run,
        runs::revert_run,
        submit::submit_run, submit::run_logs, submit::run_code, submit::cancel_run,
        runs::maintain,
        access::create_token, access::list_tokens, access::revoke_token, access::get_policy,
        access::set_policy,
    ),
    components(schemas(ErrorBody, ConflictBody, ConflictReasonBody, wire::StatusBody, query::QueryBody, imports::ImportBody, runs::RunBody, runs::RunList, runs::MaintenanceBody, runs::RevertRunRequest, runs::RevertRunResult, access::CreateTokenRequest, access::TokenBody, access::NewTokenBody, access::TokenList, access::PolicyBody)),
    tags(
        (name = "refs", description = "Branches and tags"),
        (name = "history", description = "Commits, log, diff and entries at any ref spec"),
        (name = "namespaces", description = "Namespaces on a branch"),
        (name = "merges", description = "Merge, cherry-pick and revert"),
        (name = "query", description = "SQL at any ref spec"),
        (name = "runs", description = "Runs (pipeline runs of projects, and imports): submission, records, logs, code, and promotion of a failed run"),
        (name = "imports", description = "Parquet and CSV files into tables, landed as one commit"),
        (name = "service", description = "Health, readiness, metrics, maintenance and this document"),
        (name = "access", description = "Tokens floe issues and the access policy (manage on **)"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The OpenAPI document, pretty-printed with a trailing newline (as committed).
pub fn openapi_document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// Where floe's own API is mounted.
pub const MOUNT: &str = "/api/v1";

/// floe's own API's routes, under `MOUNT`.
pub fn router() -> Router<AppState> {
    Mount::at(MOUNT)
        .route("/openapi.json", get(openapi_json))
        .route("/refs", get(refs::list_refs).post(refs::create_ref))
        .route(
            "/refs/{name}",
            get(refs::get_ref)
                .put(refs::assign_ref)
                .delete(refs::delete_ref),
        )
        .route("/reflog", get(refs::reflog))
        .route("/trees/{ref}/log", get(history::log))
        .route("/trees/{ref}/entries", get(history::entries))
        .route("/commits/{spec}", get(history::get_commit))
        .route("/diff/{from}/{to}", get(history::diff))
        .route(
            "/trees/{ref}/namespaces",
            get(namespaces::list_namespaces).post(namespaces::create_namespace),
        )
        .route(
            "/trees/{ref}/namespaces/{namespace}",
            get(namespaces::get_namespace).delete(namespaces::drop_namespace),
        )
        .route(
            "/trees/{ref}/namespaces/{namespace}/properties",
            post(namespaces::update_properties),
        )
        .route("/trees/{ref}/merge", post(merges::merge))
        .route("/trees/{ref}/cherry-pick", post(merges::cherry_pick))
        .route("/trees/{ref}/revert", post(merges::revert))
        .route("/query", post(query::query))
        .route(
            "/runs",
            get(runs::list_runs)
                .post(submit::submit_run)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/logs", get(submit::run_logs))
        .route("/runs/{id}/code", get(submit::run_code))
        .route("/runs/{id}/cancel", post(submit::cancel_run))
        .route("/runs/{id}/promote", post(runs::promote_run))
        .route("/runs/{id}/revert", post(runs::revert_run))
        .route("/maintenance", post(runs::maintain))
        .route(
            "/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route("/tokens/{id}", axum::routing::delete(access::revoke_token))
        .route("/policy", get(access::get_policy).put(access::set_policy))
        .route(
            "/imports",
            post(imports::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .router()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service", operation_id = "openapi",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}
