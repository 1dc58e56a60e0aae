//! Unit tests of the import: planning, writing and landing against a real warehouse.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use datafusion::parquet::arrow::ArrowWriter;
use floe_catalog::{RunState, Warehouse};
use floe_commits::{RefKind, RefName};

use super::*;

pub(crate) struct Fixture {
    pub(crate) catalog: Catalog,
    pub(crate) who: Principal,
    pub(crate) main: RefSpec,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(&dir.path().join("warehouse")).unwrap();
    let catalog = Catalog::in_memory().with_warehouse(warehouse);
    let who = Principal::anonymous();
    let main = RefSpec::parse("main").unwrap();
    catalog
        .create_namespace(
            &who,
            &main,
            &ContentKey::new(["db"]).unwrap(),
            BTreeMap::new(),
            &Authored::default(),
            None,
        )
        .unwrap();
    Fixture {
        catalog,
        who,
        main,
        dir,
    }
}

pub(crate) fn ids(f: &Fixture, name: &str, ids: Range<i64>) -> ImportFile {
    let schema = Arc::new(ArrowSchema::new(vec![Field::new(
        "id",
        DataType::Int64,
        true,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(ids.collect::<Vec<_>>()))],
    )
    .unwrap();
    let path = f.dir.path().join(name);
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    ImportFile {
        name: name.to_owned(),
        blake3: format!("{:x}", bytes.len()) + name,
        size: bytes.len() as u64,
        path,
        identity: None,
        held: None,
    }
}

pub(crate) fn request(f: &Fixture, mode: Option<ImportMode>, file: ImportFile) -> ImportRequest {
    ImportRequest {
        table: ContentKey::new(["db", "t"]).unwrap(),
        branch: f.main.clone(),
        mode,
        dry_run: false,
        force: false,
        files: vec![file],
        idempotency: None,
    }
}

pub(crate) fn snapshots(f: &Fixture) -> usize {
    let key = ContentKey::new(["db", "t"]).unwrap();
    let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
    t.metadata.snapshots().count()
}

/// The wire spells a file's action as it did when the field was a string.
#[test]
fn a_file_action_is_the_same_string_on_the_wire() {
    assert_eq!(serde_json::to_value(FileAction::Copy).unwrap(), "copy");
    assert_eq!(
        serde_json::to_value(FileAction::Convert).unwrap(),
        "convert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_change_to_the_table_fails_the_import_cleanly() {
    let f = fixture();
    let first = ids(&f, "a.parquet", 0..10);
    Importer::new(f.catalog.clone())
        .run(&f.who, request(&f, None, first))
        .await
        .unwrap();
    // Another writer replaces the table's rows between the import's fork and its landing
    // (since issue 22 an append lands over concurrent appends and property changes; an
    // overwrite still stops it).
    let racing = request(&f, Some(ImportMode::Replace), ids(&f, "c.parquet", 20..30));
    let other = Principal::named("other");
    let hook: LandingHook = Arc::new(move |catalog: &Catalog| {
        tokio::runtime::Handle::current()
            .block_on(Importer::new(catalog.clone()).run(&other, racing.clone()))
            .unwrap();
    });
    let second = ids(&f, "b.parquet", 10..20);
    let err = Importer::new(f.catalog.clone())
        .with_landing_hook(hook)
        .run(&f.who, request(&f, Some(ImportMode::Append), second))
        .await
        .unwrap_err();
    let ImportError::RunFailed { run, .. } = &err else {
        panic!("{err}");
    };
    let ImportError::Catalog(CatalogError::Write(floe_commits::WriteError::Conflict {
        conflicts,
        ..
    })) = err.root()
    else {
        panic!("{err}");
    };
    let reason = conflicts[0].reason.as_ref().expect("the rule is named");
    assert_eq!(reason.rule, "target-changed-beyond-appends", "{reason:?}");
    assert!(err.to_string().contains("db.t"), "{err}");
    // The target has the other writer's rows and not the import's.
    assert_eq!(snapshots(&f), 2);
    let key = ContentKey::new(["db", "t"]).unwrap();
    let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
    assert_eq!(
        t.metadata
            .current_snapshot()
            .unwrap()
            .summary()
            .additional_properties["total-records"],
        "10"
    );
    let record = f
        .catalog
        .run_record(&floe_catalog::Principal::anonymous(), run)
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RunState::Failed);
    // Its work is sealed.
    let sealed = f
        .catalog
        .create_ref(
            &f.who,
            &RefName::parse("rescue").unwrap(),
            RefKind::Branch,
            &RefSpec::parse(record.branch().as_str()).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(matches!(sealed, CatalogError::RunSealed { .. }), "{sealed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_concurrent_commits_do_not_block_an_import() {
    let f = fixture();
    let hook: LandingHook = Arc::new(|catalog: &Catalog| {
        catalog
            .create_namespace(
                &Principal::named("other"),
                &RefSpec::parse("main").unwrap(),
                &ContentKey::new(["elsewhere"]).unwrap(),
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
            .unwrap();
    });
    let outcome = Importer::new(f.catalog.clone())
        .with_landing_hook(hook)
        .run(&f.who, request(&f, None, ids(&f, "a.parquet", 0..10)))
        .await
        .unwrap();
    assert_eq!(outcome.rows, 10);
    assert_eq!(snapshots(&f), 1);
    let record = outcome.run.unwrap();
    assert_eq!(record.state, RunState::Succeeded);
    // Landed: one commit with the run's id on main; the run branch is gone.
    let head = f.catalog.resolve(&f.who, &f.main).unwrap().hash;
    assert_eq!(outcome.commit.unwrap(), head.to_hex());
    assert!(
        f.catalog.get_ref(&f.who, &record.branch()).is_err(),
        "a landed run's branch is deleted"
    );
}

/// An append import lands over another append to the same table made after its fork:
/// the Iceberg-aware merge combines them (issue 22; before it, this failed the import).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_lands_over_a_concurrent_append_to_the_same_table() {
    let f = fixture();
    Importer::new(f.catalog.clone())
        .run(&f.who, request(&f, None, ids(&f, "a.parquet", 0..10)))
        .await
        .unwrap();
    let racing = request(&f, Some(ImportMode::Append), ids(&f, "c.parquet", 20..30));
    let who = f.who.clone();
    let hook: LandingHook = Arc::new(move |catalog: &Catalog| {
        tokio::runtime::Handle::current()
            .block_on(Importer::new(catalog.clone()).run(&who, racing.clone()))
            .unwrap();
    });
    let outcome = Importer::new(f.catalog.clone())
        .with_landing_hook(hook)
        .run(
            &f.who,
            request(&f, Some(ImportMode::Append), ids(&f, "b.parquet", 10..20)),
        )
        .await
        .unwrap();
    assert_eq!(outcome.run.unwrap().state, RunState::Succeeded);
    let engine = crate::query::QueryEngine::new(f.catalog.clone(), crate::QueryLimits::default());
    let answer = engine
        .run(
            &f.who,
            crate::query::QueryRequest {
                sql: "select id from db.t order by id".to_owned(),
                spec: f.main.clone(),
                namespace: None,
                max_rows: None,
                timeout: None,
            },
        )
        .await
        .unwrap();
    let batches: Vec<_> = futures::StreamExt::collect(answer.batches).await;
    let mut got = Vec::new();
    for b in batches {
        let b = b.unwrap();
        let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        got.extend(col.iter().map(Option::unwrap));
    }
    assert_eq!(got, (0..30).collect::<Vec<i64>>());
    // The racing append's snapshot, then the landed one replayed on top of it, marked as
    // the copy of the import's own snapshot.
    let key = ContentKey::new(["db", "t"]).unwrap();
    let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
    let current = t.metadata.current_snapshot().unwrap();
    assert!(
        current
            .summary()
            .additional_properties
            .contains_key(floe_catalog::SOURCE_SNAPSHOT_ID),
        "{:?}",
        current.summary()
    );
    assert_eq!(
        current.summary().additional_properties["total-records"],
        "30"
    );
}
