//! The catalog's runs held to the runs model of `floe-formal-models` (its `src/runs/`):
//! every trace of the model committed there (`formal-models/testdata/runs-traces.txt`:
//! every action from every state within two actions of the start, scenarios of append
//! landings, and weighted random walks of 16 actions) is replayed against a real
//! `Catalog` — `queue_run`, `begin_run`, the executor's writes on the run branch,
//! `land_run`, `fail_run`, `cancel_run`, `promote_run`, `maintain`, `recover_runs` on a
//! store opened again, and by another server (`stall`: the server stalls past its lease
//! and another settles its runs; in memory the store is a shared one, as PostgreSQL is,
//! so runs carry owner tokens and landings are fenced on them), and a client's
//! commits, branches, merges, cherry-picks and reverts — and after every step the
//! catalog's outcome (ok, nothing, conflict, sealed) and what a caller observes (each run's
//! record and branch, the tables on `main` and `dev`) must be the model's, as the model
//! spells them.
//!
//! The traces are read as text, so that `catalog` depends on no other workspace crate than
//! `commits` (DESIGN §1; the tidy test checks dev-dependencies too). The model's `a.t1` is
//! a namespace here (its generation a `version` property): the landing rule, sealing,
//! merges and reverts treat every kind of content alike, and a namespace's content is a
//! function of its id and properties, so two writes the model calls equal are equal here
//! too. `a.t2`, which run 1 writes as an `APPEND` output and the client appends to, is a
//! real Iceberg table in a warehouse (`iceberg.rs`): its append landings go through the
//! Iceberg-aware merge. An Iceberg table's every write makes new metadata, and the model
//! gives each of the client's replaces of `a.t2` a fresh generation for that reason.
//!
//! The client's merges are key by key (`tableMerge: false`), as the model's are: the
//! Iceberg-aware merge of two branches has its own property test (`tests/table_merge/`).
//!
//! The model's `revert-run` is `Catalog::revert_run` (`floe run revert`): the run's landing
//! commit reverted as one commit, refused whole when a table it wrote changed since.

mod iceberg;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use floe_catalog::{
    Authored, Catalog, CatalogError, Landing, MergeRequest, Principal, PropertiesUpdate, Retention,
    RunKind, RunRecord, SequentialIds, TableMergeOptions, Warehouse,
};
use floe_commits::{
    Backend, ContentId, ContentKey, Hash, ManualClock, MemoryBackend, MergeKind, RefKind, RefName,
    RefSpec, SledBackend, Store, WriteCtx, WriteError,
};

const TRACES: &str = include_str!("../../../formal-models/testdata/runs-traces.txt");

/// One trace of the model: each action with the outcome and observation it expects.
#[derive(Debug)]
struct Trace<'a> {
    name: &'a str,
    steps: Vec<Step<'a>>,
}

#[derive(Debug)]
struct Step<'a> {
    action: &'a str,
    expected: &'a str,
}

/// The start's observation and the traces.
fn traces() -> (&'static str, Vec<Trace<'static>>) {
    let mut start = None;
    let mut traces: Vec<Trace<'static>> = Vec::new();
    for line in TRACES.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("trace ") {
            traces.push(Trace {
                name,
                steps: Vec::new(),
            });
        } else if let Some(observed) = line.strip_prefix("start | ") {
            start = Some(observed);
        } else {
            let (action, expected) = line.split_once(" -> ").expect("`action -> expected`");
            let trace = traces.last_mut().expect("a step belongs to a trace");
            trace.steps.push(Step { action, expected });
        }
    }
    (start.expect("a start line"), traces)
}

/// Where the store lives: memory (a restart opens a new `Store` over the same backend) or
/// sled in a folder (a restart closes it and opens the folder again).
enum Storage {
    Memory(Arc<MemoryBackend>),
    Sled(PathBuf),
}

/// A running server's store and catalog.
struct Server {
    store: Arc<Store>,
    catalog: Catalog,
}

/// The generation a run that creates an append output gives it, plus the run's number
/// (the model's `RUN_VERSION`).
const RUN_GENERATION: usize = 10;

