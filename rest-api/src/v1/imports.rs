//! `POST /api/v1/imports`: Parquet and CSV files into a table, as a run of kind `import`
//! (DESIGN §5). The body is `multipart/form-data`: a `request` part (JSON, `ImportBody`)
//! and one part per uploaded file. Files on the server's side are named in
//! `request.sources` and accepted only under the roots `floe serve --import-root` names.
//!
//! Uploads stream to a staging folder under the data folder (hashed with BLAKE3 on the
//! way), capped in total; the staging folder is removed when the import ends.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ErrorBody;
#[cfg(feature = "compute")]
use crate::write;

/// What to import where (the `request` part).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportBody {
    /// The table, `namespace.table`.
    pub table: String,
    /// The branch to land on (default `main`).
    #[serde(default)]
    pub branch: Option<String>,
    /// `create`, `append` or `replace`. Default: create when the table is absent;
    /// otherwise the import is refused and says to choose append or replace.
    #[serde(default)]
    pub mode: Option<String>,
    /// Infer and check the schema, answer the plan, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Import files even if they were imported into the table before.
    #[serde(default)]
    pub force: bool,
    /// Files on the server (`file://` URLs or absolute paths) under an import root.
    #[serde(default)]
    pub sources: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/imports", tag = "imports", operation_id = "import",
    params(("Idempotency-Key" = Option<String>, Header, description = "A UUIDv7; a retry with the same key and the same request and files lands once and gets the same answer")),
    request_body(content = String, content_type = "multipart/form-data",
        description = "A `request` part (JSON, ImportBody) and one part per file to upload (its filename says .parquet or .csv)."),
    responses(
        (status = 200, description = "A dry run: the schema and what each file would become", body = Object),
        (status = 201, description = "Imported and landed as one commit: the run, the commit, the snapshot, per-file outcomes", body = Object),
        (status = 400, description = "A bad request, unreadable or incompatible files (per file and column), a missing namespace", body = ErrorBody),
        (status = 403, description = "A server-side source outside every import root", body = ErrorBody),
        (status = 404, description = "The branch does not exist", body = ErrorBody),
        (status = 409, description = "The table exists (mode create), a file was imported before, or a concurrent change to the table: the run failed and changed nothing", body = ErrorBody),
        (status = 413, description = "The uploads exceed the server's import limit", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 500, description = "Server failure", body = ErrorBody),
        (status = 501, description = "This server was built without compute", body = ErrorBody),
    ))]
pub async fn import(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    run(state, uri, headers, multipart).await
}

#[cfg(not(feature = "compute"))]
async fn run(
    _state: AppState,
    _uri: axum::http::Uri,
    _headers: HeaderMap,
    _multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    axum::response::IntoResponse::into_response(crate::error::ApiError::new(
        crate::error::ErrorKind::NotImplemented,
        "this server was built without compute (the `compute` feature); imports need it",
    ))
}

#[cfg(feature = "compute")]
async fn run(
    state: AppState,
    uri: axum::http::Uri,
    headers: HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    use floe_catalog::AppliedRecord;

    use crate::error::{Api, ApiError};
    use crate::write::{Call, Ctx, Reply, Write};

    let multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return ApiError::bad_request(format!(
                "send the import as multipart/form-data with a `request` part: {}",
                e.body_text()
            ))
            .into_response();
        }
    };
    let staging = state
        .options
        .staging_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(state.catalog.new_uuid().to_string());
    // Removed however the import ends, even when the client goes away: the guard lives
    // in this future until the import's work takes it over.
    let guard = Staging(staging.clone());
    match staged(&state, multipart, &staging).await {
        Err(e) => e.into_response(),
        Ok((request, fingerprint)) => {
            // The import runs under the same idempotency flow as every write; its
            // fingerprint is the request part and each file's name and BLAKE3.
            let importer = state.importer.clone();
            let handle = tokio::runtime::Handle::current();
            let metrics = state.metrics.clone();
            // The import's call: its fingerprint stands in for the multipart body.
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
                    run: move |cx: &Ctx, idem: Option<&floe_catalog::IdemRequest>| {
                        let principal = &cx.principal;
                        let _staging = guard;
                        let request = floe_compute::ImportRequest {
                            idempotency: idem.cloned(),
                            ..request
                        };
                        let outcome = handle
                            .block_on(importer.run(principal, request))
                            .map_err(ApiError::from)?;
                        let status = if outcome.dry_run {
                            StatusCode::OK
                        } else {
                            metrics.commit();
                            StatusCode::CREATED
                        };
                        Reply::json(status, &outcome)
                    },
                    replay: move |cx: &Ctx, rec: &AppliedRecord| {
                        let (catalog, principal) = (&cx.catalog, &cx.principal);
                        let run = catalog.get_run(principal, &rec.detail)?;
                        let answer = catalog.run_answer(principal, &run)?;
                        Reply::json(
                            StatusCode::CREATED,
                            &floe_compute::ImportOutcome::replayed(&run, answer, rec.head),
                        )
                    },
                },
            )
            .await
        }
    }
}

