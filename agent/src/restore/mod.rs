//! `hostctl restore`: a backup run put back on this host.
//!
//! Order: plan (read-only; an unknown snapshot stops here, nothing
//! stopped) → the operations lock → app services stopped → every piece
//! restored into a staging copy beside the live one → swapped in (renames)
//! → services started and healthy → previous copies dropped. A failure
//! before the swap changes nothing; hostd killed mid-restore is put right
//! by the next hostd ([`marker::recover`]). hostd runs it to the end even
//! if hostctl goes away.

pub mod marker;
pub mod on_empty;
pub mod paths;
pub mod pg;
pub mod plan;
mod run;

use std::path::PathBuf;
use std::sync::Arc;

use hostd_api::{BackupKind, RestorePlan, RestoreRequest};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, Repository};
use tokio::sync::watch;

use crate::backup::{BackupHandle, BackupState, Context, open_or_init};
use crate::config::Config;
use crate::desired::ManagerView;
use crate::manager::ManagerHandle;
use crate::oplock::{LockError, OpsLock};

pub use run::{Events, execute as run_restore};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("backups are not configured on this host (no [backup] section in hostd.toml)")]
    NotConfigured,
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error("{0}")]
    Repository(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Pg(#[from] pg::PgRestoreError),
    #[error(transparent)]
    Paths(#[from] paths::PathsError),
    #[error("{0}")]
    Redis(String),
    #[error("backup.redis_service: no service `{name}` in [services] (configured: {})", .known.join(", "))]
    NoRedisService { name: String, known: Vec<String> },
    #[error(
        "the plan changed since it was confirmed (a backup ended in between?): it now restores {}; nothing changed, run the restore again",
        .now.join(", ")
    )]
    PlanChanged { now: Vec<String> },
    #[error("the restore thread failed")]
    Worker,
}

impl RestoreError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured | Self::Plan(plan::PlanError::UnknownSnapshot(_)) => 404,
            Self::Plan(_)
            | Self::Pg(pg::PgRestoreError::PreviousLeft { .. })
            | Self::Paths(paths::PathsError::PreviousLeft { .. })
            | Self::NoRedisService { .. } => 422,
            Self::Lock(_) | Self::PlanChanged { .. } => 409,
            Self::Repository(_) | Self::Pg(_) | Self::Paths(_) | Self::Redis(_) | Self::Worker => {
                500
            }
        }
    }
}

/// What the control API holds to run restores.
#[derive(Clone)]
pub struct Restorer {
    pub config: Arc<Config>,
    pub backup: BackupHandle,
    pub manager: ManagerHandle,
    pub view: watch::Receiver<ManagerView>,
    pub lock: OpsLock,
}

/// A resolved restore, ready to run: the plan and the open repository.
pub struct Prepared {
    pub plan: RestorePlan,
    ctx: Arc<Context>,
    repo: Repository<IndexedFullStatus>,
    snapshots: Vec<SnapshotFile>,
    /// Redis's live RDB path, when Redis is restored.
    redis_rdb: Option<PathBuf>,
    /// The databases restored.
    databases: Vec<String>,
    /// The paths of the files snapshots restored.
    files: Vec<PathBuf>,
}

/// Who holds the operations lock for `req`.
pub fn holder(req: &RestoreRequest) -> crate::oplock::Holder {
    crate::oplock::Holder::new(format!("restore {}", req.snapshot), &req.requested_by)
}

