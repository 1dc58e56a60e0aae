//! The Apache Iceberg REST catalog under `/iceberg` (DESIGN §3). The REST `prefix` is a ref
//! spec: a branch is read and written, a tag, `name@hash`, hash, `~N` or `*time` is read
//! only. `GET /iceberg/v1/config?warehouse=<spec>` hands the prefix to the client.
//!
//! Handlers share floe's request path (`write::read`, `write::write`: a blocking thread, the
//! principal, idempotency) and errors; the `iceberg_errors` layer renders every error as the
//! spec's `ErrorModel` with the exception names clients expect.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use floe_catalog::{
    AppliedRecord, Authored, Catalog, CatalogError, IDEMPOTENCY_LIFETIME, IdemRequest, LoadedTable,
    Principal, PropertiesUpdate, TableChange, TableCreate,
};
use floe_commits::{ContentKey, Hash, RefSpec};
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use iceberg::{TableRequirement, TableUpdate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{self, ApiBody, ApiPath, ApiQuery};
use crate::write::{self, Reply, Write};

/// Namespaces or tables answered by one list call when the client sends no `pageSize`.
pub const LIST_MAX: usize = 1_000;

/// The operations served, exactly as `config` advertises them.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/unregister",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
    "GET /v1/{prefix}/namespaces/{namespace}/views",
    "POST /v1/{prefix}/namespaces/{namespace}/views",
    "GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/views/rename",
    "POST /v1/{prefix}/namespaces/{namespace}/register-view",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/config", get(config))
        .route(
            "/v1/{prefix}/namespaces",
            get(list_namespaces).post(create_namespace),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}",
            get(load_namespace)
                .head(namespace_exists)
                .delete(drop_namespace),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/properties",
            post(update_properties),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables",
            get(list_tables).post(create_table),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}",
            get(load_table)
                .head(table_exists)
                .post(commit_table)
                .delete(drop_table),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
            post(report_metrics),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}/unregister",
            post(unregister_table),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/register",
            post(register_table),
        )
        .route("/v1/{prefix}/tables/rename", post(rename_table))
        .route("/v1/{prefix}/transactions/commit", post(commit_transaction))
        .route(
            "/v1/{prefix}/namespaces/{namespace}/views",
            get(list_views).post(create_view),
        )
        .route(
            "/v1/{prefix}/namespaces/{namespace}/views/{view}",
            get(load_view)
                .head(view_exists)
                .post(replace_view)
                .delete(drop_view),
        )
        .route("/v1/{prefix}/views/rename", post(rename_view))
        .route(
            "/v1/{prefix}/namespaces/{namespace}/register-view",
            post(register_view),
        )
        .layer(middleware::from_fn(iceberg_errors))
}

// ----- errors ---------------------------------------------------------------------------

