//! A table's files and identity (issue 14, items 3, 9 and 10): reads and new snapshots are
//! confined to the table's own location; a registered table named the Hadoop way can be
//! committed to; a table-uuid lives under one key per ref, however registrations race; and
//! a create only takes a new, unused location.

use std::path::PathBuf;

use iceberg::io::FileIOBuilder;
use iceberg::spec::{FormatVersion, ManifestList, ManifestListWriter};
use serde_json::{Value, json};

use crate::data::parquet;
use crate::harness::Running;

fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": false, "type": "long"},
        {"id": 2, "name": "name", "required": false, "type": "string"},
        {"id": 3, "name": "score", "required": false, "type": "double"}
    ]})
}

fn local(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

/// A table `db.<name>` with rows, imported (its files are floe's own, in its folder);
/// returns its loaded metadata.
fn imported(s: &Running, name: &str, rows: std::ops::Range<i64>) -> Value {
    let dir = s.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let file = parquet(&dir, &format!("{name}.parquet"), rows);
    let bytes = std::fs::read(file).unwrap();
    let r = s.import(
        &json!({ "table": format!("db.{name}") }),
        &[(&format!("{name}.parquet"), &bytes)],
        None,
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.get(&format!("/iceberg/v1/main/namespaces/db/tables/{name}"))
        .body
}

/// An append of a snapshot whose manifest list is `list`, to table `db.<name>`.
fn add_snapshot(s: &Running, name: &str, id: i64, list: &str) -> crate::harness::Reply {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    s.post(
        &format!("/iceberg/v1/main/namespaces/db/tables/{name}"),
        json!({"requirements": [], "updates": [
            {"action": "add-snapshot", "snapshot": {"snapshot-id": id, "sequence-number": 1,
             "timestamp-ms": now_ms, "manifest-list": list,
             "summary": {"operation": "append"}, "schema-id": 0}},
            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id}]}),
    )
}

fn assert_refused(r: &crate::harness::Reply, what: &str) {
    assert_eq!(r.status, 400, "{what}: {:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("outside the table's location"),
        "{what}: {message}"
    );
}

/// A commit can no longer point a table at another table's manifest list, manifests or
/// data files; a table whose metadata does anyway (registered from a crafted file) reads
/// nothing of the other table: every read is confined to its own location.
#[test]
fn a_table_reads_and_commits_only_files_under_its_own_location() {
    let mut s = Running::start();
    s.namespace("main", "db");
    let b = imported(&s, "b", 0..50);
    let a = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "a", "schema": schema()}),
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a_location = a.body["metadata"]["location"].as_str().unwrap().to_owned();
    let b_list = b["metadata"]["snapshots"][0]["manifest-list"]
        .as_str()
        .unwrap()
        .to_owned();
    let head = s.head("main");

    // 1. The manifest list itself in b's folder.
    assert_refused(&add_snapshot(&s, "a", 1, &b_list), "b's manifest list");
    // 2. A copy of it in a's folder, listing b's manifests.
    let a_metadata = local(&a_location).join("metadata");
    let copied = a_metadata.join("copied-list.avro");
    std::fs::copy(local(&b_list), &copied).unwrap();
    let copied = format!("file://{}", copied.display());
    assert_refused(&add_snapshot(&s, "a", 2, &copied), "b's manifests");
    // 3. A manifest in a's folder (a copy of b's), listed by a list in a's folder: it names
    //    b's data files.
    let list = ManifestList::parse_with_version(
        &std::fs::read(local(&b_list)).unwrap(),
        FormatVersion::V2,
    )
    .unwrap();
    let mut manifests = Vec::new();
    for (i, m) in list.entries().iter().enumerate() {
        let copy = a_metadata.join(format!("copied-manifest-{i}.avro"));
        std::fs::copy(local(&m.manifest_path), &copy).unwrap();
        let mut m = m.clone();
        m.manifest_path = format!("file://{}", copy.display());
        manifests.push(m);
    }
    let own_list = format!("file://{}", a_metadata.join("own-list.avro").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let root = std::fs::canonicalize(s.dir.path().join("warehouse")).unwrap();
        let io = FileIOBuilder::new(std::sync::Arc::new(floe_catalog::WarehouseStorageFactory))
            .with_props([(
                floe_catalog::WAREHOUSE_ROOT_PROP.to_owned(),
                root.display().to_string(),
            )])
            .build();
        let out = io.new_output(&own_list).unwrap().writer().await.unwrap();
        let mut w = ManifestListWriter::v2(out, 3, None, 1);
        w.add_manifests(manifests.into_iter()).unwrap();
        w.close().await.unwrap();
    });
    assert_refused(&add_snapshot(&s, "a", 3, &own_list), "b's data files");
    assert_eq!(s.head("main"), head, "nothing committed");
    let count = s.query_json(json!({ "sql": "SELECT count(*) AS n FROM db.a" }));
    assert_eq!(count.body[0]["n"], 0, "{:?}", count.body);

    // Registering a crafted file (its own folder, b's snapshots) is refused the same way:
    // a registered table's own location is its root.
    let c_location = format!(
        "{}/c-01a2a000-0000-7000-8000-000000000001",
        a_location.rsplit_once('/').unwrap().0
    );
    let mut crafted = b["metadata"].clone();
    crafted["location"] = json!(c_location);
    crafted["table-uuid"] = json!("01a2a000-0000-7000-8000-000000000001");
    let c_file = local(&c_location).join("metadata");
    std::fs::create_dir_all(&c_file).unwrap();
    let c_file = c_file.join("00000-01a2a000-0000-7000-8000-000000000002.metadata.json");
    std::fs::write(&c_file, crafted.to_string()).unwrap();
    let register = |name: &str| {
        s.post(
            "/iceberg/v1/main/namespaces/db/register",
            json!({"name": name, "metadata-location": format!("file://{}", c_file.display())}),
        )
    };
    assert_refused(&register("c"), "a registration naming b's files");
    // And should such metadata get past every check anyway (here: the file is changed on
    // disk after a clean registration, then the server restarts with an empty cache), a
    // query reads none of b's rows: the read is refused as outside c's location.
    let mut clean = crafted.clone();
    clean["snapshots"] = json!([]);
    clean["snapshot-log"] = json!([]);
    clean["refs"] = json!({});
    clean["current-snapshot-id"] = json!(-1);
    let clean_file =
        c_file.with_file_name("00001-01a2a000-0000-7000-8000-000000000003.metadata.json");
    std::fs::write(&clean_file, clean.to_string()).unwrap();
    let registered = s.post(
        "/iceberg/v1/main/namespaces/db/register",
        json!({"name": "c", "metadata-location": format!("file://{}", clean_file.display())}),
    );
    assert_eq!(registered.status, 200, "{:?}", registered.body);
    std::fs::write(&clean_file, crafted.to_string()).unwrap();
    s.restart_args(&[]);
    let read = s.query_json(json!({ "sql": "SELECT count(*) AS n FROM db.c" }));
    assert_eq!(read.status, 422, "b's rows through c: {:?}", read.body);
    assert_eq!(read.body["type"], "TableUnreadable", "{:?}", read.body);
    let message = read.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("outside"), "{:?}", read.body);
    // b itself reads as always.
    let own = s.query_json(json!({ "sql": "SELECT count(*) AS n FROM db.b" }));
    assert_eq!(own.body[0]["n"], 50, "{:?}", own.body);
}

