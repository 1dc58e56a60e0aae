//! Cancelling runs (issue 18): in each phase a run stops within moments, its workers'
//! process groups are killed, it ends `cancelled` and its branch is sealed.

use floe_catalog::RunState;

use super::tests::{config, files_with, sleepers, world};
use super::*;

const PROJECT: &str = "project:\n  id: c1\n  name: cancel\ndefaults:\n  namespace: db\n";

/// A project whose Python model waits (for `secs` seconds, a marker for `sleepers`) in a
/// worker, after a SQL model wrote a table on the run's branch.
fn waiting(secs: u32) -> Vec<u8> {
    let code = format!(
        r#"
import bauplan, subprocess, sys, time

@bauplan.model(materialization_strategy="REPLACE")
def waits(data=bauplan.Model("first")):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep({secs})"])
    print("waiting")
    time.sleep({secs})
    return data
"#
    );
    files_with(
        PROJECT,
        &[
            (
                "first.sql",
                "-- bauplan: materialization_strategy = REPLACE\nSELECT id FROM t",
            ),
            ("w.py", &code),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_within_moments_and_sealed() {
    let w = world().await;
    let before = w.head();
    let run = w.start(waiting(400), RunOptions::default()).await;
    w.until_logged(&run.id, " waits stdout waiting").await;
    let asked = std::time::Instant::now();
    let ended = w.runner.cancel(&w.f.who, &run.id).await.unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ended.state, RunState::Cancelled, "{ended:?}");
    let by = format!("cancelled by {}", w.f.who.name());
    assert_eq!(ended.error.as_deref(), Some(by.as_str()));
    assert_eq!(w.head(), before);
    let p = Pipeline::from_value(ended.pipeline.as_ref().unwrap()).unwrap();
    assert_eq!(p.failure, Some(Failure::Cancelled));
    let states: Vec<_> = p.nodes.iter().map(|n| n.state).collect();
    assert_eq!(states, [NodeState::Succeeded, NodeState::Cancelled]);
    // The worker and what it started are gone.
    assert_eq!(sleepers(400), "");
    // Its branch is sealed like a failed run's.
    w.assert_sealed(&ended);
    // Cancelling again, or an ended run, changes nothing.
    let again = w.runner.cancel(&w.f.who, &run.id).await.unwrap();
    assert_eq!(again.state, RunState::Cancelled);
    assert_eq!(again.finished_ms, ended.finished_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_is_cancelled_without_forking() {
    let mut w = world().await;
    let runs = tempfile::tempdir().unwrap();
    w.runner = Runner::new(
        w.f.catalog.clone(),
        w.engine.clone(),
        config(runs.path(), 1, 1),
    );
    let first = w.start(waiting(401), RunOptions::default()).await;
    w.until_logged(&first.id, " waits stdout waiting").await;
    let second = w.start(waiting(401), RunOptions::default()).await;
    let ended = w.runner.cancel(&w.f.who, &second.id).await.unwrap();
    assert_eq!(ended.state, RunState::Cancelled);
    assert!(ended.fork.is_empty(), "it never forked");
    let log = std::fs::read_to_string(w.runner.log_path(&second.id)).unwrap();
    assert!(!log.contains("running on"), "{log}");
    // The first still runs; cancelled too, it ends.
    let live =
        w.f.catalog
            .run_record(&floe_catalog::Principal::anonymous(), &first.id)
            .unwrap()
            .unwrap();
    assert_eq!(live.state, RunState::Running);
    let first = w.runner.cancel(&w.f.who, &first.id).await.unwrap();
    assert_eq!(first.state, RunState::Cancelled);
    assert_eq!(sleepers(401), "");
    drop(runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_cancelled() {
    let w = world().await;
    let options = RunOptions {
        timeout_seconds: Some(2),
        ..RunOptions::default()
    };
    let started = std::time::Instant::now();
    let run = w.start(waiting(403), options).await;
    let ended = w
        .runner
        .wait(&floe_catalog::Principal::anonymous(), &run.id)
        .await
        .unwrap();
    assert_eq!(ended.state, RunState::Cancelled, "{ended:?}");
    assert!(
        ended
            .error
            .as_deref()
            .unwrap()
            .contains("ran past its deadline (2 s"),
        "{:?}",
        ended.error
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(sleepers(403), "");
}

/// Two requests under one Idempotency-Key both got past the recall (the second took the
/// first's claim over on another server): the one whose acceptance is recorded first is
/// the key's run; the other is cancelled before it starts and its request told to retry,
/// which then answers the first run. Exactly one run per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_key_was_accepted_first_elsewhere_never_starts() {
    let w = world().await;
    let request = floe_catalog::IdemRequest {
        key: floe_catalog::IdempotencyKey::parse(&uuid::Uuid::now_v7().to_string()).unwrap(),
        fingerprint: "the submission".to_owned(),
        claim: None,
    };
    // The first request's run, accepted under the key.
    let first = w.start(waiting(401), RunOptions::default()).await;
    assert_eq!(
        w.f.catalog
            .record_acceptance(&w.f.who, &request, &first.id)
            .unwrap(),
        floe_catalog::Acceptance::Recorded
    );
    let second = w
        .runner
        .submit(
            &w.f.who,
            waiting(401),
            RunOptions::default(),
            Some(request.clone()),
        )
        .await;
    let Err(RunError::Catalog(CatalogError::Write(floe_commits::WriteError::ClaimLost(_)))) =
        second
    else {
        panic!(
            "the second request is told to retry: {:?}",
            second.map(|_| ())
        );
    };
    // Its run was recorded, and cancelled before it started: the only runs are the
    // first (live) and the cancelled one.
    let (runs, _) =
        w.f.catalog
            .list_runs(&w.f.who, None, 10, &|r| {
                r.kind == floe_catalog::RunKind::Run
            })
            .unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let other = runs.iter().find(|r| r.id != first.id).unwrap();
    assert_eq!(other.state, RunState::Cancelled, "{other:?}");
    assert!(other.error.as_deref().unwrap().contains("accepted first"));
    // The retry answers the first run.
    match w.f.catalog.recall(&w.f.who, &request).unwrap() {
        Some(floe_catalog::Recalled::Applied(applied)) => assert_eq!(applied.detail, first.id),
        _ => panic!("the key answers the first run"),
    }
    w.runner.cancel(&w.f.who, &first.id).await.unwrap();
}
