//! The store's property tests, with the specification (`floe_formal_models::spec`) as
//! their oracle: random histories run against the real `Store` and the specification side
//! by side (`replay::run`), compared after every step.
//!
//! What it covers: the commit rule (every expectation evaluated at the landing head, stale
//! expected heads rebasing, `CheckPrefixEmpty`, no-op commits, invalid op lists), landing
//! validation (parent namespaces, non-empty namespaces, duplicate content ids), merge
//! (normal, no-ff, squash, ff-only, dry run, on-conflict and per-key resolutions, the
//! `Resolver` hook, several merge bases), cherry-pick, revert, branch create / assign /
//! delete with strict expected heads, and tags.
//!
//! A coverage check fails the test when the generator stops reaching an interesting
//! outcome. Histories are deterministic; `FLOE_MODEL_SEED=<u64>` explores others, and
//! `FLOE_MODEL_TRACE=1` prints each history's steps. The heavy variant is ignored by a plain
//! `cargo test`; `.ci/run`'s slow phase runs it (`-- --ignored`).

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_commits::{
    Backend, MemoryBackend, MergeStrategy, PgOptions, PostgresBackend, Resolution, SledBackend,
};
use floe_formal_models::replay::run;
use floe_formal_models::spec::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0u8..3).prop_map(Pick::Head),
        1 => (0u8..3).prop_map(Pick::HeadParent),
        1 => any::<u16>().prop_map(Pick::Any),
    ]
}

fn head_gen() -> impl Strategy<Value = HeadGen> {
    prop_oneof![
        4 => Just(HeadGen::None),
        3 => Just(HeadGen::Current),
        1 => any::<u16>().prop_map(HeadGen::Any),
    ]
}

fn base_gen() -> impl Strategy<Value = BaseGen> {
    prop_oneof![
        3 => Just(BaseGen::None),
        3 => Just(BaseGen::Current),
        2 => (1u8..4).prop_map(BaseGen::Back),
        1 => any::<u16>().prop_map(BaseGen::Any),
    ]
}

fn exp_gen() -> impl Strategy<Value = ExpGen> {
    prop_oneof![
        20 => Just(ExpGen::Right),
        1 => Just(ExpGen::Present),
        1 => Just(ExpGen::Absent),
        1 => (0u8..3, 0u8..3).prop_map(|(id, version)| ExpGen::Is { id, version }),
    ]
}

fn content_gen() -> impl Strategy<Value = ContentGen> {
    let id = prop_oneof![
        4 => Just(IdGen::Keep),
        3 => Just(IdGen::Fresh),
        1 => (0u8..3).prop_map(IdGen::Pool),
    ];
    let kind = prop_oneof![
        12 => Just(KindGen::Natural),
        4 => Just(KindGen::Keep),
        1 => Just(KindGen::Namespace),
        1 => Just(KindGen::Table),
        1 => Just(KindGen::View),
    ];
    (id, kind, 0u8..3).prop_map(|(id, kind, version)| ContentGen { id, kind, version })
}

fn op_gen() -> impl Strategy<Value = OpGen> {
    let what = prop_oneof![
        6 => content_gen().prop_map(OpKindGen::Put),
        2 => Just(OpKindGen::Delete),
        2 => Just(OpKindGen::Check),
        1 => Just(OpKindGen::PrefixEmpty),
    ];
    (0u8..8, what, exp_gen()).prop_map(|(key, what, expect)| OpGen { key, what, expect })
}

/// One generated step, or a short pattern of steps that random choice rarely hits.
fn step_or_pattern() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        60 => step().prop_map(|s| vec![s]),
        // Criss-cross: a commit on A and one on B; A into B and B's old head into A, both as
        // merge commits; then A into B again, which has two merge bases.
        4 => (
            (0u8..3, 1u8..3, resolution(), resolution()),
            prop::collection::vec(op_gen(), 1..3),
            prop::collection::vec(op_gen(), 1..3),
        ).prop_map(|((a, d, r1, r2), ops_a, ops_b)| {
            let b = (a + d) % 3;
            let commit = |branch, ops| Step::Commit {
                branch,
                base: BaseGen::None,
                ops,
                dup: false,
                parents: true,
            };
            let merge = |from, into, strategy, on_conflict| Step::Merge {
                from,
                into,
                strategy,
                resolving: Resolving {
                    on_conflict,
                    per_key: None,
                    hook: false,
                },
                dry_run: false,
                expect: HeadGen::None,
            };
            vec![
                commit(a, ops_a),
                commit(b, ops_b),
                merge(Pick::Head(a), b, MergeStrategy::NoFastForward, r1),
                merge(Pick::HeadParent(b), a, MergeStrategy::NoFastForward, r1),
                merge(Pick::Head(a), b, MergeStrategy::Normal, r2),
            ]
        }),
    ]
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        6 => Just(Resolution::Fail),
        2 => Just(Resolution::TakeSource),
        2 => Just(Resolution::KeepTarget),
    ]
}

fn resolving() -> impl Strategy<Value = Resolving> {
    (
        resolution(),
        prop::option::weighted(0.2, (0u8..8, resolution())),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(on_conflict, per_key, hook)| Resolving {
            on_conflict,
            per_key,
            hook,
        })
}

