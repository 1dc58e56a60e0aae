//! Runs (DESIGN §5, §7) as a Stateright model over the version store's specification
//! (`spec::Oracle`): queued runs fork a branch from their target, write their outputs
//! there, and land as one commit on the target — or fail, are cancelled, are promoted and
//! pruned — while another client commits, forks, merges, cherry-picks and reverts runs
//! beside them, and the server may crash (in the middle of a landing too) and recover, or
//! stall past its lease while another server settles its runs, and then wake.
//!
//! Bauplan's own Alloy models found three ways its runs went wrong: a second run silently
//! overwrote a table another run wrote; a failed run's temporary branch was forked and
//! merged by someone else; a per-table revert split a run. The five `always` properties
//! (`properties.rs`) make all three impossible, and every one has a `Mutant` that removes
//! its guard, so that the checker shows it failing.
//!
//! The universe is small on purpose: namespace `a` with table `a.t1` on `main` (and `a.t2`
//! absent, so that a run creates it), two runs queued at the start — run 0 writes `a.t1`
//! and `a.t2`, run 1 appends to `a.t2` (an `APPEND` output) — and one client with a branch
//! `dev` it forks and deletes, who also appends rows to `a.t2` on `main`.
//!
//! A table's version is a generation and the rows appended since it (`Version`). A run
//! writes each output once: a replaced output as generation `RUN_VERSION + run`, an append
//! output as its own row added to the table (which it creates at that generation when it
//! is absent). The client's writes to `a.t1` toggle between generations 1 and 2, so the
//! same content recurs and merges meet equal changes; its replaces of `a.t2` take a fresh
//! generation each, because the catalog replays `a.t2` as a real Iceberg table, whose every
//! write makes new metadata. Two equal versions of `a.t2` are then one content carried by
//! a merge, a cherry-pick, a landing or a revert — which holds because each writer appends
//! at most once per generation (the client's row is one bit, and run 1 writes once), so no
//! append recurs either. A change of the table's properties alone is not modelled (the
//! catalog merges it three-way, as any merge does).

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
    /// An append output whose table the target appended to since the fork lands as the
    /// run's own table, not merged with those appends: the rows they added are lost.
    AppendDropsRows,
    /// An append output lands merged over any change to its table since the fork, a
    /// replace too, not only over appends.
    AppendOverReplace,
    /// A landing is not fenced on the run's owner token: a server that stalled past its
    /// lease, its run settled meanwhile by another, lands it when it wakes.
    UnfencedLanding,
}

impl Mutant {
    pub const ALL: [Mutant; 9] = [
        Mutant::BlindLanding,
        Mutant::LandPerTable,
        Mutant::UnsealedWork,
        Mutant::PerTableRevert,
        Mutant::RecoverySkipsQueued,
        Mutant::RecoveryIgnoresLanding,
        Mutant::AppendDropsRows,
        Mutant::AppendOverReplace,
        Mutant::UnfencedLanding,
    ];

    /// The property this mutant breaks.
    pub fn breaks(self) -> &'static str {
        match self {
            Mutant::BlindLanding | Mutant::AppendDropsRows | Mutant::AppendOverReplace => {
                NO_OVERWRITE
            }
            Mutant::LandPerTable => ALL_OR_NONE,
            Mutant::UnsealedWork => SEALED,
            Mutant::PerTableRevert => REVERT_WHOLE,
            Mutant::RecoverySkipsQueued
            | Mutant::RecoveryIgnoresLanding
            | Mutant::UnfencedLanding => SETTLED,
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
            Mutant::AppendDropsRows => "append-drops-rows",
            Mutant::AppendOverReplace => "append-over-replace",
            Mutant::UnfencedLanding => "unfenced-landing",
        }
    }
}

/// The depth CI checks exhaustively, as stateright counts it (the initial state is depth
/// 1: nine actions, about 1.3 million states). Every `sometimes` property is reached within
/// eight actions (an append merged or refused: run 0 creates `a.t2`, run 1 forks and
/// appends while the client appends or replaces); nine hold every interleaving of both
/// runs' whole lives (seven actions: Bauplan's overwrite race) with two more — a revert, a
/// crash, the client's writes.
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
/// Run `r` replaces an output with this generation plus `r` (and creates an append output
/// at it).
pub const RUN_VERSION: u8 = 10;
/// The generations the client's replaces of `a.t2` take, fresh each time: `1..=CLIENT_GENERATIONS`.
pub const CLIENT_GENERATIONS: u8 = 9;

