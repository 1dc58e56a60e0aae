//! The path every handler's store call takes: it runs on a blocking thread (the store waits
//! for fdatasync), under the request's `Principal`, and — for writes — under the request's
//! `Idempotency-Key` (DESIGN §3): a key is a UUIDv7; a duplicate still in flight gets 409
//! with `Retry-After` (503 on `/iceberg`: "state unknown" to Iceberg clients, see the error
//! table); the same key with another request gets 422; an applied outcome is recorded
//! atomically with the ref move and a retry gets it rebuilt; a deterministic rejection is
//! recorded and a retry gets the same status and body; a retryable rejection (contention)
//! and a 5xx (outcome unknown) are never recorded.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use floe_catalog::deferred::Scope;
use floe_catalog::{
    AppliedRecord, Catalog, IdemRequest, IdempotencyKey, OffThreadError, Principal, Recalled,
};
use floe_commits::RefName;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{Api, ApiError, ApiResult, ErrorKind};

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The buffer a JSON answer is written into starts this large (most answers fit).
const REPLY_BYTES_MIN: usize = 1024;

/// A successful answer: status and JSON body (none for 204).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// JSON (serde_json writes UTF-8 only).
    pub body: Option<Vec<u8>>,
    /// The body carries credentials: answered with `Cache-Control: no-store`, so that no
    /// cache between the client and floe keeps them.
    pub secret: bool,
}

impl Reply {
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> ApiResult<Reply> {
        Reply::json_sized(status, body, 0)
    }

    /// The same, for a body of about `bytes` (or more) bytes: written into a buffer of
    /// that size, not one grown (and copied) step by step.
    pub fn json_sized<T: serde::Serialize>(
        status: StatusCode,
        body: &T,
        bytes: usize,
    ) -> ApiResult<Reply> {
        let mut out = Vec::with_capacity(bytes.max(REPLY_BYTES_MIN));
        serde_json::to_writer(&mut out, body).map_err(|e| ApiError::internal(&e))?;
        Ok(Reply {
            status,
            body: Some(out),
            secret: false,
        })
    }

    /// 200 with `body`.
    pub fn ok<T: serde::Serialize>(body: &T) -> ApiResult<Reply> {
        Reply::json(StatusCode::OK, body)
    }

    pub fn empty(status: StatusCode) -> ApiResult<Reply> {
        Ok(Reply {
            status,
            body: None,
            secret: false,
        })
    }

    /// The same answer, marked as carrying credentials (when `secret`).
    pub fn secret(self, secret: bool) -> Reply {
        Reply { secret, ..self }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (
                self.status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            None => self.status.into_response(),
        };
        if self.secret {
            response.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
        }
        response
    }
}

/// One request as its handler needs it, read once at the edge: the method, the URI (what
/// an idempotency fingerprint covers, without its API's mount), the headers, the body, and the
/// API it came through (how its errors look). `write` hands it to both the run and the
/// replay of a write, so no handler copies its body.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub api: Api,
}

impl Call {
    /// Parses the JSON body, saying where it is wrong.
    pub fn json<T: DeserializeOwned>(&self) -> ApiResult<T> {
        crate::extract::json(&self.body)
    }
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Call, Response> {
        let (parts, body) = req.into_parts();
        let api = Api::of_parts(&parts);
        // A request without a body (most reads) has nothing to collect.
        let body = if axum::body::HttpBody::size_hint(&body).exact() == Some(0) {
            Bytes::new()
        } else {
            crate::extract::body_bytes(&parts.headers, body)
                .await
                .map_err(|e| e.render(api))?
        };
        Ok(Call {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            api,
        })
    }
}

/// What a handler's store work sees: the catalog, the request's principal, the request.
#[derive(Debug)]
pub struct Ctx {
    pub catalog: Arc<Catalog>,
    pub principal: Principal,
    pub call: Call,
}

impl Ctx {
    /// A request's context: the catalog, and the principal authentication made of it.
    fn of(state: &AppState, call: Call) -> Ctx {
        Ctx {
            catalog: state.catalog.clone(),
            principal: principal(&call.headers),
            call,
        }
    }
}

/// Who the request acts for: what authentication made of its credentials (`auth.rs`).
pub fn principal(_headers: &HeaderMap) -> Principal {
    crate::auth::current()
}

