//! The real store held to the version-store model: paths of the Stateright model — every
//! action from every state near the start, and long random walks — replayed against
//! `floe-commits` (in memory, on sled without flushes, on durable sled), comparing after
//! every step the outcome (success, refusal and its conflict keys), the refs, the reflog
//! footprint and every branch's map (`replay::replay_model_path`).
//!
//! The 10,000-walk variants are ignored by a plain `cargo test`; `.ci/run`'s slow phase runs
//! them (`-- --ignored`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use floe_commits::{Backend, MemoryBackend, PgOptions, PostgresBackend, SledBackend};
use floe_formal_models::replay::replay_model_path;
use floe_formal_models::version_store::{ModelAction, State, VersionStore};
use stateright::Model;

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

/// A small deterministic generator (xorshift64*), so that walks are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random walk of the model: each step one of the actions enabled in the state (reads
/// weighted down so that writes dominate).
fn walk(model: &VersionStore, rng: &mut Rng, len: usize) -> Vec<ModelAction> {
    let mut state = model.init_states().remove(0);
    let mut path = Vec::with_capacity(len);
    let mut actions = Vec::new();
    while path.len() < len {
        actions.clear();
        model.actions(&state, &mut actions);
        let a = actions[rng.below(actions.len())].clone();
        if matches!(a, ModelAction::Read { .. }) && rng.below(2) == 0 {
            continue;
        }
        if let Some(next) = model.next_state(&state, a.clone()) {
            state = next;
        }
        path.push(a);
    }
    path
}

fn seed() -> u64 {
    std::env::var("FLOE_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f10e)
}

/// `count` walks of `len` actions, on two threads (walk `i` draws from its own seed).
fn walks(count: usize, len: usize, backend: impl Fn(usize) -> Arc<dyn Backend> + Sync) {
    let model = VersionStore::default();
    std::thread::scope(|s| {
        for half in 0..2 {
            let (model, backend) = (&model, &backend);
            s.spawn(move || {
                for i in (half..count).step_by(2) {
                    let mut rng = Rng(seed() ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let path = walk(model, &mut rng, len);
                    if let Err(e) = replay_model_path(backend(i), model, &path) {
                        panic!("walk {i} diverged: {e}\npath: {path:#?}");
                    }
                }
            });
        }
    });
}

/// Every action from every state the model reaches within `depth` actions, each replayed
/// along the (breadth-first) path that reaches its state.
fn exhaustive(depth: usize) -> usize {
    let model = VersionStore::default();
    let init = model.init_states().remove(0);
    let mut seen: HashSet<State> = HashSet::from([init.clone()]);
    let mut queue: VecDeque<(State, Vec<ModelAction>)> = VecDeque::from([(init, Vec::new())]);
    let mut replayed = 0;
    let mut actions = Vec::new();
    while let Some((state, path)) = queue.pop_front() {
        actions.clear();
        model.actions(&state, &mut actions);
        for a in actions.drain(..) {
            let mut longer = path.clone();
            longer.push(a.clone());
            if let Err(e) = replay_model_path(memory(), &model, &longer) {
                panic!("path diverged: {e}\npath: {longer:#?}");
            }
            replayed += 1;
            if longer.len() < depth
                && let Some(next) = model.next_state(&state, a)
                && seen.insert(next.clone())
            {
                queue.push_back((next, longer));
            }
        }
    }
    replayed
}

#[test]
fn every_action_near_the_start_matches_the_model() {
    // Every action from every state within two actions of the start.
    let replayed = exhaustive(3);
    assert!(replayed > 1_000, "only {replayed} paths");
}

#[test]
fn random_walks_match_the_model_in_memory() {
    walks(500, 14, |_| memory());
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_random_walks_match_the_model_10000() {
    walks(10_000, 14, |_| memory());
}

#[test]
fn random_walks_match_the_model_on_sled_without_flushes() {
    let root = tempfile::tempdir().expect("a temp folder");
    walks(100, 14, |i| {
        Arc::new(SledBackend::open_bulk(&root.path().join(i.to_string())).expect("open sled"))
    });
}

/// Each walk on a catalog of its own on the test PostgreSQL (`FLOE_TEST_PG`).
#[test]
fn random_walks_match_the_model_on_postgres() {
    walks(100, 14, |_| {
        let mut options = PgOptions::for_test();
        options.pool_size = 2;
        Arc::new(PostgresBackend::open(&options).expect("the test PostgreSQL is reachable"))
    });
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_random_walks_match_the_model_on_durable_sled_200() {
    let root = tempfile::tempdir().expect("a temp folder");
    walks(200, 14, |i| {
        Arc::new(SledBackend::open(&root.path().join(i.to_string())).expect("open sled"))
    });
}