/// The Iceberg exception for a catalog error.
pub fn error(e: CatalogError) -> ApiError {
    let message = e.to_string();
    let of = |status, kind: &str| ApiError::new(status, kind, message.clone());
    match &e {
        CatalogError::NamespaceNotFound(_) => of(StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
        CatalogError::TableNotFound(_) => of(StatusCode::NOT_FOUND, "NoSuchTableException"),
        CatalogError::ViewNotFound(_) => of(StatusCode::NOT_FOUND, "NoSuchViewException"),
        CatalogError::NamespaceAlreadyExists(_)
        | CatalogError::TableAlreadyExists(_)
        | CatalogError::SameTable { .. }
        | CatalogError::ViewAlreadyExists(_)
        | CatalogError::NotANamespace { .. } => of(StatusCode::CONFLICT, "AlreadyExistsException"),
        CatalogError::NamespaceNotEmpty { .. } => {
            of(StatusCode::CONFLICT, "NamespaceNotEmptyException")
        }
        CatalogError::CommitFailed(_) => of(StatusCode::CONFLICT, "CommitFailedException"),
        // Clients refresh and retry on a 409; contention is never a recorded answer.
        CatalogError::Contention(_)
        | CatalogError::Write(floe_commits::WriteError::Contention(_)) => {
            of(StatusCode::CONFLICT, "CommitFailedException").retryable(None)
        }
        CatalogError::Forbidden { .. } => of(StatusCode::FORBIDDEN, "ForbiddenException"),
        CatalogError::Invalid(_)
        | CatalogError::Unsupported(_)
        | CatalogError::ReadOnly { .. }
        | CatalogError::DefaultBranch(_) => of(StatusCode::BAD_REQUEST, "BadRequestException"),
        CatalogError::Warehouse(
            floe_catalog::WarehouseError::Outside { .. }
            | floe_catalog::WarehouseError::NotFound(_),
        ) => of(StatusCode::BAD_REQUEST, "BadRequestException"),
        _ => {
            // Everything else keeps floe's mapping (404 unknown ref, 409 conflicts, 5xx).
            let e = ApiError::from(e);
            let kind = match e.status.as_u16() {
                404 => "NoSuchNamespaceException",
                409 => "CommitFailedException",
                400 => "BadRequestException",
                s if s >= 500 => return e,
                _ => return e,
            };
            let mut e = e;
            if e.body.kind == "RefNotFound"
                || e.body.kind == "NotInHistory"
                || e.body.kind == "CommitNotFound"
            {
                e.body.kind = "NotFoundException".to_owned();
            } else {
                e.body.kind = kind.to_owned();
            }
            e
        }
    }
}

/// Renders floe's error bodies as the spec's `ErrorModel`: `{"error": {message, type, code}}`.
/// The spec documents the 404, 409 and 5xx answers of the view operations as a bare
/// `ErrorModel` (its examples still wrap it): those answers carry the model's fields at the
/// top level too, so that both the schema and the clients (which read `error`) are
/// satisfied.
async fn iceberg_errors(request: axum::extract::Request, next: middleware::Next) -> Response {
    let view_path = request.uri().path().contains("/views");
    let response = next.run(request).await;
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return (parts.status, "").into_response();
    };
    let Ok(floe) = serde_json::from_slice::<ErrorBody>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let kind = match floe.kind.as_str() {
        k if k.ends_with("Exception") => k.to_owned(),
        "NotFound" | "RefNotFound" | "NotInHistory" | "CommitNotFound" => {
            "NotFoundException".to_owned()
        }
        "IdempotencyKeyReused" => "UnprocessableEntityException".to_owned(),
        // A duplicate whose first attempt still runs: Iceberg clients read a 409 on a
        // commit as "not applied" and would re-apply it on a refreshed table, so this is
        // a 503 ("state unknown"; Retry-After kept), never a 409.
        "IdempotencyInFlight" => {
            parts.status = StatusCode::SERVICE_UNAVAILABLE;
            "ServiceUnavailableException".to_owned()
        }
        "InternalError" => "InternalServerError".to_owned(),
        "Unavailable" => "ServiceUnavailableException".to_owned(),
        "MethodNotAllowed" => "MethodNotAllowedException".to_owned(),
        _ => "BadRequestException".to_owned(),
    };
    let message = if floe.status >= 500 {
        format!("{} (error id {})", floe.message, floe.error_id)
    } else {
        floe.message
    };
    let status = parts.status.as_u16();
    let model = json!({ "message": message, "type": kind, "code": status });
    let mut body = json!({ "error": model });
    if view_path && (status == 404 || status == 409 || status >= 500) {
        for (k, v) in model.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

fn catalog_err(e: CatalogError) -> ApiError {
    error(e)
}

// ----- parsing -----------------------------------------------------------------------------

fn prefix(text: &str) -> ApiResult<RefSpec> {
    RefSpec::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("the prefix {text:?} is not a ref spec: {e}"),
        )
    })
}

