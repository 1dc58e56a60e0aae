//! The Iceberg REST catalog under `/iceberg` over plain HTTP: config, namespaces, tables,
//! commits and the rules of DESIGN §3, with the spec's `ErrorModel` on every error. The
//! real clients (PyIceberg, DuckDB) run in `clients.rs`.

use serde_json::{Value, json};

use crate::harness::{Reply, Running, key};

fn assert_iceberg_error(r: &Reply, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["error"]["type"], kind, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], status, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": false, "type": "long"},
        {"id": 2, "name": "name", "required": false, "type": "string"}
    ]})
}

#[test]
fn config_namespaces_and_their_errors() {
    let s = Running::start();
    let config = s.get("/iceberg/v1/config?warehouse=main");
    assert_eq!(config.status, 200);
    assert_eq!(config.body["overrides"]["prefix"], "main");
    assert_eq!(config.body["idempotency-key-lifetime"], "PT30M");
    let endpoints: Vec<&str> = config.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(endpoints.contains(&"POST /v1/{prefix}/transactions/commit"));
    assert!(endpoints.contains(&"HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}"));
    // The credentials endpoint is served (issue 20: empty where nothing is vended).
    assert!(
        endpoints.contains(&"GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials")
    );
    for unserved in ["plan", "tasks", "sign", "functions", "oauth"] {
        assert!(
            !endpoints.iter().any(|e| e.contains(unserved)),
            "{unserved} is not served, so not advertised"
        );
    }
    // Every advertised endpoint is routed: none answers "no route" or 405.
    for endpoint in &endpoints {
        let (method, path) = endpoint.split_once(' ').unwrap();
        let path = path
            .replace("{prefix}", "main")
            .replace("{namespace}", "zz")
            .replace("{table}", "t")
            .replace("{view}", "v");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/iceberg{path}", s.url());
        let status = match method {
            "GET" => agent.get(&url).call(),
            "HEAD" => agent.head(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            "POST" => agent.post(&url).content_type("application/json").send("{}"),
            other => panic!("unexpected method {other}"),
        }
        .unwrap()
        .status()
        .as_u16();
        assert!(status != 405, "{endpoint} answers 405");
        if status == 404 && method != "HEAD" {
            let body = agent
                .get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            assert!(
                !body.contains("no route"),
                "{endpoint} is advertised but not routed: {body}"
            );
        }
    }
    s.branch("feature/x", "main");
    assert_eq!(
        s.get("/iceberg/v1/config?warehouse=feature%2Fx").body["overrides"]["prefix"],
        "feature%2Fx"
    );
    assert_eq!(
        s.get("/iceberg/v1/config").body["overrides"]["prefix"],
        "main"
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/config?warehouse=nope"),
        404,
        "NotFoundException",
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/config?warehouse=a..b"),
        400,
        "BadRequestException",
    );

    // Namespaces: create, nested (levels joined by U+001F), load, HEAD, list, properties.
    let created = s.post(
        "/iceberg/v1/main/namespaces",
        json!({"namespace": ["a"], "properties": {"k": "v"}}),
    );
    assert_eq!(
        (created.status, &created.body["namespace"]),
        (200, &json!(["a"]))
    );
    assert_eq!(
        s.post(
            "/iceberg/v1/main/namespaces",
            json!({"namespace": ["a", "b.c"]})
        )
        .status,
        200
    );
    assert_iceberg_error(
        &s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["a"]})),
        409,
        "AlreadyExistsException",
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces",
            json!({"namespace": ["x", "y"]}),
        ),
        400,
        "BadRequestException",
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/a%1Fb.c").body["namespace"],
        json!(["a", "b.c"])
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces").body["namespaces"],
        json!([["a"]])
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces?parent=a").body["namespaces"],
        json!([["a", "b.c"]])
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/nope"),
        404,
        "NoSuchNamespaceException",
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/nope/namespaces"),
        404,
        "NotFoundException",
    );
    let props = s.post(
        "/iceberg/v1/main/namespaces/a/properties",
        json!({"updates": {"n": "1"}, "removals": ["k", "z"]}),
    );
    assert_eq!(
        props.body,
        json!({"updated": ["n"], "removed": ["k"], "missing": ["z"]})
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/a/properties",
            json!({"updates": {"n": "1"}, "removals": ["n"]}),
        ),
        422,
        "UnprocessableEntityException",
    );
    assert_iceberg_error(
        &s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/a",
            &Value::Null,
            None,
        ),
        409,
        "NamespaceNotEmptyException",
    );
    assert_eq!(
        s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/a%1Fb.c",
            &Value::Null,
            None
        )
        .status,
        204
    );
    // Malformed input is a 400 in the spec's shape; a read-only prefix refuses writes.
    assert_iceberg_error(
        &s.send(
            "POST",
            "/iceberg/v1/main/namespaces",
            &Value::String("{junk".into()),
            None,
        ),
        400,
        "BadRequestException",
    );
    for bad in [
        json!(["bad\u{0}"]),
        json!([".."]),
        json!(["a", "."]),
        json!(["x/y"]),
        json!([""]),
        json!([]),
        json!(["n".repeat(2000)]),
    ] {
        let r = s.post("/iceberg/v1/main/namespaces", json!({ "namespace": bad }));
        assert_iceberg_error(&r, 400, "BadRequestException");
    }
    let dots = s.post(
        "/iceberg/v1/main/namespaces/a/tables",
        json!({"name": "..", "schema": schema()}),
    );
    assert_iceberg_error(&dots, 400, "BadRequestException");
    assert!(
        dots.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid"),
        "{:?}",
        dots.body
    );
    assert_iceberg_error(
        &s.post("/iceberg/v1/main~1/namespaces", json!({"namespace": ["r"]})),
        400,
        "BadRequestException",
    );
    s.post("/api/v1/refs", json!({"name": "v1", "kind": "tag"}));
    assert_iceberg_error(
        &s.post("/iceberg/v1/v1/namespaces", json!({"namespace": ["r"]})),
        400,
        "BadRequestException",
    );
}

