//! `GET /metrics` on hostd's public listener: the cached snapshot in
//! OpenMetrics text. A scrape never runs a check.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::MetricsHandle;

pub fn routes(metrics: MetricsHandle) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(m): State<MetricsHandle>) -> Response {
    let snap = m.snapshot.borrow().clone();
    let view = m.view.borrow().clone();
    let front = super::front::fetch(m.front.as_deref()).await;
    let rendered = super::render(&snap, &view).map(|text| match &front {
        Some(stats) => super::front::append_openmetrics(text, stats),
        None => text,
    });
    match rendered {
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

#[cfg(test)]
mod tests {
    use hostd_api::{ComponentHealth, HealthReport, HealthStatus};
    use tokio::sync::watch;

    use super::*;
    use crate::desired::ManagerView;
    use crate::health::Snapshot;
    use crate::http::tests::get;

    #[tokio::test]
    async fn metrics_serves_the_snapshot_in_openmetrics_text()
    -> Result<(), Box<dyn std::error::Error>> {
        let failing = ComponentHealth {
            name: "postgres".into(),
            status: HealthStatus::Unhealthy,
            reason: Some("PostgreSQL at /run/postgresql: connection refused".into()),
        };
        let snap = Snapshot::new(
            vec![],
            HealthReport {
                status: HealthStatus::Unhealthy,
                checked_at: "2026-11-22T00:00:00Z".into(),
                components: vec![failing],
            },
        );
        let router = routes(MetricsHandle {
            snapshot: watch::channel(snap).1,
            view: watch::channel(ManagerView::default()).1,
            front: None,
        });
        let (code, body) = get(router, "/metrics").await?;
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("hostd_component_health{component=\"postgres\"} 2"),
            "{body}"
        );
        assert!(body.contains("hostd_health 2"), "{body}");
        Ok(())
    }
}
