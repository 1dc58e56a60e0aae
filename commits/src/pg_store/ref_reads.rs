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
//!
//! The reader's connection has no task of its own: the leader polls it, in its own task,
//! while it waits for a statement's answer (a connection of a pool is driven by a task
//! the pool spawns, and each statement then costs two more wake-ups between tasks, on
//! the machine's few cores; a read's cost here is mostly wake-ups). Between leaders it
//! is kept unpolled; the next leader polls it once before use, which reads what the
//! server sent meanwhile (a connection it ended is then seen as ended, and replaced, if
//! the reactor has seen the server's goodbye yet; else that batch's reads fail and fall
//! back). Reads led on several runtimes (tests) get a connection for each in turn; a
//! server's are all led on its own.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::tls::MakeRustls;
use super::{corrupt, describe, read_err, runtime};
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

/// The statements: most reads of a server are of one ref (a branch its clients work on),
/// and a statement for one name costs the server less than one for a list.
const READ_REFS: &str = "SELECT name, record FROM floe_refs WHERE name = ANY($1)";
const READ_REF: &str = "SELECT name, record FROM floe_refs WHERE name = $1";

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

/// How the reader connects: the backend's address and settings (the reader's statement
/// timeout, its generic plan), its TLS, how long a connection may take to make, and how
/// long one is used.
pub(super) struct Connector {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<MakeRustls>,
    pub(super) connect_wait: Duration,
    pub(super) max_lifetime: Duration,
}

/// What drives a connection: sends its client's statements, reads their answers.
type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// The reader's connection, with its statements prepared.
struct Conn {
    client: Client,
    /// `READ_REF` and `READ_REFS`, prepared.
    one: Statement,
    many: Statement,
    /// Polled only by the leader holding the connection; once it ended, never again.
    driver: Driver,
    /// The driver returned: the connection is closed, whatever its last statement said.
    ended: bool,
    made: Instant,
    /// The runtime whose reactor the connection's socket is registered with: a leader on
    /// another runtime (tests run several) makes a connection of its own, rather than
    /// wait on a reactor that may not be driven, and through it, on every read.
    runtime: tokio::runtime::Id,
}

/// The coalescing ref reader of one backend, with a connection of its own.
pub(super) struct RefReads {
    queue: Mutex<Queue>,
    connector: Connector,
    /// The reader's connection while no leader holds it.
    idle: Mutex<Option<Conn>>,
    /// Reads queued, statements sent and connections made, since the backend opened.
    reads: AtomicU64,
    statements: AtomicU64,
    connections: AtomicU64,
}

impl Drop for RefReads {
    fn drop(&mut self) {
        if let Some(conn) = self.idle.get_mut().take() {
            retire(conn);
        }
    }
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
    pub(super) fn new(connector: Connector) -> RefReads {
        RefReads {
            queue: Mutex::default(),
            connector,
            idle: Mutex::default(),
            reads: AtomicU64::new(0),
            statements: AtomicU64::new(0),
            connections: AtomicU64::new(0),
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

    /// Connections the reader made.
    pub(super) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Queues a read of `names`; the first read of an idle reader starts its leader, on
    /// the caller's runtime if it has worker threads (a server's: the statement, its
    /// connection and the reads it answers share its threads, with no hop between
    /// runtimes), else on the backend's: a current-thread runtime runs its tasks only
    /// while something blocks on it, and a leader left there mid-statement would hold
    /// every read of the backend.
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
                Ok(here) if here.runtime_flavor() == RuntimeFlavor::MultiThread => {
                    drop(here.spawn(leader))
                }
                _ => drop(runtime().spawn(leader)),
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
    /// while it leads, and puts it back, if still sound, before it lets go.
    async fn lead(self: Arc<Self>, mut leading: Leading) {
        loop {
            match self.take_connection().await {
                Ok(conn) => {
                    if let Some(conn) = self.lead_on(conn).await {
                        *self.idle.lock() = Some(conn);
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

    /// Sends statements on `conn` while reads queue, one at a time, answering each batch
    /// as its statement answers. The connection comes back when no read waits; it is
    /// retired (`None`) after a statement that failed or was given up on (a connection
    /// the server cut, or one stalled), once it ended, and once it reached its lifetime
    /// (checked after a statement, so that a new connection always serves one).
    async fn lead_on(&self, mut conn: Conn) -> Option<Conn> {
        loop {
            let Some(batch) = take_batch(&mut self.queue.lock().waiting) else {
                return Some(conn);
            };
            self.statements.fetch_add(1, Ordering::Relaxed);
            let mut names: Vec<&str> = batch
                .iter()
                .flat_map(|w| w.names.iter().map(RefName::as_str))
                .collect();
            names.sort_unstable();
            names.dedup();
            let rows = read_refs(&mut conn, &names).await;
            // A damaged record fails its reads, not the connection that read it.
            let sound = rows.is_ok() && !conn.ended;
            answer(batch, &rows.and_then(records));
            if !sound || conn.made.elapsed() >= self.connector.max_lifetime {
                retire(conn);
                return None;
            }
        }
    }

    /// The idle connection if it is still sound (made on this runtime, younger than its
    /// lifetime, not ended by the server meanwhile), else a new one.
    async fn take_connection(&self) -> BackendResult<Conn> {
        // Leaders run as tasks: there is a runtime here.
        let here = tokio::runtime::Handle::current().id();
        let idle = self.idle.lock().take();
        if let Some(mut conn) = idle {
            if here == conn.runtime
                && !conn.ended
                && conn.made.elapsed() < self.connector.max_lifetime
            {
                // One poll reads what the server sent while no leader held it, if this
                // runtime's reactor has seen it yet (a connection ended a moment ago may
                // fail its first statement: its reads fall back, the next gets a new one).
                let open =
                    poll_fn(|cx| Poll::Ready(conn.driver.as_mut().poll(cx).is_pending())).await;
                if open {
                    return Ok(conn);
                }
                conn.ended = true;
            }
            retire(conn);
        }
        self.connect(here).await
    }

    /// A new connection, on `runtime` (the caller's).
    async fn connect(&self, runtime: tokio::runtime::Id) -> BackendResult<Conn> {
        let wait = self.connector.connect_wait;
        let config = &self.connector.config;
        let connected = tokio::time::timeout(wait, async {
            let (client, driver): (Client, Driver) = match &self.connector.tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls.clone()).await?;
                    (client, Box::pin(connection))
                }
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    (client, Box::pin(connection))
                }
            };
            Ok::<_, tokio_postgres::Error>((client, driver))
        })
        .await;
        let (client, mut driver) = match connected {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => {
                return Err(BackendError::unavailable(format!(
                    "PostgreSQL: no connection for ref reads: {}",
                    describe(&e)
                )));
            }
            Err(_) => {
                return Err(BackendError::unavailable(format!(
                    "PostgreSQL: no connection for ref reads within {wait:?}"
                )));
            }
        };
        let mut ended = false;
        let prepared = within_read_wait(drive(&mut driver, &mut ended, async {
            Ok((
                client.prepare(READ_REF).await?,
                client.prepare(READ_REFS).await?,
            ))
        }))
        .await;
        let (one, many) = match prepared {
            Ok(statements) if !ended => statements,
            failed => {
                close(client, driver, ended);
                return Err(failed.err().unwrap_or_else(|| {
                    BackendError::unavailable("PostgreSQL closed the ref reader's new connection")
                }));
            }
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            client,
            one,
            many,
            driver,
            ended: false,
            made: Instant::now(),
            runtime,
        })
    }
}

/// Runs `work`, a call on a connection's client, polling the connection's driver in the
/// same task until it answers. A driver that ended first ends the call: with the answer
/// it handed the call as it ended (the server's error that ended it, say), else with its
/// own. `ended` is set once the driver returned (it must not be polled again).
async fn drive<T>(
    driver: &mut Driver,
    ended: &mut bool,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> BackendResult<T> {
    let mut work = std::pin::pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out.map_err(read_err));
        }
        // Never polled again once it returned: it answers as a closed connection.
        let driven = match *ended {
            true => Poll::Ready(Ok(())),
            false => driver.as_mut().poll(cx),
        };
        *ended = driven.is_ready();
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out.map_err(read_err));
        }
        match driven {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Err(BackendError::unavailable(
                "PostgreSQL closed the ref reader's connection",
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(read_err(e))),
        }
    })
    .await
}

