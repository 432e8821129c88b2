//! `hostctl backups` and `hostctl backup now`: what each host's backup
//! repository holds and how the last run and restore drill went, and a
//! backup now. `now` goes one host at a time and stops at the first host
//! whose backup fails, as the service commands do: what broke one host's
//! backup (the bucket, the password, a full disk) most likely breaks the
//! next one's too, and the operator should look before trying again.

pub mod args;
pub(crate) mod render;
#[cfg(test)]
pub(crate) mod tests;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use hostd_api::{API_PREFIX, BackupRequest, BackupRun, BackupsList};
use hyper::Method;
use hyper::body::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::EXIT_USAGE;
use crate::fleet;
use crate::service::Outcome;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};

/// `backup now --wait` answers when the backup ends: dumps and uploads of a
/// large database take long, and giving up early would only hide the result.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// Without --wait hostd answers as soon as the run has started.
pub const START_TIMEOUT: Duration = Duration::from_secs(2 * 60);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{what} failed on {}", hosts.join(", "))]
    Failed {
        what: &'static str,
        hosts: Vec<String>,
    },
    #[error("cannot encode the backup request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl BackupError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Target(_) => ExitCode::from(EXIT_USAGE),
            Self::Transport(_) | Self::Failed { .. } | Self::Request(_) | Self::Output(_) => {
                ExitCode::FAILURE
            }
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Transport(e) => e.hint(),
            Self::Failed { what: "backups", .. } => Some(
                "a host without a [backup] section in hostd.toml has no backups to list; see each host's error above".into(),
            ),
            Self::Failed { .. } => Some(
                "hosts not touched were not backed up; a backup hostctl stopped waiting for may still be running: `hostctl backups` shows how it ended".into(),
            ),
            _ => None,
        }
    }
}

/// One host's `backups`; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostBackups {
    pub host: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's `backup now`; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostRun {
    pub host: String,
    pub address: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<BackupRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long hostctl waited: the time taken when the run's own times
    /// cannot be read.
    #[serde(skip)]
    pub waited: Duration,
}

#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub targets: Targets,
    pub json: bool,
    /// `backup now` only: answer when the run has ended.
    pub wait: bool,
    /// Per host: ssh connect and hostd's answer together.
    pub timeout: Duration,
    /// A spinner on stderr while waiting; only for a person at a terminal.
    pub progress: bool,
}

pub async fn list(settings: BackupSettings) -> Result<(), BackupError> {
    let transport = Transport::system()?;
    list_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

pub async fn now(settings: BackupSettings) -> Result<(), BackupError> {
    let transport = Transport::system()?;
    now_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

/// [`list`] with the transport and output given, for tests.
pub async fn list_with(
    transport: &Transport,
    settings: &BackupSettings,
    out: &mut impl std::io::Write,
) -> Result<(), BackupError> {
    let path = format!("{API_PREFIX}/backups");
    let targets = &settings.targets.hosts;
    let answers = fleet::call_all(transport, targets, Method::GET, &path, settings.timeout).await;
    let hosts: Vec<HostBackups> = targets
        .iter()
        .zip(answers)
        .map(|(target, answer)| {
            let (backups, error) = match answer {
                Ok(list) => (Some(list), None),
                Err(e) => (None, Some(hostd_api::error_chain(&e))),
            };
            HostBackups {
                host: target.name.clone(),
                address: target.destination.clone(),
                backups,
                error,
            }
        })
        .collect();
    if settings.json {
        render::json(out, &hosts)
    } else {
        render::list(out, &hosts)
    }
    .map_err(BackupError::Output)?;
    failed(
        "backups",
        hosts.iter().filter(|h| h.error.is_some()).map(|h| &h.host),
    )
}

/// [`now`] with the transport and output given, for tests. In text mode
/// each host's block is printed as soon as its answer is in, so a long
/// `--wait` over several hosts shows what is done so far.
pub async fn now_with(
    transport: &Transport,
    settings: &BackupSettings,
    out: &mut impl std::io::Write,
) -> Result<(), BackupError> {
    let path = format!("{API_PREFIX}/backups");
    let request = BackupRequest {
        wait: settings.wait,
    };
    let body = Bytes::from(serde_json::to_vec(&request).map_err(BackupError::Request)?);
    let mut hosts = Vec::with_capacity(settings.targets.hosts.len());
    let mut stopped = false;
    for target in &settings.targets.hosts {
        let mut host = HostRun {
            host: target.name.clone(),
            address: target.destination.clone(),
            outcome: Outcome::NotTouched,
            run: None,
            error: None,
            waited: Duration::ZERO,
        };
        if !stopped {
            tracing::info!(host = target.name, wait = settings.wait, "backup now");
            let spinner = settings.progress.then(|| spinner(&target.name));
            let started = Instant::now();
            let answer = transport.call::<BackupRun>(
                target,
                Method::POST,
                &path,
                Some(body.clone()),
                settings.timeout,
            );
            let answer = answer.await;
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            host.waited = started.elapsed();
            match answer {
                Ok(run) => {
                    host.outcome = outcome(&run, settings.wait);
                    if settings.wait && run.ok.is_none() {
                        host.error = Some("hostd answered before the backup ended".into());
                    }
                    host.run = Some(run);
                }
                Err(e) => {
                    host.outcome = Outcome::Failed;
                    host.error = Some(hostd_api::error_chain(&e));
                }
            }
            stopped = host.outcome == Outcome::Failed;
        }
        if !settings.json {
            render::run(out, &host).map_err(BackupError::Output)?;
        }
        hosts.push(host);
    }
    if settings.json {
        render::json(out, &hosts)
    } else {
        render::summary(out, &settings.targets.environment, &hosts)
    }
    .map_err(BackupError::Output)?;
    failed(
        "backup now",
        hosts
            .iter()
            .filter(|h| h.outcome == Outcome::Failed)
            .map(|h| &h.host),
    )
}

/// With --wait only an ended, successful run is done; without, a run that
/// started (or was joined) is, unless hostd already says it failed.
fn outcome(run: &BackupRun, wait: bool) -> Outcome {
    match run.ok {
        Some(true) => Outcome::Done,
        Some(false) => Outcome::Failed,
        None if wait => Outcome::Failed,
        None => Outcome::Done,
    }
}

fn failed<'a>(
    what: &'static str,
    hosts: impl Iterator<Item = &'a String>,
) -> Result<(), BackupError> {
    let hosts: Vec<String> = hosts.cloned().collect();
    if hosts.is_empty() {
        Ok(())
    } else {
        Err(BackupError::Failed { what, hosts })
    }
}

/// On stderr (indicatif's default), cleared before the host's result is
/// printed on stdout.
fn spinner(host: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("backing up {host}…"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
