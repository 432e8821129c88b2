//! `hostctl run SERVICE TASK`, `hostctl jobs` and `hostctl jobs run NAME`.
//! A task is a command of a service's release named in hostctl.toml
//! (`migrate`); a job is a command hostd runs on a schedule, named in the
//! host's hostd.toml. Both run on one host and answer with a stream of
//! [`RunEvent`]s: the output goes to stdout as it comes, and hostctl exits
//! with the command's exit status, so a script can use either like a local
//! command.

pub mod args;
#[cfg(test)]
mod list_tests;
mod render;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, JobsList, RunEvent, TaskRequest};
use hyper::Method;
use hyper::body::Bytes;

use crate::config::HostTarget;
use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::fleet::Answer;
use crate::followed::{Run, Stopped, Unfollowed};
use crate::output;
use crate::targets::{ReadSettings, TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::{JobRunArgs, JobsArgs, JobsCommand, RunArgs};

/// Beyond a task's own timeout (which hostd enforces): ssh connect and the
/// start of the transient unit.
const FOLLOW_GRACE: Duration = Duration::from_secs(60);
/// `jobs run` without --timeout: hostctl.toml does not know a job's timeout,
/// and stopping to follow early would only hide the result.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Unfollowed(#[from] Unfollowed),
    #[error("cannot encode the request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for JobsError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) => Failure::Usage,
            Self::Unfollowed(_) | Self::Request(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Target(TargetError::SeveralHosts { .. }) => Some(
                "a task or job runs on one host at a time (a migration once); name it with --host"
                    .into(),
            ),
            Self::Unfollowed(_) => Some(
                "the run may go on on the host until its own timeout; `hostctl jobs` shows how a job ended"
                    .into(),
            ),
            _ => self.failure().hint(),
        }
    }
}

impl From<Stopped> for JobsError {
    fn from(stop: Stopped) -> Self {
        match stop {
            Stopped::Refused(e) => Self::Transport(e),
            Stopped::Unfollowed(u) => Self::Unfollowed(u),
            Stopped::Output(e) => Self::Output(e),
        }
    }
}

/// One run to follow on one host, from the flags and hostctl.toml.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub target: HostTarget,
    /// `task migrate` or `job cleanup`, for messages.
    pub what: String,
    pub path: String,
    pub body: Option<Bytes>,
    pub json: bool,
    /// Bounds the whole exchange, ssh connect included.
    pub timeout: Duration,
}

