//! The CLI's HTTP client of floe's own API: blocking, keep-alive, JSON in and out. Every
//! write carries a fresh `Idempotency-Key` (a UUIDv7) and is retried with the same key when
//! the connection fails before an answer arrives, so a dropped response never applies a
//! write twice. Errors keep the API's error body for `--json` and for the exit code.

use std::time::Duration;

use serde_json::Value;

/// Exit codes (DESIGN §4).
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFLICT: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 5;

/// Attempts of a write whose connection failed before an answer.
const WRITE_ATTEMPTS_MAX: usize = 3;
const REQUEST_TIMEOUT_S: u64 = 300;

/// A successful answer: the body as sent (for `--json`) and parsed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub value: Value,
}

#[derive(Debug)]
pub enum CallError {
    /// The server answered with an error status and (usually) floe's error body.
    Api {
        status: u16,
        body: Value,
        text: String,
    },
    /// No answer: the server is unreachable or the connection broke.
    Transport(String),
}

impl CallError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Api { status: 409, .. } => EXIT_CONFLICT,
            CallError::Api { status: 404, .. } => EXIT_NOT_FOUND,
            _ => EXIT_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            CallError::Api { status, body, .. } => body["message"].as_str().map_or_else(
                || format!("the server answered {status}: {body}"),
                str::to_owned,
            ),
            CallError::Transport(m) => m.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// For answers that last as long as what they follow (a run's log): no global timeout.
    streaming: ureq::Agent,
}