/// Refuses names that could be read as a path step (`.`, `..`) or hold a separator; the
/// warehouse escapes names anyway, but such a name is a mistake worth a clear 400.
fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ApiResult<()> {
    for n in names {
        let double_encoded = n
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
        if n == "." || n == ".." || n.contains('/') || n.contains('\\') || double_encoded {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                format!(
                    "{n:?} is not a valid namespace or table name (no `.`, `..`, `/`, `\\` or %-escapes)"
                ),
            ));
        }
    }
    Ok(())
}

/// A namespace in a URL: levels joined by U+001F (a `.` is part of a level here).
fn namespace(text: &str) -> ApiResult<ContentKey> {
    check_names(text.split('\u{1f}'))?;
    ContentKey::new(text.split('\u{1f}')).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("namespace {text:?}: {e}"),
        )
    })
}

fn levels(elements: &[String]) -> ApiResult<ContentKey> {
    check_names(elements.iter().map(String::as_str))?;
    ContentKey::new(elements).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("namespace {elements:?}: {e}"),
        )
    })
}

fn table_key(ns: &ContentKey, table: &str) -> ApiResult<ContentKey> {
    check_names([table])?;
    ns.child(table).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("table name {table:?}: {e}"),
        )
    })
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("malformed request body: {e}"),
        )
    })
}

/// Commit author and message from floe's headers or Nessie's.
fn authored(headers: &HeaderMap) -> Authored {
    let header = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
            .map(str::to_owned)
    };
    Authored {
        author: header(&["Floe-Commit-Author", "Nessie-Commit-Authors"]),
        message: header(&["Floe-Commit-Message", "Nessie-Commit-Message"]),
    }
}

fn elements(key: &ContentKey) -> Vec<String> {
    key.elements().map(str::to_owned).collect()
}

fn at(h: &Hash) -> ApiResult<RefSpec> {
    extract::spec(&h.to_hex())
}

// ----- config --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    warehouse: Option<String>,
}

async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ConfigQuery>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let warehouse = q.warehouse.unwrap_or_else(|| "main".to_owned());
        let spec = prefix(&warehouse)?;
        catalog.resolve(principal, &spec).map_err(catalog_err)?;
        Reply::json(
            StatusCode::OK,
            &json!({
                "defaults": {},
                "overrides": { "prefix": encode_prefix(&warehouse) },
                "endpoints": ENDPOINTS,
                "idempotency-key-lifetime": IDEMPOTENCY_LIFETIME,
            }),
        )
    })
    .await
}

/// A prefix as clients put it in URLs (as is): everything outside the characters a ref
/// spec uses percent-encoded, `/` included.
fn encode_prefix(spec: &str) -> String {
    let mut out = String::new();
    for b in spec.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@*:+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ----- namespaces ----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    parent: Option<String>,
    page_token: Option<String>,
    page_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateNamespaceRequest {
    namespace: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UpdatePropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: BTreeMap<String, String>,
}

async fn list_namespaces(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let spec = prefix(&p)?;
        let parent = q
            .parent
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(namespace)
            .transpose()?;
        let after = extract::parse_key_token(q.page_token.as_deref().filter(|t| !t.is_empty()))?;
        let limit = q
            .page_size
            .map_or(LIST_MAX, |n| (n as usize).clamp(1, LIST_MAX));
        let (_, page) = catalog
            .list_namespaces(
                principal,
                &spec,
                parent.as_ref(),
                true,
                after.as_ref(),
                limit,
            )
            .map_err(catalog_err)?;
        let names: Vec<Vec<String>> = page.items.iter().map(|n| elements(&n.key)).collect();
        let mut reply = json!({ "namespaces": names });
        // A token whenever the list was cut short (by `pageSize`, or by LIST_MAX or the
        // scan bound when the client sent none): never a silent truncation.
        if let Some(next) = page.next {
            reply["next-page-token"] = Value::String(extract::key_token(&next));
        }
        Reply::json(StatusCode::OK, &reply)
    })
    .await
}

