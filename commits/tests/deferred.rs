//! The awaitable ticket (`floe_commits::deferred`, issue 23) on the sled store: store work
//! run in a deferral scope returns while its sync is held, without waiting on its thread;
//! what it must wait for is in its `Pending`, which resolves (waking its task) only once
//! the sync completes, or fails once the store is poisoned. A write scope reads its own
//! moves back; a read scope sees the durable view as everywhere else. The sync is held by
//! the hook; no test relies on timing (the timeouts only turn a hang into a failure).

mod hooks;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use floe_commits::deferred::{Pending, Scope, run_deferred};
use floe_commits::*;
use hooks::{Held, barrier_violation};

/// Long enough that only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// Drives `f` on this thread, parked between polls until its waker unparks it; `then`
/// runs after the first poll (which registered the waker).
fn block_on<F: Future>(f: F, then: impl FnOnce()) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let deadline = Instant::now() + HANG;
    let mut then = Some(then);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        if let Some(then) = then.take() {
            then();
            continue;
        }
        std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        assert!(Instant::now() < deadline, "the future was never woken");
    }
}

fn open(dir: &std::path::Path) -> (Arc<Held>, Arc<SledBackend>, Arc<Store>) {
    let held = Arc::new(Held::default());
    let backend = Arc::new(SledBackend::open_with(dir, Some(held.clone())).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    (held, backend, store)
}

fn namespace(name: &str, id: u128) -> Op {
    Op::Put {
        key: ContentKey::new([name]).unwrap(),
        content: Content::namespace(ContentId::from_u128(id), BTreeMap::new()),
        expect: Expect::Absent,
    }
}

/// Runs `f` in a deferral scope on a thread of its own, and returns what it returned;
/// fails if it does not return (it waited for the held sync on its thread).
fn returns_while_held<T: Send + 'static>(
    scope: Scope,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Pending) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_deferred(scope, f));
    });
    rx.recv_timeout(HANG)
        .expect("store work in a deferral scope returns while its sync is held")
}

#[test]
fn a_deferred_write_returns_at_once_and_its_pending_resolves_after_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (held, _backend, store) = open(dir.path());
    let main = RefName::parse("main").unwrap();
    let before = store.get_ref(&main).unwrap().head;

    held.close();
    let ((commit, own, meta), pending) = returns_while_held(Scope::Write, {
        let (store, main) = (store.clone(), main.clone());
        move || {
            let ctx = WriteCtx::principal("t");
            let meta = CommitMeta::new("t", "ns", 0);
            let commit = store.commit(&main, None, vec![namespace("a", 1)], meta, &ctx);
            // The answer reads its own move and its own meta write back.
            let own = store.get_ref(&main).map(|r| r.head);
            store.meta_put(b"k", b"v").unwrap();
            let meta = store.meta_get(b"k").unwrap();
            (commit.unwrap().commit, own.unwrap(), meta)
        }
    });
    assert_eq!(own, commit, "a write scope reads its own pending move");
    assert_eq!(meta.as_deref(), Some(&b"v"[..]));
    assert!(!pending.is_empty(), "the answer must wait for the sync");

    // Nothing is durable yet: the durable view shows the old head; a read scope too,
    // deferring nothing; a write scope shows the pending head and must wait for it.
    assert_eq!(store.get_ref(&main).unwrap().head, before);
    let (head, read) = run_deferred(Scope::Read, || store.get_ref(&main).unwrap().head);
    assert_eq!((head, read.is_empty()), (before, true));
    let (head, write) = run_deferred(Scope::Write, || store.get_ref(&main).unwrap().head);
    assert_eq!((head, write.is_empty()), (commit, false));
    let (listed, listing) = run_deferred(Scope::Write, || {
        let page = store.list_refs(None, None, 10).unwrap();
        page.items
            .iter()
            .find(|(n, _)| *n == main)
            .map(|(_, r)| r.head)
    });
    assert_eq!((listed, listing.is_empty()), (Some(commit), false));

    let mut durable = pin!(pending.durable());
    let polled = durable
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(polled.is_pending(), "not durable while the sync is held");

    // The sync completes: the waiting task is woken, and the answer may go.
    block_on(durable, || held.open()).unwrap();
    block_on(write.durable(), || {}).unwrap();
    block_on(listing.durable(), || {}).unwrap();
    assert_eq!(store.get_ref(&main).unwrap().head, commit);
    let events = held.events();
    assert_eq!(barrier_violation(&events), None);
}

#[test]
fn a_deferred_wait_fails_once_the_sync_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (held, backend, store) = open(dir.path());
    let main = RefName::parse("main").unwrap();

    held.close();
    held.fail_next("injected: fdatasync failed (EIO)");
    let (commit, pending) = returns_while_held(Scope::Write, {
        let store = store.clone();
        move || {
            let meta = CommitMeta::new("t", "ns", 0);
            let ctx = WriteCtx::principal("t");
            store.commit(&main, None, vec![namespace("a", 1)], meta, &ctx)
        }
    });
    assert!(commit.is_ok(), "the write itself applied (pending)");
    let err = block_on(pending.durable(), || held.open()).expect_err("a failed sync fails");
    assert!(err.message.contains("poisoned"), "{err}");
    assert!(backend.is_poisoned());
    // A scope entered after the failure refuses the write at once.
    let (later, _) = run_deferred(Scope::Write, || store.meta_put(b"k", b"v"));
    assert!(later.is_err());
}
