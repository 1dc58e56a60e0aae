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
//! Today it holds the one `Catalog` handle the server is built around and its readiness
//! check; namespaces, tables and authorization arrive with later issues.

use std::sync::Arc;

use floe_commits::store::DEFAULT_BRANCH;
use floe_commits::{ReadError, RefName, Store};

/// The catalog over one version store: what the HTTP layer holds.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<Store>,
}

impl Catalog {
    pub fn new(store: Arc<Store>) -> Catalog {
        Catalog { store }
    }

    /// Ready to serve: the store answers a read of the default branch.
    pub fn ready(&self) -> Result<(), ReadError> {
        let main = RefName::parse(DEFAULT_BRANCH).expect("the default branch name is valid");
        self.store.get_ref(&main).map(|_| ())
    }
}
