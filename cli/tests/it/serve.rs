//! Black-box tests of `floe serve`: a real process on a free port over a fresh data
//! folder, spoken to over real HTTP, stopped by real signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `floe serve`; killed if a test fails before stopping it.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        Server::start_with(Command::new(env!("CARGO_BIN_EXE_floe")).args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]))
    }

    fn start_with(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("floe serve starts");
        // The first line says where it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("floe serve prints where it listens");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        assert!(line.contains("data in "), "{line}");
        Server { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(&self.addr, path)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end and returns its exit code and remaining stdout.
    fn wait(mut self) -> (Option<i32>, String) {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

#[test]
fn serve_answers_health_and_ready_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.get("/health"),
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        server.get("/ready"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    assert_eq!(server.get("/nope").0, 404);
    server.signal("TERM");
    let (code, out) = server.wait();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("floe stopped"), "{out}");
    // The store survives the restart; SIGINT stops it the same way.
    let server = Server::start(dir.path());
    assert_eq!(server.get("/ready").0, 200);
    server.signal("INT");
    assert_eq!(server.wait().0, Some(0));
    assert!(dir.path().join("catalog").join("db").exists());
}

#[test]
fn a_second_server_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let listing = |p: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(&dir.path().join("catalog"));
    let second = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another floe process"), "{err}");
    assert_eq!(
        listing(&dir.path().join("catalog")),
        before,
        "the second server touched nothing"
    );
    assert_eq!(first.get("/ready").0, 200, "the first server still serves");
}

#[test]
fn serve_reads_its_address_and_folder_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let server = Server::start_with(
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .arg("serve")
            .env("FLOE_ADDR", "127.0.0.1:0")
            .env("FLOE_DATA_DIR", &data),
    );
    assert_eq!(server.get("/ready").0, 200);
    assert!(data.join("catalog").join("floe.lock").exists());
}

#[test]
fn serve_explains_an_address_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--addr",
            "not-an-address",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot listen on not-an-address"), "{err}");
}
