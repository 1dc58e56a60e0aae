//! Run files every server can read when servers share the catalog: a run's log (kept
//! when the run ends) and its code snapshot (content-addressed), stored in chunks of
//! `RUN_ANSWER_CHUNK_BYTES` under `run-file/<kind>/<name>/<n>` with a manifest (length,
//! chunks, BLAKE3) at `run-file/<kind>/<name>`. The executing server keeps its own copies
//! on disk as before; these are what another server answers `logs` and `code` with.
//!
//! While a run lives, its executing server shares its log as it grows (`share_live_log`,
//! a manifest marked `live`; only the chunks from the last one shared on are written),
//! so a follower on another server streams it (`shared_log_since`); the share made when
//! the run ended is the final one. A log only grows, so a chunk rewritten under a
//! reader holds what the reader's manifest promised and more.

use serde::{Deserialize, Serialize};

use crate::auth::{Action, Target};
use crate::error::{CatalogError, CatalogResult};
use crate::limits::{RUN_ANSWER_BYTES_MAX, RUN_ANSWER_CHUNK_BYTES, SHARED_CODE_SWEEP_MAX};
use crate::{Catalog, Principal};

const FILE_PREFIX: &str = "run-file/";

/// Chunks a file has at most.
const CHUNKS_MAX: u32 = RUN_ANSWER_BYTES_MAX.div_ceil(RUN_ANSWER_CHUNK_BYTES) as u32;

/// A run file's kind: its log (named by the run id) or its code (named by its BLAKE3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFile {
    Log,
    Code,
}

impl RunFile {
    fn as_str(self) -> &'static str {
        match self {
            RunFile::Log => "log",
            RunFile::Code => "code",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    bytes: u64,
    chunks: u32,
    blake3: String,
    /// A log shared while its run lives: more will come. Absent in a final share (and in
    /// every manifest written before live shares).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    live: bool,
    /// When it was written (ms): a code snapshot shared again is young again, so a sweep
    /// does not take it from the run about to name it. 0 in manifests written before.
    #[serde(default)]
    at_ms: i64,
    /// The share's generation, which names its chunks: each share of a code snapshot
    /// writes chunks of its own, so a sweep deleting an older share's chunks never takes
    /// those of a share made meanwhile. Empty for logs (one writer each, in place).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    generation: String,
}

/// A part of a shared log, from an offset to what its manifest says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPart {
    pub bytes: Vec<u8>,
    /// The log's length once this part is read.
    pub end: u64,
    /// The executing server shares more while the run lives; false once the share made
    /// when it ended is read.
    pub live: bool,
}

fn manifest_key(kind: RunFile, name: &str) -> Vec<u8> {
    format!("{FILE_PREFIX}{}/{name}", kind.as_str()).into_bytes()
}

/// Chunk `n` of a file's share `generation` (`""`: a log, or a share written before
/// generations: `<name>/<n>`; else `<name>/<generation>/<n>`).
fn chunk_key(kind: RunFile, name: &str, generation: &str, n: u32) -> Vec<u8> {
    match generation {
        "" => format!("{FILE_PREFIX}{}/{name}/{n:05}", kind.as_str()).into_bytes(),
        g => format!("{FILE_PREFIX}{}/{name}/{g}/{n:05}", kind.as_str()).into_bytes(),
    }
}

impl Catalog {
    /// Keeps a run file for the other servers (on a store no other server shares,
    /// nothing to do). At most `RUN_ANSWER_BYTES_MAX`: a longer log keeps its start.
    pub fn share_run_file(&self, kind: RunFile, name: &str, bytes: &[u8]) -> CatalogResult<()> {
        self.share_final(kind, name, bytes, 0)
    }

    /// The final share of a run's log, whose first `shared` bytes were shared live: the
    /// chunks they fill entirely are not written again.
    pub fn share_final_log(&self, run: &str, bytes: &[u8], shared: usize) -> CatalogResult<()> {
        self.share_final(RunFile::Log, run, bytes, shared / RUN_ANSWER_CHUNK_BYTES)
    }