/// A catalog and the model's run ids, branches and tables in it.
struct World {
    storage: Storage,
    /// The warehouse `a.t2` lives in (kept across restarts).
    warehouse: tempfile::TempDir,
    /// Numbers `a.t2`'s snapshots and files.
    next_id: i64,
    clock: Arc<ManualClock>,
    ids: Arc<SequentialIds>,
    /// Always there, except while a restart closes the store and opens it again.
    server: Option<Server>,
    who: Principal,
    /// Per model run: its record as its executor holds it, and the executor.
    runs: Vec<(RunRecord, Option<Principal>)>,
    /// Per model run: the tables it wrote (and which of them it appended to) and its
    /// newest commit on its branch.
    written: Vec<Vec<ContentKey>>,
    appended: Vec<Vec<ContentKey>>,
    last_work: Vec<Option<Hash>>,
    /// The run that created each table content a run created.
    creators: HashMap<ContentId, usize>,
    /// Between a `land-crash` and the `restart`.
    down: bool,
}

fn key(name: &str) -> ContentKey {
    match name {
        "t1" | "t2" => ContentKey::new(["a", name]).expect("a key"),
        other => panic!("no table {other} in the model"),
    }
}

fn spec(name: &str) -> RefSpec {
    RefSpec::parse(name).expect("a ref spec")
}

fn version(v: &str) -> PropertiesUpdate {
    PropertiesUpdate {
        updates: BTreeMap::from([("version".to_owned(), v.to_owned())]),
        removals: Vec::new(),
    }
}

/// How a catalog call ended, as the model's traces spell it.
fn refusal(e: &CatalogError) -> &'static str {
    match e {
        CatalogError::RunSealed { .. } | CatalogError::RunExpired { .. } => "sealed",
        // A stalled server's landing of a run another server settled meanwhile.
        CatalogError::Write(WriteError::Fenced(_)) => "fenced",
        // A run revert refuses a table that changed since as a conflict of its own.
        CatalogError::Write(WriteError::Conflict { .. })
        | CatalogError::RunNotRevertible { .. } => "conflict",
        other => panic!("an unexpected refusal: {other}"),
    }
}

/// A landing of an append output refused by the table merge must be refused by the
/// landing's own rule (the target changed the table beyond appends), not by one of the
/// merge's file rules that happens to agree: otherwise the replay could not tell that
/// rule from the others.
fn append_refusal(e: &CatalogError) {
    let CatalogError::Write(WriteError::Conflict { conflicts, .. }) = e else {
        return;
    };
    for c in conflicts {
        if let Some(reason) = &c.reason {
            assert_eq!(reason.rule, "target-changed-beyond-appends", "{reason:?}");
        }
    }
}

/// Opens the sled store in `dir`. Just after the previous handle was dropped, sled's own
/// file lock may still be held for a moment by its background thread ending: the open is
/// tried again until it is released (at most 10 s), as a restarted server would wait.
fn reopen(dir: &std::path::Path) -> SledBackend {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledBackend::open(dir) {
            Ok(backend) => return backend,
            Err(e)
                if e.message.contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            Err(e) => panic!("sled opens: {e:?}"),
        }
    }
}

fn open(storage: &Storage, clock: &Arc<ManualClock>) -> Arc<Store> {
    let backend: Arc<dyn Backend> = match storage {
        Storage::Memory(backend) => backend.clone(),
        Storage::Sled(dir) => Arc::new(reopen(dir)),
    };
    Arc::new(Store::open(backend, clock.clone()).expect("the store opens"))
}

fn catalog_on(store: Arc<Store>, ids: &Arc<SequentialIds>, warehouse: &Path) -> Catalog {
    let warehouse = Warehouse::open(warehouse).expect("the warehouse opens");
    Catalog::new(store)
        .with_ids(ids.clone())
        .with_warehouse(warehouse)
}

