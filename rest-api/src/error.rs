//! The one error table (STYLE rule 4): every error either API answers is an `ErrorKind`,
//! and `ErrorKind::row` gives, in one place, its HTTP status, floe's error type and the
//! Iceberg exception name. Domain errors (`CatalogError`, the store's errors, queries and
//! imports) become kinds here and nowhere else; nothing below `rest-api` knows a status.
//!
//! An error is rendered for the API the request came in through (`Api`): floe's
//! `ErrorBody`, or the Iceberg spec's `ErrorModel`. A 5xx shows only an error id; the log
//! carries the chain under the same id.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use floe_commits::Conflict;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod domain;

/// Which API a request came in through, and so how its errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// floe's own API (`/api/v1`) and the service routes: `ErrorBody`.
    Floe,
    /// The Iceberg REST catalog (`/iceberg`): the spec's `IcebergErrorResponse`.
    Iceberg,
    /// The Iceberg view routes, whose 404, 409 and 5xx answers the spec documents as a
    /// bare `ErrorModel` (its examples still wrap it): the model's fields are given both
    /// wrapped and at the top level, so that the schema and the clients (which read
    /// `error`) are both satisfied.
    IcebergView,
}

impl Api {
    /// The API of a request, from its path as the client sent it and its matched route.
    pub fn of(original_path: &str, route: Option<&str>) -> Api {
        if !original_path.starts_with("/iceberg/") {
            Api::Floe
        } else if route.is_some_and(|r| r.contains("/views")) {
            Api::IcebergView
        } else {
            Api::Iceberg
        }
    }

    /// The API of a request, read from its parts (extractors and the observing layer).
    pub fn of_parts(parts: &axum::http::request::Parts) -> Api {
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path(), |u| u.0.path());
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str);
        Api::of(path, route)
    }

    fn is_iceberg(self) -> bool {
        self != Api::Floe
    }
}

/// Every kind of error either API answers. Its wire names are columns of the table
/// (`ErrorKind::row`); the variant's own name is how a recorded rejection keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    BadRequest,
    Forbidden,
    Unauthorized,
    DefaultBranch,
    ReadOnlyRef,
    NamespaceNotFound,
    NamespaceAlreadyExists,
    NotANamespace,
    NamespaceNotEmpty,
    Contention,
    TableNotFound,
    TableAlreadyExists,
    SameTable,
    ViewNotFound,
    ViewAlreadyExists,
    CommitFailed,
    RunSealed,
    RunNotFound,
    RunNotPromotable,
    RunNotRevertible,
    Unsupported,
    OutsideWarehouse,
    FileNotFound,
    RefNotFound,
    CommitNotFound,
    NotInHistory,
    AmbiguousHash,
    LimitExceeded,
    RefAlreadyExists,
    NotABranch,
    TagImmutable,
    ReservedRef,
    ReferenceConflict,
    Conflict,
    NotFastForward,
    /// A request the Iceberg spec answers with 422 (a property both updated and removed).
    UnprocessableEntity,
    IdempotencyKeyReused,
    IdempotencyInFlight,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    NotImplemented,
    InvalidQuery,
    /// A table a query names is not at the ref: the statement is what to fix (400).
    QueryTableNotFound,
    TableUnreadable,
    QueryTimeout,
    QueryMemoryExceeded,
    InvalidImport,
    /// A project archive or project that does not plan (every error, with file and line).
    InvalidProject,
    IncompatibleFiles,
    DuplicateImport,
    ImportRootRequired,
    OutsideImportRoots,
    Unavailable,
    InternalError,
}

/// One row of the table: what an error kind is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub status: StatusCode,
    /// floe's error type (`type` of `ErrorBody`).
    pub floe: &'static str,
    /// The Iceberg exception name (`type` of the spec's `ErrorModel`).
    pub iceberg: &'static str,
    /// The request may apply when retried (contention, a duplicate in flight): never
    /// recorded under an Idempotency-Key as the final answer; floe's API says when.
    pub retry_after_s: Option<u32>,
}

