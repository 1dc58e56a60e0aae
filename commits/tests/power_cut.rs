//! Power cuts between the write-ahead log and the index (sled). A SIGKILL keeps the page
//! cache, so the crash test cannot show what a power cut loses; here the device is
//! simulated by copying files at the moments that matter:
//! - the index as the last checkpoint left it on the device (everything sled wrote since
//!   was only in the page cache, and is gone), with the log as its fdatasyncs left it:
//!   every acknowledged write comes back, replayed from the log;
//! - an index ahead of the log (the page cache wrote sled's pages back, but the log's
//!   last groups never reached the device): recovery keeps the newer index and replays
//!   nothing on top of it, so no ref moves back under reflog entries that came after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use floe_commits::*;

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, &[]);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The index's files (sled's), without the log or the process lock.
fn copy_index(store: &Path, to: &Path) {
    copy_dir(store, to, &["wal", "floe.lock"]);
}

fn copy_log(store: &Path, to: &Path) {
    copy_dir(&store.join("wal"), &to.join("wal"), &[]);
}

fn open(dir: &Path) -> (Arc<SledBackend>, Store) {
    let backend = Arc::new(SledBackend::open(dir).unwrap());
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
    (backend, store)
}

fn main_ref() -> RefName {
    RefName::parse("main").unwrap()
}

/// One commit on main adding namespace `ns{i}`; returns the new head.
fn commit(store: &Store, i: u128) -> Hash {
    let op = Op::Put {
        key: ContentKey::new([format!("ns{i}")]).unwrap(),
        content: Content::namespace(ContentId::from_u128(i + 1), BTreeMap::new()),
        expect: Expect::Absent,
    };
    let out = store
        .commit(
            &main_ref(),
            None,
            vec![op],
            CommitMeta::new("t", format!("c{i}"), 0),
            &WriteCtx::principal("t"),
        )
        .unwrap();
    assert!(out.created);
    out.commit
}

/// Every commit of main's history, newest first, read back whole.
fn history(store: &Store) -> Vec<Hash> {
    let head = store.get_ref(&main_ref()).unwrap().head;
    let page = store.log(head, &LogFilter::default(), 1_000).unwrap();
    assert!(page.next.is_none());
    page.items.iter().map(|(h, _)| *h).collect()
}

/// main's reflog, newest first: (seq, new head).
fn reflog(backend: &SledBackend) -> Vec<(u64, Option<Hash>)> {
    backend
        .reflog(Some(&main_ref()), None, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.new))
        .collect()
}

/// The newest reflog entry's sequence number, of any ref.
fn newest_seq(backend: &SledBackend) -> u64 {
    backend.reflog(None, None, 1).unwrap()[0].seq
}

/// A store in `root/live` with `commits` commits on main and a checkpoint after them,
/// and `root/device` holding the index as that checkpoint left it on the device.
fn checkpointed(
    root: &Path,
    commits: u128,
) -> (PathBuf, PathBuf, Arc<SledBackend>, Store, Vec<Hash>) {
    let live = root.join("live");
    let device = root.join("device");
    let (backend, store) = open(&live);
    let heads: Vec<Hash> = (0..commits).map(|i| commit(&store, i)).collect();
    backend.checkpoint().unwrap();
    copy_index(&live, &device);
    (live, device, backend, store, heads)
}

#[test]
fn a_power_cut_that_loses_the_unflushed_index_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    // What the checkpoint left on the device: sled's files, flushed.
    let (live, device, backend, store, mut heads) = checkpointed(root.path(), 5);
    copy_index(&live, &root.path().join("index-alone"));

    // Acknowledged after the checkpoint: in sled's memory (and the page cache) and in the
    // log's fdatasynced groups only.
    heads.extend((5..40).map(|i| commit(&store, i)));
    let ctx = WriteCtx::principal("t");
    let side = RefName::parse("side").unwrap();
    store
        .create_ref(&side, RefKind::Branch, heads[10], &ctx)
        .unwrap();
    let gone = RefName::parse("gone").unwrap();
    store
        .create_ref(&gone, RefKind::Tag, heads[3], &ctx)
        .unwrap();
    store.delete_ref(&gone, Some(heads[3]), &ctx).unwrap();
    store.meta_put(b"runs/1", b"state one").unwrap();
    assert!(
        store
            .meta_cas(b"runs/1", Some(b"state one"), Some(b"state two"))
            .unwrap()
    );
    store.meta_put(b"runs/2", b"to remove").unwrap();
    assert!(store.meta_cas(b"runs/2", Some(b"to remove"), None).unwrap());
    let expected_reflog = reflog(&backend);
    let last_seq = newest_seq(&backend);
    copy_log(&live, &device);

    // The index alone is behind: the test would prove nothing otherwise.
    {
        let (_, behind) = open(&root.path().join("index-alone"));
        assert_eq!(behind.get_ref(&main_ref()).unwrap().head, heads[4]);
        assert_eq!(behind.meta_get(b"runs/1").unwrap(), None);
    }

    let (recovered_backend, recovered) = open(&device);
    let mut newest_first = heads.clone();
    newest_first.reverse();
    let found = history(&recovered);
    assert_eq!(found[..newest_first.len()], newest_first[..]);
    assert_eq!(recovered.get_ref(&side).unwrap().head, heads[10]);
    assert!(
        recovered.get_ref(&gone).is_err(),
        "the deleted tag stays deleted"
    );
    assert_eq!(
        recovered.meta_get(b"runs/1").unwrap().as_deref(),
        Some(&b"state two"[..])
    );
    assert_eq!(recovered.meta_get(b"runs/2").unwrap(), None);
    assert_eq!(reflog(&recovered_backend), expected_reflog);

    // The recovered store goes on: the next reflog entry follows the last one of any ref.
    assert_eq!(newest_seq(&recovered_backend), last_seq);
    let next = commit(&recovered, 100);
    let after = reflog(&recovered_backend);
    assert_eq!(after[0], (last_seq + 1, Some(next)));
}

