//! A deploy or rollback from its checked request to its ledger line,
//! reported as [`DeployEvent`]s.

use std::time::Duration;

use hostd_api::time::now_rfc3339;
use hostd_api::{DeployEvent, DeployOutcome, DeployRequest, RollbackRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::hooks::Hook;
use super::marker::{self, Marker};
use super::{DeployError, Deployer, LedgerEntry, Target, digest_of_version};
use crate::manager::Gate;
use crate::oplock::{Holder, OpsGuard};

pub struct Events {
    tx: mpsc::UnboundedSender<DeployEvent>,
    started: Instant,
}

impl Events {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<DeployEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                started: Instant::now(),
            },
            rx,
        )
    }

    fn send(&self, e: DeployEvent) {
        let _ = self.tx.send(e);
    }

    fn step(&self, step: &str) -> Instant {
        tracing::info!("deploy: {step}");
        self.send(DeployEvent::Step { step: step.into() });
        Instant::now()
    }

    fn done(&self, step: &str, since: Instant) {
        self.send(DeployEvent::StepDone {
            step: step.into(),
            seconds: since.elapsed().as_secs_f64(),
        });
    }

    fn finished(
        &self,
        outcome: DeployOutcome,
        version: &str,
        serving: Option<String>,
        error: Option<String>,
    ) {
        match &error {
            Some(e) => tracing::warn!(outcome = outcome.as_str(), version, "deploy ended: {e}"),
            None => tracing::info!(outcome = outcome.as_str(), version, "deploy ended"),
        }
        self.send(DeployEvent::Finished {
            outcome,
            version: version.to_owned(),
            serving,
            seconds: self.started.elapsed().as_secs_f64(),
            error,
        });
    }
}

/// The lock, waited for as the request allows, with the wait reported.
pub async fn take_lock(
    d: &Deployer,
    holder: Holder,
    wait_seconds: u64,
    guard: Option<OpsGuard>,
    events: &Events,
) -> Result<OpsGuard, DeployError> {
    if let Some(g) = guard {
        return Ok(g);
    }
    if let Some(current) = d.lock.holder() {
        events.send(DeployEvent::Waiting {
            holder: current.to_string(),
        });
    }
    Ok(d.lock
        .take(holder, Duration::from_secs(wait_seconds))
        .await?)
}

/// Checks a deploy can start; nothing changes here.
pub fn check_deploy(d: &Deployer, req: &DeployRequest) -> Result<Target, DeployError> {
    let target = d.target(&req.unit)?;
    super::gate(&req.health)?;
    for task in &req.pre_switch_tasks {
        super::tasks::check_task(&task.name, &task.command)?;
    }
    let releases = target.releases();
    releases.dir(&req.version)?;
    if d.artifacts.size(&req.artifact)?.is_none() {
        return Err(super::ArtifactError::Missing(req.artifact.clone()).into());
    }
    let entries = target.ledger(&d.config.state_dir).entries()?;
    let installed = releases.installed().unwrap_or_default();
    if installed.contains(&req.version) {
        let had = digest_of_version(&entries, &req.version).unwrap_or_else(|| "unknown".into());
        if had != req.artifact && releases.current().as_deref() == Some(req.version.as_str()) {
            return Err(DeployError::VersionTaken {
                version: req.version.clone(),
                installed: had,
                why: "the current release",
            });
        }
    }
    Ok(target)
}

pub async fn deploy(
    d: Deployer,
    target: Target,
    req: DeployRequest,
    from: Option<String>,
    guard: Option<OpsGuard>,
    events: Events,
) {
    let holder = Holder::new(
        format!("deploy {} {}", req.unit, req.version),
        &req.requested_by,
    );
    let _guard = match take_lock(&d, holder, req.lock_wait_seconds, guard, &events).await {
        Ok(g) => g,
        Err(e) => {
            return events.finished(
                DeployOutcome::Failed,
                &req.version,
                target.releases().current(),
                Some(e.to_string()),
            );
        }
    };
    let started = now_rfc3339();
    let (outcome, error) = match deploy_steps(&d, &target, &req, &events).await {
        Ok(warning) => (DeployOutcome::Ok, warning),
        Err((outcome, e)) => (outcome, Some(e)),
    };
    let serving = target.releases().current();
    record(
        &d,
        &target,
        LedgerEntry {
            version: req.version.clone(),
            digest: req.artifact.clone(),
            by: req.requested_by.clone(),
            from: from.clone(),
            action: "deploy".into(),
            started,
            finished: now_rfc3339(),
            result: outcome.as_str().into(),
            error: error.clone(),
        },
    );
    events.finished(outcome, &req.version, serving, error);
}

