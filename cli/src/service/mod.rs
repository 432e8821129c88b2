//! `hostctl start|stop|restart|scale`: check every host knows the service
//! and can take the count, then change one host at a time, stopping at the
//! first failure so a bad change never reaches the whole environment.

mod apply;
#[cfg(test)]
mod apply_tests;
pub mod args;
pub(crate) mod render;
#[cfg(test)]
mod tests;

use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, HostStatus, ScaleRequest, ServiceAction};
use hyper::Method;
use hyper::body::Bytes;

use crate::EXIT_USAGE;
use crate::flags::ActionArgs;
use crate::host_status::{self, Unreadable, known_services};
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::ScaleTarget;

pub use apply::{HostOutcome, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot read the status of {host}, so nothing was changed")]
    Unreadable {
        host: String,
        hint: Option<String>,
        #[source]
        source: Box<TransportError>,
    },
    #[error(
        "unknown service {service:?} on {host}, so nothing was changed; it has: {}",
        list(known)
    )]
    UnknownService {
        host: String,
        service: String,
        known: Vec<String>,
    },
    #[error(
        "{service} on {host} runs no instances and cannot be scaled, so nothing was changed; instanced services there: {}",
        list(scalable)
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

impl From<Unreadable> for ServiceError {
    fn from(u: Unreadable) -> Self {
        Self::Unreadable {
            host: u.host,
            hint: u.hint,
            source: u.error,
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Where else the change happened or not; nothing to say with one host.
fn progress(done: &[String], untouched: &[String]) -> String {
    if done.is_empty() && untouched.is_empty() {
        String::new()
    } else {
        format!(
            " (done on: {}; not touched: {})",
            list(done),
            list(untouched)
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

impl ServiceError {
    /// 2 for what the operator must fix in the command (unknown service,
    /// count out of range), 1 for what failed on a host.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Target(_)
            | Self::UnknownService { .. }
            | Self::NotScalable { .. }
            | Self::OutOfRange { .. }
            | Self::Duplicate { .. } => ExitCode::from(EXIT_USAGE),
            Self::Failed { source, .. } if is_refusal(source) => ExitCode::from(EXIT_USAGE),
            Self::Failed { .. }
            | Self::Transport(_)
            | Self::Unreadable { .. }
            | Self::Output(_) => ExitCode::FAILURE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unreadable { hint, .. } => hint.clone(),
            Self::Transport(e) => e.hint(),
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
            _ => None,
        }
    }
}

/// One request to hostd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Action {
        service: String,
        action: ServiceAction,
    },
    Scale {
        service: String,
        instances: u32,
    },
}

impl Step {
    pub fn service(&self) -> &str {
        match self {
            Self::Action { service, .. } | Self::Scale { service, .. } => service,
        }
    }

    /// `restart redis`, `scale api=3`: how the operator would say it.
    pub fn describe(&self) -> String {
        match self {
            Self::Action { service, action } => format!("{} {service}", action.as_str()),
            Self::Scale { service, instances } => format!("scale {service}={instances}"),
        }
    }

    fn request(&self) -> (Method, String, Option<Bytes>) {
        match self {
            Self::Action { service, action } => (
                Method::POST,
                format!("{API_PREFIX}/services/{service}/{}", action.as_str()),
                None,
            ),
            Self::Scale { service, instances } => {
                let body = serde_json::json!(ScaleRequest {
                    instances: *instances
                })
                .to_string();
                (
                    Method::PUT,
                    format!("{API_PREFIX}/services/{service}/instances"),
                    Some(Bytes::from(body)),
                )
            }
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
    pub fn action(targets: Targets, service: &str, action: ServiceAction, a: &ActionArgs) -> Self {
        Self {
            targets,
            steps: vec![Step::Action {
                service: service.to_owned(),
                action,
            }],
            json: a.json,
            timeout: a.timeout,
        }
    }

    pub fn scale(
        targets: Targets,
        scale: &[ScaleTarget],
        a: &ActionArgs,
    ) -> Result<Self, ServiceError> {
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
        Ok(Self {
            targets,
            steps,
            json: a.json,
            timeout: a.timeout,
        })
    }

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

/// What can be checked before changing anything: every host knows each
/// service, and a scale stays within what its status says. hostd checks
/// again and stays the authority (its 404/422 still reach the operator).
pub fn check(steps: &[Step], statuses: &[(String, HostStatus)]) -> Result<(), ServiceError> {
    for (host, status) in statuses {
        let known = known_services(status);
        for step in steps {
            let service = step.service();
            if !known.iter().any(|k| k == service) {
                return Err(ServiceError::UnknownService {
                    host: host.clone(),
                    service: service.to_owned(),
                    known,
                });
            }
            let Step::Scale { instances, .. } = step else {
                continue;
            };
            // An older hostd lists no services; leave the judgement to it.
            let Some(summary) = status.services.iter().find(|s| s.name == service) else {
                continue;
            };
            let instanced = |s: &hostd_api::ServiceSummary| {
                s.instances.is_some() || s.unit.ends_with("@.service")
            };
            if !instanced(summary) {
                return Err(ServiceError::NotScalable {
                    host: host.clone(),
                    service: service.to_owned(),
                    scalable: status
                        .services
                        .iter()
                        .filter(|s| instanced(s))
                        .map(|s| s.name.clone())
                        .collect(),
                });
            }
            if let Some(max) = summary.max_instances.filter(|max| instances > max) {
                return Err(ServiceError::OutOfRange {
                    host: host.clone(),
                    service: service.to_owned(),
                    requested: *instances,
                    max,
                });
            }
        }
    }
    Ok(())
}

pub async fn run(settings: ServiceSettings) -> Result<(), ServiceError> {
    let transport = Transport::system()?;
    run_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

/// [`run`] with the transport and output given, for tests.
pub async fn run_with(
    transport: &Transport,
    settings: &ServiceSettings,
    out: &mut impl std::io::Write,
) -> Result<(), ServiceError> {
    let statuses = host_status::before_acting(transport, &settings.targets.hosts).await?;
    check(&settings.steps, &statuses)?;
    let what = settings.describe();
    let report = apply::apply_all(
        transport,
        &settings.targets.hosts,
        &settings.steps,
        settings.timeout,
    )
    .await;
    if settings.json {
        render::json(out, &report.hosts)
    } else {
        render::human(out, &settings.targets.environment, &what, &report.hosts)
    }
    .map_err(ServiceError::Output)?;
    match report.failure {
        None => Ok(()),
        Some(source) => {
            let names = |o: Outcome| {
                report
                    .hosts
                    .iter()
                    .filter(|h| h.outcome == o)
                    .map(|h| h.host.clone())
                    .collect::<Vec<_>>()
            };
            Err(ServiceError::Failed {
                host: names(Outcome::Failed).join(", "),
                what,
                done: names(Outcome::Done),
                untouched: names(Outcome::NotTouched),
                source: Box::new(source),
            })
        }
    }
}
