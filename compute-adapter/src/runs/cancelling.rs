//! What cancels a run: a caller (`cancel`), its deadline, and a cancel request another
//! server left in the catalog for a run this server executes.

use std::sync::Arc;

use floe_catalog::{CatalogError, Principal, RunRecord};

use super::{RunError, RunOptions, Runner, reading, store};

impl Runner {
    /// Cancels run `id`: a run of this server stops within moments in whatever phase it is
    /// (its workers' process groups killed), is recorded `cancelled` and its branch sealed;
    /// a live run no server runs any more is recorded cancelled here. A run that already
    /// ended is answered as it is. Answers the run's record once it has ended.
    pub async fn cancel(&self, principal: &Principal, id: &str) -> Result<RunRecord, RunError> {
        let catalog = self.inner.catalog.clone();
        let (who, run) = (principal.clone(), id.to_owned());
        let record = reading(move || {
            let record = catalog.get_run(&who, &run)?;
            // One's own runs, while one may start runs on their target; anyone's, for a
            // manager of it.
            let target = record.target_ref()?;
            if record.principal == who.name() {
                catalog.authorize(
                    &who,
                    floe_catalog::Action::Run,
                    floe_catalog::Target::on_ref(&target),
                )?;
            } else if !catalog.may_manage(&who, &target) {
                return Err(RunError::Catalog(CatalogError::Forbidden {
                    principal: who.name().to_owned(),
                    action: floe_catalog::Action::Run,
                    target: target.to_string(),
                    why: format!(
                        ": run {run} is {}'s (manage on {target} cancels anyone's)",
                        record.principal
                    ),
                }));
            }
            Ok(record)
        })
        .await?;
        if !record.state.is_live() {
            return Ok(record);
        }
        let why = format!("cancelled by {}", principal.name());
        let signalled = match self.inner.cancels.lock().get(id) {
            Some(tx) => {
                tx.send_if_modified(|reason| {
                    if reason.is_none() {
                        *reason = Some(why.clone());
                        true
                    } else {
                        false
                    }
                });
                true
            }
            None => false,
        };
        if !signalled {
            // A run another live server executes is asked to stop through the catalog
            // (that server looks for the request); one nobody runs is recorded here.
            let catalog = self.inner.catalog.clone();
            let (stale, who) = (record.clone(), principal.clone());
            store(move || Ok(catalog.cancel_run(&who, &stale, &why)?)).await?;
        }
        self.wait(principal, id).await
    }

    /// Cancels run `id` once its deadline passes (its `timeoutSeconds`, at most the
    /// server's `--run-timeout`), if it still runs then.
    pub(super) fn deadline(&self, id: &str, options: &RunOptions) {
        let most = self.inner.config.run_timeout;
        let deadline = options
            .timeout_seconds
            .map_or(most, |s| std::time::Duration::from_secs(s).min(most));
        let (inner, id) = (Arc::downgrade(&self.inner), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            let Some(inner) = inner.upgrade() else { return };
            if let Some(tx) = inner.cancels.lock().get(&id) {
                tx.send_if_modified(|reason| {
                    let first = reason.is_none();
                    if first {
                        *reason = Some(format!(
                            "it ran past its deadline ({} s; floe run --timeout, floe serve --run-timeout)",
                            deadline.as_secs()
                        ));
                    }
                    first
                });
            }
        });
    }

    /// When servers share the catalog, looks for a cancel request another server left for
    /// run `id` (`Catalog::request_cancel`) while the run lives here, and cancels it.
    pub(super) fn cancel_requests(&self, id: &str) {
        if !self.inner.catalog.is_shared() {
            return;
        }
        let (inner, id) = (Arc::downgrade(&self.inner), id.to_owned());
        tokio::spawn(async move {
            let poll = std::time::Duration::from_millis(crate::limits::RUN_POLL_MS * 2);
            loop {
                tokio::time::sleep(poll).await;
                let Some(inner) = inner.upgrade() else { return };
                if !inner.cancels.lock().contains_key(&id) {
                    return;
                }
                let (catalog, run) = (inner.catalog.clone(), id.clone());
                let Ok(Some(why)) = reading(move || Ok(catalog.cancel_requested(&run)?)).await
                else {
                    continue;
                };
                if let Some(tx) = inner.cancels.lock().get(&id) {
                    tx.send_if_modified(|reason| {
                        let first = reason.is_none();
                        if first {
                            *reason = Some(why.clone());
                        }
                        first
                    });
                }
                let (catalog, run) = (inner.catalog.clone(), id.clone());
                let _ = store(move || Ok(catalog.cancel_taken(&run)?)).await;
                return;
            }
        });
    }
}
