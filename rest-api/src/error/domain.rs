//! How the domain's errors (the catalog's, the version store's, queries', imports' and
//! runs') become rows of the one error table in `error.rs`.

use floe_catalog::CatalogError;
use floe_commits::{ReadError, WriteError};

use super::{ApiError, ConflictBody, ErrorKind};

impl From<floe_compute::QueryError> for ApiError {
    fn from(e: floe_compute::QueryError) -> ApiError {
        use floe_compute::QueryError;
        let message = e.to_string();
        let of = |kind| ApiError::new(kind, message.clone());
        match e {
            QueryError::Invalid(_) => of(ErrorKind::InvalidQuery),
            // A table the statement names: the statement is what to fix (400, not 404).
            QueryError::TableNotFound(_) => of(ErrorKind::QueryTableNotFound),
            QueryError::TableUnreadable(_) => of(ErrorKind::TableUnreadable),
            QueryError::Timeout(_) => of(ErrorKind::QueryTimeout),
            QueryError::Memory { .. } => of(ErrorKind::QueryMemoryExceeded),
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
            ImportError::Invalid(_) => ApiError::new(ErrorKind::InvalidImport, message),
            ImportError::Incompatible(_) => ApiError::new(ErrorKind::IncompatibleFiles, message),
            ImportError::Duplicate { .. } => ApiError::new(ErrorKind::DuplicateImport, message),
            ImportError::Catalog(inner) => {
                let mapped = ApiError::from(inner.clone());
                if mapped.kind().row().status.is_client_error() {
                    mapped.with_message(message)
                } else {
                    mapped
                }
            }
            ImportError::Io(_) | ImportError::RunFailed { .. } => ApiError::internal(&message),
        }
    }
}

