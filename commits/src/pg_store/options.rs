//! How the PostgreSQL backend connects: its options, its pool (the ref reader makes its
//! own connection, `ref_reads.rs`), and the pool's gauges.

use std::time::Duration;

use std::path::PathBuf;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use super::tls::MakeRustls;
use crate::backend::{BackendError, BackendResult};

/// How a backend connects and how large its pool is.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A `postgres://` URL or a `key=value` connection string (libpq's forms).
    pub url: String,
    /// The schema floe's tables live in (created if missing); `None`: the connection's
    /// default (`public` unless the URL's options say otherwise).
    pub schema: Option<String>,
    /// Connections per server (and one more, the ref reader's). Servers × that must stay
    /// under the database's `max_connections`.
    pub pool_size: usize,
    /// How long a request waits for a free connection, or for a new one, before it fails.
    pub acquire_timeout: Duration,
    /// A statement running longer is cancelled by the server (a clean failure).
    pub statement_timeout: Duration,
    /// A connection older than this is closed instead of reused (below any proxy's idle
    /// cut-off); the ref reader's too.
    pub max_lifetime: Duration,
    /// A PEM file of CA certificates the server's certificate may chain to, beside the
    /// system's (with `sslmode=require` in the URL; `tls.rs`).
    pub ca: Option<PathBuf>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            schema: None,
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(30 * 60),
            ca: None,
        }
    }
}

impl PgOptions {
    /// For tests: the test cluster (`FLOE_TEST_PG`, which `.ci/run` sets; by hand,
    /// `source .ci/pg.sh && pg_up`), in a schema no other call of this process or another
    /// gets, so every test has a catalog of its own.
    pub fn for_test() -> PgOptions {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let url = std::env::var("FLOE_TEST_PG").expect(
            "FLOE_TEST_PG names the test PostgreSQL (.ci/run starts one; by hand: source .ci/pg.sh && pg_up)",
        );
        let mut options = PgOptions::new(url);
        options.pool_size = 4;
        options.schema = Some(format!(
            "t_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        options
    }
}

/// The pool's gauges, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// The TLS the address asks for: rustls with `sslmode=require`, none otherwise (a CA file
/// given without it is refused rather than ignored). Made once for every pool.
pub(super) fn tls_of(
    config: &tokio_postgres::Config,
    options: &PgOptions,
) -> BackendResult<Option<MakeRustls>> {
    let require = config.get_ssl_mode() == SslMode::Require;
    if let Some(ca) = options.ca.as_deref().filter(|_| !require) {
        return Err(BackendError::read(format!(
            "PostgreSQL: a CA file ({}, --store-ca) is used with TLS only: add sslmode=require to the store's address",
            ca.display()
        )));
    }
    require
        .then(|| MakeRustls::new(options.ca.as_deref()))
        .transpose()
}

/// A pool of `size` connections with the backend's settings, over `tls` if any.
pub(super) fn build_pool(
    config: tokio_postgres::Config,
    tls: Option<&MakeRustls>,
    options: &PgOptions,
    size: usize,
) -> BackendResult<Pool> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(config, tls.clone(), manager_config),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    let max_lifetime = options.max_lifetime;
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(options.acquire_timeout))
        .create_timeout(Some(options.acquire_timeout))
        .recycle_timeout(Some(options.acquire_timeout))
        .runtime(Runtime::Tokio1)
        .post_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
            if metrics.age() > max_lifetime {
                Err(deadpool_postgres::HookError::Message(
                    "the connection reached its lifetime".into(),
                ))
            } else {
                Ok(())
            }
        }))
        .build()
        .map_err(|e| BackendError::read(format!("PostgreSQL: cannot build the pool: {e}")))
}