impl ErrorKind {
    /// Every kind, in the table's order.
    pub const ALL: [ErrorKind; 56] = {
        use ErrorKind as K;
        [
            K::BadRequest,
            K::Forbidden,
            K::Unauthorized,
            K::DefaultBranch,
            K::ReadOnlyRef,
            K::NamespaceNotFound,
            K::NamespaceAlreadyExists,
            K::NotANamespace,
            K::NamespaceNotEmpty,
            K::Contention,
            K::TableNotFound,
            K::TableAlreadyExists,
            K::SameTable,
            K::ViewNotFound,
            K::ViewAlreadyExists,
            K::CommitFailed,
            K::RunSealed,
            K::RunNotFound,
            K::RunNotPromotable,
            K::RunNotRevertible,
            K::Unsupported,
            K::OutsideWarehouse,
            K::FileNotFound,
            K::RefNotFound,
            K::CommitNotFound,
            K::NotInHistory,
            K::AmbiguousHash,
            K::LimitExceeded,
            K::RefAlreadyExists,
            K::NotABranch,
            K::TagImmutable,
            K::ReservedRef,
            K::ReferenceConflict,
            K::Conflict,
            K::NotFastForward,
            K::UnprocessableEntity,
            K::IdempotencyKeyReused,
            K::IdempotencyInFlight,
            K::PayloadTooLarge,
            K::NotFound,
            K::MethodNotAllowed,
            K::NotAcceptable,
            K::NotImplemented,
            K::InvalidQuery,
            K::QueryTableNotFound,
            K::TableUnreadable,
            K::QueryTimeout,
            K::QueryMemoryExceeded,
            K::InvalidImport,
            K::InvalidProject,
            K::IncompatibleFiles,
            K::DuplicateImport,
            K::ImportRootRequired,
            K::OutsideImportRoots,
            K::Unavailable,
            K::InternalError,
        ]
    };

