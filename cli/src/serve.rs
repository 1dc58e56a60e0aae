//! `floe serve`: opens (or creates) the store under the data folder, makes sure `main`
//! exists, serves HTTP until SIGINT or SIGTERM, then flushes and exits 0. If the store is
//! poisoned (a flush or fdatasync failed), it says so and exits 1: nothing is retried.
//!
//! Layout of the data folder: `catalog/` holds the sled store, `warehouse/` the tables'
//! files (the server writes metadata files; clients write data files under each table's
//! location). Run logs join them with a later issue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use floe_catalog::{Catalog, Principal, Retention, Warehouse};
use floe_commits::{Backend, PgOptions, PostgresBackend, SledBackend, Store, SystemClock};

use crate::ServeArgs;

pub fn run(args: ServeArgs) -> ExitCode {
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("floe serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    crate::logs::init(args.log_format)?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        format!(
            "cannot create the data folder {}: {e}",
            args.data_dir.display()
        )
    })?;
    serve_on(args, Backing::open(args)?, &|_| {})
}

/// Where the catalog lives: sled under the data folder (one server), or PostgreSQL
/// (shared by any number of servers).
#[derive(Debug, Clone)]
pub enum Backing {
    Sled(Arc<SledBackend>),
    /// The catalog, and the data folder's lock (sled locks its own folder).
    Postgres {
        backend: Arc<PostgresBackend>,
        _lock: Arc<std::fs::File>,
    },
}

impl Backing {
    pub fn open(args: &ServeArgs) -> Result<Backing, String> {
        match args.store.as_str() {
            "sled" => {
                let dir = args.data_dir.join("catalog");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Ok(Backing::Sled(Arc::new(
                    SledBackend::open(&dir).map_err(|e| e.message)?,
                )))
            }
            url if is_postgres(url) => {
                let lock = lock_data_dir(&args.data_dir)?;
                let mut options = PgOptions::new(url);
                options.schema = Some(args.store_schema.clone());
                options.pool_size = args.store_pool.max(1);
                options.ca = args.store_ca.clone();
                let backend = PostgresBackend::open(&options)
                    .map_err(|e| format!("cannot open the catalog in PostgreSQL: {}", e.message))?;
                Ok(Backing::Postgres {
                    backend: Arc::new(backend),
                    _lock: Arc::new(lock),
                })
            }
            other => Err(format!(
                "--store {other:?} is neither `sled` nor a PostgreSQL address (postgres://user@host/db, or host=... dbname=...)"
            )),
        }
    }

    fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Backing::Sled(b) => b.clone(),
            Backing::Postgres { backend, .. } => backend.clone(),
        }
    }

    /// Whether the store refuses everything (sled after a failed flush). PostgreSQL
    /// reports each failure to its caller and recovers with the database.
    fn is_poisoned(&self) -> bool {
        match self {
            Backing::Sled(b) => b.is_poisoned(),
            Backing::Postgres { .. } => false,
        }
    }

    /// Makes everything acknowledged durable before the process ends (PostgreSQL's
    /// commits are durable when acknowledged).
    fn flush(&self) -> Result<(), String> {
        match self {
            Backing::Sled(b) => b
                .flush()
                .map_err(|e| format!("the final flush failed: {}", e.message)),
            Backing::Postgres { .. } => Ok(()),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Backing::Sled(_) => "",
            Backing::Postgres { .. } => ", catalog in PostgreSQL",
        }
    }
}

/// Locks the data folder for this process (its staging, run scratch and server id are one
/// server's).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, String> {
    let path = dir.join("floe.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "the data folder {} is in use by another floe process (it holds {}); give each server a folder of its own",
            dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// A PostgreSQL address: a URL, or libpq's key=value form.
fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://")
        || store.starts_with("postgresql://")
        || store.split_whitespace().any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, _)| matches!(k, "host" | "dbname" | "user" | "port"))
        })
}

