//! The path every handler's store call takes: it runs on a blocking thread (the store waits
//! for fdatasync), under the request's `Principal`, and — for writes — under the request's
//! `Idempotency-Key` (DESIGN §3): a key is a UUIDv7; a duplicate still in flight gets 409
//! with `Retry-After` (503 on `/iceberg`, whose error layer says "state unknown" to Iceberg
//! clients); the same key with another request gets 422; an applied outcome is recorded
//! atomically with the ref move and a retry gets it rebuilt; a deterministic rejection is
//! recorded and a retry gets the same status and body; a retryable rejection (contention)
//! and a 5xx (outcome unknown) are never recorded.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use floe_catalog::{AppliedRecord, Catalog, IdemRequest, IdempotencyKey, Principal, Recalled};
use parking_lot::Mutex;
use std::collections::HashSet;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A successful answer: status and JSON body (none for 204).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<String>,
}

impl Reply {
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> ApiResult<Reply> {
        Ok(Reply {
            status,
            body: Some(serde_json::to_string(body).map_err(|e| ApiError::internal(&e))?),
        })
    }

    pub fn empty(status: StatusCode) -> ApiResult<Reply> {
        Ok(Reply { status, body: None })
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (
                self.status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            None => self.status.into_response(),
        }
    }
}

/// Who the request acts for. Authentication will turn credentials into a named principal
/// here; until it is configured every request is anonymous.
pub fn principal(_headers: &HeaderMap) -> Principal {
    Principal::anonymous()
}

/// Runs a read on a blocking thread.
pub async fn read<F>(state: &AppState, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce(&Catalog, &Principal) -> ApiResult<Reply> + Send + 'static,
{
    let catalog = state.catalog.clone();
    let principal = principal(headers);
    blocking(state, move || f(&catalog, &principal)).await
}

/// What a write handler hands over: how to run it, and how to rebuild its answer from
/// an applied record when a retry arrives.
#[allow(missing_debug_implementations)] // closures
pub struct Write<F, R> {
    pub run: F,
    pub replay: R,
}

/// Runs a write on a blocking thread under its idempotency key, if any.
pub async fn write<F, R>(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    op: Write<F, R>,
) -> Response
where
    F: FnOnce(&Catalog, &Principal, Option<&IdemRequest>) -> ApiResult<Reply> + Send + 'static,
    R: FnOnce(&Catalog, &Principal, &AppliedRecord) -> ApiResult<Reply> + Send + 'static,
{
    let request = match idempotency(method, uri, headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let catalog = state.catalog.clone();
    let principal = principal(headers);
    let in_flight = state.in_flight.clone();
    blocking(state, move || {
        let Some(request) = request else {
            return (op.run)(&catalog, &principal, None);
        };
        let _turn = InFlight::enter(&in_flight, request.key.as_str())?;
        match catalog.recall(&request)? {
            Some(Recalled::Applied(record)) => return (op.replay)(&catalog, &principal, &record),
            Some(Recalled::Rejected { status, body }) => {
                return Ok(Reply {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT),
                    body: Some(body),
                });
            }
            Some(Recalled::OtherRequest) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "IdempotencyKeyReused",
                    format!(
                        "Idempotency-Key {} was used for a different request; use a new key for a new request",
                        request.key.as_str()
                    ),
                ));
            }
            None => {}
        }
        let outcome = (op.run)(&catalog, &principal, Some(&request));
        if let Err(e) = &outcome
            && e.is_deterministic()
            && let Ok(body) = serde_json::to_string(&e.body)
        {
            // Best effort: if this fails, a retry re-evaluates (and may differ).
            let _ = catalog.record_rejection(&request, e.status.as_u16(), &body);
        }
        outcome
    })
    .await
}

