//! Linearizability of the real store under concurrent threads, checked with stateright's
//! `LinearizabilityTester` against a sequential specification, in short windows (the
//! check is exponential when it rejects); and long runs checked through unique commit
//! tags: every acknowledged commit appears exactly once, in an order that respects real
//! time.
//!
//! Operations: read a branch's first-parent log, append a commit with a unique key (lands
//! by rebase), a compare-and-set commit on one shared key (`Expect::Is` / `Absent`: lands
//! or conflicts), and a normal merge of a `dev` commit (named by its tag) into `main`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use floe_commits::{
    Backend, CommitMeta, ConflictResolver, ContentKey, ContentKind, Expect, Hash, LogFilter,
    MemoryBackend, MergeKind, MergeOptions, Op, PgOptions, PostgresBackend, RefKind, RefName,
    Store, SystemClock, WriteCtx, WriteError,
};
use floe_formal_models::spec::OContent;
use parking_lot::Mutex;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

const MAIN: usize = 0;
const DEV: usize = 1;
const SHARED_ID: u32 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LOp {
    Read(usize),
    Append { branch: usize, tag: u32 },
    Cas { tag: u32, expect: Option<u32> },
    Merge { source: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LRet {
    Log(Vec<u32>),
    Ok,
    Conflict,
    Merged(MergeKind),
}

/// The sequential specification: a commit graph with tags, two branch heads, and the
/// shared key's value per commit.
#[derive(Debug, Clone)]
struct Spec {
    /// (first parent and others, tag, shared value)
    commits: Vec<(Vec<usize>, u32, Option<u32>)>,
    heads: [usize; 2],
}

impl Spec {
    fn new() -> Spec {
        Spec {
            commits: vec![(vec![], 0, None), (vec![0], 0, None)],
            heads: [1, 1],
        }
    }

    fn ancestors(&self, c: usize) -> Vec<usize> {
        let mut out = vec![c];
        let mut i = 0;
        while i < out.len() {
            for p in &self.commits[out[i]].0 {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
            i += 1;
        }
        out
    }

    fn push(&mut self, branch: usize, parents: Vec<usize>, tag: u32, shared: Option<u32>) {
        self.commits.push((parents, tag, shared));
        self.heads[branch] = self.commits.len() - 1;
    }
}

impl SequentialSpec for Spec {
    type Op = LOp;
    type Ret = LRet;

    fn invoke(&mut self, op: &LOp) -> LRet {
        match op {
            LOp::Read(b) => {
                let mut log = Vec::new();
                let mut at = Some(self.heads[*b]);
                while let Some(c) = at {
                    log.push(self.commits[c].1);
                    at = self.commits[c].0.first().copied();
                }
                LRet::Log(log)
            }
            LOp::Append { branch, tag } => {
                let head = self.heads[*branch];
                let shared = self.commits[head].2;
                self.push(*branch, vec![head], *tag, shared);
                LRet::Ok
            }
            LOp::Cas { tag, expect } => {
                let head = self.heads[MAIN];
                if self.commits[head].2 != *expect {
                    return LRet::Conflict;
                }
                self.push(MAIN, vec![head], *tag, Some(*tag));
                LRet::Ok
            }
            LOp::Merge { source } => {
                let Some(source) = self.commits.iter().rposition(|c| c.1 == *source) else {
                    return LRet::Conflict;
                };
                let head = self.heads[MAIN];
                if self.ancestors(head).contains(&source) {
                    return LRet::Merged(MergeKind::NothingToMerge);
                }
                if self.ancestors(source).contains(&head) {
                    self.heads[MAIN] = source;
                    return LRet::Merged(MergeKind::FastForward);
                }
                // dev never writes the shared key: main's value stays.
                let shared = self.commits[head].2;
                self.push(MAIN, vec![head, source], 0, shared);
                LRet::Merged(MergeKind::Merged)
            }
        }
    }
}

struct Real {
    /// One store per server: each its own caches and sequencer over one backend's data.
    stores: Vec<Store>,
    names: [RefName; 2],
    /// Tag -> hash of the `dev` commits, the merge sources.
    tags: Mutex<HashMap<u32, Hash>>,
}

/// The runtime async ref reads run on, as a server's.
fn reads_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });
    &RUNTIME
}

fn shared_value(tag: u32) -> OContent {
    OContent {
        id: SHARED_ID,
        kind: ContentKind::IcebergTable,
        version: u8::try_from(tag % 251).expect("small"),
    }
}

