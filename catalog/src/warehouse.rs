//! The Warehouse (DESIGN §3): the one place through which the server reads and writes
//! files, over `object_store` 0.14: a local folder (`LocalFileSystem` with fsync on; a
//! location is a `file://` URL under its root) or a bucket and prefix of an S3-compatible
//! store (`s3.rs`; a location is an `s3://` URL under them). Any location outside is
//! refused before anything is touched. `storage.rs` exposes the same store, with the same
//! confinement, as the `iceberg` crate's `Storage`.
//!
//! Metadata files are written durably before the ref commit that points at them:
//! `object_store` stages the file, fsyncs it, links it into place and fsyncs the folder
//! before the put returns. A file is never overwritten (`PutMode::Create`: metadata files
//! are immutable; their names carry a UUID).
//!
//! Table locations are `<root>/<namespace levels>/<name>-<uuid>`, each level escaped so
//! that no name can form `..`, a separator or a control character on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use floe_commits::key::escape_element;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::limits::QUOTED_CHARS_MAX;
use crate::s3::{S3Options, S3Place};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    /// The location is not one the server may touch; nothing was read or written.
    #[error("location {location:?} is outside the warehouse ({why})")]
    Outside { location: String, why: &'static str },
    #[error("no file at {0}")]
    NotFound(String),
    #[error("warehouse I/O failed on {path}: {message}")]
    Io { path: String, message: String },
    /// A new file's name was taken by another writer first (a conditional create lost):
    /// nothing was replaced; a retry writes under a fresh name.
    #[error("another writer created {0} first; nothing was replaced, retry the commit")]
    Exists(String),
    /// A service the warehouse needs (STS) did not answer as it should; a retry may work.
    #[error("{0}")]
    Unavailable(String),
    /// A file read whole is larger than the reader takes; nothing past the limit was read.
    #[error("the file at {location} is larger than {max} bytes, the most floe reads of it")]
    TooLarge { location: String, max: u64 },
}

/// A durability step of a metadata write, reported to a hook (tests of barrier order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseEvent {
    /// A new file is about to be created (tests race another writer of the name here).
    Creating,
    /// A new file is durable: the put that fsynced its contents and its folder returned.
    FileDurable,
}

/// Observes a warehouse's durability steps, with the location of the file.
pub type WarehouseHook = Arc<dyn Fn(WarehouseEvent, &str) + Send + Sync>;

/// Where a warehouse (or a table's part of it) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A local folder (absolute, canonical).
    Local(PathBuf),
    /// A bucket and prefix of an S3-compatible store, and how to reach it.
    S3(S3Place, S3Options),
}

#[derive(Clone)]
pub struct Warehouse {
    place: Place,
    store: Arc<dyn ObjectStore>,
    hook: Option<WarehouseHook>,
    /// Credentials handed to engines that ask.
    vend: Option<Vending>,
}

