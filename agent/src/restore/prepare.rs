//! Everything read-only before a restore: the snapshots chosen, the
//! pieces they put back, and the preconditions checked. An unknown
//! snapshot, a leftover from an earlier restore or a plan that changed
//! since the operator confirmed it stops here, with nothing stopped.

use std::path::PathBuf;

use hostd_api::{BackupKind, RestorePlan, RestoreRequest};

use super::live::Staging;
use super::sequence::Pieces;
use super::{RestoreError, Restorer, paths, pg, plan};
use crate::backup::open_or_init;

/// A resolved restore, ready to run.
pub struct Prepared {
    pub plan: RestorePlan,
    pub(super) pieces: Pieces,
    pub(super) staging: Staging,
}

impl Restorer {
    pub async fn prepare(&self, req: &RestoreRequest) -> Result<Prepared, RestoreError> {
        hostd_api::limits::at_most(
            "lock_wait_seconds",
            req.lock_wait_seconds,
            hostd_api::limits::MAX_LOCK_WAIT_SECONDS,
        )?;
        let ctx = self.backup.context().ok_or(RestoreError::NotConfigured)?;
        let b = ctx.backup()?.clone();
        let wanted = plan::Wanted {
            databases: ctx.databases(),
            redis: b.redis,
            paths: b
                .paths
                .iter()
                .map(|p| p.0.to_string_lossy().into_owned())
                .collect(),
        };
        let (storage, password, options) = ctx.repository().await?;
        let (host, target, only) = (
            ctx.hostname().to_owned(),
            req.snapshot.clone(),
            req.only.clone(),
        );
        let (repo, snapshots, chosen) = tokio::task::spawn_blocking(move || {
            let repo = open_or_init(storage, &password, &options)?;
            let repo = repo.to_indexed().map_err(RestoreError::Index)?;
            let all = repo.get_all_snapshots().map_err(RestoreError::Snapshots)?;
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
        .await??;

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
            let rdb = b.redis_rdb.0.clone();
            let aof = crate::backup::redis_save::loads_append_only(
                ctx.redis_address(),
                password.as_ref(),
                &rdb,
            )
            .await?;
            if aof {
                return Err(RestoreError::AppendOnly);
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
        .await??;

        let stop = self.app_services();
        let plan = RestorePlan {
            snapshots: chosen.clone(),
            stop: stop.clone(),
            restart: if with_redis {
                vec![b.redis_service.clone()]
            } else {
                vec![]
            },
        };
        let pieces = Pieces {
            stop,
            databases,
            redis: redis_rdb.clone().map(|rdb| (rdb, b.redis_service.clone())),
            files,
        };
        Ok(Prepared {
            plan,
            pieces,
            staging: Staging {
                repo,
                snapshots,
                chosen,
                redis_rdb,
            },
        })
    }
}
