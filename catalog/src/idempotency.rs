//! Idempotency records (DESIGN §3 "Idempotency-Key"). An applied write records its request
//! fingerprint atomically with its ref move (the store writes it in the same atomic write
//! as the compare-and-swap); a deterministic rejection, and a request accepted before any
//! ref moves (a queued run), are recorded with `meta_cas` under a
//! key of its own. Unknown outcomes are never recorded. A record older than
//! `IDEMPOTENCY_LIFETIME_MS` is as good as absent. The HTTP layer fingerprints requests,
//! holds the in-flight set and rebuilds responses; this module owns what is stored.

use floe_commits::{Hash, Idempotency};
use serde_json::{Value, json};

use crate::error::{CatalogError, CatalogResult};
use crate::limits::{
    IDEMPOTENCY_CLAIM_LEASE_MS, IDEMPOTENCY_LIFETIME_MS, META_PAGE_MAX, QUOTED_CHARS_MAX,
};
use crate::{Action, Catalog, Principal, Target, resumable_scan};

/// Meta-keyspace prefix of recorded rejections (applied writes live under the store's
/// `IDEMPOTENCY_PREFIX`).
const REJECTED_PREFIX: &[u8] = b"idempotency-rejected/";

/// A validated `Idempotency-Key`: a UUIDv7 in its canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> CatalogResult<IdempotencyKey> {
        let invalid = || {
            CatalogError::Invalid(format!(
                "Idempotency-Key must be a UUIDv7 such as 019b1f6e-8a4c-7d2e-9f10-3c5a7b9d1e2f, got {:?}",
                text.chars().take(QUOTED_CHARS_MAX).collect::<String>()
            ))
        };
        let uuid = uuid::Uuid::try_parse(text).map_err(|_| invalid())?;
        if uuid.get_version_num() != 7 {
            return Err(invalid());
        }
        Ok(IdempotencyKey(uuid.hyphenated().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What recording a request's acceptance found (`Catalog::record_acceptance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    Recorded,
    /// Another request under the key was accepted first: its detail (a run's id).
    AcceptedFirst(String),
    /// The key holds another live record (a rejection): nothing was recorded.
    Held,
}

/// What a write carries: its key and the fingerprint of the request (method, path, body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemRequest {
    pub key: IdempotencyKey,
    pub fingerprint: String,
    /// The claim the request holds on its key when servers share the catalog
    /// (`Catalog::claim_key`): its move applies only while the claim is still its own.
    pub claim: Option<Vec<u8>>,
}

/// A write that applied under a key: the ref it moved, from where to where, and what the
/// entry point noted to rebuild its answer (`detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRecord {
    pub ref_name: String,
    pub previous: Option<Hash>,
    pub head: Option<Hash>,
    pub detail: String,
}

/// What a retry finds under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recalled {
    Applied(AppliedRecord),
    /// The first attempt was rejected; `answer` is what the layer above recorded of it
    /// (opaque here: the catalog knows no HTTP).
    Rejected {
        answer: String,
    },
    /// The key was used for a different request.
    OtherRequest,
}

impl Catalog {
    /// The recorded outcome of an earlier request under `request.key`, if it has not
    /// expired.
    pub fn recall(
        &self,
        principal: &Principal,
        request: &IdemRequest,
    ) -> CatalogResult<Option<Recalled>> {
        self.may_keep_answers(principal)?;
        let now = self.store.lease_now_ms();
        if let Some(applied) = self.store.idempotency_lookup(request.key.as_str())? {
            let value = parse(&applied.value)?;
            if !expired(&value, now) {
                if value["fp"] != request.fingerprint.as_str() {
                    return Ok(Some(Recalled::OtherRequest));
                }
                return Ok(Some(Recalled::Applied(AppliedRecord {
                    ref_name: applied.ref_name,
                    previous: applied.previous,
                    head: applied.head,
                    detail: value["detail"].as_str().unwrap_or_default().to_owned(),
                })));
            }
        }
        if let Some(bytes) = self.store.meta_get(&rejected_key(&request.key))? {
            let value = parse(&bytes)?;
            if !expired(&value, now) {
                if value["fp"] != request.fingerprint.as_str() {
                    return Ok(Some(Recalled::OtherRequest));
                }
                // An accepted request (a queued run): a retry finds what it started.
                if let Some(detail) = value["accepted"].as_str() {
                    return Ok(Some(Recalled::Applied(AppliedRecord {
                        ref_name: String::new(),
                        previous: None,
                        head: None,
                        detail: detail.to_owned(),
                    })));
                }
                // Records from before `answer` kept the error body under `body`.
                let answer = value["answer"].as_str().or_else(|| value["body"].as_str());
                return Ok(Some(Recalled::Rejected {
                    answer: answer.unwrap_or_default().to_owned(),
                }));
            }
        }
        Ok(None)
    }

