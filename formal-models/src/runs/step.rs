//! The runs model's transitions: what each action does to a state, as the catalog does
//! it (`catalog/src/runs/`: `begin_run`, the executor's writes, `land_run` and its landing
//! rule, `fail_run`, `cancel_run`, `promote_run`, `maintain`, `recover_runs`; and the
//! client's commits, refs, merges, cherry-picks and reverts with their sealing checks),
//! each over the version store's specification (`spec::Oracle`), and what each mutant
//! changes.

use floe_commits::{MergeStrategy, Resolution};

use super::*;
use crate::spec::{Effect, OContent, OExpect, ROp, Reject, Resolving};

fn expect_of(c: Option<&OContent>) -> OExpect {
    c.map_or(OExpect::Absent, |c| OExpect::Is(*c))
}

/// A put of `value` expecting `expect`, with the namespace check a new table needs (the
/// catalog's `new_content_ops` and landing rule add it).
fn put(ops: &mut Vec<ROp>, key: usize, value: OContent, expect: OExpect) {
    ops.push(ROp::Put(key, value, expect));
    if expect == OExpect::Absent && !ops.contains(&ROp::Check(NS_A, OExpect::Present)) {
        ops.push(ROp::Check(NS_A, OExpect::Present));
    }
}

impl Runs {
    /// Every action the model offers (each enabled or not in a given state).
    pub fn all_actions(&self) -> Vec<RunsAction> {
        use RunsAction::*;
        let runs = 0..self.outputs.len();
        let mut all = Vec::new();
        for (r, outputs) in self.outputs.iter().enumerate() {
            all.push(Begin(r));
            all.extend(outputs.iter().map(|t| Write(r, *t)));
            all.extend([Land(r), LandCrash(r), Fail(r), Cancel(r), Promote(r)]);
        }
        all.extend([Maintain, Restart, Stall]);
        if self.client {
            for branch in [MAIN, DEV] {
                all.extend(TABLES.map(|table| Commit { branch, table }));
            }
            all.push(Append);
            all.push(Fork(Source::Main));
            all.extend(runs.clone().map(|r| Fork(Source::Work(r))));
            all.push(Merge(Source::Dev));
            all.extend(runs.clone().map(|r| Merge(Source::Work(r))));
            all.extend(runs.clone().map(CherryPick));
            all.push(DeleteDev);
            all.extend(runs.map(RevertRun));
        }
        all
    }

