//! Credentials vended by STS (issue 20, `--vend-credentials sts`): an `AssumeRole` of
//! `--sts-role-arn`, signed (SigV4) with the server's own S3 credentials, carrying a
//! session policy that narrows the role to **one table's location** and to what the
//! principal may do on **the ref it loaded the table from**:
//!
//! - `Read` (a tag, a hash, a time, or a branch it may not write): get and list under the
//!   table's location;
//! - `Write` (a branch it may write): also put, and abort its own multipart uploads; never
//!   delete (the catalog, not engines, removes files). With `--sts-put-if-absent` a put
//!   without `If-None-Match: *` is denied, so a writer cannot replace a file another branch
//!   reads, on stores that enforce that condition (engines must then send it).
//!
//! Answers are cached per (location, access, principal) until `STS_REFRESH_BEFORE_S` before
//! they expire, so loads of a table cost one STS call per hour, not one per load.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::limits::{STS_CACHE_ENTRIES_MAX, STS_DURATION_S, STS_REFRESH_BEFORE_S};
use crate::s3::{S3Options, S3Place};
use crate::warehouse::WarehouseError;

/// What vended credentials may do on the table's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// How floe asks STS.
#[derive(Debug, Clone)]
pub struct StsOptions {
    /// STS's URL (`--sts-endpoint`; default `--s3-endpoint`, else AWS's regional STS).
    pub endpoint: String,
    pub region: String,
    pub role_arn: String,
    /// The server's own credentials, which sign the `AssumeRole`.
    pub caller: S3Options,
    /// Deny puts without `If-None-Match: *` (`--sts-put-if-absent`).
    pub put_if_absent: bool,
}

/// Temporary credentials and when they expire (ms since the epoch).
#[derive(Clone)]
struct Vended {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expires_ms: i64,
}

type CacheKey = (String, Access, String);

/// STS vending with its cache.
pub struct Sts {
    options: StsOptions,
    client: reqwest_s3::Client,
    cache: Mutex<HashMap<CacheKey, Vended>>,
    /// One lock per key being asked for: concurrent misses of one key wait for the first
    /// answer instead of each calling STS (a cold table under load would otherwise send
    /// STS one call per waiting request).
    asking: Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("endpoint", &self.options.endpoint)
            .field("role_arn", &self.options.role_arn)
            .finish()
    }
}

impl Sts {
    pub fn new(options: StsOptions) -> Result<Sts, String> {
        if options.caller.access_key_id.is_none() || options.caller.secret_access_key.is_none() {
            return Err(
                "--vend-credentials sts signs its AssumeRole with the server's S3 credentials; give them (--s3-access-key-id, AWS_ACCESS_KEY_ID)".to_owned(),
            );
        }
        if !options.endpoint.starts_with("https://") && !options.endpoint.starts_with("http://") {
            return Err(format!(
                "--sts-endpoint must be an http(s) URL, got {}",
                options.endpoint
            ));
        }
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest_s3::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot make the STS client: {e}"))?;
        Ok(Sts {
            options,
            client,
            cache: Mutex::new(HashMap::new()),
            asking: Mutex::new(HashMap::new()),
        })
    }

