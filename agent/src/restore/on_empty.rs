//! `backup.restore_on_empty`: the disaster-recovery runbook as one step. A
//! new instance from the image, with an empty data volume, restores the
//! latest backup by itself when hostd starts.
//!
//! "Empty" is decided once, before PostgreSQL first starts, by the first-boot
//! preparation (`hostd-data.service`): when it had to create the cluster on
//! /data it leaves [`FRESH_MARKER`]. hostd removes the marker when the
//! restore is done, or finds nothing to restore, so a later restart never
//! restores over data written since.

use std::path::Path;
use std::time::Duration;

use hostd_api::{RestoreEvent, RestoreRequest};

use super::{RestoreError, Restorer, plan::PlanError};

/// Left by packer/files/prepare-data when it initialised an empty /data.
pub const FRESH_MARKER: &str = "/data/.hostd-fresh";
/// How long to keep trying while secrets (the repository password) and
/// PostgreSQL come up on a fresh boot.
const PATIENCE: Duration = Duration::from_secs(600);
const RETRY: Duration = Duration::from_secs(5);
const WHO: &str = "hostd (backup.restore_on_empty)";

fn remove(marker: &Path) {
    if let Err(e) = std::fs::remove_file(marker) {
        tracing::error!("cannot remove {}: {e}", marker.display());
    }
}

/// Runs in the background from hostd's start.
pub async fn run(r: Restorer, marker: &Path) {
    tokio::select! {
        () = restore_if_fresh(&r, marker) => {}
        () = r.lifetime.ending() => {}
    }
}

async fn restore_if_fresh(r: &Restorer, marker: &Path) {
    if !marker.exists() {
        return;
    }
    let wanted = r
        .config
        .get()
        .backup
        .as_ref()
        .is_some_and(|b| b.restore_on_empty);
    if !wanted {
        tracing::info!(
            "/data was empty at first boot; backup.restore_on_empty is off, so the services start with empty data (`hostctl restore latest` brings a backup back)"
        );
        remove(marker);
        return;
    }
    tracing::warn!(
        "/data was empty at first boot: restoring the latest backup (backup.restore_on_empty)"
    );
    let req = RestoreRequest {
        snapshot: "latest".into(),
        only: vec![],
        dry_run: false,
        requested_by: WHO.into(),
        confirmed: vec![],
        lock_wait_seconds: PATIENCE.as_secs(),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let prepared = loop {
        match roles_ready(r).await {
            Ok(()) => {}
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(
                    "restore_on_empty: PostgreSQL not ready yet ({}); retrying",
                    hostd_api::error_chain(&e)
                );
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::error!(
                    "restore_on_empty gave up: PostgreSQL never became ready: {}",
                    hostd_api::error_chain(&e)
                );
                return;
            }
        }
        match r.prepare(&req).await {
            Ok(p) => break p,
            // The repository holds a snapshot that would restore what this
            // host does not back up: refused for good, like an empty
            // repository (a later restore would overwrite data written
            // from now on).
            Err(RestoreError::Plan(e @ PlanError::Untrusted { .. })) => {
                tracing::error!(
                    "restore_on_empty refused the latest backup: {e}; starting with empty data"
                );
                remove(marker);
                return;
            }
            Err(RestoreError::Plan(
                e @ (PlanError::Missing { .. }
                | PlanError::Nothing(_)
                | PlanError::UnknownSnapshot(_)),
            )) => {
                tracing::warn!(
                    "restore_on_empty: nothing to restore ({e}); starting with empty data"
                );
                remove(marker);
                return;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!("restore_on_empty: not ready yet ({e}); retrying");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => {
                tracing::error!(
                    "restore_on_empty gave up after {}s: {e}; the marker {} stays, so the next start tries again",
                    PATIENCE.as_secs(),
                    marker.display()
                );
                return;
            }
        }
    };
    let (events, mut rx) = super::Events::new();
    events.plan(&prepared.plan, false);
    if let Err(e) = r.ops.submit(r.operation(prepared, req, events)).await {
        tracing::error!("restore_on_empty: the restore did not run: {e}");
        return;
    }
    let mut ok = false;
    while let Some(event) = rx.recv().await {
        if let RestoreEvent::Finished { ok: done, .. } = event {
            ok = done;
        }
    }
    if ok {
        remove(marker);
    }
}

/// The app databases' roles, which the dumps name as owners, exist before
/// pg_restore runs (the manager creates them too, but maybe not yet).
async fn roles_ready(r: &Restorer) -> Result<(), crate::postgres::PgError> {
    let config = r.config.get();
    for svc in config.services.values() {
        if let Some(db) = &svc.database {
            crate::postgres::ensure_app_database(config.postgres_admin(), db, None).await?;
        }
    }
    Ok(())
}
