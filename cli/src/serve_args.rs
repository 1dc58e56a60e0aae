//! `floe serve`'s flags (split from `main.rs`, which keeps the client verbs).

use std::path::PathBuf;

use clap::ValueEnum;

use crate::{duration_ms, logs};

/// `floe serve --vend-credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VendMode {
    Off,
    Static,
    Sts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Off,
    Required,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FLOE_ADDR", default_value = "127.0.0.1:8181")]
    pub addr: String,
    /// Folder that holds everything the server keeps (created on first start).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "./floe-data")]
    pub data_dir: PathBuf,
    /// Where the catalog (refs, commits, meta) lives: `sled` (the default, under the data
    /// folder) or a PostgreSQL database, `postgres://user@host/db` or `host=... dbname=...`,
    /// which several servers may share.
    #[arg(
        long,
        env = "FLOE_STORE",
        default_value = "sled",
        hide_env_values = true
    )]
    pub store: String,
    /// The PostgreSQL schema floe's tables live in (created if missing).
    #[arg(long, env = "FLOE_STORE_SCHEMA", default_value = "public")]
    pub store_schema: String,
    /// Connections to PostgreSQL per server (servers x this must stay under the database's
    /// max_connections).
    #[arg(long, env = "FLOE_STORE_POOL", default_value_t = 16)]
    pub store_pool: usize,
    /// A PEM file of CA certificates PostgreSQL's certificate may chain to, beside the
    /// system's. With `sslmode=require` in --store every connection is encrypted and the
    /// server's certificate and name verified; without it, no TLS.
    #[arg(long, env = "FLOE_STORE_CA", value_name = "PEM")]
    pub store_ca: Option<PathBuf>,
    /// The longest a query may run, in seconds.
    #[arg(long, env = "FLOE_QUERY_TIMEOUT", default_value_t = 300)]
    pub query_timeout: u64,
    /// The memory one query may use (sorts, joins, aggregates), in MiB.
    #[arg(long, env = "FLOE_QUERY_MEMORY", default_value_t = 1024)]
    pub query_memory: usize,
    /// A folder whose files `floe import` may name on the server's side (repeatable).
    #[arg(long = "import-root", value_name = "DIR")]
    pub import_roots: Vec<PathBuf>,
    /// An S3 prefix (`s3://bucket/prefix`) whose objects `floe import s3://...` may name,
    /// read with the server's S3 credentials and `--s3-*` options (repeatable).
    #[arg(long = "import-prefix", value_name = "S3_URL")]
    pub import_prefixes: Vec<String>,
    /// The most one import may upload, in bytes.
    #[arg(long, env = "FLOE_IMPORT_MAX_BYTES", default_value_t = floe_rest::IMPORT_BYTES_MAX)]
    pub import_max_bytes: u64,
    /// How long a failed run's branch stays (sealed) before it is pruned: 30s, 15m, 12h, 7d.
    #[arg(long, env = "FLOE_RUN_RETENTION", default_value = "7d", value_parser = duration_ms)]
    pub run_retention: i64,
    /// How long a finished run's record (and its stored answer) is kept.
    #[arg(long, env = "FLOE_RUN_RECORD_RETENTION", default_value = "30d", value_parser = duration_ms)]
    pub run_record_retention: i64,
    /// How often the server runs its maintenance pass (retention of run branches, run
    /// records and idempotency records).
    #[arg(long, env = "FLOE_MAINTENANCE_INTERVAL", default_value = "5m", value_parser = duration_ms)]
    pub maintenance_interval: i64,
    /// How long this server's lease in the catalog lasts (renewed every third of it):
    /// when servers share a catalog, another server settles this one's runs this long
    /// after it stopped renewing.
    #[arg(long, env = "FLOE_SERVER_LEASE", default_value = "30s", value_parser = duration_ms)]
    pub server_lease: i64,
    /// Pipeline runs executing at once; more wait, queued, in order.
    #[arg(long, env = "FLOE_MAX_RUNS", default_value_t = floe_rest::RUNS_RUNNING_DEFAULT)]
    pub max_runs: usize,
    /// Nodes of one run executing at once (default: the cores).
    #[arg(long, env = "FLOE_RUN_WORKERS")]
    pub run_workers: Option<usize>,
    /// A Python worker's timeout when its function sets none (`@resources(timeout=)`).
    #[arg(long, env = "FLOE_WORKER_TIMEOUT", default_value = "1h", value_parser = duration_ms)]
    pub worker_timeout: i64,
    /// A run's deadline when it sets none (`floe run --timeout`), and the longest it may
    /// set: past it the run is cancelled.
    #[arg(long, env = "FLOE_RUN_TIMEOUT", default_value = "1d", value_parser = duration_ms)]
    pub run_timeout: i64,
    /// The disk the runs' results cache may use, in MiB (0: no cache); the least recently
    /// used outputs go first.
    #[arg(long, env = "FLOE_RUN_CACHE", default_value_t = floe_rest::RUN_CACHE_BYTES_DEFAULT >> 20)]
    pub run_cache: u64,
    /// Where tables live: a folder (a path or file:// URL; default `<data-dir>/warehouse`)
    /// or `s3://bucket/prefix` on any S3-compatible store.
    #[arg(long, env = "FLOE_WAREHOUSE", value_name = "URL")]
    pub warehouse: Option<String>,
    /// The S3 endpoint (an S3-compatible store's URL; AWS's when absent).
    #[arg(long, env = "FLOE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The S3 region (else AWS_REGION; us-east-1).
    #[arg(long, env = "FLOE_S3_REGION")]
    pub s3_region: Option<String>,
    /// Name buckets in the path rather than the host (most S3-compatible stores).
    #[arg(long, env = "FLOE_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// The S3 access key id (else AWS_ACCESS_KEY_ID); never logged.
    #[arg(long, env = "FLOE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// The S3 secret key (else AWS_SECRET_ACCESS_KEY); never logged.
    #[arg(long, env = "FLOE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Hand engines that ask (`X-Iceberg-Access-Delegation: vended-credentials`) S3
    /// credentials with loadTable: `static` gives FLOE_VEND_ACCESS_KEY_ID /
    /// FLOE_VEND_SECRET_ACCESS_KEY (unscoped: every table's files, so only to managers of
    /// the catalog); `sts` gives temporary keys from STS AssumeRole of --sts-role-arn,
    /// scoped to the table's location and read-only unless the principal may write the
    /// branch.
    #[arg(long, env = "FLOE_VEND_CREDENTIALS", value_enum, default_value = "off")]
    pub vend_credentials: VendMode,
    /// The role `--vend-credentials sts` assumes (its session policy narrows it per table).
    #[arg(long, env = "FLOE_STS_ROLE_ARN", value_name = "ARN")]
    pub sts_role_arn: Option<String>,
    /// STS's URL (default: --s3-endpoint, else AWS's STS of --s3-region).
    #[arg(long, env = "FLOE_STS_ENDPOINT", value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Vended write credentials may only create objects (`If-None-Match: *`), on stores that
    /// enforce the `s3:if-none-match` condition; engines must send it.
    #[arg(long)]
    pub sts_put_if_absent: bool,
    /// Run on a store that replaces a file created twice (no `If-None-Match: *`): two
    /// writers could then replace each other's metadata files.
    #[arg(long)]
    pub s3_unsafe_no_conditional_put: bool,
    /// Where Python worker environments are cached (shared across data folders).
    #[arg(long, env = "FLOE_ENV_CACHE")]
    pub env_cache: Option<std::path::PathBuf>,
    /// The unprivileged user Python workers run as (a name, or UID[:GID]), each in
    /// namespaces of its own seeing only its folder, the run's inputs and its environment
    /// (needs a server running as root; otherwise starting a run needs `manage`). Default:
    /// `nobody` where the host has it (a user of floe's own is better).
    #[arg(long, env = "FLOE_WORKER_USER", value_name = "USER")]
    pub worker_user: Option<String>,
    /// Whether requests need a token: `off` (everyone is the anonymous admin; the default
    /// on a loopback address) or `required` (the default on any other, and on a catalog
    /// that has had tokens).
    #[arg(long, env = "FLOE_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// A policy file (TOML) that seeds the catalog's policy on its first start with auth.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A file holding the bootstrap admin token (else FLOE_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The role of requests without a token when auth is required (default: refused).
    #[arg(long, value_name = "ROLE")]
    pub anonymous: Option<String>,
    /// Serve tokens over plain HTTP on a non-loopback address (behind a TLS proxy).
    #[arg(long)]
    pub insecure_http: bool,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept JWTs of this OpenID Connect issuer (its URL exactly as tokens name it in
    /// `iss`; needs --oidc-audience).
    #[arg(
        long,
        env = "FLOE_OIDC_ISSUER",
        value_name = "URL",
        requires = "oidc_audience"
    )]
    pub oidc_issuer: Option<String>,
    /// The audience an OIDC token must name in `aud`.
    #[arg(long, env = "FLOE_OIDC_AUDIENCE", value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// The claim of an OIDC token that names its principal.
    #[arg(long, value_name = "CLAIM", default_value = "sub")]
    pub oidc_principal_claim: String,
    /// The claim of an OIDC token whose values are groups the policy's [groups] maps to
    /// roles (such as `groups` or `roles`).
    #[arg(long, value_name = "CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// The least time between two fetches of the issuer's keys that tokens naming an
    /// unknown key cause.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration_ms)]
    pub oidc_jwks_cooldown: i64,
    /// How the server logs to standard error (filtered by FLOE_LOG or RUST_LOG, default info).
    #[arg(long, env = "FLOE_LOG_FORMAT", value_enum, default_value_t = logs::LogFormat::Text)]
    pub log_format: logs::LogFormat,
}