/// How a warehouse on S3 hands engines credentials.
#[derive(Debug, Clone)]
pub enum Vending {
    /// The same keys for every table and branch (unscoped).
    Static(Arc<S3Options>),
    /// Temporary keys from STS, scoped to one table and the ref's access.
    Sts(Arc<crate::sts::Sts>),
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("root", &self.root_url())
            .finish()
    }
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse folder.
    pub fn open(root: &Path) -> Result<Warehouse, WarehouseError> {
        fs::create_dir_all(root).map_err(|e| io(root, &e))?;
        let root = fs::canonicalize(root).map_err(|e| io(root, &e))?;
        let store = Arc::new(local_store(&root)?);
        Ok(Warehouse {
            place: Place::Local(root),
            store,
            hook: None,
            vend: None,
        })
    }

    /// Opens the warehouse at `s3://bucket[/prefix]` of the store `options` reach.
    pub fn open_s3(url: &str, options: S3Options) -> Result<Warehouse, WarehouseError> {
        let place = S3Place::parse(url).map_err(|why| WarehouseError::Io {
            path: quoted(url),
            message: why,
        })?;
        let store = crate::s3::store(&place.bucket, &options)?;
        Ok(Warehouse {
            place: Place::S3(place, options),
            store,
            hook: None,
            vend: None,
        })
    }

    /// Opens the warehouse a `--warehouse` value names: a folder (a path or `file://`
    /// URL) or `s3://bucket/prefix`. Any other scheme is refused, not taken for a folder.
    pub fn open_url(text: &str, options: S3Options) -> Result<Warehouse, WarehouseError> {
        if text.starts_with("s3://") {
            return Warehouse::open_s3(text, options);
        }
        if text.contains("://") && !text.starts_with("file://") {
            return Err(WarehouseError::Io {
                path: quoted(text),
                message: "a warehouse is a folder (a path or file:// URL) or s3://bucket/prefix"
                    .to_owned(),
            });
        }
        Warehouse::open(Path::new(text.strip_prefix("file://").unwrap_or(text)))
    }

    /// Refuses a location outside the warehouse (before anything is read there).
    pub fn confine(&self, location: &str) -> Result<(), WarehouseError> {
        self.object_path(location).map(drop)
    }

    /// Whether a table's metadata folder holds a metadata file already.
    pub fn holds_metadata(&self, folder: &str) -> Result<bool, WarehouseError> {
        crate::inline::may_block()?;
        let seen = |name: &str| name.ends_with(".metadata.json");
        match &self.place {
            Place::Local(root) => {
                let dir = resolve_under(root, folder)?;
                Ok(fs::read_dir(&dir).is_ok_and(|entries| {
                    entries
                        .flatten()
                        .any(|e| seen(&e.file_name().to_string_lossy()))
                }))
            }
            Place::S3(..) => {
                let prefix = self.object_path(folder)?;
                let store = self.store.clone();
                let listed = self.run(async move {
                    use futures::TryStreamExt;
                    store.list(Some(&prefix)).try_collect::<Vec<_>>().await
                });
                let listed = listed.map_err(|e| store_error(folder, &e))?;
                Ok(listed
                    .iter()
                    .any(|m| m.location.filename().is_some_and(seen)))
            }
        }
    }

    /// Whether the S3 prefix `url` (`s3://bucket/prefix`) and the warehouse share objects:
    /// one lies inside the other.
    pub fn overlaps(&self, url: &str) -> bool {
        let (Place::S3(mine, _), Ok(other)) = (&self.place, S3Place::parse(url)) else {
            return false;
        };
        let within = |a: &str, b: &str| a.is_empty() || b == a || b.starts_with(&format!("{a}/"));
        mine.bucket == other.bucket
            && (within(&mine.prefix, &other.prefix) || within(&other.prefix, &mine.prefix))
    }

    /// Where the warehouse is.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The same warehouse, handing engines that ask these credentials (an access key id and
    /// secret, and a session token if any; both keys or nothing).
    pub fn vending(mut self, credentials: S3Options) -> Warehouse {
        if credentials.access_key_id.is_some() && credentials.secret_access_key.is_some() {
            self.vend = Some(Vending::Static(Arc::new(credentials)));
        }
        self
    }

    /// The same warehouse, handing engines that ask credentials from STS.
    pub fn vending_sts(mut self, sts: crate::sts::Sts) -> Warehouse {
        self.vend = Some(Vending::Sts(Arc::new(sts)));
        self
    }

    /// How the warehouse vends credentials, if it does.
    pub fn vending_mode(&self) -> Option<&Vending> {
        self.vend.as_ref()
    }

    /// The static vended credentials as Iceberg's table config names them.
    pub fn vended_properties(&self) -> Option<std::collections::BTreeMap<String, String>> {
        let Some(Vending::Static(vend)) = self.vend.as_ref() else {
            return None;
        };
        let mut props = std::collections::BTreeMap::new();
        props.insert("s3.access-key-id".to_owned(), vend.access_key_id.clone()?);
        props.insert(
            "s3.secret-access-key".to_owned(),
            vend.secret_access_key.clone()?,
        );
        if let Some(token) = &vend.session_token {
            props.insert("s3.session-token".to_owned(), token.clone());
        }
        Some(props)
    }

    /// What an engine needs to reach the warehouse's files with its own credentials
    /// (Iceberg's `s3.*` table config): nothing for a local folder.
    pub fn engine_properties(&self) -> std::collections::BTreeMap<String, String> {
        let mut props = std::collections::BTreeMap::new();
        if let Place::S3(_, options) = &self.place {
            if let Some(endpoint) = &options.endpoint {
                props.insert("s3.endpoint".to_owned(), endpoint.clone());
            }
            props.insert("s3.region".to_owned(), options.region().to_owned());
            props.insert(
                "s3.path-style-access".to_owned(),
                options.path_style.to_string(),
            );
        }
        props
    }

    /// The properties of the iceberg `FileIO` confined to `location` (a table's own).
    pub fn storage_props(&self, location: &str) -> Result<Vec<(String, String)>, WarehouseError> {
        use crate::storage::{S3_OPTIONS_PROP, WAREHOUSE_ROOT_PROP};
        Ok(match &self.place {
            Place::Local(_) => vec![(
                WAREHOUSE_ROOT_PROP.to_owned(),
                self.resolve(location)?.display().to_string(),
            )],
            Place::S3(place, options) => {
                let within = place
                    .within(location)
                    .map_err(|why| WarehouseError::Outside {
                        location: quoted(location),
                        why,
                    })?;
                vec![
                    (WAREHOUSE_ROOT_PROP.to_owned(), within.url()),
                    (S3_OPTIONS_PROP.to_owned(), crate::s3::register(options)),
                ]
            }
        })
    }

    /// Runs a store future: on the calling thread for a local folder, on the S3 runtime
    /// for a bucket.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        match self.place {
            Place::Local(_) => block_on(f),
            Place::S3(..) => crate::s3::block_on(f),
        }
    }

    /// The store under the warehouse (confine a location before using it).
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The same warehouse, reporting its durability steps to `hook`.
    pub fn with_hook(mut self, hook: WarehouseHook) -> Warehouse {
        self.hook = Some(hook);
        self
    }

    fn report(&self, event: WarehouseEvent, location: &str) {
        if let Some(h) = &self.hook {
            h(event, location);
        }
    }

    /// The folder of a local warehouse.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.place {
            Place::Local(root) => Some(root),
            Place::S3(..) => None,
        }
    }

    /// The URL of the warehouse root.
    pub fn root_url(&self) -> String {
        match &self.place {
            Place::Local(root) => format!("file://{}", root.display()),
            Place::S3(place, _) => place.url(),
        }
    }

    /// The location of a new table: `<root>/<levels...>/<name>-<uuid>`.
    pub fn table_location<'a>(
        &self,
        namespace: impl IntoIterator<Item = &'a str>,
        name: &str,
        uuid: &str,
    ) -> String {
        let mut url = self.root_url();
        for level in namespace {
            url.push('/');
            url.push_str(&escape_element(level));
        }
        url.push('/');
        url.push_str(&escape_element(name));
        url.push('-');
        url.push_str(uuid);
        url
    }

    /// True when `location` is a location `table_location` gives this table (any UUID).
    pub fn is_table_location<'a>(
        &self,
        namespace: impl IntoIterator<Item = &'a str>,
        name: &str,
        location: &str,
    ) -> bool {
        let prefix = self.table_location(namespace, name, "");
        location
            .strip_prefix(&prefix)
            .is_some_and(|u| uuid::Uuid::try_parse(u).is_ok())
    }

    /// The local path of a location, refused unless it lies strictly inside the root (and
    /// the warehouse is a local folder).
    pub fn resolve(&self, location: &str) -> Result<PathBuf, WarehouseError> {
        match &self.place {
            Place::Local(root) => resolve_under(root, location),
            Place::S3(..) => Err(WarehouseError::Outside {
                location: quoted(location),
                why: "the warehouse is on S3: its files have no local path",
            }),
        }
    }
}

