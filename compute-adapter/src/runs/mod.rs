//! Pipeline runs (DESIGN §5, §7): a project archive is planned into a DAG, executed on a
//! temporary branch `floe-run/<id>` forked from the target, and landed on the target as
//! one commit only if every node passed.
//!
//! - `archive`: the uploaded project, read into memory and checked entry by entry;
//! - `project`: the project file and typed parameters;
//! - `sql`, `python`, `plan`: planning (never runs user code): SQL models with
//!   DataFusion's parser, Python functions with the `ast` planner, then the DAG;
//! - `scheduler`: ready nodes in parallel up to a bound, stopping at the first failure;
//!   it knows nothing of what a node is;
//! - `execute`: one node (SQL on DataFusion here; Python in issue 17);
//! - `materialize`: an output written to its table on the run branch;
//! - `record`, `log`: the run's record (its `pipeline` part) and its log.
//!
//! `Runner::submit` plans in the request (a run that does not plan is a 400 and nothing
//! is forked), stores the code snapshot, records the run `queued` and starts it; the run
//! waits for one of `--max-runs` turns, forks, executes, lands, and removes its scratch
//! folder whatever happens.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use floe_catalog::deferred::Scope;
use floe_catalog::{Acceptance, Catalog, CatalogError, IdemRequest, Principal, RunKind, RunRecord};
use floe_commits::{ContentKey, Hash, RefSpec};
use parking_lot::Mutex;
use serde::Serialize;
use tracing::Instrument;

use crate::query::QueryEngine;

pub mod archive;
mod cache;
mod cancelling;
mod cgroup;
pub mod envs;
mod execute;
mod lifecycle;
mod log;
mod log_share;
mod materialize;
pub mod plan;
mod progress;
pub mod project;
pub mod python;
pub mod record;
mod runtime;
pub mod sandbox;
pub mod scheduler;
pub mod schema;
mod scratch;
pub mod sql;
pub mod worker;

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod cancel_tests;
#[cfg(test)]
mod python_tests;
#[cfg(test)]
mod test_world;

pub use archive::{ArchiveError, ProjectFiles};
pub use log::RunLog;
pub use plan::{Materialization, NodeKind, Plan};
pub use record::{Failure, NodeRecord, Pipeline, Preview, RunOptions};
pub use sandbox::Sandbox;
pub use scheduler::NodeState;
pub use scratch::clear_scratch;
use scratch::scratch_root;

use plan::PlanContext;

/// A planning error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanError {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request is wrong; nothing was recorded.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The project does not plan: every error, with file and line. Nothing was forked.
    #[error("the project does not plan: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Planning(Vec<PlanError>),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The server could not keep what the run needs (its code, its log).
    #[error("{0}")]
    Io(String),
}

/// One node of a plan, as `--plan` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNode {
    pub name: String,
    pub kind: NodeKind,
    pub file: String,
    pub line: u32,
    pub inputs: Vec<String>,
    pub materialization: Materialization,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_table: Option<String>,
}

/// The answer of `--plan`: the DAG, in the order it would run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub target: String,
    pub namespace: String,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub nodes: Vec<PlannedNode>,
}

/// What a submission became.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// `--plan`: planned only.
    Planned(PlanView),
    /// Recorded and started (its record as submitted: `queued`).
    Started(RunRecord),
}

/// How a server runs pipelines.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Where run logs, code snapshots and scratch folders live (`<data-dir>/runs`).
    pub dir: PathBuf,
    /// Runs executing at once (`--max-runs`); more wait `queued`, in order.
    pub max_runs: usize,
    /// Nodes of one run executing at once (`--run-workers`).
    pub workers: usize,
    /// Where worker environments are cached (`$FLOE_ENV_CACHE`, `envs::default_cache`).
    pub env_cache: PathBuf,
    /// A Python worker's timeout when its function sets none (`--worker-timeout`).
    pub worker_timeout: std::time::Duration,
    /// A run's deadline when it sets none, and the longest one it may set
    /// (`--run-timeout`); past it the run is cancelled.
    pub run_timeout: std::time::Duration,
    /// The bytes the results cache may hold (`--run-cache`; 0: no cache).
    pub cache_bytes: u64,
    /// How Python workers are confined (`--worker-user`); `None` where the host cannot.
    pub sandbox: Option<Sandbox>,
}

