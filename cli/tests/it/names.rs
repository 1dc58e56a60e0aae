//! Names of namespaces, tables and views become folder names in the warehouse, where a
//! file system allows 255 bytes. Each key element is bounded by its bytes after escaping
//! (`KEY_ELEMENT_BYTES_MAX`): a name at the limit works end to end, one byte over is a 400
//! naming the limit that changes nothing, on both APIs (issue 14, item 8).

use floe_commits::limits::KEY_ELEMENT_BYTES_MAX;
use serde_json::{Value, json};

use crate::harness::{Reply, Running};

fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": false, "type": "long"}
    ]})
}

fn view(name: &str) -> Value {
    json!({"name": name, "schema": schema(), "properties": {},
           "view-version": {"version-id": 1, "timestamp-ms": 1_700_000_000_000i64, "schema-id": 0,
                            "summary": {"engine-name": "test"}, "default-namespace": ["db"],
                            "representations": [{"type": "sql", "sql": "select 1", "dialect": "spark"}]}})
}

/// Names whose escaped form is exactly `bytes` long: a letter repeated, and `!` (escaped
/// as `%21`, three bytes) padded with the letter.
fn names(bytes: usize, letter: &str) -> [String; 2] {
    [
        letter.repeat(bytes),
        format!("{}{}", "!".repeat(bytes / 3), letter.repeat(bytes % 3)),
    ]
}

fn assert_limit(r: &Reply, what: &str) {
    assert_eq!(r.status, 400, "{what}: {:?}", r.body);
    let message = r.body["message"]
        .as_str()
        .or_else(|| r.body["error"]["message"].as_str())
        .unwrap_or_default();
    assert!(
        message.contains("KEY_ELEMENT_BYTES_MAX"),
        "{what}: the message names the limit: {message}"
    );
}

fn warehouse_entries(s: &Running) -> usize {
    walk(&s.dir.path().join("warehouse"))
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    1 + if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        0
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_name_at_the_element_limit_works_and_one_byte_over_is_a_400_naming_the_limit() {
    let s = Running::start();
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["v"]}));
    let at_limit = names(KEY_ELEMENT_BYTES_MAX, "a");
    let others = names(KEY_ELEMENT_BYTES_MAX, "c");
    for (name, floe_ns) in at_limit.iter().zip(&others) {
        let what = format!("{} bytes escaped ({name:?})", KEY_ELEMENT_BYTES_MAX);
        // Namespaces on floe's API and the Iceberg API; a table in such a namespace.
        let r = s.post(
            "/api/v1/trees/main/namespaces",
            json!({"namespace": [floe_ns]}),
        );
        assert_eq!(r.status, 201, "{what}: {:?}", r.body);
        let r = s.post("/iceberg/v1/main/namespaces", json!({"namespace": [name]}));
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        let r = s.post(
            &format!("/iceberg/v1/main/namespaces/{name}/tables"),
            json!({"name": "t", "schema": schema()}),
        );
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        // A table and a view with the name: created, loaded, committed to.
        let r = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": name, "schema": schema()}),
        );
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        let path = format!("/iceberg/v1/main/namespaces/db/tables/{name}");
        assert_eq!(s.get(&path).status, 200, "{what}");
        let r = s.post(
            &path,
            json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "v"}}]}),
        );
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        let r = s.post("/iceberg/v1/main/namespaces/v/views", view(name));
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        let path = format!("/iceberg/v1/main/namespaces/v/views/{name}");
        assert_eq!(s.get(&path).status, 200, "{what}");
    }

    let head = s.head("main");
    let files = warehouse_entries(&s);
    for name in names(KEY_ELEMENT_BYTES_MAX + 1, "a")
        .into_iter()
        .chain(["t".repeat(250)])
    {
        let what = format!("{} bytes ({name:?})", name.len());
        assert_limit(
            &s.post(
                "/api/v1/trees/main/namespaces",
                json!({"namespace": [name]}),
            ),
            &what,
        );
        assert_limit(
            &s.post("/iceberg/v1/main/namespaces", json!({"namespace": [name]})),
            &what,
        );
        assert_limit(
            &s.post(
                "/iceberg/v1/main/namespaces/db/tables",
                json!({"name": name, "schema": schema()}),
            ),
            &what,
        );
        assert_limit(
            &s.post("/iceberg/v1/main/namespaces/v/views", view(&name)),
            &what,
        );
        assert_limit(
            &s.post(
                "/iceberg/v1/main/tables/rename",
                json!({"source": {"namespace": ["db"], "name": "t0"}, "destination": {"namespace": ["db"], "name": name}}),
            ),
            &what,
        );
        assert_limit(
            &s.import(
                &json!({"table": format!("db.{name}"), "branch": "main"}),
                &[("a.csv", b"id\n1\n")],
                None,
            ),
            &what,
        );
    }
    assert_eq!(s.head("main"), head, "nothing changed in history");
    assert_eq!(warehouse_entries(&s), files, "nothing changed on disk");
}