fn namespace_reply(ns: &floe_catalog::Namespace) -> Value {
    json!({ "namespace": elements(&ns.key), "properties": ns.properties })
}

async fn create_namespace(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath(p): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let b3 = bytes.clone();
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let spec = prefix(&p)?;
                let req: CreateNamespaceRequest = body(&b2)?;
                let key = levels(&req.namespace)?;
                let (_, ns) = catalog
                    .create_namespace(principal, &spec, &key, req.properties, &authored, idem)
                    .map_err(|e| match e {
                        // The spec's createNamespace has no 404: a missing parent is a
                        // request to fix (create the parent first).
                        CatalogError::NamespaceNotFound(parent) => ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "BadRequestException",
                            format!(
                                "the parent namespace {parent} does not exist; create it first"
                            ),
                        ),
                        other => catalog_err(other),
                    })?;
                Reply::json(StatusCode::OK, &namespace_reply(&ns))
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let req: CreateNamespaceRequest = body(&b3)?;
                let key = levels(&req.namespace)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let (_, ns) = catalog
                    .get_namespace(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                Reply::json(StatusCode::OK, &namespace_reply(&ns))
            },
        },
    )
    .await
}

async fn load_namespace(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let (_, n) = catalog
            .get_namespace(principal, &prefix(&p)?, &namespace(&ns)?)
            .map_err(catalog_err)?;
        Reply::json(StatusCode::OK, &namespace_reply(&n))
    })
    .await
}

async fn namespace_exists(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        catalog
            .get_namespace(principal, &prefix(&p)?, &namespace(&ns)?)
            .map_err(catalog_err)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

async fn drop_namespace(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
) -> Response {
    let authored = authored(&headers);
    write::write_empty(
        &state,
        &method,
        &uri,
        &headers,
        &[],
        move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            catalog
                .drop_namespace(principal, &prefix(&p)?, &namespace(&ns)?, &authored, idem)
                .map_err(catalog_err)?;
            Ok(())
        },
    )
    .await
}

async fn update_properties(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let b3 = bytes.clone();
    let ns2 = ns.clone();
    write::write(&state, &method, &uri, &headers, &bytes, Write {
        run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            let req: UpdatePropertiesRequest = body(&b2)?;
            if let Some(k) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UnprocessableEntityException",
                    format!("property {k:?} is both updated and removed"),
                ));
            }
            let update = PropertiesUpdate {
                updates: req.updates,
                removals: req.removals,
            };
            let done = catalog
                .update_namespace_properties(principal, &prefix(&p)?, &namespace(&ns)?, &update, &authored, idem)
                .map_err(catalog_err)?;
            Reply::json(
                StatusCode::OK,
                &json!({ "updated": done.updated, "removed": done.removed, "missing": done.missing }),
            )
        },
        replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
            let req: UpdatePropertiesRequest = body(&b3)?;
            let key = namespace(&ns2)?;
            let update = PropertiesUpdate {
                updates: req.updates,
                removals: req.removals,
            };
            let head = rec.head.ok_or_else(|| ApiError::internal(&"no head recorded"))?;
            let done = catalog
                .replayed_properties_update(principal, &key, &update, rec.previous, head)
                .map_err(catalog_err)?;
            Reply::json(
                StatusCode::OK,
                &json!({ "updated": done.updated, "removed": done.removed, "missing": done.missing }),
            )
        },
    })
    .await
}

// ----- tables ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTableRequest {
    name: String,
    #[serde(default)]
    location: Option<String>,
    schema: Schema,
    #[serde(default)]
    partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

