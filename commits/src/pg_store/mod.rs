//! The PostgreSQL backend: one catalog shared by several floe servers (DESIGN §9). The only
//! module that knows tokio-postgres and its pool.
//!
//! Tables (schema.rs): `floe_objects` (hash -> bytes), `floe_refs` (name -> head and the
//! encoded record), `floe_reflog` (seq -> ref name and entry), `floe_meta` (key -> value)
//! and `floe_counters` (the reflog's next sequence number).
//!
//! A ref move is one statement, so one transaction and one round trip: the conditional
//! write of the ref (the compare-and-swap; under READ COMMITTED a concurrent move makes it
//! match no row), then, only if it matched, the counter's increment (the reflog's `seq`,
//! gapless and in commit order across refs and servers, because the counter's row lock is
//! held until COMMIT), the reflog row and the meta write, and a commit's objects (written
//! whether or not the ref moved; a few, as the counter's lock is held while they go in: a
//! commit with more writes them first). A `seq` is never skipped: a rolled-back move rolls
//! back its increment. An error the server reports at ERROR level
//! rolled the move back; any other failure (the connection lost, a FATAL while committing)
//! leaves the outcome unknown, never success.
//!
//! Writes are durable when they return (`synchronous_commit` is the server's; floe asks
//! for `on`), so both ref views are the committed one and `wait_durable` does nothing.
//!
//! The trait is synchronous; the driver is async. Every call runs on a small runtime of
//! the backend's own and the caller waits on a channel, so a caller on any thread (a
//! blocking-pool thread, a plain thread) never nests runtimes.

mod copy;
mod options;
mod ref_reads;
mod schema;
mod statements;
mod tls;

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use crate::backend::{
    Backend, BackendError, BackendResult, CasOutcome, ClockSample, Gauge, RefRecord, RefUpdate,
    RefView, ReflogEntry,
};
use crate::clock::Clock;
use crate::encoding::DecodeError;
use crate::hash::Hash;
use crate::name::RefName;
use crate::records::{decode_entry, decode_record};

pub use options::{PgOptions, PoolStatus};
pub use schema::SCHEMA_VERSION;

use options::{build_pool, tls_of};

#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: Pool,
    /// Ref reads that do not block their caller's thread, coalesced (`ref_reads.rs`).
    ref_reads: std::sync::Arc<ref_reads::RefReads>,
}

/// One call's work on a pooled connection.
type Call<'c, T> = std::pin::Pin<Box<dyn Future<Output = BackendResult<T>> + Send + 'c>>;

/// Rows inserted per object batch, and bytes (a batch is one statement).
const OBJECTS_PER_BATCH: usize = 1000;
const OBJECT_BYTES_PER_BATCH: usize = 4 << 20;
/// At most this many objects (and bytes) go in a ref move's own statement; a commit with
/// more writes them first.
const OBJECTS_WITH_MOVE_MAX: usize = 64;
const OBJECT_BYTES_WITH_MOVE_MAX: usize = 256 << 10;

/// The runtime every PostgreSQL call runs on (the pool's connections live there too).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floe-pg")
            .enable_all()
            .build()
            .expect("the PostgreSQL runtime starts")
    });
    &RUNTIME
}

/// Runs a future on the PostgreSQL runtime and waits for it, from any thread.
fn run<T, F>(f: F) -> BackendResult<T>
where
    F: Future<Output = BackendResult<T>> + Send + 'static,
    T: Send + 'static,
{
    // An inline read (`crate::inline`) never waits for the database: it is refused and
    // runs again where it may.
    if !crate::inline::may_block() {
        return Err(BackendError::unavailable(crate::inline::REFUSED));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(BackendError::unknown(
            "a PostgreSQL call ended without an answer",
        ))
    })
}

/// An error's text: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL: {}", with_causes(e)),
    }
}

/// An error and what caused it, each said once (a TLS handshake's reason is its cause's:
/// the certificate it refused, and why).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut said = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !said.contains(&text) {
            said = format!("{said}: {text}");
        }
        cause = c.source();
    }
    said
}

