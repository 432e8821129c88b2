//! `hostctl status`: ask every host of an environment for its status, in
//! parallel, and decide the exit code from what came back.

pub mod args;
mod render;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{HealthStatus, HostStatus};
use serde::Serialize;

use crate::config::HostTarget;
use crate::flags::GlobalArgs;
use crate::fleet::ReadError;
use crate::host_status;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::StatusArgs;

/// Validated settings for one `status` run.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub targets: Targets,
    pub json: bool,
    /// Overall budget per host: ssh connect + dial-stdio + the request.
    pub timeout: Duration,
    /// Keep asking until all hosts serve, for at most this long.
    pub wait: Option<Duration>,
}

impl StatusSettings {
    pub fn resolve(
        args: &StatusArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, TargetError> {
        let (config, targets) = Targets::resolve_with_config(global, None, cwd)?;
        tracing::info!(config = %config.path.display(), environment = targets.environment, hosts = targets.hosts.len(), "querying status");
        Ok(Self {
            targets,
            json: args.json,
            timeout: args.timeout,
            wait: args.wait,
        })
    }
}

/// One host's line in `status` output; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub address: String,
    /// hostd answered over HTTP (even with an error status).
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<HostStatus>,
    #[serde(skip)]
    pub hint: Option<String>,
}

impl HostReport {
    fn new(target: &HostTarget, status: Result<HostStatus, TransportError>) -> Self {
        let (reachable, error, hint, status) = match status {
            Ok(s) => (true, None, None, Some(s)),
            Err(e) => {
                tracing::debug!(host = target.name, error = ?e, "status failed");
                let reachable = matches!(
                    e,
                    TransportError::Api { .. } | TransportError::Decode { .. }
                );
                let hint = host_status::hint(target, &e);
                (reachable, Some(hostd_api::error_chain(&e)), hint, None)
            }
        };
        Self {
            host: target.name.clone(),
            address: target.destination.clone(),
            reachable,
            error,
            status,
            hint,
        }
    }
}

/// What `status` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every host answered and is healthy or degraded: exit 0.
    AllServing,
    /// Some host is unhealthy, unreachable or gave no status: exit 1.
    Trouble,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::AllServing => Self::SUCCESS,
            Outcome::Trouble => Self::from(1),
        }
    }
}

/// Degraded still serves, so it must not page anyone via the exit code.
pub fn outcome(reports: &[HostReport]) -> Outcome {
    let serving = |r: &HostReport| {
        r.status
            .as_ref()
            .is_some_and(|s| s.health.status <= HealthStatus::Degraded)
    };
    if reports.iter().all(serving) {
        Outcome::AllServing
    } else {
        Outcome::Trouble
    }
}

/// `hostctl status`: exit 1 unless every host is serving.
pub async fn run(
    args: &StatusArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, ReadError> {
    let settings = StatusSettings::resolve(args, global, cwd)?;
    let transport = Transport::system()?;
    let reports = query(&transport, &settings).await;
    render::reports(&mut anstream::stdout().lock(), &settings, &reports)
        .map_err(ReadError::Output)?;
    Ok(outcome(&reports).into())
}

/// The action: every host's status, asked again under `--wait` until all
/// serve or the time is up; the last answers.
pub async fn query(transport: &Transport, settings: &StatusSettings) -> Vec<HostReport> {
    /// Between two rounds of `--wait`: the multiplexed SSH connection makes
    /// a round cheap, and hostd answers from its cached checks.
    const WAIT_ROUND: Duration = Duration::from_secs(1);

    let hosts = &settings.targets.hosts;
    let deadline = settings.wait.map(|w| tokio::time::Instant::now() + w);
    let mut reports = query_all(transport, hosts, settings.timeout).await;
    while let Some(deadline) = deadline {
        if outcome(&reports) == Outcome::AllServing || tokio::time::Instant::now() >= deadline {
            break;
        }
        tracing::info!("not every host is serving yet; asking again");
        tokio::time::sleep(WAIT_ROUND).await;
        reports = query_all(transport, hosts, settings.timeout).await;
    }
    reports
}

/// Every host's status at once; reports come back in `hosts` order.
async fn query_all(
    transport: &Transport,
    hosts: &[HostTarget],
    timeout: Duration,
) -> Vec<HostReport> {
    let statuses = host_status::read_all(transport, hosts, timeout).await;
    hosts
        .iter()
        .zip(statuses)
        .map(|(target, status)| HostReport::new(target, status))
        .collect()
}

#[cfg(test)]
mod tests;
