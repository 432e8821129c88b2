//! The jobs routes of the control API: `GET /v1/jobs` and
//! `POST /v1/jobs/{name}/run` (an NDJSON stream of `RunEvent`s).

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hostd_api::JobsList;

use super::JobsHandle;
use crate::http::{ndjson, refuse};

pub fn routes(jobs: JobsHandle) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(&format!("{v}/jobs"), get(list))
        .route(&format!("{v}/jobs/{{name}}/run"), post(run))
        .with_state(jobs)
}

/// Fresh, not the last observation: `hostctl jobs` right after a run
/// shows it.
async fn list(State(jobs): State<JobsHandle>) -> Json<JobsList> {
    Json(JobsList {
        jobs: jobs.observe_now().await,
    })
}

async fn run(State(jobs): State<JobsHandle>, UrlPath(name): UrlPath<String>) -> Response {
    tracing::info!(job = name, "hostctl jobs run");
    match jobs.run(name).await {
        Ok(rx) => ndjson(rx).into_response(),
        Err(e) => refuse("jobs request", &e),
    }
}
