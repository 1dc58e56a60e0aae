//! A run's log for the other servers, when servers share the catalog: shared as it grows
//! while the run lives (every `LIVE_LOG_SHARE_INTERVAL`, when it grew), so that a
//! follower on another server streams it, and once more, final, when the run ended. One
//! share of a run at a time: a live share never lands after the final one.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use floe_catalog::limits::{RUN_ANSWER_BYTES_MAX, RUN_ANSWER_CHUNK_BYTES};
use parking_lot::Mutex;

use super::{RunError, Runner, store};

/// How often a live run's log is shared, when it grew: what a follower on another
/// server lags by, at most, besides its own polling.
const LIVE_LOG_SHARE_INTERVAL: Duration = Duration::from_millis(500);

/// The shares of this server's live runs.
#[derive(Debug, Default)]
pub(super) struct LogShares(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Share>>>>);

/// One run's share: how much of its log is shared, and whether the final share was made.
#[derive(Debug, Default)]
struct Share {
    shared: usize,
    ended: bool,
}

impl Runner {
    /// Shares run `id`'s log as it grows while this server runs it (on a catalog no other
    /// server shares, nothing to do).
    pub(super) fn share_live_log(&self, id: &str) {
        if !self.inner.catalog.is_shared() {
            return;
        }
        let share = Arc::new(tokio::sync::Mutex::new(Share::default()));
        self.inner
            .log_shares
            .0
            .lock()
            .insert(id.to_owned(), share.clone());
        let (this, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_LOG_SHARE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut share = share.lock().await;
                // Ended (the final share is made or under way), or no longer run here
                // (a run that ended without one: its log stays this server's).
                if share.ended || !this.inner.live.lock().contains_key(&id) {
                    this.inner.log_shares.0.lock().remove(&id);
                    return;
                }
                let path = this.log_path(&id);
                let grown = tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|m| m.len() as usize > share.shared);
                // What is kept of a log is its first RUN_ANSWER_BYTES_MAX.
                if !grown || share.shared >= RUN_ANSWER_BYTES_MAX {
                    continue;
                }
                // From the start of the chunk shared last: the chunks before it are whole.
                let start = share.shared - share.shared % RUN_ANSWER_CHUNK_BYTES;
                let (catalog, run) = (this.inner.catalog.clone(), id.clone());
                let shared = store(move || {
                    let tail = read_kept(&path, start)?;
                    catalog.share_live_log(&run, start, &tail)?;
                    Ok(start + tail.len())
                })
                .await;
                match shared {
                    Ok(n) => share.shared = n,
                    // Tried again at the next tick; the final share says all.
                    Err(e) => tracing::debug!(run = %id, error = %e, "sharing the live log failed"),
                }
            }
        });
    }

    /// Keeps the ended run's log for the other servers when servers share the catalog
    /// (`floe run logs` through any of them): the final share, after which no live share
    /// of the run is made. Best effort: this server still has it.
    pub(super) async fn share_log(&self, id: &str) {
        if !self.inner.catalog.is_shared() {
            return;
        }
        let live = self.inner.log_shares.0.lock().remove(id);
        let mut turn = match &live {
            Some(share) => Some(share.lock().await),
            None => None,
        };
        // What was shared live is not written again (but for its last chunk).
        let shared = turn.as_mut().map_or(0, |share| {
            share.ended = true;
            share.shared
        });
        let (catalog, path, run) = (self.inner.catalog.clone(), self.log_path(id), id.to_owned());
        let shared = store(move || {
            let bytes = read_kept(&path, 0)?;
            Ok(catalog.share_final_log(&run, &bytes, shared)?)
        })
        .await;
        if let Err(e) = shared {
            tracing::warn!(error = %e, "keeping the run's log for the other servers failed");
        }
    }
}

/// The part of a log that is kept (its first `RUN_ANSWER_BYTES_MAX` bytes), from byte
/// `start` on.
fn read_kept(path: &std::path::Path, start: usize) -> Result<Vec<u8>, RunError> {
    use std::io::Seek;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(std::io::SeekFrom::Start(start as u64))?;
            f.take(RUN_ANSWER_BYTES_MAX.saturating_sub(start) as u64)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| RunError::Io(format!("reading the run's log: {e}")))?;
    Ok(bytes)
}
