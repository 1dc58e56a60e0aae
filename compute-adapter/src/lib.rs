//! floe-compute: queries, imports and pipeline runs (DESIGN §1, §5).
//!
//! - `query`: SQL at a ref spec over DataFusion, registering only the tables a statement
//!   names, with a memory pool and a deadline;
//! - `scan`: one Iceberg table at one commit as a DataFusion table, its file plan pruned
//!   by the `iceberg` crate and spread over partitions;
//! - `encode`: answers as Arrow IPC, JSON, NDJSON, CSV or Parquet, batch by batch;
//! - `import`: Parquet and CSV files into a table on a run branch, landed as one commit;
//! - `snapshot`: floe's Iceberg snapshot producer (append, overwrite, replace), what
//!   imports commit and what runs will;
//! - `limits`: every bound of the crate, named;
//! - `types`: Arrow types as Iceberg types.
//!
//! It is the only crate that links DataFusion. It depends on `floe-catalog` and
//! `floe-commits`, and knows nothing of HTTP. Pipeline projects and runs arrive later; the
//! run records, landing and sealing they share with imports live in `floe-catalog`.

pub mod encode;
pub mod import;
pub mod limits;
pub mod query;
pub mod runs;
pub mod s3_sources;
pub mod scan;
pub mod snapshot;
pub mod source;
pub mod types;

pub use encode::{AnswerFormat, Encoder};
pub use import::{
    FileAction, ImportError, ImportMode, ImportOutcome, ImportRequest, Importer, Synced,
};
pub use query::{QueryAnswer, QueryEngine, QueryError, QueryLimits, QueryRequest};
pub use runs::{RunError, RunOptions, Runner, RunnerConfig, Submitted};
pub use scan::ScanStats;
pub use snapshot::{NewSnapshot, Removed, SnapshotCommit, SnapshotError, SnapshotOperation};
pub use source::{ImportFile, SourceError};

/// Store work off the async workers (`floe_catalog::off_thread`): its durability waits are
/// awaited here, parking no thread. Nothing irreversible happens inside `f` after a write
/// (see `floe_commits::deferred`). A failed task or durability wait is the catalog's
/// outcome unknown (so no caller removes the files of a write that may have landed),
/// except a read's failed task, which changed nothing: `failed_read` says what it is.
pub(crate) async fn off_store<T, E>(
    scope: floe_catalog::deferred::Scope,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
    failed_read: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<floe_catalog::CatalogError> + Send + 'static,
{
    use floe_catalog::OffThreadError;
    match floe_catalog::off_thread(scope, f).await {
        Ok(out) => out,
        Err(OffThreadError::Task(why)) if scope == floe_catalog::deferred::Scope::Read => {
            Err(failed_read(why))
        }
        Err(e) => Err(E::from(e.into_catalog())),
    }
}
