//! The results cache: a node whose inputs and code are what they were when it last ran
//! reuses that run's output instead of executing (DESIGN §5). Its key is a BLAKE3 over
//! everything that decides the output: the code (a SQL statement with its parameters
//! substituted; a Python node's file and the project's other Python files), the
//! decorator's arguments, the environment's key, the parameters it takes, and its inputs
//! (a table's content hash at the fork, an upstream node's key). A hit skips execution
//! only: the output is checked, previewed, materialized and landed as if it had run.
//!
//! Entries live in `<runs>/cache/`: `<key>.arrow` (the output as an Arrow IPC file) and
//! `<key>.json` (rows, an expectation's answer, the run that made it), the JSON written
//! last so that an entry without it is a leftover. The cache is bounded in bytes and
//! evicts the least recently used; use is kept in the files' modification times, so the
//! order survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use floe_catalog::Principal;
use floe_commits::{ContentKey, Hash, RefSpec};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::execute::{Output, PyRuntime};
use super::plan::{Body, Node, Plan, Source};
use super::record::RunOptions;

use crate::limits::CACHE_ENTRY_SHARE_MAX as ENTRY_SHARE_MAX;

/// What an entry says beside its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub rows: u64,
    /// An expectation's answer (an expectation has no output file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The run whose node produced it.
    pub run: String,
    /// The BLAKE3 of the output file, checked as a hit copies it (a damaged entry is a
    /// miss, and goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// A hit: the entry, and its output copied to the path asked for (`None` for an
/// expectation).
#[derive(Debug)]
pub struct Hit {
    pub entry: Entry,
    pub output: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ResultCache {
    dir: PathBuf,
    bound: u64,
    index: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Per key: its bytes and when it was last used (a counter, larger is later).
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    clock: u64,
}

impl ResultCache {
    /// The cache in `dir`, holding at most `bound` bytes (0: no cache). Leftovers of an
    /// interrupted write are removed; the rest are indexed in the order they were used.
    pub fn open(dir: PathBuf, bound: u64) -> ResultCache {
        let cache = ResultCache {
            dir,
            bound,
            index: Mutex::new(Index::default()),
        };
        if bound == 0 {
            // No cache: what an earlier start kept goes.
            let _ = std::fs::remove_dir_all(&cache.dir);
            return cache;
        }
        let _ = std::fs::create_dir_all(&cache.dir);
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        let mut complete = std::collections::HashSet::new();
        let listing: Vec<PathBuf> = std::fs::read_dir(&cache.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for path in &listing {
            if path.extension().is_some_and(|e| e == "json") {
                complete.insert(stem(path));
            }
        }
        for path in &listing {
            let key = stem(path);
            let kept = complete.contains(&key)
                && path
                    .extension()
                    .is_some_and(|e| e == "json" || e == "arrow");
            if !kept {
                let _ = std::fs::remove_file(path);
                continue;
            }
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(meta) = std::fs::metadata(path)
            {
                let bytes = meta.len()
                    + std::fs::metadata(path.with_extension("arrow")).map_or(0, |m| m.len());
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((used, key, bytes));
            }
        }
        found.sort();
        {
            let mut index = cache.index.lock();
            for (_, key, bytes) in found {
                index.clock += 1;
                let clock = index.clock;
                index.entries.insert(key, (bytes, clock));
                index.total += bytes;
            }
        }
        cache.evict(None);
        cache
    }

    pub fn enabled(&self) -> bool {
        self.bound > 0
    }

    /// The bytes the cache holds.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.index.lock().total
    }

    /// The entry of `key`, its output copied to `to`; `None` when there is none (or it
    /// was evicted while being read).
    pub fn get(&self, key: &str, to: &Path) -> Option<Hit> {
        if !self.enabled() || !self.index.lock().entries.contains_key(key) {
            return None;
        }
        let meta = self.dir.join(format!("{key}.json"));
        let entry: Entry = serde_json::from_slice(&std::fs::read(&meta).ok()?).ok()?;
        let output = if entry.passed.is_some() {
            None
        } else {
            let copied = copy_hashing(&self.dir.join(format!("{key}.arrow")), to);
            if copied.is_none() || copied != entry.blake3 {
                let _ = std::fs::remove_file(to);
                self.forget(key);
                return None;
            }
            Some(to.to_path_buf())
        };
        // Used now: its file's time says so after a restart too.
        if let Ok(file) = std::fs::File::options().append(true).open(&meta) {
            let _ = file.set_modified(SystemTime::now());
        }
        let mut index = self.index.lock();
        index.clock += 1;
        let clock = index.clock;
        if let Some(e) = index.entries.get_mut(key) {
            e.1 = clock;
        }
        Some(Hit { entry, output })
    }

