//! The authorization matrix (issue 19): principals {anonymous, bad token, reader, dev,
//! releaser, admin} x every route of both APIs (floe's OpenAPI document and the endpoints
//! the Iceberg config lists) against a real `floe serve --auth required`. Every route has
//! a row (a route missing from the matrix, or a row for a route that is gone, fails), each
//! cell is the status the spec gives (derived from what each permission means, not from
//! what the server answers), and every denial leaves the heads, the reflog and the
//! idempotency records as they were; a 403 names who may not do what, where.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Running, open_backend};

const ADMIN: &str = "admin-token-0123456789abcdef";
const BAD: &str = "floe_pat_0011223344556677_bad";

const POLICY: &str = r#"
protected = ["main", "release/*"]
[roles.reader]
rules = [{ refs = ["**"], allow = ["read"] }]
[roles.dev]
rules = [
  { refs = ["**"], allow = ["read"] },
  { refs = ["dev/**"], allow = ["write", "create", "delete", "run"] },
  { refs = ["main"], allow = ["merge"] },
]
[roles.releaser]
rules = [
  { refs = ["**"], allow = ["read"] },
  { refs = ["release/**"], allow = ["create", "merge", "manage"] },
]
[principals]
reader = ["reader"]
dev = ["dev"]
releaser = ["releaser"]
"#;

/// The principals, in the order of a row's cells; `{who}` in a row is the name.
const WHO: [&str; 6] = ["anonymous", "bad", "reader", "dev", "releaser", "admin"];

