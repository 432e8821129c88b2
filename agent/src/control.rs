//! The control API for hostctl: HTTP/JSON on a Unix socket, never on TCP.
//! The socket's owner and mode (root and `control.group`) are its access
//! control; SSH in front of it (`hostd dial-stdio`) authenticates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hostd_api::{ErrorBody, HostStatus, ScaleRequest, ServiceAction, ServiceSummary};

use crate::backup::{BackupError, BackupHandle};
use crate::manager::{ManagerError, ManagerHandle};
use crate::restore::{Events, RestoreError, Restorer};
use crate::secrets::{RefreshError, SecretsHandle};
use crate::server::AppState;

#[derive(Clone)]
struct ControlState {
    app: AppState,
    manager: ManagerHandle,
    secrets: SecretsHandle,
    backup: BackupHandle,
    restorer: Restorer,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the control socket {path} (control.socket)")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control.group: no group named `{0}` on this host (create it, or remove the key)")]
    NoSuchGroup(String),
    #[error("cannot set owner and mode of the control socket {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn control_router(
    app: AppState,
    manager: ManagerHandle,
    secrets: SecretsHandle,
    backup: BackupHandle,
    restorer: Restorer,
) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(&format!("{v}/status"), get(status))
        .route(
            &format!("{v}/services/{{name}}/{{action}}"),
            post(service_action),
        )
        .route(&format!("{v}/services/{{name}}/instances"), put(scale))
        .route(&format!("{v}/secrets"), get(secrets_list))
        .route(&format!("{v}/secrets/sync"), post(secrets_sync))
        .route(&format!("{v}/backups"), get(backups_list).post(backup_now))
        .route(&format!("{v}/restore"), post(restore))
        .with_state(ControlState {
            app,
            manager,
            secrets,
            backup,
            restorer,
        })
}