/// The local path of a location, refused unless it lies strictly inside `root`.
pub(crate) fn resolve_under(root: &Path, location: &str) -> Result<PathBuf, WarehouseError> {
    {
        let outside = |why| WarehouseError::Outside {
            location: quoted(location),
            why,
        };
        let path = if let Some(rest) = location.strip_prefix("file://") {
            rest
        } else if location.starts_with('/') {
            location
        } else {
            return Err(outside(
                "only file:// locations inside the warehouse are served",
            ));
        };
        if path.contains('\0') || path.contains('\\') {
            return Err(outside("it holds a NUL or a backslash"));
        }
        let raw = path;
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(outside("it is not absolute"));
        }
        // Raw segments: `Path::components` would quietly drop an inner `.`.
        if raw.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(outside("it holds . or .. segments"));
        }
        if !path.starts_with(root) || path == root {
            return Err(outside("it is not under the warehouse root"));
        }
        Ok(path.to_owned())
    }
}

impl Warehouse {
    /// The object path of a location inside the warehouse (relative to its root).
    pub fn object_path(&self, location: &str) -> Result<ObjectPath, WarehouseError> {
        match &self.place {
            Place::Local(root) => object_path(root, location),
            Place::S3(place, _) => place.key(location).map_err(|why| WarehouseError::Outside {
                location: quoted(location),
                why,
            }),
        }
    }

