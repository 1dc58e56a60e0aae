//! The project archive a run uploads (DESIGN §7): an uncompressed tar of the project file,
//! `.py`, `.sql` and `requirements.txt` files, read into memory here and never unpacked
//! as it came. Every entry is checked before a byte of it is kept: only regular files and
//! folders, relative paths of plain UTF-8 segments (no `..`, no absolute path, no
//! backslash), bounded in count, path length and total size. A refusal names the entry.

use std::collections::BTreeMap;
use std::io::Read;

use crate::limits::{PROJECT_ARCHIVE_BYTES_MAX, PROJECT_ENTRIES_MAX, PROJECT_PATH_BYTES_MAX};

/// A project's files by path (`/`-separated, relative to the project folder).
pub type ProjectFiles = BTreeMap<String, Vec<u8>>;

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// One entry is refused; `entry` is its path as the archive spells it.
    #[error("the project archive's entry {entry:?} is refused: {why}")]
    Entry { entry: String, why: String },
    /// The archive as a whole.
    #[error("the project archive is refused: {0}")]
    Archive(String),
}

fn refused(entry: &str, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Entry {
        entry: entry.chars().take(PROJECT_PATH_BYTES_MAX).collect(),
        why: why.into(),
    }
}

/// Reads an archive's files, checking every entry.
pub fn read(bytes: &[u8]) -> Result<ProjectFiles, ArchiveError> {
    if bytes.len() > PROJECT_ARCHIVE_BYTES_MAX {
        return Err(ArchiveError::Archive(format!(
            "it is {} bytes, more than a run takes (PROJECT_ARCHIVE_BYTES_MAX, {PROJECT_ARCHIVE_BYTES_MAX}); a project is code, not data",
            bytes.len()
        )));
    }
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Archive(format!("it is not a tar archive: {e}")))?;
    let mut files = ProjectFiles::new();
    let mut total = 0usize;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry
            .map_err(|e| ArchiveError::Archive(format!("entry {n} cannot be read as tar: {e}")))?;
        if n >= PROJECT_ENTRIES_MAX {
            return Err(ArchiveError::Archive(format!(
                "it has more than {PROJECT_ENTRIES_MAX} entries (PROJECT_ENTRIES_MAX)"
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = clean_path(&raw).map_err(|why| refused(&shown, why))?;
        use tar::EntryType;
        match entry.header().entry_type() {
            EntryType::Directory => continue,
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Symlink => return Err(refused(&shown, "it is a symbolic link")),
            EntryType::Link => return Err(refused(&shown, "it is a hard link")),
            EntryType::Char | EntryType::Block => {
                return Err(refused(&shown, "it is a device"));
            }
            EntryType::Fifo => return Err(refused(&shown, "it is a named pipe")),
            other => {
                return Err(refused(
                    &shown,
                    format!("its type ({other:?}) is not a regular file or a folder"),
                ));
            }
        }
        let Some(path) = path else {
            return Err(refused(&shown, "a file needs a name"));
        };
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        total = total.saturating_add(size);
        if total > PROJECT_ARCHIVE_BYTES_MAX {
            return Err(ArchiveError::Archive(format!(
                "its files hold more than {PROJECT_ARCHIVE_BYTES_MAX} bytes (PROJECT_ARCHIVE_BYTES_MAX)"
            )));
        }
        let mut data = Vec::with_capacity(size.min(bytes.len()));
        (&mut entry)
            .take(size as u64)
            .read_to_end(&mut data)
            .map_err(|e| refused(&shown, format!("it cannot be read: {e}")))?;
        if files.insert(path, data).is_some() {
            return Err(refused(&shown, "the archive holds it twice"));
        }
    }
    Ok(files)
}

/// A safe relative path: `Some("a/b.sql")`, `None` for the archive's root itself.
fn clean_path(raw: &[u8]) -> Result<Option<String>, String> {
    if raw.len() > PROJECT_PATH_BYTES_MAX {
        return Err(format!(
            "its path is longer than {PROJECT_PATH_BYTES_MAX} bytes (PROJECT_PATH_BYTES_MAX)"
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "its path is not UTF-8".to_owned())?;
    if text.starts_with('/') {
        return Err("its path is absolute".to_owned());
    }
    if text.contains('\\') {
        return Err("its path has a backslash".to_owned());
    }
    if text.chars().any(char::is_control) {
        return Err("its path has a control character".to_owned());
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its path leaves the project folder (`..`)".to_owned()),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Packs files into an archive (what `floe run` uploads; tests build hostile ones by hand).
pub fn pack(files: &ProjectFiles) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, data.as_slice())
            .expect("writing to memory does not fail");
    }
    builder
        .into_inner()
        .expect("writing to memory does not fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of one raw entry, its header written by hand (so a hostile path is kept
    /// as it is).
    fn one(path: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
        }
        header.set_size(data.len() as u64);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
        out
    }

    #[test]
    fn a_project_round_trips() {
        let files = ProjectFiles::from([
            (
                "bauplan_project.yml".to_owned(),
                b"project: {id: x}".to_vec(),
            ),
            ("models/a.sql".to_owned(), b"select 1".to_vec()),
        ]);
        assert_eq!(read(&pack(&files)).unwrap(), files);
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        let cases = [
            ("/etc/x.sql", tar::EntryType::Regular, "absolute"),
            ("../x.sql", tar::EntryType::Regular, ".."),
            ("a/../../x.sql", tar::EntryType::Regular, ".."),
            ("link.sql", tar::EntryType::Symlink, "symbolic link"),
            ("hard.sql", tar::EntryType::Link, "hard link"),
            ("dev", tar::EntryType::Char, "device"),
            ("blk", tar::EntryType::Block, "device"),
            ("fifo", tar::EntryType::Fifo, "named pipe"),
            ("a\\b.sql", tar::EntryType::Regular, "backslash"),
        ];
        for (path, kind, why) in cases {
            let err = read(&one(path, kind, b"x")).unwrap_err();
            let ArchiveError::Entry { entry, why: said } = &err else {
                panic!("{path}: {err}");
            };
            assert_eq!(entry, path);
            assert!(said.contains(why), "{path}: {said}");
        }
    }

    #[test]
    fn bounds_are_kept() {
        let long = "a/".repeat(300) + "x.sql";
        let files = ProjectFiles::from([(long, b"x".to_vec())]);
        assert!(
            read(&pack(&files))
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        let many: ProjectFiles = (0..=PROJECT_ENTRIES_MAX)
            .map(|i| (format!("f{i}.sql"), Vec::new()))
            .collect();
        assert!(
            read(&pack(&many))
                .unwrap_err()
                .to_string()
                .contains("entries")
        );
        assert!(read(b"not a tar at all, and not 512 bytes").is_err());
    }
}
