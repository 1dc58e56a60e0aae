//! Servers sharing one catalog (DESIGN §9): who is alive, and who does the background
//! work. Nothing here lives only in a process: each server renews a lease in meta
//! (`server-lease/<id>`) while it runs, a run belongs to the server that executes it (its
//! record's `owner`), and a run whose owner's lease ran out is settled by any server.
//! Maintenance runs on one server at a time, under a lease of its own.
//!
//! On one server (sled), the same rules hold trivially: every run is the server's own,
//! and the maintenance lease is always its own.

use serde_json::json;

use crate::error::CatalogResult;
use crate::{Catalog, RunRecord};

const SERVER_LEASE_PREFIX: &str = "server-lease/";
/// How long a server's lease stays after it ran out (whoever looks sees who served)
/// before the maintenance pass removes it.
pub const SERVER_LEASE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
const MAINTENANCE_LEASE: &[u8] = b"maintenance-lease";
const CANCEL_PREFIX: &str = "run-cancel/";

/// A lease's holder and end, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Lease {
    holder: String,
    until_ms: i64,
}

fn parse(bytes: &[u8]) -> Option<Lease> {
    serde_json::from_slice(bytes).ok()
}

impl Catalog {
    /// This server's id (the owner of the runs it executes).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Says this server is alive for `lease_ms` more: what `floe serve` renews about every
    /// third of its lease. Runs of a server whose lease ran out are settled by others.
    /// Nothing to do on a store no other server shares.
    pub fn renew_server_lease(&self, lease_ms: i64) -> CatalogResult<()> {
        if !self.store.is_shared() {
            return Ok(());
        }
        self.store.sync_lease_clock()?;
        let lease = Lease {
            holder: self.server_id.to_string(),
            until_ms: self.store.lease_now_ms().saturating_add(lease_ms),
        };
        let key = format!("{SERVER_LEASE_PREFIX}{}", self.server_id);
        self.store
            .meta_put(key.as_bytes(), json!(lease).to_string().as_bytes())?;
        Ok(())
    }

    /// Whether the server `owner` may still be running its runs: itself, or a server whose
    /// lease has not run out. A record without an owner (from before owners were kept) is
    /// this server's.
    pub(crate) fn owner_alive(&self, owner: Option<&str>) -> CatalogResult<bool> {
        let Some(owner) = owner.filter(|o| *o != &*self.server_id) else {
            return Ok(true);
        };
        let key = format!("{SERVER_LEASE_PREFIX}{owner}");
        Ok(self
            .store
            .meta_get(key.as_bytes())?
            .and_then(|b| parse(&b))
            .is_some_and(|l| l.until_ms > self.store.lease_now_ms()))
    }

    /// Whether several servers may share this catalog (its store's backend says so).
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// Asks the server executing `record` to cancel it, saying why (`cancel_run`
    /// authorized it): that server looks for the request while the run lives.
    pub(crate) fn request_cancel(&self, record: &RunRecord, why: &str) -> CatalogResult<()> {
        let key = format!("{CANCEL_PREFIX}{}", record.id);
        let why = crate::runs::bounded(why, crate::limits::RUN_ERROR_BYTES_MAX);
        self.store.meta_put(key.as_bytes(), why.as_bytes())?;
        Ok(())
    }

