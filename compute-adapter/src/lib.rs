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
