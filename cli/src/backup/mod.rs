//! `hostctl backups` and `hostctl backup now`: what each host's backup
//! repository holds and how the last run and restore drill went, and a
//! backup now. `now` goes one host at a time and stops at the first host
//! whose backup fails, as the service commands do: what broke one host's
//! backup (the bucket, the password, a full disk) most likely breaks the
//! next one's too, and the operator should look before trying again.

pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hostd_api::{API_PREFIX, BackupRequest, BackupRun, BackupsList};
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;

use crate::config::HostTarget;
use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::fleet::{self, Changed, Outcome, Reply, Turn};
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::{BackupCommand, BackupsArgs};

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
    #[error("backups failed on {}", hosts.join(", "))]
    ListFailed { hosts: Vec<String> },
    #[error("backup now failed on {}", hosts.join(", "))]
    NowFailed { hosts: Vec<String> },
    #[error("stopped following the backup on {} (--timeout); it may still be running", hosts.join(", "))]
    StillRunning { hosts: Vec<String> },
    #[error("cannot encode the backup request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for BackupError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) => Failure::Usage,
            Self::ListFailed { .. }
            | Self::NowFailed { .. }
            | Self::StillRunning { .. }
            | Self::Request(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::ListFailed { .. } => Some(
                "a host without a [backup] section in hostd.toml has no backups to list; see each host's error above".into(),
            ),
            Self::StillRunning { .. } => {
                Some("`hostctl backups` shows how it ends; a longer --timeout waits for it".into())
            }
            Self::NowFailed { .. } => Some(
                "hosts not touched were not backed up; a backup hostctl stopped waiting for may still be running: `hostctl backups` shows how it ended".into(),
            ),
            _ => self.failure().hint(),
        }
    }
}

/// `backups` names a host's repository listing under `backups`.
#[derive(Debug, Clone, Serialize)]
pub struct Backups {
    pub backups: BackupsList,
}

/// hostd's answer to a host's `backup now`, under `run`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ran {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<BackupRun>,
    /// How long hostctl waited: the time taken when the run's own times
    /// cannot be read.
    #[serde(skip)]
    pub waited: Duration,
}

/// One host's `backup now`; `--json` prints an array of these.
pub type HostRun = Changed<Ran>;

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

impl BackupSettings {
    /// `backups`.
    pub fn for_list(a: &BackupsArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, TargetError> {
        Ok(Self {
            targets: Targets::resolve(global, a.host.as_deref(), cwd)?,
            json: a.json,
            wait: false,
            timeout: a.timeout,
            progress: false,
        })
    }

    /// `backup now`: without --timeout, long enough for what is awaited.
    pub fn for_now(
        cmd: &BackupCommand,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, TargetError> {
        let BackupCommand::Now(a) = cmd;
        let default = if a.wait { WAIT_TIMEOUT } else { START_TIMEOUT };
        Ok(Self {
            targets: Targets::resolve(global, a.host.as_deref(), cwd)?,
            json: a.json,
            wait: a.wait,
            timeout: a.timeout.unwrap_or(default),
            progress: a.wait && !a.json && std::io::stderr().is_terminal(),
        })
    }
}

/// `hostctl backups`.
pub async fn list(
    a: &BackupsArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, BackupError> {
    let settings = BackupSettings::for_list(a, global, cwd)?;
    let transport = Transport::system()?;
    list_with(&transport, &settings, &mut anstream::stdout().lock()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `hostctl backup now`.
pub async fn now(
    cmd: &BackupCommand,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, BackupError> {
    let settings = BackupSettings::for_now(cmd, global, cwd)?;
    let transport = Transport::system()?;
    now_with(&transport, &settings, &mut anstream::stdout().lock()).await?;
    Ok(ExitCode::SUCCESS)
}

/// [`list`] with the transport and output given, for tests.
pub async fn list_with(
    transport: &Transport,
    s: &BackupSettings,
    out: &mut impl Write,
) -> Result<(), BackupError> {
    let path = format!("{API_PREFIX}/backups");
    let hosts = Reply::get_all(transport, &s.targets.hosts, &path, s.timeout, |backups| {
        Backups { backups }
    })
    .await;
    render::list(out, s.json, &hosts).map_err(BackupError::Output)?;
    Reply::all_answered(&hosts).map_err(|hosts| BackupError::ListFailed { hosts })
}

/// [`now`] with the transport and output given, for tests. In text mode
/// each host's block is printed as soon as its answer is in, so a long
/// `--wait` over several hosts shows what is done so far.
pub async fn now_with(
    transport: &Transport,
    s: &BackupSettings,
    out: &mut impl Write,
) -> Result<(), BackupError> {
    let mut shown = render::Now::new(out, s);
    let hosts = back_up(transport, s, |turn| shown.turn(turn)).await?;
    shown
        .end(&s.targets.environment, &hosts)
        .map_err(BackupError::Output)?;
    let running = HostRun::hosts(&hosts, Outcome::Unfollowed);
    if HostRun::hosts(&hosts, Outcome::Failed).is_empty() && !running.is_empty() {
        return Err(BackupError::StillRunning { hosts: running });
    }
    HostRun::all_done(&hosts).map_err(|hosts| BackupError::NowFailed { hosts })
}

/// The action: a backup host by host, up to the first that failed;
/// `watch` is told as each host begins and ends.
async fn back_up(
    transport: &Transport,
    s: &BackupSettings,
    watch: impl FnMut(Turn<'_, HostRun>) -> std::io::Result<()>,
) -> Result<Vec<HostRun>, BackupError> {
    let path = format!("{API_PREFIX}/backups");
    let request = BackupRequest { wait: s.wait };
    let body = Bytes::from(serde_json::to_vec(&request).map_err(BackupError::Request)?);
    let hosts = &s.targets.hosts;
    let parts = fleet::in_batches_watched(
        hosts,
        1,
        |target| {
            tracing::info!(host = target.name, wait = s.wait, "backup now");
            let answer = transport.call(target, Method::POST, &path, Some(body.clone()), s.timeout);
            async move {
                let started = Instant::now();
                let answer = answer.await;
                ran(target, answer, s.wait, started.elapsed())
            }
        },
        |h: &HostRun| matches!(h.outcome, Outcome::Failed | Outcome::Unfollowed),
        watch,
    )
    .await
    .map_err(BackupError::Output)?;
    Ok(hosts
        .iter()
        .zip(parts)
        .map(|(target, part)| part.or_skipped(|| HostRun::not_touched(target)))
        .collect())
}

fn ran(
    target: &HostTarget,
    answer: Result<BackupRun, TransportError>,
    wait: bool,
    waited: Duration,
) -> HostRun {
    match answer {
        Ok(run) => {
            let error = (wait && run.ok.is_none())
                .then(|| "hostd answered before the backup ended".to_owned());
            let outcome = outcome(&run, wait);
            let ran = Ran {
                run: Some(run),
                waited,
            };
            HostRun::new(target, outcome, ran, error)
        }
        // Only the wait ended: hostd may be running the backup.
        Err(TransportError::Timeout { after, .. }) if wait => {
            let ran = Ran { run: None, waited };
            let note = format!(
                "no answer within {} (--timeout): the backup may still be running",
                humantime::format_duration(after)
            );
            HostRun::new(target, Outcome::Unfollowed, ran, Some(note))
        }
        Err(e) => {
            let ran = Ran { run: None, waited };
            HostRun::new(
                target,
                Outcome::Failed,
                ran,
                Some(hostd_api::error_chain(&e)),
            )
        }
    }
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