    /// The table: every status, floe type and Iceberg exception of both APIs.
    pub fn row(self) -> Row {
        use ErrorKind as K;
        use StatusCode as S;
        let (status, floe, iceberg) = match self {
            K::BadRequest => (S::BAD_REQUEST, "BadRequest", "BadRequestException"),
            K::Forbidden => (S::FORBIDDEN, "Forbidden", "ForbiddenException"),
            K::Unauthorized => (S::UNAUTHORIZED, "Unauthorized", "NotAuthorizedException"),
            K::DefaultBranch => (S::BAD_REQUEST, "DefaultBranch", "BadRequestException"),
            K::ReadOnlyRef => (S::BAD_REQUEST, "ReadOnlyRef", "BadRequestException"),
            K::NamespaceNotFound => (
                S::NOT_FOUND,
                "NamespaceNotFound",
                "NoSuchNamespaceException",
            ),
            K::NamespaceAlreadyExists => (
                S::CONFLICT,
                "NamespaceAlreadyExists",
                "AlreadyExistsException",
            ),
            K::NotANamespace => (S::CONFLICT, "NotANamespace", "AlreadyExistsException"),
            K::NamespaceNotEmpty => (
                S::CONFLICT,
                "NamespaceNotEmpty",
                "NamespaceNotEmptyException",
            ),
            // Iceberg clients refresh and retry a commit answered 409 CommitFailed.
            K::Contention => (S::CONFLICT, "Contention", "CommitFailedException"),
            K::TableNotFound => (S::NOT_FOUND, "TableNotFound", "NoSuchTableException"),
            K::TableAlreadyExists => (S::CONFLICT, "TableAlreadyExists", "AlreadyExistsException"),
            K::SameTable => (S::CONFLICT, "SameTable", "AlreadyExistsException"),
            K::ViewNotFound => (S::NOT_FOUND, "ViewNotFound", "NoSuchViewException"),
            K::ViewAlreadyExists => (S::CONFLICT, "ViewAlreadyExists", "AlreadyExistsException"),
            K::CommitFailed => (S::CONFLICT, "CommitFailed", "CommitFailedException"),
            K::RunSealed => (S::CONFLICT, "RunSealed", "CommitFailedException"),
            K::RunNotFound => (S::NOT_FOUND, "RunNotFound", "NotFoundException"),
            K::RunNotPromotable => (S::CONFLICT, "RunNotPromotable", "CommitFailedException"),
            K::RunNotRevertible => (S::CONFLICT, "RunNotRevertible", "CommitFailedException"),
            K::Unsupported => (S::BAD_REQUEST, "Unsupported", "BadRequestException"),
            K::OutsideWarehouse => (S::BAD_REQUEST, "OutsideWarehouse", "BadRequestException"),
            K::FileNotFound => (S::BAD_REQUEST, "FileNotFound", "BadRequestException"),
            K::RefNotFound => (S::NOT_FOUND, "RefNotFound", "NotFoundException"),
            K::CommitNotFound => (S::NOT_FOUND, "CommitNotFound", "NotFoundException"),
            K::NotInHistory => (S::NOT_FOUND, "NotInHistory", "NotFoundException"),
            K::AmbiguousHash => (S::BAD_REQUEST, "AmbiguousHash", "BadRequestException"),
            K::LimitExceeded => (S::BAD_REQUEST, "LimitExceeded", "BadRequestException"),
            K::RefAlreadyExists => (S::CONFLICT, "RefAlreadyExists", "AlreadyExistsException"),
            K::NotABranch => (S::BAD_REQUEST, "NotABranch", "BadRequestException"),
            K::TagImmutable => (S::BAD_REQUEST, "TagImmutable", "BadRequestException"),
            K::ReservedRef => (S::FORBIDDEN, "ReservedRef", "ForbiddenException"),
            K::ReferenceConflict => (S::CONFLICT, "ReferenceConflict", "CommitFailedException"),
            K::Conflict => (S::CONFLICT, "Conflict", "CommitFailedException"),
            K::NotFastForward => (S::CONFLICT, "NotFastForward", "CommitFailedException"),
            K::UnprocessableEntity => (
                S::UNPROCESSABLE_ENTITY,
                "UnprocessableEntity",
                "UnprocessableEntityException",
            ),
            K::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "IdempotencyKeyReused",
                "UnprocessableEntityException",
            ),
            // 503 on the Iceberg API: see `status`.
            K::IdempotencyInFlight => (
                S::CONFLICT,
                "IdempotencyInFlight",
                "ServiceUnavailableException",
            ),
            K::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "BadRequestException",
            ),
            K::NotFound => (S::NOT_FOUND, "NotFound", "NotFoundException"),
            K::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "MethodNotAllowedException",
            ),
            K::NotAcceptable => (S::NOT_ACCEPTABLE, "NotAcceptable", "BadRequestException"),
            K::NotImplemented => (
                S::NOT_IMPLEMENTED,
                "NotImplemented",
                "UnsupportedOperationException",
            ),
            K::InvalidQuery => (S::BAD_REQUEST, "InvalidQuery", "BadRequestException"),
            K::QueryTableNotFound => (S::BAD_REQUEST, "TableNotFound", "BadRequestException"),
            K::TableUnreadable => (
                S::UNPROCESSABLE_ENTITY,
                "TableUnreadable",
                "UnprocessableEntityException",
            ),
            K::QueryTimeout => (
                S::UNPROCESSABLE_ENTITY,
                "QueryTimeout",
                "UnprocessableEntityException",
            ),
            K::QueryMemoryExceeded => (
                S::UNPROCESSABLE_ENTITY,
                "QueryMemoryExceeded",
                "UnprocessableEntityException",
            ),
            K::InvalidImport => (S::BAD_REQUEST, "InvalidImport", "BadRequestException"),
            K::InvalidProject => (S::BAD_REQUEST, "InvalidProject", "BadRequestException"),
            K::IncompatibleFiles => (S::BAD_REQUEST, "IncompatibleFiles", "BadRequestException"),
            K::DuplicateImport => (S::CONFLICT, "DuplicateImport", "AlreadyExistsException"),
            K::ImportRootRequired => (S::FORBIDDEN, "ImportRootRequired", "ForbiddenException"),
            K::OutsideImportRoots => (S::FORBIDDEN, "OutsideImportRoots", "ForbiddenException"),
            K::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                "Unavailable",
                "ServiceUnavailableException",
            ),
            K::InternalError => (
                S::INTERNAL_SERVER_ERROR,
                "InternalError",
                "InternalServerError",
            ),
        };
        let retry_after_s = match self {
            K::Contention | K::IdempotencyInFlight | K::Unavailable => Some(1),
            _ => None,
        };
        Row {
            status,
            floe,
            iceberg,
            retry_after_s,
        }
    }

    /// The status on `api`. One kind differs: a duplicate whose first attempt still runs.
    /// Iceberg clients read a 409 on a commit as "not applied" and would re-apply it on a
    /// refreshed table, so on `/iceberg` it is a 503 ("state unknown"), never a 409.
    pub fn status(self, api: Api) -> StatusCode {
        match self {
            ErrorKind::IdempotencyInFlight if api.is_iceberg() => StatusCode::SERVICE_UNAVAILABLE,
            _ => self.row().status,
        }
    }

    /// `Retry-After` on `api`: floe's API says when to retry; Iceberg clients read it only
    /// on a 503, and retry a 409 commit on a refreshed table by themselves.
    pub fn retry_after_s(self, api: Api) -> Option<u32> {
        let after = self.row().retry_after_s;
        match api {
            Api::Floe => after,
            _ if self.status(api) == StatusCode::SERVICE_UNAVAILABLE => after,
            _ => None,
        }
    }
}

