//! A run from its turn to its end: it waits for one of the server's turns, forks, runs
//! its nodes through the scheduler (each executed, checked, previewed and materialized),
//! lands (one commit; or, with `--no-transaction`, one per output as it is written) and
//! records every outcome. Its scratch folder is removed whatever happens.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use floe_catalog::{Authored, CatalogError, Landing, Principal, RunRecord};
use floe_commits::{ContentKey, Hash, RefSpec};
use parking_lot::Mutex;

use super::execute::{self, Done, Output, Outputs, PyRuntime, Reads};
use super::materialize::Writer;
use super::plan::{self, Materialization, Plan, Source};
use super::progress::Progress;
use super::record::{self, Column, Failure, Pipeline, Preview, RunOptions};
use super::scheduler::{self, NodeState};
use super::schema::{self, Schemas};
use super::{RunError, RunLog, Runner, cache, log, store};

impl Runner {
    /// The run, from its turn to its end. Every outcome is recorded; nothing is left in
    /// its scratch folder.
    pub(super) async fn execute(
        &self,
        principal: &Principal,
        queued: RunRecord,
        plan: Plan,
        options: RunOptions,
        log: &Arc<RunLog>,
        cancel: Cancel,
    ) {
        let id = queued.id.clone();
        let scratch = self.scratch(&id);
        let turn = tokio::select! {
            turn = self.turn(&id) => Some(turn),
            why = cancelled(cancel.clone()) => {
                self.leave_queue(&id);
                self.settle_unlanded(principal, &queued, &why, Failure::Cancelled, log)
                    .await;
                None
            }
        };
        let outcome = match turn {
            None => Err(("cancelled while queued".to_owned(), Failure::Cancelled)),
            Some(Ok(_turn)) => {
                self.work(principal, queued, plan, options, log, &scratch, &cancel)
                    .await
            }
            Some(Err(_)) => Err(("the server is stopping".to_owned(), Failure::Server)),
        };
        if let Err((why, _)) = &outcome {
            log.line(log::RUN, "error", &format!("failed: {why}"));
        }
        super::scratch::remove_run_scratch(&scratch).await;
        log.line(log::RUN, "info", "ended");
        self.share_log(&id).await;
        // Followers read to the end before the run leaves the live ones.
        self.inner.live.lock().remove(&id);
        self.inner.cancels.lock().remove(&id);
        self.leave_queue(&id);
    }

    /// Forks, runs the nodes, lands. `Err` says why the run failed (it is recorded so).
    #[allow(clippy::too_many_arguments)]
    async fn work(
        &self,
        principal: &Principal,
        queued: RunRecord,
        plan: Plan,
        options: RunOptions,
        log: &Arc<RunLog>,
        scratch: &Path,
        cancel: &Cancel,
    ) -> Result<(), (String, Failure)> {
        // Environments are built before anything is forked: a run whose environment does
        // not build fails as one that does not plan.
        let prepared = tokio::select! {
            py = self.python_runtime(&plan, &options, &queued, scratch, log) => {
                py.map_err(|why| (why, Failure::Planning))
            }
            why = cancelled(cancel.clone()) => Err((why, Failure::Cancelled)),
        };
        let py = match prepared {
            Ok(py) => py,
            Err((why, failure)) => {
                self.settle_unlanded(principal, &queued, &why, failure, log)
                    .await;
                return Err((why, failure));
            }
        };
        let catalog = self.inner.catalog.clone();
        let who = principal.clone();
        let waiting = queued.clone();
        let started = store(move || Ok(catalog.begin_run(&who, &waiting)?)).await;
        let (record, executor) = match started {
            Ok(r) => r,
            Err(e) => {
                // Not forked (or its fork failed, which the catalog recorded): the record
                // says why.
                let catalog = self.inner.catalog.clone();
                let message = e.to_string();
                let executor = principal.in_run(&queued.id);
                let _ = store(move || Ok(catalog.fail_run(&executor, &queued, &message)?)).await;
                return Err((e.to_string(), Failure::Server));
            }
        };
        log.line(
            log::RUN,
            "info",
            &format!(
                "running on {} forked at {}",
                record.branch(),
                &record.fork[..12]
            ),
        );
        let state = Arc::new(Mutex::new(record.clone()));
        let result = self
            .run_nodes(
                &record, &executor, &plan, &options, log, scratch, &state, py, cancel,
            )
            .await;
        let current = state.lock().clone();
        match result {
            Ok(landed) => {
                let message = match landed {
                    Some(commit) => format!("succeeded: landed on {} as {commit}", record.target),
                    None => "succeeded: nothing to land".to_owned(),
                };
                log.line(log::RUN, "info", &message);
                Ok(())
            }
            Err((why, failure)) => {
                self.settle_unlanded(principal, &current, &why, failure, log)
                    .await;
                Err((why, failure))
            }
        }
    }

