//! Paths of the runs model, and their traces as text: what the catalog is held to. Each
//! line of a trace is one action, how it ended and what a caller then observes — the runs'
//! records, each run branch's tables, and the tables on `main` and `dev` (a table's
//! generation, `@rN` when run N created it, and `+c` / `+rN` for the rows the client or
//! run N appended since the generation):
//!
//! ```text
//! write 0 t2=10 -> ok | r0=running{t1:10,t2:10@r0} r1=queued main{t1:0}
//! write 1 t2+=r1 -> ok | r0=succeeded r1=running{t1:10,t2:10@r0+r1} main{t1:10,t2:10@r0+c}
//! ```
//!
//! `floe-catalog`'s `tests/runs_model_replay/` replays the committed traces
//! (`testdata/runs-traces.txt`) against the real `Catalog`, so that the catalog is held
//! to this model without depending on this crate (DESIGN §1: `catalog -> commits` only).
//! `tests/runs.rs` here fails when the file is not what the model generates now
//! (`UPDATE_EXPECT=1` rewrites it).

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

use stateright::Model;

use super::{
    DEV, MAIN, Outcome, RUN_VERSION, Runs, RunsAction, Source, State, T1, T2, Version,
    client_value, creator, run_branch,
};
use crate::spec::Map;

/// The exhaustive traces' length: every enabled action from every state within one action
/// fewer of the start.
pub const EXHAUSTIVE_ACTIONS: usize = 3;
/// Random walks and their length.
pub const WALKS: usize = 60;
pub const WALK_ACTIONS: usize = 16;
/// The seed of the walks (xorshift64*).
pub const SEED: u64 = 0x5eed_f10e;

/// Paths the walks rarely take, written out: run 1's append output landing merged with
/// the client's append (then reverted, and its work cherry-picked), the same landing
/// interrupted by a crash, refused over a replace, landing plain over an append made
/// before its fork, a promoted run's append merged by the client (key by key), and a
/// stalled server's landing fenced off.
pub fn scenarios() -> Vec<(&'static str, Vec<RunsAction>)> {
    use RunsAction::*;
    let created = [Begin(0), Write(0, T1), Write(0, T2), Land(0)];
    let with = |tail: &[RunsAction]| [&created[..], tail].concat();
    let replace = Commit {
        branch: MAIN,
        table: T2,
    };
    vec![
        (
            "append-merged",
            with(&[
                Begin(1),
                Append,
                Write(1, T2),
                Land(1),
                RevertRun(1),
                CherryPick(1),
            ]),
        ),
        (
            "append-merged-crash",
            with(&[Begin(1), Write(1, T2), Append, LandCrash(1), Restart]),
        ),
        (
            "append-refused",
            with(&[Begin(1), replace, Write(1, T2), Land(1)]),
        ),
        (
            "append-after-append",
            with(&[Append, Begin(1), Write(1, T2), Land(1), RevertRun(1)]),
        ),
        (
            "append-promoted-merged",
            with(&[
                Begin(1),
                Write(1, T2),
                Fail(1),
                Promote(1),
                Append,
                Merge(Source::Work(1)),
            ]),
        ),
        // The server stalls with run 0 ready to land and run 1 queued: another server
        // settles both; woken, its landing of run 0 is fenced off, and run 0's work stays
        // sealed (promoted, it may be merged).
        (
            "stalled-fenced",
            vec![
                Begin(0),
                Write(0, T1),
                Write(0, T2),
                Stall,
                Land(0),
                Promote(0),
                Merge(Source::Work(0)),
            ],
        ),
    ]
}

fn table_name(t: usize) -> &'static str {
    if t == T1 { "t1" } else { "t2" }
}

fn tables(map: &Map) -> String {
    let present: Vec<String> = [T1, T2]
        .iter()
        .filter_map(|t| {
            let c = map.get(t)?;
            let by = creator(c).map(|r| format!("@r{r}")).unwrap_or_default();
            let rows: String = Version::row_names(c)
                .iter()
                .map(|r| format!("+{r}"))
                .collect();
            Some(format!(
                "{}:{}{by}{rows}",
                table_name(*t),
                Version::generation(c)
            ))
        })
        .collect();
    format!("{{{}}}", present.join(","))
}