/// A table's version (`OContent::version`): its generation in the low four bits, and one
/// bit per writer that appended a row since (the client's, then run `r`'s).
#[derive(Debug)]
pub struct Version;

impl Version {
    const GENERATION: u8 = 0x0f;
    pub const CLIENT_ROW: u8 = 0x10;

    pub fn generation(c: &OContent) -> u8 {
        c.version & Self::GENERATION
    }

    pub fn rows(c: &OContent) -> u8 {
        c.version & !Self::GENERATION
    }

    pub fn run_row(run: usize) -> u8 {
        0x20 << run
    }

    /// `now` is `before` with rows appended (none taken away): the same table, at the same
    /// generation, holding at least `before`'s rows.
    pub fn appended(before: &OContent, now: &OContent) -> bool {
        before.id == now.id
            && Self::generation(before) == Self::generation(now)
            && Self::rows(now) & Self::rows(before) == Self::rows(before)
    }

    /// The rows' names, in bit order: `c` for the client's, `rN` for run N's.
    pub fn row_names(c: &OContent) -> Vec<String> {
        let rows = Self::rows(c);
        let mut names = Vec::new();
        if rows & Self::CLIENT_ROW != 0 {
            names.push("c".to_owned());
        }
        names.extend(
            (0..3)
                .filter(|r| rows & Self::run_row(*r) != 0)
                .map(|r| format!("r{r}")),
        );
        names
    }
}

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
    /// Settled by another server while its own stalled past its lease: woken, its server
    /// still holds it and goes on to land it.
    pub stalled: bool,
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
    /// The server stalls (paused, not dead) past its lease, and another server settles
    /// its live runs (each run's owner token first, then its landing looked for); the
    /// running ones it still holds, to land when it wakes.
    Stall,
    /// The client writes a table on `main` or `dev` (replaces it: a new generation).
    Commit {
        branch: usize,
        table: usize,
    },
    /// The client appends its row to `a.t2` on `main`.
    Append,
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
    /// Refused: the run was settled by another server (its owner token is gone).
    Fenced,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Nothing => "nothing",
            Outcome::Conflict => "conflict",
            Outcome::Sealed => "sealed",
            Outcome::Fenced => "fenced",
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
    /// A landing refused because the target changed an append output's table since the
    /// fork by more than appends.
    pub append_refused: bool,
    /// A stalled server's landing refused: its run was settled meanwhile.
    pub landing_fenced: bool,
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
    /// The generation the client's next replace of `a.t2` takes.
    pub fresh: u8,
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
    /// The outputs each run writes by appending (its `APPEND` outputs).
    pub appends: Vec<Vec<usize>>,
    /// Another client works beside the runs.
    pub client: bool,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            mutant: None,
            outputs: vec![vec![T1, T2], vec![T2]],
            appends: vec![Vec::new(), vec![T2]],
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

/// The client's replace of `current` on `state`: `a.t1` at the other of generations 1
/// and 2, `a.t2` at a fresh generation (`None` once they are used up).
pub fn client_value(state: &State, key: usize, current: OContent) -> Option<OContent> {
    let version = if key == T2 {
        (state.fresh <= CLIENT_GENERATIONS).then_some(state.fresh)?
    } else if current.version == 1 {
        2
    } else {
        1
    };
    Some(OContent { version, ..current })
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

    /// True when run `run` writes `key` by appending.
    pub fn appends(&self, run: usize, key: usize) -> bool {
        self.appends[run].contains(&key)
    }

    /// What run `run` writes to a table that holds `current` on its branch: the same table
    /// (its id) at the run's generation, or with the run's row appended; or a new one.
    pub fn run_value(&self, run: usize, key: usize, current: Option<&OContent>) -> OContent {
        let generation = RUN_VERSION + run as u8;
        let version = match (self.appends(run, key), current) {
            (true, Some(c)) => c.version | Version::run_row(run),
            (true, None) => generation | Version::run_row(run),
            (false, _) => generation,
        };
        OContent {
            id: current.map_or(created_id(run, key), |c| c.id),
            kind: natural_kind(key),
            version,
        }
    }

    /// True when `c` holds what run `run` wrote to `key`.
    pub fn written_by(&self, run: usize, key: usize, c: Option<&OContent>) -> bool {
        c.is_some_and(|c| {
            if self.appends(run, key) {
                Version::rows(c) & Version::run_row(run) != 0
            } else {
                c.version == RUN_VERSION + run as u8
            }
        })
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
                    stalled: false,
                };
                self.outputs.len()
            ],
            up: true,
            seen: Seen::default(),
            fresh: 1,
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
