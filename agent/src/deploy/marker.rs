//! A switch in progress, written to `<state_dir>/deploy.json` before
//! `current` moves and removed once every instance is healthy (or the old
//! release serves again). If hostd dies in between, the next hostd finds it
//! and returns the service to the release it came from: instances may be
//! running either release, and only the old one is known to be good.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Deployer, LedgerEntry};
use crate::manager::Gate;
use crate::state_file::JsonFile;

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

/// At start, under the operations lock: an interrupted switch is undone.
/// Runs in the background once the manager runs; the outcome is logged,
/// recorded in the ledger and shown by `hostctl lock status`.
pub async fn recover(d: Deployer) {
    let state_dir = d.config.state_dir.clone();
    let marker = file(&state_dir);
    let Some(m) = marker.load_or_log() else {
        return;
    };
    let holder = crate::oplock::Holder::new(
        format!("recover the interrupted deploy of {} {}", m.service, m.to),
        "hostd",
    );
    let Ok(_guard) = d.lock.try_take(holder) else {
        return;
    };
    tracing::warn!(service = m.service, to = m.to, from = ?m.from, "a deploy was interrupted (hostd stopped mid-switch); returning to the release it came from");
    let started = hostd_api::time::now_rfc3339();
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
        Err(e) => (
            "failed",
            Some(e.clone()),
            format!(
                "hostd found the deploy of {} {} interrupted and could not return to {}: {e}",
                m.service,
                m.to,
                m.from.as_deref().unwrap_or("a previous release")
            ),
        ),
    };
    match &result {
        Err(_) => tracing::error!("{note}"),
        Ok(_) => tracing::warn!("{note}"),
    }
    if let Some(target) = d.config.services.get(&m.service).and_then(|s| {
        Some(super::Target {
            service: m.service.clone(),
            config: s.clone(),
            release_dir: s.release_dir.clone()?,
        })
    }) {
        let entry = LedgerEntry {
            version: m.to.clone(),
            digest: String::new(),
            by: m.requested_by.clone(),
            from: None,
            action: "recovery".into(),
            started,
            finished: hostd_api::time::now_rfc3339(),
            result: outcome.into(),
            error: error.or_else(|| Some("interrupted: hostd stopped mid-deploy".into())),
        };
        if let Err(e) = target.ledger(&state_dir).append(&entry) {
            tracing::error!("cannot record the recovery in the ledger: {e}");
        }
    }
    d.recovered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(note);
    marker.clear();
}

/// Ok(Some(v)): back on `v`; Ok(None): the switch never happened.
async fn undo(d: &Deployer, m: &Marker) -> Result<Option<String>, String> {
    let svc = d
        .config
        .services
        .get(&m.service)
        .ok_or_else(|| format!("no service {} in hostd.toml any more", m.service))?;
    let dir = svc
        .release_dir
        .as_ref()
        .ok_or_else(|| format!("{} has no release_dir any more", m.service))?;
    let releases = super::Releases::new(dir);
    let Some(from) = &m.from else {
        return Err("it was the first deploy: there is no release to return to".into());
    };
    if releases.current().as_deref() == Some(from.as_str()) {
        // The switch did not happen, or was already undone; the instances
        // may still have restarted into the new release before the undo.
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        d.manager
            .rollout(m.service.clone(), Gate::of(svc), tx)
            .await
            .map_err(|e| hostd_api::error_chain(&e))?;
        return Ok(None);
    }
    releases
        .switch(from)
        .map_err(|e| hostd_api::error_chain(&e))?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    d.manager
        .rollout(m.service.clone(), Gate::of(svc), tx)
        .await
        .map_err(|e| hostd_api::error_chain(&e))?;
    Ok(Some(from.clone()))
}
