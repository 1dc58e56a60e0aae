//! Snapshot tests of the wire (expect-test): for one fixed catalog, the bodies both APIs
//! answer — Iceberg's config, lists, `LoadTableResult` and `ErrorModel`s, floe's refs and
//! `ErrorBody`s — and the error table itself. A change to the wire shows as a diff here;
//! `UPDATE_EXPECT=1 cargo test -p floe-rest snapshots` accepts it.
//!
//! What varies from run to run is named, not hidden: UUIDs and hashes become `<uuid-N>`
//! and `<hash-N>` in order of first appearance (equal values keep equal names), the
//! warehouse folder `<warehouse>`, error ids `<error-id>`, and the times Iceberg's
//! metadata builder reads from the system clock `<ms>`.

use std::collections::HashMap;
use std::sync::Arc;

use expect_test::{Expect, expect};
use floe_catalog::{Catalog, SequentialIds, Warehouse};
use floe_commits::ManualClock;
use serde_json::Value;

use crate::error::{Api, ApiError, ErrorKind};
use crate::test_server::{send, serve};

/// A server over a fresh in-memory catalog at a fixed time with deterministic ids, and a
/// warehouse folder.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    warehouse: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let warehouse = tempfile::tempdir().unwrap();
        let catalog = Catalog::in_memory_at(Arc::new(ManualClock::new(1_750_000_000_000)))
            .with_ids(Arc::new(SequentialIds::new(15)))
            .with_warehouse(Warehouse::open(warehouse.path()).unwrap());
        let addr = serve(&runtime, crate::router(catalog));
        Fixture {
            runtime,
            addr,
            warehouse,
        }
    }

    /// Sends a request and checks its status and (normalized) body against `expected`.
    /// Sends a request, checks its status, and returns its normalized body.
    fn call(&self, method: &str, path: &str, body: &str, status: u16) -> String {
        let (got, _, answer) = send(self.addr, method, path, &[], body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        self.normalize(&answer)
    }

    /// Sends a request and checks its status and (normalized) body against `expected`.
    fn check(&self, method: &str, path: &str, body: &str, status: u16, expected: Expect) {
        expected.assert_eq(&self.call(method, path, body, status));
    }

    fn normalize(&self, body: &str) -> String {
        let Ok(mut value) = serde_json::from_str::<Value>(body) else {
            return body.to_owned();
        };
        let root = self.warehouse.path().to_str().unwrap().to_owned();
        let mut names = Names::default();
        redact(&mut value, &root, &mut names);
        serde_json::to_string_pretty(&value).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The server's tasks end with the runtime.
        let _ = &self.runtime;
    }
}

/// The names given to varying values, in order of first appearance.
#[derive(Default)]
struct Names(HashMap<String, String>, usize, usize);

impl Names {
    fn name(&mut self, value: &str, kind: &str) -> String {
        if let Some(n) = self.0.get(value) {
            return n.clone();
        }
        let counter = if kind == "uuid" {
            &mut self.1
        } else {
            &mut self.2
        };
        *counter += 1;
        let name = format!("<{kind}-{counter}>");
        self.0.insert(value.to_owned(), name.clone());
        name
    }
}

fn redact(value: &mut Value, root: &str, names: &mut Names) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match k.as_str() {
                    "errorId" => *v = Value::String("<error-id>".into()),
                    "last-updated-ms" | "timestamp-ms" => *v = Value::String("<ms>".into()),
                    _ => redact(v, root, names),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, root, names)),
        Value::String(s) => *s = redact_text(s, root, names),
        _ => {}
    }
}

/// Replaces the warehouse folder, UUIDs and 64-hex hashes inside a string.
fn redact_text(text: &str, root: &str, names: &mut Names) -> String {
    let text = text.replace(root, "<warehouse>");
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let uuid = bytes.len() - i >= 36
            && (0..36).all(|j| match j {
                8 | 13 | 18 | 23 => bytes[i + j] == b'-',
                _ => bytes[i + j].is_ascii_hexdigit(),
            });
        let hash = bytes.len() - i >= 64 && bytes[i..i + 64].iter().all(u8::is_ascii_hexdigit);
        if uuid {
            out.push_str(&names.name(&text[i..i + 36], "uuid"));
            i += 36;
        } else if hash {
            out.push_str(&names.name(&text[i..i + 64], "hash"));
            i += 64;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

const SCHEMA: &str = r#"{"type":"struct","schema-id":0,"fields":[
    {"id":1,"name":"id","required":true,"type":"long"},
    {"id":2,"name":"region","required":false,"type":"string"}]}"#;

