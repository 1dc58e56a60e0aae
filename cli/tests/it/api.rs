//! Black-box tests of floe's own API (`/api/v1`) against a real `floe serve`: every
//! endpoint's success and error paths, the one error shape, idempotency, concurrency and
//! metrics.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::{Reply, Running, key, merge_in_thread, send_and_drop};

/// Every error body has the one shape: a stable type, a message, an id, the status.
fn assert_error(r: &Reply, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["type"], kind, "{:?}", r.body);
    assert_eq!(r.body["status"], status, "{:?}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| m.len() > 10),
        "{:?}",
        r.body
    );
    let id = r.body["errorId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

/// Writes a raw request, then reads the status and body of the answer.
fn raw_request(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    // Read what arrives; the server may keep the connection open for the unsent body.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn names(r: &Reply) -> Vec<String> {
    r.body["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn refs_list_create_get_assign_delete_with_their_errors() {
    let s = Running::start();
    let main0 = s.head("main");
    assert_eq!(main0.len(), 64);
    let one = s.namespace("main", "a");
    // Create from a name, from name@hash, from a hash prefix, from ~N.
    assert_eq!(s.branch("dev", "main"), one);
    assert_eq!(s.branch("old", &format!("main@{}", &main0[..10])), main0);
    assert_eq!(s.branch("by-hash", &one[..12]), one);
    assert_eq!(s.branch("feature/x", "main~1"), main0);
    let tag = s.post(
        "/api/v1/refs",
        json!({"name": "v1", "kind": "tag", "from": "main"}),
    );
    assert_eq!((tag.status, tag.body["kind"].as_str()), (201, Some("tag")));
    assert_eq!(tag.body["createdBy"], "anonymous");

    // List, filter by kind, page.
    let all = s.get("/api/v1/refs");
    assert_eq!(
        names(&all),
        ["by-hash", "dev", "feature/x", "main", "old", "v1"]
    );
    assert_eq!(names(&s.get("/api/v1/refs?kind=tag")), ["v1"]);
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!(
                "/api/v1/refs?kind=branch&pageSize=2&pageToken={}",
                t.replace('/', "%2F")
            ),
            None => "/api/v1/refs?kind=branch&pageSize=2".to_owned(),
        };
        let page = s.get(&path);
        assert!(names(&page).len() <= 2);
        paged.extend(names(&page));
        match page.body["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, ["by-hash", "dev", "feature/x", "main", "old"]);

    // Get, including a name with a slash.
    let x = s.get("/api/v1/refs/feature%2Fx");
    assert_eq!(
        (x.status, x.body["head"].as_str()),
        (200, Some(main0.as_str()))
    );
    assert_error(&s.get("/api/v1/refs/nope"), 404, "RefNotFound");
    assert_error(&s.get("/api/v1/refs/a..b"), 400, "BadRequest");
    assert_error(&s.get("/api/v1/refs?kind=twig"), 400, "BadRequest");

    // Create errors: duplicate, invalid name, unknown source, reserved prefix, bad body.
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "dev"})),
        409,
        "RefAlreadyExists",
    );
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "-x"})),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "deadbeef"})),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "n", "from": "nope"})),
        404,
        "RefNotFound",
    );
    assert_error(
        &s.post(
            "/api/v1/refs",
            json!({"name": "n", "from": "0123456789abcdef"}),
        ),
        404,
        "CommitNotFound",
    );
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "floe-run/x"})),
        403,
        "ReservedRef",
    );
    assert_error(
        &s.post("/api/v1/refs", json!({"name": "n", "colour": "red"})),
        400,
        "BadRequest",
    );
    assert_error(
        &s.send(
            "POST",
            "/api/v1/refs",
            &Value::String("{not json".into()),
            None,
        ),
        400,
        "BadRequest",
    );

    // Assign: strict expected head; tags never move.
    let stale = s.send(
        "PUT",
        "/api/v1/refs/dev",
        &json!({"target": "main~1", "expectedHead": main0}),
        None,
    );
    assert_error(&stale, 409, "ReferenceConflict");
    assert_eq!(stale.body["currentHead"], one.as_str());
    let moved = s.send(
        "PUT",
        "/api/v1/refs/dev",
        &json!({"target": "main~1", "expectedHead": one}),
        None,
    );
    assert_eq!(
        (moved.status, moved.body["head"].as_str()),
        (200, Some(main0.as_str()))
    );
    assert_error(
        &s.send("PUT", "/api/v1/refs/v1", &json!({"target": "main~1"}), None),
        400,
        "TagImmutable",
    );
    assert_error(
        &s.send(
            "PUT",
            "/api/v1/refs/dev",
            &json!({"target": "main", "expectedHead": "abc"}),
            None,
        ),
        400,
        "BadRequest",
    );
    assert_error(
        &s.send(
            "PUT",
            "/api/v1/refs/ghost",
            &json!({"target": "main"}),
            None,
        ),
        404,
        "RefNotFound",
    );

    // Delete: strict expected head; then gone.
    let stale = s.send(
        "DELETE",
        &format!("/api/v1/refs/old?expectedHead={one}"),
        &Value::Null,
        None,
    );
    assert_error(&stale, 409, "ReferenceConflict");
    assert_eq!(stale.body["currentHead"], main0.as_str());
    let gone = s.send(
        "DELETE",
        &format!("/api/v1/refs/old?expectedHead={main0}"),
        &Value::Null,
        None,
    );
    assert_eq!(gone.status, 204);
    assert_error(&s.get("/api/v1/refs/old"), 404, "RefNotFound");
    assert_error(
        &s.send("DELETE", "/api/v1/refs/old", &Value::Null, None),
        404,
        "RefNotFound",
    );

    // The reflog saw it all, newest first, with the principal; filter and page it.
    let reflog = s.get("/api/v1/reflog?ref=old");
    let ops: Vec<&str> = reflog.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["delete", "create"]);
    assert_eq!(reflog.body["entries"][0]["principal"], "anonymous");
    assert_eq!(reflog.body["entries"][0]["old"], main0.as_str());
    let first = s.get("/api/v1/reflog?pageSize=1");
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 1);
    let token = first.body["nextPageToken"].as_str().unwrap();
    let second = s.get(&format!("/api/v1/reflog?pageSize=1&pageToken={token}"));
    assert!(second.body["entries"][0]["seq"].as_u64() < first.body["entries"][0]["seq"].as_u64());
    assert_error(&s.get("/api/v1/reflog?pageToken=x"), 400, "BadRequest");
}

