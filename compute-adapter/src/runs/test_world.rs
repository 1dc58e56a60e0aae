//! The runner of the engine's tests: a real catalog and warehouse with `db.t` (ids 0..100)
//! on `main`, a runner over it, and the queries the tests ask.

use datafusion::arrow::array::RecordBatch;
use floe_catalog::RunState;
use futures::StreamExt;

use super::*;
use crate::import::tests::{fixture, ids, request};
use crate::{ImportMode, Importer, QueryLimits, QueryRequest};

pub(super) struct World {
    pub(super) f: crate::import::tests::Fixture,
    pub(super) runner: Runner,
    pub(super) engine: QueryEngine,
    pub(super) _runs: tempfile::TempDir,
}

/// The processes of this host still sleeping `time.sleep(secs)` (each test's sleepers
/// sleep a number of seconds of their own).
pub(super) fn sleepers(secs: u32) -> String {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("time.sleep\\({secs}\\)")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A runner's configuration for tests: runs in `dir`, environments in the shared cache.
pub(super) fn config(dir: &std::path::Path, max_runs: usize, workers: usize) -> RunnerConfig {
    RunnerConfig {
        dir: dir.to_owned(),
        max_runs,
        workers,
        env_cache: super::envs::default_cache(),
        worker_timeout: std::time::Duration::from_secs(600),
        run_timeout: std::time::Duration::from_secs(3600),
        cache_bytes: 64 << 20,
        sandbox: None,
    }
}

pub(super) async fn world() -> World {
    let f = fixture();
    Importer::new(f.catalog.clone())
        .run(
            &f.who,
            request(&f, Some(ImportMode::Create), ids(&f, "t.parquet", 0..100)),
        )
        .await
        .unwrap();
    let engine = QueryEngine::new(f.catalog.clone(), QueryLimits::default());
    let runs = tempfile::tempdir().unwrap();
    let runner = Runner::new(f.catalog.clone(), engine.clone(), config(runs.path(), 2, 2));
    World {
        f,
        runner,
        engine,
        _runs: runs,
    }
}

impl World {
    /// Submits a run and answers its record as submitted (`queued`).
    pub(super) async fn start(&self, archive: Vec<u8>, options: RunOptions) -> RunRecord {
        match self
            .runner
            .submit(&self.f.who, archive, options, None)
            .await
            .unwrap()
        {
            Submitted::Started(r) => r,
            Submitted::Planned(_) => panic!("not a plan"),
        }
    }

    pub(super) async fn run(
        &self,
        archive: Vec<u8>,
        options: RunOptions,
    ) -> Result<RunRecord, RunError> {
        match self
            .runner
            .submit(&self.f.who, archive, options, None)
            .await?
        {
            Submitted::Started(r) => {
                assert_eq!(r.state, RunState::Queued);
                self.runner
                    .wait(&floe_catalog::Principal::anonymous(), &r.id)
                    .await
            }
            Submitted::Planned(_) => panic!("not a plan"),
        }
    }

    /// Waits until run `id`'s log holds `text`; the log as it was then.
    pub(super) async fn until_logged(&self, id: &str, text: &str) -> String {
        let log = self
            .runner
            .live_log(&floe_catalog::Principal::anonymous(), id)
            .unwrap();
        loop {
            let wake = log.waker();
            let mut notified = std::pin::pin!(wake.notified());
            // Registered before the read: a line written after it still wakes us.
            notified.as_mut().enable();
            let now = std::fs::read_to_string(log.path()).unwrap();
            if now.contains(text) {
                return now;
            }
            notified.await;
        }
    }

    /// The batches a query answers at `spec`.
    pub(super) async fn query(&self, spec: &str, sql: &str) -> Vec<RecordBatch> {
        let answer = self
            .engine
            .run(
                &self.f.who,
                QueryRequest {
                    sql: sql.to_owned(),
                    spec: RefSpec::parse(spec).unwrap(),
                    namespace: None,
                    max_rows: None,
                    timeout: None,
                },
            )
            .await
            .unwrap();
        let batches: Vec<_> = answer.batches.collect().await;
        batches.into_iter().map(Result::unwrap).collect()
    }

    pub(super) async fn count(&self, spec: &str, table: &str) -> i64 {
        let batches = self
            .query(spec, &format!("select count(*) as n from {table}"))
            .await;
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    }

    /// The first value of a query's answer, as a float.
    pub(super) async fn scalar(&self, spec: &str, sql: &str) -> f64 {
        let batches = self.query(spec, sql).await;
        let column = datafusion::arrow::compute::cast(
            batches[0].column(0),
            &datafusion::arrow::datatypes::DataType::Float64,
        )
        .unwrap();
        column
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .unwrap()
            .value(0)
    }

    /// The first value of a query's answer, as text.
    pub(super) async fn text(&self, spec: &str, sql: &str) -> String {
        let batches = self.query(spec, sql).await;
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
    }

    /// A table's columns at `spec`.
    pub(super) async fn columns(&self, spec: &str, table: &str) -> Vec<String> {
        let batches = self
            .query(spec, &format!("select * from {table} limit 1"))
            .await;
        batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The run's branch stays, and nothing may be made from its head (it is sealed).
    pub(super) fn assert_sealed(&self, record: &RunRecord) {
        let branch = self
            .f
            .catalog
            .get_ref(&self.f.who, &record.branch())
            .unwrap();
        let copy = self.f.catalog.create_ref(
            &self.f.who,
            &floe_commits::RefName::parse("copy").unwrap(),
            floe_commits::RefKind::Branch,
            &RefSpec::parse(&branch.head.to_hex()).unwrap(),
            None,
        );
        assert!(
            matches!(copy, Err(CatalogError::RunSealed { .. })),
            "{copy:?}"
        );
    }

    pub(super) fn head(&self) -> Hash {
        self.f
            .catalog
            .resolve(&self.f.who, &self.f.main)
            .unwrap()
            .hash
    }
}