#[test]
fn the_iceberg_wire() {
    let f = Fixture::new();
    f.check(
        "GET",
        "/iceberg/v1/config?warehouse=dev%2Fa",
        "",
        404,
        expect![[r#"
            {
              "error": {
                "code": 404,
                "message": "ref dev/a does not exist",
                "type": "NotFoundException"
              }
            }"#]],
    );
    f.check(
        "GET",
        "/iceberg/v1/config?warehouse=main",
        "",
        200,
        expect![[r#"
            {
              "defaults": {},
              "endpoints": [
                "GET /v1/{prefix}/namespaces",
                "POST /v1/{prefix}/namespaces",
                "GET /v1/{prefix}/namespaces/{namespace}",
                "HEAD /v1/{prefix}/namespaces/{namespace}",
                "DELETE /v1/{prefix}/namespaces/{namespace}",
                "POST /v1/{prefix}/namespaces/{namespace}/properties",
                "GET /v1/{prefix}/namespaces/{namespace}/tables",
                "POST /v1/{prefix}/namespaces/{namespace}/tables",
                "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
                "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
                "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
                "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
                "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
                "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
                "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/unregister",
                "POST /v1/{prefix}/namespaces/{namespace}/register",
                "POST /v1/{prefix}/tables/rename",
                "POST /v1/{prefix}/transactions/commit",
                "GET /v1/{prefix}/namespaces/{namespace}/views",
                "POST /v1/{prefix}/namespaces/{namespace}/views",
                "GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
                "HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
                "POST /v1/{prefix}/namespaces/{namespace}/views/{view}",
                "DELETE /v1/{prefix}/namespaces/{namespace}/views/{view}",
                "POST /v1/{prefix}/views/rename",
                "POST /v1/{prefix}/namespaces/{namespace}/register-view"
              ],
              "idempotency-key-lifetime": "PT30M",
              "overrides": {
                "prefix": "main"
              }
            }"#]],
    );
    f.check(
        "POST",
        "/iceberg/v1/main/namespaces",
        r#"{"namespace":["db"],"properties":{"owner":"ana"}}"#,
        200,
        expect![[r#"
            {
              "namespace": [
                "db"
              ],
              "properties": {
                "owner": "ana"
              }
            }"#]],
    );
    f.check(
        "GET",
        "/iceberg/v1/main/namespaces",
        "",
        200,
        expect![[r#"
            {
              "namespaces": [
                [
                  "db"
                ]
              ]
            }"#]],
    );
    f.check(
        "GET",
        "/iceberg/v1/main/namespaces/db",
        "",
        200,
        expect![[r#"
            {
              "namespace": [
                "db"
              ],
              "properties": {
                "owner": "ana"
              }
            }"#]],
    );
    let create = format!(r#"{{"name":"t","schema":{SCHEMA},"properties":{{"k":"v"}}}}"#);
    let created = f.call(
        "POST",
        "/iceberg/v1/main/namespaces/db/tables",
        &create,
        200,
    );
    expect![[r#"
            {
              "config": {},
              "metadata": {
                "current-schema-id": 0,
                "default-sort-order-id": 0,
                "default-spec-id": 0,
                "format-version": 2,
                "last-column-id": 2,
                "last-partition-id": 999,
                "last-sequence-number": 0,
                "last-updated-ms": "<ms>",
                "location": "file://<warehouse>/db/t-<uuid-1>",
                "partition-specs": [
                  {
                    "fields": [],
                    "spec-id": 0
                  }
                ],
                "properties": {
                  "k": "v"
                },
                "refs": {},
                "schemas": [
                  {
                    "fields": [
                      {
                        "id": 1,
                        "name": "id",
                        "required": true,
                        "type": "long"
                      },
                      {
                        "id": 2,
                        "name": "region",
                        "required": false,
                        "type": "string"
                      }
                    ],
                    "schema-id": 0,
                    "type": "struct"
                  }
                ],
                "sort-orders": [
                  {
                    "fields": [],
                    "order-id": 0
                  }
                ],
                "table-uuid": "<uuid-1>"
              },
              "metadata-location": "file://<warehouse>/db/t-<uuid-1>/metadata/00000-<uuid-2>.metadata.json"
            }"#]]
    .assert_eq(&created);
    f.check(
        "GET",
        "/iceberg/v1/main/namespaces/db/tables?pageSize=1",
        "",
        200,
        expect![[r#"
            {
              "identifiers": [
                {
                  "name": "t",
                  "namespace": [
                    "db"
                  ]
                }
              ],
              "next-page-token": "64620074"
            }"#]],
    );
    // A load answers exactly what the create answered.
    assert_eq!(
        f.call("GET", "/iceberg/v1/main/namespaces/db/tables/t", "", 200),
        created
    );
    // Errors: a missing table, a missing view (the spec's bare ErrorModel beside the
    // wrapped one), a body that is not JSON, a conflict, an unknown route.
    f.check(
        "GET",
        "/iceberg/v1/main/namespaces/db/tables/nope",
        "",
        404,
        expect![[r#"
            {
              "error": {
                "code": 404,
                "message": "table db.nope does not exist",
                "type": "NoSuchTableException"
              }
            }"#]],
    );
    f.check(
        "GET",
        "/iceberg/v1/main/namespaces/db/views/nope",
        "",
        404,
        expect![[r#"
            {
              "code": 404,
              "error": {
                "code": 404,
                "message": "view db.nope does not exist",
                "type": "NoSuchViewException"
              },
              "message": "view db.nope does not exist",
              "type": "NoSuchViewException"
            }"#]],
    );
    f.check(
        "POST",
        "/iceberg/v1/main/namespaces",
        "{",
        400,
        expect![[r#"
            {
              "error": {
                "code": 400,
                "message": "malformed request body: EOF while parsing an object at line 1 column 1",
                "type": "BadRequestException"
              }
            }"#]],
    );
    f.check(
        "POST",
        "/iceberg/v1/main/namespaces/db/tables",
        &create,
        409,
        expect![[r#"
            {
              "error": {
                "code": 409,
                "message": "db.t already exists",
                "type": "AlreadyExistsException"
              }
            }"#]],
    );
    f.check(
        "GET",
        "/iceberg/v1/main/nope",
        "",
        404,
        expect![[r#"
        {
          "error": {
            "code": 404,
            "message": "no route GET /iceberg/v1/main/nope; see /api/v1/openapi.json",
            "type": "NotFoundException"
          }
        }"#]],
    );
}

#[test]
fn the_floe_wire() {
    let f = Fixture::new();
    f.check(
        "GET",
        "/api/v1/refs",
        "",
        200,
        expect![[r#"
        {
          "refs": [
            {
              "createdAt": "2025-06-15T15:06:40Z",
              "createdAtMs": 1750000000000,
              "createdBy": "floe",
              "head": "<hash-1>",
              "kind": "branch",
              "name": "main"
            }
          ]
        }"#]],
    );
    f.check(
        "POST",
        "/api/v1/trees/main/namespaces",
        r#"{"namespace":["db"],"properties":{"owner":"ana"}}"#,
        201,
        expect![[r#"
            {
              "head": "<hash-1>",
              "namespace": {
                "contentId": "<uuid-1>",
                "elements": [
                  "db"
                ],
                "namespace": "db",
                "properties": {
                  "owner": "ana"
                }
              }
            }"#]],
    );
    f.check(
        "GET",
        "/api/v1/trees/main/namespaces",
        "",
        200,
        expect![[r#"
            {
              "head": "<hash-1>",
              "namespaces": [
                {
                  "contentId": "<uuid-1>",
                  "elements": [
                    "db"
                  ],
                  "namespace": "db",
                  "properties": {
                    "owner": "ana"
                  }
                }
              ]
            }"#]],
    );
    f.check(
        "GET",
        "/api/v1/refs/nope",
        "",
        404,
        expect![[r#"
        {
          "errorId": "<error-id>",
          "message": "ref nope does not exist",
          "status": 404,
          "type": "RefNotFound"
        }"#]],
    );
    f.check(
        "POST",
        "/api/v1/refs",
        r#"{"name":"main"}"#,
        409,
        expect![[r#"
            {
              "errorId": "<error-id>",
              "message": "ref main already exists",
              "status": 409,
              "type": "RefAlreadyExists"
            }"#]],
    );
    f.check(
        "POST",
        "/api/v1/refs",
        r#"{"nom":"x"}"#,
        400,
        expect![[r#"
            {
              "errorId": "<error-id>",
              "message": "invalid JSON body: unknown field `nom`, expected one of `name`, `kind`, `from` at line 1 column 6",
              "status": 400,
              "type": "BadRequest"
            }"#]],
    );
    f.check(
        "DELETE",
        "/health",
        "",
        405,
        expect![[r#"
        {
          "errorId": "<error-id>",
          "message": "DELETE is not allowed on /health; see /api/v1/openapi.json",
          "status": 405,
          "type": "MethodNotAllowed"
        }"#]],
    );
}

/// The error table, row by row: the status on each API, floe's type and Iceberg's
/// exception. A change of any of them is a change of the wire.
#[test]
fn the_error_table() {
    let rows: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| {
            let row = k.row();
            let e = ApiError::new(*k, "m");
            let (floe, iceberg) = (e.render(Api::Floe), e.render(Api::Iceberg));
            format!(
                "{:<22} {} {:<22} {} {}{}",
                row.floe,
                floe.status().as_u16(),
                row.iceberg,
                iceberg.status().as_u16(),
                if floe.headers().contains_key("retry-after") {
                    "retry-after"
                } else {
                    ""
                },
                if iceberg.headers().contains_key("retry-after") {
                    " (iceberg too)"
                } else {
                    ""
                },
            )
        })
        .collect();
    expect![[r#"
        BadRequest             400 BadRequestException    400 
        Forbidden              403 ForbiddenException     403 
        Unauthorized           401 NotAuthorizedException 401 
        DefaultBranch          400 BadRequestException    400 
        ReadOnlyRef            400 BadRequestException    400 
        NamespaceNotFound      404 NoSuchNamespaceException 404 
        NamespaceAlreadyExists 409 AlreadyExistsException 409 
        NotANamespace          409 AlreadyExistsException 409 
        NamespaceNotEmpty      409 NamespaceNotEmptyException 409 
        Contention             409 CommitFailedException  409 retry-after
        TableNotFound          404 NoSuchTableException   404 
        TableAlreadyExists     409 AlreadyExistsException 409 
        SameTable              409 AlreadyExistsException 409 
        ViewNotFound           404 NoSuchViewException    404 
        ViewAlreadyExists      409 AlreadyExistsException 409 
        CommitFailed           409 CommitFailedException  409 
        RunSealed              409 CommitFailedException  409 
        RunNotFound            404 NotFoundException      404 
        RunNotPromotable       409 CommitFailedException  409 
        RunNotRevertible       409 CommitFailedException  409 
        Unsupported            400 BadRequestException    400 
        OutsideWarehouse       400 BadRequestException    400 
        FileNotFound           400 BadRequestException    400 
        RefNotFound            404 NotFoundException      404 
        CommitNotFound         404 NotFoundException      404 
        NotInHistory           404 NotFoundException      404 
        AmbiguousHash          400 BadRequestException    400 
        LimitExceeded          400 BadRequestException    400 
        RefAlreadyExists       409 AlreadyExistsException 409 
        NotABranch             400 BadRequestException    400 
        TagImmutable           400 BadRequestException    400 
        ReservedRef            403 ForbiddenException     403 
        ReferenceConflict      409 CommitFailedException  409 
        Conflict               409 CommitFailedException  409 
        NotFastForward         409 CommitFailedException  409 
        UnprocessableEntity    422 UnprocessableEntityException 422 
        IdempotencyKeyReused   422 UnprocessableEntityException 422 
        IdempotencyInFlight    409 ServiceUnavailableException 503 retry-after (iceberg too)
        PayloadTooLarge        413 BadRequestException    413 
        NotFound               404 NotFoundException      404 
        MethodNotAllowed       405 MethodNotAllowedException 405 
        NotAcceptable          406 BadRequestException    406 
        NotImplemented         501 UnsupportedOperationException 501 
        InvalidQuery           400 BadRequestException    400 
        TableNotFound          400 BadRequestException    400 
        TableUnreadable        422 UnprocessableEntityException 422 
        QueryTimeout           422 UnprocessableEntityException 422 
        QueryMemoryExceeded    422 UnprocessableEntityException 422 
        InvalidImport          400 BadRequestException    400 
        InvalidProject         400 BadRequestException    400 
        IncompatibleFiles      400 BadRequestException    400 
        DuplicateImport        409 AlreadyExistsException 409 
        ImportRootRequired     403 ForbiddenException     403 
        OutsideImportRoots     403 ForbiddenException     403 
        Unavailable            503 ServiceUnavailableException 503 retry-after (iceberg too)
        InternalError          500 InternalServerError    500 "#]]
    .assert_eq(&rows.join("\n"));
}
