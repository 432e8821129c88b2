//! The deploy routes of the control API: artifacts by content, deploys,
//! rollbacks and task runs as NDJSON event streams, and the ledger.

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hostd_api::{ArtifactInfo, DeployRequest, ReleasesList, RollbackRequest, TaskRequest};

use super::events::Events;
use super::{DeployError, DeployHost, Deployer, rollback, run, tasks};
use crate::http::{Peer, ndjson, refuse};

pub fn routes<H: DeployHost>(d: Deployer<H>) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(
            &format!("{v}/artifacts/{{digest}}"),
            get(artifact_info::<H>)
                .put(artifact_upload::<H>)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{v}/artifacts/{{digest}}/lacking"),
            post(chunks_lacking::<H>).layer(DefaultBodyLimit::max(
                hostd_api::chunks::MAX_CHUNKS * hostd_api::chunks::ENTRY_BYTES,
            )),
        )
        .route(
            &format!("{v}/artifacts/{{digest}}/delta"),
            put(delta_upload::<H>).layer(DefaultBodyLimit::disable()),
        )
        .route(&format!("{v}/deploy"), post(deploy::<H>))
        .route(&format!("{v}/rollback"), post(roll_back::<H>))
        .route(&format!("{v}/tasks/run"), post(run_task::<H>))
        .route(&format!("{v}/releases/{{unit}}"), get(releases::<H>))
        .with_state(d)
}

fn error(e: &DeployError) -> Response {
    refuse("deploy request", e)
}

async fn artifact_info<H: DeployHost>(
    State(d): State<Deployer<H>>,
    UrlPath(digest): UrlPath<String>,
) -> Response {
    match d.artifacts.size(&digest) {
        Ok(Some(bytes)) => Json(ArtifactInfo { digest, bytes }).into_response(),
        Ok(None) => error(&super::ArtifactError::Missing(digest).into()),
        Err(e) => error(&e.into()),
    }
}

async fn artifact_upload<H: DeployHost>(
    State(d): State<Deployer<H>>,
    UrlPath(digest): UrlPath<String>,
    body: Body,
) -> Response {
    tracing::info!(digest, "artifact upload");
    match d.artifacts.receive(&digest, body.into_data_stream()).await {
        Ok(bytes) => (StatusCode::CREATED, Json(ArtifactInfo { digest, bytes })).into_response(),
        Err(e) => error(&e.into()),
    }
}

async fn chunks_lacking<H: DeployHost>(
    State(d): State<Deployer<H>>,
    UrlPath(digest): UrlPath<String>,
    recipe: axum::body::Bytes,
) -> Response {
    match d.artifacts.lacking(&digest, &recipe).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => error(&e.into()),
    }
}

async fn delta_upload<H: DeployHost>(
    State(d): State<Deployer<H>>,
    UrlPath(digest): UrlPath<String>,
    body: Body,
) -> Response {
    tracing::info!(digest, "artifact delta upload");
    match d
        .artifacts
        .receive_delta(&digest, body.into_data_stream())
        .await
    {
        Ok(bytes) => (StatusCode::CREATED, Json(ArtifactInfo { digest, bytes })).into_response(),
        Err(e) => error(&e.into()),
    }
}

/// Refusals (unknown unit, missing artifact, another operation running
/// and no wait allowed) are plain error answers, before anything changed.
/// Otherwise the events of the deploy, which the operations task runs to
/// its end whether or not the client is still there.
async fn deploy<H: DeployHost>(
    State(d): State<Deployer<H>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(req): Json<DeployRequest>,
) -> Response {
    tracing::info!(
        unit = req.unit,
        version = req.version,
        by = req.requested_by,
        caller = peer.who(),
        "hostctl deploy"
    );
    let target = match run::check_deploy(&d, &req) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let (events, rx) = Events::new();
    let op = run::deploy(d.clone(), target, req, peer, events);
    match d.ops.submit(op).await {
        Ok(()) => ndjson(rx),
        Err(e) => error(&e.into()),
    }
}

async fn roll_back<H: DeployHost>(
    State(d): State<Deployer<H>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(req): Json<RollbackRequest>,
) -> Response {
    tracing::info!(unit = req.unit, version = ?req.version, by = req.requested_by, caller = peer.who(), "hostctl rollback");
    let (target, version) = match rollback::check_rollback(&d, &req) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let (events, rx) = Events::new();
    let op = rollback::rollback(d.clone(), target, version, req, peer, events);
    match d.ops.submit(op).await {
        Ok(()) => ndjson(rx),
        Err(e) => error(&e.into()),
    }
}

/// Refused (unknown unit, nothing deployed, another operation running)
/// before anything ran; otherwise the run's events.
async fn run_task<H: DeployHost>(
    State(d): State<Deployer<H>>,
    Json(req): Json<TaskRequest>,
) -> Response {
    tracing::info!(
        unit = req.unit,
        task = req.task,
        by = req.requested_by,
        "hostctl run"
    );
    let (target, release) = match tasks::accept(&d, &req) {
        Ok(a) => a,
        Err(e) => return error(&e),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    match d
        .ops
        .submit(tasks::run(d.clone(), req, target, release, tx))
        .await
    {
        Ok(()) => ndjson(rx),
        Err(e) => error(&e.into()),
    }
}

async fn releases<H: DeployHost>(
    State(d): State<Deployer<H>>,
    UrlPath(unit): UrlPath<String>,
) -> Response {
    let listed = (|| -> Result<ReleasesList, DeployError> {
        let target = d.target(&unit)?;
        let releases = target.releases();
        let ledger = target.ledger(&d.config.get().state_dir);
        let current = releases.current();
        let previous = match &current {
            Some(c) => ledger.previous(c)?,
            None => None,
        };
        Ok(ReleasesList {
            service: target.service.clone(),
            current,
            previous,
            installed: releases.installed().unwrap_or_default(),
            ledger: ledger.entries()?,
        })
    })();
    match listed {
        Ok(l) => Json(l).into_response(),
        Err(e) => error(&e),
    }
}