#[test]
fn an_index_ahead_of_the_log_is_not_rolled_back() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let device = root.path().join("device");
    let (backend, store) = open(&live);
    let mut heads: Vec<Hash> = (0..5).map(|i| commit(&store, i)).collect();
    backend.checkpoint().unwrap();
    heads.extend((5..8).map(|i| commit(&store, i)));
    store.meta_put(b"k", b"old").unwrap();
    // The log as its groups reached the device so far; later groups never do.
    copy_log(&live, &device);
    heads.extend((8..12).map(|i| commit(&store, i)));
    store.meta_put(b"k", b"new").unwrap();
    // sled's pages reached the device (written back from the page cache).
    backend.flush_index_only().unwrap();
    copy_index(&live, &device);
    let expected_reflog = reflog(&backend);

    let (recovered_backend, recovered) = open(&device);
    assert_eq!(recovered.get_ref(&main_ref()).unwrap().head, heads[11]);
    assert_eq!(
        recovered.meta_get(b"k").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(reflog(&recovered_backend), expected_reflog);
    let next = commit(&recovered, 100);
    let after = reflog(&recovered_backend);
    assert_eq!(after.len(), expected_reflog.len() + 1);
    assert_eq!(after[0], (expected_reflog[0].0 + 1, Some(next)));
    assert_eq!(history(&recovered)[1], heads[11]);
}

#[test]
fn a_clean_close_leaves_nothing_to_replay_and_reopens_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let heads: Vec<Hash> = {
        let (_, store) = open(dir.path());
        (0..20).map(|i| commit(&store, i)).collect()
    };
    let segments: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(segments.is_empty(), "left {segments:?}");
    let mut head = heads[19];
    for round in 0..3 {
        let (backend, store) = open(dir.path());
        assert_eq!(store.get_ref(&main_ref()).unwrap().head, head);
        let log = reflog(&backend);
        // The reflog stays one sequence across reopenings.
        assert!(log.windows(2).all(|w| w[0].0 == w[1].0 + 1), "{log:?}");
        assert_eq!(
            log.len(),
            21 + round,
            "main's creation, 20 commits, one per round"
        );
        head = commit(&store, 100 + round as u128);
    }
}

