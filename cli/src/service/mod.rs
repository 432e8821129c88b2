//! `hostctl start|stop|restart|scale`: check every host knows the service
//! and can take the count, then change one host at a time, stopping at the
//! first failure so a bad change never reaches the whole environment.

mod apply;
#[cfg(test)]
mod apply_tests;
pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::ServiceAction;

use crate::exit::{CommandError, Failure};
use crate::flags::{ActionArgs, GlobalArgs};
use crate::fleet::Outcome;
use crate::host_status::Unreadable;
use crate::output::names_or_none;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};

pub use apply::{HostOutcome, Report, Results, Step, check};
use args::{ScaleArgs, ScaleTarget, ServiceArgs};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot read the status of {}, so nothing was changed", .0.host)]
    Unreadable(#[from] Unreadable),
    #[error(
        "unknown service {service:?} on {host}, so nothing was changed; it has: {}",
        names_or_none(known)
    )]
    UnknownService {
        host: String,
        service: String,
        known: Vec<String>,
    },
    #[error(
        "{service} on {host} runs no instances and cannot be scaled, so nothing was changed; instanced services there: {}",
        names_or_none(scalable)
    )]
    NotScalable {
        host: String,
        service: String,
        scalable: Vec<String>,
    },
    #[error(
        "{service}={requested}: {host} allows at most {max} instances of {service}, so nothing was changed; valid counts go up to {max}"
    )]
    OutOfRange {
        host: String,
        service: String,
        requested: u32,
        max: u32,
    },
    #[error("{service} is given more than once; name each service once")]
    Duplicate { service: String },
    #[error("{what} failed on {host}{}", progress(done, untouched))]
    Failed {
        host: String,
        what: String,
        done: Vec<String>,
        untouched: Vec<String>,
        #[source]
        source: Box<TransportError>,
    },
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// Where else the change happened or not; nothing to say with one host.
fn progress(done: &[String], untouched: &[String]) -> String {
    if done.is_empty() && untouched.is_empty() {
        String::new()
    } else {
        format!(
            " (done on: {}; not touched: {})",
            names_or_none(done),
            names_or_none(untouched)
        )
    }
}

/// hostd's answers that mean the operator asked for something impossible,
/// as opposed to something that went wrong doing it.
fn is_refusal(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Api {
            status: 404 | 422,
            ..
        }
    )
}

impl CommandError for ServiceError {
    /// Usage for what the operator must fix in the command (unknown
    /// service, count out of range), failed for what failed on a host.
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_)
            | Self::UnknownService { .. }
            | Self::NotScalable { .. }
            | Self::OutOfRange { .. }
            | Self::Duplicate { .. } => Failure::Usage,
            Self::Failed { source, .. } if is_refusal(source) => Failure::Usage,
            Self::Failed { .. } | Self::Unreadable(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Unreadable(u) => u.hint.clone(),
            Self::Failed { host, source, .. } => match source.as_ref() {
                TransportError::Api { status: 409, .. } => Some(format!(
                    "another operation holds {host}; retry once it is done"
                )),
                TransportError::Timeout { .. } => Some(
                    "hostd may still be working on it: check `hostctl status` before retrying, or give --timeout more time".into()
                ),
                TransportError::Api { status: 500, .. } => Some(format!(
                    "see the journal lines above; more with `hostctl logs SERVICE --host {host}`"
                )),
                other => other.hint(),
            },
            _ => self.failure().hint(),
        }
    }
}

/// Validated settings for one run.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub targets: Targets,
    pub steps: Vec<Step>,
    pub json: bool,
    /// Per request: hostd answers only when the change is done.
    pub timeout: Duration,
}

impl ServiceSettings {
    /// `start|stop|restart SERVICE`.
    pub fn resolve_action(
        args: &ServiceArgs,
        action: ServiceAction,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, ServiceError> {
        let targets = Targets::resolve(global, args.action.host.as_deref(), cwd)?;
        let step = Step::Action {
            service: args.service.clone(),
            action,
        };
        Ok(Self::new(targets, vec![step], &args.action))
    }

    /// `scale SERVICE=N...`, each service named once.
    pub fn resolve_scale(
        args: &ScaleArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, ServiceError> {
        let targets = Targets::resolve(global, args.action.host.as_deref(), cwd)?;
        Ok(Self::new(
            targets,
            scale_steps(&args.targets)?,
            &args.action,
        ))
    }

    fn new(targets: Targets, steps: Vec<Step>, a: &ActionArgs) -> Self {
        Self {
            targets,
            steps,
            json: a.json,
            timeout: a.timeout,
        }
    }

    /// `restart redis`, `scale api=3 worker=2`: how the operator said it.
    fn describe(&self) -> String {
        match self.steps.as_slice() {
            [one] => one.describe(),
            _ => format!(
                "scale {}",
                self.steps
                    .iter()
                    .map(|s| s.describe().trim_start_matches("scale ").to_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

fn scale_steps(scale: &[ScaleTarget]) -> Result<Vec<Step>, ServiceError> {
    let mut steps: Vec<Step> = Vec::new();
    for t in scale {
        if steps.iter().any(|s| s.service() == t.service) {
            return Err(ServiceError::Duplicate {
                service: t.service.clone(),
            });
        }
        steps.push(Step::Scale {
            service: t.service.clone(),
            instances: t.instances,
        });
    }
    Ok(steps)
}

/// `hostctl scale SERVICE=N...`.
pub async fn scale(
    args: &ScaleArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, ServiceError> {
    run(&ServiceSettings::resolve_scale(args, global, cwd)?).await
}

/// `hostctl start|stop|restart SERVICE`.
pub async fn act(
    args: &ServiceArgs,
    action: ServiceAction,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, ServiceError> {
    run(&ServiceSettings::resolve_action(args, action, global, cwd)?).await
}

async fn run(settings: &ServiceSettings) -> Result<ExitCode, ServiceError> {
    let transport = Transport::system()?;
    run_with(&transport, settings, &mut anstream::stdout().lock()).await?;
    Ok(ExitCode::SUCCESS)
}

/// [`scale`] and [`act`] with the transport and output given, for tests.
pub async fn run_with(
    transport: &Transport,
    settings: &ServiceSettings,
    out: &mut impl std::io::Write,
) -> Result<(), ServiceError> {
    let mut report = apply::apply(transport, settings).await?;
    let what = settings.describe();
    render::report(out, settings, &what, &report.hosts).map_err(ServiceError::Output)?;
    let Some(source) = report.failure.take() else {
        return Ok(());
    };
    let hosts = |outcome| HostOutcome::hosts(&report.hosts, outcome);
    Err(ServiceError::Failed {
        host: hosts(Outcome::Failed).join(", "),
        what,
        done: hosts(Outcome::Done),
        untouched: hosts(Outcome::NotTouched),
        source: Box::new(source),
    })
}