#[test]
fn history_log_commit_diff_entries_with_filters_and_errors() {
    let s = Running::start();
    let root = s.head("main");
    s.namespace("main", "sales");
    s.namespace("main", "sales.eu");
    let third = s.namespace("main", "ops");
    let props = s.post(
        "/api/v1/trees/main/namespaces/sales/properties",
        json!({"updates": {"owner": "ana"}, "message": "Set the owner"}),
    );
    assert_eq!(props.status, 200, "{:?}", props.body);

    // Log: newest first, paged, filtered.
    let log = s.get("/api/v1/trees/main/log");
    let messages: Vec<&str> = log.body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages[..4],
        [
            "Set the owner",
            "create namespace ops",
            "create namespace sales.eu",
            "create namespace sales"
        ]
    );
    assert_eq!(log.body["commits"][0]["parents"][0], third.as_str());
    let page = s.get("/api/v1/trees/main/log?pageSize=2");
    assert_eq!(page.body["commits"].as_array().unwrap().len(), 2);
    let next = page.body["nextPageToken"].as_str().unwrap();
    let rest = s.get(&format!(
        "/api/v1/trees/main/log?pageSize=10&pageToken={next}"
    ));
    assert_eq!(
        rest.body["commits"][0]["message"],
        "create namespace sales.eu"
    );
    // A page token is signed for its log: a bare commit hash, or main's token on another
    // ref's log, is refused (a token cannot open a history one could not read).
    let bare = next.split('.').next().unwrap();
    let forged = s.get(&format!("/api/v1/trees/main/log?pageToken={bare}"));
    assert_error(&forged, 400, "BadRequest");
    let elsewhere = s.get(&format!("/api/v1/trees/{third}/log?pageToken={next}"));
    assert_error(&elsewhere, 400, "BadRequest");
    assert_eq!(
        s.get("/api/v1/trees/main/log?grep=OWNER").body["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/api/v1/trees/main/log?path=sales").body["commits"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        s.get("/api/v1/trees/main/log?author=anonym").body["commits"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        s.get("/api/v1/trees/main/log?until=2000-01-01T00:00:00Z")
            .body["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/api/v1/trees/main~3/log").body["commits"][0]["message"],
        "create namespace sales"
    );
    assert_error(
        &s.get("/api/v1/trees/main/log?since=yesterday"),
        400,
        "BadRequest",
    );
    assert_error(&s.get("/api/v1/trees/nope/log"), 404, "RefNotFound");
    assert_error(&s.get("/api/v1/trees/main~99/log"), 404, "NotInHistory");
    assert_error(&s.get("/api/v1/trees/main%40zz/log"), 400, "BadRequest");

    // One commit with its changes, by any spec.
    let c = s.get(&format!("/api/v1/commits/{}", &third[..10]));
    assert_eq!(c.body["commit"]["hash"], third.as_str());
    assert_eq!(
        c.body["changes"],
        json!([{"key": "ops", "elements": ["ops"], "kind": "added", "contentKind": "namespace", "after": c.body["changes"][0]["after"]}])
    );
    assert_eq!(
        s.get("/api/v1/commits/main").body["changes"][0]["kind"],
        "modified"
    );
    assert_error(
        &s.get("/api/v1/commits/0000000000000000"),
        404,
        "CommitNotFound",
    );
    assert_error(&s.get("/api/v1/commits/xyz"), 404, "RefNotFound");

    // Diff with each key's change kind, and a prefix.
    s.branch("dev", "main");
    let drop = s.send(
        "DELETE",
        "/api/v1/trees/dev/namespaces/ops",
        &Value::Null,
        None,
    );
    assert_eq!(drop.status, 200, "{:?}", drop.body);
    s.post(
        "/api/v1/trees/dev/namespaces/sales/properties",
        json!({"removals": ["owner"]}),
    );
    s.namespace("dev", "hr");
    let d = s.get("/api/v1/diff/main/dev");
    let kinds: Vec<(&str, &str)> = d.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("hr", "added"), ("ops", "removed"), ("sales", "modified")]
    );
    assert_eq!(
        s.get("/api/v1/diff/main/dev?prefix=sales").body["changes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get(&format!("/api/v1/diff/{root}/{root}")).body["changes"],
        json!([])
    );
    assert_error(&s.get("/api/v1/diff/main/nope"), 404, "RefNotFound");

    // Entries at any spec, under a prefix, paged.
    let e = s.get("/api/v1/trees/main/entries");
    let keys: Vec<&str> = e.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ops", "sales", "sales.eu"]);
    assert_eq!(e.body["entries"][0]["kind"], "namespace");
    let under = s.get("/api/v1/trees/main/entries?prefix=sales&pageSize=1");
    assert_eq!(under.body["entries"][0]["key"], "sales");
    let t = under.body["nextPageToken"].as_str().unwrap();
    let next = s.get(&format!(
        "/api/v1/trees/main/entries?prefix=sales&pageSize=1&pageToken={t}"
    ));
    assert_eq!(next.body["entries"][0]["key"], "sales.eu");
    assert!(next.body["nextPageToken"].is_null());
    assert_error(
        &s.get("/api/v1/trees/main/entries?pageToken=zz"),
        400,
        "BadRequest",
    );
}

