//! The fence of a ref move on PostgreSQL under concurrency (a run's landing fenced on its
//! owner token, which whoever ends the run removes first), on the test cluster
//! (`FLOE_TEST_PG`, which `.ci/run` sets; `source .ci/pg.sh && pg_up` by hand): a fenced
//! move racing the removal of its fence either applied before the removal returned, and
//! the remover's next read sees it, or did not apply at all. And the clock leases are
//! judged by: PostgreSQL's, whatever the servers' own clocks say.

use std::sync::{Arc, Barrier};

use floe_commits::*;

const ROUNDS: usize = 500;

#[test]
fn a_fenced_move_racing_its_fences_removal_is_seen_by_the_remover_or_never_applies() {
    let backend = Arc::new(
        PostgresBackend::open(&PgOptions::for_test()).expect("the test PostgreSQL is reachable"),
    );
    let store = Arc::new(Store::open(backend, Arc::new(SystemClock)).expect("a store opens"));
    let main = RefName::parse("main").unwrap();
    let head = store.get_ref(&main).unwrap().head;
    let (mut applied, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let token = format!("run-owner/{round}").into_bytes();
        store.meta_put(&token, b"server-a").unwrap();
        let name = RefName::parse(&format!("landing-{round}")).unwrap();
        let start = Arc::new(Barrier::new(2));
        let mover = {
            let (store, start, name, token) =
                (store.clone(), start.clone(), name.clone(), token.clone());
            std::thread::spawn(move || {
                let ctx = WriteCtx {
                    fence: Some(Fence {
                        key: token,
                        value: b"server-a".to_vec(),
                        lost: "settled".to_owned(),
                    }),
                    ..WriteCtx::principal("t")
                };
                start.wait();
                store.create_ref(&name, RefKind::Branch, head, &ctx)
            })
        };
        start.wait();
        // The settling server: the token goes, then it looks.
        assert!(store.meta_cas(&token, Some(b"server-a"), None).unwrap());
        let seen = store.get_ref(&name).is_ok();
        let moved = mover.join().unwrap();
        match moved {
            Ok(_) => {
                assert!(
                    seen,
                    "round {round}: the move applied, yet the remover did not see it after its removal returned"
                );
                applied += 1;
            }
            Err(WriteError::Fenced(_)) => {
                assert!(!seen, "round {round}: refused, yet the ref is there");
                assert!(
                    store.get_ref(&name).is_err(),
                    "round {round}: refused, yet applied"
                );
                refused += 1;
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    assert_eq!(applied + refused, ROUNDS);
    eprintln!("{applied} moves applied before the removal, {refused} refused after it");
}

/// Two servers whose clocks are two hours apart agree on an idempotency claim's lease:
/// each follows PostgreSQL's clock, so the claim one holds is live for the other (on their
/// own clocks, the server ahead would take over a claim the other just made).
#[test]
fn servers_whose_clocks_disagree_judge_leases_on_the_databases_clock() {
    let options = PgOptions::for_test();
    let open = |clock: Arc<ManualClock>| {
        let backend = PostgresBackend::open(&options).expect("the test PostgreSQL is reachable");
        Store::open(Arc::new(backend), clock).expect("a store opens")
    };
    const HOUR: i64 = 3_600_000;
    let real = SystemClock.now_ms();
    let (behind, ahead) = (
        Arc::new(ManualClock::new(real - HOUR)),
        Arc::new(ManualClock::new(real + HOUR)),
    );
    let (a, b) = (open(behind.clone()), open(ahead.clone()));
    let database = PostgresBackend::open(&options)
        .unwrap()
        .shared_clock(Arc::new(SystemClock))
        .unwrap()
        .expect("PostgreSQL has a clock")
        .shared_ms;
    for store in [&a, &b] {
        let off = store.lease_now_ms() - database;
        assert!(
            off.abs() < 10_000,
            "lease time {off} ms from the database's"
        );
    }
    let key = format!("clock-test-{real}");
    let held = a.claim_idempotency(&key, "a/1", 30_000, "a/").unwrap();
    assert!(matches!(held, Claim::Held(_)), "{held:?}");
    let other = b.claim_idempotency(&key, "b/1", 30_000, "b/").unwrap();
    assert!(
        matches!(other, Claim::Busy),
        "a's claim is live on the database's clock: {other:?}"
    );
    // Time passes on both machines (and the database's clock follows its own): the
    // claim runs out for b once 30 s passed on a's measure of the database's clock.
    ahead.advance(30_001 + 60_000);
    behind.advance(30_001 + 60_000);
    let taken = b.claim_idempotency(&key, "b/2", 30_000, "b/").unwrap();
    assert!(matches!(taken, Claim::Held(_)), "{taken:?}");
}