    /// The cancel request left for run `id`, if any.
    pub fn cancel_requested(&self, id: &str) -> CatalogResult<Option<String>> {
        let key = format!("{CANCEL_PREFIX}{id}");
        Ok(self
            .store
            .meta_get(key.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Removes run `id`'s cancel request once its server acted on it.
    pub fn cancel_taken(&self, id: &str) -> CatalogResult<()> {
        let key = format!("{CANCEL_PREFIX}{id}");
        if let Some(old) = self.store.meta_get(key.as_bytes())? {
            self.store.meta_cas(key.as_bytes(), Some(&old), None)?;
        }
        Ok(())
    }

    /// Removes the leases of servers gone for longer than `SERVER_LEASE_RETENTION_MS` (a
    /// missing lease reads as a dead server, as an expired one does), one page per pass:
    /// the maintenance pass calls it. Returns how many it removed.
    pub(crate) fn prune_server_leases(&self) -> CatalogResult<usize> {
        if !self.store.is_shared() {
            return Ok(0);
        }
        let now = self.store.lease_now_ms();
        let mut removed = 0;
        let leases = self.store.meta_scan(
            SERVER_LEASE_PREFIX.as_bytes(),
            None,
            crate::limits::META_PAGE_MAX,
        )?;
        for (key, value) in leases {
            let Some(lease) = parse(&value) else {
                continue;
            };
            let gone = lease.until_ms.saturating_add(SERVER_LEASE_RETENTION_MS) < now;
            if gone
                && lease.holder != *self.server_id
                && self.store.meta_cas(&key, Some(&value), None)?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Takes (or keeps) the maintenance lease for `lease_ms`: true when this server may run
    /// the pass now. Always true on a store no other server shares.
    pub fn take_maintenance_lease(&self, lease_ms: i64) -> CatalogResult<bool> {
        if !self.store.is_shared() {
            return Ok(true);
        }
        let now = self.store.lease_now_ms();
        let old = self.store.meta_get(MAINTENANCE_LEASE)?;
        if let Some(lease) = old.as_deref().and_then(parse)
            && lease.holder != *self.server_id
            && lease.until_ms > now
        {
            return Ok(false);
        }
        let mine = Lease {
            holder: self.server_id.to_string(),
            until_ms: now.saturating_add(lease_ms),
        };
        Ok(self.store.meta_cas(
            MAINTENANCE_LEASE,
            old.as_deref(),
            Some(json!(mine).to_string().as_bytes()),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floe_commits::{ManualClock, MemoryBackend, Store};

    use super::*;

    #[test]
    fn leases_say_who_is_alive_and_who_maintains() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store =
            Arc::new(Store::open(Arc::new(MemoryBackend::shared()), clock.clone()).unwrap());
        let a = Catalog::new(store.clone()).with_server_id("a");
        let b = Catalog::new(store).with_server_id("b");
        // Unknown servers are not alive; one's own runs always are.
        assert!(!b.owner_alive(Some("a")).unwrap());
        assert!(a.owner_alive(Some("a")).unwrap());
        assert!(a.owner_alive(None).unwrap());
        a.renew_server_lease(30_000).unwrap();
        assert!(b.owner_alive(Some("a")).unwrap());
        clock.advance(30_001);
        assert!(!b.owner_alive(Some("a")).unwrap(), "the lease ran out");
        // One maintainer at a time; the lease passes on when it runs out.
        assert!(a.take_maintenance_lease(10_000).unwrap());
        assert!(!b.take_maintenance_lease(10_000).unwrap());
        assert!(
            a.take_maintenance_lease(10_000).unwrap(),
            "the holder renews"
        );
        clock.advance(10_001);
        assert!(b.take_maintenance_lease(10_000).unwrap());
        assert!(!a.take_maintenance_lease(10_000).unwrap());
        // A lease stays a day after it ran out, then maintenance removes it; a live
        // server's stays.
        b.renew_server_lease(30_000).unwrap();
        assert_eq!(b.prune_server_leases().unwrap(), 0);
        clock.advance(SERVER_LEASE_RETENTION_MS);
        b.renew_server_lease(30_000).unwrap();
        assert_eq!(b.prune_server_leases().unwrap(), 1, "a's lease is gone");
        assert!(!b.owner_alive(Some("a")).unwrap());
        assert!(a.owner_alive(Some("b")).unwrap(), "b's lease stays");
        assert_eq!(a.prune_server_leases().unwrap(), 0);
    }

    /// Servers whose clocks are two hours apart judge each other's leases on the shared
    /// store's clock: the one ahead does not settle the other's runs while it renews, nor
    /// does the one behind wait two hours more once it stopped.
    #[test]
    fn servers_whose_clocks_disagree_judge_leases_on_the_stores_clock() {
        const HOUR: i64 = 3_600_000;
        let shared = Arc::new(ManualClock::new(10 * HOUR));
        let backend = Arc::new(MemoryBackend::shared_with_clock(shared.clone()));
        let (behind, ahead) = (
            Arc::new(ManualClock::new(9 * HOUR)),
            Arc::new(ManualClock::new(11 * HOUR)),
        );
        let a = Catalog::new(Arc::new(
            Store::open(backend.clone(), behind.clone()).unwrap(),
        ))
        .with_server_id("a");
        let b = Catalog::new(Arc::new(Store::open(backend, ahead.clone()).unwrap()))
            .with_server_id("b");
        let advance = |ms| {
            [&shared, &behind, &ahead]
                .iter()
                .for_each(|c| c.advance(ms))
        };
        a.renew_server_lease(30_000).unwrap();
        b.renew_server_lease(30_000).unwrap();
        assert!(b.owner_alive(Some("a")).unwrap(), "a renewed its lease");
        assert!(a.owner_alive(Some("b")).unwrap(), "b renewed its lease");
        advance(20_000);
        b.renew_server_lease(30_000).unwrap();
        advance(10_001);
        assert!(!b.owner_alive(Some("a")).unwrap(), "a's lease ran out");
        assert!(a.owner_alive(Some("b")).unwrap(), "b's has 20 s left");
        // The maintenance lease passes on when it runs out, not two hours late.
        assert!(a.take_maintenance_lease(10_000).unwrap());
        assert!(!b.take_maintenance_lease(10_000).unwrap());
        advance(10_001);
        assert!(b.take_maintenance_lease(10_000).unwrap());
        // An answer a records under an idempotency key is b's to recall, whatever their
        // clocks say (b's is two hours past the record's lifetime).
        let request = crate::IdemRequest {
            key: crate::IdempotencyKey::parse(&a.new_uuid().to_string()).unwrap(),
            fingerprint: "fp".to_owned(),
            claim: None,
        };
        let who = crate::Principal::named("ann");
        a.record_rejection(&who, &request, "refused").unwrap();
        assert!(
            matches!(
                b.recall(&who, &request).unwrap(),
                Some(crate::idempotency::Recalled::Rejected { .. })
            ),
            "b recalls a's answer"
        );
        // a's clock steps four hours ahead: its next renewal measures the store's clock
        // again, and its lease still ends 30 s after it.
        behind.advance(4 * HOUR);
        a.renew_server_lease(30_000).unwrap();
        assert!(b.owner_alive(Some("a")).unwrap(), "a renewed its lease");
        advance(30_001);
        assert!(!b.owner_alive(Some("a")).unwrap(), "a's lease ran out");
    }
}