fn step() -> impl Strategy<Value = Step> {
    let strategy = prop_oneof![
        5 => Just(MergeStrategy::Normal),
        2 => Just(MergeStrategy::NoFastForward),
        2 => Just(MergeStrategy::Squash),
        1 => Just(MergeStrategy::FastForwardOnly),
    ];
    let commit = (
        (0u8..3, base_gen(), prop::collection::vec(op_gen(), 1..5)),
        (prop::bool::weighted(0.04), prop::bool::weighted(0.7)),
    )
        .prop_map(|((branch, base, ops), (dup, parents))| Step::Commit {
            branch,
            base,
            ops,
            dup,
            parents,
        });
    let rename =
        (0u8..3, 0u8..8, 0u8..7, any::<bool>()).prop_map(|(branch, from, to, bump)| Step::Rename {
            branch,
            from,
            to,
            bump,
        });
    let create = (1u8..3, 0u8..3).prop_map(|(name, from)| Step::CreateBranch { name, from });
    let assign = (0u8..3, pick(), head_gen()).prop_map(|(branch, to, expect)| Step::Assign {
        branch,
        to,
        expect,
    });
    // `main` stays, so that most steps have a branch to work on.
    let delete =
        (1u8..3, head_gen()).prop_map(|(branch, expect)| Step::DeleteBranch { branch, expect });
    let merge = (
        pick(),
        0u8..3,
        strategy,
        resolving(),
        prop::bool::weighted(0.1),
        head_gen(),
    )
        .prop_map(
            |(from, into, strategy, resolving, dry_run, expect)| Step::Merge {
                from,
                into,
                strategy,
                resolving,
                dry_run,
                expect,
            },
        );
    let replay =
        (pick(), 0u8..3, any::<bool>(), head_gen()).prop_map(|(commit, branch, revert, expect)| {
            Step::Replay {
                commit,
                branch,
                revert,
                expect,
            }
        });
    let tag = prop_oneof![
        (0u8..1, 0u8..3).prop_map(|(tag, from)| Step::CreateTag { tag, from }),
        (0u8..1).prop_map(|tag| Step::DeleteTag { tag }),
    ];
    prop_oneof![
        16 => commit,
        4 => rename,
        2 => tag,
        3 => create,
        2 => assign,
        1 => delete,
        10 => merge,
        6 => replay,
    ]
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        // Deterministic; `FLOE_MODEL_SEED=<u64>` explores other histories.
        rng_seed: RngSeed::Fixed(
            std::env::var("FLOE_MODEL_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0xf10e_5eed),
        ),
        max_shrink_iters: 10_000,
        ..Config::default()
    }
}

fn check_histories(
    cases: u32,
    steps: std::ops::Range<usize>,
    backend: impl Fn() -> Arc<dyn Backend>,
) {
    let mut runner = TestRunner::new(config(cases));
    let strategy = prop::collection::vec(step_or_pattern(), steps)
        .prop_map(|s| s.into_iter().flatten().collect::<Vec<_>>());
    let stats = std::sync::Mutex::new(BTreeMap::new());
    if let Err(e) = runner.run(&strategy, |steps| {
        let mut stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        run(backend(), &steps, &mut stats).map_err(TestCaseError::fail)
    }) {
        panic!("{e}");
    }
    let stats = stats
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    eprintln!("outcomes over {cases} histories: {stats:#?}");
    // The generator must keep reaching the interesting cases, or the comparison is hollow.
    let missing: Vec<&str> = COVERED
        .iter()
        .copied()
        .filter(|label| !stats.contains_key(*label))
        .collect();
    assert!(missing.is_empty(), "no generated step reached {missing:?}");
}

/// Outcomes every run must reach at least once.
const COVERED: &[&str] = &[
    "commit new commit",
    "commit nothing",
    "commit rebased",
    "commit conflict expectation",
    "commit conflict validation",
    "commit conflict prefix-not-empty",
    "commit Invalid",
    "create created",
    "assign moved",
    "merge FastForward",
    "merge Merged",
    "merge Squashed",
    "merge NothingToMerge",
    "merge NotFastForward",
    "merge RefConflict",
    "merge conflict both-changed",
    "merge conflict validation",
    "merge several bases",
    "merge conflict ambiguous-base",
    "merge resolver hook",
    "cherry-pick new commit",
    "cherry-pick conflict diverged",
    "revert new commit",
    "revert conflict diverged",
    "tag create created",
    "tag create RefExists",
    "tag delete deleted",
    "tag delete RefNotFound",
];

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

#[test]
fn random_histories_match_the_oracle() {
    check_histories(128, 20..50, memory);
}

/// The same histories on sled without flushes (DESIGN: the bulk mode), each in its own
/// folder.
#[test]
fn random_histories_on_sled_match_the_oracle() {
    let root = tempfile::tempdir().expect("a temp folder");
    let next = std::sync::atomic::AtomicUsize::new(0);
    check_histories(24, 20..50, || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.path().join(n.to_string());
        Arc::new(SledBackend::open_bulk(&dir).expect("open sled"))
    });
}

/// The same histories on PostgreSQL (`FLOE_TEST_PG`), each in a schema of its own.
#[test]
fn random_histories_on_postgres_match_the_oracle() {
    check_histories(24, 20..50, || {
        let mut options = PgOptions::for_test();
        options.pool_size = 2;
        Arc::new(PostgresBackend::open(&options).expect("the test PostgreSQL is reachable"))
    });
}

/// The heavy variant, run by `.ci/run`'s slow phase.
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_random_histories_match_the_oracle() {
    check_histories(2_000, 30..90, memory);
}