#[test]
fn tables_create_load_commit_drop_and_the_rules() {
    let s = Running::start();
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    let created = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "t", "schema": schema(), "properties": {"format-version": "2"}}),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let location = created.body["metadata"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        location.starts_with(&format!(
            "file://{}",
            s.dir
                .path()
                .canonicalize()
                .unwrap()
                .join("warehouse/db/t-")
                .display()
        )),
        "{location}"
    );
    let metadata_location = created.body["metadata-location"].as_str().unwrap();
    assert!(std::path::Path::new(metadata_location.strip_prefix("file://").unwrap()).exists());
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "t", "schema": schema()}),
        ),
        409,
        "AlreadyExistsException",
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/nope/tables",
            json!({"name": "t", "schema": schema()}),
        ),
        404,
        "NoSuchNamespaceException",
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "u", "schema": schema(), "location": "file:///tmp/elsewhere"}),
        ),
        400,
        "BadRequestException",
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "u", "schema": "nope"}),
        ),
        400,
        "BadRequestException",
    );
    // A staged create stores nothing.
    let staged = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "s", "schema": schema(), "stage-create": true}),
    );
    assert!(
        staged.body["metadata-location"].is_null(),
        "{:?}",
        staged.body
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/tables/s"),
        404,
        "NoSuchTableException",
    );

    let loaded = s.get("/iceberg/v1/main/namespaces/db/tables/t");
    assert_eq!(
        loaded.body["metadata"]["table-uuid"],
        created.body["metadata"]["table-uuid"]
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/tables").body["identifiers"],
        json!([{"namespace": ["db"], "name": "t"}])
    );
    let uuid = loaded.body["metadata"]["table-uuid"].clone();
    let commit = |body: Value| s.post("/iceberg/v1/main/namespaces/db/tables/t", body);
    // A requirement that holds: the properties change, as one floe commit.
    let ok = commit(
        json!({"requirements": [{"type": "assert-table-uuid", "uuid": uuid}], "updates": [{"action": "set-properties", "updates": {"owner": "ana"}}]}),
    );
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["metadata"]["properties"]["owner"], "ana");
    assert_eq!(
        s.get("/api/v1/commits/main").body["commit"]["message"],
        "commit to table db.t (set-properties)"
    );
    // A requirement that fails: 409 CommitFailedException, nothing changes.
    let head = s.head("main");
    let failed = commit(
        json!({"requirements": [{"type": "assert-current-schema-id", "current-schema-id": 7}], "updates": [{"action": "set-properties", "updates": {"owner": "bo"}}]}),
    );
    assert_iceberg_error(&failed, 409, "CommitFailedException");
    assert_eq!(s.head("main"), head);
    // Rules: remove-snapshots, other Iceberg refs, location changes, unknown updates.
    assert_iceberg_error(
        &commit(json!({"updates": [{"action": "remove-snapshots", "snapshot-ids": [1]}]})),
        400,
        "BadRequestException",
    );
    assert_iceberg_error(
        &commit(
            json!({"updates": [{"action": "set-snapshot-ref", "ref-name": "audit", "type": "tag", "snapshot-id": 1}]}),
        ),
        400,
        "BadRequestException",
    );
    assert_iceberg_error(
        &commit(json!({"updates": [{"action": "set-location", "location": "file:///tmp/x"}]})),
        400,
        "BadRequestException",
    );
    assert_iceberg_error(
        &commit(json!({"updates": [{"action": "frobnicate"}]})),
        400,
        "BadRequestException",
    );
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/tables/nope",
            json!({"updates": [{"action": "set-properties", "updates": {"a": "b"}}]}),
        ),
        404,
        "NoSuchTableException",
    );
    assert_eq!(s.head("main"), head, "nothing changed");
    // Commit author and message from headers (floe's and Nessie's names).
    let r = s.send(
        "POST",
        "/iceberg/v1/main/namespaces/db/tables/t",
        &json!({"updates": [{"action": "set-properties", "updates": {"x": "1"}}]}),
        None,
    );
    assert_eq!(r.status, 200);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let with_headers = agent
        .post(format!(
            "{}/iceberg/v1/main/namespaces/db/tables/t",
            s.url()
        ))
        .header("Nessie-Commit-Message", "nightly load")
        .header("Floe-Commit-Author", "etl-bot")
        .content_type("application/json")
        .send(json!({"updates": [{"action": "set-properties", "updates": {"x": "2"}}]}).to_string())
        .unwrap();
    assert_eq!(with_headers.status().as_u16(), 200);
    let c = s.get("/api/v1/commits/main").body["commit"].clone();
    assert_eq!(
        (c["message"].as_str(), c["author"].as_str()),
        (Some("nightly load"), Some("etl-bot"))
    );
    // Read-only prefixes serve reads and refuse writes.
    assert_eq!(
        s.get(&format!(
            "/iceberg/v1/main@{}/namespaces/db/tables/t",
            &head[..12]
        ))
        .status,
        200
    );
    assert_iceberg_error(
        &s.post(
            &format!("/iceberg/v1/main@{}/namespaces/db/tables/t", &head[..12]),
            json!({"updates": []}),
        ),
        400,
        "BadRequestException",
    );

    // The CLI lists tables at any ref.
    let cfg = s.config_dir();
    let listed = s.floe(&cfg, &["table", "list"]);
    assert!(listed.expect(0).starts_with("db.t  "), "{}", listed.stdout);
    assert_eq!(listed.stdout.lines().count(), 1);
    assert_eq!(
        s.floe(&cfg, &["table", "list", "--namespace", "nope"])
            .expect(0),
        ""
    );
    assert_eq!(
        s.floe(&cfg, &["table", "list", "--ref", "main~5"])
            .expect(0),
        ""
    );

    // Drop: purgeRequested parsed case-insensitively, files kept, table gone from main only.
    s.branch("keep", "main");
    assert_iceberg_error(
        &s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/db/tables/t?purgeRequested=maybe",
            &Value::Null,
            None,
        ),
        400,
        "BadRequestException",
    );
    assert_eq!(
        s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/db/tables/t?purgeRequested=True",
            &Value::Null,
            None
        )
        .status,
        204
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/tables/t"),
        404,
        "NoSuchTableException",
    );
    assert_eq!(s.get("/iceberg/v1/keep/namespaces/db/tables/t").status, 200);
    assert!(std::path::Path::new(metadata_location.strip_prefix("file://").unwrap()).exists());
}

