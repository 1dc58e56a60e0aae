//! Durability of the sled backend beyond what a SIGKILL can show (the page cache survives
//! a killed process, so a crash test cannot see a missing fsync):
//! - barrier order: every acknowledgement follows the completion of an fdatasync that
//!   began after the acknowledged write, checked on the durability thread's own events;
//! - durable views: a reader never sees a head before it is durable;
//! - poisoning: after a failed fdatasync every call fails, and nothing that was not
//!   durable was reported as committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

mod hooks;

use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use floe_commits::*;
use hooks::{Held, Recorder, barrier_violation};
use parking_lot::Mutex;

#[test]
fn the_barrier_checker_catches_an_early_acknowledgement() {
    use DurabilityEvent::*;
    let good = [
        Written { ticket: 1 },
        SyncStarted { upto: 1 },
        SyncCompleted { upto: 1 },
        Acknowledged { ticket: 1 },
    ];
    assert_eq!(barrier_violation(&good), None);
    // Acknowledged before the sync completed.
    let early = [
        Written { ticket: 1 },
        SyncStarted { upto: 1 },
        Acknowledged { ticket: 1 },
        SyncCompleted { upto: 1 },
    ];
    assert!(barrier_violation(&early).is_some());
    // Covered only by a sync that began before the write.
    let stale = [
        SyncStarted { upto: 1 },
        Written { ticket: 1 },
        SyncCompleted { upto: 1 },
        Acknowledged { ticket: 1 },
    ];
    assert!(barrier_violation(&stale).is_some());
}

