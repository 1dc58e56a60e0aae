//! `floe store copy --data-dir <data folder> --to <PostgreSQL>`: moves a catalog from the
//! embedded sled store to PostgreSQL, the path a growing deployment takes (DESIGN §9).
//!
//! Objects (in hash order, in batches), then meta, then refs and the reflog with their
//! sequence numbers in one transaction. Every step writes what is missing and leaves what
//! is there, so a copy interrupted anywhere is run again with the same command. The copy
//! ends verified: every ref's head is the source's, and its whole history (every commit
//! object, checked against its hash) and its root index node read on the target.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use floe_commits::{
    Backend, Hash, LogFilter, PgOptions, PostgresBackend, RefName, RefRecord, RefView, SledBackend,
    Store, SystemClock,
};

/// Objects read and written per batch.
const OBJECT_BATCH: usize = 2_000;
/// Meta entries, refs and reflog entries read per page.
const PAGE: usize = 1_000;

pub fn run(from: &Path, to: &str, schema: &str, ca: Option<PathBuf>) -> ExitCode {
    match copy(from, to, schema, ca) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("floe store copy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The sled folder of a data folder (or the folder itself when it is one).
fn sled_dir(from: &Path) -> PathBuf {
    let inner = from.join("catalog");
    if inner.join("db").exists() {
        inner
    } else {
        from.to_owned()
    }
}

fn copy(from: &Path, to: &str, schema: &str, ca: Option<PathBuf>) -> Result<(), String> {
    let dir = sled_dir(from);
    if !dir.join("db").exists() {
        return Err(format!(
            "{} holds no sled catalog (give the data folder of a stopped floe serve)",
            from.display()
        ));
    }
    let source = SledBackend::open(&dir).map_err(|e| e.message)?;
    let mut options = PgOptions::new(to);
    options.schema = Some(schema.to_owned());
    options.pool_size = 4;
    options.ca = ca;
    let target = PostgresBackend::open(&options)
        .map_err(|e| format!("cannot open the target: {}", e.message))?;
    let refs = all_refs(&source)?;
    // A target holding another catalog is never merged into: its refs are the source's
    // (an interrupted copy finished its last step) or there are none.
    let theirs = all_refs(&target)?;
    if !theirs.is_empty() && theirs != refs {
        return Err(format!(
            "the target schema {schema} holds another catalog ({} refs that are not this one's); copy into an empty schema",
            theirs.len()
        ));
    }
    let objects = copy_objects(&source, &target)?;
    println!("objects: {objects}");
    let meta = copy_meta(&source, &target)?;
    println!("meta entries: {meta}");
    let mut reflog = Vec::new();
    let mut before = None;
    loop {
        let page = source.reflog(None, before, PAGE).map_err(|e| e.message)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        reflog.extend(page);
    }
    reflog.reverse();
    target
        .import_history(&refs, &reflog)
        .map_err(|e| format!("writing refs and the reflog failed: {}", e.message))?;
    println!("refs: {}, reflog entries: {}", refs.len(), reflog.len());
    verify(Arc::new(source), Arc::new(target), &refs)?;
    println!("verified: every ref's history reads on the target");
    Ok(())
}

fn all_refs(backend: &dyn Backend) -> Result<Vec<(RefName, RefRecord)>, String> {
    let mut out: Vec<(RefName, RefRecord)> = Vec::new();
    loop {
        let after = out.last().map(|(n, _)| n.clone());
        let page = backend
            .list_refs(after.as_ref(), PAGE, RefView::Durable)
            .map_err(|e| e.message)?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

fn copy_objects(source: &SledBackend, target: &PostgresBackend) -> Result<u64, String> {
    let mut from = Hash::from_bytes([0; 32]);
    let mut first = true;
    let mut copied = 0u64;
    loop {
        let mut hashes = source
            .scan_objects(&from, OBJECT_BATCH + 1)
            .map_err(|e| e.message)?;
        // The page starts at `from`, which the previous page ended with.
        if !first && hashes.first() == Some(&from) {
            hashes.remove(0);
        }
        first = false;
        let Some(last) = hashes.last().copied() else {
            return Ok(copied);
        };
        let bytes = source.get_objects(&hashes).map_err(|e| e.message)?;
        let batch: Vec<_> = hashes
            .iter()
            .zip(bytes)
            .filter_map(|(h, b)| b.map(|b| (*h, b)))
            .collect();
        // Bytes are copied only when they are what their name says.
        if let Some((h, _)) = batch.iter().find(|(h, b)| Hash::of(b) != *h) {
            return Err(format!(
                "object {h} is damaged in the source (its bytes hash to something else); nothing after it was copied"
            ));
        }
        target
            .put_objects(&batch)
            .map_err(|e| format!("writing objects failed: {}", e.message))?;
        copied += batch.len() as u64;
        from = last;
    }
}

fn copy_meta(source: &SledBackend, target: &PostgresBackend) -> Result<u64, String> {
    let mut after: Option<Vec<u8>> = None;
    let mut copied = 0u64;
    loop {
        let page = source
            .meta_scan(b"", after.as_deref(), PAGE)
            .map_err(|e| e.message)?;
        let Some((last, _)) = page.last() else {
            return Ok(copied);
        };
        after = Some(last.to_vec());
        // Written where absent: a value there already (an earlier run's, or one a
        // server on the target changed since) is left alone.
        for (key, value) in &page {
            target
                .meta_cas(key, None, Some(value))
                .map_err(|e| format!("writing meta failed: {}", e.message))?;
        }
        copied += page.len() as u64;
    }
}

/// Every ref's head is the source's, and its history reads alike on both sides.
fn verify(
    source: Arc<SledBackend>,
    target: Arc<PostgresBackend>,
    refs: &[(RefName, RefRecord)],
) -> Result<(), String> {
    let source = Store::open(source, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let target = Store::open(target, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    for (name, record) in refs {
        let there = target
            .get_ref(name)
            .map_err(|e| format!("ref {name} on the target: {e}"))?;
        if there.head != record.head {
            return Err(format!(
                "ref {name} is at {} on the target, {} here",
                there.head, record.head
            ));
        }
        let (ours, theirs) = (
            history(&source, record.head)?,
            history(&target, there.head)?,
        );
        if ours != theirs {
            return Err(format!(
                "ref {name}: the target's history differs ({} commits, {} here)",
                theirs.len(),
                ours.len()
            ));
        }
        target
            .entries(there.head, None, None, 1)
            .map_err(|e| format!("ref {name}'s tables on the target: {e}"))?;
    }
    Ok(())
}

/// The commits reachable from `head` by the log, in its order.
fn history(store: &Store, head: Hash) -> Result<Vec<Hash>, String> {
    let mut out = Vec::new();
    let mut from = Some(head);
    while let Some(at) = from {
        let page = store
            .log(at, &LogFilter::default(), 1_000)
            .map_err(|e| format!("reading the history at {at}: {e}"))?;
        out.extend(page.items.iter().map(|(h, _)| *h));
        from = page.next;
    }
    Ok(out)
}
