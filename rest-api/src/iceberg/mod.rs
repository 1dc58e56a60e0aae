//! The Apache Iceberg REST catalog under `/iceberg` (DESIGN §3). The REST `prefix` is a ref
//! spec: a branch is read and written, a tag, `name@hash`, hash, `~N` or `*time` is read
//! only. `GET /iceberg/v1/config?warehouse=<spec>` hands the prefix to the client.
//!
//! One file per resource (config, namespaces, tables, views, transactions) and `wire.rs`,
//! the typed bodies. Handlers share floe's request path (`write::read`, `write::write`: a
//! blocking thread, the principal, idempotency) and its one error table (`error.rs`),
//! which renders every error as the spec's `ErrorModel` for requests that came in here.

mod config;
mod namespaces;
mod tables;
mod transactions;
mod views;
pub mod wire;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use floe_catalog::Authored;
use floe_commits::{ContentKey, Hash, RefName, RefSpec};

use crate::error::{ApiError, ApiResult};
use crate::extract;
use crate::{AppState, Mount};

/// Namespaces or tables answered by one list call when the client sends no `pageSize`.
pub const LIST_MAX: usize = 1_000;

/// The operations served, exactly as `config` advertises them.
pub const ENDPOINTS: &[&str] = &[
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
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
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

/// Where the Iceberg REST catalog is mounted.
pub const MOUNT: &str = "/iceberg";

/// The Iceberg REST catalog's routes, under `MOUNT`.
pub fn router() -> Router<AppState> {
    const NAMESPACE: &str = "/v1/{prefix}/namespaces/{namespace}";
    const TABLE: &str = "/v1/{prefix}/namespaces/{namespace}/tables/{table}";
    const VIEW: &str = "/v1/{prefix}/namespaces/{namespace}/views/{view}";
    Mount::at(MOUNT)
        .route("/v1/config", get(config::config))
        .route(
            "/v1/{prefix}/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            NAMESPACE,
            get(namespaces::load)
                .head(namespaces::exists)
                .delete(namespaces::drop),
        )
        .route(
            &format!("{NAMESPACE}/properties"),
            post(namespaces::update_properties),
        )
        .route(
            &format!("{NAMESPACE}/tables"),
            get(tables::list).post(tables::create),
        )
        .route(
            TABLE,
            get(tables::load)
                .head(tables::exists)
                .post(tables::commit)
                .delete(tables::drop),
        )
        .route(&format!("{TABLE}/metrics"), post(tables::report_metrics))
        .route(&format!("{TABLE}/credentials"), get(tables::credentials))
        .route(&format!("{TABLE}/unregister"), post(tables::unregister))
        .route(&format!("{NAMESPACE}/register"), post(tables::register))
        .route("/v1/{prefix}/tables/rename", post(tables::rename))
        .route(
            "/v1/{prefix}/transactions/commit",
            post(transactions::commit),
        )
        .route(
            &format!("{NAMESPACE}/views"),
            get(views::list).post(views::create),
        )
        .route(
            VIEW,
            get(views::load)
                .head(views::exists)
                .post(views::replace)
                .delete(views::drop),
        )
        .route("/v1/{prefix}/views/rename", post(views::rename))
        .route(&format!("{NAMESPACE}/register-view"), post(views::register))
        .router()
}

// ----- parsing at the edge ---------------------------------------------------------------

/// The REST prefix: a ref spec.
fn prefix(text: &str) -> ApiResult<RefSpec> {
    RefSpec::parse(text)
        .map_err(|e| ApiError::bad_request(format!("the prefix {text:?} is not a ref spec: {e}")))
}

/// The ref a prefix reads, for a read to fetch first (`write::read_on`); a prefix that is
/// not a ref spec names none, and the read says why.
fn ref_of(text: &str) -> Option<RefName> {
    RefSpec::parse(text).ok()?.ref_name().cloned()
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
            return Err(ApiError::bad_request(format!(
                "{n:?} is not a valid namespace or table name (no `.`, `..`, `/`, `\\` or %-escapes)"
            )));
        }
    }
    Ok(())
}

/// A namespace in a URL: levels joined by U+001F (a `.` is part of a level here).
fn namespace(text: &str) -> ApiResult<ContentKey> {
    check_names(text.split('\u{1f}'))?;
    ContentKey::new(text.split('\u{1f}'))
        .map_err(|e| ApiError::bad_request(format!("namespace {text:?}: {e}")))
}

/// A namespace in a body: its levels.
fn levels(elements: &[String]) -> ApiResult<ContentKey> {
    check_names(elements.iter().map(String::as_str))?;
    ContentKey::new(elements)
        .map_err(|e| ApiError::bad_request(format!("namespace {elements:?}: {e}")))
}

/// A table's or a view's key: its namespace and its name.
fn object_key(ns: &ContentKey, name: &str) -> ApiResult<ContentKey> {
    check_names([name])?;
    ns.child(name)
        .map_err(|e| ApiError::bad_request(format!("table name {name:?}: {e}")))
}

/// The key a body's identifier names.
fn identified(id: &wire::TableIdentifier) -> ApiResult<ContentKey> {
    object_key(&levels(&id.namespace)?, &id.name)
}

/// Refuses a body whose identifier names another table or view than the path does.
fn check_identifier(
    id: Option<&wire::TableIdentifier>,
    key: &ContentKey,
    what: &str,
) -> ApiResult<()> {
    match id {
        Some(id) if identified(id)? != *key => Err(ApiError::bad_request(format!(
            "the body's identifier names another {what} than the path"
        ))),
        _ => Ok(()),
    }
}

/// A JSON body, saying where it is wrong.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
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

/// A commit as a ref spec: what a retry's answer is rebuilt at.
fn at(h: &Hash) -> ApiResult<RefSpec> {
    extract::spec(&h.to_hex())
}

/// The head an applied write recorded (its answer is rebuilt there).
fn recorded(head: Option<Hash>) -> ApiResult<RefSpec> {
    at(&head.ok_or_else(|| ApiError::internal(&"an applied write recorded no head"))?)
}

/// A list's page: the client's `pageToken` and `pageSize` (at most `LIST_MAX`).
fn page(token: Option<&str>, size: Option<u32>) -> ApiResult<(Option<ContentKey>, usize)> {
    let after = extract::parse_key_token(token.filter(|t| !t.is_empty()))?;
    Ok((after, extract::page_size(size, LIST_MAX, LIST_MAX)))
}

/// A page of a namespace's tables or views (one answer shape for both): the names, and a
/// token whenever the list was cut short, never a silent truncation.
fn identifiers_reply(
    ns: &ContentKey,
    keys: &[ContentKey],
    next: Option<&ContentKey>,
) -> ApiResult<crate::write::Reply> {
    crate::write::Reply::ok(&wire::ListTablesResponse {
        identifiers: keys
            .iter()
            .map(|k| wire::TableIdentifier {
                namespace: elements(ns),
                name: k.name().to_owned(),
            })
            .collect(),
        next_page_token: next.map(extract::key_token),
    })
}
