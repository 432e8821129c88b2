//! `hostctl restore`: a backup run put back on this host.
//!
//! Order: plan (read-only; an unknown snapshot stops here, nothing
//! stopped) → an operation of the operations task → app services stopped
//! → every piece restored into a staging copy beside the live one →
//! swapped in (renames) → services started and healthy → previous copies
//! dropped ([`sequence`]). A failure before the swap changes nothing;
//! hostd killed mid-restore is put right by the next hostd
//! ([`Restorer::recovery`]). hostd runs it to the end even if hostctl goes
//! away.

mod events;
mod faults;
pub mod http;
mod live;
pub mod marker;
pub mod on_empty;
pub mod paths;
pub mod pg;
pub mod plan;
mod prepare;
pub mod room;
mod seam;
pub mod sequence;
mod swap;
#[cfg(test)]
mod tests;

use std::time::Duration;

use hostd_api::RestoreRequest;
use rustic_core::RusticError;

use crate::backup::{AccessError, BackupHandle, RepoError};
use crate::config::CurrentConfig;
use crate::lifetime::Lifetime;
use crate::manager::ManagerHandle;
use crate::ops::{Holder, Operation, OpsError, OpsHandle};

pub use events::Events;
pub use prepare::Prepared;
use seam::{Copies, RestoreHost};
use sequence::RestoreFailure;

/// The recovery is submitted first, before anything else can queue; the
/// bound only matters if that ever changes.
const RECOVERY_WAIT: Duration = Duration::from_secs(600);
/// A backup run in progress is waited for at most this long.
const BACKUP_WAIT: Duration = Duration::from_secs(6 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("backups are not configured on this host (no [backup] section in hostd.toml)")]
    NotConfigured,
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Repository(#[from] RepoError),
    #[error("reading the repository index: {}", .0.display_log())]
    Index(Box<RusticError>),
    #[error("listing snapshots: {}", .0.display_log())]
    Snapshots(Box<RusticError>),
    #[error(transparent)]
    Lock(#[from] OpsError),
    #[error(transparent)]
    Pg(#[from] pg::PgRestoreError),
    #[error(transparent)]
    Paths(#[from] paths::PathsError),
    #[error(transparent)]
    Room(#[from] room::RoomError),
    #[error(transparent)]
    Redis(#[from] crate::backup::redis_save::RedisSaveError),
    #[error(
        "Redis runs with appendonly yes: it would load its append-only file, not the restored \
         RDB; turn appendonly off or restore with --only postgres,files"
    )]
    AppendOnly,
    #[error("backup.redis_service: no service `{name}` in [services] (configured: {})", .known.join(", "))]
    NoRedisService { name: String, known: Vec<String> },
    #[error(
        "the plan changed since it was confirmed (a backup ended in between?): it now restores {}; nothing changed, run the restore again",
        .now.join(", ")
    )]
    PlanChanged { now: Vec<String> },
    #[error("the restore thread failed")]
    Worker(#[from] tokio::task::JoinError),
    #[error(transparent)]
    OutOfRange(#[from] hostd_api::limits::OutOfRange),
}

impl crate::http::Refusal for RestoreError {
    fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured | Self::Plan(plan::PlanError::UnknownSnapshot(_)) => 404,
            Self::Plan(_)
            | Self::Pg(pg::PgRestoreError::PreviousLeft { .. })
            | Self::Paths(paths::PathsError::PreviousLeft { .. })
            | Self::Room(room::RoomError::MountPoint { .. } | room::RoomError::NoRoom { .. })
            | Self::NoRedisService { .. }
            | Self::AppendOnly
            | Self::OutOfRange(_) => 422,
            Self::Lock(e) => e.http_status(),
            Self::PlanChanged { .. } => 409,
            Self::Access(_)
            | Self::Repository(_)
            | Self::Index(_)
            | Self::Snapshots(_)
            | Self::Pg(_)
            | Self::Paths(_)
            | Self::Room(_)
            | Self::Redis(_)
            | Self::Worker(_) => 500,
        }
    }
}

/// What restores work with. A library: the restore itself runs in the
/// operations task.
#[derive(Clone)]
pub struct Restorer {
    pub config: CurrentConfig,
    pub backup: BackupHandle,
    pub manager: ManagerHandle,
    pub ops: OpsHandle,
    pub lifetime: Lifetime,
}

/// Who holds the host while `req` runs.
fn holder(req: &RestoreRequest) -> Holder {
    Holder::new(format!("restore {}", req.snapshot), &req.requested_by)
}

impl Restorer {
    /// App services: the clients of the data, stopped while it is replaced.
    fn app_services(&self) -> Vec<String> {
        self.config
            .get()
            .services
            .iter()
            .filter(|(_, s)| s.unit.is_template() || s.database.is_some())
            .filter(|(name, _)| self.manager.keeps_running(name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The prepared restore as an operation: it waits its turn as the
    /// request allows, then for a backup run in progress, then runs to
    /// its end. `events` get the plan first.
    pub fn operation(&self, p: Prepared, req: RestoreRequest, events: Events) -> Operation {
        let (waiting, never) = (events.clone(), events.clone());
        let this = self.clone();
        let wait = Duration::from_secs(req.lock_wait_seconds);
        Operation::new(holder(&req), wait, async move {
            match this.execute(p, &req, &events).await {
                Ok(host) => {
                    // The restore is over for the operator once the API
                    // serves the restored data; dropping the old copies
                    // (seconds for a large database) happens after, still
                    // as part of the operation.
                    events.finished(Ok(()));
                    let (databases, paths) = (host.1.databases.clone(), host.1.live_paths());
                    host.0
                        .drop_copies(Copies::Previous, &databases, &paths)
                        .await;
                    tracing::info!("restore: previous copies dropped");
                }
                Err(e) => events.finished(Err(e.to_string())),
            }
        })
        .on_waiting(move |h| waiting.waiting(h.to_string()))
        .on_never_run(move |e| never.finished(Err(e.to_string())))
    }

    /// At start, as an operation: puts back what an interrupted restore
    /// left ([`sequence::recover`]). None when no restore was interrupted.
    pub fn recovery(&self) -> Option<Operation> {
        let marker = marker::file(&self.config.get().state_dir);
        let m = marker.load_or_log()?;
        let host = live::LiveRestore {
            manager: self.manager.clone(),
            admin: self.config.get().postgres_admin().to_owned(),
            staging: std::sync::Mutex::new(None),
        };
        let holder = Holder::new("recover the interrupted restore", "hostd");
        Some(Operation::new(holder, RECOVERY_WAIT, async move {
            sequence::recover(&host, &marker, &m).await;
        }))
    }

    async fn execute(
        &self,
        p: Prepared,
        req: &RestoreRequest,
        ev: &Events,
    ) -> Result<(live::LiveRestore, sequence::Pieces), RestoreFailure> {
        let mut backups = self.backup.state();
        if backups.borrow().running {
            ev.waiting("the backup run in progress".into());
            let finished =
                tokio::time::timeout(BACKUP_WAIT, backups.wait_for(|s| !s.running)).await;
            if !matches!(finished, Ok(Ok(_))) {
                return Err(RestoreFailure::BackupBusy);
            }
        }
        let host = live::LiveRestore {
            manager: self.manager.clone(),
            admin: self.config.get().postgres_admin().to_owned(),
            staging: std::sync::Mutex::new(Some(p.staging)),
        };
        let marker = marker::file(&self.config.get().state_dir);
        sequence::run(&host, &p.pieces, &req.requested_by, &marker, ev).await?;
        Ok((host, p.pieces))
    }
}