/// The matrix: `METHOD ROUTE | PATH | BODY | CELLS`. ROUTE is as the documents name it;
/// PATH and BODY are concrete, with `{who}` the principal's name (so that each allowed
/// principal writes objects of its own) and `{var}` a fixture's value. A BODY is JSON,
/// `import:` + the request part of an import (with one CSV file), or `run:` + the options
/// of a run (with the one-model project). CELLS are in `WHO` order: `200` is any 2xx.
///
/// What the cells follow (the policy above; `policy.rs` says what each permission means):
/// reads need `read` on the ref (a bare hash: on `**`); lists and run listings show what
/// is readable; the global reflog, tokens, the policy and maintenance need `manage` on
/// `**`; a merge needs `merge` on the target and `read` on the source, a new ref `create`
/// on its name and `read` on its source; writes (commits, Iceberg writes, imports,
/// cherry-picks, reverts) need `write`; assigning needs `manage`; starting or cancelling a
/// run needs `manage` until run workers are isolated; promoting a run needs `merge` on its
/// target. Protected branches (`main`, `release/*`) take only merges unless one holds
/// `manage` there: the releaser writes, creates and deletes `release/*` by its `manage`.
const MATRIX: &str = r#"
GET /health | /health | | 200 200 200 200 200 200
GET /ready | /ready | | 200 200 200 200 200 200
GET /metrics | /metrics | | 401 401 200 200 200 200
GET /api/v1/openapi.json | /api/v1/openapi.json | | 401 401 200 200 200 200
GET /api/v1/refs | /api/v1/refs | | 401 401 200 200 200 200
POST /api/v1/refs | /api/v1/refs | {"name":"dev/c-{who}","from":"main"} | 401 401 403 200 403 200
POST /api/v1/refs | /api/v1/refs | {"name":"release/c-{who}","from":"main"} | 401 401 403 403 200 200
POST /api/v1/refs | /api/v1/refs | {"name":"tag-{who}","kind":"tag","from":"dev/x"} | 401 401 403 403 403 200
GET /api/v1/refs/{name} | /api/v1/refs/dev%2Fx | | 401 401 200 200 200 200
PUT /api/v1/refs/{name} | /api/v1/refs/dev%2Fa-{who} | {"target":"main"} | 401 401 403 403 403 200
PUT /api/v1/refs/{name} | /api/v1/refs/release%2Fa-{who} | {"target":"main"} | 401 401 403 403 200 200
DELETE /api/v1/refs/{name} | /api/v1/refs/dev%2Fdel-{who} | | 401 401 403 200 403 200
DELETE /api/v1/refs/{name} | /api/v1/refs/release%2Fdel-{who} | | 401 401 403 403 200 200
GET /api/v1/reflog | /api/v1/reflog | | 401 401 403 403 403 200
GET /api/v1/reflog | /api/v1/reflog?ref=main | | 401 401 200 200 200 200
GET /api/v1/trees/{ref}/log | /api/v1/trees/dev%2Fx/log | | 401 401 200 200 200 200
GET /api/v1/trees/{ref}/entries | /api/v1/trees/main/entries | | 401 401 200 200 200 200
GET /api/v1/commits/{spec} | /api/v1/commits/{src} | | 401 401 200 200 200 200
GET /api/v1/diff/{from}/{to} | /api/v1/diff/main/dev%2Fx | | 401 401 200 200 200 200
GET /api/v1/trees/{ref}/namespaces | /api/v1/trees/main/namespaces | | 401 401 200 200 200 200
POST /api/v1/trees/{ref}/namespaces | /api/v1/trees/dev%2Fx/namespaces | {"namespace":["n_{who}"]} | 401 401 403 200 403 200
POST /api/v1/trees/{ref}/namespaces | /api/v1/trees/main/namespaces | {"namespace":["nm_{who}"]} | 401 401 403 403 403 200
POST /api/v1/trees/{ref}/namespaces | /api/v1/trees/release%2F1/namespaces | {"namespace":["nr_{who}"]} | 401 401 403 403 200 200
GET /api/v1/trees/{ref}/namespaces/{namespace} | /api/v1/trees/main/namespaces/db | | 401 401 200 200 200 200
DELETE /api/v1/trees/{ref}/namespaces/{namespace} | /api/v1/trees/dev%2Fx/namespaces/dns_{who} | | 401 401 403 200 403 200
POST /api/v1/trees/{ref}/namespaces/{namespace}/properties | /api/v1/trees/dev%2Fx/namespaces/db/properties | {"updates":{"p-{who}":"1"}} | 401 401 403 200 403 200
POST /api/v1/trees/{ref}/merge | /api/v1/trees/main/merge | {"source":"dev/m-{who}"} | 401 401 403 200 403 200
POST /api/v1/trees/{ref}/merge | /api/v1/trees/release%2F1/merge | {"source":"dev/mr-{who}"} | 401 401 403 403 200 200
POST /api/v1/trees/{ref}/cherry-pick | /api/v1/trees/dev%2Ft-{who}/cherry-pick | {"commit":"{pick}"} | 401 401 403 200 403 200
POST /api/v1/trees/{ref}/revert | /api/v1/trees/dev%2Ft-{who}/revert | {"commit":"{src}"} | 401 401 403 200 403 200
POST /api/v1/query | /api/v1/query | {"sql":"SELECT count(*) AS n FROM db.t","ref":"main"} | 401 401 200 200 200 200
POST /api/v1/imports | /api/v1/imports | import:{"table":"db.i_{who}","branch":"dev/x"} | 401 401 403 200 403 200
POST /api/v1/imports | /api/v1/imports | import:{"table":"db.im_{who}","branch":"main"} | 401 401 403 403 403 200
GET /api/v1/runs | /api/v1/runs | | 401 401 200 200 200 200
POST /api/v1/runs | /api/v1/runs | run:{"ref":"dev/x"} | 401 401 403 R 403 200
POST /api/v1/runs | /api/v1/runs | run:{"ref":"release/1"} | 401 401 403 403 200 200
GET /api/v1/runs/{id} | /api/v1/runs/{pipe_run} | | 401 401 200 200 200 200
GET /api/v1/runs/{id}/logs | /api/v1/runs/{pipe_run}/logs | | 401 401 200 200 200 200
GET /api/v1/runs/{id}/code | /api/v1/runs/{pipe_run}/code | | 401 401 200 200 200 200
POST /api/v1/runs/{id}/cancel | /api/v1/runs/{pipe_run}/cancel | | 401 401 403 403 200 200
POST /api/v1/runs/{id}/promote | /api/v1/runs/{fail_run}/promote | | 401 401 403 200 403 200
POST /api/v1/runs/{id}/revert | /api/v1/runs/{imp_run}/revert | {"on":"dev/rr-{who}"} | 401 401 403 200 403 200
POST /api/v1/maintenance | /api/v1/maintenance | | 401 401 403 403 403 200
GET /api/v1/tokens | /api/v1/tokens | | 401 401 403 403 403 200
POST /api/v1/tokens | /api/v1/tokens | {"principal":"made-{who}"} | 401 401 403 403 403 200
DELETE /api/v1/tokens/{id} | /api/v1/tokens/{tok.{who}} | | 401 401 403 403 403 200
GET /api/v1/policy | /api/v1/policy | | 401 401 403 403 403 200
PUT /api/v1/policy | /api/v1/policy | {"policy":{policy}} | 401 401 403 403 403 200
GET /iceberg/v1/config | /iceberg/v1/config?warehouse=main | | 401 401 200 200 200 200
GET /iceberg/v1/{prefix}/namespaces | /iceberg/v1/main/namespaces | | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces | /iceberg/v1/dev%2Fx/namespaces | {"namespace":["in_{who}"]} | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/namespaces | /iceberg/v1/main/namespaces | {"namespace":["inm_{who}"]} | 401 401 403 403 403 200
POST /iceberg/v1/{prefix}/namespaces | /iceberg/v1/release%2F1/namespaces | {"namespace":["inr_{who}"]} | 401 401 403 403 200 200
GET /iceberg/v1/{prefix}/namespaces/{namespace} | /iceberg/v1/main/namespaces/db | | 401 401 200 200 200 200
HEAD /iceberg/v1/{prefix}/namespaces/{namespace} | /iceberg/v1/main/namespaces/db | | 401 401 200 200 200 200
DELETE /iceberg/v1/{prefix}/namespaces/{namespace} | /iceberg/v1/dev%2Fx/namespaces/idns_{who} | | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/properties | /iceberg/v1/dev%2Fx/namespaces/db/properties | {"updates":{"ip-{who}":"1"}} | 401 401 403 200 403 200
GET /iceberg/v1/{prefix}/namespaces/{namespace}/tables | /iceberg/v1/main/namespaces/db/tables | | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables | /iceberg/v1/dev%2Fx/namespaces/db/tables | {"name":"ct_{who}","schema":{schema}} | 401 401 403 200 403 200
GET /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table} | /iceberg/v1/main/namespaces/db/tables/t | | 401 401 200 200 200 200
GET /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials | /iceberg/v1/main/namespaces/db/tables/t/credentials | | 401 401 200 200 200 200
HEAD /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table} | /iceberg/v1/main/namespaces/db/tables/t | | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table} | /iceberg/v1/dev%2Fx/namespaces/db/tables/t | {"updates":[{"action":"set-properties","updates":{"c-{who}":"1"}}]} | 401 401 403 200 403 200
DELETE /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table} | /iceberg/v1/dev%2Fx/namespaces/db/tables/dt_{who} | | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics | /iceberg/v1/main/namespaces/db/tables/t/metrics | {report} | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}/unregister | /iceberg/v1/dev%2Fx/namespaces/db/tables/ut_{who}/unregister | | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/register | /iceberg/v1/dev%2Fx/namespaces/db/register | {"name":"rt_{who}","metadata-location":"{tloc.{who}}"} | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/tables/rename | /iceberg/v1/dev%2Fx/tables/rename | {"source":{"namespace":["db"],"name":"rn_{who}"},"destination":{"namespace":["db"],"name":"rn2_{who}"}} | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/transactions/commit | /iceberg/v1/dev%2Fx/transactions/commit | {"table-changes":[{"identifier":{"namespace":["db"],"name":"t"},"updates":[{"action":"set-properties","updates":{"tx-{who}":"1"}}]}]} | 401 401 403 200 403 200
GET /iceberg/v1/{prefix}/namespaces/{namespace}/views | /iceberg/v1/main/namespaces/db/views | | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/views | /iceberg/v1/dev%2Fx/namespaces/db/views | {"name":"cv_{who}","schema":{schema},"view-version":{version1},"properties":{}} | 401 401 403 200 403 200
GET /iceberg/v1/{prefix}/namespaces/{namespace}/views/{view} | /iceberg/v1/main/namespaces/db/views/v | | 401 401 200 200 200 200
HEAD /iceberg/v1/{prefix}/namespaces/{namespace}/views/{view} | /iceberg/v1/main/namespaces/db/views/v | | 401 401 200 200 200 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/views/{view} | /iceberg/v1/dev%2Fx/namespaces/db/views/rv_{who} | {"updates":[{"action":"add-view-version","view-version":{version2}},{"action":"set-current-view-version","view-version-id":-1}]} | 401 401 403 200 403 200
DELETE /iceberg/v1/{prefix}/namespaces/{namespace}/views/{view} | /iceberg/v1/dev%2Fx/namespaces/db/views/dv_{who} | | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/views/rename | /iceberg/v1/dev%2Fx/views/rename | {"source":{"namespace":["db"],"name":"rnv_{who}"},"destination":{"namespace":["db"],"name":"rnv2_{who}"}} | 401 401 403 200 403 200
POST /iceberg/v1/{prefix}/namespaces/{namespace}/register-view | /iceberg/v1/dev%2Fx/namespaces/db/register-view | {"name":"rgv_{who}","metadata-location":"{vloc.{who}}"} | 401 401 403 200 403 200
"#;