    /// Runs the plan's nodes and lands their outputs; the landing commit, if any.
    #[allow(clippy::too_many_arguments)]
    async fn run_nodes(
        &self,
        record: &RunRecord,
        executor: &Principal,
        plan: &Plan,
        options: &RunOptions,
        log: &Arc<RunLog>,
        scratch: &Path,
        state: &Arc<Mutex<RunRecord>>,
        py: Option<Arc<PyRuntime>>,
        cancel: &Cancel,
    ) -> Result<Option<Hash>, (String, Failure)> {
        let server = |e: &dyn std::fmt::Display| (e.to_string(), Failure::Server);
        std::fs::create_dir_all(scratch).map_err(|e| server(&e))?;
        let branch = RefSpec::parse(record.branch().as_str()).map_err(|e| server(&e))?;
        let fork = record.fork_hash().map_err(|e| server(&e))?;
        let catalog = self.inner.catalog.clone();
        let plan = Arc::new(plan.clone());
        let progress = Progress::start(
            state.clone(),
            catalog.clone(),
            executor.clone(),
            log.clone(),
        );
        let keys = self
            .cache_keys(&plan, options, executor, fork, py.as_deref())
            .await;
        let job = NodeJob {
            plan: plan.clone(),
            reads: Reads {
                engine: self.inner.engine.clone(),
                executor: executor.clone(),
                branch: branch.clone(),
                fork,
                namespace: plan.namespace.to_string(),
            },
            writer: Writer {
                catalog: catalog.clone(),
                executor: executor.clone(),
                branch,
                run_id: record.id.clone(),
            },
            outputs: Arc::new(Mutex::new(HashMap::new())),
            py,
            log: log.clone(),
            options: options.clone(),
            progress: progress.clone(),
            landed: Arc::new(Mutex::new(Vec::new())),
            record: record.clone(),
            readers: Arc::new(Mutex::new({
                let mut readers = vec![0usize; plan.nodes.len()];
                for node in &plan.nodes {
                    for up in node.upstream() {
                        readers[up] += 1;
                    }
                }
                readers
            })),
            keys: Arc::new(keys),
            cache: self.inner.cache.clone(),
            scratch: scratch.to_path_buf(),
        };
        let upstream: Vec<Vec<usize>> = plan.nodes.iter().map(|n| n.upstream().collect()).collect();
        let scheduled = scheduler::run(
            &upstream,
            self.inner.config.workers,
            |n| Box::pin(job.clone().run(n)),
            |event| job.moved(event),
        );
        // A cancel drops the nodes' futures: their workers' process groups are killed.
        let states = tokio::select! {
            states = scheduled => states,
            why = cancelled(cancel.clone()) => {
                for n in 0..plan.nodes.len() {
                    progress.update(n, |r| {
                        if matches!(r.state, NodeState::Pending | NodeState::Running) {
                            r.state = NodeState::Cancelled;
                        }
                    });
                }
                progress.finish().await;
                record_parts(state, &job.landed.lock());
                return Err((why, Failure::Cancelled));
            }
        };
        // Every progress save is done before the run is settled.
        progress.finish().await;
        if let Some(n) = states.iter().position(|s| *s == NodeState::Failed) {
            record_parts(state, &job.landed.lock());
            let why = pipeline_of(&state.lock())
                .and_then(|p| p.nodes[n].error.clone())
                .map(|e| e.message)
                .unwrap_or_default();
            return Err((
                format!("node {} failed: {why}", plan.nodes[n].name),
                Failure::Execution,
            ));
        }
        let current = state.lock().clone();
        let written: Vec<ContentKey> = plan
            .nodes
            .iter()
            .filter(|n| n.options.materialization != Materialization::None)
            .map(|n| n.output.clone())
            .collect();
        let executor = executor.clone();
        let parts = job.landed.lock().clone();
        if options.dry_run || written.is_empty() || options.no_transaction {
            let last = parts.last().copied();
            let mut done = current;
            if let Some(mut p) = pipeline_of(&done) {
                p.commits = parts.iter().map(Hash::to_hex).collect();
                done.pipeline = Some(p.to_value());
            }
            store(move || {
                catalog.save_run(&executor, &done)?;
                Ok(catalog.succeed_run(&executor, &done, last)?)
            })
            .await
            .map_err(|e| server(&e))?;
            return Ok(last);
        }
        let landing = Landing {
            message: format!(
                "run {} of {} ({} table{})",
                record.id,
                plan.project.name.as_deref().unwrap_or("project"),
                written.len(),
                if written.len() == 1 { "" } else { "s" }
            ),
            outputs: written,
            appends: plan.nodes.iter().filter_map(plan::Node::appended).collect(),
            inputs: table_inputs(&plan, None),
            idempotency: None,
            answer: None,
        };
        // The last moment a cancel stops it: a landing, once begun, completes.
        if let Some(why) = cancel.borrow().clone() {
            return Err((why, Failure::Cancelled));
        }
        let hook = self.inner.before_landing.clone();
        let landed = store(move || {
            if let Some(hook) = hook {
                hook(&catalog);
            }
            Ok(catalog.land_run(&executor, &current, &landing, &Authored::default())?)
        })
        .await;
        match landed {
            Ok(l) => Ok(Some(l.commit)),
            Err(RunError::Catalog(
                e @ CatalogError::Write(floe_commits::WriteError::Conflict { .. }),
            )) => Err((format!("the landing conflicts: {e}"), Failure::Conflict)),
            Err(e) => Err(server(&e)),
        }
    }
}