impl World {
    fn new(storage: Storage) -> World {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let ids = Arc::new(SequentialIds::new(0));
        let store = open(&storage, &clock);
        let warehouse = tempfile::tempdir().expect("a warehouse folder");
        let catalog = catalog_on(store.clone(), &ids, warehouse.path());
        let who = Principal::named("ann");
        let main = spec("main");
        let none = Authored::default();
        let a = ContentKey::new(["a"]).expect("a key");
        catalog
            .create_namespace(&who, &main, &a, BTreeMap::new(), &none, None)
            .expect("namespace a");
        let t1 = version("0").updates;
        catalog
            .create_namespace(&who, &main, &key("t1"), t1, &none, None)
            .expect("table a.t1");
        let runs = (0..2)
            .map(|r| {
                let source = format!("model run {r}");
                let record = catalog
                    .queue_run(&who, &main, RunKind::Run, source, None)
                    .expect("queued");
                (record, None)
            })
            .collect();
        World {
            storage,
            warehouse,
            next_id: 1,
            clock,
            ids,
            server: Some(Server { store, catalog }),
            who,
            runs,
            written: vec![Vec::new(); 2],
            appended: vec![Vec::new(); 2],
            last_work: vec![None; 2],
            creators: HashMap::new(),
            down: false,
        }
    }

    fn catalog(&self) -> &Catalog {
        &self.server.as_ref().expect("a server").catalog
    }

    fn store(&self) -> &Store {
        &self.server.as_ref().expect("a server").store
    }

    fn store_arc(&self) -> Arc<Store> {
        self.server.as_ref().expect("a server").store.clone()
    }

    fn run_branch(&self, r: usize) -> RefName {
        self.runs[r].0.branch()
    }

    fn branch_exists(&self, name: &RefName) -> bool {
        self.store().get_ref(name).is_ok()
    }

    /// A run's newest commit: by its branch's name while the branch exists (only the
    /// executor moves it), by hash once retention pruned it.
    fn work(&self, r: usize) -> RefSpec {
        let branch = self.run_branch(r);
        if self.branch_exists(&branch) {
            return RefSpec::Name(branch);
        }
        let hash = self.last_work[r].expect("the run wrote something");
        spec(&hash.to_hex())
    }

    fn source(&self, words: &[&str]) -> RefSpec {
        match words {
            ["main"] => spec("main"),
            ["dev"] => spec("dev"),
            ["work", r] => self.work(r.parse().expect("a run")),
            other => panic!("no source {other:?}"),
        }
    }

