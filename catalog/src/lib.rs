//! floe-catalog: lakehouse semantics on a ref (DESIGN §1, §3).
//!
//! Every entry point takes the `Principal` a request acts for and calls
//! `Catalog::authorize` before it reaches the version store; the HTTP layer holds a
//! `Catalog` and never the `Store`. Ref specs and names arrive validated (the newtypes of
//! `floe-commits`); the catalog decides which specs are writable, composes the store's
//! operations (namespaces as content, merges, cherry-picks, reverts, resets) and records
//! idempotency outcomes.
//!
//! Iceberg tables and views live here too, with the `Warehouse` (all file I/O) and
//! multi-table transactions. It depends only on `floe-commits` among floe's crates and
//! knows nothing of HTTP.

mod auth;
mod avro_paths;
mod content;
mod data_files;
mod error;
mod history;
mod idempotency;
mod ids;
pub mod inline;
pub mod limits;
mod merges;
mod metadata_cache;
mod namespaces;
mod off_thread;
mod refs;
mod run_state;
mod runs;
pub mod s3;
mod servers;
mod storage;
pub mod sts;
mod table_files;
mod table_merge;
mod tables;
mod views;
mod warehouse;

use std::sync::Arc;

use floe_commits::store::DEFAULT_BRANCH;
use floe_commits::{CommitMeta, ReadError, RefName, RefSpec, ResolvedSpec, Store, WriteCtx};

pub use auth::{
    ADMIN, ANONYMOUS, Action, AllowAll, NewToken, Perm, Policy, PolicyDoc, PolicyError, Principal,
    Rules, Target, TokenInfo,
};
pub use avro_paths::limit_avro_allocations;
pub use data_files::{DataFiles, FinishedDataFile, NewDataFile};
pub use error::{CatalogError, CatalogResult, RESERVED_PROPERTY_PREFIX};
/// A server's handlers defer the store's durability waits and await them (issue 23).
pub use floe_commits::deferred;
pub use history::{CommitDetail, LogPage};
pub use idempotency::{Acceptance, AppliedRecord, IdemRequest, IdempotencyKey, Recalled};
pub use ids::{IdSource, SequentialIds, UuidV7Ids};
pub use limits::{IDEMPOTENCY_LIFETIME, IDEMPOTENCY_LIFETIME_MS, RUN_ANSWER_BYTES_MAX};
pub use merges::MergeRequest;
pub use metadata_cache::MetadataJson;
pub use namespaces::{Namespace, PropertiesUpdate, PropertiesUpdated};
pub use off_thread::{OffThreadError, off_thread};
pub use run_state::RunState;
pub use runs::{
    Landed, Landing, LogPart, RUN_ID_PROPERTY, RUN_PART_PROPERTY, RUN_REVERTED_PROPERTY,
    RUN_SOURCE_PROPERTY, Retention, RetentionReport, RunFile, RunKind, RunRecord, RunReverted,
    StoredAnswer,
};
pub use storage::{WAREHOUSE_ROOT_PROP, WarehouseStorage, WarehouseStorageFactory};
pub use table_merge::{
    ISOLATION_PROPERTY, Isolation, SOURCE_SNAPSHOT_ID, TABLES_PROPERTY, TableMergeOptions,
    TableMergeReport, reports_of,
};
pub use tables::{LoadedTable, TableChange, TableCreate};
pub use views::{LoadedView, ViewCreate, ViewRequirement};
pub use warehouse::{Warehouse, WarehouseError, WarehouseEvent, WarehouseHook};

/// Who wrote a commit and why, when the caller says (otherwise the catalog fills both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authored {
    pub author: Option<String>,
    pub message: Option<String>,
}

