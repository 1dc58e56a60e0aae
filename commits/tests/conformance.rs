//! The conformance suite of the version store, generic over `Backend`: every operation,
//! every merge case, read-only specs, bad names and specs, limits and outcomes. Each
//! backend instantiates every case through `all_cases!` (sled joins with its own line).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use floe_commits::backend::BackendResult;
use floe_commits::limits::*;
use floe_commits::*;

// ----- fixture ---------------------------------------------------------------------------

struct Fx {
    store: Store,
    clock: Arc<ManualClock>,
    backend: Arc<dyn Backend>,
    /// The folder of an on-disk backend, removed when the case ends.
    dir: Option<tempfile::TempDir>,
}

impl Fx {
    fn new(backend: Arc<dyn Backend>) -> Fx {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open(backend.clone(), clock.clone()).expect("a new store opens");
        Fx {
            store,
            clock,
            backend,
            dir: None,
        }
    }

    fn memory() -> Fx {
        Fx::new(Arc::new(MemoryBackend::new()))
    }

    fn sled() -> Fx {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let backend = SledBackend::open(dir.path()).expect("a new sled store opens");
        Fx {
            dir: Some(dir),
            ..Fx::new(Arc::new(backend))
        }
    }

    /// A catalog in a schema of its own on the test cluster (`FLOE_TEST_PG`, which
    /// `.ci/run` sets; `source .ci/pg.sh && pg_up` starts one by hand).
    fn postgres() -> Fx {
        Fx::new(Arc::new(
            PostgresBackend::open(&PgOptions::for_test())
                .expect("the test PostgreSQL is reachable"),
        ))
    }

    fn head(&self, name: &str) -> Hash {
        self.store.get_ref(&r(name)).expect("ref exists").head
    }

    fn commit(&self, branch: &str, ops: Vec<Op>) -> Result<CommitOutcome, WriteError> {
        self.clock.advance(1_000);
        self.store
            .commit(&r(branch), None, ops, meta("a commit"), &ctx())
    }

    fn ok(&self, branch: &str, ops: Vec<Op>) -> Hash {
        let out = self.commit(branch, ops).expect("the commit lands");
        assert!(out.created);
        out.commit
    }

    fn branch(&self, name: &str, from: &str) {
        self.store
            .create_ref(&r(name), RefKind::Branch, self.head(from), &ctx())
            .expect("branch created");
    }

