//! `GET /v1/backups` (the repository's snapshots and the last run) and
//! `POST /v1/backups` (a run now, waited for or not).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::BackupHandle;
use crate::http::refuse;

pub fn routes(backup: BackupHandle) -> Router {
    Router::new()
        .route(
            &format!("{}/backups", hostd_api::API_PREFIX),
            get(list).post(now),
        )
        .with_state(backup)
}

async fn list(State(backup): State<BackupHandle>) -> Response {
    match backup.list().await {
        Ok(list) => Json(list).into_response(),
        Err(e) => refuse("backups list", &e),
    }
}

/// 200 with the finished run when waiting, else 202 with the run started
/// (or the one already going, which this joins).
async fn now(
    State(backup): State<BackupHandle>,
    body: Option<Json<hostd_api::BackupRequest>>,
) -> Response {
    let wait = body.is_some_and(|Json(b)| b.wait);
    tracing::info!(wait, "hostctl backup now");
    match backup.now(wait).await {
        Ok(run) if wait => Json(run).into_response(),
        Ok(run) => (StatusCode::ACCEPTED, Json(run)).into_response(),
        Err(e) => refuse("backup", &e),
    }
}
