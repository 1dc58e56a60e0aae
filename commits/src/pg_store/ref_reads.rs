//! Ref reads for an async server (`Backend::read_refs_async`): the statement runs on the
//! PostgreSQL runtime and the caller's task awaits its answer, so none of the caller's
//! threads waits for the database.
//!
//! Concurrent reads are coalesced, as a group commit coalesces writes: while one statement
//! is out, the reads that arrive queue, and the next statement reads every ref they asked
//! for at once. A read joins only a statement sent after it queued, never one already
//! out, so the record it gets was read after its request arrived: as fresh as a statement
//! of its own (no move committed before the request began is missed; reads stay
//! linearizable). One statement is out at a time; it reads at most `REFS_PER_STATEMENT`
//! names, and a read that queued behind more waits for the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{corrupt, pool_err, read_err, runtime};
use crate::backend::{BackendError, BackendResult, RefRecord, RefsFuture};
use crate::name::RefName;
use crate::records::decode_record;

/// Ref names one statement reads at most.
const REFS_PER_STATEMENT: usize = 256;

/// How long a statement may take before its reads are answered with an error and read
/// where they may block, on the pool's other connections: one stalled statement does not
/// hold every read of the server for long. The reader's connection has it as its
/// `statement_timeout`, so the server cancels what the reader gave up on; the reader
/// waits a second longer for the connection itself (a silent peer).
pub(super) const READ_WAIT: Duration = Duration::from_secs(2);

/// How long a leader keeps the reader's connection before it goes back to its pool (to
/// be recycled, its lifetime checked) and is taken again.
const HOLD_MAX: Duration = Duration::from_secs(1);

type Answer = BackendResult<Vec<Option<RefRecord>>>;

/// One queued read: the refs it asked for, in its order, and where its answer goes.
struct Waiter {
    names: Vec<RefName>,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// A leader task is sending statements; it takes the queue before each.
    leading: bool,
}

/// The coalescing ref reader of one backend, with a connection of its own.
pub(super) struct RefReads {
    queue: Mutex<Queue>,
    /// One connection (a pool of one, for its timeouts, recycling and lifetime), made on
    /// the runtime of the leader that needs it. Should that runtime stop (tests run
    /// several), the connection is found closed when next taken, or its statement gives
    /// up after `READ_WAIT` and a second, and it is dropped.
    reader: Pool,
    /// Reads queued and statements sent, since the backend opened.
    reads: AtomicU64,
    statements: AtomicU64,
}

impl std::fmt::Debug for RefReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue.lock();
        f.debug_struct("RefReads")
            .field("waiting", &queue.waiting.len())
            .field("leading", &queue.leading)
            .finish()
    }
}

impl RefReads {
    pub(super) fn new(reader: Pool) -> RefReads {
        RefReads {
            queue: Mutex::default(),
            reader,
            reads: AtomicU64::new(0),
            statements: AtomicU64::new(0),
        }
    }

    /// Reads queued since the backend opened.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Statements sent for them.
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Queues a read of `names`; the first read of an idle reader starts its leader, on
    /// the caller's runtime (a server's: the statement, its connection and the reads it
    /// answers share its threads, with no hop between runtimes), else the backend's.
    pub(super) fn read(self: &Arc<Self>, names: Vec<RefName>) -> RefsFuture {
        let (answer, answered) = oneshot::channel();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let lead = {
            let mut queue = self.queue.lock();
            queue.waiting.push(Waiter { names, answer });
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            // Made before the task: a task dropped before it ever ran still lets go.
            let leading = Leading {
                reads: self.clone(),
                done: false,
            };
            let leader = self.clone().lead(leading);
            match tokio::runtime::Handle::try_current() {
                Ok(here) => drop(here.spawn(leader)),
                Err(_) => drop(runtime().spawn(leader)),
            }
        }
        Box::pin(async move {
            answered.await.unwrap_or_else(|_| {
                Err(BackendError::unavailable(
                    "a PostgreSQL ref read ended without an answer",
                ))
            })
        })
    }

