//! The one mapping from domain errors to HTTP (STYLE rule 4). Every error floe's own API
//! answers has one shape, `ErrorBody`: a stable `type`, a message that says what to fix,
//! an error id, and for conflicts the keys and the current head. A 5xx shows only the id;
//! the chain goes to the server's log under the same id.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use floe_catalog::CatalogError;
use floe_commits::{Conflict, ReadError, WriteError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        }
    }
}

/// An error on its way out: a status and a body (and, rarely, a `Retry-After`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every `Result` of the request path, and stay small there.
    pub body: Box<ErrorBody>,
    pub retry_after_s: Option<u32>,
    /// The same request may apply when retried (contention, a duplicate in flight): the
    /// answer is never recorded under an Idempotency-Key as final.
    pub retryable: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                kind: kind.to_owned(),
                message: message.into(),
                error_id: uuid::Uuid::now_v7().to_string(),
                status: status.as_u16(),
                current_head: None,
                conflicts: Vec::new(),
            }),
            retry_after_s: None,
            retryable: false,
        }
    }

    /// A rejection that a retry of the same request may not get (see `retryable`).
    pub fn retryable(mut self, retry_after_s: Option<u32>) -> ApiError {
        self.retryable = true;
        self.retry_after_s = retry_after_s;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// A server-side failure: the reply carries only the id; the log carries the chain.
    pub fn internal(chain: &dyn std::fmt::Display) -> ApiError {
        let e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the server failed (a write's outcome is unknown: read before retrying); quote the errorId to the operator",
        );
        eprintln!("floe: error {}: {chain}", e.body.error_id);
        e
    }

    fn with_head(mut self, head: Option<floe_commits::Hash>) -> ApiError {
        self.body.current_head = head.map(|h| h.to_hex());
        self
    }

    /// True for rejections that a retry with the same request would get again.
    pub fn is_deterministic(&self) -> bool {
        // A rejection that says "retry" (contention, a duplicate in flight) is not final.
        self.status.is_client_error()
            && !self.retryable
            && self.retry_after_s.is_none()
            && self.status != StatusCode::FORBIDDEN
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.body).unwrap_or_default();
        let mut response = (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

#[cfg(feature = "compute")]
impl From<floe_compute::QueryError> for ApiError {
    fn from(e: floe_compute::QueryError) -> ApiError {
        use floe_compute::QueryError;
        let message = e.to_string();
        match e {
            QueryError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", message)
            }
            QueryError::TableNotFound(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "TableNotFound", message)
            }
            QueryError::TableUnreadable(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "TableUnreadable", message)
            }
            QueryError::Timeout(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "QueryTimeout", message)
            }
            QueryError::Memory { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "QueryMemoryExceeded",
                message,
            ),
            QueryError::Catalog(e) => ApiError::from(e),
            QueryError::Engine(_) => ApiError::internal(&message),
        }
    }
}