/// What a caller observes: each run's record (state, promoted) and, while its branch
/// exists, the branch's tables; the tables on `main` and, when it exists, `dev`.
pub fn observe(state: &State) -> String {
    let mut out = String::new();
    for (r, run) in state.runs.iter().enumerate() {
        let _ = write!(out, "r{r}={}", run.phase.name());
        if run.promoted {
            out.push_str(",promoted");
        }
        if let Some(map) = state.map(run_branch(r)) {
            out.push_str(&tables(map));
        }
        out.push(' ');
    }
    if let Some(map) = state.map(MAIN) {
        let _ = write!(out, "main{}", tables(map));
    }
    if let Some(map) = state.map(DEV) {
        let _ = write!(out, " dev{}", tables(map));
    }
    if !state.up {
        out.push_str(" down");
    }
    out
}

/// An action as a trace spells it, in the state it is taken from (a write names the
/// generation it writes, or the row it appends).
pub fn describe(model: &Runs, state: &State, action: RunsAction) -> String {
    use RunsAction::*;
    let source = |s: Source| match s {
        Source::Main => "main".to_owned(),
        Source::Dev => "dev".to_owned(),
        Source::Work(r) => format!("work {r}"),
    };
    match action {
        Begin(r) => format!("begin {r}"),
        Write(r, t) if model.appends(r, t) => format!("write {r} {}+=r{r}", table_name(t)),
        Write(r, t) => format!("write {r} {}={}", table_name(t), RUN_VERSION + r as u8),
        Land(r) => format!("land {r}"),
        LandCrash(r) => format!("land-crash {r}"),
        Fail(r) => format!("fail {r}"),
        Cancel(r) => format!("cancel {r}"),
        Promote(r) => format!("promote {r}"),
        Maintain => "maintain".to_owned(),
        Restart => "restart".to_owned(),
        Stall => "stall".to_owned(),
        Commit { branch, table } => {
            let name = if branch == MAIN { "main" } else { "dev" };
            let version = state
                .map(branch)
                .and_then(|m| m.get(&table))
                .and_then(|c| client_value(state, table, *c))
                .map_or(0, |c| c.version);
            format!("commit {name} {}={version}", table_name(table))
        }
        Append => "append main t2+=c".to_owned(),
        Fork(s) => format!("fork dev from {}", source(s)),
        Merge(s) => format!("merge {} into main", source(s)),
        CherryPick(r) => format!("cherry-pick work {r} onto main"),
        DeleteDev => "delete dev".to_owned(),
        RevertRun(r) => format!("revert-run {r}"),
    }
}

/// One trace: each action of `path` with how it ended and what is then observed.
/// Panics when an action is not enabled where the path takes it.
pub fn trace(model: &Runs, path: &[RunsAction]) -> String {
    let mut state = model.init_states().remove(0);
    let mut out = String::new();
    for a in path {
        let line = describe(model, &state, *a);
        let (next, outcome) = model
            .step(&state, *a)
            .unwrap_or_else(|| panic!("`{line}` is not enabled"));
        let _ = writeln!(out, "{line} -> {} | {}", outcome.name(), observe(&next));
        state = next;
    }
    out
}

/// The actions enabled in a state, with where each leads.
pub fn enabled(model: &Runs, state: &State) -> Vec<(RunsAction, State, Outcome)> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    actions
        .into_iter()
        .filter_map(|a| model.step(state, a).map(|(s, o)| (a, s, o)))
        .collect()
}

/// A small deterministic generator (xorshift64*), so that walks are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// How often a walk takes an action, relative to the others enabled: runs move on more
/// often than the client acts (it has more actions), and crashes, failures and cancels
/// come rarely, so that most walks see runs land, race, and be reverted.
fn weight(a: RunsAction) -> usize {
    use RunsAction::*;
    match a {
        Begin(_) | Write(..) | Land(_) => 8,
        RevertRun(_) | Promote(_) | Maintain => 4,
        Commit { .. } | Append | Fork(_) | Merge(_) => 2,
        LandCrash(_) | Fail(_) | Cancel(_) | Restart | Stall | CherryPick(_) | DeleteDev => 1,
    }
}