/// A run's cancellation: the reason, once someone cancelled it.
pub(super) type Cancel = tokio::sync::watch::Receiver<Option<String>>;

/// Resolves (with the reason) once the run is cancelled; never if it is not.
async fn cancelled(mut cancel: Cancel) -> String {
    let reason = cancel
        .wait_for(Option::is_some)
        .await
        .ok()
        .map(|r| r.clone().unwrap_or_default());
    match reason {
        Some(reason) => reason,
        // Nobody can cancel it any more.
        None => std::future::pending().await,
    }
}

impl Runner {
    /// Records a run that did not land as failed or cancelled (its last progress and its
    /// failure kind kept if the record can take them), and says so in its log and the
    /// server's if its record cannot.
    async fn settle_unlanded(
        &self,
        principal: &Principal,
        queued: &RunRecord,
        why: &str,
        failure: Failure,
        log: &Arc<RunLog>,
    ) {
        let catalog = self.inner.catalog.clone();
        let message = log.mask(why);
        let mut ended = queued.clone();
        if let Some(p) = pipeline_of(&ended) {
            let p = Pipeline {
                failure: Some(failure),
                ..p
            };
            ended.pipeline = Some(p.to_value());
        }
        // The run's own executor settles its record.
        let executor = principal.in_run(&queued.id);
        let settled = store(move || {
            if let Err(e) = catalog.save_run(&executor, &ended) {
                tracing::warn!(run = %ended.id, error = %e, "the run's failure kind could not be recorded");
            }
            if failure == Failure::Cancelled {
                Ok(catalog.cancel_run(&executor, &ended, &message)?)
            } else {
                Ok(catalog.fail_run(&executor, &ended, &message)?)
            }
        })
        .await;
        if let Err(e) = settled {
            tracing::error!(run = %queued.id, error = %e, "the run's record could not say how it ended; a restart settles it");
            log.line(
                log::RUN,
                "error",
                &format!("its record could not say how it ended ({e}); a restart settles it"),
            );
        }
    }
}

