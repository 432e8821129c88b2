//! Which hosts a service command reaches, and what each of them manages:
//! shared by the commands that change services and by `logs`.

use std::path::Path;
use std::time::Duration;

use hostd_api::HostStatus;

use crate::config::{Config, ConfigError, HostTarget};
use crate::flags::GlobalArgs;
use crate::status::{self, HostReport};
use crate::transport::Transport;

/// Budget for reading a host's status before acting: the same as
/// `hostctl status`'s default, because this is that call.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no host {name:?} in environment {environment}; it has: {}", known.join(", "))]
    UnknownHost {
        name: String,
        environment: String,
        known: Vec<String>,
    },
    #[error("environment {environment} has several hosts ({}); pick one with --host", hosts.join(", "))]
    SeveralHosts {
        environment: String,
        hosts: Vec<String>,
    },
}

/// The environment's hosts, or the one `--host` names.
#[derive(Debug, Clone)]
pub struct Targets {
    pub environment: String,
    pub hosts: Vec<HostTarget>,
}

impl Targets {
    pub fn resolve(
        global: &GlobalArgs,
        host: Option<&str>,
        cwd: &Path,
    ) -> Result<Self, TargetError> {
        Self::resolve_with_config(global, host, cwd).map(|(_, targets)| targets)
    }

    /// [`Self::resolve`], keeping hostctl.toml for what else it says (the
    /// services, their tasks).
    pub fn resolve_with_config(
        global: &GlobalArgs,
        host: Option<&str>,
        cwd: &Path,
    ) -> Result<(Config, Self), TargetError> {
        let config = Config::discover(global.config.as_deref(), cwd)?;
        let (environment, hosts) = config.select(global.env.as_deref())?;
        let targets = Self::pick(environment, hosts, host)?;
        Ok((config, targets))
    }

    pub fn pick(
        environment: &str,
        hosts: &[HostTarget],
        only: Option<&str>,
    ) -> Result<Self, TargetError> {
        let hosts = match only {
            None => hosts.to_vec(),
            Some(name) => match hosts.iter().find(|h| h.name == name) {
                Some(h) => vec![h.clone()],
                None => {
                    return Err(TargetError::UnknownHost {
                        name: name.to_owned(),
                        environment: environment.to_owned(),
                        known: hosts.iter().map(|h| h.name.clone()).collect(),
                    });
                }
            },
        };
        Ok(Self {
            environment: environment.to_owned(),
            hosts,
        })
    }

    /// The one host of a command that acts on exactly one (`restore`):
    /// choosing one of several is the operator's call, never hostctl's.
    pub fn single(self) -> Result<HostTarget, TargetError> {
        match <[HostTarget; 1]>::try_from(self.hosts) {
            Ok([host]) => Ok(host),
            Err(hosts) => Err(TargetError::SeveralHosts {
                environment: self.environment,
                hosts: hosts.into_iter().map(|h| h.name).collect(),
            }),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }
}

/// A host's status could not be read, so nothing was run anywhere.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Unreadable {
    pub host: String,
    pub error: String,
    pub hint: Option<String>,
}

/// Every host's status, asked in parallel: the list of services to check
/// names against and the units to read logs from. One unreadable host stops
/// the command before it does anything anywhere.
pub async fn statuses(
    transport: &Transport,
    hosts: &[HostTarget],
) -> Result<Vec<(String, HostStatus)>, Unreadable> {
    let reports = status::query_all(transport, hosts, STATUS_TIMEOUT).await;
    reports
        .into_iter()
        .map(|r: HostReport| match r.status {
            Some(s) => Ok((r.host, s)),
            None => Err(Unreadable {
                error: r.error.unwrap_or_else(|| format!("{}: no status", r.host)),
                host: r.host,
                hint: r.hint,
            }),
        })
        .collect()
}

/// Services a host knows, sorted: those hostd manages, plus any only seen as
/// units (an older hostd lists no services).
pub fn known_services(status: &HostStatus) -> Vec<String> {
    let mut names: Vec<String> = status
        .services
        .iter()
        .map(|s| s.name.clone())
        .chain(status.units.iter().map(|u| u.service.clone()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
