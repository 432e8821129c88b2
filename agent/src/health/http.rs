//! `GET /health` on hostd's public listener, for load balancers and
//! CloudWatch: the cached snapshot, never a check. 200 when healthy or
//! degraded, 503 when unhealthy; the body names each component and why.
//! Read-only and secret-free: unit names, states and reasons only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::{HealthReport, HealthStatus};
use serde::Serialize;

use super::HealthHandle;

pub fn routes(health: HealthHandle) -> Router {
    Router::new()
        .route("/health", get(health_answer))
        .with_state(health)
}

/// The body: the report, after a first member that a string-matching
/// health check (Route 53's `HTTP_STR_MATCH`) can search for. `"healthy"`
/// alone cannot tell: an unhealthy body holds it in `"unhealthy"` and in
/// every healthy component.
#[derive(Serialize)]
struct HealthBody<'a> {
    verdict: &'static str,
    #[serde(flatten)]
    report: &'a HealthReport,
}

/// Found only as the verdict: no other text of the body contains them.
pub fn verdict(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "HOST_HEALTHY",
        HealthStatus::Degraded => "HOST_DEGRADED",
        HealthStatus::Unhealthy => "HOST_UNHEALTHY",
    }
}

async fn health_answer(State(health): State<HealthHandle>) -> Response {
    let report = health.snapshot.borrow().report.clone();
    let code = match report.status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = HealthBody {
        verdict: verdict(report.status),
        report: &report,
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use hostd_api::{ComponentHealth, HealthReport};
    use tokio::sync::watch;

    use super::*;
    use crate::health::Snapshot;
    use crate::http::tests::get;

    fn health(status: HealthStatus, components: Vec<ComponentHealth>) -> Router {
        let snap = Snapshot::new(
            vec![],
            HealthReport {
                status,
                checked_at: "2026-11-22T00:00:00Z".into(),
                components,
            },
        );
        routes(HealthHandle {
            snapshot: watch::channel(snap).1,
        })
    }

    #[tokio::test]
    async fn healthy_is_200_with_status_healthy() -> Result<(), Box<dyn std::error::Error>> {
        let (code, body) = get(health(HealthStatus::Healthy, vec![]), "/health").await?;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("\"status\":\"healthy\""), "{body}");
        Ok(())
    }

    #[tokio::test]
    async fn degraded_still_answers_200() -> Result<(), Box<dyn std::error::Error>> {
        let (code, _) = get(health(HealthStatus::Degraded, vec![]), "/health").await?;
        assert_eq!(code, StatusCode::OK);
        Ok(())
    }

    /// What a Route 53 string match searches for is the body's first
    /// member and appears in no body of another verdict, whatever its
    /// components say.
    #[tokio::test]
    async fn the_verdict_comes_first_and_matches_only_its_own_status()
    -> Result<(), Box<dyn std::error::Error>> {
        let all = [
            HealthStatus::Healthy,
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
        ];
        let components: Vec<ComponentHealth> = all
            .iter()
            .map(|s| ComponentHealth {
                name: format!("unit:{}", s.as_str()),
                status: *s,
                reason: Some(format!("{} on purpose", s.as_str())),
            })
            .collect();
        for status in all {
            let (_, body) = get(health(status, components.clone()), "/health").await?;
            let first = format!("{{\"verdict\":\"{}\",", verdict(status));
            assert!(body.starts_with(&first), "{body}");
            for other in all.into_iter().filter(|o| *o != status) {
                assert!(!body.contains(verdict(other)), "{body}");
            }
            let report: HealthReport = serde_json::from_str(&body)?;
            assert_eq!(report.status, status);
        }
        Ok(())
    }

    #[tokio::test]
    async fn unhealthy_is_503_naming_the_component() -> Result<(), Box<dyn std::error::Error>> {
        let failing = ComponentHealth {
            name: "unit:redis".into(),
            status: HealthStatus::Unhealthy,
            reason: Some("redis-server.service is inactive (dead)".into()),
        };
        let (code, body) = get(health(HealthStatus::Unhealthy, vec![failing]), "/health").await?;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("unit:redis"), "{body}");
        assert!(body.contains("\"status\":\"unhealthy\""), "{body}");
        Ok(())
    }
}