type StepError = (DeployOutcome, String);

/// Ok carries a warning (a failed `post_deploy`: the release stays).
async fn deploy_steps(
    d: &Deployer,
    target: &Target,
    req: &DeployRequest,
    events: &Events,
) -> Result<Option<String>, StepError> {
    let failed = |e: &dyn std::fmt::Display| {
        (
            DeployOutcome::Failed,
            format!("{e}; nothing changed, the old release still serves"),
        )
    };
    let releases = target.releases();
    let dir = releases.dir(&req.version).map_err(|e| failed(&e))?;
    let previous = releases.current();
    let ledger = target.ledger(&d.config.state_dir);
    let entries = ledger.entries().map_err(|e| failed(&e))?;
    let reuse = dir.is_dir()
        && digest_of_version(&entries, &req.version).as_deref() == Some(req.artifact.as_str());
    if reuse {
        let step = format!("release {} already unpacked", req.version);
        let t = events.step(&step);
        events.done(&step, t);
    } else {
        let step = format!("unpack {}", req.version);
        let t = events.step(&step);
        let (store, digest, dest) = (d.artifacts.clone(), req.artifact.clone(), dir.clone());
        let unpacked = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            if dest.exists() {
                std::fs::remove_dir_all(&dest)
                    .map_err(|e| format!("cannot replace {}: {e}", dest.display()))?;
            }
            let tar = store.open(&digest).map_err(|e| e.to_string())?;
            super::unpack(tar, &dest).map_err(|e| hostd_api::error_chain(&e))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the unpack thread failed: {e}")));
        unpacked.map_err(|e| failed(&e))?;
        events.done(&step, t);
    }
    let context = d.instance_context(target).await.map_err(|e| failed(&e))?;
    if let Some(command) = &req.hooks.pre_switch {
        run_hook(events, target, req, "pre_switch", command, &context)
            .await
            .map_err(|e| failed(&e))?;
    }
    for task in &req.pre_switch_tasks {
        let step = HookStep {
            phase: format!("task {}", task.name),
            slug: format!("task-{}", task.name),
            command: &task.command,
            timeout: Duration::from_secs(task.timeout_seconds.max(1)),
        };
        run_step(events, target, req, &step, &context)
            .await
            .map_err(|e| failed(&e))?;
    }
    let m = Marker {
        service: target.service.clone(),
        from: previous.clone(),
        to: req.version.clone(),
        requested_by: req.requested_by.clone(),
        started: now_rfc3339(),
    };
    marker::file(&d.config.state_dir)
        .save(&m)
        .map_err(|e| failed(&format!("cannot write the deploy marker: {e}")))?;
    let switched = switch_and_roll(
        d,
        target,
        &req.version,
        &super::gate(&req.health).map_err(|e| failed(&e))?,
        events,
    )
    .await;
    if let Err(e) = switched {
        let outcome = back_to(d, target, previous.as_deref(), events).await;
        marker::file(&d.config.state_dir).clear();
        return Err(match outcome {
            Ok(v) => (
                DeployOutcome::RolledBack,
                format!("{e}\nrolled back: {v} serves again"),
            ),
            Err(back) => (
                DeployOutcome::Failed,
                format!("{e}\nand the return to the previous release failed too: {back}"),
            ),
        });
    }
    marker::file(&d.config.state_dir).clear();
    let mut warning = None;
    if let Some(command) = &req.hooks.post_deploy
        && let Err(e) = run_hook(events, target, req, "post_deploy", command, &context).await
    {
        warning = Some(format!("{e}\n(the release stays: {} serves)", req.version));
    }
    prune(d, target, req.keep as usize, &req.artifact, events);
    Ok(warning)
}

/// A hook or task of a deploy, as a step of its event stream.
struct HookStep<'a> {
    phase: String,
    slug: String,
    command: &'a str,
    timeout: Duration,
}

async fn run_hook(
    events: &Events,
    target: &Target,
    req: &DeployRequest,
    phase: &str,
    command: &str,
    context: &crate::systemd::ExecContext,
) -> Result<(), super::hooks::HookError> {
    let step = HookStep {
        phase: phase.to_owned(),
        slug: phase.replace('_', "-"),
        command,
        timeout: Duration::from_secs(req.hook_timeout_seconds.max(1)),
    };
    run_step(events, target, req, &step, context).await
}

