//! Pipeline runs over HTTP (DESIGN §7): `POST /api/v1/runs` submits one (multipart: an
//! `options` part, JSON `RunOptions`, and a `project` part, the project as an uncompressed
//! tar), `GET /api/v1/runs/{id}/logs` reads its log (`?follow=true` streams it until the
//! run ends) and `GET /api/v1/runs/{id}/code` answers its code snapshot.
//!
//! A submission is planned in the request: a project that does not plan is a 400 naming
//! every error with its file and line, and nothing is recorded or forked. A planned run is
//! recorded `queued` and answered at once (201); it runs in the server, and its record and
//! log tell how it goes. Its Idempotency-Key is recorded with the run: a retry answers the
//! same run.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
#[allow(unused_imports)]
use crate::error::ErrorBody;
use crate::extract::{ApiPath, ApiQuery};

type Parts = Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>;

#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", operation_id = "submitRun",
    params(("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key and the same request answers the same run")),
    request_body(content = String, content_type = "multipart/form-data",
        description = "An `options` part (JSON: ref, namespace, params, dryRun, plan, strict, noTransaction, noCache, preview, timeoutSeconds) and a `project` part (the project folder as an uncompressed tar: bauplan_project.yml, .sql, .py, requirements.txt)."),
    responses(
        (status = 200, description = "`plan: true`: the DAG in the order it would run; nothing recorded", body = Object),
        (status = 201, description = "Planned, recorded (queued) and started: the run's record", body = super::runs::RunBody),
        (status = 400, description = "A bad request, a refused archive entry (named), or a project that does not plan (every error with file and line); nothing recorded", body = ErrorBody),
        (status = 404, description = "The branch does not exist", body = ErrorBody),
        (status = 413, description = "The archive is larger than a run takes", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 501, description = "This server was built without compute", body = ErrorBody),
    ))]
pub async fn submit_run(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    multipart: Parts,
) -> Response {
    compute::submit(state, uri, headers, multipart).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Stream the log until the run ends.
    pub follow: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs", operation_id = "runLogs",
    params(("id" = String, Path, description = "The run's id"), LogsQuery),
    responses(
        (status = 200, description = "The run's log, one line per event: `<time> <node> <stream> <text>`", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid input (`follow` that is not true or false)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
pub async fn run_logs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
    headers: HeaderMap,
) -> Response {
    compute::logs(state, id, q.follow.unwrap_or(false), headers).await
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/code", tag = "runs", operation_id = "runCode",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's code snapshot, as it was submitted (a tar)", body = String, content_type = "application/x-tar"),
        (status = 404, description = "No such run, or a run with no code (an import)", body = ErrorBody),
    ))]
pub async fn run_code(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    compute::code(state, id, headers).await
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", operation_id = "cancelRun",
    params(("id" = String, Path, description = "The run's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key gets the same answer")),
    responses(
        (status = 200, description = "The run once it ended: `cancelled` (its workers killed, its branch sealed), or as it ended if it ended first (cancelling twice changes nothing)", body = super::runs::RunBody),
        (status = 400, description = "Invalid input (an Idempotency-Key that is not a UUIDv7)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 501, description = "This server was built without compute", body = ErrorBody),
    ))]
pub async fn cancel_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    compute::cancel(state, id, uri, headers).await
}

#[cfg(not(feature = "compute"))]
mod compute {
    use super::*;
    use crate::error::{ApiError, ErrorKind};

    fn none() -> Response {
        axum::response::IntoResponse::into_response(ApiError::new(
            ErrorKind::NotImplemented,
            "this server was built without compute (the `compute` feature); runs need it",
        ))
    }

    pub async fn submit(_: AppState, _: Uri, _: HeaderMap, _: Parts) -> Response {
        none()
    }

    pub async fn logs(_: AppState, _: String, _: bool, _: HeaderMap) -> Response {
        none()
    }

    pub async fn code(_: AppState, _: String, _: HeaderMap) -> Response {
        none()
    }

    pub async fn cancel(_: AppState, _: String, _: Uri, _: HeaderMap) -> Response {
        none()
    }
}

#[cfg(feature = "compute")]
mod compute {
    use axum::body::Body;
    use axum::http::{Method, StatusCode, header};
    use axum::response::IntoResponse;
    use floe_catalog::deferred::Scope;
    use floe_catalog::{AppliedRecord, IdemRequest, RunRecord};
    use floe_compute::runs::RunOptions;
    use floe_compute::{Runner, Submitted};

