//! One host's part of a deploy or rollback: the artifact uploaded if the
//! host lacks it, the request sent, and hostd's events followed to
//! `finished`. hostd owns the change once it has accepted it; losing the
//! connection loses the view, not the host's consistency.

use std::time::Duration;

use hostd_api::{API_PREFIX, DeployEvent, DeployOutcome};
use hyper::Method;
use hyper::body::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::time::{Instant, timeout_at};

use crate::artifact::{Upload, ensure_artifact};
use crate::config::HostTarget;
use crate::transport::{HostClient, Transport, TransportError};

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOutcome {
    Ok,
    RolledBack,
    Failed,
    /// Unreachable, refused, or the connection was lost after hostd took
    /// the request (hostd then finishes or rolls back by itself).
    Unknown,
    /// Not tried: an earlier host failed.
    Skipped,
}

impl HostOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
        }
    }
}

impl From<DeployOutcome> for HostOutcome {
    fn from(o: DeployOutcome) -> Self {
        match o {
            DeployOutcome::Ok => Self::Ok,
            DeployOutcome::RolledBack => Self::RolledBack,
            DeployOutcome::Failed => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub outcome: HostOutcome,
    /// The version asked for.
    pub version: String,
    /// The version the host serves now, as hostd last said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// Bytes uploaded; none when the host already had the artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostResult {
    pub fn skipped(host: &str, version: &str) -> Self {
        Self {
            host: host.to_owned(),
            outcome: HostOutcome::Skipped,
            version: version.to_owned(),
            serving: None,
            uploaded_bytes: None,
            seconds: 0.0,
            error: None,
        }
    }
}

/// What one host is asked.
pub struct Change<'a> {
    /// `deploy` or `rollback`.
    pub path: &'static str,
    pub body: Bytes,
    pub version: &'a str,
    pub upload: Option<Upload<'a>>,
    pub timeout: Duration,
}

/// Runs `change` on `target`; an upload is counted on the bar `new_bar`
/// gives for the bytes to send, and every event of hostd goes to
/// `on_event`. Never fails: whatever happened is in the result.
pub async fn run(
    transport: &Transport,
    target: &HostTarget,
    change: &Change<'_>,
    new_bar: impl FnOnce(u64) -> ProgressBar,
    mut on_event: impl FnMut(&DeployEvent),
) -> HostResult {
    let started = Instant::now();
    let deadline = started + change.timeout;
    let mut result = HostResult::skipped(&target.name, change.version);
    let outcome = timeout_at(deadline, async {
        let mut client = transport.connect(target).await.map_err(|e| (false, e))?;
        let followed = follow(&mut client, change, &mut result, new_bar, &mut on_event).await;
        client.close().await;
        followed
    })
    .await;
    let (outcome, error) = match outcome {
        Ok(Ok((o, e))) => (o, e),
        Ok(Err((accepted, e))) => (
            HostOutcome::Unknown,
            Some(if accepted {
                format!("{e}; hostd finishes or rolls back by itself: see `hostctl releases`")
            } else {
                e.to_string()
            }),
        ),
        Err(_) => (
            HostOutcome::Unknown,
            Some(format!(
                "stopped following after {} (--timeout); hostd finishes or rolls back by itself: see `hostctl releases`",
                humantime::format_duration(change.timeout)
            )),
        ),
    };
    result.outcome = outcome;
    result.error = error;
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// Err carries whether hostd had accepted the request.
async fn follow(
    client: &mut HostClient,
    change: &Change<'_>,
    result: &mut HostResult,
    new_bar: impl FnOnce(u64) -> ProgressBar,
    on_event: &mut impl FnMut(&DeployEvent),
) -> Result<(HostOutcome, Option<String>), (bool, TransportError)> {
    if let Some(upload) = &change.upload {
        result.uploaded_bytes = ensure_artifact(client, upload, new_bar)
            .await
            .map_err(|e| (false, e))?;
    }
    let path = format!("{API_PREFIX}/{}", change.path);
    let mut events = client
        .stream::<DeployEvent>(Method::POST, &path, Some(change.body.clone()))
        .await
        .map_err(|e| (false, e))?;
    loop {
        match events.next().await {
            Err(e) => return Err((true, e)),
            Ok(None) => {
                return Ok((
                    HostOutcome::Unknown,
                    Some("hostd's answer ended before `finished`; hostd finishes or rolls back by itself: see `hostctl releases`".into()),
                ));
            }
            Ok(Some(event)) => {
                on_event(&event);
                if let DeployEvent::Finished {
                    outcome,
                    serving,
                    error,
                    ..
                } = event
                {
                    result.serving = serving;
                    return Ok((outcome.into(), error));
                }
            }
        }
    }
}
