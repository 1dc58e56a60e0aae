//! The API bench's work without HTTP: the fixtures (built in bulk mode before the server
//! opens the folder) and the same work as figures 1, 2 and 4 straight on a durable sled
//! store in this process, with a durability hook that counts writes per sync and times
//! each sync: what the store costs without HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_commits::sled_store::{DurabilityEvent, DurabilityHook};
use floe_commits::{
    CommitMeta, Content, ContentId, ContentKey, Expect, Op, Payload, RefKind, RefName, SledBackend,
    Store, SystemClock, TablePayload, WriteCtx,
};

use crate::support::Samples;
use crate::support::cpu::cpu_time;

fn table(id: u128, version: u64) -> Content {
    Content {
        id: ContentId::from_u128(id),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: format!(
                "file:///warehouse/ns/t{id}/metadata/{version:05}.metadata.json"
            ),
            table_uuid: [(id % 251) as u8; 16],
            snapshot_id: version as i64,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

pub struct Built {
    pub tables: Duration,
    pub history: Duration,
}

/// Builds, in bulk mode, `tables-small` (8 tables), `tables-big` (`tables` tables) and
/// `history` (`commits` commits of one table change each), flushes, and closes the store
/// so that `floe serve` can open the folder.
pub fn build_fixtures(dir: &Path, tables: u128, commits: u64) -> Built {
    let backend = Arc::new(SledBackend::open_bulk(dir).expect("a bulk-mode store"));
    let store = Store::open(backend.clone(), Arc::new(SystemClock)).expect("the store opens");
    let ctx = WriteCtx::principal("bench");
    let main = store.get_ref(&RefName::parse("main").unwrap()).unwrap();
    let ns = ContentKey::new(["ns"]).unwrap();
    let start = Instant::now();
    for (name, count) in [("tables-small", 8u128), ("tables-big", tables)] {
        let branch = RefName::parse(name).unwrap();
        store
            .create_ref(&branch, RefKind::Branch, main.head, &ctx)
            .unwrap();
        let contents = std::iter::once((
            ns.clone(),
            Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
        ))
        .chain((0..count).map(|i| (ns.child(&format!("t{i:05}")).unwrap(), table(100 + i, 0))));
        store
            .bulk_load(&branch, contents, CommitMeta::new("bench", "load", 0), &ctx)
            .unwrap();
    }
    let tables_time = start.elapsed();

    let start = Instant::now();
    let history = RefName::parse("history").unwrap();
    store
        .create_ref(&history, RefKind::Branch, main.head, &ctx)
        .unwrap();
    let create_ns = Op::Put {
        key: ns.clone(),
        content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
        expect: Expect::Absent,
    };
    store
        .commit(
            &history,
            None,
            vec![create_ns],
            CommitMeta::new("bench", "ns", 0),
            &ctx,
        )
        .unwrap();
    for i in 0..commits {
        let t = u128::from(i % 1_000);
        let op = Op::Put {
            key: ns.child(&format!("t{t:03}")).unwrap(),
            content: table(100 + t, i),
            expect: if i < 1_000 {
                Expect::Absent
            } else {
                Expect::Present
            },
        };
        store
            .commit(
                &history,
                None,
                vec![op],
                CommitMeta::new("bench", "c", 0),
                &ctx,
            )
            .unwrap();
    }
    backend.flush().expect("the fixture is flushed");
    let history_time = start.elapsed();
    drop(store);
    drop(backend);
    Built {
        tables: tables_time,
        history: history_time,
    }
}

pub struct InProcess {
    pub serial: Samples,
    /// CPU (user + system, every thread of this process) per create, serial and 64 threads.
    pub serial_cpu: Duration,
    pub many_cpu: Duration,
    pub serial_wps: f64,
    pub four: Samples,
    pub four_wps: f64,
    pub many: u64,
    pub many_rate: f64,
    pub many_wps: f64,
    pub commit: Samples,
    /// How long one group's log write + fdatasync took (durability thread), in the
    /// serial, 4-thread and 64-thread runs.
    pub syncs: [Samples; 3],
}

/// Counts writes and syncs and times each sync, to report how many writes one
/// fdatasync covers and what a sync costs.
#[derive(Debug, Default)]
struct SyncCounter {
    writes: AtomicU64,
    syncs: AtomicU64,
    started: Mutex<Option<Instant>>,
    durations: Mutex<Vec<Duration>>,
}

impl DurabilityHook for SyncCounter {
    fn event(&self, event: DurabilityEvent) {
        match event {
            DurabilityEvent::Written { .. } => {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            DurabilityEvent::SyncStarted { .. } => {
                *self.started.lock().unwrap() = Some(Instant::now());
            }
            DurabilityEvent::SyncCompleted { .. } => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                if let Some(start) = self.started.lock().unwrap().take() {
                    self.durations.lock().unwrap().push(start.elapsed());
                }
            }
            DurabilityEvent::Acknowledged { .. }
            | DurabilityEvent::Waiting { .. }
            | DurabilityEvent::IndexFlushed
            | DurabilityEvent::SegmentsRemoved => {}
        }
    }
}

impl SyncCounter {
    /// (writes, syncs) so far.
    fn read(&self) -> (u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
        )
    }
    /// Writes per sync since `before`.
    fn per_sync(&self, before: (u64, u64)) -> f64 {
        let (w, s) = self.read();
        (w - before.0) as f64 / (s - before.1).max(1) as f64
    }
    /// The sync durations recorded since the first `from`.
    fn syncs_since(&self, from: usize) -> Samples {
        Samples::new(self.durations.lock().unwrap()[from..].to_vec())
    }
    fn syncs_so_far(&self) -> usize {
        self.durations.lock().unwrap().len()
    }
}

/// The same work as figures 1, 2 and 4 straight on a durable sled store in this process:
/// what the store costs without HTTP.
pub fn in_process(dir: &Path, serial: u64, commits: u64, many: u64) -> InProcess {
    let counter = Arc::new(SyncCounter::default());
    let backend =
        Arc::new(SledBackend::open_with(dir, Some(counter.clone())).expect("a durable store"));
    let store = Arc::new(Store::open(backend.clone(), Arc::new(SystemClock)).unwrap());
    let main = RefName::parse("main").unwrap();
    let head = store.get_ref(&main).unwrap().head;
    let ctx = WriteCtx::principal("bench");
    let create = |name: String| {
        let start = Instant::now();
        store
            .create_ref(&RefName::parse(&name).unwrap(), RefKind::Branch, head, &ctx)
            .unwrap();
        start.elapsed()
    };
    let threads = |n: u64, total: u64, prefix: &str| -> (Vec<Duration>, Duration) {
        let next = AtomicU64::new(0);
        let start = Instant::now();
        let all = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                break out;
                            }
                            out.push(create(format!("{prefix}-{i}")));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        (all, start.elapsed())
    };
    let me = std::process::id();
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let cpu0 = cpu_time(me);
    let serial_samples = Samples::new((0..serial).map(|i| create(format!("s-{i}"))).collect());
    let serial_cpu = (cpu_time(me) - cpu0) / serial as u32;
    let serial_wps = counter.per_sync(before);
    let serial_syncs = counter.syncs_since(at);
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let (four, _) = threads(4, serial, "four");
    let four_wps = counter.per_sync(before);
    let four_syncs = counter.syncs_since(at);
    let (before, at) = (counter.read(), counter.syncs_so_far());
    let cpu0 = cpu_time(me);
    let (_, many_time) = threads(64, many, "many");
    let many_cpu = (cpu_time(me) - cpu0) / many as u32;
    let many_wps = counter.per_sync(before);
    let many_syncs = counter.syncs_since(at);
    let commit = Samples::new(
        (0..commits)
            .map(|i| {
                let op = Op::Put {
                    key: ContentKey::new([format!("ns{i}")]).unwrap(),
                    content: Content::namespace(
                        ContentId::from_u128(1_000 + u128::from(i)),
                        BTreeMap::new(),
                    ),
                    expect: Expect::Absent,
                };
                let start = Instant::now();
                store
                    .commit(
                        &main,
                        None,
                        vec![op],
                        CommitMeta::new("bench", "ns", 0),
                        &ctx,
                    )
                    .unwrap();
                start.elapsed()
            })
            .collect(),
    );
    let syncs = [serial_syncs, four_syncs, many_syncs];
    InProcess {
        serial: serial_samples,
        serial_cpu,
        many_cpu,
        serial_wps,
        four: Samples::new(four),
        four_wps,
        many,
        many_rate: many as f64 / many_time.as_secs_f64(),
        many_wps,
        commit,
        syncs,
    }
}