/// Serves a store that is already open until a signal or poisoning stops it. `ready` is
/// told the address once the server serves (after recovery), when it also says so on
/// stdout.
fn serve_on(
    args: &ServeArgs,
    backend: Backing,
    ready: &(dyn Fn(std::net::SocketAddr) + Sync),
) -> Result<(), String> {
    let store = Arc::new(
        Store::open(backend.backend(), Arc::new(SystemClock))
            .map_err(|e| format!("cannot initialize the store: {e}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        // Read once (flags, then the environment and the credentials file): the
        // warehouse and the import prefixes reach S3 alike.
        let s3 = s3_options(args);
        let warehouse = open_warehouse(args, s3.clone()).await?;
        if let Some(p) = args.import_prefixes.iter().find(|p| warehouse.overlaps(p)) {
            return Err(format!(
                "--import-prefix {p} overlaps the warehouse {}: imports would read tables' files past their permissions; name a prefix outside it",
                warehouse.root_url()
            ));
        }
        let mut options = floe_rest::ServerOptions {
            query_timeout: Some(std::time::Duration::from_secs(args.query_timeout.max(1))),
            query_memory_bytes: Some(args.query_memory.max(16) << 20),
            staging_dir: Some(args.data_dir.join("staging")),
            import_roots: args.import_roots.clone(),
            s3_sources: floe_rest::S3Sources::new(&args.import_prefixes, s3)?,
            import_max_bytes: args.import_max_bytes,
            retention: Retention {
                run_branches_ms: args.run_retention,
                run_records_ms: args.run_record_retention,
            },
            runs_dir: Some(args.data_dir.join("runs")),
            max_runs: args.max_runs.max(1),
            run_workers: args.run_workers,
            env_cache: args.env_cache.clone(),
            worker_timeout: std::time::Duration::from_millis(args.worker_timeout.max(1000) as u64),
            run_timeout: std::time::Duration::from_millis(args.run_timeout.max(1000) as u64),
            run_cache_bytes: args.run_cache << 20,
            worker_sandbox: None,
            auth: auth_options(
                args,
                &local,
                Catalog::new(store.clone()).auth_was_on().unwrap_or(false),
            )?,
        };
        if options.auth.required {
            options.auth.oidc = oidc(args).await?;
        }
        // Uploads of imports, and scratch folders of runs, a stopped server left behind
        // (its runs are settled as failed below).
        let _ = std::fs::remove_dir_all(args.data_dir.join("staging"));
        floe_rest::clear_run_scratch(&args.data_dir.join("runs"));
        options.worker_sandbox = worker_sandbox(args)?;
        let server_id = server_id(&args.data_dir)?;
        let mut catalog = Catalog::new(store.clone())
            .with_warehouse(warehouse)
            .with_server_id(&server_id);
        // Alive before recovery looks at other servers' runs (and they at ours).
        let lease_ms = args.server_lease.max(1_000);
        {
            let catalog = catalog.clone();
            tokio::task::spawn_blocking(move || catalog.renew_server_lease(lease_ms))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot write this server's lease: {e}"))?;
        }
        if options.auth.required {
            let seed = match &args.policy {
                Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
                    format!("cannot read the policy {}: {e}", file.display())
                })?),
                None => None,
            };
            if args.policy.is_some() && catalog.policy_stored().unwrap_or(false) {
                tracing::warn!("--policy is ignored: the catalog keeps a policy already (floe policy set replaces it)");
            }
            let with_rules = catalog.clone();
            catalog = tokio::task::spawn_blocking(move || with_rules.with_rules(seed.as_deref()))
                .await
                .map_err(|e| format!("loading the policy failed: {e}"))?
                .map_err(|e| format!("loading the policy failed: {e}"))?;
            if options.worker_sandbox.is_some() {
                catalog = catalog.with_confined_runs();
            } else {
                tracing::warn!(
                    "run workers are not confined on this host: starting a run needs `manage` (see --worker-user)"
                );
            }
            if let Some(role) = &options.auth.anonymous_role {
                if role == floe_catalog::ADMIN {
                    return Err("--anonymous admin would make every request without a token an admin; name a role of the policy".to_owned());
                }
                if !catalog.policy_defines(role) {
                    return Err(format!(
                        "--anonymous {role}: the policy defines no role {role:?} (floe policy show)"
                    ));
                }
            }
        }
        let settled = {
            let catalog = catalog.clone();
            tokio::task::spawn_blocking(move || catalog.recover_runs(&server_principal()))
                .await
                .map_err(|e| format!("recovering runs failed: {e}"))?
                .map_err(|e| format!("recovering runs failed: {e}"))?
        };
        let maintenance = tokio::spawn(maintain(
            catalog.clone(),
            options.retention,
            std::time::Duration::from_millis(args.maintenance_interval.max(1_000) as u64),
            args.data_dir.join("runs"),
        ));
        let heartbeat = tokio::spawn(renew_lease(catalog.clone(), lease_ms));
        let app = floe_rest::router_with(catalog, &options);
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::config(cert, key)?),
            _ => None,
        };
        println!(
            "floe {} listening on {}://{local}, data in {}{}",
            env!("CARGO_PKG_VERSION"),
            if tls.is_some() { "https" } else { "http" },
            absolute(&args.data_dir).display(),
            backend.describe()
        );
        ready(local);
        for run in settled {
            tracing::warn!(run = %run.id, source = %run.source, state = ?run.state, "a run was left running by a stopped server; recovered");
        }
        let (stop, stopped) = tokio::sync::watch::channel(None::<Stop>);
        let watcher = tokio::spawn(watch(backend.clone(), stop));
        let mut until = stopped.clone();
        let stopping = async move {
            let _ = until.wait_for(Option::is_some).await;
        };
        let served = match tls {
            Some(config) => {
                let listener = crate::tls::TlsListener::new(listener, config)
                    .map_err(|e| format!("cannot serve TLS: {e}"))?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
            None => {
                // No Nagle delay: a streamed answer's small writes go out at once.
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
        };
        served.map_err(|e| format!("the server failed: {e}"))?;
        watcher.abort();
        maintenance.abort();
        heartbeat.abort();
        let why = *stopped.borrow();
        match why {
            Some(Stop::Poisoned) => Err(
                "the store is poisoned (a flush or fdatasync failed); exiting without retrying. \
                 Restart floe to recover everything that was acknowledged"
                    .to_owned(),
            ),
            _ => Ok(()),
        }
    })?;
    drop(store);
    backend.flush()?;
    println!("floe stopped; everything acknowledged is on disk");
    Ok(())
}

