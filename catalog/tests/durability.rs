//! Every answer of the catalog names only durable heads (DESIGN §2 "Durability"; issue 14,
//! item 1). A load-modify-commit reads the branch's pending head; when its answer does not
//! come from an acknowledged commit of its own — an Iceberg commit with requirements only,
//! a namespace update whose values are already set, a rejection computed at that head — it
//! must wait until the head is durable. The tests hold the sled store's sync while a commit
//! is pending and check, by the durability thread's events (no timing), that each such
//! answer waits: on its thread, or, run as a server's handler runs it (in a deferral
//! scope, `floe_commits::deferred`), by returning at once with a wait still pending that
//! resolves only after the sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use floe_catalog::{
    Authored, Catalog, CatalogError, Principal, PropertiesUpdate, TableChange, TableCreate,
    Warehouse,
};
use floe_commits::deferred::{Durable, Pending, Scope, run_deferred};
use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use floe_commits::{ContentKey, RefSpec, SledBackend, Store, SystemClock};
use iceberg::TableRequirement;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use parking_lot::{Condvar, Mutex};

/// Holds the durability thread at its next sync while closed; counts callers that began
/// waiting for a sync and spawned threads that returned.
#[derive(Debug, Default)]
struct Held {
    state: Mutex<(bool, usize, usize)>, // (closed, waiting, finished)
    changed: Condvar,
}

impl DurabilityHook for Held {
    fn event(&self, event: DurabilityEvent) {
        if matches!(event, DurabilityEvent::Waiting { .. }) {
            self.state.lock().1 += 1;
            self.changed.notify_all();
        }
    }

    fn sync_fault(&self) -> Option<String> {
        let mut s = self.state.lock();
        while s.0 {
            self.changed.wait(&mut s);
        }
        None
    }
}

impl Held {
    fn set_closed(&self, closed: bool) {
        self.state.lock().0 = closed;
        self.changed.notify_all();
    }

    /// Runs `f` on its own thread; true when it ends up waiting for a sync, false when it
    /// returns while the sync is held.
    fn blocks<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (bool, std::thread::JoinHandle<T>) {
        let (waiting, finished) = {
            let s = self.state.lock();
            (s.1, s.2)
        };
        let held = self.clone();
        let handle = std::thread::spawn(move || {
            let out = f();
            held.state.lock().2 += 1;
            held.changed.notify_all();
            out
        });
        let mut s = self.state.lock();
        let blocked = loop {
            if s.1 > waiting {
                break true;
            }
            if s.2 > finished {
                break false;
            }
            self.changed.wait(&mut s);
        };
        (blocked, handle)
    }

    /// Runs `f` on its own thread as `mode` says, and checks that its answer waits for the
    /// held sync: on the thread (it blocks), or deferred (it returns, its wait pending).
    fn waits<T: Send + 'static>(
        self: &Arc<Self>,
        mode: Mode,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Waited<T> {
        match mode {
            Mode::OnTheThread => {
                let (blocked, handle) = self.blocks(f);
                assert!(
                    blocked,
                    "{what}: the answer waits for the sync on its thread"
                );
                Waited::Blocked(handle)
            }
            Mode::Deferred => {
                let finished = self.state.lock().2;
                let (_, handle) = self.blocks(move || run_deferred(Scope::Write, f));
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut s = self.state.lock();
                while s.2 == finished {
                    // Only a hang reaches the deadline.
                    assert!(
                        Instant::now() < deadline,
                        "{what}: a deferred answer returns"
                    );
                    self.changed.wait_until(&mut s, deadline);
                }
                drop(s);
                let (answer, pending): (T, Pending) = handle.join().unwrap();
                let mut durable = pending.durable();
                let polled =
                    std::pin::Pin::new(&mut durable).poll(&mut Context::from_waker(Waker::noop()));
                assert!(
                    polled.is_pending(),
                    "{what}: the deferred answer waits for the sync"
                );
                Waited::Deferred(answer, durable)
            }
        }
    }
}

