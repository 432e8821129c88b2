//! A deploy from its checked request to its ledger line, as an operation
//! of the operations task, reported as [`DeployEvent`]s.

use std::time::Duration;

use hostd_api::time::now_rfc3339;
use hostd_api::{DeployEvent, DeployOutcome, DeployRequest};

use super::ForTarget;
use super::events::Events;
use super::hooks::{Hook, HookError};
use super::marker::{self, Marker};
use super::tasks::{check_task, hook_timeout};
use super::{
    DeployError, DeployHost, Deployer, LedgerEntry, ReleaseError, Target, UnpackError,
    digest_of_version,
};
use crate::manager::{Gate, ManagerError};
use crate::ops::{Holder, Operation};
use crate::systemd::ExecContext;

/// Unused artifacts younger than this stay: one may belong to a deploy
/// waiting for this one to end.
const ARTIFACT_GRACE: Duration = Duration::from_secs(60 * 60);

/// Why `current` could not be brought to a release and served.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Rollout(#[from] ManagerError),
    #[error("there was no release before this one")]
    NoPrevious,
}

/// Why a release could not be unpacked.
#[derive(Debug, thiserror::Error)]
enum UnpackStepError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Ledger(#[from] crate::state_file::StateFileError),
    #[error("cannot replace {}", .0.display())]
    Replace(std::path::PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Artifact(#[from] super::ArtifactError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("the unpack thread failed")]
    Worker(#[from] tokio::task::JoinError),
}

/// Checks a deploy can start; nothing changes here.
pub fn check_deploy<H: DeployHost>(
    d: &Deployer<H>,
    req: &DeployRequest,
) -> Result<Target, DeployError> {
    let target = d.target(&req.unit)?;
    super::gate(&req.health)?;
    super::lock_wait(req.lock_wait_seconds)?;
    hook_timeout("hook_timeout_seconds", req.hook_timeout_seconds)?;
    for task in &req.pre_switch_tasks {
        check_task(&task.name, &task.command)?;
        hook_timeout("pre_switch_tasks.timeout_seconds", task.timeout_seconds)?;
    }
    let releases = target.releases();
    releases.dir(&req.version)?;
    if d.artifacts.size(&req.artifact)?.is_none() {
        return Err(super::ArtifactError::Missing(req.artifact.clone()).into());
    }
    let entries = target.ledger(&d.config.get().state_dir).entries()?;
    let installed = releases.installed().unwrap_or_default();
    if installed.contains(&req.version) {
        let had = digest_of_version(&entries, &req.version).unwrap_or_else(|| "unknown".into());
        let current = releases.current();
        let rollback_target = current.as_deref().and_then(|c| {
            target
                .ledger(&d.config.get().state_dir)
                .previous(c)
                .ok()
                .flatten()
        });
        let why = if current.as_deref() == Some(req.version.as_str()) {
            Some("the current release")
        } else if rollback_target.as_deref() == Some(req.version.as_str()) {
            Some("the release a rollback returns to")
        } else {
            None
        };
        if let Some(why) = why
            && had != req.artifact
        {
            return Err(DeployError::VersionTaken {
                version: req.version.clone(),
                installed: had,
                why,
            });
        }
    }
    Ok(target)
}

/// The deploy as an operation: it waits its turn as the request allows,
/// then runs to its end whether or not hostctl still listens.
pub fn deploy<H: DeployHost>(
    d: Deployer<H>,
    target: Target,
    req: DeployRequest,
    peer: crate::http::Peer,
    events: Events,
) -> Operation {
    let holder = Holder::new(
        format!("deploy {} {}", req.unit, req.version),
        &req.requested_by,
    );
    let wait = Duration::from_secs(req.lock_wait_seconds);
    let (waiting, never) = (events.clone(), events.clone());
    let (version, serving) = (req.version.clone(), target.releases().current());
    Operation::new(holder, wait, async move {
        let started = now_rfc3339();
        // Checked again now it runs: what it waited for may have changed
        // the host (a deploy of the same version made it current).
        let checked = check_deploy(&d, &req).map_err(|e| unchanged(&e));
        let steps = match checked {
            Ok(_) => deploy_steps(&d, &target, &req, &events).await,
            Err(e) => Err(e),
        };
        let (outcome, error) = match steps {
            Ok(warning) => (DeployOutcome::Ok, warning),
            Err((outcome, e)) => (outcome, Some(e)),
        };
        record(
            &d,
            &target,
            LedgerEntry {
                version: req.version.clone(),
                digest: req.artifact.clone(),
                by: req.requested_by.clone(),
                from: peer.ssh_client(),
                caller: peer.who(),
                action: "deploy".into(),
                started,
                finished: now_rfc3339(),
                result: outcome.as_str().into(),
                error: error.clone(),
            },
        );
        events.finished(outcome, &req.version, target.releases().current(), error);
    })
    .on_waiting(move |h| waiting.waiting(h.to_string()))
    .on_never_run(move |e| {
        never.finished(
            DeployOutcome::Failed,
            &version,
            serving,
            Some(e.to_string()),
        );
    })
}

/// An outcome and the operator's message.
type StepError = (DeployOutcome, String);

fn unchanged(e: &dyn std::error::Error) -> StepError {
    (
        DeployOutcome::Failed,
        format!(
            "{}; nothing changed, the old release still serves",
            hostd_api::error_chain(e)
        ),
    )
}

/// Ok carries a warning (a failed `post_deploy`: the release stays).
async fn deploy_steps<H: DeployHost>(
    d: &Deployer<H>,
    target: &Target,
    req: &DeployRequest,
    events: &Events,
) -> Result<Option<String>, StepError> {
    let releases = target.releases();
    let previous = releases.current();
    unpack_release(d, target, req, events)
        .await
        .map_err(|e| unchanged(&e))?;
    let context = d
        .instance_context(target)
        .await
        .map_err(|e| unchanged(&e))?;
    if let Some(command) = &req.hooks.pre_switch {
        let timeout = Duration::from_secs(req.hook_timeout_seconds.max(1));
        run_step(
            d,
            events,
            target,
            &req.version,
            &step("pre_switch", command, timeout),
            &context,
        )
        .await
        .map_err(|e| unchanged(&e))?;
    }
    for task in &req.pre_switch_tasks {
        let s = HookStep {
            phase: format!("task {}", task.name),
            slug: format!("task-{}", task.name),
            command: &task.command,
            timeout: Duration::from_secs(task.timeout_seconds.max(1)),
        };
        run_step(d, events, target, &req.version, &s, &context)
            .await
            .map_err(|e| unchanged(&e))?;
    }
    let gate = super::gate(&req.health)
        .map(|g| g.for_target(target))
        .map_err(|e| unchanged(&e))?;
    let marker = marker::file(&d.config.get().state_dir);
    let m = Marker {
        service: target.service.clone(),
        from: previous.clone(),
        to: req.version.clone(),
        requested_by: req.requested_by.clone(),
        started: now_rfc3339(),
    };
    marker.save(&m).map_err(|e| unchanged(&e))?;
    let switched = switch_and_roll(d, target, &req.version, &gate, events).await;
    if let Err(e) = switched {
        let back = back_to(d, target, previous.as_deref(), events).await;
        marker.clear();
        let e = hostd_api::error_chain(&e);
        return Err(match back {
            Ok(v) => (DeployOutcome::RolledBack, format!("{e}\nrolled back: {v}")),
            Err(back) => (
                DeployOutcome::Failed,
                format!(
                    "{e}\nand the return to the previous release failed too: {}",
                    hostd_api::error_chain(&back)
                ),
            ),
        });
    }
    marker.clear();
    let mut warning = None;
    if let Some(command) = &req.hooks.post_deploy {
        let timeout = Duration::from_secs(req.hook_timeout_seconds.max(1));
        let s = step("post_deploy", command, timeout);
        if let Err(e) = run_step(d, events, target, &req.version, &s, &context).await {
            warning = Some(format!(
                "{}\n(the release stays: {} serves)",
                hostd_api::error_chain(&e),
                req.version
            ));
        }
    }
    prune(d, target, req.keep as usize, &req.artifact, events);
    Ok(warning)
}

/// `releases/<version>` from the artifact, unless the ledger says this
/// very artifact is already unpacked there.
async fn unpack_release<H: DeployHost>(
    d: &Deployer<H>,
    target: &Target,
    req: &DeployRequest,
    events: &Events,
) -> Result<(), UnpackStepError> {
    let dir = target.releases().dir(&req.version)?;
    let entries = target.ledger(&d.config.get().state_dir).entries()?;
    let reuse = dir.is_dir()
        && digest_of_version(&entries, &req.version).as_deref() == Some(req.artifact.as_str());
    if reuse {
        let s = format!("release {} already unpacked", req.version);
        let t = events.step(&s);
        events.done(&s, t);
        return Ok(());
    }
    let s = format!("unpack {}", req.version);
    let t = events.step(&s);
    let (store, digest) = (d.artifacts.clone(), req.artifact.clone());
    let limits = super::unpack::Limits::from(d.config.get().deploy);
    let unpacked = d
        .lifetime
        .spawn_blocking("unpack", move || -> Result<usize, UnpackStepError> {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| UnpackStepError::Replace(dir.clone(), e))?;
            }
            let tar = store.open(&digest)?;
            Ok(super::unpack(tar, &dir, limits)?)
        })
        .await??;
    tracing::debug!(entries = unpacked, "release unpacked");
    events.done(&s, t);
    Ok(())
}

/// A hook or task of a deploy, as a step of its event stream.
pub(super) struct HookStep<'a> {
    pub phase: String,
    pub slug: String,
    pub command: &'a str,
    pub timeout: Duration,
}