/// The catalog over one version store: what the HTTP layer holds.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<Store>,
    policy: Arc<dyn Policy>,
    /// Where new ids come from (time comes from the store's clock).
    ids: Arc<dyn IdSource>,
    /// Where table metadata lives; tables are refused without one.
    warehouse: Option<Arc<Warehouse>>,
    /// Metadata files by location (they never change).
    metadata: Arc<metadata_cache::MetadataCache>,
    /// Where the next maintenance pass resumes (shared by every clone of the catalog).
    maintenance: Arc<parking_lot::Mutex<runs::MaintenanceCursor>>,
    /// Manifest lists commits checked (what the next commit of a table inherits).
    verified_lists: Arc<table_files::VerifiedLists>,
    /// The catalog's own rules, when authentication is on (`with_rules`).
    rules: Option<Arc<auth::Rules>>,
    /// The key log page tokens are signed with (read or made once).
    page_key: Arc<std::sync::OnceLock<[u8; 32]>>,
    /// This server's id: the owner of the runs it executes (`servers.rs`).
    server_id: Arc<str>,
}

impl Catalog {
    /// A catalog that allows everything (the default until a policy is configured), with
    /// UUIDv7 ids at the store's time.
    pub fn new(store: Arc<Store>) -> Catalog {
        Catalog::with_policy(store, Arc::new(AllowAll))
    }

    /// A catalog under a policy, with UUIDv7 ids at the store's time.
    pub fn with_policy(store: Arc<Store>, policy: Arc<dyn Policy>) -> Catalog {
        let _ = avro_paths::limit_avro_allocations();
        Catalog {
            ids: Arc::new(UuidV7Ids::of_store(store.clone())),
            store,
            policy,
            warehouse: None,
            metadata: Arc::default(),
            maintenance: Arc::default(),
            verified_lists: Arc::default(),
            rules: None,
            page_key: Arc::default(),
            server_id: Arc::from("local"),
        }
    }

    /// The catalog as served by the server `id` (runs it executes are its own).
    pub fn with_server_id(mut self, id: &str) -> Catalog {
        self.server_id = Arc::from(id);
        self
    }

    /// The catalog with its warehouse: what serves tables.
    pub fn with_warehouse(mut self, warehouse: Warehouse) -> Catalog {
        self.warehouse = Some(Arc::new(warehouse));
        self
    }

    /// The catalog taking its new ids from `ids` (tests and models: `SequentialIds`).
    pub fn with_ids(mut self, ids: Arc<dyn IdSource>) -> Catalog {
        self.ids = ids;
        self
    }

    /// Whether a server may run this catalog's reads on its async workers (`inline`):
    /// the store answers from memory. Reads that need I/O are refused there and run again
    /// on a blocking thread.
    pub fn reads_inline(&self) -> bool {
        self.store.reads_from_memory()
    }

    /// The version store backend's own gauges (a PostgreSQL pool's), for `/metrics`.
    pub fn store_gauges(&self) -> Vec<floe_commits::Gauge> {
        self.store.backend().gauges()
    }

    /// A new id from the catalog's id source: what every new table, view, namespace,
    /// metadata file and run is named by, and what the layers above take theirs from.
    pub fn new_uuid(&self) -> uuid::Uuid {
        self.ids.uuid()
    }

    /// A catalog over a fresh in-memory store, for tests of the layers above.
    pub fn in_memory() -> Catalog {
        Catalog::in_memory_at(Arc::new(floe_commits::SystemClock))
    }

    /// A catalog over a fresh in-memory store reading time from `clock`, for tests of the
    /// layers above that must replay exactly (with `with_ids`).
    pub fn in_memory_at(clock: Arc<dyn floe_commits::Clock>) -> Catalog {
        let store = Store::open(Arc::new(floe_commits::MemoryBackend::new()), clock)
            .expect("an in-memory store opens");
        Catalog::new(Arc::new(store))
    }

    /// The warehouse, which every table and view needs.
    pub(crate) fn warehouse(&self) -> CatalogResult<&Warehouse> {
        self.warehouse
            .as_deref()
            .ok_or_else(|| CatalogError::Invalid("this server has no warehouse".to_owned()))
    }