/// The body of every error floe's own API answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable name for the kind of error (`RefNotFound`, `ReferenceConflict`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Quote this id to find the server's log line.
    pub error_id: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// For conflicts: the head the request was evaluated at (64 hex characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_head: Option<String>,
    /// For conflicts: each key that stopped the write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictBody>,
}

/// One key that stopped a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictBody {
    /// The key, its elements joined by `.`.
    pub key: String,
    /// `expectation`, `both-changed`, `ambiguous-base`, `diverged`, `namespace-missing`,
    /// `namespace-not-empty`, `duplicate-content-id` or `prefix-not-empty`.
    pub kind: String,
    /// What the write expected at the key (`absent`, `present` or `content <hash>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The content hash found at the key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_kind: Option<String>,
    /// For merges: how the source changed the key since the merge base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_change: Option<String>,
    /// For merges: how the target changed the key since the merge base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_change: Option<String>,
    /// The other key involved (a duplicate id's key, a key under a namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_key: Option<String>,
    /// For an Iceberg table both sides of a merge changed: the rule that refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ConflictReasonBody>,
}

/// Why a table both sides of a merge changed could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictReasonBody {
    /// The rule (`overwrite-vs-append`, `schema-changes-differ`, `property-clash`, ...).
    pub rule: String,
    pub message: String,
    /// The source's and the target's snapshots since the merge base (`<operation> <id>`).
    pub source_operations: Vec<String>,
    pub target_operations: Vec<String>,
    /// The first files, partitions, fields or properties involved.
    pub involved: Vec<String>,
    /// What to do.
    pub hint: String,
}

