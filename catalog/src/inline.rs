//! Reads that may run on the caller's thread, an async server's worker: a read whose data
//! is in memory (the store's, on sled or in memory, and the catalog's caches) needs no hop
//! to a blocking thread, which costs more than such a read. `run_inline` runs one with a
//! mark on the thread; every place that would wait for I/O (the warehouse's files, the S3
//! runtime, STS, a lock held across a call to one) asks `may_block` first, which refuses
//! under the mark and notes that it did. The caller then throws the answer away, whatever
//! it says (a caller may have turned the refusal into "absent"), and runs the read again
//! where it may block.

use std::cell::Cell;

use crate::warehouse::WarehouseError;

/// Where the thread is: not inline, inline, or inline and refused I/O since.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Off,
    Inline,
    Refused,
}

thread_local! {
    static MARK: Cell<Mark> = const { Cell::new(Mark::Off) };
}

/// Runs the read `f` on this thread without waiting for any I/O: `None` when it needed
/// some (run it again where it may block), else its answer.
pub fn run_inline<R>(f: impl FnOnce() -> R) -> Option<R> {
    struct Reset(Mark);
    impl Drop for Reset {
        fn drop(&mut self) {
            MARK.with(|m| m.set(self.0));
        }
    }
    let outer = MARK.with(|m| m.replace(Mark::Inline));
    // Put back whatever the thread was, even if `f` panics.
    let _reset = Reset(outer);
    let answer = f();
    let refused = MARK.with(|m| m.get()) == Mark::Refused;
    (!refused).then_some(answer)
}

/// Refuses (and notes the refusal) when the thread runs a read inline: the caller is
/// about to wait for I/O.
pub(crate) fn may_block() -> Result<(), WarehouseError> {
    MARK.with(|m| {
        if m.get() == Mark::Off {
            return Ok(());
        }
        m.set(Mark::Refused);
        Err(WarehouseError::Unavailable(
            "an inline read needs I/O: it runs again on a blocking thread".to_owned(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_needs_io_is_refused_and_its_answer_dropped() {
        assert_eq!(run_inline(|| 7), Some(7));
        // The refusal is noted even if the read swallowed the error.
        assert_eq!(run_inline(|| may_block().is_ok()), None);
        // Outside, nothing is refused, and the mark does not linger.
        assert!(may_block().is_ok());
        assert_eq!(run_inline(|| 8), Some(8));
    }

    #[test]
    fn a_panic_inside_puts_the_mark_back() {
        let caught = std::panic::catch_unwind(|| run_inline(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(may_block().is_ok());
    }
}