/// Where a run's secrets come from (`FLOE_SECRET_<NAME>` of the server's environment).
type SecretEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Runs pipelines over one catalog.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    engine: QueryEngine,
    config: RunnerConfig,
    turns: Arc<tokio::sync::Semaphore>,
    /// Runs waiting for a turn, in the order they were submitted (the first takes the next
    /// turn; the tasks that run them may be polled in any order).
    queue: Mutex<std::collections::VecDeque<String>>,
    /// Woken when the queue's head changes.
    queue_moved: tokio::sync::Notify,
    /// The logs of the runs this server is running (followers wait on them).
    live: Mutex<HashMap<String, Arc<RunLog>>>,
    /// How to cancel each run this server has (the reason, once cancelled).
    cancels: Mutex<HashMap<String, tokio::sync::watch::Sender<Option<String>>>>,
    /// The shares of live runs' logs for the other servers (`log_share.rs`).
    log_shares: log_share::LogShares,
    secret_env: SecretEnv,
    before_landing: Option<crate::import::LandingHook>,
    envs: envs::Environments,
    /// `<dir>/scratch`: on tmpfs (`/dev/shm`) when the host has it.
    scratch_root: PathBuf,
    /// Nodes' outputs by what they were computed from (`<dir>/cache`).
    cache: Arc<cache::ResultCache>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The tmpfs folder goes with the last handle on this runner, if no run left
        // anything in it (a stopped server's leftovers are cleared at its next start).
        if let Ok(target) = std::fs::read_link(&self.scratch_root)
            && std::fs::remove_dir(&target).is_ok()
        {
            let _ = std::fs::remove_file(&self.scratch_root);
        }
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(catalog: Catalog, engine: QueryEngine, config: RunnerConfig) -> Runner {
        // Absolute: workers run in folders of their own and read the paths they are given.
        let config = RunnerConfig {
            dir: std::path::absolute(&config.dir).unwrap_or(config.dir),
            ..config
        };
        let scratch_root = scratch_root(&config.dir);
        Runner {
            inner: Arc::new(Inner {
                catalog,
                engine,
                turns: Arc::new(tokio::sync::Semaphore::new(config.max_runs.max(1))),
                envs: envs::Environments::confined(
                    config.env_cache.clone(),
                    config.sandbox.clone(),
                ),
                scratch_root,
                cache: Arc::new(cache::ResultCache::open(
                    config.dir.join("cache"),
                    config.cache_bytes,
                )),
                config,
                live: Mutex::new(HashMap::new()),
                cancels: Mutex::new(HashMap::new()),
                log_shares: Default::default(),
                queue: Mutex::new(std::collections::VecDeque::new()),
                queue_moved: tokio::sync::Notify::new(),
                secret_env: Arc::new(|name| std::env::var(name).ok()),
                before_landing: None,
            }),
        }
    }

    /// Runs `hook` after a run's nodes and before its landing (tests race a writer there).
    pub fn with_landing_hook(self, hook: crate::import::LandingHook) -> Runner {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("configure a runner before cloning it"));
        inner.before_landing = Some(hook);
        Runner {
            inner: Arc::new(inner),
        }
    }

    /// Where run `id`'s log is.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.inner.config.dir.join("logs").join(format!("{id}.log"))
    }

    /// Where the code snapshot with BLAKE3 `hash` is.
    pub fn code_path(&self, hash: &str) -> PathBuf {
        self.inner
            .config
            .dir
            .join("code")
            .join(format!("{hash}.tar"))
    }

    fn scratch(&self, id: &str) -> PathBuf {
        self.inner.scratch_root.join(id)
    }

    /// Removes every scratch folder (at start, when no run is live: a stopped server's
    /// runs were settled as failed).
    pub fn clear_scratch(&self) {
        clear_scratch(&self.inner.config.dir);
    }

    /// The environments of this server's Python workers.
    pub fn environments(&self) -> &envs::Environments {
        &self.inner.envs
    }

    /// The live log of a run this server is running, to follow, if the principal may read
    /// the run.
    pub fn live_log(&self, principal: &Principal, id: &str) -> Option<Arc<RunLog>> {
        let log = self.inner.live.lock().get(id).cloned()?;
        matches!(self.inner.catalog.run_record(principal, id), Ok(Some(_))).then_some(log)
    }

    /// Waits until run `id` has ended and returns its record. A run of this server wakes
    /// its waiters on every log line and at its end; a run of another server is looked
    /// at every `RUN_POLL_MS`.
    pub async fn wait(&self, principal: &Principal, id: &str) -> Result<RunRecord, RunError> {
        loop {
            let log = self.inner.live.lock().get(id).cloned();
            let wake = log.as_ref().map(|l| l.wake.clone());
            let notified = wake.as_ref().map(|w| w.notified());
            let mut notified = std::pin::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                // Registered before the record is read: an end after the read still wakes us.
                n.enable();
            }
            let catalog = self.inner.catalog.clone();
            let (run, who) = (id.to_owned(), principal.clone());
            let record = reading(move || {
                catalog
                    .run_record(&who, &run)?
                    .ok_or_else(|| RunError::Catalog(CatalogError::RunNotFound(run.clone())))
            })
            .await?;
            if !record.state.is_live() {
                return Ok(record);
            }
            let poll = std::time::Duration::from_millis(crate::limits::RUN_POLL_MS);
            match notified.as_pin_mut() {
                Some(n) => {
                    let _ = tokio::time::timeout(poll, n).await;
                }
                None => tokio::time::sleep(poll).await,
            }
        }
    }

    /// Waits until run `id` is the first of the queue and a turn is free; takes it.
    async fn turn(
        &self,
        id: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
        loop {
            let moved = self.inner.queue_moved.notified();
            let mut moved = std::pin::pin!(moved);
            // Registered before the look: a move after it still wakes us.
            moved.as_mut().enable();
            if self.inner.queue.lock().front().map(String::as_str) == Some(id) {
                break;
            }
            moved.await;
        }
        let turn = self.inner.turns.clone().acquire_owned().await;
        self.leave_queue(id);
        turn
    }

    /// Takes run `id` out of the queue (it has its turn, or will not wait any more).
    fn leave_queue(&self, id: &str) {
        self.inner.queue.lock().retain(|q| q != id);
        self.inner.queue_moved.notify_waiters();
    }

    /// Plans a project and, unless `--plan`, records the run and starts it.
    pub async fn submit(
        &self,
        principal: &Principal,
        archive_bytes: Vec<u8>,
        options: RunOptions,
        idempotency: Option<IdemRequest>,
    ) -> Result<Submitted, RunError> {
        let files = archive::read(&archive_bytes)?;
        let target_text = options.target.clone().unwrap_or_else(|| "main".to_owned());
        let target = RefSpec::parse(&target_text)
            .map_err(|e| RunError::Invalid(format!("ref {target_text:?}: {e}")))?;
        let this = self.clone();
        let who = principal.clone();
        let spec = target.clone();
        let opts = options.clone();
        let landing = target_text.clone();
        let (plan, head) = reading(move || {
            let head = this.inner.catalog.resolve(&who, &spec)?.hash;
            let py = python::plan(&files).map_err(RunError::Planning)?;
            let catalog = this.inner.catalog.clone();
            let table = |key: &ContentKey| find_table(&catalog, &who, &spec, head, key);
            let secret_env = this.inner.secret_env.clone();
            // The server's secrets this run would receive (not those its submitter gave).
            let served = Mutex::new(Vec::new());
            let tracked = |name: &str| {
                let value = secret_env(name);
                if value.is_some() {
                    served.lock().push(name.to_owned());
                }
                value
            };
            let cx = PlanContext {
                namespace: opts.namespace.clone(),
                params: opts.params.clone(),
                secret_env: &tracked,
                table: &table,
            };
            let plan = plan::plan(&files, py, &cx).map_err(RunError::Planning)?;
            this.check_namespaces(&who, &spec, &plan)?;
            this.check_past_confinement(&who, &landing, &plan, &served.lock())?;
            Ok((plan, head))
        })
        .await?;
        if options.plan {
            return Ok(Submitted::Planned(plan_view(&plan, &target_text)));
        }
        let code = blake3::hash(&archive_bytes).to_hex().to_string();
        let this = self.clone();
        let who = principal.clone();
        let pipeline = Pipeline::new(&plan, code.clone(), &options);
        let source = format!(
            "run {} ({} model{})",
            plan.project.name.as_deref().unwrap_or("project"),
            plan.nodes.len(),
            if plan.nodes.len() == 1 { "" } else { "s" }
        );
        let record = store(move || {
            this.keep_code(&code, &archive_bytes)?;
            let record = this.inner.catalog.queue_run(
                &who,
                &target,
                RunKind::Run,
                source,
                Some(pipeline.to_value()),
            )?;
            if let Some(request) = &idempotency {
                // Best effort, like a recorded rejection: a retry that finds nothing runs
                // again; said in the server's log.
                match this.inner.catalog.record_acceptance(&who, request, &record.id) {
                    Ok(Acceptance::Recorded) => {}
                    Ok(Acceptance::Held) => tracing::warn!(run = %record.id, key = request.key.as_str(), "the run's Idempotency-Key holds another answer; a retry is not matched to this run"),
                    Ok(Acceptance::AcceptedFirst(_)) => {
                        // Another request under the key was accepted first (a retry that
                        // took this request's claim over on another server): that run is
                        // the key's. This one is cancelled before it starts, and the
                        // request told to retry, which answers the other run.
                        let why = "another request under its Idempotency-Key was accepted first; it never started";
                        this.inner
                            .catalog
                            .cancel_run(&who.in_run(&record.id), &record, why)?;
                        return Err(RunError::Catalog(CatalogError::Write(
                            floe_commits::WriteError::ClaimLost(request.key.as_str().to_owned()),
                        )));
                    }
                    Err(e) => tracing::warn!(run = %record.id, error = %e, "the run's Idempotency-Key could not be recorded; a retry runs again"),
                }
            }
            Ok(record)
        })
        .await?;
        let opened = RunLog::open(
            &self.log_path(&record.id),
            self.inner.catalog.clone(),
            plan.secrets(),
        );
        let log = match opened {
            Ok(log) => Arc::new(log),
            Err(e) => {
                // Recorded queued and never to start: failed at once, saying why.
                let why = format!("its log cannot be created: {e}");
                let (catalog, queued, message) =
                    (self.inner.catalog.clone(), record.clone(), why.clone());
                let executor = principal.in_run(&record.id);
                let _ = store(move || Ok(catalog.fail_run(&executor, &queued, &message)?)).await;
                return Err(RunError::Io(format!("run {} {why}", record.id)));
            }
        };
        log.line(
            log::RUN,
            "info",
            &format!(
                "queued on {target_text} at {}: {} node{}, namespace {}",
                &head.to_hex()[..12],
                plan.nodes.len(),
                if plan.nodes.len() == 1 { "" } else { "s" },
                plan.namespace
            ),
        );
        self.inner
            .live
            .lock()
            .insert(record.id.clone(), log.clone());
        let (cancel_tx, cancel) = tokio::sync::watch::channel(None);
        self.inner
            .cancels
            .lock()
            .insert(record.id.clone(), cancel_tx);
        self.deadline(&record.id, &options);
        self.cancel_requests(&record.id);
        self.share_live_log(&record.id);
        self.inner.queue.lock().push_back(record.id.clone());
        let span =
            tracing::info_span!("run", id = %record.id, kind = "run", target = %record.target);
        let this = self.clone();
        let queued = record.clone();
        let who = principal.clone();
        tokio::spawn(
            async move {
                let id = queued.id.clone();
                let run = std::panic::AssertUnwindSafe(
                    this.execute(&who, queued, plan, options, &log, cancel),
                );
                // A panic in the run (an engine's, on some statement) fails it like any
                // error: its record never stays live.
                if let Err(panic) = futures::FutureExt::catch_unwind(run).await {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let why = format!("the run failed in the server: {what}");
                    tracing::error!(run = %id, "{why}");
                    log.line(log::RUN, "error", &why);
                    let catalog = this.inner.catalog.clone();
                    let run = id.clone();
                    let executor = who.in_run(&id);
                    let _ = store(move || {
                        if let Some(record) = catalog.run_record(&executor, &run)?
                            && record.state.is_live()
                        {
                            catalog.fail_run(&executor, &record, &why)?;
                        }
                        Ok(())
                    })
                    .await;
                    scratch::remove_run_scratch(&this.scratch(&id)).await;
                    log.line(log::RUN, "info", "ended");
                    // The other servers get its log as it ended too.
                    this.share_log(&id).await;
                    this.inner.live.lock().remove(&id);
                    this.inner.cancels.lock().remove(&id);
                    this.leave_queue(&id);
                }
            }
            .instrument(span),
        );
        Ok(Submitted::Started(record))
    }

    /// Every materialized output's namespace must exist at the target's head.
    fn check_namespaces(
        &self,
        principal: &Principal,
        spec: &RefSpec,
        plan: &Plan,
    ) -> Result<(), RunError> {
        let mut errors = Vec::new();
        for node in &plan.nodes {
            if node.options.materialization == Materialization::None {
                continue;
            }
            let Some(ns) = node.output.parent() else {
                continue;
            };
            match self.inner.catalog.get_namespace(principal, spec, &ns) {
                Ok(_) => {}
                Err(CatalogError::NamespaceNotFound(_)) => errors.push(PlanError {
                    file: node.file.clone(),
                    line: Some(node.line),
                    message: format!(
                        "{} writes {}, but namespace {ns} does not exist on {spec}; create it first (floe namespace create {ns} --ref {spec})",
                        node.name, node.output
                    ),
                }),
                Err(e) => return Err(e.into()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RunError::Planning(errors))
        }
    }

    /// Removes the logs and code snapshots that no run record names any more (retention
    /// forgot their runs); see `sweep`.
    pub fn sweep(&self, principal: &Principal) -> Result<Swept, RunError> {
        sweep(&self.inner.catalog, principal, &self.inner.config.dir)
    }

    /// Keeps a code snapshot (content-addressed: written once, atomically, flushed).
    fn keep_code(&self, hash: &str, bytes: &[u8]) -> Result<(), RunError> {
        // For the other servers too, when servers share the catalog (`floe run rerun`
        // through any of them).
        self.inner
            .catalog
            .share_run_file(floe_catalog::RunFile::Code, hash, bytes)?;
        let path = self.code_path(hash);
        if let Ok(file) = std::fs::File::options().write(true).open(&path) {
            // Kept already (the same project again): young again, so a sweep running now
            // does not take it from the run about to name it.
            let _ = file.set_modified(std::time::SystemTime::now());
            return Ok(());
        }
        let io = |e: std::io::Error| RunError::Io(format!("keeping the run's code: {e}"));
        let dir = path.parent().expect("a code path has a folder");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!("{hash}.{}.tmp", self.inner.catalog.new_uuid()));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut file, bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

/// What a sweep of run files removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    pub logs: usize,
    pub code_snapshots: usize,
}