impl From<&Conflict> for ConflictBody {
    fn from(c: &Conflict) -> ConflictBody {
        ConflictBody {
            key: c.key.to_string(),
            kind: c.kind.as_str().to_owned(),
            expected: c.expected.map(|e| e.to_string()),
            actual: c.actual.map(|h| h.0.to_hex()),
            actual_kind: c.actual_kind.map(|k| k.as_str().to_owned()),
            source_change: c.source_change.map(|k| k.as_str().to_owned()),
            target_change: c.target_change.map(|k| k.as_str().to_owned()),
            other_key: c.other_key.as_ref().map(ToString::to_string),
            reason: c.reason.as_ref().map(|r| ConflictReasonBody {
                rule: r.rule.clone(),
                message: r.message.clone(),
                source_operations: r.source_operations.clone(),
                target_operations: r.target_operations.clone(),
                involved: r.involved.clone(),
                hint: r.hint.clone(),
            }),
        }
    }
}

/// An error on its way out, before it is rendered for an API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Boxed: errors travel in every `Result` of the request path, and stay small there.
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    error_id: String,
    current_head: Option<String>,
    conflicts: Vec<ConflictBody>,
}

/// The id of one error answer: what the reply shows and the log line carries.
fn error_id() -> String {
    // An inline read's answer after its refusal is thrown away: it needs no id.
    if floe_catalog::inline::refused() {
        return String::new();
    }
    uuid::Uuid::now_v7().to_string()
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                error_id: error_id(),
                current_head: None,
                conflicts: Vec::new(),
            }),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadRequest, message)
    }

    /// A server-side failure: the reply carries only the id; the log carries the chain.
    pub fn internal(chain: &dyn std::fmt::Display) -> ApiError {
        let e = ApiError::new(
            ErrorKind::InternalError,
            "the server failed (a write's outcome is unknown: read before retrying); quote the errorId to the operator",
        );
        // An inline read's answer after its refusal is thrown away: nothing failed.
        if !floe_catalog::inline::refused() {
            tracing::error!(error_id = %e.inner.error_id, "{chain}");
        }
        e
    }

    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    pub fn message(&self) -> &str {
        &self.inner.message
    }

    pub fn error_id(&self) -> &str {
        &self.inner.error_id
    }

    /// Says it again, with a message that names more (the kind and id stay).
    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.inner.message = message.into();
        self
    }

    fn with_head(mut self, head: Option<floe_commits::Hash>) -> ApiError {
        self.inner.current_head = head.map(|h| h.to_hex());
        self
    }

    /// True for rejections that a retry with the same request would get again, and so are
    /// recorded under an Idempotency-Key: a 4xx that does not say "retry" (contention, a
    /// duplicate in flight) and is not a refusal of the principal (whose rights may change).
    pub fn is_deterministic(&self) -> bool {
        let row = self.inner.kind.row();
        row.status.is_client_error()
            && row.retry_after_s.is_none()
            && row.status != StatusCode::FORBIDDEN
    }

    /// floe's body for this error (what `/api/v1` answers, and what a recorded rejection
    /// keeps).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            kind: self.inner.kind.row().floe.to_owned(),
            message: self.inner.message.clone(),
            error_id: self.inner.error_id.clone(),
            status: self.inner.kind.status(Api::Floe).as_u16(),
            current_head: self.inner.current_head.clone(),
            conflicts: self.inner.conflicts.clone(),
        }
    }

    /// How a deterministic rejection is kept under its Idempotency-Key: the kind and
    /// floe's body, so that a retry gets the same error (id included) on whichever API it
    /// comes through.
    pub fn recorded(&self) -> String {
        serde_json::json!({ "kind": self.inner.kind, "body": self.body() }).to_string()
    }

    /// The error a recorded rejection keeps. Records written before the kind was kept hold
    /// floe's body alone, whose type names the kind (the first row with that name). `None`
    /// for a record this table cannot read: the retry is then evaluated again.
    pub fn from_recorded(text: &str) -> Option<ApiError> {
        #[derive(Deserialize)]
        struct Recorded {
            kind: Option<ErrorKind>,
            body: Option<ErrorBody>,
        }
        let (kind, body) = match serde_json::from_str::<Recorded>(text) {
            Ok(Recorded {
                kind: Some(kind),
                body: Some(body),
            }) => (kind, body),
            _ => {
                let body: ErrorBody = serde_json::from_str(text).ok()?;
                // The type and status of a final answer (a retryable one is never kept):
                // a floe type names one row; an Iceberg name, with its status, the
                // first of the rows that answer alike.
                let row_of = |name: fn(&Row) -> &'static str| {
                    ErrorKind::ALL.into_iter().find(|k| {
                        let row = k.row();
                        row.retry_after_s.is_none()
                            && row.status.as_u16() == body.status
                            && name(&row) == body.kind
                    })
                };
                let kind = row_of(|r| r.floe).or_else(|| row_of(|r| r.iceberg))?;
                (kind, body)
            }
        };
        Some(ApiError {
            inner: Box::new(Inner {
                kind,
                message: body.message,
                error_id: body.error_id,
                current_head: body.current_head,
                conflicts: body.conflicts,
            }),
        })
    }

    /// The answer on `api`.
    pub fn render(&self, api: Api) -> Response {
        let kind = self.inner.kind;
        let status = kind.status(api);
        let body = match api {
            Api::Floe => serde_json::to_string(&self.body()),
            Api::Iceberg | Api::IcebergView => {
                let message = if status.is_server_error() {
                    format!("{} (error id {})", self.inner.message, self.inner.error_id)
                } else {
                    self.inner.message.clone()
                };
                let model = crate::iceberg::wire::ErrorModel {
                    message,
                    kind: kind.row().iceberg,
                    code: status.as_u16(),
                };
                let flat = api == Api::IcebergView
                    && (status == StatusCode::NOT_FOUND
                        || status == StatusCode::CONFLICT
                        || status.is_server_error());
                serde_json::to_string(&crate::iceberg::wire::IcebergErrorResponse {
                    flat: flat.then(|| model.clone()),
                    error: model,
                })
            }
        };
        let mut response = (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body.unwrap_or_default(),
        )
            .into_response();
        if let Some(s) = kind.retry_after_s(api) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(s));
        }
        response.extensions_mut().insert(AnsweredError {
            kind,
            error_id: self.inner.error_id.clone(),
        });
        response
    }
}

