//! Durability waits handed to an async caller: the awaitable ticket (issue 23).
//!
//! A server's handler computes its answer on a blocking thread; the answer may be sent
//! only once every write it made or read is on the device (DESIGN §2). Waiting there for
//! the sync would park the blocking thread for a device round trip. Instead the handler
//! runs its store work in `run_deferred`: every wait the store would make on this thread
//! (a write's acknowledgement, a meta read of pending writes, a rejection computed at a
//! pending head) is noted and returns at once, and the handler awaits the `Pending` it
//! gets back before it sends anything. What the client sees is the same: no answer names
//! a head or a value before it is durable. A store whose writes are durable when they
//! return (memory, PostgreSQL) notes nothing.
//!
//! Under `Scope::Write`, reads of the durable view (refs, the reflog) see the newest,
//! pending state instead, and note its ticket: a write's own move is not durable yet when
//! the handler reads the branch back to answer, and must show in the answer. Under
//! `Scope::Read`, views are as they are everywhere else.
//!
//! Nothing irreversible may happen outside the store, and nothing other requests read may
//! change in memory, on the strength of a deferred wait: whatever does so (removing a
//! run's files because its record is gone, putting a new policy in force, keeping a key
//! in memory) first calls `barrier`, which waits on the thread for everything noted so
//! far. floe never deletes a file a commit referred to (files a failed write left are its
//! own).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::backend::BackendResult;

/// What a backend with deferred durability answers to (the sled backend).
pub trait DurableSignal: Send + Sync + std::fmt::Debug {
    /// Ready when every write up to `ticket` is durable (an error once it never will be);
    /// else wakes `cx` when that may have changed.
    fn poll_durable(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<BackendResult<()>>;

    /// Waits on this thread until every write up to `ticket` is durable.
    fn wait_durable_now(&self, ticket: u64) -> BackendResult<()>;

    /// Notes that the writes with these tickets were reported applied (test hooks).
    fn acknowledged(&self, tickets: &[u64]);
}

/// What the store work of a deferral scope does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A read: waits are deferred, views are as everywhere.
    Read,
    /// A write: waits are deferred, and durable views show pending state (see the module).
    Write,
}

/// One backend's waits: up to which ticket, and which tickets were acknowledgements.
struct Wait {
    signal: Arc<dyn DurableSignal>,
    upto: u64,
    acknowledged: Vec<u64>,
}

struct Deferral {
    scope: Scope,
    waits: Vec<Wait>,
}

thread_local! {
    static DEFERRAL: RefCell<Option<Deferral>> = const { RefCell::new(None) };
}

/// Runs `f` with the store's durability waits on this thread deferred: its answer, and
/// what must be durable before anyone is told it. A scope inside another adds to the
/// outer one (its `Pending` is empty).
pub fn run_deferred<R>(scope: Scope, f: impl FnOnce() -> R) -> (R, Pending) {
    if DEFERRAL.with(|d| d.borrow().is_some()) {
        return (f(), Pending::default());
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFERRAL.with(|d| d.borrow_mut().take());
        }
    }
    DEFERRAL.with(|d| {
        *d.borrow_mut() = Some(Deferral {
            scope,
            waits: Vec::new(),
        })
    });
    let reset = Reset;
    let out = f();
    let waits = DEFERRAL.with(|d| d.borrow_mut().take().map(|d| d.waits));
    drop(reset);
    (
        out,
        Pending {
            waits: waits.unwrap_or_default(),
        },
    )
}

/// Waits on this thread for every wait noted so far in its scope (nothing outside one):
/// called before anything irreversible, or visible to other requests, that rests on what
/// the scope's store work wrote or read. An error: what was noted never became durable.
pub fn barrier() -> BackendResult<()> {
    let waits = DEFERRAL.with(|d| {
        d.borrow_mut()
            .as_mut()
            .map(|d| std::mem::take(&mut d.waits))
    });
    Pending {
        waits: waits.unwrap_or_default(),
    }
    .wait()
}

/// The scope this thread's store work runs in, if any.
pub fn scope() -> Option<Scope> {
    DEFERRAL.with(|d| d.borrow().as_ref().map(|d| d.scope))
}

