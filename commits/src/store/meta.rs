//! The meta keyspace outside history (run records, tokens, idempotency records): bounded
//! keys and values, and the idempotency records a ref move carries.

use super::*;

/// A meta read may wait (on sled, for pending writes to be durable): refused to an
/// inline read (`crate::inline`).
fn may_wait() -> Result<(), ReadError> {
    if crate::inline::may_block() {
        return Ok(());
    }
    Err(ReadError::Invalid(crate::inline::REFUSED.to_owned()))
}

impl Store {
    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Bytes>, ReadError> {
        check_meta_key(key).map_err(ReadError::Invalid)?;
        may_wait()?;
        Ok(self.backend.meta_get(key)?)
    }

    pub fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        check_meta(key, Some(value))?;
        Ok(self.backend.meta_put(key, value)?)
    }

    pub fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, WriteError> {
        check_meta(key, new)?;
        Ok(self.backend.meta_cas(key, expected, new)?)
    }

    pub fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, ReadError> {
        check_meta_key(prefix).map_err(ReadError::Invalid)?;
        may_wait()?;
        Ok(self
            .backend
            .meta_scan(prefix, after, limit.clamp(1, META_SCAN_PAGE_MAX))?)
    }

    /// Claims an idempotency key for one request (`holder`, unique to it) for `lease_ms`,
    /// on a shared backend where several servers may get the same key at once. A live
    /// claim of another request answers `Busy`; an expired one is taken over (and the old
    /// holder's move, fenced by its claim, then writes nothing). A live claim whose holder
    /// starts with `stale_prefix` is taken over too: the caller knows no request of its
    /// own holds it any more (a server's claim left behind when its release failed).
    pub fn claim_idempotency(
        &self,
        key: &str,
        holder: &str,
        lease_ms: i64,
        stale_prefix: &str,
    ) -> Result<Claim, WriteError> {
        let k = claim_key(key);
        let now = self.lease_now_ms();
        let mut marker = now.saturating_add(lease_ms).to_be_bytes().to_vec();
        marker.extend_from_slice(holder.as_bytes());
        check_meta(&k, Some(&marker))?;
        let old = self.backend.meta_get(&k)?;
        if let Some(old) = &old {
            let deadline = old
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MIN, i64::from_be_bytes);
            let stale = !stale_prefix.is_empty()
                && old[8.min(old.len())..].starts_with(stale_prefix.as_bytes());
            if deadline > now && !stale {
                return Ok(Claim::Busy);
            }
        }
        Ok(
            match self.backend.meta_cas(&k, old.as_deref(), Some(&marker))? {
                true => Claim::Held(marker),
                false => Claim::Busy,
            },
        )
    }

    /// Gives a claim up (the request ended without a move that consumed it); a claim
    /// consumed or taken over already is left alone.
    pub fn release_idempotency_claim(&self, key: &str, marker: &[u8]) -> Result<(), WriteError> {
        self.backend.meta_cas(&claim_key(key), Some(marker), None)?;
        Ok(())
    }

    /// The outcome recorded under an idempotency key, if a write carried it.
    pub fn idempotency_lookup(&self, key: &str) -> Result<Option<IdempotencyOutcome>, ReadError> {
        let mut k = IDEMPOTENCY_PREFIX.to_vec();
        k.extend_from_slice(key.as_bytes());
        let Some(bytes) = self.backend.meta_get(&k)? else {
            return Ok(None);
        };
        Ok(Some(decode_idempotency(&bytes)?))
    }

    /// Up to `limit` recorded idempotency outcomes with keys after `after`, in key order,
    /// each with its stored bytes (to remove it only if unchanged): what retention scans.
    pub fn idempotency_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, IdempotencyOutcome, Bytes)>, ReadError> {
        let after = after.map(|a| [IDEMPOTENCY_PREFIX, a.as_bytes()].concat());
        let page = self.meta_scan(IDEMPOTENCY_PREFIX, after.as_deref(), limit)?;
        page.into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(&k[IDEMPOTENCY_PREFIX.len()..]).into_owned();
                Ok((key, decode_idempotency(&v)?, v))
            })
            .collect()
    }

    /// Removes a recorded idempotency outcome if its stored bytes are still `stored`.
    pub fn remove_idempotency(&self, key: &str, stored: &[u8]) -> Result<bool, WriteError> {
        let k = [IDEMPOTENCY_PREFIX, key.as_bytes()].concat();
        self.meta_cas(&k, Some(stored), None)
    }
}

fn check_meta_key(key: &[u8]) -> Result<(), String> {
    if key.len() > META_KEY_BYTES_MAX {
        return Err(format!(
            "a meta key is at most {META_KEY_BYTES_MAX} bytes (META_KEY_BYTES_MAX), got {}",
            key.len()
        ));
    }
    Ok(())
}

