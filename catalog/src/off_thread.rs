//! Store work run off the async workers (issue 23): on a blocking thread, with its
//! durability waits deferred (`floe_commits::deferred`) and awaited on the async task
//! instead, so that no thread is parked for a device round trip. The result is handed on
//! only once everything it rests on is durable.

use floe_commits::WriteError;
use floe_commits::deferred::{self, Scope};

use crate::CatalogError;

/// What running store work off the async workers can end in besides its own result.
#[derive(Debug, thiserror::Error)]
pub enum OffThreadError {
    /// The task panicked or was cancelled: what it did is unknown.
    #[error("a store task failed: {0}")]
    Task(String),
    /// What the work wrote or read never became durable (the store is poisoned): whatever
    /// it computed, its outcome is unknown.
    #[error(transparent)]
    NotDurable(CatalogError),
}

impl OffThreadError {
    /// As a catalog error: either way the outcome is unknown, never a refusal (a caller
    /// that cleans up after a refused write must not clean up after this).
    pub fn into_catalog(self) -> CatalogError {
        match self {
            OffThreadError::NotDurable(e) => e,
            OffThreadError::Task(why) => CatalogError::Write(WriteError::outcome_unknown(
                floe_commits::BackendError::unknown(format!("a store task failed: {why}")),
            )),
        }
    }
}

/// Runs `f` on a blocking thread in a deferral scope and awaits what it must wait for
/// (`Scope::Read` for reads; `Scope::Write` for work that writes and reads its own writes
/// back). The caller's span follows the work. Nothing irreversible may happen inside `f`
/// on the strength of a deferred wait (see `floe_commits::deferred`): do it after the
/// await, or call `deferred::barrier` first.
pub async fn off_thread<T, F>(scope: Scope, f: F) -> Result<T, OffThreadError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let span = tracing::Span::current();
    let work = move || span.in_scope(|| deferred::run_deferred(scope, f));
    let (out, pending) = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OffThreadError::Task(e.to_string()))?;
    if !pending.is_empty()
        && let Err(e) = pending.durable().await
    {
        let e = WriteError::outcome_unknown(e);
        return Err(OffThreadError::NotDurable(CatalogError::Write(e)));
    }
    Ok(out)
}
