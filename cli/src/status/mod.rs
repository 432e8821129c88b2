//! `hostctl status`: ask every host of an environment for its status, in
//! parallel, and decide the exit code from what came back.

pub mod args;
mod render;

use std::path::Path;
use std::time::Duration;

use hostd_api::{HealthStatus, HostStatus};
use serde::Serialize;

use crate::config::{Config, ConfigError, HostTarget};
use crate::flags::GlobalArgs;
use crate::host_status;
use crate::transport::{Transport, TransportError};
use args::StatusArgs;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// Validated settings for one `status` run.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub environment: String,
    pub hosts: Vec<HostTarget>,
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
    ) -> Result<Self, ConfigError> {
        let config = Config::discover(global.config.as_deref(), cwd)?;
        let (environment, hosts) = config.select(global.env.as_deref())?;
        tracing::info!(config = %config.path.display(), environment, hosts = hosts.len(), "querying status");
        Ok(Self {
            environment: environment.to_owned(),
            hosts: hosts.to_vec(),
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

impl From<Outcome> for std::process::ExitCode {
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

pub async fn run(settings: StatusSettings) -> Result<Outcome, StatusError> {
    /// Between two rounds of `--wait`: the multiplexed SSH connection makes
    /// a round cheap, and hostd answers from its cached checks.
    const WAIT_ROUND: Duration = Duration::from_secs(1);

    let transport = Transport::system()?;
    let deadline = settings.wait.map(|w| tokio::time::Instant::now() + w);
    let mut reports = query_all(&transport, &settings.hosts, settings.timeout).await;
    while let Some(deadline) = deadline {
        if outcome(&reports) == Outcome::AllServing || tokio::time::Instant::now() >= deadline {
            break;
        }
        tracing::info!("not every host is serving yet; asking again");
        tokio::time::sleep(WAIT_ROUND).await;
        reports = query_all(&transport, &settings.hosts, settings.timeout).await;
    }
    let mut out = anstream::stdout().lock();
    if settings.json {
        render::json(&mut out, &reports)
    } else {
        render::human(&mut out, &settings.environment, &reports)
    }
    .map_err(StatusError::Output)?;
    Ok(outcome(&reports))
}

/// Every host's status at once; reports come back in `hosts` order.
pub async fn query_all(
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