fn check_meta(key: &[u8], value: Option<&[u8]>) -> Result<(), WriteError> {
    check_meta_key(key).map_err(WriteError::Invalid)?;
    if let Some(v) = value
        && v.len() > VALUE_BYTES_MAX
    {
        return Err(WriteError::Invalid(format!(
            "a meta value is at most {VALUE_BYTES_MAX} bytes (VALUE_BYTES_MAX), got {}",
            v.len()
        )));
    }
    Ok(())
}

fn decode_idempotency(bytes: &[u8]) -> Result<IdempotencyOutcome, ReadError> {
    let mut r = Reader::bare(bytes);
    let parse = |r: &mut Reader<'_>| -> Result<IdempotencyOutcome, crate::encoding::DecodeError> {
        let value = r.bytes()?.to_vec();
        let ref_name = r.str()?.to_owned();
        let hash = |r: &mut Reader<'_>| -> Result<Option<Hash>, _> {
            Ok(match r.u8()? {
                0 => None,
                _ => Some(Hash::from_bytes(r.array()?)),
            })
        };
        let head = hash(r)?;
        let previous = hash(r)?;
        Ok(IdempotencyOutcome {
            value,
            ref_name,
            head,
            previous,
        })
    };
    // A meta record is not an object: no hash names it.
    parse(&mut r).map_err(|e| ReadError::Storage(StorageError::corrupt(None, e.0.to_owned())))
}

/// Meta-keyspace prefix of idempotency claims (requests in flight on a shared backend).
pub const IDEMPOTENCY_CLAIM_PREFIX: &[u8] = b"idempotency-claim/";

fn claim_key(key: &str) -> Vec<u8> {
    [IDEMPOTENCY_CLAIM_PREFIX, key.as_bytes()].concat()
}

pub(super) fn idempotency_write(
    i: &Idempotency,
    name: &RefName,
    previous: Option<Hash>,
    head: Option<Hash>,
) -> Result<MetaWrite, WriteError> {
    let mut key = IDEMPOTENCY_PREFIX.to_vec();
    key.extend_from_slice(i.key.as_bytes());
    let mut w = Writer::bare();
    w.bytes(&i.value);
    w.str(name.as_str());
    for hash in [head, previous] {
        match hash {
            None => w.u8(0),
            Some(h) => {
                w.u8(1);
                w.raw(h.as_bytes());
            }
        }
    }
    let value = w.finish();
    check_meta(&key, Some(&value))?;
    Ok(MetaWrite {
        key: Bytes::from(key),
        value: Bytes::from(value),
        claim: i
            .claim
            .as_ref()
            .map(|m| (Bytes::from(claim_key(&i.key)), Bytes::from(m.clone()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_record_reads_back_what_the_move_wrote() {
        let name = RefName::parse("main").unwrap();
        let (old, new) = (Hash::of(b"old"), Hash::of(b"new"));
        let record = Idempotency {
            key: "k1".to_owned(),
            value: b"response".to_vec(),
            claim: None,
        };
        for (previous, head) in [(Some(old), Some(new)), (None, Some(new)), (Some(old), None)] {
            let write = idempotency_write(&record, &name, previous, head).unwrap();
            assert_eq!(&write.key[..], b"idempotency/k1");
            assert_eq!(
                decode_idempotency(&write.value).unwrap(),
                IdempotencyOutcome {
                    value: b"response".to_vec(),
                    ref_name: "main".to_owned(),
                    head,
                    previous,
                }
            );
        }
        // A damaged record is corrupt, with no object to name.
        let write = idempotency_write(&record, &name, None, None).unwrap();
        let truncated = &write.value[..write.value.len() - 1];
        assert!(matches!(
            decode_idempotency(truncated),
            Err(ReadError::Storage(StorageError::Corrupt { hash: None, .. }))
        ));
    }

    #[test]
    fn meta_keys_and_values_are_bounded() {
        let key = vec![b'k'; META_KEY_BYTES_MAX];
        assert!(check_meta(&key, Some(&vec![0; VALUE_BYTES_MAX])).is_ok());
        assert!(check_meta(&[&key[..], b"k"].concat(), None).is_err());
        assert!(check_meta(&key, Some(&vec![0; VALUE_BYTES_MAX + 1])).is_err());
        // An idempotency value that would not fit is refused before the move.
        let record = Idempotency {
            key: "k".to_owned(),
            value: vec![0; VALUE_BYTES_MAX],
            claim: None,
        };
        let name = RefName::parse("main").unwrap();
        assert!(matches!(
            idempotency_write(&record, &name, None, None),
            Err(WriteError::Invalid(m)) if m.contains("VALUE_BYTES_MAX")
        ));
    }
}
