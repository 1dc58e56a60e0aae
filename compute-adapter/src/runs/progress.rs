//! A run's progress: its node states, kept in its record as they move.

use std::sync::Arc;

use floe_catalog::RunRecord;
use parking_lot::Mutex;

use super::lifecycle::pipeline_of;
use super::record::NodeRecord;
use super::{RunLog, store};
use crate::limits::RUN_PIPELINE_BYTES_MAX;

/// A run's node states, kept in its record as they move. The record in memory changes at
/// once; a task saves the latest of it off the async threads (only the latest matters,
/// so saves never queue up or land out of order).
#[derive(Clone)]
pub(super) struct Progress {
    state: Arc<Mutex<RunRecord>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    closing: Arc<std::sync::atomic::AtomicBool>,
    saver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Progress {
    pub(super) fn start(
        state: Arc<Mutex<RunRecord>>,
        catalog: floe_catalog::Catalog,
        executor: floe_catalog::Principal,
        log: Arc<RunLog>,
    ) -> Progress {
        use std::sync::atomic::Ordering;
        let (changed, mut seen) = tokio::sync::watch::channel(0u64);
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (saved, done) = (state.clone(), closing.clone());
        let saver = tokio::spawn(async move {
            while seen.changed().await.is_ok() {
                seen.borrow_and_update();
                let record = saved.lock().clone();
                let (catalog, executor) = (catalog.clone(), executor.clone());
                if let Err(e) = store(move || Ok(catalog.save_run(&executor, &record)?)).await {
                    log.line(
                        super::log::RUN,
                        "warn",
                        &format!("its progress could not be recorded: {e}"),
                    );
                }
                // Closing, and nothing changed since this save: the last state is saved.
                if done.load(Ordering::SeqCst) && !seen.has_changed().unwrap_or(false) {
                    break;
                }
            }
        });
        Progress {
            state,
            changed: Arc::new(changed),
            closing,
            saver: Arc::new(Mutex::new(Some(saver))),
        }
    }

    /// Changes node `n`'s record.
    pub(super) fn update(&self, n: usize, change: impl FnOnce(&mut NodeRecord)) {
        let mut record = self.state.lock();
        let Some(mut p) = pipeline_of(&record) else {
            return;
        };
        change(&mut p.nodes[n]);
        let mut value = p.to_value();
        if value.to_string().len() > RUN_PIPELINE_BYTES_MAX {
            // A record stays one meta value: a dry run's schemas are the first to go.
            p.nodes[n].schema = None;
            value = p.to_value();
        }
        record.pipeline = Some(value);
        drop(record);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until the last change is saved (no change may follow).
    pub(super) async fn finish(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // One more wake: the saver saves the latest state and ends.
        self.changed.send_modify(|v| *v += 1);
        let saver = self.saver.lock().take();
        if let Some(saver) = saver {
            let _ = saver.await;
        }
    }
}
