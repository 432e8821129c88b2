//! The two HTTP faces of hostd: `/health` on TCP for load balancers and
//! CloudWatch, and the control API on a Unix socket for hostctl. The control
//! API is never on TCP: the socket's owner and mode are its access control.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::{HealthStatus, HostStatus};
use tokio::sync::watch;

use crate::health::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for /health on {addr}")]
    BindHealth {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the control socket {path}")]
    BindControl {
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

#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Snapshot>,
    pub started: Instant,
    pub hostname: String,
}

pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

pub fn control_router(state: AppState) -> Router {
    Router::new()
        .route(&format!("{}/status", hostd_api::API_PREFIX), get(status))
        .with_state(state)
}

async fn health(State(st): State<AppState>) -> Response {
    let report = st.snapshot.borrow().report.clone();
    let code = match report.status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
}

async fn status(State(st): State<AppState>) -> Json<HostStatus> {
    let snap = st.snapshot.borrow().clone();
    Json(HostStatus {
        hostname: st.hostname.clone(),
        hostd_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostd_uptime_seconds: st.started.elapsed().as_secs(),
        units: snap.units,
        health: snap.report,
    })
}

pub async fn bind_health(
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::BindHealth { addr, source })
}

/// Binds the control socket, replacing a stale one from a previous run, then
/// opens it to root and `group` (0660). Until the chmod the socket has the
/// umask's 0755, which only root can connect to, so there is no open window.
pub fn bind_control(
    path: &Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, ServerError> {
    let bind_err = |source| ServerError::BindControl {
        path: path.to_owned(),
        source,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| bind_err(e.into()))?
                .ok_or_else(|| ServerError::NoSuchGroup(name.to_owned()))?
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
    let perm_err = |source| ServerError::Permissions {
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
    use axum::body::Body;
    use axum::http::Request;
    use hostd_api::{ComponentHealth, HealthReport};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state(status: HealthStatus, components: Vec<ComponentHealth>) -> AppState {
        let snap = Snapshot {
            units: vec![],
            report: HealthReport {
                status,
                checked_at: "2026-11-22T00:00:00Z".into(),
                components,
            },
        };
        AppState {
            snapshot: watch::channel(snap).1,
            started: Instant::now(),
            hostname: "test".into(),
        }
    }

    async fn get(
        router: Router,
        uri: &str,
    ) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
        let resp = router
            .oneshot(Request::get(uri).body(Body::empty())?)
            .await?;
        let code = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((code, String::from_utf8(body.to_vec())?))
    }

    #[tokio::test]
    async fn healthy_is_200_with_status_healthy() -> Result<(), Box<dyn std::error::Error>> {
        let (code, body) = get(
            health_router(state(HealthStatus::Healthy, vec![])),
            "/health",
        )
        .await?;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("\"status\":\"healthy\""), "{body}");
        Ok(())
    }

    #[tokio::test]
    async fn degraded_still_answers_200() -> Result<(), Box<dyn std::error::Error>> {
        let (code, _) = get(
            health_router(state(HealthStatus::Degraded, vec![])),
            "/health",
        )
        .await?;
        assert_eq!(code, StatusCode::OK);
        Ok(())
    }

    #[tokio::test]
    async fn unhealthy_is_503_naming_the_component() -> Result<(), Box<dyn std::error::Error>> {
        let failing = ComponentHealth {
            name: "unit:redis".into(),
            status: HealthStatus::Unhealthy,
            reason: Some("redis-server.service is inactive (dead)".into()),
        };
        let (code, body) = get(
            health_router(state(HealthStatus::Unhealthy, vec![failing])),
            "/health",
        )
        .await?;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("unit:redis"), "{body}");
        assert!(body.contains("\"status\":\"unhealthy\""), "{body}");
        Ok(())
    }

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

        let app = control_router(state(HealthStatus::Healthy, vec![]));
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