    use super::*;
    use crate::error::{Api, ApiError, ErrorKind};
    use crate::v1::runs::RunBody;
    use crate::write::{self, Call, Ctx, Reply, Write};

    pub async fn submit(
        state: AppState,
        uri: Uri,
        headers: HeaderMap,
        multipart: Parts,
    ) -> Response {
        let multipart = match multipart {
            Ok(m) => m,
            Err(e) => {
                return ApiError::bad_request(format!(
                    "send the run as multipart/form-data with an `options` part and a `project` part: {}",
                    e.body_text()
                ))
                .into_response();
            }
        };
        let (options, archive, fingerprint) = match read_parts(multipart).await {
            Ok(parts) => parts,
            Err(e) => return e.into_response(),
        };
        let runner = state.runner.clone();
        let handle = tokio::runtime::Handle::current();
        let call = Call {
            method: Method::POST,
            uri,
            headers,
            body: fingerprint.into(),
            api: Api::Floe,
        };
        write::write(
            &state,
            call,
            Write {
                run: move |cx: &Ctx, idem: Option<&IdemRequest>| {
                    let submitted = handle
                        .block_on(runner.submit(&cx.principal, archive, options, idem.cloned()))
                        .map_err(ApiError::from)?;
                    match submitted {
                        Submitted::Planned(plan) => Reply::json(StatusCode::OK, &plan),
                        Submitted::Started(record) => {
                            Reply::json(StatusCode::CREATED, &RunBody::from(&record))
                        }
                    }
                },
                replay: move |cx: &Ctx, rec: &AppliedRecord| {
                    let run = cx.catalog.get_run(&cx.principal, &rec.detail)?;
                    Reply::json(StatusCode::CREATED, &RunBody::from(&run))
                },
            },
        )
        .await
    }

    pub async fn cancel(state: AppState, id: String, uri: Uri, headers: HeaderMap) -> Response {
        let runner = state.runner.clone();
        let handle = tokio::runtime::Handle::current();
        let again = id.clone();
        let call = Call {
            method: Method::POST,
            uri,
            headers,
            body: Vec::new().into(),
            api: Api::Floe,
        };
        write::write(
            &state,
            call,
            Write {
                run: move |cx: &Ctx, _: Option<&IdemRequest>| {
                    let run = handle
                        .block_on(runner.cancel(&cx.principal, &id))
                        .map_err(ApiError::from)?;
                    Reply::json(StatusCode::OK, &RunBody::from(&run))
                },
                replay: move |cx: &Ctx, _: &AppliedRecord| {
                    let run = cx.catalog.get_run(&cx.principal, &again)?;
                    Reply::json(StatusCode::OK, &RunBody::from(&run))
                },
            },
        )
        .await
    }