#[derive(Debug, Deserialize, Serialize)]
struct TableIdent {
    namespace: Vec<String>,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CommitTableRequest {
    #[serde(default)]
    identifier: Option<TableIdent>,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CommitTransactionRequest {
    table_changes: Vec<CommitTableRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropQuery {
    purge_requested: Option<String>,
}

/// A `LoadTableResult` (or, without `config`, a `CommitTableResponse`), with the metadata
/// spliced in as stored: a load never re-serializes metadata.
fn load_result(t: &LoadedTable, config: bool) -> ApiResult<String> {
    let metadata = std::str::from_utf8(&t.metadata_json)
        .map_err(|_| ApiError::internal(&"a metadata file is not UTF-8"))?;
    let mut out = String::with_capacity(metadata.len() + 256);
    out.push('{');
    if let Some(loc) = &t.metadata_location {
        out.push_str("\"metadata-location\":");
        out.push_str(&serde_json::to_string(loc).map_err(|e| ApiError::internal(&e))?);
        out.push(',');
    }
    out.push_str("\"metadata\":");
    out.push_str(metadata);
    if config {
        out.push_str(",\"config\":{}");
    }
    out.push('}');
    Ok(out)
}

fn load_reply(t: &LoadedTable, config: bool) -> ApiResult<Reply> {
    Ok(Reply {
        status: StatusCode::OK,
        body: Some(load_result(t, config)?),
    })
}

async fn list_tables(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = namespace(&ns)?;
        let after = extract::parse_key_token(q.page_token.as_deref().filter(|t| !t.is_empty()))?;
        let limit = q
            .page_size
            .map_or(LIST_MAX, |n| (n as usize).clamp(1, LIST_MAX));
        let (_, page) = catalog
            .list_tables(principal, &prefix(&p)?, &key, after.as_ref(), limit)
            .map_err(catalog_err)?;
        let identifiers: Vec<Value> = page
            .items
            .iter()
            .map(|k| json!({ "namespace": elements(&key), "name": k.name() }))
            .collect();
        let mut reply = json!({ "identifiers": identifiers });
        // A token whenever the list was cut short (by `pageSize`, or by LIST_MAX or the
        // scan bound when the client sent none): never a silent truncation.
        if let Some(next) = page.next {
            reply["next-page-token"] = Value::String(extract::key_token(&next));
        }
        Reply::json(StatusCode::OK, &reply)
    })
    .await
}

async fn create_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let b3 = bytes.clone();
    let ns2 = ns.clone();
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let req: CreateTableRequest = body(&b2)?;
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
                let t = catalog
                    .create_table(
                        principal,
                        &prefix(&p)?,
                        &namespace(&ns)?,
                        create,
                        &authored,
                        idem,
                    )
                    .map_err(catalog_err)?;
                load_reply(&t, true)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let req: CreateTableRequest = body(&b3)?;
                let key = table_key(&namespace(&ns2)?, &req.name)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let (_, t) = catalog
                    .load_table(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                load_reply(&t, true)
            },
        },
    )
    .await
}

async fn load_table(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = table_key(&namespace(&ns)?, &table)?;
        let (_, t) = catalog
            .load_table(principal, &prefix(&p)?, &key)
            .map_err(catalog_err)?;
        load_reply(&t, true)
    })
    .await
}

async fn table_exists(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = table_key(&namespace(&ns)?, &table)?;
        catalog
            .load_table(principal, &prefix(&p)?, &key)
            .map_err(catalog_err)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

async fn commit_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let (ns2, table2) = (ns.clone(), table.clone());
    let metrics = state.metrics.clone();
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let req: CommitTableRequest = body(&b2)?;
                let key = table_key(&namespace(&ns)?, &table)?;
                if let Some(id) = &req.identifier
                    && (levels(&id.namespace)? != key.parent().unwrap_or_else(|| key.clone())
                        || id.name != table)
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequestException",
                        "the body's identifier names another table than the path",
                    ));
                }
                let change = TableChange {
                    key,
                    requirements: req.requirements,
                    updates: req.updates,
                };
                let t = catalog
                    .commit_table(principal, &prefix(&p)?, change, &authored, idem)
                    .map_err(catalog_err)?;
                metrics.commit();
                load_reply(&t, false)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let key = table_key(&namespace(&ns2)?, &table2)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let (_, t) = catalog
                    .load_table(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                load_reply(&t, false)
            },
        },
    )
    .await
}

