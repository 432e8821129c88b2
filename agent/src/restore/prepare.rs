//! Everything read-only before a restore: the snapshots chosen, the
//! pieces they put back, and the preconditions checked. An unknown
//! snapshot, a leftover from an earlier restore, a mount point, a file
//! system without room or a plan that changed since the operator
//! confirmed it stops here, with nothing stopped.

use std::path::PathBuf;

use hostd_api::{BackupKind, RestorePlan, RestoreRequest, SnapshotInfo};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, Repository};

use super::live::Staging;
use super::room::{self, Need};
use super::sequence::Pieces;
use super::swap::RedisRdb;
use super::{RestoreError, Restorer, paths, pg, plan};
use crate::backup::{Context as BackupContext, open_or_init};

/// A resolved restore, ready to run.
pub struct Prepared {
    pub plan: RestorePlan,
    pub(super) pieces: Pieces,
    pub(super) staging: Staging,
}

/// The chosen snapshots, read from the repository, with the bytes each
/// puts back (the dump of a database; each path of the others).
struct Chosen {
    repo: Repository<IndexedFullStatus>,
    snapshots: Vec<SnapshotFile>,
    infos: Vec<SnapshotInfo>,
    bytes: Vec<Vec<u64>>,
}

impl Restorer {
    pub async fn prepare(&self, req: &RestoreRequest) -> Result<Prepared, RestoreError> {
        hostd_api::limits::at_most(
            "lock_wait_seconds",
            req.lock_wait_seconds,
            hostd_api::limits::MAX_LOCK_WAIT_SECONDS,
        )?;
        let ctx = self.backup.context().ok_or(RestoreError::NotConfigured)?;
        let chosen = choose(&ctx, req).await?;
        if !req.confirmed.is_empty() {
            confirmed_unchanged(&chosen.infos, &req.confirmed)?;
        }
        let databases: Vec<String> = chosen
            .infos
            .iter()
            .filter_map(|s| s.database.clone())
            .collect();
        let files: Vec<PathBuf> = chosen
            .infos
            .iter()
            .filter(|s| s.kind == BackupKind::Files)
            .flat_map(|s| s.paths.iter().map(PathBuf::from))
            .collect();
        let redis = self.redis_rdb(&ctx, &chosen.infos).await?;
        let pieces = Pieces {
            stop: self.app_services(),
            databases,
            redis,
            files,
        };
        preflight(ctx.admin().to_owned(), &pieces, &chosen).await?;
        let plan = RestorePlan {
            snapshots: chosen.infos.clone(),
            stop: pieces.stop.clone(),
            restart: pieces.redis.iter().map(|r| r.service.clone()).collect(),
            notes: incomplete_notes(self.backup.state().borrow().last_run.as_ref()),
        };
        Ok(Prepared {
            plan,
            staging: Staging {
                repo: chosen.repo,
                snapshots: chosen.snapshots,
                chosen: chosen.infos,
                redis_rdb: pieces.redis.as_ref().map(|r| r.rdb.clone()),
            },
            pieces,
        })
    }

    /// Redis's RDB as this host's config has it, when Redis is restored;
    /// refused while Redis would load its append-only file instead.
    async fn redis_rdb(
        &self,
        ctx: &BackupContext,
        chosen: &[SnapshotInfo],
    ) -> Result<Option<RedisRdb>, RestoreError> {
        if !chosen.iter().any(|s| s.kind == BackupKind::Redis) {
            return Ok(None);
        }
        let b = ctx.backup()?;
        let config = self.config.get();
        if !config.services.contains_key(&b.redis_service) {
            return Err(RestoreError::NoRedisService {
                name: b.redis_service.clone(),
                known: config.services.keys().cloned().collect(),
            });
        }
        let rdb = b.redis_rdb.0.clone();
        let password = ctx.redis_password();
        let aof = crate::backup::redis_save::loads_append_only(
            ctx.redis_address(),
            password.as_ref(),
            &rdb,
        )
        .await?;
        if aof {
            return Err(RestoreError::AppendOnly);
        }
        Ok(Some(RedisRdb {
            rdb,
            service: b.redis_service.clone(),
        }))
    }
}