#[test]
fn namespaces_create_get_list_update_drop_with_their_errors() {
    let s = Running::start();
    let created = s.post(
        "/api/v1/trees/main/namespaces",
        json!({"namespace": ["sales"], "properties": {"owner": "ana", "tier": "gold"}}),
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.body["namespace"]["properties"]["owner"], "ana");
    assert_eq!(created.body["head"], s.head("main").as_str());
    s.namespace("main", "sales.eu");
    s.namespace("main", "sales.eu.fr");
    s.namespace("main", "ops");

    assert_error(
        &s.post(
            "/api/v1/trees/main/namespaces",
            json!({"namespace": ["sales"]}),
        ),
        409,
        "NamespaceAlreadyExists",
    );
    assert_error(
        &s.post(
            "/api/v1/trees/main/namespaces",
            json!({"namespace": ["x", "y"]}),
        ),
        404,
        "NamespaceNotFound",
    );
    assert_error(
        &s.post(
            "/api/v1/trees/main/namespaces",
            json!({"namespace": ["bad\u{1}"]}),
        ),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post("/api/v1/trees/main/namespaces", json!({"namespace": []})),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post(
            "/api/v1/trees/main~1/namespaces",
            json!({"namespace": ["n"]}),
        ),
        400,
        "ReadOnlyRef",
    );
    s.post("/api/v1/refs", json!({"name": "v1", "kind": "tag"}));
    assert_error(
        &s.post("/api/v1/trees/v1/namespaces", json!({"namespace": ["n"]})),
        400,
        "NotABranch",
    );
    assert_error(
        &s.post("/api/v1/trees/nope/namespaces", json!({"namespace": ["n"]})),
        404,
        "RefNotFound",
    );

    let got = s.get("/api/v1/trees/main/namespaces/sales.eu");
    assert_eq!(got.body["namespace"]["elements"], json!(["sales", "eu"]));
    assert_eq!(
        s.get("/api/v1/trees/main/namespaces/sales%1Feu").body["namespace"]["namespace"],
        "sales.eu"
    );
    assert_error(
        &s.get("/api/v1/trees/main/namespaces/nope"),
        404,
        "NamespaceNotFound",
    );
    assert_eq!(
        s.get("/api/v1/trees/v1/namespaces/sales").status,
        200,
        "reads work on tags"
    );

    let list = |q: &str| -> Vec<String> {
        let r = s.get(&format!("/api/v1/trees/main/namespaces{q}"));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(""), ["ops", "sales", "sales.eu", "sales.eu.fr"]);
    assert_eq!(list("?childrenOnly=true"), ["ops", "sales"]);
    assert_eq!(list("?parent=sales"), ["sales.eu", "sales.eu.fr"]);
    assert_eq!(list("?parent=sales&childrenOnly=true"), ["sales.eu"]);
    assert_error(
        &s.get("/api/v1/trees/main/namespaces?parent=nope"),
        404,
        "NamespaceNotFound",
    );
    let page = s.get("/api/v1/trees/main/namespaces?pageSize=3");
    assert_eq!(page.body["namespaces"].as_array().unwrap().len(), 3);
    let t = page.body["nextPageToken"].as_str().unwrap();
    let rest = s.get(&format!(
        "/api/v1/trees/main/namespaces?pageSize=3&pageToken={t}"
    ));
    assert_eq!(rest.body["namespaces"][0]["namespace"], "sales.eu.fr");

    let upd = s.post(
        "/api/v1/trees/main/namespaces/sales/properties",
        json!({"updates": {"owner": "bo", "new": "1"}, "removals": ["tier", "missing"]}),
    );
    assert_eq!(upd.status, 200, "{:?}", upd.body);
    assert_eq!(upd.body["updated"], json!(["new", "owner"]));
    assert_eq!(
        (upd.body["removed"].clone(), upd.body["missing"].clone()),
        (json!(["tier"]), json!(["missing"]))
    );
    assert_eq!(
        s.get("/api/v1/trees/main/namespaces/sales").body["namespace"]["properties"],
        json!({"new": "1", "owner": "bo"})
    );
    assert_error(
        &s.post(
            "/api/v1/trees/main/namespaces/sales/properties",
            json!({"updates": {"a": "1"}, "removals": ["a"]}),
        ),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post(
            "/api/v1/trees/main/namespaces/nope/properties",
            json!({"updates": {"a": "1"}}),
        ),
        404,
        "NamespaceNotFound",
    );

    let not_empty = s.send(
        "DELETE",
        "/api/v1/trees/main/namespaces/sales.eu",
        &Value::Null,
        None,
    );
    assert_error(&not_empty, 409, "NamespaceNotEmpty");
    assert!(
        not_empty.body["message"]
            .as_str()
            .unwrap()
            .contains("sales.eu.fr"),
        "{:?}",
        not_empty.body
    );
    let head = s.head("main");
    let dropped = s.send(
        "DELETE",
        "/api/v1/trees/main/namespaces/sales.eu.fr",
        &Value::Null,
        None,
    );
    assert_eq!(
        (dropped.status, dropped.body["parent"].as_str()),
        (200, Some(head.as_str()))
    );
    assert_error(
        &s.send(
            "DELETE",
            "/api/v1/trees/main/namespaces/sales.eu.fr",
            &Value::Null,
            None,
        ),
        404,
        "NamespaceNotFound",
    );
    assert_eq!(
        s.get("/api/v1/trees/main~1/namespaces/sales.eu.fr").status,
        200,
        "history keeps it"
    );
}

