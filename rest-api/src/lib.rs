//! floe-rest: floe's only HTTP crate (DESIGN §1, §3, §4).
//!
//! This crate will own:
//! - the axum routers of the Iceberg REST catalog (`/iceberg`), of floe's own API
//!   (`/api/v1`), of runs and of queries, with their utoipa annotations;
//! - authentication: credentials in, a `Principal` out;
//! - the single mapping from domain errors to HTTP status and error body (rejected -> 4xx,
//!   outcome unknown -> 5xx carrying only an error id).
//!
//! It reaches the version store only through `floe-catalog`, whose entry points authorize;
//! from `floe-commits` it uses types only (a tidy test forbids calling its operations).
//! The default `compute` feature links `floe-compute`. Nothing is implemented yet: the
//! server arrives with the next issue.
