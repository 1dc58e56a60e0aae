//! floe's version store: content-addressed objects, the prolly-tree key index, refs moved
//! only by compare-and-swap, and the commit, merge, cherry-pick, revert, log, diff and
//! reflog operations over them (DESIGN §2).
//!
//! This crate knows nothing of Iceberg, HTTP or files: a table is a `Content` value with
//! plain fields, and storage is a small `Backend` trait. Time, content ids and
//! randomness come in from outside, so tests and models replay exactly.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use floe_commits::*;
//!
//! let store = Store::open(Arc::new(MemoryBackend::new()), Arc::new(ManualClock::new(0))).unwrap();
//! let main = RefName::parse("main").unwrap();
//! let who = WriteCtx::principal("alice");
//! let ns = ContentKey::new(["sales"]).unwrap();
//! let create = Op::Put {
//!     key: ns.clone(),
//!     content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
//!     expect: Expect::Absent,
//! };
//! let first = store.commit(&main, None, vec![create.clone()], CommitMeta::new("alice", "create sales", 0), &who).unwrap();
//! // The same create again: its expectation (Absent) fails at the landing head.
//! let err = store.commit(&main, None, vec![create], CommitMeta::new("alice", "again", 0), &who).unwrap_err();
//! assert!(matches!(err, WriteError::Conflict { .. }));
//! let dev = RefName::parse("dev").unwrap();
//! store.create_ref(&dev, RefKind::Branch, first.commit, &who).unwrap();
//! let at_dev = store.resolve(&RefSpec::parse("dev").unwrap()).unwrap();
//! assert_eq!(store.entries(at_dev.hash, None, None, 10).unwrap().items[0].key, ns);
//! ```

pub mod backend;
pub mod bulk;
pub mod cache;
mod change;
pub mod clock;
pub mod content;
pub mod deferred;
pub mod encoding;
pub mod error;
pub mod graph;
pub mod hash;
pub mod inline;
pub mod key;
pub mod limits;
pub mod memory;
pub mod merge;
pub mod name;
pub mod object;
pub mod pg_store;
mod records;
pub mod sled_store;
pub mod store;
pub mod tree;
mod validate;

pub use backend::{
    Backend, BackendError, CasOutcome, ClockSample, Gauge, RefOperation, RefRecord, RefUpdate,
    RefView, ReflogEntry,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use content::{
    Content, ContentId, ContentKind, ContentRef, Payload, TablePayload, ViewPayload,
};
pub use error::{
    ChangeKind, Conflict, ConflictKind, ConflictReason, Expect, ReadError, StorageError, WriteError,
};
pub use hash::{ContentHash, Hash, HashPrefix};
pub use key::{ContentKey, KeyError};
pub use memory::MemoryBackend;
pub use merge::{
    ConflictResolver, MergeKind, MergeOptions, MergeOutcome, MergeStrategy, Resolution, Resolved,
    Resolver,
};
pub use name::{RefKind, RefName, RefSpec};
pub use object::{Commit, CommitMeta};
pub use pg_store::{PgOptions, PostgresBackend};
pub use sled_store::SledBackend;
pub use store::{
    Claim, CommitOutcome, EntryRef, Fence, Idempotency, IdempotencyOutcome, KeyChange, LogFilter,
    Op, Page, ResolvedSpec, Store, WriteCtx,
};
