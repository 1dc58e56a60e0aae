//! The warehouse as the `iceberg` crate's `Storage` / `StorageFactory` (DESIGN §3): the one
//! implementation through which iceberg-rust code (DataFusion scans, floe's own snapshot
//! producer) reads and writes files, over the same `object_store` `LocalFileSystem` (fsync
//! on) and with the same confinement as `Warehouse`: a path outside the root is an error
//! before any I/O.
//!
//! The traits are serialized by typetag, so the storage is its root path; the object store
//! client is rebuilt on first use rather than serialized.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::s3::{S3Options, S3Place};
use crate::warehouse::{WarehouseError, local_store, object_path, quoted};

/// The property of a `StorageConfig` that names the warehouse root (a folder, or an
/// `s3://` URL).
pub const WAREHOUSE_ROOT_PROP: &str = "floe.warehouse.root";
/// The property naming (by `s3::register`'s opaque id, never the credentials themselves)
/// the S3 options of an `s3://` root.
pub const S3_OPTIONS_PROP: &str = "floe.warehouse.s3";

/// What a storage may touch (on S3: the place, and the id of its options).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Scope {
    Local(PathBuf),
    S3(S3Place, String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarehouseStorage {
    scope: Scope,
    #[serde(skip)]
    store: Arc<OnceLock<Arc<dyn ObjectStore>>>,
}

fn to_iceberg(e: WarehouseError, root: &str) -> Error {
    let kind = match e {
        WarehouseError::Outside { .. }
        | WarehouseError::NotFound(_)
        | WarehouseError::TooLarge { .. } => ErrorKind::DataInvalid,
        WarehouseError::Io { .. } | WarehouseError::Unavailable(_) | WarehouseError::Exists(_) => {
            ErrorKind::Unexpected
        }
    };
    let message = match &e {
        // A storage is rooted at one table's location (or the warehouse): say which.
        WarehouseError::Outside { location, .. } => format!(
            "file {location} is outside {root}, the folder this storage may read (a table reads only the files under its own location)"
        ),
        other => other.to_string(),
    };
    Error::new(kind, message)
}

fn store_err(path: &str, e: object_store::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{path}: {e}"))
}

impl WarehouseStorage {
    /// A storage over the warehouse at `root` (an absolute, canonical folder).
    pub fn new(root: PathBuf) -> WarehouseStorage {
        WarehouseStorage {
            scope: Scope::Local(root),
            store: Arc::default(),
        }
    }

    /// A storage over the objects under `place` of the store the options registered as
    /// `options` reach.
    pub fn s3(place: S3Place, options: String) -> WarehouseStorage {
        WarehouseStorage {
            scope: Scope::S3(place, options),
            store: Arc::default(),
        }
    }

    fn root(&self) -> String {
        match &self.scope {
            Scope::Local(root) => root.display().to_string(),
            Scope::S3(place, _) => place.url(),
        }
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        let built: Arc<dyn ObjectStore> = match &self.scope {
            Scope::Local(root) => {
                Arc::new(local_store(root).map_err(|e| to_iceberg(e, &self.root()))?)
            }
            Scope::S3(place, id) => {
                let options = crate::s3::options_of(id).ok_or_else(|| {
                    Error::new(ErrorKind::DataInvalid, format!("no S3 options {id}"))
                })?;
                crate::s3::store(&place.bucket, &options)
                    .map_err(|e| to_iceberg(e, &self.root()))?
            }
        };
        Ok(self.store.get_or_init(|| built).clone())
    }

    /// Whether the files are on S3 (whose requests run on the S3 runtime).
    fn remote(&self) -> bool {
        matches!(self.scope, Scope::S3(..))
    }

    fn path(&self, location: &str) -> Result<ObjectPath> {
        match &self.scope {
            Scope::Local(root) => {
                object_path(root, location).map_err(|e| to_iceberg(e, &self.root()))
            }
            Scope::S3(place, _) => place.key(location).map_err(|why| {
                to_iceberg(
                    WarehouseError::Outside {
                        location: quoted(location),
                        why,
                    },
                    &self.root(),
                )
            }),
        }
    }
}

/// Runs a store request: on the S3 runtime for a bucket, so that whatever executor polls
/// the caller (DataFusion's, a blocking thread's) needs no reactor of its own; in place for
/// a local folder.
async fn on_store<T: Send + 'static>(
    remote: bool,
    request: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    if remote {
        crate::s3::spawn(request)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    } else {
        request.await
    }
}

