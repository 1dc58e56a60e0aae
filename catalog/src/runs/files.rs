//! Run files every server can read when servers share the catalog: a run's log (kept
//! when the run ends) and its code snapshot (content-addressed), stored in chunks of
//! `RUN_ANSWER_CHUNK_BYTES` under `run-file/<kind>/<name>/<n>` with a manifest (length,
//! chunks, BLAKE3) at `run-file/<kind>/<name>`. The executing server keeps its own copies
//! on disk as before; these are what another server answers `logs` and `code` with.

use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, CatalogResult};
use crate::limits::{RUN_ANSWER_BYTES_MAX, RUN_ANSWER_CHUNK_BYTES};
use crate::{Catalog, Principal};

const FILE_PREFIX: &str = "run-file/";

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
}

fn manifest_key(kind: RunFile, name: &str) -> Vec<u8> {
    format!("{FILE_PREFIX}{}/{name}", kind.as_str()).into_bytes()
}

fn chunk_key(kind: RunFile, name: &str, n: u32) -> Vec<u8> {
    format!("{FILE_PREFIX}{}/{name}/{n:05}", kind.as_str()).into_bytes()
}

impl Catalog {
    /// Keeps a run file for the other servers (on a store no other server shares,
    /// nothing to do). At most `RUN_ANSWER_BYTES_MAX`: a longer log keeps its start.
    pub fn share_run_file(&self, kind: RunFile, name: &str, bytes: &[u8]) -> CatalogResult<()> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let bytes = &bytes[..bytes.len().min(RUN_ANSWER_BYTES_MAX)];
        let mut chunks = 0u32;
        for (n, chunk) in bytes.chunks(RUN_ANSWER_CHUNK_BYTES).enumerate() {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.store.meta_put(&chunk_key(kind, name, n), chunk)?;
            chunks = n + 1;
        }
        let manifest = Manifest {
            bytes: bytes.len() as u64,
            chunks,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        };
        let text = serde_json::to_vec(&manifest).map_err(|e| {
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
                .meta_get(&chunk_key(kind, name, n))?
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
