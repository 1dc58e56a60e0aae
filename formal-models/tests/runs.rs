//! The runs model on the three ways Bauplan's own Alloy models found its runs going wrong,
//! step by step: each scenario is refused (or harmless) in the model as floe builds it,
//! and its mutant lets it through and breaks the property that forbids it (the same for a
//! landing refused halfway, under all or none); and an append output landing merged with
//! the target's appends, but not over a replace. Also: the committed traces
//! (`testdata/runs-traces.txt`, replayed against the catalog by
//! `catalog/tests/runs_model_replay/`) are what the model generates now.

use floe_formal_models::runs::trace::{self, shortest_counterexample};
use floe_formal_models::runs::{
    ALL_OR_NONE, MAIN, Mutant, NO_OVERWRITE, Outcome, Phase, REVERT_WHOLE, Runs, RunsAction,
    SEALED, Source, State, T1, T2, Version,
};
use stateright::Model;

use RunsAction::*;

/// Takes `path` from the start; returns the state and each action's outcome.
fn run(model: &Runs, path: &[RunsAction]) -> (State, Vec<Outcome>) {
    let mut state = model.init_states().remove(0);
    let mut outcomes = Vec::new();
    for a in path {
        let (next, outcome) = model
            .step(&state, *a)
            .unwrap_or_else(|| panic!("{a:?} is not enabled"));
        state = next;
        outcomes.push(outcome);
    }
    (state, outcomes)
}

fn holds(model: &Runs, property: &str, state: &State) -> bool {
    let properties = model.properties();
    let p = properties
        .iter()
        .find(|p| p.name == property)
        .expect("a property");
    (p.condition)(model, state)
}

fn version(state: &State, table: usize) -> Option<u8> {
    state
        .map(MAIN)
        .and_then(|m| m.get(&table))
        .map(Version::generation)
}

/// Bauplan 1: a second run silently overwrote a table another run wrote. Run 1 writes and
/// lands `a.t2`; run 0, forked before that, lands after it: refused, and run 0 fails.
#[test]
fn a_second_run_never_silently_overwrites_a_table_another_run_wrote() {
    let runs_only = Runs {
        client: false,
        ..Runs::default()
    };
    let path = [
        Begin(0),
        Begin(1),
        Write(1, T2),
        Land(1),
        Write(0, T1),
        Write(0, T2),
        Land(0),
    ];
    let (state, outcomes) = run(&runs_only, &path);
    assert_eq!(outcomes[6], Outcome::Conflict);
    assert_eq!(state.runs[0].phase, Phase::Failed);
    assert_eq!(version(&state, T2), Some(11), "run 1's table stays");
    assert_eq!(version(&state, T1), Some(0), "and none of run 0 lands");

    let blind = Runs {
        mutant: Some(Mutant::BlindLanding),
        ..runs_only
    };
    let (state, outcomes) = run(&blind, &path);
    assert_eq!(outcomes[6], Outcome::Ok);
    assert_eq!(
        version(&state, T2),
        Some(10),
        "run 1's table is overwritten"
    );
    assert!(!holds(&blind, NO_OVERWRITE, &state));
    // With runs alone, the shortest counterexample is this very race of two runs.
    let found = shortest_counterexample(&blind, NO_OVERWRITE, 12).expect("a counterexample");
    assert_eq!(found.len(), 7, "{found:?}");
    assert_eq!(
        found.iter().filter(|a| matches!(a, Land(_))).count(),
        2,
        "{found:?}"
    );
}

/// All or none: the same race, where run 0's first output is free and its second is not.
/// Landed as one commit, nothing of run 0 reaches `main`; landed table by table, its
/// `a.t1` does, and the run is failed all the same.
#[test]
fn a_refused_landing_lands_none_of_the_run() {
    let path = [
        Begin(0),
        Begin(1),
        Write(1, T2),
        Land(1),
        Write(0, T1),
        Write(0, T2),
        Land(0),
    ];
    let (state, _) = run(&Runs::default(), &path);
    assert_eq!(state.runs[0].phase, Phase::Failed);
    assert_eq!(version(&state, T1), Some(0));
    let per_table = Runs::with_mutant(Mutant::LandPerTable);
    let (state, outcomes) = run(&per_table, &path);
    assert_eq!(outcomes[6], Outcome::Conflict);
    assert_eq!(state.runs[0].phase, Phase::Failed);
    assert_eq!(version(&state, T1), Some(10), "half of run 0 landed");
    assert!(!holds(&per_table, ALL_OR_NONE, &state));
}

/// Bauplan 2: a failed run's temporary branch was forked and merged by someone else. Every
/// way to use the work of a failed run is refused until the run is promoted.
#[test]
fn a_failed_runs_branch_is_never_forked_or_merged_until_promoted() {
    let model = Runs::default();
    let failed = [Begin(1), Write(1, T2), Fail(1)];
    let uses = [Fork(Source::Work(1)), Merge(Source::Work(1)), CherryPick(1)];
    for using in uses {
        let mut path = failed.to_vec();
        path.push(using);
        let (state, outcomes) = run(&model, &path);
        assert_eq!(outcomes[3], Outcome::Sealed, "{using:?}");
        assert!(state.seen.sealed_refused);
        assert_eq!(version(&state, T2), None);
    }
    // Promoted, it may be used (and its table reaches main by the merge).
    let mut path = failed.to_vec();
    path.extend([Promote(1), Merge(Source::Work(1))]);
    let (state, outcomes) = run(&model, &path);
    assert_eq!(outcomes[4], Outcome::Ok);
    assert_eq!(version(&state, T2), Some(11));

    let unsealed = Runs::with_mutant(Mutant::UnsealedWork);
    let path = [
        Begin(1),
        Write(1, T2),
        Fail(1),
        Fork(Source::Work(1)),
        Merge(Source::Dev),
    ];
    let (state, outcomes) = run(&unsealed, &path);
    assert_eq!(outcomes[3..], [Outcome::Ok, Outcome::Ok]);
    assert_eq!(
        version(&state, T2),
        Some(11),
        "the failed run's table is on main"
    );
    assert!(!holds(&unsealed, SEALED, &state));
}

