//! New data files of a table (imports and run outputs, DESIGN §3), written through the
//! warehouse and confined to the table's own location.
//!
//! - In a local folder a file is created new (never replacing one), written, and fsynced
//!   when finished; its folders are the caller's to fsync (`DataFiles::local_folder`), so
//!   that every entry is durable before the commit that names the file.
//! - On S3 a file is buffered into parts of `S3_PART_BYTES`: one that ends before its first
//!   part is full is one PUT; a larger one is a multipart upload with up to
//!   `S3_PARTS_IN_FLIGHT` parts in flight, visible under its name only once completed. An
//!   object is durable when its PUT (or the upload's completion) returns.
//!
//! A file dropped before it is finished is removed (local) or its upload aborted (S3):
//! nothing half-written is ever left under a name a reader could see.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinHandle;

use crate::limits::{
    DATA_FILE_TAIL_BYTES, S3_PART_BYTES, S3_PARTS_IN_FLIGHT, S3_PARTS_IN_FLIGHT_TOTAL,
};
use crate::warehouse::{Place, Warehouse, WarehouseError, quoted, store_error};

/// The data files of one table: new ones are created under its location only.
#[derive(Debug, Clone)]
pub struct DataFiles {
    warehouse: Warehouse,
    /// The table's location, without a trailing `/`.
    table: String,
}

impl DataFiles {
    pub(crate) fn new(warehouse: Warehouse, table_location: &str) -> DataFiles {
        DataFiles {
            warehouse,
            table: table_location.trim_end_matches('/').to_owned(),
        }
    }

    /// Refuses a location outside the table's own location or the warehouse.
    fn confine(&self, location: &str) -> Result<ObjectPath, WarehouseError> {
        crate::inline::may_block()?;
        let inside = location
            .strip_prefix(&self.table)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
        if !inside {
            return Err(WarehouseError::Outside {
                location: quoted(location),
                why: "it is not under the table's own location",
            });
        }
        self.warehouse.object_path(location)
    }

    /// Starts a new data file at `location` (under the table's location).
    pub fn create(&self, location: &str) -> Result<NewDataFile, WarehouseError> {
        let path = self.confine(location)?;
        let sink = match self.warehouse.place() {
            Place::Local(_) => {
                let local = self.warehouse.resolve(location)?;
                let failed = |e: std::io::Error| WarehouseError::Io {
                    path: location.to_owned(),
                    message: e.to_string(),
                };
                if let Some(dir) = local.parent() {
                    std::fs::create_dir_all(dir).map_err(failed)?;
                }
                // Readable too: its tail is read back when it is finished.
                let file = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&local)
                    .map_err(failed)?;
                Sink::Local { file, path: local }
            }
            Place::S3(..) => Sink::S3(Box::new(S3Sink {
                store: self.warehouse.store().clone(),
                path,
                // Grows as bytes come: a small file (one of many partitions) stays small.
                buffer: Vec::new(),
                upload: None,
                parts: VecDeque::new(),
                last: Bytes::new(),
            })),
        };
        Ok(NewDataFile {
            location: location.to_owned(),
            sink: Some(sink),
            size: 0,
        })
    }

    /// Removes files this table's writer made that nothing refers to (best effort): the
    /// locations that could not be removed, each with why.
    pub fn remove(&self, locations: &[String]) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for location in locations {
            let removed = self.confine(location).and_then(|path| {
                let store = self.warehouse.store().clone();
                match self.warehouse.run(async move { store.delete(&path).await }) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(store_error(location, &e)),
                }
            });
            if let Err(e) = removed {
                failed.push((location.clone(), e.to_string()));
            }
        }
        failed
    }

    /// Reads a byte range of a file of the table.
    pub fn read_range(&self, location: &str, range: Range<u64>) -> Result<Bytes, WarehouseError> {
        let path = self.confine(location)?;
        let store = self.warehouse.store().clone();
        self.warehouse
            .run(async move { store.get_range(&path, range).await })
            .map_err(|e| store_error(location, &e))
    }

    /// The table's folder, for a local warehouse (whose new folders the caller fsyncs).
    pub fn local_folder(&self) -> Option<PathBuf> {
        match self.warehouse.place() {
            Place::Local(_) => self.warehouse.resolve(&self.table).ok(),
            Place::S3(..) => None,
        }
    }
}