/// Runs a read: first on this async worker (no hop to a blocking thread, which costs more
/// than such a read), when the catalog's store answers from memory or, on PostgreSQL,
/// once the refs it reads are fetched without blocking; on a blocking thread when the
/// inline run turned out to need other I/O (a metadata file not cached yet, credentials
/// to ask for: `floe_catalog::inline`), in which case the read runs again there from the
/// start. Such reads change nothing, so running one twice is harmless.
pub async fn read<F>(state: &AppState, call: Call, f: F) -> Response
where
    F: Fn(&Ctx) -> ApiResult<Reply> + Send + 'static,
{
    read_on(state, call, None, f).await
}

/// A read of one ref spec (an Iceberg prefix), `read` otherwise: on a store whose refs
/// are not in memory, the spec's ref is fetched before the first inline run.
pub async fn read_on<F>(state: &AppState, call: Call, at: Option<RefName>, f: F) -> Response
where
    F: Fn(&Ctx) -> ApiResult<Reply> + Send + 'static,
{
    let api = call.api;
    let cx = Ctx::of(state, call);
    if let Some(answer) = floe_catalog::inline::read(&state.catalog, at, || f(&cx)).await {
        return match answer {
            Ok(reply) => reply.into_response(),
            Err(e) => e.render(api),
        };
    }
    blocking(state, api, Scope::Read, move || f(&cx)).await
}

/// Runs a read that may walk much of the store (a diff, a log, a commit's detail), reads
/// meta (runs, tokens, the policy), or writes on the side (tokens, the policy, a
/// maintenance pass) on a blocking thread from the start: it never holds an async worker
/// for long, and never runs twice.
pub async fn read_blocking<F>(state: &AppState, call: Call, f: F) -> Response
where
    F: FnOnce(&Ctx) -> ApiResult<Reply> + Send + 'static,
{
    let api = call.api;
    let cx = Ctx::of(state, call);
    blocking(state, api, Scope::Read, move || f(&cx)).await
}

/// What a write handler hands over: how to run it, and how to rebuild its answer from
/// an applied record when a retry arrives.
#[allow(missing_debug_implementations)] // closures
pub struct Write<F, R> {
    pub run: F,
    pub replay: R,
}

/// Runs a write on a blocking thread under its idempotency key, if any.
pub async fn write<F, R>(state: &AppState, call: Call, op: Write<F, R>) -> Response
where
    F: FnOnce(&Ctx, Option<&IdemRequest>) -> ApiResult<Reply> + Send + 'static,
    R: FnOnce(&Ctx, &AppliedRecord) -> ApiResult<Reply> + Send + 'static,
{
    let api = call.api;
    let request = match idempotency(&call) {
        Ok(r) => r,
        Err(e) => return e.render(api),
    };
    let cx = Ctx::of(state, call);
    let in_flight = state.in_flight.clone();
    blocking(state, api, Scope::Write, move || {
        let catalog = &cx.catalog;
        let Some(mut request) = request else {
            return (op.run)(&cx, None);
        };
        let _turn = InFlight::enter(&in_flight, request.key.as_str())?;
        // Servers sharing the catalog: the key is claimed in the store as well.
        if !catalog.claim_key(&cx.principal, &mut request)? {
            return Err(in_flight_error(request.key.as_str()));
        }
        let outcome = run_claimed(&cx, &request, op);
        if let Err(e) = catalog.release_key(&cx.principal, &request) {
            tracing::warn!(error = %e, "releasing an idempotency claim failed; it ends with its lease");
        }
        outcome
    })
    .await
}

