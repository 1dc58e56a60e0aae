//! floe-rest: floe's only HTTP crate (DESIGN §1, §3, §4).
//!
//! This crate will own:
//! - the axum routers of the Iceberg REST catalog (`/iceberg`), of floe's own API
//!   (`/api/v1`), of runs and of queries, with their utoipa annotations;
//! - authentication: credentials in, a `Principal` out;
//! - the single mapping from domain errors to HTTP status and error body (rejected -> 4xx,
//!   outcome unknown -> 5xx carrying only an error id).
//!
//! It reaches the version store only through `floe-catalog`, whose entry points authorize;
//! from `floe-commits` it uses types only (a tidy test forbids calling its operations).
//! The default `compute` feature links `floe-compute`. Today it serves `GET /health` (the
//! process is up) and `GET /ready` (the store answers); the APIs arrive with later issues.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use floe_catalog::Catalog;

/// The whole HTTP surface of a floe server.
pub fn router(catalog: Catalog) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(catalog)
}

async fn health() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
}

async fn ready(State(catalog): State<Catalog>) -> Response {
    match catalog.ready() {
        Ok(()) => json(StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "unavailable", "message": e.to_string() }),
        ),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
