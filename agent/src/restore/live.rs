//! The restore seam on a real host: the service manager stops and starts,
//! PostgreSQL and the filesystem take the data (synchronous work, on
//! blocking threads), rustic_core reads the repository.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hostd_api::{BackupKind, ServiceAction, SnapshotInfo};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, Repository};

use super::events::Events;
use super::seam::{Copies, RestoreHost, StageError, SwapError};
use super::{paths, pg};
use crate::backup::runner::PgTarget;
use crate::manager::{ManagerError, ManagerHandle};

/// What a restore reads: the open repository and the snapshots chosen.
pub struct Staging {
    pub repo: Repository<IndexedFullStatus>,
    pub snapshots: Vec<SnapshotFile>,
    pub chosen: Vec<SnapshotInfo>,
    /// Redis's live RDB path, when Redis is restored.
    pub redis_rdb: Option<PathBuf>,
}

pub struct LiveRestore {
    pub manager: ManagerHandle,
    /// hostd's administrator connection to PostgreSQL.
    pub admin: String,
    /// Taken by the one stage of a restore; None for a recovery, which
    /// stages nothing.
    pub staging: Mutex<Option<Staging>>,
}

async fn blocking<T: Send + 'static, E: From<tokio::task::JoinError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f).await?
}

impl RestoreHost for LiveRestore {
    async fn stop(&self, service: &str) -> Result<(), ManagerError> {
        self.manager
            .action(service.to_owned(), ServiceAction::Stop)
            .await
            .map(drop)
    }

    async fn start(&self, service: &str) -> Result<(), ManagerError> {
        self.manager
            .action(service.to_owned(), ServiceAction::Start)
            .await
            .map(drop)
    }

    async fn stage(&self, events: &Events) -> Result<(), StageError> {
        let taken = self
            .staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(staging) = taken else {
            return Ok(());
        };
        let (events, admin) = (events.clone(), self.admin.clone());
        blocking(move || stage_all(&staging, &admin, &events)).await
    }

    async fn swap_database(&self, db: &str) -> Result<(), SwapError> {
        let (admin, db) = (self.admin.clone(), db.to_owned());
        blocking(move || Ok(pg::swap(&admin, &db)?)).await
    }

    async fn swap_path(&self, path: &Path) -> Result<(), SwapError> {
        let path = path.to_owned();
        blocking(move || Ok(paths::swap(&path)?)).await
    }

    async fn unswap_database(&self, db: &str) -> Result<(), SwapError> {
        let (admin, db) = (self.admin.clone(), db.to_owned());
        blocking(move || Ok(pg::unswap(&admin, &db)?)).await
    }

    async fn unswap_path(&self, path: &Path) -> Result<(), SwapError> {
        let path = path.to_owned();
        blocking(move || Ok(paths::unswap(&path)?)).await
    }

    async fn drop_copies(&self, which: Copies, databases: &[String], live: &[PathBuf]) {
        let (admin, databases, live) = (self.admin.clone(), databases.to_vec(), live.to_vec());
        let dropped = tokio::task::spawn_blocking(move || {
            drop_copies(which, &admin, &databases, &live);
        })
        .await;
        if dropped.is_err() {
            tracing::error!("the clean-up thread of the restore failed");
        }
    }
}

fn stage_all(staging: &Staging, admin: &str, ev: &Events) -> Result<(), StageError> {
    let pg = PgTarget::from_conninfo(admin).ok_or(StageError::NotConninfo)?;
    let repo = &staging.repo;
    for info in &staging.chosen {
        let snap = staging
            .snapshots
            .iter()
            .find(|s| s.id.to_hex().to_string() == info.id)
            .ok_or_else(|| StageError::Vanished(info.id.clone()))?;
        match (info.kind, &info.database) {
            (BackupKind::Postgres, Some(db)) => {
                let step = format!("restore postgres {db}");
                let file = format!("{db}.dump");
                let node = repo.node_from_snapshot_and_path(snap, &file).map_err(|e| {
                    StageError::Find {
                        file: file.clone(),
                        snapshot: info.id.clone(),
                        detail: e.display_log(),
                    }
                })?;
                let t = ev.step(&step);
                let progress = ev.progress(&step, Some(node.meta.size));
                pg::stage(repo, &node, &pg, admin, db, progress)?;
                ev.done(&step, t);
            }
            (BackupKind::Redis, _) => {
                let (Some(source), Some(dest)) = (info.paths.first(), staging.redis_rdb.as_ref())
                else {
                    return Err(StageError::Find {
                        file: "Redis's RDB".into(),
                        snapshot: info.id.clone(),
                        detail: "the snapshot names no file".into(),
                    });
                };
                let t = ev.step("restore redis");
                paths::stage(repo, snap, Path::new(source), dest)?;
                ev.done("restore redis", t);
            }
            (BackupKind::Files, _) => {
                for path in &info.paths {
                    let step = format!("restore {path}");
                    let t = ev.step(&step);
                    paths::stage(repo, snap, Path::new(path), Path::new(path))?;
                    ev.done(&step, t);
                }
            }
            (BackupKind::Postgres, None) => {}
        }
    }
    Ok(())
}

fn drop_copies(which: Copies, admin: &str, databases: &[String], live_paths: &[PathBuf]) {
    type DropDb = fn(&str, &str) -> Result<(), pg::PgRestoreError>;
    type DropPath = fn(&Path) -> Result<(), paths::PathsError>;
    let (drop_db, drop_path, what): (DropDb, DropPath, &str) = match which {
        Copies::Staged => (
            pg::drop_staging,
            paths::drop_staged,
            "removing what the restore staged",
        ),
        Copies::Previous => (pg::drop_previous, paths::drop_previous, "after the restore"),
    };
    for db in databases {
        if let Err(e) = drop_db(admin, db) {
            tracing::error!("{what}: {e}");
        }
    }
    for p in live_paths {
        if let Err(e) = drop_path(p) {
            tracing::error!("{what}: {e}");
        }
    }
}
