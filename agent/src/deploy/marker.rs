//! A switch in progress, written to `<state_dir>/deploy.json` before
//! `current` moves and removed once every instance is healthy (or the old
//! release serves again). If hostd dies in between, the next hostd finds it
//! and returns the service to the release it came from: instances may be
//! running either release, and only the old one is known to be good.

use std::path::Path;

use serde::{Deserialize, Serialize};

use hostd_api::time::now_rfc3339;

use super::{DeployHost, Deployer, LedgerEntry};
use crate::manager::Gate;
use crate::ops::{Holder, Operation};
use crate::state_file::JsonFile;

/// The recovery is submitted first, before anything else can queue; the
/// bound only matters if that ever changes.
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub service: String,
    /// The release `current` named before; none on a first deploy.
    pub from: Option<String>,
    pub to: String,
    pub requested_by: String,
    pub started: String,
}

/// `<state_dir>/deploy.json`.
pub fn file(state_dir: &Path) -> JsonFile<Marker> {
    JsonFile::new(state_dir.join("deploy.json"), "deploy marker")
}

/// At start, as the first operation: an interrupted switch is undone. The
/// outcome is logged, recorded in the ledger and shown by `hostctl lock
/// status`. None when no deploy was interrupted.
pub fn recovery<H: DeployHost>(d: Deployer<H>) -> Option<Operation> {
    let marker = file(&d.config.get().state_dir);
    let m = marker.load_or_log()?;
    let holder = Holder::new(
        format!("recover the interrupted deploy of {} {}", m.service, m.to),
        "hostd",
    );
    Some(Operation::new(holder, RECOVERY_WAIT, async move {
        tracing::warn!(service = m.service, to = m.to, from = ?m.from, "a deploy was interrupted (hostd stopped mid-switch); returning to the release it came from");
        let started = now_rfc3339();
        let result = undo(&d, &m).await;
        let (outcome, error, note) = match &result {
            Ok(Some(v)) => (
                "rolled_back",
                None,
                format!(
                    "hostd found the deploy of {} {} interrupted at its start and returned to {v}",
                    m.service, m.to
                ),
            ),
            Ok(None) => (
                "failed",
                None,
                format!(
                    "hostd found the deploy of {} {} interrupted before its switch; nothing had changed",
                    m.service, m.to
                ),
            ),
            Err(e) => {
                let e = hostd_api::error_chain(e);
                let note = format!(
                    "hostd found the deploy of {} {} interrupted and could not return to {}: {e}",
                    m.service,
                    m.to,
                    m.from.as_deref().unwrap_or("a previous release")
                );
                ("failed", Some(e), note)
            }
        };
        match &result {
            Err(_) => tracing::error!("{note}"),
            Ok(_) => tracing::warn!("{note}"),
        }
        if let Ok(target) = d.target(&m.service) {
            let entry = LedgerEntry {
                version: m.to.clone(),
                digest: String::new(),
                by: m.requested_by.clone(),
                from: None,
                caller: None,
                action: "recovery".into(),
                started,
                finished: now_rfc3339(),
                result: outcome.into(),
                error: error.or_else(|| Some("interrupted: hostd stopped mid-deploy".into())),
            };
            if let Err(e) = target.ledger(&d.config.get().state_dir).append(&entry) {
                tracing::error!(
                    "cannot record the recovery in the ledger: {}",
                    hostd_api::error_chain(&e)
                );
            }
        }
        d.ops.recovered(note).await;
        marker.clear();
    }))
}

/// Ok(Some(v)): back on `v`; Ok(None): the switch never happened.
async fn undo<H: DeployHost>(d: &Deployer<H>, m: &Marker) -> Result<Option<String>, RecoveryError> {
    let target = d.target(&m.service).map_err(|_| RecoveryError::Gone {
        service: m.service.clone(),
    })?;
    let releases = target.releases();
    let Some(from) = &m.from else {
        return Err(RecoveryError::FirstDeploy);
    };
    // Nobody listens: the recovery's progress goes to the journal only.
    let (progress, _) = tokio::sync::mpsc::unbounded_channel();
    let gate = Gate::of(&target.config);
    if releases.current().as_deref() == Some(from.as_str()) {
        // The switch did not happen, or was already undone; the instances
        // may still have restarted into the new release before the undo.
        d.host.rollout(&m.service, &gate, progress).await?;
        return Ok(None);
    }
    releases.switch(from)?;
    d.host.rollout(&m.service, &gate, progress).await?;
    Ok(Some(from.clone()))
}

/// Why an interrupted deploy could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no deployable service {service} in hostd.toml any more")]
    Gone { service: String },
    #[error("it was the first deploy: there is no release to return to")]
    FirstDeploy,
    #[error(transparent)]
    Release(#[from] super::ReleaseError),
    #[error(transparent)]
    Rollout(#[from] crate::manager::ManagerError),
}
