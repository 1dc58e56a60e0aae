//! `POST /api/v1/query`: SQL at any ref spec, answered as Arrow IPC, JSON, NDJSON, CSV or
//! Parquet by the `Accept` header, streamed batch by batch (DESIGN §5 "Reads").
//!
//! The first batch is computed before the answer starts, so errors of planning and of
//! blocking operators (a sort or an aggregate over its memory limit, a timeout) are proper
//! error responses; an error after the first batch can only cut the stream short, and the
//! server logs it with an error id.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ErrorBody;
#[cfg(feature = "compute")]
use crate::extract;
use crate::write::Call;

/// A query.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryBody {
    /// One SQL query (SELECT, WITH, VALUES or EXPLAIN); tables are `namespace.table`, or bare
    /// names in `namespace`.
    pub sql: String,
    /// The ref spec to read at: name, name@hash, hash, spec~N, name*time (default `main`).
    #[serde(default, rename = "ref")]
    pub ref_spec: Option<String>,
    /// Where bare table names resolve (elements joined by `.`; default `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Stop after this many rows.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// A deadline shorter than the server's (milliseconds).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/query", tag = "query", operation_id = "query",
    request_body = QueryBody,
    responses(
        (status = 200, description = "The answer, streamed in the format the Accept header asks for: \
            application/json (an array of row objects, the default), application/x-ndjson, text/csv (with a header), \
            application/vnd.apache.arrow.stream or application/vnd.apache.parquet. Headers: Floe-Commit (the commit read), \
            Floe-Files-Scanned and Floe-Files-Total (data files read after pruning, and in the tables' snapshots).",
            content(
                (Vec<Object> = "application/json"),
                (String = "application/x-ndjson"),
                (String = "text/csv"),
                (String = "application/vnd.apache.arrow.stream"),
                (String = "application/vnd.apache.parquet"),
            )),
        (status = 400, description = "Bad SQL, an unknown table, a statement that is not a query, a bad ref spec", body = ErrorBody),
        (status = 404, description = "The ref spec names nothing", body = ErrorBody),
        (status = 406, description = "The Accept header names no format floe answers in", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The query ran over its time or memory limit", body = ErrorBody),
        (status = 500, description = "Server failure", body = ErrorBody),
        (status = 501, description = "This server was built without compute", body = ErrorBody),
    ))]
pub async fn query(State(state): State<AppState>, call: Call) -> Response {
    let request: QueryBody = match call.json() {
        Ok(r) => r,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    run(state, call.headers, request).await
}

#[cfg(not(feature = "compute"))]
async fn run(_state: AppState, _headers: HeaderMap, _request: QueryBody) -> Response {
    axum::response::IntoResponse::into_response(crate::error::ApiError::new(
        crate::error::ErrorKind::NotImplemented,
        "this server was built without compute (the `compute` feature); queries need it",
    ))
}

#[cfg(feature = "compute")]
async fn run(state: AppState, headers: HeaderMap, request: QueryBody) -> Response {
    use axum::body::Body;
    use axum::http::header::{ACCEPT, CONTENT_TYPE};
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use floe_compute::Encoder;
    use futures_util::StreamExt;

    use crate::error::ApiError;

    let format = match answer_format(headers.get(ACCEPT).and_then(|v| v.to_str().ok())) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let request = match query_request(request) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let principal = crate::write::principal(&headers);
    let limits = state.query.limits();
    let answer = match state.query.run(&principal, request).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut batches = answer.batches;
    // The first batch before the status: planning and blocking operators fail here.
    let first = match batches.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(e)) => {
            return ApiError::from(floe_compute::query::stream_error(e, &limits)).into_response();
        }
        None => None,
    };
    let mut encoder = match Encoder::new(format, &answer.schema) {
        Ok(e) => e,
        Err(e) => return ApiError::internal(&e).into_response(),
    };
    let mut head = Vec::new();
    let start = encoder.start().and_then(|start| {
        head.push(start);
        match &first {
            Some(batch) => encoder.batch(batch).map(|b| head.push(b)),
            None => Ok(()),
        }
    });
    if let Err(e) = start {
        return ApiError::internal(&e).into_response();
    }
    let tail = futures_util::stream::unfold(
        (batches, Some(encoder)),
        move |(mut batches, mut encoder)| async move {
            let enc = encoder.as_mut()?;
            let out = match batches.next().await {
                Some(Ok(batch)) => enc.batch(&batch).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(floe_compute::query::stream_error(e, &limits).to_string()),
                None => {
                    let end = enc.finish().map_err(|e| e.to_string());
                    encoder = None;
                    end
                }
            };
            let out = out.map_err(|message| {
                // The status went out with the first batch: the error id and the chain go
                // to the log, and the client sees the body end early with the id.
                let e = ApiError::internal(&format!("a query stream ended early: {message}"));
                std::io::Error::other(format!(
                    "the query failed while streaming (error {}): {message}",
                    e.error_id()
                ))
            });
            if out.is_err() {
                encoder = None;
            }
            Some((out, (batches, encoder)))
        },
    );
    // What is ready goes out with the headers; the rest as the query's own task makes it.
    let body = futures_util::stream::iter(head.into_iter().map(Ok)).chain(tail);
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    h.insert("floe-commit", header(answer.at.to_hex()));
    let scanned: u64 = answer.scans.iter().map(|s| s.files_scanned).sum();
    let total: u64 = answer.scans.iter().map(|s| s.files_total).sum();
    let bytes: u64 = answer.scans.iter().map(|s| s.bytes_scanned).sum();
    h.insert("floe-files-scanned", header(scanned.to_string()));
    h.insert("floe-files-total", header(total.to_string()));
    h.insert("floe-bytes-scanned", header(bytes.to_string()));
    state.metrics.query_scanned(scanned, total);
    response
}

#[cfg(feature = "compute")]
fn header(text: String) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&text).expect("digits and hex are valid header values")
}

/// The first format of the Accept header floe answers in (JSON when it names none).
#[cfg(feature = "compute")]
fn answer_format(
    accept: Option<&str>,
) -> Result<floe_compute::AnswerFormat, crate::error::ApiError> {
    use floe_compute::AnswerFormat;
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(AnswerFormat::Json);
    };
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or_default().trim();
        if matches!(media, "*/*" | "application/*") {
            return Ok(AnswerFormat::Json);
        }
        if let Some(f) = AnswerFormat::from_media_type(media) {
            return Ok(f);
        }
    }
    let known: Vec<&str> = AnswerFormat::ALL.iter().map(|f| f.media_type()).collect();
    Err(crate::error::ApiError::new(
        crate::error::ErrorKind::NotAcceptable,
        format!(
            "Accept: {accept} names no format floe answers in; ask for one of {}",
            known.join(", ")
        ),
    ))
}

#[cfg(feature = "compute")]
fn query_request(body: QueryBody) -> Result<floe_compute::QueryRequest, crate::error::ApiError> {
    use crate::error::ApiError;
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_request("sql is empty; send one SQL query"));
    }
    let spec = extract::spec(body.ref_spec.as_deref().unwrap_or("main"))?;
    let namespace = body.namespace.as_deref().map(extract::key).transpose()?;
    let timeout = match body.timeout_ms {
        Some(0) => return Err(ApiError::bad_request("timeoutMs must be at least 1")),
        t => t.map(std::time::Duration::from_millis),
    };
    Ok(floe_compute::QueryRequest {
        sql: body.sql,
        spec,
        namespace,
        max_rows: body
            .max_rows
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        timeout,
    })
}
