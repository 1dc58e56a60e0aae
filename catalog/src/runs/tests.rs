//! The run machinery on an in-memory catalog: landing, sealing, recovery.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_commits::{CommitMeta, ContentKey, RefKind, RefName, RefSpec, WriteCtx};

use super::*;
use crate::{Authored, RetentionReport};

fn setup() -> (Catalog, Principal, RefSpec) {
    (
        Catalog::in_memory().with_ids(Arc::new(crate::SequentialIds::new(0))),
        Principal::named("ann"),
        RefSpec::parse("main").unwrap(),
    )
}

/// A run on `main` that created namespace `db` on its branch.
fn started(
    catalog: &Catalog,
    who: &Principal,
    main: &RefSpec,
) -> (RunRecord, Principal, RefSpec, ContentKey) {
    let (record, executor) = catalog
        .start_run(who, main, RunKind::Import, "import x".to_owned())
        .unwrap();
    let branch = RefSpec::parse(record.branch().as_str()).unwrap();
    let ns = namespace_on_branch(catalog, &record, "db");
    (record, executor, branch, ns)
}

/// Namespace `name`, created by the run on its branch.
fn namespace_on_branch(catalog: &Catalog, record: &RunRecord, name: &str) -> ContentKey {
    let branch = RefSpec::parse(record.branch().as_str()).unwrap();
    let executor = Principal::named(record.principal.clone()).in_run(&record.id);
    let ns = ContentKey::new([name]).unwrap();
    catalog
        .create_namespace(
            &executor,
            &branch,
            &ns,
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap();
    ns
}

#[test]
fn recovery_fails_a_run_that_never_landed_and_seals_it() {
    let (catalog, who, main) = setup();
    let (record, _, branch, _) = started(&catalog, &who, &main);
    // Only the executor writes the run branch.
    let refused = catalog.create_namespace(
        &who,
        &branch,
        &ContentKey::new(["other"]).unwrap(),
        BTreeMap::new(),
        &Authored::default(),
        None,
    );
    assert!(refused.is_err());
    // While it runs, nothing may build on its work either.
    let running = catalog
        .create_ref(
            &who,
            &RefName::parse("early").unwrap(),
            RefKind::Branch,
            &branch,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(running, CatalogError::RunSealed { .. }),
        "{running}"
    );
    let settled = catalog.recover_runs(&Principal::anonymous()).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].state, RunState::Failed);
    assert!(settled[0].error.as_deref().unwrap().contains("stopped"));
    // A second recovery has nothing to do.
    assert!(
        catalog
            .recover_runs(&Principal::anonymous())
            .unwrap()
            .is_empty()
    );
    let head = catalog.store.get_ref(&record.branch()).unwrap().head;
    let sealed = catalog
        .merge(
            &who,
            &RefSpec::parse(&head.to_hex()).unwrap(),
            &main,
            &crate::MergeRequest::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
    assert!(sealed.to_string().contains(&record.id), "{sealed}");
}