/// Removes from `dir` (`<data-dir>/runs`) the logs of runs that have no record any more,
/// and the code snapshots no record names (in the catalog too, when servers share it):
/// code snapshots and logs are kept as long as their run's record. A file younger than `RUN_FILES_GRACE_MS` stays (its run may be
/// being submitted right now).
pub fn sweep(catalog: &Catalog, principal: &Principal, dir: &Path) -> Result<Swept, RunError> {
    let mut ids = std::collections::HashSet::new();
    let mut codes = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let (runs, next) = catalog.list_runs(principal, after.as_deref(), 1_000, &|_| true)?;
        for r in &runs {
            ids.insert(r.id.clone());
            if let Some(code) = r.pipeline.as_ref().and_then(|p| p["code"].as_str()) {
                codes.insert(code.to_owned());
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    // Files are removed because their record is gone: only once that is durable.
    catalog.durable_now()?;
    let old = |path: &Path| {
        path.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_millis() >= u128::from(crate::limits::RUN_FILES_GRACE_MS))
    };
    let mut swept = Swept::default();
    let remove = |folder: &str, suffix: &str, keep: &std::collections::HashSet<String>| -> usize {
        let mut n = 0;
        let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
            return 0;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(suffix) else {
                continue;
            };
            if !keep.contains(stem)
                && old(&entry.path())
                && std::fs::remove_file(entry.path()).is_ok()
            {
                n += 1;
            }
        }
        n
    };
    swept.logs = remove("logs", ".log", &ids);
    swept.code_snapshots = remove("code", ".tar", &codes);
    // The catalog's copies too, when servers share it (shared logs go with their record).
    let grace = i64::try_from(crate::limits::RUN_FILES_GRACE_MS).unwrap_or(i64::MAX);
    swept.code_snapshots += catalog.sweep_shared_code(principal, &codes, grace)?;
    Ok(swept)
}