#[test]
fn merges_cherry_picks_and_reverts_with_conflicts() {
    let s = Running::start();
    s.namespace("main", "base");
    s.branch("dev", "main");
    // Fast-forward.
    s.namespace("dev", "a");
    let ff = s.post("/api/v1/trees/main/merge", json!({"source": "dev"}));
    assert_eq!(
        (ff.status, ff.body["kind"].as_str()),
        (200, Some("fast-forward")),
        "{:?}",
        ff.body
    );
    assert_eq!(ff.body["head"], s.head("dev").as_str());
    assert_eq!(
        s.post("/api/v1/trees/main/merge", json!({"source": "dev"}))
            .body["kind"],
        "nothing-to-merge"
    );
    // Diverged: a dry run changes nothing, then a real merge with two parents.
    s.namespace("dev", "b");
    s.namespace("main", "c");
    let before = s.head("main");
    let dry = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "dryRun": true}),
    );
    assert_eq!(
        (dry.body["kind"].as_str(), dry.body["dryRun"].as_bool()),
        (Some("merged"), Some(true))
    );
    assert_eq!(s.head("main"), before, "a dry run writes nothing");
    assert_error(
        &s.post(
            "/api/v1/trees/main/merge",
            json!({"source": "dev", "strategy": "ff-only"}),
        ),
        409,
        "NotFastForward",
    );
    let merged = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "message": "Bring b", "properties": {"ticket": "7"}}),
    );
    assert_eq!(merged.body["kind"], "merged", "{:?}", merged.body);
    assert_eq!(merged.body["changes"][0]["key"], "b");
    let commit = s.get("/api/v1/commits/main").body["commit"].clone();
    assert_eq!(commit["parents"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            commit["message"].as_str(),
            commit["properties"]["ticket"].as_str()
        ),
        (Some("Bring b"), Some("7"))
    );

    // A conflict: 409 with the keys, both sides' change kinds, and the current head.
    s.post(
        "/api/v1/trees/dev/namespaces/a/properties",
        json!({"updates": {"x": "dev"}}),
    );
    s.post(
        "/api/v1/trees/main/namespaces/a/properties",
        json!({"updates": {"x": "main"}}),
    );
    let head = s.head("main");
    let conflict = s.post("/api/v1/trees/main/merge", json!({"source": "dev"}));
    assert_error(&conflict, 409, "Conflict");
    assert_eq!(conflict.body["currentHead"], head.as_str());
    assert_eq!(conflict.body["conflicts"][0]["key"], "a");
    assert_eq!(conflict.body["conflicts"][0]["kind"], "both-changed");
    assert_eq!(
        (
            conflict.body["conflicts"][0]["sourceChange"].as_str(),
            conflict.body["conflicts"][0]["targetChange"].as_str()
        ),
        (Some("modified"), Some("modified"))
    );
    assert_eq!(s.head("main"), head, "a conflict changes nothing");
    // Per-key resolution and the on-conflict default both resolve it.
    let keep = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "resolutions": {"a": "target"}, "dryRun": true}),
    );
    assert_eq!(keep.status, 200, "{:?}", keep.body);
    let take = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "onConflict": "source"}),
    );
    assert_eq!(take.status, 200, "{:?}", take.body);
    assert_eq!(
        s.get("/api/v1/trees/main/namespaces/a").body["namespace"]["properties"]["x"],
        "dev"
    );
    // Strict expected head; squash.
    let stale = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "expectedHead": head}),
    );
    assert_error(&stale, 409, "ReferenceConflict");
    s.namespace("dev", "d");
    let sq = s.post(
        "/api/v1/trees/main/merge",
        json!({"source": "dev", "strategy": "squash"}),
    );
    assert_eq!(sq.body["kind"], "squashed", "{:?}", sq.body);
    assert_error(
        &s.post(
            "/api/v1/trees/main/merge",
            json!({"source": "dev", "strategy": "sideways"}),
        ),
        400,
        "BadRequest",
    );
    assert_error(
        &s.post("/api/v1/trees/main/merge", json!({"source": "nope"})),
        404,
        "RefNotFound",
    );
    assert_error(
        &s.post("/api/v1/trees/main~1/merge", json!({"source": "dev"})),
        400,
        "ReadOnlyRef",
    );

    // Cherry-pick a commit onto another branch; again is a no-op; a diverged key conflicts.
    s.branch("hot", "main~3");
    let e = s.namespace("dev", "e");
    let picked = s.post("/api/v1/trees/hot/cherry-pick", json!({"commit": e}));
    assert_eq!(
        (picked.status, picked.body["created"].as_bool()),
        (200, Some(true)),
        "{:?}",
        picked.body
    );
    assert_eq!(
        s.get("/api/v1/commits/hot").body["commit"]["properties"]["floe.cherry-pick.of"],
        e.as_str()
    );
    let again = s.post("/api/v1/trees/hot/cherry-pick", json!({"commit": e}));
    assert_eq!(again.body["created"], false);
    assert_error(
        &s.post(
            "/api/v1/trees/hot/cherry-pick",
            json!({"commit": "0000000000000000"}),
        ),
        404,
        "CommitNotFound",
    );
    // Revert it on dev; reverting a change whose key moved on conflicts.
    let reverted = s.post(
        "/api/v1/trees/dev/revert",
        json!({"commit": e, "message": "Undo e"}),
    );
    assert_eq!(reverted.status, 200, "{:?}", reverted.body);
    assert_error(
        &s.get("/api/v1/trees/dev/namespaces/e"),
        404,
        "NamespaceNotFound",
    );
    let changed = s.namespace("dev", "f");
    s.post(
        "/api/v1/trees/dev/namespaces/f/properties",
        json!({"updates": {"k": "v"}}),
    );
    assert_error(
        &s.post("/api/v1/trees/dev/revert", json!({"commit": changed})),
        409,
        "Conflict",
    );
}

