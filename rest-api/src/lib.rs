//! floe-rest: floe's only HTTP crate (DESIGN §1, §3, §4).
//!
//! - `v1`: floe's own API under `/api/v1` (refs, history, namespaces, merges), described
//!   with utoipa and served as `/api/v1/openapi.json`;
//! - `error`: the one error table (status, floe type, Iceberg exception) and the rendering
//!   of an error for the API a request came in through;
//! - `write`: the write path every mutating handler shares (principal, idempotency, the
//!   blocking task the store call runs in);
//! - `metrics`: Prometheus counters and histograms at `/metrics`.
//!
//! Every request runs under `catch_unwind`, and store work in a blocking task, so a panic
//! anywhere in a handler is a 500 with an error id, never a dead connection or server. The crate reaches the version store
//! only through `floe-catalog`, whose entry points authorize; from `floe-commits` it uses
//! types only (a tidy test forbids calling its operations). `iceberg` serves the Iceberg
//! REST catalog under `/iceberg`.

pub mod auth;
pub mod error;
pub mod extract;
pub mod iceberg;
pub mod metrics;
pub mod v1;
pub mod wire;
pub mod write;

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use floe_catalog::Catalog;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tracing::Instrument;

use crate::error::{AnsweredError, Api, ApiError, ErrorKind};
use crate::metrics::Metrics;

/// Request bodies larger than this are refused with 413.
pub const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What every handler holds: one pointer, cloned for each request (the state itself is
/// shared, so a request costs one reference count, not one per part).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of `AppState`.
#[derive(Debug)]
pub struct Shared {
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Authentication's own state (`auth.rs`): its layer holds only this.
    pub auth: Arc<auth::AuthState>,
    /// Idempotency keys whose first request is still running in this server (servers
    /// sharing a catalog also claim each key in the store: `Catalog::claim_key`).
    pub in_flight: Arc<Mutex<HashSet<String>>>,
    /// Store work running at once. The warehouse's object store does its file I/O on the
    /// same blocking pool the requests run on: without a bound below the pool's size, a
    /// burst of requests could hold every thread while their inner I/O waits for one.
    pub permits: Arc<tokio::sync::Semaphore>,
    /// Queries over the catalog, with the server's limits.
    #[cfg(feature = "compute")]
    pub query: floe_compute::QueryEngine,
    #[cfg(feature = "compute")]
    pub importer: floe_compute::Importer,
    /// Pipeline runs (`floe run`).
    #[cfg(feature = "compute")]
    pub runner: floe_compute::Runner,
    pub options: Arc<ServerOptions>,
}

/// How a server is set up beyond its catalog (flags of `floe serve`).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Limits of every query (`None`: the defaults).
    pub query_timeout: Option<std::time::Duration>,
    pub query_memory_bytes: Option<usize>,
    /// Where uploads wait while an import runs (default: the system's temporary folder).
    pub staging_dir: Option<std::path::PathBuf>,
    /// Folders whose files imports may name on the server's side (none by default).
    pub import_roots: Vec<std::path::PathBuf>,
    /// S3 prefixes whose objects imports may name (`--import-prefix`; none by default),
    /// and how to reach their store.
    #[cfg(feature = "compute")]
    pub s3_sources: floe_compute::s3_sources::S3Sources,
    /// The most one import may upload.
    pub import_max_bytes: u64,
    /// How long runs' leftovers are kept (the maintenance pass).
    pub retention: floe_catalog::Retention,
    /// Where runs keep their logs, code snapshots and scratch folders (default: a
    /// `floe-runs` folder in the system's temporary folder; `floe serve` uses
    /// `<data-dir>/runs`).
    pub runs_dir: Option<std::path::PathBuf>,
    /// Pipeline runs executing at once (`--max-runs`); more wait `queued`, in order.
    pub max_runs: usize,
    /// Nodes of one run executing at once (`--run-workers`; default: the cores).
    pub run_workers: Option<usize>,
    /// Where Python worker environments are cached (default `$FLOE_ENV_CACHE`, else
    /// `~/.cache/floe/envs`).
    pub env_cache: Option<std::path::PathBuf>,
    /// A Python worker's timeout when its function sets none (`--worker-timeout`).
    pub worker_timeout: std::time::Duration,
    /// A run's deadline when it sets none, and the longest it may set (`--run-timeout`).
    pub run_timeout: std::time::Duration,
    /// The bytes the runs' results cache may hold (`--run-cache`; 0: no cache).
    pub run_cache_bytes: u64,
    /// How requests are authenticated (`--auth`, `FLOE_ADMIN_TOKEN`, `--anonymous`).
    pub auth: auth::AuthOptions,
    /// How Python workers are confined (`--worker-user`); `None` where the host cannot.
    #[cfg(feature = "compute")]
    pub worker_sandbox: Option<floe_compute::runs::Sandbox>,
}

