//! Warehouses on S3 (issue 20) against a real S3 API on loopback: moto's server from the
//! test venv (`moto[server]` in tests/requirements.txt), one per test, with its own bucket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Running;

/// A moto S3 server on a free loopback port; stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto, or `None` (said) where the test venv is not there.
    pub(crate) fn start() -> Option<Moto> {
        let venv = std::env::var_os("FLOE_TEST_VENV")?;
        let server = std::path::Path::new(&venv).join("bin/moto_server");
        if !server.exists() {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&moto.endpoint).call().is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_empty()
            .expect("the bucket is made");
    }

    /// The keys under `prefix` of `bucket`.
    pub(crate) fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listing = ureq::get(&format!(
            "{}/{bucket}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

impl Moto {
    /// The multipart uploads in progress in `bucket` (their keys).
    pub(crate) fn uploads(&self, bucket: &str) -> Vec<String> {
        let listing = ureq::get(&format!("{}/{bucket}?uploads", self.endpoint))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        listing
            .split("<Upload>")
            .skip(1)
            .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

impl Moto {
    /// How floe reaches this moto in process (its test credentials, path style).
    pub(crate) fn options(&self) -> floe_catalog::s3::S3Options {
        floe_catalog::s3::S3Options {
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            access_key_id: Some("testing".to_owned()),
            secret_access_key: Some("testing".to_owned()),
            ..Default::default()
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": false, "type": "long"}
    ]})
}

/// The fast phase's S3 smoke test: tables made through the Iceberg REST API land their
/// metadata under the warehouse's prefix in the bucket, load back from there, answer
/// queries through floe's engine, and locations outside (another bucket, another prefix,
/// a local path) are refused.
#[test]
fn a_warehouse_on_s3_keeps_tables_under_its_bucket_and_prefix() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-wh");
    moto.create_bucket("floe-other");
    let s = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-test-wh/team/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    s.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    let created = s.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "t", "schema": schema()}),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let location = created.body["metadata"]["location"].as_str().unwrap();
    assert!(
        location.starts_with("s3://floe-test-wh/team/wh/db/t-"),
        "{location}"
    );
    let metadata = created.body["metadata-location"].as_str().unwrap();
    let key = metadata.strip_prefix("s3://floe-test-wh/").unwrap();
    assert!(
        moto.keys("floe-test-wh", "team/wh/db/")
            .contains(&key.to_owned()),
        "{key} in the bucket"
    );
    // The probe's marker is gone.
    assert!(
        !moto
            .keys("floe-test-wh", "team/wh/")
            .iter()
            .any(|k| k.contains(".floe-probe-")),
        "{:?}",
        moto.keys("floe-test-wh", "team/wh/")
    );
    let loaded = s.get("/iceberg/v1/main/namespaces/db/tables/t");
    assert_eq!(loaded.status, 200, "{:?}", loaded.body);
    assert_eq!(loaded.body["metadata-location"], metadata);
    // What engines need to reach the files with their own credentials; never ours.
    let config = &loaded.body["config"];
    assert_eq!(config["s3.endpoint"], moto.endpoint.as_str(), "{config}");
    assert_eq!(config["s3.path-style-access"], "true", "{config}");
    assert_eq!(config["s3.region"], "us-east-1", "{config}");
    assert!(!config.to_string().contains("testing"), "{config}");
    assert_eq!(created.body["config"], *config);
    let counted = s.query_json(json!({"sql": "SELECT count(*) AS n FROM db.t", "ref": "main"}));
    assert_eq!(counted.status, 200, "{:?}", counted.body);
    assert_eq!(counted.body[0]["n"], 0);
    for elsewhere in [
        "s3://floe-other/team/wh/db/u",
        "s3://floe-test-wh/team/other/db/u",
        "s3://floe-test-wh/team/wh2/db/u",
        "file:///tmp/elsewhere",
    ] {
        let refused = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "u", "schema": schema(), "location": elsewhere}),
        );
        assert_eq!(refused.status, 400, "{elsewhere}: {:?}", refused.body);
    }
    assert!(moto.keys("floe-other", "").is_empty());
}

