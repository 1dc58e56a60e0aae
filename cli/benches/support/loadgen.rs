//! The load generator for workloads wrk cannot express: a sequence where each request is
//! built from the previous answer (a table's next commit, the next page of a listing) or
//! where the server's threads are sampled around every request. An HTTP/1.1 keep-alive
//! client on tokio, written for floe's answers (`Content-Length` or chunked bodies): no
//! per-request allocation beyond the answer, no thread per connection. Many connections
//! share one current-thread runtime, so the generator's CPU is one thread's CPU, measured
//! around the requests and shown beside the server's.

use std::io::Write as _;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::cpu::thread_cpu;
use super::head;

/// The largest answer the generator reads (the 10,000-snapshot table's load is 3.2 MB).
const ANSWER_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A runtime on the calling thread: the generator's CPU is that thread's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// One keep-alive connection.
pub struct Conn {
    io: BufReader<TcpStream>,
    host: String,
    request: Vec<u8>,
}

impl Conn {
    pub async fn connect(base: &str) -> Conn {
        let host = base
            .strip_prefix("http://")
            .unwrap_or(base)
            .trim_end_matches('/')
            .to_owned();
        let stream = TcpStream::connect(&host)
            .await
            .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Conn {
            io: BufReader::with_capacity(64 * 1024, stream),
            host,
            request: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads its whole answer: (status, body).
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .expect("a request head");
        self.request.extend_from_slice(body);
        let io = &mut self.io;
        io.get_mut()
            .write_all(&self.request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: send: {e}"));
        let mut line = String::new();
        io.read_line(&mut line)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: read: {e}"));
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: a status line, not {line:?}"));
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            io.read_line(&mut line)
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: headers: {e}"));
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        let mut answer = Vec::new();
        if chunked {
            loop {
                line.clear();
                io.read_line(&mut line).await.expect("a chunk size");
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or_else(|_| panic!("{method} {path}: a chunk size, not {line:?}"));
                if size == 0 {
                    line.clear();
                    io.read_line(&mut line).await.expect("the last CRLF");
                    break;
                }
                let at = answer.len();
                answer.resize(at + size, 0);
                io.read_exact(&mut answer[at..]).await.expect("a chunk");
                let mut crlf = [0u8; 2];
                io.read_exact(&mut crlf).await.expect("a chunk's CRLF");
            }
        } else {
            let n = length.unwrap_or_else(|| panic!("{method} {path}: no content-length"));
            assert!(n <= ANSWER_BYTES_MAX, "{method} {path}: {n} B answered");
            answer.resize(n, 0);
            io.read_exact(&mut answer)
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        }
        (status, answer)
    }
}

/// A connection used one request at a time from blocking code, which counts the CPU this
/// thread spends in its requests (and only there: not in the bench's own bookkeeping).
pub struct Serial {
    rt: tokio::runtime::Runtime,
    conn: Conn,
    /// CPU this thread spent sending and reading, and the requests it sent.
    pub cpu: Duration,
    pub requests: u64,
}

impl Serial {
    pub fn connect(base: &str) -> Serial {
        let rt = runtime();
        let conn = rt.block_on(Conn::connect(base));
        Serial {
            rt,
            conn,
            cpu: Duration::ZERO,
            requests: 0,
        }
    }

    pub fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let cpu0 = thread_cpu();
        let (status, answer) = self
            .rt
            .block_on(self.conn.send(method, path, body.as_bytes()));
        self.cpu += thread_cpu() - cpu0;
        self.requests += 1;
        (status, String::from_utf8(answer).expect("a UTF-8 answer"))
    }

    pub fn post(&mut self, path: &str, body: &str, expect: u16) -> String {
        checked("POST", path, body, expect, self.send("POST", path, body))
    }

    pub fn get(&mut self, path: &str, expect: u16) -> String {
        checked("GET", path, "", expect, self.send("GET", path, ""))
    }

    /// Counts from zero again.
    pub fn reset(&mut self) {
        self.cpu = Duration::ZERO;
        self.requests = 0;
    }
}

/// The answer's body, when its status is the expected one; else the bench stops with it.
pub fn checked(method: &str, path: &str, body: &str, expect: u16, got: (u16, String)) -> String {
    let (status, text) = got;
    assert_eq!(
        status,
        expect,
        "{method} {path} {}: expected {expect}, got {status}: {}",
        head(body),
        head(&text)
    );
    text
}