/// A run's deadline by default (a day).
pub const RUN_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The bytes the runs' results cache holds by default (1 GiB).
pub const RUN_CACHE_BYTES_DEFAULT: u64 = 1 << 30;

/// A Python worker's timeout by default (one hour).
pub const WORKER_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Bytes one import may upload by default (10 GiB).
pub const IMPORT_BYTES_MAX: u64 = 10 << 30;

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            query_timeout: None,
            query_memory_bytes: None,
            staging_dir: None,
            import_roots: Vec::new(),
            #[cfg(feature = "compute")]
            s3_sources: Default::default(),
            import_max_bytes: IMPORT_BYTES_MAX,
            retention: floe_catalog::Retention::default(),
            runs_dir: None,
            max_runs: RUNS_RUNNING_DEFAULT,
            run_workers: None,
            env_cache: None,
            worker_timeout: WORKER_TIMEOUT_DEFAULT,
            run_timeout: RUN_TIMEOUT_DEFAULT,
            run_cache_bytes: RUN_CACHE_BYTES_DEFAULT,
            auth: auth::AuthOptions::default(),
            #[cfg(feature = "compute")]
            worker_sandbox: None,
        }
    }
}

/// Removes the run logs and code snapshots under `runs_dir` that no run record names any
/// more (the periodic maintenance pass; `POST /api/v1/maintenance` does it too).
#[cfg(feature = "compute")]
pub fn sweep_run_files(
    catalog: &Catalog,
    principal: &floe_catalog::Principal,
    runs_dir: &std::path::Path,
) -> Result<(usize, usize), String> {
    floe_compute::runs::sweep(catalog, principal, runs_dir)
        .map(|s| (s.logs, s.code_snapshots))
        .map_err(|e| e.to_string())
}

/// Removes the scratch folders of the runs folder `runs_dir` a stopped server left behind
/// (at start: its runs are settled as failed).
#[cfg(feature = "compute")]
pub fn clear_run_scratch(runs_dir: &std::path::Path) {
    floe_compute::runs::clear_scratch(runs_dir);
}

/// How workers are confined (`floe serve --worker-user`), and the launcher's entry point.
#[cfg(feature = "compute")]
pub use floe_compute::runs::sandbox;
#[cfg(feature = "compute")]
pub use floe_compute::s3_sources::S3Sources;

/// Pipeline runs executing at once when the server sets none.
pub const RUNS_RUNNING_DEFAULT: usize = 2;

/// Requests doing store work at once (tokio's blocking pool has 512 threads).
pub const CONCURRENT_STORE_WORK_MAX: usize = 256;

/// The whole HTTP surface of a floe server.
pub fn router(catalog: Catalog) -> Router {
    router_with(catalog, &ServerOptions::default())
}

/// The whole HTTP surface, set up by `options`.
pub fn router_with(catalog: Catalog, options: &ServerOptions) -> Router {
    let state = app_state(catalog, options);
    let routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(v1::router())
        .merge(iceberg::router());
    layered(routes, state)
}

/// Routes under a base path, merged into the server's one router. Not `nest`: a nested
/// route costs every request a rewrite of its URI (`StripPrefix`) and a nested-path
/// layer; merged routes are matched on the whole path as sent (the matched route, which
/// metrics and logs name, is the same either way; idempotency fingerprints leave the
/// mount out, as the nested URI did: `write::unmounted`).
pub(crate) struct Mount {
    base: &'static str,
    router: Router<AppState>,
}

