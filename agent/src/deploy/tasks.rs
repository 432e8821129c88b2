//! `hostctl run SERVICE TASK`: a release's command run once by hand, in the
//! current release, as a hook is (transient unit, the service's user,
//! environment and secrets). It holds the operations lock: a migration run
//! by hand must not meet a deploy's.

use std::time::{Duration, Instant};

use hostd_api::{RunEvent, TaskRequest};
use tokio::sync::mpsc;

use super::hooks::{Hook, unit_name};
use super::{DeployError, Deployer, Target};
use crate::oplock::OpsGuard;

/// What a task run needs once the request has been accepted.
pub struct Accepted {
    pub target: Target,
    pub release: String,
    pub guard: OpsGuard,
}

/// Checks and takes the lock; an error answer is sent before anything ran.
pub fn accept(d: &Deployer, req: &TaskRequest) -> Result<Accepted, DeployError> {
    let target = d.target(&req.unit)?;
    check_task(&req.task, &req.command)?;
    let release = target
        .releases()
        .current()
        .ok_or_else(|| DeployError::NothingDeployed(target.service.clone()))?;
    let holder = crate::oplock::Holder::new(
        format!("task {} of {}", req.task, target.service),
        &req.requested_by,
    );
    let guard = d.lock.try_take(holder)?;
    Ok(Accepted {
        target,
        release,
        guard,
    })
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

pub async fn run(
    d: Deployer,
    req: TaskRequest,
    accepted: Accepted,
    tx: mpsc::UnboundedSender<RunEvent>,
) {
    let Accepted {
        target,
        release,
        guard: _guard,
    } = accepted;
    let started = Instant::now();
    let finished = |result: &str, exit_code, error| RunEvent::Finished {
        result: result.to_owned(),
        exit_code,
        seconds: started.elapsed().as_secs_f64(),
        error,
    };
    let context = match d.instance_context(&target).await {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(finished(
                "resources",
                None,
                Some(hostd_api::error_chain(&e)),
            ));
            return;
        }
    };
    let phase = format!("task {}", req.task);
    let dir = target.release_dir.join("releases").join(&release);
    let hook = Hook {
        phase: &phase,
        unit: unit_name(&target.service, &format!("task-{}", req.task)),
        command: &req.command,
        service: &target.service,
        version: &release,
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
    let event = match hook
        .run_to_end(|line| {
            let _ = tx.send(RunEvent::Output { line });
        })
        .await
    {
        Ok(exit) => {
            tracing::info!(task = req.task, result = exit.result, code = ?exit.code, "task ended");
            finished(&exit.result, exit.code, None)
        }
        Err(e) => finished("resources", None, Some(hostd_api::error_chain(&e))),
    };
    let _ = tx.send(event);
}