    /// Claims a request's key while it runs, when servers share the catalog (on one
    /// server the HTTP layer's in-process set does it): false when another request holds
    /// a live claim on it. The claim lasts `IDEMPOTENCY_CLAIM_LEASE_MS`; a longer request
    /// may be taken over by a retry on another server, and then writes nothing (its move
    /// is fenced by the claim). `Ok(true)` also on a store that is not shared.
    pub fn claim_key(
        &self,
        principal: &Principal,
        request: &mut IdemRequest,
    ) -> CatalogResult<bool> {
        if !self.store.is_shared() {
            return Ok(true);
        }
        self.may_keep_answers(principal)?;
        // Held as `<server>/<request>`: this server holds the key's in-process turn, so a
        // live claim of its own is one a failed release left behind, and is taken over.
        let mine = format!("{}/", self.server_id());
        let holder = format!("{mine}{}", self.new_uuid());
        match self.store.claim_idempotency(
            request.key.as_str(),
            &holder,
            IDEMPOTENCY_CLAIM_LEASE_MS,
            &mine,
        )? {
            floe_commits::Claim::Held(marker) => {
                request.claim = Some(marker);
                Ok(true)
            }
            floe_commits::Claim::Busy => Ok(false),
        }
    }

    /// Gives up a request's claim on its key (a move that applied consumed it already).
    pub fn release_key(&self, principal: &Principal, request: &IdemRequest) -> CatalogResult<()> {
        if let Some(marker) = &request.claim {
            self.may_keep_answers(principal)?;
            self.store
                .release_idempotency_claim(request.key.as_str(), marker)?;
        }
        Ok(())
    }

    /// Records that a request was accepted without moving a ref yet (a run queued:
    /// `detail` is its id), so that a retry gets the same run, not a second one. The
    /// first record under a live key wins.
    pub fn record_acceptance(
        &self,
        principal: &Principal,
        request: &IdemRequest,
        detail: &str,
    ) -> CatalogResult<Acceptance> {
        self.may_keep_answers(principal)?;
        let key = rejected_key(&request.key);
        let value = json!({
            "fp": request.fingerprint,
            "at": self.store.lease_now_ms(),
            "accepted": detail,
        })
        .to_string();
        // A record that appeared between the read and the swap is read: three reads,
        // two swaps at most.
        for attempt in 0..3 {
            let old = self.store.meta_get(&key)?;
            if let Some(old) = &old {
                let held = parse(old)?;
                if !expired(&held, self.store.lease_now_ms()) {
                    return Ok(match held["accepted"].as_str() {
                        Some(first) => Acceptance::AcceptedFirst(first.to_owned()),
                        None => Acceptance::Held,
                    });
                }
            }
            if attempt == 2 {
                break;
            }
            if self
                .store
                .meta_cas(&key, old.as_deref(), Some(value.as_bytes()))?
            {
                return Ok(Acceptance::Recorded);
            }
        }
        Ok(Acceptance::Held)
    }

    /// Records a deterministic rejection so that a retry gets the same answer. Best effort:
    /// a body too large for one meta value is not recorded (the retry re-evaluates).
    pub fn record_rejection(
        &self,
        principal: &Principal,
        request: &IdemRequest,
        answer: &str,
    ) -> CatalogResult<()> {
        self.may_keep_answers(principal)?;
        let key = rejected_key(&request.key);
        let value = json!({
            "fp": request.fingerprint,
            "at": self.store.lease_now_ms(),
            "answer": answer,
        })
        .to_string();
        if value.len() > floe_commits::limits::VALUE_BYTES_MAX {
            return Ok(());
        }
        let old = self.store.meta_get(&key)?;
        // A live record wins (the first answer stays the answer); an expired one is
        // replaced. Losing the race to another replica's record is fine either way.
        if let Some(old) = &old
            && !expired(&parse(old)?, self.store.lease_now_ms())
        {
            return Ok(());
        }
        self.store
            .meta_cas(&key, old.as_deref(), Some(value.as_bytes()))?;
        Ok(())
    }

