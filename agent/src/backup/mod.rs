//! Backups into a restic-format repository (format version 2) on S3,
//! through rustic_core. Any stock `restic` can read what is written here,
//! which keeps restores possible without hostd.
//!
//! rustic_core is synchronous: everything here that touches the repository
//! runs inside `tokio::task::spawn_blocking` (see [`s3`] for why).

mod context;
pub mod drill;
pub mod engine;
pub mod health;
pub mod http;
mod layout;
pub mod read_ahead;
pub mod readback;
pub mod redis_save;
pub mod repo;
mod run;
pub mod runner;
pub mod s3;
pub mod s3_client;
mod s3_error;
mod source;
mod state;
mod task;

pub use context::{AccessError, Context};
pub use layout::BadLocation;
pub use repo::{OpenRepo, RepoError, Storage, open_or_init};
pub use run::RunFailure;
pub use s3::S3Backend;
pub use s3_client::{ClientError, client, client_with_loader};
pub use s3_error::S3Error;
pub use state::BackupState;
pub use task::{BackupError, BackupHandle, Deps, host_of, spawn};
