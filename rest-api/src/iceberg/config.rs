//! `GET /v1/config`: the prefix a warehouse (a ref spec) is served under, the endpoints
//! served, and how long idempotency keys are honoured.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use floe_catalog::IDEMPOTENCY_LIFETIME;
use serde::Deserialize;

use super::wire::CatalogConfig;
use super::{ENDPOINTS, prefix};
use crate::AppState;
use crate::extract::ApiQuery;
use crate::write::{self, Call, Reply};

#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    warehouse: Option<String>,
}

/// A warehouse that names no ref is a 404 here, so a typo fails at `load_catalog`, not
/// at the first write.
pub async fn config(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConfigQuery>,
    call: Call,
) -> Response {
    write::read(&state, call, move |cx| {
        let warehouse = q.warehouse.as_deref().unwrap_or("main");
        cx.catalog.resolve(&cx.principal, &prefix(warehouse)?)?;
        Reply::ok(&CatalogConfig {
            defaults: BTreeMap::new(),
            overrides: BTreeMap::from([("prefix".to_owned(), encode_prefix(warehouse))]),
            endpoints: ENDPOINTS,
            idempotency_key_lifetime: IDEMPOTENCY_LIFETIME,
        })
    })
    .await
}

/// A prefix as clients put it in URLs (as is): everything outside the characters a ref
/// spec uses percent-encoded, `/` included.
fn encode_prefix(spec: &str) -> String {
    let mut out = String::new();
    for b in spec.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@*:+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
