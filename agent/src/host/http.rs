//! `GET /v1/status`: what `hostctl status` shows for this host.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::{HostStatus, ServiceSummary};

use super::HostHandle;

pub fn routes(host: HostHandle) -> Router {
    Router::new()
        .route(&format!("{}/status", hostd_api::API_PREFIX), get(status))
        .with_state(host)
}

async fn status(State(host): State<HostHandle>) -> Json<HostStatus> {
    let snap = host.snapshot.borrow().clone();
    let view = host.view.borrow().clone();
    let config = host.config.get();
    let services = view
        .desired
        .services
        .iter()
        .map(|(name, d)| {
            let svc = config.services.get(name);
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
        hostname: host.hostname.clone(),
        hostd_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostd_build: host.build(),
        hostd_uptime_seconds: host.started.elapsed().as_secs(),
        units: snap.units,
        services,
        events: view.events,
        health: snap.report,
        instance: host.instance.get().cloned(),
        last_apply: host.last_apply.borrow().clone(),
        shipping: host.shipping.borrow().status(std::time::SystemTime::now()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use axum::http::StatusCode;
    use tokio::sync::watch;

    use super::*;
    use crate::desired::ManagerView;
    use crate::http::tests::get;

    #[tokio::test]
    async fn status_names_the_host_and_the_hostd_version() -> Result<(), Box<dyn std::error::Error>>
    {
        let config = crate::config::Config::parse(std::path::Path::new("t.toml"), "")?;
        let host = HostHandle {
            config: crate::config::CurrentConfig::fixed(Arc::new(config)),
            started: Instant::now(),
            hostname: "test".into(),
            instance: Arc::new(OnceLock::new()),
            build: Arc::new(OnceLock::new()),
            snapshot: crate::health::channel().1,
            view: watch::channel(ManagerView::default()).1,
            last_apply: watch::channel(None).1,
            shipping: crate::cloudwatch::channel().1,
        };
        let (code, body) = get(routes(host), "/v1/status").await?;
        assert_eq!(code, StatusCode::OK);
        let status: HostStatus = serde_json::from_str(&body)?;
        assert_eq!(status.hostname, "test");
        assert_eq!(status.hostd_version, env!("CARGO_PKG_VERSION"));
        Ok(())
    }
}