/// The periodic maintenance pass (retention): every `interval`, sooner while a pass says it
/// has more to do. A failed pass is reported and retried at the next interval.
async fn maintain(
    catalog: Catalog,
    retention: Retention,
    interval: std::time::Duration,
    runs_dir: std::path::PathBuf,
) {
    let server = server_principal();
    // Recovery settled what a stop left behind; the first pass waits an interval, so a
    // pass never races a test or an operator who just started the server.
    tokio::time::sleep(interval).await;
    loop {
        let (catalog, server) = (catalog.clone(), server.clone());
        // The pass's own error, or its task's (a panic), said the same way.
        let runs = runs_dir.clone();
        let lease_ms = (interval.as_millis() as i64).saturating_mul(3);
        let pass = tokio::task::spawn_blocking(move || {
            // Logs and code snapshots (in this server's folder) go with their run's
            // record, on every server.
            if let Err(e) = floe_rest::sweep_run_files(&catalog, &server, &runs) {
                tracing::error!(error = %e, "removing the files of forgotten runs failed; the next pass tries again");
            }
            // Servers sharing the catalog take turns: one pass at a time.
            if !catalog.take_maintenance_lease(lease_ms)? {
                return Ok(floe_catalog::RetentionReport::default());
            }
            catalog.maintain(&server, &retention)
        })
            .await
            .map_err(|e| e.to_string())
            .and_then(|pass| pass.map_err(|e| e.to_string()));
        let more = match pass {
            Ok(report) => {
                if report != floe_catalog::RetentionReport::default() {
                    tracing::info!(
                        settled_runs = report.settled_runs,
                        pruned_run_branches = report.pruned_run_branches,
                        expired_run_records = report.expired_run_records,
                        expired_idempotency_records = report.expired_idempotency_records,
                        removed_server_leases = report.removed_server_leases,
                        more = report.more,
                        "maintenance pass"
                    );
                }
                report.more
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?interval, "maintenance failed; it runs again after the interval");
                false
            }
        };
        if !more {
            tokio::time::sleep(interval).await;
        }
    }
}