/// A write under its (claimed) key: a recorded outcome answers it, else it runs.
fn run_claimed<F, R>(cx: &Ctx, request: &IdemRequest, op: Write<F, R>) -> ApiResult<Reply>
where
    F: FnOnce(&Ctx, Option<&IdemRequest>) -> ApiResult<Reply>,
    R: FnOnce(&Ctx, &AppliedRecord) -> ApiResult<Reply>,
{
    let catalog = &cx.catalog;
    match catalog.recall(&cx.principal, request)? {
        Some(Recalled::Applied(record)) => return (op.replay)(cx, &record),
        Some(Recalled::Rejected { answer }) => {
            // A record this server cannot read is evaluated again (see from_recorded).
            if let Some(e) = ApiError::from_recorded(&answer) {
                return Err(e);
            }
        }
        Some(Recalled::OtherRequest) => {
            return Err(ApiError::new(
                ErrorKind::IdempotencyKeyReused,
                format!(
                    "Idempotency-Key {} was used for a different request; use a new key for a new request",
                    request.key.as_str()
                ),
            ));
        }
        None => {}
    }
    let outcome = (op.run)(cx, Some(request));
    if let Err(e) = &outcome
        && e.is_deterministic()
    {
        // Best effort: if this fails, a retry re-evaluates (and may differ).
        let _ = catalog.record_rejection(&cx.principal, request, &e.recorded());
    }
    outcome
}

/// A write whose answer is 204 No Content, and so is a retry's: `run` does the write.
pub async fn write_empty<F>(state: &AppState, call: Call, run: F) -> Response
where
    F: FnOnce(&Ctx, Option<&IdemRequest>) -> ApiResult<()> + Send + 'static,
{
    let empty = || Reply {
        status: StatusCode::NO_CONTENT,
        body: None,
        secret: false,
    };
    write(
        state,
        call,
        Write {
            run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                run(cx, idem)?;
                Ok(empty())
            },
            replay: move |_: &Ctx, _: &AppliedRecord| Ok(empty()),
        },
    )
    .await
}

/// The request's idempotency key and fingerprint (who asks, method, path and query,
/// body): another principal's retry with the same key is another request (422), never a
/// replay of someone else's answer.
fn idempotency(call: &Call) -> ApiResult<Option<IdemRequest>> {
    let Some(value) = call.headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII (a UUIDv7)"))?;
    let key = IdempotencyKey::parse(text).map_err(ApiError::from)?;
    let mut h = blake3::Hasher::new();
    h.update(crate::auth::current().name().as_bytes());
    h.update(b"\0");
    h.update(call.method.as_str().as_bytes());
    h.update(b"\0");
    h.update(unmounted(call.uri.path_and_query().map_or("", |p| p.as_str())).as_bytes());
    h.update(b"\0");
    h.update(&call.body);
    Ok(Some(IdemRequest {
        claim: None,
        key,
        fingerprint: h.finalize().to_hex().to_string(),
    }))
}

/// A path and query without the mount of its API (`/api/v1`, `/iceberg`): the form the
/// fingerprints of records kept before the routes were merged (`crate::Mount`) hashed, so
/// a retry across an upgrade, or through another version of server, still replays.
fn unmounted(path_and_query: &str) -> &str {
    for mount in [crate::v1::MOUNT, crate::iceberg::MOUNT] {
        if let Some(rest) = path_and_query.strip_prefix(mount)
            && rest.starts_with('/')
        {
            return rest;
        }
    }
    path_and_query
}

/// Marks a key in flight for as long as its first request runs.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

fn in_flight_error(key: &str) -> ApiError {
    ApiError::new(
        ErrorKind::IdempotencyInFlight,
        format!("a request with Idempotency-Key {key} is still running; retry after it ends"),
    )
}

