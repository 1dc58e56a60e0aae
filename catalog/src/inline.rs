//! Inline reads (`floe_commits::inline`): the catalog's places that would wait for I/O
//! ask `may_block`, which refuses under the thread's mark with a warehouse error.

pub use floe_commits::inline::{refused, run_inline};

use floe_commits::RefName;
use floe_commits::inline::{Inline, run_inline_with};

use crate::Catalog;

/// How many times the refs a read asked for are fetched for it before it gives up and
/// runs where it may block: a read that reads a ref it finds through another (a ref
/// named in a ref's record) asks twice.
const FETCH_ROUNDS: usize = 2;

/// Runs the read `f` on this async task without waiting on a thread: inline at once when
/// the catalog's store answers from memory; on a store whose refs live elsewhere
/// (PostgreSQL), inline with the refs it reads fetched first without blocking the
/// thread, read for this request (after it arrived), so the answer is as fresh as one
/// that read them itself. `None` when it needed other I/O (a metadata file not cached,
/// an object not cached, credentials): run it again where it may block. Reads change
/// nothing, so running one again is harmless.
///
/// `at` names the ref the read is of, when the caller knows it (an Iceberg prefix): it is
/// fetched before the first run, which otherwise runs only to learn it.
pub async fn read<R>(catalog: &Catalog, at: Option<RefName>, f: impl Fn() -> R) -> Option<R> {
    if catalog.reads_inline() {
        return run_inline(f);
    }
    let mut pins = Vec::new();
    if let Some(name) = at {
        let records = catalog
            .store
            .read_refs_async(vec![name.clone()])?
            .await
            .ok()?;
        pins.extend(std::iter::once(name).zip(records));
    }
    for round in 0..=FETCH_ROUNDS {
        match run_inline_with(&pins, &f) {
            Inline::Answered(answer) => return Some(answer),
            Inline::NeedsIo => return None,
            // The last run's wants are not fetched: nothing would run with them.
            Inline::NeedsRefs(_) if round == FETCH_ROUNDS => return None,
            Inline::NeedsRefs(names) => {
                let records = catalog.store.read_refs_async(names.clone())?.await.ok()?;
                pins.extend(names.into_iter().zip(records));
            }
        }
    }
    None
}

use crate::warehouse::WarehouseError;

/// Refuses (and notes the refusal) when the thread runs a read inline: the caller is
/// about to wait for I/O.
pub(crate) fn may_block() -> Result<(), WarehouseError> {
    if floe_commits::inline::may_block() {
        return Ok(());
    }
    Err(WarehouseError::Unavailable(
        floe_commits::inline::REFUSED.to_owned(),
    ))
}
