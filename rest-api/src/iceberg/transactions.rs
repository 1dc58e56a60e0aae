//! `POST /v1/{prefix}/transactions/commit`: changes to several tables as one commit.

use axum::extract::State;
use axum::response::Response;
use floe_catalog::{IdemRequest, TableChange};

use super::wire::CommitTransactionRequest;
use super::{authored, body, identified, prefix};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::write::{self, Call, Ctx};

pub async fn commit(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<String>,
    call: Call,
) -> Response {
    let metrics = state.metrics.clone();
    write::write_empty(&state, call, move |cx: &Ctx, idem: Option<&IdemRequest>| {
        let req: CommitTransactionRequest = body(&cx.call.body)?;
        let mut changes = Vec::with_capacity(req.table_changes.len());
        for c in req.table_changes {
            let Some(id) = &c.identifier else {
                return Err(ApiError::bad_request(
                    "every table change of a transaction needs its identifier",
                ));
            };
            changes.push(TableChange {
                key: identified(id)?,
                requirements: c.requirements,
                updates: c.updates,
            });
        }
        cx.catalog.commit_tables(
            &cx.principal,
            &prefix(&p)?,
            changes,
            &authored(&cx.call.headers),
            idem,
        )?;
        metrics.commit();
        Ok(())
    })
    .await
}