async fn drop_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DropQuery>,
) -> Response {
    let authored = authored(&headers);
    write::write_empty(
        &state,
        &method,
        &uri,
        &headers,
        &[],
        move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            // Parsed (case-insensitively, as clients send True and false) but never acted
            // on: dropping never deletes files; garbage collection will, over every ref.
            if let Some(v) = &q.purge_requested
                && !v.eq_ignore_ascii_case("true")
                && !v.eq_ignore_ascii_case("false")
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    format!("purgeRequested must be true or false, got {v:?}"),
                ));
            }
            let key = table_key(&namespace(&ns)?, &table)?;
            catalog
                .drop_table(principal, &prefix(&p)?, &key, &authored, idem)
                .map_err(catalog_err)?;
            Ok(())
        },
    )
    .await
}

async fn commit_transaction(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath(p): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let metrics = state.metrics.clone();
    write::write_empty(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            let req: CommitTransactionRequest = body(&b2)?;
            let mut changes = Vec::new();
            for c in req.table_changes {
                let Some(id) = c.identifier else {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequestException",
                        "every table change of a transaction needs its identifier",
                    ));
                };
                changes.push(TableChange {
                    key: table_key(&levels(&id.namespace)?, &id.name)?,
                    requirements: c.requirements,
                    updates: c.updates,
                });
            }
            catalog
                .commit_tables(principal, &prefix(&p)?, changes, &authored, idem)
                .map_err(catalog_err)?;
            metrics.commit();
            Ok(())
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RenameRequest {
    source: TableIdent,
    destination: TableIdent,
}

async fn rename_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath(p): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Response {
    rename(state, method, uri, headers, p, bytes, Catalog::rename_table).await
}

/// How a table or a view is renamed (the catalog's entry point for each).
type RenameFn = fn(
    &Catalog,
    &Principal,
    &RefSpec,
    &ContentKey,
    &ContentKey,
    &Authored,
    Option<&IdemRequest>,
) -> Result<floe_commits::CommitOutcome, CatalogError>;

/// Renames a table or a view: the request and the answer are the same for both.
async fn rename(
    state: AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    p: String,
    bytes: axum::body::Bytes,
    how: RenameFn,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    write::write_empty(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            let req: RenameRequest = body(&b2)?;
            let from = table_key(&levels(&req.source.namespace)?, &req.source.name)?;
            let to = table_key(&levels(&req.destination.namespace)?, &req.destination.name)?;
            how(
                catalog,
                principal,
                &prefix(&p)?,
                &from,
                &to,
                &authored,
                idem,
            )
            .map_err(catalog_err)?;
            Ok(())
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegisterRequest {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

async fn register_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let b3 = bytes.clone();
    let ns2 = ns.clone();
    write::write(&state, &method, &uri, &headers, &bytes, Write {
        run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            let req: RegisterRequest = body(&b2)?;
            if req.overwrite {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "register with overwrite is refused: drop the table first (its history stays in floe)",
                ));
            }
            let key = table_key(&namespace(&ns)?, &req.name)?;
            let t = catalog
                .register_table(principal, &prefix(&p)?, &key, &req.metadata_location, &authored, idem)
                .map_err(catalog_err)?;
            load_reply(&t, true)
        },
        replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
            let req: RegisterRequest = body(&b3)?;
            let key = table_key(&namespace(&ns2)?, &req.name)?;
            let head = rec.head.ok_or_else(|| ApiError::internal(&"no head recorded"))?;
            let (_, t) = catalog.load_table(principal, &at(&head)?, &key).map_err(catalog_err)?;
            load_reply(&t, true)
        },
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MetricsReport {
    report_type: String,
}

/// Accepts an Iceberg metrics report for a table that exists at the prefix, and counts it.
async fn report_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let metrics = state.metrics.clone();
    write::read(&state, &headers, move |catalog, principal| {
        let report: MetricsReport = body(&bytes)?;
        let key = table_key(&namespace(&ns)?, &table)?;
        catalog
            .load_table(principal, &prefix(&p)?, &key)
            .map_err(catalog_err)?;
        metrics.report(&report.report_type);
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

async fn unregister_table(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns, table)): ApiPath<(String, String, String)>,
) -> Response {
    let authored = authored(&headers);
    let (ns2, table2) = (ns.clone(), table.clone());
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &[],
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let key = table_key(&namespace(&ns)?, &table)?;
                let t = catalog
                    .unregister_table(principal, &prefix(&p)?, &key, &authored, idem)
                    .map_err(catalog_err)?;
                load_reply(&t, false)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let key = table_key(&namespace(&ns2)?, &table2)?;
                let before = rec
                    .previous
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let (_, t) = catalog
                    .load_table(principal, &at(&before)?, &key)
                    .map_err(catalog_err)?;
                load_reply(&t, false)
            },
        },
    )
    .await
}

