//! hostd's public face: `/health` (and `/metrics`) on TCP for load
//! balancers, CloudWatch and Prometheus. Read-only and secret-free: bodies
//! carry unit names, states and figures only.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::HealthStatus;
use tokio::sync::watch;

use crate::desired::ManagerView;
use crate::health::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for /health on {addr} (health.listen)")]
    BindHealth {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the HTTP handlers read: the latest health snapshot and the service
/// manager's view, both published through `watch` channels.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Snapshot>,
    pub view: watch::Receiver<ManagerView>,
    pub config: std::sync::Arc<crate::config::Config>,
    pub started: Instant,
    pub hostname: String,
    /// Set once IMDSv2 answered (never off EC2).
    pub instance: std::sync::Arc<std::sync::OnceLock<hostd_api::InstanceIdentity>>,
    /// sha256 of the running binary, once hashed.
    pub build: std::sync::Arc<std::sync::OnceLock<String>>,
}

pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
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

/// Renders the cached snapshot: a scrape never runs a check.
async fn metrics(State(st): State<AppState>) -> Response {
    let snap = st.snapshot.borrow().clone();
    let view = st.view.borrow().clone();
    match crate::metrics::render(&snap, &view) {
        Ok(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub async fn bind_health(
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::BindHealth { addr, source })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use hostd_api::{ComponentHealth, HealthReport};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    pub(crate) fn state(status: HealthStatus, components: Vec<ComponentHealth>) -> AppState {
        let snap = Snapshot::new(
            vec![],
            HealthReport {
                status,
                checked_at: "2026-11-22T00:00:00Z".into(),
                components,
            },
        );
        AppState {
            snapshot: watch::channel(snap).1,
            view: watch::channel(ManagerView::default()).1,
            config: std::sync::Arc::new(
                crate::config::Config::parse(std::path::Path::new("t.toml"), "")
                    .unwrap_or_else(|e| unreachable!("empty config is valid: {e}")),
            ),
            started: Instant::now(),
            hostname: "test".into(),
            instance: Default::default(),
            build: Default::default(),
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
    async fn metrics_serves_the_snapshot_in_openmetrics_text()
    -> Result<(), Box<dyn std::error::Error>> {
        let failing = ComponentHealth {
            name: "postgres".into(),
            status: HealthStatus::Unhealthy,
            reason: Some("PostgreSQL at /run/postgresql: connection refused".into()),
        };
        let (code, body) = get(
            health_router(state(HealthStatus::Unhealthy, vec![failing])),
            "/metrics",
        )
        .await?;
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("hostd_component_health{component=\"postgres\"} 2"),
            "{body}"
        );
        assert!(body.contains("hostd_health 2"), "{body}");
        Ok(())
    }
}
