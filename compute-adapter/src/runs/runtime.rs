//! What a run's Python nodes need before anything forks: their environments (built
//! unless cached), the project's files in the run's scratch folder, and the parameters'
//! values.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use floe_catalog::RunRecord;

use super::envs::{Env, EnvSpec};
use super::execute::PyRuntime;
use super::lifecycle::pipeline_of;
use super::plan::{self, Plan};
use super::record::RunOptions;
use super::{RunLog, Runner, log};

impl Runner {
    /// What the run's Python nodes need: their environments (built unless cached), the
    /// project's files in the scratch folder, the parameter values. `None` without Python.
    pub(super) async fn python_runtime(
        &self,
        plan: &Plan,
        options: &RunOptions,
        record: &RunRecord,
        scratch: &Path,
        log: &Arc<RunLog>,
    ) -> Result<Option<Arc<PyRuntime>>, String> {
        let functions: Vec<(usize, &plan::PyFunction)> = plan
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| match &node.body {
                plan::Body::Python(f) => Some((n, &**f)),
                plan::Body::Sql { .. } => None,
            })
            .collect();
        if functions.is_empty() {
            return Ok(None);
        }
        let mut envs: HashMap<usize, Env> = HashMap::new();
        let mut built: HashMap<String, Env> = HashMap::new();
        for (n, f) in &functions {
            let spec = match &f.environment {
                Some(spec) => spec.clone(),
                None => EnvSpec::default_for(&super::python::server_version()?),
            };
            let key = spec.key();
            let env = match built.get(&key) {
                Some(env) => env.clone(),
                None => {
                    let say: Arc<dyn Fn(&str) + Send + Sync> = {
                        let log = log.clone();
                        Arc::new(move |m: &str| log.line(log::RUN, "env", m))
                    };
                    let env = self.inner.envs.get(&spec, say).await.map_err(|e| {
                        format!(
                            "planning: the environment of {} could not be built: {e}",
                            plan.nodes[*n].name
                        )
                    })?;
                    built.insert(key, env.clone());
                    env
                }
            };
            envs.insert(*n, env);
        }
        if functions.iter().any(|(_, f)| !f.internet)
            && self.inner.config.sandbox.is_none()
            && super::worker::network_isolation().is_none()
        {
            log.line(
                log::RUN,
                "warn",
                "this host cannot cut workers off the network (no network namespaces): functions without internet_access=True run with the network",
            );
        }
        if functions.iter().any(|(_, f)| f.memory.is_some()) && !super::cgroup::available() {
            log.line(
                log::RUN,
                "warn",
                "this host offers no memory cgroup to floe: memory bounds are RLIMIT_DATA, which counts the data a worker maps rather than what it uses",
            );
        }
        let code = pipeline_of(record)
            .map(|p| p.code)
            .ok_or("the run's record has no code snapshot")?;
        let bytes = std::fs::read(self.code_path(&code))
            .map_err(|e| format!("the run's code snapshot: {e}"))?;
        let files = super::archive::read(&bytes).map_err(|e| e.to_string())?;
        let dir = scratch.join("code");
        for (path, content) in &files {
            let to = dir.join(path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("the run's code: {e}"))?;
            }
            std::fs::write(&to, content).map_err(|e| format!("the run's code: {e}"))?;
        }
        Ok(Some(Arc::new(PyRuntime {
            envs,
            scratch: scratch.to_path_buf(),
            code: dir,
            params: plan
                .params
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        serde_json::to_value(&p.value).unwrap_or_default(),
                    )
                })
                .collect(),
            timeout: self.inner.config.worker_timeout,
            strict: options.strict,
            sandbox: self.inner.config.sandbox.clone(),
        })))
    }
}