/// Renews this server's lease every third of it. A failed renewal is logged and tried
/// again; other servers settle this one's runs only once the lease has run out.
async fn renew_lease(catalog: Catalog, lease_ms: i64) {
    let every = std::time::Duration::from_millis((lease_ms / 3).max(100) as u64);
    loop {
        tokio::time::sleep(every).await;
        let catalog = catalog.clone();
        match tokio::task::spawn_blocking(move || catalog.renew_server_lease(lease_ms)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "renewing this server's lease failed; trying again")
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing this server's lease failed; trying again")
            }
        }
    }
}

/// This server's id, kept in the data folder (`server-id`): a restart over the same
/// folder is the same server, whose earlier life's runs it settles at once; a new folder
/// is a new server. The folder is locked for as long as the server runs, so two servers
/// never share an id.
fn server_id(data_dir: &Path) -> Result<String, String> {
    let file = data_dir.join("server-id");
    if let Ok(id) = std::fs::read_to_string(&file)
        && let Ok(id) = uuid::Uuid::try_parse(id.trim())
    {
        return Ok(id.to_string());
    }
    let id = uuid::Uuid::now_v7().to_string();
    std::fs::write(&file, &id).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(id)
}

/// The server's own principal, for recovery and maintenance: every permission (no token
/// can name this principal with the admin role unless an admin gives it one).
fn server_principal() -> Principal {
    Principal::named("floe").with_roles([floe_catalog::ADMIN.to_owned()])
}

/// Why the server stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Signal,
    Poisoned,
}

/// Ends the server on SIGINT or SIGTERM, or as soon as the store is poisoned.
async fn watch(backend: Backing, stop: tokio::sync::watch::Sender<Option<Stop>>) {
    let poisoned = async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        while !backend.is_poisoned() {
            every.tick().await;
        }
    };
    let why = tokio::select! {
        () = shutdown_signal() => Stop::Signal,
        () = poisoned => Stop::Poisoned,
    };
    let _ = stop.send(Some(why));
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// How the server authenticates: `--auth` (default off on a loopback address, required on
/// any other or once the catalog has had tokens), the admin token (`--admin-token-file`, else `FLOE_ADMIN_TOKEN`) and
/// `--anonymous`. Tokens over plain HTTP off loopback are refused without `--insecure-http`.
fn auth_options(
    args: &ServeArgs,
    local: &std::net::SocketAddr,
    had_auth: bool,
) -> Result<floe_rest::auth::AuthOptions, String> {
    let loopback = local.ip().is_loopback();
    // A catalog that has had tokens stays locked unless told otherwise.
    let required = match args.auth {
        Some(crate::AuthMode::Required) => true,
        Some(crate::AuthMode::Off) => false,
        None => !loopback || had_auth,
    };
    if !required && had_auth {
        tracing::warn!(
            "--auth off on a catalog that has tokens and a policy: every request is the anonymous admin"
        );
    }
    if !required && !loopback {
        tracing::warn!(addr = %local, "--auth off on a non-loopback address: anyone who reaches it may do anything");
    }
    if !required && args.anonymous.is_some() {
        tracing::warn!("--anonymous has no effect with auth off");
    }
    if required && !loopback && !args.insecure_http && args.tls_cert.is_none() {
        return Err(format!(
            "tokens would travel in clear text on {local}: serve HTTPS (--tls-cert and --tls-key), or behind a TLS proxy with --insecure-http, or listen on a loopback address"
        ));
    }
    let admin_token = match &args.admin_token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the admin token file {}: {e}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("FLOE_ADMIN_TOKEN").ok(),
    }
    .filter(|t| !t.is_empty());
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        return Err("the admin token is too short: use at least 16 characters (such as `openssl rand -hex 32`)".to_owned());
    }
    if required && admin_token.is_none() {
        tracing::warn!(
            "auth is required and no admin token is set (FLOE_ADMIN_TOKEN): only tokens made earlier work"
        );
    }
    if !required && args.oidc_issuer.is_some() {
        tracing::warn!("--oidc-issuer has no effect with auth off");
    }
    Ok(floe_rest::auth::AuthOptions {
        required,
        admin_token,
        anonymous_role: args.anonymous.clone(),
        oidc: None,
    })
}

