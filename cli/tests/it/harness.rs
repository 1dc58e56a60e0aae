//! Shared harness of the black-box tests: a real `floe serve` on a free port over a fresh
//! data folder, a JSON client of its API, and a runner of the `floe` CLI against it with a
//! private `FLOE_CONFIG_DIR`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `floe serve`; killed if a test fails before stopping it.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(&mut serve_command(data_dir, &[]))
    }

    pub fn start_with(command: &mut Command) -> Server {
        Server::spawn(command, Stdio::piped())
    }

    /// A server whose standard error (its logs) goes to `log`, appended: a long test's
    /// server never blocks on a full pipe.
    pub fn start_logging_to(command: &mut Command, log: &Path) -> Server {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Server::spawn(command, Stdio::from(file))
    }

    fn spawn(command: &mut Command, stderr: Stdio) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("floe serve starts");
        // The first line says where it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("floe serve prints where it listens");
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        assert!(line.contains("data in "), "{line}");
        Server { child, addr }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(&self.addr, path)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILLs the process and waits until it is gone (its store lock with it).
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to end and returns its exit code and remaining stdout.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.code(), out)
    }
}

impl Server {
    /// Waits for the process to end and returns its exit code and standard error (the
    /// structured logs).
    pub fn wait_for_logs(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: status code and body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, "")
}

/// A plain HTTP/1.1 POST of a JSON body: its answer's JSON body (a 2xx is expected).
pub fn post(addr: &str, path: &str, body: &str) -> Value {
    let (status, answer) = request(addr, "POST", path, body);
    assert!(
        (200..300).contains(&status),
        "POST {path}: {status} {answer}"
    );
    serde_json::from_str(&answer).unwrap()
}

/// One plain HTTP/1.1 request: status code and body.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// A server with its own data folder, for tests that talk to it.
pub struct Running {
    pub server: Server,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// One answer of the API: status, body (JSON, or `Null` when empty) and headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: ureq::http::HeaderMap,
}

impl Running {
    pub fn start() -> Running {
        Running::start_args(&[])
    }

    /// A server started with extra `floe serve` flags.
    pub fn start_args(extra: &[&str]) -> Running {
        Running::start_with_env(extra, &[])
    }