    /// Reads a whole file at a location inside the warehouse.
    pub fn read(&self, location: &str) -> Result<Vec<u8>, WarehouseError> {
        crate::inline::may_block()?;
        let path = self.object_path(location)?;
        // A missing file, a folder, or a path through a file is the caller's mistake (a
        // 4xx), not a storage failure.
        if let Place::Local(_) = self.place
            && !self.resolve(location)?.is_file()
        {
            return Err(WarehouseError::NotFound(quoted(location)));
        }
        let store = self.store.clone();
        let bytes = self
            .run(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| store_error(location, &e))?;
        Ok(bytes.to_vec())
    }

    /// Reads a small file at a location inside the warehouse straight from the local
    /// folder, on the calling thread: no hop to another thread, for the files a commit
    /// reads to check (manifest lists, manifests), where the hop cost more than the read.
    ///
    /// At most `max` bytes are read: a larger file is `TooLarge` (a client's file may be
    /// of any size, and this one is held in memory whole).
    pub fn read_small(&self, location: &str, max: u64) -> Result<Vec<u8>, WarehouseError> {
        crate::inline::may_block()?;
        let too_large = || WarehouseError::TooLarge {
            location: quoted(location),
            max,
        };
        if let Place::S3(..) = self.place {
            let path = self.object_path(location)?;
            let store = self.store.clone();
            let head = self
                .run({
                    let (store, path) = (store.clone(), path.clone());
                    async move { store.head(&path).await }
                })
                .map_err(|e| store_error(location, &e))?;
            if head.size > max {
                return Err(too_large());
            }
            let bytes = self
                .run(async move { store.get_range(&path, 0..head.size).await })
                .map_err(|e| store_error(location, &e))?;
            return Ok(bytes.to_vec());
        }
        let path = self.resolve(location)?;
        let not_found = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => WarehouseError::NotFound(quoted(location)),
            _ => io(&path, &e),
        };
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, max + 1), &mut bytes)
            })
            .map_err(not_found)?;
        if bytes.len() as u64 > max {
            return Err(too_large());
        }
        Ok(bytes)
    }

    /// True when a file exists at a location inside the warehouse.
    pub fn exists(&self, location: &str) -> Result<bool, WarehouseError> {
        crate::inline::may_block()?;
        let path = self.object_path(location)?;
        let store = self.store.clone();
        match self.run(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(location, &e)),
        }
    }

    /// Writes a new file durably (contents and folder fsynced before this returns).
    /// Refuses to replace an existing file.
    pub fn write_new(&self, location: &str, bytes: &[u8]) -> Result<(), WarehouseError> {
        crate::inline::may_block()?;
        let path = self.object_path(location)?;
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.report(WarehouseEvent::Creating, location);
        self.run(async move { store.put_opts(&path, payload, options).await })
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => {
                    WarehouseError::Exists(quoted(location))
                }
                e => store_error(location, &e),
            })?;
        self.report(WarehouseEvent::FileDurable, location);
        Ok(())
    }
}

impl Warehouse {
    /// Whether the store refuses a second create of one name (`If-None-Match: *`), which
    /// metadata files rely on: a marker is created twice, then removed. `Ok(false)`: the
    /// second create replaced the first. `id` names the marker (the caller's id source).
    pub fn probe_conditional_create(&self, id: uuid::Uuid) -> Result<bool, WarehouseError> {
        let marker = format!("{}/.floe-probe-{}", self.root_url(), id.simple());
        self.write_new(&marker, b"1")?;
        let path = self.object_path(&marker)?;
        let store = self.store.clone();
        let second = self.run(async move {
            let options = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            let again = store
                .put_opts(&path, PutPayload::from_static(b"2"), options)
                .await;
            let _ = store.delete(&path).await;
            again
        });
        match second {
            Ok(_) => Ok(false),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(true),
            Err(e) => Err(store_error(&marker, &e)),
        }
    }
}

/// The local object store under a root, fsyncing every write.
pub(crate) fn local_store(root: &Path) -> Result<LocalFileSystem, WarehouseError> {
    Ok(LocalFileSystem::new_with_prefix(root)
        .map_err(|e| store_error(&root.display().to_string(), &e))?
        .with_fsync(true))
}