    /// Who may recall and keep answers under keys: a principal who may read something (the
    /// HTTP layer's fingerprint includes the principal, so a key answers only its own
    /// principal's request).
    fn may_keep_answers(&self, principal: &Principal) -> CatalogResult<()> {
        self.authorize(principal, Action::ReadRefs, Target::default())
    }

    /// Deletes idempotency records past their lifetime, applied and rejected: at most
    /// `deletes_max`, examining at most `scan_max` of each kind, each scan resuming at its
    /// cursor (and starting over once it reaches the end). Returns how many it deleted, and
    /// whether the deletion bound stopped it.
    pub(crate) fn expire_idempotency(
        &self,
        scan_max: usize,
        deletes_max: usize,
        (applied_after, rejected_after): (&mut Option<String>, &mut Option<Vec<u8>>),
    ) -> CatalogResult<(usize, bool)> {
        let now = self.store.lease_now_ms();
        let mut deleted = 0usize;
        // A damaged value is as good as expired: it answers nothing.
        let live = |value: &[u8]| parse(value).is_ok_and(|v| !expired(&v, now));
        // Applied records, stored by the store with their ref moves.
        let stopped = resumable_scan(
            applied_after,
            scan_max,
            |after| {
                Ok(self
                    .store
                    .idempotency_records(after.map(String::as_str), META_PAGE_MAX)?
                    .into_iter()
                    .map(|(key, outcome, stored)| (key, (outcome, stored)))
                    .collect())
            },
            |key, (outcome, stored)| {
                if live(&outcome.value) {
                    return Ok(true);
                }
                if deleted >= deletes_max {
                    return Ok(false);
                }
                deleted += usize::from(self.store.remove_idempotency(key, stored)?);
                Ok(true)
            },
        )?;
        if stopped {
            return Ok((deleted, true));
        }
        // Recorded rejections.
        let stopped = resumable_scan(
            rejected_after,
            scan_max,
            |after| {
                Ok(self
                    .store
                    .meta_scan(REJECTED_PREFIX, after.map(Vec::as_slice), META_PAGE_MAX)?
                    .into_iter()
                    .map(|(key, value)| (key.to_vec(), value))
                    .collect())
            },
            |key, value| {
                if live(value) {
                    return Ok(true);
                }
                if deleted >= deletes_max {
                    return Ok(false);
                }
                deleted += usize::from(self.store.meta_cas(key, Some(value), None)?);
                Ok(true)
            },
        )?;
        Ok((deleted, stopped))
    }

    /// The record an applied write stores with its ref move.
    pub(crate) fn idempotency_record(
        &self,
        request: Option<&IdemRequest>,
        detail: &str,
    ) -> Option<Idempotency> {
        request.map(|r| Idempotency {
            claim: r.claim.clone(),
            key: r.key.as_str().to_owned(),
            value:
                json!({ "fp": r.fingerprint, "at": self.store.lease_now_ms(), "detail": detail })
                    .to_string()
                    .into_bytes(),
        })
    }
}

fn rejected_key(key: &IdempotencyKey) -> Vec<u8> {
    let mut k = REJECTED_PREFIX.to_vec();
    k.extend_from_slice(key.as_str().as_bytes());
    k
}

fn parse(bytes: &[u8]) -> CatalogResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        CatalogError::Read(floe_commits::ReadError::Invalid(format!(
            "a stored idempotency record is damaged: {e}"
        )))
    })
}

fn expired(value: &Value, now_ms: i64) -> bool {
    value["at"]
        .as_i64()
        .is_none_or(|at| now_ms.saturating_sub(at) > IDEMPOTENCY_LIFETIME_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuid_v7_keys_are_accepted() {
        assert!(IdempotencyKey::parse("019b1f6e-8a4c-7d2e-9f10-3c5a7b9d1e2f").is_ok());
        // A v4 UUID, junk, and an empty key.
        for bad in ["6f1c2a2e-3b4d-4c5e-8f60-718293a4b5c6", "retry-1", ""] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert!(err.to_string().contains("UUIDv7"), "{err}");
        }
    }
}