#[test]
fn two_clients_merging_with_the_same_expected_head_one_wins_the_other_gets_409() {
    let s = Running::start();
    s.namespace("main", "base");
    s.branch("one", "main");
    s.branch("two", "main");
    s.namespace("one", "x");
    s.namespace("two", "y");
    for round in 0..5 {
        let head = s.head("main");
        let url = s.url();
        let merge = |source: &str| merge_in_thread(url.clone(), source, &head);
        let (a, b) = (merge("one"), merge("two"));
        let mut results = vec![a.join().unwrap(), b.join().unwrap()];
        results.sort_by_key(|(status, _)| *status);
        assert_eq!(
            (results[0].0, results[1].0),
            (200, 409),
            "round {round}: {results:?}"
        );
        let winner = results[0].1["head"].as_str().unwrap().to_owned();
        assert_eq!(results[1].1["type"], "ReferenceConflict");
        assert_eq!(
            results[1].1["currentHead"],
            winner.as_str(),
            "the loser learns the current head"
        );
        assert_eq!(s.head("main"), winner);
        // New work on both sources for the next round.
        s.namespace("one", &format!("x{round}"));
        s.namespace("two", &format!("y{round}"));
    }
}

#[test]
fn an_idempotency_key_applies_a_write_once_and_replays_its_answer() {
    let s = Running::start();
    s.namespace("main", "base");
    // A response dropped on the way back: the retry with the same key gets the answer of
    // the write that applied, and the write applied once.
    let k = key();
    let body = json!({"namespace": ["once"]}).to_string();
    send_and_drop(
        &s.server.addr,
        "POST",
        "/api/v1/trees/main/namespaces",
        &body,
        &k,
    );
    let retry = loop {
        let r = s.send(
            "POST",
            "/api/v1/trees/main/namespaces",
            &serde_json::from_str(&body).unwrap(),
            Some(&k),
        );
        if r.body["type"] == "IdempotencyInFlight" {
            assert!(r.headers.contains_key("retry-after"));
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        break r;
    };
    assert_eq!(retry.status, 201, "{:?}", retry.body);
    assert_eq!(retry.body["head"], s.head("main").as_str());
    assert_eq!(retry.body["namespace"]["namespace"], "once");
    let creates = s.get("/api/v1/trees/main/log?grep=create%20namespace%20once");
    assert_eq!(
        creates.body["commits"].as_array().unwrap().len(),
        1,
        "applied once"
    );
    // A second retry answers the same again.
    let again = s.send(
        "POST",
        "/api/v1/trees/main/namespaces",
        &serde_json::from_str(&body).unwrap(),
        Some(&k),
    );
    assert_eq!(again.body, retry.body);

    // Every kind of write replays: create ref, merge, assign, delete.
    let k = key();
    let first = s.send("POST", "/api/v1/refs", &json!({"name": "dev"}), Some(&k));
    let second = s.send("POST", "/api/v1/refs", &json!({"name": "dev"}), Some(&k));
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.body, second.body);
    s.namespace("dev", "d");
    let k = key();
    let m1 = s.send(
        "POST",
        "/api/v1/trees/main/merge",
        &json!({"source": "dev"}),
        Some(&k),
    );
    let m2 = s.send(
        "POST",
        "/api/v1/trees/main/merge",
        &json!({"source": "dev"}),
        Some(&k),
    );
    assert_eq!(m1.status, 200, "{:?}", m1.body);
    assert_eq!(m1.body, m2.body);
    let k = key();
    let d1 = s.send("DELETE", "/api/v1/refs/dev", &Value::Null, Some(&k));
    let d2 = s.send("DELETE", "/api/v1/refs/dev", &Value::Null, Some(&k));
    assert_eq!(
        (d1.status, d2.status),
        (204, 204),
        "the retry of a delete is not a 404"
    );

    // A properties update replays its removed/missing split from the recorded write.
    let k = key();
    let body = json!({"updates": {"a": "1"}, "removals": ["a0", "nope"]});
    s.post(
        "/api/v1/trees/main/namespaces/once/properties",
        json!({"updates": {"a0": "x"}}),
    );
    let p1 = s.send(
        "POST",
        "/api/v1/trees/main/namespaces/once/properties",
        &body,
        Some(&k),
    );
    let p2 = s.send(
        "POST",
        "/api/v1/trees/main/namespaces/once/properties",
        &body,
        Some(&k),
    );
    assert_eq!(p1.status, 200, "{:?}", p1.body);
    assert_eq!(
        (p1.body["removed"].clone(), p1.body["missing"].clone()),
        (json!(["a0"]), json!(["nope"]))
    );
    assert_eq!(p1.body, p2.body);

    // A retry whose first answer was a 409 gets the same 409, even once the write would
    // succeed.
    let k = key();
    let c1 = s.send(
        "POST",
        "/api/v1/trees/main/namespaces",
        &json!({"namespace": ["base"]}),
        Some(&k),
    );
    assert_error(&c1, 409, "NamespaceAlreadyExists");
    assert_eq!(
        s.send(
            "DELETE",
            "/api/v1/trees/main/namespaces/base",
            &Value::Null,
            None
        )
        .status,
        200
    );
    let c2 = s.send(
        "POST",
        "/api/v1/trees/main/namespaces",
        &json!({"namespace": ["base"]}),
        Some(&k),
    );
    assert_eq!(
        (c2.status, &c2.body),
        (409, &c1.body),
        "the same 409, error id included"
    );
    assert_error(
        &s.get("/api/v1/trees/main/namespaces/base"),
        404,
        "NamespaceNotFound",
    );

    // The same key for another request is a 422; a key that is not a UUIDv7 is a 400.
    let other = s.send(
        "POST",
        "/api/v1/trees/main/namespaces",
        &json!({"namespace": ["other"]}),
        Some(&k),
    );
    assert_error(&other, 422, "IdempotencyKeyReused");
    let v4 = s.send(
        "POST",
        "/api/v1/refs",
        &json!({"name": "z"}),
        Some("6f1c2a2e-3b4d-4c5e-8f60-718293a4b5c6"),
    );
    assert_error(&v4, 400, "BadRequest");
    assert_error(&s.get("/api/v1/refs/z"), 404, "RefNotFound");
}