#[test]
fn recovery_finds_a_landing_whose_record_was_not_updated() {
    let (catalog, who, main) = setup();
    let (record, executor, _, ns) = started(&catalog, &who, &main);
    // An unrelated commit on the target does not block the landing.
    catalog
        .create_namespace(
            &who,
            &main,
            &ContentKey::new(["other"]).unwrap(),
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap();
    let landing = Landing {
        appends: Vec::new(),
        outputs: vec![ns.clone()],
        inputs: Vec::new(),
        message: "land".to_owned(),
        ..Landing::default()
    };
    let landed = catalog
        .land_run(&executor, &record, &landing, &Authored::default())
        .unwrap();
    assert_eq!(landed.bookkeeping_error, None);
    let landed = landed.commit;
    let commit = catalog.store.commit_object(&landed).unwrap();
    assert_eq!(commit.properties.get(RUN_ID_PROPERTY), Some(&record.id));
    assert_eq!(
        commit.properties.get(RUN_SOURCE_PROPERTY).unwrap(),
        "import x"
    );
    assert!(
        catalog.store.get_ref(&record.branch()).is_err(),
        "landed: branch deleted"
    );
    // A crash between the landing commit and the record's update: the landing is known
    // by its reflog entry, so main (whose head it is) is not sealed meanwhile...
    catalog.put_record(&record).unwrap();
    catalog
        .create_ref(
            &who,
            &RefName::parse("from-main").unwrap(),
            RefKind::Branch,
            &main,
            None,
        )
        .unwrap();
    // ...and recovery settles it.
    let settled = catalog.recover_runs(&Principal::anonymous()).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].state, RunState::Succeeded);
    assert_eq!(settled[0].landed.as_deref(), Some(landed.to_hex().as_str()));
    // Landing twice conflicts: the namespace exists now.
    let (again, executor) = catalog
        .start_run(&who, &main, RunKind::Import, "import y".to_owned())
        .unwrap();
    let branch = RefSpec::parse(again.branch().as_str()).unwrap();
    let fork_head = catalog.resolve(&who, &main).unwrap().hash;
    catalog
        .update_namespace_properties(
            &executor,
            &branch,
            &ns,
            &crate::PropertiesUpdate {
                updates: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                removals: Vec::new(),
            },
            &Authored::default(),
            None,
        )
        .unwrap();
    catalog
        .update_namespace_properties(
            &who,
            &main,
            &ns,
            &crate::PropertiesUpdate {
                updates: BTreeMap::from([("k".to_owned(), "w".to_owned())]),
                removals: Vec::new(),
            },
            &Authored::default(),
            None,
        )
        .unwrap();
    let moved = catalog.resolve(&who, &main).unwrap().hash;
    assert_ne!(moved, fork_head);
    let conflict = catalog
        .land_run(
            &executor,
            &again,
            &Landing {
                appends: Vec::new(),
                outputs: vec![ns],
                message: "land".to_owned(),
                ..Landing::default()
            },
            &Authored::default(),
        )
        .unwrap_err();
    assert!(matches!(conflict, CatalogError::Write(_)), "{conflict}");
    assert_eq!(catalog.resolve(&who, &main).unwrap().hash, moved);
}

/// A commit on a target that carries a run's properties but is not its landing (written
/// here straight through the store: no API accepts `floe.*` properties) neither settles
/// the run as succeeded nor seals the target (issue 14, item 4).
#[test]
fn properties_alone_identify_no_landing() {
    let (catalog, who, main) = setup();
    let (running, _, _, _) = started(&catalog, &who, &main);
    let forged = |run: &str| {
        let mut meta = CommitMeta::new("mallory", "forged", 0);
        meta.properties
            .insert(RUN_ID_PROPERTY.to_owned(), run.to_owned());
        meta.properties
            .insert(RUN_SOURCE_PROPERTY.to_owned(), "import x".to_owned());
        let op = floe_commits::Op::Put {
            key: ContentKey::new([format!("n{}", catalog.new_uuid().simple())]).unwrap(),
            content: floe_commits::Content::namespace(
                floe_commits::ContentId(catalog.new_uuid().into_bytes()),
                BTreeMap::new(),
            ),
            expect: floe_commits::Expect::Absent,
        };
        catalog
            .store
            .commit(
                &RefName::parse("main").unwrap(),
                None,
                vec![op],
                meta,
                &WriteCtx::principal("mallory"),
            )
            .unwrap()
            .commit
    };
    forged(&running.id);
    let settled = catalog.recover_runs(&Principal::anonymous()).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(
        settled[0].state,
        RunState::Failed,
        "a commit carrying its id is not its landing"
    );
    // A forged "landing" of a failed run is that run's sealed work, found by its
    // properties; the record and reflog say it landed nowhere.
    let head = forged(&running.id);
    let sealed = catalog.check_not_sealed(head).unwrap_err();
    assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
}

