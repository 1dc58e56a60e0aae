//! floe-catalog: lakehouse semantics on a ref (DESIGN §1, §3).
//!
//! This crate will own:
//! - namespaces, Iceberg tables and Iceberg views stored as `Content` under `ContentKey`s
//!   of `floe-commits`, and multi-table transactions committed as one floe commit;
//! - Iceberg requirements and updates, applied through the `iceberg` crate, with the
//!   bounded load-check-apply-commit retry loop (`COMMIT_RETRIES_MAX`);
//! - the `Warehouse`: the one `object_store`-backed storage through which every read,
//!   write and delete of a file goes, confined to the warehouse root;
//! - ref specs resolved to a branch, tag or commit, and the read-only rules that follow;
//! - authorization: `Principal`, the policy, and `authorize`, which every entry point calls.
//!
//! It depends only on `floe-commits` among floe's crates, and knows nothing of HTTP.
//! Nothing is implemented yet: the catalog arrives with a later issue.
