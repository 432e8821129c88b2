//! `hostctl deploy` and `hostctl rollback` on the host.
//!
//! Order: checks (unknown unit, missing artifact, bad version: refused with
//! nothing changed) → the operations lock → unpack into
//! `releases/<version>/` → `pre_switch` hook → `current` switched → every
//! instance restarted one at a time, each healthy before the next → the
//! `post_deploy` hook → ledger. An instance that fails its health gate
//! switches `current` back and restarts the old release. Every deploy,
//! rollback and task run is an operation of the operations task
//! ([`crate::ops`]), so it runs to the end even if hostctl goes away;
//! hostd killed mid-deploy is put right by the next hostd
//! ([`marker::recovery`]).
//!
//! The sequence talks to the host through [`DeployHost`] (hooks, the
//! service's execution context, the rolling restart), so its branches are
//! unit-tested against a fake.

pub mod artifacts;
mod events;
pub mod hooks;
mod host;
pub mod http;
pub mod ledger;
pub mod marker;
pub mod releases;
mod rollback;
mod run;
pub mod tasks;
#[cfg(test)]
mod tests;
pub mod unpack;

use std::path::PathBuf;

use hostd_api::HealthGate;
use hostd_api::limits::{self, OutOfRange, at_most};

use crate::config::{CurrentConfig, ServiceConfig};
use crate::lifetime::Lifetime;
use crate::manager::Gate;
use crate::ops::{OpsError, OpsHandle};

pub use host::{DeployHost, LiveHost};

pub use artifacts::{ArtifactError, ArtifactStore};
pub use events::Events;
pub use ledger::{Ledger, LedgerEntry};
pub use releases::{ReleaseError, Releases};
pub use unpack::{UnpackError, unpack};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no service here runs as unit `{unit}`; deployable units: {}", list(.known))]
    UnknownUnit { unit: String, known: Vec<String> },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Lock(#[from] OpsError),
    #[error(transparent)]
    Ledger(#[from] crate::state_file::StateFileError),
    #[error(
        "version {version} is installed from another artifact ({installed}) and is {why}; deploy under another --version"
    )]
    VersionTaken {
        version: String,
        installed: String,
        why: &'static str,
    },
    #[error("{service} has no release before {current} in its ledger; name one: hostctl rollback VERSION (installed: {})", list(.installed))]
    NoPrevious {
        service: String,
        current: String,
        installed: Vec<String>,
    },
    #[error("release {version} is not installed; installed: {}", list(.installed))]
    NotInstalled {
        version: String,
        installed: Vec<String>,
    },
    #[error("health path `{0}` must start with /")]
    BadGate(String),
    #[error("task `{0}`: names are 1 to 32 of a-z, 0-9 and -, and the command must not be empty")]
    BadTask(String),
    #[error("{0} has no release yet: deploy one first (hostctl deploy)")]
    NothingDeployed(String),
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl crate::http::Refusal for DeployError {
    fn http_status(&self) -> u16 {
        match self {
            Self::UnknownUnit { .. } | Self::NoPrevious { .. } | Self::NotInstalled { .. } => 404,
            Self::Artifact(e) => e.http_status(),
            Self::Release(ReleaseError::BadVersion(_))
            | Self::BadGate(_)
            | Self::BadTask(_)
            | Self::OutOfRange(_) => 422,
            Self::NothingDeployed(_) => 409,
            Self::Release(_) | Self::Ledger(_) => 500,
            Self::Lock(e) => e.http_status(),
            Self::VersionTaken { .. } => 409,
        }
    }
}

/// What deploys, rollbacks and task runs work with. A library: the
/// operations run in the operations task.
#[derive(Clone)]
pub struct Deployer<H> {
    pub config: CurrentConfig,
    pub host: H,
    pub ops: OpsHandle,
    pub artifacts: ArtifactStore,
    pub lifetime: Lifetime,
}

/// A deployable service, resolved from the unit hostctl names.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub config: ServiceConfig,
    pub release_dir: PathBuf,
}

impl Target {
    pub fn releases(&self) -> Releases {
        Releases::new(&self.release_dir)
    }

    pub fn ledger(&self, state_dir: &std::path::Path) -> Ledger {
        Ledger::new(state_dir, &self.service)
    }
}

impl<H: DeployHost> Deployer<H> {
    pub fn target(&self, unit: &str) -> Result<Target, DeployError> {
        let config = self.config.get();
        let deployable = || {
            config
                .services
                .iter()
                .filter_map(|(name, s)| Some((name, s, s.release_dir.as_ref()?)))
        };
        let found = deployable().find(|(name, s, _)| s.unit.as_str() == unit || *name == unit);
        match found {
            Some((name, s, dir)) => Ok(Target {
                service: name.clone(),
                config: s.clone(),
                release_dir: dir.clone(),
            }),
            None => Err(DeployError::UnknownUnit {
                unit: unit.to_owned(),
                known: deployable().map(|(_, s, _)| s.unit.to_string()).collect(),
            }),
        }
    }

    /// What a hook runs as: the first instance's context (all instances
    /// share the template's).
    pub async fn instance_context(
        &self,
        target: &Target,
    ) -> Result<crate::systemd::ExecContext, crate::systemd::SystemdError> {
        let unit = target
            .config
            .unit
            .instance(1)
            .unwrap_or_else(|| target.config.unit.clone());
        self.host.exec_context(&unit).await
    }
}

/// For an app declared in hostd.toml, hostd.toml's `health_path` is the
/// app's: a default path in hostctl.toml must not replace it.
trait ForTarget {
    fn for_target(self, target: &Target) -> Gate;
}

impl ForTarget for Gate {
    fn for_target(mut self, target: &Target) -> Gate {
        if target.config.is_app() {
            self.path.clone_from(&target.config.health_path);
        }
        self
    }
}

pub fn gate(g: &HealthGate) -> Result<Gate, DeployError> {
    if !g.path.starts_with('/') {
        return Err(DeployError::BadGate(g.path.clone()));
    }
    let seconds = at_most(
        "health.timeout_seconds",
        g.timeout_seconds,
        limits::MAX_HEALTH_TIMEOUT_SECONDS,
    )?;
    Ok(Gate {
        path: g.path.clone(),
        timeout: std::time::Duration::from_secs(seconds.max(1)),
    })
}

/// How long an operation may wait for the one running.
pub fn lock_wait(seconds: u64) -> Result<std::time::Duration, OutOfRange> {
    at_most("lock_wait_seconds", seconds, limits::MAX_LOCK_WAIT_SECONDS)
        .map(std::time::Duration::from_secs)
}

/// The digest the ledger last recorded for `version`, if any.
pub fn digest_of_version(entries: &[LedgerEntry], version: &str) -> Option<String> {
    entries
        .iter()
        .rev()
        .find(|e| e.version == version && !e.digest.is_empty())
        .map(|e| e.digest.clone())
}
