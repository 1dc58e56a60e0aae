//! Inline reads (`floe_commits::inline`): the catalog's places that would wait for I/O
//! ask `may_block`, which refuses under the thread's mark with a warehouse error.

pub use floe_commits::inline::run_inline;

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