    /// Applies an action: the next state and how the action ended, or `None` when it is
    /// not enabled. A refusal that changes nothing returns the state unchanged.
    pub fn step(&self, state: &State, action: RunsAction) -> Option<(State, Outcome)> {
        use RunsAction::*;
        if !state.up && action != Restart {
            return None;
        }
        let mut next = state.clone();
        let outcome = match action {
            Begin(r) => {
                if next.runs[r].phase != Phase::Queued {
                    return None;
                }
                let head = next.spec.branches[&MAIN];
                next.runs[r].phase = Phase::Running;
                next.runs[r].fork = Some(head);
                next.spec.apply(Effect::Create {
                    branch: run_branch(r),
                    at: head,
                });
                Outcome::Ok
            }
            Write(r, t) => {
                let current = self.unwritten(state, r, t)?;
                let mut ops = Vec::new();
                let value = self.run_value(r, t, current.as_ref());
                put(&mut ops, t, value, expect_of(current.as_ref()));
                let effect = next.spec.commit(run_branch(r), None, &ops).ok()?.0;
                new_commit(&mut next, effect, Origin::Work(r));
                Outcome::Ok
            }
            Land(r) if state.runs[r].stalled => {
                // Woken: the server lands the run it still holds, once it wrote it all.
                if !self.wrote_all(state, r) {
                    return None;
                }
                next.runs[r].stalled = false;
                if !self.is(Mutant::UnfencedLanding) {
                    next.seen.landing_fenced = true;
                    return Some((next, Outcome::Fenced));
                }
                // Unfenced, it lands; its record, ended already, is not written over.
                let settled = next.runs[r].clone();
                let outcome = self.land(&mut next, r, false);
                next.runs[r] = settled;
                outcome
            }
            Land(r) | LandCrash(r) => {
                if !self.ready_to_land(state, r) {
                    return None;
                }
                let crash = matches!(action, LandCrash(_));
                self.land(&mut next, r, crash)
            }
            Fail(r) => {
                if next.runs[r].phase != Phase::Running {
                    return None;
                }
                next.runs[r].phase = Phase::Failed;
                Outcome::Ok
            }
            Cancel(r) => {
                if !next.runs[r].phase.is_live() {
                    return None;
                }
                next.runs[r].phase = Phase::Cancelled;
                Outcome::Ok
            }
            Promote(r) => {
                let run = &mut next.runs[r];
                if !matches!(run.phase, Phase::Failed | Phase::Cancelled) || run.promoted {
                    return None;
                }
                run.promoted = true;
                Outcome::Ok
            }
            Maintain => {
                let ended = |p| matches!(p, Phase::Failed | Phase::Cancelled);
                let prunable: Vec<usize> = (0..next.runs.len())
                    .filter(|r| {
                        ended(next.runs[*r].phase)
                            && next.spec.branches.contains_key(&run_branch(*r))
                    })
                    .collect();
                if prunable.is_empty() {
                    return None;
                }
                for r in prunable {
                    next.spec.branches.remove(&run_branch(r));
                }
                Outcome::Ok
            }
            Restart => {
                if state.up && !state.runs.iter().any(|r| r.phase.is_live()) {
                    return None;
                }
                self.recover(&mut next);
                Outcome::Ok
            }
            Stall => {
                // The race that matters: a run ready to land when its server stalls.
                if !(0..state.runs.len()).any(|r| self.ready_to_land(state, r)) {
                    return None;
                }
                let running: Vec<bool> = (next.runs.iter())
                    .map(|r| r.phase == Phase::Running)
                    .collect();
                self.recover(&mut next);
                for (r, was) in running.into_iter().enumerate() {
                    next.runs[r].stalled = was && next.runs[r].phase == Phase::Failed;
                }
                Outcome::Ok
            }
            Commit { branch, table } => {
                let current = *state.map(branch)?.get(&table)?;
                let value = client_value(state, table, current)?;
                if table == T2 {
                    next.fresh += 1;
                }
                let ops = [ROp::Put(table, value, OExpect::Is(current))];
                let effect = next.spec.commit(branch, None, &ops).ok()?.0;
                new_commit(&mut next, effect, Origin::Client);
                Outcome::Ok
            }
            Append => {
                let current = *state.map(MAIN)?.get(&T2)?;
                if Version::rows(&current) & Version::CLIENT_ROW != 0 {
                    return None;
                }
                let value = OContent {
                    version: current.version | Version::CLIENT_ROW,
                    ..current
                };
                let ops = [ROp::Put(T2, value, OExpect::Is(current))];
                let effect = next.spec.commit(MAIN, None, &ops).ok()?.0;
                new_commit(&mut next, effect, Origin::Client);
                Outcome::Ok
            }
            Fork(source) => {
                if state.spec.branches.contains_key(&DEV) || source == Source::Dev {
                    return None;
                }
                let at = self.source(state, source)?;
                if self.refused_as_sealed(state, source) {
                    next.seen.sealed_refused = true;
                    return Some((next, Outcome::Sealed));
                }
                next.spec.apply(Effect::Create { branch: DEV, at });
                Outcome::Ok
            }
            Merge(source) => {
                if source == Source::Main {
                    return None;
                }
                let from = self.source(state, source)?;
                if self.refused_as_sealed(state, source) {
                    next.seen.sealed_refused = true;
                    return Some((next, Outcome::Sealed));
                }
                let plain = Resolving {
                    on_conflict: Resolution::Fail,
                    per_key: None,
                    hook: false,
                };
                let merged =
                    state
                        .spec
                        .merge(from, MAIN, MergeStrategy::Normal, plain, false, None);
                match merged {
                    Ok(want) => applied(&mut next, want.effect, Origin::Merge),
                    Err(Reject::Conflict(_)) => Outcome::Conflict,
                    Err(_) => return None,
                }
            }
            CherryPick(r) => {
                let picked = state.last_work(r)?;
                if self.refused_as_sealed(state, Source::Work(r)) {
                    next.seen.sealed_refused = true;
                    return Some((next, Outcome::Sealed));
                }
                match state.spec.replay(picked, MAIN, false, None) {
                    Ok(effect) => applied(&mut next, effect, Origin::CherryPick { of: picked }),
                    Err(Reject::Conflict(_)) => Outcome::Conflict,
                    Err(_) => return None,
                }
            }
            DeleteDev => {
                let effect = state.spec.delete(DEV, None).ok()?;
                next.spec.apply(effect);
                Outcome::Ok
            }
            RevertRun(r) => self.revert_run(&mut next, r)?,
        };
        Some((next, outcome))
    }

