//! The jobs routes of the control API: `GET /v1/jobs` and
//! `POST /v1/jobs/{name}/run` (an NDJSON stream of `RunEvent`s).

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hostd_api::JobsList;

use super::{Jobs, JobsError};

pub fn router(jobs: Jobs) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(&format!("{v}/jobs"), get(list))
        .route(&format!("{v}/jobs/{{name}}/run"), post(run))
        .with_state(jobs)
}

fn error(e: &JobsError) -> Response {
    let code = crate::control::status_of(e.http_status());
    tracing::warn!(status = code.as_u16(), "jobs request refused: {e}");
    crate::control::error_answer(code, hostd_api::error_chain(e))
}

/// Fresh, not the last observation: `hostctl jobs` right after a run
/// shows it.
async fn list(State(jobs): State<Jobs>) -> Json<JobsList> {
    jobs.observe().await;
    Json(JobsList {
        jobs: jobs.status.borrow().clone(),
    })
}

async fn run(State(jobs): State<Jobs>, UrlPath(name): UrlPath<String>) -> Response {
    tracing::info!(job = name, "hostctl jobs run");
    let claim = match jobs.claim(&name).await {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { jobs.run_now(name, claim, tx).await });
    crate::control::ndjson(rx).into_response()
}