/// A store that cannot be written stops the server at start, saying why.
#[test]
fn a_warehouse_on_a_missing_bucket_stops_the_start() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = crate::harness::serve_command(
        dir.path(),
        &[
            "--warehouse",
            "s3://floe-no-such-bucket/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
        ],
    )
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cannot write to the warehouse s3://floe-no-such-bucket/wh"),
        "{said}"
    );
    // An import prefix that overlaps the warehouse would let imports read any table's files.
    moto.create_bucket("floe-test-overlap");
    for prefix in ["s3://floe-test-overlap/wh/db", "s3://floe-test-overlap"] {
        let out = crate::harness::serve_command(
            dir.path(),
            &[
                "--warehouse",
                "s3://floe-test-overlap/wh",
                "--s3-endpoint",
                &moto.endpoint,
                "--s3-path-style",
                "--import-prefix",
                prefix,
            ],
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
        assert!(!out.status.success(), "{prefix}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("overlaps the warehouse"), "{prefix}: {said}");
    }
}

/// A server on an S3 warehouse of moto, with moto's test credentials.
pub(crate) fn on_s3(moto: &Moto, warehouse: &str) -> Running {
    Running::start_with_env(
        &[
            "--warehouse",
            warehouse,
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
}

/// Imports write their data files into the bucket under the table's location: a Parquet
/// file copied as it is (larger than one part: a multipart upload), a CSV converted; the
/// rows read back. A failed import leaves no object behind.
#[test]
fn imports_put_their_files_in_the_bucket_and_a_failed_one_leaves_none() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-import");
    let s = on_s3(&moto, "s3://floe-test-import/wh");
    s.namespace("main", "db");
    let files = tempfile::tempdir().unwrap();
    let small = crate::data::parquet(files.path(), "small.parquet", 0..10);
    let big = crate::data::parquet(files.path(), "big.parquet", 10..700_010);
    let big_size = std::fs::metadata(&big).unwrap().len();
    assert!(big_size > 8 << 20, "{big_size} bytes: more than one part");
    let csv = crate::data::csv(
        files.path(),
        "more.csv",
        "id,name,score",
        (0..5).map(|i| format!("{},c{i},1.5", 1_000_000 + i)),
    );
    let cfg = s.config_dir();
    for (file, mode) in [(&small, "create"), (&big, "append"), (&csv, "append")] {
        let out = s.floe(
            &cfg,
            &[
                "--json",
                "import",
                crate::data::p(file),
                "--table",
                "db.t",
                "--mode",
                mode,
            ],
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        let answer: Value = serde_json::from_str(&out.stdout).unwrap();
        let keys = moto.keys("floe-test-import", "wh/db/");
        for location in answer["files"][0]["locations"].as_array().unwrap() {
            let location = location.as_str().unwrap();
            assert!(
                location.starts_with("s3://floe-test-import/wh/db/t-"),
                "{location}"
            );
            let key = location.strip_prefix("s3://floe-test-import/").unwrap();
            assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
        }
    }
    let counted = s.query_json(json!({
        "sql": "SELECT count(*) AS n, sum(id) AS s FROM db.t", "ref": "main"
    }));
    assert_eq!(counted.status, 200, "{:?}", counted.body);
    assert_eq!(counted.body[0]["n"], 700_015);
    let ids: i64 = (0..700_010).sum::<i64>() + (0..5).map(|i| 1_000_000 + i).sum::<i64>();
    assert_eq!(counted.body[0]["s"], ids);
    // A conversion that fails midway, after its first row group (over one part) went up
    // as a multipart upload: nothing under a new table's location, the upload aborted, main
    // unchanged.
    let head = s.head("main");
    let before = moto.keys("floe-test-import", "wh/");
    let bad = crate::data::csv(
        files.path(),
        "late.csv",
        "id,code",
        (0..1_060_000u64).map(|i| {
            if i == 1_055_000 {
                "oops,x".to_owned()
            } else {
                format!("{i},{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            }
        }),
    );
    let out = s.floe(&cfg, &["import", crate::data::p(&bad), "--table", "db.u"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert_eq!(s.head("main"), head, "a failed import changed main");
    let after = moto.keys("floe-test-import", "wh/");
    let added: Vec<&String> = after
        .iter()
        .filter(|k| !before.contains(k) && k.ends_with(".parquet"))
        .collect();
    assert!(added.is_empty(), "left behind: {added:?}");
    // The abort is sent as the failed file is dropped; it lands within moments.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !moto.uploads("floe-test-import").is_empty() {
        assert!(Instant::now() < deadline, "an upload was left in progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `floe import s3://...` reads objects of the store with the server's credentials, one
/// key or a glob within a segment, only under `--import-prefix`; everything else is
/// refused and changes nothing.
#[test]
fn imports_read_objects_under_the_import_prefixes_only() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-wh2");
    moto.create_bucket("floe-landing");
    let files = tempfile::tempdir().unwrap();
    let put = |key: &str, path: &std::path::Path| {
        ureq::put(&format!("{}/floe-landing/{key}", moto.endpoint))
            .send(&std::fs::read(path).unwrap()[..])
            .unwrap();
    };
    put(
        "in/a.parquet",
        &crate::data::parquet(files.path(), "a.parquet", 0..10),
    );
    put(
        "in/b.parquet",
        &crate::data::parquet(files.path(), "b.parquet", 10..30),
    );
    put(
        "in/sub/c.parquet",
        &crate::data::parquet(files.path(), "c.parquet", 30..31),
    );
    put(
        "secret/d.parquet",
        &crate::data::parquet(files.path(), "d.parquet", 40..41),
    );
    let s = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-test-wh2/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
            "--import-prefix",
            "s3://floe-landing/in",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    s.namespace("main", "db");
    let cfg = s.config_dir();
    let head = s.head("main");
    for (source, said) in [
        (
            "s3://floe-landing/secret/d.parquet",
            "not under any --import-prefix",
        ),
        (
            "s3://floe-landing/in/../secret/d.parquet",
            "not under any --import-prefix",
        ),
        (
            "s3://floe-landing/inner/d.parquet",
            "not under any --import-prefix",
        ),
        (
            "s3://floe-test-wh2/wh/x.parquet",
            "not under any --import-prefix",
        ),
        ("s3://floe-landing/in/none.parquet", "there is no object"),
        ("s3://floe-landing/in/*.csv", "matches no object"),
    ] {
        let out = s.floe(&cfg, &["import", source, "--table", "db.t"]);
        assert_ne!(out.code, Some(0), "{source}: {out:?}");
        assert!(out.stderr.contains(said), "{source}: {}", out.stderr);
        assert_eq!(s.head("main"), head, "{source} changed main");
    }
    let out = s.floe(
        &cfg,
        &[
            "--json",
            "import",
            "s3://floe-landing/in/*.parquet",
            "--table",
            "db.t",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = answer["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "s3://floe-landing/in/a.parquet",
            "s3://floe-landing/in/b.parquet"
        ]
    );
    let counted = s.query_json(json!({"sql": "SELECT count(*) AS n FROM db.t", "ref": "main"}));
    assert_eq!(counted.body[0]["n"], 30, "{:?}", counted.body);
    // The same objects again are the duplicates they are.
    let again = s.floe(
        &cfg,
        &[
            "import",
            "s3://floe-landing/in/a.parquet",
            "--table",
            "db.t",
            "--mode",
            "append",
        ],
    );
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("already"), "{}", again.stderr);
    // A server without import prefixes reads no object.
    moto.create_bucket("floe-test-wh3");
    let plain = on_s3(&moto, "s3://floe-test-wh3/wh");
    plain.namespace("main", "db");
    let out = plain.floe(
        &plain.config_dir(),
        &[
            "import",
            "s3://floe-landing/in/a.parquet",
            "--table",
            "db.t",
        ],
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("--import-prefix"), "{}", out.stderr);
}

/// The warehouse's data files on S3, below the import: a file larger than a part is a
/// multipart upload, visible only once finished; one dropped unfinished leaves neither an
/// object nor an upload; files outside the table's location are refused; removal works.
#[test]
fn data_files_on_s3_appear_whole_or_not_at_all() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-files");
    let options = moto.options();
    let warehouse = floe_catalog::Warehouse::open_s3("s3://floe-test-files/wh", options).unwrap();
    let catalog = floe_catalog::Catalog::in_memory().with_warehouse(warehouse);
    let table = "s3://floe-test-files/wh/db/t-1";
    let files = catalog.data_files(table).unwrap();
    for outside in [
        "s3://floe-test-files/wh/db/t-2/data/x.parquet",
        "s3://floe-test-files/wh/db/t-1",
        "s3://floe-test-files/wh/db/t-1/../t-2/x",
        "s3://other/wh/db/t-1/data/x",
    ] {
        assert!(files.create(outside).is_err(), "{outside}");
    }
    let body: Vec<u8> = (0..20u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let key = "wh/db/t-1/data/big.parquet";
    let location = format!("s3://floe-test-files/{key}");
    // Dropped midway, after two parts went up.
    let mut unfinished = files.create(&location).unwrap();
    std::io::Write::write_all(&mut unfinished, &body).unwrap();
    drop(unfinished);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !moto.uploads("floe-test-files").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(moto.keys("floe-test-files", "wh/").is_empty());
    // Written whole.
    let mut file = files.create(&location).unwrap();
    std::io::Write::write_all(&mut file, &body).unwrap();
    assert!(
        moto.keys("floe-test-files", "wh/").is_empty(),
        "visible before finished"
    );
    let done = file.finish().unwrap();
    assert_eq!(done.size, body.len() as u64);
    assert!(done.local.is_none());
    assert!(body.ends_with(&done.tail) && done.tail.len() >= 1 << 20);
    let stored = ureq::get(&format!("{}/floe-test-files/{key}", moto.endpoint))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert!(stored == body, "the object differs from what was written");
    let range = files.read_range(&location, 100..200).unwrap();
    assert_eq!(&range[..], &body[100..200]);
    // A small one is one PUT.
    let small = "s3://floe-test-files/wh/db/t-1/data/small.parquet".to_owned();
    let mut file = files.create(&small).unwrap();
    std::io::Write::write_all(&mut file, b"tiny").unwrap();
    assert_eq!(&file.finish().unwrap().tail[..], b"tiny");
    assert_eq!(moto.keys("floe-test-files", "wh/").len(), 2);
    assert!(files.remove(&[location, small]).is_empty());
    assert!(moto.keys("floe-test-files", "wh/").is_empty());
}

/// A pipeline of a SQL and a Python model on an S3 warehouse: it reads the imported table
/// from the bucket, writes both outputs there (under each table's location), lands on its
/// branch as one commit, and the rows read back.
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_a_sql_and_python_run_writes_its_outputs_to_s3() {
    let moto = Moto::start().expect("moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
    moto.create_bucket("floe-s3-runs");
    let s = on_s3(&moto, "s3://floe-s3-runs/wh");
    s.namespace("main", "db");
    let files = tempfile::tempdir().unwrap();
    let t = crate::data::parquet(files.path(), "t.parquet", 0..100);
    s.floe(
        &s.config_dir(),
        &["import", crate::data::p(&t), "--table", "db.t"],
    )
    .expect(0);
    s.branch("dev", "main");
    let dir = crate::pipelines::project(
        &s,
        "mixed",
        &[
            (
                "base.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id, name FROM t WHERE id >= 10",
            ),
            (
                "models.py",
                "import bauplan\n\n@bauplan.model(materialization_strategy='REPLACE')\n@bauplan.python('3.11')\ndef evens(data=bauplan.Model('base', columns=['id'])):\n    import pyarrow.compute as pc\n    return data.filter(pc.equal(pc.bit_wise_and(data['id'], 1), 0))\n",
            ),
        ],
    );
    let main_before = s.head("main");
    let out =
        crate::pipelines::run_floe(&s, &["--json", "run", crate::data::p(&dir), "--ref", "dev"]);
    out.expect(0);
    let record = out.json();
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(s.head("dev"), record["landed"].as_str().unwrap());
    assert_eq!(s.head("main"), main_before);
    assert_eq!(crate::pipelines::count(&s, "db.base", "dev"), Ok(90));
    assert_eq!(crate::pipelines::count(&s, "db.evens", "dev"), Ok(45));
    let keys = moto.keys("floe-s3-runs", "wh/db/");
    for table in ["base", "evens"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("wh/db/{table}-"))
                    && k.contains("/data/")
                    && k.ends_with(".parquet")),
            "{table}'s data in {keys:?}"
        );
    }
    assert!(moto.uploads("floe-s3-runs").is_empty());
}

/// Two writers of one metadata name on S3: the one whose conditional create (`If-None-Match:
/// *`) loses fails its commit cleanly (a conflict to retry, nothing replaced, the ref
/// unchanged), raced through the warehouse's hook, for a create and for a table commit.
#[test]
fn a_metadata_write_that_loses_the_race_for_its_name_fails_the_commit_cleanly() {
    use floe_catalog::{
        Authored, Catalog, CatalogError, Principal, TableChange, TableCreate, Warehouse,
        WarehouseError, WarehouseEvent,
    };
    use floe_commits::{ContentKey, RefSpec};
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-race");
    let options = moto.options();
    // Armed: the next metadata file floe creates is created first by "another writer".
    let armed = Arc::new(AtomicBool::new(false));
    let hook = {
        let (armed, endpoint) = (armed.clone(), moto.endpoint.clone());
        Arc::new(move |event: WarehouseEvent, location: &str| {
            if event == WarehouseEvent::Creating
                && location.ends_with(".metadata.json")
                && armed.swap(false, Ordering::SeqCst)
            {
                let key = location.strip_prefix("s3://").unwrap();
                ureq::put(&format!("{endpoint}/{key}"))
                    .send("the other writer's metadata")
                    .unwrap();
            }
        })
    };
    let warehouse = Warehouse::open_s3("s3://floe-test-race/wh", options.clone())
        .unwrap()
        .with_hook(hook);
    let catalog = Catalog::in_memory().with_warehouse(warehouse);
    let (who, main) = (Principal::anonymous(), RefSpec::parse("main").unwrap());
    let ns = ContentKey::new(["db"]).unwrap();
    catalog
        .create_namespace(
            &who,
            &main,
            &ns,
            Default::default(),
            &Authored::default(),
            None,
        )
        .unwrap();
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    let create = || TableCreate {
        name: "t".to_owned(),
        location: None,
        schema: schema.clone(),
        partition_spec: None,
        write_order: None,
        stage_create: false,
        properties: Default::default(),
    };
    let head = catalog.resolve(&who, &main).unwrap().hash;
    armed.store(true, Ordering::SeqCst);
    let lost = catalog.create_table(&who, &main, &ns, create(), &Authored::default(), None);
    assert!(
        matches!(
            lost,
            Err(CatalogError::Warehouse(WarehouseError::Exists(_)))
        ),
        "{lost:?}"
    );
    assert_eq!(
        catalog.resolve(&who, &main).unwrap().hash,
        head,
        "main moved"
    );
    let key = ContentKey::new(["db", "t"]).unwrap();
    assert!(matches!(
        catalog.load_table(&who, &main, &key),
        Err(CatalogError::TableNotFound(_))
    ));
    // The other writer's file stands as it was written.
    let theirs: Vec<String> = moto
        .keys("floe-test-race", "wh/db/")
        .into_iter()
        .filter(|k| k.ends_with(".metadata.json"))
        .collect();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let reader = Warehouse::open_s3("s3://floe-test-race/wh", options.clone()).unwrap();
    let body = reader
        .read(&format!("s3://floe-test-race/{}", theirs[0]))
        .unwrap();
    assert_eq!(body, b"the other writer's metadata");
    // A retry writes under a fresh name; then a table commit loses its race the same way.
    let table = catalog
        .create_table(&who, &main, &ns, create(), &Authored::default(), None)
        .unwrap();
    let head = catalog.resolve(&who, &main).unwrap().hash;
    armed.store(true, Ordering::SeqCst);
    let change = TableChange {
        key: key.clone(),
        requirements: Vec::new(),
        updates: vec![iceberg::TableUpdate::SetProperties {
            updates: [("k".to_owned(), "v".to_owned())].into(),
        }],
    };
    let lost = catalog.commit_table(&who, &main, change.clone(), &Authored::default(), None);
    assert!(
        matches!(
            lost,
            Err(CatalogError::Warehouse(WarehouseError::Exists(_)))
        ),
        "{lost:?}"
    );
    assert_eq!(catalog.resolve(&who, &main).unwrap().hash, head);
    let now = catalog.load_table(&who, &main, &key).unwrap().1;
    assert_eq!(now.metadata_location, table.metadata_location);
    let done = catalog
        .commit_table(&who, &main, change, &Authored::default(), None)
        .unwrap();
    assert_eq!(
        done.metadata.properties().get("k").map(String::as_str),
        Some("v")
    );
}

/// The hostile locations of the local suite, on S3: other buckets, other prefixes, `..`,
/// other schemes and another table's folder, as a create's location, as path properties
/// on create and on commit, and as a registered metadata file, are refused with a 400 and
/// change nothing.
#[test]
fn hostile_locations_on_s3_are_refused_and_change_nothing() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    moto.create_bucket("floe-test-hostile");
    moto.create_bucket("floe-other");
    let s = on_s3(&moto, "s3://floe-test-hostile/wh");
    s.namespace("main", "db");
    let made = |name: &str| {
        let r = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": name, "schema": schema()}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        (
            r.body["metadata"]["location"].as_str().unwrap().to_owned(),
            r.body["metadata-location"].as_str().unwrap().to_owned(),
        )
    };
    let (w, _) = made("w");
    let (other, other_metadata) = made("other");
    let head = s.head("main");
    let outside = [
        "s3://floe-other/wh/db/p".to_owned(),
        "s3://floe-test-hostile/elsewhere/db/p".to_owned(),
        "s3://floe-test-hostile/wh2/db/p".to_owned(),
        "s3://floe-test-hostile/wh/../elsewhere/p".to_owned(),
        format!("{w}/../../x"),
        "file:///tmp/elsewhere".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ];
    for location in outside
        .iter()
        .chain([&other, &"s3://floe-test-hostile/wh".to_owned()])
    {
        let create = s.post(
            "/iceberg/v1/main/namespaces/db/tables",
            json!({"name": "p", "schema": schema(), "location": location}),
        );
        assert_eq!(create.status, 400, "location {location}: {:?}", create.body);
    }
    for path in outside.iter().chain([&format!("{other}/data")]) {
        for key in ["write.data.path", "write.metadata.path"] {
            let create = s.post(
                "/iceberg/v1/main/namespaces/db/tables",
                json!({"name": "p", "schema": schema(), "properties": { key: path }}),
            );
            assert_eq!(create.status, 400, "{key} {path}: {:?}", create.body);
            let commit = s.post(
                "/iceberg/v1/main/namespaces/db/tables/w",
                json!({"updates": [{"action": "set-properties", "updates": { key: path }}]}),
            );
            assert_eq!(
                commit.status, 400,
                "{key} {path} on commit: {:?}",
                commit.body
            );
        }
    }
    for metadata in [
        "s3://floe-other/wh/db/x.metadata.json".to_owned(),
        "s3://floe-test-hostile/elsewhere/x.metadata.json".to_owned(),
        other_metadata.replace("/metadata/", "/metadata/../../../"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let r = s.post(
            "/iceberg/v1/main/namespaces/db/register",
            json!({"name": "evil", "metadata-location": metadata}),
        );
        assert_eq!(r.status, 400, "register {metadata}: {:?}", r.body);
    }
    assert_eq!(s.head("main"), head, "nothing changed");
    assert!(moto.keys("floe-other", "").is_empty());
    assert!(
        !moto
            .keys("floe-test-hostile", "")
            .iter()
            .any(|k| !k.starts_with("wh/db/w-") && !k.starts_with("wh/db/other-")),
        "{:?}",
        moto.keys("floe-test-hostile", "")
    );
}