    /// The options and the archive, and the bytes the idempotency fingerprint covers (the
    /// options part and the archive's BLAKE3).
    async fn read_parts(
        mut multipart: axum::extract::Multipart,
    ) -> Result<(RunOptions, Vec<u8>, Vec<u8>), ApiError> {
        let limit = floe_compute::limits::PROJECT_ARCHIVE_BYTES_MAX;
        let broken = |e: axum::extract::multipart::MultipartError| {
            let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorKind::PayloadTooLarge
            } else {
                ErrorKind::BadRequest
            };
            ApiError::new(
                kind,
                format!("cannot read the multipart body: {}", e.body_text()),
            )
        };
        let mut options: Option<(RunOptions, Vec<u8>)> = None;
        let mut archive: Option<Vec<u8>> = None;
        while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
            match field.name().unwrap_or_default() {
                "options" => {
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(broken)? {
                        if bytes.len() + chunk.len() > crate::BODY_BYTES_MAX {
                            return Err(ApiError::bad_request(format!(
                                "the options part is larger than {} bytes",
                                crate::BODY_BYTES_MAX
                            )));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    options = Some((crate::extract::json(&bytes)?, bytes));
                }
                "project" => {
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(broken)? {
                        if bytes.len() + chunk.len() > limit {
                            return Err(ApiError::new(
                                ErrorKind::PayloadTooLarge,
                                format!(
                                    "the project archive is larger than a run takes ({limit} bytes, PROJECT_ARCHIVE_BYTES_MAX); a project is code, not data"
                                ),
                            ));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    archive = Some(bytes);
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown part {other:?}: a run has an `options` part and a `project` part"
                    )));
                }
            }
        }
        let (options, options_bytes) = options.unwrap_or_default();
        let Some(archive) = archive else {
            return Err(ApiError::bad_request(
                "the multipart body has no `project` part (the project folder as a tar)",
            ));
        };
        let mut fingerprint = options_bytes;
        fingerprint.push(0);
        fingerprint.extend_from_slice(blake3::hash(&archive).as_bytes());
        Ok((options, archive, fingerprint))
    }

    /// The run's record, for a principal who may read it.
    async fn record(
        state: &AppState,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<RunRecord, ApiError> {
        let catalog = state.catalog.clone();
        let principal = write::principal(headers);
        let id = id.to_owned();
        write::off_thread(Scope::Read, move || catalog.get_run(&principal, &id))
            .await?
            .map_err(ApiError::from)
    }

    pub async fn logs(state: AppState, id: String, follow: bool, headers: HeaderMap) -> Response {
        let record = match record(&state, &id, &headers).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let path = state.runner.log_path(&record.id);
        let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        let here = tokio::fs::try_exists(&path).await.unwrap_or(false);
        if !here && state.catalog.is_shared() {
            // Another server runs (or ran) it: its log as that server shares it in the
            // catalog (as it grows while the run lives, and once more when it ended).
            let principal = write::principal(&headers);
            if follow && record.state.is_live() {
                let stream = follow_shared_log(state.catalog.clone(), principal, record.id);
                return (StatusCode::OK, text, Body::from_stream(stream)).into_response();
            }
            let (catalog, id) = (state.catalog.clone(), record.id.clone());
            let kept = write::off_thread(Scope::Read, move || {
                catalog.shared_log_since(&principal, &id, 0)
            })
            .await;
            return match kept {
                Ok(Ok(part)) => {
                    let bytes = part.map(|p| p.bytes).unwrap_or_default();
                    (StatusCode::OK, text, bytes).into_response()
                }
                Ok(Err(e)) => ApiError::from(e).into_response(),
                Err(e) => e.into_response(),
            };
        }
        if !follow || !record.state.is_live() {
            let bytes = tokio::fs::read(&path).await.unwrap_or_default();
            return (StatusCode::OK, text, bytes).into_response();
        }
        (
            StatusCode::OK,
            text,
            Body::from_stream(follow_log(
                state.runner.clone(),
                state.catalog.clone(),
                write::principal(&headers),
                record.id,
                path,
            )),
        )
            .into_response()
    }

    /// How often a follower on another server than the run's looks for more of its log
    /// (the executing server shares it every half second while it grows).
    const SHARED_LOG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

    /// How long a follower waits, once the run's record says it ended, for the share its
    /// server makes then; a server that died first made none, and the log ends as shared.
    const FINAL_SHARE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    /// A log another server writes, from its start, as that server shares it, until the
    /// share made when the run ended is read to its end.
    fn follow_shared_log(
        catalog: std::sync::Arc<floe_catalog::Catalog>,
        principal: floe_catalog::Principal,
        id: String,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
        struct Follow {
            catalog: std::sync::Arc<floe_catalog::Catalog>,
            principal: floe_catalog::Principal,
            id: String,
            offset: u64,
            ended_at: Option<std::time::Instant>,
            failed: bool,
        }
        let start = Follow {
            catalog,
            principal,
            id,
            offset: 0,
            ended_at: None,
            failed: false,
        };
        futures_util::stream::unfold(start, |mut f| async move {
            if f.failed {
                return None;
            }
            loop {
                // The record before the log: a log read after the record said the run
                // ended is the final share, or the final share is on its way.
                let (catalog, who, id, offset) = (
                    f.catalog.clone(),
                    f.principal.clone(),
                    f.id.clone(),
                    f.offset,
                );
                let read = write::off_thread(Scope::Read, move || {
                    let live = catalog
                        .run_record(&who, &id)?
                        .is_some_and(|r| r.state.is_live());
                    Ok::<_, floe_catalog::CatalogError>((
                        live,
                        catalog.shared_log_since(&who, &id, offset)?,
                    ))
                })
                .await;
                let (live, part) = match read {
                    Ok(Ok(read)) => read,
                    Ok(Err(e)) => {
                        f.failed = true;
                        return Some((Err(std::io::Error::other(e.to_string())), f));
                    }
                    Err(e) => {
                        f.failed = true;
                        return Some((Err(std::io::Error::other(e.message().to_owned())), f));
                    }
                };
                if let Some(part) = part {
                    if !part.bytes.is_empty() {
                        f.offset = part.end;
                        // The final share may come in pieces: the wait starts again.
                        f.ended_at = None;
                        return Some((Ok(part.bytes), f));
                    }
                    if !part.live {
                        return None;
                    }
                }
                if !live
                    && f.ended_at
                        .get_or_insert_with(std::time::Instant::now)
                        .elapsed()
                        > FINAL_SHARE_WAIT
                {
                    return None;
                }
                // A poll of the catalog, where the executing server shares the log.
                tokio::time::sleep(SHARED_LOG_POLL).await;
            }
        })
    }

    /// The log from its start, then each line as it is written, until the run ends.
    fn follow_log(
        runner: Runner,
        catalog: std::sync::Arc<floe_catalog::Catalog>,
        principal: floe_catalog::Principal,
        id: String,
        path: std::path::PathBuf,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
        struct Follow {
            runner: Runner,
            catalog: std::sync::Arc<floe_catalog::Catalog>,
            principal: floe_catalog::Principal,
            id: String,
            path: std::path::PathBuf,
            offset: u64,
            ended: bool,
        }
        let start = Follow {
            runner,
            catalog,
            principal,
            id,
            path,
            offset: 0,
            ended: false,
        };
        futures_util::stream::unfold(start, |mut f| async move {
            loop {
                // The check reads the run's record: store work, off the async threads.
                let (runner, who, id) = (f.runner.clone(), f.principal.clone(), f.id.clone());
                let log = write::off_thread(Scope::Read, move || runner.live_log(&who, &id))
                    .await
                    .ok()
                    .flatten();
                let wake = log.as_ref().map(|l| l.waker());
                let notified = wake.as_ref().map(|w| w.notified());
                let mut notified = std::pin::pin!(notified);
                if let Some(n) = notified.as_mut().as_pin_mut() {
                    n.enable();
                }
                match read_from(&f.path, f.offset).await {
                    Ok(bytes) if !bytes.is_empty() => {
                        f.offset += bytes.len() as u64;
                        return Some((Ok(bytes), f));
                    }
                    Ok(_) => {}
                    Err(e) => return Some((Err(e), Follow { ended: true, ..f })),
                }
                if f.ended {
                    return None;
                }
                // Ended: one more read takes what was written last. A run this server
                // runs has ended once it leaves its live ones (after its last line: its
                // record says `succeeded` a moment before the log says so); one it does
                // not run, once its record says so.
                let (catalog, id, who) = (f.catalog.clone(), f.id.clone(), f.principal.clone());
                let live = log.is_some()
                    || write::off_thread(Scope::Read, move || catalog.run_record(&who, &id))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                        .is_some_and(|r| r.state.is_live());
                if !live {
                    f.ended = true;
                    continue;
                }
                let poll = std::time::Duration::from_millis(floe_compute::limits::RUN_POLL_MS);
                match notified.as_pin_mut() {
                    Some(n) => {
                        let _ = tokio::time::timeout(poll, n).await;
                    }
                    None => tokio::time::sleep(poll).await,
                }
            }
        })
    }

    /// What a file holds from `offset` on (at most 1 MiB at a time).
    async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut out = Vec::new();
        (&mut file).take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    pub async fn code(state: AppState, id: String, headers: HeaderMap) -> Response {
        let record = match record(&state, &id, &headers).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let Some(code) = record
            .pipeline
            .as_ref()
            .and_then(|p| p["code"].as_str().map(str::to_owned))
        else {
            return ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "run {} has no code snapshot (it is an {})",
                    record.id,
                    record.kind.as_str()
                ),
            )
            .into_response();
        };
        let mut read = tokio::fs::read(state.runner.code_path(&code)).await;
        if read.is_err() && state.catalog.is_shared() {
            // Kept by the server the run was submitted to.
            let (catalog, principal, id) = (
                state.catalog.clone(),
                write::principal(&headers),
                record.id.clone(),
            );
            let hash = code.clone();
            if let Ok(Ok(Some(bytes))) = write::off_thread(Scope::Read, move || {
                catalog.shared_run_file(&principal, &id, floe_catalog::RunFile::Code, &hash)
            })
            .await
            {
                read = Ok(bytes);
            }
        }
        match read {
            Ok(bytes) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-tar")],
                bytes,
            )
                .into_response(),
            Err(e) => ApiError::internal(&format!("reading the code snapshot {code}: {e}"))
                .into_response(),
        }
    }
}