fn meta(tag: u32) -> CommitMeta {
    CommitMeta::new("lin", tag.to_string(), 0)
}

impl Real {
    fn new() -> Real {
        Real::on(vec![Arc::new(MemoryBackend::new())])
    }

    /// Stores over `backends`, which hold one catalog (several servers' connections to
    /// one database); the first sets the catalog up.
    fn on(backends: Vec<Arc<dyn Backend>>) -> Real {
        let stores: Vec<Store> = backends
            .into_iter()
            .map(|b| Store::open(b, Arc::new(SystemClock)).unwrap())
            .collect();
        let store = &stores[0];
        let names = [
            RefName::parse("main").unwrap(),
            RefName::parse("dev").unwrap(),
        ];
        let ctx = WriteCtx::principal("lin");
        let ns = OContent {
            id: 1,
            kind: ContentKind::Namespace,
            version: 0,
        };
        let setup = Op::Put {
            key: ContentKey::new(["a"]).unwrap(),
            content: ns.content(),
            expect: Expect::Absent,
        };
        let out = store
            .commit(
                &names[0],
                None,
                vec![setup],
                CommitMeta::new("lin", "setup", 0),
                &ctx,
            )
            .unwrap();
        store
            .create_ref(&names[1], RefKind::Branch, out.commit, &ctx)
            .unwrap();
        Real {
            stores,
            names,
            tags: Mutex::new(HashMap::new()),
        }
    }

    /// The store of the server thread `via` talks to.
    fn store(&self, via: usize) -> &Store {
        &self.stores[via % self.stores.len()]
    }

    fn invoke(&self, via: usize, op: &LOp) -> LRet {
        let ctx = WriteCtx::principal("lin");
        match op {
            LOp::Read(b) => {
                let (store, name) = (self.store(via), &self.names[*b]);
                // On PostgreSQL, the head as a server's read path gets it: without blocking,
                // in a statement other threads' reads of that server may share.
                let head = match store.read_refs_async(vec![name.clone()]) {
                    Some(read) => {
                        reads_runtime().block_on(read).unwrap()[0]
                            .as_ref()
                            .expect("the branch exists")
                            .head
                    }
                    None => store.get_ref(name).unwrap().head,
                };
                let mut from = Some(head);
                let mut log = Vec::new();
                while let Some(at) = from {
                    let page = self
                        .store(via)
                        .log(at, &LogFilter::default(), 1000)
                        .unwrap();
                    log.extend(
                        page.items
                            .iter()
                            .map(|(_, c)| c.message.parse::<u32>().unwrap_or(0)),
                    );
                    from = page.next;
                }
                LRet::Log(log)
            }
            LOp::Append { branch, tag } => {
                let put = Op::Put {
                    key: ContentKey::new(["a".to_owned(), format!("k{tag}")]).unwrap(),
                    content: OContent {
                        id: 1_000 + tag,
                        kind: ContentKind::IcebergTable,
                        version: 0,
                    }
                    .content(),
                    expect: Expect::Absent,
                };
                let out = self
                    .store(via)
                    .commit(&self.names[*branch], None, vec![put], meta(*tag), &ctx)
                    .unwrap();
                if *branch == DEV {
                    self.tags.lock().insert(*tag, out.commit);
                }
                LRet::Ok
            }
            LOp::Cas { tag, expect } => {
                let put = Op::Put {
                    key: ContentKey::new(["a", "x"]).unwrap(),
                    content: shared_value(*tag).content(),
                    expect: match expect {
                        Some(t) => Expect::Is(shared_value(*t).content().hash()),
                        None => Expect::Absent,
                    },
                };
                match self
                    .store(via)
                    .commit(&self.names[MAIN], None, vec![put], meta(*tag), &ctx)
                {
                    Ok(_) => LRet::Ok,
                    Err(WriteError::Conflict { .. }) => LRet::Conflict,
                    Err(e) => panic!("{e}"),
                }
            }
            LOp::Merge { source } => {
                let Some(hash) = self.tags.lock().get(source).copied() else {
                    return LRet::Conflict;
                };
                let options = MergeOptions {
                    meta: CommitMeta::new("lin", "0", 0),
                    ..MergeOptions::default()
                };
                let out = self
                    .store(via)
                    .merge(
                        hash,
                        &self.names[MAIN],
                        None,
                        &options,
                        &ConflictResolver,
                        &ctx,
                    )
                    .unwrap();
                LRet::Merged(out.kind)
            }
        }
    }
}