#[test]
fn iceberg_writes_take_an_idempotency_key() {
    let s = Running::start();
    let k = key();
    let body = json!({"namespace": ["once"]});
    let first = s.send("POST", "/iceberg/v1/main/namespaces", &body, Some(&k));
    let again = s.send("POST", "/iceberg/v1/main/namespaces", &body, Some(&k));
    assert_eq!((first.status, again.status), (200, 200), "{:?}", again.body);
    assert_eq!(first.body, again.body);
    let log = s.get("/api/v1/trees/main/log?grep=once");
    assert_eq!(
        log.body["commits"].as_array().unwrap().len(),
        1,
        "applied once"
    );
    let k2 = key();
    let change = json!({"updates": {"c": "3"}, "removals": ["zz"]});
    let u1 = s.send(
        "POST",
        "/iceberg/v1/main/namespaces/once/properties",
        &change,
        Some(&k2),
    );
    let u2 = s.send(
        "POST",
        "/iceberg/v1/main/namespaces/once/properties",
        &change,
        Some(&k2),
    );
    assert_eq!(u1.status, 200, "{:?}", u1.body);
    assert_eq!(
        u1.body,
        json!({"updated": ["c"], "removed": [], "missing": ["zz"]})
    );
    assert_eq!(u1.body, u2.body);
    // A rejection replays as the same ErrorModel; another request under the key is a 422.
    let k = key();
    let dup = s.send("POST", "/iceberg/v1/main/namespaces", &body, Some(&k));
    assert_iceberg_error(&dup, 409, "AlreadyExistsException");
    assert_eq!(
        s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/once",
            &Value::Null,
            None
        )
        .status,
        204
    );
    let replay = s.send("POST", "/iceberg/v1/main/namespaces", &body, Some(&k));
    assert_eq!((replay.status, &replay.body), (409, &dup.body));
    let other = s.send(
        "POST",
        "/iceberg/v1/main/namespaces",
        &json!({"namespace": ["x"]}),
        Some(&k),
    );
    assert_iceberg_error(&other, 422, "UnprocessableEntityException");
    let bad = s.send(
        "POST",
        "/iceberg/v1/main/namespaces",
        &body,
        Some("not-a-uuid"),
    );
    assert_iceberg_error(&bad, 400, "BadRequestException");
}