/// User-supplied `floe.*` properties are refused with a 400-kind error naming them.
#[test]
fn merges_refuse_reserved_properties() {
    let (catalog, who, main) = setup();
    catalog
        .create_ref(
            &who,
            &RefName::parse("dev").unwrap(),
            RefKind::Branch,
            &main,
            None,
        )
        .unwrap();
    let mut request = crate::MergeRequest::default();
    request
        .options
        .meta
        .properties
        .insert(RUN_ID_PROPERTY.to_owned(), "x".to_owned());
    request
        .options
        .meta
        .properties
        .insert("ticket".to_owned(), "7".to_owned());
    let err = catalog
        .merge(&who, &RefSpec::parse("dev").unwrap(), &main, &request, None)
        .unwrap_err();
    assert!(matches!(err, CatalogError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("floe.run.id"), "{err}");
    assert!(!err.to_string().contains("ticket"), "{err}");
}

/// A run's answer is stored beside its record in chunks, before the landing; the record
/// stays small; an answer over the bound is refused before anything lands (item 2).
#[test]
fn large_answers_are_kept_beside_the_record_and_too_large_ones_never_land() {
    let (catalog, who, main) = setup();
    let (record, executor, _, ns) = started(&catalog, &who, &main);
    let files: Vec<serde_json::Value> = (0..2_000)
        .map(|i| serde_json::json!({"name": format!("file-{i:05}.parquet"), "blake3": "ab".repeat(32)}))
        .collect();
    let answer = serde_json::json!({ "files": files });
    assert!(answer.to_string().len() > 2 * floe_commits::limits::VALUE_BYTES_MAX);
    let landing = Landing {
        appends: Vec::new(),
        outputs: vec![ns.clone()],
        message: "land".to_owned(),
        answer: Some(answer.clone()),
        ..Landing::default()
    };
    let landed = catalog
        .land_run(&executor, &record, &landing, &Authored::default())
        .unwrap();
    assert_eq!(landed.bookkeeping_error, None);
    let stored = catalog
        .run_record(&Principal::anonymous(), &record.id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, RunState::Succeeded);
    assert!(
        serde_json::to_vec(&stored).unwrap().len() < 4_096,
        "the record stays small"
    );
    assert_eq!(catalog.run_answer(&who, &stored).unwrap(), Some(answer));

    // Too large to keep: refused before the landing; the target is unchanged.
    let (record, executor, _, _) = {
        let (record, executor) = catalog
            .start_run(&who, &main, RunKind::Import, "import y".to_owned())
            .unwrap();
        (record, executor, (), ())
    };
    let huge = "x".repeat(crate::limits::RUN_ANSWER_BYTES_MAX);
    let before = catalog.resolve(&who, &main).unwrap().hash;
    let err = catalog
        .land_run(
            &executor,
            &record,
            &Landing {
                appends: Vec::new(),
                outputs: Vec::new(),
                message: "land".to_owned(),
                answer: Some(serde_json::json!({ "huge": huge })),
                ..Landing::default()
            },
            &Authored::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("RUN_ANSWER_BYTES_MAX"), "{err}");
    assert_eq!(catalog.resolve(&who, &main).unwrap().hash, before);
}

/// A failed run's work is sealed until the run is promoted; promoting a running or a
/// succeeded run is refused (item 13).
#[test]
fn a_promoted_run_unseals_its_work() {
    let (catalog, who, main) = setup();
    let (record, _, branch, _) = started(&catalog, &who, &main);
    let refused = catalog.promote_run(&who, &record.id).unwrap_err();
    assert!(refused.to_string().contains("still running"), "{refused}");
    catalog
        .fail_run(&Principal::anonymous(), &record, "it broke")
        .unwrap();
    let head = catalog.store.get_ref(&record.branch()).unwrap().head;
    let keep = RefName::parse("keep").unwrap();
    let sealed = catalog
        .create_ref(&who, &keep, RefKind::Branch, &branch, None)
        .unwrap_err();
    assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
    let promoted = catalog.promote_run(&who, &record.id).unwrap();
    assert!(promoted.promoted);
    assert_eq!(promoted.promoted_by.as_deref(), Some("ann"));
    let made = catalog
        .create_ref(&who, &keep, RefKind::Branch, &branch, None)
        .unwrap();
    assert_eq!(made.head, head);
    // Promoting again changes nothing; an unknown run is not found.
    assert_eq!(catalog.promote_run(&who, &record.id).unwrap(), promoted);
    assert!(matches!(
        catalog.promote_run(&who, "nope").unwrap_err(),
        CatalogError::RunNotFound(_)
    ));
}

/// Retention on a manual clock: a failed run's branch goes after `run_branches_ms`, a
/// finished run's record (and answer) after `run_records_ms`, idempotency records after
/// their lifetime, and a landed run left `running` is settled (item 13).
#[test]
fn maintenance_forgets_what_is_past_its_retention() {
    let clock = Arc::new(floe_commits::ManualClock::new(1_000_000));
    let store = Arc::new(
        floe_commits::Store::open(Arc::new(floe_commits::MemoryBackend::new()), clock.clone())
            .unwrap(),
    );
    let catalog = Catalog::new(store).with_ids(Arc::new(crate::SequentialIds::new(0)));
    let who = Principal::named("ann");
    let main = RefSpec::parse("main").unwrap();
    let retention = Retention::default();
    let (failed, _, _, _) = started(&catalog, &who, &main);
    catalog
        .fail_run(&Principal::anonymous(), &failed, "it broke")
        .unwrap();
    let (landed, executor, _, ns) = started(&catalog, &who, &main);
    let commit = catalog
        .land_run(
            &executor,
            &landed,
            &Landing {
                appends: Vec::new(),
                outputs: vec![ns],
                message: "land".to_owned(),
                answer: Some(serde_json::json!({"rows": 1})),
                ..Landing::default()
            },
            &Authored::default(),
        )
        .unwrap()
        .commit;
    // An idempotency record (applied, with a ref move) and a recorded rejection.
    let request = |n: u8| crate::IdemRequest {
        claim: None,
        key: crate::IdempotencyKey::parse(&catalog.new_uuid().to_string()).unwrap(),
        fingerprint: format!("fp{n}"),
    };
    let applied = request(1);
    catalog
        .create_ref(
            &who,
            &RefName::parse("b").unwrap(),
            RefKind::Branch,
            &main,
            Some(&applied),
        )
        .unwrap();
    let rejected = request(2);
    catalog
        .record_rejection(&Principal::anonymous(), &rejected, "{}")
        .unwrap();
    // A landed run whose record was left running.
    let mut lagging = catalog
        .run_record(&Principal::anonymous(), &landed.id)
        .unwrap()
        .unwrap();
    lagging.state = RunState::Running;
    lagging.landed = None;
    lagging.finished_ms = None;
    catalog.put_record(&lagging).unwrap();

    let report = catalog.maintain(&who, &retention).unwrap();
    assert_eq!(
        (
            report.settled_runs,
            report.pruned_run_branches,
            report.expired_run_records,
            report.expired_idempotency_records,
            report.more
        ),
        (1, 0, 0, 0, false)
    );
    let settled = catalog
        .run_record(&Principal::anonymous(), &landed.id)
        .unwrap()
        .unwrap();
    assert_eq!(settled.landed, Some(commit.to_hex()));
    assert!(
        catalog
            .recall(&Principal::anonymous(), &applied)
            .unwrap()
            .is_some()
    );

    // Past the idempotency lifetime.
    clock.advance(crate::IDEMPOTENCY_LIFETIME_MS + 1);
    let report = catalog.maintain(&who, &retention).unwrap();
    assert_eq!(report.expired_idempotency_records, 2);
    assert_eq!(
        catalog.recall(&Principal::anonymous(), &applied).unwrap(),
        None
    );
    assert_eq!(
        catalog.recall(&Principal::anonymous(), &rejected).unwrap(),
        None
    );
    assert!(catalog.store.get_ref(&failed.branch()).is_ok(), "not yet");

    // Past the branch retention: the failed run's branch goes, its record stays.
    clock.advance(retention.run_branches_ms);
    let report = catalog.maintain(&who, &retention).unwrap();
    assert_eq!(
        (report.pruned_run_branches, report.expired_run_records),
        (1, 0)
    );
    assert!(catalog.store.get_ref(&failed.branch()).is_err());
    assert!(
        catalog
            .run_record(&Principal::anonymous(), &failed.id)
            .unwrap()
            .is_some()
    );

    // Past the record retention: both records go, with the stored answer.
    clock.advance(retention.run_records_ms);
    let report = catalog.maintain(&who, &retention).unwrap();
    assert_eq!(report.expired_run_records, 2);
    assert!(
        catalog
            .run_record(&Principal::anonymous(), &failed.id)
            .unwrap()
            .is_none()
    );
    assert!(
        catalog
            .run_record(&Principal::anonymous(), &landed.id)
            .unwrap()
            .is_none()
    );
    assert!(
        catalog
            .store
            .meta_scan(b"run-answer/", None, 10)
            .unwrap()
            .is_empty()
    );
    // Main's head is still the landing commit, and still usable.
    catalog
        .create_ref(
            &who,
            &RefName::parse("after").unwrap(),
            RefKind::Branch,
            &main,
            None,
        )
        .unwrap();
    // A pass with nothing left to do.
    let report = catalog.maintain(&who, &retention).unwrap();
    assert_eq!(report, RetentionReport::default());
}

/// Two servers on one shared store. A run whose server stopped renewing its lease (paused,
/// not dead) is settled by the other; its owner, waking, lands nothing and writes nothing
/// over the settled record. A landing made before the settling is what the settling finds.
#[test]
fn a_paused_owner_lands_nothing_once_another_server_settled_its_run() {
    let clock = Arc::new(floe_commits::ManualClock::new(1_000_000));
    let backend = Arc::new(floe_commits::MemoryBackend::shared());
    let store = Arc::new(floe_commits::Store::open(backend, clock.clone()).unwrap());
    let a = Catalog::new(store.clone()).with_server_id("a");
    let b = Catalog::new(store.clone()).with_server_id("b");
    let (who, main) = (Principal::named("ann"), RefSpec::parse("main").unwrap());
    a.renew_server_lease(30_000).unwrap();
    let (record, executor, _, ns) = started(&a, &who, &main);
    let token = owner_token_key(&record.id);
    assert_eq!(store.meta_get(&token).unwrap().as_deref(), Some(&b"a"[..]));
    let landing = Landing {
        outputs: vec![ns.clone()],
        message: "land".to_owned(),
        ..Landing::default()
    };
    let before = a.resolve(&who, &main).unwrap().hash;
    // While a's lease holds, b leaves the run alone.
    assert!(b.recover_runs(&Principal::anonymous()).unwrap().is_empty());
    clock.advance(30_001);
    let settled = b.recover_runs(&Principal::anonymous()).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].state, RunState::Failed);
    assert_eq!(
        store.meta_get(&token).unwrap(),
        None,
        "the token went first"
    );
    // a wakes up: its landing is fenced off, and nothing of it is on main.
    let fenced = a
        .land_run(&executor, &record, &landing, &Authored::default())
        .unwrap_err();
    assert!(
        matches!(&fenced, CatalogError::Write(floe_commits::WriteError::Fenced(m)) if m.contains("settled by another server")),
        "{fenced}"
    );
    assert_eq!(a.resolve(&who, &main).unwrap().hash, before);
    // Nor does it write its own branch any more: the settled run's branch stays as the
    // settling found it.
    let branch = RefSpec::parse(record.branch().as_str()).unwrap();
    let sealed = a.resolve(&who, &branch).unwrap().hash;
    let late = a
        .create_namespace(
            &executor,
            &branch,
            &ContentKey::new(["late"]).unwrap(),
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&late, CatalogError::Write(floe_commits::WriteError::Fenced(m)) if m.contains("nothing of it was written")),
        "{late}"
    );
    assert_eq!(a.resolve(&who, &branch).unwrap().hash, sealed);
    // Nor does its failing, succeeding or saving change the settled record.
    a.fail_run(&executor, &record, "the landing failed")
        .unwrap();
    assert!(a.succeed_run(&executor, &record, None).is_err());
    assert!(a.save_run(&executor, &record).is_err());
    let kept = b.record_of(&record.id).unwrap().unwrap();
    assert_eq!(kept.state, RunState::Failed);
    assert!(
        kept.error.as_deref().unwrap().contains("server a"),
        "{kept:?}"
    );

    // A run a queued, settled meanwhile: its turn coming late does not start it.
    a.renew_server_lease(30_000).unwrap();
    let queued = a
        .queue_run(&who, &main, RunKind::Import, "import q".to_owned(), None)
        .unwrap();
    clock.advance(30_001);
    assert_eq!(b.recover_runs(&Principal::anonymous()).unwrap().len(), 1);
    let late = a.begin_run(&who, &queued).unwrap_err();
    assert!(late.to_string().contains("is failed already"), "{late}");
    assert_eq!(
        b.record_of(&queued.id).unwrap().unwrap().state,
        RunState::Failed
    );
    assert!(a.store.get_ref(&queued.branch()).is_err(), "never forked");

    // A run cancelled through b while a is paused: a's landing is fenced off too.
    a.renew_server_lease(30_000).unwrap();
    let (record, executor, _, _) = started(&a, &who, &main);
    let landing = landing_of(&a, &record);
    clock.advance(30_001);
    b.cancel_run(&who, &record, "stop it").unwrap();
    let fenced = a
        .land_run(&executor, &record, &landing, &Authored::default())
        .unwrap_err();
    assert!(
        matches!(
            &fenced,
            CatalogError::Write(floe_commits::WriteError::Fenced(_))
        ),
        "{fenced}"
    );
    assert_eq!(a.resolve(&who, &main).unwrap().hash, before);
    let kept = b.record_of(&record.id).unwrap().unwrap();
    assert_eq!(kept.state, RunState::Cancelled);

    // A run that landed before its server stopped, its record not yet saying so: the
    // settling takes the token, then finds the landing, and settles it succeeded.
    a.renew_server_lease(30_000).unwrap();
    let (record, executor, _, _) = started(&a, &who, &main);
    let landed = a
        .land_run(
            &executor,
            &record,
            &landing_of(&a, &record),
            &Authored::default(),
        )
        .unwrap()
        .commit;
    a.put_record(&record).unwrap();
    let (stored, live) = b.stored_record(&record.id).unwrap().unwrap();
    assert!(live.state.is_live());
    clock.advance(30_001);
    assert!(b.settle_orphan(&live, &stored, "a").unwrap());
    let kept = b.record_of(&record.id).unwrap().unwrap();
    assert_eq!(kept.state, RunState::Succeeded);
    assert_eq!(kept.landed.as_deref(), Some(landed.to_hex().as_str()));
    // Its owner's own bookkeeping, late, agrees and changes nothing.
    a.succeed_run(&executor, &record, Some(landed)).unwrap();
}