    /// The map at a commit, as `key -> (kind, id)`, through paged listing.
    fn map(&self, at: Hash) -> BTreeMap<String, (ContentKind, ContentId)> {
        let mut out = BTreeMap::new();
        let mut after: Option<ContentKey> = None;
        loop {
            let page = self.store.entries(at, None, after.as_ref(), 3).unwrap();
            for e in &page.items {
                out.insert(e.key.to_string(), (e.content.kind, e.content.id));
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    fn keys(&self, branch: &str) -> Vec<String> {
        self.map(self.head(branch)).into_keys().collect()
    }

    fn merge(
        &self,
        from: &str,
        into: &str,
        options: MergeOptions,
    ) -> Result<MergeOutcome, WriteError> {
        self.clock.advance(1_000);
        self.store.merge(
            self.head(from),
            &r(into),
            None,
            &options,
            &ConflictResolver,
            &ctx(),
        )
    }

    fn reflog_len(&self) -> usize {
        self.store
            .reflog(None, None, REFLOG_PAGE_MAX)
            .unwrap()
            .items
            .len()
    }
}

fn r(name: &str) -> RefName {
    RefName::parse(name).unwrap()
}

fn ctx() -> WriteCtx {
    WriteCtx::principal("alice")
}

fn meta(message: &str) -> CommitMeta {
    CommitMeta::new("alice", message, 42)
}

fn key(path: &str) -> ContentKey {
    ContentKey::new(path.split('.')).unwrap()
}

fn ns(id: u128) -> Content {
    Content::namespace(ContentId::from_u128(id), BTreeMap::new())
}

fn table(id: u128, version: i64) -> Content {
    Content {
        id: ContentId::from_u128(id),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!("file:///w/t{id}/metadata/v{version}.json"),
            table_uuid: [id as u8; 16],
            snapshot_id: version,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

fn create(path: &str, content: Content) -> Op {
    Op::Put {
        key: key(path),
        content,
        expect: Expect::Absent,
    }
}

fn update(path: &str, old: &Content, content: Content) -> Op {
    Op::Put {
        key: key(path),
        content,
        expect: Expect::Is(old.hash()),
    }
}

fn delete(path: &str) -> Op {
    Op::Delete {
        key: key(path),
        expect: Expect::Present,
    }
}

fn conflict_kinds(e: &WriteError) -> Vec<(String, ConflictKind)> {
    match e {
        WriteError::Conflict { conflicts, .. } => conflicts
            .iter()
            .map(|c| (c.key.to_string(), c.kind))
            .collect(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A namespace `ns` with tables `ns.a` and `ns.b` on main.
fn seeded(fx: &Fx) -> Hash {
    fx.ok(
        "main",
        vec![
            create("ns", ns(1)),
            create("ns.a", table(10, 1)),
            create("ns.b", table(11, 1)),
        ],
    )
}

// ----- the cases -------------------------------------------------------------------------

mod cases {
    use super::*;

    /// Objects given with a ref move are written whether or not it applies, and read back
    /// after (a store caches a commit's nodes once its move returned, and its retry after
    /// a mismatch refers to them).
    pub fn objects_given_with_a_move_are_written_whether_or_not_it_applies(fx: Fx) {
        let record = fx.store.get_ref(&r("main")).unwrap();
        let main = record.head;
        let object = |tag: &str| {
            let bytes = Bytes::from(format!("an object written with a move, {tag}"));
            (Hash::of(&bytes), bytes)
        };
        let update = |expected: Hash, objects: &[(Hash, Bytes)]| RefUpdate {
            name: r("main"),
            expected: Some(expected),
            new: Some(record.clone()),
            reflog: ReflogEntry {
                seq: 0,
                ref_name: r("main"),
                kind: RefKind::Branch,
                old: Some(expected),
                new: Some(main),
                operation: RefOperation::Assign,
                principal: "alice".to_owned(),
                at_ms: 1,
                properties: BTreeMap::new(),
            },
            meta: None,
            fence: None,
            objects: objects.to_vec(),
        };
        let not_main = Hash::of(b"not main's head");
        let refused = [object("with a move that did not apply")];
        let outcome = fx
            .backend
            .compare_and_swap_ref(update(not_main, &refused))
            .unwrap();
        assert!(
            matches!(outcome, CasOutcome::Mismatch { .. }),
            "{outcome:?}"
        );
        // Many objects, more than a backend may write in the move itself.
        let many: Vec<_> = (0..300)
            .map(|i| object(&format!("one of many, {i}")))
            .collect();
        let outcome = fx
            .backend
            .compare_and_swap_ref(update(not_main, &many))
            .unwrap();
        assert!(
            matches!(outcome, CasOutcome::Mismatch { .. }),
            "{outcome:?}"
        );
        let applied = [object("with a move that applied")];
        let outcome = fx
            .backend
            .compare_and_swap_ref(update(main, &applied))
            .unwrap();
        assert!(matches!(outcome, CasOutcome::Applied { .. }), "{outcome:?}");
        for (hash, bytes) in refused.into_iter().chain(many).chain(applied) {
            assert_eq!(fx.backend.get_object(&hash).unwrap(), Some(bytes));
        }
    }

    pub fn init_creates_main_at_the_shared_root(fx: Fx) {
        let main = fx.store.get_ref(&r("main")).unwrap();
        assert_eq!(main.kind, RefKind::Branch);
        assert_eq!(main.head, Store::root_commit());
        // Opening again keeps main where it is.
        fx.ok("main", vec![create("ns", ns(1))]);
        let head = fx.head("main");
        fx.store.init().unwrap();
        assert_eq!(fx.head("main"), head);
        let again = Store::open(fx.backend.clone(), fx.clock.clone()).unwrap();
        assert_eq!(again.get_ref(&r("main")).unwrap().head, head);
    }

    pub fn refs_are_created_listed_and_paged(fx: Fx) {
        let root = fx.head("main");
        for name in ["dev", "feature/x", "a"] {
            fx.store
                .create_ref(&r(name), RefKind::Branch, root, &ctx())
                .unwrap();
        }
        fx.store
            .create_ref(&r("v1"), RefKind::Tag, root, &ctx())
            .unwrap();
        let err = fx
            .store
            .create_ref(&r("dev"), RefKind::Branch, root, &ctx())
            .unwrap_err();
        assert!(matches!(err, WriteError::RefAlreadyExists(_)), "{err:?}");
        let missing = Hash::of(b"nothing");
        let err = fx
            .store
            .create_ref(&r("x"), RefKind::Branch, missing, &ctx())
            .unwrap_err();
        assert!(matches!(err, WriteError::CommitNotFound(_)), "{err:?}");
        let err = fx
            .store
            .create_ref(&r("floe-run/1"), RefKind::Branch, root, &ctx())
            .unwrap_err();
        assert!(matches!(err, WriteError::ReservedRef(_)), "{err:?}");
        let executor = WriteCtx {
            executor: true,
            ..ctx()
        };
        fx.store
            .create_ref(&r("floe-run/1"), RefKind::Branch, root, &executor)
            .unwrap();

        let mut names = Vec::new();
        let mut after = None;
        loop {
            let page = fx.store.list_refs(None, after.as_ref(), 2).unwrap();
            assert!(page.items.len() <= 2);
            names.extend(page.items.iter().map(|(n, _)| n.to_string()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(names, ["a", "dev", "feature/x", "floe-run/1", "main", "v1"]);
        let tags = fx.store.list_refs(Some(RefKind::Tag), None, 10).unwrap();
        assert_eq!(
            tags.items
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>(),
            ["v1"]
        );
        let branches = fx.store.list_refs(Some(RefKind::Branch), None, 10).unwrap();
        assert_eq!(branches.items.len(), 5);
        let record = fx.store.get_ref(&r("dev")).unwrap();
        assert_eq!(record.created_by, "alice");
        assert!(matches!(
            fx.store.get_ref(&r("nope")),
            Err(ReadError::RefNotFound(_))
        ));
    }

    pub fn commits_store_contents_and_history(fx: Fx) {
        let c1 = seeded(&fx);
        assert_eq!(fx.keys("main"), ["ns", "ns.a", "ns.b"]);
        let got = fx
            .store
            .get_contents(c1, &[key("ns.a"), key("ns.zz")])
            .unwrap();
        assert_eq!(got[0].as_ref().unwrap().1, table(10, 1));
        assert_eq!(got[0].as_ref().unwrap().0.hash, table(10, 1).hash());
        assert!(got[1].is_none());
        let c2 = fx.ok(
            "main",
            vec![update("ns.a", &table(10, 1), table(10, 2)), delete("ns.b")],
        );
        let commit = fx.store.commit_object(&c2).unwrap();
        assert_eq!(
            (commit.author.as_str(), commit.committer.as_str()),
            ("alice", "alice")
        );
        assert_eq!(commit.parents.as_slice(), &[c1]);
        assert_eq!(commit.generation, 3);
        assert_eq!(commit.message, "a commit");
        let changes = fx.store.commit_changes(c2, None, 100).unwrap();
        let shown: Vec<String> = changes
            .items
            .iter()
            .map(|c| {
                format!(
                    "{} {:?}",
                    c.key,
                    ChangeKind::of(c.before.as_ref(), c.after.as_ref()).unwrap()
                )
            })
            .collect();
        assert_eq!(shown, ["ns.a Modified", "ns.b Removed"]);
        let log = fx.store.log(c2, &LogFilter::default(), 10).unwrap();
        let hashes: Vec<Hash> = log.items.iter().map(|(h, _)| *h).collect();
        assert_eq!(hashes, [c2, c1, Store::root_commit()]);
        assert_eq!(log.next, None);
        // Without an author, the principal writing is the author and committer.
        let anonymous = CommitMeta::new("", "no author", 1);
        let bob = WriteCtx::principal("bob");
        let c3 = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.x", table(30, 1))],
                anonymous,
                &bob,
            )
            .unwrap()
            .commit;
        let commit = fx.store.commit_object(&c3).unwrap();
        assert_eq!(
            (commit.author.as_str(), commit.committer.as_str()),
            ("bob", "bob")
        );
        fx.ok("main", vec![delete("ns.x")]);
        let c2 = fx.head("main");
        // A put of the very same content changes nothing and writes nothing.
        let out = fx
            .commit("main", vec![update("ns.a", &table(10, 2), table(10, 2))])
            .unwrap();
        assert!(!out.created);
        assert_eq!(fx.head("main"), c2);
    }

    pub fn expectations_are_checked_at_the_landing_head(fx: Fx) {
        seeded(&fx);
        let head = fx.head("main");
        // Absent on an existing key: a conflict naming key, expected and actual.
        let err = fx
            .commit("main", vec![create("ns.a", table(99, 1))])
            .unwrap_err();
        match &err {
            WriteError::Conflict { head: h, conflicts } => {
                assert_eq!(*h, head);
                assert_eq!(conflicts.len(), 1);
                assert_eq!(conflicts[0].kind, ConflictKind::Expectation);
                assert_eq!(conflicts[0].expected, Some(Expect::Absent));
                assert_eq!(conflicts[0].actual, Some(table(10, 1).hash()));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("ns.a"), "{err}");
        let stale = update("ns.a", &table(10, 7), table(10, 8));
        assert_eq!(
            conflict_kinds(&fx.commit("main", vec![stale]).unwrap_err()),
            [("ns.a".into(), ConflictKind::Expectation)]
        );
        let present = Op::Check {
            key: key("ns.zz"),
            expect: Expect::Present,
        };
        assert!(fx.commit("main", vec![present]).is_err());
        let gone = Op::Delete {
            key: key("ns.zz"),
            expect: Expect::Present,
        };
        assert!(fx.commit("main", vec![gone]).is_err());
        assert_eq!(fx.head("main"), head, "rejections change nothing");

        // A stale expected head rebases when the expectations still hold.
        let c2 = fx.ok("main", vec![update("ns.a", &table(10, 1), table(10, 2))]);
        let out = fx
            .store
            .commit(
                &r("main"),
                Some(head),
                vec![update("ns.b", &table(11, 1), table(11, 2))],
                meta("late"),
                &ctx(),
            )
            .unwrap();
        assert!(out.rebased && out.created);
        assert_eq!(out.parent, c2);
        // ...and fails when they do not.
        let err = fx
            .store
            .commit(
                &r("main"),
                Some(head),
                vec![update("ns.a", &table(10, 1), table(10, 3))],
                meta("late"),
                &ctx(),
            )
            .unwrap_err();
        assert!(matches!(err, WriteError::Conflict { .. }));

        // Checks only: evaluated, nothing written.
        let h = fx.head("main");
        let out = fx
            .commit(
                "main",
                vec![Op::Check {
                    key: key("ns.a"),
                    expect: Expect::Is(table(10, 2).hash()),
                }],
            )
            .unwrap();
        assert!(!out.created);
        assert_eq!(fx.head("main"), h);
    }

    pub fn write_skew_is_impossible(fx: Fx) {
        seeded(&fx);
        let start = fx.head("main");
        // Each writer read the other's table at `start` and writes its own.
        let first = vec![
            Op::Check {
                key: key("ns.b"),
                expect: Expect::Is(table(11, 1).hash()),
            },
            update("ns.a", &table(10, 1), table(10, 2)),
        ];
        let second = vec![
            Op::Check {
                key: key("ns.a"),
                expect: Expect::Is(table(10, 1).hash()),
            },
            update("ns.b", &table(11, 1), table(11, 2)),
        ];
        fx.store
            .commit(&r("main"), Some(start), first, meta("one"), &ctx())
            .unwrap();
        let err = fx
            .store
            .commit(&r("main"), Some(start), second, meta("two"), &ctx())
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a".into(), ConflictKind::Expectation)]
        );
    }

    pub fn landings_are_validated(fx: Fx) {
        // No table without its namespace; a table's parent must be a namespace.
        let err = fx
            .commit("main", vec![create("ns.a", table(10, 1))])
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a".into(), ConflictKind::NamespaceMissing)]
        );
        seeded(&fx);
        let err = fx
            .commit("main", vec![create("ns.a.x", table(20, 1))])
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a.x".into(), ConflictKind::NamespaceMissing)]
        );
        // Nested namespaces need their parents too.
        let err = fx.commit("main", vec![create("x.y", ns(30))]).unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("x.y".into(), ConflictKind::NamespaceMissing)]
        );
        fx.ok(
            "main",
            vec![
                create("x", ns(31)),
                create("x.y", ns(30)),
                create("x.y.t", table(32, 1)),
            ],
        );
        // A namespace leaves only when empty, counting this commit's own changes.
        let err = fx.commit("main", vec![delete("ns")]).unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns".into(), ConflictKind::NamespaceNotEmpty)]
        );
        let err = fx
            .commit("main", vec![delete("ns"), delete("ns.a")])
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns".into(), ConflictKind::NamespaceNotEmpty)]
        );
        let err = fx.commit("main", vec![delete("x")]).unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("x".into(), ConflictKind::NamespaceNotEmpty)]
        );
        // A table replacing a namespace counts as dropping it.
        let err = fx
            .commit("main", vec![update("ns", &ns(1), table(40, 1))])
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns".into(), ConflictKind::NamespaceNotEmpty)]
        );
        // CheckPrefixEmpty looks at the result.
        let err = fx
            .commit(
                "main",
                vec![Op::CheckPrefixEmpty { prefix: key("ns") }, delete("ns.a")],
            )
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns".into(), ConflictKind::PrefixNotEmpty)]
        );
        fx.ok(
            "main",
            vec![
                delete("ns.a"),
                delete("ns.b"),
                delete("ns"),
                Op::CheckPrefixEmpty { prefix: key("ns") },
            ],
        );
        assert_eq!(fx.keys("main"), ["x", "x.y", "x.y.t"]);

        // One content id under one key: a copy is refused, a rename (same commit) is not.
        let err = fx
            .commit("main", vec![create("x.copy", table(32, 1))])
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("x.copy".into(), ConflictKind::DuplicateContentId)]
        );
        let err = fx
            .commit(
                "main",
                vec![create("x.p", table(50, 1)), create("x.q", table(50, 2))],
            )
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("x.q".into(), ConflictKind::DuplicateContentId)]
        );
        fx.ok(
            "main",
            vec![
                Op::Delete {
                    key: key("x.y.t"),
                    expect: Expect::Present,
                },
                create("x.t", table(32, 1)),
            ],
        );
        assert_eq!(
            fx.store
                .key_of_id(fx.head("main"), &ContentId::from_u128(32))
                .unwrap(),
            Some(key("x.t"))
        );
        // The old key's id is free again after the move; a swap of two ids is fine too.
        fx.ok("main", vec![create("x.u", table(60, 1))]);
        fx.ok(
            "main",
            vec![
                update("x.t", &table(32, 1), table(60, 1)),
                update("x.u", &table(60, 1), table(32, 1)),
            ],
        );
        assert_eq!(
            fx.store
                .key_of_id(fx.head("main"), &ContentId::from_u128(60))
                .unwrap(),
            Some(key("x.t"))
        );
    }

    pub fn bad_input_is_refused_before_anything_happens(fx: Fx) {
        seeded(&fx);
        let head = fx.head("main");
        let objects = fx.reflog_len();
        let invalid = |e: WriteError| assert!(matches!(e, WriteError::Invalid(_)), "{e:?}");
        invalid(fx.commit("main", vec![]).unwrap_err());
        invalid(
            fx.commit("main", vec![create("ns.c", table(12, 1)), delete("ns.c")])
                .unwrap_err(),
        );
        invalid(
            fx.commit(
                "main",
                vec![Op::Delete {
                    key: key("ns.a"),
                    expect: Expect::Absent,
                }],
            )
            .unwrap_err(),
        );
        let many: Vec<Op> = (0..=OPS_PER_COMMIT_MAX as u128)
            .map(|i| create(&format!("ns.t{i}"), table(1000 + i, 1)))
            .collect();
        invalid(fx.commit("main", many).unwrap_err());
        let long = CommitMeta::new("alice", "m".repeat(MESSAGE_BYTES_MAX + 1), 1);
        let err = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.c", table(12, 1))],
                long,
                &ctx(),
            )
            .unwrap_err();
        assert!(
            matches!(err, WriteError::Meta(_)) && err.to_string().contains("MESSAGE_BYTES_MAX"),
            "{err}"
        );
        let props = CommitMeta::new("alice", "m", 1)
            .with_property("k", "v".repeat(COMMIT_PROPERTIES_BYTES_MAX));
        let err = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.c", table(12, 1))],
                props,
                &ctx(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("COMMIT_PROPERTIES_BYTES_MAX"),
            "{err}"
        );
        let err = fx
            .store
            .commit(
                &r("nope"),
                None,
                vec![create("ns.c", table(12, 1))],
                meta("m"),
                &ctx(),
            )
            .unwrap_err();
        assert!(matches!(err, WriteError::RefNotFound(_)), "{err:?}");
        assert_eq!(fx.head("main"), head);
        assert_eq!(fx.reflog_len(), objects);
    }

    pub fn limits_hold_at_the_limit_and_refuse_one_byte_over(fx: Fx) {
        seeded(&fx);
        // A content value of exactly VALUE_BYTES_MAX bytes, then one byte more.
        let sized = |extra: usize| {
            let mut t = table(70, 1);
            let base = t.encode().len();
            if let Payload::IcebergTable(p) = &mut t.payload {
                // The location's length prefix grows from 1 to 3 bytes on the way.
                p.metadata_location
                    .push_str(&"x".repeat(VALUE_BYTES_MAX - base - 2 + extra));
            }
            t
        };
        let at = sized(0);
        assert_eq!(at.encode().len(), VALUE_BYTES_MAX);
        fx.ok("main", vec![create("ns.big", at.clone())]);
        assert_eq!(
            fx.store
                .get_contents(fx.head("main"), &[key("ns.big")])
                .unwrap()[0]
                .as_ref()
                .unwrap()
                .1,
            at
        );
        let over = sized(1);
        assert_eq!(over.encode().len(), VALUE_BYTES_MAX + 1);
        let err = fx
            .commit("main", vec![update("ns.big", &at, over)])
            .unwrap_err();
        assert!(err.to_string().contains("VALUE_BYTES_MAX"), "{err}");

        // Namespace properties: exactly the limit, then one byte more.
        let props = |n: usize| BTreeMap::from([("k".to_owned(), "v".repeat(n - 1))]);
        let ok = Content::namespace(
            ContentId::from_u128(80),
            props(NAMESPACE_PROPERTIES_BYTES_MAX),
        );
        fx.ok("main", vec![create("big", ok)]);
        let over = Content::namespace(
            ContentId::from_u128(81),
            props(NAMESPACE_PROPERTIES_BYTES_MAX + 1),
        );
        let err = fx.commit("main", vec![create("big2", over)]).unwrap_err();
        assert!(
            err.to_string().contains("NAMESPACE_PROPERTIES_BYTES_MAX"),
            "{err}"
        );

        // Keys: KEY_BYTES_MAX bytes store and list; one more is refused at the edge. Each
        // element is bounded too (KEY_ELEMENT_BYTES_MAX), so the key is deep: namespaces
        // `ns`, then levels at their element bound, then a table with the bytes left.
        let level = "k".repeat(KEY_ELEMENT_BYTES_MAX);
        let mut elements = vec!["ns".to_owned()];
        for i in 0..5 {
            elements.push(level.clone());
            fx.ok(
                "main",
                vec![Op::Put {
                    key: ContentKey::new(&elements).unwrap(),
                    content: Content::namespace(ContentId::from_u128(8_000 + i), BTreeMap::new()),
                    expect: Expect::Absent,
                }],
            );
        }
        let used: usize = elements.iter().map(|e| e.len() + 1).sum();
        let name = "t".repeat(KEY_BYTES_MAX - used);
        elements.push(name.clone());
        fx.ok(
            "main",
            vec![Op::Put {
                key: ContentKey::new(&elements).unwrap(),
                content: table(90, 1),
                expect: Expect::Absent,
            }],
        );
        assert!(fx.keys("main").iter().any(|k| k.len() == KEY_BYTES_MAX));
        elements.pop();
        elements.push(format!("{name}t"));
        assert!(matches!(
            ContentKey::new(&elements),
            Err(KeyError::TooLong(_))
        ));

        // Message and properties at their limits land.
        let m = CommitMeta::new("alice", "m".repeat(MESSAGE_BYTES_MAX), 1)
            .with_property("k", "v".repeat(COMMIT_PROPERTIES_BYTES_MAX - 1));
        fx.store
            .commit(
                &r("main"),
                None,
                vec![create("ns.m", table(91, 1))],
                m,
                &ctx(),
            )
            .unwrap();

        // Meta values: VALUE_BYTES_MAX stores, one byte more is refused.
        fx.store
            .meta_put(b"k", &vec![1u8; VALUE_BYTES_MAX])
            .unwrap();
        assert!(matches!(
            fx.store.meta_put(b"k", &vec![1u8; VALUE_BYTES_MAX + 1]),
            Err(WriteError::Invalid(_))
        ));
        assert_eq!(
            fx.store.meta_get(b"k").unwrap().unwrap().len(),
            VALUE_BYTES_MAX
        );
    }

    pub fn tags_never_move(fx: Fx) {
        let c1 = seeded(&fx);
        fx.store
            .create_ref(&r("v1"), RefKind::Tag, c1, &ctx())
            .unwrap();
        let c2 = fx.ok("main", vec![delete("ns.b")]);
        let err = fx.store.assign(&r("v1"), None, c2, &ctx()).unwrap_err();
        assert!(matches!(err, WriteError::TagImmutable(_)), "{err:?}");
        let err = fx.commit("v1", vec![delete("ns.a")]).unwrap_err();
        assert!(matches!(err, WriteError::NotABranch(_)), "{err:?}");
        let err = fx
            .store
            .merge(
                c2,
                &r("v1"),
                None,
                &MergeOptions::default(),
                &ConflictResolver,
                &ctx(),
            )
            .unwrap_err();
        assert!(matches!(err, WriteError::NotABranch(_)), "{err:?}");
        assert_eq!(fx.head("v1"), c1);
        // Delete then create is the only way, and both are in the reflog.
        fx.store.delete_ref(&r("v1"), Some(c1), &ctx()).unwrap();
        fx.store
            .create_ref(&r("v1"), RefKind::Tag, c2, &ctx())
            .unwrap();
        let log = fx.store.reflog(Some(&r("v1")), None, 10).unwrap();
        let ops: Vec<(RefOperation, Option<Hash>, Option<Hash>)> = log
            .items
            .iter()
            .map(|e| (e.operation, e.old, e.new))
            .collect();
        assert_eq!(
            ops,
            [
                (RefOperation::Create, None, Some(c2)),
                (RefOperation::Delete, Some(c1), None),
                (RefOperation::Create, None, Some(c1)),
            ]
        );
        assert!(
            log.items
                .iter()
                .all(|e| e.principal == "alice" && e.kind == RefKind::Tag)
        );
    }

    pub fn assign_and_delete_are_strict_and_logged(fx: Fx) {
        let c1 = seeded(&fx);
        fx.branch("dev", "main");
        let c2 = fx.ok("main", vec![delete("ns.b")]);
        let err = fx
            .store
            .assign(&r("dev"), Some(c2), c2, &ctx())
            .unwrap_err();
        assert_eq!(
            err,
            WriteError::ReferenceConflict {
                name: r("dev"),
                expected: Some(c2),
                current: Some(c1)
            }
        );
        fx.store.assign(&r("dev"), Some(c1), c2, &ctx()).unwrap();
        assert_eq!(fx.head("dev"), c2);
        // Reset backwards: the old head stays in the reflog (the undo list).
        fx.store
            .assign(&r("dev"), None, Store::root_commit(), &ctx())
            .unwrap();
        let entries = fx.store.reflog(Some(&r("dev")), None, 10).unwrap().items;
        assert_eq!(entries[0].operation, RefOperation::Assign);
        assert_eq!(entries[0].old, Some(c2));
        assert_eq!(entries[1].old, Some(c1));
        let err = fx
            .store
            .assign(&r("dev"), None, Hash::of(b"x"), &ctx())
            .unwrap_err();
        assert!(matches!(err, WriteError::CommitNotFound(_)));
        let err = fx
            .store
            .delete_ref(&r("dev"), Some(c1), &ctx())
            .unwrap_err();
        assert!(
            matches!(err, WriteError::ReferenceConflict { .. }),
            "{err:?}"
        );
        fx.store.delete_ref(&r("dev"), None, &ctx()).unwrap();
        assert!(matches!(
            fx.store.get_ref(&r("dev")),
            Err(ReadError::RefNotFound(_))
        ));
        assert!(matches!(
            fx.store.delete_ref(&r("dev"), None, &ctx()),
            Err(WriteError::RefNotFound(_))
        ));
        // Paging the whole reflog: newest first, strictly decreasing sequence numbers.
        let mut seqs = Vec::new();
        let mut before = None;
        loop {
            let page = fx.store.reflog(None, before, 2).unwrap();
            seqs.extend(page.items.iter().map(|e| e.seq));
            match page.next {
                Some(s) => before = Some(s),
                None => break,
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        assert_eq!(seqs.len(), fx.reflog_len());
    }

    pub fn ref_specs_resolve_and_are_read_only(fx: Fx) {
        fx.clock.set(10_000);
        let c1 = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns", ns(1))],
                meta("one"),
                &ctx(),
            )
            .unwrap()
            .commit;
        fx.clock.set(20_000);
        let c2 = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.a", table(10, 1))],
                meta("two"),
                &ctx(),
            )
            .unwrap()
            .commit;
        fx.store
            .create_ref(&r("v1"), RefKind::Tag, c1, &ctx())
            .unwrap();
        let resolve = |s: &str| fx.store.resolve(&RefSpec::parse(s).unwrap());
        let main = resolve("main").unwrap();
        assert_eq!((main.hash, main.writable), (c2, true));
        let tag = resolve("v1").unwrap();
        assert_eq!(
            (tag.hash, tag.writable, tag.ref_kind),
            (c1, false, Some(RefKind::Tag))
        );
        let short = &c1.to_hex()[..8];
        assert_eq!(resolve(short).unwrap().hash, c1);
        assert!(!resolve(short).unwrap().writable);
        assert_eq!(resolve(&format!("main@{short}")).unwrap().hash, c1);
        assert_eq!(resolve(&c2.to_hex()).unwrap().hash, c2);
        assert_eq!(resolve("main~1").unwrap().hash, c1);
        assert_eq!(resolve("main~2").unwrap().hash, Store::root_commit());
        assert!(!resolve("main~1").unwrap().writable);
        assert!(matches!(
            resolve("main~3"),
            Err(ReadError::HistoryTooShort { available: 2, .. })
        ));
        // Time travel uses the reflog's server time, never authored time.
        assert_eq!(resolve("main*1970-01-01T00:00:15Z").unwrap().hash, c1);
        assert_eq!(resolve("main*1970-01-01T00:00:25Z").unwrap().hash, c2);
        assert!(!resolve("main*1970-01-01T00:00:25Z").unwrap().writable);
        assert!(matches!(
            resolve("main*1960-01-01T00:00:00Z"),
            Err(ReadError::NoHeadAtTime { .. })
        ));
        // A commit outside the ref's history.
        fx.branch("dev", "main");
        let c3 = fx.ok("dev", vec![create("ns.b", table(11, 1))]);
        assert!(matches!(
            resolve(&format!("main@{}", c3)),
            Err(ReadError::NotInHistory { .. })
        ));
        assert!(matches!(resolve("nope"), Err(ReadError::RefNotFound(_))));
        assert!(matches!(
            resolve("0000000000"),
            Err(ReadError::CommitNotFound(_))
        ));
        // A prefix of an index node is not a commit.
        let node = fx.store.index_shape(c3).unwrap();
        assert!(!node.is_empty());
    }

    pub fn ambiguous_prefixes_list_their_candidates(fx: Fx) {
        // Two commits whose hashes share 8 hex characters: the store checks every object it
        // reads against its hash, so they must be real. Hashing candidate commits (not
        // landing them) finds a pair in about 2^16 tries (the birthday bound on 32 bits),
        // deterministically.
        let candidate = |i: u64| Commit {
            parents: [Store::root_commit()].into_iter().collect(),
            key_index: None,
            id_index: None,
            author: "alice".to_owned(),
            committer: "alice".to_owned(),
            message: format!("probe {i}"),
            authored_at_ms: 0,
            properties: BTreeMap::new(),
            generation: 1,
        };
        let mut seen: std::collections::HashMap<[u8; 4], u64> = std::collections::HashMap::new();
        let (i, j) = (0..4_000_000u64)
            .find_map(|i| {
                let h = Hash::of(&candidate(i).encode());
                let prefix: [u8; 4] = h.as_bytes()[..4].try_into().unwrap();
                // A pair sharing exactly 4 bytes, so that 10 hex characters tell them apart.
                match seen.insert(prefix, i) {
                    Some(j)
                        if Hash::of(&candidate(j).encode()).as_bytes()[4] != h.as_bytes()[4] =>
                    {
                        Some((j, i))
                    }
                    _ => None,
                }
            })
            .expect("a 32-bit prefix collision within 4M commits");
        let mut planted: Vec<(Hash, Bytes)> = [i, j]
            .into_iter()
            .map(|i| {
                let bytes = Bytes::from(candidate(i).encode());
                (Hash::of(&bytes), bytes)
            })
            .collect();
        planted.sort_by_key(|p| p.0);
        let (a, b) = (planted[0].0, planted[1].0);
        fx.backend.put_objects(&planted).unwrap();
        let shared = &a.to_hex()[..8];
        let err = fx
            .store
            .resolve(&RefSpec::parse(shared).unwrap())
            .unwrap_err();
        match &err {
            ReadError::AmbiguousPrefix { candidates, .. } => assert_eq!(candidates, &vec![a, b]),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&a.to_hex()) && err.to_string().contains(&b.to_hex()));
        assert_eq!(
            fx.store
                .resolve(&RefSpec::parse(&a.to_hex()[..10]).unwrap())
                .unwrap()
                .hash,
            a
        );
    }

    pub fn bad_names_and_specs_are_refused(_fx: Fx) {
        for bad in [
            "", "-x", "/x", "x/", "a//b", "a..b", "deadbeef", "a b", "a@b", "a^", "a:b", "a\\b",
            "a\tb",
        ] {
            assert!(RefName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RefName::parse(&"x".repeat(REF_NAME_BYTES_MAX + 1)).is_err());
        for bad in [
            "main~x",
            "main*yesterday",
            "main@xyz",
            "main@abc",
            "a~1~2",
            "bad name",
            "@deadbeef",
            "*2026-01-01T00:00:00Z",
        ] {
            assert!(RefSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    pub fn merge_fast_forwards_and_no_ff_and_squash(fx: Fx) {
        let c1 = seeded(&fx);
        fx.branch("dev", "main");
        let d1 = fx.ok("dev", vec![create("ns.c", table(12, 1))]);
        let d2 = fx.ok("dev", vec![delete("ns.b")]);
        // Dry run: the outcome, nothing written.
        let reflog = fx.reflog_len();
        let dry = fx
            .merge(
                "dev",
                "main",
                MergeOptions {
                    dry_run: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            (dry.kind, dry.head, dry.dry_run),
            (MergeKind::FastForward, d2, true)
        );
        assert_eq!(dry.changes.len(), 2);
        assert_eq!((fx.head("main"), fx.reflog_len()), (c1, reflog));
        // Fast-forward.
        let ff = fx.merge("dev", "main", MergeOptions::default()).unwrap();
        assert_eq!((ff.kind, fx.head("main")), (MergeKind::FastForward, d2));
        let again = fx.merge("dev", "main", MergeOptions::default()).unwrap();
        assert_eq!(again.kind, MergeKind::NothingToMerge);
        assert_eq!(
            fx.reflog_len(),
            reflog + 1,
            "a merge that changes nothing writes nothing"
        );
        // No-ff: a merge commit with both parents.
        fx.store.assign(&r("main"), None, c1, &ctx()).unwrap();
        let m = fx
            .merge(
                "dev",
                "main",
                MergeOptions {
                    strategy: MergeStrategy::NoFastForward,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(m.kind, MergeKind::Merged);
        let commit = fx.store.commit_object(&m.head).unwrap();
        assert_eq!(commit.parents.as_slice(), &[c1, d2]);
        assert_eq!(fx.map(m.head), fx.map(d2));
        assert_eq!(
            commit.properties.get(merge::MERGE_SOURCE),
            Some(&d2.to_string())
        );
        // Squash: one parent, the same result.
        fx.store.assign(&r("main"), None, c1, &ctx()).unwrap();
        let s = fx
            .merge(
                "dev",
                "main",
                MergeOptions {
                    strategy: MergeStrategy::Squash,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(s.kind, MergeKind::Squashed);
        assert_eq!(
            fx.store.commit_object(&s.head).unwrap().parents.as_slice(),
            &[c1]
        );
        assert_eq!(fx.map(s.head), fx.map(d2));
        // Fast-forward only refuses diverged histories.
        fx.store.assign(&r("main"), None, c1, &ctx()).unwrap();
        fx.ok("main", vec![create("ns.m", table(13, 1))]);
        let err = fx
            .merge(
                "dev",
                "main",
                MergeOptions {
                    strategy: MergeStrategy::FastForwardOnly,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, WriteError::NotFastForward { .. }), "{err:?}");
        // A real three-way merge takes each side's changes.
        let m = fx.merge("dev", "main", MergeOptions::default()).unwrap();
        assert_eq!(m.kind, MergeKind::Merged);
        assert_eq!(m.merge_bases, [c1]);
        assert_eq!(fx.keys("main"), ["ns", "ns.a", "ns.c", "ns.m"]);
        let _ = d1;
        // Strict expected head.
        let stale = fx.store.merge(
            fx.head("dev"),
            &r("main"),
            Some(c1),
            &MergeOptions::default(),
            &ConflictResolver,
            &ctx(),
        );
        assert!(matches!(
            stale,
            Err(WriteError::ReferenceConflict { .. })
                | Ok(MergeOutcome {
                    kind: MergeKind::NothingToMerge,
                    ..
                })
        ));
        let d3 = fx.ok("dev", vec![create("ns.d", table(14, 1))]);
        let err = fx
            .store
            .merge(
                d3,
                &r("main"),
                Some(c1),
                &MergeOptions::default(),
                &ConflictResolver,
                &ctx(),
            )
            .unwrap_err();
        assert!(
            matches!(err, WriteError::ReferenceConflict { .. }),
            "{err:?}"
        );
    }

    pub fn merge_conflicts_name_both_sides(fx: Fx) {
        seeded(&fx);
        fx.branch("dev", "main");
        // Both modified differently; one deleted while the other modified; both added.
        fx.ok(
            "dev",
            vec![
                update("ns.a", &table(10, 1), table(10, 2)),
                delete("ns.b"),
                create("ns.c", table(12, 1)),
            ],
        );
        fx.ok(
            "main",
            vec![
                update("ns.a", &table(10, 1), table(10, 3)),
                update("ns.b", &table(11, 1), table(11, 2)),
                create("ns.c", table(13, 1)),
            ],
        );
        let main_head = fx.head("main");
        let err = fx
            .merge("dev", "main", MergeOptions::default())
            .unwrap_err();
        let WriteError::Conflict { conflicts, head } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*head, main_head);
        let shown: Vec<(String, ConflictKind, Option<ChangeKind>, Option<ChangeKind>)> = conflicts
            .iter()
            .map(|c| (c.key.to_string(), c.kind, c.source_change, c.target_change))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "ns.a".into(),
                    ConflictKind::BothChanged,
                    Some(ChangeKind::Modified),
                    Some(ChangeKind::Modified)
                ),
                (
                    "ns.b".into(),
                    ConflictKind::BothChanged,
                    Some(ChangeKind::Removed),
                    Some(ChangeKind::Modified)
                ),
                (
                    "ns.c".into(),
                    ConflictKind::BothChanged,
                    Some(ChangeKind::Added),
                    Some(ChangeKind::Added)
                ),
            ]
        );
        assert_eq!(fx.head("main"), main_head);
        // Per-key resolutions and the default.
        let options = MergeOptions {
            resolutions: BTreeMap::from([
                (key("ns.a"), Resolution::TakeSource),
                (key("ns.b"), Resolution::KeepTarget),
            ]),
            on_conflict: Resolution::KeepTarget,
            ..Default::default()
        };
        let dry = fx
            .merge(
                "dev",
                "main",
                MergeOptions {
                    dry_run: true,
                    ..options.clone()
                },
            )
            .unwrap();
        assert_eq!(dry.changes.len(), 1);
        assert_eq!(fx.head("main"), main_head);
        let m = fx.merge("dev", "main", options).unwrap();
        let got = fx
            .store
            .get_contents(m.head, &[key("ns.a"), key("ns.b"), key("ns.c")])
            .unwrap();
        assert_eq!(got[0].as_ref().unwrap().1, table(10, 2));
        assert_eq!(got[1].as_ref().unwrap().1, table(11, 2));
        assert_eq!(got[2].as_ref().unwrap().1, table(13, 1));
    }

    pub fn identical_changes_on_both_sides_merge_cleanly(fx: Fx) {
        seeded(&fx);
        fx.branch("dev", "main");
        fx.ok(
            "dev",
            vec![
                update("ns.a", &table(10, 1), table(10, 2)),
                create("ns.c", table(12, 1)),
                create("ns.x", table(14, 1)),
            ],
        );
        fx.ok(
            "main",
            vec![
                update("ns.a", &table(10, 1), table(10, 2)),
                create("ns.c", table(12, 1)),
            ],
        );
        let m = fx.merge("dev", "main", MergeOptions::default()).unwrap();
        assert_eq!(
            m.changes
                .iter()
                .map(|c| c.key.to_string())
                .collect::<Vec<_>>(),
            ["ns.x"]
        );
    }

    pub fn a_resolver_decides_what_it_knows(fx: Fx) {
        struct Newest;
        impl Resolver for Newest {
            fn resolve(
                &self,
                key: &ContentKey,
                _: Option<&ContentRef>,
                _: Option<&ContentRef>,
                _: Option<&ContentRef>,
            ) -> Result<Option<Resolved>, WriteError> {
                Ok((key.name() == "a").then(|| Resolved::Content(table(10, 99))))
            }
        }
        seeded(&fx);
        fx.branch("dev", "main");
        fx.ok(
            "dev",
            vec![
                update("ns.a", &table(10, 1), table(10, 2)),
                update("ns.b", &table(11, 1), table(11, 2)),
            ],
        );
        fx.ok(
            "main",
            vec![
                update("ns.a", &table(10, 1), table(10, 3)),
                update("ns.b", &table(11, 1), table(11, 3)),
            ],
        );
        let err = fx
            .store
            .merge(
                fx.head("dev"),
                &r("main"),
                None,
                &MergeOptions::default(),
                &Newest,
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.b".into(), ConflictKind::BothChanged)]
        );
        let options = MergeOptions {
            resolutions: BTreeMap::from([(key("ns.b"), Resolution::KeepTarget)]),
            ..Default::default()
        };
        let m = fx
            .store
            .merge(fx.head("dev"), &r("main"), None, &options, &Newest, &ctx())
            .unwrap();
        assert_eq!(
            fx.store.get_contents(m.head, &[key("ns.a")]).unwrap()[0]
                .as_ref()
                .unwrap()
                .1,
            table(10, 99)
        );
    }

    pub fn merges_are_validated_like_commits(fx: Fx) {
        seeded(&fx);
        fx.ok("main", vec![create("empty", ns(2))]);
        fx.branch("dev", "main");
        // A namespace dropped on one side while a table is created in it on the other.
        fx.ok("dev", vec![create("empty.t", table(20, 1))]);
        fx.ok("main", vec![delete("empty")]);
        let err = fx
            .merge("dev", "main", MergeOptions::default())
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("empty.t".into(), ConflictKind::NamespaceMissing)]
        );
        // The same table renamed differently on both sides.
        fx.store.delete_ref(&r("dev"), None, &ctx()).unwrap();
        fx.branch("dev", "main");
        fx.ok("dev", vec![delete("ns.a"), create("ns.left", table(10, 1))]);
        fx.ok(
            "main",
            vec![delete("ns.a"), create("ns.right", table(10, 1))],
        );
        let err = fx
            .merge("dev", "main", MergeOptions::default())
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.left".into(), ConflictKind::DuplicateContentId)]
        );
        let WriteError::Conflict { conflicts, .. } = err else {
            unreachable!()
        };
        assert_eq!(conflicts[0].other_key, Some(key("ns.right")));
    }

    pub fn criss_cross_merges_detect_ambiguous_bases(fx: Fx) {
        seeded(&fx);
        fx.branch("x", "main");
        fx.branch("y", "main");
        fx.ok(
            "x",
            vec![
                update("ns.a", &table(10, 1), table(10, 2)),
                create("ns.x1", table(20, 1)),
            ],
        );
        fx.ok(
            "y",
            vec![
                update("ns.a", &table(10, 1), table(10, 3)),
                create("ns.y1", table(21, 1)),
            ],
        );
        let (x1, y1) = (fx.head("x"), fx.head("y"));
        // Cross-merge, resolving ns.a differently on each side (each merge also brings the
        // other side's new table, so each writes a merge commit).
        let keep = MergeOptions {
            on_conflict: Resolution::KeepTarget,
            ..Default::default()
        };
        fx.store
            .merge(y1, &r("x"), None, &keep, &ConflictResolver, &ctx())
            .unwrap();
        fx.store
            .merge(x1, &r("y"), None, &keep, &ConflictResolver, &ctx())
            .unwrap();
        // Unrelated changes after.
        fx.ok("x", vec![create("ns.c", table(12, 1))]);
        fx.ok("y", vec![create("ns.d", table(13, 1))]);
        let bases = fx.store.merge_bases(fx.head("x"), fx.head("y")).unwrap();
        let mut expected = vec![x1, y1];
        expected.sort();
        assert_eq!(bases, expected);
        let err = fx.merge("x", "y", MergeOptions::default()).unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a".into(), ConflictKind::AmbiguousBase)]
        );
        // Where the bases agree, a criss-cross merges.
        let options = MergeOptions {
            resolutions: BTreeMap::from([(key("ns.a"), Resolution::KeepTarget)]),
            ..Default::default()
        };
        let err = fx.merge("x", "y", options).unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a".into(), ConflictKind::AmbiguousBase)],
            "bases disagree on ns.a whatever the resolution"
        );
        fx.ok("x", vec![update("ns.a", &table(10, 2), table(10, 3))]);
        let m = fx.merge("x", "y", MergeOptions::default()).unwrap();
        assert_eq!(m.merge_bases.len(), 2);
        assert_eq!(
            fx.keys("y"),
            ["ns", "ns.a", "ns.b", "ns.c", "ns.d", "ns.x1", "ns.y1"]
        );
    }

    pub fn cherry_pick_and_revert(fx: Fx) {
        seeded(&fx);
        fx.branch("dev", "main");
        let d1 = fx.ok(
            "dev",
            vec![
                create("ns.c", table(12, 1)),
                update("ns.a", &table(10, 1), table(10, 2)),
            ],
        );
        fx.ok("dev", vec![create("ns.d", table(13, 1))]);
        let out = fx
            .store
            .cherry_pick(d1, &r("main"), None, None, &ctx())
            .unwrap();
        assert!(out.created);
        let picked = fx.store.commit_object(&out.commit).unwrap();
        assert_eq!(
            picked.properties.get(merge::CHERRY_PICK_OF),
            Some(&d1.to_string())
        );
        assert_eq!(picked.parents.len(), 1);
        assert_eq!(fx.keys("main"), ["ns", "ns.a", "ns.b", "ns.c"]);
        // Already applied: skipped, nothing written.
        let again = fx
            .store
            .cherry_pick(d1, &r("main"), None, None, &ctx())
            .unwrap();
        assert!(!again.created);
        assert_eq!(fx.head("main"), out.commit);
        // Diverged: the branch holds neither the before nor the after value.
        fx.ok("main", vec![update("ns.a", &table(10, 2), table(10, 5))]);
        let err = fx
            .store
            .revert(d1, &r("main"), None, None, &ctx())
            .unwrap_err();
        assert_eq!(
            conflict_kinds(&err),
            [("ns.a".into(), ConflictKind::Diverged)]
        );
        // Revert on dev undoes d1 only.
        let rev = fx.store.revert(d1, &r("dev"), None, None, &ctx()).unwrap();
        let commit = fx.store.commit_object(&rev.commit).unwrap();
        assert_eq!(
            commit.properties.get(merge::REVERT_OF),
            Some(&d1.to_string())
        );
        assert!(commit.message.starts_with("Revert"));
        assert_eq!(fx.keys("dev"), ["ns", "ns.a", "ns.b", "ns.d"]);
        assert_eq!(
            fx.store.get_contents(rev.commit, &[key("ns.a")]).unwrap()[0]
                .as_ref()
                .unwrap()
                .1,
            table(10, 1)
        );
        // Strict expected head.
        let err = fx
            .store
            .cherry_pick(d1, &r("dev"), Some(d1), None, &ctx())
            .unwrap_err();
        assert!(
            matches!(err, WriteError::ReferenceConflict { .. }),
            "{err:?}"
        );
        // Reverting a merge commit undoes what it brought relative to its first parent.
        let before = fx.head("main");
        let m = fx.merge("dev", "main", MergeOptions::default()).unwrap();
        assert_eq!(m.kind, MergeKind::Merged);
        let rev = fx
            .store
            .revert(m.head, &r("main"), None, None, &ctx())
            .unwrap();
        assert_eq!(fx.map(rev.commit), fx.map(before));
    }

    pub fn log_filters_and_pages(fx: Fx) {
        fx.store
            .commit(
                &r("main"),
                None,
                vec![create("ns", ns(1))],
                CommitMeta::new("Alice", "create ns", 100),
                &ctx(),
            )
            .unwrap();
        fx.store
            .commit(
                &r("main"),
                None,
                vec![create("other", ns(2))],
                CommitMeta::new("bob", "other ns", 200),
                &ctx(),
            )
            .unwrap();
        let tagged = CommitMeta::new("bob", "load ns.a", 300).with_property("job", "nightly");
        fx.store
            .commit(
                &r("main"),
                None,
                vec![create("ns.a", table(10, 1))],
                tagged,
                &ctx(),
            )
            .unwrap();
        fx.store
            .commit(
                &r("main"),
                None,
                vec![create("other.b", table(11, 1))],
                CommitMeta::new("carol", "load other.b", 400),
                &ctx(),
            )
            .unwrap();
        let head = fx.head("main");
        let messages = |filter: LogFilter| -> Vec<String> {
            fx.store
                .log(head, &filter, 100)
                .unwrap()
                .items
                .iter()
                .map(|(_, c)| c.message.clone())
                .collect()
        };
        assert_eq!(
            messages(LogFilter {
                author: Some("ALICE".into()),
                ..Default::default()
            }),
            ["create ns"]
        );
        assert_eq!(
            messages(LogFilter {
                since_ms: Some(200),
                until_ms: Some(300),
                ..Default::default()
            }),
            ["load ns.a", "other ns"]
        );
        assert_eq!(
            messages(LogFilter {
                grep: Some("LOAD".into()),
                ..Default::default()
            }),
            ["load other.b", "load ns.a"]
        );
        assert_eq!(
            messages(LogFilter {
                path: Some(key("ns")),
                ..Default::default()
            }),
            ["load ns.a", "create ns"]
        );
        assert_eq!(
            messages(LogFilter {
                path: Some(key("ns.a")),
                ..Default::default()
            }),
            ["load ns.a"]
        );
        let props = BTreeMap::from([("job".to_owned(), "nightly".to_owned())]);
        assert_eq!(
            messages(LogFilter {
                properties: props,
                ..Default::default()
            }),
            ["load ns.a"]
        );
        let either = |value: &str| LogFilter {
            any_of: vec![
                ("job".to_owned(), value.to_owned()),
                ("absent".to_owned(), value.to_owned()),
            ],
            ..Default::default()
        };
        assert_eq!(messages(either("nightly")), ["load ns.a"]);
        assert!(messages(either("weekly")).is_empty());
        // Paging: two at a time, every commit once.
        let mut all = Vec::new();
        let mut from = head;
        loop {
            let page = fx.store.log(from, &LogFilter::default(), 2).unwrap();
            all.extend(page.items.iter().map(|(h, _)| *h));
            match page.next {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], head);
    }

    pub fn diffs_and_entries_page_by_prefix(fx: Fx) {
        let base = fx.ok(
            "main",
            vec![create("a", ns(1)), create("b", ns(2)), create("a.x", ns(3))],
        );
        let mut ops = Vec::new();
        for i in 0..25u128 {
            ops.push(create(&format!("a.t{i:02}"), table(100 + i, 1)));
            ops.push(create(&format!("b.t{i:02}"), table(200 + i, 1)));
            ops.push(create(&format!("a.x.t{i:02}"), table(300 + i, 1)));
        }
        let head = fx.ok("main", ops);
        let prefix = key("a");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = fx
                .store
                .diff(base, head, Some(&prefix), after.as_ref(), 7)
                .unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(page.items.iter().map(|c| c.key.to_string()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 50);
        assert!(seen.iter().all(|k| k.starts_with("a.")));
        assert!(seen.windows(2).all(|w| key(&w[0]) < key(&w[1])));
        let page = fx
            .store
            .entries(head, Some(&key("a.x")), None, 1000)
            .unwrap();
        assert_eq!(page.items.len(), 26, "a.x itself and its 25 tables");
        assert_eq!(page.next, None);
        let page = fx.store.entries(head, Some(&key("b")), None, 10).unwrap();
        assert_eq!(page.items[0].key, key("b"));
        assert_eq!(page.next, Some(key("b.t08")));
        // A diff in the other direction shows removals.
        let back = fx
            .store
            .diff(head, base, Some(&key("b")), None, 100)
            .unwrap();
        assert_eq!(back.items.len(), 25);
        assert!(
            back.items
                .iter()
                .all(|c| c.after.is_none() && c.before.is_some())
        );
    }

    /// Claims on idempotency keys (what servers sharing a backend use for "in flight"):
    /// a live claim keeps others out, an expired one is taken over, and a move carrying a
    /// claim that is no longer its own writes nothing.
    pub fn idempotency_claims_fence_a_takeover(fx: Fx) {
        let root = seeded(&fx);
        let held = |c: Claim| match c {
            Claim::Held(m) => m,
            Claim::Busy => panic!("the claim is busy"),
        };
        let first = held(fx.store.claim_idempotency("k1", "a", 5_000, "").unwrap());
        assert_eq!(
            fx.store.claim_idempotency("k1", "b", 5_000, "").unwrap(),
            Claim::Busy
        );
        // After the lease, another request takes the key over.
        fx.clock.advance(6_000);
        let second = held(fx.store.claim_idempotency("k1", "b", 5_000, "").unwrap());
        let with = |claim: &[u8]| WriteCtx {
            idempotency: Some(Idempotency {
                key: "k1".into(),
                value: b"request".to_vec(),
                claim: Some(claim.to_vec()),
            }),
            ..ctx()
        };
        let late = fx.store.commit(
            &r("main"),
            None,
            vec![create("ns.fenced", table(40, 1))],
            meta("late"),
            &with(&first),
        );
        assert!(
            matches!(late, Err(WriteError::ClaimLost(ref k)) if k == "k1"),
            "{late:?}"
        );
        assert_eq!(fx.head("main"), root, "the fenced move wrote nothing");
        assert_eq!(fx.store.idempotency_lookup("k1").unwrap(), None);
        let out = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.owner", table(41, 1))],
                meta("owner"),
                &with(&second),
            )
            .unwrap();
        assert_eq!(
            fx.store.idempotency_lookup("k1").unwrap().unwrap().head,
            Some(out.commit)
        );
        // The move consumed the claim: the key is free at once (its record answers).
        held(fx.store.claim_idempotency("k1", "c", 5_000, "").unwrap());
        // A released claim frees its key; releasing another's claim does nothing.
        let mine = held(fx.store.claim_idempotency("k2", "d", 5_000, "").unwrap());
        fx.store
            .release_idempotency_claim("k2", b"not mine")
            .unwrap();
        assert_eq!(
            fx.store.claim_idempotency("k2", "e", 5_000, "").unwrap(),
            Claim::Busy
        );
        fx.store.release_idempotency_claim("k2", &mine).unwrap();
        held(fx.store.claim_idempotency("k2", "s1/e", 5_000, "").unwrap());
        // A holder's own prefix takes its live claim over (its release failed).
        assert_eq!(
            fx.store
                .claim_idempotency("k2", "s2/f", 5_000, "s2/")
                .unwrap(),
            Claim::Busy
        );
        held(
            fx.store
                .claim_idempotency("k2", "s1/g", 5_000, "s1/")
                .unwrap(),
        );
    }

    pub fn a_fenced_move_applies_only_while_its_fence_holds(fx: Fx) {
        let root = seeded(&fx);
        fx.store.meta_put(b"run-owner/r1", b"server-a").unwrap();
        let fenced = |value: &[u8]| WriteCtx {
            fence: Some(Fence {
                key: b"run-owner/r1".to_vec(),
                value: value.to_vec(),
                lost: "run r1 was settled elsewhere".to_owned(),
            }),
            // A claim rides along: the fence is checked beside it, not instead of it.
            idempotency: Some(Idempotency {
                key: "fk".into(),
                value: b"request".to_vec(),
                claim: None,
            }),
            ..ctx()
        };
        // Another value is not the fence's: nothing moves, nothing is recorded.
        let wrong = fx.store.commit(
            &r("main"),
            None,
            vec![create("ns.f0", table(50, 1))],
            meta("wrong"),
            &fenced(b"server-b"),
        );
        assert!(
            matches!(wrong, Err(WriteError::Fenced(ref m)) if m.contains("settled elsewhere")),
            "{wrong:?}"
        );
        assert_eq!(fx.head("main"), root);
        assert_eq!(fx.store.idempotency_lookup("fk").unwrap(), None);
        // While it holds, moves apply, as many as are made, and leave it as it was.
        let first = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.f1", table(51, 1))],
                meta("one"),
                &fenced(b"server-a"),
            )
            .unwrap();
        fx.store
            .create_ref(
                &r("fenced"),
                RefKind::Branch,
                first.commit,
                &fenced(b"server-a"),
            )
            .unwrap();
        assert_eq!(
            fx.store.meta_get(b"run-owner/r1").unwrap().as_deref(),
            Some(&b"server-a"[..])
        );
        // Removed (a settling server's first step): no fenced move applies any more.
        assert!(
            fx.store
                .meta_cas(b"run-owner/r1", Some(b"server-a"), None)
                .unwrap()
        );
        let late = fx.store.commit(
            &r("main"),
            None,
            vec![create("ns.f2", table(52, 1))],
            meta("late"),
            &fenced(b"server-a"),
        );
        assert!(matches!(late, Err(WriteError::Fenced(_))), "{late:?}");
        let delete = fx
            .store
            .delete_ref(&r("fenced"), None, &fenced(b"server-a"));
        assert!(matches!(delete, Err(WriteError::Fenced(_))), "{delete:?}");
        assert_eq!(fx.head("main"), first.commit);
        assert_eq!(fx.head("fenced"), first.commit);
    }

    pub fn idempotency_records_ride_with_the_ref_move(fx: Fx) {
        seeded(&fx);
        let with = |key: &str| WriteCtx {
            idempotency: Some(Idempotency {
                key: key.into(),
                value: b"request-1".to_vec(),
                claim: None,
            }),
            ..ctx()
        };
        let out = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.c", table(12, 1))],
                meta("m"),
                &with("k1"),
            )
            .unwrap();
        let rec = fx.store.idempotency_lookup("k1").unwrap().unwrap();
        assert_eq!(
            (
                rec.value.as_slice(),
                rec.ref_name.as_str(),
                rec.head,
                rec.previous
            ),
            (
                &b"request-1"[..],
                "main",
                Some(out.commit),
                Some(out.parent)
            )
        );
        // A rejected write records nothing.
        assert!(
            fx.store
                .commit(
                    &r("main"),
                    None,
                    vec![create("ns.c", table(12, 1))],
                    meta("m"),
                    &with("k2")
                )
                .is_err()
        );
        assert_eq!(fx.store.idempotency_lookup("k2").unwrap(), None);
        // Every ref-moving write takes one.
        fx.store
            .create_ref(&r("dev"), RefKind::Branch, out.commit, &with("k3"))
            .unwrap();
        assert_eq!(
            fx.store.idempotency_lookup("k3").unwrap().unwrap().ref_name,
            "dev"
        );
        assert_eq!(
            fx.store.idempotency_lookup("k3").unwrap().unwrap().previous,
            None
        );
        fx.store.delete_ref(&r("dev"), None, &with("k4")).unwrap();
        let deleted = fx.store.idempotency_lookup("k4").unwrap().unwrap();
        assert_eq!((deleted.head, deleted.previous), (None, Some(out.commit)));
        // The writer's reflog properties ride with the move too (a run's landing names its
        // run there), and only on that move's entry.
        let landing = WriteCtx {
            reflog: BTreeMap::from([("floe.run.id".to_owned(), "r-1".to_owned())]),
            ..ctx()
        };
        let landed = fx
            .store
            .commit(
                &r("main"),
                None,
                vec![create("ns.d", table(13, 1))],
                meta("m"),
                &landing,
            )
            .unwrap();
        let entries = fx.store.reflog(Some(&r("main")), None, 2).unwrap().items;
        assert_eq!(entries[0].new, Some(landed.commit));
        assert_eq!(
            entries[0].properties.get("floe.run.id").map(String::as_str),
            Some("r-1")
        );
        assert!(!entries[1].properties.contains_key("floe.run.id"));
    }

    pub fn the_meta_keyspace_scans_and_swaps(fx: Fx) {
        fx.store.meta_put(b"run/2", b"b").unwrap();
        fx.store.meta_put(b"run/1", b"a").unwrap();
        fx.store.meta_put(b"runs", b"x").unwrap();
        fx.store.meta_put(b"tok/1", b"t").unwrap();
        let scan = fx.store.meta_scan(b"run/", None, 10).unwrap();
        assert_eq!(
            scan.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(),
            [&b"run/1"[..], b"run/2"]
        );
        let after = fx.store.meta_scan(b"run/", Some(b"run/1"), 10).unwrap();
        assert_eq!(after.len(), 1);
        assert!(fx.store.meta_cas(b"run/1", Some(b"a"), Some(b"c")).unwrap());
        assert!(!fx.store.meta_cas(b"run/1", Some(b"a"), Some(b"d")).unwrap());
        assert!(!fx.store.meta_cas(b"run/3", Some(b"a"), Some(b"d")).unwrap());
        assert!(fx.store.meta_cas(b"run/3", None, Some(b"e")).unwrap());
        assert!(fx.store.meta_cas(b"run/3", Some(b"e"), None).unwrap());
        assert_eq!(fx.store.meta_get(b"run/3").unwrap(), None);
        assert_eq!(fx.store.meta_get(b"run/1").unwrap().unwrap().as_ref(), b"c");
    }

    pub fn concurrent_commits_on_one_branch_all_land(fx: Fx) {
        fx.ok("main", vec![create("ns", ns(1))]);
        let store = Arc::new(fx.store);
        let threads: Vec<_> = (0..4u128)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut heads = Vec::new();
                    for i in 0..25u128 {
                        let id = 1000 + t * 100 + i;
                        let out = store
                            .commit(
                                &r("main"),
                                None,
                                vec![create(&format!("ns.t{t}_{i}"), table(id, 1))],
                                meta("c"),
                                &ctx(),
                            )
                            .unwrap();
                        heads.push(out.commit);
                    }
                    heads
                })
            })
            .collect();
        let acknowledged: Vec<Hash> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let head = store.get_ref(&r("main")).unwrap().head;
        assert_eq!(
            store
                .entries(head, Some(&key("ns")), None, 1000)
                .unwrap()
                .items
                .len(),
            101
        );
        for h in acknowledged {
            assert!(
                store.is_ancestor(h, head).unwrap(),
                "acknowledged commit {h} is in history"
            );
        }
    }

    pub fn equal_maps_have_equal_roots_however_built(fx: Fx) {
        fx.branch("a", "main");
        fx.branch("b", "main");
        let mut all = vec![create("ns", ns(1))];
        all.extend((0..300u128).map(|i| create(&format!("ns.t{i:03}"), table(100 + i, 1))));
        fx.ok("a", all);
        // b: namespaces first, tables in reverse in small batches, plus detours undone.
        fx.ok(
            "b",
            vec![create("ns", ns(1)), create("ns.tmp", table(9_999, 1))],
        );
        for chunk in (0..300u128).rev().collect::<Vec<_>>().chunks(37) {
            fx.ok(
                "b",
                chunk
                    .iter()
                    .map(|i| create(&format!("ns.t{i:03}"), table(100 + i, 1)))
                    .collect(),
            );
        }
        fx.ok("b", vec![delete("ns.tmp")]);
        let (a, b) = (
            fx.store.commit_object(&fx.head("a")).unwrap(),
            fx.store.commit_object(&fx.head("b")).unwrap(),
        );
        assert!(a.key_index.is_some());
        assert_eq!(a.key_index, b.key_index);
        assert_eq!(a.id_index, b.id_index);
    }

    pub fn outcomes_are_applied_rejected_or_unknown(fx: Fx) {
        seeded(&fx);
        let head = fx.head("main");
        // Commits through a store over a backend that fails the chosen writes.
        let attempt = |fail_objects: bool, fail_cas: bool| {
            let faulty = Arc::new(Faulty {
                inner: fx.backend.clone(),
                fail_objects,
                fail_cas,
                always_moved: false,
                damaged: None,
            });
            let store = Store::new(faulty, fx.clock.clone());
            let ops = vec![create("ns.c", table(12, 1))];
            store
                .commit(&r("main"), None, ops, meta("m"), &ctx())
                .unwrap_err()
        };
        // Object writes fail: rejected, not unknown, nothing moved.
        let err = attempt(true, false);
        assert!(!err.is_outcome_unknown(), "{err:?}");
        assert_eq!(fx.head("main"), head);
        // The compare-and-swap fails midway: outcome unknown.
        let err = attempt(false, true);
        assert!(err.is_outcome_unknown(), "{err:?}");
        // A conflict is a rejection.
        let err = fx
            .commit("main", vec![create("ns.a", table(10, 1))])
            .unwrap_err();
        assert!(!err.is_outcome_unknown());
        // A ref that keeps moving under every compare-and-swap: contention, a rejection of
        // its own kind (retryable, so never recorded as a final answer), for every write
        // that rebases or recomputes.
        let moving = Store::new(
            Arc::new(Faulty {
                inner: fx.backend.clone(),
                fail_objects: false,
                fail_cas: false,
                always_moved: true,
                damaged: None,
            }),
            fx.clock.clone(),
        );
        let errors = [
            moving
                .commit(
                    &r("main"),
                    None,
                    vec![create("ns.c", table(12, 1))],
                    meta("m"),
                    &ctx(),
                )
                .unwrap_err(),
            moving.assign(&r("main"), None, head, &ctx()).unwrap_err(),
            moving.delete_ref(&r("main"), None, &ctx()).unwrap_err(),
        ];
        for err in errors {
            assert!(matches!(err, WriteError::Contention(_)), "{err:?}");
            assert!(!err.is_outcome_unknown());
            assert!(err.to_string().contains("retry"), "{err}");
        }
        assert_eq!(fx.head("main"), head);
    }

    pub fn damaged_objects_are_refused_on_read(fx: Fx) {
        let base = seeded(&fx);
        fx.branch("dev", "main");
        let old_a = table(10, 1);
        let dev = fx.ok("dev", vec![update("ns.a", &old_a, table(10, 2))]);
        let main = fx.ok("main", vec![create("ns.c", table(12, 1))]);
        // A store over the same objects, one of which reads back altered. Its caches start
        // empty, so every object it needs comes from the backend.
        let over = |damaged: Hash| {
            let backend = Faulty {
                inner: fx.backend.clone(),
                fail_objects: false,
                fail_cas: false,
                always_moved: false,
                damaged: Some(damaged),
            };
            Store::new(Arc::new(backend), fx.clock.clone())
        };
        let named = |e: &StorageError| match e {
            StorageError::Corrupt { hash, .. } => *hash,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        let read = |e: ReadError| match &e {
            ReadError::Storage(s) => {
                named(s).inspect(|h| assert!(e.to_string().contains(&h.to_string())))
            }
            other => panic!("expected a storage error, got {other:?}"),
        };
        let write = |e: WriteError| match &e {
            WriteError::Storage(s) => {
                named(s).inspect(|h| assert!(e.to_string().contains(&h.to_string())))
            }
            other => panic!("expected a storage error, got {other:?}"),
        };
        let merge = |store: &Store| {
            store.merge(
                dev,
                &r("main"),
                Some(main),
                &MergeOptions::default(),
                &ConflictResolver,
                &ctx(),
            )
        };
        // A content value: the altered bytes still decode (its last byte is a schema
        // field), so only the hash tells.
        let a = fx.store.content_ref_at(dev, &key("ns.a")).unwrap().unwrap();
        let h = a.hash.0;
        let err = over(h).get_contents(dev, &[key("ns.a")]).unwrap_err();
        assert_eq!(read(err), Some(h));
        assert_eq!(
            over(h).get_contents(base, &[key("ns.a")]).unwrap()[0]
                .as_ref()
                .unwrap()
                .1,
            old_a
        );
        // A commit on the log's way.
        let err = over(base).log(main, &LogFilter::default(), 10).unwrap_err();
        assert_eq!(read(err), Some(base));
        // An index node: the root of dev's key index, read by a listing, a diff and a merge.
        let root = fx.store.commit_object(&dev).unwrap().key_index.unwrap();
        let err = over(root).entries(dev, None, None, 10).unwrap_err();
        assert_eq!(read(err), Some(root));
        let err = over(root).diff(base, dev, None, None, 10).unwrap_err();
        assert_eq!(read(err), Some(root));
        let err = merge(&over(root)).unwrap_err();
        assert!(!err.is_outcome_unknown());
        assert_eq!(write(err), Some(root));
        // The merge's source commit itself: damaged, not "not found".
        assert_eq!(write(merge(&over(dev)).unwrap_err()), Some(dev));
        // Nothing moved, and the honest store merges.
        assert_eq!(fx.head("main"), main);
        assert_eq!(merge(&fx.store).unwrap().kind, MergeKind::Merged);
    }
}