#[test]
fn errors_routes_limits_metrics_and_the_served_openapi_document() {
    let s = Running::start();
    assert_error(&s.get("/api/v1/nope"), 404, "NotFound");
    let patch = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let r = agent
            .patch(format!("{}/api/v1/refs", s.url()))
            .send("")
            .unwrap();
        r.status().as_u16()
    };
    assert_eq!(patch, 405);
    // A body over the limit is a 413 in the one shape, and changes nothing. (A raw socket:
    // the server answers before reading such a body, which breaks a client that insists on
    // sending it all first.)
    let (status, body) = raw_request(
        &s.server.addr,
        &format!(
            "POST /api/v1/trees/main/namespaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"namespace\": [\"big\"]",
            8 * 1024 * 1024
        ),
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &body["type"]),
        (413, &json!("PayloadTooLarge")),
        "{body}"
    );
    // Properties over the store's limit: a 400 that names the limit.
    let big = json!({"namespace": ["big"], "properties": {"p": "x".repeat(40 * 1024)}});
    let r = s.post("/api/v1/trees/main/namespaces", big);
    assert_error(&r, 400, "BadRequest");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("NAMESPACE_PROPERTIES_BYTES_MAX"),
        "{:?}",
        r.body
    );
    assert_eq!(
        s.get("/api/v1/trees/main/log").body["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Metrics: per-route counts and histograms, commit, merge and conflict counters.
    s.namespace("main", "m");
    s.branch("dev", "main");
    s.namespace("dev", "n");
    s.post("/api/v1/trees/main/merge", json!({"source": "dev"}));
    s.post("/api/v1/refs", json!({"name": "dev"}));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut m = agent.get(format!("{}/metrics", s.url())).call().unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.body_mut().read_to_string().unwrap();
    for line in [
        "floe_http_requests_total{route=\"/api/v1/refs\",method=\"POST\",status=\"409\"} 1",
        "floe_http_requests_total{route=\"/api/v1/trees/{ref}/namespaces\",method=\"POST\",status=\"201\"} 2",
        "floe_commits_total 2",
        "floe_merges_total{kind=\"fast-forward\"} 1",
        "floe_conflicts_total 1",
        "floe_http_request_duration_seconds_count{route=\"/api/v1/trees/{ref}/merge\",method=\"POST\"} 1",
    ] {
        assert!(text.contains(line), "metrics lack {line}:\n{text}");
    }
    assert!(text.contains("floe_http_request_duration_seconds_bucket{route=\"/api/v1/refs\",method=\"POST\",le=\"+Inf\"} 2"), "{text}");

    // The served document is the committed one, and it names every route the tests use.
    let served = s.get("/api/v1/openapi.json").body;
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../openapi/floe-api.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    let paths: BTreeSet<&str> = served["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/api/v1/refs",
        "/api/v1/refs/{name}",
        "/api/v1/trees/{ref}/merge",
        "/api/v1/diff/{from}/{to}",
        "/metrics",
    ] {
        assert!(paths.contains(p), "{p} not in {paths:?}");
    }
}