/// Served but not in either document: the Iceberg config is the entry point that hands out
/// the list of endpoints, and is not one of them.
const UNLISTED: &[(&str, &str)] = &[("GET", "/iceberg/v1/config")];

/// One row of `MATRIX`.
#[derive(Debug)]
struct Row {
    method: String,
    route: String,
    path: String,
    body: String,
    cells: Vec<u16>,
}

fn rows() -> Vec<Row> {
    MATRIX
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cols.len(), 4, "a row has four columns: {line}");
            let (method, route) = cols[0].split_once(' ').expect("METHOD ROUTE");
            // `R`: `run` starts runs where workers are confined, else only `manage` does.
            let cells: Vec<u16> = cols[3]
                .split_whitespace()
                .map(|c| match c {
                    "R" if workers_confined() => 200,
                    "R" => 403,
                    c => c.parse().expect("a status"),
                })
                .collect();
            assert_eq!(cells.len(), WHO.len(), "one cell per principal: {line}");
            Row {
                method: method.to_owned(),
                route: route.to_owned(),
                path: cols[1].to_owned(),
                body: cols[2].to_owned(),
                cells,
            }
        })
        .collect()
}

/// Whether this host confines run workers, asked as the server asks it at start. A host
/// where the tests run as root must: a probe failing there is a failure, never a skip.
pub(crate) fn workers_confined() -> bool {
    static CONFINED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CONFINED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let launcher = std::path::PathBuf::from(env!("CARGO_BIN_EXE_floe"));
        let probed = floe_rest::sandbox::possible().and_then(|()| {
            floe_rest::sandbox::Sandbox::new(launcher, "nobody", &[])
                .and_then(|s| s.probe(dir.path()))
                .map_err(|e| panic!("running as root, workers must be confined: {e}"))
        });
        probed.is_ok()
    })
}