/// The OIDC issuer of `--oidc-issuer`, its keys fetched (or, if it cannot be reached, said
/// so: its tokens wait for it).
async fn oidc(args: &ServeArgs) -> Result<Option<Arc<floe_rest::auth::Oidc>>, String> {
    let (Some(issuer), Some(audience)) = (&args.oidc_issuer, &args.oidc_audience) else {
        return Ok(None);
    };
    let url = issuer.parse::<axum::http::Uri>().ok();
    let host = url.as_ref().and_then(|u| u.host()).unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.as_ref().and_then(|u| u.scheme_str()) {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => {
            return Err(format!(
                "--oidc-issuer {issuer}: the issuer must be an https:// URL (http:// only on loopback)"
            ));
        }
    }
    if audience.is_empty() {
        return Err("--oidc-audience may not be empty".to_owned());
    }
    let options = floe_rest::auth::OidcOptions {
        issuer: issuer.clone(),
        audience: audience.clone(),
        principal_claim: args.oidc_principal_claim.clone(),
        groups_claim: args.oidc_groups_claim.clone(),
        // At least a second: a stream of made-up key ids must not become a stream of fetches.
        refetch_cooldown: std::time::Duration::from_millis(
            args.oidc_jwks_cooldown.max(1_000) as u64
        ),
    };
    Ok(Some(Arc::new(floe_rest::auth::Oidc::start(options).await?)))
}

/// How the server reaches S3 (its warehouse, its import prefixes): `--s3-*`, then the
/// standard AWS environment.
fn s3_options(args: &ServeArgs) -> floe_catalog::s3::S3Options {
    floe_catalog::s3::S3Options {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        path_style: args.s3_path_style,
        access_key_id: args.s3_access_key_id.clone(),
        secret_access_key: args.s3_secret_access_key.clone(),
        session_token: None,
    }
    .with_environment()
}

/// How the warehouse vends credentials (`--vend-credentials`).
enum Vend {
    Static(floe_catalog::s3::S3Options),
    Sts(floe_catalog::sts::Sts),
}