async fn run_step(
    events: &Events,
    target: &Target,
    req: &DeployRequest,
    step: &HookStep<'_>,
    context: &crate::systemd::ExecContext,
) -> Result<(), super::hooks::HookError> {
    let t = events.step(&step.phase);
    let dir = target.release_dir.join("releases").join(&req.version);
    let hook = Hook {
        phase: &step.phase,
        unit: super::hooks::unit_name(&target.service, &step.slug),
        command: step.command,
        service: &target.service,
        version: &req.version,
        release_dir: &dir,
        context,
        timeout: step.timeout,
    };
    hook.run(|line| {
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
async fn switch_and_roll(
    d: &Deployer,
    target: &Target,
    version: &str,
    gate: &Gate,
    events: &Events,
) -> Result<(), String> {
    let step = format!("switch to {version}");
    let t = events.step(&step);
    target
        .releases()
        .switch(version)
        .map_err(|e| hostd_api::error_chain(&e))?;
    events.done(&step, t);
    d.manager
        .rollout(target.service.clone(), gate.clone(), events.tx.clone())
        .await
        .map(|_| ())
        .map_err(|e| hostd_api::error_chain(&e))
}

/// Back to `previous` after a failed switch, gated by hostd's own health
/// settings (the old release passed them before).
async fn back_to(
    d: &Deployer,
    target: &Target,
    previous: Option<&str>,
    events: &Events,
) -> Result<String, String> {
    let Some(previous) = previous else {
        return Err("there was no release before this one".into());
    };
    switch_and_roll(d, target, previous, &Gate::of(&target.config), events).await?;
    Ok(previous.to_owned())
}

/// Old releases and unused artifacts go; a failure here is only logged.
/// `deployed` is the artifact just deployed: its ledger line is not
/// written yet.
fn prune(d: &Deployer, target: &Target, keep: usize, deployed: &str, events: &Events) {
    let releases = target.releases();
    let ledger = target.ledger(&d.config.state_dir);
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
    if let Err(e) = d.artifacts.prune(&keep_digests) {
        tracing::warn!("cannot remove unused artifacts: {e}");
    }
}

fn record(d: &Deployer, target: &Target, entry: LedgerEntry) {
    if let Err(e) = target.ledger(&d.config.state_dir).append(&entry) {
        tracing::error!("cannot record the deploy in the ledger: {e}");
    }
}

/// Checks a rollback can start and resolves its version.
pub fn check_rollback(
    d: &Deployer,
    req: &RollbackRequest,
) -> Result<(Target, String), DeployError> {
    let target = d.target(&req.unit)?;
    super::gate(&req.health)?;
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
                .ledger(&d.config.state_dir)
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

pub async fn rollback(
    d: Deployer,
    target: Target,
    version: String,
    req: RollbackRequest,
    from: Option<String>,
    guard: Option<OpsGuard>,
    events: Events,
) {
    let holder = Holder::new(
        format!("rollback {} to {version}", req.unit),
        &req.requested_by,
    );
    let _guard = match take_lock(&d, holder, req.lock_wait_seconds, guard, &events).await {
        Ok(g) => g,
        Err(e) => {
            return events.finished(
                DeployOutcome::Failed,
                &version,
                target.releases().current(),
                Some(e.to_string()),
            );
        }
    };
    let started = now_rfc3339();
    let releases = target.releases();
    let previous = releases.current();
    let m = Marker {
        service: target.service.clone(),
        from: previous.clone(),
        to: version.clone(),
        requested_by: req.requested_by.clone(),
        started: now_rfc3339(),
    };
    let result = match marker::file(&d.config.state_dir).save(&m) {
        Err(e) => Err((
            DeployOutcome::Failed,
            format!("cannot write the deploy marker: {e}; nothing changed"),
        )),
        Ok(()) => match super::gate(&req.health) {
            Err(e) => Err((DeployOutcome::Failed, e.to_string())),
            Ok(gate) => match switch_and_roll(&d, &target, &version, &gate, &events).await {
                Ok(()) => Ok(()),
                Err(e) => Err(
                    match back_to(&d, &target, previous.as_deref(), &events).await {
                        Ok(v) => (
                            DeployOutcome::RolledBack,
                            format!("{e}\nreturned to {v}, which serves again"),
                        ),
                        Err(back) => (
                            DeployOutcome::Failed,
                            format!("{e}\nand the return failed too: {back}"),
                        ),
                    },
                ),
            },
        },
    };
    marker::file(&d.config.state_dir).clear();
    let (outcome, error) = match result {
        Ok(()) => (DeployOutcome::Ok, None),
        Err((o, e)) => (o, Some(e)),
    };
    let digest = digest_of_version(
        &target
            .ledger(&d.config.state_dir)
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
            from: from.clone(),
            action: "rollback".into(),
            started,
            finished: now_rfc3339(),
            result: outcome.as_str().into(),
            error: error.clone(),
        },
    );
    events.finished(outcome, &version, releases.current(), error);
}