impl Mount {
    pub(crate) fn at(base: &'static str) -> Mount {
        Mount {
            base,
            router: Router::new(),
        }
    }

    pub(crate) fn route(
        self,
        path: &str,
        method_router: axum::routing::MethodRouter<AppState>,
    ) -> Mount {
        Mount {
            router: self
                .router
                .route(&format!("{}{path}", self.base), method_router),
            ..self
        }
    }

    pub(crate) fn router(self) -> Router<AppState> {
        self.router
    }
}

/// What every handler of a server holds.
fn app_state(catalog: Catalog, options: &ServerOptions) -> AppState {
    #[cfg(feature = "compute")]
    let query = {
        let mut limits = floe_compute::QueryLimits::default();
        if let Some(t) = options.query_timeout {
            limits.timeout = t;
        }
        if let Some(m) = options.query_memory_bytes {
            limits.memory_bytes = m;
        }
        floe_compute::QueryEngine::new(catalog.clone(), limits)
    };
    #[cfg(feature = "compute")]
    let importer = floe_compute::Importer::new(catalog.clone());
    #[cfg(feature = "compute")]
    let runner = floe_compute::Runner::new(
        catalog.clone(),
        query.clone(),
        floe_compute::RunnerConfig {
            dir: options
                .runs_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("floe-runs")),
            max_runs: options.max_runs.max(1),
            workers: options
                .run_workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
                .max(1),
            env_cache: options
                .env_cache
                .clone()
                .unwrap_or_else(floe_compute::runs::envs::default_cache),
            worker_timeout: options.worker_timeout,
            run_timeout: options.run_timeout,
            cache_bytes: options.run_cache_bytes,
            sandbox: options.worker_sandbox.clone(),
        },
    );
    let auth = Arc::new(auth::AuthState::new(catalog.clone(), &options.auth));
    AppState(Arc::new(Shared {
        catalog: Arc::new(catalog),
        metrics: Arc::new(Metrics::default()),
        in_flight: Arc::default(),
        permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_STORE_WORK_MAX)),
        #[cfg(feature = "compute")]
        query,
        #[cfg(feature = "compute")]
        importer,
        #[cfg(feature = "compute")]
        runner,
        options: Arc::new(options.clone()),
        auth,
    }))
}

/// The fallbacks, limits and the observing layer every route runs under.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        // Authentication runs inside `observe`, not as a layer of its own: one layer less
        // for every request to pass through.
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Runs the request with panics caught (a panic becomes a 500 with an id, and the
/// connection and the server live on), inside its span, and records its route, status
/// and latency: one log line per request (method, route, status, latency, error id and
/// kind for an error answer, principal).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Both are shared, not copied: a request allocates nothing for its labels.
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let api = Api::of(request.uri().path(), matched.as_ref().map(|p| p.as_str()));
    // The request's span is `debug`: a busy server's default log (`info`) creates none, so
    // a request costs no span; the line it ends with carries its own fields either way.
    // Authentication, inside it, records the principal.
    let span = tracing::debug_span!(
        "request",
        method = %method,
        route = %route,
        principal = tracing::field::Empty,
    );
    let authenticated = auth::authenticate(State(state.auth.clone()), request, next);
    let response = match AssertUnwindSafe(authenticated.instrument(span.clone()))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            span.in_scope(|| ApiError::internal(&format!("handler panicked: {what}")))
                .render(api)
        }
    };
    let status = response.status().as_u16();
    let latency = started.elapsed();
    state
        .metrics
        .observe(method.as_str(), route, status, latency);
    let answered = response.extensions().get::<AnsweredError>();
    let error_id = answered.map_or("", |e| e.error_id.as_str());
    let error = answered.map_or("", |e| e.kind.row().floe);
    let latency_ms = latency.as_secs_f64() * 1e3;
    // Successes and client errors at debug; a 5xx at error, beside its chain (same id).
    if status >= 500 {
        tracing::error!(parent: &span, method = %method, route = %route, status, latency_ms, error_id, error, "answered");
    } else {
        tracing::debug!(parent: &span, method = %method, route = %route, status, latency_ms, error_id, error, "answered");
    }
    response
}