fn plan_view(plan: &Plan, target: &str) -> PlanView {
    let record = Pipeline::new(plan, String::new(), &RunOptions::default());
    PlanView {
        target: target.to_owned(),
        namespace: plan.namespace.to_string(),
        parameters: record.parameters,
        nodes: record
            .nodes
            .into_iter()
            .map(|n| PlannedNode {
                name: n.name,
                kind: n.kind,
                file: n.file,
                line: n.line,
                inputs: n.inputs,
                materialization: n.materialization,
                output_table: n.output_table,
            })
            .collect(),
    }
}

/// The table `key` names at `at`, matched regardless of case when it is not there as
/// written (and only one table matches).
fn find_table(
    catalog: &Catalog,
    principal: &Principal,
    spec: &RefSpec,
    at: Hash,
    key: &ContentKey,
) -> Result<Option<ContentKey>, String> {
    match catalog.load_table_at(principal, spec, at, key) {
        Ok(_) => return Ok(Some(key.clone())),
        Err(CatalogError::TableNotFound(_) | CatalogError::NamespaceNotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let Some(namespace) = key.parent() else {
        return Ok(None);
    };
    let name = key.elements().last().unwrap_or_default().to_lowercase();
    let mut found = Vec::new();
    let mut after: Option<ContentKey> = None;
    loop {
        let (_, page) = match catalog.list_tables(principal, spec, &namespace, after.as_ref(), 1000)
        {
            Ok(p) => p,
            Err(CatalogError::NamespaceNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        found.extend(
            page.items
                .iter()
                .filter(|k| k.elements().last().unwrap_or_default().to_lowercase() == name)
                .cloned(),
        );
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(if found.len() == 1 { found.pop() } else { None })
}

/// Store work that writes, off the async workers: its durability waits are awaited here,
/// parking no thread (`floe_catalog::off_thread`). Nothing irreversible happens inside
/// `f` after a write (see `floe_commits::deferred`); a failed task or durability wait is
/// an outcome unknown.
async fn store<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    off_store(Scope::Write, f).await
}

/// Store work that only reads, likewise.
async fn reading<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    off_store(Scope::Read, f).await
}

async fn off_store<T: Send + 'static>(
    scope: Scope,
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    crate::off_store(scope, f, |why| {
        RunError::Io(format!("a run task failed: {why}"))
    })
    .await
}

#[cfg(test)]
mod tests;
