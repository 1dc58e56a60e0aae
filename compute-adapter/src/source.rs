//! The files an import reads (DESIGN §5 imports): uploads staged by the server, and
//! server-side sources under an `--import-root`, which are opened once and confined by the
//! path of the descriptor itself, so that nothing swapped into their path afterwards is
//! read.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One file to import, already on the server's disk.
#[derive(Debug, Clone)]
pub struct ImportFile {
    /// What the user called it (a path or URL), for messages.
    pub name: String,
    pub path: PathBuf,
    /// BLAKE3 of the bytes, hex.
    pub blake3: String,
    pub size: u64,
    /// The (device, inode) the file had when it was hashed, for a file the server reads in
    /// place: every later open must find the same file, or the import fails (a file
    /// swapped or a folder replaced by a link in between is not read).
    pub identity: Option<(u64, u64)>,
    /// A server-side source stays open from its check on: every later read reopens this
    /// descriptor (through `/proc/self/fd`), never the path, so nothing swapped into the
    /// path afterwards can be read.
    pub held: Option<Arc<File>>,
}

pub use crate::limits::SERVER_SOURCES_MAX;

/// Why a server-side source cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{0}: name server-side files by absolute path or file:// URL (other object stores are not configured)"
    )]
    NotAbsolute(String),
    #[error("{name}: cannot open it on the server: {error}")]
    CannotOpen { name: String, error: std::io::Error },
    #[error("{0} is not under any --import-root of this server")]
    Outside(String),
    #[error("{0} is not a file")]
    NotAFile(String),
}

impl ImportFile {
    /// A server-side source (DESIGN §5 imports): opened once, without blocking on a FIFO
    /// or taking a terminal, and then confined by the path of the descriptor itself (what
    /// the kernel opened, symbolic links resolved), so no link swapped in between the check
    /// and the open can point it outside the import roots. Hashed from that descriptor.
    pub fn server_side(
        name: &str,
        path: &Path,
        roots: &[PathBuf],
    ) -> Result<ImportFile, SourceError> {
        ImportFile::server_side_with(name, path, roots, || {})
    }

    /// `server_side` with a hook between the open and the check (tests swap folders there).
    fn server_side_with(
        name: &str,
        path: &Path,
        roots: &[PathBuf],
        between: impl FnOnce(),
    ) -> Result<ImportFile, SourceError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        use std::os::unix::io::AsRawFd;

        if !path.is_absolute() || path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(SourceError::NotAbsolute(name.to_owned()));
        }
        let cannot = |error| SourceError::CannotOpen {
            name: name.to_owned(),
            error,
        };
        let under_a_root = |real: &Path| {
            roots.iter().any(|root| {
                std::fs::canonicalize(root)
                    .is_ok_and(|root| real.starts_with(&root) && real != root)
            })
        };
        // What the path names now, before anything is opened (opening a device can act):
        // a path that leads out is refused without an open. The check that counts is the
        // one on the descriptor, below.
        let named = std::fs::canonicalize(path).map_err(cannot)?;
        if !under_a_root(&named) {
            return Err(SourceError::Outside(name.to_owned()));
        }
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(cannot)?;
        between();
        let real =
            std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(cannot)?;
        if !under_a_root(&real) {
            return Err(SourceError::Outside(name.to_owned()));
        }
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            return Err(SourceError::NotAFile(name.to_owned()));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(&file).map_err(cannot)?;
        Ok(ImportFile {
            name: name.to_owned(),
            path: real,
            blake3: hasher.finalize().to_hex().to_string(),
            size: meta.len(),
            identity: Some((meta.dev(), meta.ino())),
            held: Some(Arc::new(file)),
        })
    }

    /// Opens the file, refusing one that is no longer the file that was hashed. A held
    /// source is reopened through its descriptor (a read of its own, at offset 0).
    pub fn open(&self) -> std::io::Result<File> {
        let file = match &self.held {
            Some(held) => {
                use std::os::unix::io::AsRawFd;
                File::open(format!("/proc/self/fd/{}", held.as_raw_fd()))?
            }
            None => File::open(&self.path)?,
        };
        if let Some(identity) = self.identity {
            use std::os::unix::fs::MetadataExt;
            let m = file.metadata()?;
            if (m.dev(), m.ino()) != identity {
                return Err(std::io::Error::other(
                    "the file changed after it was checked; import it again",
                ));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_side_file_swapped_after_its_check_is_not_read() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"checked").unwrap();
        std::fs::write(&b, b"other").unwrap();
        let m = std::fs::metadata(&a).unwrap();
        let mut file = ImportFile {
            name: "a".to_owned(),
            path: a.clone(),
            blake3: String::new(),
            size: 7,
            identity: Some((m.dev(), m.ino())),
            held: None,
        };
        assert!(file.open().is_ok());
        // Replaced in place by another file (a rename over it, or a link).
        std::fs::rename(&b, &a).unwrap();
        let err = file.open().unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        file.identity = None;
        assert!(
            file.open().is_ok(),
            "uploads are staged by the server: no identity to check"
        );
    }

    /// A server-side source is opened once and confined by what was opened (issue 14,
    /// item 13): a folder swapped for a link to outside the import root between the open and
    /// the check changes nothing, since the check reads the descriptor's own path; and every
    /// later read reopens that descriptor, not the path.
    #[test]
    fn a_server_side_source_is_opened_once_and_confined_by_its_descriptor() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f.csv"), b"secret\n").unwrap();
        let sub = root.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f.csv"), b"id\n1\n").unwrap();
        let roots = vec![root.path().to_owned()];
        let swap = || {
            std::fs::rename(&sub, root.path().join("moved")).unwrap();
            std::os::unix::fs::symlink(outside.path(), &sub).unwrap();
        };
        // The check-then-open order read through the swapped link; open-then-check reads
        // the file it opened, inside the root.
        let file = ImportFile::server_side_with("f.csv", &sub.join("f.csv"), &roots, swap).unwrap();
        assert!(
            file.path
                .starts_with(std::fs::canonicalize(root.path()).unwrap())
        );
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file.open().unwrap(), &mut text).unwrap();
        assert_eq!(text, "id\n1\n");
        // The path now leads outside; reads still reach the file that was checked.
        std::fs::write(root.path().join("moved").join("f.csv"), b"id\n2\n").unwrap();
        let mut again = String::new();
        std::io::Read::read_to_string(&mut file.open().unwrap(), &mut again).unwrap();
        assert_eq!(
            again, "id\n2\n",
            "the held file, not what the path names now"
        );
        // A link that leads outside is refused; so is a folder, and a FIFO (without
        // blocking on it).
        let refused = ImportFile::server_side("f.csv", &sub.join("f.csv"), &roots).unwrap_err();
        assert!(matches!(refused, SourceError::Outside(_)), "{refused}");
        let folder = ImportFile::server_side("moved", &root.path().join("moved"), &roots);
        assert!(
            matches!(folder, Err(SourceError::NotAFile(_))),
            "{folder:?}"
        );
        let fifo = root.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let pipe = ImportFile::server_side("pipe", &fifo, &roots);
        assert!(matches!(pipe, Err(SourceError::NotAFile(_))), "{pipe:?}");
    }
}
