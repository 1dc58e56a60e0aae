//! What floe does around sled's own files when it opens a store: the snapshot sled left
//! unfinished, and the size of sled's cache.

use std::path::Path;

use crate::backend::{BackendError, BackendResult};

/// sled's page cache: its default (1 GiB), or less on a machine that allows less. sled
/// (0.34.7) lowers a cache above the cgroup (v1) memory limit, the address-space limit or
/// the physical memory by copying its configuration; asking for no more than each of them
/// (read from `/proc`: the total memory there is at most the physical) keeps it from
/// copying (see `open_inner`).
pub(super) fn sled_cache_bytes() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let number = |text: &str| text.trim().parse::<u64>().ok();
    let cgroup = number(&read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    let limits = read("/proc/self/limits");
    let address_space = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))
        .and_then(|l| number(l.split_whitespace().next().unwrap_or("")));
    let meminfo = read("/proc/meminfo");
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().strip_suffix("kB"))
        .and_then(number)
        .map(|kib| kib.saturating_mul(1024));
    [cgroup, address_space, memory]
        .into_iter()
        .flatten()
        .filter(|limit| *limit > 0)
        .fold(1 << 30, u64::min)
}

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