/// A table registered from a Hadoop-style `v3.metadata.json` takes commits: the next file
/// continues its sequence in floe's form (issue 14, item 9).
#[test]
fn a_registered_table_with_hadoop_metadata_names_takes_commits() {
    let s = Running::start();
    s.namespace("main", "db");
    let t = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "h", "schema": schema()}),
    );
    let location = t.body["metadata"]["location"].as_str().unwrap().to_owned();
    let file = local(t.body["metadata-location"].as_str().unwrap());
    let hadoop = local(&location).join("metadata").join("v3.metadata.json");
    std::fs::copy(&file, &hadoop).unwrap();
    // Dropped, then registered again from its own metadata: the un-drop path.
    let dropped = s.send(
        "DELETE",
        "/iceberg/v1/main/namespaces/db/tables/h",
        &Value::Null,
        None,
    );
    assert_eq!(dropped.status, 204, "{:?}", dropped.body);
    let hadoop_url = format!("file://{}", hadoop.display());
    let r = s.post(
        "/iceberg/v1/main/namespaces/db/register",
        json!({"name": "h2", "metadata-location": hadoop_url}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let committed = s.post(
        "/iceberg/v1/main/namespaces/db/tables/h2",
        json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "v"}}]}),
    );
    assert_eq!(committed.status, 200, "{:?}", committed.body);
    let next = committed.body["metadata-location"].as_str().unwrap();
    let name = next.rsplit('/').next().unwrap();
    assert!(
        next.starts_with(&format!("{location}/metadata/")) && name.starts_with("00004-"),
        "{next}"
    );
    assert!(name.ends_with(".metadata.json"), "{next}");
    let loaded = s.get("/iceberg/v1/main/namespaces/db/tables/h2");
    assert_eq!(loaded.body["metadata"]["properties"]["k"], "v");
    // And once more, from floe's own name.
    let again = s.post(
        "/iceberg/v1/main/namespaces/db/tables/h2",
        json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "w"}}]}),
    );
    assert!(
        again.body["metadata-location"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .starts_with("00005-")
    );
}

