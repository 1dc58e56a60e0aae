//! The models checked exhaustively at small bounds: every `always` property holds, every
//! `sometimes` property is reached, the unique state counts are pinned (a change to the
//! model or the specification shows up here), and each mutant's counterexample is found
//! within 12 steps (for runs and durability, the shortest one's length is pinned too).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::hash::Hash;

use floe_formal_models::{durability, runs, version_store};
use stateright::{Checker, HasDiscoveries, Model};

use version_store::{CI_DEPTH as STORE_DEPTH, MUTANT_DEPTH};

fn names<M: Model>(model: &M, always: bool) -> Vec<&'static str> {
    model
        .properties()
        .iter()
        .filter(|p| (p.expectation == stateright::Expectation::Always) == always)
        .map(|p| p.name)
        .collect()
}

#[test]
fn the_version_store_model_holds_its_properties() {
    let model = version_store::VersionStore::default();
    let always = names(&model, true);
    let sometimes = names(&model, false);
    assert_eq!(always.len(), 7);
    // One thread: a breadth-first search cut at a depth counts the same states only when
    // it visits them level by level (two threads may first reach a state on a longer path
    // at the cut and not expand it; the runs model's count once came out one short).
    let checker = model
        .checker()
        .threads(1)
        .target_max_depth(STORE_DEPTH)
        .spawn_bfs()
        .join();
    for name in always {
        if let Some(path) = checker.discovery(name) {
            panic!("{name} fails: {:#?}", path.into_actions());
        }
    }
    for name in sometimes {
        assert!(checker.discovery(name).is_some(), "never reached: {name}");
    }
    assert_eq!(checker.unique_state_count(), 112_429);
}

/// Checks a mutant breadth-first until the first counterexample; returns its actions.
fn counterexample<M>(model: M, property: &'static str, depth: usize) -> Vec<M::Action>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(depth)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    let path = checker
        .discovery(property)
        .unwrap_or_else(|| panic!("no counterexample to `{property}` within depth {depth}"));
    path.into_actions()
}

#[test]
fn every_version_store_mutant_has_a_counterexample_within_12_steps() {
    for mutant in version_store::Mutant::ALL {
        let model = version_store::VersionStore {
            // Normal merges suffice for every counterexample and keep the search small.
            all_merges: false,
            ..version_store::VersionStore::with_mutant(mutant)
        };
        let actions = counterexample(model, mutant.breaks(), MUTANT_DEPTH);
        assert!(
            actions.len() <= 12,
            "{}: {} steps",
            mutant.name(),
            actions.len()
        );
        eprintln!(
            "{} breaks `{}` in {} steps: {actions:?}",
            mutant.name(),
            mutant.breaks(),
            actions.len()
        );
    }
}

#[test]
fn the_write_skew_pair_never_both_land() {
    use version_store::{MAIN, ModelAction, Write};
    let model = version_store::VersionStore::default();
    let mut state = model.init_states().remove(0);
    let steps = [
        ModelAction::Read {
            client: 0,
            branch: MAIN,
        },
        ModelAction::Read {
            client: 1,
            branch: MAIN,
        },
        ModelAction::Write {
            client: 0,
            write: Write::T1,
        },
    ];
    for a in steps {
        state = model.next_state(&state, a).expect("enabled");
    }
    let landed = state.spec.commits.len();
    let after = model.next_state(
        &state,
        ModelAction::Write {
            client: 1,
            write: Write::T2,
        },
    );
    let after = after.expect("the refusal is recorded");
    assert_eq!(after.spec.commits.len(), landed, "the second half lands");
    assert!(after.saw_conflict);
    // The mutant that checks expectations at the stale head lets it land.
    let mutant = version_store::VersionStore::with_mutant(version_store::Mutant::StaleExpectations);
    let skewed = mutant
        .next_state(
            &state,
            ModelAction::Write {
                client: 1,
                write: Write::T2,
            },
        )
        .expect("enabled");
    assert_eq!(skewed.spec.commits.len(), landed + 1);
}

#[test]
fn the_durability_model_holds_its_properties() {
    let cfg = durability::Config::default();
    let model = durability::model(cfg.clone());
    let always = names(&model, true);
    let sometimes = names(&model, false);
    let checker = model.checker().threads(2).spawn_bfs().join();
    for name in always {
        if let Some(path) = checker.discovery(name) {
            panic!("{name} fails: {:#?}", path.into_actions());
        }
    }
    for name in sometimes {
        assert!(checker.discovery(name).is_some(), "never reached: {name}");
    }
    assert_eq!(checker.unique_state_count(), DURABILITY_STATES);
}

/// The whole state space (exhaustive: the count does not depend on the threads).
const DURABILITY_STATES: usize = 288_696;

