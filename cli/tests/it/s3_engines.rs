//! Engines on a warehouse on S3 (issue 20), against moto on loopback: PyIceberg, DuckDB
//! and the client suite with their own credentials and with credentials floe vends
//! (static keys to managers only; STS keys scoped to one table and the ref's access).

use serde_json::{Value, json};

use crate::harness::Running;
use crate::s3::{Moto, on_s3, schema};

/// PyIceberg on an S3 warehouse with its own credentials and floe's endpoint, region and
/// addressing: creates, appends on a branch, merges and reads back; floe's query API and
/// DuckDB (its own S3 secret) read the same rows from the bucket.
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_pyiceberg_and_duckdb_write_and_read_a_table_on_s3_with_their_own_credentials() {
    let moto = Moto::start().expect("moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
    moto.create_bucket("floe-s3-clients");
    let s = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-s3-clients/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    crate::clients::scenario_with(
        &s,
        "pyiceberg_s3.py",
        &["testing", "testing", "floe-s3-clients"],
    );
    let data = moto.keys("floe-s3-clients", "wh/db/");
    assert!(
        data.iter().filter(|k| k.ends_with(".parquet")).count() >= 2,
        "{data:?}"
    );
    // The same with floe's credentials, vended to a client that has none.
    moto.create_bucket("floe-s3-vended");
    let vending = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-s3-vended/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
            "--vend-credentials",
            "static",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("FLOE_VEND_ACCESS_KEY_ID", "vended-key"),
            ("FLOE_VEND_SECRET_ACCESS_KEY", "vended-secret"),
        ],
    );
    crate::clients::scenario_with(&vending, "pyiceberg_s3.py", &["-", "-", "floe-s3-vended"]);
    // Only to a client that asks.
    let plain = vending.get("/iceberg/v1/main/namespaces/db/tables/t");
    assert_eq!(plain.status, 200);
    assert!(
        plain.body["config"].get("s3.access-key-id").is_none(),
        "{}",
        plain.body
    );
    assert!(
        plain.body.get("storage-credentials").is_none(),
        "{}",
        plain.body
    );
    // Fresh ones for a long job, for the table's own location.
    let fresh = vending.get("/iceberg/v1/main/namespaces/db/tables/t/credentials");
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let entry = &fresh.body["storage-credentials"][0];
    assert_eq!(
        entry["config"]["s3.access-key-id"], "vended-key",
        "{}",
        fresh.body
    );
    let location = plain.body["metadata"]["location"].as_str().unwrap();
    assert_eq!(entry["prefix"], location, "{}", fresh.body);
    // Where nothing is vended, nothing (never an empty or partial entry).
    let none = s.get("/iceberg/v1/main/namespaces/db/tables/t/credentials");
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.body["storage-credentials"], json!([]), "{}", none.body);
}

/// A server with `--auth required`, the policy `policy` and the admin token `admin`, on an
/// S3 warehouse of moto in a bucket of its own, with `more` flags and environment (its
/// policy file's folder is returned to live as long as the server).
fn secured(
    moto: &Moto,
    bucket: &str,
    policy: &str,
    admin: &str,
    more: &[&str],
    env: &[(&str, &str)],
) -> (Running, tempfile::TempDir) {
    moto.create_bucket(bucket);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let warehouse = format!("s3://{bucket}/wh");
    let mut args = vec![
        "--auth",
        "required",
        "--policy",
        crate::data::p(&path),
        "--warehouse",
        &warehouse,
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-path-style",
    ];
    args.extend_from_slice(more);
    let mut vars = vec![
        ("FLOE_ADMIN_TOKEN", admin),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    vars.extend_from_slice(env);
    (Running::start_with_env(&args, &vars), files)
}

/// A token for `who`, made by the admin.
fn token(s: &Running, admin: &str, who: &str) -> String {
    s.floe(
        &s.config_dir(),
        &["--token", admin, "token", "create", "--principal", who],
    )
    .expect(0)
    .trim()
    .to_owned()
}

/// One call with a bearer token, asking for vended credentials or not: its status and body.
fn call(
    s: &Running,
    method: &str,
    path: &str,
    token: &str,
    ask: bool,
    body: Option<Value>,
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.url()))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json");
    if ask {
        request = request.header("X-Iceberg-Access-Delegation", "vended-credentials");
    }
    let request = request
        .body(body.map(|b| b.to_string()).unwrap_or_default())
        .unwrap();
    let mut response = agent.run(request).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Static vended keys reach every table's files on every branch: only a principal who
