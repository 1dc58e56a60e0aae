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
    // Another writer changes the table between the import's fork and its landing.
    let hook: LandingHook = Arc::new(|catalog: &Catalog| {
        let key = ContentKey::new(["db", "t"]).unwrap();
        let change = TableChange {
            key,
            requirements: Vec::new(),
            updates: vec![TableUpdate::SetProperties {
                updates: HashMap::from([("owner".to_owned(), "someone else".to_owned())]),
            }],
        };
        catalog
            .commit_table(
                &Principal::named("other"),
                &RefSpec::parse("main").unwrap(),
                change,
                &Authored::default(),
                None,
            )
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
    assert!(
        matches!(err.root(), ImportError::Catalog(CatalogError::Write(_))),
        "{err}"
    );
    assert!(err.to_string().contains("db.t"), "{err}");
    // The target has the other writer's change and not the import's rows.
    assert_eq!(snapshots(&f), 1);
    let key = ContentKey::new(["db", "t"]).unwrap();
    let (_, t) = f.catalog.load_table(&f.who, &f.main, &key).unwrap();
    assert_eq!(
        t.metadata.properties().get("owner").unwrap(),
        "someone else"
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