    /// Takes one action of the model; returns how it ended.
    fn act(&mut self, action: &str) -> &'static str {
        self.clock.advance(1);
        let words: Vec<&str> = action.split_whitespace().collect();
        let run = |i: usize| -> usize { words[i].parse().expect("a run number") };
        let none = Authored::default();
        match words.as_slice() {
            ["begin", _] => {
                let r = run(1);
                let (record, executor) = self
                    .catalog()
                    .begin_run(&self.who, &self.runs[r].0)
                    .expect("begins");
                self.runs[r] = (record, Some(executor));
                "ok"
            }
            ["write", _, table] => self.write(run(1), table),
            ["land", _] => self.land(run(1), false),
            ["land-crash", _] => self.land(run(1), true),
            ["fail", _] => {
                let record = &self.runs[run(1)].0;
                self.catalog()
                    .fail_run(&Principal::anonymous(), record, "a node failed")
                    .expect("fails");
                "ok"
            }
            ["cancel", _] => {
                let record = &self.runs[run(1)].0;
                self.catalog()
                    .cancel_run(&Principal::anonymous(), record, "cancelled")
                    .expect("cancels");
                "ok"
            }
            ["promote", _] => {
                let id = &self.runs[run(1)].0.id;
                self.catalog().promote_run(&self.who, id).expect("promotes");
                "ok"
            }
            ["maintain"] => {
                // Every ended run's branch is past a retention of 0; records stay.
                let retention = Retention {
                    run_branches_ms: 0,
                    run_records_ms: i64::MAX,
                };
                let report = self
                    .catalog()
                    .maintain(&self.who, &retention)
                    .expect("a pass");
                assert!(report.pruned_run_branches > 0, "{report:?}");
                "ok"
            }
            ["restart"] => {
                self.restart();
                "ok"
            }
            ["stall"] => {
                // This server renews no lease: to another one, it stalled past it.
                let other = catalog_on(self.store_arc(), &self.ids, self.warehouse.path())
                    .with_server_id("another");
                other
                    .recover_runs(&Principal::anonymous())
                    .expect("settles the stalled server's runs");
                "ok"
            }
            ["commit", branch, write] if write.starts_with("t2=") => {
                let who = self.who.clone();
                self.t2(&who, &spec(branch)).replace(&write["t2=".len()..]);
                "ok"
            }
            ["append", "main", "t2+=c"] => {
                let who = self.who.clone();
                self.t2(&who, &spec("main")).append("c", "");
                "ok"
            }
            ["commit", branch, write] => {
                let (table, v) = write.split_once('=').expect("table=version");
                self.catalog()
                    .update_namespace_properties(
                        &self.who,
                        &spec(branch),
                        &key(table),
                        &version(v),
                        &none,
                        None,
                    )
                    .expect("the client's write");
                "ok"
            }
            ["fork", "dev", "from", source @ ..] => {
                let dev = RefName::parse("dev").expect("a name");
                let from = self.source(source);
                match self
                    .catalog()
                    .create_ref(&self.who, &dev, RefKind::Branch, &from, None)
                {
                    Ok(_) => "ok",
                    Err(e) => refusal(&e),
                }
            }
            ["merge", source @ .., "into", "main"] => {
                let from = self.source(source);
                let request = MergeRequest {
                    tables: TableMergeOptions {
                        enabled: false,
                        ..TableMergeOptions::default()
                    },
                    ..MergeRequest::default()
                };
                match self
                    .catalog()
                    .merge(&self.who, &from, &spec("main"), &request, None)
                {
                    Ok((_, o, _)) if o.kind == MergeKind::NothingToMerge => "nothing",
                    Ok(_) => "ok",
                    Err(e) => refusal(&e),
                }
            }
            ["cherry-pick", "work", _, "onto", "main"] => {
                let picked = self.work(run(2));
                let main = spec("main");
                match self
                    .catalog()
                    .cherry_pick(&self.who, &picked, &main, None, &none, None)
                {
                    Ok(o) if !o.created => "nothing",
                    Ok(_) => "ok",
                    Err(e) => refusal(&e),
                }
            }
            ["delete", "dev"] => {
                let dev = RefName::parse("dev").expect("a name");
                self.catalog()
                    .delete_ref(&self.who, &dev, None, None)
                    .expect("deletes dev");
                "ok"
            }
            ["revert-run", _] => {
                let id = &self.runs[run(1)].0.id;
                match self.catalog().revert_run(&self.who, id, None, None) {
                    Ok(reverted) if !reverted.outcome.created => "nothing",
                    Ok(_) => "ok",
                    Err(e) => refusal(&e),
                }
            }
            other => panic!("the model has no action {other:?}"),
        }
    }

    /// `a.t2` on `at`, written by `who`.
    fn t2<'a>(&'a mut self, who: &'a Principal, at: &RefSpec) -> iceberg::Writer<'a> {
        self.next_id += 1;
        iceberg::Writer {
            catalog: &self.server.as_ref().expect("a server").catalog,
            who,
            at: at.clone(),
            key: key("t2"),
            id: self.next_id,
        }
    }

    /// The executor writes a table on its run's branch: a new one, or a new version, or
    /// (`t2+=rN`) the run's row appended.
    fn write(&mut self, r: usize, write: &str) -> &'static str {
        let branch = RefSpec::Name(self.run_branch(r));
        let executor = self.runs[r].1.clone().expect("a running run's executor");
        if let Some(table) = write.strip_prefix("t2") {
            let existed = self
                .catalog()
                .load_table(&executor, &branch, &key("t2"))
                .is_ok();
            let generation = (RUN_GENERATION + r).to_string();
            match table.strip_prefix("+=") {
                Some(row) => {
                    self.t2(&executor, &branch).append(row, &generation);
                    self.appended[r].push(key("t2"));
                }
                None => self.t2(&executor, &branch).replace(&table["=".len()..]),
            }
            if !existed {
                let (_, t) = self
                    .catalog()
                    .load_table(&executor, &branch, &key("t2"))
                    .expect("the run's new table");
                self.creators.insert(t.content_id.expect("an id"), r);
            }
            let head = self
                .store()
                .get_ref(&self.run_branch(r))
                .expect("its branch");
            self.written[r].push(key("t2"));
            self.last_work[r] = Some(head.head);
            return "ok";
        }
        let (table, v) = write.split_once('=').expect("table=version");
        let none = Authored::default();
        let exists = self
            .catalog()
            .get_namespace(&self.who, &branch, &key(table))
            .is_ok();
        let commit = if exists {
            self.catalog()
                .update_namespace_properties(
                    &executor,
                    &branch,
                    &key(table),
                    &version(v),
                    &none,
                    None,
                )
                .expect("the run's write")
                .outcome
                .commit
        } else {
            let properties = version(v).updates;
            let (outcome, created) = self
                .catalog()
                .create_namespace(&executor, &branch, &key(table), properties, &none, None)
                .expect("the run's new table");
            self.creators.insert(created.id, r);
            outcome.commit
        };
        self.written[r].push(key(table));
        self.last_work[r] = Some(commit);
        "ok"
    }

    /// Lands a run; refused, the executor fails it. With `crash`, the server dies right
    /// after the landing's commit: its record still says running, its branch is still
    /// there, and nothing else happens until the restart.
    fn land(&mut self, r: usize, crash: bool) -> &'static str {
        let (record, executor) = &self.runs[r];
        let executor = executor.clone().expect("a running run's executor");
        let record_key = format!("run/{}", record.id).into_bytes();
        let stored = self
            .store()
            .meta_get(&record_key)
            .expect("reads")
            .expect("a record");
        let branch = record.branch();
        let head = self.store().get_ref(&branch).expect("its branch").head;
        let landing = Landing {
            appends: self.appended[r].clone(),
            outputs: self.written[r].clone(),
            message: format!("land model run {r}"),
            ..Landing::default()
        };
        let landed = self
            .catalog()
            .land_run(&executor, record, &landing, &Authored::default());
        if crash {
            self.down = true;
            if landed.is_ok() {
                // What a crash between the landing commit and its bookkeeping leaves.
                self.store()
                    .meta_put(&record_key, &stored)
                    .expect("restores");
                let ctx = WriteCtx {
                    executor: true,
                    ..WriteCtx::principal(executor.name())
                };
                self.store()
                    .create_ref(&branch, RefKind::Branch, head, &ctx)
                    .expect("restores the branch");
            }
        }
        match landed {
            Ok(landed) => {
                assert_eq!(landed.bookkeeping_error, None);
                "ok"
            }
            Err(e) => {
                let refused = refusal(&e);
                if !self.appended[r].is_empty() {
                    append_refusal(&e);
                }
                if !crash {
                    self.catalog()
                        .fail_run(&Principal::anonymous(), record, "landing conflict")
                        .expect("fails");
                }
                refused
            }
        }
    }

    /// The server stops and starts again: a new store and catalog over what was stored,
    /// and recovery (`floe serve` calls `recover_runs` before anything runs).
    fn restart(&mut self) {
        // Closed first: sled's folder takes one opener at a time.
        self.server = None;
        let store = open(&self.storage, &self.clock);
        let catalog = catalog_on(store.clone(), &self.ids, self.warehouse.path());
        catalog
            .recover_runs(&Principal::anonymous())
            .expect("recovers");
        self.server = Some(Server { store, catalog });
        for run in &mut self.runs {
            run.1 = None;
        }
        self.down = false;
    }

    fn tables(&self, at: &RefSpec) -> String {
        let present: Vec<String> = ["t1", "t2"]
            .iter()
            .filter_map(|t| {
                // Absent is not found; any other error fails the replay.
                fn absent<T>(t: &str, e: CatalogError) -> Option<T> {
                    match e {
                        CatalogError::TableNotFound(_) | CatalogError::NamespaceNotFound(_) => None,
                        other => panic!("reading {t}: {other}"),
                    }
                }
                let (id, v, rows) = if *t == "t2" {
                    let loaded = self.catalog().load_table(&self.who, at, &key(t));
                    let (_, table) = loaded.map_or_else(|e| absent(t, e), Some)?;
                    let seen = iceberg::observe(&table);
                    (seen.id.expect("an id"), seen.generation, seen.rows)
                } else {
                    let got = self.catalog().get_namespace(&self.who, at, &key(t));
                    let (_, ns) = got.map_or_else(|e| absent(t, e), Some)?;
                    let v = ns.properties.get("version").expect("a version").clone();
                    (ns.id, v, Vec::new())
                };
                let by = self
                    .creators
                    .get(&id)
                    .map(|r| format!("@r{r}"))
                    .unwrap_or_default();
                let rows: String = rows.iter().map(|r| format!("+{r}")).collect();
                Some(format!("{t}:{v}{by}{rows}"))
            })
            .collect();
        format!("{{{}}}", present.join(","))
    }

    /// What a caller observes, spelled as the model spells it.
    fn observe(&self) -> String {
        let mut out = String::new();
        for (r, (record, _)) in self.runs.iter().enumerate() {
            let stored = self
                .catalog()
                .run_record(&Principal::anonymous(), &record.id)
                .expect("reads")
                .expect("a run");
            out.push_str(&format!("r{r}={}", stored.state.as_str()));
            if stored.promoted {
                out.push_str(",promoted");
            }
            let branch = record.branch();
            if self.branch_exists(&branch) {
                out.push_str(&self.tables(&RefSpec::Name(branch)));
            }
            out.push(' ');
        }
        out.push_str(&format!("main{}", self.tables(&spec("main"))));
        if self.branch_exists(&RefName::parse("dev").expect("a name")) {
            out.push_str(&format!(" dev{}", self.tables(&spec("dev"))));
        }
        if self.down {
            out.push_str(" down");
        }
        out
    }
}