/// manages the whole catalog gets them; a reader gets the store's address only.
#[test]
fn static_vended_keys_go_only_to_a_manager_of_the_catalog() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    const ADMIN: &str = "floe-admin-token-for-the-vending-test";
    let (s, _policy) = secured(
        &moto,
        "floe-test-vend",
        "[roles.reader]\nrules = [{ refs = [\"**\"], allow = [\"read\"] }]\n[principals]\nrita = [\"reader\"]\n",
        ADMIN,
        &["--vend-credentials", "static"],
        &[
            ("FLOE_VEND_ACCESS_KEY_ID", "vended-key"),
            ("FLOE_VEND_SECRET_ACCESS_KEY", "vended-secret"),
        ],
    );
    let rita = token(&s, ADMIN, "rita");
    let call = |method: &str, path: &str, token: &str, body: Option<Value>| {
        call(&s, method, path, token, true, body)
    };
    let (status, _) = call(
        "POST",
        "/iceberg/v1/main/namespaces",
        ADMIN,
        Some(json!({"namespace": ["db"]})),
    );
    assert_eq!(status, 200);
    let (status, created) = call(
        "POST",
        "/iceberg/v1/main/namespaces/db/tables",
        ADMIN,
        Some(json!({"name": "t", "schema": schema()})),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["config"]["s3.access-key-id"], "vended-key",
        "{created}"
    );
    for path in [
        "/iceberg/v1/main/namespaces/db/tables/t",
        "/iceberg/v1/main/namespaces/db/tables/t/credentials",
    ] {
        let (status, answer) = call("GET", path, &rita, None);
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(!answer.to_string().contains("vended"), "{path}: {answer}");
    }
    let (_, loaded) = call(
        "GET",
        "/iceberg/v1/main/namespaces/db/tables/t",
        &rita,
        None,
    );
    assert_eq!(
        loaded["config"]["s3.endpoint"],
        moto.endpoint.as_str(),
        "{loaded}"
    );
}