/// Bauplan 3: a per-table revert split a run. Reverting a run is one revert of its landing
/// commit: when one of its tables changed since, the whole revert is refused.
#[test]
fn a_revert_never_splits_a_run() {
    let landed_then_changed = [
        Begin(0),
        Write(0, T1),
        Write(0, T2),
        Land(0),
        RunsAction::Commit {
            branch: MAIN,
            table: T1,
        },
        RevertRun(0),
    ];
    let model = Runs::default();
    let (state, outcomes) = run(&model, &landed_then_changed);
    assert_eq!(outcomes[5], Outcome::Conflict);
    assert_eq!(
        (version(&state, T1), version(&state, T2)),
        (Some(1), Some(10))
    );
    // Unchanged since, the whole run is reverted in one commit.
    let (state, outcomes) = run(
        &model,
        &[Begin(0), Write(0, T1), Write(0, T2), Land(0), RevertRun(0)],
    );
    assert_eq!(outcomes[4], Outcome::Ok);
    assert_eq!((version(&state, T1), version(&state, T2)), (Some(0), None));

    let per_table = Runs::with_mutant(Mutant::PerTableRevert);
    let (state, outcomes) = run(&per_table, &landed_then_changed);
    assert_eq!(outcomes[5], Outcome::Ok);
    assert_eq!(
        (version(&state, T1), version(&state, T2)),
        (Some(1), None),
        "a.t2 reverted, a.t1 not: the run is split"
    );
    assert!(!holds(&per_table, REVERT_WHOLE, &state));
}

#[test]
fn the_committed_traces_are_the_models() {
    expect_test::expect_file!["../testdata/runs-traces.txt"]
        .assert_eq(&trace::traces_file(&Runs::default()));
}

/// An append output (run 1's `a.t2`) over the client's append on the target since the
/// fork lands merged: both rows are on `main`. Over a replace it is refused. With the
/// mutant, the landing drops the client's row and breaks no-overwrite.
#[test]
fn an_append_lands_merged_over_appends_and_is_refused_over_a_replace() {
    let model = Runs::default();
    let created = [Begin(0), Write(0, T1), Write(0, T2), Land(0), Begin(1)];
    let rows = |state: &State| {
        let t2 = state.map(MAIN).and_then(|m| m.get(&T2)).copied().unwrap();
        (Version::generation(&t2), Version::row_names(&t2))
    };
    let mut merged = created.to_vec();
    merged.extend([Append, Write(1, T2), Land(1)]);
    let (state, outcomes) = run(&model, &merged);
    assert_eq!(outcomes[7], Outcome::Ok);
    assert_eq!(state.runs[1].phase, Phase::Succeeded);
    assert_eq!(rows(&state), (10, vec!["c".to_owned(), "r1".to_owned()]));
    assert!(holds(&model, NO_OVERWRITE, &state));

    let mut replaced = created.to_vec();
    replaced.extend([
        RunsAction::Commit {
            branch: MAIN,
            table: T2,
        },
        Write(1, T2),
        Land(1),
    ]);
    let (state, outcomes) = run(&model, &replaced);
    assert_eq!(outcomes[7], Outcome::Conflict);
    assert_eq!(state.runs[1].phase, Phase::Failed);
    assert!(state.seen.append_refused);
    assert_eq!(rows(&state), (1, Vec::new()), "the client's replace stays");

    let dropping = Runs::with_mutant(Mutant::AppendDropsRows);
    let (state, outcomes) = run(&dropping, &merged);
    assert_eq!(outcomes[7], Outcome::Ok);
    assert_eq!(
        rows(&state),
        (10, vec!["r1".to_owned()]),
        "the client's row is lost"
    );
    assert!(!holds(&dropping, NO_OVERWRITE, &state));
    for other in [ALL_OR_NONE, SEALED, REVERT_WHOLE] {
        assert!(holds(&dropping, other, &state), "{other}");
    }

    // Merged over the client's replace, the landing keeps the replace's generation and
    // adds run 1's row to a table that is no longer the one it appended to.
    let over_replace = Runs::with_mutant(Mutant::AppendOverReplace);
    let (state, outcomes) = run(&over_replace, &replaced);
    assert_eq!(outcomes[7], Outcome::Ok);
    assert_eq!(rows(&state), (1, vec!["r1".to_owned()]));
    assert!(!holds(&over_replace, NO_OVERWRITE, &state));
    for other in [ALL_OR_NONE, SEALED, REVERT_WHOLE] {
        assert!(holds(&over_replace, other, &state), "{other}");
    }
}