/// Wraps a backend and fails chosen writes (the outcome cases) or alters one object's
/// bytes (the integrity case).
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Backend>,
    fail_objects: bool,
    fail_cas: bool,
    /// Every compare-and-swap finds the ref moved (by a writer that is always faster).
    always_moved: bool,
    /// This object reads back with its last byte altered (bit rot, a bad copy).
    damaged: Option<Hash>,
}

impl Backend for Faulty {
    fn put_objects(&self, objects: &[(Hash, Bytes)]) -> BackendResult<()> {
        if self.fail_objects {
            return Err(BackendError::unknown("injected: object write failed"));
        }
        self.inner.put_objects(objects)
    }
    fn get_object(&self, hash: &Hash) -> BackendResult<Option<Bytes>> {
        let bytes = self.inner.get_object(hash)?;
        if self.damaged != Some(*hash) {
            return Ok(bytes);
        }
        Ok(bytes.map(|b| {
            let mut altered = b.to_vec();
            if let Some(last) = altered.last_mut() {
                *last ^= 1;
            }
            Bytes::from(altered)
        }))
    }
    fn scan_objects(&self, from: &Hash, limit: usize) -> BackendResult<Vec<Hash>> {
        self.inner.scan_objects(from, limit)
    }
    fn get_ref(&self, name: &RefName, view: RefView) -> BackendResult<Option<RefRecord>> {
        self.inner.get_ref(name, view)
    }
    fn list_refs(
        &self,
        after: Option<&RefName>,
        limit: usize,
        view: RefView,
    ) -> BackendResult<Vec<(RefName, RefRecord)>> {
        self.inner.list_refs(after, limit, view)
    }
    fn compare_and_swap_ref(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
        if self.fail_cas {
            return Err(BackendError::unknown(
                "injected: the write may or may not have applied",
            ));
        }
        if self.always_moved {
            let current = self.inner.get_ref(&update.name, RefView::Pending)?;
            return Ok(CasOutcome::Mismatch { current });
        }
        self.inner.compare_and_swap_ref(update)
    }
    fn reflog(
        &self,
        name: Option<&RefName>,
        before: Option<u64>,
        limit: usize,
    ) -> BackendResult<Vec<ReflogEntry>> {
        self.inner.reflog(name, before, limit)
    }
    fn meta_get(&self, key: &[u8]) -> BackendResult<Option<Bytes>> {
        self.inner.meta_get(key)
    }
    fn meta_put(&self, key: &[u8], value: &[u8]) -> BackendResult<()> {
        self.inner.meta_put(key, value)
    }
    fn meta_cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> BackendResult<bool> {
        self.inner.meta_cas(key, expected, new)
    }
    fn meta_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> BackendResult<Vec<(Bytes, Bytes)>> {
        self.inner.meta_scan(prefix, after, limit)
    }
}

