//! The Warehouse (DESIGN §3): the one place through which the server reads and writes
//! files. Today a local folder; a location is a `file://` URL under its root, and any
//! location that resolves outside the root is refused before anything is touched.
//!
//! Metadata files are written durably before the ref commit that points at them: under a
//! temporary name, fsynced, renamed into place, then the directory is fsynced. A file is
//! never overwritten (metadata files are immutable; their names carry a UUID).
//!
//! Table locations are `<root>/<namespace levels>/<name>-<uuid>`, each level escaped so
//! that no name can form `..`, a separator or a control character on disk.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    /// The location is not one the server may touch; nothing was read or written.
    #[error("location {location:?} is outside the warehouse ({why})")]
    Outside { location: String, why: &'static str },
    #[error("warehouse I/O failed on {path}: {message}")]
    Io { path: String, message: String },
}

/// A durability step of a metadata write, reported to a hook (tests of barrier order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseEvent {
    /// The new file's contents are on the device (its fsync returned).
    FileSynced,
    /// The rename into place is on the device (the directory's fsync returned).
    DirectorySynced,
}

/// Observes a warehouse's durability steps.
pub type WarehouseHook = Arc<dyn Fn(WarehouseEvent) + Send + Sync>;

#[derive(Clone)]
pub struct Warehouse {
    root: PathBuf,
    hook: Option<WarehouseHook>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("root", &self.root)
            .finish()
    }
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse folder.
    pub fn open(root: &Path) -> Result<Warehouse, WarehouseError> {
        fs::create_dir_all(root).map_err(|e| io(root, &e))?;
        let root = fs::canonicalize(root).map_err(|e| io(root, &e))?;
        Ok(Warehouse { root, hook: None })
    }

    /// The same warehouse, reporting its durability steps to `hook`.
    pub fn with_hook(mut self, hook: WarehouseHook) -> Warehouse {
        self.hook = Some(hook);
        self
    }

    fn report(&self, event: WarehouseEvent) {
        if let Some(h) = &self.hook {
            h(event);
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL of the warehouse root.
    pub fn root_url(&self) -> String {
        format!("file://{}", self.root.display())
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
            url.push_str(&escape(level));
        }
        url.push('/');
        url.push_str(&escape(name));
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

    /// The local path of a location, refused unless it lies strictly inside the root.
    pub fn resolve(&self, location: &str) -> Result<PathBuf, WarehouseError> {
        let outside = |why| WarehouseError::Outside {
            location: location.chars().take(200).collect(),
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
        if !path.starts_with(&self.root) || path == self.root {
            return Err(outside("it is not under the warehouse root"));
        }
        Ok(path.to_owned())
    }

    /// Reads a whole file at a location inside the warehouse.
    pub fn read(&self, location: &str) -> Result<Vec<u8>, WarehouseError> {
        let path = self.resolve(location)?;
        fs::read(&path).map_err(|e| io(&path, &e))
    }

    /// True when a file exists at a location inside the warehouse.
    pub fn exists(&self, location: &str) -> Result<bool, WarehouseError> {
        Ok(self.resolve(location)?.exists())
    }

    /// Writes a new file durably: temp name, fsync, rename, directory fsync. Refuses to
    /// replace an existing file.
    pub fn write_new(&self, location: &str, bytes: &[u8]) -> Result<(), WarehouseError> {
        let path = self.resolve(location)?;
        let dir = path.parent().ok_or_else(|| WarehouseError::Outside {
            location: location.to_owned(),
            why: "it has no parent folder",
        })?;
        fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        if path.exists() {
            return Err(WarehouseError::Io {
                path: path.display().to_string(),
                message: "a file is already there; metadata files are never replaced".to_owned(),
            });
        }
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            uuid::Uuid::now_v7()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            self.report(WarehouseEvent::FileSynced);
            fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()?;
            self.report(WarehouseEvent::DirectorySynced);
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(&path, &e)
        })
    }
}

fn io(path: &Path, e: &std::io::Error) -> WarehouseError {
    WarehouseError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Escapes one name for use as one path segment: ASCII letters, digits, `_` and `-` stay;
/// everything else (and a leading `.`) becomes `%XX`, so no segment is `.`, `..`, holds a
/// separator or needs quoting in a URL.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_stay_inside_the_root_whatever_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let loc = w.table_location(["..", "a/b"], ".hidden", "u1");
        assert!(loc.ends_with("/%2E./a%2Fb/%2Ehidden-u1"), "{loc}");
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
    fn a_new_file_is_written_whole_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let loc = format!("{}/t-1/metadata/00000-x.metadata.json", w.root_url());
        w.write_new(&loc, b"{}").unwrap();
        assert_eq!(w.read(&loc).unwrap(), b"{}");
        assert!(w.write_new(&loc, b"[]").is_err());
        assert_eq!(w.read(&loc).unwrap(), b"{}");
        let leftovers: Vec<_> = fs::read_dir(w.root().join("t-1/metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary file is left: {leftovers:?}"
        );
    }
}
