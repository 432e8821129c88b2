//! The action: every host's status checked first, then the steps applied
//! one host at a time. Sequential on purpose: if a restart or a scale
//! breaks the first host, the others keep serving untouched.

use std::time::Duration;

use hostd_api::{API_PREFIX, ActionResult, HostStatus, ScaleRequest, ServiceAction};
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;

use super::{ServiceError, ServiceSettings};
use crate::config::HostTarget;
use crate::fleet::{self, Changed, Outcome, Part};
use crate::host_status::{self, known_services};
use crate::transport::{Transport, TransportError};

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

/// hostd's answer to each step that succeeded on a host, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub results: Vec<ActionResult>,
}

/// One host's part in the run; `--json` prints an array of these.
pub type HostOutcome = Changed<Results>;

pub struct Report {
    pub hosts: Vec<HostOutcome>,
    /// Why the failed host failed; `None` when every host is done.
    pub failure: Option<TransportError>,
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

/// Checks every host, then changes them one at a time. `Err` only when
/// nothing was changed; what failed on a host is in the report.
pub async fn apply(transport: &Transport, s: &ServiceSettings) -> Result<Report, ServiceError> {
    let hosts = &s.targets.hosts;
    let statuses = host_status::before_acting(transport, hosts).await?;
    check(&s.steps, &statuses)?;
    let parts = fleet::in_batches(
        hosts,
        1,
        |target| apply_host(transport, target, &s.steps, s.timeout),
        |applied: &Applied| applied.error.is_some(),
    )
    .await;
    let mut failure = None;
    let hosts = hosts
        .iter()
        .zip(parts)
        .map(|(target, part)| match part {
            Part::Skipped => HostOutcome::not_touched(target),
            Part::Ran(Applied {
                results,
                error: None,
            }) => HostOutcome::new(target, Outcome::Done, Results { results }, None),
            Part::Ran(Applied {
                results,
                error: Some(e),
            }) => {
                let chain = hostd_api::error_chain(&e);
                failure = Some(e);
                HostOutcome::new(target, Outcome::Failed, Results { results }, Some(chain))
            }
        })
        .collect();
    Ok(Report { hosts, failure })
}

/// What one host did: hostd's answer to each step that succeeded, and why
/// the next one failed.
struct Applied {
    results: Vec<ActionResult>,
    error: Option<TransportError>,
}

async fn apply_host(
    transport: &Transport,
    target: &HostTarget,
    steps: &[Step],
    timeout: Duration,
) -> Applied {
    let mut results = Vec::new();
    let error = apply_steps(transport, target, steps, timeout, &mut results)
        .await
        .err();
    if let Some(e) = &error {
        tracing::debug!(host = target.name, error = ?e, "step failed");
    }
    Applied { results, error }
}

/// Runs the steps in order over one connection; `results` keeps what
/// succeeded even when a later step fails.
async fn apply_steps(
    transport: &Transport,
    target: &HostTarget,
    steps: &[Step],
    timeout: Duration,
    results: &mut Vec<ActionResult>,
) -> Result<(), TransportError> {
    let mut client = transport.connect(target).await?;
    let outcome = async {
        for step in steps {
            tracing::info!(host = target.name, "{}", step.describe());
            let (method, path, body) = step.request();
            let answer = tokio::time::timeout(timeout, client.request(method, &path, body))
                .await
                .map_err(|_| TransportError::Timeout {
                    host: target.name.clone(),
                    after: timeout,
                })??;
            let result = serde_json::from_slice::<ActionResult>(&answer).map_err(|source| {
                TransportError::Decode {
                    host: target.name.clone(),
                    path: path.clone(),
                    source,
                }
            })?;
            results.push(result);
        }
        Ok(())
    }
    .await;
    client.close().await;
    outcome
}