/// How a test runs the catalog's calls: as a caller that waits on its thread, or as a
/// server's handler does (`floe_commits::deferred`).
#[derive(Debug, Clone, Copy)]
enum Mode {
    OnTheThread,
    Deferred,
}

/// An answer that waits for the held sync.
enum Waited<T> {
    Blocked(std::thread::JoinHandle<T>),
    Deferred(T, Durable),
}

impl<T> Waited<T> {
    /// The answer, once the sync is released and what it rests on is durable.
    fn answer(self) -> T {
        match self {
            Waited::Blocked(handle) => handle.join().unwrap(),
            Waited::Deferred(answer, durable) => {
                durable.wait().unwrap();
                answer
            }
        }
    }
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap()
}

fn create(name: &str) -> TableCreate {
    TableCreate {
        name: name.to_owned(),
        location: None,
        schema: schema(),
        partition_spec: None,
        write_order: None,
        stage_create: false,
        properties: HashMap::new(),
    }
}

#[test]
fn catalog_answers_computed_from_a_pending_head_wait_until_it_is_durable() {
    answers_wait(Mode::OnTheThread);
}

/// The same answers, computed as a server's handler computes them: each returns while
/// the sync is held, and what it must wait for resolves only after the sync.
#[test]
fn deferred_catalog_answers_computed_from_a_pending_head_wait_until_it_is_durable() {
    answers_wait(Mode::Deferred);
}

