//! The runner against a real catalog and warehouse: planning, execution, materialization
//! and the landing rule.

use std::collections::BTreeMap;

use floe_catalog::{Authored, RunState};

pub(super) use super::test_world::{World, config, sleepers, world};
use super::*;

const PROJECT: &str = "project:\n  id: p1\n  name: demo\nparameters:\n  min_id:\n    type: int\n    default: 10\ndefaults:\n  namespace: db\n";

fn files(models: &[(&str, &str)]) -> Vec<u8> {
    files_with(PROJECT, models)
}

/// A project archive: the project file `project`, and the named files.
pub(super) fn files_with(project: &str, models: &[(&str, &str)]) -> Vec<u8> {
    let mut files = ProjectFiles::new();
    files.insert(
        "bauplan_project.yml".to_owned(),
        project.as_bytes().to_vec(),
    );
    for (name, sql) in models {
        files.insert((*name).to_owned(), sql.as_bytes().to_vec());
    }
    archive::pack(&files)
}

fn demo() -> Vec<u8> {
    files(&[
        (
            "models/big.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT id, id * 2 AS Twice FROM T WHERE id >= $min_id",
        ),
        ("evens.sql", "SELECT ID FROM big WHERE id % 2 = 0"),
        (
            "joined.sql",
            "-- bauplan: materialization_strategy=APPEND\nSELECT b.id, b.twice FROM big b JOIN evens e ON b.id = e.id",
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_project_lands_its_materialized_models_as_one_commit() {
    let w = world().await;
    let before = w.head();
    let record = w.run(demo(), RunOptions::default()).await.unwrap();
    assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
    let landed = Hash::parse(record.landed.as_deref().unwrap()).unwrap();
    assert_eq!(w.head(), landed);
    let detail =
        w.f.catalog
            .commit_detail(
                &w.f.who,
                &RefSpec::parse(&landed.to_hex()).unwrap(),
                None,
                100,
            )
            .unwrap();
    assert_eq!(detail.commit.parents.to_vec(), vec![before]);
    assert_eq!(
        detail.commit.properties.get("floe.run.id"),
        Some(&record.id)
    );
    // It changes exactly the materialized tables.
    let changed: Vec<String> = detail
        .changes
        .items
        .iter()
        .map(|c| c.key.to_string())
        .collect();
    assert_eq!(changed, vec!["db.big", "db.joined"]);
    // REPLACE: ids 10..100; APPEND: the even ones; NONE: not written.
    assert_eq!(w.count("main", "db.big").await, 90);
    assert_eq!(w.count("main", "db.joined").await, 45);
    let none = w.f.catalog.load_table(
        &w.f.who,
        &w.f.main,
        &ContentKey::new(["db", "evens"]).unwrap(),
    );
    assert!(matches!(none, Err(CatalogError::TableNotFound(_))));
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    let states: Vec<_> = p
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state, n.rows))
        .collect();
    assert_eq!(
        states,
        vec![
            ("big", NodeState::Succeeded, Some(90)),
            ("evens", NodeState::Succeeded, Some(45)),
            ("joined", NodeState::Succeeded, Some(45)),
        ]
    );
    assert_eq!(p.parameters["min_id"], serde_json::json!(10));
    // The code snapshot is kept by its hash; the log tells the story.
    assert!(w.runner.code_path(&p.code).exists());
    let log = std::fs::read_to_string(w.runner.log_path(&record.id)).unwrap();
    assert!(log.contains(" big info 90 rows"), "{log}");
    // The run branch is gone.
    assert!(w.f.catalog.get_ref(&w.f.who, &record.branch()).is_err());

    // Again with a parameter: REPLACE rewrites, APPEND adds.
    let options = RunOptions {
        params: BTreeMap::from([("min_id".to_owned(), "90".to_owned())]),
        ..RunOptions::default()
    };
    let again = w.run(demo(), options).await.unwrap();
    assert_eq!(again.state, RunState::Succeeded, "{:?}", again.error);
    assert_eq!(w.count("main", "db.big").await, 10);
    assert_eq!(w.count("main", "db.joined").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_changes_nothing_and_seals_the_branch() {
    let w = world().await;
    let before = w.head();
    let archive = files(&[
        (
            "a.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
        ),
        // Fails while executing: a cast that cannot be done.
        (
            "b.sql",
            "SELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM a",
        ),
        (
            "c.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT n FROM b",
        ),
    ]);
    let record = w.run(archive, RunOptions::default()).await.unwrap();
    assert_eq!(record.state, RunState::Failed);
    assert_eq!(w.head(), before);
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    assert_eq!(p.failure, Some(Failure::Execution));
    let states: Vec<_> = p.nodes.iter().map(|n| n.state).collect();
    assert_eq!(
        states,
        vec![NodeState::Succeeded, NodeState::Failed, NodeState::Skipped]
    );
    assert!(
        p.nodes[1].error.as_ref().unwrap().message.contains("x0"),
        "{:?}",
        p.nodes[1].error
    );
    // Its branch stays, sealed.
    w.assert_sealed(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_errors_name_file_and_line_and_fork_nothing() {
    let w = world().await;
    let refs_before =
        w.f.catalog
            .list_refs(&w.f.who, None, None, 100)
            .unwrap()
            .items
            .len();
    /// An archive and options, and the file, line and words of the error they make.
    type Case = (Vec<u8>, RunOptions, &'static str, Option<u32>, &'static str);
    let cases: Vec<Case> = vec![
        (
            files(&[("a.sql", "SELECT 1 AS x"), ("sub/a.sql", "SELECT 2 AS x")]),
            RunOptions::default(),
            "sub/a.sql",
            Some(1),
            "defined twice",
        ),
        (
            files(&[("a.sql", "SELECT * FROM b"), ("b.sql", "SELECT * FROM a")]),
            RunOptions::default(),
            "a.sql",
            Some(1),
            "cycle",
        ),
        (
            files(&[("a.sql", "SELECT 1 AS x\n, y FROM nowhere")]),
            RunOptions::default(),
            "a.sql",
            Some(2),
            "neither a model of the project nor a table",
        ),
        (
            files(&[("a.sql", "SELECT 1 AS x\nFROM t WHERE id > $nope")]),
            RunOptions::default(),
            "a.sql",
            Some(2),
            "$nope names no parameter",
        ),
        (
            files(&[("a.sql", "SELECT 1 AS x")]),
            RunOptions {
                params: BTreeMap::from([("min_id".to_owned(), "many".to_owned())]),
                ..RunOptions::default()
            },
            "bauplan_project.yml",
            Some(5),
            "not an int",
        ),
        (
            files(&[("a.sql", "SELECT 1 AS x")]),
            RunOptions {
                params: BTreeMap::from([("other".to_owned(), "1".to_owned())]),
                ..RunOptions::default()
            },
            "bauplan_project.yml",
            None,
            "unknown parameter other",
        ),
        (
            files(&[("a.sql", "SELECT 1 AS x\nFROM t WHERE")]),
            RunOptions::default(),
            "a.sql",
            Some(2),
            "syntax error",
        ),
    ];
    for (archive, options, file, line, what) in cases {
        let err = w.run(archive, options).await.unwrap_err();
        let RunError::Planning(errors) = &err else {
            panic!("{what}: {err}");
        };
        assert!(
            errors
                .iter()
                .any(|e| e.file == file && e.line == line && e.message.contains(what)),
            "{what}: {errors:?}"
        );
    }
    let (runs, _) =
        w.f.catalog
            .list_runs(&w.f.who, None, 100, &|r| r.kind == RunKind::Run)
            .unwrap();
    assert!(runs.is_empty(), "no run was recorded");
    let refs_after =
        w.f.catalog
            .list_refs(&w.f.who, None, None, 100)
            .unwrap()
            .items
            .len();
    assert_eq!(refs_before, refs_after, "nothing was forked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_schemas_and_writes_nothing() {
    let w = world().await;
    let before = w.head();
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let record = w.run(demo(), options).await.unwrap();
    assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
    assert_eq!(w.head(), before);
    assert!(record.landed.is_none());
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    let big = &p.nodes[0];
    assert_eq!(big.rows, Some(90));
    let names: Vec<&str> = big
        .schema
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, vec!["id", "Twice"]);
}

/// A runner whose runs call `change` just before they land.
async fn racing(change: impl Fn(&Catalog) + Send + Sync + 'static) -> World {
    let mut w = world().await;
    let runs = tempfile::tempdir().unwrap();
    w.runner = Runner::new(
        w.f.catalog.clone(),
        w.engine.clone(),
        config(runs.path(), 2, 2),
    )
    .with_landing_hook(Arc::new(change));
    w._runs = runs;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_commit_after_the_fork_does_not_block_the_landing() {
    let w = racing(|catalog| {
        catalog
            .create_namespace(
                &Principal::anonymous(),
                &RefSpec::parse("main").unwrap(),
                &ContentKey::new(["other"]).unwrap(),
                BTreeMap::new(),
                &Authored::default(),
                None,
            )
            .unwrap();
    })
    .await;
    let record = w.run(demo(), RunOptions::default()).await.unwrap();
    assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
    assert_eq!(w.count("main", "db.big").await, 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_changed_after_the_fork_fails_the_landing_naming_it() {
    let w = racing(|catalog| {
        let change = floe_catalog::TableChange {
            key: ContentKey::new(["db", "t"]).unwrap(),
            requirements: Vec::new(),
            updates: vec![iceberg::TableUpdate::SetProperties {
                updates: std::collections::HashMap::from([(
                    "touched".to_owned(),
                    "yes".to_owned(),
                )]),
            }],
        };
        catalog
            .commit_table(
                &Principal::anonymous(),
                &RefSpec::parse("main").unwrap(),
                change,
                &Authored::default(),
                None,
            )
            .unwrap();
    })
    .await;
    let before_big =
        w.f.catalog
            .load_table(
                &w.f.who,
                &w.f.main,
                &ContentKey::new(["db", "big"]).unwrap(),
            )
            .is_ok();
    assert!(!before_big);
    let record = w.run(demo(), RunOptions::default()).await.unwrap();
    assert_eq!(record.state, RunState::Failed);
    let error = record.error.unwrap();
    assert!(error.contains("db.t"), "{error}");
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    assert_eq!(p.failure, Some(Failure::Conflict));
    // Nothing the run wrote is on main.
    let big = w.f.catalog.load_table(
        &w.f.who,
        &w.f.main,
        &ContentKey::new(["db", "big"]).unwrap(),
    );
    assert!(matches!(big, Err(CatalogError::TableNotFound(_))));
}

/// A project of one model file, with a project file that declares no parameters.
fn one(name: &str, sql: &str) -> Vec<u8> {
    let mut files = ProjectFiles::new();
    files.insert(
        "bauplan_project.yml".to_owned(),
        b"project: {id: p2, name: one}\ndefaults: {namespace: db}\n".to_vec(),
    );
    files.insert(name.to_owned(), sql.as_bytes().to_vec());
    archive::pack(&files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_partitions_replaces_the_partitions_written_or_filtered() {
    let w = world().await;
    let header = "-- bauplan: materialization_strategy = OVERWRITE_PARTITIONS\n-- bauplan: partitioned_by = [grp]\n";
    let first = format!("{header}SELECT id, id % 3 AS grp FROM t");
    let r = w
        .run(one("parts.sql", &first), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(w.count("main", "db.parts").await, 100);
    // Rows only in partition 1: partition 1 is replaced (33 rows out, 5 in).
    let second = format!("{header}SELECT id + 1000 AS id, 1 AS grp FROM t WHERE id < 5");
    let r = w
        .run(one("parts.sql", &second), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(w.count("main", "db.parts").await, 72);
    // A filter selects partition 2 (33 rows out); the new rows go to partition 0.
    let third = format!(
        "{header}-- bauplan: overwrite_filter = grp = 2\nSELECT id + 2000 AS id, 0 AS grp FROM t WHERE id < 2"
    );
    let r = w
        .run(one("parts.sql", &third), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    assert_eq!(w.count("main", "db.parts").await, 41);
    // A filter on a column that is not a partition column fails the node, naming why.
    let bad = format!(
        "{header}-- bauplan: overwrite_filter = id > 3\nSELECT id, 0 AS grp FROM t WHERE id < 2"
    );
    let r = w
        .run(one("parts.sql", &bad), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("partition columns"),
        "{:?}",
        r.error
    );
    assert_eq!(w.count("main", "db.parts").await, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_adds_the_outputs_new_columns() {
    let w = world().await;
    let append = "-- bauplan: materialization_strategy = APPEND\n";
    let r = w
        .run(
            one(
                "grow.sql",
                &format!("{append}SELECT id FROM t WHERE id < 3"),
            ),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let r = w
        .run(
            one(
                "grow.sql",
                &format!("{append}SELECT id, 'x' AS tag FROM t WHERE id < 2"),
            ),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let (_, t) =
        w.f.catalog
            .load_table(
                &w.f.who,
                &w.f.main,
                &ContentKey::new(["db", "grow"]).unwrap(),
            )
            .unwrap();
    let names: Vec<String> = t
        .metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names, vec!["id", "tag"]);
    assert_eq!(w.count("main", "db.grow").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_spellings_work_in_sql_models() {
    let w = world().await;
    let sql = "SELECT id, DATE_TRUNC('hour', '2024-01-01 10:30:00'::TIMESTAMP) AS Hour, CAST(id AS DOUBLE) AS d FROM T WHERE ID < 3";
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let r = w.run(one("spell.sql", sql), options).await.unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let p = Pipeline::from_value(r.pipeline.as_ref().unwrap()).unwrap();
    let schema = p.nodes[0].schema.clone().unwrap();
    assert_eq!(schema[1].name, "Hour");
    assert!(schema[1].kind.starts_with("Timestamp"), "{schema:?}");
    assert_eq!(p.nodes[0].rows, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_checks_declared_columns() {
    let w = world().await;
    let sql = "-- bauplan: columns = [id, missing]\nSELECT id FROM t";
    let r = w
        .run(one("cols.sql", sql), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    let strict = RunOptions {
        strict: true,
        ..RunOptions::default()
    };
    let r = w.run(one("cols.sql", sql), strict).await.unwrap();
    assert_eq!(r.state, RunState::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("--strict"),
        "{:?}",
        r.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_lands_each_output_as_it_is_written() {
    let w = world().await;
    let before = w.head();
    let options = RunOptions {
        no_transaction: true,
        preview: Preview::Head,
        ..RunOptions::default()
    };
    let record = w.run(demo(), options).await.unwrap();
    assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    assert_eq!(p.commits.len(), 2, "one commit per materialized model");
    assert_eq!(
        record.landed.as_deref(),
        p.commits.last().map(String::as_str)
    );
    assert_ne!(w.head(), before);
    assert_eq!(w.count("main", "db.big").await, 90);
    // The preview is in the log: a table of the first rows.
    let log = std::fs::read_to_string(w.runner.log_path(&record.id)).unwrap();
    assert!(log.contains(" big preview | id | Twice |"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_bound_wait_queued_in_order() {
    let mut w = world().await;
    let runs = tempfile::tempdir().unwrap();
    w.runner = Runner::new(
        w.f.catalog.clone(),
        w.engine.clone(),
        config(runs.path(), 1, 1),
    );
    let slow = one(
        "slow.sql",
        "SELECT t.id, sum(r.value % 7) AS s FROM t CROSS JOIN range(300000) r GROUP BY t.id",
    );
    let first = w.start(slow.clone(), RunOptions::default()).await;
    let second = w.start(slow, RunOptions::default()).await;
    // While the first runs, the second waits, queued and not forked.
    w.until_logged(&first.id, " slow info running").await;
    let waiting =
        w.f.catalog
            .run_record(&floe_catalog::Principal::anonymous(), &second.id)
            .unwrap()
            .unwrap();
    assert_eq!(waiting.state, RunState::Queued);
    assert!(waiting.fork.is_empty());
    let a = w
        .runner
        .wait(&floe_catalog::Principal::anonymous(), &first.id)
        .await
        .unwrap();
    let b = w
        .runner
        .wait(&floe_catalog::Principal::anonymous(), &second.id)
        .await
        .unwrap();
    assert_eq!(
        (a.state, b.state),
        (RunState::Succeeded, RunState::Succeeded)
    );
    assert!(
        b.started_ms >= a.finished_ms.unwrap(),
        "the second started after the first ended"
    );
    w._runs = runs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_removes_the_files_of_forgotten_runs_only() {
    let w = world().await;
    let record = w.run(demo(), RunOptions::default()).await.unwrap();
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    let (log, code) = (w.runner.log_path(&record.id), w.runner.code_path(&p.code));
    let forgotten_log = w.runner.log_path("01a00000-0000-7000-8000-000000000000");
    let forgotten_code = w.runner.code_path(&"f".repeat(64));
    let fresh_code = w.runner.code_path(&"e".repeat(64));
    for f in [&forgotten_log, &forgotten_code, &fresh_code] {
        std::fs::write(f, b"x").unwrap();
    }
    // Old enough to go, except the fresh one (a run being submitted).
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in [&log, &code, &forgotten_log, &forgotten_code] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    let swept = w.runner.sweep(&w.f.who).unwrap();
    assert_eq!(
        swept,
        Swept {
            logs: 1,
            code_snapshots: 1
        }
    );
    assert!(log.exists() && code.exists() && fresh_code.exists());
    assert!(!forgotten_log.exists() && !forgotten_code.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_transaction_run_that_fails_later_is_failed_and_its_landed_part_is_history() {
    let w = world().await;
    let archive = files(&[
        (
            "a.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
        ),
        (
            "b.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM a",
        ),
    ]);
    let options = RunOptions {
        no_transaction: true,
        ..RunOptions::default()
    };
    let record = w.run(archive, options).await.unwrap();
    assert_eq!(
        record.state,
        RunState::Failed,
        "a later failure fails the run"
    );
    assert!(record.landed.is_none());
    // Its first output landed as a part: on main, ordinary history, not sealed.
    assert_eq!(w.count("main", "db.a").await, 100);
    let head = w.head();
    let detail =
        w.f.catalog
            .commit_detail(&w.f.who, &RefSpec::parse(&head.to_hex()).unwrap(), None, 10)
            .unwrap();
    assert_eq!(
        detail.commit.properties.get("floe.run.part"),
        Some(&record.id)
    );
    assert!(!detail.commit.properties.contains_key("floe.run.id"));
    // Its record names the part it landed, and a revert of the run says to undo it by hand.
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    assert_eq!(p.commits, vec![head.to_hex()]);
    let refused =
        w.f.catalog
            .revert_run(&w.f.who, &record.id, None, None)
            .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("landed 1 commit as it went (then failed)"),
        "{refused}"
    );
    w.f.catalog
        .create_ref(
            &w.f.who,
            &floe_commits::RefName::parse("from-part").unwrap(),
            floe_commits::RefKind::Branch,
            &w.f.main,
            None,
        )
        .unwrap();
    // Recovery and maintenance do not take the part for the run's landing either.
    assert!(
        w.f.catalog
            .recover_runs(&floe_catalog::Principal::anonymous())
            .unwrap()
            .is_empty()
    );
    let again =
        w.f.catalog
            .run_record(&floe_catalog::Principal::anonymous(), &record.id)
            .unwrap()
            .unwrap();
    assert_eq!(again.state, RunState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_errors_excerpts_and_the_log() {
    let w = world().await;
    let mut files = ProjectFiles::new();
    files.insert(
        "bauplan_project.yml".to_owned(),
        b"project: {id: s, name: s}\ndefaults: {namespace: db}\nparameters:\n  key: {type: secret}\n".to_vec(),
    );
    files.insert(
        "leak.sql".to_owned(),
        b"SELECT CAST($key AS INT) AS n FROM t".to_vec(),
    );
    let options = RunOptions {
        params: BTreeMap::from([("key".to_owned(), "hunter2-secret".to_owned())]),
        ..RunOptions::default()
    };
    let record = w.run(archive::pack(&files), options).await.unwrap();
    assert_eq!(record.state, RunState::Failed);
    let text = serde_json::to_string(&record).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    let error = p.nodes[0].error.clone().unwrap();
    assert!(error.message.contains(project::MASK), "{error:?}");
    assert!(error.excerpt.unwrap().contains("$key"));
    assert_eq!(p.parameters["key"], serde_json::json!(project::MASK));
    let log = std::fs::read_to_string(w.runner.log_path(&record.id)).unwrap();
    assert!(
        !log.contains("hunter2") && log.contains(project::MASK),
        "{log}"
    );
}

/// An `APPEND` output lands over appends another writer made to the same table after the
/// run forked (issue 22: before the Iceberg-aware merge, this failed the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_output_lands_over_a_concurrent_append() {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![100, 101, 102]))],
    )
    .unwrap();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        schema,
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let raced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = raced.clone();
    let w = racing(move |catalog| {
        let key = ContentKey::new(["db", "grow"]).unwrap();
        let main = RefSpec::parse("main").unwrap();
        let who = Principal::anonymous();
        // The first run creates the table; the second one races this append.
        if catalog.load_table(&who, &main, &key).is_err()
            || flag.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let request = crate::import::ImportRequest {
            table: key,
            branch: main,
            mode: Some(crate::import::ImportMode::Append),
            dry_run: false,
            force: false,
            files: vec![crate::import::ImportFile {
                name: "extra.parquet".to_owned(),
                blake3: format!("extra-{size}"),
                size,
                path: path.clone(),
                identity: None,
                held: None,
            }],
            idempotency: None,
        };
        tokio::runtime::Handle::current()
            .block_on(crate::import::Importer::new(catalog.clone()).run(&who, request))
            .unwrap();
    })
    .await;
    let append = "-- bauplan: materialization_strategy = APPEND\n";
    for filter in ["id < 3", "id >= 3 AND id < 5"] {
        let r = w
            .run(
                one(
                    "grow.sql",
                    &format!("{append}SELECT id FROM t WHERE {filter}"),
                ),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.state, RunState::Succeeded, "{:?}", r.error);
    }
    assert!(
        raced.load(std::sync::atomic::Ordering::SeqCst),
        "the second run raced an append"
    );
    // Both runs' rows and the racing append's, each once.
    assert_eq!(w.count("main", "db.grow").await, 8);
    assert_eq!(
        w.scalar("main", "select sum(id) from db.grow").await,
        f64::from(1 + 2 + 3 + 4 + 100 + 101 + 102)
    );
}
