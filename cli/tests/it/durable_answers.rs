//! Handlers await durability without parking a blocking thread (issue 23): the router of
//! `floe serve` over a durable sled store whose sync a hook holds, served by a runtime
//! with a single blocking thread, spoken to over real HTTP.

use floe_catalog::Catalog;
use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use floe_commits::{SledBackend, Store, SystemClock};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};

use crate::harness::post;

/// Holds the durability thread at its next sync while closed; records its events.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, Vec<DurabilityEvent>)>,
    changed: Condvar,
}

impl DurabilityHook for Gate {
    fn event(&self, event: DurabilityEvent) {
        self.state.lock().unwrap().1.push(event);
        self.changed.notify_all();
    }

    fn sync_fault(&self) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        while s.0 {
            s = self.changed.wait(s).unwrap();
        }
        None
    }
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().unwrap().0 = closed;
        self.changed.notify_all();
    }

    /// Closes the gate until the guard drops (a failing test opens it as it unwinds,
    /// so that nothing stays parked on the held sync).
    fn closed(self: &Arc<Self>) -> impl Drop {
        struct Open(Arc<Gate>);
        impl Drop for Open {
            fn drop(&mut self) {
                self.0.set_closed(false);
            }
        }
        self.set_closed(true);
        Open(self.clone())
    }

    fn written(&self) -> usize {
        let s = self.state.lock().unwrap();
        let written = |e: &&DurabilityEvent| matches!(e, DurabilityEvent::Written { .. });
        s.1.iter().filter(written).count()
    }
}

/// Handlers wait for durability without parking a blocking thread (issue 23). With one
/// blocking thread and the sync held, two commits over HTTP are both computed (both in
/// sled: the first gave the thread back before its sync) while neither is answered;
/// once the sync completes both are answered, each after a sync that covers it.
#[test]
fn writes_await_durability_without_parking_a_blocking_thread() {
    use DurabilityEvent as E;

    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let backend = SledBackend::open_with(dir.path(), Some(gate.clone())).unwrap();
    let store = Store::open(Arc::new(backend), Arc::new(SystemClock)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = floe_rest::router(Catalog::new(Arc::new(store)));
    runtime.spawn(async move { axum::serve(listener, app).await });

    let closed = gate.closed();
    let before = gate.written();
    let clients: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|ns| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"namespace":["{ns}"]}}"#);
                post(&addr, "/api/v1/trees/main/namespaces", &body)
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gate.written() < before + 2 {
        // Only a parked blocking thread reaches the deadline.
        let s = gate.state.lock().unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "the second commit never ran: the first holds the only blocking thread"
        );
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        drop(gate.changed.wait_timeout(s, left).unwrap());
    }
    assert!(
        clients.iter().all(|c| !c.is_finished()),
        "no answer before its sync completes"
    );
    drop(closed);
    for client in clients {
        // `post` asserts a 2xx.
        client.join().unwrap();
    }
    let events = gate.state.lock().unwrap().1.clone();
    let mut synced = 0;
    let mut acked = 0;
    for e in events {
        match e {
            E::SyncCompleted { upto } => synced = upto,
            E::Acknowledged { ticket } => {
                assert!(
                    ticket <= synced,
                    "ticket {ticket} acknowledged before its sync"
                );
                acked += 1;
            }
            _ => {}
        }
    }
    assert!(acked >= 2, "both commits were acknowledged ({acked})");
}