/// HTTPS: the web's root certificates, or, as OpenSSL does, those of the PEM file
/// `SSL_CERT_FILE` names (a private CA, a self-signed server).
fn tls_config() -> ureq::tls::TlsConfig {
    let builder = ureq::tls::TlsConfig::builder();
    let own = std::env::var_os("SSL_CERT_FILE")
        .and_then(|file| std::fs::read(file).ok())
        .map(|pem| {
            ureq::tls::parse_pem(&pem)
                .filter_map(Result::ok)
                .filter_map(|item| match item {
                    ureq::tls::PemItem::Certificate(c) => Some(c.to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|certs| !certs.is_empty());
    match own {
        Some(certs) => builder
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
            .build(),
        None => builder.build(),
    }
}

impl Client {
    /// A client of `server`, sending `token` (if any) as `Authorization: Bearer` on every
    /// request.
    pub fn new(server: &str, token: Option<&str>) -> Client {
        let bearer = token
            .filter(|t| !t.is_empty())
            .and_then(|t| ureq::http::HeaderValue::from_str(&format!("Bearer {t}")).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let with_token =
            move |mut request: ureq::http::Request<ureq::SendBody<'_>>,
                  next: ureq::middleware::MiddlewareNext<'_>| {
                if let Some(v) = &bearer {
                    request
                        .headers_mut()
                        .insert(ureq::http::header::AUTHORIZATION, v.clone());
                }
                next.handle(request)
            };
        let tls = tls_config();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.clone())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(REQUEST_TIMEOUT_S)))
            .middleware(with_token.clone())
            .build()
            .into();
        let streaming: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(REQUEST_TIMEOUT_S)))
            .middleware(with_token)
            .build()
            .into();
        Client {
            base: server.trim_end_matches('/').to_owned(),
            agent,
            streaming,
        }
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    /// GET a path under the server (`/api/v1/...`), with query pairs.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, CallError> {
        let url = format!("{}{}{}", self.base, path, query_string(query));
        let response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.transport(&e))?;
        self.answer(response)?
            .ok_or_else(|| CallError::Transport(format!("{url} answered with an empty body")))
    }

    /// GET an answer as a stream that may last (a followed log): read it as it comes.
    pub fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Box<dyn std::io::Read + Send>, CallError> {
        let url = format!("{}{}{}", self.base, path, query_string(query));
        let response = self
            .streaming
            .get(&url)
            .call()
            .map_err(|e| self.transport(&e))?;
        if response.status().is_success() {
            return Ok(Box::new(response.into_body().into_reader()));
        }
        match self.answer(response) {
            Err(e) => Err(e),
            Ok(_) => Err(CallError::Transport(format!(
                "{url} answered an error status without a body"
            ))),
        }
    }

    /// A write, retried with the same idempotency key if no answer arrived.
    pub fn write(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Answer>, CallError> {
        let url = format!("{}{}{}", self.base, path, query_string(query));
        let text = body.map(Value::to_string).unwrap_or_default();
        self.retried(|key| {
            Ok(match method {
                Method::Post => self
                    .agent
                    .post(&url)
                    .header("Idempotency-Key", key)
                    .content_type("application/json")
                    .send(&text),
                Method::Put => self
                    .agent
                    .put(&url)
                    .header("Idempotency-Key", key)
                    .content_type("application/json")
                    .send(&text),
                Method::Delete => self
                    .agent
                    .delete(&url)
                    .header("Idempotency-Key", key)
                    .call(),
            })
        })
    }

    /// Sends a write under a fresh Idempotency-Key, again under the same key while no
    /// answer arrived (or our own first attempt is still running on the server). `send`
    /// failing before the request goes out stops at once.
    fn retried(
        &self,
        mut send: impl FnMut(
            &str,
        )
            -> Result<Result<ureq::http::Response<ureq::Body>, ureq::Error>, CallError>,
    ) -> Result<Option<Answer>, CallError> {
        let key = uuid::Uuid::now_v7().to_string();
        let mut last = None;
        for _ in 0..WRITE_ATTEMPTS_MAX {
            match send(&key)? {
                // Our own earlier attempt is still running on the server: wait, then ask
                // again with the same key (its answer, or its recorded outcome).
                Ok(response) => match self.answer(response) {
                    Err(CallError::Api {
                        status: 409,
                        body,
                        text,
                    }) if body["type"] == "IdempotencyInFlight" => {
                        last = Some(CallError::Api {
                            status: 409,
                            body,
                            text,
                        });
                    }
                    other => return other,
                },
                Err(e) => last = Some(self.transport(&e)),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(last.unwrap_or_else(|| CallError::Transport("no attempt was made".to_owned())))
    }

    /// POST a JSON body and hand back the answer's body as a stream (a query's rows), in
    /// the media type `accept` asks for. Not retried: a query changes nothing, and the
    /// caller may re-run it.
    pub fn post_stream(
        &self,
        path: &str,
        body: &Value,
        accept: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, CallError> {
        let url = format!("{}{}", self.base, path);
        let response = self
            .agent
            .post(&url)
            .header("Accept", accept)
            .content_type("application/json")
            .send(body.to_string())
            .map_err(|e| self.transport(&e))?;
        if response.status().is_success() {
            return Ok(Box::new(response.into_body().into_reader()));
        }
        match self.answer(response) {
            Err(e) => Err(e),
            Ok(_) => Err(CallError::Transport(format!(
                "{url} answered an error status without a body"
            ))),
        }
    }

    /// POST a multipart body (uploads stream; nothing is held whole) under an
    /// Idempotency-Key; `body()` makes it again for each attempt.
    pub fn post_multipart(
        &self,
        path: &str,
        boundary: &str,
        body: impl Fn() -> Result<Box<dyn std::io::Read + Send>, String>,
    ) -> Result<Option<Answer>, CallError> {
        let url = format!("{}{}", self.base, path);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.retried(|key| {
            let body = body().map_err(CallError::Transport)?;
            Ok(self
                .agent
                .post(&url)
                .header("Idempotency-Key", key)
                .header("Content-Type", &content_type)
                .send(ureq::SendBody::from_owned_reader(body)))
        })
    }

    fn transport(&self, e: &ureq::Error) -> CallError {
        CallError::Transport(format!(
            "cannot reach the floe server at {} ({e}); start it with `floe serve` or pass --server",
            self.base
        ))
    }

    fn answer(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<Option<Answer>, CallError> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| CallError::Transport(format!("reading the answer failed: {e}")))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        if (200..300).contains(&status) {
            Ok((!text.trim().is_empty()).then_some(Answer { text, value }))
        } else {
            Err(CallError::Api {
                status,
                body: value,
                text,
            })
        }
    }
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_keep_slashes_and_spec_characters_inside_one_segment() {
        assert_eq!(encode("feature/x"), "feature%2Fx");
        assert_eq!(
            encode("main*2026-01-01T00:00:00Z"),
            "main%2A2026-01-01T00%3A00%3A00Z"
        );
        assert_eq!(encode("main~2"), "main~2");
        assert_eq!(encode("a b"), "a%20b");
    }
}