impl RunSettings {
    /// `run SERVICE TASK`: the task as hostctl.toml configures it.
    pub fn resolve_task(a: &RunArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, JobsError> {
        let (config, targets) =
            Targets::resolve_with_config(global, a.follow.host.as_deref(), cwd)?;
        let (svc, task) = config
            .task(&a.service, &a.task)
            .map_err(TargetError::from)?;
        let request = TaskRequest {
            unit: svc.unit.clone(),
            task: task.name.clone(),
            command: task.command.clone(),
            timeout_seconds: task.timeout_seconds(),
            requested_by: crate::operator::requested_by(),
        };
        let body = serde_json::to_vec(&request).map_err(JobsError::Request)?;
        Ok(Self {
            target: targets.single()?,
            what: format!("task {}", task.name),
            path: format!("{API_PREFIX}/tasks/run"),
            body: Some(Bytes::from(body)),
            json: a.follow.json,
            timeout: a.follow.timeout.unwrap_or(task.timeout + FOLLOW_GRACE),
        })
    }

    /// `jobs run NAME`: hostd knows the job; hostctl only names it.
    pub fn resolve_job(a: &JobRunArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, JobsError> {
        let target = Targets::resolve(global, a.follow.host.as_deref(), cwd)?.single()?;
        Ok(Self {
            target,
            what: format!("job {}", a.name),
            path: format!("{API_PREFIX}/jobs/{}/run", a.name),
            body: None,
            json: a.follow.json,
            timeout: a.follow.timeout.unwrap_or(JOB_TIMEOUT),
        })
    }
}

/// How a run ended, from its `finished` event.
#[derive(Debug, Clone, PartialEq)]
struct Finished {
    result: String,
    exit_code: Option<i32>,
    seconds: f64,
    error: Option<String>,
}

impl Finished {
    /// The command's own exit status, so a script can tell failures apart;
    /// 1 when it has none in 1..=255 (a timeout, a signal, a run that could
    /// not start).
    fn exit_status(&self) -> u8 {
        if self.result == "success" {
            return 0;
        }
        self.exit_code
            .and_then(|c| u8::try_from(c).ok())
            .filter(|&c| c != 0)
            .unwrap_or(1)
    }
}

/// `hostctl run SERVICE TASK`.
pub async fn run_task(a: &RunArgs, global: &GlobalArgs, cwd: &Path) -> Result<ExitCode, JobsError> {
    let settings = RunSettings::resolve_task(a, global, cwd)?;
    run(&settings).await
}

/// `hostctl jobs` and `hostctl jobs run NAME`.
pub async fn jobs(a: &JobsArgs, global: &GlobalArgs, cwd: &Path) -> Result<ExitCode, JobsError> {
    match &a.command {
        Some(JobsCommand::Run(r)) => run(&RunSettings::resolve_job(r, global, cwd)?).await,
        None => {
            let settings = ReadSettings::resolve(&a.read, global, cwd)?;
            let transport = Transport::system()?;
            list_with(&transport, &settings, &mut anstream::stdout().lock()).await
        }
    }
}

async fn run(settings: &RunSettings) -> Result<ExitCode, JobsError> {
    let transport = Transport::system()?;
    run_with(
        &transport,
        settings,
        &mut anstream::stdout().lock(),
        &mut anstream::stderr(),
    )
    .await
}

/// A run with the transport and outputs given, for tests: the command's
/// output on `out`, hostctl's own lines on `err`; the command's exit
/// status.
pub async fn run_with(
    transport: &Transport,
    s: &RunSettings,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<ExitCode, JobsError> {
    let finished = follow(transport, s, |e| render::event(out, err, s, e)).await?;
    render::finished(err, s, &finished).map_err(JobsError::Output)?;
    Ok(ExitCode::from(finished.exit_status()))
}

/// The action: the run started on its host and followed to `finished`,
/// each event handed to `show` as it comes.
async fn follow(
    transport: &Transport,
    s: &RunSettings,
    show: impl FnMut(&RunEvent) -> std::io::Result<()>,
) -> Result<Finished, JobsError> {
    let host = &s.target.name;
    tracing::info!(host, what = s.what, "run");
    let last = |e: &RunEvent| match e {
        RunEvent::Finished {
            result,
            exit_code,
            seconds,
            error,
        } => Some(Finished {
            result: result.clone(),
            exit_code: *exit_code,
            seconds: *seconds,
            error: error.clone(),
        }),
        RunEvent::Started { .. } | RunEvent::Output { .. } => None,
    };
    let followed = transport
        .follow(&s.target, &s.path, s.body.clone(), s.timeout, show, last)
        .await;
    let run = Run {
        host: host.clone(),
        what: s.what.clone(),
        which: format!("{} on {host}", s.what),
        note: String::new(),
    };
    Ok(followed.map_err(|stop| run.stopped(stop, s.timeout))?)
}

/// `jobs` with the transport and output given, for tests: every host at
/// once, as `releases` reads them.
pub async fn list_with(
    transport: &Transport,
    s: &ReadSettings,
    out: &mut impl Write,
) -> Result<ExitCode, JobsError> {
    let path = format!("{API_PREFIX}/jobs");
    let hosts = &s.targets.hosts;
    let answers =
        Answer::<JobsList>::from_all(transport, hosts, Method::GET, &path, s.timeout).await;
    output::answers(out, s.json, &answers, render::jobs).map_err(JobsError::Output)?;
    Ok(Answer::exit_code(&answers))
}