/// `call`'s answer, or an error once it took `READ_WAIT` and a second.
async fn within_read_wait<T>(call: impl Future<Output = BackendResult<T>>) -> BackendResult<T> {
    let wait = READ_WAIT + Duration::from_secs(1);
    tokio::time::timeout(wait, call).await.unwrap_or_else(|_| {
        Err(BackendError::unavailable(format!(
            "PostgreSQL did not answer a ref read within {wait:?}"
        )))
    })
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
/// where they may block) and the next read starts a new leader. The connection it held
/// is dropped with it.
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

/// Closes a connection no longer used: its statements, then `close`.
fn retire(conn: Conn) {
    let Conn {
        client,
        one,
        many,
        driver,
        ended,
        ..
    } = conn;
    drop((one, many));
    close(client, driver, ended);
}

/// Closes a connection: its client goes (the connection is ended as a client ends it),
/// and its driver, unless it `ended` already, is polled to the end in a task of its own
/// on the backend's runtime (it has a timer and is always driven, wherever the caller
/// is), for a second at most.
fn close(client: Client, driver: Driver, ended: bool) {
    drop(client);
    if !ended {
        drop(runtime().spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
        }));
    }
}

/// The rows of refs by name, in one statement on the reader's connection.
async fn read_refs(conn: &mut Conn, names: &[&str]) -> BackendResult<Vec<Row>> {
    let (statement, param): (_, &(dyn ToSql + Sync)) = match names {
        [one] => (&conn.one, one),
        _ => (&conn.many, &names),
    };
    let params = [param];
    let query = conn.client.query(statement, &params);
    within_read_wait(drive(&mut conn.driver, &mut conn.ended, query)).await
}

/// The records in `rows`, by name.
fn records(rows: Vec<Row>) -> BackendResult<HashMap<String, RefRecord>> {
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        out.insert(name, decode_record(row.get(1)).map_err(corrupt)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader dropped before it ever ran (its runtime shut down first) answers the reads
    /// queued for it with an error and lets the next read start a leader.
    #[test]
    fn a_leader_dropped_before_it_ran_answers_its_reads() {
        let reads = Arc::new(RefReads::new(Connector {
            config: tokio_postgres::Config::new(),
            tls: None,
            connect_wait: Duration::from_secs(1),
            max_lifetime: Duration::from_secs(1),
        }));
        let (answer, mut answered) = oneshot::channel();
        {
            let mut queue = reads.queue.lock();
            queue.waiting.push(Waiter {
                names: vec![RefName::parse("main").unwrap()],
                answer,
            });
            queue.leading = true;
        }
        let leading = Leading {
            reads: reads.clone(),
            done: false,
        };
        drop(reads.clone().lead(leading));
        assert!(
            matches!(
                answered.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ),
            "the queued read is let go (its caller reads an error)"
        );
        let queue = reads.queue.lock();
        assert!(!queue.leading && queue.waiting.is_empty());
    }
}
