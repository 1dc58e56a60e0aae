//! Reads that may run on the caller's thread, an async server's worker: a read whose data
//! is in memory (the store's refs and objects, on sled or in memory, and the catalog's
//! caches) needs no hop to a blocking thread, which costs more than such a read.
//! `run_inline` runs one with a mark on the thread; every place that would wait (for I/O:
//! the warehouse's files, STS; for a flush: the store's meta reads, which on sled wait
//! for pending writes to be durable) asks `may_block` first, which refuses under the mark
//! and notes that it did. The caller then throws the answer away, whatever it says (a
//! caller may have turned the refusal into "absent"), and runs the read again where it
//! may block. Here, below the catalog, so that the store can refuse its own waits.

use std::cell::{Cell, RefCell};

use crate::backend::RefRecord;
use crate::name::RefName;

/// Where the thread is: not inline, inline, inline and wanting refs it has not got, or
/// inline and refused I/O since. Later states outrank earlier ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Off,
    Inline,
    WantsRefs,
    Refused,
}

thread_local! {
    static MARK: Cell<Mark> = const { Cell::new(Mark::Off) };
    /// Refs read for this inline run before it began (`run_inline_with`).
    static PINS: RefCell<Vec<(RefName, Option<RefRecord>)>> = const { RefCell::new(Vec::new()) };
    /// Refs the inline run wanted and had not got.
    static WANTED: RefCell<Vec<RefName>> = const { RefCell::new(Vec::new()) };
}

/// How an inline read with pinned refs ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Inline<R> {
    Answered(R),
    /// It read refs it was not given, on a store whose refs are not in memory: read them
    /// without blocking the thread (`Backend::read_refs_async`) and run it again with them
    /// pinned.
    NeedsRefs(Vec<RefName>),
    /// It needed other I/O: run it again where it may block.
    NeedsIo,
}

/// Runs the read `f` on this thread without waiting for any I/O: `None` when it needed
/// some (run it again where it may block), else its answer.
pub fn run_inline<R>(f: impl FnOnce() -> R) -> Option<R> {
    match run_inline_with(&[], f) {
        Inline::Answered(answer) => Some(answer),
        Inline::NeedsRefs(_) | Inline::NeedsIo => None,
    }
}

/// Runs the read `f` on this thread without waiting for any I/O, its reads of the refs in
/// `pins` answered with the records given (read after the request arrived, so the answer
/// is as fresh as one that read them itself).
pub fn run_inline_with<R>(
    pins: &[(RefName, Option<RefRecord>)],
    f: impl FnOnce() -> R,
) -> Inline<R> {
    /// Puts back what the thread had, even if `f` panics; an inline run inside another
    /// passes what it wanted out (the outer read needed it too).
    struct Reset {
        mark: Mark,
        pins: Vec<(RefName, Option<RefRecord>)>,
        wanted: Vec<RefName>,
    }
    impl Drop for Reset {
        fn drop(&mut self) {
            MARK.with(|m| m.set(self.mark));
            PINS.with(|p| std::mem::swap(&mut *p.borrow_mut(), &mut self.pins));
            WANTED.with(|w| std::mem::swap(&mut *w.borrow_mut(), &mut self.wanted));
        }
    }
    let outer = MARK.with(|m| m.replace(Mark::Inline));
    let mut reset = Reset {
        mark: outer,
        pins: PINS.with(|p| {
            let mut p = p.borrow_mut();
            // A nested run sees the outer run's pins too.
            let mut inner = if outer == Mark::Off {
                Vec::new()
            } else {
                p.clone()
            };
            inner.extend(pins.iter().cloned());
            std::mem::replace(&mut *p, inner)
        }),
        wanted: WANTED.with(|w| std::mem::take(&mut *w.borrow_mut())),
    };
    let answer = f();
    let end = MARK.with(|m| m.get());
    let wanted = WANTED.with(|w| std::mem::take(&mut *w.borrow_mut()));
    if outer != Mark::Off {
        reset.mark = outer.max(end);
        reset.wanted.extend(wanted.iter().cloned());
    }
    match end {
        Mark::Off | Mark::Inline => Inline::Answered(answer),
        Mark::WantsRefs => Inline::NeedsRefs(wanted),
        Mark::Refused => Inline::NeedsIo,
    }
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

/// Whether the thread runs an inline read that was already refused (it wanted I/O or a
/// ref it has not got): whatever it answers is thrown away, so an error it builds now is
/// the refusal's echo, not worth logging.
pub fn refused() -> bool {
    MARK.with(|m| m.get()) >= Mark::WantsRefs
}

/// The record pinned for `name` in this inline run (`Some(None)`: pinned as absent), if
/// the thread runs one and it was given the ref.
pub fn pinned_ref(name: &RefName) -> Option<Option<RefRecord>> {
    if MARK.with(|m| m.get()) == Mark::Off {
        return None;
    }
    PINS.with(|p| {
        p.borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
    })
}

/// Whether a ref not in memory may be read now: yes outside an inline run; inside one,
/// no, and the ref is noted as wanted (the caller fails instead of waiting).
pub fn may_read_ref(name: &RefName) -> bool {
    MARK.with(|m| match m.get() {
        Mark::Off => true,
        mark => {
            m.set(mark.max(Mark::WantsRefs));
            WANTED.with(|w| {
                let mut w = w.borrow_mut();
                if !w.contains(name) {
                    w.push(name.clone());
                }
            });
            false
        }
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

    /// On a store whose refs are not in memory (PostgreSQL; here its stand-in), an inline
    /// read names the refs it wanted; run again with them pinned, it answers from the
    /// pins, an absent ref included, and a nested inline run sees them too.
    #[test]
    fn refs_not_in_memory_are_wanted_then_answered_from_their_pins() {
        use std::sync::Arc;
        let store = crate::store::Store::open(
            Arc::new(crate::memory::MemoryBackend::shared()),
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        let main = RefName::parse("main").unwrap();
        let gone = RefName::parse("gone").unwrap();
        let read = || {
            let head = store.get_ref(&main).map(|r| r.head);
            let nested = run_inline(|| store.get_ref(&gone).is_err());
            (head, nested)
        };
        let wanted = match run_inline_with(&[], read) {
            Inline::NeedsRefs(names) => names,
            other => panic!(
                "wanted the refs, got {:?}",
                matches!(other, Inline::Answered(_))
            ),
        };
        assert_eq!(wanted, [main.clone(), gone.clone()]);
        let records = futures_ready(store.read_refs_async(wanted.clone()).expect("a path"));
        assert_eq!(records[1], None, "an absent ref reads as absent");
        let pins: Vec<_> = wanted.into_iter().zip(records).collect();
        let Inline::Answered((head, nested)) = run_inline_with(&pins, read) else {
            panic!("answered from the pins");
        };
        assert_eq!(head.ok(), store.get_ref(&main).ok().map(|r| r.head));
        assert_eq!(nested, Some(true), "the nested run saw the absent pin");
        // The pins last only as long as their run; a meta read is still refused.
        assert!(pinned_ref(&main).is_none());
        assert!(matches!(
            run_inline_with(&pins, || store.meta_get(b"k").is_err()),
            Inline::NeedsIo
        ));
    }

    /// The answer of a future that is ready at once.
    fn futures_ready<T>(
        f: impl std::future::Future<Output = crate::backend::BackendResult<T>>,
    ) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
            .unwrap()
    }

    #[test]
    fn a_panic_inside_puts_the_mark_back() {
        let caught = std::panic::catch_unwind(|| run_inline(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(may_block());
    }
}
