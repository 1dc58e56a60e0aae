//! The runs model's properties, each a predicate over one state: five `always` properties
//! (each with the mutant that removes its guard, `Mutant::breaks`) and the `sometimes`
//! properties that keep the model honest — every guard is exercised at the depth CI
//! checks, so none holds by never being reached.

use stateright::Property;

use super::{Origin, Phase, Runs, State, TABLES, Version, run_branch};
use crate::spec::OContent;

pub const ALL_OR_NONE: &str = "a run's outputs reach its target all or none";
pub const NO_OVERWRITE: &str = "no silent overwrite: a landing never replaces a table that changed on the target after the fork; an append output lands over appends alone, keeping every row they added";
pub const SEALED: &str =
    "no ref reaches a commit of a failed or cancelled run, nor copies one, unless it was promoted";
pub const REVERT_WHOLE: &str = "reverting a run reverts all its tables or none";
pub const SETTLED: &str = "recovery settles every run: none is left live, and a run succeeded exactly when its landing commit exists";

pub const SOME_UNRELATED: &str = "a run lands after an unrelated change to its target";
pub const SOME_LANDING_REFUSED: &str = "a landing is refused: an output changed since the fork";
pub const SOME_SEALED_REFUSED: &str = "using a sealed run's work is refused";
pub const SOME_PROMOTED_USED: &str = "a promoted run's work reaches another ref";
pub const SOME_REVERTED: &str = "a run is reverted";
pub const SOME_REVERT_REFUSED: &str = "a run's revert is refused: one of its tables changed since";
pub const SOME_RECOVERED_LANDING: &str =
    "recovery finds the landing of a run the crash interrupted and settles it as succeeded";
pub const SOME_PRUNED: &str = "retention prunes a sealed run's branch";
pub const SOME_APPEND_MERGED: &str =
    "a run's append output lands merged with appends made on its target since the fork";
pub const SOME_APPEND_REFUSED: &str =
    "a run's append output is refused: the target replaced its table since the fork";
pub const SOME_FENCED: &str =
    "a stalled server's landing is refused: another server settled its run meanwhile";

pub(super) fn all() -> Vec<Property<Runs>> {
    vec![
        Property::always(ALL_OR_NONE, all_or_none),
        Property::always(NO_OVERWRITE, no_overwrite),
        Property::always(SEALED, sealed_work_unused),
        Property::always(REVERT_WHOLE, reverts_whole),
        Property::always(SETTLED, settled),
        Property::sometimes(SOME_UNRELATED, |_: &Runs, s: &State| {
            s.origins.iter().enumerate().any(|(c, o)| match o {
                Origin::Landing(r) => s.runs[*r].fork != Some(s.spec.commits[c].parents[0]),
                _ => false,
            })
        }),
        Property::sometimes(SOME_LANDING_REFUSED, |_: &Runs, s: &State| {
            s.seen.landing_refused
        }),
        Property::sometimes(SOME_SEALED_REFUSED, |_: &Runs, s: &State| {
            s.seen.sealed_refused
        }),
        Property::sometimes(SOME_PROMOTED_USED, |_: &Runs, s: &State| {
            (0..s.runs.len()).any(|r| s.runs[r].promoted && work_reached(s, r))
        }),
        Property::sometimes(SOME_REVERTED, |_: &Runs, s: &State| {
            s.origins
                .iter()
                .any(|o| matches!(o, Origin::RunRevert { .. }))
        }),
        Property::sometimes(SOME_FENCED, |_: &Runs, s: &State| s.seen.landing_fenced),
        Property::sometimes(SOME_REVERT_REFUSED, |_: &Runs, s: &State| {
            s.seen.revert_refused
        }),
        Property::sometimes(SOME_RECOVERED_LANDING, |_: &Runs, s: &State| {
            s.seen.landing_recovered
        }),
        Property::sometimes(SOME_APPEND_MERGED, |m: &Runs, s: &State| {
            s.origins.iter().enumerate().any(|(c, o)| {
                let Origin::Landing(r) = o else {
                    return false;
                };
                let (Some(fork), Some(parent)) =
                    (s.runs[*r].fork, s.spec.commits[c].parents.first())
                else {
                    return false;
                };
                let (at_fork, landed_on) =
                    (&s.spec.commits[fork].map, &s.spec.commits[*parent].map);
                m.appends[*r]
                    .iter()
                    .any(|t| at_fork.get(t).is_some() && landed_on.get(t) != at_fork.get(t))
            })
        }),
        Property::sometimes(SOME_APPEND_REFUSED, |_: &Runs, s: &State| {
            s.seen.append_refused
        }),
        Property::sometimes(SOME_PRUNED, |_: &Runs, s: &State| {
            s.runs.iter().enumerate().any(|(r, run)| {
                matches!(run.phase, Phase::Failed | Phase::Cancelled)
                    && run.fork.is_some()
                    && !s.spec.branches.contains_key(&run_branch(r))
            })
        }),
    ]
}

