//! `hostctl rollback`: `current` back to an installed release (the ledger's
//! previous good one by default) through the same switch and health gate
//! as a deploy, as an operation of the operations task.

use std::time::Duration;

use hostd_api::time::now_rfc3339;
use hostd_api::{DeployOutcome, RollbackRequest};

use super::ForTarget;
use super::events::Events;
use super::marker::{self, Marker};
use super::run::{back_to, record, switch_and_roll};
use super::{DeployError, DeployHost, Deployer, LedgerEntry, Target, digest_of_version};
use crate::ops::{Holder, Operation};

/// Checks a rollback can start and resolves its version.
pub fn check_rollback<H: DeployHost>(
    d: &Deployer<H>,
    req: &RollbackRequest,
) -> Result<(Target, String), DeployError> {
    let target = d.target(&req.unit)?;
    super::gate(&req.health)?;
    super::lock_wait(req.lock_wait_seconds)?;
    let releases = target.releases();
    let installed = releases.installed()?;
    let version = match &req.version {
        Some(v) => {
            releases.dir(v)?;
            v.clone()
        }
        None => {
            let current = releases.current().unwrap_or_default();
            target
                .ledger(&d.config.get().state_dir)
                .previous(&current)?
                .ok_or_else(|| DeployError::NoPrevious {
                    service: target.service.clone(),
                    current,
                    installed: installed.clone(),
                })?
        }
    };
    if !installed.contains(&version) {
        return Err(DeployError::NotInstalled { version, installed });
    }
    Ok((target, version))
}

pub fn rollback<H: DeployHost>(
    d: Deployer<H>,
    target: Target,
    version: String,
    req: RollbackRequest,
    peer: crate::http::Peer,
    events: Events,
) -> Operation {
    let holder = Holder::new(
        format!("rollback {} to {version}", req.unit),
        &req.requested_by,
    );
    let wait = Duration::from_secs(req.lock_wait_seconds);
    let (waiting, never) = (events.clone(), events.clone());
    let (v, serving) = (version.clone(), target.releases().current());
    Operation::new(holder, wait, async move {
        let started = now_rfc3339();
        let (outcome, error) = match roll_back(&d, &target, &version, &req, &events).await {
            Ok(()) => (DeployOutcome::Ok, None),
            Err((o, e)) => (o, Some(e)),
        };
        let digest = digest_of_version(
            &target
                .ledger(&d.config.get().state_dir)
                .entries()
                .unwrap_or_default(),
            &version,
        );
        record(
            &d,
            &target,
            LedgerEntry {
                version: version.clone(),
                digest: digest.unwrap_or_default(),
                by: req.requested_by.clone(),
                from: peer.ssh_client(),
                caller: peer.who(),
                action: "rollback".into(),
                started,
                finished: now_rfc3339(),
                result: outcome.as_str().into(),
                error: error.clone(),
            },
        );
        events.finished(outcome, &version, target.releases().current(), error);
    })
    .on_waiting(move |h| waiting.waiting(h.to_string()))
    .on_never_run(move |e| {
        never.finished(DeployOutcome::Failed, &v, serving, Some(e.to_string()));
    })
}

async fn roll_back<H: DeployHost>(
    d: &Deployer<H>,
    target: &Target,
    version: &str,
    req: &RollbackRequest,
    events: &Events,
) -> Result<(), (DeployOutcome, String)> {
    let previous = target.releases().current();
    let gate = super::gate(&req.health)
        .map(|g| g.for_target(target))
        .map_err(|e| (DeployOutcome::Failed, e.to_string()))?;
    let marker = marker::file(&d.config.get().state_dir);
    let m = Marker {
        service: target.service.clone(),
        from: previous.clone(),
        to: version.to_owned(),
        requested_by: req.requested_by.clone(),
        started: now_rfc3339(),
    };
    marker.save(&m).map_err(|e| {
        (
            DeployOutcome::Failed,
            format!(
                "cannot write the deploy marker: {}; nothing changed",
                hostd_api::error_chain(&e)
            ),
        )
    })?;
    let result = match switch_and_roll(d, target, version, &gate, events).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = hostd_api::error_chain(&e);
            Err(
                match back_to(d, target, previous.as_deref(), events).await {
                    Ok(v) => (DeployOutcome::RolledBack, format!("{e}\nreturned: {v}")),
                    Err(back) => (
                        DeployOutcome::Failed,
                        format!(
                            "{e}\nand the return failed too: {}",
                            hostd_api::error_chain(&back)
                        ),
                    ),
                },
            )
        }
    };
    marker.clear();
    result
}