    /// Waits on this thread for the durability waits a server's handler deferred so far
    /// (`deferred::barrier`), before anything irreversible that rests on them.
    pub fn durable_now(&self) -> CatalogResult<()> {
        Ok(self.store.durable_now()?)
    }

    /// Ready to serve: the store answers a read of the default branch.
    pub fn ready(&self) -> Result<(), ReadError> {
        let main = RefName::parse(DEFAULT_BRANCH).expect("the default branch name is valid");
        self.store.get_ref(&main).map(|_| ())
    }

    /// Server time in ms (the store's clock).
    pub fn now_ms(&self) -> i64 {
        self.store.now_ms()
    }

    /// Refuses the action unless the policy allows it. Every entry point that reads or writes
    /// content at a ref calls this first (ARCHITECTURE.md names the exceptions left).
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        target: Target<'_>,
    ) -> CatalogResult<()> {
        if self.policy.allows(principal, action, target) {
            Ok(())
        } else {
            Err(CatalogError::Forbidden {
                principal: principal.name().to_owned(),
                action,
                target: target.to_string(),
                why: self
                    .policy
                    .why_not(principal, action, target)
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default(),
            })
        }
    }

    /// Whether the policy allows `action` on the ref `name` (a filter: no error).
    pub(crate) fn may(&self, principal: &Principal, action: Action, name: &RefName) -> bool {
        self.policy.allows(principal, action, Target::on_ref(name))
    }

    /// Authorizes a read at a spec and resolves it.
    pub(crate) fn read_at(
        &self,
        principal: &Principal,
        spec: &RefSpec,
    ) -> CatalogResult<ResolvedSpec> {
        self.authorize(
            principal,
            Action::Read,
            Target {
                ref_name: spec.ref_name(),
                namespace: None,
            },
        )?;
        Ok(self.store.resolve(spec)?)
    }

    /// The heads a load-modify-commit on the branch `name` reads (see `WriterHeads`).
    pub(crate) fn writer_heads(&self, name: &RefName) -> WriterHeads<'_> {
        WriterHeads {
            catalog: self,
            name: name.clone(),
            last: std::cell::Cell::new(None),
        }
    }

    /// Runs a load-modify-commit on the branch `name`: `work` reads the branch's heads
    /// through `heads`, and its answer, whatever it is, waits until the last head read is
    /// durable (`WriterHeads::answer`).
    pub(crate) fn on_writer_heads<T>(
        &self,
        name: &RefName,
        work: impl FnOnce(&WriterHeads<'_>) -> CatalogResult<T>,
    ) -> CatalogResult<T> {
        let heads = self.writer_heads(name);
        let out = work(&heads);
        heads.answer(out)
    }

    /// The context of a write for `principal`. A run's executor writes only while this
    /// server still holds the run: its writes are fenced on the run's owner token, so an
    /// owner that was paused while another server settled its run (or a cancel ended it)
    /// changes nothing of it when it wakes.
    pub(crate) fn write_ctx(
        &self,
        principal: &Principal,
        idempotency: Option<&IdemRequest>,
        detail: &str,
    ) -> WriteCtx {
        WriteCtx {
            principal: principal.name().to_owned(),
            idempotency: self.idempotency_record(idempotency, detail),
            executor: principal.run().is_some(),
            reflog: Default::default(),
            fence: principal
                .run()
                .map(|run| runs::owner_fence(run, &self.server_id)),
        }
    }

    /// Commit metadata: the caller's author and message, else the principal and `default`.
    pub(crate) fn meta(
        &self,
        principal: &Principal,
        authored: &Authored,
        default: String,
    ) -> CommitMeta {
        let mut meta = CommitMeta::new(
            authored
                .author
                .clone()
                .unwrap_or_else(|| principal.name().to_owned()),
            authored.message.clone().unwrap_or(default),
            self.now_ms(),
        );
        meta.committer = principal.name().to_owned();
        if let Some(run) = principal.run() {
            meta.properties
                .insert(runs::RUN_ID_PROPERTY.to_owned(), run.to_owned());
        }
        meta
    }
}