/// The commits a `--no-transaction` run landed before it failed or was cancelled, in its
/// record (they are the target's history; `floe run revert` names them).
fn record_parts(state: &Mutex<RunRecord>, parts: &[Hash]) {
    if parts.is_empty() {
        return;
    }
    let mut record = state.lock();
    if let Some(mut p) = pipeline_of(&record) {
        p.commits = parts.iter().map(Hash::to_hex).collect();
        record.pipeline = Some(p.to_value());
    }
}

pub(super) fn pipeline_of(record: &RunRecord) -> Option<Pipeline> {
    record.pipeline.as_ref().and_then(Pipeline::from_value)
}

/// One node's work, and what it moves: everything a node needs, cloned per node.
#[derive(Clone)]
struct NodeJob {
    plan: Arc<Plan>,
    reads: Reads,
    writer: Writer,
    outputs: Outputs,
    py: Option<Arc<PyRuntime>>,
    log: Arc<RunLog>,
    options: RunOptions,
    progress: Progress,
    /// Commits of a `--no-transaction` run, as its outputs land.
    landed: Arc<Mutex<Vec<Hash>>>,
    record: RunRecord,
    /// Per node, the nodes that read it and have not finished.
    readers: Arc<Mutex<Vec<usize>>>,
    /// Per node, its key in the results cache (`None`: not cached).
    keys: Arc<Vec<Option<String>>>,
    cache: Arc<cache::ResultCache>,
    scratch: std::path::PathBuf,
}

