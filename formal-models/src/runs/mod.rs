//! Runs (DESIGN §5, §7) as a Stateright model over the version store's specification
//! (`spec::Oracle`): queued runs fork a branch from their target, write their outputs
//! there, and land as one commit on the target — or fail, are cancelled, are promoted and
//! pruned — while another client commits, forks, merges, cherry-picks and reverts runs
//! beside them, and the server may crash (in the middle of a landing too) and recover.
//!
//! Bauplan's own Alloy models found three ways its runs went wrong: a second run silently
//! overwrote a table another run wrote; a failed run's temporary branch was forked and
//! merged by someone else; a per-table revert split a run. The five `always` properties
//! (`properties.rs`) make all three impossible, and every one has a `Mutant` that removes
//! its guard, so that the checker shows it failing.
//!
//! The universe is small on purpose: namespace `a` with table `a.t1` on `main` (and `a.t2`
//! absent, so that a run creates it), two runs queued at the start — run 0 writes `a.t1`
//! and `a.t2`, run 1 writes `a.t2` — and one client with a branch `dev` it forks and
//! deletes. A run writes each output once, as version `RUN_VERSION + run`; the client's
//! writes toggle between versions 1 and 2, so the same content recurs and merges meet
//! equal changes.

mod properties;
mod step;
pub mod trace;

use stateright::{Model, Property};

use crate::spec::{Map, OContent, OExpect, Oracle, POOL_IDS, ROp, natural_kind};

pub use properties::*;

/// A guard removed, to show what it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// A landing expects each output as the target holds it now, not as it was at the
    /// fork: a run lands over a change another run or client made since (Bauplan's
    /// silent overwrite).
    BlindLanding,
    /// A landing writes each output as its own commit and stops at the first that
    /// conflicts: the target holds part of a run.
    LandPerTable,
    /// Forking, merging and cherry-picking from a run's work are never refused (Bauplan's
    /// failed run forked and merged by someone else).
    UnsealedWork,
    /// Reverting a run reverts each of its tables that has not changed since and skips
    /// the others (Bauplan's per-table revert).
    PerTableRevert,
    /// Recovery settles the runs that forked and skips the queued ones, which nothing will
    /// ever run.
    RecoverySkipsQueued,
    /// Recovery fails every live run without looking for its landing.
    RecoveryIgnoresLanding,
}

impl Mutant {
    pub const ALL: [Mutant; 6] = [
        Mutant::BlindLanding,
        Mutant::LandPerTable,
        Mutant::UnsealedWork,
        Mutant::PerTableRevert,
        Mutant::RecoverySkipsQueued,
        Mutant::RecoveryIgnoresLanding,
    ];

    /// The property this mutant breaks.
    pub fn breaks(self) -> &'static str {
        match self {
            Mutant::BlindLanding => NO_OVERWRITE,
            Mutant::LandPerTable => ALL_OR_NONE,
            Mutant::UnsealedWork => SEALED,
            Mutant::PerTableRevert => REVERT_WHOLE,
            Mutant::RecoverySkipsQueued | Mutant::RecoveryIgnoresLanding => SETTLED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mutant::BlindLanding => "blind-landing",
            Mutant::LandPerTable => "land-per-table",
            Mutant::UnsealedWork => "unsealed-work",
            Mutant::PerTableRevert => "per-table-revert",
            Mutant::RecoverySkipsQueued => "recovery-skips-queued",
            Mutant::RecoveryIgnoresLanding => "recovery-ignores-landing",
        }
    }
}

/// The depth CI checks exhaustively, as stateright counts it (the initial state is depth
/// 1: nine actions, about a million states). Every `sometimes` property is reached within
/// five actions; nine hold every interleaving of both runs' whole lives (seven actions:
/// Bauplan's overwrite race) with two more — a revert, a crash, the client's writes.
pub const CI_DEPTH: usize = 10;
/// The depth within which every mutant's counterexample is found (12 actions).
pub const MUTANT_DEPTH: usize = 13;