#[cfg(feature = "compute")]
impl From<floe_compute::ImportError> for ApiError {
    fn from(e: floe_compute::ImportError) -> ApiError {
        use floe_compute::ImportError;
        let message = e.to_string();
        match e.root() {
            ImportError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidImport", message)
            }
            ImportError::Incompatible(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "IncompatibleFiles", message)
            }
            ImportError::Duplicate { .. } => {
                ApiError::new(StatusCode::CONFLICT, "DuplicateImport", message)
            }
            ImportError::Catalog(inner) => {
                let mut mapped = ApiError::from(inner.clone());
                if mapped.status.is_client_error() {
                    mapped.body.message = message;
                }
                mapped
            }
            ImportError::Io(_) | ImportError::RunFailed { .. } => ApiError::internal(&message),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        let message = e.to_string();
        let of = |status, kind: &str| ApiError::new(status, kind, message.clone());
        match e {
            CatalogError::Forbidden { .. } => of(StatusCode::FORBIDDEN, "Forbidden"),
            CatalogError::Invalid(_) => of(StatusCode::BAD_REQUEST, "BadRequest"),
            CatalogError::DefaultBranch(_) => of(StatusCode::BAD_REQUEST, "DefaultBranch"),
            CatalogError::ReadOnly { .. } => of(StatusCode::BAD_REQUEST, "ReadOnlyRef"),
            CatalogError::NamespaceNotFound(_) => of(StatusCode::NOT_FOUND, "NamespaceNotFound"),
            CatalogError::NamespaceAlreadyExists(_) => {
                of(StatusCode::CONFLICT, "NamespaceAlreadyExists")
            }
            CatalogError::NotANamespace { .. } => of(StatusCode::CONFLICT, "NotANamespace"),
            CatalogError::NamespaceNotEmpty { head, .. } => {
                of(StatusCode::CONFLICT, "NamespaceNotEmpty").with_head(Some(head))
            }
            CatalogError::Contention(_) => {
                of(StatusCode::CONFLICT, "Contention").retryable(Some(1))
            }
            CatalogError::TableNotFound(_) => of(StatusCode::NOT_FOUND, "TableNotFound"),
            CatalogError::TableAlreadyExists(_) => of(StatusCode::CONFLICT, "TableAlreadyExists"),
            CatalogError::SameTable { .. } => of(StatusCode::CONFLICT, "SameTable"),
            CatalogError::ViewNotFound(_) => of(StatusCode::NOT_FOUND, "ViewNotFound"),
            CatalogError::ViewAlreadyExists(_) => of(StatusCode::CONFLICT, "ViewAlreadyExists"),
            CatalogError::CommitFailed(_) => of(StatusCode::CONFLICT, "CommitFailed"),
            CatalogError::RunSealed { .. } => of(StatusCode::CONFLICT, "RunSealed"),
            CatalogError::RunNotFound(_) => of(StatusCode::NOT_FOUND, "RunNotFound"),
            CatalogError::RunNotPromotable { .. } => of(StatusCode::CONFLICT, "RunNotPromotable"),
            CatalogError::RunExpired { .. } => of(StatusCode::CONFLICT, "RunSealed"),
            CatalogError::Unsupported(_) => of(StatusCode::BAD_REQUEST, "Unsupported"),
            CatalogError::Warehouse(floe_catalog::WarehouseError::Outside { .. }) => {
                of(StatusCode::BAD_REQUEST, "OutsideWarehouse")
            }
            CatalogError::Warehouse(floe_catalog::WarehouseError::NotFound(_)) => {
                of(StatusCode::BAD_REQUEST, "FileNotFound")
            }
            CatalogError::Warehouse(w) => ApiError::internal(&w),
            CatalogError::Read(e) => read_error(e, &message),
            CatalogError::Write(e) => write_error(e, &message),
        }
    }
}

fn read_error(e: ReadError, message: &str) -> ApiError {
    let of = |status, kind: &str| ApiError::new(status, kind, message);
    match e {
        ReadError::RefNotFound(_) => of(StatusCode::NOT_FOUND, "RefNotFound"),
        ReadError::CommitNotFound(_) => of(StatusCode::NOT_FOUND, "CommitNotFound"),
        ReadError::NotInHistory { .. }
        | ReadError::HistoryTooShort { .. }
        | ReadError::NoHeadAtTime { .. } => of(StatusCode::NOT_FOUND, "NotInHistory"),
        ReadError::AmbiguousPrefix { .. } => of(StatusCode::BAD_REQUEST, "AmbiguousHash"),
        ReadError::Invalid(_) => of(StatusCode::BAD_REQUEST, "BadRequest"),
        ReadError::Bound { .. } => of(StatusCode::BAD_REQUEST, "LimitExceeded"),
        ReadError::Storage(s) => ApiError::internal(&s),
    }
}

fn write_error(e: WriteError, message: &str) -> ApiError {
    let of = |status, kind: &str| ApiError::new(status, kind, message);
    match e {
        WriteError::RefNotFound(_) => of(StatusCode::NOT_FOUND, "RefNotFound"),
        WriteError::RefAlreadyExists(_) => of(StatusCode::CONFLICT, "RefAlreadyExists"),
        WriteError::NotABranch(_) => of(StatusCode::BAD_REQUEST, "NotABranch"),
        WriteError::TagImmutable(_) => of(StatusCode::BAD_REQUEST, "TagImmutable"),
        WriteError::ReservedRef(_) => of(StatusCode::FORBIDDEN, "ReservedRef"),
        WriteError::ReferenceConflict { current, .. } => {
            of(StatusCode::CONFLICT, "ReferenceConflict").with_head(current)
        }
        WriteError::Conflict { head, conflicts } => {
            let mut e = of(StatusCode::CONFLICT, "Conflict").with_head(Some(head));
            e.body.conflicts = conflicts.iter().map(ConflictBody::from).collect();
            e
        }
        WriteError::NotFastForward { .. } => of(StatusCode::CONFLICT, "NotFastForward"),
        WriteError::Contention(_) => of(StatusCode::CONFLICT, "Contention").retryable(Some(1)),
        WriteError::CommitNotFound(_) => of(StatusCode::NOT_FOUND, "CommitNotFound"),
        WriteError::Read(r) => read_error(r, message),
        WriteError::Key(_)
        | WriteError::Content(_)
        | WriteError::Meta(_)
        | WriteError::Invalid(_) => of(StatusCode::BAD_REQUEST, "BadRequest"),
        WriteError::Storage(s) => ApiError::internal(&s),
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
