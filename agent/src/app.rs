//! The wiring: each subsystem's settings from the validated config, the
//! subsystems spawned in dependency order, their routes merged onto the
//! two listeners, and every task tied to one [`Lifetime`] that shutdown
//! joins. What each subsystem does lives in its own folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;

use crate::config::{Config, CurrentConfig};
use crate::host_config::Loaded;
use crate::lifetime::Lifetime;
use crate::systemd::Systemd;
use crate::{
    backup, cloudwatch, deploy, health, host, host_config, http, jobs, manager, metrics, notify,
    ops, restore, secrets, units, upgrade,
};

/// How long shutdown waits for every task: a running operation gets
/// [`ops::SHUTDOWN_GRACE`] of it, and systemd allows hostd 20 s in all.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(18);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[error(transparent)]
    Listen(#[from] http::HttpError),
    #[error(transparent)]
    Manager(#[from] manager::ManagerError),
    #[error(transparent)]
    Units(#[from] units::UnitsError),
    #[error("a server task failed")]
    Serve(#[source] std::io::Error),
}

/// Runs hostd until `shutdown` resolves, then stops accepting, lets the
/// work in flight end (bounded) and returns. `path`: where `loaded` came
/// from, which applies and reloads replace.
pub async fn run(
    loaded: Loaded,
    path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let started = Instant::now();
    let config = Config::clone(&loaded.config);
    let lifetime = Lifetime::new();
    // Bind first: a port or socket problem should fail fast, before anything
    // else is set up, with the key that caused it.
    let public_listener = http::bind_health(config.health.listen).await?;
    let control_listener =
        http::bind_control(&config.control.socket, config.control.group.as_deref())?;
    let systemd = Systemd::connect().await?;
    // Unit files and secrets in place (or the secrets gate closed) before
    // the manager brings anything up; one daemon-reload covers both.
    let synced = units::sync(&config.units.source_dir, &config.units.target_dir)?;
    let apps_changed = units::apps::install(&config, &systemd).await?;
    let front_sockets = units::front::install(&config)?;
    let config = Arc::new(config);
    let prepared = secrets::prepare(&config).await;
    if !synced.written.is_empty() || apps_changed || front_sockets.changed || prepared.reload {
        systemd.reload().await?;
    }
    if !synced.written.is_empty() {
        systemd.enable(&synced.installable).await?;
    }
    // Not fatal: without its front, an app on a port is unreachable (and
    // its deploys say why), but everything else is served.
    if let Err(e) = units::front::start(&systemd, &front_sockets).await {
        tracing::error!("{}", hostd_api::error_chain(&e));
    }
    let loaded = Loaded {
        config: Arc::clone(&config),
        ..loaded
    };
    let at_start = AtStart {
        loaded,
        path,
        started,
    };
    let routes = spawn_all(at_start, systemd, prepared, &lifetime).await?;
    let servers = [
        http::serve_tcp(
            public_listener,
            routes.public,
            http::PublicLimits::default(),
            &lifetime,
        ),
        http::serve_unix(control_listener, routes.control, &lifetime),
    ];
    tracing::info!(
        health = %config.health.listen,
        control = %config.control.socket.display(),
        "hostd serving"
    );
    notify::ready();
    notify::spawn_watchdog(&lifetime);

    shutdown.await;
    tracing::info!("shutting down");
    notify::stopping();
    lifetime.finish(SHUTDOWN_BOUND).await;
    let _ = std::fs::remove_file(&config.control.socket);
    for server in servers {
        if server.is_finished() {
            server
                .await
                .map_err(|e| RunError::Serve(std::io::Error::other(e)))?
                .map_err(RunError::Serve)?;
        }
    }
    Ok(())
}

struct Routes {
    /// `/health` and `/metrics` on TCP.
    public: Router,
    /// The control API on the Unix socket.
    control: Router,
}

/// What hostd started from.
struct AtStart {
    loaded: Loaded,
    path: PathBuf,
    started: Instant,
}

/// Every subsystem, each after those it depends on. Those that read the
/// configuration per request or per round follow [`CurrentConfig`];
/// secrets and backup keep the one they started with (an apply that
/// changes theirs asks for a restart of hostd).
async fn spawn_all(
    at_start: AtStart,
    systemd: Systemd,
    prepared: secrets::Prepared,
    lifetime: &Lifetime,
) -> Result<Routes, RunError> {
    let config = &at_start.loaded.config;
    let (switch, current) = CurrentConfig::new(Arc::clone(config));
    let ops = ops::spawn(lifetime);
    let front = Arc::new(crate::front::client::LiveFront::new(
        std::path::Path::new(crate::front::client::ROUTES_FILE),
        std::path::Path::new(crate::front::client::CONTROL_SOCKET),
    ));
    let secrets_state = prepared.state.clone();
    let (publish_health, snapshots) = health::channel();
    let apply_snapshots = snapshots.clone();
    let manager_deps = manager::Deps {
        units: systemd.clone(),
        gate: Arc::new(manager::probe::HttpGate),
        routing: Arc::clone(&front) as Arc<dyn crate::front::client::Routing>,
        secrets: secrets_state.clone(),
        snapshots,
    };
    let manager = manager::spawn(Arc::clone(config), manager_deps, lifetime).await?;
    let apply = secrets::refresh::Live {
        units: systemd.clone(),
        manager: manager.clone(),
    };
    let secrets = secrets::refresh::spawn(
        prepared.runtime,
        prepared.state,
        current.clone(),
        apply,
        secrets::source_for,
        lifetime,
    );
    let backup_deps = backup::Deps {
        secrets: secrets_state.clone(),
        ops: ops.view(),
    };
    let backup = backup::spawn(Arc::clone(config), backup_deps, lifetime);
    let jobs_status = tokio::sync::watch::channel(Vec::new()).0;
    let jobs = jobs::spawn(current.clone(), systemd.clone(), jobs_status, lifetime);
    let (publish_shipping, shipping) = cloudwatch::channel();
    let health_deps = health::Deps {
        units: systemd.clone(),
        view: manager.view(),
        changes: manager.changes(),
        secrets: Some(secrets_state.clone()),
        backup: Some(backup.state()),
        jobs: jobs.status(),
        shipping: Some(Arc::new(cloudwatch::Judged(shipping.clone()))),
    };
    let health = health::spawn(current.clone(), health_deps, publish_health, lifetime).await;
    let any_front = config
        .services
        .values()
        .any(|s| s.is_app() && s.port.is_some());
    let metrics_deps = metrics::Deps {
        snapshot: health.snapshot(),
        view: manager.view(),
        front: any_front.then_some(front),
    };
    let metrics = metrics::spawn(current.clone(), metrics_deps.clone(), lifetime);
    let last_apply = host_config::last_apply(&config.state_dir);
    let host_deps = host::Deps {
        snapshot: health.snapshot(),
        view: manager.view(),
        last_apply: last_apply.subscribe(),
        shipping,
    };
    let host = host::spawn(current.clone(), host_deps, at_start.started, lifetime);
    let cloudwatch_deps = cloudwatch::Deps {
        secrets: secrets_state,
        metrics: metrics_deps,
        instance: host.instance(),
        metadata_disabled: host::metadata_disabled(),
        hostname: host::hostname(),
    };
    let cloudwatch =
        cloudwatch::spawn(current.clone(), cloudwatch_deps, publish_shipping, lifetime);
    let host_config = host_config::spawn(
        host_config::Deps {
            path: at_start.path,
            running: at_start.loaded.clone(),
            switch,
            systemd: systemd.clone(),
            manager: manager.clone(),
            jobs: jobs.clone(),
            secrets: secrets.clone(),
            backup: backup.clone(),
            ops: ops.clone(),
            snapshots: apply_snapshots,
            last_apply,
        },
        lifetime,
    );
    let operations = operations(&current, systemd, &manager, &backup, &host, &ops, lifetime).await;
    Ok(Routes {
        public: health::http::routes(health).merge(metrics::http::routes(metrics)),
        control: host::http::routes(host)
            .merge(manager::http::routes(manager))
            .merge(secrets::http::routes(secrets))
            .merge(backup::http::routes(backup))
            .merge(jobs::http::routes(jobs))
            .merge(ops::http::routes(ops))
            .merge(host_config::http::routes(host_config))
            .merge(cloudwatch::http::routes(cloudwatch))
            .merge(operations),
    })
}

/// What runs as operations (restores, deploys, upgrades), with the
/// recovery of interrupted ones queued first: once the manager runs (it
/// starts what an interrupted restore stopped), before hostctl can ask
/// anything. Their routes.
async fn operations(
    config: &CurrentConfig,
    systemd: Systemd,
    manager: &manager::ManagerHandle,
    backup: &backup::BackupHandle,
    host: &host::HostHandle,
    ops: &ops::OpsHandle,
    lifetime: &Lifetime,
) -> Router {
    let artifacts = deploy::ArtifactStore::new(&config.get().state_dir);
    let restorer = restore::Restorer {
        config: config.clone(),
        backup: backup.clone(),
        manager: manager.clone(),
        ops: ops.clone(),
        lifetime: lifetime.clone(),
    };
    let deployer = deploy::Deployer {
        config: config.clone(),
        host: deploy::LiveHost {
            units: systemd.clone(),
            manager: manager.clone(),
        },
        ops: ops.clone(),
        artifacts: artifacts.clone(),
        lifetime: lifetime.clone(),
    };
    let upgrader = upgrade::Upgrader {
        ops: ops.clone(),
        artifacts,
        host: host.clone(),
        systemd,
        lifetime: lifetime.clone(),
    };
    let recoveries = [
        restorer.recovery(),
        deploy::marker::recovery(deployer.clone()),
    ];
    for op in recoveries.into_iter().flatten() {
        if let Err(e) = ops.submit(op).await {
            tracing::error!("cannot start the recovery of an interrupted operation: {e}");
        }
    }
    lifetime.spawn(
        "restore on empty data",
        restore::on_empty::run(restorer.clone(), Path::new(restore::on_empty::FRESH_MARKER)),
    );
    restore::http::routes(restorer)
        .merge(deploy::http::routes(deployer))
        .merge(upgrade::http::routes(upgrader))
}