    /// Sends statements while reads queue: each takes the queue first, so it answers only
    /// reads that queued before it was sent. The leader holds the reader's connection
    /// while it leads.
    async fn lead(self: Arc<Self>, mut leading: Leading) {
        loop {
            // Bounded by the pool's own timeouts (`--store` options' acquire timeout).
            match self.reader.get().await.map_err(pool_err) {
                Ok(client) => {
                    // The connection goes back to the pool (recycled, its lifetime
                    // checked) only if every statement on it answered: after one that
                    // failed or was given up on (a connection the server cut, or one
                    // stalled), or a leader dropped mid-statement, it is dropped.
                    let mut held = Held(Some(client));
                    if self.lead_on(held.0.as_ref().expect("held")).await {
                        drop(held.0.take());
                    }
                }
                Err(e) => {
                    let batch = std::mem::take(&mut self.queue.lock().waiting);
                    answer(batch, &Err(e));
                }
            }
            let mut queue = self.queue.lock();
            if queue.waiting.is_empty() {
                // Under the lock: a read queued after this starts a leader of its own.
                queue.leading = false;
                leading.done = true;
                return;
            }
        }
    }

    /// Sends statements on `client` while reads queue, one at a time, answering each
    /// batch as its statement answers, for at most `HOLD_MAX` (then the connection goes
    /// back to the pool, which checks its lifetime); false once one failed.
    async fn lead_on(&self, client: &deadpool_postgres::Client) -> bool {
        let since = tokio::time::Instant::now();
        loop {
            if since.elapsed() >= HOLD_MAX {
                return true;
            }
            let Some(batch) = take_batch(&mut self.queue.lock().waiting) else {
                return true;
            };
            self.statements.fetch_add(1, Ordering::Relaxed);
            let mut names: Vec<RefName> = batch.iter().flat_map(|w| w.names.clone()).collect();
            names.sort();
            names.dedup();
            let wait = READ_WAIT + Duration::from_secs(1);
            let answered = tokio::time::timeout(wait, read_refs(client, &names))
                .await
                .unwrap_or_else(|_| {
                    Err(BackendError::unavailable(format!(
                        "PostgreSQL did not answer a ref read within {wait:?}"
                    )))
                });
            let healthy = answered.is_ok();
            answer(batch, &answered);
            if !healthy {
                return false;
            }
        }
    }
}

/// The reader's connection while a leader holds it: dropped, not pooled, unless taken back.
struct Held(Option<deadpool_postgres::Object>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Answers each read of `batch` from one statement's records.
fn answer(batch: Vec<Waiter>, records: &BackendResult<HashMap<String, RefRecord>>) {
    for waiter in batch {
        let mine = records.as_ref().map_err(Clone::clone).map(|records| {
            waiter
                .names
                .iter()
                .map(|n| records.get(n.as_str()).cloned())
                .collect()
        });
        // A read whose request went away no longer listens.
        let _ = waiter.answer.send(mine);
    }
}

/// Reads at the head of the queue, up to `REFS_PER_STATEMENT` names (at least one read);
/// none when none waits.
fn take_batch(waiting: &mut Vec<Waiter>) -> Option<Vec<Waiter>> {
    let mut names = 0;
    let mut take = 0;
    for w in waiting.iter() {
        names += w.names.len();
        if take > 0 && names > REFS_PER_STATEMENT {
            break;
        }
        take += 1;
    }
    (take > 0).then(|| waiting.drain(..take).collect())
}

/// If the leader ends without emptying the queue (it panicked, or was dropped before or
/// while it ran), the reads still queued are answered with an error (their callers read
/// where they may block) and the next read starts a new leader.
struct Leading {
    reads: Arc<RefReads>,
    done: bool,
}

impl Drop for Leading {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.reads.queue.lock();
            queue.leading = false;
            queue.waiting.clear();
        }
    }
}

/// The records of refs by name, in one statement.
async fn read_refs(
    client: &deadpool_postgres::Client,
    names: &[RefName],
) -> BackendResult<HashMap<String, RefRecord>> {
    let statement = client
        .prepare_cached("SELECT name, record FROM floe_refs WHERE name = ANY($1)")
        .await
        .map_err(read_err)?;
    let asked: Vec<&str> = names.iter().map(RefName::as_str).collect();
    let rows = client
        .query(&statement, &[&asked])
        .await
        .map_err(read_err)?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        out.insert(name, decode_record(row.get(1)).map_err(corrupt)?);
    }
    Ok(out)
}