    /// Shares a live run's log as it has grown: `tail` is the log from byte `start` (a
    /// chunk's start: the chunks before it were shared already) to its end now, and the
    /// manifest says more will come (it carries no hash: nothing reads a live log whole
    /// to check it). The executing server calls it while the run lives, and never after
    /// the final share.
    pub fn share_live_log(&self, run: &str, start: usize, tail: &[u8]) -> CatalogResult<()> {
        if !self.store.is_shared() || start >= RUN_ANSWER_BYTES_MAX {
            return Ok(());
        }
        if !start.is_multiple_of(RUN_ANSWER_CHUNK_BYTES) {
            return Err(CatalogError::Invalid(format!(
                "a live log is shared from a chunk's start, not from byte {start}"
            )));
        }
        let tail = &tail[..tail.len().min(RUN_ANSWER_BYTES_MAX - start)];
        let first = start / RUN_ANSWER_CHUNK_BYTES;
        self.put_chunks(RunFile::Log, run, "", first, tail)?;
        let end = start + tail.len();
        self.put_manifest(
            RunFile::Log,
            run,
            &Manifest {
                bytes: end as u64,
                chunks: u32::try_from(end.div_ceil(RUN_ANSWER_CHUNK_BYTES)).unwrap_or(u32::MAX),
                blake3: String::new(),
                live: true,
                at_ms: self.now_ms(),
                generation: String::new(),
            },
        )
    }