/// One window: `threads` threads run `ops` operations each against a fresh store; every
/// invocation and return is recorded in the tester in real-time order.
fn window(seed: u64, threads: usize, ops: usize) -> Result<(), String> {
    window_on(Real::new(), seed, threads, ops)
}

fn window_on(real: Real, seed: u64, threads: usize, ops: usize) -> Result<(), String> {
    let tester = Mutex::new(LinearizabilityTester::<usize, Spec>::new(Spec::new()));
    let next_tag = AtomicU64::new(1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (real, tester, next_tag) = (&real, &tester, &next_tag);
            s.spawn(move || {
                let mut x = seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut rand = move |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                let mut last_cas: Option<u32> = None;
                for _ in 0..ops {
                    let tag = u32::try_from(next_tag.fetch_add(1, Ordering::SeqCst)).unwrap();
                    let op = match rand(6) {
                        0 => LOp::Read(rand(2) as usize),
                        1 => LOp::Append { branch: MAIN, tag },
                        2 => LOp::Append { branch: DEV, tag },
                        3 | 4 => LOp::Cas {
                            tag,
                            expect: if rand(3) == 0 { None } else { last_cas },
                        },
                        _ => {
                            let known: Vec<u32> = real.tags.lock().keys().copied().collect();
                            match known.is_empty() {
                                true => LOp::Read(MAIN),
                                false => LOp::Merge {
                                    source: known[rand(known.len() as u64) as usize],
                                },
                            }
                        }
                    };
                    if let LOp::Cas { tag, .. } = op {
                        last_cas = Some(tag);
                    }
                    tester.lock().on_invoke(t, op.clone()).unwrap();
                    let ret = real.invoke(t, &op);
                    tester.lock().on_return(t, ret).unwrap();
                }
            });
        }
    });
    let tester = tester.into_inner();
    if tester.is_consistent() {
        Ok(())
    } else {
        Err(format!("not linearizable: {tester:#?}"))
    }
}

#[test]
fn short_concurrent_windows_are_linearizable() {
    for seed in 0..400u64 {
        window(seed + 1, 3, 4).unwrap_or_else(|e| panic!("window {seed}: {e}"));
    }
}

/// Two servers on one PostgreSQL catalog (`FLOE_TEST_PG`): threads alternate between
/// the two stores, each with its own pool, caches and sequencer, so the histories checked
/// are histories across servers. Reads take the async path a server's reads take
/// (`read_refs_async`, coalesced between threads reading through one store).
#[test]
fn windows_across_two_servers_on_postgres_are_linearizable() {
    for seed in 0..40u64 {
        let options = PgOptions::for_test();
        let servers: Vec<Arc<dyn Backend>> = (0..2)
            .map(|_| Arc::new(PostgresBackend::open(&options).expect("the test PostgreSQL")) as _)
            .collect();
        window_on(Real::on(servers), seed + 1, 4, 4)
            .unwrap_or_else(|e| panic!("window {seed}: {e}"));
    }
}

#[test]
fn long_runs_keep_every_acknowledged_commit_once_in_real_time_order() {
    let real = Arc::new(Real::new());
    let clock = AtomicU64::new(0);
    let events = Mutex::new(BTreeMap::<u32, (u64, u64)>::new());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (real, clock, events) = (&real, &clock, &events);
            s.spawn(move || {
                for i in 0..300u32 {
                    let tag = t * 10_000 + i + 1;
                    let invoked = clock.fetch_add(1, Ordering::SeqCst);
                    real.invoke(t as usize, &LOp::Append { branch: MAIN, tag });
                    let returned = clock.fetch_add(1, Ordering::SeqCst);
                    events.lock().insert(tag, (invoked, returned));
                }
            });
        }
    });
    let events = events.into_inner();
    let LRet::Log(log) = real.invoke(0, &LOp::Read(MAIN)) else {
        unreachable!()
    };
    // Newest first; drop the setup and root commits (tag 0).
    let order: Vec<u32> = log.into_iter().rev().filter(|t| *t != 0).collect();
    assert_eq!(order.len(), events.len(), "every acknowledged commit, once");
    let position: HashMap<u32, usize> = order.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    assert_eq!(position.len(), order.len(), "no commit twice");
    for (a, (_, a_returned)) in &events {
        for (b, (b_invoked, _)) in &events {
            if a_returned < b_invoked {
                assert!(
                    position[a] < position[b],
                    "commit {a} returned before {b} began, yet follows it"
                );
            }
        }
    }
}
