//! Changing hosts one at a time. Sequential on purpose: if a restart or a
//! scale breaks the first host, the others keep serving untouched.

use std::time::Duration;

use hostd_api::ActionResult;
use serde::Serialize;

use crate::config::HostTarget;
use crate::transport::{Transport, TransportError};

use super::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    /// Not reached because an earlier host failed.
    NotTouched,
}

/// One host's part in the run; `--json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub address: String,
    pub outcome: Outcome,
    /// hostd's answer to each step that succeeded, in order.
    pub results: Vec<ActionResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Report {
    pub hosts: Vec<HostOutcome>,
    /// Why the failed host failed; `None` when every host is done.
    pub failure: Option<TransportError>,
}

pub async fn apply_all(
    transport: &Transport,
    hosts: &[HostTarget],
    steps: &[Step],
    timeout: Duration,
) -> Report {
    let mut outcomes = Vec::with_capacity(hosts.len());
    let mut failure = None;
    for target in hosts {
        let mut outcome = HostOutcome {
            host: target.name.clone(),
            address: target.destination.clone(),
            outcome: Outcome::NotTouched,
            results: Vec::new(),
            error: None,
        };
        if failure.is_none() {
            match apply_host(transport, target, steps, timeout, &mut outcome.results).await {
                Ok(()) => outcome.outcome = Outcome::Done,
                Err(e) => {
                    tracing::debug!(host = target.name, error = ?e, "step failed");
                    outcome.outcome = Outcome::Failed;
                    outcome.error = Some(hostd_api::error_chain(&e));
                    failure = Some(e);
                }
            }
        }
        outcomes.push(outcome);
    }
    Report {
        hosts: outcomes,
        failure,
    }
}

/// Runs the steps in order over one connection; `results` keeps what
/// succeeded even when a later step fails.
async fn apply_host(
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
