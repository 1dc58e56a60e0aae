//! `GET /v1/config`: the prefix a warehouse (a ref spec) is served under, the endpoints
//! served, and how long idempotency keys are honoured.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::State;
use axum::response::Response;
use floe_catalog::IDEMPOTENCY_LIFETIME;
use serde::Deserialize;
use serde_json::value::RawValue;

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
            endpoints: endpoints_json(),
            idempotency_key_lifetime: IDEMPOTENCY_LIFETIME,
        })
    })
    .await
}

/// `ENDPOINTS` as a JSON array, serialized once: most of a config answer's bytes, the
/// same in every answer.
fn endpoints_json() -> &'static RawValue {
    static JSON: LazyLock<Box<RawValue>> = LazyLock::new(|| {
        serde_json::value::to_raw_value(ENDPOINTS).expect("a list of strings serializes")
    });
    &JSON
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_serialized_once_are_the_list() {
        let list: Vec<String> = serde_json::from_str(endpoints_json().get()).unwrap();
        assert_eq!(list, ENDPOINTS);
    }
}
