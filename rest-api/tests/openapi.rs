//! The committed OpenAPI document (`openapi/floe-api.json`) is exactly what the code
//! describes. After changing a route or a wire type, regenerate it with
//! `FLOE_UPDATE_OPENAPI=1 cargo test -p floe-rest --test openapi` (or `floe openapi`).

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/floe-api.json")
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = floe_rest::v1::openapi_document();
    if std::env::var_os("FLOE_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
    assert!(
        on_disk == generated,
        "openapi/floe-api.json differs from the document the code describes; regenerate it with \
         FLOE_UPDATE_OPENAPI=1 cargo test -p floe-rest --test openapi, and review the diff"
    );
}

#[test]
fn every_operation_documents_its_errors_with_the_one_error_shape() {
    let doc: serde_json::Value = serde_json::from_str(&floe_rest::v1::openapi_document()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or("?");
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    if schema != "#/components/schemas/ErrorBody" {
                        missing.push(format!("{id} {status}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "error responses without ErrorBody: {missing:?}"
    );
}
