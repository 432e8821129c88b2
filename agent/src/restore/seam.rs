//! The restore's seam: what the sequence, the swap and the recovery do to
//! services and data, and how each step fails. The live host is
//! PostgreSQL, the files and the service manager ([`super::live`]); the
//! unit tests use a fake.

use std::path::{Path, PathBuf};

use super::events::Events;
use super::paths::PathsError;
use super::pg::PgRestoreError;
use crate::manager::ManagerError;
use crate::state_file::StateFileError;

/// Which copies a clean-up removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// Restored beside the live data, never live: after a failure or an
    /// interruption.
    Staged,
    /// The live data from before the swap: after a successful restore.
    Previous,
}

/// What the sequence does to services and data.
pub trait RestoreHost: Send + Sync {
    fn stop(&self, service: &str) -> impl Future<Output = Result<(), ManagerError>> + Send;
    fn start(&self, service: &str) -> impl Future<Output = Result<(), ManagerError>> + Send;
    /// Every piece of the plan into its staging copy; the live data
    /// untouched. Reports each piece as a step of `events`.
    fn stage(&self, events: &Events) -> impl Future<Output = Result<(), StageError>> + Send;
    /// The staging database becomes `db`; the live one its previous copy.
    fn swap_database(&self, db: &str) -> impl Future<Output = Result<(), SwapError>> + Send;
    /// The staged path takes `path`'s place; the live one is kept aside.
    fn swap_path(&self, path: &Path) -> impl Future<Output = Result<(), SwapError>> + Send;
    /// Undoes [`RestoreHost::swap_database`]: the previous copy is `db`
    /// again, the restored one staged. Nothing when it was never swapped.
    fn unswap_database(&self, db: &str) -> impl Future<Output = Result<(), SwapError>> + Send;
    /// Undoes [`RestoreHost::swap_path`], also a half-done one.
    fn unswap_path(&self, path: &Path) -> impl Future<Output = Result<(), SwapError>> + Send;
    /// Removes one kind of copy of each database and path; a failure is
    /// logged and the rest still go.
    fn drop_copies(
        &self,
        which: Copies,
        databases: &[String],
        paths: &[PathBuf],
    ) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Pg(#[from] PgRestoreError),
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("finding {file} in snapshot {snapshot}: {detail}")]
    Find {
        file: String,
        snapshot: String,
        detail: String,
    },
    #[error("snapshot {0} vanished from the repository")]
    Vanished(String),
    #[error("checks.postgres is not a connection string")]
    NotConninfo,
    #[error("the restore thread failed")]
    Worker(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Injected(#[from] super::faults::Injected),
}

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Pg(#[from] PgRestoreError),
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("stopping {service}: {source}")]
    StopRedis {
        service: String,
        source: Box<ManagerError>,
    },
    #[error("starting {service}: {source}")]
    StartRedis {
        service: String,
        source: Box<ManagerError>,
    },
    #[error("cannot record the swap's progress: {}", hostd_api::error_chain(.0))]
    Record(StateFileError),
    #[error(transparent)]
    Injected(#[from] super::faults::Injected),
    #[error("the restore thread failed")]
    Worker(#[from] tokio::task::JoinError),
}
