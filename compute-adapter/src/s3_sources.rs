//! Import sources on S3 (issue 20): `floe import s3://bucket/prefix/*.parquet` reads objects
//! of an S3-compatible store with the server's credentials, confined to the prefixes
//! `floe serve --import-prefix` names, as local sources are to `--import-root`. A source
//! is one object or a glob (`*` and `?` within a segment of the key); each object is
//! downloaded into the import's staging folder (hashed on the way) and imported from there.

use std::path::Path;

use floe_catalog::s3::{S3Options, S3Place};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::source::ImportFile;

/// Why an S3 source cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum S3SourceError {
    #[error(
        "{0} is not under any --import-prefix of this server (start it with --import-prefix s3://bucket/prefix)"
    )]
    Outside(String),
    #[error("{0}")]
    Invalid(String),
    #[error("reading {name} from the store failed: {message}")]
    Store { name: String, message: String },
}

/// The prefixes imports may read, and how to reach their store.
#[derive(Debug, Clone, Default)]
pub struct S3Sources {
    prefixes: Vec<S3Place>,
    options: S3Options,
}

impl S3Sources {
    /// Parses `--import-prefix` values (`s3://bucket[/prefix]`).
    pub fn new(prefixes: &[String], options: S3Options) -> Result<S3Sources, String> {
        let prefixes = prefixes
            .iter()
            .map(|p| S3Place::parse(p).map_err(|why| format!("--import-prefix {p}: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(S3Sources { prefixes, options })
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The objects `source` names (`s3://bucket/key`, or a glob in the key), at most `max`,
    /// each inside a configured prefix. Blocking.
    pub fn expand(&self, source: &str, max: usize) -> Result<Vec<String>, S3SourceError> {
        let (place, key) = self.locate(source)?;
        let key = key.as_ref().to_owned();
        let Some(glob_at) = key.find(['*', '?']) else {
            return Ok(vec![source.to_owned()]);
        };
        let store = self.store(place, source)?;
        // Listed under the folder of the first wildcard.
        let listed = ObjectPath::from(key[..key[..glob_at].rfind('/').unwrap_or(0)].to_owned());
        let pattern = key.clone();
        let keys = floe_catalog::s3::block_on(async move {
            let mut found = Vec::new();
            let mut listing = store.list(Some(&listed));
            while let Some(meta) = listing.next().await {
                let name = meta?.location.as_ref().to_owned();
                if glob(&pattern, &name) {
                    found.push(name);
                    if found.len() > max {
                        break;
                    }
                }
            }
            Ok::<_, object_store::Error>(found)
        })
        .map_err(|e| S3SourceError::Store {
            name: source.to_owned(),
            message: e.to_string(),
        })?;
        if keys.is_empty() {
            return Err(S3SourceError::Invalid(format!(
                "{source} matches no object"
            )));
        }
        if keys.len() > max {
            return Err(S3SourceError::Invalid(format!(
                "{source} matches more than {max} objects (SERVER_SOURCES_MAX); import them in several runs"
            )));
        }
        let mut urls: Vec<String> = keys
            .into_iter()
            .map(|k| format!("s3://{}/{k}", place.bucket))
            .collect();
        urls.sort();
        Ok(urls)
    }

    /// Downloads one object (a URL `expand` answered) to `to`, hashing it; refused past
    /// `max_bytes`. Blocking.
    pub fn download(
        &self,
        url: &str,
        to: &Path,
        max_bytes: u64,
    ) -> Result<ImportFile, S3SourceError> {
        let (place, key) = self.locate(url)?;
        let store = self.store(place, url)?;
        let failed = |message: String| S3SourceError::Store {
            name: url.to_owned(),
            message,
        };
        let file = std::fs::File::create_new(to).map_err(|e| failed(e.to_string()))?;
        // Written asynchronously: the S3 runtime's threads never block on the disk.
        let mut file = tokio::fs::File::from_std(file);
        let name = url.to_owned();
        let (hash, size, file) = floe_catalog::s3::block_on(async move {
            use tokio::io::AsyncWriteExt;
            let missing = |e: object_store::Error| match e {
                object_store::Error::NotFound { .. } => format!("there is no object {name}"),
                e => e.to_string(),
            };
            let mut body = store.get(&key).await.map_err(missing)?.into_stream();
            let mut hasher = blake3::Hasher::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(format!(
                        "{name} is larger than this server's import limit of {max_bytes} bytes (floe serve --import-max-bytes)"
                    ));
                }
                file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            file.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((hasher.finalize().to_hex().to_string(), size, file))
        })
        .map_err(|message| {
            if message.starts_with("there is no object ") || message.contains("import limit") {
                S3SourceError::Invalid(message)
            } else {
                failed(message)
            }
        })?;
        drop(file);
        Ok(ImportFile {
            name: url.to_owned(),
            path: to.to_owned(),
            blake3: hash,
            size,
            identity: None,
            held: None,
        })
    }

    /// The import prefix a source lies under, and its key (refused outside every one, before
    /// any request).
    fn locate(&self, source: &str) -> Result<(&S3Place, ObjectPath), S3SourceError> {
        self.prefixes
            .iter()
            .find_map(|p| p.key(source).ok().map(|k| (p, k)))
            .ok_or_else(|| S3SourceError::Outside(source.to_owned()))
    }

    fn store(
        &self,
        place: &S3Place,
        source: &str,
    ) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, S3SourceError> {
        floe_catalog::s3::store(&place.bucket, &self.options).map_err(|e| S3SourceError::Store {
            name: source.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Whether `key` matches `pattern`: `*` is any run of characters but `/`, `?` one
/// character but `/`; everything else matches itself.
fn glob(pattern: &str, key: &str) -> bool {
    let (p, k): (Vec<char>, Vec<char>) = (pattern.chars().collect(), key.chars().collect());
    // Backtracking over the last `*` only (linear for patterns without nested stars).
    let (mut pi, mut ki) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ki));
                pi += 1;
            }
            Some('?') if k[ki] != '/' => {
                pi += 1;
                ki += 1;
            }
            Some(c) if *c == k[ki] && *c != '*' && *c != '?' => {
                pi += 1;
                ki += 1;
            }
            _ => match star {
                Some((sp, sk)) if k[sk] != '/' => {
                    star = Some((sp, sk + 1));
                    pi = sp + 1;
                    ki = sk + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_segment() {
        assert!(glob("in/*.parquet", "in/a.parquet"));
        assert!(glob("in/*.parquet", "in/.parquet"));
        assert!(!glob("in/*.parquet", "in/sub/a.parquet"));
        assert!(!glob("in/*.parquet", "in/a.csv"));
        assert!(glob("in/day=*/part-?.parquet", "in/day=1/part-3.parquet"));
        assert!(!glob("in/day=*/part-?.parquet", "in/day=1/part-33.parquet"));
        assert!(glob("in/*", "in/x"));
        assert!(!glob("in/*", "in/x/y"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn sources_outside_every_prefix_are_refused_before_any_request() {
        let sources = S3Sources::new(
            &["s3://landing/in".to_owned()],
            S3Options {
                endpoint: Some("http://127.0.0.1:9".to_owned()),
                ..Default::default()
            },
        )
        .unwrap();
        for outside in [
            "s3://landing/other/a.parquet",
            "s3://landing/in/../secret.parquet",
            "s3://landing/inner/a.parquet",
            "s3://elsewhere/in/a.parquet",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(sources.expand(outside, 10), Err(S3SourceError::Outside(_))),
                "{outside}"
            );
        }
        assert_eq!(
            sources.expand("s3://landing/in/a.parquet", 10).unwrap(),
            vec!["s3://landing/in/a.parquet"]
        );
        assert!(S3Sources::new(&["http://x".to_owned()], S3Options::default()).is_err());
    }
}