    /// Writes the chunks of `bytes` from chunk `from` on, then the manifest with its hash.
    fn share_final(
        &self,
        kind: RunFile,
        name: &str,
        bytes: &[u8],
        from: usize,
    ) -> CatalogResult<()> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let bytes = &bytes[..bytes.len().min(RUN_ANSWER_BYTES_MAX)];
        // A log is rewritten in place from `from`; a code snapshot is shared anew, in
        // chunks of its own generation, and the share it replaces is removed after.
        let (from, generation, replaced) = match kind {
            RunFile::Log => (
                from.min(bytes.len() / RUN_ANSWER_CHUNK_BYTES),
                String::new(),
                None,
            ),
            RunFile::Code => {
                let old = self.store.meta_get(&manifest_key(kind, name))?;
                let old = old.and_then(|m| serde_json::from_slice::<Manifest>(&m).ok());
                (0, self.new_uuid().simple().to_string(), old)
            }
        };
        self.put_chunks(
            kind,
            name,
            &generation,
            from,
            &bytes[from * RUN_ANSWER_CHUNK_BYTES..],
        )?;
        self.put_manifest(
            kind,
            name,
            &Manifest {
                bytes: bytes.len() as u64,
                chunks: u32::try_from(bytes.len().div_ceil(RUN_ANSWER_CHUNK_BYTES))
                    .unwrap_or(u32::MAX),
                blake3: blake3::hash(bytes).to_hex().to_string(),
                live: false,
                at_ms: self.now_ms(),
                generation,
            },
        )?;
        if let Some(old) = replaced {
            self.delete_chunks(kind, name, &old)?;
        }
        Ok(())
    }

    /// Deletes the chunks a manifest names (its generation's).
    fn delete_chunks(&self, kind: RunFile, name: &str, manifest: &Manifest) -> CatalogResult<()> {
        for n in 0..manifest.chunks.min(CHUNKS_MAX) {
            let key = chunk_key(kind, name, &manifest.generation, n);
            if let Some(bytes) = self.store.meta_get(&key)? {
                self.store.meta_cas(&key, Some(&bytes), None)?;
            }
        }
        Ok(())
    }

    /// Writes `bytes` as the chunks from chunk `first` on.
    fn put_chunks(
        &self,
        kind: RunFile,
        name: &str,
        generation: &str,
        first: usize,
        bytes: &[u8],
    ) -> CatalogResult<()> {
        for (i, chunk) in bytes.chunks(RUN_ANSWER_CHUNK_BYTES).enumerate() {
            let n = u32::try_from(first + i).unwrap_or(u32::MAX);
            self.store
                .meta_put(&chunk_key(kind, name, generation, n), chunk)?;
        }
        Ok(())
    }

    fn put_manifest(&self, kind: RunFile, name: &str, manifest: &Manifest) -> CatalogResult<()> {
        let text = serde_json::to_vec(manifest).map_err(|e| {
            CatalogError::Invalid(format!("a run file's manifest does not serialize: {e}"))
        })?;
        self.store.meta_put(&manifest_key(kind, name), &text)?;
        Ok(())
    }

    /// A run file another server kept, if `principal` may read run `run` (whose file it
    /// is) and it is there, checked against its length and hash.
    pub fn shared_run_file(
        &self,
        principal: &Principal,
        run: &str,
        kind: RunFile,
        name: &str,
    ) -> CatalogResult<Option<Vec<u8>>> {
        if self.run_record(principal, run)?.is_none() {
            return Ok(None);
        }
        let Some(text) = self.store.meta_get(&manifest_key(kind, name))? else {
            return Ok(None);
        };
        let damaged = || {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the stored {} {name} is damaged",
                kind.as_str()
            )))
        };
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|_| damaged())?;
        if manifest.bytes > RUN_ANSWER_BYTES_MAX as u64 {
            return Err(damaged());
        }
        let mut bytes = Vec::with_capacity(manifest.bytes as usize);
        for n in 0..manifest.chunks {
            let chunk = self
                .store
                .meta_get(&chunk_key(kind, name, &manifest.generation, n))?
                .ok_or_else(damaged)?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != manifest.bytes
            || blake3::hash(&bytes).to_hex().as_str() != manifest.blake3
        {
            return Err(damaged());
        }
        Ok(Some(bytes))
    }

    /// Run `run`'s shared log from byte `offset` to what its manifest says now, if
    /// `principal` may read the run and a log is shared. A final log read from its start
    /// is checked against its hash; a part is not (a live log has none: its chunks grow
    /// under the reader, and a part is what its manifest promised of them), so what a
    /// follower streams is checked only in length.
    pub fn shared_log_since(
        &self,
        principal: &Principal,
        run: &str,
        offset: u64,
    ) -> CatalogResult<Option<LogPart>> {
        if self.run_record(principal, run)?.is_none() {
            return Ok(None);
        }
        let Some(text) = self.store.meta_get(&manifest_key(RunFile::Log, run))? else {
            return Ok(None);
        };
        let damaged = || {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the stored log {run} is damaged"
            )))
        };
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|_| damaged())?;
        if manifest.bytes > RUN_ANSWER_BYTES_MAX as u64 {
            return Err(damaged());
        }
        let chunk = RUN_ANSWER_CHUNK_BYTES as u64;
        let mut bytes = Vec::new();
        let mut at = offset - offset % chunk;
        while at < manifest.bytes {
            let n = u32::try_from(at / chunk).map_err(|_| damaged())?;
            let stored = self
                .store
                .meta_get(&chunk_key(RunFile::Log, run, &manifest.generation, n))?
                .ok_or_else(damaged)?;
            // What this manifest promised of the chunk; a live chunk may hold more.
            let want = (manifest.bytes - at).min(chunk) as usize;
            let part = stored.get(..want).ok_or_else(damaged)?;
            let skip = offset.saturating_sub(at).min(want as u64) as usize;
            bytes.extend_from_slice(&part[skip..]);
            at += chunk;
        }
        // A final log read whole is checked as `shared_run_file` checks it.
        if offset == 0
            && !manifest.live
            && blake3::hash(&bytes).to_hex().as_str() != manifest.blake3
        {
            return Err(damaged());
        }
        Ok(Some(LogPart {
            bytes,
            end: manifest.bytes.max(offset),
            live: manifest.live,
        }))
    }

    /// Removes the shared code snapshots no run names any more (`keep`: the hashes the
    /// run records name) and shared at least `grace_ms` ago, as the sweep of a server's
    /// own run files removes its copies. Returns how many went. At most
    /// `SHARED_CODE_SWEEP_MAX` manifests are looked at per call, one statement each
    /// (their chunks are skipped, not read); the next call goes on from there, and starts
    /// over once it reached the end.
    pub fn sweep_shared_code(
        &self,
        principal: &Principal,
        keep: &std::collections::HashSet<String>,
        grace_ms: i64,
    ) -> CatalogResult<usize> {
        self.authorize(principal, Action::Maintain, Target::default())?;
        if !self.store.is_shared() {
            return Ok(0);
        }
        let prefix = format!("{FILE_PREFIX}{}/", RunFile::Code.as_str()).into_bytes();
        let now = self.now_ms();
        let mut removed = 0;
        let mut guard = self.maintenance.lock();
        let after = &mut guard.shared_code;
        for _ in 0..SHARED_CODE_SWEEP_MAX {
            let next = self.store.meta_scan(&prefix, after.as_deref(), 1)?;
            let Some((key, value)) = next.into_iter().next() else {
                *after = None;
                break;
            };
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let hash = name.split('/').next().unwrap_or_default();
            // Past this name's chunks (`<hash>/...`: '/' sorts below every name's
            // characters, 0xff above them).
            *after = Some([&prefix[..], hash.as_bytes(), b"/\xff"].concat());
            if name.contains('/') {
                // Chunks before their manifest: a first share under way (or one a sweep
                // stopped removing midway). Left alone.
                continue;
            }
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&value) else {
                continue;
            };
            // A manifest without its time (a server before this one wrote it, perhaps
            // a moment ago during an upgrade) is left alone: its age is unknown.
            if keep.contains(&name)
                || manifest.at_ms == 0
                || now.saturating_sub(manifest.at_ms) < grace_ms
            {
                continue;
            }
            // The manifest first, as read: one shared again meanwhile stays, and a share
            // made from now on writes chunks of its own generation, never these.
            if self.store.meta_cas(&key, Some(&value), None)? {
                self.delete_chunks(RunFile::Code, &name, &manifest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes run `id`'s shared log (retention forgets the run).
    pub(super) fn delete_shared_log(&self, id: &str) -> CatalogResult<()> {
        let prefix = manifest_key(RunFile::Log, id);
        for (key, value) in self
            .store
            .meta_scan(&prefix, None, crate::limits::META_PAGE_MAX)?
        {
            // The manifest and its chunks (`<id>/<n>`), not another run's whose id starts so.
            let rest = &key[prefix.len()..];
            if rest.is_empty() || rest.starts_with(b"/") {
                self.store.meta_cas(&key, Some(&value), None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floe_commits::{MemoryBackend, RefSpec, Store, SystemClock};

    use super::*;
    use crate::RunKind;

    /// A live log shared as it grows (across a chunk's end) reads from any offset; the
    /// final share ends it and is checked whole; a reader never gets more than its
    /// manifest promised, even from a chunk that grew since.
    #[test]
    fn a_live_log_is_read_as_it_grows_then_ends_with_the_final_share() {
        let store = Arc::new(
            Store::open(Arc::new(MemoryBackend::shared()), Arc::new(SystemClock)).unwrap(),
        );
        let catalog = Catalog::new(store.clone());
        let who = Principal::anonymous();
        let main = RefSpec::parse("main").unwrap();
        let run = catalog
            .queue_run(&who, &main, RunKind::Run, "a run".to_owned(), None)
            .unwrap();
        let read = |offset| {
            catalog
                .shared_log_since(&who, &run.id, offset)
                .unwrap()
                .expect("shared")
        };
        assert_eq!(catalog.shared_log_since(&who, &run.id, 0).unwrap(), None);
        let mut log = b"queued\n".to_vec();
        catalog.share_live_log(&run.id, 0, &log).unwrap();
        let first = read(0);
        assert_eq!(
            (first.bytes.as_slice(), first.end, first.live),
            (&log[..], 7, true)
        );
        // Grown past the first chunk's end: only what is new is read from the end.
        let before = log.len();
        log.extend(std::iter::repeat_n(b'x', RUN_ANSWER_CHUNK_BYTES + 10));
        // (From the start of the chunk it shared last, the first.)
        catalog.share_live_log(&run.id, 0, &log).unwrap();
        let next = read(first.end);
        assert_eq!(next.bytes, log[before..]);
        assert_eq!(next.end, log.len() as u64);
        // The last chunk grows under a reader of the older manifest: the reader gets
        // what that manifest promised, not the chunk's new tail.
        let promised = store
            .meta_get(&manifest_key(RunFile::Log, &run.id))
            .unwrap()
            .unwrap();
        log.extend_from_slice(b"more\n");
        let last = RUN_ANSWER_CHUNK_BYTES;
        store
            .meta_put(&chunk_key(RunFile::Log, &run.id, "", 1), &log[last..])
            .unwrap();
        let shown = read(0);
        assert_eq!(
            shown.bytes,
            log[..log.len() - 5],
            "as {:?} promised",
            String::from_utf8_lossy(&promised)
        );
        // The final share: read to its end, the log is over, and whole it is checked.
        log.extend_from_slice(b"ended\n");
        catalog
            .share_final_log(&run.id, &log, next.end as usize)
            .unwrap();
        let rest = read(next.end);
        assert_eq!(rest.bytes, log[next.end as usize..]);
        assert!(!rest.live);
        let end = read(rest.end);
        assert!(end.bytes.is_empty() && !end.live);
        assert_eq!(read(0).bytes, log);
        let mut tampered = log[..RUN_ANSWER_CHUNK_BYTES].to_vec();
        tampered[0] = b'Q';
        store
            .meta_put(&chunk_key(RunFile::Log, &run.id, "", 0), &tampered)
            .unwrap();
        assert!(
            catalog.shared_log_since(&who, &run.id, 0).is_err(),
            "checked whole"
        );
    }

    /// Shared code snapshots go when no run names them and they are past the grace; one
    /// a run names, or one shared again just now, stays.
    #[test]
    fn shared_code_no_run_names_is_swept_after_its_grace() {
        let store = Arc::new(
            Store::open(Arc::new(MemoryBackend::shared()), Arc::new(SystemClock)).unwrap(),
        );
        let catalog = Catalog::new(store.clone());
        let who = Principal::anonymous();
        let big = vec![7u8; RUN_ANSWER_CHUNK_BYTES + 1];
        for name in ["named", "young", "gone"] {
            catalog.share_run_file(RunFile::Code, name, &big).unwrap();
        }
        let keep = std::collections::HashSet::from(["named".to_owned()]);
        // Within the grace, nothing goes.
        assert_eq!(
            catalog.sweep_shared_code(&who, &keep, 3_600_000).unwrap(),
            0
        );
        let left = |name: &str| {
            store
                .meta_scan(&manifest_key(RunFile::Code, name), None, 10)
                .unwrap()
                .len()
        };
        assert_eq!(left("gone"), 3, "a manifest and two chunks");
        let keep_young = std::collections::HashSet::from(["named".to_owned(), "young".to_owned()]);
        assert_eq!(catalog.sweep_shared_code(&who, &keep_young, 0).unwrap(), 1);
        assert_eq!(left("gone"), 0, "its manifest and chunks are gone");
        assert_eq!(left("named"), 3);
        assert_eq!(left("young"), 3);
        // Shared again: new chunks of its own, the old ones gone, and it reads whole.
        let other = vec![8u8; 10];
        catalog
            .share_run_file(RunFile::Code, "named", &other)
            .unwrap();
        assert_eq!(left("named"), 2, "a manifest and its one new chunk");
        let run = catalog
            .queue_run(
                &who,
                &RefSpec::parse("main").unwrap(),
                RunKind::Run,
                "r".to_owned(),
                None,
            )
            .unwrap();
        let read = catalog.shared_run_file(&who, &run.id, RunFile::Code, "named");
        assert_eq!(read.unwrap(), Some(other));
    }
}