#[utoipa::path(get, path = "/health", tag = "service", operation_id = "health",
    responses((status = 200, description = "The process is up", body = wire::StatusBody)))]
async fn health() -> Response {
    json_reply(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/ready", tag = "service", operation_id = "ready",
    responses(
        (status = 200, description = "The store answers", body = wire::StatusBody),
        (status = 503, description = "The store does not answer", body = error::ErrorBody),
    ))]
async fn ready(State(state): State<AppState>) -> Response {
    let catalog = state.catalog.clone();
    match tokio::task::spawn_blocking(move || catalog.ready()).await {
        Ok(Ok(())) => json_reply(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Ok(Err(e)) => {
            let err = ApiError::new(
                ErrorKind::Unavailable,
                "the store does not answer; quote the errorId to the operator",
            );
            tracing::error!(error_id = %err.error_id(), "not ready: {e}");
            err.into_response()
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    metrics::render_gauges(&mut text, &state.catalog.store_gauges());
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn not_found(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    auth::read_refused_body(body).await;
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "no route {} {}; see /api/v1/openapi.json",
            parts.method,
            parts.uri.path()
        ),
    )
    .render(Api::of_parts(&parts))
}

async fn method_not_allowed(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    auth::read_refused_body(body).await;
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; see /api/v1/openapi.json",
            parts.method,
            parts.uri.path()
        ),
    )
    .render(Api::of_parts(&parts))
}

pub(crate) fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        serde_json::to_string(body).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod test_server;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{send, serve};

    /// A request whose Idempotency-Key is still running elsewhere: floe's API answers 409
    /// with Retry-After (its documented answer), the Iceberg API 503 with Retry-After —
    /// Iceberg clients read a 409 on a commit as "not applied" and would re-apply it, a
    /// 5xx as "state unknown" (issue 14, item 5).
    #[test]
    fn a_duplicate_in_flight_is_409_on_floes_api_and_503_on_iceberg() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let state = app_state(Catalog::in_memory(), &ServerOptions::default());
        let routes = Router::new().merge(v1::router()).merge(iceberg::router());
        let addr = serve(&runtime, layered(routes, state.clone()));
        let key = uuid::Uuid::now_v7().to_string();
        // The first attempt is still running.
        state.in_flight.lock().insert(key.clone());
        let headers = [("Idempotency-Key", key.as_str())];
        let (status, head, body) = send(
            addr,
            "POST",
            "/iceberg/v1/main/namespaces",
            &headers,
            r#"{"namespace":["a"]}"#,
        );
        assert_eq!(status, 503, "{body}");
        assert!(head.contains("retry-after: 1"), "{head}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["type"], "ServiceUnavailableException");
        assert_eq!(body["error"]["code"], 503);
        let (status, head, body) = send(
            addr,
            "POST",
            "/api/v1/trees/main/namespaces",
            &headers,
            r#"{"namespace":["a"]}"#,
        );
        assert_eq!(status, 409, "{body}");
        assert!(head.contains("retry-after: 1"), "{head}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "IdempotencyInFlight");
        // Nothing ran: the namespace is not there.
        state.in_flight.lock().clear();
        let (status, _, _) = send(addr, "GET", "/iceberg/v1/main/namespaces/a", &[], "");
        assert_eq!(status, 404);
    }

    #[test]
    fn a_panicking_handler_is_a_500_with_an_error_id_and_the_server_lives_on() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let state = app_state(Catalog::in_memory(), &ServerOptions::default());
        async fn boom() -> Response {
            panic!("a bug")
        }
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/health", get(health));
        let addr = serve(&runtime, layered(routes, state.clone()));
        let (status, _, body) = send(addr, "GET", "/boom", &[], "");
        assert_eq!(status, 500);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "InternalError");
        assert!(uuid::Uuid::parse_str(body["errorId"].as_str().unwrap()).is_ok());
        assert!(
            !body["message"].as_str().unwrap().contains("a bug"),
            "a 5xx shows only the id"
        );
        assert_eq!(
            send(addr, "GET", "/health", &[], "").0,
            200,
            "the server lives on"
        );
        assert!(
            state
                .metrics
                .render()
                .contains("route=\"/boom\",method=\"GET\",status=\"500\"} 1")
        );
    }
}
