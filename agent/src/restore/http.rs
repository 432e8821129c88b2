//! `POST /v1/restore`: the plan, then the restore's events as NDJSON.

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};

use super::{Events, RestoreError, Restorer};
use crate::http::{ndjson, refuse};

pub fn routes(restorer: Restorer) -> Router {
    Router::new()
        .route(&format!("{}/restore", hostd_api::API_PREFIX), post(restore))
        .with_state(restorer)
}

/// Refusals (unknown snapshot, another operation running and no wait
/// allowed, leftovers of an earlier restore) are plain error answers,
/// before anything changed. Otherwise an NDJSON stream of the restore's
/// events; the operations task runs it to its end whether or not the
/// client is still there.
async fn restore(
    State(r): State<Restorer>,
    Json(req): Json<hostd_api::RestoreRequest>,
) -> Response {
    tracing::info!(
        snapshot = req.snapshot,
        dry_run = req.dry_run,
        by = req.requested_by,
        "hostctl restore"
    );
    let prepared = match r.prepare(&req).await {
        Ok(p) => p,
        Err(e) => return refuse("restore", &e),
    };
    let (events, rx) = Events::new();
    events.plan(&prepared.plan, req.dry_run);
    if req.dry_run {
        events.finished(Ok(()));
        return ndjson(rx);
    }
    match r.ops.submit(r.operation(prepared, req, events)).await {
        Ok(()) => ndjson(rx),
        Err(e) => refuse("restore", &RestoreError::Lock(e)),
    }
}