// ----- views ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateViewRequest {
    name: String,
    #[serde(default)]
    location: Option<String>,
    schema: Schema,
    view_version: iceberg::spec::ViewVersion,
    #[serde(default)]
    properties: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum ViewRequirementBody {
    AssertViewUuid { uuid: uuid::Uuid },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CommitViewRequest {
    #[serde(default)]
    identifier: Option<TableIdent>,
    #[serde(default)]
    requirements: Vec<ViewRequirementBody>,
    #[serde(default)]
    updates: Vec<iceberg::ViewUpdate>,
}

fn view_reply(v: &floe_catalog::LoadedView) -> ApiResult<Reply> {
    let metadata = std::str::from_utf8(&v.metadata_json)
        .map_err(|_| ApiError::internal(&"a view metadata file is not UTF-8"))?;
    let location =
        serde_json::to_string(&v.metadata_location).map_err(|e| ApiError::internal(&e))?;
    Ok(Reply {
        status: StatusCode::OK,
        body: Some(format!(
            "{{\"metadata-location\":{location},\"metadata\":{metadata},\"config\":{{}}}}"
        )),
    })
}

async fn list_views(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = namespace(&ns)?;
        let after = extract::parse_key_token(q.page_token.as_deref().filter(|t| !t.is_empty()))?;
        let limit = q
            .page_size
            .map_or(LIST_MAX, |n| (n as usize).clamp(1, LIST_MAX));
        let page = catalog
            .list_views(principal, &prefix(&p)?, &key, after.as_ref(), limit)
            .map_err(catalog_err)?;
        let identifiers: Vec<Value> = page
            .items
            .iter()
            .map(|k| json!({ "namespace": elements(&key), "name": k.name() }))
            .collect();
        let mut reply = json!({ "identifiers": identifiers });
        // A token whenever the list was cut short (by `pageSize`, or by LIST_MAX or the
        // scan bound when the client sent none): never a silent truncation.
        if let Some(next) = page.next {
            reply["next-page-token"] = Value::String(extract::key_token(&next));
        }
        Reply::json(StatusCode::OK, &reply)
    })
    .await
}

async fn create_view(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let (b2, b3, ns2) = (bytes.clone(), bytes.clone(), ns.clone());
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let req: CreateViewRequest = body(&b2)?;
                check_names([req.name.as_str()])?;
                let create = floe_catalog::ViewCreate {
                    name: req.name,
                    location: req.location,
                    schema: req.schema,
                    view_version: req.view_version,
                    properties: req.properties,
                };
                let v = catalog
                    .create_view(
                        principal,
                        &prefix(&p)?,
                        &namespace(&ns)?,
                        create,
                        &authored,
                        idem,
                    )
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let req: CreateViewRequest = body(&b3)?;
                let key = table_key(&namespace(&ns2)?, &req.name)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let v = catalog
                    .load_view(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
        },
    )
    .await
}