/// Visits at most `scan_max` entries of a paged listing, resuming after `cursor` and
/// leaving it after the last entry visited (`None` once the listing's end is reached, so
/// the next scan starts over): how a bounded pass works through a keyspace across passes. `page`
/// lists the entries after a key; `visit` answers false to stop at once. Returns whether
/// `visit` stopped it.
pub(crate) fn resumable_scan<K: Clone, V>(
    cursor: &mut Option<K>,
    scan_max: usize,
    mut page: impl FnMut(Option<&K>) -> CatalogResult<Vec<(K, V)>>,
    mut visit: impl FnMut(&K, &V) -> CatalogResult<bool>,
) -> CatalogResult<bool> {
    let mut scanned = 0usize;
    while scanned < scan_max {
        let entries = page(cursor.as_ref())?;
        if entries.is_empty() {
            *cursor = None;
            return Ok(false);
        }
        for (key, value) in &entries {
            scanned += 1;
            if !visit(key, value)? {
                // The next scan starts at this entry again.
                return Ok(true);
            }
            *cursor = Some(key.clone());
        }
    }
    Ok(false)
}

/// The heads a load-modify-commit reads from a branch (DESIGN §2 "Durability"). It builds
/// on the newest head, which may still await its flush, so that concurrent writers chain
/// instead of failing; but its answer — a rejection, or a write that changed nothing — may
/// be computed from that head alone. `answer` returns only once the last head read is
/// durable, so no answer rests on a head a crash could undo. After an acknowledged commit
/// on top of it, that head is durable already and `answer` does not wait.
pub(crate) struct WriterHeads<'a> {
    catalog: &'a Catalog,
    name: RefName,
    last: std::cell::Cell<Option<floe_commits::Hash>>,
}