/// A failed read, or a write that certainly did not apply: the database out of reach
/// (the connection lost, the server shutting down or out of connections) or a transaction
/// it rolled back to be tried again (a deadlock, a serialization failure), both answered
/// as unavailable (try again); else an error of the statement.
fn read_err(e: tokio_postgres::Error) -> BackendError {
    let out_of_reach = match e.as_db_error() {
        None => true,
        Some(db) => ["08", "40", "53", "57"]
            .iter()
            .any(|class| db.code().code().starts_with(class)),
    };
    match out_of_reach {
        true => BackendError::unavailable(describe(&e)),
        false => BackendError::read(describe(&e)),
    }
}

/// A failed write: not applied when the server reported an ERROR (the transaction was
/// rolled back), unknown otherwise (the connection was lost or closed around the commit).
fn write_err(e: tokio_postgres::Error) -> BackendError {
    let rolled_back = e
        .as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(tokio_postgres::error::Severity::Error));
    if rolled_back {
        read_err(e)
    } else {
        BackendError::unknown(describe(&e))
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> BackendError {
    BackendError::unavailable(format!("PostgreSQL: no connection: {}", with_causes(&e)))
}

fn corrupt(e: DecodeError) -> BackendError {
    BackendError::read(format!("a stored record is damaged: {e}"))
}

fn hash_of(bytes: &[u8]) -> BackendResult<Hash> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| BackendError::read("a stored hash is not 32 bytes"))?;
    Ok(Hash::from_bytes(array))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The first key after every key that starts with `prefix`; `None` when there is none
/// (an empty prefix, or one of 0xff bytes only).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl PostgresBackend {
    /// Connects, creates the schema and its tables if missing, and migrates them.
    pub fn open(options: &PgOptions) -> BackendResult<PostgresBackend> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            BackendError::read(format!(
                "the PostgreSQL address is not a postgres:// URL or a key=value string: {e}"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("floe");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.acquire_timeout);
        }
        // A peer gone silent (a partition) is noticed in seconds, not hours.
        config.keepalives_idle(Duration::from_secs(10));
        let mut settings = "-c synchronous_commit=on".to_owned();
        if let Some(schema) = &options.schema {
            if !is_plain_identifier(schema) {
                return Err(BackendError::read(format!(
                    "the schema name {schema:?} is not a plain identifier (lower-case letters, digits and _, not starting with a digit)"
                )));
            }
            settings.push_str(&format!(" -c search_path={schema}"));
        }
        if let Some(own) = config.get_options() {
            settings = format!("{own} {settings}");
        }
        // The ref reader's statements are cancelled by the server when it gives up on
        // them itself (`ref_reads::READ_WAIT`): none keeps running, and its connection
        // open, after its reads went elsewhere.
        let with_timeout = |timeout: Duration, more: &str| {
            let mut config = config.clone();
            config.options(format!(
                "{settings}{more} -c statement_timeout={}",
                timeout.as_millis()
            ));
            config
        };
        let tls = tls_of(&config, options)?;
        let pool = build_pool(
            with_timeout(options.statement_timeout, ""),
            tls.as_ref(),
            options,
            options.pool_size,
        )?;
        // The reader runs one statement, thousands of times a second: planned once (its
        // plan does not depend on the names asked), not again for each.
        let reader = ref_reads::Connector {
            config: with_timeout(
                ref_reads::READ_WAIT,
                " -c plan_cache_mode=force_generic_plan",
            ),
            tls,
            connect_wait: options.acquire_timeout,
            max_lifetime: options.max_lifetime,
        };
        let schema = options.schema.clone();
        let for_setup = pool.clone();
        run(async move {
            let mut client = for_setup.get().await.map_err(pool_err)?;
            if let Some(schema) = schema {
                // Created only when missing: a role without CREATE on the database may use
                // a schema made for it. Servers starting together may race to create it.
                if !schema_exists(&client, &schema).await? {
                    let created = client
                        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                        .await;
                    if let Err(e) = created
                        && !schema_exists(&client, &schema).await?
                    {
                        return Err(read_err(e));
                    }
                }
            }
            schema::migrate(&mut client)
                .await
                .map_err(BackendError::read)
        })?;
        Ok(PostgresBackend {
            pool,
            ref_reads: std::sync::Arc::new(ref_reads::RefReads::new(reader)),
        })
    }

    pub fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }

    /// Runs one call with a pooled connection on the PostgreSQL runtime.
    ///
    /// A connection whose call failed leaves the pool: it may be one the server cut (a
    /// restart, a terminated backend) before the driver noticed, and the next call must
    /// not get it again.
    fn with_client<T, F>(&self, f: F) -> BackendResult<T>
    where
        F: for<'c> FnOnce(&'c deadpool_postgres::Client) -> Call<'c, T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        run(async move {
            let client = pool.get().await.map_err(pool_err)?;
            let out = f(&client).await;
            if out.is_err() {
                drop(deadpool_postgres::Object::take(client));
            }
            out
        })
    }
}