    /// The table's content on run `r`'s branch when `r` runs and has not written it yet.
    fn unwritten(&self, state: &State, r: usize, t: usize) -> Option<Option<OContent>> {
        if state.runs[r].phase != Phase::Running || !self.outputs[r].contains(&t) {
            return None;
        }
        let current = state.map(run_branch(r))?.get(&t).copied();
        (!self.written_by(r, t, current.as_ref())).then_some(current)
    }

    fn ready_to_land(&self, state: &State, r: usize) -> bool {
        state.runs[r].phase == Phase::Running && self.wrote_all(state, r)
    }

    /// The run's branch holds every output it writes.
    fn wrote_all(&self, state: &State, r: usize) -> bool {
        state.map(run_branch(r)).is_some_and(|m| {
            self.outputs[r]
                .iter()
                .all(|t| self.written_by(r, *t, m.get(t)))
        })
    }

    /// The commit a source names, when there is one.
    fn source(&self, state: &State, source: Source) -> Option<usize> {
        match source {
            Source::Main => state.spec.branches.get(&MAIN).copied(),
            Source::Dev => state.spec.branches.get(&DEV).copied(),
            Source::Work(r) => state.last_work(r),
        }
    }

    /// The catalog's `check_not_sealed` on the commit a source names: only a run's own
    /// commits are sealed (the client's branches never reach one while it is sealed).
    fn refused_as_sealed(&self, state: &State, source: Source) -> bool {
        match source {
            Source::Work(r) => state.sealed(r) && !self.is(Mutant::UnsealedWork),
            Source::Main | Source::Dev => false,
        }
    }

    /// The landing rule: one commit on the target that puts every output expecting its
    /// content at the fork — except an append output whose table the target changed since
    /// by appends only, which lands merged with them (the target's table with the run's
    /// row), expecting the target's table as it is. Refused, the run fails (unless the
    /// server crashed first).
    fn land(&self, next: &mut State, r: usize, crash: bool) -> Outcome {
        let fork = next.runs[r].fork.expect("a running run forked");
        let at_fork = next.spec.commits[fork].map.clone();
        let on_target = next.map(MAIN).cloned().unwrap_or_default();
        let work = next.map(run_branch(r)).cloned().unwrap_or_default();
        let expected = |t: &usize| {
            if self.is(Mutant::BlindLanding) {
                expect_of(on_target.get(t))
            } else {
                expect_of(at_fork.get(t))
            }
        };
        let outputs = &self.outputs[r];
        let groups: Vec<&[usize]> = if self.is(Mutant::LandPerTable) {
            outputs.chunks(1).collect()
        } else {
            vec![outputs.as_slice()]
        };
        let mut outcome = Outcome::Ok;
        let mut append_refused = false;
        for group in groups {
            let mut ops = Vec::new();
            for t in group {
                if self.appends(r, *t)
                    && let (Some(before), Some(now)) = (at_fork.get(t), on_target.get(t))
                    && now != before
                {
                    if !Version::appended(before, now) && !self.is(Mutant::AppendOverReplace) {
                        append_refused = true;
                    } else {
                        let merged = if self.is(Mutant::AppendDropsRows) {
                            work[t]
                        } else {
                            OContent {
                                version: now.version | Version::rows(&work[t]),
                                ..*now
                            }
                        };
                        put(&mut ops, *t, merged, OExpect::Is(*now));
                        continue;
                    }
                }
                put(&mut ops, *t, work[t], expected(t));
            }
            match next.spec.commit(MAIN, None, &ops) {
                Ok((effect, _)) => {
                    let landing = new_commit(next, effect, Origin::Landing(r));
                    next.runs[r].landed = landing;
                }
                Err(_) => {
                    outcome = Outcome::Conflict;
                    break;
                }
            }
        }
        if crash {
            // The record still says running, and its branch is still there.
            next.runs[r].landed = None;
            next.up = false;
            return outcome;
        }
        if outcome == Outcome::Conflict {
            next.runs[r].phase = Phase::Failed;
            next.runs[r].landed = None;
            next.seen.landing_refused = true;
            next.seen.append_refused |= append_refused;
        } else {
            next.runs[r].phase = Phase::Succeeded;
            next.spec.branches.remove(&run_branch(r));
        }
        outcome
    }