/// Confines a location to the root and turns it into an object path.
pub(crate) fn object_path(root: &Path, location: &str) -> Result<ObjectPath, WarehouseError> {
    let local = resolve_under(root, location)?;
    let relative = local
        .strip_prefix(root)
        .map_err(|_| WarehouseError::Outside {
            location: quoted(location),
            why: "it is not under the warehouse root",
        })?
        .to_string_lossy()
        .into_owned();
    ObjectPath::parse(&relative).map_err(|e| WarehouseError::Outside {
        location: quoted(location),
        why: if e.to_string().is_empty() {
            "it is not a valid object path"
        } else {
            "it is not a valid object path (empty or dot segments)"
        },
    })
}

/// Runs an object-store future to completion on the calling thread (the catalog's
/// callers are blocking threads; `LocalFileSystem` does its I/O on tokio's blocking pool
/// when a runtime is present, inline otherwise).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

pub(crate) fn store_error(location: &str, e: &object_store::Error) -> WarehouseError {
    if let object_store::Error::NotFound { .. } = e {
        return WarehouseError::NotFound(quoted(location));
    }
    WarehouseError::Io {
        path: quoted(location),
        message: e.to_string(),
    }
}

/// A location as an error quotes it: a request's location may be of any length.
pub(crate) fn quoted(location: &str) -> String {
    location.chars().take(QUOTED_CHARS_MAX).collect()
}

fn io(path: &Path, e: &std::io::Error) -> WarehouseError {
    WarehouseError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_stay_inside_the_root_whatever_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let loc = w.table_location(["..", "a/b"], ".hidden", "u1");
        assert!(loc.ends_with("/%2E%2E/a%2Fb/%2Ehidden-u1"), "{loc}");
        assert!(w.resolve(&loc).is_ok());
        let root = w.root_url();
        for bad in [
            "file:///etc/passwd".to_owned(),
            format!("{root}/../x"),
            format!("{root}/a/./b"),
            root.clone(),
            "s3://bucket/x".to_owned(),
            "relative/x".to_owned(),
            format!("{root}/a\\b"),
            format!("{root}/a\0b"),
        ] {
            assert!(
                matches!(w.resolve(&bad), Err(WarehouseError::Outside { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_warehouse_url_is_a_folder_or_s3_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let folder = format!("file://{}", dir.path().join("wh").display());
        assert!(Warehouse::open_url(&folder, S3Options::default()).is_ok());
        for bad in [
            "s3a://bucket/wh",
            "S3://bucket/wh",
            "gs://bucket/wh",
            "s3://UP/wh",
            "s3://b/../x",
        ] {
            assert!(
                Warehouse::open_url(bad, S3Options::default()).is_err(),
                "{bad}"
            );
        }
        let half = S3Options {
            access_key_id: Some("id".to_owned()),
            ..S3Options::default()
        };
        assert!(Warehouse::open_url("s3://half-keys/wh", half).is_err());
    }

    #[test]
    fn a_new_file_is_written_whole_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let loc = format!("{}/t-1/metadata/00000-x.metadata.json", w.root_url());
        w.write_new(&loc, b"{}").unwrap();
        assert_eq!(w.read(&loc).unwrap(), b"{}");
        assert!(w.write_new(&loc, b"[]").is_err());
        assert_eq!(w.read(&loc).unwrap(), b"{}");
        let leftovers: Vec<_> = fs::read_dir(w.local_root().unwrap().join("t-1/metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary file is left: {leftovers:?}"
        );
        // Escaped names are ordinary object paths.
        let odd = w.table_location(["a b"], ".x", "u2");
        let file = format!("{odd}/metadata/00000-y.metadata.json");
        w.write_new(&file, b"1").unwrap();
        assert!(w.exists(&file).unwrap());
        assert!(!w.exists(&format!("{odd}/nope")).unwrap());
    }

    /// A file read whole for a check is read up to its limit and refused past it.
    #[test]
    fn a_small_read_stops_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let loc = format!("{}/t-1/metadata/snap-1.avro", w.root_url());
        w.write_new(&loc, &[7u8; 100]).unwrap();
        assert_eq!(w.read_small(&loc, 100).unwrap().len(), 100);
        assert!(matches!(
            w.read_small(&loc, 99),
            Err(WarehouseError::TooLarge { max: 99, .. })
        ));
        let missing = format!("{}/t-1/metadata/none.avro", w.root_url());
        assert!(matches!(
            w.read_small(&missing, 100),
            Err(WarehouseError::NotFound(_))
        ));
    }
}
