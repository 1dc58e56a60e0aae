//! What floe does around sled's own files when it opens a store: the snapshot sled left
//! unfinished.

use std::path::Path;

use crate::backend::{BackendError, BackendResult};

/// Removes the snapshot files sled was still writing when its process died.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it to
/// `snap.<lsn>`, removing the older snapshot only after the rename. But on open it reads
/// the greatest `snap.*` name, which is the unfinished `.generating` file when one is
/// left: a SIGKILL in the middle of that write makes the store refuse to open ("Read
/// corrupted data at file offset None"; spacejam/sled#1527). Such a file is never the
/// only record of anything: the previous snapshot is still in place, and the log it
/// summarises is replayed from that snapshot's position, as sled does with no snapshot.
pub(super) fn discard_unfinished_snapshots(dir: &Path) -> BackendResult<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BackendError::read(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| {
                BackendError::read(format!(
                    "cannot remove the unfinished sled snapshot {}: {e}",
                    entry.path().display()
                ))
            })?;
        }
    }
    Ok(())
}