/// The warehouse `--warehouse` names (default `<data-dir>/warehouse`); on S3, checked to
/// refuse a second create of one name unless told to run without.
async fn open_warehouse(
    args: &ServeArgs,
    options: floe_catalog::s3::S3Options,
) -> Result<Warehouse, String> {
    let Some(url) = args.warehouse.clone() else {
        return Warehouse::open(&args.data_dir.join("warehouse"))
            .map_err(|e| format!("cannot open the warehouse folder: {e}"));
    };
    let unsafe_ok = args.s3_unsafe_no_conditional_put;
    let vend = match args.vend_credentials {
        crate::VendMode::Off => None,
        crate::VendMode::Sts => {
            let Some(role_arn) = args.sts_role_arn.clone() else {
                return Err(
                    "--vend-credentials sts needs --sts-role-arn (the role it assumes)".to_owned(),
                );
            };
            let region = options.region().to_owned();
            let endpoint = args
                .sts_endpoint
                .clone()
                .or_else(|| options.endpoint.clone())
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            let sts = floe_catalog::sts::Sts::new(floe_catalog::sts::StsOptions {
                endpoint,
                region,
                role_arn,
                caller: options.clone(),
                put_if_absent: args.sts_put_if_absent,
            })?;
            Some(Vend::Sts(sts))
        }
        crate::VendMode::Static => {
            let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            match (var("FLOE_VEND_ACCESS_KEY_ID"), var("FLOE_VEND_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Some(Vend::Static(floe_catalog::s3::S3Options {
                    access_key_id: Some(id),
                    secret_access_key: Some(secret),
                    session_token: var("FLOE_VEND_SESSION_TOKEN"),
                    ..Default::default()
                })),
                _ => return Err("--vend-credentials static needs FLOE_VEND_ACCESS_KEY_ID and FLOE_VEND_SECRET_ACCESS_KEY".to_owned()),
            }
        }
    };
    tokio::task::spawn_blocking(move || {
        let mut warehouse = Warehouse::open_url(&url, options)
            .map_err(|e| format!("cannot open the warehouse {url}: {e}"))?;
        if let Some(vend) = vend {
            if warehouse.local_root().is_some() {
                return Err("--vend-credentials is for a warehouse on S3".to_owned());
            }
            warehouse = match vend {
                Vend::Static(keys) => warehouse.vending(keys),
                Vend::Sts(sts) => warehouse.vending_sts(sts),
            };
        }
        if warehouse.local_root().is_none() {
            match warehouse.probe_conditional_create(uuid::Uuid::now_v7()) {
                Ok(true) => {}
                Ok(false) if unsafe_ok => tracing::warn!(
                    "the store replaces a file created twice: two writers could replace each other's metadata files (--s3-unsafe-no-conditional-put)"
                ),
                Ok(false) => {
                    return Err(format!(
                        "the store at {url} replaces a file created twice (no If-None-Match: *), so two writers could replace each other's metadata files; use a store that supports conditional writes, or accept the risk with --s3-unsafe-no-conditional-put"
                    ));
                }
                Err(e) => return Err(format!("cannot write to the warehouse {url}: {e}")),
            }
        }
        Ok(warehouse)
    })
    .await
    .map_err(|e| format!("opening the warehouse failed: {e}"))?
}