/// Notes a wait for `ticket` of `signal` when this thread runs in a scope (true); false
/// when it does not, and the caller must wait itself. `acknowledge`: the wait is a write
/// being reported applied.
pub(crate) fn defer(signal: &Arc<dyn DurableSignal>, ticket: u64, acknowledge: bool) -> bool {
    DEFERRAL.with(|d| {
        let mut d = d.borrow_mut();
        let Some(deferral) = d.as_mut() else {
            return false;
        };
        let at = deferral
            .waits
            .iter()
            .position(|w| Arc::ptr_eq(&w.signal, signal));
        let wait = match at {
            Some(i) => &mut deferral.waits[i],
            None => {
                deferral.waits.push(Wait {
                    signal: signal.clone(),
                    upto: 0,
                    acknowledged: Vec::new(),
                });
                deferral.waits.last_mut().expect("just pushed")
            }
        };
        wait.upto = wait.upto.max(ticket);
        if acknowledge {
            wait.acknowledged.push(ticket);
        }
        true
    })
}

/// What must be durable before an answer computed in a scope is sent.
#[must_use = "an answer may be sent only once what it rests on is durable"]
#[derive(Default)]
pub struct Pending {
    waits: Vec<Wait>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.waits.iter().map(|w| w.upto))
            .finish()
    }
}

impl Pending {
    /// Nothing to wait for.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Resolves once everything is durable; an error (outcome unknown) if it never will
    /// be. Parks no thread.
    pub fn durable(self) -> Durable {
        Durable {
            waits: self.waits,
            next: 0,
        }
    }

    /// Waits on this thread (callers that are not async).
    pub fn wait(self) -> BackendResult<()> {
        for w in &self.waits {
            w.signal.wait_durable_now(w.upto)?;
            w.signal.acknowledged(&w.acknowledged);
        }
        Ok(())
    }
}

/// The future of `Pending::durable`.
#[must_use = "futures do nothing unless awaited"]
pub struct Durable {
    waits: Vec<Wait>,
    next: usize,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("waits", &self.waits.len())
            .field("next", &self.next)
            .finish()
    }
}

impl Durable {
    /// Waits on this thread for what is left (a caller that polled and then may block).
    pub fn wait(self) -> BackendResult<()> {
        Pending {
            waits: self.waits.into_iter().skip(self.next).collect(),
        }
        .wait()
    }
}

impl Future for Durable {
    type Output = BackendResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BackendResult<()>> {
        while let Some(w) = self.waits.get(self.next) {
            match w.signal.poll_durable(w.upto, cx) {
                Poll::Ready(Ok(())) => {
                    w.signal.acknowledged(&w.acknowledged);
                    self.next += 1;
                }
                other => return other,
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Debug, Default)]
    struct Noted(Mutex<Vec<u64>>);

    impl DurableSignal for Noted {
        fn poll_durable(&self, _: u64, _: &mut Context<'_>) -> Poll<BackendResult<()>> {
            Poll::Ready(Ok(()))
        }
        fn wait_durable_now(&self, _: u64) -> BackendResult<()> {
            Ok(())
        }
        fn acknowledged(&self, tickets: &[u64]) {
            self.0.lock().extend_from_slice(tickets);
        }
    }

    #[test]
    fn a_scope_collects_the_highest_ticket_per_store_and_ends_with_its_work() {
        let a: Arc<dyn DurableSignal> = Arc::new(Noted::default());
        let b: Arc<dyn DurableSignal> = Arc::new(Noted::default());
        assert!(
            !defer(&a, 1, true),
            "outside a scope the caller waits itself"
        );
        let ((), pending) = run_deferred(Scope::Write, || {
            assert_eq!(scope(), Some(Scope::Write));
            assert!(defer(&a, 3, true));
            assert!(defer(&b, 2, false));
            assert!(defer(&a, 1, false));
            // A scope inside adds to the outer one.
            let ((), inner) = run_deferred(Scope::Read, || assert!(defer(&a, 5, true)));
            assert!(inner.is_empty());
        });
        assert_eq!(format!("{pending:?}"), "[5, 2]");
        assert_eq!(scope(), None);
        pending.wait().unwrap();
        let noted = |s: &Arc<dyn DurableSignal>| format!("{s:?}");
        assert!(noted(&a).contains("[3, 5]"), "{}", noted(&a));
    }

    #[test]
    fn a_panic_inside_ends_the_scope() {
        let caught = std::panic::catch_unwind(|| run_deferred(Scope::Read, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(scope(), None);
    }
}