// ----- instantiation per backend ---------------------------------------------------------

macro_rules! conformance {
    ($backend:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    super::cases::$case($make);
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $make:expr) => {
        conformance!(
            $backend,
            $make,
            [
                init_creates_main_at_the_shared_root,
                objects_given_with_a_move_are_written_whether_or_not_it_applies,
                refs_are_created_listed_and_paged,
                commits_store_contents_and_history,
                expectations_are_checked_at_the_landing_head,
                write_skew_is_impossible,
                landings_are_validated,
                bad_input_is_refused_before_anything_happens,
                limits_hold_at_the_limit_and_refuse_one_byte_over,
                tags_never_move,
                assign_and_delete_are_strict_and_logged,
                ref_specs_resolve_and_are_read_only,
                ambiguous_prefixes_list_their_candidates,
                bad_names_and_specs_are_refused,
                merge_fast_forwards_and_no_ff_and_squash,
                merge_conflicts_name_both_sides,
                identical_changes_on_both_sides_merge_cleanly,
                a_resolver_decides_what_it_knows,
                merges_are_validated_like_commits,
                criss_cross_merges_detect_ambiguous_bases,
                cherry_pick_and_revert,
                log_filters_and_pages,
                diffs_and_entries_page_by_prefix,
                idempotency_records_ride_with_the_ref_move,
                idempotency_claims_fence_a_takeover,
                a_fenced_move_applies_only_while_its_fence_holds,
                the_meta_keyspace_scans_and_swaps,
                concurrent_commits_on_one_branch_all_land,
                equal_maps_have_equal_roots_however_built,
                outcomes_are_applied_rejected_or_unknown,
                damaged_objects_are_refused_on_read,
            ]
        );
    };
}