/// An STS in front of moto's that records each request's body (the test reads the
/// session policies floe sends), forwarding the request as it came.
struct RecordingSts {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingSts {
    fn start(upstream: &str) -> RecordingSts {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let (kept, upstream) = (bodies.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(": ") {
                        let name = name.to_ascii_lowercase();
                        if name == "content-length" {
                            length = value.parse().unwrap();
                        }
                        headers.push((name, value.to_owned()));
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                kept.lock().unwrap().push(body.clone());
                let mut request = ureq::post(&format!("{upstream}/"));
                for (name, value) in &headers {
                    if matches!(
                        name.as_str(),
                        "authorization" | "x-amz-date" | "content-type" | "x-amz-security-token"
                    ) {
                        request = request.header(name, value);
                    }
                }
                let agent_answer = request
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send(&body);
                let (status, text) = match agent_answer {
                    Ok(mut r) => (
                        r.status().as_u16(),
                        r.body_mut().read_to_string().unwrap_or_default(),
                    ),
                    Err(e) => (502, e.to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        RecordingSts { url, bodies }
    }

    /// The session policies received so far, decoded.
    fn policies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| {
                let policy = body
                    .split('&')
                    .find_map(|p| p.strip_prefix("Policy="))
                    .expect("a session policy");
                serde_json::from_str(&percent_decode(policy)).unwrap()
            })
            .collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Whether a session policy lets its holder put objects.
fn lets_put(policy: &Value) -> bool {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["Effect"] == "Allow" && s["Action"].to_string().contains("s3:PutObject"))
}

/// `--vend-credentials sts`: each load that asks gets temporary keys from STS whose session
/// policy names only this table's location, with put only for a principal who may write
/// the branch (read-only for a tag, or for a reader); never delete; answers cached per
/// (table, access, principal); STS down is a 503 for a client that asked, and nothing for
/// one that did not.
#[test]
fn sts_vended_keys_are_scoped_to_the_table_and_to_what_the_principal_may_do_on_the_ref() {
    let Some(moto) = Moto::start() else {
        eprintln!("SKIPPED: no moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
        return;
    };
    let sts = RecordingSts::start(&moto.endpoint);
    const ADMIN: &str = "floe-admin-token-for-the-sts-test";
    let (s, _policy) = secured(
        &moto,
        "floe-test-sts",
        "[roles.reader]\nrules = [{ refs = [\"**\"], allow = [\"read\"] }]\n[roles.devwriter]\nrules = [{ refs = [\"dev\"], allow = [\"read\", \"write\"] }]\n[principals]\nrita = [\"reader\"]\ndave = [\"reader\", \"devwriter\"]\n",
        ADMIN,
        &[
            "--vend-credentials",
            "sts",
            "--sts-role-arn",
            "arn:aws:iam::123456789012:role/floe-vend",
            "--sts-endpoint",
            &sts.url,
        ],
        &[],
    );
    let (rita, dave) = (token(&s, ADMIN, "rita"), token(&s, ADMIN, "dave"));
    let call = |method: &str, path: &str, token: &str, ask: bool, body: Option<Value>| {
        call(&s, method, path, token, ask, body)
    };
    let ns = json!({"namespace": ["db"]});
    assert_eq!(
        call(
            "POST",
            "/iceberg/v1/main/namespaces",
            ADMIN,
            false,
            Some(ns)
        )
        .0,
        200
    );
    let (status, created) = call(
        "POST",
        "/iceberg/v1/main/namespaces/db/tables",
        ADMIN,
        false,
        Some(json!({"name": "t", "schema": schema()})),
    );
    assert_eq!(status, 200, "{created}");
    assert!(
        created["config"].get("s3.access-key-id").is_none(),
        "{created}"
    );
    assert!(
        sts.policies().is_empty(),
        "no STS call for a client that did not ask"
    );
    let location = created["metadata"]["location"].as_str().unwrap().to_owned();
    let key = location
        .strip_prefix("s3://floe-test-sts/")
        .unwrap()
        .to_owned();
    for (name, kind) in [("dev", "branch"), ("v1", "tag")] {
        let (status, made) = call(
            "POST",
            "/api/v1/refs",
            ADMIN,
            false,
            Some(json!({"name": name, "kind": kind, "from": "main"})),
        );
        assert_eq!(status, 201, "{made}");
    }
    let load = |prefix: &str, token: &str| {
        let (status, answer) = call(
            "GET",
            &format!("/iceberg/v1/{prefix}/namespaces/db/tables/t"),
            token,
            true,
            None,
        );
        assert_eq!(status, 200, "{prefix}: {answer}");
        let config = &answer["config"];
        for k in [
            "s3.access-key-id",
            "s3.secret-access-key",
            "s3.session-token",
        ] {
            assert!(
                config[k].as_str().is_some_and(|v| !v.is_empty()),
                "{prefix}: {k} in {answer}"
            );
        }
        assert_eq!(
            answer["storage-credentials"][0]["prefix"],
            location.as_str()
        );
        for (k, v) in answer["storage-credentials"][0]["config"]
            .as_object()
            .unwrap()
        {
            assert_eq!(config[k], *v, "{prefix}: {k}");
        }
        answer
    };
    // Each (access, principal) asks STS once; the policy names the table's location only.
    let (_, main_ref) = call("GET", "/api/v1/refs/main", ADMIN, false, None);
    let at_hash = format!("main@{}", main_ref["head"].as_str().unwrap());
    let cases: [(&str, &str, bool); 6] = [
        ("main", ADMIN, true),
        ("main", &rita, false),
        ("v1", ADMIN, false),
        ("dev", &dave, true),
        ("main", &dave, false),
        (&at_hash, ADMIN, false),
    ];
    // Each new (access, principal) asks STS once; the same pair is served from the cache
    // (main@hash for the admin: the read keys the tag v1 got).
    let mut asked: Vec<(&str, bool)> = Vec::new();
    for (prefix, who, writes) in cases.iter() {
        load(prefix, who);
        load(prefix, who);
        let new = !asked.contains(&(who, *writes));
        if new {
            asked.push((who, *writes));
        }
        let policies = sts.policies();
        assert_eq!(
            policies.len(),
            asked.len(),
            "{prefix}: one STS call per (access, principal), then the cache"
        );
        let policy = &policies[asked.iter().position(|a| *a == (*who, *writes)).unwrap()];
        assert_eq!(lets_put(policy), *writes, "{prefix}: {policy}");
        let text = policy.to_string();
        assert!(!text.contains("Delete"), "{text}");
        for statement in policy["Statement"].as_array().unwrap() {
            for resource in statement["Resource"].as_array().unwrap() {
                let r = resource.as_str().unwrap();
                assert!(
                    r == format!("arn:aws:s3:::floe-test-sts/{key}/*")
                        || r == "arn:aws:s3:::floe-test-sts",
                    "{r}"
                );
            }
        }
    }
    // Answers carrying keys are never to be cached; others may be.
    let cache_control = |ask: bool| {
        let mut request = ureq::get(format!(
            "{}/iceberg/v1/main/namespaces/db/tables/t",
            s.url()
        ))
        .header("Authorization", format!("Bearer {rita}"));
        if ask {
            request = request.header("X-Iceberg-Access-Delegation", "vended-credentials");
        }
        let response = request.call().unwrap();
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(cache_control(true).as_deref(), Some("no-store"));
    assert_eq!(cache_control(false), None);
    // The credentials endpoint answers the same keys, for a long job.
    let (status, fresh) = call(
        "GET",
        "/iceberg/v1/main/namespaces/db/tables/t/credentials",
        &rita,
        true,
        None,
    );
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(
        fresh["storage-credentials"][0]["config"],
        load("main", &rita)["storage-credentials"][0]["config"]
    );
    assert_eq!(sts.policies().len(), 5);
    // STS unreachable: a client that asked gets a 503 saying so; one that did not, its load.
    moto.create_bucket("floe-test-sts-down");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let d = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-test-sts-down/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
            "--vend-credentials",
            "sts",
            "--sts-role-arn",
            "arn:aws:iam::123456789012:role/floe-vend",
            "--sts-endpoint",
            &down,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    d.post("/iceberg/v1/main/namespaces", json!({"namespace": ["db"]}));
    let made = d.post(
        "/iceberg/v1/main/namespaces/db/tables",
        json!({"name": "t", "schema": schema()}),
    );
    assert_eq!(made.status, 200, "{:?}", made.body);
    let asked = ureq::get(format!(
        "{}/iceberg/v1/main/namespaces/db/tables/t",
        d.url()
    ))
    .header("X-Iceberg-Access-Delegation", "vended-credentials")
    .config()
    .http_status_as_error(false)
    .build()
    .call()
    .unwrap()
    .into_body()
    .read_to_string()
    .unwrap();
    assert!(asked.contains("cannot vend credentials"), "{asked}");
    assert!(asked.contains("\"code\":503"), "{asked}");
    let plain = d.get("/iceberg/v1/main/namespaces/db/tables/t");
    assert_eq!(plain.status, 200, "{:?}", plain.body);
}

/// Whether the bucket holds files a client writes (data files, manifests), not only floe's
/// metadata files.
fn client_wrote(moto: &Moto, bucket: &str) -> bool {
    moto.keys(bucket, "wh/")
        .iter()
        .any(|k| k.ends_with(".parquet") || k.ends_with(".avro"))
}

/// The scenarios of the local client suite, each on a fresh server over its own bucket.
const SUITE: &[&str] = &[
    "pyiceberg_branches.py",
    "pyiceberg_concurrent.py",
    "write_skew.py",
    "duckdb_branches.py",
    "table_merge.py",
];

/// The black-box client suite of the local folder (PyIceberg: branches, merges, time
/// travel, concurrent appenders, write skew; DuckDB: writes on a branch; both: tables
/// merged file by file) on a warehouse on
/// S3, the clients with their own S3 credentials and floe's endpoint, region and addressing.
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_the_client_suite_runs_on_s3_with_the_clients_own_credentials() {
    let moto = Moto::start().expect("moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
    for (n, script) in SUITE.iter().enumerate() {
        let bucket = format!("floe-suite-own-{n}");
        moto.create_bucket(&bucket);
        let s = on_s3(&moto, &format!("s3://{bucket}/wh"));
        let scheme = format!("s3://{bucket}/wh/");
        crate::clients::scenario_env(
            &s,
            script,
            &[],
            &[
                ("FLOE_TEST_S3_KEY", "testing"),
                ("FLOE_TEST_S3_SECRET", "testing"),
                ("FLOE_TEST_S3_ENDPOINT", &moto.endpoint),
                ("FLOE_TEST_SCHEME", &scheme),
            ],
        );
        assert!(
            client_wrote(&moto, &bucket),
            "{script}: nothing it wrote is in the bucket"
        );
        assert!(moto.uploads(&bucket).is_empty(), "{script}");
    }
}

/// The same suite with no credentials of the clients' own: floe vends them from STS
/// (moto's), scoped to each table (PyIceberg and DuckDB both ask by default).
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_the_client_suite_runs_on_s3_with_credentials_vended_by_sts() {
    let moto = Moto::start().expect("moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
    for (n, script) in SUITE.iter().enumerate() {
        let bucket = format!("floe-suite-sts-{n}");
        moto.create_bucket(&bucket);
        let s = Running::start_with_env(
            &[
                "--warehouse",
                &format!("s3://{bucket}/wh"),
                "--s3-endpoint",
                &moto.endpoint,
                "--s3-path-style",
                "--vend-credentials",
                "sts",
                "--sts-role-arn",
                "arn:aws:iam::123456789012:role/floe-vend",
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ],
        );
        let scheme = format!("s3://{bucket}/wh/");
        crate::clients::scenario_env(&s, script, &[], &[("FLOE_TEST_SCHEME", &scheme)]);
        assert!(
            client_wrote(&moto, &bucket),
            "{script}: nothing it wrote is in the bucket"
        );
    }
}