async fn schema_exists(client: &deadpool_postgres::Object, schema: &str) -> BackendResult<bool> {
    client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map(|row| row.is_some())
        .map_err(read_err)
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Backend for PostgresBackend {
    fn is_shared(&self) -> bool {
        true
    }

    fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()> {
        // Sorted by hash: statements writing some of the same objects (a ref move's among
        // them) take them in one order, and never wait on each other in a cycle.
        let mut sorted: Vec<&(Hash, Bytes)> = objects.iter().collect();
        sorted.sort_unstable_by_key(|(hash, _)| *hash);
        let mut batches: Vec<(Vec<Vec<u8>>, Vec<Bytes>)> = Vec::new();
        let mut bytes_in_batch = 0;
        for (hash, bytes) in sorted {
            let full = batches.last().is_none_or(|(hashes, _)| {
                hashes.len() >= OBJECTS_PER_BATCH || bytes_in_batch >= OBJECT_BYTES_PER_BATCH
            });
            if full {
                batches.push((Vec::new(), Vec::new()));
                bytes_in_batch = 0;
            }
            let (hashes, values) = batches.last_mut().expect("a batch was pushed");
            hashes.push(hash.as_bytes().to_vec());
            values.push(bytes.clone());
            bytes_in_batch += bytes.len();
        }
        if batches.is_empty() {
            return Ok(());
        }
        // Objects are named by their hash and never change: a rewrite does nothing, and a
        // batch that failed midway is simply written again.
        self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO floe_objects (hash, bytes) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (hash) DO NOTHING",
                    )
                    .await
                    .map_err(read_err)?;
                for (hashes, values) in batches {
                    let values: Vec<&[u8]> = values.iter().map(Bytes::as_ref).collect();
                    // Objects change nothing a reader sees until a ref points at them: a
                    // failed batch is a clean failure, whatever the connection did.
                    client
                        .execute(&statement, &[&hashes, &values])
                        .await
                        .map_err(read_err)?;
                }
                Ok(())
            })
        })
    }

    fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>> {
        Ok(self
            .get_objects(std::slice::from_ref(hash))?
            .pop()
            .flatten())
    }

    fn get_objects(&self, hashes: &[Hash]) -> BackendResult<Vec<Option<Bytes>>> {
        let wanted: Vec<Vec<u8>> = hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
        let order = hashes.to_vec();
        self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT hash, bytes FROM floe_objects WHERE hash = ANY($1::bytea[])",
                    )
                    .await
                    .map_err(read_err)?;
                let rows = client
                    .query(&statement, &[&wanted])
                    .await
                    .map_err(read_err)?;
                let mut found = std::collections::HashMap::with_capacity(rows.len());
                for row in rows {
                    let hash = hash_of(row.get::<_, &[u8]>(0))?;
                    found.insert(hash, Bytes::copy_from_slice(row.get::<_, &[u8]>(1)));
                }
                Ok(order.iter().map(|h| found.get(h).cloned()).collect())
            })
        })
    }

    fn scan_objects(&self, from: &Hash, limit_to: usize) -> BackendResult<Vec<Hash>> {
        let from = from.as_bytes().to_vec();
        self.with_client(move |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT hash FROM floe_objects WHERE hash >= $1 ORDER BY hash LIMIT $2",
                        &[&from, &limit(limit_to)],
                    )
                    .await
                    .map_err(read_err)?;
                rows.iter().map(|r| hash_of(r.get::<_, &[u8]>(0))).collect()
            })
        })
    }

    fn get_ref(&self, name: &RefName, _view: RefView) -> BackendResult<Option<RefRecord>> {
        let name = name.as_str().to_owned();
        self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached("SELECT record FROM floe_refs WHERE name = $1")
                    .await
                    .map_err(read_err)?;
                match client
                    .query_opt(&statement, &[&name])
                    .await
                    .map_err(read_err)?
                {
                    None => Ok(None),
                    Some(row) => Ok(Some(decode_record(row.get(0)).map_err(corrupt)?)),
                }
            })
        })
    }

    fn read_refs_async(&self, names: Vec<RefName>) -> Option<crate::backend::RefsFuture> {
        Some(self.ref_reads.read(names))
    }

    fn list_refs(
        &self,
        after: Option<&RefName>,
        limit_to: usize,
        _view: RefView,
    ) -> BackendResult<Vec<(RefName, RefRecord)>> {
        let after = after.map(|a| a.as_str().to_owned());
        self.with_client(move |client| {
            Box::pin(async move {
                let n = limit(limit_to);
                let rows = match &after {
                Some(after) => client
                    .query(
                        "SELECT name, record FROM floe_refs WHERE name > $1 ORDER BY name LIMIT $2",
                        &[after, &n],
                    )
                    .await,
                None => {
                    client
                        .query(
                            "SELECT name, record FROM floe_refs ORDER BY name LIMIT $1",
                            &[&n],
                        )
                        .await
                }
            }
            .map_err(read_err)?;
                rows.iter()
                    .map(|row| {
                        let name = RefName::parse(row.get::<_, &str>(0))
                            .map_err(|_| BackendError::read("a stored ref name is not valid"))?;
                        Ok((name, decode_record(row.get(1)).map_err(corrupt)?))
                    })
                    .collect()
            })
        })
    }

    fn writes_objects_with_moves(&self) -> bool {
        true
    }

    fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
        self.cas(update)
    }

    fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit_to: usize,
    ) -> BackendResult<Vec<ReflogEntry>> {
        let name = name.map(|n| n.as_str().to_owned());
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        self.with_client(move |client| {
            Box::pin(async move {
            let n = limit(limit_to);
            let rows = match &name {
                Some(name) => client
                    .query(
                        "SELECT seq, entry FROM floe_reflog WHERE ref_name = $1 AND seq < $2 \
                         ORDER BY seq DESC LIMIT $3",
                        &[name, &before, &n],
                    )
                    .await,
                None => client
                    .query(
                        "SELECT seq, entry FROM floe_reflog WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                        &[&before, &n],
                    )
                    .await,
            }
            .map_err(read_err)?;
            rows.iter()
                .map(|row| {
                    let mut entry = decode_entry(row.get(1)).map_err(corrupt)?;
                    entry.seq = row.get::<_, i64>(0) as u64;
                    Ok(entry)
                })
                .collect()
        })
        })
    }

    fn shared_clock(&self, local: Arc<dyn Clock>) -> BackendResult<Option<ClockSample>> {
        // The statement is prepared first, so the sample times one round trip only.
        let clock = local.clone();
        let (sent_ms, row) = self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
                    .await
                    .map_err(read_err)?;
                let sent_ms = clock.now_ms();
                let row = client.query_one(&statement, &[]).await.map_err(read_err)?;
                Ok((sent_ms, row))
            })
        })?;
        Ok(Some(ClockSample {
            sent_ms,
            shared_ms: row.get::<_, i64>(0),
            received_ms: local.now_ms(),
        }))
    }

    fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>> {
        let key = key.to_vec();
        self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached("SELECT value FROM floe_meta WHERE key = $1")
                    .await
                    .map_err(read_err)?;
                Ok(client
                    .query_opt(&statement, &[&key])
                    .await
                    .map_err(read_err)?
                    .map(|row| Bytes::copy_from_slice(row.get::<_, &[u8]>(0))))
            })
        })
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.with_client(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO floe_meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        &[&key, &value],
                    )
                    .await
                    .map_err(write_err)?;
                Ok(())
            })
        })
    }

    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool> {
        let key = key.to_vec();
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.map(<[u8]>::to_vec);
        self.with_client(move |client| {
            Box::pin(async move {
            let rows = match (&expected, &new) {
                (None, Some(new)) => client
                    .execute(
                        "INSERT INTO floe_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                        &[&key, new],
                    )
                    .await,
                (Some(expected), Some(new)) => client
                    .execute(
                        "UPDATE floe_meta SET value = $3 WHERE key = $1 AND value = $2",
                        &[&key, expected, new],
                    )
                    .await,
                (Some(expected), None) => client
                    .execute(
                        "DELETE FROM floe_meta WHERE key = $1 AND value = $2",
                        &[&key, expected],
                    )
                    .await,
                (None, None) => client
                    .execute(
                        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM floe_meta WHERE key = $1)",
                        &[&key],
                    )
                    .await,
            }
            .map_err(write_err)?;
            Ok(rows == 1)
        })
        })
    }

    fn gauges(&self) -> Vec<Gauge> {
        let s = self.pool_status();
        let gauge = |name, help, value: usize| Gauge {
            name,
            help,
            value: value as f64,
        };
        vec![
            gauge(
                "floe_store_pool_connections_max",
                "PostgreSQL connections the pool may open.",
                s.max_size,
            ),
            gauge(
                "floe_store_pool_connections",
                "PostgreSQL connections the pool holds open.",
                s.size,
            ),
            gauge(
                "floe_store_pool_connections_idle",
                "PostgreSQL connections open and free.",
                s.available,
            ),
            gauge(
                "floe_store_pool_waiting",
                "Calls waiting for a PostgreSQL connection (the pool is saturated when above 0).",
                s.waiting,
            ),
            gauge(
                "floe_store_async_ref_reads_total",
                "Ref reads answered without blocking a thread since the server started (reads run inline once their refs are fetched).",
                self.ref_reads.reads() as usize,
            ),
            gauge(
                "floe_store_async_ref_statements_total",
                "Statements those ref reads took: concurrent reads share one sent after they arrived.",
                self.ref_reads.statements() as usize,
            ),
            gauge(
                "floe_store_async_ref_connections_total",
                "Connections those statements were sent on, one at a time (a new one after a failure, at its lifetime, or for another runtime).",
                self.ref_reads.connections() as usize,
            ),
        ]
    }

    fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit_to: usize,
    ) -> BackendResult<Vec<(Bytes, Bytes)>> {
        let lower = prefix.to_vec();
        let after = after.map(<[u8]>::to_vec);
        let upper = successor(prefix);
        self.with_client(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_typed_cached(
                        "SELECT key, value FROM floe_meta WHERE key >= $1 \
                     AND ($2::bytea IS NULL OR key > $2) AND ($3::bytea IS NULL OR key < $3) \
                     ORDER BY key LIMIT $4",
                        &[Type::BYTEA, Type::BYTEA, Type::BYTEA, Type::INT8],
                    )
                    .await
                    .map_err(read_err)?;
                let rows = client
                    .query(&statement, &[&lower, &after, &upper, &limit(limit_to)])
                    .await
                    .map_err(read_err)?;
                Ok(rows
                    .iter()
                    .map(|row| {
                        (
                            Bytes::copy_from_slice(row.get::<_, &[u8]>(0)),
                            Bytes::copy_from_slice(row.get::<_, &[u8]>(1)),
                        )
                    })
                    .collect())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_bound_a_prefix() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_plain_identifier("floe_1"));
        for bad in ["", "1a", "A", "a;drop", "a b", &"x".repeat(64)] {
            assert!(!is_plain_identifier(bad), "{bad:?}");
        }
    }
}