/// A data file being written; `finish` makes it durable and visible.
#[derive(Debug)]
pub struct NewDataFile {
    location: String,
    /// `None` once finished.
    sink: Option<Sink>,
    size: u64,
}

/// A finished data file.
#[derive(Debug, Clone)]
pub struct FinishedDataFile {
    pub location: String,
    pub size: u64,
    /// Its path, in a local warehouse (fsynced; its folder is not yet).
    pub local: Option<PathBuf>,
    /// The file's last bytes (at least `DATA_FILE_TAIL_BYTES` of them, or the whole file).
    pub tail: Bytes,
}

#[derive(Debug)]
enum Sink {
    Local { file: File, path: PathBuf },
    S3(Box<S3Sink>),
}

#[derive(Debug)]
struct S3Sink {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// Bytes not yet sent: less than one part.
    buffer: Vec<u8>,
    /// Started when the first part is full.
    upload: Option<Box<dyn MultipartUpload>>,
    parts: VecDeque<JoinHandle<object_store::Result<()>>>,
    /// The last part sent (the file's tail may begin there).
    last: Bytes,
}

/// Parts in flight across every upload of the process: one import's partition files, or
/// several imports and runs at once, hold at most `S3_PARTS_IN_FLIGHT_TOTAL` parts in
/// memory beyond their buffers. A permit is taken before a part is sent and released when
/// its request ends.
struct InFlight;

static IN_FLIGHT: (parking_lot::Mutex<usize>, parking_lot::Condvar) =
    (parking_lot::Mutex::new(0), parking_lot::Condvar::new());

impl InFlight {
    fn acquire() -> InFlight {
        let (count, freed) = &IN_FLIGHT;
        let mut n = count.lock();
        while *n >= S3_PARTS_IN_FLIGHT_TOTAL {
            freed.wait(&mut n);
        }
        *n += 1;
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let (count, freed) = &IN_FLIGHT;
        *count.lock() -= 1;
        freed.notify_one();
    }
}

/// Starts uploading the next part on the S3 runtime, holding a process-wide permit (taken
/// first, waiting while `S3_PARTS_IN_FLIGHT_TOTAL` parts are in flight) until it ends.
fn start_part(
    upload: &mut Box<dyn MultipartUpload>,
    part: Bytes,
) -> JoinHandle<object_store::Result<()>> {
    let permit = InFlight::acquire();
    let sending = upload.put_part(PutPayload::from(part));
    crate::s3::spawn(async move {
        let sent = sending.await;
        drop(permit);
        sent
    })
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl S3Sink {
    /// Sends the full buffer as the next part, waiting while too many are in flight.
    fn send_part(&mut self) -> std::io::Result<()> {
        let part = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(S3_PART_BYTES),
        ));
        if self.upload.is_none() {
            let (store, path) = (self.store.clone(), self.path.clone());
            let upload = crate::s3::block_on(async move { store.put_multipart(&path).await })
                .map_err(other)?;
            self.upload = Some(upload);
        }
        let upload = self.upload.as_mut().expect("started above");
        self.parts.push_back(start_part(upload, part.clone()));
        self.last = part;
        while self.parts.len() > S3_PARTS_IN_FLIGHT {
            let oldest = self.parts.pop_front().expect("more than zero");
            crate::s3::join(oldest).map_err(other)?;
        }
        Ok(())
    }

    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let taken = buf.len();
        while !buf.is_empty() {
            let room = S3_PART_BYTES - self.buffer.len();
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.buffer.extend_from_slice(now);
            buf = later;
            if self.buffer.len() == S3_PART_BYTES {
                self.send_part()?;
            }
        }
        Ok(taken)
    }

    /// Reads `source` to its end into parts (no copy through a small buffer).
    fn copy_from(&mut self, source: &mut File) -> std::io::Result<u64> {
        let mut copied = 0u64;
        loop {
            let start = self.buffer.len();
            self.buffer.resize(S3_PART_BYTES, 0);
            let n = match source.read(&mut self.buffer[start..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    self.buffer.truncate(start);
                    continue;
                }
                Err(e) => {
                    self.buffer.truncate(start);
                    return Err(e);
                }
            };
            self.buffer.truncate(start + n);
            copied += n as u64;
            if self.buffer.len() == S3_PART_BYTES {
                self.send_part()?;
            } else if n == 0 {
                return Ok(copied);
            }
        }
    }

    /// Sends what is left and makes the object visible; its tail.
    fn finish(&mut self) -> std::io::Result<Bytes> {
        let rest = Bytes::from(std::mem::take(&mut self.buffer));
        let Some(mut upload) = self.upload.take() else {
            let (store, path, body) = (self.store.clone(), self.path.clone(), rest.clone());
            // Created, never replacing (as a local file is created new).
            let create = object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            };
            crate::s3::block_on(async move {
                store.put_opts(&path, PutPayload::from(body), create).await
            })
            .map_err(other)?;
            return Ok(rest);
        };
        if !rest.is_empty() {
            self.parts.push_back(start_part(&mut upload, rest.clone()));
        }
        let mut failure = None;
        for part in std::mem::take(&mut self.parts) {
            if let Err(e) = crate::s3::join(part) {
                failure.get_or_insert(e);
            }
        }
        let done = crate::s3::block_on(async move {
            let done = match failure {
                Some(e) => Err(e),
                None => upload.complete().await.map(drop),
            };
            if done.is_err() {
                let _ = upload.abort().await;
            }
            done
        });
        done.map_err(other)?;
        let tail = if rest.len() as u64 >= DATA_FILE_TAIL_BYTES {
            rest
        } else {
            let mut tail = Vec::with_capacity(self.last.len() + rest.len());
            tail.extend_from_slice(&self.last);
            tail.extend_from_slice(&rest);
            Bytes::from(tail)
        };
        Ok(tail)
    }
}

