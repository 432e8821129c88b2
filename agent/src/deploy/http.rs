//! The deploy routes of the control API: artifacts by content, deploys and
//! rollbacks as NDJSON event streams, the ledger, and the operations lock.

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hostd_api::{
    ArtifactInfo, DeployRequest, LockHolder, LockStatus, ReleasesList, RollbackRequest, TaskRequest,
};

use super::{DeployError, Deployer, run};

pub fn router(d: Deployer) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(
            &format!("{v}/artifacts/{{digest}}"),
            get(artifact_info)
                .put(artifact_upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(&format!("{v}/deploy"), post(deploy))
        .route(&format!("{v}/rollback"), post(rollback))
        .route(&format!("{v}/tasks/run"), post(run_task))
        .route(&format!("{v}/releases/{{unit}}"), get(releases))
        .route(&format!("{v}/lock"), get(lock_status).delete(lock_release))
        .with_state(d)
}

fn error(e: &DeployError) -> Response {
    let code = crate::control::status_of(e.http_status());
    tracing::warn!(status = code.as_u16(), "deploy request refused: {e}");
    crate::control::error_answer(code, hostd_api::error_chain(e))
}

async fn artifact_info(State(d): State<Deployer>, UrlPath(digest): UrlPath<String>) -> Response {
    match d.artifacts.size(&digest) {
        Ok(Some(bytes)) => Json(ArtifactInfo { digest, bytes }).into_response(),
        Ok(None) => error(&super::ArtifactError::Missing(digest).into()),
        Err(e) => error(&e.into()),
    }
}

async fn artifact_upload(
    State(d): State<Deployer>,
    UrlPath(digest): UrlPath<String>,
    body: Body,
) -> Response {
    tracing::info!(digest, "artifact upload");
    match d.artifacts.receive(&digest, body.into_data_stream()).await {
        Ok(bytes) => (StatusCode::CREATED, Json(ArtifactInfo { digest, bytes })).into_response(),
        Err(e) => error(&e.into()),
    }
}

/// Refusals (unknown unit, missing artifact, lock held without waiting)
/// are plain error answers, before anything changed. Otherwise the events;
/// the deploy runs in its own task, so it ends the same whether or not the
/// client is still there.
async fn deploy(
    State(d): State<Deployer>,
    ConnectInfo(peer): ConnectInfo<crate::control::Peer>,
    Json(req): Json<DeployRequest>,
) -> Response {
    tracing::info!(
        unit = req.unit,
        version = req.version,
        by = req.requested_by,
        "hostctl deploy"
    );
    let target = match run::check_deploy(&d, &req) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let operation = format!("deploy {} {}", req.unit, req.version);
    let guard = match lock_now_or_later(&d, operation, &req.requested_by, req.lock_wait_seconds) {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    let (events, rx) = run::Events::new();
    tokio::spawn(run::deploy(
        d,
        target,
        req,
        peer.ssh_client(),
        guard,
        events,
    ));
    crate::control::ndjson(rx)
}

async fn rollback(
    State(d): State<Deployer>,
    ConnectInfo(peer): ConnectInfo<crate::control::Peer>,
    Json(req): Json<RollbackRequest>,
) -> Response {
    tracing::info!(unit = req.unit, version = ?req.version, by = req.requested_by, "hostctl rollback");
    let (target, version) = match run::check_rollback(&d, &req) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let operation = format!("rollback {} to {version}", req.unit);
    let guard = match lock_now_or_later(&d, operation, &req.requested_by, req.lock_wait_seconds) {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    let (events, rx) = run::Events::new();
    tokio::spawn(run::rollback(
        d,
        target,
        version,
        req,
        peer.ssh_client(),
        guard,
        events,
    ));
    crate::control::ndjson(rx)
}

/// Refused (unknown unit, nothing deployed, lock held) before anything
/// ran; otherwise the run's events. Like a deploy, it runs to its end in
/// its own task.
async fn run_task(State(d): State<Deployer>, Json(req): Json<TaskRequest>) -> Response {
    tracing::info!(
        unit = req.unit,
        task = req.task,
        by = req.requested_by,
        "hostctl run"
    );
    let accepted = match super::tasks::accept(&d, &req) {
        Ok(a) => a,
        Err(e) => return error(&e),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(super::tasks::run(d, req, accepted, tx));
    crate::control::ndjson(rx)
}

/// The lock if free; held and no wait allowed: refused; held with a
/// wait: None, and the operation's task waits for it.
fn lock_now_or_later(
    d: &Deployer,
    operation: String,
    by: &str,
    wait_seconds: u64,
) -> Result<Option<crate::oplock::OpsGuard>, DeployError> {
    match d.lock.try_take(crate::oplock::Holder::new(operation, by)) {
        Ok(g) => Ok(Some(g)),
        Err(e) if wait_seconds == 0 => Err(e.into()),
        Err(_) => Ok(None),
    }
}

async fn releases(State(d): State<Deployer>, UrlPath(unit): UrlPath<String>) -> Response {
    let listed = (|| -> Result<ReleasesList, DeployError> {
        let target = d.target(&unit)?;
        let releases = target.releases();
        let ledger = target.ledger(&d.config.state_dir);
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

fn lock_now(d: &Deployer) -> LockStatus {
    LockStatus {
        holder: d.lock.holder().map(|h| LockHolder {
            operation: h.operation,
            requested_by: h.requested_by,
            since: h.since,
            pid: std::process::id(),
        }),
        recovered: d.recovered(),
    }
}

async fn lock_status(State(d): State<Deployer>) -> Json<LockStatus> {
    Json(lock_now(&d))
}

/// The lock lives in hostd and is held only by an operation hostd is
/// running, so there is never a dead holder to evict: a held lock is
/// refused (the operation is bounded by its timeouts and ends by itself),
/// a free one is answered as such, and what recovery reported is
/// acknowledged (cleared).
async fn lock_release(State(d): State<Deployer>) -> Response {
    let now = lock_now(&d);
    if let Some(h) = &now.holder {
        return crate::control::error_answer(
            StatusCode::CONFLICT,
            format!(
                "the lock is held by `{}` (by {} since {}), which hostd (pid {}) is running now: it is not stale and ends by itself; `hostctl status` shows its progress",
                h.operation, h.requested_by, h.since, h.pid
            ),
        );
    }
    d.recovered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    Json(now).into_response()
}