/// Keys of the universe (indices into `spec::KEYS`): namespace `a`, tables `a.t1`, `a.t2`.
pub const NS_A: usize = 0;
pub const T1: usize = 3;
pub const T2: usize = 4;
pub const TABLES: [usize; 2] = [T1, T2];
/// Branches (keys of `Oracle::branches`): the target, the client's, and run `r`'s
/// `floe-run/<id>` at `RUN_BRANCH + r`.
pub const MAIN: usize = 0;
pub const DEV: usize = 1;
pub const RUN_BRANCH: usize = 2;
/// Run `r` writes each output as this version plus `r`.
pub const RUN_VERSION: u8 = 10;

pub fn run_branch(run: usize) -> usize {
    RUN_BRANCH + run
}

/// Where a run is in its life (the catalog's `RunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, Phase::Queued | Phase::Running)
    }
}

/// A run's record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Run {
    pub phase: Phase,
    /// The target's head when the run forked.
    pub fork: Option<usize>,
    /// Its landing commit, once the record says it succeeded.
    pub landed: Option<usize>,
    pub promoted: bool,
    /// Left live by a restart: no executor will ever settle it.
    pub orphaned: bool,
}

/// Where a commit came from, for the properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Seed,
    /// The client's commit on `main` or `dev`.
    Client,
    /// A run's commit on its own branch.
    Work(usize),
    /// A run's landing commit on its target.
    Landing(usize),
    Merge,
    CherryPick {
        of: usize,
    },
    /// A revert of run `run`'s landing commit `of`.
    RunRevert {
        run: usize,
        of: usize,
    },
}

/// Where the client forks or merges from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Main,
    Dev,
    /// A run's newest commit on its branch (by hash: it outlives the branch).
    Work(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunsAction {
    /// The run's turn comes: it forks its branch from the target's head.
    Begin(usize),
    /// The run writes an output table on its branch.
    Write(usize, usize),
    /// The run lands (or, refused, fails).
    Land(usize),
    /// The run's landing commit lands, and the server crashes before its record says so.
    LandCrash(usize),
    /// A node of the run fails.
    Fail(usize),
    Cancel(usize),
    Promote(usize),
    /// A maintenance pass: retention prunes failed and cancelled runs' branches.
    Maintain,
    /// The server stops (crashes) and starts again: recovery settles live runs.
    Restart,
    /// The client writes a table on `main` or `dev`.
    Commit {
        branch: usize,
        table: usize,
    },
    /// The client creates `dev` at a source.
    Fork(Source),
    /// The client merges a source into `main`.
    Merge(Source),
    /// The client cherry-picks a run's newest commit onto `main`.
    CherryPick(usize),
    DeleteDev,
    /// Someone reverts a run: its landing commit, as one commit, on its target.
    RevertRun(usize),
}

/// How an action ended, as a caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// Applied, and nothing to write (a merge with nothing to merge, a revert already
    /// undone).
    Nothing,
    /// Refused with a conflict (a landing, a merge, a revert); a refused landing fails
    /// its run.
    Conflict,
    /// Refused: the commit belongs to a run that is not succeeded and not promoted.
    Sealed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Nothing => "nothing",
            Outcome::Conflict => "conflict",
            Outcome::Sealed => "sealed",
        }
    }
}

/// What happened at least once, for the `sometimes` properties that the rest of the state
/// cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    pub landing_refused: bool,
    pub sealed_refused: bool,
    pub revert_refused: bool,
    pub landing_recovered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub spec: Oracle,
    /// Per commit of `spec`: where it came from.
    pub origins: Vec<Origin>,
    pub runs: Vec<Run>,
    /// False between a crash and the restart (only the restart happens meanwhile).
    pub up: bool,
    pub seen: Seen,
}

impl State {
    pub fn map(&self, branch: usize) -> Option<&Map> {
        let head = self.spec.branches.get(&branch)?;
        Some(&self.spec.commits[*head].map)
    }

    /// A run's newest commit on its branch.
    pub fn last_work(&self, run: usize) -> Option<usize> {
        self.origins.iter().rposition(|o| *o == Origin::Work(run))
    }

