//! hostd, the host agent. `run` is the whole daemon; main.rs only parses
//! arguments and maps errors to exit codes.

pub mod aws;
pub mod backup;
pub mod checks;
pub mod config;
pub mod control;
pub mod deploy;
pub mod desired;
pub mod dial;
pub mod fsutil;
pub mod health;
pub mod instance;
pub mod jobs;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod oplock;
pub mod postgres;
pub mod restore;
pub mod secrets;
pub mod server;
pub mod state_file;
pub mod systemd;
pub mod units;
pub mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::config::Config;
use crate::server::AppState;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Manager(#[from] manager::ManagerError),
    #[error(transparent)]
    Units(#[from] units::UnitsError),
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

    let systemd = systemd::Systemd::connect().await?;
    // Before anything is started: units must be current when the manager
    // brings services up.
    let synced = units::sync(&config.units.source_dir, &config.units.target_dir)?;
    let config = Arc::new(config);
    // Secrets too, before anything is started: credential files and
    // drop-ins in place (or the gate closed) when the manager brings
    // services up. One daemon-reload covers both.
    let (mut secrets_runtime, secrets) = secrets_runtime(&config).await;
    let delivered = secrets_runtime.refresh(std::time::SystemTime::now()).await;
    if !synced.written.is_empty() || delivered.reload {
        systemd.reload().await?;
    }
    if !synced.written.is_empty() {
        systemd.enable(&synced.installable).await?;
    }
    let jobs = jobs::Jobs::new(Arc::clone(&config), systemd.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let manager = manager::spawn(
        systemd.clone(),
        Arc::clone(&config),
        secrets.clone(),
        stop_rx.clone(),
    )
    .await?;
    // Rotation: the refresh task owns the runtime from here on.
    let (secrets_handle, refresher) = secrets::refresh::spawn(
        secrets_runtime,
        secrets.clone(),
        Arc::clone(&config),
        secrets::refresh::Live {
            systemd: systemd.clone(),
            manager: manager.handle.clone(),
            view: manager.view.clone(),
        },
        stop_rx.clone(),
    );

    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let ops_lock = oplock::OpsLock::default();
    let backup_host = config
        .backup
        .as_ref()
        .and_then(|b| b.host.as_ref())
        .map_or_else(|| hostname.clone(), |h| h.as_str().to_owned());
    let (backup_handle, backup_task) = backup::task::spawn(
        Arc::clone(&config),
        secrets.clone(),
        backup_host,
        ops_lock.clone(),
        stop_rx.clone(),
    );
    // After the manager is up (it starts what a restore stopped), in the
    // background: READY does not wait for it.
    tokio::spawn(restore::marker::recover(
        config.state_dir.clone(),
        config.postgres_admin().to_owned(),
        manager.handle.clone(),
    ));
    let restorer = restore::Restorer {
        config: Arc::clone(&config),
        backup: backup_handle.clone(),
        manager: manager.handle.clone(),
        view: manager.view.clone(),
        lock: ops_lock.clone(),
    };
    tokio::spawn({
        let restorer = restorer.clone();
        async move {
            let marker = std::path::Path::new(restore::on_empty::FRESH_MARKER);
            restore::on_empty::run(restorer, marker).await;
        }
    });
    let deployer = deploy::Deployer {
        config: Arc::clone(&config),
        systemd: systemd.clone(),
        manager: manager.handle.clone(),
        lock: ops_lock,
        artifacts: deploy::ArtifactStore::new(&config.state_dir),
        recovered: Arc::default(),
    };
    // Same as a restore's: after the manager is up, in the background.
    tokio::spawn(deploy::marker::recover(deployer.clone()));
    let jobs_task = jobs::spawn(jobs.clone(), stop_rx.clone());
    let mut probes = health::Probes::from_config(&config, Some(secrets));
    probes.backup = config.backup.as_ref().map(|_| backup_handle.state());
    probes.jobs = Some(jobs.status());
    let (snapshot, checker) = health::spawn_checker(
        Arc::new(systemd),
        Arc::clone(&config),
        probes,
        manager.view.clone(),
        manager.changes,
        stop_rx.clone(),
    )
    .await;
    let _ = manager.snapshots.send(snapshot.clone());
    let emf = metrics::spawn_emf_writer(
        Arc::clone(&config),
        snapshot.clone(),
        manager.view.clone(),
        stop_rx.clone(),
    );
    let view = manager.view;
    let state = AppState {
        snapshot,
        view,
        config: Arc::clone(&config),
        started,
        hostname,
        instance: instance::spawn_discovery(),
        build: upgrade::running_build(),
    };

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let health_server = axum::serve(health_listener, server::health_router(state.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let upgrades = upgrade::router(deployer.clone(), std::sync::Arc::clone(&state.build));
    let control_server = axum::serve(
        control_listener,
        control::control_router(
            state,
            manager.handle,
            secrets_handle,
            backup_handle,
            restorer,
        )
        .merge(deploy::http::router(deployer))
        .merge(jobs::http::router(jobs))
        .merge(upgrades)
        .into_make_service_with_connect_info::<control::Peer>(),
    )
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
    let (h, c, _, _, _) = tokio::join!(health_task, control_task, checker, manager.task, refresher);
    if let Some(b) = backup_task {
        // A run in progress is abandoned: rustic writes nothing a reader
        // trusts until the snapshot file, so the repository stays valid.
        b.abort();
        let _ = b.await;
    }
    if let Some(emf) = emf {
        let _ = emf.await;
    }
    let _ = jobs_task.await;
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

/// The runtime over the real SSM source. Without `[secrets]` it fetches
/// nothing (the source is never asked) and only clears drop-ins an earlier
/// configuration left.
async fn secrets_runtime(
    config: &Arc<Config>,
) -> (
    secrets::Runtime<secrets::SsmSource>,
    watch::Receiver<secrets::SecretsState>,
) {
    let source = match &config.secrets {
        Some(s) => secrets::SsmSource::from_config(s).await,
        None => Err(secrets::FetchError::Unreachable {
            prefix: String::new(),
            detail: "no [secrets] section".to_owned(),
        }),
    };
    secrets::Runtime::new(
        Arc::clone(config),
        source,
        secrets::delivery::CREDENTIALS_ROOT.into(),
    )
}

/// 64 random bits, for names that must not repeat (RandomState is seeded
/// from the OS).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A random delay below `spread` (whole milliseconds; zero for a zero
/// spread), to keep hosts started together from acting in the same second.
/// RandomState is seeded from the OS: random enough for spreading, and no
/// extra crate.
pub fn random_delay(spread: std::time::Duration) -> std::time::Duration {
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    if spread_ms == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(random_u64() % spread_ms)
}