/// What the observing layer learns of an error answer (for the request's log line).
#[derive(Debug, Clone)]
pub struct AnsweredError {
    pub kind: ErrorKind,
    pub error_id: String,
}

/// floe's own API's rendering: handlers of `/api/v1` return `ApiError`s as they are.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Api::Floe)
    }
}

#[cfg(feature = "compute")]
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded rejection comes back as the same error (kind, message, id, details), so a
    /// retry is answered alike on either API; records from before the kind was kept are
    /// read by their type and status; anything else is not an answer.
    #[test]
    fn recorded_rejections_come_back_as_the_same_error() {
        let first = ApiError::new(ErrorKind::TableNotFound, "table db.t does not exist");
        let again = ApiError::from_recorded(&first.recorded()).unwrap();
        assert_eq!(again.kind(), ErrorKind::TableNotFound);
        assert_eq!(again.body(), first.body());
        let legacy = |kind: &str, status: u16| {
            let body = serde_json::json!({
                "type": kind, "message": "m", "errorId": "e", "status": status,
            });
            ApiError::from_recorded(&body.to_string()).map(|e| e.kind())
        };
        assert_eq!(
            legacy("BadRequestException", 400),
            Some(ErrorKind::BadRequest)
        );
        assert_eq!(
            legacy("CommitFailedException", 409),
            Some(ErrorKind::CommitFailed)
        );
        assert_eq!(legacy("TableNotFound", 404), Some(ErrorKind::TableNotFound));
        assert_eq!(
            legacy("TableNotFound", 400),
            Some(ErrorKind::QueryTableNotFound)
        );
        assert_eq!(
            legacy("Contention", 409),
            None,
            "a retryable answer is never kept"
        );
        assert_eq!(legacy("NoSuchKind", 400), None);
        assert!(ApiError::from_recorded("{").is_none());
    }
}
