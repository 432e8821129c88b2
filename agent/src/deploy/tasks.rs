//! `hostctl run SERVICE TASK`: a release's command run once by hand, in the
//! current release, as a hook is (transient unit, the service's user,
//! environment and secrets). It holds the operations lock: a migration run
//! by hand must not meet a deploy's.

use std::time::{Duration, Instant};

use hostd_api::{RunEvent, TaskRequest};
use tokio::sync::mpsc;

use super::hooks::{Hook, unit_name};
use super::{DeployError, DeployHost, Deployer, Target};
use crate::ops::{Holder, Operation};

/// Checks the request; nothing ran yet. The target and the release the
/// task runs in.
pub fn accept<H: DeployHost>(
    d: &Deployer<H>,
    req: &TaskRequest,
) -> Result<(Target, String), DeployError> {
    let target = d.target(&req.unit)?;
    check_task(&req.task, &req.command)?;
    hook_timeout("timeout_seconds", req.timeout_seconds)?;
    let release = target
        .releases()
        .current()
        .ok_or_else(|| DeployError::NothingDeployed(target.service.clone()))?;
    Ok((target, release))
}

/// Task names become part of unit names; commands go to `sh -c` whole.
pub fn check_task(name: &str, command: &str) -> Result<(), DeployError> {
    let plain = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain || command.trim().is_empty() || command.contains('\0') {
        return Err(DeployError::BadTask(name.to_owned()));
    }
    Ok(())
}

/// The run as an operation that does not wait: a task run by hand is
/// refused while another operation runs.
pub fn run<H: DeployHost>(
    d: Deployer<H>,
    req: TaskRequest,
    target: Target,
    release: String,
    tx: mpsc::UnboundedSender<RunEvent>,
) -> Operation {
    let holder = Holder::new(
        format!("task {} of {}", req.task, target.service),
        &req.requested_by,
    );
    Operation::new(holder, Duration::ZERO, async move {
        let event = run_to_end(&d, &req, &target, &release, &tx).await;
        let _ = tx.send(event);
    })
}

async fn run_to_end<H: DeployHost>(
    d: &Deployer<H>,
    req: &TaskRequest,
    target: &Target,
    release: &str,
    tx: &mpsc::UnboundedSender<RunEvent>,
) -> RunEvent {
    let started = Instant::now();
    let finished = |result: &str, exit_code, error| RunEvent::Finished {
        result: result.to_owned(),
        exit_code,
        seconds: started.elapsed().as_secs_f64(),
        error,
    };
    let context = match d.instance_context(target).await {
        Ok(c) => c,
        Err(e) => return finished("resources", None, Some(hostd_api::error_chain(&e))),
    };
    let phase = format!("task {}", req.task);
    let dir = target.release_dir.join("releases").join(release);
    let hook = Hook {
        phase: &phase,
        unit: unit_name(&target.service, &format!("task-{}", req.task)),
        command: &req.command,
        service: &target.service,
        version: release,
        release_dir: &dir,
        context: &context,
        timeout: Duration::from_secs(req.timeout_seconds.max(1)),
    };
    tracing::info!(
        task = req.task,
        service = target.service,
        release,
        by = req.requested_by,
        "running task"
    );
    let _ = tx.send(RunEvent::Started {
        unit: hook.unit.clone(),
    });
    let mut line = |line: String| {
        let _ = tx.send(RunEvent::Output { line });
    };
    match d.host.run_to_end(&hook, &mut line).await {
        Ok(exit) => {
            tracing::info!(task = req.task, result = exit.result, code = ?exit.code, "task ended");
            finished(&exit.result, exit.code, None)
        }
        Err(e) => finished("resources", None, Some(hostd_api::error_chain(&e))),
    }
}

/// A hook's or task's timeout from a request, bounded.
pub(super) fn hook_timeout(what: &'static str, seconds: u64) -> Result<u64, DeployError> {
    Ok(hostd_api::limits::at_most(
        what,
        seconds,
        hostd_api::limits::MAX_HOOK_TIMEOUT_SECONDS,
    )?)
}