/// How Python workers are confined: as `--worker-user`, in namespaces of their own, where
/// this host can (probed now); `None`, said in the log, where it cannot.
fn worker_sandbox(args: &ServeArgs) -> Result<Option<floe_rest::sandbox::Sandbox>, String> {
    // This very binary, even if the file was replaced since it started.
    let launcher = PathBuf::from("/proc/self/exe");
    // What no worker may see, wherever it lies.
    let hidden: Vec<PathBuf> = [Some(&args.data_dir), args.admin_token_file.as_ref()]
        .into_iter()
        .chain([args.tls_key.as_ref(), args.tls_cert.as_ref()])
        .flatten()
        .cloned()
        .collect();
    if let Err(why) = floe_rest::sandbox::possible() {
        tracing::warn!("run workers cannot be confined on this host: {why}");
        return Ok(None);
    }
    let user = args.worker_user.as_deref().unwrap_or("nobody");
    let sandbox = match floe_rest::sandbox::Sandbox::new(launcher, user, &hidden) {
        Ok(s) => s,
        // A user asked for must work; the default may be missing (a minimal image).
        Err(e) if args.worker_user.is_some() => return Err(e),
        Err(e) => {
            tracing::warn!("run workers cannot be confined on this host: {e}");
            return Ok(None);
        }
    };
    let runs = args.data_dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| format!("cannot make {}: {e}", runs.display()))?;
    match sandbox.probe(&runs) {
        Ok(()) => {
            tracing::info!(user, uid = sandbox.uid, "run workers are confined");
            Ok(Some(sandbox))
        }
        Err(why) => {
            tracing::warn!("run workers cannot be confined on this host: {why}");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
    use floe_commits::{CommitMeta, Content, ContentId, ContentKey, Expect, Op, RefName, WriteCtx};

    use super::*;

    /// Fails every fdatasync once armed.
    #[derive(Debug, Default)]
    struct FailingDisk {
        armed: AtomicBool,
    }

    impl DurabilityHook for FailingDisk {
        fn event(&self, _: DurabilityEvent) {}
        fn sync_fault(&self) -> Option<String> {
            self.armed
                .load(Ordering::SeqCst)
                .then(|| "injected EIO".to_owned())
        }
    }

    #[test]
    fn a_poisoned_store_stops_the_server_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(FailingDisk::default());
        let backend = Arc::new(
            SledBackend::open_with(&dir.path().join("catalog"), Some(disk.clone())).unwrap(),
        );
        let args = ServeArgs {
            addr: "127.0.0.1:0".to_owned(),
            data_dir: dir.path().to_owned(),
            store: "sled".to_owned(),
            store_schema: "public".to_owned(),
            store_pool: 16,
            store_ca: None,
            query_timeout: 300,
            query_memory: 1024,
            import_roots: Vec::new(),
            import_prefixes: Vec::new(),
            sts_role_arn: None,
            sts_endpoint: None,
            sts_put_if_absent: false,
            import_max_bytes: floe_rest::IMPORT_BYTES_MAX,
            run_retention: 0,
            run_record_retention: 0,
            maintenance_interval: 60_000,
            server_lease: 30_000,
            max_runs: 2,
            run_workers: None,
            worker_timeout: 3_600_000,
            run_timeout: 86_400_000,
            run_cache: 1024,
            env_cache: None,
            warehouse: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_unsafe_no_conditional_put: false,
            vend_credentials: crate::VendMode::Off,
            worker_user: None,
            auth: None,
            policy: None,
            admin_token_file: None,
            anonymous: None,
            insecure_http: false,
            tls_cert: None,
            tls_key: None,
            oidc_issuer: None,
            oidc_audience: None,
            oidc_principal_claim: "sub".to_owned(),
            oidc_groups_claim: None,
            oidc_jwks_cooldown: 10_000,
            log_format: crate::logs::LogFormat::Text,
        };
        let (serving, ready) = std::sync::mpsc::channel();
        let server = {
            let backend = backend.clone();
            std::thread::spawn(move || {
                let serving = std::sync::Mutex::new(serving);
                serve_on(&args, Backing::Sled(backend), &|addr| {
                    let _ = serving.lock().unwrap().send(addr);
                })
            })
        };
        // Once the server serves, a second handle on the same backend writes while the
        // disk fails.
        ready.recv().expect("the server starts serving");
        let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
        disk.armed.store(true, Ordering::SeqCst);
        let op = Op::Put {
            key: ContentKey::new(["ns"]).unwrap(),
            content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
            expect: Expect::Absent,
        };
        let write = store.commit(
            &RefName::parse("main").unwrap(),
            None,
            vec![op],
            CommitMeta::new("t", "ns", 0),
            &WriteCtx::principal("t"),
        );
        assert!(
            write.is_err(),
            "a write whose fdatasync failed is not acknowledged"
        );
        let outcome = server.join().unwrap();
        let message = outcome.expect_err("a poisoned store ends serve with an error");
        assert!(message.contains("poisoned"), "{message}");
        assert!(message.contains("without retrying"), "{message}");
    }
}