#[test]
fn lists_page_only_when_asked() {
    let s = Running::start();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(
            s.post("/iceberg/v1/main/namespaces", json!({"namespace": [n]}))
                .status,
            200
        );
    }
    for t in ["t1", "t2", "t3"] {
        let r = s.post(
            "/iceberg/v1/main/namespaces/n1/tables",
            json!({"name": t, "schema": schema()}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Without pageSize: everything, and no token.
    let all = s.get("/iceberg/v1/main/namespaces");
    assert_eq!(all.body["namespaces"], json!([["n1"], ["n2"], ["n3"]]));
    assert!(all.body.get("next-page-token").is_none());
    // With pageSize: pages and a token to follow.
    for (path, field) in [
        ("/iceberg/v1/main/namespaces", "namespaces"),
        ("/iceberg/v1/main/namespaces/n1/tables", "identifiers"),
    ] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let url = match &token {
                Some(t) => format!("{path}?pageSize=2&pageToken={t}"),
                None => format!("{path}?pageSize=2"),
            };
            let page = s.get(&url);
            assert_eq!(page.status, 200, "{:?}", page.body);
            let items = page.body[field].as_array().unwrap().clone();
            assert!(items.len() <= 2);
            seen.extend(items);
            match page.body["next-page-token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 3, "{path}: {seen:?}");
    }
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces?pageToken=zz&pageSize=1"),
        400,
        "BadRequestException",
    );
}

#[test]
fn rename_register_and_metrics_reports() {
    let s = Running::start();
    for ns in ["db", "db2"] {
        s.post("/iceberg/v1/main/namespaces", json!({ "namespace": [ns] }));
    }
    let t = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "t", "schema": schema()}),
    );
    let uuid = t.body["metadata"]["table-uuid"].clone();
    let location = t.body["metadata-location"].as_str().unwrap().to_owned();
    let id_of = |key: &str| {
        let e = s.get("/api/v1/trees/main/entries");
        e.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .map(|e| e["contentId"].clone())
    };
    let id = id_of("db.t").unwrap();
    let rename = |from: (&str, &str), to: (&str, &str)| {
        s.post(
            "/iceberg/v1/main/tables/rename",
            json!({"source": {"namespace": [from.0], "name": from.1},
                   "destination": {"namespace": [to.0], "name": to.1}}),
        )
    };
    // Rename keeps the table (same uuid, same floe content id) under its new key.
    assert_eq!(rename(("db", "t"), ("db2", "u")).status, 204);
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/tables/t"),
        404,
        "NoSuchTableException",
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db2/tables/u").body["metadata"]["table-uuid"],
        uuid
    );
    assert_eq!(id_of("db2.u"), Some(id));
    assert_eq!(
        s.get("/api/v1/commits/main").body["commit"]["message"],
        "rename table db.t to db2.u"
    );
    assert_iceberg_error(
        &rename(("db", "t"), ("db2", "v")),
        404,
        "NoSuchTableException",
    );
    assert_iceberg_error(
        &rename(("db2", "u"), ("nope", "v")),
        404,
        "NoSuchNamespaceException",
    );
    s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "w", "schema": schema()}),
    );
    assert_iceberg_error(
        &rename(("db2", "u"), ("db", "w")),
        409,
        "AlreadyExistsException",
    );

    // Register: only metadata inside the warehouse, and never a table-uuid the ref has.
    let register = |name: &str, loc: &str| {
        s.post(
            "/iceberg/v1/main/namespaces/db/register",
            json!({"name": name, "metadata-location": loc}),
        )
    };
    assert_iceberg_error(&register("again", &location), 409, "AlreadyExistsException");
    for hostile in [
        "file:///etc/passwd".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        location.replace("/metadata/", "/metadata/../../../"),
        format!(
            "{}/db/nothing-here.metadata.json",
            location.split("/db2").next().unwrap_or(&location)
        ),
    ] {
        let r = register("evil", &hostile);
        assert_iceberg_error(&r, 400, "BadRequestException");
    }
    let head = s.head("main");
    // Dropped from main, the same metadata registers again (as a new key).
    assert_eq!(
        s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/db2/tables/u",
            &Value::Null,
            None
        )
        .status,
        204
    );
    let registered = register("back", &location);
    assert_eq!(registered.status, 200, "{:?}", registered.body);
    assert_eq!(registered.body["metadata"]["table-uuid"], uuid);
    assert_eq!(registered.body["metadata-location"], location.as_str());
    assert_ne!(s.head("main"), head);
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/register",
            json!({"name": "x", "metadata-location": location, "overwrite": true}),
        ),
        400,
        "BadRequestException",
    );

    // Properties that would send writers outside the table are refused, on create and on
    // commit, and nothing changes.
    let head = s.head("main");
    for (key, value) in [
        ("write.data.path", "file:///tmp/elsewhere".to_owned()),
        ("write.metadata.path", format!("{}/../../x", location)),
        (
            "write.data.path",
            location
                .split("/metadata/")
                .next()
                .unwrap()
                .replace("/db/", "/db2/"),
        ),
        ("location", "s3://bucket/t".to_owned()),
    ] {
        let create = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "p", "schema": schema(), "properties": { key: value }}),
        );
        assert_iceberg_error(&create, 400, "BadRequestException");
        let commit = s.post(
            "/iceberg/v1/main/namespaces/db/tables/w",
            json!({"updates": [{"action": "set-properties", "updates": { key: value }}]}),
        );
        assert_iceberg_error(&commit, 400, "BadRequestException");
    }
    assert_eq!(s.head("main"), head, "nothing changed");
    let w = s.get("/iceberg/v1/main/namespaces/db/tables/w").body["metadata"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let inside = s.post(
        "/iceberg/v1/main/namespaces/db/tables/w",
        json!({"updates": [{"action": "set-properties", "updates": {"write.data.path": format!("{w}/data2")}}]}),
    );
    assert_eq!(
        inside.status, 200,
        "a path inside the table is fine: {:?}",
        inside.body
    );

    // Unregister answers the last metadata and leaves the files for another catalog.
    let gone = s.post(
        "/iceberg/v1/main/namespaces/db/tables/w/unregister",
        json!(null),
    );
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    let last = gone.body["metadata-location"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(last.strip_prefix("file://").unwrap()).exists());
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/tables/w"),
        404,
        "NoSuchTableException",
    );
    assert_eq!(
        register("w2", &last).status,
        200,
        "it registers again from its last metadata"
    );

    // Metrics reports are accepted for a table that exists, and counted.
    let report = json!({"report-type": "scan-report", "table-name": "db.back", "snapshot-id": 1,
        "filter": true, "schema-id": 0, "projected-field-ids": [1], "projected-field-names": ["id"], "metrics": {}});
    assert_eq!(
        s.post(
            "/iceberg/v1/main/namespaces/db/tables/back/metrics",
            report.clone()
        )
        .status,
        204
    );
    assert_iceberg_error(
        &s.post("/iceberg/v1/main/namespaces/db/tables/nope/metrics", report),
        404,
        "NoSuchTableException",
    );
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("floe_iceberg_metrics_reports_total{type=\"scan-report\"} 1"),
        "{metrics}"
    );
}

