//! The crash test of the sled backend (issue 3): a child process commits in a loop
//! (several threads, multi-key commits, merges) and reports each acknowledged commit on
//! stdout; the parent SIGKILLs it at a random moment, reopens the store, and checks that
//! - the store opens without error;
//! - every acknowledged commit is reachable from its branch;
//! - every ref points at a complete commit (its whole index reads back);
//! - every multi-key commit is all-or-nothing (its keys carry one marker, or none).
//!
//! This file is its own test binary without the libtest harness: the same executable is
//! the parent and, with `FLOE_CRASH_CHILD` set, the child. A slow test: it runs only with
//! `FLOE_SLOW` set (50 cycles; `FLOE_CRASH_CYCLES=1000` for the long run).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_commits::*;

const THREADS: u64 = 4;
/// Keys written together by one commit; all carry the commit's marker.
const GROUP: u64 = 3;

fn main() {
    if let Ok(dir) = std::env::var("FLOE_CRASH_CHILD") {
        child(Path::new(&dir));
        return;
    }
    if std::env::var_os("FLOE_SLOW").is_none() {
        println!("crash: skipped (set FLOE_SLOW=1 to run)");
        println!("0 passed, 0 failed");
        return;
    }
    let cycles: u64 = std::env::var("FLOE_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut acknowledged: Vec<(String, Hash)> = Vec::new();
    let started = Instant::now();
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(30 + seed % 400);
        acknowledged.extend(run_child(dir.path(), cycle, run_for));
        if let Err(e) = check(dir.path(), &acknowledged) {
            println!("crash: cycle {cycle} after {run_for:?}: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    }
    println!(
        "crash: {cycles} SIGKILL cycles, {} acknowledged commits all present, in {:.1?}",
        acknowledged.len(),
        started.elapsed()
    );
    println!("1 passed, 0 failed");
}

/// Runs the writer for about `run_for`, SIGKILLs it, and returns what it acknowledged.
fn run_child(dir: &Path, cycle: u64, run_for: Duration) -> Vec<(String, Hash)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("FLOE_CRASH_CHILD", dir)
        .env("FLOE_CRASH_CYCLE", cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the writer starts");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split(' ');
            if let (Some("ack"), Some(branch), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            {
                acks.push((branch.to_owned(), Hash::parse(hash).expect("a full hash")));
            }
        }
        acks
    });
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL the writer");
    child.wait().unwrap();
    // The pipe closes with the process: every line it printed is read.
    reader.join().unwrap()
}

/// Reopens the store and checks every promise.
fn check(dir: &Path, acknowledged: &[(String, Hash)]) -> Result<(), String> {
    let backend =
        Arc::new(SledBackend::open(dir).map_err(|e| format!("the store does not open: {e}"))?);
    let store =
        Store::open(backend, Arc::new(SystemClock)).map_err(|e| format!("init failed: {e}"))?;
    // Every commit reachable from each branch, walked once per check (not once per
    // acknowledged commit, which grows quadratically over the cycles).
    let mut reachable: BTreeMap<String, std::collections::HashSet<Hash>> = BTreeMap::new();
    for (branch, hash) in acknowledged {
        if !reachable.contains_key(branch) {
            let head = store
                .get_ref(&RefName::parse(branch).unwrap())
                .map_err(|e| format!("branch {branch} of an acknowledged commit is gone: {e}"))?
                .head;
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![head];
            while let Some(c) = stack.pop() {
                if seen.insert(c) {
                    let commit = store
                        .commit_object(&c)
                        .map_err(|e| format!("{branch}: commit {c} does not read back: {e}"))?;
                    stack.extend(commit.parents.iter().copied());
                }
            }
            reachable.insert(branch.clone(), seen);
        }
        if !reachable[branch].contains(hash) {
            return Err(format!("acknowledged commit {hash} is not in {branch}"));
        }
    }
    let refs = store
        .list_refs(None, None, 1000)
        .map_err(|e| e.to_string())?;
    for (name, record) in refs.items {
        let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut after: Option<ContentKey> = None;
        loop {
            let page = store
                .entries(record.head, None, after.as_ref(), 1000)
                .map_err(|e| {
                    format!("{name} points at an incomplete commit {}: {e}", record.head)
                })?;
            let keys: Vec<ContentKey> = page.items.iter().map(|e| e.key.clone()).collect();
            let contents = store
                .get_contents(record.head, &keys)
                .map_err(|e| e.to_string())?;
            for (key, content) in keys.iter().zip(contents) {
                let Some((_, content)) = content else {
                    return Err(format!("{key} lists but does not load"));
                };
                if let Payload::IcebergTable(t) = content.payload {
                    // Keys `ns.g<group>_<member>`: one group per writer slot.
                    let group = key.name().split('_').next().unwrap_or_default().to_owned();
                    groups.entry(group).or_default().push(t.snapshot_id);
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        for (group, markers) in groups {
            if markers.len() as u64 != GROUP || markers.iter().any(|m| *m != markers[0]) {
                return Err(format!(
                    "{name}: commit group {group} is partial: markers {markers:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The writer: threads commit groups of keys on their own branch and on `main`, and merge
/// their branch into `main` now and then; each acknowledged commit is printed.
fn child(dir: &Path) {
    // Small log segments: the writer seals segments and checkpoints (flushes sled,
    // removes segments) many times a cycle, so kills land in the middle of both.
    let backend = Arc::new(
        SledBackend::open_with_segment_bytes(dir, 64 * 1024).expect("the writer opens the store"),
    );
    let store = Arc::new(Store::open(backend, Arc::new(SystemClock)).expect("init"));
    let cycle: u64 = std::env::var("FLOE_CRASH_CYCLE").unwrap().parse().unwrap();
    let ctx = WriteCtx::principal("crash");
    let main = RefName::parse("main").unwrap();
    let ns = ContentKey::new(["ns"]).unwrap();
    let _ = store.commit(
        &main,
        None,
        vec![Op::Put {
            key: ns.clone(),
            content: Content::namespace(ContentId::from_u128(1), BTreeMap::new()),
            expect: Expect::Absent,
        }],
        CommitMeta::new("crash", "ns", 0),
        &ctx,
    );
    let marker = Arc::new(AtomicU64::new((cycle + 1) << 32));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, marker, ctx, main) =
                (store.clone(), marker.clone(), ctx.clone(), main.clone());
            std::thread::spawn(move || {
                let branch = RefName::parse(&format!("w{t}")).unwrap();
                let head = store.get_ref(&main).unwrap().head;
                let _ = store.create_ref(&branch, RefKind::Branch, head, &ctx);
                for i in 0u64.. {
                    let m = marker.fetch_add(1, Ordering::SeqCst) as i64;
                    // Each thread rewrites its own groups: group (t, i % 8), all keys at once.
                    let group = format!("g{t}x{}", i % 8);
                    let target = if i % 3 == 0 { &main } else { &branch };
                    let ops = (0..GROUP)
                        .map(|k| Op::Put {
                            key: ContentKey::new(["ns", &format!("{group}_{k}")]).unwrap(),
                            content: Content {
                                id: ContentId::from_u128(
                                    u128::from(t) << 64
                                        | u128::from(i % 8) << 8
                                        | u128::from(k)
                                        | 1 << 100,
                                ),
                                payload: Payload::IcebergTable(TablePayload {
                                    metadata_location: format!("file:///w/{group}_{k}/v{m}.json"),
                                    table_uuid: [t as u8; 16],
                                    snapshot_id: m,
                                    schema_id: 0,
                                    spec_id: 0,
                                    sort_order_id: 0,
                                }),
                            },
                            expect: Expect::Present,
                        })
                        .collect::<Vec<_>>();
                    // The first write of a group creates it; later ones replace it.
                    let current = store
                        .content_ref_at(
                            store.get_ref(target).unwrap().head,
                            &ContentKey::new(["ns", &format!("{group}_0")]).unwrap(),
                        )
                        .unwrap();
                    let ops: Vec<Op> = ops
                        .into_iter()
                        .map(|op| match (op, current) {
                            (Op::Put { key, content, .. }, None) => Op::Put {
                                key,
                                content,
                                expect: Expect::Absent,
                            },
                            (op, _) => op,
                        })
                        .collect();
                    if let Ok(out) = store.commit(
                        target,
                        None,
                        ops,
                        CommitMeta::new("crash", "group", 0),
                        &ctx,
                    ) && out.created
                    {
                        println!("ack {target} {}", out.commit);
                    }
                    if i % 5 == 4 {
                        let source = store.get_ref(&branch).unwrap().head;
                        let options = MergeOptions {
                            on_conflict: Resolution::TakeSource,
                            ..Default::default()
                        };
                        if let Ok(m) =
                            store.merge(source, &main, None, &options, &ConflictResolver, &ctx)
                            && m.kind != MergeKind::NothingToMerge
                        {
                            println!("ack main {}", m.head);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
