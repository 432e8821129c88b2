//! `hostctl secrets list|sync`: what each host got from SSM Parameter Store
//! (names, versions, dates, receiving services; hostd never sends a value),
//! and a refresh now. `sync` goes one host at a time and stops at the first
//! host that reports a failure, as the service commands do: a rotation that
//! breaks the API on one host does not reach the others.

pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, SecretsList, SecretsSyncResult};
use hyper::Method;
use serde::Serialize;

use crate::config::HostTarget;
use crate::exit::{CommandError, Failure};
use crate::flags::{ActionArgs, GlobalArgs};
use crate::fleet::{self, Changed, Outcome, Reply};
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::SecretsCommand;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("secrets list failed on {}", hosts.join(", "))]
    ListFailed { hosts: Vec<String> },
    #[error("secrets sync failed on {}", hosts.join(", "))]
    SyncFailed { hosts: Vec<String> },
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for SecretsError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) => Failure::Usage,
            Self::ListFailed { .. } | Self::SyncFailed { .. } => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::SyncFailed { .. } => Some(
                "hosts whose fetch failed keep serving their last good set; see each host's error above".into(),
            ),
            _ => self.failure().hint(),
        }
    }
}

/// `secrets list` names a host's parameters under `secrets`.
#[derive(Debug, Clone, Serialize)]
pub struct Secrets {
    pub secrets: SecretsList,
}

/// hostd's answer to a host's `secrets sync`, under `result`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Synced {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<SecretsSyncResult>,
}

/// One host's `secrets sync`; `--json` prints an array of these.
pub type HostSync = Changed<Synced>;

#[derive(Debug, Clone)]
pub struct SecretsSettings {
    pub targets: Targets,
    pub json: bool,
    /// Per host: a sync answers once the restarts it caused are done.
    pub timeout: Duration,
}

impl SecretsSettings {
    pub fn resolve(a: &ActionArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, TargetError> {
        Ok(Self {
            targets: Targets::resolve(global, a.host.as_deref(), cwd)?,
            json: a.json,
            timeout: a.timeout,
        })
    }
}

/// `hostctl secrets list|sync`.
pub async fn run(
    cmd: &SecretsCommand,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, SecretsError> {
    let (SecretsCommand::List(a) | SecretsCommand::Sync(a)) = cmd;
    let settings = SecretsSettings::resolve(a, global, cwd)?;
    let transport = Transport::system()?;
    let out = &mut anstream::stdout().lock();
    match cmd {
        SecretsCommand::List(_) => list_with(&transport, &settings, out).await?,
        SecretsCommand::Sync(_) => sync_with(&transport, &settings, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `secrets list` with the transport and output given, for tests.
pub async fn list_with(
    transport: &Transport,
    s: &SecretsSettings,
    out: &mut impl Write,
) -> Result<(), SecretsError> {
    let path = format!("{API_PREFIX}/secrets");
    let hosts = Reply::get_all(transport, &s.targets.hosts, &path, s.timeout, |secrets| {
        Secrets { secrets }
    })
    .await;
    render::list(out, s.json, &hosts).map_err(SecretsError::Output)?;
    Reply::all_answered(&hosts).map_err(|hosts| SecretsError::ListFailed { hosts })
}

/// `secrets sync` with the transport and output given, for tests.
pub async fn sync_with(
    transport: &Transport,
    s: &SecretsSettings,
    out: &mut impl Write,
) -> Result<(), SecretsError> {
    let hosts = sync(transport, s).await;
    render::sync(out, s.json, &s.targets.environment, &hosts).map_err(SecretsError::Output)?;
    HostSync::all_done(&hosts).map_err(|hosts| SecretsError::SyncFailed { hosts })
}

/// The action: a refresh host by host, up to the first that failed.
async fn sync(transport: &Transport, s: &SecretsSettings) -> Vec<HostSync> {
    let path = format!("{API_PREFIX}/secrets/sync");
    let hosts = &s.targets.hosts;
    let parts = fleet::in_batches(
        hosts,
        1,
        |target| {
            tracing::info!(host = target.name, "secrets sync");
            let answer = transport.call(target, Method::POST, &path, None, s.timeout);
            async move { synced(target, answer.await) }
        },
        |h: &HostSync| h.outcome == Outcome::Failed,
    )
    .await;
    hosts
        .iter()
        .zip(parts)
        .map(|(target, part)| part.or_skipped(|| HostSync::not_touched(target)))
        .collect()
}

/// Done only when the fetch worked and every restart it caused too.
fn synced(target: &HostTarget, answer: Result<SecretsSyncResult, TransportError>) -> HostSync {
    let (outcome, error) = match &answer {
        Ok(r) if r.error.is_none() && r.fetched => (Outcome::Done, None),
        Ok(_) => (Outcome::Failed, None),
        Err(e) => (Outcome::Failed, Some(hostd_api::error_chain(e))),
    };
    HostSync::new(
        target,
        outcome,
        Synced {
            result: answer.ok(),
        },
        error,
    )
}
