//! A run's answer (an import's outcome with its file list), kept beside its record so that
//! a retry of the run's request gets it again (DESIGN §7: records stay small). The answer
//! grows with the input, so it is stored in chunks of at most `RUN_ANSWER_CHUNK_BYTES`
//! under `run-answer/<id>/<n>` in the meta keyspace, with its length and BLAKE3 in the
//! record. It is written before the landing: an answer that cannot be stored (larger than
//! `RUN_ANSWER_BYTES_MAX`, or a failed write) fails the run while nothing has landed.

use serde::{Deserialize, Serialize};

use crate::Catalog;
use crate::error::{CatalogError, CatalogResult};
use crate::limits::{RUN_ANSWER_BYTES_MAX, RUN_ANSWER_CHUNK_BYTES};

const ANSWER_PREFIX: &str = "run-answer/";

/// Where a run's answer is: its chunks, length and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAnswer {
    pub bytes: u64,
    pub chunks: u32,
    pub blake3: String,
}

fn chunk_key(id: &str, n: u32) -> Vec<u8> {
    format!("{ANSWER_PREFIX}{id}/{n:05}").into_bytes()
}

/// The prefix of every chunk of a run's answer.
pub(super) fn answer_prefix(id: &str) -> Vec<u8> {
    format!("{ANSWER_PREFIX}{id}/").into_bytes()
}

impl Catalog {
    /// Stores a run's answer; refuses one over `RUN_ANSWER_BYTES_MAX` before writing.
    pub(super) fn store_answer(
        &self,
        id: &str,
        answer: &serde_json::Value,
    ) -> CatalogResult<StoredAnswer> {
        let bytes = serde_json::to_vec(answer).map_err(|e| {
            CatalogError::Invalid(format!("the run's answer does not serialize: {e}"))
        })?;
        if bytes.len() > RUN_ANSWER_BYTES_MAX {
            return Err(CatalogError::Invalid(format!(
                "the run's answer would be {} bytes, more than a run keeps (RUN_ANSWER_BYTES_MAX, {RUN_ANSWER_BYTES_MAX}); do less in one run (import fewer files at once)",
                bytes.len()
            )));
        }
        let mut chunks = 0u32;
        for (n, chunk) in bytes.chunks(RUN_ANSWER_CHUNK_BYTES).enumerate() {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.store.meta_put(&chunk_key(id, n), chunk)?;
            chunks = n + 1;
        }
        Ok(StoredAnswer {
            bytes: bytes.len() as u64,
            chunks,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        })
    }

    /// A run's stored answer, checked against its length and hash.
    pub(super) fn stored_answer(
        &self,
        id: &str,
        stored: &StoredAnswer,
    ) -> CatalogResult<serde_json::Value> {
        let damaged = |why: &str| {
            CatalogError::Read(floe_commits::ReadError::Invalid(format!(
                "the stored answer of run {id} is damaged ({why})"
            )))
        };
        if stored.bytes > RUN_ANSWER_BYTES_MAX as u64 {
            return Err(damaged("longer than any answer a run keeps"));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(stored.bytes).unwrap_or(0));
        for n in 0..stored.chunks {
            let chunk = self
                .store
                .meta_get(&chunk_key(id, n))?
                .ok_or_else(|| damaged("a chunk is missing"))?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != stored.bytes
            || blake3::hash(&bytes).to_hex().as_str() != stored.blake3
        {
            return Err(damaged("its length or hash differs"));
        }
        serde_json::from_slice(&bytes).map_err(|_| damaged("it does not parse"))
    }

    /// Removes a run's stored answer (retention).
    pub(super) fn delete_answer(&self, id: &str, stored: &StoredAnswer) -> CatalogResult<()> {
        for n in 0..stored.chunks {
            let key = chunk_key(id, n);
            if let Some(old) = self.store.meta_get(&key)? {
                self.store.meta_cas(&key, Some(&old), None)?;
            }
        }
        Ok(())
    }
}