    /// Keeps `output` (or an expectation's answer) under `key`, then evicts the least
    /// recently used entries beyond the bound. An output larger than an eighth of the
    /// bound is not kept: it would push out most of the cache, and writing it would cost
    /// its run about as much as computing it saves the next.
    pub fn put(&self, key: &str, output: &Output, entry: &Entry) -> Result<(), String> {
        if !self.enabled() || output.held_bytes() as u64 > self.bound / ENTRY_SHARE_MAX {
            return Ok(());
        }
        let mut entry = entry.clone();
        // Two runs that computed the same output may keep it at once: each writes files of
        // its own, and the last rename wins, whole.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = |ext: &str| self.dir.join(format!("{key}.{write}.{ext}.tmp"));
        let data = self.dir.join(format!("{key}.arrow"));
        let meta = self.dir.join(format!("{key}.json"));
        let mut bytes = 0;
        if entry.passed.is_none() {
            let part = tmp("arrow");
            // On the device before its name is: a crash never leaves a torn entry.
            let written = output
                .write_ipc(&part)
                .and_then(|()| {
                    entry.blake3 =
                        Some(hash_file(&part).map_err(|e| format!("keeping the output: {e}"))?);
                    std::fs::File::open(&part)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| format!("keeping the output: {e}"))
                })
                .and_then(|()| {
                    std::fs::rename(&part, &data).map_err(|e| format!("keeping the output: {e}"))
                });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            bytes += std::fs::metadata(&data).map_or(0, |m| m.len());
        }
        let part = tmp("json");
        let text = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        let written = std::fs::write(&part, &text)
            .and_then(|()| std::fs::rename(&part, &meta))
            .map_err(|e| format!("keeping the entry: {e}"));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        bytes += text.len() as u64;
        {
            let mut index = self.index.lock();
            index.clock += 1;
            let clock = index.clock;
            if let Some((old, _)) = index.entries.insert(key.to_owned(), (bytes, clock)) {
                index.total -= old;
            }
            index.total += bytes;
        }
        self.evict(Some(key));
        Ok(())
    }

    /// Removes the least recently used entries (never `keep`) until the cache is within
    /// its bound. Files go under the lock, so a new entry of the same key written meanwhile
    /// is never the one removed.
    fn evict(&self, keep: Option<&str>) {
        let mut index = self.index.lock();
        if index.total <= self.bound {
            return;
        }
        let mut order: Vec<(u64, String, u64)> = index
            .entries
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != keep)
            .map(|(k, (bytes, used))| (*used, k.clone(), *bytes))
            .collect();
        order.sort();
        for (_, key, bytes) in order {
            if index.total <= self.bound {
                break;
            }
            index.entries.remove(&key);
            index.total -= bytes;
            self.remove_files(&key);
        }
    }

    /// Drops `key`'s entry (a damaged one).
    fn forget(&self, key: &str) {
        let mut index = self.index.lock();
        if let Some((bytes, _)) = index.entries.remove(key) {
            index.total -= bytes;
        }
        self.remove_files(key);
    }

    fn remove_files(&self, key: &str) {
        // The JSON first: a half-removed entry is a leftover, never a wrong hit.
        let _ = std::fs::remove_file(self.dir.join(format!("{key}.json")));
        let _ = std::fs::remove_file(self.dir.join(format!("{key}.arrow")));
    }
}

/// The BLAKE3 of a file, as hex.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Copies `from` to `to`, answering the BLAKE3 of what was copied.
fn copy_hashing(from: &Path, to: &Path) -> Option<String> {
    use std::io::{Read, Write};
    let mut reader = std::fs::File::open(from).ok()?;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(to).ok()?);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        writer.write_all(&buf[..n]).ok()?;
    }
    writer.flush().ok()?;
    Some(h.finalize().to_hex().to_string())
}

fn stem(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or_default()
        .to_owned()
}

/// What a node's key is made of beyond the plan: the tables' content hashes at the fork,
/// each Python node's environment key, the parameters' values and the project's code.
#[derive(Debug)]
pub struct KeyInputs<'a> {
    /// Per table input, its content hash at the fork (`None`: no table there).
    pub tables: &'a HashMap<ContentKey, Option<Hash>>,
    /// Per node index, its environment's key.
    pub environments: &'a HashMap<usize, String>,
    pub params: &'a BTreeMap<String, serde_json::Value>,
    /// A hash of every file of the project but its `.sql` files: what a Python function
    /// may import or open (`None`: unreadable, and Python nodes are not cached).
    pub code: Option<&'a str>,
}

/// Every node's cache key, in plan order (`None`: the node is not cached).
pub fn keys(plan: &Plan, inputs: &KeyInputs<'_>) -> Vec<Option<String>> {
    let mut keys: Vec<Option<String>> = Vec::with_capacity(plan.nodes.len());
    // Nodes come in a topological order: an upstream's key is known before it is read.
    for (n, node) in plan.nodes.iter().enumerate() {
        let key = node_key(n, node, inputs, &keys);
        keys.push(key);
    }
    keys
}