/// The snapshots of this host the request names, checked against what
/// this host's config backs up, and their sizes.
async fn choose(ctx: &BackupContext, req: &RestoreRequest) -> Result<Chosen, RestoreError> {
    let b = ctx.backup()?;
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
    tokio::task::spawn_blocking(move || {
        let storage = crate::backup::read_ahead::ReadAhead::new(storage);
        let repo = open_or_init(storage, &password, &options)?;
        let repo = repo.to_indexed().map_err(RestoreError::Index)?;
        let all = repo.get_all_snapshots().map_err(RestoreError::Snapshots)?;
        let infos: Vec<_> = all
            .iter()
            .filter(|s| s.hostname == host)
            .filter_map(crate::backup::engine::info)
            .collect();
        let infos = plan::select(&infos, &target, &only, &wanted)?;
        let snapshots: Vec<SnapshotFile> = all
            .into_iter()
            .filter(|s| infos.iter().any(|c| c.id == s.id.to_hex().to_string()))
            .collect();
        let mut bytes = Vec::with_capacity(infos.len());
        for info in &infos {
            let snap = snapshots
                .iter()
                .find(|s| s.id.to_hex().to_string() == info.id);
            bytes.push(match (snap, info.kind, &info.database) {
                (Some(snap), BackupKind::Postgres, Some(db)) => {
                    vec![room::stored_bytes(&repo, snap, &format!("{db}.dump"))?]
                }
                (Some(snap), _, _) => info
                    .paths
                    .iter()
                    .map(|p| room::stored_bytes(&repo, snap, p))
                    .collect::<Result<_, _>>()?,
                (None, ..) => Vec::new(),
            });
        }
        Ok(Chosen {
            repo,
            snapshots,
            infos,
            bytes,
        })
    })
    .await?
}

/// The parts the last run could not back up: what is restored of them is
/// older than the rest, or absent.
fn incomplete_notes(last: Option<&hostd_api::BackupRun>) -> Vec<String> {
    let Some(run) = last.filter(|r| !r.incomplete.is_empty()) else {
        return Vec::new();
    };
    let why = run.error.as_deref().unwrap_or("no reason recorded");
    vec![format!(
        "the last backup run ({}) could not back up {} ({why}): what this plan restores of it comes from an earlier run",
        run.started,
        run.incomplete.join(", ")
    )]
}

/// The operator confirmed a plan of these snapshots; a backup that ended
/// in between may have changed what `latest` means.
fn confirmed_unchanged(chosen: &[SnapshotInfo], confirmed: &[String]) -> Result<(), RestoreError> {
    let mut now: Vec<String> = chosen.iter().map(|s| s.id.clone()).collect();
    let mut confirmed = confirmed.to_vec();
    now.sort();
    confirmed.sort();
    if now == confirmed {
        return Ok(());
    }
    Err(RestoreError::PlanChanged {
        now: now.iter().map(|id| id.chars().take(8).collect()).collect(),
    })
}

/// Leftovers of an earlier restore, mount points and room, all before
/// anything is stopped.
async fn preflight(admin: String, pieces: &Pieces, chosen: &Chosen) -> Result<(), RestoreError> {
    let live_paths = pieces.live_paths();
    let databases = pieces.databases.clone();
    let rdb = pieces.redis.as_ref().map(|r| r.rdb.clone());
    let sized: Vec<(SnapshotInfo, Vec<u64>)> = chosen
        .infos
        .iter()
        .cloned()
        .zip(chosen.bytes.iter().cloned())
        .collect();
    tokio::task::spawn_blocking(move || {
        if !databases.is_empty() {
            pg::preflight(&admin, &databases)?;
        }
        paths::preflight(&live_paths)?;
        room::refuse_mount_points(&live_paths)?;
        let pg_dir = if databases.is_empty() {
            None
        } else {
            Some(pg::data_directory(&admin)?)
        };
        let needs = sized
            .into_iter()
            .flat_map(|(info, bytes)| needs_of(&info, &bytes, pg_dir.as_ref(), rdb.as_ref()))
            .collect::<Vec<_>>();
        room::check(&needs)?;
        Ok::<_, RestoreError>(())
    })
    .await?
}

/// Where a snapshot's data is staged: PostgreSQL's data directory, beside
/// the RDB, beside each path.
fn needs_of(
    info: &SnapshotInfo,
    bytes: &[u64],
    pg_dir: Option<&PathBuf>,
    rdb: Option<&PathBuf>,
) -> Vec<Need> {
    let need = |what: String, at: Option<PathBuf>, bytes: Option<&u64>| {
        Some(Need {
            what,
            at: at?,
            bytes: *bytes?,
        })
    };
    match (info.kind, &info.database) {
        (BackupKind::Postgres, Some(db)) => {
            need(format!("database {db}"), pg_dir.cloned(), bytes.first())
                .into_iter()
                .collect()
        }
        (BackupKind::Redis, _) => need(
            "Redis's RDB".to_owned(),
            rdb.map(|r| room::beside(r)),
            bytes.first(),
        )
        .into_iter()
        .collect(),
        (BackupKind::Files, _) => info
            .paths
            .iter()
            .zip(bytes)
            .filter_map(|(p, b)| need(p.clone(), Some(room::beside(p.as_ref())), Some(b)))
            .collect(),
        (BackupKind::Postgres, None) => Vec::new(),
    }
}