/// A succeeded run landed every output, at its own value, in one commit; a failed or
/// cancelled run landed nothing; a live run (interrupted by a crash) at most that one
/// whole commit.
fn all_or_none(m: &Runs, s: &State) -> bool {
    s.runs.iter().enumerate().all(|(r, run)| {
        let landings: Vec<usize> = s.landings(r).collect();
        let whole = |c: &usize| {
            m.outputs[r]
                .iter()
                .all(|t| m.written_by(r, *t, s.spec.commits[*c].map.get(t)))
        };
        match run.phase {
            Phase::Succeeded => landings.len() == 1 && landings.iter().all(whole),
            Phase::Failed | Phase::Cancelled => landings.is_empty(),
            Phase::Queued | Phase::Running => landings.len() <= 1 && landings.iter().all(whole),
        }
    })
}

/// Every landing commit landed on a head where each of its run's outputs is as it was at
/// the run's fork; or, for an append output, where the target had only appended to it
/// since the fork, and the landing keeps every row the target had.
fn no_overwrite(m: &Runs, s: &State) -> bool {
    s.origins.iter().enumerate().all(|(c, o)| {
        let Origin::Landing(r) = o else {
            return true;
        };
        let Some(fork) = s.runs[*r].fork else {
            return false;
        };
        let landed_on = &s.spec.commits[s.spec.commits[c].parents[0]].map;
        let at_fork = &s.spec.commits[fork].map;
        let landing = &s.spec.commits[c].map;
        m.outputs[*r].iter().all(|t| {
            let unchanged = landed_on.get(t) == at_fork.get(t);
            // Spelled out here rather than with `Version::appended`, which the landing
            // uses: the same table at the same generation, and no row taken away.
            let kept = |a: &OContent, b: &OContent| {
                a.id == b.id
                    && Version::generation(a) == Version::generation(b)
                    && Version::rows(b) & Version::rows(a) == Version::rows(a)
            };
            let merged = || match (at_fork.get(t), landed_on.get(t), landing.get(t)) {
                (Some(before), Some(on), Some(after)) => kept(before, on) && kept(on, after),
                _ => false,
            };
            unchanged || (m.appends(*r, *t) && merged())
        })
    })
}

/// A ref other than the run's own branch reaches one of its commits.
fn work_reached(s: &State, run: usize) -> bool {
    s.spec.branches.iter().any(|(b, head)| {
        *b != run_branch(run)
            && s.spec
                .ancestors(*head)
                .iter()
                .any(|c| s.origins[*c] == Origin::Work(run))
    })
}

fn sealed_work_unused(_: &Runs, s: &State) -> bool {
    s.runs.iter().enumerate().all(|(r, run)| {
        if !matches!(run.phase, Phase::Failed | Phase::Cancelled) || run.promoted {
            return true;
        }
        let copied = s.origins.iter().any(|o| match o {
            Origin::CherryPick { of } => s.origins[*of] == Origin::Work(r),
            _ => false,
        });
        !copied && !work_reached(s, r)
    })
}

/// Every revert of a run's landing sets each of the run's tables back to what it was
/// before the landing.
fn reverts_whole(m: &Runs, s: &State) -> bool {
    s.origins.iter().enumerate().all(|(c, o)| {
        let Origin::RunRevert { run, of } = o else {
            return true;
        };
        let before = &s.spec.commits[s.spec.commits[*of].parents[0]].map;
        let after = &s.spec.commits[c].map;
        debug_assert!(m.outputs[*run].iter().all(|t| TABLES.contains(t)));
        m.outputs[*run]
            .iter()
            .all(|t| after.get(t) == before.get(t))
    })
}

/// No run is left live by a restart, and (while the server is up: a crash may come
/// between a landing and its record) a run's record says succeeded exactly when its
/// landing commit exists, and names it.
fn settled(_: &Runs, s: &State) -> bool {
    s.runs.iter().enumerate().all(|(r, run)| {
        let orphan = run.phase.is_live() && run.orphaned;
        let landing = s.landings(r).last();
        let agrees = !s.up
            || match run.phase {
                Phase::Succeeded => landing.is_some() && run.landed == landing,
                _ => landing.is_none(),
            };
        !orphan && agrees
    })
}
