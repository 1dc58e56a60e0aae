//! Runs' scratch folders: `<runs>/scratch/<id>/`, on tmpfs when the host has one, and
//! what a stopped server left there cleared at the next start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{cgroup, worker};

/// A runs folder's scratch folders live in `<dir>/scratch`. When the host has a tmpfs at
/// `/dev/shm` with room (`SHM_FREE_MIN`), that is a link to a folder there (Arrow files
/// memory-mapped from memory): made by this server's user with mode 0700 under a name of
/// its own, and used again at the next start only if it still is exactly that.
pub(super) fn scratch_root(dir: &Path) -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let root = dir.join("scratch");
    let ours = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.is_dir()
                && m.uid() == nix::unistd::geteuid().as_raw()
                && m.permissions().mode() & 0o777 == 0o700
        })
    };
    if let Ok(target) = std::fs::read_link(&root)
        && target.starts_with("/dev/shm")
        && ours(&target)
    {
        return root;
    }
    let shm = Path::new("/dev/shm");
    let room = nix::sys::statvfs::statvfs(shm)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0);
    if room < crate::limits::SHM_FREE_MIN || std::fs::create_dir_all(dir).is_err() {
        return on_disk(root);
    }
    let seed = format!(
        "{}\0{}\0{:?}",
        dir.display(),
        std::process::id(),
        std::time::SystemTime::now()
    );
    let name = blake3::hash(seed.as_bytes()).to_hex();
    let target = shm.join(format!("floe-scratch-{}", &name[..24]));
    // `create`, not `create_all`: a folder someone else made first is not taken.
    if std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&target)
        .is_err()
        || !ours(&target)
    {
        return on_disk(root);
    }
    // A folder or link of an earlier start goes (no run is live at a start).
    if std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir_all(&root);
    } else if let Ok(old) = std::fs::read_link(&root) {
        if old.starts_with("/dev/shm") && ours(&old) {
            let _ = std::fs::remove_dir_all(&old);
        }
        let _ = std::fs::remove_file(&root);
    }
    if std::os::unix::fs::symlink(&target, &root).is_ok() {
        return root;
    }
    let _ = std::fs::remove_dir(&target);
    on_disk(root)
}

/// `<dir>/scratch` as a folder of its own on disk (a link of an earlier start goes).
fn on_disk(root: PathBuf) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::symlink_metadata(&root).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&root);
    }
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root);
    root
}

/// Removes every scratch folder of the runs folder `dir` (the contents of `<dir>/scratch`,
/// which may be a link to tmpfs: the link stays), after stopping the workers a stopped
/// server left running.
pub fn clear_scratch(dir: &Path) {
    worker::stop_leftovers(&dir.join("scratch"));
    cgroup::sweep();
    if let Ok(entries) = std::fs::read_dir(dir.join("scratch")) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Times a run's scratch folder is removed before the removal gives up (about 1.2 s in all).
const REMOVE_ATTEMPTS: u32 = 8;

/// Removes a run's scratch folder as the run ends. Its workers were killed a moment ago,
/// and a killed process may still write its last files there (the kill is asynchronous):
/// a removal that fails is tried again, and one that fails for good says so in the
/// server's log (the next start clears the folder).
pub(super) async fn remove_run_scratch(scratch: &Path) {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir_all(scratch) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt + 1 >= REMOVE_ATTEMPTS => {
                tracing::warn!(folder = %scratch.display(), error = %e, "a run's scratch folder could not be removed; the next start clears it");
                return;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
        attempt += 1;
    }
}