impl InFlight {
    fn enter(set: &Arc<Mutex<HashSet<String>>>, key: &str) -> ApiResult<InFlight> {
        if !set.lock().insert(key.to_owned()) {
            return Err(in_flight_error(key));
        }
        Ok(InFlight {
            set: set.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

/// Runs store work on a blocking thread, at most `CONCURRENT_STORE_WORK_MAX` at once; a
/// panic there is a 500 with an id. The permit is given back as soon as the answer is
/// computed, before its durability is awaited (`off_thread`).
async fn blocking<F>(state: &AppState, api: Api, scope: Scope, f: F) -> Response
where
    F: FnOnce() -> ApiResult<Reply> + Send + 'static,
{
    let Ok(permit) = state.permits.clone().acquire_owned().await else {
        return ApiError::internal(&"the request limiter is closed").render(api);
    };
    match off_thread_with(Some(permit), scope, f).await {
        Ok(Ok(reply)) => reply.into_response(),
        Ok(Err(e)) | Err(e) => e.render(api),
    }
}

/// Runs store work on a blocking thread with its durability waits deferred
/// (`floe_commits::deferred`), and awaits them here, parking no thread: the blocking
/// thread is free again as soon as the result is computed, and the result is handed on
/// once everything it rests on is durable. If that never happens (the store is
/// poisoned), the outcome is unknown: a 500, whatever the result was.
pub async fn off_thread<T, F>(scope: Scope, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    off_thread_with(None, scope, f).await
}

async fn off_thread_with<T, F>(
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    scope: Scope,
    f: F,
) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // The permit bounds the store work, not the wait for durability after it.
    let work = move || {
        let out = f();
        drop(permit);
        out
    };
    floe_catalog::off_thread(scope, work)
        .await
        .map_err(|e| match e {
            OffThreadError::Task(why) => ApiError::internal(&format!("request task failed: {why}")),
            OffThreadError::NotDurable(e) => ApiError::from(e),
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use floe_catalog::CatalogError;
    use floe_commits::{RefName, WriteError};

    use super::*;

    /// Fingerprints leave the API's mount out, as they did when the routes were nested:
    /// a record kept by an older server still answers a retry.
    #[test]
    fn fingerprints_hash_the_path_without_its_mount() {
        assert_eq!(
            unmounted("/iceberg/v1/main/namespaces?x=1"),
            "/v1/main/namespaces?x=1"
        );
        assert_eq!(unmounted("/api/v1/trees/main/merge"), "/trees/main/merge");
        assert_eq!(unmounted("/icebergs/v1"), "/icebergs/v1");
        assert_eq!(unmounted("/health"), "/health");
    }

    /// Contention is retryable: under an Idempotency-Key it is never recorded as the
    /// answer, so a retry runs again (issue 14, item 7), on both APIs.
    #[test]
    fn contention_is_never_recorded_as_a_final_answer() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let state = crate::app_state(Catalog::in_memory(), &crate::ServerOptions::default());
        let main = RefName::parse("main").unwrap();
        type Contended = fn(RefName) -> ApiError;
        let contended: Vec<(&str, Api, Contended)> = vec![
            ("store contention on floe's API", Api::Floe, |r| {
                ApiError::from(CatalogError::Write(WriteError::Contention(r)))
            }),
            ("catalog contention on floe's API", Api::Floe, |r| {
                ApiError::from(CatalogError::Contention(format!("table {r}")))
            }),
            ("store contention on /iceberg", Api::Iceberg, |r| {
                ApiError::from(CatalogError::Write(WriteError::Contention(r)))
            }),
            ("catalog contention on /iceberg", Api::Iceberg, |r| {
                ApiError::from(CatalogError::Contention(format!("table {r}")))
            }),
        ];
        for (case, api, contention) in contended {
            let key = uuid::Uuid::now_v7().to_string();
            let attempt = |fail: bool| {
                let main = main.clone();
                let mut headers = HeaderMap::new();
                headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(&key).unwrap());
                let call = Call {
                    method: Method::POST,
                    uri: "/x".parse().unwrap(),
                    headers,
                    body: Bytes::from_static(b"{}"),
                    api,
                };
                runtime.block_on(write(
                    &state,
                    call,
                    Write {
                        run: move |_: &Ctx, _: Option<&IdemRequest>| {
                            if fail {
                                Err(contention(main))
                            } else {
                                Reply::empty(StatusCode::NO_CONTENT)
                            }
                        },
                        replay: |_: &Ctx, _: &AppliedRecord| Reply::empty(StatusCode::NO_CONTENT),
                    },
                ))
            };
            let first = attempt(true);
            assert_eq!(first.status(), StatusCode::CONFLICT, "{case}");
            let retry = attempt(false);
            assert_eq!(
                retry.status(),
                StatusCode::NO_CONTENT,
                "{case}: the retry ran again instead of getting the recorded 409"
            );
        }
        // The floe API says when to retry; the Iceberg API answers CommitFailedException.
        let e = ApiError::from(CatalogError::Write(WriteError::Contention(main)));
        assert_eq!(e.kind().row().floe, "Contention");
        let floe = e.render(Api::Floe);
        assert_eq!(floe.headers()["retry-after"], "1");
        assert_eq!(e.kind().row().iceberg, "CommitFailedException");
        let iceberg = e.render(Api::Iceberg);
        assert!(iceberg.headers().get("retry-after").is_none());
    }
}