fn step<'a>(phase: &str, command: &'a str, timeout: Duration) -> HookStep<'a> {
    HookStep {
        phase: phase.to_owned(),
        slug: phase.replace('_', "-"),
        command,
        timeout,
    }
}

async fn run_step<H: DeployHost>(
    d: &Deployer<H>,
    events: &Events,
    target: &Target,
    version: &str,
    step: &HookStep<'_>,
    context: &ExecContext,
) -> Result<(), HookError> {
    let t = events.step(&step.phase);
    let dir = target.release_dir.join("releases").join(version);
    let hook = Hook {
        phase: &step.phase,
        unit: super::hooks::unit_name(&target.service, &step.slug),
        command: step.command,
        service: &target.service,
        version,
        release_dir: &dir,
        context,
        timeout: step.timeout,
    };
    super::hooks::run(&d.host, &hook, |line| {
        events.send(DeployEvent::Output {
            step: step.phase.clone(),
            line,
        })
    })
    .await?;
    events.done(&step.phase, t);
    Ok(())
}

/// `current` to `version`, then every instance restarted through `gate`.
pub(super) async fn switch_and_roll<H: DeployHost>(
    d: &Deployer<H>,
    target: &Target,
    version: &str,
    gate: &Gate,
    events: &Events,
) -> Result<(), SwitchError> {
    let s = format!("switch to {version}");
    let t = events.step(&s);
    target.releases().switch(version)?;
    events.done(&s, t);
    d.host
        .rollout(&target.service, gate, events.progress())
        .await?;
    Ok(())
}