impl NodeJob {
    /// Executes node `n`, checks and previews its output, and materializes it.
    async fn run(self, n: usize) -> Result<(), String> {
        let node = &self.plan.nodes[n];
        let started = self.writer.catalog.now_ms();
        let environment = self
            .py
            .as_ref()
            .and_then(|py| py.envs.get(&n))
            .map(|e| e.key.clone());
        self.progress.update(n, |r| {
            r.state = NodeState::Running;
            r.started_ms = Some(started);
            r.environment = environment;
        });
        self.log.line(&node.name, "info", "running");
        let limits = self.reads.engine.limits();
        let key = self.keys[n].clone();
        let hit = match &key {
            Some(key) => self.reuse(n, key).await?,
            None => None,
        };
        let cached = hit.is_some();
        let done = match hit {
            Some(done) => done,
            None => self.execute(n, &limits).await?,
        };
        if let Some(passed) = done.passed {
            self.progress.update(n, |r| r.passed = Some(passed));
            if passed {
                self.log.line(&node.name, "info", "expectation passed");
            } else {
                self.log.line(
                    &node.name,
                    "warn",
                    "expectation failed (it returned False); a warning without --strict",
                );
            }
        }
        let output = done.output;
        let held = output.held_bytes();
        if held > limits.memory_bytes {
            return Err(format!(
                "its output holds {held} bytes, more than a model's output may hold in memory ({} bytes, floe serve --query-memory); filter or aggregate it",
                limits.memory_bytes
            ));
        }
        check_columns(node, &output, self.options.strict, &self.plan.schemas)?;
        let rows = output.rows;
        if done.passed.is_none() {
            self.log.line(&node.name, "info", &format!("{rows} rows"));
        }
        if self.options.preview != Preview::Off {
            self.log.line(
                &node.name,
                "preview",
                &preview(&output.batches()?, self.options.preview),
            );
        }
        // Kept while it is materialized (the two overlap); a run that could not keep it
        // still succeeds.
        let keeping = key.filter(|_| !cached && done.reusable).map(|key| {
            let (cache, output) = (self.cache.clone(), output.clone());
            let entry = cache::Entry {
                rows,
                passed: done.passed,
                run: self.record.id.clone(),
                blake3: None,
            };
            tokio::task::spawn_blocking(move || cache.put(&key, &output, &entry))
        });
        let how = node.options.materialization;
        let bytes = if how != Materialization::None && !self.options.dry_run {
            Some(self.materialize(n, &output).await?)
        } else {
            None
        };
        if let Some(keeping) = keeping
            && let Ok(Err(e)) = keeping.await
        {
            self.log.line(
                &node.name,
                "warn",
                &format!("its output could not be cached: {e}"),
            );
        }
        let schema: Vec<Column> = output
            .schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                kind: f.data_type().to_string(),
            })
            .collect();
        {
            // Kept while a node still reads it; each input read for the last time goes.
            let mut outputs = self.outputs.lock();
            let mut readers = self.readers.lock();
            for up in node.upstream() {
                readers[up] = readers[up].saturating_sub(1);
                if readers[up] == 0
                    && let Some(done) = outputs.remove(&up)
                {
                    done.discard();
                }
            }
            if readers[n] > 0 {
                outputs.insert(n, output);
            } else {
                output.discard();
            }
        }
        let finished = self.writer.catalog.now_ms();
        let dry_run = self.options.dry_run;
        self.progress.update(n, |r| {
            r.rows = Some(rows);
            r.bytes = bytes;
            r.finished_ms = Some(finished);
            if dry_run {
                r.schema = Some(schema);
            }
        });
        Ok(())
    }

    /// Executes node `n` (a SQL model within the query timeout).
    async fn execute(&self, n: usize, limits: &crate::query::QueryLimits) -> Result<Done, String> {
        let node = &self.plan.nodes[n];
        let executed = execute::run(
            n,
            node,
            &self.reads,
            &self.outputs,
            self.py.as_deref(),
            &self.log,
        );
        if node.kind == plan::NodeKind::Sql {
            tokio::time::timeout(limits.timeout, executed)
                .await
                .map_err(|_| {
                    format!(
                        "it ran longer than a model may ({:?}, floe serve --query-timeout)",
                        limits.timeout
                    )
                })?
        } else {
            // A worker keeps its own time (`@resources(timeout=)`, `--worker-timeout`).
            executed.await
        }
    }

    /// Node `n`'s output from the results cache, if an earlier run computed it from the
    /// same code and inputs (an entry that cannot be read is a miss).
    async fn reuse(&self, n: usize, key: &str) -> Result<Option<Done>, String> {
        let node = &self.plan.nodes[n];
        let (cache, key) = (self.cache.clone(), key.to_owned());
        let to = self.scratch.join(format!("cached-{n}.arrow"));
        let Ok(Some(hit)) = tokio::task::spawn_blocking(move || cache.get(&key, &to)).await else {
            return Ok(None);
        };
        let output = match &hit.output {
            Some(path) => match Output::file(path.clone(), hit.entry.rows) {
                Ok(o) => o,
                Err(_) => return Ok(None),
            },
            None => Output::memory(Arc::new(Schema::empty()), Vec::new()),
        };
        let from = hit.entry.run.clone();
        self.log.line(
            &node.name,
            "info",
            &format!("cached: the output of run {from}"),
        );
        self.progress.update(n, |r| {
            r.cached = true;
            r.cached_from = Some(from);
        });
        if hit.entry.passed == Some(false) && self.options.strict {
            return Err(format!(
                "expectation {} failed: it returned False (--strict)",
                node.name
            ));
        }
        Ok(Some(Done {
            output,
            passed: hit.entry.passed,
            reusable: true,
        }))
    }

    /// Writes node `n`'s output to its table (and with `--no-transaction` lands it);
    /// returns the bytes written.
    async fn materialize(&self, n: usize, output: &Output) -> Result<u64, String> {
        let node = &self.plan.nodes[n];
        let how = node.options.materialization;
        let written = self
            .writer
            .materialize(
                &node.output,
                how,
                &node.options.partitioned_by,
                node.options.overwrite_filter.as_deref(),
                output.schema.clone(),
                output.batches()?,
            )
            .await?;
        self.log.line(
            &node.name,
            "info",
            &format!(
                "{how:?} {} ({} rows, {} bytes, snapshot {})",
                node.output, written.rows, written.bytes, written.snapshot_id
            ),
        );
        if self.options.no_transaction {
            let landing = Landing {
                outputs: vec![node.output.clone()],
                appends: node.appended().into_iter().collect(),
                inputs: table_inputs(&self.plan, Some(n)),
                message: format!("run {}: {} ({})", self.record.id, node.name, node.output),
                idempotency: None,
                answer: None,
            };
            let (catalog, executor, record) = (
                self.writer.catalog.clone(),
                self.writer.executor.clone(),
                self.record.clone(),
            );
            let commit = store(move || {
                Ok(catalog.land_run_part(&executor, &record, &landing, &Authored::default())?)
            })
            .await
            .map_err(|e| e.to_string())?;
            self.log.line(
                &node.name,
                "info",
                &format!("landed {} as {commit}", node.output),
            );
            self.landed.lock().push(commit);
        }
        Ok(written.bytes)
    }

    /// What the scheduler says of a node, in its record and the log.
    fn moved(&self, event: scheduler::Event) {
        let name = |n: usize| self.plan.nodes[n].name.clone();
        match event {
            scheduler::Event::Started(_) => {}
            scheduler::Event::Succeeded(n) => {
                self.progress.update(n, |r| r.state = NodeState::Succeeded);
                self.log.line(&name(n), "info", "succeeded");
            }
            scheduler::Event::Failed(n, why) => {
                let finished = self.writer.catalog.now_ms();
                let why = self.log.mask(&why);
                // What it ran as written: its parameters (secrets among them) not in it.
                let excerpt = match &self.plan.nodes[n].body {
                    plan::Body::Sql { text, .. } => Some(record::excerpt(&self.log.mask(text))),
                    plan::Body::Python(f) => Some(format!("def {}(...)", f.function)),
                };
                self.log.line(&name(n), "error", &format!("failed: {why}"));
                self.progress.update(n, |r| {
                    r.state = NodeState::Failed;
                    r.finished_ms = Some(finished);
                    r.error = Some(record::NodeError {
                        message: record::cut(&why),
                        excerpt,
                    });
                });
            }
            scheduler::Event::Skipped(n) => {
                self.progress.update(n, |r| r.state = NodeState::Skipped);
                self.log
                    .line(&name(n), "info", "skipped: an earlier node failed");
            }
        }
    }
}

