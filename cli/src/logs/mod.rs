//! `hostctl logs SERVICE`: journalctl on each host through the same
//! multiplexed ssh as the control API. hostd only says which units make up
//! the service; the journal is read directly rather than relayed by hostd,
//! so following it costs hostd nothing. The operator account is in
//! systemd-journal: no sudo.

pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use hostd_api::HostStatus;
use tokio::sync::mpsc;

use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::fleet;
use crate::host_status::{self, Unreadable, known_services};
use crate::targets::{TargetError, Targets};
use crate::transport::{RemoteProcess, Transport, TransportError};
use args::LogsArgs;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot read the status of {} to find the service's units", .0.host)]
    Unreadable(#[from] Unreadable),
    #[error("unknown service {service:?} on {host}; it has: {}", known.join(", "))]
    UnknownService {
        host: String,
        service: String,
        known: Vec<String>,
    },
    #[error("{host} lists no unit for {service}; is hostd up to date?")]
    NoUnits { host: String, service: String },
    #[error("reading the journal failed on {}", hosts.join(", "))]
    Journal {
        hosts: Vec<String>,
        /// The first failure; the others were logged as they happened.
        #[source]
        first: TransportError,
    },
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for LogsError {
    /// Usage for a host or service that is not there.
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) | Self::UnknownService { .. } => Failure::Usage,
            Self::Unreadable(_) | Self::NoUnits { .. } => Failure::Failed,
            Self::Transport(e) | Self::Journal { first: e, .. } => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Unreadable(u) => u.hint.clone(),
            _ => self.failure().hint(),
        }
    }
}

/// Validated settings for one `logs` run.
#[derive(Debug, Clone)]
pub struct LogsSettings {
    pub targets: Targets,
    pub service: String,
    pub follow: bool,
    pub lines: u32,
    pub since: Option<String>,
}

impl LogsSettings {
    pub fn resolve(args: &LogsArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, TargetError> {
        Ok(Self {
            targets: Targets::resolve(global, args.host.as_deref(), cwd)?,
            service: args.service.clone(),
            follow: args.follow,
            lines: args.lines,
            since: args.since.clone(),
        })
    }
}

/// The `-u` patterns for `service` on a host. A template unit stands for
/// all its instances, including ones stopped by a scale-down whose last
/// lines are often the interesting ones; hence a glob rather than the
/// instances running now.
pub fn unit_patterns(status: &HostStatus, service: &str) -> Vec<String> {
    let configured = status
        .services
        .iter()
        .find(|s| s.name == service)
        .map(|s| s.unit.as_str())
        .filter(|u| !u.is_empty());
    if let Some(unit) = configured {
        let glob = match unit.split_once("@.") {
            Some((prefix, suffix)) => format!("{prefix}@*.{suffix}"),
            None => unit.to_owned(),
        };
        return vec![glob];
    }
    // An older hostd names units only in `units`.
    let mut units: Vec<String> = status
        .units
        .iter()
        .filter(|u| u.service == service)
        .map(|u| u.unit.clone())
        .collect();
    units.sort_unstable();
    units.dedup();
    units
}

/// journalctl's argv (quoted later, by the transport).
pub fn journalctl_argv(settings: &LogsSettings, units: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = ["journalctl", "--no-pager", "-o", "short-iso", "-n"]
        .map(str::to_owned)
        .into();
    argv.push(settings.lines.to_string());
    if let Some(since) = &settings.since {
        argv.push("--since".into());
        argv.push(since.clone());
    }
    if settings.follow {
        argv.push("--follow".into());
    }
    for unit in units {
        argv.push("-u".into());
        argv.push(unit.clone());
    }
    argv
}

/// `hostctl logs SERVICE`.
pub async fn run(args: &LogsArgs, global: &GlobalArgs, cwd: &Path) -> Result<ExitCode, LogsError> {
    let settings = LogsSettings::resolve(args, global, cwd)?;
    let transport = Transport::system()?;
    run_with(&transport, &settings, &mut anstream::stdout()).await?;
    Ok(ExitCode::SUCCESS)
}

/// [`run`] with the transport and output given, for tests.
pub async fn run_with(
    transport: &Transport,
    settings: &LogsSettings,
    out: &mut impl Write,
) -> Result<(), LogsError> {
    let mut journal = render::Journal::new(out, &settings.targets.names());
    let ended = read(transport, settings, |host, line| journal.line(host, line)).await?;
    journal.end().map_err(LogsError::Output)?;
    ended_well(ended)
}

/// Every host's units, so a typo runs nothing anywhere: journalctl's
/// command line for each host.
async fn commands(
    transport: &Transport,
    settings: &LogsSettings,
) -> Result<Vec<Vec<String>>, LogsError> {
    let statuses = host_status::before_acting(transport, &settings.targets.hosts).await?;
    let mut commands = Vec::with_capacity(statuses.len());
    for (host, status) in &statuses {
        let known = known_services(status);
        if !known.contains(&settings.service) {
            return Err(LogsError::UnknownService {
                host: host.clone(),
                service: settings.service.clone(),
                known,
            });
        }
        let units = unit_patterns(status, &settings.service);
        if units.is_empty() {
            return Err(LogsError::NoUnits {
                host: host.clone(),
                service: settings.service.clone(),
            });
        }
        commands.push(journalctl_argv(settings, &units));
    }
    Ok(commands)
}

/// The action: every host's journal at once, each line handed to `show`
/// with the index of its host as it comes; then how each host's
/// journalctl ended.
async fn read(
    transport: &Transport,
    settings: &LogsSettings,
    mut show: impl FnMut(usize, &[u8]) -> std::io::Result<()>,
) -> Result<Vec<(String, Result<String, TransportError>)>, LogsError> {
    let commands = commands(transport, settings).await?;
    // Every journalctl started before any is read: a host ssh cannot even
    // start for fails the command before any output.
    let mut processes = Vec::with_capacity(commands.len());
    for (target, argv) in settings.targets.hosts.iter().zip(&commands) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        processes.push(transport.spawn_remote(target, &argv)?);
    }