    /// A server started with extra `floe serve` flags and environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut command = serve_command(dir.path(), extra);
        command.envs(env.iter().copied());
        let server = Server::start_with(&mut command);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Running { server, dir, agent }
    }

    /// Stops the server (SIGTERM, waiting for it to end) and starts it again on the same
    /// data folder with `extra` flags.
    pub fn restart_args(&mut self, extra: &[&str]) {
        self.server.signal("TERM");
        let _ = self.server.child.wait();
        self.server = Server::start_with(&mut serve_command(self.dir.path(), extra));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().read_to_string().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    /// A GET whose answer is not JSON (metrics).
    pub fn get_text(&self, path: &str) -> String {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.url()))
            .call()
            .unwrap();
        r.body_mut().read_to_string().unwrap()
    }

    pub fn get(&self, path: &str) -> Reply {
        Running::reply(
            self.agent
                .get(format!("{}{path}", self.url()))
                .call()
                .unwrap(),
        )
    }

    /// A write (POST, PUT or DELETE) with a JSON body and an optional idempotency key.
    pub fn send(&self, method: &str, path: &str, body: &Value, key: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.url());
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let response = match method {
            "POST" | "PUT" => {
                let mut r = if method == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                if let Some(k) = key {
                    r = r.header("Idempotency-Key", k);
                }
                r.content_type("application/json").send(&text)
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(k) = key {
                    r = r.header("Idempotency-Key", k);
                }
                r.call()
            }
            other => panic!("unsupported method {other}"),
        };
        Running::reply(response.unwrap())
    }

    /// A query: status, headers and the answer's bytes, in the format `accept` asks for.
    pub fn query(&self, body: &Value, accept: &str) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let mut response = self
            .agent
            .post(format!("{}/api/v1/query", self.url()))
            .header("Accept", accept)
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (status, headers, bytes)
    }

    /// A multipart import: the `request` part and uploads (name, bytes).
    pub fn import(&self, request: &Value, files: &[(&str, &[u8])], key: Option<&str>) -> Reply {
        let boundary = "floe-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{request}\r\n"
        )
        .into_bytes();
        for (name, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut r = self
            .agent
            .post(format!("{}/api/v1/imports", self.url()))
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            );
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        Running::reply(r.send(&body[..]).unwrap())
    }

    /// A query answered as JSON rows (or an error body).
    pub fn query_json(&self, body: Value) -> Reply {
        let (status, headers, bytes) = self.query(&body, "application/json");
        Reply {
            status,
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes))),
            headers,
        }
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, &body, None)
    }

    /// The head of a ref.
    pub fn head(&self, name: &str) -> String {
        let r = self.get(&format!("/api/v1/refs/{}", name.replace('/', "%2F")));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["head"].as_str().unwrap().to_owned()
    }

    /// Creates a namespace on a branch; returns the new head.
    pub fn namespace(&self, branch: &str, dotted: &str) -> String {
        let elements: Vec<&str> = dotted.split('.').collect();
        let r = self.post(
            &format!("/api/v1/trees/{branch}/namespaces"),
            serde_json::json!({ "namespace": elements }),
        );
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["head"].as_str().unwrap().to_owned()
    }

    pub fn branch(&self, name: &str, from: &str) -> String {
        let r = self.post(
            "/api/v1/refs",
            serde_json::json!({ "name": name, "from": from }),
        );
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["head"].as_str().unwrap().to_owned()
    }

    /// Runs the CLI against this server with a config folder of its own.
    pub fn floe(&self, config: &Path, args: &[&str]) -> Cli {
        let output = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(args)
            .env("FLOE_SERVER", self.url())
            .env("FLOE_CONFIG_DIR", config)
            .env("NO_COLOR", "1")
            .output()
            .expect("the floe binary runs");
        Cli::new(output)
    }

    pub fn config_dir(&self) -> PathBuf {
        let d = self.dir.path().join("cli-config");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// Polls `probe` until it returns something, for at most `limit`: a state another process
/// reaches, observed (not a sleep standing in for it).
pub fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = probe() {
            return t;
        }
        assert!(start.elapsed() < limit, "not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A no-ff merge of `source` into `main` expecting `head`, on a thread of its own (two
/// race): its status and body.
pub fn merge_in_thread(
    url: String,
    source: &str,
    head: &str,
) -> std::thread::JoinHandle<(u16, Value)> {
    let body = serde_json::json!({"source": source, "expectedHead": head, "strategy": "no-ff"});
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(format!("{url}/api/v1/trees/main/merge"))
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    })
}

/// `floe serve` on a free port over `data_dir`, with `extra` flags. With
/// `FLOE_TEST_STORE=postgres` (`.ci/run`'s PostgreSQL phase) the catalog lives on the test
/// PostgreSQL (`FLOE_TEST_PG`), in a schema named after the data folder, so a restart
/// over the same folder finds the same catalog.
pub fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_floe"));
    command.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    if !extra.contains(&"--store")
        && let Some((url, schema)) = pg_store_for(data_dir)
    {
        command.args(["--store", &url, "--store-schema", &schema]);
    }
    command.args(extra);
    command
}

/// The catalog a stopped server over `data_dir` kept: its sled store, or its schema on
/// the test PostgreSQL.
pub fn open_backend(data_dir: &Path) -> std::sync::Arc<dyn floe_commits::Backend> {
    match pg_store_for(data_dir) {
        Some((url, schema)) => {
            let mut options = floe_commits::PgOptions::new(url);
            options.schema = Some(schema);
            std::sync::Arc::new(floe_commits::PostgresBackend::open(&options).unwrap())
        }
        None => {
            std::sync::Arc::new(floe_commits::SledBackend::open(&data_dir.join("catalog")).unwrap())
        }
    }
}

/// The PostgreSQL catalog of a data folder, when the tests run on PostgreSQL.
pub fn pg_store_for(data_dir: &Path) -> Option<(String, String)> {
    if std::env::var("FLOE_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    let url = std::env::var("FLOE_TEST_PG").expect("FLOE_TEST_STORE=postgres needs FLOE_TEST_PG");
    let mut digest = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(data_dir, &mut digest);
    Some((
        url,
        format!("d_{:016x}", std::hash::Hasher::finish(&digest)),
    ))
}

/// What one run of the CLI did.
#[derive(Debug)]
pub struct Cli {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    fn new(output: Output) -> Cli {
        Cli {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit code and returns stdout.
    pub fn expect(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// A fresh UUIDv7 idempotency key.
pub fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Sends a raw request and closes the connection without reading the answer: a response
/// dropped on the way back.
pub fn send_and_drop(addr: &str, method: &str, path: &str, body: &str, key: &str) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    drop(stream);
}