#[cfg(feature = "compute")]
impl From<floe_compute::RunError> for ApiError {
    fn from(e: floe_compute::RunError) -> ApiError {
        use floe_compute::RunError;
        match e {
            RunError::Invalid(m) => ApiError::bad_request(m),
            RunError::Archive(a) => ApiError::new(ErrorKind::InvalidProject, a.to_string()),
            RunError::Planning(errors) => ApiError::new(
                ErrorKind::InvalidProject,
                format!(
                    "the project does not plan ({} error{}):\n{}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    errors
                        .iter()
                        .map(|e| format!("  {e}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            ),
            RunError::Catalog(c) => ApiError::from(c),
            RunError::Io(m) => ApiError::internal(&m),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        use ErrorKind as K;
        // An inline read's answer after its refusal is thrown away: no words for it.
        let message = match floe_catalog::inline::refused() {
            true => String::new(),
            false => e.to_string(),
        };
        let of = |kind| ApiError::new(kind, message.clone());
        match e {
            CatalogError::Forbidden { .. } => of(K::Forbidden),
            CatalogError::Invalid(_) => of(K::BadRequest),
            CatalogError::DefaultBranch(_) => of(K::DefaultBranch),
            CatalogError::ReadOnly { .. } => of(K::ReadOnlyRef),
            CatalogError::NamespaceNotFound(_) => of(K::NamespaceNotFound),
            CatalogError::NamespaceAlreadyExists(_) => of(K::NamespaceAlreadyExists),
            CatalogError::NotANamespace { .. } => of(K::NotANamespace),
            CatalogError::NamespaceNotEmpty { head, .. } => {
                of(K::NamespaceNotEmpty).with_head(Some(head))
            }
            CatalogError::Contention(_) => of(K::Contention),
            CatalogError::TableNotFound(_) => of(K::TableNotFound),
            CatalogError::TableAlreadyExists(_) => of(K::TableAlreadyExists),
            CatalogError::SameTable { .. } => of(K::SameTable),
            CatalogError::ViewNotFound(_) => of(K::ViewNotFound),
            CatalogError::ViewAlreadyExists(_) => of(K::ViewAlreadyExists),
            CatalogError::CommitFailed(_) => of(K::CommitFailed),
            CatalogError::RunSealed { .. } | CatalogError::RunExpired { .. } => of(K::RunSealed),
            CatalogError::RunNotFound(_) => of(K::RunNotFound),
            CatalogError::RunNotPromotable { .. } => of(K::RunNotPromotable),
            CatalogError::RunNotRevertible { .. } => of(K::RunNotRevertible),
            CatalogError::Unsupported(_) => of(K::Unsupported),
            CatalogError::Warehouse(floe_catalog::WarehouseError::Outside { .. }) => {
                of(K::OutsideWarehouse)
            }
            CatalogError::Warehouse(floe_catalog::WarehouseError::NotFound(_)) => {
                of(K::FileNotFound)
            }
            CatalogError::Warehouse(floe_catalog::WarehouseError::Exists(_)) => of(K::Conflict),
            CatalogError::Warehouse(floe_catalog::WarehouseError::TooLarge { .. }) => {
                of(K::BadRequest)
            }
            CatalogError::Warehouse(w @ floe_catalog::WarehouseError::Unavailable(_)) => {
                ApiError::new(K::Unavailable, w.to_string())
            }
            CatalogError::Warehouse(w) => ApiError::internal(&w),
            CatalogError::Read(e) => read_error(e, &message),
            CatalogError::Write(e) => write_error(e, &message),
        }
    }
}

fn read_error(e: ReadError, message: &str) -> ApiError {
    use ErrorKind as K;
    let of = |kind| ApiError::new(kind, message);
    match e {
        ReadError::RefNotFound(_) => of(K::RefNotFound),
        ReadError::CommitNotFound(_) => of(K::CommitNotFound),
        ReadError::NotInHistory { .. }
        | ReadError::HistoryTooShort { .. }
        | ReadError::NoHeadAtTime { .. } => of(K::NotInHistory),
        ReadError::AmbiguousPrefix { .. } => of(K::AmbiguousHash),
        ReadError::Invalid(_) => of(K::BadRequest),
        ReadError::Bound { .. } => of(K::LimitExceeded),
        ReadError::Storage(s) => storage_error(&s),
    }
}

/// A failure of the version store's storage: out of reach (the database down, no
/// connection; nothing written) is 503 and worth a retry; anything else (an outcome
/// unknown, damaged data, a disk error) is 500 with an id.
fn storage_error(s: &floe_commits::StorageError) -> ApiError {
    match s {
        s if s.is_unavailable() => {
            let e = ApiError::new(
                ErrorKind::Unavailable,
                "the catalog's storage is unavailable (nothing was written); retry shortly",
            );
            if !floe_catalog::inline::refused() {
                tracing::warn!(error_id = %e.inner.error_id, "{s}");
            }
            e
        }
        _ => ApiError::internal(s),
    }
}

fn write_error(e: WriteError, message: &str) -> ApiError {
    use ErrorKind as K;
    let of = |kind| ApiError::new(kind, message);
    match e {
        WriteError::RefNotFound(_) => of(K::RefNotFound),
        WriteError::RefAlreadyExists(_) => of(K::RefAlreadyExists),
        WriteError::NotABranch(_) => of(K::NotABranch),
        WriteError::TagImmutable(_) => of(K::TagImmutable),
        WriteError::ReservedRef(_) => of(K::ReservedRef),
        WriteError::ReferenceConflict { current, .. } => {
            of(K::ReferenceConflict).with_head(current)
        }
        WriteError::Conflict { head, conflicts } => {
            let mut e = of(K::Conflict).with_head(Some(head));
            e.inner.conflicts = conflicts.iter().map(ConflictBody::from).collect();
            e
        }
        WriteError::NotFastForward { .. } => of(K::NotFastForward),
        WriteError::Contention(_) => of(K::Contention),
        WriteError::CommitNotFound(_) => of(K::CommitNotFound),
        WriteError::Read(r) => read_error(r, message),
        WriteError::Key(_)
        | WriteError::Content(_)
        | WriteError::Meta(_)
        | WriteError::Invalid(_) => of(K::BadRequest),
        WriteError::Storage(s) => storage_error(&s),
        WriteError::ClaimLost(_) => of(K::IdempotencyInFlight),
        // What the write depended on is gone (a run settled by another server): nothing
        // was written, and a retry would not change that.
        WriteError::Fenced(_) => of(K::CommitFailed),
    }
}