/// `template` with `{who}` and then every `{var}` filled in; a placeholder left is a
/// mistake of the matrix.
fn fill(template: &str, who: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = template.replace("{who}", who);
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    let left = out
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'{' && w[1].is_ascii_lowercase());
    assert!(!left, "a placeholder of {template:?} has no value: {out}");
    out
}

/// What a request carries.
#[derive(Debug)]
enum Payload {
    Empty,
    Json(String),
    /// A content type (with its boundary) and the body.
    Multipart(String, Vec<u8>),
}

/// A multipart body of (part name, file name, bytes).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Payload {
    let boundary = "floe-authz-boundary";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        let file = file
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Payload::Multipart(format!("multipart/form-data; boundary={boundary}"), body)
}

/// An import of one small CSV file; `request` is its request part.
fn import(request: &str) -> Payload {
    multipart(&[
        ("request", None, request.as_bytes()),
        ("file", Some("ids.csv"), b"id\n1\n2\n3\n"),
    ])
}

const PROJECT: &str = "project:\n  id: 0a1b2c3d\n  name: matrix\ndefaults:\n  namespace: db\n";

/// A project as the uncompressed tar a run submission carries.
fn project(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in [("bauplan_project.yml", PROJECT)].iter().chain(files) {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// One model that lands a one-row table.
const ONE: &[(&str, &str)] = &[(
    "one.sql",
    "-- bauplan: materialization_strategy = REPLACE\nSELECT 1 AS x",
)];

/// A second model that fails as it executes (the cast of 'x1').
const FAILING: &[(&str, &str)] = &[
    (
        "a.sql",
        "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
    ),
    (
        "b.sql",
        "-- bauplan: materialization_strategy = REPLACE\nSELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM a",
    ),
];

fn submission(options: &str, archive: &[u8]) -> Payload {
    multipart(&[
        ("options", None, options.as_bytes()),
        ("project", Some("p.tar"), archive),
    ])
}

/// The body a row names, filled in for `who`.
fn payload(body: &str, who: &str, vars: &BTreeMap<String, String>) -> Payload {
    if body.is_empty() {
        Payload::Empty
    } else if let Some(request) = body.strip_prefix("import:") {
        import(&fill(request, who, vars))
    } else if let Some(options) = body.strip_prefix("run:") {
        submission(&fill(options, who, vars), &project(ONE))
    } else {
        Payload::Json(fill(body, who, vars))
    }
}

/// An answer: status, JSON body (`Null` when it is not JSON) and the error message, if any.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    message: String,
}

#[derive(Debug)]
struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        payload: &Payload,
        key: Option<&str>,
    ) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(k) = key {
            request = request.header("Idempotency-Key", k);
        }
        let bytes = match payload {
            Payload::Empty => Vec::new(),
            Payload::Json(text) => {
                request = request.header("Content-Type", "application/json");
                text.clone().into_bytes()
            }
            Payload::Multipart(kind, bytes) => {
                request = request.header("Content-Type", kind.as_str());
                bytes.clone()
            }
        };
        let mut response = self
            .agent
            .run(request.body(bytes).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let raw = response
            .body_mut()
            .with_config()
            .limit(1 << 28)
            .read_to_vec()
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let message = body["message"]
            .as_str()
            .or(body["error"]["message"].as_str())
            .unwrap_or_default()
            .to_owned();
        Answer {
            status,
            body,
            message,
        }
    }

    /// A request as the admin that must succeed: its body.
    fn admin(&self, method: &str, path: &str, payload: &Payload) -> Value {
        let a = self.send(method, path, Some(ADMIN), payload, None);
        assert!(
            (200..300).contains(&a.status),
            "fixture {method} {path}: {} {}",
            a.status,
            a.body
        );
        a.body
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.admin("POST", path, &Payload::Json(body.to_string()))
    }

    fn get(&self, path: &str) -> Value {
        self.admin("GET", path, &Payload::Empty)
    }

    /// Waits for a run to end (its log is followed until then) and, once landed, for its
    /// branch to be gone: nothing it does is still to happen. Returns its record.
    fn settle_run(&self, id: &str) -> Value {
        self.send(
            "GET",
            &format!("/api/v1/runs/{id}/logs?follow=true"),
            Some(ADMIN),
            &Payload::Empty,
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let record = self.get(&format!("/api/v1/runs/{id}"));
            let state = record["state"].as_str().unwrap_or_default();
            let branch = record["branch"].as_str().unwrap_or_default();
            let settled = match state {
                "failed" | "cancelled" => true,
                "succeeded" => {
                    let path = format!("/api/v1/refs/{}", branch.replace('/', "%2F"));
                    self.send("GET", &path, Some(ADMIN), &Payload::Empty, None)
                        .status
                        == 404
                }
                _ => false,
            };
            if settled {
                return record;
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {record}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Submits a run as the admin and waits for it to end.
    fn run(&self, options: Value, files: &[(&str, &str)]) -> Value {
        let started = self.admin(
            "POST",
            "/api/v1/runs",
            &submission(&options.to_string(), &project(files)),
        );
        self.settle_run(started["id"].as_str().expect("a run id"))
    }

    /// Every ref with its head, and the newest page of the global reflog.
    fn snapshot(&self) -> (Value, Value) {
        (self.get("/api/v1/refs"), self.get("/api/v1/reflog"))
    }
}

fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": false, "type": "long"}
    ]})
}

