//! Which hosts a command reaches: hostctl.toml's environment (`-e`, else
//! the default or only one), all of its hosts or the one `--host` names.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ConfigError, HostTarget};
use crate::flags::{GlobalArgs, ReadArgs};

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

/// A read of every host (`jobs`, `releases`, `lock`), from the flags they
/// share.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    pub targets: Targets,
    pub json: bool,
    /// Per host, ssh connect included.
    pub timeout: Duration,
}

impl ReadSettings {
    pub fn resolve(a: &ReadArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, TargetError> {
        Self::resolve_with_config(a, global, cwd).map(|(_, s)| s)
    }

    /// [`Self::resolve`], keeping hostctl.toml for what else it says.
    pub fn resolve_with_config(
        a: &ReadArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<(Config, Self), TargetError> {
        let (config, targets) = Targets::resolve_with_config(global, a.host.as_deref(), cwd)?;
        let settings = Self {
            targets,
            json: a.json,
            timeout: a.timeout,
        };
        Ok((config, settings))
    }
}