/// The shortest path (breadth-first, one thread: deterministic) within `max_actions` to a
/// state where the `always` property `name` fails.
fn shortest_counterexample<M>(model: &M, name: &str, max_actions: usize) -> Option<Vec<M::Action>>
where
    M: Model,
    M::State: Clone + Hash + Eq,
    M::Action: Clone,
{
    let properties = model.properties();
    let property = properties.iter().find(|p| p.name == name)?;
    let holds = |s: &M::State| (property.condition)(model, s);
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    for init in model.init_states() {
        if !holds(&init) {
            return Some(Vec::new());
        }
        seen.insert(init.clone());
        queue.push_back((init, Vec::new()));
    }
    while let Some((state, path)) = queue.pop_front() {
        if path.len() == max_actions {
            continue;
        }
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        for a in actions {
            let Some(next) = model.next_state(&state, a.clone()) else {
                continue;
            };
            if !model.within_boundary(&next) || !seen.insert(next.clone()) {
                continue;
            }
            let mut longer = path.clone();
            longer.push(a);
            if !holds(&next) {
                return Some(longer);
            }
            queue.push_back((next, longer));
        }
    }
    None
}

/// Each durability mutant: stateright's search finds a counterexample within 12 steps, and
/// the shortest one, which needs a crash, has the pinned length (the recovery's choice of
/// what the crash left is a step).
#[test]
fn every_durability_mutant_has_a_counterexample_within_12_steps() {
    use durability::Mutant::*;
    let shortest = [
        (AckBeforeSync, 5),
        (ReadNonDurable, 9),
        (CheckpointBeforeFlush, 7),
        (CheckpointPastApplied, 9),
        (ReplayIgnoresMarker, 5),
        (RecoveryWithoutFlush, 8),
    ];
    assert_eq!(shortest.len(), durability::Mutant::ALL.len());
    for (mutant, length) in shortest {
        let model = durability::model(durability::Config {
            mutant: Some(mutant),
            ..durability::Config::default()
        });
        let actions = counterexample(model.clone(), mutant.breaks(), 13);
        assert!(
            actions.len() <= 12,
            "{}: {} steps",
            mutant.name(),
            actions.len()
        );
        let found = shortest_counterexample(&model, mutant.breaks(), 12)
            .unwrap_or_else(|| panic!("{}: no counterexample", mutant.name()));
        eprintln!(
            "{} breaks `{}` in {} steps: {found:?}",
            mutant.name(),
            mutant.breaks(),
            found.len()
        );
        let crashes = found
            .iter()
            .filter(|a| matches!(a, stateright::actor::ActorModelAction::Crash(_)))
            .count();
        assert!(
            crashes >= 1,
            "{}: the loss needs a crash: {found:?}",
            mutant.name()
        );
        assert_eq!(found.len(), length, "{}: {found:?}", mutant.name());
    }
}

/// The runs model at the depth CI checks (`runs::CI_DEPTH`, what `check runs` explores
/// with no flags).
const RUNS_STATES: usize = 1_305_037;

#[test]
fn the_runs_model_holds_its_properties() {
    let model = runs::Runs::default();
    let always = names(&model, true);
    let sometimes = names(&model, false);
    assert_eq!(always.len(), 5);
    // One thread, for a count that does not depend on scheduling (see the store's).
    let checker = model
        .checker()
        .threads(1)
        .target_max_depth(runs::CI_DEPTH)
        .spawn_bfs()
        .join();
    for name in always {
        if let Some(path) = checker.discovery(name) {
            panic!("{name} fails: {:#?}", path.into_actions());
        }
    }
    for name in sometimes {
        assert!(checker.discovery(name).is_some(), "never reached: {name}");
    }
    assert_eq!(checker.unique_state_count(), RUNS_STATES);
}

/// Each runs mutant: stateright's search finds a counterexample within 12 steps, and the
/// shortest one (a one-thread breadth-first search) has the pinned length.
#[test]
fn every_runs_mutant_has_a_counterexample_within_12_steps() {
    use runs::Mutant::*;
    let shortest = [
        (BlindLanding, 5),
        (LandPerTable, 4),
        (UnsealedWork, 4),
        (PerTableRevert, 6),
        (RecoverySkipsQueued, 1),
        (RecoveryIgnoresLanding, 4),
        (AppendDropsRows, 8),
        (AppendOverReplace, 8),
        (UnfencedLanding, 4),
    ];
    assert_eq!(shortest.len(), runs::Mutant::ALL.len());
    for (mutant, length) in shortest {
        let model = runs::Runs::with_mutant(mutant);
        let actions = counterexample(model.clone(), mutant.breaks(), runs::MUTANT_DEPTH);
        assert!(
            actions.len() <= 12,
            "{}: {} steps",
            mutant.name(),
            actions.len()
        );
        let found = runs::trace::shortest_counterexample(&model, mutant.breaks(), 12)
            .unwrap_or_else(|| panic!("{}: no counterexample", mutant.name()));
        eprintln!(
            "{} breaks `{}` in {} steps: {found:?}",
            mutant.name(),
            mutant.breaks(),
            found.len()
        );
        assert_eq!(found.len(), length, "{}: {found:?}", mutant.name());
    }
}