    /// Commits of a run's landing (one, unless a mutant split it).
    pub fn landings(&self, run: usize) -> impl Iterator<Item = usize> + '_ {
        self.origins
            .iter()
            .enumerate()
            .filter(move |(_, o)| **o == Origin::Landing(run))
            .map(|(c, _)| c)
    }

    /// Nothing may build on a run's work until it succeeded or was promoted (the catalog's
    /// `RunRecord::sealed`).
    pub fn sealed(&self, run: usize) -> bool {
        let r = &self.runs[run];
        r.phase != Phase::Succeeded && !r.promoted
    }
}

/// The model's bounds and its mutant.
#[derive(Debug, Clone)]
pub struct Runs {
    pub mutant: Option<Mutant>,
    /// Each run's outputs (it writes each once, in any order, and lands them together).
    pub outputs: Vec<Vec<usize>>,
    /// Another client works beside the runs.
    pub client: bool,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            mutant: None,
            outputs: vec![vec![T1, T2], vec![T2]],
            client: true,
        }
    }
}

/// Content ids: `a.t1` is seeded with `SEED_ID`; a run that creates a table gives it
/// `created_id` (the catalog gives each new table a fresh id, so two runs that create the
/// same table create two contents, never equal).
pub const SEED_ID: u32 = POOL_IDS[0];
pub const CREATED_ID: u32 = 20;

pub fn created_id(run: usize, key: usize) -> u32 {
    CREATED_ID + 2 * run as u32 + u32::from(key == T2)
}

/// The run that created a content, if a run did.
pub fn creator(c: &OContent) -> Option<usize> {
    (c.id >= CREATED_ID).then(|| ((c.id - CREATED_ID) / 2) as usize)
}

/// What run `run` writes to a table that holds `current` on its branch: the same table
/// (its id) at the run's version, or a new one.
pub fn run_value(run: usize, key: usize, current: Option<&OContent>) -> OContent {
    OContent {
        id: current.map_or(created_id(run, key), |c| c.id),
        kind: natural_kind(key),
        version: RUN_VERSION + run as u8,
    }
}

/// True when `c` is what run `run` wrote.
pub fn written_by(run: usize, c: Option<&OContent>) -> bool {
    c.is_some_and(|c| c.version == RUN_VERSION + run as u8)
}

/// What the client writes over `current`: the same table at the other client version.
pub fn client_value(current: OContent) -> OContent {
    OContent {
        version: if current.version == 1 { 2 } else { 1 },
        ..current
    }
}

impl Runs {
    pub fn with_mutant(mutant: Mutant) -> Runs {
        Runs {
            mutant: Some(mutant),
            ..Runs::default()
        }
    }

    fn is(&self, m: Mutant) -> bool {
        self.mutant == Some(m)
    }
}

impl Model for Runs {
    type State = State;
    type Action = RunsAction;

    fn init_states(&self) -> Vec<State> {
        let mut spec = Oracle::new();
        let ns = OContent {
            id: spec.fresh_id(),
            kind: natural_kind(NS_A),
            version: 0,
        };
        let seed = [
            ROp::Put(NS_A, ns, OExpect::Absent),
            ROp::Put(
                T1,
                OContent {
                    id: SEED_ID,
                    kind: natural_kind(T1),
                    version: 0,
                },
                OExpect::Absent,
            ),
        ];
        let (effect, _) = spec.commit(MAIN, None, &seed).expect("the seed lands");
        spec.apply(effect);
        vec![State {
            origins: vec![Origin::Seed; spec.commits.len()],
            spec,
            runs: vec![
                Run {
                    phase: Phase::Queued,
                    fork: None,
                    landed: None,
                    promoted: false,
                    orphaned: false,
                };
                self.outputs.len()
            ],
            up: true,
            seen: Seen::default(),
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<RunsAction>) {
        if !state.up {
            actions.push(RunsAction::Restart);
            return;
        }
        actions.extend(self.all_actions());
    }

    fn next_state(&self, state: &State, action: RunsAction) -> Option<State> {
        let (next, _) = self.step(state, action)?;
        (next != *state).then_some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all()
    }
}