/// A staging folder, removed when dropped.
#[cfg(feature = "compute")]
#[derive(Debug)]
struct Staging(std::path::PathBuf);

#[cfg(feature = "compute")]
impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stages the uploads and reads the request: the import to run, and the bytes its
/// idempotency fingerprint covers.
#[cfg(feature = "compute")]
async fn staged(
    state: &AppState,
    mut multipart: axum::extract::Multipart,
    staging: &std::path::Path,
) -> Result<(floe_compute::ImportRequest, Vec<u8>), crate::error::ApiError> {
    use axum::http::StatusCode;
    use floe_compute::{ImportFile, ImportMode, ImportRequest};
    use tokio::io::AsyncWriteExt;

    use crate::error::{ApiError, ErrorKind};
    use crate::extract;

    let limit = state.options.import_max_bytes;
    let mut body: Option<ImportBody> = None;
    let mut request_part = Vec::new();
    let mut files = Vec::new();
    let mut total: u64 = 0;
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
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        let part = field.name().unwrap_or_default().to_owned();
        if part == "request" {
            let bytes = field.bytes().await.map_err(broken)?;
            if bytes.len() > crate::BODY_BYTES_MAX {
                return Err(ApiError::bad_request("the request part is too large"));
            }
            body = Some(extract::json(&bytes)?);
            request_part = bytes.to_vec();
            continue;
        }
        let name = field
            .file_name()
            .map(str::to_owned)
            .unwrap_or_else(|| part.clone());
        if name.is_empty() {
            return Err(ApiError::bad_request(
                "each file part needs a filename (it says .parquet or .csv)",
            ));
        }
        tokio::fs::create_dir_all(staging)
            .await
            .map_err(|e| ApiError::internal(&format!("creating the staging folder: {e}")))?;
        let path = staging.join(files.len().to_string());
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::internal(&format!("staging an upload: {e}")))?;
        let mut hasher = blake3::Hasher::new();
        let mut size: u64 = 0;
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            size += chunk.len() as u64;
            total += chunk.len() as u64;
            if total > limit {
                return Err(ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "the uploads exceed this server's import limit of {limit} bytes (floe serve --import-max-bytes); import fewer or smaller files, or name server-side files under an --import-root"
                    ),
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(&format!("staging an upload: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| ApiError::internal(&format!("staging an upload: {e}")))?;
        files.push(ImportFile {
            name,
            path,
            blake3: hasher.finalize().to_hex().to_string(),
            size,
            identity: None,
            held: None,
        });
    }
    let Some(body) = body else {
        return Err(ApiError::bad_request(
            "the multipart body has no `request` part (JSON: table, branch, mode, dryRun, force, sources)",
        ));
    };
    // Each server-side source stays open (one descriptor) until the import ends.
    if body.sources.len() > floe_compute::source::SERVER_SOURCES_MAX {
        return Err(ApiError::bad_request(format!(
            "an import names at most {} server-side files (SERVER_SOURCES_MAX), got {}; import them in several runs",
            floe_compute::source::SERVER_SOURCES_MAX,
            body.sources.len()
        )));
    }
    for source in &body.sources {
        if source.starts_with("s3://") {
            let room = floe_compute::source::SERVER_SOURCES_MAX.saturating_sub(files.len());
            files.extend(s3_files(state, source, staging, room).await?);
        } else {
            files.push(server_file(state, source).await?);
        }
    }
    let table = extract::key(&body.table)?;
    if table.element_count() < 2 {
        return Err(ApiError::bad_request(format!(
            "name the table as namespace.table, got {}",
            body.table
        )));
    }
    let branch = extract::spec(body.branch.as_deref().unwrap_or("main"))?;
    let mode = match body.mode.as_deref() {
        None => None,
        Some(m) => Some(ImportMode::parse(m).ok_or_else(|| {
            ApiError::bad_request(format!("mode must be create, append or replace, got {m:?}"))
        })?),
    };
    let mut fingerprint = request_part;
    for f in &files {
        fingerprint.push(0);
        fingerprint.extend_from_slice(f.name.as_bytes());
        fingerprint.push(0);
        fingerprint.extend_from_slice(f.blake3.as_bytes());
    }
    let request = ImportRequest {
        table,
        branch,
        mode,
        dry_run: body.dry_run,
        force: body.force,
        files,
        idempotency: None,
    };
    Ok((request, fingerprint))
}

/// The objects an `s3://` source names (one, or those a glob matches, at most `room`),
/// confined to the import prefixes, downloaded into the staging folder.
#[cfg(feature = "compute")]
async fn s3_files(
    state: &AppState,
    source: &str,
    staging: &std::path::Path,
    room: usize,
) -> Result<Vec<floe_compute::ImportFile>, crate::error::ApiError> {
    use crate::error::{ApiError, ErrorKind};
    use floe_compute::s3_sources::S3SourceError;

    let sources = state.options.s3_sources.clone();
    let limit = state.options.import_max_bytes;
    if sources.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ImportRootRequired,
            format!(
                "this server reads no objects of a store ({source}); upload the file, or start the server with --import-prefix s3://bucket/prefix"
            ),
        ));
    }
    let (source, staging) = (source.to_owned(), staging.to_owned());
    let first = state.catalog.new_uuid();
    tokio::task::spawn_blocking(move || {
        let refused = |e: S3SourceError| match e {
            S3SourceError::Outside(_) => {
                ApiError::new(ErrorKind::OutsideImportRoots, e.to_string())
            }
            S3SourceError::Invalid(_) => ApiError::bad_request(e.to_string()),
            S3SourceError::Store { .. } => ApiError::new(ErrorKind::Unavailable, e.to_string()),
        };
        std::fs::create_dir_all(&staging)
            .map_err(|e| ApiError::internal(&format!("creating the staging folder: {e}")))?;
        let urls = sources.expand(&source, room).map_err(refused)?;
        // The objects together stay within the import limit, as uploads do.
        let mut left = limit;
        urls.iter()
            .enumerate()
            .map(|(n, url)| {
                let to = staging.join(format!("s3-{}-{n}", first.simple()));
                let file = sources.download(url, &to, left).map_err(refused)?;
                left -= file.size;
                Ok(file)
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal(&format!("downloading a source: {e}")))?
}

/// A server-side file named in `sources`, confined to the import roots.
#[cfg(feature = "compute")]
async fn server_file(
    state: &AppState,
    source: &str,
) -> Result<floe_compute::ImportFile, crate::error::ApiError> {
    use crate::error::{ApiError, ErrorKind};

    let roots = state.options.import_roots.clone();
    if roots.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ImportRootRequired,
            format!(
                "this server reads no server-side files ({source}); upload the file, or start the server with --import-root naming the folder"
            ),
        ));
    }
    let raw = source.strip_prefix("file://").unwrap_or(source).to_owned();
    let source = source.to_owned();
    tokio::task::spawn_blocking(move || {
        use floe_compute::SourceError;
        floe_compute::ImportFile::server_side(&source, std::path::Path::new(&raw), &roots).map_err(
            |e| match e {
                SourceError::Outside(_) => {
                    ApiError::new(ErrorKind::OutsideImportRoots, e.to_string())
                }
                other => ApiError::bad_request(other.to_string()),
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(&format!("hashing a source: {e}")))?
}