/// Back to `previous` after a failed switch, gated by hostd's own health
/// settings (the old release passed them before). What serves then.
pub(super) async fn back_to<H: DeployHost>(
    d: &Deployer<H>,
    target: &Target,
    previous: Option<&str>,
    events: &Events,
) -> Result<String, SwitchError> {
    let gate = Gate::of(&target.config);
    let Some(previous) = previous else {
        if !target.config.is_app() {
            return Err(SwitchError::NoPrevious);
        }
        // An app's first release: back to not deployed, where nothing of
        // it runs (the manager stops what the failed release started).
        let s = "back to not deployed".to_owned();
        let t = events.step(&s);
        target.releases().unswitch()?;
        d.host
            .rollout(&target.service, &gate, events.progress())
            .await?;
        events.done(&s, t);
        return Ok(format!(
            "{} is not deployed again (there was no release before this one); nothing of it runs",
            target.service
        ));
    };
    switch_and_roll(d, target, previous, &gate, events).await?;
    Ok(format!("{previous} serves again"))
}

/// Old releases and unused artifacts go; a failure here is only logged.
/// `deployed` is the artifact just deployed: its ledger line is not
/// written yet.
fn prune<H>(d: &Deployer<H>, target: &Target, keep: usize, deployed: &str, events: &Events) {
    let releases = target.releases();
    let ledger = target.ledger(&d.config.get().state_dir);
    let protect = releases
        .current()
        .and_then(|c| ledger.previous(&c).ok().flatten());
    match releases.prune(keep.max(2), protect.as_deref()) {
        Ok(removed) if !removed.is_empty() => {
            events.send(DeployEvent::Step {
                step: format!("removed old releases {}", removed.join(", ")),
            });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot remove old releases: {e}"),
    }
    let entries = ledger.entries().unwrap_or_default();
    let keep_digests: Vec<String> = releases
        .installed()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| digest_of_version(&entries, v))
        .chain(std::iter::once(deployed.to_owned()))
        .collect();
    if let Err(e) = d.artifacts.prune(&keep_digests, ARTIFACT_GRACE) {
        tracing::warn!("cannot remove unused artifacts: {e}");
    }
}

pub(super) fn record<H>(d: &Deployer<H>, target: &Target, entry: LedgerEntry) {
    if let Err(e) = target.ledger(&d.config.get().state_dir).append(&entry) {
        tracing::error!(
            "cannot record the deploy in the ledger: {}",
            hostd_api::error_chain(&e)
        );
    }
}
