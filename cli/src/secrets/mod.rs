//! `hostctl secrets list|sync`: what each host got from SSM Parameter Store
//! (names, versions, dates, receiving services; hostd never sends a value),
//! and a refresh now. `sync` goes one host at a time and stops at the first
//! host that reports a failure, as the service commands do: a rotation that
//! breaks the API on one host does not reach the others.

pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, SecretsList, SecretsSyncResult};
use hyper::Method;
use serde::Serialize;

use crate::EXIT_USAGE;
use crate::fleet;
use crate::service::Outcome;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("secrets {what} failed on {}", hosts.join(", "))]
    Failed {
        what: &'static str,
        hosts: Vec<String>,
    },
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl SecretsError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Target(_) => ExitCode::from(EXIT_USAGE),
            Self::Transport(_) | Self::Failed { .. } | Self::Output(_) => ExitCode::FAILURE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Transport(e) => e.hint(),
            Self::Failed { what: "sync", .. } => Some(
                "hosts whose fetch failed keep serving their last good set; see each host's error above".into(),
            ),
            _ => None,
        }
    }
}

/// One host's `secrets list`; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostList {
    pub host: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's `secrets sync`; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostSync {
    pub host: String,
    pub address: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<SecretsSyncResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SecretsSettings {
    pub targets: Targets,
    pub json: bool,
    /// Per host: a sync answers once the restarts it caused are done.
    pub timeout: Duration,
}

pub async fn list(settings: SecretsSettings) -> Result<(), SecretsError> {
    let transport = Transport::system()?;
    list_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

pub async fn sync(settings: SecretsSettings) -> Result<(), SecretsError> {
    let transport = Transport::system()?;
    sync_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

/// [`list`] with the transport and output given, for tests.
pub async fn list_with(
    transport: &Transport,
    settings: &SecretsSettings,
    out: &mut impl std::io::Write,
) -> Result<(), SecretsError> {
    let path = format!("{API_PREFIX}/secrets");
    let targets = &settings.targets.hosts;
    let answers = fleet::call_all(transport, targets, Method::GET, &path, settings.timeout).await;
    let hosts: Vec<HostList> = targets
        .iter()
        .zip(answers)
        .map(|(target, answer)| {
            let (secrets, error) = match answer {
                Ok(list) => (Some(list), None),
                Err(e) => (None, Some(hostd_api::error_chain(&e))),
            };
            HostList {
                host: target.name.clone(),
                address: target.destination.clone(),
                secrets,
                error,
            }
        })
        .collect();
    if settings.json {
        render::json(out, &hosts)
    } else {
        render::list(out, &hosts)
    }
    .map_err(SecretsError::Output)?;
    let failed: Vec<String> = hosts
        .iter()
        .filter(|h| h.error.is_some())
        .map(|h| h.host.clone())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(SecretsError::Failed {
            what: "list",
            hosts: failed,
        })
    }
}

/// [`sync`] with the transport and output given, for tests.
pub async fn sync_with(
    transport: &Transport,
    settings: &SecretsSettings,
    out: &mut impl std::io::Write,
) -> Result<(), SecretsError> {
    let path = format!("{API_PREFIX}/secrets/sync");
    let mut hosts = Vec::with_capacity(settings.targets.hosts.len());
    let mut stopped = false;
    for target in &settings.targets.hosts {
        let mut host = HostSync {
            host: target.name.clone(),
            address: target.destination.clone(),
            outcome: Outcome::NotTouched,
            result: None,
            error: None,
        };
        if !stopped {
            tracing::info!(host = target.name, "secrets sync");
            let answer = transport.call::<SecretsSyncResult>(
                target,
                Method::POST,
                &path,
                None,
                settings.timeout,
            );
            match answer.await {
                Ok(r) => {
                    host.outcome = if r.error.is_none() && r.fetched {
                        Outcome::Done
                    } else {
                        Outcome::Failed
                    };
                    host.result = Some(r);
                }
                Err(e) => {
                    host.outcome = Outcome::Failed;
                    host.error = Some(hostd_api::error_chain(&e));
                }
            }
            stopped = host.outcome == Outcome::Failed;
        }
        hosts.push(host);
    }
    if settings.json {
        render::json(out, &hosts)
    } else {
        render::sync(out, &settings.targets.environment, &hosts)
    }
    .map_err(SecretsError::Output)?;
    let failed: Vec<String> = hosts
        .iter()
        .filter(|h| h.outcome == Outcome::Failed)
        .map(|h| h.host.clone())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(SecretsError::Failed {
            what: "sync",
            hosts: failed,
        })
    }
}