    /// `recover_runs` at start: a live run whose landing commit exists succeeded (its
    /// branch goes); any other live run failed (its branch stays, sealed).
    fn recover(&self, next: &mut State) {
        next.up = true;
        for r in 0..next.runs.len() {
            let phase = next.runs[r].phase;
            if !phase.is_live() {
                continue;
            }
            if phase == Phase::Queued && self.is(Mutant::RecoverySkipsQueued) {
                next.runs[r].orphaned = true;
                continue;
            }
            let landing = if self.is(Mutant::RecoveryIgnoresLanding) {
                None
            } else {
                next.landings(r).last()
            };
            match landing {
                Some(c) => {
                    next.runs[r].phase = Phase::Succeeded;
                    next.runs[r].landed = Some(c);
                    next.spec.branches.remove(&run_branch(r));
                    next.seen.landing_recovered = true;
                }
                None => next.runs[r].phase = Phase::Failed,
            }
        }
    }

    /// Reverts a succeeded run's landing commit on its target as one commit (refused with
    /// a conflict when one of its tables changed since).
    fn revert_run(&self, next: &mut State, r: usize) -> Option<Outcome> {
        let landing = next.runs[r].landed?;
        let origin = Origin::RunRevert {
            run: r,
            of: landing,
        };
        if !self.is(Mutant::PerTableRevert) {
            return Some(match next.spec.replay(landing, MAIN, true, None) {
                Ok(effect) => applied(next, effect, origin),
                Err(Reject::Conflict(_)) => {
                    next.seen.revert_refused = true;
                    Outcome::Conflict
                }
                Err(_) => return None,
            });
        }
        // Each table on its own: revert it where it still holds the run's value.
        let before = &next.spec.commits[next.spec.commits[landing].parents[0]].map;
        let mut map = next.map(MAIN)?.clone();
        let mut reverted = false;
        for t in &self.outputs[r] {
            if map.get(t) == next.spec.commits[landing].map.get(t) {
                match before.get(t) {
                    Some(v) => map.insert(*t, *v),
                    None => map.remove(t),
                };
                reverted = true;
            }
        }
        if !reverted {
            next.seen.revert_refused = true;
            return Some(Outcome::Conflict);
        }
        let head = next.spec.branches[&MAIN];
        let effect = Effect::NewCommit {
            branch: MAIN,
            parents: vec![head],
            map,
        };
        Some(applied(next, effect, origin))
    }
}

/// Applies an effect that may make a commit, recording its origin.
fn new_commit(next: &mut State, effect: Effect, origin: Origin) -> Option<usize> {
    let c = next.spec.apply(effect)?;
    next.origins.push(origin);
    Some(c)
}

/// Applies an accepted write's effect: `Nothing` when it wrote nothing.
fn applied(next: &mut State, effect: Effect, origin: Origin) -> Outcome {
    if effect == Effect::Nothing {
        return Outcome::Nothing;
    }
    new_commit(next, effect, origin);
    Outcome::Ok
}