fn node_key(
    n: usize,
    node: &Node,
    inputs: &KeyInputs<'_>,
    upstream: &[Option<String>],
) -> Option<String> {
    let mut h = blake3::Hasher::new();
    let mut part = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("floe-run-cache", b"1");
    part("kind", format!("{:?}", node.kind).as_bytes());
    part("output", node.output.to_string().as_bytes());
    part("options", format!("{:?}", node.options).as_bytes());
    match &node.body {
        Body::Sql { statement, .. } => part("statement", statement.to_string().as_bytes()),
        Body::Python(f) => {
            if f.internet {
                // What it fetches is not among its inputs.
                return None;
            }
            part("function", format!("{f:?}").as_bytes());
            part("file", node.file.as_bytes());
            part("code", inputs.code?.as_bytes());
            part("environment", inputs.environments.get(&n)?.as_bytes());
            for (arg, name) in &f.parameters {
                let value = inputs.params.get(name)?;
                part("parameter", arg.as_bytes());
                part("value", value.to_string().as_bytes());
            }
        }
    }
    for input in &node.inputs {
        part("input", input.name.as_bytes());
        part("read", format!("{:?}", input.read).as_bytes());
        match &input.source {
            Source::Model(m) => part("model", upstream.get(*m)?.as_ref()?.as_bytes()),
            Source::Table(key) => {
                part("table", key.to_string().as_bytes());
                match inputs.tables.get(key)? {
                    Some(hash) => part("content", hash.to_hex().as_bytes()),
                    None => part("absent", b""),
                }
            }
        }
    }
    Some(h.finalize().to_hex().to_string())
}