impl Drop for S3Sink {
    /// An upload never finished is aborted (best effort, not waited for).
    fn drop(&mut self) {
        for part in self.parts.drain(..) {
            part.abort();
        }
        if let Some(mut upload) = self.upload.take() {
            drop(crate::s3::spawn(async move { upload.abort().await }));
        }
    }
}

impl NewDataFile {
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Copies a whole file in (the fastest way each store has).
    pub fn copy_from(&mut self, source: &mut File) -> std::io::Result<u64> {
        let copied = match self.sink.as_mut().ok_or_else(finished)? {
            Sink::Local { file, .. } => std::io::copy(source, file)?,
            Sink::S3(s3) => s3.copy_from(source)?,
        };
        self.size += copied;
        Ok(copied)
    }

    /// Makes the file durable (fsynced locally; its PUT or upload completed on S3).
    pub fn finish(mut self) -> Result<FinishedDataFile, WarehouseError> {
        let failed = |e: std::io::Error| WarehouseError::Io {
            path: self.location.clone(),
            message: e.to_string(),
        };
        let (local, tail) = match self.sink.take().ok_or_else(finished).map_err(failed)? {
            Sink::Local { file, path } => {
                let done = file.sync_all().and_then(|()| local_tail(&file, self.size));
                match done {
                    Ok(tail) => (Some(path), tail),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        return Err(failed(e));
                    }
                }
            }
            Sink::S3(mut s3) => (None, s3.finish().map_err(failed)?),
        };
        Ok(FinishedDataFile {
            location: std::mem::take(&mut self.location),
            size: self.size,
            local,
            tail,
        })
    }
}

fn finished() -> std::io::Error {
    std::io::Error::other("the data file is already finished")
}

/// The last bytes of a local file of `size` bytes.
fn local_tail(file: &File, size: u64) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let len = size.min(DATA_FILE_TAIL_BYTES);
    let mut tail = vec![0u8; len as usize];
    file.read_exact_at(&mut tail, size - len)?;
    Ok(Bytes::from(tail))
}

impl Write for NewDataFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.sink.as_mut().ok_or_else(finished)? {
            Sink::Local { file, .. } => file.write(buf)?,
            Sink::S3(s3) => s3.write(buf)?,
        };
        self.size += n as u64;
        Ok(n)
    }

    /// Nothing to do: a file is made durable by `finish`, and an S3 part is sent when full.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for NewDataFile {
    /// A file never finished is removed (a local one; an S3 upload is aborted by its sink).
    fn drop(&mut self) {
        if let Some(Sink::Local { path, .. }) = &self.sink {
            let _ = std::fs::remove_file(path);
        }
    }
}