impl Restorer {
    /// App services: the clients of the data, stopped while it is replaced.
    fn app_services(&self) -> Vec<String> {
        let view = self.view.borrow();
        self.config
            .services
            .iter()
            .filter(|(_, s)| s.unit.is_template() || s.database.is_some())
            .filter(|(name, _)| view.desired.services.get(*name).is_some_and(|d| d.running))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Everything read-only: snapshots chosen, preconditions checked.
    pub async fn prepare(&self, req: &RestoreRequest) -> Result<Prepared, RestoreError> {
        let ctx = self.backup.context().ok_or(RestoreError::NotConfigured)?;
        let b = ctx
            .backup()
            .map_err(|_| RestoreError::NotConfigured)?
            .clone();
        let wanted = plan::Wanted {
            databases: ctx.databases(),
            redis: b.redis,
            files: !b.paths.is_empty(),
        };
        let (storage, password, options) =
            ctx.repository().await.map_err(RestoreError::Repository)?;
        let (host, target, only) = (
            ctx.hostname().to_owned(),
            req.snapshot.clone(),
            req.only.clone(),
        );
        let (repo, snapshots, chosen) = tokio::task::spawn_blocking(move || {
            let repo = open_or_init(storage, &password, &options)
                .map_err(|e| RestoreError::Repository(hostd_api::error_chain(&e)))?;
            let repo = repo.to_indexed().map_err(|e| {
                RestoreError::Repository(format!(
                    "reading the repository index: {}",
                    e.display_log()
                ))
            })?;
            let all = repo.get_all_snapshots().map_err(|e| {
                RestoreError::Repository(format!("listing snapshots: {}", e.display_log()))
            })?;
            let infos: Vec<_> = all
                .iter()
                .filter(|s| s.hostname == host)
                .filter_map(crate::backup::engine::info)
                .collect();
            let chosen = plan::select(&infos, &target, &only, &wanted)?;
            let files = all
                .into_iter()
                .filter(|s| chosen.iter().any(|c| c.id == s.id.to_hex().to_string()))
                .collect::<Vec<_>>();
            Ok::<_, RestoreError>((repo, files, chosen))
        })
        .await
        .map_err(|_| RestoreError::Worker)??;

        if !req.confirmed.is_empty() {
            let mut now: Vec<String> = chosen.iter().map(|s| s.id.clone()).collect();
            let mut confirmed = req.confirmed.clone();
            now.sort();
            confirmed.sort();
            if now != confirmed {
                return Err(RestoreError::PlanChanged {
                    now: now.iter().map(|id| id.chars().take(8).collect()).collect(),
                });
            }
        }
        let databases: Vec<String> = chosen.iter().filter_map(|s| s.database.clone()).collect();
        let files: Vec<PathBuf> = chosen
            .iter()
            .filter(|s| s.kind == BackupKind::Files)
            .flat_map(|s| s.paths.iter().map(PathBuf::from))
            .collect();
        let with_redis = chosen.iter().any(|s| s.kind == BackupKind::Redis);
        let redis_rdb = if with_redis {
            if !self.config.services.contains_key(&b.redis_service) {
                return Err(RestoreError::NoRedisService {
                    name: b.redis_service.clone(),
                    known: self.config.services.keys().cloned().collect(),
                });
            }
            let password = ctx.redis_password();
            let (rdb, aof) = crate::backup::redis_save::load_source(
                self.config.redis_address(),
                password.as_ref(),
            )
            .await
            .map_err(|e| RestoreError::Redis(e.to_string()))?;
            if aof {
                return Err(RestoreError::Redis(
                    "Redis runs with appendonly yes: it would load its append-only file, not the \
                     restored RDB; turn appendonly off or restore with --only postgres,files"
                        .into(),
                ));
            }
            Some(rdb)
        } else {
            None
        };
        let admin = ctx.admin().to_owned();
        let mut check_paths = files.clone();
        check_paths.extend(redis_rdb.clone());
        let dbs = databases.clone();
        tokio::task::spawn_blocking(move || {
            if !dbs.is_empty() {
                pg::preflight(&admin, &dbs)?;
            }
            paths::preflight(&check_paths)?;
            Ok::<_, RestoreError>(())
        })
        .await
        .map_err(|_| RestoreError::Worker)??;

        let plan = RestorePlan {
            snapshots: chosen,
            stop: self.app_services(),
            restart: if with_redis {
                vec![b.redis_service.clone()]
            } else {
                vec![]
            },
        };
        Ok(Prepared {
            plan,
            ctx,
            repo,
            snapshots,
            redis_rdb,
            databases,
            files,
        })
    }

    pub fn backup_state(&self) -> watch::Receiver<BackupState> {
        self.backup.state()
    }
}