fn view_version(id: i64, sql: &str) -> Value {
    json!({"version-id": id, "timestamp-ms": 1_700_000_000_000i64 + id, "schema-id": 0,
           "summary": {"engine-name": "test"}, "default-namespace": ["db"],
           "representations": [{"type": "sql", "sql": sql, "dialect": "spark"}]})
}

#[test]
fn views_create_load_replace_branch_merge_rename_drop_register() {
    let s = Running::start();
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    let create = |name: &str| {
        s.post(
            "/iceberg/v1/main/namespaces/db/views",
            json!({"name": name, "schema": schema(), "view-version": view_version(1, "select 1"), "properties": {}}),
        )
    };
    let created = create("v");
    assert_eq!(created.status, 200, "{:?}", created.body);
    let uuid = created.body["metadata"]["view-uuid"].clone();
    assert!(
        created.body["metadata-location"]
            .as_str()
            .unwrap()
            .contains("/db/v-")
    );
    assert_iceberg_error(&create("v"), 409, "AlreadyExistsException");
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/views/v").body["metadata"]["view-uuid"],
        uuid
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/views").body["identifiers"],
        json!([{"namespace": ["db"], "name": "v"}])
    );
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/views/nope"),
        404,
        "NoSuchViewException",
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/tables").body["identifiers"],
        json!([]),
        "a view is not a table"
    );

    // Replace on a branch: main keeps its version until the merge.
    s.branch("dev", "main");
    let replace = |uuid: &Value| {
        s.post(
            "/iceberg/v1/dev/namespaces/db/views/v",
            json!({"requirements": [{"type": "assert-view-uuid", "uuid": uuid}],
                   "updates": [{"action": "add-view-version", "view-version": view_version(2, "select 2")},
                               {"action": "set-current-view-version", "view-version-id": -1}]}),
        )
    };
    let replaced = replace(&uuid);
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(replaced.body["metadata"]["current-version-id"], 2);
    assert_iceberg_error(
        &replace(&json!("00000000-0000-7000-8000-000000000000")),
        409,
        "CommitFailedException",
    );
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/views/v").body["metadata"]["current-version-id"],
        1
    );
    let merged = s.post("/api/v1/trees/main/merge", json!({"source": "dev"}));
    assert_eq!(merged.body["kind"], "fast-forward", "{:?}", merged.body);
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/views/v").body["metadata"]["current-version-id"],
        2
    );

    // Rename, drop (files stay), register from the last metadata.
    let renamed = s.post(
        "/iceberg/v1/main/views/rename",
        json!({"source": {"namespace": ["db"], "name": "v"}, "destination": {"namespace": ["db"], "name": "w"}}),
    );
    assert_eq!(renamed.status, 204, "{:?}", renamed.body);
    assert_iceberg_error(
        &s.get("/iceberg/v1/main/namespaces/db/views/v"),
        404,
        "NoSuchViewException",
    );
    let last = s.get("/iceberg/v1/main/namespaces/db/views/w").body["metadata-location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/db/views/w",
            &Value::Null,
            None
        )
        .status,
        204
    );
    assert_iceberg_error(
        &s.send(
            "DELETE",
            "/iceberg/v1/main/namespaces/db/views/w",
            &Value::Null,
            None,
        ),
        404,
        "NoSuchViewException",
    );
    let registered = s.post(
        "/iceberg/v1/main/namespaces/db/register-view",
        json!({"name": "back", "metadata-location": last}),
    );
    assert_eq!(registered.status, 200, "{:?}", registered.body);
    assert_eq!(registered.body["metadata"]["view-uuid"], uuid);
    assert_iceberg_error(
        &s.post(
            "/iceberg/v1/main/namespaces/db/register-view",
            json!({"name": "evil", "metadata-location": "file:///etc/passwd"}),
        ),
        400,
        "BadRequestException",
    );
    let messages: Vec<String> = s.get("/api/v1/trees/main/log").body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap().to_owned())
        .collect();
    for m in [
        "create view db.v",
        "replace view db.v",
        "rename view db.v to db.w",
        "drop view db.w",
    ] {
        assert!(messages.iter().any(|x| x == m), "{m} not in {messages:?}");
    }
}