/// Replays one trace in a fresh world; the first step that differs from the model fails.
fn replay(trace: &Trace<'_>, start: &str, storage: Storage) {
    let mut world = World::new(storage);
    assert_eq!(world.observe(), start, "trace {}: the start", trace.name);
    for (i, step) in trace.steps.iter().enumerate() {
        let outcome = world.act(step.action);
        let got = format!("{outcome} | {}", world.observe());
        if got != step.expected {
            let path: Vec<&str> = trace.steps[..=i].iter().map(|s| s.action).collect();
            panic!(
                "trace {} diverged at step {} `{}`:\n  model:   {}\n  catalog: {got}\npath: {path:#?}",
                trace.name, i, step.action, step.expected
            );
        }
    }
}

/// Replays the traces `keep` selects on two threads, each in a fresh world.
fn replay_all(
    keep: impl Fn(&Trace<'_>) -> bool + Sync,
    storage: impl Fn(usize) -> Storage + Sync,
) -> usize {
    let (start, traces) = traces();
    let chosen: Vec<&Trace<'_>> = traces.iter().filter(|t| keep(t)).collect();
    std::thread::scope(|s| {
        for half in 0..2 {
            let (chosen, storage) = (&chosen, &storage);
            s.spawn(move || {
                for i in (half..chosen.len()).step_by(2) {
                    replay(chosen[i], start, storage(i));
                }
            });
        }
    });
    chosen.len()
}

fn crashes(trace: &Trace<'_>) -> bool {
    trace
        .steps
        .iter()
        .any(|s| s.action == "restart" || s.action.starts_with("land-crash"))
}

/// A trace where another server settles the runs: a shared store's (sled is one
/// server's).
fn stalls(trace: &Trace<'_>) -> bool {
    trace.steps.iter().any(|s| s.action == "stall")
}

#[test]
fn every_model_trace_replays_on_the_catalog_in_memory() {
    let replayed = replay_all(
        |_| true,
        |_| Storage::Memory(Arc::new(MemoryBackend::shared())),
    );
    assert!(replayed > 300, "only {replayed} traces");
    let (_, traces) = traces();
    let stalled = traces.iter().filter(|t| stalls(t)).count();
    assert!(stalled > 3, "only {stalled} traces stall");
}

/// The traces with a crash, on sled: a restart closes the store and opens its folder again.
#[test]
fn model_traces_with_crashes_replay_on_sled() {
    let root = tempfile::tempdir().expect("a temp folder");
    let replayed = replay_all(
        |t| crashes(t) && !stalls(t),
        |i| Storage::Sled(root.path().join(i.to_string())),
    );
    assert!(replayed > 20, "only {replayed} traces");
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_every_model_trace_replays_on_sled() {
    let root = tempfile::tempdir().expect("a temp folder");
    replay_all(
        |t| !stalls(t),
        |i| Storage::Sled(root.path().join(i.to_string())),
    );
}
