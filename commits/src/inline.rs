//! Reads that may run on the caller's thread, an async server's worker: a read whose data
//! is in memory (the store's refs and objects, on sled or in memory, and the catalog's
//! caches) needs no hop to a blocking thread, which costs more than such a read.
//! `run_inline` runs one with a mark on the thread; every place that would wait (for I/O:
//! the warehouse's files, STS; for a flush: the store's meta reads, which on sled wait
//! for pending writes to be durable) asks `may_block` first, which refuses under the mark
//! and notes that it did. The caller then throws the answer away, whatever it says (a
//! caller may have turned the refusal into "absent"), and runs the read again where it
//! may block. Here, below the catalog, so that the store can refuse its own waits.

use std::cell::Cell;

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
    // Put back whatever the thread was, even if `f` panics; an inline run inside another
    // passes its refusal out (the outer read needed the I/O too).
    let mut reset = Reset(outer);
    let answer = f();
    let refused = MARK.with(|m| m.get()) == Mark::Refused;
    if refused && outer != Mark::Off {
        reset.0 = Mark::Refused;
    }
    (!refused).then_some(answer)
}

/// False (and the refusal noted) when the thread runs a read inline: the caller is about
/// to wait, and must fail instead.
pub fn may_block() -> bool {
    MARK.with(|m| {
        if m.get() == Mark::Off {
            return true;
        }
        m.set(Mark::Refused);
        false
    })
}

/// What a refused wait says, to whoever turns it into an error.
pub const REFUSED: &str = "an inline read needs to wait: it runs again on a blocking thread";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_needs_io_is_refused_and_its_answer_dropped() {
        assert_eq!(run_inline(|| 7), Some(7));
        // The refusal is noted even if the read swallowed it.
        assert_eq!(run_inline(may_block), None);
        // Outside, nothing is refused, and the mark does not linger.
        assert!(may_block());
        assert_eq!(run_inline(|| 8), Some(8));
        // A refusal inside a nested inline run refuses the outer one too.
        assert_eq!(run_inline(|| run_inline(may_block).is_none()), None);
    }

    /// A meta read (which on sled waits for pending writes) is refused inline; refs are
    /// read inline.
    #[test]
    fn the_store_refuses_meta_reads_inline_and_answers_refs() {
        use std::sync::Arc;
        let store = crate::store::Store::open(
            Arc::new(crate::memory::MemoryBackend::new()),
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        store.meta_put(b"k", b"v").unwrap();
        assert_eq!(run_inline(|| store.meta_get(b"k").is_err()), None);
        assert_eq!(
            run_inline(|| store.meta_scan(b"k", None, 10).is_err()),
            None
        );
        assert_eq!(store.meta_get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        let main = crate::name::RefName::parse("main").unwrap();
        let inline = run_inline(|| store.get_ref(&main).map(|r| r.head)).expect("answered");
        assert_eq!(inline.ok(), store.get_ref(&main).ok().map(|r| r.head));
    }

    #[test]
    fn a_panic_inside_puts_the_mark_back() {
        let caught = std::panic::catch_unwind(|| run_inline(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(may_block());
    }
}