#[async_trait]
#[typetag::serde(name = "FloeWarehouseStorage")]
impl Storage for WarehouseStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, at) = (self.store()?, self.path(path)?);
        match on_store(self.remote(), async move { store.head(&at).await }).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, at) = (self.store()?, self.path(path)?);
        let meta = on_store(self.remote(), async move { store.head(&at).await })
            .await
            .map_err(|e| store_err(path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, at) = (self.store()?, self.path(path)?);
        on_store(
            self.remote(),
            async move { store.get(&at).await?.bytes().await },
        )
        .await
        .map_err(|e| store_err(path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(WarehouseRead {
            store: self.store()?,
            path: self.path(path)?,
            remote: self.remote(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (store, at) = (self.store()?, self.path(path)?);
        on_store(self.remote(), async move {
            store.put(&at, PutPayload::from(bs)).await
        })
        .await
        .map_err(|e| store_err(path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(WarehouseWrite {
            store: self.store()?,
            path: self.path(path)?,
            remote: self.remote(),
            parts: Vec::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, at) = (self.store()?, self.path(path)?);
        match on_store(self.remote(), async move { store.delete(&at).await }).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, prefix) = (self.store()?, self.path(path)?);
        on_store(self.remote(), async move {
            let mut listed = store.list(Some(&prefix));
            while let Some(meta) = listed.next().await {
                match store.delete(&meta?.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| store_err(path, e))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(p) = paths.next().await {
            self.delete(&p).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        self.path(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        self.path(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

#[derive(Debug)]
struct WarehouseRead {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    remote: bool,
}

#[async_trait]
impl FileRead for WarehouseRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let (store, at) = (self.store.clone(), self.path.clone());
        on_store(
            self.remote,
            async move { store.get_range(&at, range).await },
        )
        .await
        .map_err(|e| store_err(self.path.as_ref(), e))
    }
}

/// Buffers the parts and puts them as one object on close (one durable, atomic write).
#[derive(Debug)]
struct WarehouseWrite {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    remote: bool,
    parts: Vec<Bytes>,
    closed: bool,
}

#[async_trait]
impl FileWrite for WarehouseWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        if self.closed {
            return Err(Error::new(ErrorKind::Unexpected, "write after close"));
        }
        self.parts.push(bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Unexpected,
                "the file is already closed",
            ));
        }
        self.closed = true;
        let payload: PutPayload = std::mem::take(&mut self.parts).into_iter().collect();
        let (store, at) = (self.store.clone(), self.path.clone());
        on_store(self.remote, async move { store.put(&at, payload).await })
            .await
            .map_err(|e| store_err(self.path.as_ref(), e))?;
        Ok(())
    }
}

/// Builds a `WarehouseStorage` from a config naming the root (`WAREHOUSE_ROOT_PROP`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarehouseStorageFactory;

#[typetag::serde(name = "FloeWarehouseStorageFactory")]
impl StorageFactory for WarehouseStorageFactory {
    fn build(&self, config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        let root = config.get(WAREHOUSE_ROOT_PROP).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("the storage config needs {WAREHOUSE_ROOT_PROP}"),
            )
        })?;
        if root.starts_with("s3://") {
            let place =
                S3Place::parse(root).map_err(|why| Error::new(ErrorKind::DataInvalid, why))?;
            let options = config
                .get(S3_OPTIONS_PROP)
                .cloned()
                .unwrap_or_else(|| crate::s3::register(&S3Options::default()));
            return Ok(Arc::new(WarehouseStorage::s3(place, options)));
        }
        Ok(Arc::new(WarehouseStorage::new(PathBuf::from(root))))
    }
}

#[cfg(test)]
mod tests {
    use iceberg::io::FileIOBuilder;

    use super::*;
    use crate::warehouse::Warehouse;

    #[test]
    fn iceberg_file_io_reads_and_writes_inside_the_warehouse_only() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path()).unwrap();
        let io = FileIOBuilder::new(Arc::new(WarehouseStorageFactory))
            .with_props([(
                WAREHOUSE_ROOT_PROP.to_owned(),
                warehouse.local_root().unwrap().display().to_string(),
            )])
            .build();
        let inside = format!("{}/db/t-1/data/part-0.parquet", warehouse.root_url());
        futures::executor::block_on(async {
            let out = io.new_output(&inside).unwrap();
            out.write(Bytes::from_static(b"hello")).await.unwrap();
            assert!(io.exists(&inside).await.unwrap());
            let input = io.new_input(&inside).unwrap();
            assert_eq!(input.read().await.unwrap(), Bytes::from_static(b"hello"));
            assert_eq!(input.metadata().await.unwrap().size, 5);
            let reader = input.reader().await.unwrap();
            assert_eq!(reader.read(1..4).await.unwrap(), Bytes::from_static(b"ell"));
            for outside in [
                "file:///etc/passwd".to_owned(),
                format!("{}/../x", warehouse.root_url()),
                "s3://bucket/key".to_owned(),
            ] {
                assert!(io.new_input(&outside).is_err(), "{outside}");
                assert!(io.exists(&outside).await.is_err(), "{outside}");
                assert!(io.delete(&outside).await.is_err(), "{outside}");
            }
        });
        // The server's own reads see what iceberg wrote.
        assert_eq!(warehouse.read(&inside).unwrap(), b"hello");
        futures::executor::block_on(async {
            io.delete(&inside).await.unwrap();
            assert!(!io.exists(&inside).await.unwrap());
        });
    }
}