#[test]
fn segments_are_sealed_checkpointed_and_removed_under_concurrent_writers() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let backend = Arc::new(SledBackend::open_with_segment_bytes(&live, 16 * 1024).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let ctx = WriteCtx::principal("t");
    let segment_names = || -> Vec<_> {
        std::fs::read_dir(live.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let first = segment_names();
    let heads: Vec<(RefName, Hash)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4u128)
            .map(|t| {
                let (store, ctx) = (store.clone(), ctx.clone());
                s.spawn(move || {
                    let branch = RefName::parse(&format!("w{t}")).unwrap();
                    let root = store.get_ref(&main_ref()).unwrap().head;
                    store
                        .create_ref(&branch, RefKind::Branch, root, &ctx)
                        .unwrap();
                    let mut head = root;
                    for i in 0..60u128 {
                        let op = Op::Put {
                            key: ContentKey::new([format!("ns{i}")]).unwrap(),
                            content: Content::namespace(
                                ContentId::from_u128(t * 1000 + i + 1),
                                BTreeMap::new(),
                            ),
                            expect: Expect::Absent,
                        };
                        head = store
                            .commit(&branch, None, vec![op], CommitMeta::new("t", "c", 0), &ctx)
                            .unwrap()
                            .commit;
                    }
                    (branch, head)
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // Before any checkpoint asked for: the writers filled segments, and the durability
    // thread sealed them on its own (the current segment is a later one).
    let current = segment_names().into_iter().max().unwrap();
    assert!(current > first[0], "{current:?} after {first:?}");
    backend.checkpoint().unwrap();
    let now = segment_names();
    assert_eq!(
        now.len(),
        1,
        "sealed segments are removed once checkpointed"
    );
    for (i, (branch, _)) in heads.iter().enumerate() {
        store
            .commit(
                branch,
                None,
                vec![Op::Put {
                    key: ContentKey::new(["after"]).unwrap(),
                    content: Content::namespace(
                        ContentId::from_u128(90_000 + i as u128),
                        BTreeMap::new(),
                    ),
                    expect: Expect::Absent,
                }],
                CommitMeta::new("t", "after", 0),
                &ctx,
            )
            .unwrap();
    }
    let expected: Vec<(RefName, Hash)> = heads
        .iter()
        .map(|(b, _)| (b.clone(), store.get_ref(b).unwrap().head))
        .collect();
    // A power cut now: the index as it is on disk, and the log.
    let device = root.path().join("device");
    copy_log(&live, &device);
    copy_index(&live, &device);
    let (_, recovered) = open(&device);
    for (branch, head) in &expected {
        assert_eq!(recovered.get_ref(branch).unwrap().head, *head);
        let page = recovered.log(*head, &LogFilter::default(), 1_000).unwrap();
        assert_eq!(
            page.items.len(),
            62,
            "60 commits, the one after, main's root"
        );
    }
}

/// The device's copy of the index: sled's files as each flush of the index left them
/// (copied while nothing else writes, as these tests arrange). With `cut`, the first
/// removal of log segments also takes a power-cut image there: that index, and the log
/// as the removal left it.
#[derive(Debug)]
struct Device {
    store: PathBuf,
    index: PathBuf,
    cut: Option<PathBuf>,
    cut_taken: std::sync::atomic::AtomicBool,
}

impl Device {
    fn new(store: &Path, index: &Path, cut: Option<&Path>) -> Arc<Device> {
        Arc::new(Device {
            store: store.to_owned(),
            index: index.to_owned(),
            cut: cut.map(Path::to_owned),
            cut_taken: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl floe_commits::sled_store::DurabilityHook for Device {
    fn event(&self, event: floe_commits::sled_store::DurabilityEvent) {
        use floe_commits::sled_store::DurabilityEvent::*;
        match event {
            IndexFlushed => {
                let _ = std::fs::remove_dir_all(&self.index);
                copy_index(&self.store, &self.index);
            }
            SegmentsRemoved => {
                if let Some(cut) = &self.cut
                    && !self
                        .cut_taken
                        .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    copy_dir(&self.index, cut, &[]);
                    copy_log(&self.store, cut);
                }
            }
            _ => {}
        }
    }
}

/// Recovery flushes sled before it removes the log it replayed: a power cut right after
/// an open that replayed loses nothing.
#[test]
fn what_recovery_replayed_is_on_the_device_before_the_log_goes() {
    let root = tempfile::tempdir().unwrap();
    let (live, device, backend, store, mut heads) = checkpointed(root.path(), 3);
    heads.extend((3..10).map(|i| commit(&store, i)));
    store.meta_put(b"k", b"v").unwrap();
    copy_log(&live, &device);
    drop((store, backend));

    // The device's store opens (replaying 3..10), and the power goes at once: the index
    // as its last flush left it, the log as recovery left it.
    let image = root.path().join("image");
    copy_index(&device, &image);
    let hook = Device::new(&device, &image, None);
    let recovered = SledBackend::open_with(&device, Some(hook)).unwrap();
    copy_log(&device, &image);
    std::mem::forget(recovered);
    let (_, again) = open(&image);
    assert_eq!(again.get_ref(&main_ref()).unwrap().head, heads[9]);
    assert_eq!(again.meta_get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A checkpoint removes log segments only once the index that holds their records is on
/// the device: a power cut at the removal loses nothing.
#[test]
fn a_checkpoint_removes_the_log_only_after_the_index_is_flushed() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let image = root.path().join("image");
    let cut = root.path().join("cut");
    let hook = Device::new(&live, &image, Some(&cut));
    let backend = Arc::new(SledBackend::open_with(&live, Some(hook)).unwrap());
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
    let heads: Vec<Hash> = (0..10).map(|i| commit(&store, i)).collect();
    store.meta_put(b"k", b"v").unwrap();
    backend.checkpoint().unwrap();
    assert!(cut.exists(), "the checkpoint removed the sealed segment");
    let (_, after_cut) = open(&cut);
    assert_eq!(after_cut.get_ref(&main_ref()).unwrap().head, heads[9]);
    assert_eq!(
        after_cut.meta_get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
