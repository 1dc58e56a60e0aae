//! floe-compute: queries, imports and pipeline runs (DESIGN §1, §5).
//!
//! This crate will own:
//! - DataFusion reads of Iceberg tables at a ref spec (registering only the tables a
//!   statement references), the query API's execution, and imports;
//! - pipeline projects: parsing, DAG planning (which never runs user code), SQL models in
//!   process and Python models in worker processes, passing Apache Arrow;
//! - runs on temporary `floe-run/` branches, their landing on the target as one commit,
//!   sealing, recovery, and run records in the store's meta keyspace.
//!
//! It is the only crate that links DataFusion. It depends on `floe-catalog` and
//! `floe-commits`, and knows nothing of HTTP. Nothing is implemented yet: compute arrives
//! with a later issue.
