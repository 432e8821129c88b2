//! hostd, the host agent. `run` is the whole daemon; main.rs only parses
//! arguments and maps errors to exit codes.

pub mod config;
pub mod control;
pub mod desired;
pub mod dial;
pub mod health;
pub mod notify;
pub mod server;
pub mod systemd;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::config::Config;
use crate::desired::{DesiredState, ManagerView};
use crate::health::WatchedService;
use crate::server::AppState;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("a server task failed")]
    Serve(#[source] std::io::Error),
}

/// Runs hostd until `shutdown` resolves, then stops accepting, finishes the
/// requests in flight and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let started = Instant::now();
    // Bind first: a port or socket problem should fail fast, before anything
    // else is set up, with the key that caused it.
    let health_listener = server::bind_health(config.health.listen).await?;
    let control_listener =
        control::bind_control(&config.control.socket, config.control.group.as_deref())?;

    let systemd = Arc::new(systemd::Systemd::connect().await?);
    let services: Vec<WatchedService> = config
        .services
        .iter()
        .map(|(name, svc)| WatchedService {
            service: name.clone(),
            unit: svc.unit.clone(),
        })
        .collect();

    let units: Vec<_> = services.iter().map(|s| s.unit.clone()).collect();
    let changes = systemd.unit_changes(&units).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (snapshot, checker) = health::spawn_checker(
        systemd,
        services,
        config.health.check_interval.0,
        changes,
        stop_rx.clone(),
    )
    .await;
    // Until the service manager lands, the view is the reconciled desired
    // state with no history.
    let (_view_tx, view) = watch::channel(ManagerView {
        desired: DesiredState::reconcile_with(&config, None),
        ..ManagerView::default()
    });
    let state = AppState {
        snapshot,
        view,
        started,
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
    };

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let health_server = axum::serve(health_listener, server::health_router(state.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let control_server = axum::serve(control_listener, control::control_router(state))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let health_task = tokio::spawn(async move { health_server.await });
    let control_task = tokio::spawn(async move { control_server.await });

    tracing::info!(
        health = %config.health.listen,
        control = %config.control.socket.display(),
        "hostd serving"
    );
    notify::ready();
    let watchdog = notify::spawn_watchdog();

    shutdown.await;
    tracing::info!("shutting down");
    notify::stopping();
    stop_tx.send_replace(true);
    let (h, c, _) = tokio::join!(health_task, control_task, checker);
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = std::fs::remove_file(&config.control.socket);
    for result in [h, c] {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RunError::Serve(e)),
            Err(e) => return Err(RunError::Serve(std::io::Error::other(e))),
        }
    }
    Ok(())
}
