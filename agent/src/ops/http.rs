//! `GET /v1/lock` and `DELETE /v1/lock`: who holds the host, and what
//! recovery at start found.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::{LockHolder, LockStatus};

use super::{OpsHandle, OpsView};

pub fn routes(ops: OpsHandle) -> Router {
    Router::new()
        .route(
            &format!("{}/lock", hostd_api::API_PREFIX),
            get(status).delete(release),
        )
        .with_state(ops)
}

fn status_of(view: OpsView) -> LockStatus {
    LockStatus {
        holder: view.holder.map(|h| LockHolder {
            operation: h.operation,
            requested_by: h.requested_by,
            since: h.since,
            pid: std::process::id(),
        }),
        recovered: view.recovered,
    }
}

async fn status(State(ops): State<OpsHandle>) -> Json<LockStatus> {
    Json(status_of(ops.view().borrow().clone()))
}

/// The lock lives in hostd and is held only by an operation hostd is
/// running, so there is never a dead holder to evict: a held lock is
/// refused (the operation is bounded by its timeouts and ends by itself),
/// a free one is answered as such, and what recovery reported is
/// acknowledged (cleared).
async fn release(State(ops): State<OpsHandle>) -> Response {
    match ops.acknowledge().await {
        Ok(view) => Json(status_of(view)).into_response(),
        Err(h) => crate::http::error_answer(
            StatusCode::CONFLICT,
            format!(
                "the lock is held by `{}` (by {} since {}), which hostd (pid {}) is running now: it is not stale and ends by itself; `hostctl status` shows its progress",
                h.operation,
                h.requested_by,
                h.since,
                std::process::id()
            ),
        ),
    }
}