/// The catalog tables the run reads (of node `only`, or of every node).
fn table_inputs(plan: &Plan, only: Option<usize>) -> Vec<ContentKey> {
    let mut keys: Vec<ContentKey> = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o == *i))
        .flat_map(|(_, n)| n.inputs.iter())
        .filter_map(|i| match &i.source {
            Source::Table(k) => Some(k.clone()),
            Source::Model(_) => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// With `--strict`, an output whose columns differ from those declared (the `columns`
/// argument, or the output schema class) fails the node.
fn check_columns(
    node: &plan::Node,
    output: &Output,
    strict: bool,
    schemas: &Schemas,
) -> Result<(), String> {
    if !strict || node.kind == plan::NodeKind::Expectation {
        return Ok(());
    }
    if let Some(class) = &node.options.output_schema
        && let Some(declared) = schemas.columns(class)
    {
        let found = schema::differences(&output.schema, &declared, class);
        if !found.is_empty() {
            return Err(format!(
                "its output does not match {class} (--strict): {}",
                found.join("; ")
            ));
        }
    }
    let Some(declared) = &node.options.columns else {
        return Ok(());
    };
    let actual: Vec<&str> = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut want: Vec<&str> = declared.iter().map(String::as_str).collect();
    let mut got = actual.clone();
    want.sort_unstable();
    got.sort_unstable();
    if want == got {
        return Ok(());
    }
    Err(format!(
        "its output has columns {} but it declares {} (--strict)",
        actual.join(", "),
        declared.join(", ")
    ))
}

/// A few rows of an output, as a table.
fn preview(batches: &[RecordBatch], how: Preview) -> String {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let n = crate::limits::PREVIEW_ROWS.min(total);
    let start = match how {
        Preview::Tail => total - n,
        _ => 0,
    };
    let mut rows = Vec::new();
    let mut skip = start;
    let mut left = n;
    for b in batches {
        if left == 0 {
            break;
        }
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        let take = left.min(b.num_rows() - skip);
        rows.push(b.slice(skip, take));
        skip = 0;
        left -= take;
    }
    pretty_format_batches(&rows)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