fn view_version(id: i64) -> Value {
    json!({"version-id": id, "timestamp-ms": 1_700_000_000_000i64 + id, "schema-id": 0,
           "summary": {"engine-name": "test"}, "default-namespace": ["db"],
           "representations": [{"type": "sql", "sql": format!("select {id}"), "dialect": "spark"}]})
}

fn branch(c: &Client, name: &str, from: &str) {
    c.post("/api/v1/refs", json!({ "name": name, "from": from }));
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// What the matrix acts on, made by the admin; returns the values its rows name.
fn fixture(c: &Client) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut var = |name: &str, value: String| vars.insert(name.to_owned(), value);
    var("schema", schema().to_string());
    var("version1", view_version(1).to_string());
    var("version2", view_version(2).to_string());
    var("policy", Value::from(POLICY).to_string());
    var(
        "report",
        json!({"report-type": "scan-report", "table-name": "db.t", "snapshot-id": 1,
               "filter": true, "schema-id": 0, "projected-field-ids": [1],
               "projected-field-names": ["id"], "metrics": {}})
        .to_string(),
    );
    // On main: the namespace db, its table t (imported) and view v.
    c.post(
        "/api/v1/trees/main/namespaces",
        json!({"namespace": ["db"]}),
    );
    c.admin(
        "POST",
        "/api/v1/imports",
        &import(r#"{"table":"db.t","branch":"main"}"#),
    );
    c.post(
        "/iceberg/v1/main/namespaces/db/views",
        json!({"name": "v", "schema": schema(), "view-version": view_version(1), "properties": {}}),
    );
    for name in ["dev/x", "dev/src", "dev/p", "release/1"] {
        branch(c, name, "main");
    }
    // A commit to revert (on dev/src) and one to cherry-pick (on dev/p), named by hash.
    let src = c.post(
        "/api/v1/trees/dev%2Fsrc/namespaces",
        json!({"namespace": ["src_ns"]}),
    );
    var("src", text(&src["head"]));
    let pick = c.post(
        "/api/v1/trees/dev%2Fp/namespaces",
        json!({"namespace": ["pick_ns"]}),
    );
    var("pick", text(&pick["head"]));
    // An import run on dev/x, to revert.
    let imported = c.admin(
        "POST",
        "/api/v1/imports",
        &import(r#"{"table":"db.imp","branch":"dev/x"}"#),
    );
    var("imp_run", text(&imported["run"]["id"]));
    // A pipeline run landed on release/1 (logs, code, cancel) and one failed on main
    // (promote).
    let landed = c.run(json!({"ref": "release/1"}), ONE);
    assert_eq!(landed["state"], "succeeded", "{landed}");
    var("pipe_run", text(&landed["id"]));
    let failed = c.run(json!({"ref": "main"}), FAILING);
    assert_eq!(failed["state"], "failed", "{failed}");
    var("fail_run", text(&failed["id"]));
    // Each principal's own objects, so that one cell's write never meets another's.
    for who in WHO {
        let ns = |prefix: &str, body: Value| {
            c.post(&format!("/iceberg/v1/{prefix}/namespaces"), body);
        };
        c.post(
            "/api/v1/trees/dev%2Fx/namespaces",
            json!({"namespace": [format!("dns_{who}")]}),
        );
        ns("dev%2Fx", json!({"namespace": [format!("idns_{who}")]}));
        for t in ["dt", "ut", "rn"] {
            c.post(
                "/iceberg/v1/dev%2Fx/namespaces/db/tables",
                json!({"name": format!("{t}_{who}"), "schema": schema()}),
            );
        }
        for v in ["dv", "rv", "rnv"] {
            c.post(
                "/iceberg/v1/dev%2Fx/namespaces/db/views",
                json!({"name": format!("{v}_{who}"), "schema": schema(),
                       "view-version": view_version(1), "properties": {}}),
            );
        }
        // Metadata of a table and a view that dev/x has never held, to register there.
        let t = c.post(
            "/iceberg/v1/dev%2Fsrc/namespaces/db/tables",
            json!({"name": format!("reg_{who}"), "schema": schema()}),
        );
        var(&format!("tloc.{who}"), text(&t["metadata-location"]));
        let v = c.post(
            "/iceberg/v1/dev%2Fsrc/namespaces/db/views",
            json!({"name": format!("regv_{who}"), "schema": schema(),
                   "view-version": view_version(1), "properties": {}}),
        );
        var(&format!("vloc.{who}"), text(&v["metadata-location"]));
        for name in ["dev/del", "release/del", "dev/a", "release/a"] {
            branch(c, &format!("{name}-{who}"), "main");
        }
        // Branches to merge, each with a commit of its own (no two merges conflict).
        for (name, into) in [("m", "main"), ("mr", "release/1")] {
            let b = format!("dev/{name}-{who}");
            branch(c, &b, into);
            c.post(
                &format!("/api/v1/trees/{}/namespaces", b.replace('/', "%2F")),
                json!({"namespace": [format!("{name}_{who}")]}),
            );
        }
        branch(c, &format!("dev/t-{who}"), "dev/src");
        branch(c, &format!("dev/rr-{who}"), "dev/x");
        let token = c.post(
            "/api/v1/tokens",
            json!({"principal": format!("victim-{who}")}),
        );
        var(&format!("tok.{who}"), text(&token["id"]));
    }
    vars
}

/// Every (method, route) both documents name, as `access.rs` collects them.
fn documented(c: &Client) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let document = c.get("/api/v1/openapi.json");
    for (path, ops) in document["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    let config = c.get("/iceberg/v1/config?warehouse=main");
    for endpoint in config["endpoints"].as_array().unwrap() {
        let (method, path) = endpoint.as_str().unwrap().split_once(' ').unwrap();
        routes.insert((method.to_owned(), format!("/iceberg{path}")));
    }
    routes
}

/// Whether a 403 says who may not do what where: the principal, then the catalog, or a
/// ref the catalog has or the request names (`... ref NAME`, `... on NAME`).
fn names_the_denial(message: &str, who: &str, refs: &Value, request: &str) -> bool {
    let Some((_, rest)) = message.split_once(&format!("{who} may not ")) else {
        return false;
    };
    if rest.contains("the catalog") {
        return true;
    }
    let target = rest.split(": ").next().unwrap_or(rest);
    let named = target.rsplit(' ').next().unwrap_or_default();
    let known = refs["refs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["name"] == named);
    !named.is_empty() && (known || request.contains(named))
}

/// What differs between two snapshots, for a failure's message.
fn changes(before: &(Value, Value), after: &(Value, Value)) -> String {
    let heads = |v: &Value| -> BTreeMap<String, Value> {
        v["refs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (text(&r["name"]), r["head"].clone()))
            .collect()
    };
    let (b, a) = (heads(&before.0), heads(&after.0));
    let moved: BTreeSet<&String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| b.get(*k) != a.get(*k))
        .collect();
    format!(
        "refs changed: {moved:?}; newest reflog entry before {} after {}",
        before.1["entries"][0], after.1["entries"][0]
    )
}

#[test]
fn every_principal_meets_every_route_as_the_policy_says() {
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let run = Running::start_with_env(
        &["--auth", "required", "--policy", policy.to_str().unwrap()],
        &[("FLOE_ADMIN_TOKEN", ADMIN)],
    );
    let c = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into(),
        base: run.url(),
    };

    // The tidy check: the matrix has exactly the routes the documents name.
    let rows = rows();
    let mut expected = documented(&c);
    expected.extend(
        UNLISTED
            .iter()
            .map(|(m, r)| ((*m).to_owned(), (*r).to_owned())),
    );
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.clone(), r.route.clone()))
        .collect();
    let missing: Vec<_> = expected.difference(&covered).collect();
    let gone: Vec<_> = covered.difference(&expected).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "the authorization matrix (cli/tests/it/authz_matrix.rs) must have a row for every route \
         of both documents and none other; routes without a row: {missing:?}; rows for routes \
         the documents do not name: {gone:?}"
    );

    let mut tokens: Vec<Option<String>> = vec![None, Some(BAD.to_owned())];
    for who in ["reader", "dev", "releaser"] {
        let made = c.post("/api/v1/tokens", json!({ "principal": who }));
        tokens.push(Some(text(&made["token"])));
    }
    tokens.push(Some(ADMIN.to_owned()));
    let vars = fixture(&c);

    let mut failures: Vec<String> = Vec::new();
    let mut denied_keys: Vec<(String, String)> = Vec::new();
    let mut allowed_keys: Vec<String> = Vec::new();
    let mut cells = 0;
    // The state before the next cell: a denial's "after" is the next one's "before".
    let mut state: Option<(Value, Value)> = None;
    for row in &rows {
        for (i, who) in WHO.iter().enumerate() {
            cells += 1;
            let path = fill(&row.path, who, &vars);
            let body = payload(&row.body, who, &vars);
            let writes = !matches!(row.method.as_str(), "GET" | "HEAD");
            let key = writes.then(|| uuid::Uuid::now_v7().to_string());
            let before = state.take().unwrap_or_else(|| c.snapshot());
            let answer = c.send(
                &row.method,
                &path,
                tokens[i].as_deref(),
                &body,
                key.as_deref(),
            );
            let (want, got) = (row.cells[i], answer.status);
            let cell = format!("{} {path} as {who}", row.method);
            let matches = if want == 200 {
                (200..300).contains(&got)
            } else {
                got == want
            };
            if !matches {
                failures.push(format!(
                    "{:<6} {:<62} {:<9} expected {want} got {got}: {}",
                    row.method,
                    path,
                    who,
                    answer.message.chars().take(240).collect::<String>()
                ));
            }
            if got == 401 || got == 403 {
                let after = c.snapshot();
                if after != before {
                    failures.push(format!(
                        "{cell}: denied ({got}) yet {}",
                        changes(&before, &after)
                    ));
                }
                let request = match &body {
                    Payload::Empty => String::new(),
                    Payload::Json(text) => text.clone(),
                    Payload::Multipart(_, bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                let request = format!("{} {request}", path.replace("%2F", "/"));
                if got == 403 && !names_the_denial(&answer.message, who, &before.0, &request) {
                    failures.push(format!(
                        "{cell}: a 403 that does not say who may not do what where: {:?}",
                        answer.message
                    ));
                }
                if let Some(k) = key {
                    denied_keys.push((k, cell));
                }
                state = Some(after);
            } else if (200..300).contains(&got) {
                if let Some(k) = key {
                    allowed_keys.push(k);
                }
                // A run goes on after its answer: the next cell starts once it ended.
                if row.route == "/api/v1/runs" && row.method == "POST" {
                    c.settle_run(answer.body["id"].as_str().unwrap_or_default());
                }
            }
        }
    }
    assert_eq!(cells, rows.len() * WHO.len());

    // The idempotency records, read from the store once the server is gone: a denial
    // recorded no answer (applied or rejected) under its key.
    let server = run.server;
    server.signal("TERM");
    server.wait();
    let store = floe_commits::Store::open(
        open_backend(run.dir.path()),
        Arc::new(floe_commits::SystemClock),
    )
    .unwrap();
    let mut recorded = BTreeSet::new();
    let prefixes: [&[u8]; 2] = [
        floe_commits::store::IDEMPOTENCY_PREFIX,
        b"idempotency-rejected/",
    ];
    for prefix in prefixes {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.meta_scan(prefix, after.as_deref(), 1000).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.to_vec());
            for (k, _) in &page {
                recorded.insert(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            }
        }
    }
    assert!(
        allowed_keys.iter().any(|k| recorded.contains(k)),
        "no allowed write's key is recorded: the scan reads the wrong place"
    );
    for (k, cell) in &denied_keys {
        if recorded.contains(k) {
            failures.push(format!(
                "{cell}: denied, yet its Idempotency-Key {k} is recorded"
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {cells} cells of the authorization matrix ({} rows) differ from the spec:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
