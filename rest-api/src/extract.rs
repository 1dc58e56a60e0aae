//! Extractors and parsers at the edge: path, query and body errors become `ApiError`s with
//! floe's error shape (never axum's plain-text rejections), and raw strings become the
//! validated newtypes of `floe-commits` before anything else sees them (STYLE rule 2).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use floe_commits::{ContentKey, Hash, RefName, RefSpec};
use serde::de::DeserializeOwned;

use crate::error::{Api, ApiError, ApiResult, ErrorKind};

/// The separator Iceberg uses between namespace levels in a URL; floe accepts it too.
const UNIT_SEPARATOR: char = '\u{1f}';

/// A path extractor whose rejection is a 400 in the request's API's error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(e) => Err(
                ApiError::bad_request(format!("invalid path: {}", e.body_text()))
                    .render(Api::of_parts(parts)),
            ),
        }
    }
}

/// A query extractor whose rejection is a 400 in the request's API's error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(ApiQuery(t)),
            Err(e) => Err(
                ApiError::bad_request(format!("invalid query: {}", e.body_text()))
                    .render(Api::of_parts(parts)),
            ),
        }
    }
}

/// Reads a request body whole, at most `BODY_BYTES_MAX` bytes: a larger one is a 413,
/// refused at once when its declared length says so, before any of it is read.
pub async fn body_bytes(headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let max = crate::BODY_BYTES_MAX;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {max} bytes (BODY_BYTES_MAX); send less"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // The only error a length limit adds is its own; others are the connection's.
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Parses a JSON body, saying where it is wrong.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub fn spec(text: &str) -> ApiResult<RefSpec> {
    RefSpec::parse(text).map_err(|e| ApiError::bad_request(format!("ref spec {text:?}: {e}")))
}

pub fn ref_name(text: &str) -> ApiResult<RefName> {
    RefName::parse(text).map_err(|e| ApiError::bad_request(format!("ref name {text:?}: {e}")))
}

/// An expected head: a full 64-character hash.
pub fn hash(text: &str, what: &str) -> ApiResult<Hash> {
    Hash::parse(text)
        .map_err(|e| ApiError::bad_request(format!("{what} must be a full 64-character hash: {e}")))
}

pub fn opt_hash(text: Option<&str>, what: &str) -> ApiResult<Option<Hash>> {
    text.map(|t| hash(t, what)).transpose()
}

/// A key or namespace in a URL or a body: elements joined by `.`, or by U+001F when an
/// element itself holds a dot (the Iceberg REST convention).
pub fn key(text: &str) -> ApiResult<ContentKey> {
    let parts: Vec<&str> = if text.contains(UNIT_SEPARATOR) {
        text.split(UNIT_SEPARATOR).collect()
    } else {
        text.split('.').collect()
    };
    ContentKey::new(parts).map_err(|e| ApiError::bad_request(format!("key {text:?}: {e}")))
}

pub fn key_of(elements: &[String]) -> ApiResult<ContentKey> {
    ContentKey::new(elements)
        .map_err(|e| ApiError::bad_request(format!("namespace {elements:?}: {e}")))
}

/// Page tokens for key-ordered listings: the hex of the last key's stored bytes.
pub fn key_token(key: &ContentKey) -> String {
    hex::encode(key.as_bytes())
}

pub fn parse_key_token(token: Option<&str>) -> ApiResult<Option<ContentKey>> {
    let Some(token) = token else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(format!(
            "pageToken {token:?} is not one this server handed out"
        ))
    };
    let bytes = hex::decode(token).map_err(|_| bad())?;
    ContentKey::from_stored(bytes.into())
        .map(Some)
        .map_err(|_| bad())
}

/// A page size: at least 1, at most `max`, `default` when absent.
pub fn page_size(requested: Option<u32>, default: usize, max: usize) -> usize {
    requested.map_or(default, |n| (n as usize).clamp(1, max))
}