impl super::Runner {
    /// The keys of a run's nodes (all `None` with `--no-cache`, without a cache, or when
    /// the inputs' hashes cannot be read).
    pub(super) async fn cache_keys(
        &self,
        plan: &Plan,
        options: &RunOptions,
        executor: &Principal,
        fork: Hash,
        py: Option<&PyRuntime>,
    ) -> Vec<Option<String>> {
        let none = vec![None; plan.nodes.len()];
        if options.no_cache || !self.inner.cache.enabled() {
            return none;
        }
        let mut tables: Vec<ContentKey> = plan
            .nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter_map(|i| match &i.source {
                Source::Table(k) => Some(k.clone()),
                Source::Model(_) => None,
            })
            .collect();
        tables.sort();
        tables.dedup();
        let (catalog, who, asked) = (self.inner.catalog.clone(), executor.clone(), tables.clone());
        // The fork, through the run's own branch (which its executor may read).
        let Some(at) = executor.run().and_then(|id| {
            RefSpec::parse(&format!(
                "{}{id}@{}",
                floe_commits::name::RUN_BRANCH_PREFIX,
                fork.to_hex()
            ))
            .ok()
        }) else {
            return none;
        };
        let Ok(hashes) =
            super::reading(move || Ok(catalog.content_hashes(&who, &at, &asked)?)).await
        else {
            return none;
        };
        let tables: HashMap<ContentKey, Option<Hash>> = tables.into_iter().zip(hashes).collect();
        let environments: HashMap<usize, String> = py
            .map(|p| p.envs.iter().map(|(n, e)| (*n, e.key.clone())).collect())
            .unwrap_or_default();
        let empty = BTreeMap::new();
        let params = py.map_or(&empty, |p| &p.params);
        let code = match py.map(|p| p.code.clone()) {
            Some(dir) => tokio::task::spawn_blocking(move || code_hash(&dir))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        keys(
            plan,
            &KeyInputs {
                tables: &tables,
                environments: &environments,
                params,
                code: code.as_deref(),
            },
        )
    }
}

/// A hash of every file under `code` but `.sql` files, by path (`None` if one cannot be
/// read).
fn code_hash(code: &Path) -> Option<String> {
    let mut files = Vec::new();
    let mut folders = vec![code.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).ok()?.flatten() {
            let path = entry.path();
            if entry.file_type().ok()?.is_dir() {
                folders.push(path);
            } else if path.extension().is_none_or(|e| e != "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut h = blake3::Hasher::new();
    for path in files {
        let name = path.strip_prefix(code).ok()?.to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).ok()?;
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Some(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn output(values: &[i64]) -> Output {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap();
        Output::memory(schema, vec![batch])
    }

    fn entry(rows: u64) -> Entry {
        Entry {
            rows,
            passed: None,
            run: "r1".to_owned(),
            blake3: None,
        }
    }

    fn values(path: &Path) -> Vec<i64> {
        let out = Output::file(path.to_path_buf(), 0).unwrap();
        out.batches()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn an_entry_comes_back_as_it_was_kept_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 1 << 20);
        let scratch = dir.path().join("out.arrow");
        assert!(cache.get("k1", &scratch).is_none());
        cache.put("k1", &output(&[1, 2, 3]), &entry(3)).unwrap();
        let hit = cache.get("k1", &scratch).unwrap();
        assert_eq!(hit.entry.rows, 3);
        assert_eq!(hit.entry.run, "r1");
        assert_eq!(values(hit.output.as_deref().unwrap()), vec![1, 2, 3]);
        drop(cache);
        let again = ResultCache::open(dir.path().join("cache"), 1 << 20);
        let hit = again.get("k1", &dir.path().join("again.arrow")).unwrap();
        assert_eq!(values(hit.output.as_deref().unwrap()), vec![1, 2, 3]);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_when_the_bound_is_passed() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<i64> = (0..1000).collect();
        let one = {
            let probe = ResultCache::open(dir.path().join("probe"), 1 << 30);
            probe.put("p", &output(&big), &entry(1000)).unwrap();
            probe.held()
        };
        // Room for eight entries of this size, not nine.
        let bound = one * 8 + one / 2;
        let cache = ResultCache::open(dir.path().join("cache"), bound);
        let to = dir.path().join("x.arrow");
        for k in 0..8 {
            cache
                .put(&format!("k{k}"), &output(&big), &entry(1000))
                .unwrap();
        }
        assert_eq!(cache.held(), one * 8);
        // `k0` used after the others: `k1` is now the least recently used.
        assert!(cache.get("k0", &to).is_some());
        cache.put("k8", &output(&big), &entry(1000)).unwrap();
        assert!(cache.get("k1", &to).is_none(), "k1 was evicted");
        assert!(cache.get("k0", &to).is_some());
        assert!(cache.get("k8", &to).is_some());
        assert!(cache.held() <= bound);
        assert!(!dir.path().join("cache/k1.arrow").exists());
        assert!(!dir.path().join("cache/k1.json").exists());
    }

    #[test]
    fn an_output_over_an_eighth_of_the_bound_and_a_disabled_cache_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // 8 values of 8 bytes: more than an eighth of 256 bytes.
        let tiny = ResultCache::open(dir.path().join("tiny"), 256);
        tiny.put("k", &output(&[1, 2, 3, 4, 5, 6, 7, 8]), &entry(8))
            .unwrap();
        assert!(tiny.get("k", &dir.path().join("o")).is_none());
        let off = ResultCache::open(dir.path().join("off"), 0);
        off.put("k", &output(&[1]), &entry(1)).unwrap();
        assert!(off.get("k", &dir.path().join("o")).is_none());
        assert!(!dir.path().join("off").exists());
        // Turned off, what an earlier start kept goes.
        let kept = ResultCache::open(dir.path().join("kept"), 1 << 20);
        kept.put("k", &output(&[1]), &entry(1)).unwrap();
        drop(kept);
        ResultCache::open(dir.path().join("kept"), 0);
        assert!(!dir.path().join("kept").exists());
    }

    #[test]
    fn a_damaged_entry_is_a_miss_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = ResultCache::open(root.clone(), 1 << 20);
        cache.put("k", &output(&[1, 2, 3]), &entry(3)).unwrap();
        // One byte of its body changed on disk.
        let mut bytes = std::fs::read(root.join("k.arrow")).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(root.join("k.arrow"), bytes).unwrap();
        let to = dir.path().join("o.arrow");
        assert!(cache.get("k", &to).is_none());
        assert!(!to.exists());
        assert!(!root.join("k.json").exists());
        assert_eq!(cache.held(), 0);
    }

    #[test]
    fn a_half_written_entry_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("k.arrow"), b"partial").unwrap();
        std::fs::write(root.join("j.0.json.tmp"), b"{").unwrap();
        let cache = ResultCache::open(root.clone(), 1 << 20);
        assert!(cache.get("k", &dir.path().join("o")).is_none());
        assert!(!root.join("k.arrow").exists());
        assert!(!root.join("j.0.json.tmp").exists());
        assert_eq!(cache.held(), 0);
    }

    #[test]
    fn an_expectation_keeps_its_answer_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 1 << 20);
        let e = Entry {
            rows: 0,
            passed: Some(false),
            run: "r2".to_owned(),
            blake3: None,
        };
        let empty = Output::memory(Arc::new(Schema::empty()), Vec::new());
        cache.put("e", &empty, &e).unwrap();
        let hit = cache.get("e", &dir.path().join("o")).unwrap();
        assert_eq!(hit.entry, e);
        assert!(hit.output.is_none());
        assert!(!dir.path().join("cache/e.arrow").exists());
    }
}