all_cases!(memory, super::Fx::memory());
all_cases!(sled, super::Fx::sled());
all_cases!(postgres, super::Fx::postgres());

/// sled writes items larger than a quarter of its segment to blob files it never fsyncs;
/// with an 8 MiB segment every value floe stores (at most `VALUE_BYTES_MAX`) stays in the
/// log. Runs the cases that write the largest values, then looks.
#[test]
fn sled_writes_no_blob_files() {
    let mut fx = Fx::sled();
    let guard = fx.dir.take().unwrap();
    let dir = guard.path().to_owned();
    cases::limits_hold_at_the_limit_and_refuse_one_byte_over(fx);
    // Reopened: what the first store wrote is there.
    let fx = Fx::new(Arc::new(SledBackend::open(&dir).unwrap()));
    assert!(fx.keys("main").contains(&"ns.big".to_owned()));
    // Many values at the limit in one commit, and many commits: nodes and pages grow.
    fx.ok("main", vec![create("wide", ns(2))]);
    for round in 0..4u128 {
        let ops = (0..40u128)
            .map(|i| {
                let mut t = table(1_000 + round * 100 + i, 1);
                if let Payload::IcebergTable(p) = &mut t.payload {
                    p.metadata_location
                        .push_str(&"x".repeat(VALUE_BYTES_MAX - 200));
                }
                create(&format!("wide.t{round}_{i}"), t)
            })
            .collect();
        fx.ok("main", ops);
    }
    drop(fx);
    let blobs = dir.join("blobs");
    let files = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        files,
        0,
        "sled wrote {files} blob file(s) under {}",
        blobs.display()
    );
    drop(guard);
}