/// One table-uuid, one key per ref, checked as the commit lands: concurrent registrations
/// of one table land once; a create takes only a new location — not a dropped table's
/// folder, not another branch's table's (issue 14, item 10).
#[test]
fn a_table_uuid_and_a_location_belong_to_one_table() {
    let s = Running::start();
    s.namespace("main", "db");
    let t = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "r", "schema": schema()}),
    );
    let metadata = t.body["metadata-location"].as_str().unwrap().to_owned();
    let live = s.post(
        "/iceberg/v1/main/namespaces/db/register",
        json!({"name": "copy", "metadata-location": metadata}),
    );
    assert_eq!(live.status, 409, "{:?}", live.body);
    assert_eq!(live.body["error"]["type"], "AlreadyExistsException");
    assert!(
        live.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("same table"),
        "{:?}",
        live.body
    );
    s.send(
        "DELETE",
        "/iceberg/v1/main/namespaces/db/tables/r",
        &Value::Null,
        None,
    );
    // Eight registrations of the dropped table race: exactly one lands.
    let url = s.url();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (url, metadata) = (url.clone(), metadata.clone());
            std::thread::spawn(move || {
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent()
                    .post(format!("{url}/iceberg/v1/main/namespaces/db/register"))
                    .content_type("application/json")
                    .send(
                        json!({"name": format!("r{i}"), "metadata-location": metadata}).to_string(),
                    )
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let listed = s.get("/iceberg/v1/main/namespaces/db/tables").body;
    assert_eq!(
        listed["identifiers"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // A create whose set-location is a dropped table's folder, or another branch's
    // table's, is refused; a fresh staged location works.
    let commit_create = |branch: &str, name: &str, location: &str| {
        s.post(
            &format!("/iceberg/v1/{branch}/namespaces/db/tables/{name}"),
            json!({"requirements": [{"type": "assert-create"}],
                   "updates": [{"action": "add-schema", "schema": schema()},
                               {"action": "set-current-schema", "schema-id": -1},
                               {"action": "set-location", "location": location}]}),
        )
    };
    let staged = |branch: &str, name: &str| {
        s.post(
            &format!("/iceberg/v1/{branch}/namespaces/db/tables"),
            json!({"name": name, "schema": schema(), "stage-create": true}),
        )
        .body["metadata"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let dropped = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "d", "schema": schema()}),
    );
    let dropped_location = dropped.body["metadata"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    s.send(
        "DELETE",
        "/iceberg/v1/main/namespaces/db/tables/d",
        &Value::Null,
        None,
    );
    let reused = commit_create("main", "d", &dropped_location);
    assert_eq!(reused.status, 400, "{:?}", reused.body);
    assert!(
        reused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in use"),
        "{:?}",
        reused.body
    );
    s.branch("dev", "main");
    let on_dev = commit_create("dev", "e", &staged("dev", "e"));
    assert_eq!(on_dev.status, 200, "{:?}", on_dev.body);
    let dev_location = on_dev.body["metadata"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let shared = commit_create("main", "e", &dev_location);
    assert_eq!(shared.status, 400, "{:?}", shared.body);
    let fresh = commit_create("main", "e", &staged("main", "e"));
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    // A client that stages a table, writes its data there, then commits the create (a
    // create-table transaction with rows, a CTAS) finds its own folder already made.
    let location = staged("main", "w");
    let data = local(&location).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("00000-0-x.parquet"), b"rows").unwrap();
    let written = commit_create("main", "w", &location);
    assert_eq!(written.status, 200, "{:?}", written.body);
}