fn open(dir: &std::path::Path, hook: Arc<Recorder>) -> (Arc<SledBackend>, Arc<Store>) {
    let backend = Arc::new(SledBackend::open_with(dir, Some(hook)).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    (backend, store)
}

fn table(id: u128, version: i64) -> Content {
    Content {
        id: ContentId::from_u128(id),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!("file:///w/t{id}/v{version}.json"),
            table_uuid: [1; 16],
            snapshot_id: version,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

/// `threads` writers, each `per_thread` commits of a new table under `ns` on one shared
/// branch (and half of them on their own branch); returns the acknowledged commits.
fn concurrent_commits(
    store: &Arc<Store>,
    threads: u128,
    per_thread: u128,
) -> Vec<(RefName, Result<Hash, WriteError>)> {
    let main = RefName::parse("main").unwrap();
    let ctx = WriteCtx::principal("t");
    let ns = Op::Put {
        key: ContentKey::new(["ns"]).unwrap(),
        content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
        expect: Expect::Absent,
    };
    let _ = store.commit(&main, None, vec![ns], CommitMeta::new("t", "ns", 0), &ctx);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, ctx, main) = (store.clone(), ctx.clone(), main.clone());
            std::thread::spawn(move || {
                let own = RefName::parse(&format!("b{t}")).unwrap();
                let head = store.get_ref(&main).unwrap().head;
                let _ = store.create_ref(&own, RefKind::Branch, head, &ctx);
                (0..per_thread)
                    .map(|i| {
                        let branch = if t % 2 == 0 && i % 2 == 0 {
                            own.clone()
                        } else {
                            main.clone()
                        };
                        let id = 1_000 + t * 1_000_000 + i;
                        let op = Op::Put {
                            key: ContentKey::new(["ns", &format!("t{t}_{i}")]).unwrap(),
                            content: table(id, 1),
                            expect: Expect::Absent,
                        };
                        let out = store.commit(
                            &branch,
                            None,
                            vec![op],
                            CommitMeta::new("t", "c", 0),
                            &ctx,
                        );
                        (branch, out.map(|o| o.commit))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn barrier_order(threads: u128, per_thread: u128) {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Recorder::default());
    let (_backend, store) = open(dir.path(), hook.clone());
    let results = concurrent_commits(&store, threads, per_thread);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "every commit lands");
    let events = hook.events.lock().clone();
    assert_eq!(barrier_violation(&events), None);
    let syncs = events
        .iter()
        .filter(|e| matches!(e, DurabilityEvent::SyncCompleted { .. }))
        .count();
    let acks = events
        .iter()
        .filter(|e| matches!(e, DurabilityEvent::Acknowledged { .. }))
        .count();
    assert!(acks as u128 >= threads * per_thread);
    // Group commit: waiting writers share fdatasyncs.
    assert!(syncs < acks, "{syncs} syncs for {acks} acknowledgements");
}

#[test]
fn acknowledgements_follow_their_fdatasync() {
    barrier_order(8, 125);
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_acknowledgements_follow_their_fdatasync_over_10000_commits() {
    barrier_order(16, 625);
}

#[test]
fn readers_see_only_durable_heads() {
    // The hook holds the durability thread at its next sync: a commit is applied (pending)
    // but not durable, and the durable view must not show it.
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(Held::default());
    let backend = Arc::new(SledBackend::open_with(dir.path(), Some(held.clone())).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let main = RefName::parse("main").unwrap();
    let before = store.get_ref(&main).unwrap().head;
    held.close();
    let writer = held.spawn({
        let store = store.clone();
        let main = main.clone();
        move || {
            let op = Op::Put {
                key: ContentKey::new(["ns"]).unwrap(),
                content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
                expect: Expect::Absent,
            };
            let ctx = WriteCtx {
                idempotency: Some(Idempotency {
                    key: "k-1".to_owned(),
                    value: b"answer".to_vec(),
                    claim: None,
                }),
                ..WriteCtx::principal("t")
            };
            store.commit(&main, None, vec![op], CommitMeta::new("t", "ns", 0), &ctx)
        }
    });
    // The writer's move is applied (pending) and it waits for the held sync.
    assert!(
        held.blocks(&writer),
        "the writer is not acknowledged before its sync"
    );
    let pending = backend
        .get_ref(&main, RefView::Pending)
        .unwrap()
        .unwrap()
        .head;
    assert_ne!(pending, before);
    assert_eq!(
        store.get_ref(&main).unwrap().head,
        before,
        "the durable view hides the pending head"
    );
    assert_eq!(
        backend.list_refs(None, 10, RefView::Durable).unwrap()[0]
            .1
            .head,
        before
    );
    // The reflog shows no move a crash could undo, by ref or in the global log.
    let reflog_heads = |name: Option<&RefName>| -> Vec<Option<Hash>> {
        let page = store.reflog(name, None, 10).unwrap();
        page.items.iter().map(|e| e.new).collect()
    };
    assert_eq!(reflog_heads(Some(&main)), vec![Some(before)]);
    assert_eq!(reflog_heads(None), vec![Some(before)]);
    // The idempotency record rides on the pending move: its reader waits for the sync.
    let lookup = held.spawn({
        let store = store.clone();
        move || store.idempotency_lookup("k-1")
    });
    assert!(
        held.blocks(&lookup),
        "an idempotency record is not read before its move is durable"
    );
    held.open();
    let out = writer.join().unwrap().unwrap();
    assert_eq!(out.commit, pending);
    assert_eq!(store.get_ref(&main).unwrap().head, pending);
    let recorded = lookup.join().unwrap().unwrap().unwrap();
    assert_eq!(recorded.head, Some(pending));
    assert_eq!(recorded.value, b"answer");
    assert_eq!(reflog_heads(Some(&main)), vec![Some(pending), Some(before)]);
}

/// Every answer names only durable heads (issue 14, item 1): a write that changes nothing,
/// a dry run and a rejection are all computed from the pending head, so each waits until
/// that head is durable before it answers. The sync is held while a commit is pending; each
/// such answer must block (it shows up waiting on the durability thread, never finished),
/// and once the sync completes each names the pending head.
#[test]
fn answers_computed_from_a_pending_head_wait_until_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(Held::default());
    let backend = Arc::new(SledBackend::open_with(dir.path(), Some(held.clone())).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let main = RefName::parse("main").unwrap();
    let ctx = WriteCtx::principal("t");
    let ns = ContentKey::new(["ns"]).unwrap();
    let t = ContentKey::new(["ns", "t"]).unwrap();
    let put = |key: &ContentKey, content: Content, expect: Expect| Op::Put {
        key: key.clone(),
        content,
        expect,
    };
    let meta = || CommitMeta::new("t", "c", 0);
    let root = store.get_ref(&main).unwrap().head;
    let created = store
        .commit(
            &main,
            None,
            vec![put(
                &ns,
                Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
                Expect::Absent,
            )],
            meta(),
            &ctx,
        )
        .unwrap()
        .commit;
    let u = ContentKey::new(["ns", "u"]).unwrap();
    let made_u = store
        .commit(
            &main,
            None,
            vec![put(&u, table(9, 1), Expect::Absent)],
            meta(),
            &ctx,
        )
        .unwrap()
        .commit;
    // A side branch with a change of its own, for a dry-run merge that has work to do.
    let side = RefName::parse("side").unwrap();
    store
        .create_ref(&side, RefKind::Branch, created, &ctx)
        .unwrap();
    let ns2 = ContentKey::new(["ns2"]).unwrap();
    let side_head = store
        .commit(
            &side,
            None,
            vec![put(
                &ns2,
                Content::namespace(ContentId::from_u128(2), BTreeMap::new()),
                Expect::Absent,
            )],
            meta(),
            &ctx,
        )
        .unwrap()
        .commit;
    held.close();
    // The pending commit on main, its sync held: creates t, deletes u.
    let writer = held.spawn({
        let (store, main, ctx, t, u) = (
            store.clone(),
            main.clone(),
            ctx.clone(),
            t.clone(),
            u.clone(),
        );
        move || {
            let ops = vec![
                Op::Put {
                    key: t,
                    content: table(7, 1),
                    expect: Expect::Absent,
                },
                Op::Delete {
                    key: u,
                    expect: Expect::Present,
                },
            ];
            store.commit(&main, None, ops, CommitMeta::new("t", "c", 0), &ctx)
        }
    });
    assert!(held.blocks(&writer));
    let pending = backend
        .get_ref(&main, RefView::Pending)
        .unwrap()
        .unwrap()
        .head;
    assert_eq!(store.get_ref(&main).unwrap().head, made_u);

    type Answer = Result<Option<Hash>, WriteError>;
    type Case = Box<dyn FnOnce(&Store) -> Answer + Send>;
    let cases: Vec<(&str, Case)> = vec![
        (
            "a commit of checks only",
            Box::new({
                let (main, ctx, t) = (main.clone(), ctx.clone(), t.clone());
                move |s: &Store| {
                    let op = Op::Check {
                        key: t,
                        expect: Expect::Present,
                    };
                    s.commit(&main, None, vec![op], CommitMeta::new("t", "c", 0), &ctx)
                        .map(|o| Some(o.commit))
                }
            }),
        ),
        (
            "a commit that puts the value already there",
            Box::new({
                let (main, ctx, t) = (main.clone(), ctx.clone(), t.clone());
                move |s: &Store| {
                    let op = Op::Put {
                        key: t,
                        content: table(7, 1),
                        expect: Expect::Present,
                    };
                    s.commit(&main, None, vec![op], CommitMeta::new("t", "c", 0), &ctx)
                        .map(|o| Some(o.commit))
                }
            }),
        ),
        (
            "a merge with nothing to merge",
            Box::new({
                let (main, ctx) = (main.clone(), ctx.clone());
                move |s: &Store| {
                    s.merge(
                        created,
                        &main,
                        None,
                        &MergeOptions::default(),
                        &ConflictResolver,
                        &ctx,
                    )
                    .map(|o| Some(o.head))
                }
            }),
        ),
        (
            "a dry-run merge",
            Box::new({
                let (main, ctx) = (main.clone(), ctx.clone());
                move |s: &Store| {
                    let options = MergeOptions {
                        dry_run: true,
                        ..MergeOptions::default()
                    };
                    s.merge(side_head, &main, None, &options, &ConflictResolver, &ctx)
                        .map(|o| Some(o.target_head))
                }
            }),
        ),
        (
            "a cherry-pick already applied",
            Box::new({
                let (main, ctx) = (main.clone(), ctx.clone());
                move |s: &Store| {
                    s.cherry_pick(pending, &main, None, None, &ctx)
                        .map(|o| Some(o.commit))
                }
            }),
        ),
        (
            "a revert already applied",
            Box::new({
                let (main, ctx) = (main.clone(), ctx.clone());
                // The pending commit deleted u: reverting its creation changes nothing.
                move |s: &Store| {
                    s.revert(made_u, &main, None, None, &ctx)
                        .map(|o| Some(o.commit))
                }
            }),
        ),
        (
            "a conflicting commit",
            Box::new({
                let (main, ctx, t) = (main.clone(), ctx.clone(), t.clone());
                move |s: &Store| {
                    let op = Op::Put {
                        key: t,
                        content: table(8, 1),
                        expect: Expect::Absent,
                    };
                    match s.commit(&main, None, vec![op], CommitMeta::new("t", "c", 0), &ctx) {
                        Err(WriteError::Conflict { head, .. }) => Ok(Some(head)),
                        other => other.map(|_| None),
                    }
                }
            }),
        ),
        (
            "an assign with a stale expected head",
            Box::new({
                let (main, ctx) = (main.clone(), ctx.clone());
                move |s: &Store| match s.assign(&main, Some(made_u), root, &ctx) {
                    Err(WriteError::ReferenceConflict { current, .. }) => Ok(current),
                    other => other.map(|_| None),
                }
            }),
        ),
    ];
    let mut waiting = Vec::new();
    for (name, case) in cases {
        let store = store.clone();
        let answer = held.spawn(move || case(&store));
        assert!(
            held.blocks(&answer),
            "{name}: answered before the head it was computed from was durable"
        );
        waiting.push((name, answer));
    }
    held.open();
    assert_eq!(writer.join().unwrap().unwrap().commit, pending);
    for (name, answer) in waiting {
        let got = answer
            .join()
            .unwrap_or_else(|_| panic!("{name}: the thread panicked"));
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{name}: {e}")),
            Some(pending),
            "{name}"
        );
    }
    assert_eq!(barrier_violation(&held.events()), None);
}

#[test]
fn a_failed_fdatasync_poisons_the_store_and_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Recorder {
        fail_sync: Some(10),
        ..Recorder::default()
    });
    let (backend, store) = open(dir.path(), hook.clone());
    let results = concurrent_commits(&store, 4, 100);
    let failed: Vec<&WriteError> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    assert!(
        !failed.is_empty(),
        "the injected failure stops some commits"
    );
    for e in &failed {
        assert!(
            e.is_outcome_unknown() || e.to_string().contains("poisoned"),
            "{e}"
        );
        assert!(!matches!(e, WriteError::Conflict { .. }), "{e}");
    }
    assert!(backend.is_poisoned());
    // Every later call fails, reads included.
    let main = RefName::parse("main").unwrap();
    assert!(store.get_ref(&main).is_err());
    let op = Op::Check {
        key: ContentKey::new(["ns"]).unwrap(),
        expect: Expect::Present,
    };
    let err = store
        .commit(
            &main,
            None,
            vec![op],
            CommitMeta::new("t", "c", 0),
            &WriteCtx::principal("t"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert_eq!(
        hook.syncs.load(Ordering::SeqCst),
        10,
        "a failed fdatasync is never retried"
    );
    drop(store);
    drop(backend);
    // Recovery: every commit reported applied is there.
    let backend = Arc::new(SledBackend::open(dir.path()).unwrap());
    let store = Store::open(backend, Arc::new(SystemClock)).unwrap();
    for (branch, result) in &results {
        if let Ok(hash) = result {
            let head = store.get_ref(branch).unwrap().head;
            assert!(
                store.is_ancestor(*hash, head).unwrap(),
                "acknowledged {hash} is on {branch}"
            );
        }
    }
}

#[test]
fn the_bulk_loader_builds_a_valid_map_that_survives_a_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let main = RefName::parse("main").unwrap();
    let ctx = WriteCtx::principal("fixture");
    let loaded = {
        let backend = Arc::new(SledBackend::open_bulk(dir.path()).unwrap());
        let store = Store::open(backend.clone(), Arc::new(SystemClock)).unwrap();
        let contents = (0..100u128).flat_map(|n| {
            let ns = ContentKey::new([format!("ns{n:03}")]).unwrap();
            let tables: Vec<(ContentKey, Content)> = (0..100u128)
                .map(|t| {
                    (
                        ns.child(&format!("t{t:03}")).unwrap(),
                        table(10_000 + n * 100 + t, 1),
                    )
                })
                .collect();
            std::iter::once((
                ns,
                Content::namespace(ContentId::from_u128(1 + n), BTreeMap::new()),
            ))
            .chain(tables)
        });
        let head = store
            .bulk_load(&main, contents, CommitMeta::new("fixture", "load", 0), &ctx)
            .unwrap();
        // The loaded map is valid: the commit rule works on top of it.
        let dup = Op::Put {
            key: ContentKey::new(["ns000", "copy"]).unwrap(),
            content: table(10_005, 1),
            expect: Expect::Absent,
        };
        let err = store
            .commit(&main, None, vec![dup], CommitMeta::new("t", "dup", 0), &ctx)
            .unwrap_err();
        assert!(matches!(err, WriteError::Conflict { .. }), "{err}");
        backend.flush().unwrap();
        head
    };
    let backend = Arc::new(SledBackend::open(dir.path()).unwrap());
    let store = Store::open(backend, Arc::new(SystemClock)).unwrap();
    assert_eq!(store.get_ref(&main).unwrap().head, loaded);
    let mut count = 0;
    store
        .for_each_entry(loaded, None, |_, _| {
            count += 1;
            true
        })
        .unwrap();
    assert_eq!(count, 100 + 100 * 100);
    let key = ContentKey::new(["ns042", "t017"]).unwrap();
    assert_eq!(
        store
            .get_contents(loaded, std::slice::from_ref(&key))
            .unwrap()[0]
            .as_ref()
            .unwrap()
            .1,
        table(10_000 + 4_200 + 17, 1)
    );
    assert_eq!(
        store
            .key_of_id(loaded, &ContentId::from_u128(10_000 + 4_217))
            .unwrap(),
        Some(key)
    );
}

#[test]
fn an_acknowledged_move_shows_while_later_moves_of_the_ref_still_wait() {
    // Syncs pass the gate one at a time: the first sync covers only the first commit; the
    // second commit lands while it runs and waits for the next sync, which is held.
    #[derive(Debug, Default)]
    struct Turnstile {
        // (passed, allowed, arrived at the gate, callers that began waiting for a sync)
        state: Mutex<(usize, usize, usize, usize)>,
        turned: parking_lot::Condvar,
    }
    impl DurabilityHook for Turnstile {
        fn event(&self, event: DurabilityEvent) {
            if matches!(event, DurabilityEvent::Waiting { .. }) {
                self.state.lock().3 += 1;
                self.turned.notify_all();
            }
        }
        fn sync_fault(&self) -> Option<String> {
            let mut s = self.state.lock();
            s.2 += 1;
            self.turned.notify_all();
            while s.0 >= s.1 {
                self.turned.wait(&mut s);
            }
            s.0 += 1;
            None
        }
    }
    impl Turnstile {
        /// Blocks until `done` holds of the state.
        fn until(&self, done: impl Fn(&(usize, usize, usize, usize)) -> bool) {
            let mut s = self.state.lock();
            while !done(&s) {
                self.turned.wait(&mut s);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Turnstile {
        state: Mutex::new((0, usize::MAX, 0, 0)),
        turned: parking_lot::Condvar::new(),
    });
    let backend = Arc::new(SledBackend::open_with(dir.path(), Some(gate.clone())).unwrap());
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let main = RefName::parse("main").unwrap();
    let before = store.get_ref(&main).unwrap().head;
    // Opening the store made main durably (syncs pass until now); from here syncs wait.
    {
        let mut s = gate.state.lock();
        s.1 = s.0;
    }
    let commit = |n: u128| {
        let store = store.clone();
        let main = main.clone();
        std::thread::spawn(move || {
            let op = Op::Put {
                key: ContentKey::new([format!("ns{n}")]).unwrap(),
                content: Content::namespace(ContentId::from_u128(n), BTreeMap::new()),
                expect: Expect::Absent,
            };
            let ctx = WriteCtx::principal("t");
            store.commit(&main, None, vec![op], CommitMeta::new("t", "ns", 0), &ctx)
        })
    };
    let pending_head = || {
        backend
            .get_ref(&main, RefView::Pending)
            .unwrap()
            .unwrap()
            .head
    };
    let waiting_before = gate.state.lock().3;
    let first = commit(1);
    gate.until(|s| s.3 > waiting_before);
    while pending_head() == before {
        std::thread::yield_now();
    }
    let first_head = pending_head();
    // Once the first sync is held at the gate (its fdatasync done, its coverage fixed), the
    // second commit lands and needs the next sync.
    gate.until(|s| s.2 > s.0);
    let waiting = gate.state.lock().3;
    let second = commit(2);
    while pending_head() == first_head {
        std::thread::yield_now();
    }
    let second_head = pending_head();
    gate.until(|s| s.3 > waiting);
    // Let exactly one sync through: the first commit is acknowledged...
    {
        let mut s = gate.state.lock();
        s.1 = s.0 + 1;
        gate.turned.notify_all();
    }
    let out = first.join().unwrap().unwrap();
    assert_eq!(out.commit, first_head);
    // ...and the durable view shows it at once, though a later move of main still waits.
    assert!(
        !second.is_finished(),
        "the second commit waits for its sync"
    );
    assert_eq!(
        store.get_ref(&main).unwrap().head,
        first_head,
        "an acknowledged commit is visible while later ones are pending"
    );
    {
        let mut s = gate.state.lock();
        s.1 = usize::MAX;
        gate.turned.notify_all();
    }
    assert_eq!(second.join().unwrap().unwrap().commit, second_head);
    assert_eq!(store.get_ref(&main).unwrap().head, second_head);
}