impl WriterHeads<'_> {
    /// The branch's newest head (see `Store::writer_head`), remembered for `answer`.
    pub(crate) fn read(&self) -> CatalogResult<floe_commits::Hash> {
        let head = self.catalog.store.writer_head(&self.name)?;
        self.last.set(Some(head));
        Ok(head)
    }

    /// The entry point's answer, once the last head read is durable. An outcome that is
    /// already unknown (the store failed) is answered as it is.
    fn answer<T>(&self, out: CatalogResult<T>) -> CatalogResult<T> {
        if out.as_ref().is_err_and(CatalogError::is_outcome_unknown) {
            return out;
        }
        match self.last.get() {
            Some(head) => self.catalog.store.settle(&self.name, Some(&head))?,
            // Not even the head was read (the branch's deletion is pending, say): the
            // answer rests on the ref's newest move.
            None if out.is_err() => self.catalog.store.settle(&self.name, None)?,
            None => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use floe_commits::{ContentKey, MemoryBackend, RefKind, SystemClock};

    use super::*;

    /// Allows reads only: what a read-only principal's policy will look like.
    #[derive(Debug)]
    struct ReadOnly;

    impl Policy for ReadOnly {
        fn allows(&self, _: &Principal, action: Action, _: Target<'_>) -> bool {
            matches!(action, Action::Read | Action::ReadRefs)
        }
    }

    #[test]
    fn every_entry_point_asks_the_policy_and_a_refusal_changes_nothing() {
        let store =
            Arc::new(Store::open(Arc::new(MemoryBackend::new()), Arc::new(SystemClock)).unwrap());
        let ids = Arc::new(SequentialIds::new(0));
        let catalog = Catalog::with_policy(store.clone(), Arc::new(ReadOnly)).with_ids(ids.clone());
        let who = Principal::named("bob");
        let main = RefSpec::parse("main").unwrap();
        let ns = ContentKey::new(["sales"]).unwrap();
        let head = catalog.resolve(&who, &main).unwrap().hash;
        let refused = [
            catalog
                .create_namespace(
                    &who,
                    &main,
                    &ns,
                    BTreeMap::new(),
                    &Authored::default(),
                    None,
                )
                .map(|_| ()),
            catalog
                .create_ref(
                    &who,
                    &RefName::parse("dev").unwrap(),
                    RefKind::Branch,
                    &main,
                    None,
                )
                .map(|_| ()),
            catalog
                .merge(&who, &main, &main, &MergeRequest::default(), None)
                .map(|_| ()),
            catalog.delete_ref(&who, &RefName::parse("main").unwrap(), None, None),
        ];
        for outcome in refused {
            let err = outcome.unwrap_err();
            assert!(matches!(err, CatalogError::Forbidden { .. }), "{err}");
            assert!(err.to_string().starts_with("bob may not "), "{err}");
        }
        assert_eq!(catalog.resolve(&who, &main).unwrap().hash, head);
        assert_eq!(store.list_refs(None, None, 10).unwrap().items.len(), 1);
        // The same calls under the default policy go through, and the reflog names the
        // principal.
        let open = Catalog::new(store.clone()).with_ids(ids);
        open.create_namespace(
            &who,
            &main,
            &ns,
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap();
        assert_eq!(
            store.reflog(None, None, 1).unwrap().items[0].principal,
            "bob"
        );
    }
}

#[cfg(test)]
mod table_tests {
    use std::sync::Mutex;

    use floe_commits::{ContentKey, MemoryBackend, SystemClock};

    use super::*;

    /// The metadata file and its directory entry are durable before the ref moves: the
    /// hook reads main's head once the fsyncing put has returned, and finds it not yet
    /// moved.
    #[test]
    fn a_table_commit_fsyncs_its_metadata_file_and_folder_before_the_ref_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(Arc::new(MemoryBackend::new()), Arc::new(SystemClock)).unwrap());
        let seen: Arc<Mutex<Vec<(WarehouseEvent, floe_commits::Hash)>>> = Arc::default();
        let hook: WarehouseHook = {
            let (store, seen) = (store.clone(), seen.clone());
            let main = RefName::parse("main").unwrap();
            Arc::new(move |e, _: &str| {
                let head = store.get_ref(&main).unwrap().head;
                seen.lock().unwrap().push((e, head));
            })
        };
        let catalog = Catalog::new(store.clone())
            .with_ids(Arc::new(SequentialIds::new(0)))
            .with_warehouse(Warehouse::open(dir.path()).unwrap().with_hook(hook));
        let who = Principal::anonymous();
        let main = RefSpec::parse("main").unwrap();
        let ns = ContentKey::new(["db"]).unwrap();
        catalog
            .create_namespace(
                &who,
                &main,
                &ns,
                Default::default(),
                &Authored::default(),
                None,
            )
            .unwrap();
        let before = catalog.resolve(&who, &main).unwrap().hash;
        let create = tables::one_column_table("t");
        let table = catalog
            .create_table(&who, &main, &ns, create, &Authored::default(), None)
            .unwrap();
        let after = catalog.resolve(&who, &main).unwrap().hash;
        assert_ne!(before, after);
        let events = seen.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                (WarehouseEvent::Creating, before),
                (WarehouseEvent::FileDurable, before)
            ],
            "the metadata file and its folder were fsynced while main had its old head"
        );
        assert!(table.metadata_location.unwrap().starts_with("file://"));
    }

    /// A load runs inline from the caches, is refused inline when its metadata file is
    /// not cached (the caller runs it again where it may block), and answers the same
    /// either way.
    #[test]
    fn an_inline_load_answers_from_caches_and_is_refused_on_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(Arc::new(MemoryBackend::new()), Arc::new(SystemClock)).unwrap());
        let writer =
            Catalog::new(store.clone()).with_warehouse(Warehouse::open(dir.path()).unwrap());
        assert!(
            writer.reads_inline(),
            "the memory backend answers from memory"
        );
        let (who, main) = (Principal::anonymous(), RefSpec::parse("main").unwrap());
        let ns = ContentKey::new(["db"]).unwrap();
        let none = Authored::default();
        writer
            .create_namespace(&who, &main, &ns, Default::default(), &none, None)
            .unwrap();
        let create = tables::one_column_table("t");
        let created = writer
            .create_table(&who, &main, &ns, create, &none, None)
            .unwrap();
        let key = ns.child("t").unwrap();
        // The writer cached what it wrote: inline, it answers.
        let cached = inline::run_inline(|| writer.load_table(&who, &main, &key))
            .expect("answered inline")
            .unwrap();
        assert_eq!(cached.1.metadata_location, created.metadata_location);
        // Another server's catalog has read nothing yet: inline, the load is refused...
        let reader = Catalog::new(store).with_warehouse(Warehouse::open(dir.path()).unwrap());
        assert!(inline::run_inline(|| reader.load_table(&who, &main, &key)).is_none());
        // ...and answers on a thread that may block, after which it answers inline.
        let loaded = reader.load_table(&who, &main, &key).unwrap();
        assert_eq!(loaded.1.metadata_location, created.metadata_location);
        let again = inline::run_inline(|| reader.load_table(&who, &main, &key))
            .expect("cached now")
            .unwrap();
        assert_eq!(
            again.1.metadata_json.raw().get(),
            loaded.1.metadata_json.raw().get()
        );
    }

    /// On a store whose refs are not in memory (PostgreSQL; here its stand-in), a load
    /// answers on the async task once its ref is fetched, and sees a commit another
    /// server made just before; a load of a table whose metadata file this server never
    /// read needs I/O, and is left to a thread that may block.
    #[test]
    fn a_load_on_a_shared_store_fetches_its_ref_then_answers_inline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(Arc::new(MemoryBackend::shared()), Arc::new(SystemClock)).unwrap(),
        );
        let catalog =
            Catalog::new(store.clone()).with_warehouse(Warehouse::open(dir.path()).unwrap());
        assert!(
            !catalog.reads_inline(),
            "the shared stand-in reads as PostgreSQL does"
        );
        let (who, main) = (Principal::anonymous(), RefSpec::parse("main").unwrap());
        let ns = ContentKey::new(["db"]).unwrap();
        let none = Authored::default();
        catalog
            .create_namespace(&who, &main, &ns, Default::default(), &none, None)
            .unwrap();
        let created = catalog
            .create_table(&who, &main, &ns, tables::one_column_table("t"), &none, None)
            .unwrap();
        let key = ns.child("t").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let load = |c: &Catalog| {
            runtime.block_on(inline::read(c, None, || {
                c.load_table(&who, &main, &key)
                    .map(|(_, t)| t.metadata_location)
            }))
        };
        assert_eq!(
            load(&catalog).expect("answered on the async task").unwrap(),
            created.metadata_location
        );
        // Another server drops the table: the next load here sees it at once.
        let other = Catalog::new(store).with_warehouse(Warehouse::open(dir.path()).unwrap());
        other.drop_table(&who, &main, &key, &none, None).unwrap();
        assert!(matches!(
            load(&catalog).expect("answered on the async task"),
            Err(CatalogError::TableNotFound(_))
        ));
        // A table this server never read: its metadata file is not cached here.
        let again = other
            .create_table(&who, &main, &ns, tables::one_column_table("t"), &none, None)
            .unwrap();
        assert_ne!(again.metadata_location, created.metadata_location);
        assert!(
            load(&catalog).is_none(),
            "a file to read is left to a blocking thread"
        );
    }
}
