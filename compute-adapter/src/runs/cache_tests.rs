//! The results cache through the whole engine: what reuses an output, what does not, and
//! that a reused output is still materialized and landed as if the node had run.

use std::collections::BTreeMap;

use floe_catalog::RunState;

use super::tests::{World, files_with, world};
use super::*;
use crate::ImportMode;
use crate::import::tests::{ids, request};

const PROJECT: &str = "project:\n  id: c1\n  name: cached\nparameters:\n  min_id:\n    type: int\n    default: 10\ndefaults:\n  namespace: db\n";

fn project(evens: &str) -> Vec<u8> {
    files_with(
        PROJECT,
        &[
            (
                "big.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id, id * 2 AS twice FROM t WHERE id >= $min_id",
            ),
            ("evens.sql", evens),
            (
                "joined.sql",
                "-- bauplan: materialization_strategy = APPEND\nSELECT b.id, b.twice FROM big b JOIN evens e ON b.id = e.id",
            ),
        ],
    )
}

const EVENS: &str = "SELECT id FROM big WHERE id % 2 = 0";

/// Per node: its name, whether it was cached, and the run it reused.
fn cached(record: &RunRecord) -> Vec<(String, bool, Option<String>)> {
    let p = Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap();
    p.nodes
        .into_iter()
        .map(|n| (n.name, n.cached, n.cached_from))
        .collect()
}

async fn succeeded(w: &World, archive: Vec<u8>, options: RunOptions) -> RunRecord {
    let record = w.run(archive, options).await.unwrap();
    assert_eq!(record.state, RunState::Succeeded, "{:?}", record.error);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_node_reuses_its_output_and_is_still_materialized_and_landed() {
    let w = world().await;
    let first = succeeded(&w, project(EVENS), RunOptions::default()).await;
    assert!(cached(&first).iter().all(|(_, c, _)| !c));
    assert_eq!(w.count("main", "db.joined").await, 45);

    let second = succeeded(&w, project(EVENS), RunOptions::default()).await;
    let from = Some(first.id.clone());
    assert_eq!(
        cached(&second),
        vec![
            ("big".to_owned(), true, from.clone()),
            ("evens".to_owned(), true, from.clone()),
            ("joined".to_owned(), true, from.clone()),
        ]
    );
    // Landed as if it had run: its own landing commit, the APPEND appended again.
    assert_ne!(second.landed, first.landed);
    assert_eq!(
        w.head(),
        Hash::parse(second.landed.as_deref().unwrap()).unwrap()
    );
    assert_eq!(w.count("main", "db.big").await, 90);
    assert_eq!(w.count("main", "db.joined").await, 90);
    let log = std::fs::read_to_string(w.runner.log_path(&second.id)).unwrap();
    assert!(
        log.contains(&format!("big info cached: the output of run {}", first.id)),
        "{log}"
    );
    assert!(
        log.contains("joined info Append db.joined (45 rows"),
        "{log}"
    );

    // --no-cache executes everything (and the APPEND appends a third time).
    let fresh = RunOptions {
        no_cache: true,
        ..RunOptions::default()
    };
    let third = succeeded(&w, project(EVENS), fresh).await;
    assert!(cached(&third).iter().all(|(_, c, _)| !c));
    assert_eq!(w.count("main", "db.joined").await, 135);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_input_code_or_parameter_executes_the_node_and_what_reads_it() {
    let w = world().await;
    succeeded(&w, project(EVENS), RunOptions::default()).await;

    // The code of `evens` changed: `big` is reused, `evens` and `joined` run.
    let changed = "SELECT id FROM big WHERE id % 2 = 0 AND id < 50";
    let record = succeeded(&w, project(changed), RunOptions::default()).await;
    let flags: Vec<bool> = cached(&record).into_iter().map(|(_, c, _)| c).collect();
    assert_eq!(flags, vec![true, false, false]);

    // A parameter changed: `big` substitutes it, so all three run.
    let options = RunOptions {
        params: BTreeMap::from([("min_id".to_owned(), "20".to_owned())]),
        ..RunOptions::default()
    };
    let record = succeeded(&w, project(changed), options).await;
    let flags: Vec<bool> = cached(&record).into_iter().map(|(_, c, _)| c).collect();
    assert_eq!(flags, vec![false, false, false]);
    assert_eq!(w.count("main", "db.big").await, 80);

    // The table it reads changed on the target: everything downstream of it runs, and
    // sees the new rows.
    crate::Importer::new(w.f.catalog.clone())
        .run(
            &w.f.who,
            request(
                &w.f,
                Some(ImportMode::Append),
                ids(&w.f, "more.parquet", 100..110),
            ),
        )
        .await
        .unwrap();
    let record = succeeded(&w, project(changed), RunOptions::default()).await;
    let flags: Vec<bool> = cached(&record).into_iter().map(|(_, c, _)| c).collect();
    assert_eq!(flags, vec![false, false, false]);
    assert_eq!(w.count("main", "db.big").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_is_not_cached_and_a_dry_run_reuses_without_writing() {
    let w = world().await;
    let failing = files_with(
        PROJECT,
        &[
            (
                "a.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
            ),
            (
                "b.sql",
                "SELECT CAST('x' || CAST(id AS VARCHAR) AS INT) AS n FROM a",
            ),
        ],
    );
    let record = w.run(failing.clone(), RunOptions::default()).await.unwrap();
    assert_eq!(record.state, RunState::Failed);
    let again = w.run(failing, RunOptions::default()).await.unwrap();
    assert_eq!(again.state, RunState::Failed);
    // `a` succeeded the first time and is reused; `b` fails again, executed.
    let flags: Vec<bool> = cached(&again).into_iter().map(|(_, c, _)| c).collect();
    assert_eq!(flags, vec![true, false]);

    let before = w.head();
    let dry = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    succeeded(&w, project(EVENS), dry.clone()).await;
    let record = succeeded(&w, project(EVENS), dry).await;
    let flags: Vec<bool> = cached(&record).into_iter().map(|(_, c, _)| c).collect();
    assert_eq!(flags, vec![true, true, true]);
    assert_eq!(w.head(), before, "a dry run lands nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_calling_now_random_or_uuid_is_never_reused() {
    let w = world().await;
    let project = || {
        files_with(
            PROJECT,
            &[
                (
                    "stamped.sql",
                    "-- bauplan: materialization_strategy = APPEND\nSELECT id, now() AS loaded_at FROM t WHERE id < 3",
                ),
                (
                    "sampled.sql",
                    "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t WHERE random() < 2.0 AND id < 5",
                ),
                (
                    "plain.sql",
                    "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t WHERE id < 5",
                ),
            ],
        )
    };
    succeeded(&w, project(), RunOptions::default()).await;
    let again = succeeded(&w, project(), RunOptions::default()).await;
    let flags: Vec<(String, bool)> = cached(&again).into_iter().map(|(n, c, _)| (n, c)).collect();
    assert_eq!(
        flags,
        vec![
            ("plain".to_owned(), true),
            ("sampled".to_owned(), false),
            ("stamped".to_owned(), false),
        ]
    );
    // Each run stamped its own rows.
    let stamps = w
        .scalar("main", "SELECT count(DISTINCT loaded_at) FROM db.stamped")
        .await;
    assert_eq!(stamps, 2.0);
}
