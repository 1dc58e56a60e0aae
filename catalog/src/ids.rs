//! Where the catalog's new ids come from (STYLE 7: time, ids and randomness come in from
//! outside the core). Content ids, table and view uuids, metadata file names and run ids
//! are all taken from the `Catalog`'s `IdSource`, never made where they are used, so that
//! a test (or a model) built with `SequentialIds` replays exactly.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use floe_commits::{Clock, Store};
use uuid::{Builder, ContextV7, Timestamp, Uuid};

/// A source of new UUIDs. Every id it hands out is a UUIDv7 (idempotency keys and run ids
/// are checked to be one), and ids handed out later sort after earlier ones (run listings
/// are in id order).
pub trait IdSource: Send + Sync + fmt::Debug {
    fn uuid(&self) -> Uuid;
}

/// The server's ids: UUIDv7 at the clock's time, with a counter that keeps ids handed out
/// within one millisecond (or while the clock steps back) in order.
pub struct UuidV7Ids {
    clock: Arc<dyn Clock>,
    /// The `uuid` crate's monotonic counter; its cells want a lock to be shared.
    context: std::sync::Mutex<ContextV7>,
}

impl UuidV7Ids {
    pub fn new(clock: Arc<dyn Clock>) -> UuidV7Ids {
        UuidV7Ids {
            clock,
            context: std::sync::Mutex::new(ContextV7::new()),
        }
    }

    /// Ids at the time of `store`'s clock, the one every commit is dated by.
    pub fn of_store(store: Arc<Store>) -> UuidV7Ids {
        UuidV7Ids::new(Arc::new(StoreClock(store)))
    }
}

impl fmt::Debug for UuidV7Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UuidV7Ids")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl IdSource for UuidV7Ids {
    fn uuid(&self) -> Uuid {
        // A clock before 1970 is dated 1970: a UUIDv7 has no earlier time.
        let ms = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        Uuid::new_v7(Timestamp::from_unix(
            &self.context,
            ms / 1000,
            u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
        ))
    }
}

/// A store's clock, as a `Clock` of its own.
#[derive(Debug)]
struct StoreClock(Arc<Store>);

impl Clock for StoreClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// Deterministic ids for tests and models: UUIDv7s dated at the Unix epoch whose low bits
/// count up from the seed, so a run replays with the same ids, in order. Two catalogs over
/// one store need different seeds (or one shared source): content ids must not repeat.
#[derive(Debug)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl SequentialIds {
    /// Ids counting from `seed + 1`.
    pub fn new(seed: u64) -> SequentialIds {
        SequentialIds {
            next: AtomicU64::new(seed),
        }
    }
}

impl IdSource for SequentialIds {
    fn uuid(&self) -> Uuid {
        let n = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        // The counter fills the last 8 of the 10 bytes below the timestamp; the variant
        // takes the top 2 bits of the first of them, so ids stay in order below 2^62.
        let mut bits = [0u8; 10];
        bits[2..].copy_from_slice(&(n & (u64::MAX >> 2)).to_be_bytes());
        Builder::from_unix_timestamp_millis(0, &bits).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use floe_commits::ManualClock;

    use super::*;

    #[test]
    fn sequential_ids_replay_from_their_seed_and_sort_in_order() {
        let (a, b) = (SequentialIds::new(7), SequentialIds::new(7));
        let first: Vec<Uuid> = (0..3).map(|_| a.uuid()).collect();
        let again: Vec<Uuid> = (0..3).map(|_| b.uuid()).collect();
        assert_eq!(first, again);
        assert_eq!(first[0].to_string(), "00000000-0000-7000-8000-000000000008");
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        assert!(first.iter().all(|u| u.get_version_num() == 7));
        assert_ne!(SequentialIds::new(8).uuid(), first[0]);
    }

    #[test]
    fn system_ids_carry_the_clocks_time_and_stay_in_order_within_a_millisecond() {
        let clock = Arc::new(ManualClock::new(1_700_000_000_123));
        let ids = UuidV7Ids::new(clock.clone());
        let within: Vec<Uuid> = (0..100).map(|_| ids.uuid()).collect();
        assert!(within.windows(2).all(|w| w[0] < w[1]));
        for u in &within {
            assert_eq!(u.get_version_num(), 7);
            let (secs, nanos) = u.get_timestamp().expect("a v7 timestamp").to_unix();
            assert_eq!(
                secs * 1000 + u64::from(nanos / 1_000_000),
                1_700_000_000_123
            );
        }
    }
}
