//! The servers a bench drives: `floe serve` as a child process on a free port, and the
//! trivial axum server every HTTP figure is compared with in the same run (the same bytes,
//! a tiny body, a write that does nothing), so that a ratio says what floe adds to HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;

/// A `floe serve` child process on a free port.
pub struct Server {
    pub child: Child,
    pub base: String,
    stderr: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, stderr: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).expect("a file for the server's stderr"))
            .spawn()
            .expect("floe serve starts");
        // The first line says where it listens: "floe 0.1.0 listening on http://ADDR, data in ...".
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("floe serve prints where it listens");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no address in floe serve's first line {line:?}; stderr: {}",
                    std::fs::read_to_string(stderr).unwrap_or_default()
                )
            })
            .trim()
            .to_owned();
        Server {
            child,
            base: format!("http://{addr}"),
            stderr: stderr.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server and returns what it wrote to stderr.
    pub fn stop(mut self) -> String {
        self.halt()
    }

    /// Kills the server (it frees its data folder) and returns what it wrote to stderr.
    pub fn halt(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tiny JSON body of the trivial server's `/tiny` and `POST /x`.
pub const TINY_BODY: &str = r#"{"ok":true}"#;

/// An axum 0.8 server on its own multi-threaded tokio runtime (as many workers as cores,
/// like floe serve's) inside the bench process: `GET /tiny` answers [`TINY_BODY`],
/// `GET /b/{i}` the i-th registered body (static bytes, no work), `POST /x` reads its body
/// and answers 201 with [`TINY_BODY`]. Its CPU is the bench process's while wrk runs.
pub struct Trivial {
    runtime: Option<tokio::runtime::Runtime>,
    pub base: String,
    bodies: Arc<RwLock<Vec<Bytes>>>,
}

impl Trivial {
    pub fn start() -> Trivial {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free port");
        let addr = listener.local_addr().unwrap();
        let bodies: Arc<RwLock<Vec<Bytes>>> = Arc::default();
        let shared = bodies.clone();
        let json = || [(axum::http::header::CONTENT_TYPE, "application/json")];
        let app = axum::Router::new()
            .route(
                "/tiny",
                axum::routing::get(move || async move { (json(), TINY_BODY) }),
            )
            .route(
                "/x",
                axum::routing::post(move |_body: Bytes| async move {
                    (axum::http::StatusCode::CREATED, json(), TINY_BODY)
                }),
            )
            .route(
                "/b/{i}",
                axum::routing::get(move |axum::extract::Path(i): axum::extract::Path<usize>| {
                    let body = shared.read().expect("the bodies")[i].clone();
                    async move { (json(), body) }
                }),
            );
        runtime.spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the trivial server runs");
        });
        Trivial {
            runtime: Some(runtime),
            base: format!("http://{addr}"),
            bodies,
        }
    }

    /// Registers a body; returns the path that answers it.
    pub fn add(&self, body: impl Into<Bytes>) -> String {
        let mut bodies = self.bodies.write().expect("the bodies");
        bodies.push(body.into());
        format!("/b/{}", bodies.len() - 1)
    }
}

impl Drop for Trivial {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