#[test]
fn hostile_names_are_clear_4xx_and_change_nothing() {
    let s = Running::start();
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    let head = s.head("main");
    let long = "n".repeat(4096);
    // As path segments (what arrives after one decoding), and as names in bodies.
    for segment in [
        "..",
        "%2e%2e",
        "%252e",
        "%00",
        "a%2Fb",
        "a%5Cb",
        long.as_str(),
    ] {
        for path in [
            format!("/iceberg/v1/main/namespaces/{segment}"),
            format!("/iceberg/v1/main/namespaces/db/tables/{segment}"),
            format!("/iceberg/v1/main/namespaces/db/views/{segment}"),
        ] {
            // A name that cannot be one is refused before any lookup: 400, never a 404
            // that would say such a name could exist (4,096 letters are over
            // KEY_ELEMENT_BYTES_MAX).
            let r = s.get(&path);
            assert_iceberg_error(&r, 400, "BadRequestException");
            assert!(
                r.body["error"]["message"].is_string(),
                "{path}: {:?}",
                r.body
            );
        }
    }
    for name in ["..", ".", "%2e%2e", "a/b", "a\\b", "a\u{0}b", long.as_str()] {
        let ns = s.post(
            "/iceberg/v1/main/namespaces",
            json!({ "namespace": [name] }),
        );
        assert_iceberg_error(&ns, 400, "BadRequestException");
        let table = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": name, "schema": schema()}),
        );
        assert_iceberg_error(&table, 400, "BadRequestException");
    }
    assert_eq!(s.head("main"), head, "nothing changed in history");
    let warehouse: Vec<_> = std::fs::read_dir(s.dir.path().join("warehouse"))
        .unwrap()
        .collect();
    assert!(
        warehouse.is_empty(),
        "nothing changed on disk: {warehouse:?}"
    );
}