async fn load_view(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = table_key(&namespace(&ns)?, &view)?;
        let v = catalog
            .load_view(principal, &prefix(&p)?, &key)
            .map_err(catalog_err)?;
        view_reply(&v)
    })
    .await
}

async fn view_exists(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
) -> Response {
    write::read(&state, &headers, move |catalog, principal| {
        let key = table_key(&namespace(&ns)?, &view)?;
        catalog
            .load_view(principal, &prefix(&p)?, &key)
            .map_err(catalog_err)?;
        Reply::empty(StatusCode::NO_CONTENT)
    })
    .await
}

async fn replace_view(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let b2 = bytes.clone();
    let (ns2, view2) = (ns.clone(), view.clone());
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let req: CommitViewRequest = body(&b2)?;
                let key = table_key(&namespace(&ns)?, &view)?;
                if let Some(id) = &req.identifier
                    && (levels(&id.namespace)? != key.parent().unwrap_or_else(|| key.clone())
                        || id.name != view)
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequestException",
                        "the body's identifier names another view than the path",
                    ));
                }
                let requirements: Vec<floe_catalog::ViewRequirement> = req
                    .requirements
                    .into_iter()
                    .map(|ViewRequirementBody::AssertViewUuid { uuid }| {
                        floe_catalog::ViewRequirement::AssertViewUuid(uuid)
                    })
                    .collect();
                let v = catalog
                    .replace_view(
                        principal,
                        &prefix(&p)?,
                        &key,
                        &requirements,
                        &req.updates,
                        &authored,
                        idem,
                    )
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let key = table_key(&namespace(&ns2)?, &view2)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let v = catalog
                    .load_view(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
        },
    )
    .await
}

async fn drop_view(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns, view)): ApiPath<(String, String, String)>,
) -> Response {
    let authored = authored(&headers);
    write::write_empty(
        &state,
        &method,
        &uri,
        &headers,
        &[],
        move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
            let key = table_key(&namespace(&ns)?, &view)?;
            catalog
                .drop_view(principal, &prefix(&p)?, &key, &authored, idem)
                .map_err(catalog_err)?;
            Ok(())
        },
    )
    .await
}

async fn rename_view(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath(p): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Response {
    rename(state, method, uri, headers, p, bytes, Catalog::rename_view).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegisterViewRequest {
    name: String,
    metadata_location: String,
}

async fn register_view(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiPath((p, ns)): ApiPath<(String, String)>,
    ApiBody(bytes): ApiBody,
) -> Response {
    let authored = authored(&headers);
    let (b2, b3, ns2) = (bytes.clone(), bytes.clone(), ns.clone());
    write::write(
        &state,
        &method,
        &uri,
        &headers,
        &bytes,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                let req: RegisterViewRequest = body(&b2)?;
                let key = table_key(&namespace(&ns)?, &req.name)?;
                let v = catalog
                    .register_view(
                        principal,
                        &prefix(&p)?,
                        &key,
                        &req.metadata_location,
                        &authored,
                        idem,
                    )
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
            replay: move |catalog: &Catalog, principal: &Principal, rec: &AppliedRecord| {
                let req: RegisterViewRequest = body(&b3)?;
                let key = table_key(&namespace(&ns2)?, &req.name)?;
                let head = rec
                    .head
                    .ok_or_else(|| ApiError::internal(&"no head recorded"))?;
                let v = catalog
                    .load_view(principal, &at(&head)?, &key)
                    .map_err(catalog_err)?;
                view_reply(&v)
            },
        },
    )
    .await
}