/// A random walk: each step one of the actions enabled in the state, by `weight`.
pub fn walk(model: &Runs, rng: &mut Rng, len: usize) -> Vec<RunsAction> {
    let mut state = model.init_states().remove(0);
    let mut path = Vec::with_capacity(len);
    while path.len() < len {
        let choices = enabled(model, &state);
        let total: usize = choices.iter().map(|c| weight(c.0)).sum();
        let mut pick = rng.below(total);
        let (a, next, _) = choices
            .into_iter()
            .find(|c| {
                let w = weight(c.0);
                if pick < w {
                    return true;
                }
                pick -= w;
                false
            })
            .expect("the pick falls within the total");
        path.push(a);
        state = next;
    }
    path
}

/// Every enabled action from every state within `depth - 1` actions of the start, each
/// after the breadth-first path that first reaches its state; a path that another one
/// continues is left out (the longer one replays it).
pub fn exhaustive(model: &Runs, depth: usize) -> Vec<Vec<RunsAction>> {
    let init = model.init_states().remove(0);
    let mut seen: HashSet<State> = HashSet::from([init.clone()]);
    let mut queue = VecDeque::from([(init, Vec::new())]);
    let mut paths = Vec::new();
    while let Some((state, path)) = queue.pop_front() {
        for (a, next, _) in enabled(model, &state) {
            let mut longer: Vec<RunsAction> = path.clone();
            longer.push(a);
            if longer.len() < depth && seen.insert(next.clone()) {
                queue.push_back((next, longer.clone()));
            }
            paths.push(longer);
        }
    }
    let continued: HashSet<Vec<RunsAction>> = paths
        .iter()
        .filter(|p| p.len() > 1)
        .map(|p| p[..p.len() - 1].to_vec())
        .collect();
    paths.retain(|p| !continued.contains(p));
    paths
}

/// The traces file: the start's observation, the exhaustive traces, the scenarios, then
/// the walks.
pub fn traces_file(model: &Runs) -> String {
    let start = model.init_states().remove(0);
    let mut out = String::new();
    out.push_str(
        "# Traces of floe-formal-models' runs model (src/runs/trace.rs), replayed against\n\
         # floe-catalog by catalog/tests/runs_model_replay/. Generated: do not edit;\n\
         # `UPDATE_EXPECT=1 cargo test -p floe-formal-models --test runs` rewrites it.\n",
    );
    let _ = writeln!(out, "start | {}", observe(&start));
    for (i, path) in exhaustive(model, EXHAUSTIVE_ACTIONS).iter().enumerate() {
        let _ = write!(out, "\ntrace exhaustive {i}\n{}", trace(model, path));
    }
    for (name, path) in scenarios() {
        let _ = write!(out, "\ntrace scenario {name}\n{}", trace(model, &path));
    }
    for i in 0..WALKS {
        let mut rng = Rng(SEED ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let path = walk(model, &mut rng, WALK_ACTIONS);
        let _ = write!(out, "\ntrace walk {i}\n{}", trace(model, &path));
    }
    out
}

/// The shortest path (breadth-first, one thread: deterministic) to a state where the
/// `always` property `name` fails, within `max_actions`. Stateright's own search reports
/// a counterexample within its depth, not necessarily a shortest one.
pub fn shortest_counterexample(
    model: &Runs,
    name: &str,
    max_actions: usize,
) -> Option<Vec<RunsAction>> {
    let properties = model.properties();
    let property = properties.iter().find(|p| p.name == name)?;
    let holds = |s: &State| (property.condition)(model, s);
    let init = model.init_states().remove(0);
    if !holds(&init) {
        return Some(Vec::new());
    }
    let mut seen: HashSet<State> = HashSet::from([init.clone()]);
    let mut queue = VecDeque::from([(init, Vec::new())]);
    while let Some((state, path)) = queue.pop_front() {
        if path.len() == max_actions {
            continue;
        }
        for (a, next, _) in enabled(model, &state) {
            if !seen.insert(next.clone()) {
                continue;
            }
            let mut longer: Vec<RunsAction> = path.clone();
            longer.push(a);
            if !holds(&next) {
                return Some(longer);
            }
            queue.push_back((next, longer));
        }
    }
    None
}
