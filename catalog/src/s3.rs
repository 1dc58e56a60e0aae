//! Warehouses on S3 (issue 20): any S3-compatible store, through `object_store`'s S3
//! client (HTTPS by rustls with ring). A location `s3://bucket/key` is served only when its
//! bucket is the warehouse's and its key lies under the warehouse's prefix (and, for a
//! table, under the table's own location), checked on the parsed URL before any request.
//!
//! Clients are made once per set of options and shared (their connections too); their
//! futures run on a small runtime of their own, so that the catalog's blocking callers and
//! the iceberg crate's async ones reach S3 alike.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::warehouse::WarehouseError;

/// How floe reaches an S3-compatible store. Credentials are never printed (`Debug`).
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct S3Options {
    /// The store's URL (`--s3-endpoint`); AWS's when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Buckets in the path (`http://host/bucket/key`) rather than the host name.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<set>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl S3Options {
    /// The region requests are signed for: the one given, else `us-east-1` (AWS's default,
    /// and what S3-compatible stores accept when they ignore regions).
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    /// These options, with credentials from the standard AWS chain where not given: the
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` variables, else
    /// the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
    /// `~/.aws/credentials`) at the profile `AWS_PROFILE` (default `default`).
    pub fn with_environment(mut self) -> S3Options {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // One source for the pair: the file only when neither flags nor variables give a key.
        let given = self.access_key_id.is_some() || self.secret_access_key.is_some();
        if !given && var("AWS_ACCESS_KEY_ID").is_none() && var("AWS_SECRET_ACCESS_KEY").is_none() {
            let file = var("AWS_SHARED_CREDENTIALS_FILE")
                .or_else(|| var("HOME").map(|h| format!("{h}/.aws/credentials")));
            let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
            if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
                let keys = profile_keys(&text, &profile);
                let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                self.access_key_id = get("aws_access_key_id");
                self.secret_access_key = get("aws_secret_access_key");
                self.session_token = self.session_token.or(get("aws_session_token"));
            }
        }
        self.access_key_id = self.access_key_id.or_else(|| var("AWS_ACCESS_KEY_ID"));
        self.secret_access_key = self
            .secret_access_key
            .or_else(|| var("AWS_SECRET_ACCESS_KEY"));
        self.session_token = self.session_token.or_else(|| var("AWS_SESSION_TOKEN"));
        self.region = self
            .region
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"));
        self
    }
}

/// The `key = value` lines of one `[profile]` section of an AWS credentials file.
fn profile_keys(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
        } else if inside
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            keys.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    keys
}

/// A bucket and a key prefix (no leading or trailing `/`; empty for the whole bucket).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct S3Place {
    pub bucket: String,
    pub prefix: String,
}

impl S3Place {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<S3Place, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "{bucket:?} is not a bucket name (3-63 lowercase letters, digits, '-' and '.')"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            segments(prefix).map_err(|why| format!("the prefix of {url:?}: {why}"))?;
        }
        Ok(S3Place {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The object key of `location`, refused unless it lies strictly under this place.
    pub fn key(&self, location: &str) -> Result<ObjectPath, &'static str> {
        let rest = location
            .strip_prefix("s3://")
            .ok_or("only s3:// locations inside the warehouse are served")?;
        let (bucket, key) = rest.split_once('/').ok_or("it names no object")?;
        if bucket != self.bucket {
            return Err("it is in another bucket");
        }
        segments(key)?;
        let inside = if self.prefix.is_empty() {
            !key.is_empty()
        } else {
            key.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.is_empty())
        };
        if !inside {
            return Err("it is not under the warehouse's prefix");
        }
        ObjectPath::parse(key).map_err(|_| "it is not a valid object key")
    }

    /// The place of a location inside this one (a table's own).
    pub fn within(&self, location: &str) -> Result<S3Place, &'static str> {
        let key = self.key(location)?;
        Ok(S3Place {
            bucket: self.bucket.clone(),
            prefix: key.as_ref().to_owned(),
        })
    }
}

/// Checks a key's segments: none empty, `.` or `..`, no NUL, backslash or control.
fn segments(key: &str) -> Result<(), &'static str> {
    if key
        .chars()
        .any(|c| c == '\0' || c == '\\' || c.is_control())
    {
        return Err("it holds a NUL, a backslash or a control character");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("it holds empty, . or .. segments");
    }
    Ok(())
}

/// The clients made, by bucket and options.
type Clients = HashMap<(String, S3Options), Arc<dyn ObjectStore>>;

/// The client of a bucket with these options: made once, shared.
pub fn store(bucket: &str, options: &S3Options) -> Result<Arc<dyn ObjectStore>, WarehouseError> {
    static CLIENTS: LazyLock<Mutex<Clients>> = LazyLock::new(Default::default);
    let key = (bucket.to_owned(), options.clone());
    if let Some(s) = CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(s.clone());
    }
    // floe's one crypto provider, ring (a second install is refused, harmlessly); ring has
    // no post-quantum key exchange, hence rustls's deprecation note.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(options.region())
        .with_virtual_hosted_style_request(!options.path_style)
        // Metadata files are created with `If-None-Match: *`.
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = &options.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if options.access_key_id.is_some() != options.secret_access_key.is_some() {
        return Err(WarehouseError::Io {
            path: format!("s3://{bucket}"),
            message: "an S3 access key id needs its secret, and a secret its key id".to_owned(),
        });
    }
    if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
    } else {
        builder = builder.with_skip_signature(true);
    }
    let built: Arc<dyn ObjectStore> =
        Arc::new(builder.build().map_err(|e| WarehouseError::Io {
            path: format!("s3://{bucket}"),
            message: e.to_string(),
        })?);
    CLIENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    Ok(built)
}

/// Options by an opaque id, so that what travels in iceberg's `StorageConfig` (whose
/// `Debug` prints every property) names the credentials without holding them.
static REGISTERED: LazyLock<Mutex<Vec<S3Options>>> = LazyLock::new(Default::default);

/// The id under which `options` are kept for storages to find (`options_of`).
pub fn register(options: &S3Options) -> String {
    let mut kept = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    let at = match kept.iter().position(|o| o == options) {
        Some(at) => at,
        None => {
            kept.push(options.clone());
            kept.len() - 1
        }
    };
    format!("s3-options-{at}")
}

/// The options `register` kept under `id`.
pub fn options_of(id: &str) -> Option<S3Options> {
    let at: usize = id.strip_prefix("s3-options-")?.parse().ok()?;
    REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(at)
        .cloned()
}

/// The S3 runtime: a small runtime of its own, on which every S3 request runs.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floe-s3")
            .enable_all()
            .build()
            .expect("the S3 runtime starts")
    });
    &RUNTIME
}

/// Starts an S3 future on the S3 runtime without waiting for it.
pub(crate) fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}

/// Waits, from any thread, for a task started by `spawn` (its panic is resumed here).
pub(crate) fn join<T>(task: tokio::task::JoinHandle<T>) -> T {
    futures::executor::block_on(task).unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Runs an S3 future to completion from any thread (blocking or async-free), on the S3
/// runtime.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    join(spawn(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_stay_inside_the_bucket_and_prefix() {
        let place = S3Place::parse("s3://floe-wh/team/wh/").unwrap();
        assert_eq!(place.url(), "s3://floe-wh/team/wh");
        assert_eq!(
            place
                .key("s3://floe-wh/team/wh/db/t-1/metadata/a.json")
                .unwrap()
                .as_ref(),
            "team/wh/db/t-1/metadata/a.json"
        );
        for bad in [
            "s3://other-bucket/team/wh/x",
            "s3://floe-wh/team/other/x",
            "s3://floe-wh/team/wh",
            "s3://floe-wh/team/wh/",
            "s3://floe-wh/team/wh2/x",
            "s3://floe-wh/team/wh/../x",
            "s3://floe-wh/team/wh/./x",
            "s3://floe-wh/team/wh//x",
            "s3://floe-wh/team/wh/a\\b",
            "s3://floe-wh/team/wh/a\0b",
            "file:///etc/passwd",
            "/etc/passwd",
            "s3:/floe-wh/team/wh/x",
        ] {
            assert!(place.key(bad).is_err(), "{bad}");
        }
        let table = place.within("s3://floe-wh/team/wh/db/t-1").unwrap();
        assert!(table.key("s3://floe-wh/team/wh/db/t-2/x").is_err());
        assert!(table.key("s3://floe-wh/team/wh/db/t-1/x").is_ok());
        for bad in ["s3://wh", "s3://UPPER/x", "s3://a/../x", "http://x/y"] {
            assert!(S3Place::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_credentials_file_profile_is_read_by_its_section() {
        let text = "[default]\naws_access_key_id = AKID1\naws_secret_access_key=S1\n\n[team]\n# a comment\naws_access_key_id = AKID2\naws_secret_access_key = S2\naws_session_token = T2\n";
        let team = profile_keys(text, "team");
        assert_eq!(
            team,
            [
                ("aws_access_key_id".to_owned(), "AKID2".to_owned()),
                ("aws_secret_access_key".to_owned(), "S2".to_owned()),
                ("aws_session_token".to_owned(), "T2".to_owned()),
            ]
        );
        assert_eq!(profile_keys(text, "default").len(), 2);
        assert!(profile_keys(text, "other").is_empty());
    }

    #[test]
    fn credentials_are_never_printed() {
        let o = S3Options {
            secret_access_key: Some("very-secret".to_owned()),
            access_key_id: Some("AKIDEXAMPLE".to_owned()),
            ..S3Options::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );
    }
}