/// Every refusal of the control API: the status and an [`ErrorBody`].
pub fn error_answer(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

/// The status an error's `http_status()` names (500 if it is no status).
pub fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_response(e: &ManagerError) -> Response {
    let code = status_of(e.http_status());
    tracing::warn!(status = code.as_u16(), "{}", hostd_api::error_chain(e));
    error_answer(code, hostd_api::error_chain(e))
}

fn secrets_error(e: &RefreshError) -> Response {
    error_answer(status_of(e.http_status()), e.to_string())
}

/// Names, versions and dates: never a value.
async fn secrets_list(State(st): State<ControlState>) -> Response {
    match st.secrets.list() {
        Ok(list) => Json(list).into_response(),
        Err(e) => secrets_error(&e),
    }
}

/// A refresh now. 200 even when the fetch failed: the body says why, and
/// the host keeps serving on the last good set.
async fn secrets_sync(State(st): State<ControlState>) -> Response {
    tracing::info!("hostctl secrets sync");
    match st.secrets.sync().await {
        Ok(result) => Json(result).into_response(),
        Err(e) => secrets_error(&e),
    }
}

fn backup_error(e: &BackupError) -> Response {
    error_answer(status_of(e.http_status()), e.to_string())
}

async fn backups_list(State(st): State<ControlState>) -> Response {
    match st.backup.list().await {
        Ok(list) => Json(list).into_response(),
        Err(e) => backup_error(&e),
    }
}

/// 200 with the finished run when waiting, else 202 with the run started
/// (or the one already going, which this joins).
async fn backup_now(
    State(st): State<ControlState>,
    body: Option<Json<hostd_api::BackupRequest>>,
) -> Response {
    let wait = body.is_some_and(|Json(b)| b.wait);
    tracing::info!(wait, "hostctl backup now");
    match st.backup.now(wait).await {
        Ok(run) if wait => Json(run).into_response(),
        Ok(run) => (StatusCode::ACCEPTED, Json(run)).into_response(),
        Err(e) => backup_error(&e),
    }
}

fn restore_error(e: &RestoreError) -> Response {
    let code = status_of(e.http_status());
    tracing::warn!(status = code.as_u16(), "restore refused: {e}");
    error_answer(code, e.to_string())
}

/// Refusals (unknown snapshot, lock held, leftovers of an earlier restore)
/// are plain error answers, before anything changed. Otherwise an NDJSON
/// stream of the restore's events; the restore runs in its own task, so it
/// ends the same whether or not the client is still there.
async fn restore(
    State(st): State<ControlState>,
    Json(req): Json<hostd_api::RestoreRequest>,
) -> Response {
    tracing::info!(
        snapshot = req.snapshot,
        dry_run = req.dry_run,
        by = req.requested_by,
        "hostctl restore"
    );
    let r = st.restorer;
    let prepared = match r.prepare(&req).await {
        Ok(p) => p,
        Err(e) => return restore_error(&e),
    };
    let (events, rx) = Events::new();
    events.plan(&prepared.plan, req.dry_run);
    if req.dry_run {
        events.finished(Ok(()));
    } else {
        let guard = match r.lock.try_take(crate::restore::holder(&req)) {
            Ok(g) => Some(g),
            Err(e) if req.lock_wait_seconds == 0 => return restore_error(&e.into()),
            Err(_) => None,
        };
        tokio::spawn(crate::restore::run_restore(
            r.clone(),
            prepared,
            req,
            guard,
            events,
        ));
    }
    ndjson(rx)
}

/// An answer of events, one JSON document per line as each arrives, ending
/// when the sender is dropped.
pub fn ndjson<T: serde::Serialize + Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> Response {
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

async fn service_action(
    State(st): State<ControlState>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> Response {
    let action = match action.as_str() {
        "start" => ServiceAction::Start,
        "stop" => ServiceAction::Stop,
        "restart" => ServiceAction::Restart,
        other => {
            return error_answer(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`; use start, stop or restart"),
            );
        }
    };
    tracing::info!(service = name, action = action.as_str(), "hostctl request");
    match st.manager.action(name, action).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn scale(
    State(st): State<ControlState>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<ScaleRequest>,
) -> Response {
    tracing::info!(service = name, instances = req.instances, "hostctl scale");
    match st.manager.scale(name, req.instances).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn status(State(st): State<ControlState>) -> Json<HostStatus> {
    let st = st.app;
    let snap = st.snapshot.borrow().clone();
    let view = st.view.borrow().clone();
    let services = view
        .desired
        .services
        .iter()
        .map(|(name, d)| {
            let svc = st.config.services.get(name);
            ServiceSummary {
                name: name.clone(),
                unit: svc.map(|s| s.unit.to_string()).unwrap_or_default(),
                running: d.running,
                instances: d.instances,
                max_instances: d.instances.and(svc.map(|s| s.max_instances.0)),
                restarts: view.restarts.get(name).copied().unwrap_or(0),
            }
        })
        .collect();
    Json(HostStatus {
        hostname: st.hostname.clone(),
        hostd_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostd_build: st.build.get().cloned(),
        hostd_uptime_seconds: st.started.elapsed().as_secs(),
        units: snap.units,
        services,
        events: view.events,
        health: snap.report,
        instance: st.instance.get().cloned(),
    })
}

/// Who is on the other end of a control connection: the `hostd
/// dial-stdio` process sshd started for an operator, found by the socket's
/// peer credentials, and the SSH client address in its environment. Kernel
/// facts, not claims in a request.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub pid: Option<i32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Self {
            pid: stream.io().peer_cred().ok().and_then(|c| c.pid()),
        }
    }
}

impl Peer {
    /// The SSH client's address (`SSH_CLIENT`'s first field), when the
    /// peer is a process of an SSH session.
    pub fn ssh_client(&self) -> Option<String> {
        let environ = std::fs::read(format!("/proc/{}/environ", self.pid?)).ok()?;
        environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(b"SSH_CLIENT="))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    }
}

/// Binds the control socket, replacing a stale one from a previous run, then
/// opens it to root and `group` (0660). Until the chmod the socket has the
/// umask's 0755, which only root can connect to, so there is no open window.
pub fn bind_control(
    path: &Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| bind_err(e.into()))?
                .ok_or_else(|| ControlError::NoSuchGroup(name.to_owned()))?
                .gid,
        ),
        None => None,
    };
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    let perm_err = |source| ControlError::Permissions {
        path: path.to_owned(),
        source,
    };
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::os::unix::fs::chown(path, None, gid.map(|g| g.as_raw())).map_err(perm_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perm_err)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, StatusCode};
    use hostd_api::HealthStatus;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn control_socket_is_private_and_serves_status() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("control.sock");
        // A stale socket file from a crashed run must not block the bind.
        std::fs::write(&path, b"stale")?;
        let listener = bind_control(&path, None)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let app_state = crate::server::tests::state(HealthStatus::Healthy, vec![]);
        let (_secrets_tx, secrets_rx) =
            tokio::sync::watch::channel(crate::secrets::SecretsState::default());
        let secrets = SecretsHandle::detached(std::sync::Arc::clone(&app_state.config), secrets_rx);
        let restorer = Restorer {
            config: std::sync::Arc::clone(&app_state.config),
            backup: BackupHandle::unconfigured(),
            manager: ManagerHandle::detached(),
            view: tokio::sync::watch::channel(crate::desired::ManagerView::default()).1,
            lock: crate::oplock::OpsLock::default(),
        };
        let app = control_router(
            app_state,
            ManagerHandle::detached(),
            secrets,
            BackupHandle::unconfigured(),
            restorer,
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let stream = tokio::net::UnixStream::connect(&path).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                Request::get("/v1/status")
                    .body(http_body_util::Empty::<axum::body::Bytes>::new())?,
            )
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await?.to_bytes();
        let status: HostStatus = serde_json::from_slice(&body)?;
        assert_eq!(status.hostname, "test");
        assert_eq!(status.hostd_version, env!("CARGO_PKG_VERSION"));
        // Without [secrets]: a clear 404, not an empty list.
        let resp = sender
            .send_request(
                Request::get("/v1/secrets")
                    .body(http_body_util::Empty::<axum::body::Bytes>::new())?,
            )
            .await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = resp.into_body().collect().await?.to_bytes();
        let error: ErrorBody = serde_json::from_slice(&body)?;
        assert!(error.error.contains("[secrets]"), "{}", error.error);
        server.abort();
        Ok(())
    }

    #[test]
    fn unknown_group_is_a_clear_error() -> Result<(), std::io::Error> {
        let dir = tempfile::tempdir()?;
        let err = bind_control(&dir.path().join("s"), Some("no-such-group-hostd-test"))
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("control.group: no group named `no-such-group-hostd-test` on this host (create it, or remove the key)".into())
        );
        Ok(())
    }
}