#[test]
fn review_fixes_two_creates_in_one_transaction_crafted_register_and_uuid_changes() {
    let s = Running::start();
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    // Two tables created by one transaction in one namespace (DuckDB's CTAS shape).
    let staged = |name: &str| {
        s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": name, "schema": schema(), "stage-create": true}),
        )
        .body["metadata"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let change = |name: &str, location: String| {
        json!({"identifier": {"namespace": ["db"], "name": name},
               "requirements": [{"type": "assert-create"}],
               "updates": [{"action": "add-schema", "schema": schema()},
                           {"action": "set-current-schema", "schema-id": -1},
                           {"action": "set-location", "location": location}]})
    };
    let both = s.post(
        "/iceberg/v1/main/transactions/commit",
        json!({"table-changes": [change("a", staged("a")), change("b", staged("b"))]}),
    );
    assert_eq!(both.status, 204, "{:?}", both.body);
    assert_eq!(
        s.get("/iceberg/v1/main/namespaces/db/tables").body["identifiers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // assign-uuid may not change a table's uuid.
    let a = s.get("/iceberg/v1/main/namespaces/db/tables/a").body;
    let other =
        s.get("/iceberg/v1/main/namespaces/db/tables/b").body["metadata"]["table-uuid"].clone();
    let r = s.post(
        "/iceberg/v1/main/namespaces/db/tables/a",
        json!({"updates": [{"action": "assign-uuid", "uuid": other}]}),
    );
    assert_iceberg_error(&r, 400, "BadRequestException");

    // A crafted metadata file inside the warehouse that points outside it is refused.
    let location = a["metadata"]["location"].as_str().unwrap().to_owned();
    let folder =
        std::path::PathBuf::from(location.strip_prefix("file://").unwrap()).join("metadata");
    for (i, (field, value)) in [
        ("location", json!("file:///tmp/elsewhere")),
        ("properties", json!({"write.data.path": "file:///etc"})),
    ]
    .into_iter()
    .enumerate()
    {
        let mut crafted = a["metadata"].clone();
        crafted["table-uuid"] = json!(format!("01a21555-0000-7000-8000-00000000000{i}"));
        crafted[field] = value;
        let file = folder.join(format!("99999-crafted{i}.metadata.json"));
        std::fs::write(&file, crafted.to_string()).unwrap();
        let r = s.post(
            "/iceberg/v1/main/namespaces/db/register",
            json!({"name": format!("c{i}"), "metadata-location": format!("file://{}", file.display())}),
        );
        assert_iceberg_error(&r, 400, "BadRequestException");
    }
}