/// A write whose answer is 204 No Content, and so is a retry's: `run` does the write.
pub async fn write_empty<F>(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    run: F,
) -> Response
where
    F: FnOnce(&Catalog, &Principal, Option<&IdemRequest>) -> ApiResult<()> + Send + 'static,
{
    let empty = || Reply {
        status: StatusCode::NO_CONTENT,
        body: None,
    };
    write(
        state,
        method,
        uri,
        headers,
        body,
        Write {
            run: move |catalog: &Catalog, principal: &Principal, idem: Option<&IdemRequest>| {
                run(catalog, principal, idem)?;
                Ok(empty())
            },
            replay: move |_: &Catalog, _: &Principal, _: &AppliedRecord| Ok(empty()),
        },
    )
    .await
}

/// The request's idempotency key and fingerprint (method, path and query, body).
fn idempotency(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Option<IdemRequest>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII (a UUIDv7)"))?;
    let key = IdempotencyKey::parse(text).map_err(ApiError::from)?;
    let mut h = blake3::Hasher::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\0");
    h.update(uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    h.update(b"\0");
    h.update(body);
    Ok(Some(IdemRequest {
        key,
        fingerprint: h.finalize().to_hex().to_string(),
    }))
}

/// Marks a key in flight for as long as its first request runs.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    fn enter(set: &Arc<Mutex<HashSet<String>>>, key: &str) -> ApiResult<InFlight> {
        if !set.lock().insert(key.to_owned()) {
            let e = ApiError::new(
                StatusCode::CONFLICT,
                "IdempotencyInFlight",
                format!(
                    "a request with Idempotency-Key {key} is still running; retry after it ends"
                ),
            );
            return Err(e.retryable(Some(1)));
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
/// panic there is a 500 with an id.
async fn blocking<F>(state: &AppState, f: F) -> Response
where
    F: FnOnce() -> ApiResult<Reply> + Send + 'static,
{
    let Ok(_permit) = state.permits.clone().acquire_owned().await else {
        return ApiError::internal(&"the request limiter is closed").into_response();
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(reply)) => reply.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(&format!("request task failed: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use floe_catalog::CatalogError;
    use floe_commits::{RefName, WriteError};

    use super::*;

    /// Contention is retryable: under an Idempotency-Key it is never recorded as the
    /// answer, so a retry runs again (issue 14, item 7), on both APIs.
    #[test]
    fn contention_is_never_recorded_as_a_final_answer() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let state = crate::app_state(Catalog::in_memory(), &crate::ServerOptions::default());
        let main = RefName::parse("main").unwrap();
        type Contended = fn(RefName) -> ApiError;
        let contended: Vec<(&str, Contended)> = vec![
            ("store contention on floe's API", |r| {
                ApiError::from(CatalogError::Write(WriteError::Contention(r)))
            }),
            ("catalog contention on floe's API", |r| {
                ApiError::from(CatalogError::Contention(format!("table {r}")))
            }),
            ("store contention on /iceberg", |r| {
                crate::iceberg::error(CatalogError::Write(WriteError::Contention(r)))
            }),
            ("catalog contention on /iceberg", |r| {
                crate::iceberg::error(CatalogError::Contention(format!("table {r}")))
            }),
        ];
        for (case, contention) in contended {
            let key = uuid::Uuid::now_v7().to_string();
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(&key).unwrap());
            let uri: Uri = "/api/v1/x".parse().unwrap();
            let attempt = |fail: bool| {
                let main = main.clone();
                runtime.block_on(write(
                    &state,
                    &Method::POST,
                    &uri,
                    &headers,
                    b"{}",
                    Write {
                        run: move |_: &Catalog, _: &Principal, _: Option<&IdemRequest>| {
                            if fail {
                                Err(contention(main))
                            } else {
                                Reply::empty(StatusCode::NO_CONTENT)
                            }
                        },
                        replay: |_: &Catalog, _: &Principal, _: &AppliedRecord| {
                            Reply::empty(StatusCode::NO_CONTENT)
                        },
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
        let floe = ApiError::from(CatalogError::Write(WriteError::Contention(main.clone())));
        assert_eq!(floe.body.kind, "Contention");
        assert_eq!(floe.retry_after_s, Some(1));
        let iceberg = crate::iceberg::error(CatalogError::Write(WriteError::Contention(main)));
        assert_eq!(iceberg.body.kind, "CommitFailedException");
    }
}