/// A landing of namespace `ns2` created on the run's branch.
fn landing_of(catalog: &Catalog, record: &RunRecord) -> Landing {
    Landing {
        outputs: vec![namespace_on_branch(catalog, record, "ns2")],
        message: "land".to_owned(),
        ..Landing::default()
    }
}

/// On one server too: a run cancelled while it works lands nothing afterwards (its owner
/// token went with the cancel), and its record stays cancelled.
#[test]
fn a_run_cancelled_before_its_landing_applies_lands_nothing() {
    let (catalog, who, main) = setup();
    let (record, executor, _, ns) = started(&catalog, &who, &main);
    let before = catalog.resolve(&who, &main).unwrap().hash;
    catalog.cancel_run(&who, &record, "stop it").unwrap();
    let landing = Landing {
        outputs: vec![ns],
        message: "land".to_owned(),
        ..Landing::default()
    };
    let fenced = catalog
        .land_run(&executor, &record, &landing, &Authored::default())
        .unwrap_err();
    assert!(
        matches!(&fenced, CatalogError::Write(floe_commits::WriteError::Fenced(m)) if m.contains("cancelled")),
        "{fenced}"
    );
    assert_eq!(catalog.resolve(&who, &main).unwrap().hash, before);
    let kept = catalog.record_of(&record.id).unwrap().unwrap();
    assert_eq!(kept.state, RunState::Cancelled);
}