fn answers_wait(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(Held::default());
    let backend =
        Arc::new(SledBackend::open_with(&dir.path().join("store"), Some(held.clone())).unwrap());
    let store = Arc::new(Store::open(backend, Arc::new(SystemClock)).unwrap());
    std::fs::create_dir_all(dir.path().join("warehouse")).unwrap();
    let catalog = Catalog::new(store)
        .with_ids(Arc::new(floe_catalog::SequentialIds::new(0)))
        .with_warehouse(Warehouse::open(&dir.path().join("warehouse")).unwrap());
    let who = Principal::anonymous();
    let main = RefSpec::parse("main").unwrap();
    let none = Authored::default();
    let db = ContentKey::new(["db"]).unwrap();
    let props = BTreeMap::from([("owner".to_owned(), "ana".to_owned())]);
    catalog
        .create_namespace(&who, &main, &db, props.clone(), &none, None)
        .unwrap();
    let table = catalog
        .create_table(&who, &main, &db, create("t"), &none, None)
        .unwrap();
    let uuid = table.metadata.uuid();
    let durable = catalog.resolve(&who, &main).unwrap().hash;

    held.set_closed(true);
    // A commit on main whose sync is held: a namespace unrelated to the cases below.
    let writer = held.waits(mode, "the pending commit", {
        let (catalog, who, main) = (catalog.clone(), who.clone(), main.clone());
        move || {
            let other = ContentKey::new(["other"]).unwrap();
            catalog.create_namespace(
                &who,
                &main,
                &other,
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
        }
    });
    assert_eq!(catalog.resolve(&who, &main).unwrap().hash, durable);

    let t = ContentKey::new(["db", "t"]).unwrap();
    let (c, w, m) = (catalog.clone(), who.clone(), main.clone());
    let requirements_only = held.waits(
        mode,
        "an Iceberg commit with requirements only",
        move || {
            let change = TableChange {
                key: t,
                requirements: vec![TableRequirement::UuidMatch { uuid }],
                updates: Vec::new(),
            };
            c.commit_table(&w, &m, change, &Authored::default(), None)
                .map(|t| t.metadata.uuid())
        },
    );
    let (c, w, m, ns) = (catalog.clone(), who.clone(), main.clone(), db.clone());
    let properties_already_set =
        held.waits(mode, "a namespace update whose values are set", move || {
            let update = PropertiesUpdate {
                updates: BTreeMap::from([("owner".to_owned(), "ana".to_owned())]),
                removals: Vec::new(),
            };
            c.update_namespace_properties(&w, &m, &ns, &update, &Authored::default(), None)
                .map(|u| u.outcome.commit)
        });
    let (c, w, m, ns) = (catalog.clone(), who.clone(), main.clone(), db.clone());
    let refused_create = held.waits(mode, "a create refused at the pending head", move || {
        c.create_table(&w, &m, &ns, create("t"), &Authored::default(), None)
            .map(|_| ())
    });
    let (c, w, m) = (catalog.clone(), who.clone(), main.clone());
    let failed_requirement = held.waits(
        mode,
        "a requirement that fails at the pending head",
        move || {
            let change = TableChange {
                key: ContentKey::new(["db", "t"]).unwrap(),
                requirements: vec![TableRequirement::UuidMatch {
                    uuid: uuid::Uuid::nil(),
                }],
                updates: Vec::new(),
            };
            c.commit_table(&w, &m, change, &Authored::default(), None)
                .map(|_| ())
        },
    );
    held.set_closed(false);
    let pending = writer.answer().unwrap().0.commit;
    assert_eq!(requirements_only.answer().unwrap(), uuid);
    assert_eq!(properties_already_set.answer().unwrap(), pending);
    assert!(matches!(
        refused_create.answer(),
        Err(CatalogError::TableAlreadyExists(_))
    ));
    assert!(matches!(
        failed_requirement.answer(),
        Err(CatalogError::CommitFailed(_))
    ));
}

/// `off_thread`, as handlers, runs and imports use it: store work whose sync is held gives
/// its blocking thread back as soon as it is computed (two writes computed on a runtime
/// with one blocking thread), and neither result is handed on before the sync.
#[test]
fn off_thread_gives_the_thread_back_and_hands_the_result_on_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(Held::default());
    let backend =
        Arc::new(SledBackend::open_with(&dir.path().join("store"), Some(held.clone())).unwrap());
    let store = Arc::new(Store::open(backend, Arc::new(SystemClock)).unwrap());
    let catalog = Catalog::new(store);
    let who = Principal::anonymous();
    let main = RefSpec::parse("main").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let computed = Arc::new((Mutex::new(0usize), Condvar::new()));
    held.set_closed(true);
    // A failed assertion opens the sync, so the runtime's shutdown does not wait forever.
    struct Open(Arc<Held>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.set_closed(false);
        }
    }
    let open = Open(held.clone());
    let writes: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (catalog, who, main) = (catalog.clone(), who.clone(), main.clone());
            let computed = computed.clone();
            runtime.spawn(floe_catalog::off_thread(Scope::Write, move || {
                let key = ContentKey::new([name]).unwrap();
                let none = Authored::default();
                let out = catalog.create_namespace(&who, &main, &key, BTreeMap::new(), &none, None);
                *computed.0.lock() += 1;
                computed.1.notify_all();
                out.map(|(outcome, _)| outcome.commit)
            }))
        })
        .collect();
    let mut n = computed.0.lock();
    let deadline = Instant::now() + Duration::from_secs(60);
    while *n < 2 {
        // Only a hang reaches the deadline: the first write kept the one blocking thread.
        assert!(
            Instant::now() < deadline,
            "both writes are computed while the sync is held"
        );
        computed.1.wait_until(&mut n, deadline);
    }
    drop(n);
    assert!(
        writes.iter().all(|w| !w.is_finished()),
        "no result is handed on before the sync"
    );
    drop(open);
    let heads: Vec<_> = writes
        .into_iter()
        .map(|w| runtime.block_on(w).unwrap().unwrap().unwrap())
        .collect();
    assert_ne!(heads[0], heads[1]);
    let durable = catalog.resolve(&who, &main).unwrap().hash;
    assert!(
        heads.contains(&durable),
        "the last write is the durable head"
    );
}