    // Lines meet in one channel so each is shown whole, and a slow stdout
    // slows the readers instead of filling memory. The readers hold the
    // only senders, so the showing ends when the last reader has.
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1024);
    let read = async move {
        let readers = processes.into_iter().enumerate();
        let ended = fleet::parallel(readers, |(i, process)| read_lines(i, process, tx.clone()));
        Ok::<_, LogsError>(ended.await)
    };
    let write = async {
        while let Some((i, line)) = rx.recv().await {
            show(i, &line).map_err(LogsError::Output)?;
        }
        Ok::<_, LogsError>(())
    };
    // A failed write ends the command at once, and drops (kills) the rest.
    let (ended, ()) = tokio::try_join!(read, write)?;
    Ok(ended)
}

/// One host's output, line by line into `tx` as `(i, line)`, then how its
/// journalctl ended.
async fn read_lines(
    i: usize,
    mut process: RemoteProcess,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) -> (String, Result<String, TransportError>) {
    while let Some(line) = process.next_line().await {
        if tx.send((i, line)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let host = process.host().to_owned();
    (host, process.finish().await)
}

/// journalctl's own warnings (e.g. "not seeing messages from other users")
/// explain an empty output; the first host whose journal could not be read
/// comes back as the error, the others are logged.
fn ended_well(ended: Vec<(String, Result<String, TransportError>)>) -> Result<(), LogsError> {
    let mut failed: Vec<(String, TransportError)> = Vec::new();
    for (host, end) in ended {
        match end {
            Ok(stderr) if !stderr.is_empty() => tracing::warn!("{host}: {stderr}"),
            Ok(_) => {}
            Err(e) => failed.push((host, e)),
        }
    }
    let hosts: Vec<String> = failed.iter().map(|(h, _)| h.clone()).collect();
    let mut failed = failed.into_iter();
    let Some((_, first)) = failed.next() else {
        return Ok(());
    };
    for (_, e) in failed {
        tracing::error!("{e}");
    }
    Err(LogsError::Journal { hosts, first })
}