    /// Credentials for `principal` on the table at `location` (an `s3://` URL inside
    /// the warehouse), as Iceberg's table config names them.
    pub fn credentials(
        self: &Arc<Self>,
        location: &str,
        access: Access,
        principal: &str,
        now_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, String>, WarehouseError> {
        let key = (location.to_owned(), access, principal.to_owned());
        let fresh = |v: &Vended| v.expires_ms - STS_REFRESH_BEFORE_S * 1000 > now_ms;
        let cached = || self.cache.lock().get(&key).filter(|v| fresh(v)).cloned();
        let vended = match cached() {
            Some(v) => v,
            None => {
                // Waiting for another request's call, or making one, is I/O.
                crate::inline::may_block()?;
                let turn = self.asking.lock().entry(key.clone()).or_default().clone();
                let _turn = turn.lock();
                // Another request may have asked while this one waited.
                if let Some(v) = cached() {
                    return Ok(props(v));
                }
                let place = S3Place::parse(location).map_err(|why| failed(location, &why))?;
                let policy = session_policy(&place, access, self.options.put_if_absent);
                let this = self.clone();
                let session = session_name(principal);
                let asked =
                    crate::s3::block_on(async move { this.assume(&policy, &session).await });
                if asked.is_err() {
                    self.asking.lock().remove(&key);
                }
                let v = asked.map_err(|why| failed(location, &why))?;
                let mut cache = self.cache.lock();
                if cache.len() >= STS_CACHE_ENTRIES_MAX {
                    cache.retain(|_, v| fresh(v));
                    if cache.len() >= STS_CACHE_ENTRIES_MAX {
                        cache.clear();
                    }
                }
                cache.insert(key.clone(), v.clone());
                drop(cache);
                self.asking.lock().remove(&key);
                v
            }
        };
        Ok(props(vended))
    }

    /// One `AssumeRole` call.
    async fn assume(&self, policy: &str, session: &str) -> Result<Vended, String> {
        let body = [
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.options.role_arn.as_str()),
            ("RoleSessionName", session),
            ("DurationSeconds", &STS_DURATION_S.to_string()),
            ("Policy", policy),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let now = time::OffsetDateTime::now_utc();
        let headers = sign(&self.options, &body, now)?;
        let mut request = self.client.post(&self.options.endpoint).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| format!("STS did not answer: {e}"))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| format!("STS's answer could not be read: {e}"))?;
        if !status.is_success() {
            // The code only: STS's message may name the server's own identity.
            let code = tag(&text, "Code").unwrap_or_default();
            return Err(format!("STS refused AssumeRole ({status}): {code}"));
        }
        let field = |name: &str| {
            tag(&text, name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("STS's answer has no {name}"))
        };
        let expiration = field("Expiration")?;
        let expires = time::OffsetDateTime::parse(
            &expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("STS's Expiration {expiration:?}: {e}"))?;
        Ok(Vended {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: field("SessionToken")?,
            expires_ms: (expires.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }
}

/// Vended credentials as Iceberg's table config names them.
fn props(vended: Vended) -> std::collections::BTreeMap<String, String> {
    let mut props = std::collections::BTreeMap::new();
    props.insert("s3.access-key-id".to_owned(), vended.access_key_id);
    props.insert("s3.secret-access-key".to_owned(), vended.secret_access_key);
    props.insert("s3.session-token".to_owned(), vended.session_token);
    props.insert(
        "s3.session-token-expires-at-ms".to_owned(),
        vended.expires_ms.to_string(),
    );
    props
}

fn failed(location: &str, why: &str) -> WarehouseError {
    WarehouseError::Unavailable(format!(
        "cannot vend credentials for {}: {why}",
        crate::warehouse::quoted(location)
    ))
}

/// The session policy for one table's files: read (get, list) under its location, and with
/// `Write` also put and abort multipart uploads; never delete.
pub fn session_policy(table: &S3Place, access: Access, put_if_absent: bool) -> String {
    let objects = format!("arn:aws:s3:::{}/{}/*", table.bucket, table.prefix);
    let mut statements = vec![
        serde_json::json!({
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [objects],
        }),
        serde_json::json!({
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:aws:s3:::{}", table.bucket)],
            "Condition": {"StringLike": {"s3:prefix": [table.prefix.clone(), format!("{}/*", table.prefix)]}},
        }),
    ];
    if access == Access::Write {
        statements.push(serde_json::json!({
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [objects],
        }));
        if put_if_absent {
            statements.push(serde_json::json!({
                "Effect": "Deny",
                "Action": ["s3:PutObject"],
                "Resource": [objects],
                "Condition": {"Null": {"s3:if-none-match": "true"}},
            }));
        }
    }
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// A `RoleSessionName` for a principal: `floe-` and its name in STS's alphabet
/// (`[\w+=,.@-]`), at most 64 characters.
fn session_name(principal: &str) -> String {
    let clean: String = principal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("floe-{clean}").chars().take(64).collect()
}

/// `application/x-www-form-urlencoded` (and SigV4's URI encoding): unreserved characters
/// as they are, every other byte `%XX`.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<name>` element of an XML answer.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// The headers of a SigV4-signed STS POST of `body` at `now`.
fn sign(
    options: &StsOptions,
    body: &str,
    now: time::OffsetDateTime,
) -> Result<Vec<(String, String)>, String> {
    let post = Post {
        endpoint: &options.endpoint,
        region: &options.region,
        service: "sts",
        content_type: "application/x-www-form-urlencoded; charset=utf-8",
        body,
    };
    sign_post(&options.caller, &post, now)
}

/// A POST to sign: where, for which service, with what body.
struct Post<'a> {
    endpoint: &'a str,
    region: &'a str,
    service: &'a str,
    content_type: &'a str,
    body: &'a str,
}

/// The headers of a SigV4-signed POST (content type, date, token, authorization; the
/// host is signed and left to the client to send).
fn sign_post(
    caller: &S3Options,
    post: &Post<'_>,
    now: time::OffsetDateTime,
) -> Result<Vec<(String, String)>, String> {
    let (Some(id), Some(secret)) = (&caller.access_key_id, &caller.secret_access_key) else {
        return Err("the server has no S3 credentials to sign with".to_owned());
    };
    let url = reqwest_s3::Url::parse(post.endpoint)
        .map_err(|e| format!("--sts-endpoint {}: {e}", post.endpoint))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(format!("--sts-endpoint {} has no host", post.endpoint)),
    };
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut headers = vec![
        ("content-type".to_owned(), post.content_type.to_owned()),
        ("host".to_owned(), host),
        ("x-amz-date".to_owned(), stamp.clone()),
    ];
    if let Some(token) = &caller.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical = format!(
        "POST\n{path}\n\n{canonical_headers}\n{signed}\n{}",
        sha256_hex(post.body.as_bytes())
    );
    let scope = format!("{date}/{}/{}/aws4_request", post.region, post.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [post.region, post.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    headers.retain(|(k, _)| k != "host");
    headers.push((
        "authorization".to_owned(),
        format!("AWS4-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders={signed}, Signature={signature}"),
    ));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_policy_names_only_the_tables_location_and_reads_for_read_access() {
        let table = S3Place::parse("s3://wh1/team/db/t-1").unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&session_policy(&table, Access::Read, false)).unwrap();
        let text = read.to_string();
        assert!(
            !text.contains("PutObject") && !text.contains("Delete"),
            "{text}"
        );
        assert_eq!(
            read["Statement"][0]["Resource"],
            serde_json::json!(["arn:aws:s3:::wh1/team/db/t-1/*"])
        );
        assert_eq!(
            read["Statement"][1]["Condition"]["StringLike"]["s3:prefix"],
            serde_json::json!(["team/db/t-1", "team/db/t-1/*"])
        );
        let write = session_policy(&table, Access::Write, true);
        assert!(
            write.contains("s3:PutObject") && !write.contains("Delete"),
            "{write}"
        );
        assert!(write.contains("s3:if-none-match"), "{write}");
        // Every resource is the table's own.
        let write: serde_json::Value = serde_json::from_str(&write).unwrap();
        for s in write["Statement"].as_array().unwrap() {
            for r in s["Resource"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(
                    r == "arn:aws:s3:::wh1/team/db/t-1/*" || r == "arn:aws:s3:::wh1",
                    "{r}"
                );
            }
        }
    }

    /// AWS's published SigV4 example values: the signing key derivation and the signature
    /// of a known string to sign (docs.aws.amazon.com, "Examples of how to derive a signing
    /// key for Signature Version 4").
    #[test]
    fn the_signing_key_matches_aws_documented_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), b"20120215");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    /// The AWS SigV4 test suite's `post-x-www-form-urlencoded` case: the whole signed
    /// request (canonical request, string to sign, signature), not only the key.
    #[test]
    fn a_signed_post_matches_the_aws_test_suite() {
        let caller = S3Options {
            access_key_id: Some("AKIDEXAMPLE".to_owned()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            ..S3Options::default()
        };
        let post = Post {
            endpoint: "https://example.amazonaws.com/",
            region: "us-east-1",
            service: "service",
            content_type: "application/x-www-form-urlencoded",
            body: "Param1=value1",
        };
        let at = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        let headers = sign_post(&caller, &post, at).unwrap();
        let authorization = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    #[test]
    fn session_names_and_forms_are_encoded() {
        assert_eq!(session_name("alice@example.com"), "floe-alice@example.com");
        assert_eq!(session_name("a b/c"), "floe-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(form_encode("a b&c=/~"), "a%20b%26c%3D%2F~");
        assert_eq!(
            tag("<X><Code>A&amp;B</Code></X>", "Code").as_deref(),
            Some("A&B")
        );
    }
}
